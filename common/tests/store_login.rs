#![allow(clippy::unwrap_used)]

//! The core against a real state directory: file safety, replay, lockout, emergency codes and
//! racing logins. Needs root (records must be root owned), like the module.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

mod support;

use twostep_common::config::Config;
use twostep_common::enroll;
use twostep_common::lockout::Locked;
use twostep_common::login::{
    self, Accepted, Ask, Attempt, Begin, Commit, EnrollAtLogin, Outcome, Rejected,
};
use twostep_common::network::Network;
use twostep_common::policy::{Skip, SystemDirectory};
use twostep_common::store::{Seen, Store};
use twostep_common::totp::{self, Algorithm, Params};

const SECRET: &str = "2SH3V3GDW7ZNMGYE";
const T0: u64 = 1_800_000_015;

struct Env {
    dir: PathBuf,
    config: Config,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn env() -> Env {
    let dir = support::scratch_dir("store-login");
    let mut config = Config {
        state_dir: dir.join("state"),
        ..Config::default()
    };
    config.lockout.max_failures = 3;
    Env { dir, config }
}

fn params() -> Params {
    Params {
        algorithm: Algorithm::Sha1,
        digits: 6,
        period: 30,
    }
}

fn code(time: u64) -> String {
    let key = totp::decode_secret(SECRET).unwrap();
    totp::code_at(&key, params(), time).to_string()
}

/// Enrolls `user` and returns the emergency codes.
fn enroll(env: &Env, user: &str) -> Vec<String> {
    let store = Store::create(&env.config.state_dir).unwrap();
    let key = totp::decode_secret(SECRET).unwrap();
    let new = enroll::new_totp(&env.config, user, &key, params(), T0 - 100).unwrap();
    let lock = store.lock(user).unwrap();
    store.save(&lock, &new.record).unwrap();
    new.emergency_codes.iter().map(|c| c.to_string()).collect()
}

fn attempt(user: &str) -> Attempt<'_> {
    Attempt {
        user,
        service: "test",
        rhost: "192.0.2.1",
    }
}

fn verify(env: &Env, user: &str, typed: &str, now: u64) -> Outcome {
    let store = Store::open(&env.config.state_dir).unwrap();
    login::verify(
        &store,
        &env.config,
        &attempt(user),
        typed.as_bytes(),
        now,
        Seen::default(),
    )
    .unwrap()
}

/// `login::verify` for alice with a given store and `seen`, errors included.
fn verify_seen(
    env: &Env,
    store: &Store,
    typed: &[u8],
    now: u64,
    seen: Seen,
) -> Result<Outcome, twostep_common::Error> {
    login::verify(store, &env.config, &attempt("alice"), typed, now, seen)
}

/// A failure that locked nothing; `attempts_left` as counted in the state it wrote (this
/// file's config: 3 failures per host, 30 in all).
fn rejected(why: Rejected, attempts_left: u32) -> Outcome {
    Outcome::Rejected {
        why,
        locked: None,
        attempts_left,
    }
}

fn begin(env: &Env, user: &str, rhost: &str, now: u64) -> Begin {
    let store = Store::open(&env.config.state_dir).unwrap();
    let attempt = Attempt {
        user,
        service: "test",
        rhost,
    };
    login::begin(&store, &env.config, &SystemDirectory, &attempt, now)
        .unwrap()
        .0
}

fn verify_from(env: &Env, user: &str, rhost: &str, typed: &str, now: u64) -> Outcome {
    let store = Store::open(&env.config.state_dir).unwrap();
    let attempt = Attempt {
        user,
        service: "test",
        rhost,
    };
    login::verify(
        &store,
        &env.config,
        &attempt,
        typed.as_bytes(),
        now,
        Seen::default(),
    )
    .unwrap()
}

