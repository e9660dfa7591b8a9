//! `mcast-lab bench`: benchmarks that need the lab, each in a fresh lab, with a table of
//! p50/p99/max against the goals and an optional JSON report.
//!
//! `join` (issue 6; issue 10's `mcast-lab bench` runs it with the others) measures how long a
//! join takes, in three ways and two temperatures:
//!
//! * **joinfile → TUN**: driad-ingest alone (on a joinfile the benchmark writes), from the
//!   atomic rename of the joinfile to the first packet of the (S,G) arriving on the TUN `amt0`.
//! * **PIM Join → downstream**: the full chain (FRR, pimwatch, driad-ingest), from the PIM Join
//!   arriving on `ing`'s `down0` to the first packet of the (S,G) leaving `down0`.
//! * **receiver join → first packet**: the same joins, as `mcast-lab recv` on rcv1 reports them
//!   (from its IGMP join to the first datagram).
//!
//! *Cold*: the source is new (its AMTRELAY lookup is a DNS query, driad-ingest forgets a
//! source's answer with its last (S,G)) and no tunnel to its relay exists (the previous
//! sample's was torn down), so the join includes the DNS lookup and the whole AMT handshake.
//! Each cold sample uses a source address of its own, 198.18.0.0/15 (RFC 2544's benchmarking
//! range), from a zone the benchmark generates (`18.198.in-addr.arpa`: relay1, D = 0, or D = 1
//! for the `cold D=1` figure). *Warm*: the source's relay is known and its tunnel is up (an
//! anchor (S,G) of the same source stays joined); the join is one Membership Update.
//!
//! Every source sends 100-byte datagrams at `--rate` (1000/s by default) from src while it is
//! measured, so "first packet" waits at most one interval for the next datagram (0.5 ms on
//! average at 1 kpps: the figures include it). Times come from kernel timestamps
//! (`SO_TIMESTAMPNS`, CLOCK_REALTIME, shared by all namespaces) of packet sockets on `amt0`,
//! `up0` and `down0` in `ing`; the joinfile time is taken just before its rename. The `up0`
//! packets give the breakdown of a cold join on the wire: DNS query and answer, Relay
//! Discovery, Advertisement, Request, Query, Update, first data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::Signal;
use serde::Serialize;

use crate::lab::{Lab, LabOptions, SpawnSpec};
use crate::pimstub::join_events;
use crate::signals;
use crate::topology::Topology;
use crate::traffic::payload::Header;
use crate::traffic::stats::{RecvReport, percentile};
use crate::util::{fmt_secs, unix_now};

mod footprint;
mod scale;
mod throughput;

/// Options of `mcast-lab bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Benchmarks to run (default: all): join, leave, gateway, relay, scale, cbacc, idle.
    pub names: Vec<String>,
    /// Samples per latency figure (join, leave).
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Datagrams per second each measured source sends (join, leave).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds per zero-loss throughput run (gateway, relay).
    #[arg(long, default_value_t = 10.0)]
    pub run_secs: f64,
    /// (S,G)s of the scale benchmark (spread over a tenth as many sources and relays).
    #[arg(long, default_value_t = 10_000)]
    pub scale_sgs: usize,
    /// Write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Keep each benchmark's run directory (logs) under this directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Exit non-zero when a goal is missed (by default a missed goal is printed as FAIL and
    /// the exit status only says whether every benchmark ran).
    #[arg(long)]
    pub strict: bool,
}

/// The benchmarks `mcast-lab bench` knows, in the order they run.
pub const BENCHMARKS: &[&str] = &["join", "leave", "gateway", "relay", "scale", "cbacc", "idle"];

/// What a figure's goal bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    /// The median of the samples is at most the value.
    P50AtMost,
    /// The (single) value is at most ...
    AtMost,
    /// ... or at least the goal's value.
    AtLeast,
}

/// A goal: a bound on the median (latencies) or on the value (throughput, memory).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Goal {
    pub bound: Bound,
    pub value: f64,
}

impl Goal {
    pub fn p50_at_most(value: f64) -> Goal {
        Goal { bound: Bound::P50AtMost, value }
    }
    pub fn at_most(value: f64) -> Goal {
        Goal { bound: Bound::AtMost, value }
    }
    pub fn at_least(value: f64) -> Goal {
        Goal { bound: Bound::AtLeast, value }
    }
    fn holds(&self, p50: f64) -> bool {
        match self.bound {
            Bound::P50AtMost | Bound::AtMost => p50 <= self.value,
            Bound::AtLeast => p50 >= self.value,
        }
    }
    fn render(&self, unit: &str) -> String {
        let v = fmt_num(self.value);
        match self.bound {
            Bound::P50AtMost => format!("p50 ≤ {v} {unit}"),
            Bound::AtMost => format!("≤ {v} {unit}"),
            Bound::AtLeast => format!("≥ {v} {unit}"),
        }
    }
}

/// One figure: a distribution of samples (latencies, in `unit`), or a single value.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub benchmark: String,
    pub name: String,
    pub unit: String,
    pub samples: usize,
    pub failed: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// One measured value (in `p50`, equal to min, p99 and max), not a distribution.
    pub single: bool,
    pub goal: Option<Goal>,
    pub pass: Option<bool>,
    /// How it was measured, what limited it (CPU, loss, ...).
    pub note: String,
    pub values: Vec<f64>,
}

impl Figure {
    /// A latency distribution in milliseconds, its p50 held against `goal` (ms).
    pub fn latency(benchmark: &str, name: &str, mut values: Vec<f64>, failed: usize, goal: Option<f64>) -> Figure {
        values.sort_by(f64::total_cmp);
        let p50 = percentile(&values, 50.0);
        let goal = goal.map(Goal::p50_at_most);
        Figure {
            benchmark: benchmark.into(),
            name: name.into(),
            unit: "ms".into(),
            samples: values.len(),
            failed,
            min: values.first().copied().unwrap_or(0.0),
            p50,
            p99: percentile(&values, 99.0),
            max: values.last().copied().unwrap_or(0.0),
            single: false,
            pass: goal.map(|g| !values.is_empty() && failed == 0 && g.holds(p50)),
            goal,
            note: String::new(),
            values,
        }
    }

    /// A single value.
    pub fn value(benchmark: &str, name: &str, unit: &str, value: f64, goal: Option<Goal>) -> Figure {
        Figure {
            benchmark: benchmark.into(),
            name: name.into(),
            unit: unit.into(),
            samples: 1,
            failed: 0,
            min: value,
            p50: value,
            p99: value,
            max: value,
            single: true,
            goal,
            pass: goal.map(|g| value.is_finite() && g.holds(value)),
            note: String::new(),
            values: vec![value],
        }
    }

