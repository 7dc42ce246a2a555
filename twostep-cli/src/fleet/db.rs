//! The fleet's PostgreSQL database: connecting (TLS, password file, timeouts), the versioned
//! schema, and records as rows with their key and address sealed ([`super::seal`]).
//!
//! `twostep_records` holds one row per enrolled user: `record` is the record file's text with
//! the key replaced by [`SEALED_SECRET`] and the address by [`SEALED_EMAIL`] (so an admin can
//! still read the method, the enrollment time and the emergency code hashes); the real values
//! are the sealed `totp_secret` and `email` columns. `state` is the login-state text,
//! `last_step` the last accepted TOTP step, the column that a step's acceptance is
//! conditional on, and `version` counts writes (a write based on an older read fails).
//! `twostep_locks` holds the row each login locks (`SELECT … FOR UPDATE`), present or not a
//! record, so that logins of one user serialize across the fleet.

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement, Transaction};
use twostep_common::record::{Record, SecretString};
use twostep_common::securefs::{self, Access};
use twostep_common::store_config::{SslMode, StoreConfig};
use zeroize::Zeroizing;

use super::error::FleetError;
use super::seal::FleetKey;

pub const SCHEMA_VERSION: i64 = 3;
/// Stands for the sealed key in `record` (valid base32, so the text still parses).
pub const SEALED_SECRET: &str = "SEALEDSEALEDSEALEDSEALEDSEALEDSE";
pub const SEALED_EMAIL: &str = "(sealed)";
const KEY_CHECK: &[u8] = b"twostep fleet key check";

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS twostep_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS twostep_locks (
    username text PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS twostep_records (
    username text PRIMARY KEY,
    record text NOT NULL,
    totp_secret bytea,
    email bytea,
    state text NOT NULL,
    last_step bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 1,
    host_id text NOT NULL,
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS twostep_pending (
    username text NOT NULL,
    id text NOT NULL,
    sealed bytea NOT NULL,
    created bigint NOT NULL,
    PRIMARY KEY (username, id)
);
";

/// Version 2: the archive of `twostep reset` (one sealed full record per row, newest by
/// `seq`), and self-service's begun enrollments next to the logins' waiting ones
/// (`kind` 'login' or 'begun').
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS twostep_archive (
    seq bigserial PRIMARY KEY,
    username text NOT NULL,
    archived bigint NOT NULL,
    sealed bytea NOT NULL,
    host_id text NOT NULL
);
CREATE INDEX IF NOT EXISTS twostep_archive_user ON twostep_archive (username, seq);
ALTER TABLE twostep_pending ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'login';
";

/// Version 3: `version` values come from one sequence, so a version is never seen twice for a
/// user, even across a reset and a new enrollment (a record deleted and inserted again would
/// otherwise start at 1 again, and a write based on a read of the old record could pass the
/// new one's version check). serve-store's writes based on a read before the prompt
/// (`PUTSTATE`, `PUT`) rely on it. The sequence starts above every version already there.
const SCHEMA_V3: &str = "
CREATE SEQUENCE IF NOT EXISTS twostep_versions;
SELECT setval('twostep_versions', GREATEST((SELECT max(version) FROM twostep_records), 0) + 1);
ALTER TABLE twostep_records ALTER COLUMN version SET DEFAULT nextval('twostep_versions');
";

/// Connects as `[store]` says, with its timeout for connecting and for every statement and
/// lock wait.
pub fn connect(config: &StoreConfig) -> Result<Client, FleetError> {
    let setting = FleetError::Setting;
    let mut pg: postgres::Config = config
        .url
        .parse()
        .map_err(|e| setting(format!("store.url: {e}")))?;
    pg.connect_timeout(config.timeout())
        .application_name("twostep-serve-store")
        .keepalives_idle(Duration::from_secs(30));
    if !config.password_file.as_os_str().is_empty() {
        let bytes = securefs::read_root_file(&config.password_file, 4096, Access::Private)
            .map_err(|e| setting(format!("store.password_file: {e}")))?
            .ok_or_else(|| setting(format!("{} does not exist", config.password_file.display())))?;
        let end = bytes
            .iter()
            .rposition(|b| !b"\r\n".contains(b))
            .map_or(0, |i| i + 1);
        pg.password(&bytes[..end]);
    }
    let mut client = match config.sslmode {
        SslMode::Disable => {
            pg.ssl_mode(postgres::config::SslMode::Disable);
            pg.connect(NoTls)
        }
        mode => {
            pg.ssl_mode(postgres::config::SslMode::Require);
            let mut tls = native_tls::TlsConnector::builder();
            if !config.ca_file.as_os_str().is_empty() {
                let pem = securefs::read_root_file(&config.ca_file, 1 << 20, Access::Readable)
                    .map_err(|e| setting(format!("store.ca_file: {e}")))?
                    .ok_or_else(|| {
                        setting(format!("{} does not exist", config.ca_file.display()))
                    })?;
                let ca = native_tls::Certificate::from_pem(&pem)
                    .map_err(|e| setting(format!("store.ca_file: {e}")))?;
                tls.disable_built_in_roots(true).add_root_certificate(ca);
            }
            match mode {
                SslMode::Require => {
                    tls.danger_accept_invalid_certs(true);
                }
                SslMode::VerifyCa => {
                    tls.danger_accept_invalid_hostnames(true);
                }
                _ => {}
            }
            let tls = tls.build().map_err(|e| setting(format!("TLS: {e}")))?;
            pg.connect(postgres_native_tls::MakeTlsConnector::new(tls))
        }
    }
    .map_err(|e| {
        FleetError::Connect(format!(
            "cannot connect to the fleet database: {}",
            with_causes(&e)
        ))
    })?;
    let ms = config.timeout().as_millis();
    client
        .batch_execute(&format!(
            "SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
             SET idle_in_transaction_session_timeout = {}",
            ms * 10
        ))
        .map_err(|e| pg_error(&e))?;
    Ok(client)
}

/// Creates the schema, or checks (and later upgrades) an existing one; the first `init`
/// records a check value sealed with `key`, which every later one verifies.
pub fn init_schema(client: &mut Client, key: &FleetKey) -> Result<&'static str, FleetError> {
    let db = |e: postgres::Error| pg_error(&e);
    let mut tx = client.transaction().map_err(db)?;
    // Serializes concurrent inits (the number is arbitrary, twostep's own).
    tx.execute("SELECT pg_advisory_xact_lock(7470657374)", &[])
        .map_err(db)?;
    tx.batch_execute(SCHEMA_V1).map_err(db)?;
    tx.batch_execute(SCHEMA_V2).map_err(db)?;
    let version = tx
        .query_opt(
            "SELECT value FROM twostep_meta WHERE key = 'schema_version'",
            &[],
        )
        .map_err(db)?
        .map(|row| row.get::<_, String>(0));
    let done = match version.as_deref() {
        None => {
            tx.batch_execute(SCHEMA_V3).map_err(db)?;
            let check = twostep_common::random::hex(&key.seal("key_check", "", KEY_CHECK)?);
            tx.execute(
                "INSERT INTO twostep_meta (key, value) VALUES ('schema_version', $1), \
                 ('key_check', $2)",
                &[&SCHEMA_VERSION.to_string(), &check],
            )
            .map_err(db)?;
            "created"
        }
        Some(v) if v == SCHEMA_VERSION.to_string() => "up to date",
        // Version 1's tables are version 2's (SCHEMA_V2, above, added the rest); version 3
        // adds the version sequence.
        Some(from @ ("1" | "2")) => {
            tx.batch_execute(SCHEMA_V3).map_err(db)?;
            tx.execute(
                "UPDATE twostep_meta SET value = $1 WHERE key = 'schema_version'",
                &[&SCHEMA_VERSION.to_string()],
            )
            .map_err(db)?;
            if from == "1" {
                "upgraded from version 1"
            } else {
                "upgraded from version 2"
            }
        }
        Some(v) => {
            return Err(FleetError::Schema(format!(
                "the fleet database has schema version {v}; this twostep knows {SCHEMA_VERSION} \
                 (upgrade twostep on this host)"
            )));
        }
    };
    check_key(&mut tx, key)?;
    tx.commit().map_err(db)?;
    Ok(done)
}

/// Fails unless the schema is the one this twostep knows and `key` is the fleet's.
pub fn check_schema(
    client: &mut impl postgres::GenericClient,
    key: &FleetKey,
) -> Result<(), FleetError> {
    let version = client
        .query_opt(
            "SELECT value FROM twostep_meta WHERE key = 'schema_version'",
            &[],
        )
        .map_err(|e| FleetError::Schema(format!("{} (run twostep fleet init)", pg_error(&e))))?
        .map(|row| row.get::<_, String>(0));
    match version {
        Some(v) if v == SCHEMA_VERSION.to_string() => check_key(client, key),
        Some(v) if v.parse::<i64>().is_ok_and(|v| v < SCHEMA_VERSION) => {
            Err(FleetError::Schema(format!(
                "the fleet database has schema version {v}, not {SCHEMA_VERSION} (run twostep \
                 fleet init on one host to upgrade it)"
            )))
        }
        Some(v) => Err(FleetError::Schema(format!(
            "the fleet database has schema version {v}, not {SCHEMA_VERSION} (upgrade twostep \
             on this host)"
        ))),
        None => Err(FleetError::Schema(
            "the fleet database has no twostep schema (run twostep fleet init)".into(),
        )),
    }
}

fn check_key(client: &mut impl postgres::GenericClient, key: &FleetKey) -> Result<(), FleetError> {
    let check = client
        .query_opt(
            "SELECT value FROM twostep_meta WHERE key = 'key_check'",
            &[],
        )
        .map_err(|e| pg_error(&e))?
        .map(|row| row.get::<_, String>(0))
        .and_then(|hex| twostep_common::random::unhex(&hex))
        .ok_or_else(|| {
            FleetError::Schema(
                "the fleet database has no key check (run twostep fleet init)".into(),
            )
        })?;
    match key.open("key_check", "", &check) {
        Ok(plain) if plain[..] == *KEY_CHECK => Ok(()),
        _ => Err(FleetError::WrongKey(format!(
            "the fleet key {} is not the key of this fleet's database (copy the key file from a \
             host of the fleet): refusing",
            key.path().display()
        ))),
    }
}

/// What the row functions below run their statements on: a client or a transaction (the
/// CLI's fleet commands: each statement is prepared when it runs, two round trips), or
/// serve-store's [`Db`], which prepares each statement once per connection (one round trip
/// for each of a login's statements).
pub trait Sql {
    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error>;
}

impl Sql for Client {
    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        Client::query_opt(self, sql, params)
    }
}

