//! Emailed codes: issuing them (send limits, hashed storage, expiry), checking them, the mail's
//! text, and handing the mail to the send helper.
//!
//! The PAM module never talks SMTP itself: TLS and SMTP code would make every sshd process
//! larger and a hung server could hold a login. It runs the root-owned helper
//! (`twostep send-code`) with the request on standard input, in its own process group that is
//! killed when it exits and at the deadline.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::{Config, Email};
use crate::error::Error;
use crate::random;
use crate::record::EmailState;
use crate::securefs;
use crate::timefmt;
use crate::toml_subset::{self, Fields, Writer};

/// What a request on the helper's standard input may weigh at most.
pub const MAX_REQUEST_BYTES: u64 = 16 * 1024;
/// Extra time the module gives the helper beyond the SMTP timeout before killing it.
const HELPER_GRACE: Duration = Duration::from_secs(3);

/// `alice@example.com` → `a•••@example.com`.
pub fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None => "•••".to_string(),
    }
}

/// A plausible single address: `local@domain.tld`, printable, no spaces, at most 254 bytes.
pub fn check_address(address: &str) -> Result<(), Error> {
    let ok = address.len() <= 254
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(address.split_once('@'),
            Some((l, d)) if !l.is_empty() && d.contains('.') && !d.contains('@')
                && !d.starts_with('.') && !d.ends_with('.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!("{address:?} is not an email address")))
    }
}

/// The result of asking for a code to be mailed.
#[derive(Debug)]
pub enum Issue {
    /// A new code to mail; its hash is stored.
    New(Zeroizing<String>),
    /// The send limit is reached but an unexpired code was already mailed: ask for that one.
    Pending,
    /// The send limit is reached and no code is pending.
    Limited,
}

/// Issues a code for `state` at `now`, honouring the per-minute and per-hour limits.
pub fn issue(state: &mut EmailState, email: &Email, now: u64) -> Result<Issue, Error> {
    state.sent.retain(|&t| t <= now && now - t < 3600);
    let last_minute = state.sent.iter().filter(|&&t| now - t < 60).count();
    let limited = last_minute >= email.max_per_minute as usize
        || state.sent.len() >= email.max_per_hour as usize;
    if limited {
        let pending = !state.hash.is_empty() && now < state.expires;
        return Ok(if pending {
            Issue::Pending
        } else {
            Issue::Limited
        });
    }
    let code = new_code(email.code_digits)?;
    let salt = random::bytes(16)?;
    state.salt = random::hex(&salt);
    state.hash = hash(&salt, &code);
    state.expires = now.saturating_add(email.lifetime_secs);
    state.sent.push(now);
    Ok(Issue::New(code))
}

/// Whether `code` is the pending, unexpired code; a match uses it up.
pub fn consume(state: &mut EmailState, code: &str, now: u64) -> bool {
    if state.hash.is_empty() || now >= state.expires {
        return false;
    }
    let Some(salt) = random::unhex(&state.salt) else {
        return false;
    };
    let equal: bool = hash(&salt, code)
        .as_bytes()
        .ct_eq(state.hash.as_bytes())
        .into();
    if equal {
        state.salt.clear();
        state.hash.clear();
        state.expires = 0;
    }
    equal
}

/// Takes back `code`, issued at `sent_at`, after its mail could not be sent: it is no longer
/// pending and does not count toward the send limits, so the next login mails a fresh one.
/// Leaves `state` alone if another code has been issued since (false).
pub fn withdraw(state: &mut EmailState, code: &str, sent_at: u64) -> bool {
    let ours = random::unhex(&state.salt).is_some_and(|salt| {
        let equal: bool = hash(&salt, code)
            .as_bytes()
            .ct_eq(state.hash.as_bytes())
            .into();
        equal
    });
    if !ours {
        return false;
    }
    state.salt.clear();
    state.hash.clear();
    state.expires = 0;
    if let Some(i) = state.sent.iter().rposition(|&t| t == sent_at) {
        state.sent.remove(i);
    }
    true
}

fn new_code(digits: u8) -> Result<Zeroizing<String>, Error> {
    let mut code = Zeroizing::new(String::with_capacity(usize::from(digits)));
    for _ in 0..digits {
        code.push(char::from(b'0' + random::index(10)? as u8));
    }
    Ok(code)
}

fn hash(salt: &[u8], code: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.as_bytes());
    random::hex(&h.finalize())
}

