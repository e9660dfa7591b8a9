//! The sans-IO PIM engine.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mcast_wire::pim::{
    self, ChecksumContext, EncodedGroup, EncodedSource, Hello, HelloOption, JoinPruneGroup, JoinPruneView,
    LanPruneDelay, MessageType, Packet, Repr,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::config::{Config, ConfigError};
use crate::counters::{Counters, DropReason};
use crate::event::{Event, NeighborDownReason, PruneReason, Transmit};
use crate::status::{
    DownstreamInfo, DownstreamState, InterfaceStatus, LanPruneDelayStatus, NeighborStatus, SgStatus, Status, round_ms,
    secs_since, secs_until,
};
use crate::types::{Family, InterfaceId, SourceGroup};

/// Default_Hello_Holdtime (RFC 7761 §4.11), applied to a neighbour whose Hello has no Holdtime
/// option (§4.3.2: the Neighbor Liveness Timer is set "to Default_Hello_Holdtime if the Hello
/// message does not contain the Holdtime option").
pub const DEFAULT_HELLO_HOLDTIME: u16 = 105;
/// Propagation_delay_default (RFC 7761 §4.11): used when not every neighbour sends the LAN
/// Prune Delay option (§4.3.3).
pub const PROPAGATION_DELAY_DEFAULT: Duration = Duration::from_millis(500);
/// t_override_default (RFC 7761 §4.11): as above, for the Override Interval.
pub const T_OVERRIDE_DEFAULT: Duration = Duration::from_millis(2500);
/// At most this many secondary addresses of ours on an interface (they all go into every
/// Hello's Address List).
pub const MAX_SECONDARY_ADDRESSES: usize = 64;
/// At most this many secondary addresses are kept per neighbour (the rest are ignored).
const MAX_NEIGHBOR_SECONDARY: usize = 64;
/// Largest Join/Prune (PruneEcho) we build, in bytes of PIM message: fits a 1500-byte MTU
/// under an IPv6 header with room to spare.
const MAX_JOIN_PRUNE_LEN: usize = 1400;

/// A problem with an interface operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceError {
    /// `add_interface` for an id that is already there.
    #[error("interface {0} already exists")]
    Exists(InterfaceId),
    /// No interface with this id.
    #[error("no interface {0}")]
    Unknown(InterfaceId),
    /// The primary address is not of the interface's family.
    #[error("address {addr} does not belong to the {id} PIM instance's family")]
    FamilyMismatch {
        /// The interface.
        id: InterfaceId,
        /// The address.
        addr: IpAddr,
    },
    /// An IPv6 PIM interface's primary address must be its link-local address: RFC 7761 §4.9
    /// has IPv6 PIM messages sourced from the link-local address, and §4.3.1 calls the Hello
    /// source the primary address.
    #[error("the primary address of an IPv6 PIM interface must be link-local, not {0}")]
    NotLinkLocal(IpAddr),
    /// An address that cannot be ours (multicast, unspecified, broadcast).
    #[error("{0} is not a unicast address")]
    NotUnicast(IpAddr),
    /// More than [`MAX_SECONDARY_ADDRESSES`] secondary addresses.
    #[error("{0} secondary addresses, at most {MAX_SECONDARY_ADDRESSES} are supported")]
    TooManySecondary(usize),
}

/// Timer keys. One set holds every deadline, so the earliest is found in O(log n); each
/// timer's owner keeps its deadline so it can be cancelled in O(log n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Hello Timer HT(I): the first Hello, then periodic ones (RFC 7761 §4.3.1).
    Hello(InterfaceId),
    /// A triggered Hello (new neighbour or new GenID), independent of HT (§4.3.1: it "need not
    /// change the timing of the scheduled periodic message").
    TriggeredHello(InterfaceId),
    /// Neighbor Liveness Timer NLT(N,I).
    Neighbor(InterfaceId, IpAddr),
    /// Prune-Pending Timer PPT(S,G,I) (§4.5.2).
    PrunePending(InterfaceId, SourceGroup),
    /// Expiry Timer ET(S,G,I) (§4.5.2).
    Expiry(InterfaceId, SourceGroup),
}

#[derive(Debug, Default)]
struct Timers {
    set: BTreeSet<(Instant, Timer)>,
}

impl Timers {
    /// Moves the timer `key`, whose current deadline is in `slot`, to `at` (`None` cancels).
    fn set(&mut self, slot: &mut Option<Instant>, at: Option<Instant>, key: Timer) {
        if let Some(old) = slot.take() {
            self.set.remove(&(old, key));
        }
        if let Some(at) = at {
            self.set.insert((at, key));
        }
        *slot = at;
    }

    fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        match self.set.first() {
            Some((at, _)) if *at <= now => self.set.pop_first(),
            _ => None,
        }
    }
}

/// What a neighbour told us in its last Hello (RFC 7761 §4.3.2, §4.3.3).
#[derive(Debug)]
struct Neighbor {
    genid: Option<u32>,
    holdtime: u16,
    /// NLT deadline; `None` for Holdtime 0xffff (never expires).
    expires: Option<Instant>,
    dr_priority: Option<u32>,
    lan_prune_delay: Option<LanPruneDelay>,
    secondary: Vec<IpAddr>,
    up_since: Instant,
}

/// Downstream (S,G) state on one interface in Join or Prune-Pending (NoInfo = no entry).
#[derive(Debug)]
struct Downstream {
    state: DownstreamState,
    /// ET deadline; `None` for a Holdtime of 0xffff (RFC 7761 §4.9.5: hold until a Prune).
    expires: Option<Instant>,
    /// PPT deadline (Prune-Pending only).
    ppt: Option<Instant>,
    /// Held from the joinfile, not yet confirmed by a Join.
    restored: bool,
    since: Instant,
}

#[derive(Debug)]
struct Interface {
    name: String,
    primary: IpAddr,
    secondary: Vec<IpAddr>,
    genid: u32,
    started: Instant,
    /// HT deadline.
    hello_at: Option<Instant>,
    /// Triggered-Hello deadline.
    triggered_at: Option<Instant>,
    /// Whether any Hello has gone out with the current primary address.
    hello_sent: bool,
    neighbors: BTreeMap<IpAddr, Neighbor>,
    dr: IpAddr,
    downstream: BTreeMap<SourceGroup, Downstream>,
}

impl Interface {
    /// Whether `addr` is our primary or a secondary address here (RFC 7761 §4.5.2: a Join/Prune
    /// is ours if its Upstream Neighbor Address is "the router's primary IP address on I"; our
    /// advertised secondary addresses are accepted too).
    fn owns(&self, addr: &IpAddr) -> bool {
        *addr == self.primary || self.secondary.contains(addr)
    }

    /// lan_delay_enabled(I) (RFC 7761 §4.3.3): every neighbour sent the LAN Prune Delay option.
    fn lan_delay_enabled(&self) -> bool {
        self.neighbors.values().all(|n| n.lan_prune_delay.is_some())
    }

    /// Effective_Propagation_Delay(I) (RFC 7761 §4.3.3): the largest of ours and the
    /// neighbours' if all of them advertise the option, else Propagation_delay_default.
    fn effective_propagation_delay(&self, config: &Config) -> Duration {
        if !self.lan_delay_enabled() {
            return PROPAGATION_DELAY_DEFAULT;
        }
        self.neighbors
            .values()
            .filter_map(|n| n.lan_prune_delay)
            .map(|d| Duration::from_millis(u64::from(d.propagation_delay_ms)))
            .fold(config.propagation_delay, Duration::max)
    }

