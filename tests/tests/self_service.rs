//! Self-service (docs/self-service.md) through the real parts: `twostep serve-self` started by
//! the test, by pid; `twostep self` run as real non-root accounts (runuser); passwords checked
//! by pam_unix; codes made by oathtool; logins afterwards through the real libpam.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use twostep_tests::TestEnv;
use twostep_tests::oath;
use twostep_tests::self_service::SelfService;
use twostep_tests::smtp::SmtpServer;
use twostep_tests::users::TestUser;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn secret_of(begun: &Value) -> String {
    begun["secret"].as_str().expect("secret").replace(' ', "")
}

fn lines(items: &[&str]) -> String {
    items.iter().map(|s| format!("{s}\n")).collect()
}

/// Enables TOTP for `user` through the service; returns the key and the emergency codes.
fn enable(service: &SelfService, user: &TestUser) -> (String, Vec<String>) {
    let begun = service.ok_as(
        user.name(),
        &["enable", "--stdin"],
        Some(&lines(&[user.password()])),
    );
    let secret = secret_of(&begun);
    let id = begun["id"].as_str().expect("id").to_string();
    let code = oath::totp(&secret, now());
    let done = service.ok_as(
        user.name(),
        &["enable", "--confirm", &id, "--stdin"],
        Some(&lines(&[&code])),
    );
    assert_eq!(done["state"], "enabled", "{done}");
    let codes = done["emergency_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
    (secret, codes)
}

fn record_bytes(env: &TestEnv, user: &str) -> Option<Vec<u8>> {
    std::fs::read(env.record_path(user)).ok()
}

#[test]
fn self_enable_with_password_and_app_code_then_log_in_through_libpam() {
    let env = TestEnv::new("self-enable");
    let service = SelfService::start(&env);
    let alice = TestUser::create("selfen");

    let status = service.ok_as(alice.name(), &["status"], None);
    assert_eq!(status["state"], "not-enrolled", "{status}");
    assert_eq!(status["user"], alice.name());
    assert_eq!(status["allowed"]["enable"], true);

    // The QR code carries the same key as the text (decoded by zbarimg, not the product).
    let begun = service.ok_as(
        alice.name(),
        &["enable", "--stdin"],
        Some(&lines(&[alice.password()])),
    );
    let secret = secret_of(&begun);
    let uri = begun["uri"].as_str().expect("uri");
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(&format!("secret={secret}")),
        "{uri}"
    );
    assert!(begun["qr_svg"].as_str().is_some_and(|s| s.contains("<svg")));
    assert!(
        record_bytes(&env, alice.name()).is_none(),
        "nothing is enrolled before the code"
    );
    env.login(alice.name(), &[], now()).assert_no_prompt();

    let id = begun["id"].as_str().expect("id");
    let code = oath::totp(&secret, now());
    let done = service.ok_as(
        alice.name(),
        &["enable", "--confirm", id, "--stdin"],
        Some(&lines(&[&code])),
    );
    let codes = done["emergency_codes"].as_array().expect("codes");
    assert_eq!(codes.len(), 10, "{done}");
    let meta = std::fs::metadata(env.record_path(alice.name())).expect("record");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    // The id worked once.
    assert_eq!(
        service.kind_as(
            alice.name(),
            &["enable", "--confirm", id, "--stdin"],
            Some(&lines(&[&code]))
        ),
        "already-enrolled"
    );

    // A real login now needs the next code; the confirming code is spent.
    let later = now() + 60;
    env.login(alice.name(), &[&oath::totp(&secret, later)], later)
        .assert_result("PAM_SUCCESS");
    env.login(alice.name(), &["000000"], later + 30)
        .assert_refused();

    let status = service.ok_as(alice.name(), &["status"], None);
    assert_eq!(
        (status["state"].as_str(), status["method"].as_str()),
        (Some("enabled"), Some("totp"))
    );
    assert_eq!(status["emergency_codes_left"], 10);
    let history = service.ok_as(alice.name(), &["history"], None);
    assert_eq!(history["last_login"]["service"], env.service(), "{history}");
    assert_eq!(
        history["failures"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );

    // The human output says what to do next.
    let out = service.run_as(alice.name(), &["status"], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Two-step login is on for"));

    // The socket and its directory: root's, the socket 0666 in a 0755 directory.
    let dir = std::fs::symlink_metadata(service.socket_dir()).expect("dir");
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o755));
    let sock = std::fs::symlink_metadata(service.socket()).expect("socket");
    assert!(sock.file_type().is_socket());
    assert_eq!((sock.uid(), sock.mode() & 0o7777), (0, 0o666));

    let log = service.log();
    assert!(
        log.contains(&format!(
            "self-service enable-confirm user={} result=ok",
            alice.name()
        )),
        "{log}"
    );
    for secret_text in [secret.as_str(), alice.password(), code.as_str()] {
        assert!(
            !log.contains(secret_text),
            "the service log holds a secret:\n{log}"
        );
    }
    let mut all: Vec<&str> = codes.iter().filter_map(Value::as_str).collect();
    all.extend([secret.as_str(), alice.password(), code.as_str()]);
    env.assert_logs_clean(&all);
}

