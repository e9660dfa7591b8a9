//! The AMT gateway (RFC 7450 §5.2), sans-IO: any number of tunnels, one per relay, driven by
//! one timer structure.
//!
//! # Model
//!
//! A [`Gateway`] holds tunnels keyed by the relay address the caller knows (DRIAD's answer,
//! or a configured address). Per tunnel:
//!
//! * **Relay Discovery** (§5.2.3.4) to the discovery address when one is given: a random
//!   nonce per discovery cycle (reused by its retransmissions), the Advertisement accepted
//!   only with that nonce and only from the address and port 2268 we sent to (as Linux
//!   does). The advertised address is where Requests go and the only source Data and Queries
//!   are accepted from. Without a discovery address (DRIAD D = 1, RFC 8777 §4.2.2) Requests
//!   go straight to the relay.
//! * **Request / Membership Query** (§5.2.3.5) per inner family: a tunnel carrying IPv4 and
//!   IPv6 (S,G)s runs two cycles, P = 0 and P = 1, like Linux. A fresh random nonce per
//!   cycle, reused by retransmissions. A Query must echo the outstanding nonce and carry a
//!   General Query of the Request's family; its Response MAC and nonce are stored verbatim
//!   and echoed in every Update. QQIC gives the next Request (now + Query Interval), QRV the
//!   number of transmissions of unsolicited reports.
//! * **L flag** (§5.1.4.4): with no state on the relay yet, the Query is not answered and
//!   `RelayFailed { reason: Limit }` is reported (the caller holds the relay down, RFC 8777
//!   §3.3.5); with existing state the flag is ignored (`LimitReached`).
//! * **G flag** (§5.1.4.5): our endpoint as the relay saw it. When it changes between Queries
//!   (NAT rebinding), a Teardown with the old MAC and nonce goes out for the old endpoint
//!   (§5.2.3.7).
//! * **Membership Update** (§5.2.3.6): IGMPv3 / MLDv2 reports built by
//!   [`crate::membership::report_datagrams`]. A join adds ALLOW_NEW_SOURCES, a leave
//!   BLOCK_OLD_SOURCES; changes are sent at once when a usable MAC exists (received less than
//!   one Query Interval ago), else with the answer to the next Query, and then repeated until
//!   each has been sent QRV times, spaced by 100–500 ms (see [`Config::report_interval_min`]).
//!   Changes made together coalesce: they are flushed when the driver next polls, so joining
//!   1000 (S,G)s yields a handful of Updates, each up to 1400 bytes. Every Query (first and
//!   periodic) is answered with a full-state report: MODE_IS_INCLUDE for all (S,G)s of that
//!   family.
//! * **Retransmission** of Discovery and Request after a random time in
//!   `[1 s, min(1 s · 2^n, 120 s)]` (§5.2.3.4.3, quoted in RFC 8777 §3.5). After
//!   `discovery_attempts` / `request_attempts` unanswered messages the tunnel reports
//!   `RelayFailed` once and keeps retrying with growing backoff; a discovered relay that
//!   stops answering Requests sends the tunnel back to discovery (like Linux). A periodic
//!   refresh that gets no Query counts the same way.
//! * **No traffic** (RFC 8777 §3.3.1): joined, but no Data for `[4 s, min(4 s · 2^n, 120 s)]`
//!   → `NoTraffic`, and a fresh handshake whose full-state report restores a restarted
//!   relay's state. The relay's restart is thereby repaired without restarting anything here.
//! * **Teardown**: when the last (S,G) leaves, the BLOCK records go out at once followed by a
//!   Teardown (RFC 7450 makes Teardown optional, §5.2.3.7; sending it stops the relay's
//!   replication within one round trip instead of at state expiry, which is what "Prune to
//!   Teardown in milliseconds" needs), both repeated QRV − 1 more times. `remove_tunnel` does
//!   the same, and `shutdown` sends them once for every tunnel. The Teardown names the
//!   endpoint from the relay's G fields; a relay that sent G = 0 gets our local endpoint as
//!   the driver saw it on the Query (correct unless a NAT sits in between, in which case the
//!   relay's MAC check rejects it and the BLOCK records still apply). Without either, only the
//!   BLOCK records are sent.
//! * **Data** ([`Gateway::accept_data`]): O(1) tunnel lookup by sender (relay address and
//!   port 2268 only), AMT header, inner IPv4/IPv6 header (checksum, lengths), (S,G) joined on
//!   that tunnel, UDP, TTL ≥ `min_inner_ttl`; returns the inner datagram as a sub-slice
//!   (zero-copy). The TTL is not decremented here: the kernel does it when it forwards from
//!   the TUN.
//!
//! # Driver loop
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Instant;
//! use mcast_amt::gateway::{Config, Gateway};
//!
//! let mut gw = Gateway::new(Config::default(), 0x5eed).unwrap(); // seed from the OS in real use
//! let now = Instant::now();
//! let relay = "203.0.113.15".parse().unwrap();
//! gw.add_tunnel(relay, Some(relay), now).unwrap(); // DRIAD D = 0: discover first
//! gw.join(relay, "198.51.100.10,232.1.1.1".parse().unwrap(), now).unwrap();
//! // loop {
//! //   a datagram from `from` on local address `local`:
//! //     if mcast_amt::gateway::is_data(&payload) { gw.accept_data(from, &payload) → write to the TUN }
//! //     else { gw.handle_datagram(now, from, Some(local), &payload) }
//! //   a timer: gw.handle_timeout(now)
//! while let Some(tx) = gw.poll_transmit() {
//!     assert_eq!(tx.destination, SocketAddr::new(relay, 2268)); // the Relay Discovery
//! }
//! while let Some(event) = gw.poll_event() {
//!     println!("{event}");
//! }
//! assert!(gw.poll_timeout().is_some()); // the Discovery retransmission
//! // }
//! ```

mod config;
mod counters;
mod data;
mod event;
mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mcast_wire::amt::{self, Packet, Repr};
use mcast_wire::igmp::RecordType;
use mcast_wire::{SourceGroup, SourceGroupError};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

pub use config::{Config, ConfigError};
pub use counters::{ControlDrop, ControlDrops, Counters, DataDrop, DataDrops, TunnelCounters, TypeCounts};
pub use event::{CloseReason, Event, FailReason, Transmit};
pub use status::{FamilyStatus, Status, TunnelState, TunnelStatus};

use crate::membership::{self, DEFAULT_ROBUSTNESS, Family, GroupRecord};

/// Whether a UDP payload is an AMT Multicast Data message (type 6), the driver's cheap test
/// for choosing between [`Gateway::accept_data`] and [`Gateway::handle_datagram`].
#[inline]
pub fn is_data(payload: &[u8]) -> bool {
    payload.first() == Some(&amt::DATA_HEADER[0])
}

