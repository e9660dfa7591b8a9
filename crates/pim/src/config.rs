//! Engine configuration: protocol timers (RFC 7761 §4.11), our Hello options and resource limits.

use std::time::Duration;

use crate::range::GroupRange;

/// Largest Hello or Join/Prune holdtime we send, in seconds: 0xffff means "infinite" on the
/// wire (RFC 7761 §4.9.2, §4.9.5), which we never advertise.
pub const MAX_SENT_HOLDTIME_SECS: u64 = 0xfffe;

/// Engine settings. [`Config::default`] gives the RFC 7761 §4.11 defaults except where noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Hello_Period (RFC 7761 §4.11): 30 s.
    pub hello_period: Duration,
    /// Periodic Hellos are sent every `hello_period` minus a uniform random amount up to this
    /// (default 3 s, 10 %), so that routers restarted together do not stay in step. RFC 7761
    /// has no periodic jitter (only the initial and triggered delays); sending a little early
    /// is always safe because neighbours hold us for `hello_holdtime`.
    pub hello_jitter: Duration,
    /// The Holdtime we advertise (Default_Hello_Holdtime = 3.5 × Hello_Period = 105 s,
    /// RFC 7761 §4.11). Whole seconds, 1 to 65534, and longer than `hello_period`.
    pub hello_holdtime: Duration,
    /// Triggered_Hello_Delay: the upper bound of the random delay before the first Hello on an
    /// interface and before a triggered Hello to a new or restarted neighbour (RFC 7761 §4.3.1).
    ///
    /// **Default 100 ms, not the RFC's 5 s.** The delay exists to desynchronise many routers
    /// powering up on one LAN. The ingest device usually faces a single downstream router,
    /// which (FRR 8.4) sends no Join before it has our Hello (lab-notes.md §5.2), so every
    /// millisecond here delays the first Join after a restart. 100 ms keeps a random spread
    /// and is well inside the RFC's range; set it back to 5 s on a crowded LAN.
    pub triggered_hello_delay: Duration,
    /// Our DR Priority (Hello option 19), default 1. Only shown in the status: an SSM
    /// upstream speaker has no DR duties.
    pub dr_priority: u32,
    /// Our Propagation_Delay for the LAN Prune Delay option (RFC 7761 §4.3.3), default 500 ms
    /// (Propagation_delay_default, §4.11). At most 32767 ms (15 bits).
    pub propagation_delay: Duration,
    /// Our Override_Interval for the LAN Prune Delay option, default 2500 ms
    /// (t_override_default, §4.11). At most 65535 ms.
    pub override_interval: Duration,
    /// The T bit of our LAN Prune Delay option (we can disable Join suppression). We send no
    /// Joins, so this only matters to other routers' Suppression_Enabled; default false.
    pub t_bit: bool,
    /// J/P_HoldTime (3.5 × t_periodic = 210 s, RFC 7761 §4.11): the Holdtime of the
    /// PruneEchoes we send. Whole seconds, 1 to 65534.
    pub jp_holdtime: Duration,
    /// Groups for which (S,G) Joins are accepted. Default 232.0.0.0/8 and ff3x::/32
    /// (RFC 4607). Widen it to accept other groups as SSM, for example `232.0.0.0/7` (adds the
    /// 233/8 GLOP groups, as the original's sample network did) or `224.0.0.0/4` (every IPv4
    /// group, what the original's patched pimd did).
    pub ssm_ranges: Vec<GroupRange>,
    /// At most this many distinct (S,G)s are joined (over all interfaces). A Join that would
    /// add one more is ignored and counted as `TooManyStates`: a memory bound under attack.
    pub max_joined_sgs: usize,
    /// At most this many neighbours per interface; Hellos from further new neighbours are
    /// dropped and counted as `TooManyNeighbors`.
    pub max_neighbors: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            hello_period: Duration::from_secs(30),
            hello_jitter: Duration::from_secs(3),
            hello_holdtime: Duration::from_secs(105),
            triggered_hello_delay: Duration::from_millis(100),
            dr_priority: 1,
            propagation_delay: Duration::from_millis(500),
            override_interval: Duration::from_millis(2500),
            t_bit: false,
            jp_holdtime: Duration::from_secs(210),
            ssm_ranges: GroupRange::default_ssm(),
            max_joined_sgs: 100_000,
            max_neighbors: 64,
        }
    }
}

