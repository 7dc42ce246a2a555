//! Every dialogue path with a scripted conversation, an in-memory store, a fixed clock, a fake
//! user directory and a fake mailer: no root, no files, no PAM.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::enroll::{CODE_PROMPT, SAVED_PROMPT, WRONG_CODE};
use super::*;
use crate::audit::Memory;
use crate::backend::MemoryBackend;
use crate::clock::FixedClock;
use crate::config::Config;
use crate::network::Network;
use crate::totp::{self, Params};

const T: u64 = 1_800_000_015;
const USER: &str = "alice";

/// One thing the dialogue did, as the user saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Hidden(String),
    Visible(String),
    Info(String),
    Error(String),
}

/// Types an answer from what the conversation showed so far.
type Typist = dyn Fn(&[Seen]) -> Vec<u8>;

/// Answers prompts from a queue (a missing answer fails the conversation) and records all.
#[derive(Default)]
struct Script {
    answers: VecDeque<Result<Vec<u8>, ConvError>>,
    seen: Vec<Seen>,
    /// Computes the answer of an `Info`-then-prompt step from what was shown (enrollment).
    typist: Option<Box<Typist>>,
}

impl Script {
    fn answering(answers: &[&str]) -> Script {
        Script {
            answers: answers.iter().map(|a| Ok(a.as_bytes().to_vec())).collect(),
            ..Script::default()
        }
    }

    fn prompts(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Hidden(p) | Seen::Visible(p) => Some(p.as_str()),
                _ => None,
            })
            .collect()
    }

    fn errors(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Error(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn next(&mut self) -> Result<Answer, ConvError> {
        match self.answers.pop_front() {
            Some(Ok(bytes)) if bytes == b"<type the key's code>" => {
                let typist = self.typist.as_ref().expect("a typist");
                Ok(Answer::new(typist(&self.seen)))
            }
            Some(answer) => answer.map(Answer::new),
            None => Err(ConvError),
        }
    }
}

impl Conversation for Script {
    fn ask(&mut self, prompt: &str, visible: bool) -> Result<Answer, ConvError> {
        self.seen.push(if visible {
            Seen::Visible(prompt.into())
        } else {
            Seen::Hidden(prompt.into())
        });
        self.next()
    }
    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.seen.push(Seen::Info(text.into()));
        Ok(())
    }
    fn error(&mut self, text: &str) -> Result<(), ConvError> {
        self.seen.push(Seen::Error(text.into()));
        Ok(())
    }
}

/// Keeps what would have been mailed; fails when told to.
#[derive(Default)]
struct Mailbox {
    sent: RefCell<Vec<String>>,
    down: std::cell::Cell<bool>,
}

impl Mailer for Mailbox {
    fn send(&self, request: &email::Request) -> Result<(), email::SendError> {
        if self.down.get() {
            return Err(email::SendError::Failed("connection refused".into()));
        }
        self.sent.borrow_mut().push(request.code.clone());
        Ok(())
    }
}

/// Nobody is in any group.
struct NoGroups;

impl Directory for NoGroups {
    fn groups_of(&self, _: &str) -> Result<Vec<String>, Error> {
        Ok(Vec::new())
    }
    fn members_of(&self, _: &str) -> Result<Vec<String>, Error> {
        Ok(Vec::new())
    }
}

/// A test's world: config, store, clock, mailbox, log.
struct World {
    config: Config,
    store: MemoryBackend,
    clock: FixedClock,
    mail: Mailbox,
    log: Memory,
    rhost: String,
    quiet: bool,
}

impl World {
    fn new() -> World {
        World {
            config: Config::default(),
            store: MemoryBackend::default(),
            clock: FixedClock::at(T),
            mail: Mailbox::default(),
            log: Memory::default(),
            rhost: "192.0.2.7".into(),
            quiet: false,
        }
    }

    /// Enrolls `USER` with a new key (and `address` as recovery address); the key.
    fn enroll(&self, address: Option<&str>) -> totp::Key {
        let key = totp::new_secret().unwrap();
        let mut new = crate::enroll::new_totp(&self.config, USER, &key, params(), T - 600).unwrap();
        new.record.email = address.map(str::to_string);
        let lock = self.store.lock(USER).unwrap();
        self.store.save(&lock, &new.record).unwrap();
        key
    }

