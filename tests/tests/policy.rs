//! `[policy]` and per-host lockout through the real libpam, with the fake clock: trusted
//! networks, local logins, grace period, enforcement by user and group, and a stranger who
//! cannot lock the owner out from another host.

use twostep_tests::TestEnv;
use twostep_tests::oath::totp;

const USER: &str = "daemon";
const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
const T: i64 = 1_800_000_015;
const PROMPT: &str = "Verification code: ";
const LOCKED: &str = "Too many failed attempts, try again later.";

#[test]
fn trusted_networks_skip_the_code_and_others_do_not() {
    let env = TestEnv::builder("policy_trusted")
        .config("[policy]\ntrusted_networks = [\"192.168.1.0/24\", \"fd00::/8\"]\n")
        .build();
    env.enroll(USER, SECRET);
    for host in ["192.168.1.20", "::ffff:192.168.1.20", "fd00::20"] {
        let login = env.attempt(USER).rhost(host).time(T).run();
        login.assert_result("PAM_SUCCESS").assert_no_prompt();
    }
    env.attempt(USER)
        .rhost("192.168.2.20")
        .answer(&totp(SECRET, T))
        .time(T)
        .run()
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(PROMPT);
    // A host name is never trusted, even one that might resolve into the network.
    env.attempt(USER)
        .rhost("nas.lan")
        .answer("000000")
        .time(T + 1)
        .run()
        .assert_result("PAM_AUTH_ERR");
    // Local logins are asked unless trust_local is set.
    env.login(USER, &["000000"], T + 2)
        .assert_result("PAM_AUTH_ERR");
    assert!(
        env.logs()
            .iter()
            .any(|l| l.contains("auth skipped") && l.contains("reason=trusted-network"))
    );
}

#[test]
fn trust_local_skips_logins_without_a_remote_host() {
    let env = TestEnv::builder("policy_local")
        .config("[policy]\ntrust_local = true\n")
        .build();
    env.enroll(USER, SECRET);
    env.attempt(USER)
        .time(T)
        .run()
        .assert_result("PAM_SUCCESS")
        .assert_no_prompt();
    env.attempt(USER)
        .rhost("192.0.2.9")
        .answer("000000")
        .time(T)
        .run()
        .assert_result("PAM_AUTH_ERR");
}

#[test]
fn grace_period_remembers_the_host_for_its_length_only() {
    let env = TestEnv::builder("policy_grace")
        .config("[policy]\ngrace_period = 3600\n")
        .build();
    env.enroll(USER, SECRET);
    let from = |host: &str, answer: Option<&str>, t: i64| {
        let attempt = env.attempt(USER).rhost(host).time(t);
        match answer {
            Some(a) => attempt.answer(a).run(),
            None => attempt.run(),
        }
    };
    from("192.0.2.10", Some(&totp(SECRET, T)), T).assert_result("PAM_SUCCESS");
    from("192.0.2.10", None, T + 3599)
        .assert_result("PAM_SUCCESS")
        .assert_no_prompt();
    // Another host, and the same host after the period, are asked.
    from("192.0.2.11", Some("000000"), T + 60).assert_result("PAM_AUTH_ERR");
    from("192.0.2.10", Some(&totp(SECRET, T + 3600)), T + 3600)
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(PROMPT);
    assert!(env.logs().iter().any(|l| l.contains("reason=grace-period")));
}

#[test]
fn a_stranger_is_locked_out_but_the_owner_on_the_lan_is_not() {
    let env = TestEnv::builder("policy_host_lockout")
        .config("[lockout]\nmax_failures = 3\nmax_failures_user = 6\n")
        .build();
    env.enroll(USER, SECRET);
    let from = |host: &str, answer: &str, t: i64| {
        env.attempt(USER).rhost(host).answer(answer).time(t).run()
    };
    for i in 0..3 {
        from("203.0.113.66", "000000", T + i).assert_result("PAM_AUTH_ERR");
    }
    let refused = env.attempt(USER).rhost("203.0.113.66").time(T + 4).run();
    refused.assert_result("PAM_AUTH_ERR").assert_no_prompt();
    assert!(refused.has_message("ERROR_MSG", LOCKED));
    from("192.168.1.20", &totp(SECRET, T + 5), T + 5).assert_result("PAM_SUCCESS");
    assert!(
        env.logs()
            .iter()
            .any(|l| l.contains("lockout") && l.contains("scope=host")),
        "{:?}",
        env.logs()
    );
    // Failures from rotating addresses add up to the per-user limit.
    for i in 0..5 {
        from(&format!("198.51.100.{i}"), "000000", T + 10 + i).assert_result("PAM_AUTH_ERR");
    }
    let last = from("198.51.100.9", "000000", T + 20);
    last.assert_result("PAM_AUTH_ERR");
    assert!(last.has_message("ERROR_MSG", LOCKED));
    env.attempt(USER)
        .rhost("192.168.1.20")
        .time(T + 21)
        .run()
        .assert_result("PAM_AUTH_ERR")
        .assert_no_prompt();
    let out = env.cli(&["unlock", USER]);
    assert!(out.status.success());
    from("192.168.1.20", &totp(SECRET, T + 60), T + 60).assert_result("PAM_SUCCESS");
    from("203.0.113.66", &totp(SECRET, T + 90), T + 90).assert_result("PAM_SUCCESS");
}

#[test]
fn enforced_users_without_enrollment_are_denied_and_shown_incomplete() {
    // daemon's primary group is "daemon"; "nobody" is enforced by name but exempt.
    let env = TestEnv::builder("policy_enforce")
        .config(
            "[policy]\nenforce_groups = [\"daemon\"]\nenforce_users = [\"nobody\"]\n\
             exempt_users = [\"nobody\"]\n",
        )
        .build();
    let login = env.login(USER, &[], T);
    login.assert_result("PAM_AUTH_ERR").assert_no_prompt();
    assert!(
        login
            .texts("ERROR_MSG")
            .iter()
            .any(|t| t.contains("required"))
    );
    // Exempt and not enrolled: the global `unenrolled = "allow"` applies (PAM_IGNORE, which
    // this one-module stack turns into PAM_PERM_DENIED).
    env.login("nobody", &[], T).assert_result("PAM_PERM_DENIED");
    let out = env.cli(&["status", "--json"]);
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let daemon = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["user"] == USER)
        .expect("the enforced user is listed");
    assert_eq!(daemon["state"], "incomplete");
    assert!(
        rows.as_array()
            .expect("array")
            .iter()
            .all(|r| r["user"] != "nobody")
    );
    // Once enrolled, the code is asked as usual.
    env.enroll(USER, SECRET);
    env.login(USER, &[&totp(SECRET, T)], T)
        .assert_result("PAM_SUCCESS");
}
