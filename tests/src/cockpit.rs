//! What the browser tests of Cockpit share (tests/tests/web_cockpit.rs, web_admin.rs): starting
//! `cockpit-ws --no-tls` on 127.0.0.1 in a private mount namespace, chromedriver and headless
//! Chromium, local test users, and a small HTTP/WebDriver client. Every process started here is
//! stopped by its pid (and those left in its process group); nothing on the machine is written
//! but the test users, which are removed.
//!
//! A test calls [`set_budget`] first: every wait is bounded by what is left of it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::TestEnv;

pub const COCKPIT_WS: &str = "/usr/lib/cockpit/cockpit-ws";
pub const COCKPIT_SESSION: &str = "/usr/lib/cockpit/cockpit-session";
pub const COCKPIT_BRIDGE: &str = "/usr/bin/cockpit-bridge";
pub const COCKPIT_SHELL: &str = "/usr/share/cockpit/shell/index.html";
pub const COCKPIT_PAM: &str = "/etc/pam.d/cockpit";
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const PACKAGES: &str = "cockpit-ws cockpit-bridge cockpit-system chromium chromium-driver";

/// Prefix of the test users; the suffix is the test process's pid.
pub const USER_PREFIX: &str = "tsweb";

/// The whole test must end within this (it fails past it); set by [`set_budget`].
static BUDGET: OnceLock<Duration> = OnceLock::new();

/// Starts the test's clock with its time budget (the first call wins).
pub fn set_budget(budget: Duration) {
    let _ = BUDGET.set(budget);
    let _ = started();
}

fn budget() -> Duration {
    *BUDGET.get_or_init(|| Duration::from_secs(110))
}

// --- environment ---------------------------------------------------------------------------

pub fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Time left of the budget; panics when it is spent.
pub fn remaining(doing: &str) -> Duration {
    budget()
        .checked_sub(started().elapsed())
        .filter(|left| !left.is_zero())
        .unwrap_or_else(|| {
            panic!(
                "the cockpit test exceeded its {:?} budget while {doing}",
                budget()
            )
        })
}

/// Fails with one clear message when the machine lacks what the test needs.
pub fn preflight() {
    let missing: Vec<&str> = [
        COCKPIT_WS,
        COCKPIT_SESSION,
        COCKPIT_BRIDGE,
        COCKPIT_SHELL,
        COCKPIT_PAM,
        CHROMIUM,
        CHROMEDRIVER,
    ]
    .into_iter()
    .filter(|path| !Path::new(path).exists())
    .collect();
    assert!(
        missing.is_empty(),
        "web_cockpit needs {missing:?}: install the Debian packages `{PACKAGES}` (bash .ci/run \
         does)"
    );
    for tool in ["unshare", "useradd", "chpasswd", "userdel", "oathtool"] {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
            .unwrap_or(false);
        assert!(found, "web_cockpit needs `{tool}` on PATH");
    }
}

pub fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

pub fn assert_logged(env: &TestEnv, needles: &[&str]) {
    let logs = env.logs();
    assert!(
        logs.iter().any(|l| needles.iter().all(|n| l.contains(n))),
        "no pam_twostep log line contains all of {needles:?}:\n{}",
        logs.join("\n")
    );
}

/// A free TCP port on 127.0.0.1 (bound and released; the servers bind it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

// --- processes -----------------------------------------------------------------------------

/// The pids of the running processes for which `keep(pid, /proc/PID/stat after the name)`.
pub fn processes(keep: impl Fn(u32, &str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| Some(stat.get(stat.rfind(')')? + 2..)?.to_string()))
                .is_some_and(|rest| keep(*pid, &rest))
        })
        .collect()
}

/// Processes in process group `pgid`.
pub fn processes_in_group(pgid: u32) -> Vec<u32> {
    processes(|_, rest| {
        // state ppid pgrp ...
        rest.split_whitespace().nth(2) == Some(pgid.to_string().as_str())
    })
}

/// Processes whose real user is `uid`.
pub fn processes_of_uid(uid: u32) -> Vec<u32> {
    processes(|pid, _| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("Uid:"))?;
                line.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
            == Some(uid)
    })
}

pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

