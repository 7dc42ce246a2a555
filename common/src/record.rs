//! One user's enrollment, as stored in `state_dir/users/<user>.toml`: plain TOML an admin can
//! read, holding the key, the emergency code hashes and the login state.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::emergency::CodeSet;
use crate::lockout::LockoutState;
use crate::totp::{self, Algorithm, Params};

pub const RECORD_VERSION: u32 = 1;

/// A base32 key as stored; wiped on drop and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(text: Zeroizing<String>) -> Self {
        SecretString(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        Ok(SecretString(text))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Codes from an authenticator app (with an optional emailed fallback).
    Totp,
    /// Codes sent by email at each login; for users without a phone.
    Email,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpRecord {
    pub secret: SecretString,
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
    /// Steps accepted on each side; absent means the config's `totp.skew`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew: Option<u8>,
    /// The last accepted time step; a code for this step or an earlier one is a replay.
    #[serde(default)]
    pub last_step: u64,
}

impl TotpRecord {
    pub fn params(&self) -> Params {
        Params {
            algorithm: self.algorithm,
            digits: self.digits,
            period: self.period,
        }
    }
}

/// The emailed code waiting to be typed, and when codes were sent (for the send limits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EmailState {
    /// Hex salt and SHA-256 hash of the pending code; empty when none is pending.
    #[serde(default)]
    pub salt: String,
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub expires: u64,
    /// Send times within the last hour, oldest first.
    #[serde(default)]
    pub sent: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastLogin {
    pub time: u64,
    #[serde(default)]
    pub rhost: String,
    #[serde(default)]
    pub service: String,
    pub method: String,
}

/// A remote host that gave a right code, for the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraceHost {
    pub host: String,
    /// When it last gave a right code.
    pub time: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub version: u32,
    pub user: String,
    pub method: Method,
    /// Unix time of enrollment.
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Absent for `method = "email"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpRecord>,
    pub emergency: CodeSet,
    #[serde(default)]
    pub lockout: LockoutState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<LastLogin>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grace: Vec<GraceHost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_code: Option<EmailState>,
}

impl Record {
    /// Parses a record and checks what it claims; `user` is who it must belong to.
    pub fn parse(text: &str, user: &str) -> Result<Record, String> {
        let record: Record = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let message = redact_values(e.message());
            match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })?;
        record.validate(user)?;
        Ok(record)
    }

    fn validate(&self, user: &str) -> Result<(), String> {
        if self.version != RECORD_VERSION {
            return Err(format!(
                "record version {} is not supported (expected {RECORD_VERSION})",
                self.version
            ));
        }
        if self.user != user {
            return Err("the record belongs to another user".into());
        }
        match (self.method, &self.totp) {
            (Method::Totp, Some(t)) => {
                totp::validate_params(t.digits, t.period)?;
                if t.skew.is_some_and(|s| s > 10) {
                    return Err("totp.skew must be at most 10".into());
                }
                totp::decode_secret(t.secret.expose()).map_err(|e| format!("totp.secret: {e}"))?;
            }
            (Method::Totp, None) => return Err("method \"totp\" needs a [totp] table".into()),
            (Method::Email, Some(_)) => {
                return Err("method \"email\" must not have a [totp] table".into());
            }
            (Method::Email, None) => {}
        }
        if self.method == Method::Email && self.email.is_none() {
            return Err("method \"email\" needs an email address".into());
        }
        self.emergency.validate()
    }

    /// The file contents, with a header that tells an admin what the file is. The login state
    /// is not part of it (see [`Record::state_text`]).
    pub fn to_file_text(&self) -> Result<Zeroizing<String>, String> {
        self.enrollment_only().to_full_text()
    }

    /// The file contents with the login state included, as archived by `twostep reset` (and
    /// as records were written before the state had a file of its own); [`Record::parse`]
    /// reads both forms.
    pub fn to_full_text(&self) -> Result<Zeroizing<String>, String> {
        let body = Zeroizing::new(toml::to_string_pretty(self).map_err(|e| e.to_string())?);
        let mut text = Zeroizing::new(String::with_capacity(body.len() + 300));
        text.push_str(
            "# twostep enrollment record. Written by pam_twostep and the `twostep` command.\n\
             # Deleting this file switches two-step login off for this user (last resort;\n\
             # prefer `twostep reset`). Keep it root-owned, mode 0600.\n",
        );
        text.push_str(&body);
        Ok(text)
    }
}

/// What logins change, kept apart from the record in `users/<user>.state` (a slot file,
/// rewritten in place at every login; see `store.rs`). Records written before the split hold
/// these fields themselves; a state file, when there is one, overrides them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoginState {
    /// `totp.last_step`.
    #[serde(default)]
    last_step: u64,
    #[serde(default)]
    lockout: LockoutState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_login: Option<LastLogin>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    grace: Vec<GraceHost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_code: Option<EmailState>,
}

impl Record {
    /// The login state as the text of a `.state` file.
    pub fn state_text(&self) -> Result<Zeroizing<String>, String> {
        let state = LoginState {
            last_step: self.totp.as_ref().map_or(0, |t| t.last_step),
            lockout: self.lockout.clone(),
            last_login: self.last_login.clone(),
            grace: self.grace.clone(),
            email_code: self.email_code.clone(),
        };
        toml::to_string(&state)
            .map(Zeroizing::new)
            .map_err(|e| e.to_string())
    }

    /// Replaces every login-state field with those in `text` (a `.state` file).
    pub fn apply_state(&mut self, text: &str) -> Result<(), String> {
        let state: LoginState = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let message = redact_values(e.message());
            match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            }
        })?;
        if let Some(totp) = self.totp.as_mut() {
            totp.last_step = state.last_step;
        }
        self.lockout = state.lockout;
        self.last_login = state.last_login;
        self.grace = state.grace;
        self.email_code = state.email_code;
        Ok(())
    }

    /// A copy without the login state, as written to the record file.
    fn enrollment_only(&self) -> Record {
        let mut record = self.clone();
        if let Some(totp) = record.totp.as_mut() {
            totp.last_step = 0;
        }
        record.lockout = LockoutState::default();
        record.last_login = None;
        record.grace = Vec::new();
        record.email_code = None;
        record
    }
}

/// 1-based line of a byte offset (bytes, so an offset inside a character cannot panic).
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parser messages quote the offending value ("invalid type: string \"…\""); in a record that
/// value may be a key, and these messages are logged. Quoted parts are dropped.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let (emergency, _) = CodeSet::generate(2).unwrap();
        Record {
            version: RECORD_VERSION,
            user: "alice".into(),
            method: Method::Totp,
            created: 1_800_000_000,
            email: None,
            totp: Some(TotpRecord {
                secret: SecretString::new(Zeroizing::new("JBSWY3DPEHPK3PXP".into())),
                algorithm: Algorithm::Sha1,
                digits: 6,
                period: 30,
                skew: None,
                last_step: 0,
            }),
            emergency,
            lockout: LockoutState::default(),
            last_login: None,
            grace: Vec::new(),
            email_code: None,
        }
    }

    #[test]
    fn round_trips_through_the_file_text() {
        let record = sample();
        let text = record.to_file_text().unwrap();
        assert!(text.starts_with("# twostep enrollment record"));
        assert_eq!(Record::parse(&text, "alice").unwrap(), record);
    }

    #[test]
    fn parse_errors_do_not_repeat_values() {
        let text = sample().to_file_text().unwrap().to_string();
        let bad = text.replace("digits = 6", "digits = \"JBSWY3DPEHPK3PXP\"");
        let err = Record::parse(&bad, "alice").unwrap_err();
        assert!(!err.contains("JBSWY3DP"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn lines_are_counted_in_bytes() {
        assert_eq!(line_of("a\nbé\nc", 0), 1);
        assert_eq!(line_of("a\nbé\nc", 4), 2, "inside é");
        assert_eq!(line_of("a\nbé\nc", 99), 3);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        assert!(!format!("{:?}", sample()).contains("JBSWY3DP"));
    }

    #[test]
    fn damaged_records_are_refused_with_a_reason() {
        let text = sample().to_file_text().unwrap().to_string();
        assert!(
            Record::parse(&text, "bob")
                .unwrap_err()
                .contains("another user")
        );
        let cases = [
            (text.replace("digits = 6", "digits = 7"), "digits"),
            (text.replace("version = 1", "version = 9"), "version"),
            (text.replace("JBSWY3DPEHPK3PXP", "NOT-BASE32!"), "secret"),
            (
                text.replace("method = \"totp\"", "method = \"sms\""),
                "line",
            ),
            (text.replace("[totp]", "[totp\n"), "line"),
            (format!("{text}\nextra = 1\n"), "extra"),
        ];
        for (bad, needle) in cases {
            let err = Record::parse(&bad, "alice").unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
