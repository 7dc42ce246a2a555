//! Where the built artifacts are.
//!
//! The profile directory is the one holding the running test binary (`<profile>/deps/<test>`),
//! so `--release`, `CARGO_TARGET_DIR` and `build.target-dir` all work. When the binary is
//! somewhere else, it is `$CARGO_TARGET_DIR/debug`, or `<workspace>/target/debug`.

use std::path::{Path, PathBuf};

/// The directory holding the module, the CLI and pam-drive (`<target>/debug` by default).
pub fn profile_dir() -> PathBuf {
    exe_profile_dir().unwrap_or_else(|| target_dir().join("debug"))
}

/// The workspace target directory from `CARGO_TARGET_DIR` (relative to the workspace root) or
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits inside the workspace")
        .to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// `<profile>` when the running executable is `<profile>/deps/<name>`, as cargo's tests are.
fn exe_profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    (deps.file_name()? == "deps").then(|| deps.parent().map(Path::to_path_buf))?
}

/// Root of the tests' scratch directories: `<target>/twostep-tests`.
pub fn scratch_root() -> PathBuf {
    let profile = profile_dir();
    profile
        .parent()
        .expect("the profile directory has a parent")
        .join("twostep-tests")
}

/// Set to an installed module (e.g. `/usr/lib/x86_64-linux-gnu/security/pam_twostep.so`) to
/// run the tests against it instead of the build tree's (see `packaging/ci-package-test.sh`).
pub const MODULE_ENV: &str = "TWOSTEP_TEST_MODULE";
/// Set to an installed CLI (e.g. `/usr/sbin/twostep`) to run the tests against it.
pub const CLI_ENV: &str = "TWOSTEP_TEST_CLI";

/// The PAM module under test: `$TWOSTEP_TEST_MODULE`, else `<profile>/libpam_twostep.so`.
pub fn module() -> PathBuf {
    installed(MODULE_ENV).unwrap_or_else(|| artifact("libpam_twostep.so"))
}

/// The admin CLI: `$TWOSTEP_TEST_CLI`, else `<profile>/twostep`.
pub fn cli() -> PathBuf {
    installed(CLI_ENV).unwrap_or_else(|| artifact("twostep"))
}

/// The file named by the environment variable `var`, which must be an absolute path to an
/// existing file (a typo must not quietly test the build tree instead); `None` when unset.
fn installed(var: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(var)?);
    assert!(
        path.is_absolute() && path.is_file(),
        "{var}={} must be the absolute path of an existing file",
        path.display()
    );
    Some(path)
}

/// This package's PAM client, `pam-drive` (cargo builds it before running integration tests).
pub fn pam_drive() -> PathBuf {
    artifact("pam-drive")
}

/// `<profile>/<name>`, which must exist.
fn artifact(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    std::path::absolute(&path).unwrap_or(path)
}
