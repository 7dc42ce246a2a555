//! `twostep config get` and `twostep config set`: read and change `twostep.toml` without losing
//! the admin's comments and layout (toml_edit), for the Cockpit page and for scripts.
//!
//! A change is written only when the whole new file loads with the product's own parser
//! ([`Config::parse`]); it replaces the file atomically (temp file, fsync, rename) with the old
//! file's permission bits, under a lock on the config's directory. `--expect-hash` refuses the
//! change when the file is no longer the one the caller read (an edit from the terminal since).

use crate::error::CliError;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use clap::{Args, Subcommand};
use nix::sys::stat::Mode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use toml_edit::{Array, DocumentMut, Item, Table};
use twostep_common::config::{Config, OnUnenrolled, SmtpSecurity, Unenrolled};
use twostep_common::securefs::{self, Access, Dir};
use twostep_common::store_config::Backend as StoreBackend;

use crate::output::audit;

/// A config file larger than this is refused (as the module does).
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective value of every setting, which ones the file sets, and its hash
    Get(GetArgs),
    /// Change settings: `KEY VALUE` pairs, e.g. `policy.grace_period 3600`; comments are kept
    Set(SetArgs),
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Machine-readable output (one JSON object; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// KEY VALUE pairs. Lists: comma-separated (`staff,admins`), or a TOML array; "" is an empty
    /// list. `--unset KEY` removes a key (its default applies again)
    #[arg(value_name = "KEY VALUE", num_args = 0..)]
    pub pairs: Vec<String>,

    /// Remove KEY from the file, so that its default applies (repeatable)
    #[arg(long, value_name = "KEY")]
    pub unset: Vec<String>,

    /// Refuse the change unless the file's current hash is this one (the `hash` of `config get
    /// --json`): nothing is overwritten that changed since it was read
    #[arg(long, value_name = "HASH")]
    pub expect_hash: Option<String>,

    /// Machine-readable output: the new `config get --json` object
    #[arg(long)]
    pub json: bool,
}

/// What a setting's value looks like on the command line and in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Boolean,
    TextList,
}

/// Every key of twostep.toml, with its kind (docs/configuration.md has their meaning).
const KEYS: &[(&str, Kind)] = &[
    ("state_dir", Kind::Text),
    ("issuer", Kind::Text),
    ("label", Kind::Text),
    ("unenrolled", Kind::Text),
    ("totp.algorithm", Kind::Text),
    ("totp.digits", Kind::Integer),
    ("totp.period", Kind::Integer),
    ("totp.skew", Kind::Integer),
    ("lockout.max_failures", Kind::Integer),
    ("lockout.max_failures_user", Kind::Integer),
    ("lockout.window_secs", Kind::Integer),
    ("lockout.duration_secs", Kind::Integer),
    ("emergency.count", Kind::Integer),
    ("policy.enforce_users", Kind::TextList),
    ("policy.enforce_groups", Kind::TextList),
    ("policy.exempt_users", Kind::TextList),
    ("policy.exempt_groups", Kind::TextList),
    ("policy.on_unenrolled", Kind::Text),
    ("policy.trusted_networks", Kind::TextList),
    ("policy.trust_local", Kind::Boolean),
    ("policy.grace_period", Kind::Integer),
    ("email.smtp_host", Kind::Text),
    ("email.smtp_port", Kind::Integer),
    ("email.security", Kind::Text),
    ("email.username", Kind::Text),
    ("email.password_file", Kind::Text),
    ("email.from", Kind::Text),
    ("email.subject", Kind::Text),
    ("email.code_digits", Kind::Integer),
    ("email.lifetime_secs", Kind::Integer),
    ("email.max_per_minute", Kind::Integer),
    ("email.max_per_hour", Kind::Integer),
    ("email.timeout_secs", Kind::Integer),
    ("email.helper", Kind::Text),
    ("gate.window_secs", Kind::Integer),
    ("gate.opened_by", Kind::TextList),
    ("self_service.enabled", Kind::Boolean),
    ("self_service.allow_enable", Kind::Boolean),
    ("self_service.allow_codes", Kind::Boolean),
    ("self_service.allow_add_device", Kind::Boolean),
    ("self_service.allow_email", Kind::Boolean),
    ("self_service.allow_disable", Kind::Boolean),
    ("self_service.pam_service", Kind::Text),
    ("store.backend", Kind::Text),
    ("store.url", Kind::Text),
    ("store.password_file", Kind::Text),
    ("store.ca_file", Kind::Text),
    ("store.sslmode", Kind::Text),
    ("store.timeout_secs", Kind::Integer),
    ("store.host_id", Kind::Text),
    ("store.socket", Kind::Text),
    ("store.key_file", Kind::Text),
    ("log.socket", Kind::Text),
];

