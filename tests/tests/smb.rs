//! Issue 13 through a real Samba: `smbd` started by the test (own smb.conf, port, directories,
//! `obey pam restrictions = yes`, its account stack running pam_twostep) and the real
//! `smbclient`, from 127.0.0.1 and from a network namespace. A user's SMB session is allowed
//! only after a two-step login of that user, through the real libpam, from the same address.

use std::os::unix::fs::PermissionsExt;

use twostep_tests::smbd::{From, Smbd};
use twostep_tests::users::TestUser;
use twostep_tests::{TestEnv, oath};

const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
const WINDOW: i64 = 600;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A two-step login (code from oathtool) through the real libpam, as from `address`, at `time`.
fn two_step_login(env: &TestEnv, user: &TestUser, address: &str, time: i64) {
    env.attempt(user.name())
        .rhost(address)
        .answer(&oath::totp(SECRET, time))
        .time(time)
        .run()
        .assert_result("PAM_SUCCESS");
}

fn cli_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.cli(args);
    assert!(
        out.status.success(),
        "twostep {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn smb_opens_only_after_a_recent_two_step_login_from_the_same_address() {
    let alice = TestUser::create("smba");
    let bob = TestUser::create("smbb");
    let env = TestEnv::builder("smb_gate")
        .config(&format!(
            "[gate]\nwindow_secs = {WINDOW}\n[policy]\nenforce_users = [\"{}\"]\n",
            alice.name()
        ))
        .build();
    env.enroll(alice.name(), SECRET);
    let smbd = Smbd::start(&env);
    smbd.add_user(&alice);
    smbd.add_user(&bob);
    let here = smbd.client_address(From::Loopback).to_string();
    let there = smbd.client_address(From::Namespace).to_string();

    let refused = smbd.read_hello(&alice, From::Loopback);
    refused.assert_refused().assert_logged(&[
        "account refused",
        "reason=no-recent-two-step",
        "service=samba",
    ]);
    eprintln!("refused before a two-step login:\n{}", refused.text());

    // Steps apart, so that the second code is not a replay of the first.
    let t = now() - 60;
    two_step_login(&env, &alice, &here, t);
    let allowed = smbd.read_hello(&alice, From::Loopback);
    allowed.assert_read().assert_logged(&[
        "account allowed",
        "reason=recent-two-step",
        "rhost=127.0.0.1",
    ]);
    eprintln!("allowed after it:\n{}", allowed.text());
    smbd.read_hello(&alice, From::Namespace)
        .assert_refused()
        .assert_logged(&["account refused", &format!("rhost={there}")]);

    two_step_login(&env, &alice, &there, t + 30);
    smbd.read_hello(&alice, From::Namespace).assert_read();

    cli_ok(&env, &["gate", "close", alice.name(), &here]);
    smbd.read_hello(&alice, From::Loopback).assert_refused();
    smbd.read_hello(&alice, From::Namespace).assert_read();

    // Unenrolled and not enforced: SMB as before.
    smbd.read_hello(&bob, From::Loopback).assert_read();

    // Reset: enforced and not enrolled, refused from everywhere.
    cli_ok(&env, &["reset", alice.name()]);
    smbd.read_hello(&alice, From::Namespace)
        .assert_refused()
        .assert_logged(&["account refused", "reason=not-enrolled", "policy=enforced"]);
    env.assert_logs_clean(&[SECRET, alice.password(), bob.password()]);
}

#[test]
fn an_expired_gate_or_an_unsafe_state_dir_refuses_smb() {
    let alice = TestUser::create("smbc");
    let env = TestEnv::builder("smb_expiry")
        .config(&format!("[gate]\nwindow_secs = {WINDOW}\n"))
        .build();
    env.enroll(alice.name(), SECRET);
    let smbd = Smbd::start(&env);
    smbd.add_user(&alice);
    let here = smbd.client_address(From::Loopback).to_string();

    // A login longer ago than the window.
    two_step_login(&env, &alice, &here, now() - WINDOW - 60);
    smbd.read_hello(&alice, From::Loopback).assert_refused();

    two_step_login(&env, &alice, &here, now());
    smbd.read_hello(&alice, From::Loopback).assert_read();

    let state = env.state_dir();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    smbd.read_hello(&alice, From::Loopback)
        .assert_refused()
        .assert_logged(&["refusing"]);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    smbd.read_hello(&alice, From::Loopback).assert_read();
}
