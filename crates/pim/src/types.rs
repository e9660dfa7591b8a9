//! Small value types shared by the engine, its events and its status report.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The IP family of a PIM instance. IPv4 and IPv6 PIM are separate protocol instances even on
/// the same link (RFC 7761 §4.9: each has its own ALL-PIM-ROUTERS group, addresses and Hellos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// PIM over IPv4 (IP protocol 103, to 224.0.0.13).
    Ipv4,
    /// PIM over IPv6 (next header 103, to ff02::d).
    Ipv6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// ALL-PIM-ROUTERS of this family (RFC 7761 §4.9): 224.0.0.13 or ff02::d.
    pub fn all_pim_routers(self) -> IpAddr {
        match self {
            Family::Ipv4 => IpAddr::V4(mcast_wire::pim::ALL_PIM_ROUTERS_V4),
            Family::Ipv6 => IpAddr::V6(mcast_wire::pim::ALL_PIM_ROUTERS_V6),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        })
    }
}

/// One PIM instance: a kernel interface index and a family. The same link has an IPv4 and an
/// IPv6 instance with different ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InterfaceId {
    /// The kernel interface index.
    pub ifindex: u32,
    /// The PIM family on that interface.
    pub family: Family,
}

impl InterfaceId {
    /// The instance of `family` on interface `ifindex`.
    pub const fn new(ifindex: u32, family: Family) -> InterfaceId {
        InterfaceId { ifindex, family }
    }

    /// The IPv4 instance on `ifindex`.
    pub const fn v4(ifindex: u32) -> InterfaceId {
        InterfaceId::new(ifindex, Family::Ipv4)
    }

    /// The IPv6 instance on `ifindex`.
    pub const fn v6(ifindex: u32) -> InterfaceId {
        InterfaceId::new(ifindex, Family::Ipv6)
    }
}

impl fmt::Display for InterfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ifindex, self.family)
    }
}

pub use mcast_wire::SourceGroup;

/// The address family of an (S,G), or `None` if source and group differ in family.
pub fn sg_family(sg: &SourceGroup) -> Option<Family> {
    let family = Family::of(&sg.group);
    (Family::of(&sg.source) == family).then_some(family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_group_text_form() {
        let sg: SourceGroup = "23.212.185.4,232.1.1.1".parse().unwrap();
        assert_eq!(sg, SourceGroup::v4([23, 212, 185, 4].into(), [232, 1, 1, 1].into()));
        assert_eq!(sg.to_string(), "23.212.185.4,232.1.1.1");
        assert_eq!(sg_family(&sg), Some(Family::Ipv4));
        let sg6: SourceGroup = " 2001:db8:0::5 , ff3e::8000:1".parse().unwrap();
        assert_eq!(sg6.to_string(), "2001:db8::5,ff3e::8000:1");
        assert!("1.2.3.4".parse::<SourceGroup>().is_err());
        assert!("1.2.3.4,x".parse::<SourceGroup>().is_err());
        let mixed = SourceGroup::new("1.2.3.4".parse().unwrap(), "ff3e::1".parse().unwrap());
        assert_eq!(sg_family(&mixed), None);
        assert_eq!(serde_json::to_string(&sg).unwrap(), "\"23.212.185.4,232.1.1.1\"");
        assert_eq!(serde_json::from_str::<SourceGroup>("\"23.212.185.4,232.1.1.1\"").unwrap(), sg);
    }

    #[test]
    fn interface_id_and_family() {
        assert_eq!(InterfaceId::v4(7).to_string(), "7/ipv4");
        assert_eq!(InterfaceId::v6(7).to_string(), "7/ipv6");
        assert!(InterfaceId::v4(7) < InterfaceId::v6(7));
        assert_eq!(Family::Ipv4.all_pim_routers().to_string(), "224.0.0.13");
        assert_eq!(Family::Ipv6.all_pim_routers().to_string(), "ff02::d");
    }
}
