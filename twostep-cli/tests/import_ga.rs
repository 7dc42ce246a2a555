//! `twostep import-google-authenticator` against the real thing: a real system user, a state
//! file written by the real `google-authenticator` command (Debian package
//! `libpam-google-authenticator`), codes from `oathtool` (package `oathtool`), and the login
//! path of the common crate checking the imported record.
//!
//! Needs root (useradd, runuser). A missing tool fails the test with the package to install;
//! nothing is skipped silently.

#![allow(clippy::unwrap_used)] // a test crate: a failed step is a failed test

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use twostep_common::config::Config;
use twostep_common::login::{self, Accepted, Attempt, Outcome, Rejected};
use twostep_common::store::{Seen, Store};

const CLI: &str = env!("CARGO_BIN_EXE_twostep");
/// A fixed login time for the in-process checks (the record's last step starts at 0).
const LOGIN_TIME: u64 = 1_900_000_000;

/// useradd/userdel take the passwd lock; tests in this binary run them one at a time.
static ACCOUNTS: Mutex<()> = Mutex::new(());

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create system users and must run as root"
    );
}

/// The full path of `name`, or a failure that names the Debian package to install.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` is missing: apt-get install {package}"))
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A system user with a home directory, deleted (with the home) on drop.
struct TestUser {
    name: String,
    home: PathBuf,
}

impl TestUser {
    fn new(tag: &str) -> TestUser {
        need_root();
        let name = format!("twostep-ga-{}-{tag}", std::process::id());
        let useradd = tool("useradd", "passwd");
        let userdel = tool("userdel", "passwd");
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        // Left over from an earlier, killed run of the same pid.
        let _ = run(&userdel, &["-r", &name]);
        let mut last = None;
        for _ in 0..20 {
            let out = run(&useradd, &["-m", "-s", "/bin/sh", &name]);
            if out.status.success() {
                last = None;
                break;
            }
            // Another process holds the passwd lock: try again shortly.
            last = Some(text(&out.stderr));
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        if let Some(err) = last {
            panic!("useradd {name} failed: {err}");
        }
        let home = nix::unistd::User::from_name(&name)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} was created but cannot be looked up"))
            .dir;
        TestUser { name, home }
    }

    fn ga_file(&self) -> PathBuf {
        self.home.join(".google_authenticator")
    }

    /// Runs a command as this user.
    fn run(&self, program: &Path, args: &[&str]) -> Output {
        let runuser = tool("runuser", "util-linux");
        let mut all: Vec<&str> = vec!["-u", &self.name, "--"];
        let program = program.to_str().unwrap();
        all.push(program);
        all.extend_from_slice(args);
        run(&runuser, &all)
    }

    /// The real `google-authenticator`, run as this user, writing `file`.
    fn google_authenticator(&self, file: &Path, args: &[&str]) {
        let ga = tool("google-authenticator", "libpam-google-authenticator");
        let file = file.to_str().unwrap();
        let mut all = args.to_vec();
        // -C: no confirmation code (this version otherwise waits for one on stdin).
        all.extend_from_slice(&["-f", "-C", "-Q", "NONE", "-s", file]);
        let out = self.run(&ga, &all);
        assert!(
            out.status.success(),
            "google-authenticator {all:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            Path::new(file).is_file(),
            "google-authenticator wrote no {file}"
        );
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _guard = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let out = run(&tool("userdel", "passwd"), &["-r", &self.name]);
        // 12: the home directory or mail spool was already gone; harmless.
        if !out.status.success() && out.status.code() != Some(12) {
            eprintln!("userdel {} failed: {}", self.name, text(&out.stderr));
        }
    }
}

/// A config whose state directory is fresh, root-owned and private, under the target dir.
struct TestState {
    dir: PathBuf,
}

impl TestState {
    fn new(tag: &str) -> TestState {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("import-ga-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let config = format!(
            "state_dir = \"{}\"\n[log]\nsocket = \"{}\"\n",
            dir.join("state").display(),
            dir.join("no-syslog").display()
        );
        let path = dir.join("twostep.toml");
        fs::write(&path, config).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        TestState { dir }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("twostep.toml")
    }

