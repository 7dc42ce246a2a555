//! One-prompt mode (`combined=split` / `combined=verify`) through a real single-prompt service,
//! vsftpd on 127.0.0.1 with curl as the FTP client, and through libpam directly (pam-drive) for
//! the lockout and stack checks. The user types the password immediately followed by the code
//! (or an emergency code, with or without dashes) into the one password field; the split line
//! hands the password on to `pam_unix.so use_first_pass`, and the verify line after it checks
//! the code, so that only someone who knows the password can make a wrong code count.
//!
//! vsftpd runs the module with the real clock: codes come from oathtool for the current time.

use twostep_tests::TestEnv;
use twostep_tests::sshd::LiveCodes;
use twostep_tests::users::TestUser;
use twostep_tests::vsftpd::Vsftpd;

const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
/// A file in the user's home: a listing that shows it proves the login worked.
const MARKER: &str = "twostep-ftp-marker";

/// docs/pam.md, one-prompt mode.
const COMBINED_STACK: [&str; 5] = [
    "auth required {module} config={config} combined=split",
    "auth requisite pam_unix.so use_first_pass",
    "auth required {module} config={config} combined=verify",
    "account required pam_unix.so",
    "session required pam_permit.so",
];
/// 15 seconds into a 30-second step, for pam-drive's fake clock.
const T: i64 = 1_800_000_015;

/// An enrolled user with a marker file, an environment with the combined stack, and its
/// emergency codes.
fn setup(name: &str) -> (TestUser, TestEnv, Vec<String>) {
    let user = TestUser::create(name);
    user.write_home_file(MARKER, "hello\n");
    let env = TestEnv::builder(name).stack(&COMBINED_STACK).build();
    let emergency = env.enroll(user.name(), SECRET);
    env.add_secret(user.password());
    (user, env, emergency)
}

#[test]
fn password_and_code_in_one_answer() {
    let (user, env, _) = setup("ftp_combined");
    let ftp = Vsftpd::start(&env);
    let mut codes = LiveCodes::new(SECRET);

    let ok = ftp.list(&user, &format!("{}{}", user.password(), codes.next_code()));
    ok.assert_listed(MARKER);
    ok.assert_logged(&[
        "auth success",
        &format!("user={}", user.name()),
        &format!("service={}", env.service()),
        "rhost=127.0.0.1",
        "method=totp",
    ]);
    // The password alone, or the code alone, is not enough.
    ftp.list(&user, user.password()).assert_refused();
    ftp.list(&user, &codes.next_code()).assert_refused();
    env.assert_logs_clean(&[SECRET, user.password()]);
}

#[test]
fn wrong_code_or_wrong_password_is_refused() {
    let (user, env, _) = setup("ftp_wrong");
    let ftp = Vsftpd::start(&env);
    let mut codes = LiveCodes::new(SECRET);

    let wrong_code = ftp.list(&user, &format!("{}{}", user.password(), codes.wrong()));
    wrong_code.assert_refused();
    wrong_code.assert_logged(&["auth failure", "reason=wrong-code"]);

    let wrong_password = ftp.list(&user, &format!("Wrong{}", codes.next_code()));
    wrong_password.assert_refused();
    assert!(
        !wrong_password.stdout.contains(MARKER),
        "\n{wrong_password}"
    );
    // Still works with both right.
    ftp.list(&user, &format!("{}{}", user.password(), codes.next_code()))
        .assert_listed(MARKER);
    env.assert_logs_clean(&[SECRET, user.password()]);
}

#[test]
fn emergency_code_in_one_answer_works_once() {
    let (user, env, emergency) = setup("ftp_emergency");
    let ftp = Vsftpd::start(&env);

    // With dashes, then without.
    let dashed = &emergency[0];
    assert!(dashed.contains('-'), "emergency codes are dashed: {dashed}");
    let ok = ftp.list(&user, &format!("{}{dashed}", user.password()));
    ok.assert_listed(MARKER);
    ok.assert_logged(&["auth success", "method=emergency", "remaining=9"]);
    ftp.list(&user, &format!("{}{dashed}", user.password()))
        .assert_refused();

    let plain = emergency[1].replace('-', "");
    ftp.list(&user, &format!("{}{plain}", user.password()))
        .assert_listed(MARKER);
    ftp.list(&user, &format!("{}{plain}", user.password()))
        .assert_refused();
    env.assert_logs_clean(&[SECRET, user.password()]);
}