    fn session<'a>(&'a mut self, conv: &'a mut Script) -> Session<'a, MemoryBackend> {
        Session {
            config: &self.config,
            store: &self.store,
            user: USER.into(),
            service: "sshd".into(),
            rhost: self.rhost.clone(),
            quiet: self.quiet,
            conv,
            log: &mut self.log,
            clock: &self.clock,
            dir: &NoGroups,
            mailer: &self.mail,
        }
    }

    fn code_prompt(&mut self, script: &mut Script) -> Verdict {
        code_prompt(&mut self.session(script))
    }

    fn logged(&self, needle: &str) -> bool {
        self.log.0.iter().any(|(_, line)| line.contains(needle))
    }
}

fn params() -> Params {
    Params {
        algorithm: totp::Algorithm::Sha1,
        digits: 6,
        period: 30,
    }
}

fn code(key: &[u8], t: u64) -> String {
    totp::code_at(key, params(), t).to_string()
}

fn wrong(key: &[u8], t: u64) -> String {
    let right: u32 = code(key, t).parse().unwrap();
    format!("{:06}", (right + 500_000) % 1_000_000)
}

#[test]
fn the_right_code_lets_in_once_and_a_replay_is_named() {
    let mut w = World::new();
    let key = w.enroll(None);
    let mut script = Script::answering(&[&code(&key, T)]);
    assert_eq!(w.code_prompt(&mut script), Verdict::Success);
    assert_eq!(script.seen, [Seen::Hidden(PROMPT.into())]);
    assert!(w.logged("auth success user=alice service=sshd rhost=192.0.2.7 method=totp"));

    let mut again = Script::answering(&[&code(&key, T)]);
    assert_eq!(w.code_prompt(&mut again), Verdict::Refused);
    assert_eq!(again.errors(), [REPLAY_MESSAGE]);
    assert!(w.logged("reason=replay"));
}

/// The fleet store's write is conditional on the record read before the prompt; when another
/// host wrote it meanwhile, the login decides again on the current record (login.rs,
/// `decided_again`).
#[test]
fn a_write_refused_as_changed_is_decided_again_on_the_current_record() {
    let mut w = World::new();
    let key = w.enroll(None);
    // Another host accepts this step's code while alice is at the prompt: hers is a replay.
    let mut other = w.store.record(USER).unwrap();
    other.totp.as_mut().unwrap().last_step = T / 30;
    *w.store.written_meanwhile.borrow_mut() = Some(other);
    let mut script = Script::answering(&[&code(&key, T)]);
    assert_eq!(w.code_prompt(&mut script), Verdict::Refused);
    assert_eq!(script.errors(), [REPLAY_MESSAGE]);
    assert!(w.store.written_meanwhile.borrow().is_none());

    // Another host counts a failure meanwhile: the good code of the next step still lets her
    // in, and the other host's failure is not lost (a success clears this address's count
    // only).
    w.clock = FixedClock::at(T + 30);
    let mut other = w.store.record(USER).unwrap();
    other
        .lockout
        .record_failure("198.51.100.9", T + 20, &w.config.lockout);
    *w.store.written_meanwhile.borrow_mut() = Some(other);
    let mut script = Script::answering(&[&code(&key, T + 30)]);
    assert_eq!(w.code_prompt(&mut script), Verdict::Success);
    let stored = w.store.record(USER).unwrap();
    assert_eq!(stored.totp.as_ref().unwrap().last_step, (T + 30) / 30);
    assert_eq!(
        stored
            .lockout
            .attempts_left("198.51.100.9", T + 30, &w.config.lockout),
        w.config.lockout.max_failures - 1
    );
}

