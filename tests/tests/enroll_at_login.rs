//! Enrollment at login (`on_unenrolled = "enroll"`) through the real libpam and pam_unix: the
//! enrollment a login confirms is stored only once the whole auth stack has succeeded
//! (`pam_setcred`), whatever the control of the password line above the module.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;
use twostep_tests::users::TestUser;
use twostep_tests::{Login, TestEnv, oath};

/// 15 seconds into a 30-second step.
const T: i64 = 1_800_000_015;
const APP_CODE: &str = "Code shown by the app: ";
const CODE: &str = "Verification code: ";

/// The stack of issue 12: the password on a `required` line, so a wrong password goes on to
/// pam_twostep.
const REQUIRED_PASSWORD: [&str; 3] = [
    "auth required pam_unix.so",
    "auth required {module} config={config}",
    "account required pam_permit.so",
];

fn enroll_env(name: &str, user: &TestUser) -> TestEnv {
    TestEnv::builder(name)
        .config(&format!(
            "[policy]\nenforce_users = [\"{}\"]\non_unenrolled = \"enroll\"",
            user.name()
        ))
        .stack(&REQUIRED_PASSWORD)
        .build()
}

/// A program for `--answer-exec` that types the current code of the key the module showed
/// (the last `Key: ` line of the conversation), computed by oathtool at `time`.
fn key_typist(env: &TestEnv, time: i64) -> PathBuf {
    let path = env.dir().join(format!("type-key-code-{time}"));
    let script = format!(
        "#!/bin/sh\nkey=$(sed -n 's/^TEXT_INFO: Key: //p' | tail -n 1 | tr -d ' ')\n\
         [ -n \"$key\" ] || exit 1\nexec oathtool --totp -b --now @{time} \"$key\"\n"
    );
    std::fs::write(&path, script).expect("write the script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A login that answers the password prompt with `password`, the enrollment's code prompt with
/// the right code for the key shown, and Enter to the last prompt.
fn enroll_attempt(env: &TestEnv, user: &TestUser, password: &str, setcred: bool) -> Login {
    env.attempt(user.name())
        .answer(password)
        .answer_exec(&key_typist(env, T))
        .answer("")
        .time(T)
        .rhost("192.0.2.9")
        .setcred(setcred)
        .run()
}

fn status(env: &TestEnv, user: &str) -> Value {
    let out = env.cli(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    all.as_array()
        .expect("an array")
        .iter()
        .find(|entry| entry["user"] == user)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The key shown in the conversation.
fn shown_key(login: &Login) -> String {
    login
        .texts("TEXT_INFO")
        .iter()
        .find_map(|text| text.strip_prefix("Key: "))
        .unwrap_or_else(|| panic!("no `Key: ` line\n{login}"))
        .replace(' ', "")
}

#[test]
fn a_wrong_password_never_stores_an_enrollment() {
    let user = TestUser::create("enrwrong");
    let env = enroll_env("enroll_wrong_password", &user);
    let attacker = enroll_attempt(&env, &user, "not-the-password", true);
    // pam_unix failed on a `required` line, so the stack went on: the module confirmed the
    // attacker's code, but the login fails and nothing is stored.
    attacker.assert_result("PAM_AUTH_ERR");
    assert!(
        attacker.prompts().contains(&APP_CODE),
        "premise: the enrollment ran after the wrong password\n{attacker}"
    );
    env.add_secret(&shown_key(&attacker));
    assert!(!env.record_path(user.name()).exists(), "\n{attacker}");
    assert_eq!(status(&env, user.name())["state"], "incomplete");

    // The owner, with the right password, enrolls; the next login asks for a code.
    let owner = enroll_attempt(&env, &user, user.password(), true);
    owner.assert_result("PAM_SUCCESS");
    let key = shown_key(&owner);
    env.add_secret(&key);
    owner.assert_logged(&["enrolled at login", user.name()]);
    assert_eq!(status(&env, user.name())["state"], "enabled");
    let next = T + 30;
    env.attempt(user.name())
        .answers(&[user.password(), &oath::totp(&key, next)])
        .time(next)
        .run()
        .assert_result("PAM_SUCCESS");
    let later = env
        .attempt(user.name())
        .answers(&[user.password(), &oath::wrong_code(&key, next + 30)])
        .time(next + 30)
        .run();
    later.assert_result("PAM_AUTH_ERR");
    assert_eq!(later.prompts(), ["Password: ", CODE], "\n{later}");
    env.assert_logs_clean(&[user.password()]);
}

#[test]
fn an_application_that_never_calls_setcred_stores_nothing() {
    let user = TestUser::create("enrnoset");
    let env = enroll_env("enroll_no_setcred", &user);
    let login = enroll_attempt(&env, &user, user.password(), false);
    login.assert_result("PAM_SUCCESS");
    env.add_secret(&shown_key(&login));
    assert!(!env.record_path(user.name()).exists());
    assert_eq!(status(&env, user.name())["state"], "incomplete");
    // The next login offers enrollment again, with a new key.
    let again = enroll_attempt(&env, &user, user.password(), true);
    again.assert_result("PAM_SUCCESS");
    env.add_secret(&shown_key(&again));
    assert_ne!(shown_key(&again), shown_key(&login));
    assert_eq!(status(&env, user.name())["state"], "enabled");
}