/// Why a send request could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// [`Request::to_text`]: a value the format cannot hold.
    Write(toml_subset::TooLarge),
    /// [`Request::parse`]: not a request (the codec's message, with line and column; never
    /// the text itself).
    Parse(toml_subset::Error),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Write(e) => e.fmt(f),
            RequestError::Parse(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RequestError {}

/// What the module hands to the send helper, as TOML on its standard input.
#[derive(Debug)]
pub struct Request {
    pub to: String,
    pub user: String,
    pub host: String,
    pub rhost: String,
    pub service: String,
    pub time: u64,
    pub code: String,
}

impl Request {
    /// The helper's input: one `key = value` line per field.
    pub fn to_text(&self) -> Result<Zeroizing<String>, RequestError> {
        let strings = [
            &self.to,
            &self.user,
            &self.host,
            &self.rhost,
            &self.service,
            &self.code,
        ];
        // Sized up front so that the buffer holding the code never grows (and leaves a copy);
        // escaping makes a string at most 6 times longer.
        let capacity = 128 + 6 * strings.iter().map(|s| s.len()).sum::<usize>();
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        let mut w = Writer::new(&mut text);
        w.string("to", &self.to);
        w.string("user", &self.user);
        w.string("host", &self.host);
        w.string("rhost", &self.rhost);
        w.string("service", &self.service);
        w.u64("time", self.time);
        w.string("code", &self.code);
        w.finish().map_err(RequestError::Write)?;
        Ok(text)
    }

    /// Reads what [`Request::to_text`] wrote; every field is required, no other is allowed.
    pub fn parse(text: &str) -> Result<Request, RequestError> {
        Request::read(text).map_err(RequestError::Parse)
    }

    fn read(text: &str) -> Result<Request, toml_subset::Error> {
        let mut f = Fields::parse(text)?;
        // Wiped if anything after it fails.
        let mut code = Zeroizing::new(required(&mut f, "code")?);
        let time = f.u64("time")?.ok_or_else(|| f.missing("time"))?;
        let to = required(&mut f, "to")?;
        let user = required(&mut f, "user")?;
        let host = required(&mut f, "host")?;
        let rhost = required(&mut f, "rhost")?;
        let service = required(&mut f, "service")?;
        f.finish()?;
        Ok(Request {
            to,
            user,
            host,
            rhost,
            service,
            time,
            code: std::mem::take(&mut *code),
        })
    }
}

fn required(f: &mut Fields, key: &str) -> Result<String, toml_subset::Error> {
    f.string(key)?.ok_or_else(|| f.missing(key))
}

impl Drop for Request {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.code);
    }
}

/// Subject and plain-text body of the mail for `request`. Never contains a key.
pub fn compose(email: &Email, request: &Request) -> (String, Zeroizing<String>) {
    let from = if request.rhost.is_empty() {
        "a local login".to_string()
    } else {
        request.rhost.clone()
    };
    let minutes = email.lifetime_secs.div_ceil(60);
    let body = format!(
        "Your verification code for {host} is:\n\n    {code}\n\n\
         Requested for {user} on {host} at {time} from {from} (service {service}).\n\
         It works once and expires in {minutes} minutes.\n\n\
         If you did not try to log in, do not use or share this code, and tell your \
         administrator: someone may know your password.\n",
        host = request.host,
        code = request.code,
        user = request.user,
        time = timefmt::utc(request.time),
        service = request.service,
    );
    (email.subject.clone(), Zeroizing::new(body))
}

/// Why a code could not be sent.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The helper could not be started or is not safe to run.
    Helper(String),
    /// The helper ran past the deadline and was killed.
    Timeout,
    /// The helper reported a failure (its first line of standard error).
    Failed(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Helper(why) => write!(f, "cannot run the send helper: {why}"),
            SendError::Timeout => f.write_str("the send helper timed out and was killed"),
            SendError::Failed(why) => write!(f, "sending failed: {why}"),
        }
    }
}

