//! The store of a fleet (`[store] backend = "postgresql"`, docs/fleet.md) as the login core sees
//! it: [`RemoteBackend`], a [`Backend`] over a Unix stream to `twostep serve-store`, the local
//! root service that holds the database connections. The PAM module links no database client
//! and no TLS: it sends and receives the same record and login-state texts the file store
//! writes ([`Record::to_file_text`], [`Record::state_text`]), parsed by the same code.
//!
//! [`LoginStore`] is what a login opens: the file store or the remote one, by the config.
//!
//! The wire ([`wire`]): every message is a frame, a 4-byte big-endian length and that many
//! bytes, holding fields, each a 4-byte big-endian length and UTF-8 text. A request's first
//! field is its verb; an answer's is `ok` or `err` (then one message). One connection is one
//! login's conversation. A login reads with `GET` before the prompt, decides on that record,
//! and writes with `PUTSTATE` (or `PUT`, a used emergency code): one statement conditional on
//! the version `GET` read, committed before it is answered (a login is accepted only once its
//! use of a code is durable in the database); `changed` means another host wrote the record
//! since, and the login decides again under the lock. `LOCK` begins the database transaction
//! that holds the user's row lock (and answers the record), each write under it commits
//! before it is answered, and `UNLOCK` (or the connection's end) ends it.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use zeroize::Zeroizing;

use crate::backend::{Backend, Manage, Seen};
use crate::config::Config;
use crate::error::Error;
use crate::record::{Record, RecordError};
use crate::store::{self, PendingId, Store};
use crate::store_config::{self, StoreConfig};

/// The frame codec shared by the module's client and `twostep serve-store`.
pub mod wire {
    use super::*;

    /// Larger frames are refused (records are at most 64 KiB; state texts smaller).
    pub const MAX_FRAME: usize = 4 * store::MAX_RECORD_BYTES as usize;
    const MAX_FIELDS: usize = 8;

    /// Fields as read, wiped on drop (they may hold a key).
    pub type Fields = Vec<Zeroizing<String>>;

    /// Writes one frame of `fields`.
    pub fn write(mut w: impl Write, fields: &[&str]) -> std::io::Result<()> {
        let body: usize = fields.iter().map(|f| 4 + f.len()).sum();
        if body > MAX_FRAME || fields.len() > MAX_FIELDS {
            return Err(std::io::Error::new(
                ErrorKind::InvalidInput,
                "message too large",
            ));
        }
        let mut frame = Zeroizing::new(Vec::with_capacity(4 + body));
        frame.extend_from_slice(&(body as u32).to_be_bytes());
        for field in fields {
            frame.extend_from_slice(&(field.len() as u32).to_be_bytes());
            frame.extend_from_slice(field.as_bytes());
        }
        w.write_all(&frame)?;
        w.flush()
    }

    /// Reads one frame; `Ok(None)` at a clean end of the stream before a frame began.
    pub fn read(mut r: impl Read) -> std::io::Result<Option<Fields>> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match r.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return Err(bad("frame too large"));
        }
        let mut body = Zeroizing::new(vec![0u8; len]);
        r.read_exact(&mut body)?;
        let mut fields = Vec::new();
        let mut rest: &[u8] = &body;
        while !rest.is_empty() {
            if rest.len() < 4 || fields.len() == MAX_FIELDS {
                return Err(bad("malformed frame"));
            }
            let (n, tail) = rest.split_at(4);
            let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize;
            if n > tail.len() {
                return Err(bad("malformed frame"));
            }
            let (field, tail) = tail.split_at(n);
            let text = std::str::from_utf8(field).map_err(|_| bad("a field is not UTF-8"))?;
            fields.push(Zeroizing::new(text.to_string()));
            rest = tail;
        }
        Ok(Some(fields))
    }

    fn bad(what: &str) -> std::io::Error {
        std::io::Error::new(ErrorKind::InvalidData, what.to_string())
    }
}

/// One connection to `twostep serve-store`, shared by the backend and its lock.
#[derive(Debug)]
struct Conn {
    /// Opened at the first request: a login that needs no record (a trusted network) does
    /// not need the service either.
    stream: Option<UnixStream>,
    socket: PathBuf,
    timeout: std::time::Duration,
    /// A failed exchange leaves the stream out of step: nothing more is sent on it.
    broken: bool,
    /// Counts the requests that set or clear the service's record read outside a lock
    /// (`GET`, `LOCK`): a [`RemoteSeen`] is a write's basis only while it is the latest.
    reads: u64,
}

