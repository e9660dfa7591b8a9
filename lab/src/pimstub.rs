//! `mcast-lab pim-hello`: a minimal upstream PIM neighbour (lab-notes §5.1), standing in for
//! pimwatch until it exists.
//!
//! It sends Hellos (Holdtime, DR Priority, random Generation ID) on one interface at start,
//! periodically, and as a triggered Hello when a new neighbour (or a changed GenID) appears;
//! it decodes every Join/Prune it hears with `mcast_wire::pim` and appends one JSON line per
//! (S,G) join or prune to `--log-joins`. On SIGTERM/SIGINT it sends a Hello with Holdtime 0.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mcast_wire::pim::{self, ChecksumContext, HelloOption, Message, Packet, Repr};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::signals;
use crate::traffic::sockopt;
use crate::util::{Dur, unix_now};

/// IP protocol number of PIM.
const IPPROTO_PIM: i32 = 103;

/// Options of `mcast-lab pim-hello`.
#[derive(Debug, Clone, clap::Args)]
pub struct PimHelloArgs {
    /// Interface to speak PIM on (e.g. down0).
    #[arg(long, short = 'i')]
    pub interface: String,
    /// Hello Holdtime in seconds.
    #[arg(long, default_value_t = 105)]
    pub holdtime: u16,
    /// DR Priority.
    #[arg(long, default_value_t = 1)]
    pub dr_priority: u32,
    /// Generation ID (default: random per start).
    #[arg(long)]
    pub generation_id: Option<u32>,
    /// Periodic Hello interval.
    #[arg(long, default_value = "30s")]
    pub interval: Dur,
    /// Append one JSON line per decoded (S,G) join/prune to this file.
    #[arg(long)]
    pub log_joins: Option<PathBuf>,
}

/// One line of the `--log-joins` file.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct JoinEvent {
    /// Seconds since the Unix epoch.
    pub ts: f64,
    /// `join` or `prune`.
    pub event: String,
    /// Sender of the Join/Prune (the downstream router).
    pub from: String,
    pub interface: String,
    pub upstream_neighbor: String,
    /// Whether the upstream neighbour is this stub's address.
    pub for_us: bool,
    pub group: String,
    pub source: String,
    pub holdtime: u16,
    pub sparse: bool,
    pub wildcard: bool,
    pub rpt: bool,
}

struct Neighbor {
    genid: Option<u32>,
    expires: Instant,
}

fn hello_bytes(holdtime: u16, dr_priority: u32, genid: u32) -> Result<Vec<u8>> {
    Repr::hello(vec![
        HelloOption::Holdtime(holdtime),
        HelloOption::DrPriority(dr_priority),
        HelloOption::GenerationId(genid),
    ])
    .to_bytes(ChecksumContext::V4)
    .map_err(|e| anyhow::anyhow!("encoding Hello: {e}"))
}

/// The Join/Prune events (one per source entry) in a decoded message.
pub fn join_events(repr: &Repr, from: Ipv4Addr, me: Ipv4Addr, interface: &str, ts: f64) -> Vec<JoinEvent> {
    let Message::JoinPrune(jp) = &repr.message else { return Vec::new() };
    let mut out = Vec::new();
    for g in &jp.groups {
        let entries = g.joins.iter().map(|s| ("join", s)).chain(g.prunes.iter().map(|s| ("prune", s)));
        for (event, s) in entries {
            out.push(JoinEvent {
                ts,
                event: event.to_string(),
                from: from.to_string(),
                interface: interface.to_string(),
                upstream_neighbor: jp.upstream_neighbor.0.to_string(),
                for_us: jp.upstream_neighbor.0 == IpAddr::V4(me),
                group: g.group.addr.to_string(),
                source: s.addr.to_string(),
                holdtime: jp.holdtime,
                sparse: s.sparse,
                wildcard: s.wildcard,
                rpt: s.rpt,
            });
        }
    }
    out
}

/// Splits an IPv4 datagram from a raw socket into (source, PIM message).
fn split_ipv4(buf: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    if buf.len() < 20 || buf[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]])).min(buf.len());
    if ihl < 20 || total < ihl {
        return None;
    }
    let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
    Some((src, &buf[ihl..total]))
}

