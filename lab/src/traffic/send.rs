//! `mcast-lab send`: paced, sequenced UDP datagrams from a source address to a group.
//!
//! Pacing is by deadline: packet i is due at start + i/rate, so sleeping never accumulates
//! drift; when the sender falls behind it sends every due packet at once (bursts of at most
//! 256) and catches up.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::payload::{HEADER_LEN, Header};
use super::sockopt;
use crate::signals;
use crate::util::{Dur, unix_nanos};

/// Options of `mcast-lab send`.
#[derive(Debug, Clone, clap::Args)]
pub struct SendArgs {
    /// Source address to send from (bound; must exist on this host).
    #[arg(long, short = 's')]
    pub source: IpAddr,
    /// Destination group.
    #[arg(long, short = 'g')]
    pub group: IpAddr,
    /// Destination UDP port.
    #[arg(long, short = 'p', default_value_t = 5001)]
    pub port: u16,
    /// Packets per second (0 = as fast as possible).
    #[arg(long, short = 'r', default_value_t = 10.0)]
    pub rate: f64,
    /// Packets to send (0 = until SIGINT/SIGTERM or --duration).
    #[arg(long, short = 'c', default_value_t = 10)]
    pub count: u64,
    /// UDP payload bytes per datagram (at least 32: the sequence header).
    #[arg(long, default_value_t = 200)]
    pub size: usize,
    /// Egress interface (IP_MULTICAST_IF / IPV6_MULTICAST_IF by index). Default: the device
    /// owning the source address.
    #[arg(long, short = 'i')]
    pub interface: Option<String>,
    /// Multicast TTL / hop limit (at least 2 to cross one router).
    #[arg(long, default_value_t = 16)]
    pub ttl: u32,
    /// UDP source port (0 = ephemeral).
    #[arg(long, default_value_t = 0)]
    pub source_port: u16,
    /// Stop after this long (e.g. 10s), whatever the count.
    #[arg(long)]
    pub duration: Option<Dur>,
    /// First sequence number.
    #[arg(long, default_value_t = 0)]
    pub start_seq: u64,
    /// Sequence numbers to skip (not send), e.g. 5,6,40 or 10-19: deterministic "loss" for
    /// testing a receiver's gap accounting.
    #[arg(long, value_delimiter = ',')]
    pub skip_seq: Vec<String>,
    /// Print a progress line to stderr this often (e.g. 1s).
    #[arg(long)]
    pub progress: Option<Dur>,
}

/// The JSON summary `send` prints at the end.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SendSummary {
    pub source: String,
    pub group: String,
    pub port: u16,
    pub interface: String,
    pub session: u64,
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Sequence numbers deliberately not sent (`--skip-seq`).
    pub skipped: u64,
    /// Send calls that failed (e.g. ENOBUFS, no route).
    pub errors: u64,
    pub first_error: Option<String>,
    pub first_seq: u64,
    /// The last sequence number used (sent or skipped).
    pub last_seq: Option<u64>,
    pub size: usize,
    pub duration_s: f64,
    pub rate_pps: f64,
    /// Why it stopped: `count`, `duration`, `signal`.
    pub reason: String,
}

fn parse_skips(list: &[String]) -> Result<Vec<(u64, u64)>> {
    let mut v = Vec::new();
    for item in list {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u64>(), b.trim().parse::<u64>()),
            None => (item.parse::<u64>(), item.parse::<u64>()),
        };
        match (a, b) {
            (Ok(a), Ok(b)) if a <= b => v.push((a, b)),
            _ => bail!("invalid --skip-seq item {item:?} (use N or N-M)"),
        }
    }
    Ok(v)
}

/// Opens the sending socket: bound to the source, TTL set, loopback off, egress interface set.
pub fn open_sender(args: &SendArgs) -> Result<(Socket, String)> {
    if args.source.is_ipv4() != args.group.is_ipv4() {
        bail!("source {} and group {} are of different address families", args.source, args.group);
    }
    if !args.group.is_multicast() {
        bail!("{} is not a multicast group", args.group);
    }
    let domain = if args.group.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("creating UDP socket")?;
    sock.bind(&SockAddr::from(SocketAddr::new(args.source, args.source_port)))
        .with_context(|| format!("binding source address {} (is it configured on this host?)", args.source))?;
    let ifname = match &args.interface {
        Some(name) => name.clone(),
        None => sockopt::interface_with_addr(args.source).unwrap_or_else(|| "?".into()),
    };
    if args.group.is_ipv4() {
        sock.set_multicast_ttl_v4(args.ttl).context("IP_MULTICAST_TTL")?;
        sock.set_multicast_loop_v4(false).context("IP_MULTICAST_LOOP")?;
        if let Some(name) = &args.interface {
            sockopt::set_multicast_if_v4_index(&sock, sockopt::ifindex(name)?)?;
        }
    } else {
        sock.set_multicast_hops_v6(args.ttl).context("IPV6_MULTICAST_HOPS")?;
        sock.set_multicast_loop_v6(false).context("IPV6_MULTICAST_LOOP")?;
        if let Some(name) = &args.interface {
            sock.set_multicast_if_v6(sockopt::ifindex(name)?).context("IPV6_MULTICAST_IF")?;
        }
    }
    Ok((sock, ifname))
}

