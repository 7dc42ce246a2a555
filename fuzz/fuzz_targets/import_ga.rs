//! `import_ga::parse` on arbitrary bytes (a ~/.google_authenticator file): never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twostep_common::import_ga;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = import_ga::parse(data) {
        let _ = e.to_string();
    }
});
