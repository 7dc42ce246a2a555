//! `twostep serve-store`: the local root service between pam_twostep and the fleet's
//! PostgreSQL database (docs/fleet.md). It listens on a Unix socket (systemd's, LISTEN_FDS, or
//! bound here, root only), accepts uid-0 peers only (SO_PEERCRED), and serves each connection
//! (one login's conversation, `common/src/remote.rs`) on the thread that accepted it (several
//! wait in `accept`, [`acceptor`]) with a database connection from a small pool, each
//! connection preparing a statement once.
//!
//! A login's answer is decided on the record `GET` read before the prompt, and written with
//! `PUTSTATE` (or `PUT`): one statement, in a transaction of its own, conditional on the
//! version read (versions come from one sequence and never repeat) and, for a TOTP step, on
//! `last_step` being earlier ([`db::update`]). If the row changed since, the answer is
//! `changed` and the login decides again under the lock.
//!
//! `LOCK` begins a transaction and takes the user's row in `twostep_locks` with `SELECT … FOR
//! UPDATE`, so that what is decided under it serializes with every host, and answers the
//! record. Every write under it is conditional on the version read there too, and commits
//! before it is answered: a login is accepted only once its use of a code is in the database.
//! The row lock is taken again by the next request that needs it (most send only `UNLOCK`);
//! `UNLOCK`, or the connection's end, ends what is open with a rollback (nothing uncommitted
//! is ever in it).

use crate::error::CliError;
use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use nix::sys::socket::{getsockopt, sockopt};
use twostep_common::audit::{Level, Sink, Syslog, field};
use twostep_common::config::Config;
use twostep_common::record::Record;
use twostep_common::remote::wire;
use twostep_common::store::{BEGUN_LIFETIME_SECS, PENDING_LIFETIME_SECS};
use twostep_common::store_config::{Backend, StoreConfig};
use twostep_common::username;
use zeroize::Zeroizing;

use super::db::{self, Db, Sql};
use super::seal::FleetKey;

/// Connections served at once; more are answered with an error at once.
const MAX_CONNECTIONS: usize = 128;
/// Threads kept waiting for connections after a burst.
const MAX_WAITING: usize = 4;
/// Idle database connections kept for the next logins.
const POOL_SIZE: usize = 8;
/// A login's connection may wait this long between requests while the user types (outside a
/// lock); a lock is never held while waiting for the user.
const IDLE_UNLOCKED: Duration = Duration::from_secs(15 * 60);
const MAX_PENDING_PER_USER: i64 = 8;

#[derive(Debug, Args)]
pub struct ServeStoreArgs {
    /// Bind this socket instead of [store] socket, /run/twostep/store.sock (ignored when
    /// systemd passes the socket: LISTEN_FDS)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Also print every event to standard error (running by hand, tests); the service never
    /// forks in any case
    #[arg(long)]
    pub foreground: bool,
}

struct Inner {
    store: StoreConfig,
    host_id: String,
    key: FleetKey,
    pool: Mutex<Vec<Db>>,
    connections: AtomicUsize,
    /// Threads serving or waiting for connections, and those waiting ([`acceptor`]).
    threads: AtomicUsize,
    waiting: AtomicUsize,
    log_socket: PathBuf,
    foreground: bool,
}

impl Inner {
    fn log(&self, level: Level, line: &str) {
        Syslog::open(&self.log_socket, "twostep-store").log(level, line);
        if self.foreground {
            eprintln!("twostep serve-store: {line}");
        }
    }

    /// A pooled database connection, or a new one (whose schema and key are checked).
    /// Also whether it was an idle one (which may have died with a database restart).
    fn take_db(&self) -> Result<(Db, bool), String> {
        while let Some(client) = self.pool.lock().map_err(|_| "pool poisoned")?.pop() {
            if !client.is_closed() {
                return Ok((client, true));
            }
        }
        let mut client = db::connect(&self.store)?;
        db::check_schema(&mut client, &self.key)?;
        Ok((Db::new(client), false))
    }

    fn give_back(&self, client: Db) {
        if client.is_closed() {
            return;
        }
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < POOL_SIZE {
                pool.push(client);
            }
        }
    }
}

