//! `[store]`: where enrollments live (docs/fleet.md). `backend = "file"` (the default) is the
//! state directory on this host; `"postgresql"` is one database shared by a fleet of hosts,
//! reached through `twostep serve-store`, a local root service: the PAM module talks to its
//! Unix socket only ([`crate::remote`]) and never links a database client or TLS.

use std::path::PathBuf;

use crate::toml_subset::{self, Fields};

pub const DEFAULT_SOCKET: &str = "/run/twostep/store.sock";
pub const DEFAULT_KEY_FILE: &str = "/etc/twostep/fleet.key";
pub const DEFAULT_TIMEOUT_SECS: u64 = 3;
const MAX_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `state_dir` on this host (today's store; no setup).
    File,
    /// A PostgreSQL database shared by several hosts.
    Postgresql,
}

/// How `twostep serve-store` protects its connection to the database (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS (a Unix socket or loopback to a database on this host only).
    Disable,
    /// TLS, without checking the server's certificate (protects against listeners only).
    Require,
    /// TLS, the certificate checked against `ca_file` (or the system's CAs), not the name.
    VerifyCa,
    /// TLS, the certificate and the host name checked: recommended across a network.
    VerifyFull,
}

impl SslMode {
    pub const CHOICES: [(&'static str, SslMode); 4] = [
        ("disable", SslMode::Disable),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub backend: Backend,
    /// libpq connection string or URL (`postgresql://twostep@db.lan/twostep`), never with a
    /// password in it.
    pub url: String,
    /// The database password, in a root-only file; empty: none (peer or certificate auth).
    pub password_file: PathBuf,
    /// CA certificates (PEM) the server's certificate must chain to; empty: the system's.
    pub ca_file: PathBuf,
    pub sslmode: SslMode,
    /// Connect and statement timeout; also how long the PAM module waits for serve-store.
    pub timeout_secs: u64,
    /// Recorded with every login; empty: this host's name ([`StoreConfig::host_id`]).
    pub host_id: String,
    /// `twostep serve-store`'s socket, which the PAM module connects to.
    pub socket: PathBuf,
    /// The fleet key (32 bytes, root 0600) sealing keys and addresses in the database.
    pub key_file: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: Backend::File,
            url: String::new(),
            password_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            sslmode: SslMode::VerifyFull,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            host_id: String::new(),
            socket: PathBuf::from(DEFAULT_SOCKET),
            key_file: PathBuf::from(DEFAULT_KEY_FILE),
        }
    }
}

impl StoreConfig {
    pub(crate) fn read(mut f: Fields) -> Result<StoreConfig, toml_subset::Error> {
        let mut s = StoreConfig::default();
        let backends = [("file", Backend::File), ("postgresql", Backend::Postgresql)];
        if let Some(backend) = f.choice("backend", &backends)? {
            s.backend = backend;
        }
        if let Some(url) = f.string("url")? {
            s.url = url;
        }
        if let Some(path) = f.string("password_file")? {
            s.password_file = PathBuf::from(path);
        }
        if let Some(path) = f.string("ca_file")? {
            s.ca_file = PathBuf::from(path);
        }
        if let Some(mode) = f.choice("sslmode", &SslMode::CHOICES)? {
            s.sslmode = mode;
        }
        if let Some(secs) = f.u64("timeout_secs")? {
            s.timeout_secs = secs;
        }
        if let Some(id) = f.string("host_id")? {
            s.host_id = id;
        }
        if let Some(path) = f.string("socket")? {
            s.socket = PathBuf::from(path);
        }
        if let Some(path) = f.string("key_file")? {
            s.key_file = PathBuf::from(path);
        }
        f.finish()?;
        Ok(s)
    }

    /// The host id recorded with logins: `host_id`, else the host name.
    pub fn host_id(&self) -> String {
        if self.host_id.is_empty() {
            crate::config::hostname()
        } else {
            self.host_id.clone()
        }
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs)
    }

    pub(crate) fn validate(&self) -> Result<(), StoreConfigError> {
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return Err(StoreConfigError::Timeout);
        }
        let id = &self.host_id;
        if id.len() > 64 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(StoreConfigError::HostId);
        }
        for (key, path, optional) in [
            ("socket", &self.socket, false),
            ("key_file", &self.key_file, false),
            ("password_file", &self.password_file, true),
            ("ca_file", &self.ca_file, true),
        ] {
            let empty = path.as_os_str().is_empty();
            if !(path.is_absolute() || (optional && empty)) {
                return Err(StoreConfigError::NotAbsolute(key));
            }
        }
        if let Some(why) = url_problem(&self.url) {
            return Err(StoreConfigError::Url(why));
        }
        if self.backend == Backend::Postgresql && self.url.is_empty() {
            return Err(StoreConfigError::UrlMissing);
        }
        Ok(())
    }
}

