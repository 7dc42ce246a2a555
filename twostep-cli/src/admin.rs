//! `reset`, `restore`, `unlock`, `codes`: the lost-phone and locked-out procedures.

use crate::error::CliError;
use clap::Args;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::{Config, Unenrolled};
use twostep_common::manage;
use twostep_common::remote::LoginStore;

use serde_json::json;

use crate::output::{audit, codes_json, print_emergency_codes, print_json};

#[derive(Debug, Args)]
pub struct UserArg {
    /// The login name
    pub user: String,

    /// Machine-readable output (one JSON object; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

/// The store `[store]` names: the state directory, or the fleet's (every host sees a change
/// at once).
fn open(config: &Config) -> Result<LoginStore, CliError> {
    Ok(LoginStore::open(config)?)
}

pub fn reset(config: &Config, user: &str, json: bool) -> Result<(), CliError> {
    let store = open(config)?;
    let archived =
        manage::reset(&store, user, SystemClock.now())?.ok_or_else(|| CliError::NotEnrolled {
            user: user.to_string(),
            then: "; nothing to reset",
        })?;
    audit(config, "reset", user);
    if json {
        return print_json(&json!({"user": user, "archived": archived.display().to_string()}));
    }
    println!("Removed the two-step enrollment of {user}.");
    match config.unenrolled {
        Unenrolled::Allow => println!(
            "Their next login asks for the password only (unenrolled = \"allow\"); enroll them \
             again with `twostep enroll {user}`."
        ),
        Unenrolled::Deny => println!(
            "They cannot log in until enrolled again (unenrolled = \"deny\"): `twostep enroll {user}`."
        ),
    }
    println!(
        "The old enrollment is archived as {}; `twostep restore {user}` brings it back.",
        archived.display()
    );
    Ok(())
}

pub fn restore(config: &Config, user: &str, json: bool) -> Result<(), CliError> {
    let store = open(config)?;
    let from = manage::restore(&store, user)?
        .ok_or_else(|| CliError::refused(format!("{user} has no archived enrollment")))?;
    audit(config, "restore", user);
    if json {
        return print_json(&json!({"user": user, "restored_from": from.display().to_string()}));
    }
    println!(
        "Restored the enrollment of {user} from {}. Their app and remaining emergency codes work again.",
        from.display()
    );
    Ok(())
}

pub fn unlock(config: &Config, user: &str, json: bool) -> Result<(), CliError> {
    let store = open(config)?;
    if !manage::unlock(&store, user)? {
        return Err(CliError::not_enrolled(user));
    }
    audit(config, "unlock", user);
    if json {
        return print_json(&json!({"user": user, "unlocked": true}));
    }
    println!("Cleared failed attempts and any lockout of {user}.");
    Ok(())
}

pub fn codes(config: &Config, user: &str, json: bool) -> Result<(), CliError> {
    let store = open(config)?;
    let codes = manage::new_emergency_codes(&store, config, user)?
        .ok_or_else(|| CliError::not_enrolled(user))?;
    audit(config, "new-emergency-codes", user);
    if json {
        return print_json(&json!({"user": user, "emergency_codes": codes_json(&codes)}));
    }
    println!("New emergency codes for {user}; the previous ones no longer work.");
    print_emergency_codes(&codes);
    Ok(())
}
