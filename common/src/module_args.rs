//! The PAM module's arguments, as written in a PAM service file. Here rather than in the
//! module so that `twostep doctor` checks a service's arguments with the very parser the module
//! uses. Unknown arguments are errors: a misspelled option must not silently change what the
//! module does.

use std::fmt;
use std::path::PathBuf;

use crate::config::DEFAULT_CONFIG_PATH;

/// Which part of a login a `pam_twostep` line plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// After the password module: ask for the code (and enroll, if the policy says so).
    Code,
    /// One-prompt mode, first line, before the password module: read password and code as one
    /// answer, hand the password on as PAM_AUTHTOK and keep the code for [`Mode::Verify`].
    /// Checks no code and counts no failure: a stranger without the password must not be able
    /// to lock the user out.
    Split,
    /// One-prompt mode, second line, after the password module: check the code `Split` kept.
    Verify,
}

impl Mode {
    /// The argument that selects this mode (`None` for the default).
    pub fn argument(self) -> Option<&'static str> {
        match self {
            Mode::Code => None,
            Mode::Split => Some("combined=split"),
            Mode::Verify => Some("combined=verify"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleArgs {
    /// `config=/absolute/path`; [`DEFAULT_CONFIG_PATH`] when absent.
    pub config: PathBuf,
    pub mode: Mode,
}

impl ModuleArgs {
    /// Whether the config is the default one (not named by `config=`).
    pub fn default_config(&self) -> bool {
        self.config.as_os_str() == DEFAULT_CONFIG_PATH
    }

    /// Parses the arguments of one service-file line. Each argument is given as the bytes libpam
    /// passes (PAM arguments are C strings of any encoding).
    pub fn parse<A: AsRef<[u8]>>(args: &[A]) -> Result<ModuleArgs, ArgsError> {
        let mut parsed = ModuleArgs {
            config: PathBuf::from(DEFAULT_CONFIG_PATH),
            mode: Mode::Code,
        };
        let mut mode_set = false;
        for arg in args {
            let arg = std::str::from_utf8(arg.as_ref()).map_err(|_| ArgsError::NotUtf8)?;
            let mode = match arg.split_once('=') {
                Some(("config", path)) if path.starts_with('/') => {
                    parsed.config = PathBuf::from(path);
                    continue;
                }
                Some(("config", _)) => return Err(ArgsError::RelativeConfig),
                Some(("combined", "split")) => Mode::Split,
                Some(("combined", "verify")) => Mode::Verify,
                None if arg == "combined" => return Err(ArgsError::CombinedAlone),
                _ => return Err(ArgsError::Unknown(arg.to_string())),
            };
            if mode_set {
                return Err(ArgsError::CombinedTwice);
            }
            mode_set = true;
            parsed.mode = mode;
        }
        Ok(parsed)
    }
}

/// Why a service-file line's arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    NotUtf8,
    /// `config=` with a relative path.
    RelativeConfig,
    /// The old one-line `combined`.
    CombinedAlone,
    CombinedTwice,
    /// An argument the module does not know, as given.
    Unknown(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::NotUtf8 => f.write_str("a module argument is not valid UTF-8"),
            ArgsError::RelativeConfig => f.write_str("config= needs an absolute path"),
            ArgsError::CombinedAlone => f.write_str(
                "`combined` alone is no longer accepted: one-prompt mode takes two lines, \
                 `combined=split` before the password module and `combined=verify` after it \
                 (docs/pam.md)",
            ),
            ArgsError::CombinedTwice => f.write_str("combined= is given twice"),
            ArgsError::Unknown(arg) => write!(f, "unknown module argument {arg:?}"),
        }
    }
}

impl std::error::Error for ArgsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ModuleArgs, ArgsError> {
        ModuleArgs::parse(args)
    }

    #[test]
    fn defaults_and_config_override() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.config, PathBuf::from(DEFAULT_CONFIG_PATH));
        assert_eq!(a.mode, Mode::Code);
        assert!(a.default_config());
        let a = parse(&["config=/srv/t.toml"]).unwrap();
        assert_eq!(a.config, PathBuf::from("/srv/t.toml"));
        assert!(!a.default_config());
        assert_eq!(
            parse(&["combined=split", "config=/x"]).unwrap().mode,
            Mode::Split
        );
        assert_eq!(parse(&["combined=verify"]).unwrap().mode, Mode::Verify);
        assert_eq!(Mode::Verify.argument(), Some("combined=verify"));
    }

    #[test]
    fn unknown_relative_or_old_arguments_are_refused() {
        for bad in [
            &["nullok"][..],
            &["combined=yes"],
            &["config=relative.toml"],
            &["config"],
            &["combined"],
            &["combined=split", "combined=verify"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(&["combined"]).unwrap_err(), ArgsError::CombinedAlone);
        assert!(
            parse(&["combined"])
                .unwrap_err()
                .to_string()
                .contains("combined=split")
        );
        assert_eq!(
            parse(&["combined=split", "combined=verify"]).unwrap_err(),
            ArgsError::CombinedTwice
        );
        assert!(ModuleArgs::parse(&[b"config=/\xff".as_slice()]).is_err());
    }
}
