//! The application side of libpam for the two programs that drive it: the tests' `pam-drive`
//! and the benchmark `twostep-bench`. One login is pam_start, pam_set_item (the failure delay
//! off, PAM_RHOST), pam_authenticate, pam_setcred after a success (when asked for, as real
//! applications do), pam_end; the conversation calls back into a handler.
//!
//! Used by those executables, not by the test library: both link libpam and define the fake
//! clock next to it (see [`fake_clock`](crate::fake_clock)).

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::time::{Duration, Instant};

pub const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_RHOST: c_int = 4;
const PAM_FAIL_DELAY: c_int = 10;
const PAM_ESTABLISH_CRED: c_int = 0x0002;
pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;
const PAM_MAX_NUM_MSG: c_int = 32;

/// Linux-PAM return codes, indexed by value (`_pam_types.h`).
const CODE_NAMES: [&str; 32] = [
    "PAM_SUCCESS",
    "PAM_OPEN_ERR",
    "PAM_SYMBOL_ERR",
    "PAM_SERVICE_ERR",
    "PAM_SYSTEM_ERR",
    "PAM_BUF_ERR",
    "PAM_PERM_DENIED",
    "PAM_AUTH_ERR",
    "PAM_CRED_INSUFFICIENT",
    "PAM_AUTHINFO_UNAVAIL",
    "PAM_USER_UNKNOWN",
    "PAM_MAXTRIES",
    "PAM_NEW_AUTHTOK_REQD",
    "PAM_ACCT_EXPIRED",
    "PAM_SESSION_ERR",
    "PAM_CRED_UNAVAIL",
    "PAM_CRED_EXPIRED",
    "PAM_CRED_ERR",
    "PAM_NO_MODULE_DATA",
    "PAM_CONV_ERR",
    "PAM_AUTHTOK_ERR",
    "PAM_AUTHTOK_RECOVERY_ERR",
    "PAM_AUTHTOK_LOCK_BUSY",
    "PAM_AUTHTOK_DISABLE_AGING",
    "PAM_TRY_AGAIN",
    "PAM_IGNORE",
    "PAM_ABORT",
    "PAM_AUTHTOK_EXPIRED",
    "PAM_MODULE_UNKNOWN",
    "PAM_BAD_ITEM",
    "PAM_CONV_AGAIN",
    "PAM_INCOMPLETE",
];

pub fn code_name(code: c_int) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODE_NAMES.get(i))
        .map_or_else(|| format!("PAM_{code}"), |name| name.to_string())
}

/// What the handler gives back for one conversation message.
#[derive(Debug)]
pub enum Reply {
    /// This answer (a prompt).
    Answer(Vec<u8>),
    /// No answer (an informational message).
    Nothing,
    /// Fail the whole conversation with this code.
    Fail(c_int),
}

/// Called for each message with its style and text; runs inside libpam's callback, so it must
/// not panic.
pub type Handler<'a> = &'a dyn Fn(c_int, &[u8]) -> Reply;

/// How one login ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// pam_authenticate's result, or that of the call that failed before it.
    pub rc: c_int,
    /// The call `rc` came from.
    pub call: &'static str,
    /// pam_strerror's text for `rc`.
    pub text: String,
    /// pam_authenticate alone (zero if it was not reached).
    pub auth: Duration,
    /// pam_start through pam_end (module loading and unloading included).
    pub cycle: Duration,
}

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

