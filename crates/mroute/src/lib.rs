//! Linux kernel multicast routing for multicast-ingest.
//!
//! * [`sys`]: the `<linux/mroute.h>` / `<linux/mroute6.h>` constants and `#[repr(C)]` structs
//!   (libc and nix have none of them), with layout tests.
//! * [`MulticastRouter`] (IPv4, `MRT_*`) and [`MulticastRouter6`] (IPv6, `MRT6_*`): own the
//!   kernel's multicast forwarding cache of a network namespace; add VIFs/MIFs, set and delete
//!   (S,G) entries, read counters and upcalls. [`Router`] and [`ForwardingTable`] treat both
//!   families alike.
//! * [`ForwardingState`]: the desired (S,G) → (iif, oifs) routes by interface *name*,
//!   reconciled with the kernel as interfaces come, go and change ifindex.
//! * [`links`]: a NETLINK_ROUTE watcher of links and addresses.
//! * [`pim`]: raw PIM sockets for IPv4 and IPv6.
//! * [`tun`]: a small TUN device helper.
//!
//! Everything here needs `CAP_NET_ADMIN` and/or `CAP_NET_RAW` at run time, except
//! [`ForwardingState`], the parsers and the declarations.
//!
//! How pimwatch is expected to put it together (one [`ForwardingState`] and one router per
//! family; the native TUN may appear, vanish and come back at any time):
//!
//! ```no_run
//! use mcast_mroute::links::LinkWatcher;
//! use mcast_mroute::{Family, ForwardingState, MulticastRouter};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut router = MulticastRouter::new()?; // MRT_INIT; fails clearly if pimd holds it
//! let mut upcalls = router.upcall_reader()?;
//! let mut links = LinkWatcher::new()?; // subscribe, then dump
//! let mut fwd = ForwardingState::new(Family::V4);
//! for name in ["native0", "eth1", "eth2"] {
//!     fwd.manage_interface(name);
//! }
//! for link in links.snapshot().links.values() {
//!     fwd.set_interface(link.name.clone(), link.ifindex);
//! }
//! // A Join(S,G) arrived on eth1:
//! let sg = "192.0.2.1,232.1.1.1".parse()?;
//! fwd.add_oif(sg, "native0", "eth1")?;
//! for e in fwd.apply(&mut router) {
//!     tracing::warn!("{e}"); // kept desired; retried by the next apply
//! }
//! loop {
//!     tokio::select! {
//!         ev = links.next() => {
//!             if fwd.on_link_event(&ev?) {
//!                 fwd.apply(&mut router);
//!             }
//!         }
//!         up = upcalls.recv() => tracing::debug!(?up, "kernel upcall"),
//!     }
//! #   break;
//! }
//! fwd.flush(&mut router); // on exit; dropping the router also sends MRT_DONE
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::net::IpAddr;

mod error;
mod ffi;
pub mod links;
pub mod pim;
mod state;
pub mod sys;
mod table;
pub mod tun;
mod upcall;
mod v4;
mod v6;

pub use error::{Error, Result};
pub use state::{ApplyError, ForwardingState, InstalledMfc, InstalledVif, Op, Route};
pub use table::{ForwardingTable, Router};
pub use upcall::{Upcall, UpcallKind, UpcallReader, parse_igmpmsg, parse_mrt6msg};
pub use v4::MulticastRouter;
pub use v6::MulticastRouter6;

/// Number of VIF (MIF) slots per table: `MAXVIFS` = `MAXMIFS` = 32.
pub const MAX_VIFS: usize = sys::MAXVIFS;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// A VIF (IPv4) or MIF (IPv6) slot index, below [`MAX_VIFS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vif(pub u16);

impl Vif {
    /// The slot number.
    pub fn index(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Vif {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vif{}", self.0)
    }
}

/// Counters of one (S,G) entry (`SIOCGETSGCNT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SgCounters {
    /// Packets forwarded by the entry.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Packets that arrived on a VIF other than the entry's parent.
    pub wrong_if: u64,
}

/// Counters of one VIF (`SIOCGETVIFCNT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VifCounters {
    /// Packets received on the VIF.
    pub in_packets: u64,
    /// Packets sent out of the VIF.
    pub out_packets: u64,
    /// Bytes received.
    pub in_bytes: u64,
    /// Bytes sent.
    pub out_bytes: u64,
}

/// Widens a kernel `unsigned long` counter (`u32` on 32-bit targets, `u64` on 64-bit ones).
#[allow(clippy::unnecessary_cast)]
pub(crate) fn ulong(v: core::ffi::c_ulong) -> u64 {
    v as u64
}

/// Which VIF slots a router has used, and for which ifindex.
#[derive(Debug, Clone, Default)]
pub(crate) struct VifSlots {
    slots: [Option<u32>; MAX_VIFS],
}

impl VifSlots {
    pub(crate) fn lowest_free(&self) -> Option<Vif> {
        self.slots.iter().position(Option::is_none).map(|i| Vif(i as u16))
    }

    fn get(&self, vif: Vif) -> Result<Option<u32>> {
        self.slots.get(usize::from(vif.0)).copied().ok_or(Error::VifOutOfRange(vif))
    }

    pub(crate) fn check_free(&self, vif: Vif) -> Result<()> {
        match self.get(vif)? {
            None => Ok(()),
            Some(ifindex) => Err(Error::VifInUse { vif, ifindex }),
        }
    }

    pub(crate) fn check_used(&self, vif: Vif) -> Result<u32> {
        self.get(vif)?.ok_or(Error::UnknownVif(vif))
    }

    pub(crate) fn insert(&mut self, vif: Vif, ifindex: u32) {
        self.slots[usize::from(vif.0)] = Some(ifindex);
    }

    pub(crate) fn remove(&mut self, vif: Vif) {
        self.slots[usize::from(vif.0)] = None;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Vif, u32)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.map(|ifindex| (Vif(i as u16), ifindex)))
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vif_slots() {
        let mut s = VifSlots::default();
        assert_eq!(s.lowest_free(), Some(Vif(0)));
        s.insert(Vif(0), 7);
        s.insert(Vif(2), 9);
        assert_eq!(s.lowest_free(), Some(Vif(1)));
        assert!(matches!(s.check_free(Vif(0)), Err(Error::VifInUse { ifindex: 7, .. })));
        assert!(matches!(s.check_used(Vif(1)), Err(Error::UnknownVif(_))));
        assert!(matches!(s.check_free(Vif(32)), Err(Error::VifOutOfRange(_))));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(Vif(0), 7), (Vif(2), 9)]);
        for i in 0..32 {
            s.insert(Vif(i), 1);
        }
        assert_eq!(s.lowest_free(), None);
    }

    #[test]
    fn router_in_use_message() {
        let e = Error::RouterInUse { family: Family::V4, table: None };
        assert!(e.to_string().starts_with("another multicast routing daemon holds MRT_INIT in this namespace"));
        let e = Error::RouterInUse { family: Family::V6, table: Some(7) };
        assert!(e.to_string().contains("MRT6_INIT in this namespace for mroute table 7"));
    }
}
