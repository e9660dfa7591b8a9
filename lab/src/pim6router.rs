//! `mcast-lab pim6-router`: the IPv6 half of the lab's access router.
//!
//! Debian 12's FRR 8.4 is built without pim6d (lab/README.md, "The PIM6 router"), so this
//! scripted router stands in for it on acc, next to FRR's pimd (which holds `MRT_INIT` for
//! IPv4; this holds `MRT6_INIT`). It does what the access router does for SSM channels:
//!
//! * **MLDv2 querier** on the downstream LAN (RFC 3810 §7): startup General Queries (§9.6,
//!   §9.7), then one every Query Interval; it joins ff02::16 there and parses every Version 2
//!   Multicast Listener Report. Per (S,G) it keeps the source timer of RFC 3810 §7.2.3 in INCLUDE mode
//!   (the only mode of SSM): IS_IN and ALLOW start it at the Multicast Address Listening
//!   Interval (§9.4), BLOCK and the sources a TO_IN drops lower it to the Last Listener Query
//!   Time (§9.9) and trigger Multicast Address and Source Specific Queries (§7.6.3.2, Last
//!   Listener Query Count of them, Last Listener Query Interval apart). EXCLUDE-mode records
//!   (RFC 4604 §3.1) and MLDv1 Reports and Dones (§3.5, §3.7) for SSM groups are ignored.
//! * **PIM6 on the upstream link** (RFC 7761 over IPv6: ff02::d, link-local source, checksum
//!   with the pseudo-header computed by the kernel through `IPV6_CHECKSUM`): Hellos at start,
//!   periodically and triggered by a new neighbour or a new Generation ID (§4.3.1), neighbours
//!   with their Address Lists (§4.3.4) and holdtimes.
//! * **Join/Prune**: when the first listener of (S,G) appears, a Join(S,G) to the RPF
//!   neighbour: the unicast route toward S (the kernel's IPv6 FIB, `/proc/net/ipv6_route`)
//!   must leave through the upstream interface, and its gateway is mapped to the neighbour
//!   whose primary (link-local) address or Address List holds it (RFC 7761 §4.3.4: the
//!   Address List is how a next hop that is a secondary address maps to its neighbour).
//!   Joins are refreshed every t_periodic with the J/P holdtime (default 60 s / 210 s, §4.11),
//!   sent again at once to a neighbour that restarted (§4.5.7, new GenID); a Prune(S,G) goes
//!   out when the last listener leaves, and to every neighbour at exit with a goodbye Hello.
//! * **MFC6**: an (S,G) entry from the upstream MIF to the downstream MIF for as long as the
//!   channel has listeners, so the IPv6 data pimwatch forwards reaches the receivers.
//!
//! The protocol logic is the sans-IO [`Router`] (unit-tested below); [`run`] only moves
//! bytes between it, two raw sockets and the kernel's MRT6 table, and prints every decision on
//! stderr (the service log).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mcast_mroute::{MulticastRouter6, Vif};
use mcast_wire::igmp::encode_code8;
use mcast_wire::ip::IpProtocol;
use mcast_wire::mld::{self, AddressRecord, QueryV2, RecordType, encode_code16};
use mcast_wire::pim::{self, ChecksumContext, EncodedSource, HelloOption, JoinPruneGroup, Message};
use socket2::{Domain, Protocol, Socket, Type};

use crate::signals;
use crate::util::{Dur, unix_now};

/// An SSM channel: (source, group).
pub type Sg = (Ipv6Addr, Ipv6Addr);

/// Groups per Join/Prune message: well under the 8-bit group count and a 1280-byte MTU
/// (each group with one source takes 40 bytes).
const GROUPS_PER_MESSAGE: usize = 25;

/// Options of `mcast-lab pim6-router`.
#[derive(Debug, Clone, clap::Args)]
pub struct Pim6RouterArgs {
    /// Interface toward the upstream PIM6 router (the ingest host's pimwatch), e.g. to-ing.
    #[arg(long)]
    pub upstream: String,
    /// Receiver LAN: MLDv2 querier here, and the outgoing interface of the MFC6 entries.
    #[arg(long)]
    pub downstream: String,
    /// Hello period (RFC 7761 §4.11 Hello_Period); the advertised holdtime is 3.5 × this.
    #[arg(long, default_value = "30s")]
    pub hello_period: Dur,
    /// Join/Prune refresh interval t_periodic (RFC 7761 §4.11); the J/P holdtime sent is
    /// 3.5 × this (210 s at 60 s).
    #[arg(long, default_value = "60s")]
    pub join_prune_interval: Dur,
    /// MLD Query Interval (RFC 3810 §9.2).
    #[arg(long, default_value = "125s")]
    pub query_interval: Dur,
    /// MLD Query Response Interval (RFC 3810 §9.3).
    #[arg(long, default_value = "10s")]
    pub query_response_interval: Dur,
    /// MLD Robustness Variable (RFC 3810 §9.1).
    #[arg(long, default_value_t = 2)]
    pub robustness: u8,
    /// MLD Last Listener Query Interval (RFC 3810 §9.8).
    #[arg(long, default_value = "1s")]
    pub last_listener_query_interval: Dur,
    /// MLD Last Listener Query Count (RFC 3810 §9.14; default: the Robustness Variable).
    #[arg(long)]
    pub last_listener_query_count: Option<u8>,
    /// Generation ID (default: random per start).
    #[arg(long)]
    pub generation_id: Option<u32>,
}

/// Timers and identity of a [`Router`].
#[derive(Debug, Clone)]
pub struct Config {
    pub hello_period: Duration,
    pub join_prune_interval: Duration,
    pub query_interval: Duration,
    pub query_response_interval: Duration,
    pub robustness: u8,
    pub last_listener_query_interval: Duration,
    pub last_listener_query_count: u8,
    pub generation_id: u32,
}

impl Config {
    /// From the command line.
    pub fn from_args(args: &Pim6RouterArgs) -> Result<Config> {
        if !(1..=7).contains(&args.robustness) {
            bail!("--robustness must be 1 to 7 (the 3-bit QRV of RFC 3810 §5.1.8)");
        }
        if args.query_response_interval.0 >= args.query_interval.0 {
            bail!("--query-response-interval must be shorter than --query-interval (RFC 3810 §9.3)");
        }
        Ok(Config {
            hello_period: args.hello_period.0,
            join_prune_interval: args.join_prune_interval.0,
            query_interval: args.query_interval.0,
            query_response_interval: args.query_response_interval.0,
            robustness: args.robustness,
            last_listener_query_interval: args.last_listener_query_interval.0,
            last_listener_query_count: args.last_listener_query_count.unwrap_or(args.robustness).max(1),
            generation_id: args.generation_id.unwrap_or_else(rand::random),
        })
    }

    /// Hello holdtime: 3.5 × Hello period (RFC 7761 §4.11 Default_Hello_Holdtime).
    fn hello_holdtime(&self) -> u16 {
        secs_u16(self.hello_period.mul_f64(3.5))
    }

    /// J/P holdtime: 3.5 × t_periodic (RFC 7761 §4.11 J/P_Holdtime).
    fn join_prune_holdtime(&self) -> u16 {
        secs_u16(self.join_prune_interval.mul_f64(3.5))
    }

    /// Multicast Address Listening Interval: Robustness × Query Interval + Query Response
    /// Interval (RFC 3810 §9.4).
    pub fn mali(&self) -> Duration {
        self.query_interval * u32::from(self.robustness) + self.query_response_interval
    }

    /// Last Listener Query Time: Last Listener Query Interval × Count (RFC 3810 §9.9).
    pub fn llqt(&self) -> Duration {
        self.last_listener_query_interval * u32::from(self.last_listener_query_count)
    }

