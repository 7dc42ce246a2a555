//! One-prompt mode (`combined`) through a real single-prompt service: vsftpd on 127.0.0.1,
//! curl as the FTP client. The user types the password immediately followed by the code (or
//! an emergency code, with or without dashes) into the one password field; the module checks
//! the code and hands the password on to `pam_unix.so use_first_pass`.
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
const COMBINED_STACK: [&str; 4] = [
    "auth required {module} config={config} combined",
    "auth required pam_unix.so use_first_pass",
    "account required pam_unix.so",
    "session required pam_permit.so",
];

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
