//! `twostep status`: one row per user the store knows.

use crate::error::CliError;
use clap::Args;
use serde::Serialize;
use twostep_common::backend::Manage;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::Config;
use twostep_common::manage::{self, State, UserStatus};
use twostep_common::policy::SystemDirectory;
use twostep_common::remote::LoginStore;
use twostep_common::timefmt::utc;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this user
    pub user: Option<String>,

    /// Machine-readable output (a JSON array; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,

    /// Also list every local account (in /etc/passwd: uid 1000 or more, and root) that has no
    /// row otherwise, as `disabled`
    #[arg(long, conflicts_with = "user")]
    pub all: bool,
}

/// Local accounts of people (uid 1000 or more, not `nobody`) and root, from /etc/passwd.
fn local_accounts() -> Result<Vec<String>, CliError> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| CliError::io("cannot read /etc/passwd", e))?;
    Ok(passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid: u32 = fields.nth(1)?.parse().ok()?;
            let person = (1000..65534).contains(&uid);
            (!name.is_empty() && (uid == 0 || person)).then(|| name.to_string())
        })
        .collect())
}

pub fn run(config: &Config, args: &StatusArgs) -> Result<(), CliError> {
    let store = LoginStore::open(config)?;
    let now = SystemClock.now();
    let mut rows = manage::status(&store, config, &SystemDirectory, now)?;
    if args.all {
        for user in local_accounts()? {
            if !rows.iter().any(|r| r.user == user) {
                rows.push(UserStatus::not_enrolled(user, State::Disabled));
            }
        }
        rows.sort_by(|a, b| a.user.cmp(&b.user));
    }
    if let Some(user) = &args.user {
        rows.retain(|r| &r.user == user);
        if rows.is_empty() {
            return Err(CliError::NotEnrolled {
                user: user.clone(),
                then: " and has no archived enrollment",
            });
        }
    }
    if args.json {
        let archived = store.archived_users()?;
        let rows: Vec<JsonRow<'_>> = rows
            .iter()
            .map(|row| JsonRow {
                archived: archived.contains(&row.user),
                ..JsonRow::from(row)
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows)?;
        println!("{text}");
    } else {
        print_table(&rows);
    }
    Ok(())
}

/// A row of `--json`: the fields and their order are an interface (docs/cli.md).
#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    user: &'a str,
    state: &'a str,
    methods: &'a [String],
    email: Option<&'a str>,
    emergency_codes_left: Option<usize>,
    enrolled_at: Option<u64>,
    last_login: Option<JsonLogin<'a>>,
    recent_failures: usize,
    locked_until: Option<u64>,
    locked_hosts: &'a [String],
    open_gates: usize,
    archived: bool,
}

#[derive(Debug, Serialize)]
struct JsonLogin<'a> {
    time: u64,
    rhost: &'a str,
    service: &'a str,
    method: &'a str,
    /// The fleet host of the login (`[store] host_id`); absent in a file store.
    #[serde(skip_serializing_if = "str::is_empty")]
    host_id: &'a str,
}

impl<'a> From<&'a UserStatus> for JsonRow<'a> {
    fn from(row: &'a UserStatus) -> Self {
        JsonRow {
            user: &row.user,
            state: row.state.name(),
            methods: &row.methods,
            email: row.email.as_deref(),
            emergency_codes_left: row.emergency_codes_left,
            enrolled_at: row.enrolled_at,
            last_login: row.last_login.as_ref().map(|l| JsonLogin {
                time: l.time,
                rhost: &l.rhost,
                service: &l.service,
                method: &l.method,
                host_id: &l.host_id,
            }),
            recent_failures: row.recent_failures,
            locked_until: row.locked_until,
            locked_hosts: &row.locked_hosts,
            open_gates: row.open_gates,
            archived: false,
        }
    }
}

fn print_table(rows: &[UserStatus]) {
    // A fleet's logins name the host they were on (`[store] host_id`); a file store's are all
    // on this host, so the column appears only when a row has one.
    let fleet = rows
        .iter()
        .any(|r| r.last_login.as_ref().is_some_and(|l| !l.host_id.is_empty()));
    let mut header = vec!["USER", "STATE", "METHODS", "EMAIL", "CODES", "LAST LOGIN"];
    if fleet {
        header.push("ON HOST");
    }
    header.extend(["FROM", "FAILURES", "GATES"]);
    let cells: Vec<Vec<String>> = rows.iter().map(|row| cells(row, fleet)).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String]| {
        let parts: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}", w = *w))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    let header: Vec<String> = header.into_iter().map(String::from).collect();
    line(&header);
    for row in &cells {
        line(row);
    }
}

fn cells(row: &UserStatus, fleet: bool) -> Vec<String> {
    let dash = || "-".to_string();
    let state = match (row.locked_until, row.locked_hosts.len()) {
        (Some(until), _) => format!("{} until {}", row.state.name(), utc(until)),
        (None, 0) => row.state.name().to_string(),
        (None, 1) => format!("{} (locked from 1 host)", row.state.name()),
        (None, n) => format!("{} (locked from {n} hosts)", row.state.name()),
    };
    let mut cells = vec![
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
    ];
    if fleet {
        cells.push(
            row.last_login
                .as_ref()
                .filter(|l| !l.host_id.is_empty())
                .map_or_else(dash, |l| l.host_id.clone()),
        );
    }
    cells.extend([
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
        row.open_gates.to_string(),
    ]);
    cells
}

#[cfg(test)]
mod tests {
    use super::*;
    use twostep_common::record::LastLogin;

    /// The field names and order of docs/cli.md, as the serde derive on `UserStatus` wrote them.
    #[test]
    fn json_rows_keep_their_fields_and_order() {
        let row = UserStatus {
            user: "alice".into(),
            state: State::Locked,
            methods: vec!["totp".into(), "emergency".into()],
            email: Some("a•••@example.com".into()),
            emergency_codes_left: Some(9),
            enrolled_at: Some(1_800_000_000),
            last_login: Some(LastLogin {
                time: 1_800_000_050,
                rhost: "192.0.2.7".into(),
                service: "sshd".into(),
                method: "totp".into(),
                host_id: "nas-2".into(),
            }),
            recent_failures: 3,
            locked_until: Some(1_800_000_900),
            locked_hosts: vec![String::new()],
            open_gates: 2,
        };
        let json = serde_json::to_string(&[JsonRow::from(&row)]).unwrap();
        assert_eq!(
            json,
            "[{\"user\":\"alice\",\"state\":\"locked\",\"methods\":[\"totp\",\"emergency\"],\
             \"email\":\"a•••@example.com\",\"emergency_codes_left\":9,\"enrolled_at\":1800000000,\
             \"last_login\":{\"time\":1800000050,\"rhost\":\"192.0.2.7\",\"service\":\"sshd\",\
             \"method\":\"totp\",\"host_id\":\"nas-2\"},\"recent_failures\":3,\"locked_until\":1800000900,\
             \"locked_hosts\":[\"\"],\"open_gates\":2,\"archived\":false}]"
        );
        let empty = UserStatus {
            state: State::Disabled,
            methods: Vec::new(),
            email: None,
            emergency_codes_left: None,
            enrolled_at: None,
            last_login: None,
            locked_until: None,
            locked_hosts: Vec::new(),
            recent_failures: 0,
            ..row
        };
        let json = serde_json::to_string(&JsonRow::from(&empty)).unwrap();
        assert!(
            json.contains("\"state\":\"disabled\",\"methods\":[],\"email\":null,"),
            "{json}"
        );
        assert!(json.contains("\"last_login\":null,"), "{json}");
    }
}
