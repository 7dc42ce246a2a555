//! `pam-drive`: a minimal PAM application that runs `pam_authenticate` through the real libpam.
//!
//! ```text
//! pam-drive --service NAME --user USER [--rhost HOST] [--answer TEXT]... [--answer-hex HEX]...
//!           [--answer-file PATH]... [--answer-exec PROG]... [--time EPOCH] [--dev-log SOCKET]
//! ```
//!
//! `--answer-exec PROG` is an answer computed when its prompt arrives: pam-drive runs `PROG
//! "<prompt text>"` (stdin from /dev/null, stderr inherited, killed after 20 seconds) and answers
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
//! libpam's failure delay is disabled (`PAM_FAIL_DELAY` is set to a function that does nothing)
//! to keep tests fast.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

/// Answers still to be handed out, in order.
static ANSWERS: Mutex<VecDeque<Answer>> = Mutex::new(VecDeque::new());

const USAGE: &str = "usage: pam-drive --service NAME --user USER [--rhost HOST] [--answer TEXT]... \
                     [--answer-hex HEX]... [--answer-file PATH]... [--answer-exec PROG]... \
                     [--time EPOCH] [--dev-log SOCKET]";

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
    ANSWERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(args.answers.iter().cloned());
    let result = pam::authenticate(&args);
    println!("RESULT: {}", pam::code_name(result));
    if result == pam::PAM_SUCCESS {
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
                "-h" | "--help" => return Err("help requested".into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        args.service = service.ok_or("--service is required")?;
        args.user = user.ok_or("--user is required")?;
        Ok(args)
    }
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
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
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
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{style}: {text}");
    let _ = out.flush();
}

/// The libpam calls and the conversation function.
mod pam {
    use super::*;

    pub const PAM_SUCCESS: c_int = 0;
    const PAM_BUF_ERR: c_int = 5;
    const PAM_CONV_ERR: c_int = 19;
    const PAM_RHOST: c_int = 4;
    const PAM_FAIL_DELAY: c_int = 10;
    const PAM_PROMPT_ECHO_OFF: c_int = 1;
    const PAM_PROMPT_ECHO_ON: c_int = 2;
    const PAM_ERROR_MSG: c_int = 3;
    const PAM_TEXT_INFO: c_int = 4;
    const PAM_MAX_NUM_MSG: c_int = 32;

    /// Linux-PAM return codes, indexed by value (`_pam_types.h`).
    const CODE_NAMES: [&str; 32] = [
        "PAM_SUCCESS",
        "PAM_OPEN_ERR",
        "PAM_SYMBOL_ERR",
        "PAM_SERVICE_ERR",
        "PAM_SYSTEM_ERR",
        "PAM_BUF_ERR",
        "PAM_PERM_DENIED",
        "PAM_AUTH_ERR",
        "PAM_CRED_INSUFFICIENT",
        "PAM_AUTHINFO_UNAVAIL",
        "PAM_USER_UNKNOWN",
        "PAM_MAXTRIES",
        "PAM_NEW_AUTHTOK_REQD",
        "PAM_ACCT_EXPIRED",
        "PAM_SESSION_ERR",
        "PAM_CRED_UNAVAIL",
        "PAM_CRED_EXPIRED",
        "PAM_CRED_ERR",
        "PAM_NO_MODULE_DATA",
        "PAM_CONV_ERR",
        "PAM_AUTHTOK_ERR",
        "PAM_AUTHTOK_RECOVERY_ERR",
        "PAM_AUTHTOK_LOCK_BUSY",
        "PAM_AUTHTOK_DISABLE_AGING",
        "PAM_TRY_AGAIN",
        "PAM_IGNORE",
        "PAM_ABORT",
        "PAM_AUTHTOK_EXPIRED",
        "PAM_MODULE_UNKNOWN",
        "PAM_BAD_ITEM",
        "PAM_CONV_AGAIN",
        "PAM_INCOMPLETE",
    ];