    /// Startup Query Interval: a quarter of the Query Interval (RFC 3810 §9.6).
    fn startup_query_interval(&self) -> Duration {
        self.query_interval / 4
    }
}

fn secs_u16(d: Duration) -> u16 {
    u16::try_from(d.as_secs().max(1)).unwrap_or(u16::MAX)
}

fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Whether `group` is in the IPv6 SSM range FF3x::/32 (RFC 4607 §1, RFC 3306 §6).
pub fn is_ssm(group: &Ipv6Addr) -> bool {
    let o = group.octets();
    o[0] == 0xff && o[1] >> 4 == 3 && o[2] == 0 && o[3] == 0
}

/// Where the route toward a source leads (the IPv6 unicast FIB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteHop {
    /// Gateway (`::` for an on-link route).
    pub gateway: Ipv6Addr,
    /// Outgoing interface.
    pub device: String,
}

/// A PIM6 neighbour on the upstream link (RFC 7761 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    /// Secondary addresses from the Hello's Address List option (RFC 7761 §4.3.4).
    pub addresses: Vec<Ipv6Addr>,
    pub genid: Option<u32>,
    /// When the neighbour expires; `None` for holdtime 0xffff (never).
    pub expires: Option<Instant>,
}

/// What the router wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A PIM message to ff02::d on the upstream link (checksum left to the kernel).
    SendPim(Vec<u8>),
    /// An MLD message to `dst` on the downstream LAN.
    SendMld { dst: Ipv6Addr, repr: mld::Repr },
    /// Install (`true`) or remove the MFC6 entry upstream → downstream for the channel.
    SetMfc { sg: Sg, forward: bool },
    /// A decision worth a line in the log.
    Log(String),
}

/// A source whose timer was lowered to LLQT and is being queried (RFC 3810 §7.6.3.2). It stays
/// here after the last query went out, until a report answers or the source timer expires: a
/// host may answer the first query after the second was sent (its delay is random up to the
/// Maximum Response Delay, and it is scheduled, not immediate), and that answer still counts.
#[derive(Debug, Clone, Copy)]
struct PendingQuery {
    /// Queries still to send (Last Listener Query Count at the start).
    left: u8,
    next: Instant,
}

/// The sans-IO PIM6/MLDv2 router. Feed it packets and the clock; drain [`Router::poll_action`].
#[derive(Debug)]
pub struct Router {
    cfg: Config,
    neighbors: BTreeMap<Ipv6Addr, Neighbor>,
    /// Source timers of the downstream listeners (RFC 3810 §7.2.3).
    listeners: BTreeMap<Sg, Instant>,
    queries: BTreeMap<Sg, PendingQuery>,
    /// Channels joined upstream, and the neighbour (primary address) the Join went to.
    upstream: BTreeMap<Sg, Ipv6Addr>,
    /// Channels with an MFC6 entry.
    mfc: BTreeSet<Sg>,
    /// Channels whose missing RPF neighbour was logged (logged once until it changes).
    unresolved: BTreeMap<Sg, String>,
    next_hello: Instant,
    next_query: Instant,
    startup_queries_left: u8,
    next_join_prune: Instant,
    actions: VecDeque<Action>,
}

impl Router {
    /// A router that sends its first Hello and General Query at `now`.
    pub fn new(cfg: Config, now: Instant) -> Router {
        let startup = cfg.robustness;
        Router {
            next_join_prune: now + cfg.join_prune_interval,
            cfg,
            neighbors: BTreeMap::new(),
            listeners: BTreeMap::new(),
            queries: BTreeMap::new(),
            upstream: BTreeMap::new(),
            mfc: BTreeSet::new(),
            unresolved: BTreeMap::new(),
            next_hello: now,
            next_query: now,
            startup_queries_left: startup,
            actions: VecDeque::new(),
        }
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Router::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_hello.min(self.next_query).min(self.next_join_prune);
        t = self.listeners.values().fold(t, |t, e| t.min(*e));
        t = self.queries.values().filter(|q| q.left > 0).fold(t, |t, q| t.min(q.next));
        self.neighbors.values().filter_map(|n| n.expires).fold(t, Instant::min)
    }

    /// The channels with listeners.
    pub fn listeners(&self) -> impl Iterator<Item = &Sg> {
        self.listeners.keys()
    }

    /// The channels joined upstream, with the neighbour each Join went to.
    pub fn upstream(&self) -> &BTreeMap<Sg, Ipv6Addr> {
        &self.upstream
    }

    /// The PIM6 neighbours by primary address.
    pub fn neighbors(&self) -> &BTreeMap<Ipv6Addr, Neighbor> {
        &self.neighbors
    }

    fn log(&mut self, text: String) {
        self.actions.push_back(Action::Log(text));
    }

    fn hello(&mut self, holdtime: u16, why: &str) {
        let repr = pim::Repr::hello(vec![
            HelloOption::Holdtime(holdtime),
            HelloOption::DrPriority(1),
            HelloOption::GenerationId(self.cfg.generation_id),
        ]);
        match repr.to_bytes(ChecksumContext::Unchecked) {
            Ok(bytes) => {
                self.actions.push_back(Action::SendPim(bytes));
                self.log(format!("PIM6 Hello holdtime {holdtime} ({why})"));
            }
            Err(e) => self.log(format!("cannot encode a Hello: {e}")),
        }
    }

    /// Sends Join/Prune messages to `neighbor`: `joins` and `prunes` are channels.
    fn join_prune(&mut self, neighbor: Ipv6Addr, joins: &[Sg], prunes: &[Sg], why: &str) {
        let mut groups: BTreeMap<Ipv6Addr, JoinPruneGroup> = BTreeMap::new();
        for &(s, g) in joins {
            let entry = groups.entry(g).or_insert_with(|| JoinPruneGroup::new(IpAddr::V6(g)));
            entry.joins.push(EncodedSource::source(IpAddr::V6(s)));
        }
        for &(s, g) in prunes {
            let entry = groups.entry(g).or_insert_with(|| JoinPruneGroup::new(IpAddr::V6(g)));
            entry.prunes.push(EncodedSource::source(IpAddr::V6(s)));
        }
        let groups: Vec<JoinPruneGroup> = groups.into_values().collect();
        let holdtime = self.cfg.join_prune_holdtime();
        for chunk in groups.chunks(GROUPS_PER_MESSAGE) {
            let repr = pim::Repr::join_prune(IpAddr::V6(neighbor), holdtime, chunk.to_vec());
            match repr.to_bytes(ChecksumContext::Unchecked) {
                Ok(bytes) => self.actions.push_back(Action::SendPim(bytes)),
                Err(e) => self.log(format!("cannot encode a Join/Prune: {e}")),
            }
        }
        let list = |sgs: &[Sg]| sgs.iter().map(|(s, g)| format!("({s},{g})")).collect::<Vec<_>>().join(" ");
        if !joins.is_empty() {
            self.log(format!("PIM6 Join {} to {neighbor} holdtime {holdtime} ({why})", list(joins)));
        }
        if !prunes.is_empty() {
            self.log(format!("PIM6 Prune {} to {neighbor} ({why})", list(prunes)));
        }
    }

