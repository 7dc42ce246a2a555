//! Fleet mode: one enrollment for many hosts on PostgreSQL (docs/fleet.md).
//!
//! - `seal`: the fleet key and the sealing of keys and addresses;
//! - `db`: connecting, the schema, records as rows;
//! - `error`: what can go wrong there, by kind;
//! - `server`: `twostep serve-store`, the root service pam_twostep talks to;
//! - here: `twostep fleet init`, `import`, `export` and `status`.

mod db;
mod error;
mod seal;
pub mod server;

use crate::error::CliError;
use clap::{Args, Subcommand};
use twostep_common::config::Config;
use twostep_common::store::Store;

pub use error::FleetError;
use seal::FleetKey;

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Create the fleet key file if it is absent (never replaced) and create or upgrade the
    /// database schema
    Init(FleetArgs),
    /// Copy every record of this host's state directory into the fleet database (again: only
    /// what is missing; a different enrollment already there is reported, never overwritten)
    Import(FleetArgs),
    /// Copy every record of the fleet database into this host's state directory (again: only
    /// what is missing; a different local enrollment is reported, never overwritten)
    Export(FleetArgs),
    /// List the fleet database's users: method, the host of the last write and the last login
    Status(FleetArgs),
}

#[derive(Debug, Args)]
pub struct FleetArgs {}

pub fn run(config: &Config, command: &FleetCommand) -> Result<(), CliError> {
    match command {
        FleetCommand::Init(_) => init(config),
        FleetCommand::Import(_) => import(config),
        FleetCommand::Export(_) => export(config),
        FleetCommand::Status(_) => status(config),
    }
}

fn init(config: &Config) -> Result<(), CliError> {
    let path = &config.store.key_file;
    if FleetKey::create(path).map_err(CliError::Fleet)? {
        println!(
            "created the fleet key {} (copy it, root 0600, to every host of the fleet)",
            path.display()
        );
    } else {
        println!("kept the existing fleet key {}", path.display());
    }
    let key = FleetKey::load(path).map_err(CliError::Fleet)?;
    let mut client = db::connect(&config.store).map_err(CliError::Fleet)?;
    let done = db::init_schema(&mut client, &key).map_err(CliError::Fleet)?;
    println!(
        "fleet database schema version {}: {done}",
        db::SCHEMA_VERSION
    );
    Ok(())
}

fn import(config: &Config) -> Result<(), CliError> {
    let key = FleetKey::load(&config.store.key_file).map_err(CliError::Fleet)?;
    let mut client = db::connect(&config.store).map_err(CliError::Fleet)?;
    db::check_schema(&mut client, &key).map_err(CliError::Fleet)?;
    let store = Store::open(&config.state_dir)?;
    let host_id = config.store.host_id();
    let (mut imported, mut unchanged, mut conflicts) = (0, 0, 0);
    for user in store.users()? {
        let lock = store.lock(&user)?;
        let Some(record) = store.load_locked(&lock)? else {
            continue;
        };
        let db_err = |e: postgres::Error| CliError::Fleet(db::pg_error(&e));
        let mut tx = client.transaction().map_err(db_err)?;
        tx.execute(
            "INSERT INTO twostep_locks (username) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&user],
        )
        .map_err(db_err)?;
        tx.query_one(
            "SELECT username FROM twostep_locks WHERE username = $1 FOR UPDATE",
            &[&user],
        )
        .map_err(db_err)?;
        match db::read(&mut tx, &key, &user).map_err(CliError::Fleet)? {
            None => {
                let sealed = db::seal(&key, &record).map_err(CliError::Fleet)?;
                db::insert(&mut tx, &sealed, &user, &host_id)
                    .map_err(CliError::Fleet)?
                    .ok_or_else(|| {
                        CliError::Fleet(error::FleetError::Row(format!(
                            "{user}: inserted meanwhile"
                        )))
                    })?;
                println!("imported {user}");
                imported += 1;
            }
            Some(stored) if stored.record.to_file_text()? == record.to_file_text()? => {
                println!("unchanged {user} (already in the fleet database)");
                unchanged += 1;
            }
            Some(_) => {
                println!(
                    "conflict {user}: the fleet database holds a different enrollment; kept, not \
                     overwritten (reset one of them, then import again)"
                );
                conflicts += 1;
            }
        }
        tx.commit().map_err(db_err)?;
    }
    println!("{imported} imported, {unchanged} unchanged, {conflicts} conflicts");
    if conflicts > 0 {
        return Err(CliError::Refused(format!(
            "{conflicts} enrollments conflict (see above)"
        )));
    }
    Ok(())
}

fn export(config: &Config) -> Result<(), CliError> {
    let key = FleetKey::load(&config.store.key_file).map_err(CliError::Fleet)?;
    let mut client = db::connect(&config.store).map_err(CliError::Fleet)?;
    db::check_schema(&mut client, &key).map_err(CliError::Fleet)?;
    let store = Store::create(&config.state_dir)?;
    let db_err = |e: postgres::Error| CliError::Fleet(db::pg_error(&e));
    let users: Vec<String> = client
        .query(
            "SELECT username FROM twostep_records ORDER BY username",
            &[],
        )
        .map_err(db_err)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let (mut exported, mut unchanged, mut conflicts) = (0, 0, 0);
    for user in users {
        let lock = store.lock(&user)?;
        let Some(stored) = db::read(&mut client, &key, &user).map_err(CliError::Fleet)? else {
            continue;
        };
        match store.load_locked(&lock)? {
            None => {
                store.save(&lock, &stored.record)?;
                println!("exported {user}");
                exported += 1;
            }
            Some(local) if local.to_file_text()? == stored.record.to_file_text()? => {
                println!("unchanged {user} (already in the state directory)");
                unchanged += 1;
            }
            Some(_) => {
                println!(
                    "conflict {user}: the state directory holds a different enrollment; kept, \
                     not overwritten"
                );
                conflicts += 1;
            }
        }
    }
    println!("{exported} exported, {unchanged} unchanged, {conflicts} conflicts");
    if conflicts > 0 {
        return Err(CliError::Refused(format!(
            "{conflicts} enrollments conflict (see above)"
        )));
    }
    Ok(())
}

/// One line per user of the fleet database (read-only; no lock).
fn status(config: &Config) -> Result<(), CliError> {
    let key = FleetKey::load(&config.store.key_file).map_err(CliError::Fleet)?;
    let mut client = db::connect(&config.store).map_err(CliError::Fleet)?;
    db::check_schema(&mut client, &key).map_err(CliError::Fleet)?;
    let rows = client
        .query(
            "SELECT username, host_id FROM twostep_records ORDER BY username",
            &[],
        )
        .map_err(|e| CliError::Fleet(db::pg_error(&e)))?;
    println!("{} users in the fleet database", rows.len());
    for row in rows {
        let (user, host): (String, String) = (row.get(0), row.get(1));
        let Some(stored) = db::read(&mut client, &key, &user).map_err(CliError::Fleet)? else {
            continue;
        };
        let record = &stored.record;
        let last = record.last_login.as_ref().map_or_else(
            || "never logged in".to_string(),
            |l| {
                let from = if l.rhost.is_empty() {
                    "local"
                } else {
                    &l.rhost
                };
                format!(
                    "last login {} from {from} through {} ({})",
                    twostep_common::timefmt::utc(l.time),
                    l.service,
                    l.method
                )
            },
        );
        println!(
            "{user}: {} enrolled {}, last written by {host}; {last}",
            record.method.name(),
            twostep_common::timefmt::utc(record.created)
        );
    }
    Ok(())
}
