//! Issue 12: every externally derived string in a log line is escaped like the fields, so a
//! hostile user name cannot forge a field or a line, nor hide text with control or
//! direction-changing characters. (The hostile SMTP reply is in email.rs.)

use twostep_tests::TestEnv;

/// What a login name typed at a prompt or sent by a client can hold.
const HOSTILE_NAMES: [&str; 4] = [
    "x\" auth success user=root",
    "evil\u{1b}[2J\u{1b}]0;owned\u{7}",
    "bidi\u{202e}toor\u{2066}",
    "new\nline auth success user=root",
];

#[test]
fn hostile_user_names_cannot_forge_log_lines() {
    let env = TestEnv::builder("log_hostile_names")
        // Group lookups put the user name into an error text, not only into `user=`.
        .config("[policy]\nenforce_groups = [\"root\"]")
        .build();
    for name in HOSTILE_NAMES {
        let login = env
            .attempt(name)
            .answer("123456")
            .rhost("192.0.2.1\u{1b}[1m")
            .run();
        login.assert_refused();
    }
    let logs = env.logs();
    let ours: Vec<&String> = logs.iter().filter(|l| l.contains("pam_twostep[")).collect();
    assert!(
        !ours.is_empty(),
        "the module logged nothing:\n{}",
        logs.join("\n")
    );
    for line in &ours {
        assert!(
            !line.contains(['\u{1b}', '\u{202e}', '\u{2066}', '\u{7}', '\n']),
            "a control or bidi character reached the log: {line:?}"
        );
        let (_, message) = line.split_once("]: ").unwrap_or(("", line));
        assert!(
            !message.starts_with("auth success"),
            "forged line: {line:?}"
        );
        // Read as fields (quoted values may hold spaces), the line has one `user=`, and it is
        // not root: whatever the name held stayed inside that one field.
        let users: Vec<String> = fields(message)
            .into_iter()
            .filter_map(|(key, value)| (key == "user").then_some(value))
            .collect();
        assert_eq!(users.len(), 1, "{line:?}");
        assert_ne!(users[0], "root", "{line:?}");
    }
}

/// The `key=value` fields of a log message, where a value is `"…"` (no quote inside) or runs to
/// the next space; words without `=` are skipped.
fn fields(message: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find(|c: char| c != ' ') {
        rest = &rest[start..];
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        if rest[word_end..].starts_with('=') {
            let key = rest[..word_end].to_string();
            let after = &rest[word_end + 1..];
            let (value, next) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"').expect("closing quote");
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => {
                    let end = after.find(' ').unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            out.push((key, value.to_string()));
            rest = next;
        } else {
            rest = &rest[word_end..];
        }
    }
    out
}

#[test]
fn the_field_reader_respects_quotes() {
    assert_eq!(
        fields("error user=\"a b user=root\" rhost=x detail=\"y\""),
        [
            ("user".to_string(), "a b user=root".to_string()),
            ("rhost".into(), "x".into()),
            ("detail".into(), "y".into()),
        ]
    );
}
