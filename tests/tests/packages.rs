//! The installed .deb through the machine's own PAM configuration: `/etc/pam.d/common-auth` as
//! pam-auth-update writes it with the package's `twostep` profile enabled, real local users with
//! real passwords (pam_unix, /etc/shadow), the packaged `/etc/twostep/twostep.toml` and the
//! state directory `/var/lib/twostep`.
//!
//! These tests need the package installed and enabled and two throwaway users, and they enroll
//! one of them in the real state directory, so they are `#[ignore]`d in a plain `cargo test`.
//! `packaging/ci-package-test.sh` sets everything up, runs them with `--ignored`, then removes
//! and purges the package and the users. Environment it sets:
//!
//! - `TWOSTEP_TEST_CLI=/usr/sbin/twostep` (and `TWOSTEP_TEST_MODULE`, see `twostep_tests::paths`)
//! - `TWOSTEP_PKGTEST_ENROLLED`, `TWOSTEP_PKGTEST_UNENROLLED`: the two users' names
//! - `TWOSTEP_PKGTEST_PASSWORD`: both users' password

use std::path::{Path, PathBuf};
use std::process::Command;

use twostep_tests::env::emergency_codes;
use twostep_tests::oath::{self, totp};
use twostep_tests::{Login, TestEnv, paths, run};

const COMMON_AUTH: &str = "/etc/pam.d/common-auth";
/// Where the .deb installs the module.
const MODULE: &str = "/usr/lib/x86_64-linux-gnu/security/pam_twostep.so";
const CLI: &str = "/usr/sbin/twostep";
const STATE_DIR: &str = "/var/lib/twostep";
/// A service like sshd or login: the system's password stack, then an account step.
const SERVICE: [&str; 2] = ["@include common-auth", "account required pam_permit.so"];
const PASSWORD_PROMPT: &str = "Password: ";
const CODE_PROMPT: &str = "Verification code: ";
/// 20 random bytes.
const SECRET: &str = "N4ZLTMDC7DJW5XQ3HPRKGO6YBVAE2TSF";
/// 15 seconds into a 30-second step.
const T: i64 = 1_800_000_015;
const STEP: i64 = 30;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through packaging/ci-package-test.sh")
    })
}

/// Panics unless the tests run against the installed files, not the build tree.
fn require_installed() {
    twostep_tests::require_root();
    assert_eq!(
        paths::cli(),
        Path::new(CLI),
        "set TWOSTEP_TEST_CLI={CLI}: these tests are about the installed package"
    );
    assert!(
        Path::new(MODULE).is_file(),
        "{MODULE} is missing: install the .deb first"
    );
}

/// A service file that includes the system's common-auth. The environment's own config and
/// state are not used (common-auth loads the module without `config=`); its syslog listener
/// receives the module's messages through pam-drive's private /dev/log.
fn system_stack(name: &str) -> TestEnv {
    require_installed();
    let env = TestEnv::builder(name).stack(&SERVICE).build();
    env.add_secret(&var("TWOSTEP_PKGTEST_PASSWORD"));
    env.add_secret(SECRET);
    env
}

fn login(env: &TestEnv, user: &str, answers: &[&str], time: i64) -> Login {
    env.attempt(user).answers(answers).time(time).run()
}

fn record_path(user: &str) -> PathBuf {
    Path::new(STATE_DIR)
        .join("users")
        .join(format!("{user}.toml"))
}

/// Runs the installed `twostep` with the default config (no --config, no $TWOSTEP_CONFIG).
fn installed_cli(args: &[&str]) -> std::process::Output {
    run::run(
        Command::new(paths::cli())
            .env_remove("TWOSTEP_CONFIG")
            .args(args),
        run::TIMEOUT,
    )
}

/// A 6-digit code that is not valid for SECRET within two steps of `t`.
fn wrong_code(t: i64) -> String {
    oath::wrong_code(SECRET, t)
}

