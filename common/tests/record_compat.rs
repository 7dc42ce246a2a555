//! Records on disk outlive the code that wrote them. The fixtures were written by the first
//! record writer (serde + `toml::to_string_pretty`), with every optional part filled in and
//! host names that made it choose literal and multi-line strings; they must keep parsing, to
//! the same values, and survive a round trip through today's writer.

use twostep_common::record::{Method, Record};
use twostep_common::totp::Algorithm;

const TOTP: &str = include_str!("fixtures/record-v1-totp.toml");
const EMAIL: &str = include_str!("fixtures/record-v1-email.toml");

#[test]
fn a_full_totp_record_from_the_first_writer_parses() {
    let r = Record::parse(TOTP, "alice").unwrap();
    assert_eq!(
        (r.version, r.method, r.created),
        (1, Method::Totp, 1_800_000_000)
    );
    assert_eq!(r.email.as_deref(), Some("alice@example.com"));
    let totp = r.totp.as_ref().unwrap();
    assert_eq!(totp.secret.expose(), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    assert_eq!(totp.algorithm, Algorithm::Sha256);
    assert_eq!((totp.digits, totp.period, totp.skew), (8, 60, Some(2)));
    assert_eq!(totp.last_step, 30_000_123);
    assert_eq!(r.emergency.rounds, 20_000);
    assert_eq!(
        (r.emergency.hashes.len(), r.emergency.legacy_hashes.len()),
        (3, 2)
    );

    let lockout = &r.lockout;
    assert_eq!(lockout.failures, vec![1_800_000_100, 1_800_000_101]);
    assert_eq!(lockout.locked_until, 1_800_000_900);
    let hosts: Vec<_> = lockout
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.failures.clone(), h.locked_until))
        .collect();
    assert_eq!(
        hosts,
        vec![
            ("203.0.113.9", vec![1_800_000_100], 0),
            ("", vec![], 1_800_000_500),
            ("h\u{f4}te \"quoted\" 'x' \\ \u{7}\t", vec![1, 2, 3], 7),
        ]
    );

    let last = r.last_login.as_ref().unwrap();
    assert_eq!(
        (
            last.time,
            last.rhost.as_str(),
            last.service.as_str(),
            last.method.as_str()
        ),
        (1_800_000_050, "2001:db8::1", "sshd", "totp")
    );
    let grace: Vec<_> = r.grace.iter().map(|g| (g.host.as_str(), g.time)).collect();
    assert_eq!(
        grace,
        vec![
            ("192.0.2.7", 1_800_000_050),
            ("it's", 1_800_000_060),
            ("say \"hi\"", 1),
            ("two\nlines\r\n", 2),
        ]
    );
    let code = r.email_code.as_ref().unwrap();
    assert_eq!(code.salt, "00112233445566778899aabbccddeeff");
    assert_eq!(code.hash, "ab".repeat(32));
    assert_eq!(code.expires, 1_800_000_600);
    assert_eq!(code.sent, vec![1_800_000_000, 1_800_000_030]);
}

#[test]
fn an_email_record_from_the_first_writer_parses() {
    let r = Record::parse(EMAIL, "bob.smith").unwrap();
    assert_eq!(r.method, Method::Email);
    assert!(r.totp.is_none());
    assert_eq!(r.email.as_deref(), Some("bob@example.org"));
    assert!(r.lockout.failures.is_empty() && r.lockout.hosts.is_empty());
    assert!(r.last_login.is_none() && r.grace.is_empty());
    let code = r.email_code.as_ref().unwrap();
    assert!(code.salt.is_empty() && code.hash.is_empty() && code.sent.is_empty());
}

/// Old records hold the login state inline; today it goes to the `.state` file. Record file
/// plus state text, or the full (archive) text, give back the same record.
#[test]
fn old_records_survive_a_round_trip_through_the_writer() {
    for (text, user) in [(TOTP, "alice"), (EMAIL, "bob.smith")] {
        let record = Record::parse(text, user).unwrap();
        let again = record.to_full_text().unwrap();
        assert_eq!(Record::parse(&again, user).unwrap(), record, "{user}");
        let mut joined = Record::parse(&record.to_file_text().unwrap(), user).unwrap();
        joined.apply_state(&record.state_text().unwrap()).unwrap();
        assert_eq!(joined, record, "{user}");
    }
}

/// The toml crate reads today's full (archive) text to the same values as the first writer's,
/// and the layout is the same: only strings the first writer put in '...' or """...""" differ.
#[test]
fn the_writer_keeps_the_first_writers_values_and_layout() {
    for (text, user) in [(TOTP, "alice"), (EMAIL, "bob.smith")] {
        let again = Record::parse(text, user).unwrap().to_full_text().unwrap();
        let old: toml::Table = toml::from_str(text).unwrap();
        let new: toml::Table = toml::from_str(&again).unwrap();
        assert_eq!(new, old, "{user}");
    }
    let again = Record::parse(EMAIL, "bob.smith")
        .unwrap()
        .to_full_text()
        .unwrap();
    assert_eq!(again.as_str(), EMAIL);
    let again = Record::parse(TOTP, "alice")
        .unwrap()
        .to_full_text()
        .unwrap();
    let respelled = TOTP
        .replace("host = 'say \"hi\"'", "host = \"say \\\"hi\\\"\"")
        .replace(
            "host = \"\"\"\ntwo\nlines\\r\n\"\"\"",
            "host = \"two\\nlines\\r\\n\"",
        );
    assert_ne!(respelled, TOTP);
    assert_eq!(again.as_str(), respelled);
}
