//! What the service does for one request of one user. The caller is already known (the
//! kernel's peer credentials, mapped to an account by the server); every function here acts on
//! `ctx.user` only and changes nothing before the password (and, for an existing enrollment, a
//! current code) is proven.

use crate::error::CliError;
use serde_json::{Value, json};
use twostep_common::backend::{self, Backend, Manage};
use twostep_common::config::{self, Config};
use twostep_common::email::{self, Issue};
use twostep_common::emergency::CodeSet;
use twostep_common::enroll;
use twostep_common::login::{self, Attempt, EmailIssue, Outcome, Rejected};
use twostep_common::manage::{self, State};
use twostep_common::policy::{self, SystemDirectory};
use twostep_common::record::{EmailState, Method as RecordMethod, Record};
use twostep_common::remote::{LoginLock, LoginStore};
use twostep_common::self_service::Action;
use twostep_common::store::{BEGUN_LIFETIME_SECS, PendingId};
use twostep_common::totp::{self, Params};
use twostep_sys::pam_password::{PasswordCheck, Refusal};
use zeroize::Zeroizing;

use super::proto::{Failure, Kind, Method, Request};
use crate::output::codes_json;
use crate::show::qr_json;

/// The PAM service name a self-service proof is recorded under (last use, lockout).
pub const SERVICE: &str = "twostep-self";

/// One request's world: whom it is for, the config of the moment and the checks the server
/// provides (the password through PAM, rate-limited; mail through SMTP).
/// Checks `user`'s password through PAM, within the rate limit (the server's).
pub type PasswordChecker = dyn Fn(&str, &[u8]) -> Result<PasswordCheck, Failure>;
/// Sends one mail: config, to, subject, body.
pub type MailSender = dyn Fn(&Config, &str, &str, &str) -> Result<(), CliError>;

pub struct Ctx<'a> {
    pub config: &'a Config,
    pub user: &'a str,
    pub now: u64,
    pub check_password: &'a PasswordChecker,
    pub send_mail: &'a MailSender,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("user", &self.user)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

type Done = Result<Value, Failure>;

pub fn handle(ctx: &Ctx<'_>, request: Request) -> Done {
    if !ctx.config.self_service.enabled {
        return Err(Failure::new(
            Kind::Refused,
            "self-service is turned off on this machine ([self_service] enabled = false); ask \
             the administrator",
        ));
    }
    let store = LoginStore::open_admin(ctx.config).map_err(internal)?;
    match request {
        Request::Status {} => status(ctx, &store),
        Request::History {} => history(ctx, &store),
        Request::EnableBegin {
            password,
            method,
            email,
        } => enable_begin(ctx, &store, &password, method, email),
        Request::EnableConfirm { id, code } => enable_confirm(ctx, &store, &id, &code),
        Request::Codes { password, code } => codes(ctx, &store, &password, &code),
        Request::AddDevice { password, code } => add_device(ctx, &store, &password, &code),
        Request::EmailBegin {
            password,
            code,
            address,
        } => email_begin(ctx, &store, &password, &code, &address),
        Request::EmailConfirm { id, code } => email_confirm(ctx, &store, &id, &code),
        Request::Disable { password, code } => disable(ctx, &store, &password, &code),
        Request::SendCode { password } => send_code(ctx, &store, &password),
    }
}

fn status(ctx: &Ctx<'_>, store: &LoginStore) -> Done {
    let config = ctx.config;
    let enforced = enforced(ctx)?;
    let record = backend::load(store, ctx.user).map_err(internal)?;
    let allowed: serde_json::Map<String, Value> = Action::ALL
        .iter()
        .map(|a| (a.name().to_string(), config.self_service.allows(*a).into()))
        .collect();
    let mut out = json!({
        "user": ctx.user,
        "enforced": enforced,
        "email_enabled": config.email.enabled(),
        "allowed": allowed,
    });
    match record {
        None => {
            out["state"] = if enforced {
                "incomplete"
            } else {
                "not-enrolled"
            }
            .into();
            for key in ["method", "email", "emergency_codes_left", "locked_until"] {
                out[key] = Value::Null;
            }
        }
        Some(record) => {
            let s = manage::user_status(&record, config, ctx.now);
            out["state"] = match s.state {
                State::Locked => "locked",
                _ => "enabled",
            }
            .into();
            out["method"] = method_name(record.method).into();
            out["email"] = s.email.into();
            out["emergency_codes_left"] = s.emergency_codes_left.into();
            out["locked_until"] = s.locked_until.into();
        }
    }
    Ok(out)
}

