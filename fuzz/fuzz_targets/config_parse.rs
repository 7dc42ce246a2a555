//! `Config::parse` on arbitrary text: never panics; errors render (file:line:column).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use twostep_common::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("/etc/twostep/twostep.toml"), text) {
        Ok(config) => {
            assert!(config.state_dir.is_absolute(), "validated state_dir");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
