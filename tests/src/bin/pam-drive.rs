//! `pam-drive`: a minimal PAM application that runs `pam_authenticate` through the real libpam.
//!
//! ```text
//! pam-drive --service NAME --user USER [--rhost HOST] [--answer TEXT]... [--answer-hex HEX]...
//!           [--answer-file PATH]... [--answer-exec PROG]... [--time EPOCH] [--dev-log SOCKET]
//!           [--no-setcred] [--open-fd PATH]... [--account [--silent] [--no-conv]]
//! ```
//!
//! `--account` runs `pam_acct_mgmt` alone instead (as Samba does after checking the password
//! itself), with PAM_SILENT under `--silent`; `--no-conv` gives libpam a NULL conversation
//! function, so a module that tries to talk crashes pam-drive.
//!
//! After a successful `pam_authenticate` it calls `pam_setcred(PAM_ESTABLISH_CRED)`, as login,
//! su, sshd and cockpit-session do; `RESULT` is then that call's result. `--no-setcred` skips
//! it, like an application that only checks a password.
//!
//! `--answer-exec PROG` is an answer computed when its prompt arrives: pam-drive runs `PROG
//! "<prompt text>"` (stdin: the conversation so far, as the `STYLE: text` lines printed below;
//! stderr inherited; killed after 20 seconds) and answers
//! with its stdout minus the trailing newline (`\n` or `\r\n`), e.g. to type a code the module
//! has just emailed. It takes its place in command-line order among the other answers; if PROG
//! cannot run, fails, times out or prints a NUL byte, the conversation fails (PAM_CONV_ERR) and
//! the reason goes to stderr.
//!
//! Answers (`--answer`, `--answer-hex` and `--answer-file`, in command-line order) are handed
//! out one per prompt. `--answer-file` hands over the file's bytes verbatim, for answers too long
//! for a command line (Linux limits one argument to 128 KiB) or holding NUL bytes: the
//! conversation returns answers as C strings, so a module reads such an answer only up to its
//! first NUL.
//! Every conversation message is printed on stdout as `STYLE: text` (newlines in the text are
//! written as `\n`), then `RESULT: PAM_NAME`. Exit status: 0 for PAM_SUCCESS, 1 for any other
//! result, 2 for usage or setup errors.
//!
//! `--time EPOCH` starts the process's wall clock at EPOCH (it then runs at real speed): this
//! binary defines `clock_gettime`, `gettimeofday` and `time` and exports them dynamically (see
//! `build.rs`), so the dynamic linker binds the dlopen()ed PAM modules to them instead of libc's.
//!
//! `--dev-log SOCKET` (needs root) gives this process a private mount namespace with a fresh
//! tmpfs on /dev holding null, zero, full, random, urandom, tty, the fd links and `log ->
//! SOCKET`, so syslog messages sent to the default socket (libpam's own, or a module's before
//! it has read its configuration) can be collected by a test. The real /dev is not touched.
//!
//! `--open-fd PATH` opens PATH read-only without close-on-exec before `pam_start` and keeps it
//! open, like an application's descriptor that a module's child process must not inherit.
//!
//! libpam's failure delay is disabled (`PAM_FAIL_DELAY` is set to a function that does nothing)
//! to keep tests fast.

use std::collections::VecDeque;
use std::ffi::{CString, c_int};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use twostep_testkit::{dev_log, fake_clock};

/// Answers still to be handed out, in order.
static ANSWERS: Mutex<VecDeque<Answer>> = Mutex::new(VecDeque::new());
/// Every conversation line printed so far, for `--answer-exec` programs.
static TRANSCRIPT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

