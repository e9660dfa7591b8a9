//! The driad-ingest daemon: one task owns the [`Manager`] and drives it with the joinfile
//! watcher, DNS answers, the AMT gateway's events, timers, the control socket and signals.
//!
//! Nothing here blocks the loop: the joinfile watcher runs in its own task and hands over
//! snapshots; each DNS lookup runs in its own task and hands its answer back over a channel
//! (so one slow source never delays another); gateway commands are messages to the gateway
//! task, answered at once.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mcast_amt_gateway::{Error as GatewayError, Events, GatewayHandle};
use mcast_daemon::signals::SignalEvent;
use mcast_daemon::{ControlServer, LogHandle, Reloader, Signals, Ticker};
use mcast_driad::{Answer, Discovery, DiscoveryConfig, DnsConfig, LookupError};
use mcast_joinfile::{Joinfile, ParseOptions, ReadError, Watcher, WatcherOptions};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::cli::{Cli, RunArgs};
use crate::manager::{Command, Manager, ManagerConfig};
use crate::metrics::Metrics;

/// What SIGHUP changes in a running driad-ingest (new lookups go to new name servers; tunnels
/// stay up).
const RELOADABLE: &[&str] = &["nameserver", "hold-down", "no-traffic-timeout"];

/// How often tunnel packet counters are checked for silence (the no-traffic check's
/// resolution).
const WATCHDOG: Duration = Duration::from_millis(250);

/// Joinfile bookkeeping for status.
#[derive(Debug, Default, Serialize)]
struct JoinfileState {
    path: PathBuf,
    /// Reads (events, rescans, SIGHUP).
    reads: u64,
    /// Reads rejected as a whole (not a file, too large, nothing valid, I/O error).
    rejected: u64,
    /// The file did not exist at the last read.
    missing: bool,
    /// Lines skipped at the last successful read.
    problems: Vec<String>,
    /// Why the last read was rejected (cleared by a good read).
    last_error: Option<String>,
}

struct Daemon {
    args: RunArgs,
    manager: Manager,
    gateway: GatewayHandle,
    discovery: Arc<Discovery>,
    lookups_tx: mpsc::Sender<(IpAddr, Result<Answer, LookupError>)>,
    joinfile: JoinfileState,
    started: Instant,
    metrics: Metrics,
    metrics_on: bool,
    reloader: Reloader,
    log: LogHandle,
}

/// Checks everything driad-ingest would refuse at start (`--check-config`, start, reload)
/// and returns the DNS resolver built from it. Must run inside the runtime.
pub fn validate(args: &RunArgs) -> anyhow::Result<Discovery> {
    mcast_daemon::logging::validate_filter(&args.log.log_level)?;
    if args.joinfile.is_none() || args.native_interface.is_none() {
        bail!("--joinfile and --native-interface are required");
    }
    if args.local.iter().filter(|l| l.is_ipv4()).count() > 1 || args.local.iter().filter(|l| l.is_ipv6()).count() > 1 {
        bail!("--local: at most one IPv4 and one IPv6 address");
    }
    let dns = DnsConfig {
        nameservers: (!args.nameservers.is_empty()).then(|| args.nameservers.clone()),
        ..DnsConfig::default()
    };
    Discovery::new(&dns).context("setting up the DNS resolver")
}

fn manager_config(args: &RunArgs) -> ManagerConfig {
    ManagerConfig {
        discovery: DiscoveryConfig { hold_down: args.hold_down, ..DiscoveryConfig::default() },
        no_traffic: (!args.no_traffic_timeout.is_zero()).then_some(args.no_traffic_timeout),
    }
}

