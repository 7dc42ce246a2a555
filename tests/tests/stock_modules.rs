//! pam-drive against libpam's stock modules: the client, its conversation and its fake clock
//! work, independently of the twostep module.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use twostep_tests::{TestEnv, paths};

const T: i64 = 1_800_000_015;

fn stock(name: &str, stack: &[&str]) -> TestEnv {
    TestEnv::builder(name).stack(stack).build()
}

/// Installs `<dir>/capture.sh`, which saves its stdin and `$PAM_RHOST` in `<dir>`.
fn capture_script(env: &TestEnv) -> String {
    let dir = env.dir().display();
    let script = env.dir().join("capture.sh");
    let text = format!("#!/bin/sh\ncat > {dir}/token\nprintf %s \"$PAM_RHOST\" > {dir}/rhost\n");
    std::fs::write(&script, text).expect("write capture.sh");
    chmod(&script, 0o700);
    script.display().to_string()
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The harness runs the pam-drive cargo built for these tests.
#[test]
fn harness_finds_this_pam_drive() {
    let built = Path::new(env!("CARGO_BIN_EXE_pam-drive"));
    assert_eq!(
        paths::pam_drive().canonicalize().ok(),
        built.canonicalize().ok()
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["--service", "x"],
        &["--service", "x", "--user", "u", "--time", "no"],
    ] {
        let output = std::process::Command::new(paths::pam_drive())
            .args(args)
            .output()
            .expect("run pam-drive");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn pam_permit_succeeds() {
    let env = stock("permit", &["auth required pam_permit.so"]);
    let login = env.attempt("root").run();
    login.assert_result("PAM_SUCCESS");
    assert!(login.messages.is_empty(), "{login}");
}

#[test]
fn pam_deny_fails() {
    let env = stock("deny", &["auth required pam_deny.so"]);
    env.attempt("root")
        .time(T)
        .run()
        .assert_result("PAM_AUTH_ERR");
}

#[test]
fn answers_and_rhost_reach_the_module() {
    let env = stock("exec_answers", &["auth required pam_permit.so"]);
    let script = capture_script(&env);
    env.write_stack(&[&format!(
        "auth required pam_exec.so expose_authtok {script}"
    )]);
    let answer: &[u8] = b"\xc3\xff not utf-8 \xe9";
    // pam_exec runs the script again in pam_setcred, where expose_authtok has no token and
    // fails: this test is about pam_authenticate.
    let login = env
        .attempt("root")
        .rhost("host.example")
        .answer_bytes(answer)
        .answer_bytes(b"unused")
        .time(T)
        .setcred(false)
        .run();
    login.assert_result("PAM_SUCCESS");
    login.assert_prompted_once("Password: ");
    let token = std::fs::read(env.dir().join("token")).expect("pam_exec ran capture.sh");
    assert_eq!(token.strip_suffix(b"\0").unwrap_or(&token), answer);
    let rhost = std::fs::read_to_string(env.dir().join("rhost")).expect("rhost");
    assert_eq!(rhost, "host.example");
}

#[test]
fn prompt_without_answer_is_a_conversation_error() {
    let env = stock("exec_no_answer", &["auth required pam_permit.so"]);
    let script = capture_script(&env);
    env.write_stack(&[&format!(
        "auth required pam_exec.so expose_authtok {script}"
    )]);
    let login = env.attempt("root").run();
    login.assert_result("PAM_CONV_ERR");
    assert_eq!(login.prompts(), ["Password: "], "{login}");
}

#[test]
fn info_and_error_messages_are_printed() {
    let env = stock(
        "messages",
        &[
            "auth optional pam_echo.so hello %u",
            "auth required pam_exec.so /bin/false",
        ],
    );
    let login = env.attempt("root").run();
    login.assert_result("PAM_SYSTEM_ERR");
    assert!(login.has_message("TEXT_INFO", "hello root"), "{login}");
    assert_eq!(
        login.texts("ERROR_MSG"),
        ["/bin/false failed: exit code 1"],
        "{login}"
    );
}

/// Reads the newest failure time pam_faillock recorded for `user` in `dir` (its tally records
/// are 64 bytes: source[52], reserved u16, status u16, time u64).
fn faillock_time(dir: &Path, user: &str) -> i64 {
    let bytes = std::fs::read(dir.join(user)).expect("pam_faillock wrote a tally file");
    let record = bytes.chunks_exact(64).last().expect("one tally record");
    let time = u64::from_ne_bytes(record[56..64].try_into().expect("8 bytes"));
    i64::try_from(time).expect("time fits i64")
}

/// pam_faillock (dlopen()ed by libpam, calling libc's time()) records failures with the fake
/// time given by --time, and with the real time without it.
#[test]
fn fake_clock_reaches_dlopened_modules() {
    let env = stock("fake_clock", &["auth required pam_permit.so"]);
    let tally = env.dir().join("faillock");
    std::fs::create_dir(&tally).expect("mkdir faillock");
    let stack = format!(
        "auth required pam_faillock.so authfail deny=100 dir={}",
        tally.display()
    );
    env.write_stack(&["auth required pam_deny.so", &stack]);

    env.attempt("root")
        .time(T)
        .run()
        .assert_result("PAM_AUTH_ERR");
    let recorded = faillock_time(&tally, "root");
    assert!(
        (T..T + 5).contains(&recorded),
        "faillock saw {recorded}, not ~{T}"
    );

    std::fs::remove_file(tally.join("root")).expect("reset tally");
    env.attempt("root").run().assert_result("PAM_AUTH_ERR");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let recorded = faillock_time(&tally, "root");
    assert!(
        (now - 60..=now).contains(&recorded),
        "faillock saw {recorded}, now is {now}"
    );
}

/// With --dev-log (the default), what libpam itself logs to /dev/log reaches the listener, and
/// the real /dev/log is left alone.
#[test]
fn dev_log_collects_libpam_messages() {
    let dev_log_before = Path::new("/dev/log").symlink_metadata().is_ok();
    let env = stock("dev_log", &["auth required pam_no_such_module_xyz.so"]);
    let login = env.attempt("root").run();
    login.assert_refused();
    login.assert_logged(&["pam_no_such_module_xyz.so"]);
    assert_eq!(
        Path::new("/dev/log").symlink_metadata().is_ok(),
        dev_log_before
    );
}