#[test]
fn wrong_codes_warn_before_the_lockout_and_then_lock() {
    let mut w = World::new();
    w.config.lockout.max_failures = 5;
    let key = w.enroll(None);
    let mut warnings = Vec::new();
    for _ in 0..5 {
        let mut script = Script::answering(&[&wrong(&key, T)]);
        assert_eq!(w.code_prompt(&mut script), Verdict::Refused);
        warnings.push(script.errors().join(" | "));
    }
    assert_eq!(warnings[0], "");
    assert_eq!(warnings[1], "3 attempts left before a 15-minute lockout.");
    assert_eq!(warnings[3], "1 attempt left before a 15-minute lockout.");
    assert_eq!(
        warnings[4],
        format!("{LOCKED_MESSAGE} | Try again in 15 minutes.")
    );
    assert!(w.logged("lockout user=alice"));
    // Locked: not even asked.
    let mut script = Script::answering(&[&code(&key, T)]);
    assert_eq!(w.code_prompt(&mut script), Verdict::Refused);
    assert!(script.prompts().is_empty());
    assert_eq!(script.errors()[0], LOCKED_MESSAGE);
}

#[test]
fn an_empty_answer_is_refused_without_counting() {
    let mut w = World::new();
    w.config.lockout.max_failures = 1;
    let key = w.enroll(None);
    let mut script = Script::answering(&["   "]);
    assert_eq!(w.code_prompt(&mut script), Verdict::Refused);
    let mut script = Script::answering(&[&code(&key, T)]);
    assert_eq!(w.code_prompt(&mut script), Verdict::Success);
}

#[test]
fn unenrolled_users_follow_the_policy() {
    let mut w = World::new();
    let mut script = Script::default();
    assert_eq!(w.code_prompt(&mut script), Verdict::Ignore);
    assert!(script.seen.is_empty());
    w.config.unenrolled = Unenrolled::Deny;
    assert_eq!(w.code_prompt(&mut Script::default()), Verdict::Refused);
    w.config.policy.enforce_users = vec![USER.into()];
    let mut script = Script::default();
    assert_eq!(w.code_prompt(&mut script), Verdict::Refused);
    assert_eq!(script.errors(), [REQUIRED_MESSAGE]);
}

#[test]
fn a_trusted_network_and_the_grace_period_skip_the_code() {
    let mut w = World::new();
    let key = w.enroll(None);
    w.config.policy.trusted_networks = vec![Network::parse("192.0.2.0/24").unwrap()];
    let mut script = Script::default();
    assert_eq!(w.code_prompt(&mut script), Verdict::Success);
    assert!(script.seen.is_empty());
    assert!(w.logged("reason=trusted-network"));

    w.config.policy.trusted_networks.clear();
    w.config.policy.grace_period = 3600;
    assert_eq!(
        w.code_prompt(&mut Script::answering(&[&code(&key, T)])),
        Verdict::Success
    );
    let mut script = Script::default();
    assert_eq!(w.code_prompt(&mut script), Verdict::Success);
    assert!(script.seen.is_empty());
    w.rhost = "192.0.2.8".into();
    assert_eq!(w.code_prompt(&mut Script::default()), Verdict::Conversation);
}

#[test]
fn enrollment_at_login_confirms_then_commits() {
    let mut w = World::new();
    w.config.policy.enforce_users = vec![USER.into()];
    w.config.policy.on_unenrolled = OnUnenrolled::Enroll;
    let mut script = Script::answering(&["000000", "<type the key's code>", ""]);
    script.typist = Some(Box::new(|seen: &[Seen]| {
        let key = seen
            .iter()
            .find_map(|s| match s {
                Seen::Info(t) => t.strip_prefix("Key: ").map(|k| k.replace(' ', "")),
                _ => None,
            })
            .expect("a Key: line");
        let key = totp::decode_secret(&key).unwrap();
        code(&key, T).into_bytes()
    }));
    let verdict = w.code_prompt(&mut script);
    let Verdict::Enrolled(id) = verdict else {
        panic!("{verdict:?}\n{:?}", script.seen);
    };
    assert_eq!(script.prompts(), [CODE_PROMPT, CODE_PROMPT, SAVED_PROMPT]);
    assert_eq!(script.errors(), [WRONG_CODE]);
    assert!(
        script
            .seen
            .iter()
            .any(|s| matches!(s, Seen::Info(t) if t.contains("Emergency codes")))
    );
    // Confirmed is not enrolled: only commit (pam_setcred) stores it.
    assert!(w.store.record(USER).is_none());
    assert_eq!(w.store.pending_count(USER), 1);
    let verdict = commit(&mut w.session(&mut Script::default()), id.as_str());
    assert_eq!(verdict, Verdict::Success);
    assert!(w.store.record(USER).is_some());
    assert!(w.logged("enrolled at login"));
    // Enrollment at login is a two-step login: it opened the gate for its address.
    assert_eq!(
        account(&mut w.session(&mut Script::default())),
        Verdict::Success
    );
    // Taken once; a malformed id is refused.
    assert_eq!(
        commit(&mut w.session(&mut Script::default()), id.as_str()),
        Verdict::CredError
    );
    assert_eq!(
        commit(&mut w.session(&mut Script::default()), "../../etc"),
        Verdict::CredError
    );
}

