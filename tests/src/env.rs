//! [`TestEnv`]: one test's private twostep installation.

use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

use crate::login::{Attempt, Login};
use crate::syslog::SyslogListener;
use crate::{paths, run};

/// The default PAM stack: the module alone decides, then an account step that permits.
/// `{module}` is the module's absolute path and `{config}` the environment's config file.
pub const DEFAULT_STACK: [&str; 2] = [
    "auth required {module} config={config}",
    "account required pam_permit.so",
];

/// Prefix of the PAM services the tests install in `/etc/pam.d`.
pub const SERVICE_PREFIX: &str = "twostep-test-";

const PAM_D: &str = "/etc/pam.d";
/// Set (to anything) to keep the directories and service files of the tests.
const KEEP_ENV: &str = "TWOSTEP_TESTS_KEEP";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static CLEAN_STALE: Once = Once::new();

/// Builds a [`TestEnv`]: `TestEnv::builder("name").config("...").stack(&[...]).build()`.
#[derive(Debug, Clone)]
pub struct TestEnvBuilder {
    name: String,
    extra_config: String,
    raw_config: Option<String>,
    stack: Vec<String>,
}

impl TestEnvBuilder {
    /// TOML added to the standard config (which sets `state_dir`, `issuer` and `[log] socket`):
    /// top-level keys first, then tables other than `[log]`; e.g. `"unenrolled = \"deny\""` or
    /// `"[totp]\ndigits = 8"`. Repeated calls append.
    pub fn config(mut self, extra_toml: &str) -> Self {
        self.extra_config.push_str(extra_toml);
        self.extra_config.push('\n');
        self
    }

    /// The whole config text instead of the standard one; `{state_dir}`, `{log_socket}` and
    /// `{dir}` are replaced by the environment's paths.
    pub fn raw_config(mut self, text: &str) -> Self {
        self.raw_config = Some(text.to_string());
        self
    }

    /// The PAM service's lines instead of [`DEFAULT_STACK`]; `{module}` and `{config}` are
    /// replaced by absolute paths.
    pub fn stack(mut self, lines: &[&str]) -> Self {
        self.stack = lines.iter().map(|line| line.to_string()).collect();
        self
    }

    /// Creates the directory, config, syslog listener and PAM service file.
    pub fn build(self) -> TestEnv {
        crate::require_root();
        CLEAN_STALE.call_once(clean_stale);
        let id = unique_id(&self.name);
        let dir = scratch_dir(&id);
        let syslog = SyslogListener::bind(&dir.join("log.sock"))
            .unwrap_or_else(|e| panic!("cannot bind a syslog socket in {}: {e}", dir.display()));
        let env = TestEnv {
            service: format!("{SERVICE_PREFIX}{id}"),
            dir,
            syslog,
            secrets: Mutex::new(Vec::new()),
        };
        create_dir(&env.state_dir(), 0o700);
        let config = match &self.raw_config {
            Some(text) => text.clone(),
            None => env.standard_config(&self.extra_config),
        };
        env.write_config(&config);
        env.write_stack(&self.stack.iter().map(String::as_str).collect::<Vec<_>>());
        env
    }
}

/// A private twostep installation for one test: a root-owned 0700 directory under
/// `<target>/twostep-tests/` holding `twostep.toml`, `state/` and `log.sock` (a syslog listener
/// the config's `[log] socket` points to), and a PAM service `/etc/pam.d/twostep-test-<id>`.
///
/// Dropping it removes the service file and the directory, after checking (unless the test is
/// already failing) that no log line holds a secret the environment saw: enrolled secrets,
/// emergency codes and every answer typed ([`assert_logs_clean`](Self::assert_logs_clean)).
#[derive(Debug)]
pub struct TestEnv {
    dir: PathBuf,
    service: String,
    syslog: SyslogListener,
    /// Strings no log line may contain.
    secrets: Mutex<Vec<String>>,
}

impl TestEnv {
    /// An environment with the standard config and [`DEFAULT_STACK`].
    pub fn new(name: &str) -> TestEnv {
        TestEnv::builder(name).build()
    }

