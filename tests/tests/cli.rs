//! The `twostep` admin command, end to end: what it prints, what it stores, and what the real
//! PAM stack then does. Codes come from oathtool; QR codes are decoded with zbarimg.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use twostep_tests::oath::totp;
use twostep_tests::{TestEnv, paths};

const USER: &str = "daemon";
const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
const T: i64 = 1_800_000_015;
const CODE_PROMPT: &str = "Code shown by the app: ";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn failed(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected exit 1\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn zbarimg(path: &Path) -> String {
    let output = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(path)
        .output()
        .expect("zbarimg must be installed (Debian package zbar-tools)");
    assert!(
        output.status.success(),
        "zbarimg could not decode {}",
        path.display()
    );
    text(&output.stdout).trim().to_string()
}

fn uri_secret(uri: &str) -> String {
    let query = uri.split_once('?').expect("uri has a query").1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("secret="))
        .expect("uri has a secret")
        .to_string()
}

fn line_value(stdout: &str, prefix: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
        .trim()
        .to_string()
}

/// An interactive `twostep enroll` with piped standard input and output.
struct Interactive {
    child: Child,
    seen: Vec<u8>,
}

impl Interactive {
    fn start(env: &TestEnv, args: &[&str]) -> Interactive {
        let child = Command::new(paths::cli())
            .env_remove("TWOSTEP_CONFIG")
            .arg("--config")
            .arg(env.config_path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start twostep");
        Interactive {
            child,
            seen: Vec::new(),
        }
    }

    /// Reads output until `marker` has been printed (after what was seen before); false at
    /// end of output.
    fn wait_for(&mut self, marker: &str) -> bool {
        let stdout = self.child.stdout.as_mut().expect("piped");
        let start = self.seen.len();
        let mut byte = [0u8; 1];
        while !self.seen[start..].ends_with(marker.as_bytes()) {
            match stdout.read(&mut byte) {
                Ok(1) => self.seen.push(byte[0]),
                _ => return false,
            }
        }
        true
    }

    fn seen(&self) -> String {
        text(&self.seen)
    }

    fn answer(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}").expect("write answer");
    }

    fn finish(mut self) -> (i32, String, String) {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut rest)
            .expect("read stdout");
        self.child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut err)
            .expect("read stderr");
        let status = self.child.wait().expect("wait");
        (status.code().unwrap_or(-1), text(&self.seen) + &rest, err)
    }
}