impl Sql for Transaction<'_> {
    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        Transaction::query_opt(self, sql, params)
    }
}

/// A database connection with the statements it has prepared.
pub struct Db {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Db {
    pub fn new(client: Client) -> Db {
        Db {
            client,
            prepared: HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    pub fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    pub fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params)
    }

    pub fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }

    /// Runs `sql` (no parameters) with the simple protocol: BEGIN, COMMIT, ROLLBACK.
    pub fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.client.batch_execute(sql)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

impl Sql for Db {
    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }
}

/// A record as its row holds it.
#[derive(Debug)]
pub struct Stored {
    pub record: Record,
    pub version: i64,
    pub last_step: i64,
}

/// Reads `user`'s record, unsealed, with its login state applied.
pub fn read(
    client: &mut impl Sql,
    key: &FleetKey,
    user: &str,
) -> Result<Option<Stored>, FleetError> {
    match read_found(client, key, user)? {
        Found::Stored(stored) => Ok(Some(*stored)),
        Found::None => Ok(None),
        Found::DamagedState(message) => Err(FleetError::Row(message)),
    }
}

/// What [`read_found`] found.
pub enum Found {
    Stored(Box<Stored>),
    None,
    /// The record reads but its login state does not (nothing twostep wrote: a hand-edited
    /// row): logins fail closed, and `twostep unlock` replaces the state, as with a damaged
    /// state file.
    DamagedState(String),
}

