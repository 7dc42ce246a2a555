//! [`SelfService`]: a `twostep serve-self` started by a test, by pid, on a socket in a fresh
//! root-owned 0755 directory under /tmp (the test environment's own directory is 0700, which a
//! normal user cannot reach), with its own PAM service for password checks (pam_unix alone, as
//! the shipped /etc/pam.d/twostep-self). Users talk to it with the real `twostep self`, run as
//! them by `runuser`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{TestEnv, paths, run};

const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The password stack of the shipped /etc/pam.d/twostep-self.
pub const PASSWORD_STACK: &str = "auth required pam_unix.so\naccount required pam_unix.so\n";

#[derive(Debug)]
pub struct SelfService {
    child: Child,
    socket_dir: PathBuf,
    socket: PathBuf,
    pam_service: String,
    log: PathBuf,
}

impl SelfService {
    /// Starts the service for `env`'s config; returns once its socket accepts connections.
    pub fn start(env: &TestEnv) -> SelfService {
        SelfService::start_with(env, &[])
    }

    /// Like [`start`](Self::start), with more `serve-self` arguments (e.g. `--idle-exit 1`).
    pub fn start_with(env: &TestEnv, extra: &[&str]) -> SelfService {
        let pam_service = format!("{}-self", env.service());
        write_pam_file(&pam_service);
        let socket_dir = PathBuf::from(format!("/tmp/{}", pam_service));
        let _ = std::fs::remove_dir_all(&socket_dir);
        std::fs::create_dir(&socket_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", socket_dir.display()));
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the socket directory");
        let socket = socket_dir.join("self.sock");
        let log = env.dir().join("serve-self.log");
        let child = spawn(env, &socket, &pam_service, &log, extra);
        let service = SelfService {
            child,
            socket_dir,
            socket,
            pam_service,
            log,
        };
        service.wait_until_listening();
        service
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "serve-self did not listen on {} within {START_TIMEOUT:?}; its log:\n{}",
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The PAM service that checks passwords (`/etc/pam.d/<name>`).
    pub fn pam_service(&self) -> &str {
        &self.pam_service
    }

    /// What the service printed (`--foreground`: every event).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `twostep self --socket <socket> <args>` as `user`, with `input` on stdin.
    pub fn run_as(&self, user: &str, args: &[&str], input: Option<&str>) -> Output {
        let mut command = Command::new("runuser");
        command
            .args(["-u", user, "--"])
            .arg(paths::cli())
            .arg("self")
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("TWOSTEP_CONFIG");
        run::run_with_input(&mut command, input.map(str::as_bytes), run::TIMEOUT)
    }

    /// [`run_as`](Self::run_as) with `--json` added: (exit status 0, the printed object).
    pub fn json_as(
        &self,
        user: &str,
        args: &[&str],
        input: Option<&str>,
    ) -> (bool, serde_json::Value) {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run_as(user, &args, input);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "`twostep self {}` as {user} printed no JSON ({e}): stdout {stdout:?}, stderr {:?}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), value)
    }

    /// Like [`json_as`](Self::json_as), panicking unless it succeeded.
    pub fn ok_as(&self, user: &str, args: &[&str], input: Option<&str>) -> serde_json::Value {
        let (ok, value) = self.json_as(user, args, input);
        assert!(
            ok,
            "`twostep self {}` as {user} failed: {}",
            args.join(" "),
            brief(&value)
        );
        value
    }

    /// Like [`json_as`](Self::json_as), panicking unless it failed; the error's `kind`.
    pub fn kind_as(&self, user: &str, args: &[&str], input: Option<&str>) -> String {
        let (ok, value) = self.json_as(user, args, input);
        assert!(
            !ok,
            "`twostep self {}` as {user} succeeded: {}",
            args.join(" "),
            brief(&value)
        );
        value["kind"].as_str().unwrap_or_default().to_string()
    }

    /// Sends `request` (raw bytes, newline included if wanted) as `user` and returns the
    /// response line, through a small Python client (not the product's).
    pub fn raw_as(&self, user: &str, request: &[u8]) -> String {
        let mut command = Command::new("runuser");
        command
            .args(["-u", user, "--", "python3", "-c", RAW_CLIENT])
            .arg(&self.socket);
        let out = run::run_with_input(&mut command, Some(request), run::TIMEOUT);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Opens `count` connections as `user` that send nothing, prints how many were answered at
    /// once (refused as busy), and holds the rest open for `hold` seconds. Returns once the
    /// count is known; the holding process is the returned child.
    pub fn hold_idle_as(&self, user: &str, count: usize, hold: u64) -> (usize, Child) {
        let mut child = Command::new("runuser")
            .args(["-u", user, "--", "python3", "-c", IDLE_CLIENT])
            .arg(&self.socket)
            .arg(count.to_string())
            .arg(hold.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the idle client");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the idle client's count");
        let busy = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("idle client said {line:?}"));
        (busy, child)
    }
}

impl Drop for SelfService {
    fn drop(&mut self) {
        run::stop(&mut self.child);
        let _ = std::fs::remove_file(format!("/etc/pam.d/{}", self.pam_service));
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

/// `value` without its QR code's SVG, for assertion messages.
pub fn brief(value: &serde_json::Value) -> String {
    let mut value = value.clone();
    if value.get("qr_svg").is_some() {
        value["qr_svg"] = "<svg …>".into();
    }
    value.to_string()
}

fn write_pam_file(service: &str) {
    let path = format!("/etc/pam.d/{service}");
    std::fs::write(&path, PASSWORD_STACK).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
}

fn spawn(env: &TestEnv, socket: &Path, pam_service: &str, log: &Path, extra: &[&str]) -> Child {
    let log = std::fs::File::create(log).expect("create the service log");
    Command::new(paths::cli())
        .env_remove("TWOSTEP_CONFIG")
        .arg("--config")
        .arg(env.config_path())
        .args(["serve-self", "--foreground", "--socket"])
        .arg(socket)
        .args(["--pam-service", pam_service])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start twostep serve-self")
}

/// Reads stdin, sends it, prints the whole answer.
const RAW_CLIENT: &str = "\
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(sys.stdin.buffer.read())
out = b''
while True:
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        break
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode('utf-8', 'replace'))
";

/// argv: socket, count, seconds to hold. Prints how many connections were answered within a
/// second without sending anything (the service's "busy"), then holds the others.
const IDLE_CLIENT: &str = "\
import socket, sys, time, select
path, count, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conns = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    conns.append(s)
answered = set()
deadline = time.time() + 1.0
while time.time() < deadline:
    ready, _, _ = select.select([c for c in conns if c not in answered], [], [], 0.1)
    for c in ready:
        data = c.recv(65536)
        if b'limited' in data:
            answered.add(c)
print(len(answered), flush=True)
time.sleep(hold)
";
