//! Sending mail over SMTP (lettre, with the system's OpenSSL and CA store). Only the admin
//! command links this; the PAM module runs `twostep send-code` instead.

use crate::error::CliError;
use std::time::Duration;

use lettre::message::SinglePart;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use twostep_common::config::{Config, SmtpSecurity};
use twostep_common::securefs::{Access, read_root_file};
use zeroize::Zeroizing;

/// The SMTP password file is small; anything larger is a mistake.
const MAX_PASSWORD_FILE: u64 = 4096;

pub fn send(config: &Config, to: &str, subject: &str, body: &str) -> Result<(), CliError> {
    let email = &config.email;
    let from = email
        .from
        .parse()
        .map_err(|e| CliError::Mail(format!("email.from {:?}: {e}", email.from)))?;
    let to = to
        .parse()
        .map_err(|e| CliError::Mail(format!("address {to:?}: {e}")))?;
    // singlepart() adds MIME-Version, which the quoted-printable body needs to be read right.
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .message_id(None)
        .singlepart(SinglePart::plain(body.to_string()))
        .map_err(|e| CliError::Mail(format!("cannot build the mail: {e}")))?;
    transport(config)?
        .send(&message)
        .map(|_| ())
        .map_err(|e| CliError::Mail(describe(config, &e)))
}

/// Connects, greets and (for STARTTLS/TLS) negotiates TLS, without sending anything.
pub fn check(config: &Config) -> Result<(), CliError> {
    match transport(config)?.test_connection() {
        Ok(true) => Ok(()),
        Ok(false) => Err(CliError::Mail(format!(
            "{} did not accept the connection",
            server(config)
        ))),
        Err(e) => Err(CliError::Mail(describe(config, &e))),
    }
}

fn transport(config: &Config) -> Result<SmtpTransport, CliError> {
    let email = &config.email;
    if !email.enabled() {
        return Err(CliError::Mail(
            "email is not configured (set [email] smtp_host in the config)".into(),
        ));
    }
    let builder = match email.security {
        SmtpSecurity::Starttls => SmtpTransport::starttls_relay(&email.smtp_host),
        SmtpSecurity::Tls => SmtpTransport::relay(&email.smtp_host),
        SmtpSecurity::None => Ok(SmtpTransport::builder_dangerous(&email.smtp_host)),
    }
    .map_err(|e| CliError::Mail(format!("{}: {e}", server(config))))?;
    let mut builder = builder
        .port(email.smtp_port)
        .timeout(Some(Duration::from_secs(email.timeout_secs)));
    if !email.username.is_empty() {
        builder = builder.credentials(Credentials::new(email.username.clone(), password(config)?));
    }
    Ok(builder.build())
}

fn password(config: &Config) -> Result<String, CliError> {
    let path = &config.email.password_file;
    let bytes = read_root_file(path, MAX_PASSWORD_FILE, Access::Private)?.ok_or_else(|| {
        CliError::Mail(format!(
            "{}: the SMTP password file does not exist",
            path.display()
        ))
    })?;
    let text = Zeroizing::new(
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CliError::Mail(format!("{}: not UTF-8", path.display())))?,
    );
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn server(config: &Config) -> String {
    format!("{}:{}", config.email.smtp_host, config.email.smtp_port)
}

fn describe(config: &Config, e: &lettre::transport::smtp::Error) -> String {
    let what = if is_timeout(e) {
        format!("timed out after {} s", config.email.timeout_secs)
    } else {
        e.to_string()
    };
    format!("SMTP {}: {what}", server(config))
}

/// lettre reports a socket read timeout as a network error (EAGAIN); look at the cause.
fn is_timeout(e: &lettre::transport::smtp::Error) -> bool {
    if e.is_timeout() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let io_kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind);
        if matches!(
            io_kind,
            Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ) {
            return true;
        }
        source = cause.source();
    }
    false
}
