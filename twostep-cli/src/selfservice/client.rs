//! `twostep self …`: a user's own two-step login, through the root service (server.rs). Runs
//! as the calling user; it holds nothing and decides nothing, it only asks and shows.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use twostep_common::qr;
use zeroize::Zeroizing;

use super::proto::{
    DEFAULT_SOCKET, Failure, Kind, MAX_RESPONSE_BYTES, Method, Request, Response, SOCKET_ENV,
};

/// Answers longer than this are cut off; nothing we ask for is long.
const MAX_ANSWER: u64 = 1024;
/// A password check may wait out PAM's failure delay, a mail the SMTP server.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const CONFIRM_TRIES: u32 = 3;

#[derive(Debug, Args)]
pub struct SelfArgs {
    /// The service's socket [default: $TWOSTEP_SELF_SOCKET, else /run/twostep/self.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    #[command(subcommand)]
    pub command: SelfCommand,
}

#[derive(Debug, Subcommand)]
pub enum SelfCommand {
    /// Whether two-step login is on for you, how, and what you may change
    Status(Output),
    /// Your last login, recent failed codes and open SMB gates
    History(Output),
    /// Turn two-step login on: password, then scan the QR code and type the app's code (or
    /// --method email: type the mailed code); prints your emergency codes
    Enable(EnableArgs),
    /// New emergency codes (the old ones stop working); needs your password and a current code
    Codes(Secrets),
    /// Show your QR code and key again, for a new phone; needs your password and a current code
    AddDevice(Secrets),
    /// Set or change your recovery address: password, a current code, then the code mailed to
    /// the new address
    Email(EmailArgs),
    /// Turn two-step login off (refused when the administrator requires it for you); needs
    /// your password and a current code
    Disable(Secrets),
    /// Mail yourself a login code, to use as the current code of a change
    SendCode(Secrets),
}

#[derive(Debug, Args)]
pub struct Output {
    /// Machine-readable output (fields in docs/self-service.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Secrets {
    /// Read the password, then the code, one per line from standard input (no prompts)
    #[arg(long)]
    pub stdin: bool,

    /// Machine-readable output (fields in docs/self-service.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Codes from an authenticator app
    Totp,
    /// Codes mailed at each login (needs --email)
    Email,
}

#[derive(Debug, Args)]
pub struct EnableArgs {
    #[arg(long, value_enum, default_value = "totp")]
    pub method: MethodArg,

    /// Your address: where codes go with --method email, else the recovery address
    #[arg(long, value_name = "ADDR")]
    pub email: Option<String>,

    /// Step 2 without a terminal: the code (read from standard input) for the step whose id the
    /// first step printed
    #[arg(long, value_name = "ID", conflicts_with_all = ["method", "email"])]
    pub confirm: Option<String>,

    #[command(flatten)]
    pub secrets: Secrets,
}

#[derive(Debug, Args)]
pub struct EmailArgs {
    /// The new recovery address
    #[arg(required_unless_present = "confirm")]
    pub address: Option<String>,

    /// Step 2 without a terminal: the mailed code (read from standard input) for this id
    #[arg(long, value_name = "ID", conflicts_with = "address")]
    pub confirm: Option<String>,

    #[command(flatten)]
    pub secrets: Secrets,
}

/// Where the answers come from: the terminal (prompts; the password hidden) or standard input.
struct Answers {
    stdin: bool,
}

impl Answers {
    fn password(&self) -> Result<Zeroizing<String>, Failure> {
        if self.stdin {
            return self.line("the password");
        }
        let text = rpassword::prompt_password("Password: ")
            .map_err(|e| Failure::new(Kind::Invalid, format!("cannot read the password: {e}")))?;
        Ok(Zeroizing::new(text))
    }

    fn code(&self, prompt: &str) -> Result<Zeroizing<String>, Failure> {
        if !self.stdin {
            print!("{prompt}");
            let _ = std::io::stdout().flush();
        }
        self.line("the code")
    }

    fn line(&self, what: &str) -> Result<Zeroizing<String>, Failure> {
        let mut raw = Zeroizing::new(Vec::new());
        let n = std::io::stdin()
            .lock()
            .take(MAX_ANSWER)
            .read_until(b'\n', &mut raw)
            .map_err(|e| Failure::new(Kind::Invalid, format!("cannot read {what}: {e}")))?;
        if n == 0 {
            return Err(Failure::new(
                Kind::Invalid,
                format!("no {} on standard input", what.trim_start_matches("the ")),
            ));
        }
        let text = std::str::from_utf8(&raw)
            .map_err(|_| Failure::new(Kind::Invalid, format!("{what} is not UTF-8")))?;
        Ok(Zeroizing::new(
            text.trim_end_matches(['\n', '\r']).to_string(),
        ))
    }
}

