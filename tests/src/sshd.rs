//! A throwaway OpenSSH server on 127.0.0.1 that authenticates through a [`TestEnv`]'s PAM
//! service, and a driver for the real OpenSSH client.
//!
//! OpenSSH takes its PAM service name from its program name, so [`Sshd::start`] runs sshd
//! through a symlink `<env dir>/sshd/<env.service()>` → `/usr/sbin/sshd`: the server reads the
//! environment's `/etc/pam.d/twostep-test-<id>` (written by [`TestEnv::write_stack`]) and never
//! the system's `/etc/pam.d/sshd`. It gets its own host key, `sshd_config`, a free port, runs in
//! the foreground (`-D`) and logs to `<env dir>/sshd/sshd.log` (`-E`); dropping the [`Sshd`]
//! stops it by pid. The PAM stack can be rewritten between logins (libpam reads it at each
//! login).
//!
//! [`Sshd::login`] runs `ssh` without a terminal (in a new session, stdin from /dev/null) with
//! `SSH_ASKPASS_REQUIRE=force`: every keyboard-interactive prompt goes to `twostep-askpass`
//! (this package's binary, see `src/bin/twostep-askpass.rs`), which answers it from rules and
//! records it. The client runs with `LANG=C.UTF-8` by default: in other locales OpenSSH escapes
//! the Unicode QR code of an enrollment (`\342\226\200`).
//!
//! ```no_run
//! use twostep_tests::sshd::{LiveCodes, Sshd};
//! use twostep_tests::TestEnv;
//! use twostep_tests::users::TestUser;
//!
//! let user = TestUser::create("doc");
//! let env = TestEnv::builder("ssh_doc")
//!     .stack(&["@include common-auth", "auth required {module} config={config}",
//!              "account required pam_unix.so", "session required pam_permit.so"])
//!     .build();
//! env.enroll(user.name(), "JBSWY3DPEHPK3PXP");
//! let sshd = Sshd::start(&env);
//! let mut codes = LiveCodes::new("JBSWY3DPEHPK3PXP");
//! let login = sshd.login(&user).password(user.password()).code(&codes.next_code()).run();
//! login.assert_logged_in().assert_prompts(&["Password: ", "Verification code: "]);
//! ```

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::env::TestEnv;
use crate::users::TestUser;
use crate::{paths, run};

/// The OpenSSH server binary (Debian package openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";
/// sshd's privilege separation directory; it must exist, owned by root, not writable by others.
pub const PRIVSEP_DIR: &str = "/run/sshd";
/// What the tests run on the server; a successful login prints it.
pub const COMMAND: &str = "echo twostep-ok";
/// How long one ssh client run may take before it is killed.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long sshd may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for a test sshd: `Sshd::builder(&env).authentication_methods("...").start()`.
#[derive(Debug)]
pub struct SshdBuilder<'a> {
    env: &'a TestEnv,
    authentication_methods: String,
    extra: Vec<String>,
    debian_dropin: Option<Vec<String>>,
    system_options: Option<Vec<String>>,
}

impl<'a> SshdBuilder<'a> {
    /// Runs with the system's `/etc/ssh/sshd_config` (Debian's) instead of the test's own
    /// authentication settings, as an admin would: its `Include /etc/ssh/sshd_config.d/*.conf`
    /// line is pointed at a private directory whose only file, `twostep.conf`, holds `dropin`.
    /// Only the listening address, port, host key, pid file and log level are set before it.
    /// [`authentication_methods`](Self::authentication_methods) is not used then.
    pub fn debian_config(mut self, dropin: &[&str]) -> Self {
        self.debian_dropin = Some(dropin.iter().map(|line| line.to_string()).collect());
        self
    }

    /// Runs like an admin's second sshd (docs/ssh.md, "Trying it on a second sshd"): no `-f`,
    /// so the system's `/etc/ssh/sshd_config` and its drop-in directory are read, and
    /// `options` (`KEY=VALUE`) are given as `-o` arguments, which win over the file. The test
    /// only adds `-p PORT -o ListenAddress=127.0.0.1 -o HostKey=<its own key> -o
    /// LogLevel=VERBOSE`.
    pub fn system_config(mut self, options: &[&str]) -> Self {
        self.system_options = Some(options.iter().map(|o| o.to_string()).collect());
        self
    }

    /// `AuthenticationMethods` (default `any`), e.g. `publickey,keyboard-interactive`.
    pub fn authentication_methods(mut self, methods: &str) -> Self {
        self.authentication_methods = methods.to_string();
        self
    }

