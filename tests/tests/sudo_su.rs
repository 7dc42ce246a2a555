//! Issue 13: step-up with the real `sudo` and `su`, typed at a pseudo-terminal by `expect`:
//! the password, then the code (from oathtool). Each runs in a private mount namespace in which
//! /etc/pam.d/sudo or /etc/pam.d/su (and /etc/sudoers) are the test's files, bind-mounted: the
//! real ones are not touched. Local logins have no PAM_RHOST, so the code is asked.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use twostep_tests::users::TestUser;
use twostep_tests::{TestEnv, oath, run};

const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";

/// The PAM stack of /etc/pam.d/sudo and /etc/pam.d/su as docs/pam.md gives it: the password,
/// then the code.
const STEP_UP: [&str; 4] = [
    "auth requisite pam_unix.so",
    "auth required {module} config={config}",
    "account required pam_unix.so",
    "session required pam_permit.so",
];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn write_private(path: &Path, text: &str, mode: u32) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.write_all(text.as_bytes()).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// One exchange: wait for `expect`, then type `send` (a secret: the script file is root-only).
struct Step<'a> {
    expect: &'a str,
    send: String,
}

/// Runs `command` (as root, in a mount namespace where each `(file, target)` is bind-mounted)
/// under `expect` on a pty, answering `steps` in order; returns the transcript and exit code.
fn typed(
    env: &TestEnv,
    binds: &[(&Path, &str)],
    command: &str,
    steps: &[Step<'_>],
) -> (String, i32) {
    let mut script = String::from("set timeout 20\nlog_user 1\n");
    let mounts: Vec<String> = binds
        .iter()
        .map(|(file, target)| format!("mount --bind {} {target}", file.display()))
        .collect();
    let shell = format!("{} && exec {command}", mounts.join(" && "));
    script.push_str(&format!(
        "spawn unshare --mount --propagation private sh -c {{{shell}}}\n"
    ));
    for step in steps {
        script.push_str(&format!(
            "expect {{\n  -exact {{{}}} {{ send -- {{{}}}; send \"\\r\" }}\n  timeout {{ puts \"\\nEXPECT-TIMEOUT\"; exit 90 }}\n  eof {{ puts \"\\nEXPECT-EOF\"; exit 91 }}\n}}\n",
            step.expect, step.send
        ));
    }
    script.push_str("expect eof\nset status [wait]\nexit [lindex $status 3]\n");
    let path = env.dir().join("typed.exp");
    write_private(&path, &script, 0o600);
    let out = run::run(Command::new("expect").arg("-f").arg(&path), run::TIMEOUT);
    let transcript =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (transcript, out.status.code().unwrap_or(-1))
}

/// Types the password at `prompt`, then the code at the module's prompt.
fn password_then_code(prompt: &'static str, password: String, code: String) -> [Step<'static>; 2] {
    [
        Step {
            expect: prompt,
            send: password,
        },
        Step {
            expect: "Verification code: ",
            send: code,
        },
    ]
}

/// A code that is wrong now (and in the steps next to now).
fn wrong_code() -> String {
    let right: u32 = oath::totp(SECRET, now()).parse().expect("digits");
    format!("{:06}", (right + 500_000) % 1_000_000)
}

fn service_file(env: &TestEnv) -> std::path::PathBuf {
    env.write_stack(&STEP_UP);
    env.service_file()
}

#[test]
fn sudo_asks_the_password_then_the_code() {
    let alice = TestUser::create("sudo");
    let env = TestEnv::new("sudo_step_up");
    env.enroll(alice.name(), SECRET);
    env.add_secret(alice.password());
    let pam = service_file(&env);
    let sudoers = env.dir().join("sudoers");
    write_private(
        &sudoers,
        &format!(
            "Defaults env_reset\nDefaults:{0} passwd_tries=1, timestamp_timeout=0, !lecture\nroot ALL=(ALL) ALL\n\
             {0} ALL=(root) /usr/bin/id\n",
            alice.name()
        ),
        0o440,
    );
    let binds = [
        (pam.as_path(), "/etc/pam.d/sudo"),
        (sudoers.as_path(), "/etc/sudoers"),
    ];
    let command = format!("runuser -u {} -- sudo /usr/bin/id -un", alice.name());

    let (transcript, status) = typed(
        &env,
        &binds,
        &command,
        &password_then_code(
            "password for",
            alice.password().to_string(),
            oath::totp(SECRET, now()),
        ),
    );
    assert_eq!(status, 0, "{transcript}");
    assert!(
        transcript.lines().any(|l| l.trim() == "root"),
        "{transcript}"
    );

    let wrong = wrong_code();
    let (transcript, status) = typed(
        &env,
        &binds,
        &command,
        &password_then_code("password for", alice.password().to_string(), wrong),
    );
    assert_ne!(status, 0, "{transcript}");
    assert!(
        !transcript.lines().any(|l| l.trim() == "root"),
        "{transcript}"
    );
    assert!(
        env.logs()
            .iter()
            .any(|l| l.contains("auth failure") && l.contains("reason=wrong-code")),
        "{:?}",
        env.logs()
    );
    env.assert_logs_clean(&[SECRET, alice.password()]);
}

#[test]
fn su_asks_the_target_users_password_then_their_code() {
    let alice = TestUser::create("sua");
    let bob = TestUser::create("sub");
    let env = TestEnv::new("su_step_up");
    env.enroll(bob.name(), SECRET);
    env.add_secret(bob.password());
    let pam = service_file(&env);
    let binds = [(pam.as_path(), "/etc/pam.d/su")];
    let command = format!(
        "runuser -u {} -- su {} -c 'id -un'",
        alice.name(),
        bob.name()
    );

    let (transcript, status) = typed(
        &env,
        &binds,
        &command,
        &password_then_code(
            "Password: ",
            bob.password().to_string(),
            oath::totp(SECRET, now()),
        ),
    );
    assert_eq!(status, 0, "{transcript}");
    assert!(
        transcript.lines().any(|l| l.trim() == bob.name()),
        "{transcript}"
    );
    assert!(
        env.logs()
            .iter()
            .any(|l| l.contains("auth success") && l.contains(&format!("user={}", bob.name()))),
        "{:?}",
        env.logs()
    );

    // The wrong code: refused, whoever types it.
    let (transcript, status) = typed(
        &env,
        &binds,
        &command,
        &password_then_code("Password: ", bob.password().to_string(), wrong_code()),
    );
    assert_ne!(status, 0, "{transcript}");
    assert!(
        !transcript.lines().any(|l| l.trim() == bob.name()),
        "{transcript}"
    );
    assert!(
        transcript.contains("Authentication failure"),
        "{transcript}"
    );
}
