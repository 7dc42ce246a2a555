//! `twostep doctor`: one line per check, non-zero exit on any failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use twostep_common::backend::{self, Manage};
use twostep_common::config::{Config, DEFAULT_CONFIG_PATH, OnUnenrolled};
use twostep_common::module_args::{Mode, ModuleArgs};
use twostep_common::remote::LoginStore;

use crate::pamstack::{self, Action};

/// The PAM directory libpam reads; `--pam-dir` checks another one (tests, images).
pub const PAM_DIR: &str = "/etc/pam.d";
const MODULE_NAME: &str = "pam_twostep.so";
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/security",
    "/usr/lib/aarch64-linux-gnu/security",
    "/usr/lib64/security",
    "/lib/x86_64-linux-gnu/security",
    "/lib/security",
    "/usr/lib/security",
];

type Check = Result<String, String>;

/// `twostep doctor` options.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Check the PAM service files in DIR instead of /etc/pam.d
    #[arg(long, value_name = "DIR", default_value = PAM_DIR)]
    pub pam_dir: PathBuf,

    /// Samba's config, checked when the samba PAM service runs the module in its account stack
    #[arg(long, value_name = "PATH", default_value = crate::smbconf::DEFAULT_SMB_CONF)]
    pub smb_conf: PathBuf,
}

pub fn run(config_path: &Path, args: &DoctorArgs) -> ExitCode {
    let mut failed = false;
    let mut line = |tag: &str, name: &str, text: &str| {
        if tag == "FAIL" {
            failed = true;
        }
        println!("{tag:<4}  {name:<8}  {text}");
    };
    let mut report = |name: &str, check: Check| match check {
        Ok(text) => line("ok", name, &text),
        Err(text) => line("FAIL", name, &text),
    };
    let config = check_config(config_path);
    report(
        "config",
        config
            .as_ref()
            .map(|(_, t)| t.clone())
            .map_err(Clone::clone),
    );
    match &config {
        Ok((config, _)) => report("state", check_state(config)),
        Err(_) => report("state", Err("not checked: the config does not load".into())),
    }
    match &config {
        Ok((config, _)) => report("log", check_log(config)),
        Err(_) => report("log", Err("not checked: the config does not load".into())),
    }
    let pam_dir = std::path::absolute(&args.pam_dir).unwrap_or_else(|_| args.pam_dir.clone());
    let (findings, used) = check_pam(&pam_dir, config_path, &args.smb_conf);
    let fails = findings.iter().any(|(t, _)| *t == Tag::Fail);
    for (tag, text) in &findings {
        report_finding(&mut |t, n, x| line(t, n, x), *tag, text);
    }
    if let (false, Some(used)) = (fails, used) {
        line("ok", "pam", &used);
    }
    match config
        .as_ref()
        .map(|(c, _)| check_self_service(&pam_dir, c))
    {
        Ok(SelfCheck::Missing(text)) => line("WARN", "self", &text),
        Ok(SelfCheck::Checked(Ok(text))) => line("ok", "self", &text),
        Ok(SelfCheck::Checked(Err(text))) => line("FAIL", "self", &text),
        Err(_) => line("FAIL", "self", "not checked: the config does not load"),
    }
    let mut report = |name: &str, check: Check| match check {
        Ok(text) => line("ok", name, &text),
        Err(text) => line("FAIL", name, &text),
    };
    report("clock", check_clock());
    match &config {
        Ok((config, _)) if config.email.enabled() => report(
            "email",
            crate::mail::check(config)
                .map(|()| {
                    format!(
                        "{}:{} accepts connections",
                        config.email.smtp_host, config.email.smtp_port
                    )
                })
                .map_err(|e| e.to_string()),
        ),
        Ok(_) => report("email", Ok("off (no [email] smtp_host)".into())),
        Err(_) => report("email", Err("not checked: the config does not load".into())),
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn report_finding(line: &mut dyn FnMut(&str, &str, &str), tag: Tag, text: &str) {
    let tag = match tag {
        Tag::Warn => "WARN",
        Tag::Fail => "FAIL",
    };
    line(tag, "pam", text);
}

fn check_config(path: &Path) -> Result<(Config, String), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let text = if path.exists() {
        format!("{} parses", path.display())
    } else {
        format!("{} is missing: built-in defaults", path.display())
    };
    Ok((config, text))
}

fn check_state(config: &Config) -> Check {
    let store = LoginStore::open(config).map_err(|e| e.to_string())?;
    let users = store.users().map_err(|e| e.to_string())?;
    let mut bad = Vec::new();
    for user in &users {
        if let Err(e) = backend::load(&store, user) {
            bad.push(e.to_string());
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "{} of {} records are refused (those users cannot log in): {}",
            bad.len(),
            users.len(),
            bad.join("; ")
        ));
    }
    let users = format!(
        "{} enrolled {}",
        users.len(),
        if users.len() == 1 { "user" } else { "users" }
    );
    Ok(match store {
        LoginStore::File(_) => format!(
            "{} is safe (root, 0700); {users}",
            config.state_dir.display()
        ),
        LoginStore::Remote(_) => format!(
            "the fleet store answers (twostep serve-store at {}); {users}, every record reads",
            config.store.socket.display()
        ),
    })
}

