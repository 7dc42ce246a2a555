//! Real local accounts and groups for tests that log in through real servers (sshd, vsftpd).
//!
//! [`TestUser::create`] makes an account with `useradd -m` and a random password set with
//! `chpasswd`; dropping it runs `userdel -r -f` (home and mail spool go too). [`TestGroup`] does
//! the same for a group. Names are `tsu-<prefix>-<pid>-<n>` and `tsg-<prefix>-<pid>-<n>` (at
//! most 32 characters, unique per process and test); accounts left by a test process that was
//! killed are removed by the next process that creates one.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::run;

/// Prefix of the accounts the tests create.
pub const USER_PREFIX: &str = "tsu-";
/// Prefix of the groups the tests create.
pub const GROUP_PREFIX: &str = "tsg-";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static CLEAN_STALE: Once = Once::new();

/// A local account with a home directory and a known password, removed with its home on drop.
#[derive(Debug)]
pub struct TestUser {
    name: String,
    password: String,
    home: PathBuf,
    uid: u32,
    gid: u32,
}

impl TestUser {
    /// Creates `tsu-<prefix>-<pid>-<n>` (`prefix`: up to 8 characters of `[a-z0-9]`) with a
    /// home directory, the shell `/bin/sh` and a random 24-character password.
    pub fn create(prefix: &str) -> TestUser {
        TestUser::create_in(prefix, &[])
    }

    /// Like [`create`](Self::create), with supplementary groups.
    pub fn create_in(prefix: &str, groups: &[&TestGroup]) -> TestUser {
        crate::require_root();
        CLEAN_STALE.call_once(clean_stale);
        let name = unique_name(USER_PREFIX, prefix);
        let mut useradd = Command::new("useradd");
        useradd.args(["-m", "-s", "/bin/sh"]);
        if !groups.is_empty() {
            let list: Vec<&str> = groups.iter().map(|g| g.name()).collect();
            useradd.args(["-G", &list.join(",")]);
        }
        checked(useradd.arg(&name), None);
        // From here on the account exists: a failure below still removes it (drop).
        let mut user = TestUser {
            name,
            password: format!("Pw{}", random_hex(11)),
            home: PathBuf::new(),
            uid: 0,
            gid: 0,
        };
        let input = format!("{}:{}\n", user.name, user.password);
        checked(&mut Command::new("chpasswd"), Some(input.as_bytes()));
        let entry = checked(Command::new("getent").args(["passwd", &user.name]), None);
        let fields: Vec<&str> = entry.trim_end().split(':').collect();
        assert_eq!(fields.len(), 7, "getent passwd {}: {entry:?}", user.name);
        user.home = PathBuf::from(fields[5]);
        let meta = std::fs::metadata(&user.home)
            .unwrap_or_else(|e| panic!("home of {}: {}: {e}", user.name, user.home.display()));
        (user.uid, user.gid) = (meta.uid(), meta.gid());
        assert_ne!(user.uid, 0, "useradd made a root-owned home");
        user
    }

    /// The login name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The password set with chpasswd.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Writes a file owned by the user (mode 0644) into the home directory.
    pub fn write_home_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.home.join(name);
        self.write_owned(&path, contents.as_bytes(), 0o644);
        path
    }

    /// Makes a fresh ed25519 key pair without passphrase in `dir` (root's, e.g. the test
    /// environment's directory) and authorizes its public key in `~/.ssh/authorized_keys`
    /// (`~/.ssh` 0700 and the file 0600, both owned by the user, as sshd's StrictModes wants).
    /// Returns the private key's path, for `ssh -i`.
    pub fn authorize_new_key(&self, dir: &Path) -> PathBuf {
        let key = dir.join(format!("{}.key", self.name));
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("key.pub"));
        checked(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", &self.name, "-f"])
                .arg(&key),
            None,
        );
        let public = std::fs::read(format!("{}.pub", key.display()))
            .unwrap_or_else(|e| panic!("public key of {}: {e}", key.display()));
        let ssh_dir = self.home.join(".ssh");
        match std::fs::create_dir(&ssh_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot create {}: {e}", ssh_dir.display()),
        }
        self.own(&ssh_dir, 0o700);
        self.write_owned(&ssh_dir.join("authorized_keys"), &public, 0o600);
        key
    }

    /// Creates `path` afresh with `bytes`, owned by the user with `mode`.
    fn write_owned(&self, path: &Path, bytes: &[u8], mode: u32) {
        let _ = std::fs::remove_file(path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .and_then(|mut file| file.write_all(bytes))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self.own(path, mode);
    }

    fn own(&self, path: &Path, mode: u32) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .and_then(|()| std::fs::set_permissions(path, PermissionsExt::from_mode(mode)))
            .unwrap_or_else(|e| panic!("cannot chown/chmod {}: {e}", path.display()));
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        remove_account("userdel", &["-r", "-f"], &self.name);
    }
}

