//! One-time emergency codes: made here, shown once, stored only as salted PBKDF2 hashes.
//!
//! A new code is 12 characters from Crockford's base32 alphabet (60 bits), shown as
//! `abcd-efgh-jkmn`. That shape cannot be confused with a 6 or 8 digit TOTP code, so the login
//! path only pays for hashing when the input looks like an emergency code.
//! google-authenticator scratch codes (8 digits) carried over by the importer are kept in a
//! separate list, because they have the shape of a code.

use std::fmt;

use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::random;
use crate::toml_subset::{self, Fields, Writer};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
pub const CODE_CHARS: usize = 12;
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;
/// PBKDF2-HMAC-SHA256 rounds for new sets; the count is stored so it can grow later.
pub const DEFAULT_ROUNDS: u32 = 20_000;
const MAX_ROUNDS: u32 = 10_000_000;

/// The stored form (a record's `[emergency]` table): salt, rounds, and one hash per unused code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodeSet {
    /// Hex, shared by the set: one PBKDF2 run checks an input against every code.
    pub salt: String,
    pub rounds: u32,
    /// Hex hashes of unused 12-character codes.
    pub hashes: Vec<String>,
    /// Hex hashes of unused 8-digit scratch codes imported from google-authenticator.
    pub legacy_hashes: Vec<String>,
}

/// What an input is shaped like, decided before any hashing.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    Emergency(Zeroizing<String>),
    LegacyScratch(Zeroizing<String>),
    Other,
}

impl CodeSet {
    pub(crate) fn read(mut f: Fields) -> Result<CodeSet, toml_subset::Error> {
        let salt = f.string("salt")?.ok_or_else(|| f.missing("salt"))?;
        let rounds = f.u32("rounds")?.ok_or_else(|| f.missing("rounds"))?;
        let hashes = f.strings("hashes")?.unwrap_or_default();
        let legacy_hashes = f.strings("legacy_hashes")?.unwrap_or_default();
        f.finish()?;
        Ok(CodeSet {
            salt,
            rounds,
            hashes,
            legacy_hashes,
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.table(&["emergency"]);
        w.string("salt", &self.salt);
        w.u64("rounds", self.rounds.into());
        w.strings("hashes", &self.hashes);
        if !self.legacy_hashes.is_empty() {
            w.strings("legacy_hashes", &self.legacy_hashes);
        }
    }

    /// A fresh set of `count` codes; returns the set and the codes to show once.
    pub fn generate(count: u8) -> Result<(CodeSet, Vec<Zeroizing<String>>), Error> {
        let salt = random::bytes(SALT_BYTES)?;
        let mut set = CodeSet {
            salt: random::hex(&salt),
            rounds: DEFAULT_ROUNDS,
            hashes: Vec::new(),
            legacy_hashes: Vec::new(),
        };
        let mut shown = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let code = new_code()?;
            set.hashes.push(set.hash(&code)?);
            shown.push(format_code(&code));
        }
        Ok((set, shown))
    }

    /// Adds 8-digit scratch codes carried over from google-authenticator.
    pub fn add_legacy(&mut self, digits: &str) -> Result<(), Error> {
        if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Input("a scratch code must be 8 digits".into()));
        }
        let hash = self.hash(digits)?;
        self.legacy_hashes.push(hash);
        Ok(())
    }

    pub fn remaining(&self) -> usize {
        self.hashes.len() + self.legacy_hashes.len()
    }

    pub fn has_legacy(&self) -> bool {
        !self.legacy_hashes.is_empty()
    }

    /// Removes the code that matches `shape` and reports whether one did. Every stored hash is
    /// compared, match or not, so timing does not tell which one matched.
    pub fn consume(&mut self, shape: &Shape) -> Result<bool, Error> {
        let (code, list) = match shape {
            Shape::Emergency(code) => (code, &mut self.hashes),
            Shape::LegacyScratch(code) => (code, &mut self.legacy_hashes),
            Shape::Other => return Ok(false),
        };
        let wanted = hash_with(&self.salt, self.rounds, code)?;
        let mut found: Option<usize> = None;
        for (i, stored) in list.iter().enumerate() {
            let equal: bool = stored.as_bytes().ct_eq(wanted.as_bytes()).into();
            if equal && found.is_none() {
                found = Some(i);
            }
        }
        match found {
            Some(i) => {
                list.remove(i);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn hash(&self, code: &str) -> Result<String, Error> {
        hash_with(&self.salt, self.rounds, code)
    }

    /// Checks what a loaded record claims, so a damaged record fails loudly, not open.
    pub fn validate(&self) -> Result<(), CodeSetError> {
        let salt = random::unhex(&self.salt).ok_or(CodeSetError::SaltNotHex)?;
        if salt.len() < 8 {
            return Err(CodeSetError::SaltTooShort);
        }
        if self.rounds == 0 || self.rounds > MAX_ROUNDS {
            return Err(CodeSetError::Rounds);
        }
        for h in self.hashes.iter().chain(&self.legacy_hashes) {
            if h.len() != HASH_BYTES * 2 || !random::is_hex(h) {
                return Err(CodeSetError::MalformedHash);
            }
        }
        Ok(())
    }
}

/// Why [`CodeSet::validate`] refused a record's `[emergency]` table. Never holds a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSetError {
    SaltNotHex,
    /// Fewer than 8 bytes of salt.
    SaltTooShort,
    /// Not 1 to `MAX_ROUNDS`.
    Rounds,
    /// A hash that is not 64 hex digits.
    MalformedHash,
}

impl fmt::Display for CodeSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodeSetError::SaltNotHex => f.write_str("emergency salt is not hex"),
            CodeSetError::SaltTooShort => f.write_str("emergency salt is too short"),
            CodeSetError::Rounds => write!(f, "emergency rounds must be 1 to {MAX_ROUNDS}"),
            CodeSetError::MalformedHash => f.write_str("an emergency code hash is malformed"),
        }
    }
}

