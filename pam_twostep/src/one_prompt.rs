//! One-prompt mode, for services that show a single password field (web forms, FTP, VPN,
//! mail): the user types the password immediately followed by the code. Two lines share the
//! work, so that nobody without the password can make a code count:
//!
//! ```text
//! auth required  pam_twostep.so combined=split    # splits the answer, checks nothing
//! auth requisite pam_unix.so use_first_pass        # the password; a wrong one ends the stack
//! auth required  pam_twostep.so combined=verify   # checks the code, counts a failure
//! ```
//!
//! [`split`] hands the password on as PAM_AUTHTOK and keeps the code (or what the login
//! needs instead) in PAM data for [`verify`]. It returns PAM_IGNORE, which decides nothing on
//! any control, or a refusal for a user who is locked out or cannot log in this way. A split
//! line without a verify line after it would check the password alone, and nothing the split
//! line can do at run time prevents that (libpam even ignores its pam_setcred result, because
//! its pam_authenticate returned PAM_IGNORE): `twostep doctor` fails such a service.

use std::cell::RefCell;

use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PamResultCode};
use pam::module::PamHandle;
use twostep_common::audit::Level;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::combined;
use twostep_common::config::OnUnenrolled;
use twostep_common::login::{self, Ask, Begin};
use twostep_common::policy::Skip;
use twostep_common::store::Store;
use zeroize::Zeroizing;

use crate::authenticate::{
    Login, REQUIRED_MESSAGE, conversation_failed, decide, enforced_without_enrollment, finish,
    locked, not_enrolled, skipped,
};
use crate::authtok;

const COMBINED_PROMPT: &str = "Password and verification code: ";
/// The PAM data key of what `split` left for `verify`; only this module uses it, always with
/// the type [`Kept`].
const DATA_KEY: &str = "pam_twostep.one_prompt";

/// What `split` found, for `verify`.
#[derive(Debug)]
enum Split {
    /// No code expected (trusted network, grace period): the whole answer was the password.
    Skip(Skip),
    /// No record, and the policy does not enforce the user.
    NotEnrolled,
    /// The code part of the answer, to check once the password has been.
    Code(Zeroizing<Vec<u8>>),
}

/// PAM data: the user `split` ran for and what it found; `None` once `verify` took it.
#[derive(Debug)]
struct Kept {
    user: String,
    split: RefCell<Option<Split>>,
}

/// The first line, before the password module.
pub fn split(login: &mut Login<'_>, store: &Store) -> PamResultCode {
    let token = match authtok::current(login.pamh) {
        Some(token) => token,
        None => match login.ask(PAM_PROMPT_ECHO_OFF, COMBINED_PROMPT) {
            Ok(answer) => Zeroizing::new(
                answer
                    .as_ref()
                    .map_or(Vec::new(), |a| a.as_bytes().to_vec()),
            ),
            Err(code) => return conversation_failed(login, code),
        },
    };
    let (decision, seen) = match decide(login, store) {
        Ok(decided) => decided,
        Err(e) => return login.system_error(&e),
    };
    let (password, found) = match decision {
        Begin::Skip(skip) => (token, Split::Skip(skip)),
        Begin::NotEnrolled { enforced: false } => (token, Split::NotEnrolled),
        Begin::NotEnrolled { enforced: true } => {
            if login.config.policy.on_unenrolled == OnUnenrolled::Enroll {
                login.log(
                    Level::Notice,
                    "auth failure",
                    "reason=not-enrolled detail=cannot-enroll-in-one-prompt-mode",
                );
                login.tell(PAM_ERROR_MSG, REQUIRED_MESSAGE);
                return PamResultCode::PAM_AUTH_ERR;
            }
            return enforced_without_enrollment(login);
        }
        Begin::Locked { until } => return locked(login, until),
        Begin::AskCode(Ask::Email { .. }) => {
            // A mailed code cannot be typed in the same answer as the password.
            login.log(
                Level::Notice,
                "auth failure",
                "reason=email-method-in-one-prompt-mode",
            );
            return PamResultCode::PAM_AUTH_ERR;
        }
        Begin::AskCode(_) => {
            let digits = seen
                .record()
                .and_then(|record| record.totp.as_ref())
                .map_or(login.config.totp.digits, |totp| totp.digits);
            let parts = combined::split(&token, digits);
            (parts.password, Split::Code(parts.code))
        }
    };
    if let Err(code) = authtok::set(login.pamh, &password) {
        login.log(Level::Error, "error", "cannot hand the password on");
        return code;
    }
    let kept = Kept {
        user: login.user.clone(),
        split: RefCell::new(Some(found)),
    };
    if login.pamh.set_data(DATA_KEY, Box::new(kept)).is_err() {
        login.log(
            Level::Error,
            "error",
            "cannot keep the code for combined=verify",
        );
        return PamResultCode::PAM_SYSTEM_ERR;
    }
    PamResultCode::PAM_IGNORE
}

/// The second line, after the password module: the verdict `split` left open.
pub fn verify(login: &mut Login<'_>, store: &Store) -> PamResultCode {
    let Some(found) = take(login.pamh, &login.user) else {
        login.log(
            Level::Error,
            "error",
            "combined=verify found nothing from a combined=split line before it (for this \
             user): check the PAM service (docs/pam.md)",
        );
        return PamResultCode::PAM_SERVICE_ERR;
    };
    match found {
        Split::Skip(skip) => skipped(login, skip),
        Split::NotEnrolled => not_enrolled(login),
        Split::Code(code) => {
            let outcome = login::verify(
                store,
                &login.config,
                &login.attempt(),
                &code,
                SystemClock.now(),
                Default::default(),
            );
            finish(login, outcome)
        }
    }
}

/// Takes what `split` kept for `user` (a different PAM_USER since then gets nothing).
fn take(pamh: &PamHandle, user: &str) -> Option<Split> {
    let kept = kept(pamh)?;
    let found = kept.split.borrow_mut().take()?;
    (kept.user == user).then_some(found)
}

fn kept(pamh: &PamHandle) -> Option<&Kept> {
    // SAFETY: DATA_KEY is this module's own key, and `split` is the only place that sets it,
    // always to a `Box<Kept>`; libpam keeps the data until pam_end, after the hooks return.
    unsafe { pamh.get_data::<Kept>(DATA_KEY) }.ok()
}