    /// Effective_Override_Interval(I) (RFC 7761 §4.3.3), likewise with t_override_default.
    fn effective_override_interval(&self, config: &Config) -> Duration {
        if !self.lan_delay_enabled() {
            return T_OVERRIDE_DEFAULT;
        }
        self.neighbors
            .values()
            .filter_map(|n| n.lan_prune_delay)
            .map(|d| Duration::from_millis(u64::from(d.override_interval_ms)))
            .fold(config.override_interval, Duration::max)
    }

    /// J/P_Override_Interval(I) = Effective_Propagation_Delay(I) + Effective_Override_Interval(I)
    /// (RFC 7761 §4.11): the Prune-Pending time.
    fn jp_override_interval(&self, config: &Config) -> Duration {
        self.effective_propagation_delay(config) + self.effective_override_interval(config)
    }

    /// DR(I) (RFC 7761 §4.3.2): we always advertise a DR Priority, so priorities decide
    /// unless some neighbour omits the option, in which case the highest address wins.
    fn elect_dr(&self, config: &Config) -> IpAddr {
        let by_priority = self.neighbors.values().all(|n| n.dr_priority.is_some());
        let is_better = |a: (u32, IpAddr), b: (u32, IpAddr)| {
            if by_priority { a.0 > b.0 || (a.0 == b.0 && a.1 > b.1) } else { a.1 > b.1 }
        };
        let mut dr = (config.dr_priority, self.primary);
        for (addr, n) in &self.neighbors {
            let candidate = (n.dr_priority.unwrap_or(0), *addr);
            if is_better(candidate, dr) {
                dr = candidate;
            }
        }
        dr.1
    }
}

/// Queued outputs and counters.
#[derive(Debug, Default)]
struct Output {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Output {
    fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Encodes `repr` for `interface` and queues it. IPv4 gets its checksum; IPv6 is left zero
    /// for the kernel (`IPV6_CHECKSUM` = 2), see [`Transmit`].
    fn send(&mut self, interface: InterfaceId, src: IpAddr, repr: &Repr) {
        let ctx = match interface.family {
            Family::Ipv4 => ChecksumContext::V4,
            Family::Ipv6 => ChecksumContext::Unchecked,
        };
        match repr.to_bytes(ctx) {
            Ok(payload) => {
                self.counters.count_sent(repr.message_type());
                self.transmits.push_back(Transmit { interface, src, dst: interface.family.all_pim_routers(), payload });
            }
            Err(_) => self.counters.encode_errors += 1,
        }
    }

    /// Queues our Hello on `id` with `holdtime` seconds (0 = goodbye). Options as RFC 7761
    /// §4.3.1 asks: Holdtime; LAN Prune Delay (SHOULD on multi-access LANs); DR Priority;
    /// Generation ID; Address List (MUST when there are secondary addresses).
    fn hello(&mut self, config: &Config, id: InterfaceId, iface: &Interface, holdtime: u16) {
        let mut options = vec![
            HelloOption::Holdtime(holdtime),
            HelloOption::LanPruneDelay(LanPruneDelay {
                t_bit: config.t_bit,
                propagation_delay_ms: u16::try_from(config.propagation_delay.as_millis()).unwrap_or(0x7fff),
                override_interval_ms: u16::try_from(config.override_interval.as_millis()).unwrap_or(0xffff),
            }),
            HelloOption::DrPriority(config.dr_priority),
            HelloOption::GenerationId(iface.genid),
        ];
        if !iface.secondary.is_empty() {
            options.push(HelloOption::AddressList(iface.secondary.clone()));
        }
        self.send(id, iface.primary, &Repr::hello(options));
    }

    /// Re-runs the DR election and reports a change.
    fn update_dr(&mut self, config: &Config, id: InterfaceId, iface: &mut Interface) {
        let dr = iface.elect_dr(config);
        if dr != iface.dr {
            iface.dr = dr;
            self.event(Event::DrChanged { interface: id, dr });
        }
    }
}

/// Reference counts of the interfaces joined per (S,G): the union for the joinfile.
#[derive(Debug, Default)]
struct Union {
    counts: BTreeMap<SourceGroup, u32>,
}

impl Union {
    fn add(&mut self, sg: SourceGroup, out: &mut Output) {
        let count = self.counts.entry(sg).or_insert(0);
        *count += 1;
        if *count == 1 {
            out.event(Event::Joined(sg));
        }
    }

    fn remove(&mut self, sg: SourceGroup, out: &mut Output) {
        if let Some(count) = self.counts.get_mut(&sg) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.counts.remove(&sg);
                out.event(Event::Left(sg));
            }
        }
    }

    /// Whether a new (S,G) may be added under `limit`.
    fn has_room_for(&self, sg: &SourceGroup, limit: usize) -> bool {
        self.counts.contains_key(sg) || self.counts.len() < limit
    }
}

/// The PIM-SM (SSM subset) upstream-neighbour engine: feed it packets and time, take packets,
/// a timer deadline and events out. See the crate documentation for the driver loop.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    rng: SmallRng,
    interfaces: BTreeMap<InterfaceId, Interface>,
    timers: Timers,
    union: Union,
    out: Output,
    /// (S,G)s whose Prune-Pending Timer expired with several neighbours, per interface: sent
    /// as PruneEchoes, batched, at the end of `handle_timeout`.
    pending_echo: BTreeMap<InterfaceId, BTreeSet<SourceGroup>>,
    shut_down: bool,
}

/// `now + secs` for a wire holdtime; `None` for 0xffff (infinite).
fn holdtime_deadline(now: Instant, secs: u16) -> Option<Instant> {
    if secs == pim::HOLDTIME_INFINITE { None } else { now.checked_add(Duration::from_secs(u64::from(secs))) }
}

/// The later of two ET deadlines, `None` being infinite (RFC 7761 §4.5.2: "the maximum of its
/// current value and the HoldTime").
fn later(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

fn is_link_local(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

/// Whether `addr` may be an address of ours or of a neighbour.
fn is_unicast(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// Whether `addr` can be the source of a routed multicast flow: unicast, not unspecified,
/// loopback, link-local, "this network" (0/8) or reserved (240/4).
fn is_routable_source(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let first = a.octets()[0];
            !(first == 0 || first == 127 || first >= 224 || a.is_link_local())
        }
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local()),
    }
}

/// Whether `addr` is a multicast group that is forwarded beyond the link: not in
/// 224.0.0.0/24 (Local Network Control Block, RFC 5771) and not of IPv6 scope 0, 1 or 2
/// (reserved, interface-local, link-local; RFC 4291 §2.7).
fn is_routable_group(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_multicast() && a.octets()[..3] != [224, 0, 0],
        IpAddr::V6(a) => a.is_multicast() && (a.octets()[1] & 0x0f) > 2,
    }
}

