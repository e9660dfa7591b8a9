//! The gateway's state for `status` output (serde).

use std::net::{IpAddr, SocketAddr};

use mcast_wire::SourceGroup;
use serde::Serialize;

use super::counters::{Counters, TunnelCounters};

/// Whole-gateway status.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Every tunnel, ordered by relay.
    pub tunnels: Vec<TunnelStatus>,
    /// (S,G)s joined over all tunnels.
    pub joined_sgs: usize,
    /// Gateway-wide counters.
    pub counters: Counters,
    /// True after `shutdown`.
    pub shut_down: bool,
}

/// Where a tunnel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelState {
    /// Waiting for a Relay Advertisement.
    Discovering,
    /// Waiting for a Membership Query (no usable MAC yet).
    Requesting,
    /// Holding a Response MAC for at least one family with (S,G)s.
    Established,
    /// Relay known, nothing joined.
    Idle,
    /// Sending the last BLOCK records and Teardowns.
    Closing,
}

/// One tunnel.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelStatus {
    /// The tunnel key (the relay address given to `add_tunnel`).
    pub relay: IpAddr,
    /// Where Relay Discovery goes (`None`: Requests go straight to `relay`, DRIAD D = 1).
    pub discovery: Option<IpAddr>,
    /// The address Requests go to (advertised, or `relay`); `None` while discovering.
    pub relay_address: Option<IpAddr>,
    /// The state.
    pub state: TunnelState,
    /// Joined (S,G)s, sorted.
    pub sgs: Vec<SourceGroup>,
    /// Per-family Request/Query cycles (only the families in use).
    pub families: Vec<FamilyStatus>,
    /// Our endpoint as the relay reported it (G flag), if it did.
    pub gateway_endpoint: Option<SocketAddr>,
    /// Relay Discoveries sent in the current (unanswered) streak.
    pub discovery_attempts: u32,
    /// The failure reported last, until the relay answers again.
    pub failed: Option<String>,
    /// Seconds since the tunnel was added.
    pub uptime_secs: f64,
    /// Seconds until the no-traffic check, if armed.
    pub no_traffic_check_in_secs: Option<f64>,
    /// Counters.
    pub counters: TunnelCounters,
}

/// One family's Request/Query/Update cycle.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyStatus {
    /// `ipv4` (P = 0, IGMPv3) or `ipv6` (P = 1, MLDv2).
    pub family: &'static str,
    /// (S,G)s of this family.
    pub sgs: usize,
    /// Outstanding Request nonce (hex), if waiting for a Query.
    pub request_nonce: Option<String>,
    /// Requests sent in the current unanswered streak.
    pub request_attempts: u32,
    /// Response MAC of the last Query (hex, 12 digits).
    pub mac: Option<String>,
    /// Request Nonce of the last Query (hex).
    pub nonce: Option<String>,
    /// Seconds since that Query.
    pub mac_age_secs: Option<f64>,
    /// Query interval from its QQIC.
    pub query_interval_secs: Option<f64>,
    /// Robustness (QRV) from it.
    pub robustness: Option<u8>,
    /// Seconds until the next periodic Request.
    pub next_refresh_secs: Option<f64>,
    /// Membership changes still to be (re)sent.
    pub pending_changes: usize,
}
