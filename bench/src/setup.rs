//! The bench's private world: a mount namespace with its own /dev (whose `log` is the bench's
//! syslog drain) and tmpfs, a scratch directory, PAM service files, and each module's state.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const PAM_D: &str = "/etc/pam.d";
/// The PAM user of every measured login (an existing account, as the peers look users up).
pub const USER: &str = "daemon";
/// 20 bytes, the same key for the three modules.
pub const SECRET_HEX: &str = "5448495320495320746865206265e3e3e3e3e3e3";

/// Mounts a tmpfs (root, 0700) on `dir`.
pub fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    let target = dir.to_str().ok_or("non-UTF-8 path")?;
    twostep_testkit::dev_log::mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        libc::MS_NOSUID,
        Some("size=4g,mode=0700"),
    )
}

/// A syslog socket whose datagrams are read (and kept) by a thread.
#[derive(Debug)]
pub struct LogDrain {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl LogDrain {
    pub fn bind(path: &Path) -> std::io::Result<LogDrain> {
        let socket = UnixDatagram::bind(path)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (lines, stop) = (Arc::clone(&lines), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::SeqCst) {
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                            lines.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::WouldBlock
                                    | ErrorKind::TimedOut
                                    | ErrorKind::Interrupted
                            ) => {}
                        Err(_) => break,
                    }
                }
            })
        };
        Ok(LogDrain {
            path: path.to_path_buf(),
            lines,
            stop,
            reader: Some(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines received so far that contain `needle`.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(100));
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for LogDrain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn create_dir(path: &Path) {
    DirBuilder::new()
        .mode(0o700)
        .create(path)
        .unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
}

/// Writes a new file with exactly `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let _ = std::fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// PAM service files written by the bench, removed when dropped.
#[derive(Debug, Default)]
pub struct Services(Vec<PathBuf>);

impl Services {
    /// Installs `/etc/pam.d/<name>` holding `line` and returns the service name.
    pub fn add(&mut self, name: &str, line: &str) -> String {
        let path = Path::new(PAM_D).join(name);
        write_file(&path, format!("{line}\n").as_bytes(), 0o644);
        self.0.push(path);
        name.to_string()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Where one set of module states lives (the normal disk, or a tmpfs).
#[derive(Debug)]
pub struct Place {
    pub dir: PathBuf,
    pub twostep: String,
    pub ga: String,
    pub oath: String,
}

pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(ALPHABET[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

pub fn secret_bytes() -> Vec<u8> {
    (0..SECRET_HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&SECRET_HEX[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Sets up the three modules' state for USER in `dir` and their PAM services:
/// - pam_twostep: `twostep.toml` (state in `dir/state`, logs to the drain, lockout window and
///   duration of 1 s so that runs of wrong codes never lock), enrolled with the real CLI;
/// - pam_google_authenticator: `ga/daemon` (TOTP, DISALLOW_REUSE, default window, five scratch
///   codes), root 0600, used with `secret=dir/ga/${USER} user=root`;
/// - pam_oath: `oath/users.oath` (`HOTP/T30`), `window=1` (±1 step, as the others).
pub fn place(
    dir: &Path,
    tag: &str,
    module: &Path,
    cli: &Path,
    drain: &LogDrain,
    services: &mut Services,
) -> Place {
    let secret_b32 = base32(&secret_bytes());
    let config = dir.join("twostep.toml");
    let text = format!(
        "state_dir = \"{}\"\nissuer = \"bench\"\n[lockout]\nwindow_secs = 1\nduration_secs = 1\n\
         [log]\nsocket = \"{}\"\n",
        dir.join("state").display(),
        drain.path().display()
    );
    write_file(&config, text.as_bytes(), 0o600);
    let output = Command::new(cli)
        .arg("--config")
        .arg(&config)
        .args(["enroll", USER, "--secret", &secret_b32, "--yes"])
        .output()
        .expect("run the twostep CLI");
    assert!(
        output.status.success(),
        "twostep enroll: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    create_dir(&dir.join("ga"));
    let ga_text = format!(
        "{secret_b32}\n\" TOTP_AUTH\n\" DISALLOW_REUSE\n\" WINDOW_SIZE 3\n\
         11223344\n22334455\n33445566\n44556677\n55667788\n"
    );
    write_file(&dir.join("ga").join(USER), ga_text.as_bytes(), 0o600);

    create_dir(&dir.join("oath"));
    let users = dir.join("oath").join("users.oath");
    write_file(
        &users,
        format!("HOTP/T30 {USER} - {SECRET_HEX}\n").as_bytes(),
        0o600,
    );

    let pid = std::process::id();
    Place {
        dir: dir.to_path_buf(),
        twostep: services.add(
            &format!("twostep-bench-{pid}-{tag}-twostep"),
            &format!(
                "auth required {} config={}",
                module.display(),
                config.display()
            ),
        ),
        ga: services.add(
            &format!("twostep-bench-{pid}-{tag}-ga"),
            &format!(
                "auth required pam_google_authenticator.so secret={}/ga/${{USER}} user=root",
                dir.display()
            ),
        ),
        oath: services.add(
            &format!("twostep-bench-{pid}-{tag}-oath"),
            &format!(
                "auth required pam_oath.so usersfile={} window=1",
                users.display()
            ),
        ),
    }
}

/// Adds records (copies of USER's with the name changed) until `state/users` holds `total`.
pub fn grow_twostep_users(dir: &Path, have: usize, total: usize) {
    let users = dir.join("state").join("users");
    let template = std::fs::read_to_string(users.join(format!("{USER}.toml"))).expect("record");
    let needle = format!("user = \"{USER}\"");
    assert_eq!(
        template.matches(&needle).count(),
        1,
        "record layout changed"
    );
    for i in have..total {
        let name = format!("u{i:06}");
        let text = template.replace(&needle, &format!("user = \"{name}\""));
        write_file(&users.join(format!("{name}.toml")), text.as_bytes(), 0o600);
    }
}

/// Rewrites the pam_oath users file with `total - 1` other users before USER (its worst case:
/// it reads the file line by line until it finds the user).
pub fn grow_oath_users(dir: &Path, total: usize) {
    let mut text = String::with_capacity(total * 64);
    for i in 1..total {
        text.push_str(&format!("HOTP/T30 u{i:06} - {SECRET_HEX}\n"));
    }
    text.push_str(&format!("HOTP/T30 {USER} - {SECRET_HEX}\n"));
    write_file(&dir.join("oath").join("users.oath"), text.as_bytes(), 0o600);
}
