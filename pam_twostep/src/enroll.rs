//! Enrollment inside the login conversation, for users the policy enforces
//! (`on_unenrolled = "enroll"`). The PAM stack must have checked the password before this
//! module runs (docs/ssh.md, docs/pam.md); nothing is stored until a code from the new app
//! verifies.

use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_ON, PAM_TEXT_INFO, PamResultCode};
use twostep_common::audit::Level;
use twostep_common::clock::{Clock, SystemClock};
use twostep_common::login::{self, EnrollAtLogin};
use twostep_common::otpauth::key_groups;
use twostep_common::store::Store;
use twostep_common::{qr, totp};

use crate::authenticate::{Login, conversation_failed};

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
            Ok(EnrollAtLogin::Enrolled(new)) => {
                login.log(Level::Notice, "enrolled at login", "method=totp");
                let mut text = String::from(
                    "Two-step login is now on. Emergency codes (each works once; keep them offline):",
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