/// Runs one `twostep self` command; the exit status is 0 on success, else 1 (the message, or
/// with --json the `{"error", "kind"}` object, says why).
pub fn run(args: &SelfArgs) -> std::process::ExitCode {
    let socket = args
        .socket
        .clone()
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let client = Client { socket };
    let json = match &args.command {
        SelfCommand::Status(o) | SelfCommand::History(o) => o.json,
        SelfCommand::Enable(a) => a.secrets.json,
        SelfCommand::Email(a) => a.secrets.json,
        SelfCommand::Codes(s)
        | SelfCommand::AddDevice(s)
        | SelfCommand::Disable(s)
        | SelfCommand::SendCode(s) => s.json,
    };
    match command(&client, &args.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": failure.message, "kind": failure.kind.name()})
                );
            } else {
                eprintln!("twostep self: {}", failure.message);
            }
            std::process::ExitCode::from(1)
        }
    }
}

fn command(client: &Client, command: &SelfCommand) -> Result<(), Failure> {
    match command {
        SelfCommand::Status(o) => {
            let out = client.call(&Request::Status {})?;
            show(o.json, &out, print_status)
        }
        SelfCommand::History(o) => {
            let out = client.call(&Request::History {})?;
            show(o.json, &out, print_history)
        }
        SelfCommand::Enable(a) => enable(client, a),
        SelfCommand::Codes(s) => {
            let answers = Answers { stdin: s.stdin };
            let out = with_proof(client, &answers, |password, code| Request::Codes {
                password,
                code,
            })?;
            show(s.json, &out, |out| {
                println!("New emergency codes; the old ones no longer work.");
                print_codes(out);
            })
        }
        SelfCommand::AddDevice(s) => {
            let answers = Answers { stdin: s.stdin };
            let out = with_proof(client, &answers, |password, code| Request::AddDevice {
                password,
                code,
            })?;
            show(s.json, &out, |out| {
                eprintln!(
                    "Anyone who sees this QR code or key can make your codes: scan it, then \
                     clear the screen."
                );
                print_qr(out);
            })
        }
        SelfCommand::Email(a) => email(client, a),
        SelfCommand::Disable(s) => {
            let answers = Answers { stdin: s.stdin };
            let out = with_proof(client, &answers, |password, code| Request::Disable {
                password,
                code,
            })?;
            show(s.json, &out, |_| {
                println!(
                    "Two-step login is off for you; logins ask only for the password. Turn it \
                     on again with `twostep self enable`."
                );
            })
        }
        SelfCommand::SendCode(s) => {
            let answers = Answers { stdin: s.stdin };
            let password = answers.password()?;
            let out = client.call(&Request::SendCode { password })?;
            show(s.json, &out, |out| {
                println!("A code was mailed to {}.", text(out, "sent_to"));
            })
        }
    }
}

fn enable(client: &Client, a: &EnableArgs) -> Result<(), Failure> {
    let answers = Answers {
        stdin: a.secrets.stdin,
    };
    if let Some(id) = &a.confirm {
        let code = answers.code("Code: ")?;
        let out = client.call(&Request::EnableConfirm {
            id: id.clone(),
            code,
        })?;
        return show(a.secrets.json, &out, print_enabled);
    }
    let method = match a.method {
        MethodArg::Totp => Method::Totp,
        MethodArg::Email => Method::Email,
    };
    if method == Method::Email && a.email.is_none() {
        return Err(Failure::new(
            Kind::Invalid,
            "--method email needs --email ADDR",
        ));
    }
    let password = answers.password()?;
    let begun = client.call(&Request::EnableBegin {
        password,
        method,
        email: a.email.clone(),
    })?;
    // Scripts and the web page confirm in a second call, with --confirm ID.
    if a.secrets.json || a.secrets.stdin {
        return show(a.secrets.json, &begun, |out| {
            if method == Method::Totp {
                print_qr(out);
            } else {
                println!("A code was mailed to {}.", text(out, "sent_to"));
            }
            println!("Then: twostep self enable --confirm {}", text(out, "id"));
        });
    }
    let prompt = if method == Method::Totp {
        print_qr(&begun);
        println!();
        "Code shown by the app: "
    } else {
        println!("A code was mailed to {}.", text(&begun, "sent_to"));
        "Code from the mail: "
    };
    let id = text(&begun, "id").to_string();
    for attempt in 1..=CONFIRM_TRIES {
        let code = answers.code(prompt)?;
        match client.call(&Request::EnableConfirm {
            id: id.clone(),
            code,
        }) {
            Ok(out) => {
                print_enabled(&out);
                return Ok(());
            }
            Err(f) if f.kind == Kind::WrongCode && attempt < CONFIRM_TRIES => {
                println!("{}", f.message);
            }
            Err(f) => return Err(f),
        }
    }
    Err(Failure::new(
        Kind::WrongCode,
        "no code verified; nothing was stored. Check the phone's clock and run `twostep self \
         enable` again",
    ))
}

