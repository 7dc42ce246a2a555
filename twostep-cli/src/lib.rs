//! `twostep`: the admin command for two-step login. The clap definitions live here so that the
//! man page and shell completions are generated from them (see `src/bin/twostep-gen.rs`).

mod admin;
mod doctor;
mod enroll;
mod import_ga;
mod output;
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
    /// End a lockout after too many failed codes
    Unlock(admin::UserArg),
    /// Issue new emergency codes; the old ones stop working
    Codes(admin::UserArg),
    /// Show the QR code and key of an existing enrollment again (to add a second device)
    ShowQr(show::ShowQrArgs),
    /// Move a google-authenticator-libpam user to twostep, keeping their key and scratch codes
    ImportGoogleAuthenticator(import_ga::ImportArgs),
    /// Check the configuration, state directory, PAM services and clock
    Doctor,
}

pub fn main() -> ExitCode {
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
    let load = || Config::load(&config_path).map_err(|e| e.to_string());
    match cli.command {
        // The doctor reports a broken config instead of stopping at it.
        Command::Doctor => return Ok(doctor::run(&config_path)),
        Command::Enroll(args) => enroll::run(&load()?, &args),
        Command::Status(args) => status::run(&load()?, &args),
        Command::Reset(args) => admin::reset(&load()?, &args.user),
        Command::Restore(args) => admin::restore(&load()?, &args.user),
        Command::Unlock(args) => admin::unlock(&load()?, &args.user),
        Command::Codes(args) => admin::codes(&load()?, &args.user),
        Command::ShowQr(args) => show::run(&load()?, &args),
        Command::ImportGoogleAuthenticator(args) => import_ga::run(&load()?, &args),
    }
    .map(|()| ExitCode::SUCCESS)
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
