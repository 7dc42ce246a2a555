//! `pam_sm_setcred`: where an enrollment confirmed at login becomes the user's
//! ([`dialogue::commit`]). Applications call it only after `pam_authenticate` succeeded for
//! the whole stack, so an enrollment confirmed after a wrong password (a `required` password
//! line goes on to the next module) is never stored.

use std::ffi::CStr;

use pam::constants::{PAM_DELETE_CRED, PAM_REFRESH_CRED, PamFlag, PamResultCode};
use pam::module::PamHandle;
use twostep_common::dialogue::{self, Verdict};

use crate::authenticate::{ENROLLMENT_ENV, Shell, in_session};
use crate::pamenv;

pub fn run(pamh: &mut PamHandle, raw_args: &[&CStr], flags: PamFlag) -> PamResultCode {
    // Deleting or refreshing credentials comes after a login; nothing of ours to do then.
    if flags & (PAM_DELETE_CRED | PAM_REFRESH_CRED) != 0 {
        return PamResultCode::PAM_SUCCESS;
    }
    let Some(id) = pamenv::get(pamh, ENROLLMENT_ENV) else {
        return PamResultCode::PAM_SUCCESS;
    };
    // Taken once, whatever happens next, and kept out of the session's environment.
    if let Err(code) = pamenv::set(pamh, ENROLLMENT_ENV, None) {
        return code;
    }
    // Any failure here (logged) must not let the login go on without its enrollment.
    let Ok((mut shell, _)) = Shell::start(pamh, raw_args, flags) else {
        return PamResultCode::PAM_CRED_ERR;
    };
    match in_session(&mut shell, pamh, |s| dialogue::commit(s, &id)) {
        Ok((Verdict::Success, _)) => PamResultCode::PAM_SUCCESS,
        _ => PamResultCode::PAM_CRED_ERR,
    }
}