const USAGE: &str = "usage: pam-drive --service NAME --user USER [--rhost HOST] [--answer TEXT]... \
                     [--answer-hex HEX]... [--answer-file PATH]... [--answer-exec PROG]... \
                     [--time EPOCH] [--dev-log SOCKET] [--no-setcred] [--open-fd PATH]... \
                     [--account [--silent] [--no-conv]]";

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("pam-drive: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(epoch) = args.time {
        fake_clock::start_at(epoch);
    }
    if let Some(Err(message)) = args.dev_log.as_deref().map(dev_log::redirect_to) {
        eprintln!("pam-drive: --dev-log: {message}");
        return ExitCode::from(2);
    }
    if let Err(message) = open_inheritable(&args.open_fds) {
        eprintln!("pam-drive: --open-fd: {message}");
        return ExitCode::from(2);
    }
    ANSWERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(args.answers.iter().cloned());
    let result = authenticate(&args);
    println!("RESULT: {}", pam_client::code_name(result));
    if result == pam_client::PAM_SUCCESS {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The parsed command line.
#[derive(Debug, Default)]
struct Args {
    service: CString,
    user: CString,
    rhost: Option<CString>,
    answers: Vec<Answer>,
    time: Option<i64>,
    dev_log: Option<PathBuf>,
    no_setcred: bool,
    open_fds: Vec<PathBuf>,
    account: bool,
    silent: bool,
    no_conv: bool,
}

impl Args {
    fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut args = Args::default();
        let (mut service, mut user) = (None, None);
        while let Some(flag) = argv.next() {
            let mut value = || argv.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--service" => service = Some(c_string(value()?.into_bytes())?),
                "--user" => user = Some(c_string(value()?.into_bytes())?),
                "--rhost" => args.rhost = Some(c_string(value()?.into_bytes())?),
                "--answer" => args.answers.push(answer(value()?.into_bytes())?.into()),
                "--answer-hex" => args.answers.push(answer(decode_hex(&value()?)?)?.into()),
                "--answer-exec" => args.answers.push(Answer::Exec(PathBuf::from(value()?))),
                "--answer-file" => {
                    let path = value()?;
                    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
                    args.answers.push(bytes.into());
                }
                "--time" => {
                    let text = value()?;
                    let epoch = text.parse().map_err(|_| format!("bad --time {text:?}"))?;
                    args.time = Some(epoch);
                }
                "--dev-log" => args.dev_log = Some(PathBuf::from(value()?)),
                "--no-setcred" => args.no_setcred = true,
                "--open-fd" => args.open_fds.push(PathBuf::from(value()?)),
                "--account" => args.account = true,
                "--silent" => args.silent = true,
                "--no-conv" => args.no_conv = true,
                "-h" | "--help" => return Err("help requested".into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        args.service = service.ok_or("--service is required")?;
        args.user = user.ok_or("--user is required")?;
        if (args.silent || args.no_conv) && !args.account {
            return Err("--silent and --no-conv go with --account".into());
        }
        Ok(args)
    }
}

/// Opens each path for `--open-fd` and leaves it open, inheritable across exec.
fn open_inheritable(paths: &[PathBuf]) -> Result<(), String> {
    use std::os::fd::IntoRawFd;
    for path in paths {
        let fd = std::fs::File::open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .into_raw_fd();
        // SAFETY: `fd` is the descriptor just opened, owned by nobody else; clearing its flags
        // only drops FD_CLOEXEC.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
            return Err(format!("{}: cannot clear FD_CLOEXEC", path.display()));
        }
        eprintln!(
            "pam-drive: --open-fd: {} is descriptor {fd}",
            path.display()
        );
    }
    Ok(())
}

fn c_string(bytes: Vec<u8>) -> Result<CString, String> {
    CString::new(bytes).map_err(|_| "values cannot contain NUL bytes".to_string())
}

/// An answer is handed to the module as a C string, so it cannot hold NUL bytes.
fn answer(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if bytes.contains(&0) {
        return Err("answers cannot contain NUL bytes".into());
    }
    Ok(bytes)
}

/// One answer to hand out: fixed bytes, or a program run when its prompt arrives.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Bytes(Vec<u8>),
    Exec(PathBuf),
}

impl From<Vec<u8>> for Answer {
    fn from(bytes: Vec<u8>) -> Answer {
        Answer::Bytes(bytes)
    }
}