/// One result line of the `pam` check.
type Finding = (Tag, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tag {
    Warn,
    Fail,
}

/// Service files that are not services (package managers' and editors' leftovers).
fn is_leftover(name: &str) -> bool {
    [
        ".dpkg-old",
        ".dpkg-dist",
        ".dpkg-new",
        ".dpkg-bak",
        ".rpmsave",
        ".rpmnew",
        ".orig",
        ".bak",
        "~",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
        || name.starts_with('.')
}

/// Checks every service in `dir` that loads the module: returns the findings and the `ok`
/// text (which services use it, marking those that use another config than `checked`).
fn check_pam(dir: &Path, checked: &Path, smb_conf: &Path) -> (Vec<Finding>, Option<String>) {
    let mut findings: Vec<Finding> = Vec::new();
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !is_leftover(n))
            .collect(),
        Err(e) => {
            return (
                vec![(Tag::Fail, format!("cannot read {}: {e}", dir.display()))],
                None,
            );
        }
    };
    names.sort();
    let mut configs = Configs::default();
    let mut used_by = Vec::new();
    let mut asks_codes = false;
    for service in &names {
        let file = dir.join(service);
        if !std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
            continue;
        }
        outside_auth(&file, &mut findings);
        if check_account(dir, service, &mut configs, smb_conf, &mut findings) {
            used_by.push(format!("{service} (account)"));
        }
        let stack = pamstack::auth_stack(dir, service);
        let uses: Vec<usize> = (0..stack.rules.len())
            .filter(|&i| stack.rules[i].module_name().ends_with(MODULE_NAME))
            .collect();
        if uses.is_empty() {
            continue;
        }
        asks_codes = true;
        for problem in &stack.problems {
            findings.push((Tag::Fail, format!("{service}: {problem}")));
        }
        let mut elsewhere = Vec::new();
        for &i in &uses {
            let rule = &stack.rules[i];
            let at = format!("{service}: {}: {}", rule.origin, rule.text);
            let args = match ModuleArgs::parse(&rule.args) {
                Ok(args) => args,
                Err(why) => {
                    findings.push((Tag::Fail, format!("{at}: {why}")));
                    continue;
                }
            };
            if args.config != checked && !elsewhere.contains(&args.config) {
                elsewhere.push(args.config.clone());
            }
            findings.extend(judge(service, &stack.rules, i, &args, &at, &mut configs));
        }
        let mark = if elsewhere.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = elsewhere
                .iter()
                .map(|c| format!("config={}", c.display()))
                .collect();
            format!(" [{}: not the config checked here]", list.join(", "))
        };
        used_by.push(format!("{service}{mark}"));
    }
    // A line in an included file is reported once, not for every service that includes it.
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| seen.insert(f.clone()));
    if !asks_codes {
        findings.push((
            Tag::Fail,
            format!(
                "no service in {} loads {MODULE_NAME}: nobody is asked for a code (see docs/pam.md)",
                dir.display()
            ),
        ));
        return (findings, None);
    }
    (findings, Some(format!("used by {}", used_by.join(", "))))
}

