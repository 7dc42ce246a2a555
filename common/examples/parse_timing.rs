//! What a login parses, timed: the default config (packaging/twostep.toml) and a full record
//! (common/tests/fixtures/record-v1-totp.toml, every table filled), `N` times each.
//!
//! ```text
//! cargo build --release -p twostep-common --example parse_timing
//! target/release/examples/parse_timing 100000          # wall time per config+record parse
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/parse_timing 1100        # and 100: the difference / 1000 is
//!                                                      # instructions per config+record parse
//! ```
//!
//! docs/benchmarks.md ("The TOML codec") has the numbers, and those of the `toml` crate's
//! parser in its place.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use twostep_common::config::Config;
use twostep_common::record::Record;

const CONFIG: &str = include_str!("../../packaging/twostep.toml");
const RECORD: &str = include_str!("../tests/fixtures/record-v1-totp.toml");

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N: a number of iterations"))
        .unwrap_or(10_000);
    let path = Path::new("/etc/twostep/twostep.toml");
    let start = Instant::now();
    for _ in 0..n {
        let config = Config::parse(black_box(path), black_box(CONFIG)).expect("the config parses");
        black_box(&config);
        let record = Record::parse(black_box(RECORD), "alice").expect("the record parses");
        black_box(&record);
    }
    let elapsed = start.elapsed();
    if n > 0 {
        println!(
            "{n} config+record parses: {:.2} µs each",
            elapsed.as_secs_f64() * 1e6 / f64::from(n)
        );
    }
}
