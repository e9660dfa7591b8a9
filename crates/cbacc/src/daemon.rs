//! The cbacc daemon: one task owns the state (desired flows, metadata cache, admission) and
//! reacts to input changes, lookup results, timers, status requests and signals. Lookups run
//! in their own tasks (at most `--max-lookups` at once) and report back over a channel, so a
//! slow DORMS server never holds up a decision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cbacc::admission::{Admission, AdmissionConfig, Evaluation, FlowInput, Reason};
use cbacc::cache::{CacheConfig, MetadataCache};
use cbacc::dorms::{DormsClient, Fetch, log_fetch};
use cbacc::{Rate, SourceGroup};
use mcast_daemon::signals::SignalEvent;
use mcast_daemon::{ControlServer, LogHandle, Reloader, Signals, Ticker};
use mcast_joinfile::{Joinfile, ParseOptions, ReadError, Watcher, WatcherOptions, Writer};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, error, info, warn};

use crate::cli::{Cli, RunArgs};
use crate::metrics::{Drop, Metrics};

/// What SIGHUP changes in a running cbacc (the DORMS client is rebuilt when one of its options
/// changed; lookups already running finish with the old one).
const RELOADABLE: &[&str] = &[
    "bandwidth",
    "default",
    "hold-down",
    "hold-down-jitter",
    "refresh",
    "metadata-wait",
    "nameserver",
    "ca-file",
    "legacy-rate-unit",
    "http-timeout",
    "connect-timeout",
    "ignore-time",
];

/// The options of the DORMS client.
const CLIENT_OPTIONS: &[&str] =
    &["nameserver", "ca-file", "legacy-rate-unit", "http-timeout", "connect-timeout", "ignore-time"];

/// How soon a failed output write is retried.
const WRITE_RETRY: Duration = Duration::from_secs(1);

struct Daemon {
    input: PathBuf,
    output: PathBuf,
    client: Arc<DormsClient>,
    cache: MetadataCache,
    admission: Admission,
    writer: Writer,
    /// The desired flows and their populations (the last usable input).
    desired: BTreeMap<SourceGroup, Option<u32>>,
    /// The last evaluation.
    last: Option<Evaluation>,
    /// The reason logged last for each flow (to log changes only).
    reasons: BTreeMap<SourceGroup, Reason>,
    /// Problems of the last input read (to log them once, not at every rescan).
    input_problems: Vec<String>,
    input_missing: bool,
    written_once: bool,
    write_retry: Option<Instant>,
    /// When to check next that the output still holds what was written.
    next_repair: Instant,
    /// The last output write error (logged once), until a write succeeds.
    output_error: Option<String>,
    semaphore: Arc<Semaphore>,
    results: mpsc::Sender<(SourceGroup, Fetch)>,
    started: Instant,
    /// The last lookup trace per flow (status shows the last step).
    traces: BTreeMap<SourceGroup, Vec<String>>,
    metrics: Metrics,
    metrics_on: bool,
    /// SRV lookups of DORMS clients replaced by reloads (found, negative, failed).
    srv_base: [u64; 3],
    reloader: Reloader,
    log: LogHandle,
}

/// Checks everything cbacc would refuse at start (`--check-config`, start, reload) and
/// returns the DORMS client built from it (reads the CA files). Must run inside the runtime.
pub fn validate(args: &RunArgs) -> anyhow::Result<DormsClient> {
    mcast_daemon::logging::validate_filter(&args.log.log_level)?;
    let (Some(input), Some(output), Some(_)) = (&args.input_file, &args.output_file, args.bandwidth) else {
        anyhow::bail!("--input-file, --output-file and --bandwidth are required");
    };
    if input == output {
        anyhow::bail!("--input-file and --output-file are the same file: {}", input.display());
    }
    DormsClient::new(args.dorms.client_config()?).context("setting up the DORMS client")
}

fn warn_if_short(args: &RunArgs) {
    if args.hold_down < Duration::from_secs(150) {
        warn!(
            hold_down = %humantime::format_duration(args.hold_down),
            "--hold-down is shorter than the CBACC draft's 2.5 min (fine for tests, not for a network)"
        );
    }
    if args.hold_down_jitter < Duration::from_secs(30) {
        warn!(
            jitter = %humantime::format_duration(args.hold_down_jitter),
            "--hold-down-jitter is shorter than the CBACC draft's 30 s"
        );
    }
    if args.dorms.ignore_time < Duration::from_secs(3600) || args.dorms.ignore_time > Duration::from_secs(86400) {
        warn!(ignore_time = %humantime::format_duration(args.dorms.ignore_time), "--ignore-time is outside the DORMS draft's 1 h to 24 h");
    }
}