#[test]
fn right_code_once_then_replay() {
    let env = env();
    enroll(&env, "alice");
    let c = code(T0);
    assert_eq!(
        verify(&env, "alice", &c, T0),
        Outcome::Accepted(Accepted::Totp)
    );
    assert_eq!(
        verify(&env, "alice", &c, T0 + 1),
        rejected(Rejected::Replay, 2)
    );
    // The previous step's code is older than the accepted one: also a replay.
    assert_eq!(
        verify(&env, "alice", &code(T0 - 30), T0 + 2),
        rejected(Rejected::Replay, 1)
    );
    // The next step is fine.
    assert_eq!(
        verify(&env, "alice", &code(T0 + 30), T0 + 30),
        Outcome::Accepted(Accepted::Totp)
    );
}

#[test]
fn spaces_are_ignored_and_skew_is_one_step() {
    let env = env();
    enroll(&env, "alice");
    let prev = code(T0 - 30);
    let spaced = format!("{} {}", &prev[..3], &prev[3..]);
    assert_eq!(
        verify(&env, "alice", &spaced, T0),
        Outcome::Accepted(Accepted::Totp)
    );
    assert_eq!(
        verify(&env, "alice", &code(T0 + 30), T0),
        Outcome::Accepted(Accepted::Totp)
    );
    assert_eq!(
        verify(&env, "alice", &code(T0 + 60), T0),
        rejected(Rejected::WrongCode, 2)
    );
    assert_eq!(
        verify(&env, "alice", &code(T0 - 90), T0 + 1),
        rejected(Rejected::WrongCode, 1)
    );
}

#[test]
fn lockout_after_failures_and_release() {
    let env = env();
    enroll(&env, "alice");
    assert_eq!(
        verify(&env, "alice", "000000", T0),
        rejected(Rejected::WrongCode, 2)
    );
    assert_eq!(
        verify(&env, "alice", "111111", T0 + 1),
        rejected(Rejected::WrongCode, 1)
    );
    assert_eq!(
        verify(&env, "alice", "222222", T0 + 2),
        Outcome::Rejected {
            why: Rejected::WrongCode,
            locked: Some(Locked::Host),
            attempts_left: 0,
        }
    );
    let until = T0 + 2 + env.config.lockout.duration_secs;
    assert_eq!(
        verify(&env, "alice", &code(T0 + 3), T0 + 3),
        Outcome::Locked { until }
    );
    assert_eq!(
        begin(&env, "alice", "192.0.2.1", T0 + 3),
        Begin::Locked { until }
    );
    assert_eq!(
        begin(&env, "alice", "192.0.2.1", until),
        Begin::AskCode(Ask::Totp)
    );
    assert_eq!(
        verify(&env, "alice", &code(until), until),
        Outcome::Accepted(Accepted::Totp)
    );
}

#[test]
fn successes_never_count_toward_lockout() {
    let env = env();
    enroll(&env, "alice");
    for i in 0..10u64 {
        let t = T0 + i * 30;
        assert_eq!(
            verify(&env, "alice", "999999", t),
            rejected(Rejected::WrongCode, 2),
            "step {i}"
        );
        assert_eq!(
            verify(&env, "alice", &code(t), t + 1),
            Outcome::Accepted(Accepted::Totp)
        );
    }
}

#[test]
fn emergency_codes_work_once_each() {
    let env = env();
    let codes = enroll(&env, "alice");
    assert_eq!(codes.len(), 10);
    assert_eq!(
        verify(&env, "alice", &codes[0], T0),
        Outcome::Accepted(Accepted::Emergency { remaining: 9 })
    );
    assert_eq!(
        verify(&env, "alice", &codes[0], T0 + 1),
        rejected(Rejected::WrongEmergencyCode, 2)
    );
    let typed = codes[1].replace('-', " ").to_uppercase();
    assert_eq!(
        verify(&env, "alice", &typed, T0 + 2),
        Outcome::Accepted(Accepted::Emergency { remaining: 8 })
    );
}

