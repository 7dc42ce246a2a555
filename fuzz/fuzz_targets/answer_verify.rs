//! What a user types, through the public `login::verify` (the normalization in front of it,
//! `login::normalize`, is private): a real store on tmpfs, one enrolled user, arbitrary bytes as
//! the answer. Never panics, never fails with an error, and never accepts anything but one of
//! the TOTP codes valid at that moment (emergency codes have 60 bits: a fuzzer cannot hit one).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use twostep_common::config::Config;
use twostep_common::enroll;
use twostep_common::login::{self, Accepted, Attempt, Outcome};
use twostep_common::store::{Seen, Store};
use twostep_common::totp::{self, Algorithm, Params};

const USER: &str = "fuzz";
const KEY: &[u8; 20] = b"twostep fuzz key 20b";
const PARAMS: Params = Params {
    algorithm: Algorithm::Sha1,
    digits: 6,
    period: 30,
};
const BASE: u64 = 1_800_000_000;

struct World {
    store: Store,
    config: Config,
}

/// A fresh state directory in /dev/shm (root-owned, sticky: the store accepts it), one per
/// fuzzing process; directories of processes that are gone are removed first.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        for entry in std::fs::read_dir(shm).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("twostep-fuzz-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir: PathBuf = shm.join(format!("twostep-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the fuzz directory");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod 0700");
        let text = format!(
            "state_dir = \"{}/state\"\n[lockout]\nwindow_secs = 1\nduration_secs = 1\n\
             [log]\nsocket = \"/nonexistent\"\n",
            dir.display()
        );
        let config = Config::parse(&dir.join("twostep.toml"), &text).expect("config");
        let store = Store::create(&config.state_dir).expect("store (run as root)");
        let new = enroll::new_totp(&config, USER, KEY, PARAMS, BASE).expect("enrollment");
        let lock = store.lock(USER).expect("lock");
        store.save(&lock, &new.record).expect("save");
        drop(lock);
        World { store, config }
    })
}

fuzz_target!(|data: &[u8]| {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let world = world();
    // Two seconds apart: with a one-second lockout window, failures never add up to a lockout.
    let now = BASE + 60 + 2 * CALLS.fetch_add(1, Ordering::SeqCst);
    let attempt = Attempt {
        user: USER,
        service: "fuzz",
        rhost: "",
    };
    let outcome = login::verify(
        &world.store,
        &world.config,
        &attempt,
        data,
        now,
        Seen::default(),
    )
    .expect("verify fails only on I/O errors");
    if let Outcome::Accepted(how) = outcome {
        assert_eq!(
            how,
            Accepted::Totp,
            "an emergency code was guessed: {data:?}"
        );
        let typed: String = String::from_utf8_lossy(data)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let valid: Vec<String> = [now - 30, now, now + 30]
            .iter()
            .map(|&t| totp::code_at(KEY, PARAMS, t).to_string())
            .collect();
        assert!(
            valid.contains(&typed),
            "accepted {data:?}, valid were {valid:?}"
        );
    }
});
