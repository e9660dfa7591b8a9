//! The run directory and its `state.json`: what a run created (namespaces, processes), written
//! before each thing is created so `mcast-lab down` can clean up after a crash or `kill -9`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::netns::RunId;
use crate::process;
use crate::util::write_atomic;

/// Base directory of run directories (root only: /run is a tmpfs that vanishes on reboot).
/// `MCAST_LAB_RUN_BASE` overrides it.
pub fn run_base() -> PathBuf {
    std::env::var_os("MCAST_LAB_RUN_BASE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/run/mcast-lab"))
}

/// One process a run started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcRecord {
    /// Unique key within the run, e.g. `svc:ing/pim-hello`, `frr:acc/zebra`, `recv:r1`.
    pub key: String,
    pub node: String,
    pub pid: u32,
    /// `/proc/PID/stat` start time: a PID is only signalled while this still matches.
    pub start_time: u64,
    /// For FRR daemons: the daemon name (its crash directory is /var/tmp/frr/<daemon>.<pid>).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frr_daemon: Option<String>,
}

/// The contents of `<run dir>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub run_id: String,
    /// The `mcast-lab` process that owns the run, and its start time.
    pub owner_pid: u32,
    pub owner_start_time: u64,
    /// What the run is for: `up`, `run <scenario>`, `test`.
    pub purpose: String,
    pub topology: String,
    pub created_unix: f64,
    pub dir: PathBuf,
    /// Namespaces this run creates (recorded before creation).
    pub namespaces: Vec<String>,
    /// Processes started and not yet known to have exited.
    pub processes: Vec<ProcRecord>,
    /// FRR daemons that ever ran (pid + daemon), for crash-directory cleanup.
    #[serde(default)]
    pub frr_history: Vec<(u32, String)>,
    /// Node names, for `mcast-lab shell`.
    #[serde(default)]
    pub nodes: Vec<String>,
}

impl RunState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    pub fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).context("serialising run state")?;
        write_atomic(&RunState::path(&self.dir), &json)
    }

    pub fn load(dir: &Path) -> Result<RunState> {
        let p = RunState::path(dir);
        let text = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", p.display()))
    }

    /// True while the owning `mcast-lab` process is alive.
    pub fn owner_alive(&self) -> bool {
        process::alive(self.owner_pid, self.owner_start_time)
    }

    pub fn run_id(&self) -> Option<RunId> {
        RunId::parse(&self.run_id)
    }
}

/// All run directories under the base (whatever their state), sorted by name.
pub fn list_runs() -> Vec<(RunId, PathBuf)> {
    let base = run_base();
    let Ok(dir) = std::fs::read_dir(&base) else { return Vec::new() };
    let mut v: Vec<(RunId, PathBuf)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let id = RunId::parse(name.to_str()?)?;
            Some((id, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// The runs whose owner is alive, with their state.
pub fn live_runs() -> Vec<RunState> {
    list_runs().into_iter().filter_map(|(_, dir)| RunState::load(&dir).ok()).filter(RunState::owner_alive).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrip() {
        let dir = std::env::temp_dir().join(format!("mcast-lab-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        let st = RunState {
            run_id: "ml0abc".into(),
            owner_pid: me,
            owner_start_time: process::start_time(me).unwrap(),
            purpose: "test".into(),
            topology: "t".into(),
            created_unix: 1.5,
            dir: dir.clone(),
            namespaces: vec!["ml0abc-a".into()],
            processes: vec![ProcRecord {
                key: "frr:a/zebra".into(),
                node: "a".into(),
                pid: 42,
                start_time: 7,
                frr_daemon: Some("zebra".into()),
            }],
            frr_history: vec![(42, "zebra".into())],
            nodes: vec!["a".into()],
        };
        st.save().unwrap();
        let back = RunState::load(&dir).unwrap();
        assert_eq!(back, st);
        assert!(back.owner_alive());
        assert_eq!(back.run_id().unwrap().as_str(), "ml0abc");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