#[test]
fn empty_answer_is_not_a_failure_and_junk_is() {
    let env = env();
    enroll(&env, "alice");
    assert_eq!(
        verify(&env, "alice", "  ", T0),
        rejected(Rejected::Empty, 3)
    );
    assert_eq!(
        verify(&env, "alice", "12345", T0),
        rejected(Rejected::Malformed, 2)
    );
    let store = Store::open(&env.config.state_dir).unwrap();
    let huge = vec![b'7'; 1 << 20];
    let out = verify_seen(&env, &store, &huge, T0, Seen::default()).unwrap();
    assert_eq!(out, rejected(Rejected::Malformed, 1));
    let out = verify_seen(&env, &store, b"\xff\xfe12", T0, Seen::default()).unwrap();
    assert!(
        matches!(
            out,
            Outcome::Rejected {
                locked: Some(Locked::Host),
                ..
            }
        ),
        "{out:?}"
    );
}

#[test]
fn not_enrolled_and_hostile_names() {
    let env = env();
    enroll(&env, "alice");
    let not_enrolled = Begin::NotEnrolled { enforced: false };
    assert_eq!(begin(&env, "bob", "", T0), not_enrolled);
    assert_eq!(begin(&env, "../state/users/alice", "", T0), not_enrolled);
    let store = Store::open(&env.config.state_dir).unwrap();
    assert!(login::begin(&store, &env.config, &SystemDirectory, &attempt(""), T0).is_err());
    assert_eq!(store.users().unwrap(), vec!["alice".to_string()]);
}

/// Each unsafe record is refused with a reason, and the bytes on disk are left as they were.
#[test]
fn unsafe_or_corrupt_records_fail_closed_untouched() {
    let env = env();
    enroll(&env, "alice");
    let store = Store::open(&env.config.state_dir).unwrap();
    let path = store.record_path("alice").unwrap();
    let original = fs::read(&path).unwrap();

    let check = |what: &str, setup: &dyn Fn(&Path), undo: &dyn Fn(&Path)| {
        setup(&path);
        let before = fs::symlink_metadata(&path).map(|m| m.len()).ok();
        let store = Store::open(&env.config.state_dir).unwrap();
        let err = login::begin(&store, &env.config, &SystemDirectory, &attempt("alice"), T0)
            .expect_err(what)
            .to_string();
        assert!(err.contains("alice.toml"), "{what}: {err}");
        let err = verify_seen(&env, &store, code(T0).as_bytes(), T0, Seen::default())
            .expect_err(what)
            .to_string();
        assert!(
            !err.contains(SECRET),
            "{what}: error shows the secret: {err}"
        );
        assert_eq!(
            fs::symlink_metadata(&path).map(|m| m.len()).ok(),
            before,
            "{what}"
        );
        undo(&path);
        assert_eq!(fs::read(&path).unwrap(), original, "{what}: record changed");
    };

    check(
        "world-readable",
        &|p| fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap(),
        &|p| fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap(),
    );
    let link = env.dir.join("hardlink");
    check("hard link", &|p| fs::hard_link(p, &link).unwrap(), &|_| {
        fs::remove_file(&link).unwrap()
    });
    let moved = env.dir.join("real.toml");
    check(
        "symlink",
        &|p| {
            fs::rename(p, &moved).unwrap();
            symlink(&moved, p).unwrap();
        },
        &|p| {
            fs::remove_file(p).unwrap();
            fs::rename(&moved, p).unwrap();
        },
    );
    check(
        "owned by a user",
        &|p| nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap(),
        &|p| nix::unistd::chown(p, Some(nix::unistd::Uid::from_raw(0)), None).unwrap(),
    );
    let corrupt = [original.clone(), b"\n[totp\n".to_vec()].concat();
    check("corrupt TOML", &|p| fs::write(p, &corrupt).unwrap(), &|p| {
        fs::write(p, &original).unwrap()
    });
    check(
        "not UTF-8",
        &|p| fs::write(p, b"version = 1\n\xff\n").unwrap(),
        &|p| fs::write(p, &original).unwrap(),
    );
    check(
        "huge",
        &|p| fs::write(p, vec![b'#'; 1 << 20]).unwrap(),
        &|p| fs::write(p, &original).unwrap(),
    );
}