fn kind_of(key: &str) -> Result<Kind, CliError> {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "unknown setting {key:?} (`twostep config get` lists them)"
            ))
        })
}

/// The file as read: its text (empty when missing), whether it exists, its mode.
struct Current {
    text: String,
    exists: bool,
    mode: u32,
}

fn read_current(path: &Path) -> Result<Current, CliError> {
    let bytes = securefs::read_root_file(path, MAX_CONFIG_BYTES, Access::Readable)?;
    let Some(bytes) = bytes else {
        return Ok(Current {
            text: String::new(),
            exists: false,
            mode: 0o644,
        });
    };
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| CliError::Refused(format!("{}: not valid UTF-8", path.display())))?;
    let mode = std::fs::symlink_metadata(path)
        .map(|m| m.mode() & 0o777)
        .unwrap_or(0o644);
    Ok(Current {
        text,
        exists: true,
        mode,
    })
}

/// `sha256:<hex>` of the file's bytes; that of nothing for a missing file.
fn hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

pub fn get(path: &Path, args: &GetArgs) -> Result<(), CliError> {
    let current = read_current(path)?;
    let config = Config::parse(path, &current.text)?;
    let doc = parse_doc(path, &current.text)?;
    if args.json {
        let text = serde_json::to_string_pretty(&describe(path, &current, &config, &doc))?;
        println!("{text}");
        return Ok(());
    }
    println!("# {} ({})", path.display(), hash(&current.text));
    let values = values(&config);
    for (key, _) in KEYS {
        let set = if is_set(&doc, key) { "" } else { "  # default" };
        println!("{key} = {}{set}", values[*key]);
    }
    Ok(())
}

fn describe(path: &Path, current: &Current, config: &Config, doc: &DocumentMut) -> Value {
    let set: Vec<&str> = KEYS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| is_set(doc, k))
        .collect();
    json!({
        "path": path.display().to_string(),
        "exists": current.exists,
        "hash": hash(&current.text),
        "values": values(config),
        "set": set,
    })
}

fn parse_doc(path: &Path, text: &str) -> Result<DocumentMut, CliError> {
    text.parse::<DocumentMut>()
        .map_err(|e| CliError::Refused(format!("{}: {e}", path.display())))
}

fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('.') {
        Some((table, name)) => (Some(table), name),
        None => (None, key),
    }
}

fn is_set(doc: &DocumentMut, key: &str) -> bool {
    match split_key(key) {
        (None, name) => doc.get(name).is_some_and(|item| !item.is_table()),
        (Some(table), name) => doc
            .get(table)
            .and_then(Item::as_table_like)
            .is_some_and(|t| t.contains_key(name)),
    }
}

