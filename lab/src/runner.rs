//! `mcast-lab run`: each scenario in a fresh lab, one line per scenario with its timings,
//! `N passed, M failed` at the end; a failed scenario's run directory (logs, receiver
//! reports, pcaps, step log, diagnostics) is kept under the results folder.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;
use serde::Serialize;

use crate::capture;
use crate::lab::{Lab, LabOptions, SpawnSpec};
use crate::scenario::{Action, Check, Expect, Scenario, Step, StepKind};
use crate::signals;
use crate::topology::Topology;
use crate::traffic::stats::RecvReport;
use crate::util::{fmt_secs, utc_stamp};

/// Options of `mcast-lab run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenarios: Vec<PathBuf>,
    /// Topology for scenarios that do not name their own (default: the embedded one).
    pub topology: Option<PathBuf>,
    pub json: Option<PathBuf>,
    /// Where failed scenarios' run directories are kept.
    pub results_dir: PathBuf,
    /// Keep results of passing scenarios too.
    pub keep_all: bool,
    pub bin_dir: Option<PathBuf>,
    /// Print every step as it runs.
    pub verbose: bool,
}

/// One scenario's outcome (the `--json` report holds a list of these).
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub path: PathBuf,
    /// `passed`, `failed` or `skipped`.
    pub status: String,
    pub setup_s: f64,
    pub run_s: f64,
    pub teardown_s: f64,
    pub error: Option<String>,
    pub failed_step: Option<usize>,
    pub results: Option<PathBuf>,
    pub run_id: Option<String>,
    pub steps: Vec<StepResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub index: usize,
    pub kind: String,
    pub ok: bool,
    pub at_s: f64,
    pub duration_s: f64,
    pub detail: String,
}

/// The whole run's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub duration_s: f64,
    pub scenarios: Vec<ScenarioResult>,
}

/// Runs the scenarios; returns the report (the caller exits non-zero if anything failed).
pub fn run_all(opts: &RunOptions) -> Result<Report> {
    let t0 = Instant::now();
    let mut results = Vec::new();
    let width = opts.scenarios.iter().map(|p| p.file_stem().map_or(0, |s| s.len())).max().unwrap_or(10).max(10);
    for path in &opts.scenarios {
        if signals::stop_requested() {
            break;
        }
        // A panic fails the scenario (its lab is torn down while unwinding), not the run.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_one(path, opts))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            failed(&stem, path, format!("panicked: {msg}"))
        });
        print_line(&r, width);
        results.push(r);
    }
    let passed = results.iter().filter(|r| r.status == "passed").count();
    let failed = results.iter().filter(|r| r.status == "failed").count();
    let skipped = results.iter().filter(|r| r.status == "skipped").count();
    let report = Report { passed, failed, skipped, duration_s: t0.elapsed().as_secs_f64(), scenarios: results };
    if let Some(p) = &opts.json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", p.display()))?;
    }
    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(report)
}

fn print_line(r: &ScenarioResult, width: usize) {
    let tag = match r.status.as_str() {
        "passed" => "PASS",
        "failed" => "FAIL",
        _ => "SKIP",
    };
    println!(
        "{tag}  {:<width$}  setup {:>6}  run {:>7}  teardown {:>6}",
        r.name,
        fmt_secs(Duration::from_secs_f64(r.setup_s)),
        fmt_secs(Duration::from_secs_f64(r.run_s)),
        fmt_secs(Duration::from_secs_f64(r.teardown_s)),
    );
    if let Some(e) = &r.error {
        let step = r.failed_step.map(|s| format!("step {s}: ")).unwrap_or_default();
        for (i, line) in format!("{step}{e}").lines().enumerate() {
            println!("      {}{line}", if i == 0 { "" } else { "  " });
        }
    }
    if let Some(p) = &r.results {
        println!("      results kept in {}", p.display());
    }
}

fn failed(name: &str, path: &Path, error: String) -> ScenarioResult {
    ScenarioResult {
        name: name.to_string(),
        path: path.to_path_buf(),
        status: "failed".into(),
        setup_s: 0.0,
        run_s: 0.0,
        teardown_s: 0.0,
        error: Some(error),
        failed_step: None,
        results: None,
        run_id: None,
        steps: Vec::new(),
    }
}