/// The account stack of `service`: the gate (docs/smb.md). Whether the module is in it.
fn check_account(
    dir: &Path,
    service: &str,
    configs: &mut Configs,
    smb_conf: &Path,
    findings: &mut Vec<Finding>,
) -> bool {
    let stack = pamstack::stack_of(dir, service, "account");
    let uses: Vec<&pamstack::Rule> = stack
        .rules
        .iter()
        .filter(|r| r.module_name().ends_with(MODULE_NAME))
        .collect();
    if uses.is_empty() {
        return false;
    }
    for problem in &stack.problems {
        findings.push((Tag::Fail, format!("{service}: {problem}")));
    }
    for rule in uses {
        let at = format!("{service}: {}: {}", rule.origin, rule.text);
        let args = match ModuleArgs::parse(&rule.args) {
            Ok(args) => args,
            Err(why) => {
                findings.push((Tag::Fail, format!("{at}: {why}")));
                continue;
            }
        };
        if args.mode != Mode::Code {
            findings.push((
                Tag::Fail,
                format!("{at}: combined= has no meaning in the account stack (refused at login)"),
            ));
        }
        if !decides(&rule.control) {
            findings.push((
                Tag::Fail,
                format!(
                    "{at}: this control lets the account stack pass without the gate; use \
                     required or requisite"
                ),
            ));
        }
        if !module_path(&rule.module).is_some_and(|p| p.exists()) {
            findings.push((Tag::Fail, format!("{at}: the module file is not installed")));
        }
        match configs.get(&args.config) {
            Ok(config) if config.gate.window_secs == 0 => findings.push((
                Tag::Warn,
                format!(
                    "{at}: [gate] window_secs = 0 in its config: every enrolled user is refused"
                ),
            )),
            Ok(_) => {}
            Err(why) => {
                findings.push((Tag::Fail, format!("{at}: its config does not load: {why}")))
            }
        }
    }
    if service == "samba" {
        findings.extend(check_smb_conf(smb_conf));
    }
    true
}

/// Samba runs the account stack for SMB sessions only with `obey pam restrictions = yes`.
fn check_smb_conf(path: &Path) -> Vec<Finding> {
    let global = match crate::smbconf::read(path) {
        Ok(global) => global,
        Err(why) => {
            return vec![(
                Tag::Fail,
                format!("samba loads {MODULE_NAME} in its account stack, but {why}"),
            )];
        }
    };
    let mut out = Vec::new();
    if !global.obey_pam_restrictions {
        out.push((
            Tag::Fail,
            format!(
                "{}: [global] has no `obey pam restrictions = yes`: smbd never runs the account \
                 stack for SMB sessions, so the gate is not checked (docs/smb.md)",
                path.display()
            ),
        ));
    }
    if global.hostname_lookups {
        out.push((
            Tag::Warn,
            format!(
                "{}: `hostname lookups = yes`: PAM_RHOST is the client's host name, which matches \
                 only gates opened by logins that also report that name (docs/smb.md)",
                path.display()
            ),
        ));
    }
    for include in &global.includes {
        out.push((
            Tag::Warn,
            format!(
                "{}: includes {include}, which doctor does not read",
                path.display()
            ),
        ));
    }
    out
}

/// Lines of `file` that load the module in the password or session stack.
fn outside_auth(file: &Path, findings: &mut Vec<Finding>) {
    let Ok(bytes) = std::fs::read(file) else {
        return;
    };
    for (number, line) in pamstack::logical_lines(&String::from_utf8_lossy(&bytes)) {
        let Ok(fields) = pamstack::fields(&line) else {
            continue;
        };
        let kind = fields[0].trim_start_matches('-');
        if ["password", "session"].contains(&kind)
            && fields.get(2).is_some_and(|m| m.ends_with(MODULE_NAME))
        {
            findings.push((
                Tag::Fail,
                format!(
                    "{}:{number}: {line}: the module belongs in the auth and account stacks only",
                    file.display()
                ),
            ));
        }
    }
}