/// The effective value of every key, as JSON.
fn values(c: &Config) -> serde_json::Map<String, Value> {
    let path = |p: &Path| Value::from(p.display().to_string());
    let list = |v: &[String]| Value::from(v.to_vec());
    let pairs: Vec<(&str, Value)> = vec![
        ("state_dir", path(&c.state_dir)),
        ("issuer", c.issuer.clone().into()),
        ("label", c.label.clone().into()),
        (
            "unenrolled",
            match c.unenrolled {
                Unenrolled::Allow => "allow",
                Unenrolled::Deny => "deny",
            }
            .into(),
        ),
        ("totp.algorithm", c.totp.algorithm.name().into()),
        ("totp.digits", c.totp.digits.into()),
        ("totp.period", c.totp.period.into()),
        ("totp.skew", c.totp.skew.into()),
        ("lockout.max_failures", c.lockout.max_failures.into()),
        (
            "lockout.max_failures_user",
            c.lockout.max_failures_user.into(),
        ),
        ("lockout.window_secs", c.lockout.window_secs.into()),
        ("lockout.duration_secs", c.lockout.duration_secs.into()),
        ("emergency.count", c.emergency.count.into()),
        ("policy.enforce_users", list(&c.policy.enforce_users)),
        ("policy.enforce_groups", list(&c.policy.enforce_groups)),
        ("policy.exempt_users", list(&c.policy.exempt_users)),
        ("policy.exempt_groups", list(&c.policy.exempt_groups)),
        (
            "policy.on_unenrolled",
            match c.policy.on_unenrolled {
                OnUnenrolled::Deny => "deny",
                OnUnenrolled::Enroll => "enroll",
            }
            .into(),
        ),
        (
            "policy.trusted_networks",
            Value::from(
                c.policy
                    .trusted_networks
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            ),
        ),
        ("policy.trust_local", c.policy.trust_local.into()),
        ("policy.grace_period", c.policy.grace_period.into()),
        ("email.smtp_host", c.email.smtp_host.clone().into()),
        ("email.smtp_port", c.email.smtp_port.into()),
        (
            "email.security",
            match c.email.security {
                SmtpSecurity::Starttls => "starttls",
                SmtpSecurity::Tls => "tls",
                SmtpSecurity::None => "none",
            }
            .into(),
        ),
        ("email.username", c.email.username.clone().into()),
        ("email.password_file", path(&c.email.password_file)),
        ("email.from", c.email.from.clone().into()),
        ("email.subject", c.email.subject.clone().into()),
        ("email.code_digits", c.email.code_digits.into()),
        ("email.lifetime_secs", c.email.lifetime_secs.into()),
        ("email.max_per_minute", c.email.max_per_minute.into()),
        ("email.max_per_hour", c.email.max_per_hour.into()),
        ("email.timeout_secs", c.email.timeout_secs.into()),
        ("email.helper", path(&c.email.helper)),
        ("gate.window_secs", c.gate.window_secs.into()),
        ("gate.opened_by", list(&c.gate.opened_by)),
        ("self_service.enabled", c.self_service.enabled.into()),
        (
            "self_service.allow_enable",
            c.self_service.allow_enable.into(),
        ),
        (
            "self_service.allow_codes",
            c.self_service.allow_codes.into(),
        ),
        (
            "self_service.allow_add_device",
            c.self_service.allow_add_device.into(),
        ),
        (
            "self_service.allow_email",
            c.self_service.allow_email.into(),
        ),
        (
            "self_service.allow_disable",
            c.self_service.allow_disable.into(),
        ),
        (
            "self_service.pam_service",
            c.self_service.pam_service.clone().into(),
        ),
        (
            "store.backend",
            match c.store.backend {
                StoreBackend::File => "file",
                StoreBackend::Postgresql => "postgresql",
            }
            .into(),
        ),
        ("store.url", c.store.url.clone().into()),
        ("store.password_file", path(&c.store.password_file)),
        ("store.ca_file", path(&c.store.ca_file)),
        ("store.sslmode", c.store.sslmode.name().into()),
        ("store.timeout_secs", c.store.timeout_secs.into()),
        ("store.host_id", c.store.host_id.clone().into()),
        ("store.socket", path(&c.store.socket)),
        ("store.key_file", path(&c.store.key_file)),
        ("log.socket", path(&c.log.socket)),
    ];
    debug_assert_eq!(pairs.len(), KEYS.len());
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The TOML value for `text` given on the command line for a key of `kind`.
fn to_toml(key: &str, kind: Kind, text: &str) -> Result<toml_edit::Value, CliError> {
    let bad = |what: &str| CliError::Usage(format!("{key}: {text:?} is not {what}"));
    Ok(match kind {
        Kind::Text => text.into(),
        Kind::Integer => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| bad("a whole number"))?
            .into(),
        Kind::Boolean => match text {
            "true" => true.into(),
            "false" => false.into(),
            _ => return Err(bad("true or false")),
        },
        Kind::TextList => {
            let trimmed = text.trim();
            let items: Vec<String> = if trimmed.starts_with('[') {
                let value: toml_edit::Value = trimmed
                    .parse()
                    .map_err(|_| bad("a list (comma-separated, or a TOML array)"))?;
                let array = value.as_array().ok_or_else(|| bad("a TOML array"))?;
                array
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad("a list of strings"))
                    })
                    .collect::<Result<_, _>>()?
            } else {
                trimmed
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            };
            let mut array = Array::new();
            for item in items {
                array.push(item);
            }
            toml_edit::Value::Array(array)
        }
    })
}

