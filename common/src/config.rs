//! `/etc/twostep/twostep.toml`: what the module and the CLI read before anything else.
//!
//! Unknown keys are errors: a mistyped `unenrolled` must not silently fall back to a default
//! that lets people in.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::network::Network;
use crate::securefs;
use crate::self_service::SelfService;
use crate::store_config::{StoreConfig, StoreConfigError};
use crate::toml_subset::{self, Fields};
use crate::totp::{Algorithm, ParamsError};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/twostep/twostep.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/twostep";
pub const DEFAULT_LABEL: &str = "{user}@{host}";
/// Environment variable the CLI (never the module) reads for the config path.
pub const CONFIG_ENV: &str = "TWOSTEP_CONFIG";
/// A config file larger than this is refused rather than parsed.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// What happens to a user who has no enrollment record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unenrolled {
    /// Not asked for a code; the module returns PAM_IGNORE (never PAM_SUCCESS).
    Allow,
    /// Refused.
    Deny,
}

/// What happens at login to a user the policy enforces but who has no enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnenrolled {
    /// Refused until an admin enrolls them.
    Deny,
    /// Enrolled inside the login conversation (QR code, first code), after the password.
    Enroll,
}

/// Who must use two-step login, and when the code is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub enforce_users: Vec<String>,
    /// Members, primary or supplementary, of these groups are enforced.
    pub enforce_groups: Vec<String>,
    /// Never enforced (they may still enroll voluntarily; an enrolled user is always asked).
    pub exempt_users: Vec<String>,
    pub exempt_groups: Vec<String>,
    pub on_unenrolled: OnUnenrolled,
    /// Logins whose PAM_RHOST is inside one of these skip the code.
    pub trusted_networks: Vec<Network>,
    /// Logins without PAM_RHOST (console, su) skip the code.
    pub trust_local: bool,
    /// Seconds after a successful code during which the same user from the same remote host is
    /// not asked again; 0 is off.
    pub grace_period: u64,
}

