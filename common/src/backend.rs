//! What the login core needs from a store of enrollments, as a trait: the file store
//! ([`crate::store::Store`]) in production, [`MemoryBackend`] in the dialogue's unit tests and
//! the fuzz targets (no root, no files), and later other backends.
//!
//! Every change happens under the user's lock ([`Backend::lock`]), taken before anything is
//! read, so that read-modify-write sequences of one user never interleave; or, in the fleet
//! store, as one write conditional on the version it was decided on, which fails with
//! [`Error::Changed`] if another write came in between.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Error;
use crate::record::{Record, RecordError};
use crate::store::PendingId;

/// A record read before the prompt, reused under the lock when it is unchanged.
pub trait Seen: Default {
    fn record(&self) -> Option<&Record>;
}

pub trait Backend {
    type Seen: Seen;
    /// Held while one user's state is read and written; released on drop.
    type Lock;

    /// Reads `user`'s record without the lock (nothing is written with it).
    fn load_seen(&self, user: &str) -> Result<Self::Seen, Error>;
    /// `user`'s lock: held when this returns (the file store), or taken by the first request
    /// that needs it (the fleet store, whose login writes are conditional on the version read
    /// instead, see [`Backend::load_locked`]).
    fn lock(&self, user: &str) -> Result<Self::Lock, Error>;
    /// The locked user's record, reusing `seen` if it is still current. A store whose writes
    /// are conditional on the version read (the fleet's, [`crate::remote`]) may return
    /// `seen`'s record unchecked: a write based on it then fails with [`Error::Changed`],
    /// writing nothing, if the record changed since.
    fn load_locked(&self, lock: &Self::Lock, seen: Self::Seen) -> Result<Option<Record>, Error>;
    /// Writes the whole record durably (enrollment changes, a used emergency code).
    fn save(&self, lock: &Self::Lock, record: &Record) -> Result<(), Error>;
    /// Writes only the login state; `sync`: durably.
    fn save_state(&self, lock: &Self::Lock, record: &Record, sync: bool) -> Result<(), Error>;
    /// Whether a record exists under exactly `user`.
    fn has_record(&self, user: &str) -> Result<bool, Error>;
    /// Keeps a new enrollment confirmed during a login until the stack has succeeded.
    fn save_pending(&self, lock: &Self::Lock, record: &Record) -> Result<PendingId, Error>;
    /// Removes and returns the waiting enrollment `id`, if there and fresh at `now`.
    fn take_pending(
        &self,
        lock: &Self::Lock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error>;
    /// Drops every waiting enrollment of the locked user.
    fn discard_pendings(&self, lock: &Self::Lock) -> Result<usize, Error>;
}

/// What the admin commands and self-service need beyond a login: every user, removal, the
/// archive `twostep reset` and `restore` use, and enrollments begun in self-service. The file
/// store and the fleet store ([`crate::remote::RemoteBackend`]) both provide it, so that every
/// command works on either backend.
pub trait Manage: Backend {
    /// Every user with a record, sorted.
    fn users(&self) -> Result<Vec<String>, Error>;
    /// Users with at least one archived record, sorted.
    fn archived_users(&self) -> Result<Vec<String>, Error>;
    /// The locked user's record (read again under the lock).
    fn load_now(&self, lock: &Self::Lock) -> Result<Option<Record>, Error> {
        self.load_locked(lock, Self::Seen::default())
    }
    /// Deletes the locked user's login state (a damaged one, for `twostep unlock`).
    fn discard_state(&self, lock: &Self::Lock) -> Result<bool, Error>;
    /// Archives the locked user's record with its login state (lockouts and gates cleared);
    /// where it went, or `None` when there was no record.
    fn archive(&self, lock: &Self::Lock, now: u64) -> Result<Option<PathBuf>, Error>;
    /// Puts the newest archived record back; refused while the user has one. Where it came
    /// from, or `None` when nothing is archived.
    fn restore(&self, lock: &Self::Lock) -> Result<Option<PathBuf>, Error>;
    /// Keeps `record` as the user's one enrollment begun (not yet confirmed) in self-service.
    fn save_begun(&self, lock: &Self::Lock, record: &Record) -> Result<PendingId, Error>;
    /// The begun enrollment `id`, if there and fresh at `now`.
    fn load_begun(
        &self,
        lock: &Self::Lock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error>;
    /// Removes the locked user's begun enrollments; how many there were.
    fn discard_begun(&self, lock: &Self::Lock) -> Result<usize, Error>;
}

/// A record read without the lock (nothing is written with it), through [`Backend::load_seen`].
pub fn load<B: Backend>(store: &B, user: &str) -> Result<Option<Record>, Error> {
    let seen = store.load_seen(user)?;
    Ok(seen.record().cloned())
}

/// Enrollments in memory, kept as the texts the file store would write (record file, login
/// state), so that every load goes through the real parsers. Single-threaded: its lock only
/// names the user.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    records: RefCell<BTreeMap<String, String>>,
    states: RefCell<BTreeMap<String, String>>,
    pendings: RefCell<BTreeMap<(String, String), String>>,
    /// Makes every write fail (a full or read-only disk).
    pub fail_writes: std::cell::Cell<bool>,
    /// Another host's write, put in place by the next write, which then fails with
    /// [`Error::Changed`] and writes nothing of its own (as the fleet store's conditional
    /// write does when the record changed since it was read).
    pub written_meanwhile: RefCell<Option<Record>>,
}

/// The user a [`MemoryBackend`] lock is for.
#[derive(Debug)]
pub struct MemoryLock(String);

/// What [`MemoryBackend::load_seen`] read.
#[derive(Debug, Default)]
pub struct MemorySeen(Option<Record>);

impl Seen for MemorySeen {
    fn record(&self) -> Option<&Record> {
        self.0.as_ref()
    }
}

impl MemoryBackend {
    /// Puts raw texts in place, as if a record file and a state file held them (`state` may be
    /// absent): for tests and fuzzing of what a damaged or hostile file does to a login.
    pub fn put_texts(&self, user: &str, record: &str, state: Option<&str>) {
        self.records
            .borrow_mut()
            .insert(user.to_string(), record.to_string());
        match state {
            Some(state) => self
                .states
                .borrow_mut()
                .insert(user.to_string(), state.to_string()),
            None => self.states.borrow_mut().remove(user),
        };
    }

