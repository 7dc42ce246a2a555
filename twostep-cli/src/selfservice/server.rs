//! `twostep serve-self`: the root service behind `twostep self`. It listens on a Unix socket
//! (passed by systemd's socket activation, or bound here), learns each caller's uid from the
//! kernel (SO_PEERCRED), and acts for that account only (actions.rs). One request and one
//! response per connection; a thread per connection, bounded by limits.rs.

use crate::error::CliError;
use std::io::{ErrorKind, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::socket::{getsockopt, sockopt};
use twostep_common::audit::{Level, Sink, Syslog, field};
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::Config;
use twostep_common::username;
use twostep_sys::pam_password::{self, PasswordCheck, Refusal};
use zeroize::Zeroizing;

use super::actions::{self, Ctx};
use super::limits::{Admitted, Limits};
use super::proto::{DEFAULT_SOCKET, Failure, Kind, MAX_REQUEST_BYTES, Request, Response};

/// A client has this long to send its request, however slowly it trickles in.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Bind this socket instead of /run/twostep/self.sock (ignored when systemd passes the
    /// socket: LISTEN_FDS)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Also print every event to standard error (running by hand, tests); the service never
    /// forks in any case
    #[arg(long)]
    pub foreground: bool,

    /// The PAM service that checks callers' passwords [default: [self_service] pam_service,
    /// twostep-self]; it must not contain pam_twostep
    #[arg(long, value_name = "NAME")]
    pub pam_service: Option<String>,

    /// Exit after this many seconds without a connection (socket activation starts it again)
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<u64>,
}

/// What every connection thread shares.
#[derive(Debug, Clone)]
struct Shared {
    config_path: PathBuf,
    pam_service: Option<String>,
    foreground: bool,
    limits: Limits,
}

pub fn run(config_path: &Path, args: &ServeArgs) -> Result<(), CliError> {
    // The config is read again for every request (an admin's change applies at once); a broken
    // one is refused at start, where the admin sees it.
    let config = Config::load(config_path)?;
    let (listener, bound) = listener(args)?;
    let shared = Shared {
        config_path: config_path.to_path_buf(),
        pam_service: args.pam_service.clone(),
        foreground: args.foreground,
        limits: Limits::default(),
    };
    let socket_name = bound
        .as_deref()
        .map_or_else(|| "systemd socket".to_string(), |p| p.display().to_string());
    log(
        &shared,
        &config,
        Level::Info,
        &format!("self-service listening {}", field("socket", &socket_name)),
    );
    if let Some(secs) = args.idle_exit {
        watch_idle(
            shared.limits.clone(),
            Duration::from_secs(secs),
            bound.clone(),
        );
    }
    crate::listen::accept_loop(&listener, "serve-self", |stream| accept(&shared, stream));
    Ok(())
}

/// The socket systemd passed (fd 3, `LISTEN_FDS=1` for this pid), else a new one at `--socket`.
fn listener(args: &ServeArgs) -> Result<(UnixListener, Option<PathBuf>), CliError> {
    if let Some(listener) = crate::listen::passed_socket()? {
        return Ok((listener, None));
    }
    let path = args
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let path = std::path::absolute(&path).map_err(|e| CliError::io(path.display(), e))?;
    // 0666: anyone may ask; the kernel says who is asking.
    crate::listen::bind(&path, 0o666).map(|l| (l, Some(path)))
}

/// `--idle-exit`: a thread that ends the process once nothing has connected for `idle`.
fn watch_idle(limits: Limits, idle: Duration, bound: Option<PathBuf>) {
    let started = Instant::now();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(250).min(idle.max(Duration::from_millis(10))));
            if limits
                .idle_for(Instant::now(), started)
                .is_some_and(|t| t >= idle)
            {
                if let Some(path) = &bound {
                    let _ = std::fs::remove_file(path);
                }
                std::process::exit(0);
            }
        }
    });
}

/// Admits the connection (or answers "busy" at once) and serves it on its own thread.
fn accept(shared: &Shared, stream: UnixStream) {
    let uid = match getsockopt(&stream, sockopt::PeerCredentials) {
        Ok(cred) => cred.uid(),
        Err(_) => return,
    };
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Some(admitted) = shared.limits.admit(uid) else {
        let busy = Failure::new(
            Kind::Limited,
            "the service is busy with other requests (of yours, or of everybody); try again in \
             a few seconds",
        );
        // Not drained: the accepting thread must not wait on a client.
        send_line(&stream, &Response::Error(busy));
        return;
    };
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("self-service".into())
        .spawn(move || serve(&shared, stream, uid, admitted));
    if let Err(e) = spawned {
        eprintln!("twostep serve-self: cannot start a thread: {e}");
    }
}

fn serve(shared: &Shared, stream: UnixStream, uid: u32, _admitted: Admitted) {
    let request = read_request(&stream);
    let (op, result, config) = answer(shared, uid, request);
    let response = match result {
        Ok(value) => Response::Ok(value),
        Err(failure) => Response::Error(failure),
    };
    respond(&stream, &response);
    if let (Some((user, op)), Some(config)) = (op, config) {
        let (level, outcome) = match &response {
            Response::Ok(_) => (Level::Notice, "result=ok".to_string()),
            Response::Error(f) => (
                if f.kind == Kind::Error {
                    Level::Error
                } else {
                    Level::Warning
                },
                format!(
                    "result={}{}",
                    f.kind.name(),
                    f.detail
                        .as_deref()
                        .map(|d| format!(" {}", field("detail", d)))
                        .unwrap_or_default()
                ),
            ),
        };
        // Reading one's own status changes nothing: info, not notice.
        let read_only = op == "status" || op == "history";
        let level = if read_only && level == Level::Notice {
            Level::Info
        } else {
            level
        };
        log(
            shared,
            &config,
            level,
            &format!("self-service {op} {} {outcome}", field("user", &user)),
        );
    }
}