impl Conn {
    /// Sends `request` and returns the answer's fields after `ok`.
    fn call(&mut self, request: &[&str]) -> Result<wire::Fields, Error> {
        if self.broken {
            return Err(self.failed(Errno::EPIPE));
        }
        if self.stream.is_none() {
            match connect_stream(&self.socket, self.timeout) {
                Ok(stream) => self.stream = Some(stream),
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        let Some(stream) = self.stream.as_ref() else {
            return Err(self.failed(Errno::ENOTCONN));
        };
        let answer = wire::write(stream, request).and_then(|()| wire::read(stream));
        let mut fields = match answer {
            Ok(Some(fields)) => fields,
            Ok(None) => return Err(self.failed(Errno::ECONNRESET)),
            Err(e) => {
                let errno = match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => Errno::ETIMEDOUT,
                    _ => e.raw_os_error().map_or(Errno::EPROTO, Errno::from_raw),
                };
                return Err(self.failed(errno));
            }
        };
        match fields.first().map(|f| f.as_str()) {
            Some("ok") => {
                fields.remove(0);
                Ok(fields)
            }
            Some("err") => Err(Error::Setup(format!(
                "the fleet store (twostep serve-store, {}) refused: {}",
                self.socket.display(),
                fields.get(1).map_or("no reason given", |m| m.as_str())
            ))),
            _ => Err(self.failed(Errno::EPROTO)),
        }
    }

    fn failed(&mut self, errno: Errno) -> Error {
        self.broken = true;
        Error::io(
            self.socket.clone(),
            "talk to twostep serve-store (the fleet store)",
            errno,
        )
    }
}

/// The fleet store through `twostep serve-store`'s socket.
#[derive(Debug)]
pub struct RemoteBackend {
    conn: Rc<RefCell<Conn>>,
}

/// A user's lock on the fleet store. The row lock in the database (the service's open
/// transaction) is taken by the first request that needs it; a login that decides on the
/// record read before the prompt needs none (`Mode::Seen`). `UNLOCK` is sent on drop when
/// the lock was taken.
#[derive(Debug)]
pub struct RemoteLock {
    user: String,
    conn: Rc<RefCell<Conn>>,
    mode: std::cell::Cell<Mode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing asked yet.
    Unsent,
    /// Deciding on the record `GET` read: writes are `PUT`/`PUTSTATE`, conditional on that
    /// record's version, and answer [`Error::Changed`] if it is no longer the current one.
    Seen,
    /// The row lock is held (`LOCK` answered).
    Held,
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        if self.mode.get() != Mode::Held || self.conn.borrow().stream.is_none() {
            return;
        }
        // Every write was committed when it was answered; this only ends the transaction (a
        // failure here loses nothing, and the service rolls back when the connection ends).
        let _ = self.conn.borrow_mut().call(&["UNLOCK"]);
    }
}

/// What [`RemoteBackend::load_seen`] read: the basis of a login's decision and of its write
/// (conditional on this record's version, checked by the database), while it is the last
/// read on its connection.
#[derive(Debug, Default)]
pub struct RemoteSeen {
    record: Option<Record>,
    user: String,
    /// [`Conn::reads`] when it was read (0: nothing read).
    read: u64,
}

impl Seen for RemoteSeen {
    fn record(&self) -> Option<&Record> {
        self.record.as_ref()
    }
}

impl RemoteBackend {
    /// The service at `config.socket`, connected at the first request (see
    /// [`connect_stream`] for what is checked).
    pub fn new(config: &StoreConfig) -> RemoteBackend {
        RemoteBackend {
            conn: Rc::new(RefCell::new(Conn {
                stream: None,
                socket: config.socket.clone(),
                timeout: config.timeout(),
                broken: false,
                reads: 0,
            })),
        }
    }

    fn call(&self, request: &[&str]) -> Result<wire::Fields, Error> {
        self.conn.borrow_mut().call(request)
    }