/// [`read`], telling a damaged login state apart from other failures.
pub fn read_found(client: &mut impl Sql, key: &FleetKey, user: &str) -> Result<Found, FleetError> {
    let row = client
        .query_opt(
            "SELECT record, totp_secret, email, state, last_step, version FROM twostep_records \
             WHERE username = $1",
            &[&user],
        )
        .map_err(|e| pg_error(&e))?;
    let Some(row) = row else {
        return Ok(Found::None);
    };
    let text: String = row.get(0);
    let secret: Option<Vec<u8>> = row.get(1);
    let email: Option<Vec<u8>> = row.get(2);
    let state: String = row.get(3);
    let last_step: i64 = row.get(4);
    let version: i64 = row.get(5);
    let corrupt = |m: &dyn std::fmt::Display| {
        FleetError::Row(format!("{user}'s record in the fleet database: {m}"))
    };
    let mut record = Record::parse(&text, user).map_err(|e| corrupt(&e))?;
    match (record.totp.as_mut(), secret) {
        (Some(totp), Some(sealed)) => {
            totp.secret = SecretString::new(key.open_text("totp_secret", user, &sealed)?);
        }
        (None, None) => {}
        _ => return Err(corrupt(&"the key and the method disagree")),
    }
    match (record.email.is_some(), email) {
        (true, Some(sealed)) => {
            record.email = Some(key.open_text("email", user, &sealed)?.to_string());
        }
        (false, None) => {}
        _ => return Err(corrupt(&"the address columns disagree")),
    }
    if let Err(e) = record.apply_state(&state) {
        return Ok(Found::DamagedState(format!(
            "{user}'s login state in the fleet database: {e}"
        )));
    }
    if let Some(totp) = record.totp.as_mut() {
        totp.last_step = totp.last_step.max(u64::try_from(last_step).unwrap_or(0));
    }
    Ok(Found::Stored(Box::new(Stored {
        record,
        version,
        last_step,
    })))
}

