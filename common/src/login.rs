//! The second login step, independent of PAM: what to ask, and what a typed answer means.
//! The PAM module is a thin shell around [`begin`], [`verify`] and [`enroll_at_login`].

use zeroize::Zeroizing;

use crate::backend::{Backend, Seen};
use crate::config::{self, Config};
use crate::email::{self, Issue};
use crate::emergency::{self, Shape};
use crate::enroll::{self, NewEnrollment};
use crate::error::Error;
use crate::lockout::Locked;
use crate::policy::{self, Directory, Skip};
use crate::record::{GraceHost, LastLogin, Method, Record};
pub use crate::store::PendingId;
use crate::totp::{self, Params};

/// Answers longer than this are not codes; they are refused without further parsing.
pub const MAX_ANSWER_BYTES: usize = 64;
const MAX_FIELD_CHARS: usize = 255;
/// Hosts remembered for the grace period, per user.
const MAX_GRACE_HOSTS: usize = 16;

/// Who is logging in, from where, through what.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub user: &'a str,
    pub service: &'a str,
    /// PAM_RHOST, empty for local logins.
    pub rhost: &'a str,
}

/// What to do before asking anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// No record. `enforced`: the policy requires two-step login for this user.
    NotEnrolled {
        enforced: bool,
    },
    /// The code is not needed for this login.
    Skip(Skip),
    Locked {
        until: u64,
    },
    AskCode(Ask),
}

/// Which code to ask for. Emergency codes are accepted at every prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// A code from the authenticator app.
    Totp,
    /// A code from the app, or "email" to have one mailed to `masked`.
    TotpOrEmail { masked: String },
    /// A code mailed now to `masked` (email-method users).
    Email { masked: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Totp,
    Email,
    Emergency { remaining: usize },
}

/// The result of asking for a mailed code.
#[derive(Debug)]
pub enum EmailIssue {
    /// Mail this (then ask for the code).
    Send(email::Request),
    /// The send limit is reached; an unexpired code was already mailed: ask for it.
    Pending,
    /// The send limit is reached and no code is pending.
    Limited,
    Locked {
        until: u64,
    },
    NotEnrolled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Nothing typed; not counted as a failure.
    Empty,
    /// Not a code at all: too long, not UTF-8, wrong shape.
    Malformed,
    WrongCode,
    WrongEmergencyCode,
    /// A valid code for a time step already used.
    Replay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Accepted),
    /// `locked`: what this failure locked, if anything. `attempts_left`: how many more
    /// failed codes from this host lock the user out (from it or everywhere), counted in the
    /// login state this answer left under the lock; 0 when this failure locked.
    Rejected {
        why: Rejected,
        locked: Option<Locked>,
        attempts_left: u32,
    },
    Locked {
        until: u64,
    },
    /// The record disappeared between asking and answering (an admin reset).
    NotEnrolled,
}

/// Decides whether to prompt. Reads without the lock: nothing is written. The [`Seen`]
/// record goes to [`verify`] or [`issue_email_code`], which reuse it if it is unchanged.
pub fn begin<B: Backend>(
    store: &B,
    config: &Config,
    dir: &dyn Directory,
    attempt: &Attempt<'_>,
    now: u64,
) -> Result<(Begin, B::Seen), Error> {
    if let Some(skip) = policy::network_skip(&config.policy, attempt.rhost) {
        return Ok((Begin::Skip(skip), B::Seen::default()));
    }
    let seen = store.load_seen(attempt.user)?;
    let begin = decide(config, dir, attempt, seen.record(), now)?;
    Ok((begin, seen))
}

fn decide(
    config: &Config,
    dir: &dyn Directory,
    attempt: &Attempt<'_>,
    record: Option<&Record>,
    now: u64,
) -> Result<Begin, Error> {
    let Some(record) = record else {
        let enforced = policy::is_enforced(&config.policy, attempt.user, dir)?;
        return Ok(Begin::NotEnrolled { enforced });
    };
    if let Some(until) = record.lockout.locked_until(&host_key(attempt.rhost), now) {
        return Ok(Begin::Locked { until });
    }
    if policy::in_grace(&config.policy, record, &host_key(attempt.rhost), now) {
        return Ok(Begin::Skip(Skip::Grace));
    }
    let address = record.email.as_deref().filter(|_| config.email.enabled());
    let ask = match (record.method, address) {
        (Method::Totp, None) => Ask::Totp,
        (Method::Totp, Some(a)) => Ask::TotpOrEmail {
            masked: email::mask(a),
        },
        (Method::Email, Some(a)) => Ask::Email {
            masked: email::mask(a),
        },
        (Method::Email, None) => {
            return Err(Error::Setup(format!(
                "{} uses emailed codes, but email is not configured ([email] smtp_host)",
                attempt.user
            )));
        }
    };
    Ok(Begin::AskCode(ask))
}

