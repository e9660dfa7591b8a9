//! Message and drop counters of the relay.

use std::collections::BTreeMap;
use std::fmt;

use mcast_wire::amt::MessageType;
use serde::{Serialize, Serializer};

/// Why a datagram, or one record of a Membership Update, was not acted on.
///
/// Datagram-level reasons make [`crate::relay::Relay::handle_datagram`] return `Err`;
/// record-level ones (marked *record*) skip one group record (or one source of it) while the
/// rest of the Update is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// Not a decodable AMT message (short, version not 0, bad length).
    Malformed,
    /// An AMT message a relay never receives (Advertisement, Query, Data).
    UnexpectedType,
    /// A message type RFC 7450 does not define.
    UnknownType,
    /// The source (or, for a Teardown, the gateway endpoint it names) cannot be a gateway:
    /// unspecified, multicast or broadcast address, or port 0.
    BadSource,
    /// The Response MAC does not verify for (source address, source port, nonce) under the
    /// current or the previous secret: forged, from another endpoint (NAT rebinding, another
    /// port), or issued more than one rotation period before the last rotation.
    BadMac,
    /// A valid MAC with a nonce that is not current for this endpoint: the endpoint has sent
    /// a newer Request since (a replayed Update or Teardown from an older cycle).
    StaleNonce,
    /// The encapsulated report does not parse, or is not IGMPv3/MLDv2.
    BadReport,
    /// An Update from a new gateway endpoint while the relay is at capacity (the Query told
    /// it so with the L flag).
    AtCapacity,
    /// The transmit queue is full (the driver is not draining it).
    QueueFull,
    /// A Request or Discovery beyond the reply rate limit
    /// ([`crate::relay::Config::max_replies_per_sec`]).
    RateLimited,
    /// *Record*: an EXCLUDE-mode record (MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE_MODE): any-source
    /// multicast, which this SSM relay does not serve.
    ExcludeMode,
    /// *Record*: an unknown record type.
    UnknownRecord,
    /// *Record*: a group that is not a routable multicast group (not multicast, link-local
    /// scope such as 224.0.0.0/24 or ff02::/16), or a source that is not unicast.
    BadRecord,
    /// *Record*: a new (S,G) beyond the per-gateway limit.
    TooManyGatewaySgs,
    /// *Record*: a new (S,G) beyond the relay-wide limit.
    TooManySgs,
}

impl DropReason {
    /// The kebab-case name used in logs and the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnexpectedType => "unexpected-type",
            DropReason::UnknownType => "unknown-type",
            DropReason::BadSource => "bad-source",
            DropReason::BadMac => "bad-mac",
            DropReason::StaleNonce => "stale-nonce",
            DropReason::BadReport => "bad-report",
            DropReason::AtCapacity => "at-capacity",
            DropReason::QueueFull => "queue-full",
            DropReason::RateLimited => "rate-limited",
            DropReason::ExcludeMode => "exclude-mode",
            DropReason::UnknownRecord => "unknown-record",
            DropReason::BadRecord => "bad-record",
            DropReason::TooManyGatewaySgs => "too-many-gateway-sgs",
            DropReason::TooManySgs => "too-many-sgs",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An AMT message type (the 4-bit Type field) as a counter key; serialised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmtType(pub u8);

impl From<MessageType> for AmtType {
    fn from(t: MessageType) -> AmtType {
        AmtType(u8::from(t))
    }
}

impl fmt::Display for AmtType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match MessageType::from(self.0) {
            MessageType::RelayDiscovery => f.write_str("relay-discovery"),
            MessageType::RelayAdvertisement => f.write_str("relay-advertisement"),
            MessageType::Request => f.write_str("request"),
            MessageType::MembershipQuery => f.write_str("membership-query"),
            MessageType::MembershipUpdate => f.write_str("membership-update"),
            MessageType::MulticastData => f.write_str("multicast-data"),
            MessageType::Teardown => f.write_str("teardown"),
            MessageType::Unknown(n) => write!(f, "type-{n}"),
        }
    }
}

impl Serialize for AmtType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Everything the relay counts. Only non-zero counts are present in the maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// AMT messages received, by type (decodable header).
    pub received: BTreeMap<AmtType, u64>,
    /// AMT control messages queued for sending, by type (Data is counted by the driver).
    pub sent: BTreeMap<AmtType, u64>,
    /// Datagrams and records not acted on, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Membership Updates accepted (MAC and nonce valid, report applied).
    pub updates_accepted: u64,
    /// Queries sent with the L flag (capacity reached).
    pub limit_queries: u64,
    /// Teardowns accepted that removed a gateway's state.
    pub teardowns_accepted: u64,
    /// Teardowns with a valid MAC for an endpoint that had no state (already gone).
    pub teardowns_without_state: u64,
    /// Memberships that expired without a refresh (Group Membership Interval).
    pub memberships_expired: u64,
    /// Times the MAC secret was replaced.
    pub secret_rotations: u64,
    /// Native packets (or runs of packets) looked up with at least one subscriber.
    pub data_packets: u64,
    /// Bytes of those native packets (one copy, before replication).
    pub data_bytes: u64,
    /// Native packets for an (S,G) no gateway subscribes to.
    pub data_unsubscribed: u64,
}

impl Counters {
    /// Messages of type `t` received.
    pub fn received(&self, t: MessageType) -> u64 {
        self.received.get(&AmtType::from(t)).copied().unwrap_or(0)
    }

    /// Messages of type `t` sent.
    pub fn sent(&self, t: MessageType) -> u64 {
        self.sent.get(&AmtType::from(t)).copied().unwrap_or(0)
    }

    /// Datagrams or records dropped for `reason`.
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
