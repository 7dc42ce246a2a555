//! `twostep-bench`: pam_twostep against pam_google_authenticator and pam_oath, through the real
//! libpam, with the same key and the same codes, in one run. Not a test: it prints a table and
//! the ratios against the targets of docs/benchmarks.md (PASS/MISS) and always exits 0 unless
//! the setup fails or a module gives a wrong answer.
//!
//! ```text
//! cargo build --release -p pam_twostep -p twostep-cli -p twostep-bench
//! sudo target/release/twostep-bench [--iterations N] [--rounds N] [--scale N,N,...]
//!                                   [--module PATH] [--cli PATH] [--dir DIR]
//! ```
//!
//! Needs root, Debian's libpam-google-authenticator, libpam-oath and oathtool; the fleet rows
//! (bench/src/fleet.rs) also need Debian's postgresql server binaries and are skipped, with a
//! line saying why, without them. Runs in a private
//! mount namespace (own /dev with /dev/log → the bench's drain, own tmpfs), writes PAM services
//! `/etc/pam.d/twostep-bench-<pid>-*` and a scratch directory, and removes both at the end.

mod fleet;
mod pam;
mod self_start;
mod setup;

// The fake clock, the libpam client and the private /dev are pam-drive's too (twostep-testkit).
use twostep_testkit::{dev_log, fake_clock};
// The fake clock's interposers of libc's, exported by build.rs.
twostep_testkit::export_fake_clock!();

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use setup::{LogDrain, Place, Services, USER};

/// First time step used: 1_800_000_000 / 30.
const STEP0: u64 = 60_000_000;
const PERIOD: u64 = 30;
const WARMUP: usize = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => worker(&args[1..]),
        Some("dlopen") => dlopen_child(&args[1..]),
        _ => match Options::parse(&args) {
            Ok(options) => run(&options),
            Err(message) => {
                eprintln!("twostep-bench: {message}");
                ExitCode::from(2)
            }
        },
    }
}

#[derive(Debug)]
struct Options {
    iterations: usize,
    rounds: usize,
    scale: Vec<usize>,
    module: PathBuf,
    cli: PathBuf,
    dir: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let exe_dir = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .ok_or("no executable directory")?
            .to_path_buf();
        let mut options = Options {
            iterations: 1000,
            rounds: 500,
            scale: vec![1, 1_000, 10_000, 100_000],
            module: exe_dir.join("libpam_twostep.so"),
            cli: exe_dir.join("twostep"),
            dir: PathBuf::from(format!("/var/tmp/twostep-bench-{}", std::process::id())),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            let number = |text: &str| text.parse::<usize>().map_err(|e| format!("{text}: {e}"));
            match flag.as_str() {
                "--iterations" => options.iterations = number(value()?)?,
                "--rounds" => options.rounds = number(value()?)?,
                "--scale" => {
                    options.scale = value()?.split(',').map(number).collect::<Result<_, _>>()?
                }
                "--module" => options.module = PathBuf::from(value()?),
                "--cli" => options.cli = PathBuf::from(value()?),
                "--dir" => options.dir = PathBuf::from(value()?),
                other => {
                    return Err(format!(
                        "unknown argument {other:?} (see the source header)"
                    ));
                }
            }
        }
        options.module = std::path::absolute(&options.module).map_err(|e| e.to_string())?;
        for path in [&options.module, &options.cli] {
            if !path.is_file() {
                return Err(format!(
                    "{} is missing: cargo build --release -p pam_twostep -p twostep-cli",
                    path.display()
                ));
            }
        }
        Ok(options)
    }
}

// --- codes ---------------------------------------------------------------------------------

/// TOTP codes of the bench key from oathtool (an implementation independent of the product),
/// fetched in batches.
#[derive(Debug, Default)]
struct Codes(HashMap<u64, String>);

