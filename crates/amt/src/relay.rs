//! The AMT relay (RFC 7450 §5.3), sans-IO.
//!
//! The relay answers Relay Discovery with an Advertisement, answers each Request with a
//! Membership Query carrying a Response MAC, accepts Membership Updates whose MAC and nonce
//! check out, keeps per-gateway (S,G) memberships with SSM router-side semantics, and tells
//! the driver which (S,G)s to join upstream and which gateways each native packet goes to.
//! No sockets, no clock, no tasks: the driver passes `now` in and takes transmits, events and
//! the next timer deadline out (the style of crates/pim and quinn-proto).
//!
//! # Nonces and the Response MAC
//!
//! The MAC is SipHash-2-4 keyed with a 128-bit random secret over the gateway's address bytes
//! (4 or 16), its UDP port and the Request Nonce, truncated to 48 bits (the upper 48 of the
//! 64-bit hash, as Linux does). So a Request costs the relay no state: an Update proves by its
//! MAC that its sender received our Query at that address and port. The secret is replaced
//! every [`Config::secret_rotation`] (default 60 s, as Linux); MACs issued under the previous
//! secret are accepted until the next rotation, so a MAC lives between one and two periods.
//!
//! Replays: for an endpoint with state, an Update (or Teardown) must carry the nonce of the
//! endpoint's latest Request, so an Update captured in an earlier cycle is refused once the
//! gateway has sent a newer Request. An endpoint whose state was removed is remembered
//! (address, port, latest nonce) for two rotation periods, the longest a MAC it holds can
//! verify, so an old Update cannot bring it back either. Endpoints that never had state are
//! not remembered (Requests stay free).
//!
//! # Memberships
//!
//! The encapsulated IGMPv3/MLDv2 report is applied per gateway endpoint as a router does for
//! a single host (RFC 3376 §6.4, RFC 3810 §7.4, restricted to INCLUDE mode, i.e. SSM): a
//! tunnel has one host behind it, so no last-member queries are needed and leaves take effect
//! at once. IS_IN and ALLOW add or refresh sources, BLOCK removes them, TO_IN replaces the
//! group's source set. EXCLUDE-mode records (any-source multicast) are ignored and counted.
//! Each (S,G) of a gateway expires one Group Membership Interval (RFC 3376 §8.4: Robustness ×
//! Query Interval + Query Response Interval) after its last refresh. A gateway endpoint is
//! keyed by (address, port) and removed when it has no (S,G) left, on Teardown, or when its
//! last membership expires.
//!
//! # Driver loop
//!
//! ```
//! use std::time::Instant;
//! use mcast_amt::relay::{Config, Relay};
//!
//! let now = Instant::now();
//! let mut relay = Relay::new(Config::new(vec!["203.0.113.15".parse().unwrap()]), [7; 32], now).unwrap();
//! let local = "203.0.113.15:2268".parse().unwrap();
//! let gateway = "192.0.2.2:40000".parse().unwrap();
//! // A Request (P = 0, nonce 0x01020304) arrives on the relay address:
//! relay.handle_datagram(local, gateway, &[3, 0, 0, 0, 1, 2, 3, 4], now).unwrap();
//! let query = relay.poll_transmit().unwrap();
//! assert_eq!((query.src, query.dst), (local, gateway));
//! // loop: handle_datagram / handle_timeout at poll_timeout(); drain poll_transmit and
//! // poll_event (JoinUpstream / LeaveUpstream drive the native joins); for each native
//! // packet, send it encapsulated to every `relay.forward(&sg, len)` subscriber.
//! assert!(relay.poll_timeout().is_some());
//! ```

mod config;
mod counters;
mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mcast_wire::SourceGroup;
use mcast_wire::amt::{self, Repr};
use mcast_wire::igmp::RecordType;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use siphasher::sip::SipHasher24;

pub use self::config::{Config, ConfigError, MAX_QUERY_INTERVAL};
pub use self::counters::{AmtType, Counters, DropReason};
pub use self::status::{ChannelStatus, GatewayStatus, MembershipStatus, Status};
use self::status::{round_ms, secs_since, secs_until};
use crate::membership::{self, Family, GroupRecord};

/// At most this many transmits wait in the queue; more are dropped and counted
/// ([`DropReason::QueueFull`]). The driver drains the queue after every call.
pub const MAX_QUEUED_TRANSMITS: usize = 4096;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address (and port) to send from: for an Advertisement, the address the
    /// Discovery was sent to (RFC 7450 §5.3.3.2); for a Query, the address the Request came
    /// in on.
    pub src: SocketAddr,
    /// Where to send it.
    pub dst: SocketAddr,
    /// The UDP payload (an AMT message).
    pub payload: Vec<u8>,
}

/// A gateway endpoint subscribed to an (S,G): the data path sends each native packet of the
/// (S,G), encapsulated in Multicast Data, from `local` to `gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subscriber {
    /// The gateway's address and port, as seen in its Update.
    pub gateway: SocketAddr,
    /// The relay address (and port) the gateway sent its Update to.
    pub local: SocketAddr,
}

