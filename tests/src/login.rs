//! Login attempts through `pam-drive`, and what they printed.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::process::Command;

use crate::env::TestEnv;

/// One `pam_authenticate` call to make; build with [`TestEnv::attempt`], then [`run`](Self::run).
#[derive(Debug)]
pub struct Attempt<'a> {
    env: &'a TestEnv,
    user: String,
    rhost: Option<String>,
    answers: Vec<AnswerArg>,
    time: Option<i64>,
    dev_log: bool,
    setcred: bool,
    envs: Vec<(OsString, OsString)>,
    open_fds: Vec<std::path::PathBuf>,
    /// `--account` and its flags: pam_acct_mgmt alone.
    account: Vec<&'static str>,
}

impl<'a> Attempt<'a> {
    pub(crate) fn new(env: &'a TestEnv, user: &str) -> Attempt<'a> {
        Attempt {
            env,
            user: user.to_string(),
            rhost: None,
            answers: Vec::new(),
            time: None,
            dev_log: true,
            setcred: true,
            envs: Vec::new(),
            open_fds: Vec::new(),
            account: Vec::new(),
        }
    }

    /// Adds the answer to the next prompt.
    pub fn answer(mut self, text: &str) -> Self {
        self.answers
            .push(AnswerArg::Bytes(text.as_bytes().to_vec()));
        self
    }

    /// Adds answers to the next prompts.
    pub fn answers(self, texts: &[&str]) -> Self {
        texts
            .iter()
            .fold(self, |attempt, text| attempt.answer(text))
    }

    /// Adds a raw (possibly non-UTF-8) answer; it cannot contain NUL bytes.
    pub fn answer_bytes(mut self, bytes: &[u8]) -> Self {
        self.answers.push(AnswerArg::Bytes(bytes.to_vec()));
        self
    }

    /// Adds an answer computed when its prompt arrives: pam-drive runs `program "<prompt>"`
    /// and answers with its output minus the trailing newline (`--answer-exec`), e.g.
    /// [`SmtpServer::code_reader`](crate::smtp::SmtpServer::code_reader). Such answers are not
    /// known in advance, so the test must pass them to [`TestEnv::add_secret`] itself.
    pub fn answer_exec(mut self, program: &std::path::Path) -> Self {
        self.answers.push(AnswerArg::Exec(program.to_path_buf()));
        self
    }

    /// Sets PAM_RHOST.
    pub fn rhost(mut self, host: &str) -> Self {
        self.rhost = Some(host.to_string());
        self
    }

    /// Runs with the wall clock starting at `epoch` (seconds).
    pub fn time(mut self, epoch: i64) -> Self {
        self.time = Some(epoch);
        self
    }

    /// Whether `/dev/log` is redirected to the environment's syslog listener (default: yes), so
    /// that libpam's messages and a module's before it has read its config are collected too.
    pub fn dev_log(mut self, redirect: bool) -> Self {
        self.dev_log = redirect;
        self
    }

    /// Whether pam_setcred follows a successful pam_authenticate (default: yes, as in real
    /// applications).
    pub fn setcred(mut self, call: bool) -> Self {
        self.setcred = call;
        self
    }

    /// Runs pam-drive with these environment variables added, e.g. a test user directory's
    /// ([`NssDirectory::envs`](crate::nss::NssDirectory::envs)).
    pub fn envs(mut self, envs: &[(OsString, OsString)]) -> Self {
        self.envs.extend_from_slice(envs);
        self
    }

    /// Has pam-drive hold `path` open, inheritable, during the login (`--open-fd`).
    pub fn open_fd(mut self, path: &std::path::Path) -> Self {
        self.open_fds.push(path.to_path_buf());
        self
    }

    /// Runs `pam_acct_mgmt` alone, as Samba does (`--account`); `silent` adds PAM_SILENT and
    /// `no_conv` gives libpam no conversation function at all.
    pub fn account(mut self, silent: bool, no_conv: bool) -> Self {
        self.account = vec!["--account"];
        if silent {
            self.account.push("--silent");
        }
        if no_conv {
            self.account.push("--no-conv");
        }
        self
    }

    /// The pam-drive arguments for this attempt.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--service".into(), self.env.service().into()];
        args.extend(["--user".into(), OsString::from(&self.user)]);
        if let Some(rhost) = &self.rhost {
            args.extend(["--rhost".into(), rhost.into()]);
        }
        if let Some(time) = self.time {
            args.extend(["--time".into(), time.to_string().into()]);
        }
        if self.dev_log {
            args.extend(["--dev-log".into(), self.env.log_socket().into()]);
        }
        if !self.setcred {
            args.push("--no-setcred".into());
        }
        for path in &self.open_fds {
            args.extend(["--open-fd".into(), path.into()]);
        }
        args.extend(self.account.iter().map(OsString::from));
        for answer in &self.answers {
            match answer {
                AnswerArg::Bytes(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => args.extend(["--answer".into(), text.into()]),
                    Err(_) => args.extend(["--answer-hex".into(), hex(bytes).into()]),
                },
                AnswerArg::Exec(program) => {
                    args.extend(["--answer-exec".into(), program.into()]);
                }
            }
        }
        args
    }

    /// Runs pam-drive and times it, without remembering the answers as secrets (for answers
    /// such as the keyword `email`, which log lines may rightly contain); the result carries
    /// the log lines the attempt produced.
    pub fn run_timed(self) -> (Login, std::time::Duration) {
        let before = self.env.logs().len();
        let started = std::time::Instant::now();
        let mut login = pam_drive(&self.args());
        let elapsed = started.elapsed();
        login.logs = self.env.logs().split_off(before);
        (login, elapsed)
    }

