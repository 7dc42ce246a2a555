//! `twostep enroll`: create a user's enrollment. Interactively, 2FA is switched on only after
//! the user's app has produced a code that verifies, as Synology and QNAP do.

use crate::error::CliError;
use std::io::BufRead;

use clap::Args;
use twostep_common::backend::{self, Backend, Manage};
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::Config;
use twostep_common::email;
use twostep_common::enroll::{self, NewEnrollment};
use twostep_common::manage;
use twostep_common::remote::LoginStore;
use twostep_common::store::{BEGUN_LIFETIME_SECS, PendingId};
use twostep_common::totp::{self, Algorithm, Params};
use zeroize::Zeroizing;

use crate::email_cmds::confirm_address;
use crate::output::{audit, codes_json, print_emergency_codes, print_json};
use crate::prompt::ask;
use crate::show::{QrFiles, present, present_uri, qr_json};

const CONFIRM_TRIES: u32 = 3;

/// How the user proves the second step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Codes from an authenticator app (default)
    Totp,
    /// Codes mailed at each login, for users without a phone (needs --email)
    Email,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The login name to enroll
    pub user: String,

    /// Second-step method
    #[arg(long, value_enum, default_value = "totp")]
    pub method: MethodArg,

    /// Use this base32 key instead of a new random 160-bit one. It is then on the command line,
    /// which every local user can read: prefer --secret-stdin
    #[arg(long, value_name = "BASE32")]
    pub secret: Option<String>,

    /// Read the base32 key (e.g. from a provisioning system) from the first line of standard
    /// input instead of making a new one
    #[arg(long, conflicts_with = "secret")]
    pub secret_stdin: bool,

    /// Do not ask for a confirmation code: store at once and print the key, URI and codes
    #[arg(long)]
    pub yes: bool,

    /// Replace an existing enrollment
    #[arg(long)]
    pub force: bool,

    /// The user's email address: the recovery address, or where codes go with --method email
    #[arg(long, value_name = "ADDR", required_if_eq("method", "email"))]
    pub email: Option<String>,

    /// HMAC algorithm: SHA1 (every app), SHA256 or SHA512 [default: from the config]
    #[arg(long, value_name = "ALG", value_parser = parse_algorithm)]
    pub algorithm: Option<Algorithm>,

    /// Code length, 6 or 8 [default: from the config]
    #[arg(long, value_parser = parse_digits)]
    pub digits: Option<u8>,

    /// Seconds each code is valid, 1 to 300 [default: from the config]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=300))]
    pub period: Option<u32>,

    #[command(flatten)]
    pub files: QrFiles,

    /// Without a terminal, step 1 (the Cockpit page): make a key, keep it root-only in the
    /// state directory (for 15 minutes) and print the QR code, key and URI; nothing is enrolled
    /// yet. Prints an `id` for --confirm-stdin
    #[arg(long, conflicts_with_all = ["yes", "confirm_stdin"])]
    pub begin: bool,

    /// Step 2: read the app's code from standard input, check it against the key of --begin
    /// (named by --id) and, if it matches, enroll and print the emergency codes once
    #[arg(long, requires = "id", conflicts_with_all = ["yes", "secret", "secret_stdin"])]
    pub confirm_stdin: bool,

    /// The `id` printed by --begin
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    /// Machine-readable output (with --begin, --confirm-stdin or --yes; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    Algorithm::parse(text).ok_or_else(|| "expected SHA1, SHA256 or SHA512".to_string())
}

fn parse_digits(text: &str) -> Result<u8, String> {
    match text {
        "6" => Ok(6),
        "8" => Ok(8),
        _ => Err("expected 6 or 8".into()),
    }
}