    /// A PIM message from `src` on the upstream link (the kernel verified the checksum).
    /// Malformed input is logged and dropped.
    pub fn handle_pim(
        &mut self,
        src: Ipv6Addr,
        payload: &[u8],
        now: Instant,
        rpf: &dyn Fn(Ipv6Addr) -> Option<RouteHop>,
        upstream_if: &str,
    ) {
        let repr =
            match pim::Packet::new_checked(payload).and_then(|p| pim::Repr::parse(&p, ChecksumContext::Unchecked)) {
                Ok(repr) => repr,
                Err(e) => {
                    self.log(format!("undecodable PIM6 message from {src} ({e}); dropped"));
                    return;
                }
            };
        // RFC 7761 §4.9: Hellos and Join/Prunes come from link-local addresses over IPv6.
        if !src.is_unicast_link_local() {
            self.log(format!("PIM6 {:?} from non-link-local {src}; dropped", repr.message_type()));
            return;
        }
        match &repr.message {
            Message::Hello(hello) => {
                let holdtime = hello.holdtime().unwrap_or(105);
                if holdtime == 0 {
                    if self.neighbors.remove(&src).is_some() {
                        self.log(format!("PIM6 neighbour {src} left (holdtime 0)"));
                        self.neighbor_lost(src, now, rpf, upstream_if);
                    }
                    return;
                }
                let addresses: Vec<Ipv6Addr> = hello
                    .options
                    .iter()
                    .filter_map(|o| match o {
                        HelloOption::AddressList(list) => Some(list),
                        _ => None,
                    })
                    .flatten()
                    .filter_map(|a| match a {
                        IpAddr::V6(v6) => Some(*v6),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                let genid = hello.generation_id();
                let expires = (holdtime != 0xffff).then(|| now + Duration::from_secs(u64::from(holdtime)));
                let neighbor = Neighbor { addresses: addresses.clone(), genid, expires };
                match self.neighbors.insert(src, neighbor) {
                    None => {
                        self.log(format!(
                            "PIM6 neighbour {src} up: genid {genid:?} holdtime {holdtime} addresses {addresses:?}"
                        ));
                        // RFC 7761 §4.3.1: a Hello goes to a new neighbour before any Join.
                        self.hello(self.cfg.hello_holdtime(), "triggered: new neighbour");
                        self.reconcile(now, rpf, upstream_if);
                    }
                    Some(old) if old.genid != genid => {
                        self.log(format!("PIM6 neighbour {src} restarted: genid {:?} -> {genid:?}", old.genid));
                        self.hello(self.cfg.hello_holdtime(), "triggered: new generation ID");
                        // RFC 7761 §4.5.7: its state is gone; send our Joins again at once.
                        let joins: Vec<Sg> =
                            self.upstream.iter().filter(|(_, n)| **n == src).map(|(sg, _)| *sg).collect();
                        if !joins.is_empty() {
                            self.join_prune(src, &joins, &[], "neighbour restarted");
                        }
                        self.reconcile(now, rpf, upstream_if);
                    }
                    Some(old) if old.addresses != addresses => {
                        self.log(format!("PIM6 neighbour {src} addresses now {addresses:?}"));
                        self.reconcile(now, rpf, upstream_if);
                    }
                    Some(_) => {}
                }
            }
            Message::JoinPrune(_) => self.log(format!("PIM6 Join/Prune from {src} ignored (we are the last hop)")),
            Message::Other { kind, .. } => self.log(format!("PIM6 {kind:?} from {src} ignored")),
        }
    }

    fn neighbor_lost(
        &mut self,
        neighbor: Ipv6Addr,
        now: Instant,
        rpf: &dyn Fn(Ipv6Addr) -> Option<RouteHop>,
        upstream_if: &str,
    ) {
        let lost: Vec<Sg> = self.upstream.iter().filter(|(_, n)| **n == neighbor).map(|(sg, _)| *sg).collect();
        for sg in lost {
            self.upstream.remove(&sg);
            self.log(format!("({},{}) lost its upstream neighbour {neighbor}", sg.0, sg.1));
        }
        self.reconcile(now, rpf, upstream_if);
    }

    /// An ICMPv6 message from `src` to `dst` on the downstream LAN. Everything but MLD is
    /// ignored; bad checksums and malformed messages are logged and dropped.
    pub fn handle_mld(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        payload: &[u8],
        now: Instant,
        rpf: &dyn Fn(Ipv6Addr) -> Option<RouteHop>,
        upstream_if: &str,
    ) {
        let Some(&kind) = payload.first() else { return };
        if !matches!(kind, mld::TYPE_QUERY | mld::TYPE_V1_REPORT | mld::TYPE_V1_DONE | mld::TYPE_V2_REPORT) {
            return;
        }
        let repr = match mld::Packet::new_checked(payload).and_then(|p| mld::Repr::parse(&p, &src, &dst)) {
            Ok(repr) => repr,
            Err(e) => {
                self.log(format!("undecodable MLD message from {src} ({e}); dropped"));
                return;
            }
        };
        match repr {
            mld::Repr::ReportV2(report) => {
                for record in &report.records {
                    self.record(src, record, now);
                }
                self.reconcile(now, rpf, upstream_if);
            }
            mld::Repr::ReportV1 { group } | mld::Repr::DoneV1 { group } => {
                self.log(format!(
                    "MLDv1 message for {group} from {src} ignored (SSM needs MLDv2, RFC 4604 §3.5, §3.7)"
                ));
            }
            mld::Repr::QueryV1 { .. } | mld::Repr::QueryV2(_) => {
                self.log(format!("MLD query from another router {src} ignored (this router stays querier)"));
            }
            mld::Repr::Unknown { .. } => {}
        }
    }

    /// One address record of a report (RFC 3810 §7.4.1 and §7.4.2, INCLUDE mode).
    fn record(&mut self, from: Ipv6Addr, record: &AddressRecord, now: Instant) {
        let group = record.group;
        if !is_ssm(&group) {
            if !matches!(group.octets()[1] & 0x0f, 1 | 2) {
                self.log(format!("MLD record {:?} for non-SSM group {group} from {from} ignored", record.record_type));
            }
            return;
        }
        let sources = &record.sources;
        match record.record_type {
            // IS_IN(B), ALLOW(B): (B) = MALI.
            RecordType::ModeIsInclude | RecordType::AllowNewSources => {
                for &s in sources {
                    let sg = (s, group);
                    if self.listeners.insert(sg, now + self.cfg.mali()).is_none() {
                        self.log(format!("MLD {:?} from {from}: ({s},{group}) has a listener", record.record_type));
                    }
                    if self.queries.remove(&sg).is_some() {
                        self.log(format!(
                            "MLD {:?} from {from}: ({s},{group}) still has a listener",
                            record.record_type
                        ));
                    }
                }
            }
            // TO_IN(B): (B) = MALI, Send Q(MA, A-B).
            RecordType::ChangeToIncludeMode => {
                let b: BTreeSet<Ipv6Addr> = sources.iter().copied().collect();
                let dropped: Vec<Ipv6Addr> =
                    self.listeners.keys().filter(|(s, g)| *g == group && !b.contains(s)).map(|(s, _)| *s).collect();
                for &s in &b {
                    if self.listeners.insert((s, group), now + self.cfg.mali()).is_none() {
                        self.log(format!("MLD TO_IN from {from}: ({s},{group}) has a listener"));
                    }
                    self.queries.remove(&(s, group));
                }
                self.query_sources(group, &dropped, now, from, "TO_IN");
            }
            // BLOCK(B): Send Q(MA, A*B).
            RecordType::BlockOldSources => {
                let known: Vec<Ipv6Addr> =
                    sources.iter().copied().filter(|s| self.listeners.contains_key(&(*s, group))).collect();
                self.query_sources(group, &known, now, from, "BLOCK");
            }
            RecordType::ModeIsExclude | RecordType::ChangeToExcludeMode => {
                self.log(format!(
                    "MLD {:?} for SSM group {group} from {from} ignored (EXCLUDE mode has no meaning for SSM, RFC 4604 §3.1)",
                    record.record_type
                ));
            }
            RecordType::Unknown(t) => self.log(format!("MLD record type {t} from {from} ignored")),
        }
    }

    /// Lowers the source timers of `sources` to LLQT and starts Multicast Address and Source
    /// Specific Queries for them (RFC 3810 §7.6.3.2).
    fn query_sources(&mut self, group: Ipv6Addr, sources: &[Ipv6Addr], now: Instant, from: Ipv6Addr, why: &str) {
        if sources.is_empty() {
            return;
        }
        // Only sources whose timer is above LLQT: a retransmitted BLOCK (hosts send every
        // state change Robustness times, RFC 3810 §6.1) must not restart the queries.
        let llqt = now + self.cfg.llqt();
        let mut lowered = Vec::new();
        for &s in sources {
            match self.listeners.get_mut(&(s, group)) {
                Some(timer) if *timer > llqt => {
                    *timer = llqt;
                    lowered.push(s);
                }
                Some(_) => {}
                // TO_IN lists only known sources; nothing to query for an unknown one.
                None => {}
            }
        }
        if lowered.is_empty() {
            return;
        }
        for &s in &lowered {
            self.queries.insert((s, group), PendingQuery { left: self.cfg.last_listener_query_count, next: now });
        }
        self.log(format!(
            "MLD {why} from {from} for {group} sources {lowered:?}: source timers lowered to {:?}, querying",
            self.cfg.llqt()
        ));
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant, rpf: &dyn Fn(Ipv6Addr) -> Option<RouteHop>, upstream_if: &str) {
        if now >= self.next_hello {
            self.hello(self.cfg.hello_holdtime(), "periodic");
            self.next_hello = now + self.cfg.hello_period;
        }
        if now >= self.next_query {
            self.general_query();
            if self.startup_queries_left > 0 {
                self.startup_queries_left -= 1;
            }
            let interval =
                if self.startup_queries_left > 0 { self.cfg.startup_query_interval() } else { self.cfg.query_interval };
            self.next_query = now + interval;
        }
        self.specific_queries(now);
        let expired: Vec<Sg> = self.listeners.iter().filter(|(_, t)| **t <= now).map(|(sg, _)| *sg).collect();
        for sg in expired {
            self.listeners.remove(&sg);
            self.queries.remove(&sg);
            self.log(format!("({},{}): source timer expired, no listener left", sg.0, sg.1));
        }
        let gone: Vec<Ipv6Addr> =
            self.neighbors.iter().filter(|(_, n)| n.expires.is_some_and(|e| e <= now)).map(|(a, _)| *a).collect();
        for neighbor in gone {
            self.neighbors.remove(&neighbor);
            self.log(format!("PIM6 neighbour {neighbor} expired"));
            self.neighbor_lost(neighbor, now, rpf, upstream_if);
        }
        if now >= self.next_join_prune {
            self.next_join_prune = now + self.cfg.join_prune_interval;
            let mut by_neighbor: BTreeMap<Ipv6Addr, Vec<Sg>> = BTreeMap::new();
            for (sg, n) in &self.upstream {
                by_neighbor.entry(*n).or_default().push(*sg);
            }
            for (neighbor, joins) in by_neighbor {
                self.join_prune(neighbor, &joins, &[], "periodic refresh");
            }
        }
        self.reconcile(now, rpf, upstream_if);
    }

    fn general_query(&mut self) {
        let query = QueryV2::general(
            encode_code16(millis_u32(self.cfg.query_response_interval)),
            self.cfg.robustness,
            encode_code8(u32::try_from(self.cfg.query_interval.as_secs()).unwrap_or(u32::MAX)),
        );
        self.actions.push_back(Action::SendMld { dst: mld::ALL_NODES, repr: mld::Repr::QueryV2(query) });
    }

    fn specific_queries(&mut self, now: Instant) {
        let mut due: BTreeMap<Ipv6Addr, Vec<Ipv6Addr>> = BTreeMap::new();
        for ((s, g), q) in &mut self.queries {
            if q.next <= now && q.left > 0 {
                due.entry(*g).or_default().push(*s);
                q.left -= 1;
                q.next = now + self.cfg.last_listener_query_interval;
            }
        }
        for (group, sources) in due {
            let query = QueryV2::specific(
                encode_code16(millis_u32(self.cfg.last_listener_query_interval)),
                self.cfg.robustness,
                encode_code8(u32::try_from(self.cfg.query_interval.as_secs()).unwrap_or(u32::MAX)),
                group,
                sources,
            );
            // RFC 3810 §5.1.15: specific queries go to the multicast address itself.
            self.actions.push_back(Action::SendMld { dst: group, repr: mld::Repr::QueryV2(query) });
        }
    }

    /// The RPF neighbour of `source`: the PIM6 neighbour that owns the gateway of the route
    /// toward it, if that route leaves through the upstream interface.
    fn rpf_neighbor(
        &self,
        source: Ipv6Addr,
        rpf: &dyn Fn(Ipv6Addr) -> Option<RouteHop>,
        upstream_if: &str,
    ) -> std::result::Result<Ipv6Addr, String> {
        let hop = rpf(source).ok_or_else(|| format!("no route toward {source}"))?;
        if hop.device != upstream_if {
            return Err(format!("the route toward {source} leaves through {}, not {upstream_if}", hop.device));
        }
        if hop.gateway.is_unspecified() {
            return Err(format!("{source} is on-link on {upstream_if}: no upstream router"));
        }
        self.neighbors
            .iter()
            .find(|(primary, n)| **primary == hop.gateway || n.addresses.contains(&hop.gateway))
            .map(|(primary, _)| *primary)
            .ok_or_else(|| format!("no PIM6 neighbour owns the gateway {} toward {source} (yet)", hop.gateway))
    }

    /// Brings the upstream Joins and the MFC6 entries in line with the listeners.
    fn reconcile(&mut self, _now: Instant, rpf: &dyn Fn(Ipv6Addr) -> Option<RouteHop>, upstream_if: &str) {
        let wanted: Vec<Sg> = self.listeners.keys().copied().collect();
        for sg in &wanted {
            if self.mfc.insert(*sg) {
                self.actions.push_back(Action::SetMfc { sg: *sg, forward: true });
            }
            if self.upstream.contains_key(sg) {
                continue;
            }
            match self.rpf_neighbor(sg.0, rpf, upstream_if) {
                Ok(neighbor) => {
                    self.unresolved.remove(sg);
                    self.upstream.insert(*sg, neighbor);
                    self.join_prune(neighbor, &[*sg], &[], "first listener");
                }
                Err(reason) => {
                    if self.unresolved.get(sg) != Some(&reason) {
                        self.log(format!("({},{}): no Join: {reason}", sg.0, sg.1));
                        self.unresolved.insert(*sg, reason);
                    }
                }
            }
        }
        let stale: Vec<(Sg, Ipv6Addr)> =
            self.upstream.iter().filter(|(sg, _)| !self.listeners.contains_key(sg)).map(|(sg, n)| (*sg, *n)).collect();
        for (sg, neighbor) in stale {
            self.upstream.remove(&sg);
            self.join_prune(neighbor, &[], &[sg], "last listener left");
        }
        let unwanted: Vec<Sg> = self.mfc.iter().filter(|sg| !self.listeners.contains_key(sg)).copied().collect();
        for sg in unwanted {
            self.mfc.remove(&sg);
            self.unresolved.remove(&sg);
            self.actions.push_back(Action::SetMfc { sg, forward: false });
        }
    }

    /// Leaving: Prunes for every joined channel, a goodbye Hello (holdtime 0, RFC 7761
    /// §4.3.1), and every MFC6 entry removed.
    pub fn shutdown(&mut self) {
        let mut by_neighbor: BTreeMap<Ipv6Addr, Vec<Sg>> = BTreeMap::new();
        for (sg, n) in std::mem::take(&mut self.upstream) {
            by_neighbor.entry(n).or_default().push(sg);
        }
        for (neighbor, prunes) in by_neighbor {
            self.join_prune(neighbor, &[], &prunes, "shutting down");
        }
        self.hello(0, "goodbye");
        for sg in std::mem::take(&mut self.mfc) {
            self.actions.push_back(Action::SetMfc { sg, forward: false });
        }
        self.listeners.clear();
        self.queries.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel's IPv6 FIB, for RPF.

/// Parses `/proc/net/ipv6_route` (dest, dest length, source, source length, next hop, metric,
/// refcount, use, flags, device; addresses as 32 hex digits, lengths and flags in hex) and
/// returns the longest-prefix match for `dst`, skipping reject routes and multicast prefixes.
/// Malformed lines are skipped.
pub fn route_lookup(table: &str, dst: Ipv6Addr) -> Option<RouteHop> {
    const RTF_REJECT: u32 = 0x0200;
    let hex_addr = |s: &str| -> Option<Ipv6Addr> {
        if s.len() != 32 {
            return None;
        }
        u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from)
    };
    let mut best: Option<(u8, u32, RouteHop)> = None;
    for line in table.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Some(net), Ok(len), Some(gateway), Ok(metric), Ok(flags)) = (
            hex_addr(f[0]),
            u8::from_str_radix(f[1], 16),
            hex_addr(f[4]),
            u32::from_str_radix(f[5], 16),
            u32::from_str_radix(f[8], 16),
        ) else {
            continue;
        };
        if len > 128 || flags & RTF_REJECT != 0 || net.is_multicast() || f[9] == "lo" {
            continue;
        }
        let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
        if u128::from(dst) & mask != u128::from(net) & mask {
            continue;
        }
        let better = match &best {
            None => true,
            Some((l, m, _)) => len > *l || (len == *l && metric < *m),
        };
        if better {
            best = Some((len, metric, RouteHop { gateway, device: f[9].to_owned() }));
        }
    }
    best.map(|(_, _, hop)| hop)
}

fn kernel_route(dst: Ipv6Addr) -> Option<RouteHop> {
    let table = std::fs::read_to_string("/proc/net/ipv6_route").ok()?;
    route_lookup(&table, dst)
}

// ---------------------------------------------------------------------------------------------
// The I/O loop.

fn log_line(text: &str) {
    eprintln!("pim6-router: {:.3} {text}", unix_now());
}

/// Opens the raw ICMPv6 socket that hears MLD on the downstream LAN and sends the queries: a
/// member of ff02::16 there (where MLDv2 reports go, RFC 3810 §5.2.14), hop limit 1 and the
/// Router Alert Hop-by-Hop option on everything sent (RFC 3810 §5). The kernel computes the
/// ICMPv6 checksum of what is sent (RFC 3542 §3.1); [`send_mld`] sets the source address.
fn open_mld_socket(ifindex: u32) -> Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .context("opening a raw ICMPv6 socket (needs root or CAP_NET_RAW)")?;
    socket.bind_device_by_index_v6(std::num::NonZeroU32::new(ifindex)).context("SO_BINDTOIFINDEX")?;
    socket.set_multicast_if_v6(ifindex).context("IPV6_MULTICAST_IF")?;
    socket.set_multicast_hops_v6(1).context("IPV6_MULTICAST_HOPS")?;
    socket.set_multicast_loop_v6(false).context("IPV6_MULTICAST_LOOP")?;
    socket.set_multicast_all_v6(false).context("IPV6_MULTICAST_ALL")?;
    socket.join_multicast_v6(&mld::ALL_MLDV2_ROUTERS, ifindex).context("joining ff02::16")?;
    let one: libc::c_int = 1;
    setsockopt_bytes(&socket, libc::IPV6_RECVPKTINFO, &one.to_ne_bytes()).context("IPV6_RECVPKTINFO")?;
    let hbh = mcast_wire::ipv6::hop_by_hop_router_alert(IpProtocol::ICMPV6);
    setsockopt_bytes(&socket, libc::IPV6_HOPOPTS, &hbh).context("IPV6_HOPOPTS (Router Alert)")?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn setsockopt_bytes(socket: &Socket, name: libc::c_int, value: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor, a pointer to `value.len()` readable bytes and that length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            name,
            value.as_ptr().cast::<libc::c_void>(),
            value.len() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The link-local address of an interface, waiting up to `wait` for it to appear.
fn link_local(name: &str, wait: Duration) -> Result<(u32, Ipv6Addr)> {
    let deadline = Instant::now() + wait;
    loop {
        let snapshot = mcast_mroute::links::snapshot().context("reading links and addresses (netlink)")?;
        let link = snapshot.link_by_name(name).with_context(|| format!("no interface {name:?} here"))?;
        if let Some(ll) = snapshot.ipv6_link_local(link.ifindex) {
            return Ok((link.ifindex, ll));
        }
        if Instant::now() >= deadline {
            bail!("interface {name} has no usable IPv6 link-local address (IPv6 disabled on it?)");
        }
        signals::sleep(Duration::from_millis(100))?;
    }
}

/// The kernel side: MRT6 with one MIF per interface and the MFC6 entries.
struct Forwarding {
    router: MulticastRouter6,
    upstream: Vif,
    downstream: Vif,
}

impl Forwarding {
    fn set(&mut self, (s, g): Sg, forward: bool) {
        let result = if forward {
            self.router.set_mfc6(s, g, self.upstream, &[self.downstream]).map(|()| true)
        } else {
            self.router.del_mfc6(s, g)
        };
        match result {
            Ok(_) => log_line(&format!("MFC6 ({s},{g}) {}", if forward { "installed" } else { "removed" })),
            Err(e) => log_line(&format!("MFC6 ({s},{g}) update failed: {e}")),
        }
    }
}

/// Runs the router until SIGTERM/SIGINT.
pub fn run(args: &Pim6RouterArgs) -> Result<()> {
    let cfg = Config::from_args(args)?;
    let (up_index, up_ll) = link_local(&args.upstream, Duration::from_secs(5))?;
    let (down_index, down_ll) = link_local(&args.downstream, Duration::from_secs(5))?;
    let pim_socket = mcast_mroute::pim::open_pim_socket_v6(up_index)
        .with_context(|| format!("opening the PIM6 socket on {}", args.upstream))?;
    let mld_socket = open_mld_socket(down_index).with_context(|| format!("MLD on {}", args.downstream))?;
    let mut router6 = MulticastRouter6::new().context("MRT6_INIT (is another IPv6 multicast router running?)")?;
    let upstream = router6.add_mif(up_index).context("adding the upstream MIF")?;
    let downstream = router6.add_mif(down_index).context("adding the downstream MIF")?;
    let mut forwarding = Forwarding { router: router6, upstream, downstream };
    log_line(&format!(
        "upstream {} ({up_ll}, MIF {}), downstream {} ({down_ll}, MIF {}), genid {:#010x}, hello {:?}, J/P {:?}/{} s, \
         MLD query {:?}/{:?} robustness {}, last listener {:?} x {}",
        args.upstream,
        upstream.index(),
        args.downstream,
        downstream.index(),
        cfg.generation_id,
        cfg.hello_period,
        cfg.join_prune_interval,
        cfg.join_prune_holdtime(),
        cfg.query_interval,
        cfg.query_response_interval,
        cfg.robustness,
        cfg.last_listener_query_interval,
        cfg.last_listener_query_count,
    ));
    let down = Downstream { socket: &mld_socket, ifindex: down_index, link_local: down_ll };
    let upstream_if = args.upstream.clone();
    let rpf = kernel_route;
    let mut router = Router::new(cfg, Instant::now());
    let mut buf = vec![0u8; 65_536];
    while !signals::stop_requested() {
        let now = Instant::now();
        if router.poll_timeout() <= now {
            router.handle_timeout(now, &rpf, &upstream_if);
        }
        drain(&mut router, &pim_socket, up_index, &down, &mut forwarding);
        let wait = router.poll_timeout().saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
        let ready = match poll_readable([&pim_socket, &mld_socket], wait) {
            Ok(ready) => ready,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("poll"),
        };
        if ready[0] {
            loop {
                match mcast_mroute::pim::recv_pim_v6(&pim_socket, &mut buf) {
                    Ok(d) => {
                        let IpAddr::V6(src) = d.src else { continue };
                        let payload = d.payload.to_vec();
                        router.handle_pim(src, &payload, Instant::now(), &rpf, &upstream_if);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log_line(&format!("reading the PIM6 socket: {e}"));
                        break;
                    }
                }
            }
        }
        if ready[1] {
            loop {
                // The receive helper of the PIM socket works for any raw IPv6 socket: the
                // payload (here the ICMPv6 message), the source, and the destination and
                // arrival interface from IPV6_PKTINFO.
                match mcast_mroute::pim::recv_pim_v6(&mld_socket, &mut buf) {
                    Ok(d) => {
                        let (IpAddr::V6(src), IpAddr::V6(dst)) = (d.src, d.dst) else { continue };
                        let payload = d.payload.to_vec();
                        router.handle_mld(src, dst, &payload, Instant::now(), &rpf, &upstream_if);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log_line(&format!("reading the MLD socket: {e}"));
                        break;
                    }
                }
            }
        }
    }
    log_line("stopping: Prunes, goodbye Hello, MFC6 entries removed");
    router.shutdown();
    drain(&mut router, &pim_socket, up_index, &down, &mut forwarding);
    Ok(())
}

/// Waits up to `wait` for either socket to become readable.
fn poll_readable(sockets: [&Socket; 2], wait: Duration) -> std::io::Result<[bool; 2]> {
    use std::os::fd::AsRawFd;
    let mut fds = sockets.map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 });
    let timeout = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a live array of two initialised pollfd structs and its exact length.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fds.map(|f| f.revents & (libc::POLLIN | libc::POLLERR) != 0))
}