    fn owned<'a>(&self, lock: &'a RemoteLock) -> Result<&'a str, Error> {
        if !Rc::ptr_eq(&lock.conn, &self.conn) {
            return Err(Error::Bug("a lock of another store connection".into()));
        }
        Ok(&lock.user)
    }

    /// Sends `LOCK` (`bare`: the lock only; else it also answers the record).
    fn send_lock(&self, lock: &RemoteLock, bare: bool) -> Result<wire::Fields, Error> {
        let user = self.owned(lock)?;
        let request: &[&str] = if bare {
            &["LOCK", user, "bare"]
        } else {
            &["LOCK", user]
        };
        let fields = self.call(request)?;
        self.conn.borrow_mut().reads += 1;
        lock.mode.set(Mode::Held);
        Ok(fields)
    }

    /// Takes the row lock and parses the record it answered.
    fn take_lock(&self, lock: &RemoteLock) -> Result<Option<Record>, Error> {
        let fields = self.send_lock(lock, false)?;
        self.parse_found(&lock.user, &fields)
    }

    /// The locked user, with the row lock taken if it is not yet (the requests other than a
    /// login's write need it, and some must work on a record that does not read: `twostep
    /// unlock` of a damaged login state).
    fn held<'a>(&self, lock: &'a RemoteLock) -> Result<&'a str, Error> {
        if lock.mode.get() != Mode::Held {
            self.send_lock(lock, true)?;
        }
        self.owned(lock)
    }

    /// A `PUT`/`PUTSTATE` answer: nothing, or `changed`.
    fn put_answer(&self, fields: &wire::Fields) -> Result<(), Error> {
        match fields.first().map(|f| f.as_str()) {
            None => Ok(()),
            Some("changed") => Err(Error::Changed),
            Some(_) => Err(self.conn.borrow_mut().failed(Errno::EPROTO)),
        }
    }

    /// `record` and `state` fields (or `none`) into a record of `user`.
    fn parse_found(&self, user: &str, fields: &wire::Fields) -> Result<Option<Record>, Error> {
        let corrupt = |e: RecordError| Error::Corrupt {
            path: PathBuf::from(format!("fleet:{user}")),
            message: e.to_string(),
        };
        match fields.first().map(|f| f.as_str()) {
            Some("none") => Ok(None),
            // The record's login state does not read: as a damaged `.state` file, which
            // `twostep unlock` replaces (manage::unlock).
            Some("damaged") if fields.len() == 2 => Err(Error::Corrupt {
                path: PathBuf::from(format!("fleet:{user}.state")),
                message: fields[1].to_string(),
            }),
            Some("record") if fields.len() == 3 => {
                let mut record = Record::parse(&fields[1], user).map_err(corrupt)?;
                record.apply_state(&fields[2]).map_err(corrupt)?;
                Ok(Some(record))
            }
            _ => Err(self.conn.borrow_mut().failed(Errno::EPROTO)),
        }
    }
}

fn text_error(user: &str) -> impl Fn(RecordError) -> Error + '_ {
    move |e| Error::Corrupt {
        path: PathBuf::from(format!("fleet:{user}")),
        message: e.to_string(),
    }
}

impl Backend for RemoteBackend {
    type Seen = RemoteSeen;
    type Lock = RemoteLock;

    fn load_seen(&self, user: &str) -> Result<RemoteSeen, Error> {
        crate::username::encode(user)?;
        let fields = self.call(&["GET", user])?;
        let read = {
            let mut conn = self.conn.borrow_mut();
            conn.reads += 1;
            conn.reads
        };
        Ok(RemoteSeen {
            record: self.parse_found(user, &fields)?,
            user: user.to_string(),
            read,
        })
    }

    /// Sends nothing: the row lock is taken by the first request that needs it.
    fn lock(&self, user: &str) -> Result<RemoteLock, Error> {
        crate::username::encode(user)?;
        Ok(RemoteLock {
            user: user.to_string(),
            conn: Rc::clone(&self.conn),
            mode: std::cell::Cell::new(Mode::Unsent),
        })
    }

