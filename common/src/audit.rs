//! Log lines for syslog (facility authpriv). They say who, from where, through what and what
//! happened; they never carry a key or anything the user typed.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;

use syslog::{Facility, LogFormat, Logger, LoggerBackend, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Notice,
    Warning,
    Error,
}

/// Where log lines go; tests collect them to check what would reach syslog.
pub trait Sink {
    fn log(&mut self, level: Level, message: &str);
}

/// RFC 3164 without the timestamp and host name, which the syslog daemon adds on arrival
/// (rsyslog and journald do, as for glibc's messages): `<PRI>TAG[PID]: MESSAGE`. The crate's
/// Formatter3164 parses a time format description on every message and links the `time`
/// crate's formatter into every process that loads the module.
#[derive(Debug, Clone)]
struct Rfc3164 {
    process: String,
    pid: u32,
}

impl<T: Display> LogFormat<T> for Rfc3164 {
    fn format<W: Write>(&self, w: &mut W, severity: Severity, message: T) -> syslog::Result<()> {
        let priority = Facility::LOG_AUTHPRIV as u8 | severity as u8;
        write!(w, "<{priority}>{}[{}]: {message}", self.process, self.pid)
            .map_err(syslog::Error::Write)
    }
}

/// A syslog connection. A missing or dead syslog daemon must never stop a login, so failures
/// to log are dropped.
pub struct Syslog {
    logger: Option<Logger<LoggerBackend, Rfc3164>>,
}

impl std::fmt::Debug for Syslog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syslog")
            .field("connected", &self.logger.is_some())
            .finish()
    }
}

impl Syslog {
    pub fn open(socket: &Path, process: &str) -> Syslog {
        let formatter = Rfc3164 {
            process: process.to_string(),
            pid: std::process::id(),
        };
        Syslog {
            logger: syslog::unix_custom(formatter, socket).ok(),
        }
    }
}

impl Sink for Syslog {
    fn log(&mut self, level: Level, message: &str) {
        let Some(logger) = self.logger.as_mut() else {
            return;
        };
        // Last line of defence: whatever a caller put together, no control or
        // direction-changing character reaches the log.
        let message = printable(message);
        let _ = match level {
            Level::Info => logger.info(message),
            Level::Notice => logger.notice(message),
            Level::Warning => logger.warning(message),
            Level::Error => logger.err(message),
        };
    }
}

/// Collects lines in memory (unit tests).
#[derive(Debug, Default)]
pub struct Memory(pub Vec<(Level, String)>);

impl Sink for Memory {
    fn log(&mut self, level: Level, message: &str) {
        self.0.push((level, message.to_string()));
    }
}

/// A `key=value` field whose value came from outside (user name, rhost, service, an error
/// text that quotes one, an SMTP server's reply): quoted when needed and stripped of anything
/// that could forge another field or line, or make a terminal show it differently.
pub fn field(key: &str, value: &str) -> String {
    let safe: String = value
        .chars()
        .take(256)
        .map(|c| if hidden(c) || c == '"' { '?' } else { c })
        .collect();
    if safe.is_empty() || safe.contains(' ') || safe.contains('=') {
        format!("{key}=\"{safe}\"")
    } else {
        format!("{key}={safe}")
    }
}

/// `text` with every control, direction-changing or invisible formatting character made `?`.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(hidden) {
        text.chars()
            .map(|c| if hidden(c) { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// Control characters (C0, DEL, C1: newlines, ESC sequences) and the Unicode format
/// characters that reorder or hide text (bidi embeddings, overrides and isolates, marks,
/// zero-width characters, the BOM).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_authpriv_priority_tag_and_pid() {
        let formatter = Rfc3164 {
            process: "pam_twostep".into(),
            pid: 42,
        };
        let mut out = Vec::new();
        formatter
            .format(&mut out, Severity::LOG_NOTICE, "auth success user=alice")
            .unwrap();
        // authpriv (10) * 8 + notice (5) = 85
        assert_eq!(out, b"<85>pam_twostep[42]: auth success user=alice");
    }

    #[test]
    fn fields_cannot_forge_other_fields() {
        assert_eq!(field("user", "alice"), "user=alice");
        assert_eq!(field("rhost", ""), "rhost=\"\"");
        assert_eq!(field("user", "a b=c"), "user=\"a b=c\"");
        assert_eq!(
            field("user", "x\"\nresult=success"),
            "user=\"x??result=success\""
        );
        assert_eq!(
            field("reason", "x\" auth success user=root\u{1b}[2J\u{202e}"),
            "reason=\"x? auth success user=root?[2J?\""
        );
    }

    #[test]
    fn whole_lines_lose_control_and_bidi_characters() {
        assert_eq!(printable("plain line"), "plain line");
        assert_eq!(
            printable("a\nb\u{1b}c\u{2066}d\u{200b}e\u{7f}"),
            "a?b?c?d?e?"
        );
        assert_eq!(printable("é ü 名"), "é ü 名");
    }
}
