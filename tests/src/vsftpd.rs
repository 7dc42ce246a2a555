//! A throwaway vsftpd on 127.0.0.1 that authenticates through a [`TestEnv`]'s PAM service: a
//! real application with a single password prompt, for the module's one-prompt (`combined=split` / `combined=verify`)
//! mode.
//!
//! vsftpd answers every echo-off PAM prompt with the password the FTP client sent, so the
//! module sees exactly what the user typed in the client's password field. [`Vsftpd::start`]
//! writes its own config (`listen=YES`, `background=NO`, `pam_service_name` = the
//! environment's service, local users, passive mode on 127.0.0.1, a free control port), starts
//! `/usr/sbin/vsftpd CONFIG` and waits for its `220` greeting; dropping it stops the server by
//! pid. [`Vsftpd::list`] lists a user's home directory with `curl`.
//!
//! ```no_run
//! use twostep_tests::TestEnv;
//! use twostep_tests::users::TestUser;
//! use twostep_tests::vsftpd::Vsftpd;
//!
//! let user = TestUser::create("doc");
//! user.write_home_file("marker", "x");
//! let env = TestEnv::builder("ftp_doc")
//!     .stack(&["auth required pam_unix.so", "account required pam_unix.so"])
//!     .build();
//! let ftp = Vsftpd::start(&env);
//! ftp.list(&user, user.password()).assert_listed("marker");
//! ```

use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::env::TestEnv;
use crate::run;
use crate::users::TestUser;

/// The FTP server binary (Debian package vsftpd).
pub const VSFTPD: &str = "/usr/sbin/vsftpd";
/// vsftpd's `secure_chroot_dir`: empty, root-owned, not writable by others.
pub const EMPTY_DIR: &str = "/run/vsftpd/empty";
/// How long vsftpd may take to greet.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running vsftpd for one [`TestEnv`]. Declare it after the environment and the users.
#[derive(Debug)]
pub struct Vsftpd<'a> {
    env: &'a TestEnv,
    dir: PathBuf,
    child: Child,
    port: u16,
}

impl<'a> Vsftpd<'a> {
    /// Starts vsftpd with the environment's PAM service and waits for its greeting.
    pub fn start(env: &'a TestEnv) -> Vsftpd<'a> {
        crate::require_root();
        assert!(
            Path::new(VSFTPD).is_file(),
            "{VSFTPD} is missing: install the Debian package vsftpd"
        );
        std::fs::create_dir_all(EMPTY_DIR)
            .unwrap_or_else(|e| panic!("cannot create {EMPTY_DIR}: {e}"));
        let dir = env.dir().join("vsftpd");
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let config = dir.join("vsftpd.conf");
        for _ in 0..5 {
            let port = crate::sshd::free_port();
            std::fs::write(&config, config_text(env, &dir, port))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
            let out = File::create(dir.join("vsftpd.out")).expect("create vsftpd.out");
            let child = Command::new(VSFTPD)
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {VSFTPD}: {e}"));
            let mut server = Vsftpd {
                env,
                dir: dir.clone(),
                child,
                port,
            };
            match server.wait_greeting() {
                Ok(()) => return server,
                // Another process took the port between our probe and vsftpd's bind: retry.
                Err(output) if output.contains("could not bind") => continue,
                Err(output) => panic!(
                    "vsftpd did not start; config:\n{}\noutput:\n{output}",
                    std::fs::read_to_string(&config).unwrap_or_default()
                ),
            }
        }
        panic!("vsftpd could not bind a free port in 5 tries");
    }

    /// Connects until vsftpd sends `220`; on failure returns its output.
    fn wait_greeting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_none() && greets(self.port) {
                return Ok(());
            }
            if exited.is_some() || Instant::now() >= deadline {
                let output =
                    std::fs::read_to_string(self.dir.join("vsftpd.out")).unwrap_or_default();
                return Err(format!("{output}\n(exit: {exited:?})"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The control port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// vsftpd's own log so far (protocol lines; passwords are not logged by vsftpd).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vsftpd.log")).unwrap_or_default()
    }

    /// Lists `user`'s home directory with `curl --user USER:ANSWER ftp://127.0.0.1:PORT/`,
    /// where `answer` is what the user types as the password. The answer is remembered as a
    /// secret for [`TestEnv::assert_logs_clean`].
    pub fn list(&self, user: &TestUser, answer: &str) -> FtpResult {
        self.env.add_secret(answer);
        let logs_before = self.env.logs().len();
        let server_log_before = self.log().len();
        let output = run::run(
            Command::new("curl")
                .args(["-sS", "--max-time", "20", "--user"])
                .arg(format!("{}:{answer}", user.name()))
                .arg(format!("ftp://127.0.0.1:{}/", self.port)),
            run::TIMEOUT,
        );
        FtpResult {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            logs: self.env.logs().split_off(logs_before),
            server_log: self
                .log()
                .get(server_log_before..)
                .unwrap_or("")
                .to_string(),
        }
    }
}

impl Drop for Vsftpd<'_> {
    fn drop(&mut self) {
        crate::run::stop(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- vsftpd log:\n{}", self.log());
        }
    }
}

/// What one curl run did.
#[derive(Debug, Clone)]
pub struct FtpResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Syslog lines of the test environment received during the run.
    pub logs: Vec<String>,
    /// vsftpd's log lines written during the run.
    pub server_log: String,
}

impl FtpResult {
    /// Panics unless the login worked and the listing shows `name`.
    pub fn assert_listed(&self, name: &str) -> &Self {
        assert!(
            self.status.success()
                && self
                    .stdout
                    .lines()
                    .any(|line| line.split_whitespace().last() == Some(name)),
            "expected a listing with {name}\n{self}"
        );
        self
    }

