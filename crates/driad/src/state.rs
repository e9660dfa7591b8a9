//! The sans-IO discovery policy: per source, which relay to use, when to ask DNS again, which
//! relays are held down, and what changed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::lookup::{Answer, LookupError, Negative};
use crate::order::RelayOrder;

/// Policy knobs. The defaults follow RFC 8777 where it has numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// At most this many lookups in flight (more sources wait; none blocks another).
    pub max_in_flight: usize,
    /// How long a failed relay is avoided, for every source (§3.3: about 10 minutes after an
    /// L flag, 3–10 minutes after no traffic).
    pub hold_down: Duration,
    /// Positive answers (and type 0) are kept at least this long (a TTL of 0 does not make
    /// the source spin) ...
    pub positive_ttl_min: Duration,
    /// ... and at most this long (§3.3.4.3 long-term rediscovery).
    pub positive_ttl_max: Duration,
    /// Negative answers (NXDOMAIN, NODATA, nothing usable) are kept at least this long ...
    pub negative_ttl_min: Duration,
    /// ... and at most this long, whatever the SOA says.
    pub negative_ttl_max: Duration,
    /// Retry after a failure: a random delay in [initial, min(initial · 2^(n-1), max)] after
    /// the n-th failure in a row (§3.5).
    pub backoff_initial: Duration,
    /// See `backoff_initial`.
    pub backoff_max: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            max_in_flight: 16,
            hold_down: Duration::from_secs(600),
            positive_ttl_min: Duration::from_secs(1),
            positive_ttl_max: Duration::from_secs(86_400),
            negative_ttl_min: Duration::from_secs(5),
            negative_ttl_max: Duration::from_secs(3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(120),
        }
    }
}

/// The relay a source uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Chosen {
    /// The relay address.
    pub relay: IpAddr,
    /// D bit: a Request may go straight to the relay, without Relay Discovery (§4.2.2).
    pub discovery_optional: bool,
}

/// What changed. `Instant`s are the deadlines the state will act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A source without a relay now has one.
    Chosen {
        /// The source.
        source: IpAddr,
        /// Its relay.
        chosen: Chosen,
    },
    /// A source moves to another relay (its relay failed or is no longer listed), or its relay
    /// stays and the D bit changed (`from == to.relay`).
    RelayChanged {
        /// The source.
        source: IpAddr,
        /// The relay it used.
        from: IpAddr,
        /// The relay it uses now.
        to: Chosen,
    },
    /// A type-0 record: no AMT relay for this source until `until` (then DNS is asked again).
    NoRelay {
        /// The source.
        source: IpAddr,
        /// When DNS is asked again.
        until: Instant,
        /// The relay the source used before, to be released.
        dropped: Option<IpAddr>,
    },
    /// No AMTRELAY record (NXDOMAIN, NODATA, or nothing usable); asked again at `until`.
    NoRecords {
        /// The source.
        source: IpAddr,
        /// When DNS is asked again.
        until: Instant,
        /// The relay the source used before, to be released.
        dropped: Option<IpAddr>,
    },
    /// The lookup failed (timeout, SERVFAIL, ...); retried at `retry_at`. A source that
    /// already had a relay keeps it meanwhile (`keeping`).
    LookupFailed {
        /// The source.
        source: IpAddr,
        /// What went wrong.
        error: LookupError,
        /// When DNS is asked again.
        retry_at: Instant,
        /// The relay still in use, if any.
        keeping: Option<IpAddr>,
    },
    /// Every candidate relay is held down: no relay now; DNS is asked again at `retry_at`.
    Unreachable {
        /// The source.
        source: IpAddr,
        /// When DNS is asked again.
        retry_at: Instant,
        /// The relay the source used before, to be released.
        dropped: Option<IpAddr>,
    },
}

/// Where a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The first lookup has not completed.
    Resolving,
    /// A relay is chosen (possibly from an answer whose refresh is failing).
    Known,
    /// A type-0 record said no relay.
    NoRelay,
    /// No usable records.
    NoRecords,
    /// No relay: the lookup failed or every candidate is held down; retried with backoff.
    Failed,
}

