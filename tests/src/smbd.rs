//! A real Samba server (`smbd`, Debian package samba) for the SMB gate tests, and the real
//! `smbclient`.
//!
//! [`Smbd::start`] writes an smb.conf with private, lock, state and cache directories in the
//! test environment's directory, one read-only share `[data]` holding `hello.txt`, a
//! non-standard port and `obey pam restrictions = yes`. smbd runs in the foreground in a private
//! mount namespace where `/etc/pam.d/samba` is replaced (bind-mounted) by the test's service
//! file: `account required <module> config=<the environment's config>` then pam_permit. The real
//! /etc/pam.d/samba is not touched.
//!
//! Clients come from two addresses: 127.0.0.1 ([`From::Loopback`]) and the far end of a veth
//! pair in a network namespace the server creates ([`From::Namespace`]), so that PAM_RHOST
//! differs. The server is stopped by its pid and the namespace deleted on drop.

use std::ffi::OsString;
use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::env::TestEnv;
use crate::users::TestUser;
use crate::{paths, run};

const SMBD: &str = "/usr/sbin/smbd";
const SAMBA_PAM: &str = "/etc/pam.d/samba";
/// The content of `hello.txt` in the share.
pub const HELLO: &str = "hello from the twostep SMB test\n";
const START_TIMEOUT: Duration = Duration::from_secs(20);

static COUNTER: AtomicU32 = AtomicU32::new(0);
static CLEAN_STALE: std::sync::Once = std::sync::Once::new();
/// Namespaces are `twostep-smb-<pid>-<n>`.
const NS_PREFIX: &str = "twostep-smb-";

/// Deletes the namespaces of test processes that were killed before their drop ran.
fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let pid = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
    }
}

/// Where an smbclient run connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Loopback,
    Namespace,
}

/// A network namespace with a veth pair to this one, deleted on drop.
#[derive(Debug)]
struct NetNs {
    name: String,
    host_link: String,
    /// This side's address (smbd listens on it too).
    host_addr: String,
    /// The namespace's address: PAM_RHOST for its clients.
    ns_addr: String,
}

