//! RFC 6238 codes. The arithmetic is totp-rs's; this file holds our parameters, lenient
//! base32 input, and the window search that reports which time step matched (replay checks
//! need it).

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::Error;

/// Keys shorter than this are refused (google-authenticator's shortest is 80 bits).
pub const MIN_SECRET_BYTES: usize = 10;
/// Keys longer than this are refused (RFC 4226 keys are a block size at most).
pub const MAX_SECRET_BYTES: usize = 128;
/// What `twostep enroll` creates: 160 bits, as RFC 4226 recommends.
pub const NEW_SECRET_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The spellings the config and records accept (exactly these; `parse` is lenient).
    pub(crate) const CHOICES: [(&'static str, Algorithm); 3] = [
        ("SHA1", Algorithm::Sha1),
        ("SHA256", Algorithm::Sha256),
        ("SHA512", Algorithm::Sha512),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    pub fn parse(text: &str) -> Option<Algorithm> {
        match text.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    fn to_lib(self) -> totp_rs::Algorithm {
        match self {
            Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
            Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
            Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

/// What an authenticator app needs besides the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
}

/// Why [`validate_params`] refused a code length or period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamsError {
    /// Not 6 or 8 digits.
    Digits(u8),
    /// Not 1 to 300 seconds.
    Period(u32),
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamsError::Digits(digits) => write!(f, "digits must be 6 or 8, not {digits}"),
            ParamsError::Period(period) => {
                write!(f, "period must be 1 to 300 seconds, not {period}")
            }
        }
    }
}

impl std::error::Error for ParamsError {}

/// For the CLI's validators, which still report a `String`.
impl From<ParamsError> for String {
    fn from(e: ParamsError) -> String {
        e.to_string()
    }
}

impl From<ParamsError> for Error {
    fn from(e: ParamsError) -> Error {
        Error::Input(e.to_string())
    }
}

pub fn validate_params(digits: u8, period: u32) -> Result<(), ParamsError> {
    if digits != 6 && digits != 8 {
        return Err(ParamsError::Digits(digits));
    }
    if !(1..=300).contains(&period) {
        return Err(ParamsError::Period(period));
    }
    Ok(())
}

/// Why [`decode_secret`] refused a key. Never holds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretError {
    /// Nothing left after removing spaces, dashes and padding.
    Empty,
    /// A character outside A-Z and 2-7.
    NotBase32Alphabet,
    /// Base32 letters that do not decode (a length no key has).
    NotBase32,
    /// Fewer than [`MIN_SECRET_BYTES`]; the key's length in bits.
    TooShort(usize),
    /// More than [`MAX_SECRET_BYTES`]; the key's length in bits.
    TooLong(usize),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => f.write_str("the secret is empty"),
            SecretError::NotBase32Alphabet => {
                f.write_str("the secret is not base32 (letters A-Z and digits 2-7)")
            }
            SecretError::NotBase32 => f.write_str("the secret is not valid base32"),
            SecretError::TooShort(bits) => write!(
                f,
                "the secret has {bits} bits; at least {} are required",
                MIN_SECRET_BYTES * 8
            ),
            SecretError::TooLong(bits) => write!(
                f,
                "the secret has {bits} bits; at most {} are accepted",
                MAX_SECRET_BYTES * 8
            ),
        }
    }
}

impl std::error::Error for SecretError {}

impl From<SecretError> for Error {
    fn from(e: SecretError) -> Error {
        Error::Input(e.to_string())
    }
}

/// Raw key bytes, wiped when dropped.
pub type Key = Zeroizing<Vec<u8>>;

/// Decodes a base32 key the way people type it: any case, spaces and dashes ignored, `=`
/// padding optional.
pub fn decode_secret(text: &str) -> Result<Key, SecretError> {
    let cleaned: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\t' | '='))
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    if cleaned.is_empty() {
        return Err(SecretError::Empty);
    }
    if !cleaned
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    {
        return Err(SecretError::NotBase32Alphabet);
    }
    let bytes = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &cleaned)
        .map(Zeroizing::new)
        .ok_or(SecretError::NotBase32)?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort(bytes.len() * 8));
    }
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(SecretError::TooLong(bytes.len() * 8));
    }
    Ok(bytes)
}

/// Base32 without padding, as authenticator apps expect.
pub fn encode_secret(key: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(base32::encode(
        base32::Alphabet::Rfc4648 { padding: false },
        key,
    ))
}

pub fn new_secret() -> Result<Key, Error> {
    crate::random::bytes(NEW_SECRET_BYTES)
}

