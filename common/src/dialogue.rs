//! The login dialogue, independent of PAM: what the module asks and tells, in what order, and
//! what the login's result is. The PAM module implements [`Conversation`] over libpam's
//! conversation function and maps a [`Verdict`] to a PAM code; unit tests drive the same flow
//! with a scripted conversation and a [`MemoryBackend`](crate::backend::MemoryBackend).
//!
//! Flows: [`code_prompt`] (the usual line after the password module: a code, an emailed code,
//! or enrollment at login), [`split`] and [`verify`] (one-prompt mode's two lines), [`commit`]
//! (pam_setcred: store an enrollment confirmed at login) and [`resolve_user`] (the canonical
//! user name, first of all).

mod account;
mod enroll;

pub use account::check as account;

use zeroize::Zeroizing;

use crate::audit::{Level, Sink, field};
use crate::backend::{Backend, Seen};
use crate::clock::Clock;
use crate::combined;
use crate::config::{Config, OnUnenrolled, Unenrolled};
use crate::email;
use crate::error::Error;
use crate::lockout::Locked;
use crate::login::{self, Accepted, Ask, Attempt, Begin, Commit, EmailIssue, Outcome, Rejected};
use crate::policy::{self, Directory, LoginName, Skip};
use crate::store::PendingId;
use crate::username;

pub const PROMPT: &str = "Verification code: ";
pub const FALLBACK_PROMPT: &str = "Verification code (or \"email\" to get a code by email): ";
pub const COMBINED_PROMPT: &str = "Password and verification code: ";
/// After a failed send, for users whose only other way in is an emergency code.
pub const EMERGENCY_PROMPT: &str = "Emergency code: ";
pub const SEND_FAILED: &str = "Could not send the code, try another method.";
pub const SEND_LIMITED: &str = "Too many codes were sent; try again later.";
pub const LOCKED_MESSAGE: &str = "Too many failed attempts, try again later.";
/// When the login cannot be decided (the fleet store down, a damaged record, a failed user
/// lookup): the details are in the log, never shown.
pub const UNAVAILABLE_MESSAGE: &str =
    "Two-step login is unavailable right now; try again later or ask the administrator.";
/// A valid code for a time step already used (docs/pam.md, "Messages"). The replay still
/// counts as a failure.
pub const REPLAY_MESSAGE: &str = "That code was already used; wait for the next one.";
pub const REQUIRED_MESSAGE: &str =
    "Two-step login is required for this account but is not set up. Ask your administrator.";
/// "N attempts left" is shown when this many or fewer remain before a lockout.
const ATTEMPTS_LEFT_SHOWN: u32 = 3;

/// An answer as typed; wiped on drop.
pub type Answer = Zeroizing<Vec<u8>>;

/// The application's side of the dialogue. A failure ends the flow with
/// [`Verdict::Conversation`]; the shell keeps its own failure code for the result.
pub trait Conversation {
    /// Asks `prompt`, with the answer echoed (`visible`) or not.
    fn ask(&mut self, prompt: &str, visible: bool) -> Result<Answer, ConvError>;
    /// Shows an informational line.
    fn info(&mut self, text: &str) -> Result<(), ConvError>;
    /// Shows an error line.
    fn error(&mut self, text: &str) -> Result<(), ConvError>;
}

/// A failed conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvError;

/// Mails an emailed code (the PAM module: through the root-owned helper).
pub trait Mailer {
    fn send(&self, request: &email::Request) -> Result<(), email::SendError>;
}

/// How a flow ends, for the shell to map to its result code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The code (or a policy skip) lets the user in.
    Success,
    /// A code confirmed an enrollment at login, waiting under this id for [`commit`]: the
    /// shell keeps the id for pam_setcred, then lets the user in.
    Enrolled(PendingId),
    /// Nothing to decide (unenrolled and allowed; one-prompt split).
    Ignore,
    /// Refused: wrong code, locked, not enrolled and denied, ...
    Refused,
    /// A system error (logged): fail closed.
    Unavailable,
    /// The service file is wrong (logged).
    ServiceError,
    /// pam_setcred could not store the enrollment (logged).
    CredError,
    /// The conversation failed (logged).
    Conversation,
}