    /// A builder; `name` makes the directory and service names readable.
    pub fn builder(name: &str) -> TestEnvBuilder {
        TestEnvBuilder {
            name: name.to_string(),
            extra_config: String::new(),
            raw_config: None,
            stack: DEFAULT_STACK.iter().map(|line| line.to_string()).collect(),
        }
    }

    /// The environment's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The config file, `<dir>/twostep.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("twostep.toml")
    }

    /// The product's `state_dir`, `<dir>/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// A user's enrollment record, `state/users/<user>.toml`.
    pub fn record_path(&self, user: &str) -> PathBuf {
        self.state_dir().join("users").join(format!("{user}.toml"))
    }

    /// The syslog listener's socket, `<dir>/log.sock`.
    pub fn log_socket(&self) -> &Path {
        self.syslog.path()
    }

    /// The PAM service name (the file name in /etc/pam.d).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The service file, `/etc/pam.d/<service>`.
    pub fn service_file(&self) -> PathBuf {
        Path::new(PAM_D).join(&self.service)
    }

    /// The standard config with `extra_toml` (see [`TestEnvBuilder::config`]).
    pub fn standard_config(&self, extra_toml: &str) -> String {
        format!(
            "state_dir = \"{{state_dir}}\"\nissuer = \"twostep-tests\"\n{extra_toml}\n\
             [log]\nsocket = \"{{log_socket}}\"\n"
        )
    }

    /// Replaces the config file (root, 0600) with `text`, where `{state_dir}`, `{log_socket}`
    /// and `{dir}` stand for the environment's paths.
    pub fn write_config(&self, text: &str) {
        let text = text
            .replace("{state_dir}", &toml_path(&self.state_dir()))
            .replace("{log_socket}", &toml_path(self.log_socket()))
            .replace("{dir}", &toml_path(&self.dir));
        write_file(&self.config_path(), text.as_bytes(), 0o600);
    }

    /// Replaces the PAM service file with `lines`, where `{module}` and `{config}` stand for
    /// the module's and the config's absolute paths.
    pub fn write_stack(&self, lines: &[&str]) {
        let mut text = String::new();
        for line in lines {
            let mut line = line.replace("{config}", &pam_arg_path(&self.config_path()));
            if line.contains("{module}") {
                line = line.replace("{module}", &pam_arg_path(&paths::module()));
            }
            text.push_str(&line);
            text.push('\n');
        }
        write_file(&self.service_file(), text.as_bytes(), 0o644);
    }

    /// Runs `twostep --config <config> <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.run_cli(args, None, &[])
    }

    /// Like [`cli`](Self::cli), with `input` on its standard input.
    pub fn cli_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        self.run_cli(args, input, &[])
    }

    /// [`cli`](Self::cli) with environment variables added, e.g. a test user directory's
    /// ([`NssDirectory::envs`](crate::nss::NssDirectory::envs)).
    pub fn cli_with(&self, args: &[&str], envs: &[(OsString, OsString)]) -> Output {
        self.run_cli(args, None, envs)
    }

    fn run_cli(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
        envs: &[(OsString, OsString)],
    ) -> Output {
        run::run_with_input(
            Command::new(paths::cli())
                .env_remove("TWOSTEP_CONFIG")
                .envs(envs.iter().map(|(k, v)| (k, v)))
                .arg("--config")
                .arg(self.config_path())
                .args(args),
            input,
            run::TIMEOUT,
        )
    }

    /// Enrolls `user` with a known base32 secret and returns the emergency codes.
    pub fn enroll(&self, user: &str, secret_b32: &str) -> Vec<String> {
        self.enroll_with(user, secret_b32, &[])
    }

    /// Like [`enroll`](Self::enroll), with more arguments, e.g. `&["--digits", "8",
    /// "--algorithm", "SHA256"]`. Panics unless the CLI succeeds.
    pub fn enroll_with(&self, user: &str, secret_b32: &str, extra: &[&str]) -> Vec<String> {
        self.add_secret(secret_b32);
        // On stdin, as docs/admin-guide.md says: argv is world-readable.
        let mut args = vec!["enroll", user, "--secret-stdin", "--yes"];
        args.extend_from_slice(extra);
        let input = format!("{secret_b32}\n");
        let output = self.cli_with_input(&args, Some(input.as_bytes()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "twostep {args:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let codes = emergency_codes(&stdout);
        codes.iter().for_each(|code| self.add_secret(code));
        codes
    }

    /// A login attempt to configure and [`run`](Attempt::run).
    pub fn attempt(&self, user: &str) -> Attempt<'_> {
        Attempt::new(self, user)
    }

    /// Runs `pam_authenticate` for `user` at `time`, answering prompts with `answers`.
    pub fn login(&self, user: &str, answers: &[&str], time: i64) -> Login {
        self.attempt(user).answers(answers).time(time).run()
    }

    /// Like [`login`](Self::login), with PAM_RHOST and raw (possibly non-UTF-8) answers.
    pub fn login_raw(
        &self,
        user: &str,
        rhost: Option<&str>,
        answers: &[&[u8]],
        time: i64,
    ) -> Login {
        let attempt = self.attempt(user).time(time);
        let attempt = match rhost {
            Some(host) => attempt.rhost(host),
            None => attempt,
        };
        answers
            .iter()
            .fold(attempt, |attempt, answer| attempt.answer_bytes(answer))
            .run()
    }

    /// Every syslog line received so far.
    pub fn logs(&self) -> Vec<String> {
        self.syslog.messages()
    }

    /// Adds a string that no log line may contain (see
    /// [`assert_logs_clean`](Self::assert_logs_clean)).
    pub fn add_secret(&self, secret: &str) {
        self.secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(secret.to_string());
    }

    /// Panics if a log line contains one of `secrets` or of the secrets the environment saw.
    ///
    /// Matching ignores case, and also looks for each secret without spaces, dashes and `=`
    /// ("123 456" is also sought as "123456", "abcd-efgh" as "abcdefgh"). Secrets shorter than
    /// four characters in that form are skipped.
    pub fn assert_logs_clean(&self, secrets: &[&str]) {
        let logs = self.logs();
        if let Some(problem) = self.find_leak(&logs, secrets) {
            panic!("{problem}\nall log lines:\n{}", logs.join("\n"));
        }
    }

    fn find_leak(&self, logs: &[String], extra: &[&str]) -> Option<String> {
        let known = self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let secrets = known
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied());
        for secret in secrets {
            let forms = secret_forms(secret);
            for line in logs {
                let line_lower = line.to_lowercase();
                if let Some(form) = forms.iter().find(|form| line_lower.contains(form.as_str())) {
                    return Some(format!(
                        "log line leaks secret {secret:?} (as {form:?}): {line}"
                    ));
                }
            }
        }
        None
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let leak = if std::thread::panicking() {
            None
        } else {
            let logs = self.logs();
            self.find_leak(&logs, &[])
                .map(|problem| format!("{problem}\nall log lines:\n{}", logs.join("\n")))
        };
        if std::env::var_os(KEEP_ENV).is_some() {
            eprintln!(
                "{KEEP_ENV}: kept {} and {}",
                self.dir.display(),
                self.service_file().display()
            );
        } else {
            let _ = std::fs::remove_file(self.service_file());
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if let Some(problem) = leak {
            panic!("{problem}");
        }
    }
}