pub fn run(config: &Config, args: &EnrollArgs) -> Result<(), CliError> {
    if args.method == MethodArg::Email {
        if args.begin || args.confirm_stdin {
            return Err(CliError::usage(
                "--begin and --confirm-stdin are for --method totp",
            ));
        }
        return run_email(config, args);
    }
    if args.confirm_stdin {
        return confirm_begun(config, args);
    }
    if args.json && !args.begin && !args.yes {
        return Err(CliError::usage(
            "--json needs --begin, --confirm-stdin or --yes",
        ));
    }
    let params = Params {
        algorithm: args.algorithm.unwrap_or(config.totp.algorithm),
        digits: args.digits.unwrap_or(config.totp.digits),
        period: args.period.unwrap_or(config.totp.period),
    };
    totp::validate_params(params.digits, params.period)?;
    if let Some(address) = &args.email {
        email::check_address(address)?;
    }
    let given = given_secret(args)?;
    let generated = given.is_none();
    let key = match &given {
        Some(text) => totp::decode_secret(text)?,
        None => totp::new_secret()?,
    };
    let store = LoginStore::open_admin(config)?;
    refuse_existing(&store, &args.user, args.force)?;

    if args.begin {
        return begin(config, args, &store, &key, params);
    }
    if args.yes && args.json {
        let new = build(config, args, &key, params, None)?;
        save(&store, config, args, &new)?;
        let mut out = qr_json(config, &args.user, &key, params)?;
        out["state"] = "enabled".into();
        out["emergency_codes"] = codes_json(&new.emergency_codes);
        return print_json(&out);
    }
    if args.yes {
        println!(
            "Enrolling {} (TOTP, {}, {} digits, {} s).",
            args.user,
            params.algorithm.name(),
            params.digits,
            params.period
        );
        if generated {
            println!("Secret: {}", totp::encode_secret(&key).as_str());
        }
        present_uri(config, &args.user, &key, params, &args.files)?;
        let new = build(config, args, &key, params, None)?;
        save(&store, config, args, &new)?;
        println!("Two-step login is on for {}.", args.user);
        print_emergency_codes(&new.emergency_codes);
        return Ok(());
    }

    present(config, &args.user, &key, params, &args.files)?;
    println!();
    let Some(step) = confirm(config, &key, params)? else {
        return Err(CliError::Refused(format!(
            "enrollment of {} aborted: no code from the app verified; nothing was stored",
            args.user
        )));
    };
    let new = build(config, args, &key, params, Some(step))?;
    save(&store, config, args, &new)?;
    println!("Code verified. Two-step login is on for {}.", args.user);
    println!();
    print_emergency_codes(&new.emergency_codes);
    Ok(())
}

/// `--begin`: keeps the new key in `enrolling/` and prints what the app needs, with the id.
fn begin(
    config: &Config,
    args: &EnrollArgs,
    store: &LoginStore,
    key: &[u8],
    params: Params,
) -> Result<(), CliError> {
    let now = SystemClock.now();
    let mut waiting = enroll::new_totp(config, &args.user, key, params, now)?;
    waiting.record.email = args.email.clone();
    let lock = store.lock(&args.user)?;
    let id = store.save_begun(&lock, &waiting.record)?;
    drop(lock);
    audit(config, "enroll-begin", &args.user);
    let mut out = qr_json(config, &args.user, key, params)?;
    out["id"] = id.as_str().into();
    out["expires_at"] = (now + BEGUN_LIFETIME_SECS).into();
    if args.json {
        return print_json(&out);
    }
    present(config, &args.user, key, params, &args.files)?;
    println!(
        "Enrollment begun; confirm with a code from the app within {} minutes:",
        BEGUN_LIFETIME_SECS / 60
    );
    println!(
        "  echo CODE | twostep enroll {} --confirm-stdin --id {}",
        args.user,
        id.as_str()
    );
    Ok(())
}

