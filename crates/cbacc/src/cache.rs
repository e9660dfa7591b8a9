//! The metadata cache and fetch schedule, sans-IO: which (S,G)s need a DORMS lookup now, what
//! each lookup's outcome means, and which rate admission uses for each flow. Time is passed
//! in and the jitter comes from a seeded generator.
//!
//! * A success is kept for `--refresh` (default 30 min), or less when the answer says so
//!   (`Cache-Control: max-age`; `no-cache`: 30 s, CBACC draft), plus up to 10 % jitter
//!   (no-cache: 0–10 s) so that flows do not refresh in lockstep.
//! * "Not found" (no SRV record for the source, 404 on every path layout, or a DORMS answer
//!   without CBACC data) is an answer: the flow has no metadata, so it gets `--default` or is
//!   blocked. It is asked again after 5 min (or `--refresh` if shorter).
//! * A failure (DNS error, timeout, TLS, HTTP 5xx, malformed answer...) is retried with an
//!   exponential backoff from 10 s up to 5 min (or `--refresh`), randomised. A flow that had
//!   metadata keeps using it while the refresh fails ("stale"): the last advertised rate is a
//!   better guess than the default. A flow that never had metadata is without a rate.
//! * A new flow is "pending" while its first lookup runs, for at most `metadata_wait`
//!   (default 3 s): admission neither admits it nor holds it down, so a normal lookup (tens of
//!   milliseconds) decides with the real rate instead of admitting at the default and then
//!   flapping. After `metadata_wait` it is treated as without metadata (`--default` or
//!   blocked) until the lookup ends, so a slow DORMS server delays only its own flows, by at
//!   most that long.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mcast_wire::SourceGroup;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::metadata::{DEFAULT_PRIORITY, Metadata};
use crate::rate::Rate;

/// Cache timings and the default rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long metadata is used before it is fetched again (`--refresh`).
    pub refresh: Duration,
    /// The rate of flows without metadata (`--default`); `None`: such flows are blocked.
    pub default_rate: Option<Rate>,
    /// How long a new flow waits for its first lookup before it counts as without metadata.
    pub metadata_wait: Duration,
    /// First retry delay after a failure.
    pub retry_min: Duration,
    /// Largest retry delay (never above `refresh`).
    pub retry_max: Duration,
    /// How long "not found" is believed (never above `refresh`).
    pub not_found_refresh: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            refresh: Duration::from_secs(30 * 60),
            default_rate: None,
            metadata_wait: Duration::from_secs(3),
            retry_min: Duration::from_secs(10),
            retry_max: Duration::from_secs(300),
            not_found_refresh: Duration::from_secs(300),
        }
    }
}

/// The outcome of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResult {
    /// Metadata found at `url`.
    Found {
        /// The metadata.
        metadata: Metadata,
        /// Where it came from.
        url: String,
        /// `Cache-Control`: `None` none, `Some(ZERO)` no-cache/no-store, else max-age.
        max_age: Option<Duration>,
    },
    /// The flow has no CBACC metadata (why, for logs and status).
    NotFound {
        /// Why.
        reason: String,
    },
    /// The lookup failed.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// Where a flow's rate comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Origin {
    /// DORMS metadata.
    Dorms {
        /// The URL it came from.
        url: String,
        /// Its age.
        #[serde(serialize_with = "secs")]
        age: Duration,
        /// The last refresh failed; this is the previous answer.
        stale: bool,
    },
    /// No metadata: `--default`.
    Default,
    /// No metadata and no default.
    Unknown,
    /// The first lookup is running (for at most `metadata_wait`).
    Pending,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 10.0).round() / 10.0)
}