/// Opaque `pam_handle_t`.
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
    fn pam_setcred(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// Runs one login of `user` on `service`, with PAM_RHOST set when `rhost` is given and
/// libpam's failure delay disabled; `handler` answers the conversation. With `setcred`, a
/// successful pam_authenticate is followed by pam_setcred(PAM_ESTABLISH_CRED), as login, su,
/// sshd and cockpit-session do; its failure is then the outcome.
pub fn login(
    service: &CStr,
    user: &CStr,
    rhost: Option<&CStr>,
    setcred: bool,
    handler: Handler<'_>,
) -> Outcome {
    let start = Instant::now();
    let handler_ref: &Handler<'_> = &handler;
    let conv = PamConv {
        conv: converse,
        appdata_ptr: (handler_ref as *const Handler<'_>).cast_mut().cast(),
    };
    let mut pamh: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: service and user are NUL-terminated strings and conv a valid pam_conv whose
    // appdata points at `handler`; all outlive the handle, which is ended below.
    let rc = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut pamh) };
    if rc != PAM_SUCCESS {
        let text = strerror(pamh, rc);
        if !pamh.is_null() {
            // SAFETY: pamh was returned by pam_start and is ended only here.
            unsafe { pam_end(pamh, rc) };
        }
        return outcome(rc, "pam_start", text, Duration::ZERO, start);
    }
    let (rc, call, auth) = match set_items(pamh, rhost) {
        Err((rc, call)) => (rc, call, Duration::ZERO),
        Ok(()) => {
            let auth_start = Instant::now();
            // SAFETY: pamh is the live handle returned by pam_start.
            let rc = unsafe { pam_authenticate(pamh, 0) };
            let auth = auth_start.elapsed();
            if rc == PAM_SUCCESS && setcred {
                // SAFETY: pamh is the live handle returned by pam_start.
                let rc = unsafe { pam_setcred(pamh, PAM_ESTABLISH_CRED) };
                (rc, "pam_setcred", auth)
            } else {
                (rc, "pam_authenticate", auth)
            }
        }
    };
    let text = strerror(pamh, rc);
    // SAFETY: pamh is the live handle returned by pam_start; it is not used afterwards.
    unsafe { pam_end(pamh, rc) };
    outcome(rc, call, text, auth, start)
}

fn outcome(rc: c_int, call: &'static str, text: String, auth: Duration, start: Instant) -> Outcome {
    Outcome {
        rc,
        call,
        text,
        auth,
        cycle: start.elapsed(),
    }
}

fn set_items(pamh: *mut PamHandle, rhost: Option<&CStr>) -> Result<(), (c_int, &'static str)> {
    let delay: extern "C" fn(c_int, c_uint, *mut c_void) = no_fail_delay;
    // SAFETY: PAM_FAIL_DELAY takes the function pointer itself as the item; the function has
    // the signature libpam calls it with.
    let rc = unsafe { pam_set_item(pamh, PAM_FAIL_DELAY, delay as *const c_void) };
    if rc != PAM_SUCCESS {
        return Err((rc, "pam_set_item(PAM_FAIL_DELAY)"));
    }
    if let Some(rhost) = rhost {
        // SAFETY: rhost is a NUL-terminated string; libpam copies it.
        let rc = unsafe { pam_set_item(pamh, PAM_RHOST, rhost.as_ptr().cast()) };
        if rc != PAM_SUCCESS {
            return Err((rc, "pam_set_item(PAM_RHOST)"));
        }
    }
    Ok(())
}

/// pam_strerror's text for `rc`.
fn strerror(pamh: *mut PamHandle, rc: c_int) -> String {
    // SAFETY: pam_strerror accepts any handle, even null, and returns a static string.
    let text = unsafe { pam_strerror(pamh, rc) };
    if text.is_null() {
        return String::new();
    }
    // SAFETY: non-null results of pam_strerror are NUL-terminated static strings.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// libpam's failure delay would sleep after every refused login; tests and the bench do not
/// want to wait for it.
extern "C" fn no_fail_delay(_status: c_int, _usec: c_uint, _appdata: *mut c_void) {}

/// The conversation function: hands each message to the handler in `appdata`.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    if !(1..=PAM_MAX_NUM_MSG).contains(&num_msg) {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the `&Handler` that `login` put into the pam_conv; it lives until
    // pam_end, after which libpam makes no more calls.
    let handler: &Handler<'_> = unsafe { &*appdata.cast::<Handler<'_>>() };
    let count = num_msg as usize;
    // SAFETY: calloc of `count` zeroed responses; libpam's caller frees them with free().
    let replies = unsafe { libc::calloc(count, size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes an array of `num_msg` pointers to valid messages.
        let message = unsafe { &**msg.add(i) };
        let text = if message.msg.is_null() {
            &[][..]
        } else {
            // SAFETY: a message's text is a NUL-terminated string.
            unsafe { CStr::from_ptr(message.msg) }.to_bytes()
        };
        let reply = match handler(message.msg_style, text) {
            Reply::Answer(bytes) => malloc_c_string(&bytes),
            Reply::Nothing => Ok(std::ptr::null_mut()),
            Reply::Fail(rc) => Err(rc),
        };
        match reply {
            // SAFETY: i < count, inside the calloc'ed array.
            Ok(answer) => unsafe { (*replies.add(i)).resp = answer },
            Err(rc) => {
                // SAFETY: replies holds `count` entries, each null or malloc'ed here.
                unsafe { free_replies(replies, count) };
                return rc;
            }
        }
    }
    // SAFETY: resp is non-null (checked above) and points to the caller's result slot.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// `bytes` as a malloc'ed C string, for libpam to free. Bytes after a NUL would be invisible to
/// the module, as in any PAM conversation.
fn malloc_c_string(bytes: &[u8]) -> Result<*mut c_char, c_int> {
    // SAFETY: malloc of bytes.len() + 1 bytes for the string and its NUL.
    let copy = unsafe { libc::malloc(bytes.len() + 1) }.cast::<u8>();
    if copy.is_null() {
        return Err(PAM_BUF_ERR);
    }
    // SAFETY: copy has room for bytes.len() + 1 bytes and does not overlap bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), copy, bytes.len());
        *copy.add(bytes.len()) = 0;
    }
    Ok(copy.cast())
}