impl Policy {
    fn read(mut f: Fields) -> Result<Policy, toml_subset::Error> {
        let mut p = Policy::default();
        set(&mut p.enforce_users, f.strings("enforce_users")?);
        set(&mut p.enforce_groups, f.strings("enforce_groups")?);
        set(&mut p.exempt_users, f.strings("exempt_users")?);
        set(&mut p.exempt_groups, f.strings("exempt_groups")?);
        let on_unenrolled = [
            ("deny", OnUnenrolled::Deny),
            ("enroll", OnUnenrolled::Enroll),
        ];
        set(
            &mut p.on_unenrolled,
            f.choice("on_unenrolled", &on_unenrolled)?,
        );
        set(
            &mut p.trusted_networks,
            f.list("trusted_networks", Network::parse)?,
        );
        set(&mut p.trust_local, f.boolean("trust_local")?);
        set(&mut p.grace_period, f.u64("grace_period")?);
        f.finish()?;
        Ok(p)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            enforce_users: Vec::new(),
            enforce_groups: Vec::new(),
            exempt_users: Vec::new(),
            exempt_groups: Vec::new(),
            on_unenrolled: OnUnenrolled::Deny,
            trusted_networks: Vec::new(),
            trust_local: false,
            grace_period: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpDefaults {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
    /// Steps accepted before and after the current one.
    pub skew: u8,
}

impl TotpDefaults {
    fn read(mut f: Fields) -> Result<TotpDefaults, toml_subset::Error> {
        let mut t = TotpDefaults::default();
        set(
            &mut t.algorithm,
            f.choice("algorithm", &Algorithm::CHOICES)?,
        );
        set(&mut t.digits, f.u8("digits")?);
        set(&mut t.period, f.u32("period")?);
        set(&mut t.skew, f.u8("skew")?);
        f.finish()?;
        Ok(t)
    }
}

impl Default for TotpDefaults {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            skew: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    /// Failed codes from one remote host within `window_secs` that lock the user out from
    /// that host (local logins count as one host).
    pub max_failures: u32,
    /// Failed codes from all hosts together within `window_secs` that lock the user out
    /// everywhere.
    pub max_failures_user: u32,
    pub window_secs: u64,
    /// How long a lockout lasts.
    pub duration_secs: u64,
}

impl Lockout {
    fn read(mut f: Fields) -> Result<Lockout, toml_subset::Error> {
        let mut l = Lockout::default();
        set(&mut l.max_failures, f.u32("max_failures")?);
        set(&mut l.max_failures_user, f.u32("max_failures_user")?);
        set(&mut l.window_secs, f.u64("window_secs")?);
        set(&mut l.duration_secs, f.u64("duration_secs")?);
        f.finish()?;
        Ok(l)
    }
}

impl Default for Lockout {
    fn default() -> Self {
        Self {
            // docs/configuration.md, "Lockout", explains these numbers: three mistyped SSH
            // connections (three answers each) do not lock a user out; an attacker who has the
            // password gets at most 30 guesses per 15 minutes from all hosts together.
            max_failures: 10,
            max_failures_user: 30,
            window_secs: 15 * 60,
            duration_secs: 15 * 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emergency {
    /// How many emergency codes a new set holds.
    pub count: u8,
}

impl Emergency {
    fn read(mut f: Fields) -> Result<Emergency, toml_subset::Error> {
        let mut e = Emergency::default();
        set(&mut e.count, f.u8("count")?);
        f.finish()?;
        Ok(e)
    }
}

impl Default for Emergency {
    fn default() -> Self {
        Self { count: 10 }
    }
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same machine or a trusted LAN.
    None,
}

/// Emailed codes: for users without a phone, and as the lost-phone fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Empty: emailed codes are off.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    /// Root-only file (0600) holding the SMTP password, so the password is not in this file.
    pub password_file: PathBuf,
    pub from: String,
    pub subject: String,
    pub code_digits: u8,
    pub lifetime_secs: u64,
    pub max_per_minute: u32,
    pub max_per_hour: u32,
    /// Seconds for connecting and talking to the server; the module never waits much longer.
    pub timeout_secs: u64,
    /// The program the module runs to send a code (mail is not sent from inside the login
    /// process): `HELPER --config CONFIG send-code`.
    pub helper: PathBuf,
}

impl Default for Email {
    fn default() -> Self {
        Self {
            smtp_host: String::new(),
            smtp_port: 587,
            security: SmtpSecurity::Starttls,
            username: String::new(),
            password_file: PathBuf::new(),
            from: String::new(),
            subject: "Your verification code".into(),
            code_digits: 6,
            lifetime_secs: 600,
            max_per_minute: 1,
            max_per_hour: 5,
            timeout_secs: 10,
            helper: PathBuf::from("/usr/sbin/twostep"),
        }
    }
}

impl Email {
    fn read(mut f: Fields) -> Result<Email, toml_subset::Error> {
        let mut e = Email::default();
        set(&mut e.smtp_host, f.string("smtp_host")?);
        set(&mut e.smtp_port, f.u16("smtp_port")?);
        let security = [
            ("starttls", SmtpSecurity::Starttls),
            ("tls", SmtpSecurity::Tls),
            ("none", SmtpSecurity::None),
        ];
        set(&mut e.security, f.choice("security", &security)?);
        set(&mut e.username, f.string("username")?);
        set(
            &mut e.password_file,
            f.string("password_file")?.map(PathBuf::from),
        );
        set(&mut e.from, f.string("from")?);
        set(&mut e.subject, f.string("subject")?);
        set(&mut e.code_digits, f.u8("code_digits")?);
        set(&mut e.lifetime_secs, f.u64("lifetime_secs")?);
        set(&mut e.max_per_minute, f.u32("max_per_minute")?);
        set(&mut e.max_per_hour, f.u32("max_per_hour")?);
        set(&mut e.timeout_secs, f.u64("timeout_secs")?);
        set(&mut e.helper, f.string("helper")?.map(PathBuf::from));
        f.finish()?;
        Ok(e)
    }

    pub fn enabled(&self) -> bool {
        !self.smtp_host.is_empty()
    }

    fn validate(&self) -> Result<(), EmailConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if !self.from.contains('@') || self.from.contains(char::is_whitespace) {
            return Err(EmailConfigError::From);
        }
        if !(6..=10).contains(&self.code_digits) {
            return Err(EmailConfigError::CodeDigits);
        }
        if !(60..=24 * 3600).contains(&self.lifetime_secs) {
            return Err(EmailConfigError::Lifetime);
        }
        if self.max_per_minute == 0 || self.max_per_hour < self.max_per_minute {
            return Err(EmailConfigError::Rate);
        }
        if !(1..=120).contains(&self.timeout_secs) {
            return Err(EmailConfigError::Timeout);
        }
        if !self.helper.is_absolute() {
            return Err(EmailConfigError::Helper);
        }
        if !self.username.is_empty() && !self.password_file.is_absolute() {
            return Err(EmailConfigError::PasswordFile);
        }
        if self.subject.contains(['\r', '\n']) {
            return Err(EmailConfigError::Subject);
        }
        Ok(())
    }
}

/// The gate that opens services which cannot prompt (Samba) to users who completed a two-step
/// login from the same address recently (docs/smb.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// How long a two-step login keeps the gate open for its address; 0 turns the gate off
    /// (the account mode then refuses every enrolled user).
    pub window_secs: u64,
    /// PAM services whose two-step logins open the gate; empty means every service that asked
    /// for a code.
    pub opened_by: Vec<String>,
}

/// 12 hours: a working day's SMB use after one login on the web page or by SSH.
pub const DEFAULT_GATE_WINDOW: u64 = 43_200;
const MAX_GATE_WINDOW: u64 = 30 * 24 * 3600;

impl Gate {
    fn read(mut f: Fields) -> Result<Gate, toml_subset::Error> {
        let mut g = Gate::default();
        set(&mut g.window_secs, f.u64("window_secs")?);
        set(&mut g.opened_by, f.strings("opened_by")?);
        f.finish()?;
        Ok(g)
    }

    /// Whether a two-step login through `service` opens the gate.
    pub fn opened_by(&self, service: &str) -> bool {
        self.window_secs > 0
            && (self.opened_by.is_empty() || self.opened_by.iter().any(|s| s == service))
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            window_secs: DEFAULT_GATE_WINDOW,
            opened_by: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// Syslog socket; events go to facility authpriv.
    pub socket: PathBuf,
}

impl Log {
    fn read(mut f: Fields) -> Result<Log, toml_subset::Error> {
        let mut l = Log::default();
        set(&mut l.socket, f.string("socket")?.map(PathBuf::from));
        f.finish()?;
        Ok(l)
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/dev/log"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub state_dir: PathBuf,
    /// Shown in authenticator apps; defaults to the host name when empty.
    pub issuer: String,
    /// The account name in authenticator apps; `{user}` and `{host}` are replaced.
    pub label: String,
    pub unenrolled: Unenrolled,
    pub policy: Policy,
    pub totp: TotpDefaults,
    pub lockout: Lockout,
    pub emergency: Emergency,
    pub email: Email,
    pub gate: Gate,
    pub self_service: SelfService,
    pub store: StoreConfig,
    pub log: Log,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            issuer: String::new(),
            label: DEFAULT_LABEL.to_string(),
            unenrolled: Unenrolled::Allow,
            policy: Policy::default(),
            totp: TotpDefaults::default(),
            lockout: Lockout::default(),
            emergency: Emergency::default(),
            email: Email::default(),
            gate: Gate::default(),
            self_service: SelfService::default(),
            store: StoreConfig::default(),
            log: Log::default(),
        }
    }
}

/// What a login does without its config file: the notice to log (default path), or the error.
fn missing(path: &Path, is_default: bool) -> Result<String, Error> {
    if is_default {
        return Ok(format!(
            "{} does not exist: using the built-in defaults (install the default config, or \
             run packaging/install.sh)",
            path.display()
        ));
    }
    Err(Error::Config {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message: "does not exist (named by config= in the PAM service): refusing all logins".into(),
    })
}

impl Config {
    /// Loads `path`; a missing file gives the built-in defaults. The file must be owned by root
    /// and not writable by group or others, as must every directory above it, because it decides
    /// where enrollments live and who may skip the second step.
    pub fn load(path: &Path) -> Result<Config, Error> {
        Ok(Config::load_if_present(path)?.unwrap_or_default())
    }

    /// Loads the config a login uses. A missing default config means the built-in defaults,
    /// with a notice to log at every login. A missing config that a `config=` argument names
    /// is an error: a typo must not silently drop enforcement, `deny` and trusted networks.
    pub fn load_for_login(
        path: &Path,
        is_default: bool,
    ) -> Result<(Config, Option<String>), Error> {
        match Config::load_if_present(path)? {
            Some(config) => Ok((config, None)),
            None => missing(path, is_default).map(|notice| (Config::default(), Some(notice))),
        }
    }

    /// [`Config::load`], with `None` for a missing file.
    pub fn load_if_present(path: &Path) -> Result<Option<Config>, Error> {
        let text =
            match securefs::read_root_file(path, MAX_CONFIG_BYTES, securefs::Access::Readable)? {
                Some(bytes) => bytes,
                None => return Ok(None),
            };
        let text = std::str::from_utf8(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("not valid UTF-8 (byte {})", e.valid_up_to()),
        })?;
        Config::parse(path, text).map(Some)
    }

    /// Parses config text; `path` only labels errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let config = Config::read(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            line: e.pos.line,
            column: e.pos.column,
            message: e.message,
        })?;
        config.validate().map_err(|e| Error::Config {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            message: e.to_string(),
        })?;
        Ok(config)
    }

    /// Every key is optional; absent ones keep their defaults, unknown ones are errors.
    fn read(text: &str) -> Result<Config, toml_subset::Error> {
        let mut f = Fields::parse(text)?;
        let mut c = Config::default();
        set(&mut c.state_dir, f.string("state_dir")?.map(PathBuf::from));
        set(&mut c.issuer, f.string("issuer")?);
        set(&mut c.label, f.string("label")?);
        let unenrolled = [("allow", Unenrolled::Allow), ("deny", Unenrolled::Deny)];
        set(&mut c.unenrolled, f.choice("unenrolled", &unenrolled)?);
        set(
            &mut c.policy,
            f.table("policy")?.map(Policy::read).transpose()?,
        );
        set(
            &mut c.totp,
            f.table("totp")?.map(TotpDefaults::read).transpose()?,
        );
        set(
            &mut c.lockout,
            f.table("lockout")?.map(Lockout::read).transpose()?,
        );
        set(
            &mut c.emergency,
            f.table("emergency")?.map(Emergency::read).transpose()?,
        );
        set(
            &mut c.email,
            f.table("email")?.map(Email::read).transpose()?,
        );
        set(&mut c.gate, f.table("gate")?.map(Gate::read).transpose()?);
        set(
            &mut c.self_service,
            f.table("self_service")?
                .map(SelfService::read)
                .transpose()?,
        );
        set(
            &mut c.store,
            f.table("store")?.map(StoreConfig::read).transpose()?,
        );
        set(&mut c.log, f.table("log")?.map(Log::read).transpose()?);
        f.finish()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.state_dir.is_absolute() {
            return Err(ConfigError::StateDir);
        }
        crate::totp::validate_params(self.totp.digits, self.totp.period)?;
        if self.totp.skew > 10 {
            return Err(ConfigError::TotpSkew);
        }
        if self.lockout.max_failures == 0 {
            return Err(ConfigError::MaxFailuresZero);
        }
        if self.lockout.max_failures > 1000 {
            return Err(ConfigError::MaxFailuresTooMany);
        }
        if self.lockout.max_failures_user < self.lockout.max_failures
            || self.lockout.max_failures_user > 10_000
        {
            return Err(ConfigError::MaxFailuresUser);
        }
        if self.policy.grace_period > 30 * 24 * 3600 {
            return Err(ConfigError::GracePeriod);
        }
        if self.gate.window_secs > MAX_GATE_WINDOW {
            return Err(ConfigError::GateWindow);
        }
        if self
            .gate
            .opened_by
            .iter()
            .any(|s| s.is_empty() || s.len() > 64)
        {
            return Err(ConfigError::GateOpenedBy);
        }
        self.self_service.validate()?;
        self.store.validate().map_err(ConfigError::Store)?;
        if !(1..=50).contains(&self.emergency.count) {
            return Err(ConfigError::EmergencyCount);
        }
        if self.issuer.contains(':') || self.issuer.len() > 64 {
            return Err(ConfigError::Issuer);
        }
        self.email.validate()?;
        if self.label.is_empty() || self.label.contains(':') || self.label.len() > 64 {
            return Err(ConfigError::Label);
        }
        Ok(())
    }

    /// The issuer shown in authenticator apps.
    pub fn issuer_or_hostname(&self) -> String {
        if !self.issuer.is_empty() {
            return self.issuer.clone();
        }
        hostname()
    }

    /// The account name shown in authenticator apps for `user`.
    pub fn account_label(&self, user: &str) -> String {
        self.label
            .replace("{user}", user)
            .replace("{host}", &hostname())
            .replace(':', "_")
    }
}

