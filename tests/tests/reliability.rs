//! Reliability through the real PAM stack: 16-way login races, unlocked reads racing record
//! replacement, kill -9 in the middle of enroll/login/reset loops, hostile conversation answers,
//! and a full or read-only state directory. Every environment is a [`TestEnv`], so every log line these tests produce is
//! scanned for secrets when it is dropped; every typed code is registered as a secret.
//!
//! Randomness is a fixed-seed xorshift generator: the choice and timing of each kill is the same
//! on every run (what the killed process had done by then still depends on the machine).
//! See docs/reliability.md.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use twostep_tests::login::pam_drive;
use twostep_tests::{Login, TestEnv, paths};

const USER: &str = "daemon";
/// 20 random bytes.
const SECRET: &str = "KRSXG5CTMVRXEZLUKN2XAZLSONSWG4TF";
/// 15 seconds into a 30-second step.
const T0: i64 = 1_800_000_015;
const STEP: i64 = 30;
/// A lockout that never outlasts one fake second: failures one step (or two seconds) apart never
/// add up, so earlier refusals cannot decide a later login. (Only keys every config version
/// accepts: the maximum failure counts are being reworked.)
const SHORT_LOCKOUT: &str = "[lockout]\nwindow_secs = 1\nduration_secs = 1";
/// Any one child gets this long before the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

// --- helpers -------------------------------------------------------------------------------

/// The codes oathtool gives for SECRET-like keys at `t`, `t + 30`, …: `count` of them.
fn codes_from(secret: &str, t: i64, count: usize) -> Vec<String> {
    let output = Command::new("oathtool")
        .args(["--totp", "-b", "-w"])
        .arg((count - 1).to_string())
        .arg("--now")
        .arg(format!("@{t}"))
        .arg(secret)
        .output()
        .expect("run oathtool (apt-get install oathtool)");
    assert!(output.status.success(), "oathtool failed: {output:?}");
    let codes: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(codes.len(), count, "oathtool printed {codes:?}");
    codes
}

fn code_at(secret: &str, t: i64) -> String {
    codes_from(secret, t, 1).remove(0)
}

/// Deterministic xorshift64*: the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Starts a child with stdin closed and output captured.
fn spawn(command: &mut Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"))
}

