//! A private `/dev` whose `log` is a given socket, in a private mount namespace: syslog(3)
//! messages of libpam and of modules then reach the caller's socket, not the machine's logger
//! (or nobody, on a machine without one). Nothing outside this process tree sees it.
//!
//! Used by pam-drive (`--dev-log`) and twostep-bench.

use std::ffi::{CString, c_int};
use std::path::Path;

/// Character devices recreated in the private /dev: name, major, minor.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
const LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Enters a private mount namespace and mounts a fresh tmpfs on /dev holding the usual
/// character devices and `log -> socket`. Nothing outside this process sees the change.
pub fn redirect_to(socket: &Path) -> Result<(), String> {
    let socket = std::path::absolute(socket).map_err(|e| e.to_string())?;
    // SAFETY: unshare takes no pointers; it only detaches this process's mount namespace.
    check("unshare(CLONE_NEWNS)", unsafe {
        libc::unshare(libc::CLONE_NEWNS)
    })?;
    mount(None, "/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    mount(
        Some("tmpfs"),
        "/dev",
        Some("tmpfs"),
        libc::MS_NOSUID,
        Some("mode=0755"),
    )?;
    for (name, major, minor) in DEVICES {
        let path = cstr(&format!("/dev/{name}"))?;
        let mode = libc::S_IFCHR | 0o666;
        // SAFETY: path is a NUL-terminated string; mknod takes no other pointers.
        let rc = unsafe { libc::mknod(path.as_ptr(), mode, libc::makedev(major, minor)) };
        check(&format!("mknod /dev/{name}"), rc)?;
    }
    for (name, target) in LINKS {
        std::os::unix::fs::symlink(target, format!("/dev/{name}")).map_err(|e| e.to_string())?;
    }
    std::os::unix::fs::symlink(&socket, "/dev/log").map_err(|e| format!("/dev/log: {e}"))
}

/// mount(2) with optional source, type and data.
pub fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    let source = source.map(cstr).transpose()?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.map(cstr).transpose()?;
    let target_c = cstr(target)?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target_c.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    check(&format!("mount {target}"), rc)
}

fn cstr(text: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("NUL byte in {text:?}"))
}

fn check(what: &str, rc: c_int) -> Result<(), String> {
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    }
}