/// One login as the dialogue sees it.
pub struct Session<'a, B: Backend> {
    pub config: &'a Config,
    pub store: &'a B,
    /// The canonical name after [`resolve_user`]; as typed before.
    pub user: String,
    pub service: String,
    /// PAM_RHOST, empty for local logins.
    pub rhost: String,
    /// PAM_SILENT: no informational messages.
    pub quiet: bool,
    pub conv: &'a mut dyn Conversation,
    pub log: &'a mut dyn Sink,
    pub clock: &'a dyn Clock,
    pub dir: &'a dyn Directory,
    pub mailer: &'a dyn Mailer,
}

impl<B: Backend> std::fmt::Debug for Session<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("service", &self.service)
            .field("rhost", &self.rhost)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Session<'_, B> {
    pub fn attempt(&self) -> Attempt<'_> {
        Attempt {
            user: &self.user,
            service: &self.service,
            rhost: &self.rhost,
        }
    }

    /// `EVENT user=… service=… rhost=… DETAILS`.
    pub fn log(&mut self, level: Level, event: &str, details: &str) {
        let fields = format!(
            "{} {} {}",
            field("user", &self.user),
            field("service", &self.service),
            field("rhost", &self.rhost)
        );
        let line = if details.is_empty() {
            format!("{event} {fields}")
        } else {
            format!("{event} {fields} {details}")
        };
        self.log.log(level, &line);
    }

    /// An error line for the user; a client that cannot show it does not fail the login.
    fn tell_error(&mut self, text: &str) {
        if !self.quiet {
            let _ = self.conv.error(text);
        }
    }

    fn tell_info(&mut self, text: &str) {
        if !self.quiet {
            let _ = self.conv.info(text);
        }
    }

    /// Logs `error` and fails closed, saying nothing (the account mode never talks).
    pub fn system_error(&mut self, error: &Error) -> Verdict {
        let detail = field("detail", &error.to_string());
        self.log(Level::Error, "error", &format!("refusing login {detail}"));
        Verdict::Unavailable
    }

    /// [`Session::system_error`] in a login that can talk: also one line for the user, so
    /// that a store that is down is not taken for a wrong code.
    pub fn unavailable(&mut self, error: &Error) -> Verdict {
        let verdict = self.system_error(error);
        self.tell_error(UNAVAILABLE_MESSAGE);
        verdict
    }

    fn conversation_failed(&mut self, error: ConvError) -> Verdict {
        self.log(Level::Warning, "auth failure", "reason=conversation-failed");
        let ConvError = error;
        Verdict::Conversation
    }

    fn begin(&self) -> Result<(Begin, B::Seen), Error> {
        login::begin(
            self.store,
            self.config,
            self.dir,
            &self.attempt(),
            self.clock.now(),
        )
    }
}

/// Replaces the typed user name by the directory's canonical one (`Ok`), or ends the login
/// (`Err`): an unknown user follows `unenrolled` unless the policy may enforce them; an
/// ambiguous name or a failed lookup is refused and logged with both names.
pub fn resolve_user<B: Backend>(s: &mut Session<'_, B>) -> Result<(), Verdict> {
    let typed = s.user.clone();
    let store = s.store;
    let resolved = username::canonical(&typed).and_then(|canonical| {
        policy::login_name(&s.config.policy, &typed, canonical, &|u| {
            store.has_record(u)
        })
    });
    match resolved {
        Ok(LoginName::Known { name, aliased }) => {
            if aliased {
                s.log(Level::Info, "user name", &field("canonical", &name));
            }
            s.user = name;
            Ok(())
        }
        Ok(LoginName::Unknown { enforced: true }) => {
            s.log(
                Level::Notice,
                "auth failure",
                "reason=not-enrolled policy=enforced action=deny detail=unknown-user",
            );
            s.tell_error(REQUIRED_MESSAGE);
            Err(Verdict::Refused)
        }
        Ok(LoginName::Unknown { enforced: false }) => match s.config.unenrolled {
            Unenrolled::Allow => {
                s.log(
                    Level::Info,
                    "not enrolled",
                    "action=allow detail=unknown-user",
                );
                Err(Verdict::Ignore)
            }
            Unenrolled::Deny => {
                s.log(
                    Level::Notice,
                    "auth failure",
                    "reason=not-enrolled action=deny detail=unknown-user",
                );
                Err(Verdict::Refused)
            }
        },
        Ok(LoginName::Refused { reason, canonical }) => {
            let details = format!(
                "reason=ambiguous-name {} detail={reason}",
                field("canonical", &canonical)
            );
            s.log(Level::Warning, "auth refused", &details);
            Err(Verdict::Unavailable)
        }
        Err(e) => Err(s.unavailable(&e)),
    }
}

