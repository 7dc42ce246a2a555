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

/// The PAM module under test, `libpam_twostep.so`.
pub fn module() -> PathBuf {
    artifact("libpam_twostep.so")
}

/// The admin CLI, `twostep`.
pub fn cli() -> PathBuf {
    artifact("twostep")
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
