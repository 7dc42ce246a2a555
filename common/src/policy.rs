//! Who must use two-step login (`[policy]` enforce/exempt lists) and when a login may skip
//! the code (trusted networks, local logins, grace period).

use std::ffi::CString;

use nix::unistd::{Group, User};

use crate::config::Policy;
use crate::error::Error;
use crate::network;
use crate::record::Record;
use crate::username::Canonical;

/// Users and groups as the system's name services see them; injected for tests.
pub trait Directory {
    /// Names of the user's primary and supplementary groups.
    fn groups_of(&self, user: &str) -> Result<Vec<String>, Error>;
    /// Users whose primary or supplementary group is `group`.
    fn members_of(&self, group: &str) -> Result<Vec<String>, Error>;
}

/// Why the code is not asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    TrustedNetwork,
    TrustedLocal,
    Grace,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::TrustedNetwork => "trusted-network",
            Skip::TrustedLocal => "trusted-local",
            Skip::Grace => "grace-period",
        }
    }
}

/// Whether the policy makes `user` use two-step login. Exemptions win over enforcement.
pub fn is_enforced(policy: &Policy, user: &str, dir: &dyn Directory) -> Result<bool, Error> {
    if policy.exempt_users.iter().any(|u| u == user) {
        return Ok(false);
    }
    let by_name = policy.enforce_users.iter().any(|u| u == user);
    if policy.enforce_groups.is_empty() && policy.exempt_groups.is_empty() {
        return Ok(by_name);
    }
    let groups = dir.groups_of(user)?;
    let in_any = |list: &[String]| groups.iter().any(|g| list.contains(g));
    if in_any(&policy.exempt_groups) {
        return Ok(false);
    }
    Ok(by_name || in_any(&policy.enforce_groups))
}

/// The name a login goes on with, from the typed name and what the directory said about it
/// ([`username::canonical`](crate::username::canonical)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginName {
    /// Records and policy use `name`, the directory's canonical name; `aliased`: the typed name
    /// was another spelling.
    Known { name: String, aliased: bool },
    /// Not in the directory and no record under the typed name: not enrolled. Never exempt
    /// (no group membership can be shown), and `enforced` when `enforce_users` lists the typed
    /// name or any `enforce_groups` exist (membership cannot be ruled out either), so an
    /// unknown name never takes a weaker path than a known user would.
    Unknown { enforced: bool },
    /// The typed and canonical names differ in a way the policy cannot resolve (`reason`, a
    /// log token); `canonical` is empty for an unknown user.
    Refused {
        reason: &'static str,
        canonical: String,
    },
}

/// Decides which name a login uses. `has_record(name)` says whether a record exists under
/// `name`. Refused: a record under the typed alias (whether or not the canonical name has one:
/// which of the two would be the user's?), `enforce_users`/`exempt_users` naming the alias
/// rather than the canonical name, and a record under a name the directory does not know (it
/// may be a directory that failed quietly; following `unenrolled` would skip the record).
pub fn login_name(
    policy: &Policy,
    typed: &str,
    canonical: Canonical,
    has_record: &dyn Fn(&str) -> Result<bool, Error>,
) -> Result<LoginName, Error> {
    let refused = |reason, canonical: &str| LoginName::Refused {
        reason,
        canonical: canonical.to_string(),
    };
    let name = match canonical {
        Canonical::Unknown => {
            if has_record(typed)? {
                return Ok(refused("record-for-unknown-user", ""));
            }
            let enforced = policy.enforce_users.iter().any(|u| u == typed)
                || !policy.enforce_groups.is_empty();
            return Ok(LoginName::Unknown { enforced });
        }
        Canonical::Known {
            aliased: false,
            name,
        } => name,
        Canonical::Known {
            aliased: true,
            name,
        } => {
            if has_record(typed)? {
                return Ok(refused("record-under-alias", &name));
            }
            let listed = |list: &[String]| list.iter().any(|u| u == typed);
            if listed(&policy.enforce_users) {
                return Ok(refused("alias-in-enforce-users", &name));
            }
            if listed(&policy.exempt_users) {
                return Ok(refused("alias-in-exempt-users", &name));
            }
            return Ok(LoginName::Known {
                name,
                aliased: true,
            });
        }
    };
    Ok(LoginName::Known {
        name,
        aliased: false,
    })
}

