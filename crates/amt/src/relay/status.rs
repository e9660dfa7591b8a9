//! A serialisable snapshot of the relay for `amt-relay status`.
//!
//! Times are relative to the `now` given to [`crate::relay::Relay::status`], in seconds
//! (fractional, millisecond precision).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mcast_wire::SourceGroup;
use serde::Serialize;

use super::counters::Counters;

/// The whole relay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The relay addresses.
    pub relay_addresses: Vec<IpAddr>,
    /// Query Interval sent in QQIC, seconds.
    pub query_interval_secs: f64,
    /// Robustness sent in QRV.
    pub robustness: u8,
    /// Group Membership Interval (membership timeout), seconds.
    pub membership_interval_secs: f64,
    /// Most gateway endpoints with state.
    pub capacity: usize,
    /// Whether the relay is at capacity (new endpoints get the L flag).
    pub at_capacity: bool,
    /// Most (S,G)s per gateway.
    pub max_sgs_per_gateway: usize,
    /// Most (S,G)s in total.
    pub max_sgs: usize,
    /// Secret rotation period, seconds.
    pub secret_rotation_secs: f64,
    /// Age of the current secret, seconds.
    pub secret_age_secs: f64,
    /// Whether MACs under the previous secret are still accepted.
    pub previous_secret: bool,
    /// Gateways with state, by endpoint.
    pub gateways: Vec<GatewayStatus>,
    /// Subscribed (S,G)s (each joined upstream).
    pub channels: Vec<ChannelStatus>,
    /// Endpoints recently removed whose latest nonce is remembered against replays.
    pub recently_removed: usize,
    /// Counters.
    pub counters: Counters,
}

/// One gateway endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayStatus {
    /// The gateway's address and port as the relay sees them.
    pub gateway: SocketAddr,
    /// The relay address (and port) it talks to: Data comes from there.
    pub relay: SocketAddr,
    /// Nonce of its latest Request.
    pub request_nonce: String,
    /// Seconds since its state was created.
    pub uptime_secs: f64,
    /// Seconds since its last accepted Update.
    pub last_update_secs: f64,
    /// Updates accepted from it.
    pub updates: u64,
    /// Its (S,G)s, sorted.
    pub sgs: Vec<MembershipStatus>,
}

/// One (S,G) of a gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipStatus {
    /// The (S,G).
    pub sg: SourceGroup,
    /// Seconds until it expires without a refresh.
    pub expires_in_secs: f64,
}

/// One subscribed (S,G).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelStatus {
    /// The (S,G).
    pub sg: SourceGroup,
    /// Gateways subscribed.
    pub subscribers: usize,
    /// Native packets looked up for it (each replicated to every subscriber).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Seconds since the first subscriber came.
    pub uptime_secs: f64,
}

/// Seconds with millisecond precision.
pub(crate) fn round_ms(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

pub(crate) fn secs_since(now: Instant, then: Instant) -> f64 {
    round_ms(now.saturating_duration_since(then))
}

pub(crate) fn secs_until(now: Instant, then: Instant) -> f64 {
    round_ms(then.saturating_duration_since(now))
}