impl Codes {
    fn get(&mut self, step: u64) -> String {
        if !self.0.contains_key(&step) {
            let batch = 4000;
            let output = Command::new("oathtool")
                .args(["--totp", "-b", "-w"])
                .arg((batch - 1).to_string())
                .arg("--now")
                .arg(format!("@{}", step * PERIOD))
                .arg(setup::base32(&setup::secret_bytes()))
                .output()
                .expect("run oathtool (apt-get install oathtool)");
            assert!(output.status.success(), "oathtool failed");
            for (i, line) in String::from_utf8_lossy(&output.stdout).lines().enumerate() {
                self.0.insert(step + i as u64, line.to_string());
            }
        }
        self.0[&step].clone()
    }

    /// A code valid for no step within two of `step`.
    fn wrong(&mut self, step: u64) -> String {
        let near: Vec<String> = (step - 2..=step + 2).map(|s| self.get(s)).collect();
        let right: u32 = near[2].parse().expect("digits");
        (1..)
            .map(|k| format!("{:06}", (right + k) % 1_000_000))
            .find(|code| !near.contains(code))
            .expect("a wrong code")
    }
}

fn time_of(step: u64) -> i64 {
    (step * PERIOD + PERIOD / 2) as i64
}

/// Hands out fresh steps: each scenario gets its own, later than every earlier one.
#[derive(Debug)]
struct Steps(u64);

impl Steps {
    fn take(&mut self, n: usize) -> u64 {
        let first = self.0;
        self.0 += n as u64 + 10;
        first
    }
}

// --- measuring -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Correct,
    Wrong,
    Replay,
}

#[derive(Debug, Default, Clone)]
struct Samples {
    auth: Vec<Duration>,
    cycle: Vec<Duration>,
    /// Logins whose result was not the expected one (a success for a wrong or replayed code, a
    /// failure for a correct one).
    unexpected: usize,
    first_unexpected: Option<i32>,
}

impl Samples {
    fn median_auth(&self) -> f64 {
        percentile(&self.auth, 50.0)
    }
    fn median_cycle(&self) -> f64 {
        percentile(&self.cycle, 50.0)
    }
}

/// The `p`th percentile in microseconds (nearest rank).
fn percentile(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1e6
}

const MODULES: [&str; 3] = ["pam_twostep", "google-authenticator", "pam_oath"];

fn services(place: &Place) -> [CString; 3] {
    [&place.twostep, &place.ga, &place.oath].map(|s| pam::cstring(s))
}

/// Runs `n` logins of `kind` per module, interleaving the modules login by login so that
/// machine noise hits them alike. Each login uses its own fresh time step.
fn measure(
    place: &Place,
    kind: Kind,
    n: usize,
    steps: &mut Steps,
    codes: &mut Codes,
) -> [Samples; 3] {
    let services = services(place);
    let user = pam::cstring(USER);
    let mut out: [Samples; 3] = Default::default();
    let first = steps.take(n + WARMUP);
    for i in 0..n + WARMUP {
        let step = first + i as u64;
        fake_clock::start_at(time_of(step));
        let code = match kind {
            Kind::Wrong => codes.wrong(step),
            Kind::Correct | Kind::Replay => codes.get(step),
        };
        for (m, service) in services.iter().enumerate() {
            if kind == Kind::Replay {
                let first = pam::login(service, &user, code.as_bytes());
                if first.rc != pam::PAM_SUCCESS {
                    out[m].unexpected += 1;
                    out[m].first_unexpected.get_or_insert(first.rc);
                }
            }
            let timed = pam::login(service, &user, code.as_bytes());
            let ok = match kind {
                Kind::Correct => timed.rc == pam::PAM_SUCCESS,
                Kind::Wrong | Kind::Replay => timed.rc != pam::PAM_SUCCESS,
            };
            if !ok {
                out[m].unexpected += 1;
                out[m].first_unexpected.get_or_insert(timed.rc);
            }
            if i >= WARMUP {
                out[m].auth.push(timed.auth);
                out[m].cycle.push(timed.cycle);
            }
        }
    }
    out
}