/// A problem with a gateway operation (caller input, never network input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// `shutdown` was called.
    ShutDown,
    /// `add_tunnel` for a relay that exists with another discovery address.
    Exists(IpAddr),
    /// No tunnel for this relay.
    UnknownTunnel(IpAddr),
    /// `max_tunnels` reached.
    TooManyTunnels,
    /// `max_sgs` reached.
    TooManySgs,
    /// Not a valid (S,G).
    InvalidSg(SourceGroupError),
    /// A relay or discovery address that cannot be one (unspecified, multicast, broadcast).
    InvalidAddress(IpAddr),
    /// Another tunnel already sends to this relay address.
    RelayInUse(IpAddr),
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::ShutDown => f.write_str("the gateway is shut down"),
            GatewayError::Exists(r) => write!(f, "a tunnel to {r} exists with another discovery address"),
            GatewayError::UnknownTunnel(r) => write!(f, "no tunnel to relay {r}"),
            GatewayError::TooManyTunnels => f.write_str("too many tunnels"),
            GatewayError::TooManySgs => f.write_str("too many (S,G)s"),
            GatewayError::InvalidSg(e) => write!(f, "invalid (S,G): {e}"),
            GatewayError::InvalidAddress(a) => write!(f, "{a} cannot be a relay address"),
            GatewayError::RelayInUse(a) => write!(f, "another tunnel already uses relay address {a}"),
        }
    }
}

impl std::error::Error for GatewayError {}

type Slot = u32;

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

fn fi(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

fn relay_endpoint(addr: IpAddr) -> SocketAddr {
    SocketAddr::new(addr, amt::PORT)
}

fn is_usable_unicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Relay Discovery retransmission.
    Discovery,
    /// Request retransmission.
    Request(Family),
    /// Next Request cycle (query interval; or retry after an L-flag Query).
    Refresh(Family),
    /// Repetition of unsolicited reports.
    Report(Family),
    /// Repetition of the closing BLOCK records and Teardown.
    Closing,
    /// No-traffic check.
    NoTraffic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TimerKey {
    slot: Slot,
    kind: TimerKind,
}

/// Every deadline in one ordered set: the earliest in O(log n); each owner keeps its deadline
/// so that moving or cancelling a timer is O(log n) too.
#[derive(Debug, Default)]
struct Timers {
    set: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    fn set(&mut self, field: &mut Option<Instant>, at: Option<Instant>, key: TimerKey) {
        if let Some(old) = field.take() {
            self.set.remove(&(old, key));
        }
        if let Some(at) = at {
            self.set.insert((at, key));
        }
        *field = at;
    }

    fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        match self.set.first() {
            Some((at, _)) if *at <= now => self.set.pop_first(),
            _ => None,
        }
    }
}

/// Queued outputs and counters.
#[derive(Debug, Default)]
struct Output {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    max_events: usize,
}

impl Output {
    fn event(&mut self, event: Event) {
        if self.events.len() >= self.max_events {
            self.counters.events_dropped += 1;
        } else {
            self.events.push_back(event);
        }
    }

    /// Encodes `repr` and queues it for `destination`. Returns whether it could be encoded.
    fn send(&mut self, destination: SocketAddr, repr: &Repr<'_>) -> bool {
        match repr.to_vec() {
            Ok(payload) => {
                self.counters.sent.bump(repr.msg_type());
                self.transmits.push_back(Transmit { destination, payload });
                true
            }
            Err(_) => {
                self.counters.encode_errors += 1;
                false
            }
        }
    }

    fn send_raw(&mut self, destination: SocketAddr, payload: Vec<u8>) {
        if let Some(&t) = payload.first() {
            self.counters.sent.bump(amt::MessageType::from(t & 0x0f));
        }
        self.transmits.push_back(Transmit { destination, payload });
    }
}

/// Lookup tables from the network side to tunnels.
#[derive(Debug, Default)]
struct Maps {
    by_key: HashMap<IpAddr, Slot>,
    /// Relay address:2268 → tunnel, for Queries and Data.
    by_relay: HashMap<SocketAddr, Slot>,
    /// (discovery address:2268, outstanding nonce) → tunnel, for Advertisements.
    by_discovery: HashMap<(SocketAddr, u32), Slot>,
    /// One-entry cache of the last Data sender's tunnel (the common case is a long run of
    /// packets from one relay). Cleared whenever `by_relay` changes.
    last_from: Option<(SocketAddr, Slot)>,
}

/// Everything but the tunnels, borrowed together so tunnel methods can use it.
struct Ctx<'a> {
    config: &'a Config,
    rng: &'a mut SmallRng,
    timers: &'a mut Timers,
    out: &'a mut Output,
    maps: &'a mut Maps,
    slot: Slot,
}

impl Ctx<'_> {
    fn key(&self, kind: TimerKind) -> TimerKey {
        TimerKey { slot: self.slot, kind }
    }

    fn set_timer(&mut self, field: &mut Option<Instant>, at: Option<Instant>, kind: TimerKind) {
        let key = self.key(kind);
        self.timers.set(field, at, key);
    }

    /// Uniformly random in `[lo, hi]`.
    fn random_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = u64::try_from((hi - lo).as_nanos()).unwrap_or(u64::MAX);
        lo + Duration::from_nanos(self.rng.random_range(0..=span))
    }

    /// Retransmission timeout number `n` (0-based): random in `[initial, min(initial · 2^n,
    /// max)]` (RFC 7450 §5.2.3.4.3).
    fn backoff(&mut self, n: u32, initial: Duration, max: Duration) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        let hi = initial.checked_mul(factor).unwrap_or(max).min(max);
        self.random_between(initial, hi)
    }

    fn retransmit_backoff(&mut self, n: u32) -> Duration {
        let (initial, max) = (self.config.retransmit_initial, self.config.retransmit_max);
        self.backoff(n, initial, max)
    }

    fn report_delay(&mut self) -> Duration {
        let (lo, hi) = (self.config.report_interval_min, self.config.report_interval_max);
        self.random_between(lo, hi)
    }

    /// A random nonce.
    fn nonce(&mut self) -> u32 {
        self.rng.random()
    }
}

/// The Response MAC and nonce of the last Query, and what else it said.
#[derive(Debug, Clone)]
struct Session {
    mac: [u8; 6],
    nonce: u32,
    received: Instant,
    query_interval: Duration,
    robustness: u8,
    /// Our endpoint per the G fields.
    endpoint: Option<SocketAddr>,
    /// Our local endpoint as the driver saw it on the Query.
    local: Option<SocketAddr>,
    limit: bool,
}

impl Session {
    /// Whether the relay can be expected to accept its MAC now: within one Query Interval of
    /// the Query (by then the next Request cycle has started).
    fn usable(&self, now: Instant) -> bool {
        now < self.received + self.query_interval
    }

    /// The endpoint a Teardown names: the relay's view (G fields) if it gave one.
    fn teardown_endpoint(&self) -> Option<SocketAddr> {
        self.endpoint.or(self.local.filter(|l| !l.ip().is_unspecified()))
    }
}

/// A membership change still to be (re)sent.
#[derive(Debug, Clone, Copy)]
struct Change {
    allow: bool,
    sent: u8,
    total: u8,
}

/// One family's Request/Query/Update cycle.
#[derive(Debug, Default)]
struct FamilyState {
    /// Outstanding Request nonce.
    request: Option<u32>,
    /// Requests sent in the current unanswered streak.
    request_attempts: u32,
    request_reported: bool,
    limit_reported: bool,
    request_timer: Option<Instant>,
    session: Option<Session>,
    refresh_timer: Option<Instant>,
    changes: BTreeMap<SourceGroup, Change>,
    report_timer: Option<Instant>,
    /// `TunnelEstablished` reported for this run.
    established: bool,
    sgs: usize,
}