    fn config(&self) -> Config {
        Config::load(&self.config_path()).unwrap()
    }

    fn import(&self, args: &[&str]) -> Output {
        let config = self.config_path();
        let mut all = vec![
            "--config",
            config.to_str().unwrap(),
            "import-google-authenticator",
        ];
        all.extend_from_slice(args);
        run(Path::new(CLI), &all)
    }

    fn has_record(&self, user: &str) -> bool {
        match Store::open(&self.dir.join("state")) {
            Ok(store) => store.load(user).unwrap().is_some(),
            Err(_) => false,
        }
    }
}

impl Drop for TestState {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Line 1 (the key) and the scratch codes of a google-authenticator file.
fn read_ga_file(path: &Path) -> (String, Vec<String>) {
    let contents = fs::read_to_string(path).unwrap();
    let mut lines = contents.lines();
    let secret = lines.next().unwrap().to_string();
    let codes = lines
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect();
    (secret, codes)
}

fn oathtool_code(secret: &str, time: u64) -> String {
    let oathtool = tool("oathtool", "oathtool");
    let out = run(
        &oathtool,
        &["--totp", "-b", secret, "--now", &format!("@{time}")],
    );
    assert!(out.status.success(), "oathtool: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// Every line after `Emergency codes:`.
fn emergency_codes(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|l| *l != "Emergency codes:")
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn imports_a_real_google_authenticator_file() {
    let user = TestUser::new("ok");
    let state = TestState::new("ok");
    user.google_authenticator(
        &user.ga_file(),
        &["-t", "-d", "-r", "3", "-R", "30", "-w", "3", "-e", "5"],
    );
    let before = fs::read(user.ga_file()).unwrap();
    let (secret, scratch) = read_ga_file(&user.ga_file());
    assert_eq!(
        scratch.len(),
        5,
        "google-authenticator -e 5 wrote {scratch:?}"
    );

    let out = state.import(&[&user.name]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "import failed: {}{stdout}",
        text(&out.stderr)
    );
    assert!(stdout.contains("Scratch codes carried over: 5"), "{stdout}");
    assert!(stdout.contains("WINDOW_SIZE 3 -> ±1 step"), "{stdout}");
    assert!(
        stdout.contains("RATE_LIMIT (3 attempts per 30 s)"),
        "{stdout}"
    );
    assert!(!stdout.contains(&secret), "the key was printed: {stdout}");
    for code in &scratch {
        assert!(
            !stdout.contains(code.as_str()),
            "a scratch code was printed"
        );
    }
    let new_codes = emergency_codes(&stdout);
    assert_eq!(new_codes.len(), 10, "{stdout}");
    assert_eq!(
        fs::read(user.ga_file()).unwrap(),
        before,
        "the import must not touch the user's file"
    );

    // The record: same key, google-authenticator's parameters.
    let config = state.config();
    let store = Store::open(&config.state_dir).unwrap();
    let record = store
        .load(&user.name)
        .unwrap()
        .expect("a record was stored");
    let totp = record.totp.as_ref().expect("a TOTP record");
    assert_eq!(totp.secret.expose(), secret);
    assert_eq!((totp.digits, totp.period), (6, 30));
    assert_eq!(totp.skew, Some(1));
    assert_eq!(record.emergency.legacy_hashes.len(), 5);
    let text_on_disk = fs::read_to_string(store.record_path(&user.name).unwrap()).unwrap();
    for code in &scratch {
        assert!(
            !text_on_disk.contains(code.as_str()),
            "scratch codes are stored hashed"
        );
    }

    // Logins through the common crate's login path.
    let attempt = Attempt {
        user: &user.name,
        service: "import-test",
        rhost: "",
    };
    let code = oathtool_code(&secret, LOGIN_TIME);
    assert_eq!(
        verify_at_login_time(&store, &config, &attempt, code.as_bytes()),
        Outcome::Accepted(Accepted::Totp),
        "the app's code (from oathtool) is accepted"
    );
    assert!(matches!(
        verify_at_login_time(&store, &config, &attempt, code.as_bytes()),
        Outcome::Rejected {
            why: Rejected::Replay,
            ..
        }
    ));
    let old = scratch[2].as_bytes();
    assert!(
        matches!(
            verify_at_login_time(&store, &config, &attempt, old),
            Outcome::Accepted(Accepted::Emergency { .. })
        ),
        "an imported scratch code works"
    );
    assert!(
        matches!(
            verify_at_login_time(&store, &config, &attempt, old),
            Outcome::Rejected {
                why: Rejected::WrongEmergencyCode,
                ..
            }
        ),
        "but only once"
    );
    assert!(
        matches!(
            verify_at_login_time(&store, &config, &attempt, new_codes[0].as_bytes()),
            Outcome::Accepted(Accepted::Emergency { .. })
        ),
        "the newly issued emergency codes work too"
    );

    // A second import is refused unless forced.
    let again = state.import(&[&user.name]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already enrolled"),
        "{}",
        text(&again.stderr)
    );
    let forced = state.import(&["--force", &user.name]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let record = store.load(&user.name).unwrap().unwrap();
    assert_eq!(
        record.emergency.legacy_hashes.len(),
        5,
        "re-imported from the unchanged file"
    );
}

#[test]
fn unsafe_files_are_refused_and_nothing_is_stored() {
    let user = TestUser::new("ln");
    let state = TestState::new("ln");
    let real = user.home.join("ga-real");
    user.google_authenticator(&real, &["-t", "-D", "-u", "-w", "3", "-e", "2"]);
    let (secret, _) = read_ga_file(&real);

    // ~/.google_authenticator as a symlink to the user's own, valid file.
    let ln = tool("ln", "coreutils");
    let linked = user.run(
        &ln,
        &[
            "-s",
            real.to_str().unwrap(),
            user.ga_file().to_str().unwrap(),
        ],
    );
    assert!(linked.status.success(), "{}", text(&linked.stderr));
    let out = state.import(&[&user.name]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");

    // A hard link, and a file the user does not own (given explicitly by the admin).
    let hard = user.home.join("ga-hard");
    let made = user.run(&ln, &[real.to_str().unwrap(), hard.to_str().unwrap()]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let out = state.import(&[&user.name, hard.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("hard link"),
        "{}",
        text(&out.stderr)
    );

    let foreign = state.dir.join("root-owned-copy");
    fs::copy(&real, &foreign).unwrap();
    fs::set_permissions(&foreign, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&state.dir, fs::Permissions::from_mode(0o755)).unwrap();
    let out = state.import(&[&user.name, foreign.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("not owned by"),
        "{}",
        text(&out.stderr)
    );

    assert!(!state.has_record(&user.name), "nothing may be stored");
}

#[test]
fn counter_based_files_are_refused_clearly() {
    let user = TestUser::new("hotp");
    let state = TestState::new("hotp");
    user.google_authenticator(&user.ga_file(), &["-c", "-u", "-w", "3", "-e", "5"]);
    let (secret, scratch) = read_ga_file(&user.ga_file());
    assert!(
        fs::read_to_string(user.ga_file())
            .unwrap()
            .contains("\" HOTP_COUNTER 1")
    );

    let out = state.import(&[&user.name]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("counter-based (HOTP)"), "{stderr}");
    assert!(stderr.contains("twostep enroll"), "{stderr}");
    assert!(!stderr.contains(&secret), "{stderr}");
    for code in &scratch {
        assert!(!stderr.contains(code.as_str()), "{stderr}");
    }
    assert!(!state.has_record(&user.name), "nothing may be stored");
}

/// `login::verify` at LOGIN_TIME with nothing seen before the prompt.
fn verify_at_login_time(
    store: &Store,
    config: &Config,
    attempt: &Attempt<'_>,
    typed: &[u8],
) -> Outcome {
    login::verify(store, config, attempt, typed, LOGIN_TIME, Seen::default())
        .expect("verify fails only on I/O errors")
}