/// Issues a code to mail to the user's address, within the send limits, under the lock.
pub fn issue_email_code<B: Backend>(
    store: &B,
    config: &Config,
    attempt: &Attempt<'_>,
    now: u64,
    seen: B::Seen,
) -> Result<EmailIssue, Error> {
    decided_again::<B, _>(seen, |seen| {
        issue_email_code_on(store, config, attempt, now, seen)
    })
}

fn issue_email_code_on<B: Backend>(
    store: &B,
    config: &Config,
    attempt: &Attempt<'_>,
    now: u64,
    seen: B::Seen,
) -> Result<EmailIssue, Error> {
    let lock = store.lock(attempt.user)?;
    let Some(mut record) = store.load_locked(&lock, seen)? else {
        return Ok(EmailIssue::NotEnrolled);
    };
    if let Some(until) = record.lockout.locked_until(&host_key(attempt.rhost), now) {
        return Ok(EmailIssue::Locked { until });
    }
    let Some(to) = record.email.clone() else {
        return Err(Error::Setup(format!(
            "{} has no email address",
            attempt.user
        )));
    };
    let state = record.email_code.get_or_insert_with(Default::default);
    let result = match email::issue(state, &config.email, now)? {
        Issue::New(code) => EmailIssue::Send(email::Request {
            to,
            user: attempt.user.to_string(),
            host: config::hostname(),
            rhost: host_key(attempt.rhost),
            service: clean_field(attempt.service),
            time: now,
            code: code.to_string(),
        }),
        Issue::Pending => EmailIssue::Pending,
        Issue::Limited => EmailIssue::Limited,
    };
    // Lost in a power cut, the code is simply not pending: the user asks for another.
    store.save_state(&lock, &record, false)?;
    Ok(result)
}

/// After the mail of `request` (from [`issue_email_code`]) could not be sent: its code is no
/// longer pending and does not count toward the send limits, so the next login mails a fresh
/// one instead of asking for a code that never arrived.
pub fn email_not_sent<B: Backend>(
    store: &B,
    attempt: &Attempt<'_>,
    request: &email::Request,
) -> Result<(), Error> {
    let lock = store.lock(attempt.user)?;
    let Some(mut record) = store.load_locked(&lock, B::Seen::default())? else {
        return Ok(());
    };
    let Some(state) = record.email_code.as_mut() else {
        return Ok(());
    };
    if email::withdraw(state, &request.code, request.time) {
        store.save_state(&lock, &record, false)?;
    }
    Ok(())
}

/// Checks a typed answer and records the result, all under the user's lock. `seen` is the
/// record [`begin`] read (or `Seen::default()`); it is used only if it is still current.
///
/// What is synced to the disk: an emergency code or an emailed code stays valid until it is
/// used (or for the mail's lifetime, minutes), so its use must survive a power cut, or the
/// code would work again. What a TOTP login or a failure writes may be lost: the last used
/// time step matters only while the code is valid (the skew window, 90 seconds by default,
/// less than a reboot takes), and losing failure counts at most restarts a lockout window.
/// Docs: docs/reliability.md, "What is synced".
pub fn verify<B: Backend>(
    store: &B,
    config: &Config,
    attempt: &Attempt<'_>,
    answer: &[u8],
    now: u64,
    seen: B::Seen,
) -> Result<Outcome, Error> {
    decided_again::<B, _>(seen, |seen| {
        verify_on(store, config, attempt, answer, now, seen)
    })
}