/// What admission and status need to know about one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateInfo {
    /// The rate to use (`None`: unknown).
    pub rate: Option<Rate>,
    /// Its priority.
    pub priority: u16,
    /// The first lookup is still within `metadata_wait`.
    pub pending: bool,
    /// Where the rate comes from.
    pub origin: Origin,
    /// The metadata, if any.
    pub metadata: Option<Metadata>,
    /// The last lookup's problem (error or "not found" reason), if it had one.
    pub last_problem: Option<String>,
    /// When the next lookup is due (`None`: one is running now).
    pub next_fetch: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Good {
    metadata: Metadata,
    url: String,
    fetched: Instant,
}

#[derive(Debug)]
struct Entry {
    wanted_since: Instant,
    good: Option<Good>,
    /// The last lookup's outcome: `None` never finished; `Some(None)` found; `Some(Some(why))`.
    last_problem: Option<Option<String>>,
    failures: u32,
    next_fetch: Instant,
    in_flight: bool,
}

/// The per-(S,G) metadata state.
#[derive(Debug)]
pub struct MetadataCache {
    config: CacheConfig,
    rng: SmallRng,
    entries: BTreeMap<SourceGroup, Entry>,
}

/// What a lookup result changed, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The rate before.
    pub before: Option<Rate>,
    /// The rate after.
    pub after: Option<Rate>,
}

impl MetadataCache {
    /// An empty cache; `seed` drives the jitter.
    pub fn new(config: CacheConfig, seed: u64) -> MetadataCache {
        MetadataCache { config, rng: SmallRng::seed_from_u64(seed), entries: BTreeMap::new() }
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// A new configuration (a reload): the default rate applies at once, the refresh period
    /// and the metadata wait from the next lookup of each flow on.
    pub fn set_config(&mut self, config: CacheConfig) {
        self.config = config;
    }

    /// The desired flows changed: new ones are looked up at once, departed ones forgotten
    /// (a lookup still running for one is ignored when it ends).
    pub fn set_wanted(&mut self, sgs: &BTreeSet<SourceGroup>, now: Instant) {
        self.entries.retain(|sg, _| sgs.contains(sg));
        for sg in sgs {
            self.entries.entry(*sg).or_insert(Entry {
                wanted_since: now,
                good: None,
                last_problem: None,
                failures: 0,
                next_fetch: now,
                in_flight: false,
            });
        }
    }

    /// The next flow to look up now, marked as running; `None` when nothing is due.
    pub fn poll_fetch(&mut self, now: Instant) -> Option<SourceGroup> {
        let (sg, entry) = self.entries.iter_mut().find(|(_, e)| !e.in_flight && e.next_fetch <= now)?;
        entry.in_flight = true;
        Some(*sg)
    }

    /// Asks for every flow again now (SIGHUP).
    pub fn refresh_all(&mut self, now: Instant) {
        for e in self.entries.values_mut() {
            e.next_fetch = e.next_fetch.min(now);
        }
    }

    fn jitter(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.rng.random_range(0..=max.as_nanos().min(u128::from(u64::MAX)) as u64))
    }

    /// Records the outcome of a lookup of `sg`. Returns what changed for admission, if
    /// anything; `None` also for a flow no longer wanted.
    pub fn on_result(&mut self, sg: SourceGroup, result: FetchResult, now: Instant) -> Option<Change> {
        let before = self.entries.contains_key(&sg).then(|| self.info(&sg, now).rate).flatten();
        let config = self.config;
        let delay = match &result {
            FetchResult::Found { max_age, .. } => {
                let floor = Duration::from_secs(30).min(config.refresh);
                match max_age {
                    None => config.refresh + self.jitter(config.refresh / 10),
                    Some(age) if age.is_zero() => floor + self.jitter(floor / 3),
                    Some(age) => {
                        let base = (*age).max(floor).min(config.refresh);
                        base + self.jitter(base / 10)
                    }
                }
            }
            FetchResult::NotFound { .. } => {
                let base = config.not_found_refresh.min(config.refresh);
                base + self.jitter(base / 10)
            }
            FetchResult::Failed { .. } => {
                let failures = self.entries.get(&sg).map_or(0, |e| e.failures) + 1;
                let cap = config.retry_max.min(config.refresh);
                let base = config.retry_min.saturating_mul(1 << (failures - 1).min(16)).min(cap);
                // Between 3/4 and all of it.
                base - self.jitter(base / 4)
            }
        };
        let entry = self.entries.get_mut(&sg)?;
        entry.in_flight = false;
        entry.next_fetch = now + delay;
        match result {
            FetchResult::Found { metadata, url, .. } => {
                entry.good = Some(Good { metadata, url, fetched: now });
                entry.last_problem = Some(None);
                entry.failures = 0;
            }
            FetchResult::NotFound { reason } => {
                entry.good = None;
                entry.last_problem = Some(Some(reason));
                entry.failures = 0;
            }
            FetchResult::Failed { error } => {
                entry.last_problem = Some(Some(error));
                entry.failures += 1;
            }
        }
        let after = self.info(&sg, now).rate;
        Some(Change { before, after })
    }

