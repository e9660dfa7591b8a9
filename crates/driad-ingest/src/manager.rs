//! The daemon's policy, sans-IO: which (S,G) goes through which tunnel.
//!
//! The [`Manager`] takes joinfile snapshots, DNS answers, gateway events and tunnel packet
//! counters, all with the current time, and emits [`Command`]s for the AMT gateway (add or
//! remove a tunnel, join or leave an (S,G)) and the sources to look up. It owns the
//! [`DiscoveryState`] (relay choice, caching, hold-downs) and keeps, per source, the (S,G)s
//! wanted and the relay they are joined on, and per relay the tunnel and its (S,G)s.
//!
//! * **Diff.** Each joinfile snapshot is compared with the previous one. Additions are handled
//!   before removals, so `{S,G1}` → `{S,G2}` moves the source within its tunnel instead of
//!   tearing the tunnel down and looking the source up again.
//! * **Join.** An (S,G) of a source whose relay is known is joined at once on that relay's
//!   tunnel; a new source is `want`ed and its (S,G)s are joined when discovery chooses a relay.
//!   Discovery of one source never delays another: lookups run concurrently in the driver.
//! * **Tunnels.** One per relay address, shared by every source that chose it; its (S,G)s are
//!   the reference count. The first source decides the D bit: D = 1 → Requests straight to the
//!   relay (`discovery: None`), D = 0 → Relay Discovery to the relay first (RFC 8777 §4.2.2).
//!   A tunnel whose last (S,G) leaves is removed at once (BLOCK records and a Teardown go out).
//! * **Leave.** A source whose last (S,G) leaves is forgotten (its answer too): the next (S,G)
//!   of that source looks the relay up again, like the original's "sticky while live" mapping.
//! * **Failure.** A relay failure (no Advertisement or Query after the gateway's retries, the
//!   L flag, or silence on a tunnel that carried data) holds the relay down for every source
//!   and moves the affected sources to their next candidate (RFC 8777 §3.3). When no source of
//!   the tunnel has another usable candidate, the relay is *not* held down: the tunnel stays
//!   and the gateway keeps retrying with backoff, so a relay that comes back is used again as
//!   soon as it answers instead of after the hold-down.
//! * **No relay.** Type 0, no records, every candidate held down, DNS failures: the source's
//!   (S,G)s leave their tunnel, the reason is logged once per change (the source, the reason,
//!   when DNS is asked again) and shown in status; discovery retries per its policy.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mcast_amt::gateway::Event as GatewayEvent;
use mcast_driad::{Answer, Chosen, DiscoveryConfig, DiscoveryState, Event as DiscoveryEvent, LookupError};
use mcast_wire::SourceGroup;
use serde::Serialize;
use tracing::{debug, info, warn};

/// What the gateway is told to do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Open a tunnel; `discovery: None` sends Requests straight to `relay` (D = 1).
    AddTunnel { relay: IpAddr, discovery: Option<IpAddr> },
    /// Close a tunnel (BLOCK records for its (S,G)s and a Teardown).
    RemoveTunnel { relay: IpAddr },
    /// Join an (S,G) on a tunnel.
    Join { relay: IpAddr, sg: SourceGroup },
    /// Leave an (S,G) on a tunnel that keeps other (S,G)s.
    Leave { relay: IpAddr, sg: SourceGroup },
}

/// Policy knobs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Relay discovery (hold-down, caching bounds, backoff).
    pub discovery: DiscoveryConfig,
    /// A tunnel that has carried data and then receives none for this long is a relay
    /// failure (RFC 8777 §3.3.1, initial no-traffic timeout 4 s). Measured from the last
    /// packet by [`Manager::on_tunnel_packets`]; `None` leaves it to the gateway's own
    /// `NoTraffic` event.
    pub no_traffic: Option<Duration>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig { discovery: DiscoveryConfig::default(), no_traffic: Some(Duration::from_secs(4)) }
    }
}

/// Counters for status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Lookups answered with relays to use.
    pub lookups_with_relays: u64,
    /// Lookups answered NXDOMAIN, NODATA or with nothing usable.
    pub lookups_no_records: u64,
    /// Lookups answered with a type-0 record ("no relay").
    pub lookups_no_relay: u64,
    /// Lookups that failed (timeout, SERVFAIL, ...).
    pub lookups_failed: u64,
    /// Tunnels opened.
    pub tunnels_added: u64,
    /// Tunnels closed.
    pub tunnels_removed: u64,
    /// Relays reported failed (by the gateway or the no-traffic check).
    pub relay_failures: u64,
    /// Sources moved from one relay to another.
    pub failovers: u64,
}

#[derive(Debug)]
struct SourceEntry {
    /// The (S,G)s of this source in the joinfile.
    sgs: BTreeSet<SourceGroup>,
    /// The relay whose tunnel carries them.
    attached: Option<IpAddr>,
    /// The last problem logged, so each is logged once per change.
    problem: Option<String>,
    since: Instant,
}

/// Where a tunnel is, as far as the manager knows (the gateway's status has the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelPhase {
    /// Added; no Membership Query yet.
    Connecting,
    /// A Query arrived (RFC 8777 §3.2.3 "connected").
    Established,
    /// The relay failed, but no source has another relay to go to: the gateway keeps trying.
    Failing,
}

#[derive(Debug)]
struct TunnelEntry {
    discovery: Option<IpAddr>,
    sgs: BTreeSet<SourceGroup>,
    phase: TunnelPhase,
    failure: Option<String>,
    added: Instant,
    established_after: Option<Duration>,
    /// Data packets counted by the gateway, the last time they changed, and whether any came.
    packets: u64,
    last_data: Instant,
    had_data: bool,
    silence_reported: bool,
}

