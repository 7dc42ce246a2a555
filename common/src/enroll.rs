//! Making a new enrollment record.

use zeroize::Zeroizing;

use crate::config::Config;
use crate::emergency::CodeSet;
use crate::error::Error;
use crate::lockout::LockoutState;
use crate::record::{Method, RECORD_VERSION, Record, SecretString, TotpRecord};
use crate::totp::{self, Params};

/// A new record and the emergency codes to show the admin once.
#[derive(Debug)]
pub struct NewEnrollment {
    pub record: Record,
    pub emergency_codes: Vec<Zeroizing<String>>,
}

/// Builds (does not store) a TOTP enrollment for `user` with `key`.
pub fn new_totp(
    config: &Config,
    user: &str,
    key: &[u8],
    params: Params,
    now: u64,
) -> Result<NewEnrollment, Error> {
    totp::validate_params(params.digits, params.period)?;
    if key.len() < totp::MIN_SECRET_BYTES || key.len() > totp::MAX_SECRET_BYTES {
        return Err(Error::Input("the key length is out of range".into()));
    }
    let totp = TotpRecord {
        secret: SecretString::new(totp::encode_secret(key)),
        algorithm: params.algorithm,
        digits: params.digits,
        period: params.period,
        skew: None,
        last_step: 0,
    };
    new_record(config, user, Method::Totp, Some(totp), None, now)
}

/// Builds (does not store) an email-method enrollment: codes are mailed to `address` at login.
pub fn new_email(
    config: &Config,
    user: &str,
    address: &str,
    now: u64,
) -> Result<NewEnrollment, Error> {
    crate::email::check_address(address)?;
    new_record(
        config,
        user,
        Method::Email,
        None,
        Some(address.to_string()),
        now,
    )
}

/// A fresh record with new emergency codes and no login history.
fn new_record(
    config: &Config,
    user: &str,
    method: Method,
    totp: Option<TotpRecord>,
    email: Option<String>,
    now: u64,
) -> Result<NewEnrollment, Error> {
    crate::username::encode(user)?;
    let (emergency, emergency_codes) = CodeSet::generate(config.emergency.count)?;
    let record = Record {
        version: RECORD_VERSION,
        user: user.to_string(),
        method,
        created: now,
        email,
        totp,
        emergency,
        lockout: LockoutState::default(),
        last_login: None,
        grace: Vec::new(),
        gates: Vec::new(),
        email_code: None,
    };
    Ok(NewEnrollment {
        record,
        emergency_codes,
    })
}