/// The downstream side of the I/O: the MLD socket, its interface and link-local address.
struct Downstream<'a> {
    socket: &'a Socket,
    ifindex: u32,
    link_local: Ipv6Addr,
}

/// Sends one MLD message to `dst` from `source`, the interface's link-local address: RFC 3810
/// §5.1.14 wants queries from a link-local source, and hosts discard others. The kernel
/// would pick a global source for a query to a global-scope group, and binding the raw socket
/// to the address would stop it from hearing reports to ff02::16, so the source goes in an
/// IPV6_PKTINFO control message (RFC 3542 §6.1).
fn send_mld(socket: &Socket, message: &[u8], dst: Ipv6Addr, ifindex: u32, source: Ipv6Addr) -> std::io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrIn6, sendmsg};
    use std::os::fd::AsRawFd;
    let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: source.octets() }, ipi6_ifindex: ifindex };
    let to = SockaddrIn6::from(std::net::SocketAddrV6::new(dst, 0, 0, ifindex));
    let iov = [std::io::IoSlice::new(message)];
    sendmsg(socket.as_raw_fd(), &iov, &[ControlMessage::Ipv6PacketInfo(&info)], MsgFlags::empty(), Some(&to))
        .map_err(std::io::Error::from)
}

fn drain(router: &mut Router, pim_socket: &Socket, up_index: u32, down: &Downstream<'_>, forwarding: &mut Forwarding) {
    while let Some(action) = router.poll_action() {
        match action {
            Action::SendPim(bytes) => {
                if let Err(e) = mcast_mroute::pim::send_pim_v6(pim_socket, &bytes, up_index) {
                    log_line(&format!("sending PIM6: {e}"));
                }
            }
            Action::SendMld { dst, repr } => {
                // The kernel overwrites the checksum (ICMPv6 raw sockets always checksum), so
                // the source given here only has to be some address.
                let mut out = vec![0u8; repr.buffer_len()];
                if let Err(e) = repr.emit(&mut out, &Ipv6Addr::UNSPECIFIED, &dst) {
                    log_line(&format!("cannot encode an MLD query: {e}"));
                    continue;
                }
                match send_mld(down.socket, &out, dst, down.ifindex, down.link_local) {
                    Ok(_) => log_line(&format!("MLD {} to {dst}", describe_query(&repr))),
                    Err(e) => log_line(&format!("sending MLD to {dst}: {e}")),
                }
            }
            Action::SetMfc { sg, forward } => forwarding.set(sg, forward),
            Action::Log(text) => log_line(&text),
        }
    }
}

