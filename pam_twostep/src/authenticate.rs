//! The PAM side of a login: arguments, config, PAM items, the conversation, PAM codes and
//! syslog. Every decision is made by [`twostep_common::dialogue`].

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use pam::constants::{
    PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_SILENT, PAM_TEXT_INFO, PamFlag,
    PamMessageStyle, PamResultCode,
};
use pam::conv::Conv;
use pam::items::{RHost, Service, User};
use pam::module::PamHandle;
use twostep_common::audit::{Level, Sink, Syslog, field};
use twostep_common::clock::SystemClock;
use twostep_common::config::Config;
use twostep_common::dialogue::{self, Answer, ConvError, Conversation, Mailer, Session, Verdict};
use twostep_common::email;
use twostep_common::module_args::{ArgsError, Mode, ModuleArgs};
use twostep_common::policy::SystemDirectory;
use twostep_common::remote::LoginStore;

use crate::{one_prompt, pamenv};

const PROCESS: &str = "pam_twostep";
const DEFAULT_LOG_SOCKET: &str = "/dev/log";
/// The PAM environment variable that carries a confirmed enrollment's id to `pam_setcred`.
pub const ENROLLMENT_ENV: &str = "TWOSTEP_ENROLLMENT";

/// What a hook needs besides the handle: the config, where log lines go, the PAM items.
pub struct Shell {
    setup: Setup,
    pub log: Syslog,
    store: LoginStore,
    user: String,
    service: String,
    rhost: String,
    quiet: bool,
}

/// Where the user name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserItem {
    /// pam_get_user: the application's user, or asked through the conversation.
    AskIfUnset,
    /// PAM_USER as the application set it; never asked (the account mode talks to nobody).
    MustBeSet,
}

/// The config and its path, which the mail helper is handed so it reads the same config.
struct Setup {
    config: Config,
    path: PathBuf,
}

impl Mailer for Setup {
    fn send(&self, request: &email::Request) -> Result<(), email::SendError> {
        email::send_via_helper(&self.config, &self.path, request)
    }
}

/// libpam's conversation function. The first failure's code is kept for the result.
pub struct PamConversation<'a> {
    pamh: &'a PamHandle,
    failed: Option<PamResultCode>,
}

impl PamConversation<'_> {
    fn send(&mut self, style: PamMessageStyle, text: &str) -> Result<Answer, ConvError> {
        let sent = match self.pamh.get_item::<Conv>() {
            Ok(Some(conv)) => conv.send(style, text),
            Ok(None) => Err(PamResultCode::PAM_CONV_ERR),
            Err(code) => Err(code),
        };
        match sent {
            Ok(answer) => Ok(Answer::new(
                answer
                    .as_ref()
                    .map_or(Vec::new(), |a| a.as_bytes().to_vec()),
            )),
            Err(code) => {
                self.failed.get_or_insert(code);
                Err(ConvError)
            }
        }
    }

    /// The PAM code a conversation failure ends the login with; never one that lets it go on.
    fn failure(self) -> PamResultCode {
        never_pass(self.failed.unwrap_or(PamResultCode::PAM_CONV_ERR))
    }
}

impl Conversation for PamConversation<'_> {
    fn ask(&mut self, prompt: &str, visible: bool) -> Result<Answer, ConvError> {
        let style = if visible {
            PAM_PROMPT_ECHO_ON
        } else {
            PAM_PROMPT_ECHO_OFF
        };
        self.send(style, prompt)
    }

    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.send(PAM_TEXT_INFO, text).map(drop)
    }

    fn error(&mut self, text: &str) -> Result<(), ConvError> {
        self.send(PAM_ERROR_MSG, text).map(drop)
    }
}

impl Shell {
    /// Reads the arguments, the config and the PAM items, and opens the store; an error is
    /// the PAM code to return (already logged).
    pub fn start(
        pamh: &mut PamHandle,
        raw_args: &[&CStr],
        flags: PamFlag,
    ) -> Result<(Shell, ModuleArgs), PamResultCode> {
        Shell::start_as(pamh, raw_args, flags, UserItem::AskIfUnset)
    }