pub async fn run(args: RunArgs, reloader: Reloader, log: LogHandle) -> anyhow::Result<()> {
    let client = Arc::new(validate(&args)?);
    let (Some(input), Some(output), Some(cap)) = (args.input_file.clone(), args.output_file.clone(), args.bandwidth)
    else {
        anyhow::bail!("--input-file, --output-file and --bandwidth are required");
    };
    warn_if_short(&args);
    let control = ControlServer::bind(args.runtime_dir.join("cbacc.sock"))
        .await
        .with_context(|| format!("binding the control socket in {}", args.runtime_dir.display()))?;
    let signals = Signals::new().context("installing signal handlers")?;
    let (metrics, registry) = Metrics::new();
    let metrics_on = mcast_daemon::metrics::start(args.config.metrics_listen, registry).await?.is_some();

    let mut admission = Admission::new(
        AdmissionConfig { cap, hold_down: args.hold_down, hold_down_jitter: args.hold_down_jitter },
        rand::random(),
    );
    // The flows of our previous output count as already admitted (the stable tie-break), so a
    // restart changes nothing that does not need changing.
    match mcast_joinfile::read(&output, &ParseOptions::default(), mcast_joinfile::DEFAULT_MAX_BYTES) {
        Ok(previous) => admission.seed_admitted(previous.sgs()),
        Err(ReadError::Missing) => {}
        Err(e) => warn!(output = %output.display(), error = %e, "previous output unusable"),
    }
    let cache = MetadataCache::new(
        CacheConfig {
            refresh: args.refresh,
            default_rate: args.default,
            metadata_wait: args.metadata_wait,
            ..CacheConfig::default()
        },
        rand::random(),
    );
    let (results_tx, results_rx) = mpsc::channel(256);
    let mut daemon = Daemon {
        input: input.clone(),
        output: output.clone(),
        client,
        cache,
        admission,
        writer: Writer::new(&output, args.output_mode),
        desired: BTreeMap::new(),
        last: None,
        reasons: BTreeMap::new(),
        input_problems: Vec::new(),
        input_missing: false,
        written_once: false,
        write_retry: None,
        next_repair: Instant::now(),
        output_error: None,
        semaphore: Arc::new(Semaphore::new(args.max_lookups.into())),
        results: results_tx,
        started: Instant::now(),
        traces: BTreeMap::new(),
        metrics,
        metrics_on,
        srv_base: [0; 3],
        reloader,
        log,
    };

    // The input watcher runs in its own task: its reads reach us over a channel, which keeps
    // the event loop's select! cancel-safe.
    let mut watcher =
        Watcher::new(&input, WatcherOptions { parse: ParseOptions { allow_population: true }, ..Default::default() });
    let first = watcher.read();
    let (input_tx, input_rx) = mpsc::channel(4);
    let watch_task = tokio::spawn(async move {
        loop {
            let read = watcher.next_change().await;
            if input_tx.send(read).await.is_err() {
                return;
            }
        }
    });
    daemon.on_input(first, Instant::now());
    info!(
        input = %input.display(),
        output = %output.display(),
        cap = %cap,
        default = %args.default.map_or("none (flows without metadata are blocked)".to_owned(), |r| r.to_string()),
        hold_down = %humantime::format_duration(args.hold_down),
        refresh = %humantime::format_duration(args.refresh),
        "cbacc started"
    );
    mcast_daemon::systemd::ready(&format!("cap {cap}, {} flows wanted", daemon.desired.len()));
    let result = daemon.serve(control, signals, input_rx, results_rx).await;
    mcast_daemon::systemd::stopping();
    watch_task.abort();
    info!("cbacc stopped");
    result
}

