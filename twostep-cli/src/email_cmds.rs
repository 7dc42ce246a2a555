//! `send-code` (the module's mail helper), `email-test` and `set-email`.

use crate::error::CliError;
use std::io::Read;

use clap::Args;
use twostep_common::backend::{self, Backend, Manage};
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::{self, Config};
use twostep_common::email::{self, MAX_REQUEST_BYTES, Request};
use twostep_common::random;
use twostep_common::remote::LoginStore;
use zeroize::Zeroizing;

use crate::mail;
use crate::output::audit;
use crate::prompt::ask;

const CONFIRM_TRIES: u32 = 3;

#[derive(Debug, Args)]
pub struct EmailTestArgs {
    /// Where to send the test mail
    pub address: String,

    /// Machine-readable output (`{"sent_to": ADDR}`)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetEmailArgs {
    /// The enrolled user
    pub user: String,
    /// The recovery address
    pub address: String,
    /// Save without mailing a confirmation code first
    #[arg(long)]
    pub yes: bool,

    /// Machine-readable output for a program that types the mailed code on standard input (the
    /// Cockpit page): one JSON object per line, `{"event": "sent"|"mismatch"|"saved", …}`
    #[arg(long)]
    pub json: bool,
}

/// Run by pam_twostep: reads one request on standard input and mails the code.
pub fn send_code(config: &Config) -> Result<(), CliError> {
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_string(&mut input)
        .map_err(|e| CliError::io("cannot read the request", e))?;
    if input.len() as u64 > MAX_REQUEST_BYTES {
        return Err(CliError::refused("the request is too large"));
    }
    let request =
        Request::parse(&input).map_err(|e| CliError::Refused(format!("bad request: {e}")))?;
    email::check_address(&request.to)?;
    let (subject, body) = email::compose(&config.email, &request);
    mail::send(config, &request.to, &subject, &body)
}

pub fn email_test(config: &Config, args: &EmailTestArgs) -> Result<(), CliError> {
    email::check_address(&args.address)?;
    let body = format!(
        "This is a test mail from twostep on {}. If you can read it, emailed verification codes \
         can reach this address.\n",
        config::hostname()
    );
    mail::send(config, &args.address, "twostep test mail", &body)?;
    audit(config, "email-test", &args.address);
    if args.json {
        return crate::output::print_json(&serde_json::json!({"sent_to": args.address}));
    }
    println!("Sent a test mail to {}.", args.address);
    Ok(())
}

pub fn set_email(config: &Config, args: &SetEmailArgs) -> Result<(), CliError> {
    email::check_address(&args.address)?;
    let store = LoginStore::open(config)?;
    if backend::load(&store, &args.user)?.is_none() {
        return Err(CliError::not_enrolled(&args.user));
    }
    if !args.yes && !confirm_address(config, &args.user, &args.address, args.json)? {
        return Err(CliError::Refused(format!(
            "no code from the mail to {} verified; the address was not saved",
            args.address
        )));
    }
    let lock = store.lock(&args.user)?;
    let mut record = store
        .load_now(&lock)?
        .ok_or_else(|| CliError::not_enrolled(&args.user))?;
    record.email = Some(args.address.clone());
    store.save(&lock, &record)?;
    drop(lock);
    audit(config, "set-email", &args.user);
    if args.json {
        return print_json_line(&serde_json::json!({
            "event": "saved",
            "user": args.user,
            "email": email::mask(&args.address),
            "email_enabled": config.email.enabled(),
        }));
    }
    println!(
        "Saved {} as the recovery address of {}.",
        email::mask(&args.address),
        args.user
    );
    if !config.email.enabled() {
        println!("Note: email is not configured yet ([email] smtp_host), so no codes are sent.");
    }
    Ok(())
}

/// One JSON object on one line (the `--json` events of `set-email`).
fn print_json_line(value: &serde_json::Value) -> Result<(), CliError> {
    println!("{value}");
    std::io::Write::flush(&mut std::io::stdout()).map_err(|e| CliError::io("", e))
}

/// Mails a one-time code to `address` and asks for it back; true when it was typed right.
/// With `json`, says so in JSON lines and asks without a prompt.
pub fn confirm_address(
    config: &Config,
    user: &str,
    address: &str,
    json: bool,
) -> Result<bool, CliError> {
    let mut code = Zeroizing::new(String::new());
    for _ in 0..config.email.code_digits {
        code.push(char::from(b'0' + random::index(10)? as u8));
    }
    let request = Request {
        to: address.to_string(),
        user: user.to_string(),
        host: config::hostname(),
        rhost: String::new(),
        service: "twostep".into(),
        time: SystemClock.now(),
        code: code.to_string(),
    };
    let (subject, body) = email::compose(&config.email, &request);
    mail::send(config, address, &subject, &body)?;
    if json {
        print_json_line(&serde_json::json!({
            "event": "sent",
            "to": email::mask(address),
            "tries": CONFIRM_TRIES,
        }))?;
    } else {
        println!("Sent a code to {}.", email::mask(address));
    }
    for attempt in 1..=CONFIRM_TRIES {
        let Some(answer) = ask(if json { "" } else { "Code from the mail: " })? else {
            return Ok(false);
        };
        let typed: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
        if subtle_eq(typed.as_bytes(), code.as_bytes()) {
            return Ok(true);
        }
        if json {
            print_json_line(&serde_json::json!({
                "event": "mismatch",
                "tries_left": CONFIRM_TRIES - attempt,
            }))?;
        } else if attempt < CONFIRM_TRIES {
            println!("That code does not match.");
        }
    }
    Ok(false)
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
