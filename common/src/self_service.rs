//! `[self_service]`: what users may do for themselves through `twostep serve-self`
//! (docs/self-service.md). The service acts only for the peer the kernel names; these switches
//! let an admin narrow what it allows, or turn it off.

use crate::config::ConfigError;
use crate::toml_subset::{self, Fields};

/// The PAM service whose stack checks a self-service caller's password. It must not contain
/// pam_twostep: the code is asked for by the service itself, for changes only.
pub const DEFAULT_PAM_SERVICE: &str = "twostep-self";

/// One thing a user can do through the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Turn two-step login on (password; then a code from the new key or address).
    Enable,
    /// New emergency codes (password and a current code).
    Codes,
    /// Show the existing key again (password and a current code).
    AddDevice,
    /// Set or change the recovery address (password, a current code, then the mailed code).
    Email,
    /// Remove the enrollment (password and a current code; never while enforced).
    Disable,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Enable,
        Action::Codes,
        Action::AddDevice,
        Action::Email,
        Action::Disable,
    ];

    /// The name in logs, in `status --json`'s `allowed` and in the config key `allow_<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Enable => "enable",
            Action::Codes => "codes",
            Action::AddDevice => "add_device",
            Action::Email => "email",
            Action::Disable => "disable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfService {
    /// false: the service answers every request with "turned off by the administrator".
    pub enabled: bool,
    pub allow_enable: bool,
    pub allow_codes: bool,
    pub allow_add_device: bool,
    pub allow_email: bool,
    pub allow_disable: bool,
    /// See [`DEFAULT_PAM_SERVICE`].
    pub pam_service: String,
}

impl SelfService {
    pub(crate) fn read(mut f: Fields) -> Result<SelfService, toml_subset::Error> {
        let mut s = SelfService::default();
        let switches: [(&str, &mut bool); 6] = [
            ("enabled", &mut s.enabled),
            ("allow_enable", &mut s.allow_enable),
            ("allow_codes", &mut s.allow_codes),
            ("allow_add_device", &mut s.allow_add_device),
            ("allow_email", &mut s.allow_email),
            ("allow_disable", &mut s.allow_disable),
        ];
        for (key, slot) in switches {
            if let Some(value) = f.boolean(key)? {
                *slot = value;
            }
        }
        if let Some(service) = f.string("pam_service")? {
            s.pam_service = service;
        }
        f.finish()?;
        Ok(s)
    }

    /// Whether the admin allows `action` (and self-service at all).
    pub fn allows(&self, action: Action) -> bool {
        self.enabled
            && match action {
                Action::Enable => self.allow_enable,
                Action::Codes => self.allow_codes,
                Action::AddDevice => self.allow_add_device,
                Action::Email => self.allow_email,
                Action::Disable => self.allow_disable,
            }
    }

    /// A PAM service name: what pam_start accepts and /etc/pam.d can hold.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.pam_service;
        let fine = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !fine {
            return Err(ConfigError::SelfServicePamService);
        }
        Ok(())
    }
}

impl Default for SelfService {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_enable: true,
            allow_codes: true,
            allow_add_device: true,
            allow_email: true,
            allow_disable: true,
            pam_service: DEFAULT_PAM_SERVICE.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::config::Config;

    #[test]
    fn defaults_allow_everything() {
        let s = SelfService::default();
        assert!(Action::ALL.iter().all(|a| s.allows(*a)));
        assert_eq!(s.pam_service, "twostep-self");
    }

    #[test]
    fn switches_are_read_and_off_means_nothing_allowed() {
        let text = "[self_service]\nallow_disable = false\npam_service = \"my-self\"\n";
        let c = Config::parse(Path::new("t"), text).unwrap();
        assert!(!c.self_service.allows(Action::Disable));
        assert!(c.self_service.allows(Action::Codes));
        assert_eq!(c.self_service.pam_service, "my-self");
        let c = Config::parse(Path::new("t"), "[self_service]\nenabled = false\n").unwrap();
        assert!(Action::ALL.iter().all(|a| !c.self_service.allows(*a)));
    }

    #[test]
    fn bad_values_are_config_errors() {
        for text in [
            "[self_service]\nallow_codes = 1\n",
            "[self_service]\nunknown = true\n",
            "[self_service]\npam_service = \"../etc/x\"\n",
            "[self_service]\npam_service = \"\"\n",
        ] {
            assert!(Config::parse(Path::new("t"), text).is_err(), "{text}");
        }
    }
}