impl FamilyState {
    fn wanted(&self) -> bool {
        self.sgs > 0 || !self.changes.is_empty()
    }

    fn robustness(&self) -> u8 {
        self.session.as_ref().map_or(DEFAULT_ROBUSTNESS, |s| s.robustness).max(1)
    }
}

#[derive(Debug)]
struct Discovery {
    addr: IpAddr,
    /// Outstanding nonce while a discovery cycle runs.
    nonce: Option<u32>,
    attempts: u32,
    reported: bool,
    in_use_reported: bool,
    timer: Option<Instant>,
}

#[derive(Debug)]
struct Closing {
    destination: SocketAddr,
    payloads: Vec<Vec<u8>>,
    remaining: u8,
    timer: Option<Instant>,
}

#[derive(Debug)]
struct Tunnel {
    key: IpAddr,
    discovery: Option<Discovery>,
    /// Where Requests go: `key` without discovery, the advertised address with.
    relay: Option<IpAddr>,
    sgs: HashSet<SourceGroup>,
    fam: [FamilyState; 2],
    /// An Update carrying joins was sent since the tunnel last (re)started: the relay holds
    /// state for us (for the L flag and for closing).
    has_state: bool,
    /// Our endpoint per the last Query with G = 1, with that Query's MAC and nonce.
    endpoint: Option<(SocketAddr, [u8; 6], u32)>,
    closing: Option<Closing>,
    /// Removed by the caller; kept only to finish `closing`.
    removed: bool,
    dirty: bool,
    no_traffic_timer: Option<Instant>,
    no_traffic_n: u32,
    no_traffic_mark: u64,
    no_traffic_since: Option<Instant>,
    failed: Option<FailReason>,
    created: Instant,
    counters: TunnelCounters,
}

impl Tunnel {
    fn new(key: IpAddr, discovery: Option<IpAddr>, now: Instant) -> Tunnel {
        Tunnel {
            key,
            discovery: discovery.map(|addr| Discovery {
                addr,
                nonce: None,
                attempts: 0,
                reported: false,
                in_use_reported: false,
                timer: None,
            }),
            relay: if discovery.is_some() { None } else { Some(key) },
            sgs: HashSet::new(),
            fam: [FamilyState::default(), FamilyState::default()],
            has_state: false,
            endpoint: None,
            closing: None,
            removed: false,
            dirty: false,
            no_traffic_timer: None,
            no_traffic_n: 0,
            no_traffic_mark: 0,
            no_traffic_since: None,
            failed: None,
            created: now,
            counters: TunnelCounters::default(),
        }
    }

    fn relay_dest(&self) -> Option<SocketAddr> {
        self.relay.map(relay_endpoint)
    }

    fn fail(&mut self, cx: &mut Ctx<'_>, reason: FailReason) {
        self.failed = Some(reason);
        cx.out.event(Event::RelayFailed { relay: self.key, reason });
    }

    // ----- discovery -----------------------------------------------------------------------

    /// Starts a discovery cycle with a fresh nonce (RFC 7450 §5.2.3.4.5).
    fn start_discovery(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        let Some(disc) = self.discovery.as_mut() else { return };
        let dest = relay_endpoint(disc.addr);
        if let Some(old) = disc.nonce.take() {
            cx.maps.by_discovery.remove(&(dest, old));
        }
        let mut nonce = cx.nonce();
        while cx.maps.by_discovery.contains_key(&(dest, nonce)) {
            nonce = cx.nonce();
        }
        cx.maps.by_discovery.insert((dest, nonce), cx.slot);
        disc.nonce = Some(nonce);
        self.send_discovery(cx, now);
    }

    fn send_discovery(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        let Some(disc) = self.discovery.as_mut() else { return };
        let Some(nonce) = disc.nonce else { return };
        if cx.out.send(relay_endpoint(disc.addr), &Repr::RelayDiscovery { nonce }) {
            self.counters.discoveries += 1;
        }
        let wait = cx.retransmit_backoff(disc.attempts);
        disc.attempts += 1;
        cx.set_timer(&mut disc.timer, Some(now + wait), TimerKind::Discovery);
    }

    fn on_discovery_timer(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        let Some(disc) = self.discovery.as_mut() else { return };
        disc.timer = None;
        if disc.nonce.is_none() {
            return;
        }
        let failed_round = disc.attempts > 0 && disc.attempts.is_multiple_of(cx.config.discovery_attempts);
        if failed_round && !disc.reported {
            disc.reported = true;
            self.fail(cx, FailReason::NoAdvertisement);
        }
        self.send_discovery(cx, now);
    }

    fn stop_discovery(&mut self, cx: &mut Ctx<'_>) {
        let Some(disc) = self.discovery.as_mut() else { return };
        if let Some(nonce) = disc.nonce.take() {
            cx.maps.by_discovery.remove(&(relay_endpoint(disc.addr), nonce));
        }
        cx.set_timer(&mut disc.timer, None, TimerKind::Discovery);
    }

    fn on_advertisement(&mut self, cx: &mut Ctx<'_>, relay: IpAddr, now: Instant) -> Result<(), ControlDrop> {
        let new_dest = relay_endpoint(relay);
        if let Some(&other) = cx.maps.by_relay.get(&new_dest)
            && other != cx.slot
        {
            if let Some(disc) = self.discovery.as_mut()
                && !disc.in_use_reported
            {
                disc.in_use_reported = true;
                self.fail(cx, FailReason::RelayInUse);
            }
            return Err(ControlDrop::RelayInUse);
        }
        self.stop_discovery(cx);
        if let Some(disc) = self.discovery.as_mut() {
            disc.attempts = 0;
            disc.reported = false;
            disc.in_use_reported = false;
        }
        if self.relay != Some(relay) {
            if let Some(old) = self.relay_dest() {
                cx.maps.by_relay.remove(&old);
            }
            // MACs belong to the relay that issued them.
            for f in &mut self.fam {
                f.session = None;
                f.established = false;
            }
            self.has_state = false;
            self.endpoint = None;
            self.relay = Some(relay);
            cx.maps.by_relay.insert(new_dest, cx.slot);
            cx.maps.last_from = None;
        }
        self.failed = None;
        cx.out.event(Event::RelayDiscovered { relay: self.key, address: relay });
        for family in FAMILIES {
            if self.fam[fi(family)].wanted() && self.fam[fi(family)].request.is_none() {
                self.start_request(cx, family, now);
            }
        }
        self.service(cx, now);
        Ok(())
    }

    // ----- request / query -----------------------------------------------------------------

    /// Starts a Request/Query cycle for `family` with a fresh nonce (RFC 7450 §5.2.3.5.6).
    fn start_request(&mut self, cx: &mut Ctx<'_>, family: Family, now: Instant) {
        if self.relay.is_none() {
            return;
        }
        let f = &mut self.fam[fi(family)];
        cx.set_timer(&mut f.refresh_timer, None, TimerKind::Refresh(family));
        f.request = Some(cx.nonce());
        self.send_request(cx, family, now);
    }