    /// One more `sshd_config` line.
    pub fn option(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    /// Starts the server and waits until it listens.
    pub fn start(self) -> Sshd<'a> {
        Sshd::launch(self)
    }
}

/// A running sshd for one [`TestEnv`] (see the module documentation). Declare it after the
/// environment (and the users): it is stopped before they are removed.
#[derive(Debug)]
pub struct Sshd<'a> {
    env: &'a TestEnv,
    dir: PathBuf,
    child: Child,
    port: u16,
    /// sshd's arguments between `-D` and `-E` (`-f CONFIG`, or `-p` and `-o` options).
    args: Vec<OsString>,
    runs: AtomicU32,
}

impl<'a> Sshd<'a> {
    /// A server with the default options: passwords only through PAM keyboard-interactive
    /// (`KbdInteractiveAuthentication yes`, `PasswordAuthentication no`, `UsePAM yes`), public
    /// keys allowed, `AuthenticationMethods any`.
    pub fn start(env: &'a TestEnv) -> Sshd<'a> {
        Sshd::builder(env).start()
    }

    /// A builder for other options.
    pub fn builder(env: &'a TestEnv) -> SshdBuilder<'a> {
        SshdBuilder {
            env,
            authentication_methods: "any".to_string(),
            extra: Vec::new(),
            debian_dropin: None,
            system_options: None,
        }
    }

    fn launch(options: SshdBuilder<'a>) -> Sshd<'a> {
        crate::require_root();
        let env = options.env;
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: install the Debian package openssh-server"
        );
        ensure_privsep_dir();
        let dir = env.dir().join("sshd");
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let host_key = dir.join("host_ed25519_key");
        let keygen = run::run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&host_key),
            run::TIMEOUT,
        );
        assert!(
            keygen.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
        // The program name is the PAM service name.
        let program = dir.join(env.service());
        std::os::unix::fs::symlink(SSHD, &program)
            .unwrap_or_else(|e| panic!("cannot link {}: {e}", program.display()));
        let config = dir.join("sshd_config");
        let log = dir.join("sshd.log");
        let base = options
            .debian_dropin
            .as_ref()
            .map(|dropin| debian_base(&dir, dropin));
        for _ in 0..5 {
            let port = free_port();
            let args: Vec<OsString> = match &options.system_options {
                Some(system_options) => {
                    let mut args: Vec<OsString> = vec!["-p".into(), port.to_string().into()];
                    let mut host_key_option = OsString::from("HostKey=");
                    host_key_option.push(&host_key);
                    for option in [
                        "ListenAddress=127.0.0.1".into(),
                        host_key_option,
                        "LogLevel=VERBOSE".into(),
                    ]
                    .into_iter()
                    .chain(system_options.iter().map(OsString::from))
                    {
                        args.extend(["-o".into(), option]);
                    }
                    args
                }
                None => {
                    let text = config_text(&options, &dir, &host_key, port, base.as_deref());
                    std::fs::write(&config, text)
                        .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
                    vec!["-f".into(), config.clone().into()]
                }
            };
            let out = File::create(dir.join("sshd.out")).expect("create sshd.out");
            let child = Command::new(&program)
                .arg("-D")
                .args(&args)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut sshd = Sshd {
                env,
                dir: dir.clone(),
                child,
                port,
                args,
                runs: AtomicU32::new(0),
            };
            match sshd.wait_listening() {
                Ok(()) => return sshd,
                // Another process took the port between our probe and sshd's bind: retry.
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!(
                    "sshd did not start; arguments {:?}; sshd_config:\n{}\nlog:\n{log}",
                    sshd.args,
                    std::fs::read_to_string(&config).unwrap_or_default()
                ),
            }
        }
        panic!("sshd could not bind a free port in 5 tries");
    }

    /// Waits for sshd's "Server listening" line; on failure returns its log and output.
    fn wait_listening(&mut self) -> Result<(), String> {
        let ready = format!("Server listening on 127.0.0.1 port {}.", self.port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.log().contains(&ready) {
                return Ok(());
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let output = std::fs::read_to_string(self.dir.join("sshd.out")).unwrap_or_default();
                return Err(format!("{}{output}\n(exit: {exited:?})", self.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port sshd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// sshd's arguments besides `-D` and `-E LOG`.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The effective configuration, as `sshd -T` prints it (lowercase keywords).
    pub fn effective_config(&self) -> String {
        let out = run::run(
            Command::new(self.dir.join(self.env.service()))
                .arg("-T")
                .args(&self.args),
            run::TIMEOUT,
        );
        assert!(
            out.status.success(),
            "sshd -T: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server's log so far (LogLevel VERBOSE).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// An ssh login of `user` to configure and [`run`](SshLogin::run).
    pub fn login(&self, user: &TestUser) -> SshLogin<'_, 'a> {
        SshLogin {
            sshd: self,
            user: user.name().to_string(),
            password: None,
            codes: Vec::new(),
            key: None,
            from: "127.0.0.1".to_string(),
            rules: Vec::new(),
            preferred: None,
            locale: "C.UTF-8".to_string(),
        }
    }
}

impl Drop for Sshd<'_> {
    fn drop(&mut self) {
        crate::run::stop(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "--- sshd log ({}):\n{}",
                self.dir.join("sshd.log").display(),
                self.log()
            );
        }
    }
}

/// One ssh client run; see [`Sshd::login`].
#[derive(Debug)]
pub struct SshLogin<'s, 'a> {
    sshd: &'s Sshd<'a>,
    user: String,
    password: Option<String>,
    codes: Vec<String>,
    key: Option<PathBuf>,
    from: String,
    rules: Vec<(String, String)>,
    preferred: Option<String>,
    locale: String,
}

impl SshLogin<'_, '_> {
    /// The client's `PreferredAuthentications` instead of `keyboard-interactive` (or
    /// `publickey,keyboard-interactive` with a key), e.g. `password`.
    pub fn preferred_authentications(mut self, methods: &str) -> Self {
        self.preferred = Some(methods.to_string());
        self
    }

    /// The answer to prompts containing `Password` (and to the `password` method's prompt).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Queues the answer to the next `Verification code` prompt.
    pub fn code(mut self, code: &str) -> Self {
        self.codes.push(code.to_string());
        self
    }

    /// Offers this private key first (`PreferredAuthentications
    /// publickey,keyboard-interactive`); without a key only keyboard-interactive is tried.
    pub fn key(mut self, private_key: &Path) -> Self {
        self.key = Some(private_key.to_path_buf());
        self
    }

    /// The client's locale (`LANG` and `LC_ALL`; default `C.UTF-8`).
    pub fn locale(mut self, locale: &str) -> Self {
        self.locale = locale.to_string();
        self
    }

    /// Connects from this local address (`ssh -b`), e.g. `127.0.0.2`: PAM_RHOST is then that
    /// address. The default is 127.0.0.1.
    pub fn from(mut self, address: &str) -> Self {
        self.from = address.to_string();
        self
    }

    /// A rule checked before the standard ones: prompts whose last line contains `needle` get
    /// `action` (`text:VALUE`, `empty`, `queue` or `app-code`; see `twostep-askpass`).
    pub fn rule(mut self, needle: &str, action: &str) -> Self {
        self.rules.push((needle.to_string(), action.to_string()));
        self
    }

    /// Runs `ssh ... user@127.0.0.1 'echo twostep-ok'`, bounded by [`SSH_TIMEOUT`]. The
    /// password and codes are remembered as secrets for [`TestEnv::assert_logs_clean`].
    pub fn run(self) -> SshResult {
        let sshd = self.sshd;
        let env = sshd.env;
        let n = sshd.runs.fetch_add(1, Ordering::SeqCst);
        let dir = sshd.dir.join(format!("run-{n}"));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));

        let mut rules = self.rules.clone();
        if let Some(password) = &self.password {
            env.add_secret(password);
            rules.push(("Password".into(), format!("text:{password}")));
            // The client's own prompt of the `password` method.
            rules.push(("'s password: ".into(), format!("text:{password}")));
        }
        rules.push(("Verification code".into(), "queue".into()));
        rules.push(("Code shown by the app".into(), "app-code".into()));
        rules.push(("Press Enter".into(), "empty".into()));
        let rules_text: String = rules
            .iter()
            .map(|(needle, action)| {
                assert!(
                    !needle.contains(['\t', '\n']) && !action.contains('\n'),
                    "bad askpass rule {needle:?} {action:?}"
                );
                format!("{needle}\t{action}\n")
            })
            .collect();
        write(&dir.join("rules"), &rules_text);
        self.codes.iter().for_each(|code| env.add_secret(code));
        write(&dir.join("queue"), &self.codes.join("\n"));

        let methods = match (&self.preferred, &self.key) {
            (Some(methods), _) => methods.as_str(),
            (None, Some(_)) => "publickey,keyboard-interactive",
            (None, None) => "keyboard-interactive",
        };
        let password_method = methods.split(',').any(|m| m == "password");
        let mut command = Command::new("ssh");
        command
            .args(["-F", "/dev/null"])
            .args(["-o", "BatchMode=no"])
            .args(["-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", &format!("PreferredAuthentications={methods}")])
            .args(["-o", "KbdInteractiveAuthentication=yes"])
            .args([
                "-o",
                if password_method {
                    "PasswordAuthentication=yes"
                } else {
                    "PasswordAuthentication=no"
                },
            ])
            .args(["-o", "NumberOfPasswordPrompts=1"])
            .args(["-o", "ConnectTimeout=10"])
            .args(["-o", "IdentitiesOnly=yes"]);
        match &self.key {
            Some(key) => command.arg("-i").arg(key),
            None => command.args(["-o", "PubkeyAuthentication=no"]),
        };
        command
            .args(["-b", &self.from])
            .args(["-p", &sshd.port.to_string()])
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(COMMAND)
            .env("SSH_ASKPASS", paths::profile_dir().join("twostep-askpass"))
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("TWOSTEP_ASKPASS_DIR", &dir)
            .env("LANG", &self.locale)
            .env("LC_ALL", &self.locale)
            .env_remove("DISPLAY")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout")).expect("create stdout file"))
            .stderr(File::create(dir.join("stderr")).expect("create stderr file"));
        // SAFETY: the closure runs in the forked child before exec and only calls setsid,
        // which is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // SAFETY: setsid has no preconditions; the child is not a group leader.
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        assert!(
            paths::profile_dir().join("twostep-askpass").is_file(),
            "twostep-askpass is missing: run `cargo build --workspace` first"
        );

        let logs_before = env.logs().len();
        let sshd_log_before = sshd.log().len();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ssh (openssh-client): {e}"));
        let status = wait_or_kill_group(&mut child, SSH_TIMEOUT);
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let mut result = SshResult {
            status,
            stdout: read("stdout"),
            stderr: read("stderr"),
            prompts: parse_prompts(&read("prompts"), &self.user),
            app: AppKey::parse(&read("app")),
            logs: env.logs().split_off(logs_before),
            sshd_log: sshd.log().get(sshd_log_before..).unwrap_or("").to_string(),
        };
        if let Some(app) = &result.app {
            env.add_secret(&app.secret);
        }
        if result.status.is_none() {
            result
                .logs
                .push("(ssh was killed after the timeout)".into());
            panic!("ssh ran longer than {SSH_TIMEOUT:?} and was killed\n{result}");
        }
        result
    }
}

/// Waits for `child` (a session leader) at most `timeout`; then kills its whole process group
/// (ssh and any askpass it runs) by the group's id, which is the child's pid.
fn wait_or_kill_group(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => break,
        }
    }
    let pgid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; the group id is our unreaped child's
    // pid, which it made its own group with setsid, so it names only its processes.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    None
}

/// What one ssh run did.
#[derive(Debug, Clone)]
pub struct SshResult {
    /// ssh's exit status (`None` when it was killed after the timeout).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// Every keyboard-interactive prompt, in order.
    pub prompts: Vec<Prompt>,
    /// The key the askpass program saw in an enrollment URI (`app-code` rule), if any.
    pub app: Option<AppKey>,
    /// Syslog lines of the test environment received during the run.
    pub logs: Vec<String>,
    /// sshd's log lines written during the run.
    pub sshd_log: String,
}

/// One prompt the askpass program was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The rule's action that answered it (`text`, `queue`, `app-code`, `empty`), or
    /// `unanswered`, or `error: ...`.
    pub kind: String,
    /// The PAM text messages sent before the prompt, one per line (without ssh's `(user@host) `).
    pub info: Vec<String>,
    /// The prompt itself, e.g. `Password: `.
    pub prompt: String,
}

/// The key of an enrollment as an app would store it, from the URI shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppKey {
    pub secret: String,
    pub algorithm: String,
    pub digits: u32,
    pub period: i64,
    /// The time the askpass program computed its code for.
    pub epoch: i64,
    pub code: String,
}

