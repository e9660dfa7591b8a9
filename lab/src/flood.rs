//! `mcast-lab flood`: hostile input at a target, at a rate, for a while, for the hostile-input
//! scenarios (scenarios/hostile-*.toml). Every kind is deterministic for a given `--seed`.
//!
//! AMT (UDP, default port 2268), at `--target ADDR[:PORT]`:
//!
//! * `random`: datagrams of random bytes, 0 to 1400 long;
//! * `amt-truncated`: well-formed AMT messages of every type (1 to 7, random fields) cut short;
//! * `amt-malformed`: well-formed AMT messages with a wrong version, an undefined type, a
//!   wrong length or a few random bytes changed;
//! * `amt-data`: Multicast Data for `--sg S,G` (a valid IPv4/UDP datagram inside), meant to be
//!   sent from an address that is not the tunnel's relay (spoofed data);
//! * `amt-update-garbage`: a gateway that does the Request/Query handshake with the relay at
//!   the target and then sends Membership Updates with the right Response MAC and nonce and
//!   garbage inside (random bytes, an IPv4 header with random IGMP, an IPv6 header with random
//!   MLD), refreshing the handshake every second;
//! * `amt-fake-relay`: no target; listens on `--listen ADDR:PORT` as a hostile relay: answers
//!   each Relay Discovery with three Advertisements carrying a wrong nonce, and each Request
//!   with Membership Queries carrying the right nonce and a garbage IGMP/MLD query (at most
//!   `--rate` replies per second).
//!
//! PIM (IP protocol 103, hand-built IPv4 header so the source can be any address), sent on
//! `--interface` to `--target` (default 224.0.0.13), from `--source ADDR` or a random host of
//! `--source PREFIX/LEN` per packet:
//!
//! * `pim-garbage`: random bytes as PIM;
//! * `pim-bad-checksum`: Hellos and Join/Prunes whose checksum is wrong;
//! * `pim-join`: Join/Prunes joining `--sg` with `--upstream` as the Upstream Neighbor and
//!   `--holdtime`;
//! * `pim-hello`: Hellos with `--holdtime` (0, 1, 65535: absurd ones), each from `--source`.
//!
//! It prints a JSON summary (kind, sent, replies, errors, duration) and exits 0; send errors
//! (ICMP unreachable bouncing back, a full buffer) are counted, not fatal.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use mcast_wire::SourceGroup;
use mcast_wire::amt::Repr as Amt;
use mcast_wire::pim::{self, ChecksumContext, EncodedSource, HelloOption, JoinPruneGroup};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::signals;
use crate::util::parse_duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Random,
    AmtTruncated,
    AmtMalformed,
    AmtData,
    AmtUpdateGarbage,
    AmtFakeRelay,
    PimGarbage,
    PimBadChecksum,
    PimJoin,
    PimHello,
}

#[derive(Debug, Args)]
pub struct FloodArgs {
    /// What to send.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Where: ADDR[:PORT] (UDP kinds; port 2268 by default) or ADDR (PIM kinds; default
    /// 224.0.0.13).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub target: Option<String>,
    /// amt-fake-relay: the address and port to answer on.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Local address to send from: an address (UDP: bound, port from --source-port), or for
    /// PIM kinds an address or a prefix (a random host of it per packet).
    #[arg(long, value_name = "ADDR[/LEN]")]
    pub source: Option<String>,
    /// Local UDP port (0: ephemeral).
    #[arg(long, default_value_t = 0)]
    pub source_port: u16,
    /// PIM kinds: the interface to send on.
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// Packets per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long to send (amt-fake-relay: how long to answer).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many packets (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// amt-data, pim-join: the (S,G).
    #[arg(long, value_name = "S,G")]
    pub sg: Option<SourceGroup>,
    /// pim-join: the Upstream Neighbor Address.
    #[arg(long, value_name = "ADDR")]
    pub upstream: Option<IpAddr>,
    /// pim-join, pim-hello: the Holdtime (seconds; 0xffff = 65535 means forever).
    #[arg(long, default_value_t = 210)]
    pub holdtime: u16,
    /// Seed of the pseudo-random generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What `flood` did.
#[derive(Debug, Clone, Serialize)]
pub struct FloodSummary {
    pub kind: Kind,
    pub sent: u64,
    /// amt-fake-relay: messages received and answered; amt-update-garbage: handshakes.
    pub received: u64,
    pub errors: u64,
    pub duration_s: f64,
}

/// A small deterministic generator (xorshift64*): reproducible floods without depending on a
/// particular `rand` API.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// `min + 0..span` random bytes.
    pub fn some_bytes(&mut self, min: usize, span: u64) -> Vec<u8> {
        let len = min + self.below(span) as usize;
        self.bytes(len)
    }
}