    /// `seen`'s record itself when it is this user's and the last read on this connection
    /// (the service keeps its version: the login's write is conditional on it, see
    /// `Mode::Seen`); otherwise the record read under the row lock.
    fn load_locked(&self, lock: &RemoteLock, seen: RemoteSeen) -> Result<Option<Record>, Error> {
        let user = self.owned(lock)?;
        let latest = seen.read != 0 && seen.read == self.conn.borrow().reads;
        match lock.mode.get() {
            Mode::Unsent if latest && seen.user == user && seen.record.is_some() => {
                lock.mode.set(Mode::Seen);
                Ok(seen.record)
            }
            Mode::Unsent | Mode::Seen => self.take_lock(lock),
            Mode::Held => {
                let fields = self.call(&["LOAD"])?;
                self.parse_found(user, &fields)
            }
        }
    }

    fn save(&self, lock: &RemoteLock, record: &Record) -> Result<(), Error> {
        let user = self.owned(lock)?;
        check_owner(user, record)?;
        let text = record.to_file_text().map_err(text_error(user))?;
        let state = record.state_text().map_err(text_error(user))?;
        if lock.mode.get() == Mode::Seen {
            let fields = self.call(&["PUT", user, &text, &state])?;
            return self.put_answer(&fields);
        }
        self.held(lock)?;
        self.call(&["SAVE", &text, &state]).map(drop)
    }

    /// Always durable: the database commits every write (`sync` is the file store's choice).
    fn save_state(&self, lock: &RemoteLock, record: &Record, _sync: bool) -> Result<(), Error> {
        let user = self.owned(lock)?;
        check_owner(user, record)?;
        let state = record.state_text().map_err(text_error(user))?;
        if lock.mode.get() == Mode::Seen {
            let fields = self.call(&["PUTSTATE", user, &state])?;
            return self.put_answer(&fields);
        }
        self.held(lock)?;
        self.call(&["STATE", &state]).map(drop)
    }

    fn has_record(&self, user: &str) -> Result<bool, Error> {
        crate::username::encode(user)?;
        let fields = self.call(&["HAS", user])?;
        match fields.first().map(|f| f.as_str()) {
            Some("yes") => Ok(true),
            Some("no") => Ok(false),
            _ => Err(self.conn.borrow_mut().failed(Errno::EPROTO)),
        }
    }

    fn save_pending(&self, lock: &RemoteLock, record: &Record) -> Result<PendingId, Error> {
        let user = self.held(lock)?;
        check_owner(user, record)?;
        let text = record.to_full_text().map_err(text_error(user))?;
        let fields = self.call(&["PEND", &text])?;
        fields
            .first()
            .and_then(|id| PendingId::parse(id))
            .ok_or_else(|| self.conn.borrow_mut().failed(Errno::EPROTO))
    }

    fn take_pending(
        &self,
        lock: &RemoteLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        let user = self.held(lock)?;
        let fields = self.call(&["TAKE", id.as_str()])?;
        let record = match fields.first().map(|f| f.as_str()) {
            Some("none") => return Ok(None),
            Some("record") if fields.len() == 2 => {
                Record::parse(&fields[1], user).map_err(text_error(user))?
            }
            _ => return Err(self.conn.borrow_mut().failed(Errno::EPROTO)),
        };
        let fresh = record.created <= now && now - record.created < store::PENDING_LIFETIME_SECS;
        Ok(fresh.then_some(record))
    }

    fn discard_pendings(&self, lock: &RemoteLock) -> Result<usize, Error> {
        self.held(lock)?;
        let fields = self.call(&["DISCARD"])?;
        self.count(&fields)
    }
}

