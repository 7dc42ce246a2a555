//! User names through the real libpam with a case-insensitive user directory (nss_wrapper and
//! the test NSS module, see `twostep_tests::nss`), as SSSD or winbind are against Active
//! Directory: a typed `ALICE` is `alice`'s record and policy; what the policy cannot resolve
//! (a record or a list entry under the alias) is refused and logged; a failed lookup is
//! refused; an unknown user (real glibc, no such user) follows `unenrolled`.

use std::ffi::OsString;

use twostep_tests::nss::NssDirectory;
use twostep_tests::oath::{totp, wrong_code};
use twostep_tests::{Login, TestEnv};

const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
/// 2027-01-15 08:00:15 UTC: 45 seconds of margin before the code changes.
const T: i64 = 1_800_000_015;
const PROMPT: &str = "Verification code: ";
const REQUIRED: &str =
    "Two-step login is required for this account but is not set up. Ask your administrator.";
/// Not in /etc/passwd: an unknown user for the real glibc.
const GHOST: &str = "tsnames-no-such-user";
/// The module, then a module that lets in whatever the module does not refuse (as a password
/// module would): PAM_IGNORE ("not enrolled, allowed") ends in PAM_SUCCESS.
const STACK: [&str; 3] = [
    "auth required {module} config={config}",
    "auth required pam_permit.so",
    "account required pam_permit.so",
];

/// `alice` (uid 2001, also in group `staff`) and `bob` in a case-insensitive directory.
fn directory(env: &TestEnv) -> NssDirectory {
    NssDirectory::create(
        env.dir(),
        &[
            "alice:x:2001:2001:Alice:/nonexistent:/bin/false",
            "bob:x:2002:2002:Bob:/nonexistent:/bin/false",
        ],
        &["alice:x:2001:", "bob:x:2002:", "staff:x:3001:alice"],
    )
}

/// An environment with `extra` config and its directory.
fn setup(name: &str, extra: &str) -> (TestEnv, Vec<(OsString, OsString)>) {
    let env = TestEnv::builder(name).config(extra).stack(&STACK).build();
    let envs = directory(&env).envs();
    (env, envs)
}

/// Enrolls `typed` through the CLI under `envs` and returns its stderr.
fn enroll(env: &TestEnv, envs: &[(OsString, OsString)], typed: &str) -> String {
    env.add_secret(SECRET);
    let output = env.cli_with(&["enroll", typed, "--secret", SECRET, "--yes"], envs);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "twostep enroll {typed}: {}\nstdout:\n{}\nstderr:\n{stderr}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    twostep_tests::env::emergency_codes(&String::from_utf8_lossy(&output.stdout))
        .iter()
        .for_each(|code| env.add_secret(code));
    stderr
}

fn login(env: &TestEnv, envs: &[(OsString, OsString)], user: &str, answers: &[&str]) -> Login {
    env.attempt(user).envs(envs).answers(answers).time(T).run()
}

