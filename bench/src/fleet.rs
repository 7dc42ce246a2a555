//! The fleet backend in the bench (issue 16): pam_twostep with `[store] backend =
//! "postgresql"`, through this host's `twostep serve-store`, on a PostgreSQL server of the
//! bench's own (Debian's server binaries, `initdb` as the `postgres` user into a directory of
//! its own, 127.0.0.1 on a free port, stopped by pid). Skipped, and said so, when the server
//! binaries are not installed: the bench is not a test.

use std::ffi::CString;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::setup::{self, LogDrain, Services, USER};

const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// A running PostgreSQL server, stopped (SIGINT, fast shutdown) and removed when dropped.
#[derive(Debug)]
pub struct Database {
    dir: PathBuf,
    port: u16,
}

impl Database {
    /// Starts a server, or says why not. Call it before the bench's private /dev is mounted:
    /// the server needs the real /dev/shm.
    pub fn start() -> Result<Database, String> {
        if !Path::new(BIN_DIR).join("initdb").exists() {
            return Err(format!(
                "no PostgreSQL server binaries in {BIN_DIR} (apt-get install postgresql)"
            ));
        }
        // Not under the bench's scratch directory: that is root's 0700, and the server runs
        // as `postgres`.
        let dir = PathBuf::from(format!("/var/tmp/twostep-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        chown_postgres(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let db = Database { dir, port };
        let data = db.dir.join("data");
        // Trust on loopback: the bench measures the store, not password hashing.
        as_postgres(&[
            &format!("{BIN_DIR}/initdb"),
            "-D",
            &data.display().to_string(),
            "-U",
            "bench",
            "--auth=trust",
            "--no-instructions",
        ])?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
            db.dir.display()
        );
        as_postgres(&[
            &format!("{BIN_DIR}/pg_ctl"),
            "-D",
            &data.display().to_string(),
            "-o",
            &options,
            "-l",
            &db.dir.join("server.log").display().to_string(),
            "-w",
            "-t",
            "30",
            "start",
        ])?;
        Ok(db)
    }

    fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=bench dbname=postgres",
            self.port
        )
    }

    fn pid(&self) -> Option<libc::pid_t> {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill takes no pointers; the pid is the postmaster's, from its pid file.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(30);
            // SAFETY: signal 0 only asks whether the process exists.
            while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One fleet host: its config, its `serve-store` (stopped by pid when dropped) and the PAM
/// service of the module with that config.
#[derive(Debug)]
pub struct Host {
    pub service: String,
    serve: Child,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.serve.kill();
        let _ = self.serve.wait();
    }
}

/// Sets up a host in `dir` against `db`: `fleet init`, `serve-store`, USER enrolled through it
/// with the bench key, and the PAM service. The lockout settings are the file store's in the
/// bench (window and duration of 1 s, so that runs of wrong codes never lock).
pub fn host(
    db: &Database,
    dir: &Path,
    module: &Path,
    cli: &Path,
    drain: &LogDrain,
    services: &mut Services,
) -> Result<Host, String> {
    let config = dir.join("twostep.toml");
    let socket = dir.join("run/store.sock");
    let text = format!(
        "state_dir = \"{}\"\nissuer = \"bench\"\n[lockout]\nwindow_secs = 1\nduration_secs = 1\n\
         [log]\nsocket = \"{}\"\n[store]\nbackend = \"postgresql\"\nurl = \"{}\"\n\
         sslmode = \"disable\"\nhost_id = \"bench\"\nsocket = \"{}\"\nkey_file = \"{}\"\n",
        dir.join("state").display(),
        drain.path().display(),
        db.url(),
        socket.display(),
        dir.join("fleet.key").display()
    );
    setup::write_file(&config, text.as_bytes(), 0o600);
    let cli_run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new(cli)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .map_err(|e| format!("run {}: {e}", cli.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "twostep {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    cli_run(&["fleet", "init"])?;
    let log = std::fs::File::create(dir.join("serve-store.err")).map_err(|e| e.to_string())?;
    let serve = Command::new(cli)
        .arg("--config")
        .arg(&config)
        .args(["serve-store", "--foreground"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start serve-store: {e}"))?;
    let mut host = Host {
        service: String::new(),
        serve,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline || matches!(host.serve.try_wait(), Ok(Some(_))) {
            return Err(format!(
                "serve-store did not start: {}",
                std::fs::read_to_string(dir.join("serve-store.err")).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secret = setup::base32(&setup::secret_bytes());
    cli_run(&["enroll", USER, "--secret", &secret, "--yes", "--force"])?;
    host.service = services.add(
        &format!("twostep-bench-{}-fleet-twostep", std::process::id()),
        &format!(
            "auth required {} config={}",
            module.display(),
            config.display()
        ),
    );
    Ok(host)
}

fn as_postgres(args: &[&str]) -> Result<(), String> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .current_dir("/")
        .output()
        .map_err(|e| format!("runuser: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}{}",
            args[0],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn chown_postgres(path: &Path) -> Result<(), String> {
    let name = CString::new("postgres").map_err(|e| e.to_string())?;
    // SAFETY: getpwnam gets a NUL-terminated name and returns NULL or a pointer to a static
    // entry, read at once, before any other call could change it.
    let ids = unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    };
    let (uid, gid) = ids.ok_or("no postgres user (apt-get install postgresql)")?;
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: chown gets a NUL-terminated path that outlives the call.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(format!("chown {}", path.display()));
    }
    Ok(())
}