/// Issue 12: strangers who lack the password, typing anything from many addresses, never lock
/// the owner out; wrong codes after the right password still do.
#[test]
fn only_wrong_codes_after_the_right_password_count_toward_lockout() {
    let user = TestUser::create("floodone");
    let env = TestEnv::builder("one_prompt_flood")
        .config("[lockout]\nmax_failures = 3\nmax_failures_user = 6")
        .stack(&COMBINED_STACK)
        .build();
    env.enroll(user.name(), SECRET);
    env.add_secret(user.password());
    let login = |rhost: &str, answer: &str, time: i64| {
        env.attempt(user.name())
            .rhost(rhost)
            .answer(answer)
            .time(time)
            .run()
    };
    let wrong = twostep_tests::oath::wrong_code(SECRET, T);
    // 4 addresses x 5 tries with a wrong password: 20 tries, past both limits.
    for host in 1..=4 {
        for _ in 0..5 {
            let stranger = login(&format!("192.0.2.{host}"), &format!("guess{wrong}"), T);
            stranger.assert_refused();
            assert!(
                !stranger.logs.iter().any(|l| l.contains("auth failure")),
                "a wrong password must not reach the code check\n{stranger}"
            );
        }
    }
    // The owner, from a fifth address (and from one the strangers used), gets in.
    let code = twostep_tests::oath::totp(SECRET, T);
    login("192.0.2.5", &format!("{}{code}", user.password()), T).assert_result("PAM_SUCCESS");
    let next = twostep_tests::oath::totp(SECRET, T + 30);
    login("192.0.2.1", &format!("{}{next}", user.password()), T + 30).assert_result("PAM_SUCCESS");

    // Wrong codes with the right password: 3 from one address lock that address...
    let later = T + 60;
    let wrong = twostep_tests::oath::wrong_code(SECRET, later);
    let with_password = format!("{}{wrong}", user.password());
    for _ in 0..3 {
        login("192.0.2.6", &with_password, later)
            .assert_result("PAM_AUTH_ERR")
            .assert_logged(&["auth failure", "reason=wrong-code"]);
    }
    let right = twostep_tests::oath::totp(SECRET, later);
    let locked = login("192.0.2.6", &format!("{}{right}", user.password()), later);
    locked.assert_refused().assert_logged(&["reason=locked"]);
    // ...and 6 in all lock the user everywhere.
    for _ in 0..3 {
        login("192.0.2.7", &with_password, later).assert_refused();
    }
    login("192.0.2.8", &format!("{}{right}", user.password()), later)
        .assert_refused()
        .assert_logged(&["reason=locked"]);
    env.assert_logs_clean(&[SECRET]);
}

/// The old single `combined` argument and a verify line without a split line fail closed, and
/// say why. (A split line without a verify line is `twostep doctor`'s to catch: see
/// pam_twostep/src/one_prompt.rs.)
#[test]
fn incomplete_one_prompt_stacks_fail_closed() {
    let user = TestUser::create("onestack");
    let env = TestEnv::builder("one_prompt_stacks").build();
    env.enroll(user.name(), SECRET);
    env.add_secret(user.password());
    let code = twostep_tests::oath::totp(SECRET, T);
    let answer = format!("{}{code}", user.password());
    let run = |stack: &[&str], answer: &str| {
        env.write_stack(stack);
        env.attempt(user.name()).answer(answer).time(T).run()
    };
    let old = run(
        &[
            "auth required {module} config={config} combined",
            "auth requisite pam_unix.so use_first_pass",
            "account required pam_permit.so",
        ],
        &answer,
    );
    old.assert_result("PAM_SERVICE_ERR");
    old.assert_logged(&["combined=split", "combined=verify"]);

    let no_split = run(
        &[
            "auth requisite pam_unix.so",
            "auth required {module} config={config} combined=verify",
            "account required pam_permit.so",
        ],
        user.password(),
    );
    no_split.assert_result("PAM_SERVICE_ERR");
    no_split.assert_logged(&["found nothing from a combined=split line"]);
    env.assert_logs_clean(&[SECRET]);
}
