//! Enrollment inside the login conversation, for users the policy enforces
//! (`on_unenrolled = "enroll"`). A code from the new app confirms the key; the enrollment then
//! waits in the state directory and becomes the user's only in `pam_setcred`
//! ([`crate::setcred`]), which applications call after the whole auth stack succeeded: a
//! wrong password above this module, even on a `required` line, leaves the user unenrolled.

use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_ON, PAM_TEXT_INFO, PamResultCode};
use twostep_common::audit::Level;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::login::{self, EnrollAtLogin};
use twostep_common::otpauth::key_groups;
use twostep_common::store::Store;
use twostep_common::{qr, totp};

use crate::authenticate::{Login, conversation_failed};
use crate::pamenv;

/// The PAM environment variable that carries a confirmed enrollment's id to `pam_setcred`.
pub const ENROLLMENT_ENV: &str = "TWOSTEP_ENROLLMENT";

const TRIES: u32 = 3;
const CODE_PROMPT: &str = "Code shown by the app: ";
const SAVED_PROMPT: &str = "Press Enter once you have saved the emergency codes: ";

pub fn at_login(login: &mut Login<'_>, store: &Store) -> PamResultCode {
    if login.quiet {
        // PAM_SILENT: the QR code and key could not be shown.
        login.log(
            Level::Notice,
            "auth failure",
            "reason=not-enrolled detail=silent-no-enrollment",
        );
        return PamResultCode::PAM_AUTH_ERR;
    }
    let pending = match login::offer_enrollment(&login.config, &login.user) {
        Ok(pending) => pending,
        Err(e) => return login.system_error(&e),
    };
    login.log(Level::Notice, "enrollment offered", "");
    let qr = match qr::terminal_plain(&pending.uri) {
        Ok(qr) => qr,
        Err(_) => String::from("(the QR code does not fit; type the key instead)\n"),
    };
    let key = key_groups(&totp::encode_secret(&pending.key));
    for text in [
        "Two-step login is required for this account. Set it up now: scan this QR code with an \
         authenticator app (Google or Microsoft Authenticator, Aegis, ...) or type the key.",
        qr.trim_end_matches('\n'),
        &format!("Key: {}", key.as_str()),
        &format!("URI: {}", pending.uri.as_str()),
    ] {
        if let Err(code) = login.ask(PAM_TEXT_INFO, text) {
            return conversation_failed(login, code);
        }
    }
    for attempt in 1..=TRIES {
        let answer = match login.ask(PAM_PROMPT_ECHO_ON, CODE_PROMPT) {
            Ok(answer) => answer,
            Err(code) => return conversation_failed(login, code),
        };
        let typed: &[u8] = answer.as_ref().map_or(&[], |a| a.as_bytes());
        let result = login::enroll_at_login(
            store,
            &login.config,
            &login.attempt(),
            &pending,
            typed,
            SystemClock.now(),
        );
        drop(answer);
        match result {
            Err(e) => return login.system_error(&e),
            Ok(EnrollAtLogin::AlreadyEnrolled) => {
                login.log(Level::Notice, "auth failure", "reason=enrolled-meanwhile");
                return PamResultCode::PAM_AUTH_ERR;
            }
            Ok(EnrollAtLogin::WrongCode) if attempt < TRIES => {
                login.tell(
                    PAM_ERROR_MSG,
                    "That code does not match; check the phone's clock and try the next one.",
                );
            }
            Ok(EnrollAtLogin::WrongCode) => {}
            Ok(EnrollAtLogin::Confirmed { id, new }) => {
                // Kept for pam_setcred, which stores it once the whole stack has succeeded.
                if let Err(code) = pamenv::set(login.pamh, ENROLLMENT_ENV, Some(id.as_str())) {
                    login.log(
                        Level::Error,
                        "error",
                        "cannot keep the enrollment for setcred",
                    );
                    return code;
                }
                login.log(Level::Notice, "enrollment confirmed", "method=totp");
                let mut text = String::from(
                    "Two-step login is on once this login completes. Emergency codes (each \
                     works once; keep them offline):",
                );
                for code in &new.emergency_codes {
                    text.push('\n');
                    text.push_str(code);
                }
                let shown = login.ask(PAM_TEXT_INFO, &text);
                zeroize::Zeroize::zeroize(&mut text);
                if let Err(code) = shown {
                    return conversation_failed(login, code);
                }
                // Some clients show information only together with a prompt; and the user
                // must not miss the codes.
                if let Err(code) = login.ask(PAM_PROMPT_ECHO_ON, SAVED_PROMPT) {
                    return conversation_failed(login, code);
                }
                return PamResultCode::PAM_SUCCESS;
            }
        }
    }
    login.log(
        Level::Notice,
        "auth failure",
        "reason=enrollment-not-confirmed",
    );
    PamResultCode::PAM_AUTH_ERR
}
