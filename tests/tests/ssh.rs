//! pam_twostep behind a real OpenSSH server on 127.0.0.1, driven by the real OpenSSH client:
//! password + code, public key + code, emergency codes, lockout, and the login policy
//! (enrollment at first login, trusted networks, grace period, enforced groups).
//!
//! Each test has its own accounts, TestEnv (PAM service, config, state, syslog listener) and
//! sshd. sshd runs the module with the real clock, so codes come from oathtool for the current
//! time ([`LiveCodes`]). The stacks are the ones docs/ssh.md documents, with the module's
//! absolute path and the test's `config=`.

use serde_json::Value;
use twostep_tests::TestEnv;
use twostep_tests::smtp::SmtpServer;
use twostep_tests::sshd::{LiveCodes, SshResult, Sshd};
use twostep_tests::users::{TestGroup, TestUser};

const PASSWORD: &str = "Password: ";
const CODE: &str = "Verification code: ";
const APP_CODE: &str = "Code shown by the app: ";
const PRESS_ENTER: &str = "Press Enter once you have saved the emergency codes: ";
const EMERGENCY_HEADER: &str = "Emergency codes (each works once; keep them offline):";
const LOCKED: &str = "Too many failed attempts, try again later.";
const NOT_SET_UP: &str = "Two-step login is required for this account but is not set up";
/// 20 random bytes, base32.
const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
const SECRET_2: &str = "KRUGKIDROVUWG2ZAMJZG653OEBTG66BA";

/// docs/ssh.md: `/etc/ssh/sshd_config.d/twostep.conf` for password + code.
const DROPIN_PASSWORD: [&str; 3] = [
    "UsePAM yes",
    "KbdInteractiveAuthentication yes",
    "PasswordAuthentication no",
];
/// docs/ssh.md: `/etc/ssh/sshd_config.d/twostep.conf` for public key + code.
const DROPIN_PUBKEY: [&str; 4] = [
    "UsePAM yes",
    "KbdInteractiveAuthentication yes",
    "PasswordAuthentication no",
    "AuthenticationMethods publickey,keyboard-interactive",
];
/// docs/ssh.md: `/etc/pam.d/sshd` for password + code, in place of `@include common-auth`.
const PAM_PASSWORD: [&str; 2] = ["@include common-auth", "auth required pam_twostep.so"];
/// docs/ssh.md: `/etc/pam.d/sshd` for public key + code, in place of `@include common-auth`.
const PAM_PUBKEY: [&str; 3] = [
    "# @include common-auth",
    "auth required pam_twostep.so",
    "auth optional pam_permit.so",
];

/// docs/ssh.md, "Trying it on a second sshd": the `-o` options of the command.
const SECOND_SSHD_OPTIONS: [&str; 3] = [
    "PidFile=none",
    "KbdInteractiveAuthentication=yes",
    "PasswordAuthentication=no",
];

/// PAM_PASSWORD in a short stack, for the policy tests: the password through common-auth
/// (which ends the stack on a wrong password), then the module.
const PASSWORD_STACK: [&str; 4] = [
    "@include common-auth",
    "auth required {module} config={config}",
    "account required pam_unix.so",
    "session required pam_permit.so",
];

/// PAM_PUBKEY in a short stack: no password module; `optional pam_permit.so` lets users
/// without an enrollment in with their key alone (the module returns PAM_IGNORE for them, and a
/// stack of only ignores fails).
const PUBKEY_STACK: [&str; 4] = [
    "auth required {module} config={config}",
    "auth optional pam_permit.so",
    "account required pam_unix.so",
    "session required pam_permit.so",
];

/// Debian's own `/etc/pam.d/sshd` with its `@include common-auth` line replaced by `lines`,
/// where `pam_twostep.so` becomes the built module with the test's config.
fn debian_pam_file(lines: &[&str]) -> Vec<String> {
    let debian = std::fs::read_to_string("/etc/pam.d/sshd")
        .expect("/etc/pam.d/sshd (Debian package openssh-server)");
    assert_eq!(
        debian
            .lines()
            .filter(|line| line.trim() == "@include common-auth")
            .count(),
        1,
        "/etc/pam.d/sshd must have one `@include common-auth` line:\n{debian}"
    );
    debian
        .lines()
        .flat_map(|line| {
            if line.trim() == "@include common-auth" {
                lines
                    .iter()
                    .map(|l| l.replace("pam_twostep.so", "{module} config={config}"))
                    .collect()
            } else {
                vec![line.to_string()]
            }
        })
        .collect()
}