impl AppKey {
    fn parse(text: &str) -> Option<AppKey> {
        let get = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(AppKey {
            secret: get("secret")?,
            algorithm: get("algorithm")?,
            digits: get("digits")?.parse().ok()?,
            period: get("period")?.parse().ok()?,
            epoch: get("epoch")?.parse().ok()?,
            code: get("code")?,
        })
    }
}

impl SshResult {
    /// Whether the command ran: exit status 0 and its output.
    pub fn logged_in(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.stdout == "twostep-ok\n"
    }

    /// Panics unless the login succeeded and the command ran.
    pub fn assert_logged_in(&self) -> &Self {
        assert!(self.logged_in(), "expected a successful ssh login\n{self}");
        self
    }

    /// Panics unless ssh was refused (`Permission denied`, exit 255) and ran nothing.
    pub fn assert_denied(&self) -> &Self {
        assert!(
            self.status.and_then(|s| s.code()) == Some(255)
                && self.stderr.contains("Permission denied")
                && self.stdout.is_empty(),
            "expected ssh to be denied\n{self}"
        );
        self
    }

    /// The prompts' last lines, e.g. `["Password: ", "Verification code: "]`.
    pub fn prompt_lines(&self) -> Vec<&str> {
        self.prompts.iter().map(|p| p.prompt.as_str()).collect()
    }