    /// Panics unless the server refused the login: `530`, curl's exit status 67.
    pub fn assert_refused(&self) -> &Self {
        assert!(
            self.status.code() == Some(67) && self.stderr.contains("530"),
            "expected 530 (login refused)\n{self}"
        );
        self
    }

    /// Panics unless some syslog line of this run contains all of `needles`; returns it.
    pub fn assert_logged(&self, needles: &[&str]) -> &str {
        crate::syslog::assert_logged(&self.logs, needles, self)
    }
}

impl std::fmt::Display for FtpResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "--- curl exit: {}", self.status)?;
        writeln!(f, "--- curl stdout:\n{}", self.stdout)?;
        writeln!(f, "--- curl stderr:\n{}", self.stderr)?;
        writeln!(f, "--- module log lines:")?;
        self.logs
            .iter()
            .try_for_each(|line| writeln!(f, "{line}"))?;
        writeln!(f, "--- vsftpd log:\n{}", self.server_log)
    }
}

/// Whether a server on `port` greets like an FTP server (`220`).
fn greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 3];
    stream.read_exact(&mut buf).is_ok() && &buf == b"220"
}

fn config_text(env: &TestEnv, dir: &Path, port: u16) -> String {
    let mut text = String::from("# vsftpd.conf of a twostep test server (twostep_tests::vsftpd)\n");
    let _ = writeln!(text, "listen_port={port}");
    let _ = writeln!(text, "pam_service_name={}", env.service());
    let _ = writeln!(text, "vsftpd_log_file={}", dir.join("vsftpd.log").display());
    let _ = writeln!(text, "secure_chroot_dir={EMPTY_DIR}");
    for line in [
        "listen=YES",
        "listen_ipv6=NO",
        "listen_address=127.0.0.1",
        "background=NO",
        "anonymous_enable=NO",
        "local_enable=YES",
        "write_enable=NO",
        "userlist_enable=NO",
        // Passive data connections on 127.0.0.1; the kernel picks the port (no fixed range
        // that parallel tests could fight over).
        "pasv_enable=YES",
        "pasv_address=127.0.0.1",
        "connect_from_port_20=NO",
        "xferlog_enable=YES",
        "xferlog_std_format=NO",
        "log_ftp_protocol=YES",
        "delay_failed_login=0",
        "delay_successful_login=0",
    ] {
        let _ = writeln!(text, "{line}");
    }
    text
}
