//! What the fleet tests' PostgreSQL server (tests/src/postgres.rs) and the bench's
//! (bench/src/fleet.rs) share: Debian's server binaries, run as the `postgres` user in a
//! directory of their own, on 127.0.0.1 and a free port, stopped by the postmaster's pid.

use std::ffi::CString;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where Debian's postgresql-15 puts the server binaries (`postgresql` package).
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Whether the server binaries are installed.
pub fn installed() -> bool {
    Path::new(BIN_DIR).join("initdb").exists()
}

/// `runuser -u postgres -- args…`, run from `/` (the server refuses to run as root).
pub fn as_postgres(args: &[&str]) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .args(args)
        .current_dir("/");
    command
}

/// Gives `path` to the `postgres` user.
pub fn chown_postgres(path: &Path) -> Result<(), String> {
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
    // SAFETY: chown gets a NUL-terminated path that outlives the call; no memory is shared.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(format!("chown {}", path.display()));
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

/// `pg_ctl start`'s `-o` options: 127.0.0.1 and `port`, the Unix socket in `socket_dir` (not
/// /run).
pub fn server_options(port: u16, socket_dir: &Path) -> String {
    format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
        socket_dir.display()
    )
}

/// The postmaster's pid, from the pid file in its data directory.
pub fn postmaster_pid(data: &Path) -> Option<libc::pid_t> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Stops the server of `data` by its pid (SIGINT, PostgreSQL's fast shutdown: sessions are
/// ended), waiting up to 30 seconds for it to exit.
pub fn stop(data: &Path) {
    let Some(pid) = postmaster_pid(data) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; the pid is the postmaster's, read from
    // its own pid file while it runs.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    // SAFETY: signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