/// Waits for `child` at most CHILD_TIMEOUT (then kills it by its pid and panics); returns the
/// status and its stdout and stderr together. Output is small, so the child never blocks on a
/// full pipe.
fn finish(mut child: Child) -> (ExitStatus, String) {
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while child.try_wait().expect("wait for child").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {} ran longer than {CHILD_TIMEOUT:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let output = child.wait_with_output().expect("collect child output");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.stderr.is_empty() {
        text.push_str("\n--- stderr:\n");
        text.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    (output.status, text)
}

/// Runs `command`, sending SIGKILL (to its pid) after `kill_after` if it is still running.
/// `None` when the kill landed, else the exit status and stdout.
fn run_or_kill(command: &mut Command, kill_after: Option<Duration>) -> Option<(i32, String)> {
    let mut child = spawn(command);
    if let Some(delay) = kill_after {
        let deadline = Instant::now() + delay;
        while Instant::now() < deadline {
            if child.try_wait().expect("wait for child").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // A child that exited meanwhile is a zombie until reaped: the signal is then ignored
        // and its exit status below is the normal one.
        let _ = child.kill();
    }
    let (status, stdout) = finish(child);
    match status.signal() {
        Some(libc::SIGKILL) => None,
        Some(other) => panic!("child died of signal {other}"),
        None => Some((status.code().expect("exit code"), stdout)),
    }
}

fn pam_drive_command(args: &[OsString]) -> Command {
    let mut command = Command::new(paths::pam_drive());
    command.args(args);
    command
}

fn cli_command(env: &TestEnv, args: &[&str]) -> Command {
    let mut command = Command::new(paths::cli());
    command
        .env_remove("TWOSTEP_CONFIG")
        .arg("--config")
        .arg(env.config_path())
        .args(args);
    command
}

/// The RESULT of pam-drive's output (see [`finish`]).
fn result_of(output: &str) -> String {
    let (stdout, stderr) = output.split_once("\n--- stderr:\n").unwrap_or((output, ""));
    Login::parse(stdout, stderr).result
}

/// Entries of `dir` whose names start with '.' and end with ".tmp".
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with('.') && name.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// pam-drive arguments for one login of `user` at `time`, with the answer read from `file`.
fn args_with_answer_file(env: &TestEnv, user: &str, time: i64, file: &Path) -> Vec<OsString> {
    let mut args = env.attempt(user).time(time).args();
    args.extend(["--answer-file".into(), file.into()]);
    args
}

/// The log lines that arrived after the first `before` ones.
fn logs_since(env: &TestEnv, before: usize) -> Vec<String> {
    env.logs().split_off(before)
}

/// An flock(2) exclusive lock held on a file until dropped (closing the file releases it).
struct HeldLock(#[allow(dead_code)] File);

impl HeldLock {
    fn take(path: &Path) -> HeldLock {
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        // SAFETY: flock on a file descriptor this function owns; no pointers involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        HeldLock(file)
    }
}

/// Number of processes blocked waiting for a lock on the file with inode `ino` (/proc/locks
/// marks waiters with `->`).
fn lock_waiters(ino: u64) -> usize {
    let locks = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
    let suffix = format!(":{ino}");
    locks
        .lines()
        .filter(|line| line.contains("->"))
        .filter(|line| {
            line.split_whitespace()
                .any(|field| field.ends_with(&suffix))
        })
        .count()
}

/// A mount on a test directory, detached when dropped (also when the test panics).
struct Mount(PathBuf);

impl Mount {
    fn run_mount(args: &[&str], target: &Path) {
        let status = Command::new("mount")
            .args(args)
            .arg(target)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount {args:?} {}", target.display());
    }

    /// A tmpfs of `size` (e.g. "256k"), root-owned mode 0700, on `target`.
    fn tmpfs(target: &Path, size: &str) -> Mount {
        let options = format!("size={size},mode=0700");
        Mount::run_mount(&["-t", "tmpfs", "-o", &options, "tmpfs"], target);
        Mount(target.to_path_buf())
    }

    /// `target` bind-mounted on itself, read-only.
    fn read_only(target: &Path) -> Mount {
        let source = target.to_str().expect("UTF-8 path");
        Mount::run_mount(&["--bind", source], target);
        let mount = Mount(target.to_path_buf());
        Mount::run_mount(&["-o", "remount,bind,ro"], target);
        mount
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let path = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes())
            .expect("no NUL in test paths");
        // SAFETY: path is a NUL-terminated string that outlives the call.
        let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 && !std::thread::panicking() {
            panic!(
                "umount {}: {}",
                self.0.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

// --- 16 concurrent logins with one code ----------------------------------------------------

const RACERS: usize = 16;
const RACE_ROUNDS: usize = 200;

/// 16 pam-drive processes type the same valid code at once, 200 times with a fresh time step
/// each: exactly one login per round succeeds, every other one is refused (as a replay, or as
/// locked once a round's refusals reach the lockout limit), and none fails with an error. In
/// every other round the test holds the user's lock until all 16 are queued on it, so the
/// module's read-after-lock is what decides; in the others they race freely from the start.
#[test]
fn sixteen_concurrent_logins_with_one_code_let_exactly_one_in() {
    let env = TestEnv::builder("race16").config(SHORT_LOCKOUT).build();
    env.enroll(USER, SECRET);
    let lock_path = env.state_dir().join("locks").join(format!("{USER}.lock"));
    let lock_ino = std::fs::metadata(&lock_path)
        .expect("enroll created the user's lock file")
        .ino();
    let codes = codes_from(SECRET, T0, RACE_ROUNDS);
    let started = Instant::now();
    let mut queued_rounds = 0;
    for (round, code) in codes.iter().enumerate() {
        env.add_secret(code);
        let time = T0 + round as i64 * STEP;
        let args = env.attempt(USER).answer(code).time(time).args();
        let held = (round % 2 == 1).then(|| HeldLock::take(&lock_path));
        let children: Vec<Child> = (0..RACERS)
            .map(|_| spawn(&mut pam_drive_command(&args)))
            .collect();
        if let Some(held) = held {
            let deadline = Instant::now() + Duration::from_secs(10);
            while lock_waiters(lock_ino) < RACERS && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if lock_waiters(lock_ino) == RACERS {
                queued_rounds += 1;
            }
            drop(held);
        }
        let results: Vec<String> = children
            .into_iter()
            .map(|child| result_of(&finish(child).1))
            .collect();
        let successes = results.iter().filter(|r| *r == "PAM_SUCCESS").count();
        let refused = results.iter().filter(|r| *r == "PAM_AUTH_ERR").count();
        if (successes, refused) != (1, RACERS - 1) {
            let errors: Vec<String> = env
                .logs()
                .into_iter()
                .filter(|l| {
                    ["auth success", "reason=", "lockout "]
                        .iter()
                        .all(|n| !l.contains(n))
                })
                .collect();
            panic!(
                "round {round}: one code, {RACERS} logins: {results:?}\nother log lines:\n{}",
                errors.join("\n")
            );
        }
    }
    // At least half of the held rounds really had all 16 queued on the lock at once.
    assert!(
        queued_rounds >= RACE_ROUNDS / 4,
        "only {queued_rounds} rounds had all {RACERS} logins queued on the lock"
    );
    let logs = env.logs();
    let count = |needle: &str| logs.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("auth success"), RACE_ROUNDS, "one success per round");
    assert!(
        count("reason=replay") >= RACE_ROUNDS,
        "the second login of a round is a replay"
    );
    assert_eq!(count("error "), 0, "no system errors:\n{}", logs.join("\n"));
    eprintln!(
        "race16: {RACE_ROUNDS} rounds x {RACERS} logins in {:?} ({queued_rounds} rounds fully \
         queued on the lock)",
        started.elapsed()
    );
}

/// The reads made without the user's lock — the module's look before it prompts, and
/// `twostep status` — must never take a record that a writer (holding the lock) just replaced
/// by rename for an unsafe one. Here the test itself replaces the record with identical bytes
/// as fast as it can (temp file, rename: what the store does), while pam-drive processes that
/// answer nothing (so the module only reads) and `twostep status --json` run alongside.
#[test]
fn unlocked_reads_survive_concurrent_record_replacement() {
    let env = TestEnv::new("replace_race");
    env.enroll(USER, SECRET);
    let record = env.record_path(USER);
    let bytes = std::fs::read(&record).expect("read record");
    let temp = record.with_file_name(format!(".{USER}.toml.tmp"));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let args = env.attempt(USER).time(T0).args();
    let (renames, failures) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut renames = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&temp)
                    .expect("create temp record");
                file.write_all(&bytes).expect("write temp record");
                drop(file);
                std::fs::rename(&temp, &record).expect("rename over the record");
                renames += 1;
            }
            renames
        });
        let mut failures = Vec::new();
        for _ in 0..REPLACE_ROUNDS {
            let readers: Vec<Child> = (0..4)
                .map(|_| spawn(&mut pam_drive_command(&args)))
                .collect();
            let status = spawn(&mut cli_command(&env, &["status", "--json"]));
            for reader in readers {
                let result = result_of(&finish(reader).1);
                if result != "PAM_CONV_ERR" {
                    failures.push(format!("login that answered nothing: {result}"));
                }
            }
            let (code, output) = finish(status);
            if !code.success() {
                failures.push(format!("twostep status: {output}"));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (writer.join().expect("writer thread"), failures)
    });
    assert!(
        renames > 100,
        "the record was replaced only {renames} times"
    );
    let errors: Vec<String> = env
        .logs()
        .into_iter()
        .filter(|l| l.contains("error "))
        .collect();
    assert!(
        failures.is_empty() && errors.is_empty(),
        "{} of {} reads failed while the record was replaced {renames} times:\n{}\n{}",
        failures.len(),
        REPLACE_ROUNDS * 5,
        failures.join("\n"),
        errors.join("\n")
    );
    assert_eq!(std::fs::read(&record).expect("reread"), bytes);
    env.assert_logs_clean(&[SECRET]);
}

const REPLACE_ROUNDS: usize = 300;

// --- kill -9 during enroll / login / reset loops ------------------------------------------

/// What the test knows about one user's enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Enrolled,
    NotEnrolled,
    /// An enroll or reset was killed: either outcome is allowed.
    Unknown,
}

#[derive(Debug, Default)]
struct ChaosStats {
    ops: usize,
    kills: usize,
    completed: usize,
}

/// Users of the kill -9 test (system accounts, in case the CLI checks that users exist), and
/// their keys.
const CHAOS_USERS: [(&str, &str); 6] = [
    ("daemon", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
    ("bin", "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"),
    ("sys", "ORSXG5DJNZTXG2LOMVWWK5DIMVZGK3TE"),
    ("games", "NBSWY3DPEB3W64TMMQQGC3TEEBTG63TF"),
    ("man", "KNSWG4TFORZWC4TFMZ2W4IDUN5RGKZLB"),
    ("lp", "OBQXG43XN5ZGIIDIMFZWQIDFONRWC4DF"),
];
const CHAOS_THREADS: usize = 3;
const CHAOS_OPS_PER_THREAD: usize = 100;
const CHAOS_SEED: u64 = 0x7365_6564_2d32_7374;

/// Three threads, each owning two users, run enroll (CLI), login (pam-drive) and reset (CLI) in
/// a seeded random order and SIGKILL about half of them at a seeded random moment (a fraction of
/// the operation's usual duration). A login of a
/// user known to be enrolled must succeed whenever it completes. Afterwards every record parses
/// (`twostep status --json`), every user known to be enrolled still is, a fresh code logs in
/// every enrolled user, and at most one temp file per user exists (none once a write followed).
#[test]
fn kill_9_during_enroll_login_reset_loses_and_damages_nothing() {
    let env = TestEnv::builder("kill9")
        .config("[emergency]\ncount = 1")
        .config(SHORT_LOCKOUT)
        .build();
    for (_, secret) in CHAOS_USERS {
        env.add_secret(secret);
    }
    let started = Instant::now();
    let outcomes: Vec<(Vec<Known>, ChaosStats, i64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CHAOS_THREADS)
            .map(|t| {
                let env = &env;
                scope.spawn(move || chaos_worker(env, t))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("chaos worker"))
            .collect()
    });
    let mut total = ChaosStats::default();
    let mut known = Vec::new();
    let mut last_time = 0;
    for (states, stats, time) in outcomes {
        known.extend(states);
        total.ops += stats.ops;
        total.kills += stats.kills;
        total.completed += stats.completed;
        last_time = last_time.max(time);
    }
    eprintln!(
        "kill9: {} operations, {} killed, {} completed, in {:?}",
        total.ops,
        total.kills,
        total.completed,
        started.elapsed()
    );
    assert!(total.kills >= total.ops / 5, "too few kills landed");
    assert!(
        total.completed >= total.ops / 5,
        "too few operations completed"
    );

    // Every record parses: status reads them all.
    let status = env.cli(&["status", "--json"]);
    assert!(
        status.status.success(),
        "twostep status --json after kill -9: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let state_of = |user: &str| {
        rows.as_array()
            .expect("status is an array")
            .iter()
            .find(|row| row["user"] == user)
            .map(|row| row["state"].as_str().unwrap_or_default().to_string())
    };
    let users_dir = env.state_dir().join("users");
    let time = last_time + 10 * STEP;
    for ((user, secret), known) in CHAOS_USERS.iter().zip(known) {
        let record = env.record_path(user);
        let state = state_of(user);
        let enabled = state.as_deref() == Some("enabled");
        assert_eq!(
            enabled,
            record.exists(),
            "{user}: status {state:?} disagrees with the store"
        );
        match known {
            Known::Enrolled => assert!(enabled, "{user}: enrollment lost ({state:?})"),
            Known::NotEnrolled => assert!(!enabled, "{user}: reset undone ({state:?})"),
            Known::Unknown => {}
        }
        let temps: Vec<String> = temp_files(&users_dir)
            .into_iter()
            .filter(|name| name == &format!(".{user}.toml.tmp"))
            .collect();
        assert!(temps.len() <= 1, "{user}: {temps:?}");
        if enabled {
            let meta = std::fs::metadata(&record).expect("stat record");
            assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600), "{user}");
            let code = code_at(secret, time);
            env.login(user, &[&code], time).assert_result("PAM_SUCCESS");
            // A login writes only the login state, in place; the next record write (unlock
            // saves the record) replaces a temp file a killed writer left.
            let unlock = env.cli(&["unlock", user]);
            assert!(unlock.status.success(), "{user}: unlock: {unlock:?}");
            assert!(
                !users_dir.join(format!(".{user}.toml.tmp")).exists(),
                "{user}: a stale temp file survived a record write"
            );
        }
    }
    // Nothing but records, login states and their temp files in users/.
    for entry in std::fs::read_dir(&users_dir)
        .expect("list users/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            CHAOS_USERS.iter().any(|(u, _)| {
                ["toml", "state"]
                    .iter()
                    .any(|ext| name == format!("{u}.{ext}") || name == format!(".{u}.{ext}.tmp"))
            }),
            "unexpected file users/{name}"
        );
    }
}