fn history(ctx: &Ctx<'_>, store: &LoginStore) -> Done {
    let record = backend::load(store, ctx.user).map_err(internal)?;
    let Some(record) = record else {
        return Ok(json!({"last_login": null, "failures": [], "open_gates": []}));
    };
    let last = record.last_login.as_ref().map(
        |l| json!({"time": l.time, "rhost": l.rhost, "service": l.service, "method": l.method}),
    );
    // Per host where known (the host lists hold the same failures as the user-wide one).
    let mut failures: Vec<Value> = Vec::new();
    for host in &record.lockout.hosts {
        for time in &host.failures {
            failures.push(json!({"time": time, "host": host.host}));
        }
    }
    if failures.is_empty() {
        failures = (record.lockout.failures.iter())
            .map(|t| json!({"time": t, "host": ""}))
            .collect();
    }
    failures.sort_by_key(|f| f["time"].as_u64());
    let gates: Vec<Value> = manage::open_gates(store, ctx.config, Some(ctx.user), ctx.now)
        .map_err(internal)?
        .into_iter()
        .map(|g| json!({"host": g.host, "time": g.opened, "service": g.service, "expires": g.expires}))
        .collect();
    Ok(json!({"last_login": last, "failures": failures, "open_gates": gates}))
}

fn enable_begin(
    ctx: &Ctx<'_>,
    store: &LoginStore,
    password: &str,
    method: Method,
    address: Option<String>,
) -> Done {
    allowed(ctx, Action::Enable)?;
    if store.has_record(ctx.user).map_err(internal)? {
        return Err(already_enrolled());
    }
    if method == Method::Email && !ctx.config.email.enabled() {
        return Err(no_email());
    }
    if let Some(address) = &address {
        email::check_address(address).map_err(|e| Failure::new(Kind::Invalid, e.to_string()))?;
    }
    prove_password(ctx, password)?;
    let config = ctx.config;
    let lock = store.lock(ctx.user).map_err(internal)?;
    if store.load_now(&lock).map_err(internal)?.is_some() {
        return Err(already_enrolled());
    }
    match method {
        Method::Totp => {
            let key = totp::new_secret().map_err(internal)?;
            let params = Params {
                algorithm: config.totp.algorithm,
                digits: config.totp.digits,
                period: config.totp.period,
            };
            let mut waiting = enroll::new_totp(config, ctx.user, &key, params, ctx.now)
                .map_err(internal)?
                .record;
            waiting.email = address;
            let id = store.save_begun(&lock, &waiting).map_err(internal)?;
            let mut out = qr_json(config, ctx.user, &key, params).map_err(internal)?;
            out["id"] = id.as_str().into();
            out["expires"] = (ctx.now + BEGUN_LIFETIME_SECS).into();
            Ok(out)
        }
        Method::Email => {
            let Some(address) = address else {
                return Err(Failure::new(
                    Kind::Invalid,
                    "emailed codes need an address: --email ADDR",
                ));
            };
            let mut waiting = enroll::new_email(config, ctx.user, &address, ctx.now)
                .map_err(|e| Failure::new(Kind::Invalid, e.to_string()))?
                .record;
            let state = waiting.email_code.get_or_insert_with(EmailState::default);
            let code = issue(state, config, ctx.now)?;
            let id = store.save_begun(&lock, &waiting).map_err(internal)?;
            drop(lock);
            mail_begun(ctx, store, &address, &code, &id)
        }
    }
}