impl Daemon {
    async fn serve(
        mut self,
        control: ControlServer,
        mut signals: Signals,
        mut input_rx: mpsc::Receiver<Result<Joinfile, ReadError>>,
        mut results_rx: mpsc::Receiver<(SourceGroup, Fetch)>,
    ) -> anyhow::Result<()> {
        let mut ticker = Ticker::new(self.metrics_on);
        loop {
            let now = Instant::now();
            self.start_lookups(now);
            self.evaluate(now);
            let repair = self.written_once.then_some(self.next_repair);
            let wake = [self.cache.next_wake(now), self.admission.next_wake(), self.write_retry, repair]
                .into_iter()
                .flatten()
                .min()
                .map(|t| tokio::time::Instant::from_std(t.max(now)));
            tokio::select! {
                Some(read) = input_rx.recv() => self.on_input(read, Instant::now()),
                Some((sg, fetch)) = results_rx.recv() => self.on_fetch(sg, fetch, Instant::now()),
                () = sleep_until(wake) => {}
                () = ticker.tick() => self.refresh_metrics(),
                request = control.accept() => match request {
                    Ok(request) => {
                        let answer = match request.command.as_str() {
                            "status" => self.status(Instant::now()),
                            other => json!({ "error": format!("unknown command {other:?}") }),
                        };
                        request.respond(&answer).await;
                    }
                    Err(e) => warn!(error = %e, "control socket accept failed"),
                },
                signal = signals.next() => match signal {
                    SignalEvent::Shutdown => break,
                    SignalEvent::Reload => {
                        self.reload();
                        info!("SIGHUP: looking up every flow's metadata again and re-reading the input");
                        self.client.clear_caches();
                        self.cache.refresh_all(Instant::now());
                        let read = mcast_joinfile::read(
                            &self.input,
                            &ParseOptions { allow_population: true },
                            mcast_joinfile::DEFAULT_MAX_BYTES,
                        );
                        self.on_input(read, Instant::now());
                    }
                },
            }
        }
        // The output stays as it is: driad-ingest keeps ingesting what was admitted, and a
        // restarted cbacc starts from it.
        Ok(())
    }

    /// SIGHUP: applies the reloadable options of the re-read configuration.
    fn reload(&mut self) {
        let checked = self.reloader.reload_checked(&self.log, |c: &Cli| &c.run.log, |c| validate(&c.run));
        let Some((reload, client)) = checked else { return };
        let run = &reload.cli.run;
        if CLIENT_OPTIONS.iter().any(|o| reload.changed(o)) {
            let old = self.client.srv_lookups();
            for (base, counter) in self.srv_base.iter_mut().zip([&old.found, &old.negative, &old.failed]) {
                *base += counter.load(std::sync::atomic::Ordering::Relaxed);
            }
            self.client = Arc::new(client);
        }
        if let Some(cap) = run.bandwidth {
            self.admission.set_config(AdmissionConfig {
                cap,
                hold_down: run.hold_down,
                hold_down_jitter: run.hold_down_jitter,
            });
        }
        self.cache.set_config(CacheConfig {
            refresh: run.refresh,
            default_rate: run.default,
            metadata_wait: run.metadata_wait,
            ..*self.cache.config()
        });
        if ["hold-down", "hold-down-jitter"].iter().any(|o| reload.changed(o)) {
            warn_if_short(run);
        }
        self.reloader.applied(&reload, RELOADABLE);
    }

    fn refresh_metrics(&self) {
        if self.metrics_on {
            let srv = self.client.srv_lookups();
            self.metrics.refresh(self.last.as_ref(), self.admission.config().cap, srv, self.srv_base);
        }
    }

    fn on_input(&mut self, read: Result<Joinfile, ReadError>, now: Instant) {
        let joinfile = match read {
            Ok(j) => {
                self.input_missing = false;
                j
            }
            Err(ReadError::Missing) => {
                if !self.input_missing {
                    warn!(input = %self.input.display(), "input joinfile does not exist: no flows wanted");
                    self.input_missing = true;
                }
                Joinfile::default()
            }
            Err(e) => {
                error!(input = %self.input.display(), error = %e, "input joinfile unusable; keeping the previous flows");
                self.metrics.dropped(Drop::InputUnusable, 1);
                return;
            }
        };
        let problems: Vec<String> = joinfile.problems.iter().map(ToString::to_string).collect();
        if problems != self.input_problems {
            for p in &joinfile.problems {
                warn!(input = %self.input.display(), "malformed line skipped: {p}");
            }
            if joinfile.more_problems > 0 {
                warn!(input = %self.input.display(), more = joinfile.more_problems, "more malformed lines skipped (not listed)");
            }
            self.metrics.dropped(Drop::MalformedInputLine, (joinfile.problems.len() + joinfile.more_problems) as u64);
            self.input_problems = problems;
        }
        if joinfile.entries == self.desired {
            return;
        }
        let added: Vec<String> =
            joinfile.entries.keys().filter(|sg| !self.desired.contains_key(sg)).map(ToString::to_string).collect();
        let removed: Vec<String> =
            self.desired.keys().filter(|sg| !joinfile.entries.contains_key(sg)).map(ToString::to_string).collect();
        info!(flows = joinfile.entries.len(), ?added, ?removed, "input changed");
        self.desired = joinfile.entries;
        let wanted: BTreeSet<SourceGroup> = self.desired.keys().copied().collect();
        self.cache.set_wanted(&wanted, now);
        self.traces.retain(|sg, _| wanted.contains(sg));
    }