/// The usual flow: the password was checked by the modules above; ask for the code.
pub fn code_prompt<B: Backend>(s: &mut Session<'_, B>) -> Verdict {
    let (decision, seen) = match s.begin() {
        Ok(decided) => decided,
        Err(e) => return s.unavailable(&e),
    };
    match decision {
        Begin::Skip(skip) => skipped(s, skip),
        Begin::NotEnrolled { enforced: false } => not_enrolled(s, "auth failure"),
        Begin::NotEnrolled { enforced: true } => match s.config.policy.on_unenrolled {
            OnUnenrolled::Deny => enforced_without_enrollment(s),
            OnUnenrolled::Enroll => enroll::at_login(s),
        },
        Begin::Locked { until } => locked(s, until),
        Begin::AskCode(ask) => ask_code(s, &ask, seen),
    }
}

/// Asks for the code `ask` says, and checks it.
fn ask_code<B: Backend>(s: &mut Session<'_, B>, ask: &Ask, seen: B::Seen) -> Verdict {
    let (prompt, email_to) = match ask {
        Ask::Totp => (PROMPT, None),
        Ask::TotpOrEmail { masked } => (FALLBACK_PROMPT, Some(masked)),
        Ask::Email { masked } => return emailed_code(s, masked, EMERGENCY_PROMPT, seen),
    };
    let answer = match s.conv.ask(prompt, false) {
        Ok(answer) => answer,
        Err(e) => return s.conversation_failed(e),
    };
    if let Some(masked) = email_to {
        if answer.trim_ascii().eq_ignore_ascii_case(b"email") {
            return emailed_code(s, masked, PROMPT, seen);
        }
    }
    check(s, &answer, seen)
}

/// Checks a typed code and ends the login. The clock is read now, after the answer: the code
/// was read off the phone just before it was typed, not when the prompt appeared.
fn check<B: Backend>(s: &mut Session<'_, B>, typed: &[u8], seen: B::Seen) -> Verdict {
    let now = s.clock.now();
    let outcome = login::verify(s.store, s.config, &s.attempt(), typed, now, seen);
    finish(s, outcome)
}

/// Mails a code (within the send limits) and asks for it. When the mail cannot be sent, asks
/// `otherwise` instead, so an emergency code (or the app) still works.
fn emailed_code<B: Backend>(
    s: &mut Session<'_, B>,
    masked: &str,
    otherwise: &str,
    seen: B::Seen,
) -> Verdict {
    let now = s.clock.now();
    let issued = login::issue_email_code(s.store, s.config, &s.attempt(), now, seen);
    let mut prompt = format!("Code sent to {masked}: ");
    match issued {
        Err(e) => return s.unavailable(&e),
        Ok(EmailIssue::NotEnrolled) => {
            s.log(Level::Notice, "auth failure", "reason=enrollment-removed");
            return Verdict::Refused;
        }
        Ok(EmailIssue::Locked { until }) => return locked(s, until),
        Ok(EmailIssue::Limited) => {
            s.log(Level::Notice, "email refused", "reason=send-limit");
            s.tell_error(SEND_LIMITED);
            return Verdict::Refused;
        }
        Ok(EmailIssue::Pending) => {
            s.log(
                Level::Info,
                "email not sent",
                "reason=send-limit detail=code-pending",
            );
        }
        Ok(EmailIssue::Send(request)) => match s.mailer.send(&request) {
            Ok(()) => s.log(Level::Info, "email sent", ""),
            Err(e) => {
                let reason = field("reason", &e.to_string());
                s.log(Level::Warning, "email failure", &reason);
                if let Err(e) = login::email_not_sent(s.store, &s.attempt(), &request) {
                    return s.unavailable(&e);
                }
                s.tell_error(SEND_FAILED);
                prompt = otherwise.to_string();
            }
        },
    }
    let answer = match s.conv.ask(&prompt, false) {
        Ok(answer) => answer,
        Err(e) => return s.conversation_failed(e),
    };
    // The record was just written: nothing seen before is current.
    check(s, &answer, B::Seen::default())
}

