//! `Record::parse` on arbitrary text: never panics, and whatever it accepts survives a round
//! trip through the file text unchanged; the `toml` crate (the parser records were first read
//! with) accepts both the input and the text written back.
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
            let again = record
                .to_file_text()
                .expect("an accepted record serializes");
            let reparsed = Record::parse(&again, user).expect("a written record parses");
            assert_eq!(reparsed, record, "round trip changed the record");
            assert!(
                toml::from_str::<toml::Table>(&again).is_ok(),
                "a written record is TOML"
            );
        }
    }
});
