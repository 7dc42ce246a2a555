//! Module arguments from the PAM service file. Unknown arguments are errors: a misspelled
//! option must not silently change what the module does.

use std::ffi::CStr;
use std::path::PathBuf;

use twostep_common::config::DEFAULT_CONFIG_PATH;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub config: PathBuf,
    /// One-prompt mode: the answer is password + code; the password is handed on as
    /// PAM_AUTHTOK.
    pub combined: bool,
}

impl Args {
    pub fn parse(args: &[&CStr]) -> Result<Args, String> {
        let mut parsed = Args {
            config: PathBuf::from(DEFAULT_CONFIG_PATH),
            combined: false,
        };
        for arg in args {
            let arg = arg
                .to_str()
                .map_err(|_| "a module argument is not valid UTF-8".to_string())?;
            if arg == "combined" {
                parsed.combined = true;
                continue;
            }
            match arg.split_once('=') {
                Some(("config", path)) if path.starts_with('/') => {
                    parsed.config = PathBuf::from(path);
                }
                Some(("config", _)) => {
                    return Err("config= needs an absolute path".into());
                }
                _ => return Err(format!("unknown module argument {arg:?}")),
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_config_override() {
        assert_eq!(
            Args::parse(&[]).unwrap().config,
            PathBuf::from(DEFAULT_CONFIG_PATH)
        );
        let a = Args::parse(&[c"config=/srv/t.toml"]).unwrap();
        assert_eq!(a.config, PathBuf::from("/srv/t.toml"));
        assert!(!a.combined);
        assert!(Args::parse(&[c"combined", c"config=/x"]).unwrap().combined);
    }

    #[test]
    fn unknown_or_relative_arguments_are_refused() {
        assert!(Args::parse(&[c"nullok"]).is_err());
        assert!(Args::parse(&[c"combined=yes"]).is_err());
        assert!(Args::parse(&[c"config=relative.toml"]).is_err());
        assert!(Args::parse(&[c"config"]).is_err());
    }
}
