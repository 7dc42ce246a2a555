//! Emailed codes through the real PAM stack, with a real SMTP server on 127.0.0.1 (aiosmtpd,
//! see `twostep_tests::smtp`): email-method logins, the `email` fallback of TOTP users, wrong,
//! expired and reused codes, lockout, resend limits, an SMTP server that is down or hangs, the
//! mail's contents, `twostep email-test` and the doctor's `email` check.
//!
//! The module runs the real `twostep` binary as its mail helper (`[email] helper`). Codes are
//! read from the received mail by `mail-code` through `pam-drive --answer-exec`, or from
//! [`SmtpServer::messages`]. Time is faked by pam-drive (`--time`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use twostep_tests::login::Login;
use twostep_tests::oath::totp;
use twostep_tests::smtp::{HangingSmtp, Mail, SmtpServer, closed_port};
use twostep_tests::{Attempt, TestEnv, paths, run};

const USER: &str = "daemon";
const OTHER_USER: &str = "bin";
const SECRET: &str = "6FAF77ZEHFOEBFXVD35S6DUQ5BH6TYYJ";
const ADDR: &str = "alice@example.com";
const OTHER_ADDR: &str = "bob@example.org";
const FROM: &str = "nas@example.com";
/// 2027-01-15 08:00:15 UTC: 45 seconds of margin before the minute changes.
const T: i64 = 1_800_000_015;
const T_TEXT: &str = "2027-01-15 08:00 UTC";
const RHOST: &str = "192.0.2.7";
const EMAIL_PROMPT: &str = "Code sent to a•••@example.com: ";
const OTHER_EMAIL_PROMPT: &str = "Code sent to b•••@example.org: ";
const TOTP_PROMPT: &str = "Verification code (or \"email\" to get a code by email): ";
const PLAIN_PROMPT: &str = "Verification code: ";
const SEND_FAILED: &str = "Could not send the code, try another method.";
/// Asked of an email-method user when the mail could not be sent.
const EMERGENCY_PROMPT: &str = "Emergency code: ";
const TOO_MANY: &str = "Too many codes were sent; try again later.";
const LOCKED: &str = "Too many failed attempts, try again later.";
/// How long a mail may take to show up after the login that sent it returned.
const MAIL_WAIT: Duration = Duration::from_secs(10);
/// `[email] timeout_secs` in these tests.
const SMTP_TIMEOUT_SECS: u64 = 2;
/// What a failed send may take on top of the SMTP timeout (helper start, PAM, slow CI).
const SLACK: Duration = Duration::from_secs(3);

/// The `[email]` section for a server on 127.0.0.1:`port`, using the freshly built CLI as the
/// module's mail helper.
fn email_section(port: u16) -> String {
    format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsecurity = \"none\"\n\
         from = \"{FROM}\"\ntimeout_secs = {SMTP_TIMEOUT_SECS}\nhelper = \"{}\"\n",
        paths::cli().display()
    )
}

/// An environment whose `[email]` points at `port`; `extra` is more TOML (tables other than
/// `[email]`).
fn env_for_port(name: &str, port: u16, extra: &str) -> TestEnv {
    let env = TestEnv::new(name);
    configure(&env, port, extra);
    env
}

fn configure(env: &TestEnv, port: u16, extra: &str) {
    env.write_config(&env.standard_config(&format!("{extra}\n{}", email_section(port))));
}

/// An environment with a running SMTP server in `<env dir>/smtp`.
fn env_with_server(name: &str, extra: &str) -> (TestEnv, SmtpServer) {
    let env = TestEnv::new(name);
    let smtp = SmtpServer::start(&env.dir().join("smtp"));
    configure(&env, smtp.port(), extra);
    (env, smtp)
}

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

/// Enrolls `user` with the email method and returns the emergency codes it printed; panics
/// unless the CLI succeeds.
fn enroll_email(env: &TestEnv, user: &str, address: &str) -> Vec<String> {
    let output = env.cli(&[
        "enroll", user, "--method", "email", "--email", address, "--yes",
    ]);
    assert!(
        output.status.success(),
        "enroll --method email: {}",
        describe(&output)
    );
    let codes = twostep_tests::env::emergency_codes(&text(&output.stdout));
    codes.iter().for_each(|code| env.add_secret(code));
    codes
}

/// Enrolls `user` for TOTP with `SECRET` and a recovery address.
fn enroll_totp_with_email(env: &TestEnv, user: &str, address: &str) {
    env.enroll_with(user, SECRET, &["--email", address]);
}