fn describe_query(repr: &mld::Repr) -> String {
    match repr {
        mld::Repr::QueryV2(q) if q.group.is_unspecified() => "General Query".to_owned(),
        mld::Repr::QueryV2(q) => format!("Multicast Address and Source Specific Query {} {:?}", q.group, q.sources),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcast_wire::mld::ReportV2;

    const S: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
    const G: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);
    const HOST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11);
    const ING_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    const ING_GLOBAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 1, 0, 0, 0, 2);

    fn cfg() -> Config {
        Config {
            hello_period: Duration::from_secs(30),
            join_prune_interval: Duration::from_secs(60),
            query_interval: Duration::from_secs(125),
            query_response_interval: Duration::from_secs(10),
            robustness: 2,
            last_listener_query_interval: Duration::from_secs(1),
            last_listener_query_count: 2,
            generation_id: 7,
        }
    }

    fn rpf(s: Ipv6Addr) -> Option<RouteHop> {
        (s.segments()[..3] == [0x2001, 0xdb8, 0x100])
            .then(|| RouteHop { gateway: ING_GLOBAL, device: "to-ing".to_owned() })
    }

    fn drain(r: &mut Router) -> Vec<Action> {
        std::iter::from_fn(|| r.poll_action()).collect()
    }

    fn report(kind: RecordType, sources: &[Ipv6Addr]) -> Vec<u8> {
        let repr = mld::Repr::ReportV2(ReportV2 {
            reserved: 0,
            records: vec![AddressRecord { record_type: kind, group: G, sources: sources.to_vec(), aux_data: vec![] }],
            additional_data: vec![],
        });
        let mut out = vec![0; repr.buffer_len()];
        repr.emit(&mut out, &HOST, &mld::ALL_MLDV2_ROUTERS).unwrap();
        out
    }

    fn hello_from_ing(genid: u32, holdtime: u16) -> Vec<u8> {
        pim::Repr::hello(vec![
            HelloOption::Holdtime(holdtime),
            HelloOption::GenerationId(genid),
            HelloOption::AddressList(vec![IpAddr::V6(ING_GLOBAL)]),
        ])
        .to_bytes(ChecksumContext::Unchecked)
        .unwrap()
    }

    /// The (joins, prunes, upstream neighbour) of every Join/Prune sent.
    fn join_prunes(actions: &[Action]) -> Vec<(Vec<Sg>, Vec<Sg>, IpAddr)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SendPim(bytes) => {
                    let p = pim::Packet::new_checked(&bytes[..]).unwrap();
                    let repr = pim::Repr::parse(&p, ChecksumContext::Unchecked).unwrap();
                    let jp = repr.as_join_prune()?.clone();
                    let mut joins = Vec::new();
                    let mut prunes = Vec::new();
                    for g in &jp.groups {
                        let IpAddr::V6(group) = g.group.addr else { panic!() };
                        for s in &g.joins {
                            let IpAddr::V6(src) = s.addr else { panic!() };
                            assert!(s.sparse && !s.wildcard && !s.rpt, "an (S,G) entry: S=1 W=0 R=0");
                            joins.push((src, group));
                        }
                        for s in &g.prunes {
                            let IpAddr::V6(src) = s.addr else { panic!() };
                            prunes.push((src, group));
                        }
                    }
                    Some((joins, prunes, jp.upstream_neighbor.0))
                }
                _ => None,
            })
            .collect()
    }

    fn started(now: Instant) -> Router {
        let mut r = Router::new(cfg(), now);
        r.handle_timeout(now, &rpf, "to-ing");
        let actions = drain(&mut r);
        assert!(actions.iter().any(|a| matches!(a, Action::SendPim(_))), "Hello at start");
        assert!(
            actions.iter().any(|a| matches!(a, Action::SendMld { dst, .. } if *dst == mld::ALL_NODES)),
            "General Query at start"
        );
        r
    }

    #[test]
    fn first_listener_joins_toward_the_neighbour_owning_the_route_gateway() {
        let t0 = Instant::now();
        let mut r = started(t0);
        // A listener before any neighbour: MFC6 entry, but no Join yet.
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::AllowNewSources, &[S]), t0, &rpf, "to-ing");
        let a = drain(&mut r);
        assert!(a.contains(&Action::SetMfc { sg: (S, G), forward: true }));
        assert!(join_prunes(&a).is_empty());
        assert!(a.iter().any(|a| matches!(a, Action::Log(l) if l.contains("no PIM6 neighbour owns the gateway"))));
        // pimwatch's Hello (link-local source, its global in the Address List): triggered
        // Hello, then the Join to its link-local address.
        r.handle_pim(ING_LL, &hello_from_ing(1, 105), t0, &rpf, "to-ing");
        let a = drain(&mut r);
        let hello_at = a.iter().position(|a| matches!(a, Action::SendPim(b) if b[0] & 0x0f == 0)).unwrap();
        let jps = join_prunes(&a);
        assert_eq!(jps, vec![(vec![(S, G)], vec![], IpAddr::V6(ING_LL))]);
        let join_at = a.iter().rposition(|a| matches!(a, Action::SendPim(_))).unwrap();
        assert!(hello_at < join_at, "the Hello goes first");
        assert_eq!(r.upstream().get(&(S, G)), Some(&ING_LL));
    }

    #[test]
    fn block_queries_then_prunes_after_the_last_listener_query_time() {
        let t0 = Instant::now();
        let mut r = started(t0);
        r.handle_pim(ING_LL, &hello_from_ing(1, 105), t0, &rpf, "to-ing");
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::ModeIsInclude, &[S]), t0, &rpf, "to-ing");
        drain(&mut r);
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::BlockOldSources, &[S]), t0, &rpf, "to-ing");
        r.handle_timeout(t0, &rpf, "to-ing");
        let a = drain(&mut r);
        let queries: Vec<_> = a
            .iter()
            .filter_map(|a| match a {
                Action::SendMld { dst, repr: mld::Repr::QueryV2(q) } => Some((*dst, q.group, q.sources.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(queries, vec![(G, G, vec![S])], "one source-specific query to the group at once");
        assert!(join_prunes(&a).is_empty(), "no Prune before LLQT");
        // The second query one LLQI later, the Prune at LLQT (2 s).
        r.handle_timeout(t0 + Duration::from_secs(1), &rpf, "to-ing");
        let a = drain(&mut r);
        assert!(a.iter().any(|a| matches!(a, Action::SendMld { dst, .. } if *dst == G)));
        assert!(join_prunes(&a).is_empty());
        assert!(r.poll_timeout() <= t0 + Duration::from_secs(2));
        r.handle_timeout(t0 + Duration::from_secs(2), &rpf, "to-ing");
        let a = drain(&mut r);
        assert_eq!(join_prunes(&a), vec![(vec![], vec![(S, G)], IpAddr::V6(ING_LL))]);
        assert!(a.contains(&Action::SetMfc { sg: (S, G), forward: false }));
        assert!(r.upstream().is_empty());
    }

    #[test]
    fn a_retransmitted_block_does_not_restart_the_queries() {
        let t0 = Instant::now();
        let mut r = started(t0);
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::ModeIsInclude, &[S]), t0, &rpf, "to-ing");
        let block = report(RecordType::BlockOldSources, &[S]);
        let mut queries = 0;
        for ms in [0, 700, 1000, 1400, 2000] {
            let now = t0 + Duration::from_millis(ms);
            if ms == 700 {
                r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &block, now, &rpf, "to-ing");
            }
            if ms == 0 {
                r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &block, now, &rpf, "to-ing");
            }
            r.handle_timeout(now, &rpf, "to-ing");
            queries += drain(&mut r).iter().filter(|a| matches!(a, Action::SendMld { dst, .. } if *dst == G)).count();
        }
        assert_eq!(queries, 2, "Last Listener Query Count queries, not more");
        assert_eq!(r.listeners().count(), 0, "gone at LLQT after the first BLOCK");
    }

    #[test]
    fn a_report_during_the_queries_keeps_the_channel() {
        let t0 = Instant::now();
        let mut r = started(t0);
        r.handle_pim(ING_LL, &hello_from_ing(1, 105), t0, &rpf, "to-ing");
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::AllowNewSources, &[S]), t0, &rpf, "to-ing");
        // Another host leaves, ours answers the query with IS_IN.
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::BlockOldSources, &[S]), t0, &rpf, "to-ing");
        let t1 = t0 + Duration::from_millis(500);
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::ModeIsInclude, &[S]), t1, &rpf, "to-ing");
        drain(&mut r);
        r.handle_timeout(t0 + Duration::from_secs(3), &rpf, "to-ing");
        let a = drain(&mut r);
        assert!(join_prunes(&a).is_empty());
        assert!(r.listeners().any(|sg| *sg == (S, G)));
    }

    #[test]
    fn an_answer_after_the_last_query_still_keeps_the_channel() {
        let t0 = Instant::now();
        let mut r = started(t0);
        r.handle_pim(ING_LL, &hello_from_ing(1, 105), t0, &rpf, "to-ing");
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::AllowNewSources, &[S]), t0, &rpf, "to-ing");
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::BlockOldSources, &[S]), t0, &rpf, "to-ing");
        r.handle_timeout(t0, &rpf, "to-ing");
        let t1 = t0 + Duration::from_secs(1);
        r.handle_timeout(t1, &rpf, "to-ing");
        drain(&mut r);
        // Both queries are out; nothing more to send, so the next timer is the source timer.
        assert_eq!(r.poll_timeout(), t0 + Duration::from_secs(2));
        // The answer to the first query arrives just after the second was sent.
        let t2 = t1 + Duration::from_millis(20);
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::ModeIsInclude, &[S]), t2, &rpf, "to-ing");
        let a = drain(&mut r);
        assert!(
            a.iter().any(|a| matches!(a, Action::Log(l) if l.contains("still has a listener"))),
            "the answer is recognised as one: {a:?}"
        );
        r.handle_timeout(t0 + Duration::from_secs(3), &rpf, "to-ing");
        let a = drain(&mut r);
        assert!(join_prunes(&a).is_empty());
        assert!(!a.iter().any(|a| matches!(a, Action::SendMld { dst, .. } if *dst == G)), "no more queries");
        assert!(r.listeners().any(|sg| *sg == (S, G)));
    }

    #[test]
    fn to_in_with_an_empty_list_is_a_leave_and_exclude_is_ignored() {
        let t0 = Instant::now();
        let mut r = started(t0);
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::ChangeToExcludeMode, &[]), t0, &rpf, "to-ing");
        assert_eq!(r.listeners().count(), 0, "EXCLUDE for an SSM group is not a join");
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::ChangeToIncludeMode, &[S]), t0, &rpf, "to-ing");
        assert_eq!(r.listeners().count(), 1);
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::ChangeToIncludeMode, &[]), t0, &rpf, "to-ing");
        r.handle_timeout(t0 + Duration::from_secs(2), &rpf, "to-ing");
        r.handle_timeout(t0 + Duration::from_secs(3), &rpf, "to-ing");
        assert_eq!(r.listeners().count(), 0);
    }

    #[test]
    fn periodic_refresh_restart_and_neighbour_loss() {
        let t0 = Instant::now();
        let mut r = started(t0);
        r.handle_pim(ING_LL, &hello_from_ing(1, 105), t0, &rpf, "to-ing");
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::AllowNewSources, &[S]), t0, &rpf, "to-ing");
        drain(&mut r);
        // The refresh after t_periodic, holdtime 210.
        let t1 = t0 + Duration::from_secs(60);
        r.handle_pim(ING_LL, &hello_from_ing(1, 105), t1, &rpf, "to-ing");
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::ModeIsInclude, &[S]), t1, &rpf, "to-ing");
        r.handle_timeout(t1, &rpf, "to-ing");
        let a = drain(&mut r);
        assert_eq!(join_prunes(&a), vec![(vec![(S, G)], vec![], IpAddr::V6(ING_LL))]);
        let jp = a.iter().find_map(|a| match a {
            Action::SendPim(b) if b[0] & 0x0f == 3 => Some(b.clone()),
            _ => None,
        });
        let jp = pim::JoinPrune::parse(&jp.unwrap()[4..]).unwrap();
        assert_eq!(jp.holdtime, 210);
        // A restart (new GenID): Hello and Join at once.
        r.handle_pim(ING_LL, &hello_from_ing(2, 105), t1, &rpf, "to-ing");
        let a = drain(&mut r);
        assert_eq!(join_prunes(&a).len(), 1);
        // The neighbour says goodbye: the channel waits for a new one.
        r.handle_pim(ING_LL, &hello_from_ing(2, 0), t1, &rpf, "to-ing");
        drain(&mut r);
        assert!(r.upstream().is_empty());
        assert!(r.neighbors().is_empty());
    }

    #[test]
    fn shutdown_prunes_and_says_goodbye() {
        let t0 = Instant::now();
        let mut r = started(t0);
        r.handle_pim(ING_LL, &hello_from_ing(1, 105), t0, &rpf, "to-ing");
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &report(RecordType::AllowNewSources, &[S]), t0, &rpf, "to-ing");
        drain(&mut r);
        r.shutdown();
        let a = drain(&mut r);
        assert_eq!(join_prunes(&a), vec![(vec![], vec![(S, G)], IpAddr::V6(ING_LL))]);
        let hello = a.iter().rev().find_map(|a| match a {
            Action::SendPim(b) if b[0] & 0x0f == 0 => Some(b.clone()),
            _ => None,
        });
        let hello = pim::Hello::parse(&hello.unwrap()[4..]).unwrap();
        assert_eq!(hello.holdtime(), Some(0));
        assert!(a.contains(&Action::SetMfc { sg: (S, G), forward: false }));
    }

    #[test]
    fn bad_input_is_dropped_without_panicking() {
        let t0 = Instant::now();
        let mut r = started(t0);
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 3) as u8).collect();
            r.handle_pim(ING_LL, &junk, t0, &rpf, "to-ing");
            let mut mldish = junk.clone();
            if let Some(b) = mldish.first_mut() {
                *b = mld::TYPE_V2_REPORT;
            }
            r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &mldish, t0, &rpf, "to-ing");
        }
        // A report with a wrong checksum (from another source address) is dropped.
        let bytes = report(RecordType::AllowNewSources, &[S]);
        r.handle_mld(ING_LL, mld::ALL_MLDV2_ROUTERS, &bytes, t0, &rpf, "to-ing");
        assert_eq!(r.listeners().count(), 0);
        // A Hello from a global address is not a neighbour.
        r.handle_pim(ING_GLOBAL, &hello_from_ing(1, 105), t0, &rpf, "to-ing");
        assert!(r.neighbors().is_empty());
    }

    #[test]
    fn rpf_elsewhere_or_on_link_sends_no_join() {
        let t0 = Instant::now();
        let mut r = started(t0);
        r.handle_pim(ING_LL, &hello_from_ing(1, 105), t0, &rpf, "to-ing");
        drain(&mut r);
        let other = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 1);
        let wrong_if = |_: Ipv6Addr| Some(RouteHop { gateway: ING_GLOBAL, device: "eth9".to_owned() });
        let bytes = {
            let repr = mld::Repr::ReportV2(ReportV2 {
                reserved: 0,
                records: vec![AddressRecord {
                    record_type: RecordType::AllowNewSources,
                    group: G,
                    sources: vec![other],
                    aux_data: vec![],
                }],
                additional_data: vec![],
            });
            let mut out = vec![0; repr.buffer_len()];
            repr.emit(&mut out, &HOST, &mld::ALL_MLDV2_ROUTERS).unwrap();
            out
        };
        r.handle_mld(HOST, mld::ALL_MLDV2_ROUTERS, &bytes, t0, &wrong_if, "to-ing");
        let a = drain(&mut r);
        assert!(join_prunes(&a).is_empty());
        assert!(a.iter().any(|a| matches!(a, Action::Log(l) if l.contains("leaves through eth9"))));
    }

    #[test]
    fn ssm_range_and_timers() {
        assert!(is_ssm(&G));
        assert!(is_ssm(&"ff35::1".parse().unwrap()));
        assert!(!is_ssm(&"ff3e:1::1".parse().unwrap()));
        assert!(!is_ssm(&"ff0e::1".parse().unwrap()));
        assert_eq!(cfg().mali(), Duration::from_secs(260));
        assert_eq!(cfg().llqt(), Duration::from_secs(2));
        assert_eq!(cfg().join_prune_holdtime(), 210);
        assert_eq!(cfg().hello_holdtime(), 105);
    }

    #[test]
    fn route_lookup_takes_the_longest_prefix() {
        let table = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db8000200000000000000000001 00000400 00000001 00000000 00000003 up0
20010db8010000000000000000000000 30 00000000000000000000000000000000 00 20010db8000900010000000000000002 00000400 00000001 00000000 00000003 to-ing
20010db8000900010000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 to-ing
20010db8010000000000000000000010 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 00200200 lo
garbage line
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 to-ing
";
        assert_eq!(route_lookup(table, S), Some(RouteHop { gateway: ING_GLOBAL, device: "to-ing".to_owned() }));
        assert_eq!(
            route_lookup(table, "2001:db8:9:1::7".parse().unwrap()),
            Some(RouteHop { gateway: Ipv6Addr::UNSPECIFIED, device: "to-ing".to_owned() })
        );
        assert_eq!(route_lookup(table, "2001:db8:77::1".parse().unwrap()).unwrap().device, "up0");
        assert_eq!(route_lookup("", S), None);
    }
}