#[test]
fn interactive_enroll_qr_decodes_and_the_app_code_logs_in() {
    let env = TestEnv::new("cli_enroll_qr");
    let png = env.dir().join("qr.png");
    let svg = env.dir().join("qr.svg");
    let mut run = Interactive::start(
        &env,
        &[
            "enroll",
            USER,
            "--qr-png",
            png.to_str().expect("utf-8"),
            "--qr-svg",
            svg.to_str().expect("utf-8"),
        ],
    );
    assert!(run.wait_for(CODE_PROMPT), "no code prompt:\n{}", run.seen());
    let seen = run.seen();
    let uri = line_value(&seen, "URI:");
    let secret = uri_secret(&uri);
    // The default label is USER@HOST.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let host = host.trim();
    env.add_secret(&secret);
    assert!(
        uri.starts_with(&format!("otpauth://totp/twostep-tests:daemon%40{host}?")),
        "{uri}"
    );
    for part in [
        "issuer=twostep-tests",
        "algorithm=SHA1",
        "digits=6",
        "period=30",
    ] {
        assert!(uri.contains(part), "{part} missing from {uri}");
    }
    // The printed QR image decodes to exactly the printed URI; so does the key for typing.
    assert_eq!(zbarimg(&png), uri);
    for file in [&png, &svg] {
        let mode = std::fs::metadata(file)
            .expect("qr file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let typed_key = line_value(&seen, "Or add the key by hand:").replace(' ', "");
    assert_eq!(typed_key, secret);
    // The terminal QR is there (plain half blocks when not on a terminal).
    assert!(seen.contains('▀') || seen.contains('█'), "{seen}");
    // Not enabled before a code verifies.
    assert!(!env.record_path(USER).exists());

    run.answer("000000");
    assert!(
        run.wait_for(CODE_PROMPT),
        "no second prompt:\n{}",
        run.seen()
    );
    let t = now();
    run.answer(&totp(&secret, t));
    let (code, stdout, stderr) = run.finish();
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("does not match"), "{stdout}");
    assert!(
        stdout.contains("Two-step login is on for daemon"),
        "{stdout}"
    );
    let codes = twostep_tests::env::emergency_codes(&stdout);
    assert_eq!(codes.len(), 10);
    codes.iter().for_each(|c| env.add_secret(c));

    // The code used to confirm cannot open a login; a later one from the same app does.
    env.login(USER, &[&totp(&secret, t)], t)
        .assert_result("PAM_AUTH_ERR");
    env.login(USER, &[&totp(&secret, t + 90)], t + 90)
        .assert_result("PAM_SUCCESS");
    env.login(USER, &[&codes[3]], t + 91)
        .assert_result("PAM_SUCCESS");
}

#[test]
fn three_wrong_codes_abort_and_store_nothing() {
    let env = TestEnv::new("cli_enroll_abort");
    let mut run = Interactive::start(&env, &["enroll", USER]);
    for _ in 0..3 {
        assert!(run.wait_for(CODE_PROMPT), "{}", run.seen());
        run.answer("123");
    }
    let (code, stdout, stderr) = run.finish();
    env.add_secret(&uri_secret(&line_value(&stdout, "URI:")));
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stderr.contains("nothing was stored"), "{stderr}");
    assert!(!stdout.contains("Emergency codes:"), "{stdout}");
    assert!(!env.record_path(USER).exists());
    let status = env.cli(&["status", "--json"]);
    assert_eq!(ok(&status).trim(), "[]");
}

#[test]
fn enroll_refuses_to_replace_without_force() {
    let env = TestEnv::new("cli_enroll_force");
    env.enroll(USER, SECRET);
    let before = std::fs::read(env.record_path(USER)).expect("record");
    let err = failed(&env.cli(&["enroll", USER, "--yes"]));
    assert!(
        err.contains("already enrolled") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(env.record_path(USER)).expect("record"),
        before
    );
    let out = ok(&env.cli(&["enroll", USER, "--yes", "--force"]));
    let new_secret = line_value(&out, "Secret:");
    env.add_secret(&new_secret);
    assert_ne!(new_secret, SECRET);
    env.login(USER, &[&totp(&new_secret, T)], T)
        .assert_result("PAM_SUCCESS");
}

#[test]
fn scripted_enroll_with_fresh_secret_prints_a_working_160_bit_key() {
    let env = TestEnv::new("cli_enroll_yes");
    let out = ok(&env.cli(&["enroll", USER, "--yes", "--email", "ops@example.com"]));
    let secret = line_value(&out, "Secret:");
    env.add_secret(&secret);
    assert_eq!(
        secret.len(),
        32,
        "160 bits is 32 base32 characters: {secret}"
    );
    assert_eq!(uri_secret(&line_value(&out, "URI:")), secret);
    env.login(USER, &[&totp(&secret, T)], T)
        .assert_result("PAM_SUCCESS");
    let json = ok(&env.cli(&["status", USER, "--json"]));
    assert!(json.contains("\"email\": \"o•••@example.com\""), "{json}");
    assert!(!json.contains("ops@"), "{json}");
}