/// Runs the stub until SIGTERM/SIGINT.
pub fn run(args: &PimHelloArgs) -> Result<()> {
    let me = match sockopt::interface_addr(&args.interface, true) {
        Some(IpAddr::V4(a)) => a,
        _ => bail!("interface {} has no IPv4 address", args.interface),
    };
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PIM)))
        .context("opening a raw PIM socket (needs root or CAP_NET_RAW)")?;
    sock.bind_device(Some(args.interface.as_bytes())).with_context(|| format!("SO_BINDTODEVICE {}", args.interface))?;
    sock.set_multicast_ttl_v4(1).context("IP_MULTICAST_TTL")?;
    sock.set_multicast_loop_v4(false).context("IP_MULTICAST_LOOP")?;
    sock.set_multicast_if_v4(&me).context("IP_MULTICAST_IF")?;
    sock.set_tos_v4(0xc0).context("IP_TOS")?;
    // Required: without the membership the kernel drops incoming PIM before raw delivery
    // when nothing in the namespace holds MRT_INIT (lab-notes §5.1).
    sock.join_multicast_v4(&pim::ALL_PIM_ROUTERS_V4, &me).context("joining 224.0.0.13")?;
    sock.set_read_timeout(Some(Duration::from_millis(200))).context("SO_RCVTIMEO")?;
    let dest = SockAddr::from(SocketAddr::new(IpAddr::V4(pim::ALL_PIM_ROUTERS_V4), 0));
    let genid = args.generation_id.unwrap_or_else(rand::random);
    let hello = hello_bytes(args.holdtime, args.dr_priority, genid)?;
    let mut log = match &args.log_joins {
        Some(p) => Some(
            OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    eprintln!(
        "pim-hello: {} {me}: Hello holdtime {} dr-priority {} genid {genid:#010x} every {}",
        args.interface, args.holdtime, args.dr_priority, args.interval
    );
    let send_hello = |why: &str| match sock.send_to(&hello, &dest) {
        Ok(_) => eprintln!("pim-hello: {:.3} sent Hello ({why})", unix_now()),
        Err(e) => eprintln!("pim-hello: sending Hello ({why}): {e}"),
    };
    send_hello("start");
    let mut next_hello = Instant::now() + args.interval.0;
    let mut neighbors: BTreeMap<Ipv4Addr, Neighbor> = BTreeMap::new();
    let mut buf = [0u8; 65_536];
    while !signals::stop_requested() {
        let now = Instant::now();
        if now >= next_hello {
            send_hello("periodic");
            next_hello = now + args.interval.0;
        }
        neighbors.retain(|addr, n| {
            let keep = n.expires > now;
            if !keep {
                eprintln!("pim-hello: {:.3} neighbour {addr} expired", unix_now());
            }
            keep
        });
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("receiving PIM"),
        };
        let Some((src, msg)) = split_ipv4(&buf[..n]) else { continue };
        if src == me {
            continue;
        }
        let repr = match Packet::new_checked(msg).and_then(|p| Repr::parse(&p, ChecksumContext::V4)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("pim-hello: undecodable PIM from {src} ({e}): {}", hex(msg));
                continue;
            }
        };
        match &repr.message {
            Message::Hello(h) => {
                let hold = h.holdtime().unwrap_or(105);
                if hold == 0 {
                    if neighbors.remove(&src).is_some() {
                        eprintln!("pim-hello: {:.3} neighbour {src} left (holdtime 0)", unix_now());
                    }
                    continue;
                }
                let genid = h.generation_id();
                let expires = Instant::now() + Duration::from_secs(u64::from(hold));
                let trigger = match neighbors.get_mut(&src) {
                    None => {
                        eprintln!("pim-hello: {:.3} new neighbour {src} genid {genid:?} holdtime {hold}", unix_now());
                        neighbors.insert(src, Neighbor { genid, expires });
                        true
                    }
                    Some(nb) => {
                        nb.expires = expires;
                        if nb.genid != genid {
                            eprintln!("pim-hello: {:.3} neighbour {src} changed genid to {genid:?}", unix_now());
                            nb.genid = genid;
                            true
                        } else {
                            false
                        }
                    }
                };
                if trigger {
                    send_hello("triggered");
                }
            }
            Message::JoinPrune(_) => {
                let events = join_events(&repr, src, me, &args.interface, unix_now());
                for ev in events {
                    let line = serde_json::to_string(&ev)?;
                    eprintln!("pim-hello: {line}");
                    if let Some(f) = log.as_mut() {
                        writeln!(f, "{line}").context("writing the join log")?;
                        f.flush()?;
                    }
                }
            }
            Message::Other { kind, .. } => eprintln!("pim-hello: ignoring PIM {kind:?} from {src}"),
        }
    }
    let bye = hello_bytes(0, args.dr_priority, genid)?;
    match sock.send_to(&bye, &dest) {
        Ok(_) => eprintln!("pim-hello: {:.3} sent Hello holdtime 0 (exit)", unix_now()),
        Err(e) => eprintln!("pim-hello: sending the goodbye Hello: {e}"),
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_matches_lab_notes() {
        // lab-notes §5.1: Holdtime 105, DR Priority 1, GenID 0x1d6b9760, checksum 0x2a98.
        let b = hello_bytes(105, 1, 0x1d6b_9760).unwrap();
        assert_eq!(hex(&b), "20002a98000100020069001300040000000100140004".to_string() + "1d6b9760");
    }

    #[test]
    fn frr_join_and_prune_decode() {
        // lab-notes §6.1: FRR's Join and Prune for (23.212.185.4, 232.1.1.1), upstream 10.9.1.2.
        let join = "2300100501000a090102000100d201000020e8010101000100000100042017d4b904";
        let prune = "2300100501000a090102000100d201000020e8010101000000010100042017d4b904";
        let me = Ipv4Addr::new(10, 9, 1, 2);
        let from = Ipv4Addr::new(10, 9, 1, 1);
        for (text, kind) in [(join, "join"), (prune, "prune")] {
            let bytes: Vec<u8> =
                (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
            let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap(), ChecksumContext::V4).unwrap();
            let ev = join_events(&repr, from, me, "down0", 1.0);
            assert_eq!(ev.len(), 1);
            let e = &ev[0];
            assert_eq!(e.event, kind);
            assert_eq!((e.group.as_str(), e.source.as_str()), ("232.1.1.1", "23.212.185.4"));
            assert_eq!((e.upstream_neighbor.as_str(), e.holdtime), ("10.9.1.2", 210));
            assert!(e.for_us && e.sparse && !e.wildcard && !e.rpt);
        }
    }

    #[test]
    fn ipv4_split() {
        let mut pkt = vec![0x45, 0xc0, 0, 26 + 20, 0, 0, 0, 0, 1, 103, 0, 0, 10, 9, 1, 1, 224, 0, 0, 13];
        pkt.extend_from_slice(&hello_bytes(105, 1, 7).unwrap());
        pkt.extend_from_slice(&[0xee; 4]); // link-layer padding beyond Total Length
        let (src, msg) = split_ipv4(&pkt).unwrap();
        assert_eq!(src, Ipv4Addr::new(10, 9, 1, 1));
        assert_eq!(msg.len(), 26);
        assert!(split_ipv4(&pkt[..10]).is_none());
    }
}