fn email(client: &Client, a: &EmailArgs) -> Result<(), Failure> {
    let answers = Answers {
        stdin: a.secrets.stdin,
    };
    let saved = |out: &Value| {
        println!("Saved {} as your recovery address.", text(out, "email"));
    };
    if let Some(id) = &a.confirm {
        let code = answers.code("Code from the mail: ")?;
        let out = client.call(&Request::EmailConfirm {
            id: id.clone(),
            code,
        })?;
        return show(a.secrets.json, &out, saved);
    }
    let address = a.address.clone().unwrap_or_default();
    let begun = with_proof(client, &answers, |password, code| Request::EmailBegin {
        password,
        code,
        address: address.clone(),
    })?;
    if a.secrets.json || a.secrets.stdin {
        return show(a.secrets.json, &begun, |out| {
            println!("A code was mailed to {}.", text(out, "sent_to"));
            println!("Then: twostep self email --confirm {}", text(out, "id"));
        });
    }
    println!("A code was mailed to {}.", text(&begun, "sent_to"));
    let code = answers.code("Code from that mail: ")?;
    let out = client.call(&Request::EmailConfirm {
        id: text(&begun, "id").to_string(),
        code,
    })?;
    saved(&out);
    Ok(())
}

/// The password and a current code, then `make`'s request. On a terminal, typing `email` at
/// the code prompt mails a code first.
fn with_proof(
    client: &Client,
    answers: &Answers,
    make: impl Fn(Zeroizing<String>, Zeroizing<String>) -> Request,
) -> Result<Value, Failure> {
    let password = answers.password()?;
    let mut code = answers.code("Code from your app, an emergency code, or `email`: ")?;
    if !answers.stdin && code.trim() == "email" {
        let sent = client.call(&Request::SendCode {
            password: password.clone(),
        })?;
        println!("A code was mailed to {}.", text(&sent, "sent_to"));
        code = answers.code("Code from the mail: ")?;
    }
    client.call(&make(password, code))
}

#[derive(Debug)]
struct Client {
    socket: PathBuf,
}

impl Client {
    fn call(&self, request: &Request) -> Result<Value, Failure> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| {
            Failure::new(
                Kind::Unavailable,
                format!(
                    "the self-service is not running ({}: {e}); ask the administrator to enable \
                     it: systemctl enable --now twostep-self.socket",
                    self.socket.display()
                ),
            )
        })?;
        let lost = |e: std::io::Error| {
            Failure::new(
                Kind::Unavailable,
                format!("the self-service did not answer: {e}; try again"),
            )
        };
        stream
            .set_write_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(lost)?;
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(lost)?;
        let mut line = Zeroizing::new(
            serde_json::to_string(request)
                .map_err(|e| Failure::new(Kind::Invalid, e.to_string()))?,
        );
        line.push('\n');
        // A busy service answers before reading and closes: its answer is still there to
        // read when the write fails.
        let sent = super::server::send_all(&stream, line.as_bytes());
        let mut raw = Zeroizing::new(Vec::new());
        let read = BufReader::new(&stream)
            .take(MAX_RESPONSE_BYTES as u64)
            .read_until(b'\n', &mut raw);
        if raw.is_empty() {
            sent.map_err(lost)?;
            read.map_err(lost)?;
        }
        let response: Response = serde_json::from_slice(&raw).map_err(|e| {
            Failure::new(
                Kind::Unavailable,
                format!("the self-service answered something unreadable ({e})"),
            )
        })?;
        match response {
            Response::Ok(value) => Ok(value),
            Response::Error(failure) => Err(failure),
        }
    }
}

