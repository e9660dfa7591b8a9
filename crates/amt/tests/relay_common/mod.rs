//! Helpers for the relay tests: a scripted gateway built from `mcast_wire` messages.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mcast_amt::membership::{self, Family, GroupRecord, MAX_REPORT_DATAGRAM};
use mcast_amt::relay::{Config, DropReason, Event, Relay, Transmit};
use mcast_wire::SourceGroup;
use mcast_wire::amt::Repr;
use mcast_wire::igmp::RecordType;

pub const RELAY: &str = "203.0.113.15:2268";
pub const RELAY6: &str = "[2001:db8::15]:2268";
pub const ANYCAST: &str = "192.52.193.1:2268";
pub const GW: &str = "192.0.2.2:40000";

pub fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

pub fn sg(text: &str) -> SourceGroup {
    text.parse().unwrap()
}

pub fn config() -> Config {
    let mut config = Config::new(vec!["203.0.113.15".parse().unwrap(), "2001:db8::15".parse().unwrap()]);
    config.query_interval = Duration::from_secs(10);
    config.robustness = 2;
    config.max_response = Duration::from_secs(1);
    config.secret_rotation = Duration::from_secs(60);
    config
}

pub fn relay_with(config: Config, now: Instant) -> Relay {
    Relay::new(config, [0x42; 32], now).unwrap()
}

/// What a Query told the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryFields {
    pub src: SocketAddr,
    pub limit: bool,
    pub mac: [u8; 6],
    pub nonce: u32,
    pub query: Vec<u8>,
    pub gateway: Option<(u16, IpAddr)>,
}

pub fn one_transmit(relay: &mut Relay) -> Transmit {
    let t = relay.poll_transmit().expect("a transmit");
    assert!(relay.poll_transmit().is_none(), "exactly one transmit");
    t
}

/// Sends a Request from `gw` to `local` and returns the Query.
pub fn request(relay: &mut Relay, local: &str, gw: &str, nonce: u32, p: bool, now: Instant) -> QueryFields {
    let payload = Repr::Request { nonce, p_flag: p }.to_vec().unwrap();
    relay.handle_datagram(addr(local), addr(gw), &payload, now).unwrap();
    let t = one_transmit(relay);
    assert_eq!(t.dst, addr(gw));
    match Repr::parse_bytes(&t.payload).unwrap() {
        Repr::MembershipQuery { limit, mac, nonce, query, gateway } => {
            QueryFields { src: t.src, limit, mac, nonce, query: query.to_vec(), gateway }
        }
        other => panic!("not a query: {other:?}"),
    }
}

pub fn report(records: &[GroupRecord]) -> Vec<u8> {
    let family = Family::of(&records[0].group);
    let mut datagrams = membership::report_datagrams(family, records, MAX_REPORT_DATAGRAM).unwrap();
    assert_eq!(datagrams.len(), 1);
    datagrams.remove(0)
}

pub fn record(kind: RecordType, group: &str, sources: &[&str]) -> GroupRecord {
    GroupRecord {
        record_type: kind,
        group: group.parse().unwrap(),
        sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

pub fn update_payload(mac: [u8; 6], nonce: u32, records: &[GroupRecord]) -> Vec<u8> {
    let report = report(records);
    Repr::MembershipUpdate { mac, nonce, update: &report }.to_vec().unwrap()
}

pub fn update(
    relay: &mut Relay,
    local: &str,
    gw: &str,
    q: &QueryFields,
    records: &[GroupRecord],
    now: Instant,
) -> Result<(), DropReason> {
    relay.handle_datagram(addr(local), addr(gw), &update_payload(q.mac, q.nonce, records), now)
}

/// A full handshake and an ALLOW for `sgs` (same group order as given).
pub fn subscribe(relay: &mut Relay, gw: &str, nonce: u32, sgs: &[&str], now: Instant) -> QueryFields {
    let q = request(relay, RELAY, gw, nonce, false, now);
    let records = membership::records_for(RecordType::AllowNewSources, sgs.iter().map(|s| sg(s)));
    update(relay, RELAY, gw, &q, &records, now).unwrap();
    q
}

pub fn events(relay: &mut Relay) -> Vec<Event> {
    std::iter::from_fn(|| relay.poll_event()).filter(|e| !matches!(e, Event::SecretRotated)).collect()
}

pub fn upstream(relay: &mut Relay) -> Vec<Event> {
    events(relay).into_iter().filter(|e| matches!(e, Event::JoinUpstream(_) | Event::LeaveUpstream(_))).collect()
}

pub fn subscribers(relay: &Relay, text: &str) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = relay.subscribers(&sg(text)).iter().map(|s| s.gateway).collect();
    v.sort();
    v
}

pub fn teardown(mac: [u8; 6], nonce: u32, endpoint: &str) -> Vec<u8> {
    let endpoint = addr(endpoint);
    Repr::Teardown { mac, nonce, gateway_port: endpoint.port(), gateway_addr: endpoint.ip() }.to_vec().unwrap()
}
