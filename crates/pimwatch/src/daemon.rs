//! The pimwatch daemon: one task that owns the PIM engine and drives it with sockets, clocks,
//! link events and signals, and turns its events into the joinfile and kernel forwarding.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mcast_daemon::signals::SignalEvent;
use mcast_daemon::{ControlServer, LogHandle, Reloader, Signals, Ticker};
use mcast_joinfile::{ParseOptions, ReadError, Writer};
use mcast_mroute::links::{LinkEvent, LinkWatcher};
use mcast_mroute::{ForwardingState, Router};
use mcast_pim::{Config, Engine, Event, Family, GroupRange, InterfaceId, SourceGroup};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::cli::RunArgs;
use crate::interfaces::{self, Downstream, Received};
use crate::metrics::Metrics;

/// How often a failed joinfile write or an unconverged forwarding table is retried.
const RETRY: Duration = Duration::from_secs(1);

fn mroute_family(family: Family) -> mcast_mroute::Family {
    match family {
        Family::Ipv4 => mcast_mroute::Family::V4,
        Family::Ipv6 => mcast_mroute::Family::V6,
    }
}

/// Kernel forwarding of one family: the routing socket and the desired/installed state.
struct Forwarding {
    router: Router,
    state: ForwardingState,
}

struct Daemon {
    args: RunArgs,
    families: Vec<Family>,
    engine: Engine,
    links: LinkWatcher,
    downstream: Downstream,
    rx: mpsc::Receiver<Received>,
    tx: mpsc::Sender<Received>,
    forwarding: BTreeMap<Family, Forwarding>,
    writer: Writer,
    joinfile_dirty: bool,
    /// The last joinfile write error (logged once), until a write succeeds.
    joinfile_error: Option<String>,
    /// Failed joinfile writes since the last good one.
    joinfile_failures: u64,
    started: Instant,
    metrics: Metrics,
    /// Whether the metrics endpoint runs (the counts are copied only then).
    metrics_on: bool,
    reloader: Reloader,
    log: LogHandle,
}

/// The options SIGHUP applies without a restart (besides the log level): the PIM engine's.
const RELOADABLE: &[&str] =
    &["ssm-range", "hello-period", "hello-holdtime", "triggered-hello-delay", "dr-priority", "max-sgs"];

/// Checks everything the daemon would refuse at start, without touching the system
/// (`--check-config`, and at start and reload), and returns the PIM configuration.
pub fn validate(args: &RunArgs) -> anyhow::Result<Config> {
    validate_for(args, args.ipv6)
}

/// [`validate`] with the PIM settings made for IPv6 on or off (a reload keeps the running one).
fn validate_for(args: &RunArgs, ipv6: bool) -> anyhow::Result<Config> {
    mcast_daemon::logging::validate_filter(&args.log.log_level)?;
    let families = if ipv6 { vec![Family::Ipv4, Family::Ipv6] } else { vec![Family::Ipv4] };
    let mut config = Config {
        hello_period: args.hello_period,
        triggered_hello_delay: args.triggered_hello_delay,
        dr_priority: args.dr_priority,
        max_joined_sgs: args.max_sgs,
        ..Config::default()
    };
    config.hello_holdtime = args.hello_holdtime.unwrap_or(args.hello_period.mul_f64(3.5));
    if !args.ssm_ranges.is_empty() {
        config.ssm_ranges = args.ssm_ranges.clone();
        // A range given for one family only leaves the other family's default in place.
        for family in &families {
            let covered = config.ssm_ranges.iter().any(|r| range_family(r) == *family);
            if !covered {
                config.ssm_ranges.push(match family {
                    Family::Ipv4 => GroupRange::ipv4_ssm(),
                    Family::Ipv6 => GroupRange::ipv6_ssm(),
                });
            }
        }
    }
    Engine::new(config.clone(), 0).context("invalid PIM configuration")?;
    for name in &args.interfaces {
        if Some(name) == args.native_interface.as_ref() {
            bail!("{name} cannot be both a downstream and the native interface");
        }
    }
    Ok(config)
}

