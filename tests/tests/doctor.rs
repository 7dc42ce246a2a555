//! `twostep doctor`, the real binary, against PAM service files the test writes into a private
//! directory (`--pam-dir`, so the service files other tests put into /etc/pam.d at the same
//! time cannot change the verdict) and against live, missing and dead syslog sockets.
//! docs/pam.md, "What twostep doctor checks".

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use twostep_tests::{TestEnv, paths};

struct Doctor {
    status: Option<i32>,
    lines: Vec<String>,
}

impl Doctor {
    /// The lines of one check, e.g. "pam".
    fn check(&self, name: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| l.split_whitespace().nth(1) == Some(name))
            .map(String::as_str)
            .collect()
    }

    fn assert_line(&self, tag: &str, name: &str, needles: &[&str]) {
        let found = self.check(name).into_iter().any(|l| {
            l.split_whitespace().next() == Some(tag) && needles.iter().all(|n| l.contains(n))
        });
        assert!(
            found,
            "no `{tag} {name}` line with {needles:?}:\n{}",
            self.lines.join("\n")
        );
    }
}

impl std::fmt::Display for Doctor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n{}", self.status, self.lines.join("\n"))
    }
}

fn pam_dir(env: &TestEnv) -> PathBuf {
    let dir = env.dir().join("pam.d");
    if !dir.exists() {
        std::fs::create_dir(&dir).expect("test setup");
    }
    dir
}

/// Writes a service file: `{module}` and `{config}` become absolute paths.
fn service(env: &TestEnv, name: &str, lines: &[&str]) {
    let text: String = lines
        .iter()
        .map(|l| {
            l.replace("{module}", paths::module().to_str().expect("test setup"))
                .replace("{config}", env.config_path().to_str().expect("test setup"))
                + "\n"
        })
        .collect();
    std::fs::write(pam_dir(env).join(name), text).expect("test setup");
}

fn doctor(env: &TestEnv) -> Doctor {
    let dir = pam_dir(env);
    let out = env.cli(&["doctor", "--pam-dir", dir.to_str().expect("test setup")]);
    Doctor {
        status: out.status.code(),
        lines: String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
    }
}

const ENROLL: &str = "[policy]\non_unenrolled = \"enroll\"";

#[test]
fn a_required_password_line_fails_with_enrollment_at_login_and_warns_without() {
    let env = TestEnv::builder("doctor_required").config(ENROLL).build();
    service(
        &env,
        "nas-web",
        &[
            "# the password first",
            "auth    required   pam_unix.so",
            "auth    required   {module} config={config}",
        ],
    );
    let d = doctor(&env);
    assert_eq!(d.status, Some(1), "{d}");
    d.assert_line(
        "FAIL",
        "pam",
        &[
            "nas-web:2: auth required pam_unix.so can fail",
            "on_unenrolled = \"enroll\"",
            "requisite",
        ],
    );
    assert!(
        !d.lines
            .iter()
            .any(|l| l.starts_with("ok") && l.contains(" pam ")),
        "{d}"
    );

    // The same stack without enrollment at login: a warning, and the service is listed.
    env.write_config(&env.standard_config(""));
    let d = doctor(&env);
    d.assert_line(
        "WARN",
        "pam",
        &["nas-web:2", "count toward the user's lockout"],
    );
    d.assert_line("ok", "pam", &["used by nas-web"]);

    // requisite: nothing to report.
    env.write_config(&env.standard_config(ENROLL));
    service(
        &env,
        "nas-web",
        &[
            "auth requisite pam_unix.so",
            "auth required {module} config={config}",
        ],
    );
    let d = doctor(&env);
    assert_eq!(d.check("pam"), ["ok    pam       used by nas-web"], "{d}");
}

#[test]
fn includes_continuations_and_debian_common_auth() {
    let env = TestEnv::builder("doctor_include").config(ENROLL).build();
    // Debian's common-auth as pam-auth-update writes it: a wrong password ends at pam_deny.
    service(
        &env,
        "common-auth",
        &[
            "auth\t[success=1 default=ignore]\tpam_unix.so nullok",
            "auth\trequisite\t\t\tpam_deny.so",
            "auth\trequired\t\t\tpam_permit.so",
            "auth\toptional\t\t\tpam_cap.so",
        ],
    );
    service(
        &env,
        "sshd",
        &[
            "@include common-auth",
            "-auth [success=ok \\",
            "       default=bad] {module} config={config}",
        ],
    );
    // A substack's requisite ends only the substack: the code is still reached.
    service(&env, "sub-auth", &["auth requisite pam_unix.so"]);
    service(
        &env,
        "ftp",
        &[
            "auth substack sub-auth",
            "auth required {module} config={config}",
        ],
    );
    let d = doctor(&env);
    d.assert_line(
        "FAIL",
        "pam",
        &["ftp: ", "sub-auth:1: auth requisite pam_unix.so can fail"],
    );
    assert!(
        !d.lines
            .iter()
            .any(|l| l.contains("sshd:") || l.contains("common-auth:")),
        "common-auth is safe\n{d}"
    );
    std::fs::remove_file(pam_dir(&env).join("ftp")).expect("test setup");
    let d = doctor(&env);
    // common-auth itself loads nothing; sshd loads the module through its own line.
    d.assert_line("ok", "pam", &["used by sshd"]);
}