/// Why a gateway endpoint's state went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayDownReason {
    /// Its Updates left it with no (S,G).
    Left,
    /// Its last membership expired without a refresh.
    Expired,
    /// A Teardown with a valid MAC named it (RFC 7450 §5.3.3.5).
    Teardown,
}

/// Why a gateway's membership in an (S,G) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// A BLOCK record, or a TO_IN record without the source.
    Report,
    /// Not refreshed within the Group Membership Interval.
    Expired,
    /// The gateway's state was removed by a Teardown.
    Teardown,
}

/// Something the driver acts on or logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first gateway subscribed to this (S,G): join it natively upstream.
    JoinUpstream(SourceGroup),
    /// The last gateway left this (S,G): leave it upstream.
    LeaveUpstream(SourceGroup),
    /// A gateway endpoint got state (its first accepted Update with a join).
    GatewayUp {
        /// The endpoint.
        gateway: SocketAddr,
        /// The relay address it talks to.
        local: SocketAddr,
    },
    /// A gateway endpoint's state is gone.
    GatewayDown {
        /// The endpoint.
        gateway: SocketAddr,
        /// Why.
        reason: GatewayDownReason,
    },
    /// A gateway subscribed to an (S,G).
    Subscribed {
        /// The endpoint.
        gateway: SocketAddr,
        /// The (S,G).
        sg: SourceGroup,
    },
    /// A gateway's subscription ended.
    Unsubscribed {
        /// The endpoint.
        gateway: SocketAddr,
        /// The (S,G).
        sg: SourceGroup,
        /// Why.
        reason: LeaveReason,
    },
    /// The MAC secret was replaced.
    SecretRotated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Replace the secret.
    Rotation,
    /// A gateway's membership in an (S,G) expires.
    Membership(SocketAddr, SourceGroup),
    /// Forget a removed endpoint's nonce.
    Tombstone(SocketAddr),
}

#[derive(Debug, Default)]
struct Timers {
    set: BTreeSet<(Instant, Timer)>,
}

impl Timers {
    fn insert(&mut self, at: Instant, key: Timer) {
        self.set.insert((at, key));
    }

    fn remove(&mut self, at: Instant, key: Timer) {
        self.set.remove(&(at, key));
    }

    fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        match self.set.first() {
            Some((at, _)) if *at <= now => self.set.pop_first(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Secret {
    keys: (u64, u64),
    created: Instant,
}

impl Secret {
    fn mac(&self, gateway: &SocketAddr, nonce: u32) -> [u8; 6] {
        let mut input = [0u8; 22];
        let len = match gateway.ip() {
            IpAddr::V4(v4) => {
                input[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                input[..16].copy_from_slice(&v6.octets());
                16
            }
        };
        input[len..len + 2].copy_from_slice(&gateway.port().to_be_bytes());
        input[len + 2..len + 6].copy_from_slice(&nonce.to_be_bytes());
        let mut hasher = SipHasher24::new_with_keys(self.keys.0, self.keys.1);
        hasher.write(&input[..len + 6]);
        amt::mac_from_u64(hasher.finish() >> 16)
    }
}

/// Compares two MACs without an early exit.
fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug)]
struct Gateway {
    /// The relay address the gateway talks to (Data comes from here).
    local: SocketAddr,
    /// Nonce of the latest Request from this endpoint.
    request_nonce: u32,
    /// Nonce of the last accepted Update (a Teardown may carry it).
    update_nonce: u32,
    /// Membership expiry per (S,G).
    sgs: BTreeMap<SourceGroup, Instant>,
    since: Instant,
    last_update: Instant,
    updates: u64,
}

#[derive(Debug)]
struct Tombstone {
    nonce: u32,
    expires: Instant,
}

#[derive(Debug)]
struct Channel {
    subscribers: Vec<Subscriber>,
    packets: u64,
    bytes: u64,
    since: Instant,
}

/// The relay state machine. See the [module documentation](self).
#[derive(Debug)]
pub struct Relay {
    config: Config,
    rng: StdRng,
    current: Secret,
    previous: Option<Secret>,
    gateways: HashMap<SocketAddr, Gateway>,
    tombstones: HashMap<SocketAddr, Tombstone>,
    channels: HashMap<SourceGroup, Channel>,
    timers: Timers,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
    /// The encapsulated General Queries, built once: IPv4/IGMPv3 and IPv6/MLDv2.
    query_v4: Vec<u8>,
    query_v6: Vec<u8>,
    /// Reply token bucket: tokens (in millionths of a reply) and when last refilled.
    reply_tokens: u64,
    reply_refilled: Instant,
}

/// Largest number of removed endpoints remembered against replays, as a multiple of the
/// capacity (the oldest are forgotten first beyond it).
const TOMBSTONES_PER_CAPACITY: usize = 4;

impl Relay {
    /// A relay with `config`. `seed` seeds the CSPRNG the MAC secrets come from: give 32
    /// random bytes from the OS in real use (a fixed seed makes tests deterministic).
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Result<Relay, ConfigError> {
        config.validate()?;
        let query = |family| {
            membership::general_query(family, config.query_interval, config.robustness, config.max_response)
                .map_err(|_| ConfigError::BadTiming("general query parameters"))
        };
        let query_v4 = query(Family::V4)?;
        let query_v6 = query(Family::V6)?;
        let mut rng = StdRng::from_seed(seed);
        let current = Secret { keys: (rng.random(), rng.random()), created: now };
        let mut relay = Relay {
            config,
            rng,
            current,
            previous: None,
            gateways: HashMap::new(),
            tombstones: HashMap::new(),
            channels: HashMap::new(),
            timers: Timers::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            query_v4,
            query_v6,
            reply_tokens: 0,
            reply_refilled: now,
        };
        relay.reply_tokens = relay.reply_burst();
        relay.timers.insert(now + relay.config.secret_rotation, Timer::Rotation);
        Ok(relay)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the limits and the Query parameters of a running relay (a daemon's reload).
    /// Gateways, memberships and the MAC secrets stay: the new Query Interval, Robustness
    /// and Maximum Response go out in the next Queries (and time the memberships they
    /// refresh), the limits apply to new gateways and subscriptions (those already over a
    /// lowered limit stay), the reply rate at once, a new secret rotation period to the
    /// current secret. The relay addresses and `advertise` cannot change here: `config`'s
    /// are ignored.
    pub fn reconfigure(&mut self, mut config: Config) -> Result<(), ConfigError> {
        config.relay_addresses.clone_from(&self.config.relay_addresses);
        config.advertise.clone_from(&self.config.advertise);
        config.validate()?;
        let query = |family| {
            membership::general_query(family, config.query_interval, config.robustness, config.max_response)
                .map_err(|_| ConfigError::BadTiming("general query parameters"))
        };
        let (query_v4, query_v6) = (query(Family::V4)?, query(Family::V6)?);
        if config.secret_rotation != self.config.secret_rotation {
            self.timers.remove(self.current.created + self.config.secret_rotation, Timer::Rotation);
            self.timers.insert(self.current.created + config.secret_rotation, Timer::Rotation);
        }
        self.config = config;
        self.query_v4 = query_v4;
        self.query_v6 = query_v6;
        self.reply_tokens = self.reply_tokens.min(self.reply_burst());
        Ok(())
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Handles one UDP datagram received on `local` (the relay or discovery address and port
    /// it was sent to) from `from`. `Err` says why it was dropped (also counted).
    pub fn handle_datagram(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        // A driver that calls late must not let a secret outlive its period.
        self.rotate_due(now);
        let from = canonical(from);
        let local = canonical(local);
        let repr = match Repr::parse_bytes(payload) {
            Ok(repr) => repr,
            Err(_) => return self.drop(DropReason::Malformed),
        };
        self.counters.count_received(repr.msg_type());
        match repr {
            Repr::RelayDiscovery { nonce } => self.on_discovery(local, from, nonce, now),
            Repr::Request { nonce, p_flag } => self.on_request(local, from, nonce, p_flag, now),
            Repr::MembershipUpdate { mac, nonce, update } => self.on_update(local, from, mac, nonce, update, now),
            Repr::Teardown { mac, nonce, gateway_port, gateway_addr } => {
                self.on_teardown(SocketAddr::new(gateway_addr, gateway_port), mac, nonce, now)
            }
            Repr::RelayAdvertisement { .. } | Repr::MembershipQuery { .. } | Repr::MulticastData { .. } => {
                self.drop(DropReason::UnexpectedType)
            }
            Repr::Unknown { .. } => self.drop(DropReason::UnknownType),
        }
    }

    fn drop(&mut self, reason: DropReason) -> Result<(), DropReason> {
        self.counters.count_drop(reason);
        Err(reason)
    }

    /// The Relay Address to advertise for a Discovery received on `local`.
    pub fn advertised_address(&self, local: IpAddr) -> IpAddr {
        let relays = &self.config.relay_addresses;
        if let Some((_, relay)) = self.config.advertise.iter().find(|(discovery, _)| *discovery == local) {
            return *relay;
        }
        if relays.contains(&local) {
            return local;
        }
        relays.iter().find(|r| r.is_ipv4() == local.is_ipv4()).or(relays.first()).copied().unwrap_or(local)
    }

    /// The bucket's capacity: one second's worth of replies, in millionths.
    fn reply_burst(&self) -> u64 {
        u64::from(self.config.max_replies_per_sec) * 1_000_000
    }

    /// Takes a reply token (refilling at `max_replies_per_sec`); false when exhausted.
    fn reply_allowed(&mut self, now: Instant) -> bool {
        let rate = u64::from(self.config.max_replies_per_sec);
        if rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.reply_refilled);
        self.reply_refilled = self.reply_refilled.max(now);
        // rate replies per second = rate millionths of a reply per microsecond.
        let refill = (elapsed.as_micros().min(u128::from(u64::MAX)) as u64).saturating_mul(rate);
        self.reply_tokens = self.reply_tokens.saturating_add(refill).min(self.reply_burst());
        if self.reply_tokens >= 1_000_000 {
            self.reply_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }

    fn on_discovery(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        nonce: u32,
        now: Instant,
    ) -> Result<(), DropReason> {
        if !is_endpoint(&from) {
            return self.drop(DropReason::BadSource);
        }
        if !self.reply_allowed(now) {
            return self.drop(DropReason::RateLimited);
        }
        let relay = self.advertised_address(local.ip());
        // RFC 7450 §5.3.3.2: the Advertisement comes from the address the Discovery was sent
        // to, so the gateway can match it.
        self.queue(local, from, &Repr::RelayAdvertisement { nonce, relay })
    }

    fn on_request(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        nonce: u32,
        p_flag: bool,
        now: Instant,
    ) -> Result<(), DropReason> {
        if !is_endpoint(&from) {
            return self.drop(DropReason::BadSource);
        }
        // The latest Request's nonce is the only one an Update from this endpoint may carry
        // from now on. Endpoints without state stay stateless.
        let known = if let Some(gateway) = self.gateways.get_mut(&from) {
            gateway.request_nonce = nonce;
            true
        } else {
            if let Some(tombstone) = self.tombstones.get_mut(&from) {
                tombstone.nonce = nonce;
            }
            false
        };
        // After recording the nonce: a rate-limited Request still supersedes older Updates.
        if !self.reply_allowed(now) {
            return self.drop(DropReason::RateLimited);
        }
        let limit = !known && self.gateways.len() >= self.config.capacity;
        if limit {
            self.counters.limit_queries += 1;
        }
        let mac = self.current.mac(&from, nonce);
        let gateway = (self.config.gateway_fields && amt::encode_gateway_addr(&from.ip()).is_ok())
            .then(|| (from.port(), from.ip()));
        let query = match Family::from_p_flag(p_flag) {
            Family::V4 => std::mem::take(&mut self.query_v4),
            Family::V6 => std::mem::take(&mut self.query_v6),
        };
        let result = self.queue(local, from, &Repr::MembershipQuery { limit, mac, nonce, query: &query, gateway });
        match Family::from_p_flag(p_flag) {
            Family::V4 => self.query_v4 = query,
            Family::V6 => self.query_v6 = query,
        }
        result
    }

    /// Whether `mac` is what we issued to `gateway` for `nonce` under a live secret.
    fn mac_valid(&self, gateway: &SocketAddr, nonce: u32, mac: &[u8; 6]) -> bool {
        mac_eq(&self.current.mac(gateway, nonce), mac)
            || self.previous.is_some_and(|previous| mac_eq(&previous.mac(gateway, nonce), mac))
    }

    /// The nonce an Update from `gateway` must carry, if the relay remembers one.
    fn expected_nonce(&self, gateway: &SocketAddr) -> Option<u32> {
        self.gateways.get(gateway).map(|g| g.request_nonce).or_else(|| self.tombstones.get(gateway).map(|t| t.nonce))
    }

    fn on_update(
        &mut self,
        local: SocketAddr,
        from: SocketAddr,
        mac: [u8; 6],
        nonce: u32,
        update: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        if !is_endpoint(&from) {
            return self.drop(DropReason::BadSource);
        }
        if !self.mac_valid(&from, nonce, &mac) {
            return self.drop(DropReason::BadMac);
        }
        if self.expected_nonce(&from).is_some_and(|expected| expected != nonce) {
            return self.drop(DropReason::StaleNonce);
        }
        let records = match membership::parse_report(update) {
            Ok((_, records)) => records,
            Err(_) => return self.drop(DropReason::BadReport),
        };
        let known = self.gateways.contains_key(&from);
        if !known && self.gateways.len() >= self.config.capacity {
            return self.drop(DropReason::AtCapacity);
        }
        self.counters.updates_accepted += 1;
        if let Some(gateway) = self.gateways.get_mut(&from) {
            gateway.update_nonce = nonce;
            gateway.last_update = now;
            gateway.updates += 1;
            if gateway.local != local {
                // The gateway moved to another of our addresses: Data follows it.
                gateway.local = local;
                let sgs: Vec<SourceGroup> = gateway.sgs.keys().copied().collect();
                for sg in sgs {
                    if let Some(sub) =
                        self.channels.get_mut(&sg).and_then(|c| c.subscribers.iter_mut().find(|s| s.gateway == from))
                    {
                        sub.local = local;
                    }
                }
            }
        }
        let pending = PendingGateway { local, nonce };
        for record in &records {
            self.apply_record(from, pending, record, now);
        }
        if !known && let Some(gateway) = self.gateways.get_mut(&from) {
            gateway.updates = 1;
        }
        if self.gateways.get(&from).is_some_and(|g| g.sgs.is_empty()) {
            self.remove_gateway(from, GatewayDownReason::Left, now);
        }
        Ok(())
    }

    fn apply_record(&mut self, from: SocketAddr, pending: PendingGateway, record: &GroupRecord, now: Instant) {
        let group = record.group;
        if !is_routable_group(&group) {
            self.counters.count_drop(DropReason::BadRecord);
            return;
        }
        let valid_sg = |source: &IpAddr| SourceGroup::checked(*source, group).ok();
        match record.record_type {
            RecordType::ModeIsInclude | RecordType::AllowNewSources => {
                for source in &record.sources {
                    match valid_sg(source) {
                        Some(sg) => self.join(from, pending, sg, now),
                        None => self.counters.count_drop(DropReason::BadRecord),
                    }
                }
            }
            RecordType::BlockOldSources => {
                for source in &record.sources {
                    if let Some(sg) = valid_sg(source) {
                        self.leave(from, sg, LeaveReason::Report);
                    }
                }
            }
            RecordType::ChangeToIncludeMode => {
                // The new source set of the group: anything of ours not in it leaves now.
                let stale: Vec<SourceGroup> = self
                    .gateways
                    .get(&from)
                    .map(|g| {
                        g.sgs
                            .keys()
                            .filter(|sg| sg.group == group && !record.sources.contains(&sg.source))
                            .copied()
                            .collect()
                    })
                    .unwrap_or_default();
                for sg in stale {
                    self.leave(from, sg, LeaveReason::Report);
                }
                for source in &record.sources {
                    match valid_sg(source) {
                        Some(sg) => self.join(from, pending, sg, now),
                        None => self.counters.count_drop(DropReason::BadRecord),
                    }
                }
            }
            RecordType::ModeIsExclude | RecordType::ChangeToExcludeMode => {
                self.counters.count_drop(DropReason::ExcludeMode);
            }
            RecordType::Unknown(_) => self.counters.count_drop(DropReason::UnknownRecord),
        }
    }

    /// Adds or refreshes `from`'s membership in `sg`, creating the gateway's state if needed.
    fn join(&mut self, from: SocketAddr, pending: PendingGateway, sg: SourceGroup, now: Instant) {
        let expires = now + self.config.membership_interval();
        if let Some(gateway) = self.gateways.get_mut(&from)
            && let Some(old) = gateway.sgs.get_mut(&sg)
        {
            self.timers.remove(*old, Timer::Membership(from, sg));
            *old = expires;
            self.timers.insert(expires, Timer::Membership(from, sg));
            return;
        }
        let gateway_sgs = self.gateways.get(&from).map_or(0, |g| g.sgs.len());
        if gateway_sgs >= self.config.max_sgs_per_gateway {
            self.counters.count_drop(DropReason::TooManyGatewaySgs);
            return;
        }
        if !self.channels.contains_key(&sg) && self.channels.len() >= self.config.max_sgs {
            self.counters.count_drop(DropReason::TooManySgs);
            return;
        }
        let gateway = match self.gateways.entry(from) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                if let Some(tombstone) = self.tombstones.remove(&from) {
                    self.timers.remove(tombstone.expires, Timer::Tombstone(from));
                }
                self.events.push_back(Event::GatewayUp { gateway: from, local: pending.local });
                e.insert(Gateway {
                    local: pending.local,
                    request_nonce: pending.nonce,
                    update_nonce: pending.nonce,
                    sgs: BTreeMap::new(),
                    since: now,
                    last_update: now,
                    updates: 0,
                })
            }
        };
        gateway.sgs.insert(sg, expires);
        let subscriber = Subscriber { gateway: from, local: gateway.local };
        self.timers.insert(expires, Timer::Membership(from, sg));
        let channel = self.channels.entry(sg).or_insert_with(|| {
            self.events.push_back(Event::JoinUpstream(sg));
            Channel { subscribers: Vec::new(), packets: 0, bytes: 0, since: now }
        });
        channel.subscribers.push(subscriber);
        self.events.push_back(Event::Subscribed { gateway: from, sg });
    }

    /// Ends `from`'s membership in `sg` (the gateway's state stays, even if empty; callers
    /// remove empty gateways).
    fn leave(&mut self, from: SocketAddr, sg: SourceGroup, reason: LeaveReason) {
        let Some(gateway) = self.gateways.get_mut(&from) else { return };
        let Some(expires) = gateway.sgs.remove(&sg) else { return };
        self.timers.remove(expires, Timer::Membership(from, sg));
        self.unsubscribe(from, sg, reason);
    }

    fn unsubscribe(&mut self, from: SocketAddr, sg: SourceGroup, reason: LeaveReason) {
        if let Some(channel) = self.channels.get_mut(&sg) {
            if let Some(at) = channel.subscribers.iter().position(|s| s.gateway == from) {
                // Order among subscribers does not matter.
                channel.subscribers.swap_remove(at);
            }
            if channel.subscribers.is_empty() {
                self.channels.remove(&sg);
                self.events.push_back(Event::Unsubscribed { gateway: from, sg, reason });
                self.events.push_back(Event::LeaveUpstream(sg));
                return;
            }
        }
        self.events.push_back(Event::Unsubscribed { gateway: from, sg, reason });
    }

    /// Removes a gateway endpoint with all its memberships and remembers its latest nonce.
    fn remove_gateway(&mut self, from: SocketAddr, reason: GatewayDownReason, now: Instant) {
        let Some(gateway) = self.gateways.remove(&from) else { return };
        let leave = match reason {
            GatewayDownReason::Teardown => LeaveReason::Teardown,
            GatewayDownReason::Expired => LeaveReason::Expired,
            GatewayDownReason::Left => LeaveReason::Report,
        };
        for (sg, expires) in &gateway.sgs {
            self.timers.remove(*expires, Timer::Membership(from, *sg));
            self.unsubscribe(from, *sg, leave);
        }
        self.events.push_back(Event::GatewayDown { gateway: from, reason });
        self.remember(from, gateway.request_nonce, now);
    }

    /// Remembers a removed endpoint's latest nonce for as long as a MAC it holds can verify.
    fn remember(&mut self, from: SocketAddr, nonce: u32, now: Instant) {
        let cap = self.config.capacity.saturating_mul(TOMBSTONES_PER_CAPACITY);
        if self.tombstones.len() >= cap
            && !self.tombstones.contains_key(&from)
            && let Some((at, Timer::Tombstone(oldest))) =
                self.timers.set.iter().find(|(_, t)| matches!(t, Timer::Tombstone(_))).copied()
        {
            self.timers.remove(at, Timer::Tombstone(oldest));
            self.tombstones.remove(&oldest);
        }
        let expires = now + self.config.secret_rotation * 2;
        if let Some(old) = self.tombstones.insert(from, Tombstone { nonce, expires }) {
            self.timers.remove(old.expires, Timer::Tombstone(from));
        }
        self.timers.insert(expires, Timer::Tombstone(from));
    }

    fn on_teardown(&mut self, endpoint: SocketAddr, mac: [u8; 6], nonce: u32, now: Instant) -> Result<(), DropReason> {
        let endpoint = canonical(endpoint);
        if !is_endpoint(&endpoint) {
            return self.drop(DropReason::BadSource);
        }
        if !self.mac_valid(&endpoint, nonce, &mac) {
            return self.drop(DropReason::BadMac);
        }
        let Some(gateway) = self.gateways.get(&endpoint) else {
            self.counters.teardowns_without_state += 1;
            return Ok(());
        };
        // The Teardown carries the nonce of the last Query the old endpoint got (RFC 7450
        // §5.2.3.7): its latest Request's, or the one its last Update used. An older one is a
        // replay.
        if nonce != gateway.request_nonce && nonce != gateway.update_nonce {
            return self.drop(DropReason::StaleNonce);
        }
        self.counters.teardowns_accepted += 1;
        self.remove_gateway(endpoint, GatewayDownReason::Teardown, now);
        Ok(())
    }

    fn queue(&mut self, src: SocketAddr, dst: SocketAddr, repr: &Repr<'_>) -> Result<(), DropReason> {
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            return self.drop(DropReason::QueueFull);
        }
        // Every Repr the relay builds is valid (gateway fields are only set when encodable).
        let Ok(payload) = repr.to_vec() else { return self.drop(DropReason::Malformed) };
        self.counters.count_sent(repr.msg_type());
        self.transmits.push_back(Transmit { src, dst, payload });
        Ok(())
    }

    fn rotate_due(&mut self, now: Instant) {
        let period = self.config.secret_rotation;
        if now < self.current.created + period {
            return;
        }
        self.timers.remove(self.current.created + period, Timer::Rotation);
        let fresh = Secret { keys: (self.rng.random(), self.rng.random()), created: now };
        // After a long silence the old secret is past both periods: nothing it issued stays valid.
        self.previous = (now < self.current.created + period * 2).then_some(self.current);
        self.current = fresh;
        self.counters.secret_rotations += 1;
        self.events.push_back(Event::SecretRotated);
        self.timers.insert(now + period, Timer::Rotation);
    }

    /// Runs the timers due at `now`: secret rotation, membership expiry, forgetting removed
    /// endpoints.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.rotate_due(now);
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                // rotate_due above already replaced a due rotation timer.
                Timer::Rotation => self.rotate_due(now),
                Timer::Membership(from, sg) => {
                    let Some(gateway) = self.gateways.get_mut(&from) else { continue };
                    if gateway.sgs.remove(&sg).is_none() {
                        continue;
                    }
                    self.counters.memberships_expired += 1;
                    self.unsubscribe(from, sg, LeaveReason::Expired);
                    if self.gateways.get(&from).is_some_and(|g| g.sgs.is_empty()) {
                        self.remove_gateway(from, GatewayDownReason::Expired, now);
                    }
                }
                Timer::Tombstone(from) => {
                    self.tombstones.remove(&from);
                }
            }
        }
    }

