//! `pam_sm_authenticate`, start to finish, in the order a login sees it.

use std::ffi::CStr;
use std::path::Path;

use pam::constants::{
    PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_SILENT, PAM_TEXT_INFO, PamFlag, PamMessageStyle,
    PamResultCode,
};
use pam::conv::Conv;
use pam::items::{RHost, Service};
use pam::module::PamHandle;
use pam::secret::SecretBytes;
use twostep_common::audit::{Level, Sink, Syslog, field};
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::config::{Config, OnUnenrolled, Unenrolled};
use twostep_common::email;
use twostep_common::lockout::Locked;
use twostep_common::login::{self, Accepted, Ask, Attempt, Begin, EmailIssue, Outcome, Rejected};
use twostep_common::module_args::{Mode, ModuleArgs};
use twostep_common::policy::{Skip, SystemDirectory};
use twostep_common::store::{Seen, Store};

use crate::{enroll, names, one_prompt};

const PROCESS: &str = "pam_twostep";
const PROMPT: &str = "Verification code: ";
const FALLBACK_PROMPT: &str = "Verification code (or \"email\" to get a code by email): ";
const SEND_FAILED: &str = "Could not send the code, try another method.";
const SEND_LIMITED: &str = "Too many codes were sent; try again later.";
/// After a failed send, for users whose only other way in is an emergency code.
const EMERGENCY_PROMPT: &str = "Emergency code: ";
const LOCKED_MESSAGE: &str = "Too many failed attempts, try again later.";
/// A valid code for a time step already used (docs/pam.md, "Messages"). The replay still
/// counts as a failure.
const REPLAY_MESSAGE: &str = "That code was already used; wait for the next one.";
/// "N attempts left" is shown when this many or fewer remain before a lockout.
const ATTEMPTS_LEFT_SHOWN: u32 = 3;
pub(crate) const REQUIRED_MESSAGE: &str =
    "Two-step login is required for this account but is not set up. Ask your administrator.";
const DEFAULT_LOG_SOCKET: &str = "/dev/log";

/// One login: what PAM told us, the config, and where log lines go.
pub struct Login<'a> {
    pub pamh: &'a mut PamHandle,
    pub config: Config,
    /// Handed to the mail helper so it reads the same config.
    pub config_path: std::path::PathBuf,
    pub log: Syslog,
    pub user: String,
    pub service: String,
    pub rhost: String,
    /// PAM_SILENT: no informational messages.
    pub quiet: bool,
}

impl Login<'_> {
    pub fn attempt(&self) -> Attempt<'_> {
        Attempt {
            user: &self.user,
            service: &self.service,
            rhost: &self.rhost,
        }
    }

    /// `user=… service=… rhost=…` for log lines.
    pub fn fields(&self) -> String {
        format!(
            "{} {} {}",
            field("user", &self.user),
            field("service", &self.service),
            field("rhost", &self.rhost)
        )
    }

    pub fn log(&mut self, level: Level, event: &str, details: &str) {
        let line = if details.is_empty() {
            format!("{event} {}", self.fields())
        } else {
            format!("{event} {} {details}", self.fields())
        };
        self.log.log(level, &line);
    }

    pub fn ask(
        &self,
        style: PamMessageStyle,
        text: &str,
    ) -> Result<Option<SecretBytes>, PamResultCode> {
        converse(self.pamh, style, text)
    }

    /// An informational line; a client that cannot show it does not fail the login.
    pub fn tell(&self, style: PamMessageStyle, text: &str) {
        if !self.quiet {
            let _ = converse(self.pamh, style, text);
        }
    }

    pub fn system_error(&mut self, error: &twostep_common::Error) -> PamResultCode {
        let detail = field("detail", &error.to_string());
        self.log(Level::Error, "error", &format!("refusing login {detail}"));
        PamResultCode::PAM_AUTHINFO_UNAVAIL
    }
}

pub fn run(pamh: &mut PamHandle, raw_args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let (mut login, args, store) = match Login::start(pamh, raw_args, flags) {
        Ok(started) => started,
        Err(code) => return code,
    };
    match args.mode {
        Mode::Code => two_prompts(&mut login, &store),
        Mode::Split => one_prompt::split(&mut login, &store),
        Mode::Verify => one_prompt::verify(&mut login, &store),
    }
}