    /// [`Shell::start`]; `user` says whether libpam may ask for a user name not yet set.
    pub fn start_as(
        pamh: &mut PamHandle,
        raw_args: &[&CStr],
        flags: PamFlag,
        user: UserItem,
    ) -> Result<(Shell, ModuleArgs), PamResultCode> {
        let args = match parse_args(raw_args) {
            Ok(args) => args,
            Err(why) => {
                early_log(&format!(
                    "configuration error in the PAM service file: {}",
                    field("detail", &why.to_string())
                ));
                return Err(PamResultCode::PAM_SERVICE_ERR);
            }
        };
        let config = match Config::load_for_login(&args.config, args.default_config()) {
            Ok((config, notice)) => {
                if let Some(notice) = notice {
                    Syslog::open(&config.log.socket, PROCESS).log(Level::Notice, &notice);
                }
                config
            }
            Err(e) => {
                early_log(&format!(
                    "configuration error, refusing all logins: {}",
                    field("detail", &e.to_string())
                ));
                return Err(PamResultCode::PAM_AUTHINFO_UNAVAIL);
            }
        };
        let mut log = Syslog::open(&config.log.socket, PROCESS);
        let user = match user {
            UserItem::AskIfUnset => pamh.get_user(None),
            UserItem::MustBeSet => match pamh.get_item::<User>() {
                Ok(Some(user)) if !user.to_bytes().is_empty() => {
                    Ok(user.to_string_lossy().into_owned())
                }
                Ok(_) => Err(PamResultCode::PAM_USER_UNKNOWN),
                Err(code) => Err(code),
            },
        };
        let user = match user {
            Ok(user) => user,
            Err(code) => {
                log.log(Level::Error, "cannot get the user name from PAM");
                return Err(never_pass(code));
            }
        };
        let service = item_text::<Service>(pamh);
        let rhost = item_text::<RHost>(pamh);
        let store = match LoginStore::open(&config) {
            Ok(store) => store,
            Err(e) => {
                let detail = field("detail", &e.to_string());
                log.log(
                    Level::Error,
                    &format!(
                        "error {} {} {} refusing login {detail}",
                        field("user", &user),
                        field("service", &service),
                        field("rhost", &rhost)
                    ),
                );
                return Err(PamResultCode::PAM_AUTHINFO_UNAVAIL);
            }
        };
        let shell = Shell {
            setup: Setup {
                config,
                path: args.config.clone(),
            },
            log,
            store,
            user,
            service,
            rhost,
            quiet: flags & PAM_SILENT != 0,
        };
        Ok((shell, args))
    }

    /// The dialogue's view of this login, talking through `conv`.
    pub fn session<'a>(&'a mut self, conv: &'a mut dyn Conversation) -> Session<'a, LoginStore> {
        Session {
            config: &self.setup.config,
            store: &self.store,
            user: self.user.clone(),
            service: self.service.clone(),
            rhost: self.rhost.clone(),
            quiet: self.quiet,
            conv,
            log: &mut self.log,
            clock: &SystemClock,
            dir: &SystemDirectory,
            mailer: &self.setup,
        }
    }
}

