//! The mail helper cannot hold a login or see the application's descriptors: hostile helpers
//! (root-owned 0755 scripts named by `[email] helper`) through the real libpam. A helper that
//! exits while its child keeps standard error open, and one that hangs with children, end the
//! login by the deadline (`timeout_secs` + 3 s) and leave no process behind; a descriptor the
//! application left inheritable does not reach the helper.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use twostep_tests::smtp::closed_port;
use twostep_tests::{Login, TestEnv};

const USER: &str = "daemon";
const ADDR: &str = "alice@example.com";
const T: i64 = 1_800_000_015;
const TIMEOUT_SECS: u64 = 2;
/// The documented deadline is timeout_secs + 3 s; this leaves room for a slow machine, and is
/// far below the 60 s the helpers' children would hold a login that waited for them.
const UPPER_BOUND: Duration = Duration::from_secs(TIMEOUT_SECS + 8);
const SEND_FAILED: &str = "Could not send the code, try another method.";

/// An environment whose helper is `script` (written root-owned 0755 as `<dir>/helper`), with
/// `USER` enrolled for emailed codes.
fn setup(name: &str, script: &str) -> (TestEnv, PathBuf) {
    let env = TestEnv::new(name);
    let helper = env.dir().join("helper");
    let script = script.replace("{dir}", env.dir().to_str().expect("UTF-8 path"));
    std::fs::write(&helper, script).expect("write helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    env.write_config(&env.standard_config(&format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsecurity = \"none\"\n\
         from = \"nas@example.com\"\ntimeout_secs = {TIMEOUT_SECS}\nhelper = \"{}\"\n",
        closed_port(),
        helper.display()
    )));
    let output = env.cli(&[
        "enroll", USER, "--method", "email", "--email", ADDR, "--yes",
    ]);
    assert!(output.status.success(), "enroll: {output:?}");
    twostep_tests::env::emergency_codes(&String::from_utf8_lossy(&output.stdout))
        .iter()
        .for_each(|code| env.add_secret(code));
    let dir = env.dir().to_path_buf();
    (env, dir)
}

/// Logs in (the mail fails, the emergency-code prompt gets a wrong answer) and times it.
fn timed_login(env: &TestEnv, open_fd: Option<&Path>) -> (Login, Duration) {
    let mut attempt = env.attempt(USER).time(T).answer("0000-0000-0000");
    if let Some(path) = open_fd {
        attempt = attempt.open_fd(path);
    }
    attempt.run_timed()
}

fn read_pid(path: &Path) -> i32 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (did the helper run?)", path.display()));
    text.trim().parse().expect("pid")
}

/// Whether `pid` still runs (a zombie awaiting its parent counts as gone).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits a little for `pid` to go; kills it (so a failing test leaves nothing) and panics if it
/// is still there.
fn assert_gone(pid: i32, what: &str, login: &Login) {
    let until = Instant::now() + Duration::from_secs(2);
    while running(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running(pid) {
        // SAFETY: kill takes plain integers; the pid was written by this test's helper.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("{what} (pid {pid}) outlived the login\n{login}");
    }
}

fn assert_failed_send(login: &Login) {
    login.assert_result("PAM_AUTH_ERR");
    assert!(login.has_message("ERROR_MSG", SEND_FAILED), "{login}");
}

#[test]
fn helper_whose_child_holds_stderr_does_not_hold_the_login() {
    let (env, dir) = setup(
        "mail_helper_stderr",
        "#!/bin/sh\nsleep 60 &\necho $! > {dir}/sleep.pid\necho 'no route to the server' >&2\nexit 1\n",
    );
    let (login, elapsed) = timed_login(&env, None);
    assert_failed_send(&login);
    login.assert_logged(&["email failure", "no route to the server"]);
    assert!(
        elapsed < UPPER_BOUND,
        "the login took {elapsed:?} (bound {UPPER_BOUND:?})\n{login}"
    );
    assert_gone(
        read_pid(&dir.join("sleep.pid")),
        "the helper's child",
        &login,
    );
}

#[test]
fn hanging_helper_and_its_children_are_killed_at_the_deadline() {
    let (env, dir) = setup(
        "mail_helper_hang",
        "#!/bin/sh\necho $$ > {dir}/helper.pid\nsleep 60 &\necho $! > {dir}/sleep.pid\nsleep 60\n",
    );
    let (login, elapsed) = timed_login(&env, None);
    assert_failed_send(&login);
    login.assert_logged(&["email failure", "timed out"]);
    let deadline = Duration::from_secs(TIMEOUT_SECS + 3);
    assert!(
        elapsed >= deadline - Duration::from_millis(500) && elapsed < UPPER_BOUND,
        "the login took {elapsed:?}, expected about {deadline:?}\n{login}"
    );
    assert_gone(read_pid(&dir.join("helper.pid")), "the helper", &login);
    assert_gone(
        read_pid(&dir.join("sleep.pid")),
        "the helper's child",
        &login,
    );
}

#[test]
fn application_descriptors_do_not_reach_the_helper() {
    let (env, dir) = setup(
        "mail_helper_fds",
        "#!/bin/sh\nls -l /proc/$$/fd > {dir}/fds.txt 2>&1\nexit 1\n",
    );
    let secret_file = dir.join("application-file");
    std::fs::write(&secret_file, "application data").expect("write");
    let (login, _) = timed_login(&env, Some(&secret_file));
    assert_failed_send(&login);
    assert!(
        login.stderr.contains("application-file is descriptor"),
        "pam-drive did not hold the file open\n{login}"
    );
    let fds = std::fs::read_to_string(dir.join("fds.txt")).expect("the helper's fd list");
    assert!(
        !fds.contains("application-file"),
        "the helper inherited the application's descriptor:\n{fds}"
    );
    assert!(fds.contains(" 0 -> ") && fds.contains(" 2 -> "), "{fds}");
}