pub fn run(config_path: &Path, args: &ServeStoreArgs) -> Result<(), CliError> {
    let config = Config::load(config_path)?;
    if config.store.backend != Backend::Postgresql {
        return Err(CliError::Refused(format!(
            "{}: [store] backend is not \"postgresql\"; serve-store serves the fleet store only",
            config_path.display()
        )));
    }
    let key = FleetKey::load(&config.store.key_file).map_err(CliError::Fleet)?;
    let inner = Arc::new(Inner {
        host_id: config.store.host_id(),
        store: config.store.clone(),
        key,
        pool: Mutex::new(Vec::new()),
        connections: AtomicUsize::new(0),
        threads: AtomicUsize::new(0),
        waiting: AtomicUsize::new(0),
        log_socket: config.log.socket.clone(),
        foreground: args.foreground,
    });
    // A database that is down now may be up for the first login; a wrong key or schema is an
    // installation error, refused here where the admin sees it.
    match db::connect(&inner.store) {
        Ok(mut client) => {
            if let Err(e) = db::check_schema(&mut client, &inner.key) {
                inner.log(Level::Error, &format!("fleet store not started: {e}"));
                return Err(CliError::Fleet(e));
            }
            inner.give_back(Db::new(client));
        }
        Err(e) => inner.log(
            Level::Warning,
            &format!(
                "fleet database unreachable at start (logins fail until it is up) {}",
                field("detail", &e.to_string())
            ),
        ),
    }
    let (listener, bound) = listener(args, &config.store)?;
    let name = bound
        .as_deref()
        .map_or_else(|| "systemd socket".to_string(), |p| p.display().to_string());
    inner.log(
        Level::Info,
        &format!(
            "fleet store listening {} {}",
            field("socket", &name),
            field("host_id", &inner.host_id)
        ),
    );
    let listener = Arc::new(listener);
    inner.threads.fetch_add(1, Ordering::SeqCst);
    acceptor(&inner, &listener, true);
    Ok(())
}

/// Waits for connections and serves each on this thread. Several threads wait in `accept` on
/// the one socket, and the kernel wakes one of them for a new connection, which it then
/// serves: no hand-over to another thread (a wake-up fewer per login than a thread started
/// for each connection). When the last waiting thread takes a connection, it starts another
/// to wait meanwhile; a thread that finds enough others waiting after its connection ends.
/// `permanent`: the service's main thread, which never ends.
fn acceptor(inner: &Arc<Inner>, listener: &Arc<UnixListener>, permanent: bool) {
    loop {
        inner.waiting.fetch_add(1, Ordering::SeqCst);
        let accepted = listener.accept();
        if inner.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            spawn_acceptor(inner, listener);
        }
        match accepted {
            Ok((stream, _)) => serve_connection(inner, stream),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("twostep serve-store: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if !permanent && inner.waiting.load(Ordering::SeqCst) >= MAX_WAITING {
            break;
        }
    }
    inner.threads.fetch_sub(1, Ordering::SeqCst);
}

/// Starts a thread to wait for connections, unless there are as many as may be (one more than
/// [`MAX_CONNECTIONS`]: that one answers "busy").
fn spawn_acceptor(inner: &Arc<Inner>, listener: &Arc<UnixListener>) {
    if inner.threads.fetch_add(1, Ordering::SeqCst) > MAX_CONNECTIONS {
        inner.threads.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let (inner, listener) = (Arc::clone(inner), Arc::clone(listener));
    let spawned = std::thread::Builder::new()
        .name("store".into())
        .spawn(move || acceptor(&inner, &listener, false));
    if let Err(e) = spawned {
        eprintln!("twostep serve-store: cannot start a thread: {e}");
    }
}

fn serve_connection(inner: &Inner, stream: UnixStream) {
    let Ok(cred) = getsockopt(&stream, sockopt::PeerCredentials) else {
        return;
    };
    let _ = stream.set_write_timeout(Some(inner.store.timeout()));
    if cred.uid() != 0 {
        // Logins run as root; anybody else has no business with the store.
        let _ = send(&stream, &["err", "only root may use the fleet store"]);
        return;
    }
    if inner.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        inner.connections.fetch_sub(1, Ordering::SeqCst);
        let _ = send(&stream, &["err", "the fleet store is busy; try again"]);
        return;
    }
    let mut conn = Conn {
        inner,
        db: None,
        reused: false,
        locked: None,
        seen: None,
    };
    conn.serve(&stream);
    conn.finish();
    inner.connections.fetch_sub(1, Ordering::SeqCst);
}

