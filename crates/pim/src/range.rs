//! Group ranges treated as SSM.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A range of multicast groups for which (S,G) Joins are accepted.
///
/// Two forms:
///
/// * an ordinary prefix, `232.0.0.0/8`, `224.0.0.0/4`, `ff3e::/32`;
/// * an IPv6 prefix whose scope nibble is a wildcard, written with an `x` in its place:
///   `ff3x::/32` is the IPv6 SSM range of RFC 4607 §1 (FF3x::/32 for every scope x, that is
///   the sixteen prefixes ff30::/32 … ff3f::/32: the first twelve bits ff3, any scope, and the
///   16 bits after flags-and-scope zero, RFC 3306 §6 with plen 0 and prefix 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupRange {
    /// An ordinary prefix.
    Prefix(IpNet),
    /// An IPv6 multicast prefix (length at least 16) matched with the scope nibble (the low
    /// four bits of the second byte) ignored. The stored prefix has that nibble zero.
    AnyScope(Ipv6Net),
}

/// Why a string is not a [`GroupRange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid group range {0:?}: expected a prefix like 232.0.0.0/8 or ff3x::/32")]
pub struct ParseGroupRangeError(pub String);

impl GroupRange {
    /// 232.0.0.0/8, the IPv4 SSM range (RFC 4607 §1).
    pub fn ipv4_ssm() -> GroupRange {
        GroupRange::Prefix(IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(232, 0, 0, 0), 8)))
    }

    /// ff3x::/32, the IPv6 SSM range (RFC 4607 §1).
    pub fn ipv6_ssm() -> GroupRange {
        GroupRange::AnyScope(Ipv6Net::new_assert(Ipv6Addr::new(0xff30, 0, 0, 0, 0, 0, 0, 0), 32))
    }

    /// 224.0.0.0/4: every IPv4 group (what the original's patched pimd did).
    pub fn ipv4_all() -> GroupRange {
        GroupRange::Prefix(IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4)))
    }

    /// ff00::/8: every IPv6 group.
    pub fn ipv6_all() -> GroupRange {
        GroupRange::Prefix(IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8)))
    }

    /// The default SSM ranges: 232.0.0.0/8 and ff3x::/32.
    pub fn default_ssm() -> Vec<GroupRange> {
        vec![GroupRange::ipv4_ssm(), GroupRange::ipv6_ssm()]
    }

    /// Whether `group` falls in this range.
    pub fn contains(&self, group: &IpAddr) -> bool {
        match (self, group) {
            (GroupRange::Prefix(net), addr) => net.contains(addr),
            (GroupRange::AnyScope(net), IpAddr::V6(addr)) => net.contains(&clear_scope(addr)),
            (GroupRange::AnyScope(_), IpAddr::V4(_)) => false,
        }
    }

    /// An any-scope range from a prefix: checks that it is multicast (first byte 0xff) and
    /// long enough to cover the scope nibble, then clears the nibble.
    pub fn any_scope(net: Ipv6Net) -> Option<GroupRange> {
        if net.prefix_len() < 16 || net.addr().octets()[0] != 0xff {
            return None;
        }
        let addr = clear_scope(&net.addr());
        Ipv6Net::new(addr, net.prefix_len()).ok().map(|n| GroupRange::AnyScope(n.trunc()))
    }
}

/// `addr` with the scope nibble (RFC 4291 §2.7) cleared.
fn clear_scope(addr: &Ipv6Addr) -> Ipv6Addr {
    let mut octets = addr.octets();
    octets[1] &= 0xf0;
    Ipv6Addr::from(octets)
}

impl fmt::Display for GroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupRange::Prefix(net) => write!(f, "{net}"),
            GroupRange::AnyScope(net) => {
                // The first hextet is "ffF0" (four digits, as the first byte is 0xff); print
                // its scope digit as x.
                let text = net.to_string();
                let (head, tail) = text.split_at_checked(3).unwrap_or((&text, ""));
                let tail = tail.get(1..).unwrap_or("");
                write!(f, "{head}x{tail}")
            }
        }
    }
}

