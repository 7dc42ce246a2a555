//! `pam_sm_authenticate`, start to finish, in the order a login sees it.

use std::ffi::CStr;
use std::path::Path;

use pam::constants::{
    PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_SILENT, PAM_TEXT_INFO, PamFlag, PamResultCode,
};
use pam::conv::Conv;
use pam::items::{RHost, Service};
use pam::module::PamHandle;
use twostep_common::audit::{Level, Sink, Syslog, field};
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::{Config, Unenrolled};
use twostep_common::login::{self, Accepted, Attempt, Begin, Outcome, Rejected};
use twostep_common::store::Store;

use crate::args::Args;

const PROCESS: &str = "pam_twostep";
const PROMPT: &str = "Verification code: ";
const LOCKED_MESSAGE: &str = "Too many failed attempts, try again later.";
const DEFAULT_LOG_SOCKET: &str = "/dev/log";

/// Where the login stands, for log lines.
struct Who {
    user: String,
    service: String,
    rhost: String,
}

impl Who {
    fn fields(&self) -> String {
        format!(
            "{} {} {}",
            field("user", &self.user),
            field("service", &self.service),
            field("rhost", &self.rhost)
        )
    }
}

pub fn run(pamh: &mut PamHandle, raw_args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let args = match Args::parse(raw_args) {
        Ok(args) => args,
        Err(why) => {
            early_log(&format!(
                "configuration error in the PAM service file: {why}"
            ));
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            early_log(&format!("configuration error, refusing all logins: {e}"));
            return PamResultCode::PAM_AUTHINFO_UNAVAIL;
        }
    };
    let mut log = Syslog::open(&config.log.socket, PROCESS);
    let user = match pamh.get_user(None) {
        Ok(user) => user,
        Err(code) => {
            log.log(Level::Error, "cannot get the user name from PAM");
            return never_pass(code);
        }
    };
    let who = Who {
        user,
        service: item_text::<Service>(pamh),
        rhost: item_text::<RHost>(pamh),
    };
    let store = match Store::open(&config.state_dir) {
        Ok(store) => store,
        Err(e) => return system_error(&mut log, &who, &e),
    };
    let quiet = flags & PAM_SILENT != 0;
    match login::begin(&store, &who.user, SystemClock.now()) {
        Err(e) => system_error(&mut log, &who, &e),
        Ok(Begin::NotEnrolled) => not_enrolled(&mut log, &who, config.unenrolled),
        Ok(Begin::Locked { until }) => {
            log.log(
                Level::Notice,
                &format!("auth refused {} reason=locked until={until}", who.fields()),
            );
            tell(pamh, PAM_ERROR_MSG, LOCKED_MESSAGE, quiet);
            PamResultCode::PAM_AUTH_ERR
        }
        Ok(Begin::AskCode) => ask_and_verify(pamh, &mut log, &who, &store, &config, quiet),
    }
}

fn ask_and_verify(
    pamh: &mut PamHandle,
    log: &mut Syslog,
    who: &Who,
    store: &Store,
    config: &Config,
    quiet: bool,
) -> PamResultCode {
    let answer = match converse(pamh, PAM_PROMPT_ECHO_OFF, PROMPT) {
        Ok(answer) => answer,
        Err(code) => {
            log.log(
                Level::Warning,
                &format!("auth failure {} reason=conversation-failed", who.fields()),
            );
            return never_pass(code);
        }
    };
    let attempt = Attempt {
        user: &who.user,
        service: &who.service,
        rhost: &who.rhost,
    };
    let typed: &[u8] = answer.as_ref().map_or(&[], |a| a.as_bytes());
    // The clock is read after the answer: the code was read off the phone just before it was
    // typed, not when the prompt appeared.
    let outcome = login::verify(store, config, &attempt, typed, SystemClock.now());
    drop(answer);
    match outcome {
        Err(e) => system_error(log, who, &e),
        Ok(Outcome::Accepted(accepted)) => success(pamh, log, who, accepted, quiet),
        Ok(Outcome::Rejected { why, locked_now }) => {
            log.log(
                Level::Notice,
                &format!("auth failure {} reason={}", who.fields(), reason(why)),
            );
            if locked_now {
                log.log(
                    Level::Warning,
                    &format!(
                        "lockout {} failures={} duration={}s",
                        who.fields(),
                        config.lockout.max_failures,
                        config.lockout.duration_secs
                    ),
                );
                tell(pamh, PAM_ERROR_MSG, LOCKED_MESSAGE, quiet);
            }
            PamResultCode::PAM_AUTH_ERR
        }
        Ok(Outcome::Locked { until }) => {
            log.log(
                Level::Notice,
                &format!("auth refused {} reason=locked until={until}", who.fields()),
            );
            tell(pamh, PAM_ERROR_MSG, LOCKED_MESSAGE, quiet);
            PamResultCode::PAM_AUTH_ERR
        }
        Ok(Outcome::NotEnrolled) => {
            // Reset while the prompt was open: the code typed belongs to no enrollment.
            log.log(
                Level::Notice,
                &format!("auth failure {} reason=enrollment-removed", who.fields()),
            );
            PamResultCode::PAM_AUTH_ERR
        }
    }
}