    /// The stored record, parsed (for assertions).
    pub fn record(&self, user: &str) -> Option<Record> {
        self.load(user).ok().flatten()
    }

    /// How many enrollments wait for `user`.
    pub fn pending_count(&self, user: &str) -> usize {
        self.pendings
            .borrow()
            .keys()
            .filter(|(u, _)| u == user)
            .count()
    }

    fn path(user: &str) -> PathBuf {
        PathBuf::from(format!("memory:{user}"))
    }

    fn load(&self, user: &str) -> Result<Option<Record>, Error> {
        let Some(text) = self.records.borrow().get(user).cloned() else {
            return Ok(None);
        };
        let corrupt = |e: RecordError| Error::Corrupt {
            path: Self::path(user),
            message: e.to_string(),
        };
        let mut record = Record::parse(&text, user).map_err(corrupt)?;
        if let Some(state) = self.states.borrow().get(user) {
            record.apply_state(state).map_err(corrupt)?;
        }
        Ok(Some(record))
    }

    fn writable(&self, user: &str) -> Result<(), Error> {
        if self.fail_writes.get() {
            return Err(Error::io(
                Self::path(user),
                "write",
                nix::errno::Errno::ENOSPC,
            ));
        }
        let meanwhile = self.written_meanwhile.borrow_mut().take();
        if let Some(other) = meanwhile {
            let text = other.to_file_text().map_err(text_error(user))?;
            let state = other.state_text().map_err(text_error(user))?;
            self.put_texts(user, &text, Some(&state));
            return Err(Error::Changed);
        }
        Ok(())
    }

    fn check_owner(lock: &MemoryLock, record: &Record) -> Result<(), Error> {
        if record.user != lock.0 {
            return Err(Error::Bug("record and lock name different users".into()));
        }
        Ok(())
    }
}

fn text_error(user: &str) -> impl Fn(RecordError) -> Error + '_ {
    move |e| Error::Corrupt {
        path: MemoryBackend::path(user),
        message: e.to_string(),
    }
}

impl Backend for MemoryBackend {
    type Seen = MemorySeen;
    type Lock = MemoryLock;

    fn load_seen(&self, user: &str) -> Result<MemorySeen, Error> {
        crate::username::encode(user)?;
        Ok(MemorySeen(self.load(user)?))
    }

    fn lock(&self, user: &str) -> Result<MemoryLock, Error> {
        crate::username::encode(user)?;
        Ok(MemoryLock(user.to_string()))
    }

    /// Always reads again: the texts may have changed since `seen` (tests change them).
    fn load_locked(&self, lock: &MemoryLock, _seen: MemorySeen) -> Result<Option<Record>, Error> {
        self.load(&lock.0)
    }

    fn save(&self, lock: &MemoryLock, record: &Record) -> Result<(), Error> {
        Self::check_owner(lock, record)?;
        self.writable(&lock.0)?;
        let text = record.to_file_text().map_err(text_error(&lock.0))?;
        self.records
            .borrow_mut()
            .insert(lock.0.clone(), text.to_string());
        self.save_state(lock, record, true)
    }

    fn save_state(&self, lock: &MemoryLock, record: &Record, _sync: bool) -> Result<(), Error> {
        Self::check_owner(lock, record)?;
        self.writable(&lock.0)?;
        let text = record.state_text().map_err(text_error(&lock.0))?;
        self.states
            .borrow_mut()
            .insert(lock.0.clone(), text.to_string());
        Ok(())
    }

    fn has_record(&self, user: &str) -> Result<bool, Error> {
        Ok(self.records.borrow().contains_key(user))
    }

    fn save_pending(&self, lock: &MemoryLock, record: &Record) -> Result<PendingId, Error> {
        Self::check_owner(lock, record)?;
        self.writable(&lock.0)?;
        let id = PendingId::new()?;
        let text = record.to_full_text().map_err(text_error(&lock.0))?;
        self.pendings
            .borrow_mut()
            .insert((lock.0.clone(), id.as_str().to_string()), text.to_string());
        Ok(id)
    }

    fn take_pending(
        &self,
        lock: &MemoryLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        let key = (lock.0.clone(), id.as_str().to_string());
        let Some(text) = self.pendings.borrow_mut().remove(&key) else {
            return Ok(None);
        };
        let record = Record::parse(&text, &lock.0).map_err(text_error(&lock.0))?;
        let fresh =
            record.created <= now && now - record.created < crate::store::PENDING_LIFETIME_SECS;
        Ok(fresh.then_some(record))
    }

    fn discard_pendings(&self, lock: &MemoryLock) -> Result<usize, Error> {
        let mut pendings = self.pendings.borrow_mut();
        let before = pendings.len();
        pendings.retain(|(user, _), _| *user != lock.0);
        Ok(before - pendings.len())
    }
}