impl<'a> Login<'a> {
    /// Reads the arguments, the config and the PAM items every hook needs, opens the store
    /// and puts the user's canonical name in `user` ([`names::resolve`]); an error is the PAM
    /// code to return (already logged).
    pub fn start(
        pamh: &'a mut PamHandle,
        raw_args: &[&CStr],
        flags: PamFlag,
    ) -> Result<(Login<'a>, ModuleArgs, Store), PamResultCode> {
        let args = match parse_args(raw_args) {
            Ok(args) => args,
            Err(why) => {
                early_log(&format!(
                    "configuration error in the PAM service file: {}",
                    field("detail", &why)
                ));
                return Err(PamResultCode::PAM_SERVICE_ERR);
            }
        };
        let config = match Config::load_for_login(&args.config, args.default_config()) {
            Ok((config, notice)) => {
                if let Some(notice) = notice {
                    Syslog::open(&config.log.socket, PROCESS).log(Level::Notice, &notice);
                }
                config
            }
            Err(e) => {
                early_log(&format!(
                    "configuration error, refusing all logins: {}",
                    field("detail", &e.to_string())
                ));
                return Err(PamResultCode::PAM_AUTHINFO_UNAVAIL);
            }
        };
        let mut log = Syslog::open(&config.log.socket, PROCESS);
        let user = match pamh.get_user(None) {
            Ok(user) => user,
            Err(code) => {
                log.log(Level::Error, "cannot get the user name from PAM");
                return Err(never_pass(code));
            }
        };
        let service = item_text::<Service>(pamh);
        let rhost = item_text::<RHost>(pamh);
        let mut login = Login {
            pamh,
            config,
            config_path: args.config.clone(),
            log,
            user,
            service,
            rhost,
            quiet: flags & PAM_SILENT != 0,
        };
        let store = match Store::open(&login.config.state_dir) {
            Ok(store) => store,
            Err(e) => return Err(login.system_error(&e)),
        };
        names::resolve(&mut login, &store)?;
        Ok((login, args, store))
    }
}

pub(crate) fn decide(
    login: &Login<'_>,
    store: &Store,
) -> Result<(Begin, Seen), twostep_common::Error> {
    login::begin(
        store,
        &login.config,
        &SystemDirectory,
        &login.attempt(),
        SystemClock.now(),
    )
}

/// The usual flow: the password was checked by the modules above; ask for the code.
fn two_prompts(login: &mut Login<'_>, store: &Store) -> PamResultCode {
    let (decision, seen) = match decide(login, store) {
        Ok(decided) => decided,
        Err(e) => return login.system_error(&e),
    };
    match decision {
        Begin::Skip(skip) => skipped(login, skip),
        Begin::NotEnrolled { enforced: false } => not_enrolled(login),
        Begin::NotEnrolled { enforced: true } => match login.config.policy.on_unenrolled {
            OnUnenrolled::Deny => enforced_without_enrollment(login),
            OnUnenrolled::Enroll => enroll::at_login(login, store),
        },
        Begin::Locked { until } => locked(login, until),
        Begin::AskCode(ask) => ask_code(login, store, &ask, seen),
    }
}

/// Asks for the code `ask` says, and checks it.
fn ask_code(login: &mut Login<'_>, store: &Store, ask: &Ask, seen: Seen) -> PamResultCode {
    let (prompt, email_to) = match ask {
        Ask::Totp => (PROMPT, None),
        Ask::TotpOrEmail { masked } => (FALLBACK_PROMPT, Some(masked)),
        Ask::Email { masked } => {
            return emailed_code(login, store, masked, EMERGENCY_PROMPT, seen);
        }
    };
    let answer = match login.ask(PAM_PROMPT_ECHO_OFF, prompt) {
        Ok(answer) => answer,
        Err(code) => return conversation_failed(login, code),
    };
    let typed: &[u8] = answer.as_ref().map_or(&[], |a| a.as_bytes());
    if let Some(masked) = email_to
        && typed.trim_ascii().eq_ignore_ascii_case(b"email")
    {
        return emailed_code(login, store, masked, PROMPT, seen);
    }
    check(login, store, typed, seen)
}

/// Checks a typed code and ends the login. The clock is read now, after the answer: the code
/// was read off the phone just before it was typed, not when the prompt appeared.
fn check(login: &mut Login<'_>, store: &Store, typed: &[u8], seen: Seen) -> PamResultCode {
    let outcome = login::verify(
        store,
        &login.config,
        &login.attempt(),
        typed,
        SystemClock.now(),
        seen,
    );
    finish(login, outcome)
}

