//! Harness for twostep's integration tests through the real libpam.
//!
//! A test builds a [`TestEnv`] (a private directory with a config, a state dir, a syslog
//! listener and a PAM service file in `/etc/pam.d`), enrolls users with the real `twostep` CLI
//! and logs in with `pam-drive` (this package's binary), which runs `pam_authenticate` through
//! libpam with a fake wall clock. TOTP codes come from `oathtool`, never from the product.
//!
//! ```no_run
//! use twostep_tests::{TestEnv, oath};
//!
//! let env = TestEnv::new("example");
//! env.enroll("daemon", "JBSWY3DPEHPK3PXP");
//! let code = oath::totp("JBSWY3DPEHPK3PXP", 1_800_000_015);
//! env.login("daemon", &[&code], 1_800_000_015).assert_result("PAM_SUCCESS");
//! env.assert_logs_clean(&["JBSWY3DPEHPK3PXP", &code]);
//! ```
//!
//! The tests need root (they write `/etc/pam.d`) and the workspace's artifacts: run
//! `cargo build --workspace` before `cargo test`. Set `TWOSTEP_TESTS_KEEP=1` to keep the
//! directories and service files of the tests for inspection.

pub mod cockpit;
pub mod env;
pub mod fleet_host;
pub mod login;
pub mod nss;
pub mod oath;
pub mod paths;
pub mod postgres;
pub mod run;
pub mod self_service;
pub mod smbd;
pub mod smtp;
pub mod sshd;
pub mod syslog;
pub mod users;
pub mod vsftpd;

pub use env::{TestEnv, TestEnvBuilder};
pub use login::{Attempt, Login};
pub use syslog::SyslogListener;

/// Panics unless the effective user is root: these tests write `/etc/pam.d` and root-owned
/// state, and must fail loudly rather than pass without testing anything.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "twostep integration tests must run as root (euid is {euid}): they install PAM \
         service files in /etc/pam.d and root-owned state"
    );
}