/// A `[store]` value that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreConfigError {
    Timeout,
    HostId,
    /// The key of a path that must be absolute.
    NotAbsolute(&'static str),
    /// What is wrong with `store.url`.
    Url(&'static str),
    /// `backend = "postgresql"` without `url`.
    UrlMissing,
}

impl std::fmt::Display for StoreConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfigError::Timeout => write!(
                f,
                "store.timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
            ),
            StoreConfigError::HostId => {
                f.write_str("store.host_id must be at most 64 characters, without spaces")
            }
            StoreConfigError::NotAbsolute(key) => write!(f, "store.{key} must be an absolute path"),
            StoreConfigError::Url(why) => write!(f, "store.url {why}"),
            StoreConfigError::UrlMissing => f.write_str(
                "store.url is needed with backend = \"postgresql\" (a libpq connection string \
                 or URL)",
            ),
        }
    }
}

/// Why `url` is refused: a password in it (the config is world-readable; use
/// `password_file`), or an `sslmode` (`store.sslmode` decides).
fn url_problem(url: &str) -> Option<&'static str> {
    let lower = url.to_ascii_lowercase();
    if url.chars().any(char::is_control) {
        return Some("must not contain control characters");
    }
    let is_url = lower.starts_with("postgresql://") || lower.starts_with("postgres://");
    if is_url {
        let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return Some(
                    "must not hold a password (user:password@); put it in store.password_file",
                );
            }
        }
    }
    // Key-value form `password=…`, or `?password=` / `&password=` in a URL.
    let keys = |name: &str| {
        lower
            .split(|c: char| c.is_whitespace() || c == '?' || c == '&')
            .any(|part| part.trim_start().starts_with(&format!("{name}=")))
            || lower.contains(&format!("{name} ="))
    };
    if keys("password") {
        return Some("must not hold a password; put it in store.password_file");
    }
    if keys("sslmode") {
        return Some("must not set sslmode; set store.sslmode instead");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn defaults_are_the_file_store() {
        let c = Config::parse(Path::new("t"), "").unwrap();
        assert_eq!(c.store.backend, Backend::File);
        assert_eq!(c.store.timeout_secs, 3);
        assert_eq!(c.store.sslmode, SslMode::VerifyFull);
        assert_eq!(c.store.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(c.store.key_file, Path::new(DEFAULT_KEY_FILE));
        assert_eq!(c.store.host_id(), crate::config::hostname());
    }

    #[test]
    fn postgresql_settings_are_read() {
        let text = "[store]\nbackend = \"postgresql\"\nurl = \"postgresql://twostep@db.lan/ts\"\n\
                    password_file = \"/etc/twostep/db.pass\"\nca_file = \"/etc/ssl/ca.pem\"\n\
                    sslmode = \"verify-ca\"\ntimeout_secs = 5\nhost_id = \"nas1\"\n\
                    socket = \"/run/x.sock\"\nkey_file = \"/etc/twostep/k\"\n";
        let c = Config::parse(Path::new("t"), text).unwrap().store;
        assert_eq!(c.backend, Backend::Postgresql);
        assert_eq!(c.url, "postgresql://twostep@db.lan/ts");
        assert_eq!(c.password_file, Path::new("/etc/twostep/db.pass"));
        assert_eq!(c.sslmode, SslMode::VerifyCa);
        assert_eq!(c.timeout_secs, 5);
        assert_eq!(c.host_id(), "nas1");
        assert_eq!(c.socket, Path::new("/run/x.sock"));
    }

    #[test]
    fn passwords_in_the_url_and_bad_values_are_refused() {
        for text in [
            "[store]\nbackend = \"postgresql\"\n",
            "[store]\nbackend = \"sqlite\"\n",
            "[store]\nurl = \"postgresql://u:secret@db/ts\"\n",
            "[store]\nurl = \"postgres://u@db/ts?password=secret\"\n",
            "[store]\nurl = \"postgres://u@db/ts?a=1&password=secret\"\n",
            "[store]\nurl = \"host=db user=u password=secret\"\n",
            "[store]\nurl = \"host=db user=u password = secret\"\n",
            "[store]\nurl = \"host=db sslmode=disable\"\n",
            "[store]\nsslmode = \"prefer\"\n",
            "[store]\ntimeout_secs = 0\n",
            "[store]\ntimeout_secs = 61\n",
            "[store]\nhost_id = \"a b\"\n",
            "[store]\nsocket = \"run/x.sock\"\n",
            "[store]\npassword_file = \"db.pass\"\n",
            "[store]\nunknown = 1\n",
        ] {
            assert!(Config::parse(Path::new("t"), text).is_err(), "{text}");
        }
        let ok = "[store]\nbackend = \"postgresql\"\nurl = \"host=db user=twostep dbname=ts\"\n";
        assert!(Config::parse(Path::new("t"), ok).is_ok());
    }
}
