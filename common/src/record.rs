//! One user's enrollment, as stored in `state_dir/users/<user>.toml`: plain TOML an admin can
//! read, holding the key and the emergency code hashes. The login state (last used step,
//! lockouts, last login, grace hosts, pending mailed code) is part of [`Record`] in memory but
//! lives in `users/<user>.state` (see `store.rs`): [`Record::state_text`] and
//! [`Record::apply_state`]. Records written before that split hold the state themselves, as do
//! archived ones ([`Record::to_full_text`]); [`Record::parse`] reads both forms.

use std::fmt;

use zeroize::Zeroizing;

use crate::emergency::{CodeSet, CodeSetError};
use crate::lockout::LockoutState;
use crate::toml_subset::{self, Fields, Writer};
use crate::totp::{self, Algorithm, Params};

pub const RECORD_VERSION: u32 = 1;

const FILE_HEADER: &str = "# twostep enrollment record. Written by pam_twostep and the `twostep` command.\n\
                           # Deleting this file switches two-step login off for this user (last resort;\n\
                           # prefer `twostep reset`). Keep it root-owned, mode 0600.\n";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Codes from an authenticator app (with an optional emailed fallback).
    Totp,
    /// Codes sent by email at each login; for users without a phone.
    Email,
}

impl Method {
    const CHOICES: [(&'static str, Method); 2] = [("totp", Method::Totp), ("email", Method::Email)];

    pub fn name(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::Email => "email",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub secret: SecretString,
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
    /// Steps accepted on each side; absent means the config's `totp.skew`.
    pub skew: Option<u8>,
    /// The last accepted time step; a code for this step or an earlier one is a replay.
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

    fn read(mut f: Fields) -> Result<TotpRecord, toml_subset::Error> {
        // Moved, not copied, out of the parsed tree, and wiped from here on.
        let secret = f.string("secret")?.ok_or_else(|| f.missing("secret"))?;
        let secret = SecretString::new(Zeroizing::new(secret));
        let algorithm = f
            .choice("algorithm", &Algorithm::CHOICES)?
            .ok_or_else(|| f.missing("algorithm"))?;
        let digits = f.u8("digits")?.ok_or_else(|| f.missing("digits"))?;
        let period = f.u32("period")?.ok_or_else(|| f.missing("period"))?;
        let skew = f.u8("skew")?;
        let last_step = f.u64("last_step")?.unwrap_or(0);
        f.finish()?;
        Ok(TotpRecord {
            secret,
            algorithm,
            digits,
            period,
            skew,
            last_step,
        })
    }
}

/// The emailed code waiting to be typed, and when codes were sent (for the send limits).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EmailState {
    /// Hex salt and SHA-256 hash of the pending code; empty when none is pending.
    pub salt: String,
    pub hash: String,
    pub expires: u64,
    /// Send times within the last hour, oldest first.
    pub sent: Vec<u64>,
}

impl EmailState {
    fn read(mut f: Fields) -> Result<EmailState, toml_subset::Error> {
        let state = EmailState {
            salt: f.string("salt")?.unwrap_or_default(),
            hash: f.string("hash")?.unwrap_or_default(),
            expires: f.u64("expires")?.unwrap_or(0),
            sent: f.u64s("sent")?.unwrap_or_default(),
        };
        f.finish()?;
        Ok(state)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastLogin {
    pub time: u64,
    pub rhost: String,
    pub service: String,
    pub method: String,
    /// The fleet host (`[store] host_id`) the login was on, set by `twostep serve-store`;
    /// empty in a file store, where every login is on this host.
    pub host_id: String,
}

impl LastLogin {
    fn read(mut f: Fields) -> Result<LastLogin, toml_subset::Error> {
        let time = f.u64("time")?.ok_or_else(|| f.missing("time"))?;
        let rhost = f.string("rhost")?.unwrap_or_default();
        let service = f.string("service")?.unwrap_or_default();
        let method = f.string("method")?.ok_or_else(|| f.missing("method"))?;
        let host_id = f.string("host_id")?.unwrap_or_default();
        f.finish()?;
        Ok(LastLogin {
            time,
            rhost,
            service,
            method,
            host_id,
        })
    }
}

/// A remote host that gave a right code, for the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraceHost {
    pub host: String,
    /// When it last gave a right code.
    pub time: u64,
}

impl GraceHost {
    fn read(mut f: Fields) -> Result<GraceHost, toml_subset::Error> {
        let host = f.string("host")?.ok_or_else(|| f.missing("host"))?;
        let time = f.u64("time")?.ok_or_else(|| f.missing("time"))?;
        f.finish()?;
        Ok(GraceHost { host, time })
    }
}

/// An open gate: the user completed a two-step login from `host` at `time`, through
/// `service`. Services that cannot prompt (Samba) let the user in from that address for a
/// while (`[gate]`, src/gate.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub host: String,
    pub time: u64,
    pub service: String,
}

impl Gate {
    fn read(mut f: Fields) -> Result<Gate, toml_subset::Error> {
        let host = f.string("host")?.ok_or_else(|| f.missing("host"))?;
        let time = f.u64("time")?.ok_or_else(|| f.missing("time"))?;
        let service = f.string("service")?.unwrap_or_default();
        f.finish()?;
        Ok(Gate {
            host,
            time,
            service,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub version: u32,
    pub user: String,
    pub method: Method,
    /// Unix time of enrollment.
    pub created: u64,
    pub email: Option<String>,
    /// Absent for `method = "email"`.
    pub totp: Option<TotpRecord>,
    pub emergency: CodeSet,
    pub lockout: LockoutState,
    pub last_login: Option<LastLogin>,
    pub grace: Vec<GraceHost>,
    /// Oldest first; at most [`crate::gate::MAX_GATES`].
    pub gates: Vec<Gate>,
    pub email_code: Option<EmailState>,
}

/// The login-state keys, as read from a `.state` payload or from a record that holds them.
struct LoginState {
    /// Top level in a `.state` payload; in a record it is `totp.last_step`.
    last_step: Option<u64>,
    lockout: LockoutState,
    last_login: Option<LastLogin>,
    grace: Vec<GraceHost>,
    gates: Vec<Gate>,
    email_code: Option<EmailState>,
}

impl LoginState {
    /// Takes the state tables out of `f`, and the top-level `last_step` of a `.state`
    /// payload when `payload` (in a record, a top-level `last_step` stays an unknown key).
    fn read(f: &mut Fields, payload: bool) -> Result<LoginState, toml_subset::Error> {
        Ok(LoginState {
            last_step: if payload { f.u64("last_step")? } else { None },
            lockout: f
                .table("lockout")?
                .map(LockoutState::read)
                .transpose()?
                .unwrap_or_default(),
            last_login: f.table("last_login")?.map(LastLogin::read).transpose()?,
            grace: f
                .tables("grace")?
                .unwrap_or_default()
                .into_iter()
                .map(GraceHost::read)
                .collect::<Result<_, _>>()?,
            gates: f
                .tables("gate")?
                .unwrap_or_default()
                .into_iter()
                .map(Gate::read)
                .collect::<Result<_, _>>()?,
            email_code: f.table("email_code")?.map(EmailState::read).transpose()?,
        })
    }
}

/// Why a record or a login state could not be read or written. No variant holds the key, a
/// hash or a code; the messages are logged and shown by the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not TOML, a missing, mistyped or unknown key (the codec's error). Shown as "line N:
    /// message" without the column: the line is enough in a machine-written file.
    Syntax(toml_subset::Error),
    /// A `version` this build does not read.
    Version(u32),
    /// The `user` key names someone other than the file's owner.
    OtherUser,
    /// `totp.digits` or `totp.period` out of range.
    Params(totp::ParamsError),
    /// `totp.skew` above 10.
    Skew,
    /// `totp.secret` is not a usable key.
    Secret(totp::SecretError),
    /// `method = "totp"` without a `[totp]` table.
    TotpTableMissing,
    /// `method = "email"` with a `[totp]` table.
    TotpTableWithEmail,
    /// `method = "email"` without an `email` address.
    EmailMissing,
    /// The `[emergency]` table is damaged.
    Emergency(CodeSetError),
    /// Writing: a number TOML cannot hold.
    TooLarge(toml_subset::TooLarge),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Syntax(e) => match e.pos.line {
                0 => f.write_str(&e.message),
                line => write!(f, "line {line}: {}", e.message),
            },
            RecordError::Version(version) => write!(
                f,
                "record version {version} is not supported (expected {RECORD_VERSION})"
            ),
            RecordError::OtherUser => f.write_str("the record belongs to another user"),
            RecordError::Params(e) => e.fmt(f),
            RecordError::Skew => f.write_str("totp.skew must be at most 10"),
            RecordError::Secret(e) => write!(f, "totp.secret: {e}"),
            RecordError::TotpTableMissing => f.write_str("method \"totp\" needs a [totp] table"),
            RecordError::TotpTableWithEmail => {
                f.write_str("method \"email\" must not have a [totp] table")
            }
            RecordError::EmailMissing => f.write_str("method \"email\" needs an email address"),
            RecordError::Emergency(e) => e.fmt(f),
            RecordError::TooLarge(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::Syntax(e) => Some(e),
            RecordError::Params(e) => Some(e),
            RecordError::Secret(e) => Some(e),
            RecordError::Emergency(e) => Some(e),
            RecordError::TooLarge(e) => Some(e),
            _ => None,
        }
    }
}

impl From<toml_subset::Error> for RecordError {
    fn from(e: toml_subset::Error) -> RecordError {
        RecordError::Syntax(e)
    }
}

impl From<toml_subset::TooLarge> for RecordError {
    fn from(e: toml_subset::TooLarge) -> RecordError {
        RecordError::TooLarge(e)
    }
}

impl Record {
    /// Parses a record and checks what it claims; `user` is who it must belong to.
    pub fn parse(text: &str, user: &str) -> Result<Record, RecordError> {
        let record = Record::read(text)?;
        record.validate(user)?;
        Ok(record)
    }

    /// The tables and keys of a record; unknown keys are errors, as everywhere in twostep.
    fn read(text: &str) -> Result<Record, toml_subset::Error> {
        let mut f = Fields::parse(text)?;
        let version = f.u32("version")?.ok_or_else(|| f.missing("version"))?;
        let user = f.string("user")?.ok_or_else(|| f.missing("user"))?;
        let method = f
            .choice("method", &Method::CHOICES)?
            .ok_or_else(|| f.missing("method"))?;
        let created = f.u64("created")?.ok_or_else(|| f.missing("created"))?;
        let email = f.string("email")?;
        let totp = f.table("totp")?.map(TotpRecord::read).transpose()?;
        let emergency = f
            .table("emergency")?
            .ok_or_else(|| f.missing("emergency"))?;
        let emergency = CodeSet::read(emergency)?;
        let state = LoginState::read(&mut f, false)?;
        f.finish()?;
        Ok(Record {
            version,
            user,
            method,
            created,
            email,
            totp,
            emergency,
            lockout: state.lockout,
            last_login: state.last_login,
            grace: state.grace,
            gates: state.gates,
            email_code: state.email_code,
        })
    }

    fn validate(&self, user: &str) -> Result<(), RecordError> {
        if self.version != RECORD_VERSION {
            return Err(RecordError::Version(self.version));
        }
        if self.user != user {
            return Err(RecordError::OtherUser);
        }
        match (self.method, &self.totp) {
            (Method::Totp, Some(t)) => {
                totp::validate_params(t.digits, t.period).map_err(RecordError::Params)?;
                if t.skew.is_some_and(|s| s > 10) {
                    return Err(RecordError::Skew);
                }
                totp::decode_secret(t.secret.expose()).map_err(RecordError::Secret)?;
            }
            (Method::Totp, None) => return Err(RecordError::TotpTableMissing),
            (Method::Email, Some(_)) => return Err(RecordError::TotpTableWithEmail),
            (Method::Email, None) => {}
        }
        if self.method == Method::Email && self.email.is_none() {
            return Err(RecordError::EmailMissing);
        }
        self.emergency.validate().map_err(RecordError::Emergency)
    }

    /// The record file: a header that tells an admin what the file is, then the enrollment
    /// without the login state. The layout is the one the first writer (serde and the `toml`
    /// crate) used.
    pub fn to_file_text(&self) -> Result<Zeroizing<String>, RecordError> {
        self.text(false)
    }

    /// The record file with the login state folded in, as `twostep reset` archives it.
    pub fn to_full_text(&self) -> Result<Zeroizing<String>, RecordError> {
        self.text(true)
    }

    fn text(&self, with_state: bool) -> Result<Zeroizing<String>, RecordError> {
        // The tables after [totp] hold no key; written first, they tell how large the text
        // gets, so that the buffer holding the key never grows (growing would leave a copy).
        let mut tables = String::with_capacity(1024);
        let mut w = Writer::new(&mut tables);
        self.emergency.write(&mut w);
        if with_state {
            self.lockout.write(&mut w);
            self.write_login_state(&mut w);
        }
        w.finish()?;

        // Escaping makes a string at most 6 times longer (`\u0001`).
        let strings = self.user.len()
            + self.email.as_ref().map_or(0, String::len)
            + self.totp.as_ref().map_or(0, |t| t.secret.expose().len());
        let capacity = FILE_HEADER.len() + 512 + 6 * strings + tables.len();
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        text.push_str(FILE_HEADER);
        let mut w = Writer::new(&mut text);
        w.u64("version", self.version.into());
        w.string("user", &self.user);
        w.string("method", self.method.name());
        w.u64("created", self.created);
        if let Some(email) = &self.email {
            w.string("email", email);
        }
        if let Some(t) = &self.totp {
            w.table(&["totp"]);
            w.string("secret", t.secret.expose());
            w.string("algorithm", t.algorithm.name());
            w.u64("digits", t.digits.into());
            w.u64("period", t.period.into());
            if let Some(skew) = t.skew {
                w.u64("skew", skew.into());
            }
            if with_state {
                w.u64("last_step", t.last_step);
            }
        }
        w.finish()?;
        text.push_str(&tables);
        Ok(text)
    }

    /// The login state, as the payload of a `.state` file: `last_step` (for TOTP users), then
    /// the same tables a record used to hold.
    pub fn state_text(&self) -> Result<Zeroizing<String>, RecordError> {
        let mut text = Zeroizing::new(String::with_capacity(512));
        let mut w = Writer::new(&mut text);
        if let Some(t) = &self.totp {
            w.u64("last_step", t.last_step);
        }
        self.lockout.write(&mut w);
        self.write_login_state(&mut w);
        w.finish()?;
        Ok(text)
    }

    /// Replaces every login-state field with those in `text` (a `.state` payload); absent
    /// fields are empty. Unknown keys are errors, as everywhere in twostep.
    pub fn apply_state(&mut self, text: &str) -> Result<(), RecordError> {
        let read = || -> Result<LoginState, toml_subset::Error> {
            let mut f = Fields::parse(text)?;
            let state = LoginState::read(&mut f, true)?;
            f.finish()?;
            Ok(state)
        };
        let state = read()?;
        if let Some(t) = self.totp.as_mut() {
            t.last_step = state.last_step.unwrap_or(0);
        }
        self.lockout = state.lockout;
        self.last_login = state.last_login;
        self.grace = state.grace;
        self.gates = state.gates;
        self.email_code = state.email_code;
        Ok(())
    }

    fn write_login_state(&self, w: &mut Writer<'_>) {
        if let Some(last) = &self.last_login {
            w.table(&["last_login"]);
            w.u64("time", last.time);
            w.string("rhost", &last.rhost);
            w.string("service", &last.service);
            w.string("method", &last.method);
            if !last.host_id.is_empty() {
                w.string("host_id", &last.host_id);
            }
        }
        for grace in &self.grace {
            w.array_table(&["grace"]);
            w.string("host", &grace.host);
            w.u64("time", grace.time);
        }
        for gate in &self.gates {
            w.array_table(&["gate"]);
            w.string("host", &gate.host);
            w.u64("time", gate.time);
            w.string("service", &gate.service);
        }
        if let Some(code) = &self.email_code {
            w.table(&["email_code"]);
            w.string("salt", &code.salt);
            w.string("hash", &code.hash);
            w.u64("expires", code.expires);
            w.u64s("sent", &code.sent);
        }
    }
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
            gates: Vec::new(),
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

    /// A record with every login-state field set.
    fn busy() -> Record {
        let mut record = sample();
        if let Some(t) = record.totp.as_mut() {
            t.last_step = 60_000_123;
        }
        record.lockout.failures = vec![1_800_000_100, 1_800_000_200];
        record.lockout.locked_until = 1_800_000_900;
        record.lockout.hosts = vec![crate::lockout::HostLockout {
            host: "192.0.2.\"7\"".into(),
            failures: vec![1_800_000_150],
            locked_until: 0,
        }];
        record.last_login = Some(LastLogin {
            time: 1_800_000_050,
            rhost: "2001:db8::1".into(),
            service: "sshd".into(),
            method: "totp".into(),
            host_id: "nas-2".into(),
        });
        record.grace = vec![GraceHost {
            host: "host\nname".into(),
            time: 1_800_000_050,
        }];
        record.gates = vec![Gate {
            host: "198.51.100.4".into(),
            time: 1_800_000_050,
            service: "cockpit\t\"x\"".into(),
        }];
        record.email_code = Some(EmailState {
            salt: "00ff".into(),
            hash: "abcd".into(),
            expires: 1_800_000_600,
            sent: vec![1_800_000_000],
        });
        record
    }

    /// The record file leaves the login state out; the state text carries all of it; applied
    /// to the record read back, it gives the whole record again. The full (archive) text holds
    /// both.
    #[test]
    fn record_and_state_split_and_join() {
        let record = busy();
        let file = record.to_file_text().unwrap();
        assert!(
            !file.contains("last_step") && !file.contains("lockout"),
            "{}",
            *file
        );
        let mut joined = Record::parse(&file, "alice").unwrap();
        assert_ne!(joined, record);
        joined.apply_state(&record.state_text().unwrap()).unwrap();
        assert_eq!(joined, record);
        let full = record.to_full_text().unwrap();
        assert_eq!(Record::parse(&full, "alice").unwrap(), record);
        // `last_step` is a state key: at the top of a record it is unknown.
        let top = file.replacen("version = 1", "last_step = 5\nversion = 1", 1);
        let err = Record::parse(&top, "alice").unwrap_err().to_string();
        assert!(err.contains("unknown key `last_step`"), "{err}");
        // An empty state clears every field; unknown keys are refused with their line.
        joined.apply_state("").unwrap();
        assert_eq!(joined, Record::parse(&file, "alice").unwrap());
        let err = joined
            .apply_state("last_step = 1\nsecret = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 2:") && !err.contains('x'), "{err}");
    }

    /// The largest login state the config allows still fits a slot file: one failure short of
    /// the user-wide limit (reaching it clears the list and locks the user, after which nothing
    /// more is written), spread over as many hosts as are tracked, with the longest names.
    #[test]
    fn the_largest_login_state_fits_a_slot_file() {
        let policy = crate::config::Lockout {
            max_failures: 1000,
            max_failures_user: 10_000,
            window_secs: u64::from(u32::MAX),
            duration_secs: 60,
        };
        let mut record = busy();
        record.lockout = LockoutState::default();
        let mut now = 1_800_000_000;
        'hosts: for host in 0.. {
            let name = format!("{host:\x01<255}");
            for _ in 0..policy.max_failures - 1 {
                if record.lockout.failures.len() + 1 == policy.max_failures_user as usize {
                    break 'hosts;
                }
                now += 1;
                assert_eq!(record.lockout.record_failure(&name, now, &policy), None);
            }
        }
        let text = record.state_text().unwrap();
        assert!(text.len() > 300_000, "{}", text.len());
        let slot = (text.len() + 72).next_power_of_two();
        assert!(
            2 * slot <= crate::slotfile::MAX_FILE,
            "{} bytes",
            text.len()
        );
    }

    #[test]
    fn parse_errors_do_not_repeat_values() {
        let text = sample().to_file_text().unwrap().to_string();
        let bad = text.replace("digits = 6", "digits = \"JBSWY3DPEHPK3PXP\"");
        let err = Record::parse(&bad, "alice").unwrap_err().to_string();
        assert!(!err.contains("JBSWY3DP"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn numbers_toml_cannot_hold_are_not_written() {
        let mut record = sample();
        record.created = u64::MAX;
        assert!(
            record
                .to_file_text()
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }

    #[test]
    fn errors_say_where_and_what_but_not_the_value() {
        let text = sample().to_file_text().unwrap().to_string();
        let cases = [
            (
                text.replace("[totp]\n", "[totp]\nsecrett = \"JBSWY3DP\"\n"),
                "line 10: unknown key `totp.secrett`",
            ),
            (
                text.replace("period = 30\n", ""),
                "line 9: `totp.period` is missing",
            ),
            (text.replace("user = \"alice\"\n", ""), "`user` is missing"),
            (
                text.replace("digits = 6", "digits = 6.0"),
                "line 12: floats are not supported",
            ),
            (
                text.replace("digits = 6", "digits = 600"),
                "line 12: `totp.digits` must be a whole number from 0 to 255",
            ),
        ];
        for (bad, expected) in cases {
            let err = Record::parse(&bad, "alice").unwrap_err().to_string();
            assert!(err.starts_with(expected), "{expected}: {err}");
            assert!(!err.contains("JBSW"), "{err}");
        }
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
                .to_string()
                .contains("another user")
        );
        assert_eq!(
            Record::parse(&text, "bob"),
            Err(RecordError::OtherUser),
            "typed, for callers that match"
        );
        assert_eq!(
            Record::parse(&text.replace("rounds = 20000", "rounds = 0"), "alice")
                .unwrap_err()
                .to_string(),
            "emergency rounds must be 1 to 10000000"
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
            let err = Record::parse(&bad, "alice").unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