#[test]
fn status_shows_states_and_stable_json() {
    let env = TestEnv::builder("cli_status")
        .config("[lockout]\nmax_failures = 2\nmax_failures_user = 3\n")
        .build();
    let codes = env.enroll(USER, SECRET);
    env.enroll("nobody", SECRET);
    env.attempt(USER)
        .answer(&totp(SECRET, T))
        .rhost("192.0.2.7")
        .time(T)
        .run()
        .assert_result("PAM_SUCCESS");
    env.login(USER, &[&codes[0]], T + 1)
        .assert_result("PAM_SUCCESS");
    env.login(USER, &["000000"], T + 2);
    // nobody: two failures from one host lock that host, a third from another host locks
    // the user everywhere. Lockouts are read against the real clock.
    let t = now();
    env.login("nobody", &["000000"], t);
    env.login("nobody", &["000000"], t);
    let json = ok(&env.cli(&["status", "nobody", "--json"]));
    let row: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(row[0]["state"], "enabled", "{json}");
    assert_eq!(row[0]["locked_hosts"], serde_json::json!([""]), "{json}");
    let table = ok(&env.cli(&["status", "nobody"]));
    assert!(table.contains("locked from 1 host"), "{table}");
    env.attempt("nobody")
        .answer("000000")
        .rhost("198.51.100.4")
        .time(t)
        .run()
        .assert_result("PAM_AUTH_ERR");

    let json = ok(&env.cli(&["status", "--json"]));
    let rows: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    let daemon = &rows[0];
    let keys: Vec<&str> = daemon
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "user",
            "state",
            "methods",
            "email",
            "emergency_codes_left",
            "enrolled_at",
            "last_login",
            "recent_failures",
            "locked_until",
            "locked_hosts",
            "open_gates",
            "archived",
        ],
        "the documented --json fields, in order"
    );
    assert_eq!(daemon["user"], "daemon");
    assert_eq!(daemon["state"], "enabled");
    assert_eq!(daemon["methods"], serde_json::json!(["totp", "emergency"]));
    assert_eq!(daemon["emergency_codes_left"], 9);
    assert_eq!(daemon["last_login"]["method"], "emergency");
    assert_eq!(daemon["last_login"]["time"], T + 1);
    assert_eq!(rows[1]["user"], "nobody");
    assert_eq!(rows[1]["state"], "locked");
    assert!(rows[1]["locked_until"].as_i64().expect("a time") > t);

    let table = ok(&env.cli(&["status"]));
    let header = table.lines().next().expect("header");
    assert!(
        header.starts_with("USER") && header.contains("LAST LOGIN"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("daemon") && l.contains("enabled")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("nobody") && l.contains("locked until")),
        "{table}"
    );

    let err = failed(&env.cli(&["status", "root"]));
    assert!(err.contains("not enrolled"), "{err}");
}

#[test]
fn reset_then_restore() {
    let env = TestEnv::builder("cli_reset")
        .config("unenrolled = \"deny\"\n")
        .build();
    env.enroll(USER, SECRET);
    env.login(USER, &[&totp(SECRET, T)], T)
        .assert_result("PAM_SUCCESS");

    let out = ok(&env.cli(&["reset", USER]));
    assert!(out.contains("twostep restore daemon"), "{out}");
    assert!(!env.record_path(USER).exists());
    let archive = env.state_dir().join("archive");
    let archived: Vec<_> = std::fs::read_dir(&archive).expect("archive dir").collect();
    assert_eq!(archived.len(), 1);
    let mode = std::fs::metadata(&archive)
        .expect("archive")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    // Reset: the user falls back to policy (deny here) without a prompt.
    env.login(USER, &["123456"], T + 30)
        .assert_result("PAM_AUTH_ERR")
        .assert_no_prompt();
    let json = ok(&env.cli(&["status", USER, "--json"]));
    assert!(json.contains("\"state\": \"disabled\""), "{json}");
    failed(&env.cli(&["reset", USER]));

    let out = ok(&env.cli(&["restore", USER]));
    assert!(out.contains("Restored"), "{out}");
    // The restored enrollment keeps its replay state and works with the same app.
    env.login(USER, &[&totp(SECRET, T)], T + 1)
        .assert_result("PAM_AUTH_ERR");
    env.login(USER, &[&totp(SECRET, T + 60)], T + 60)
        .assert_result("PAM_SUCCESS");
    let err = failed(&env.cli(&["restore", USER]));
    assert!(err.contains("enrolled"), "{err}");
}

