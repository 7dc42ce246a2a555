//! Reading a google-authenticator-libpam state file (`~/.google_authenticator`) so its user can
//! move to twostep without enrolling again. Pure: the caller reads the file (as that user, see
//! the CLI) and hands over the bytes.
//!
//! The format, as google-authenticator-libpam reads it:
//! - line 1 is the base32 key (any case; spaces and `-` ignored; `0`, `1`, `8` read as `O`, `L`,
//!   `B`);
//! - option lines are `" KEY [value]`, found anywhere after line 1; the first of duplicates wins;
//! - scratch codes are whole lines of 8 digits (10000000..99999999); reading them stops at the
//!   first line that is neither blank, an option nor a code;
//! - codes are always HMAC-SHA1 with 6 digits.
//!
//! What twostep cannot do the same way is refused (counter-based HOTP files) or reported in
//! [`Imported::notes`]. No message here ever contains the key or a scratch code.

use std::fmt;

use zeroize::Zeroizing;

use crate::config::Config;
use crate::enroll::{self, NewEnrollment};
use crate::error::Error;
use crate::totp::{self, Algorithm, Params};

/// google-authenticator refuses larger files; so does the importer.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// google-authenticator makes at most 10; more means a hand-edited file, and every code adds a
/// hash to the record (which has a size limit of its own).
pub const MAX_SCRATCH_CODES: usize = 50;
/// twostep's largest window (`totp.skew`), in steps each side.
pub const MAX_SKEW: u8 = 10;
/// google-authenticator's window when the file has no `WINDOW_SIZE`: 3 steps, i.e. ±1.
pub const DEFAULT_WINDOW_SIZE: u32 = 3;
const DEFAULT_STEP_SIZE: u32 = 30;

/// What a google-authenticator file holds, in twostep's terms.
pub struct Imported {
    pub key: Zeroizing<Vec<u8>>,
    /// `STEP_SIZE`, 30 s when absent.
    pub period: u32,
    /// Steps accepted on each side: `(WINDOW_SIZE - 1) / 2`, at most [`MAX_SKEW`].
    pub skew: u8,
    /// `WINDOW_SIZE` as written; `None` when the file has none (google-authenticator then uses
    /// 3, and the import leaves the window to the config's `totp.skew`).
    pub window_size: Option<u32>,
    /// Unused scratch codes, 8 digits each, in file order.
    pub scratch_codes: Vec<Zeroizing<String>>,
    /// Settings that were not carried over, or changed meaning, for the admin to read.
    pub notes: Vec<String>,
}

impl fmt::Debug for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imported")
            .field("key", &"<redacted>")
            .field("period", &self.period)
            .field("skew", &self.skew)
            .field("window_size", &self.window_size)
            .field("scratch_codes", &self.scratch_codes.len())
            .field("notes", &self.notes)
            .finish()
    }
}

impl Imported {
    /// The stored window: `Some(skew)` when the file sets `WINDOW_SIZE`, else `None` (the
    /// config's `totp.skew`; google-authenticator's default ±1 is also twostep's default).
    pub fn record_skew(&self) -> Option<u8> {
        self.window_size.map(|_| self.skew)
    }

    pub fn params(&self) -> Params {
        Params {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: self.period,
        }
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Input(message.into())
}

/// Parses the contents of a `~/.google_authenticator` file.
pub fn parse(text: &[u8]) -> Result<Imported, Error> {
    if text.is_empty() {
        return Err(invalid("the file is empty"));
    }
    if text.len() > MAX_FILE_BYTES {
        return Err(invalid(format!(
            "the file is larger than {} KiB; google-authenticator refuses such files too",
            MAX_FILE_BYTES / 1024
        )));
    }
    if text.contains(&0) {
        return Err(invalid(
            "the file contains NUL bytes; it is not a google-authenticator file",
        ));
    }
    let text =
        std::str::from_utf8(text).map_err(|_| invalid("the file is not text (invalid UTF-8)"))?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));

    let first = lines.next().unwrap_or_default();
    if first.starts_with('"') {
        return Err(invalid(
            "line 1 is an option line; it must be the secret key",
        ));
    }
    let key = decode_key(first)?;

    let mut options = Options::default();
    let mut notes = Vec::new();
    let mut scratch_codes: Vec<Zeroizing<String>> = Vec::new();
    let mut codes_ended = false;
    for (index, line) in lines.enumerate() {
        let number = index + 2;
        if line.starts_with('"') {
            options.add(line, number, &mut notes);
            continue;
        }
        if codes_ended {
            continue;
        }
        if line.trim_matches([' ', '\t', '\r']).is_empty() {
            continue;
        }
        if is_scratch_code(line) {
            if scratch_codes.len() == MAX_SCRATCH_CODES {
                return Err(invalid(format!(
                    "the file holds more than {MAX_SCRATCH_CODES} scratch codes \
                     (google-authenticator makes at most 10); remove the surplus first"
                )));
            }
            scratch_codes.push(Zeroizing::new(line.to_string()));
        } else {
            codes_ended = true;
            notes.push(format!(
                "line {number} is neither an option nor a scratch code; google-authenticator \
                 reads no scratch codes from there on, and neither does the import"
            ));
        }
    }

    let settings = options.resolve(&mut notes)?;
    Ok(Imported {
        key,
        period: settings.period,
        skew: settings.skew,
        window_size: settings.window_size,
        scratch_codes,
        notes,
    })
}

