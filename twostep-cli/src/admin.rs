//! `reset`, `restore`, `unlock`, `codes`: the lost-phone and locked-out procedures.

use clap::Args;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::{Config, Unenrolled};
use twostep_common::manage;
use twostep_common::store::Store;

use crate::output::{audit, print_emergency_codes};

#[derive(Debug, Args)]
pub struct UserArg {
    /// The login name
    pub user: String,
}

fn open(config: &Config) -> Result<Store, String> {
    Store::open(&config.state_dir).map_err(|e| e.to_string())
}

pub fn reset(config: &Config, user: &str) -> Result<(), String> {
    let store = open(config)?;
    let archived = manage::reset(&store, user, SystemClock.now())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{user} is not enrolled; nothing to reset"))?;
    audit(config, "reset", user);
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

pub fn restore(config: &Config, user: &str) -> Result<(), String> {
    let store = open(config)?;
    let from = manage::restore(&store, user)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{user} has no archived enrollment"))?;
    audit(config, "restore", user);
    println!(
        "Restored the enrollment of {user} from {}. Their app and remaining emergency codes work again.",
        from.display()
    );
    Ok(())
}

pub fn unlock(config: &Config, user: &str) -> Result<(), String> {
    let store = open(config)?;
    if !manage::unlock(&store, user).map_err(|e| e.to_string())? {
        return Err(format!("{user} is not enrolled"));
    }
    audit(config, "unlock", user);
    println!("Cleared failed attempts and any lockout of {user}.");
    Ok(())
}

pub fn codes(config: &Config, user: &str) -> Result<(), String> {
    let store = open(config)?;
    let codes = manage::new_emergency_codes(&store, config, user)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{user} is not enrolled"))?;
    audit(config, "new-emergency-codes", user);
    println!("New emergency codes for {user}; the previous ones no longer work.");
    print_emergency_codes(&codes);
    Ok(())
}