    pub fn code_name(code: c_int) -> String {
        usize::try_from(code)
            .ok()
            .and_then(|i| CODE_NAMES.get(i))
            .map_or_else(|| format!("PAM_{code}"), |name| name.to_string())
    }

    #[repr(C)]
    struct PamMessage {
        msg_style: c_int,
        msg: *const c_char,
    }

    #[repr(C)]
    struct PamResponse {
        resp: *mut c_char,
        resp_retcode: c_int,
    }

    type ConvFn =
        extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

    #[repr(C)]
    struct PamConv {
        conv: ConvFn,
        appdata_ptr: *mut c_void,
    }

    /// Opaque `pam_handle_t`.
    #[repr(C)]
    struct PamHandle {
        _private: [u8; 0],
    }

    #[link(name = "pam")]
    unsafe extern "C" {
        fn pam_start(
            service: *const c_char,
            user: *const c_char,
            conv: *const PamConv,
            pamh: *mut *mut PamHandle,
        ) -> c_int;
        fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
        fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
        fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
        fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
    }

    /// Runs pam_start, pam_authenticate and pam_end; returns pam_authenticate's result (or
    /// pam_start's or pam_set_item's, when those fail).
    pub fn authenticate(args: &Args) -> c_int {
        let conv = PamConv {
            conv: converse,
            appdata_ptr: std::ptr::null_mut(),
        };
        let mut pamh: *mut PamHandle = std::ptr::null_mut();
        // SAFETY: service and user are NUL-terminated strings and conv a valid pam_conv; all
        // outlive the handle, which is ended below before they are dropped.
        let rc = unsafe { pam_start(args.service.as_ptr(), args.user.as_ptr(), &conv, &mut pamh) };
        if rc != PAM_SUCCESS {
            report("pam_start", pamh, rc);
            if !pamh.is_null() {
                // SAFETY: pamh was returned by pam_start and is ended only here.
                unsafe { pam_end(pamh, rc) };
            }
            return rc;
        }
        let rc = set_items(pamh, args);
        let rc = if rc == PAM_SUCCESS {
            // SAFETY: pamh is the live handle returned by pam_start.
            let rc = unsafe { pam_authenticate(pamh, 0) };
            report("pam_authenticate", pamh, rc);
            rc
        } else {
            rc
        };
        // SAFETY: pamh is the live handle returned by pam_start; it is not used afterwards.
        unsafe { pam_end(pamh, rc) };
        rc
    }

    fn set_items(pamh: *mut PamHandle, args: &Args) -> c_int {
        let delay: extern "C" fn(c_int, c_uint, *mut c_void) = no_fail_delay;
        // SAFETY: PAM_FAIL_DELAY takes the function pointer itself as the item; the function
        // has the signature libpam calls it with.
        let rc = unsafe { pam_set_item(pamh, PAM_FAIL_DELAY, delay as *const c_void) };
        if rc != PAM_SUCCESS {
            report("pam_set_item(PAM_FAIL_DELAY)", pamh, rc);
            return rc;
        }
        if let Some(rhost) = &args.rhost {
            // SAFETY: rhost is a NUL-terminated string; libpam copies it.
            let rc = unsafe { pam_set_item(pamh, PAM_RHOST, rhost.as_ptr().cast()) };
            if rc != PAM_SUCCESS {
                report("pam_set_item(PAM_RHOST)", pamh, rc);
                return rc;
            }
        }
        PAM_SUCCESS
    }