    fn start_lookups(&mut self, now: Instant) {
        while let Some(sg) = self.cache.poll_fetch(now) {
            let client = self.client.clone();
            let semaphore = self.semaphore.clone();
            let results = self.results.clone();
            tokio::spawn(async move {
                let Ok(_permit) = semaphore.acquire_owned().await else { return };
                let fetch = client.fetch(sg).await;
                let _ = results.send((sg, fetch)).await;
            });
        }
    }

    fn on_fetch(&mut self, sg: SourceGroup, fetch: Fetch, now: Instant) {
        self.metrics.fetched(&fetch.result);
        if !self.desired.contains_key(&sg) {
            debug!(%sg, "lookup result for a flow no longer wanted");
            self.metrics.dropped(Drop::StaleResult, 1);
            return;
        }
        log_fetch(sg, &fetch);
        self.traces.insert(sg, fetch.trace);
        if let Some(change) = self.cache.on_result(sg, fetch.result, now)
            && change.before != change.after
            && change.before.is_some()
        {
            info!(
                %sg,
                before = %change.before.map_or("unknown".into(), |r| r.to_string()),
                after = %change.after.map_or("unknown".into(), |r| r.to_string()),
                "rate changed"
            );
        }
    }

    fn evaluate(&mut self, now: Instant) {
        let inputs: Vec<FlowInput> = self
            .desired
            .iter()
            .map(|(sg, population)| {
                let info = self.cache.info(sg, now);
                FlowInput {
                    sg: *sg,
                    population: population.unwrap_or(1),
                    rate: info.rate,
                    priority: info.priority,
                    pending: info.pending,
                }
            })
            .collect();
        // At start, until the first lookups have answered (at most --metadata-wait), nothing
        // is decided: a trial evaluation shows in `status`, but neither the output nor the
        // admission state changes. So the flows compete with all their rates known at once,
        // not in the order their lookups happen to finish (which would let an early finisher
        // win the "already admitted" tie-break), and a restart does not write a short output
        // that would make driad-ingest drop working tunnels.
        if !self.written_once && self.cache.any_pending(now) {
            self.last = Some(self.admission.clone().evaluate(now, inputs));
            return;
        }
        let e = self.admission.evaluate(now, inputs);
        self.log_decisions(&e, now);
        let changed = self.last.as_ref().is_none_or(|l| l.admitted != e.admitted);
        if changed {
            info!(
                admitted = e.admitted.len(),
                flows = e.flows.len(),
                admitted_rate = %e.admitted_rate,
                cap = %self.admission.config().cap,
                desired_rate = %e.desired_rate,
                "admission"
            );
        }
        self.last = Some(e);
        self.write_output(now);
    }

    fn log_decisions(&mut self, e: &Evaluation, now: Instant) {
        let mut reasons = BTreeMap::new();
        for d in &e.flows {
            reasons.insert(d.sg, d.reason);
            if self.reasons.get(&d.sg) == Some(&d.reason) {
                continue;
            }
            let info = self.cache.info(&d.sg, now);
            let rate = d.rate.map_or("unknown".to_owned(), |r| r.to_string());
            let origin = match &info.origin {
                cbacc::cache::Origin::Dorms { url, .. } => url.clone(),
                other => format!("{other:?}").to_lowercase(),
            };
            let hold = d.hold_until.map(|t| humantime::format_duration(Duration::from_secs((t - now).as_secs())));
            match d.reason {
                Reason::Admitted => info!(sg = %d.sg, %rate, %origin, "flow admitted"),
                Reason::OverCap => warn!(
                    sg = %d.sg, %rate, %origin, offload = d.offload as u64,
                    hold_down = %hold.map_or(String::new(), |h| h.to_string()),
                    "flow blocked: does not fit under the cap"
                ),
                Reason::HeldDown => {
                    info!(sg = %d.sg, %rate, remaining = %hold.map_or(String::new(), |h| h.to_string()), "flow held down")
                }
                Reason::NoRate => warn!(
                    sg = %d.sg,
                    why = info.last_problem.as_deref().unwrap_or("-"),
                    "flow blocked: no metadata, no default"
                ),
                Reason::Pending => debug!(sg = %d.sg, "flow waiting for its metadata"),
            }
        }
        self.reasons = reasons;
    }