/// Lowercase forms of a secret to look for in logs: as given and without separators.
fn secret_forms(secret: &str) -> Vec<String> {
    let lower = secret.to_lowercase();
    let compact: String = lower
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '='))
        .collect();
    let mut forms = vec![lower, compact];
    forms.retain(|form| form.chars().count() >= 4);
    forms.dedup();
    forms
}

/// The emergency codes in `twostep enroll` output: the non-empty lines after the line
/// `Emergency codes:`, up to the first empty line that follows them.
pub fn emergency_codes(stdout: &str) -> Vec<String> {
    let mut lines = stdout
        .lines()
        .skip_while(|line| line.trim() != "Emergency codes:");
    assert!(
        lines.next().is_some(),
        "no `Emergency codes:` line in enroll output:\n{stdout}"
    );
    lines
        .map(str::trim)
        .skip_while(|line| line.is_empty())
        .take_while(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// `<name>-<pid>-<n>`, unique among the tests of every process; `name` is shortened and
/// reduced to `[a-z0-9_]` (PAM lowercases service names).
fn unique_id(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{name}-{}-{n}", std::process::id())
}

/// Creates `<scratch root>/<id>` (0700), checking that the product will trust its ancestors.
fn scratch_dir(id: &str) -> PathBuf {
    let root = paths::scratch_root();
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    std::fs::set_permissions(&root, Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", root.display()));
    let root = root
        .canonicalize()
        .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", root.display()));
    assert_trusted_ancestors(&root);
    let dir = root.join(id);
    create_dir(&dir, 0o700);
    // The syslog socket path must fit in sockaddr_un.sun_path (108 bytes with its NUL).
    let socket_len = dir.join("log.sock").as_os_str().len();
    assert!(
        socket_len < 108,
        "{} is too deep for a Unix socket path; use a shorter CARGO_TARGET_DIR or test name",
        dir.display()
    );
    dir
}

/// Panics unless `dir` and every directory above it is root-owned and not writable by group
/// or others (unless sticky), as the product requires of the directories above its files.
fn assert_trusted_ancestors(dir: &Path) {
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", ancestor.display()));
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0;
        assert!(
            meta.uid() == 0 && (mode & 0o022 == 0 || sticky),
            "{} (uid {}, mode {:o}) must be root-owned and not group/world-writable, or the \
             module will refuse the test state below it; fix its permissions or set \
             CARGO_TARGET_DIR elsewhere",
            ancestor.display(),
            meta.uid(),
            mode & 0o7777
        );
    }
}

/// Creates one directory with exactly `mode` (whatever the umask).
fn create_dir(path: &Path, mode: u32) {
    DirBuilder::new()
        .mode(mode)
        .create(path)
        .and_then(|()| std::fs::set_permissions(path, Permissions::from_mode(mode)))
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
}

/// Writes a file from scratch with exactly `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let _ = std::fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.set_permissions(Permissions::from_mode(mode))
        })
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A path as a TOML basic-string body.
fn toml_path(path: &Path) -> String {
    let text = path.to_str().expect("test paths are UTF-8");
    assert!(
        !text.contains(['"', '\\']) && !text.chars().any(char::is_control),
        "path {text:?} cannot be written into the test config"
    );
    text.to_string()
}