fn debian_env(name: &str, pam_lines: &[&str]) -> TestEnv {
    check_common_auth();
    let stack = debian_pam_file(pam_lines);
    TestEnv::builder(name)
        .stack(&stack.iter().map(String::as_str).collect::<Vec<_>>())
        .build()
}

/// Panics unless `/etc/pam.d/common-auth` is Debian's stock one (the stacks include it):
/// a system-wide pam_twostep there would run twice.
fn check_common_auth() {
    let common = std::fs::read_to_string("/etc/pam.d/common-auth").expect("/etc/pam.d/common-auth");
    assert!(
        common.lines().any(|l| l.contains("pam_unix.so")) && !common.contains("twostep"),
        "these tests need Debian's stock /etc/pam.d/common-auth (pam_unix, no pam_twostep):\n{common}"
    );
}

fn password_env(name: &str, config: &str) -> TestEnv {
    check_common_auth();
    TestEnv::builder(name)
        .config(config)
        .stack(&PASSWORD_STACK)
        .build()
}

/// The `twostep status --json` object of `user`, if listed.
fn status(env: &TestEnv, user: &str) -> Option<Value> {
    let out = env.cli(&["status", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "twostep status --json: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{stdout}"));
    all.as_array()
        .unwrap_or_else(|| panic!("status --json is not an array:\n{stdout}"))
        .iter()
        .find(|entry| entry["user"] == user)
        .cloned()
}

fn state(env: &TestEnv, user: &str) -> Option<String> {
    status(env, user).map(|entry| entry["state"].as_str().unwrap_or("?").to_string())
}