fn show(json: bool, out: &Value, human: impl FnOnce(&Value)) -> Result<(), Failure> {
    if json {
        let text = Zeroizing::new(
            serde_json::to_string_pretty(out)
                .map_err(|e| Failure::new(Kind::Error, e.to_string()))?,
        );
        println!("{}", text.as_str());
    } else {
        human(out);
    }
    Ok(())
}

fn text<'a>(out: &'a Value, key: &str) -> &'a str {
    out[key].as_str().unwrap_or_default()
}

fn print_status(out: &Value) {
    let user = text(out, "user");
    match text(out, "state") {
        "enabled" | "locked" => {
            let method = if text(out, "method") == "email" {
                "codes mailed to you"
            } else {
                "an authenticator app"
            };
            println!("Two-step login is on for {user}: {method}.");
            if let Some(address) = out["email"].as_str() {
                println!("Recovery address: {address}");
            }
            if let Some(left) = out["emergency_codes_left"].as_u64() {
                println!("Emergency codes left: {left}");
                if left < 3 {
                    println!("  Running low: get new ones with `twostep self codes`.");
                }
            }
            if let Some(until) = out["locked_until"].as_u64() {
                println!(
                    "Locked after too many wrong codes until {} (ask the administrator: twostep \
                     unlock).",
                    twostep_common::timefmt::utc(until)
                );
            }
        }
        "incomplete" => println!(
            "Two-step login is required for {user} but not set up yet: run `twostep self \
             enable` (or log in, which offers it)."
        ),
        _ => println!("Two-step login is off for {user}. Turn it on with `twostep self enable`."),
    }
    let denied: Vec<&str> = out["allowed"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.as_bool() == Some(false))
                .map(|(k, _)| k.as_str())
                .collect()
        })
        .unwrap_or_default();
    if !denied.is_empty() {
        println!(
            "Not allowed here by the administrator: {}",
            denied.join(", ")
        );
    }
}

fn print_history(out: &Value) {
    match out["last_login"].as_object() {
        Some(l) => println!(
            "Last login: {} from {} through {} ({})",
            l["time"]
                .as_u64()
                .map(twostep_common::timefmt::utc)
                .unwrap_or_default(),
            l["rhost"]
                .as_str()
                .filter(|h| !h.is_empty())
                .unwrap_or("this machine"),
            l["service"].as_str().unwrap_or_default(),
            l["method"].as_str().unwrap_or_default()
        ),
        None => println!("No two-step login yet."),
    }
    let failures = out["failures"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if failures.is_empty() {
        println!("No recent failed codes.");
    }
    for f in failures {
        println!(
            "Failed code: {} from {}",
            f["time"]
                .as_u64()
                .map(twostep_common::timefmt::utc)
                .unwrap_or_default(),
            f["host"]
                .as_str()
                .filter(|h| !h.is_empty())
                .unwrap_or("this machine")
        );
    }
    for g in out["open_gates"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        println!(
            "SMB open for {} until {}",
            g["host"].as_str().unwrap_or_default(),
            g["expires"]
                .as_u64()
                .map(twostep_common::timefmt::utc)
                .unwrap_or_default()
        );
    }
}

fn print_qr(out: &Value) {
    let uri = text(out, "uri");
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let code = if colour {
        qr::terminal(uri)
    } else {
        qr::terminal_plain(uri)
    };
    println!(
        "Scan this QR code with an authenticator app (Google or Microsoft Authenticator, Aegis, ...):"
    );
    println!();
    if let Ok(code) = code {
        print!("{code}");
        println!();
    }
    println!("Or add the key by hand: {}", text(out, "secret"));
    println!(
        "  account {}, issuer {}, time-based, {}, {} digits, every {} seconds",
        text(out, "account"),
        text(out, "issuer"),
        text(out, "algorithm"),
        out["digits"],
        out["period"]
    );
}

fn print_enabled(out: &Value) {
    println!("Code verified. Two-step login is on for you.");
    println!();
    print_codes(out);
}

fn print_codes(out: &Value) {
    println!(
        "Each emergency code below works once, instead of an app code. Keep them offline \
         (printed, or in a password manager): they are shown only now."
    );
    println!("Emergency codes:");
    for code in out["emergency_codes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        println!("{}", code.as_str().unwrap_or_default());
    }
}