/// One login's connection.
struct Conn<'a> {
    inner: &'a Inner,
    /// Held while locked; otherwise taken for a request and given back.
    db: Option<Db>,
    /// Whether `db` came idle from the pool.
    reused: bool,
    locked: Option<Locked>,
    /// What the last `GET` read, outside a lock: the basis of a `PUT` or `PUTSTATE`.
    seen: Option<(String, Loaded)>,
}

struct Locked {
    user: String,
    /// Whether the transaction holding the row lock is open. A write commits it, and the lock
    /// is taken again only by the next request that needs it (most logins need none: UNLOCK
    /// follows), which is what taking it again at once would give: another host may take the
    /// lock in between either way, and the next write is then refused by its version check.
    in_transaction: bool,
    /// What `LOAD` read: the record (none: no row) and its version and step.
    loaded: Option<Loaded>,
}

struct Loaded {
    record: Option<Record>,
    version: i64,
    last_step: i64,
}

impl From<Option<db::Stored>> for Loaded {
    fn from(found: Option<db::Stored>) -> Loaded {
        match found {
            Some(s) => Loaded {
                record: Some(s.record),
                version: s.version,
                last_step: s.last_step,
            },
            None => Loaded {
                record: None,
                version: 0,
                last_step: 0,
            },
        }
    }
}

type Answer = Result<Vec<Zeroizing<String>>, String>;

fn ok(fields: &[&str]) -> Answer {
    Ok(fields
        .iter()
        .map(|f| Zeroizing::new(f.to_string()))
        .collect())
}

