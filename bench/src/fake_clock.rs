//! A settable wall clock, interposed over libc's `clock_gettime`, `gettimeofday` and `time` for
//! the whole process (see `build.rs`): pam_twostep reads the time through `clock_gettime`,
//! pam_google_authenticator and pam_oath through `time`. Each measured login sets the clock to
//! a fresh TOTP step, so repeated successes are not replays.
//!
//! Only CLOCK_REALTIME(_COARSE) is faked, and only once [`set`] was called; the sub-second part
//! and every other clock come from the kernel through a raw syscall (libc's function would call
//! back into this one).

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI64, Ordering};

const NONE: i64 = i64::MIN;
static FAKE_SECS: AtomicI64 = AtomicI64::new(NONE);

/// Sets the wall clock's seconds to `epoch` until the next call.
pub fn set(epoch: i64) {
    FAKE_SECS.store(epoch, Ordering::SeqCst);
}

fn kernel_time(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clock, &mut ts) };
    ts
}

fn realtime() -> libc::timespec {
    let mut now = kernel_time(libc::CLOCK_REALTIME);
    let fake = FAKE_SECS.load(Ordering::SeqCst);
    if fake != NONE {
        now.tv_sec = fake;
    }
    now
}

/// Interposes libc's `clock_gettime`.
///
/// # Safety
/// As for clock_gettime(2): `tp` must be null or valid for writing a `timespec`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_gettime(clock: libc::clockid_t, tp: *mut libc::timespec) -> c_int {
    let wall = matches!(clock, libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE);
    if wall && !tp.is_null() && FAKE_SECS.load(Ordering::SeqCst) != NONE {
        // SAFETY: the caller passes a writable timespec (checked non-null).
        unsafe { tp.write(realtime()) };
        return 0;
    }
    // SAFETY: forwards the caller's arguments unchanged; the kernel validates them.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clock, tp) as c_int }
}

/// Interposes libc's `gettimeofday`.
///
/// # Safety
/// As for gettimeofday(2): `tv` and `tz` must each be null or valid for writing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gettimeofday(tv: *mut libc::timeval, tz: *mut c_void) -> c_int {
    let now = realtime();
    if !tv.is_null() {
        let timeval = libc::timeval {
            tv_sec: now.tv_sec,
            tv_usec: now.tv_nsec / 1000,
        };
        // SAFETY: the caller passes a writable timeval (checked non-null).
        unsafe { tv.write(timeval) };
    }
    if !tz.is_null() {
        // SAFETY: a non-null tz points to a writable struct timezone (two ints): UTC.
        unsafe { tz.cast::<[c_int; 2]>().write([0, 0]) };
    }
    0
}

/// Interposes libc's `time`.
///
/// # Safety
/// As for time(2): `out` must be null or valid for writing a `time_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn time(out: *mut libc::time_t) -> libc::time_t {
    let now = realtime().tv_sec;
    if !out.is_null() {
        // SAFETY: the caller passes a writable time_t (checked non-null).
        unsafe { out.write(now) };
    }
    now
}