impl FromStr for GroupRange {
    type Err = ParseGroupRangeError;

    fn from_str(s: &str) -> Result<GroupRange, ParseGroupRangeError> {
        let err = || ParseGroupRangeError(s.to_owned());
        let text = s.trim();
        // "ff3x::/32": an x as the fourth digit of the first hextet marks the scope wildcard.
        let mut chars: Vec<char> = text.chars().collect();
        if chars.len() > 4 && matches!(chars.get(3), Some('x' | 'X')) {
            if let Some(c) = chars.get_mut(3) {
                *c = '0';
            }
            let replaced: String = chars.into_iter().collect();
            let net: Ipv6Net = replaced.parse().map_err(|_| err())?;
            return GroupRange::any_scope(net).ok_or_else(err);
        }
        let net: IpNet = text.parse().map_err(|_| err())?;
        Ok(GroupRange::Prefix(net.trunc()))
    }
}

impl Serialize for GroupRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GroupRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GroupRange, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_ssm_range() {
        let r = GroupRange::ipv4_ssm();
        assert_eq!(r.to_string(), "232.0.0.0/8");
        assert!(r.contains(&ip("232.0.0.0")));
        assert!(r.contains(&ip("232.1.1.1")));
        assert!(r.contains(&ip("232.255.255.255")));
        assert!(!r.contains(&ip("233.0.0.1")));
        assert!(!r.contains(&ip("231.255.255.255")));
        assert!(!r.contains(&ip("ff3e::1")));
    }

    #[test]
    fn ipv6_ssm_range_ignores_scope() {
        let r = GroupRange::ipv6_ssm();
        assert_eq!(r.to_string(), "ff3x::/32");
        for scope in 0..16u16 {
            let g = IpAddr::V6(Ipv6Addr::new(0xff30 | scope, 0, 0, 0, 0, 0, 0x8000, 1));
            assert!(r.contains(&g), "{g}");
        }
        // Bytes 2..4 must be zero (RFC 3306 plen 0, prefix 0).
        assert!(!r.contains(&ip("ff3e:1::1")));
        assert!(!r.contains(&ip("ff3e:0040:2001:db8::1")));
        // Other flags: not SSM.
        assert!(!r.contains(&ip("ff1e::1")));
        assert!(!r.contains(&ip("ff0e::1")));
        assert!(!r.contains(&ip("232.1.1.1")));
    }

    #[test]
    fn parse_and_display_round_trip() {
        for text in ["232.0.0.0/8", "232.0.0.0/7", "224.0.0.0/4", "ff3x::/32", "ff3e::/32", "ff00::/8", "ff1x::/16"] {
            let r: GroupRange = text.parse().unwrap();
            let back = r.to_string();
            assert_eq!(back.parse::<GroupRange>().unwrap(), r, "{text} -> {back}");
        }
        assert_eq!("FF3X::/32".parse::<GroupRange>().unwrap(), GroupRange::ipv6_ssm());
        assert_eq!("232.1.2.3/8".parse::<GroupRange>().unwrap().to_string(), "232.0.0.0/8");
        let widened: GroupRange = "232.0.0.0/7".parse().unwrap();
        assert!(widened.contains(&ip("233.252.0.1")));
        assert!(!widened.contains(&ip("234.0.0.1")));
        assert!("224.0.0.0".parse::<GroupRange>().is_err());
        assert!("ff3x::/8".parse::<GroupRange>().is_err());
        assert!("fe8x::/16".parse::<GroupRange>().is_err());
        assert!("nonsense".parse::<GroupRange>().is_err());
        assert_eq!(serde_json::to_string(&GroupRange::ipv6_ssm()).unwrap(), "\"ff3x::/32\"");
        assert_eq!(serde_json::from_str::<GroupRange>("\"232.0.0.0/8\"").unwrap(), GroupRange::ipv4_ssm());
    }
}