    /// Panics unless the prompts were exactly `expected` (their last lines), in order.
    pub fn assert_prompts(&self, expected: &[&str]) -> &Self {
        assert_eq!(
            self.prompt_lines(),
            expected,
            "unexpected keyboard-interactive prompts\n{self}"
        );
        self
    }

    /// Panics unless some syslog line of this run contains all of `needles`; returns it.
    pub fn assert_logged(&self, needles: &[&str]) -> &str {
        crate::syslog::assert_logged(&self.logs, needles, self)
    }

    /// Panics if the module logged anything during this run.
    pub fn assert_nothing_logged(&self) -> &Self {
        assert!(
            self.logs.is_empty(),
            "expected no log line from the module\n{self}"
        );
        self
    }
}

impl std::fmt::Display for SshResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "--- ssh exit: {:?}", self.status)?;
        writeln!(f, "--- ssh stdout:\n{}", self.stdout)?;
        writeln!(f, "--- ssh stderr:\n{}", self.stderr)?;
        writeln!(f, "--- prompts:")?;
        for p in &self.prompts {
            writeln!(f, "[{}] info={:?} prompt={:?}", p.kind, p.info, p.prompt)?;
        }
        writeln!(f, "--- module log lines:")?;
        self.logs
            .iter()
            .try_for_each(|line| writeln!(f, "{line}"))?;
        writeln!(f, "--- sshd log:\n{}", self.sshd_log)
    }
}