/// Runs one scenario in a fresh lab.
pub fn run_one(path: &Path, opts: &RunOptions) -> ScenarioResult {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let sc = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => return failed(&stem, path, format!("{e:#}")),
    };
    let bin = match &opts.bin_dir {
        Some(b) => b.clone(),
        None => match crate::util::bin_dir() {
            Ok(b) => b,
            Err(e) => return failed(&sc.name, path, format!("{e:#}")),
        },
    };
    let missing: Vec<&String> = sc.requires.iter().filter(|r| !bin.join(r).exists()).collect();
    if !missing.is_empty() {
        let mut r = failed(&sc.name, path, String::new());
        r.status = "skipped".into();
        r.error = Some(format!(
            "requires {} (not found in {})",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            bin.display()
        ));
        return r;
    }
    let topo_path = sc.topology.clone().or_else(|| opts.topology.clone());
    let topo = Topology::load(topo_path.as_deref()).and_then(|mut t| {
        t.set_vars(&sc.vars)?;
        Ok(t)
    });
    let topo = match topo {
        Ok(t) => t,
        Err(e) => return failed(&sc.name, path, format!("{e:#}")),
    };
    let lab_opts = LabOptions { purpose: format!("run {}", sc.name), bin_dir: Some(bin), ..Default::default() };
    let t_setup = Instant::now();
    let lab = match Lab::up(topo, &lab_opts) {
        Ok(l) => l,
        Err(e) => {
            let mut r = failed(&sc.name, path, format!("lab setup: {e:#}"));
            r.setup_s = t_setup.elapsed().as_secs_f64();
            return r;
        }
    };
    let setup = lab.setup_time;
    let mut ctx = Ctx::new(lab, &sc, opts.verbose);
    let t_run = Instant::now();
    let outcome = ctx.run_steps(&sc);
    let run = t_run.elapsed();
    let mut result = ScenarioResult {
        name: sc.name.clone(),
        path: path.to_path_buf(),
        status: "passed".into(),
        setup_s: setup.as_secs_f64(),
        run_s: run.as_secs_f64(),
        teardown_s: 0.0,
        error: None,
        failed_step: None,
        results: None,
        run_id: Some(ctx.lab.id.to_string()),
        steps: std::mem::take(&mut ctx.steps),
    };
    ctx.unmount_all();
    let keep = match &outcome {
        Err((step, e)) => {
            result.status = "failed".into();
            result.error = Some(e.clone());
            result.failed_step = *step;
            ctx.log(&format!("FAILED: {e}"));
            let diag = ctx.lab.diagnostics();
            let _ = std::fs::write(ctx.lab.dir.join("diagnostics.txt"), diag);
            true
        }
        Ok(()) => opts.keep_all,
    };
    if keep {
        let dest = opts.results_dir.join(format!("{}-{}", utc_stamp(), sc.name));
        let dest = if dest.exists() { dest.with_extension(ctx.lab.id.as_str()) } else { dest };
        ctx.lab.keep_results(dest.clone());
        result.results = Some(dest);
    }
    let td = ctx.lab.teardown();
    result.teardown_s = td.duration.as_secs_f64();
    if !td.errors.is_empty() && result.error.is_none() {
        result.status = "failed".into();
        result.error = Some(format!("teardown: {}", td.errors.join("; ")));
    }
    result
}

/// What a named background thing of a scenario is.
#[derive(Debug, Clone)]
enum Handle {
    Receiver { key: String, stats: PathBuf },
    Sender { key: String },
    Capture { keys: Vec<String>, files: Vec<PathBuf> },
    Command { key: String },
}

impl Handle {
    fn keys(&self) -> Vec<String> {
        match self {
            Handle::Receiver { key, .. } | Handle::Sender { key } | Handle::Command { key } => vec![key.clone()],
            Handle::Capture { keys, .. } => keys.clone(),
        }
    }
}

/// Result of evaluating a check once.
enum Outcome {
    Pass(String),
    Fail(String),
}

struct Ctx {
    lab: Lab,
    handles: BTreeMap<String, Handle>,
    started: Instant,
    deadline: Instant,
    log: Option<std::fs::File>,
    verbose: bool,
    steps: Vec<StepResult>,
    scenario_dir: PathBuf,
    /// VmRSS (KiB) recorded by `mark_rss`, per target.
    rss_marks: BTreeMap<String, u64>,
    /// tmpfs mounts of `mount_tmpfs`, unmounted when the scenario ends.
    mounts: Vec<PathBuf>,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // A panic in a step: the mounts go before the lab's own teardown removes the run dir.
        self.unmount_all();
    }
}

