//! Drop reasons and counters. Plain integers in arrays indexed by reason: the data path bumps
//! them through `&mut self`, without locks, atomics or maps.

use std::collections::BTreeMap;
use std::fmt;

use mcast_wire::amt::MessageType;
use serde::{Serialize, Serializer};

/// Why a Multicast Data message was not decapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataDrop {
    /// Not from the address and port 2268 of a relay we hold a tunnel with: spoofed, late
    /// (tunnel removed) or misdirected (RFC 7450 §5.2.3.6 / protocols.md §A1 "Multicast
    /// Data": accept only from the relay of an established tunnel).
    NotFromRelay,
    /// Not a Multicast Data message (the driver sends those to `handle_datagram`).
    NotData,
    /// The encapsulated datagram is not a well-formed IPv4 or IPv6 packet (short, bad header
    /// length, total length beyond the message).
    Malformed,
    /// The inner IPv4 header checksum does not verify.
    BadChecksum,
    /// The inner packet is not UDP (RFC 7450 carries any IP multicast, but the ingest
    /// platform forwards UDP flows only).
    NotUdp,
    /// The inner (S,G) is not joined on the tunnel it arrived on (includes a non-multicast
    /// destination).
    NotJoined,
    /// The inner TTL / hop limit is below `Config::min_inner_ttl`.
    TtlExpired,
}

impl DataDrop {
    /// Every reason, in index order.
    pub const ALL: [DataDrop; 7] = [
        DataDrop::NotFromRelay,
        DataDrop::NotData,
        DataDrop::Malformed,
        DataDrop::BadChecksum,
        DataDrop::NotUdp,
        DataDrop::NotJoined,
        DataDrop::TtlExpired,
    ];

    /// The kebab-case name used in logs and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DataDrop::NotFromRelay => "not-from-relay",
            DataDrop::NotData => "not-data",
            DataDrop::Malformed => "malformed",
            DataDrop::BadChecksum => "bad-checksum",
            DataDrop::NotUdp => "not-udp",
            DataDrop::NotJoined => "not-joined",
            DataDrop::TtlExpired => "ttl-expired",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DataDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for DataDrop {}

/// Why a control message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ControlDrop {
    /// Not a decodable AMT message (bad version, truncated, bad lengths).
    Malformed,
    /// A message a gateway never receives (Discovery, Request, Update, Teardown, unknown
    /// types), or Multicast Data passed to `handle_datagram`.
    UnexpectedType,
    /// An Advertisement not from a discovery address we sent to (port 2268), or a Query not
    /// from the address and port 2268 of a known relay.
    UnknownSender,
    /// An Advertisement whose nonce is not the outstanding Discovery nonce, or a Query whose
    /// nonce matches no outstanding Request (RFC 7450 §5.2.3.4.4, §5.2.3.5: MUST drop).
    BadNonce,
    /// The encapsulated General Query does not parse as IGMPv3 / MLDv2.
    BadQuery,
    /// The encapsulated query's family does not match the P flag of the Request.
    WrongFamily,
    /// An Advertisement naming a relay address another tunnel already uses (the relay keys
    /// gateways by address and port, so two tunnels to one relay would undo each other).
    RelayInUse,
    /// The gateway is shut down.
    ShutDown,
}

impl ControlDrop {
    /// Every reason, in index order.
    pub const ALL: [ControlDrop; 8] = [
        ControlDrop::Malformed,
        ControlDrop::UnexpectedType,
        ControlDrop::UnknownSender,
        ControlDrop::BadNonce,
        ControlDrop::BadQuery,
        ControlDrop::WrongFamily,
        ControlDrop::RelayInUse,
        ControlDrop::ShutDown,
    ];

