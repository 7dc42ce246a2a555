//! `pam_sm_setcred`: where an enrollment confirmed at login becomes the user's. Applications
//! call it only after `pam_authenticate` succeeded for the whole stack, so an enrollment
//! confirmed after a wrong password (a `required` password line goes on to the next module)
//! is never stored.

use std::ffi::CStr;

use pam::constants::{PAM_DELETE_CRED, PAM_REFRESH_CRED, PamFlag, PamResultCode};
use pam::module::PamHandle;
use twostep_common::audit::Level;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::login::{self, Commit, PendingId};

use crate::authenticate::Login;
use crate::enroll::ENROLLMENT_ENV;
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
    let (mut login, _, store) = match Login::start(pamh, raw_args, flags) {
        Ok(started) => started,
        // Logged; a failure here must not let the login go on without its enrollment.
        Err(_) => return PamResultCode::PAM_CRED_ERR,
    };
    let Some(id) = PendingId::parse(&id) else {
        login.log(
            Level::Error,
            "error",
            "malformed enrollment id in the PAM environment",
        );
        return PamResultCode::PAM_CRED_ERR;
    };
    let committed = login::commit_enrollment(&store, &login.user, &id, SystemClock.now());
    match committed {
        Ok(Commit::Enrolled) => {
            login.log(Level::Notice, "enrolled at login", "method=totp");
            PamResultCode::PAM_SUCCESS
        }
        Ok(Commit::Missing) => {
            login.log(
                Level::Warning,
                "enrollment not stored",
                "reason=expired-or-missing",
            );
            PamResultCode::PAM_CRED_ERR
        }
        Ok(Commit::AlreadyEnrolled) => {
            login.log(
                Level::Notice,
                "enrollment not stored",
                "reason=enrolled-meanwhile",
            );
            PamResultCode::PAM_CRED_ERR
        }
        Err(e) => {
            login.system_error(&e);
            PamResultCode::PAM_CRED_ERR
        }
    }
}
