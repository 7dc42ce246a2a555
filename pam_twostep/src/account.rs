//! `account required pam_twostep.so`: the gate for services that cannot prompt (Samba).
//! Talks to nobody: no conversation is attempted, the user name is PAM_USER as set, and every
//! result but the gate's "open" (PAM_SUCCESS) and "unenrolled, allowed" (PAM_IGNORE) is
//! PAM_PERM_DENIED, the account stack's refusal.

use std::ffi::CStr;

use pam::constants::{PamFlag, PamResultCode};
use pam::module::PamHandle;
use twostep_common::audit::{Level, Sink};
use twostep_common::dialogue::{self, Answer, ConvError, Conversation, Verdict};
use twostep_common::module_args::Mode;

use crate::authenticate::{Shell, UserItem};

/// A conversation that is never there: the account mode must work for applications that
/// give none (and must not talk to those that do).
struct Nobody;

impl Conversation for Nobody {
    fn ask(&mut self, _: &str, _: bool) -> Result<Answer, ConvError> {
        Err(ConvError)
    }

    fn info(&mut self, _: &str) -> Result<(), ConvError> {
        Err(ConvError)
    }

    fn error(&mut self, _: &str) -> Result<(), ConvError> {
        Err(ConvError)
    }
}

pub fn run(pamh: &mut PamHandle, raw_args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let (mut shell, args) = match Shell::start_as(pamh, raw_args, flags, UserItem::MustBeSet) {
        Ok(started) => started,
        Err(_) => return PamResultCode::PAM_PERM_DENIED,
    };
    if args.mode != Mode::Code {
        shell.log.log(
            Level::Error,
            "configuration error in the PAM service file: combined= has no meaning in the \
             account stack: refusing",
        );
        return PamResultCode::PAM_PERM_DENIED;
    }
    let mut nobody = Nobody;
    let mut session = shell.session(&mut nobody);
    session.quiet = true;
    let verdict = match dialogue::resolve_user(&mut session) {
        Ok(()) => dialogue::account(&mut session),
        Err(verdict) => verdict,
    };
    match verdict {
        Verdict::Success => PamResultCode::PAM_SUCCESS,
        Verdict::Ignore => PamResultCode::PAM_IGNORE,
        _ => PamResultCode::PAM_PERM_DENIED,
    }
}