/// Every user the policy enforces, sorted (for `twostep status`).
pub fn enforced_users(policy: &Policy, dir: &dyn Directory) -> Result<Vec<String>, Error> {
    let mut candidates = policy.enforce_users.clone();
    for group in &policy.enforce_groups {
        candidates.extend(dir.members_of(group)?);
    }
    candidates.sort();
    candidates.dedup();
    let mut enforced = Vec::new();
    for user in candidates {
        if is_enforced(policy, &user, dir)? {
            enforced.push(user);
        }
    }
    Ok(enforced)
}

/// A skip that does not depend on the record: trusted networks and local logins.
pub fn network_skip(policy: &Policy, rhost: &str) -> Option<Skip> {
    if rhost.is_empty() {
        return policy.trust_local.then_some(Skip::TrustedLocal);
    }
    let addr = network::rhost_addr(rhost)?;
    policy
        .trusted_networks
        .iter()
        .any(|n| n.contains(addr))
        .then_some(Skip::TrustedNetwork)
}

/// Whether `rhost` had a successful code within the grace period. Never for local logins:
/// "the same host" means nothing without an address.
pub fn in_grace(policy: &Policy, record: &Record, rhost: &str, now: u64) -> bool {
    policy.grace_period > 0
        && !rhost.is_empty()
        && record.grace.iter().any(|g| {
            g.host == rhost && g.time <= now && now < g.time.saturating_add(policy.grace_period)
        })
}

/// The system's users and groups through NSS (files, LDAP, ...).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemDirectory;

impl Directory for SystemDirectory {
    fn groups_of(&self, user: &str) -> Result<Vec<String>, Error> {
        let lookup = |e| Error::Lookup(format!("cannot look up the groups of {user}: {e}"));
        let entry = User::from_name(user)
            .map_err(|e| lookup(e.desc()))?
            .ok_or_else(|| lookup("no such user"))?;
        let name = CString::new(user).map_err(|_| lookup("name contains NUL"))?;
        let gids = nix::unistd::getgrouplist(&name, entry.gid).map_err(|e| lookup(e.desc()))?;
        let mut names = Vec::with_capacity(gids.len());
        for gid in gids {
            if let Some(group) = Group::from_gid(gid).map_err(|e| lookup(e.desc()))? {
                names.push(group.name);
            }
        }
        Ok(names)
    }