    /// Prints `what: <pam_strerror text>` on stderr.
    fn report(what: &str, pamh: *mut PamHandle, rc: c_int) {
        // SAFETY: pam_strerror accepts any handle, even null, and returns a static string.
        let text = unsafe { pam_strerror(pamh, rc) };
        let text = if text.is_null() {
            String::new()
        } else {
            // SAFETY: non-null results of pam_strerror are NUL-terminated static strings.
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        eprintln!("pam-drive: {what}: {} ({text})", code_name(rc));
    }

    extern "C" fn no_fail_delay(_status: c_int, _usec: c_uint, _appdata: *mut c_void) {}

    /// The conversation function: prints every message and answers prompts from `ANSWERS`.
    extern "C" fn converse(
        num_msg: c_int,
        msg: *mut *const PamMessage,
        resp: *mut *mut PamResponse,
        _appdata: *mut c_void,
    ) -> c_int {
        if msg.is_null() || resp.is_null() || !(1..=PAM_MAX_NUM_MSG).contains(&num_msg) {
            return PAM_CONV_ERR;
        }
        let count = num_msg as usize;
        // SAFETY: calloc of `count` zeroed responses; libpam's caller frees them with free().
        let replies =
            unsafe { libc::calloc(count, size_of::<PamResponse>()) }.cast::<PamResponse>();
        if replies.is_null() {
            return PAM_BUF_ERR;
        }
        for i in 0..count {
            // SAFETY: Linux-PAM passes an array of `num_msg` pointers to valid messages.
            let message = unsafe { &**msg.add(i) };
            let text = if message.msg.is_null() {
                &[][..]
            } else {
                // SAFETY: a message's text is a NUL-terminated string.
                unsafe { CStr::from_ptr(message.msg) }.to_bytes()
            };
            let reply = match message.msg_style {
                PAM_PROMPT_ECHO_OFF => prompt("PROMPT_ECHO_OFF", text),
                PAM_PROMPT_ECHO_ON => prompt("PROMPT_ECHO_ON", text),
                PAM_ERROR_MSG => {
                    emit("ERROR_MSG", text);
                    Ok(std::ptr::null_mut())
                }
                PAM_TEXT_INFO => {
                    emit("TEXT_INFO", text);
                    Ok(std::ptr::null_mut())
                }
                other => {
                    emit(&format!("UNKNOWN_STYLE_{other}"), text);
                    Err(PAM_CONV_ERR)
                }
            };
            match reply {
                // SAFETY: i < count, inside the calloc'ed array.
                Ok(answer) => unsafe { (*replies.add(i)).resp = answer },
                Err(rc) => {
                    // SAFETY: replies holds `count` entries, each null or malloc'ed by us.
                    unsafe { free_replies(replies, count) };
                    return rc;
                }
            }
        }
        // SAFETY: resp is non-null (checked above) and points to the caller's result slot.
        unsafe { *resp = replies };
        PAM_SUCCESS
    }

    /// Prints a prompt and returns the next answer as a malloc'ed C string.
    fn prompt(style: &str, text: &[u8]) -> Result<*mut c_char, c_int> {
        emit(style, text);
        let Some(answer) = ANSWERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
        else {
            return Err(PAM_CONV_ERR);
        };
        let answer = match answer {
            Answer::Bytes(bytes) => bytes,
            Answer::Exec(prog) => exec_answer(&prog, text, EXEC_TIMEOUT).map_err(|message| {
                eprintln!("pam-drive: --answer-exec: {message}");
                PAM_CONV_ERR
            })?,
        };
        // SAFETY: malloc of answer.len() + 1 bytes for the string and its NUL.
        let copy = unsafe { libc::malloc(answer.len() + 1) }.cast::<u8>();
        if copy.is_null() {
            return Err(PAM_BUF_ERR);
        }
        // SAFETY: copy has room for answer.len() + 1 bytes and does not overlap answer.
        unsafe {
            std::ptr::copy_nonoverlapping(answer.as_ptr(), copy, answer.len());
            *copy.add(answer.len()) = 0;
        }
        Ok(copy.cast())
    }

    /// Frees a partly filled response array after a failed conversation.
    ///
    /// # Safety
    /// `replies` must be a calloc'ed array of `count` responses whose `resp` fields are null or
    /// malloc'ed, and must not be used afterwards.
    unsafe fn free_replies(replies: *mut PamResponse, count: usize) {
        for i in 0..count {
            // SAFETY: per this function's contract, every entry is null or malloc'ed.
            unsafe { libc::free((*replies.add(i)).resp.cast()) };
        }
        // SAFETY: per this function's contract, the array itself was calloc'ed.
        unsafe { libc::free(replies.cast()) };
    }
}

/// The fake wall clock, interposed over libc's for the whole process.
///
/// When `--time` was given, CLOCK_REALTIME and CLOCK_REALTIME_COARSE read `EPOCH + time since
/// start_at()` (elapsed time taken from CLOCK_MONOTONIC, so the fake clock advances like a real
/// one and time-based loops in a module still end); every other clock, and the real time
/// without `--time`, comes from the kernel through a raw syscall (libc's own function would
/// call back into this one).
mod fake_clock {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// The fake epoch in seconds; `NONE` when the clock is not faked.
    static FAKE_EPOCH: AtomicI64 = AtomicI64::new(NONE);
    /// CLOCK_MONOTONIC in nanoseconds when the fake clock started.
    static START_MONO_NS: AtomicI64 = AtomicI64::new(0);
    const NONE: i64 = i64::MIN;
    const NS: i64 = 1_000_000_000;

