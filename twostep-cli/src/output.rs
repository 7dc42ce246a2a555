//! What the command prints and logs, shared by the subcommands.

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

/// `JBSWY3DPEHPK3PXP` → `JBSW Y3DP EHPK 3PXP`, for typing into an app by hand.
pub fn key_groups(base32: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(base32.len() * 5 / 4 + 1));
    for (i, c) in base32.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_grouped_by_four() {
        assert_eq!(*key_groups("JBSWY3DPEHPK3PXP"), "JBSW Y3DP EHPK 3PXP");
        assert_eq!(*key_groups("ABCDE"), "ABCD E");
        assert_eq!(*key_groups(""), "");
    }
}