impl NetNs {
    fn create() -> NetNs {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 10 + n % 10;
        let subnet = (std::process::id() + n) % 250 + 1;
        CLEAN_STALE.call_once(remove_stale_namespaces);
        let ns = NetNs {
            name: format!("{NS_PREFIX}{}-{n}", std::process::id()),
            host_link: format!("tsmb{id}h"),
            host_addr: format!("10.231.{subnet}.1"),
            ns_addr: format!("10.231.{subnet}.2"),
        };
        let peer = format!("tsmb{id}n");
        let _ = Command::new("ip").args(["netns", "del", &ns.name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &ns.host_link])
            .output();
        for args in [
            vec!["netns", "add", &ns.name],
            vec![
                "link",
                "add",
                &ns.host_link,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
            ],
            vec!["link", "set", &peer, "netns", &ns.name],
        ] {
            ip(&args);
        }
        let host_cidr = format!("{}/30", ns.host_addr);
        ip(&["addr", "add", &host_cidr, "dev", &ns.host_link]);
        ip(&["link", "set", &ns.host_link, "up"]);
        let ns_cidr = format!("{}/30", ns.ns_addr);
        for args in [
            vec!["addr", "add", &ns_cidr, "dev", &peer],
            vec!["link", "set", &peer, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", &ns.name, "ip"];
            full.extend(args);
            ip(&full);
        }
        ns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn ip(args: &[&str]) {
    let out = run::run(Command::new("ip").args(args), run::TIMEOUT);
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running smbd; stopped by pid on drop.
#[derive(Debug)]
pub struct Smbd<'a> {
    env: &'a TestEnv,
    dir: PathBuf,
    child: Child,
    port: u16,
    ns: NetNs,
    /// Kept until smbd is stopped.
    _share: Share,
}

/// The shared directory (0755, `hello.txt` 0644), removed on drop.
#[derive(Debug)]
struct Share(PathBuf);

impl Share {
    fn create() -> Share {
        use std::os::unix::fs::PermissionsExt;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("twostep-smb-share-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("create the share");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = path.join("hello.txt");
        std::fs::write(&file, HELLO).expect("write hello.txt");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        Share(path)
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl<'a> Smbd<'a> {
    /// Starts smbd for `env`: its account stack runs pam_twostep with the environment's config.
    pub fn start(env: &'a TestEnv) -> Smbd<'a> {
        crate::require_root();
        assert!(
            Path::new(SMBD).is_file(),
            "{SMBD} is missing: install the Debian package samba"
        );
        assert!(
            Path::new(SAMBA_PAM).is_file(),
            "{SAMBA_PAM} is missing (installed by the Debian package samba)"
        );
        let dir = env.dir().join("smbd");
        for sub in ["private", "lock", "state", "cache", "pid", "log", "ncalrpc"] {
            std::fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        // The share is read with the user's identity: outside the root-only test directory.
        let share = Share::create();
        let pam = format!(
            "auth required pam_deny.so\n\
             account required {} config={}\n\
             account required pam_permit.so\n\
             session required pam_permit.so\n",
            paths::module().display(),
            env.config_path().display()
        );
        std::fs::write(dir.join("samba.pam"), pam).expect("write samba.pam");
        let ns = NetNs::create();
        for _ in 0..5 {
            let port = crate::sshd::free_port();
            std::fs::write(dir.join("smb.conf"), server_conf(&dir, &share.0, port, &ns))
                .expect("write smb.conf");
            let out = File::create(dir.join("smbd.out")).expect("create smbd.out");
            let script = format!(
                "mount --bind {} {SAMBA_PAM} && exec {SMBD} --foreground --no-process-group \
                 --debug-stdout -d 1 -s {}",
                dir.join("samba.pam").display(),
                dir.join("smb.conf").display()
            );
            // Its own process group: at shutdown smbd signals its whole group, which must not
            // be the test's.
            let child = Command::new("unshare")
                .process_group(0)
                .args(["--mount", "--propagation", "private", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out)
                .spawn()
                .expect("start smbd");
            let mut child = child;
            match wait_listening(&mut child, port, &dir) {
                Ok(()) => {
                    return Smbd {
                        env,
                        dir,
                        child,
                        port,
                        ns,
                        _share: share,
                    };
                }
                Err(log) => {
                    run::stop(&mut child);
                    if log.contains("Address already in use") {
                        continue;
                    }
                    panic!("smbd did not start:\n{log}");
                }
            }
        }
        panic!("smbd could not bind a free port in 5 tries");
    }

    /// smbd's output.
    pub fn log(&self) -> String {
        output_of(&self.dir)
    }

    /// The PAM_RHOST smbd reports for clients from `from`.
    pub fn client_address(&self, from: From) -> &str {
        match from {
            From::Loopback => "127.0.0.1",
            From::Namespace => &self.ns.ns_addr,
        }
    }

    /// Gives `user` an SMB password (the Unix password; Samba keeps its own hash).
    pub fn add_user(&self, user: &TestUser) {
        let input = format!("{0}\n{0}\n", user.password());
        let out = run::run_with_input(
            Command::new("smbpasswd")
                .args(["-c"])
                .arg(self.dir.join("smb.conf"))
                .args(["-s", "-a", user.name()]),
            Some(input.as_bytes()),
            run::TIMEOUT,
        );
        assert!(
            out.status.success(),
            "smbpasswd -a {}: {}",
            user.name(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `smbclient` as `user` from `from`, reading `hello.txt` from the share.
    pub fn read_hello(&self, user: &TestUser, from: From) -> SmbResult {
        self.env.add_secret(user.password());
        let auth = self
            .dir
            .join(format!("auth-{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        // The password in a root-only file (-A), not on the command line.
        std::fs::write(
            &auth,
            format!(
                "username = {}\npassword = {}\n",
                user.name(),
                user.password()
            ),
        )
        .expect("write auth file");
        std::fs::set_permissions(&auth, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod auth file");
        let server = match from {
            From::Loopback => "127.0.0.1".to_string(),
            From::Namespace => self.ns.host_addr.clone(),
        };
        let mut args: Vec<OsString> = Vec::new();
        if from == From::Namespace {
            args.extend(["netns".into(), "exec".into(), self.ns.name.clone().into()]);
        }
        args.push("smbclient".into());
        args.extend([
            "-s".into(),
            self.dir.join("client.conf").into_os_string(),
            "-p".into(),
            self.port.to_string().into(),
            "-A".into(),
            auth.clone().into_os_string(),
            format!("//{server}/data").into(),
            "-c".into(),
            "get hello.txt -".into(),
        ]);
        let program = if from == From::Namespace {
            "ip"
        } else {
            "smbclient"
        };
        let args = if from == From::Namespace {
            &args[..]
        } else {
            &args[1..]
        };
        std::fs::write(self.dir.join("client.conf"), "[global]\n").expect("client.conf");
        let before = self.env.logs().len();
        let output = run::run(Command::new(program).args(args), run::TIMEOUT);
        let _ = std::fs::remove_file(&auth);
        // The module's log line comes from smbd's child; give the syslog listener a moment.
        std::thread::sleep(Duration::from_millis(50));
        SmbResult {
            output,
            logs: self.env.logs().split_off(before),
        }
    }
}

impl Drop for Smbd<'_> {
    fn drop(&mut self) {
        run::stop(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- smbd output:\n{}", self.log());
        }
    }
}

fn output_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("smbd.out")).unwrap_or_default()
}

/// Waits until smbd accepts connections; on failure, its output.
fn wait_listening(child: &mut Child, port: u16, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            return Err(format!("{}\n(exit: {exited:?})", output_of(dir)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn server_conf(dir: &Path, share: &Path, port: u16, ns: &NetNs) -> String {
    let d = dir.display();
    format!(
        "[global]\n\
         server role = standalone server\n\
         smb ports = {port}\n\
         interfaces = 127.0.0.1 {host}\n\
         bind interfaces only = yes\n\
         private dir = {d}/private\n\
         lock directory = {d}/lock\n\
         state directory = {d}/state\n\
         cache directory = {d}/cache\n\
         pid directory = {d}/pid\n\
         ncalrpc dir = {d}/ncalrpc\n\
         log file = {d}/log/log.%m\n\
         passdb backend = tdbsam\n\
         obey pam restrictions = yes\n\
         hostname lookups = no\n\
         map to guest = never\n\
         load printers = no\n\
         disable spoolss = yes\n\
         [data]\n\
         path = {share}\n\
         read only = yes\n",
        host = ns.host_addr,
        share = share.display(),
    )
}

/// What one smbclient run printed, and the log lines meanwhile.
#[derive(Debug)]
pub struct SmbResult {
    pub output: Output,
    pub logs: Vec<String>,
}

impl SmbResult {
    /// The run as a transcript: exit status, output, log lines (also printed on failures).
    pub fn text(&self) -> String {
        format!(
            "--- smbclient exit {:?}\nstdout:\n{}\nstderr:\n{}\n--- syslog:\n{}",
            self.output.status.code(),
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr),
            self.logs.join("\n")
        )
    }

    /// Panics unless the share was read.
    pub fn assert_read(&self) -> &Self {
        assert!(
            self.output.status.success()
                && String::from_utf8_lossy(&self.output.stdout).contains(HELLO.trim_end()),
            "expected the share to be read\n{}",
            self.text()
        );
        self
    }

    /// Panics unless the session setup was refused.
    pub fn assert_refused(&self) -> &Self {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        );
        assert!(
            !self.output.status.success()
                && all.contains("NT_STATUS_")
                && !all.contains(HELLO.trim_end()),
            "expected a refused session setup\n{}",
            self.text()
        );
        self
    }

    /// Panics unless some log line contains every one of `needles`.
    pub fn assert_logged(&self, needles: &[&str]) -> &Self {
        assert!(
            self.logs
                .iter()
                .any(|line| needles.iter().all(|n| line.contains(n))),
            "no log line with {needles:?}\n{}",
            self.text()
        );
        self
    }
}
