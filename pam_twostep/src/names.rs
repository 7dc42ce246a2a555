//! The first thing a login does with PAM_USER: find the user's canonical name in the system's
//! directory (NSS), so that `ALICE` on a case-insensitive directory (SSSD, winbind) is `alice`'s
//! record and policy, and refuse what the policy cannot resolve ([`policy::login_name`]).

use pam::constants::{PAM_ERROR_MSG, PAM_SILENT, PamFlag, PamResultCode};
use pam::conv::Conv;
use pam::items::{RHost, Service};
use pam::module::PamHandle;
use twostep_common::audit::{Level, Sink, Syslog, field};
use twostep_common::config::{Config, Unenrolled};
use twostep_common::policy::{self, LoginName};
use twostep_common::store::Store;
use twostep_common::username;

/// What an enforced user without enrollment is told (the same text as in `authenticate`), so
/// that an unknown name is told what a known one would be.
const REQUIRED_MESSAGE: &str =
    "Two-step login is required for this account but is not set up. Ask your administrator.";

/// The name the login goes on with (`Ok`), or the result it ends with (`Err`): an unknown user
/// follows `unenrolled` unless the policy may enforce them; an ambiguous name or a failed
/// lookup is refused (PAM_AUTHINFO_UNAVAIL) and logged with the typed and canonical names.
pub fn canonical_user(
    pamh: &PamHandle,
    config: &Config,
    log: &mut Syslog,
    flags: PamFlag,
    typed: &str,
) -> Result<String, PamResultCode> {
    let mut line = |level, event: &str, details: &str| {
        let fields = format!(
            "{} {} {}",
            field("user", typed),
            field("service", &item::<Service>(pamh)),
            field("rhost", &item::<RHost>(pamh))
        );
        log.log(level, &format!("{event} {fields} {details}"));
    };
    let resolved = username::canonical(typed).and_then(|canonical| {
        let store = Store::open(&config.state_dir)?;
        policy::login_name(&config.policy, typed, canonical, &|u| store.has_record(u))
    });
    let tell = |text: &str| {
        if flags & PAM_SILENT == 0
            && let Ok(Some(conv)) = pamh.get_item::<Conv>()
        {
            let _ = conv.send(PAM_ERROR_MSG, text);
        }
    };
    match resolved {
        Ok(LoginName::Known { name, aliased }) => {
            if aliased {
                line(Level::Info, "user name", &field("canonical", &name));
            }
            Ok(name)
        }
        Ok(LoginName::Unknown { enforced: true }) => {
            line(
                Level::Notice,
                "auth failure",
                "reason=not-enrolled policy=enforced action=deny detail=unknown-user",
            );
            tell(REQUIRED_MESSAGE);
            Err(PamResultCode::PAM_AUTH_ERR)
        }
        Ok(LoginName::Unknown { enforced: false }) => match config.unenrolled {
            Unenrolled::Allow => {
                line(
                    Level::Info,
                    "not enrolled",
                    "action=allow detail=unknown-user",
                );
                Err(PamResultCode::PAM_IGNORE)
            }
            Unenrolled::Deny => {
                line(
                    Level::Notice,
                    "auth failure",
                    "reason=not-enrolled action=deny detail=unknown-user",
                );
                Err(PamResultCode::PAM_AUTH_ERR)
            }
        },
        Ok(LoginName::Refused { reason, canonical }) => {
            line(
                Level::Warning,
                "auth refused",
                &format!(
                    "reason=ambiguous-name {} detail={reason}",
                    field("canonical", &canonical)
                ),
            );
            Err(PamResultCode::PAM_AUTHINFO_UNAVAIL)
        }
        Err(e) => {
            line(Level::Error, "error", &format!("refusing login: {e}"));
            Err(PamResultCode::PAM_AUTHINFO_UNAVAIL)
        }
    }
}

fn item<'a, T: pam::items::Item<'a> + std::ops::Deref<Target = &'a std::ffi::CStr>>(
    pamh: &'a PamHandle,
) -> String {
    match pamh.get_item::<T>() {
        Ok(Some(value)) => value.to_string_lossy().into_owned(),
        _ => String::new(),
    }
}
