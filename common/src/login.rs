//! The second login step, independent of PAM: what to ask, and what a typed answer means.
//! The PAM module is a thin shell around [`begin`] and [`verify`].

use zeroize::Zeroizing;

use crate::config::Config;
use crate::emergency::{self, Shape};
use crate::error::Error;
use crate::record::LastLogin;
use crate::store::Store;
use crate::totp;

/// Answers longer than this are not codes; they are refused without further parsing.
pub const MAX_ANSWER_BYTES: usize = 64;
const MAX_RHOST_CHARS: usize = 255;

/// Who is logging in, from where, through what.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: &'a str,
}

/// What to do before asking anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    NotEnrolled,
    Locked { until: u64 },
    AskCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Totp,
    Emergency { remaining: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Nothing typed; not counted as a failure.
    Empty,
    /// Not a code at all: too long, not UTF-8, wrong shape.
    Malformed,
    WrongCode,
    WrongEmergencyCode,
    /// A valid code for a time step already used.
    Replay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Accepted),
    Rejected {
        why: Rejected,
        locked_now: bool,
    },
    Locked {
        until: u64,
    },
    /// The record disappeared between asking and answering (an admin reset).
    NotEnrolled,
}

/// Reads the record to decide whether to prompt. No lock: nothing is written.
pub fn begin(store: &Store, user: &str, now: u64) -> Result<Begin, Error> {
    Ok(match store.load(user)? {
        None => Begin::NotEnrolled,
        Some(r) if r.lockout.is_locked(now) => Begin::Locked {
            until: r.lockout.locked_until,
        },
        Some(_) => Begin::AskCode,
    })
}

/// Checks a typed answer and records the result, all under the user's lock.
pub fn verify(
    store: &Store,
    config: &Config,
    attempt: &Attempt<'_>,
    answer: &[u8],
    now: u64,
) -> Result<Outcome, Error> {
    let lock = store.lock(attempt.user)?;
    let Some(mut record) = store.load_locked(&lock)? else {
        return Ok(Outcome::NotEnrolled);
    };
    if record.lockout.is_locked(now) {
        return Ok(Outcome::Locked {
            until: record.lockout.locked_until,
        });
    }
    let result = match normalize(answer) {
        Err(why) => Err(why),
        Ok(input) => check_code(&mut record, config, &input, now),
    };
    let outcome = match result {
        Ok(accepted) => {
            record.lockout.clear();
            record.last_login = Some(LastLogin {
                time: now,
                rhost: clean_rhost(attempt.rhost),
                service: clean_rhost(attempt.service),
                method: match accepted {
                    Accepted::Totp => "totp",
                    Accepted::Emergency { .. } => "emergency",
                }
                .into(),
            });
            Outcome::Accepted(accepted)
        }
        Err(Rejected::Empty) => {
            return Ok(Outcome::Rejected {
                why: Rejected::Empty,
                locked_now: false,
            });
        }
        Err(why) => Outcome::Rejected {
            why,
            locked_now: record.lockout.record_failure(now, &config.lockout),
        },
    };
    store.save(&lock, &record)?;
    Ok(outcome)
}

/// Strips the white space people type ("123 456") and refuses what cannot be a code.
fn normalize(answer: &[u8]) -> Result<Zeroizing<String>, Rejected> {
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(Rejected::Malformed);
    }
    let text = std::str::from_utf8(answer).map_err(|_| Rejected::Malformed)?;
    let cleaned: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    if cleaned.is_empty() {
        return Err(Rejected::Empty);
    }
    Ok(cleaned)
}

/// Routes by shape first so emergency hashing never runs for TOTP-shaped input.
fn check_code(
    record: &mut crate::record::Record,
    config: &Config,
    input: &str,
    now: u64,
) -> Result<Accepted, Rejected> {
    let params = record.totp.params();
    let totp_shaped =
        input.len() == usize::from(params.digits) && input.bytes().all(|b| b.is_ascii_digit());
    if totp_shaped {
        let key =
            totp::decode_secret(record.totp.secret.expose()).map_err(|_| Rejected::WrongCode)?;
        let skew = record.totp.skew.unwrap_or(config.totp.skew);
        return match totp::matching_step(&key, params, skew, input, now) {
            Some(step) if step > record.totp.last_step => {
                record.totp.last_step = step;
                Ok(Accepted::Totp)
            }
            Some(_) => Err(Rejected::Replay),
            None => Err(Rejected::WrongCode),
        };
    }
    let shape = emergency::shape_of(input, record.emergency.has_legacy(), params.digits);
    if shape == Shape::Other {
        return Err(Rejected::Malformed);
    }
    match record.emergency.consume(&shape) {
        Ok(true) => Ok(Accepted::Emergency {
            remaining: record.emergency.remaining(),
        }),
        Ok(false) | Err(_) => Err(Rejected::WrongEmergencyCode),
    }
}

/// PAM_RHOST comes from the client side of the application; keep it printable and short.
fn clean_rhost(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_RHOST_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_normalized_or_refused() {
        assert_eq!(*normalize(b" 123 456\t").unwrap(), "123456");
        assert_eq!(normalize(b"   "), Err(Rejected::Empty));
        assert_eq!(normalize(b""), Err(Rejected::Empty));
        assert_eq!(normalize(&[0xff, 0x31]), Err(Rejected::Malformed));
        assert_eq!(normalize(&vec![b'1'; 1 << 20]), Err(Rejected::Malformed));
    }

    #[test]
    fn rhost_is_kept_printable() {
        assert_eq!(clean_rhost("10.0.0.1\nfake=1"), "10.0.0.1fake=1");
        assert_eq!(clean_rhost(&"a".repeat(1000)).len(), MAX_RHOST_CHARS);
    }
}