pub async fn run(args: RunArgs, reloader: Reloader, log: LogHandle) -> anyhow::Result<()> {
    let discovery = Arc::new(validate(&args)?);

    let mut config = mcast_amt_gateway::Config::new(args.native_interface());
    config.tun_mtu = args.tun_mtu;
    config.gateway.max_tunnels = args.max_tunnels;
    for local in &args.local {
        match local.ip() {
            IpAddr::V4(_) => config.local_v4 = Some(*local),
            IpAddr::V6(_) => config.local_v6 = Some(*local),
        }
    }

    let signals = Signals::new().context("installing signal handlers")?;
    let control = ControlServer::bind(args.runtime_dir.join("driad-ingest.sock"))
        .await
        .with_context(|| format!("binding the control socket in {}", args.runtime_dir.display()))?;
    let (gateway, events, gateway_task) = mcast_amt_gateway::spawn(config).map_err(|e| {
        let denied = e.kind() == std::io::ErrorKind::PermissionDenied;
        let e = anyhow::Error::new(e).context(format!("starting the AMT gateway on {}", args.native_interface()));
        if denied { e.context(MISSING_CAPABILITY) } else { e }
    })?;

    let manager_config = manager_config(&args);
    let (metrics, registry) = Metrics::new();
    let metrics_on = mcast_daemon::metrics::start(args.config.metrics_listen, registry).await?.is_some();
    let (lookups_tx, lookups_rx) = mpsc::channel(256);
    let mut daemon = Daemon {
        manager: Manager::new(manager_config, rand::random()),
        gateway,
        discovery,
        lookups_tx,
        joinfile: JoinfileState { path: args.joinfile().to_path_buf(), ..JoinfileState::default() },
        started: Instant::now(),
        metrics,
        metrics_on,
        reloader,
        log,
        args,
    };

    // The watcher lives in its own task: its rescan timer and inotify stream are never
    // cancelled by the other branches of the loop.
    let watcher = Watcher::new(
        daemon.args.joinfile(),
        WatcherOptions { parse: ParseOptions { allow_population: true }, ..WatcherOptions::default() },
    );
    let first = watcher.read();
    let (joinfile_tx, joinfile_rx) = mpsc::channel(4);
    let watch_task = tokio::spawn(watch(watcher, joinfile_tx));

    info!(
        joinfile = %daemon.args.joinfile().display(),
        native = daemon.args.native_interface(),
        nameservers = ?daemon.discovery,
        local = ?daemon.gateway.local_addrs(),
        hold_down = %humantime::format_duration(daemon.args.hold_down),
        "driad-ingest started"
    );
    daemon.on_joinfile(first, "start");
    mcast_daemon::systemd::ready(&format!(
        "native interface {}, {} (S,G)s wanted",
        daemon.args.native_interface(),
        daemon.manager.wanted().len()
    ));
    let result = daemon.serve(events, joinfile_rx, lookups_rx, control, signals).await;
    mcast_daemon::systemd::stopping();
    watch_task.abort();
    info!("shutting down: leaving every (S,G) and tearing the tunnels down");
    daemon.gateway.shutdown().await.ok();
    gateway_task.await.context("the gateway task failed")?;
    result
}

/// What to tell an operator whose driad-ingest may not create its TUN (TUNSETIFF is EPERM
/// without CAP_NET_ADMIN). It needs no other capability: no raw socket, no privileged port.
const MISSING_CAPABILITY: &str = "permission denied: driad-ingest needs CAP_NET_ADMIN (to create and configure the TUN); \
     run it as root or grant it (systemd AmbientCapabilities=, setpriv --ambient-caps)";

async fn watch(mut watcher: Watcher, tx: mpsc::Sender<Result<Joinfile, ReadError>>) {
    loop {
        let result = watcher.next_change().await;
        if tx.send(result).await.is_err() {
            return;
        }
    }
}

