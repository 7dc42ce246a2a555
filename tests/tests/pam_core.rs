//! pam_twostep through the real libpam: codes, replay, skew, emergency codes, lockout,
//! unenrolled users, failing closed and logging. Expected codes come only from oathtool.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use twostep_tests::oath::{self, oathtool_totp, totp};
use twostep_tests::{Login, TestEnv, TestEnvBuilder};

/// An existing system account, in case the CLI checks that users exist.
const USER: &str = "daemon";
const OTHER_USER: &str = "nobody";
/// 20 random bytes.
const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
/// 15 seconds into a 30-second step.
const T: i64 = 1_800_000_015;
const STEP: i64 = 30;
const PROMPT: &str = "Verification code: ";
const LOCKED: &str = "Too many failed attempts, try again later.";

fn enrolled(builder: TestEnvBuilder) -> (TestEnv, Vec<String>) {
    let env = builder.build();
    let codes = env.enroll(USER, SECRET);
    (env, codes)
}

/// A 6-digit code that is not valid for SECRET within two steps of `t`.
fn wrong_code(t: i64) -> String {
    oath::wrong_code(SECRET, t)
}

fn login(env: &TestEnv, answer: &str, time: i64) -> Login {
    env.login(USER, &[answer], time)
}

/// Logs in with the right code for `time` and expects success.
fn login_ok(env: &TestEnv, time: i64) {
    let login = login(env, &totp(SECRET, time), time);
    login
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(PROMPT);
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

// --- codes ---------------------------------------------------------------------------------

#[test]
fn right_code_succeeds() {
    let (env, codes) = enrolled(TestEnv::builder("right_code"));
    assert_eq!(codes.len(), 10, "default emergency.count is 10: {codes:?}");
    let code = totp(SECRET, T);
    let login = env
        .attempt(USER)
        .answer(&code)
        .rhost("192.0.2.7")
        .time(T)
        .run();
    login
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(PROMPT);
    login.assert_logged(&[USER, env.service()]);
    env.assert_logs_clean(&[SECRET, &code]);
}

#[test]
fn store_is_root_only() {
    let (env, _) = enrolled(TestEnv::builder("store_modes"));
    login_ok(&env, T);
    let record = env.record_path(USER);
    let meta = std::fs::symlink_metadata(&record).expect("record exists after enroll");
    assert!(meta.is_file(), "record is a regular file");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o600),
        "record owner and mode"
    );
    for dir in ["users", "locks"].map(|d| env.state_dir().join(d)) {
        if dir.exists() {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
    }
    assert!(env.state_dir().join("users").exists());
    env.assert_logs_clean(&[SECRET]);
}

#[test]
fn wrong_code_fails() {
    let (env, _) = enrolled(TestEnv::builder("wrong_code"));
    let wrong = wrong_code(T);
    let login = login(&env, &wrong, T);
    login
        .assert_result("PAM_AUTH_ERR")
        .assert_prompted_once(PROMPT);
    login.assert_logged(&[USER, env.service()]);
    env.assert_logs_clean(&[SECRET, &wrong]);
}

#[test]
fn code_with_spaces_is_accepted() {
    let (env, _) = enrolled(TestEnv::builder("spaces"));
    let code = totp(SECRET, T);
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    login(&env, &spaced, T).assert_result("PAM_SUCCESS");
    env.assert_logs_clean(&[SECRET, &code, &spaced]);
}

#[test]
fn replayed_and_older_steps_are_refused() {
    let (env, _) = enrolled(TestEnv::builder("replay"));
    let code = totp(SECRET, T);
    login(&env, &code, T).assert_result("PAM_SUCCESS");

    let replay = login(&env, &code, T + 5);
    replay.assert_result("PAM_AUTH_ERR");
    replay.assert_logged(&[USER, env.service()]);

    let older = totp(SECRET, T - STEP);
    login(&env, &older, T + 6).assert_result("PAM_AUTH_ERR");

    let next = totp(SECRET, T + STEP);
    login(&env, &next, T + STEP).assert_result("PAM_SUCCESS");
    env.assert_logs_clean(&[SECRET, &code, &older, &next]);
}

#[test]
fn skew_accepts_one_step_either_way_but_not_two() {
    let (env, _) = enrolled(TestEnv::builder("skew"));
    let code = |k: i64| totp(SECRET, T + k * STEP);
    let codes: Vec<String> = (-2..=2).map(code).collect();
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 5, "test premise: distinct codes {codes:?}");

    login(&env, &code(-2), T).assert_result("PAM_AUTH_ERR");
    login(&env, &code(2), T).assert_result("PAM_AUTH_ERR");
    login(&env, &code(-1), T).assert_result("PAM_SUCCESS");
    login(&env, &code(1), T).assert_result("PAM_SUCCESS");
    let mut secrets: Vec<&str> = codes.iter().map(String::as_str).collect();
    secrets.push(SECRET);
    env.assert_logs_clean(&secrets);
}