/// Builds PruneEchoes (RFC 7761 §4.5.2: "a Prune(S,G) message sent by the upstream router on a
/// LAN with its own address in the Upstream Neighbor Address field") for `sgs`, packed into
/// as few Join/Prune messages as fit [`MAX_JOIN_PRUNE_LEN`] bytes and 255 groups each.
fn build_prune_echoes(upstream: IpAddr, holdtime: u16, sgs: &BTreeSet<SourceGroup>) -> Vec<Repr> {
    let addr_len = match upstream {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    };
    let header_len = pim::HEADER_LEN + 2 + addr_len + 4;
    let group_len = 4 + addr_len + 4;
    let source_len = 4 + addr_len;
    let mut by_group: BTreeMap<IpAddr, Vec<IpAddr>> = BTreeMap::new();
    for sg in sgs {
        by_group.entry(sg.group).or_default().push(sg.source);
    }
    let mut messages = Vec::new();
    let mut groups: Vec<JoinPruneGroup> = Vec::new();
    let mut len = header_len;
    for (group, sources) in by_group {
        let mut rest = sources.as_slice();
        while !rest.is_empty() {
            if groups.len() == 255 || len + group_len + source_len > MAX_JOIN_PRUNE_LEN {
                messages.push(Repr::join_prune(upstream, holdtime, std::mem::take(&mut groups)));
                len = header_len;
            }
            let room = (MAX_JOIN_PRUNE_LEN.saturating_sub(len + group_len) / source_len).max(1);
            let (now, after) = rest.split_at(room.min(rest.len()));
            let mut entry = JoinPruneGroup::new(group);
            for source in now {
                entry = entry.with_prune(EncodedSource::source(*source));
            }
            groups.push(entry);
            len += group_len + now.len() * source_len;
            rest = after;
        }
    }
    if !groups.is_empty() {
        messages.push(Repr::join_prune(upstream, holdtime, groups));
    }
    messages
}