impl RemoteBackend {
    /// A sorted name list, asked for page by page (`verb` after the last name of the previous
    /// page) so that no answer outgrows a frame.
    fn names(&self, verb: &str) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = Vec::new();
        loop {
            let after = names.last().cloned().unwrap_or_default();
            let fields = self.call(&[verb, &after])?;
            let (Some(more), Some(page)) = (fields.first(), fields.get(1)) else {
                return Err(self.conn.borrow_mut().failed(Errno::EPROTO));
            };
            let before = names.len();
            names.extend(page.lines().filter(|n| !n.is_empty()).map(str::to_string));
            match more.as_str() {
                "end" => return Ok(names),
                // A page that brings nothing new would loop forever.
                "more" if names.len() > before => {}
                _ => return Err(self.conn.borrow_mut().failed(Errno::EPROTO)),
            }
        }
    }

    /// `none`, or `word` and a description of where.
    fn place(&self, fields: &wire::Fields, word: &str) -> Result<Option<PathBuf>, Error> {
        match (fields.first().map(|f| f.as_str()), fields.get(1)) {
            (Some("none"), _) => Ok(None),
            (Some(w), Some(place)) if w == word => Ok(Some(PathBuf::from(place.as_str()))),
            _ => Err(self.conn.borrow_mut().failed(Errno::EPROTO)),
        }
    }

    fn count(&self, fields: &wire::Fields) -> Result<usize, Error> {
        fields
            .first()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| self.conn.borrow_mut().failed(Errno::EPROTO))
    }
}

impl Manage for RemoteBackend {
    fn users(&self) -> Result<Vec<String>, Error> {
        self.names("USERS")
    }

    fn archived_users(&self) -> Result<Vec<String>, Error> {
        self.names("ARCHIVED")
    }

    fn discard_state(&self, lock: &RemoteLock) -> Result<bool, Error> {
        self.held(lock)?;
        let fields = self.call(&["CLEARSTATE"])?;
        Ok(fields.first().is_some_and(|f| f.as_str() == "yes"))
    }

    fn archive(&self, lock: &RemoteLock, now: u64) -> Result<Option<PathBuf>, Error> {
        self.held(lock)?;
        let fields = self.call(&["ARCHIVE", &now.to_string()])?;
        self.place(&fields, "archived")
    }

    fn restore(&self, lock: &RemoteLock) -> Result<Option<PathBuf>, Error> {
        self.held(lock)?;
        let fields = self.call(&["RESTORE"])?;
        self.place(&fields, "restored")
    }

    fn save_begun(&self, lock: &RemoteLock, record: &Record) -> Result<PendingId, Error> {
        let user = self.held(lock)?;
        check_owner(user, record)?;
        let text = record.to_full_text().map_err(text_error(user))?;
        let fields = self.call(&["BEGIN", &text])?;
        fields
            .first()
            .and_then(|id| PendingId::parse(id))
            .ok_or_else(|| self.conn.borrow_mut().failed(Errno::EPROTO))
    }

    fn load_begun(
        &self,
        lock: &RemoteLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        let user = self.held(lock)?;
        let fields = self.call(&["BEGUN", id.as_str(), &now.to_string()])?;
        match fields.first().map(|f| f.as_str()) {
            Some("none") => Ok(None),
            Some("record") if fields.len() == 2 => Record::parse(&fields[1], user)
                .map(Some)
                .map_err(text_error(user)),
            _ => Err(self.conn.borrow_mut().failed(Errno::EPROTO)),
        }
    }

    fn discard_begun(&self, lock: &RemoteLock) -> Result<usize, Error> {
        self.held(lock)?;
        let fields = self.call(&["UNBEGIN"])?;
        self.count(&fields)
    }
}

fn check_owner(user: &str, record: &Record) -> Result<(), Error> {
    if record.user != user {
        return Err(Error::Bug("record and lock name different users".into()));
    }
    Ok(())
}

/// Connects to the service at `socket`, which must be a socket owned by root in a directory
/// only root can write, served by a root process (SO_PEERCRED); requests time out after
/// `timeout`.
fn connect_stream(socket: &Path, timeout: std::time::Duration) -> Result<UnixStream, Error> {
    check_socket(socket)?;
    let io = |action, e: std::io::Error| {
        let errno = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Errno::ETIMEDOUT,
            _ => e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
        };
        Error::io(socket, action, errno)
    };
    let stream = UnixStream::connect(socket)
        .map_err(|e| io("connect to twostep serve-store (the fleet store)", e))?;
    let peer = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| Error::io(socket, "ask the socket's peer", e))?;
    if peer.uid() != 0 {
        return Err(Error::unsafe_path(
            socket,
            format!("served by uid {}, not root", peer.uid()),
        ));
    }
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| io("set a timeout", e))?;
    Ok(stream)
}