/// This machine's host name ("twostep" if it has none usable).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty() && !h.contains(':'))
        .unwrap_or_else(|| "twostep".to_string())
}

/// A value given in the file replaces the default.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// Why a config that parsed was refused: a value out of range or two that do not fit together.
/// Reported as `Error::Config` with the file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// `state_dir` is not absolute.
    StateDir,
    /// `totp.digits` or `totp.period` out of range.
    Totp(ParamsError),
    TotpSkew,
    MaxFailuresZero,
    MaxFailuresTooMany,
    /// `lockout.max_failures_user` below `max_failures` or above 10000.
    MaxFailuresUser,
    GracePeriod,
    GateWindow,
    GateOpenedBy,
    /// `self_service.pam_service` is not a PAM service name.
    SelfServicePamService,
    EmergencyCount,
    Issuer,
    Label,
    Email(EmailConfigError),
    Store(StoreConfigError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::Totp(e) => return e.fmt(f),
            ConfigError::Email(e) => return e.fmt(f),
            ConfigError::Store(e) => return e.fmt(f),
            ConfigError::StateDir => "state_dir must be an absolute path",
            ConfigError::TotpSkew => "totp.skew must be between 0 and 10 steps",
            ConfigError::MaxFailuresZero => "lockout.max_failures must be at least 1",
            ConfigError::MaxFailuresTooMany => "lockout.max_failures must be at most 1000",
            ConfigError::MaxFailuresUser => {
                "lockout.max_failures_user must be at least lockout.max_failures and at most 10000"
            }
            ConfigError::GracePeriod => {
                "policy.grace_period must be at most 30 days (2592000 seconds)"
            }
            ConfigError::GateWindow => "gate.window_secs must be at most 30 days (2592000 seconds)",
            ConfigError::GateOpenedBy => {
                "gate.opened_by names PAM services: 1 to 64 characters each"
            }
            ConfigError::SelfServicePamService => {
                "self_service.pam_service must be a PAM service name (1 to 64 letters, digits, \
                 '-', '_' or '.', not starting with '.')"
            }
            ConfigError::EmergencyCount => "emergency.count must be between 1 and 50",
            ConfigError::Issuer => "issuer must be at most 64 characters and contain no ':'",
            ConfigError::Label => "label must be 1 to 64 characters and contain no ':'",
        })
    }
}