    /// The same figure with a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub figures: Vec<Figure>,
    /// Median time per stage of the cold and warm joins (where the time goes).
    pub breakdown: Vec<Figure>,
    /// Benchmarks that could not run to the end, with the error.
    pub errors: Vec<(String, String)>,
    /// The machine: cores, kernel, load average at the start.
    pub machine: String,
    pub duration_s: f64,
}

impl Report {
    /// Whether every benchmark ran and every figure has its samples.
    pub fn complete(&self) -> bool {
        self.errors.is_empty() && self.figures.iter().all(|f| f.failed == 0 && f.samples > 0)
    }

    /// Whether every goal holds.
    pub fn goals_hold(&self) -> bool {
        self.figures.iter().all(|f| f.pass != Some(false))
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map_or(String::new(), |kib| format!(", {:.0} GiB", kib / 1024.0 / 1024.0));
    format!(
        "{cores} cores{mem}, Linux {}, load average {}",
        kernel.trim(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

/// Runs the benchmarks and prints the table.
pub fn run(args: &BenchArgs) -> Result<Report> {
    crate::lab::check_root()?;
    let names: Vec<String> =
        if args.names.is_empty() { BENCHMARKS.iter().map(|s| s.to_string()).collect() } else { args.names.clone() };
    for n in &names {
        if !BENCHMARKS.contains(&n.as_str()) {
            bail!("no benchmark {n:?} (known: {})", BENCHMARKS.join(", "));
        }
    }
    if args.count == 0 || args.count > 1000 {
        bail!("--count must be 1..=1000");
    }
    if !(1.0..=600.0).contains(&args.run_secs) {
        bail!("--run-secs must be 1..=600");
    }
    if !(10..=100_000).contains(&args.scale_sgs) {
        bail!("--scale-sgs must be 10..=100000");
    }
    let t0 = Instant::now();
    let mut report =
        Report { figures: Vec::new(), breakdown: Vec::new(), errors: Vec::new(), machine: machine(), duration_s: 0.0 };
    eprintln!("bench: {}", report.machine);
    for name in BENCHMARKS.iter().filter(|b| names.iter().any(|n| n == *b)) {
        signals::check()?;
        let started = Instant::now();
        let result = match *name {
            // `join` measures the leaves of its cold samples too; `leave` alone runs only those.
            "join" => join(args, false),
            "leave" if names.iter().any(|n| n == "join") => continue,
            "leave" => join(args, true),
            "gateway" => throughput::gateway(args).map(|f| (f, Vec::new())),
            "relay" => throughput::relay(args).map(|f| (f, Vec::new())),
            "scale" => scale::run(args).map(|f| (f, Vec::new())),
            "cbacc" => footprint::cbacc(args).map(|f| (f, Vec::new())),
            "idle" => footprint::idle(args).map(|f| (f, Vec::new())),
            _ => unreachable!("checked above"),
        };
        match result {
            Ok((figures, breakdown)) => {
                report.figures.extend(figures);
                report.breakdown.extend(breakdown);
            }
            Err(e) => {
                if signals::stop_requested() {
                    return Err(e);
                }
                eprintln!("bench {name}: FAILED: {e:#}");
                report.errors.push((name.to_string(), format!("{e:#}")));
            }
        }
        eprintln!("bench {name}: done in {}", fmt_secs(started.elapsed()));
    }
    report.duration_s = t0.elapsed().as_secs_f64();
    print!("{}", render(&report));
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(report)
}

/// A number with three significant digits at most (and no exponent).
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table: one line per figure, then the breakdown and the notes.
pub fn render(report: &Report) -> String {
    let cell = |v: f64, unit: &str| format!("{} {unit}", fmt_num(v));
    let row = |f: &Figure| {
        let samples = if f.single {
            "-".to_string()
        } else {
            format!("{}{}", f.samples, if f.failed > 0 { format!(" ({} failed)", f.failed) } else { String::new() })
        };
        vec![
            f.benchmark.clone(),
            f.name.clone(),
            samples,
            cell(f.p50, &f.unit),
            if f.single { "-".into() } else { cell(f.p99, &f.unit) },
            if f.single { "-".into() } else { cell(f.max, &f.unit) },
            f.goal.map_or("-".into(), |g| g.render(&f.unit)),
            match f.pass {
                Some(true) => "pass".into(),
                Some(false) => "FAIL".into(),
                None => "-".into(),
            },
        ]
    };
    let mut out = format!("\nmachine: {}\n", report.machine);
    let rows: Vec<Vec<String>> = report.figures.iter().map(row).collect();
    out.push_str(&mcast_table(&["benchmark", "figure", "samples", "p50 / value", "p99", "max", "goal", ""], &rows));
    if !report.breakdown.is_empty() {
        out.push_str("\nwhere the time goes (ms per stage)\n");
        let rows: Vec<Vec<String>> = report.breakdown.iter().map(row).map(|r| r[1..6].to_vec()).collect();
        out.push_str(&mcast_table(&["stage", "samples", "p50", "p99", "max"], &rows));
    }
    let notes: Vec<&Figure> = report.figures.iter().filter(|f| !f.note.is_empty()).collect();
    if !notes.is_empty() {
        out.push_str("\nnotes\n");
        for f in notes {
            out.push_str(&format!("  {} / {}: {}\n", f.benchmark, f.name, f.note));
        }
    }
    for (name, e) in &report.errors {
        out.push_str(&format!("\nbenchmark {name} did not complete: {e}\n"));
    }
    let missed = report.figures.iter().filter(|f| f.pass == Some(false)).count();
    out.push_str(&format!(
        "\n{} figures in {}; {}\n",
        report.figures.len(),
        fmt_secs(Duration::from_secs_f64(report.duration_s)),
        if missed == 0 { "every goal holds".to_string() } else { format!("{missed} goal(s) missed (FAIL)") }
    ));
    out
}

/// Left-aligned columns, two spaces apart.
fn mcast_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            s.extend(std::iter::repeat_n(' ', widths[i].saturating_sub(c.chars().count())));
        }
        format!("{}\n", s.trim_end())
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

// ---- addresses ---------------------------------------------------------------------------------

const RELAY1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 15);
const DNS: &str = "203.0.113.53";
const PORT: u16 = 5001;

/// Source `k` of block `block` (0: anchor, 1: cold D=0, 2: cold D=1, 3: cold full chain):
/// 198.18.(4·block + k / 250).(1 + k % 250).
fn bench_source(block: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (4 * block + k / 250) as u8, (1 + k % 250) as u8)
}

/// Group `k` of block `block` (each warm sample joins a new group): 232.18.(4·block + k / 250).(1 + k % 250).
fn bench_group(block: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(232, 18, (4 * block + k / 250) as u8, (1 + k % 250) as u8)
}

/// The zone `18.198.in-addr.arpa` with an AMTRELAY record (relay1) for every benchmark
/// source; block 2 sets the D bit.
fn bench_zone(count: usize) -> String {
    let mut z = String::from(
        "; generated by `mcast-lab bench join`: the benchmark's sources (198.18.0.0/15, RFC 2544)\n\
         $ORIGIN 18.198.in-addr.arpa.\n$TTL 30\n\
         @ IN SOA ns.example.net. hostmaster.example.net. ( 1 3600 600 86400 5 )\n  IN NS ns.example.net.\n",
    );
    for block in 0..4 {
        let n = if block == 0 { 1 } else { count };
        let d = u8::from(block == 2);
        for k in 0..n {
            let s = bench_source(block, k).octets();
            z.push_str(&format!("{}.{} IN AMTRELAY 10 {d} 1 {RELAY1}\n", s[3], s[2]));
        }
    }
    z
}

// ---- packet capture ----------------------------------------------------------------------------

/// What a captured packet is, as far as the benchmark cares.
#[derive(Debug, Clone, PartialEq)]
enum What {
    /// Plain UDP (the streams, natively or decapsulated): source and group.
    Data {
        src: IpAddr,
        dst: IpAddr,
    },
    /// AMT (UDP port 2268): message type; for Data the inner (S,G), for an Update the ALLOW
    /// and BLOCK (source, group) pairs.
    Amt {
        ty: u8,
        inner: Option<(IpAddr, IpAddr)>,
        allow: Vec<(IpAddr, IpAddr)>,
        block: Vec<(IpAddr, IpAddr)>,
    },
    /// DNS: a query (to port 53) or an answer.
    Dns {
        query: bool,
    },
    /// PIM Join/Prune entries as (source, group).
    JoinPrune {
        joins: Vec<(IpAddr, IpAddr)>,
        prunes: Vec<(IpAddr, IpAddr)>,
    },
    Other,
}

#[derive(Debug, Clone)]
struct Pkt {
    /// Kernel receive timestamp, Unix seconds.
    ts: f64,
    outgoing: bool,
    what: What,
}

fn ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::new(*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?))
}