/// The record text and sealed columns of `record` ([`seal`]), or only its login state
/// ([`seal_state`]).
pub struct Sealed {
    text: Zeroizing<String>,
    secret: Option<Vec<u8>>,
    email: Option<Vec<u8>>,
    state: Zeroizing<String>,
    last_step: i64,
    /// Whether the record's columns are here (not only the state).
    whole: bool,
}

/// The login state of `record` for a state-only [`update`]: nothing is sealed (a login
/// changes neither the key nor the address).
pub fn seal_state(record: &Record) -> Result<Sealed, FleetError> {
    Ok(Sealed {
        text: Zeroizing::new(String::new()),
        secret: None,
        email: None,
        state: record.state_text().map_err(row_text)?,
        last_step: step_of(record),
        whole: false,
    })
}

pub fn seal(key: &FleetKey, record: &Record) -> Result<Sealed, FleetError> {
    let user = &record.user;
    let mut bare = record.clone();
    let secret = match bare.totp.as_mut() {
        Some(totp) => {
            let sealed = key.seal("totp_secret", user, totp.secret.expose().as_bytes())?;
            totp.secret = SecretString::new(Zeroizing::new(SEALED_SECRET.to_string()));
            Some(sealed)
        }
        None => None,
    };
    let email = match bare.email.as_mut() {
        Some(address) => {
            let sealed = key.seal("email", user, address.as_bytes())?;
            *address = SEALED_EMAIL.to_string();
            Some(sealed)
        }
        None => None,
    };
    Ok(Sealed {
        text: bare.to_file_text().map_err(row_text)?,
        secret,
        email,
        state: record.state_text().map_err(row_text)?,
        last_step: step_of(record),
        whole: true,
    })
}

fn row_text(e: twostep_common::record::RecordError) -> FleetError {
    FleetError::Row(e.to_string())
}

pub fn step_of(record: &Record) -> i64 {
    record
        .totp
        .as_ref()
        .map_or(0, |t| i64::try_from(t.last_step).unwrap_or(i64::MAX))
}