/// The service's socket must be root's and in a directory nobody else can change, so that no
/// other account can stand in for the store.
pub fn check_socket(socket: &Path) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(socket).map_err(|e| {
        Error::io(
            socket,
            "find twostep serve-store's socket (is the service running?)",
            e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
        )
    })?;
    if !meta.file_type().is_socket() {
        return Err(Error::unsafe_path(socket, "not a socket"));
    }
    if meta.uid() != 0 {
        return Err(Error::unsafe_path(socket, "not owned by root"));
    }
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let dir_meta = std::fs::symlink_metadata(dir).map_err(|e| {
        Error::io(
            dir,
            "inspect the socket's directory",
            e.raw_os_error().map_or(Errno::EIO, Errno::from_raw),
        )
    })?;
    if !dir_meta.is_dir() || dir_meta.uid() != 0 || dir_meta.mode() & 0o022 != 0 {
        return Err(Error::unsafe_path(
            dir,
            "the socket's directory must be root's and writable by root only",
        ));
    }
    Ok(())
}

/// The store a login uses: the state directory, or the fleet's database by `[store] backend`.
#[derive(Debug)]
pub enum LoginStore {
    File(Store),
    Remote(RemoteBackend),
}

#[derive(Debug, Default)]
pub enum LoginSeen {
    /// Nothing read (`Seen::default()`).
    #[default]
    Nothing,
    File(store::Seen),
    Remote(RemoteSeen),
}

impl Seen for LoginSeen {
    fn record(&self) -> Option<&Record> {
        match self {
            LoginSeen::Nothing => None,
            LoginSeen::File(seen) => seen.record(),
            LoginSeen::Remote(seen) => seen.record(),
        }
    }
}

#[derive(Debug)]
pub enum LoginLock {
    File(store::UserLock),
    Remote(RemoteLock),
}

impl LoginStore {
    /// Opens what `config` names: [`Store::open`] of `state_dir` for the file backend; the
    /// fleet store's service is connected to at the first request.
    pub fn open(config: &Config) -> Result<LoginStore, Error> {
        match config.store.backend {
            store_config::Backend::File => Store::open(&config.state_dir).map(LoginStore::File),
            store_config::Backend::Postgresql => {
                Ok(LoginStore::Remote(RemoteBackend::new(&config.store)))
            }
        }
    }
}

/// Calls `$method` (a [`Backend`] or [`Manage`] method, of the same name on both) of the
/// store `$store` is, with its lock `$lock` unwrapped as `$l`; a lock of the other kind is a
/// bug.
macro_rules! with_lock {
    ($store:ident, $lock:ident as $l:ident, $method:ident($($arg:expr),*)) => {
        match ($store, $lock) {
            (LoginStore::File(s), LoginLock::File($l)) => Store::$method(s, $($arg),*),
            (LoginStore::Remote(r), LoginLock::Remote($l)) => r.$method($($arg),*),
            _ => Err(mismatch()),
        }
    };
}

fn mismatch() -> Error {
    Error::Bug("a lock of another store".into())
}

impl Backend for LoginStore {
    type Seen = LoginSeen;
    type Lock = LoginLock;

    fn load_seen(&self, user: &str) -> Result<LoginSeen, Error> {
        match self {
            LoginStore::File(s) => Store::load_seen(s, user).map(LoginSeen::File),
            LoginStore::Remote(r) => r.load_seen(user).map(LoginSeen::Remote),
        }
    }

    fn lock(&self, user: &str) -> Result<LoginLock, Error> {
        match self {
            LoginStore::File(s) => Store::lock(s, user).map(LoginLock::File),
            LoginStore::Remote(r) => r.lock(user).map(LoginLock::Remote),
        }
    }

    fn load_locked(&self, lock: &LoginLock, seen: LoginSeen) -> Result<Option<Record>, Error> {
        match (self, lock) {
            (LoginStore::File(s), LoginLock::File(l)) => {
                let seen = match seen {
                    LoginSeen::File(seen) => seen,
                    _ => store::Seen::default(),
                };
                s.load_locked_seen(l, seen)
            }
            (LoginStore::Remote(r), LoginLock::Remote(l)) => {
                let seen = match seen {
                    LoginSeen::Remote(seen) => seen,
                    _ => RemoteSeen::default(),
                };
                r.load_locked(l, seen)
            }
            _ => Err(mismatch()),
        }
    }