/// (protocol, source, destination, payload) of an IPv4 packet.
fn split_ip(buf: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr, &[u8])> {
    if buf.len() < 20 || buf[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]])).min(buf.len());
    Some((buf[9], ipv4(&buf[12..])?, ipv4(&buf[16..])?, buf.get(ihl..total.max(ihl))?))
}

/// The IGMPv3 report inside an AMT Membership Update: ALLOW (5) and BLOCK (6) pairs.
/// (source, group) pairs.
type Pairs = Vec<(IpAddr, IpAddr)>;

fn update_records(encapsulated: &[u8]) -> (Pairs, Pairs) {
    let (mut allow, mut block) = (Vec::new(), Vec::new());
    let Some((2, _, _, igmp)) = split_ip(encapsulated) else { return (allow, block) };
    if igmp.first() != Some(&0x22) || igmp.len() < 8 {
        return (allow, block);
    }
    let records = usize::from(u16::from_be_bytes([igmp[6], igmp[7]]));
    let mut pos = 8;
    for _ in 0..records {
        let Some(head) = igmp.get(pos..pos + 8) else { break };
        let (rtype, aux, n) = (head[0], usize::from(head[1]), usize::from(u16::from_be_bytes([head[2], head[3]])));
        let Some(group) = ipv4(&head[4..]) else { break };
        for i in 0..n {
            let Some(s) = igmp.get(pos + 8 + 4 * i..).and_then(ipv4) else { break };
            match rtype {
                5 | 1 => allow.push((IpAddr::V4(s), IpAddr::V4(group))),
                6 => block.push((IpAddr::V4(s), IpAddr::V4(group))),
                _ => {}
            }
        }
        pos += 8 + 4 * n + 4 * aux;
    }
    (allow, block)
}

fn classify(buf: &[u8]) -> What {
    let Some((proto, src, dst, payload)) = split_ip(buf) else { return What::Other };
    match proto {
        17 if payload.len() >= 8 => {
            let sport = u16::from_be_bytes([payload[0], payload[1]]);
            let dport = u16::from_be_bytes([payload[2], payload[3]]);
            let body = &payload[8..];
            if sport == 2268 || dport == 2268 {
                let ty = body.first().map_or(0, |b| b & 0x0f);
                let inner = match ty {
                    6 => body.get(2..).and_then(split_ip).map(|(_, s, d, _)| (IpAddr::V4(s), IpAddr::V4(d))),
                    _ => None,
                };
                let (allow, block) =
                    if ty == 5 { body.get(12..).map(update_records).unwrap_or_default() } else { Default::default() };
                What::Amt { ty, inner, allow, block }
            } else if sport == 53 || dport == 53 {
                What::Dns { query: dport == 53 }
            } else {
                What::Data { src: IpAddr::V4(src), dst: IpAddr::V4(dst) }
            }
        }
        103 => {
            use mcast_wire::pim::{ChecksumContext, Packet, Repr};
            let Ok(repr) = Packet::new_checked(payload).and_then(|p| Repr::parse(&p, ChecksumContext::V4)) else {
                return What::Other;
            };
            let mut joins = Vec::new();
            let mut prunes = Vec::new();
            for e in join_events(&repr, src, Ipv4Addr::UNSPECIFIED, "", 0.0) {
                let (Ok(s), Ok(g)) = (e.source.parse::<IpAddr>(), e.group.parse::<IpAddr>()) else { continue };
                if e.event == "join" { joins.push((s, g)) } else { prunes.push((s, g)) }
            }
            if joins.is_empty() && prunes.is_empty() { What::Other } else { What::JoinPrune { joins, prunes } }
        }
        _ => What::Other,
    }
}