pub fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; pid is a single positive process id.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Sends SIGTERM to each pid, waits up to `grace` for `alive()` to be empty, then SIGKILLs
/// what is left (one by one) and waits a little more.
pub fn end_processes(alive: impl Fn() -> Vec<u32>, grace: Duration) {
    alive()
        .into_iter()
        .for_each(|pid| signal(pid, libc::SIGTERM));
    let deadline = Instant::now() + grace;
    while !alive().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    alive()
        .into_iter()
        .for_each(|pid| signal(pid, libc::SIGKILL));
    let deadline = Instant::now() + Duration::from_secs(2);
    while !alive().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server started by the test in its own process group, with its output in a log file.
/// Dropping it stops it (SIGTERM by pid), then every process left in its group, by pid.
#[derive(Debug)]
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    pub fn spawn(name: &'static str, command: &mut Command, port: u16, log: PathBuf) -> Server {
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Server {
            name,
            child,
            port,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `ready` until it returns true; panics if the server exits or takes too long.
    pub fn wait_ready(&mut self, timeout: Duration, ready: impl Fn(u16) -> bool) {
        let deadline = Instant::now() + timeout.min(remaining("starting servers"));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before serving on 127.0.0.1:{}; its output:\n{}",
                    self.name,
                    self.port,
                    self.log_text()
                );
            }
            if ready(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not serve on 127.0.0.1:{} within {timeout:?}; its output:\n{}",
                self.name,
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id();
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(pid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        // Children that outlive it (cockpit-session, the user's bridge, dbus-daemon,
        // ssh-agent; chromium's helpers) are still in its process group.
        end_processes(|| processes_in_group(pid), Duration::from_secs(3));
    }
}

/// cockpit-ws, no TLS, on 127.0.0.1, in a mount namespace where the PAM service `cockpit` is
/// the environment's service file. Its config directory is an empty one of the test's, so that
/// a /etc/cockpit/cockpit.conf on the machine changes nothing.
pub fn start_cockpit_ws(env: &TestEnv) -> Server {
    start_cockpit_ws_with(env, &env.service_file(), "", &[])
}

/// [`start_cockpit_ws`] with `pam_file` as the `cockpit` service and more set-up in the
/// namespace: `setup`, shell commands run after the PAM mount and before cockpit-ws starts,
/// with `envs` in their environment (e.g. mounts that install a Cockpit package).
pub fn start_cockpit_ws_with(
    env: &TestEnv,
    pam_file: &Path,
    setup: &str,
    envs: &[(&str, &std::ffi::OsStr)],
) -> Server {
    let port = free_port();
    let conf = env.dir().join("cockpit-conf");
    std::fs::create_dir_all(conf.join("cockpit")).expect("create cockpit config dir");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(
            "mount --bind \"$1\" /etc/pam.d/cockpit || exit 97; {setup}\n\
             exec \"$2\" --no-tls --address 127.0.0.1 --port \"$3\""
        ))
        .arg("sh")
        .arg(pam_file)
        .arg(COCKPIT_WS)
        .arg(port.to_string())
        .env("XDG_CONFIG_DIRS", &conf)
        .env("LANG", "C.UTF-8");
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut ws = Server::spawn(
        "cockpit-ws",
        &mut command,
        port,
        env.dir().join("cockpit-ws.log"),
    );
    ws.wait_ready(Duration::from_secs(15), |port| {
        http(port, "GET", "/", None, Duration::from_secs(2))
            .is_ok_and(|(status, body)| status == 200 && body.contains("login"))
    });
    ws
}

pub fn start_chromedriver(env: &TestEnv) -> Server {
    let port = free_port();
    let mut command = Command::new(CHROMEDRIVER);
    command.arg(format!("--port={port}")).arg(format!(
        "--log-path={}",
        env.dir().join("chromedriver-verbose.log").display()
    ));
    let mut driver = Server::spawn(
        "chromedriver",
        &mut command,
        port,
        env.dir().join("chromedriver.log"),
    );
    driver.wait_ready(Duration::from_secs(15), |port| {
        http(port, "GET", "/status", None, Duration::from_secs(2))
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .is_some_and(|v| v["value"]["ready"] == json!(true))
    });
    driver
}

// --- the test user -------------------------------------------------------------------------

/// A local user with a random password, created for this test; dropping it ends its processes
/// (by pid) and removes it with its home directory.
#[derive(Debug)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub password: String,
}