    fn send_request(&mut self, cx: &mut Ctx<'_>, family: Family, now: Instant) {
        let Some(dest) = self.relay_dest() else { return };
        let f = &mut self.fam[fi(family)];
        let Some(nonce) = f.request else { return };
        if cx.out.send(dest, &Repr::Request { nonce, p_flag: family.p_flag() }) {
            self.counters.requests += 1;
        }
        let wait = cx.retransmit_backoff(f.request_attempts);
        f.request_attempts += 1;
        cx.set_timer(&mut f.request_timer, Some(now + wait), TimerKind::Request(family));
    }

    fn on_request_timer(&mut self, cx: &mut Ctx<'_>, family: Family, now: Instant) {
        let f = &mut self.fam[fi(family)];
        f.request_timer = None;
        if f.request.is_none() {
            return;
        }
        let failed_round = f.request_attempts > 0 && f.request_attempts.is_multiple_of(cx.config.request_attempts);
        if failed_round {
            if !f.request_reported {
                f.request_reported = true;
                self.fail(cx, FailReason::NoQuery);
            }
            if self.discovery.is_some() {
                // The discovered relay stopped answering: ask the discovery address again
                // (it may be anycast and lead elsewhere now). Linux does the same.
                for family in FAMILIES {
                    let f = &mut self.fam[fi(family)];
                    f.request = None;
                    cx.set_timer(&mut f.request_timer, None, TimerKind::Request(family));
                }
                self.start_discovery(cx, now);
                return;
            }
        }
        self.send_request(cx, family, now);
    }

