//! A serialisable snapshot of the engine for `pimwatch status`.
//!
//! Times are relative to the `now` given to [`crate::Engine::status`], in seconds (fractional,
//! millisecond precision); `None` (JSON `null`) means "never".

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::counters::Counters;
use crate::types::{InterfaceId, SourceGroup};

/// The downstream (S,G) state of one interface (RFC 7761 §4.5.2). NoInfo is "no entry".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DownstreamState {
    /// Joined; the Expiry Timer runs.
    Join,
    /// Pruned by one neighbour, waiting J/P_Override_Interval for another to override.
    /// Still forwarding.
    PrunePending,
}

/// One downstream (S,G) entry with absolute timer deadlines (for tests and the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownstreamInfo {
    /// Join or Prune-Pending.
    pub state: DownstreamState,
    /// When the Expiry Timer fires; `None` for a Holdtime of 0xffff (infinite).
    pub expires: Option<Instant>,
    /// When the Prune-Pending Timer fires (Prune-Pending only).
    pub prune_pending_until: Option<Instant>,
    /// Held from the joinfile by [`crate::Engine::restore`], not yet confirmed by a Join.
    pub restored: bool,
    /// When this entry left NoInfo.
    pub since: Instant,
}

/// The whole engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The configured SSM ranges.
    pub ssm_ranges: Vec<String>,
    /// Every interface, in id order.
    pub interfaces: Vec<InterfaceStatus>,
    /// The joined set (union over interfaces), sorted.
    pub joined: Vec<SourceGroup>,
    /// Counters.
    pub counters: Counters,
    /// Whether [`crate::Engine::shutdown`] was called.
    pub shut_down: bool,
}

/// One PIM instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceStatus {
    /// The instance.
    pub id: InterfaceId,
    /// The interface name the driver gave.
    pub name: String,
    /// Our primary address (the Hello source).
    pub address: IpAddr,
    /// Our secondary addresses (the Hello Address List).
    pub secondary: Vec<IpAddr>,
    /// Our Generation ID on this interface.
    pub genid: u32,
    /// Our DR Priority.
    pub dr_priority: u32,
    /// The elected DR (RFC 7761 §4.3.2).
    pub dr: IpAddr,
    /// Whether we are the DR.
    pub i_am_dr: bool,
    /// Seconds since the interface was added.
    pub uptime_secs: f64,
    /// Seconds until our next periodic Hello.
    pub next_hello_secs: Option<f64>,
    /// J/P_Override_Interval(I) in seconds (RFC 7761 §4.3.3, §4.11): the Prune-Pending time.
    pub jp_override_interval_secs: f64,
    /// Neighbours, in address order.
    pub neighbors: Vec<NeighborStatus>,
    /// Downstream (S,G) states, sorted.
    pub sgs: Vec<SgStatus>,
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NeighborStatus {
    /// Its primary address.
    pub address: IpAddr,
    /// Its secondary addresses (Address List option).
    pub secondary: Vec<IpAddr>,
    /// Its Generation ID.
    pub genid: Option<u32>,
    /// Its DR Priority.
    pub dr_priority: Option<u32>,
    /// The Holdtime of its last Hello.
    pub holdtime_secs: u16,
    /// Seconds until it expires; `None` for Holdtime 0xffff.
    pub expires_in_secs: Option<f64>,
    /// Seconds since it came up (or last restarted with a new GenID).
    pub uptime_secs: f64,
    /// Its LAN Prune Delay option: (T bit, propagation delay ms, override interval ms).
    pub lan_prune_delay: Option<LanPruneDelayStatus>,
}

/// A neighbour's LAN Prune Delay option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LanPruneDelayStatus {
    /// T bit.
    pub t_bit: bool,
    /// Propagation_Delay, ms.
    pub propagation_delay_ms: u16,
    /// Override_Interval, ms.
    pub override_interval_ms: u16,
}

/// One downstream (S,G) on one interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SgStatus {
    /// The channel.
    pub sg: SourceGroup,
    /// Join or Prune-Pending.
    pub state: DownstreamState,
    /// Held from the joinfile and not yet confirmed.
    pub restored: bool,
    /// Seconds until the Expiry Timer fires; `None` for an infinite Holdtime.
    pub expires_in_secs: Option<f64>,
    /// Seconds until the Prune-Pending Timer fires.
    pub prune_pending_secs: Option<f64>,
    /// Seconds since the entry left NoInfo.
    pub uptime_secs: f64,
}

/// Seconds from `now` to `at` (0 if past), rounded to milliseconds.
pub(crate) fn secs_until(now: Instant, at: Instant) -> f64 {
    round_ms(at.saturating_duration_since(now))
}

/// Seconds from `at` to `now` (0 if in the future), rounded to milliseconds.
pub(crate) fn secs_since(now: Instant, at: Instant) -> f64 {
    round_ms(now.saturating_duration_since(at))
}

pub(crate) fn round_ms(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}