    /// Starts the fake wall clock at `epoch` seconds.
    pub fn start_at(epoch: i64) {
        let start = kernel_time(libc::CLOCK_MONOTONIC);
        START_MONO_NS.store(start.tv_sec * NS + start.tv_nsec, Ordering::SeqCst);
        FAKE_EPOCH.store(epoch, Ordering::SeqCst);
    }

    /// The fake wall clock, if `--time` was given. Seconds and nanoseconds are kept apart so
    /// that epochs far in the future (RFC 6238 tests 20000000000) do not overflow.
    fn fake_now() -> Option<libc::timespec> {
        let epoch = FAKE_EPOCH.load(Ordering::SeqCst);
        if epoch == NONE {
            return None;
        }
        let mono = kernel_time(libc::CLOCK_MONOTONIC);
        let elapsed = (mono.tv_sec * NS + mono.tv_nsec) - START_MONO_NS.load(Ordering::SeqCst);
        Some(libc::timespec {
            tv_sec: epoch.saturating_add(elapsed.div_euclid(NS)),
            tv_nsec: elapsed.rem_euclid(NS),
        })
    }

    /// Reads a clock from the kernel, bypassing libc (and so this module's interposers).
    fn kernel_time(clock: libc::clockid_t) -> libc::timespec {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid, writable timespec.
        unsafe { libc::syscall(libc::SYS_clock_gettime, clock, &mut ts) };
        ts
    }

    /// The wall clock as libc's clock_gettime(CLOCK_REALTIME) would give it.
    fn realtime() -> libc::timespec {
        fake_now().unwrap_or_else(|| kernel_time(libc::CLOCK_REALTIME))
    }

    /// Interposes libc's `clock_gettime`.
    ///
    /// # Safety
    /// As for clock_gettime(2): `tp` must be null or valid for writing a `timespec`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn clock_gettime(
        clock: libc::clockid_t,
        tp: *mut libc::timespec,
    ) -> c_int {
        let wall = matches!(clock, libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE);
        let fake = if wall && !tp.is_null() {
            fake_now()
        } else {
            None
        };
        if let Some(now) = fake {
            // SAFETY: the caller passes a writable timespec (checked non-null).
            unsafe { tp.write(now) };
            return 0;
        }
        // SAFETY: forwards the caller's arguments unchanged; the kernel validates them and
        // sets errno on failure, as libc's clock_gettime does.
        unsafe { libc::syscall(libc::SYS_clock_gettime, clock, tp) as c_int }
    }