/// The configs that module lines name, each loaded once.
#[derive(Default)]
struct Configs(Vec<(PathBuf, Result<Config, String>)>);

impl Configs {
    fn get(&mut self, path: &Path) -> &Result<Config, String> {
        if let Some(i) = self.0.iter().position(|(p, _)| p == path) {
            return &self.0[i].1;
        }
        let loaded = if path.as_os_str() != DEFAULT_CONFIG_PATH && !path.exists() {
            Err(format!("{} does not exist", path.display()))
        } else {
            Config::load(path).map_err(|e| e.to_string())
        };
        self.0.push((path.to_path_buf(), loaded));
        &self.0.last().expect("just pushed").1
    }
}

/// Whether the module's own control makes its result count: success goes on, every failure
/// fails the stack (`required`, `requisite`, or the same in brackets).
fn decides(control: &pamstack::Control) -> bool {
    control.action("success") == Action::Ok
        && pamstack::FAILURE_VALUES
            .iter()
            .all(|v| matches!(control.action(v), Action::Bad | Action::Die))
}

/// The rules for one module line (docs/pam.md, "What twostep doctor checks").
fn judge(
    service: &str,
    rules: &[pamstack::Rule],
    i: usize,
    args: &ModuleArgs,
    at: &str,
    configs: &mut Configs,
) -> Vec<Finding> {
    let rule = &rules[i];
    let mut out = Vec::new();
    if !decides(&rule.control) {
        out.push((
            Tag::Fail,
            format!(
                "{at}: this control lets a failed or skipped code pass; use required or requisite"
            ),
        ));
    }
    if !module_path(&rule.module).is_some_and(|p| p.exists()) {
        out.push((Tag::Fail, format!("{at}: the module file is not installed")));
    }
    let enroll = match configs.get(&args.config) {
        Ok(config) => config.policy.on_unenrolled == OnUnenrolled::Enroll,
        Err(why) => {
            out.push((Tag::Fail, format!("{at}: its config does not load: {why}")));
            false
        }
    };
    let line = |j: usize| format!("{}: {}", rules[j].origin, rules[j].text);
    let find = |mode: Mode, range: Vec<usize>| {
        range.into_iter().find(|&j| {
            rules[j].module_name().ends_with(MODULE_NAME)
                && ModuleArgs::parse(&rules[j].args).is_ok_and(|a| a.mode == mode)
        })
    };
    let from = match args.mode {
        Mode::Code => Some(0),
        Mode::Split => {
            if find(Mode::Verify, (i + 1..rules.len()).collect()).is_none() {
                out.push((
                    Tag::Fail,
                    format!(
                        "{at}: combined=split without a combined=verify line after the password \
                         module: the code is never checked. Add `auth required {MODULE_NAME} \
                         combined=verify` after the password line (docs/pam.md)"
                    ),
                ));
            }
            None
        }
        Mode::Verify => match find(Mode::Split, (0..i).rev().collect()) {
            Some(split) => Some(split + 1),
            None => {
                out.push((
                    Tag::Fail,
                    format!(
                        "{at}: combined=verify without a combined=split line before the \
                         password module: there is no code to check. Add `auth required \
                         {MODULE_NAME} combined=split` before the password line (docs/pam.md)"
                    ),
                ));
                None
            }
        },
    };
    let Some(from) = from else {
        return out;
    };
    let paths = pamstack::paths_to(rules, from, i);
    for &j in &paths.skipped_by {
        // `sufficient pam_rootok.so` (su, chfn, chsh): root needs neither password nor code.
        if rules[j].module_name() == "pam_rootok.so" {
            continue;
        }
        let condition = pamstack::NOT_PASSWORD.contains(&rules[j].module_name());
        let why = format!(
            "{at}: {service} can skip the code: a success of {} ends the stack or jumps past \
             it. Use [policy] exempt_users / trusted_networks in the config instead",
            line(j)
        );
        out.push((if condition { Tag::Warn } else { Tag::Fail }, why));
    }
    for &j in &paths.failed_before {
        let fix = "make it `requisite` (or `[success=ok default=die]`) so that a failure ends \
                   the stack, or end the password block with `auth requisite pam_deny.so` as \
                   Debian's common-auth does";
        let finding = match args.mode {
            Mode::Verify => (
                Tag::Fail,
                format!(
                    "{at}: {} can fail and the stack still reaches combined=verify: strangers \
                     without the password would have their codes checked and counted toward \
                     the user's lockout; {fix}",
                    line(j)
                ),
            ),
            _ if enroll => (
                Tag::Fail,
                format!(
                    "{at}: {} can fail and the stack still reaches {MODULE_NAME}, and its config \
                     has on_unenrolled = \"enroll\": someone with a wrong password is offered \
                     enrollment; {fix}",
                    line(j)
                ),
            ),
            _ => (
                Tag::Warn,
                format!(
                    "{at}: {} can fail and the stack still reaches {MODULE_NAME}: strangers \
                     with a wrong password get the code prompt and their wrong codes count \
                     toward the user's lockout; {fix}",
                    line(j)
                ),
            ),
        };
        out.push(finding);
    }
    out
}