const ENROLL: usize = 0;
const LOGIN: usize = 1;
const RESET: usize = 2;

/// How long each kind of operation takes on this machine (a running average of the completed
/// ones), so that kill delays, drawn from 0 to 1.2 times that, land while the process runs —
/// mostly, and anywhere from its start to its final write — whatever the machine's speed.
struct Pace([Duration; 3]);

impl Pace {
    fn delay(&self, kind: usize, rng: &mut Rng) -> Duration {
        self.0[kind] * (rng.below(1200) as u32 + 1) / 1000
    }

    fn run(
        &mut self,
        kind: usize,
        command: &mut Command,
        kill_after: Option<Duration>,
    ) -> Option<(i32, String)> {
        let started = Instant::now();
        let result = run_or_kill(command, kill_after);
        if result.is_some() {
            self.0[kind] = (self.0[kind] * 3 + started.elapsed()) / 4;
        }
        result
    }
}

/// One chaos thread: users `2t` and `2t + 1`. Returns what is known of each user at the end,
/// the counts, and the last fake time used.
fn chaos_worker(env: &TestEnv, thread: usize) -> (Vec<Known>, ChaosStats, i64) {
    let mut rng = Rng(CHAOS_SEED ^ (thread as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let users = &CHAOS_USERS[thread * 2..thread * 2 + 2];
    let mut known = [Known::NotEnrolled; 2];
    let mut stats = ChaosStats::default();
    let mut pace = Pace([Duration::from_millis(10); 3]);
    let mut time = T0;
    for _ in 0..CHAOS_OPS_PER_THREAD {
        let which = rng.below(2) as usize;
        let (user, secret) = users[which];
        let kill = rng.below(100) < 55;
        let op = rng.below(10);
        time += 2 * STEP;
        stats.ops += 1;
        let before = known[which];
        if op < 4 {
            // Enroll (replacing any record).
            let delay = kill.then(|| pace.delay(ENROLL, &mut rng));
            let mut command = cli_command(
                env,
                &["enroll", user, "--secret", secret, "--yes", "--force"],
            );
            match pace.run(ENROLL, &mut command, delay) {
                None => {
                    stats.kills += 1;
                    // An atomic replace leaves the old or the new record: both enrolled.
                    if before != Known::Enrolled {
                        known[which] = Known::Unknown;
                    }
                }
                Some((0, stdout)) => {
                    stats.completed += 1;
                    twostep_tests::env::emergency_codes(&stdout)
                        .iter()
                        .for_each(|c| env.add_secret(c));
                    known[which] = Known::Enrolled;
                }
                Some((code, out)) => panic!("enroll {user} exited {code}: {out}"),
            }
        } else if op < 8 {
            // Login with a fresh code.
            let delay = kill.then(|| pace.delay(LOGIN, &mut rng));
            let code = code_at(secret, time);
            env.add_secret(&code);
            let args = env.attempt(user).answer(&code).time(time).args();
            match pace.run(LOGIN, &mut pam_drive_command(&args), delay) {
                None => stats.kills += 1,
                Some((_, stdout)) => {
                    stats.completed += 1;
                    let result = result_of(&stdout);
                    known[which] = match (before, result.as_str()) {
                        (Known::Enrolled | Known::Unknown, "PAM_SUCCESS") => Known::Enrolled,
                        // The module alone in the stack: libpam turns its PAM_IGNORE (not
                        // enrolled, `unenrolled = "allow"`) into PAM_PERM_DENIED.
                        (Known::NotEnrolled | Known::Unknown, "PAM_PERM_DENIED") => {
                            Known::NotEnrolled
                        }
                        _ => panic!(
                            "{user} ({before:?}): login with a fresh code gave {result}\n{}",
                            env.logs().join("\n")
                        ),
                    };
                }
            }
        } else {
            // Reset.
            let delay = kill.then(|| pace.delay(RESET, &mut rng));
            match pace.run(RESET, &mut cli_command(env, &["reset", user]), delay) {
                None => {
                    stats.kills += 1;
                    if before != Known::NotEnrolled {
                        known[which] = Known::Unknown;
                    }
                }
                Some((0, _)) => {
                    stats.completed += 1;
                    known[which] = Known::NotEnrolled;
                }
                // "not enrolled; nothing to reset"
                Some((1, _)) if before != Known::Enrolled => {
                    stats.completed += 1;
                    known[which] = Known::NotEnrolled;
                }
                Some((code, out)) => panic!("reset {user} ({before:?}) exited {code}: {out}"),
            }
        }
    }
    (known.to_vec(), stats, time)
}

// --- hostile conversation answers ----------------------------------------------------------

/// Answers that are empty, 1 MiB long, not UTF-8, or hold NUL bytes are refused with
/// PAM_AUTH_ERR and a reason in the log, never PAM_ABORT (a panic). An answer travels as a C
/// string: a NUL ends it, so `"\0<code>"` arrives empty and `"<code>\0junk"` arrives as the code
/// (and succeeds: the module never sees the bytes after the NUL).
#[test]
fn hostile_answers_are_refused_cleanly() {
    let env = TestEnv::builder("hostile").config(SHORT_LOCKOUT).build();
    env.enroll(USER, SECRET);
    let code = code_at(SECRET, T0);
    env.add_secret(&code);
    let mut nul_first = vec![0u8];
    nul_first.extend_from_slice(code.as_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "reason=empty"),
        ("white space only", b" \t ".to_vec(), "reason=empty"),
        ("1 MiB of digits", vec![b'7'; 1 << 20], "reason=malformed"),
        ("1 MiB of 0xff", vec![0xff; 1 << 20], "reason=malformed"),
        ("1 MiB of dashes", vec![b'-'; 1 << 20], "reason=malformed"),
        ("65 digits", vec![b'1'; 65], "reason=malformed"),
        ("not UTF-8", b"\xff\xfe123456".to_vec(), "reason=malformed"),
        ("truncated UTF-8", b"12345\xc3".to_vec(), "reason=malformed"),
        (
            "overlong UTF-8",
            b"\xc0\xb1\xc0\xb2".to_vec(),
            "reason=malformed",
        ),
        ("NUL first", nul_first, "reason=empty"),
        (
            "unicode digits",
            "١٢٣٤٥٦".as_bytes().to_vec(),
            "reason=malformed",
        ),
    ];
    for (i, (name, bytes, reason)) in cases.iter().enumerate() {
        let file = env.dir().join(format!("answer-{i}"));
        std::fs::write(&file, bytes).expect("write answer file");
        let before = env.logs().len();
        // Two seconds apart (with SHORT_LOCKOUT) and inside T0's step.
        let time = T0 - 14 + 2 * i as i64;
        let login = pam_drive(&args_with_answer_file(&env, USER, time, &file));
        let logs = logs_since(&env, before);
        assert_eq!(
            login.result,
            "PAM_AUTH_ERR",
            "{name}: {login}\n{}",
            logs.join("\n")
        );
        assert!(
            logs.iter()
                .any(|l| l.contains("auth failure") && l.contains(reason)),
            "{name}: no `auth failure … {reason}` line in\n{}",
            logs.join("\n")
        );
    }
    // The refusals left the record usable: the code (never accepted) still works, also when
    // followed by a NUL and junk, which the module never sees.
    let mut with_junk = code.clone().into_bytes();
    with_junk.extend_from_slice(b"\0junk after the NUL");
    let file = env.dir().join("answer-nul-after");
    std::fs::write(&file, &with_junk).expect("write answer file");
    pam_drive(&args_with_answer_file(&env, USER, T0, &file)).assert_result("PAM_SUCCESS");
    env.assert_logs_clean(&[SECRET, &code]);
}

// --- full disk, read-only state ------------------------------------------------------------

/// Fills the file system holding `dir` (a small tmpfs) with `dir/filler`.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).expect("create filler");
    for chunk in [64 * 1024, 4096, 1] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    let _ = file.sync_all();
    path
}

