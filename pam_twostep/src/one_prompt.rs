//! One-prompt mode's two lines, around the password module (docs/pam.md):
//!
//! ```text
//! auth required  pam_twostep.so combined=split    # splits the answer, checks nothing
//! auth requisite pam_unix.so use_first_pass        # the password; a wrong one ends the stack
//! auth required  pam_twostep.so combined=verify   # checks the code, counts a failure
//! ```
//!
//! The dialogue decides ([`dialogue::split`], [`dialogue::verify`]); this shell hands the
//! password on as PAM_AUTHTOK and carries what the split line found to the verify line in PAM
//! data. A split line without a verify line after it would check the password alone, and
//! nothing the split line can do at run time prevents that (libpam even ignores its
//! pam_setcred result, because its pam_authenticate returned PAM_IGNORE): `twostep doctor`
//! fails such a service.

use std::cell::RefCell;

use pam::constants::PamResultCode;
use pam::module::PamHandle;
use twostep_common::audit::{Level, Sink};
use twostep_common::dialogue::{self, Kept, SplitEnd};

use crate::authenticate::{Shell, in_session, pam_code};
use crate::authtok;

/// The PAM data key of what `split` left for `verify`; only this module uses it, always with
/// the type [`Carried`].
const DATA_KEY: &str = "pam_twostep.one_prompt";

/// PAM data: the user the split line ran for and what it found; `None` once taken.
#[derive(Debug)]
struct Carried {
    user: String,
    kept: RefCell<Option<Kept>>,
}

/// The first line, before the password module.
pub fn split(shell: &mut Shell, pamh: &mut PamHandle) -> PamResultCode {
    let token = authtok::current(pamh);
    let ended = in_session(shell, pamh, |s| (dialogue::split(s, token), s.user.clone()));
    let ((end, user), conv_failure) = match ended {
        Ok(done) => done,
        Err(code) => return code,
    };
    let (password, kept) = match end {
        SplitEnd::Decided(verdict) => return pam_code(&verdict, conv_failure),
        SplitEnd::HandOn { password, kept } => (password, kept),
    };
    if let Err(code) = authtok::set(pamh, &password) {
        shell
            .log
            .log(Level::Error, "error: cannot hand the password on");
        return code;
    }
    let carried = Carried {
        user,
        kept: RefCell::new(Some(kept)),
    };
    if pamh.set_data(DATA_KEY, Box::new(carried)).is_err() {
        shell.log.log(
            Level::Error,
            "error: cannot keep the code for combined=verify",
        );
        return PamResultCode::PAM_SYSTEM_ERR;
    }
    PamResultCode::PAM_IGNORE
}

/// The second line, after the password module.
pub fn verify(shell: &mut Shell, pamh: &mut PamHandle) -> PamResultCode {
    let carried = carried(pamh);
    let ended = in_session(shell, pamh, |s| {
        let kept = carried.and_then(|c| take(c, &s.user));
        dialogue::verify(s, kept)
    });
    match ended {
        Ok((verdict, conv_failure)) => pam_code(&verdict, conv_failure),
        Err(code) => code,
    }
}

/// Takes what the split line kept for `user` (a different PAM_USER since then gets nothing).
fn take(carried: &Carried, user: &str) -> Option<Kept> {
    let kept = carried.kept.borrow_mut().take()?;
    (carried.user == user).then_some(kept)
}

fn carried(pamh: &PamHandle) -> Option<&Carried> {
    // SAFETY: DATA_KEY is this module's own key, and `split` is the only place that sets it,
    // always to a `Box<Carried>`; libpam keeps the data until pam_end, after the hooks return.
    unsafe { pamh.get_data::<Carried>(DATA_KEY) }.ok()
}