fn module_path(module: &str) -> Option<PathBuf> {
    if module.starts_with('/') {
        return Some(PathBuf::from(module));
    }
    MODULE_DIRS
        .iter()
        .map(|d| Path::new(d).join(module))
        .find(|p| p.exists())
}

/// Without a syslog listener nothing the module logs (failures, lockouts, errors) is kept.
/// The self-service's password stack (docs/self-service.md): present, with an auth and an
/// account line, and without pam_twostep (the service asks for the code itself; a stack that
/// asked for one would take a code where only the password was meant).
fn check_self_service(pam_dir: &Path, config: &Config) -> SelfCheck {
    let settings = &config.self_service;
    if !settings.enabled {
        return SelfCheck::Checked(Ok("off ([self_service] enabled = false)".into()));
    }
    let file = pam_dir.join(&settings.pam_service);
    if !file.exists() {
        // A warning: nothing breaks for logins, only `twostep self` cannot work.
        return SelfCheck::Missing(format!(
            "{} is missing: `twostep self` cannot check passwords (install the package's \
             file: auth and account lines of pam_unix.so)",
            file.display()
        ));
    }
    SelfCheck::Checked(check_self_stack(pam_dir, &settings.pam_service))
}

enum SelfCheck {
    Missing(String),
    Checked(Check),
}

fn check_self_stack(pam_dir: &Path, service: &str) -> Check {
    let file = pam_dir.join(service);
    let mut lines = 0;
    for kind in ["auth", "account"] {
        let stack = crate::pamstack::stack_of(pam_dir, service, kind);
        if let Some(problem) = stack.problems.first() {
            return Err(problem.clone());
        }
        if let Some(rule) = stack
            .rules
            .iter()
            .find(|r| r.module_name() == "pam_twostep.so")
        {
            return Err(format!(
                "{}:{}: {service} must not use pam_twostep.so (the self-service asks for the \
                 code itself); use pam_unix.so alone",
                rule.origin.file.display(),
                rule.origin.line
            ));
        }
        if stack.rules.is_empty() {
            return Err(format!("{} has no {kind} line", file.display()));
        }
        lines += stack.rules.len();
    }
    Ok(format!(
        "{} checks passwords ({lines} auth and account lines, no pam_twostep)",
        file.display()
    ))
}

fn check_log(config: &Config) -> Check {
    use std::os::unix::net::{UnixDatagram, UnixStream};
    let socket = &config.log.socket;
    if std::fs::symlink_metadata(socket).is_err() {
        return Err(format!(
            "{} does not exist: nothing pam_twostep logs (failures, lockouts, errors) is \
             kept; start a syslog daemon (systemd-journald, rsyslog)",
            socket.display()
        ));
    }
    let datagram = UnixDatagram::unbound().and_then(|s| s.connect(socket));
    match datagram {
        Ok(()) => Ok(format!("{} accepts log lines", socket.display())),
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => UnixStream::connect(socket)
            .map(|_| format!("{} accepts log lines (stream)", socket.display()))
            .map_err(|e| dead(socket, &e)),
        Err(e) => Err(dead(socket, &e)),
    }
}

