//! The fleet backend in the bench (issue 16): pam_twostep with `[store] backend =
//! "postgresql"`, through this host's `twostep serve-store`, on a PostgreSQL server of the
//! bench's own (Debian's server binaries, `initdb` as the `postgres` user into a directory of
//! its own, 127.0.0.1 on a free port, stopped by pid). Skipped, and said so, when the server
//! binaries are not installed: the bench is not a test.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::setup::{self, LogDrain, Services, USER};
use twostep_testkit::pg_server::{self, BIN_DIR, chown_postgres};

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
        if !pg_server::installed() {
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
        let port = pg_server::free_port()?;
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
        let options = pg_server::server_options(port, &db.dir);
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
}

impl Drop for Database {
    fn drop(&mut self) {
        pg_server::stop(&self.dir.join("data"));
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
    let out = pg_server::as_postgres(args)
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
