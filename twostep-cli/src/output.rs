//! What the command prints and logs, shared by the subcommands.

use crate::error::CliError;
use twostep_common::audit::{Level, Sink, Syslog, field};
use twostep_common::config::Config;
use zeroize::Zeroizing;

/// Records an admin action in syslog (authpriv), next to the module's login events.
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

/// Prints a new set of emergency codes, last: scripts read every line after
/// `Emergency codes:`.
pub fn print_emergency_codes(codes: &[Zeroizing<String>]) {
    println!(
        "Each emergency code below works once, instead of an app code. Keep them offline \
         (printed, or in a password manager): they are shown only now."
    );
    println!("Emergency codes:");
    for code in codes {
        println!("{}", code.as_str());
    }
}

/// The emergency codes for `--json` output (shown once, like the printed ones).
pub fn codes_json(codes: &[Zeroizing<String>]) -> serde_json::Value {
    codes.iter().map(|c| c.as_str()).collect::<Vec<_>>().into()
}

/// Prints one JSON value (pretty, one trailing newline): the `--json` output of a command.
pub fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = Zeroizing::new(serde_json::to_string_pretty(value)?);
    println!("{}", text.as_str());
    Ok(())
}
