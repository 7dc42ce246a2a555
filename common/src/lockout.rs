//! Failed-code counting. Only failures count: a success clears the count, so nobody can keep a
//! user locked out by logging in as them correctly, and someone who only knows the user name
//! can lock the account for at most `duration_secs` at a time.

use serde::{Deserialize, Serialize};

use crate::config::Lockout as Policy;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LockoutState {
    /// Times of recent failed codes, oldest first, at most `max_failures` of them.
    #[serde(default)]
    pub failures: Vec<u64>,
    /// Locked while `now < locked_until`.
    #[serde(default)]
    pub locked_until: u64,
}

impl LockoutState {
    pub fn is_locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    /// Records a failed code at `now`; true when this failure locks the user.
    pub fn record_failure(&mut self, now: u64, policy: &Policy) -> bool {
        let window_start = now.saturating_sub(policy.window_secs);
        self.failures.retain(|&t| t > window_start && t <= now);
        self.failures.push(now);
        if self.failures.len() >= policy.max_failures as usize {
            self.failures.clear();
            self.locked_until = now.saturating_add(policy.duration_secs);
            return true;
        }
        false
    }

    /// Failures still inside the window at `now`.
    pub fn recent_failures(&self, now: u64, policy: &Policy) -> usize {
        let window_start = now.saturating_sub(policy.window_secs);
        self.failures.iter().filter(|&&t| t > window_start).count()
    }

    pub fn clear(&mut self) {
        self.failures.clear();
        self.locked_until = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_failures: 3,
            window_secs: 60,
            duration_secs: 300,
        }
    }

    #[test]
    fn locks_after_max_failures_in_window_and_releases() {
        let mut s = LockoutState::default();
        assert!(!s.record_failure(1000, &policy()));
        assert!(!s.record_failure(1010, &policy()));
        assert!(s.record_failure(1020, &policy()));
        assert!(s.is_locked(1020));
        assert!(s.is_locked(1319));
        assert!(!s.is_locked(1320));
    }

    #[test]
    fn failures_outside_the_window_expire() {
        let mut s = LockoutState::default();
        s.record_failure(1000, &policy());
        s.record_failure(1020, &policy());
        assert!(
            !s.record_failure(1070, &policy()),
            "the one at 1000 has expired"
        );
        assert_eq!(s.recent_failures(1070, &policy()), 2);
        assert!(s.record_failure(1071, &policy()));
    }

    #[test]
    fn clear_unlocks() {
        let mut s = LockoutState::default();
        for t in 0..3 {
            s.record_failure(1000 + t, &policy());
        }
        s.clear();
        assert!(!s.is_locked(1003));
        assert_eq!(s.recent_failures(1003, &policy()), 0);
    }
}