impl From<ParamsError> for ConfigError {
    fn from(e: ParamsError) -> ConfigError {
        ConfigError::Totp(e)
    }
}

impl From<EmailConfigError> for ConfigError {
    fn from(e: EmailConfigError) -> ConfigError {
        ConfigError::Email(e)
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Totp(e) => Some(e),
            ConfigError::Email(e) => Some(e),
            _ => None,
        }
    }
}

/// Why the `[email]` settings were refused (checked only when `smtp_host` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailConfigError {
    From,
    CodeDigits,
    Lifetime,
    /// `max_per_minute` is 0 or above `max_per_hour`.
    Rate,
    Timeout,
    Helper,
    PasswordFile,
    Subject,
}

impl fmt::Display for EmailConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmailConfigError::From => "email.from must be an email address when smtp_host is set",
            EmailConfigError::CodeDigits => "email.code_digits must be 6 to 10",
            EmailConfigError::Lifetime => "email.lifetime_secs must be 60 to 86400",
            EmailConfigError::Rate => {
                "email.max_per_minute must be at least 1 and max_per_hour at least max_per_minute"
            }
            EmailConfigError::Timeout => "email.timeout_secs must be 1 to 120",
            EmailConfigError::Helper => "email.helper must be an absolute path",
            EmailConfigError::PasswordFile => {
                "email.password_file must be an absolute path when username is set"
            }
            EmailConfigError::Subject => "email.subject must be one line",
        })
    }
}

