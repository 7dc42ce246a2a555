//! `twostep doctor`: one line per check, non-zero exit on any failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use twostep_common::config::Config;
use twostep_common::store::Store;

const PAM_DIR: &str = "/etc/pam.d";
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

pub fn run(config_path: &Path) -> ExitCode {
    let mut failed = false;
    let mut report = |name: &str, check: Check| {
        let (tag, text) = match check {
            Ok(text) => ("ok  ", text),
            Err(text) => {
                failed = true;
                ("FAIL", text)
            }
        };
        println!("{tag}  {name:<8}  {text}");
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
    report("pam", check_pam(Path::new(PAM_DIR)));
    report("clock", check_clock());
    match &config {
        Ok((config, _)) if config.email.enabled() => report(
            "email",
            crate::mail::check(config).map(|()| {
                format!(
                    "{}:{} accepts connections",
                    config.email.smtp_host, config.email.smtp_port
                )
            }),
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
    let store = Store::open(&config.state_dir).map_err(|e| e.to_string())?;
    let users = store.users().map_err(|e| e.to_string())?;
    let mut bad = Vec::new();
    for user in &users {
        if let Err(e) = store.load(user) {
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
    Ok(format!(
        "{} is safe (root, 0700); {} enrolled {}",
        config.state_dir.display(),
        users.len(),
        if users.len() == 1 { "user" } else { "users" }
    ))
}

/// A line of a PAM service file that loads our module.
#[derive(Debug, PartialEq, Eq)]
struct Use {
    service: String,
    kind: String,
    control: String,
    module: String,
}

fn check_pam(dir: &Path) -> Check {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut uses = Vec::new();
    for entry in entries.flatten() {
        let service = entry.file_name().to_string_lossy().into_owned();
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            uses.extend(find_uses(&service, &text));
        }
    }
    uses.sort_by(|a, b| a.service.cmp(&b.service));
    if uses.is_empty() {
        return Err(format!(
            "no service in {} loads {MODULE_NAME}: nobody is asked for a code (see docs/pam.md)",
            dir.display()
        ));
    }
    let problems: Vec<String> = uses.iter().filter_map(problem).collect();
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let services: Vec<&str> = uses.iter().map(|u| u.service.as_str()).collect();
    Ok(format!("used by {}", services.join(", ")))
}

fn find_uses(service: &str, text: &str) -> Vec<Use> {
    let mut uses = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((kind, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        let (control, rest) = if let Some(inner) = rest.strip_prefix('[') {
            match inner.split_once(']') {
                Some((c, r)) => (format!("[{c}]"), r.trim_start()),
                None => continue,
            }
        } else {
            match rest.split_once(char::is_whitespace) {
                Some((c, r)) => (c.to_string(), r.trim_start()),
                None => (rest.to_string(), ""),
            }
        };
        let module = rest.split_whitespace().next().unwrap_or("");
        // Matches lib-prefixed build outputs too (libpam_twostep.so loaded by absolute path).
        if module
            .rsplit('/')
            .next()
            .is_some_and(|f| f.ends_with(MODULE_NAME))
        {
            uses.push(Use {
                service: service.to_string(),
                kind: kind.trim_start_matches('-').to_string(),
                control,
                module: module.to_string(),
            });
        }
    }
    uses
}

/// What is wrong with one use, if anything.
fn problem(u: &Use) -> Option<String> {
    let at = format!("{}: {} {} {}", u.service, u.kind, u.control, u.module);
    if u.kind != "auth" {
        return Some(format!("{at}: the module belongs in the auth stack only"));
    }
    let weak = matches!(u.control.as_str(), "sufficient" | "optional")
        || (u.control.starts_with('[')
            && (u.control.contains("default=ignore") || u.control.contains("success=done")));
    if weak {
        return Some(format!(
            "{at}: this control lets a failed or skipped code pass; use required or requisite"
        ));
    }
    if !module_path(&u.module).is_some_and(|p| p.exists()) {
        return Some(format!("{at}: the module file is not installed"));
    }
    None
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
    fn finds_and_judges_module_lines() {
        let text = "# comment\n@include common-auth\nauth required pam_twostep.so config=/x\n\
                    auth [success=1 default=ignore] /opt/pam_twostep.so\n\
                    -auth sufficient pam_twostep.so\naccount required pam_twostep.so\n\
                    auth required pam_unix.so\n";
        let uses = find_uses("svc", text);
        assert_eq!(uses.len(), 4);
        assert_eq!(uses[0].control, "required");
        assert_eq!(uses[1].control, "[success=1 default=ignore]");
        assert_eq!(uses[1].module, "/opt/pam_twostep.so");
        assert_eq!(uses[2].kind, "auth");
        assert!(problem(&uses[1]).unwrap().contains("required or requisite"));
        assert!(problem(&uses[2]).unwrap().contains("required or requisite"));
        assert!(problem(&uses[3]).unwrap().contains("auth stack only"));
    }
}
