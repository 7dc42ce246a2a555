//! `twostep`: the admin command for two-step login. The clap definitions live here so that the
//! man page and shell completions are generated from them (see `src/bin/twostep-gen.rs`).

mod admin;
mod config_cmd;
mod doctor;
mod email_cmds;
mod enroll;
mod error;
mod fleet;
mod gate;
mod import_ga;
mod listen;
mod mail;
mod output;
mod pamstack;
mod prompt;
mod selfservice;
mod show;
mod smbconf;
mod status;

use crate::error::CliError;
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
                  the state directory (default /var/lib/twostep). Must be run as root, \
                  except `twostep self`, with which users manage their own.",
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
    /// List or close the gates that open SMB (and other services that cannot prompt) after a
    /// two-step login from the same address
    #[command(subcommand)]
    Gate(gate::GateCommand),
    /// Read or change the config file (comments and layout are kept)
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Your own two-step login, as a normal user: status, enable, new codes, a new phone,
    /// the recovery address, disable (through the twostep-self service)
    #[command(name = "self")]
    SelfService(selfservice::client::SelfArgs),
    /// The root service behind `twostep self` (socket-activated by twostep-self.socket)
    ServeSelf(selfservice::server::ServeArgs),
    /// Fleet mode on PostgreSQL: create the key and schema, import this host's records
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// The root service between pam_twostep and the fleet's database ([store] backend =
    /// "postgresql")
    ServeStore(fleet::server::ServeStoreArgs),
    /// Mail a login code (run by pam_twostep; reads the request on standard input)
    #[command(hide = true)]
    SendCode,
}

pub fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("twostep: {error}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    // A user's own commands run as that user; the service they talk to is root's.
    if let Command::SelfService(args) = &cli.command {
        return Ok(selfservice::client::run(args));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(CliError::refused(
            "must be run as root (enrollment records are root-only)",
        ));
    }
    let config_path = cli
        .config
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    // Relative to the working directory, as a shell user means it; symlinks are still not
    // followed when the file is opened.
    let config_path =
        std::path::absolute(&config_path).map_err(|e| CliError::io(config_path.display(), e))?;
    let load = || Config::load(&config_path).map_err(CliError::from);
    match cli.command {
        // The doctor reports a broken config instead of stopping at it.
        Command::Doctor(args) => return Ok(doctor::run(&config_path, &args)),
        Command::Config(config_cmd::ConfigCommand::Get(args)) => {
            config_cmd::get(&config_path, &args)
        }
        Command::Config(config_cmd::ConfigCommand::Set(args)) => {
            config_cmd::set(&config_path, &args)
        }
        Command::Enroll(mut args) => {
            let config = load()?;
            canonical_user(&config, &mut args.user, Existing::Required)?;
            enroll::run(&config, &args)
        }
        Command::Status(mut args) => {
            let config = load()?;
            if let Some(user) = args.user.as_mut() {
                canonical_user(&config, user, Existing::NotRequired)?;
            }
            status::run(&config, &args)
        }
        Command::Reset(mut args) => with_user(load()?, &mut args, admin::reset),
        Command::Restore(mut args) => with_user(load()?, &mut args, admin::restore),
        Command::Unlock(mut args) => with_user(load()?, &mut args, admin::unlock),
        Command::Codes(mut args) => with_user(load()?, &mut args, admin::codes),
        Command::ShowQr(mut args) => {
            let config = load()?;
            canonical_user(&config, &mut args.user, Existing::NotRequired)?;
            show::run(&config, &args)
        }
        Command::ImportGoogleAuthenticator(mut args) => {
            let config = load()?;
            canonical_user(&config, &mut args.user, Existing::Required)?;
            import_ga::run(&config, &args)
        }
        Command::SetEmail(mut args) => {
            let config = load()?;
            canonical_user(&config, &mut args.user, Existing::NotRequired)?;
            email_cmds::set_email(&config, &args)
        }
        Command::Gate(gate::GateCommand::List(mut args)) => {
            let config = load()?;
            if let Some(user) = args.user.as_mut() {
                canonical_user(&config, user, Existing::NotRequired)?;
            }
            gate::list(&config, &args)
        }
        Command::Gate(gate::GateCommand::Close(mut args)) => {
            let config = load()?;
            canonical_user(&config, &mut args.user, Existing::NotRequired)?;
            gate::close(&config, &args)
        }
        Command::SelfService(_) => unreachable!("answered above"),
        Command::ServeSelf(args) => selfservice::server::run(&config_path, &args),
        Command::Fleet(command) => fleet::run(&load()?, &command),
        Command::ServeStore(args) => fleet::server::run(&config_path, &args),
        Command::EmailTest(args) => email_cmds::email_test(&load()?, &args),
        Command::SendCode => email_cmds::send_code(&load()?),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// Whether a command needs the user to exist in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// New records (enroll, import): a login of an unknown user with a record is refused.
    Required,
    /// Commands on existing records also reach those of users since removed.
    NotRequired,
}

/// Replaces `user` by its canonical name in the system's directory, as the PAM module does, so
/// that `twostep enroll ALICE` on a case-insensitive directory acts on `alice`'s record; says so
/// on stderr. Fails when the directory cannot be asked.
fn canonical_user(config: &Config, user: &mut String, existing: Existing) -> Result<(), CliError> {
    use twostep_common::username::{self, Canonical};
    match username::canonical(user)? {
        Canonical::Known { name, aliased } => {
            if aliased {
                eprintln!("twostep: note: {user} is {name} on this system; acting on {name}");
                let store = twostep_common::remote::LoginStore::open(config);
                if store.is_ok_and(|store| {
                    twostep_common::backend::Backend::has_record(&store, user).unwrap_or(true)
                }) {
                    eprintln!(
                        "twostep: warning: a record exists under the alias {user}: logins as \
                         {user} are refused until it is removed from the state directory"
                    );
                }
                *user = name;
            }
            Ok(())
        }
        Canonical::Unknown if existing == Existing::Required => Err(CliError::Refused(format!(
            "no such user {user:?} in the system's user directory (getent passwd {user})"
        ))),
        Canonical::Unknown => Ok(()),
    }
}

fn with_user(
    config: Config,
    args: &mut admin::UserArg,
    command: fn(&Config, &str, bool) -> Result<(), CliError>,
) -> Result<(), CliError> {
    canonical_user(&config, &mut args.user, Existing::NotRequired)?;
    command(&config, &args.user, args.json)
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