#[test]
fn skew_follows_config() {
    let (env, _) = enrolled(TestEnv::builder("skew0").config("[totp]\nskew = 0"));
    let previous = totp(SECRET, T - STEP);
    login(&env, &previous, T).assert_result("PAM_AUTH_ERR");
    login_ok(&env, T);
    env.assert_logs_clean(&[SECRET, &previous]);
}

#[test]
fn malformed_answers_are_refused() {
    let (env, _) = enrolled(TestEnv::builder("malformed"));
    let right = totp(SECRET, T);
    let long = "1".repeat(600);
    for answer in [
        &b""[..],
        b"\xff\xfe123456",
        format!("{right}x").as_bytes(),
        long.as_bytes(),
    ] {
        let login = env.login_raw(USER, None, &[answer], T);
        login.assert_refused().assert_prompted_once(PROMPT);
    }
    login_ok(&env, T);
    env.assert_logs_clean(&[SECRET]);
}

// --- emergency codes -----------------------------------------------------------------------

#[test]
fn emergency_codes_work_once_in_any_case_with_or_without_dash() {
    let (env, codes) = enrolled(TestEnv::builder("emergency"));
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        codes.len(),
        "emergency codes are distinct: {codes:?}"
    );
    assert!(codes.len() >= 4, "{codes:?}");

    let first = login(&env, &codes[0], T);
    first
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(PROMPT);
    first.assert_logged(&[USER, env.service()]);
    login(&env, &codes[0], T + 1).assert_result("PAM_AUTH_ERR");

    let variants = [
        codes[1].replace('-', ""),
        codes[2].to_uppercase(),
        codes[3].to_lowercase(),
    ];
    for (i, variant) in variants.iter().enumerate() {
        login(&env, variant, T + 2 + i as i64).assert_result("PAM_SUCCESS");
    }
    login(&env, &codes[1], T + 10).assert_result("PAM_AUTH_ERR");
    login(&env, &codes[2].to_lowercase(), T + 11).assert_result("PAM_AUTH_ERR");
    env.assert_logs_clean(&[SECRET]);
}

#[test]
fn emergency_count_follows_config() {
    let (env, codes) =
        enrolled(TestEnv::builder("emergency_count").config("[emergency]\ncount = 3"));
    assert_eq!(codes.len(), 3, "{codes:?}");
    env.assert_logs_clean(&[SECRET]);
}

// --- lockout -------------------------------------------------------------------------------

#[test]
fn lockout_after_max_failures_then_expires() {
    // The defaults (10 per host) are tested in lockout_defaults.rs.
    let (env, _) = enrolled(TestEnv::builder("lockout").config("[lockout]\nmax_failures = 5\n"));
    let wrong = wrong_code(T);
    for i in 0..5 {
        let login = login(&env, &wrong, T + i);
        login.assert_result("PAM_AUTH_ERR");
        if i < 4 {
            assert!(
                !login.has_message("ERROR_MSG", LOCKED),
                "locked too early\n{login}"
            );
        }
    }
    // Locked: even the right code fails, with the message.
    let locked = login(&env, &totp(SECRET, T + 10), T + 10);
    locked.assert_result("PAM_AUTH_ERR");
    assert!(locked.has_message("ERROR_MSG", LOCKED), "{locked}");
    locked.assert_logged(&[USER, env.service()]);

    let still = login(&env, &totp(SECRET, T + 800), T + 800);
    still.assert_result("PAM_AUTH_ERR");
    assert!(still.has_message("ERROR_MSG", LOCKED), "{still}");

    // duration_secs (900) after the fifth failure, the right code works again.
    login_ok(&env, T + 4 + 900 + 60);
    env.assert_logs_clean(&[SECRET, &wrong]);
}

#[test]
fn successes_never_count_as_failures() {
    let (env, _) = enrolled(TestEnv::builder("successes"));
    let wrong = wrong_code(T);
    for i in 0..4 {
        login(&env, &wrong, T + i).assert_result("PAM_AUTH_ERR");
    }
    for k in 1..=3 {
        let time = T + k * STEP;
        let login = login(&env, &totp(SECRET, time), time);
        login.assert_result("PAM_SUCCESS");
        assert!(!login.has_message("ERROR_MSG", LOCKED), "{login}");
    }
    env.assert_logs_clean(&[SECRET, &wrong]);
}