impl PartialEq<Vec<u8>> for Answer {
    fn eq(&self, other: &Vec<u8>) -> bool {
        matches!(self, Answer::Bytes(bytes) if bytes == other)
    }
}

/// How long an `--answer-exec` program may run.
const EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs `prog "<prompt>"` for `--answer-exec` and returns its stdout minus the trailing
/// newline. Never panics (it runs inside libpam's callback).
fn exec_answer(
    prog: &Path,
    prompt: &[u8],
    timeout: std::time::Duration,
) -> Result<Vec<u8>, String> {
    use std::os::unix::ffi::OsStrExt;
    use std::process::{Command, Stdio};
    let name = prog.display();
    let mut child = Command::new(prog)
        .arg(std::ffi::OsStr::from_bytes(prompt))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let transcript = TRANSCRIPT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(mut stdin) = child.stdin.take() {
        // A thread, so that a program that does not read cannot block pam-drive; write errors
        // (the program exited without reading) do not matter.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&transcript);
        });
    }
    let reader = child.stdout.take().map(|mut stdout| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut bytes).map(|_| bytes)
        })
    });
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(None) => {
                // Child::kill signals this child's own pid.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} ran longer than {timeout:?} and was killed"));
            }
            Err(e) => return Err(format!("waiting for {name}: {e}")),
        }
    };
    let mut out = match reader.map(|reader| reader.join()) {
        Some(Ok(Ok(bytes))) => bytes,
        _ => return Err(format!("cannot read the output of {name}")),
    };
    if !status.success() {
        return Err(format!("{name} failed ({status})"));
    }
    if out.last() == Some(&b'\n') {
        out.pop();
        if out.last() == Some(&b'\r') {
            out.pop();
        }
    }
    answer(out).map_err(|e| format!("{name}: {e}"))
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .filter(|pair| pair.len() == 2 && pair.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex {text:?}"))
        })
        .collect()
}

/// Writes one output line, escaping newlines so that each message stays on one line. Output
/// errors are ignored: this runs inside libpam's callback, where a panic would abort.
fn emit(style: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text)
        .replace('\n', "\\n")
        .replace('\r', "\\r");
    let line = format!("{style}: {text}\n");
    TRANSCRIPT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend_from_slice(line.as_bytes());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

use twostep_testkit::pam_client::{
    self, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_TEXT_INFO, Reply,
};

/// Runs the login and reports each libpam failure (and the last call's result) on stderr;
/// returns pam_setcred's result after a success, else pam_authenticate's (or that of the call
/// that failed before it).
fn authenticate(args: &Args) -> c_int {
    const PAM_SILENT: c_int = 0x8000;
    let outcome = if args.account {
        let handler: pam_client::Handler<'_> = &converse;
        pam_client::account(
            &args.service,
            &args.user,
            args.rhost.as_deref(),
            if args.silent { PAM_SILENT } else { 0 },
            (!args.no_conv).then_some(handler),
        )
    } else {
        pam_client::login(
            &args.service,
            &args.user,
            args.rhost.as_deref(),
            !args.no_setcred,
            &converse,
        )
    };
    eprintln!(
        "pam-drive: {}: {} ({})",
        outcome.call,
        pam_client::code_name(outcome.rc),
        outcome.text
    );
    outcome.rc
}

/// Prints every message and answers prompts from `ANSWERS`.
fn converse(style: c_int, text: &[u8]) -> Reply {
    match style {
        PAM_PROMPT_ECHO_OFF => prompt("PROMPT_ECHO_OFF", text),
        PAM_PROMPT_ECHO_ON => prompt("PROMPT_ECHO_ON", text),
        PAM_ERROR_MSG => {
            emit("ERROR_MSG", text);
            Reply::Nothing
        }
        PAM_TEXT_INFO => {
            emit("TEXT_INFO", text);
            Reply::Nothing
        }
        other => {
            emit(&format!("UNKNOWN_STYLE_{other}"), text);
            Reply::Fail(PAM_CONV_ERR)
        }
    }
}

