//! The TOML codec against the `toml` crate on arbitrary text (the same rule as
//! common/tests/toml_subset_diff.rs): what `toml` accepts we accept with the same values,
//! unless it holds a float or a date-time or nests deeper than we allow (refused on purpose
//! as "unsupported"); what we accept, `toml` accepts. Positions stay inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twostep_common::toml_subset::{self, ErrorKind};

use twostep_testkit::toml_compare::{to_toml_table, unsupported};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = toml_subset::parse(text);
    let theirs = toml::from_str::<toml::Table>(text);
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => assert_eq!(to_toml_table(&ours), theirs, "different values"),
        (Ok(ours), Err(e)) => panic!("we accept what toml refuses ({}): {ours:?}", e.message()),
        (Err(e), Ok(theirs)) => assert!(
            e.kind == ErrorKind::Unsupported && unsupported(&theirs, 0),
            "we refuse ({e}) what toml accepts: {theirs:?}"
        ),
        (Err(e), Err(_)) => {
            let lines = text.split('\n').count();
            assert!(
                e.pos.line >= 1 && e.pos.line <= lines,
                "{e} (text has {lines} lines)"
            );
            let line = text.split('\n').nth(e.pos.line - 1).unwrap_or("");
            assert!(
                e.pos.column >= 1 && e.pos.column <= line.chars().count() + 1,
                "{e} (line has {} characters)",
                line.chars().count()
            );
        }
    }
});
