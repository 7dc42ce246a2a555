//! Showing an enrollment's key: terminal QR code, key for typing, otpauth URI, optional image
//! files. Used by `enroll` and `show-qr`.

pub(crate) mod qr_file;

use crate::error::CliError;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use twostep_common::backend::{self};
use twostep_common::config::Config;
use twostep_common::otpauth::{self, key_groups};
use twostep_common::remote::LoginStore;
use twostep_common::totp::{self, Params};

use crate::output::audit;
use twostep_common::qr;

/// Image files to write besides the terminal QR code.
#[derive(Debug, Args, Default)]
pub struct QrFiles {
    /// Also write the QR code as a PNG image (mode 0600; refuses to overwrite)
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,

    /// Also write the QR code as an SVG image (mode 0600; refuses to overwrite)
    #[arg(long, value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowQrArgs {
    /// The enrolled user
    pub user: String,

    #[command(flatten)]
    pub files: QrFiles,

    /// Machine-readable output: the key, URI and QR code as SVG (fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

/// What an app needs for `key`, as JSON: `user`, `issuer`, `account`, `algorithm`, `digits`,
/// `period`, `secret` (base32 in groups of four), `uri`, `qr_svg`.
pub fn qr_json(
    config: &Config,
    user: &str,
    key: &[u8],
    params: Params,
) -> Result<serde_json::Value, CliError> {
    let uri = uri(config, user, key, params);
    let svg = qr_file::svg_document(&uri)?;
    Ok(serde_json::json!({
        "user": user,
        "issuer": config.issuer_or_hostname(),
        "account": config.account_label(user),
        "algorithm": params.algorithm.name(),
        "digits": params.digits,
        "period": params.period,
        "secret": key_groups(&totp::encode_secret(key)).as_str(),
        "uri": uri.as_str(),
        "qr_svg": svg.as_str(),
    }))
}

/// Prints everything an authenticator app needs for `key`.
pub fn present(
    config: &Config,
    user: &str,
    key: &[u8],
    params: Params,
    files: &QrFiles,
) -> Result<(), CliError> {
    let issuer = config.issuer_or_hostname();
    let account = config.account_label(user);
    let uri = uri(config, user, key, params);
    // Colours pin dark-on-light whatever the terminal theme; plain text for pipes and NO_COLOR.
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let code = if colour {
        qr::terminal(&uri)
    } else {
        qr::terminal_plain(&uri)
    }?;
    println!(
        "Scan this QR code with an authenticator app (Google or Microsoft Authenticator, Aegis, ...):"
    );
    println!();
    print!("{code}");
    println!();
    println!(
        "Or add the key by hand: {}",
        key_groups(&totp::encode_secret(key)).as_str()
    );
    println!(
        "  account {account}, issuer {issuer}, time-based, {}, {} digits, every {} seconds",
        params.algorithm.name(),
        params.digits,
        params.period
    );
    println!("URI: {}", uri.as_str());
    write_files(&uri, files)
}

/// The URI alone, for scripts (`enroll --yes`), plus any image files asked for.
pub fn present_uri(
    config: &Config,
    user: &str,
    key: &[u8],
    params: Params,
    files: &QrFiles,
) -> Result<(), CliError> {
    let uri = uri(config, user, key, params);
    println!("URI: {}", uri.as_str());
    write_files(&uri, files)
}

fn uri(config: &Config, user: &str, key: &[u8], params: Params) -> zeroize::Zeroizing<String> {
    otpauth::totp_uri(
        &config.issuer_or_hostname(),
        &config.account_label(user),
        key,
        params,
    )
}

fn write_files(uri: &str, files: &QrFiles) -> Result<(), CliError> {
    if let Some(path) = &files.qr_png {
        qr_file::write_png(uri, path)?;
        println!("QR code written to {}", path.display());
    }
    if let Some(path) = &files.qr_svg {
        qr_file::write_svg(uri, path)?;
        println!("QR code written to {}", path.display());
    }
    Ok(())
}

pub fn run(config: &Config, args: &ShowQrArgs) -> Result<(), CliError> {
    let store = LoginStore::open(config)?;
    let record =
        backend::load(&store, &args.user)?.ok_or_else(|| CliError::not_enrolled(&args.user))?;
    let Some(totp_record) = record.totp.as_ref() else {
        return Err(CliError::Refused(format!(
            "{} receives codes by email and has no authenticator key to show",
            args.user
        )));
    };
    let key = totp::decode_secret(totp_record.secret.expose())?;
    eprintln!(
        "Warning: this shows {}'s secret key. Anyone who sees it (or a photo of it) can make \
         their codes.",
        args.user
    );
    audit(config, "show-qr", &args.user);
    if args.json {
        return crate::output::print_json(&qr_json(
            config,
            &args.user,
            &key,
            totp_record.params(),
        )?);
    }
    present(config, &args.user, &key, totp_record.params(), &args.files)
}
