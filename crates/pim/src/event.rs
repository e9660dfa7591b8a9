//! What the engine hands to its driver: packets to send and events to act on or log.

use std::net::IpAddr;
use std::time::Instant;

use serde::Serialize;

use crate::counters::DropReason;
use crate::types::{InterfaceId, SourceGroup};

/// A PIM message to send.
///
/// Send `payload` as the IP payload (protocol 103) on `interface`'s link to `dst` with TTL /
/// hop limit 1 (RFC 7761 §4.9), from `src` where the socket allows choosing it (it is our
/// primary address on the interface when the message was queued: after an address change the
/// goodbye Hello carries the old one, RFC 7761 §4.3.1).
///
/// Checksum: over IPv4 the payload carries the PIM checksum. Over IPv6 the checksum field is
/// left zero: the pseudo-header needs the source address the kernel picks, so the driver must
/// set `IPV6_CHECKSUM` to 2 on the raw socket (RFC 3542 §3.1) and the kernel fills it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The PIM instance to send on.
    pub interface: InterfaceId,
    /// Our address the message is from.
    pub src: IpAddr,
    /// ALL-PIM-ROUTERS of the family: 224.0.0.13 or ff02::d.
    pub dst: IpAddr,
    /// The PIM message (common header onward).
    pub payload: Vec<u8>,
}

/// Why a neighbour went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NeighborDownReason {
    /// Its Neighbor Liveness Timer (the Holdtime of its last Hello) ran out (RFC 7761 §4.3.1).
    Expired,
    /// It sent a Hello with Holdtime 0 (RFC 7761 §4.3.1, §4.9.2).
    Goodbye,
    /// We removed the interface.
    InterfaceRemoved,
    /// A new configuration ([`crate::Engine::reconfigure`]) no longer accepts the (S,G): its
    /// group is outside the SSM ranges now.
    Reconfigured,
}

/// Why an interface left the outgoing list of an (S,G) (downstream state went to NoInfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruneReason {
    /// A Prune: at once with one neighbour, after the Prune-Pending Timer with several
    /// (RFC 7761 §4.5.2).
    Pruned,
    /// The Expiry Timer ran out: no Join refreshed the state within its Holdtime.
    Expired,
    /// A state restored from the joinfile ([`crate::Engine::restore`]) was not confirmed by a
    /// Join within the restore holdtime.
    RestoreExpired,
    /// We removed the interface.
    InterfaceRemoved,
    /// A new configuration ([`crate::Engine::reconfigure`]) no longer accepts the (S,G): its
    /// group is outside the SSM ranges now.
    Reconfigured,
}

/// Something that happened. Every variant is worth a log line; the forwarding-relevant ones
/// are `InterfaceJoin` / `InterfacePrune` (per-interface outgoing list, for the MFC) and
/// `Joined` / `Left` (the union over interfaces, for the joinfile).
///
/// Ordering guarantees: for each (interface, S, G), `InterfaceJoin` and `InterfacePrune`
/// alternate, starting with `InterfaceJoin`; for each (S,G), `Joined` and `Left` alternate,
/// starting with `Joined`. `Joined` follows the first `InterfaceJoin` of an (S,G) and `Left`
/// follows the `InterfacePrune` that removes its last interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Hello from a new neighbour (a triggered Hello of ours is scheduled, RFC 7761 §4.3.1).
    NeighborUp {
        /// Where.
        interface: InterfaceId,
        /// Its primary address (the Hello's IP source).
        neighbor: IpAddr,
        /// Its Generation ID, if it sent one.
        genid: Option<u32>,
        /// Its Hello Holdtime in seconds (0xffff: never expires).
        holdtime: u16,
    },
    /// A neighbour went away.
    NeighborDown {
        /// Where.
        interface: InterfaceId,
        /// Its primary address.
        neighbor: IpAddr,
        /// Why.
        reason: NeighborDownReason,
    },
    /// A known neighbour's Generation ID changed: it restarted and its state is unreliable
    /// (RFC 7761 §4.3.1). A triggered Hello of ours is scheduled; our downstream state from it
    /// stays until refreshed or expired.
    NeighborRestarted {
        /// Where.
        interface: InterfaceId,
        /// Its primary address.
        neighbor: IpAddr,
        /// The previous Generation ID.
        old_genid: Option<u32>,
        /// The new Generation ID.
        new_genid: Option<u32>,
    },
    /// The elected DR of an interface changed (RFC 7761 §4.3.2; informational only).
    DrChanged {
        /// Where.
        interface: InterfaceId,
        /// The new DR (may be our own address).
        dr: IpAddr,
    },
    /// Downstream state for (S,G) on `interface` went from NoInfo to Join: add `interface` to
    /// the (S,G) outgoing list.
    InterfaceJoin {
        /// Where.
        interface: InterfaceId,
        /// The channel.
        sg: SourceGroup,
        /// True if this comes from [`crate::Engine::restore`], not from a received Join.
        restored: bool,
    },
    /// A Join took over a restored state ([`crate::Engine::restore`]); from now on it is
    /// ordinary downstream state. No change to forwarding.
    RestoreConfirmed {
        /// Where.
        interface: InterfaceId,
        /// The channel.
        sg: SourceGroup,
    },
    /// A Prune put (S,G) on `interface` in Prune-Pending (there are several neighbours, so
    /// another router gets J/P_Override_Interval to override with a Join). Still forwarding.
    InterfacePrunePending {
        /// Where.
        interface: InterfaceId,
        /// The channel.
        sg: SourceGroup,
        /// When the Prune-Pending Timer expires.
        until: Instant,
    },
    /// A Join overrode a pending Prune: back to Join, still forwarding.
    InterfacePruneOverridden {
        /// Where.
        interface: InterfaceId,
        /// The channel.
        sg: SourceGroup,
    },
    /// Downstream state for (S,G) on `interface` went to NoInfo: remove `interface` from the
    /// (S,G) outgoing list.
    InterfacePrune {
        /// Where.
        interface: InterfaceId,
        /// The channel.
        sg: SourceGroup,
        /// Why.
        reason: PruneReason,
    },
    /// (S,G) is now joined on at least one interface (it was joined on none).
    Joined(SourceGroup),
    /// (S,G) is no longer joined on any interface.
    Left(SourceGroup),
    /// One source entry of an accepted Join/Prune was ignored; the rest of the message was
    /// still processed.
    EntryIgnored {
        /// Where.
        interface: InterfaceId,
        /// The neighbour that sent the message.
        from: IpAddr,
        /// The entry's group address.
        group: IpAddr,
        /// The entry's source address (the RP for a (*,G) entry).
        source: IpAddr,
        /// True for a joined source, false for a pruned one.
        join: bool,
        /// Why.
        reason: DropReason,
    },
}
