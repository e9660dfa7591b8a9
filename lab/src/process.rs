//! Spawning processes inside a namespace and stopping them again, plus the `/proc` helpers that
//! make stopping safe (a recorded PID is only signalled while its start time still matches,
//! so a reused PID is never hit).

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Prepares `cmd` to run inside the network namespace `netns` (an open `/run/netns/NAME`), in
/// its own process group (so a terminal's Ctrl-C reaches only `mcast-lab`, which then stops
/// everything in order), and with SIGTERM as its parent-death signal.
///
/// The parent-death signal fires when the *thread* that spawned the child exits, so spawn
/// only from long-lived threads (the lab spawns from the thread that owns the `Lab`). It is
/// also cleared when the child changes credentials (FRR dropping to `frr`, setpriv): those are
/// found by `mcast-lab down` through their namespace instead.
pub fn in_namespace(cmd: &mut Command, netns: Option<&File>) {
    let fd: Option<RawFd> = netns.map(AsRawFd::as_raw_fd);
    let parent = std::process::id() as i32;
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (setns, prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = fd
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The parent died before the death signal was armed.
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Field 22 of `/proc/PID/stat`: the process start time in clock ticks since boot. Together
/// with the PID it identifies a process for good.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); start time is field 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The process state letter from `/proc/PID/stat` (R, S, Z, ...).
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// The command name (`/proc/PID/comm`).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim_end().to_string())
}

/// True if `pid` is still the process that started at `start` and is not a zombie.
pub fn alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start) && state(pid).is_some_and(|s| s != 'Z')
}

/// Sends `sig` to `pid` if it is still the recorded process. Returns whether it was sent.
pub fn signal_checked(pid: u32, start: u64, sig: Signal) -> bool {
    if start_time(pid) != Some(start) {
        return false;
    }
    kill(Pid::from_raw(pid as i32), sig).is_ok()
}

/// Waits up to `timeout` for a child to exit, polling.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(st));
        }
        if Instant::now() >= end {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops a child spawned by [`in_namespace`] (a process-group leader): `sig` to its whole
/// process group first, then SIGKILL to the group after `grace`. Always reaps it.
pub fn stop_child(child: &mut Child, sig: Signal, grace: Duration) -> Result<ExitStatus> {
    let group = Pid::from_raw(-(child.id() as i32));
    if let Some(st) = child.try_wait()? {
        // The leader is gone; make sure nothing it left in its group survives.
        let _ = kill(group, Signal::SIGKILL);
        return Ok(st);
    }
    let _ = kill(group, sig);
    if let Some(st) = wait_timeout(child, grace)? {
        let _ = kill(group, Signal::SIGKILL);
        return Ok(st);
    }
    let _ = kill(group, Signal::SIGKILL);
    let _ = child.kill();
    child.wait().context("reaping a killed child")
}

/// Waits up to `grace` for a child that was already signalled, then SIGKILLs its process
/// group. Always reaps it.
pub fn await_or_kill(child: &mut Child, grace: Duration) -> Result<ExitStatus> {
    if let Some(st) = wait_timeout(child, grace)? {
        return Ok(st);
    }
    let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
    let _ = child.kill();
    child.wait().context("reaping a killed child")
}

/// PIDs of all processes whose network namespace is the one bind-mounted at `ns_path`.
pub fn pids_in_netns(ns_path: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(ns_path) else { return Vec::new() };
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            && m.ino() == target.ino()
            && m.dev() == target.dev()
        {
            out.push(pid);
        }
    }
    out
}

/// Terminates every process in the given PIDs: SIGTERM, up to `grace` to exit, then SIGKILL.
/// Returns the (pid, comm) of the processes that were found.
pub fn terminate_pids(pids: &[u32], grace: Duration) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let mut targets = Vec::new();
    for &pid in pids {
        if pid == std::process::id() {
            continue;
        }
        if let Some(st) = start_time(pid) {
            found.push((pid, comm(pid).unwrap_or_default()));
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            targets.push((pid, st));
        }
    }
    let end = Instant::now() + grace;
    while Instant::now() < end && targets.iter().any(|&(p, s)| alive(p, s)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for &(p, s) in &targets {
        if alive(p, s) {
            signal_checked(p, s, Signal::SIGKILL);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_helpers() {
        let me = std::process::id();
        let st = start_time(me).unwrap();
        assert!(alive(me, st));
        assert!(!alive(me, st + 1));
        assert!(comm(me).is_some());
        assert!(start_time(u32::MAX).is_none());
    }

    #[test]
    fn stop_child_escalates() {
        let mut c = Command::new("sleep");
        c.arg("30");
        in_namespace(&mut c, None);
        let mut child = c.spawn().unwrap();
        let st = stop_child(&mut child, Signal::SIGTERM, Duration::from_secs(2)).unwrap();
        assert!(!st.success());
        // A process that ignores SIGTERM is killed after the grace period.
        let mut c = Command::new("sh");
        c.args(["-c", "trap '' TERM; sleep 30"]);
        in_namespace(&mut c, None);
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        stop_child(&mut child, Signal::SIGTERM, Duration::from_millis(200)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn terminate_pids_escalates_and_reports() {
        let mut c = Command::new("sh");
        c.args(["-c", "trap '' TERM; exec sleep 30"]);
        let mut child = c.spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(100));
        let found = terminate_pids(&[pid, u32::MAX], Duration::from_millis(200));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, pid);
        let st = child.wait().unwrap();
        assert!(!st.success());
        // Our own PID is never a target.
        assert!(terminate_pids(&[std::process::id()], Duration::ZERO).is_empty());
    }
}