/// With the state directory's file system full, TOTP logins still work: the login state is
/// rewritten in place and needs no new blocks. What does need space, a new record for a used
/// emergency code, fails closed (PAM_AUTHINFO_UNAVAIL) with a log line naming the cause; the
/// record stays byte-for-byte the same, no temp file is left and the emergency code is not used
/// up: once space is freed it works.
#[test]
fn full_state_disk_fails_closed_and_damages_nothing() {
    let env = TestEnv::builder("full_disk").config(SHORT_LOCKOUT).build();
    let _mount = Mount::tmpfs(&env.state_dir(), "256k");
    let emergency = env.enroll(USER, SECRET);
    let record = env.record_path(USER);
    let before = std::fs::read(&record).expect("read record");
    let filler = fill(&env.state_dir());
    let unchanged = || {
        assert_eq!(
            std::fs::read(&record).expect("reread"),
            before,
            "record changed"
        );
        assert_eq!(
            temp_files(&env.state_dir().join("users")),
            Vec::<String>::new()
        );
    };

    let code = code_at(SECRET, T0);
    let wrong = twostep_tests::oath::wrong_code(SECRET, T0 + STEP);
    env.login(USER, &[&code], T0).assert_result("PAM_SUCCESS");
    env.login(USER, &[&code], T0 + 2)
        .assert_result("PAM_AUTH_ERR")
        .assert_logged(&["reason=replay"]);
    env.login(USER, &[&wrong], T0 + STEP)
        .assert_result("PAM_AUTH_ERR");
    unchanged();
    let login = env.login(USER, &[&emergency[0]], T0 + 2 * STEP);
    login.assert_result("PAM_AUTHINFO_UNAVAIL");
    let line = login.assert_logged(&["error", "No space left on device"]);
    assert!(line.contains(&format!("user={USER}")), "{line}");
    unchanged();

    std::fs::remove_file(filler).expect("remove filler");
    env.login(USER, &[&emergency[0]], T0 + 3 * STEP)
        .assert_result("PAM_SUCCESS");
    env.assert_logs_clean(&[SECRET, &code, &wrong, &emergency[0]]);
}