/// A packet socket on one interface of a namespace, recording every packet (in and out) with
/// its kernel timestamp.
struct Sniffer {
    name: String,
    pkts: Arc<Mutex<Vec<Pkt>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn packet_socket(ifname: &str) -> Result<OwnedFd> {
    let cname = std::ffi::CString::new(ifname)?;
    // SAFETY: a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {ifname}");
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("packet socket");
    }
    // SAFETY: fd is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll and the length matches.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("binding the packet socket");
    }
    let one: libc::c_int = 1;
    let rcvbuf: libc::c_int = 8 << 20;
    let timeout = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
    for (opt, ptr, len) in [
        (libc::SO_TIMESTAMPNS, std::ptr::addr_of!(one).cast(), std::mem::size_of::<libc::c_int>()),
        (libc::SO_RCVBUFFORCE, std::ptr::addr_of!(rcvbuf).cast(), std::mem::size_of::<libc::c_int>()),
        (libc::SO_RCVTIMEO, std::ptr::addr_of!(timeout).cast::<libc::c_void>(), std::mem::size_of::<libc::timeval>()),
    ] {
        // SAFETY: each option value is valid for the call and its length matches.
        let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, ptr, len as libc::socklen_t) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("packet socket option");
        }
    }
    Ok(fd)
}

