//! CIDR networks for `trusted_networks`, matched against PAM_RHOST.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `192.168.1.0/24`, `fd00::/8`, or a single address.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("{text:?} is not an IP network (like 192.168.1.0/24 or fd00::/8)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        let network = Network { addr, prefix };
        if network.masked(addr) != addr {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}?",
                Network {
                    addr: network.masked(addr),
                    prefix
                }
            ));
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

/// The address in a PAM_RHOST value, if it is one: plain, `[v6]`, with a `%zone`, and
/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) read as IPv4. Host names are not resolved: a name is
/// never trusted.
pub fn rhost_addr(rhost: &str) -> Option<IpAddr> {
    let text = rhost.trim_start_matches('[').trim_end_matches(']');
    let text = text.split('%').next().unwrap_or(text);
    let addr: IpAddr = text.parse().ok()?;
    Some(match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    })
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
        assert!(ula.contains(ip("[fd00::1%eth0]")));
        assert!(!ula.contains(ip("fe80::1")));
        assert!(!ula.contains(ip("192.168.1.77")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Network::parse("10.0.0.1").unwrap().contains(ip("10.0.0.1")));
        assert!(!Network::parse("10.0.0.1").unwrap().contains(ip("10.0.0.2")));
    }

    #[test]
    fn names_and_junk_are_not_addresses() {
        assert_eq!(rhost_addr("nas.example.com"), None);
        assert_eq!(rhost_addr(""), None);
        assert_eq!(rhost_addr("1.2.3.4 "), None);
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
        assert!(
            Network::parse("192.168.1.1/24")
                .unwrap_err()
                .contains("192.168.1.0/24")
        );
    }
}
