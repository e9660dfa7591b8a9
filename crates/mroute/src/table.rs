//! One interface over both families: the [`ForwardingTable`] trait and the [`Router`] enum.

use std::net::IpAddr;

use mcast_wire::SourceGroup;

use crate::error::{Error, Result};
use crate::upcall::{Upcall, UpcallReader};
use crate::{Family, MulticastRouter, MulticastRouter6, SgCounters, Vif, VifCounters};

/// A kernel multicast forwarding table of one family, as [`crate::ForwardingState`] drives it.
///
/// Implemented by [`MulticastRouter`], [`MulticastRouter6`] and [`Router`]; tests implement
/// it with a recording fake.
pub trait ForwardingTable {
    /// The family of the (S,G)s this table accepts.
    fn family(&self) -> Family;
    /// Adds a VIF (MIF) for `ifindex` in slot `vif`.
    fn add_vif_at(&mut self, vif: Vif, ifindex: u32) -> Result<()>;
    /// Removes a VIF (success if the kernel already removed it with its interface).
    fn del_vif(&mut self, vif: Vif) -> Result<()>;
    /// Installs or replaces the MFC entry for `sg`.
    fn set_mfc(&mut self, sg: SourceGroup, iif: Vif, oifs: &[Vif]) -> Result<()>;
    /// Removes the MFC entry for `sg`; `Ok(false)` if there was none.
    fn del_mfc(&mut self, sg: SourceGroup) -> Result<bool>;
}

fn mismatch(expected: Family, sg: SourceGroup) -> Error {
    Error::FamilyMismatch { expected, what: format!("({sg})") }
}

impl ForwardingTable for MulticastRouter {
    fn family(&self) -> Family {
        Family::V4
    }

    fn add_vif_at(&mut self, vif: Vif, ifindex: u32) -> Result<()> {
        MulticastRouter::add_vif_at(self, vif, ifindex)
    }

    fn del_vif(&mut self, vif: Vif) -> Result<()> {
        MulticastRouter::del_vif(self, vif)
    }

    fn set_mfc(&mut self, sg: SourceGroup, iif: Vif, oifs: &[Vif]) -> Result<()> {
        match (sg.source, sg.group) {
            (IpAddr::V4(s), IpAddr::V4(g)) => MulticastRouter::set_mfc(self, s, g, iif, oifs),
            _ => Err(mismatch(Family::V4, sg)),
        }
    }

    fn del_mfc(&mut self, sg: SourceGroup) -> Result<bool> {
        match (sg.source, sg.group) {
            (IpAddr::V4(s), IpAddr::V4(g)) => MulticastRouter::del_mfc(self, s, g),
            _ => Err(mismatch(Family::V4, sg)),
        }
    }
}

impl ForwardingTable for MulticastRouter6 {
    fn family(&self) -> Family {
        Family::V6
    }

    fn add_vif_at(&mut self, vif: Vif, ifindex: u32) -> Result<()> {
        self.add_mif_at(vif, ifindex)
    }

    fn del_vif(&mut self, vif: Vif) -> Result<()> {
        self.del_mif(vif)
    }

    fn set_mfc(&mut self, sg: SourceGroup, iif: Vif, oifs: &[Vif]) -> Result<()> {
        match (sg.source, sg.group) {
            (IpAddr::V6(s), IpAddr::V6(g)) => self.set_mfc6(s, g, iif, oifs),
            _ => Err(mismatch(Family::V6, sg)),
        }
    }

    fn del_mfc(&mut self, sg: SourceGroup) -> Result<bool> {
        match (sg.source, sg.group) {
            (IpAddr::V6(s), IpAddr::V6(g)) => self.del_mfc6(s, g),
            _ => Err(mismatch(Family::V6, sg)),
        }
    }
}

/// Either family's router, so a daemon can hold both in one collection and treat them alike.
#[derive(Debug)]
pub enum Router {
    /// IPv4 (`MRT_*`).
    V4(MulticastRouter),
    /// IPv6 (`MRT6_*`).
    V6(MulticastRouter6),
}