impl TestUser {
    pub fn create() -> TestUser {
        TestUser::create_with("", &[])
    }

    /// `tsweb<pid>` followed by `x<tag>` when `tag` is not empty, in the supplementary
    /// `groups` (which must exist).
    pub fn create_with(tag: &str, groups: &[&str]) -> TestUser {
        let mut name = format!("{USER_PREFIX}{}", std::process::id());
        if !tag.is_empty() {
            name = format!("{name}x{tag}");
        }
        let password = format!("Pw-{}", random_hex(12));
        let mut args = vec![
            "--create-home",
            "--shell",
            "/bin/sh",
            "--comment",
            "twostep web test",
        ];
        let groups = groups.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", &groups]);
        }
        args.push(&name);
        run_ok(Command::new("useradd").args(&args));
        let user = TestUser {
            uid: uid_of(&name).unwrap_or_else(|| panic!("useradd made no user {name}")),
            name,
            password,
        };
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chpasswd");
        chpasswd
            .stdin
            .take()
            .expect("chpasswd stdin")
            .write_all(format!("{}:{}\n", user.name, user.password).as_bytes())
            .expect("write to chpasswd");
        let output = chpasswd.wait_with_output().expect("wait for chpasswd");
        assert!(
            output.status.success(),
            "chpasswd failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        remove_user(&self.name, self.uid);
    }
}

pub fn remove_user(name: &str, uid: u32) {
    end_processes(|| processes_of_uid(uid), Duration::from_secs(3));
    let output = Command::new("userdel")
        .args(["--remove", name])
        .output()
        .expect("run userdel");
    let ok = output.status.success() || output.status.code() == Some(12); // 12: no home dir
    if !ok && !std::thread::panicking() {
        panic!(
            "userdel --remove {name} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

pub fn uid_of(name: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| fields.get(2)?.parse().ok())
            .flatten()
    })
}

/// Removes test users left by test processes that no longer run (`tsweb<pid>`).
pub fn clean_stale_users() {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let mut fields = line.split(':');
        let (Some(name), _, Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(USER_PREFIX)
            .map(|rest| rest.split_once('x').map_or(rest, |(pid, _)| pid))
        else {
            continue;
        };
        let (Ok(pid), Ok(uid)) = (pid.parse::<u32>(), uid.parse::<u32>()) else {
            continue;
        };
        if uid >= 1000 && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("cockpit tests: removing stale test user {name}");
            remove_user(name, uid);
        }
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn run_ok(command: &mut Command) {
    let output = crate::run::run(command, crate::run::TIMEOUT);
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

// --- HTTP and WebDriver --------------------------------------------------------------------

/// One HTTP/1.1 request to 127.0.0.1:`port` (Connection: close); returns status and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    // Read the header, then exactly the body it announces: chromedriver keeps the connection
    // open whatever `Connection: close` says.
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let read_more = |stream: &mut TcpStream, response: &mut Vec<u8>, chunk: &mut [u8]| {
        let n = stream
            .read(chunk)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        response.extend_from_slice(&chunk[..n]);
        Ok::<bool, String>(n > 0)
    };
    let split = loop {
        if let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        if !read_more(&mut stream, &mut response, &mut chunk)? {
            return Err(format!("{method} {path}: no HTTP header in the response"));
        }
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line in {head:?}"))?;
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let chunked = header("transfer-encoding") == Some("chunked");
    let length: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    loop {
        let body = &response[split + 4..];
        let complete = match length {
            Some(length) => body.len() >= length,
            None => chunked && body.ends_with(b"0\r\n\r\n"),
        };
        if complete || !read_more(&mut stream, &mut response, &mut chunk)? {
            break;
        }
    }
    let mut payload = response[split + 4..].to_vec();
    if let Some(length) = length {
        payload.truncate(length);
    } else if chunked {
        payload = dechunk(&payload)?;
    }
    Ok((status, String::from_utf8_lossy(&payload).to_string()))
}

pub fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// Calls chromedriver; returns the W3C response's `value`, or the error it reported.
pub fn webdriver(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let timeout = Duration::from_secs(30).min(remaining(path));
    let (status, text) = http(port, method, path, body, timeout)?;
    let value = serde_json::from_str::<Value>(&text)
        .map_err(|e| format!("{method} {path}: {status}, not JSON ({e}): {text}"))?
        .get_mut("value")
        .map(Value::take)
        .unwrap_or(Value::Null);
    if status == 200 {
        Ok(value)
    } else {
        Err(format!(
            "{method} {path}: {status} {}: {}",
            value["error"], value["message"]
        ))
    }
}

/// What the test reads off a page (see [`PAGE_STATE`]).
#[derive(Debug, Default, Clone)]
pub struct Page {
    pub path: String,
    pub title: String,
    /// The conversation prompt when Cockpit shows one (the second page).
    pub prompt: Option<String>,
    pub input_type: String,
    /// Cockpit's error under the form, or its fatal error.
    pub error: Option<String>,
    /// The login form is shown (user and password fields).
    pub login_form: bool,
    /// The login button is waiting for the server.
    pub busy: bool,
    /// The shell, not the login page, is loaded and names the user.
    pub logged_in: bool,
    pub text: String,
}

impl std::fmt::Display for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "page {:?} (title {:?}): prompt {:?}, error {:?}, login form {}, busy {}, logged in \
             {}; text:\n{}",
            self.path,
            self.title,
            self.prompt,
            self.error,
            self.login_form,
            self.busy,
            self.logged_in,
            self.text
        )
    }
}

