//! The libpam calls of one login, timed: pam_start, pam_authenticate, pam_end. The conversation
//! answers every prompt with the current answer.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_FAIL_DELAY: c_int = 10;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_MAX_NUM_MSG: c_int = 32;

/// What the conversation answers to every prompt.
static ANSWER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
}

/// One login's result and timings.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub rc: c_int,
    /// pam_authenticate alone.
    pub auth: Duration,
    /// pam_start through pam_end (module loading and unloading included).
    pub cycle: Duration,
}

/// Runs pam_start, pam_authenticate, pam_end for `user` on `service`, answering `answer`.
pub fn login(service: &CStr, user: &CStr, answer: &[u8]) -> Timed {
    {
        let mut slot = ANSWER.lock().unwrap_or_else(|e| e.into_inner());
        slot.clear();
        slot.extend_from_slice(answer);
    }
    let conv = PamConv {
        conv: converse,
        appdata_ptr: std::ptr::null_mut(),
    };
    let mut pamh: *mut PamHandle = std::ptr::null_mut();
    let start = Instant::now();
    // SAFETY: service and user are NUL-terminated and conv a valid pam_conv; all outlive the
    // handle, which is ended below.
    let rc = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut pamh) };
    if rc != PAM_SUCCESS {
        if !pamh.is_null() {
            // SAFETY: pamh came from pam_start and is ended once.
            unsafe { pam_end(pamh, rc) };
        }
        return Timed {
            rc,
            auth: Duration::ZERO,
            cycle: start.elapsed(),
        };
    }
    let delay: extern "C" fn(c_int, c_uint, *mut c_void) = no_fail_delay;
    // SAFETY: PAM_FAIL_DELAY takes the function pointer itself as the item.
    unsafe { pam_set_item(pamh, PAM_FAIL_DELAY, delay as *const c_void) };
    let auth_start = Instant::now();
    // SAFETY: pamh is the live handle from pam_start.
    let rc = unsafe { pam_authenticate(pamh, 0) };
    let auth = auth_start.elapsed();
    // SAFETY: pamh is the live handle from pam_start; not used afterwards.
    unsafe { pam_end(pamh, rc) };
    Timed {
        rc,
        auth,
        cycle: start.elapsed(),
    }
}

/// libpam's failure delay would sleep after every refused login; the bench measures the work.
extern "C" fn no_fail_delay(_status: c_int, _usec: c_uint, _appdata: *mut c_void) {}

/// Answers prompts with `ANSWER`; informational messages get no answer.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    _appdata: *mut c_void,
) -> c_int {
    if msg.is_null() || resp.is_null() || !(1..=PAM_MAX_NUM_MSG).contains(&num_msg) {
        return PAM_CONV_ERR;
    }
    let count = num_msg as usize;
    // SAFETY: calloc of `count` zeroed responses; libpam frees them with free().
    let replies = unsafe { libc::calloc(count, size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes an array of `num_msg` pointers to valid messages.
        let style = unsafe { (**msg.add(i)).msg_style };
        if style != PAM_PROMPT_ECHO_OFF && style != PAM_PROMPT_ECHO_ON {
            continue;
        }
        let answer = ANSWER.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: malloc of answer.len() + 1 bytes for the string and its NUL.
        let copy = unsafe { libc::malloc(answer.len() + 1) }.cast::<u8>();
        if copy.is_null() {
            return PAM_BUF_ERR;
        }
        // SAFETY: copy has room for answer.len() + 1 bytes and does not overlap answer; i is
        // inside the calloc'ed array.
        unsafe {
            std::ptr::copy_nonoverlapping(answer.as_ptr(), copy, answer.len());
            *copy.add(answer.len()) = 0;
            (*replies.add(i)).resp = copy.cast();
        }
    }
    // SAFETY: resp is non-null (checked) and points to the caller's result slot.
    unsafe { *resp = replies };
    PAM_SUCCESS
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
