//! `mcast-lab recv`: an SSM receiver in the spirit of libmcrx's mcrx-check.
//!
//! It binds group:port, turns IP_MULTICAST_ALL off (only its own joins reach the socket),
//! joins (S,G) with MCAST_JOIN_SOURCE_GROUP on an interface index, and counts. Modes:
//!
//! * `--count N --timeout T`: exit 0 once N distinct datagrams arrived, 1 on timeout.
//! * `--count 0`: hold the join until SIGTERM/SIGINT (or `--duration`), then leave and
//!   report: what the scenario runner's receivers do.
//!
//! `--stats-file F` keeps a JSON report there (rewritten atomically every `--stats-interval`,
//! on SIGUSR1, and at exit), which is what scenario expectations read.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::payload::Header;
use super::sockopt;
use super::stats::{Latency, RecvReport, Streams};
use crate::signals;
use crate::util::{Dur, unix_nanos, unix_now, write_atomic};

/// Options of `mcast-lab recv`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecvArgs {
    /// Source of the (S,G) to join.
    #[arg(long, short = 's')]
    pub source: IpAddr,
    /// Group of the (S,G) to join.
    #[arg(long, short = 'g')]
    pub group: IpAddr,
    /// UDP port to receive on.
    #[arg(long, short = 'p', default_value_t = 5001)]
    pub port: u16,
    /// Interface to join on (default: the interface of the route toward the source).
    #[arg(long, short = 'i')]
    pub interface: Option<String>,
    /// Distinct datagrams to wait for (0 = hold the join until SIGTERM/SIGINT or --duration).
    #[arg(long, short = 'c', default_value_t = 10)]
    pub count: u64,
    /// Give up after this long (count mode), e.g. 5s.
    #[arg(long, short = 't', default_value = "10s")]
    pub timeout: Dur,
    /// Hold the join this long, then leave and report (hold mode).
    #[arg(long)]
    pub duration: Option<Dur>,
    /// Print the final report as JSON on stdout (default: one summary line).
    #[arg(long)]
    pub json: bool,
    /// Keep a JSON report in this file (atomically rewritten).
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
    /// How often to rewrite --stats-file.
    #[arg(long, default_value = "200ms")]
    pub stats_interval: Dur,
    /// Print a progress line to stdout this often (e.g. 1s).
    #[arg(long)]
    pub progress: Option<Dur>,
    /// Do not join: only listen on group:port, seeing whatever this host already accepts
    /// (IP_MULTICAST_ALL stays on). For checking that a host that did not join gets nothing.
    #[arg(long)]
    pub no_join: bool,
}

struct Receiver {
    sock: UdpSocket,
    ifindex: u32,
    ifname: String,
}

fn open(args: &RecvArgs) -> Result<Receiver> {
    if args.source.is_ipv4() != args.group.is_ipv4() {
        bail!("source {} and group {} are of different address families", args.source, args.group);
    }
    if !args.group.is_multicast() {
        bail!("{} is not a multicast group", args.group);
    }
    let (ifname, ifindex) = match &args.interface {
        Some(name) => (name.clone(), sockopt::ifindex(name)?),
        None => match sockopt::interface_toward(args.source) {
            Some(name) => {
                let idx = sockopt::ifindex(&name)?;
                (name, idx)
            }
            None => ("(kernel's choice)".to_string(), 0),
        },
    };
    let domain = if args.group.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("creating UDP socket")?;
    sock.set_reuse_address(true).context("SO_REUSEADDR")?;
    let _ = sock.set_recv_buffer_size(4 << 20);
    if args.group.is_ipv6() {
        sock.set_only_v6(true).context("IPV6_V6ONLY")?;
    }
    // Only this socket's own joins reach it (unless listening without a join).
    if !args.no_join {
        if args.group.is_ipv4() {
            sock.set_multicast_all_v4(false).context("IP_MULTICAST_ALL")?;
        } else {
            sock.set_multicast_all_v6(false).context("IPV6_MULTICAST_ALL")?;
        }
    }
    // Bound to the group, so unicast and other groups on the port never reach the socket.
    sock.bind(&SockAddr::from(SocketAddr::new(args.group, args.port)))
        .with_context(|| format!("binding {}:{}", args.group, args.port))?;
    if !args.no_join {
        sockopt::join_source_group(&sock, args.source, args.group, ifindex)?;
    }
    let sock: UdpSocket = sock.into();
    sock.set_read_timeout(Some(Duration::from_millis(50))).context("SO_RCVTIMEO")?;
    Ok(Receiver { sock, ifindex, ifname })
}