/// Runs the sender to completion and returns its summary.
pub fn run(args: &SendArgs) -> Result<SendSummary> {
    if args.size < HEADER_LEN {
        bail!("--size {} is too small: the header needs {HEADER_LEN} bytes", args.size);
    }
    if args.size > 65_000 {
        bail!("--size {} is too large for one UDP datagram", args.size);
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate must be a non-negative number");
    }
    let skips = parse_skips(&args.skip_seq)?;
    let (sock, ifname) = open_sender(args)?;
    let dest = SockAddr::from(SocketAddr::new(args.group, args.port));
    let session: u64 = rand::random();
    let mut buf = vec![0u8; args.size];
    let period = if args.rate > 0.0 { Some(Duration::from_secs_f64(1.0 / args.rate)) } else { None };
    let start = Instant::now();
    let end = args.duration.map(|d| start + d.0);
    let mut summary = SendSummary {
        source: args.source.to_string(),
        group: args.group.to_string(),
        port: args.port,
        interface: ifname,
        session,
        sent: 0,
        skipped: 0,
        errors: 0,
        first_error: None,
        first_seq: args.start_seq,
        last_seq: None,
        size: args.size,
        duration_s: 0.0,
        rate_pps: 0.0,
        reason: "count".into(),
    };
    let mut i: u64 = 0;
    let mut next_progress = args.progress.map(|p| start + p.0);
    loop {
        if args.count > 0 && i >= args.count {
            break;
        }
        if signals::stop_requested() {
            summary.reason = "signal".into();
            break;
        }
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            summary.reason = "duration".into();
            break;
        }
        if let (Some(p), Some(np)) = (args.progress, next_progress)
            && now >= np
        {
            eprintln!("send: {} sent, {} errors, {:.1}s", summary.sent, summary.errors, start.elapsed().as_secs_f64());
            next_progress = Some(np + p.0);
        }
        if let Some(period) = period {
            let due = start + period.mul_f64(i as f64);
            if due > now {
                let wait = due - now;
                // Sleep most of the way, spin the last stretch for accuracy at high rates.
                if wait > Duration::from_micros(200) {
                    std::thread::sleep((wait - Duration::from_micros(100)).min(Duration::from_millis(50)));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
        }
        // Send every packet that is due now (bounded burst), then re-check the clock.
        let mut burst = 0;
        loop {
            let seq = args.start_seq + i;
            summary.last_seq = Some(seq);
            if skips.iter().any(|&(a, b)| (a..=b).contains(&seq)) {
                summary.skipped += 1;
            } else {
                Header { session, seq, sent_ns: unix_nanos() }.write(&mut buf);
                match sock.send_to(&buf, &dest) {
                    Ok(_) => summary.sent += 1,
                    Err(e) => {
                        summary.errors += 1;
                        if summary.first_error.is_none() {
                            summary.first_error = Some(e.to_string());
                        }
                    }
                }
            }
            i += 1;
            burst += 1;
            if burst >= 256 || (args.count > 0 && i >= args.count) {
                break;
            }
            match period {
                Some(p) if start + p.mul_f64(i as f64) <= Instant::now() => {}
                Some(_) => break,
                None if burst < 64 => {}
                None => break,
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    summary.duration_s = elapsed;
    summary.rate_pps = if elapsed > 0.0 { summary.sent as f64 / elapsed } else { 0.0 };
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lists() {
        let s = parse_skips(&["5".into(), "10-12".into(), " ".into()]).unwrap();
        assert_eq!(s, vec![(5, 5), (10, 12)]);
        assert!(parse_skips(&["x".into()]).is_err());
        assert!(parse_skips(&["9-3".into()]).is_err());
    }
}
