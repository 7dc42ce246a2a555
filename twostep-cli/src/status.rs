//! `twostep status`: one row per user the store knows.

use clap::Args;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::Config;
use twostep_common::manage::{self, UserStatus};
use twostep_common::policy::SystemDirectory;
use twostep_common::store::Store;
use twostep_common::timefmt::utc;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this user
    pub user: Option<String>,

    /// Machine-readable output (a JSON array; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

pub fn run(config: &Config, args: &StatusArgs) -> Result<(), String> {
    let store = Store::open(&config.state_dir).map_err(|e| e.to_string())?;
    let now = SystemClock.now();
    let mut rows =
        manage::status(&store, config, &SystemDirectory, now).map_err(|e| e.to_string())?;
    if let Some(user) = &args.user {
        rows.retain(|r| &r.user == user);
        if rows.is_empty() {
            return Err(format!(
                "{user} is not enrolled and has no archived enrollment"
            ));
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print_table(&rows);
    }
    Ok(())
}

fn print_table(rows: &[UserStatus]) {
    let header = [
        "USER",
        "STATE",
        "METHODS",
        "EMAIL",
        "CODES",
        "LAST LOGIN",
        "FROM",
        "FAILURES",
    ];
    let cells: Vec<[String; 8]> = rows.iter().map(cells).collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(&header.map(String::from));
    for row in &cells {
        line(row);
    }
}

fn cells(row: &UserStatus) -> [String; 8] {
    let dash = || "-".to_string();
    let state = match (row.locked_until, row.locked_hosts.len()) {
        (Some(until), _) => format!("{} until {}", row.state.name(), utc(until)),
        (None, 0) => row.state.name().to_string(),
        (None, 1) => format!("{} (locked from 1 host)", row.state.name()),
        (None, n) => format!("{} (locked from {n} hosts)", row.state.name()),
    };
    [
        row.user.clone(),
        state,
        if row.methods.is_empty() {
            dash()
        } else {
            row.methods.join(",")
        },
        row.email.clone().unwrap_or_else(dash),
        row.emergency_codes_left
            .map_or_else(dash, |n| n.to_string()),
        row.last_login.as_ref().map_or_else(dash, |l| utc(l.time)),
        row.last_login
            .as_ref()
            .map(|l| {
                if l.rhost.is_empty() {
                    "local".to_string()
                } else {
                    l.rhost.clone()
                }
            })
            .unwrap_or_else(dash),
        row.recent_failures.to_string(),
    ]
}
