//! What the admin command does to records: status, unlock, new emergency codes, reset and
//! restore. Every change holds the user's lock, like a login.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::backend::{self, Manage};
use crate::config::Config;
use crate::emergency::CodeSet;
use crate::error::Error;
use crate::gate;
use crate::policy::{self, Directory};
use crate::record::{LastLogin, Method, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Enrolled; asked for a code at login.
    Enabled,
    /// Enrolled but locked out after failed codes.
    Locked,
    /// Enforced by policy but not enrolled.
    Incomplete,
    /// Not enrolled (enrollment removed by `twostep reset`; `twostep restore` brings it back).
    Disabled,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Enabled => "enabled",
            State::Locked => "locked",
            State::Incomplete => "incomplete",
            State::Disabled => "disabled",
        }
    }
}

/// One row of `twostep status`; its JSON form (written by the CLI) is documented in docs/cli.md
/// and kept stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStatus {
    pub user: String,
    pub state: State,
    /// Second-factor methods usable at login, e.g. `["totp", "emergency"]`.
    pub methods: Vec<String>,
    /// Recovery address with the local part hidden: `a•••@example.com`.
    pub email: Option<String>,
    pub emergency_codes_left: Option<usize>,
    pub enrolled_at: Option<u64>,
    pub last_login: Option<LastLogin>,
    /// Failed codes inside the lockout window.
    pub recent_failures: usize,
    pub locked_until: Option<u64>,
    /// Remote hosts from which the user is locked out (too many failures from there).
    pub locked_hosts: Vec<String>,
    /// Addresses whose gate is open (src/gate.rs).
    pub open_gates: usize,
}

impl UserStatus {
    /// A user without a record, in `state` (disabled, or incomplete when enforced).
    pub fn not_enrolled(user: String, state: State) -> UserStatus {
        UserStatus {
            user,
            state,
            methods: Vec::new(),
            email: None,
            emergency_codes_left: None,
            enrolled_at: None,
            last_login: None,
            recent_failures: 0,
            locked_until: None,
            locked_hosts: Vec::new(),
            open_gates: 0,
        }
    }
}

/// A row for every user with a record, every user the policy enforces (`incomplete` when not
/// enrolled) and every user with an archived record (`disabled`), sorted by name.
pub fn status<S: Manage>(
    store: &S,
    config: &Config,
    dir: &dyn Directory,
    now: u64,
) -> Result<Vec<UserStatus>, Error> {
    let mut rows = Vec::new();
    for user in store.users()? {
        if let Some(record) = backend::load(store, &user)? {
            rows.push(enrolled_status(&record, config, now));
        }
    }
    for user in policy::enforced_users(&config.policy, dir)? {
        if !rows.iter().any(|r| r.user == user) {
            rows.push(UserStatus::not_enrolled(user, State::Incomplete));
        }
    }
    for user in store.archived_users()? {
        if !rows.iter().any(|r| r.user == user) {
            rows.push(UserStatus::not_enrolled(user, State::Disabled));
        }
    }
    rows.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(rows)
}

pub fn user_status(record: &Record, config: &Config, now: u64) -> UserStatus {
    enrolled_status(record, config, now)
}

fn enrolled_status(record: &Record, config: &Config, now: u64) -> UserStatus {
    let locked = record.lockout.is_locked(now);
    let mut methods = Vec::new();
    if record.totp.is_some() {
        methods.push("totp".to_string());
    }
    if record.email.is_some() && (record.method == Method::Email || config.email.enabled()) {
        methods.push("email".to_string());
    }
    if record.emergency.remaining() > 0 {
        methods.push("emergency".to_string());
    }
    UserStatus {
        user: record.user.clone(),
        state: if locked {
            State::Locked
        } else {
            State::Enabled
        },
        methods,
        email: record.email.as_deref().map(mask_email),
        emergency_codes_left: Some(record.emergency.remaining()),
        enrolled_at: Some(record.created),
        last_login: record.last_login.clone(),
        recent_failures: record.lockout.recent_failures(now, &config.lockout),
        locked_until: locked.then_some(record.lockout.locked_until),
        locked_hosts: record.lockout.locked_hosts(now),
        open_gates: gate::open_gates(record, &config.gate, now).len(),
    }
}

/// One open gate, for `twostep gate list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenGate {
    pub user: String,
    pub host: String,
    pub opened: u64,
    pub expires: u64,
    /// The PAM service of the two-step login that opened it.
    pub service: String,
}