fn unlock(env: &TestEnv, user: &str) {
    let out = env.cli(&["unlock", user]);
    assert!(
        out.status.success(),
        "twostep unlock: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the login was told it is locked out (PAM error messages reach ssh's stderr or the
/// text of a later prompt).
fn told_locked(result: &SshResult) -> bool {
    result.stderr.contains(LOCKED)
        || result
            .prompts
            .iter()
            .any(|p| p.info.iter().any(|line| line == LOCKED))
}

/// The emergency codes shown above the `Press Enter` prompt of an enrollment at login (the
/// lines after the header); they become secrets the logs must not contain.
fn shown_emergency_codes(env: &TestEnv, result: &SshResult) -> Vec<String> {
    let prompt = result
        .prompts
        .iter()
        .find(|p| p.prompt == PRESS_ENTER)
        .unwrap_or_else(|| panic!("no `Press Enter` prompt\n{result}"));
    let codes: Vec<String> = prompt
        .info
        .iter()
        .skip_while(|line| !line.contains(EMERGENCY_HEADER))
        .skip(1)
        .map(|line| line.trim().to_string())
        .filter(|line| !line.is_empty())
        .collect();
    codes.iter().for_each(|code| env.add_secret(code));
    codes
}

// --- password + code ------------------------------------------------------------------------

/// docs/ssh.md, password + code, on Debian's own sshd_config and /etc/pam.d/sshd: the right
/// password and the current code log in; a wrong code does not.
#[test]
fn password_and_code_with_debians_files() {
    let user = TestUser::create("pwcode");
    let env = debian_env("ssh_debian_password", &PAM_PASSWORD);
    env.enroll(user.name(), SECRET);
    let sshd = Sshd::builder(&env).debian_config(&DROPIN_PASSWORD).start();
    let effective = sshd.effective_config();
    for setting in [
        "usepam yes",
        "kbdinteractiveauthentication yes",
        "passwordauthentication no",
    ] {
        assert!(
            effective.lines().any(|line| line == setting),
            "the drop-in does not win over Debian's sshd_config: no {setting:?} in\n{effective}"
        );
    }
    let mut codes = LiveCodes::new(SECRET);

    let ok = sshd
        .login(&user)
        .password(user.password())
        .code(&codes.next_code())
        .run();
    ok.assert_logged_in().assert_prompts(&[PASSWORD, CODE]);
    // The module ran under the test's PAM service, named after sshd's program name: sshd
    // read /etc/pam.d/<service>, not /etc/pam.d/sshd.
    let service = format!("service={}", env.service());
    ok.assert_logged(&[
        "auth success",
        &format!("user={}", user.name()),
        &service,
        "rhost=127.0.0.1",
        "method=totp",
    ]);

    let wrong = sshd
        .login(&user)
        .password(user.password())
        .code(&codes.wrong())
        .run();
    wrong.assert_denied().assert_prompts(&[PASSWORD, CODE]);
    wrong.assert_logged(&["auth failure", &service, "reason=wrong-code"]);
    env.assert_logs_clean(&[SECRET, user.password()]);
}

/// docs/ssh.md, "Trying it on a second sshd": the symlinked sshd reads the system's
/// sshd_config with the `-o` options on top, uses its own PAM file, and leaves the system
/// sshd's pid file alone.
#[test]
fn second_sshd_from_the_docs() {
    let user = TestUser::create("second");
    let env = debian_env("ssh_second_sshd", &PAM_PASSWORD);
    env.enroll(user.name(), SECRET);
    let pid_file = |path: &str| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let before = pid_file("/run/sshd.pid");
    let sshd = Sshd::builder(&env)
        .system_config(&SECOND_SSHD_OPTIONS)
        .start();
    let mut codes = LiveCodes::new(SECRET);
    let ok = sshd
        .login(&user)
        .password(user.password())
        .code(&codes.next_code())
        .run();
    ok.assert_logged_in().assert_prompts(&[PASSWORD, CODE]);
    ok.assert_logged(&["auth success", &format!("service={}", env.service())]);
    drop(sshd);
    assert_eq!(
        pid_file("/run/sshd.pid"),
        before,
        "/run/sshd.pid was touched"
    );
}

/// A wrong password ends the stack in common-auth: the code is never asked for and the module
/// is not even called.
#[test]
fn wrong_password_never_reaches_the_code_prompt() {
    let user = TestUser::create("wrongpw");
    let env = password_env("ssh_wrong_password", "");
    env.enroll(user.name(), SECRET);
    let sshd = Sshd::start(&env);
    let code = LiveCodes::new(SECRET).next_code();

    let result = sshd
        .login(&user)
        .password("not-the-password")
        .code(&code)
        .run();
    result
        .assert_denied()
        .assert_prompts(&[PASSWORD])
        .assert_nothing_logged();
    // The code was not used: it still logs in.
    sshd.login(&user)
        .password(user.password())
        .code(&code)
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, CODE]);
}

/// Why docs/ssh.md says `PasswordAuthentication no`: with the `password` method sshd answers
/// every PAM prompt with the password, so the module gets the password as the code, refuses,
/// and counts a failure.
#[test]
fn password_method_sends_the_password_as_the_code() {
    let user = TestUser::create("pwmethod");
    let env = debian_env("ssh_password_method", &PAM_PASSWORD);
    env.enroll(user.name(), SECRET);
    let sshd = Sshd::builder(&env)
        .debian_config(&[
            "UsePAM yes",
            "KbdInteractiveAuthentication yes",
            "PasswordAuthentication yes",
        ])
        .start();
    let result = sshd
        .login(&user)
        .preferred_authentications("password")
        .password(user.password())
        .run();
    result
        .assert_denied()
        .assert_prompts(&[&format!("{}@127.0.0.1's password: ", user.name())]);
    result.assert_logged(&["auth failure", &format!("user={}", user.name())]);
    assert_eq!(
        status(&env, user.name()).expect("listed")["recent_failures"],
        1
    );
}

