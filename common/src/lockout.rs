//! Failed-code counting, per (user, remote host) and per user.
//!
//! `max_failures` failures from one host lock the user out from that host only, so a stranger
//! hammering from one address cannot lock the owner out from the LAN; `max_failures_user`
//! failures from all hosts together lock the user out everywhere, which bounds an attacker who
//! rotates addresses. Local logins (no PAM_RHOST) count as the host "".
//!
//! Only failures count: a success clears the user-wide count and that host's entry, so nobody
//! can keep a user locked by logging in as them correctly.

use crate::config::Lockout as Policy;
use crate::toml_subset::{self, Fields, Writer};

/// At most this many hosts are tracked per user; beyond it the least relevant entry goes (the
/// user-wide count still sees every failure).
const MAX_HOSTS: usize = 32;

/// Records store times as TOML integers, which are signed 64-bit; a lockout end beyond this
/// (a huge `duration_secs`) is stored as this, which is forever all the same.
const FOREVER: u64 = i64::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostLockout {
    pub host: String,
    pub failures: Vec<u64>,
    pub locked_until: u64,
}

/// The `[lockout]` table of a record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockoutState {
    /// Times of recent failed codes from any host, oldest first.
    pub failures: Vec<u64>,
    /// Locked everywhere while `now < locked_until`.
    pub locked_until: u64,
    pub hosts: Vec<HostLockout>,
}

/// What a failure locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Host,
    User,
}

impl HostLockout {
    fn read(mut f: Fields) -> Result<HostLockout, toml_subset::Error> {
        let host = f.string("host")?.ok_or_else(|| f.missing("host"))?;
        let failures = f.u64s("failures")?.unwrap_or_default();
        let locked_until = f.u64("locked_until")?.unwrap_or(0);
        f.finish()?;
        Ok(HostLockout {
            host,
            failures,
            locked_until,
        })
    }
}

impl LockoutState {
    pub(crate) fn read(mut f: Fields) -> Result<LockoutState, toml_subset::Error> {
        let failures = f.u64s("failures")?.unwrap_or_default();
        let locked_until = f.u64("locked_until")?.unwrap_or(0);
        let hosts = f
            .tables("hosts")?
            .unwrap_or_default()
            .into_iter()
            .map(HostLockout::read)
            .collect::<Result<_, _>>()?;
        f.finish()?;
        Ok(LockoutState {
            failures,
            locked_until,
            hosts,
        })
    }

    /// `[lockout]` and a `[[lockout.hosts]]` per host.
    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.table(&["lockout"]);
        w.u64s("failures", &self.failures);
        w.u64("locked_until", self.locked_until);
        for host in &self.hosts {
            w.array_table(&["lockout", "hosts"]);
            w.string("host", &host.host);
            w.u64s("failures", &host.failures);
            w.u64("locked_until", host.locked_until);
        }
    }

    /// When the lockout that applies to a login from `host` ends, if one does.
    pub fn locked_until(&self, host: &str, now: u64) -> Option<u64> {
        let host_until = self
            .hosts
            .iter()
            .find(|h| h.host == host)
            .map_or(0, |h| h.locked_until);
        let until = self.locked_until.max(host_until);
        (now < until).then_some(until)
    }

    /// Locked everywhere (not just from some host).
    pub fn is_locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    /// Hosts from which the user is locked out at `now`.
    pub fn locked_hosts(&self, now: u64) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|h| now < h.locked_until)
            .map(|h| h.host.clone())
            .collect()
    }

    /// Records a failed code from `host` at `now`; says what it locked, if anything.
    pub fn record_failure(&mut self, host: &str, now: u64, policy: &Policy) -> Option<Locked> {
        let window_start = now.saturating_sub(policy.window_secs);
        let entry = self.host_entry(host, now);
        let host_locked =
            count_failure(&mut entry.failures, window_start, now, policy.max_failures);
        if host_locked {
            entry.locked_until = lock_end(now, policy);
        }
        if count_failure(
            &mut self.failures,
            window_start,
            now,
            policy.max_failures_user,
        ) {
            self.locked_until = lock_end(now, policy);
            return Some(Locked::User);
        }
        host_locked.then_some(Locked::Host)
    }

    /// After a success from `host`.
    pub fn record_success(&mut self, host: &str) {
        self.failures.clear();
        self.hosts.retain(|h| h.host != host);
    }

    /// Failures inside the window at `now`, from all hosts.
    pub fn recent_failures(&self, now: u64, policy: &Policy) -> usize {
        let window_start = now.saturating_sub(policy.window_secs);
        self.failures.iter().filter(|&&t| t > window_start).count()
    }

    /// How many more failed codes from `host` (counted inside the window at `now`) lock the
    /// user out, from that host or everywhere, whichever comes first. Shown to the user when
    /// few are left (pam_twostep).
    pub fn attempts_left(&self, host: &str, now: u64, policy: &Policy) -> u32 {
        let window_start = now.saturating_sub(policy.window_secs);
        let in_window = |times: &[u64]| {
            times
                .iter()
                .filter(|&&t| t > window_start && t <= now)
                .count()
        };
        let host_failures = self
            .hosts
            .iter()
            .find(|h| h.host == host)
            .map_or(0, |h| in_window(&h.failures));
        let left =
            |max: u32, used: usize| max.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX));
        left(policy.max_failures, host_failures)
            .min(left(policy.max_failures_user, in_window(&self.failures)))
    }

    /// Ends every lockout and forgets every failure (`twostep unlock`).
    pub fn clear(&mut self) {
        *self = LockoutState::default();
    }

    fn host_entry(&mut self, host: &str, now: u64) -> &mut HostLockout {
        if let Some(i) = self.hosts.iter().position(|h| h.host == host) {
            return &mut self.hosts[i];
        }
        if self.hosts.len() >= MAX_HOSTS {
            // Drop the entry that matters least: unlocked before locked, then the oldest.
            let victim = self
                .hosts
                .iter()
                .enumerate()
                .min_by_key(|(_, h)| {
                    (
                        now < h.locked_until,
                        h.failures.last().copied().unwrap_or(0),
                    )
                })
                .map(|(i, _)| i)
                .unwrap_or(0);
            self.hosts.remove(victim);
        }
        self.hosts.push(HostLockout {
            host: host.to_string(),
            ..HostLockout::default()
        });
        let last = self.hosts.len() - 1;
        &mut self.hosts[last]
    }
}

