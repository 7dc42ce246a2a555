//! Reading and setting PAM_AUTHTOK for one-prompt mode. pam-bindings can read the item but not
//! set it, so setting goes through libpam directly.

use std::ffi::{c_int, c_void};

use pam::constants::PamResultCode;
use pam::items::AuthTok;
use pam::module::PamHandle;
use zeroize::Zeroizing;

/// PAM_AUTHTOK from <security/_pam_types.h>.
const PAM_AUTHTOK: c_int = 6;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
}

/// The token an earlier module or the application already set, if any.
pub fn current(pamh: &PamHandle) -> Option<Zeroizing<Vec<u8>>> {
    match pamh.get_item::<AuthTok>() {
        Ok(Some(tok)) => Some(Zeroizing::new(tok.as_bytes().to_vec())),
        _ => None,
    }
}

/// Hands `password` on to the next modules (`pam_unix use_first_pass`). libpam copies it.
pub fn set(pamh: &mut PamHandle, password: &[u8]) -> Result<(), PamResultCode> {
    // A C string cannot hold NUL; such a password could never have been typed into a prompt.
    if password.contains(&0) {
        return Err(PamResultCode::PAM_AUTH_ERR);
    }
    let mut text = Zeroizing::new(Vec::with_capacity(password.len() + 1));
    text.extend_from_slice(password);
    text.push(0);
    let handle: *mut PamHandle = pamh;
    // SAFETY: `handle` is the live PAM handle libpam passed to this hook; PAM_AUTHTOK takes a
    // NUL-terminated string, which libpam copies (strdup) before returning, so `text` may be
    // wiped and freed afterwards.
    let rc = unsafe { pam_set_item(handle.cast(), PAM_AUTHTOK, text.as_ptr().cast()) };
    if rc == PamResultCode::PAM_SUCCESS as c_int {
        Ok(())
    } else {
        Err(PamResultCode::PAM_SYSTEM_ERR)
    }
}
