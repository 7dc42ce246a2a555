//! What a `twostep` command fails with. `main` prints it as `twostep: {error}` and exits 1;
//! the messages are the ones the commands always printed (tests and docs match them).

use std::fmt;
use std::io;

use nix::errno::Errno;
use twostep_common::error::Error;
use twostep_common::record::RecordError;

use crate::show::qr_file::FileError;

#[derive(Debug)]
pub enum CliError {
    /// The core refused or failed: the config, the store, a record, what was given.
    Store(Error),
    /// A record could not be written out as text.
    Record(RecordError),
    /// The user has no enrollment; `then` ends the sentence (empty, or "; nothing to reset").
    NotEnrolled { user: String, then: &'static str },
    /// Arguments that clap accepted but that do not fit together or parse.
    Usage(String),
    /// A read or write failed; `what` says on what ("cannot read /etc/passwd"), if anything.
    Io { what: String, source: io::Error },
    /// A system call failed; `what` says which ("fork").
    Sys { what: String, errno: Errno },
    /// A QR code could not be made or written.
    Qr(FileError),
    /// JSON output could not be made.
    Json(serde_json::Error),
    /// Sending mail failed, or the `[email]` settings do not allow it.
    Mail(String),
    /// The fleet's database or key failed (twostep-cli/src/fleet).
    Fleet(crate::fleet::FleetError),
    /// Anything else the command refuses, in words for the admin.
    Refused(String),
}

impl CliError {
    pub fn not_enrolled(user: impl Into<String>) -> CliError {
        CliError::NotEnrolled {
            user: user.into(),
            then: "",
        }
    }

    pub fn io(what: impl fmt::Display, source: io::Error) -> CliError {
        CliError::Io {
            what: what.to_string(),
            source,
        }
    }

    pub fn sys(what: impl fmt::Display, errno: Errno) -> CliError {
        CliError::Sys {
            what: what.to_string(),
            errno,
        }
    }

    pub fn usage(why: impl Into<String>) -> CliError {
        CliError::Usage(why.into())
    }

    pub fn refused(why: impl Into<String>) -> CliError {
        CliError::Refused(why.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Store(e) => e.fmt(f),
            CliError::Record(e) => e.fmt(f),
            CliError::NotEnrolled { user, then } => write!(f, "{user} is not enrolled{then}"),
            CliError::Io { what, source } if what.is_empty() => source.fmt(f),
            CliError::Io { what, source } => write!(f, "{what}: {source}"),
            CliError::Sys { what, errno } => write!(f, "{what}: {}", errno.desc()),
            CliError::Qr(e) => e.fmt(f),
            CliError::Json(e) => e.fmt(f),
            CliError::Fleet(e) => e.fmt(f),
            CliError::Usage(why) | CliError::Mail(why) | CliError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Store(e) => Some(e),
            CliError::Record(e) => Some(e),
            CliError::Io { source, .. } => Some(source),
            CliError::Sys { errno, .. } => Some(errno),
            CliError::Qr(e) => Some(e),
            CliError::Json(e) => Some(e),
            CliError::Fleet(e) => Some(e),
            CliError::NotEnrolled { .. }
            | CliError::Usage(_)
            | CliError::Mail(_)
            | CliError::Refused(_) => None,
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> CliError {
        CliError::Store(e)
    }
}

impl From<RecordError> for CliError {
    fn from(e: RecordError) -> CliError {
        CliError::Record(e)
    }
}

/// Through the core's error, whose message is the same (`Error::Input`).
impl From<twostep_common::totp::SecretError> for CliError {
    fn from(e: twostep_common::totp::SecretError) -> CliError {
        CliError::Store(e.into())
    }
}

/// Through the core's error, whose message is the same (`Error::Input`).
impl From<twostep_common::totp::ParamsError> for CliError {
    fn from(e: twostep_common::totp::ParamsError) -> CliError {
        CliError::Store(e.into())
    }
}

impl From<FileError> for CliError {
    fn from(e: FileError) -> CliError {
        CliError::Qr(e)
    }
}

impl From<twostep_common::qr::QrError> for CliError {
    fn from(e: twostep_common::qr::QrError) -> CliError {
        CliError::Qr(FileError::Code(e))
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> CliError {
        CliError::Json(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_ones_the_commands_printed() {
        assert_eq!(
            CliError::not_enrolled("alice").to_string(),
            "alice is not enrolled"
        );
        let reset = CliError::NotEnrolled {
            user: "alice".into(),
            then: "; nothing to reset",
        };
        assert_eq!(reset.to_string(), "alice is not enrolled; nothing to reset");
        let broken = || io::Error::from(io::ErrorKind::BrokenPipe);
        assert_eq!(CliError::io("", broken()).to_string(), broken().to_string());
        assert_eq!(
            CliError::io("cannot read /etc/passwd", broken()).to_string(),
            format!("cannot read /etc/passwd: {}", broken())
        );
        assert_eq!(
            CliError::sys("fork", Errno::EAGAIN).to_string(),
            format!("fork: {}", Errno::EAGAIN.desc())
        );
        let input = || Error::Input("the secret is empty".into());
        assert_eq!(CliError::from(input()).to_string(), input().to_string());
        assert_eq!(
            CliError::from(twostep_common::totp::SecretError::Empty).to_string(),
            "the secret is empty"
        );
    }
}