    /// The rate admission uses for `sg`, and where it comes from.
    pub fn info(&self, sg: &SourceGroup, now: Instant) -> RateInfo {
        let Some(e) = self.entries.get(sg) else {
            return self.without_metadata(None, false, None);
        };
        let next_fetch = (!e.in_flight).then_some(e.next_fetch);
        let problem = e.last_problem.clone().flatten();
        if let Some(good) = &e.good {
            return RateInfo {
                rate: Some(good.metadata.rate),
                priority: good.metadata.priority,
                pending: false,
                origin: Origin::Dorms {
                    url: good.url.clone(),
                    age: now.saturating_duration_since(good.fetched),
                    stale: problem.is_some(),
                },
                metadata: Some(good.metadata),
                last_problem: problem,
                next_fetch,
            };
        }
        let pending = e.last_problem.is_none() && now < e.wanted_since + self.config.metadata_wait;
        let problem = match (&e.last_problem, problem) {
            (None, _) => Some("first DORMS lookup still running".to_owned()),
            (_, p) => p,
        };
        self.without_metadata(problem, pending, next_fetch)
    }

    fn without_metadata(&self, problem: Option<String>, pending: bool, next_fetch: Option<Instant>) -> RateInfo {
        let (rate, origin) = match (pending, self.config.default_rate) {
            (true, _) => (None, Origin::Pending),
            (false, Some(rate)) => (Some(rate), Origin::Default),
            (false, None) => (None, Origin::Unknown),
        };
        RateInfo {
            rate,
            priority: DEFAULT_PRIORITY,
            pending,
            origin,
            metadata: None,
            last_problem: problem,
            next_fetch,
        }
    }