impl Conn<'_> {
    fn serve(&mut self, stream: &UnixStream) {
        loop {
            let idle = if self.locked.is_some() {
                // A root client that stops talking while holding a user's lock: give it up.
                self.inner.store.timeout() * 2
            } else {
                IDLE_UNLOCKED
            };
            let _ = stream.set_read_timeout(Some(idle));
            let request = match wire::read(stream) {
                Ok(Some(request)) => request,
                Ok(None) | Err(_) => return,
            };
            let verb = request.first().map_or("", |v| v.as_str()).to_string();
            let answer = self.answer(&verb, &request[1..]);
            let sent = match &answer {
                Ok(fields) => {
                    let mut all = vec!["ok"];
                    all.extend(fields.iter().map(|f| f.as_str()));
                    send(stream, &all)
                }
                Err(message) => {
                    let user = self.locked.as_ref().map_or("", |l| l.user.as_str());
                    self.inner.log(
                        Level::Error,
                        &format!(
                            "fleet store {} {} {}",
                            field("request", &verb),
                            field("user", user),
                            field("detail", message)
                        ),
                    );
                    send(stream, &["err", message])
                }
            };
            if answer.is_err() && self.locked.is_some() {
                // Nothing half-done stays: the transaction ends with the failure.
                self.unlock();
            }
            if sent.is_err() {
                return;
            }
            if self.locked.is_none() {
                if let Some(client) = self.db.take() {
                    self.inner.give_back(client);
                }
            }
        }
    }

    /// At the connection's end: a transaction still open is rolled back (its writes were all
    /// committed when they were answered).
    fn finish(&mut self) {
        if self.locked.is_some() {
            self.unlock();
        }
        if let Some(client) = self.db.take() {
            self.inner.give_back(client);
        }
    }

    /// Gives up the lock: what is open is rolled back (every write was committed when it was
    /// answered, so only the row lock, or a failed request's half, is in it).
    fn unlock(&mut self) {
        let open = self.locked.take().is_some_and(|l| l.in_transaction);
        if !open {
            return;
        }
        if let Some(client) = self.db.as_mut() {
            if client.batch("ROLLBACK").is_err() {
                self.db = None;
            }
        }
    }

    fn db(&mut self) -> Result<&mut Db, String> {
        if self.db.is_none() {
            let (client, reused) = self.inner.take_db()?;
            self.db = Some(client);
            self.reused = reused;
        }
        self.db
            .as_mut()
            .ok_or_else(|| "no database connection".to_string())
    }

    fn answer(&mut self, verb: &str, args: &[Zeroizing<String>]) -> Answer {
        let arg = |i: usize| args.get(i).map(|a| a.as_str()).ok_or("missing argument");
        match verb {
            "GET" | "HAS" | "LOCK" => {
                let user = arg(0)?;
                username::encode(user).map_err(|e| e.to_string())?;
                // `LOCK user bare`: the lock only, for an admin's change that must work on a
                // record that does not read (`twostep unlock` of a damaged login state).
                let bare = verb == "LOCK" && args.get(1).is_some_and(|a| a.as_str() == "bare");
                let first = self.unlocked(verb, user, bare);
                if first.is_err() && self.retry_on_new_connection() {
                    // These requests only read, or begin a transaction that died with the
                    // connection.
                    return self.unlocked(verb, user, bare);
                }
                first
            }
            "USERS" => self.names(arg(0)?, false),
            "ARCHIVED" => self.names(arg(0)?, true),
            "LOAD" => self.load(),
            "SAVE" => self.save(arg(0)?, arg(1)?),
            "STATE" => self.save_state(arg(0)?),
            "PUT" | "PUTSTATE" => {
                let user = arg(0)?;
                let (state, text) = match verb {
                    "PUT" => (arg(2)?, Some(arg(1)?)),
                    _ => (arg(1)?, None),
                };
                let first = self.put(user, state, text);
                if first.is_err() && self.retry_on_new_connection() {
                    // Safe to send again: the write is conditional on the version read, so
                    // if the first one did commit, this one answers `changed`.
                    return self.put(user, state, text);
                }
                first
            }
            "PEND" => self.pend(arg(0)?),
            "TAKE" => self.take(arg(0)?),
            "DISCARD" => self.discard(),
            "CLEARSTATE" => self.clear_state(),
            "ARCHIVE" => self.archive(number(arg(0)?)?),
            "RESTORE" => self.restore(),
            "BEGIN" => self.begin(arg(0)?),
            "BEGUN" => self.begun(arg(0)?, number(arg(1)?)?),
            "UNBEGIN" => self.unbegin(),
            "UNLOCK" => {
                if self.locked.is_some() {
                    // A rollback, not a commit: what is open only holds the row lock, and a
                    // commit of its `FOR UPDATE` would wait for a second WAL flush.
                    self.unlock();
                }
                ok(&[])
            }
            _ => Err("unknown request".into()),
        }
    }

    /// After a failed request outside a lock: whether it failed on an idle connection that
    /// died with a database restart (not a timeout on a live one), which is then dropped so
    /// that the request can be tried once more on a new connection.
    fn retry_on_new_connection(&mut self) -> bool {
        let dead = self.db.as_ref().is_none_or(Db::is_closed);
        if self.reused && dead && self.locked.is_none() {
            self.db = None;
            return true;
        }
        false
    }

    /// The requests outside a lock: a read, or taking the lock.
    fn unlocked(&mut self, verb: &str, user: &str, bare: bool) -> Answer {
        match verb {
            "GET" => {
                let inner = self.inner;
                let found = match db::read_found(self.db()?, &inner.key, user)? {
                    db::Found::DamagedState(message) => return damaged_answer(&message),
                    db::Found::Stored(stored) => Some(*stored),
                    db::Found::None => None,
                };
                let answer = found_answer(found.as_ref().map(|s| &s.record));
                if self.locked.is_none() {
                    self.seen = Some((user.to_string(), Loaded::from(found)));
                }
                answer
            }
            "HAS" => {
                let row = self
                    .db()?
                    .query_opt(
                        "SELECT 1 FROM twostep_records WHERE username = $1",
                        &[&user],
                    )
                    .map_err(pg)?;
                ok(&[if row.is_some() { "yes" } else { "no" }])
            }
            _ => self.lock(user, bare),
        }
    }

    /// Takes the row lock and answers the record as `LOAD` does (a login needs both), or,
    /// `bare`, nothing.
    fn lock(&mut self, user: &str, bare: bool) -> Answer {
        if self.locked.is_some() {
            return Err("a lock is already held on this connection".into());
        }
        self.seen = None;
        take_row_lock(self.db()?, user)?;
        self.locked = Some(Locked {
            user: user.to_string(),
            in_transaction: true,
            loaded: None,
        });
        if bare {
            return ok(&[]);
        }
        self.load()
    }

    /// The locked user, with the row lock held again if a commit ended its transaction.
    fn user(&mut self) -> Result<String, String> {
        let (user, open) = self
            .locked
            .as_ref()
            .map(|l| (l.user.clone(), l.in_transaction))
            .ok_or_else(|| "no lock held".to_string())?;
        if !open {
            take_row_lock(self.db()?, &user)?;
            if let Some(locked) = self.locked.as_mut() {
                locked.in_transaction = true;
            }
        }
        Ok(user)
    }

    fn load(&mut self) -> Answer {
        let user = self.user()?;
        let inner = self.inner;
        let found = match db::read_found(self.db()?, &inner.key, &user)? {
            // The lock stays: `twostep unlock` clears the state under it (CLEARSTATE). No
            // write is based on this read (`loaded` stays empty).
            db::Found::DamagedState(message) => return damaged_answer(&message),
            db::Found::Stored(stored) => Some(*stored),
            db::Found::None => None,
        };
        let answer = found_answer(found.as_ref().map(|s| &s.record));
        if let Some(locked) = self.locked.as_mut() {
            locked.loaded = Some(Loaded::from(found));
        }
        answer
    }

    fn save(&mut self, file_text: &str, state: &str) -> Answer {
        let user = self.user()?;
        let record = self.to_write(&user, state, Some(file_text))?;
        if self.locked.as_ref().is_some_and(|l| l.loaded.is_none()) {
            // A whole record replacing what is there (an admin's `enroll --force`): the write
            // is still conditional on the version read now, under the lock.
            self.load()?;
        }
        self.write(&user, &record, false)
    }

    fn save_state(&mut self, state: &str) -> Answer {
        let user = self.user()?;
        let record = self.to_write(&user, state, None)?;
        self.write(&user, &record, true)
    }

    /// The record a write sends: `file_text` (a whole record), or the record of the write's
    /// [`basis`](Self::basis), with the login state `state`.
    fn to_write(&self, user: &str, state: &str, file_text: Option<&str>) -> Result<Record, String> {
        let mut record = match file_text {
            Some(text) => Record::parse(text, user).map_err(|e| e.to_string())?,
            None => self
                .basis(user)?
                .record
                .clone()
                .ok_or("no record to save the login state of")?,
        };
        record.apply_state(state).map_err(|e| e.to_string())?;
        Ok(record)
    }

    /// What a write of `user`'s record is conditional on: under the lock, what `LOCK` or `LOAD`
    /// read; without it, what the last `GET` read of `user`.
    fn basis(&self, user: &str) -> Result<&Loaded, String> {
        match (&self.locked, &self.seen) {
            (Some(locked), _) => locked
                .loaded
                .as_ref()
                .ok_or_else(|| "write without a locked read (LOAD) first".to_string()),
            (None, Some((seen_user, loaded))) if seen_user == user => Ok(loaded),
            (None, _) => Err("write without a lock or a read of this user first".into()),
        }
    }

    fn basis_mut(&mut self) -> Option<&mut Loaded> {
        match self.locked.as_mut() {
            Some(locked) => locked.loaded.as_mut(),
            None => self.seen.as_mut().map(|(_, loaded)| loaded),
        }
    }

    /// Writes `record` conditional on its [`basis`](Self::basis): under the lock, then
    /// commits (the lock is taken again by the next request that needs it); without it, in a
    /// transaction of its own, answering `changed` when the row is not the one read.
    fn write(&mut self, user: &str, record: &Record, state_only: bool) -> Answer {
        let locked = self.locked.is_some();
        let (version, loaded_step, existed, loaded_login) = {
            let loaded = self.basis(user)?;
            let login = loaded
                .record
                .as_ref()
                .and_then(|r| r.last_login.as_ref())
                .map(|l| l.time);
            (
                loaded.version,
                loaded.last_step,
                loaded.record.is_some(),
                login,
            )
        };
        if !locked && !existed {
            return Err("a new record is written under the lock only".into());
        }
        let inner = self.inner;
        // A login that this write records happened on this host (`twostep status` shows it).
        let mut record = record.clone();
        if let Some(last) = record.last_login.as_mut() {
            if Some(last.time) != loaded_login {
                last.host_id = inner.host_id.clone();
            }
        }
        let record = &record;
        let sealed = if state_only && existed {
            db::seal_state(record)?
        } else {
            db::seal(&inner.key, record)?
        };
        let client = self.db()?;
        let written = if existed {
            db::update(
                client,
                &sealed,
                user,
                &inner.host_id,
                version,
                loaded_step,
                !locked,
            )?
        } else {
            db::insert(client, &sealed, user, &inner.host_id)?
        };
        let Some(new_version) = written else {
            if !locked {
                // Another host (or an admin) changed the record since it was read: the login
                // decides again on the current one, under the lock.
                return ok(&["changed"]);
            }
            return Err(
                "the record changed in the fleet database meanwhile (a code used on another \
                 host?): refusing"
                    .into(),
            );
        };
        if locked {
            client.batch("COMMIT").map_err(pg)?;
        }
        if let Some(locked) = self.locked.as_mut() {
            locked.in_transaction = false;
        }
        if let Some(loaded) = self.basis_mut() {
            loaded.version = new_version;
            loaded.last_step = loaded.last_step.max(db::step_of(record));
            loaded.record = Some(record.clone());
        }
        ok(&[])
    }

    /// `PUT`/`PUTSTATE`: a login's write based on what `GET` read before the prompt, without
    /// the row lock. One conditional statement (on the version read, and for a TOTP step on
    /// `last_step`) decides, as under the lock; a login then needs one request after the
    /// prompt instead of three. `file_text`: the whole record (an emergency code used), else
    /// the login state only.
    fn put(&mut self, user: &str, state: &str, file_text: Option<&str>) -> Answer {
        if self.locked.is_some() {
            return Err("PUT under a lock (SAVE and STATE write there)".into());
        }
        let record = self.to_write(user, state, file_text)?;
        self.write(user, &record, file_text.is_none())
    }

    /// Commits what the request wrote (the lock is taken again by the next request that
    /// needs it, see [`Locked::in_transaction`]).
    fn commit(&mut self) -> Result<(), String> {
        self.db()?.batch("COMMIT").map_err(pg)?;
        if let Some(locked) = self.locked.as_mut() {
            locked.in_transaction = false;
        }
        Ok(())
    }

    fn pend(&mut self, full_text: &str) -> Answer {
        let user = self.user()?;
        let record = Record::parse(full_text, &user).map_err(|e| e.to_string())?;
        let created = i64::try_from(record.created).map_err(|_| "bad creation time")?;
        let lifetime = PENDING_LIFETIME_SECS as i64;
        let id = twostep_common::random::hex(
            &twostep_common::random::bytes(16).map_err(|e| e.to_string())?,
        );
        let sealed = self
            .inner
            .key
            .seal("pending", &user, full_text.as_bytes())?;
        let client = self.db()?;
        client
            .execute(
                "DELETE FROM twostep_pending WHERE username = $1 AND kind = 'login' AND \
                 (created <= $2 OR id IN (SELECT id FROM twostep_pending WHERE username = $1 \
                 AND kind = 'login' ORDER BY created DESC OFFSET $3))",
                &[&user, &(created - lifetime), &(MAX_PENDING_PER_USER - 1)],
            )
            .map_err(pg)?;
        client
            .execute(
                "INSERT INTO twostep_pending (username, id, sealed, created) VALUES ($1, $2, $3, $4)",
                &[&user, &id, &sealed, &created],
            )
            .map_err(pg)?;
        self.commit()?;
        ok(&[&id])
    }

    fn take(&mut self, id: &str) -> Answer {
        let user = self.user()?;
        let row = self
            .db()?
            .query_opt(
                "DELETE FROM twostep_pending WHERE username = $1 AND id = $2 AND kind = 'login' \
                 RETURNING sealed",
                &[&user, &id],
            )
            .map_err(pg)?;
        let Some(row) = row else {
            return ok(&["none"]);
        };
        let sealed: Vec<u8> = row.get(0);
        let text = self.inner.key.open_text("pending", &user, &sealed)?;
        self.commit()?;
        ok(&["record", &text])
    }

    fn discard(&mut self) -> Answer {
        let user = self.user()?;
        let n = self
            .db()?
            .execute(
                "DELETE FROM twostep_pending WHERE username = $1 AND kind = 'login'",
                &[&user],
            )
            .map_err(pg)?;
        self.commit()?;
        ok(&[&n.to_string()])
    }
}

