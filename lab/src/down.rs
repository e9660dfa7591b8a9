//! `mcast-lab down`: removes what a crashed (or `kill -9`ed) run left behind: its processes,
//! its namespaces (strictly `ml[0-9a-f]{4}-<node>`), FRR crash directories and its run
//! directory. Runs whose owner is alive are left alone unless named or `--all` is given;
//! then the owner is asked to stop (SIGTERM) and given time to tear down itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::sys::signal::Signal;

use crate::frr;
use crate::netns::{self, RunId};
use crate::process;
use crate::state::{RunState, list_runs, run_base};

const FRR_NAMES: &[&str] = &["zebra", "staticd", "pimd", "pim6d", "bgpd", "ospfd", "ospf6d", "bfdd"];

/// What to remove.
#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    /// A specific run (`ml3f2a`); stopped even if its owner is alive.
    pub run: Option<String>,
    /// Every run, live ones included.
    pub all: bool,
}

/// Cleans up; returns one message per action taken.
pub fn down(opts: &DownOptions) -> Result<Vec<String>> {
    crate::lab::check_root()?;
    let wanted = match &opts.run {
        Some(r) => match RunId::parse(r) {
            Some(id) => Some(id),
            None => bail!("{r:?} is not a run id (ml + 4 hex digits, e.g. ml3f2a)"),
        },
        None => None,
    };
    // Every run we can see: run directories and namespaces of the strict pattern.
    let mut runs: BTreeMap<RunId, Option<RunState>> = BTreeMap::new();
    for (id, dir) in list_runs() {
        runs.insert(id, RunState::load(&dir).ok());
    }
    let mut ns_by_run: BTreeMap<RunId, BTreeSet<String>> = BTreeMap::new();
    for ns in netns::list_namespaces() {
        if let Some((id, _)) = netns::parse_ns_name(&ns) {
            ns_by_run.entry(id.clone()).or_default().insert(ns);
            runs.entry(id).or_insert(None);
        }
    }
    let mut msgs = Vec::new();
    for (id, state) in runs {
        if wanted.as_ref().is_some_and(|w| *w != id) {
            continue;
        }
        if let Some(st) = &state
            && st.owner_alive()
            && st.owner_pid != std::process::id()
        {
            if wanted.is_none() && !opts.all {
                msgs.push(format!(
                    "{id}: running (pid {}, {}); left alone (name it or use --all to stop it)",
                    st.owner_pid, st.purpose
                ));
                continue;
            }
            msgs.push(format!("{id}: asking its owner (pid {}) to stop", st.owner_pid));
            process::signal_checked(st.owner_pid, st.owner_start_time, Signal::SIGTERM);
            let t0 = Instant::now();
            while st.owner_alive() && t0.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if st.owner_alive() {
                process::signal_checked(st.owner_pid, st.owner_start_time, Signal::SIGKILL);
                msgs.push(format!("{id}: owner did not stop in 15 s; killed it"));
            }
        }
        let mut namespaces: BTreeSet<String> = ns_by_run.remove(&id).unwrap_or_default();
        if let Some(st) = &state {
            namespaces.extend(st.namespaces.iter().filter(|n| netns::ns_path(n).exists()).cloned());
        }
        clean_run(&id, state.as_ref(), &namespaces, &mut msgs);
    }
    if msgs.is_empty() {
        msgs.push("nothing to clean up".into());
    }
    Ok(msgs)
}

fn clean_run(id: &RunId, state: Option<&RunState>, namespaces: &BTreeSet<String>, msgs: &mut Vec<String>) {
    // Recorded processes first (they may have left the namespace, e.g. a stray setns).
    let mut frr_dead: Vec<(u32, String)> = Vec::new();
    if let Some(st) = state {
        let mut pids = Vec::new();
        for p in &st.processes {
            if process::alive(p.pid, p.start_time) {
                pids.push(p.pid);
            }
        }
        for (pid, comm) in process::terminate_pids(&pids, Duration::from_secs(3)) {
            msgs.push(format!("{id}: stopped recorded process {pid} ({comm})"));
        }
        frr_dead.extend(st.frr_history.iter().cloned());
    }
    // Then everything still inside the run's namespaces.
    let mut pids = Vec::new();
    for ns in namespaces {
        pids.extend(process::pids_in_netns(&netns::ns_path(ns)));
    }
    for (pid, comm) in process::terminate_pids(&pids, Duration::from_secs(3)) {
        msgs.push(format!("{id}: stopped process {pid} ({comm}) found in its namespaces"));
        if FRR_NAMES.contains(&comm.as_str()) {
            frr_dead.push((pid, comm));
        }
    }
    for (pid, daemon) in frr_dead {
        frr::remove_crash_dir(&daemon, pid);
    }
    for ns in namespaces {
        match netns::delete_ns(ns) {
            Ok(()) => msgs.push(format!("{id}: deleted namespace {ns}")),
            Err(e) => msgs.push(format!("{id}: {e:#}")),
        }
    }
    let dir = run_base().join(id.as_str());
    if dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => msgs.push(format!("{id}: removed {}", dir.display())),
            Err(e) => msgs.push(format!("{id}: removing {}: {e}", dir.display())),
        }
    }
}
