//! A scripted relay for the gateway's sans-IO tests: builds the messages a relay sends and
//! decodes what the gateway sends.

#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mcast_amt::gateway::{Config, Event, Gateway, Transmit};
use mcast_amt::membership::{self, Family, GroupRecord};
use mcast_wire::amt::Repr;
use mcast_wire::igmp::RecordType;
use mcast_wire::{IpProtocol, SourceGroup, ipv4, ipv6, udp};

pub const RELAY: &str = "203.0.113.15";
pub const DISCOVERY: &str = "192.52.193.1";
pub const MAC: [u8; 6] = [0x01, 0x02, 0x03, 0x04, 0x05, 0xa6];
pub const MAC2: [u8; 6] = [0xde, 0xad, 0xbe, 0xef, 0x00, 0x01];

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn sg(s: &str) -> SourceGroup {
    s.parse().unwrap()
}

pub fn at(addr: &str) -> SocketAddr {
    SocketAddr::new(ip(addr), 2268)
}

/// A gateway with the default configuration but no no-traffic detection (most tests send
/// no data and would otherwise see its fresh handshakes), and a fixed seed.
pub fn gateway() -> Gateway {
    gateway_with(quiet())
}

/// The default configuration without no-traffic detection.
pub fn quiet() -> Config {
    Config { no_traffic_initial: None, ..Config::default() }
}

pub fn gateway_with(config: Config) -> Gateway {
    Gateway::new(config, 7).unwrap()
}

pub fn drain(gw: &mut Gateway) -> Vec<Transmit> {
    std::iter::from_fn(|| gw.poll_transmit()).collect()
}

pub fn events(gw: &mut Gateway) -> Vec<Event> {
    std::iter::from_fn(|| gw.poll_event()).collect()
}

/// The decoded messages of `txs` with their destinations.
pub fn decoded(txs: &[Transmit]) -> Vec<(SocketAddr, Repr<'_>)> {
    txs.iter()
        .map(|t| (t.destination, Repr::parse_bytes(&t.payload).expect("gateway sent a valid AMT message")))
        .collect()
}

pub fn advertisement(nonce: u32, relay: IpAddr) -> Vec<u8> {
    Repr::RelayAdvertisement { nonce, relay }.to_vec().unwrap()
}

/// A Membership Query carrying a General Query of `family`.
pub fn query(
    family: Family,
    mac: [u8; 6],
    nonce: u32,
    qi_secs: u64,
    qrv: u8,
    limit: bool,
    gateway: Option<(u16, IpAddr)>,
) -> Vec<u8> {
    let general = membership::general_query(family, Duration::from_secs(qi_secs), qrv, Duration::from_secs(1)).unwrap();
    Repr::MembershipQuery { limit, mac, nonce, query: &general, gateway }.to_vec().unwrap()
}

/// The Discovery nonce in `txs` (Discoveries with exactly one nonce expected).
pub fn discovery_nonce(txs: &[Transmit]) -> u32 {
    let mut found: Vec<u32> = decoded(txs)
        .into_iter()
        .filter_map(|(_, r)| match r {
            Repr::RelayDiscovery { nonce } => Some(nonce),
            _ => None,
        })
        .collect();
    found.dedup();
    assert_eq!(found.len(), 1, "one Discovery nonce expected in {txs:?}");
    found[0]
}

/// The Requests in `txs`: (destination, nonce, P flag).
pub fn requests(txs: &[Transmit]) -> Vec<(SocketAddr, u32, bool)> {
    decoded(txs)
        .into_iter()
        .filter_map(|(d, r)| match r {
            Repr::Request { nonce, p_flag } => Some((d, nonce, p_flag)),
            _ => None,
        })
        .collect()
}

/// The one Request in `txs`.
pub fn request(txs: &[Transmit]) -> (SocketAddr, u32, bool) {
    let r = requests(txs);
    assert_eq!(r.len(), 1, "one Request expected in {txs:?}");
    r[0]
}

/// An Update decoded: MAC, nonce, family, records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub dest: SocketAddr,
    pub mac: [u8; 6],
    pub nonce: u32,
    pub family: Family,
    pub records: Vec<GroupRecord>,
}

