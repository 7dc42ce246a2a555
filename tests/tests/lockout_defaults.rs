//! The default lockout limits (10 failed codes per remote host, 30 per user, in 15 minutes;
//! docs/configuration.md, "Lockout") and what the user is told: the attempts left, when the
//! lockout ends, and that a re-typed code was already used. Through the real libpam, with the
//! fake clock and no `[lockout]` table in the config.

use twostep_tests::oath::{self, totp};
use twostep_tests::{Login, TestEnv};

const USER: &str = "daemon";
const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
const T: i64 = 1_800_000_015;
const LOCKED: &str = "Too many failed attempts, try again later.";
const REPLAY: &str = "That code was already used; wait for the next one.";

fn env(name: &str) -> TestEnv {
    let env = TestEnv::builder(name).build();
    env.enroll(USER, SECRET);
    env
}

fn wrong(env: &TestEnv, host: &str, time: i64) -> Login {
    let login = env
        .attempt(USER)
        .answer(&oath::wrong_code(SECRET, time))
        .rhost(host)
        .time(time)
        .run();
    login.assert_result("PAM_AUTH_ERR");
    login
}

fn right(env: &TestEnv, host: &str, time: i64) -> Login {
    env.attempt(USER)
        .answer(&totp(SECRET, time))
        .rhost(host)
        .time(time)
        .run()
}

fn errors(login: &Login) -> Vec<&str> {
    login.texts("ERROR_MSG")
}

#[test]
fn three_mistyped_ssh_connections_do_not_lock_and_the_last_attempts_are_counted_down() {
    let env = env("defaults_host");
    let host = "198.51.100.7";
    // Three connections of three answers each (sshd's keyboard-interactive): nine failures.
    for i in 0..9 {
        let login = wrong(&env, host, T + i);
        let expected: Vec<String> = match 10 - (i + 1) {
            left @ 2..=3 => vec![format!("{left} attempts left before a 15-minute lockout.")],
            1 => vec!["1 attempt left before a 15-minute lockout.".to_string()],
            _ => vec![],
        };
        assert_eq!(errors(&login), expected, "failure {}\n{login}", i + 1);
    }
    // The tenth failure from that host locks it, and says for how long.
    let tenth = wrong(&env, host, T + 9);
    assert_eq!(
        errors(&tenth),
        [LOCKED, "Try again in 15 minutes."],
        "{tenth}"
    );
    // Locked from there: even the right code, told how long is left.
    let refused = right(&env, host, T + 9 + 300);
    refused.assert_result("PAM_AUTH_ERR");
    assert_eq!(
        errors(&refused),
        [LOCKED, "Try again in 10 minutes."],
        "{refused}"
    );
    // The owner elsewhere is not locked out.
    right(&env, "192.168.1.10", T + 9 + 330).assert_result("PAM_SUCCESS");
    // After the 15 minutes, the host gets in again.
    right(&env, host, T + 9 + 900 + 30).assert_result("PAM_SUCCESS");
}

#[test]
fn nine_failures_then_the_right_code_gets_in_and_clears_the_count() {
    let env = env("defaults_clear");
    let host = "198.51.100.8";
    for i in 0..9 {
        wrong(&env, host, T + i);
    }
    right(&env, host, T + 30).assert_result("PAM_SUCCESS");
    // The count starts again: the next failure shows nothing (nine attempts left).
    let next = wrong(&env, host, T + 31);
    assert!(errors(&next).is_empty(), "{next}");
}

#[test]
fn thirty_failures_from_all_hosts_lock_the_user_everywhere() {
    let env = env("defaults_user");
    // 29 failures, 9 or fewer per host: no host reaches its limit of 10.
    let mut time = T;
    for n in 0..29 {
        let host = format!("203.0.113.{}", n / 9 + 1);
        let login = wrong(&env, &host, time);
        assert!(
            !login.has_message("ERROR_MSG", LOCKED),
            "locked after {} failures\n{login}",
            n + 1
        );
        time += 1;
    }
    // The user-wide count is what is shown when it is the nearer limit: one left.
    let last = wrong(&env, "203.0.113.50", time);
    assert_eq!(
        errors(&last),
        [LOCKED, "Try again in 15 minutes."],
        "the 30th failure locks the user\n{last}"
    );
    let elsewhere = right(&env, "192.168.1.10", time + 60);
    elsewhere.assert_result("PAM_AUTH_ERR");
    assert!(elsewhere.has_message("ERROR_MSG", LOCKED), "{elsewhere}");
    assert!(
        env.logs()
            .iter()
            .any(|l| l.contains("lockout") && l.contains("scope=user failures=30")),
        "{:#?}",
        env.logs()
    );
}

#[test]
fn a_used_code_is_named_as_such_and_counts_as_a_failure() {
    let env = TestEnv::builder("replay_message")
        .config("[lockout]\nmax_failures = 3\n")
        .build();
    env.enroll(USER, SECRET);
    let host = "198.51.100.9";
    let code = totp(SECRET, T);
    right(&env, host, T).assert_result("PAM_SUCCESS");
    // The same code again, inside its 30 seconds (a second session opened at once).
    let replay = env
        .attempt(USER)
        .answer(&code)
        .rhost(host)
        .time(T + 5)
        .run();
    replay.assert_result("PAM_AUTH_ERR");
    assert_eq!(
        errors(&replay),
        [REPLAY, "2 attempts left before a 15-minute lockout."],
        "{replay}"
    );
    replay.assert_logged(&["auth failure", "reason=replay"]);
    // A wrong code is not called a replay.
    let wrong = wrong(&env, host, T + 6);
    assert!(!wrong.has_message("ERROR_MSG", REPLAY), "{wrong}");
    // The replay counted: this is the third failure, which locks the host.
    let third = env
        .attempt(USER)
        .answer(&code)
        .rhost(host)
        .time(T + 7)
        .run();
    assert_eq!(
        errors(&third),
        [REPLAY, LOCKED, "Try again in 15 minutes."],
        "{third}"
    );
}
