//! Log lines for syslog (facility authpriv). They say who, from where, through what and what
//! happened; they never carry a key or anything the user typed.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Notice,
    Warning,
    Error,
}

impl Level {
    /// The syslog severity (RFC 5424 numbering).
    fn severity(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warning => 4,
            Level::Notice => 5,
            Level::Info => 6,
        }
    }
}

/// Where log lines go; tests collect them to check what would reach syslog.
pub trait Sink {
    fn log(&mut self, level: Level, message: &str);
}

/// LOG_AUTHPRIV, the facility of authentication messages.
const AUTHPRIV: u8 = 10 << 3;

/// A datagram connection to the syslog socket (`/dev/log`: rsyslog and journald both listen
/// there). Lines are RFC 3164 without the timestamp and host name, which the daemon adds on
/// arrival, as for glibc's messages: `<PRI>TAG[PID]: MESSAGE`. A missing or dead syslog
/// daemon must never stop a login, so failures to log are dropped. (A few lines instead of the
/// `syslog` crate, of which the module used only this.)
pub struct Syslog {
    socket: Option<UnixDatagram>,
    /// `TAG[PID]: `.
    prefix: String,
}

impl std::fmt::Debug for Syslog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syslog")
            .field("connected", &self.socket.is_some())
            .finish()
    }
}

impl Syslog {
    pub fn open(socket: &Path, process: &str) -> Syslog {
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.connect(socket).map(|()| s))
            .ok();
        Syslog {
            socket,
            prefix: format!("{process}[{}]: ", std::process::id()),
        }
    }
}

/// `<PRI>TAG[PID]: MESSAGE` for `level`.
fn format_line(prefix: &str, level: Level, message: &str) -> String {
    format!("<{}>{prefix}{message}", AUTHPRIV | level.severity())
}

impl Sink for Syslog {
    fn log(&mut self, level: Level, message: &str) {
        let Some(socket) = self.socket.as_ref() else {
            return;
        };
        // Last line of defence: whatever a caller put together, no control or
        // direction-changing character reaches the log.
        let line = format_line(&self.prefix, level, &printable(message));
        let _ = socket.send(line.as_bytes());
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
        // authpriv (10) * 8 + notice (5) = 85
        assert_eq!(
            format_line(
                "pam_twostep[42]: ",
                Level::Notice,
                "auth success user=alice"
            ),
            "<85>pam_twostep[42]: auth success user=alice"
        );
        assert!(format_line("t[1]: ", Level::Error, "x").starts_with("<83>"));
        assert!(format_line("t[1]: ", Level::Info, "x").starts_with("<86>"));
    }

    #[test]
    fn lines_reach_a_datagram_socket() {
        let dir = std::env::temp_dir().join(format!("twostep-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("log.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let mut log = Syslog::open(&path, "pam_twostep");
        log.log(Level::Warning, "lockout user=alice\nforged");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(line.starts_with("<84>pam_twostep["), "{line}");
        assert!(line.ends_with("]: lockout user=alice?forged"), "{line}");
        // Nobody listening: dropped, never an error.
        Syslog::open(&dir.join("none.sock"), "x").log(Level::Error, "lost");
        let _ = std::fs::remove_dir_all(&dir);
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