fn enable_confirm(ctx: &Ctx<'_>, store: &LoginStore, id: &str, code: &str) -> Done {
    allowed(ctx, Action::Enable)?;
    let config = ctx.config;
    let lock = store.lock(ctx.user).map_err(internal)?;
    if store.load_now(&lock).map_err(internal)?.is_some() {
        return Err(already_enrolled());
    }
    let mut waiting = load_begun(store, &lock, id, ctx.now)?;
    let mut new = match waiting.method {
        RecordMethod::Totp => {
            let Some(totp_record) = waiting.totp.as_ref() else {
                return Err(Failure::new(
                    Kind::Expired,
                    "the waiting step has no key; begin again",
                ));
            };
            let key = totp::decode_secret(totp_record.secret.expose()).map_err(internal)?;
            let params = totp_record.params();
            let step = totp::matching_step(&key, params, config.totp.skew, &clean(code), ctx.now)
                .ok_or_else(|| {
                Failure::new(
                    Kind::WrongCode,
                    "that code does not match the new key; check the phone's clock and \
                         type the next code (nothing was stored)",
                )
            })?;
            let mut new =
                enroll::new_totp(config, ctx.user, &key, params, ctx.now).map_err(internal)?;
            if let Some(totp) = new.record.totp.as_mut() {
                totp.last_step = step;
            }
            new.record.email = waiting.email.clone();
            new
        }
        RecordMethod::Email => {
            let address = waiting.email.clone().unwrap_or_default();
            let state = waiting.email_code.get_or_insert_with(EmailState::default);
            if !email::consume(state, &clean(code), ctx.now) {
                return Err(wrong_mailed_code());
            }
            enroll::new_email(config, ctx.user, &address, ctx.now).map_err(internal)?
        }
    };
    new.record.created = ctx.now;
    store.save(&lock, &new.record).map_err(internal)?;
    store.discard_begun(&lock).map_err(internal)?;
    Ok(
        json!({"state": "enabled", "method": method_name(new.record.method),
              "emergency_codes": codes_json(&new.emergency_codes)}),
    )
}

fn codes(ctx: &Ctx<'_>, store: &LoginStore, password: &str, code: &str) -> Done {
    allowed(ctx, Action::Codes)?;
    prove(ctx, store, password, code)?;
    // Hashed before the lock (see manage::new_emergency_codes).
    let (set, codes) = CodeSet::generate(ctx.config.emergency.count).map_err(internal)?;
    let lock = store.lock(ctx.user).map_err(internal)?;
    let mut record = enrolled(store, &lock)?;
    record.emergency = set;
    store.save(&lock, &record).map_err(internal)?;
    Ok(json!({"emergency_codes": codes_json(&codes)}))
}

fn add_device(ctx: &Ctx<'_>, store: &LoginStore, password: &str, code: &str) -> Done {
    allowed(ctx, Action::AddDevice)?;
    let record = backend::load(store, ctx.user)
        .map_err(internal)?
        .ok_or_else(not_enrolled)?;
    if record.totp.is_none() {
        return Err(Failure::new(
            Kind::Refused,
            "you receive codes by email and have no app key to show; to use an app instead, \
             disable two-step login and enable it again",
        ));
    }
    prove(ctx, store, password, code)?;
    // Read again: the proof wrote the login state, and the key may have been replaced since.
    let record = backend::load(store, ctx.user)
        .map_err(internal)?
        .ok_or_else(not_enrolled)?;
    let totp_record = record.totp.as_ref().ok_or_else(not_enrolled)?;
    let key = totp::decode_secret(totp_record.secret.expose()).map_err(internal)?;
    qr_json(ctx.config, ctx.user, &key, totp_record.params()).map_err(internal)
}

