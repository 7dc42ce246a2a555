//! Shared by the integration tests of the core: private scratch directories root can trust.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory (root, 0700) under the target's temp dir, in `group` (root, 0755); the
/// caller removes it. Panics unless running as root: the store trusts only root-owned files.
pub fn scratch_dir(group: &str) -> PathBuf {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests need root: the store only trusts root-owned files"
    );
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(group);
    fs::create_dir_all(&base).expect("create the scratch base");
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).expect("chmod the base");
    let dir = base.join(format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir(&dir).expect("create the scratch dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    dir
}