/// Copies `from`'s record to `to` (as an older version, or a hand edit, would have left it).
fn copy_record(env: &TestEnv, from: &str, to: &str) {
    let text = std::fs::read_to_string(env.record_path(from)).expect("record");
    let text = text.replace(&format!("user = \"{from}\""), &format!("user = \"{to}\""));
    let path = env.record_path(to);
    std::fs::write(&path, text).expect("write record");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn typed_alias_is_asked_for_the_canonical_users_code() {
    let (env, envs) = setup("names_alias_code", "");
    enroll(&env, &envs, "alice");
    let code = totp(SECRET, T);
    let ok = login(&env, &envs, "ALICE", &[&code]);
    ok.assert_result("PAM_SUCCESS").assert_prompted_once(PROMPT);
    ok.assert_logged(&["user name", "user=ALICE", "canonical=alice"]);
    ok.assert_logged(&["auth success", "user=alice", "method=totp"]);
    login(&env, &envs, "ALICE", &[&wrong_code(SECRET, T)])
        .assert_result("PAM_AUTH_ERR")
        .assert_prompted_once(PROMPT)
        .assert_logged(&["auth failure", "user=alice", "reason=wrong-code"]);
    env.assert_logs_clean(&[SECRET]);
}

#[test]
fn enforcement_by_name_and_group_applies_to_the_alias() {
    for (name, policy) in [
        ("names_enforce_user", "enforce_users = [\"alice\"]"),
        ("names_enforce_group", "enforce_groups = [\"staff\"]"),
    ] {
        let (env, envs) = setup(name, &format!("[policy]\n{policy}"));
        let refused = login(&env, &envs, "ALICE", &[]);
        refused
            .assert_result("PAM_AUTH_ERR")
            .assert_no_prompt()
            .assert_logged(&["auth failure", "user=alice", "policy=enforced"]);
        assert!(
            refused.has_message("ERROR_MSG", REQUIRED),
            "{policy}\n{refused}"
        );
        // bob is in neither list nor group: not enrolled, allowed.
        login(&env, &envs, "BOB", &[])
            .assert_result("PAM_SUCCESS")
            .assert_logged(&["not enrolled", "user=bob", "action=allow"]);
    }
}

#[test]
fn alias_in_the_policy_lists_is_refused_and_logged() {
    for (name, policy, detail) in [
        (
            "names_exempt_alias",
            "enforce_groups = [\"staff\"]\nexempt_users = [\"ALICE\"]",
            "detail=alias-in-exempt-users",
        ),
        (
            "names_enforce_alias",
            "enforce_users = [\"ALICE\"]",
            "detail=alias-in-enforce-users",
        ),
    ] {
        let (env, envs) = setup(name, &format!("[policy]\n{policy}"));
        login(&env, &envs, "ALICE", &[])
            .assert_refused()
            .assert_no_prompt()
            .assert_logged(&[
                "auth refused",
                "user=ALICE",
                "canonical=alice",
                "reason=ambiguous-name",
                detail,
            ]);
    }
}

#[test]
fn record_under_the_alias_is_refused() {
    let (env, envs) = setup("names_alias_record", "");
    enroll(&env, &envs, "alice");
    copy_record(&env, "alice", "ALICE");
    let code = totp(SECRET, T);
    for user in ["ALICE", "Alice"] {
        if user == "Alice" {
            copy_record(&env, "alice", "Alice");
            std::fs::remove_file(env.record_path("alice")).expect("remove");
        }
        login(&env, &envs, user, &[&code])
            .assert_refused()
            .assert_no_prompt()
            .assert_logged(&[
                "auth refused",
                &format!("user={user}"),
                "canonical=alice",
                "detail=record-under-alias",
            ]);
    }
}

#[test]
fn failed_directory_lookup_fails_closed() {
    let (env, envs) = setup("names_lookup_error", "");
    enroll(&env, &envs, "alice");
    // The directory is unreachable when alice logs in as ALICE.
    let failing = directory(&env).failing("ALICE").envs();
    login(&env, &failing, "ALICE", &[&totp(SECRET, T)])
        .assert_result("PAM_AUTHINFO_UNAVAIL")
        .assert_no_prompt()
        .assert_logged(&["error", "user=ALICE", "refusing login", "failed to look up"]);
}

#[test]
fn unknown_user_follows_unenrolled_and_never_gets_less() {
    let env = TestEnv::builder("names_unknown").stack(&STACK).build();
    let allowed = env.login(GHOST, &[], T);
    allowed
        .assert_result("PAM_SUCCESS")
        .assert_no_prompt()
        .assert_logged(&["not enrolled", "action=allow", "detail=unknown-user"]);
    env.write_config(&env.standard_config("unenrolled = \"deny\""));
    env.login(GHOST, &[], T)
        .assert_result("PAM_AUTH_ERR")
        .assert_logged(&["reason=not-enrolled", "action=deny", "detail=unknown-user"]);
    // Group membership cannot be ruled out: any enforce_groups enforce an unknown user, and an
    // exemption by name does not apply.
    env.write_config(&env.standard_config(&format!(
        "[policy]\nenforce_groups = [\"root\"]\nexempt_users = [\"{GHOST}\"]"
    )));
    let enforced = env.login(GHOST, &[], T);
    enforced
        .assert_result("PAM_AUTH_ERR")
        .assert_logged(&["policy=enforced", "detail=unknown-user"]);
    assert!(enforced.has_message("ERROR_MSG", REQUIRED), "{enforced}");
}

#[test]
fn record_of_an_unknown_user_is_refused() {
    let env = TestEnv::builder("names_unknown_record")
        .stack(&STACK)
        .build();
    env.enroll("daemon", SECRET);
    copy_record(&env, "daemon", GHOST);
    env.login(GHOST, &[&totp(SECRET, T)], T)
        .assert_refused()
        .assert_no_prompt()
        .assert_logged(&["auth refused", "detail=record-for-unknown-user"]);
}

#[test]
fn cli_acts_on_the_canonical_record() {
    let (env, envs) = setup("names_cli", "");
    let stderr = enroll(&env, &envs, "ALICE");
    assert!(
        stderr.contains("ALICE is alice on this system"),
        "no note on stderr:\n{stderr}"
    );
    assert!(env.record_path("alice").is_file(), "alice's record");
    assert!(
        !env.record_path("ALICE").exists(),
        "no record under the alias"
    );
    let status = env.cli_with(&["status", "Alice"], &envs);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && stdout.contains("alice"),
        "{stdout}"
    );
    let reset = env.cli_with(&["reset", "ALICE"], &envs);
    assert!(reset.status.success(), "{reset:?}");
    assert!(
        !env.record_path("alice").exists(),
        "reset ALICE removed alice's record"
    );
    // A user the directory does not know cannot be enrolled: its logins would be refused.
    let ghost = env.cli(&["enroll", GHOST, "--secret", SECRET, "--yes"]);
    assert!(!ghost.status.success(), "{ghost:?}");
    assert!(!env.record_path(GHOST).exists());
}
