//! The libpam calls of one login, timed: pam_start, pam_authenticate, pam_end (through the
//! testkit's `pam_client`, shared with pam-drive), and the cost of loading a module.

use std::ffi::{CStr, CString, c_int};
use std::time::{Duration, Instant};

pub use twostep_testkit::pam_client::PAM_SUCCESS;
use twostep_testkit::pam_client::{self, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, Reply};

/// One login's result and timings.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub rc: c_int,
    /// pam_authenticate alone.
    pub auth: Duration,
    /// pam_start through pam_end (module loading and unloading included).
    pub cycle: Duration,
}

/// Runs pam_start, pam_authenticate, pam_end for `user` on `service`, answering every prompt
/// with `answer`.
pub fn login(service: &CStr, user: &CStr, answer: &[u8]) -> Timed {
    let converse = |style: c_int, _text: &[u8]| match style {
        PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => Reply::Answer(answer.to_vec()),
        _ => Reply::Nothing,
    };
    let outcome = pam_client::login(service, user, None, false, &converse);
    Timed {
        rc: outcome.rc,
        auth: outcome.auth,
        cycle: outcome.cycle,
    }
}

/// Time to dlopen (RTLD_NOW) and dlclose `path` once in this process.
pub fn dlopen_once(path: &CStr) -> Result<Duration, String> {
    let start = Instant::now();
    // SAFETY: path is NUL-terminated; the handle is closed below and nothing from the library
    // is called.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns null or a NUL-terminated string owned by libc.
        let err = unsafe { libc::dlerror() };
        let text = if err.is_null() {
            String::from("unknown error")
        } else {
            // SAFETY: non-null dlerror results are NUL-terminated strings.
            unsafe { CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(text);
    }
    // SAFETY: handle came from dlopen and is closed once.
    unsafe { libc::dlclose(handle) };
    Ok(start.elapsed())
}

pub fn cstring(text: &str) -> CString {
    CString::new(text).expect("no NUL in names")
}