#[derive(Debug)]
struct Entry {
    phase: Phase,
    /// Order of `want`, for fairness among sources due at the same time.
    seq: u64,
    in_flight: bool,
    /// When to look up next (`None`: as soon as possible).
    due: Option<Instant>,
    /// When the current answer expires.
    expires: Option<Instant>,
    answer: Option<Answer>,
    order: RelayOrder,
    chosen: Option<Chosen>,
    failures: u32,
    last_error: Option<String>,
}

#[derive(Debug)]
struct HoldDown {
    until: Instant,
    reason: String,
}

/// The discovery policy for a set of sources, with injected time and a seeded RNG
/// (for the order among equal precedence and the backoff jitter).
///
/// Driver loop: after [`want`](Self::want), [`on_answer`](Self::on_answer),
/// [`relay_failed`](Self::relay_failed) and [`handle_timeout`](Self::handle_timeout), call
/// [`poll_lookup`](Self::poll_lookup) until `None` (start those lookups, concurrently) and
/// [`poll_event`](Self::poll_event) until `None`; sleep until
/// [`poll_timeout`](Self::poll_timeout) and then call `handle_timeout`.
#[derive(Debug)]
pub struct DiscoveryState {
    config: DiscoveryConfig,
    rng: SmallRng,
    sources: BTreeMap<IpAddr, Entry>,
    /// The sources not in flight, by when their lookup is due: `None` (at once) sorts before
    /// every deadline, then by `seq`. Kept in step with each entry's `due` and `in_flight`, so
    /// [`poll_lookup`](Self::poll_lookup) and [`poll_timeout`](Self::poll_timeout) cost
    /// O(log n) instead of a scan of every source.
    queue: BTreeSet<(Option<Instant>, u64, IpAddr)>,
    /// Lookups out.
    in_flight: usize,
    held: BTreeMap<IpAddr, HoldDown>,
    events: VecDeque<Event>,
    next_seq: u64,
}

