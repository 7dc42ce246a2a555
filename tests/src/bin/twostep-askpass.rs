//! `twostep-askpass`: the `SSH_ASKPASS` program of the SSH tests (see `twostep_tests::sshd`).
//!
//! OpenSSH runs it once per keyboard-interactive prompt, with the prompt text as its only
//! argument (`(user@host) ` first, then the PAM text messages sent before the prompt, one per
//! line, then the prompt itself on the last line), and reads the answer from its stdout.
//!
//! Everything lives in the directory named by `$TWOSTEP_ASKPASS_DIR`:
//!
//! - `rules` (read): one rule per line, `NEEDLE<TAB>ACTION`; the first rule whose NEEDLE occurs in
//!   the prompt's last line decides. ACTION is `text:VALUE` (answer VALUE), `empty` (an empty
//!   answer), `queue` (the first line of `queue`, which is removed from the file), or `app-code`
//!   (what an authenticator app shows for the last `otpauth://` URI in the prompt text, or else
//!   in the file `stderr`, computed with `oathtool` for the current time), or `exec:PROGRAM`
//!   (what PROGRAM prints when run with the prompt's last line as its argument, e.g. the
//!   SMTP harness's `mail-code` script, which reads the newest mailed code).
//! - `prompts` (appended): one line per prompt, `KIND<TAB>TEXT`, where KIND is the action used
//!   (`unanswered` when no rule matched, `error: ...` when the action failed) and TEXT the whole
//!   prompt text with `\` written `\\`, newline `\n`, tab `\t` and carriage return `\r`.
//! - `app` (written by `app-code`): `secret=`, `algorithm=`, `digits=`, `period=`, `epoch=` and
//!   `code=` lines, so a test can compute the app's later codes.
//!
//! Exit status 0 with the answer, 1 when there is no answer (OpenSSH then sends an empty one).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

const DIR_ENV: &str = "TWOSTEP_ASKPASS_DIR";

fn main() -> ExitCode {
    let Some(dir) = std::env::var_os(DIR_ENV).map(PathBuf::from) else {
        eprintln!("twostep-askpass: ${DIR_ENV} is not set");
        return ExitCode::from(2);
    };
    let text = std::env::args().nth(1).unwrap_or_default();
    let (kind, answer) = match answer(&dir, &text) {
        Ok(Some((kind, answer))) => (kind, Some(answer)),
        Ok(None) => ("unanswered".to_string(), None),
        Err(why) => (format!("error: {why}"), None),
    };
    if let Err(e) = record(&dir, &kind, &text) {
        eprintln!("twostep-askpass: cannot record the prompt: {e}");
        return ExitCode::from(2);
    }
    match answer {
        Some(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        None => ExitCode::from(1),
    }
}

/// The action and answer for `text`, from the first matching rule.
fn answer(dir: &Path, text: &str) -> Result<Option<(String, String)>, String> {
    let rules = std::fs::read_to_string(dir.join("rules")).map_err(|e| format!("rules: {e}"))?;
    let prompt = text.rsplit('\n').next().unwrap_or(text);
    for rule in rules.lines().filter(|line| !line.is_empty()) {
        let (needle, action) = rule
            .split_once('\t')
            .ok_or_else(|| format!("bad rule {rule:?}"))?;
        if !prompt.contains(needle) {
            continue;
        }
        let answer = match action {
            "empty" => String::new(),
            "queue" => pop_queue(&dir.join("queue"))?,
            "app-code" => app_code(dir, text)?,
            _ => match (action.strip_prefix("text:"), action.strip_prefix("exec:")) {
                (Some(value), _) => value.to_string(),
                (None, Some(program)) => run_program(program, prompt)?,
                (None, None) => return Err(format!("bad action {action:?}")),
            },
        };
        let kind = action.split(':').next().unwrap_or(action).to_string();
        return Ok(Some((kind, answer)));
    }
    Ok(None)
}

/// The first line `program PROMPT` prints.
fn run_program(program: &str, prompt: &str) -> Result<String, String> {
    let output = Command::new(program)
        .arg(prompt)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout.lines().next().unwrap_or("").to_string())
}

/// Removes and returns the first line of the queue file.
fn pop_queue(path: &Path) -> Result<String, String> {
    let queue = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = queue.lines();
    let first = lines
        .next()
        .ok_or_else(|| "the answer queue is empty".to_string())?
        .to_string();
    let rest: String = lines.map(|line| format!("{line}\n")).collect();
    std::fs::write(path, rest).map_err(|e| format!("queue: {e}"))?;
    Ok(first)
}

/// The code an app shows now for the last otpauth URI in `text` or, failing that, in the
/// ssh client's stderr file.
fn app_code(dir: &Path, text: &str) -> Result<String, String> {
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    let uri = last_uri(text)
        .or_else(|| last_uri(&stderr))
        .ok_or_else(|| "no otpauth:// URI in the prompt or on ssh's stderr".to_string())?;
    let param = |name: &str| -> Option<String> {
        let query = uri.split_once('?')?.1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let secret = param("secret").ok_or_else(|| format!("no secret in {uri}"))?;
    let algorithm = param("algorithm").unwrap_or_else(|| "SHA1".into());
    let digits = param("digits").unwrap_or_else(|| "6".into());
    let period = param("period").unwrap_or_else(|| "30".into());
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let output = Command::new("oathtool")
        .arg(format!("--totp={algorithm}"))
        .arg("-b")
        .arg(format!("--digits={digits}"))
        .arg(format!("--time-step-size={period}s"))
        .arg("--now")
        .arg(format!("@{epoch}"))
        .arg(&secret)
        .output()
        .map_err(|e| format!("oathtool: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "oathtool failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let code = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let app = format!(
        "secret={secret}\nalgorithm={algorithm}\ndigits={digits}\nperiod={period}\n\
         epoch={epoch}\ncode={code}\n"
    );
    std::fs::write(dir.join("app"), app).map_err(|e| format!("app: {e}"))?;
    Ok(code)
}

/// The last `otpauth://` URI in `text`, up to the next whitespace.
fn last_uri(text: &str) -> Option<&str> {
    let start = text.rfind("otpauth://")?;
    text[start..].split_whitespace().next()
}

/// Appends `KIND<TAB>escaped text` to the prompts file.
fn record(dir: &Path, kind: &str, text: &str) -> std::io::Result<()> {
    let mut line = String::with_capacity(text.len() + kind.len() + 2);
    let _ = write!(line, "{}\t", kind.replace(['\t', '\n'], " "));
    for c in text.chars() {
        match c {
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\t' => line.push_str("\\t"),
            '\r' => line.push_str("\\r"),
            c => line.push(c),
        }
    }
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("prompts"))?
        .write_all(line.as_bytes())
}