fn finish<B: Backend>(s: &mut Session<'_, B>, outcome: Result<Outcome, Error>) -> Verdict {
    match outcome {
        Err(e) => s.unavailable(&e),
        Ok(Outcome::Accepted(accepted)) => success(s, accepted),
        Ok(Outcome::Rejected {
            why,
            locked,
            attempts_left: left,
        }) => {
            s.log(
                Level::Notice,
                "auth failure",
                &format!("reason={}", reason(why)),
            );
            if why == Rejected::Replay {
                s.tell_error(REPLAY_MESSAGE);
            }
            match locked {
                Some(scope) => lockout(s, scope),
                None if why != Rejected::Empty => attempts_left(s, left),
                None => {}
            }
            Verdict::Refused
        }
        Ok(Outcome::Locked { until }) => locked(s, until),
        Ok(Outcome::NotEnrolled) => {
            // Reset while the prompt was open: the code typed belongs to no enrollment.
            s.log(Level::Notice, "auth failure", "reason=enrollment-removed");
            Verdict::Refused
        }
    }
}

/// This failure locked the user out (`scope`): log it and say so.
fn lockout<B: Backend>(s: &mut Session<'_, B>, scope: Locked) {
    let lockout = &s.config.lockout;
    let (scope, failures) = match scope {
        Locked::Host => ("host", lockout.max_failures),
        Locked::User => ("user", lockout.max_failures_user),
    };
    let duration = lockout.duration_secs;
    let details = format!("scope={scope} failures={failures} duration={duration}s");
    s.log(Level::Warning, "lockout", &details);
    s.tell_error(LOCKED_MESSAGE);
    s.tell_error(&try_again_in(duration));
}

/// Few attempts left: say so, so that a user who mistypes stops before the lockout. `left`
/// comes from the login state this failure wrote ([`Outcome::Rejected`]).
fn attempts_left<B: Backend>(s: &mut Session<'_, B>, left: u32) {
    if (1..=ATTEMPTS_LEFT_SHOWN).contains(&left) {
        let minutes = s.config.lockout.duration_secs.div_ceil(60);
        let noun = if left == 1 { "attempt" } else { "attempts" };
        s.tell_error(&format!(
            "{left} {noun} left before a {minutes}-minute lockout."
        ));
    }
}

