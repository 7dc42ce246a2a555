//! Enrollment inside the login conversation, for users the policy enforces
//! (`on_unenrolled = "enroll"`). A code from the new app confirms the key; the enrollment then
//! waits in the store and becomes the user's only in [`super::commit`] (pam_setcred), which
//! applications call after the whole auth stack succeeded: a wrong password above the module,
//! even on a `required` line, leaves the user unenrolled.

use crate::audit::Level;
use crate::backend::Backend;
use crate::login::{self, EnrollAtLogin};
use crate::otpauth::key_groups;
use crate::{qr, totp};

use super::{Session, Verdict};

const TRIES: u32 = 3;
pub const CODE_PROMPT: &str = "Code shown by the app: ";
pub const SAVED_PROMPT: &str = "Press Enter once you have saved the emergency codes: ";
pub const WRONG_CODE: &str =
    "That code does not match; check the phone's clock and try the next one.";

pub fn at_login<B: Backend>(s: &mut Session<'_, B>) -> Verdict {
    if s.quiet {
        // PAM_SILENT: the QR code and key could not be shown.
        s.log(
            Level::Notice,
            "auth failure",
            "reason=not-enrolled detail=silent-no-enrollment",
        );
        return Verdict::Refused;
    }
    let pending = match login::offer_enrollment(s.config, &s.user) {
        Ok(pending) => pending,
        Err(e) => return s.unavailable(&e),
    };
    s.log(Level::Notice, "enrollment offered", "");
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
        // The user must see these: a client that cannot show them fails the login.
        if let Err(e) = s.conv.info(text) {
            return s.conversation_failed(e);
        }
    }
    for attempt in 1..=TRIES {
        let answer = match s.conv.ask(CODE_PROMPT, true) {
            Ok(answer) => answer,
            Err(e) => return s.conversation_failed(e),
        };
        let now = s.clock.now();
        let result =
            login::enroll_at_login(s.store, s.config, &s.attempt(), &pending, &answer, now);
        drop(answer);
        match result {
            Err(e) => return s.unavailable(&e),
            Ok(EnrollAtLogin::AlreadyEnrolled) => {
                s.log(Level::Notice, "auth failure", "reason=enrolled-meanwhile");
                return Verdict::Refused;
            }
            Ok(EnrollAtLogin::WrongCode) if attempt < TRIES => s.tell_error(WRONG_CODE),
            Ok(EnrollAtLogin::WrongCode) => {}
            Ok(EnrollAtLogin::Confirmed { id, new }) => {
                s.log(Level::Notice, "enrollment confirmed", "method=totp");
                let mut text = String::from(
                    "Two-step login is on once this login completes. Emergency codes (each \
                     works once; keep them offline):",
                );
                for code in &new.emergency_codes {
                    text.push('\n');
                    text.push_str(code);
                }
                let shown = s.conv.info(&text);
                zeroize::Zeroize::zeroize(&mut text);
                if let Err(e) = shown {
                    return s.conversation_failed(e);
                }
                // Some clients show information only together with a prompt; and the user
                // must not miss the codes.
                if let Err(e) = s.conv.ask(SAVED_PROMPT, true) {
                    return s.conversation_failed(e);
                }
                return Verdict::Enrolled(id);
            }
        }
    }
    s.log(
        Level::Notice,
        "auth failure",
        "reason=enrollment-not-confirmed",
    );
    Verdict::Refused
}