pub async fn run(args: RunArgs, reloader: Reloader, log: LogHandle) -> anyhow::Result<()> {
    let config = validate(&args)?;
    let families = if args.ipv6 { vec![Family::Ipv4, Family::Ipv6] } else { vec![Family::Ipv4] };
    let engine = Engine::new(config, rand::random()).context("invalid PIM configuration")?;

    let mut forwarding = BTreeMap::new();
    if !args.no_forwarding {
        let native = args.native_interface.clone().unwrap_or_default();
        for &family in &families {
            let router = Router::open(mroute_family(family), args.mroute_table).map_err(|e| {
                let denied = permission_denied(&e);
                let e =
                    anyhow::Error::new(e).context(format!("opening the kernel multicast routing table ({family:?})"));
                if denied { e.context(missing_capability(args.mroute_table.is_some())) } else { e }
            })?;
            let mut state = ForwardingState::new(mroute_family(family));
            state.manage_interface(native.clone());
            for name in &args.interfaces {
                state.manage_interface(name.clone());
            }
            forwarding.insert(family, Forwarding { router, state });
        }
    }

    let links = LinkWatcher::new().context("subscribing to link and address changes (netlink)")?;
    let (tx, rx) = mpsc::channel(1024);
    let writer = Writer::new(args.joinfile(), args.joinfile_mode);
    let control = ControlServer::bind(args.runtime_dir.join("pimwatch.sock"))
        .await
        .with_context(|| format!("binding the control socket in {}", args.runtime_dir.display()))?;
    let signals = Signals::new().context("installing signal handlers")?;
    let (metrics, registry) = Metrics::new();
    let metrics_on = mcast_daemon::metrics::start(args.config.metrics_listen, registry).await?.is_some();

    let mut daemon = Daemon {
        args,
        families,
        engine,
        links,
        downstream: Downstream::default(),
        rx,
        tx,
        forwarding,
        writer,
        joinfile_dirty: false,
        joinfile_error: None,
        joinfile_failures: 0,
        started: Instant::now(),
        metrics,
        metrics_on,
        reloader,
        log,
    };
    daemon.start().await;
    daemon.serve(control, signals).await
}

/// Whether an error, or one it wraps, is EPERM/EACCES: a capability the kernel wanted.
fn permission_denied(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source())
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied))
}

/// What to tell an operator whose pimwatch lacks a capability: the raw IGMP socket that
/// becomes the multicast routing socket (MRT_INIT) and the raw PIM sockets need CAP_NET_RAW;
/// the socket that did MRT_INIT then programs VIFs and MFC entries without CAP_NET_ADMIN, which
/// only MRT_TABLE (`--mroute-table`, set before MRT_INIT) needs.
fn missing_capability(mroute_table: bool) -> String {
    let caps = if mroute_table { "CAP_NET_RAW and CAP_NET_ADMIN (for --mroute-table)" } else { "CAP_NET_RAW" };
    format!(
        "permission denied: pimwatch needs {caps}; run it as root or grant them (systemd AmbientCapabilities=, setpriv --ambient-caps)"
    )
}

fn range_family(range: &GroupRange) -> Family {
    match range {
        GroupRange::Prefix(net) if net.addr().is_ipv4() => Family::Ipv4,
        _ => Family::Ipv6,
    }
}