impl DiscoveryState {
    /// A state with no sources.
    pub fn new(config: DiscoveryConfig, seed: u64) -> DiscoveryState {
        DiscoveryState {
            config,
            rng: SmallRng::seed_from_u64(seed),
            sources: BTreeMap::new(),
            queue: BTreeSet::new(),
            in_flight: 0,
            held: BTreeMap::new(),
            events: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DiscoveryConfig {
        &self.config
    }

    /// A new configuration (a reload): hold-downs already running keep their end, new ones
    /// and the next lookups use the new values.
    pub fn set_config(&mut self, config: DiscoveryConfig) {
        self.config = config;
    }

    /// Start discovering `source` (no-op if already wanted). It is due for a lookup at once.
    pub fn want(&mut self, source: IpAddr) {
        if self.sources.contains_key(&source) {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sources.insert(
            source,
            Entry {
                phase: Phase::Resolving,
                seq,
                in_flight: false,
                due: None,
                expires: None,
                answer: None,
                order: RelayOrder::default(),
                chosen: None,
                failures: 0,
                last_error: None,
            },
        );
        self.queue.insert((None, seq, source));
    }

    /// Stop discovering `source`; an answer still in flight for it is ignored.
    pub fn forget(&mut self, source: IpAddr) {
        if let Some(entry) = self.sources.remove(&source) {
            if entry.in_flight {
                self.in_flight -= 1;
            } else {
                self.queue.remove(&(entry.due, entry.seq, source));
            }
        }
    }

    /// Sets when `source`'s next lookup is due, keeping the queue in step (the entry must not
    /// be in flight).
    fn set_due(&mut self, source: IpAddr, due: Option<Instant>) {
        let Some(entry) = self.sources.get_mut(&source) else { return };
        debug_assert!(!entry.in_flight);
        self.queue.remove(&(entry.due, entry.seq, source));
        entry.due = due;
        self.queue.insert((due, entry.seq, source));
    }

    /// The sources wanted.
    pub fn sources(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.sources.keys().copied()
    }

    /// The relay `source` uses now.
    pub fn choice(&self, source: IpAddr) -> Option<Chosen> {
        self.sources.get(&source).and_then(|e| e.chosen)
    }

    /// Where `source` stands.
    pub fn phase(&self, source: IpAddr) -> Option<Phase> {
        self.sources.get(&source).map(|e| e.phase)
    }

    /// Whether `relay` is held down at `now`.
    pub fn is_held_down(&self, relay: IpAddr, now: Instant) -> bool {
        self.held.get(&relay).is_some_and(|h| h.until > now)
    }

    /// Whether `source` has a candidate relay other than `relay` that is not held down at
    /// `now` (O(candidates of that source)).
    pub fn has_alternative(&self, source: IpAddr, relay: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&source)
            .is_some_and(|e| e.order.candidates().iter().any(|c| c.addr != relay && !self.is_held_down(c.addr, now)))
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The next source that needs a DNS lookup now, marked in flight: sources never looked up
    /// first (in the order they were wanted), then by how overdue they are. `None` when
    /// nothing is due or `max_in_flight` lookups are out.
    pub fn poll_lookup(&mut self, now: Instant) -> Option<IpAddr> {
        if self.in_flight() >= self.config.max_in_flight {
            return None;
        }
        let &(due, seq, source) = self.queue.first()?;
        if due.is_some_and(|d| d > now) {
            return None;
        }
        self.queue.remove(&(due, seq, source));
        if let Some(entry) = self.sources.get_mut(&source) {
            entry.in_flight = true;
            self.in_flight += 1;
        }
        Some(source)
    }

    /// The earliest deadline: a lookup falling due or a hold-down ending. Sources that are due
    /// at once after [`want`](Self::want) are not deadlines: [`poll_lookup`](Self::poll_lookup)
    /// returns them.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lookups = if self.in_flight() >= self.config.max_in_flight {
            None // nothing can start before an answer comes back
        } else {
            // The first deadline after the sources due at once (which poll_lookup hands out).
            self.queue.iter().find_map(|(due, _, _)| *due)
        };
        let holds = self.held.values().map(|h| h.until).min();
        match (lookups, holds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends expired hold-downs. (Lookups that fall due are returned by `poll_lookup`.)
    pub fn handle_timeout(&mut self, now: Instant) {
        self.held.retain(|_, h| h.until > now);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn backoff(&mut self, failures: u32) -> Duration {
        let initial = self.config.backoff_initial;
        let max = self.config.backoff_max.max(initial);
        let factor = 1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
        let hi = initial.saturating_mul(factor).min(max);
        let (lo, hi) = (initial.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(self.rng.random_range(lo..=hi.max(lo)))
    }

    /// Takes the result of the lookup of `source` that [`poll_lookup`](Self::poll_lookup)
    /// handed out.
    pub fn on_answer(&mut self, source: IpAddr, result: Result<Answer, LookupError>, now: Instant) {
        let Some(entry) = self.sources.get_mut(&source) else { return };
        if !entry.in_flight {
            return;
        }
        entry.in_flight = false;
        self.in_flight -= 1;
        self.queue.insert((entry.due, entry.seq, source));
        let answer = match result {
            Ok(answer) => answer,
            Err(error) => return self.on_error(source, error, now),
        };
        let cfg = &self.config;
        if answer.no_relay {
            let until = now + answer.ttl.clamp(cfg.positive_ttl_min, cfg.positive_ttl_max);
            let was = entry.phase;
            let dropped = entry.chosen.take().map(|c| c.relay);
            entry.phase = Phase::NoRelay;
            entry.order = RelayOrder::default();
            entry.settle(answer, until);
            self.set_due(source, Some(until));
            if was != Phase::NoRelay || dropped.is_some() {
                self.events.push_back(Event::NoRelay { source, until, dropped });
            }
            return;
        }
        if answer.candidates.is_empty() {
            let until = now + answer.ttl.clamp(cfg.negative_ttl_min, cfg.negative_ttl_max);
            let was = entry.phase;
            let dropped = entry.chosen.take().map(|c| c.relay);
            entry.phase = Phase::NoRecords;
            entry.order = RelayOrder::default();
            entry.settle(answer, until);
            self.set_due(source, Some(until));
            if was != Phase::NoRecords || dropped.is_some() {
                self.events.push_back(Event::NoRecords { source, until, dropped });
            }
            return;
        }
        let expires = now + answer.ttl.clamp(cfg.positive_ttl_min, cfg.positive_ttl_max);
        let order = RelayOrder::new(answer.candidates.clone(), &mut self.rng);
        let held = &self.held;
        let usable = |a: IpAddr| held.get(&a).is_none_or(|h| h.until <= now);
        // Sticky: keep the relay in use while it is listed and not held down.
        let keep = entry.chosen.and_then(|c| order.get(c.relay).filter(|n| usable(n.addr)).map(|n| (c, n.clone())));
        let next = match keep {
            Some((_, n)) => Some(n),
            None => order.first_usable(usable).cloned(),
        };
        entry.order = order;
        match next {
            Some(n) => {
                let to = Chosen { relay: n.addr, discovery_optional: n.discovery_optional };
                let prev = entry.chosen.replace(to);
                entry.phase = Phase::Known;
                entry.failures = 0;
                entry.settle(answer, expires);
                self.set_due(source, Some(expires));
                match prev {
                    None => self.events.push_back(Event::Chosen { source, chosen: to }),
                    Some(p) if p != to => self.events.push_back(Event::RelayChanged { source, from: p.relay, to }),
                    Some(_) => {}
                }
            }
            None => {
                let dropped = entry.chosen.take().map(|c| c.relay);
                entry.answer = Some(answer);
                entry.expires = Some(expires);
                self.unreachable(source, dropped, now);
            }
        }
    }

    fn on_error(&mut self, source: IpAddr, error: LookupError, now: Instant) {
        let Some(failures) = self.sources.get_mut(&source).map(|e| {
            e.failures += 1;
            e.failures
        }) else {
            return;
        };
        let retry_at = now + self.backoff(failures);
        self.set_due(source, Some(retry_at));
        let Some(entry) = self.sources.get_mut(&source) else { return };
        entry.last_error = Some(error.to_string());
        if matches!(entry.phase, Phase::Resolving | Phase::Failed) {
            entry.phase = Phase::Failed;
        }
        let keeping = entry.chosen.map(|c| c.relay);
        self.events.push_back(Event::LookupFailed { source, error, retry_at, keeping });
    }

    /// No usable candidate: Failed with backoff, reported.
    fn unreachable(&mut self, source: IpAddr, dropped: Option<IpAddr>, now: Instant) {
        let Some(failures) = self.sources.get_mut(&source).map(|e| {
            e.failures += 1;
            e.failures
        }) else {
            return;
        };
        let retry_at = now + self.backoff(failures);
        let Some(entry) = self.sources.get_mut(&source) else { return };
        entry.phase = Phase::Failed;
        entry.last_error = Some("every relay candidate is held down".into());
        if entry.in_flight {
            entry.due = Some(retry_at);
        } else {
            self.set_due(source, Some(retry_at));
        }
        self.events.push_back(Event::Unreachable { source, retry_at, dropped });
    }

    /// The AMT tunnel to `relay` failed (no Advertisement or Query after its retries, the L
    /// flag, no traffic, ...): hold it down for `hold_down` for every source, and move each
    /// source that used it to its next candidate that is not held down, or, with none left,
    /// to Failed (retried with backoff, reported as `Unreachable`).
    pub fn relay_failed(&mut self, relay: IpAddr, reason: &str, now: Instant) {
        self.held.insert(relay, HoldDown { until: now + self.config.hold_down, reason: reason.to_string() });
        let affected: Vec<IpAddr> =
            self.sources.iter().filter(|(_, e)| e.chosen.is_some_and(|c| c.relay == relay)).map(|(s, _)| *s).collect();
        for source in affected {
            let held = &self.held;
            let Some(entry) = self.sources.get_mut(&source) else { continue };
            let next = entry.order.first_usable(|a| held.get(&a).is_none_or(|h| h.until <= now)).cloned();
            match next {
                Some(n) => {
                    let to = Chosen { relay: n.addr, discovery_optional: n.discovery_optional };
                    entry.chosen = Some(to);
                    self.events.push_back(Event::RelayChanged { source, from: relay, to });
                }
                None => {
                    entry.chosen = None;
                    self.unreachable(source, Some(relay), now);
                }
            }
        }
    }

    /// A snapshot for `status` output.
    pub fn status(&self, now: Instant) -> Status {
        let secs = |t: Instant| {
            if t >= now { (t - now).as_secs_f64() } else { -(now - t).as_secs_f64() }
        };
        let sources = self
            .sources
            .iter()
            .map(|(source, e)| SourceStatus {
                source: *source,
                state: e.phase,
                lookup_in_flight: e.in_flight,
                reverse_name: e.answer.as_ref().map(|a| a.name.to_string()),
                records: e
                    .answer
                    .as_ref()
                    .map(|a| a.records.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
                skipped: e.answer.as_ref().map(|a| a.skipped.clone()).unwrap_or_default(),
                negative: e.answer.as_ref().and_then(|a| a.negative),
                candidates: e
                    .order
                    .candidates()
                    .iter()
                    .map(|c| CandidateStatus {
                        addr: c.addr,
                        precedence: c.precedence,
                        discovery_optional: c.discovery_optional,
                        via_name: c.via_name.as_ref().map(ToString::to_string),
                        held_down: self.is_held_down(c.addr, now),
                    })
                    .collect(),
                chosen: e.chosen,
                expires_in: e.expires.map(secs),
                next_lookup_in: if e.in_flight { None } else { Some(e.due.map_or(0.0, secs)) },
                failures: e.failures,
                last_error: e.last_error.clone(),
            })
            .collect();
        let held_down = self
            .held
            .iter()
            .filter(|(_, h)| h.until > now)
            .map(|(relay, h)| HeldDownStatus { relay: *relay, reason: h.reason.clone(), remaining: secs(h.until) })
            .collect();
        Status { sources, held_down }
    }
}

impl Entry {
    /// A good answer: kept until `until`, asked again then (the caller moves `due` there
    /// with `set_due`).
    fn settle(&mut self, answer: Answer, until: Instant) {
        self.answer = Some(answer);
        self.expires = Some(until);
        self.failures = 0;
        self.last_error = None;
    }
}

/// Everything discovery knows, for `status` (times in seconds from now; negative: past).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Per source.
    pub sources: Vec<SourceStatus>,
    /// Relays held down now.
    pub held_down: Vec<HeldDownStatus>,
}

/// One source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    /// The source.
    pub source: IpAddr,
    /// Where it stands.
    pub state: Phase,
    /// A lookup is out.
    pub lookup_in_flight: bool,
    /// The name queried.
    pub reverse_name: Option<String>,
    /// The AMTRELAY records of the last answer, as zone-file lines.
    pub records: Vec<String>,
    /// Records of the last answer that did not parse.
    pub skipped: Vec<String>,
    /// NXDOMAIN / NODATA.
    pub negative: Option<Negative>,
    /// The relay addresses in the order they are tried.
    pub candidates: Vec<CandidateStatus>,
    /// The relay in use.
    pub chosen: Option<Chosen>,
    /// Seconds until the last answer expires.
    pub expires_in: Option<f64>,
    /// Seconds until the next lookup (0: due now; absent while one is in flight).
    pub next_lookup_in: Option<f64>,
    /// Failures in a row (lookups, or every relay held down).
    pub failures: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// One candidate relay of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidateStatus {
    /// The address.
    pub addr: IpAddr,
    /// Its precedence.
    pub precedence: u8,
    /// The D bit.
    pub discovery_optional: bool,
    /// The type-3 name it came from.
    pub via_name: Option<String>,
    /// Held down now.
    pub held_down: bool,
}

/// A relay held down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldDownStatus {
    /// The relay.
    pub relay: IpAddr,
    /// Why.
    pub reason: String,
    /// Seconds left.
    pub remaining: f64,
}