fn success(
    pamh: &mut PamHandle,
    log: &mut Syslog,
    who: &Who,
    accepted: Accepted,
    quiet: bool,
) -> PamResultCode {
    match accepted {
        Accepted::Totp => {
            log.log(
                Level::Info,
                &format!("auth success {} method=totp", who.fields()),
            );
        }
        Accepted::Emergency { remaining } => {
            log.log(
                Level::Notice,
                &format!(
                    "auth success {} method=emergency remaining={remaining}",
                    who.fields()
                ),
            );
            let note = if remaining <= 2 {
                format!(
                    "Emergency code accepted. {remaining} left: ask your administrator for new ones."
                )
            } else {
                format!("Emergency code accepted. {remaining} left.")
            };
            tell(pamh, PAM_TEXT_INFO, &note, quiet);
        }
    }
    PamResultCode::PAM_SUCCESS
}

fn not_enrolled(log: &mut Syslog, who: &Who, policy: Unenrolled) -> PamResultCode {
    match policy {
        Unenrolled::Allow => {
            log.log(
                Level::Info,
                &format!("not enrolled {} action=allow", who.fields()),
            );
            PamResultCode::PAM_IGNORE
        }
        Unenrolled::Deny => {
            log.log(
                Level::Notice,
                &format!(
                    "auth failure {} reason=not-enrolled action=deny",
                    who.fields()
                ),
            );
            PamResultCode::PAM_AUTH_ERR
        }
    }
}

fn system_error(log: &mut Syslog, who: &Who, error: &twostep_common::Error) -> PamResultCode {
    log.log(
        Level::Error,
        &format!("error {} refusing login: {error}", who.fields()),
    );
    PamResultCode::PAM_AUTHINFO_UNAVAIL
}

fn reason(why: Rejected) -> &'static str {
    match why {
        Rejected::Empty => "empty",
        Rejected::Malformed => "malformed",
        Rejected::WrongCode => "wrong-code",
        Rejected::WrongEmergencyCode => "wrong-emergency-code",
        Rejected::Replay => "replay",
    }
}

/// Error codes from libpam pass through, except the two that would let a login continue.
fn never_pass(code: PamResultCode) -> PamResultCode {
    match code {
        PamResultCode::PAM_SUCCESS | PamResultCode::PAM_IGNORE => PamResultCode::PAM_AUTH_ERR,
        other => other,
    }
}

fn converse(
    pamh: &PamHandle,
    style: pam::constants::PamMessageStyle,
    text: &str,
) -> Result<Option<pam::secret::SecretBytes>, PamResultCode> {
    let conv = match pamh.get_item::<Conv>() {
        Ok(Some(conv)) => conv,
        Ok(None) => return Err(PamResultCode::PAM_CONV_ERR),
        Err(code) => return Err(code),
    };
    conv.send(style, text)
}

/// An informational line; a client that cannot show it does not fail the login.
fn tell(pamh: &PamHandle, style: pam::constants::PamMessageStyle, text: &str, quiet: bool) {
    if !quiet {
        let _ = converse(pamh, style, text);
    }
}

fn item_text<'a, T: pam::items::Item<'a> + std::ops::Deref<Target = &'a CStr>>(
    pamh: &'a PamHandle,
) -> String {
    match pamh.get_item::<T>() {
        Ok(Some(item)) => item.to_string_lossy().into_owned(),
        _ => String::new(),
    }
}

/// Logging before the config (and so the configured socket) is known.
fn early_log(message: &str) {
    Syslog::open(Path::new(DEFAULT_LOG_SOCKET), PROCESS).log(Level::Error, message);
}

/// For hooks of stacks this module does not belong in: fail, and say why.
pub fn misplaced(stack: &str, raw_args: &[&CStr]) -> PamResultCode {
    let socket = Args::parse(raw_args)
        .ok()
        .and_then(|a| Config::load(&a.config).ok())
        .map(|c| c.log.socket)
        .unwrap_or_else(|| DEFAULT_LOG_SOCKET.into());
    Syslog::open(&socket, PROCESS).log(
        Level::Error,
        &format!("pam_twostep is an auth module; it was called from the {stack} stack: refusing"),
    );
    PamResultCode::PAM_SERVICE_ERR
}