/// Sets or removes `key` in the document, keeping everything else as it is.
fn apply(doc: &mut DocumentMut, key: &str, value: Option<toml_edit::Value>) {
    match split_key(key) {
        (None, name) => match value {
            Some(value) => {
                // toml_edit writes the root table's keys before the first table header.
                if let Some(existing) = doc.get_mut(name).and_then(Item::as_value_mut) {
                    let decor = existing.decor().clone();
                    *existing = value;
                    *existing.decor_mut() = decor;
                } else {
                    doc.insert(name, Item::Value(value));
                }
            }
            None => {
                doc.remove(name);
            }
        },
        (Some(table), name) => {
            if value.is_none() && !doc.contains_key(table) {
                return;
            }
            let entry = doc.entry(table).or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(false);
                Item::Table(t)
            });
            let Some(t) = entry.as_table_like_mut() else {
                return;
            };
            match value {
                Some(value) => {
                    if let Some(existing) = t.get_mut(name).and_then(Item::as_value_mut) {
                        let decor = existing.decor().clone();
                        *existing = value;
                        *existing.decor_mut() = decor;
                    } else {
                        t.insert(name, Item::Value(value));
                    }
                }
                None => {
                    t.remove(name);
                }
            }
        }
    }
}

pub fn set(path: &Path, args: &SetArgs) -> Result<(), CliError> {
    if args.pairs.chunks(2).any(|pair| pair.len() != 2) {
        return Err(CliError::usage(
            "config set takes KEY VALUE pairs (an even number of arguments)",
        ));
    }
    if args.pairs.is_empty() && args.unset.is_empty() {
        return Err(CliError::usage(
            "config set: nothing to change (give KEY VALUE pairs or --unset KEY)",
        ));
    }
    let mut changes: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
    for pair in args.pairs.chunks(2) {
        let (key, text) = (pair[0].as_str(), pair[1].as_str());
        changes.push((key, Some(to_toml(key, kind_of(key)?, text)?)));
    }
    for key in &args.unset {
        kind_of(key)?;
        changes.push((key, None));
    }

    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(CliError::Usage(format!(
            "{}: not a file path",
            path.display()
        )));
    };
    let dir = Dir::open_ancestors(parent)?
        .ok_or_else(|| CliError::Refused(format!("{}: no such directory", parent.display())))?;
    // Two `config set` at once must not both read the old file and each drop the other's
    // change: the second waits, then reads the first one's file (and --expect-hash refuses).
    let _lock = dir.lock_self()?;
    let current = read_current(path)?;
    if let Some(expected) = &args.expect_hash {
        let actual = hash(&current.text);
        if &actual != expected {
            return Err(CliError::Refused(format!(
                "{} changed since it was read (hash {actual}, expected {expected}); nothing was \
                 written: read it again",
                path.display()
            )));
        }
    }
    // The current file must load: a change is never made on top of a broken file, where the
    // admin's intent is unclear.
    Config::parse(path, &current.text)
        .map_err(|e| CliError::Refused(format!("{e}; fix the file first, nothing was written")))?;
    let mut doc = parse_doc(path, &current.text)?;
    for (key, value) in changes {
        apply(&mut doc, key, value);
    }
    let new_text = doc.to_string();
    let config = Config::parse(path, &new_text).map_err(|e| {
        CliError::Refused(format!(
            "refused, the file would not load: {e}; nothing was written"
        ))
    })?;
    if new_text != current.text {
        dir.replace_file_mode(
            OsStr::new(name),
            new_text.as_bytes(),
            Mode::from_bits_truncate(current.mode),
        )?;
        let keys: Vec<&str> = args
            .pairs
            .chunks(2)
            .map(|p| p[0].as_str())
            .chain(args.unset.iter().map(String::as_str))
            .collect();
        audit(&config, "config-set", &keys.join(","));
    }
    let written = Current {
        text: new_text,
        exists: true,
        mode: current.mode,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&describe(path, &written, &config, &doc))?;
        println!("{text}");
    } else {
        println!("Saved {} ({}).", path.display(), hash(&written.text));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# top comment\nunenrolled = \"allow\" # why\n\n[policy]\n# the grace\n\
                          #grace_period = 0\nenforce_groups = [\"a\"]   # staff\n\n[log]\n";

    fn edited(changes: &[(&str, Option<&str>)]) -> String {
        let mut doc = parse_doc(Path::new("/x"), SAMPLE).unwrap();
        for (key, text) in changes {
            let value = text.map(|t| to_toml(key, kind_of(key).unwrap(), t).unwrap());
            apply(&mut doc, key, value);
        }
        doc.to_string()
    }

    #[test]
    fn every_key_has_a_value_and_the_default_file_parses() {
        let values = values(&Config::default());
        for (key, _) in KEYS {
            assert!(values.contains_key(*key), "{key}");
        }
        assert_eq!(values.len(), KEYS.len());
    }

    #[test]
    fn edits_keep_comments_and_layout() {
        let text = edited(&[
            ("policy.grace_period", Some("3600")),
            ("policy.enforce_groups", Some("staff, admins")),
            ("unenrolled", Some("deny")),
        ]);
        assert!(
            text.starts_with("# top comment\nunenrolled = \"deny\" # why\n"),
            "{text}"
        );
        assert!(text.contains("# the grace\n#grace_period = 0\n"), "{text}");
        assert!(
            text.contains("enforce_groups = [\"staff\", \"admins\"]   # staff\n"),
            "{text}"
        );
        assert!(text.contains("grace_period = 3600\n"), "{text}");
        let config = Config::parse(Path::new("/x"), &text).unwrap();
        assert_eq!(config.policy.grace_period, 3600);
        assert_eq!(config.policy.enforce_groups, ["staff", "admins"]);
    }

    #[test]
    fn unset_and_new_tables() {
        let text = edited(&[
            ("policy.enforce_groups", None),
            ("lockout.max_failures", Some("3")),
            ("totp.skew", None),
        ]);
        assert!(!text.contains("enforce_groups ="), "{text}");
        assert!(text.contains("[lockout]\nmax_failures = 3\n"), "{text}");
        assert!(!text.contains("[totp]"), "{text}");
        let config = Config::parse(Path::new("/x"), &text).unwrap();
        assert_eq!(config.lockout.max_failures, 3);
    }

    #[test]
    fn values_are_typed() {
        assert!(to_toml("k", Kind::Integer, "-1").is_err());
        assert!(to_toml("k", Kind::Integer, "ten").is_err());
        assert!(to_toml("k", Kind::Boolean, "yes").is_err());
        let list = to_toml("k", Kind::TextList, "[\"a\", \"b\"]").unwrap();
        assert_eq!(list.to_string(), "[\"a\", \"b\"]");
        let empty = to_toml("k", Kind::TextList, "").unwrap();
        assert_eq!(empty.to_string(), "[]");
        assert!(kind_of("policy.nonsense").is_err());
    }
}