    fn members_of(&self, group: &str) -> Result<Vec<String>, Error> {
        let Some(entry) = Group::from_name(group)
            .map_err(|e| Error::Lookup(format!("cannot look up group {group}: {}", e.desc())))?
        else {
            return Ok(Vec::new());
        };
        let mut members = entry.mem.clone();
        // The process-global getpwent cursor: the admin command only, never the module.
        members.extend(twostep_sys::passwd::users_with_primary_group(
            entry.gid.as_raw(),
        ));
        members.sort();
        members.dedup();
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::network::Network;
    use std::collections::HashMap;

    struct FakeDirectory(HashMap<&'static str, Vec<&'static str>>);

    impl Directory for FakeDirectory {
        fn groups_of(&self, user: &str) -> Result<Vec<String>, Error> {
            self.0
                .get(user)
                .map(|g| g.iter().map(|s| s.to_string()).collect())
                .ok_or_else(|| Error::Lookup("no such user".into()))
        }

        fn members_of(&self, group: &str) -> Result<Vec<String>, Error> {
            Ok(self
                .0
                .iter()
                .filter(|(_, groups)| groups.contains(&group))
                .map(|(user, _)| user.to_string())
                .collect())
        }
    }

    fn dir() -> FakeDirectory {
        FakeDirectory(HashMap::from([
            ("alice", vec!["alice", "admins"]),
            ("bob", vec!["bob", "users"]),
            ("backup", vec!["backup", "admins", "robots"]),
        ]))
    }

    fn policy() -> Policy {
        Policy {
            enforce_users: vec!["bob".into()],
            enforce_groups: vec!["admins".into()],
            exempt_groups: vec!["robots".into()],
            ..Policy::default()
        }
    }

    #[test]
    fn enforcement_by_name_and_group_with_exemptions() {
        let d = dir();
        assert!(is_enforced(&policy(), "alice", &d).unwrap());
        assert!(is_enforced(&policy(), "bob", &d).unwrap());
        assert!(
            !is_enforced(&policy(), "backup", &d).unwrap(),
            "exempt group wins"
        );
        let p = Policy {
            exempt_users: vec!["alice".into()],
            ..policy()
        };
        assert!(!is_enforced(&p, "alice", &d).unwrap());
        assert_eq!(enforced_users(&policy(), &d).unwrap(), vec!["alice", "bob"]);
    }

    #[test]
    fn lookups_only_when_groups_matter_and_failures_are_errors() {
        let d = dir();
        let by_name = Policy {
            enforce_users: vec!["ghost".into()],
            ..Policy::default()
        };
        assert!(is_enforced(&by_name, "ghost", &d).unwrap());
        assert!(is_enforced(&policy(), "ghost", &d).is_err());
        assert!(!is_enforced(&Policy::default(), "alice", &d).unwrap());
    }

    #[test]
    fn login_names_refuse_what_the_policy_cannot_resolve() {
        let alias = |name: &str| Canonical::Known {
            name: name.into(),
            aliased: true,
        };
        let p = Policy {
            enforce_users: vec!["bob".into(), "Carol".into()],
            exempt_users: vec!["Dave".into()],
            ..Policy::default()
        };
        let name = |policy: &Policy, typed: &str, canonical, records: &[&str]| {
            login_name(
                policy,
                typed,
                canonical,
                &|user| Ok(records.contains(&user)),
            )
            .unwrap()
        };
        assert_eq!(
            name(&p, "ALICE", alias("alice"), &["alice"]),
            LoginName::Known {
                name: "alice".into(),
                aliased: true
            }
        );
        for (typed, canonical, records, reason) in [
            ("ALICE", "alice", &["ALICE"][..], "record-under-alias"),
            (
                "ALICE",
                "alice",
                &["ALICE", "alice"][..],
                "record-under-alias",
            ),
            ("Carol", "carol", &[][..], "alias-in-enforce-users"),
            ("Dave", "dave", &[][..], "alias-in-exempt-users"),
        ] {
            assert_eq!(
                name(&p, typed, alias(canonical), records),
                LoginName::Refused {
                    reason,
                    canonical: canonical.into()
                },
                "{typed}"
            );
        }
        let plain = Canonical::Known {
            name: "bob".into(),
            aliased: false,
        };
        assert!(matches!(
            name(&p, "bob", plain, &["bob"]),
            LoginName::Known { aliased: false, .. }
        ));
        // Unknown names: never exempt, enforced whenever membership of a group could be.
        assert_eq!(
            name(&p, "ghost", Canonical::Unknown, &[]),
            LoginName::Unknown { enforced: false }
        );
        assert_eq!(
            name(&p, "bob", Canonical::Unknown, &[]),
            LoginName::Unknown { enforced: true }
        );
        let by_group = Policy {
            enforce_groups: vec!["staff".into()],
            exempt_users: vec!["ghost".into()],
            ..Policy::default()
        };
        assert_eq!(
            name(&by_group, "ghost", Canonical::Unknown, &[]),
            LoginName::Unknown { enforced: true }
        );
        assert_eq!(
            name(&p, "ghost", Canonical::Unknown, &["ghost"]),
            LoginName::Refused {
                reason: "record-for-unknown-user",
                canonical: String::new()
            }
        );
        let failing = |_: &str| -> Result<bool, Error> {
            Err(Error::io(
                "/var/lib/twostep/users",
                "open",
                nix::errno::Errno::EIO,
            ))
        };
        assert!(login_name(&p, "ALICE", alias("alice"), &failing).is_err());
    }

    #[test]
    fn network_skips() {
        let p = Policy {
            trusted_networks: vec![Network::parse("192.168.1.0/24").unwrap()],
            ..Policy::default()
        };
        assert_eq!(network_skip(&p, "192.168.1.9"), Some(Skip::TrustedNetwork));
        assert_eq!(
            network_skip(&p, "::ffff:192.168.1.9"),
            Some(Skip::TrustedNetwork)
        );
        assert_eq!(network_skip(&p, "192.168.2.9"), None);
        assert_eq!(network_skip(&p, "lan-host.example"), None);
        assert_eq!(network_skip(&p, ""), None);
        let local = Policy {
            trust_local: true,
            ..Policy::default()
        };
        assert_eq!(network_skip(&local, ""), Some(Skip::TrustedLocal));
    }

    #[test]
    fn system_directory_knows_root() {
        let groups = SystemDirectory.groups_of("root").unwrap();
        assert!(groups.contains(&"root".to_string()), "{groups:?}");
        let members = SystemDirectory.members_of("root").unwrap();
        assert!(members.contains(&"root".to_string()), "{members:?}");
        assert!(SystemDirectory.groups_of("no-such-user-xyz").is_err());
    }
}