/// Line 1, read as google-authenticator reads it: `0`, `1` and `8` are taken for the letters
/// they are mistaken for; the rest is [`totp::decode_secret`]'s lenient base32.
fn decode_key(line: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mapped: Zeroizing<String> = Zeroizing::new(
        line.chars()
            .map(|c| match c {
                '0' => 'O',
                '1' => 'L',
                '8' => 'B',
                c => c,
            })
            .collect(),
    );
    totp::decode_secret(&mapped).map_err(|e| invalid(format!("line 1 (the secret key): {e}")))
}

/// Exactly 8 ASCII digits, 10000000..99999999.
fn is_scratch_code(line: &str) -> bool {
    line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) && !line.starts_with('0')
}

/// The value of each known option, first occurrence only.
#[derive(Default)]
struct Options<'a> {
    totp_auth: bool,
    hotp_counter: Option<&'a str>,
    step_size: Option<&'a str>,
    window_size: Option<&'a str>,
    disallow_reuse: bool,
    rate_limit: Option<&'a str>,
    time_skew: Option<&'a str>,
    unknown: Vec<String>,
}

struct Settings {
    period: u32,
    skew: u8,
    window_size: Option<u32>,
}

impl<'a> Options<'a> {
    fn add(&mut self, line: &'a str, number: usize, notes: &mut Vec<String>) {
        let Some(rest) = line.strip_prefix("\" ") else {
            notes.push(format!(
                "line {number} starts with '\"' but is not an option line; ignored"
            ));
            return;
        };
        let (key, value) = match rest.find([' ', '\t']) {
            Some(i) => (&rest[..i], rest[i..].trim_start_matches([' ', '\t'])),
            None => (rest, ""),
        };
        let slot = match key {
            "TOTP_AUTH" => {
                self.totp_auth = true;
                return;
            }
            "DISALLOW_REUSE" => {
                self.disallow_reuse = true;
                return;
            }
            "HOTP_COUNTER" => &mut self.hotp_counter,
            "STEP_SIZE" => &mut self.step_size,
            "WINDOW_SIZE" => &mut self.window_size,
            "RATE_LIMIT" => &mut self.rate_limit,
            "TIME_SKEW" => &mut self.time_skew,
            // State google-authenticator keeps for itself; meaningless to twostep.
            "RESETTING_TIME_SKEW" => return,
            k if is_last_login_key(k) => return,
            _ => {
                let shown = if printable_key(key) {
                    format!("option {key}")
                } else {
                    format!("the option on line {number}")
                };
                if !self.unknown.contains(&shown) {
                    self.unknown.push(shown);
                }
                return;
            }
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    fn resolve(self, notes: &mut Vec<String>) -> Result<Settings, Error> {
        if let Some(value) = self.hotp_counter {
            if leading_integer(value).is_some_and(|n| n >= 1) {
                return Err(invalid(
                    "this file is set up for counter-based (HOTP) codes; twostep supports only \
                     time-based (TOTP) codes, so the user must enroll afresh with `twostep enroll`",
                ));
            }
            notes.push(
                "HOTP_COUNTER is below 1, so it was inactive; ignored as google-authenticator \
                 does"
                    .into(),
            );
        }
        if !self.totp_auth {
            return Err(invalid(
                "the file has no TOTP_AUTH line: google-authenticator accepts no time-based \
                 codes with it, so there is nothing to import; enroll the user with `twostep \
                 enroll`",
            ));
        }

        let period = match self.step_size {
            None => DEFAULT_STEP_SIZE,
            Some(value) => match number_in(value, 1, 60) {
                Some(n) => n,
                None => {
                    return Err(invalid(
                        "STEP_SIZE must be a number from 1 to 60; google-authenticator refuses \
                         this file too",
                    ));
                }
            },
        };

        let window_size = match self.window_size {
            None => None,
            Some(value) => match number_in(value, 1, 100) {
                Some(n) => Some(n),
                None => {
                    return Err(invalid(
                        "WINDOW_SIZE must be a number from 1 to 100; google-authenticator \
                         refuses this file too",
                    ));
                }
            },
        };
        let window = window_size.unwrap_or(DEFAULT_WINDOW_SIZE);
        let wanted = (window - 1) / 2;
        let skew = u8::try_from(wanted).unwrap_or(u8::MAX).min(MAX_SKEW);
        if wanted > u32::from(MAX_SKEW) {
            notes.push(format!(
                "WINDOW_SIZE {window} accepted ±{wanted} steps; twostep accepts at most \
                 ±{MAX_SKEW}, so the window is now ±{MAX_SKEW} steps"
            ));
        }
        if window % 2 == 0 {
            notes.push(format!(
                "WINDOW_SIZE {window} is even: google-authenticator accepted {} steps back and \
                 {} ahead; twostep's window is symmetric, ±{skew}",
                (window - 1) / 2,
                window / 2
            ));
        }

        if self.disallow_reuse {
            notes.push(
                "DISALLOW_REUSE: nothing to carry over, twostep always refuses a code for a \
                 time step that was already used"
                    .into(),
            );
        } else {
            notes.push(
                "the file allowed reusing a code within its window; twostep refuses reuse".into(),
            );
        }

        if let Some(value) = self.rate_limit {
            let mut fields = value.split([' ', '\t']).filter(|f| !f.is_empty());
            let described = match (fields.next(), fields.next()) {
                (Some(n), Some(m)) if all_digits(n, 4) && all_digits(m, 5) => {
                    format!("RATE_LIMIT ({n} attempts per {m} s)")
                }
                _ => "RATE_LIMIT".to_string(),
            };
            notes.push(format!(
                "{described} is not carried over; twostep's lockout applies instead \
                 ([lockout] in the config)"
            ));
        }

        if let Some(steps) = self.time_skew.and_then(leading_integer).filter(|&s| s != 0) {
            let seconds = steps.saturating_mul(i64::from(period));
            let mut note = format!(
                "TIME_SKEW {steps}: google-authenticator was compensating a clock difference of \
                 about {seconds} s between this machine and the user's device; twostep does \
                 not, so check this machine's clock (NTP)"
            );
            if steps.unsigned_abs() > u64::from(skew) {
                note.push_str(
                    "; until the clocks agree the user's codes fall outside the window and will \
                     be refused",
                );
            }
            notes.push(note);
        }

        for what in self.unknown {
            notes.push(format!("{what} is unknown to the importer; ignored"));
        }

        Ok(Settings {
            period,
            skew,
            window_size,
        })
    }
}

/// `LAST0` .. `LAST9`: google-authenticator's grace-period memory of recent logins.
fn is_last_login_key(key: &str) -> bool {
    key.len() == 5 && key.starts_with("LAST") && key.as_bytes()[4].is_ascii_digit()
}

/// Option names shown back to the admin must look like option names.
fn printable_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn all_digits(text: &str, max_len: usize) -> bool {
    !text.is_empty() && text.len() <= max_len && text.bytes().all(|b| b.is_ascii_digit())
}

/// The first field as a whole number in `min..=max`; the rest of the value must be white
/// space or further fields (google-authenticator ignores what follows a space).
fn number_in(value: &str, min: u32, max: u32) -> Option<u32> {
    let field = value.split([' ', '\t']).next()?;
    if !all_digits(field, 10) {
        return None;
    }
    field
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
}

/// An optionally signed leading integer, as `strtol` reads one (`None` when there is none).
fn leading_integer(value: &str) -> Option<i64> {
    let value = value.trim_start_matches([' ', '\t']);
    let (negative, digits) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    // Saturates like strtol on overflow.
    let magnitude = digits[..end].parse::<i64>().unwrap_or(i64::MAX);
    Some(if negative { -magnitude } else { magnitude })
}

/// Builds (does not store) the record for an imported user: the same key, SHA-1, 6 digits,
/// the file's period and window, every scratch code as a one-time legacy code, and a fresh set
/// of twostep emergency codes (returned in [`NewEnrollment::emergency_codes`] to show once).
///
/// New codes are issued as well as the old ones kept: the scratch codes keep working so the
/// switch locks nobody out, but they have sat in a file the user (and anyone with the user's
/// account or backups) could read, and there are at most a handful left, so the user also
/// gets a full set of codes that exist nowhere but on the admin's screen.
pub fn to_enrollment(
    config: &Config,
    user: &str,
    imported: &Imported,
    now: u64,
) -> Result<NewEnrollment, Error> {
    let mut new = enroll::new_totp(config, user, &imported.key, imported.params(), now)?;
    if let Some(totp) = new.record.totp.as_mut() {
        totp.skew = imported.record_skew();
    }
    for code in &imported.scratch_codes {
        new.record.emergency.add_legacy(code)?;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emergency::shape_of;

    const VECTOR_KEY: &str = "2SH3V3GDW7ZNMGYE";

    /// A file as `google-authenticator -t -d -f -C -r 3 -R 30 -w 3 -e 5` writes it.
    fn sample() -> String {
        format!(
            "{VECTOR_KEY}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\
             \" TOTP_AUTH\n26106236\n49858317\n16414872\n80942285\n36419134\n"
        )
    }

    fn err(text: &[u8]) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_a_standard_file_and_the_published_vector() {
        let imported = parse(sample().as_bytes()).unwrap();
        assert_eq!(imported.period, 30);
        assert_eq!(imported.skew, 1);
        assert_eq!(imported.window_size, Some(3));
        assert_eq!(imported.record_skew(), Some(1));
        let codes: Vec<&str> = imported.scratch_codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            codes,
            ["26106236", "49858317", "16414872", "80942285", "36419134"]
        );
        // google-authenticator-libpam's own vector: t=300000 s, 30 s steps.
        assert_eq!(
            *totp::code_at(&imported.key, imported.params(), 300000),
            "050548"
        );
        let notes = imported.notes.join("\n");
        assert!(
            notes.contains("RATE_LIMIT (3 attempts per 30 s)"),
            "{notes}"
        );
        assert!(notes.contains("DISALLOW_REUSE"), "{notes}");
    }

    #[test]
    fn lenient_key_spelling_as_google_authenticator_reads_it() {
        let spaced = "2sh3 v3gd-w7zn mgye\r\n\" TOTP_AUTH\r\n12345678\r\n";
        let imported = parse(spaced.as_bytes()).unwrap();
        assert_eq!(
            *totp::code_at(&imported.key, imported.params(), 300000),
            "050548"
        );
        assert_eq!(imported.scratch_codes.len(), 1);
        assert_eq!(imported.window_size, None);
        assert_eq!(imported.record_skew(), None);
        assert_eq!(imported.skew, 1);
        // '0', '1', '8' are read as 'O', 'L', 'B'.
        let a = parse(b"JBSWY3DPEHPK3PXPOLBA\n\" TOTP_AUTH\n").unwrap();
        let b = parse(b"JBSWY3DPEHPK3PXP0180\n\" TOTP_AUTH\n").unwrap();
        assert_eq!(a.key, b.key);
    }

    #[test]
    fn key_sizes_in_the_wild() {
        // 80 bits (16 chars), 128 bits (26 chars, google-authenticator's default), 160 bits.
        for (b32, bytes) in [
            ("2SH3V3GDW7ZNMGYE", 10),
            ("ZWMEJVAXAFXNOI57DECPUFEJTU", 16),
            ("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 20),
        ] {
            let imported = parse(format!("{b32}\n\" TOTP_AUTH\n").as_bytes()).unwrap();
            assert_eq!(imported.key.len(), bytes, "{b32}");
        }
        assert!(err(b"JBSWY3DP\n\" TOTP_AUTH\n").contains("bits"));
    }

    #[test]
    fn hotp_files_are_refused_clearly() {
        let text = format!("{VECTOR_KEY}\n\" WINDOW_SIZE 3\n\" HOTP_COUNTER 1\n15778810\n");
        let message = err(text.as_bytes());
        assert!(message.contains("counter-based (HOTP)"), "{message}");
        assert!(message.contains("twostep enroll"), "{message}");
        // HOTP wins over TOTP_AUTH, as in google-authenticator.
        let both = format!("{VECTOR_KEY}\n\" TOTP_AUTH\n\" HOTP_COUNTER 7\n");
        assert!(err(both.as_bytes()).contains("HOTP"));
        // A counter below 1 is inactive in google-authenticator.
        let inactive = format!("{VECTOR_KEY}\n\" HOTP_COUNTER 0\n\" TOTP_AUTH\n");
        let imported = parse(inactive.as_bytes()).unwrap();
        assert!(imported.notes.iter().any(|n| n.contains("HOTP_COUNTER")));
    }

    #[test]
    fn files_without_totp_auth_are_refused() {
        let text = format!("{VECTOR_KEY}\n12345678\n");
        assert!(err(text.as_bytes()).contains("TOTP_AUTH"));
    }

    #[test]
    fn step_and_window_sizes() {
        let imported = parse(
            format!("{VECTOR_KEY}\n\" WINDOW_SIZE 17\n\" STEP_SIZE 60\n\" TOTP_AUTH").as_bytes(),
        )
        .unwrap();
        assert_eq!((imported.period, imported.skew), (60, 8));
        assert_eq!(imported.record_skew(), Some(8));

        let wide =
            parse(format!("{VECTOR_KEY}\n\" WINDOW_SIZE 100\n\" TOTP_AUTH\n").as_bytes()).unwrap();
        assert_eq!(wide.skew, MAX_SKEW);
        assert!(
            wide.notes.iter().any(|n| n.contains("at most ±10")),
            "{:?}",
            wide.notes
        );

        let one =
            parse(format!("{VECTOR_KEY}\n\" WINDOW_SIZE 1\n\" TOTP_AUTH\n").as_bytes()).unwrap();
        assert_eq!(one.skew, 0);

        let even =
            parse(format!("{VECTOR_KEY}\n\" WINDOW_SIZE 4\n\" TOTP_AUTH\n").as_bytes()).unwrap();
        assert_eq!(even.skew, 1);
        assert!(even.notes.iter().any(|n| n.contains("even")));

        for bad in [
            "\" STEP_SIZE 0",
            "\" STEP_SIZE 61",
            "\" STEP_SIZE x",
            "\" STEP_SIZE",
            "\" WINDOW_SIZE 0",
            "\" WINDOW_SIZE 101",
            "\" WINDOW_SIZE -3",
            "\" WINDOW_SIZE 99999999999999999999",
        ] {
            let text = format!("{VECTOR_KEY}\n{bad}\n\" TOTP_AUTH\n");
            let message = err(text.as_bytes());
            let key = bad.split(' ').nth(1).unwrap();
            assert!(message.contains(key), "{bad}: {message}");
        }
    }

    #[test]
    fn first_duplicate_wins() {
        let text = format!(
            "{VECTOR_KEY}\n\" STEP_SIZE 60\n\" STEP_SIZE 30\n\" WINDOW_SIZE 5\n\
             \" WINDOW_SIZE 200\n\" TOTP_AUTH\n\" TOTP_AUTH\n"
        );
        let imported = parse(text.as_bytes()).unwrap();
        assert_eq!((imported.period, imported.skew), (60, 2));
        let hotp_later =
            format!("{VECTOR_KEY}\n\" HOTP_COUNTER 0\n\" HOTP_COUNTER 5\n\" TOTP_AUTH\n");
        assert!(parse(hotp_later.as_bytes()).is_ok());
    }

    #[test]
    fn scratch_codes_stop_at_the_first_foreign_line_but_options_do_not() {
        let text = format!(
            "{VECTOR_KEY}\n\n\" TOTP_AUTH\n11111111\n  \n22222222\n\" LAST0 10.0.0.1 1700000000\n\
             33333333\n123456789\n44444444\n\" STEP_SIZE 60\n"
        );
        let imported = parse(text.as_bytes()).unwrap();
        let codes: Vec<&str> = imported.scratch_codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes, ["11111111", "22222222", "33333333"]);
        assert_eq!(imported.period, 60, "options after the stop still count");
        assert!(
            imported.notes.iter().any(|n| n.contains("line 9 ")),
            "{:?}",
            imported.notes
        );
        for not_a_code in ["01234567", "1234567", "+1234567", " 12345678", "1234567a"] {
            let text = format!("{VECTOR_KEY}\n\" TOTP_AUTH\n{not_a_code}\n87654321\n");
            assert!(
                parse(text.as_bytes()).unwrap().scratch_codes.is_empty(),
                "{not_a_code}"
            );
        }
    }

    #[test]
    fn too_many_scratch_codes_are_refused() {
        let mut text = format!("{VECTOR_KEY}\n\" TOTP_AUTH\n");
        for i in 0..=MAX_SCRATCH_CODES {
            text.push_str(&format!("{}\n", 10_000_000 + i));
        }
        assert!(err(text.as_bytes()).contains("scratch codes"));
    }

    #[test]
    fn other_options_are_reported_not_carried() {
        let text = format!(
            "{VECTOR_KEY}\n\" TOTP_AUTH\n\" TIME_SKEW -4\n\" RESETTING_TIME_SKEW 1+1 2+1\n\
             \" LAST3 host 1\n\" FROBNICATE 1\n\" lower-case\n\"no space\n"
        );
        let imported = parse(text.as_bytes()).unwrap();
        let notes = imported.notes.join("\n");
        assert!(notes.contains("TIME_SKEW -4"), "{notes}");
        assert!(notes.contains("about -120 s"), "{notes}");
        assert!(notes.contains("will be refused"), "{notes}");
        assert!(notes.contains("option FROBNICATE is unknown"), "{notes}");
        assert!(notes.contains("the option on line 7"), "{notes}");
        assert!(notes.contains("line 8 starts with"), "{notes}");
        assert!(notes.contains("allowed reusing"), "{notes}");
        assert!(!notes.contains("RESETTING"), "{notes}");
        assert!(!notes.contains("LAST3"), "{notes}");
        let zero = format!("{VECTOR_KEY}\n\" TOTP_AUTH\n\" TIME_SKEW 0\n");
        assert!(
            !parse(zero.as_bytes())
                .unwrap()
                .notes
                .join("")
                .contains("TIME_SKEW")
        );
    }

    #[test]
    fn junk_is_refused_cleanly() {
        assert!(err(b"").contains("empty"));
        assert!(err(b"\n\" TOTP_AUTH\n").contains("line 1"));
        assert!(err(b"\" TOTP_AUTH\n").contains("line 1"));
        assert!(err(b"JBSWY3DP\0EHPK3PXP\n\" TOTP_AUTH\n").contains("NUL"));
        assert!(err(b"JBSWY3DPEHPK3PXP\n\" TOTP_AUTH \xff\n").contains("UTF-8"));
        let huge = vec![b'A'; MAX_FILE_BYTES + 1];
        assert!(err(&huge).contains("64 KiB"));
        assert!(err(b"hello, world!\n").contains("base32"));
        assert!(err(b"#!/bin/sh\nrm -rf /\n").contains("line 1"));
        // A key line of 64 KiB minus a bit decodes to more than the maximum key size.
        let mut long = vec![b'A'; MAX_FILE_BYTES - 20];
        long.extend_from_slice(b"\n\" TOTP_AUTH\n");
        assert!(err(&long).contains("bits"));
    }

    #[test]
    fn messages_never_contain_the_key_or_codes() {
        let secret = "ZWMEJVAXAFXNOI57DECPUFEJT!";
        let message = err(format!("{secret}\n\" TOTP_AUTH\n").as_bytes());
        assert!(!message.contains("ZWMEJ"), "{message}");
        let imported = parse(sample().as_bytes()).unwrap();
        let shown = format!("{imported:?} {}", imported.notes.join(" "));
        assert!(
            !shown.contains(VECTOR_KEY) && !shown.contains("26106236"),
            "{shown}"
        );
    }

    #[test]
    fn builds_a_record_with_legacy_codes_and_new_emergency_codes() {
        let config = Config::default();
        let imported = parse(sample().as_bytes()).unwrap();
        let mut new = to_enrollment(&config, "alice", &imported, 1_800_000_000).unwrap();
        let record = &new.record;
        let totp = record.totp.as_ref().unwrap();
        assert_eq!(totp.secret.expose(), VECTOR_KEY);
        assert_eq!(totp.algorithm, Algorithm::Sha1);
        assert_eq!((totp.digits, totp.period), (6, 30));
        assert_eq!(totp.skew, Some(1));
        assert_eq!(record.emergency.legacy_hashes.len(), 5);
        assert_eq!(
            new.emergency_codes.len(),
            usize::from(config.emergency.count)
        );
        let text = record.to_file_text().unwrap();
        assert!(!text.contains("26106236"));
        let emergency = &mut new.record.emergency;
        assert!(emergency.consume(&shape_of("80942285", true, 6)).unwrap());
        assert!(!emergency.consume(&shape_of("80942285", true, 6)).unwrap());
        let modern = new.emergency_codes[0].clone();
        assert!(emergency.consume(&shape_of(&modern, true, 6)).unwrap());
    }
}
