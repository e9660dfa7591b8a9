//! Gateway settings: retransmission and refresh timers, report repetition, limits.

use std::time::Duration;

/// Gateway settings. [`Config::default`] gives the RFC 7450 / RFC 8777 values except where
/// noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// First retransmission timeout of Relay Discovery and Request: 1 s. Retransmission `n`
    /// (0-based) waits a uniformly random time in `[initial, min(initial · 2^n, max)]`
    /// (RFC 7450 §5.2.3.4.3, quoted in RFC 8777 §3.5).
    pub retransmit_initial: Duration,
    /// Upper bound of the retransmission timeout: 120 s (same section).
    pub retransmit_max: Duration,
    /// Unanswered Relay Discoveries after which the tunnel reports
    /// `RelayFailed { reason: NoAdvertisement }` (default 3: about 3 to 7 s). Discovery goes
    /// on with backoff afterwards; failing over is the caller's decision.
    pub discovery_attempts: u32,
    /// Unanswered Requests after which the tunnel reports `RelayFailed { reason: NoQuery }`
    /// (default 3). A tunnel that found its relay by discovery then starts discovery again
    /// (like Linux), one with a configured relay (DRIAD D = 1) keeps sending Requests.
    pub request_attempts: u32,
    /// Repetitions of an unsolicited report are spaced by a uniformly random delay in
    /// `[report_interval_min, report_interval_max]`. RFC 3376 §5.1 / RFC 3810 §6.1 ask for a
    /// random delay in `[0, Unsolicited Report Interval]` with a 1 s default; we use
    /// 100–500 ms (default) so a lost Update is repaired quickly while two copies never
    /// leave back to back.
    pub report_interval_min: Duration,
    /// See `report_interval_min`.
    pub report_interval_max: Duration,
    /// No-traffic detection (RFC 8777 §3.3.1): while joined, a tunnel that receives no
    /// Multicast Data for a random time in `[initial, min(initial · 2^n, 120 s)]` reports
    /// `NoTraffic` (n = consecutive silent periods) and runs a fresh Request/Query/Update
    /// exchange, which repairs the relay's state after a relay restart. `None` disables it.
    /// Default 4 s.
    pub no_traffic_initial: Option<Duration>,
    /// Upper bound of the no-traffic timeout: 120 s (RFC 8777 §3.3.1, the RFC 4787 NAT
    /// mapping minimum).
    pub no_traffic_max: Duration,
    /// Inner datagrams whose TTL / hop limit is below this are dropped and counted as
    /// `TtlExpired` (default 2: the kernel forwards from the TUN only when it can decrement
    /// the TTL and still send, protocols.md §A1 "Forwarding decapsulated data natively").
    /// 1 keeps TTL-1 packets for local receivers on the ingest host; 0 disables the check.
    pub min_inner_ttl: u8,
    /// Send a Teardown (after the BLOCK records) when the last (S,G) of a tunnel leaves, so
    /// the relay stops at once instead of when its state expires. Default true.
    pub teardown_on_last_leave: bool,
    /// At most this many tunnels (relays); `add_tunnel` beyond fails with `TooManyTunnels`.
    pub max_tunnels: usize,
    /// At most this many (S,G)s over all tunnels; `join` beyond fails with `TooManySgs`.
    pub max_sgs: usize,
    /// Largest encapsulated report datagram (default 1400, see
    /// [`crate::membership::MAX_REPORT_DATAGRAM`]).
    pub max_report_datagram: usize,
    /// Events queued for the driver beyond this are dropped (counted); a bound under
    /// pathological churn when the driver does not poll events.
    pub max_queued_events: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            retransmit_initial: Duration::from_secs(1),
            retransmit_max: Duration::from_secs(120),
            discovery_attempts: 3,
            request_attempts: 3,
            report_interval_min: Duration::from_millis(100),
            report_interval_max: Duration::from_millis(500),
            no_traffic_initial: Some(Duration::from_secs(4)),
            no_traffic_max: Duration::from_secs(120),
            min_inner_ttl: 2,
            teardown_on_last_leave: true,
            max_tunnels: 10_000,
            max_sgs: 100_000,
            max_report_datagram: crate::membership::MAX_REPORT_DATAGRAM,
            max_queued_events: 65_536,
        }
    }
}

/// A [`Config`] the gateway cannot work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A timer is zero or an upper bound is below its lower bound.
    BadTimer(&'static str),
    /// An attempt count is zero.
    ZeroAttempts(&'static str),
    /// `max_report_datagram` cannot hold one record with one source.
    ReportTooSmall,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::BadTimer(what) => write!(f, "invalid timer setting: {what}"),
            ConfigError::ZeroAttempts(what) => write!(f, "{what} must be at least 1"),
            ConfigError::ReportTooSmall => f.write_str("max_report_datagram is too small for one group record"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.retransmit_initial.is_zero() {
            return Err(ConfigError::BadTimer("retransmit_initial is zero"));
        }
        if self.retransmit_max < self.retransmit_initial {
            return Err(ConfigError::BadTimer("retransmit_max is below retransmit_initial"));
        }
        if self.report_interval_max < self.report_interval_min {
            return Err(ConfigError::BadTimer("report_interval_max is below report_interval_min"));
        }
        if let Some(initial) = self.no_traffic_initial {
            if initial.is_zero() {
                return Err(ConfigError::BadTimer("no_traffic_initial is zero"));
            }
            if self.no_traffic_max < initial {
                return Err(ConfigError::BadTimer("no_traffic_max is below no_traffic_initial"));
            }
        }
        if self.discovery_attempts == 0 {
            return Err(ConfigError::ZeroAttempts("discovery_attempts"));
        }
        if self.request_attempts == 0 {
            return Err(ConfigError::ZeroAttempts("request_attempts"));
        }
        // IPv6: 40 + 8 (HBH) + 8 (MLD header) + 20 (record) + 16 (source).
        if self.max_report_datagram < 92 {
            return Err(ConfigError::ReportTooSmall);
        }
        Ok(())
    }
}
