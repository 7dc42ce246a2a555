//! Writing to the admin's terminal and to syslog.

use twostep_common::audit::{Level, Sink, Syslog, field};
use twostep_common::config::Config;

/// Records an admin action in syslog (authpriv), as the module does for logins.
pub fn audit(config: &Config, action: &str, user: &str) {
    let by = std::env::var("SUDO_USER").unwrap_or_else(|_| "root".into());
    Syslog::open(&config.log.socket, "twostep").log(
        Level::Notice,
        &format!(
            "admin {action} {} {}",
            field("user", user),
            field("by", &by)
        ),
    );
}