/// Parses the askpass program's `prompts` file.
fn parse_prompts(text: &str, user: &str) -> Vec<Prompt> {
    let prefix = format!("({user}@127.0.0.1) ");
    text.lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(kind, escaped)| {
            let full = unescape(escaped);
            let full = full.strip_prefix(&prefix).unwrap_or(&full);
            let mut lines: Vec<String> = full.split('\n').map(str::to_string).collect();
            let prompt = lines.pop().unwrap_or_default();
            Prompt {
                kind: kind.to_string(),
                info: lines,
                prompt,
            }
        })
        .collect()
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Creates sshd's privilege separation directory if needed and checks what sshd checks.
fn ensure_privsep_dir() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = Path::new(PRIVSEP_DIR);
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {PRIVSEP_DIR}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("cannot create {PRIVSEP_DIR}: {e}"),
    }
    let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("stat {PRIVSEP_DIR}: {e}"));
    assert!(
        meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o022 == 0,
        "{PRIVSEP_DIR} must be a root-owned directory not writable by group or others"
    );
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0")
}

/// `/etc/ssh/sshd_config` with its drop-in directory replaced by `<dir>/sshd_config.d`, which
/// gets `twostep.conf` with `dropin`.
fn debian_base(dir: &Path, dropin: &[String]) -> String {
    const SYSTEM: &str = "/etc/ssh/sshd_config";
    const INCLUDE: &str = "Include /etc/ssh/sshd_config.d/*.conf";
    let system = std::fs::read_to_string(SYSTEM)
        .unwrap_or_else(|e| panic!("{SYSTEM} (Debian package openssh-server): {e}"));
    assert!(
        system.lines().any(|line| line.trim() == INCLUDE),
        "{SYSTEM} has no `{INCLUDE}` line:\n{system}"
    );
    let dropin_dir = dir.join("sshd_config.d");
    std::fs::create_dir(&dropin_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dropin_dir.display()));
    let dropin: String = dropin.iter().map(|line| format!("{line}\n")).collect();
    write(&dropin_dir.join("twostep.conf"), &dropin);
    let include = format!("Include {}/*.conf", dropin_dir.display());
    let mut text = format!("# {SYSTEM}, its Include line pointed at the test's directory:\n");
    for line in system.lines() {
        let line = if line.trim() == INCLUDE {
            &include
        } else {
            line
        };
        let _ = writeln!(text, "{line}");
    }
    text
}

