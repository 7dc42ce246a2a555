//! The CLI commands the Cockpit page runs (docs/cli.md), end to end with the real binary:
//! `config get/set` (comments kept, validated, atomic, `--expect-hash`), the two-phase
//! `enroll --begin` / `--confirm-stdin` (then real logins through libpam), the `--json` forms of
//! the per-user commands, and `set-email --json` typed back through standard input against a
//! real SMTP server on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use twostep_tests::oath::{totp, wrong_code};
use twostep_tests::smtp::SmtpServer;
use twostep_tests::{TestEnv, paths};

const USER: &str = "daemon";

const CONFIG: &str = "\
# The admin's notes at the top.
state_dir = \"{state_dir}\"
issuer = \"twostep-tests\"   # shown in the app

[policy]
# Who must use two-step login.
enforce_users = [\"nobody\"]
#grace_period = 0

[log]
socket = \"{log_socket}\"
";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn json_ok(output: &Output) -> Value {
    assert!(output.status.success(), "{}", describe(output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(output)))
}

fn failed(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{}", describe(output));
    text(&output.stderr)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// `sha256:<hex>` of a file, by coreutils (not the product's code).
fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    let hex = text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    format!("sha256:{hex}")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn config_get_describes_the_file_and_set_keeps_comments() {
    let env = TestEnv::builder("cli_web_config")
        .raw_config(CONFIG)
        .build();
    let path = env.config_path();
    let got = json_ok(&env.cli(&["config", "get", "--json"]));
    assert_eq!(got["hash"], sha256sum(&path), "{got}");
    assert_eq!(got["exists"], true);
    assert_eq!(got["values"]["policy.grace_period"], 0);
    assert_eq!(got["values"]["policy.enforce_users"][0], "nobody");
    assert_eq!(
        got["values"]["lockout.max_failures"], 10,
        "defaults are filled in"
    );
    let set: Vec<&str> = got["set"]
        .as_array()
        .expect("set")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        set,
        ["state_dir", "issuer", "policy.enforce_users", "log.socket"]
    );
    let hash = got["hash"].as_str().expect("hash").to_string();

    // Several keys at once, in tables present and absent; comments and layout stay.
    let out = json_ok(&env.cli(&[
        "config",
        "set",
        "policy.grace_period",
        "3600",
        "policy.enforce_groups",
        "staff, admins",
        "lockout.max_failures",
        "3",
        "issuer",
        "NAS",
        "--expect-hash",
        &hash,
        "--json",
    ]));
    let written = std::fs::read_to_string(&path).expect("read config");
    assert_eq!(out["hash"], sha256sum(&path));
    assert_eq!(out["values"]["policy.grace_period"], 3600);
    for kept in [
        "# The admin's notes at the top.\n",
        "issuer = \"NAS\"   # shown in the app\n",
        "# Who must use two-step login.\nenforce_users = [\"nobody\"]\n",
        "#grace_period = 0\n",
        "grace_period = 3600\n",
        "enforce_groups = [\"staff\", \"admins\"]\n",
        "[lockout]\nmax_failures = 3\n",
    ] {
        assert!(written.contains(kept), "{kept:?} not in\n{written}");
    }
    assert_eq!(mode(&path), 0o600, "the file keeps its mode");
    // The module loads what was written: an enrolled user still logs in.
    let secret = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
    env.enroll(USER, secret);
    let t = 1_800_000_015;
    env.login(USER, &[&totp(secret, t)], t)
        .assert_result("PAM_SUCCESS");

    // A stale hash: refused, nothing written.
    let before = std::fs::read(&path).expect("read");
    let err = failed(&env.cli(&[
        "config",
        "set",
        "policy.grace_period",
        "60",
        "--expect-hash",
        &hash,
    ]));
    assert!(err.contains("changed since it was read"), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), before);

    // A change that would not load, an unknown key, a bad value: refused, nothing written.
    for (args, message) in [
        (
            vec!["lockout.max_failures", "0"],
            "lockout.max_failures must be at least 1",
        ),
        (vec!["lockout.max_failures_user", "2"], "would not load"),
        (
            vec!["policy.trusted_networks", "10.0.0.0/33"],
            "would not load",
        ),
        (vec!["policy.grace_everywhere", "1"], "unknown setting"),
        (vec!["policy.trust_local", "yes"], "true or false"),
        (vec!["policy.grace_period", "ten"], "whole number"),
        (vec!["policy.grace_period"], "KEY VALUE pairs"),
    ] {
        let mut full = vec!["config", "set"];
        full.extend(args.iter().copied());
        let err = failed(&env.cli(&full));
        assert!(err.contains(message), "{full:?}: {err}");
        assert_eq!(std::fs::read(&path).expect("read"), before, "{full:?}");
    }

    // --unset brings the default back; no temp file is left.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = json_ok(&env.cli(&["config", "set", "--unset", "policy.grace_period", "--json"]));
    assert_eq!(out["values"]["policy.grace_period"], 0);
    assert_eq!(mode(&path), 0o644);
    let written = std::fs::read_to_string(&path).expect("read config");
    assert!(!written.contains("grace_period = 3600"), "{written}");
    assert!(written.contains("#grace_period = 0\n"), "{written}");
    let leftovers: Vec<_> = std::fs::read_dir(env.dir())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn config_set_on_a_broken_or_missing_file() {
    let env = TestEnv::builder("cli_web_config_broken")
        .raw_config(CONFIG)
        .build();
    let path = env.config_path();
    // A broken file is not edited (the admin's intent is unclear).
    let broken = format!(
        "{}\nnonsense = 1\n",
        std::fs::read_to_string(&path).expect("read")
    );
    std::fs::write(&path, &broken).expect("write");
    let err = failed(&env.cli(&["config", "set", "policy.grace_period", "5"]));
    assert!(err.contains("fix the file first"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), broken);
    failed(&env.cli(&["config", "get", "--json"]));

    // A missing file: defaults, and `set` creates it (0644, like the packaged one).
    std::fs::remove_file(&path).expect("remove");
    let got = json_ok(&env.cli(&["config", "get", "--json"]));
    assert_eq!(got["exists"], false);
    assert_eq!(got["set"], serde_json::json!([]));
    json_ok(&env.cli(&[
        "config",
        "set",
        "state_dir",
        &env.state_dir().display().to_string(),
        "--expect-hash",
        got["hash"].as_str().expect("hash"),
        "--json",
    ]));
    assert_eq!(mode(&path), 0o644);
}

