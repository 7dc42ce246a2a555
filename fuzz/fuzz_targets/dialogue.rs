//! The whole login dialogue, as pam-u2f's fuzz_auth drives its entry point: a fuzzed record
//! file and login-state file (in a `MemoryBackend`, read through the real parsers), fuzzed
//! policy switches, and a fuzzed conversation (answers, and conversation failures at any
//! step). Never panics; a record or state that does not parse never lets the login in or
//! lets it go on unenrolled (fail closed).
//!
//! Input: one flag byte, then parts separated by NUL: the record text, the state text (empty:
//! no state file), then one answer per prompt; an answer starting with 0x01 fails the
//! conversation at that prompt. Flag 64 runs the account mode (the SMB gate) instead, which
//! must never use the conversation.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use twostep_common::audit::Memory;
use twostep_common::backend::MemoryBackend;
use twostep_common::clock::FixedClock;
use twostep_common::config::{Config, OnUnenrolled, Unenrolled};
use twostep_common::dialogue::{
    self, Answer, ConvError, Conversation, Mailer, Session, SplitEnd, Verdict,
};
use twostep_common::email;
use twostep_common::error::Error;
use twostep_common::policy::Directory;

const USER: &str = "alice";
const NOW: u64 = 1_800_000_015;

/// The answers still to give, and how many times the dialogue talked.
struct Script(RefCell<VecDeque<Vec<u8>>>, usize);

impl Conversation for Script {
    fn ask(&mut self, _: &str, _: bool) -> Result<Answer, ConvError> {
        self.1 += 1;
        match self.0.borrow_mut().pop_front() {
            Some(answer) if answer.first() == Some(&1) => Err(ConvError),
            Some(answer) => Ok(Answer::new(answer)),
            None => Err(ConvError),
        }
    }
    fn info(&mut self, _: &str) -> Result<(), ConvError> {
        self.1 += 1;
        Ok(())
    }
    fn error(&mut self, _: &str) -> Result<(), ConvError> {
        self.1 += 1;
        Ok(())
    }
}

struct Mail;

impl Mailer for Mail {
    fn send(&self, _: &email::Request) -> Result<(), email::SendError> {
        Ok(())
    }
}

struct Groups;

impl Directory for Groups {
    fn groups_of(&self, _: &str) -> Result<Vec<String>, Error> {
        Ok(vec!["staff".into()])
    }
    fn members_of(&self, _: &str) -> Result<Vec<String>, Error> {
        Ok(vec![USER.into()])
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0);
    let record = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let state = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let answers: VecDeque<Vec<u8>> = parts.take(8).map(<[u8]>::to_vec).collect();

    let mut config = Config::default();
    if flags & 1 != 0 {
        config.policy.enforce_groups = vec!["staff".into()];
    }
    if flags & 2 != 0 {
        config.policy.on_unenrolled = OnUnenrolled::Enroll;
    }
    if flags & 4 != 0 {
        config.unenrolled = Unenrolled::Deny;
    }
    if flags & 8 != 0 {
        config.email.smtp_host = "127.0.0.1".into();
        config.email.from = "nas@example.com".into();
    }
    let store = MemoryBackend::default();
    if !record.is_empty() {
        store.put_texts(USER, &record, (!state.is_empty()).then_some(state.as_str()));
    }
    let damaged = !record.is_empty() && store.record(USER).is_none();
    let mut script = Script(RefCell::new(answers), 0);
    let mut log = Memory::default();
    let clock = FixedClock::at(NOW);
    let mut session = Session {
        config: &config,
        store: &store,
        user: USER.into(),
        service: "sshd".into(),
        rhost: "192.0.2.7".into(),
        quiet: flags & 16 != 0,
        conv: &mut script,
        log: &mut log,
        clock: &clock,
        dir: &Groups,
        mailer: &Mail,
    };
    let account = flags & 64 != 0;
    let verdict = if account {
        session.quiet = true;
        dialogue::account(&mut session)
    } else if flags & 32 != 0 {
        match dialogue::split(&mut session, None) {
            SplitEnd::Decided(verdict) => verdict,
            SplitEnd::HandOn { kept, .. } => dialogue::verify(&mut session, Some(kept)),
        }
    } else {
        dialogue::code_prompt(&mut session)
    };
    if account {
        assert_eq!(script.1, 0, "the account mode talked");
        assert!(
            matches!(
                verdict,
                Verdict::Success | Verdict::Ignore | Verdict::Refused | Verdict::Unavailable
            ),
            "the account mode gave {verdict:?}"
        );
    }
    if damaged {
        assert!(
            !matches!(
                verdict,
                Verdict::Success | Verdict::Ignore | Verdict::Enrolled(_)
            ),
            "a damaged record gave {verdict:?}"
        );
    }
});
