//! `Record::parse` on arbitrary text: never panics, and whatever it accepts survives a round
//! trip through the file text unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twostep_common::record::Record;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for user in ["alice", "fuzz"] {
        if let Ok(record) = Record::parse(text, user) {
            let again = record
                .to_file_text()
                .expect("an accepted record serializes");
            let reparsed = Record::parse(&again, user).expect("a written record parses");
            assert_eq!(reparsed, record, "round trip changed the record");
        }
    }
});
