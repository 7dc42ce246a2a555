//! `emergency::shape_of`, which classifies what a user typed before any hashing: never panics,
//! and an input it calls an emergency code is exactly 12 symbols of the code alphabet, one it
//! calls a scratch code exactly 8 ASCII digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twostep_common::emergency::{Shape, shape_of};

const ALPHABET: &str = "0123456789abcdefghjkmnpqrstvwxyz";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(input) = std::str::from_utf8(rest) else {
        return;
    };
    let legacy = flags & 1 != 0;
    let digits = if flags & 2 != 0 { 8 } else { 6 };
    match shape_of(input, legacy, digits) {
        Shape::Emergency(code) => {
            assert_eq!(code.len(), 12, "{input:?}");
            assert!(code.chars().all(|c| ALPHABET.contains(c)), "{input:?}");
        }
        Shape::LegacyScratch(code) => {
            assert!(legacy && digits != 8, "{input:?}");
            assert!(code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()));
        }
        Shape::Other => {}
    }
});
