//! Packet captures for scenarios: tcpdump writes (one process per interface, packet-buffered,
//! immediate mode), tshark decodes offline with a display filter.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The tcpdump argv for one interface.
pub fn tcpdump_argv(interface: &str, file: &Path, filter: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "tcpdump",
        "-n",
        "-i",
        interface,
        // Write every packet as it arrives, and deliver without buffering delay.
        "-U",
        "--immediate-mode",
        // Keep root: the run directory is root's (tcpdump would switch to user tcpdump).
        "-Z",
        "root",
        "-w",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(file.display().to_string());
    if !filter.trim().is_empty() {
        v.push(filter.to_string());
    }
    v
}

/// Waits until tcpdump reports `listening on` in its log (it prints that once the capture is
/// active), or fails with the log if it exits or takes longer than `timeout`.
pub fn wait_listening(log: &Path, timeout: Duration, mut exited: impl FnMut() -> bool) -> Result<()> {
    let t0 = Instant::now();
    loop {
        crate::signals::check()?;
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("listening on") {
            return Ok(());
        }
        if exited() {
            bail!("tcpdump exited: {}", text.trim());
        }
        if t0.elapsed() > timeout {
            bail!("tcpdump not capturing after {timeout:?}: {}", text.trim());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Packets in `file` matching a tshark display filter, as tshark's one-line summaries.
/// A capture file that has no header yet (nothing captured) holds no packets.
pub fn matching(file: &Path, filter: &str) -> Result<Vec<String>> {
    match std::fs::metadata(file) {
        Ok(m) if m.len() >= 24 => {}
        _ => return Ok(Vec::new()),
    }
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-Y", filter])
        .stdin(Stdio::null())
        .output()
        .context("running tshark (is it installed? apt-get install tshark)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A capture being written can end mid-packet; tshark says so but still decodes the rest.
    if !out.status.success() && !stderr.contains("cut short") {
        bail!("tshark -r {} -Y {filter:?} failed: {}", file.display(), stderr.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect())
}

/// The pcap file of one interface of a capture.
pub fn capture_file(dir: &Path, name: &str, interface: &str) -> PathBuf {
    dir.join(format!("{name}-{interface}.pcap"))
}