#[test]
fn enrollment_is_refused_when_silent_or_never_confirmed() {
    let mut w = World::new();
    w.config.policy.enforce_users = vec![USER.into()];
    w.config.policy.on_unenrolled = OnUnenrolled::Enroll;
    w.quiet = true;
    let mut script = Script::default();
    assert_eq!(w.code_prompt(&mut script), Verdict::Refused);
    assert!(script.seen.is_empty());
    w.quiet = false;
    let mut script = Script::answering(&["1", "2", "3"]);
    assert_eq!(w.code_prompt(&mut script), Verdict::Refused);
    assert_eq!(script.prompts(), [CODE_PROMPT; 3]);
    assert_eq!(w.store.pending_count(USER), 0);
    assert!(w.logged("reason=enrollment-not-confirmed"));
}

fn with_email(w: &mut World) {
    w.config.email.smtp_host = "127.0.0.1".into();
    w.config.email.from = "nas@example.com".into();
}

#[test]
fn email_on_request_mails_a_code_and_takes_it() {
    let mut w = World::new();
    with_email(&mut w);
    w.enroll(Some("alice@example.com"));
    // The mailed code is not known before the mail: the first login walks away at its prompt.
    let mut first = Script::answering(&["email"]);
    assert_eq!(w.code_prompt(&mut first), Verdict::Conversation);
    assert_eq!(
        first.prompts(),
        [FALLBACK_PROMPT, "Code sent to a•••@example.com: "]
    );
    let mailed = w.mail.sent.borrow().last().cloned().expect("a mail");
    // The pending code works at the next prompt (the send limit keeps it pending).
    let mut second = Script::answering(&["email", &mailed]);
    assert_eq!(w.code_prompt(&mut second), Verdict::Success);
    assert!(w.logged("method=email"));
    assert!(w.logged("detail=code-pending"));
}

#[test]
fn a_failed_mail_asks_for_the_app_and_leaves_nothing_pending() {
    let mut w = World::new();
    with_email(&mut w);
    w.enroll(Some("alice@example.com"));
    w.mail.down.set(true);
    let mut script = Script::answering(&["email", ""]);
    assert_eq!(w.code_prompt(&mut script), Verdict::Refused);
    assert_eq!(script.prompts(), [FALLBACK_PROMPT, PROMPT]);
    assert_eq!(script.errors(), [SEND_FAILED]);
    assert!(w.logged("email failure"));
    // Back up: a fresh code is mailed at once.
    w.mail.down.set(false);
    let mut again = Script::answering(&["email"]);
    assert_eq!(w.code_prompt(&mut again), Verdict::Conversation);
    assert_eq!(w.mail.sent.borrow().len(), 1);
    assert!(!w.logged("code-pending"));
}

#[test]
fn a_failed_conversation_fails_the_login() {
    let mut w = World::new();
    w.enroll(None);
    assert_eq!(w.code_prompt(&mut Script::default()), Verdict::Conversation);
    assert!(w.logged("reason=conversation-failed"));
}

#[test]
fn a_store_that_cannot_be_written_fails_closed() {
    let mut w = World::new();
    let key = w.enroll(None);
    w.store.fail_writes.set(true);
    let mut script = Script::answering(&[&code(&key, T)]);
    let verdict = w.code_prompt(&mut script);
    assert_eq!(verdict, Verdict::Unavailable);
    assert!(w.logged("refusing login detail="));
    // The user learns it is not their code; the reason stays in the log.
    assert_eq!(script.errors(), [UNAVAILABLE_MESSAGE]);
}

#[test]
fn a_damaged_record_fails_closed() {
    let mut w = World::new();
    w.store.put_texts(USER, "version = 1\nnot toml", None);
    let mut script = Script::default();
    assert_eq!(w.code_prompt(&mut script), Verdict::Unavailable);
    assert_eq!(script.errors(), [UNAVAILABLE_MESSAGE]);
}