/// Runs `step` on `seen`, and once more on the record read under the lock when its write
/// found the record changed since `seen` was read. The fleet store decides a login on the
/// record read before the prompt and writes only if that is still the current one
/// (docs/fleet.md); nothing was written when it answers [`Error::Changed`]. The file store
/// never does (it reuses `seen` only after checking it under the lock).
fn decided_again<B: Backend, T>(
    seen: B::Seen,
    mut step: impl FnMut(B::Seen) -> Result<T, Error>,
) -> Result<T, Error> {
    match step(seen) {
        Err(Error::Changed) => step(B::Seen::default()),
        other => other,
    }
}

fn verify_on<B: Backend>(
    store: &B,
    config: &Config,
    attempt: &Attempt<'_>,
    answer: &[u8],
    now: u64,
    seen: B::Seen,
) -> Result<Outcome, Error> {
    let host = host_key(attempt.rhost);
    let lock = store.lock(attempt.user)?;
    let Some(mut record) = store.load_locked(&lock, seen)? else {
        return Ok(Outcome::NotEnrolled);
    };
    if let Some(until) = record.lockout.locked_until(&host, now) {
        return Ok(Outcome::Locked { until });
    }
    let result = match normalize(answer) {
        Err(why) => Err(why),
        Ok(input) => check_code(&mut record, config, &input, now),
    };
    let outcome = match result {
        Ok(accepted) => {
            record_success(&mut record, config, attempt, accepted, now);
            Outcome::Accepted(accepted)
        }
        Err(Rejected::Empty) => {
            // Not counted: nothing to write.
            return Ok(Outcome::Rejected {
                why: Rejected::Empty,
                locked: None,
                attempts_left: record.lockout.attempts_left(&host, now, &config.lockout),
            });
        }
        Err(why) => {
            let locked = record.lockout.record_failure(&host, now, &config.lockout);
            Outcome::Rejected {
                why,
                locked,
                attempts_left: match locked {
                    Some(_) => 0,
                    None => record.lockout.attempts_left(&host, now, &config.lockout),
                },
            }
        }
    };
    match outcome {
        // The hash of the used code leaves the record.
        Outcome::Accepted(Accepted::Emergency { .. }) => store.save(&lock, &record)?,
        Outcome::Accepted(Accepted::Email) => store.save_state(&lock, &record, true)?,
        _ => store.save_state(&lock, &record, false)?,
    }
    Ok(outcome)
}

fn record_success(
    record: &mut Record,
    config: &Config,
    attempt: &Attempt<'_>,
    accepted: Accepted,
    now: u64,
) {
    let host = host_key(attempt.rhost);
    record.lockout.record_success(&host);
    record.last_login = Some(LastLogin {
        time: now,
        rhost: host.clone(),
        service: clean_field(attempt.service),
        method: match accepted {
            Accepted::Totp => "totp",
            Accepted::Email => "email",
            Accepted::Emergency { .. } => "emergency",
        }
        .into(),
        // serve-store names the fleet host when it writes the login (docs/fleet.md).
        host_id: String::new(),
    });
    let service = clean_field(attempt.service);
    crate::gate::open(record, &config.gate, &host, &service, now);
    record.grace.retain(|g| g.host != host);
    if config.policy.grace_period > 0 && !host.is_empty() {
        if record.grace.len() >= MAX_GRACE_HOSTS {
            record.grace.remove(0);
        }
        record.grace.push(GraceHost { host, time: now });
    }
}

/// What the account mode found (the gate of services that cannot prompt; src/gate.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCheck {
    /// A two-step login from this address opened the gate at `opened`, through `service`.
    Open { opened: u64, service: String },
    /// The address is trusted (`trusted_networks`, or `trust_local` without an address).
    Skip(Skip),
    /// No record. `enforced`: the policy requires two-step login for this user.
    NotEnrolled { enforced: bool },
    /// `[gate] window_secs = 0`: no gate opens, enrolled users are refused.
    Off,
    /// No recent two-step login of this user from this address.
    Closed,
}

