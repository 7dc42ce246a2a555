//! A private PostgreSQL server for the fleet tests: Debian's server binaries, `initdb` as the
//! `postgres` user into a directory of its own, listening on 127.0.0.1 on a free port (and a
//! Unix socket in that directory, nothing in /run), password authentication over TCP for the
//! `twostep` role. Stopped by its pid (SIGINT: fast shutdown) and removed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::run;
use twostep_testkit::pg_server;
pub use twostep_testkit::pg_server::BIN_DIR;
pub const ROLE: &str = "twostep";
pub const PASSWORD: &str = "fleet-test-password";

#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    port: u16,
}

impl Postgres {
    /// Whether the server binaries are installed (the tests fail, not skip, without them).
    pub fn installed() -> bool {
        pg_server::installed()
    }

    /// initdb and start; panics with the server's log on failure.
    pub fn start(name: &str) -> Postgres {
        let db = Postgres::init(name);
        db.start_again();
        db
    }

    /// Like [`start`](Self::start), but with TLS (`ssl = on`) on the certificate `cert` and its
    /// private key `key` (PEM files, copied into the server's directory), and a `pg_hba.conf`
    /// that allows the `twostep` role over TCP only through TLS (`hostssl`, scram-sha-256):
    /// plain connections to 127.0.0.1 are rejected (`hostnossl … reject`). The local socket in
    /// the server's directory stays trusted.
    pub fn start_tls(name: &str, cert: &Path, key: &Path) -> Postgres {
        let db = Postgres::init(name);
        let server_cert = db.dir.join("server.crt");
        let server_key = db.dir.join("server.key");
        std::fs::copy(cert, &server_cert).expect("copy the server certificate");
        std::fs::copy(key, &server_key).expect("copy the server key");
        // PostgreSQL refuses a key file that its own user cannot read or that others can.
        std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the server key");
        chown_postgres(&server_cert);
        chown_postgres(&server_key);
        let data = db.data_dir();
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&format!(
            "\n# twostep tests: TLS\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            server_cert.display(),
            server_key.display()
        ));
        std::fs::write(&conf, text).expect("write postgresql.conf");
        let hba = "# twostep tests: TCP through TLS only\n\
                   local all all trust\n\
                   hostnossl all all 0.0.0.0/0 reject\n\
                   hostnossl all all ::/0 reject\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\n\
                   hostssl all all ::1/128 scram-sha-256\n";
        std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        db.start_again();
        db
    }

    /// initdb into a new directory, not started.
    fn init(name: &str) -> Postgres {
        crate::require_root();
        assert!(
            Postgres::installed(),
            "the fleet tests need PostgreSQL's server binaries in {BIN_DIR} (apt-get install \
             postgresql)"
        );
        let dir = std::env::temp_dir().join(format!("twostep-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the database directory");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).expect("write the password file");
        chown_postgres(&dir);
        chown_postgres(&pwfile);
        let db = Postgres {
            port: free_port(),
            dir,
        };
        let data = db.data_dir();
        let out = as_postgres(&[
            &format!("{BIN_DIR}/initdb"),
            "-D",
            data.to_str().expect("utf-8 path"),
            "-U",
            ROLE,
            &format!("--pwfile={}", pwfile.display()),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--no-instructions",
        ]);
        assert!(out.status.success(), "initdb failed:\n{}", text(&out));
        db
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq connection string for the `twostep` role (password in [`PASSWORD`]).
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={ROLE} dbname=postgres",
            self.port
        )
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = pg_server::server_options(self.port, &self.dir);
        let out = as_postgres(&[
            &format!("{BIN_DIR}/pg_ctl"),
            "-D",
            self.data_dir().to_str().expect("utf-8 path"),
            "-o",
            &options,
            "-l",
            self.dir.join("server.log").to_str().expect("utf-8 path"),
            "-w",
            "-t",
            "30",
            "start",
        ]);
        assert!(
            out.status.success(),
            "pg_ctl start failed:\n{}\n{}",
            text(&out),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// The server's log so far (`server.log`: connections refused and why, TLS failures).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The postmaster's pid, from its pid file.
    pub fn pid(&self) -> Option<libc::pid_t> {
        pg_server::postmaster_pid(&self.data_dir())
    }

    /// Stops the server by its pid (SIGINT, PostgreSQL's fast shutdown: sessions are ended),
    /// waiting for it to exit.
    pub fn stop(&self) {
        pg_server::stop(&self.data_dir());
    }

    /// `kill -9` of the postmaster and every server process (a crash), waiting until they are
    /// gone. Their pid file stays, as after a real crash; it (and the socket's lock file) is
    /// removed only when the postmaster's pid is a zombie nobody reaps (a container's pid 1 may not), which
    /// PostgreSQL would take for a live server.
    pub fn crash(&self) {
        let Some(pid) = self.pid() else {
            return;
        };
        self.signal_all(libc::SIGKILL);
        let state = |pid: libc::pid_t| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()?.to_string()))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match state(pid).as_deref() {
                None => return,
                Some("Z") => {
                    let _ = std::fs::remove_file(self.data_dir().join("postmaster.pid"));
                    let socket_lock = format!(".s.PGSQL.{}.lock", self.port);
                    let _ = std::fs::remove_file(self.dir.join(socket_lock));
                    return;
                }
                Some(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        panic!("the postmaster {pid} survived SIGKILL");
    }

    /// Stops (`SIGSTOP`) or continues (`SIGCONT`) the postmaster and every server process it
    /// started: a database that hangs instead of refusing.
    pub fn signal_all(&self, signal: libc::c_int) {
        let Some(pid) = self.pid() else {
            return;
        };
        let mut pids = vec![pid];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<libc::pid_t>().ok());
            if ppid == Some(pid) {
                if let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                    pids.push(child);
                }
            }
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions; the pids are the postmaster's
            // and its children's, read just now.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// `pg_dump` of the whole database, as text (every table, every column).
    pub fn dump(&self) -> String {
        let out = run::run(
            Command::new(format!("{BIN_DIR}/pg_dump"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", ROLE])
                .arg("postgres")
                .env("PGPASSWORD", PASSWORD),
            run::TIMEOUT,
        );
        assert!(out.status.success(), "pg_dump failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs one SQL statement through psql (the local socket, trusted), returning its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = run::run(
            Command::new(format!("{BIN_DIR}/psql"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", ROLE])
                .args(["-d", "postgres", "-At", "-c", sql])
                .env("PGPASSWORD", PASSWORD),
            run::TIMEOUT,
        );
        assert!(out.status.success(), "psql {sql:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("TWOSTEP_TESTS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    run::run(&mut pg_server::as_postgres(args), Duration::from_secs(120))
}

fn chown_postgres(path: &Path) {
    pg_server::chown_postgres(path).expect("chown to postgres");
}

fn free_port() -> u16 {
    pg_server::free_port().expect("a free port")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
