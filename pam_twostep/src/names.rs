//! The first thing a login does with PAM_USER: find the user's canonical name in the system's
//! directory (NSS), so that `ALICE` on a case-insensitive directory (SSSD, winbind) is `alice`'s
//! record and policy, and refuse what the policy cannot resolve ([`policy::login_name`]).

use pam::constants::{PAM_ERROR_MSG, PamResultCode};
use twostep_common::audit::{Level, field};
use twostep_common::config::Unenrolled;
use twostep_common::policy::{self, LoginName};
use twostep_common::store::Store;
use twostep_common::username;

use crate::authenticate::{Login, REQUIRED_MESSAGE};

/// Replaces `login.user` (as typed) by the canonical name (`Ok`), or gives the result the
/// login ends with (`Err`): an unknown user follows `unenrolled` unless the policy may enforce
/// them; an ambiguous name or a failed lookup is refused (PAM_AUTHINFO_UNAVAIL) and logged with
/// the typed and canonical names.
pub fn resolve(login: &mut Login<'_>, store: &Store) -> Result<(), PamResultCode> {
    let typed = login.user.clone();
    let resolved = username::canonical(&typed).and_then(|canonical| {
        policy::login_name(&login.config.policy, &typed, canonical, &|u| {
            store.has_record(u)
        })
    });
    match resolved {
        Ok(LoginName::Known { name, aliased }) => {
            if aliased {
                login.log(Level::Info, "user name", &field("canonical", &name));
            }
            login.user = name;
            Ok(())
        }
        Ok(LoginName::Unknown { enforced: true }) => {
            login.log(
                Level::Notice,
                "auth failure",
                "reason=not-enrolled policy=enforced action=deny detail=unknown-user",
            );
            login.tell(PAM_ERROR_MSG, REQUIRED_MESSAGE);
            Err(PamResultCode::PAM_AUTH_ERR)
        }
        Ok(LoginName::Unknown { enforced: false }) => match login.config.unenrolled {
            Unenrolled::Allow => {
                login.log(
                    Level::Info,
                    "not enrolled",
                    "action=allow detail=unknown-user",
                );
                Err(PamResultCode::PAM_IGNORE)
            }
            Unenrolled::Deny => {
                login.log(
                    Level::Notice,
                    "auth failure",
                    "reason=not-enrolled action=deny detail=unknown-user",
                );
                Err(PamResultCode::PAM_AUTH_ERR)
            }
        },
        Ok(LoginName::Refused { reason, canonical }) => {
            let details = format!(
                "reason=ambiguous-name {} detail={reason}",
                field("canonical", &canonical)
            );
            login.log(Level::Warning, "auth refused", &details);
            Err(PamResultCode::PAM_AUTHINFO_UNAVAIL)
        }
        Err(e) => Err(login.system_error(&e)),
    }
}