/// Runs an attempt and times it. Unlike [`Attempt::run`] it does not register the answers as
/// secrets: the keyword `email` is no secret, and log lines such as `email failure` would count
/// as leaks. Codes are registered from the received mail instead ([`check_logs`]).
fn run(attempt: Attempt<'_>) -> (Login, Duration) {
    attempt.run_timed()
}

fn login(attempt: Attempt<'_>) -> Login {
    run(attempt).0
}

/// Registers every code of every received mail as a secret and checks that no log line holds
/// one (nor any other secret the environment saw).
fn check_logs(env: &TestEnv, smtp: &SmtpServer) {
    for mail in smtp.messages() {
        if let Some(code) = mail.code() {
            env.add_secret(&code);
        }
    }
    env.assert_logs_clean(&[]);
}

/// The messages, asserting there are exactly `n` (after waiting for them).
fn exactly(smtp: &SmtpServer, n: usize, context: &str) -> Vec<Mail> {
    let mails = if n == 0 {
        smtp.messages()
    } else {
        smtp.wait_for_messages(n, MAIL_WAIT)
    };
    assert_eq!(
        mails.len(),
        n,
        "{context}: expected {n} messages, got {}:\n{}",
        mails.len(),
        mails
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    mails
}

fn code_of(mail: &Mail) -> String {
    mail.code()
        .unwrap_or_else(|| panic!("no line holding only the code in\n{mail}"))
}

fn assert_error_msg(login: &Login, text: &str) {
    assert!(
        login.has_message("ERROR_MSG", text),
        "expected ERROR_MSG {text:?}\n{login}"
    );
}

/// `[email]`-independent check of the harness itself: the SMTP server stores and parses what a
/// raw SMTP client sends (quoted-printable body), `mail-code` prints the newest code, and
/// `pam-drive --answer-exec` types it into a real PAM conversation.
#[test]
fn harness_stores_mail_and_answers_a_prompt_with_the_newest_code() {
    let env = TestEnv::new("email_harness");
    let smtp = SmtpServer::start(&env.dir().join("smtp"));
    env.enroll(USER, SECRET);
    let code = totp(SECRET, T);
    send_raw(smtp.port(), FROM, ADDR, "old", "    111111\r\n");
    let qp_body = format!("Hello =E2=80=A2 soft=\r\n break\r\n    {code}\r\n");
    send_raw(smtp.port(), FROM, ADDR, "new", &qp_body);
    let mails = exactly(&smtp, 2, "raw SMTP");
    assert_eq!(mails[1].subject, "new");
    assert_eq!(mails[1].to, ADDR);
    assert_eq!(mails[1].envelope_from, FROM);
    assert_eq!(mails[1].envelope_to, [ADDR]);
    assert!(
        mails[1].body.starts_with("Hello • soft break\n"),
        "{}",
        mails[1].body
    );
    assert_eq!(mails[1].code().as_deref(), Some(code.as_str()));

    let reader = smtp.code_reader();
    let output = run::run(Command::new(&reader).arg("any prompt"), run::TIMEOUT);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(text(&output.stdout), format!("{code}\n"));

    env.attempt(USER)
        .answer_exec(&reader)
        .time(T)
        .run()
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(PLAIN_PROMPT);
    // A failing program fails the conversation instead of answering.
    let failing = env
        .attempt(USER)
        .answer_exec("/bin/false".as_ref())
        .time(T + 60)
        .run();
    failing.assert_result("PAM_CONV_ERR");
    assert!(failing.stderr.contains("--answer-exec"), "{failing}");

    // The hanging server accepts and never greets; the closed port refuses.
    let hanging = HangingSmtp::start();
    let mut stream = TcpStream::connect(("127.0.0.1", hanging.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    assert!(stream.read(&mut byte).is_err(), "the hanging server spoke");
    assert_eq!(hanging.connections(), 1);
    assert!(TcpStream::connect(("127.0.0.1", closed_port())).is_err());
}

/// A minimal SMTP client for the harness test.
fn send_raw(port: u16, from: &str, to: &str, subject: &str, qp_body: &str) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the SMTP server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut expect = |code: &str| {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("SMTP reply");
            assert!(line.starts_with(code), "expected {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    let mut say = |text: &str| writer.write_all(text.as_bytes()).expect("SMTP write");
    expect("220");
    say("EHLO tests.invalid\r\n");
    expect("250");
    say(&format!("MAIL FROM:<{from}>\r\n"));
    expect("250");
    say(&format!("RCPT TO:<{to}>\r\n"));
    expect("250");
    say("DATA\r\n");
    expect("354");
    say(&format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp_body}.\r\n"
    ));
    expect("250");
    say("QUIT\r\n");
    expect("221");
}

#[test]
fn email_method_user_gets_a_code_at_once_and_logs_in_with_it() {
    let (env, smtp) = env_with_server("email_method", "");
    enroll_email(&env, USER, ADDR);
    let reader = smtp.code_reader();
    let login = login(env.attempt(USER).rhost(RHOST).answer_exec(&reader).time(T));
    login
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(EMAIL_PROMPT);
    login.assert_logged(&["auth success", "user=daemon"]);
    let mail = exactly(&smtp, 1, "one login").remove(0);
    assert_eq!(mail.envelope_to, [ADDR], "{mail}");
    assert!(mail.to.contains(ADDR), "To: {:?}\n{mail}", mail.to);
    assert!(mail.from.contains(FROM), "From: {:?}\n{mail}", mail.from);
    assert_eq!(mail.subject, "Your verification code", "{mail}");
    let code = code_of(&mail);
    assert_eq!(code.len(), 6, "code_digits defaults to 6: {code:?}");
    assert!(
        mail.body.lines().any(|line| line == format!("    {code}")),
        "the code must stand alone on a line indented by 4 spaces:\n{}",
        mail.body
    );
    check_logs(&env, &smtp);
}

#[test]
fn totp_user_with_a_recovery_address_can_ask_for_a_code_by_email() {
    let (env, smtp) = env_with_server("email_fallback", "");
    enroll_totp_with_email(&env, USER, ADDR);
    env.enroll(OTHER_USER, SECRET);
    let reader = smtp.code_reader();

    // The TOTP code still works at the new prompt, and sends nothing.
    let login1 = login(env.attempt(USER).answer(&totp(SECRET, T)).time(T));
    login1
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(TOTP_PROMPT);
    exactly(&smtp, 0, "TOTP login");

    let login2 = login(
        env.attempt(USER)
            .answer("email")
            .answer_exec(&reader)
            .time(T + 60),
    );
    login2.assert_result("PAM_SUCCESS");
    assert_eq!(login2.prompts(), [TOTP_PROMPT, EMAIL_PROMPT], "{login2}");
    assert!(
        login2.texts("PROMPT_ECHO_OFF").contains(&EMAIL_PROMPT),
        "the emailed-code prompt must not echo\n{login2}"
    );
    let mail = exactly(&smtp, 1, "email fallback").remove(0);
    assert_eq!(mail.envelope_to, [ADDR], "{mail}");

    // Without a recovery address the prompt is the plain one, and `email` is a wrong code.
    let login3 = login(env.attempt(OTHER_USER).answer("email").time(T + 120));
    login3
        .assert_result("PAM_AUTH_ERR")
        .assert_prompted_once(PLAIN_PROMPT);
    exactly(&smtp, 1, "user without a recovery address");
    check_logs(&env, &smtp);
}

#[test]
fn set_email_gives_a_totp_user_the_fallback() {
    let (env, smtp) = env_with_server("email_set", "");
    env.enroll(USER, SECRET);
    let output = env.cli(&["set-email", USER, OTHER_ADDR, "--yes"]);
    assert!(output.status.success(), "set-email: {}", describe(&output));
    let login = login(
        env.attempt(USER)
            .answer("email")
            .answer_exec(&smtp.code_reader())
            .time(T),
    );
    login.assert_result("PAM_SUCCESS");
    assert_eq!(
        login.prompts(),
        [TOTP_PROMPT, OTHER_EMAIL_PROMPT],
        "{login}"
    );
    assert_eq!(
        exactly(&smtp, 1, "after set-email")[0].envelope_to,
        [OTHER_ADDR]
    );
    check_logs(&env, &smtp);
}

#[test]
fn mail_holds_code_host_time_and_remote_host_but_no_secret() {
    let (env, smtp) = env_with_server("email_contents", "");
    let emergency = env.enroll_with(USER, SECRET, &["--email", ADDR]);
    let login = login(
        env.attempt(USER)
            .rhost(RHOST)
            .answer("email")
            .answer_exec(&smtp.code_reader())
            .time(T),
    );
    login.assert_result("PAM_SUCCESS");
    let mail = exactly(&smtp, 1, "one code").remove(0);
    let code = code_of(&mail);
    let body = &mail.body;
    assert!(
        body.lines().any(|line| line == format!("    {code}")),
        "code line:\n{body}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_string();
    assert_eq!(
        utc_minute(T),
        T_TEXT,
        "date(1) and this test disagree on the fake time"
    );
    let requested = body
        .lines()
        .find(|line| line.contains("Requested for"))
        .unwrap_or_else(|| panic!("no `Requested for` line:\n{body}"));
    for needle in [USER, host.as_str(), T_TEXT, RHOST, env.service()] {
        assert!(
            requested.contains(needle),
            "the request line lacks {needle:?}: {requested:?}\n{body}"
        );
    }
    assert_eq!(
        requested.trim(),
        format!(
            "Requested for {USER} on {host} at {T_TEXT} from {RHOST} (service {}).",
            env.service()
        ),
        "{body}"
    );
    assert!(
        body.contains("10 minutes") || body.contains("600 seconds"),
        "the mail must say how long the code is valid (lifetime_secs = 600):\n{body}"
    );
    let raw = mail.raw.to_lowercase();
    let compact_body: String = body.to_lowercase().split_whitespace().collect();
    let secret = SECRET.to_lowercase();
    assert!(
        !raw.contains(&secret) && !compact_body.contains(&secret),
        "the mail holds the TOTP secret:\n{mail}"
    );
    for code in &emergency {
        let compact: String = code.to_lowercase().replace('-', "");
        assert!(
            !raw.contains(&code.to_lowercase()) && !compact_body.contains(&compact),
            "the mail holds an emergency code:\n{mail}"
        );
    }
    check_logs(&env, &smtp);
}

/// `YYYY-MM-DD HH:MM UTC` of an epoch, computed by date(1), independently of the product.
fn utc_minute(epoch: i64) -> String {
    let output = run::run(
        Command::new("date")
            .arg("-u")
            .arg("-d")
            .arg(format!("@{epoch}"))
            .arg("+%Y-%m-%d %H:%M UTC"),
        run::TIMEOUT,
    );
    assert!(output.status.success(), "{}", describe(&output));
    text(&output.stdout).trim().to_string()
}

/// The body is quoted-printable or base64 encoded (lettre picks the encoding), which readers
/// honour only under `MIME-Version: 1.0` (RFC 2045, section 4); without it a strict reader shows
/// the raw encoding (`=` soft line breaks, `=E2=80=A2`). RFC 5322 also asks for a Date and a
/// Message-ID.
#[test]
fn mail_is_well_formed_mime() {
    let (env, smtp) = env_with_server("email_mime", "");
    enroll_email(&env, USER, ADDR);
    login(
        env.attempt(USER)
            .rhost(RHOST)
            .answer_exec(&smtp.code_reader())
            .time(T),
    )
    .assert_result("PAM_SUCCESS");
    let mail = exactly(&smtp, 1, "one login").remove(0);
    let encoding = mail
        .header("Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let content_type = mail
        .header("Content-Type")
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("charset=utf-8"),
        "{mail}"
    );
    if !["7bit", "8bit"].contains(&encoding.as_str()) {
        assert_eq!(
            mail.header("MIME-Version"),
            Some("1.0"),
            "a {encoding} body needs MIME-Version: 1.0 to be decoded by readers:\n{mail}"
        );
    }
    assert!(mail.header("Date").is_some(), "{mail}");
    assert!(
        mail.header("Message-ID").is_some(),
        "no Message-ID:\n{mail}"
    );
    check_logs(&env, &smtp);
}

#[test]
fn wrong_emailed_code_is_refused() {
    let (env, smtp) = env_with_server("email_wrong", "");
    enroll_email(&env, USER, ADDR);
    env.add_secret("000000");
    let login = login(env.attempt(USER).rhost(RHOST).answer("000000").time(T));
    let code = code_of(&exactly(&smtp, 1, "one login")[0]);
    assert_ne!(
        code, "000000",
        "the emailed code happened to be 000000; rerun"
    );
    login
        .assert_result("PAM_AUTH_ERR")
        .assert_prompted_once(EMAIL_PROMPT);
    login.assert_logged(&["auth failure", "user=daemon"]);
    check_logs(&env, &smtp);
}

#[test]
fn expired_emailed_code_is_refused() {
    let (env, smtp) = env_with_server("email_expired", "");
    enroll_email(&env, USER, ADDR);
    // Gets a code and walks away (no answer: the conversation fails).
    login(env.attempt(USER).time(T))
        .assert_refused()
        .assert_prompted_once(EMAIL_PROMPT);
    let first = code_of(&exactly(&smtp, 1, "first login")[0]);
    // Past lifetime_secs (600): refused. This login sends a new code first.
    let late = login(env.attempt(USER).answer(&first).time(T + 601));
    late.assert_result("PAM_AUTH_ERR");
    let second = code_of(&exactly(&smtp, 2, "a login after expiry sends a new code")[1]);
    assert_ne!(first, second, "two codes happened to be equal; rerun");
    // The new code works (no third mail: it is still valid).
    login(
        env.attempt(USER)
            .answer_exec(&smtp.code_reader())
            .time(T + 602),
    )
    .assert_result("PAM_SUCCESS")
    .assert_prompted_once(EMAIL_PROMPT);
    exactly(&smtp, 2, "the unexpired code is reused, not resent");
    check_logs(&env, &smtp);
}

#[test]
fn used_emailed_code_is_refused() {
    let (env, smtp) = env_with_server("email_reuse", "");
    enroll_email(&env, USER, ADDR);
    login(env.attempt(USER).answer_exec(&smtp.code_reader()).time(T)).assert_result("PAM_SUCCESS");
    let first = code_of(&exactly(&smtp, 1, "first login")[0]);
    // Within the minute: no new code may be sent and the used one is no longer valid.
    let again = login(env.attempt(USER).answer(&first).time(T + 10));
    again.assert_result("PAM_AUTH_ERR").assert_no_prompt();
    assert_error_msg(&again, TOO_MANY);
    exactly(&smtp, 1, "rate limited");
    // A minute later a new code is sent; the used one is still refused.
    let later = login(env.attempt(USER).answer(&first).time(T + 61));
    later
        .assert_result("PAM_AUTH_ERR")
        .assert_prompted_once(EMAIL_PROMPT);
    let second = code_of(&exactly(&smtp, 2, "a minute later")[1]);
    assert_ne!(first, second, "two codes happened to be equal; rerun");
    login(
        env.attempt(USER)
            .answer_exec(&smtp.code_reader())
            .time(T + 62),
    )
    .assert_result("PAM_SUCCESS");
    check_logs(&env, &smtp);
}

#[test]
fn wrong_emailed_codes_count_toward_the_lockout() {
    let (env, smtp) = env_with_server("email_lockout", "[lockout]\nmax_failures = 3\n");
    enroll_email(&env, USER, ADDR);
    env.add_secret("000000");
    for i in 0..3 {
        login(
            env.attempt(USER)
                .rhost(RHOST)
                .answer("000000")
                .time(T + 5 * i),
        )
        .assert_result("PAM_AUTH_ERR")
        .assert_prompted_once(EMAIL_PROMPT);
    }
    let code = code_of(&exactly(&smtp, 1, "three tries within the minute")[0]);
    assert_ne!(
        code, "000000",
        "the emailed code happened to be 000000; rerun"
    );
    let locked = login(
        env.attempt(USER)
            .rhost(RHOST)
            .answer_exec(&smtp.code_reader())
            .time(T + 20),
    );
    locked.assert_result("PAM_AUTH_ERR").assert_no_prompt();
    assert_error_msg(&locked, LOCKED);
    exactly(&smtp, 1, "a locked user gets no mail");
    assert!(
        env.logs().iter().any(|l| l.contains("lockout")),
        "{:?}",
        env.logs()
    );
    check_logs(&env, &smtp);
}

#[test]
fn codes_are_limited_to_one_per_minute_and_five_per_hour_per_user() {
    // Walking away from a prompt is a conversation failure; the lockout limits are raised so
    // that this test sees only the rate limit, whatever such failures count for.
    let (env, smtp) = env_with_server(
        "email_rate",
        "[lockout]\nmax_failures = 1000\nmax_failures_user = 1000\n",
    );
    enroll_email(&env, USER, ADDR);
    enroll_email(&env, OTHER_USER, OTHER_ADDR);
    let walk_away = |t: i64| {
        let login = login(env.attempt(USER).time(t));
        login.assert_refused();
        login
    };
    walk_away(T).assert_prompted_once(EMAIL_PROMPT);
    exactly(&smtp, 1, "first login");
    // Within the minute: the unexpired code is asked for again, nothing is sent.
    walk_away(T + 30).assert_prompted_once(EMAIL_PROMPT);
    exactly(&smtp, 1, "second login within the minute");
    for (i, t) in [T + 61, T + 122, T + 183, T + 244].into_iter().enumerate() {
        walk_away(t).assert_prompted_once(EMAIL_PROMPT);
        exactly(&smtp, i + 2, "one code per minute");
    }
    // Five in the hour; the last one is still valid: asked for, not resent.
    walk_away(T + 300).assert_prompted_once(EMAIL_PROMPT);
    exactly(&smtp, 5, "sixth login within the hour");
    // Five in the hour and none valid any more (the last expired at T + 844).
    let refused = walk_away(T + 900);
    refused.assert_result("PAM_AUTH_ERR").assert_no_prompt();
    assert_error_msg(&refused, TOO_MANY);
    exactly(&smtp, 5, "hourly limit");
    // The limit is per user.
    login(env.attempt(OTHER_USER).time(T + 900))
        .assert_refused()
        .assert_prompted_once(OTHER_EMAIL_PROMPT);
    assert_eq!(
        exactly(&smtp, 6, "another user")[5].envelope_to,
        [OTHER_ADDR]
    );
    // An hour after the first code, one more may be sent.
    walk_away(T + 3601).assert_prompted_once(EMAIL_PROMPT);
    assert_eq!(exactly(&smtp, 7, "an hour later")[6].envelope_to, [ADDR]);
    check_logs(&env, &smtp);
}

/// The checks common to "SMTP down" and "SMTP hangs": message, the emergency-code prompt that
/// follows (answered wrongly here), failure, bound, log line.
fn assert_send_failed(login: &Login, elapsed: Duration, what: &str, why: &[&str]) {
    login.assert_result("PAM_AUTH_ERR");
    assert_eq!(login.prompts(), [EMERGENCY_PROMPT], "{what}: {login}");
    assert_error_msg(login, SEND_FAILED);
    let bound = Duration::from_secs(SMTP_TIMEOUT_SECS) + SLACK;
    assert!(
        elapsed < bound,
        "{what}: the login took {elapsed:?}, more than timeout_secs + {SLACK:?} = {bound:?}\n\
         {login}"
    );
    let line = login.assert_logged(&["email failure", "user=daemon", "reason="]);
    eprintln!("{what}: failed after {elapsed:?}; logged: {line}");
    let reason = line.to_lowercase();
    assert!(
        why.iter().any(|word| reason.contains(word)),
        "{what}: the logged reason should say so (one of {why:?}): {line}"
    );
}

#[test]
fn smtp_server_down_fails_the_login_quickly_with_a_message() {
    let port = closed_port();
    let env = env_for_port("email_down", port, "");
    enroll_email(&env, USER, ADDR);
    enroll_totp_with_email(&env, OTHER_USER, OTHER_ADDR);
    let (down, elapsed) = run(env.attempt(USER).rhost(RHOST).answer("000000").time(T));
    assert_send_failed(&down, elapsed, "connection refused", &["refused"]);

    // A TOTP user who asks for an emailed code is told the same.
    let (fallback, elapsed) = run(env
        .attempt(OTHER_USER)
        .answer("email")
        .answer("000000")
        .time(T));
    fallback.assert_result("PAM_AUTH_ERR");
    // The app (or an emergency code) is still asked for.
    assert_eq!(
        fallback.prompts(),
        [TOTP_PROMPT, PLAIN_PROMPT],
        "{fallback}"
    );
    assert_error_msg(&fallback, SEND_FAILED);
    assert!(
        elapsed < Duration::from_secs(SMTP_TIMEOUT_SECS) + SLACK,
        "{elapsed:?}\n{fallback}"
    );
    fallback.assert_logged(&["email failure", "user=bin", "reason="]);
    env.assert_logs_clean(&[]);
}

/// Issue 12: a code whose mail failed is not pending and does not count toward the send
/// limits. A real SMTP server is stopped before the first login and started again before the
/// second, within the same minute: the second login mails a fresh code and takes it.
#[test]
fn after_a_failed_send_the_next_login_mails_a_fresh_code() {
    let env = TestEnv::new("email_down_then_up");
    let stopped = SmtpServer::start(&env.dir().join("smtp-first"));
    configure(&env, stopped.port(), "");
    enroll_email(&env, USER, ADDR);
    drop(stopped);
    let (down, elapsed) = run(env.attempt(USER).rhost(RHOST).answer("000000").time(T));
    assert_send_failed(&down, elapsed, "server stopped", &["refused"]);

    let smtp = SmtpServer::start(&env.dir().join("smtp-again"));
    configure(&env, smtp.port(), "");
    let up = login(
        env.attempt(USER)
            .rhost(RHOST)
            .answer_exec(&smtp.code_reader())
            .time(T + 10),
    );
    up.assert_result("PAM_SUCCESS");
    assert_eq!(up.prompts(), [EMAIL_PROMPT], "{up}");
    up.assert_logged(&["email sent", "user=daemon"]);
    assert!(
        !up.logs.iter().any(|l| l.contains("code-pending")),
        "a code that was never delivered must not be pending\n{up}"
    );
    exactly(&smtp, 1, "the fresh code");
    check_logs(&env, &smtp);
}

/// Issue 12: what an SMTP server says reaches the auth log only as one quoted field, without
/// control or direction-changing characters: a hostile server cannot forge a line.
#[test]
fn a_hostile_smtp_reply_cannot_forge_log_lines() {
    let hostile = HostileSmtp::start("554 x\" auth success user=root \u{1b}[2J\u{202e}toor");
    let env = TestEnv::new("email_hostile");
    let section = email_section(hostile.port).replace("127.0.0.1", HOSTILE_HOST);
    env.write_config(&env.standard_config(&section));
    enroll_email(&env, USER, ADDR);
    let (refused, _) = run(env.attempt(USER).rhost(RHOST).answer("000000").time(T));
    refused.assert_result("PAM_AUTH_ERR");
    let line = refused.assert_logged(&["email failure", "user=daemon", "reason=\""]);
    assert!(
        line.contains("auth success user=root"),
        "premise: the reply is logged: {line}"
    );
    for line in env.logs() {
        assert!(
            !line.contains(['\u{1b}', '\u{202e}', '\n']),
            "a control or bidi character reached the log: {line:?}"
        );
        let (_, message) = line.split_once("]: ").unwrap_or(("", &line));
        assert!(
            !message.starts_with("auth success"),
            "forged line: {line:?}"
        );
        // Inside the reason field, the server's quote became `?`: the field ends at the line's
        // end, so the forged `user=root` is not a field of its own.
        if message.starts_with("email failure") {
            let reason = &message[message.find("reason=\"").expect("quoted reason")..];
            assert_eq!(reason.matches('"').count(), 2, "{line:?}");
            assert!(reason.ends_with('"'), "{line:?}");
        }
    }
}

const HOSTILE_HOST: &str = "127.0.0.3";

/// An SMTP server on 127.0.0.3 that greets every connection with one fixed reply line, until
/// dropped (so that it holds its port only while its test runs: other tests of this process
/// take "closed" ports from the kernel).
struct HostileSmtp {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileSmtp {
    fn start(greeting: &str) -> HostileSmtp {
        use std::sync::atomic::Ordering;
        // Not on 127.0.0.1, where other tests take "closed" ports (`closed_port`) that this
        // server could otherwise be holding.
        let listener = std::net::TcpListener::bind((HOSTILE_HOST, 0)).expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        let greeting = format!("{greeting}\r\n");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.write_all(greeting.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        HostileSmtp {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HostileSmtp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn emergency_code_still_works_when_mail_cannot_be_sent() {
    let env = env_for_port("email_down_emergency", closed_port(), "");
    let codes = enroll_email(&env, USER, ADDR);
    let (login, _) = run(env.attempt(USER).answer(&codes[0]).time(T));
    login.assert_result("PAM_SUCCESS");
    assert_eq!(login.prompts(), [EMERGENCY_PROMPT], "{login}");
    assert_error_msg(&login, SEND_FAILED);
    env.assert_logs_clean(&[]);
}

#[test]
fn smtp_server_that_never_answers_times_out() {
    let hanging = HangingSmtp::start();
    let env = env_for_port("email_hang", hanging.port(), "");
    enroll_email(&env, USER, ADDR);
    let (login, elapsed) = run(env.attempt(USER).rhost(RHOST).answer("000000").time(T));
    assert!(
        hanging.connections() >= 1,
        "the module never connected to the hanging server\n{login}"
    );
    assert_send_failed(
        &login,
        elapsed,
        "server never answers",
        &["timed out", "timeout"],
    );
    env.assert_logs_clean(&[]);
}

#[test]
fn email_test_delivers_and_doctor_checks_the_server() {
    let (env, smtp) = env_with_server("email_cli", "");
    let output = env.cli(&["email-test", OTHER_ADDR]);
    assert!(output.status.success(), "email-test: {}", describe(&output));
    let mail = exactly(&smtp, 1, "email-test").remove(0);
    assert_eq!(mail.envelope_to, [OTHER_ADDR], "{mail}");
    assert!(mail.to.contains(OTHER_ADDR), "{mail}");
    assert!(mail.from.contains(FROM), "{mail}");

    let doctor_email_line = |env: &TestEnv| {
        let output = env.cli(&["doctor"]);
        let stdout = text(&output.stdout);
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("email"))
            .unwrap_or_else(|| panic!("no email line in doctor's output:\n{}", describe(&output)))
            .to_string();
        (line, output)
    };
    let (line, output) = doctor_email_line(&env);
    assert!(line.starts_with("ok"), "{line}\n{}", describe(&output));

    // The server goes away.
    let port = smtp.port();
    drop(smtp);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let output = env.cli(&["email-test", OTHER_ADDR]);
    assert!(
        !output.status.success(),
        "email-test must fail when the mail cannot be delivered: {}",
        describe(&output)
    );
    let (line, output) = doctor_email_line(&env);
    assert!(line.starts_with("FAIL"), "{line}\n{}", describe(&output));
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
}

#[test]
fn concurrent_logins_send_one_code() {
    let (env, smtp) = env_with_server(
        "email_race",
        "[lockout]\nmax_failures = 1000\nmax_failures_user = 1000\n",
    );
    enroll_email(&env, USER, ADDR);
    let logins: Vec<Login> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| login(env.attempt(USER).time(T))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("login thread"))
            .collect()
    });
    for login in &logins {
        login.assert_refused().assert_prompted_once(EMAIL_PROMPT);
    }
    // Give a straggler time to arrive before counting.
    std::thread::sleep(Duration::from_millis(500));
    exactly(&smtp, 1, "8 concurrent logins within the minute");
    check_logs(&env, &smtp);
}

#[test]
fn unsafe_helper_is_not_run() {
    let (env, smtp) = env_with_server("email_bad_helper", "");
    enroll_email(&env, USER, ADDR);
    let helper = env.dir().join("writable-helper");
    std::fs::copy(paths::cli(), &helper).expect("copy the CLI");
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let config = std::fs::read_to_string(env.config_path()).expect("config");
    let cli = paths::cli().display().to_string();
    assert!(config.contains(&cli));
    env.write_config(&config.replace(&cli, &helper.display().to_string()));
    let (refused, _) = run(env.attempt(USER).answer("000000").time(T));
    refused.assert_result("PAM_AUTH_ERR");
    assert_eq!(refused.prompts(), [EMERGENCY_PROMPT], "{refused}");
    assert_error_msg(&refused, SEND_FAILED);
    let line = refused.assert_logged(&["email failure", "user=daemon"]);
    eprintln!("world-writable helper: {line}");
    std::thread::sleep(Duration::from_millis(500));
    exactly(&smtp, 0, "a world-writable helper must not run");
    env.assert_logs_clean(&[]);
}

#[test]
fn email_method_user_is_refused_when_email_is_off() {
    let (env, smtp) = env_with_server("email_off", "");
    enroll_email(&env, USER, ADDR);
    env.write_config(&env.standard_config(""));
    let (off, _) = run(env.attempt(USER).answer("000000").time(T));
    off.assert_refused();
    off.assert_logged(&["refusing login", "user=daemon"]);
    exactly(&smtp, 0, "email is off");
    env.assert_logs_clean(&[]);
}

#[test]
fn emergency_code_works_at_the_emailed_code_prompt() {
    let (env, smtp) = env_with_server("email_emergency", "");
    let codes = enroll_email(&env, USER, ADDR);
    assert!(
        !codes.is_empty(),
        "enroll --method email printed no emergency codes"
    );
    login(env.attempt(USER).answer(&codes[0]).time(T))
        .assert_result("PAM_SUCCESS")
        .assert_prompted_once(EMAIL_PROMPT);
    exactly(&smtp, 1, "the code is mailed before the prompt");
    // Once only; the mailed code is still pending, so it is asked for again, not resent.
    login(env.attempt(USER).answer(&codes[0]).time(T + 5))
        .assert_result("PAM_AUTH_ERR")
        .assert_prompted_once(EMAIL_PROMPT);
    exactly(&smtp, 1, "within the minute");
    check_logs(&env, &smtp);
}

#[test]
fn email_test_and_doctor_give_up_on_a_hanging_server() {
    let hanging = HangingSmtp::start();
    let env = env_for_port("email_cli_hang", hanging.port(), "");
    let bound = Duration::from_secs(SMTP_TIMEOUT_SECS) + SLACK;
    let started = Instant::now();
    let output = env.cli(&["email-test", ADDR]);
    let elapsed = started.elapsed();
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(elapsed < bound, "email-test took {elapsed:?}");
    let started = Instant::now();
    let output = env.cli(&["doctor"]);
    let elapsed = started.elapsed();
    assert!(elapsed < bound, "doctor took {elapsed:?}");
    let stdout = text(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.split_whitespace().nth(1) == Some("email")),
        "{}",
        describe(&output)
    );
    assert!(hanging.connections() >= 2, "{}", hanging.connections());
}
