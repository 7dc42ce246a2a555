//! Time as the core sees it: injected, so tests are deterministic.

use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The real clock. A clock set before 1970 reads as 0, which no TOTP code matches.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that reads what the test set.
#[derive(Debug, Default)]
pub struct FixedClock(pub std::cell::Cell<u64>);

impl FixedClock {
    pub fn at(now: u64) -> Self {
        FixedClock(std::cell::Cell::new(now))
    }

    pub fn set(&self, now: u64) {
        self.0.set(now);
    }

    pub fn advance(&self, secs: u64) {
        self.0.set(self.0.get() + secs);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.get()
    }
}