/// Reads the state of Cockpit's login page (ids from its login.html) or of the shell.
pub const PAGE_STATE: &str = r#"
const user = arguments[0];
const q = (id) => document.getElementById(id);
const shown = (id) => { const e = q(id); return !!e && e.getClientRects().length > 0; };
const text = document.body ? document.body.innerText : "";
const error = shown("login-fatal") ? q("login-fatal-message").textContent
    : shown("error-group") ? q("login-error-message").textContent : null;
return {
    path: location.pathname,
    title: document.title,
    prompt: shown("conversation-group") ? q("conversation-prompt").textContent : null,
    input_type: q("conversation-input") ? q("conversation-input").type : "",
    error: error,
    login_form: shown("user-group") && shown("password-group"),
    busy: !!q("login-button") && q("login-button").getAttribute("spinning") === "true",
    logged_in: !q("login") && location.pathname !== "/" && text.includes(user + "@"),
    text: text.slice(0, 1500),
};
"#;

/// One WebDriver session: headless Chromium with a fresh profile. Dropping it closes it.
#[derive(Debug)]
pub struct Browser {
    pub port: u16,
    pub session: String,
    pub shots: PathBuf,
}

impl Browser {
    pub fn start(driver: &Server, profile: &Path, shots: &Path) -> Browser {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--lang=en-US",
            "--window-size=1280,900",
        ]
        .into_iter()
        .map(String::from)
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let value = webdriver(driver.port, "POST", "/session", Some(&caps)).unwrap_or_else(|e| {
            panic!(
                "chromedriver could not start {CHROMIUM}: {e}\nchromedriver output:\n{}",
                driver.log_text()
            )
        });
        let session = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"))
            .to_string();
        Browser {
            port: driver.port,
            session,
            shots: shots.to_path_buf(),
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        webdriver(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
    }

    pub fn must(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}\n{}", self.page_or_error()))
    }

