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
const ARCHIVE_DIR: &str = "archive";
const RECORD_EXT: &str = ".toml";

#[derive(Debug)]
pub struct Store {
    root: Dir,
    users: Dir,
    locks: Dir,
}

/// A record read without the lock, with its file still open. While the file is open its
/// inode cannot be reused, and records are only ever replaced by rename, never rewritten in
/// place: finding the same inode (and size and times, in case an admin edits the file in
/// place) under the record's name later means the record is unchanged. This saves a login
/// the second open, read and parse under the lock.
#[derive(Debug, Default)]
pub struct Seen(Option<SeenRecord>);

#[derive(Debug)]
struct SeenRecord {
    /// Held only to keep the inode number from being reused.
    _file: File,
    version: Version,
    record: Record,
}

impl Seen {
    /// The record as read, if there was one.
    pub fn record(&self) -> Option<&Record> {
        self.0.as_ref().map(|seen| &seen.record)
    }
}

/// What identifies one version of a record file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    fn of(stat: &nix::sys::stat::FileStat) -> Version {
        Version {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: stat.st_size,
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
            ctime: (stat.st_ctime, stat.st_ctime_nsec),
        }
    }
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
            root,
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
        Ok(self.load_seen(user)?.0.map(|seen| seen.record))
    }

    /// [`Store::load`], keeping the file open so that [`Store::load_locked_seen`] can tell,
    /// with one `fstatat`, whether the record is still the one read here.
    pub fn load_seen(&self, user: &str) -> Result<Seen, Error> {
        let name = record_name(user)?;
        let Some((file, stat)) = self.users.open_file_stat(&name, Access::Private)? else {
            return Ok(Seen(None));
        };
        let bytes = self.users.read_opened(&file, &name, MAX_RECORD_BYTES)?;
        let record = self.parse(user, &name, &bytes)?;
        Ok(Seen(Some(SeenRecord {
            _file: file,
            version: Version::of(&stat),
            record,
        })))
    }

    pub fn load_locked(&self, lock: &UserLock) -> Result<Option<Record>, Error> {
        let Some(bytes) =
            self.users
                .read_file(&lock.file_name, Access::Private, MAX_RECORD_BYTES)?
        else {
            return Ok(None);
        };
        self.parse(&lock.user, &lock.file_name, &bytes).map(Some)
    }

    /// [`Store::load_locked`], reusing the record in `seen` when the file under the record's
    /// name is still the one it was read from.
    pub fn load_locked_seen(&self, lock: &UserLock, seen: Seen) -> Result<Option<Record>, Error> {
        let Some(seen) = seen.0 else {
            return self.load_locked(lock);
        };
        match self.users.stat_file(&lock.file_name, Access::Private)? {
            None => Ok(None),
            Some(stat) if Version::of(&stat) == seen.version && seen.record.user == lock.user => {
                Ok(Some(seen.record))
            }
            Some(_) => self.load_locked(lock),
        }
    }

    fn parse(&self, user: &str, name: &OsStr, bytes: &[u8]) -> Result<Record, Error> {
        let path = || self.users.path().join(name);
        let text = std::str::from_utf8(bytes).map_err(|_| Error::Corrupt {
            path: path(),
            message: "not valid UTF-8".into(),
        })?;
        Record::parse(text, user).map_err(|message| Error::Corrupt {
            path: path(),
            message,
        })
    }

    /// Writes `record` durably (see [`Dir::replace_file`]).
    pub fn save(&self, lock: &UserLock, record: &Record) -> Result<(), Error> {
        self.write(lock, record, true)
    }

    /// Writes `record` atomically but without syncing: for a login's bookkeeping (last used
    /// time step, failure counts, last login, grace hosts, mail send times), whose loss in a
    /// power cut is harmless. Whatever changes the enrollment or uses up a one-time code is
    /// written with [`Store::save`].
    pub fn save_unsynced(&self, lock: &UserLock, record: &Record) -> Result<(), Error> {
        self.write(lock, record, false)
    }

    fn write(&self, lock: &UserLock, record: &Record, durable: bool) -> Result<(), Error> {
        if record.user != lock.user {
            return Err(Error::Invalid(
                "record and lock name different users".into(),
            ));
        }
        let text = record.to_file_text().map_err(|message| Error::Corrupt {
            path: self.users.path().join(&lock.file_name),
            message,
        })?;
        if durable {
            self.users.replace_file(&lock.file_name, text.as_bytes())
        } else {
            self.users
                .replace_file_unsynced(&lock.file_name, text.as_bytes())
        }
    }

    /// Deletes `user`'s record; true when there was one.
    pub fn remove(&self, lock: &UserLock) -> Result<bool, Error> {
        self.users.remove_file(&lock.file_name)
    }

    /// `archive/`, opened (or created) only by the admin commands that use it; logins never do.
    fn archive_dir(&self) -> Result<Dir, Error> {
        self.root.ensure_subdir(OsStr::new(ARCHIVE_DIR))
    }

    /// Archived record names, without creating `archive/` (readers may run on a read-only
    /// state directory).
    fn archive_entries(&self) -> Result<Vec<OsString>, Error> {
        match self
            .root
            .open_subdir(OsStr::new(ARCHIVE_DIR), Some(Access::Private))?
        {
            Some(dir) => dir.entries(),
            None => Ok(Vec::new()),
        }
    }

    /// Moves `user`'s record to `archive/<user>.<time>.toml` (for `twostep restore`); the name
    /// of the archived file, or `None` when there was no record.
    pub fn archive(&self, lock: &UserLock, now: u64) -> Result<Option<PathBuf>, Error> {
        if self.load_locked(lock)?.is_none() {
            return Ok(None);
        }
        let encoded = username::encode(&lock.user)?;
        let taken = self.archive_names(&lock.user)?;
        let name = (0u32..)
            .map(|n| archive_name(&encoded, now, n))
            .find(|name| !taken.iter().any(|(_, t)| t == name))
            .ok_or_else(|| Error::Invalid("no free archive name".into()))?;
        let archive = self.archive_dir()?;
        self.users.move_file(&lock.file_name, &archive, &name)?;
        Ok(Some(archive.path().join(name)))
    }

    /// Moves the newest archived record of `user` back into place. Refuses while the user has
    /// a record. The archived file's path, or `None` when nothing is archived.
    pub fn restore(&self, lock: &UserLock) -> Result<Option<PathBuf>, Error> {
        if self.load_locked(lock)?.is_some() {
            return Err(Error::Invalid(format!(
                "{} is enrolled; nothing to restore over",
                lock.user
            )));
        }
        let Some((_, newest)) = self.archive_names(&lock.user)?.pop() else {
            return Ok(None);
        };
        // Check the archived record before putting it back: it must be safe and parse.
        let archive = self.archive_dir()?;
        let bytes = archive
            .read_file(&newest, Access::Private, MAX_RECORD_BYTES)?
            .ok_or_else(|| Error::io(archive.path().join(&newest), "open", Errno::ENOENT))?;
        let path = archive.path().join(&newest);
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::Corrupt {
            path: path.clone(),
            message: "not valid UTF-8".into(),
        })?;
        Record::parse(text, &lock.user).map_err(|message| Error::Corrupt {
            path: path.clone(),
            message,
        })?;
        archive.move_file(&newest, &self.users, &lock.file_name)?;
        Ok(Some(path))
    }

    /// Users with at least one archived record, sorted.
    pub fn archived_users(&self) -> Result<Vec<String>, Error> {
        let mut users: Vec<String> = self
            .archive_entries()?
            .iter()
            .filter_map(|name| parse_archive_name(name.to_str()?))
            .map(|(user, _, _)| user)
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }

    /// `user`'s archived record names, oldest first.
    fn archive_names(&self, user: &str) -> Result<Vec<(ArchiveStamp, OsString)>, Error> {
        let mut found: Vec<(ArchiveStamp, OsString)> = self
            .archive_entries()?
            .into_iter()
            .filter_map(|name| {
                let (owner, time, n) = parse_archive_name(name.to_str()?)?;
                (owner == user).then_some(((time, n), name))
            })
            .collect();
        found.sort();
        Ok(found)
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

/// When a record was archived: Unix time and a counter for several in one second.
type ArchiveStamp = (u64, u32);

/// `alice.1764000000.toml`, or `alice.1764000000-2.toml` for a second reset in one second.
fn archive_name(encoded: &OsStr, time: u64, n: u32) -> OsString {
    let mut name = encoded.to_os_string();
    if n == 0 {
        name.push(format!(".{time}{RECORD_EXT}"));
    } else {
        name.push(format!(".{time}-{n}{RECORD_EXT}"));
    }
    name
}

fn parse_archive_name(name: &str) -> Option<(String, u64, u32)> {
    let stem = name.strip_suffix(RECORD_EXT)?;
    let (user, stamp) = stem.rsplit_once('.')?;
    let (time, n) = match stamp.split_once('-') {
        Some((time, n)) => (time.parse().ok()?, n.parse().ok()?),
        None => (stamp.parse().ok()?, 0),
    };
    Some((username::decode(user)?, time, n))
}

fn record_name(user: &str) -> Result<OsString, Error> {
    let mut name = username::encode(user)?;
    name.push(RECORD_EXT);
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_round_trip() {
        let name = archive_name(OsStr::new("bob.smith"), 1_800_000_000, 0);
        assert_eq!(name, "bob.smith.1800000000.toml");
        assert_eq!(
            parse_archive_name(name.to_str().unwrap()),
            Some(("bob.smith".into(), 1_800_000_000, 0))
        );
        let name = archive_name(OsStr::new("a%2Fb"), 5, 2);
        assert_eq!(
            parse_archive_name(name.to_str().unwrap()),
            Some(("a/b".into(), 5, 2))
        );
        assert_eq!(parse_archive_name("alice.toml"), None);
        assert_eq!(parse_archive_name(".alice.5.toml.tmp"), None);
    }
}
