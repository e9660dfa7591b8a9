//! FRR per namespace without systemd (lab-notes §3): explicit `-f` config, `-i` pid file, `-z`
//! zserv socket, `--vty_socket` run dir, `-A 127.0.0.1`, `--log file:`; zebra first, the others
//! once zebra's zserv.api socket exists. Daemons run in the foreground as children of
//! `mcast-lab` (no `-d`), so the lab holds their PIDs directly.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Directory of the FRR daemons (`MCAST_LAB_FRR_DIR` overrides).
pub fn frr_dir() -> PathBuf {
    std::env::var_os("MCAST_LAB_FRR_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/lib/frr"))
}

/// Checks that a daemon binary exists, with an install hint.
pub fn check_installed(daemon: &str) -> Result<PathBuf> {
    let p = frr_dir().join(daemon);
    if !p.exists() {
        bail!("FRR daemon {} not found: install FRR (apt-get install frr) or set MCAST_LAB_FRR_DIR", p.display());
    }
    Ok(p)
}

/// Paths of one daemon inside a node's FRR directory.
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub dir: PathBuf,
    pub daemon: String,
}

impl DaemonPaths {
    pub fn new(dir: &Path, daemon: &str) -> DaemonPaths {
        DaemonPaths { dir: dir.to_path_buf(), daemon: daemon.to_string() }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join(format!("{}.conf", self.daemon))
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join(format!("{}.pid", self.daemon))
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.daemon))
    }
    /// stdout/stderr of the daemon (normally just zebra's MPLS notice).
    pub fn out(&self) -> PathBuf {
        self.dir.join(format!("{}.out", self.daemon))
    }
    pub fn vty(&self) -> PathBuf {
        self.dir.join(format!("{}.vty", self.daemon))
    }
    pub fn zserv(&self) -> PathBuf {
        self.dir.join("zserv.api")
    }

    /// The command line (lab-notes §3.2, without `-d`: the daemon stays our child).
    pub fn argv(&self, extra: &[String]) -> Vec<String> {
        let mut v = vec![frr_dir().join(&self.daemon).display().to_string()];
        let path = |p: PathBuf| p.display().to_string();
        v.extend(["-f".into(), path(self.config()), "-i".into(), path(self.pid()), "-z".into(), path(self.zserv())]);
        v.extend(["--vty_socket".into(), path(self.dir.clone()), "-A".into(), "127.0.0.1".into()]);
        v.extend(["--log".into(), format!("file:{}", self.log().display())]);
        v.extend(extra.iter().cloned());
        v
    }

    /// The socket whose appearance means the daemon is ready: zserv.api for zebra (the other
    /// daemons connect to it), the daemon's vty socket for the rest.
    pub fn ready_socket(&self) -> PathBuf {
        if self.daemon == "zebra" { self.zserv() } else { self.vty() }
    }
}

/// Prepares a node's FRR directory: owned by `frr` (the daemons drop to it), configs readable.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let user = nix::unistd::User::from_name("frr")
        .context("looking up user frr")?
        .context("user frr does not exist: install FRR (apt-get install frr)")?;
    nix::unistd::chown(dir, Some(user.uid), Some(user.gid)).with_context(|| format!("chown frr {}", dir.display()))?;
    Ok(())
}

/// True once `path` is a socket.
pub fn socket_exists(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}

/// Waits until `check` says the daemon is ready, or fails early if `exited` reports that it
/// died (with the tail of its log in the error).
pub fn wait_ready(
    paths: &DaemonPaths,
    timeout: Duration,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<Duration> {
    let t0 = Instant::now();
    let sock = paths.ready_socket();
    loop {
        crate::signals::check()?;
        if socket_exists(&sock) {
            return Ok(t0.elapsed());
        }
        if let Some(status) = exited() {
            bail!("FRR {} exited during start-up ({status}){}", paths.daemon, log_tail(paths));
        }
        if t0.elapsed() > timeout {
            bail!("FRR {} not ready after {timeout:?} ({} missing){}", paths.daemon, sock.display(), log_tail(paths));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn log_tail(paths: &DaemonPaths) -> String {
    let mut s = String::new();
    for p in [paths.out(), paths.log()] {
        if let Ok(text) = std::fs::read_to_string(&p) {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
            if !tail.is_empty() {
                s.push_str(&format!("\n{}:\n  {tail}", p.display()));
            }
        }
    }
    s
}

/// A `vtysh` command against the daemons whose sockets are in `dir`.
pub fn vtysh_command(dir: &Path, commands: &[String]) -> Command {
    let mut c = Command::new("vtysh");
    c.arg("--vty_socket").arg(dir);
    for cmd in commands {
        c.arg("-c").arg(cmd);
    }
    c.env("VTYSH_PAGER", "cat");
    c
}

/// Removes FRR's crash-log directory /var/tmp/frr/<daemon>.<pid> (left behind when a daemon
/// is killed rather than stopped).
pub fn remove_crash_dir(daemon: &str, pid: u32) {
    let p = Path::new("/var/tmp/frr").join(format!("{daemon}.{pid}"));
    if p.exists() {
        let _ = std::fs::remove_dir_all(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_follows_lab_notes() {
        let p = DaemonPaths::new(Path::new("/run/mcast-lab/ml0001/acc/frr"), "pimd");
        let argv = p.argv(&["--extra".into()]).join(" ");
        assert_eq!(
            argv,
            "/usr/lib/frr/pimd -f /run/mcast-lab/ml0001/acc/frr/pimd.conf -i /run/mcast-lab/ml0001/acc/frr/pimd.pid \
             -z /run/mcast-lab/ml0001/acc/frr/zserv.api --vty_socket /run/mcast-lab/ml0001/acc/frr -A 127.0.0.1 \
             --log file:/run/mcast-lab/ml0001/acc/frr/pimd.log --extra"
        );
        assert!(!argv.contains(" -d"), "daemons must stay in the foreground");
        assert_eq!(p.ready_socket(), Path::new("/run/mcast-lab/ml0001/acc/frr/pimd.vty"));
        assert_eq!(DaemonPaths::new(Path::new("/x"), "zebra").ready_socket(), Path::new("/x/zserv.api"));
    }
}