fn success<B: Backend>(s: &mut Session<'_, B>, accepted: Accepted) -> Verdict {
    match accepted {
        Accepted::Totp => s.log(Level::Info, "auth success", "method=totp"),
        Accepted::Email => s.log(Level::Info, "auth success", "method=email"),
        Accepted::Emergency { remaining } => {
            s.log(
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
            s.tell_info(&note);
        }
    }
    Verdict::Success
}

fn skipped<B: Backend>(s: &mut Session<'_, B>, skip: Skip) -> Verdict {
    s.log(
        Level::Info,
        "auth skipped",
        &format!("reason={}", skip.reason()),
    );
    Verdict::Success
}

fn locked<B: Backend>(s: &mut Session<'_, B>, until: u64) -> Verdict {
    s.log(
        Level::Notice,
        "auth refused",
        &format!("reason=locked until={until}"),
    );
    s.tell_error(LOCKED_MESSAGE);
    let left = until.saturating_sub(s.clock.now());
    s.tell_error(&try_again_in(left));
    Verdict::Refused
}

/// When a lockout ends, as the user reads it: relative, so no time zone is involved.
fn try_again_in(secs: u64) -> String {
    match secs.div_ceil(60) {
        0 | 1 => "Try again in a minute.".to_string(),
        minutes => format!("Try again in {minutes} minutes."),
    }
}

/// A user without a record whom the policy does not enforce: as `unenrolled` says. `refused`
/// is the event a refusal is logged as (`auth failure`, `account refused`).
fn not_enrolled<B: Backend>(s: &mut Session<'_, B>, refused: &str) -> Verdict {
    match s.config.unenrolled {
        Unenrolled::Allow => {
            s.log(Level::Info, "not enrolled", "action=allow");
            Verdict::Ignore
        }
        Unenrolled::Deny => {
            s.log(Level::Notice, refused, "reason=not-enrolled action=deny");
            Verdict::Refused
        }
    }
}

fn enforced_without_enrollment<B: Backend>(s: &mut Session<'_, B>) -> Verdict {
    s.log(
        Level::Notice,
        "auth failure",
        "reason=not-enrolled policy=enforced action=deny",
    );
    s.tell_error(REQUIRED_MESSAGE);
    Verdict::Refused
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

/// What one-prompt mode's split line found, for the verify line after the password module.
#[derive(Debug)]
pub enum Kept {
    /// No code expected (trusted network, grace period): the whole answer was the password.
    Skip(Skip),
    /// No record, and the policy does not enforce the user.
    NotEnrolled,
    /// The code part of the answer, to check once the password has been.
    Code(Answer),
}

/// How the split line ends.
#[derive(Debug)]
pub enum SplitEnd {
    /// Refused at once (locked, enforced without enrollment, emailed codes), or a failure.
    Decided(Verdict),
    /// Hand `password` on as PAM_AUTHTOK, keep `kept` for [`verify`], and return PAM_IGNORE:
    /// nothing is decided before the password is checked.
    HandOn { password: Answer, kept: Kept },
}

/// One-prompt mode, first line (before the password module): splits `token` (PAM_AUTHTOK set
/// by an earlier module, else asked for) into password and code. Checks no code and counts no
/// failure: a stranger without the password must not be able to lock the user out.
pub fn split<B: Backend>(s: &mut Session<'_, B>, token: Option<Answer>) -> SplitEnd {
    let token = match token {
        Some(token) => token,
        None => match s.conv.ask(COMBINED_PROMPT, false) {
            Ok(answer) => answer,
            Err(e) => return SplitEnd::Decided(s.conversation_failed(e)),
        },
    };
    let (decision, seen) = match s.begin() {
        Ok(decided) => decided,
        Err(e) => return SplitEnd::Decided(s.unavailable(&e)),
    };
    let (password, kept) = match decision {
        Begin::Skip(skip) => (token, Kept::Skip(skip)),
        Begin::NotEnrolled { enforced: false } => (token, Kept::NotEnrolled),
        Begin::NotEnrolled { enforced: true } => {
            if s.config.policy.on_unenrolled == OnUnenrolled::Enroll {
                s.log(
                    Level::Notice,
                    "auth failure",
                    "reason=not-enrolled detail=cannot-enroll-in-one-prompt-mode",
                );
                s.tell_error(REQUIRED_MESSAGE);
                return SplitEnd::Decided(Verdict::Refused);
            }
            return SplitEnd::Decided(enforced_without_enrollment(s));
        }
        Begin::Locked { until } => return SplitEnd::Decided(locked(s, until)),
        Begin::AskCode(Ask::Email { .. }) => {
            // A mailed code cannot be typed in the same answer as the password.
            s.log(
                Level::Notice,
                "auth failure",
                "reason=email-method-in-one-prompt-mode",
            );
            return SplitEnd::Decided(Verdict::Refused);
        }
        Begin::AskCode(_) => {
            let digits = seen
                .record()
                .and_then(|record| record.totp.as_ref())
                .map_or(s.config.totp.digits, |totp| totp.digits);
            let parts = combined::split(&token, digits);
            (parts.password, Kept::Code(parts.code))
        }
    };
    SplitEnd::HandOn { password, kept }
}

/// One-prompt mode, second line (after the password module): the verdict the split line left
/// open. `kept` is `None` when no split line ran before (for this user).
pub fn verify<B: Backend>(s: &mut Session<'_, B>, kept: Option<Kept>) -> Verdict {
    let Some(kept) = kept else {
        s.log(
            Level::Error,
            "error",
            "combined=verify found nothing from a combined=split line before it (for this \
             user): check the PAM service (docs/pam.md)",
        );
        return Verdict::ServiceError;
    };
    match kept {
        Kept::Skip(skip) => skipped(s, skip),
        Kept::NotEnrolled => not_enrolled(s, "auth failure"),
        Kept::Code(code) => check(s, &code, B::Seen::default()),
    }
}

/// pam_setcred: stores the enrollment `id` (as the shell carried it) that a code confirmed in
/// pam_authenticate, now that the whole auth stack has succeeded.
pub fn commit<B: Backend>(s: &mut Session<'_, B>, id: &str) -> Verdict {
    let Some(id) = PendingId::parse(id) else {
        s.log(Level::Error, "error", "malformed enrollment id");
        return Verdict::CredError;
    };
    match login::commit_enrollment(s.store, &s.user, &id, s.clock.now()) {
        Ok(Commit::Enrolled) => {
            s.log(Level::Notice, "enrolled at login", "method=totp");
            Verdict::Success
        }
        Ok(Commit::Missing) => {
            s.log(
                Level::Warning,
                "enrollment not stored",
                "reason=expired-or-missing",
            );
            Verdict::CredError
        }
        Ok(Commit::AlreadyEnrolled) => {
            s.log(
                Level::Notice,
                "enrollment not stored",
                "reason=enrolled-meanwhile",
            );
            Verdict::CredError
        }
        Err(e) => {
            s.unavailable(&e);
            Verdict::CredError
        }
    }
}

#[cfg(test)]
mod tests;