#[test]
fn new_codes_invalidate_the_old_ones() {
    let env = TestEnv::new("cli_codes");
    let old = env.enroll(USER, SECRET);
    let out = ok(&env.cli(&["codes", USER]));
    let new = twostep_tests::env::emergency_codes(&out);
    new.iter().for_each(|c| env.add_secret(c));
    assert_eq!(new.len(), 10);
    assert!(new.iter().all(|c| !old.contains(c)));
    env.login(USER, &[&old[0]], T).assert_result("PAM_AUTH_ERR");
    env.login(USER, &[&new[0]], T + 1)
        .assert_result("PAM_SUCCESS");
    env.login(USER, &[&new[0]], T + 2)
        .assert_result("PAM_AUTH_ERR");
    failed(&env.cli(&["codes", "root"]));
}

#[test]
fn unlock_ends_a_lockout() {
    let env = TestEnv::builder("cli_unlock")
        .config("[lockout]\nmax_failures = 2\n")
        .build();
    env.enroll(USER, SECRET);
    let t = now();
    env.login(USER, &["000000"], t);
    env.login(USER, &["000000"], t + 1);
    env.login(USER, &[&totp(SECRET, t + 2)], t + 2)
        .assert_result("PAM_AUTH_ERR")
        .assert_no_prompt();
    ok(&env.cli(&["unlock", USER]));
    env.login(USER, &[&totp(SECRET, t + 3)], t + 3)
        .assert_result("PAM_SUCCESS");
    assert!(
        env.logs()
            .iter()
            .any(|l| l.contains("admin unlock user=daemon"))
    );
}

#[test]
fn show_qr_shows_the_same_key_again_with_a_warning() {
    let env = TestEnv::new("cli_show_qr");
    env.enroll(USER, SECRET);
    let png = env.dir().join("again.png");
    let out = env.cli(&["show-qr", USER, "--qr-png", png.to_str().expect("utf-8")]);
    let stdout = ok(&out);
    assert!(
        text(&out.stderr).contains("secret key"),
        "{}",
        text(&out.stderr)
    );
    let uri = zbarimg(&png);
    assert_eq!(uri, line_value(&stdout, "URI:"));
    assert_eq!(uri_secret(&uri), SECRET);
    // Refuses to overwrite the image it just wrote.
    failed(&env.cli(&["show-qr", USER, "--qr-png", png.to_str().expect("utf-8")]));
    failed(&env.cli(&["show-qr", "root"]));
}

#[test]
fn non_root_is_refused_but_help_works() {
    let env = TestEnv::new("cli_non_root");
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(paths::cli())
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs")
    };
    let out = as_nobody(&[
        "--config",
        env.config_path().to_str().expect("utf-8"),
        "status",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("must be run as root"),
        "{}",
        text(&out.stderr)
    );
    let help = as_nobody(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("enroll"));
    let version = as_nobody(&["--version"]);
    assert!(version.status.success());
}