    /// The kebab-case name used in logs and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlDrop::Malformed => "malformed",
            ControlDrop::UnexpectedType => "unexpected-type",
            ControlDrop::UnknownSender => "unknown-sender",
            ControlDrop::BadNonce => "bad-nonce",
            ControlDrop::BadQuery => "bad-query",
            ControlDrop::WrongFamily => "wrong-family",
            ControlDrop::RelayInUse => "relay-in-use",
            ControlDrop::ShutDown => "shut-down",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ControlDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ControlDrop {}

/// AMT message type names for counters (types 1–7; anything else is "unknown").
fn type_name(index: usize) -> &'static str {
    match index {
        1 => "relay-discovery",
        2 => "relay-advertisement",
        3 => "request",
        4 => "membership-query",
        5 => "membership-update",
        6 => "multicast-data",
        7 => "teardown",
        _ => "unknown",
    }
}

pub(crate) fn type_index(t: MessageType) -> usize {
    match t {
        MessageType::Unknown(_) => 0,
        other => usize::from(u8::from(other)).min(7),
    }
}

/// Per-type message counts, indexed by AMT type (0 = unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeCounts(pub [u64; 8]);

impl TypeCounts {
    /// Messages of type `t`.
    pub fn get(&self, t: MessageType) -> u64 {
        self.0[type_index(t)]
    }

    pub(crate) fn bump(&mut self, t: MessageType) {
        self.0[type_index(t)] += 1;
    }
}

impl Serialize for TypeCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, u64> =
            self.0.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (type_name(i), *n)).collect();
        map.serialize(serializer)
    }
}

/// Data drops by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataDrops(pub [u64; DataDrop::ALL.len()]);

impl DataDrops {
    /// Drops for `reason`.
    pub fn get(&self, reason: DataDrop) -> u64 {
        self.0[reason.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    #[inline]
    pub(crate) fn bump(&mut self, reason: DataDrop) {
        self.0[reason.index()] += 1;
    }
}

impl Serialize for DataDrops {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, u64> =
            DataDrop::ALL.iter().filter(|r| self.get(**r) > 0).map(|r| (r.as_str(), self.get(*r))).collect();
        map.serialize(serializer)
    }
}

/// Control drops by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlDrops(pub [u64; ControlDrop::ALL.len()]);

impl ControlDrops {
    /// Drops for `reason`.
    pub fn get(&self, reason: ControlDrop) -> u64 {
        self.0[reason.index()]
    }

    pub(crate) fn bump(&mut self, reason: ControlDrop) {
        self.0[reason.index()] += 1;
    }
}

impl Serialize for ControlDrops {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map: BTreeMap<&str, u64> =
            ControlDrop::ALL.iter().filter(|r| self.get(**r) > 0).map(|r| (r.as_str(), self.get(*r))).collect();
        map.serialize(serializer)
    }
}

/// Gateway-wide counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Control messages received (decodable, before any check), by type.
    pub received: TypeCounts,
    /// Messages queued for sending, by type.
    pub sent: TypeCounts,
    /// Control messages dropped, by reason.
    pub control_drops: ControlDrops,
    /// Multicast Data dropped, by reason (including those attributed to a tunnel).
    pub data_drops: DataDrops,
    /// Multicast Data decapsulated, over all tunnels (tunnels also count their own).
    pub data_packets: u64,
    /// Bytes of inner datagrams decapsulated, over all tunnels.
    pub data_bytes: u64,
    /// Events dropped because the queue held `max_queued_events`.
    pub events_dropped: u64,
    /// Messages we failed to encode (a bug if ever non-zero).
    pub encode_errors: u64,
}

/// Per-tunnel data counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TunnelCounters {
    /// Inner datagrams decapsulated.
    pub packets: u64,
    /// Their bytes (inner IP datagram lengths).
    pub bytes: u64,
    /// Data from this relay dropped, by reason.
    pub drops: DataDrops,
    /// Membership Queries accepted.
    pub queries: u64,
    /// Membership Updates sent.
    pub updates: u64,
    /// Requests sent (first transmissions and retransmissions).
    pub requests: u64,
    /// Relay Discoveries sent.
    pub discoveries: u64,
    /// Teardowns sent.
    pub teardowns: u64,
}