/// Enrolls `user` with SECRET through the installed CLI and the packaged default config
/// (`--force`: reruns and the other tests); returns the emergency codes.
fn enroll(env: &TestEnv, user: &str) -> Vec<String> {
    let output = installed_cli(&["enroll", user, "--secret", SECRET, "--yes", "--force"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "twostep enroll failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let codes = emergency_codes(&stdout);
    codes.iter().for_each(|code| env.add_secret(code));
    assert!(record_path(user).is_file(), "enroll must write the record");
    codes
}

#[test]
#[ignore = "needs the installed, enabled .deb: run packaging/ci-package-test.sh"]
fn common_auth_runs_the_module_after_the_password_block() {
    require_installed();
    let text = std::fs::read_to_string(COMMON_AUTH).expect("read common-auth");
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|line| {
            line.split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect()
        })
        .filter(|words: &Vec<&str>| !words.is_empty())
        .collect();
    let position = |module: &str| {
        let found: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains(&module))
            .collect();
        assert_eq!(found.len(), 1, "{module} once in {COMMON_AUTH}:\n{text}");
        found[0]
    };
    let (unix, deny, permit, ours) = (
        position("pam_unix.so"),
        position("pam_deny.so"),
        position("pam_permit.so"),
        position("pam_twostep.so"),
    );
    assert!(
        unix < deny && deny < permit && permit < ours,
        "expected pam_unix, pam_deny, pam_permit, then pam_twostep:\n{text}"
    );
    // Nothing may jump over the module; it runs as a plain `requisite` without arguments.
    assert_eq!(
        lines[ours],
        ["auth", "requisite", "pam_twostep.so"],
        "{text}"
    );
    assert_eq!(lines[deny], ["auth", "requisite", "pam_deny.so"], "{text}");
}

#[test]
#[ignore = "needs the installed, enabled .deb: run packaging/ci-package-test.sh"]
fn unenrolled_user_passes_on_the_password_alone() {
    let env = system_stack("pkg_unenrolled");
    let user = var("TWOSTEP_PKGTEST_UNENROLLED");
    let password = var("TWOSTEP_PKGTEST_PASSWORD");
    assert!(
        !record_path(&user).exists(),
        "{user} must not be enrolled for this test"
    );

    login(&env, &user, &[&password], T)
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(PASSWORD_PROMPT);
    login(&env, &user, &[&format!("{password}x")], T)
        .assert_refused()
        .assert_prompted_once(PASSWORD_PROMPT);
    assert!(
        !record_path(&user).exists(),
        "a login must not create a record"
    );
    env.assert_logs_clean(&[]);
}

#[test]
#[ignore = "needs the installed, enabled .deb: run packaging/ci-package-test.sh"]
fn enrolled_user_needs_the_password_then_a_code() {
    let env = system_stack("pkg_enrolled");
    let user = var("TWOSTEP_PKGTEST_ENROLLED");
    let password = var("TWOSTEP_PKGTEST_PASSWORD");
    let wrong_password = format!("{password}x");

    let codes = enroll(&env, &user);
    let record = record_path(&user);

    // A wrong password ends the login before the code prompt, even with a valid code at hand,
    // and the module never runs: the record is untouched (no failure counted).
    let before = std::fs::read(&record).expect("read record");
    let t = T;
    login(&env, &user, &[&wrong_password, &totp(SECRET, t)], t)
        .assert_refused()
        .assert_prompted_once(PASSWORD_PROMPT);
    login(&env, &user, &[&wrong_password, &codes[0]], t)
        .assert_refused()
        .assert_prompted_once(PASSWORD_PROMPT);
    assert_eq!(
        std::fs::read(&record).expect("read record"),
        before,
        "a wrong password must not reach the module"
    );

    // The right password and a wrong code: refused after both prompts.
    let refused = login(&env, &user, &[&password, &wrong_code(t)], t);
    refused.assert_refused();
    assert_eq!(
        refused.prompts(),
        [PASSWORD_PROMPT, CODE_PROMPT],
        "{refused}"
    );

    // The right password alone (nothing typed at the code prompt): refused.
    login(&env, &user, &[&password, ""], t).assert_refused();

    // The right password and the right code.
    let ok = login(&env, &user, &[&password, &totp(SECRET, t)], t);
    ok.assert_result("PAM_SUCCESS");
    assert_eq!(ok.prompts(), [PASSWORD_PROMPT, CODE_PROMPT], "{ok}");
    ok.assert_logged(&["auth success", &format!("user={user}"), "method=totp"]);

    // The same code again is a replay; the next step's code works.
    login(&env, &user, &[&password, &totp(SECRET, t)], t).assert_refused();
    let t = t + STEP;
    login(&env, &user, &[&password, &totp(SECRET, t)], t).assert_result("PAM_SUCCESS");

    // An emergency code instead of the app's code, once.
    let t = t + STEP;
    login(&env, &user, &[&password, &codes[1]], t).assert_result("PAM_SUCCESS");
    login(&env, &user, &[&password, &codes[1]], t + STEP).assert_refused();

    env.assert_logs_clean(&[]);
    // The record stays: packaging/ci-package-test.sh checks that it survives `apt-get remove`.
    assert!(record.is_file());
}