/// Logins of `kind` (correct or wrong codes) of one module only.
fn measure_one(
    service: &str,
    kind: Kind,
    n: usize,
    steps: &mut Steps,
    codes: &mut Codes,
) -> Samples {
    let service = pam::cstring(service);
    let user = pam::cstring(USER);
    let mut out = Samples::default();
    let first = steps.take(n + WARMUP);
    for i in 0..n + WARMUP {
        let step = first + i as u64;
        fake_clock::start_at(time_of(step));
        let code = match kind {
            Kind::Wrong => codes.wrong(step),
            Kind::Correct | Kind::Replay => codes.get(step),
        };
        let timed = pam::login(&service, &user, code.as_bytes());
        if (timed.rc == pam::PAM_SUCCESS) != (kind == Kind::Correct) {
            out.unexpected += 1;
            out.first_unexpected.get_or_insert(timed.rc);
        }
        if i >= WARMUP {
            out.auth.push(timed.auth);
            out.cycle.push(timed.cycle);
        }
    }
    out
}

// --- two processes, one user ---------------------------------------------------------------

/// A login process: reads `STEP CODE` lines, answers each with the login's PAM result.
fn worker(args: &[String]) -> ExitCode {
    let [service, user] = args else {
        eprintln!("usage: twostep-bench worker SERVICE USER");
        return ExitCode::from(2);
    };
    let (service, user) = (pam::cstring(service), pam::cstring(user));
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Some((step, code)) = line.split_once(' ') else {
            break;
        };
        let Ok(step) = step.parse::<u64>() else { break };
        fake_clock::start_at(time_of(step));
        let timed = pam::login(&service, &user, code.as_bytes());
        if writeln!(stdout, "{}", timed.rc)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
    ExitCode::SUCCESS
}