    /// Runs pam-drive; the answers are remembered as secrets for
    /// [`TestEnv::assert_logs_clean`]. The result carries the log lines the attempt produced.
    pub fn run(self) -> Login {
        for answer in &self.answers {
            if let AnswerArg::Bytes(bytes) = answer {
                self.env.add_secret(&String::from_utf8_lossy(bytes));
            }
        }
        let before = self.env.logs().len();
        let mut login = pam_drive_with(&self.args(), &self.envs);
        login.logs = self.env.logs().split_off(before);
        login
    }
}

/// One answer of an [`Attempt`]: fixed bytes or a program (`--answer-exec`).
#[derive(Debug, Clone)]
enum AnswerArg {
    Bytes(Vec<u8>),
    Exec(std::path::PathBuf),
}

/// Runs pam-drive with `args` and parses its output. Panics on usage errors.
pub fn pam_drive(args: &[OsString]) -> Login {
    pam_drive_with(args, &[])
}

/// [`pam_drive`] with environment variables added.
pub fn pam_drive_with(args: &[OsString], envs: &[(OsString, OsString)]) -> Login {
    let output = crate::run::run(
        Command::new(crate::paths::pam_drive())
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v))),
        crate::run::TIMEOUT,
    );
    let login = Login::parse(
        &String::from_utf8_lossy(&output.stdout),
        &String::from_utf8_lossy(&output.stderr),
    );
    let expected_exit = if login.result == "PAM_SUCCESS" { 0 } else { 1 };
    assert_eq!(
        output.status.code(),
        Some(expected_exit),
        "pam-drive {args:?}: exit status does not match its result\n{login}"
    );
    login
}

/// What a login attempt printed.
#[derive(Debug, Clone, Default)]
pub struct Login {
    /// The `RESULT:` name, e.g. `PAM_SUCCESS`.
    pub result: String,
    /// Conversation messages in order: (style, text), e.g. ("PROMPT_ECHO_OFF",
    /// "Verification code: ").
    pub messages: Vec<(String, String)>,
    /// pam-drive's stdout.
    pub stdout: String,
    /// pam-drive's stderr.
    pub stderr: String,
    /// Syslog lines received while the attempt ran (empty for [`pam_drive`] calls).
    pub logs: Vec<String>,
}

impl Login {
    /// Parses pam-drive's output; panics when it has no `RESULT:` line.
    pub fn parse(stdout: &str, stderr: &str) -> Login {
        let mut login = Login {
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            ..Login::default()
        };
        for line in stdout.lines() {
            let Some((style, text)) = line.split_once(": ") else {
                panic!("unexpected pam-drive line {line:?}\n{login}");
            };
            if style == "RESULT" {
                login.result = text.to_string();
            } else {
                login.messages.push((style.to_string(), text.to_string()));
            }
        }
        assert!(
            !login.result.is_empty(),
            "pam-drive printed no RESULT\n{login}"
        );
        login
    }

    /// Texts of the messages of one style.
    pub fn texts(&self, style: &str) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|(s, _)| s == style)
            .map(|(_, text)| text.as_str())
            .collect()
    }

    /// Texts of the prompts (echo on or off).
    pub fn prompts(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|(style, _)| style.starts_with("PROMPT_"))
            .map(|(_, text)| text.as_str())
            .collect()
    }

    /// Whether a message of this style and exact text was shown.
    pub fn has_message(&self, style: &str, text: &str) -> bool {
        self.messages.iter().any(|(s, t)| s == style && t == text)
    }

    /// Panics unless the result is `expected`.
    pub fn assert_result(&self, expected: &str) -> &Self {
        assert_eq!(self.result, expected, "unexpected PAM result\n{self}");
        self
    }

    /// Panics unless exactly the one prompt `PROMPT_ECHO_OFF: <text>` was shown.
    pub fn assert_prompted_once(&self, text: &str) -> &Self {
        assert_eq!(
            self.prompts(),
            [text],
            "expected exactly one prompt {text:?}\n{self}"
        );
        assert!(
            self.has_message("PROMPT_ECHO_OFF", text),
            "the prompt must not echo\n{self}"
        );
        self
    }

    /// Panics if any prompt was shown.
    pub fn assert_no_prompt(&self) -> &Self {
        assert!(self.prompts().is_empty(), "expected no prompt\n{self}");
        self
    }

    /// Panics if the result lets the user in or skips the module (PAM_SUCCESS, PAM_IGNORE).
    pub fn assert_refused(&self) -> &Self {
        assert!(
            !["PAM_SUCCESS", "PAM_IGNORE"].contains(&self.result.as_str()),
            "expected a refusal\n{self}"
        );
        self
    }

    /// Panics unless some log line of this attempt contains every one of `needles`; returns
    /// the first such line.
    pub fn assert_logged(&self, needles: &[&str]) -> &str {
        crate::syslog::assert_logged(&self.logs, needles, self)
    }
}

impl std::fmt::Display for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "--- pam-drive stdout:\n{}", self.stdout)?;
        writeln!(f, "--- pam-drive stderr:\n{}", self.stderr)?;
        writeln!(f, "--- syslog during the attempt:")?;
        self.logs.iter().try_for_each(|line| writeln!(f, "{line}"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