/// The account mode's check, for services such as Samba that run the account stack with no
/// conversation. Reads without the lock: nothing is written.
pub fn account_check<B: Backend>(
    store: &B,
    config: &Config,
    dir: &dyn Directory,
    attempt: &Attempt<'_>,
    now: u64,
) -> Result<AccountCheck, Error> {
    if let Some(skip) = policy::network_skip(&config.policy, attempt.rhost) {
        return Ok(AccountCheck::Skip(skip));
    }
    let seen = store.load_seen(attempt.user)?;
    let Some(record) = seen.record() else {
        let enforced = policy::is_enforced(&config.policy, attempt.user, dir)?;
        return Ok(AccountCheck::NotEnrolled { enforced });
    };
    if config.gate.window_secs == 0 {
        return Ok(AccountCheck::Off);
    }
    Ok(
        match crate::gate::find(record, &config.gate, &host_key(attempt.rhost), now) {
            Some(gate) => AccountCheck::Open {
                opened: gate.time,
                service: gate.service.clone(),
            },
            None => AccountCheck::Closed,
        },
    )
}

/// Strips the white space people type ("123 456") and refuses what cannot be a code.
fn normalize(answer: &[u8]) -> Result<Zeroizing<String>, Rejected> {
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(Rejected::Malformed);
    }
    let text = std::str::from_utf8(answer).map_err(|_| Rejected::Malformed)?;
    let cleaned: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    if cleaned.is_empty() {
        return Err(Rejected::Empty);
    }
    Ok(cleaned)
}

/// Routes by shape first so emergency hashing never runs for code-shaped input.
fn check_code(
    record: &mut Record,
    config: &Config,
    input: &str,
    now: u64,
) -> Result<Accepted, Rejected> {
    let digits_only = input.bytes().all(|b| b.is_ascii_digit());
    let totp_digits = record.totp.as_ref().map(|t| t.digits);
    let mut result = None;
    if let Some(totp) = record.totp.as_mut() {
        if digits_only && input.len() == usize::from(totp.digits) {
            result = Some(check_totp(totp, config, input, now));
        }
    }
    let email_shaped = digits_only && input.len() == usize::from(config.email.code_digits);
    if email_shaped && matches!(result, None | Some(Err(Rejected::WrongCode))) {
        let pending = record.email_code.as_mut();
        if pending.is_some_and(|state| email::consume(state, input, now)) {
            return Ok(Accepted::Email);
        }
        if result.is_none() {
            result = Some(Err(Rejected::WrongCode));
        }
    }
    if let Some(result) = result {
        return result;
    }
    let shape = emergency::shape_of(
        input,
        record.emergency.has_legacy(),
        totp_digits.unwrap_or(config.email.code_digits),
    );
    if shape == Shape::Other {
        return Err(Rejected::Malformed);
    }
    match record.emergency.consume(&shape) {
        Ok(true) => Ok(Accepted::Emergency {
            remaining: record.emergency.remaining(),
        }),
        Ok(false) | Err(_) => Err(Rejected::WrongEmergencyCode),
    }
}

fn check_totp(
    totp: &mut crate::record::TotpRecord,
    config: &Config,
    input: &str,
    now: u64,
) -> Result<Accepted, Rejected> {
    let key = totp::decode_secret(totp.secret.expose()).map_err(|_| Rejected::WrongCode)?;
    let skew = totp.skew.unwrap_or(config.totp.skew);
    match totp::matching_step(&key, totp.params(), skew, input, now) {
        Some(step) if step > totp.last_step => {
            totp.last_step = step;
            Ok(Accepted::Totp)
        }
        Some(_) => Err(Rejected::Replay),
        None => Err(Rejected::WrongCode),
    }
}

/// An enrollment offered inside the login conversation, not stored until a code verifies.
#[derive(Debug)]
pub struct PendingEnrollment {
    pub key: totp::Key,
    pub params: Params,
    /// The otpauth URI to show (contains the key).
    pub uri: Zeroizing<String>,
}

pub fn offer_enrollment(config: &Config, user: &str) -> Result<PendingEnrollment, Error> {
    let key = totp::new_secret()?;
    let params = Params {
        algorithm: config.totp.algorithm,
        digits: config.totp.digits,
        period: config.totp.period,
    };
    let uri = crate::otpauth::totp_uri(
        &config.issuer_or_hostname(),
        &config.account_label(user),
        &key,
        params,
    );
    Ok(PendingEnrollment { key, params, uri })
}

