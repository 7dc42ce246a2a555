//! One error enum for the core. Messages name the file and say what to do; they never carry a
//! secret or a code.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// The config file could not be parsed or holds a bad value. Line and column are 1-based;
    /// 0 means "whole file".
    Config {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A file or directory failed a safety check (owner, mode, type, links).
    Unsafe { path: PathBuf, reason: String },
    /// A system call on a path failed.
    Io {
        path: PathBuf,
        action: &'static str,
        errno: nix::errno::Errno,
    },
    /// An enrollment record exists but cannot be used.
    Corrupt { path: PathBuf, message: String },
    /// The user name cannot be mapped to a record file.
    InvalidUser(String),
    /// What a user or an admin gave is not acceptable: a key, TOTP parameters, an email
    /// address, a google-authenticator file to import, or a request the state refuses
    /// (restoring over an enrollment).
    Input(String),
    /// The config and an enrollment do not fit together: the user's method needs a setting
    /// that is off (emailed codes without `[email] smtp_host`), or the enrollment lacks what
    /// the login asked for (an address to mail a code to).
    Setup(String),
    /// The user and group directory (NSS: passwd, group) failed, or gave an unusable answer.
    Lookup(String),
    /// An internal invariant does not hold: a bug in twostep, not a problem of the system, the
    /// files or the input (a record saved under another user's lock, a slot file written
    /// before it was read).
    Bug(String),
    /// The kernel random source failed.
    Random,
    /// A write based on a record read earlier, without the lock, found the record changed
    /// since (the fleet store: another host or an admin wrote it). Not a failure: the login
    /// decides again on the current record, under the lock ([`crate::login`]).
    Changed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config {
                path,
                line,
                column,
                message,
            } => {
                if *line == 0 {
                    write!(f, "{}: {message}", path.display())
                } else {
                    write!(f, "{}:{line}:{column}: {message}", path.display())
                }
            }
            Error::Unsafe { path, reason } => {
                write!(f, "{}: refused: {reason}", path.display())
            }
            Error::Io {
                path,
                action,
                errno,
            } => write!(f, "{}: cannot {action}: {}", path.display(), errno.desc()),
            Error::Corrupt { path, message } => {
                write!(f, "{}: unreadable record: {message}", path.display())
            }
            Error::InvalidUser(why) => write!(f, "invalid user name: {why}"),
            Error::Input(why) | Error::Setup(why) | Error::Lookup(why) | Error::Bug(why) => {
                f.write_str(why)
            }
            Error::Random => f.write_str("the system random number generator failed"),
            Error::Changed => f.write_str("the record changed since it was read"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        errno: nix::errno::Errno,
    ) -> Error {
        Error::Io {
            path: path.into(),
            action,
            errno,
        }
    }

    pub(crate) fn unsafe_path(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::Unsafe {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