#[derive(Debug)]
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn start(service: &str) -> Worker {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["worker", service, USER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Worker {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, step: u64, code: &str) {
        writeln!(self.stdin, "{step} {code}").expect("write to worker");
        self.stdin.flush().expect("flush to worker");
    }

    fn receive(&mut self) -> i32 {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from worker");
        line.trim().parse().expect("worker prints a PAM code")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Stop it by its own pid and reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Race {
    /// Same code in both processes: rounds where neither got in (a valid fresh code refused).
    same_code_none: usize,
    /// Same code in both: rounds where both got in (a replay accepted).
    same_code_both: usize,
    same_code_rounds: usize,
    /// Distinct fresh codes, free-running: failures not explained by the other process having
    /// just used a newer step.
    fresh_spurious: usize,
    /// Distinct fresh codes: failures of a code older than one the other process got accepted
    /// meanwhile (pam_twostep refuses those by design: older steps are replays).
    fresh_older: usize,
    fresh_logins: usize,
}

impl Race {
    fn spurious(&self) -> usize {
        self.same_code_none + self.fresh_spurious
    }
}

/// Two processes log the same user in at once. First `rounds` rounds in which both type the
/// same fresh code (exactly one must get in), then `rounds` logins per process with distinct
/// fresh codes taken from one counter (every one should get in, except that pam_twostep refuses
/// a code older than one just accepted).
fn race(service: &str, rounds: usize, steps: &mut Steps, codes: &mut Codes) -> Race {
    let mut result = Race::default();
    let mut workers = [Worker::start(service), Worker::start(service)];
    let first = steps.take(rounds);
    for r in 0..rounds {
        let step = first + r as u64;
        let code = codes.get(step);
        workers.iter_mut().for_each(|w| w.send(step, &code));
        let ok = workers
            .iter_mut()
            .map(|w| w.receive())
            .filter(|&rc| rc == pam::PAM_SUCCESS)
            .count();
        result.same_code_rounds += 1;
        match ok {
            0 => result.same_code_none += 1,
            2 => result.same_code_both += 1,
            _ => {}
        }
    }

    let first = steps.take(2 * rounds + 10);
    let all: Vec<u64> = (first..first + 2 * rounds as u64 + 4).collect();
    let table: HashMap<u64, String> = all.iter().map(|&s| (s, codes.get(s))).collect();
    let ticket = AtomicU64::new(first);
    let epoch = Instant::now();
    // (step, sent, received, success)
    let logs: Vec<Vec<(u64, Duration, Duration, bool)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|worker| {
                let (ticket, table) = (&ticket, &table);
                scope.spawn(move || {
                    let mut log = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let step = ticket.fetch_add(1, Ordering::SeqCst);
                        let sent = epoch.elapsed();
                        worker.send(step, &table[&step]);
                        let rc = worker.receive();
                        log.push((step, sent, epoch.elapsed(), rc == pam::PAM_SUCCESS));
                    }
                    log
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("race thread"))
            .collect()
    });
    let everything: Vec<_> = logs.concat();
    for &(step, sent, received, ok) in &everything {
        result.fresh_logins += 1;
        if ok {
            continue;
        }
        let newer_accepted_meanwhile = everything.iter().any(|&(s, s_sent, s_received, s_ok)| {
            s_ok && s > step && s_sent < received && s_received > sent
        });
        if newer_accepted_meanwhile {
            result.fresh_older += 1;
        } else {
            result.fresh_spurious += 1;
        }
    }
    result
}

/// `RACERS` processes type the same fresh code at once, `rounds` times: exactly one may get in.
const RACERS: usize = 16;

#[derive(Debug, Default, Clone)]
struct ManyRace {
    rounds: usize,
    /// Rounds in which exactly one process got in.
    exactly_one: usize,
    /// Rounds in which none did (a valid code refused) or more than one (a replay accepted).
    none: usize,
    more: usize,
    /// From the moment the code is sent to the last answer.
    round_times: Vec<Duration>,
}

fn race_many(service: &str, rounds: usize, steps: &mut Steps, codes: &mut Codes) -> ManyRace {
    let mut workers: Vec<Worker> = (0..RACERS).map(|_| Worker::start(service)).collect();
    let mut result = ManyRace::default();
    let first = steps.take(rounds);
    for r in 0..rounds {
        let step = first + r as u64;
        let code = codes.get(step);
        let started = Instant::now();
        workers.iter_mut().for_each(|w| w.send(step, &code));
        let won = workers
            .iter_mut()
            .map(|w| w.receive())
            .filter(|&rc| rc == pam::PAM_SUCCESS)
            .count();
        result.round_times.push(started.elapsed());
        result.rounds += 1;
        match won {
            0 => result.none += 1,
            1 => result.exactly_one += 1,
            _ => result.more += 1,
        }
    }
    result
}

/// What the fleet part of the run measured, or why it did not run.
#[derive(Debug)]
struct FleetRows {
    correct: Samples,
    wrong: Samples,
    /// The 16-process race on the file store (disk) and on the fleet.
    race_file: ManyRace,
    race_fleet: ManyRace,
}

// --- module files --------------------------------------------------------------------------

/// Size of `path` after `strip --strip-all`, in bytes.
fn stripped_size(path: &Path, scratch: &Path) -> u64 {
    let out = scratch.join("stripped.so");
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&out)
        .arg(path)
        .status()
        .expect("run strip (binutils)");
    assert!(status.success(), "strip {}", path.display());
    let size = std::fs::metadata(&out).expect("stat stripped").len();
    let _ = std::fs::remove_file(out);
    size
}

/// In a fresh process: one dlopen+dlclose of the module, printed in nanoseconds.
fn dlopen_child(args: &[String]) -> ExitCode {
    let Some(path) = args.first() else {
        return ExitCode::from(2);
    };
    match pam::dlopen_once(&pam::cstring(path)) {
        Ok(elapsed) => {
            println!("{}", elapsed.as_nanos());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dlopen {path}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Median time to load and unload `path` in a new process (what each sshd connection pays),
/// over `n` processes, in microseconds.
fn dlopen_cost(path: &Path, n: usize) -> f64 {
    let samples: Vec<Duration> = (0..n)
        .map(|_| {
            let out = Command::new(std::env::current_exe().expect("own path"))
                .arg("dlopen")
                .arg(path)
                .output()
                .expect("run dlopen child");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ns: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("nanoseconds");
            Duration::from_nanos(ns)
        })
        .collect();
    percentile(&samples, 50.0)
}

fn module_path(name: &str) -> PathBuf {
    for dir in [
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/lib/security",
        "/usr/lib/security",
    ] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is not installed (apt-get install libpam-google-authenticator libpam-oath)");
}

// --- the run -------------------------------------------------------------------------------

/// Removes the scratch directory (after unmounting the tmpfs in it) when dropped.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let tmpfs = pam::cstring(&self.0.join("tmpfs").display().to_string());
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(tmpfs.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(options: &Options) -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("twostep-bench: must run as root (it writes /etc/pam.d and root-owned state)");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    setup::create_dir(&options.dir);
    let scratch = Scratch(options.dir.clone());
    let drain = LogDrain::bind(&scratch.0.join("log.sock")).expect("bind the log drain");
    // Before the private /dev: the server needs the real one (/dev/shm).
    let database = fleet::Database::start();
    // A private mount namespace whose /dev/log is the drain: what pam_google_authenticator and
    // pam_oath send to syslog(3) reaches the bench, not the machine's logger.
    if let Err(e) = dev_log::redirect_to(drain.path()) {
        eprintln!("twostep-bench: {e}");
        return ExitCode::from(2);
    }
    let mut services = Services::default();
    let disk_dir = scratch.0.join("disk");
    let tmpfs_dir = scratch.0.join("tmpfs");
    let scale_dir = scratch.0.join("scale");
    let fleet_dir = scratch.0.join("fleet");
    for dir in [&disk_dir, &tmpfs_dir, &scale_dir, &fleet_dir] {
        setup::create_dir(dir);
    }
    setup::mount_tmpfs(&tmpfs_dir).expect("mount a tmpfs");
    let module = &options.module;
    let disk = setup::place(
        &disk_dir,
        "disk",
        module,
        &options.cli,
        &drain,
        &mut services,
    );
    let tmpfs = setup::place(
        &tmpfs_dir,
        "tmpfs",
        module,
        &options.cli,
        &drain,
        &mut services,
    );
    let scale = setup::place(
        &scale_dir,
        "scale",
        module,
        &options.cli,
        &drain,
        &mut services,
    );

    let mut steps = Steps(STEP0);
    let mut codes = Codes::default();
    let n = options.iterations;
    eprintln!("measuring {n} logins per scenario and module ...");
    let correct_disk = measure(&disk, Kind::Correct, n, &mut steps, &mut codes);
    let correct_tmpfs = measure(&tmpfs, Kind::Correct, n, &mut steps, &mut codes);
    let replay = measure(&disk, Kind::Replay, n, &mut steps, &mut codes);
    eprintln!("two processes, one user ...");
    let races: Vec<Race> = [&disk.twostep, &disk.ga, &disk.oath]
        .iter()
        .map(|service| race(service, options.rounds, &mut steps, &mut codes))
        .collect();
    // Last: a long run of wrong codes may leave google-authenticator's skew detection armed.
    let wrong = measure(&disk, Kind::Wrong, n, &mut steps, &mut codes);

    eprintln!("enrolled users ...");
    let scale_n = n.min(300);
    let mut scale_rows = Vec::new();
    let mut have = 1;
    for &total in &options.scale {
        setup::grow_twostep_users(&scale.dir, have, total);
        have = have.max(total);
        setup::grow_oath_users(&scale.dir, total);
        let twostep = measure_one(
            &scale.twostep,
            Kind::Correct,
            scale_n,
            &mut steps,
            &mut codes,
        );
        let oath = measure_one(
            &scale.oath,
            Kind::Correct,
            scale_n.min(100),
            &mut steps,
            &mut codes,
        );
        scale_rows.push((total, twostep, oath));
    }

    eprintln!("fleet (loopback PostgreSQL) ...");
    let fleet_host = database
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|db| fleet::host(db, &fleet_dir, module, &options.cli, &drain, &mut services));
    let fleet_rows = fleet_host.as_ref().map_err(Clone::clone).map(|host| {
        let rounds = options.rounds.min(100);
        FleetRows {
            correct: measure_one(&host.service, Kind::Correct, n, &mut steps, &mut codes),
            wrong: measure_one(&host.service, Kind::Wrong, n, &mut steps, &mut codes),
            race_file: race_many(&disk.twostep, rounds, &mut steps, &mut codes),
            race_fleet: race_many(&host.service, rounds, &mut steps, &mut codes),
        }
    });

    eprintln!("self-service start-up ...");
    let self_start = self_start::measure(
        &options.cli,
        &disk.dir.join("twostep.toml"),
        &scratch.0,
        n.clamp(5, 50),
    );

    eprintln!("module files ...");
    let paths = [
        module.clone(),
        module_path("pam_google_authenticator.so"),
        module_path("pam_oath.so"),
    ];
    let files: Vec<(u64, u64, f64)> = paths
        .iter()
        .map(|p| {
            let size = std::fs::metadata(p).expect("stat module").len();
            (size, stripped_size(p, &scratch.0), dlopen_cost(p, 50))
        })
        .collect();
    let twostep_errors = drain.matching("refusing login");

    let report = Report {
        n,
        correct_disk,
        correct_tmpfs,
        wrong,
        replay,
        races,
        scale_rows,
        files,
        self_start,
        fleet: fleet_rows,
        log_lines: drain.count(),
        twostep_errors: twostep_errors.len(),
        elapsed: started.elapsed(),
    };
    report.print();
    for line in twostep_errors.iter().take(5) {
        eprintln!("pam_twostep error: {line}");
    }
    drop(fleet_host);
    drop(database);
    drop(services);
    drop(drain);
    drop(scratch);
    if report.wrong_answers() > 0 {
        eprintln!("twostep-bench: some module gave a wrong answer (see `unexpected`)");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[derive(Debug)]
struct Report {
    n: usize,
    correct_disk: [Samples; 3],
    correct_tmpfs: [Samples; 3],
    wrong: [Samples; 3],
    replay: [Samples; 3],
    races: Vec<Race>,
    scale_rows: Vec<(usize, Samples, Samples)>,
    files: Vec<(u64, u64, f64)>,
    /// `twostep serve-self`: spawn to the first answer.
    self_start: Vec<Duration>,
    fleet: Result<FleetRows, String>,
    log_lines: usize,
    twostep_errors: usize,
    elapsed: Duration,
}

fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

impl Report {
    fn print_fleet(&self) {
        println!("\n## Fleet (twostep serve-store, PostgreSQL 15 on loopback)\n");
        let f = match &self.fleet {
            Ok(f) => f,
            Err(why) => {
                println!("Not measured: {why}.");
                return;
            }
        };
        println!("| scenario | auth median | auth p99 | cycle median | cycle p99 | unexpected |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        let [file, ..] = &self.correct_disk;
        let [file_wrong, ..] = &self.wrong;
        for (name, s) in [
            ("correct code, file store (ext4)", file),
            ("correct code, fleet", &f.correct),
            ("wrong code, file store (ext4)", file_wrong),
            ("wrong code, fleet", &f.wrong),
        ] {
            println!(
                "| {name} | {} | {} | {} | {} | {} |",
                us(s.median_auth()),
                us(percentile(&s.auth, 99.0)),
                us(s.median_cycle()),
                us(percentile(&s.cycle, 99.0)),
                s.unexpected
            );
        }
        println!(
            "\n| {RACERS} processes, one code each round | rounds | exactly one got in | none | \
             more than one | round median | round p99 |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (name, r) in [("file store", &f.race_file), ("fleet", &f.race_fleet)] {
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} |",
                r.rounds,
                r.exactly_one,
                r.none,
                r.more,
                us(percentile(&r.round_times, 50.0)),
                us(percentile(&r.round_times, 99.0))
            );
        }
    }

    fn wrong_answers(&self) -> usize {
        [
            &self.correct_disk,
            &self.correct_tmpfs,
            &self.wrong,
            &self.replay,
        ]
        .iter()
        .flat_map(|s| s.iter())
        .map(|s| s.unexpected)
        .sum::<usize>()
            + self.fleet.as_ref().map_or(0, |f| {
                f.correct.unexpected
                    + f.wrong.unexpected
                    + f.race_file.none
                    + f.race_file.more
                    + f.race_fleet.none
                    + f.race_fleet.more
            })
    }

    fn print(&self) {
        println!(
            "## Logins ({} per row after {WARMUP} warm-up; times of pam_authenticate and of \
             pam_start..pam_end)\n",
            self.n
        );
        println!(
            "| scenario | module | auth median | auth p99 | cycle median | cycle p99 | unexpected |"
        );
        println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        for (name, rows) in [
            ("correct code, ext4", &self.correct_disk),
            ("correct code, tmpfs", &self.correct_tmpfs),
            ("wrong code, ext4", &self.wrong),
            ("replayed code, ext4", &self.replay),
        ] {
            for (module, s) in MODULES.iter().zip(rows.iter()) {
                println!(
                    "| {name} | {module} | {} | {} | {} | {} | {}{} |",
                    us(s.median_auth()),
                    us(percentile(&s.auth, 99.0)),
                    us(s.median_cycle()),
                    us(percentile(&s.cycle, 99.0)),
                    s.unexpected,
                    s.first_unexpected
                        .map(|rc| format!(" (first rc {rc})"))
                        .unwrap_or_default()
                );
            }
        }

        println!("\n## Two processes, one user\n");
        println!(
            "| module | same code: rounds | neither got in | both got in | fresh codes: logins | \
             refused, older than one just accepted | refused otherwise | spurious failures |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (module, r) in MODULES.iter().zip(&self.races) {
            println!(
                "| {module} | {} | {} | {} | {} | {} | {} | {} |",
                r.same_code_rounds,
                r.same_code_none,
                r.same_code_both,
                r.fresh_logins,
                r.fresh_older,
                r.fresh_spurious,
                r.spurious()
            );
        }

        println!("\n## Enrolled users (correct code, ext4)\n");
        println!(
            "| users | pam_twostep median | pam_twostep p99 | pam_oath median | pam_oath p99 |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: |");
        for (users, twostep, oath) in &self.scale_rows {
            println!(
                "| {users} | {} | {} | {} | {} |",
                us(twostep.median_auth()),
                us(percentile(&twostep.auth, 99.0)),
                us(oath.median_auth()),
                us(percentile(&oath.auth, 99.0))
            );
        }

        println!("\n## Module files\n");
        println!("| module | size | stripped | dlopen+dlclose in a new process (median of 50) |");
        println!("| --- | ---: | ---: | ---: |");
        for (module, (size, stripped, load)) in MODULES.iter().zip(&self.files) {
            println!(
                "| {module} | {} KB | {} KB | {} |",
                size / 1024,
                stripped / 1024,
                us(*load)
            );
        }

        let mut start = self.self_start.clone();
        start.sort();
        let start_median = start[start.len() / 2].as_secs_f64() * 1e6;
        println!(
            "\n## Self-service (twostep serve-self, {} starts)\n",
            start.len()
        );
        println!("| spawn to first answer (status) | median | p99 |");
        println!("| --- | ---: | ---: |");
        println!(
            "| twostep serve-self | {} | {} |",
            us(start_median),
            us(percentile(&start, 99.0))
        );

        self.print_fleet();

        let [t, g, o] = &self.correct_disk;
        let faster_peer = g.median_auth().min(o.median_auth());
        let [tt, gt, ot] = &self.correct_tmpfs;
        let faster_peer_tmpfs = gt.median_auth().min(ot.median_auth());
        let durable = t.median_auth() / faster_peer;
        let cpu = tt.median_auth() / faster_peer_tmpfs;
        let wrong = self.wrong[0].median_auth() / self.wrong[2].median_auth();
        let cycle = t.median_cycle() / g.median_cycle();
        let spurious = self.races[0].spurious();
        let stripped_kb = self.files[0].1 as f64 / 1024.0;
        let flat = match (self.scale_rows.first(), self.scale_rows.last()) {
            (Some((_, first, _)), Some((users, last, _))) => {
                Some((*users, last.median_auth() / first.median_auth()))
            }
            _ => None,
        };
        println!("\n## Targets (ratios of medians from this run)\n");
        println!("| target | measured | result |");
        println!("| --- | --- | --- |");
        println!(
            "| correct code, ext4: ≤ 0.5 × faster peer | {durable:.2} × | {} |",
            verdict(durable <= 0.5)
        );
        println!(
            "| correct code, tmpfs (CPU only): ≤ 1.0 × faster peer | {cpu:.2} × | {} |",
            verdict(cpu <= 1.0)
        );
        println!(
            "| wrong code (still counted for lockout): ≤ 1.5 × pam_oath | {wrong:.2} × | {} |",
            verdict(wrong <= 1.5)
        );
        println!(
            "| whole cycle: ≤ 0.8 × google-authenticator's | {cycle:.2} × | {} |",
            verdict(cycle <= 0.8)
        );
        println!(
            "| two processes: zero spurious failures (peers: {} and {}) | {spurious} | {} |",
            self.races[1].spurious(),
            self.races[2].spurious(),
            verdict(spurious == 0)
        );
        // Issue 17: the size is reported, not targeted (issue 7's 600 KB could not be met
        // with panic = "unwind"; docs/benchmarks.md).
        println!("| pam_twostep.so stripped (reported, no target) | {stripped_kb:.0} KB | — |");
        println!(
            "| self-service: start and first answer ≤ 50 ms | {} | {} |",
            us(start_median),
            verdict(start_median <= 50_000.0)
        );
        if let Ok(f) = &self.fleet {
            let fleet_correct = f.correct.median_auth() / t.median_auth();
            let fleet_cycle = f.correct.median_cycle() / g.median_cycle();
            println!(
                "| fleet, correct code: ≤ 3 × the file store's (ext4) | {fleet_correct:.2} × | {} |",
                verdict(fleet_correct <= 3.0)
            );
            println!(
                "| fleet, whole cycle: ≤ 2 × google-authenticator's | {fleet_cycle:.2} × | {} |",
                verdict(fleet_cycle <= 2.0)
            );
            println!(
                "| fleet, {RACERS} processes, one code: exactly one in each round | {} of {} | {} |",
                f.race_fleet.exactly_one,
                f.race_fleet.rounds,
                verdict(f.race_fleet.exactly_one == f.race_fleet.rounds)
            );
        }
        if let Some((users, ratio)) = flat {
            println!(
                "| flat from 1 to {users} users: median within 1.25 × | {ratio:.2} × | {} |",
                verdict(ratio <= 1.25)
            );
        }
        println!(
            "\n{} log lines drained, {} pam_twostep errors; {:.0} s in all.",
            self.log_lines,
            self.twostep_errors,
            self.elapsed.as_secs_f64()
        );
    }
}
