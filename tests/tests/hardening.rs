//! Issue 12, item 7, through the real libpam and the real CLI: the key never needs to be on a
//! command line, a `config=` that names no file fails closed, and PAM_RHOST is parsed strictly
//! (a near-address is a host name: never trusted, never another host's grace).

use twostep_tests::{TestEnv, oath};

const USER: &str = "daemon";
const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
/// 15 seconds into a 30-second step.
const T: i64 = 1_800_000_015;
const PROMPT: &str = "Verification code: ";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_key_can_come_from_stdin_and_argv_gets_a_warning() {
    let env = TestEnv::new("secret_stdin");
    env.add_secret(SECRET);
    let input = format!("{SECRET}\n");
    let out = env.cli_with_input(
        &["enroll", USER, "--secret-stdin", "--yes"],
        Some(input.as_bytes()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    env.login(USER, &[&oath::totp(SECRET, T)], T)
        .assert_result("PAM_SUCCESS");

    let out = env.cli(&["enroll", "bin", "--secret", SECRET, "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("--secret-stdin"),
        "{stderr}"
    );

    for (args, input) in [
        (&["enroll", "sys", "--secret-stdin", "--yes"][..], &b""[..]),
        (&["enroll", "sys", "--secret-stdin", "--yes"], b"\n"),
        (
            &[
                "enroll",
                "sys",
                "--secret-stdin",
                "--secret",
                SECRET,
                "--yes",
            ],
            input.as_bytes(),
        ),
    ] {
        let out = env.cli_with_input(args, Some(input));
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(!env.record_path("sys").exists(), "{args:?} stored a record");
    }
    let long = "A".repeat(5000);
    let out = env.cli_with_input(
        &["enroll", "sys", "--secret-stdin", "--yes"],
        Some(long.as_bytes()),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("too long"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_config_argument_naming_no_file_fails_closed() {
    let env = TestEnv::builder("config_typo")
        .stack(&[
            "auth required {module} config=/etc/twostep/no-such-twostep.toml",
            "account required pam_permit.so",
        ])
        .build();
    // Without its config the module would use the defaults: unenrolled users allowed.
    let login = env.login(USER, &["123456"], T);
    login
        .assert_result("PAM_AUTHINFO_UNAVAIL")
        .assert_no_prompt();
    login.assert_logged(&["/etc/twostep/no-such-twostep.toml", "does not exist"]);
}

#[test]
fn near_addresses_are_not_trusted_and_get_no_grace() {
    let env = TestEnv::builder("rhost_strict")
        .config("[policy]\ntrusted_networks = [\"10.1.2.0/24\"]\ngrace_period = 3600")
        .build();
    env.enroll(USER, SECRET);
    let attempt = |rhost: &str, answers: &[&str], time: i64| {
        env.attempt(USER)
            .rhost(rhost)
            .answers(answers)
            .time(time)
            .run()
    };
    // The network itself is trusted.
    attempt("10.1.2.3", &[], T)
        .assert_result("PAM_SUCCESS")
        .assert_no_prompt();
    for near in [
        "10.1.2.3%evil",
        "[[[10.1.2.3]]]",
        "[10.1.2.3]",
        "10.1.2.3\u{1}",
    ] {
        let login = attempt(near, &[&oath::wrong_code(SECRET, T)], T);
        login
            .assert_result("PAM_AUTH_ERR")
            .assert_prompted_once(PROMPT);
    }
    // Grace: a code from 192.0.2.7 spares 192.0.2.7 (in any spelling of that address), not a
    // near-address.
    attempt("192.0.2.7", &[&oath::totp(SECRET, T)], T).assert_result("PAM_SUCCESS");
    attempt("::ffff:192.0.2.7", &[], T + 5)
        .assert_result("PAM_SUCCESS")
        .assert_no_prompt();
    for near in ["192.0.2.7\u{1}", "192.0.2.7%x", "[192.0.2.7]"] {
        attempt(near, &[""], T + 5)
            .assert_result("PAM_AUTH_ERR")
            .assert_prompted_once(PROMPT);
    }
}