/// One packet: (bytes, outgoing, timestamp).
fn recv_packet(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<(usize, bool, f64)> {
    // SAFETY: all-zero is valid for these plain structs.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: all-zero is a valid msghdr; the pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::addr_of_mut!(sll).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live buffers of the stated sizes for the duration of the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut ts = unix_now();
    // SAFETY: walking the control messages the kernel wrote into `control`, with the libc
    // macros, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                ts = t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, sll.sll_pkttype == libc::PACKET_OUTGOING, ts))
}

impl Sniffer {
    /// Starts capturing on `ifname` in namespace `ns`; returns once the socket is bound.
    fn start(ns: &str, ifname: &str) -> Result<Sniffer> {
        let file = crate::netns::open_ns(ns)?;
        let pkts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let (p, s, name) = (pkts.clone(), stop.clone(), ifname.to_string());
        let thread = std::thread::spawn(move || {
            let fd = match setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                .context("entering the namespace")
                .and_then(|()| packet_socket(&name))
            {
                Ok(fd) => {
                    let _ = ready_tx.send(Ok(()));
                    fd
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 256];
            while !s.load(Ordering::Relaxed) {
                match recv_packet(&fd, &mut buf) {
                    Ok((n, outgoing, ts)) => {
                        let what = classify(&buf[..n.min(buf.len())]);
                        if what != What::Other {
                            p.lock().unwrap_or_else(|e| e.into_inner()).push(Pkt { ts, outgoing, what });
                        }
                    }
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ready_rx.recv().map_err(|_| anyhow!("sniffer thread died"))??;
        Ok(Sniffer { name: format!("{ns}:{ifname}"), pkts, stop, thread: Some(thread) })
    }

    /// Forgets packets captured before `t`.
    fn forget_before(&self, t: f64) {
        self.pkts.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p.ts >= t);
    }

    /// The first packet at or after `since` matching `pred`.
    fn first(&self, since: f64, pred: impl Fn(&Pkt) -> bool) -> Option<Pkt> {
        self.pkts.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|p| p.ts >= since && pred(p)).cloned()
    }

    /// How many packets at or after `since` match `pred`, and the time of the last one.
    fn count_last(&self, since: f64, pred: impl Fn(&Pkt) -> bool) -> (usize, Option<f64>) {
        let pkts = self.pkts.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        let mut last = None;
        for p in pkts.iter().filter(|p| p.ts >= since && pred(p)) {
            n += 1;
            last = Some(last.map_or(p.ts, |l: f64| l.max(p.ts)));
        }
        (n, last)
    }

    /// Waits up to `timeout` for such a packet.
    fn wait_first(&self, since: f64, timeout: Duration, pred: impl Fn(&Pkt) -> bool) -> Option<Pkt> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(p) = self.first(since, &pred) {
                return Some(p);
            }
            if Instant::now() > end || signals::stop_requested() {
                return None;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        tracing::debug!("sniffer {} stopped", self.name);
    }
}

// ---- traffic -----------------------------------------------------------------------------------

enum SendCmd {
    Start(Ipv4Addr, Ipv4Addr),
    Stop(Ipv4Addr, Ipv4Addr),
}

/// Paced senders in one namespace: every active (S,G) gets a 100-byte lab datagram per
/// interval.
struct Senders {
    tx: Option<mpsc::Sender<SendCmd>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Senders {
    fn start(ns: &str, rate: f64) -> Result<Senders> {
        let file = crate::netns::open_ns(ns)?;
        let (tx, rx) = mpsc::channel::<SendCmd>();
        let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let thread = std::thread::spawn(move || -> Result<()> {
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).context("entering the namespace")?;
            let session: u64 = rand::random();
            let mut flows: BTreeMap<(Ipv4Addr, Ipv4Addr), (socket2::Socket, u64)> = BTreeMap::new();
            let mut buf = [0u8; 100];
            let mut next = Instant::now();
            loop {
                loop {
                    match rx.try_recv() {
                        Ok(SendCmd::Start(s, g)) => {
                            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
                            sock.bind(&SocketAddr::new(IpAddr::V4(s), 0).into())
                                .with_context(|| format!("binding {s}"))?;
                            sock.set_multicast_if_v4(&s)?;
                            sock.set_multicast_ttl_v4(16)?;
                            sock.set_multicast_loop_v4(false)?;
                            flows.insert((s, g), (sock, 0));
                        }
                        Ok(SendCmd::Stop(s, g)) => {
                            flows.remove(&(s, g));
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
                    }
                }
                for ((_, g), (sock, seq)) in flows.iter_mut() {
                    Header { session, seq: *seq, sent_ns: crate::util::unix_nanos() }.write(&mut buf);
                    let _ = sock.send_to(&buf, &SocketAddr::new(IpAddr::V4(*g), PORT).into());
                    *seq += 1;
                }
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else if now - next > Duration::from_millis(50) {
                    next = now;
                }
            }
        });
        Ok(Senders { tx: Some(tx), thread: Some(thread) })
    }

    fn send(&self, cmd: SendCmd) -> Result<()> {
        self.tx.as_ref().ok_or_else(|| anyhow!("senders stopped"))?.send(cmd).map_err(|_| anyhow!("sender thread died"))
    }

    fn flow(&self, s: Ipv4Addr, g: Ipv4Addr, on: bool) -> Result<()> {
        self.send(if on { SendCmd::Start(s, g) } else { SendCmd::Stop(s, g) })
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- the daemon --------------------------------------------------------------------------------

/// `status` over a daemon's control socket.
/// Starts the benchmarks' driad-ingest on `ing` (run key `bench:driad`, as nobody, log in
/// `{ing}/driad-bench.log`), following `joinfile` and asking the lab DNS; returns its pid and
/// control socket once the socket answers.
fn spawn_driad(lab: &mut Lab, joinfile: &Path, log_level: &str) -> Result<(u32, PathBuf)> {
    let bin = lab.bin_dir().to_path_buf();
    let ing = lab.node_dir("ing");
    let runtime = ing.join("driad-bench");
    let sock = runtime.join("driad-ingest.sock");
    let argv: Vec<String> = [
        bin.join("driad-ingest").display().to_string(),
        "--joinfile".into(),
        joinfile.display().to_string(),
        "--native-interface".into(),
        "amt0".into(),
        "--nameserver".into(),
        DNS.into(),
        "--runtime-dir".into(),
        runtime.display().to_string(),
        "--log-level".into(),
        log_level.into(),
    ]
    .into();
    let spec = SpawnSpec {
        argv,
        log: Some(ing.join("driad-bench.log")),
        user: Some("nobody".into()),
        caps: vec!["net_admin".into(), "net_raw".into()],
        ..Default::default()
    };
    let pid = lab.spawn("bench:driad", "ing", &spec)?;
    wait_until("driad-ingest's control socket", Duration::from_secs(10), || Ok(daemon_status(&sock).is_ok()))?;
    Ok((pid, sock))
}

fn daemon_status(sock: &Path) -> Result<serde_json::Value> {
    daemon_command(sock, "status")
}

/// A command over a daemon's control socket (`status`; driad-ingest's `summary`).
fn daemon_command(sock: &Path, command: &str) -> Result<serde_json::Value> {
    let mut s = UnixStream::connect(sock).with_context(|| format!("connecting to {}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{command}\n").as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(serde_json::from_slice(&out)?)
}

/// The number of tunnels and of (S,G)s over all tunnels.
fn tunnel_counts(sock: &Path) -> Result<(usize, usize)> {
    let st = daemon_status(sock)?;
    let tunnels = st["tunnels"].as_array().cloned().unwrap_or_default();
    let sgs = tunnels.iter().map(|t| t["sgs"].as_array().map_or(0, Vec::len)).sum();
    Ok((tunnels.len(), sgs))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let end = Instant::now() + timeout;
    loop {
        signals::check()?;
        if f().unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("timed out after {} waiting for {what}", fmt_secs(timeout));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Replaces the joinfile atomically; returns the time just before the rename.
fn write_joinfile(path: &Path, sgs: &[(Ipv4Addr, Ipv4Addr)]) -> Result<f64> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    for (s, g) in sgs {
        writeln!(f, "{s},{g}")?;
    }
    drop(f);
    let t = unix_now();
    std::fs::rename(&tmp, path)?;
    Ok(t)
}

// ---- the join benchmark ------------------------------------------------------------------------

fn ms(d: f64) -> f64 {
    d * 1e3
}

/// Samples of one figure and its stages.
#[derive(Default)]
struct Samples {
    values: Vec<f64>,
    failed: usize,
    /// Per stage, in the order they happen.
    stages: Vec<(&'static str, Vec<f64>)>,
}

impl Samples {
    fn stage(&mut self, name: &'static str, from: Option<f64>, to: Option<f64>) {
        let (Some(a), Some(b)) = (from, to) else { return };
        match self.stages.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(ms(b - a)),
            None => self.stages.push((name, vec![ms(b - a)])),
        }
    }
}

fn is_data(p: &Pkt, s: Ipv4Addr, g: Ipv4Addr) -> bool {
    p.what == What::Data { src: IpAddr::V4(s), dst: IpAddr::V4(g) }
}

fn amt(p: &Pkt, want: u8) -> bool {
    matches!(p.what, What::Amt { ty, .. } if ty == want)
}

fn amt_data(p: &Pkt, s: Ipv4Addr, g: Ipv4Addr) -> bool {
    matches!(&p.what, What::Amt { ty: 6, inner: Some(i), .. } if *i == (IpAddr::V4(s), IpAddr::V4(g)))
}

fn blocks(p: &Pkt, s: Ipv4Addr, g: Ipv4Addr) -> bool {
    matches!(&p.what, What::Amt { ty: 5, block, .. } if block.contains(&(IpAddr::V4(s), IpAddr::V4(g))))
}

fn prunes(p: &Pkt, s: Ipv4Addr, g: Ipv4Addr) -> bool {
    matches!(&p.what, What::JoinPrune { prunes, .. } if prunes.contains(&(IpAddr::V4(s), IpAddr::V4(g))))
}

fn allows(p: &Pkt, s: Ipv4Addr, g: Ipv4Addr) -> bool {
    matches!(&p.what, What::Amt { ty: 5, allow, .. } if allow.contains(&(IpAddr::V4(s), IpAddr::V4(g))))
}

fn joins(p: &Pkt, s: Ipv4Addr, g: Ipv4Addr) -> bool {
    matches!(&p.what, What::JoinPrune { joins, .. } if joins.contains(&(IpAddr::V4(s), IpAddr::V4(g))))
}

/// Stages of a cold join on the wire (up0), from `t0` (joinfile written, or PIM Join).
fn cold_stages(samples: &mut Samples, up: &Sniffer, t0: f64, s: Ipv4Addr, g: Ipv4Addr, tun: Option<f64>) {
    let q = up.first(t0, |p| p.outgoing && matches!(p.what, What::Dns { query: true })).map(|p| p.ts);
    let a = up.first(t0, |p| !p.outgoing && matches!(p.what, What::Dns { query: false })).map(|p| p.ts);
    let disc = up.first(t0, |p| p.outgoing && amt(p, 1)).map(|p| p.ts);
    let adv = up.first(t0, |p| !p.outgoing && amt(p, 2)).map(|p| p.ts);
    let req = up.first(t0, |p| p.outgoing && amt(p, 3)).map(|p| p.ts);
    let query = up.first(t0, |p| !p.outgoing && amt(p, 4)).map(|p| p.ts);
    let upd = up.first(t0, |p| p.outgoing && allows(p, s, g)).map(|p| p.ts);
    let data = up.first(t0, |p| !p.outgoing && amt_data(p, s, g)).map(|p| p.ts);
    samples.stage("start → DNS query sent", Some(t0), q);
    samples.stage("DNS query → answer", q, a);
    samples.stage("DNS answer → first AMT message", a, disc.or(req));
    samples.stage("Relay Discovery → Advertisement", disc, adv);
    samples.stage("Advertisement → Request", adv, req);
    samples.stage("Request → Membership Query", req, query);
    samples.stage("Membership Query → Update", query, upd);
    samples.stage("Update → first AMT Data", upd, data);
    samples.stage("AMT Data on up0 → packet on the TUN", data, tun);
}

/// Joinfile → TUN: driad-ingest alone.
fn joinfile_samples(
    lab: &mut Lab,
    args: &BenchArgs,
    senders: &Senders,
    up: &Sniffer,
    tun: &Sniffer,
    sock: &Path,
    joinfile: &Path,
) -> Result<Vec<(String, Samples, Option<f64>)>> {
    let timeout = Duration::from_secs(3);
    let mut out = Vec::new();
    for (block, name) in [(1, "joinfile → TUN, cold (D=0)"), (2, "joinfile → TUN, cold (D=1)")] {
        let mut samples = Samples::default();
        let g = bench_group(block, 0);
        for k in 0..args.count {
            signals::check()?;
            let s = bench_source(block, k);
            senders.flow(s, g, true)?;
            std::thread::sleep(Duration::from_millis(10));
            let start = unix_now() - 0.001;
            up.forget_before(start);
            tun.forget_before(start);
            let t0 = write_joinfile(joinfile, &[(s, g)])?;
            match tun.wait_first(t0, timeout, |p| is_data(p, s, g)) {
                Some(p) => {
                    samples.values.push(ms(p.ts - t0));
                    cold_stages(&mut samples, up, t0, s, g, Some(p.ts));
                }
                None => samples.failed += 1,
            }
            senders.flow(s, g, false)?;
            write_joinfile(joinfile, &[])?;
            wait_until("the tunnel to close", Duration::from_secs(3), || Ok(tunnel_counts(sock)?.0 == 0))?;
        }
        out.push((name.to_string(), samples, Some(20.0)));
        progress(name, &out);
    }
    // Warm: an anchor (S,G) keeps the tunnel; each sample joins a new group of its source.
    let anchor = (bench_source(0, 0), bench_group(0, 0));
    senders.flow(anchor.0, anchor.1, true)?;
    let t0 = write_joinfile(joinfile, &[anchor])?;
    tun.wait_first(t0, timeout, |p| is_data(p, anchor.0, anchor.1))
        .ok_or_else(|| anyhow!("the anchor (S,G) {anchor:?} never reached the TUN"))?;
    let mut samples = Samples::default();
    for k in 0..args.count {
        signals::check()?;
        let g = bench_group(1, k);
        senders.flow(anchor.0, g, true)?;
        std::thread::sleep(Duration::from_millis(10));
        let start = unix_now() - 0.001;
        up.forget_before(start);
        tun.forget_before(start);
        let t0 = write_joinfile(joinfile, &[anchor, (anchor.0, g)])?;
        match tun.wait_first(t0, timeout, |p| is_data(p, anchor.0, g)) {
            Some(p) => {
                samples.values.push(ms(p.ts - t0));
                let upd = up.first(t0, |q| q.outgoing && allows(q, anchor.0, g)).map(|q| q.ts);
                let data = up.first(t0, |q| !q.outgoing && amt_data(q, anchor.0, g)).map(|q| q.ts);
                samples.stage("start → Update sent", Some(t0), upd);
                samples.stage("Update → first AMT Data", upd, data);
                samples.stage("AMT Data on up0 → packet on the TUN", data, Some(p.ts));
            }
            None => samples.failed += 1,
        }
        senders.flow(anchor.0, g, false)?;
        write_joinfile(joinfile, &[anchor])?;
        wait_until("the (S,G) to leave", Duration::from_secs(3), || Ok(tunnel_counts(sock)?.1 == 1))?;
    }
    senders.flow(anchor.0, anchor.1, false)?;
    write_joinfile(joinfile, &[])?;
    wait_until("the tunnel to close", Duration::from_secs(3), || Ok(tunnel_counts(sock)?.0 == 0))?;
    out.push(("joinfile → TUN, warm".to_string(), samples, Some(5.0)));
    progress("joinfile → TUN, warm", &out);
    let _ = lab;
    Ok(out)
}

fn progress(name: &str, out: &[(String, Samples, Option<f64>)]) {
    if let Some((_, s, _)) = out.last() {
        let mut v = s.values.clone();
        v.sort_by(f64::total_cmp);
        eprintln!(
            "bench join: {name}: {} samples, p50 {:.2} ms, p99 {:.2} ms{}",
            v.len(),
            percentile(&v, 50.0),
            percentile(&v, 99.0),
            if s.failed > 0 { format!(", {} failed", s.failed) } else { String::new() }
        );
    }
}

/// One receiver join on rcv1 (`mcast-lab recv --count 1`): its report.
fn receiver_join(lab: &mut Lab, s: Ipv4Addr, g: Ipv4Addr) -> Result<RecvReport> {
    let cmd = format!(
        "{} recv --source {s} --group {g} --port {PORT} --count 1 --timeout 5s --json",
        lab.mcast_lab_exe().display()
    );
    let out = lab.run("rcv1", &cmd, Duration::from_secs(10))?;
    serde_json::from_str(&out.stdout).with_context(|| format!("receiver report: {}", out.text().trim()))
}

/// The receiver's figure and where its time goes outside ing: from its join to the PIM Join
/// reaching ing (IGMP, FRR), and from the packet leaving ing to the receiver (FRR's forwarding,
/// which for a new (S,G) includes its MFC installation).
fn receiver_stages(samples: &mut Samples, report: Option<RecvReport>, join: Option<f64>, data: Option<f64>) {
    let Some((joined, delay)) = report.and_then(|r| r.first_packet_delay_ms.map(|d| (r.joined_unix, d))) else {
        samples.failed += 1;
        return;
    };
    samples.values.push(delay);
    samples.stage("receiver join → PIM Join on ing", Some(joined), join);
    samples.stage("first packet out of ing → at the receiver", data, Some(joined + delay / 1e3));
}

/// PIM Join → down0, and receiver join → first packet: the full chain.
fn chain_samples(
    lab: &mut Lab,
    args: &BenchArgs,
    senders: &Senders,
    up: &Sniffer,
    down: &Sniffer,
    sock: &Path,
    leave_only: bool,
) -> Result<Vec<(String, Samples, Option<f64>)>> {
    let timeout = Duration::from_secs(3);
    let mut pim_cold = Samples::default();
    let mut rcv_cold = Samples::default();
    let mut leave = Samples::default();
    let g = bench_group(3, 0);
    for k in 0..args.count {
        signals::check()?;
        let s = bench_source(3, k);
        senders.flow(s, g, true)?;
        std::thread::sleep(Duration::from_millis(10));
        let start = unix_now();
        up.forget_before(start);
        down.forget_before(start);
        let report = receiver_join(lab, s, g);
        let join = down.wait_first(start, timeout, |p| !p.outgoing && joins(p, s, g)).map(|p| p.ts);
        let data = down.wait_first(start, timeout, |p| p.outgoing && is_data(p, s, g)).map(|p| p.ts);
        match (join, data) {
            (Some(j), Some(d)) => {
                pim_cold.values.push(ms(d - j));
                cold_stages(&mut pim_cold, up, j, s, g, None);
            }
            _ => pim_cold.failed += 1,
        }
        receiver_stages(&mut rcv_cold, report.ok(), join, data);
        // The receiver left after its first packet (IGMPv3 BLOCK); FRR prunes 0.1 s later
        // (last-member query interval 1 ds, count 1); the (S,G) was the tunnel's only one.
        let prune = down.wait_first(start, timeout, |p| !p.outgoing && prunes(p, s, g)).map(|p| p.ts);
        senders.flow(s, g, false)?;
        wait_until("the tunnel to close after the leave", Duration::from_secs(5), || Ok(tunnel_counts(sock)?.0 == 0))?;
        let teardown = prune.and_then(|t| up.wait_first(t, Duration::from_secs(1), |p| p.outgoing && amt(p, 7)));
        match (prune, teardown) {
            (Some(p), Some(t)) => {
                leave.values.push(ms(t.ts - p));
                let block = up.first(p, |q| q.outgoing && blocks(q, s, g)).map(|q| q.ts);
                leave.stage("Prune → BLOCK Update sent", Some(p), block);
                leave.stage("BLOCK Update → Teardown sent", block, Some(t.ts));
            }
            _ => leave.failed += 1,
        }
    }
    let leave = ("PIM Prune on ing → Teardown sent".to_string(), leave, Some(10.0));
    if leave_only {
        progress("PIM Prune → Teardown", std::slice::from_ref(&leave));
        return Ok(vec![leave]);
    }
    let mut out = vec![
        ("PIM Join → first packet out of down0, cold".to_string(), pim_cold, Some(20.0)),
        ("receiver join → first packet, cold".to_string(), rcv_cold, Some(25.0)),
    ];
    progress("PIM Join → down0, cold", &out[..1]);
    progress("receiver join → first packet, cold", &out);
    progress("PIM Prune → Teardown", std::slice::from_ref(&leave));
    out.push(leave);

    // Warm: rcv2 holds the anchor (S,G) of the source, so its tunnel stays up.
    let anchor = (bench_source(0, 0), bench_group(0, 0));
    senders.flow(anchor.0, anchor.1, true)?;
    let key = "bench:anchor";
    let stats = lab.dir.join("bench-anchor.json");
    let argv = vec![
        lab.mcast_lab_exe().display().to_string(),
        "recv".into(),
        "--source".into(),
        anchor.0.to_string(),
        "--group".into(),
        anchor.1.to_string(),
        "--count".into(),
        "0".into(),
        "--stats-file".into(),
        stats.display().to_string(),
    ];
    lab.spawn(key, "rcv2", &SpawnSpec { argv, log: Some(lab.dir.join("bench-anchor.log")), ..Default::default() })?;
    wait_until("the anchor stream at rcv2", Duration::from_secs(10), || {
        let r: RecvReport = serde_json::from_slice(&std::fs::read(&stats)?)?;
        Ok(r.received > 0)
    })?;
    let mut pim_warm = Samples::default();
    let mut rcv_warm = Samples::default();
    for k in 0..args.count {
        signals::check()?;
        let g = bench_group(2, k);
        senders.flow(anchor.0, g, true)?;
        std::thread::sleep(Duration::from_millis(10));
        let start = unix_now();
        up.forget_before(start);
        down.forget_before(start);
        let report = receiver_join(lab, anchor.0, g);
        let join = down.wait_first(start, timeout, |p| !p.outgoing && joins(p, anchor.0, g)).map(|p| p.ts);
        let data = down.wait_first(start, timeout, |p| p.outgoing && is_data(p, anchor.0, g)).map(|p| p.ts);
        match (join, data) {
            (Some(j), Some(d)) => {
                pim_warm.values.push(ms(d - j));
                let upd = up.first(j, |q| q.outgoing && allows(q, anchor.0, g)).map(|q| q.ts);
                let amt = up.first(j, |q| !q.outgoing && amt_data(q, anchor.0, g)).map(|q| q.ts);
                pim_warm.stage("PIM Join → Update sent", Some(j), upd);
                pim_warm.stage("Update → first AMT Data", upd, amt);
                pim_warm.stage("AMT Data on up0 → out of down0", amt, Some(d));
            }
            _ => pim_warm.failed += 1,
        }
        receiver_stages(&mut rcv_warm, report.ok(), join, data);
        senders.flow(anchor.0, g, false)?;
        wait_until("the (S,G) to leave", Duration::from_secs(5), || Ok(tunnel_counts(sock)?.1 == 1))?;
    }
    lab.stop_key(key, Signal::SIGTERM, Duration::from_secs(3))?;
    senders.flow(anchor.0, anchor.1, false)?;
    out.push(("PIM Join → first packet out of down0, warm".to_string(), pim_warm, Some(5.0)));
    progress("PIM Join → down0, warm", &out);
    out.push(("receiver join → first packet, warm".to_string(), rcv_warm, None));
    progress("receiver join → first packet, warm", &out);
    Ok(out)
}

/// The join benchmark in a fresh lab.
fn join(args: &BenchArgs, leave_only: bool) -> Result<(Vec<Figure>, Vec<Figure>)> {
    let mut topo = Topology::load(None)?;
    let vars: BTreeMap<String, toml::Value> = [
        ("igmp_last_member_query_interval".to_string(), toml::Value::Integer(1)),
        ("igmp_last_member_query_count".to_string(), toml::Value::Integer(1)),
    ]
    .into_iter()
    .collect();
    topo.set_vars(&vars)?;
    let mut lab = Lab::up(topo, &LabOptions { purpose: "bench join".into(), ..Default::default() })?;
    let result = join_in(&mut lab, args, leave_only);
    if let Some(dir) = &args.keep {
        let dest = dir.join(format!("{}-bench-join", crate::util::utc_stamp()));
        lab.keep_results(dest.clone());
        eprintln!("bench join: run directory kept in {}", dest.display());
    }
    lab.teardown();
    result
}

/// The join figures are `join`'s, the Prune → Teardown one `leave`'s.
fn bench_name(figure: &str) -> &'static str {
    if figure.starts_with("PIM Prune") { "leave" } else { "join" }
}

/// Part 1 of the join benchmark: driad-ingest alone on a joinfile the benchmark writes.
fn joinfile_part(
    lab: &mut Lab,
    args: &BenchArgs,
    senders: &Senders,
    up: &Sniffer,
) -> Result<Vec<(String, Samples, Option<f64>)>> {
    let joinfile = lab.node_dir("ing").join("bench.sgs");
    let (_, sock) = spawn_driad(lab, &joinfile, "info")?;
    let tun = Sniffer::start(&lab.ns_name("ing"), "amt0")?;
    let results = joinfile_samples(lab, args, senders, up, &tun, &sock, &joinfile)?;
    drop(tun);
    lab.stop_key("bench:driad", Signal::SIGTERM, Duration::from_secs(3))?;

    Ok(results)
}

fn join_in(lab: &mut Lab, args: &BenchArgs, leave_only: bool) -> Result<(Vec<Figure>, Vec<Figure>)> {
    let bin = lab.bin_dir().to_path_buf();
    if !bin.join("driad-ingest").exists() || !bin.join("pimwatch").exists() || !bin.join("amt-relay").exists() {
        bail!("the join benchmark needs driad-ingest, pimwatch and amt-relay next to mcast-lab ({})", bin.display());
    }
    // The benchmark's sources: addresses on src, their zone on the DNS server, a route on acc.
    let mut batch = String::new();
    for block in 0..4 {
        for k in 0..(if block == 0 { 1 } else { args.count }) {
            batch.push_str(&format!("addr add {}/32 dev eth0\n", bench_source(block, k)));
        }
    }
    let batch_file = lab.dir.join("bench-src-addrs.batch");
    std::fs::write(&batch_file, batch)?;
    lab.run("src", &format!("ip -batch {}", batch_file.display()), Duration::from_secs(30))
        .and_then(|o| if o.status.success() { Ok(()) } else { Err(anyhow!("ip -batch: {}", o.text())) })?;
    lab.run("acc", "ip route add 198.18.0.0/15 via 10.9.1.2", Duration::from_secs(5))?;
    let zones = lab.node_dir("dns").join("zones");
    std::fs::create_dir_all(&zones)?;
    std::fs::write(zones.join("18.198.in-addr.arpa.zone"), bench_zone(args.count))?;
    lab.start("dns/dns-server")?;
    lab.start("relay1/amt-relay")?;
    let senders = Senders::start(&lab.ns_name("src"), args.rate)?;
    let ing = lab.node_dir("ing");
    let up = Sniffer::start(&lab.ns_name("ing"), "up0")?;

    // Part 1: driad-ingest alone, on a joinfile written here.
    let mut results = Vec::new();
    if !leave_only {
        results = joinfile_part(lab, args, &senders, &up)?;
    }

    // Part 2: the full chain, driad-ingest on pimwatch's joinfile as in the lab's service.
    lab.start("ing/driad-ingest")?;
    lab.start("ing/pimwatch")?;
    let sock = ing.join("driad-ingest").join("driad-ingest.sock");
    wait_until("driad-ingest's control socket", Duration::from_secs(10), || Ok(daemon_status(&sock).is_ok()))?;
    wait_until("FRR's PIM adjacency with pimwatch", Duration::from_secs(10), || {
        Ok(lab.vtysh("acc", &["show ip pim neighbor".to_string()])?.stdout.contains("10.9.1.2"))
    })?;
    let down = Sniffer::start(&lab.ns_name("ing"), "down0")?;
    results.extend(chain_samples(lab, args, &senders, &up, &down, &sock, leave_only)?);

    let mut figures = Vec::new();
    let mut breakdown = Vec::new();
    for (name, samples, goal) in results {
        for (stage, values) in samples.stages {
            breakdown.push(Figure::latency(bench_name(&name), &format!("{name}: {stage}"), values, 0, None));
        }
        figures.push(Figure::latency(bench_name(&name), &name, samples.values, samples.failed, goal));
    }
    Ok((figures, breakdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_groups_are_distinct_per_block() {
        assert_eq!(bench_source(0, 0), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(bench_source(1, 0), Ipv4Addr::new(198, 18, 4, 1));
        assert_eq!(bench_source(1, 249), Ipv4Addr::new(198, 18, 4, 250));
        assert_eq!(bench_source(1, 250), Ipv4Addr::new(198, 18, 5, 1));
        assert_eq!(bench_source(3, 999), Ipv4Addr::new(198, 18, 15, 250));
        assert_eq!(bench_group(2, 3), Ipv4Addr::new(232, 18, 8, 4));
    }

    #[test]
    fn the_zone_parses_and_lists_every_source() {
        let z = bench_zone(3);
        assert!(z.contains("1.0 IN AMTRELAY 10 0 1 203.0.113.15\n"), "{z}");
        assert!(z.contains("3.4 IN AMTRELAY 10 0 1 203.0.113.15\n"), "{z}");
        assert!(z.contains("1.8 IN AMTRELAY 10 1 1 203.0.113.15\n"), "{z}");
        mcast_labdns::Zone::parse(&z, "bench.zone").unwrap();
    }

    #[test]
    fn classifies_amt_updates_and_data() {
        // An AMT Update carrying an IGMPv3 report with one ALLOW record (198.18.0.1, 232.18.1.1).
        let igmp = [
            0x22, 0, 0, 0, 0, 0, 0, 1, // type, reserved, checksum, reserved, 1 record
            5, 0, 0, 1, 232, 18, 1, 1, 198, 18, 0, 1,
        ];
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 192, 0, 2, 2, 224, 0, 0, 22];
        let total = (ip.len() + igmp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&igmp);
        let mut amt = vec![5, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 1];
        amt.extend_from_slice(&ip);
        let mut udp = vec![0x9c, 0x40, 0x08, 0xdc, 0, 0, 0, 0];
        udp.extend_from_slice(&amt);
        let mut outer = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 2, 203, 0, 113, 15];
        let total = (outer.len() + udp.len()) as u16;
        outer[2..4].copy_from_slice(&total.to_be_bytes());
        outer.extend_from_slice(&udp);
        let p = Pkt { ts: 0.0, outgoing: true, what: classify(&outer) };
        assert!(allows(&p, Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(232, 18, 1, 1)), "{p:?}");
        assert!(!allows(&p, Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(232, 18, 1, 1)));
    }
}