impl Router {
    /// Opens the router of `family` (`MRT_INIT` / `MRT6_INIT`), optionally on an mroute table.
    pub fn open(family: Family, table: Option<u32>) -> Result<Router> {
        Ok(match (family, table) {
            (Family::V4, None) => Router::V4(MulticastRouter::new()?),
            (Family::V4, Some(t)) => Router::V4(MulticastRouter::with_table(t)?),
            (Family::V6, None) => Router::V6(MulticastRouter6::new()?),
            (Family::V6, Some(t)) => Router::V6(MulticastRouter6::with_table(t)?),
        })
    }

    /// Adds a VIF / MIF in the lowest free slot.
    pub fn add_vif(&mut self, ifindex: u32) -> Result<Vif> {
        match self {
            Router::V4(r) => r.add_vif(ifindex),
            Router::V6(r) => r.add_mif(ifindex),
        }
    }

    /// The VIFs / MIFs added: (slot, ifindex).
    pub fn vifs(&self) -> Vec<(Vif, u32)> {
        match self {
            Router::V4(r) => r.vifs(),
            Router::V6(r) => r.mifs(),
        }
    }

    /// The (S,G) counters.
    pub fn sg_counters(&self, sg: SourceGroup) -> Result<SgCounters> {
        match (self, sg.source, sg.group) {
            (Router::V4(r), IpAddr::V4(s), IpAddr::V4(g)) => r.sg_counters(s, g),
            (Router::V6(r), IpAddr::V6(s), IpAddr::V6(g)) => r.sg_counters(s, g),
            _ => Err(mismatch(self.family(), sg)),
        }
    }

    /// A VIF's / MIF's counters.
    pub fn vif_counters(&self, vif: Vif) -> Result<VifCounters> {
        match self {
            Router::V4(r) => r.vif_counters(vif),
            Router::V6(r) => r.mif_counters(vif),
        }
    }

    /// A pending upcall, without blocking.
    pub fn recv_upcall(&mut self) -> Result<Option<Upcall>> {
        match self {
            Router::V4(r) => r.recv_upcall(),
            Router::V6(r) => r.recv_upcall(),
        }
    }

    /// An async upcall reader (inside a tokio runtime).
    pub fn upcall_reader(&self) -> Result<UpcallReader> {
        match self {
            Router::V4(r) => r.upcall_reader(),
            Router::V6(r) => r.upcall_reader(),
        }
    }

    /// `MRT_DONE` / `MRT6_DONE`, reporting failure.
    pub fn close(self) -> Result<()> {
        match self {
            Router::V4(r) => r.close(),
            Router::V6(r) => r.close(),
        }
    }
}

impl ForwardingTable for Router {
    fn family(&self) -> Family {
        match self {
            Router::V4(_) => Family::V4,
            Router::V6(_) => Family::V6,
        }
    }

    fn add_vif_at(&mut self, vif: Vif, ifindex: u32) -> Result<()> {
        match self {
            Router::V4(r) => r.add_vif_at(vif, ifindex),
            Router::V6(r) => r.add_mif_at(vif, ifindex),
        }
    }

    fn del_vif(&mut self, vif: Vif) -> Result<()> {
        match self {
            Router::V4(r) => r.del_vif(vif),
            Router::V6(r) => r.del_mif(vif),
        }
    }

    fn set_mfc(&mut self, sg: SourceGroup, iif: Vif, oifs: &[Vif]) -> Result<()> {
        match self {
            Router::V4(r) => ForwardingTable::set_mfc(r, sg, iif, oifs),
            Router::V6(r) => ForwardingTable::set_mfc(r, sg, iif, oifs),
        }
    }

    fn del_mfc(&mut self, sg: SourceGroup) -> Result<bool> {
        match self {
            Router::V4(r) => ForwardingTable::del_mfc(r, sg),
            Router::V6(r) => ForwardingTable::del_mfc(r, sg),
        }
    }
}
