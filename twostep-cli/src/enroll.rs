//! `twostep enroll`: create a user's enrollment.

use clap::Args;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::Config;
use twostep_common::enroll;
use twostep_common::otpauth;
use twostep_common::store::Store;
use twostep_common::totp::{self, Algorithm, Params};
use zeroize::Zeroizing;

use crate::output::audit;

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The login name to enroll
    pub user: String,

    /// Use this base32 key (e.g. from a provisioning system) instead of a new random one
    #[arg(long, value_name = "BASE32")]
    pub secret: Option<String>,

    /// Do not ask anything: store the enrollment at once and print its details
    #[arg(long)]
    pub yes: bool,

    /// Replace an existing enrollment
    #[arg(long)]
    pub force: bool,

    /// HMAC algorithm: SHA1 (what every app supports), SHA256 or SHA512
    #[arg(long, value_name = "ALG", value_parser = parse_algorithm)]
    pub algorithm: Option<Algorithm>,

    /// Code length: 6 or 8
    #[arg(long, value_parser = clap::value_parser!(u8).range(6..=8))]
    pub digits: Option<u8>,

    /// Seconds each code is valid
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=300))]
    pub period: Option<u32>,
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    Algorithm::parse(text).ok_or_else(|| "expected SHA1, SHA256 or SHA512".to_string())
}

pub fn run(config: &Config, args: &EnrollArgs) -> Result<(), String> {
    if !args.yes {
        return Err("interactive enrollment is not available in this version; \
             add --yes to enroll without confirmation and print the key"
            .into());
    }
    let params = Params {
        algorithm: args.algorithm.unwrap_or(config.totp.algorithm),
        digits: args.digits.unwrap_or(config.totp.digits),
        period: args.period.unwrap_or(config.totp.period),
    };
    totp::validate_params(params.digits, params.period)?;
    let generated = args.secret.is_none();
    let key = match &args.secret {
        Some(text) => totp::decode_secret(text).map_err(|e| e.to_string())?,
        None => totp::new_secret().map_err(|e| e.to_string())?,
    };
    let store = Store::create(&config.state_dir).map_err(|e| e.to_string())?;
    let lock = store.lock(&args.user).map_err(|e| e.to_string())?;
    if !args.force
        && store
            .load_locked(&lock)
            .map_err(|e| e.to_string())?
            .is_some()
    {
        return Err(format!(
            "{} is already enrolled; use --force to replace the enrollment",
            args.user
        ));
    }
    let now = SystemClock.now();
    let new = enroll::new_totp(config, &args.user, &key, params, now).map_err(|e| e.to_string())?;
    store.save(&lock, &new.record).map_err(|e| e.to_string())?;
    drop(lock);
    audit(config, "enroll", &args.user);

    println!(
        "Enrolled {} (TOTP, {}, {} digits, {} s).",
        args.user,
        params.algorithm.name(),
        params.digits,
        params.period
    );
    if generated {
        let secret: Zeroizing<String> = totp::encode_secret(&key);
        println!("Secret: {}", secret.as_str());
    }
    let account = format!("{}@{}", args.user, config.issuer_or_hostname());
    let uri = otpauth::totp_uri(&config.issuer_or_hostname(), &account, &key, params);
    println!("URI: {}", uri.as_str());
    println!("Emergency codes:");
    for code in &new.emergency_codes {
        println!("{}", code.as_str());
    }
    Ok(())
}
