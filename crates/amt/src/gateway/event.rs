//! What the gateway hands to its driver: datagrams to send and events to act on or log.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::membership::Family;

/// A control message to send: a UDP datagram from the gateway's socket of the destination's
/// family (the same socket for every message to a relay: RFC 7450 §5.1.5 requires an Update
/// to come from the address and port of the Request). The UDP checksum must be non-zero,
/// which the kernel does by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Relay (or discovery) address, port 2268.
    pub destination: SocketAddr,
    /// The AMT message.
    pub payload: Vec<u8>,
}

/// Why a relay is reported as failed. The gateway keeps retrying with backoff; whether to
/// move the (S,G)s to another relay is the caller's decision (RFC 8777 §3.3 hold-downs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// `discovery_attempts` Relay Discoveries got no Advertisement.
    NoAdvertisement,
    /// `request_attempts` Requests (first handshake or periodic refresh) got no Query.
    NoQuery,
    /// The relay answered with the L flag while we had no state on it: it accepts no new
    /// gateways (RFC 7450 §5.1.4.4). RFC 8777 §3.3.5 asks the caller to avoid the relay for
    /// about 10 minutes.
    Limit,
    /// The Advertisement names a relay address that another tunnel already uses.
    RelayInUse,
}

impl FailReason {
    /// The kebab-case name used in logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NoAdvertisement => "no-advertisement",
            FailReason::NoQuery => "no-query",
            FailReason::Limit => "limit",
            FailReason::RelayInUse => "relay-in-use",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a tunnel stopped carrying state on its relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The last (S,G) left; the tunnel stays registered and reopens on the next join.
    LastLeave,
    /// `remove_tunnel`.
    Removed,
    /// `shutdown`.
    Shutdown,
}

impl CloseReason {
    /// The kebab-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::LastLeave => "last-leave",
            CloseReason::Removed => "removed",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Something the driver (driad-ingest) may act on or log. `relay` is always the tunnel key
/// given to `add_tunnel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Relay Advertisement arrived: Requests now go to `address`.
    RelayDiscovered {
        /// The tunnel.
        relay: IpAddr,
        /// The advertised relay address.
        address: IpAddr,
    },
    /// The first valid Membership Query without the L flag for `family` in this tunnel's
    /// current run (RFC 8777 §3.2.3: this is what "connected" means). Repeated after a
    /// failure or a close.
    TunnelEstablished {
        /// The tunnel.
        relay: IpAddr,
        /// Which Request/Query cycle (P flag).
        family: Family,
    },
    /// The relay is failing; reported once per failure streak. The tunnel keeps retrying.
    RelayFailed {
        /// The tunnel.
        relay: IpAddr,
        /// What failed.
        reason: FailReason,
    },
    /// The relay set the L flag on a Query while we already hold state on it: it takes no
    /// new gateways, but keeps serving us (RFC 7450 §5.1.4.4: the flag may be ignored).
    LimitReached {
        /// The tunnel.
        relay: IpAddr,
        /// The Query's family.
        family: Family,
    },
    /// Joined, but no Multicast Data arrived for `silent_for` (RFC 8777 §3.3.1). A fresh
    /// handshake was started; failing over is the caller's decision.
    NoTraffic {
        /// The tunnel.
        relay: IpAddr,
        /// How long the tunnel has been silent.
        silent_for: Duration,
    },
    /// The relay saw us at a new address or port (G flag fields changed, e.g. NAT
    /// rebinding); a Teardown was sent for the old endpoint (RFC 7450 §5.2.3.7).
    GatewayEndpointChanged {
        /// The tunnel.
        relay: IpAddr,
        /// The previous endpoint.
        old: SocketAddr,
        /// The new one.
        new: SocketAddr,
    },
    /// The tunnel's relay state was given up (BLOCK records and, when possible, a Teardown
    /// were sent).
    TunnelClosed {
        /// The tunnel.
        relay: IpAddr,
        /// Why.
        reason: CloseReason,
    },
}

impl Event {
    /// The tunnel the event is about.
    pub fn relay(&self) -> IpAddr {
        match self {
            Event::RelayDiscovered { relay, .. }
            | Event::TunnelEstablished { relay, .. }
            | Event::RelayFailed { relay, .. }
            | Event::LimitReached { relay, .. }
            | Event::NoTraffic { relay, .. }
            | Event::GatewayEndpointChanged { relay, .. }
            | Event::TunnelClosed { relay, .. } => *relay,
        }
    }
}

fn family_str(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4/IGMPv3",
        Family::V6 => "IPv6/MLDv2",
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::RelayDiscovered { relay, address } => write!(f, "relay {relay}: advertised relay address {address}"),
            Event::TunnelEstablished { relay, family } => {
                write!(f, "relay {relay}: tunnel established ({})", family_str(*family))
            }
            Event::RelayFailed { relay, reason } => write!(f, "relay {relay}: failed ({reason})"),
            Event::LimitReached { relay, family } => {
                write!(f, "relay {relay}: at capacity (L flag, {}), keeping our existing state", family_str(*family))
            }
            Event::NoTraffic { relay, silent_for } => {
                write!(f, "relay {relay}: no data for {:.1} s, refreshing the tunnel", silent_for.as_secs_f64())
            }
            Event::GatewayEndpointChanged { relay, old, new } => {
                write!(f, "relay {relay}: our endpoint changed from {old} to {new}; old one torn down")
            }
            Event::TunnelClosed { relay, reason } => write!(f, "relay {relay}: tunnel closed ({})", reason.as_str()),
        }
    }
}