/// One source, for status: discovery's view plus the (S,G)s and the tunnel.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// Discovery's view (records, candidates, chosen relay, timers).
    #[serde(flatten)]
    pub discovery: mcast_driad::SourceStatus,
    /// The (S,G)s of this source in the joinfile.
    pub sgs: Vec<SourceGroup>,
    /// The relay whose tunnel carries them.
    pub joined_on: Option<IpAddr>,
    /// Why the source has no relay, if it has none.
    pub problem: Option<String>,
    /// Seconds since the source appeared in the joinfile.
    pub age_secs: f64,
}

/// One tunnel, as the manager sees it (the daemon adds the gateway's counters).
#[derive(Debug, Clone, Serialize)]
pub struct TunnelReport {
    /// The relay address (tunnel key).
    pub relay: IpAddr,
    /// Where Relay Discovery goes (`None`: D = 1, Requests straight to the relay).
    pub discovery: Option<IpAddr>,
    /// Phase.
    pub phase: TunnelPhase,
    /// The last failure, while failing.
    pub failure: Option<String>,
    /// The (S,G)s joined.
    pub sgs: Vec<SourceGroup>,
    /// The sources using it.
    pub sources: Vec<IpAddr>,
    /// Seconds since it was added.
    pub age_secs: f64,
    /// Milliseconds from adding it to the first Membership Query.
    pub established_after_ms: Option<f64>,
    /// Seconds since the last data packet (after the first).
    pub silent_secs: Option<f64>,
}

/// Everything the manager knows, for status.
#[derive(Debug, Clone, Serialize)]
pub struct ManagerStatus {
    /// (S,G)s in the joinfile.
    pub wanted_sgs: usize,
    /// Per source.
    pub sources: Vec<SourceReport>,
    /// Per tunnel.
    pub tunnels: Vec<TunnelReport>,
    /// Relays held down.
    pub held_down: Vec<mcast_driad::HeldDownStatus>,
    /// Counters.
    pub counters: Counters,
}

/// Counts for the `summary` control command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// (S,G)s in the joinfile.
    pub wanted_sgs: usize,
    /// Sources wanted.
    pub sources: usize,
    /// Sources joined on a tunnel.
    pub sources_attached: usize,
    /// Tunnels.
    pub tunnels: usize,
    /// Tunnels by phase.
    pub connecting: usize,
    /// See `connecting`.
    pub established: usize,
    /// See `connecting`.
    pub failing: usize,
    /// (S,G)s joined over all tunnels.
    pub tunnel_sgs: usize,
}

/// The policy; see the module documentation. Drive it like [`DiscoveryState`]: after every
/// input, drain [`poll_lookup`](Self::poll_lookup) and [`poll_command`](Self::poll_command),
/// and call [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct Manager {
    config: ManagerConfig,
    discovery: DiscoveryState,
    wanted: BTreeSet<SourceGroup>,
    sources: BTreeMap<IpAddr, SourceEntry>,
    tunnels: BTreeMap<IpAddr, TunnelEntry>,
    commands: VecDeque<Command>,
    counters: Counters,
}

impl Manager {
    /// A manager with nothing wanted; `seed` drives the random choices among equal relays.
    pub fn new(config: ManagerConfig, seed: u64) -> Manager {
        Manager {
            discovery: DiscoveryState::new(config.discovery.clone(), seed),
            config,
            wanted: BTreeSet::new(),
            sources: BTreeMap::new(),
            tunnels: BTreeMap::new(),
            commands: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// New policy knobs (a reload): applies to the next hold-down, lookup and no-traffic
    /// check; tunnels and sources stay as they are.
    pub fn set_config(&mut self, config: ManagerConfig) {
        self.discovery.set_config(config.discovery.clone());
        self.config = config;
    }

    /// The (S,G)s of the last joinfile snapshot.
    pub fn wanted(&self) -> &BTreeSet<SourceGroup> {
        &self.wanted
    }

    /// The relays with a tunnel.
    pub fn tunnels(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.tunnels.keys().copied()
    }

    /// The (S,G)s joined on the tunnel to `relay`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn tunnel_sgs(&self, relay: IpAddr) -> Option<&BTreeSet<SourceGroup>> {
        self.tunnels.get(&relay).map(|t| &t.sgs)
    }

    /// The relay whose tunnel carries `source`'s (S,G)s.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn joined_on(&self, source: IpAddr) -> Option<IpAddr> {
        self.sources.get(&source).and_then(|s| s.attached)
    }

