//! The state directory: `users/<user>.toml` records, `users/<user>.state` login state and
//! `locks/<user>.lock` files, all root owned and private. Writers of one user are serialized by
//! that user's lock, taken before anything is read, so a read-modify-write (replay check,
//! lockout count, used emergency code) can never interleave with another login of the same
//! user.
//!
//! The record (key, method, emergency code hashes) changes rarely and is replaced whole: temp
//! file, fdatasync, rename, directory fsync. What every login changes (last used time step,
//! failures and lockouts, last login, grace hosts, the pending mailed code) is the login state,
//! a [`SlotFile`] rewritten in place: crash-safe without a rename, which on ext4 costs more
//! than the rest of a login (docs/reliability.md, "What is synced").

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::Flock;

use crate::error::Error;
use crate::record::Record;
use crate::securefs::{Access, Dir};
use crate::slotfile::SlotFile;
use crate::username;

/// Records are small; anything larger is damage or an attack.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;
const USERS_DIR: &str = "users";
const LOCKS_DIR: &str = "locks";
const ARCHIVE_DIR: &str = "archive";
const PENDING_DIR: &str = "pending";
const PENDING_EXT: &str = ".pending";
/// How long an enrollment confirmed at login waits for `pam_setcred` (docs/pam.md).
pub const PENDING_LIFETIME_SECS: u64 = 600;
/// Enrollments begun by `twostep enroll --begin` (the Cockpit page), waiting for the app's
/// first code: `enrolling/<user>.<id>.begun`, one per user, root only.
const BEGUN_DIR: &str = "enrolling";
const BEGUN_EXT: &str = ".begun";
/// How long a begun enrollment waits for `twostep enroll --confirm-stdin`.
pub const BEGUN_LIFETIME_SECS: u64 = 900;
/// Enrollments a user may have waiting at once; the oldest goes first.
const MAX_PENDING_PER_USER: usize = 8;
const RECORD_EXT: &str = ".toml";
const STATE_EXT: &str = ".state";

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
    /// The state file the record's login state came from, if there was one.
    state: Option<SlotFile>,
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