/// The configuration blocks of docs/ssh.md are the ones these tests run.
#[test]
fn docs_show_the_tested_configuration() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ssh.md");
    let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in doc.lines() {
        match (line.starts_with("```"), current.take()) {
            (true, None) => current = Some(Vec::new()),
            (true, Some(block)) => blocks.push(block),
            (false, Some(mut block)) => {
                block.push(line);
                current = Some(block);
            }
            (false, None) => {}
        }
    }
    let command = doc
        .split("-D -p 2222")
        .nth(1)
        .and_then(|rest| rest.split("ssh -p 2222").next())
        .unwrap_or_else(|| panic!("docs/ssh.md lost its second-sshd command"));
    for option in SECOND_SSHD_OPTIONS {
        assert!(
            command.contains(&format!("-o {option}")),
            "the second-sshd command of docs/ssh.md lacks `-o {option}`:\n{command}"
        );
    }
    for tested in [
        &DROPIN_PASSWORD[..],
        &DROPIN_PUBKEY[..],
        &PAM_PASSWORD[..],
        &PAM_PUBKEY[..],
    ] {
        assert!(
            blocks.iter().any(|block| block == tested),
            "docs/ssh.md has no code block with exactly {tested:?}; blocks: {blocks:#?}"
        );
    }
}

// --- public key + code ----------------------------------------------------------------------