/// Inserts a new row for `record`; `None` when one exists already.
pub fn insert(
    client: &mut impl Sql,
    sealed: &Sealed,
    user: &str,
    host_id: &str,
) -> Result<Option<i64>, FleetError> {
    if !sealed.whole {
        return Err(FleetError::Internal(
            "an insert of a sealed state only".into(),
        ));
    }
    client
        .query_opt(
            "INSERT INTO twostep_records (username, record, totp_secret, email, state, \
             last_step, host_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (username) DO NOTHING RETURNING version",
            &[
                &user,
                &sealed.text.as_str(),
                &sealed.secret,
                &sealed.email,
                &sealed.state.as_str(),
                &sealed.last_step,
                &host_id,
            ],
        )
        .map(|row| row.map(|r| r.get(0)))
        .map_err(|e| pg_error(&e))
}

/// Replaces the row of version `version`: the whole record, or only the state when `sealed`
/// is [`seal_state`]'s. When the write accepts a TOTP step later than `loaded_step`, it is also
/// conditional on the database's `last_step` being earlier: a step is accepted once in the
/// fleet. The new version, or `None` when the row changed (or the step was used) meanwhile.
///
/// `unlocked`: the caller does not hold the user's row lock (serve-store's `PUTSTATE`): the
/// statement takes it for its own short transaction, so that it waits for a host deciding
/// under the lock and never changes a record under it. Without a lock row (a record that
/// `fleet import` wrote) it writes nothing and says so like a changed row.
pub fn update(
    client: &mut impl Sql,
    sealed: &Sealed,
    user: &str,
    host_id: &str,
    version: i64,
    loaded_step: i64,
    unlocked: bool,
) -> Result<Option<i64>, FleetError> {
    // Eight fixed statements (taking the row lock or not; whole record or state; accepting a
    // step or not), so that each is prepared once.
    macro_rules! update {
        ($with:literal, $set:literal, $condition:literal, $locked:literal) => {
            concat!(
                $with,
                "UPDATE twostep_records SET state = $2, last_step = GREATEST(last_step, $4), \
                 host_id = $5, version = nextval('twostep_versions'), updated = now()",
                $set,
                " WHERE username = $1 AND version = $3",
                $condition,
                $locked,
                " RETURNING version"
            )
        };
        ($set:literal, $condition:literal) => {
            if unlocked {
                update!(
                    "WITH l AS (SELECT 1 FROM twostep_locks WHERE username = $1 FOR UPDATE) ",
                    $set,
                    $condition,
                    " AND EXISTS (SELECT 1 FROM l)"
                )
            } else {
                update!("", $set, $condition, "")
            }
        };
    }
    let accepts = sealed.last_step > loaded_step;
    let common: [&(dyn ToSql + Sync); 5] = [
        &user,
        &sealed.state.as_str(),
        &version,
        &sealed.last_step,
        &host_id,
    ];
    let row = if !sealed.whole {
        let sql = if accepts {
            update!("", " AND last_step < $4")
        } else {
            update!("", "")
        };
        client.query_opt(sql, &common)
    } else {
        let sql = if accepts {
            update!(
                ", record = $6, totp_secret = $7, email = $8",
                " AND last_step < $4"
            )
        } else {
            update!(", record = $6, totp_secret = $7, email = $8", "")
        };
        let text = sealed.text.as_str();
        let whole: [&(dyn ToSql + Sync); 8] = [
            common[0],
            common[1],
            common[2],
            common[3],
            common[4],
            &text,
            &sealed.secret,
            &sealed.email,
        ];
        client.query_opt(sql, &whole)
    };
    row.map(|row| row.map(|r| r.get(0)))
        .map_err(|e| pg_error(&e))
}

/// `error` and the errors it wraps: the postgres crate's top level alone says only "error
/// performing TLS handshake" or "db error", the reason is in its sources.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A database error as logs and answers show it: the server's message and SQLSTATE (never the
/// statement's parameters), or the client's error.
pub fn pg_error(e: &postgres::Error) -> FleetError {
    FleetError::Database(match e.as_db_error() {
        Some(db) => format!(
            "fleet database: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ),
        None => format!("fleet database: {e}"),
    })
}