/// `--confirm-stdin --id ID`: the app's code from standard input against the begun key.
fn confirm_begun(config: &Config, args: &EnrollArgs) -> Result<(), CliError> {
    let text = args.id.as_deref().unwrap_or_default();
    let id = PendingId::parse(text)
        .ok_or_else(|| CliError::Usage(format!("--id {text:?} is not an id printed by --begin")))?;
    let code = read_code()?;
    let store = LoginStore::open(config)?;
    let lock = store.lock(&args.user)?;
    let now = SystemClock.now();
    let Some(waiting) = store.load_begun(&lock, &id, now)? else {
        return Err(CliError::Refused(format!(
            "no enrollment of {} is waiting under this id: it expired ({} minutes), was begun \
             again elsewhere, or was already confirmed; begin again",
            args.user,
            BEGUN_LIFETIME_SECS / 60
        )));
    };
    let Some(totp_record) = waiting.totp.as_ref() else {
        return Err(CliError::refused("the waiting enrollment has no key"));
    };
    let key = totp::decode_secret(totp_record.secret.expose())?;
    let params = totp_record.params();
    let Some(step) = totp::matching_step(&key, params, config.totp.skew, &code, now) else {
        return Err(CliError::refused(
            "that code does not match; check the phone's clock and try the next code (nothing \
             was stored)",
        ));
    };
    if !args.force && store.load_now(&lock)?.is_some() {
        return Err(CliError::Refused(format!(
            "{} was enrolled meanwhile; nothing was changed (use --force to replace)",
            args.user
        )));
    }
    let mut new = enroll::new_totp(config, &args.user, &key, params, now)?;
    new.record.email = waiting.email.clone();
    if let Some(totp) = new.record.totp.as_mut() {
        totp.last_step = step;
    }
    store.save(&lock, &new.record)?;
    store.discard_begun(&lock)?;
    drop(lock);
    audit(config, "enroll", &args.user);
    if args.json {
        return print_json(&serde_json::json!({
            "user": args.user,
            "state": "enabled",
            "emergency_codes": codes_json(&new.emergency_codes),
        }));
    }
    println!("Code verified. Two-step login is on for {}.", args.user);
    println!();
    print_emergency_codes(&new.emergency_codes);
    Ok(())
}

/// The code on the first line of standard input, spaces removed.
fn read_code() -> Result<Zeroizing<String>, CliError> {
    let mut line = Zeroizing::new(String::new());
    std::io::Read::take(std::io::stdin().lock(), 256)
        .read_line(&mut line)
        .map_err(|e| CliError::io("--confirm-stdin: cannot read standard input", e))?;
    let code: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    if code.is_empty() {
        return Err(CliError::usage(
            "--confirm-stdin: no code on standard input",
        ));
    }
    Ok(Zeroizing::new(code))
}

/// The key given with `--secret` (with a warning: argv is world-readable in /proc) or on the
/// first line of standard input with `--secret-stdin`; `None` for a new key.
fn given_secret(args: &EnrollArgs) -> Result<Option<Zeroizing<String>>, CliError> {
    if let Some(text) = &args.secret {
        eprintln!(
            "warning: --secret puts the key on the command line, where every local user can \
             read it (ps, /proc/PID/cmdline); use --secret-stdin"
        );
        return Ok(Some(Zeroizing::new(text.clone())));
    }
    if !args.secret_stdin {
        return Ok(None);
    }
    // Longer than any key (at most 128 bytes, 205 base32 characters with spacing).
    const MAX_LINE: u64 = 1024;
    let mut line = Zeroizing::new(String::new());
    let read = std::io::Read::take(std::io::stdin().lock(), MAX_LINE)
        .read_line(&mut line)
        .map_err(|e| CliError::io("--secret-stdin: cannot read standard input", e))?;
    if read as u64 == MAX_LINE && !line.ends_with('\n') {
        return Err(CliError::usage(
            "--secret-stdin: the first line of standard input is too long for a key",
        ));
    }
    let key = Zeroizing::new(line.trim().to_string());
    if key.is_empty() {
        return Err(CliError::usage(
            "--secret-stdin: no key on the first line of standard input",
        ));
    }
    Ok(Some(key))
}