/// Paces packets by deadline: `wait()` returns false when the flood is over.
struct Pacer {
    start: Instant,
    interval: Duration,
    end: Instant,
    count: u64,
    limit: u64,
}

impl Pacer {
    fn new(rate: f64, duration: Duration, limit: u64) -> Result<Pacer> {
        if !(rate > 0.0 && rate.is_finite()) {
            bail!("--rate must be positive");
        }
        let start = Instant::now();
        Ok(Pacer { start, interval: Duration::from_secs_f64(1.0 / rate), end: start + duration, count: 0, limit })
    }

    fn wait(&mut self) -> bool {
        if signals::stop_requested() || (self.limit > 0 && self.count >= self.limit) {
            return false;
        }
        let due = self.start + self.interval.mul_f64(self.count as f64);
        if due >= self.end {
            return false;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        self.count += 1;
        true
    }
}

/// One valid AMT message of a random type (1 to 7) with random fields.
pub fn random_amt(rng: &mut Prng) -> Vec<u8> {
    let mac = {
        let b = rng.bytes(6);
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    };
    let v4 = IpAddr::V4(Ipv4Addr::from(rng.u32()));
    let inner = rng.some_bytes(20, 64);
    let repr = match rng.below(7) {
        0 => Amt::RelayDiscovery { nonce: rng.u32() },
        1 => Amt::RelayAdvertisement { nonce: rng.u32(), relay: v4 },
        2 => Amt::Request { nonce: rng.u32(), p_flag: rng.below(2) == 1 },
        3 => Amt::MembershipQuery {
            limit: rng.below(2) == 1,
            mac,
            nonce: rng.u32(),
            query: &inner,
            gateway: (rng.below(2) == 1).then_some((rng.u32() as u16, v4)),
        },
        4 => Amt::MembershipUpdate { mac, nonce: rng.u32(), update: &inner },
        5 => Amt::MulticastData { datagram: &inner },
        _ => Amt::Teardown { mac, nonce: rng.u32(), gateway_port: rng.u32() as u16, gateway_addr: v4 },
    };
    repr.to_vec().unwrap_or_default()
}

/// A well-formed AMT message cut short (at least one byte shorter; may be empty).
pub fn truncated_amt(rng: &mut Prng) -> Vec<u8> {
    let mut m = random_amt(rng);
    let keep = rng.below(m.len() as u64) as usize;
    m.truncate(keep);
    m
}

/// A well-formed AMT message with something wrong.
pub fn malformed_amt(rng: &mut Prng) -> Vec<u8> {
    let mut m = random_amt(rng);
    if m.is_empty() {
        return vec![0xff];
    }
    match rng.below(5) {
        // Version nibble not 0.
        0 => m[0] = (m[0] & 0x0f) | ((1 + rng.below(15) as u8) << 4),
        // Undefined type (0, 8-15).
        1 => m[0] = (m[0] & 0xf0) | [0u8, 8, 9, 10, 11, 12, 13, 14, 15][rng.below(9) as usize],
        // Trailing junk (a wrong length for the fixed-size messages).
        2 => m.extend(rng.some_bytes(1, 32)),
        // A few random bytes changed (not the first: keep the type).
        _ => {
            for _ in 0..1 + rng.below(4) {
                if m.len() > 1 {
                    let i = 1 + rng.below(m.len() as u64 - 1) as usize;
                    m[i] = rng.next_u64() as u8;
                }
            }
        }
    }
    m
}

/// An IPv4 header (no options) in front of `payload`, with a valid header checksum.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0xc0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, ttl, proto, 0, 0];
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let sum = internet_checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Garbage where an IGMP/MLD report or query belongs: random bytes, an IPv4 header with a
/// random IGMP body, or an IPv6 header (hop limit 1, next header ICMPv6) with a random body.
pub fn garbage_membership(rng: &mut Prng) -> Vec<u8> {
    let body = rng.some_bytes(0, 48);
    match rng.below(3) {
        0 => rng.some_bytes(0, 64),
        1 => ipv4_packet(Ipv4Addr::from(rng.u32()), Ipv4Addr::new(224, 0, 0, 22), 2, 1, &body),
        _ => {
            let mut p = vec![0x60, 0, 0, 0, 0, body.len() as u8, 58, 1];
            p.extend(rng.bytes(16));
            p.extend([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16]);
            p.extend(body);
            p
        }
    }
}

/// Multicast Data for (S,G) port 5001 carrying `payload` (valid IPv4 and UDP headers; UDP
/// checksum 0).
pub fn amt_data(sg: &SourceGroup, payload: &[u8]) -> Result<Vec<u8>> {
    let (IpAddr::V4(s), IpAddr::V4(g)) = (sg.source, sg.group) else { bail!("amt-data: IPv4 (S,G)s only") };
    let ulen = (8 + payload.len()) as u16;
    let mut udp = vec![0x9c, 0x40, 0x13, 0x89, (ulen >> 8) as u8, ulen as u8, 0, 0];
    udp.extend_from_slice(payload);
    let inner = ipv4_packet(s, g, 17, 16, &udp);
    Ok(Amt::MulticastData { datagram: &inner }.to_vec()?)
}

/// A source address for one PIM packet: the address, or a random host of the prefix.
fn pim_source(spec: &str, rng: &mut Prng) -> Result<Ipv4Addr> {
    let (addr, len) = match spec.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().context("prefix length")?),
        None => (spec, 32),
    };
    let addr: Ipv4Addr = addr.parse().with_context(|| format!("--source {spec:?}: not an IPv4 address"))?;
    if len >= 32 {
        return Ok(addr);
    }
    let host_bits = 32 - len;
    let mask = if len == 0 { 0 } else { u32::MAX << host_bits };
    let host = 1 + rng.below((1u64 << host_bits).saturating_sub(2).max(1)) as u32;
    Ok(Ipv4Addr::from((u32::from(addr) & mask) | host))
}