/// Prints a prompt and returns the next answer.
fn prompt(style: &str, text: &[u8]) -> Reply {
    emit(style, text);
    let next = ANSWERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front();
    match next {
        None => Reply::Fail(PAM_CONV_ERR),
        Some(Answer::Bytes(bytes)) => Reply::Answer(bytes),
        Some(Answer::Exec(prog)) => match exec_answer(&prog, text, EXEC_TIMEOUT) {
            Ok(bytes) => Reply::Answer(bytes),
            Err(message) => {
                eprintln!("pam-drive: --answer-exec: {message}");
                Reply::Fail(PAM_CONV_ERR)
            }
        },
    }
}

/// Linux-PAM's PAM_CONV_ERR.
const PAM_CONV_ERR: c_int = 19;

// `--time`: the interposers of libc's clocks, exported by build.rs.
twostep_testkit::export_fake_clock!();

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn code_names() {
        assert_eq!(pam_client::code_name(0), "PAM_SUCCESS");
        assert_eq!(pam_client::code_name(7), "PAM_AUTH_ERR");
        assert_eq!(pam_client::code_name(25), "PAM_IGNORE");
        assert_eq!(pam_client::code_name(31), "PAM_INCOMPLETE");
        assert_eq!(pam_client::code_name(32), "PAM_32");
        assert_eq!(pam_client::code_name(-1), "PAM_-1");
    }

    #[test]
    fn answers_keep_command_line_order() {
        let args = parse(&[
            "--service",
            "s",
            "--user",
            "u",
            "--answer",
            "a b",
            "--answer-hex",
            "ff00",
        ]);
        assert!(args.is_err(), "NUL bytes must be refused");
        let args = parse(&[
            "--answer",
            "one",
            "--answer-hex",
            "c3ff",
            "--service",
            "s",
            "--user",
            "u",
            "--answer",
            "",
        ])
        .expect("valid arguments");
        assert_eq!(
            args.answers,
            vec![b"one".to_vec(), vec![0xc3, 0xff], Vec::new()]
        );
    }

    #[test]
    fn answer_exec_keeps_its_place_and_runs_with_the_prompt() {
        let args = parse(&[
            "--service",
            "s",
            "--user",
            "u",
            "--answer",
            "email",
            "--answer-exec",
            "/bin/echo",
            "--answer",
            "x",
        ])
        .expect("valid arguments");
        assert_eq!(
            args.answers,
            vec![
                Answer::Bytes(b"email".to_vec()),
                Answer::Exec(PathBuf::from("/bin/echo")),
                Answer::Bytes(b"x".to_vec()),
            ]
        );
        let second = std::time::Duration::from_secs(1);
        let echoed = exec_answer(
            Path::new("/bin/echo"),
            "Code sent to a•••@x: ".as_bytes(),
            second,
        );
        assert_eq!(echoed, Ok("Code sent to a•••@x: ".as_bytes().to_vec()));
        assert!(exec_answer(Path::new("/bin/false"), b"p", second).is_err());
        assert!(exec_answer(Path::new("/nonexistent/prog"), b"p", second).is_err());
        let started = std::time::Instant::now();
        let slow = exec_answer(
            Path::new("/bin/sleep"),
            b"10",
            std::time::Duration::from_millis(200),
        );
        assert!(slow.is_err_and(|e| e.contains("killed")));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["--user", "u"]).is_err());
        assert!(parse(&["--service", "s"]).is_err());
        assert!(parse(&["--service", "s", "--user", "u", "--time", "soon"]).is_err());
        assert!(parse(&["--service", "s", "--user", "u", "--answer-hex", "abc"]).is_err());
        assert!(parse(&["--service", "s", "--user", "u", "--answer-hex", "+f"]).is_err());
        assert!(parse(&["--service", "s", "--user", "u", "--bogus"]).is_err());
        assert!(parse(&["--service", "s", "--user"]).is_err());
    }
}