/// The RHEL stacks of docs/admin-guide.md, with RHEL 9's `password-auth` (authselect, local
/// users: pam_unix is `sufficient` there) reproduced in a second service file. Same libpam
/// semantics as on RHEL; the module is the installed one, loaded by name.
#[test]
#[ignore = "needs the installed, enabled .deb: run packaging/ci-package-test.sh"]
fn rhel_stacks_of_the_admin_guide() {
    let password_auth = TestEnv::builder("pkg_rhel_password_auth")
        .stack(&[
            "auth required pam_env.so",
            "auth required pam_faildelay.so delay=2000000",
            "auth [default=1 ignore=ignore success=ok] pam_usertype.so isregular",
            "auth [default=1 ignore=ignore success=ok] pam_localuser.so",
            "auth sufficient pam_unix.so nullok",
            "auth required pam_deny.so",
        ])
        .build();
    let include = |control: &str| format!("auth {control} {}", password_auth.service());
    let service = |name: &str, first: &str| {
        let env = system_stack(name);
        env.write_stack(&[
            first,
            "auth required pam_twostep.so",
            "account required pam_permit.so",
        ]);
        env
    };
    let substack = service("pkg_rhel_substack", &include("substack"));
    let explicit = service("pkg_rhel_explicit", "auth requisite pam_unix.so");
    let included = service("pkg_rhel_include", &include("include"));
    let user = var("TWOSTEP_PKGTEST_ENROLLED");
    let password = var("TWOSTEP_PKGTEST_PASSWORD");
    let wrong_password = format!("{password}x");
    enroll(&substack, &user);
    let mut t = T + 100 * STEP;

    // Recommended: `auth substack password-auth` then the module. Right password and code: in.
    // A wrong password fails, but the code prompt still comes (documented caveat).
    let ok = login(&substack, &user, &[&password, &totp(SECRET, t)], t);
    ok.assert_result("PAM_SUCCESS");
    assert_eq!(ok.prompts(), [PASSWORD_PROMPT, CODE_PROMPT], "{ok}");
    t += STEP;
    let refused = login(&substack, &user, &[&wrong_password, &totp(SECRET, t)], t);
    refused.assert_refused();
    assert_eq!(
        refused.prompts(),
        [PASSWORD_PROMPT, CODE_PROMPT],
        "{refused}"
    );

    // Local users only: `auth requisite pam_unix.so` then the module; no code prompt after a
    // wrong password.
    t += STEP;
    let ok = login(&explicit, &user, &[&password, &totp(SECRET, t)], t);
    ok.assert_result("PAM_SUCCESS");
    assert_eq!(ok.prompts(), [PASSWORD_PROMPT, CODE_PROMPT], "{ok}");
    t += STEP;
    login(&explicit, &user, &[&wrong_password, &totp(SECRET, t)], t)
        .assert_refused()
        .assert_prompted_once(PASSWORD_PROMPT);

    // Never `include` password-auth before the module: pam_unix's `sufficient` ends the whole
    // stack, so the password alone logs in. This is why the guide says substack.
    t += STEP;
    login(&included, &user, &[&password], t)
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(PASSWORD_PROMPT);

    for env in [&substack, &explicit, &included, &password_auth] {
        env.assert_logs_clean(&[]);
    }
}
