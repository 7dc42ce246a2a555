//! Checking a user's password through a PAM stack, as a PAM *application* (the self-service
//! service, `twostep serve-self`, asks the caller's password before any change). Only the
//! `pam` feature builds it, so that the module and the other users of this crate do not link
//! libpam's application side for nothing.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_SILENT: c_int = 0x8000;
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;
const PAM_MAX_NUM_MSG: c_int = 32;
/// Refusals of the password or the account, as opposed to a stack that could not decide.
const REFUSALS: [(c_int, Refusal); 7] = [
    (6, Refusal::Denied),         // PAM_PERM_DENIED
    (7, Refusal::WrongPassword),  // PAM_AUTH_ERR
    (10, Refusal::WrongPassword), // PAM_USER_UNKNOWN: told apart from a wrong password by nobody
    (11, Refusal::WrongPassword), // PAM_MAXTRIES
    (12, Refusal::MustChange),    // PAM_NEW_AUTHTOK_REQD
    (13, Refusal::Expired),       // PAM_ACCT_EXPIRED
    (27, Refusal::Expired),       // PAM_AUTHTOK_EXPIRED
];

/// Why the stack said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    WrongPassword,
    /// The account is expired (or its password is).
    Expired,
    /// The password is right but must be changed first (`passwd`).
    MustChange,
    /// The account stack refused the user (pam_access, pam_nologin, …).
    Denied,
}

/// What the stack made of the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    /// pam_authenticate and pam_acct_mgmt both succeeded.
    Accepted,
    Refused(Refusal),
    /// The stack could not decide (missing service file, module error, a conversation it
    /// needed more from): `call` failed with `code` (`text` is pam_strerror's).
    Failed {
        call: &'static str,
        code: i32,
        text: String,
    },
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

#[repr(C)]
struct PamConv {
    conv: extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int,
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
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// What the conversation function answers with: the password, once.
struct Answer<'a> {
    password: &'a [u8],
    given: std::cell::Cell<bool>,
}

/// Runs `service`'s auth and account stacks for `user` with `password` as the answer to the
/// one hidden prompt (a second hidden prompt or a visible one fails the conversation: the
/// stack wants more than a password). Silent: messages of the modules are dropped. libpam's
/// failure delay applies (pam_unix: about 2 s after a wrong password), which slows guessing.
pub fn check_password(service: &str, user: &str, password: &[u8]) -> PasswordCheck {
    let (Ok(service), Ok(user)) = (CString::new(service), CString::new(user)) else {
        return failed(
            "pam_start",
            4,
            "a NUL byte in the service or user name".into(),
        );
    };
    if password.contains(&0) {
        return PasswordCheck::Refused(Refusal::WrongPassword);
    }
    let answer = Answer {
        password,
        given: std::cell::Cell::new(false),
    };
    let conv = PamConv {
        conv: converse,
        appdata_ptr: (&answer as *const Answer<'_>).cast_mut().cast(),
    };
    let mut pamh: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: service and user are NUL-terminated; conv is a valid pam_conv whose appdata
    // points at `answer`; all three outlive the handle, which is ended before they go.
    let rc = unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut pamh) };
    if rc != PAM_SUCCESS || pamh.is_null() {
        let text = strerror(pamh, rc);
        if !pamh.is_null() {
            // SAFETY: pamh was returned by pam_start and is ended only here.
            unsafe { pam_end(pamh, rc) };
        }
        return failed("pam_start", rc, text);
    }
    // SAFETY: pamh is the live handle from pam_start.
    let mut rc = unsafe { pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK) };
    let mut call = "pam_authenticate";
    if rc == PAM_SUCCESS {
        // SAFETY: pamh is the live handle from pam_start.
        rc = unsafe { pam_acct_mgmt(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK) };
        call = "pam_acct_mgmt";
    }
    let text = strerror(pamh, rc);
    // SAFETY: pamh is the live handle from pam_start; it is not used afterwards.
    unsafe { pam_end(pamh, rc) };
    if rc == PAM_SUCCESS {
        return PasswordCheck::Accepted;
    }
    match REFUSALS.iter().find(|(code, _)| *code == rc) {
        Some((_, refusal)) => PasswordCheck::Refused(*refusal),
        None => failed(call, rc, text),
    }
}

fn failed(call: &'static str, code: c_int, text: String) -> PasswordCheck {
    PasswordCheck::Failed { call, code, text }
}

fn strerror(pamh: *mut PamHandle, rc: c_int) -> String {
    // SAFETY: pam_strerror accepts any handle, even null, and returns a static string.
    let text = unsafe { pam_strerror(pamh, rc) };
    if text.is_null() {
        return String::new();
    }
    // SAFETY: a non-null result of pam_strerror is a NUL-terminated static string.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if msg.is_null()
        || resp.is_null()
        || appdata.is_null()
        || !(1..=PAM_MAX_NUM_MSG).contains(&num_msg)
    {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the `Answer` check_password put into the pam_conv; it lives until
    // pam_end, after which libpam makes no calls.
    let answer: &Answer<'_> = unsafe { &*appdata.cast::<Answer<'_>>() };
    let count = num_msg as usize;
    // SAFETY: calloc of `count` zeroed responses, freed by libpam's caller with free().
    let replies = unsafe { libc::calloc(count, size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes an array of `num_msg` pointers to valid messages.
        let style = unsafe { (**msg.add(i)).msg_style };
        let reply = match style {
            PAM_PROMPT_ECHO_OFF if !answer.given.replace(true) => malloc_c_string(answer.password),
            PAM_ERROR_MSG | PAM_TEXT_INFO => Ok(std::ptr::null_mut()),
            _ => Err(PAM_CONV_ERR),
        };
        match reply {
            // SAFETY: i < count, inside the calloc'ed array.
            Ok(text) => unsafe { (*replies.add(i)).resp = text },
            Err(rc) => {
                // SAFETY: every entry of replies is null or malloc'ed here; not used after.
                unsafe { free_replies(replies, count) };
                return rc;
            }
        }
    }
    // SAFETY: resp is non-null (checked above): the caller's result slot.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

fn malloc_c_string(bytes: &[u8]) -> Result<*mut c_char, c_int> {
    // SAFETY: malloc of the string and its NUL.
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

/// # Safety
/// `replies` is a calloc'ed array of `count` responses, each `resp` null or malloc'ed; it is
/// not used afterwards.
unsafe fn free_replies(replies: *mut PamResponse, count: usize) {
    for i in 0..count {
        // SAFETY: per the contract, each entry is null or malloc'ed (a password copy is
        // wiped first: it never reached libpam).
        unsafe {
            let text = (*replies.add(i)).resp;
            if !text.is_null() {
                let len = libc::strlen(text);
                std::ptr::write_bytes(text, 0, len);
            }
            libc::free(text.cast());
        }
    }
    // SAFETY: per the contract, the array itself was calloc'ed.
    unsafe { libc::free(replies.cast()) };
}
