//! Child processes: what the forked child does before `exec`.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `command`'s child mark every descriptor above 2 close-on-exec just before `exec`, so
/// that the program inherits none of the application's (sshd's sockets, a web server's
/// connections). Close-on-exec rather than closing keeps the standard library's own exec-error
/// pipe working. Adds to, and runs after, hooks registered before.
pub fn inherit_only_stdio(command: &mut Command) {
    // SAFETY: the hook runs in the forked child before exec and only makes system calls that
    // are async-signal-safe (close_range, getrlimit, fcntl); it allocates nothing and takes no
    // lock.
    unsafe {
        command.pre_exec(|| {
            cloexec_above_stdio();
            Ok(())
        });
    }
}

/// In the forked child: every descriptor above 2 close-on-exec. Async-signal-safe: only
/// system calls.
fn cloexec_above_stdio() {
    // SAFETY: close_range takes plain integers and touches only this process's descriptor
    // table; CLOSE_RANGE_CLOEXEC (Linux 5.11) closes nothing.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    } == 0;
    if done {
        return;
    }
    // Older kernels: every possible descriptor up to the limit.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `limit`.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20) as libc::c_int
    } else {
        1 << 16
    };
    for fd in 3..max {
        // SAFETY: fcntl on a descriptor number that may not be open fails with EBADF and has
        // no other effect.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_child_inherits_no_descriptor_above_stdio() {
        let file = std::fs::File::open("/dev/null").expect("open /dev/null");
        let fd = file.as_raw_fd();
        // Not close-on-exec in this process.
        // SAFETY: F_SETFD on a descriptor this test owns.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(format!("test -e /proc/self/fd/{fd}"));
        assert!(
            command.status().expect("run sh").success(),
            "inherited without"
        );
        inherit_only_stdio(&mut command);
        assert!(
            !command.status().expect("run sh").success(),
            "inherited with"
        );
    }
}
