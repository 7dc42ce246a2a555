//! The fake wall clock, interposed over libc's for the whole process: pam_twostep reads the
//! time through `clock_gettime`, pam_google_authenticator and pam_oath through `time`.
//!
//! Once [`start_at`] was called (pam-drive's `--time`; the bench before every login, with a
//! fresh time step), CLOCK_REALTIME and CLOCK_REALTIME_COARSE read `EPOCH + time since
//! start_at()` (elapsed time taken from CLOCK_MONOTONIC, so the fake clock advances like a real
//! one and time-based loops in a module still end); every other clock, and the real time
//! before `start_at`, comes from the kernel through a raw syscall (libc's own function would
//! call back into this one).
//!
//! The interposers must be defined in the executable itself, not in this rlib: the linker takes
//! an archive member only for a symbol someone is missing, and nobody misses `clock_gettime`
//! (libc has it). So an executable invokes [`export_fake_clock!`](crate::export_fake_clock)
//! once, which defines `clock_gettime`, `gettimeofday` and `time` there as thin calls into this
//! module, and exports them from its dynamic symbol table (`-Wl,--dynamic-list`, see pam-drive's
//! and the bench's `build.rs`) so that the dynamic linker binds dlopen()ed PAM modules to them.
//! Without the macro nothing is interposed and [`start_at`] has no effect.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI64, Ordering};

/// The fake epoch in seconds; `NONE` when the clock is not faked.
static FAKE_EPOCH: AtomicI64 = AtomicI64::new(NONE);
/// CLOCK_MONOTONIC in nanoseconds when the fake clock started.
static START_MONO_NS: AtomicI64 = AtomicI64::new(0);
const NONE: i64 = i64::MIN;
const NS: i64 = 1_000_000_000;

/// Starts the fake wall clock at `epoch` seconds.
pub fn start_at(epoch: i64) {
    let start = kernel_time(libc::CLOCK_MONOTONIC);
    START_MONO_NS.store(start.tv_sec * NS + start.tv_nsec, Ordering::SeqCst);
    FAKE_EPOCH.store(epoch, Ordering::SeqCst);
}

/// The fake wall clock, once [`start_at`] was called. Seconds and nanoseconds are kept apart so
/// that epochs far in the future (RFC 6238 tests 20000000000) do not overflow.
fn fake_now() -> Option<libc::timespec> {
    let epoch = FAKE_EPOCH.load(Ordering::SeqCst);
    if epoch == NONE {
        return None;
    }
    let mono = kernel_time(libc::CLOCK_MONOTONIC);
    let elapsed = (mono.tv_sec * NS + mono.tv_nsec) - START_MONO_NS.load(Ordering::SeqCst);
    Some(libc::timespec {
        tv_sec: epoch.saturating_add(elapsed.div_euclid(NS)),
        tv_nsec: elapsed.rem_euclid(NS),
    })
}

/// Reads a clock from the kernel, bypassing libc (and so this module's interposers).
fn kernel_time(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clock, &mut ts) };
    ts
}

/// The wall clock as libc's clock_gettime(CLOCK_REALTIME) would give it.
fn realtime() -> libc::timespec {
    fake_now().unwrap_or_else(|| kernel_time(libc::CLOCK_REALTIME))
}

/// Defines the fake clock's interposers of libc's `clock_gettime`, `gettimeofday` and `time` in
/// the executable that invokes it (once, at its crate root). See the [module](self).
#[macro_export]
macro_rules! export_fake_clock {
    () => {
        /// The interposers of [`twostep_testkit::fake_clock`], defined in this executable.
        mod fake_clock_exports {
            use ::std::ffi::{c_int, c_void};
            use $crate::__libc as libc;
            use $crate::fake_clock as imp;

            /// Interposes libc's `clock_gettime`.
            ///
            /// # Safety
            /// As for clock_gettime(2): `tp` must be null or valid for writing a `timespec`.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn clock_gettime(
                clock: libc::clockid_t,
                tp: *mut libc::timespec,
            ) -> c_int {
                // SAFETY: the caller's contract is clock_gettime's, passed on unchanged.
                unsafe { imp::clock_gettime(clock, tp) }
            }

            /// Interposes libc's `gettimeofday`.
            ///
            /// # Safety
            /// As for gettimeofday(2): `tv` and `tz` must each be null or valid for writing.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn gettimeofday(
                tv: *mut libc::timeval,
                tz: *mut c_void,
            ) -> c_int {
                // SAFETY: the caller's contract is gettimeofday's, passed on unchanged.
                unsafe { imp::gettimeofday(tv, tz) }
            }

            /// Interposes libc's `time`.
            ///
            /// # Safety
            /// As for time(2): `out` must be null or valid for writing a `time_t`.
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn time(out: *mut libc::time_t) -> libc::time_t {
                // SAFETY: the caller's contract is time's, passed on unchanged.
                unsafe { imp::time(out) }
            }
        }
    };
}

/// libc's `clock_gettime` with the fake wall clock (what [`export_fake_clock!`] exports).
///
/// # Safety
/// As for clock_gettime(2): `tp` must be null or valid for writing a `timespec`.
pub unsafe fn clock_gettime(clock: libc::clockid_t, tp: *mut libc::timespec) -> c_int {
    let wall = matches!(clock, libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE);
    let fake = if wall && !tp.is_null() {
        fake_now()
    } else {
        None
    };
    if let Some(now) = fake {
        // SAFETY: the caller passes a writable timespec (checked non-null).
        unsafe { tp.write(now) };
        return 0;
    }
    // SAFETY: forwards the caller's arguments unchanged; the kernel validates them and
    // sets errno on failure, as libc's clock_gettime does.
    unsafe { libc::syscall(libc::SYS_clock_gettime, clock, tp) as c_int }
}

/// libc's `gettimeofday` with the fake wall clock (what [`export_fake_clock!`] exports).
///
/// # Safety
/// As for gettimeofday(2): `tv` and `tz` must each be null or valid for writing.
pub unsafe fn gettimeofday(tv: *mut libc::timeval, tz: *mut c_void) -> c_int {
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

/// libc's `time` with the fake wall clock (what [`export_fake_clock!`] exports).
///
/// # Safety
/// As for time(2): `out` must be null or valid for writing a `time_t`.
pub unsafe fn time(out: *mut libc::time_t) -> libc::time_t {
    let now = realtime().tv_sec;
    if !out.is_null() {
        // SAFETY: the caller passes a writable time_t (checked non-null).
        unsafe { out.write(now) };
    }
    now
}