    fn on_refresh_timer(&mut self, cx: &mut Ctx<'_>, family: Family, now: Instant) {
        let f = &mut self.fam[fi(family)];
        f.refresh_timer = None;
        if f.wanted() && f.request.is_none() {
            self.start_request(cx, family, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_query(
        &mut self,
        cx: &mut Ctx<'_>,
        now: Instant,
        local: Option<SocketAddr>,
        limit: bool,
        mac: [u8; 6],
        nonce: u32,
        query: &[u8],
        gateway: Option<(u16, IpAddr)>,
    ) -> Result<(), ControlDrop> {
        let family =
            FAMILIES.into_iter().find(|f| self.fam[fi(*f)].request == Some(nonce)).ok_or(ControlDrop::BadNonce)?;
        let info = membership::parse_query(query).map_err(|_| ControlDrop::BadQuery)?;
        if info.family != family {
            return Err(ControlDrop::WrongFamily);
        }
        let key = self.key;
        let has_state = self.has_state;
        let f = &mut self.fam[fi(family)];
        f.request = None;
        cx.set_timer(&mut f.request_timer, None, TimerKind::Request(family));
        self.counters.queries += 1;

        if limit && !has_state {
            // RFC 7450 §5.1.4.4: the relay takes no new gateways. Do not send an Update;
            // retry later with backoff (the caller will normally move elsewhere).
            let wait = cx.retransmit_backoff(f.request_attempts);
            cx.set_timer(&mut f.refresh_timer, Some(now + wait), TimerKind::Refresh(family));
            if !f.limit_reported {
                f.limit_reported = true;
                self.fail(cx, FailReason::Limit);
            }
            return Ok(());
        }
        if limit && !f.session.as_ref().is_some_and(|s| s.limit) {
            cx.out.event(Event::LimitReached { relay: key, family });
        }
        f.request_attempts = 0;
        f.request_reported = false;
        f.limit_reported = false;
        self.failed = None;

        let endpoint = gateway.map(|(port, addr)| SocketAddr::new(addr, port));
        if let Some(new) = endpoint {
            if let Some((old, old_mac, old_nonce)) = self.endpoint
                && old != new
            {
                // RFC 7450 §5.2.3.7: tear down the tunnel the relay holds for the old endpoint,
                // with the MAC and nonce of the last Query sent to it.
                if let Some(dest) = self.relay_dest() {
                    let teardown = Repr::Teardown {
                        mac: old_mac,
                        nonce: old_nonce,
                        gateway_port: old.port(),
                        gateway_addr: old.ip(),
                    };
                    if cx.out.send(dest, &teardown) {
                        self.counters.teardowns += 1;
                    }
                }
                cx.out.event(Event::GatewayEndpointChanged { relay: key, old, new });
                // The other family's MAC was computed over the old endpoint.
                let other = match family {
                    Family::V4 => Family::V6,
                    Family::V6 => Family::V4,
                };
                let o = &mut self.fam[fi(other)];
                o.session = None;
                if o.wanted() && o.request.is_none() {
                    self.start_request(cx, other, now);
                }
            }
            self.endpoint = Some((new, mac, nonce));
        }

        let f = &mut self.fam[fi(family)];
        f.session = Some(Session {
            mac,
            nonce,
            received: now,
            query_interval: info.query_interval,
            robustness: info.robustness,
            endpoint,
            local,
            limit,
        });
        if f.wanted() {
            // QQIC: start the next three-way handshake at now + Query Interval (RFC 7450
            // §5.1.4.8, §5.2.3.5).
            cx.set_timer(&mut f.refresh_timer, Some(now + info.query_interval), TimerKind::Refresh(family));
        }
        if !f.established {
            f.established = true;
            cx.out.event(Event::TunnelEstablished { relay: key, family });
        }
        self.answer_query(cx, family, now);
        Ok(())
    }

    /// The full-state report after a Query (MODE_IS_INCLUDE for every (S,G) of the family),
    /// with the not yet sent BLOCK records; not yet sent ALLOW records are covered by it and
    /// count as sent once.
    fn answer_query(&mut self, cx: &mut Ctx<'_>, family: Family, now: Instant) {
        let f = &mut self.fam[fi(family)];
        let current: Vec<SourceGroup> = self.sgs.iter().filter(|sg| Family::of_sg(sg) == family).copied().collect();
        let mut blocks = Vec::new();
        for (sg, change) in f.changes.iter_mut() {
            if change.sent == 0 {
                change.sent = 1;
                if !change.allow {
                    blocks.push(*sg);
                }
            }
        }
        f.changes.retain(|_, c| c.sent < c.total);
        let mut records = membership::records_for(RecordType::ModeIsInclude, current.iter().copied());
        records.extend(membership::records_for(RecordType::BlockOldSources, blocks));
        if !current.is_empty() {
            self.has_state = true;
        }
        self.send_updates(cx, family, &records);
        self.schedule_report(cx, family, now);
        self.arm_no_traffic(cx, now);
    }

    /// Sends `records` in as many Updates as needed, with the family's MAC and nonce.
    fn send_updates(&mut self, cx: &mut Ctx<'_>, family: Family, records: &[GroupRecord]) {
        if records.is_empty() {
            return;
        }
        let Some(dest) = self.relay_dest() else { return };
        let Some(session) = self.fam[fi(family)].session.as_ref() else { return };
        let (mac, nonce) = (session.mac, session.nonce);
        match membership::report_datagrams(family, records, cx.config.max_report_datagram) {
            Ok(datagrams) => {
                for update in &datagrams {
                    if cx.out.send(dest, &Repr::MembershipUpdate { mac, nonce, update }) {
                        self.counters.updates += 1;
                    }
                }
            }
            Err(_) => cx.out.counters.encode_errors += 1,
        }
    }

    /// Sends the changes of `family` that were never sent (`only_unsent`) or all that still
    /// need repeating, with the current MAC.
    fn send_changes(&mut self, cx: &mut Ctx<'_>, family: Family, only_unsent: bool, now: Instant) {
        let f = &mut self.fam[fi(family)];
        let mut allow = Vec::new();
        let mut block = Vec::new();
        for (sg, change) in f.changes.iter_mut() {
            if (only_unsent && change.sent > 0) || change.sent >= change.total {
                continue;
            }
            change.sent += 1;
            if change.allow { allow.push(*sg) } else { block.push(*sg) }
        }
        f.changes.retain(|_, c| c.sent < c.total);
        if !allow.is_empty() {
            self.has_state = true;
        }
        let mut records = membership::records_for(RecordType::AllowNewSources, allow);
        records.extend(membership::records_for(RecordType::BlockOldSources, block));
        self.send_updates(cx, family, &records);
        self.schedule_report(cx, family, now);
        self.arm_no_traffic(cx, now);
    }

    fn schedule_report(&mut self, cx: &mut Ctx<'_>, family: Family, now: Instant) {
        let f = &mut self.fam[fi(family)];
        let repeat = f.changes.values().any(|c| c.sent > 0 && c.sent < c.total);
        if repeat && f.report_timer.is_none() {
            let at = now + cx.report_delay();
            cx.set_timer(&mut f.report_timer, Some(at), TimerKind::Report(family));
        } else if !repeat {
            cx.set_timer(&mut f.report_timer, None, TimerKind::Report(family));
        }
    }

    fn on_report_timer(&mut self, cx: &mut Ctx<'_>, family: Family, now: Instant) {
        let f = &mut self.fam[fi(family)];
        f.report_timer = None;
        if f.session.as_ref().is_some_and(|s| s.usable(now)) {
            self.send_changes(cx, family, false, now);
        }
        // Without a usable MAC the changes wait for the next Query.
    }

    // ----- membership changes ---------------------------------------------------------------

    fn record_change(&mut self, sg: SourceGroup, allow: bool) {
        let f = &mut self.fam[fi(Family::of_sg(&sg))];
        let total = f.robustness();
        f.changes.insert(sg, Change { allow, sent: 0, total });
    }

    /// Makes progress after membership changes: closes the tunnel when the last (S,G) left,
    /// otherwise sends the new changes now (usable MAC) or starts the Request that brings one.
    fn service(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        self.dirty = false;
        if self.removed || self.closing.is_some() {
            return;
        }
        if self.sgs.is_empty() && cx.config.teardown_on_last_leave {
            if self.fam.iter().any(|f| !f.changes.is_empty()) {
                self.close(cx, CloseReason::LastLeave, now);
            }
            return;
        }
        if self.relay.is_none() {
            return;
        }
        for family in FAMILIES {
            let f = &self.fam[fi(family)];
            if !f.wanted() {
                continue;
            }
            if f.session.as_ref().is_some_and(|s| s.usable(now)) {
                if f.changes.values().any(|c| c.sent == 0) {
                    self.send_changes(cx, family, true, now);
                }
            } else if f.request.is_none() {
                self.start_request(cx, family, now);
            }
        }
    }

    /// Gives up the relay state: BLOCK records for what the relay may still hold, then a
    /// Teardown, repeated QRV − 1 more times (RFC 7450 §5.1.4.8: QRV is also "the number of
    /// times to send a Teardown message"). `repeat = false` sends them once (shutdown).
    fn close(&mut self, cx: &mut Ctx<'_>, reason: CloseReason, now: Instant) {
        let had_state = self.has_state || self.fam.iter().any(|f| f.session.is_some());
        let mut payloads = Vec::new();
        let mut robustness = 1;
        let mut latest: Option<&Session> = None;
        for family in FAMILIES {
            let f = &self.fam[fi(family)];
            let Some(session) = f.session.as_ref() else { continue };
            robustness = robustness.max(session.robustness);
            if latest.is_none_or(|l| session.received > l.received) {
                latest = Some(session);
            }
            // Everything the relay may hold for this family: current (S,G)s (remove and
            // shutdown) and pending leaves.
            let mut blocks: BTreeSet<SourceGroup> =
                self.sgs.iter().filter(|sg| Family::of_sg(sg) == family).copied().collect();
            blocks.extend(f.changes.iter().filter(|(_, c)| !c.allow).map(|(sg, _)| *sg));
            if blocks.is_empty() || !self.has_state {
                continue;
            }
            let records = membership::records_for(RecordType::BlockOldSources, blocks);
            match membership::report_datagrams(family, &records, cx.config.max_report_datagram) {
                Ok(datagrams) => {
                    for update in &datagrams {
                        let repr = Repr::MembershipUpdate { mac: session.mac, nonce: session.nonce, update };
                        match repr.to_vec() {
                            Ok(p) => payloads.push(p),
                            Err(_) => cx.out.counters.encode_errors += 1,
                        }
                    }
                }
                Err(_) => cx.out.counters.encode_errors += 1,
            }
        }
        // The Teardown names the endpoint the relay knows us by (G fields) with the MAC and
        // nonce of the last Query sent to it; else our local endpoint and the latest MAC.
        let teardown = match (self.endpoint, latest) {
            (Some((ep, mac, nonce)), _) => Some((ep, mac, nonce)),
            (None, Some(s)) => s.teardown_endpoint().map(|ep| (ep, s.mac, s.nonce)),
            (None, None) => None,
        };
        let mut teardowns = 0;
        if self.has_state
            && let Some((ep, mac, nonce)) = teardown
        {
            let repr = Repr::Teardown { mac, nonce, gateway_port: ep.port(), gateway_addr: ep.ip() };
            if let Ok(p) = repr.to_vec() {
                payloads.push(p);
                teardowns = 1;
            }
        }
        let repeat = reason != CloseReason::Shutdown;
        if let Some(dest) = self.relay_dest()
            && !payloads.is_empty()
        {
            for p in &payloads {
                cx.out.send_raw(dest, p.clone());
            }
            self.counters.teardowns += teardowns;
            self.counters.updates += (payloads.len() - teardowns as usize) as u64;
            let remaining = robustness.saturating_sub(1);
            if repeat && remaining > 0 {
                let mut closing = Closing { destination: dest, payloads, remaining, timer: None };
                let at = now + cx.report_delay();
                cx.set_timer(&mut closing.timer, Some(at), TimerKind::Closing);
                self.closing = Some(closing);
            }
        }
        // Forget the relay state; the next join starts with a new Request.
        for family in FAMILIES {
            let f = &mut self.fam[fi(family)];
            f.session = None;
            f.changes.clear();
            f.request = None;
            f.request_attempts = 0;
            f.request_reported = false;
            f.established = false;
            cx.set_timer(&mut f.request_timer, None, TimerKind::Request(family));
            cx.set_timer(&mut f.refresh_timer, None, TimerKind::Refresh(family));
            cx.set_timer(&mut f.report_timer, None, TimerKind::Report(family));
        }
        self.has_state = false;
        self.endpoint = None;
        self.disarm_no_traffic(cx);
        if had_state || reason != CloseReason::LastLeave {
            cx.out.event(Event::TunnelClosed { relay: self.key, reason });
        }
    }

    fn on_closing_timer(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        let Some(closing) = self.closing.as_mut() else { return };
        closing.timer = None;
        for p in &closing.payloads {
            cx.out.send_raw(closing.destination, p.clone());
        }
        closing.remaining = closing.remaining.saturating_sub(1);
        if closing.remaining > 0 {
            let at = now + cx.report_delay();
            cx.set_timer(&mut closing.timer, Some(at), TimerKind::Closing);
        } else {
            self.closing = None;
        }
    }

    fn cancel_closing(&mut self, cx: &mut Ctx<'_>) {
        if let Some(mut closing) = self.closing.take() {
            cx.set_timer(&mut closing.timer, None, TimerKind::Closing);
        }
    }

    // ----- no traffic ----------------------------------------------------------------------

    fn arm_no_traffic(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        let Some(initial) = cx.config.no_traffic_initial else { return };
        if self.sgs.is_empty() || self.no_traffic_timer.is_some() || !self.has_state {
            return;
        }
        let wait = cx.backoff(self.no_traffic_n, initial, cx.config.no_traffic_max);
        self.no_traffic_mark = self.counters.packets;
        self.no_traffic_since.get_or_insert(now);
        cx.set_timer(&mut self.no_traffic_timer, Some(now + wait), TimerKind::NoTraffic);
    }

    fn disarm_no_traffic(&mut self, cx: &mut Ctx<'_>) {
        cx.set_timer(&mut self.no_traffic_timer, None, TimerKind::NoTraffic);
        self.no_traffic_n = 0;
        self.no_traffic_since = None;
    }

    fn on_no_traffic_timer(&mut self, cx: &mut Ctx<'_>, now: Instant) {
        self.no_traffic_timer = None;
        if self.sgs.is_empty() {
            self.disarm_no_traffic(cx);
            return;
        }
        if self.counters.packets != self.no_traffic_mark {
            self.no_traffic_n = 0;
            self.no_traffic_since = Some(now);
        } else {
            let since = self.no_traffic_since.unwrap_or(now);
            cx.out.event(Event::NoTraffic { relay: self.key, silent_for: now.saturating_duration_since(since) });
            self.no_traffic_n = self.no_traffic_n.saturating_add(1);
            // A fresh handshake: its full-state report repairs a relay that lost our state.
            if self.relay.is_some() {
                for family in FAMILIES {
                    let f = &self.fam[fi(family)];
                    if f.wanted() && f.request.is_none() {
                        self.start_request(cx, family, now);
                    }
                }
            }
        }
        self.arm_no_traffic(cx, now);
    }

    fn cancel_all_timers(&mut self, cx: &mut Ctx<'_>) {
        self.stop_discovery(cx);
        for family in FAMILIES {
            let f = &mut self.fam[fi(family)];
            cx.set_timer(&mut f.request_timer, None, TimerKind::Request(family));
            cx.set_timer(&mut f.refresh_timer, None, TimerKind::Refresh(family));
            cx.set_timer(&mut f.report_timer, None, TimerKind::Report(family));
        }
        self.disarm_no_traffic(cx);
        self.cancel_closing(cx);
    }

    fn state(&self) -> TunnelState {
        if self.closing.is_some() {
            TunnelState::Closing
        } else if self.relay.is_none() || self.discovery.as_ref().is_some_and(|d| d.nonce.is_some()) {
            TunnelState::Discovering
        } else if self.fam.iter().any(|f| f.sgs > 0 && f.session.is_some()) {
            TunnelState::Established
        } else if self.fam.iter().any(|f| f.request.is_some()) {
            TunnelState::Requesting
        } else {
            TunnelState::Idle
        }
    }
}

/// The AMT gateway: tunnels to any number of relays. See the module documentation.
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    rng: SmallRng,
    slots: Vec<Option<Tunnel>>,
    free: Vec<Slot>,
    maps: Maps,
    timers: Timers,
    out: Output,
    dirty: Vec<Slot>,
    total_sgs: usize,
    /// The latest time seen (for flushing changes from `poll_transmit`).
    now: Option<Instant>,
    shut_down: bool,
}

impl Gateway {
    /// A new gateway. `seed` drives every random choice (nonces, backoff, report spacing):
    /// give a fresh random value from the OS on every start (nonces must not be predictable,
    /// RFC 7450 §6.2); tests give a constant.
    pub fn new(config: Config, seed: u64) -> Result<Gateway, ConfigError> {
        config.validate()?;
        let max_events = config.max_queued_events;
        Ok(Gateway {
            config,
            rng: SmallRng::seed_from_u64(seed),
            slots: Vec::new(),
            free: Vec::new(),
            maps: Maps::default(),
            timers: Timers::default(),
            out: Output { max_events, ..Output::default() },
            dirty: Vec::new(),
            total_sgs: 0,
            now: None,
            shut_down: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn touch(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
    }

    /// Splits the borrow: the tunnel in `slot` and the context for its methods.
    fn split(&mut self, slot: Slot) -> Option<(&mut Tunnel, Ctx<'_>)> {
        let tunnel = self.slots.get_mut(slot as usize)?.as_mut()?;
        Some((
            tunnel,
            Ctx {
                config: &self.config,
                rng: &mut self.rng,
                timers: &mut self.timers,
                out: &mut self.out,
                maps: &mut self.maps,
                slot,
            },
        ))
    }

    fn slot_of(&self, relay: IpAddr) -> Result<Slot, GatewayError> {
        if self.shut_down {
            return Err(GatewayError::ShutDown);
        }
        self.maps.by_key.get(&relay).copied().ok_or(GatewayError::UnknownTunnel(relay))
    }

    fn mark_dirty(&mut self, slot: Slot) {
        if let Some(Some(t)) = self.slots.get_mut(slot as usize)
            && !t.dirty
        {
            t.dirty = true;
            self.dirty.push(slot);
        }
    }

    fn free_slot(&mut self, slot: Slot) {
        if let Some((tunnel, mut cx)) = self.split(slot) {
            tunnel.cancel_all_timers(&mut cx);
            if let Some(dest) = tunnel.relay_dest()
                && cx.maps.by_relay.get(&dest) == Some(&slot)
            {
                cx.maps.by_relay.remove(&dest);
            }
            cx.maps.last_from = None;
        }
        if let Some(entry) = self.slots.get_mut(slot as usize)
            && entry.take().is_some()
        {
            self.free.push(slot);
        }
    }

    /// Adds a tunnel to `relay`. With `discovery` (DRIAD D = 0, or an anycast discovery
    /// address) a Relay Discovery goes there first and Requests go to the advertised address;
    /// without it (D = 1, RFC 8777 §4.2.2) Requests go straight to `relay`. Requests wait
    /// until an (S,G) is joined. The Relay Discovery goes out at once, so the relay is
    /// usually known by the time the first (S,G) is joined. Adding an existing tunnel with
    /// the same discovery address is a no-op.
    pub fn add_tunnel(&mut self, relay: IpAddr, discovery: Option<IpAddr>, now: Instant) -> Result<(), GatewayError> {
        if self.shut_down {
            return Err(GatewayError::ShutDown);
        }
        self.touch(now);
        if let Some(&slot) = self.maps.by_key.get(&relay) {
            let same =
                self.slots[slot as usize].as_ref().is_some_and(|t| t.discovery.as_ref().map(|d| d.addr) == discovery);
            return if same { Ok(()) } else { Err(GatewayError::Exists(relay)) };
        }
        for addr in std::iter::once(&relay).chain(discovery.as_ref()) {
            if !is_usable_unicast(addr) {
                return Err(GatewayError::InvalidAddress(*addr));
            }
        }
        if self.maps.by_key.len() >= self.config.max_tunnels {
            return Err(GatewayError::TooManyTunnels);
        }
        if discovery.is_none() && self.maps.by_relay.contains_key(&relay_endpoint(relay)) {
            return Err(GatewayError::RelayInUse(relay));
        }
        let tunnel = Tunnel::new(relay, discovery, now);
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(tunnel);
                slot
            }
            None => {
                self.slots.push(Some(tunnel));
                (self.slots.len() - 1) as Slot
            }
        };
        self.maps.by_key.insert(relay, slot);
        if discovery.is_none() {
            self.maps.by_relay.insert(relay_endpoint(relay), slot);
            self.maps.last_from = None;
        }
        if let Some((tunnel, mut cx)) = self.split(slot) {
            tunnel.start_discovery(&mut cx, now);
        }
        Ok(())
    }

    /// Removes a tunnel: BLOCK records for its (S,G)s and a Teardown go out at once (and are
    /// repeated QRV − 1 times), then it is forgotten; Data from its relay is dropped from now
    /// on.
    pub fn remove_tunnel(&mut self, relay: IpAddr, now: Instant) -> Result<(), GatewayError> {
        let slot = self.slot_of(relay)?;
        self.touch(now);
        self.maps.by_key.remove(&relay);
        let Some((tunnel, mut cx)) = self.split(slot) else { return Ok(()) };
        let count = tunnel.sgs.len();
        tunnel.cancel_closing(&mut cx);
        tunnel.close(&mut cx, CloseReason::Removed, now);
        tunnel.removed = true;
        tunnel.sgs.clear();
        let closing = tunnel.closing.is_some();
        // Keep nothing but the closing repetitions.
        tunnel.stop_discovery(&mut cx);
        tunnel.disarm_no_traffic(&mut cx);
        if let Some(dest) = tunnel.relay_dest()
            && cx.maps.by_relay.get(&dest) == Some(&slot)
        {
            cx.maps.by_relay.remove(&dest);
        }
        cx.maps.last_from = None;
        self.total_sgs -= count;
        if !closing {
            self.free_slot(slot);
        }
        Ok(())
    }

    /// Joins `sg` on the tunnel to `relay`. Returns whether it was new. The ALLOW record
    /// goes out when the driver next polls (coalesced with other changes made meanwhile).
    pub fn join(&mut self, relay: IpAddr, sg: SourceGroup, now: Instant) -> Result<bool, GatewayError> {
        let sg = sg.validate().map_err(GatewayError::InvalidSg)?;
        let slot = self.slot_of(relay)?;
        self.touch(now);
        let total = self.total_sgs;
        let max = self.config.max_sgs;
        let Some((tunnel, mut cx)) = self.split(slot) else { return Err(GatewayError::UnknownTunnel(relay)) };
        if tunnel.sgs.contains(&sg) {
            return Ok(false);
        }
        if total >= max {
            return Err(GatewayError::TooManySgs);
        }
        tunnel.cancel_closing(&mut cx);
        tunnel.sgs.insert(sg);
        tunnel.fam[fi(Family::of_sg(&sg))].sgs += 1;
        tunnel.record_change(sg, true);
        self.total_sgs += 1;
        self.mark_dirty(slot);
        Ok(true)
    }

    /// Leaves `sg` on the tunnel to `relay`. Returns whether it was joined. The BLOCK record
    /// goes out when the driver next polls; after the last (S,G), a Teardown follows.
    pub fn leave(&mut self, relay: IpAddr, sg: SourceGroup, now: Instant) -> Result<bool, GatewayError> {
        let slot = self.slot_of(relay)?;
        self.touch(now);
        let Some((tunnel, _)) = self.split(slot) else { return Err(GatewayError::UnknownTunnel(relay)) };
        if !tunnel.sgs.remove(&sg) {
            return Ok(false);
        }
        tunnel.fam[fi(Family::of_sg(&sg))].sgs -= 1;
        tunnel.record_change(sg, false);
        self.total_sgs -= 1;
        self.mark_dirty(slot);
        Ok(true)
    }

    fn flush(&mut self, now: Instant) {
        while let Some(slot) = self.dirty.pop() {
            if let Some((tunnel, mut cx)) = self.split(slot) {
                tunnel.service(&mut cx, now);
            }
        }
    }

    /// Handles a control message from `from` (the UDP source), received on our `local`
    /// endpoint (address from `IP_PKTINFO` and our port, when the driver knows them; used to
    /// name our endpoint in a Teardown when the relay does not send G fields). Multicast Data
    /// goes to [`Gateway::accept_data`] instead. Every drop is counted by reason.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: Option<SocketAddr>,
        payload: &[u8],
    ) -> Result<(), ControlDrop> {
        let result = self.handle_datagram_inner(now, from, local, payload);
        if let Err(reason) = result {
            self.out.counters.control_drops.bump(reason);
        }
        result
    }

    fn handle_datagram_inner(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: Option<SocketAddr>,
        payload: &[u8],
    ) -> Result<(), ControlDrop> {
        if self.shut_down {
            return Err(ControlDrop::ShutDown);
        }
        self.touch(now);
        let packet = Packet::new_checked(payload).map_err(|_| ControlDrop::Malformed)?;
        let repr = Repr::parse(&packet).map_err(|_| ControlDrop::Malformed)?;
        self.out.counters.received.bump(repr.msg_type());
        match repr {
            Repr::RelayAdvertisement { nonce, relay } => {
                let slot = *self.maps.by_discovery.get(&(from, nonce)).ok_or_else(|| {
                    if self.maps.by_discovery.keys().any(|(addr, _)| *addr == from) {
                        ControlDrop::BadNonce
                    } else {
                        ControlDrop::UnknownSender
                    }
                })?;
                if !is_usable_unicast(&relay) {
                    return Err(ControlDrop::Malformed);
                }
                let (tunnel, mut cx) = self.split(slot).ok_or(ControlDrop::UnknownSender)?;
                tunnel.on_advertisement(&mut cx, relay, now)
            }
            Repr::MembershipQuery { limit, mac, nonce, query, gateway } => {
                let slot = *self.maps.by_relay.get(&from).ok_or(ControlDrop::UnknownSender)?;
                let (tunnel, mut cx) = self.split(slot).ok_or(ControlDrop::UnknownSender)?;
                tunnel.on_query(&mut cx, now, local, limit, mac, nonce, query, gateway)
            }
            _ => Err(ControlDrop::UnexpectedType),
        }
    }

    /// The data fast path: checks a Multicast Data message from `from` and returns the inner
    /// IP datagram (a sub-slice of `payload`, trailing bytes beyond its length cut off) for
    /// the TUN. O(1): one hash lookup by sender (cached for runs from one relay), one by
    /// (S,G). No allocation; counters are plain integers.
    #[inline]
    pub fn accept_data<'a>(&mut self, from: SocketAddr, payload: &'a [u8]) -> Result<&'a [u8], DataDrop> {
        let Some(datagram) = amt::parse_data(payload) else {
            self.out.counters.data_drops.bump(DataDrop::NotData);
            return Err(DataDrop::NotData);
        };
        let slot = match self.maps.last_from {
            Some((addr, slot)) if addr == from => slot,
            _ => match self.maps.by_relay.get(&from) {
                Some(&slot) => {
                    self.maps.last_from = Some((from, slot));
                    slot
                }
                None => {
                    self.out.counters.data_drops.bump(DataDrop::NotFromRelay);
                    return Err(DataDrop::NotFromRelay);
                }
            },
        };
        let Some(Some(tunnel)) = self.slots.get_mut(slot as usize) else {
            self.out.counters.data_drops.bump(DataDrop::NotFromRelay);
            return Err(DataDrop::NotFromRelay);
        };
        let verdict = match data::inspect(datagram) {
            Err(reason) => Err(reason),
            Ok(inner) if !tunnel.sgs.contains(&inner.sg) => Err(DataDrop::NotJoined),
            Ok(inner) if !inner.udp => Err(DataDrop::NotUdp),
            Ok(inner) if inner.ttl < self.config.min_inner_ttl => Err(DataDrop::TtlExpired),
            Ok(inner) => Ok(inner.len),
        };
        match verdict {
            Ok(len) => {
                tunnel.counters.packets += 1;
                tunnel.counters.bytes += len as u64;
                self.out.counters.data_packets += 1;
                self.out.counters.data_bytes += len as u64;
                Ok(&datagram[..len])
            }
            Err(reason) => {
                tunnel.counters.drops.bump(reason);
                self.out.counters.data_drops.bump(reason);
                Err(reason)
            }
        }
    }

