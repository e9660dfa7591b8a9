//! A running lab: namespaces, links, FRR and processes of one run, and the guard that tears
//! all of it down on normal exit, on error, on Ctrl-C (through [`crate::signals`]) and on
//! panic (through `Drop`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;

use crate::frr::{self, DaemonPaths};
use crate::netns::{self, BuildPlan, RunId, SWITCH};
use crate::process;
use crate::state::{ProcRecord, RunState, run_base};
use crate::topology::{Service, Topology};
use crate::util::{expand_placeholders, unix_now};

/// How to bring a lab up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Recorded in state.json (`up`, `run <scenario>`, `test`).
    pub purpose: String,
    /// Start the FRR daemons of every node.
    pub start_frr: bool,
    /// Start the services marked `autostart`.
    pub autostart: bool,
    /// Directory for `{bin}` (default: the directory of the running executable).
    pub bin_dir: Option<PathBuf>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions { purpose: "lab".into(), start_frr: true, autostart: true, bin_dir: None }
    }
}

/// Unprivileged daemons with CAP_NET_ADMIN create TUN devices (driad-ingest's amt0), which
/// needs /dev/net/tun to be readable and writable by everyone, the mode udev gives it on
/// Debian and Ubuntu (0666; the device itself grants nothing without CAP_NET_ADMIN). Hosts
/// without udev (containers) may leave it 0600: the lab then sets the standard mode, once,
/// and says so.
fn ensure_tun_device_access() {
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new("/dev/net/tun");
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o006 == 0o006 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o666)) {
        Ok(()) => eprintln!(
            "mcast-lab: /dev/net/tun was mode {mode:04o}; set to {:04o} (the udev default) so services running as \
             another user can create TUN devices",
            mode | 0o666
        ),
        Err(e) => tracing::warn!("/dev/net/tun is mode {mode:04o} and cannot be changed: {e}"),
    }
}

/// One process the lab started.
#[derive(Debug)]
struct Proc {
    key: String,
    node: String,
    child: std::process::Child,
    pid: u32,
    start_time: u64,
    frr_daemon: Option<String>,
}

/// What to run for [`Lab::spawn`].
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    /// argv to execute; if empty, `shell` is run with `/bin/sh -c`.
    pub argv: Vec<String>,
    pub shell: Option<String>,
    /// Where stdout and stderr go (appended); `None` = /dev/null.
    pub log: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// Run as this user (via setpriv) with these ambient capabilities.
    pub user: Option<String>,
    pub caps: Vec<String>,
}

/// Timings of a teardown, and what the final sweep found.
#[derive(Debug, Default, Clone)]
pub struct TeardownReport {
    pub duration: Duration,
    /// Processes found in the namespaces that the lab had not started itself.
    pub strays: Vec<(u32, String)>,
    pub errors: Vec<String>,
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    pub id: RunId,
    pub dir: PathBuf,
    pub topo: Topology,
    bin: PathBuf,
    ns_files: BTreeMap<String, File>,
    procs: Vec<Proc>,
    exited: BTreeMap<String, ExitStatus>,
    state: RunState,
    keep: Option<PathBuf>,
    done: bool,
    /// Wall time of [`Lab::up`].
    pub setup_time: Duration,
}

impl Lab {
    /// Creates the namespaces, links, addresses, routes and sysctls of `topo`, starts FRR and
    /// the autostart services. On any error everything created so far is torn down.
    pub fn up(topo: Topology, opts: &LabOptions) -> Result<Lab> {
        let t0 = Instant::now();
        check_root()?;
        let base = run_base();
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let id = RunId::generate(&base);
        let dir = base.join(id.as_str());
        std::fs::create_dir(&dir).with_context(|| format!("creating run directory {}", dir.display()))?;
        let bin = match &opts.bin_dir {
            Some(b) => b.clone(),
            None => crate::util::bin_dir()?,
        };
        let me = std::process::id();
        let plan_namespaces = BuildPlan { run: &id, topo: &topo, setup_dir: &dir }.namespaces();
        let state = RunState {
            run_id: id.to_string(),
            owner_pid: me,
            owner_start_time: process::start_time(me).unwrap_or(0),
            purpose: opts.purpose.clone(),
            topology: topo.origin.clone(),
            created_unix: unix_now(),
            dir: dir.clone(),
            namespaces: plan_namespaces,
            processes: Vec::new(),
            frr_history: Vec::new(),
            nodes: topo.nodes.keys().cloned().collect(),
        };
        // Recorded before anything exists, so `mcast-lab down` can always clean up.
        state.save()?;
        let mut lab = Lab {
            id,
            dir,
            topo,
            bin,
            ns_files: BTreeMap::new(),
            procs: Vec::new(),
            exited: BTreeMap::new(),
            state,
            keep: None,
            done: false,
            setup_time: Duration::ZERO,
        };
        lab.build(opts)?;
        lab.setup_time = t0.elapsed();
        Ok(lab)
    }

