//! `twostep`: the admin command for two-step login. The clap definitions live here so that the
//! man page and shell completions are generated from them (see `src/bin/twostep-gen.rs`).

mod admin;
mod doctor;
mod email_cmds;
mod enroll;
mod import_ga;
mod mail;
mod output;
mod pamstack;
mod prompt;
mod show;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use twostep_common::config::{CONFIG_ENV, Config, DEFAULT_CONFIG_PATH};

pub const ABOUT: &str =
    "Manage two-step login (authenticator-app codes, emergency codes) on this machine";

#[derive(Debug, Parser)]
#[command(
    name = "twostep",
    version,
    about = ABOUT,
    long_about = "Manage two-step login on this machine. After the password, users enrolled \
                  here are asked for a code from an authenticator app (TOTP, RFC 6238) or for \
                  one of their one-time emergency codes. Enrollments are root-owned records in \
                  the state directory (default /var/lib/twostep). Must be run as root.",
    after_help = "Exit status: 0 success, 1 failure (the message says why), 2 usage error.\n\
                  Config: --config, else $TWOSTEP_CONFIG, else /etc/twostep/twostep.toml."
)]
pub struct Cli {
    /// Config file [default: $TWOSTEP_CONFIG, else /etc/twostep/twostep.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll a user: show a QR code, confirm a code from the app, print emergency codes
    Enroll(enroll::EnrollArgs),
    /// Show who is enabled, locked, incomplete or disabled
    Status(status::StatusArgs),
    /// Remove a user's enrollment (lost phone); it is archived for `restore`
    Reset(admin::UserArg),
    /// Bring back the enrollment removed by the last `reset`
    Restore(admin::UserArg),
    /// End a lockout after too many failed codes (also replaces a damaged login-state file)
    Unlock(admin::UserArg),
    /// Issue new emergency codes; the old ones stop working
    Codes(admin::UserArg),
    /// Show the QR code and key of an existing enrollment again (to add a second device)
    ShowQr(show::ShowQrArgs),
    /// Move a google-authenticator-libpam user to twostep, keeping their key and scratch codes
    ImportGoogleAuthenticator(import_ga::ImportArgs),
    /// Set or change a user's recovery email address (mails a code to confirm it)
    SetEmail(email_cmds::SetEmailArgs),
    /// Send a test mail through the configured SMTP server
    EmailTest(email_cmds::EmailTestArgs),
    /// Check the configuration, state directory, syslog socket, PAM services, clock and SMTP server
    Doctor(doctor::DoctorArgs),
    /// Mail a login code (run by pam_twostep; reads the request on standard input)
    #[command(hide = true)]
    SendCode,
}

pub fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("twostep: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must be run as root (enrollment records are root-only)".into());
    }
    let config_path = cli
        .config
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    // Relative to the working directory, as a shell user means it; symlinks are still not
    // followed when the file is opened.
    let config_path =
        std::path::absolute(&config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let load = || Config::load(&config_path).map_err(|e| e.to_string());
    match cli.command {
        // The doctor reports a broken config instead of stopping at it.
        Command::Doctor(args) => return Ok(doctor::run(&config_path, &args)),
        Command::Enroll(args) => enroll::run(&load()?, &args),
        Command::Status(args) => status::run(&load()?, &args),
        Command::Reset(args) => admin::reset(&load()?, &args.user),
        Command::Restore(args) => admin::restore(&load()?, &args.user),
        Command::Unlock(args) => admin::unlock(&load()?, &args.user),
        Command::Codes(args) => admin::codes(&load()?, &args.user),
        Command::ShowQr(args) => show::run(&load()?, &args),
        Command::ImportGoogleAuthenticator(args) => import_ga::run(&load()?, &args),
        Command::SetEmail(args) => email_cmds::set_email(&load()?, &args),
        Command::EmailTest(args) => email_cmds::email_test(&load()?, &args),
        Command::SendCode => email_cmds::send_code(&load()?),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// Rust ignores SIGPIPE, so `twostep status | head` would end in a "broken pipe" panic; a
/// Unix command should just stop, as with the default disposition.
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE and no handler code is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The clap command, for generating the man page and completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        super::command().debug_assert();
    }
}