/// `--method email`: no app; codes are mailed at login. Interactively the address must first
/// prove it receives mail.
fn run_email(config: &Config, args: &EnrollArgs) -> Result<(), CliError> {
    let Some(address) = args.email.as_deref() else {
        return Err(CliError::usage("--method email needs --email ADDR"));
    };
    if args.secret.is_some()
        || args.secret_stdin
        || args.algorithm.is_some()
        || args.digits.is_some()
        || args.period.is_some()
    {
        return Err(CliError::usage(
            "--secret, --secret-stdin, --algorithm, --digits and --period are for --method totp",
        ));
    }
    email::check_address(address)?;
    if !config.email.enabled() {
        return Err(CliError::refused(
            "--method email needs email to be configured ([email] smtp_host in the config)",
        ));
    }
    let store = LoginStore::open_admin(config)?;
    refuse_existing(&store, &args.user, args.force)?;
    if !args.yes && !confirm_address(config, &args.user, address, args.json)? {
        return Err(CliError::Refused(format!(
            "enrollment of {} aborted: no code from the mail verified; nothing was stored",
            args.user
        )));
    }
    let new = enroll::new_email(config, &args.user, address, SystemClock.now())?;
    save(&store, config, args, &new)?;
    if args.json {
        // One line, like the events of confirm_address before it.
        println!(
            "{}",
            serde_json::json!({
                "event": "enrolled",
                "user": args.user,
                "state": "enabled",
                "email": email::mask(address),
                "emergency_codes": codes_json(&new.emergency_codes),
            })
        );
        return Ok(());
    }
    println!(
        "Two-step login is on for {}: codes will be mailed to {} at each login.",
        args.user,
        email::mask(address)
    );
    print_emergency_codes(&new.emergency_codes);
    Ok(())
}

/// Asks for codes until one verifies; the time step it matched, or `None` after three misses
/// or at end of input.
fn confirm(config: &Config, key: &[u8], params: Params) -> Result<Option<u64>, CliError> {
    for attempt in 1..=CONFIRM_TRIES {
        let Some(answer) = ask("Code shown by the app: ")? else {
            return Ok(None);
        };
        let code: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
        let now = SystemClock.now();
        if let Some(step) = totp::matching_step(key, params, config.totp.skew, &code, now) {
            return Ok(Some(step));
        }
        let left = CONFIRM_TRIES - attempt;
        if left > 0 {
            println!(
                "That code does not match. Check the phone's clock and try the next code \
                 ({left} {} left).",
                if left == 1 { "try" } else { "tries" }
            );
        }
    }
    Ok(None)
}

fn build(
    config: &Config,
    args: &EnrollArgs,
    key: &[u8],
    params: Params,
    confirmed_step: Option<u64>,
) -> Result<NewEnrollment, CliError> {
    let now = SystemClock.now();
    let mut new = enroll::new_totp(config, &args.user, key, params, now)?;
    new.record.email = args.email.clone();
    // The code typed to confirm has been seen: it must not also open a login.
    if let (Some(step), Some(totp)) = (confirmed_step, new.record.totp.as_mut()) {
        totp.last_step = step;
    }
    Ok(new)
}

fn refuse_existing(store: &LoginStore, user: &str, force: bool) -> Result<(), CliError> {
    if !force && backend::load(store, user)?.is_some() {
        return Err(CliError::Refused(format!(
            "{user} is already enrolled; use --force to replace the enrollment \
             (or `twostep show-qr {user}` to add another device)"
        )));
    }
    Ok(())
}

fn save(
    store: &LoginStore,
    config: &Config,
    args: &EnrollArgs,
    new: &NewEnrollment,
) -> Result<(), CliError> {
    // Checked again under the lock: another admin may have enrolled the user meanwhile.
    let stored = manage::store_enrollment(store, &new.record, args.force)?;
    if !stored {
        return Err(CliError::Refused(format!(
            "{} was enrolled meanwhile; nothing was changed",
            args.user
        )));
    }
    audit(config, "enroll", &args.user);
    Ok(())
}