    fn build(&mut self, opts: &LabOptions) -> Result<()> {
        for node in self.topo.nodes.keys() {
            std::fs::create_dir_all(self.node_dir(node))?;
        }
        let setup_dir = self.dir.join("setup");
        netns::build(&BuildPlan { run: &self.id, topo: &self.topo, setup_dir: &setup_dir })?;
        for node in self.topo.nodes.keys() {
            self.ns_files.insert(node.clone(), netns::open_ns(&self.id.ns(node))?);
        }
        if opts.start_frr {
            let nodes: Vec<String> =
                self.topo.nodes.values().filter(|n| !n.frr.is_empty()).map(|n| n.name.clone()).collect();
            for node in nodes {
                self.start_frr(&node, None)?;
            }
        }
        if opts.autostart {
            let autos: Vec<String> = self
                .topo
                .nodes
                .values()
                .flat_map(|n| n.services.iter().filter(|s| s.autostart).map(move |s| format!("{}/{}", n.name, s.name)))
                .collect();
            for target in autos {
                self.start(&target)?;
            }
        }
        Ok(())
    }

    /// The namespace name of `node`.
    pub fn ns_name(&self, node: &str) -> String {
        self.id.ns(node)
    }

    /// The per-node directory inside the run directory (`{node}` in command lines).
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    /// The node's FRR directory (configs, pid files, vty sockets, logs).
    pub fn frr_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("frr")
    }

    /// Directory of `mcast-lab` and the project's daemons (`{bin}`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Path of the `mcast-lab` executable used for traffic tools and stubs.
    pub fn mcast_lab_exe(&self) -> PathBuf {
        self.bin.join("mcast-lab")
    }

    fn ns_file(&self, node: &str) -> Result<&File> {
        self.ns_files.get(node).ok_or_else(|| anyhow!("unknown node {node:?} (nodes: {})", self.node_list()))
    }

    fn node_list(&self) -> String {
        self.topo.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Expands `{bin}`, `{run}`, `{node}`, `{ns}` and `{name}` for a command line of `node`, and
    /// `{ns:OTHER}` (the namespace of any node) everywhere.
    pub fn expand(&self, node: &str, text: &str) -> String {
        let bin = self.bin.display().to_string();
        let run = self.dir.display().to_string();
        let nd = self.node_dir(node).display().to_string();
        let ns = self.ns_name(node);
        let text =
            expand_placeholders(text, &[("bin", &bin), ("run", &run), ("node", &nd), ("ns", &ns), ("name", node)]);
        self.expand_namespaces(&text)
    }

    /// Expands `{ns:NODE}` to the namespace name of NODE, so a scenario can, for example, wire
    /// a temporary veth between two nodes. Unknown nodes are left as written.
    pub fn expand_namespaces(&self, text: &str) -> String {
        let vars: Vec<(String, String)> =
            self.topo.nodes.keys().map(|n| (format!("ns:{n}"), self.ns_name(n))).collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        expand_placeholders(text, &vars)
    }

    fn save_state(&mut self) {
        self.state.processes = self
            .procs
            .iter()
            .map(|p| ProcRecord {
                key: p.key.clone(),
                node: p.node.clone(),
                pid: p.pid,
                start_time: p.start_time,
                frr_daemon: p.frr_daemon.clone(),
            })
            .collect();
        if let Err(e) = self.state.save() {
            tracing::warn!("saving run state: {e:#}");
        }
    }

    /// Starts a process inside `node` under a unique `key`.
    pub fn spawn(&mut self, key: &str, node: &str, spec: &SpawnSpec) -> Result<u32> {
        self.spawn_inner(key, node, spec, None)
    }

    fn spawn_inner(&mut self, key: &str, node: &str, spec: &SpawnSpec, frr_daemon: Option<&str>) -> Result<u32> {
        self.reap();
        if self.procs.iter().any(|p| p.key == key) {
            bail!("{key} is already running");
        }
        let mut argv: Vec<String> = Vec::new();
        if let Some(user) = &spec.user {
            let u = nix::unistd::User::from_name(user)
                .with_context(|| format!("looking up user {user}"))?
                .ok_or_else(|| anyhow!("user {user:?} does not exist"))?;
            argv.extend(["setpriv".into(), format!("--reuid={}", u.uid), format!("--regid={}", u.gid)]);
            argv.push("--clear-groups".into());
            if !spec.caps.is_empty() {
                let caps: Vec<String> = spec.caps.iter().map(|c| format!("+{c}")).collect();
                argv.push(format!("--inh-caps={}", caps.join(",")));
                argv.push(format!("--ambient-caps={}", caps.join(",")));
            }
            argv.push("--".into());
            let nd = self.node_dir(node);
            nix::unistd::chown(&nd, Some(u.uid), Some(u.gid)).with_context(|| format!("chown {}", nd.display()))?;
            if spec.caps.iter().any(|c| c == "net_admin") {
                ensure_tun_device_access();
            }
        }
        if spec.argv.is_empty() {
            let sh = spec.shell.as_deref().ok_or_else(|| anyhow!("{key}: nothing to run"))?;
            argv.extend(["/bin/sh".into(), "-c".into(), sh.to_string()]);
        } else {
            argv.extend(spec.argv.iter().cloned());
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null()).current_dir(self.node_dir(node));
        match &spec.log {
            Some(log) => {
                let mut f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .with_context(|| format!("opening log {}", log.display()))?;
                let _ =
                    writeln!(f, "=== {key} started at {:.3} in {}: {}", unix_now(), self.ns_name(node), argv.join(" "));
                cmd.stdout(f.try_clone()?).stderr(f);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        cmd.env("MCAST_LAB_RUN", self.id.as_str())
            .env("MCAST_LAB_RUN_DIR", &self.dir)
            .env("MCAST_LAB_NODE", node)
            .env("MCAST_LAB_NODE_DIR", self.node_dir(node))
            .envs(&spec.env);
        process::in_namespace(&mut cmd, Some(self.ns_file(node)?));
        let child = cmd.spawn().with_context(|| format!("starting {key} in {node}: {}", argv.join(" ")))?;
        let pid = child.id();
        let start_time = process::start_time(pid).unwrap_or(0);
        if let Some(d) = frr_daemon {
            self.state.frr_history.push((pid, d.to_string()));
        }
        self.exited.remove(key);
        self.procs.push(Proc {
            key: key.to_string(),
            node: node.to_string(),
            child,
            pid,
            start_time,
            frr_daemon: frr_daemon.map(str::to_string),
        });
        self.save_state();
        tracing::debug!("started {key} in {node}: pid {pid}");
        Ok(pid)
    }

    /// Collects exit statuses of processes that ended on their own.
    pub fn reap(&mut self) {
        let mut changed = false;
        let mut i = 0;
        while i < self.procs.len() {
            if let Ok(Some(st)) = self.procs[i].child.try_wait() {
                let p = self.procs.remove(i);
                tracing::debug!("{} (pid {}) exited: {st}", p.key, p.pid);
                self.exited.insert(p.key, st);
                changed = true;
            } else {
                i += 1;
            }
        }
        if changed {
            self.save_state();
        }
    }

    /// True while the process under `key` runs.
    pub fn is_running(&mut self, key: &str) -> bool {
        self.reap();
        self.procs.iter().any(|p| p.key == key)
    }

    /// PID of the running process under `key`.
    pub fn pid(&mut self, key: &str) -> Option<u32> {
        self.reap();
        self.procs.iter().find(|p| p.key == key).map(|p| p.pid)
    }

    /// Exit status of the last process under `key` that ended.
    pub fn exit_status(&mut self, key: &str) -> Option<ExitStatus> {
        self.reap();
        self.exited.get(key).copied()
    }

    /// Keys of the running processes.
    pub fn running_keys(&mut self) -> Vec<String> {
        self.reap();
        self.procs.iter().map(|p| p.key.clone()).collect()
    }

    /// Stops the process under `key`: `sig`, then SIGKILL after `grace`.
    pub fn stop_key(&mut self, key: &str, sig: Signal, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(i) = self.procs.iter().position(|p| p.key == key) else {
            return Ok(None);
        };
        let mut p = self.procs.remove(i);
        let st = process::stop_child(&mut p.child, sig, grace).with_context(|| format!("stopping {key}"))?;
        if let Some(d) = &p.frr_daemon
            && sig == Signal::SIGKILL
        {
            frr::remove_crash_dir(d, p.pid);
        }
        self.exited.insert(p.key.clone(), st);
        self.save_state();
        Ok(Some(st))
    }

    /// Starts the FRR daemons of `node` (all, or only `only`), zebra first.
    pub fn start_frr(&mut self, node: &str, only: Option<&str>) -> Result<()> {
        let n = self.topo.nodes.get(node).ok_or_else(|| anyhow!("unknown node {node:?}"))?.clone();
        if n.frr.is_empty() {
            bail!("node {node} runs no FRR daemons");
        }
        let dir = self.frr_dir(node);
        let ident = frr::identity()?;
        frr::prepare_dir(&dir, &ident)?;
        for d in &n.frr {
            if only.is_some_and(|o| o != d.daemon) {
                continue;
            }
            let paths = DaemonPaths::new(&dir, &d.daemon);
            let text = self.topo.render_frr_config(&n, d)?;
            std::fs::write(paths.config(), text).with_context(|| format!("writing {}", paths.config().display()))?;
            // Stale sockets from a previous instance would make readiness look immediate.
            let _ = std::fs::remove_file(paths.ready_socket());
            let key = format!("frr:{node}/{}", d.daemon);
            frr::check_installed(&d.daemon)?;
            let argv = paths.argv(&[ident.args(), d.args.clone()].concat());
            let spec = SpawnSpec { argv, log: Some(paths.out()), ..Default::default() };
            self.spawn_inner(&key, node, &spec, Some(&d.daemon))?;
            let waited = frr::wait_ready(&paths, Duration::from_secs(10), || {
                self.reap();
                self.exited.get(&key).map(|s| s.to_string())
            })?;
            tracing::debug!("FRR {node}/{} ready after {waited:?}", d.daemon);
        }
        Ok(())
    }

    fn service(&self, target: &str) -> Result<(String, Service)> {
        let (node, svc) = self.topo.service(target).ok_or_else(|| {
            let all: Vec<String> = self
                .topo
                .nodes
                .values()
                .flat_map(|n| {
                    n.services
                        .iter()
                        .map(move |s| format!("{}/{}", n.name, s.name))
                        .chain(n.frr.iter().map(move |d| format!("{}/{}", n.name, d.daemon)))
                })
                .collect();
            anyhow!("unknown service {target:?} (known: {})", all.join(", "))
        })?;
        Ok((node.name.clone(), svc.clone()))
    }

    /// The process keys a target (`node/service`, `node/<frr daemon>`, `node/frr`) covers.
    pub fn target_keys(&self, target: &str) -> Result<Vec<String>> {
        let (node, name) = target.split_once('/').ok_or_else(|| anyhow!("{target:?} is not NODE/SERVICE"))?;
        let n = self.topo.nodes.get(node).ok_or_else(|| anyhow!("unknown node {node:?} in {target:?}"))?;
        if name == "frr" {
            return Ok(n.frr.iter().map(|d| format!("frr:{node}/{}", d.daemon)).collect());
        }
        if n.frr.iter().any(|d| d.daemon == name) {
            return Ok(vec![format!("frr:{target}")]);
        }
        self.service(target)?;
        Ok(vec![format!("svc:{target}")])
    }

    /// Starts a service (`node/name`) or FRR daemon (`node/pimd`, `node/frr`).
    pub fn start(&mut self, target: &str) -> Result<()> {
        let (node, name) = target.split_once('/').ok_or_else(|| anyhow!("{target:?} is not NODE/SERVICE"))?;
        if name == "frr" {
            return self.start_frr(node, None);
        }
        if self.topo.nodes.get(node).is_some_and(|n| n.frr.iter().any(|d| d.daemon == name)) {
            return self.start_frr(node, Some(name));
        }
        let (node, svc) = self.service(target)?;
        let spec = SpawnSpec {
            // `exec`: the service's PID is the daemon's own, not a shell's.
            shell: Some(format!("exec {}", self.expand(&node, &svc.cmd))),
            log: Some(self.node_dir(&node).join(format!("{}.log", svc.name))),
            env: svc.env.iter().map(|(k, v)| (k.clone(), self.expand(&node, v))).collect(),
            user: svc.user.clone(),
            caps: svc.caps.clone(),
            ..Default::default()
        };
        self.spawn(&format!("svc:{target}"), &node, &spec)?;
        Ok(())
    }

    /// Stops a target with SIGTERM (SIGKILL after 3 s). FRR: zebra last.
    pub fn stop(&mut self, target: &str) -> Result<()> {
        let mut keys = self.target_keys(target)?;
        keys.sort_by_key(|k| k.ends_with("/zebra"));
        for k in keys {
            self.stop_key(&k, Signal::SIGTERM, Duration::from_secs(3))?;
        }
        Ok(())
    }

    /// Kills a target with SIGKILL (a crash, as far as the target can tell).
    pub fn kill(&mut self, target: &str) -> Result<()> {
        for k in self.target_keys(target)? {
            self.stop_key(&k, Signal::SIGKILL, Duration::from_secs(1))?;
        }
        Ok(())
    }

    /// Stops and starts a target again.
    pub fn restart(&mut self, target: &str) -> Result<()> {
        self.stop(target)?;
        self.start(target)
    }

    /// Runs a shell command inside `node` and waits (up to `timeout`) for its output.
    pub fn run(&mut self, node: &str, shell: &str, timeout: Duration) -> Result<CmdOutput> {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &self.expand(node, shell)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir(self.node_dir(node));
        process::in_namespace(&mut cmd, Some(self.ns_file(node)?));
        run_with_timeout(cmd, timeout).with_context(|| format!("running `{shell}` in {node}"))
    }

    /// Runs vtysh against the FRR daemons of `node`.
    pub fn vtysh(&mut self, node: &str, commands: &[String]) -> Result<CmdOutput> {
        if self.topo.nodes.get(node).is_none_or(|n| n.frr.is_empty()) {
            bail!("node {node:?} runs no FRR");
        }
        let mut cmd = frr::vtysh_command(&self.frr_dir(node), commands);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        process::in_namespace(&mut cmd, Some(self.ns_file(node)?));
        run_with_timeout(cmd, Duration::from_secs(10)).with_context(|| format!("vtysh on {node}"))
    }

    /// Copies the run directory to `dest` during teardown (after every process has stopped,
    /// so logs, receiver reports and captures are complete).
    pub fn keep_results(&mut self, dest: PathBuf) {
        self.keep = Some(dest);
    }

    /// A text dump of the lab's state (addresses, routes, mroutes, FRR views) for failure
    /// reports.
    pub fn diagnostics(&mut self) -> String {
        let mut out = String::new();
        let nodes: Vec<String> = self.topo.nodes.keys().cloned().collect();
        for node in &nodes {
            out.push_str(&format!("===== {node} ({})\n", self.ns_name(node)));
            let cmd = "ip -br addr; ip route; ip mroute 2>/dev/null; cat /proc/net/ip_mr_vif /proc/net/ip_mr_cache 2>/dev/null";
            match self.run(node, cmd, Duration::from_secs(5)) {
                Ok(o) => out.push_str(&o.stdout),
                Err(e) => out.push_str(&format!("({e:#})\n")),
            }
            if self.topo.nodes[node].frr.is_empty() {
                continue;
            }
            let cmds: Vec<String> = [
                "show ip pim neighbor",
                "show ip igmp interface",
                "show ip igmp sources",
                "show ip pim upstream",
                "show ip pim rpf",
                "show ip mroute",
                "show ip multicast",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            match self.vtysh(node, &cmds) {
                Ok(o) => out.push_str(&o.stdout),
                Err(e) => out.push_str(&format!("(vtysh: {e:#})\n")),
            }
        }
        let running = self.running_keys();
        out.push_str(&format!("===== processes\nrunning: {}\n", running.join(", ")));
        for (k, st) in &self.exited {
            out.push_str(&format!("exited: {k}: {st}\n"));
        }
        out
    }

    /// Stops everything and removes the namespaces and the run directory. Idempotent; also run
    /// by `Drop`.
    pub fn teardown(&mut self) -> TeardownReport {
        let t0 = Instant::now();
        let mut report = TeardownReport::default();
        if self.done {
            return report;
        }
        self.done = true;
        self.reap();
        // 1. Our own processes (receivers report, captures flush), 2. FRR daemons, zebra last.
        let stages: [&dyn Fn(&Proc) -> bool; 3] = [
            &|p: &Proc| p.frr_daemon.is_none(),
            &|p: &Proc| p.frr_daemon.as_deref().is_some_and(|d| d != "zebra"),
            &|p: &Proc| p.frr_daemon.as_deref() == Some("zebra"),
        ];
        for stage in stages {
            let mut batch: Vec<Proc> = Vec::new();
            let mut i = 0;
            while i < self.procs.len() {
                if stage(&self.procs[i]) {
                    batch.push(self.procs.remove(i));
                } else {
                    i += 1;
                }
            }
            for p in &batch {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-(p.pid as i32)), Signal::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(3);
            for mut p in batch {
                let left = end.saturating_duration_since(Instant::now());
                if let Err(e) = process::await_or_kill(&mut p.child, left) {
                    report.errors.push(format!("{}: {e:#}", p.key));
                }
                if let Some(d) = &p.frr_daemon {
                    frr::remove_crash_dir(d, p.pid);
                }
            }
        }
        // 3. Anything else that entered our namespaces (shells, daemonised children).
        let mut stray_pids = Vec::new();
        for ns in &self.state.namespaces {
            stray_pids.extend(process::pids_in_netns(&netns::ns_path(ns)));
        }
        report.strays = process::terminate_pids(&stray_pids, Duration::from_secs(2));
        for (pid, comm) in &report.strays {
            if matches!(comm.as_str(), "zebra" | "pimd" | "staticd" | "pim6d" | "bgpd" | "ospfd") {
                frr::remove_crash_dir(comm, *pid);
            }
        }
        for (pid, d) in &self.state.frr_history {
            frr::remove_crash_dir(d, *pid);
        }
        // 4. Namespaces (their interfaces go with them).
        self.ns_files.clear();
        for ns in &self.state.namespaces {
            if let Err(e) = netns::delete_ns(ns) {
                report.errors.push(format!("{e:#}"));
            }
        }
        // 5. Results, then the run directory.
        if let Some(dest) = self.keep.take()
            && let Err(e) = crate::util::copy_tree(&self.dir, &dest)
        {
            report.errors.push(format!("keeping results in {}: {e:#}", dest.display()));
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            report.errors.push(format!("removing {}: {e}", self.dir.display()));
        }
        report.duration = t0.elapsed();
        for e in &report.errors {
            tracing::warn!("teardown of {}: {e}", self.id);
        }
        report
    }

    /// Names of every namespace of the run (nodes and switch).
    pub fn namespaces(&self) -> &[String] {
        &self.state.namespaces
    }

    /// The switch namespace name, if the topology has bridges.
    pub fn switch_ns(&self) -> Option<String> {
        let sw = self.id.ns(SWITCH);
        self.state.namespaces.contains(&sw).then_some(sw)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.done {
            self.teardown();
        }
    }
}

/// Output of a command run to completion.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// stdout and stderr together.
    pub fn text(&self) -> String {
        if self.stderr.is_empty() { self.stdout.clone() } else { format!("{}{}", self.stdout, self.stderr) }
    }
}

/// Runs `cmd` (stdout/stderr piped) with a timeout; the process group is killed on timeout or
/// on Ctrl-C.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<CmdOutput> {
    use std::io::Read;
    let mut child = cmd.spawn().context("spawning")?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut s);
        }
        s
    });
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= end || crate::signals::stop_requested() {
            let _ = process::stop_child(&mut child, Signal::SIGKILL, Duration::from_millis(100));
            let _ = out_t.join();
            let _ = err_t.join();
            crate::signals::check()?;
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    Ok(CmdOutput { status, stdout, stderr })
}

/// The lab needs root (namespaces, FRR, raw sockets).
pub fn check_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("mcast-lab needs root to create network namespaces (try: sudo mcast-lab ...)");
    }
    Ok(())
}