    pub fn element(&self, css: &str) -> String {
        let value = self.must(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        );
        value
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element id for {css} in {value}"))
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the current frame.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// Opens `url` in the top-level frame.
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Makes the `<iframe>` matched by `css` the frame later calls act in.
    pub fn enter_frame(&self, css: &str) {
        // The element reference exactly as chromedriver gave it.
        let element = self.must(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        );
        self.must("POST", "/frame", Some(&json!({ "id": element })));
    }

    /// Back to the top-level frame.
    pub fn leave_frame(&self) {
        self.must("POST", "/frame", Some(&json!({"id": null})));
    }

    /// Polls `script` until it returns something other than null or false; that value. On
    /// timeout saves a screenshot and panics with the last value.
    pub fn wait_script(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: &[Value],
    ) -> Value {
        let deadline = Instant::now() + timeout.min(remaining(what));
        loop {
            let last = self.execute(script, args);
            if let Some(value) = last
                .as_ref()
                .ok()
                .filter(|v| !v.is_null() && **v != json!(false))
            {
                return value.clone();
            }
            if Instant::now() >= deadline {
                self.screenshot(&format!("timeout-{}.png", what.replace(' ', "-")));
                panic!("timed out after {timeout:?} waiting for {what}; last: {last:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.must(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.must("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    pub fn page(&self, user: &str) -> Result<Page, String> {
        let v = self.call(
            "POST",
            "/execute/sync",
            Some(&json!({"script": PAGE_STATE, "args": [user]})),
        )?;
        let text = |key: &str| v[key].as_str().map(str::to_string);
        Ok(Page {
            path: text("path").unwrap_or_default(),
            title: text("title").unwrap_or_default(),
            prompt: text("prompt"),
            input_type: text("input_type").unwrap_or_default(),
            error: text("error").filter(|e| !e.is_empty()),
            login_form: v["login_form"] == json!(true),
            busy: v["busy"] == json!(true),
            logged_in: v["logged_in"] == json!(true),
            text: text("text").unwrap_or_default(),
        })
    }

    pub fn page_or_error(&self) -> String {
        match self.page("") {
            Ok(page) => page.to_string(),
            Err(e) => format!("(page state unreadable: {e})"),
        }
    }

    /// Polls the page until `done` returns something; on timeout saves a screenshot and panics.
    pub fn wait<T>(
        &self,
        what: &str,
        user: &str,
        timeout: Duration,
        done: impl Fn(&Page) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout.min(remaining(what));
        loop {
            let last = match self.page(user) {
                Ok(page) => {
                    if let Some(result) = done(&page) {
                        return result;
                    }
                    page.to_string()
                }
                // Between pages (the login page hands over to the shell) scripts can fail.
                Err(e) => format!("(page state unreadable: {e})"),
            };
            if Instant::now() >= deadline {
                self.screenshot(&format!("timeout-{}.png", what.replace(' ', "-")));
                panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens the login page and submits user and password.
    pub fn submit_password(&self, base: &str, user: &str, password: &str) {
        self.must("POST", "/url", Some(&json!({ "url": base })));
        self.wait("the login form", user, Duration::from_secs(20), |p| {
            (p.login_form && !p.busy).then_some(())
        });
        self.type_into("#login-user-input", user);
        self.type_into("#login-password-input", password);
        self.click("#login-button");
    }

    /// Types an answer into the conversation field of the second page and submits it.
    pub fn answer_prompt(&self, answer: &str) {
        self.type_into("#conversation-input", answer);
        self.click("#login-button");
    }

    /// Waits for the server's answer: a prompt, an error, or the logged-in shell.
    pub fn wait_outcome(&self, what: &str, user: &str) -> Page {
        self.wait(what, user, Duration::from_secs(30), |p| {
            let settled = !p.busy && (p.prompt.is_some() || p.error.is_some());
            (settled || p.logged_in).then(|| p.clone())
        })
    }

    /// Waits until the shell's page frame shows its content (for a meaningful screenshot).
    pub fn wait_shell_content(&self, user: &str) {
        let script = json!({"script": r#"
            const frames = Array.from(document.querySelectorAll("iframe"));
            return frames.some((f) => {
                try {
                    const d = f.contentDocument;
                    return f.getClientRects().length > 0 && d && d.readyState === "complete"
                        && d.body && d.body.innerText.trim().length > 50;
                } catch (e) { return false; }
            });
        "#, "args": []});
        self.wait(
            "the shell's page content",
            user,
            Duration::from_secs(20),
            |_| {
                (self.call("POST", "/execute/sync", Some(&script)).ok() == Some(json!(true)))
                    .then_some(())
            },
        );
    }

    /// Saves a screenshot of the viewport as `<shots>/<name>`.
    pub fn screenshot(&self, name: &str) {
        let Ok(value) = self.call("GET", "/screenshot", None) else {
            eprintln!("web_cockpit: no screenshot {name}");
            return;
        };
        let png = crate::smtp::decode_base64(value.as_str().unwrap_or_default());
        let path = self.shots.join(name);
        assert!(
            png.starts_with(b"\x89PNG"),
            "the screenshot {name} is not a PNG"
        );
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Not `webdriver`, which panics once the budget is spent: this may run while unwinding.
        let path = format!("/session/{}", self.session);
        let _ = http(self.port, "DELETE", &path, None, Duration::from_secs(10));
    }
}