/// With the state directory read-only, logins fail closed with a log line naming the cause and
/// the record is untouched; `twostep status` still reads it. Writable again, the code works.
#[test]
fn read_only_state_fails_closed_and_damages_nothing() {
    let env = TestEnv::new("read_only");
    env.enroll(USER, SECRET);
    let record = env.record_path(USER);
    let before = std::fs::read(&record).expect("read record");
    let code = code_at(SECRET, T0);
    {
        let _mount = Mount::read_only(&env.state_dir());
        let login = env.login(USER, &[&code], T0);
        login.assert_result("PAM_AUTHINFO_UNAVAIL");
        let line = login.assert_logged(&["error", "Read-only file system"]);
        assert!(line.contains(&format!("user={USER}")), "{line}");
        assert_eq!(
            std::fs::read(&record).expect("reread"),
            before,
            "record changed"
        );
        let status = env.cli(&["status", "--json"]);
        assert!(
            status.status.success(),
            "status on a read-only state dir: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    env.login(USER, &[&code], T0).assert_result("PAM_SUCCESS");
    let meta = std::fs::metadata(&record).expect("stat record");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    env.assert_logs_clean(&[SECRET, &code]);
}

// --- what is synced to the disk ------------------------------------------------------------

/// The fsync(2) and fdatasync(2) calls of one pam-drive login, in order, as `call name` with
/// the name of the file or directory synced (strace -y).
fn syncs_of_login(env: &TestEnv, args: &[OsString]) -> (String, Vec<String>) {
    let trace = env.dir().join("syncs.strace");
    let _ = std::fs::remove_file(&trace);
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg(paths::pam_drive())
        .args(args);
    let (code, output) = run_or_kill(&mut command, None).expect("strace pam-drive was killed");
    assert!(
        code == 0 || code == 1,
        "strace pam-drive exited {code} (apt-get install strace): {output}"
    );
    let calls = std::fs::read_to_string(&trace).expect("read the strace output");
    // Lines look like `1234 fdatasync(7</path/to/users/.daemon.toml.tmp>) = 0`.
    let syncs = calls
        .lines()
        .filter_map(|line| {
            let call = line.split_whitespace().nth(1)?;
            let (name, rest) = call.split_once('(')?;
            let path = rest.split_once('<')?.1.split_once('>')?.0;
            let file = Path::new(path).file_name()?.to_string_lossy().into_owned();
            Some(format!("{name} {file}"))
        })
        .collect();
    (result_of(&output), syncs)
}

/// What a login writes is synced only when it uses up a one-time code (docs/reliability.md,
/// "What is synced"): a TOTP success or a failure rewrites the login state in place without a
/// sync; an emergency code's use is durable before the login succeeds, the record first.
#[test]
fn only_one_time_code_use_is_synced_to_disk() {
    let env = TestEnv::builder("syncs").config(SHORT_LOCKOUT).build();
    let emergency = env.enroll(USER, SECRET);
    let code = code_at(SECRET, T0);
    env.add_secret(&code);
    let none: Vec<String> = Vec::new();
    let args = env.attempt(USER).answer(&code).time(T0).args();
    assert_eq!(
        syncs_of_login(&env, &args),
        ("PAM_SUCCESS".to_string(), none.clone()),
        "TOTP success"
    );
    let args = env.attempt(USER).answer("000000").time(T0 + STEP).args();
    assert_eq!(
        syncs_of_login(&env, &args),
        ("PAM_AUTH_ERR".to_string(), none),
        "wrong code"
    );
    let args = env
        .attempt(USER)
        .answer(&emergency[0])
        .time(T0 + 2 * STEP)
        .args();
    let (result, syncs) = syncs_of_login(&env, &args);
    assert_eq!(result, "PAM_SUCCESS", "emergency code");
    let want = [
        format!("fdatasync .{USER}.toml.tmp"),
        "fsync users".to_string(),
        format!("fdatasync {USER}.state"),
    ];
    assert_eq!(
        syncs, want,
        "the new record, its directory, then the login state"
    );
    env.assert_logs_clean(&[SECRET, &code, &emergency[0]]);
}
