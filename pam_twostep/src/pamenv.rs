//! The PAM environment (`pam_getenv`, `pam_putenv`), which pam-bindings does not wrap. It
//! carries the id of an enrollment confirmed in `pam_authenticate` to `pam_setcred`. PAM data
//! (`pam_set_data`) would not do: OpenSSH runs `pam_authenticate` in a forked child and
//! `pam_setcred` in the parent, and copies only the PAM environment across.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use pam::constants::PamResultCode;
use pam::module::PamHandle;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_getenv(pamh: *mut c_void, name: *const c_char) -> *const c_char;
    fn pam_putenv(pamh: *mut c_void, name_value: *const c_char) -> c_int;
}

/// The value of `name` in the PAM environment, if set and valid UTF-8.
pub fn get(pamh: &mut PamHandle, name: &str) -> Option<String> {
    let name = CString::new(name).ok()?;
    let handle: *mut PamHandle = pamh;
    // SAFETY: `handle` is the live handle libpam passed to this hook and `name` a
    // NUL-terminated string; the result is null or points into libpam's environment, valid
    // until the next pam_putenv, and is copied before that.
    let value = unsafe { pam_getenv(handle.cast(), name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: non-null results of pam_getenv are NUL-terminated strings (see above).
    let value = unsafe { CStr::from_ptr(value) };
    value.to_str().ok().map(str::to_string)
}

/// Sets `name=value`, or removes `name` when `value` is `None`.
pub fn set(pamh: &mut PamHandle, name: &str, value: Option<&str>) -> Result<(), PamResultCode> {
    let entry = match value {
        Some(value) => format!("{name}={value}"),
        None => name.to_string(),
    };
    let entry = CString::new(entry).map_err(|_| PamResultCode::PAM_BUF_ERR)?;
    let handle: *mut PamHandle = pamh;
    // SAFETY: `handle` is the live handle libpam passed to this hook; pam_putenv copies the
    // NUL-terminated string.
    let rc = unsafe { pam_putenv(handle.cast(), entry.as_ptr()) };
    // Removing a name that is not set is PAM_BAD_ITEM: nothing to remove is not a failure.
    if rc == PamResultCode::PAM_SUCCESS as c_int
        || (value.is_none() && rc == PamResultCode::PAM_BAD_ITEM as c_int)
    {
        Ok(())
    } else {
        Err(PamResultCode::PAM_SYSTEM_ERR)
    }
}