    /// The next deadline at which [`Relay::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The gateways subscribed to `sg` (empty if none): the data path's lookup.
    #[inline]
    pub fn subscribers(&self, sg: &SourceGroup) -> &[Subscriber] {
        self.channels.get(sg).map_or(&[], |c| c.subscribers.as_slice())
    }

    /// Like [`Relay::subscribers`], and counts `packets` native packets of `bytes` bytes in
    /// total for the (S,G) (or as unsubscribed).
    #[inline]
    pub fn forward(&mut self, sg: &SourceGroup, packets: u64, bytes: u64) -> &[Subscriber] {
        match self.channels.get_mut(sg) {
            Some(channel) => {
                channel.packets += packets;
                channel.bytes += bytes;
                self.counters.data_packets += packets;
                self.counters.data_bytes += bytes;
                channel.subscribers.as_slice()
            }
            None => {
                self.counters.data_unsubscribed += packets;
                &[]
            }
        }
    }

    /// The (S,G)s with at least one subscriber (each joined upstream).
    pub fn channels(&self) -> impl Iterator<Item = &SourceGroup> {
        self.channels.keys()
    }

    /// Number of gateway endpoints with state.
    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    /// The (S,G)s of a gateway endpoint with their expiry, if it has state.
    pub fn gateway_sgs(&self, gateway: &SocketAddr) -> Option<impl Iterator<Item = (&SourceGroup, &Instant)>> {
        self.gateways.get(&canonical(*gateway)).map(|g| g.sgs.iter())
    }

