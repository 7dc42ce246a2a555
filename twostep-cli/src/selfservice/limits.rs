//! How much one local user can ask of the service: connections at once (so that a flood, or
//! clients that connect and send nothing, cannot hold it for everybody), requests and password
//! failures per minute (so that the service is no faster a password oracle than a login).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Connections served at once, all users together.
pub const MAX_CONNECTIONS: usize = 16;
/// Connections served at once for one uid: a flood by one user leaves room for the others.
pub const MAX_CONNECTIONS_PER_UID: usize = 4;
pub const REQUESTS_PER_MINUTE: usize = 30;
pub const PASSWORD_FAILURES_PER_MINUTE: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Counts {
    active: usize,
    active_by_uid: HashMap<u32, usize>,
    requests: HashMap<u32, VecDeque<Instant>>,
    passwords: HashMap<u32, VecDeque<Instant>>,
    last_activity: Option<Instant>,
}

/// Shared by the accepting thread and the connection threads.
#[derive(Debug, Clone, Default)]
pub struct Limits(Arc<Mutex<Counts>>);

/// A connection being served; gives its place back when dropped.
#[derive(Debug)]
pub struct Admitted {
    limits: Limits,
    uid: u32,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.limits.counts();
        counts.active = counts.active.saturating_sub(1);
        if let Some(n) = counts.active_by_uid.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.active_by_uid.remove(&self.uid);
            }
        }
        counts.last_activity = Some(Instant::now());
    }
}

impl Limits {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // A panicking connection thread must not stop the service: the counts stay usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for a new connection of `uid`, or `None` when the service or this uid is busy.
    pub fn admit(&self, uid: u32) -> Option<Admitted> {
        let mut counts = self.counts();
        counts.last_activity = Some(Instant::now());
        let mine = counts.active_by_uid.get(&uid).copied().unwrap_or(0);
        if counts.active >= MAX_CONNECTIONS || mine >= MAX_CONNECTIONS_PER_UID {
            return None;
        }
        counts.active += 1;
        counts.active_by_uid.insert(uid, mine + 1);
        Some(Admitted {
            limits: self.clone(),
            uid,
        })
    }

    /// Counts a request of `uid`; false when it is over the per-minute limit.
    pub fn allow_request(&self, uid: u32, now: Instant) -> bool {
        let mut counts = self.counts();
        within(
            counts.requests.entry(uid).or_default(),
            REQUESTS_PER_MINUTE,
            now,
        )
    }

    /// Whether `uid` may have a password checked: fewer than the limit of wrong passwords in
    /// the last minute (right ones do not count: a user making several changes is not
    /// guessing).
    pub fn allow_password_check(&self, uid: u32, now: Instant) -> bool {
        let mut counts = self.counts();
        let failures = counts.passwords.entry(uid).or_default();
        forget_old(failures, now);
        failures.len() < PASSWORD_FAILURES_PER_MINUTE
    }

    /// Counts a wrong password of `uid`.
    pub fn count_password_failure(&self, uid: u32, now: Instant) {
        let mut counts = self.counts();
        counts.passwords.entry(uid).or_default().push_back(now);
    }

    /// How long nothing has been connected (for `--idle-exit`); `None` while serving.
    pub fn idle_for(&self, now: Instant, started: Instant) -> Option<Duration> {
        let counts = self.counts();
        if counts.active > 0 {
            return None;
        }
        Some(now.saturating_duration_since(counts.last_activity.unwrap_or(started)))
    }
}

/// Sliding window: forgets what is older than a minute, then counts `now` if there is room.
fn within(times: &mut VecDeque<Instant>, limit: usize, now: Instant) -> bool {
    forget_old(times, now);
    if times.len() >= limit {
        return false;
    }
    times.push_back(now);
    true
}

fn forget_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_bounded_per_uid_and_in_all() {
        let limits = Limits::default();
        let mine: Vec<_> = (0..MAX_CONNECTIONS_PER_UID)
            .map(|_| limits.admit(1000).expect("room"))
            .collect();
        assert!(
            limits.admit(1000).is_none(),
            "a fifth connection of one uid"
        );
        let others: Vec<_> = (0..MAX_CONNECTIONS - MAX_CONNECTIONS_PER_UID)
            .map(|i| limits.admit(2000 + i as u32 / 4).expect("room for others"))
            .collect();
        assert!(limits.admit(5000).is_none(), "the service is full");
        drop(mine);
        assert!(limits.admit(1000).is_some(), "places come back");
        drop(others);
    }

    #[test]
    fn per_minute_limits_slide() {
        let limits = Limits::default();
        let t0 = Instant::now();
        for _ in 0..PASSWORD_FAILURES_PER_MINUTE {
            assert!(
                limits.allow_password_check(7, t0),
                "right passwords do not count"
            );
        }
        for _ in 0..PASSWORD_FAILURES_PER_MINUTE {
            assert!(limits.allow_password_check(7, t0));
            limits.count_password_failure(7, t0);
        }
        assert!(!limits.allow_password_check(7, t0 + Duration::from_secs(59)));
        assert!(limits.allow_password_check(8, t0), "per uid");
        assert!(limits.allow_password_check(7, t0 + Duration::from_secs(61)));
        for _ in 0..REQUESTS_PER_MINUTE {
            assert!(limits.allow_request(7, t0));
        }
        assert!(!limits.allow_request(7, t0));
    }

    #[test]
    fn idle_time_counts_from_the_last_connection() {
        let limits = Limits::default();
        let t0 = Instant::now();
        let a = limits.admit(1).unwrap();
        assert_eq!(limits.idle_for(Instant::now(), t0), None);
        drop(a);
        assert!(limits.idle_for(Instant::now(), t0).is_some());
    }
}