/// Names on one page of `USERS` / `ARCHIVED`.
const NAMES_PER_PAGE: i64 = 2000;

fn number(text: &str) -> Result<i64, String> {
    text.parse::<u64>()
        .ok()
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| "not a number".to_string())
}

/// The admin commands' and self-service's requests (twostep-cli's `Manage` on the fleet).
impl Conn<'_> {
    /// A page of user names after `after`: of records, or of archived records.
    fn names(&mut self, after: &str, archived: bool) -> Answer {
        let sql = if archived {
            "SELECT DISTINCT username FROM twostep_archive WHERE username > $1 \
             ORDER BY username LIMIT $2"
        } else {
            "SELECT username FROM twostep_records WHERE username > $1 ORDER BY username LIMIT $2"
        };
        let rows = self
            .db()?
            .query(sql, &[&after, &NAMES_PER_PAGE])
            .map_err(pg)?;
        let more = rows.len() as i64 == NAMES_PER_PAGE;
        let mut page = String::new();
        for row in &rows {
            page.push_str(row.get::<_, &str>(0));
            page.push('\n');
        }
        ok(&[if more { "more" } else { "end" }, &page])
    }

    /// The locked user's current row (read under the lock, so it is the fleet's latest).
    fn current(&mut self, user: &str) -> Result<Option<db::Stored>, String> {
        let inner = self.inner;
        Ok(db::read(self.db()?, &inner.key, user)?)
    }

    /// After a change outside `write`: the next write needs a new `LOAD`.
    fn forget_loaded(&mut self) {
        if let Some(locked) = self.locked.as_mut() {
            locked.loaded = None;
        }
    }

    fn clear_state(&mut self) -> Answer {
        let user = self.user()?;
        let n = self
            .db()?
            .execute(
                "UPDATE twostep_records SET state = '', version = nextval('twostep_versions'), \
                 updated = now() \
                 WHERE username = $1",
                &[&user],
            )
            .map_err(pg)?;
        self.commit()?;
        self.forget_loaded();
        ok(&[if n > 0 { "yes" } else { "no" }])
    }

    /// Moves the record into `twostep_archive`, sealed whole (key, address, login state),
    /// without its lockouts and gates, as the file store's archive does.
    fn archive(&mut self, now: i64) -> Answer {
        let user = self.user()?;
        let Some(stored) = self.current(&user)? else {
            return ok(&["none"]);
        };
        let mut record = stored.record;
        record.lockout.clear();
        record.gates.clear();
        let text = record.to_full_text().map_err(|e| e.to_string())?;
        let inner = self.inner;
        let sealed = inner.key.seal("archive", &user, text.as_bytes())?;
        let client = self.db()?;
        let seq: i64 = client
            .query_one(
                "INSERT INTO twostep_archive (username, archived, sealed, host_id) \
                 VALUES ($1, $2, $3, $4) RETURNING seq",
                &[&user, &now, &sealed, &inner.host_id],
            )
            .map_err(pg)?
            .get(0);
        let deleted = client
            .execute(
                "DELETE FROM twostep_records WHERE username = $1 AND version = $2",
                &[&user, &stored.version],
            )
            .map_err(pg)?;
        if deleted != 1 {
            return Err("the record changed in the fleet database meanwhile: refusing".into());
        }
        self.commit()?;
        self.forget_loaded();
        ok(&["archived", &format!("fleet archive #{seq}")])
    }

    /// Puts the newest archived record of the locked user back, and drops it from the archive.
    fn restore(&mut self) -> Answer {
        let user = self.user()?;
        if self.current(&user)?.is_some() {
            return Err(format!("{user} is enrolled; nothing to restore over"));
        }
        let row = self
            .db()?
            .query_opt(
                "SELECT seq, sealed FROM twostep_archive WHERE username = $1 \
                 ORDER BY seq DESC LIMIT 1",
                &[&user],
            )
            .map_err(pg)?;
        let Some(row) = row else {
            return ok(&["none"]);
        };
        let seq: i64 = row.get(0);
        let inner = self.inner;
        let text = inner.key.open_text("archive", &user, row.get(1))?;
        let record = Record::parse(&text, &user)
            .map_err(|e| format!("fleet archive #{seq} of {user}: {e}"))?;
        let sealed = db::seal(&inner.key, &record)?;
        let client = self.db()?;
        if db::insert(client, &sealed, &user, &inner.host_id)?.is_none() {
            return Err(format!("{user} is enrolled; nothing to restore over"));
        }
        client
            .execute("DELETE FROM twostep_archive WHERE seq = $1", &[&seq])
            .map_err(pg)?;
        self.commit()?;
        self.forget_loaded();
        ok(&["restored", &format!("fleet archive #{seq}")])
    }

    /// Keeps a begun enrollment (self-service), replacing the user's earlier one.
    fn begin(&mut self, full_text: &str) -> Answer {
        let user = self.user()?;
        let record = Record::parse(full_text, &user).map_err(|e| e.to_string())?;
        let created = i64::try_from(record.created).map_err(|_| "bad creation time")?;
        let id = twostep_common::random::hex(
            &twostep_common::random::bytes(16).map_err(|e| e.to_string())?,
        );
        let sealed = self.inner.key.seal("begun", &user, full_text.as_bytes())?;
        let client = self.db()?;
        client
            .execute(
                "DELETE FROM twostep_pending WHERE username = $1 AND kind = 'begun'",
                &[&user],
            )
            .map_err(pg)?;
        client
            .execute(
                "INSERT INTO twostep_pending (username, id, sealed, created, kind) \
                 VALUES ($1, $2, $3, $4, 'begun')",
                &[&user, &id, &sealed, &created],
            )
            .map_err(pg)?;
        self.commit()?;
        ok(&[&id])
    }

    /// The begun enrollment `id` while fresh at `now`; an expired one is removed.
    fn begun(&mut self, id: &str, now: i64) -> Answer {
        let user = self.user()?;
        let row = self
            .db()?
            .query_opt(
                "SELECT sealed, created FROM twostep_pending WHERE username = $1 AND id = $2 \
                 AND kind = 'begun'",
                &[&user, &id],
            )
            .map_err(pg)?;
        let Some(row) = row else {
            return ok(&["none"]);
        };
        let created: i64 = row.get(1);
        let lifetime = BEGUN_LIFETIME_SECS as i64;
        if created > now || now - created >= lifetime {
            self.db()?
                .execute(
                    "DELETE FROM twostep_pending WHERE username = $1 AND id = $2",
                    &[&user, &id],
                )
                .map_err(pg)?;
            self.commit()?;
            return ok(&["none"]);
        }
        let text = self.inner.key.open_text("begun", &user, row.get(0))?;
        ok(&["record", &text])
    }

    fn unbegin(&mut self) -> Answer {
        let user = self.user()?;
        let n = self
            .db()?
            .execute(
                "DELETE FROM twostep_pending WHERE username = $1 AND kind = 'begun'",
                &[&user],
            )
            .map_err(pg)?;
        self.commit()?;
        ok(&[&n.to_string()])
    }
}