/// Runs `helper --config CONFIG send-code` with `request` on standard input; returns once it
/// exits or, at the latest, `timeout_secs` plus a few seconds later (then it is killed).
///
/// The helper runs in its own process group, which is killed (SIGKILL) when the helper exits
/// and at the deadline, so that nothing it started outlives it or holds the login: standard
/// error is read without blocking, and only until the helper exits or the deadline passes.
/// It inherits no descriptor above 2 from the application.
pub fn send_via_helper(
    config: &Config,
    config_path: &Path,
    request: &Request,
) -> Result<(), SendError> {
    let helper = &config.email.helper;
    securefs::check_root_executable(helper).map_err(|e| SendError::Helper(e.to_string()))?;
    let input = request
        .to_text()
        .map_err(|e| SendError::Helper(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(config.email.timeout_secs) + HELPER_GRACE;
    let mut command = Command::new(helper);
    command
        .arg("--config")
        .arg(config_path)
        .arg("send-code")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    twostep_sys::process::inherit_only_stdio(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| SendError::Helper(format!("{}: {e}", helper.display())))?;
    let group = Group(Pid::from_raw(child.id() as i32));
    if let Some(mut stdin) = child.stdin.take() {
        // The request fits in a pipe's buffer, so this does not wait for the helper; a helper
        // that dies before reading makes it fail, and its exit status says why.
        let _ = stdin.write_all(input.as_bytes());
    }
    let mut stderr = Stderr::new(child.stderr.take());
    let status = loop {
        stderr.drain();
        match exited(&group) {
            Ok(true) => {
                // Kill what the helper left behind while its pid still names the group, then
                // read what it wrote before exiting.
                group.kill();
                stderr.drain();
                match child.wait() {
                    Ok(status) => break status,
                    Err(e) => return Err(SendError::Helper(e.to_string())),
                }
            }
            Ok(false) if Instant::now() >= deadline => {
                group.kill();
                let _ = child.wait();
                return Err(SendError::Timeout);
            }
            Ok(false) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                group.kill();
                let _ = child.wait();
                return Err(SendError::Helper(e.desc().to_string()));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&stderr.bytes);
    let first = err.lines().next().unwrap_or("").trim();
    Err(SendError::Failed(if first.is_empty() {
        format!("the helper exited with {status}")
    } else {
        first.chars().take(300).collect()
    }))
}

/// The helper's process group (its pgid is the helper's pid).
struct Group(Pid);

impl Group {
    fn kill(&self) {
        // ESRCH (nobody left) is the usual answer once the helper is gone.
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

/// Whether the helper has exited, without reaping it: its zombie keeps the process group's id
/// from being reused until [`Group::kill`] has run.
fn exited(group: &Group) -> Result<bool, Errno> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(group.0), flags)? {
        WaitStatus::StillAlive => Ok(false),
        _ => Ok(true),
    }
}

/// The helper's standard error, read without blocking; the first 4 KiB are kept.
struct Stderr {
    pipe: Option<std::process::ChildStderr>,
    bytes: Vec<u8>,
}

impl Stderr {
    const KEEP: usize = 4096;

    fn new(pipe: Option<std::process::ChildStderr>) -> Stderr {
        let pipe = pipe.filter(|pipe| {
            let flags = fcntl(pipe, FcntlArg::F_GETFL)
                .map(OFlag::from_bits_truncate)
                .map(|flags| flags | OFlag::O_NONBLOCK);
            flags.is_ok_and(|flags| fcntl(pipe, FcntlArg::F_SETFL(flags)).is_ok())
        });
        Stderr {
            pipe,
            bytes: Vec::new(),
        }
    }

    /// Reads what is there now; stops at end of file or on an error.
    fn drain(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut buf = [0u8; 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break self.pipe = None,
                Ok(n) => {
                    let room = Self::KEEP.saturating_sub(self.bytes.len());
                    self.bytes.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break self.pipe = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email {
            smtp_host: "127.0.0.1".into(),
            from: "nas@example.com".into(),
            ..Email::default()
        }
    }

    #[test]
    fn codes_work_once_and_expire() {
        let mut state = EmailState::default();
        let Issue::New(code) = issue(&mut state, &email(), 1000).unwrap() else {
            panic!("no code");
        };
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert!(!state.hash.contains(code.as_str()));
        assert!(!consume(&mut state, "000000x", 1001));
        assert!(consume(&mut state, &code, 1001));
        assert!(!consume(&mut state, &code, 1002), "used up");
        let mut state = EmailState::default();
        let Issue::New(code) = issue(&mut state, &email(), 1000).unwrap() else {
            panic!("no code");
        };
        assert!(!consume(&mut state, &code, 1600), "expired at 600 s");
    }

    #[test]
    fn a_withdrawn_code_is_not_pending_and_not_counted() {
        let e = email();
        let mut state = EmailState::default();
        let Issue::New(code) = issue(&mut state, &e, 1000).unwrap() else {
            panic!("no code");
        };
        assert!(!withdraw(&mut state, "000000", 1000), "not the code issued");
        assert!(!state.hash.is_empty());
        assert!(withdraw(&mut state, &code, 1000));
        assert!(!consume(&mut state, &code, 1001), "no longer pending");
        assert!(state.sent.is_empty(), "not counted");
        // The next request (within the same minute) mails a fresh code.
        assert!(matches!(
            issue(&mut state, &e, 1001).unwrap(),
            Issue::New(_)
        ));
        // A code issued since is left alone.
        let mut state = EmailState::default();
        let Issue::New(first) = issue(&mut state, &e, 1000).unwrap() else {
            panic!("no code");
        };
        let Issue::New(_second) = issue(&mut state, &e, 1070).unwrap() else {
            panic!("no code");
        };
        assert!(!withdraw(&mut state, &first, 1000));
        assert_eq!(state.sent.len(), 2);
    }

    #[test]
    fn send_limits_per_minute_and_hour() {
        let mut state = EmailState::default();
        let e = email();
        assert!(matches!(
            issue(&mut state, &e, 1000).unwrap(),
            Issue::New(_)
        ));
        assert!(matches!(
            issue(&mut state, &e, 1030).unwrap(),
            Issue::Pending
        ));
        for i in 1..5 {
            assert!(
                matches!(issue(&mut state, &e, 1000 + i * 60).unwrap(), Issue::New(_)),
                "{i}"
            );
        }
        // Five sent this hour: no sixth, and once the last code expires, nothing pending.
        assert!(matches!(
            issue(&mut state, &e, 1300).unwrap(),
            Issue::Pending
        ));
        assert!(matches!(
            issue(&mut state, &e, 1240 + 600).unwrap(),
            Issue::Limited
        ));
        assert!(matches!(
            issue(&mut state, &e, 1000 + 3600).unwrap(),
            Issue::New(_)
        ));
    }

    #[test]
    fn mail_text_has_what_the_user_needs_and_no_more() {
        let request = request();
        let (subject, body) = compose(&email(), &request);
        assert_eq!(subject, "Your verification code");
        for part in [
            "    123456\n",
            "nas",
            "2027-01-15 08:00 UTC",
            "192.0.2.7",
            "alice",
            "10 minutes",
        ] {
            assert!(body.contains(part), "{part} missing:\n{}", body.as_str());
        }
    }

    fn request() -> Request {
        Request {
            to: "alice@example.com".into(),
            user: "alice".into(),
            host: "nas".into(),
            rhost: "192.0.2.7".into(),
            service: "sshd".into(),
            time: 1_800_000_015,
            code: "123456".into(),
        }
    }

    #[test]
    fn requests_round_trip_and_old_ones_still_parse() {
        let text = request().to_text().unwrap();
        let again = Request::parse(&text).unwrap();
        assert_eq!(again.to_text().unwrap(), text);
        // As the module wrote it with serde and the toml crate.
        let old = Request::parse(include_str!("../tests/fixtures/request-v1.toml")).unwrap();
        assert_eq!(old.to_text().unwrap(), text);
    }

    #[test]
    fn bad_requests_are_refused_without_repeating_the_code() {
        let text = request().to_text().unwrap().to_string();
        for (bad, needle) in [
            (
                text.replace("code = ", "extra = 1\ncode = "),
                "unknown key `extra`",
            ),
            (text.replace("time = 1800000015\n", ""), "`time` is missing"),
            (
                text.replace("\"123456\"", "123456"),
                "`code` must be a string",
            ),
            (text.replace("\"123456\"", "\"123456"), "line 7"),
        ] {
            let err = Request::parse(&bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
            assert!(!err.contains("123456"), "{err}");
        }
    }

    #[test]
    fn addresses() {
        assert!(check_address("alice@example.com").is_ok());
        for bad in [
            "", "alice", "a@b", "a b@c.d", "a@b@c.d", "@c.d", "a@c.d\n", "a@.c", "a@c.",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        assert_eq!(mask("alice@example.com"), "a•••@example.com");
        assert_eq!(mask("nonsense"), "•••");
    }
}