/// docs/ssh.md, public key + code, on Debian's own files: `AuthenticationMethods
/// publickey,keyboard-interactive` and the PAM file without common-auth: an enrolled user
/// proves the key, then only the code is asked.
#[test]
fn public_key_then_code_with_debians_files() {
    let enrolled = TestUser::create("keycode");
    let unenrolled = TestUser::create("keyonly");
    let env = debian_env("ssh_debian_pubkey", &PAM_PUBKEY);
    env.enroll(enrolled.name(), SECRET);
    let enrolled_key = enrolled.authorize_new_key(env.dir());
    let unenrolled_key = unenrolled.authorize_new_key(env.dir());
    let sshd = Sshd::builder(&env).debian_config(&DROPIN_PUBKEY).start();
    let mut codes = LiveCodes::new(SECRET);

    sshd.login(&enrolled)
        .key(&enrolled_key)
        .code(&codes.next_code())
        .run()
        .assert_logged_in()
        .assert_prompts(&[CODE]);
    sshd.login(&enrolled)
        .key(&enrolled_key)
        .code(&codes.wrong())
        .run()
        .assert_denied()
        .assert_prompts(&[CODE]);
    // Without the key, keyboard-interactive alone is not enough: nothing is asked.
    sshd.login(&enrolled)
        .password(enrolled.password())
        .code(&codes.next_code())
        .run()
        .assert_denied()
        .assert_prompts(&[]);

    // Not enrolled (unenrolled = "allow"): the module ignores the user and pam_permit decides.
    let key_only = sshd.login(&unenrolled).key(&unenrolled_key).run();
    key_only.assert_logged_in().assert_prompts(&[]);
    key_only.assert_logged(&["not enrolled", unenrolled.name(), "action=allow"]);
    // Why docs/ssh.md has that line: without it, a stack of only PAM_IGNORE fails.
    let without_permit = debian_pam_file(&PAM_PUBKEY[..2]);
    env.write_stack(
        &without_permit
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    sshd.login(&unenrolled)
        .key(&unenrolled_key)
        .run()
        .assert_denied()
        .assert_prompts(&[]);
}

// --- emergency codes and lockout ------------------------------------------------------------

#[test]
fn emergency_code_works_once_over_ssh() {
    let user = TestUser::create("emerg");
    let env = password_env("ssh_emergency", "");
    let emergency = env.enroll(user.name(), SECRET);
    let sshd = Sshd::start(&env);

    let first = sshd
        .login(&user)
        .password(user.password())
        .code(&emergency[3])
        .run();
    first.assert_logged_in().assert_prompts(&[PASSWORD, CODE]);
    first.assert_logged(&["auth success", "method=emergency", "remaining=9"]);

    let again = sshd
        .login(&user)
        .password(user.password())
        .code(&emergency[3])
        .run();
    again.assert_denied().assert_prompts(&[PASSWORD, CODE]);
    again.assert_logged(&["auth failure", user.name()]);
    assert_eq!(
        status(&env, user.name()).expect("listed")["emergency_codes_left"],
        9
    );
}

/// Failed codes lock the user out: then not even the right code is asked for, until
/// `twostep unlock`.
#[test]
fn lockout_and_unlock_over_ssh() {
    let user = TestUser::create("lockout");
    // The public key stack: no password module, so no pam_unix failure delay per attempt.
    let env = TestEnv::builder("ssh_lockout")
        .config("[lockout]\nmax_failures = 2")
        .stack(&PUBKEY_STACK)
        .build();
    env.enroll(user.name(), SECRET);
    let key = user.authorize_new_key(env.dir());
    let sshd = Sshd::builder(&env)
        .authentication_methods("publickey,keyboard-interactive")
        .start();
    let mut codes = LiveCodes::new(SECRET);

    for _ in 0..2 {
        sshd.login(&user)
            .key(&key)
            .code(&codes.wrong())
            .run()
            .assert_denied()
            .assert_prompts(&[CODE]);
    }
    let code = codes.next_code();
    let locked = sshd.login(&user).key(&key).code(&code).run();
    locked.assert_denied().assert_prompts(&[]);
    assert!(told_locked(&locked), "not told about the lockout\n{locked}");
    locked.assert_logged(&["auth refused", user.name(), "reason=locked"]);
    // Locked out from this host only (max_failures counts per remote host).
    let entry = status(&env, user.name()).expect("listed");
    assert_eq!(entry["state"], "enabled", "{entry}");
    assert_eq!(
        entry["locked_hosts"],
        serde_json::json!(["127.0.0.1"]),
        "{entry}"
    );

    unlock(&env, user.name());
    assert_eq!(
        status(&env, user.name()).expect("listed")["locked_hosts"],
        serde_json::json!([])
    );
    // The code offered while locked was not checked, so it is still good.
    sshd.login(&user)
        .key(&key)
        .code(&code)
        .run()
        .assert_logged_in()
        .assert_prompts(&[CODE]);
}

/// `[lockout] max_failures` counts per (user, remote host), `max_failures_user` across hosts;
/// `twostep unlock` clears both. Remote hosts are loopback addresses (`ssh -b 127.0.0.N`).
#[test]
fn lockout_counts_per_host_and_per_user() {
    let user = TestUser::create("hostlock");
    let env = TestEnv::builder("ssh_lockout_hosts")
        .config("[lockout]\nmax_failures = 2\nmax_failures_user = 3")
        .stack(&PUBKEY_STACK)
        .build();
    env.enroll(user.name(), SECRET);
    let key = user.authorize_new_key(env.dir());
    let sshd = Sshd::builder(&env)
        .authentication_methods("publickey,keyboard-interactive")
        .start();
    let mut codes = LiveCodes::new(SECRET);
    let attempt = |from: &str, code: &str| sshd.login(&user).key(&key).from(from).code(code).run();

    for _ in 0..2 {
        attempt("127.0.0.1", &codes.wrong())
            .assert_denied()
            .assert_prompts(&[CODE]);
    }
    // 127.0.0.1 is locked out...
    let locked = attempt("127.0.0.1", &codes.wrong());
    locked.assert_denied().assert_prompts(&[]);
    locked.assert_logged(&["reason=locked", "rhost=127.0.0.1"]);
    // ...another host is still asked; its failure is the user's third: locked everywhere.
    attempt("127.0.0.2", &codes.wrong())
        .assert_denied()
        .assert_prompts(&[CODE]);
    let everywhere = attempt("127.0.0.3", &codes.wrong());
    everywhere.assert_denied().assert_prompts(&[]);
    everywhere.assert_logged(&["reason=locked", "rhost=127.0.0.3"]);
    let entry = status(&env, user.name()).expect("listed");
    assert_eq!(entry["state"], "locked", "{entry}");
    assert!(entry["locked_until"].is_i64(), "{entry}");

    unlock(&env, user.name());
    let entry = status(&env, user.name()).expect("listed");
    assert_eq!(entry["state"], "enabled", "{entry}");
    assert_eq!(entry["locked_hosts"], serde_json::json!([]), "{entry}");
    attempt("127.0.0.1", &codes.next_code())
        .assert_logged_in()
        .assert_prompts(&[CODE]);
}

// --- login policy ---------------------------------------------------------------------------

/// `on_unenrolled = "enroll"`: the first login with the right password shows the QR code, key
/// and URI, takes a code from the app, stores the enrollment and shows the emergency codes.
/// A wrong password never gets there.
#[test]
fn enrollment_at_first_login_over_ssh() {
    let user = TestUser::create("firstlog");
    let second = TestUser::create("firstlc");
    let env = password_env(
        "ssh_enroll",
        &format!(
            "[policy]\nenforce_users = [\"{}\", \"{}\"]\non_unenrolled = \"enroll\"",
            user.name(),
            second.name()
        ),
    );
    let sshd = Sshd::start(&env);

    let wrong = sshd.login(&user).password("not-the-password").run();
    wrong
        .assert_denied()
        .assert_prompts(&[PASSWORD])
        .assert_nothing_logged();
    assert!(!env.record_path(user.name()).exists());

    let first = sshd.login(&user).password(user.password()).run();
    first
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, APP_CODE, PRESS_ENTER]);
    let kinds: Vec<&str> = first.prompts.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["text", "app-code", "empty"], "\n{first}");
    let app = first
        .app
        .clone()
        .unwrap_or_else(|| panic!("the askpass program found no URI\n{first}"));
    let shown = &first.prompts[1].info;
    let key_line = shown
        .iter()
        .find_map(|line| line.strip_prefix("Key: "))
        .unwrap_or_else(|| panic!("no `Key: ` line\n{first}"));
    assert_eq!(key_line.replace(' ', ""), app.secret, "\n{first}");
    assert!(
        shown
            .iter()
            .any(|line| line.starts_with("URI: otpauth://totp/")),
        "no `URI: ` line\n{first}"
    );
    let qr_lines = shown
        .iter()
        .filter(|line| line.contains(['▀', '▄', '█']))
        .count();
    assert!(qr_lines >= 10, "no half-block QR code\n{first}");
    let emergency = shown_emergency_codes(&env, &first);
    assert_eq!(emergency.len(), 10, "10 emergency codes\n{first}");

    let entry = status(&env, user.name()).expect("the user is listed");
    assert_eq!(entry["state"], "enabled", "{entry}");
    assert_eq!(entry["emergency_codes_left"], 10, "{entry}");

    // The app's next code logs in; the enrollment code itself was used up.
    let mut codes = LiveCodes::after_enrollment(&app);
    sshd.login(&user)
        .password(user.password())
        .code(&app.code)
        .run()
        .assert_denied()
        .assert_prompts(&[PASSWORD, CODE]);
    sshd.login(&user)
        .password(user.password())
        .code(&codes.next_code())
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, CODE]);
    env.assert_logs_clean(&[&app.secret, user.password()]);

    // A client in a non-UTF-8 locale shows the QR code escaped; the URI still works.
    let ascii = sshd
        .login(&second)
        .password(second.password())
        .locale("C")
        .run();
    ascii
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, APP_CODE, PRESS_ENTER]);
    let shown = &ascii.prompts[1].info;
    assert!(
        shown.iter().any(|line| line.contains("\\342\\226")),
        "QR code not escaped\n{ascii}"
    );
    assert!(
        !shown.iter().any(|line| line.contains(['▀', '▄', '█'])),
        "\n{ascii}"
    );
    assert_eq!(shown_emergency_codes(&env, &ascii).len(), 10, "\n{ascii}");
    assert_eq!(state(&env, second.name()).as_deref(), Some("enabled"));
}