fn email_begin(
    ctx: &Ctx<'_>,
    store: &LoginStore,
    password: &str,
    code: &str,
    address: &str,
) -> Done {
    allowed(ctx, Action::Email)?;
    if !ctx.config.email.enabled() {
        return Err(no_email());
    }
    email::check_address(address).map_err(|e| Failure::new(Kind::Invalid, e.to_string()))?;
    prove(ctx, store, password, code)?;
    let lock = store.lock(ctx.user).map_err(internal)?;
    let mut waiting = enrolled(store, &lock)?;
    // The waiting copy is used only for its address and mailed code (email_confirm).
    waiting.email = Some(address.to_string());
    waiting.email_code = Some(EmailState::default());
    let state = waiting.email_code.get_or_insert_with(EmailState::default);
    let mailed = issue(state, ctx.config, ctx.now)?;
    waiting.created = ctx.now;
    let id = store.save_begun(&lock, &waiting).map_err(internal)?;
    drop(lock);
    mail_begun(ctx, store, address, &mailed, &id)
}

fn email_confirm(ctx: &Ctx<'_>, store: &LoginStore, id: &str, code: &str) -> Done {
    allowed(ctx, Action::Email)?;
    let lock = store.lock(ctx.user).map_err(internal)?;
    let mut record = enrolled(store, &lock)?;
    let mut waiting = load_begun(store, &lock, id, ctx.now)?;
    let Some(address) = waiting.email.clone() else {
        return Err(Failure::new(
            Kind::Expired,
            "no address is waiting; begin again",
        ));
    };
    let state = waiting.email_code.get_or_insert_with(EmailState::default);
    if !email::consume(state, &clean(code), ctx.now) {
        return Err(wrong_mailed_code());
    }
    record.email = Some(address.clone());
    store.save(&lock, &record).map_err(internal)?;
    store.discard_begun(&lock).map_err(internal)?;
    Ok(json!({"email": email::mask(&address)}))
}

fn disable(ctx: &Ctx<'_>, store: &LoginStore, password: &str, code: &str) -> Done {
    allowed(ctx, Action::Disable)?;
    if enforced(ctx)? {
        return Err(Failure::new(
            Kind::Refused,
            "the administrator requires two-step login for your account, so it cannot be \
             turned off; for a lost phone, ask the administrator (twostep reset)",
        ));
    }
    prove(ctx, store, password, code)?;
    let lock = store.lock(ctx.user).map_err(internal)?;
    // Archived like an admin's reset, so that `twostep restore` can bring it back.
    match store.archive(&lock, ctx.now).map_err(internal)? {
        Some(_) => Ok(json!({"state": "not-enrolled"})),
        None => Err(not_enrolled()),
    }
}

fn send_code(ctx: &Ctx<'_>, store: &LoginStore, password: &str) -> Done {
    let record = backend::load(store, ctx.user)
        .map_err(internal)?
        .ok_or_else(not_enrolled)?;
    if record.email.is_none() || !ctx.config.email.enabled() {
        return Err(Failure::new(
            Kind::Refused,
            "no code can be mailed: you have no recovery address, or email is not configured \
             here; use a code from your app or an emergency code",
        ));
    }
    refuse_if_locked(ctx, &record)?;
    prove_password(ctx, password)?;
    let attempt = attempt(ctx);
    let issued = login::issue_email_code(store, ctx.config, &attempt, ctx.now, Default::default())
        .map_err(internal)?;
    match issued {
        EmailIssue::Send(request) => {
            let (subject, body) = email::compose(&ctx.config.email, &request);
            if let Err(e) = (ctx.send_mail)(ctx.config, &request.to, &subject, &body) {
                let _ = login::email_not_sent(store, &attempt, &request);
                return Err(mail_failed(&e));
            }
            Ok(json!({"sent_to": email::mask(&request.to)}))
        }
        EmailIssue::Pending => Err(Failure::new(
            Kind::Limited,
            "a code was mailed a moment ago and is still valid; use that one",
        )),
        EmailIssue::Limited => Err(Failure::new(
            Kind::Limited,
            "too many codes were mailed recently; wait a few minutes, or use a code from your \
             app or an emergency code",
        )),
        EmailIssue::Locked { until } => Err(locked(until)),
        EmailIssue::NotEnrolled => Err(not_enrolled()),
    }
}

