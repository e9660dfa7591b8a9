//! `mcast-lab watch-file`: proves that a joinfile is never seen empty or half-written.
//!
//! It reads the file on every inotify event of its directory (creation, modification, close,
//! rename, removal: everything a reader could ever observe) and, as a safety net, every
//! `--poll` (2 ms by default), and checks each read: the file exists, is not empty, ends with a
//! newline, every line is a `SOURCE,GROUP` (or a comment), and it has every `--line` given.
//! Each violation is printed with its time; on SIGTERM/SIGINT (or after `--duration`) it prints
//! a JSON summary (reads, events, violations) and exits 0 only if there was none.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::signals;
use crate::util::{parse_duration, unix_now};

#[derive(Debug, Args)]
pub struct WatchFileArgs {
    /// The file to watch.
    #[arg(long)]
    pub path: PathBuf,
    /// A line the file must always hold (repeat for several).
    #[arg(long = "line", value_name = "LINE")]
    pub lines: Vec<String>,
    /// Also read this often without an event.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    pub poll: Duration,
    /// Stop after this long (default: until SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Write the summary here as well (atomically, at exit).
    #[arg(long)]
    pub summary: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchSummary {
    pub path: PathBuf,
    pub reads: u64,
    pub events: u64,
    pub changes: u64,
    pub violations: u64,
    pub first_violation: Option<String>,
    pub duration_s: f64,
}

/// What is wrong with one read of the file, if anything.
pub fn check(content: Option<&[u8]>, required: &[String]) -> Option<String> {
    let Some(bytes) = content else { return Some("missing".into()) };
    if bytes.is_empty() {
        return Some("empty".into());
    }
    if !bytes.ends_with(b"\n") {
        return Some(format!("no final newline ({} bytes): partial write?", bytes.len()));
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return Some("not UTF-8".into()) };
    let mut have = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let sg = l.splitn(3, ',').take(2).collect::<Vec<_>>().join(",");
        if sg.parse::<mcast_wire::SourceGroup>().is_err() {
            return Some(format!("line {}: {l:?} is not an (S,G)", i + 1));
        }
        have.insert(line);
    }
    required.iter().find(|r| !have.contains(r.as_str())).map(|r| format!("lacks {r:?}"))
}

fn inotify_on(dir: &Path) -> Result<OwnedFd> {
    // SAFETY: plain syscalls; the descriptor is owned right away.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("inotify_init1");
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).context("directory name")?;
    let mask = libc::IN_CREATE
        | libc::IN_MODIFY
        | libc::IN_CLOSE_WRITE
        | libc::IN_MOVED_TO
        | libc::IN_MOVED_FROM
        | libc::IN_DELETE
        | libc::IN_ATTRIB;
    // SAFETY: valid descriptor and NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) } < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("watching {}", dir.display()));
    }
    Ok(fd)
}

/// Waits up to `timeout` for events; returns how many concern `name`.
fn wait_events(fd: &OwnedFd, name: &OsString, timeout: Duration) -> u64 {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
        return 0;
    }
    let mut buf = [0u8; 8192];
    let mut count = 0;
    loop {
        // SAFETY: reading into a buffer of the size given.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return count;
        }
        let mut off = 0usize;
        let hdr = std::mem::size_of::<libc::inotify_event>();
        while off + hdr <= n as usize {
            // SAFETY: the kernel wrote whole events; read_unaligned copes with alignment.
            let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
            let name_bytes = &buf[off + hdr..off + hdr + ev.len as usize];
            let end = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_bytes.len());
            if name_bytes[..end] == *name.as_encoded_bytes() || ev.mask & libc::IN_Q_OVERFLOW != 0 {
                count += 1;
            }
            off += hdr + ev.len as usize;
        }
    }
}

/// Watches until stopped; returns the summary (the caller exits 1 if it has violations).
pub fn run(args: &WatchFileArgs) -> Result<WatchSummary> {
    let dir = match args.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = args.path.file_name().context("--path has no file name")?.to_os_string();
    let fd = inotify_on(&dir)?;
    let started = Instant::now();
    let mut s = WatchSummary {
        path: args.path.clone(),
        reads: 0,
        events: 0,
        changes: 0,
        violations: 0,
        first_violation: None,
        duration_s: 0.0,
    };
    let mut last: Option<Vec<u8>> = None;
    let mut last_problem: Option<String> = None;
    eprintln!("watch-file: watching {} (poll {:?}, required lines {:?})", args.path.display(), args.poll, args.lines);
    loop {
        if signals::stop_requested() || args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        s.events += wait_events(&fd, &name, args.poll);
        let content = std::fs::read(&args.path).ok();
        s.reads += 1;
        if content != last {
            s.changes += 1;
            last.clone_from(&content);
        }
        let problem = check(content.as_deref(), &args.lines);
        if let Some(p) = &problem {
            s.violations += 1;
            if s.first_violation.is_none() {
                s.first_violation = Some(p.clone());
            }
            if last_problem.as_ref() != Some(p) {
                println!("{:.6} VIOLATION {}: {p}", unix_now(), args.path.display());
            }
        } else if last_problem.is_some() {
            println!("{:.6} ok again", unix_now());
        }
        last_problem = problem;
    }
    s.duration_s = started.elapsed().as_secs_f64();
    let json = serde_json::to_string(&s)?;
    println!("{json}");
    if let Some(p) = &args.summary {
        crate::util::write_atomic(p, json.as_bytes())?;
    }
    if s.violations > 0 {
        eprintln!(
            "watch-file: {} violations in {} reads (first: {})",
            s.violations,
            s.reads,
            s.first_violation.as_deref().unwrap_or_default()
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let req = vec!["198.51.100.10,232.1.1.1".to_string()];
        assert_eq!(check(Some(b"198.51.100.10,232.1.1.1\n"), &req), None);
        assert_eq!(check(Some(b"# x\n198.51.100.10,232.1.1.1,3\n"), &[]), None);
        assert_eq!(check(None, &req).as_deref(), Some("missing"));
        assert_eq!(check(Some(b""), &req).as_deref(), Some("empty"));
        assert!(check(Some(b"198.51.100.10,232.1.1.1"), &req).unwrap().contains("partial"));
        assert!(check(Some(b"198.51.100.10,232.1\n"), &[]).unwrap().contains("line 1"));
        assert!(check(Some(b"198.51.100.11,232.1.1.1\n"), &req).unwrap().contains("lacks"));
    }
}