/// Issue 12: the password on a `required` line, so a wrong password goes on to pam_twostep.
/// sshd runs pam_authenticate in a forked child and pam_setcred in the parent: the
/// enrollment confirmed after a wrong password is never stored, and the one after the right
/// password is stored by sshd's own pam_setcred call.
#[test]
fn enrollment_at_login_over_ssh_needs_the_password_even_on_a_required_line() {
    let user = TestUser::create("enrreq");
    check_common_auth();
    let env = TestEnv::builder("ssh_enroll_required")
        .config(&format!(
            "[policy]\nenforce_users = [\"{}\"]\non_unenrolled = \"enroll\"",
            user.name()
        ))
        .stack(&[
            "auth required pam_unix.so",
            "auth required {module} config={config}",
            "account required pam_unix.so",
            "session required pam_permit.so",
        ])
        .build();
    let sshd = Sshd::start(&env);

    let attacker = sshd.login(&user).password("not-the-password").run();
    attacker.assert_denied();
    let kinds: Vec<&str> = attacker.prompts.iter().map(|p| p.kind.as_str()).collect();
    assert!(
        kinds.contains(&"app-code"),
        "premise: the enrollment ran after the wrong password\n{attacker}"
    );
    if let Some(app) = &attacker.app {
        env.add_secret(&app.secret);
    }
    assert!(!env.record_path(user.name()).exists(), "\n{attacker}");
    assert_eq!(state(&env, user.name()).as_deref(), Some("incomplete"));

    let owner = sshd.login(&user).password(user.password()).run();
    owner
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, APP_CODE, PRESS_ENTER]);
    let app = owner
        .app
        .clone()
        .unwrap_or_else(|| panic!("the askpass program found no URI\n{owner}"));
    owner.assert_logged(&["enrolled at login", user.name()]);
    assert_eq!(state(&env, user.name()).as_deref(), Some("enabled"));
    let mut codes = LiveCodes::after_enrollment(&app);
    sshd.login(&user)
        .password(user.password())
        .code(&codes.next_code())
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, CODE]);
    env.assert_logs_clean(&[&app.secret, user.password()]);
}