/// A local group, removed on drop (drop its members first: declare it before them).
#[derive(Debug)]
pub struct TestGroup {
    name: String,
}

impl TestGroup {
    /// Creates `tsg-<prefix>-<pid>-<n>`.
    pub fn create(prefix: &str) -> TestGroup {
        crate::require_root();
        CLEAN_STALE.call_once(clean_stale);
        let name = unique_name(GROUP_PREFIX, prefix);
        checked(Command::new("groupadd").arg(&name), None);
        TestGroup { name }
    }

    /// The group name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        remove_account("groupdel", &[], &self.name);
    }
}

/// `<kind><prefix>-<pid>-<n>`; `prefix` is reduced to 8 characters of `[a-z0-9]`.
fn unique_name(kind: &str, prefix: &str) -> String {
    let prefix: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("{kind}{prefix}-{}-{n}", std::process::id());
    assert!(name.len() <= 32, "user name {name} is too long");
    name
}

/// Runs `userdel`/`groupdel` (bounded); leaves a message when it fails, never panics (drop).
fn remove_account(tool: &str, args: &[&str], name: &str) {
    if std::env::var_os("TWOSTEP_TESTS_KEEP").is_some() {
        eprintln!("TWOSTEP_TESTS_KEEP: kept {name}");
        return;
    }
    match run_bounded(Command::new(tool).args(args).arg(name), None) {
        Ok(out) if out.status.success() => {}
        // userdel -r exits 12 when the home or mail spool is already gone; the account is.
        Ok(out) if tool == "userdel" && out.status.code() == Some(12) => {}
        Ok(out) => eprintln!(
            "{tool} {name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("{tool} {name}: {e}"),
    }
}

/// Runs a command (bounded by [`run::TIMEOUT`]), optionally feeding `input`, and returns its
/// stdout; panics unless it succeeds.
fn checked(command: &mut Command, input: Option<&[u8]>) -> String {
    let shown = format!("{command:?}");
    let out = run_bounded(command, input).unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`run::run`], with `input` on stdin, and errors returned instead of panics.
fn run_bounded(command: &mut Command, input: Option<&[u8]>) -> Result<Output, String> {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(bytes)
            .map_err(|e| format!("cannot write stdin: {e}"))?;
    }
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let readers = [
        std::thread::spawn(move || read_all(out.as_mut())),
        std::thread::spawn(move || read_all(err.as_mut())),
    ];
    let deadline = Instant::now() + run::TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("ran longer than {:?}, killed", run::TIMEOUT));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let [stdout, stderr] = readers.map(|r| r.join().unwrap_or_default());
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn read_all(pipe: Option<&mut impl Read>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes);
    }
    bytes
}

/// `2 * bytes` lowercase hex digits from /dev/urandom.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes the accounts and groups of test processes that no longer run (a test killed before
/// its drops ran). Skipped when `TWOSTEP_TESTS_KEEP` is set.
fn clean_stale() {
    if std::env::var_os("TWOSTEP_TESTS_KEEP").is_some() {
        return;
    }
    let stale = |name: &str, kind: &str| -> bool {
        let Some(rest) = name.strip_prefix(kind) else {
            return false;
        };
        let mut parts = rest.rsplit('-');
        let (n, pid) = (parts.next(), parts.next());
        n.is_some_and(|n| n.parse::<u32>().is_ok())
            && pid
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let names = |file: &str| -> Vec<String> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(':').next())
            .map(str::to_string)
            .collect()
    };
    for name in names("/etc/passwd") {
        if stale(&name, USER_PREFIX) {
            remove_account("userdel", &["-r", "-f"], &name);
        }
    }
    for name in names("/etc/group") {
        if stale(&name, GROUP_PREFIX) {
            remove_account("groupdel", &[], &name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_short_and_valid() {
        let a = unique_name(USER_PREFIX, "Some Long/Prefix!");
        let b = unique_name(USER_PREFIX, "Some Long/Prefix!");
        assert_ne!(a, b);
        assert!(a.starts_with("tsu-somelong-"), "{a}");
        assert!(a.len() <= 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