impl std::error::Error for EmailConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(Path::new("/etc/twostep/twostep.toml"), text)
    }

    #[test]
    fn a_missing_config_is_noticed_or_refused() {
        let default = Path::new(DEFAULT_CONFIG_PATH);
        let notice = missing(default, true).unwrap();
        assert!(
            notice.contains("/etc/twostep/twostep.toml does not exist"),
            "{notice}"
        );
        let typo = Path::new("/etc/twostep/twostpe.toml");
        let err = missing(typo, false).unwrap_err().to_string();
        assert!(
            err.starts_with("/etc/twostep/twostpe.toml: does not exist"),
            "{err}"
        );
        assert!(err.contains("refusing all logins"), "{err}");
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(Config::default().unenrolled, Unenrolled::Allow);
        assert_eq!(Config::default().lockout.max_failures, 10);
        assert_eq!(Config::default().lockout.max_failures_user, 30);
    }

    #[test]
    fn reads_all_sections() {
        let c = parse(
            "state_dir = \"/srv/2fa\"\nissuer = \"nas\"\nunenrolled = \"deny\"\n\
             [totp]\nalgorithm = \"SHA256\"\ndigits = 8\nperiod = 60\nskew = 2\n\
             [lockout]\nmax_failures = 3\nwindow_secs = 60\nduration_secs = 120\n\
             [emergency]\ncount = 5\n[log]\nsocket = \"/run/log\"\n\
             [policy]\nenforce_groups = [\"admins\"]\non_unenrolled = \"enroll\"\n\
             trusted_networks = [\"192.168.1.0/24\", \"fd00::/8\"]\ngrace_period = 600\n",
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/srv/2fa"));
        assert_eq!(c.unenrolled, Unenrolled::Deny);
        assert_eq!(c.totp.algorithm, Algorithm::Sha256);
        assert_eq!((c.totp.digits, c.totp.period, c.totp.skew), (8, 60, 2));
        assert_eq!(c.lockout.duration_secs, 120);
        assert_eq!(c.emergency.count, 5);
        assert_eq!(c.policy.enforce_groups, vec!["admins".to_string()]);
        assert_eq!(c.policy.on_unenrolled, OnUnenrolled::Enroll);
        assert_eq!(c.policy.trusted_networks.len(), 2);
        assert_eq!(c.policy.grace_period, 600);
    }

    #[test]
    fn email_is_off_until_a_host_is_set() {
        assert!(!Config::default().email.enabled());
        let c = parse("[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 2525\nsecurity = \"none\"\nfrom = \"nas@example.com\"\n").unwrap();
        assert!(c.email.enabled());
        assert_eq!(c.email.security, SmtpSecurity::None);
        assert_eq!((c.email.max_per_minute, c.email.max_per_hour), (1, 5));
        assert_eq!(c.email.lifetime_secs, 600);
        assert_eq!(c.email.timeout_secs, 10);
    }

    /// The packaged config documents every key commented out with its default: uncommented,
    /// it must parse to exactly the built-in defaults.
    #[test]
    fn packaged_config_lists_the_defaults() {
        let packaged = include_str!("../../packaging/twostep.toml");
        let uncommented: String = packaged
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            uncommented.contains("\nmax_failures_user = 30"),
            "{uncommented}"
        );
        assert_eq!(parse(&uncommented).unwrap(), Config::default());
    }

    #[test]
    fn labels_fill_in_user_and_host() {
        let c = parse("label = \"{user} on nas\"").unwrap();
        assert_eq!(c.account_label("alice"), "alice on nas");
        assert!(Config::default().account_label("bob").starts_with("bob@"));
    }

    #[test]
    fn error_names_file_line_and_column() {
        let err = parse("issuer = \"x\"\nunenrolled = \"maybe\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/twostep/twostep.toml:2:14:"),
            "{text}"
        );
    }

    #[test]
    fn errors_point_at_the_key_or_value() {
        for (text, expected) in [
            ("[totp]\ndigits = 6.5\n", ":2:10: floats are not supported"),
            (
                "label = \"\u{e9}\" x = 1",
                ":1:13: expected the end of the line",
            ),
            ("[policy]\nx = 1\n", ":2:1: unknown key `policy.x`"),
            ("[polcy]\n", ":1:2: unknown key `polcy`"),
            (
                "[policy]\ntrusted_networks = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n",
                ":2:35: `policy.trusted_networks`: \"10.0.0.1/8\" has host bits set",
            ),
            (
                "[email]\nsmtp_port = 70000\n",
                ":2:13: `email.smtp_port` must be a whole number from 0 to 65535",
            ),
            (
                "[log]\nsocket = 1\n",
                ":2:10: `log.socket` must be a string",
            ),
            (
                "unenrolled = \"Allow\"",
                ":1:14: `unenrolled` must be one of \"allow\", \"deny\"",
            ),
            ("[totp]\n[totp]\n", ":2:2: `totp` is defined twice"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn any_toml_spelling_of_the_settings_is_read() {
        let c = parse(
            "'issuer' = 'n\\as' # literal string\n\
             policy = { trust_local = true, enforce_users = [\n  \"a\", # one\n  \"b\",\n] }\n\
             totp.digits = 8\n\
             [lockout]\nwindow_secs = 0x3c\nduration_secs = 1_200\n",
        )
        .unwrap();
        assert_eq!(c.issuer, "n\\as");
        assert!(c.policy.trust_local);
        assert_eq!(
            c.policy.enforce_users,
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(c.totp.digits, 8);
        assert_eq!((c.lockout.window_secs, c.lockout.duration_secs), (60, 1200));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse("unenroled = \"allow\"\n").unwrap_err().to_string();
        assert!(err.contains(":1:1:"), "{err}");
        assert!(err.contains("unenroled"), "{err}");
    }

    /// Logs and the CLI show these messages and tests grep for them: the typed errors keep
    /// the wording of the strings they replaced.
    #[test]
    fn refusals_keep_their_wording() {
        let mail = "[email]\nsmtp_host = \"mail\"\nfrom = \"a@b\"\n";
        for (text, expected) in [
            ("state_dir = \"x\"", "state_dir must be an absolute path"),
            ("[totp]\ndigits = 7", "digits must be 6 or 8, not 7"),
            (
                "[totp]\nskew = 11",
                "totp.skew must be between 0 and 10 steps",
            ),
            (
                "[lockout]\nmax_failures = 3\nmax_failures_user = 2",
                "lockout.max_failures_user must be at least lockout.max_failures and at most 10000",
            ),
            (
                "[gate]\nopened_by = [\"\"]",
                "gate.opened_by names PAM services: 1 to 64 characters each",
            ),
            (
                "[self_service]\npam_service = \".x\"",
                "self_service.pam_service must be a PAM service name (1 to 64 letters, digits, \
                 '-', '_' or '.', not starting with '.')",
            ),
            (
                "label = \"a:b\"",
                "label must be 1 to 64 characters and contain no ':'",
            ),
            (
                "[email]\nsmtp_host = \"mail\"",
                "email.from must be an email address when smtp_host is set",
            ),
            (
                &format!("{mail}max_per_minute = 0"),
                "email.max_per_minute must be at least 1 and max_per_hour at least max_per_minute",
            ),
            (
                &format!("{mail}subject = \"a\\nb\""),
                "email.subject must be one line",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("/etc/twostep/twostep.toml: {expected}"),
                "{text:?}"
            );
        }
        let config = Config {
            emergency: Emergency { count: 0 },
            ..Config::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::EmergencyCount));
    }

    #[test]
    fn bad_values_are_refused() {
        for text in [
            "state_dir = \"relative\"",
            "[totp]\ndigits = 7",
            "[totp]\nperiod = 0",
            "[totp]\nskew = 11",
            "[lockout]\nmax_failures = 0",
            "[emergency]\ncount = 0",
            "[lockout]\nmax_failures = 31",
            "[policy]\ntrusted_networks = [\"10.0.0.1/8\"]",
            "[policy]\non_unenrolled = \"allow\"",
            "[policy]\ngrace_period = 99999999",
            "[email]\nsmtp_host = \"mail\"",
            "[email]\nsmtp_host = \"mail\"\nfrom = \"a@b\"\nhelper = \"twostep\"",
            "[email]\nsmtp_host = \"mail\"\nfrom = \"a@b\"\nsecurity = \"ssl\"",
            "issuer = \"a:b\"",
            "label = \"\"",
            "label = \"{user}:x\"",
            "[totp]\nalgorithm = \"MD5\"",
        ] {
            assert!(parse(text).is_err(), "{text} was accepted");
        }
    }
}