impl Ctx {
    fn new(lab: Lab, sc: &Scenario, verbose: bool) -> Ctx {
        let log = OpenOptions::new().create(true).append(true).open(lab.dir.join("scenario.log")).ok();
        let now = Instant::now();
        let mut c = Ctx {
            lab,
            handles: BTreeMap::new(),
            started: now,
            deadline: now + sc.timeout.0,
            log,
            verbose,
            steps: Vec::new(),
            scenario_dir: sc.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
            rss_marks: BTreeMap::new(),
            mounts: Vec::new(),
        };
        c.log(&format!(
            "scenario {} ({}) in run {} (setup {})",
            sc.name,
            sc.path.display(),
            c.lab.id,
            fmt_secs(c.lab.setup_time)
        ));
        c
    }

    fn log(&mut self, msg: &str) {
        let line = format!("[{:>8.3}s] {msg}", self.started.elapsed().as_secs_f64());
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        if self.verbose {
            println!("      {line}");
        }
    }

    fn run_steps(&mut self, sc: &Scenario) -> std::result::Result<(), (Option<usize>, String)> {
        for step in &sc.steps {
            let t = Instant::now();
            let at = self.started.elapsed().as_secs_f64();
            let note = step.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            self.log(&format!("step {} {}{note}: {}", step.index, step.kind_name(), describe(step)));
            let r = if Instant::now() > self.deadline {
                Err(anyhow!("scenario timeout ({}) reached", fmt_secs(sc.timeout.0)))
            } else {
                self.step(step)
            };
            let (ok, detail) = match &r {
                Ok(d) => (true, d.clone()),
                Err(e) => (false, format!("{e:#}")),
            };
            self.log(&format!("  -> {} in {}: {detail}", if ok { "ok" } else { "FAILED" }, fmt_secs(t.elapsed())));
            self.steps.push(StepResult {
                index: step.index,
                kind: step.kind_name(),
                ok,
                at_s: at,
                duration_s: t.elapsed().as_secs_f64(),
                detail: detail.clone(),
            });
            if !ok {
                return Err((Some(step.index), format!("{}{note}: {detail}", step.kind_name())));
            }
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<String> {
        match &step.kind {
            StepKind::Action(a) => self.action(a),
            StepKind::Expect(e) => self.expect(e),
        }
    }

    fn expand(&self, node: Option<&str>, text: &str) -> String {
        let s = match node {
            Some(n) => self.lab.expand(n, text),
            None => self.lab.expand_namespaces(&crate::util::expand_placeholders(
                text,
                &[("run", &self.lab.dir.display().to_string()), ("bin", &self.lab.bin_dir().display().to_string())],
            )),
        };
        crate::util::expand_placeholders(&s, &[("scenario", &self.scenario_dir.display().to_string())])
    }

    fn keys_of(&self, target: &str) -> Result<Vec<String>> {
        if target.contains('/') {
            return self.lab.target_keys(target);
        }
        self.handles.get(target).map(Handle::keys).ok_or_else(|| anyhow!("nothing named {target:?} was started"))
    }

    fn add_handle(&mut self, name: &str, h: Handle) -> Result<()> {
        if let Some(old) = self.handles.get(name) {
            let keys = old.keys();
            if keys.iter().any(|k| self.lab.is_running(k)) {
                bail!("{name:?} is still running");
            }
        }
        self.handles.insert(name.to_string(), h);
        Ok(())
    }

    /// Expands `{pid:TARGET}` (a service `node/name`, an FRR daemon, or a named background
    /// process of this scenario) to the PID of the running process.
    fn expand_pids(&mut self, text: &str) -> Result<String> {
        let re = regex::Regex::new(r"\{pid:([^}]+)\}").expect("valid regex");
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for cap in re.captures_iter(text) {
            let (all, target) = (cap.get(0).expect("match"), &cap[1]);
            out.push_str(&text[last..all.start()]);
            out.push_str(&self.target_pid(target)?.to_string());
            last = all.end();
        }
        out.push_str(&text[last..]);
        Ok(out)
    }

    /// The PID of a running target that is one process.
    fn target_pid(&mut self, target: &str) -> Result<u32> {
        let keys = self.keys_of(target)?;
        let [key] = keys.as_slice() else { bail!("{target:?} is {} processes, not one", keys.len()) };
        self.lab.pid(key).ok_or_else(|| anyhow!("{target} is not running"))
    }

    /// VmRSS of a running target, in KiB.
    fn rss_kib(&mut self, target: &str) -> Result<u64> {
        let pid = self.target_pid(target)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status of {target}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
    }

    /// Lazily unmounts every tmpfs of `mount_tmpfs` (processes may still hold files there).
    fn unmount_all(&mut self) {
        for path in std::mem::take(&mut self.mounts).into_iter().rev() {
            let out = std::process::Command::new("umount").arg("-l").arg(&path).output();
            match out {
                Ok(o) if o.status.success() => self.log(&format!("unmounted {}", path.display())),
                Ok(o) => self.log(&format!("umount {}: {}", path.display(), String::from_utf8_lossy(&o.stderr).trim())),
                Err(e) => self.log(&format!("umount {}: {e}", path.display())),
            }
        }
    }

    fn mcast_lab(&self) -> String {
        self.lab.mcast_lab_exe().display().to_string()
    }

    fn action(&mut self, a: &Action) -> Result<String> {
        match a {
            Action::Start { target } => {
                self.lab.start(target)?;
                Ok(format!("started {target}"))
            }
            Action::Stop { target } => {
                let mut st = Vec::new();
                if target.contains('/') {
                    self.lab.stop(target)?;
                } else {
                    for k in self.keys_of(target)? {
                        if let Some(s) = self.lab.stop_key(&k, Signal::SIGTERM, Duration::from_secs(3))? {
                            st.push(format!("{k}: {s}"));
                        }
                    }
                }
                Ok(format!("stopped {target} {}", st.join(", ")))
            }
            Action::Restart { target } => {
                self.lab.restart(target)?;
                Ok(format!("restarted {target}"))
            }
            Action::Kill { target } => {
                if target.contains('/') {
                    self.lab.kill(target)?;
                } else {
                    for k in self.keys_of(target)? {
                        self.lab.stop_key(&k, Signal::SIGKILL, Duration::from_secs(1))?;
                    }
                }
                Ok(format!("killed {target}"))
            }
            Action::Run { node, cmd, background: false, timeout, check, .. } => {
                let cmd = &self.expand_pids(cmd)?;
                let out = self.lab.run(node, cmd, timeout.0)?;
                let text = out.text();
                if *check && !out.status.success() {
                    bail!("`{cmd}` in {node}: {}: {}", out.status, text.trim());
                }
                Ok(format!("{}: {}", out.status, short(&text)))
            }
            Action::Run { node, cmd, background: true, name, .. } => {
                let name = name.clone().unwrap_or_default();
                let key = format!("bg:{name}");
                let cmd = self.expand_pids(cmd)?;
                let spec = SpawnSpec {
                    shell: Some(self.expand(Some(node), &cmd)),
                    log: Some(self.lab.dir.join(format!("{name}.log"))),
                    ..Default::default()
                };
                self.add_handle(&name, Handle::Command { key: key.clone() })?;
                let pid = self.lab.spawn(&key, node, &spec)?;
                Ok(format!("{name} running as pid {pid}"))
            }
            Action::Join { receiver, node, source, group, port, interface } => {
                self.start_receiver(receiver, node, *source, *group, *port, interface.as_deref(), false)
            }
            Action::Listen { receiver, node, source, group, port } => {
                self.start_receiver(receiver, node, *source, *group, *port, None, true)
            }
            Action::Leave { receiver } => {
                let Some(Handle::Receiver { key, stats }) = self.handles.get(receiver).cloned() else {
                    bail!("no receiver {receiver:?}");
                };
                let st = self.lab.stop_key(&key, Signal::SIGTERM, Duration::from_secs(3))?;
                let rep = read_report(&stats).map(|r| r.summary_line()).unwrap_or_else(|e| format!("{e:#}"));
                Ok(format!(
                    "{receiver} left ({}): {rep}",
                    st.map(|s| s.to_string()).unwrap_or_else(|| "not running".into())
                ))
            }
            Action::Send { name, node, source, group, port, rate, count, size, interface, ttl, skip_seq, wait } => {
                let mut argv = vec![
                    self.mcast_lab(),
                    "send".into(),
                    "--source".into(),
                    source.to_string(),
                    "--group".into(),
                    group.to_string(),
                    "--port".into(),
                    port.to_string(),
                    "--rate".into(),
                    rate.to_string(),
                    "--count".into(),
                    count.to_string(),
                    "--size".into(),
                    size.to_string(),
                    "--ttl".into(),
                    ttl.to_string(),
                ];
                if let Some(i) = interface {
                    argv.extend(["--interface".into(), i.clone()]);
                }
                if !skip_seq.is_empty() {
                    argv.extend(["--skip-seq".into(), skip_seq.join(",")]);
                }
                let key = format!("send:{name}");
                let log = self.lab.dir.join(format!("send-{name}.log"));
                self.add_handle(name, Handle::Sender { key: key.clone() })?;
                self.lab.spawn(&key, node, &SpawnSpec { argv, log: Some(log.clone()), ..Default::default() })?;
                if !*wait {
                    return Ok(format!("{name} sending ({source}, {group}):{port} from {node}"));
                }
                loop {
                    signals::check()?;
                    if let Some(st) = self.lab.exit_status(&key)
                        && !self.lab.is_running(&key)
                    {
                        let text = std::fs::read_to_string(&log).unwrap_or_default();
                        if !st.success() {
                            bail!("sender {name} failed ({st}): {}", text.trim());
                        }
                        return Ok(format!("{name} done: {}", short(text.lines().last().unwrap_or(""))));
                    }
                    if Instant::now() > self.deadline {
                        bail!("scenario timeout while waiting for sender {name}");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Action::Capture { name, node, interfaces, filter } => {
                let dir = self.lab.dir.join("captures");
                std::fs::create_dir_all(&dir)?;
                let mut keys = Vec::new();
                let mut files = Vec::new();
                let mut logs = Vec::new();
                for ifname in interfaces {
                    let file = capture::capture_file(&dir, name, ifname);
                    let log = dir.join(format!("{name}-{ifname}.log"));
                    let key = format!("cap:{name}:{ifname}");
                    let argv = capture::tcpdump_argv(ifname, &file, filter);
                    self.lab.spawn(&key, node, &SpawnSpec { argv, log: Some(log.clone()), ..Default::default() })?;
                    keys.push(key);
                    files.push(file);
                    logs.push(log);
                }
                self.add_handle(name, Handle::Capture { keys: keys.clone(), files })?;
                for (key, log) in keys.iter().zip(&logs) {
                    let lab = &mut self.lab;
                    capture::wait_listening(log, Duration::from_secs(10), || !lab.is_running(key))
                        .with_context(|| format!("capture {name} ({key})"))?;
                }
                Ok(format!("capturing on {node} {}", interfaces.join(", ")))
            }
            Action::WriteFile { path, node, content, append } => {
                let p = PathBuf::from(self.expand(node.as_deref(), path));
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if *append {
                    let mut f = OpenOptions::new().create(true).append(true).open(&p)?;
                    f.write_all(content.as_bytes())?;
                } else {
                    crate::util::write_atomic(&p, content.as_bytes())?;
                }
                Ok(format!("wrote {} bytes to {}", content.len(), p.display()))
            }
            Action::Wait { duration } => {
                signals::sleep(duration.0)?;
                Ok(String::new())
            }
            Action::MarkRss { target } => {
                let kib = self.rss_kib(target)?;
                self.rss_marks.insert(target.clone(), kib);
                Ok(format!("{target}: VmRSS {kib} KiB"))
            }
            Action::MountTmpfs { path, node, size, mode } => {
                let p = PathBuf::from(self.expand(node.as_deref(), path));
                std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
                let out = std::process::Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={size},mode={mode}"), "tmpfs"])
                    .arg(&p)
                    .output()
                    .context("running mount")?;
                if !out.status.success() {
                    bail!("mount tmpfs on {}: {}", p.display(), String::from_utf8_lossy(&out.stderr).trim());
                }
                self.mounts.push(p.clone());
                Ok(format!("tmpfs of {size} on {}", p.display()))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_receiver(
        &mut self,
        receiver: &str,
        node: &str,
        source: std::net::IpAddr,
        group: std::net::IpAddr,
        port: u16,
        interface: Option<&str>,
        listen_only: bool,
    ) -> Result<String> {
        let stats = self.lab.dir.join(format!("recv-{receiver}.json"));
        let _ = std::fs::remove_file(&stats);
        let mut argv = vec![
            self.mcast_lab(),
            "recv".into(),
            "--source".into(),
            source.to_string(),
            "--group".into(),
            group.to_string(),
            "--port".into(),
            port.to_string(),
            "--count".into(),
            "0".into(),
            "--stats-file".into(),
            stats.display().to_string(),
            "--stats-interval".into(),
            "100ms".into(),
        ];
        if let Some(i) = interface {
            argv.extend(["--interface".into(), i.to_string()]);
        }
        if listen_only {
            argv.push("--no-join".into());
        }
        let key = format!("recv:{receiver}");
        let log = self.lab.dir.join(format!("recv-{receiver}.log"));
        self.add_handle(receiver, Handle::Receiver { key: key.clone(), stats: stats.clone() })?;
        self.lab.spawn(&key, node, &SpawnSpec { argv, log: Some(log.clone()), ..Default::default() })?;
        // The report file appears right after the join.
        let t0 = Instant::now();
        while !stats.exists() {
            signals::check()?;
            if !self.lab.is_running(&key) {
                bail!("receiver exited: {}", std::fs::read_to_string(&log).unwrap_or_default().trim());
            }
            if t0.elapsed() > Duration::from_secs(5) {
                bail!("receiver did not start within 5 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let what = if listen_only { "listening (no join) on" } else { "joined" };
        Ok(format!("{receiver} {what} ({source}, {group}):{port} in {node} after {}", fmt_secs(t0.elapsed())))
    }

    fn expect(&mut self, e: &Expect) -> Result<String> {
        let t0 = Instant::now();
        let limit = e.during.unwrap_or(e.within).0;
        let end = (t0 + limit).min(self.deadline.max(t0));
        loop {
            signals::check()?;
            let outcome = self.evaluate(&e.check).unwrap_or_else(|err| Outcome::Fail(format!("{err:#}")));
            let now = Instant::now();
            let last = match (e.during.is_some(), outcome) {
                (false, Outcome::Pass(d)) => return Ok(format!("{d} (after {})", fmt_secs(now - t0))),
                (true, Outcome::Fail(d)) => bail!("violated after {}: {d}", fmt_secs(now - t0)),
                (_, Outcome::Fail(d) | Outcome::Pass(d)) => d,
            };
            if now >= end {
                if e.during.is_some() {
                    return Ok(format!("{last} (held for {})", fmt_secs(now - t0)));
                }
                if end < t0 + limit {
                    bail!("scenario timeout reached while waiting: {last}");
                }
                bail!("not met within {}: {last}", fmt_secs(limit));
            }
            std::thread::sleep(Duration::from_millis(100).min(end.saturating_duration_since(Instant::now())));
        }
    }

    fn evaluate(&mut self, c: &Check) -> Result<Outcome> {
        match c {
            Check::Received { receiver, min, max, max_lost, min_lost, lost, max_duplicates, max_reordered } => {
                let Some(Handle::Receiver { stats, .. }) = self.handles.get(receiver) else {
                    bail!("no receiver {receiver:?}");
                };
                let r = match read_report(stats) {
                    Ok(r) => r,
                    Err(e) => return Ok(Outcome::Fail(format!("{e:#}"))),
                };
                let min = min.unwrap_or(if *max == Some(0) { 0 } else { 1 });
                let max_lost = max_lost.unwrap_or(if min_lost.is_some() || lost.is_some() { u64::MAX } else { 0 });
                let mut problems = Vec::new();
                if r.received < min {
                    problems.push(format!("received {} < {min}", r.received));
                }
                if let Some(m) = max
                    && r.received > *m
                {
                    problems.push(format!("received {} > {m}", r.received));
                }
                if r.lost > max_lost {
                    problems.push(format!("lost {} > {max_lost} (gaps {:?})", r.lost, r.gap_ranges));
                }
                if let Some(m) = min_lost
                    && r.lost < *m
                {
                    problems.push(format!("lost {} < {m}", r.lost));
                }
                if let Some(l) = lost
                    && r.lost != *l
                {
                    problems.push(format!("lost {} != {l}", r.lost));
                }
                if let Some(m) = max_duplicates
                    && r.duplicates > *m
                {
                    problems.push(format!("duplicates {} > {m}", r.duplicates));
                }
                if let Some(m) = max_reordered
                    && r.reordered > *m
                {
                    problems.push(format!("reordered {} > {m}", r.reordered));
                }
                let line = r.summary_line();
                Ok(if problems.is_empty() {
                    Outcome::Pass(line)
                } else {
                    Outcome::Fail(format!("{}: {line}", problems.join(", ")))
                })
            }
            Check::File { path, node, line, lacks_line, matches, not_matches } => {
                let p = PathBuf::from(self.expand(node.as_deref(), path));
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let name = p.display();
                if let Some(l) = line
                    && !lines.contains(&l.as_str())
                {
                    return Ok(Outcome::Fail(format!("{name} has no line {l:?} ({} lines)", lines.len())));
                }
                if let Some(l) = lacks_line
                    && lines.contains(&l.as_str())
                {
                    return Ok(Outcome::Fail(format!("{name} has the line {l:?}")));
                }
                if let Some(r) = matches {
                    let re = regex::Regex::new(r)?;
                    match lines.iter().find(|l| re.is_match(l)) {
                        None => {
                            return Ok(Outcome::Fail(format!(
                                "no line of {name} matches /{r}/ ({} lines)",
                                lines.len()
                            )));
                        }
                        Some(l) if not_matches.is_none() && line.is_none() && lacks_line.is_none() => {
                            return Ok(Outcome::Pass(format!("{name}: {}", short(l))));
                        }
                        Some(_) => {}
                    }
                }
                if let Some(r) = not_matches {
                    let re = regex::Regex::new(r)?;
                    if let Some(l) = lines.iter().find(|l| re.is_match(l)) {
                        return Ok(Outcome::Fail(format!("{name} has a line matching /{r}/: {}", short(l))));
                    }
                }
                Ok(Outcome::Pass(format!("{name} as expected ({} lines)", lines.len())))
            }
            Check::Alive { target } => {
                let keys = self.keys_of(target)?;
                let down: Vec<String> = keys.iter().filter(|k| !self.lab.is_running(k)).cloned().collect();
                Ok(if down.is_empty() {
                    Outcome::Pass(format!("{target} running"))
                } else {
                    let why: Vec<String> = down
                        .iter()
                        .map(|k| match self.lab.exit_status(k) {
                            Some(s) => format!("{k} exited ({s})"),
                            None => format!("{k} not started"),
                        })
                        .collect();
                    Outcome::Fail(why.join(", "))
                })
            }
            Check::Dead { target } => {
                let keys = self.keys_of(target)?;
                let up: Vec<String> = keys.iter().filter(|k| self.lab.is_running(k)).cloned().collect();
                Ok(if up.is_empty() {
                    Outcome::Pass(format!("{target} not running"))
                } else {
                    Outcome::Fail(format!("still running: {}", up.join(", ")))
                })
            }
            Check::Exited { target, code, signal } => {
                use std::os::unix::process::ExitStatusExt;
                let want_signal = match signal {
                    Some(name) => Some(
                        name.parse::<Signal>()
                            .or_else(|_| format!("SIG{name}").parse::<Signal>())
                            .map_err(|_| anyhow!("unknown signal {name:?}"))?,
                    ),
                    None => None,
                };
                let want_code = if want_signal.is_some() { *code } else { Some(code.unwrap_or(0)) };
                let what = match (want_code, want_signal) {
                    (Some(c), _) => format!("code {c}"),
                    (None, Some(sig)) => format!("{sig}"),
                    (None, None) => "anything".into(),
                };
                let keys = self.keys_of(target)?;
                for k in &keys {
                    if self.lab.is_running(k) {
                        return Ok(Outcome::Fail(format!("{k} still running")));
                    }
                    let Some(st) = self.lab.exit_status(k) else {
                        return Ok(Outcome::Fail(format!("{k} never ran")));
                    };
                    let ok = want_code.is_none_or(|c| st.code() == Some(c))
                        && want_signal.is_none_or(|sig| st.signal() == Some(sig as i32));
                    if !ok {
                        return Ok(Outcome::Fail(format!("{k} exited with {st}, expected {what}")));
                    }
                }
                Ok(Outcome::Pass(format!("{target} exited with {what}")))
            }
            Check::Command { node, cmd, exit, matches, not_matches } => {
                let cmd = &self.expand_pids(cmd)?;
                let out = self.lab.run(node, cmd, Duration::from_secs(20))?;
                let text = out.text();
                if out.status.code() != Some(*exit) {
                    return Ok(Outcome::Fail(format!(
                        "`{cmd}`: {} (expected exit {exit}): {}",
                        out.status,
                        short(&text)
                    )));
                }
                Ok(regex_outcome(&text, matches.as_deref(), not_matches.as_deref())?)
            }
            Check::Vtysh { node, commands, matches, not_matches } => {
                let out = self.lab.vtysh(node, commands)?;
                if !out.status.success() {
                    return Ok(Outcome::Fail(format!("vtysh: {}: {}", out.status, short(&out.text()))));
                }
                Ok(regex_outcome(&out.stdout, matches.as_deref(), not_matches.as_deref())?)
            }
            Check::Rss { target, max_kib, max_growth_kib } => {
                let kib = self.rss_kib(target)?;
                let mut problems = Vec::new();
                if let Some(m) = max_kib
                    && kib > *m
                {
                    problems.push(format!("VmRSS {kib} KiB > {m} KiB"));
                }
                let mark = self.rss_marks.get(target).copied();
                if let Some(g) = max_growth_kib {
                    let Some(mark) = mark else { bail!("no mark_rss of {target} before") };
                    if kib > mark + g {
                        problems.push(format!("VmRSS {kib} KiB grew by {} KiB > {g} KiB since the mark", kib - mark));
                    }
                }
                let growth =
                    mark.map(|m| format!(", {:+} KiB since the mark", kib as i64 - m as i64)).unwrap_or_default();
                Ok(if problems.is_empty() {
                    Outcome::Pass(format!("{target}: VmRSS {kib} KiB{growth}"))
                } else {
                    Outcome::Fail(problems.join(", "))
                })
            }
            Check::Capture { capture: name, filter, min, max } => {
                let Some(Handle::Capture { files, .. }) = self.handles.get(name).cloned() else {
                    bail!("no capture {name:?}");
                };
                let mut lines = Vec::new();
                for f in &files {
                    lines.extend(capture::matching(f, filter)?);
                }
                let n = lines.len() as u64;
                let sample = lines.iter().take(3).map(|l| short(l)).collect::<Vec<_>>().join(" | ");
                if n < *min {
                    return Ok(Outcome::Fail(format!("{n} packets match {filter:?} (want >= {min}) {sample}")));
                }
                if let Some(m) = max
                    && n > *m
                {
                    return Ok(Outcome::Fail(format!("{n} packets match {filter:?} (want <= {m}): {sample}")));
                }
                Ok(Outcome::Pass(format!("{n} packets match: {sample}")))
            }
        }
    }
}

fn regex_outcome(text: &str, matches: Option<&str>, not_matches: Option<&str>) -> Result<Outcome> {
    if let Some(r) = matches {
        let re = regex::RegexBuilder::new(r).multi_line(true).build()?;
        match re.find(text) {
            None => return Ok(Outcome::Fail(format!("output does not match /{r}/: {}", short(text)))),
            Some(m) if not_matches.is_none() => return Ok(Outcome::Pass(format!("matched: {}", short(m.as_str())))),
            Some(_) => {}
        }
    }
    if let Some(r) = not_matches {
        let re = regex::RegexBuilder::new(r).multi_line(true).build()?;
        if let Some(m) = re.find(text) {
            return Ok(Outcome::Fail(format!("output matches /{r}/: {}", short(m.as_str()))));
        }
    }
    Ok(Outcome::Pass(format!("output ok: {}", short(text))))
}

fn read_report(path: &Path) -> Result<RecvReport> {
    let text = std::fs::read(path).with_context(|| format!("no receiver report {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The first 300 characters of `s`, on one line.
fn short(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 300 { format!("{}…", one.chars().take(300).collect::<String>()) } else { one }
}

fn describe(step: &Step) -> String {
    match &step.kind {
        StepKind::Action(a) => format!("{a:?}"),
        StepKind::Expect(e) => {
            let t = match e.during {
                Some(d) => format!("during {d}"),
                None => format!("within {}", e.within),
            };
            format!("{:?} {t}", e.check)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_outcomes() {
        let text = "Interface  Neighbor\nto-ing     10.9.1.2  00:00:04\n";
        assert!(matches!(regex_outcome(text, Some(r"^to-ing\s+10\.9\.1\.2"), None).unwrap(), Outcome::Pass(_)));
        assert!(matches!(regex_outcome(text, Some("10.9.1.3"), None).unwrap(), Outcome::Fail(_)));
        assert!(matches!(regex_outcome(text, None, Some("10.9.1.2")).unwrap(), Outcome::Fail(_)));
        assert!(matches!(regex_outcome(text, Some("to-ing"), Some("10.9.1.3")).unwrap(), Outcome::Pass(_)));
    }

    #[test]
    fn short_lines() {
        assert_eq!(short("a\n  b\tc"), "a b c");
        assert_eq!(short(&"x".repeat(400)).chars().count(), 301);
    }
}