impl std::error::Error for CodeSetError {}

fn hash_with(salt_hex: &str, rounds: u32, code: &str) -> Result<String, Error> {
    let salt = random::unhex(salt_hex)
        .ok_or_else(|| Error::Bug("emergency code salt is not hex".into()))?;
    let mut out = Zeroizing::new([0u8; HASH_BYTES]);
    pbkdf2::pbkdf2_hmac::<Sha256>(code.as_bytes(), &salt, rounds, &mut out[..]);
    Ok(random::hex(&out[..]))
}

fn new_code() -> Result<Zeroizing<String>, Error> {
    let mut code = Zeroizing::new(String::with_capacity(CODE_CHARS));
    for _ in 0..CODE_CHARS {
        code.push(char::from(ALPHABET[random::index(ALPHABET.len())?]));
    }
    Ok(code)
}

/// `abcdefghjkmn` → `abcd-efgh-jkmn`.
fn format_code(code: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(CODE_CHARS + 2));
    for (i, c) in code.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// Whether `b` can be part of a typed emergency code (any case; I, L and O included, which
/// read as 1, 1 and 0).
pub fn is_code_char(b: u8) -> bool {
    let lower = b.to_ascii_lowercase();
    ALPHABET.contains(&lower) || matches!(lower, b'i' | b'l' | b'o')
}