/// The user, the action's name and the config for the log line, and the result.
type Answered = (
    Option<(String, &'static str)>,
    Result<serde_json::Value, Failure>,
    Option<Config>,
);

fn answer(shared: &Shared, uid: u32, request: Result<Zeroizing<Vec<u8>>, Failure>) -> Answered {
    let config = match Config::load(&shared.config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("twostep serve-self: {e}");
            let broken = Failure::new(
                Kind::Error,
                "the service's configuration cannot be read; ask the administrator to run \
                 twostep doctor",
            );
            return (None, Err(broken), None);
        }
    };
    let user = match account_of(uid) {
        Ok(user) => user,
        Err(failure) => return (None, Err(failure), Some(config)),
    };
    let bytes = match request {
        Ok(bytes) => bytes,
        Err(failure) => return (Some((user, "request")), Err(failure), Some(config)),
    };
    if !shared.limits.allow_request(uid, Instant::now()) {
        let limited = Failure::new(
            Kind::Limited,
            "too many requests in the last minute; wait a minute and try again",
        );
        return (Some((user, "request")), Err(limited), Some(config));
    }
    let request: Request = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => {
            let bad = Failure::new(Kind::Invalid, format!("not a valid request: {e}"));
            return (Some((user, "request")), Err(bad), Some(config));
        }
    };
    let op = request.name();
    let service = shared
        .pam_service
        .clone()
        .unwrap_or_else(|| config.self_service.pam_service.clone());
    let limits = shared.limits.clone();
    let check_password = move |user: &str, password: &[u8]| {
        if !limits.allow_password_check(uid, Instant::now()) {
            return Err(Failure::new(
                Kind::Limited,
                "too many wrong passwords in the last minute; wait a minute and try again",
            ));
        }
        let check = pam_password::check_password(&service, user, password);
        if matches!(check, PasswordCheck::Refused(Refusal::WrongPassword)) {
            limits.count_password_failure(uid, Instant::now());
        }
        Ok(check)
    };
    let ctx = Ctx {
        config: &config,
        user: &user,
        now: SystemClock.now(),
        check_password: &check_password,
        send_mail: &crate::mail::send,
    };
    let result = actions::handle(&ctx, request);
    (Some((user, op)), result, Some(config))
}

/// The account of `uid`, by the system's user directory: its name is the canonical one.
fn account_of(uid: u32) -> Result<String, Failure> {
    let entry = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).map_err(|e| {
        Failure::new(
            Kind::Error,
            "the user directory cannot be asked; try again later",
        )
        .with_detail(format!("getpwuid({uid}): {e}"))
    })?;
    let Some(entry) = entry else {
        return Err(Failure::new(
            Kind::Invalid,
            format!("your uid {uid} has no account in the system's user directory"),
        ));
    };
    username::encode(&entry.name).map_err(|e| Failure::new(Kind::Invalid, e.to_string()))?;
    Ok(entry.name)
}

/// One line of at most [`MAX_REQUEST_BYTES`], within [`REQUEST_DEADLINE`] of accepting.
fn read_request(mut stream: &UnixStream) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Zeroizing::new(vec![0u8; MAX_REQUEST_BYTES + 1]);
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                Kind::Invalid,
                "no complete request within 5 seconds",
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf[len..]) {
            Ok(0) => {
                return Err(Failure::new(
                    Kind::Invalid,
                    "the request ended before its newline",
                ));
            }
            Ok(n) => {
                if let Some(end) = buf[len..len + n].iter().position(|&b| b == b'\n') {
                    let line = Zeroizing::new(buf[..len + end].to_vec());
                    return Ok(line);
                }
                len += n;
                if len > MAX_REQUEST_BYTES {
                    return Err(Failure::new(
                        Kind::Invalid,
                        format!("the request is longer than {MAX_REQUEST_BYTES} bytes"),
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Err(Failure::new(Kind::Invalid, "the request could not be read")),
        }
    }
}

fn respond(stream: &UnixStream, response: &Response) {
    send_line(stream, response);
    drain(stream);
}

/// The response line, then the end of our side of the stream.
fn send_line(stream: &UnixStream, response: &Response) {
    let Ok(text) = serde_json::to_string(response) else {
        return;
    };
    let mut text = Zeroizing::new(text);
    text.push('\n');
    let _ = send_all(stream, text.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Reads and drops what is left of a refused request (too long, malformed), at most 64 KiB and
/// 100 ms: Linux resets a Unix socket closed with unread data (ECONNRESET at the peer), and the
/// client might then lose the answer that says why it was refused.
fn drain(mut stream: &UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut scratch = Zeroizing::new([0u8; 4096]);
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match stream.read(&mut scratch[..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Writes all of `bytes` with MSG_NOSIGNAL: a client that went away must not kill the service
/// with SIGPIPE (the `twostep` binary keeps SIGPIPE's default action, for pipes).
pub(super) fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        match send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn log(shared: &Shared, config: &Config, level: Level, line: &str) {
    Syslog::open(&config.log.socket, "twostep-self").log(level, line);
    if shared.foreground {
        eprintln!("twostep serve-self: {line}");
    }
}
