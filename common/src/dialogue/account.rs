//! The account mode (`account required pam_twostep.so`): for services that run only the
//! account stack and cannot prompt, above all Samba. Never talks to the user: the verdict and
//! one log line that says what the user must do.

use super::{Session, Verdict};
use crate::audit::{Level, field};
use crate::backend::Backend;
use crate::login::{self, AccountCheck};
use crate::timefmt;

/// Checks the gate for this user and address (src/gate.rs).
pub fn check<B: Backend>(s: &mut Session<'_, B>) -> Verdict {
    let now = s.clock.now();
    let found = login::account_check(s.store, s.config, s.dir, &s.attempt(), now);
    match found {
        Err(e) => s.system_error(&e),
        Ok(AccountCheck::Open { opened, service }) => {
            let details = format!(
                "reason=recent-two-step {} {}",
                field("opened", &timefmt::utc(opened)),
                field("by", &service)
            );
            s.log(Level::Info, "account allowed", &details);
            Verdict::Success
        }
        Ok(AccountCheck::Skip(skip)) => {
            s.log(
                Level::Info,
                "account allowed",
                &format!("reason={}", skip.reason()),
            );
            Verdict::Success
        }
        Ok(AccountCheck::NotEnrolled { enforced: true }) => {
            s.log(
                Level::Notice,
                "account refused",
                "reason=not-enrolled policy=enforced action=\"enroll at an SSH or web login first\"",
            );
            Verdict::Refused
        }
        Ok(AccountCheck::NotEnrolled { enforced: false }) => {
            super::not_enrolled(s, "account refused")
        }
        Ok(AccountCheck::Off) => {
            s.log(
                Level::Warning,
                "account refused",
                "reason=gate-off detail=\"[gate] window_secs = 0 refuses every enrolled user\"",
            );
            Verdict::Refused
        }
        Ok(AccountCheck::Closed) => {
            let details = format!(
                "reason=no-recent-two-step {} window={}s {}",
                field("address", &login::host_key(&s.rhost)),
                s.config.gate.window_secs,
                field(
                    "action",
                    "log in with two-step login (web page, SSH) from this address first"
                ),
            );
            s.log(Level::Notice, "account refused", &details);
            Verdict::Refused
        }
    }
}