/// The password, then a current code of the enrollment, as at a login: a wrong or replayed
/// code counts toward the lockout, a used emergency or mailed code is used up.
fn prove(ctx: &Ctx<'_>, store: &LoginStore, password: &str, code: &str) -> Result<(), Failure> {
    let record = backend::load(store, ctx.user)
        .map_err(internal)?
        .ok_or_else(not_enrolled)?;
    refuse_if_locked(ctx, &record)?;
    prove_password(ctx, password)?;
    // A proof opens no SMB gate: it is not a login from anywhere.
    let mut config = ctx.config.clone();
    config.gate.window_secs = 0;
    let outcome = login::verify(
        store,
        &config,
        &attempt(ctx),
        code.as_bytes(),
        ctx.now,
        Default::default(),
    )
    .map_err(internal)?;
    match outcome {
        Outcome::Accepted(_) => Ok(()),
        Outcome::Locked { until } => Err(locked(until)),
        Outcome::NotEnrolled => Err(not_enrolled()),
        Outcome::Rejected {
            why, locked: hit, ..
        } => {
            let mut message = match why {
                Rejected::Empty => "type a current code: from your app, an emergency code, or \
                                    one mailed with `twostep self send-code`"
                    .to_string(),
                Rejected::Replay => "that code was already used; wait for the next one".into(),
                _ => "that code is not right (an app code, an emergency code or a mailed one); \
                      nothing was changed"
                    .into(),
            };
            if hit.is_some() {
                message.push_str("; too many wrong codes: you are locked out for a while");
            }
            Err(Failure::new(Kind::WrongCode, message))
        }
    }
}

fn prove_password(ctx: &Ctx<'_>, password: &str) -> Result<(), Failure> {
    match (ctx.check_password)(ctx.user, password.as_bytes())? {
        PasswordCheck::Accepted => Ok(()),
        PasswordCheck::Refused(Refusal::WrongPassword) => Err(Failure::new(
            Kind::WrongPassword,
            "wrong password; nothing was changed",
        )),
        PasswordCheck::Refused(Refusal::MustChange) => Err(Failure::new(
            Kind::Refused,
            "your password has expired: change it first (passwd), then try again",
        )),
        PasswordCheck::Refused(Refusal::Expired | Refusal::Denied) => Err(Failure::new(
            Kind::Refused,
            "the system refuses your account here (expired or not allowed); ask the \
             administrator",
        )),
        PasswordCheck::Failed { call, code, text } => Err(Failure::new(
            Kind::Error,
            "the password could not be checked (the service's PAM stack failed); ask the \
             administrator to run twostep doctor",
        )
        .with_detail(format!("{call} failed ({code}): {text}"))),
    }
}

fn refuse_if_locked(ctx: &Ctx<'_>, record: &Record) -> Result<(), Failure> {
    match record.lockout.locked_until(&login::host_key(""), ctx.now) {
        Some(until) => Err(locked(until)),
        None => Ok(()),
    }
}

fn attempt<'a>(ctx: &Ctx<'a>) -> Attempt<'a> {
    Attempt {
        user: ctx.user,
        service: SERVICE,
        rhost: "",
    }
}

fn issue(state: &mut EmailState, config: &Config, now: u64) -> Result<Zeroizing<String>, Failure> {
    match email::issue(state, &config.email, now).map_err(internal)? {
        Issue::New(code) => Ok(code),
        Issue::Pending | Issue::Limited => Err(Failure::new(
            Kind::Limited,
            "too many codes were mailed recently; wait a few minutes and begin again",
        )),
    }
}

/// Mails the code of the begun step `id` (outside the user's lock: SMTP may take seconds,
/// and logins must not wait for it); a mail that cannot be sent takes the step back.
fn mail_begun(
    ctx: &Ctx<'_>,
    store: &LoginStore,
    address: &str,
    code: &str,
    id: &PendingId,
) -> Done {
    if let Err(failure) = mail_code(ctx, address, code) {
        let lock = store.lock(ctx.user).map_err(internal)?;
        // Only ours: a newer step begun meanwhile stays.
        if store
            .load_begun(&lock, id, ctx.now)
            .map_err(internal)?
            .is_some()
        {
            store.discard_begun(&lock).map_err(internal)?;
        }
        return Err(failure);
    }
    Ok(json!({"id": id.as_str(), "sent_to": email::mask(address),
              "expires": ctx.now + BEGUN_LIFETIME_SECS}))
}