#[test]
fn two_phase_enrollment_from_begin_to_logins() {
    let env = TestEnv::new("cli_web_enroll");
    let begun = json_ok(&env.cli(&["enroll", USER, "--begin", "--json"]));
    let secret = begun["secret"].as_str().expect("secret").replace(' ', "");
    env.add_secret(&secret);
    let id = begun["id"].as_str().expect("id").to_string();
    assert!(begun["uri"].as_str().expect("uri").contains(&secret));
    // The SVG is the URI's QR code.
    let svg = env.dir().join("begun.svg");
    std::fs::write(&svg, begun["qr_svg"].as_str().expect("svg")).expect("write svg");
    let decoded = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&svg)
        .output()
        .expect("run zbarimg");
    assert_eq!(text(&decoded.stdout).trim(), begun["uri"].as_str().unwrap());
    let expires = begun["expires_at"].as_i64().expect("expires_at");
    assert!((expires - now() - 900).abs() <= 5, "{begun}");

    // Nothing enrolled yet; the key waits root-only in enrolling/.
    assert!(!env.record_path(USER).exists());
    let waiting = env.state_dir().join("enrolling");
    let files: Vec<_> = std::fs::read_dir(&waiting)
        .expect("enrolling/")
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(mode(&waiting), 0o700);
    assert_eq!(mode(&files[0].path()), 0o600);
    let out = env.cli(&["status", USER, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // Wrong code, no code, an id that is not one: refused, nothing stored.
    let confirm = |id: &str, input: &str| {
        env.cli_with_input(
            &["enroll", USER, "--confirm-stdin", "--id", id, "--json"],
            Some(input.as_bytes()),
        )
    };
    let wrong = wrong_code(&secret, now());
    env.add_secret(&wrong);
    let err = failed(&confirm(&id, &format!("{wrong}\n")));
    assert!(err.contains("does not match"), "{err}");
    failed(&confirm(&id, "\n"));
    let err = failed(&confirm("../../users/daemon", "123456\n"));
    assert!(err.contains("not an id"), "{err}");
    let err = failed(&confirm(&"0".repeat(32), "123456\n"));
    assert!(err.contains("no enrollment"), "{err}");
    assert!(!env.record_path(USER).exists());

    // The app's code: enrolled, emergency codes once, the waiting key gone.
    let t = now();
    let code = totp(&secret, t);
    env.add_secret(&code);
    let done = json_ok(&confirm(&id, &format!("{code}\n")));
    assert_eq!(done["state"], "enabled");
    let codes: Vec<String> = done["emergency_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    codes.iter().for_each(|c| env.add_secret(c));
    assert!(env.record_path(USER).exists());
    assert_eq!(std::fs::read_dir(&waiting).expect("list").count(), 0);
    let err = failed(&confirm(&id, &format!("{code}\n")));
    assert!(err.contains("no enrollment"), "{err}");

    // Real logins: the confirming code was used up; the next one and an emergency code work.
    env.login(USER, &[&code], t).assert_refused();
    let later = t + 60;
    let next = totp(&secret, later);
    env.add_secret(&next);
    env.login(USER, &[&next], later)
        .assert_result("PAM_SUCCESS");
    env.login(USER, &[&codes[0]], later + 30)
        .assert_result("PAM_SUCCESS");

    // Enrolled: begin is refused without --force.
    let err = failed(&env.cli(&["enroll", USER, "--begin", "--json"]));
    assert!(err.contains("already enrolled"), "{err}");

    // An expired waiting key is refused (its begin time moved back past the 15 minutes).
    let again = json_ok(&env.cli(&["enroll", USER, "--begin", "--force", "--json"]));
    let secret2 = again["secret"].as_str().expect("secret").replace(' ', "");
    env.add_secret(&secret2);
    let file = std::fs::read_dir(&waiting)
        .expect("list")
        .flatten()
        .next()
        .expect("a waiting file")
        .path();
    let body = std::fs::read_to_string(&file).expect("read");
    let old = now() - 901;
    let aged: String = body
        .lines()
        .map(|l| {
            if l.starts_with("created = ") {
                format!("created = {old}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert_ne!(aged, body, "the waiting record has a created time");
    std::fs::write(&file, aged).expect("write");
    let code2 = totp(&secret2, now());
    env.add_secret(&code2);
    let err = failed(&env.cli_with_input(
        &[
            "enroll",
            USER,
            "--confirm-stdin",
            "--force",
            "--id",
            again["id"].as_str().expect("id"),
        ],
        Some(format!("{code2}\n").as_bytes()),
    ));
    assert!(err.contains("expired"), "{err}");
    assert_eq!(std::fs::read_dir(&waiting).expect("list").count(), 0);
    env.login(USER, &[&codes[1]], later + 60)
        .assert_result("PAM_SUCCESS");
    env.assert_logs_clean(&[&secret, &secret2, &code, &next]);
}

#[test]
fn per_user_commands_have_json_forms() {
    let env = TestEnv::new("cli_web_json");
    let secret = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
    env.enroll(USER, secret);
    let rows = json_ok(&env.cli(&["status", "--all", "--json"]));
    let rows = rows.as_array().expect("rows");
    let row = |name: &str| rows.iter().find(|r| r["user"] == name).cloned();
    assert_eq!(row(USER).expect("daemon")["state"], "enabled");
    assert_eq!(row(USER).expect("daemon")["archived"], false);
    assert_eq!(row("root").expect("root listed")["state"], "disabled");
    assert!(row("nobody").is_none(), "nobody is not a person");

    let shown = json_ok(&env.cli(&["show-qr", USER, "--json"]));
    assert_eq!(
        shown["secret"].as_str().expect("secret").replace(' ', ""),
        secret
    );
    let codes = json_ok(&env.cli(&["codes", USER, "--json"]));
    assert_eq!(
        codes["emergency_codes"].as_array().expect("codes").len(),
        10
    );
    codes["emergency_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .for_each(|c| env.add_secret(c.as_str().unwrap_or_default()));
    assert_eq!(
        json_ok(&env.cli(&["unlock", USER, "--json"]))["unlocked"],
        true
    );
    let reset = json_ok(&env.cli(&["reset", USER, "--json"]));
    assert!(Path::new(reset["archived"].as_str().expect("archived")).exists());
    let rows = json_ok(&env.cli(&["status", USER, "--json"]));
    assert_eq!(rows[0]["state"], "disabled");
    assert_eq!(rows[0]["archived"], true);
    let restored = json_ok(&env.cli(&["restore", USER, "--json"]));
    assert_eq!(restored["restored_from"], reset["archived"]);
    let t = 1_800_000_015;
    env.login(USER, &[&totp(secret, t)], t)
        .assert_result("PAM_SUCCESS");
}

#[test]
fn set_email_json_takes_the_mailed_code_on_stdin() {
    let env = TestEnv::new("cli_web_email");
    let smtp = SmtpServer::start(&env.dir().join("smtp"));
    env.write_config(&env.standard_config(&format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsecurity = \"none\"\n\
         from = \"twostep@example.test\"\nhelper = \"{}\"\n",
        smtp.port(),
        paths::cli().display()
    )));
    env.enroll(USER, "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ");
    let mut child = Command::new(paths::cli())
        .env_remove("TWOSTEP_CONFIG")
        .arg("--config")
        .arg(env.config_path())
        .args(["set-email", USER, "carol@example.test", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start twostep");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut event = || -> Value {
        let line = lines.next().expect("a line").expect("read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let sent = event();
    assert_eq!(sent["event"], "sent");
    assert_eq!(sent["to"], "c•••@example.test");
    let mail = smtp.wait_for_messages(1, Duration::from_secs(20));
    let code = mail[0].code().expect("a code in the mail");
    env.add_secret(&code);
    let wrong = if code.starts_with('0') { "1" } else { "0" }.repeat(code.len());
    writeln!(stdin, "{wrong}").expect("write");
    let mismatch = event();
    assert_eq!(mismatch["event"], "mismatch");
    assert_eq!(mismatch["tries_left"], 2);
    writeln!(stdin, "{code}").expect("write");
    let saved = event();
    assert_eq!(saved["event"], "saved");
    assert_eq!(saved["email"], "c•••@example.test");
    drop(stdin);
    let status = child.wait().expect("wait");
    assert!(status.success());
    let rows = json_ok(&env.cli(&["status", USER, "--json"]));
    assert_eq!(rows[0]["email"], "c•••@example.test");

    // The email method, enrolled the same way: the emergency codes come in the last line.
    let mut child = Command::new(paths::cli())
        .env_remove("TWOSTEP_CONFIG")
        .arg("--config")
        .arg(env.config_path())
        .args([
            "enroll",
            "bin",
            "--method",
            "email",
            "--email",
            "bin@example.test",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start twostep");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut event = || -> Value {
        let line = lines.next().expect("a line").expect("read");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    assert_eq!(event()["event"], "sent");
    assert!(
        !env.record_path("bin").exists(),
        "nothing stored before the code"
    );
    let mail = smtp.wait_for_messages(2, Duration::from_secs(20));
    let code = mail[1].code().expect("a code in the mail");
    env.add_secret(&code);
    writeln!(stdin, "{code}").expect("write");
    let enrolled = event();
    assert_eq!(enrolled["event"], "enrolled");
    assert_eq!(enrolled["email"], "b•••@example.test");
    assert_eq!(
        enrolled["emergency_codes"].as_array().expect("codes").len(),
        10
    );
    drop(stdin);
    assert!(child.wait().expect("wait").success());
    let rows = json_ok(&env.cli(&["status", "bin", "--json"]));
    assert_eq!(rows[0]["methods"][0], "email");
}