#[test]
fn wrong_password_or_wrong_code_changes_nothing() {
    let env = TestEnv::builder("self-wrong")
        .config("[lockout]\nmax_failures = 5")
        .build();
    let service = SelfService::start(&env);
    let bob = TestUser::create("selfwr");

    assert_eq!(
        service.kind_as(
            bob.name(),
            &["enable", "--stdin"],
            Some("not-the-password\n")
        ),
        "wrong-password"
    );
    assert!(
        !env.state_dir().join("enrolling").exists()
            || std::fs::read_dir(env.state_dir().join("enrolling"))
                .expect("dir")
                .next()
                .is_none()
    );
    let begun = service.ok_as(
        bob.name(),
        &["enable", "--stdin"],
        Some(&lines(&[bob.password()])),
    );
    let id = begun["id"].as_str().expect("id");
    let wrong = oath::wrong_code(&secret_of(&begun), now());
    assert_eq!(
        service.kind_as(
            bob.name(),
            &["enable", "--confirm", id, "--stdin"],
            Some(&lines(&[&wrong]))
        ),
        "wrong-code"
    );
    assert!(
        record_bytes(&env, bob.name()).is_none(),
        "a wrong code enrolled nothing"
    );
    assert_eq!(
        service.kind_as(
            bob.name(),
            &[
                "enable",
                "--confirm",
                "0123456789abcdef0123456789abcdef",
                "--stdin"
            ],
            Some("123456\n")
        ),
        "expired"
    );

    // Enrolled: a change with the right password and a wrong code, or the wrong password and
    // a right code, leaves the enrollment as it was; wrong codes count toward the lockout.
    let code = oath::totp(&secret_of(&begun), now());
    service.ok_as(
        bob.name(),
        &["enable", "--confirm", id, "--stdin"],
        Some(&lines(&[&code])),
    );
    let secret = secret_of(&begun);
    let before = record_bytes(&env, bob.name()).expect("record");
    let wrong = oath::wrong_code(&secret, now());
    for _ in 0..2 {
        assert_eq!(
            service.kind_as(
                bob.name(),
                &["codes", "--stdin"],
                Some(&lines(&[bob.password(), &wrong]))
            ),
            "wrong-code"
        );
    }
    assert_eq!(
        service.kind_as(
            bob.name(),
            &["codes", "--stdin"],
            Some(&lines(&["nope", &oath::totp(&secret, now())]))
        ),
        "wrong-password"
    );
    assert_eq!(
        record_bytes(&env, bob.name()).expect("record"),
        before,
        "the record is unchanged"
    );
    let history = service.ok_as(bob.name(), &["history"], None);
    assert_eq!(
        history["failures"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    // Up to the lockout (max_failures = 5 here): then even the right code is refused.
    for _ in 0..3 {
        service.kind_as(
            bob.name(),
            &["codes", "--stdin"],
            Some(&lines(&[bob.password(), &wrong])),
        );
    }
    assert_eq!(
        service.kind_as(
            bob.name(),
            &["add-device", "--stdin"],
            Some(&lines(&[bob.password(), &oath::totp(&secret, now() + 30)]))
        ),
        "locked"
    );
    assert_eq!(record_bytes(&env, bob.name()).expect("record"), before);
}

#[test]
fn every_change_needs_a_current_code_and_disable_honours_enforcement() {
    let env = TestEnv::new("self-changes");
    let service = SelfService::start(&env);
    let carol = TestUser::create("selfch");
    let (secret, codes) = enable(&service, &carol);
    let pw = carol.password();

    // No code at all: refused, for every change.
    for args in [
        &["codes", "--stdin"][..],
        &["add-device", "--stdin"],
        &["disable", "--stdin"],
    ] {
        assert_eq!(
            service.kind_as(carol.name(), args, Some(&lines(&[pw, ""]))),
            "wrong-code",
            "{args:?}"
        );
        assert_eq!(
            service.kind_as(carol.name(), args, Some(&lines(&[pw]))),
            "invalid",
            "{args:?}"
        );
    }
    assert!(record_bytes(&env, carol.name()).is_some());

    // An emergency code is a current code (and is used up); so is the next app code.
    let shown = service.ok_as(
        carol.name(),
        &["add-device", "--stdin"],
        Some(&lines(&[pw, &codes[0]])),
    );
    assert_eq!(secret_of(&shown), secret, "add-device shows the same key");
    let status = service.ok_as(carol.name(), &["status"], None);
    assert_eq!(status["emergency_codes_left"], 9);
    assert_eq!(
        service.kind_as(
            carol.name(),
            &["add-device", "--stdin"],
            Some(&lines(&[pw, &codes[0]]))
        ),
        "wrong-code",
        "an emergency code works once"
    );
    let fresh = service.ok_as(
        carol.name(),
        &["codes", "--stdin"],
        Some(&lines(&[pw, &oath::totp(&secret, now() + 30)])),
    );
    let fresh: Vec<String> = fresh["emergency_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(fresh.len(), 10);
    assert_eq!(
        service.kind_as(
            carol.name(),
            &["disable", "--stdin"],
            Some(&lines(&[pw, &codes[1]]))
        ),
        "wrong-code",
        "the old emergency codes stopped working"
    );

    // Enforced by the policy: disable is refused; with the policy relaxed it archives.
    env.write_config(
        &env.standard_config(&format!("[policy]\nenforce_users = [\"{}\"]", carol.name())),
    );
    let status = service.ok_as(carol.name(), &["status"], None);
    assert_eq!(status["enforced"], true);
    assert_eq!(
        service.kind_as(
            carol.name(),
            &["disable", "--stdin"],
            Some(&lines(&[pw, &fresh[0]]))
        ),
        "refused"
    );
    env.write_config(&env.standard_config(""));
    let off = service.ok_as(
        carol.name(),
        &["disable", "--stdin"],
        Some(&lines(&[pw, &fresh[0]])),
    );
    assert_eq!(off["state"], "not-enrolled");
    assert!(record_bytes(&env, carol.name()).is_none());
    let archived = std::fs::read_dir(env.state_dir().join("archive"))
        .expect("archive")
        .count();
    assert_eq!(archived, 1, "disable archives, like an admin's reset");
    env.login(carol.name(), &[], now()).assert_no_prompt();
    let out = env.cli(&["restore", carol.name()]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_user_can_never_read_or_change_another_user() {
    let env = TestEnv::new("self-others");
    let service = SelfService::start(&env);
    let (dave, erin) = (TestUser::create("selfa"), TestUser::create("selfb"));
    let (erin_secret, erin_codes) = enable(&service, &erin);
    let erin_before = record_bytes(&env, erin.name()).expect("record");
    // Erin begins an email-less re-enrollment id of her own? She is enrolled; instead Dave
    // learns an id of Erin's begun step: Frank's pending enable.
    let status = service.ok_as(dave.name(), &["status"], None);
    assert_eq!(status["user"], dave.name(), "status is the caller's");
    assert_eq!(status["state"], "not-enrolled");

    // Every request, with Erin named in every way a field could name her: refused unread.
    let code = oath::totp(&erin_secret, now());
    let pw = dave.password();
    let requests = [
        format!(r#"{{"op":"status","user":"{}"}}"#, erin.name()),
        format!(r#"{{"op":"history","user":"{}"}}"#, erin.name()),
        format!(
            r#"{{"op":"codes","password":"{pw}","code":"{}","user":"{}"}}"#,
            erin_codes[0],
            erin.name()
        ),
        format!(
            r#"{{"op":"add-device","password":"{pw}","code":"{code}","uid":{}}}"#,
            0
        ),
        format!(
            r#"{{"op":"disable","password":"{pw}","code":"{code}","name":"{}"}}"#,
            erin.name()
        ),
        format!(
            r#"{{"op":"email-begin","password":"{pw}","code":"{code}","address":"x@example.com","user":"{}"}}"#,
            erin.name()
        ),
        format!(
            r#"{{"op":"enable-begin","password":"{pw}","method":"totp","path":"{}"}}"#,
            env.record_path(erin.name()).display()
        ),
        format!(
            r#"{{"op":"send-code","password":"{pw}","user":"{}"}}"#,
            erin.name()
        ),
    ];
    for request in &requests {
        let answer = service.raw_as(dave.name(), format!("{request}\n").as_bytes());
        assert!(
            answer.contains(r#""kind":"invalid""#),
            "{request} -> {answer}"
        );
    }
    // Dave's own proof with Erin's codes is checked against Dave's (absent) enrollment.
    assert_eq!(
        service.kind_as(
            dave.name(),
            &["codes", "--stdin"],
            Some(&lines(&[pw, &erin_codes[0]]))
        ),
        "not-enrolled"
    );
    // Erin's begun step: its id does nothing for Dave.
    let erin_begun = {
        let e2 = TestUser::create("selfc");
        let b = service.ok_as(
            e2.name(),
            &["enable", "--stdin"],
            Some(&lines(&[e2.password()])),
        );
        let id = b["id"].as_str().expect("id").to_string();
        let kind = service.kind_as(
            dave.name(),
            &["enable", "--confirm", &id, "--stdin"],
            Some(&lines(&[&oath::totp(&secret_of(&b), now())])),
        );
        assert_eq!(kind, "expired", "another user's id is unknown to Dave");
        assert!(record_bytes(&env, dave.name()).is_none());
        id
    };
    assert!(!erin_begun.is_empty());
    assert_eq!(
        record_bytes(&env, erin.name()).expect("record"),
        erin_before,
        "Erin's record is untouched"
    );
    let status = service.ok_as(erin.name(), &["status"], None);
    assert_eq!(status["emergency_codes_left"], 10);
}

#[test]
fn bad_input_slow_clients_and_floods_are_bounded() {
    let env = TestEnv::new("self-flood");
    let service = SelfService::start(&env);
    let (fay, gus) = (TestUser::create("selff"), TestUser::create("selfg"));

    for (request, kind) in [
        (vec![b'{'; 5000], "invalid"),
        (b"\xff\xfe{\"op\":\"status\"}\n".to_vec(), "invalid"),
        (b"{\"op\":\"status\"}\0\n".to_vec(), "invalid"),
        (b"{\"op\":\"status\"".to_vec(), "invalid"),
        (b"not json\n".to_vec(), "invalid"),
    ] {
        let answer = service.raw_as(fay.name(), &request);
        assert!(
            answer.contains(&format!("\"kind\":\"{kind}\"")),
            "{:?} -> {answer}",
            String::from_utf8_lossy(&request[..request.len().min(40)])
        );
    }
    // The service is still there.
    service.ok_as(fay.name(), &["status"], None);

    // Fay holds 10 idle connections: 4 are served (and time out after 5 s), 6 refused at once;
    // Gus is served meanwhile; Fay's own next request is refused until hers time out.
    let (busy, mut holder) = service.hold_idle_as(fay.name(), 10, 8.0 as u64);
    assert_eq!(busy, 6, "connections beyond 4 per user are refused at once");
    service.ok_as(gus.name(), &["status"], None);
    assert_eq!(service.kind_as(fay.name(), &["status"], None), "limited");
    std::thread::sleep(Duration::from_secs(6));
    service.ok_as(fay.name(), &["status"], None);
    let _ = holder.kill();
    let _ = holder.wait();

    // 30 requests a minute per user; others unaffected.
    let mut limited = 0;
    for _ in 0..32 {
        let (ok, _) = service.json_as(gus.name(), &["status"], None);
        if !ok {
            limited += 1;
        }
    }
    assert!(
        limited >= 2,
        "the per-minute limit holds ({limited} refused)"
    );
    service.ok_as(fay.name(), &["status"], None);
}

#[test]
fn no_service_unknown_uids_and_unsafe_socket_places_fail_clearly() {
    let env = TestEnv::new("self-missing");
    let user = TestUser::create("selfm");
    // No service: a clear message naming the socket unit.
    let out = std::process::Command::new("runuser")
        .args(["-u", user.name(), "--"])
        .arg(twostep_tests::paths::cli())
        .args(["self", "--socket", "/tmp/twostep-no-such.sock", "status"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("twostep-self.socket"),
        "{out:?}"
    );

    let service = SelfService::start(&env);
    // A uid without an account is refused.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "54321", "--regid", "54321", "--clear-groups"])
        .arg(twostep_tests::paths::cli())
        .arg("self")
        .arg("--socket")
        .arg(service.socket())
        .args(["status", "--json"])
        .output()
        .expect("run setpriv");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("no account"),
        "{out:?}"
    );

    // The service refuses to bind in a directory others can write, or over a non-socket.
    let unsafe_dir = env.dir().join("open");
    std::fs::create_dir(&unsafe_dir).expect("dir");
    std::fs::set_permissions(&unsafe_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let plain = env.dir().join("plain");
    std::fs::write(&plain, "x").expect("write");
    for socket in [
        unsafe_dir.join("s.sock"),
        plain.clone(),
        service.socket().to_path_buf(),
    ] {
        let out = env.cli(&["serve-self", "--socket", socket.to_str().expect("utf-8")]);
        assert!(!out.status.success(), "bound {}: {out:?}", socket.display());
    }
    assert_eq!(
        std::fs::read(&plain).expect("plain"),
        b"x",
        "nothing replaced"
    );
}

#[test]
fn the_admin_can_restrict_or_turn_off_self_service() {
    let env = TestEnv::new("self-admin");
    env.write_config(
        &env.standard_config("[self_service]\nallow_codes = false\nallow_disable = false"),
    );
    let service = SelfService::start(&env);
    let hal = TestUser::create("selfh");
    let (_, codes) = enable(&service, &hal);
    let status = service.ok_as(hal.name(), &["status"], None);
    assert_eq!(
        (
            status["allowed"]["codes"].as_bool(),
            status["allowed"]["add_device"].as_bool()
        ),
        (Some(false), Some(true))
    );
    for args in [&["codes", "--stdin"][..], &["disable", "--stdin"]] {
        assert_eq!(
            service.kind_as(hal.name(), args, Some(&lines(&[hal.password(), &codes[0]]))),
            "refused"
        );
    }
    assert_eq!(
        service.ok_as(hal.name(), &["status"], None)["emergency_codes_left"],
        10,
        "a refusal uses no code"
    );
    env.write_config(&env.standard_config("[self_service]\nenabled = false"));
    assert_eq!(service.kind_as(hal.name(), &["status"], None), "refused");

    // Concurrent admin change: an enrollment begun by the user, then the admin enrolls; the
    // user's confirmation changes nothing.
    env.write_config(&env.standard_config(""));
    let ivy = TestUser::create("selfi");
    let begun = service.ok_as(
        ivy.name(),
        &["enable", "--stdin"],
        Some(&lines(&[ivy.password()])),
    );
    env.enroll(ivy.name(), "JBSWY3DPEHPK3PXP");
    let admins = record_bytes(&env, ivy.name()).expect("record");
    let code = oath::totp(&secret_of(&begun), now());
    assert_eq!(
        service.kind_as(
            ivy.name(),
            &[
                "enable",
                "--confirm",
                begun["id"].as_str().expect("id"),
                "--stdin"
            ],
            Some(&lines(&[&code]))
        ),
        "already-enrolled"
    );
    assert_eq!(record_bytes(&env, ivy.name()).expect("record"), admins);
}

#[test]
fn emailed_codes_enable_change_the_address_and_prove_changes() {
    let env = TestEnv::new("self-email");
    let smtp = SmtpServer::start(&env.dir().join("smtp"));
    env.write_config(&env.standard_config(&format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsecurity = \"none\"\nfrom = \"twostep@example.test\"\ntimeout_secs = 2\nhelper = \"{}\"",
        smtp.port(),
        twostep_tests::paths::cli().display()
    )));
    let service = SelfService::start(&env);
    let jo = TestUser::create("selfj");
    let pw = jo.password();

    let begun = service.ok_as(
        jo.name(),
        &[
            "enable",
            "--method",
            "email",
            "--email",
            "jo@example.test",
            "--stdin",
        ],
        Some(&lines(&[pw])),
    );
    let mails = smtp.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(mails[0].to, "jo@example.test");
    let mailed = mails[0].code().expect("a code in the mail");
    assert_eq!(
        service.kind_as(
            jo.name(),
            &[
                "enable",
                "--confirm",
                begun["id"].as_str().expect("id"),
                "--stdin"
            ],
            Some("99999999\n")
        ),
        "wrong-code"
    );
    let done = service.ok_as(
        jo.name(),
        &[
            "enable",
            "--confirm",
            begun["id"].as_str().expect("id"),
            "--stdin",
        ],
        Some(&lines(&[&mailed])),
    );
    assert_eq!(done["method"], "email");

    // A new address: password, a current code (mailed by send-code), then the code mailed to
    // the new address.
    let sent = service.ok_as(jo.name(), &["send-code", "--stdin"], Some(&lines(&[pw])));
    assert!(
        sent["sent_to"]
            .as_str()
            .is_some_and(|s| s.ends_with("@example.test"))
    );
    let login_code = smtp.wait_for_messages(2, Duration::from_secs(10))[1]
        .code()
        .expect("code");
    let change = service.ok_as(
        jo.name(),
        &["email", "new@example.test", "--stdin"],
        Some(&lines(&[pw, &login_code])),
    );
    let mails = smtp.wait_for_messages(3, Duration::from_secs(10));
    assert_eq!(mails[2].to, "new@example.test");
    let confirm = mails[2].code().expect("code");
    let saved = service.ok_as(
        jo.name(),
        &[
            "email",
            "--confirm",
            change["id"].as_str().expect("id"),
            "--stdin",
        ],
        Some(&lines(&[&confirm])),
    );
    assert!(
        saved["email"]
            .as_str()
            .is_some_and(|s| s.ends_with("@example.test"))
    );
    let record = String::from_utf8(record_bytes(&env, jo.name()).expect("record")).expect("utf-8");
    assert!(record.contains("new@example.test"), "{record}");
    // Without a current code, the address cannot move.
    assert_eq!(
        service.kind_as(
            jo.name(),
            &["email", "evil@example.test", "--stdin"],
            Some(&lines(&[pw, "12345678"]))
        ),
        "wrong-code"
    );
    assert_eq!(
        smtp.messages().len(),
        3,
        "no mail went to the unproven address"
    );
}