fn config_text(
    options: &SshdBuilder<'_>,
    dir: &Path,
    host_key: &Path,
    port: u16,
    debian_base: Option<&str>,
) -> String {
    let mut text = String::from("# sshd_config of a twostep test server (twostep_tests::sshd)\n");
    let _ = writeln!(text, "ListenAddress 127.0.0.1");
    let _ = writeln!(text, "Port {port}");
    let _ = writeln!(text, "HostKey {}", host_key.display());
    let _ = writeln!(text, "PidFile {}", dir.join("sshd.pid").display());
    let _ = writeln!(text, "LogLevel VERBOSE");
    let _ = writeln!(text, "UseDNS no");
    options.extra.iter().for_each(|line| {
        let _ = writeln!(text, "{line}");
    });
    if let Some(base) = debian_base {
        text.push_str(base);
        return text;
    }
    for line in [
        "UsePAM yes",
        "KbdInteractiveAuthentication yes",
        "PasswordAuthentication no",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "StrictModes yes",
        "PermitRootLogin no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
    ] {
        let _ = writeln!(text, "{line}");
    }
    let _ = writeln!(
        text,
        "AuthenticationMethods {}",
        options.authentication_methods
    );
    text
}

/// Codes as an authenticator app shows them on the real clock (sshd runs the module with the
/// real clock), computed with oathtool (SHA1, 6 digits, 30 s). A time step is accepted once, so
/// [`next_code`](Self::next_code) never returns a step it returned before: within one step the second
/// code is the next step's (accepted with the default skew of one step); a third waits for
/// the step to change.
#[derive(Debug, Clone)]
pub struct LiveCodes {
    secret: String,
    last_step: Option<i64>,
}

/// Seconds per TOTP step of [`LiveCodes`].
const PERIOD: i64 = 30;

impl LiveCodes {
    /// Codes for a base32 secret nobody has used yet.
    pub fn new(secret_b32: &str) -> LiveCodes {
        LiveCodes {
            secret: secret_b32.to_string(),
            last_step: None,
        }
    }

    /// Codes for the key an enrollment showed, after the code the askpass program confirmed
    /// the enrollment with (which is used up).
    pub fn after_enrollment(app: &AppKey) -> LiveCodes {
        assert!(
            app.algorithm == "SHA1" && app.digits == 6 && app.period == PERIOD,
            "LiveCodes only computes SHA1/6/30 codes: {app:?}"
        );
        LiveCodes {
            secret: app.secret.clone(),
            last_step: Some(app.epoch.div_euclid(PERIOD)),
        }
    }

    /// The code of the earliest step that is not before now and not already returned.
    pub fn next_code(&mut self) -> String {
        let step = loop {
            let now_step = now().div_euclid(PERIOD);
            let step = self
                .last_step
                .map_or(now_step, |last| now_step.max(last + 1));
            if step <= now_step + 1 {
                break step;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        self.last_step = Some(step);
        crate::oath::totp(&self.secret, step * PERIOD)
    }

    /// A well-formed code that is wrong for every step within two of now.
    pub fn wrong(&self) -> String {
        let now_step = now().div_euclid(PERIOD);
        let valid: Vec<String> = (now_step - 2..=now_step + 2)
            .map(|step| crate::oath::totp(&self.secret, step * PERIOD))
            .collect();
        (0..1_000_000)
            .map(|n| format!("{:06}", (n * 7_919 + 123_457) % 1_000_000))
            .find(|code| !valid.contains(code))
            .expect("some code is wrong")
    }
}

/// The real time, in seconds since 1970.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock after 1970")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_file_round_trips() {
        let file = "text\t(u@127.0.0.1) Password: \n\
                    app-code\t(u@127.0.0.1) \u{2580}\u{2584} Key: AB\\nURI: otpauth://x\\\\y\\nCode shown by the app: \n";
        let prompts = parse_prompts(file, "u");
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[0].prompt, "Password: ");
        assert!(prompts[0].info.is_empty());
        assert_eq!(prompts[1].kind, "app-code");
        assert_eq!(
            prompts[1].info,
            ["\u{2580}\u{2584} Key: AB", "URI: otpauth://x\\y"]
        );
        assert_eq!(prompts[1].prompt, "Code shown by the app: ");
    }
}