#[derive(Debug)]
pub enum EnrollAtLogin {
    /// The code verifies: the new enrollment waits in the store under this id, and the
    /// emergency codes are to be shown once. Stored for good only by [`commit_enrollment`].
    Confirmed {
        id: PendingId,
        new: Box<NewEnrollment>,
    },
    /// The code does not verify; nothing stored.
    WrongCode,
    /// Someone enrolled the user meanwhile; nothing changed.
    AlreadyEnrolled,
}

/// Checks that `answer` is the current code of `pending` and, if so, keeps the new enrollment
/// for `attempt.user` waiting in the store. Nothing is enrolled yet: this runs inside
/// `pam_authenticate`, where a module cannot know whether the password module above it
/// succeeded (with `auth required pam_unix.so` the stack goes on after a wrong password). The
/// PAM shell commits it in `pam_setcred`, which applications call only after the whole auth
/// stack succeeded. The confirming step is marked used, so the same code cannot open another
/// login.
pub fn enroll_at_login<B: Backend>(
    store: &B,
    config: &Config,
    attempt: &Attempt<'_>,
    pending: &PendingEnrollment,
    answer: &[u8],
    now: u64,
) -> Result<EnrollAtLogin, Error> {
    let Ok(code) = normalize(answer) else {
        return Ok(EnrollAtLogin::WrongCode);
    };
    let Some(step) =
        totp::matching_step(&pending.key, pending.params, config.totp.skew, &code, now)
    else {
        return Ok(EnrollAtLogin::WrongCode);
    };
    let mut new = enroll::new_totp(config, attempt.user, &pending.key, pending.params, now)?;
    if let Some(totp) = new.record.totp.as_mut() {
        totp.last_step = step;
    }
    record_success(&mut new.record, config, attempt, Accepted::Totp, now);
    let lock = store.lock(attempt.user)?;
    if store.load_locked(&lock, B::Seen::default())?.is_some() {
        return Ok(EnrollAtLogin::AlreadyEnrolled);
    }
    let id = store.save_pending(&lock, &new.record)?;
    Ok(EnrollAtLogin::Confirmed {
        id,
        new: Box::new(new),
    })
}

/// What [`commit_enrollment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The waiting enrollment is now the user's record.
    Enrolled,
    /// No such waiting enrollment (expired, or already taken).
    Missing,
    /// The user was enrolled meanwhile (by an admin or another login); the waiting one is
    /// dropped.
    AlreadyEnrolled,
}

/// Makes the waiting enrollment `id` of `user` (from [`enroll_at_login`]) the user's record.
/// Called from `pam_setcred`, after the whole auth stack succeeded.
pub fn commit_enrollment<B: Backend>(
    store: &B,
    user: &str,
    id: &PendingId,
    now: u64,
) -> Result<Commit, Error> {
    let lock = store.lock(user)?;
    let Some(record) = store.take_pending(&lock, id, now)? else {
        return Ok(Commit::Missing);
    };
    if store.load_locked(&lock, B::Seen::default())?.is_some() {
        return Ok(Commit::AlreadyEnrolled);
    }
    store.save(&lock, &record)?;
    store.discard_pendings(&lock)?;
    Ok(Commit::Enrolled)
}

/// The lockout and grace key for a login (see [`crate::network::host_key`]); pam_twostep
/// shows the attempts left under it.
pub fn host_key(rhost: &str) -> String {
    crate::network::host_key(rhost, MAX_FIELD_CHARS)
}

/// PAM items come from the client side of the application; keep them printable and short.
fn clean_field(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_FIELD_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_normalized_or_refused() {
        assert_eq!(*normalize(b" 123 456\t").unwrap(), "123456");
        assert_eq!(normalize(b"   "), Err(Rejected::Empty));
        assert_eq!(normalize(b""), Err(Rejected::Empty));
        assert_eq!(normalize(&[0xff, 0x31]), Err(Rejected::Malformed));
        assert_eq!(normalize(&vec![b'1'; 1 << 20]), Err(Rejected::Malformed));
    }

    #[test]
    fn fields_are_kept_printable() {
        assert_eq!(clean_field("10.0.0.1\nfake=1"), "10.0.0.1fake=1");
        assert_eq!(clean_field(&"a".repeat(1000)).len(), MAX_FIELD_CHARS);
    }
}