#[test]
fn failures_outside_the_window_do_not_lock() {
    let config = "[lockout]\nmax_failures = 3\nwindow_secs = 60\nduration_secs = 600";
    let (env, _) = enrolled(TestEnv::builder("window").config(config));
    let wrong = wrong_code(T);
    for time in [T, T + 1, T + 200, T + 201] {
        login(&env, &wrong_code(time), time).assert_result("PAM_AUTH_ERR");
    }
    login_ok(&env, T + 205);
    env.assert_logs_clean(&[SECRET, &wrong, &wrong_code(T + 200)]);
}

#[test]
fn lockout_settings_come_from_config() {
    let config = "[lockout]\nmax_failures = 3\nwindow_secs = 60\nduration_secs = 600";
    let (env, _) = enrolled(TestEnv::builder("lockout_config").config(config));
    let wrong = wrong_code(T);
    for i in 0..3 {
        login(&env, &wrong, T + i).assert_result("PAM_AUTH_ERR");
    }
    let locked = login(&env, &totp(SECRET, T + 5), T + 5);
    locked.assert_result("PAM_AUTH_ERR");
    assert!(locked.has_message("ERROR_MSG", LOCKED), "{locked}");
    login_ok(&env, T + 2 + 600 + 60);
    env.assert_logs_clean(&[SECRET, &wrong]);
}

// --- unenrolled users ----------------------------------------------------------------------

#[test]
fn unenrolled_allow_ignores_the_module() {
    // The module alone: libpam turns an all-PAM_IGNORE stack into PAM_PERM_DENIED.
    let env = TestEnv::new("unenrolled_alone");
    let login = env.attempt(USER).time(T).run();
    login.assert_result("PAM_PERM_DENIED").assert_no_prompt();

    // With another user enrolled, and pam_permit after the module: the stack succeeds.
    let stack = [
        "auth required {module} config={config}",
        "auth required pam_permit.so",
    ];
    let env = TestEnv::builder("unenrolled_permit").stack(&stack).build();
    env.enroll(OTHER_USER, SECRET);
    let login = env.attempt(USER).time(T).run();
    login.assert_result("PAM_SUCCESS").assert_no_prompt();
    env.assert_logs_clean(&[SECRET]);
}

#[test]
fn unenrolled_deny_refuses_without_prompt() {
    let env = TestEnv::builder("unenrolled_deny")
        .config("unenrolled = \"deny\"")
        .build();
    let login = env.attempt(USER).time(T).run();
    login.assert_result("PAM_AUTH_ERR").assert_no_prompt();
    env.assert_logs_clean(&[]);
}

// --- failing closed ------------------------------------------------------------------------

/// Logs in with the right code after the record was tampered with: the module must refuse
/// without prompting and leave `kept` (the file behind the record) exactly as it was.
fn assert_fails_closed(env: &TestEnv, kept: &Path) {
    let before = std::fs::read(kept).expect("read tampered file");
    let meta = std::fs::metadata(kept).expect("stat tampered file");
    let code = totp(SECRET, T);
    let login = login(env, &code, T);
    login.assert_refused().assert_no_prompt();
    assert_eq!(
        std::fs::read(kept).expect("reread"),
        before,
        "{} changed",
        kept.display()
    );
    let after = std::fs::metadata(kept).expect("restat");
    assert_eq!(
        (after.mode(), after.uid(), after.nlink()),
        (meta.mode(), meta.uid(), meta.nlink()),
        "{} metadata changed",
        kept.display()
    );
    env.assert_logs_clean(&[SECRET, &code]);
}

#[test]
fn symlinked_record_fails_closed() {
    let (env, _) = enrolled(TestEnv::builder("symlink"));
    let record = env.record_path(USER);
    let real = env.dir().join("real-record.toml");
    std::fs::rename(&record, &real).expect("move record");
    std::os::unix::fs::symlink(&real, &record).expect("symlink record");
    assert_fails_closed(&env, &real);
    assert!(
        std::fs::symlink_metadata(&record)
            .expect("lstat")
            .is_symlink()
    );
}

#[test]
fn world_readable_record_fails_closed() {
    let (env, _) = enrolled(TestEnv::builder("world_readable"));
    let record = env.record_path(USER);
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_fails_closed(&env, &record);
}

#[test]
fn hard_linked_record_fails_closed() {
    let (env, _) = enrolled(TestEnv::builder("hard_link"));
    let record = env.record_path(USER);
    std::fs::hard_link(&record, env.dir().join("second-name.toml")).expect("link");
    assert_fails_closed(&env, &record);
}

#[test]
fn record_not_owned_by_root_fails_closed() {
    let (env, _) = enrolled(TestEnv::builder("not_root_owned"));
    let record = env.record_path(USER);
    std::os::unix::fs::chown(&record, Some(1), Some(1)).expect("chown");
    assert_fails_closed(&env, &record);
}