    /// When something changes by itself: the next lookup due, or the end of a flow's
    /// pending window.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .flat_map(|e| {
                let fetch = (!e.in_flight).then_some(e.next_fetch);
                let pending_end = e.wanted_since + self.config.metadata_wait;
                let pending = (e.last_problem.is_none() && pending_end > now).then_some(pending_end);
                [fetch, pending]
            })
            .flatten()
            .min()
    }

    /// Flows whose first lookup has not finished yet and that are still within
    /// `metadata_wait`.
    pub fn any_pending(&self, now: Instant) -> bool {
        self.entries.values().any(|e| e.last_problem.is_none() && now < e.wanted_since + self.config.metadata_wait)
    }

    /// Lookups running now.
    pub fn in_flight(&self) -> usize {
        self.entries.values().filter(|e| e.in_flight).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::RateLeaf;

    fn sg(s: &str) -> SourceGroup {
        s.parse().unwrap()
    }

    fn meta(bps: u64) -> Metadata {
        Metadata {
            rate: Rate::from_bps(bps),
            leaf: RateLeaf::MaxSpeed,
            priority: 256,
            max_packet_size: 1400,
            data_rate_window_ms: 2000,
        }
    }

    fn found(bps: u64) -> FetchResult {
        FetchResult::Found { metadata: meta(bps), url: "https://d/x".into(), max_age: None }
    }

    fn failed() -> FetchResult {
        FetchResult::Failed { error: "HTTP 500".into() }
    }

    const F: &str = "198.51.100.10,232.1.1.1";

    #[test]
    fn a_new_flow_is_pending_then_known_and_refreshed() {
        let t0 = Instant::now();
        let mut cache = MetadataCache::new(CacheConfig::default(), 1);
        cache.set_wanted(&[sg(F)].into(), t0);
        assert_eq!(cache.poll_fetch(t0), Some(sg(F)));
        assert_eq!(cache.poll_fetch(t0), None, "one lookup at a time per flow");
        let info = cache.info(&sg(F), t0);
        assert!(info.pending);
        assert_eq!(info.origin, Origin::Pending);
        assert_eq!(cache.next_wake(t0), Some(t0 + Duration::from_secs(3)), "the end of the pending window");
        let change = cache.on_result(sg(F), found(4_000_000), t0 + Duration::from_millis(50)).unwrap();
        assert_eq!(change, Change { before: None, after: Some(Rate::from_bps(4_000_000)) });
        let info = cache.info(&sg(F), t0 + Duration::from_secs(60));
        assert_eq!(info.rate, Some(Rate::from_bps(4_000_000)));
        assert!(matches!(info.origin, Origin::Dorms { stale: false, .. }));
        // Refreshed after 30 min plus at most 10 %.
        let due = info.next_fetch.unwrap() - (t0 + Duration::from_millis(50));
        assert!(due >= Duration::from_secs(1800) && due <= Duration::from_secs(1980), "{due:?}");
        assert_eq!(cache.poll_fetch(t0 + Duration::from_secs(1799)), None);
        assert_eq!(cache.poll_fetch(t0 + Duration::from_secs(1981)), Some(sg(F)));
    }

    #[test]
    fn after_the_wait_a_flow_without_an_answer_uses_the_default() {
        let t0 = Instant::now();
        let config = CacheConfig { default_rate: Some(Rate::from_bps(2_000_000)), ..CacheConfig::default() };
        let mut cache = MetadataCache::new(config, 1);
        cache.set_wanted(&[sg(F)].into(), t0);
        cache.poll_fetch(t0);
        assert_eq!(cache.info(&sg(F), t0).rate, None);
        let later = cache.info(&sg(F), t0 + Duration::from_secs(3));
        assert_eq!(
            (later.rate, later.pending, later.origin),
            (Some(Rate::from_bps(2_000_000)), false, Origin::Default)
        );
        assert_eq!(later.last_problem.as_deref(), Some("first DORMS lookup still running"));
        assert!(!cache.any_pending(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn failures_back_off_and_keep_stale_metadata() {
        let t0 = Instant::now();
        let mut cache = MetadataCache::new(CacheConfig::default(), 2);
        cache.set_wanted(&[sg(F)].into(), t0);
        cache.poll_fetch(t0);
        cache.on_result(sg(F), found(4_000_000), t0);
        let mut t = t0 + Duration::from_secs(2000);
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert_eq!(cache.poll_fetch(t), Some(sg(F)));
            cache.on_result(sg(F), failed(), t);
            let info = cache.info(&sg(F), t);
            assert_eq!(info.rate, Some(Rate::from_bps(4_000_000)), "stale metadata is kept");
            assert!(matches!(info.origin, Origin::Dorms { stale: true, .. }));
            let next = info.next_fetch.unwrap();
            delays.push((next - t).as_secs());
            t = next;
        }
        // 10 s doubling to 5 min, each between 3/4 and all of its base.
        let bases = [10, 20, 40, 80, 160, 300, 300, 300];
        for (d, b) in delays.iter().zip(bases) {
            assert!(*d <= b && *d >= b * 3 / 4 - 1, "{delays:?}");
        }
        // A success clears the failure count.
        cache.poll_fetch(t);
        cache.on_result(sg(F), found(5_000_000), t);
        assert_eq!(cache.info(&sg(F), t).last_problem, None);
    }

    #[test]
    fn not_found_is_an_answer_and_drops_old_metadata() {
        let t0 = Instant::now();
        let mut cache = MetadataCache::new(CacheConfig::default(), 3);
        cache.set_wanted(&[sg(F)].into(), t0);
        cache.poll_fetch(t0);
        cache.on_result(sg(F), FetchResult::NotFound { reason: "no SRV record".into() }, t0);
        let info = cache.info(&sg(F), t0);
        assert_eq!((info.rate, info.origin.clone(), info.pending), (None, Origin::Unknown, false));
        assert_eq!(info.last_problem.as_deref(), Some("no SRV record"));
        let due = info.next_fetch.unwrap() - t0;
        assert!(due >= Duration::from_secs(300) && due <= Duration::from_secs(330));
        cache.poll_fetch(t0 + due);
        cache.on_result(sg(F), found(1000), t0 + due);
        cache.poll_fetch(t0 + Duration::from_secs(5000));
        cache.on_result(sg(F), FetchResult::NotFound { reason: "HTTP 404".into() }, t0 + Duration::from_secs(5000));
        assert_eq!(cache.info(&sg(F), t0 + Duration::from_secs(5000)).rate, None);
    }

    #[test]
    fn cache_control_and_short_refresh() {
        let t0 = Instant::now();
        let config = CacheConfig { refresh: Duration::from_secs(5), ..CacheConfig::default() };
        let mut cache = MetadataCache::new(config, 4);
        cache.set_wanted(&[sg(F)].into(), t0);
        for (max_age, lo, hi) in [
            (None, 5.0, 5.5),
            (Some(Duration::ZERO), 5.0, 6.67),
            (Some(Duration::from_secs(3600)), 5.0, 5.5),
            (Some(Duration::from_secs(1)), 5.0, 5.5),
        ] {
            cache.poll_fetch(t0 + Duration::from_secs(100));
            let r = FetchResult::Found { metadata: meta(1), url: "u".into(), max_age };
            cache.on_result(sg(F), r, t0);
            let due = (cache.info(&sg(F), t0).next_fetch.unwrap() - t0).as_secs_f64();
            assert!(due >= lo && due <= hi, "{max_age:?}: {due}");
        }
        let config = CacheConfig::default();
        let mut cache = MetadataCache::new(config, 4);
        cache.set_wanted(&[sg(F)].into(), t0);
        cache.poll_fetch(t0);
        let r = FetchResult::Found { metadata: meta(1), url: "u".into(), max_age: Some(Duration::ZERO) };
        cache.on_result(sg(F), r, t0);
        let due = (cache.info(&sg(F), t0).next_fetch.unwrap() - t0).as_secs_f64();
        assert!((30.0..=40.0).contains(&due), "no-cache: 30 s plus 0-10 s, got {due}");
    }

    #[test]
    fn departed_flows_are_forgotten_and_late_results_ignored() {
        let t0 = Instant::now();
        let mut cache = MetadataCache::new(CacheConfig::default(), 5);
        cache.set_wanted(&[sg(F)].into(), t0);
        cache.poll_fetch(t0);
        assert_eq!(cache.in_flight(), 1);
        cache.set_wanted(&BTreeSet::new(), t0);
        assert_eq!(cache.on_result(sg(F), found(1), t0), None);
        assert_eq!(cache.next_wake(t0), None);
        // SIGHUP: everything due at once.
        cache.set_wanted(&[sg(F)].into(), t0);
        cache.poll_fetch(t0);
        cache.on_result(sg(F), found(1), t0);
        assert_eq!(cache.poll_fetch(t0), None);
        cache.refresh_all(t0);
        assert_eq!(cache.poll_fetch(t0), Some(sg(F)));
    }
}