fn hello(holdtime: u16, genid: u32) -> pim::Repr {
    pim::Repr::hello(vec![
        HelloOption::Holdtime(holdtime),
        HelloOption::DrPriority(1),
        HelloOption::GenerationId(genid),
    ])
}

fn join(upstream: IpAddr, holdtime: u16, sg: &SourceGroup) -> pim::Repr {
    let mut group = JoinPruneGroup::new(sg.group);
    group.joins.push(EncodedSource::source(sg.source));
    pim::Repr::join_prune(upstream, holdtime, vec![group])
}

/// One PIM message of `kind` (checksum right, except for pim-bad-checksum).
fn pim_message(args: &FloodArgs, rng: &mut Prng) -> Result<Vec<u8>> {
    Ok(match args.kind {
        Kind::PimGarbage => rng.some_bytes(0, 200),
        Kind::PimHello => hello(args.holdtime, rng.u32()).to_bytes(ChecksumContext::V4)?,
        Kind::PimJoin => {
            let sg = args.sg.context("pim-join needs --sg")?;
            let upstream = args.upstream.context("pim-join needs --upstream")?;
            join(upstream, args.holdtime, &sg).to_bytes(ChecksumContext::V4)?
        }
        Kind::PimBadChecksum => {
            let sg = args.sg.unwrap_or_else(|| "198.51.100.10,232.1.1.1".parse().expect("valid"));
            let upstream = args.upstream.unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 9, 1, 2)));
            let mut m = if rng.below(2) == 0 {
                hello(args.holdtime, rng.u32()).to_bytes(ChecksumContext::V4)?
            } else {
                join(upstream, args.holdtime, &sg).to_bytes(ChecksumContext::V4)?
            };
            let delta = 1 + rng.below(0xfffe) as u16;
            let sum = u16::from_be_bytes([m[2], m[3]]).wrapping_add(delta);
            m[2..4].copy_from_slice(&sum.to_be_bytes());
            m
        }
        _ => unreachable!("not a PIM kind"),
    })
}

fn flood_pim(args: &FloodArgs, rng: &mut Prng, pacer: &mut Pacer) -> Result<(u64, u64)> {
    let ifname = args.interface.as_deref().context("PIM kinds need --interface")?;
    let source = args.source.as_deref().context("PIM kinds need --source ADDR or PREFIX/LEN")?;
    let target: Ipv4Addr = match args.target.as_deref() {
        Some(t) => t.parse().with_context(|| format!("--target {t:?}: PIM kinds take an IPv4 address"))?,
        None => Ipv4Addr::new(224, 0, 0, 13),
    };
    // IPPROTO_RAW: we write the IP header ourselves (IP_HDRINCL), so any source will do.
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW)))
        .context("raw socket (needs CAP_NET_RAW)")?;
    sock.bind_device(Some(ifname.as_bytes())).with_context(|| format!("binding to {ifname}"))?;
    let ifindex = crate::traffic::sockopt::ifindex(ifname)?;
    crate::traffic::sockopt::set_multicast_if_v4_index(&sock, ifindex)?;
    let to = SocketAddr::from((target, 0));
    let (mut sent, mut errors) = (0, 0);
    while pacer.wait() {
        let src = pim_source(source, rng)?;
        let msg = pim_message(args, rng)?;
        let ttl = if target.is_multicast() { 1 } else { 64 };
        let packet = ipv4_packet(src, target, 103, ttl, &msg);
        match sock.send_to(&packet, &to.into()) {
            Ok(_) => sent += 1,
            Err(_) => errors += 1,
        }
    }
    Ok((sent, errors))
}