#[test]
fn corrupt_record_fails_closed() {
    let (env, _) = enrolled(TestEnv::builder("corrupt"));
    let record = env.record_path(USER);
    std::fs::write(&record, "secret = [unterminated\n\u{0}garbage").expect("corrupt record");
    assert_fails_closed(&env, &record);
}

#[test]
fn config_syntax_error_fails_closed_and_names_file_and_line() {
    let (env, _) = enrolled(TestEnv::builder("bad_config"));
    env.write_config(
        "state_dir = \"{state_dir}\"\nissuer = \"twostep-tests\"\nunenrolled = \"allow\n\
         [log]\nsocket = \"{log_socket}\"\n",
    );
    let config = env.config_path().display().to_string();
    for user in [USER, OTHER_USER] {
        let login = env.login(user, &[&totp(SECRET, T)], T);
        login.assert_refused().assert_no_prompt();
        let line = login.assert_logged(&[&config]);
        assert!(
            line.contains(&format!("{config}:3")) || line.contains("line 3"),
            "the log line should name line 3: {line}"
        );
    }
    env.assert_logs_clean(&[SECRET]);
}

// --- algorithms and RFC 6238 ---------------------------------------------------------------

/// RFC 6238 appendix B: (time, SHA1, SHA256, SHA512) 8-digit codes for its test seeds.
const RFC6238: [(i64, &str, &str, &str); 6] = [
    (59, "94287082", "46119246", "90693936"),
    (1_111_111_109, "07081804", "68084774", "25091201"),
    (1_111_111_111, "14050471", "67062674", "99943326"),
    (1_234_567_890, "89005924", "91819424", "93441116"),
    (2_000_000_000, "69279037", "90698825", "38618901"),
    (20_000_000_000, "65353130", "77737706", "47863826"),
];

/// The RFC's seeds ("1234567890" repeated to 20, 32 and 64 bytes), base32 without padding.
const SEED_SHA1: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const SEED_SHA256: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA";
const SEED_SHA512: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA";

fn rfc_vectors(algorithm: &str) -> (&'static str, Vec<(i64, &'static str)>) {
    let pick = |row: &(i64, &'static str, &'static str, &'static str)| match algorithm {
        "SHA1" => (row.0, row.1),
        "SHA256" => (row.0, row.2),
        _ => (row.0, row.3),
    };
    let seed = match algorithm {
        "SHA1" => SEED_SHA1,
        "SHA256" => SEED_SHA256,
        _ => SEED_SHA512,
    };
    (seed, RFC6238.iter().map(pick).collect())
}

#[test]
fn oathtool_agrees_with_rfc6238() {
    for algorithm in ["SHA1", "SHA256", "SHA512"] {
        let (seed, vectors) = rfc_vectors(algorithm);
        for (time, expected) in vectors {
            assert_eq!(
                oathtool_totp(seed, time, algorithm, 8, 30),
                expected,
                "{algorithm} at {time}"
            );
        }
    }
}

fn module_accepts_rfc6238(algorithm: &str) {
    let env = TestEnv::new(&format!("rfc6238_{algorithm}"));
    let (seed, vectors) = rfc_vectors(algorithm);
    env.enroll_with(USER, seed, &["--digits", "8", "--algorithm", algorithm]);
    for (time, code) in vectors {
        let login = login(&env, code, time);
        login
            .assert_result("PAM_SUCCESS")
            .assert_prompted_once(PROMPT);
    }
    env.assert_logs_clean(&[seed]);
}

#[test]
fn module_accepts_rfc6238_sha1() {
    module_accepts_rfc6238("SHA1");
}

#[test]
fn module_accepts_rfc6238_sha256() {
    module_accepts_rfc6238("SHA256");
}

#[test]
fn module_accepts_rfc6238_sha512() {
    module_accepts_rfc6238("SHA512");
}

#[test]
fn enroll_flags_choose_digits_and_algorithm() {
    let env = TestEnv::new("flags_sha512");
    env.enroll_with(USER, SECRET, &["--digits", "8", "--algorithm", "SHA512"]);
    let six = totp(SECRET, T);
    login(&env, &six, T).assert_result("PAM_AUTH_ERR");
    let code = oathtool_totp(SECRET, T, "SHA512", 8, 30);
    login(&env, &code, T).assert_result("PAM_SUCCESS");
    env.assert_logs_clean(&[SECRET, &six, &code]);
}

#[test]
fn config_totp_defaults_apply() {
    let config = "[totp]\nalgorithm = \"SHA256\"\ndigits = 8\nperiod = 60";
    let (env, _) = enrolled(TestEnv::builder("config_totp").config(config));
    let code = oathtool_totp(SECRET, T, "SHA256", 8, 60);
    login(&env, &code, T).assert_result("PAM_SUCCESS");
    env.assert_logs_clean(&[SECRET, &code]);
}