/// The open gates of `user`, or of every enrolled user, by user then opening time.
pub fn open_gates<S: Manage>(
    store: &S,
    config: &Config,
    user: Option<&str>,
    now: u64,
) -> Result<Vec<OpenGate>, Error> {
    let users = match user {
        Some(user) => vec![user.to_string()],
        None => store.users()?,
    };
    let mut gates = Vec::new();
    for user in users {
        let Some(record) = backend::load(store, &user)? else {
            continue;
        };
        gates.extend(
            gate::open_gates(&record, &config.gate, now)
                .into_iter()
                .map(|g| OpenGate {
                    user: user.clone(),
                    host: g.host.clone(),
                    opened: g.time,
                    expires: gate::expires(g, &config.gate),
                    service: g.service.clone(),
                }),
        );
    }
    Ok(gates)
}

/// Closes the gate of `host`, or all gates, of `user`, under the lock; how many were closed
/// (expired ones included), or `None` when the user has no record.
pub fn close_gates<S: Manage>(
    store: &S,
    user: &str,
    host: Option<&str>,
) -> Result<Option<usize>, Error> {
    let lock = store.lock(user)?;
    let Some(mut record) = store.load_now(&lock)? else {
        return Ok(None);
    };
    let closed = gate::close(&mut record, host);
    if closed > 0 {
        // Synced: a gate closed by an admin must stay closed after a power cut.
        store.save_state(&lock, &record, true)?;
    }
    Ok(Some(closed))
}

/// `alice@example.com` → `a•••@example.com`.
pub fn mask_email(address: &str) -> String {
    crate::email::mask(address)
}

/// Stores a new enrollment under the user's lock. Unless `replace`, an existing enrollment is
/// kept and `false` returned (checked under the lock, so two admins cannot both enroll).
pub fn store_enrollment<S: Manage>(
    store: &S,
    record: &Record,
    replace: bool,
) -> Result<bool, Error> {
    let lock = store.lock(&record.user)?;
    if !replace && store.load_now(&lock)?.is_some() {
        return Ok(false);
    }
    store.save(&lock, record)?;
    Ok(true)
}

/// Clears failures and every lockout (per host and per user); false when the user has no
/// record. A damaged login-state file (no intact slot: logins fail closed) is replaced by a
/// fresh state rather than refused.
pub fn unlock<S: Manage>(store: &S, user: &str) -> Result<bool, Error> {
    let lock = store.lock(user)?;
    let loaded = match store.load_now(&lock) {
        Err(Error::Corrupt { path, .. }) if path.extension().is_some_and(|ext| ext == "state") => {
            store.discard_state(&lock)?;
            store.load_now(&lock)
        }
        other => other,
    };
    let Some(mut record) = loaded? else {
        return Ok(false);
    };
    record.lockout.clear();
    store.save(&lock, &record)?;
    Ok(true)
}

/// Replaces every emergency code (imported scratch codes included) with a new set; the codes to
/// show once, or `None` when the user has no record.
pub fn new_emergency_codes<S: Manage>(
    store: &S,
    config: &Config,
    user: &str,
) -> Result<Option<Vec<Zeroizing<String>>>, Error> {
    // Hashed before the lock is taken: PBKDF2 for every code takes a while, and in a fleet the
    // lock holds up the user's logins on every host.
    let (set, codes) = CodeSet::generate(config.emergency.count)?;
    let lock = store.lock(user)?;
    let Some(mut record) = store.load_now(&lock)? else {
        return Ok(None);
    };
    record.emergency = set;
    store.save(&lock, &record)?;
    Ok(Some(codes))
}

/// Removes the enrollment, keeping it in the archive; the archived path, or `None` when the
/// user was not enrolled.
pub fn reset<S: Manage>(store: &S, user: &str, now: u64) -> Result<Option<PathBuf>, Error> {
    let lock = store.lock(user)?;
    store.archive(&lock, now)
}

/// Brings back the newest archived enrollment.
pub fn restore<S: Manage>(store: &S, user: &str) -> Result<Option<PathBuf>, Error> {
    let lock = store.lock(user)?;
    store.restore(&lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("alice@example.com"), "a•••@example.com");
        assert_eq!(mask_email("@x"), "•••@x");
        assert_eq!(mask_email("nonsense"), "•••");
    }
}