fn dead(socket: &Path, e: &std::io::Error) -> String {
    format!(
        "{}: nobody listens ({e}): nothing pam_twostep logs is kept; start or restart the \
         syslog daemon (systemd-journald, rsyslog)",
        socket.display()
    )
}

/// TOTP needs a correct clock; the kernel knows whether NTP keeps it synchronised.
fn check_clock() -> Check {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a valid value.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed timex; with modes == 0 adjtimex only reads
    // the kernel clock state into it.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        return Err(format!(
            "cannot read the clock state: {}",
            std::io::Error::last_os_error()
        ));
    }
    if state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        return Err(
            "the system clock is not synchronised (TOTP codes depend on it): enable NTP, \
             e.g. systemd-timesyncd or chrony"
                .into(),
        );
    }
    Ok(format!("synchronised (estimated error {} µs)", tx.esterror))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_service_stack_must_check_passwords_without_the_module() {
        let dir = std::env::temp_dir().join(format!("twostep-doctor-self-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::default();
        assert!(matches!(
            check_self_service(&dir, &config),
            SelfCheck::Missing(_)
        ));
        let write = |text: &str| std::fs::write(dir.join("twostep-self"), text).unwrap();
        write("auth required pam_unix.so\naccount required pam_unix.so\n");
        let SelfCheck::Checked(Ok(text)) = check_self_service(&dir, &config) else {
            panic!("a pam_unix stack is fine");
        };
        assert!(text.contains("2 auth and account lines"), "{text}");
        write(
            "auth required pam_unix.so\nauth required /x/pam_twostep.so\naccount required pam_unix.so\n",
        );
        let SelfCheck::Checked(Err(text)) = check_self_service(&dir, &config) else {
            panic!("pam_twostep in the self-service stack must fail");
        };
        assert!(
            text.contains("twostep-self:2") && text.contains("must not use"),
            "{text}"
        );
        write("auth required pam_unix.so\n");
        assert!(matches!(
            check_self_service(&dir, &config),
            SelfCheck::Checked(Err(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A private PAM directory with `files`, a config with `config_text`, and the module at
    /// an absolute path that exists (this test binary).
    fn run_on(files: &[(&str, &str)], config_text: &str) -> (Vec<Finding>, Option<String>) {
        run_with_smb(files, config_text, None)
    }

    /// [`run_on`] with an smb.conf next to the PAM directory (none when `None`).
    fn run_with_smb(
        files: &[(&str, &str)],
        config_text: &str,
        smb_conf: Option<&str>,
    ) -> (Vec<Finding>, Option<String>) {
        // Unique per call: tests run in parallel, and several start with the same file.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "twostep-doctor-{}-{call}-{}",
            std::process::id(),
            files[0].0
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pam.d")).unwrap();
        let config = dir.join("twostep.toml");
        std::fs::write(&config, config_text).unwrap();
        let module = std::env::current_exe().unwrap();
        // Named like the module so that it counts as a use.
        let fake = dir.join("pam_twostep.so");
        std::fs::copy(&module, &fake).unwrap();
        for (name, text) in files {
            let text = text
                .replace("{module}", &fake.display().to_string())
                .replace("{config}", &config.display().to_string());
            std::fs::write(dir.join("pam.d").join(name), text).unwrap();
        }
        if let Some(text) = smb_conf {
            std::fs::write(dir.join("smb.conf"), text).unwrap();
        }
        check_pam(&dir.join("pam.d"), &config, &dir.join("smb.conf"))
    }

    const ENROLL: &str = "[policy]\non_unenrolled = \"enroll\"\n";

    fn tags(f: &[Finding]) -> Vec<Tag> {
        f.iter().map(|(t, _)| *t).collect()
    }

    #[test]
    fn required_password_line_with_enrollment_fails_without_it_warns() {
        let stack = "auth required pam_unix.so\nauth required {module} config={config}\n";
        let (f, ok) = run_on(&[("svc-a", stack)], ENROLL);
        assert_eq!(tags(&f), [Tag::Fail], "{f:?}");
        assert!(
            f[0].1
                .contains("svc-a:1: auth required pam_unix.so can fail"),
            "{f:?}"
        );
        assert!(f[0].1.contains("on_unenrolled"), "{f:?}");
        assert!(ok.unwrap().starts_with("used by svc-a"));
        let (f, _) = run_on(&[("svc-b", stack)], "");
        assert_eq!(tags(&f), [Tag::Warn], "{f:?}");
        assert!(f[0].1.contains("count toward the user's lockout"), "{f:?}");
        let safe = "auth requisite pam_unix.so\nauth required {module} config={config}\n";
        assert_eq!(run_on(&[("svc-c", safe)], ENROLL).0, []);
    }

    #[test]
    fn debian_common_auth_is_safe_and_sufficient_is_not() {
        let common = "auth\t[success=1 default=ignore]\tpam_unix.so nullok\n\
                      auth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n\
                      auth\toptional\t\t\tpam_cap.so\n";
        let (f, ok) = run_on(
            &[
                ("common-auth", common),
                (
                    "svc-d",
                    "@include common-auth\nauth required {module} config={config}\n",
                ),
            ],
            ENROLL,
        );
        assert_eq!(f, []);
        assert_eq!(ok.unwrap(), "used by svc-d");
        let (f, _) = run_on(
            &[(
                "svc-e",
                "auth sufficient pam_unix.so\nauth required {module} config={config}\n",
            )],
            "",
        );
        let text = format!("{f:?}");
        assert!(text.contains("can skip the code"), "{text}");
        assert!(text.contains("can fail"), "{text}");
        assert!(
            f.iter().any(|(t, m)| *t == Tag::Fail && m.contains("skip")),
            "{text}"
        );
    }

    #[test]
    fn debian_su_chsh_and_vsftpd_with_the_profile_are_fine() {
        let common = "auth [success=1 default=ignore] pam_unix.so nullok\n\
                      auth requisite pam_deny.so\nauth required pam_permit.so\n\
                      auth requisite {module} config={config}\n";
        let (f, ok) = run_on(
            &[
                ("common-auth", common),
                (
                    "su",
                    "auth sufficient pam_rootok.so\n@include common-auth\n",
                ),
                (
                    "chsh",
                    "auth required pam_shells.so\nauth sufficient pam_rootok.so\n@include common-auth\n",
                ),
                (
                    "vsftpd",
                    "auth required pam_listfile.so item=user sense=deny file=/etc/ftpusers onerr=succeed\n@include common-auth\n",
                ),
                (
                    "x-cond",
                    "auth [success=done default=ignore] pam_succeed_if.so user = backup\n@include common-auth\n",
                ),
            ],
            ENROLL,
        );
        assert_eq!(tags(&f), [Tag::Warn], "{f:?}");
        assert!(
            f[0].1.starts_with("x-cond: ") && f[0].1.contains("can skip the code"),
            "{f:?}"
        );
        assert_eq!(ok.unwrap(), "used by chsh, common-auth, su, vsftpd, x-cond");
    }

    #[test]
    fn one_prompt_lines_come_in_pairs_around_a_password_line_that_ends_the_stack() {
        let good = "auth required {module} combined=split config={config}\n\
                    auth requisite pam_unix.so use_first_pass\n\
                    auth required {module} combined=verify config={config}\n";
        assert_eq!(run_on(&[("svc-f", good)], "").0, []);
        let (f, _) = run_on(&[("svc-g", &good.replace("requisite", "required"))], "");
        assert_eq!(tags(&f), [Tag::Fail], "{f:?}");
        assert!(f[0].1.contains("reaches combined=verify"), "{f:?}");
        let (f, _) = run_on(
            &[(
                "svc-h",
                "auth required {module} combined=split config={config}\nauth requisite pam_unix.so\n",
            )],
            "",
        );
        assert!(f[0].1.contains("without a combined=verify"), "{f:?}");
        let (f, _) = run_on(
            &[(
                "svc-i",
                "auth requisite pam_unix.so\nauth required {module} combined=verify config={config}\n",
            )],
            "",
        );
        assert!(f[0].1.contains("without a combined=split"), "{f:?}");
        let (f, _) = run_on(
            &[("svc-j", "auth required {module} combined config={config}\n")],
            "",
        );
        assert!(
            f[0].1.contains("svc-j:1") && f[0].1.contains("no longer accepted"),
            "{f:?}"
        );
    }

    #[test]
    fn arguments_controls_other_stacks_and_other_configs() {
        let (f, _) = run_on(
            &[(
                "svc-k",
                "auth requisite pam_unix.so\nauth required {module} nullok\n\
                 auth [success=1 default=ignore] {module} config={config}\n\
                 session required {module}\n",
            )],
            "",
        );
        let text = format!("{f:?}");
        assert!(
            text.contains("svc-k:2") && text.contains("unknown module argument \\\"nullok\\\""),
            "{text}"
        );
        assert!(
            text.contains("svc-k:3") && text.contains("use required or requisite"),
            "{text}"
        );
        assert!(
            text.contains("svc-k:4") && text.contains("auth and account stacks only"),
            "{text}"
        );
        let (f, ok) = run_on(
            &[
                (
                    "svc-l",
                    "auth requisite pam_unix.so\nauth required {module} config={config}\n",
                ),
                (
                    "svc-m",
                    "auth requisite pam_unix.so\nauth required {module} config=/nonexistent/t.toml\n",
                ),
            ],
            "",
        );
        assert_eq!(
            ok.unwrap(),
            "used by svc-l, svc-m [config=/nonexistent/t.toml: not the config checked here]"
        );
        assert!(
            format!("{f:?}").contains("/nonexistent/t.toml does not exist"),
            "{f:?}"
        );
    }

    #[test]
    fn the_samba_account_line_needs_smb_conf_to_obey_pam_restrictions() {
        let sshd = (
            "sshd",
            "auth requisite pam_unix.so\nauth required {module} config={config}\n",
        );
        let samba = (
            "samba",
            "@include common-account\naccount required {module} config={config}\n",
        );
        let common = ("common-account", "account required pam_unix.so\n");
        let files = [sshd, samba, common];
        let (f, ok) = run_with_smb(&files, "", Some("[global]\nobey pam restrictions = yes\n"));
        assert!(f.is_empty(), "{f:?}");
        assert!(ok.unwrap().contains("samba (account)"));

        let (f, _) = run_with_smb(&files, "", Some("[global]\nworkgroup = X\n"));
        assert_eq!(tags(&f), [Tag::Fail], "{f:?}");
        assert!(f[0].1.contains("obey pam restrictions"), "{f:?}");
        let (f, _) = run_with_smb(&files, "", None);
        assert_eq!(tags(&f), [Tag::Fail], "{f:?}");

        let lookups = "[global]\nobey pam restrictions = yes\nhostname lookups = yes\n";
        let (f, _) = run_with_smb(&files, "[gate]\nwindow_secs = 0\n", Some(lookups));
        assert_eq!(tags(&f), [Tag::Warn, Tag::Warn], "{f:?}");

        let weak = ("samba", "account sufficient {module} config={config}\n");
        let (f, _) = run_with_smb(
            &[sshd, weak],
            "",
            Some(lookups.split("host").next().unwrap()),
        );
        assert_eq!(tags(&f), [Tag::Fail], "{f:?}");
        assert!(f[0].1.contains("without the gate"), "{f:?}");

        // The account line alone asks nobody for a code: no gate ever opens.
        let (f, _) = run_with_smb(
            &[samba, common],
            "",
            Some("[global]\nobey pam restrictions = yes\n"),
        );
        assert!(
            f.iter()
                .any(|(t, x)| *t == Tag::Fail && x.contains("nobody is asked")),
            "{f:?}"
        );

        let session = (
            "svc-s",
            "session required {module}\nauth required {module} config={config}\n",
        );
        let (f, _) = run_on(&[session], "");
        assert!(
            f.iter()
                .any(|(_, x)| x.contains("auth and account stacks only")),
            "{f:?}"
        );
    }
}