/// Mails a code (within the send limits) and asks for it. When the mail cannot be sent, asks
/// `otherwise` instead, so an emergency code (or the app) still works.
fn emailed_code(
    login: &mut Login<'_>,
    store: &Store,
    masked: &str,
    otherwise: &str,
    seen: Seen,
) -> PamResultCode {
    let issued = login::issue_email_code(
        store,
        &login.config,
        &login.attempt(),
        SystemClock.now(),
        seen,
    );
    let mut prompt = format!("Code sent to {masked}: ");
    match issued {
        Err(e) => return login.system_error(&e),
        Ok(EmailIssue::NotEnrolled) => {
            login.log(Level::Notice, "auth failure", "reason=enrollment-removed");
            return PamResultCode::PAM_AUTH_ERR;
        }
        Ok(EmailIssue::Locked { until }) => return locked(login, until),
        Ok(EmailIssue::Limited) => {
            login.log(Level::Notice, "email refused", "reason=send-limit");
            login.tell(PAM_ERROR_MSG, SEND_LIMITED);
            return PamResultCode::PAM_AUTH_ERR;
        }
        Ok(EmailIssue::Pending) => {
            login.log(
                Level::Info,
                "email not sent",
                "reason=send-limit detail=code-pending",
            );
        }
        Ok(EmailIssue::Send(request)) => {
            match email::send_via_helper(&login.config, &login.config_path, &request) {
                Ok(()) => login.log(Level::Info, "email sent", ""),
                Err(e) => {
                    let reason = field("reason", &e.to_string());
                    login.log(Level::Warning, "email failure", &reason);
                    if let Err(e) = login::email_not_sent(store, &login.attempt(), &request) {
                        return login.system_error(&e);
                    }
                    login.tell(PAM_ERROR_MSG, SEND_FAILED);
                    prompt = otherwise.to_string();
                }
            }
        }
    }
    let answer = match login.ask(PAM_PROMPT_ECHO_OFF, &prompt) {
        Ok(answer) => answer,
        Err(code) => return conversation_failed(login, code),
    };
    // The record was just written: nothing seen before is current.
    let typed = answer.as_ref().map_or(&[][..], |a| a.as_bytes());
    check(login, store, typed, Seen::default())
}

pub(crate) fn finish(
    login: &mut Login<'_>,
    outcome: Result<Outcome, twostep_common::Error>,
) -> PamResultCode {
    match outcome {
        Err(e) => login.system_error(&e),
        Ok(Outcome::Accepted(accepted)) => success(login, accepted),
        Ok(Outcome::Rejected { why, locked }) => {
            login.log(
                Level::Notice,
                "auth failure",
                &format!("reason={}", reason(why)),
            );
            if why == Rejected::Replay {
                login.tell(PAM_ERROR_MSG, REPLAY_MESSAGE);
            }
            if let Some(scope) = locked {
                let lockout = &login.config.lockout;
                let (scope, failures) = match scope {
                    Locked::Host => ("host", lockout.max_failures),
                    Locked::User => ("user", lockout.max_failures_user),
                };
                let details = format!(
                    "scope={scope} failures={failures} duration={}s",
                    lockout.duration_secs
                );
                let duration = lockout.duration_secs;
                login.log(Level::Warning, "lockout", &details);
                login.tell(PAM_ERROR_MSG, LOCKED_MESSAGE);
                login.tell(PAM_ERROR_MSG, &try_again_in(duration));
            } else if why != Rejected::Empty {
                // Few attempts left: say so, so that a user who mistypes stops before the lockout
                // (a second read of the state; only after a failure).
                let left = Store::open(&login.config.state_dir)
                    .and_then(|store| store.load(&login.user))
                    .ok()
                    .flatten()
                    .map(|record| {
                        record.lockout.attempts_left(
                            &login::host_key(&login.rhost),
                            SystemClock.now(),
                            &login.config.lockout,
                        )
                    });
                if let Some(left @ 1..=ATTEMPTS_LEFT_SHOWN) = left {
                    let minutes = login.config.lockout.duration_secs.div_ceil(60);
                    login.tell(
                        PAM_ERROR_MSG,
                        &format!(
                            "{left} {} left before a {minutes}-minute lockout.",
                            if left == 1 { "attempt" } else { "attempts" }
                        ),
                    );
                }
            }
            PamResultCode::PAM_AUTH_ERR
        }
        Ok(Outcome::Locked { until }) => locked(login, until),
        Ok(Outcome::NotEnrolled) => {
            // Reset while the prompt was open: the code typed belongs to no enrollment.
            login.log(Level::Notice, "auth failure", "reason=enrollment-removed");
            PamResultCode::PAM_AUTH_ERR
        }
    }
}