    /// A snapshot for `amt-relay status`.
    pub fn status(&self, now: Instant) -> Status {
        let mut gateways: Vec<GatewayStatus> = self
            .gateways
            .iter()
            .map(|(addr, g)| GatewayStatus {
                gateway: *addr,
                relay: g.local,
                request_nonce: format!("{:#010x}", g.request_nonce),
                uptime_secs: secs_since(now, g.since),
                last_update_secs: secs_since(now, g.last_update),
                updates: g.updates,
                sgs: g
                    .sgs
                    .iter()
                    .map(|(sg, expires)| MembershipStatus { sg: *sg, expires_in_secs: secs_until(now, *expires) })
                    .collect(),
            })
            .collect();
        gateways.sort_by_key(|g| g.gateway);
        let mut channels: Vec<ChannelStatus> = self
            .channels
            .iter()
            .map(|(sg, c)| ChannelStatus {
                sg: *sg,
                subscribers: c.subscribers.len(),
                packets: c.packets,
                bytes: c.bytes,
                uptime_secs: secs_since(now, c.since),
            })
            .collect();
        channels.sort_by_key(|c| c.sg);
        Status {
            relay_addresses: self.config.relay_addresses.clone(),
            query_interval_secs: round_ms(self.config.query_interval),
            robustness: self.config.robustness,
            membership_interval_secs: round_ms(self.config.membership_interval()),
            capacity: self.config.capacity,
            at_capacity: self.gateways.len() >= self.config.capacity,
            max_sgs_per_gateway: self.config.max_sgs_per_gateway,
            max_sgs: self.config.max_sgs,
            secret_rotation_secs: round_ms(self.config.secret_rotation),
            secret_age_secs: secs_since(now, self.current.created),
            previous_secret: self.previous.is_some(),
            gateways,
            channels,
            recently_removed: self.tombstones.len(),
            counters: self.counters.clone(),
        }
    }