/// Frees a partly filled response array after a failed conversation.
///
/// # Safety
/// `replies` must be a calloc'ed array of `count` responses whose `resp` fields are null or
/// malloc'ed, and must not be used afterwards.
unsafe fn free_replies(replies: *mut PamResponse, count: usize) {
    for i in 0..count {
        // SAFETY: per this function's contract, every entry is null or malloc'ed.
        unsafe { libc::free((*replies.add(i)).resp.cast()) };
    }
    // SAFETY: per this function's contract, the array itself was calloc'ed.
    unsafe { libc::free(replies.cast()) };
}

/// `pam_conv` with a conversation function that may be absent, as some applications pass it.
#[repr(C)]
struct MaybePamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
}

/// `pam_acct_mgmt(flags)` alone for `user` on `service`, as Samba calls it after checking the
/// password itself. With `handler` `None` the conversation function is NULL: a module that
/// tried to talk would crash the process.
pub fn account(
    service: &CStr,
    user: &CStr,
    rhost: Option<&CStr>,
    flags: c_int,
    handler: Option<Handler<'_>>,
) -> Outcome {
    let start = Instant::now();
    let handler_ref: Option<&Handler<'_>> = handler.as_ref();
    let conv = MaybePamConv {
        conv: handler_ref.map(|_| converse as ConvFn),
        appdata_ptr: handler_ref.map_or(std::ptr::null_mut(), |h| {
            (h as *const Handler<'_>).cast_mut().cast()
        }),
    };
    let mut pamh: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: service and user are NUL-terminated strings; `conv` has pam_conv's layout (an
    // Option of a function pointer is a nullable pointer) and, when a handler is given, its
    // appdata points at it; all outlive the handle, which is ended below.
    let rc = unsafe {
        pam_start(
            service.as_ptr(),
            user.as_ptr(),
            (&conv as *const MaybePamConv).cast(),
            &mut pamh,
        )
    };
    if rc != PAM_SUCCESS {
        let text = strerror(pamh, rc);
        if !pamh.is_null() {
            // SAFETY: pamh was returned by pam_start and is ended only here.
            unsafe { pam_end(pamh, rc) };
        }
        return outcome(rc, "pam_start", text, Duration::ZERO, start);
    }
    let (rc, call, took) = match set_items(pamh, rhost) {
        Err((rc, call)) => (rc, call, Duration::ZERO),
        Ok(()) => {
            let call_start = Instant::now();
            // SAFETY: pamh is the live handle returned by pam_start.
            let rc = unsafe { pam_acct_mgmt(pamh, flags) };
            (rc, "pam_acct_mgmt", call_start.elapsed())
        }
    };
    let text = strerror(pamh, rc);
    // SAFETY: pamh is the live handle returned by pam_start; it is not used afterwards.
    unsafe { pam_end(pamh, rc) };
    outcome(rc, call, text, took, start)
}