    fn save(&self, lock: &LoginLock, record: &Record) -> Result<(), Error> {
        with_lock!(self, lock as l, save(l, record))
    }

    fn save_state(&self, lock: &LoginLock, record: &Record, sync: bool) -> Result<(), Error> {
        with_lock!(self, lock as l, save_state(l, record, sync))
    }

    fn has_record(&self, user: &str) -> Result<bool, Error> {
        match self {
            LoginStore::File(s) => Store::has_record(s, user),
            LoginStore::Remote(r) => r.has_record(user),
        }
    }

    fn save_pending(&self, lock: &LoginLock, record: &Record) -> Result<PendingId, Error> {
        with_lock!(self, lock as l, save_pending(l, record))
    }

    fn take_pending(
        &self,
        lock: &LoginLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        with_lock!(self, lock as l, take_pending(l, id, now))
    }

    fn discard_pendings(&self, lock: &LoginLock) -> Result<usize, Error> {
        with_lock!(self, lock as l, discard_pendings(l))
    }
}

impl LoginStore {
    /// What the admin commands and self-service open: as [`LoginStore::open`], but a file
    /// store's state directory is created when missing (the first enrollment).
    pub fn open_admin(config: &Config) -> Result<LoginStore, Error> {
        match config.store.backend {
            store_config::Backend::File => Store::create(&config.state_dir).map(LoginStore::File),
            store_config::Backend::Postgresql => LoginStore::open(config),
        }
    }
}

impl Manage for LoginStore {
    fn users(&self) -> Result<Vec<String>, Error> {
        match self {
            LoginStore::File(s) => Store::users(s),
            LoginStore::Remote(r) => r.users(),
        }
    }

    fn archived_users(&self) -> Result<Vec<String>, Error> {
        match self {
            LoginStore::File(s) => Store::archived_users(s),
            LoginStore::Remote(r) => r.archived_users(),
        }
    }

    fn discard_state(&self, lock: &LoginLock) -> Result<bool, Error> {
        with_lock!(self, lock as l, discard_state(l))
    }

    fn archive(&self, lock: &LoginLock, now: u64) -> Result<Option<PathBuf>, Error> {
        with_lock!(self, lock as l, archive(l, now))
    }

    fn restore(&self, lock: &LoginLock) -> Result<Option<PathBuf>, Error> {
        with_lock!(self, lock as l, restore(l))
    }

    fn save_begun(&self, lock: &LoginLock, record: &Record) -> Result<PendingId, Error> {
        with_lock!(self, lock as l, save_begun(l, record))
    }

    fn load_begun(
        &self,
        lock: &LoginLock,
        id: &PendingId,
        now: u64,
    ) -> Result<Option<Record>, Error> {
        with_lock!(self, lock as l, load_begun(l, id, now))
    }

    fn discard_begun(&self, lock: &LoginLock) -> Result<usize, Error> {
        with_lock!(self, lock as l, discard_begun(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_refused() {
        let mut buf = Vec::new();
        wire::write(&mut buf, &["SAVE", "a\nb", ""]).unwrap();
        let fields = wire::read(&buf[..]).unwrap().unwrap();
        let fields: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
        assert_eq!(fields, ["SAVE", "a\nb", ""]);
        assert!(wire::read(&b""[..]).unwrap().is_none());
        assert!(wire::read(&buf[..buf.len() - 1]).is_err());
        // A field longer than its frame.
        let mut bad = buf.clone();
        bad[4..8].copy_from_slice(&1000u32.to_be_bytes());
        assert!(wire::read(&bad[..]).is_err());
        // A frame larger than allowed is refused before anything is allocated.
        let huge = (wire::MAX_FRAME as u32 + 1).to_be_bytes();
        assert!(wire::read(&huge[..]).is_err());
        let big = "x".repeat(wire::MAX_FRAME);
        assert!(wire::write(Vec::new(), &[&big]).is_err());
    }

    #[test]
    fn sockets_that_are_not_roots_are_refused() {
        let dir = std::env::temp_dir().join(format!("twostep-remote-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, b"").unwrap();
        let err = check_socket(&file).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        let err = check_socket(&dir.join("absent")).unwrap_err().to_string();
        assert!(err.contains("serve-store"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