impl Daemon {
    async fn serve(
        &mut self,
        mut events: Events,
        mut joinfile_rx: mpsc::Receiver<Result<Joinfile, ReadError>>,
        mut lookups_rx: mpsc::Receiver<(IpAddr, Result<Answer, LookupError>)>,
        control: ControlServer,
        mut signals: Signals,
    ) -> anyhow::Result<()> {
        let mut watchdog = tokio::time::interval(WATCHDOG);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticker = Ticker::new(self.metrics_on);
        loop {
            self.pump().await?;
            let deadline = self.manager.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                Some(result) = joinfile_rx.recv() => self.on_joinfile(result, "change"),
                Some((source, result)) = lookups_rx.recv() => self.manager.on_answer(source, result, Instant::now()),
                event = events.recv() => match event {
                    Some(event) => {
                        debug!(%event, "AMT gateway event");
                        self.manager.on_gateway_event(&event, Instant::now());
                    }
                    None => bail!("the AMT gateway stopped by itself"),
                },
                () = sleep_until(deadline) => self.manager.handle_timeout(Instant::now()),
                _ = watchdog.tick() => self.check_traffic().await,
                () = ticker.tick() => self.refresh_metrics().await,
                request = control.accept() => match request {
                    Ok(request) => {
                        let answer = match request.command.as_str() {
                            "status" => self.status().await,
                            "summary" => self.summary().await,
                            other => json!({ "error": format!("unknown command {other:?}") }),
                        };
                        request.respond(&answer).await;
                    }
                    Err(e) => warn!(error = %e, "control socket accept failed"),
                },
                signal = signals.next() => match signal {
                    SignalEvent::Shutdown => return Ok(()),
                    SignalEvent::Reload => {
                        self.reload();
                        let result = mcast_joinfile::read(
                            self.args.joinfile(),
                            &ParseOptions { allow_population: true },
                            mcast_joinfile::DEFAULT_MAX_BYTES,
                        );
                        self.on_joinfile(result, "SIGHUP");
                    }
                },
            }
        }
    }

    /// SIGHUP: applies the reloadable options of the re-read configuration.
    fn reload(&mut self) {
        let checked = self.reloader.reload_checked(&self.log, |c: &Cli| &c.run.log, |c| validate(&c.run));
        let Some((reload, discovery)) = checked else { return };
        let run = &reload.cli.run;
        if reload.changed("nameserver") {
            self.discovery = Arc::new(discovery);
            info!(nameservers = ?self.discovery, "new lookups go to the new name servers");
        }
        self.manager.set_config(manager_config(run));
        self.args.nameservers.clone_from(&run.nameservers);
        self.args.hold_down = run.hold_down;
        self.args.no_traffic_timeout = run.no_traffic_timeout;
        self.reloader.applied(&reload, RELOADABLE);
    }

    async fn refresh_metrics(&mut self) {
        if !self.metrics_on {
            return;
        }
        let gateway = self.gateway.status().await.ok();
        self.metrics.refresh(&self.manager.summary(), self.manager.counters(), gateway.as_ref());
    }

    /// Starts the lookups that are due and hands the manager's commands to the gateway,
    /// until neither has anything left (a refused command may produce more).
    async fn pump(&mut self) -> anyhow::Result<()> {
        loop {
            let now = Instant::now();
            let mut idle = true;
            while let Some(source) = self.manager.poll_lookup(now) {
                idle = false;
                let discovery = Arc::clone(&self.discovery);
                let tx = self.lookups_tx.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = discovery.lookup(source).await;
                    debug!(%source, ok = result.is_ok(), took = %format_args!("{:.2} ms", started.elapsed().as_secs_f64() * 1e3), "AMTRELAY lookup done");
                    let _ = tx.send((source, result)).await;
                });
            }
            while let Some(command) = self.manager.poll_command() {
                idle = false;
                let result = match command {
                    Command::AddTunnel { relay, discovery } => self.gateway.add_tunnel(relay, discovery).await,
                    Command::RemoveTunnel { relay } => self.gateway.remove_tunnel(relay).await,
                    Command::Join { relay, sg } => self.gateway.join(relay, sg).await.map(drop),
                    Command::Leave { relay, sg } => self.gateway.leave(relay, sg).await.map(drop),
                };
                match result {
                    Ok(()) => {}
                    Err(GatewayError::Stopped) => bail!("the AMT gateway stopped"),
                    Err(GatewayError::Gateway(e)) => self.manager.command_failed(command, &e.to_string(), now),
                }
            }
            if idle {
                return Ok(());
            }
        }
    }

    /// Feeds the tunnels' packet counters to the no-traffic check.
    async fn check_traffic(&mut self) {
        if self.manager.tunnels().next().is_none() {
            return;
        }
        // Only the packet counters: the full status (every tunnel's (S,G)s, families, timers)
        // four times a second would cost O(tunnels + (S,G)s) allocations each time.
        let Ok(packets) = self.gateway.tunnel_packets().await else { return };
        let now = Instant::now();
        for (relay, packets) in packets {
            self.manager.on_tunnel_packets(relay, packets, now);
        }
    }

    /// A joinfile read: a good one replaces the wanted set, a missing file empties it, a file
    /// that is not a joinfile at all is ignored (state is never lost to bad input).
    fn on_joinfile(&mut self, result: Result<Joinfile, ReadError>, why: &str) {
        let path = self.args.joinfile().display().to_string();
        self.joinfile.reads += 1;
        let now = Instant::now();
        match result {
            Ok(joinfile) => {
                let problems: Vec<String> = joinfile.problems.iter().map(ToString::to_string).collect();
                if problems != self.joinfile.problems {
                    for p in &joinfile.problems {
                        warn!(joinfile = %path, line = p.line, text = %p.text, reason = %p.reason, "malformed joinfile line skipped");
                    }
                    if joinfile.more_problems > 0 {
                        warn!(joinfile = %path, more = joinfile.more_problems, "more malformed joinfile lines skipped (not listed)");
                    }
                }
                if self.joinfile.missing || self.joinfile.last_error.is_some() {
                    info!(joinfile = %path, sgs = joinfile.entries.len(), "joinfile readable again");
                }
                self.joinfile.problems = problems;
                self.joinfile.missing = false;
                self.joinfile.last_error = None;
                let sgs: BTreeSet<_> = joinfile.sgs().collect();
                debug!(joinfile = %path, why, sgs = sgs.len(), bad_lines = joinfile.problems.len(), "joinfile read");
                self.manager.set_joinfile(sgs, now);
            }
            Err(ReadError::Missing) => {
                if !self.joinfile.missing {
                    warn!(joinfile = %path, "joinfile does not exist: no (S,G) wanted");
                }
                self.joinfile.missing = true;
                self.joinfile.problems.clear();
                self.joinfile.last_error = None;
                self.manager.set_joinfile(BTreeSet::new(), now);
            }
            Err(e) => {
                self.joinfile.rejected += 1;
                let text = e.to_string();
                if self.joinfile.last_error.as_deref() != Some(text.as_str()) {
                    error!(
                        joinfile = %path,
                        error = %text,
                        kept = self.manager.wanted().len(),
                        "joinfile rejected as a whole; keeping the current (S,G)s"
                    );
                }
                self.joinfile.last_error = Some(text);
            }
        }
    }

    /// Counts only (no per-source or per-tunnel tables): cheap enough to poll while tens of
    /// thousands of (S,G)s come and go (the scale benchmark does).
    async fn summary(&self) -> Value {
        let gateway = self.gateway.tunnel_packets().await.ok();
        let summary = self.manager.summary();
        json!({
            "daemon": "driad-ingest",
            "uptime_secs": self.started.elapsed().as_secs(),
            "wanted_sgs": summary.wanted_sgs,
            "sources": summary.sources,
            "sources_attached": summary.sources_attached,
            "tunnels": summary.tunnels,
            "tunnels_connecting": summary.connecting,
            "tunnels_established": summary.established,
            "tunnels_failing": summary.failing,
            "tunnel_sgs": summary.tunnel_sgs,
            "gateway_tunnels": gateway.as_ref().map(Vec::len),
            "data_packets": gateway.map(|g| g.iter().map(|(_, p)| p).sum::<u64>()),
            "counters": self.manager.counters(),
        })
    }

    async fn status(&self) -> Value {
        let gateway = self.gateway.status().await.ok();
        let now = Instant::now();
        let manager = self.manager.status(now);
        let mut value = serde_json::to_value(&manager).unwrap_or(Value::Null);
        // The gateway's view of each tunnel: protocol state, counters, advertised address.
        if let (Some(gw), Some(tunnels)) = (&gateway, value.get_mut("tunnels").and_then(Value::as_array_mut)) {
            for t in tunnels.iter_mut() {
                let relay = t["relay"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
                let Some(g) = gw.gateway.tunnels.iter().find(|g| Some(g.relay) == relay) else { continue };
                if let Some(obj) = t.as_object_mut() {
                    obj.insert("state".into(), json!(g.state));
                    obj.insert("relay_address".into(), json!(g.relay_address));
                    obj.insert("packets".into(), json!(g.counters.packets));
                    obj.insert("bytes".into(), json!(g.counters.bytes));
                    obj.insert("drops".into(), json!(g.counters.drops.total()));
                    obj.insert("gateway_endpoint".into(), json!(g.gateway_endpoint));
                    obj.insert("gateway_failure".into(), json!(g.failed));
                }
            }
        }
        json!({
            "daemon": "driad-ingest",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "joinfile": self.joinfile,
            "native_interface": self.args.native_interface(),
            "local": self.gateway.local_addrs(),
            "sources": value["sources"],
            "tunnels": value["tunnels"],
            "held_down": value["held_down"],
            "wanted_sgs": value["wanted_sgs"],
            "counters": value["counters"],
            "gateway": gateway.as_ref().map(|g| json!({
                "joined_sgs": g.gateway.joined_sgs,
                "data_packets": g.gateway.counters.data_packets,
                "data_drops": g.gateway.counters.data_drops.total(),
                // By reason, for operators and the hostile-input scenarios: what was dropped
                // and why (malformed, unknown-sender, bad-nonce, bad-query, not-from-relay...).
                "data_drops_by_reason": g.gateway.counters.data_drops,
                "control_drops": g.gateway.counters.control_drops,
                "received": g.gateway.counters.received,
                "tun_recreated": g.driver.tun_recreated,
                "tun_written": g.driver.tun_written,
                "tun_writes": g.driver.tun_writes,
                "tun_coalesced": g.driver.tun_coalesced,
                "tun_full": g.driver.tun_full,
                "events_lost": g.driver.events_lost,
            })),
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