#[test]
fn one_prompt_lines_arguments_and_other_configs() {
    let env = TestEnv::builder("doctor_one_prompt").build();
    service(
        &env,
        "vpn",
        &[
            "auth required {module} combined=split config={config}",
            "auth required pam_unix.so use_first_pass",
            "auth required {module} combined=verify config={config}",
        ],
    );
    service(
        &env,
        "ftp",
        &["auth required {module} combined config={config}"],
    );
    service(
        &env,
        "imap",
        &[
            "auth requisite pam_unix.so",
            "auth required {module} combined=verify",
        ],
    );
    service(
        &env,
        "smb",
        &[
            "auth requisite pam_unix.so",
            "auth required {module} nullok config={config}",
        ],
    );
    let d = doctor(&env);
    assert_eq!(d.status, Some(1), "{d}");
    d.assert_line(
        "FAIL",
        "pam",
        &[
            "vpn:2: auth required pam_unix.so use_first_pass can fail",
            "combined=verify",
        ],
    );
    d.assert_line(
        "FAIL",
        "pam",
        &["ftp:1:", "no longer accepted", "combined=split"],
    );
    d.assert_line("FAIL", "pam", &["imap:2:", "without a combined=split"]);
    d.assert_line(
        "FAIL",
        "pam",
        &["smb:2:", "unknown module argument \"nullok\""],
    );

    // Fixed: requisite between the two lines; the other config is marked, not failed.
    let other = env.dir().join("other.toml");
    std::fs::copy(env.config_path(), &other).expect("test setup");
    let other_arg = format!("config={}", other.display());
    for name in ["ftp", "imap", "smb"] {
        std::fs::remove_file(pam_dir(&env).join(name)).expect("test setup");
    }
    service(
        &env,
        "vpn",
        &[
            "auth required {module} combined=split config={config}",
            "auth [success=ok default=die] pam_unix.so use_first_pass",
            "auth required {module} combined=verify config={config}",
        ],
    );
    service(
        &env,
        "web",
        &[
            "auth requisite pam_unix.so",
            &format!("auth required {{module}} {other_arg}"),
        ],
    );
    let d = doctor(&env);
    assert_eq!(
        d.check("pam"),
        [format!(
            "ok    pam       used by vpn, web [{other_arg}: not the config checked here]"
        )],
        "{d}"
    );
}

fn set_log_socket(env: &TestEnv, socket: &Path) {
    env.write_config(&format!(
        "state_dir = \"{{state_dir}}\"\n[log]\nsocket = \"{}\"\n",
        socket.display()
    ));
}

#[test]
fn a_missing_or_dead_syslog_socket_is_reported() {
    let env = TestEnv::new("doctor_log");
    service(
        &env,
        "svc",
        &[
            "auth requisite pam_unix.so",
            "auth required {module} config={config}",
        ],
    );
    // The environment's own listener.
    let d = doctor(&env);
    d.assert_line(
        "ok",
        "log",
        &[env.log_socket().to_str().expect("test setup"), "accepts"],
    );

    let missing = env.dir().join("no-such.sock");
    set_log_socket(&env, &missing);
    let d = doctor(&env);
    assert_eq!(d.status, Some(1), "{d}");
    d.assert_line(
        "FAIL",
        "log",
        &["no-such.sock does not exist", "syslog daemon"],
    );

    // A socket file nobody listens on any more (a stopped daemon).
    let dead = env.dir().join("dead.sock");
    drop(UnixDatagram::bind(&dead).expect("test setup"));
    assert!(dead.exists());
    set_log_socket(&env, &dead);
    let d = doctor(&env);
    assert_eq!(d.status, Some(1), "{d}");
    d.assert_line("FAIL", "log", &["dead.sock: nobody listens"]);
}
