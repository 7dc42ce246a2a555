//! The gate: services that cannot prompt for a code (Samba runs only the PAM account stack,
//! with no conversation) let a user in from an address only while a two-step login of that
//! user from the same address is recent. A successful code opens the gate for its address
//! ([`open`]); the account mode checks it ([`find`]). Docs: docs/smb.md.

use crate::config;
use crate::record::{Gate, Record};

/// Addresses remembered per user; the oldest is dropped first.
pub const MAX_GATES: usize = 32;

/// Opens (or re-opens) the gate of `host` after a two-step login through `service`. Local
/// logins open nothing: without an address, "the same address" means nothing.
pub fn open(record: &mut Record, config: &config::Gate, host: &str, service: &str, now: u64) {
    if host.is_empty() || !config.opened_by(service) {
        return;
    }
    record.gates.retain(|g| g.host != host);
    while record.gates.len() >= MAX_GATES {
        record.gates.remove(0);
    }
    record.gates.push(Gate {
        host: host.to_string(),
        time: now,
        service: service.to_string(),
    });
}

/// When `gate` closes by itself.
pub fn expires(gate: &Gate, config: &config::Gate) -> u64 {
    gate.time.saturating_add(config.window_secs)
}

fn is_open(gate: &Gate, config: &config::Gate, now: u64) -> bool {
    config.window_secs > 0 && gate.time <= now && now < expires(gate, config)
}

/// The open gate of `host`, if any.
pub fn find<'r>(
    record: &'r Record,
    config: &config::Gate,
    host: &str,
    now: u64,
) -> Option<&'r Gate> {
    if host.is_empty() {
        return None;
    }
    record
        .gates
        .iter()
        .find(|g| g.host == host && is_open(g, config, now))
}

/// Every open gate of the record, oldest first.
pub fn open_gates<'r>(record: &'r Record, config: &config::Gate, now: u64) -> Vec<&'r Gate> {
    record
        .gates
        .iter()
        .filter(|g| is_open(g, config, now))
        .collect()
}

/// Closes the gate of `host`, or every gate; how many were closed (expired ones included).
pub fn close(record: &mut Record, host: Option<&str>) -> usize {
    let before = record.gates.len();
    match host {
        Some(host) => record.gates.retain(|g| g.host != host),
        None => record.gates.clear(),
    }
    before - record.gates.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emergency::CodeSet;
    use crate::record::Method;

    fn record() -> Record {
        let (emergency, _) = CodeSet::generate(1).unwrap();
        Record {
            version: crate::record::RECORD_VERSION,
            user: "alice".into(),
            method: Method::Email,
            created: 0,
            email: Some("a@example.com".into()),
            totp: None,
            emergency,
            lockout: Default::default(),
            last_login: None,
            grace: Vec::new(),
            gates: Vec::new(),
            email_code: None,
        }
    }

    fn config(window_secs: u64, opened_by: &[&str]) -> config::Gate {
        config::Gate {
            window_secs,
            opened_by: opened_by.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_gate_is_open_for_its_address_during_the_window_only() {
        let c = config(100, &[]);
        let mut r = record();
        open(&mut r, &c, "192.0.2.1", "sshd", 1000);
        assert!(find(&r, &c, "192.0.2.1", 1000).is_some());
        assert!(find(&r, &c, "192.0.2.1", 1099).is_some());
        assert!(find(&r, &c, "192.0.2.1", 1100).is_none());
        assert!(find(&r, &c, "192.0.2.2", 1000).is_none());
        // Before it was opened (a clock set back): not open.
        assert!(find(&r, &c, "192.0.2.1", 999).is_none());
        assert!(find(&r, &config(0, &[]), "192.0.2.1", 1000).is_none());
    }

    #[test]
    fn local_logins_and_other_services_open_nothing() {
        let mut r = record();
        open(&mut r, &config(100, &[]), "", "login", 1000);
        open(
            &mut r,
            &config(100, &["cockpit"]),
            "192.0.2.1",
            "sshd",
            1000,
        );
        open(&mut r, &config(0, &[]), "192.0.2.1", "sshd", 1000);
        assert!(r.gates.is_empty());
        open(
            &mut r,
            &config(100, &["cockpit"]),
            "192.0.2.1",
            "cockpit",
            1000,
        );
        assert_eq!(r.gates.len(), 1);
        assert!(find(&r, &config(100, &[]), "", 1000).is_none());
    }

    #[test]
    fn reopening_moves_the_gate_and_the_oldest_is_dropped() {
        let c = config(10_000, &[]);
        let mut r = record();
        for i in 0..MAX_GATES + 5 {
            open(&mut r, &c, &format!("192.0.2.{i}"), "sshd", 1000 + i as u64);
        }
        assert_eq!(r.gates.len(), MAX_GATES);
        assert_eq!(r.gates[0].host, "192.0.2.5");
        open(&mut r, &c, "192.0.2.5", "cockpit", 5000);
        assert_eq!(r.gates.len(), MAX_GATES);
        assert_eq!(r.gates.last().unwrap().service, "cockpit");
        assert_eq!(r.gates.iter().filter(|g| g.host == "192.0.2.5").count(), 1);
        assert_eq!(open_gates(&r, &c, 5000).len(), MAX_GATES);
    }

    #[test]
    fn closing_one_or_all() {
        let c = config(100, &[]);
        let mut r = record();
        open(&mut r, &c, "192.0.2.1", "sshd", 1000);
        open(&mut r, &c, "192.0.2.2", "sshd", 1000);
        assert_eq!(close(&mut r, Some("192.0.2.3")), 0);
        assert_eq!(close(&mut r, Some("192.0.2.1")), 1);
        assert!(find(&r, &c, "192.0.2.2", 1000).is_some());
        assert_eq!(close(&mut r, None), 1);
        assert!(r.gates.is_empty());
    }
}