#[test]
fn unsafe_state_directory_is_refused() {
    let env = env();
    enroll(&env, "alice");
    let state = &env.config.state_dir;
    fs::set_permissions(state, fs::Permissions::from_mode(0o755)).unwrap();
    let err = Store::open(state).unwrap_err().to_string();
    assert!(err.contains("mode 0755"), "{err}");
    fs::set_permissions(state, fs::Permissions::from_mode(0o700)).unwrap();
    // A group-writable parent lets someone swap the state directory.
    fs::set_permissions(&env.dir, fs::Permissions::from_mode(0o770)).unwrap();
    assert!(Store::open(state).is_err());
    fs::set_permissions(&env.dir, fs::Permissions::from_mode(0o700)).unwrap();
    let moved = env.dir.join("elsewhere");
    fs::rename(state, &moved).unwrap();
    symlink(&moved, state).unwrap();
    let err = Store::open(state).unwrap_err().to_string();
    assert!(err.contains("symlink"), "{err}");
    fs::remove_file(state).unwrap();
    let err = Store::open(state).unwrap_err().to_string();
    assert!(err.contains("state directory"), "{err}");
}

#[test]
fn writes_leave_no_temp_files_and_keep_modes() {
    let env = env();
    enroll(&env, "alice");
    for i in 0..5 {
        verify(&env, "alice", &code(T0 + i * 30), T0 + i * 30);
    }
    let users = env.config.state_dir.join("users");
    let names: Vec<_> = fs::read_dir(&users)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["alice.state", "alice.toml"]);
    for name in &names {
        let mode = fs::metadata(users.join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600, "{name:?}");
    }
    let mode = fs::metadata(&users).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o700);
}