    /// Checks the internal invariants (subscriber lists mirror the gateways' memberships,
    /// every membership has its timer, limits hold). For tests.
    #[doc(hidden)]
    pub fn check_consistency(&self) -> Result<(), String> {
        if self.gateways.len() > self.config.capacity {
            return Err(format!("{} gateways over capacity {}", self.gateways.len(), self.config.capacity));
        }
        if self.channels.len() > self.config.max_sgs {
            return Err(format!("{} channels over {}", self.channels.len(), self.config.max_sgs));
        }
        if self.tombstones.len() > self.config.capacity * TOMBSTONES_PER_CAPACITY {
            return Err(format!("{} tombstones", self.tombstones.len()));
        }
        let mut memberships = 0;
        for (addr, g) in &self.gateways {
            if g.sgs.is_empty() {
                return Err(format!("gateway {addr} without (S,G)s"));
            }
            if g.sgs.len() > self.config.max_sgs_per_gateway {
                return Err(format!("gateway {addr} over the per-gateway limit"));
            }
            if self.tombstones.contains_key(addr) {
                return Err(format!("gateway {addr} is also a tombstone"));
            }
            for (sg, expires) in &g.sgs {
                memberships += 1;
                if !self.timers.set.contains(&(*expires, Timer::Membership(*addr, *sg))) {
                    return Err(format!("no timer for {addr} {sg}"));
                }
                let subs = self.subscribers(sg);
                if subs.iter().filter(|s| s.gateway == *addr && s.local == g.local).count() != 1 {
                    return Err(format!("{addr} not subscribed exactly once to {sg}"));
                }
            }
        }
        let subscribers: usize = self.channels.values().map(|c| c.subscribers.len()).sum();
        if subscribers != memberships {
            return Err(format!("{subscribers} subscribers for {memberships} memberships"));
        }
        if self.channels.values().any(|c| c.subscribers.is_empty()) {
            return Err("empty channel".to_owned());
        }
        let timers = self.timers.set.len();
        let expected = 1 + memberships + self.tombstones.len();
        if timers != expected {
            return Err(format!("{timers} timers, expected {expected}"));
        }
        Ok(())
    }
}