/// Runs `flow` on a session of this login once its user name is resolved
/// ([`dialogue::resolve_user`]). Gives what `flow` returned and the code a conversation
/// failure ends the login with, or the PAM code the login already ended with.
pub fn in_session<T>(
    shell: &mut Shell,
    pamh: &PamHandle,
    flow: impl FnOnce(&mut Session<'_, LoginStore>) -> T,
) -> Result<(T, PamResultCode), PamResultCode> {
    let mut conv = PamConversation { pamh, failed: None };
    let ended = {
        let mut session = shell.session(&mut conv);
        dialogue::resolve_user(&mut session).map(|()| flow(&mut session))
    };
    let conv_failure = conv.failure();
    match ended {
        Ok(done) => Ok((done, conv_failure)),
        Err(verdict) => Err(pam_code(&verdict, conv_failure)),
    }
}

pub fn run(pamh: &mut PamHandle, raw_args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let (mut shell, args) = match Shell::start(pamh, raw_args, flags) {
        Ok(started) => started,
        Err(code) => return code,
    };
    match args.mode {
        Mode::Code => code_prompt(&mut shell, pamh),
        Mode::Split => one_prompt::split(&mut shell, pamh),
        Mode::Verify => one_prompt::verify(&mut shell, pamh),
    }
}

/// The usual line after the password module.
fn code_prompt(shell: &mut Shell, pamh: &mut PamHandle) -> PamResultCode {
    let (verdict, conv_failure) = match in_session(shell, pamh, dialogue::code_prompt) {
        Ok(done) => done,
        Err(code) => return code,
    };
    if let Verdict::Enrolled(id) = &verdict {
        // Kept for pam_setcred, which stores it once the whole stack has succeeded.
        if let Err(code) = pamenv::set(pamh, ENROLLMENT_ENV, Some(id.as_str())) {
            shell.log.log(
                Level::Error,
                "error: cannot keep the enrollment for pam_setcred",
            );
            return code;
        }
    }
    pam_code(&verdict, conv_failure)
}

/// The PAM code of a verdict; `conv_failure` for a failed conversation.
pub fn pam_code(verdict: &Verdict, conv_failure: PamResultCode) -> PamResultCode {
    match verdict {
        Verdict::Success | Verdict::Enrolled(_) => PamResultCode::PAM_SUCCESS,
        Verdict::Ignore => PamResultCode::PAM_IGNORE,
        Verdict::Refused => PamResultCode::PAM_AUTH_ERR,
        Verdict::Unavailable => PamResultCode::PAM_AUTHINFO_UNAVAIL,
        Verdict::ServiceError => PamResultCode::PAM_SERVICE_ERR,
        Verdict::CredError => PamResultCode::PAM_CRED_ERR,
        Verdict::Conversation => conv_failure,
    }
}

/// Error codes from libpam pass through, except the two that would let a login continue.
pub(crate) fn never_pass(code: PamResultCode) -> PamResultCode {
    match code {
        PamResultCode::PAM_SUCCESS | PamResultCode::PAM_IGNORE => PamResultCode::PAM_AUTH_ERR,
        other => other,
    }
}

fn item_text<'a, T: pam::items::Item<'a> + std::ops::Deref<Target = &'a CStr>>(
    pamh: &'a PamHandle,
) -> String {
    match pamh.get_item::<T>() {
        Ok(Some(item)) => item.to_string_lossy().into_owned(),
        _ => String::new(),
    }
}

/// Logging before the config (and so the configured socket) is known.
fn early_log(message: &str) {
    Syslog::open(Path::new(DEFAULT_LOG_SOCKET), PROCESS).log(Level::Error, message);
}

/// For hooks of stacks this module does not belong in: fail, and say why.
pub fn misplaced(stack: &str, raw_args: &[&CStr]) -> PamResultCode {
    let socket = parse_args(raw_args)
        .ok()
        .and_then(|a| Config::load(&a.config).ok())
        .map(|c| c.log.socket)
        .unwrap_or_else(|| DEFAULT_LOG_SOCKET.into());
    Syslog::open(&socket, PROCESS).log(
        Level::Error,
        &format!("pam_twostep belongs in the auth and account stacks; it was called from the {stack} stack: refusing"),
    );
    PamResultCode::PAM_SERVICE_ERR
}

fn parse_args(raw_args: &[&CStr]) -> Result<ModuleArgs, ArgsError> {
    let bytes: Vec<&[u8]> = raw_args.iter().map(|a| a.to_bytes()).collect();
    ModuleArgs::parse(&bytes)
}