impl Engine {
    /// A new engine. `seed` drives every random choice (Generation IDs, Hello delays and
    /// jitter): give a fresh random value from the OS on every start, so that a restart gets
    /// new GenIDs (RFC 7761 §4.3.1); tests give a constant.
    pub fn new(config: Config, seed: u64) -> Result<Engine, ConfigError> {
        config.validate()?;
        Ok(Engine {
            config,
            rng: SmallRng::seed_from_u64(seed),
            interfaces: BTreeMap::new(),
            timers: Timers::default(),
            union: Union::default(),
            out: Output::default(),
            pending_echo: BTreeMap::new(),
            shut_down: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A uniformly random duration in `[0, max]`.
    fn random_delay(&mut self, max: Duration) -> Duration {
        let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if max_nanos == 0 { Duration::ZERO } else { Duration::from_nanos(self.rng.random_range(0..=max_nanos)) }
    }

    /// The time to the next periodic Hello: Hello_Period less up to `hello_jitter`.
    fn periodic_interval(&mut self) -> Duration {
        let jitter = self.random_delay(self.config.hello_jitter);
        self.config.hello_period.saturating_sub(jitter)
    }

    fn check_addresses(id: InterfaceId, primary: &IpAddr, secondary: &[IpAddr]) -> Result<(), InterfaceError> {
        if Family::of(primary) != id.family {
            return Err(InterfaceError::FamilyMismatch { id, addr: *primary });
        }
        if !is_unicast(primary) {
            return Err(InterfaceError::NotUnicast(*primary));
        }
        if id.family == Family::Ipv6 && !is_link_local(primary) {
            return Err(InterfaceError::NotLinkLocal(*primary));
        }
        if secondary.len() > MAX_SECONDARY_ADDRESSES {
            return Err(InterfaceError::TooManySecondary(secondary.len()));
        }
        if let Some(bad) = secondary.iter().find(|a| !is_unicast(a)) {
            return Err(InterfaceError::NotUnicast(*bad));
        }
        Ok(())
    }

    /// Secondary addresses without duplicates or the primary, in the given order.
    fn normalize_secondary(primary: &IpAddr, secondary: Vec<IpAddr>) -> Vec<IpAddr> {
        let mut seen = BTreeSet::new();
        secondary.into_iter().filter(|a| a != primary && seen.insert(*a)).collect()
    }

    /// Starts PIM on an interface.
    ///
    /// `primary` is the Hello source: the interface's primary IPv4 address (it must be the
    /// address the downstream router's route toward the sources points at, lab-notes.md §4),
    /// or for IPv6 its link-local address. `secondary` addresses go into the Hello Address
    /// List (for IPv6, the global addresses) and are accepted as Upstream Neighbor Address.
    ///
    /// A fresh random Generation ID is drawn, and the first Hello is scheduled after a random
    /// delay in `[0, triggered_hello_delay]` (RFC 7761 §4.3.1: "the Hello Timer (HT) MUST be set
    /// to random value between 0 and Triggered_Hello_Delay"), at most 100 ms by default, then
    /// every `hello_period`.
    pub fn add_interface(
        &mut self,
        id: InterfaceId,
        name: impl Into<String>,
        primary: IpAddr,
        secondary: Vec<IpAddr>,
        now: Instant,
    ) -> Result<(), InterfaceError> {
        self.handle_timeout(now);
        if self.interfaces.contains_key(&id) {
            return Err(InterfaceError::Exists(id));
        }
        Self::check_addresses(id, &primary, &secondary)?;
        let secondary = Self::normalize_secondary(&primary, secondary);
        let genid: u32 = self.rng.random();
        let first = now.checked_add(self.random_delay(self.config.triggered_hello_delay));
        let mut iface = Interface {
            name: name.into(),
            primary,
            secondary,
            genid,
            started: now,
            hello_at: None,
            triggered_at: None,
            hello_sent: false,
            neighbors: BTreeMap::new(),
            dr: primary,
            downstream: BTreeMap::new(),
        };
        if !self.shut_down {
            self.timers.set(&mut iface.hello_at, first, Timer::Hello(id));
        }
        self.interfaces.insert(id, iface);
        self.handle_timeout(now);
        Ok(())
    }

    /// The interface's addresses changed (RFC 7761 §4.3.1).
    ///
    /// A new primary address: a Hello with Holdtime 0 from the old address ("before an
    /// interface ... changes primary IP address, a Hello message with a zero HoldTime should be
    /// sent immediately (with the old IP address ...)"), then at once a Hello from the new one
    /// ("it MUST send a Hello message with its new IP address"). Only secondary addresses
    /// changed: a Hello with the new Address List at once. The GenID stays; downstream state
    /// stays (it expires or is pruned as usual).
    pub fn update_addresses(
        &mut self,
        id: InterfaceId,
        primary: IpAddr,
        secondary: Vec<IpAddr>,
        now: Instant,
    ) -> Result<(), InterfaceError> {
        self.handle_timeout(now);
        Self::check_addresses(id, &primary, &secondary)?;
        let secondary = Self::normalize_secondary(&primary, secondary);
        let interval = self.periodic_interval();
        let Some(iface) = self.interfaces.get_mut(&id) else {
            return Err(InterfaceError::Unknown(id));
        };
        if primary != iface.primary {
            if iface.hello_sent && !self.shut_down {
                self.out.hello(&self.config, id, iface, 0);
            }
            iface.primary = primary;
            iface.secondary = secondary;
            iface.hello_sent = false;
            if !self.shut_down {
                self.out.hello(&self.config, id, iface, self.config.hello_holdtime_secs());
                iface.hello_sent = true;
                self.timers.set(&mut iface.hello_at, now.checked_add(interval), Timer::Hello(id));
            }
            self.out.update_dr(&self.config, id, iface);
        } else if secondary != iface.secondary {
            iface.secondary = secondary;
            if iface.hello_sent && !self.shut_down {
                self.out.hello(&self.config, id, iface, self.config.hello_holdtime_secs());
            }
        }
        self.handle_timeout(now);
        Ok(())
    }

    /// Stops PIM on an interface: queues a goodbye Hello (Holdtime 0, RFC 7761 §4.3.1, which the
    /// driver sends if the link still works) and drops its neighbours and downstream state,
    /// with `NeighborDown` / `InterfacePrune` / `Left` events.
    pub fn remove_interface(&mut self, id: InterfaceId, now: Instant) -> Result<(), InterfaceError> {
        self.handle_timeout(now);
        let Some(mut iface) = self.interfaces.remove(&id) else {
            return Err(InterfaceError::Unknown(id));
        };
        if !self.shut_down {
            self.out.hello(&self.config, id, &iface, 0);
        }
        self.timers.set(&mut iface.hello_at, None, Timer::Hello(id));
        self.timers.set(&mut iface.triggered_at, None, Timer::TriggeredHello(id));
        for (addr, mut n) in std::mem::take(&mut iface.neighbors) {
            self.timers.set(&mut n.expires, None, Timer::Neighbor(id, addr));
            self.out.event(Event::NeighborDown {
                interface: id,
                neighbor: addr,
                reason: NeighborDownReason::InterfaceRemoved,
            });
        }
        for (sg, mut ds) in std::mem::take(&mut iface.downstream) {
            self.timers.set(&mut ds.expires, None, Timer::Expiry(id, sg));
            self.timers.set(&mut ds.ppt, None, Timer::PrunePending(id, sg));
            self.out.event(Event::InterfacePrune { interface: id, sg, reason: PruneReason::InterfaceRemoved });
            self.union.remove(sg, &mut self.out);
        }
        self.pending_echo.remove(&id);
        Ok(())
    }

    /// Applies a new configuration at run time (pimwatch's SIGHUP), keeping neighbours, GenIDs
    /// and downstream state.
    ///
    /// * Hello options changed (Holdtime, DR Priority, LAN Prune Delay): a Hello with the new
    ///   options at once on every interface that has sent one, so neighbours use them now
    ///   rather than at the next periodic Hello (the same reasoning as RFC 7761 §4.3.1's
    ///   immediate Hello on an address change), and the DR is elected again.
    /// * Hello_Period or its jitter changed: the next periodic Hello is rescheduled from now.
    /// * SSM ranges narrowed: downstream state for groups now outside them is removed
    ///   (`InterfacePrune { reason: Reconfigured }`, then `Left`), as if it had never been
    ///   accepted; Joins for those groups are dropped as `NotSsm` from now on.
    /// * A lower `max_joined_sgs` or `max_neighbors` limits what is added from now on; nothing
    ///   held is dropped for it.
    ///
    /// An invalid configuration is refused and the running one stays.
    pub fn reconfigure(&mut self, config: Config, now: Instant) -> Result<(), ConfigError> {
        config.validate()?;
        self.handle_timeout(now);
        let old = std::mem::replace(&mut self.config, config);
        let hello_changed = old.hello_holdtime != self.config.hello_holdtime
            || old.dr_priority != self.config.dr_priority
            || old.propagation_delay != self.config.propagation_delay
            || old.override_interval != self.config.override_interval
            || old.t_bit != self.config.t_bit;
        let period_changed =
            old.hello_period != self.config.hello_period || old.hello_jitter != self.config.hello_jitter;
        let ids: Vec<InterfaceId> = self.interfaces.keys().copied().collect();
        for id in ids {
            let interval = self.periodic_interval();
            let Some(iface) = self.interfaces.get_mut(&id) else { continue };
            if !self.shut_down && iface.hello_sent {
                if hello_changed {
                    self.out.hello(&self.config, id, iface, self.config.hello_holdtime_secs());
                }
                if hello_changed || period_changed {
                    self.timers.set(&mut iface.hello_at, now.checked_add(interval), Timer::Hello(id));
                }
            }
            if hello_changed {
                self.out.update_dr(&self.config, id, iface);
            }
            if old.ssm_ranges != self.config.ssm_ranges {
                let outside: Vec<SourceGroup> =
                    iface.downstream.keys().filter(|sg| !self.config.is_ssm(&sg.group)).copied().collect();
                for sg in outside {
                    let Some(mut ds) = iface.downstream.remove(&sg) else { continue };
                    self.timers.set(&mut ds.expires, None, Timer::Expiry(id, sg));
                    self.timers.set(&mut ds.ppt, None, Timer::PrunePending(id, sg));
                    if let Some(pending) = self.pending_echo.get_mut(&id) {
                        pending.remove(&sg);
                    }
                    self.out.event(Event::InterfacePrune { interface: id, sg, reason: PruneReason::Reconfigured });
                    self.union.remove(sg, &mut self.out);
                }
            }
        }
        self.handle_timeout(now);
        Ok(())
    }

    /// Shuts PIM down: queues a goodbye Hello (Holdtime 0) on every interface so neighbours
    /// drop us at once (RFC 7761 §4.3.1, §4.9.2) and stops all Hellos. Downstream state is
    /// kept and no `Left` events are produced: the joinfile must survive a restart (see
    /// [`Engine::restore`]). Final: later calls queue nothing more.
    pub fn shutdown(&mut self, now: Instant) {
        self.handle_timeout(now);
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        for (id, iface) in &mut self.interfaces {
            self.out.hello(&self.config, *id, iface, 0);
            self.timers.set(&mut iface.hello_at, None, Timer::Hello(*id));
            self.timers.set(&mut iface.triggered_at, None, Timer::TriggeredHello(*id));
        }
    }

    /// Whether [`Engine::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down
    }

    /// Holds (S,G)s from the joinfile written before a restart, so that a restart never drops
    /// traffic the network still wants (original-system.md §9.2 row 19).
    ///
    /// Each valid (S,G) (group in the SSM ranges, unicast source) is put in Join state, marked
    /// restored, with an Expiry Timer of `holdtime` (normally one J/P_HoldTime, 210 s), on
    /// every interface of its family present now (the joinfile has no interface column, so
    /// call this after adding the interfaces). It then counts as joined for forwarding, with
    /// the usual `InterfaceJoin { restored: true }` and `Joined` events, until on each
    /// interface:
    ///
    /// * a Join for it arrives: it becomes ordinary state with the Join's Holdtime
    ///   (`RestoreConfirmed`);
    /// * a Prune for it arrives: handled as a Prune in Join state (at once with one neighbour,
    ///   after the Prune-Pending Timer with several);
    /// * `holdtime` passes without either: `InterfacePrune { reason: RestoreExpired }`.
    ///
    /// Interfaces are independent: a Join on one does not end the hold on another (the other
    /// downstream router's refresh may still be on its way). Existing state is left alone.
    /// Returns how many (S,G)s got a restored state on at least one interface.
    pub fn restore(&mut self, sgs: impl IntoIterator<Item = SourceGroup>, holdtime: Duration, now: Instant) -> usize {
        self.handle_timeout(now);
        let deadline = now.checked_add(holdtime);
        let mut held = 0;
        for sg in sgs {
            let Some(family) = crate::types::sg_family(&sg) else {
                self.out.counters.count_drop(DropReason::BadSource);
                continue;
            };
            if let Err(reason) =
                self.check_group_addr(family, &sg.group).and_then(|()| check_source_addr(family, &sg.source))
            {
                self.out.counters.count_drop(reason);
                continue;
            }
            if !self.union.has_room_for(&sg, self.config.max_joined_sgs) {
                self.out.counters.count_drop(DropReason::TooManyStates);
                continue;
            }
            let mut any = false;
            for (id, iface) in self.interfaces.iter_mut().filter(|(id, _)| id.family == family) {
                if iface.downstream.contains_key(&sg) {
                    continue;
                }
                let mut ds =
                    Downstream { state: DownstreamState::Join, expires: None, ppt: None, restored: true, since: now };
                self.timers.set(&mut ds.expires, deadline, Timer::Expiry(*id, sg));
                iface.downstream.insert(sg, ds);
                self.out.event(Event::InterfaceJoin { interface: *id, sg, restored: true });
                self.union.add(sg, &mut self.out);
                any = true;
            }
            if any {
                held += 1;
            }
        }
        self.handle_timeout(now);
        held
    }

    // -----------------------------------------------------------------------------------------
    // Input: packets.

    /// Handles one received PIM message: `pim_payload` is the IP payload (for IPv4, after the
    /// IP header), `src` and `dst` the IP addresses, `id` the instance it arrived on.
    ///
    /// Checksums: IPv4 messages are verified here. IPv6 messages are not (the IPv6 checksum
    /// covers a pseudo-header): the driver must set `IPV6_CHECKSUM` = 2 on the raw socket so
    /// the kernel verifies them and discards bad ones (RFC 3542 §3.1).
    ///
    /// Timers due at or before `now` run first, so a packet never meets state that should
    /// already have expired. Returns the reason if the whole message was dropped (counted in
    /// [`Counters::dropped`]; log it at debug level); entries dropped inside an accepted
    /// Join/Prune come out as [`Event::EntryIgnored`].
    pub fn handle_packet(
        &mut self,
        id: InterfaceId,
        src: IpAddr,
        dst: IpAddr,
        pim_payload: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        self.handle_timeout(now);
        let result = self.process_packet(id, src, dst, pim_payload, now);
        if let Err(reason) = result {
            self.out.counters.count_drop(reason);
        }
        self.handle_timeout(now);
        result
    }

    /// Whether `src` is one of our addresses: on this interface, or (unless link-local, which
    /// may repeat across links) on any interface.
    fn is_own(&self, id: InterfaceId, src: &IpAddr) -> bool {
        self.interfaces.iter().any(|(other, iface)| (*other == id || !is_link_local(src)) && iface.owns(src))
    }

    fn process_packet(
        &mut self,
        id: InterfaceId,
        src: IpAddr,
        dst: IpAddr,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        if !self.interfaces.contains_key(&id) {
            return Err(DropReason::UnknownInterface);
        }
        if Family::of(&src) != id.family || Family::of(&dst) != id.family {
            return Err(DropReason::WrongFamily);
        }
        if self.is_own(id, &src) {
            return Err(DropReason::OwnPacket);
        }
        let packet = Packet::new_checked(payload).map_err(|_| DropReason::Malformed)?;
        let kind = packet.msg_type();
        self.out.counters.count_received(kind);
        let ctx = match id.family {
            Family::Ipv4 => ChecksumContext::V4,
            Family::Ipv6 => ChecksumContext::Unchecked,
        };
        if !packet.verify_checksum(ctx) {
            return Err(DropReason::BadChecksum);
        }
        match kind {
            MessageType::Hello => {
                let hello = Hello::parse(packet.body()).map_err(|_| DropReason::Malformed)?;
                self.on_hello(id, src, &hello, now)
            }
            MessageType::JoinPrune => {
                let view = packet.join_prune().map_err(|_| DropReason::Malformed)?;
                self.on_join_prune(id, src, &view, now)
            }
            _ => Err(DropReason::UnsupportedType),
        }
    }

    /// A Hello (RFC 7761 §4.3.1, §4.3.2, §4.9.2). Unknown options are ignored (the codec keeps
    /// them as `Unknown`, nothing here reads them).
    fn on_hello(&mut self, id: InterfaceId, src: IpAddr, hello: &Hello, now: Instant) -> Result<(), DropReason> {
        let holdtime = hello.holdtime().unwrap_or(DEFAULT_HELLO_HOLDTIME);
        let Some(iface) = self.interfaces.get_mut(&id) else {
            return Err(DropReason::UnknownInterface);
        };
        if holdtime == 0 {
            // A goodbye: "the receiving routers should immediately time out the neighbor
            // information for the sender" (§4.9.2). From an unknown sender it changes nothing.
            if let Some(mut n) = iface.neighbors.remove(&src) {
                self.timers.set(&mut n.expires, None, Timer::Neighbor(id, src));
                self.out.event(Event::NeighborDown {
                    interface: id,
                    neighbor: src,
                    reason: NeighborDownReason::Goodbye,
                });
                self.out.update_dr(&self.config, id, iface);
            }
            return Ok(());
        }
        let expires = holdtime_deadline(now, holdtime);
        let genid = hello.generation_id();
        let secondary: Vec<IpAddr> = hello.addresses().filter(|a| *a != src).take(MAX_NEIGHBOR_SECONDARY).collect();
        let triggered = match iface.neighbors.get_mut(&src) {
            Some(n) => {
                // A new GenID: the neighbour restarted; its old Hello information is discarded
                // and replaced by this Hello's (§4.3.1), and we answer with a triggered Hello.
                let restarted = n.genid != genid;
                if restarted {
                    self.out.event(Event::NeighborRestarted {
                        interface: id,
                        neighbor: src,
                        old_genid: n.genid,
                        new_genid: genid,
                    });
                    n.up_since = now;
                }
                n.genid = genid;
                n.holdtime = holdtime;
                n.dr_priority = hello.dr_priority();
                n.lan_prune_delay = hello.lan_prune_delay();
                n.secondary = secondary;
                // The Neighbor Liveness Timer restarts with every Hello (§4.3.2).
                self.timers.set(&mut n.expires, expires, Timer::Neighbor(id, src));
                restarted
            }
            None => {
                if iface.neighbors.len() >= self.config.max_neighbors {
                    return Err(DropReason::TooManyNeighbors);
                }
                let mut n = Neighbor {
                    genid,
                    holdtime,
                    expires: None,
                    dr_priority: hello.dr_priority(),
                    lan_prune_delay: hello.lan_prune_delay(),
                    secondary,
                    up_since: now,
                };
                self.timers.set(&mut n.expires, expires, Timer::Neighbor(id, src));
                iface.neighbors.insert(src, n);
                self.out.event(Event::NeighborUp { interface: id, neighbor: src, genid, holdtime });
                true
            }
        };
        self.out.update_dr(&self.config, id, iface);
        if triggered {
            self.schedule_triggered_hello(id, now);
        }
        Ok(())
    }

    /// A triggered Hello after rand(0, Triggered_Hello_Delay) (§4.3.1), unless one (triggered
    /// or periodic) is already due by then.
    fn schedule_triggered_hello(&mut self, id: InterfaceId, now: Instant) {
        if self.shut_down {
            return;
        }
        let delay = self.random_delay(self.config.triggered_hello_delay);
        let Some(at) = now.checked_add(delay) else { return };
        let Some(iface) = self.interfaces.get_mut(&id) else { return };
        if iface.triggered_at.is_some_and(|t| t <= at) || iface.hello_at.is_some_and(|t| t <= at) {
            return;
        }
        self.timers.set(&mut iface.triggered_at, Some(at), Timer::TriggeredHello(id));
    }

    /// Sends a Hello now if one is owed (the first, or a triggered one still waiting): before
    /// sending a Join/Prune "it MUST immediately send the relevant Hello message without
    /// waiting for the Hello Timer to expire" (§4.3.1), or neighbours would discard it.
    fn send_owed_hello(&mut self, id: InterfaceId, now: Instant) {
        if self.shut_down {
            return;
        }
        let interval = self.periodic_interval();
        let Some(iface) = self.interfaces.get_mut(&id) else { return };
        if iface.hello_sent && iface.triggered_at.is_none() {
            return;
        }
        self.out.hello(&self.config, id, iface, self.config.hello_holdtime_secs());
        self.timers.set(&mut iface.triggered_at, None, Timer::TriggeredHello(id));
        if !iface.hello_sent {
            iface.hello_sent = true;
            self.timers.set(&mut iface.hello_at, now.checked_add(interval), Timer::Hello(id));
        }
    }

    /// A Join/Prune (RFC 7761 §4.5, §4.5.2).
    fn on_join_prune(
        &mut self,
        id: InterfaceId,
        src: IpAddr,
        view: &JoinPruneView<'_>,
        now: Instant,
    ) -> Result<(), DropReason> {
        let Some(iface) = self.interfaces.get(&id) else {
            return Err(DropReason::UnknownInterface);
        };
        // §4.5: "If a router receives a Join/Prune message from a particular IP source address
        // and it has not seen a PIM Hello message from that source address, then the Join/Prune
        // message SHOULD be discarded without further processing."
        if !iface.neighbors.contains_key(&src) {
            return Err(DropReason::NotNeighbor);
        }
        // §4.5.2: only a Join/Prune "with its Upstream Neighbor Address set to the router's
        // primary IP address on I" feeds the downstream state machine.
        if !iface.owns(&view.upstream_neighbor()) {
            return Err(DropReason::WrongUpstream);
        }
        // §4.9.1: the Encoded-Source mask length "MUST be equal to the mask length in bits for
        // the given Address Family ... A router SHOULD ignore any messages received with any
        // other mask length."
        let bad_mask =
            view.groups().any(|g| g.joins().chain(g.prunes()).any(|s| s.mask_len != pim::full_mask_len(&s.addr)));
        if bad_mask {
            return Err(DropReason::BadSourceMask);
        }
        let holdtime = view.holdtime();
        // §4.5: "each Joined or Pruned source for a group is effectively considered
        // individually": a bad entry never stops the others.
        for g in view.groups() {
            let group = g.group();
            let group_ok = self.check_group(id.family, &group);
            for source in g.joins() {
                self.on_entry(id, src, &group, group_ok, &source, Some(holdtime), now);
            }
            for source in g.prunes() {
                self.on_entry(id, src, &group, group_ok, &source, None, now);
            }
        }
        Ok(())
    }

    /// One source entry: a Join if `holdtime` is set, else a Prune.
    #[allow(clippy::too_many_arguments)]
    fn on_entry(
        &mut self,
        id: InterfaceId,
        from: IpAddr,
        group: &EncodedGroup,
        group_ok: Result<(), DropReason>,
        source: &EncodedSource,
        holdtime: Option<u16>,
        now: Instant,
    ) {
        let sg = SourceGroup::new(source.addr, group.addr);
        let verdict = group_ok.and_then(|()| check_source(id.family, source)).and_then(|()| match holdtime {
            Some(holdtime) => self.apply_join(id, sg, holdtime, now),
            None => self.apply_prune(id, sg, now),
        });
        if let Err(reason) = verdict {
            self.out.counters.count_drop(reason);
            self.out.event(Event::EntryIgnored {
                interface: id,
                from,
                group: group.addr,
                source: source.addr,
                join: holdtime.is_some(),
                reason,
            });
        }
    }

    /// Checks a group address for an (S,G) entry: a routable multicast group of the family in
    /// the SSM ranges.
    fn check_group_addr(&self, family: Family, group: &IpAddr) -> Result<(), DropReason> {
        if Family::of(group) != family || !is_routable_group(group) {
            return Err(DropReason::BadGroup);
        }
        if !self.config.is_ssm(group) {
            return Err(DropReason::NotSsm);
        }
        Ok(())
    }

    /// Checks an Encoded-Group: a single group (full mask length, §4.9.1: "If the message is
    /// sent for a single group, then the Mask length must equal the address length"), not
    /// Bidir, and a valid group address.
    fn check_group(&self, family: Family, group: &EncodedGroup) -> Result<(), DropReason> {
        if group.mask_len != pim::full_mask_len(&group.addr) || group.bidir {
            return Err(DropReason::BadGroup);
        }
        self.check_group_addr(family, &group.addr)
    }

    /// Receive Join(S,G) on `id` (§4.5.2).
    fn apply_join(&mut self, id: InterfaceId, sg: SourceGroup, holdtime: u16, now: Instant) -> Result<(), DropReason> {
        let Some(iface) = self.interfaces.get_mut(&id) else {
            return Err(DropReason::UnknownInterface);
        };
        let wanted = holdtime_deadline(now, holdtime);
        match iface.downstream.get_mut(&sg) {
            None => {
                // NoInfo -> Join: "The Expiry Timer (ET) is started and set to the HoldTime
                // from the triggering Join/Prune message." A HoldTime of 0 would expire at
                // once, so it creates nothing (the net effect is the same, without the flap).
                if holdtime == 0 {
                    return Err(DropReason::ZeroHoldtime);
                }
                if !self.union.has_room_for(&sg, self.config.max_joined_sgs) {
                    return Err(DropReason::TooManyStates);
                }
                let mut ds =
                    Downstream { state: DownstreamState::Join, expires: None, ppt: None, restored: false, since: now };
                self.timers.set(&mut ds.expires, wanted, Timer::Expiry(id, sg));
                iface.downstream.insert(sg, ds);
                self.out.event(Event::InterfaceJoin { interface: id, sg, restored: false });
                self.union.add(sg, &mut self.out);
            }
            Some(ds) => {
                // Join -> Join and Prune-Pending -> Join: "the Expiry Timer is restarted and set
                // to the maximum of its current value and the HoldTime". A restored state is
                // taken over instead: its ET becomes the Join's HoldTime.
                let expires = if ds.restored {
                    if holdtime == 0 { ds.expires } else { wanted }
                } else {
                    later(ds.expires, wanted)
                };
                if ds.state == DownstreamState::PrunePending {
                    // "The Prune-Pending Timer is canceled (without triggering an expiry event)."
                    ds.state = DownstreamState::Join;
                    self.timers.set(&mut ds.ppt, None, Timer::PrunePending(id, sg));
                    self.out.event(Event::InterfacePruneOverridden { interface: id, sg });
                }
                if ds.restored {
                    ds.restored = false;
                    self.out.event(Event::RestoreConfirmed { interface: id, sg });
                }
                if expires != ds.expires {
                    self.timers.set(&mut ds.expires, expires, Timer::Expiry(id, sg));
                }
            }
        }
        self.out.counters.join_entries += 1;
        Ok(())
    }

    /// Receive Prune(S,G) on `id` (§4.5.2).
    fn apply_prune(&mut self, id: InterfaceId, sg: SourceGroup, now: Instant) -> Result<(), DropReason> {
        let Some(iface) = self.interfaces.get_mut(&id) else {
            return Err(DropReason::UnknownInterface);
        };
        self.out.counters.prune_entries += 1;
        let several = iface.neighbors.len() > 1;
        let override_interval = iface.jp_override_interval(&self.config);
        let Some(ds) = iface.downstream.get_mut(&sg) else {
            // NoInfo: stays NoInfo.
            return Ok(());
        };
        if ds.state == DownstreamState::PrunePending {
            // Prune-Pending: stays, the PPT is not restarted.
            return Ok(());
        }
        if several {
            // Join -> Prune-Pending, PPT = J/P_Override_Interval(I) "if the router has more
            // than one neighbor on that interface".
            let until = now.checked_add(override_interval);
            ds.state = DownstreamState::PrunePending;
            self.timers.set(&mut ds.ppt, until, Timer::PrunePending(id, sg));
            if let Some(until) = until {
                self.out.event(Event::InterfacePrunePending { interface: id, sg, until });
            }
        } else if let Some(mut ds) = iface.downstream.remove(&sg) {
            // "... otherwise, it is set to zero, causing it to expire immediately": straight to
            // NoInfo. No PruneEcho: it is sent only with more than one neighbour.
            self.timers.set(&mut ds.expires, None, Timer::Expiry(id, sg));
            self.out.event(Event::InterfacePrune { interface: id, sg, reason: PruneReason::Pruned });
            self.union.remove(sg, &mut self.out);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Input: time.

    /// Runs every timer due at or before `now`, in deadline order, then sends the PruneEchoes
    /// this caused. Call it when [`Engine::poll_timeout`]'s deadline is reached (calling it
    /// early or often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            match key {
                Timer::Hello(id) => self.on_hello_timer(id, at, now),
                Timer::TriggeredHello(id) => self.on_triggered_hello_timer(id, at),
                Timer::Neighbor(id, addr) => self.on_neighbor_timer(id, addr, at),
                Timer::PrunePending(id, sg) => self.on_prune_pending_timer(id, sg, at),
                Timer::Expiry(id, sg) => self.on_expiry_timer(id, sg, at),
            }
        }
        self.flush_prune_echoes(now);
    }

    /// HT(I) fired: send a Hello and restart HT with Hello_Period (§4.3.1).
    fn on_hello_timer(&mut self, id: InterfaceId, at: Instant, now: Instant) {
        let interval = self.periodic_interval();
        let Some(iface) = self.interfaces.get_mut(&id) else { return };
        if iface.hello_at != Some(at) {
            return;
        }
        iface.hello_at = None;
        if self.shut_down {
            return;
        }
        self.out.hello(&self.config, id, iface, self.config.hello_holdtime_secs());
        iface.hello_sent = true;
        self.timers.set(&mut iface.hello_at, now.checked_add(interval), Timer::Hello(id));
    }

    fn on_triggered_hello_timer(&mut self, id: InterfaceId, at: Instant) {
        let Some(iface) = self.interfaces.get_mut(&id) else { return };
        if iface.triggered_at != Some(at) {
            return;
        }
        iface.triggered_at = None;
        if self.shut_down {
            return;
        }
        self.out.hello(&self.config, id, iface, self.config.hello_holdtime_secs());
        iface.hello_sent = true;
    }

    /// NLT expired: "Neighbor state is deleted when the neighbor timeout expires" (§4.3.2).
    fn on_neighbor_timer(&mut self, id: InterfaceId, addr: IpAddr, at: Instant) {
        let Some(iface) = self.interfaces.get_mut(&id) else { return };
        if iface.neighbors.get(&addr).is_none_or(|n| n.expires != Some(at)) {
            return;
        }
        iface.neighbors.remove(&addr);
        self.out.event(Event::NeighborDown { interface: id, neighbor: addr, reason: NeighborDownReason::Expired });
        self.out.update_dr(&self.config, id, iface);
    }

    /// PPT expired: Prune-Pending -> NoInfo, and a PruneEcho if there is more than one
    /// neighbour (§4.5.2).
    fn on_prune_pending_timer(&mut self, id: InterfaceId, sg: SourceGroup, at: Instant) {
        let Some(iface) = self.interfaces.get_mut(&id) else { return };
        if iface.downstream.get(&sg).is_none_or(|ds| ds.ppt != Some(at)) {
            return;
        }
        let several = iface.neighbors.len() > 1;
        if let Some(mut ds) = iface.downstream.remove(&sg) {
            ds.ppt = None;
            self.timers.set(&mut ds.expires, None, Timer::Expiry(id, sg));
        }
        self.out.event(Event::InterfacePrune { interface: id, sg, reason: PruneReason::Pruned });
        self.union.remove(sg, &mut self.out);
        if several {
            self.pending_echo.entry(id).or_default().insert(sg);
        }
    }

    /// ET expired: Join or Prune-Pending -> NoInfo (§4.5.2).
    fn on_expiry_timer(&mut self, id: InterfaceId, sg: SourceGroup, at: Instant) {
        let Some(iface) = self.interfaces.get_mut(&id) else { return };
        if iface.downstream.get(&sg).is_none_or(|ds| ds.expires != Some(at)) {
            return;
        }
        let mut restored = false;
        if let Some(mut ds) = iface.downstream.remove(&sg) {
            ds.expires = None;
            restored = ds.restored;
            self.timers.set(&mut ds.ppt, None, Timer::PrunePending(id, sg));
        }
        let reason = if restored { PruneReason::RestoreExpired } else { PruneReason::Expired };
        self.out.event(Event::InterfacePrune { interface: id, sg, reason });
        self.union.remove(sg, &mut self.out);
    }

    /// Sends the PruneEchoes collected by `on_prune_pending_timer`, one batch per interface.
    fn flush_prune_echoes(&mut self, now: Instant) {
        if self.pending_echo.is_empty() {
            return;
        }
        for (id, sgs) in std::mem::take(&mut self.pending_echo) {
            if self.shut_down {
                continue;
            }
            self.send_owed_hello(id, now);
            let Some(iface) = self.interfaces.get(&id) else { continue };
            for repr in build_prune_echoes(iface.primary, self.config.jp_holdtime_secs(), &sgs) {
                self.out.send(id, iface.primary, &repr);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Output.

    /// The earliest timer deadline: call [`Engine::handle_timeout`] then. `None` if no timer
    /// runs. O(log n).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    // -----------------------------------------------------------------------------------------
    // Queries.

    /// The joined set: every (S,G) in Join or Prune-Pending on at least one interface, sorted.
    pub fn joined(&self) -> impl Iterator<Item = SourceGroup> + '_ {
        self.union.counts.keys().copied()
    }

    /// Whether (S,G) is joined on any interface.
    pub fn is_joined(&self, sg: &SourceGroup) -> bool {
        self.union.counts.contains_key(sg)
    }

    /// The interfaces (S,G) is forwarded to: those in Join or Prune-Pending, the
    /// `joins(S,G)` of RFC 7761 §4.1.6 (Prune-Pending still forwards). In id order.
    pub fn oifs(&self, sg: &SourceGroup) -> Vec<InterfaceId> {
        if !self.is_joined(sg) {
            return Vec::new();
        }
        self.interfaces.iter().filter(|(_, iface)| iface.downstream.contains_key(sg)).map(|(id, _)| *id).collect()
    }

    /// The downstream state of (S,G) on `id`; `None` is NoInfo (or no such interface).
    pub fn downstream(&self, id: InterfaceId, sg: &SourceGroup) -> Option<DownstreamInfo> {
        let ds = self.interfaces.get(&id)?.downstream.get(sg)?;
        Some(DownstreamInfo {
            state: ds.state,
            expires: ds.expires,
            prune_pending_until: ds.ppt,
            restored: ds.restored,
            since: ds.since,
        })
    }

    /// The interfaces, in id order.
    pub fn interface_ids(&self) -> impl Iterator<Item = InterfaceId> + '_ {
        self.interfaces.keys().copied()
    }

    /// The neighbours on `id`, in address order.
    pub fn neighbors(&self, id: InterfaceId) -> Vec<IpAddr> {
        self.interfaces.get(&id).map(|i| i.neighbors.keys().copied().collect()).unwrap_or_default()
    }

    /// When the neighbour `addr` on `id` expires: `Some(None)` if never (Holdtime 0xffff),
    /// `None` if there is no such neighbour.
    pub fn neighbor_expiry(&self, id: InterfaceId, addr: &IpAddr) -> Option<Option<Instant>> {
        self.interfaces.get(&id)?.neighbors.get(addr).map(|n| n.expires)
    }

    /// Our Generation ID on `id`.
    pub fn generation_id(&self, id: InterfaceId) -> Option<u32> {
        self.interfaces.get(&id).map(|i| i.genid)
    }

    /// The elected DR on `id` (RFC 7761 §4.3.2).
    pub fn dr(&self, id: InterfaceId) -> Option<IpAddr> {
        self.interfaces.get(&id).map(|i| i.dr)
    }

    /// J/P_Override_Interval(I) on `id` (RFC 7761 §4.3.3, §4.11).
    pub fn jp_override_interval(&self, id: InterfaceId) -> Option<Duration> {
        self.interfaces.get(&id).map(|i| i.jp_override_interval(&self.config))
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.out.counters
    }

    /// A snapshot for `pimwatch status`, with times relative to `now`.
    pub fn status(&self, now: Instant) -> Status {
        let interfaces = self
            .interfaces
            .iter()
            .map(|(id, iface)| InterfaceStatus {
                id: *id,
                name: iface.name.clone(),
                address: iface.primary,
                secondary: iface.secondary.clone(),
                genid: iface.genid,
                dr_priority: self.config.dr_priority,
                dr: iface.dr,
                i_am_dr: iface.dr == iface.primary,
                uptime_secs: secs_since(now, iface.started),
                next_hello_secs: iface.hello_at.map(|at| secs_until(now, at)),
                jp_override_interval_secs: round_ms(iface.jp_override_interval(&self.config)),
                neighbors: iface
                    .neighbors
                    .iter()
                    .map(|(addr, n)| NeighborStatus {
                        address: *addr,
                        secondary: n.secondary.clone(),
                        genid: n.genid,
                        dr_priority: n.dr_priority,
                        holdtime_secs: n.holdtime,
                        expires_in_secs: n.expires.map(|at| secs_until(now, at)),
                        uptime_secs: secs_since(now, n.up_since),
                        lan_prune_delay: n.lan_prune_delay.map(|d| LanPruneDelayStatus {
                            t_bit: d.t_bit,
                            propagation_delay_ms: d.propagation_delay_ms,
                            override_interval_ms: d.override_interval_ms,
                        }),
                    })
                    .collect(),
                sgs: iface
                    .downstream
                    .iter()
                    .map(|(sg, ds)| SgStatus {
                        sg: *sg,
                        state: ds.state,
                        restored: ds.restored,
                        expires_in_secs: ds.expires.map(|at| secs_until(now, at)),
                        prune_pending_secs: ds.ppt.map(|at| secs_until(now, at)),
                        uptime_secs: secs_since(now, ds.since),
                    })
                    .collect(),
            })
            .collect();
        Status {
            ssm_ranges: self.config.ssm_ranges.iter().map(ToString::to_string).collect(),
            interfaces,
            joined: self.joined().collect(),
            counters: self.out.counters.clone(),
            shut_down: self.shut_down,
        }
    }
}

/// Checks a source address for an (S,G) entry.
fn check_source_addr(family: Family, source: &IpAddr) -> Result<(), DropReason> {
    if Family::of(source) != family || !is_routable_source(source) {
        return Err(DropReason::BadSource);
    }
    Ok(())
}

/// Checks an Encoded-Source of a Join/Prune: a plain (S,G) entry (S = 1, W = 0, R = 0,
/// §4.9.1, §4.9.5.1) with a usable source address. (*,G) and (S,G,rpt) entries are ignored:
/// a PIM-SSM-only router does not implement those state machines (§4.8.2) and, for SSM
/// groups, they must not be acted on (§4.8.1).
fn check_source(family: Family, source: &EncodedSource) -> Result<(), DropReason> {
    if source.wildcard || source.rpt {
        return Err(DropReason::WildcardOrRpt);
    }
    if !source.sparse {
        return Err(DropReason::NotSparse);
    }
    check_source_addr(family, &source.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sg(s: &str, g: &str) -> SourceGroup {
        SourceGroup::new(s.parse().unwrap(), g.parse().unwrap())
    }

    #[test]
    fn prune_echo_packing_splits_on_size_and_group_count() {
        let up: IpAddr = "10.9.1.2".parse().unwrap();
        // One group, many sources: split by size.
        let sgs: BTreeSet<_> = (0..400u32).map(|i| sg(&format!("10.0.{}.{}", i / 256, i % 256), "232.1.1.1")).collect();
        let msgs = build_prune_echoes(up, 210, &sgs);
        let mut seen = BTreeSet::new();
        for m in &msgs {
            let bytes = m.to_bytes(ChecksumContext::V4).unwrap();
            assert!(bytes.len() <= MAX_JOIN_PRUNE_LEN, "{}", bytes.len());
            let jp = m.as_join_prune().unwrap();
            assert_eq!(jp.upstream_neighbor.0, up);
            assert_eq!(jp.holdtime, 210);
            for g in &jp.groups {
                assert!(g.joins.is_empty());
                for s in &g.prunes {
                    assert!(s.is_sg() && s.sparse && s.mask_len == 32);
                    assert!(seen.insert(SourceGroup::new(s.addr, g.group.addr)));
                }
            }
        }
        assert_eq!(seen, sgs);
        assert!(msgs.len() >= 3);
        // Many groups, one source each: split at 255 groups or by size, whichever first.
        let sgs: BTreeSet<_> = (0..600u32).map(|i| sg("10.0.0.1", &format!("232.0.{}.{}", i / 256, i % 256))).collect();
        let msgs = build_prune_echoes(up, 210, &sgs);
        let total: usize = msgs.iter().map(|m| m.as_join_prune().unwrap().groups.len()).sum();
        assert_eq!(total, 600);
        for m in &msgs {
            assert!(m.as_join_prune().unwrap().groups.len() <= 255);
            assert!(m.to_bytes(ChecksumContext::V4).unwrap().len() <= MAX_JOIN_PRUNE_LEN);
        }
        // IPv6.
        let up6: IpAddr = "fe80::2".parse().unwrap();
        let sgs: BTreeSet<_> = (0..100u32).map(|i| sg(&format!("2001:db8::{i:x}"), "ff3e::8000:1")).collect();
        let msgs = build_prune_echoes(up6, 210, &sgs);
        for m in &msgs {
            assert!(m.to_bytes(ChecksumContext::Unchecked).unwrap().len() <= MAX_JOIN_PRUNE_LEN);
        }
        assert!(build_prune_echoes(up, 210, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn address_classes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(is_routable_group(&ip("232.1.1.1")));
        assert!(is_routable_group(&ip("224.0.1.1")));
        assert!(!is_routable_group(&ip("224.0.0.13")));
        assert!(!is_routable_group(&ip("10.0.0.1")));
        assert!(is_routable_group(&ip("ff3e::1")));
        assert!(is_routable_group(&ip("ff35::1")));
        assert!(!is_routable_group(&ip("ff32::1")));
        assert!(!is_routable_group(&ip("ff02::d")));
        assert!(is_routable_source(&ip("23.212.185.4")));
        for bad in ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "169.254.1.1"] {
            assert!(!is_routable_source(&ip(bad)), "{bad}");
        }
        assert!(is_routable_source(&ip("2001:db8::5")));
        for bad in ["::", "::1", "ff3e::1", "fe80::1"] {
            assert!(!is_routable_source(&ip(bad)), "{bad}");
        }
        assert_eq!(later(None, Some(Instant::now())), None);
    }
}
