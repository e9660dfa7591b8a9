//! Packet and drop counters.

use std::collections::BTreeMap;
use std::fmt;

use mcast_wire::pim::MessageType;
use serde::{Serialize, Serializer};

/// Why a packet, or one (S,G) entry of a Join/Prune, was not acted on.
///
/// Packet-level reasons make [`crate::Engine::handle_packet`] return `Err`; entry-level
/// reasons (marked *entry*) drop one source entry of a Join/Prune and are reported as
/// [`crate::Event::EntryIgnored`] while the rest of the message is processed (RFC 7761 §4.5:
/// each source is "considered individually"; original-system.md §9.2 row 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// The packet is not a decodable PIMv2 message (short, wrong version, bad address
    /// encoding, counts running past the end).
    Malformed,
    /// The IPv4 PIM checksum does not verify (RFC 7761 §4.9).
    BadChecksum,
    /// No such interface (the driver passed an id it never added, or already removed).
    UnknownInterface,
    /// The IP source or destination is not of the interface's family.
    WrongFamily,
    /// Our own packet, looped back (its source is one of our addresses).
    OwnPacket,
    /// A Join/Prune from an address we have no Hello from (RFC 7761 §4.5: "SHOULD be
    /// discarded without further processing").
    NotNeighbor,
    /// A Join/Prune whose Upstream Neighbor Address is not one of our addresses on the
    /// receiving interface: another router's business (RFC 7761 §4.5.2). Normal on a LAN
    /// with several upstream routers.
    WrongUpstream,
    /// A Hello from a new neighbour beyond `max_neighbors` on the interface.
    TooManyNeighbors,
    /// A Join/Prune with an Encoded-Source mask length other than 32 / 128: RFC 7761 §4.9.1
    /// says a router SHOULD ignore such messages, so the whole message is dropped.
    BadSourceMask,
    /// A PIM message type this engine does not act on (Register, Assert, Bootstrap, …).
    UnsupportedType,
    /// *Entry*: the group is outside the configured SSM ranges.
    NotSsm,
    /// *Entry*: a (*,G) or (S,G,rpt) entry (W or R bit set); an SSM-only router has no
    /// (*,G) or (S,G,rpt) state machines (RFC 7761 §4.8.2) and ignores them.
    WildcardOrRpt,
    /// *Entry*: the S (Sparse) bit is clear; it MUST be 1 for PIM-SM (RFC 7761 §4.9.1).
    NotSparse,
    /// *Entry*: the group is not a single forwardable multicast group of the interface's
    /// family (not multicast; mask length not 32 / 128, i.e. a range; Bidir bit set;
    /// link-local scope such as 224.0.0.0/24 or ff02::/16).
    BadGroup,
    /// *Entry*: the source is not a unicast address of the interface's family.
    BadSource,
    /// *Entry*: a Join that would create new state with Holdtime 0 (it would expire at once).
    ZeroHoldtime,
    /// *Entry*: a Join for a new (S,G) beyond `max_joined_sgs`.
    TooManyStates,
}

impl DropReason {
    /// The kebab-case name used in logs and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad-checksum",
            DropReason::UnknownInterface => "unknown-interface",
            DropReason::WrongFamily => "wrong-family",
            DropReason::OwnPacket => "own-packet",
            DropReason::NotNeighbor => "not-neighbor",
            DropReason::WrongUpstream => "wrong-upstream",
            DropReason::TooManyNeighbors => "too-many-neighbors",
            DropReason::BadSourceMask => "bad-source-mask",
            DropReason::UnsupportedType => "unsupported-type",
            DropReason::NotSsm => "not-ssm",
            DropReason::WildcardOrRpt => "wildcard-or-rpt",
            DropReason::NotSparse => "not-sparse",
            DropReason::BadGroup => "bad-group",
            DropReason::BadSource => "bad-source",
            DropReason::ZeroHoldtime => "zero-holdtime",
            DropReason::TooManyStates => "too-many-states",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PIM message type number (0 to 15) as a counter key; serialised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PimType(pub u8);

impl From<MessageType> for PimType {
    fn from(t: MessageType) -> PimType {
        PimType(u8::from(t))
    }
}

impl fmt::Display for PimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match MessageType::from(self.0) {
            MessageType::Hello => f.write_str("hello"),
            MessageType::Register => f.write_str("register"),
            MessageType::RegisterStop => f.write_str("register-stop"),
            MessageType::JoinPrune => f.write_str("join-prune"),
            MessageType::Bootstrap => f.write_str("bootstrap"),
            MessageType::Assert => f.write_str("assert"),
            MessageType::Graft => f.write_str("graft"),
            MessageType::GraftAck => f.write_str("graft-ack"),
            MessageType::CandidateRpAdvertisement => f.write_str("candidate-rp-advertisement"),
            MessageType::Unknown(n) => write!(f, "type-{n}"),
        }
    }
}

impl Serialize for PimType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Everything the engine counts. Only non-zero counts are present in the maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// PIM messages received by type (decodable header, not our own, checksum not yet checked).
    pub received: BTreeMap<PimType, u64>,
    /// PIM messages handed out by `poll_transmit`'s queue, by type.
    pub sent: BTreeMap<PimType, u64>,
    /// Packets and Join/Prune entries not acted on, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// (S,G) Join entries acted on.
    pub join_entries: u64,
    /// (S,G) Prune entries acted on.
    pub prune_entries: u64,
    /// Messages we failed to encode (a bug if ever non-zero).
    pub encode_errors: u64,
}

impl Counters {
    /// Messages of type `t` received.
    pub fn received(&self, t: MessageType) -> u64 {
        self.received.get(&PimType::from(t)).copied().unwrap_or(0)
    }

    /// Messages of type `t` sent.
    pub fn sent(&self, t: MessageType) -> u64 {
        self.sent.get(&PimType::from(t)).copied().unwrap_or(0)
    }

    /// Packets or entries dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }

    pub(crate) fn count_received(&mut self, t: MessageType) {
        *self.received.entry(t.into()).or_default() += 1;
    }

    pub(crate) fn count_sent(&mut self, t: MessageType) {
        *self.sent.entry(t.into()).or_default() += 1;
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        *self.dropped.entry(reason).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_serialize_by_name() {
        let mut c = Counters::default();
        c.count_received(MessageType::Hello);
        c.count_received(MessageType::Unknown(12));
        c.count_sent(MessageType::JoinPrune);
        c.count_drop(DropReason::WildcardOrRpt);
        c.count_drop(DropReason::WildcardOrRpt);
        assert_eq!(c.received(MessageType::Hello), 1);
        assert_eq!(c.sent(MessageType::Hello), 0);
        assert_eq!(c.dropped(DropReason::WildcardOrRpt), 2);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["received"]["hello"], 1);
        assert_eq!(json["received"]["type-12"], 1);
        assert_eq!(json["sent"]["join-prune"], 1);
        assert_eq!(json["dropped"]["wildcard-or-rpt"], 2);
        for r in [DropReason::Malformed, DropReason::TooManyStates, DropReason::BadSourceMask] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