    /// The discovery state (for inspection).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn discovery(&self) -> &DiscoveryState {
        &self.discovery
    }

    /// The next gateway command.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next source to look up now (see [`DiscoveryState::poll_lookup`]).
    pub fn poll_lookup(&mut self, now: Instant) -> Option<IpAddr> {
        self.discovery.poll_lookup(now)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.discovery.poll_timeout()
    }

    /// Timers: hold-downs ending. (Lookups falling due come out of `poll_lookup`.)
    pub fn handle_timeout(&mut self, now: Instant) {
        self.discovery.handle_timeout(now);
        self.drain_discovery(now);
    }

    /// A new joinfile snapshot: joins what was added, leaves what was removed.
    pub fn set_joinfile(&mut self, sgs: BTreeSet<SourceGroup>, now: Instant) {
        let added: Vec<SourceGroup> = sgs.difference(&self.wanted).copied().collect();
        let removed: Vec<SourceGroup> = self.wanted.difference(&sgs).copied().collect();
        if added.is_empty() && removed.is_empty() {
            return;
        }
        debug!(added = added.len(), removed = removed.len(), total = sgs.len(), "joinfile changed");
        self.wanted = sgs;
        for sg in added {
            self.add_sg(sg, now);
        }
        for sg in removed {
            self.remove_sg(sg);
        }
        self.drain_discovery(now);
    }

    fn add_sg(&mut self, sg: SourceGroup, now: Instant) {
        let source = sg.source;
        let mut new = false;
        let entry = self.sources.entry(source).or_insert_with(|| {
            new = true;
            SourceEntry { sgs: BTreeSet::new(), attached: None, problem: None, since: now }
        });
        entry.sgs.insert(sg);
        if new {
            info!(%source, group = %sg.group, "new source: looking up its AMT relay");
            self.discovery.want(source);
            return;
        }
        if let Some(relay) = entry.attached {
            if let Some(tunnel) = self.tunnels.get_mut(&relay) {
                tunnel.sgs.insert(sg);
                self.commands.push_back(Command::Join { relay, sg });
                info!(%source, group = %sg.group, %relay, "(S,G) joined");
            }
        } else if let Some(chosen) = self.discovery.choice(source) {
            self.attach(source, chosen, now);
        } else {
            debug!(%source, group = %sg.group, "(S,G) waits for its source's relay");
        }
    }

    fn remove_sg(&mut self, sg: SourceGroup) {
        let source = sg.source;
        let Some(entry) = self.sources.get_mut(&source) else { return };
        entry.sgs.remove(&sg);
        let attached = entry.attached;
        let last = entry.sgs.is_empty();
        if last {
            self.sources.remove(&source);
            self.discovery.forget(source);
        }
        let Some(relay) = attached else {
            info!(%source, group = %sg.group, "(S,G) left (it had no relay)");
            return;
        };
        let Some(tunnel) = self.tunnels.get_mut(&relay) else { return };
        tunnel.sgs.remove(&sg);
        if tunnel.sgs.is_empty() {
            info!(%source, group = %sg.group, %relay, "(S,G) left; last one on the tunnel: tearing it down");
            self.remove_tunnel(relay);
        } else {
            info!(%source, group = %sg.group, %relay, "(S,G) left");
            self.commands.push_back(Command::Leave { relay, sg });
        }
    }

    fn remove_tunnel(&mut self, relay: IpAddr) {
        if self.tunnels.remove(&relay).is_some() {
            self.counters.tunnels_removed += 1;
            self.commands.push_back(Command::RemoveTunnel { relay });
        }
    }

    /// Joins every (S,G) of `source` on `chosen`'s tunnel, opening it if needed.
    fn attach(&mut self, source: IpAddr, chosen: Chosen, now: Instant) {
        let Some(entry) = self.sources.get_mut(&source) else { return };
        if entry.attached.is_some() {
            return;
        }
        let relay = chosen.relay;
        entry.attached = Some(relay);
        entry.problem = None;
        let sgs: Vec<SourceGroup> = entry.sgs.iter().copied().collect();
        if let std::collections::btree_map::Entry::Vacant(slot) = self.tunnels.entry(relay) {
            let discovery = if chosen.discovery_optional { None } else { Some(relay) };
            slot.insert(TunnelEntry {
                discovery,
                sgs: BTreeSet::new(),
                phase: TunnelPhase::Connecting,
                failure: None,
                added: now,
                established_after: None,
                packets: 0,
                last_data: now,
                had_data: false,
                silence_reported: false,
            });
            self.counters.tunnels_added += 1;
            self.commands.push_back(Command::AddTunnel { relay, discovery });
            info!(%relay, discovery_optional = chosen.discovery_optional, "opening a tunnel to the relay");
        }
        if let Some(tunnel) = self.tunnels.get_mut(&relay) {
            for sg in &sgs {
                tunnel.sgs.insert(*sg);
                self.commands.push_back(Command::Join { relay, sg: *sg });
            }
        }
        info!(%source, %relay, sgs = sgs.len(), "source joined through the relay");
    }

    /// Leaves every (S,G) of `source` on its tunnel (removing the tunnel if that empties it).
    fn detach(&mut self, source: IpAddr) -> Option<IpAddr> {
        let entry = self.sources.get_mut(&source)?;
        let relay = entry.attached.take()?;
        let sgs: Vec<SourceGroup> = entry.sgs.iter().copied().collect();
        let tunnel = self.tunnels.get_mut(&relay)?;
        for sg in &sgs {
            tunnel.sgs.remove(sg);
        }
        if tunnel.sgs.is_empty() {
            self.remove_tunnel(relay);
        } else {
            for sg in sgs {
                self.commands.push_back(Command::Leave { relay, sg });
            }
        }
        Some(relay)
    }

    /// The answer to a lookup that [`poll_lookup`](Self::poll_lookup) handed out.
    pub fn on_answer(&mut self, source: IpAddr, result: Result<Answer, LookupError>, now: Instant) {
        match &result {
            Ok(a) if a.no_relay => self.counters.lookups_no_relay += 1,
            Ok(a) if a.candidates.is_empty() => self.counters.lookups_no_records += 1,
            Ok(_) => self.counters.lookups_with_relays += 1,
            Err(_) => self.counters.lookups_failed += 1,
        }
        if let Ok(answer) = &result
            && self.sources.contains_key(&source)
        {
            for skipped in &answer.skipped {
                warn!(%source, record = %skipped, "malformed AMTRELAY record skipped");
            }
            debug!(
                %source,
                records = answer.records.len(),
                candidates = answer.candidates.len(),
                ttl = answer.ttl.as_secs(),
                "AMTRELAY answer"
            );
        }
        self.discovery.on_answer(source, result, now);
        self.drain_discovery(now);
    }

    /// Logs a problem of `source` at warn level when it differs from the last one, else at
    /// debug level.
    fn problem(&mut self, source: IpAddr, key: String, message: &str, detail: &str) {
        let Some(entry) = self.sources.get_mut(&source) else { return };
        if entry.problem.as_deref() == Some(key.as_str()) {
            debug!(%source, detail, "{message} (again)");
        } else {
            warn!(%source, detail, "{message}");
            entry.problem = Some(key);
        }
    }

    /// DNS says `source` has no relay to use (type 0, or no usable record) until `until`: it
    /// leaves its tunnel, if any, and the problem is logged under `key`.
    fn no_tunnel(&mut self, source: IpAddr, until: Instant, now: Instant, key: &str, message: &str) {
        let dropped = self.detach(source);
        let detail = format!(
            "asking DNS again in {}{}",
            secs(until.saturating_duration_since(now)),
            dropped.map(|r| format!("; left relay {r}")).unwrap_or_default()
        );
        self.problem(source, key.into(), message, &detail);
    }

    fn drain_discovery(&mut self, now: Instant) {
        while let Some(event) = self.discovery.poll_event() {
            match event {
                DiscoveryEvent::Chosen { source, chosen } => {
                    info!(
                        %source,
                        relay = %chosen.relay,
                        discovery_optional = chosen.discovery_optional,
                        "AMT relay chosen"
                    );
                    self.attach(source, chosen, now);
                }
                DiscoveryEvent::RelayChanged { source, from, to } => {
                    if from == to.relay {
                        // Only the D bit changed: the tunnel keeps the mode it was opened with.
                        info!(%source, relay = %from, discovery_optional = to.discovery_optional, "D bit changed; tunnel kept");
                        continue;
                    }
                    self.detach(source);
                    self.counters.failovers += 1;
                    warn!(%source, from = %from, to = %to.relay, "source moves to another relay");
                    self.attach(source, to, now);
                }
                DiscoveryEvent::NoRelay { source, until, .. } => self.no_tunnel(
                    source,
                    until,
                    now,
                    "no-relay",
                    "type-0 AMTRELAY record: no AMT relay for this source, not ingested",
                ),
                DiscoveryEvent::NoRecords { source, until, .. } => self.no_tunnel(
                    source,
                    until,
                    now,
                    "no-records",
                    "no usable AMTRELAY record for this source (NXDOMAIN/NODATA): no tunnel",
                ),
                DiscoveryEvent::LookupFailed { source, error, retry_at, keeping } => {
                    let detail = format!(
                        "{error}; retrying in {}{}",
                        secs(retry_at.saturating_duration_since(now)),
                        keeping.map(|r| format!("; keeping relay {r}")).unwrap_or_default()
                    );
                    self.problem(source, format!("lookup-failed: {error}"), "AMTRELAY lookup failed", &detail);
                }
                DiscoveryEvent::Unreachable { source, retry_at, .. } => {
                    let dropped = self.detach(source);
                    let detail = format!(
                        "asking DNS again in {}{}",
                        secs(retry_at.saturating_duration_since(now)),
                        dropped.map(|r| format!("; left relay {r}")).unwrap_or_default()
                    );
                    self.problem(
                        source,
                        "unreachable".into(),
                        "every AMT relay candidate of this source is held down: no tunnel",
                        &detail,
                    );
                }
            }
        }
    }

    /// An event of the AMT gateway.
    pub fn on_gateway_event(&mut self, event: &GatewayEvent, now: Instant) {
        match event {
            GatewayEvent::TunnelEstablished { relay, family } => {
                let Some(t) = self.tunnels.get_mut(relay) else { return };
                let after = now.saturating_duration_since(t.added);
                if t.established_after.is_none() {
                    t.established_after = Some(after);
                }
                let was = t.phase;
                t.phase = TunnelPhase::Established;
                t.failure = None;
                if was == TunnelPhase::Failing {
                    info!(%relay, ?family, "relay answers again: tunnel established");
                } else {
                    info!(%relay, ?family, sgs = t.sgs.len(), after = %ms(after), "tunnel established");
                }
            }
            GatewayEvent::RelayDiscovered { relay, address } => {
                debug!(%relay, %address, "relay advertised its address");
            }
            GatewayEvent::RelayFailed { relay, reason } => {
                self.relay_failure(*relay, reason.as_str(), now);
            }
            GatewayEvent::LimitReached { relay, .. } => {
                self.relay_failure(*relay, "limit", now);
            }
            GatewayEvent::NoTraffic { relay, silent_for } => {
                let Some(t) = self.tunnels.get(relay) else { return };
                if t.had_data {
                    self.relay_failure(*relay, "no-traffic", now);
                } else {
                    info!(
                        %relay,
                        silent_for = %secs(*silent_for),
                        "no data on the tunnel yet (its sources may be silent); staying on the relay"
                    );
                }
            }
            GatewayEvent::GatewayEndpointChanged { relay, old, new } => {
                info!(%relay, %old, %new, "the relay sees us at a new address");
            }
            GatewayEvent::TunnelClosed { relay, reason } => {
                // Tunnel down: the counterpart of "tunnel established" (the reason says why).
                info!(%relay, reason = reason.as_str(), "tunnel closed");
            }
        }
    }

    /// The gateway's data packet counter of the tunnel to `relay` (polled by the driver): a
    /// tunnel that carried data and then stays silent for `no_traffic` is a relay failure.
    pub fn on_tunnel_packets(&mut self, relay: IpAddr, packets: u64, now: Instant) {
        let Some(limit) = self.config.no_traffic else { return };
        let Some(t) = self.tunnels.get_mut(&relay) else { return };
        if packets != t.packets {
            t.packets = packets;
            t.last_data = now;
            t.had_data |= packets > 0;
            t.silence_reported = false;
            return;
        }
        if t.had_data && !t.silence_reported && now.saturating_duration_since(t.last_data) >= limit {
            t.silence_reported = true;
            let silent = now.saturating_duration_since(t.last_data);
            warn!(%relay, silent_for = %secs(silent), "no data on the tunnel since it last carried some");
            self.relay_failure(relay, "no-traffic", now);
        }
    }

    /// A gateway command failed: a refused tunnel counts as a relay failure (its sources try
    /// their next relay); a refused join (the gateway's (S,G) limit) is logged.
    pub fn command_failed(&mut self, command: Command, error: &str, now: Instant) {
        match command {
            Command::AddTunnel { relay, .. } => {
                warn!(%relay, error, "the AMT gateway refused the tunnel");
                self.relay_failure(relay, &format!("gateway: {error}"), now);
            }
            Command::Join { relay, sg } => {
                warn!(source = %sg.source, group = %sg.group, %relay, error, "the AMT gateway refused the join");
            }
            Command::RemoveTunnel { relay } | Command::Leave { relay, .. } => {
                debug!(%relay, error, "the AMT gateway refused a command");
            }
        }
    }

    /// The relay of a tunnel failed: hold it down and move its sources, unless none of them
    /// has anywhere else to go (then the tunnel stays and keeps retrying).
    fn relay_failure(&mut self, relay: IpAddr, reason: &str, now: Instant) {
        let Some(tunnel) = self.tunnels.get(&relay) else { return };
        self.counters.relay_failures += 1;
        let sources: BTreeSet<IpAddr> = tunnel.sgs.iter().map(|sg| sg.source).collect();
        let alternative = sources.iter().any(|s| self.discovery.has_alternative(*s, relay, now));
        if !alternative {
            let t = self.tunnels.get_mut(&relay);
            if let Some(t) = t {
                if t.phase != TunnelPhase::Failing || t.failure.as_deref() != Some(reason) {
                    warn!(
                        %relay,
                        reason,
                        sources = sources.len(),
                        "relay failing and its sources have no other relay: staying on it, the gateway keeps retrying"
                    );
                }
                t.phase = TunnelPhase::Failing;
                t.failure = Some(reason.to_owned());
            }
            return;
        }
        warn!(
            %relay,
            reason,
            sources = sources.len(),
            hold_down = %secs(self.config.discovery.hold_down),
            "relay failed: holding it down and moving its sources"
        );
        self.discovery.relay_failed(relay, reason, now);
        self.drain_discovery(now);
    }

    /// Counts of sources, tunnels by phase and joined (S,G)s: O(sources + tunnels), no
    /// allocation per entry.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            wanted_sgs: self.wanted.len(),
            sources: self.sources.len(),
            sources_attached: self.sources.values().filter(|e| e.attached.is_some()).count(),
            tunnels: self.tunnels.len(),
            ..Summary::default()
        };
        for t in self.tunnels.values() {
            match t.phase {
                TunnelPhase::Connecting => s.connecting += 1,
                TunnelPhase::Established => s.established += 1,
                TunnelPhase::Failing => s.failing += 1,
            }
            s.tunnel_sgs += t.sgs.len();
        }
        s
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A snapshot for status.
    pub fn status(&self, now: Instant) -> ManagerStatus {
        let discovery = self.discovery.status(now);
        let sources = discovery
            .sources
            .into_iter()
            .map(|d| {
                let entry = self.sources.get(&d.source);
                SourceReport {
                    sgs: entry.map(|e| e.sgs.iter().copied().collect()).unwrap_or_default(),
                    joined_on: entry.and_then(|e| e.attached),
                    problem: entry.and_then(|e| e.problem.clone()),
                    age_secs: entry.map_or(0.0, |e| now.saturating_duration_since(e.since).as_secs_f64()),
                    discovery: d,
                }
            })
            .collect();
        let tunnels = self
            .tunnels
            .iter()
            .map(|(relay, t)| TunnelReport {
                relay: *relay,
                discovery: t.discovery,
                phase: t.phase,
                failure: t.failure.clone(),
                sgs: t.sgs.iter().copied().collect(),
                sources: t.sgs.iter().map(|sg| sg.source).collect::<BTreeSet<_>>().into_iter().collect(),
                age_secs: now.saturating_duration_since(t.added).as_secs_f64(),
                established_after_ms: t.established_after.map(|d| d.as_secs_f64() * 1e3),
                silent_secs: t.had_data.then(|| now.saturating_duration_since(t.last_data).as_secs_f64()),
            })
            .collect();
        ManagerStatus {
            wanted_sgs: self.wanted.len(),
            sources,
            tunnels,
            held_down: discovery.held_down,
            counters: self.counters.clone(),
        }
    }
}

