//! The (S,G) pair: the vocabulary type every component of multicast-ingest shares.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;

/// A source-specific multicast channel (S,G) (RFC 4607 §1): a unicast source address and a
/// multicast group address of the same family.
///
/// Ordered by source then group, so sorted sets print like the joinfile expects. Displayed as
/// `S,G`, the joinfile line format the original platform defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceGroup {
    pub source: IpAddr,
    pub group: IpAddr,
}

/// Why a text or address pair is not a valid (S,G).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceGroupError {
    /// The text is not `S,G`.
    Syntax,
    /// One of the addresses does not parse; the string is the offending text.
    BadAddress(String),
    /// The group is not a multicast address.
    GroupNotMulticast(IpAddr),
    /// The source is not a unicast address (multicast, unspecified or broadcast).
    SourceNotUnicast(IpAddr),
    /// Source and group are of different address families.
    MixedFamilies,
}

impl fmt::Display for SourceGroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceGroupError::Syntax => f.write_str("expected SOURCE,GROUP"),
            SourceGroupError::BadAddress(text) => write!(f, "not an IP address: {text:?}"),
            SourceGroupError::GroupNotMulticast(g) => write!(f, "group {g} is not a multicast address"),
            SourceGroupError::SourceNotUnicast(s) => write!(f, "source {s} is not a unicast address"),
            SourceGroupError::MixedFamilies => f.write_str("source and group are of different address families"),
        }
    }
}

impl std::error::Error for SourceGroupError {}

impl SourceGroup {
    /// The pair (`source`, `group`), unchecked: use [`SourceGroup::checked`] for input from
    /// outside.
    pub const fn new(source: IpAddr, group: IpAddr) -> SourceGroup {
        SourceGroup { source, group }
    }

    /// An IPv4 pair, unchecked.
    pub const fn v4(source: std::net::Ipv4Addr, group: std::net::Ipv4Addr) -> SourceGroup {
        SourceGroup::new(IpAddr::V4(source), IpAddr::V4(group))
    }

    /// An IPv6 pair, unchecked.
    pub const fn v6(source: std::net::Ipv6Addr, group: std::net::Ipv6Addr) -> SourceGroup {
        SourceGroup::new(IpAddr::V6(source), IpAddr::V6(group))
    }

    /// The pair, after checking that `group` is multicast, `source` unicast, and both of one
    /// family.
    pub fn checked(source: IpAddr, group: IpAddr) -> Result<SourceGroup, SourceGroupError> {
        SourceGroup::new(source, group).validate()
    }

    /// Checks that `group` is multicast, `source` unicast, and both of one family.
    pub fn validate(self) -> Result<SourceGroup, SourceGroupError> {
        let SourceGroup { source, group } = self;
        if source.is_ipv4() != group.is_ipv4() {
            return Err(SourceGroupError::MixedFamilies);
        }
        if !group.is_multicast() {
            return Err(SourceGroupError::GroupNotMulticast(group));
        }
        let bad_source =
            source.is_multicast() || source.is_unspecified() || matches!(source, IpAddr::V4(v4) if v4.is_broadcast());
        if bad_source {
            return Err(SourceGroupError::SourceNotUnicast(source));
        }
        Ok(SourceGroup { source, group })
    }

    /// Whether this is an IPv4 (S,G).
    pub fn is_ipv4(&self) -> bool {
        self.source.is_ipv4()
    }
}

impl fmt::Display for SourceGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.source, self.group)
    }
}

impl FromStr for SourceGroup {
    type Err = SourceGroupError;

    /// Parses `S,G` with optional whitespace around each address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (source, group) = s.split_once(',').ok_or(SourceGroupError::Syntax)?;
        let parse = |text: &str| -> Result<IpAddr, SourceGroupError> {
            let text = text.trim();
            text.parse().map_err(|_| SourceGroupError::BadAddress(text.to_owned()))
        };
        SourceGroup::checked(parse(source)?, parse(group)?)
    }
}

/// Serialised as its `S,G` text, the joinfile line form.
#[cfg(feature = "serde")]
impl serde::Serialize for SourceGroup {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for SourceGroup {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<SourceGroup, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let sg: SourceGroup = "198.51.100.10,232.1.1.1".parse().unwrap();
        assert_eq!(sg.to_string(), "198.51.100.10,232.1.1.1");
        let sg6: SourceGroup = " 2001:db8::1 , ff3e::8000:1 ".parse().unwrap();
        assert_eq!(sg6.to_string(), "2001:db8::1,ff3e::8000:1");
        assert!(!sg6.is_ipv4());
    }

    #[test]
    fn rejects_invalid_pairs() {
        assert_eq!("198.51.100.10".parse::<SourceGroup>(), Err(SourceGroupError::Syntax));
        assert_eq!(
            "198.51.100.10,10.0.0.1".parse::<SourceGroup>(),
            Err(SourceGroupError::GroupNotMulticast("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            "232.1.1.2,232.1.1.1".parse::<SourceGroup>(),
            Err(SourceGroupError::SourceNotUnicast("232.1.1.2".parse().unwrap()))
        );
        assert_eq!(
            "0.0.0.0,232.1.1.1".parse::<SourceGroup>().unwrap_err().to_string(),
            "source 0.0.0.0 is not a unicast address"
        );
        assert_eq!("2001:db8::1,232.1.1.1".parse::<SourceGroup>(), Err(SourceGroupError::MixedFamilies));
        assert_eq!("x,232.1.1.1".parse::<SourceGroup>(), Err(SourceGroupError::BadAddress("x".into())));
    }

    #[test]
    fn orders_by_source_then_group() {
        let mut v: Vec<SourceGroup> = ["198.51.100.11,232.1.1.1", "198.51.100.10,232.1.1.2", "198.51.100.10,232.1.1.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        v.sort();
        let text: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["198.51.100.10,232.1.1.1", "198.51.100.10,232.1.1.2", "198.51.100.11,232.1.1.1"]);
    }
}
