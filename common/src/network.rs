//! CIDR networks for `trusted_networks`, matched against PAM_RHOST.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

/// Why [`Network::parse`] refused a `trusted_networks` entry; each holds the text as written
/// (an address, never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkError {
    /// Not an IP address before the `/`.
    NotAnAddress(String),
    /// The prefix length is not a number from 0 to `max` (32 or 128).
    Prefix { text: String, max: u8 },
    /// Bits below the prefix are set; `masked` is what was probably meant.
    HostBits { text: String, masked: Network },
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::NotAnAddress(text) => write!(
                f,
                "{text:?} is not an IP network (like 192.168.1.0/24 or fd00::/8)"
            ),
            NetworkError::Prefix { text, max } => {
                write!(f, "{text:?}: the prefix length must be 0 to {max}")
            }
            NetworkError::HostBits { text, masked } => {
                write!(f, "{text:?} has host bits set; did you mean {masked}?")
            }
        }
    }
}

impl std::error::Error for NetworkError {}

impl Network {
    /// `192.168.1.0/24`, `fd00::/8`, or a single address.
    pub fn parse(text: &str) -> Result<Network, NetworkError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| NetworkError::NotAnAddress(text.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                    NetworkError::Prefix {
                        text: text.to_string(),
                        max,
                    }
                })?,
            };
        let network = Network { addr, prefix };
        if network.masked(addr) != addr {
            return Err(NetworkError::HostBits {
                text: text.to_string(),
                masked: Network {
                    addr: network.masked(addr),
                    prefix,
                },
            });
        }
        Ok(network)
    }

    fn masked(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.masked(addr) == self.addr
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The address in a PAM_RHOST value, if it is exactly one: `192.0.2.1`, `2001:db8::1`,
/// `[2001:db8::1]` (one pair of brackets, IPv6 only), and a `%zone` only on an IPv6 link-local
/// address (`fe80::1%eth0`, with or without brackets). IPv4-mapped IPv6 (`::ffff:192.0.2.1`) is
/// read as IPv4. Anything else (`10.1.2.3%evil`, `[[10.1.2.3]]`, trailing bytes) is not an
/// address: it is treated as a host name, and names are never resolved nor trusted.
pub fn rhost_addr(rhost: &str) -> Option<IpAddr> {
    let (text, bracketed) = match rhost.strip_prefix('[') {
        Some(inner) => (inner.strip_suffix(']')?, true),
        None => (rhost, false),
    };
    let (text, zone) = match text.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (text, None),
    };
    let addr: IpAddr = text.parse().ok()?;
    match addr {
        IpAddr::V4(_) if bracketed || zone.is_some() => None,
        IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
        IpAddr::V6(v6) => {
            if let Some(zone) = zone {
                if !(v6.is_unicast_link_local() && valid_zone(zone)) {
                    return None;
                }
            }
            Some(v6.to_ipv4_mapped().map_or(addr, IpAddr::V4))
        }
    }
}

/// An interface name or index, as the kernel allows them (at most 15 bytes).
fn valid_zone(zone: &str) -> bool {
    (1..=15).contains(&zone.len())
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The key under which lockout and grace remember a PAM_RHOST: the address in its one
/// canonical form when it is one (so `[2001:db8::1]` and `2001:db8::1` are one host), else the
/// text with control characters made `?` (so `10.1.2.3\x01` is never `10.1.2.3`), at most
/// `max` characters; "" for a local login.
pub fn host_key(rhost: &str, max: usize) -> String {
    match rhost_addr(rhost) {
        Some(addr) => addr.to_string(),
        None => rhost
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(max)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        rhost_addr(text).unwrap()
    }

    #[test]
    fn v4_v6_and_mapped_addresses_match() {
        let lan = Network::parse("192.168.1.0/24").unwrap();
        assert!(lan.contains(ip("192.168.1.77")));
        assert!(!lan.contains(ip("192.168.2.1")));
        assert!(lan.contains(ip("::ffff:192.168.1.5")));
        let ula = Network::parse("fd00::/8").unwrap();
        assert!(ula.contains(ip("fd12:3456::1")));
        assert!(ula.contains(ip("[fd00::1]")));
        assert!(!ula.contains(ip("fe80::1")));
        assert!(!ula.contains(ip("192.168.1.77")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Network::parse("10.0.0.1").unwrap().contains(ip("10.0.0.1")));
        assert!(!Network::parse("10.0.0.1").unwrap().contains(ip("10.0.0.2")));
    }

    #[test]
    fn names_and_junk_are_not_addresses() {
        for junk in [
            "nas.example.com",
            "",
            "1.2.3.4 ",
            "10.1.2.3%evil",
            "[[[10.1.2.3]]]",
            "[[fd00::1]]",
            "[10.1.2.3]",
            "[fd00::1",
            "fd00::1]",
            "10.1.2.3\u{1}",
            "10.1.2.3\n",
            "fd00::1%eth0",
            "fe80::1%",
            "fe80::1%eth0/x",
            "fe80::1%a%b",
            "fe80::1%sixteen-chars-xx",
        ] {
            assert_eq!(rhost_addr(junk), None, "{junk:?}");
        }
        assert_eq!(rhost_addr("[fe80::1%eth0]"), Some(ip("fe80::1")));
        assert_eq!(rhost_addr("fe80::1%2"), Some(ip("fe80::1")));
        assert_eq!(rhost_addr("[2001:db8::1]"), Some(ip("2001:db8::1")));
    }

    #[test]
    fn host_keys_are_canonical_addresses_or_marked_names() {
        assert_eq!(host_key("[2001:DB8::1]", 255), "2001:db8::1");
        assert_eq!(host_key("::ffff:192.0.2.1", 255), "192.0.2.1");
        assert_eq!(host_key("10.1.2.3\u{1}", 255), "10.1.2.3?");
        assert_eq!(host_key("10.1.2.3%evil", 255), "10.1.2.3%evil");
        assert_eq!(host_key("", 255), "");
        assert_eq!(host_key(&"a".repeat(1000), 255).len(), 255);
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "192.168.1.0/33",
            "192.168.1.1/24",
            "lan",
            "fd00::/129",
            "1.2.3.4/x",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Network::parse("192.168.1.1/24").unwrap_err().to_string(),
            "\"192.168.1.1/24\" has host bits set; did you mean 192.168.1.0/24?"
        );
        assert_eq!(
            Network::parse("fd00::/129").unwrap_err().to_string(),
            "\"fd00::/129\": the prefix length must be 0 to 128"
        );
        assert_eq!(
            Network::parse("lan").unwrap_err().to_string(),
            "\"lan\" is not an IP network (like 192.168.1.0/24 or fd00::/8)"
        );
    }
}