/// `1.47 ms`: a short duration for log lines.
fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `1.5s`, `10m`: a duration for log lines.
fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcast_amt::gateway::FailReason;
    use mcast_driad::{Candidate, Name, Negative, Phase};

    const S1: &str = "198.51.100.10";
    const S2: &str = "198.51.100.30";
    const S3: &str = "198.51.100.31";
    const R1: &str = "203.0.113.15";
    const R2: &str = "203.0.113.16";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sg(s: &str, g: &str) -> SourceGroup {
        SourceGroup::checked(ip(s), ip(g)).unwrap()
    }

    fn set(sgs: &[SourceGroup]) -> BTreeSet<SourceGroup> {
        sgs.iter().copied().collect()
    }

    fn answer(cands: &[(&str, u8, bool)], ttl: u64) -> Answer {
        Answer {
            name: Name::root(),
            records: Vec::new(),
            skipped: Vec::new(),
            candidates: cands
                .iter()
                .map(|&(a, p, d)| Candidate { addr: ip(a), precedence: p, discovery_optional: d, via_name: None })
                .collect(),
            ttl: Duration::from_secs(ttl),
            no_relay: false,
            negative: None,
            empty_names: Vec::new(),
            failed_names: Vec::new(),
        }
    }

    fn manager() -> Manager {
        Manager::new(ManagerConfig::default(), 7)
    }

    fn commands(m: &mut Manager) -> Vec<Command> {
        std::iter::from_fn(|| m.poll_command()).collect()
    }

    fn lookups(m: &mut Manager, now: Instant) -> Vec<IpAddr> {
        std::iter::from_fn(|| m.poll_lookup(now)).collect()
    }

    fn add(relay: &str, discovery: bool) -> Command {
        Command::AddTunnel { relay: ip(relay), discovery: discovery.then(|| ip(relay)) }
    }

    fn join(relay: &str, s: SourceGroup) -> Command {
        Command::Join { relay: ip(relay), sg: s }
    }

    fn leave(relay: &str, s: SourceGroup) -> Command {
        Command::Leave { relay: ip(relay), sg: s }
    }

    fn remove(relay: &str) -> Command {
        Command::RemoveTunnel { relay: ip(relay) }
    }

    /// Joins `sgs` of one new source and answers its lookup with `cands`.
    fn resolve(m: &mut Manager, sgs: &[SourceGroup], cands: &[(&str, u8, bool)], now: Instant) -> Vec<Command> {
        let mut all = m.wanted().clone();
        all.extend(sgs.iter().copied());
        m.set_joinfile(all, now);
        let source = sgs[0].source;
        assert_eq!(lookups(m, now), [source], "a new source is looked up");
        m.on_answer(source, Ok(answer(cands, 30)), now);
        commands(m)
    }

    #[test]
    fn a_new_source_is_looked_up_then_joined_through_its_relay() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        m.set_joinfile(set(&[a]), t);
        assert!(commands(&mut m).is_empty(), "nothing before the relay is known");
        assert_eq!(lookups(&mut m, t), [ip(S1)]);
        m.on_answer(ip(S1), Ok(answer(&[(R1, 10, false), (R2, 20, false)], 30)), t);
        assert_eq!(commands(&mut m), [add(R1, true), join(R1, a)], "D = 0: Relay Discovery to the relay first");
        assert_eq!(m.joined_on(ip(S1)), Some(ip(R1)));
        assert_eq!(m.counters.lookups_with_relays, 1);
    }

    #[test]
    fn the_d_bit_skips_relay_discovery() {
        let mut m = manager();
        let a = sg(S1, "232.1.1.1");
        let cmds = resolve(&mut m, &[a], &[(R2, 10, true)], Instant::now());
        assert_eq!(cmds, [add(R2, false), join(R2, a)]);
    }

    #[test]
    fn sources_sharing_a_relay_share_one_tunnel_counted_by_sg() {
        let mut m = manager();
        let t = Instant::now();
        let (a, b, c) = (sg(S1, "232.1.1.1"), sg(S2, "232.1.1.2"), sg(S3, "232.1.1.3"));
        assert_eq!(resolve(&mut m, &[a], &[(R1, 10, false)], t), [add(R1, true), join(R1, a)]);
        assert_eq!(resolve(&mut m, &[b], &[(R1, 10, false)], t), [join(R1, b)], "no second tunnel");
        assert_eq!(resolve(&mut m, &[c], &[(R1, 5, false)], t), [join(R1, c)]);
        assert_eq!(m.tunnels().collect::<Vec<_>>(), [ip(R1)]);
        assert_eq!(m.tunnel_sgs(ip(R1)).unwrap().len(), 3);
        // Leaving one keeps the tunnel; leaving the last removes it (BLOCK + Teardown), without
        // a separate Leave.
        m.set_joinfile(set(&[a, c]), t);
        assert_eq!(commands(&mut m), [leave(R1, b)]);
        m.set_joinfile(set(&[c]), t);
        assert_eq!(commands(&mut m), [leave(R1, a)]);
        m.set_joinfile(set(&[]), t);
        assert_eq!(commands(&mut m), [remove(R1)]);
        assert_eq!(m.tunnels().count(), 0);
        assert_eq!(m.discovery().sources().count(), 0, "sources are forgotten with their last (S,G)");
        assert_eq!((m.counters.tunnels_added, m.counters.tunnels_removed), (1, 1));
    }

    #[test]
    fn a_known_source_joins_at_once_while_another_is_still_resolving() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        resolve(&mut m, &[a], &[(R1, 10, false)], t);
        // A new source (lookup pending) and a new group of the known source, in one change.
        let (b, a2) = (sg(S2, "232.1.1.2"), sg(S1, "232.1.1.9"));
        m.set_joinfile(set(&[a, a2, b]), t);
        assert_eq!(commands(&mut m), [join(R1, a2)], "the known source's (S,G) does not wait");
        assert_eq!(lookups(&mut m, t), [ip(S2)]);
        m.on_answer(ip(S2), Ok(answer(&[(R2, 10, false)], 30)), t);
        assert_eq!(commands(&mut m), [add(R2, true), join(R2, b)]);
    }

    #[test]
    fn moving_a_source_to_another_group_keeps_its_tunnel_and_answer() {
        let mut m = manager();
        let t = Instant::now();
        let (a1, a2) = (sg(S1, "232.1.1.1"), sg(S1, "232.1.1.2"));
        resolve(&mut m, &[a1], &[(R1, 10, false)], t);
        m.set_joinfile(set(&[a2]), t);
        assert_eq!(commands(&mut m), [join(R1, a2), leave(R1, a1)], "additions first, no teardown");
        assert!(lookups(&mut m, t).is_empty(), "no new lookup");
    }

    #[test]
    fn a_source_that_leaves_during_its_lookup_is_dropped_quietly() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        m.set_joinfile(set(&[a]), t);
        assert_eq!(lookups(&mut m, t), [ip(S1)]);
        m.set_joinfile(set(&[]), t);
        m.on_answer(ip(S1), Ok(answer(&[(R1, 10, false)], 30)), t);
        assert!(commands(&mut m).is_empty());
        assert_eq!(m.tunnels().count(), 0);
    }

    #[test]
    fn a_failed_relay_is_held_down_and_its_sources_move_to_the_next() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        resolve(&mut m, &[a], &[(R1, 10, false), (R2, 20, true)], t);
        m.on_gateway_event(&GatewayEvent::RelayFailed { relay: ip(R1), reason: FailReason::NoQuery }, t);
        assert_eq!(commands(&mut m), [remove(R1), add(R2, false), join(R2, a)]);
        assert!(m.discovery().is_held_down(ip(R1), t + Duration::from_secs(599)));
        assert!(!m.discovery().is_held_down(ip(R1), t + Duration::from_secs(601)), "default hold-down: 10 min");
        assert_eq!((m.counters.relay_failures, m.counters.failovers), (1, 1));
        // A late event of the removed tunnel changes nothing.
        m.on_gateway_event(&GatewayEvent::RelayFailed { relay: ip(R1), reason: FailReason::NoQuery }, t);
        assert!(commands(&mut m).is_empty());
    }

    #[test]
    fn the_l_flag_counts_as_a_failure_too() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        resolve(&mut m, &[a], &[(R1, 10, false), (R2, 20, false)], t);
        m.on_gateway_event(&GatewayEvent::LimitReached { relay: ip(R1), family: mcast_amt::membership::Family::V4 }, t);
        assert_eq!(commands(&mut m), [remove(R1), add(R2, true), join(R2, a)]);
    }

    #[test]
    fn without_another_relay_the_tunnel_stays_and_keeps_retrying() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        resolve(&mut m, &[a], &[(R1, 10, false)], t);
        m.on_gateway_event(&GatewayEvent::RelayFailed { relay: ip(R1), reason: FailReason::NoAdvertisement }, t);
        assert!(commands(&mut m).is_empty(), "nowhere to go: stay");
        assert!(!m.discovery().is_held_down(ip(R1), t), "and no hold-down, so it is used as soon as it answers");
        let status = m.status(t);
        assert_eq!(status.tunnels[0].phase, TunnelPhase::Failing);
        assert_eq!(status.tunnels[0].failure.as_deref(), Some("no-advertisement"));
        m.on_gateway_event(
            &GatewayEvent::TunnelEstablished { relay: ip(R1), family: mcast_amt::membership::Family::V4 },
            t,
        );
        assert_eq!(m.status(t).tunnels[0].phase, TunnelPhase::Established);
    }

    #[test]
    fn a_shared_relay_failing_moves_who_can_and_drops_who_cannot() {
        let mut m = manager();
        let t = Instant::now();
        let (a, b) = (sg(S1, "232.1.1.1"), sg(S2, "232.1.1.2"));
        resolve(&mut m, &[a], &[(R1, 10, false), (R2, 20, false)], t);
        resolve(&mut m, &[b], &[(R1, 10, false)], t);
        m.on_gateway_event(&GatewayEvent::RelayFailed { relay: ip(R1), reason: FailReason::NoQuery }, t);
        let cmds = commands(&mut m);
        assert!(cmds.contains(&add(R2, true)) && cmds.contains(&join(R2, a)), "{cmds:?}");
        assert!(cmds.contains(&remove(R1)), "{cmds:?}");
        assert!(!cmds.iter().any(|c| matches!(c, Command::Join { sg, .. } if *sg == b)), "{cmds:?}");
        assert_eq!(m.joined_on(ip(S2)), None);
        assert_eq!(m.discovery().phase(ip(S2)), Some(Phase::Failed));
    }

    #[test]
    fn silence_after_data_is_a_failure_silence_before_any_data_is_not() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        resolve(&mut m, &[a], &[(R1, 10, false), (R2, 20, false)], t);
        let r1 = ip(R1);
        // A silent source: the gateway's NoTraffic and our counter check both leave it alone.
        m.on_gateway_event(&GatewayEvent::NoTraffic { relay: r1, silent_for: Duration::from_secs(4) }, t);
        m.on_tunnel_packets(r1, 0, t + Duration::from_secs(10));
        assert!(commands(&mut m).is_empty());
        // Data flows, then stops: 4 s after the last packet seen, the relay counts as failed.
        let t1 = t + Duration::from_secs(11);
        m.on_tunnel_packets(r1, 500, t1);
        m.on_tunnel_packets(r1, 900, t1 + Duration::from_millis(250));
        m.on_tunnel_packets(r1, 900, t1 + Duration::from_millis(4200));
        assert!(commands(&mut m).is_empty(), "3.95 s of silence is not enough");
        m.on_tunnel_packets(r1, 900, t1 + Duration::from_millis(4250));
        assert_eq!(commands(&mut m), [remove(R1), add(R2, true), join(R2, a)]);
        assert!(m.discovery().is_held_down(r1, t1 + Duration::from_secs(5)));
    }

    #[test]
    fn the_gateways_no_traffic_after_data_fails_over_as_well() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        resolve(&mut m, &[a], &[(R1, 10, false), (R2, 20, false)], t);
        m.on_tunnel_packets(ip(R1), 10, t);
        m.on_gateway_event(&GatewayEvent::NoTraffic { relay: ip(R1), silent_for: Duration::from_secs(4) }, t);
        assert_eq!(commands(&mut m), [remove(R1), add(R2, true), join(R2, a)]);
    }

    #[test]
    fn type_0_and_missing_records_give_no_tunnel_and_are_retried() {
        let mut m = manager();
        let t = Instant::now();
        let (a, b) = (sg(S1, "232.1.1.1"), sg(S2, "232.1.1.2"));
        m.set_joinfile(set(&[a, b]), t);
        assert_eq!(lookups(&mut m, t), [ip(S1), ip(S2)], "both looked up at once");
        m.on_answer(ip(S1), Ok(Answer { no_relay: true, ..answer(&[], 60) }), t);
        m.on_answer(ip(S2), Ok(Answer { negative: Some(Negative::NxDomain), ..answer(&[], 5) }), t);
        assert!(commands(&mut m).is_empty());
        let status = m.status(t);
        assert_eq!(status.sources[0].problem.as_deref(), Some("no-relay"));
        assert_eq!(status.sources[1].problem.as_deref(), Some("no-records"));
        assert_eq!((m.counters.lookups_no_relay, m.counters.lookups_no_records), (1, 1));
        // The negative answer is asked again after its TTL; now the record exists.
        assert!(lookups(&mut m, t + Duration::from_secs(4)).is_empty());
        let t5 = t + Duration::from_secs(5);
        assert_eq!(lookups(&mut m, t5), [ip(S2)]);
        m.on_answer(ip(S2), Ok(answer(&[(R1, 10, false)], 30)), t5);
        assert_eq!(commands(&mut m), [add(R1, true), join(R1, b)]);
        assert_eq!(m.status(t5).sources[1].problem, None);
    }

    #[test]
    fn a_failed_lookup_is_retried_and_succeeds_later() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        m.set_joinfile(set(&[a]), t);
        assert_eq!(lookups(&mut m, t), [ip(S1)]);
        m.on_answer(ip(S1), Err(LookupError::Timeout), t);
        assert!(commands(&mut m).is_empty());
        assert_eq!(m.counters.lookups_failed, 1);
        let retry = m.poll_timeout().expect("a retry is scheduled");
        assert!(retry > t && retry <= t + Duration::from_secs(1), "first retry after 1 s");
        assert_eq!(lookups(&mut m, retry), [ip(S1)]);
        m.on_answer(ip(S1), Ok(answer(&[(R1, 10, false)], 30)), retry);
        assert_eq!(commands(&mut m), [add(R1, true), join(R1, a)]);
    }

    #[test]
    fn a_changed_dns_answer_moves_the_source() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        resolve(&mut m, &[a], &[(R1, 10, false)], t);
        let t30 = t + Duration::from_secs(30);
        assert_eq!(lookups(&mut m, t30), [ip(S1)], "re-resolved when the answer expires");
        m.on_answer(ip(S1), Ok(answer(&[(R2, 10, false)], 30)), t30);
        assert_eq!(commands(&mut m), [remove(R1), add(R2, true), join(R2, a)]);
        // Still listed: sticky.
        let t60 = t + Duration::from_secs(60);
        assert_eq!(lookups(&mut m, t60), [ip(S1)]);
        m.on_answer(ip(S1), Ok(answer(&[(R1, 5, false), (R2, 10, false)], 30)), t60);
        assert!(commands(&mut m).is_empty(), "the relay in use stays while it is listed");
        // Type 0 now: the source leaves its tunnel.
        let t90 = t + Duration::from_secs(90);
        assert_eq!(lookups(&mut m, t90), [ip(S1)]);
        m.on_answer(ip(S1), Ok(Answer { no_relay: true, ..answer(&[], 30) }), t90);
        assert_eq!(commands(&mut m), [remove(R2)]);
    }

    #[test]
    fn a_refused_tunnel_counts_as_a_relay_failure() {
        let mut m = manager();
        let t = Instant::now();
        let a = sg(S1, "232.1.1.1");
        resolve(&mut m, &[a], &[(R1, 10, false), (R2, 20, false)], t);
        m.command_failed(add(R1, true), "too many tunnels", t);
        assert_eq!(commands(&mut m), [remove(R1), add(R2, true), join(R2, a)]);
    }

    #[test]
    fn status_lists_sources_tunnels_and_counters() {
        let mut m = manager();
        let t = Instant::now();
        let (a, b) = (sg(S1, "232.1.1.1"), sg(S2, "232.1.1.2"));
        resolve(&mut m, &[a], &[(R1, 10, false)], t);
        resolve(&mut m, &[b], &[(R1, 10, false)], t);
        m.on_gateway_event(
            &GatewayEvent::TunnelEstablished { relay: ip(R1), family: mcast_amt::membership::Family::V4 },
            t + Duration::from_millis(3),
        );
        let s = m.status(t + Duration::from_secs(1));
        assert_eq!(s.wanted_sgs, 2);
        assert_eq!(s.sources.len(), 2);
        assert_eq!(s.sources[0].joined_on, Some(ip(R1)));
        assert_eq!(s.tunnels.len(), 1);
        assert_eq!(s.tunnels[0].sources, [ip(S1), ip(S2)]);
        assert_eq!(s.tunnels[0].established_after_ms, Some(3.0));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["sources"][0]["state"], "known");
        assert_eq!(json["sources"][0]["chosen"]["relay"], R1);
        assert_eq!(json["tunnels"][0]["phase"], "established");
    }
}