impl Daemon {
    /// Brings up the interfaces that exist, restores the previous joined set, and installs
    /// forwarding for it, before the first packet is read.
    async fn start(&mut self) {
        let snapshot = self.links.snapshot().clone();
        for fwd in self.forwarding.values_mut() {
            for link in snapshot.links.values() {
                fwd.state.set_interface(link.name.clone(), link.ifindex);
            }
        }
        let now = Instant::now();
        for name in self.args.interfaces.clone() {
            self.sync_interface(&name, now);
        }
        self.restore(now);
        self.process_outputs().await;
        info!(
            interfaces = ?self.args.interfaces,
            native = self.args.native_interface.as_deref().unwrap_or("-"),
            joinfile = %self.args.joinfile().display(),
            joined = self.engine.joined().count(),
            "pimwatch started"
        );
        mcast_daemon::systemd::ready(&format!(
            "PIM on {}, {} (S,G)s joined",
            self.args.interfaces.join(", "),
            self.engine.joined().count()
        ));
    }

    /// Holds the (S,G)s of the joinfile we wrote before a restart for one J/P holdtime, so a
    /// restart never stops traffic the network still wants (the downstream router refreshes
    /// its Joins within t_periodic).
    fn restore(&mut self, now: Instant) {
        let sgs: Vec<SourceGroup> = match mcast_joinfile::read(
            self.args.joinfile(),
            &ParseOptions::default(),
            mcast_joinfile::DEFAULT_MAX_BYTES,
        ) {
            Ok(joinfile) => joinfile
                .sgs()
                .filter(|sg| self.families.contains(&if sg.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 }))
                .collect(),
            Err(ReadError::Missing) => return,
            Err(e) => {
                warn!(joinfile = %self.args.joinfile().display(), error = %e, "previous joinfile unusable; nothing restored");
                return;
            }
        };
        if sgs.is_empty() {
            return;
        }
        let restored = self.engine.restore(sgs.iter().copied(), self.args.restore_holdtime, now);
        info!(
            restored,
            found = sgs.len(),
            holdtime = %humantime::format_duration(self.args.restore_holdtime),
            "holding (S,G)s from the previous joinfile until the network confirms or prunes them"
        );
    }

    async fn serve(mut self, control: ControlServer, mut signals: Signals) -> anyhow::Result<()> {
        let mut upcalls = Vec::new();
        for fwd in self.forwarding.values() {
            match fwd.router.upcall_reader() {
                Ok(reader) => upcalls.push(reader),
                Err(e) => warn!(error = %e, "cannot read kernel upcalls"),
            }
        }
        let (upcall_tx, mut upcall_rx) = mpsc::channel(64);
        let upcall_tasks: Vec<_> = upcalls
            .into_iter()
            .map(|mut reader| {
                let tx = upcall_tx.clone();
                tokio::spawn(async move {
                    while let Ok(upcall) = reader.recv().await {
                        if tx.send(upcall).await.is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticker = Ticker::new(self.metrics_on);
        loop {
            let deadline = self.engine.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                Some(received) = self.rx.recv() => {
                    let now = Instant::now();
                    if let Err(reason) =
                        self.engine.handle_packet(received.interface, received.src, received.dst, &received.payload, now)
                    {
                        debug!(interface = %received.interface, from = %received.src, ?reason, "PIM message dropped");
                    }
                }
                () = sleep_until(deadline) => self.engine.handle_timeout(Instant::now()),
                event = self.links.next() => match event {
                    Ok(event) => self.on_link_event(event),
                    Err(e) => warn!(error = %e, "netlink read failed"),
                },
                request = control.accept() => match request {
                    Ok(request) => {
                        let answer = match request.command.as_str() {
                            "status" => self.status(),
                            other => json!({ "error": format!("unknown command {other:?}") }),
                        };
                        request.respond(&answer).await;
                    }
                    Err(e) => warn!(error = %e, "control socket accept failed"),
                },
                Some(upcall) = upcall_rx.recv() => debug!(?upcall, "kernel multicast upcall"),
                _ = retry.tick() => self.retry(),
                () = ticker.tick() => self.refresh_metrics(),
                signal = signals.next() => match signal {
                    SignalEvent::Shutdown => break,
                    SignalEvent::Reload => self.reload(),
                },
            }
            self.process_outputs().await;
        }
        for task in upcall_tasks {
            task.abort();
        }
        self.shutdown().await;
        Ok(())
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        let mut changed = false;
        for fwd in self.forwarding.values_mut() {
            changed |= fwd.state.on_link_event(&event);
        }
        if changed {
            self.apply_forwarding();
        }
        let ifindex = match &event {
            LinkEvent::Added { ifindex, .. }
            | LinkEvent::Removed { ifindex, .. }
            | LinkEvent::AddressAdded { ifindex, .. }
            | LinkEvent::AddressRemoved { ifindex, .. } => *ifindex,
        };
        let by_event_name = match &event {
            LinkEvent::Added { name, .. } | LinkEvent::Removed { name, .. } => Some(name.clone()),
            _ => None,
        };
        let now = Instant::now();
        for name in self.args.interfaces.clone() {
            let ours_by_index = self.links.snapshot().link_by_name(&name).is_some_and(|l| l.ifindex == ifindex)
                || self.downstream.by_name.get(&name).is_some_and(|m| m.values().any(|a| a.id.ifindex == ifindex));
            if ours_by_index || by_event_name.as_deref() == Some(name.as_str()) {
                self.sync_interface(&name, now);
            }
        }
    }

    /// Makes PIM on `name` match what the kernel has: attach when the interface has its PIM
    /// address, re-attach when the ifindex or primary address changed, update the Address
    /// List when secondaries changed, detach when it is gone.
    fn sync_interface(&mut self, name: &str, now: Instant) {
        for family in self.families.clone() {
            let snapshot = self.links.snapshot();
            let wanted = snapshot
                .link_by_name(name)
                .filter(|l| l.up)
                .and_then(|l| interfaces::pim_addresses(snapshot, l.ifindex, family).map(|(p, s)| (l.ifindex, p, s)));
            let current = self.downstream.by_name.get(name).and_then(|m| m.get(&family));
            match (current, wanted) {
                (None, None) => {}
                (Some(_), None) => self.detach(name, family, now),
                (None, Some((ifindex, primary, secondary))) => {
                    self.attach(name, family, ifindex, primary, secondary, now)
                }
                (Some(att), Some((ifindex, primary, secondary))) => {
                    if att.id.ifindex != ifindex || att.primary != primary {
                        self.detach(name, family, now);
                        self.attach(name, family, ifindex, primary, secondary, now);
                    } else if att.secondary != secondary {
                        let id = att.id;
                        if let Err(e) = self.engine.update_addresses(id, primary, secondary.clone(), now) {
                            warn!(interface = name, error = %e, "updating PIM addresses failed");
                        }
                        if let Some(att) = self.downstream.by_name.get_mut(name).and_then(|m| m.get_mut(&family)) {
                            att.secondary = secondary;
                        }
                    }
                }
            }
        }
    }

    fn attach(
        &mut self,
        name: &str,
        family: Family,
        ifindex: u32,
        primary: IpAddr,
        secondary: Vec<IpAddr>,
        now: Instant,
    ) {
        let id = InterfaceId::new(ifindex, family);
        let attached = match interfaces::attach(id, primary, secondary.clone(), self.tx.clone()) {
            Ok(attached) => attached,
            Err(e) => {
                error!(interface = name, ?family, error = %e, "cannot open the PIM socket; will retry when the interface changes");
                return;
            }
        };
        if let Err(e) = self.engine.add_interface(id, name, primary, secondary, now) {
            error!(interface = name, error = %e, "cannot start PIM on the interface");
            return;
        }
        info!(interface = name, ?family, address = %primary, "PIM running");
        self.downstream.by_name.entry(name.to_owned()).or_default().insert(family, attached);
    }

    fn detach(&mut self, name: &str, family: Family, now: Instant) {
        let Some(att) = self.downstream.by_name.get(name).and_then(|m| m.get(&family)) else { return };
        let id = att.id;
        if let Err(e) = self.engine.remove_interface(id, now) {
            warn!(interface = name, error = %e, "removing PIM from the interface failed");
        }
        // Send the queued goodbye Hello (holdtime 0) while the socket still exists.
        self.flush_transmits_now();
        if let Some(map) = self.downstream.by_name.get_mut(name) {
            map.remove(&family);
        }
        info!(interface = name, ?family, "PIM stopped on the interface");
    }

    /// Sends queued packets synchronously (used right before a socket is closed).
    fn flush_transmits_now(&mut self) {
        while let Some(transmit) = self.engine.poll_transmit() {
            if let Some(att) = self.downstream.get(transmit.interface) {
                let result = match transmit.interface.family {
                    Family::Ipv4 => mcast_mroute::pim::send_pim_v4(att.socket.socket(), &transmit.payload),
                    Family::Ipv6 => {
                        mcast_mroute::pim::send_pim_v6(att.socket.socket(), &transmit.payload, att.id.ifindex)
                    }
                };
                if let Err(e) = result {
                    debug!(interface = %transmit.interface, error = %e, "sending PIM failed");
                }
            }
        }
    }

    /// Sends what the engine queued, acts on its events, then writes the joinfile and
    /// updates kernel forwarding if the joined set changed.
    async fn process_outputs(&mut self) {
        while let Some(transmit) = self.engine.poll_transmit() {
            let Some(att) = self.downstream.get(transmit.interface) else { continue };
            if let Err(e) = att.socket.send(&transmit.payload).await {
                warn!(interface = %transmit.interface, error = %e, "sending PIM failed");
            }
        }
        let mut forwarding_changed = false;
        while let Some(event) = self.engine.poll_event() {
            forwarding_changed |= self.on_event(event);
        }
        // The joinfile first: it starts the slow part of a join (relay discovery, tunnel).
        if self.joinfile_dirty {
            self.write_joinfile();
        }
        if forwarding_changed {
            self.apply_forwarding();
        }
    }

    /// Logs an event and records what it changes. Returns whether forwarding changed.
    fn on_event(&mut self, event: Event) -> bool {
        let name = |d: &Downstream, id: InterfaceId| d.name_of(id).unwrap_or("?").to_owned();
        match event {
            Event::NeighborUp { interface, neighbor, genid, holdtime } => {
                info!(interface = name(&self.downstream, interface), %neighbor, genid = ?genid, holdtime, "neighbour up");
            }
            Event::NeighborDown { interface, neighbor, reason } => {
                info!(interface = name(&self.downstream, interface), %neighbor, ?reason, "neighbour down");
            }
            Event::NeighborRestarted { interface, neighbor, old_genid, new_genid } => {
                info!(interface = name(&self.downstream, interface), %neighbor, ?old_genid, ?new_genid, "neighbour restarted (new generation ID)");
            }
            Event::DrChanged { interface, dr } => {
                debug!(interface = name(&self.downstream, interface), %dr, "designated router changed");
            }
            Event::InterfaceJoin { interface, sg, restored } => {
                info!(interface = name(&self.downstream, interface), %sg, restored, "(S,G) joined on interface");
                return self.set_oif(sg, interface, true);
            }
            Event::InterfacePrune { interface, sg, reason } => {
                info!(interface = name(&self.downstream, interface), %sg, ?reason, "(S,G) left on interface");
                return self.set_oif(sg, interface, false);
            }
            Event::RestoreConfirmed { interface, sg } => {
                debug!(interface = name(&self.downstream, interface), %sg, "restored (S,G) confirmed by a Join");
            }
            Event::InterfacePrunePending { interface, sg, .. } => {
                debug!(interface = name(&self.downstream, interface), %sg, "Prune received; waiting for an override");
            }
            Event::InterfacePruneOverridden { interface, sg } => {
                debug!(interface = name(&self.downstream, interface), %sg, "Prune overridden by a Join");
            }
            Event::Joined(sg) => {
                info!(%sg, "(S,G) joined");
                self.joinfile_dirty = true;
            }
            Event::Left(sg) => {
                info!(%sg, "(S,G) left");
                self.joinfile_dirty = true;
            }
            Event::EntryIgnored { interface, from, group, source, join, reason } => {
                debug!(interface = name(&self.downstream, interface), %from, %source, %group, join, ?reason, "Join/Prune entry ignored");
            }
        }
        false
    }

    fn set_oif(&mut self, sg: SourceGroup, interface: InterfaceId, add: bool) -> bool {
        let Some(oif) = self.downstream.name_of(interface).map(str::to_owned) else { return false };
        let Some(native) = self.args.native_interface.clone() else { return false };
        let Some(fwd) = self.forwarding.get_mut(&interface.family) else { return false };
        if add {
            if let Err(e) = fwd.state.add_oif(sg, &native, &oif) {
                warn!(%sg, error = %e, "cannot add forwarding");
                return false;
            }
        } else {
            fwd.state.remove_oif(sg, &oif);
        }
        true
    }

    fn apply_forwarding(&mut self) {
        for fwd in self.forwarding.values_mut() {
            for e in fwd.state.apply(&mut fwd.router) {
                warn!(error = %e, "kernel forwarding update failed; will retry");
            }
        }
    }

    fn write_joinfile(&mut self) {
        match self.writer.write_sgs_if_changed(self.engine.joined()) {
            Ok(written) => {
                self.joinfile_dirty = false;
                self.joinfile_written();
                if written {
                    debug!(joinfile = %self.args.joinfile().display(), sgs = self.engine.joined().count(), "joinfile written");
                }
            }
            Err(e) => self.joinfile_failed(&e),
        }
    }

    /// A write failed (disk full, the path is a directory...): the old file stays as it was
    /// (atomic replace), the next retry tick tries again. Logged once per distinct error.
    fn joinfile_failed(&mut self, e: &std::io::Error) {
        let text = e.to_string();
        if self.joinfile_error.as_deref() != Some(text.as_str()) {
            error!(joinfile = %self.args.joinfile().display(), error = %text, "cannot write the joinfile; the previous one stays, retrying every second");
        }
        self.joinfile_error = Some(text);
        self.joinfile_failures += 1;
        self.metrics.joinfile_write_failures.inc();
    }

    fn joinfile_written(&mut self) {
        if self.joinfile_error.take().is_some() {
            info!(joinfile = %self.args.joinfile().display(), failed_attempts = self.joinfile_failures, "joinfile written again");
        }
        self.joinfile_failures = 0;
    }

    fn retry(&mut self) {
        if self.joinfile_dirty {
            self.write_joinfile();
        } else {
            // Someone else truncated, overwrote or removed the joinfile: put it back, so its
            // readers do not act on it until the next change of the joined set.
            match self.writer.repair() {
                Ok(true) => {
                    warn!(joinfile = %self.args.joinfile().display(), "the joinfile was changed by someone else; rewritten");
                    self.joinfile_written();
                }
                Ok(false) => {}
                Err(e) => self.joinfile_failed(&e),
            }
        }
        if self.forwarding.values().any(|f| !f.state.is_converged()) {
            self.apply_forwarding();
        }
    }

    /// SIGHUP: the log filter and the PIM engine's settings ([`RELOADABLE`]) change at run
    /// time, keeping neighbours, GenIDs and joined (S,G)s (`Engine::reconfigure`: new Hello
    /// options are announced at once; (S,G)s outside narrowed SSM ranges are dropped).
    /// Interfaces, the joinfile, IPv6 and forwarding shape sockets and files: a restart.
    fn reload(&mut self) {
        let running_ipv6 = self.args.ipv6;
        // IPv6 needs a restart: the new PIM settings are made for the running families.
        let checked = self.reloader.reload_checked(
            &self.log,
            |c: &crate::cli::Cli| &c.run.log,
            |c| validate_for(&c.run, running_ipv6),
        );
        let Some((reload, config)) = checked else { return };
        if RELOADABLE.iter().any(|o| reload.changed(o)) {
            if let Err(e) = self.engine.reconfigure(config, Instant::now()) {
                return error!(error = %e, "reload rejected; the configuration stays as it was");
            }
            let new = &reload.cli.run;
            self.args.ssm_ranges = new.ssm_ranges.clone();
            self.args.hello_period = new.hello_period;
            self.args.hello_holdtime = new.hello_holdtime;
            self.args.triggered_hello_delay = new.triggered_hello_delay;
            self.args.dr_priority = new.dr_priority;
            self.args.max_sgs = new.max_sgs;
        }
        self.reloader.applied(&reload, RELOADABLE);
    }

    fn refresh_metrics(&self) {
        if !self.metrics_on {
            return;
        }
        let neighbors = self.args.interfaces.iter().map(|name| {
            let n: usize = self
                .downstream
                .by_name
                .get(name)
                .map_or(0, |m| m.values().map(|a| self.engine.neighbors(a.id).len()).sum());
            (name.clone(), n as u64)
        });
        let forwarding: usize = self.forwarding.values().map(|f| f.state.installed_mfcs().len()).sum();
        self.metrics.refresh(self.engine.counters(), neighbors, self.engine.joined().count() as u64, forwarding as u64);
    }

    async fn shutdown(&mut self) {
        mcast_daemon::systemd::stopping();
        info!("shutting down: goodbye Hellos, removing kernel forwarding");
        self.engine.shutdown(Instant::now());
        self.process_outputs().await;
        for fwd in self.forwarding.values_mut() {
            for e in fwd.state.flush(&mut fwd.router) {
                warn!(error = %e, "removing kernel forwarding failed");
            }
        }
        // The joinfile stays as it is: after a restart it is restored, so traffic the network
        // still wants is not interrupted (original bug #19 truncated it).
    }

    fn status(&self) -> serde_json::Value {
        let now = Instant::now();
        let mut forwarding = Vec::new();
        for (family, fwd) in &self.forwarding {
            for (sg, route) in fwd.state.routes() {
                let installed = fwd.state.installed_mfcs().contains_key(sg);
                let counters = if installed { fwd.router.sg_counters(*sg).ok() } else { None };
                forwarding.push(json!({
                    "family": family,
                    "sg": sg,
                    "iif": route.iif,
                    "oifs": route.oifs,
                    "installed": installed,
                    "packets": counters.map(|c| c.packets),
                    "bytes": counters.map(|c| c.bytes),
                    "wrong_if": counters.map(|c| c.wrong_if),
                }));
            }
        }
        let native = self.args.native_interface.as_ref().map(|name| {
            let ifindex = self.links.snapshot().link_by_name(name).map(|l| l.ifindex);
            json!({ "name": name, "ifindex": ifindex })
        });
        json!({
            "daemon": "pimwatch",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "joinfile": PathBuf::from(self.args.joinfile()),
            "joinfile_error": self.joinfile_error,
            "native_interface": native,
            "forwarding_enabled": !self.args.no_forwarding,
            "pim": self.engine.status(now),
            "forwarding": forwarding,
        })
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_capability_is_named() {
        let io = std::io::Error::from_raw_os_error(1); // EPERM
        assert!(permission_denied(&io));
        let wrapped = anyhow::Error::new(io).context("opening the kernel multicast routing table (Ipv4)");
        assert!(permission_denied(wrapped.as_ref()));
        assert!(!permission_denied(&std::io::Error::from_raw_os_error(98))); // EADDRINUSE
        assert!(missing_capability(false).contains("pimwatch needs CAP_NET_RAW;"));
        assert!(missing_capability(true).contains("CAP_NET_ADMIN (for --mroute-table)"));
    }
}