/// A path as one word of a PAM config line.
fn pam_arg_path(path: &Path) -> String {
    let text = path.to_str().expect("test paths are UTF-8");
    assert!(
        !text.contains(|c: char| c.is_whitespace() || c == '[' || c == ']'),
        "path {text:?} cannot be written into a PAM config line"
    );
    text.to_string()
}

/// Removes service files and scratch directories left by test processes that no longer run
/// (named `...-<pid>-<n>`). Skipped when `TWOSTEP_TESTS_KEEP` is set.
fn clean_stale() {
    if std::env::var_os(KEEP_ENV).is_some() {
        return;
    }
    let stale = |name: &str| {
        let mut parts = name.rsplit('-');
        let (_n, pid) = (parts.next(), parts.next());
        pid.and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for (dir, prefix) in [
        (PathBuf::from(PAM_D), SERVICE_PREFIX),
        (paths::scratch_root(), ""),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) && stale(&name) {
                let path = entry.path();
                let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_emergency_codes() {
        let out = "Secret: X\n\nEmergency codes:\n  abcd-efgh\n  ijkl-mnop\n\nKeep them safe.\n";
        assert_eq!(emergency_codes(out), ["abcd-efgh", "ijkl-mnop"]);
        assert_eq!(
            emergency_codes("Emergency codes:\n\n1111\n2222"),
            ["1111", "2222"]
        );
    }

    #[test]
    fn secret_forms_ignore_case_and_separators() {
        assert_eq!(secret_forms("123 456"), ["123 456", "123456"]);
        assert_eq!(secret_forms("ABCD-EFGH"), ["abcd-efgh", "abcdefgh"]);
        assert_eq!(secret_forms("GEZA===="), ["geza====", "geza"]);
        assert!(secret_forms("ab").is_empty());
    }

    #[test]
    fn unique_ids_are_unique_and_tame() {
        let (a, b) = (unique_id("Some Test/Name"), unique_id("Some Test/Name"));
        assert_ne!(a, b);
        assert!(a.starts_with("some_test_name-"), "{a}");
    }
}
