//! A case-insensitive user directory for one test, as SSSD or winbind are against Active
//! Directory: `ALICE` is `alice`. Processes run with [`NssDirectory::envs`] see it through
//! nss_wrapper (Debian's `libnss-wrapper`, preloaded), which asks the test NSS module
//! `libnss_twostepci.so` (`tests/nss/twostepci.c`, built by `build.rs`) first and then its own
//! passwd and group files. The system's NSS configuration is not touched.
//!
//! Under nss_wrapper a name found nowhere is reported as the error ENOENT, not as "no such
//! user" (glibc's answer), so the product refuses it as a failed lookup; tests of unknown users
//! use the real glibc instead.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// nss_wrapper's preload library.
pub const NSS_WRAPPER: &str = "libnss_wrapper.so";

/// The users and groups of one test's directory, in files under the test's directory.
#[derive(Debug)]
pub struct NssDirectory {
    passwd: PathBuf,
    group: PathBuf,
    fail: Option<String>,
}

impl NssDirectory {
    /// Writes `passwd` and `group` (in /etc/passwd and /etc/group format, one entry a line)
    /// into `dir`. Root is added to both, so that root-owned files keep an owner name.
    pub fn create(dir: &Path, passwd: &[&str], group: &[&str]) -> NssDirectory {
        let write = |name: &str, root: &str, lines: &[&str]| {
            let path = dir.join(name);
            let mut text = format!("{root}\n");
            lines
                .iter()
                .for_each(|line| text.push_str(&format!("{line}\n")));
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        };
        NssDirectory {
            passwd: write("nss-passwd", "root:x:0:0:root:/root:/bin/sh", passwd),
            group: write("nss-group", "root:x:0:", group),
            fail: None,
        }
    }

    /// Makes every lookup of `name` (ignoring case) fail as an unreachable directory does.
    pub fn failing(mut self, name: &str) -> NssDirectory {
        self.fail = Some(name.to_string());
        self
    }

    /// The environment that makes a process use this directory.
    pub fn envs(&self) -> Vec<(OsString, OsString)> {
        let module = env!("TWOSTEP_TEST_NSS_MODULE");
        let mut envs: Vec<(OsString, OsString)> = vec![
            ("LD_PRELOAD".into(), NSS_WRAPPER.into()),
            ("NSS_WRAPPER_PASSWD".into(), self.passwd.clone().into()),
            ("NSS_WRAPPER_GROUP".into(), self.group.clone().into()),
            ("NSS_WRAPPER_MODULE_SO_PATH".into(), module.into()),
            ("NSS_WRAPPER_MODULE_FN_PREFIX".into(), "twostepci".into()),
            ("TWOSTEP_TEST_NSS_PASSWD".into(), self.passwd.clone().into()),
        ];
        if let Some(name) = &self.fail {
            envs.push(("TWOSTEP_TEST_NSS_FAIL".into(), name.into()));
        }
        envs
    }
}
