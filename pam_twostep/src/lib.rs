//! pam_twostep.so: the PAM shell around twostep's core. It reads PAM items, talks through the
//! conversation, maps outcomes to PAM codes and logs. Every decision is made in
//! `twostep_common::login`.
//!
//! Rules kept here: every path starts from failure; PAM_SUCCESS only for an accepted code (in
//! the account stack: an open gate or a trusted address); PAM_IGNORE only for "no record and
//! the admin allows that"; panics are caught by
//! `pam_hooks!` and become PAM_ABORT.

mod account;
mod authenticate;
mod authtok;
mod one_prompt;
mod pamenv;
mod setcred;

use std::ffi::CStr;

use pam::constants::{PamFlag, PamResultCode};
use pam::module::{PamHandle, PamHooks};

struct TwoStep;
pam::pam_hooks!(TwoStep);

impl PamHooks for TwoStep {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        authenticate::run(pamh, &args, flags)
    }

    /// Stores an enrollment confirmed at login, now that the whole auth stack succeeded.
    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        setcred::run(pamh, &args, flags)
    }

    /// The gate for services that cannot prompt (Samba): a recent two-step login of this
    /// user from the same address.
    fn acct_mgmt(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        account::run(pamh, &args, flags)
    }

    fn sm_chauthtok(_: &mut PamHandle, args: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        authenticate::misplaced("password", &args)
    }

    fn sm_open_session(_: &mut PamHandle, args: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        authenticate::misplaced("session", &args)
    }

    fn sm_close_session(_: &mut PamHandle, args: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        authenticate::misplaced("session", &args)
    }
}