/// What a gateway's state is created with, if the Update creates it.
#[derive(Debug, Clone, Copy)]
struct PendingGateway {
    local: SocketAddr,
    nonce: u32,
}

/// IPv4-mapped IPv6 socket addresses (a dual-stack socket) as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether a datagram source can be a gateway endpoint.
fn is_endpoint(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// A group a relay may join upstream: multicast, beyond link-local scope (224.0.0.0/24 is
/// never forwarded, RFC 5771 §4; ff00::/16 reserved, ff01/ff02 interface- and link-local
/// scope, RFC 4291 §2.7).
fn is_routable_group(group: &IpAddr) -> bool {
    match group {
        IpAddr::V4(v4) => v4.is_multicast() && v4.octets()[..3] != [224, 0, 0],
        IpAddr::V6(v6) => v6.is_multicast() && !matches!(v6.octets()[1] & 0x0f, 0..=2),
    }
}

/// The Data source a native packet's (S,G) is read from: the source and destination of an
/// IPv4 or IPv6 header at the start of `datagram`, without further checks (the driver's hot
/// path; the lookup of an (S,G) nobody subscribed to simply finds nothing).
#[inline]
pub fn datagram_sg(datagram: &[u8]) -> Option<SourceGroup> {
    match datagram.first()? >> 4 {
        4 if datagram.len() >= 20 => {
            let s: [u8; 4] = datagram[12..16].try_into().ok()?;
            let g: [u8; 4] = datagram[16..20].try_into().ok()?;
            Some(SourceGroup::v4(s.into(), g.into()))
        }
        6 if datagram.len() >= 40 => {
            let s: [u8; 16] = datagram[8..24].try_into().ok()?;
            let g: [u8; 16] = datagram[24..40].try_into().ok()?;
            Some(SourceGroup::v6(s.into(), g.into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_covers_address_port_and_nonce() {
        let secret = Secret { keys: (1, 2), created: Instant::now() };
        let a: SocketAddr = "192.0.2.2:40000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:40001".parse().unwrap();
        let c: SocketAddr = "192.0.2.3:40000".parse().unwrap();
        let mac = secret.mac(&a, 7);
        assert_eq!(mac, secret.mac(&a, 7));
        assert_ne!(mac, secret.mac(&b, 7));
        assert_ne!(mac, secret.mac(&c, 7));
        assert_ne!(mac, secret.mac(&a, 8));
        let other = Secret { keys: (1, 3), created: Instant::now() };
        assert_ne!(mac, other.mac(&a, 7));
    }

    #[test]
    fn reconfigure_changes_limits_and_timing_but_not_addresses() {
        let now = Instant::now();
        let mut relay = Relay::new(Config::new(vec!["203.0.113.15".parse().unwrap()]), [7; 32], now).unwrap();
        let mut config = Config::new(vec!["203.0.113.99".parse().unwrap()]);
        config.capacity = 5;
        config.query_interval = std::time::Duration::from_secs(30);
        relay.reconfigure(config.clone()).unwrap();
        assert_eq!(relay.config().capacity, 5);
        assert_eq!(relay.config().query_interval, std::time::Duration::from_secs(30));
        assert_eq!(relay.config().relay_addresses, ["203.0.113.15".parse::<IpAddr>().unwrap()]);
        config.secret_rotation = std::time::Duration::from_secs(5);
        relay.reconfigure(config.clone()).unwrap();
        assert_eq!(relay.poll_timeout(), Some(now + std::time::Duration::from_secs(5)));
        relay.handle_timeout(now + std::time::Duration::from_secs(5));
        assert_eq!(relay.counters().secret_rotations, 1);
        config.robustness = 0;
        assert!(relay.reconfigure(config).is_err());
        assert_eq!(relay.config().robustness, Config::default().robustness);
    }

    #[test]
    fn routable_groups() {
        for g in ["232.1.1.1", "239.1.1.1", "224.0.1.1", "ff3e::8000:1", "ff05::1"] {
            assert!(is_routable_group(&g.parse().unwrap()), "{g}");
        }
        for g in ["224.0.0.1", "224.0.0.22", "10.0.0.1", "ff02::1", "ff01::1", "ff00::1", "2001:db8::1"] {
            assert!(!is_routable_group(&g.parse().unwrap()), "{g}");
        }
    }

    #[test]
    fn reads_the_sg_of_native_datagrams() {
        let v4 = hex::decode("45000027000000004011c0eb17d4b904e80101019c40138900130000616d742d7061796c6f6164").unwrap();
        assert_eq!(datagram_sg(&v4), Some("23.212.185.4,232.1.1.1".parse().unwrap()));
        assert_eq!(datagram_sg(&v4[..19]), None);
        assert_eq!(datagram_sg(&[]), None);
        assert_eq!(datagram_sg(&[0x60; 39]), None);
    }
}