#[test]
fn one_prompt_splits_first_and_verifies_after_the_password() {
    let mut w = World::new();
    let key = w.enroll(None);
    let token = Answer::new(format!("hunter2{}", code(&key, T)).into_bytes());
    let end = split(&mut w.session(&mut Script::default()), Some(token));
    let SplitEnd::HandOn { password, kept } = end else {
        panic!("{end:?}");
    };
    assert_eq!(password.as_slice(), b"hunter2");
    // Nothing was checked or counted yet.
    assert!(!w.logged("auth"));
    assert_eq!(
        verify(&mut w.session(&mut Script::default()), Some(kept)),
        Verdict::Success
    );
    assert_eq!(
        verify(&mut w.session(&mut Script::default()), None),
        Verdict::ServiceError
    );
    // Asked when no earlier module set the token; unenrolled: the whole answer is the password.
    let mut script = Script::answering(&["just-a-password"]);
    w.store = MemoryBackend::default();
    let end = split(&mut w.session(&mut script), None);
    assert_eq!(script.prompts(), [COMBINED_PROMPT]);
    let SplitEnd::HandOn { password, kept } = end else {
        panic!("{end:?}");
    };
    assert_eq!(password.as_slice(), b"just-a-password");
    assert_eq!(
        verify(&mut w.session(&mut Script::default()), Some(kept)),
        Verdict::Ignore
    );
}

#[test]
fn one_prompt_refuses_at_once_what_no_password_can_fix() {
    let mut w = World::new();
    with_email(&mut w);
    let key = w.enroll(Some("alice@example.com"));
    // An email-method user: the mailed code cannot be typed with the password.
    let lock = w.store.lock(USER).unwrap();
    let mut record = w.store.record(USER).unwrap();
    record.method = crate::record::Method::Email;
    record.totp = None;
    w.store.save(&lock, &record).unwrap();
    drop(lock);
    let token = Some(Answer::new(format!("pw{}", code(&key, T)).into_bytes()));
    let end = split(&mut w.session(&mut Script::default()), token);
    assert!(
        matches!(end, SplitEnd::Decided(Verdict::Refused)),
        "{end:?}"
    );
    assert!(w.logged("reason=email-method-in-one-prompt-mode"));
}

#[test]
fn the_account_mode_never_talks_and_opens_only_after_a_code_from_the_address() {
    let mut w = World::new();
    let key = w.enroll(None);
    let mut silent = Script::default();
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Refused);
    assert!(w.logged(
        "account refused user=alice service=sshd rhost=192.0.2.7 reason=no-recent-two-step"
    ));
    assert_eq!(
        w.code_prompt(&mut Script::answering(&[&code(&key, T)])),
        Verdict::Success
    );
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Success);
    w.rhost = "192.0.2.8".into();
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Refused);
    w.rhost = "192.0.2.7".into();
    w.clock = FixedClock::at(T + crate::config::DEFAULT_GATE_WINDOW);
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Refused);
    assert!(silent.seen.is_empty(), "{:?}", silent.seen);

    w.config.gate.window_secs = 0;
    w.clock = FixedClock::at(T + 1);
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Refused);
    assert!(w.logged("reason=gate-off"));

    w.store.put_texts(USER, "not a record", None);
    w.config.gate.window_secs = 600;
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Unavailable);
    assert!(silent.seen.is_empty());
}

#[test]
fn the_account_mode_follows_the_policy_for_unenrolled_users_and_trusted_addresses() {
    let mut w = World::new();
    let mut silent = Script::default();
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Ignore);
    w.config.unenrolled = crate::config::Unenrolled::Deny;
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Refused);
    w.config.unenrolled = crate::config::Unenrolled::Allow;
    w.config.policy.enforce_users = vec![USER.into()];
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Refused);
    assert!(w.logged("policy=enforced"));
    w.enroll(None);
    w.config.policy.trusted_networks = vec![Network::parse("192.0.2.0/24").unwrap()];
    assert_eq!(account(&mut w.session(&mut silent)), Verdict::Success);
    assert!(w.logged("reason=trusted-network"));
    assert!(silent.seen.is_empty());
}