/// Classifies typed input (already stripped of white space). `legacy` says whether the record
/// holds imported 8-digit scratch codes and `totp_digits` how long its TOTP codes are: an input
/// of the TOTP length is never a scratch code.
pub fn shape_of(input: &str, legacy: bool, totp_digits: u8) -> Shape {
    if legacy && totp_digits != 8 && input.len() == 8 && input.bytes().all(|b| b.is_ascii_digit()) {
        return Shape::LegacyScratch(Zeroizing::new(input.to_string()));
    }
    let mut code = Zeroizing::new(String::with_capacity(CODE_CHARS));
    for c in input.chars() {
        let c = match c.to_ascii_lowercase() {
            '-' => continue,
            // Crockford's decoding rules: letters that look like digits read as the digits.
            'i' | 'l' => '1',
            'o' => '0',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) || code.len() == CODE_CHARS {
            return Shape::Other;
        }
        code.push(c);
    }
    if code.len() == CODE_CHARS {
        Shape::Emergency(code)
    } else {
        Shape::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(code: &str) -> String {
        code.replace('-', "")
    }

    #[test]
    fn generated_codes_have_the_documented_shape_and_entropy() {
        let (set, codes) = CodeSet::generate(10).unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(set.hashes.len(), 10);
        set.validate().unwrap();
        for code in &codes {
            assert_eq!(code.len(), 14);
            assert_eq!(code.matches('-').count(), 2);
            assert!(matches!(shape_of(code, false, 6), Shape::Emergency(_)));
        }
        // 12 symbols from 32: 60 bits, above the 50-bit floor.
        assert!(CODE_CHARS as f64 * (ALPHABET.len() as f64).log2() >= 50.0);
        let mut unique: Vec<_> = codes.iter().map(|c| c.to_string()).collect();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
    }

    #[test]
    fn each_code_works_once_in_any_spelling() {
        let (mut set, codes) = CodeSet::generate(3).unwrap();
        let typed = plain(&codes[1]).to_uppercase();
        assert!(set.consume(&shape_of(&typed, false, 6)).unwrap());
        assert!(!set.consume(&shape_of(&typed, false, 6)).unwrap());
        assert_eq!(set.remaining(), 2);
        assert!(set.consume(&shape_of(&codes[0], false, 6)).unwrap());
        assert!(set.consume(&shape_of(&codes[2], false, 6)).unwrap());
        assert_eq!(set.remaining(), 0);
    }

    #[test]
    fn stored_hashes_do_not_contain_the_codes() {
        let (set, codes) = CodeSet::generate(2).unwrap();
        let mut stored = String::new();
        set.write(&mut Writer::new(&mut stored));
        for code in &codes {
            assert!(!stored.contains(plain(code).as_str()));
        }
    }

    #[test]
    fn totp_shaped_input_is_not_an_emergency_code() {
        assert_eq!(shape_of("123456", false, 6), Shape::Other);
        assert_eq!(shape_of("12345678", false, 6), Shape::Other);
        assert_eq!(shape_of("12345678", true, 8), Shape::Other);
        assert!(matches!(
            shape_of("12345678", true, 6),
            Shape::LegacyScratch(_)
        ));
        assert_eq!(shape_of("abcd-efgh-jkmnp", false, 6), Shape::Other);
        assert_eq!(shape_of("abcd-efgh-jku!", false, 6), Shape::Other);
        assert_eq!(shape_of("abcd-éfgh-jkmn", false, 6), Shape::Other);
        // Crockford: I, L read as 1 and O as 0.
        assert_eq!(
            shape_of("ILO0-abcd-efgh", false, 6),
            Shape::Emergency(Zeroizing::new("1100abcdefgh".into()))
        );
    }

    #[test]
    fn legacy_scratch_codes_work_once() {
        let (mut set, _) = CodeSet::generate(1).unwrap();
        set.add_legacy("12345678").unwrap();
        assert!(set.add_legacy("1234567").is_err());
        assert!(set.consume(&shape_of("12345678", true, 6)).unwrap());
        assert!(!set.consume(&shape_of("12345678", true, 6)).unwrap());
    }

    #[test]
    fn damaged_sets_are_refused() {
        let (set, _) = CodeSet::generate(1).unwrap();
        let mut bad = set.clone();
        bad.salt = "zz".into();
        assert!(bad.validate().is_err());
        let mut bad = set.clone();
        bad.rounds = 0;
        assert!(bad.validate().is_err());
        let mut bad = set;
        bad.hashes.push("abc".into());
        assert!(bad.validate().is_err());
    }
}
