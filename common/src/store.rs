//! The state directory: `users/<user>.toml` records and `locks/<user>.lock` files, all root
//! owned and private. Writers of one user are serialized by that user's lock, taken before the
//! record is read, so a read-modify-write (replay check, lockout count, used emergency code)
//! can never interleave with another login of the same user.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::Flock;

use crate::error::Error;
use crate::record::Record;
use crate::securefs::{Access, Dir};
use crate::username;

/// Records are small; anything larger is damage or an attack.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;
const USERS_DIR: &str = "users";
const LOCKS_DIR: &str = "locks";
const RECORD_EXT: &str = ".toml";

#[derive(Debug)]
pub struct Store {
    users: Dir,
    locks: Dir,
}

/// Proof that the caller holds a user's lock; released on drop.
#[derive(Debug)]
pub struct UserLock {
    user: String,
    file_name: OsString,
    _lock: Flock<File>,
}

impl UserLock {
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl Store {
    /// Opens an existing state directory (the module never creates it: a missing state
    /// directory is an installation error, not "nobody is enrolled").
    pub fn open(state_dir: &Path) -> Result<Store, Error> {
        let root = Dir::open(state_dir, Access::Private)?.ok_or_else(|| {
            Error::io(
                state_dir,
                "open the state directory (run the installer)",
                Errno::ENOENT,
            )
        })?;
        Store::from_root(root)
    }

    /// Opens the state directory, creating it (root, 0700) when missing; for the CLI.
    pub fn create(state_dir: &Path) -> Result<Store, Error> {
        if let Some(root) = Dir::open(state_dir, Access::Private)? {
            return Store::from_root(root);
        }
        let (Some(parent), Some(name)) = (state_dir.parent(), state_dir.file_name()) else {
            return Err(Error::unsafe_path(state_dir, "not a directory path"));
        };
        let parent = Dir::open_ancestors(parent)?.ok_or_else(|| {
            Error::io(
                parent,
                "open the parent of the state directory",
                Errno::ENOENT,
            )
        })?;
        Store::from_root(parent.ensure_subdir(name)?)
    }

    fn from_root(root: Dir) -> Result<Store, Error> {
        Ok(Store {
            users: root.ensure_subdir(OsStr::new(USERS_DIR))?,
            locks: root.ensure_subdir(OsStr::new(LOCKS_DIR))?,
        })
    }

    pub fn record_path(&self, user: &str) -> Result<PathBuf, Error> {
        Ok(self.users.path().join(record_name(user)?))
    }

    /// Blocks until this process holds `user`'s lock.
    pub fn lock(&self, user: &str) -> Result<UserLock, Error> {
        let encoded = username::encode(user)?;
        let mut lock_name = encoded.clone();
        lock_name.push(".lock");
        let lock = self.locks.lock(&lock_name)?;
        let mut file_name = encoded;
        file_name.push(RECORD_EXT);
        Ok(UserLock {
            user: user.to_string(),
            file_name,
            _lock: lock,
        })
    }

    /// Reads `user`'s record without locking; records are replaced atomically, so this sees
    /// a whole old or a whole new one. Use [`Store::load_locked`] to modify.
    pub fn load(&self, user: &str) -> Result<Option<Record>, Error> {
        self.read(user, &record_name(user)?)
    }

    pub fn load_locked(&self, lock: &UserLock) -> Result<Option<Record>, Error> {
        self.read(&lock.user, &lock.file_name)
    }

    fn read(&self, user: &str, name: &OsStr) -> Result<Option<Record>, Error> {
        let Some(bytes) = self
            .users
            .read_file(name, Access::Private, MAX_RECORD_BYTES)?
        else {
            return Ok(None);
        };
        let path = self.users.path().join(name);
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::Corrupt {
            path: path.clone(),
            message: "not valid UTF-8".into(),
        })?;
        Record::parse(text, user)
            .map(Some)
            .map_err(|message| Error::Corrupt { path, message })
    }

    pub fn save(&self, lock: &UserLock, record: &Record) -> Result<(), Error> {
        if record.user != lock.user {
            return Err(Error::Invalid(
                "record and lock name different users".into(),
            ));
        }
        let text = record.to_file_text().map_err(|message| Error::Corrupt {
            path: self.users.path().join(&lock.file_name),
            message,
        })?;
        self.users.replace_file(&lock.file_name, text.as_bytes())
    }

    /// Deletes `user`'s record; true when there was one.
    pub fn remove(&self, lock: &UserLock) -> Result<bool, Error> {
        self.users.remove_file(&lock.file_name)
    }

    /// Every user with a record, sorted. Files that are not records are skipped.
    pub fn users(&self) -> Result<Vec<String>, Error> {
        let mut users: Vec<String> = self
            .users
            .entries()?
            .iter()
            .filter_map(|name| name.to_str()?.strip_suffix(RECORD_EXT))
            .filter_map(username::decode)
            .collect();
        users.sort();
        Ok(users)
    }
}

fn record_name(user: &str) -> Result<OsString, Error> {
    let mut name = username::encode(user)?;
    name.push(RECORD_EXT);
    Ok(name)
}