fn lock_end(now: u64, policy: &Policy) -> u64 {
    now.saturating_add(policy.duration_secs).min(FOREVER)
}

/// Adds `now` to `failures` (dropping those outside the window); true when that makes `max`,
/// in which case the list is emptied for the next round.
fn count_failure(failures: &mut Vec<u64>, window_start: u64, now: u64, max: u32) -> bool {
    failures.retain(|&t| t > window_start && t <= now);
    failures.push(now);
    if failures.len() >= max as usize {
        failures.clear();
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            max_failures: 3,
            max_failures_user: 5,
            window_secs: 60,
            duration_secs: 300,
        }
    }

    #[test]
    fn locks_one_host_after_max_failures_and_releases() {
        let mut s = LockoutState::default();
        assert_eq!(s.record_failure("203.0.113.9", 1000, &policy()), None);
        assert_eq!(s.record_failure("203.0.113.9", 1010, &policy()), None);
        assert_eq!(
            s.record_failure("203.0.113.9", 1020, &policy()),
            Some(Locked::Host)
        );
        assert_eq!(s.locked_until("203.0.113.9", 1020), Some(1320));
        assert_eq!(s.locked_until("203.0.113.9", 1319), Some(1320));
        assert_eq!(s.locked_until("203.0.113.9", 1320), None);
        // The owner on the LAN is not locked out.
        assert_eq!(s.locked_until("192.168.1.10", 1020), None);
        assert!(!s.is_locked(1020));
        assert_eq!(s.locked_hosts(1020), vec!["203.0.113.9".to_string()]);
    }

    #[test]
    fn attempts_left_counts_the_nearer_limit_inside_the_window() {
        let mut s = LockoutState::default();
        assert_eq!(s.attempts_left("h", 1000, &policy()), 3);
        s.record_failure("h", 1000, &policy());
        assert_eq!(s.attempts_left("h", 1001, &policy()), 2);
        // Another host: its own three, but only four left user-wide.
        for t in [1002, 1003] {
            s.record_failure("g", t, &policy());
        }
        assert_eq!(s.attempts_left("h", 1004, &policy()), 2);
        assert_eq!(s.attempts_left("new", 1004, &policy()), 2);
        // Outside the window nothing counts.
        assert_eq!(s.attempts_left("h", 1100, &policy()), 3);
    }

    #[test]
    fn failures_from_many_hosts_lock_the_user_everywhere() {
        let mut s = LockoutState::default();
        for (i, host) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(s.record_failure(host, 1000 + i as u64, &policy()), None);
        }
        assert_eq!(s.record_failure("e", 1004, &policy()), Some(Locked::User));
        assert_eq!(s.locked_until("192.168.1.10", 1005), Some(1304));
        assert!(s.is_locked(1005));
    }

    #[test]
    fn failures_outside_the_window_expire() {
        let mut s = LockoutState::default();
        s.record_failure("", 1000, &policy());
        s.record_failure("", 1020, &policy());
        assert_eq!(
            s.record_failure("", 1070, &policy()),
            None,
            "the one at 1000 expired"
        );
        assert_eq!(s.recent_failures(1070, &policy()), 2);
        assert_eq!(s.record_failure("", 1071, &policy()), Some(Locked::Host));
    }

    #[test]
    fn success_clears_its_host_and_the_user_count_only() {
        let mut s = LockoutState::default();
        for t in 0..3 {
            s.record_failure("stranger", 1000 + t, &policy());
        }
        s.record_failure("lan", 1003, &policy());
        s.record_success("lan");
        assert_eq!(s.recent_failures(1004, &policy()), 0);
        assert_eq!(s.locked_until("stranger", 1004), Some(1302));
        s.clear();
        assert_eq!(s.locked_until("stranger", 1004), None);
        assert!(s.hosts.is_empty());
    }

    #[test]
    fn endless_lockouts_fit_in_a_record() {
        let mut s = LockoutState::default();
        let p = Policy {
            max_failures: 1,
            duration_secs: i64::MAX as u64,
            ..policy()
        };
        assert_eq!(s.record_failure("h", 1000, &p), Some(Locked::Host));
        assert_eq!(s.hosts[0].locked_until, FOREVER);
        assert_eq!(s.locked_until("h", FOREVER - 1), Some(FOREVER));
        let mut text = String::new();
        let mut w = Writer::new(&mut text);
        s.write(&mut w);
        w.finish().unwrap();
    }

    #[test]
    fn host_table_is_bounded() {
        let mut s = LockoutState::default();
        let p = Policy {
            max_failures_user: 10_000,
            ..policy()
        };
        for i in 0..100u64 {
            s.record_failure(&format!("10.0.0.{i}"), 1000 + i, &p);
        }
        assert_eq!(s.hosts.len(), MAX_HOSTS);
    }
}