/// Runs the receiver and returns its final report (the exit code follows `report.ok` in count
/// mode).
pub fn run(args: &RecvArgs) -> Result<RecvReport> {
    let rx = open(args)?;
    let joined = Instant::now();
    let mut report = RecvReport {
        source: args.source.to_string(),
        group: args.group.to_string(),
        port: args.port,
        interface: rx.ifname.clone(),
        state: if args.no_join { "listening" } else { "joined" }.into(),
        count_target: args.count,
        joined_unix: unix_now(),
        ..Default::default()
    };
    let mut streams = Streams::default();
    let mut latency = Latency::default();
    let mut first_at: Option<Instant> = None;
    let mut last_at: Option<Instant> = None;
    let mut buf = vec![0u8; 65_536];
    let deadline = if args.count > 0 { Some(joined + args.timeout.0) } else { None };
    let hold_end = args.duration.map(|d| joined + d.0);
    let write_stats = |r: &RecvReport| -> Result<()> {
        if let Some(p) = &args.stats_file {
            write_atomic(p, &serde_json::to_vec_pretty(r)?)?;
        }
        Ok(())
    };
    write_stats(&report)?;
    let mut next_stats = joined + args.stats_interval.0;
    let mut next_progress = args.progress.map(|p| joined + p.0);
    let fill = |report: &mut RecvReport,
                streams: &Streams,
                latency: &Latency,
                first: Option<Instant>,
                last: Option<Instant>| {
        report.elapsed_s = joined.elapsed().as_secs_f64();
        report.received = streams.unique();
        report.lost = streams.lost();
        report.gaps = streams.gaps();
        report.gap_ranges = streams.gap_ranges(20);
        report.duplicates = streams.duplicates();
        report.reordered = streams.reordered();
        report.sessions = streams.sessions() as u64;
        let range = streams.current().and_then(|t| t.range());
        report.first_seq = range.map(|r| r.0);
        report.last_seq = range.map(|r| r.1);
        report.first_packet_delay_ms = first.map(|f| (f - joined).as_secs_f64() * 1e3);
        report.latency_us = latency.summary();
        if let (Some(f), Some(l)) = (first, last) {
            let span = (l - f).as_secs_f64();
            report.rate_pps = (span > 0.0).then(|| (report.received.saturating_sub(1)) as f64 / span);
        }
    };
    loop {
        if signals::stop_requested() || hold_end.is_some_and(|e| Instant::now() >= e) {
            report.state = "stopped".into();
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            report.state = "timeout".into();
            break;
        }
        match rx.sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let now_ns = unix_nanos();
                let now = Instant::now();
                report.packets += 1;
                report.bytes += n as u64;
                match Header::parse(&buf[..n]) {
                    Some(h) if from.ip() == args.source => {
                        first_at.get_or_insert(now);
                        last_at = Some(now);
                        report.last_packet_unix = Some(unix_now());
                        streams.observe(h.session, h.seq);
                        if now_ns >= h.sent_ns {
                            latency.add((now_ns - h.sent_ns) as f64 / 1e3);
                        }
                    }
                    _ => report.foreign += 1,
                }
                if args.count > 0 && streams.unique() >= args.count {
                    report.state = "done".into();
                    report.ok = true;
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("receiving"),
        }
        let now = Instant::now();
        let usr1 = signals::take_usr1();
        if now >= next_stats || usr1 {
            fill(&mut report, &streams, &latency, first_at, last_at);
            write_stats(&report)?;
            next_stats = now + args.stats_interval.0;
            if usr1 {
                eprintln!("{}", serde_json::to_string(&report)?);
            }
        }
        if let (Some(p), Some(np)) = (args.progress, next_progress)
            && now >= np
        {
            fill(&mut report, &streams, &latency, first_at, last_at);
            println!("recv: {}", report.summary_line());
            next_progress = Some(np + p.0);
        }
    }
    // Leave explicitly, so the IGMPv3 BLOCK goes out now rather than at close.
    let leave =
        if args.no_join { Ok(()) } else { sockopt::leave_source_group(&rx.sock, args.source, args.group, rx.ifindex) };
    fill(&mut report, &streams, &latency, first_at, last_at);
    write_stats(&report)?;
    leave?;
    Ok(report)
}