/// `trusted_networks`: from inside, the code is skipped (and logged); from outside it is asked.
#[test]
fn trusted_network_skips_the_code() {
    let user = TestUser::create("trusted");
    let env = password_env(
        "ssh_trusted",
        "[policy]\ntrusted_networks = [\"127.0.0.2/32\", \"fd00::/8\"]",
    );
    env.enroll(user.name(), SECRET);
    let sshd = Sshd::start(&env);
    let mut codes = LiveCodes::new(SECRET);

    let inside = sshd
        .login(&user)
        .from("127.0.0.2")
        .password(user.password())
        .run();
    inside.assert_logged_in().assert_prompts(&[PASSWORD]);
    inside.assert_logged(&[
        "auth skipped",
        &format!("user={}", user.name()),
        "rhost=127.0.0.2",
        "reason=trusted-network",
    ]);
    sshd.login(&user)
        .from("127.0.0.1")
        .password(user.password())
        .code(&codes.next_code())
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, CODE]);
}

/// `grace_period`: after a code from a host, the same user from the same host is not asked
/// again within the period; from another host they are.
#[test]
fn grace_period_skips_the_code_for_the_same_host() {
    let user = TestUser::create("grace");
    let other = TestUser::create("grace2");
    let env = password_env("ssh_grace", "[policy]\ngrace_period = 86400");
    env.enroll(user.name(), SECRET);
    env.enroll(other.name(), SECRET_2);
    let sshd = Sshd::start(&env);
    let mut codes = LiveCodes::new(SECRET);
    let mut other_codes = LiveCodes::new(SECRET_2);

    sshd.login(&user)
        .password(user.password())
        .code(&codes.next_code())
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, CODE]);
    sshd.login(&user)
        .password(user.password())
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD]);
    // Another host, and another user from the same host, are asked.
    sshd.login(&user)
        .from("127.0.0.2")
        .password(user.password())
        .code(&codes.next_code())
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, CODE]);
    sshd.login(&other)
        .password(other.password())
        .code(&other_codes.next_code())
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, CODE]);
}

