//! `Record::parse` on arbitrary text: never panics, and whatever it accepts survives a round
//! trip unchanged, through the full (archive) text and through the record file text plus the
//! login-state text; the `toml` crate (the parser records were first read with) accepts the
//! input and every text written back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twostep_common::record::Record;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for user in ["alice", "fuzz"] {
        if let Ok(record) = Record::parse(text, user) {
            assert!(
                toml::from_str::<toml::Table>(text).is_ok(),
                "an accepted record is TOML"
            );
            let full = record
                .to_full_text()
                .expect("an accepted record serializes");
            let reparsed = Record::parse(&full, user).expect("a written record parses");
            assert_eq!(reparsed, record, "round trip changed the record");
            let file = record.to_file_text().expect("the record file text");
            let state = record.state_text().expect("the state text");
            let mut joined = Record::parse(&file, user).expect("a record file parses");
            joined.apply_state(&state).expect("a state text applies");
            assert_eq!(joined, record, "record file + state changed the record");
            for text in [&full, &file, &state] {
                assert!(
                    toml::from_str::<toml::Table>(text).is_ok(),
                    "a written text is TOML"
                );
            }
        }
    }
});
