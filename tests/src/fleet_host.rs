//! One simulated fleet-mode host for tests beside `tests/tests/fleet.rs`: a [`TestEnv`] whose
//! config has a `[store]` for PostgreSQL (password file, store socket and fleet key in its
//! directory), and its own `twostep serve-store --foreground`, stopped by pid on drop.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{Login, TestEnv, paths, postgres, run};

#[derive(Debug)]
pub struct FleetHost {
    pub env: TestEnv,
    serve: Option<Child>,
}

impl FleetHost {
    /// A host whose `[store]` has the fixed keys (backend, password file with
    /// [`postgres::PASSWORD`], socket, key file, `timeout_secs = 3`) and `store_lines`: `url`,
    /// `sslmode`, `ca_file`, `host_id`, … (`{dir}` stands for the host's directory).
    pub fn new(name: &str, store_lines: &str) -> FleetHost {
        let host = FleetHost::from_env(TestEnv::builder(name).build());
        host.set_store(store_lines);
        host
    }

    /// A host of `env`, whose config already has its `[store]` (with `password_file =
    /// "{dir}/db.pass"`, `socket = "{dir}/run/store.sock"` and `key_file = "{dir}/fleet.key"`).
    pub fn from_env(env: TestEnv) -> FleetHost {
        write_private(&env.dir().join("db.pass"), postgres::PASSWORD.as_bytes());
        FleetHost { env, serve: None }
    }

    /// Rewrites the config with other `store_lines` (see [`new`](Self::new)).
    pub fn set_store(&self, store_lines: &str) {
        let store = format!(
            "[store]\nbackend = \"postgresql\"\npassword_file = \"{{dir}}/db.pass\"\n\
             timeout_secs = 3\nsocket = \"{{dir}}/run/store.sock\"\n\
             key_file = \"{{dir}}/fleet.key\"\n{store_lines}\n"
        );
        self.env.write_config(&self.env.standard_config(&store));
    }

    pub fn key_file(&self) -> PathBuf {
        self.env.dir().join("fleet.key")
    }

    pub fn socket(&self) -> PathBuf {
        self.env.dir().join("run/store.sock")
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.env.cli(args)
    }

    /// Runs the CLI, panicking with its output unless it succeeds; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.env.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "twostep {args:?} failed\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs the CLI, panicking unless it fails; returns its stdout and stderr together.
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self.env.cli(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "twostep {args:?} succeeded\n{text}");
        text
    }

    /// Starts `twostep serve-store --foreground`, waiting for its socket; or, when it exits at
    /// once, returns its standard error.
    pub fn start_serve(&mut self) -> Result<(), String> {
        let mut command = Command::new(paths::cli());
        self.spawn_serve(&mut command)
    }

    /// Like [`start_serve`](Self::start_serve), but socket-activated as twostep-store.socket
    /// does it: `systemd-socket-activate` binds the store socket and execs serve-store with it
    /// as fd 3 (`LISTEN_FDS=1`, `LISTEN_PID` its own pid).
    pub fn start_serve_socket_activated(&mut self) -> Result<(), String> {
        let dir = self.socket().parent().expect("a directory").to_path_buf();
        std::fs::create_dir_all(&dir).expect("create the socket directory");
        let mut command = Command::new("systemd-socket-activate");
        command.arg("--listen").arg(self.socket()).arg(paths::cli());
        self.spawn_serve(&mut command)
    }

    fn spawn_serve(&mut self, command: &mut Command) -> Result<(), String> {
        let log = std::fs::File::create(self.serve_log()).expect("log file");
        let mut child = command
            .env_remove("TWOSTEP_CONFIG")
            .arg("--config")
            .arg(self.env.config_path())
            .args(["serve-store", "--foreground"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start serve-store");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(self.serve_stderr());
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                self.serve = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                run::stop(&mut child);
                panic!("serve-store did not start:\n{}", self.serve_stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the running (or last) serve-store printed to stderr.
    pub fn serve_stderr(&self) -> String {
        std::fs::read_to_string(self.serve_log()).unwrap_or_default()
    }

    fn serve_log(&self) -> PathBuf {
        self.env.dir().join("serve.err")
    }

    /// The running serve-store's pid.
    pub fn serve_pid(&self) -> Option<u32> {
        self.serve.as_ref().map(Child::id)
    }

    pub fn stop_serve(&mut self) {
        if let Some(mut child) = self.serve.take() {
            run::stop(&mut child);
        }
    }

    /// One login of `user` answering `answer` at `time`.
    pub fn login(&self, user: &str, answer: &str, time: i64) -> Login {
        self.env.login(user, &[answer], time)
    }
}

impl Drop for FleetHost {
    fn drop(&mut self) {
        self.stop_serve();
    }
}

/// Writes `bytes` to `path`, created root 0600 (the password file, a fleet key).
pub fn write_private(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create a private file");
    file.write_all(bytes).expect("write");
}

/// Enrolls `user` in `env`'s own state directory, as a box does before it joins the fleet:
/// through a copy of its config with the file backend (the configured backend is the fleet's,
/// which every admin command now uses). The emergency codes.
pub fn enroll_locally(env: &TestEnv, user: &str, secret: &str) -> Vec<String> {
    let text = std::fs::read_to_string(env.config_path()).expect("read the config");
    assert!(text.contains("backend = \"postgresql\""), "{text}");
    let file_config = env.dir().join("file-backend.toml");
    write_private(
        &file_config,
        text.replace("backend = \"postgresql\"", "backend = \"file\"")
            .as_bytes(),
    );
    env.add_secret(secret);
    let out = run::run_with_input(
        Command::new(paths::cli())
            .env_remove("TWOSTEP_CONFIG")
            .arg("--config")
            .arg(&file_config)
            .args(["enroll", user, "--secret-stdin", "--yes"]),
        Some(format!("{secret}\n").as_bytes()),
        run::TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "local enroll failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes = crate::env::emergency_codes(&stdout);
    codes.iter().for_each(|c| env.add_secret(c));
    codes
}