/// Begins a transaction holding `user`'s row lock (the row is created the first time; after
/// that one statement takes it).
fn take_row_lock(client: &mut Db, user: &str) -> Result<(), String> {
    const SELECT: &str = "SELECT username FROM twostep_locks WHERE username = $1 FOR UPDATE";
    client.batch("BEGIN").map_err(pg)?;
    if client.query_opt(SELECT, &[&user]).map_err(pg)?.is_some() {
        return Ok(());
    }
    client
        .execute(
            "INSERT INTO twostep_locks (username) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&user],
        )
        .map_err(pg)?;
    client.query_one(SELECT, &[&user]).map_err(pg)?;
    Ok(())
}

/// A record whose login state does not read: `damaged` and why (see [`db::Found`]).
fn damaged_answer(message: &str) -> Answer {
    ok(&["damaged", message])
}

fn found_answer(record: Option<&Record>) -> Answer {
    let Some(record) = record else {
        return ok(&["none"]);
    };
    let text = record.to_file_text().map_err(|e| e.to_string())?;
    let state = record.state_text().map_err(|e| e.to_string())?;
    ok(&["record", &text, &state])
}

fn pg(e: postgres::Error) -> String {
    db::pg_error(&e).to_string()
}

fn send(stream: &UnixStream, fields: &[&str]) -> std::io::Result<()> {
    let mut frame = Vec::new();
    wire::write(&mut frame, fields)?;
    let frame = Zeroizing::new(frame);
    send_all(stream, &frame)
}

/// Writes all of `bytes` with MSG_NOSIGNAL: a client that went away must not kill the service
/// with SIGPIPE (as serve-self does).
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        match send(stream.as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The socket systemd passed (fd 3, `LISTEN_FDS=1` for this pid), else a new one.
fn listener(
    args: &ServeStoreArgs,
    store: &StoreConfig,
) -> Result<(UnixListener, Option<PathBuf>), CliError> {
    if let Some(listener) = crate::listen::passed_socket()? {
        return Ok((listener, None));
    }
    let path = args.socket.clone().unwrap_or_else(|| store.socket.clone());
    let path = std::path::absolute(&path).map_err(|e| CliError::io(path.display(), e))?;
    // 0600: only root's logins talk to the store.
    crate::listen::bind(&path, 0o600).map(|l| (l, Some(path)))
}