impl Update {
    /// (type, S,G) pairs.
    pub fn entries(&self) -> Vec<(RecordType, SourceGroup)> {
        let mut out = Vec::new();
        for r in &self.records {
            for s in &r.sources {
                out.push((r.record_type, SourceGroup::new(*s, r.group)));
            }
        }
        out
    }
}

pub fn updates(txs: &[Transmit]) -> Vec<Update> {
    decoded(txs)
        .into_iter()
        .filter_map(|(dest, r)| match r {
            Repr::MembershipUpdate { mac, nonce, update } => {
                let (family, records) = membership::parse_report(update).expect("valid report");
                Some(Update { dest, mac, nonce, family, records })
            }
            _ => None,
        })
        .collect()
}

/// Teardowns: (destination, mac, nonce, gateway endpoint).
pub fn teardowns(txs: &[Transmit]) -> Vec<(SocketAddr, [u8; 6], u32, SocketAddr)> {
    decoded(txs)
        .into_iter()
        .filter_map(|(d, r)| match r {
            Repr::Teardown { mac, nonce, gateway_port, gateway_addr } => {
                Some((d, mac, nonce, SocketAddr::new(gateway_addr, gateway_port)))
            }
            _ => None,
        })
        .collect()
}

/// AMT Multicast Data carrying an inner UDP datagram S → G.
pub fn data(sg: SourceGroup, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut segment = vec![0u8; 8 + payload.len()];
    udp::Repr { src_port: 40000, dst_port: 5001 }
        .emit_with_payload(&mut segment, &sg.source, &sg.group, payload)
        .unwrap();
    let inner = match (sg.source, sg.group) {
        (IpAddr::V4(s), IpAddr::V4(g)) => {
            ipv4::Repr::new(s, g, IpProtocol::UDP, ttl, segment.len()).datagram(&segment).unwrap()
        }
        (IpAddr::V6(s), IpAddr::V6(g)) => {
            ipv6::Repr::new(s, g, IpProtocol::UDP, ttl, segment.len()).datagram(&segment).unwrap()
        }
        _ => unreachable!(),
    };
    Repr::MulticastData { datagram: &inner }.to_vec().unwrap()
}

/// The local endpoint the driver reports for Queries in these tests.
pub fn local() -> SocketAddr {
    "192.0.2.2:40000".parse().unwrap()
}

/// Runs timers until `until`, collecting what was sent with the time it was sent.
pub fn run_until(gw: &mut Gateway, now: &mut Instant, until: Instant) -> Vec<(Instant, Transmit)> {
    let mut out = Vec::new();
    while let Some(t) = gw.poll_timeout() {
        if t > until {
            break;
        }
        *now = t.max(*now);
        gw.handle_timeout(*now);
        for tx in drain(gw) {
            out.push((*now, tx));
        }
    }
    *now = until;
    gw.handle_timeout(until);
    for tx in drain(gw) {
        out.push((until, tx));
    }
    out
}

/// A tunnel to RELAY (D = 1) with `sgs` joined and established by a Query (QI `qi` s, QRV 2,
/// G = 0). Returns the Updates the Query triggered.
pub fn established(gw: &mut Gateway, now: Instant, sgs: &[SourceGroup], qi: u64) -> Vec<Update> {
    let relay = ip(RELAY);
    gw.add_tunnel(relay, None, now).unwrap();
    for s in sgs {
        gw.join(relay, *s, now).unwrap();
    }
    let txs = drain(gw);
    let mut ups = Vec::new();
    for family in [Family::V4, Family::V6] {
        if let Some((_, nonce, _)) = requests(&txs).into_iter().find(|(_, _, p)| *p == family.p_flag()) {
            gw.handle_datagram(now, at(RELAY), Some(local()), &query(family, MAC, nonce, qi, 2, false, None)).unwrap();
            ups.extend(updates(&drain(gw)));
        }
    }
    ups
}

/// [`run_until`] `now + span`.
pub fn run_for(gw: &mut Gateway, now: &mut Instant, span: Duration) -> Vec<(Instant, Transmit)> {
    let until = *now + span;
    run_until(gw, now, until)
}
