//! Between twostep's TOML codec and the `toml` crate: the tree in `toml`'s terms, and whether
//! a document `toml` accepted holds something the codec refuses on purpose (floats,
//! date-times, nesting deeper than `MAX_DEPTH`). Shared by common/tests/toml_subset_diff.rs and
//! the fuzz target fuzz/fuzz_targets/toml_subset.rs.

use twostep_common::toml_subset::{MAX_DEPTH, Table, Value};

pub fn to_toml_table(table: &Table) -> toml::Table {
    table
        .iter()
        .map(|(k, n)| (k.to_string(), to_toml(&n.value)))
        .collect()
}

fn to_toml(value: &Value) -> toml::Value {
    match value {
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Integer(n) => toml::Value::Integer(*n),
        Value::Boolean(b) => toml::Value::Boolean(*b),
        Value::Array(a) => toml::Value::Array(a.items.iter().map(|n| to_toml(&n.value)).collect()),
        Value::Table(t) => toml::Value::Table(to_toml_table(t)),
    }
}

/// Whether a document `toml` accepted holds something we refuse on purpose.
pub fn unsupported(table: &toml::Table, depth: usize) -> bool {
    table.values().any(|v| unsupported_value(v, depth + 1))
}

fn unsupported_value(value: &toml::Value, depth: usize) -> bool {
    depth > MAX_DEPTH
        || match value {
            toml::Value::Float(_) | toml::Value::Datetime(_) => true,
            toml::Value::Array(items) => items.iter().any(|v| unsupported_value(v, depth + 1)),
            toml::Value::Table(t) => unsupported(t, depth),
            _ => false,
        }
}
