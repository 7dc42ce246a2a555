//! `mail-code`: prints the code of the newest message an [`SmtpServer`] stored, for
//! `pam-drive --answer-exec`.
//!
//! ```text
//! TWOSTEP_TEST_MAILDIR=DIR mail-code [PROMPT]
//! ```
//!
//! Reads the highest-numbered `DIR/*.eml` (waiting up to ten seconds for a first one), and
//! prints its code: the first body line holding only 4 to 10 digits (the product indents it by
//! four spaces). The prompt argument pam-drive passes is ignored. Exit status 1, with the reason
//! on stderr, when there is no message or no code.
//!
//! [`SmtpServer`]: twostep_tests::smtp::SmtpServer

use std::process::ExitCode;
use std::time::Instant;

use twostep_tests::smtp::{MAIL_CODE_WAIT, MAILDIR_ENV, read_maildir};

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os(MAILDIR_ENV) else {
        eprintln!("mail-code: {MAILDIR_ENV} is not set");
        return ExitCode::from(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let deadline = Instant::now() + MAIL_CODE_WAIT;
    let newest = loop {
        if let Some(mail) = read_maildir(&dir).pop() {
            break mail;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "mail-code: no message in {} after {MAIL_CODE_WAIT:?}",
                dir.display()
            );
            return ExitCode::from(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    match newest.code() {
        Some(code) => {
            println!("{code}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("mail-code: no line holding only a code in\n{newest}");
            ExitCode::from(1)
        }
    }
}
