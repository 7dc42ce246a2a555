//! `twostep gate list|close`: the gates that let users into services that cannot prompt
//! (Samba) after a two-step login from the same address (docs/smb.md).

use crate::error::CliError;
use clap::{Args, Subcommand};
use serde_json::json;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::Config;
use twostep_common::login::host_key;
use twostep_common::manage::{self, OpenGate};
use twostep_common::remote::LoginStore;
use twostep_common::timefmt::utc;

use crate::output::{audit, print_json};

#[derive(Debug, Subcommand)]
pub enum GateCommand {
    /// List open gates: user, address, when opened, when it closes, by which service
    List(ListArgs),
    /// Close a user's gate for ADDRESS, or all of the user's gates: their SMB access from
    /// there needs a new two-step login
    Close(CloseArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this user
    pub user: Option<String>,

    /// Machine-readable output (a JSON array; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CloseArgs {
    /// The login name
    pub user: String,

    /// Only the gate of this address (as `gate list` shows it); all gates when absent
    pub address: Option<String>,

    /// Machine-readable output (one JSON object; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

fn open(config: &Config) -> Result<LoginStore, CliError> {
    Ok(LoginStore::open(config)?)
}

pub fn list(config: &Config, args: &ListArgs) -> Result<(), CliError> {
    let store = open(config)?;
    let gates = manage::open_gates(&store, config, args.user.as_deref(), SystemClock.now())?;
    if args.json {
        let rows: Vec<serde_json::Value> = gates.iter().map(row_json).collect();
        return print_json(&rows.into());
    }
    if gates.is_empty() {
        if config.gate.window_secs == 0 {
            println!("No open gates: the gate is off ([gate] window_secs = 0).");
        } else {
            println!("No open gates.");
        }
        return Ok(());
    }
    print_table(&gates);
    Ok(())
}

fn row_json(gate: &OpenGate) -> serde_json::Value {
    json!({
        "user": gate.user,
        "address": gate.host,
        "opened": gate.opened,
        "expires": gate.expires,
        "service": gate.service,
    })
}

fn print_table(gates: &[OpenGate]) {
    let header = ["USER", "ADDRESS", "OPENED", "EXPIRES", "BY"].map(String::from);
    let rows: Vec<[String; 5]> = gates
        .iter()
        .map(|g| {
            [
                g.user.clone(),
                g.host.clone(),
                utc(g.opened),
                utc(g.expires),
                g.service.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

pub fn close(config: &Config, args: &CloseArgs) -> Result<(), CliError> {
    let store = open(config)?;
    let address = args.address.as_deref().map(host_key);
    if address.as_deref() == Some("") {
        return Err(CliError::usage("the address is empty"));
    }
    let closed = manage::close_gates(&store, &args.user, address.as_deref())?
        .ok_or_else(|| CliError::not_enrolled(&args.user))?;
    audit(config, "gate-close", &args.user);
    if args.json {
        return print_json(&json!({
            "user": args.user,
            "address": address,
            "closed": closed,
        }));
    }
    match (&address, closed) {
        (Some(a), 0) => println!("{} had no gate for {a}.", args.user),
        (Some(a), _) => println!(
            "Closed the gate of {} for {a}: access from there needs a new two-step login.",
            args.user
        ),
        (None, 0) => println!("{} had no gates.", args.user),
        (None, n) => println!(
            "Closed {n} gate(s) of {}: access needs a new two-step login.",
            args.user
        ),
    }
    Ok(())
}