fn mail_code(ctx: &Ctx<'_>, address: &str, code: &str) -> Result<(), Failure> {
    let request = email::Request {
        to: address.to_string(),
        user: ctx.user.to_string(),
        host: config::hostname(),
        rhost: String::new(),
        service: SERVICE.into(),
        time: ctx.now,
        code: code.to_string(),
    };
    let (subject, body) = email::compose(&ctx.config.email, &request);
    (ctx.send_mail)(ctx.config, address, &subject, &body).map_err(|e| mail_failed(&e))
}

fn load_begun(store: &LoginStore, lock: &LoginLock, id: &str, now: u64) -> Result<Record, Failure> {
    let expired = || {
        Failure::new(
            Kind::Expired,
            format!(
                "nothing is waiting under this id: it expired ({} minutes), was replaced by a \
                 newer step, or was already confirmed; begin again",
                BEGUN_LIFETIME_SECS / 60
            ),
        )
    };
    let id = PendingId::parse(id).ok_or_else(expired)?;
    store
        .load_begun(lock, &id, now)
        .map_err(internal)?
        .ok_or_else(expired)
}

fn enrolled(store: &LoginStore, lock: &LoginLock) -> Result<Record, Failure> {
    store
        .load_now(lock)
        .map_err(internal)?
        .ok_or_else(not_enrolled)
}

fn enforced(ctx: &Ctx<'_>) -> Result<bool, Failure> {
    policy::is_enforced(&ctx.config.policy, ctx.user, &SystemDirectory).map_err(internal)
}

fn allowed(ctx: &Ctx<'_>, action: Action) -> Result<(), Failure> {
    if ctx.config.self_service.allows(action) {
        return Ok(());
    }
    Err(Failure::new(
        Kind::Refused,
        format!(
            "the administrator does not allow this here ([self_service] allow_{} = false); ask \
             them",
            action.name()
        ),
    ))
}

/// Codes are typed with spaces sometimes (`123 456`).
fn clean(code: &str) -> Zeroizing<String> {
    Zeroizing::new(code.chars().filter(|c| !c.is_whitespace()).collect())
}

fn method_name(method: RecordMethod) -> &'static str {
    match method {
        RecordMethod::Totp => "totp",
        RecordMethod::Email => "email",
    }
}

fn locked(until: u64) -> Failure {
    Failure::new(
        Kind::Locked,
        format!(
            "too many wrong codes: locked until {} (unix time {until}); wait, or ask the \
             administrator (twostep unlock)",
            twostep_common::timefmt::utc(until)
        ),
    )
}

fn not_enrolled() -> Failure {
    Failure::new(
        Kind::NotEnrolled,
        "two-step login is not on for you; turn it on with `twostep self enable`",
    )
}

fn already_enrolled() -> Failure {
    Failure::new(
        Kind::AlreadyEnrolled,
        "two-step login is already on for you; for a new phone use `twostep self add-device`",
    )
}

fn no_email() -> Failure {
    Failure::new(
        Kind::Refused,
        "email is not configured on this machine ([email] smtp_host); use an authenticator app",
    )
}

fn wrong_mailed_code() -> Failure {
    Failure::new(
        Kind::WrongCode,
        "that is not the mailed code (check the newest mail); nothing was stored",
    )
}

fn mail_failed(error: &CliError) -> Failure {
    Failure::new(
        Kind::Error,
        "the mail could not be sent; try again later or ask the administrator (twostep \
         email-test)",
    )
    .with_detail(format!("mail: {error}"))
}

/// Store and other internal errors: the details are for the service's log, not the caller.
fn internal(error: impl std::fmt::Display) -> Failure {
    Failure::new(
        Kind::Error,
        "the service could not do this (its log says why); ask the administrator",
    )
    .with_detail(error.to_string())
}