    fn write_output(&mut self, now: Instant) {
        if self.write_retry.is_some_and(|t| t > now) {
            return;
        }
        let Some(e) = &self.last else { return };
        match self.writer.write_sgs_if_changed(e.admitted.iter().copied()) {
            Ok(written) => {
                self.write_retry = None;
                if written {
                    info!(output = %self.output.display(), flows = e.admitted.len(), "output written");
                    self.metrics.output_writes.inc();
                }
                self.written_once = true;
            }
            Err(err) => return self.output_failed(&err, now),
        }
        // Someone else truncated, overwrote or removed the output: put it back (driad-ingest
        // would otherwise act on it until the admitted set changes). One stat a second.
        if now >= self.next_repair {
            self.next_repair = now + WRITE_RETRY;
            match self.writer.repair() {
                Ok(true) => warn!(output = %self.output.display(), "the output was changed by someone else; rewritten"),
                Ok(false) => {}
                Err(err) => return self.output_failed(&err, now),
            }
        }
        if self.output_error.take().is_some() {
            info!(output = %self.output.display(), "output written again");
        }
    }

    /// A write failed (disk full, the path is a directory...): the previous output stays (atomic
    /// replace) and the write is retried every second. Logged once per distinct error.
    fn output_failed(&mut self, err: &std::io::Error, now: Instant) {
        let text = err.to_string();
        self.metrics.output_write_failures.inc();
        if self.output_error.as_deref() != Some(text.as_str()) {
            error!(output = %self.output.display(), error = %text, "cannot write the output; the previous one stays, retrying every second");
        }
        self.output_error = Some(text);
        self.write_retry = Some(now + WRITE_RETRY);
    }

    fn status(&self, now: Instant) -> Value {
        let cap = self.admission.config().cap;
        let mut flows = Vec::new();
        if let Some(e) = &self.last {
            for d in &e.flows {
                let info = self.cache.info(&d.sg, now);
                let population = self.desired.get(&d.sg).copied().flatten();
                let hold = d.hold_until.or(self.admission.hold_until(&d.sg));
                let hold_remaining = hold.filter(|t| *t > now).map(|t| (t - now).as_secs_f64());
                flows.push(json!({
                    "sg": d.sg.to_string(),
                    "source": d.sg.source.to_string(),
                    "group": d.sg.group.to_string(),
                    "population": population.unwrap_or(1),
                    "population_given": population.is_some(),
                    "rate_bps": d.rate.map(Rate::bps),
                    "rate": d.rate.map(|r| r.to_string()),
                    "origin": info.origin,
                    "priority": info.priority,
                    "metadata": info.metadata,
                    "offload_bps": d.offload.min(u128::from(u64::MAX)) as u64,
                    "rank": d.rank,
                    "admitted": d.admitted,
                    "reason": d.reason,
                    "hold_down_remaining_secs": hold_remaining,
                    "last_problem": info.last_problem,
                    "next_lookup_in_secs": info.next_fetch.map(|t| t.saturating_duration_since(now).as_secs_f64()),
                    "last_lookup": self.traces.get(&d.sg),
                }));
            }
        }
        let ignored: Vec<Value> = self
            .client
            .ignored()
            .into_iter()
            .map(|(server, left, why)| json!({"server": server, "remaining_secs": left.as_secs_f64(), "reason": why}))
            .collect();
        let e = self.last.as_ref();
        json!({
            "daemon": "cbacc",
            "input_file": self.input.display().to_string(),
            "output_file": self.output.display().to_string(),
            "uptime_secs": now.duration_since(self.started).as_secs_f64(),
            "cap_bps": cap.bps(),
            "cap": cap.to_string(),
            "default_bps": self.cache.config().default_rate.map(Rate::bps),
            "default": self.cache.config().default_rate.map(|r| r.to_string()),
            "admitted_bps": e.map_or(0, |e| e.admitted_rate.bps()),
            "admitted": e.map_or(Rate::ZERO, |e| e.admitted_rate).to_string(),
            "desired_bps": e.map_or(0, |e| e.desired_rate.bps()),
            "hold_down_secs": self.admission.config().hold_down.as_secs_f64(),
            "hold_down_jitter_secs": self.admission.config().hold_down_jitter.as_secs_f64(),
            "refresh_secs": self.cache.config().refresh.as_secs_f64(),
            "lookups_running": self.cache.in_flight(),
            "held_down": self.admission.holds(),
            "ignored_servers": ignored,
            "flows": flows,
        })
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