/// Sixteen logins race with the same valid code: exactly one wins, every round.
#[test]
fn racing_logins_with_one_code_succeed_once() {
    let mut env = env();
    // Fifteen replays per round would otherwise lock the user.
    env.config.lockout.max_failures = 1000;
    enroll(&env, "alice");
    for round in 0..25u64 {
        let t = T0 + round * 30;
        let c = code(t);
        let results: Vec<Outcome> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| verify(&env, "alice", &c, t)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let accepted = results
            .iter()
            .filter(|o| **o == Outcome::Accepted(Accepted::Totp))
            .count();
        assert_eq!(accepted, 1, "round {round}: {results:?}");
        let replays = results
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Outcome::Rejected {
                        why: Rejected::Replay,
                        locked: None,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(replays, 15, "round {round}: {results:?}");
    }
}

#[test]
fn a_stranger_cannot_lock_the_owner_out_from_the_lan() {
    let mut env = env();
    env.config.lockout.max_failures_user = 5;
    enroll(&env, "alice");
    for i in 0..3 {
        verify_from(&env, "alice", "203.0.113.66", "000000", T0 + i);
    }
    assert!(matches!(
        begin(&env, "alice", "203.0.113.66", T0 + 4),
        Begin::Locked { .. }
    ));
    assert_eq!(
        begin(&env, "alice", "192.168.1.20", T0 + 4),
        Begin::AskCode(Ask::Totp)
    );
    assert_eq!(
        verify_from(&env, "alice", "192.168.1.20", &code(T0 + 4), T0 + 4),
        Outcome::Accepted(Accepted::Totp)
    );
    // Addresses rotated by an attacker still add up to the per-user limit.
    for i in 0..4u64 {
        verify_from(
            &env,
            "alice",
            &format!("198.51.100.{i}"),
            "000000",
            T0 + 10 + i,
        );
    }
    assert_eq!(
        verify_from(&env, "alice", "198.51.100.9", "000000", T0 + 20),
        Outcome::Rejected {
            why: Rejected::WrongCode,
            locked: Some(Locked::User),
            attempts_left: 0,
        }
    );
    assert!(matches!(
        begin(&env, "alice", "192.168.1.20", T0 + 21),
        Begin::Locked { .. }
    ));
    // Unlock clears both kinds.
    let store = Store::open(&env.config.state_dir).unwrap();
    assert!(twostep_common::manage::unlock(&store, "alice").unwrap());
    assert_eq!(
        begin(&env, "alice", "203.0.113.66", T0 + 22),
        Begin::AskCode(Ask::Totp)
    );
    assert_eq!(
        begin(&env, "alice", "192.168.1.20", T0 + 22),
        Begin::AskCode(Ask::Totp)
    );
}

#[test]
fn trusted_networks_and_local_logins_skip_the_code() {
    let mut env = env();
    env.config.policy.trusted_networks = vec![
        Network::parse("192.168.1.0/24").unwrap(),
        Network::parse("fd00::/8").unwrap(),
    ];
    enroll(&env, "alice");
    let skip = Begin::Skip(Skip::TrustedNetwork);
    assert_eq!(begin(&env, "alice", "192.168.1.9", T0), skip);
    assert_eq!(begin(&env, "alice", "::ffff:192.168.1.9", T0), skip);
    assert_eq!(begin(&env, "alice", "fd00::5", T0), skip);
    assert_eq!(
        begin(&env, "bob", "192.168.1.9", T0),
        skip,
        "also for unenrolled users"
    );
    assert_eq!(
        begin(&env, "alice", "192.168.2.9", T0),
        Begin::AskCode(Ask::Totp)
    );
    assert_eq!(begin(&env, "alice", "", T0), Begin::AskCode(Ask::Totp));
    env.config.policy.trust_local = true;
    assert_eq!(
        begin(&env, "alice", "", T0),
        Begin::Skip(Skip::TrustedLocal)
    );
}

#[test]
fn grace_period_skips_the_code_for_the_same_remote_host_only() {
    let mut env = env();
    env.config.policy.grace_period = 600;
    enroll(&env, "alice");
    assert_eq!(
        begin(&env, "alice", "192.0.2.50", T0),
        Begin::AskCode(Ask::Totp)
    );
    verify_from(&env, "alice", "192.0.2.50", &code(T0), T0);
    assert_eq!(
        begin(&env, "alice", "192.0.2.50", T0 + 599),
        Begin::Skip(Skip::Grace)
    );
    assert_eq!(
        begin(&env, "alice", "192.0.2.50", T0 + 600),
        Begin::AskCode(Ask::Totp)
    );
    assert_eq!(
        begin(&env, "alice", "192.0.2.51", T0 + 1),
        Begin::AskCode(Ask::Totp)
    );
    // Local logins never get a grace period.
    verify_from(&env, "alice", "", &code(T0 + 30), T0 + 30);
    assert_eq!(begin(&env, "alice", "", T0 + 31), Begin::AskCode(Ask::Totp));
    // Off by default.
    env.config.policy.grace_period = 0;
    assert_eq!(
        begin(&env, "alice", "192.0.2.50", T0 + 1),
        Begin::AskCode(Ask::Totp)
    );
}

#[test]
fn enrollment_at_login_stores_only_a_confirmed_key() {
    let mut env = env();
    env.config.policy.enforce_users = vec!["carol".into()];
    let _ = Store::create(&env.config.state_dir).unwrap();
    assert_eq!(
        begin(&env, "carol", "", T0),
        Begin::NotEnrolled { enforced: true }
    );
    let pending = login::offer_enrollment(&env.config, "carol").unwrap();
    assert!(pending.uri.starts_with("otpauth://totp/"));
    let store = Store::open(&env.config.state_dir).unwrap();
    let attempt = attempt("carol");
    let wrong = login::enroll_at_login(&store, &env.config, &attempt, &pending, b"000000", T0);
    assert!(matches!(wrong.unwrap(), EnrollAtLogin::WrongCode));
    assert!(store.load("carol").unwrap().is_none());
    let right = totp::code_at(&pending.key, pending.params, T0);
    let done = login::enroll_at_login(
        &store,
        &env.config,
        &attempt,
        &pending,
        right.as_bytes(),
        T0,
    );
    let EnrollAtLogin::Confirmed { id, new } = done.unwrap() else {
        panic!("not confirmed");
    };
    assert_eq!(new.emergency_codes.len(), 10);
    // Confirmed is not enrolled: until the auth stack has succeeded (pam_setcred), the user
    // is still unenrolled.
    assert!(store.load("carol").unwrap().is_none());
    assert_eq!(
        begin(&env, "carol", "", T0 + 1),
        Begin::NotEnrolled { enforced: true }
    );
    let other = login::PendingId::parse(&"0".repeat(32)).unwrap();
    assert_eq!(
        login::commit_enrollment(&store, "carol", &other, T0 + 1).unwrap(),
        Commit::Missing
    );
    assert_eq!(
        login::commit_enrollment(&store, "carol", &id, T0 + 1).unwrap(),
        Commit::Enrolled
    );
    assert_eq!(begin(&env, "carol", "", T0 + 1), Begin::AskCode(Ask::Totp));
    // Taken once.
    assert_eq!(
        login::commit_enrollment(&store, "carol", &id, T0 + 2).unwrap(),
        Commit::Missing
    );
    // The confirming code is used up.
    assert_eq!(
        verify(&env, "carol", &right, T0 + 1),
        rejected(Rejected::Replay, 2)
    );
    let again = login::enroll_at_login(
        &store,
        &env.config,
        &attempt,
        &pending,
        right.as_bytes(),
        T0,
    );
    assert!(matches!(again.unwrap(), EnrollAtLogin::AlreadyEnrolled));
}

#[test]
fn a_waiting_enrollment_expires_and_is_bound_to_its_user() {
    let mut env = env();
    env.config.policy.enforce_users = vec!["carol".into(), "dave".into()];
    let store = Store::create(&env.config.state_dir).unwrap();
    let confirm = |user: &str, now: u64| {
        let pending = login::offer_enrollment(&env.config, user).unwrap();
        let code = totp::code_at(&pending.key, pending.params, now);
        match login::enroll_at_login(
            &store,
            &env.config,
            &attempt(user),
            &pending,
            code.as_bytes(),
            now,
        )
        .unwrap()
        {
            EnrollAtLogin::Confirmed { id, .. } => id,
            other => panic!("{other:?}"),
        }
    };
    let id = confirm("carol", T0);
    assert_eq!(
        login::commit_enrollment(&store, "dave", &id, T0 + 1).unwrap(),
        Commit::Missing,
        "another user's id"
    );
    let lifetime = twostep_common::store::PENDING_LIFETIME_SECS;
    assert_eq!(
        login::commit_enrollment(&store, "carol", &id, T0 + lifetime).unwrap(),
        Commit::Missing,
        "expired"
    );
    assert!(store.load("carol").unwrap().is_none());
    // A later confirmation for the same user does not take over an earlier one's id, and at
    // most 8 wait at once.
    let ids: Vec<_> = (0..10).map(|i| confirm("carol", T0 + 100 + i)).collect();
    let waiting = std::fs::read_dir(env.config.state_dir.join("pending"))
        .unwrap()
        .count();
    assert_eq!(waiting, 8);
    assert_eq!(
        login::commit_enrollment(&store, "carol", &ids[0], T0 + 120).unwrap(),
        Commit::Missing,
        "the oldest was dropped"
    );
    assert_eq!(
        login::commit_enrollment(&store, "carol", &ids[5], T0 + 120).unwrap(),
        Commit::Enrolled
    );
    assert_eq!(
        std::fs::read_dir(env.config.state_dir.join("pending"))
            .unwrap()
            .count(),
        0,
        "the rest are dropped once the user is enrolled"
    );
}

/// What `begin` read before the prompt, handed to `verify`.
fn begin_seen(env: &Env, store: &Store, user: &str, now: u64) -> Seen {
    let (begin, seen) =
        login::begin(store, &env.config, &SystemDirectory, &attempt(user), now).unwrap();
    assert_eq!(begin, Begin::AskCode(Ask::Totp));
    assert!(seen.record().is_some());
    seen
}

#[test]
fn the_record_seen_before_the_prompt_is_used_when_unchanged() {
    let env = env();
    enroll(&env, "alice");
    let store = Store::open(&env.config.state_dir).unwrap();
    let seen = begin_seen(&env, &store, "alice", T0);
    let outcome = verify_seen(&env, &store, code(T0).as_bytes(), T0, seen);
    assert_eq!(outcome.unwrap(), Outcome::Accepted(Accepted::Totp));
    assert_eq!(
        verify(&env, "alice", &code(T0), T0 + 1),
        rejected(Rejected::Replay, 2)
    );
}

/// Two logins prompt at once with the same state; the first to answer uses the code. The
/// second must not judge the same code on the state it saw before the prompt.
#[test]
fn a_record_replaced_after_the_prompt_is_read_again() {
    let env = env();
    enroll(&env, "alice");
    let store = Store::open(&env.config.state_dir).unwrap();
    for round in 0..20 {
        let now = T0 + 30 * round;
        let stale = begin_seen(&env, &store, "alice", now);
        assert_eq!(
            verify(&env, "alice", &code(now), now),
            Outcome::Accepted(Accepted::Totp)
        );
        let outcome = verify_seen(&env, &store, code(now).as_bytes(), now, stale);
        assert_eq!(
            outcome.unwrap(),
            rejected(Rejected::Replay, 2),
            "round {round}"
        );
    }
}

/// Root editing the record in place (same inode) between prompt and answer is noticed too.
#[test]
fn a_record_edited_in_place_after_the_prompt_is_read_again() {
    let env = env();
    enroll(&env, "alice");
    let store = Store::open(&env.config.state_dir).unwrap();
    let stale = begin_seen(&env, &store, "alice", T0);
    let path = store.record_path("alice").unwrap();
    let text = fs::read_to_string(&path).unwrap();
    // Another key (and a longer file, so that even a coarse file clock cannot hide the edit).
    let edited = text.replace(SECRET, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    assert_ne!(edited, text, "the record holds the key");
    // Written through the same inode, as `cat > file` would.
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap()
        .write_all(edited.as_bytes())
        .unwrap();
    let outcome = verify_seen(&env, &store, code(T0).as_bytes(), T0, stale);
    let outcome = outcome.unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Rejected {
                why: Rejected::WrongCode,
                ..
            }
        ),
        "{outcome:?}"
    );
}

/// The login state is a slot file: a damaged one (no intact slot) fails logins closed and
/// `unlock` replaces it.
#[test]
fn a_damaged_state_file_fails_closed_until_unlock() {
    let env = env();
    enroll(&env, "alice");
    let state = env.config.state_dir.join("users/alice.state");
    let mut bytes = fs::read(&state).unwrap();
    for byte in bytes.iter_mut().filter(|b| **b == b'0') {
        *byte = b'1';
    }
    fs::write(&state, &bytes).unwrap();
    let store = Store::open(&env.config.state_dir).unwrap();
    let err = login::begin(&store, &env.config, &SystemDirectory, &attempt("alice"), T0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("alice.state") && err.contains("unlock"),
        "{err}"
    );
    assert!(twostep_common::manage::unlock(&store, "alice").unwrap());
    assert_eq!(
        verify(&env, "alice", &code(T0), T0),
        Outcome::Accepted(Accepted::Totp)
    );
}