#[test]
fn doctor_reports_each_check_and_fails_on_problems() {
    let env = TestEnv::new("cli_doctor");
    env.enroll(USER, SECRET);
    let out = env.cli(&["doctor"]);
    let stdout = text(&out.stdout);
    for name in ["config", "state", "pam", "clock"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "no {name} line:\n{stdout}"
        );
    }
    assert!(stdout.contains("1 enrolled user"), "{stdout}");
    // This environment's own service file loads the module by absolute path.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains(env.service())),
        "{stdout}"
    );
    let any_fail = stdout.lines().any(|l| l.starts_with("FAIL"));
    assert_eq!(out.status.success(), !any_fail, "{stdout}");

    std::fs::set_permissions(env.state_dir(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let out = env.cli(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("state") && l.contains("0755")),
        "{stdout}"
    );
    std::fs::set_permissions(env.state_dir(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");

    env.write_config("state_dir = \"{state_dir}\"\nunenrolled = \"sometimes\"\n");
    let out = env.cli(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("twostep.toml:2:14")),
        "{stdout}"
    );
}

#[test]
fn config_errors_name_file_line_and_column() {
    let env = TestEnv::new("cli_config_error");
    env.write_config("state_dir = \"{state_dir}\"\n[lockout]\nmax_failures = \"five\"\n");
    let err = failed(&env.cli(&["status"]));
    assert!(err.contains("twostep.toml:3:16"), "{err}");
}

#[test]
fn man_pages_and_completions_are_generated_from_the_cli() {
    let out_dir = paths::scratch_root().join(format!("gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let generator = paths::profile_dir().join("twostep-gen");
    let output = Command::new(&generator)
        .arg(&out_dir)
        .output()
        .expect("twostep-gen runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let man = std::fs::read_to_string(out_dir.join("man/twostep.8")).expect("twostep.8");
    assert!(man.contains(".TH twostep 8"), "{man}");
    for sub in [
        "enroll",
        "status",
        "reset",
        "restore",
        "unlock",
        "codes",
        "show\\-qr",
        "doctor",
    ] {
        assert!(man.contains(sub), "twostep.8 lacks {sub}");
    }
    assert!(out_dir.join("man/twostep-enroll.8").exists());
    for file in ["twostep.bash", "_twostep", "twostep.fish"] {
        let text = std::fs::read_to_string(out_dir.join("completions").join(file)).expect(file);
        assert!(text.contains("show-qr"), "{file} lacks show-qr");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// A local account with a home directory, removed (with its home) on drop.
struct TempUser(String);

impl TempUser {
    fn create(prefix: &str) -> TempUser {
        let name = format!("{prefix}{}", std::process::id());
        let _ = Command::new("userdel").args(["-r", &name]).output();
        let out = Command::new("useradd")
            .args(["-m", "-s", "/usr/sbin/nologin", &name])
            .output()
            .expect("useradd (package passwd) runs");
        assert!(out.status.success(), "useradd: {}", text(&out.stderr));
        TempUser(name)
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").args(["-r", &self.0]).output();
    }
}

#[test]
fn google_authenticator_user_moves_over_and_logs_in_through_pam() {
    let env = TestEnv::new("cli_import_ga");
    let user = TempUser::create("tsga");
    let home = format!("/home/{}", user.0);
    let file = format!("{home}/.google_authenticator");
    // The real google-authenticator CLI (libpam-google-authenticator), as the user; -C skips
    // its interactive confirmation.
    let out = Command::new("runuser")
        .args(["-u", &user.0, "--", "google-authenticator"])
        .args([
            "-t", "-d", "-f", "-r", "3", "-R", "30", "-w", "3", "-e", "5", "-C", "-Q", "NONE",
        ])
        .args(["-s", &file])
        .output()
        .expect("google-authenticator must be installed (libpam-google-authenticator)");
    assert!(
        out.status.success(),
        "google-authenticator: {}",
        text(&out.stderr)
    );
    let written = std::fs::read_to_string(&file).expect("the file it wrote");
    let secret = written
        .lines()
        .next()
        .expect("line 1 is the key")
        .to_string();
    let scratch: Vec<String> = written
        .lines()
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect();
    assert_eq!(scratch.len(), 5, "{written}");
    env.add_secret(&secret);
    scratch.iter().for_each(|c| env.add_secret(c));

    let out = ok(&env.cli(&["import-google-authenticator", &user.0]));
    twostep_tests::env::emergency_codes(&out)
        .iter()
        .for_each(|c| env.add_secret(c));
    assert_eq!(std::fs::read_to_string(&file).expect("file kept"), written);

    env.login(&user.0, &[&totp(&secret, T)], T)
        .assert_result("PAM_SUCCESS");
    env.login(&user.0, &[&totp(&secret, T)], T + 1)
        .assert_result("PAM_AUTH_ERR");
    env.login(&user.0, &[&scratch[2]], T + 2)
        .assert_result("PAM_SUCCESS");
    env.login(&user.0, &[&scratch[2]], T + 3)
        .assert_result("PAM_AUTH_ERR");
    env.login(&user.0, &[&scratch[4]], T + 4)
        .assert_result("PAM_SUCCESS");
}