/// `enforce_groups` (supplementary groups count) with `on_unenrolled = "deny"`: an unenrolled
/// member is refused after the password and shows as `incomplete`; exemptions only spare
/// unenrolled users; users outside the groups are not affected.
#[test]
fn enforced_group_denies_unenrolled_members() {
    let group = TestGroup::create("staff");
    let exempt = TestGroup::create("exempt");
    let member = TestUser::create_in("member", &[&group]);
    let outsider = TestUser::create("outside");
    let spared = TestUser::create_in("spared", &[&group, &exempt]);
    let enrolled_exempt = TestUser::create_in("enrexmt", &[&group]);
    let env = password_env(
        "ssh_enforce_groups",
        &format!(
            "[policy]\nenforce_groups = [\"{}\"]\nexempt_groups = [\"{}\"]\n\
             exempt_users = [\"{}\"]\non_unenrolled = \"deny\"",
            group.name(),
            exempt.name(),
            enrolled_exempt.name()
        ),
    );
    env.enroll(enrolled_exempt.name(), SECRET);
    let sshd = Sshd::start(&env);
    let mut codes = LiveCodes::new(SECRET);

    let refused = sshd.login(&member).password(member.password()).run();
    refused.assert_denied().assert_prompts(&[PASSWORD]);
    refused.assert_logged(&["auth failure", &format!("user={}", member.name())]);
    assert!(
        refused.stderr.contains(NOT_SET_UP),
        "not told why\n{refused}"
    );
    assert_eq!(
        state(&env, member.name()).as_deref(),
        Some("incomplete"),
        "status lists enforced users without enrollment"
    );

    for user in [&outsider, &spared] {
        sshd.login(user)
            .password(user.password())
            .run()
            .assert_logged_in()
            .assert_prompts(&[PASSWORD]);
    }
    assert_eq!(state(&env, outsider.name()), None);
    sshd.login(&enrolled_exempt)
        .password(enrolled_exempt.password())
        .code(&codes.next_code())
        .run()
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, CODE]);
}

/// Emailed codes over SSH: the module runs the mail helper from inside sshd's PAM process (not
/// from a test driver), mails a code at once to an email-method user, and mails one to an app
/// user who types `email`; both log in with the code from the mail read off a real SMTP server.
#[test]
fn emailed_code_over_ssh() {
    let by_mail = TestUser::create("mail");
    let with_app = TestUser::create("mailapp");
    let env = TestEnv::builder("ssh_email").stack(&PASSWORD_STACK).build();
    let smtp = SmtpServer::start(&env.dir().join("smtp"));
    let helper = twostep_tests::paths::cli();
    env.write_config(&env.standard_config(&format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsecurity = \"none\"\n\
         from = \"nas@example.com\"\ntimeout_secs = 5\nhelper = \"{}\"\n",
        smtp.port(),
        helper.display()
    )));
    check_common_auth();
    let out = env.cli(&[
        "enroll",
        by_mail.name(),
        "--method",
        "email",
        "--email",
        "mail@example.com",
        "--yes",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.enroll_with(with_app.name(), SECRET, &["--email", "app@example.com"]);
    let sshd = Sshd::start(&env);
    let reader = format!("exec:{}", smtp.code_reader().display());

    let mailed = sshd
        .login(&by_mail)
        .password(by_mail.password())
        .rule("Code sent to", &reader)
        .run();
    mailed
        .assert_logged_in()
        .assert_prompts(&[PASSWORD, "Code sent to m•••@example.com: "]);
    mailed.assert_logged(&["auth success", "method=email"]);

    let fallback = sshd
        .login(&with_app)
        .password(with_app.password())
        .rule("(or \"email\"", "text:email")
        .rule("Code sent to", &reader)
        .run();
    fallback.assert_logged_in().assert_prompts(&[
        PASSWORD,
        "Verification code (or \"email\" to get a code by email): ",
        "Code sent to a•••@example.com: ",
    ]);
    fallback.assert_logged(&["email sent", with_app.name()]);
    fallback.assert_logged(&["auth success", "method=email", with_app.name()]);

    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "{mails:?}");
    for mail in &mails {
        let code = mail
            .body
            .lines()
            .find_map(|l| l.strip_prefix("    "))
            .expect("the code line");
        env.add_secret(code);
        assert!(
            mail.body.contains("127.0.0.1"),
            "the remote host: {}",
            mail.body
        );
    }
    env.assert_logs_clean(&[SECRET]);
}