/// A [`Config`] value the engine cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `hello_period` is zero.
    #[error("hello_period must be positive")]
    ZeroHelloPeriod,
    /// `hello_jitter` is not shorter than `hello_period`.
    #[error("hello_jitter ({jitter:?}) must be shorter than hello_period ({period:?})")]
    JitterTooLarge {
        /// The jitter.
        jitter: Duration,
        /// The period.
        period: Duration,
    },
    /// A holdtime we would send is not 1 to 65534 whole seconds.
    #[error("{name} must be 1 to 65534 whole seconds, not {value:?}")]
    BadHoldtime {
        /// Which setting.
        name: &'static str,
        /// Its value.
        value: Duration,
    },
    /// `hello_holdtime` does not exceed `hello_period`: neighbours would drop us between Hellos.
    #[error("hello_holdtime ({holdtime:?}) must be longer than hello_period ({period:?})")]
    HoldtimeNotAbovePeriod {
        /// The holdtime.
        holdtime: Duration,
        /// The period.
        period: Duration,
    },
    /// `propagation_delay` does not fit 15 bits of milliseconds.
    #[error("propagation_delay must be at most 32767 ms, not {0:?}")]
    PropagationDelayTooLarge(Duration),
    /// `override_interval` does not fit 16 bits of milliseconds.
    #[error("override_interval must be at most 65535 ms, not {0:?}")]
    OverrideIntervalTooLarge(Duration),
    /// `max_neighbors` is zero.
    #[error("max_neighbors must be at least 1")]
    ZeroMaxNeighbors,
}

impl Config {
    /// Checks every setting the engine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hello_period.is_zero() {
            return Err(ConfigError::ZeroHelloPeriod);
        }
        if self.hello_jitter >= self.hello_period {
            return Err(ConfigError::JitterTooLarge { jitter: self.hello_jitter, period: self.hello_period });
        }
        for (name, value) in [("hello_holdtime", self.hello_holdtime), ("jp_holdtime", self.jp_holdtime)] {
            if value.subsec_nanos() != 0 || value.as_secs() == 0 || value.as_secs() > MAX_SENT_HOLDTIME_SECS {
                return Err(ConfigError::BadHoldtime { name, value });
            }
        }
        if self.hello_holdtime <= self.hello_period {
            return Err(ConfigError::HoldtimeNotAbovePeriod {
                holdtime: self.hello_holdtime,
                period: self.hello_period,
            });
        }
        if self.propagation_delay.as_millis() > 0x7fff {
            return Err(ConfigError::PropagationDelayTooLarge(self.propagation_delay));
        }
        if self.override_interval.as_millis() > 0xffff {
            return Err(ConfigError::OverrideIntervalTooLarge(self.override_interval));
        }
        if self.max_neighbors == 0 {
            return Err(ConfigError::ZeroMaxNeighbors);
        }
        Ok(())
    }

    /// `hello_holdtime` in wire seconds.
    pub(crate) fn hello_holdtime_secs(&self) -> u16 {
        u16::try_from(self.hello_holdtime.as_secs().min(MAX_SENT_HOLDTIME_SECS)).unwrap_or(0xfffe)
    }

    /// `jp_holdtime` in wire seconds.
    pub(crate) fn jp_holdtime_secs(&self) -> u16 {
        u16::try_from(self.jp_holdtime.as_secs().min(MAX_SENT_HOLDTIME_SECS)).unwrap_or(0xfffe)
    }

    /// Whether `group` is in one of the SSM ranges.
    pub fn is_ssm(&self, group: &std::net::IpAddr) -> bool {
        self.ssm_ranges.iter().any(|r| r.contains(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_rfc_7761() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.hello_period, Duration::from_secs(30));
        // Default_Hello_Holdtime = 3.5 × Hello_Period (RFC 7761 §4.11).
        assert_eq!(c.hello_holdtime, c.hello_period * 7 / 2);
        assert_eq!(c.hello_holdtime_secs(), 105);
        assert_eq!(c.jp_holdtime_secs(), 210);
        assert!(c.is_ssm(&"232.1.1.1".parse().unwrap()));
        assert!(!c.is_ssm(&"233.1.1.1".parse().unwrap()));
        assert!(c.is_ssm(&"ff3e::8000:1".parse().unwrap()));
    }

    #[test]
    fn validation_rejects_bad_values() {
        let bad = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.hello_period = Duration::ZERO), ConfigError::ZeroHelloPeriod);
        assert!(matches!(bad(|c| c.hello_jitter = Duration::from_secs(30)), ConfigError::JitterTooLarge { .. }));
        assert!(matches!(bad(|c| c.hello_holdtime = Duration::from_secs(70_000)), ConfigError::BadHoldtime { .. }));
        assert!(matches!(bad(|c| c.hello_holdtime = Duration::from_millis(1500)), ConfigError::BadHoldtime { .. }));
        assert!(matches!(bad(|c| c.jp_holdtime = Duration::ZERO), ConfigError::BadHoldtime { .. }));
        assert!(matches!(
            bad(|c| c.hello_holdtime = Duration::from_secs(30)),
            ConfigError::HoldtimeNotAbovePeriod { .. }
        ));
        assert!(matches!(
            bad(|c| c.propagation_delay = Duration::from_millis(40_000)),
            ConfigError::PropagationDelayTooLarge(_)
        ));
        assert!(matches!(
            bad(|c| c.override_interval = Duration::from_millis(70_000)),
            ConfigError::OverrideIntervalTooLarge(_)
        ));
        assert_eq!(bad(|c| c.max_neighbors = 0), ConfigError::ZeroMaxNeighbors);
    }
}