pub(crate) fn success(login: &mut Login<'_>, accepted: Accepted) -> PamResultCode {
    match accepted {
        Accepted::Totp => login.log(Level::Info, "auth success", "method=totp"),
        Accepted::Email => login.log(Level::Info, "auth success", "method=email"),
        Accepted::Emergency { remaining } => {
            login.log(
                Level::Notice,
                "auth success",
                &format!("method=emergency remaining={remaining}"),
            );
            let note = if remaining <= 2 {
                format!(
                    "Emergency code accepted. {remaining} left: ask your administrator for new ones."
                )
            } else {
                format!("Emergency code accepted. {remaining} left.")
            };
            login.tell(PAM_TEXT_INFO, &note);
        }
    }
    PamResultCode::PAM_SUCCESS
}

pub(crate) fn skipped(login: &mut Login<'_>, skip: Skip) -> PamResultCode {
    login.log(
        Level::Info,
        "auth skipped",
        &format!("reason={}", skip.reason()),
    );
    PamResultCode::PAM_SUCCESS
}

pub(crate) fn locked(login: &mut Login<'_>, until: u64) -> PamResultCode {
    login.log(
        Level::Notice,
        "auth refused",
        &format!("reason=locked until={until}"),
    );
    login.tell(PAM_ERROR_MSG, LOCKED_MESSAGE);
    login.tell(
        PAM_ERROR_MSG,
        &try_again_in(until.saturating_sub(SystemClock.now())),
    );
    PamResultCode::PAM_AUTH_ERR
}

/// When a lockout ends, as the user reads it: relative, so no time zone is involved.
fn try_again_in(secs: u64) -> String {
    match secs.div_ceil(60) {
        0 | 1 => "Try again in a minute.".to_string(),
        minutes => format!("Try again in {minutes} minutes."),
    }
}

pub(crate) fn not_enrolled(login: &mut Login<'_>) -> PamResultCode {
    match login.config.unenrolled {
        Unenrolled::Allow => {
            login.log(Level::Info, "not enrolled", "action=allow");
            PamResultCode::PAM_IGNORE
        }
        Unenrolled::Deny => {
            login.log(
                Level::Notice,
                "auth failure",
                "reason=not-enrolled action=deny",
            );
            PamResultCode::PAM_AUTH_ERR
        }
    }
}

pub(crate) fn enforced_without_enrollment(login: &mut Login<'_>) -> PamResultCode {
    login.log(
        Level::Notice,
        "auth failure",
        "reason=not-enrolled policy=enforced action=deny",
    );
    login.tell(PAM_ERROR_MSG, REQUIRED_MESSAGE);
    PamResultCode::PAM_AUTH_ERR
}

pub fn conversation_failed(login: &mut Login<'_>, code: PamResultCode) -> PamResultCode {
    login.log(Level::Warning, "auth failure", "reason=conversation-failed");
    never_pass(code)
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
pub(crate) fn never_pass(code: PamResultCode) -> PamResultCode {
    match code {
        PamResultCode::PAM_SUCCESS | PamResultCode::PAM_IGNORE => PamResultCode::PAM_AUTH_ERR,
        other => other,
    }
}

fn converse(
    pamh: &PamHandle,
    style: PamMessageStyle,
    text: &str,
) -> Result<Option<SecretBytes>, PamResultCode> {
    let conv = match pamh.get_item::<Conv>() {
        Ok(Some(conv)) => conv,
        Ok(None) => return Err(PamResultCode::PAM_CONV_ERR),
        Err(code) => return Err(code),
    };
    conv.send(style, text)
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
    let socket = parse_args(raw_args)
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

fn parse_args(raw_args: &[&CStr]) -> Result<ModuleArgs, String> {
    let bytes: Vec<&[u8]> = raw_args.iter().map(|a| a.to_bytes()).collect();
    ModuleArgs::parse(&bytes)
}
