//! Relay configuration.

use std::net::IpAddr;
use std::time::Duration;

use crate::membership::{DEFAULT_QUERY_INTERVAL, DEFAULT_ROBUSTNESS};

/// What the relay is told at start-up. Validated by [`crate::relay::Relay::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The relay's unicast addresses: the addresses it advertises and where gateways send
    /// Requests and Updates. At least one.
    pub relay_addresses: Vec<IpAddr>,
    /// Explicit answers for Relay Discovery: a Discovery received on the first address is
    /// answered with the second as the Relay Address. Without an entry the relay advertises
    /// the receiving address itself if it is a relay address, else the first relay address of
    /// the receiving address's family, else the first relay address (the tunnel family does
    /// not have to match: RFC 8777 §2.2).
    pub advertise: Vec<(IpAddr, IpAddr)>,
    /// Querier's Query Interval put in QQIC: how often gateways start a new Request/Query
    /// exchange (RFC 7450 §5.2.3.5; the IGMPv3/MLDv2 default is 125 s).
    pub query_interval: Duration,
    /// Querier's Robustness Variable put in QRV (RFC 3376 §8.1, default 2).
    pub robustness: u8,
    /// Maximum Response Delay put in the General Query (RFC 3376 §8.3 Query Response
    /// Interval, default 10 s).
    pub max_response: Duration,
    /// How often the MAC secret is replaced. A MAC stays valid under the secret that issued it
    /// and for one more period after the next rotation (so between one and two periods).
    /// Linux rotates every 60 s.
    pub secret_rotation: Duration,
    /// Most gateway endpoints (address, port) with state at once. A Query to a new endpoint
    /// beyond this carries the L flag (RFC 7450 §5.1.4.4) and its Updates are ignored.
    pub capacity: usize,
    /// Most (S,G)s one gateway may subscribe to.
    pub max_sgs_per_gateway: usize,
    /// Most distinct (S,G)s subscribed across all gateways (each is one upstream join).
    pub max_sgs: usize,
    /// Set the G flag with the gateway's address and port as seen in Queries (RFC 7450
    /// §5.1.4.5: a relay that supports Teardown SHOULD).
    pub gateway_fields: bool,
    /// Most Membership Queries (and Advertisements) sent per second, with a burst of as many;
    /// further Requests and Discoveries are dropped and counted. A Query is about ten times
    /// the size of the Request that asks for it, and Requests are unauthenticated, so this
    /// caps how much the relay can be used to reflect traffic at a spoofed address. 0: no
    /// limit.
    pub max_replies_per_sec: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            relay_addresses: Vec::new(),
            advertise: Vec::new(),
            query_interval: DEFAULT_QUERY_INTERVAL,
            robustness: DEFAULT_ROBUSTNESS,
            max_response: Duration::from_secs(10),
            secret_rotation: Duration::from_secs(60),
            capacity: 1000,
            max_sgs_per_gateway: 1000,
            max_sgs: 10_000,
            gateway_fields: true,
            max_replies_per_sec: 10_000,
        }
    }
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// No relay address.
    NoRelayAddress,
    /// A relay address that cannot be a unicast source (multicast, unspecified, broadcast).
    BadRelayAddress(IpAddr),
    /// An `advertise` entry whose advertised address is not one of the relay addresses.
    AdvertisedNotRelay(IpAddr),
    /// A zero duration, or a query interval or robustness outside what QQIC / QRV can carry
    /// (1 s to 31744 s; 1 to 7).
    BadTiming(&'static str),
    /// A zero limit.
    ZeroLimit(&'static str),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NoRelayAddress => f.write_str("at least one relay address is needed"),
            ConfigError::BadRelayAddress(a) => write!(f, "{a} cannot be a relay address (not unicast)"),
            ConfigError::AdvertisedNotRelay(a) => write!(f, "advertised address {a} is not a relay address"),
            ConfigError::BadTiming(what) => write!(f, "invalid {what}"),
            ConfigError::ZeroLimit(what) => write!(f, "{what} must be at least 1"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The largest interval QQIC can express: mantissa 15, exponent 7 (RFC 3376 §4.1.7).
pub const MAX_QUERY_INTERVAL: Duration = Duration::from_secs(31744);

impl Config {
    /// A configuration with defaults and these relay addresses.
    pub fn new(relay_addresses: Vec<IpAddr>) -> Config {
        Config { relay_addresses, ..Config::default() }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.relay_addresses.is_empty() {
            return Err(ConfigError::NoRelayAddress);
        }
        for addr in &self.relay_addresses {
            let bad =
                addr.is_multicast() || addr.is_unspecified() || matches!(addr, IpAddr::V4(v4) if v4.is_broadcast());
            if bad {
                return Err(ConfigError::BadRelayAddress(*addr));
            }
        }
        for (_, advertised) in &self.advertise {
            if !self.relay_addresses.contains(advertised) {
                return Err(ConfigError::AdvertisedNotRelay(*advertised));
            }
        }
        if self.query_interval < Duration::from_secs(1) || self.query_interval > MAX_QUERY_INTERVAL {
            return Err(ConfigError::BadTiming("query interval (1 s to 31744 s)"));
        }
        if !(1..=7).contains(&self.robustness) {
            return Err(ConfigError::BadTiming("robustness (1 to 7)"));
        }
        if self.max_response.is_zero() || self.max_response > Duration::from_secs(3174) {
            return Err(ConfigError::BadTiming("maximum response delay (up to 3174 s)"));
        }
        if self.secret_rotation < Duration::from_secs(1) {
            return Err(ConfigError::BadTiming("secret rotation period (at least 1 s)"));
        }
        if self.capacity == 0 {
            return Err(ConfigError::ZeroLimit("capacity"));
        }
        if self.max_sgs_per_gateway == 0 {
            return Err(ConfigError::ZeroLimit("max (S,G)s per gateway"));
        }
        if self.max_sgs == 0 {
            return Err(ConfigError::ZeroLimit("max (S,G)s"));
        }
        Ok(())
    }

    /// Group Membership Interval (RFC 3376 §8.4, RFC 3810 §9.4): Robustness × Query Interval
    /// plus Query Response Interval. A membership not refreshed by a valid Update within it
    /// expires.
    pub fn membership_interval(&self) -> Duration {
        self.query_interval * u32::from(self.robustness) + self.max_response
    }
}