    /// Interposes libc's `gettimeofday`.
    ///
    /// # Safety
    /// As for gettimeofday(2): `tv` and `tz` must each be null or valid for writing.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn gettimeofday(tv: *mut libc::timeval, tz: *mut c_void) -> c_int {
        let now = realtime();
        if !tv.is_null() {
            let timeval = libc::timeval {
                tv_sec: now.tv_sec,
                tv_usec: now.tv_nsec / 1000,
            };
            // SAFETY: the caller passes a writable timeval (checked non-null).
            unsafe { tv.write(timeval) };
        }
        if !tz.is_null() {
            // SAFETY: a non-null tz points to a writable struct timezone (two ints): UTC.
            unsafe { tz.cast::<[c_int; 2]>().write([0, 0]) };
        }
        0
    }

    /// Interposes libc's `time`.
    ///
    /// # Safety
    /// As for time(2): `out` must be null or valid for writing a `time_t`.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn time(out: *mut libc::time_t) -> libc::time_t {
        let now = realtime().tv_sec;
        if !out.is_null() {
            // SAFETY: the caller passes a writable time_t (checked non-null).
            unsafe { out.write(now) };
        }
        now
    }
}

/// `--dev-log`: a private `/dev` whose `log` entry is the test's syslog socket.
mod dev_log {
    use super::*;

    /// Character devices recreated in the private /dev: name, major, minor.
    const DEVICES: [(&str, u32, u32); 6] = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    const LINKS: [(&str, &str); 4] = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];

    /// Enters a private mount namespace and mounts a fresh tmpfs on /dev holding the usual
    /// character devices and `log -> socket`. Nothing outside this process sees the change.
    pub fn redirect_to(socket: &Path) -> Result<(), String> {
        let socket = std::path::absolute(socket).map_err(|e| e.to_string())?;
        // SAFETY: unshare takes no pointers; it only detaches this process's mount namespace.
        check("unshare(CLONE_NEWNS)", unsafe {
            libc::unshare(libc::CLONE_NEWNS)
        })?;
        mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
        mount(
            Some("tmpfs"),
            "/dev",
            Some("tmpfs"),
            libc::MS_NOSUID,
            Some("mode=0755"),
        )?;
        for (name, major, minor) in DEVICES {
            let path = cstr(&format!("/dev/{name}"))?;
            let mode = libc::S_IFCHR | 0o666;
            // SAFETY: path is a NUL-terminated string; mknod takes no other pointers.
            let rc = unsafe { libc::mknod(path.as_ptr(), mode, libc::makedev(major, minor)) };
            check(&format!("mknod /dev/{name}"), rc)?;
        }
        for (name, target) in LINKS {
            std::os::unix::fs::symlink(target, format!("/dev/{name}"))
                .map_err(|e| e.to_string())?;
        }
        std::os::unix::fs::symlink(&socket, "/dev/log").map_err(|e| format!("/dev/log: {e}"))
    }

    fn mount(
        source: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> Result<(), String> {
        let source = source.map(cstr).transpose()?;
        let fstype = fstype.map(cstr).transpose()?;
        let data = data.map(cstr).transpose()?;
        let target_c = cstr(target)?;
        let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                ptr(&source),
                target_c.as_ptr(),
                ptr(&fstype),
                flags,
                ptr(&data).cast(),
            )
        };
        check(&format!("mount {target}"), rc)
    }

    fn cstr(text: &str) -> Result<CString, String> {
        CString::new(text).map_err(|_| format!("NUL byte in {text:?}"))
    }

    fn check(what: &str, rc: c_int) -> Result<(), String> {
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("{what}: {}", std::io::Error::last_os_error()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn code_names() {
        assert_eq!(pam::code_name(0), "PAM_SUCCESS");
        assert_eq!(pam::code_name(7), "PAM_AUTH_ERR");
        assert_eq!(pam::code_name(25), "PAM_IGNORE");
        assert_eq!(pam::code_name(31), "PAM_INCOMPLETE");
        assert_eq!(pam::code_name(32), "PAM_32");
        assert_eq!(pam::code_name(-1), "PAM_-1");
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
