//! `twostep`: the admin command for two-step login.

mod enroll;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use twostep_common::config::{CONFIG_ENV, Config, DEFAULT_CONFIG_PATH};

#[derive(Debug, Parser)]
#[command(
    name = "twostep",
    version,
    about = "Manage two-step login (TOTP codes, emergency codes) for this machine",
    long_about = "Manage two-step login for this machine. After the password, users enrolled \
                  here are asked for a code from an authenticator app, or for one of their \
                  one-time emergency codes. Must be run as root.",
    after_help = "Exit status: 0 success, 1 failure, 2 usage error."
)]
struct Cli {
    /// Config file (default: $TWOSTEP_CONFIG, else /etc/twostep/twostep.toml)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll a user for two-step login
    Enroll(enroll::EnrollArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("twostep: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must be run as root (it manages root-only enrollment records)".into());
    }
    let config_path = cli
        .config
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Enroll(args) => enroll::run(&config, &args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