/// Proof that the caller holds a user's lock; released on drop. It also carries the user's
/// state file once a locked load has read it, for the save that follows.
#[derive(Debug)]
pub struct UserLock {
    user: String,
    file_name: OsString,
    state_name: OsString,
    state: std::cell::RefCell<Option<SlotFile>>,
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
        Ok(UserLock {
            user: user.to_string(),
            file_name: with_ext(&encoded, RECORD_EXT),
            state_name: with_ext(&encoded, STATE_EXT),
            state: std::cell::RefCell::new(None),
            _lock: lock,
        })
    }

    /// Whether a record exists under exactly `user` (checked like a read: an unsafe file is an
    /// error), without reading it.
    pub fn has_record(&self, user: &str) -> Result<bool, Error> {
        let name = with_ext(&username::encode(user)?, RECORD_EXT);
        Ok(self.users.open_file_stat(&name, Access::Private)?.is_some())
    }

    /// Reads `user`'s record without locking; records are replaced atomically, so this sees
    /// a whole old or a whole new one. Use [`Store::load_locked`] to modify.
    pub fn load(&self, user: &str) -> Result<Option<Record>, Error> {
        Ok(self.load_seen(user)?.0.map(|seen| seen.record))
    }

    /// [`Store::load`], keeping the files open so that [`Store::load_locked_seen`] can tell,
    /// with one `fstatat`, whether the record is still the one read here.
    pub fn load_seen(&self, user: &str) -> Result<Seen, Error> {
        let encoded = username::encode(user)?;
        let name = with_ext(&encoded, RECORD_EXT);
        let Some((file, stat)) = self.users.open_file_stat(&name, Access::Private)? else {
            return Ok(Seen(None));
        };
        let bytes = self
            .users
            .read_opened(&file, &stat, &name, MAX_RECORD_BYTES)?;
        let mut record = self.parse(user, &name, &bytes)?;
        let state_name = with_ext(&encoded, STATE_EXT);
        let state = self.read_state(&state_name, &mut record)?;
        Ok(Seen(Some(SeenRecord {
            _file: file,
            version: Version::of(&stat),
            record,
            state,
        })))
    }

    pub fn load_locked(&self, lock: &UserLock) -> Result<Option<Record>, Error> {
        let Some(bytes) =
            self.users
                .read_file(&lock.file_name, Access::Private, MAX_RECORD_BYTES)?
        else {
            return Ok(None);
        };
        let mut record = self.parse(&lock.user, &lock.file_name, &bytes)?;
        let state = self.read_state(&lock.state_name, &mut record)?;
        *lock.state.borrow_mut() = state;
        Ok(Some(record))
    }

    /// [`Store::load_locked`], reusing the record in `seen` when the file under the record's
    /// name is still the one it was read from. The login state is always read again: under the
    /// lock, through the state file `seen` holds if it is still the one under that name.
    pub fn load_locked_seen(&self, lock: &UserLock, seen: Seen) -> Result<Option<Record>, Error> {
        let Some(seen) = seen.0 else {
            return self.load_locked(lock);
        };
        let unchanged = match self.users.stat_file(&lock.file_name, Access::Private)? {
            None => return Ok(None),
            Some(stat) => Version::of(&stat) == seen.version && seen.record.user == lock.user,
        };
        let Some(mut file) = seen.state.filter(|_| unchanged) else {
            return self.load_locked(lock);
        };
        if !file.is_at(&self.users, &lock.state_name)? {
            return self.load_locked(lock);
        }
        let mut record = seen.record;
        let bytes = file.read()?;
        apply_state(&mut record, &bytes, file.path())?;
        *lock.state.borrow_mut() = Some(file);
        Ok(Some(record))
    }

    /// Reads `name`'s login state into `record`; the open state file, if there is one.
    fn read_state(&self, name: &OsStr, record: &mut Record) -> Result<Option<SlotFile>, Error> {
        let Some(mut file) = SlotFile::open(&self.users, name)? else {
            return Ok(None);
        };
        let bytes = file.read()?;
        apply_state(record, &bytes, file.path())?;
        Ok(Some(file))
    }

    fn parse(&self, user: &str, name: &OsStr, bytes: &[u8]) -> Result<Record, Error> {
        parse_record(&self.users, name, bytes, user)
    }

    /// Writes `record` durably: the record file (see [`Dir::replace_file`]), then its login
    /// state (synced). For enrollment changes and used one-time codes. The record goes first:
    /// a crash in between then loses at most the login's bookkeeping, never the fact that an
    /// emergency code was used.
    pub fn save(&self, lock: &UserLock, record: &Record) -> Result<(), Error> {
        self.check_owner(lock, record)?;
        let text = record.to_file_text().map_err(|e| Error::Corrupt {
            path: self.users.path().join(&lock.file_name),
            message: e.to_string(),
        })?;
        self.users.replace_file(&lock.file_name, text.as_bytes())?;
        self.save_state(lock, record, true)
    }

    /// Writes only `record`'s login state, in place; `sync` adds an fdatasync. The record file
    /// must be unchanged since it was loaded under `lock`.
    pub fn save_state(&self, lock: &UserLock, record: &Record, sync: bool) -> Result<(), Error> {
        self.check_owner(lock, record)?;
        let text = record.state_text().map_err(|e| Error::Corrupt {
            path: self.users.path().join(&lock.state_name),
            message: e.to_string(),
        })?;
        match lock.state.borrow_mut().as_mut() {
            Some(file) => file.write(&self.users, &lock.state_name, text.as_bytes(), sync),
            // The first state of this user (or of a new enrollment): a new file, synced.
            None => SlotFile::create(&self.users, &lock.state_name, text.as_bytes()),
        }
    }

    fn check_owner(&self, lock: &UserLock, record: &Record) -> Result<(), Error> {
        if record.user != lock.user {
            return Err(Error::Bug("record and lock name different users".into()));
        }
        Ok(())
    }

    /// Deletes `user`'s login state (the record keeps its own older copy, if any). For
    /// `twostep unlock` of a damaged state file.
    pub fn discard_state(&self, lock: &UserLock) -> Result<bool, Error> {
        *lock.state.borrow_mut() = None;
        self.users.remove_file(&lock.state_name)
    }

    /// Deletes `user`'s record and login state; true when there was a record.
    pub fn remove(&self, lock: &UserLock) -> Result<bool, Error> {
        let removed = self.users.remove_file(&lock.file_name)?;
        self.discard_state(lock)?;
        Ok(removed)
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

    /// Moves `user`'s record, with its login state, to `archive/<user>.<time>.toml` (for
    /// `twostep restore`); the name of the archived file, or `None` when there was no record.
    pub fn archive(&self, lock: &UserLock, now: u64) -> Result<Option<PathBuf>, Error> {
        let Some(mut record) = self.load_locked(lock)? else {
            return Ok(None);
        };
        // Failure counts can run to hundreds of KB at the largest lockout limits, more than a
        // record may be; a restored enrollment starts without lockouts.
        record.lockout.clear();
        // `reset` closes the gates (src/gate.rs): a restored enrollment opens none until its
        // next two-step login.
        record.gates.clear();
        let encoded = username::encode(&lock.user)?;
        let taken = self.archive_names(&lock.user)?;
        let name = (0u32..)
            .map(|n| archive_name(&encoded, now, n))
            .find(|name| !taken.iter().any(|(_, t)| t == name))
            .ok_or_else(|| Error::Bug("no free archive name".into()))?;
        let archive = self.archive_dir()?;
        // The archived record carries the rest of its login state (the last used time step
        // above all), so that a restored enrollment still refuses replays. Written before the live files go:
        // a crash in between leaves the user enrolled, with an archive copy to spare.
        let text = record.to_full_text().map_err(|e| Error::Corrupt {
            path: archive.path().join(&name),
            message: e.to_string(),
        })?;
        archive.replace_file(&name, text.as_bytes())?;
        self.users.remove_file(&lock.file_name)?;
        self.discard_state(lock)?;
        Ok(Some(archive.path().join(name)))
    }

    /// Moves the newest archived record of `user` back into place. Refuses while the user has
    /// a record. The archived file's path, or `None` when nothing is archived.
    pub fn restore(&self, lock: &UserLock) -> Result<Option<PathBuf>, Error> {
        if self.load_locked(lock)?.is_some() {
            return Err(Error::Input(format!(
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
        Record::parse(text, &lock.user).map_err(|e| Error::Corrupt {
            path: path.clone(),
            message: e.to_string(),
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

/// Names one enrollment confirmed during a login and kept in `pending/` until the whole auth
/// stack has succeeded (`pam_setcred`): 16 random bytes as lowercase hex. Not a secret: it only
/// says which of the user's waiting enrollments this login made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingId(String);

impl PendingId {
    const HEX_LEN: usize = 32;

    pub(crate) fn new() -> Result<PendingId, Error> {
        Ok(PendingId(crate::random::hex(&crate::random::bytes(
            Self::HEX_LEN / 2,
        )?)))
    }

    /// Accepts exactly what [`PendingId::as_str`] gives, so an id from outside can never name
    /// another file.
    pub fn parse(text: &str) -> Option<PendingId> {
        let ok = text.len() == Self::HEX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| PendingId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `alice.<id>.pending`.
fn pending_name(encoded: &OsStr, id: &PendingId) -> OsString {
    let mut name = encoded.to_os_string();
    name.push(format!(".{}{PENDING_EXT}", id.as_str()));
    name
}

impl Store {
    /// `pending/`, created only when an enrollment is confirmed at login.
    fn pending_dir(&self, create: bool) -> Result<Option<Dir>, Error> {
        if create {
            return self.root.ensure_subdir(OsStr::new(PENDING_DIR)).map(Some);
        }
        self.root
            .open_subdir(OsStr::new(PENDING_DIR), Some(Access::Private))
    }

    /// Keeps `record`, a new enrollment confirmed during a login, in `pending/` until
    /// [`Store::take_pending`]; durable, root only. Drops the user's expired waiting
    /// enrollments and, past [`MAX_PENDING_PER_USER`], the oldest.
    pub fn save_pending(&self, lock: &UserLock, record: &Record) -> Result<PendingId, Error> {
        self.check_owner(lock, record)?;
        let dir = self
            .pending_dir(true)?
            .ok_or_else(|| Error::Bug("no pending directory".into()))?;
        let encoded = username::encode(&lock.user)?;
        let mut waiting = self.pendings(&dir, &encoded)?;
        waiting.sort_by_key(|(_, created)| *created);
        let now = record.created;
        let expired = |created: u64| now.saturating_sub(created) >= PENDING_LIFETIME_SECS;
        let excess = waiting.len().saturating_sub(MAX_PENDING_PER_USER - 1);
        for (i, (name, created)) in waiting.iter().enumerate() {
            if i < excess || expired(*created) {
                dir.remove_file(name)?;
            }
        }
        let id = PendingId::new()?;
        let name = pending_name(&encoded, &id);
        write_full(&dir, &name, record)?;
        Ok(id)
    }

    /// Removes and returns the waiting enrollment `id` of the locked user, if it is there and
    /// not older than [`PENDING_LIFETIME_SECS`] at `now`.
    pub fn take_pending(
        &self,
        lock: &UserLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        let Some(dir) = self.pending_dir(false)? else {
            return Ok(None);
        };
        let name = pending_name(&username::encode(&lock.user)?, id);
        let Some(bytes) = dir.read_file(&name, Access::Private, MAX_RECORD_BYTES)? else {
            return Ok(None);
        };
        dir.remove_file(&name)?;
        let record = parse_record(&dir, &name, &bytes, &lock.user)?;
        let fresh = record.created <= now && now - record.created < PENDING_LIFETIME_SECS;
        Ok(fresh.then_some(record))
    }

    /// Drops every waiting enrollment of the locked user (`twostep reset`, a new enrollment).
    pub fn discard_pendings(&self, lock: &UserLock) -> Result<usize, Error> {
        let Some(dir) = self.pending_dir(false)? else {
            return Ok(0);
        };
        let waiting = self.pendings(&dir, &username::encode(&lock.user)?)?;
        for (name, _) in &waiting {
            dir.remove_file(name)?;
        }
        Ok(waiting.len())
    }

    /// The user's files in `pending/` with their creation times (0 when unreadable, so that
    /// they count as expired).
    fn pendings(&self, dir: &Dir, encoded: &OsStr) -> Result<Vec<(OsString, u64)>, Error> {
        let prefix = format!("{}.", encoded.to_str().unwrap_or_default());
        let mut found = Vec::new();
        for name in dir.entries()? {
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|rest| rest.strip_suffix(PENDING_EXT))
            else {
                continue;
            };
            if PendingId::parse(id).is_none() {
                continue;
            }
            let created = dir
                .read_file(&name, Access::Private, MAX_RECORD_BYTES)
                .ok()
                .flatten()
                .and_then(|bytes| {
                    let user = username::decode(encoded.to_str()?)?;
                    Record::parse(std::str::from_utf8(&bytes).ok()?, &user).ok()
                })
                .map_or(0, |record| record.created);
            found.push((name, created));
        }
        Ok(found)
    }
}

/// Enrollments begun without a terminal (`twostep enroll --begin`, then `--confirm-stdin`):
/// the new key waits in `enrolling/`, never in `users/`, so a login cannot use it before the
/// app has produced a code. Separate from `pending/` (enrollments confirmed at login).
impl Store {
    fn begun_dir(&self, create: bool) -> Result<Option<Dir>, Error> {
        if create {
            return self.root.ensure_subdir(OsStr::new(BEGUN_DIR)).map(Some);
        }
        self.root
            .open_subdir(OsStr::new(BEGUN_DIR), Some(Access::Private))
    }

    /// The names in `enrolling/` of the locked user's begun enrollments.
    fn begun_names(&self, dir: &Dir, lock: &UserLock) -> Result<Vec<OsString>, Error> {
        let prefix = format!(
            "{}.",
            username::encode(&lock.user)?.to_str().unwrap_or_default()
        );
        Ok(dir
            .entries()?
            .into_iter()
            .filter(|name| {
                name.to_str()
                    .and_then(|n| n.strip_prefix(&prefix))
                    .and_then(|rest| rest.strip_suffix(BEGUN_EXT))
                    .is_some_and(|id| PendingId::parse(id).is_some())
            })
            .collect())
    }

    /// Keeps `record` (an unconfirmed enrollment; its `created` is when it was begun) as the
    /// user's one begun enrollment, replacing any earlier one; durable, root only.
    pub fn save_begun(&self, lock: &UserLock, record: &Record) -> Result<PendingId, Error> {
        self.check_owner(lock, record)?;
        let dir = self
            .begun_dir(true)?
            .ok_or_else(|| Error::Bug("no enrolling directory".into()))?;
        for name in self.begun_names(&dir, lock)? {
            dir.remove_file(&name)?;
        }
        let id = PendingId::new()?;
        let mut name = username::encode(&lock.user)?;
        name.push(format!(".{}{BEGUN_EXT}", id.as_str()));
        write_full(&dir, &name, record)?;
        Ok(id)
    }

    /// The begun enrollment `id` of the locked user, if it is still there and younger than
    /// [`BEGUN_LIFETIME_SECS`] at `now` (an expired one is removed). It stays until
    /// [`Store::discard_begun`].
    pub fn load_begun(
        &self,
        lock: &UserLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        let Some(dir) = self.begun_dir(false)? else {
            return Ok(None);
        };
        let mut name = username::encode(&lock.user)?;
        name.push(format!(".{}{BEGUN_EXT}", id.as_str()));
        let Some(bytes) = dir.read_file(&name, Access::Private, MAX_RECORD_BYTES)? else {
            return Ok(None);
        };
        let record = parse_record(&dir, &name, &bytes, &lock.user)?;
        if record.created <= now && now - record.created < BEGUN_LIFETIME_SECS {
            return Ok(Some(record));
        }
        dir.remove_file(&name)?;
        Ok(None)
    }

    /// Removes every begun enrollment of the locked user; how many there were.
    pub fn discard_begun(&self, lock: &UserLock) -> Result<usize, Error> {
        let Some(dir) = self.begun_dir(false)? else {
            return Ok(0);
        };
        let names = self.begun_names(&dir, lock)?;
        for name in &names {
            dir.remove_file(name)?;
        }
        Ok(names.len())
    }
}

impl crate::backend::Seen for Seen {
    fn record(&self) -> Option<&Record> {
        Seen::record(self)
    }
}

/// The file store as the login core sees it; each method is the `Store` method of that name
/// (`load_locked` is [`Store::load_locked_seen`]).
impl crate::backend::Backend for Store {
    type Seen = Seen;
    type Lock = UserLock;

    fn load_seen(&self, user: &str) -> Result<Seen, Error> {
        Store::load_seen(self, user)
    }
    fn lock(&self, user: &str) -> Result<UserLock, Error> {
        Store::lock(self, user)
    }
    fn load_locked(&self, lock: &UserLock, seen: Seen) -> Result<Option<Record>, Error> {
        Store::load_locked_seen(self, lock, seen)
    }
    fn save(&self, lock: &UserLock, record: &Record) -> Result<(), Error> {
        Store::save(self, lock, record)
    }
    fn save_state(&self, lock: &UserLock, record: &Record, sync: bool) -> Result<(), Error> {
        Store::save_state(self, lock, record, sync)
    }
    fn has_record(&self, user: &str) -> Result<bool, Error> {
        Store::has_record(self, user)
    }
    fn save_pending(&self, lock: &UserLock, record: &Record) -> Result<PendingId, Error> {
        Store::save_pending(self, lock, record)
    }
    fn take_pending(
        &self,
        lock: &UserLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        Store::take_pending(self, lock, id, now)
    }
    fn discard_pendings(&self, lock: &UserLock) -> Result<usize, Error> {
        Store::discard_pendings(self, lock)
    }
}

impl crate::backend::Manage for Store {
    fn users(&self) -> Result<Vec<String>, Error> {
        Store::users(self)
    }
    fn archived_users(&self) -> Result<Vec<String>, Error> {
        Store::archived_users(self)
    }
    fn discard_state(&self, lock: &UserLock) -> Result<bool, Error> {
        Store::discard_state(self, lock)
    }
    fn archive(&self, lock: &UserLock, now: u64) -> Result<Option<PathBuf>, Error> {
        Store::archive(self, lock, now)
    }
    fn restore(&self, lock: &UserLock) -> Result<Option<PathBuf>, Error> {
        Store::restore(self, lock)
    }
    fn save_begun(&self, lock: &UserLock, record: &Record) -> Result<PendingId, Error> {
        Store::save_begun(self, lock, record)
    }
    fn load_begun(
        &self,
        lock: &UserLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        Store::load_begun(self, lock, id, now)
    }
    fn discard_begun(&self, lock: &UserLock) -> Result<usize, Error> {
        Store::discard_begun(self, lock)
    }
}

/// Reads a record file `name` of `dir` (its bytes) for `user`.
fn parse_record(dir: &Dir, name: &OsStr, bytes: &[u8], user: &str) -> Result<Record, Error> {
    let path = || dir.path().join(name);
    let text = std::str::from_utf8(bytes).map_err(|_| Error::Corrupt {
        path: path(),
        message: "not valid UTF-8".into(),
    })?;
    Record::parse(text, user).map_err(|e| Error::Corrupt {
        path: path(),
        message: e.to_string(),
    })
}

/// Writes `record` with its login state folded in as `name` in `dir` (waiting enrollments).
fn write_full(dir: &Dir, name: &OsStr, record: &Record) -> Result<(), Error> {
    let text = record.to_full_text().map_err(|e| Error::Corrupt {
        path: dir.path().join(name),
        message: e.to_string(),
    })?;
    dir.replace_file(name, text.as_bytes())
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
    Ok(with_ext(&username::encode(user)?, RECORD_EXT))
}

fn with_ext(encoded: &OsStr, ext: &str) -> OsString {
    let mut name = encoded.to_os_string();
    name.push(ext);
    name
}

fn apply_state(record: &mut Record, bytes: &[u8], path: &Path) -> Result<(), Error> {
    let corrupt = |message: String| Error::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not valid UTF-8".into()))?;
    record.apply_state(text).map_err(|e| corrupt(e.to_string()))
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