    /// Runs every timer due at `now`, then flushes pending membership changes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        while let Some((_, key)) = self.timers.pop_due(now) {
            let Some((tunnel, mut cx)) = self.split(key.slot) else { continue };
            match key.kind {
                TimerKind::Discovery => tunnel.on_discovery_timer(&mut cx, now),
                TimerKind::Request(f) => tunnel.on_request_timer(&mut cx, f, now),
                TimerKind::Refresh(f) => tunnel.on_refresh_timer(&mut cx, f, now),
                TimerKind::Report(f) => tunnel.on_report_timer(&mut cx, f, now),
                TimerKind::NoTraffic => tunnel.on_no_traffic_timer(&mut cx, now),
                TimerKind::Closing => {
                    tunnel.on_closing_timer(&mut cx, now);
                    if tunnel.removed && tunnel.closing.is_none() {
                        self.free_slot(key.slot);
                    }
                }
            }
        }
        self.flush(now);
    }

    /// When [`Gateway::handle_timeout`] should run next: the earliest timer, or at once when
    /// membership changes are waiting to be flushed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.dirty.is_empty() {
            return self.now;
        }
        self.timers.next()
    }

    /// The next datagram to send (pending membership changes are flushed first, so a batch
    /// of joins leaves as few Updates as possible).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.dirty.is_empty()
            && let Some(now) = self.now
        {
            self.flush(now);
        }
        self.out.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Tears every tunnel down: BLOCK records for all (S,G)s and a Teardown to each relay that
    /// holds state for us, sent once. Afterwards every call is refused and every datagram
    /// dropped; the driver sends what `poll_transmit` returns and exits.
    pub fn shutdown(&mut self, now: Instant) {
        if self.shut_down {
            return;
        }
        self.touch(now);
        for slot in 0..self.slots.len() as Slot {
            if let Some((tunnel, mut cx)) = self.split(slot) {
                if !tunnel.removed {
                    tunnel.cancel_closing(&mut cx);
                    tunnel.close(&mut cx, CloseReason::Shutdown, now);
                }
                tunnel.cancel_all_timers(&mut cx);
            }
        }
        self.slots.clear();
        self.free.clear();
        self.dirty.clear();
        self.maps = Maps::default();
        self.timers = Timers::default();
        self.total_sgs = 0;
        self.shut_down = true;
    }

    /// Whether `shutdown` was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// The relays with a tunnel, in no particular order.
    pub fn tunnels(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.maps.by_key.keys().copied()
    }

    /// The (S,G)s joined on the tunnel to `relay`.
    pub fn joined(&self, relay: IpAddr) -> impl Iterator<Item = SourceGroup> + '_ {
        self.maps
            .by_key
            .get(&relay)
            .and_then(|&slot| self.slots.get(slot as usize))
            .and_then(Option::as_ref)
            .into_iter()
            .flat_map(|t| t.sgs.iter().copied())
    }

    /// Gateway-wide counters.
    pub fn counters(&self) -> &Counters {
        &self.out.counters
    }

    /// The counters of the tunnel to `relay`.
    pub fn tunnel_counters(&self, relay: IpAddr) -> Option<&TunnelCounters> {
        let slot = *self.maps.by_key.get(&relay)?;
        self.slots.get(slot as usize)?.as_ref().map(|t| &t.counters)
    }

    /// The status, for `driad-ingest status`.
    pub fn status(&self, now: Instant) -> Status {
        let secs_until = |at: Option<Instant>| at.map(|at| at.saturating_duration_since(now).as_secs_f64());
        let mut tunnels: Vec<TunnelStatus> = self
            .maps
            .by_key
            .values()
            .filter_map(|&slot| self.slots.get(slot as usize)?.as_ref())
            .map(|t| {
                let mut sgs: Vec<SourceGroup> = t.sgs.iter().copied().collect();
                sgs.sort();
                let families = FAMILIES
                    .into_iter()
                    .filter(|f| {
                        let s = &t.fam[fi(*f)];
                        s.wanted() || s.session.is_some() || s.request.is_some()
                    })
                    .map(|family| {
                        let f = &t.fam[fi(family)];
                        let s = f.session.as_ref();
                        FamilyStatus {
                            family: if family == Family::V4 { "ipv4" } else { "ipv6" },
                            sgs: f.sgs,
                            request_nonce: f.request.map(|n| format!("{n:#010x}")),
                            request_attempts: f.request_attempts,
                            mac: s.map(|s| format!("{:012x}", amt::mac_to_u64(s.mac))),
                            nonce: s.map(|s| format!("{:#010x}", s.nonce)),
                            mac_age_secs: s.map(|s| now.saturating_duration_since(s.received).as_secs_f64()),
                            query_interval_secs: s.map(|s| s.query_interval.as_secs_f64()),
                            robustness: s.map(|s| s.robustness),
                            next_refresh_secs: secs_until(f.refresh_timer),
                            pending_changes: f.changes.len(),
                        }
                    })
                    .collect();
                TunnelStatus {
                    relay: t.key,
                    discovery: t.discovery.as_ref().map(|d| d.addr),
                    relay_address: t.relay,
                    state: t.state(),
                    sgs,
                    families,
                    gateway_endpoint: t.endpoint.map(|(ep, _, _)| ep),
                    discovery_attempts: t.discovery.as_ref().map_or(0, |d| d.attempts),
                    failed: t.failed.map(|r| r.as_str().to_owned()),
                    uptime_secs: now.saturating_duration_since(t.created).as_secs_f64(),
                    no_traffic_check_in_secs: secs_until(t.no_traffic_timer),
                    counters: t.counters.clone(),
                }
            })
            .collect();
        tunnels.sort_by_key(|t| t.relay);
        Status { tunnels, joined_sgs: self.total_sgs, counters: self.out.counters.clone(), shut_down: self.shut_down }
    }
}
