//! `Config::parse` on arbitrary text: never panics; errors render (file:line:column) with a
//! position inside the text; what it accepts, the `toml` crate accepts too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use twostep_common::config::Config;
use twostep_common::error::Error;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("/etc/twostep/twostep.toml"), text) {
        Ok(config) => {
            assert!(config.state_dir.is_absolute(), "validated state_dir");
            assert!(
                toml::from_str::<toml::Table>(text).is_ok(),
                "an accepted config is TOML"
            );
        }
        Err(e) => {
            if let Error::Config { line, .. } = &e {
                assert!(
                    *line <= text.lines().count() + 1,
                    "line {line} is past the end"
                );
            }
            let _ = e.to_string();
        }
    }
});