fn engine(key: &[u8], params: Params) -> totp_rs::TOTP {
    // Skew 0: the window search is `matching_step`'s (totp-rs 5's `check` answers only yes or
    // no, and underflows near time 0).
    totp_rs::TOTP::new_unchecked(
        params.algorithm.to_lib(),
        usize::from(params.digits),
        0,
        u64::from(params.period.max(1)),
        key.to_vec(),
    )
}

/// The code for the time step holding `time`.
pub fn code_at(key: &[u8], params: Params, time: u64) -> Zeroizing<String> {
    Zeroizing::new(engine(key, params).generate(time))
}

/// The time step (counter) whose code is `code` within ±`skew` steps of `now`, compared in
/// constant time. `code` must already be digits only, of the record's length.
pub fn matching_step(key: &[u8], params: Params, skew: u8, code: &str, now: u64) -> Option<u64> {
    if code.len() != usize::from(params.digits) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = engine(key, params);
    let step = totp.step;
    let origin = now / step;
    // Saturating: a clock near the end of time must not wrap around to codes of the past.
    let mut window =
        origin.saturating_sub(u64::from(skew))..=origin.saturating_add(u64::from(skew));
    window.find(|&counter| {
        let candidate = Zeroizing::new(totp.generate(counter.saturating_mul(step)));
        bool::from(candidate.as_bytes().ct_eq(code.as_bytes()))
    })
}

pub fn step_of(params: Params, time: u64) -> u64 {
    time / u64::from(params.period.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1_KEY: &[u8] = b"12345678901234567890";
    const SHA256_KEY: &[u8] = b"12345678901234567890123456789012";
    const SHA512_KEY: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn p(algorithm: Algorithm) -> Params {
        Params {
            algorithm,
            digits: 8,
            period: 30,
        }
    }

    /// RFC 6238 Appendix B, every row.
    #[test]
    fn rfc6238_appendix_b() {
        let rows: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, sha1, sha256, sha512) in rows {
            assert_eq!(
                *code_at(SHA1_KEY, p(Algorithm::Sha1), time),
                sha1,
                "SHA1 @{time}"
            );
            assert_eq!(
                *code_at(SHA256_KEY, p(Algorithm::Sha256), time),
                sha256,
                "SHA256 @{time}"
            );
            assert_eq!(
                *code_at(SHA512_KEY, p(Algorithm::Sha512), time),
                sha512,
                "SHA512 @{time}"
            );
        }
    }

    /// google-authenticator-libpam's own vector: t=300000 s with 30 s steps (counter 10000);
    /// checked against oathtool.
    #[test]
    fn google_authenticator_vector() {
        let key = decode_secret("2SH3V3GDW7ZNMGYE").unwrap();
        let params = Params {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
        };
        assert_eq!(*code_at(&key, params, 300000), "050548");
    }

    #[test]
    fn window_search_reports_the_step() {
        let params = p(Algorithm::Sha1);
        let now = 1_800_000_015;
        let step = step_of(params, now);
        for offset in [-1i64, 0, 1] {
            let t = (now as i64 + offset * 30) as u64;
            let code = code_at(SHA1_KEY, params, t);
            assert_eq!(
                matching_step(SHA1_KEY, params, 1, &code, now),
                Some((step as i64 + offset) as u64)
            );
        }
        for offset in [-2i64, 2] {
            let code = code_at(SHA1_KEY, params, (now as i64 + offset * 30) as u64);
            assert_eq!(matching_step(SHA1_KEY, params, 1, &code, now), None);
        }
    }

    #[test]
    fn malformed_codes_never_match() {
        let params = Params {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
        };
        let code = code_at(SHA1_KEY, params, 1000);
        assert!(matching_step(SHA1_KEY, params, 1, &code, 1000).is_some());
        assert_eq!(
            matching_step(SHA1_KEY, params, 1, &format!("{}0", *code), 1000),
            None
        );
        assert_eq!(matching_step(SHA1_KEY, params, 1, "12a456", 1000), None);
        assert_eq!(matching_step(SHA1_KEY, params, 1, "", 1000), None);
    }

    #[test]
    fn secrets_decode_leniently_and_refuse_junk() {
        let key = decode_secret("jbsw y3dp-ehpk 3pxp").unwrap();
        assert_eq!(&key[..], b"Hello!\xde\xad\xbe\xef");
        assert_eq!(*encode_secret(&key), "JBSWY3DPEHPK3PXP");
        assert!(decode_secret("JBSWY3DPEHPK3PX1").is_err());
        assert!(decode_secret("").is_err());
        assert!(
            decode_secret("JBSWY3DP").is_err(),
            "40-bit keys are too short"
        );
        assert!(decode_secret(&"A".repeat(300)).is_err());
        assert_eq!(new_secret().unwrap().len(), 20);
    }
}