fn udp_target(args: &FloodArgs) -> Result<SocketAddr> {
    let t = args.target.as_deref().context("this kind needs --target ADDR[:PORT]")?;
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = t.parse().with_context(|| format!("--target {t:?}: not ADDR or ADDR:PORT"))?;
    Ok(SocketAddr::new(ip, mcast_wire::amt::PORT))
}

fn udp_socket(args: &FloodArgs, target: SocketAddr) -> Result<UdpSocket> {
    let local = match &args.source {
        Some(s) => SocketAddr::new(s.parse().with_context(|| format!("--source {s:?}"))?, args.source_port),
        None if target.is_ipv4() => SocketAddr::from(([0, 0, 0, 0], args.source_port)),
        None => SocketAddr::from(([0u16; 8], args.source_port)),
    };
    let sock = UdpSocket::bind(local).with_context(|| format!("binding {local}"))?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Request → Query with the relay: the Query's MAC and nonce.
fn handshake(sock: &UdpSocket, relay: SocketAddr, rng: &mut Prng) -> Option<([u8; 6], u32)> {
    let nonce = rng.u32();
    let request = Amt::Request { nonce, p_flag: false }.to_vec().ok()?;
    let mut buf = vec![0u8; 65_536];
    for _ in 0..3 {
        let _ = sock.send_to(&request, relay);
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match sock.recv_from(&mut buf) {
                Ok((n, from)) if from == relay => {
                    if let Ok(Amt::MembershipQuery { mac, nonce: n2, .. }) = Amt::parse_bytes(&buf[..n])
                        && n2 == nonce
                    {
                        return Some((mac, nonce));
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }
    None
}

fn flood_udp(args: &FloodArgs, rng: &mut Prng, pacer: &mut Pacer) -> Result<(u64, u64, u64)> {
    let target = udp_target(args)?;
    let sock = udp_socket(args, target)?;
    let data_sg = match args.kind {
        Kind::AmtData => Some(args.sg.context("amt-data needs --sg")?),
        _ => None,
    };
    let mut session: Option<([u8; 6], u32, Instant)> = None;
    let (mut sent, mut errors, mut handshakes) = (0, 0, 0);
    let mut drain = vec![0u8; 65_536];
    while pacer.wait() {
        let payload = match args.kind {
            Kind::Random => rng.some_bytes(0, 1401),
            Kind::AmtTruncated => truncated_amt(rng),
            Kind::AmtMalformed => malformed_amt(rng),
            Kind::AmtData => amt_data(data_sg.as_ref().expect("set above"), &rng.bytes(64))?,
            Kind::AmtUpdateGarbage => {
                if session.is_none_or(|(_, _, at)| at.elapsed() > Duration::from_secs(1)) {
                    match handshake(&sock, target, rng) {
                        Some((mac, nonce)) => {
                            handshakes += 1;
                            session = Some((mac, nonce, Instant::now()));
                        }
                        None => {
                            errors += 1;
                            continue;
                        }
                    }
                }
                let (mac, nonce, _) = session.expect("set above");
                let garbage = garbage_membership(rng);
                Amt::MembershipUpdate { mac, nonce, update: &garbage }.to_vec()?
            }
            _ => unreachable!("not a UDP kind"),
        };
        match sock.send_to(&payload, target) {
            Ok(_) => sent += 1,
            Err(_) => errors += 1,
        }
        // Whatever comes back (Queries, ICMP errors) is read and dropped.
        while sock.recv_from(&mut drain).is_ok() {}
    }
    Ok((sent, errors, handshakes))
}

fn fake_relay(args: &FloodArgs, rng: &mut Prng) -> Result<(u64, u64, u64)> {
    let listen = args.listen.context("amt-fake-relay needs --listen ADDR:PORT")?;
    let sock = UdpSocket::bind(listen).with_context(|| format!("binding {listen}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let end = Instant::now() + args.duration;
    let budget_per_sec = args.rate.max(1.0) as u64;
    let (mut sent, mut errors, mut received) = (0u64, 0u64, 0u64);
    let (mut second, mut in_second) = (Instant::now(), 0u64);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < end && !signals::stop_requested() {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        received += 1;
        if second.elapsed() >= Duration::from_secs(1) {
            second = Instant::now();
            in_second = 0;
        }
        let replies: Vec<Vec<u8>> = match Amt::parse_bytes(&buf[..n]) {
            Ok(Amt::RelayDiscovery { nonce }) => (0..3)
                .map(|_| {
                    let wrong = nonce ^ (1 + rng.u32() % 0xffff_fffe);
                    Amt::RelayAdvertisement { nonce: wrong, relay: listen.ip() }.to_vec().unwrap_or_default()
                })
                .collect(),
            Ok(Amt::Request { nonce, .. }) => (0..3)
                .map(|_| {
                    let query = garbage_membership(rng);
                    let mac = {
                        let b = rng.bytes(6);
                        [b[0], b[1], b[2], b[3], b[4], b[5]]
                    };
                    Amt::MembershipQuery { limit: false, mac, nonce, query: &query, gateway: None }
                        .to_vec()
                        .unwrap_or_default()
                })
                .collect(),
            _ => Vec::new(),
        };
        for r in replies {
            if in_second >= budget_per_sec {
                break;
            }
            in_second += 1;
            match sock.send_to(&r, from) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
    }
    Ok((sent, errors, received))
}

/// Runs the flood; returns its summary.
pub fn run(args: &FloodArgs) -> Result<FloodSummary> {
    let mut rng = Prng::new(args.seed);
    let started = Instant::now();
    let mut pacer = Pacer::new(args.rate, args.duration, args.count)?;
    let (sent, errors, received) = match args.kind {
        Kind::AmtFakeRelay => fake_relay(args, &mut rng)?,
        Kind::PimGarbage | Kind::PimBadChecksum | Kind::PimJoin | Kind::PimHello => {
            let (s, e) = flood_pim(args, &mut rng, &mut pacer)?;
            (s, e, 0)
        }
        _ => flood_udp(args, &mut rng, &mut pacer)?,
    };
    Ok(FloodSummary { kind: args.kind, sent, received, errors, duration_s: started.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcast_wire::amt::Packet;

    #[test]
    fn generated_amt_messages_are_what_they_claim() {
        let mut rng = Prng::new(7);
        for _ in 0..2000 {
            let m = random_amt(&mut rng);
            assert!(Amt::parse_bytes(&m).is_ok(), "valid: {m:02x?}");
            // Cut short: a fixed-size message no longer parses (Data and Queries carry an opaque
            // datagram and may still parse, with a short inner packet).
            let t = truncated_amt(&mut rng);
            let kind = t.first().map(|b| b & 0x0f);
            if matches!(kind, Some(1 | 2 | 3 | 7)) {
                assert!(Packet::new_checked(&t[..]).and_then(|p| Amt::parse(&p)).is_err(), "{t:02x?}");
            }
        }
        let sg: SourceGroup = "198.51.100.10,232.1.1.1".parse().unwrap();
        let d = amt_data(&sg, b"spoofed!").unwrap();
        let Amt::MulticastData { datagram } = Amt::parse_bytes(&d).unwrap() else { panic!() };
        assert_eq!(&datagram[12..20], &[198, 51, 100, 10, 232, 1, 1, 1]);
        assert_eq!(internet_checksum(&datagram[..20]), 0, "inner header checksum verifies");
    }

    #[test]
    fn pim_messages_and_sources() {
        let mut rng = Prng::new(3);
        for _ in 0..100 {
            let a = pim_source("10.9.1.128/25", &mut rng).unwrap();
            assert!(u32::from(a) > u32::from(Ipv4Addr::new(10, 9, 1, 128)) && a < Ipv4Addr::new(10, 9, 1, 255));
        }
        assert_eq!(pim_source("10.9.1.99", &mut rng).unwrap(), Ipv4Addr::new(10, 9, 1, 99));
        let args = FloodArgs {
            kind: Kind::PimBadChecksum,
            target: None,
            listen: None,
            source: None,
            source_port: 0,
            interface: None,
            rate: 1.0,
            duration: Duration::from_secs(1),
            count: 0,
            sg: None,
            upstream: None,
            holdtime: 210,
            seed: 1,
        };
        for _ in 0..50 {
            let m = pim_message(&args, &mut rng).unwrap();
            let p = pim::Packet::new_checked(&m[..]).unwrap();
            assert!(!p.verify_checksum(ChecksumContext::V4));
        }
        let args = FloodArgs { kind: Kind::PimHello, holdtime: 0xffff, ..args };
        let m = pim_message(&args, &mut rng).unwrap();
        assert!(pim::Packet::new_checked(&m[..]).unwrap().verify_checksum(ChecksumContext::V4));
    }
}
