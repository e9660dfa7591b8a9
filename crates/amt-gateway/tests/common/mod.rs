//! Test harness: mcast-testkit's anonymous network namespaces, and a scripted AMT relay built
//! from the wire codec.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mcast_amt::membership::{self, Family, GroupRecord};
use mcast_wire::amt::Repr;
use mcast_wire::{IpProtocol, SourceGroup, ipv4, udp};
use socket2::{Domain, Protocol, Socket, Type};

pub use mcast_testkit::netns::{Netns, veth};

#[macro_export]
macro_rules! require_root {
    () => {
        mcast_testkit::require_root!()
    };
}

/// A scripted relay: a UDP socket on port 2268 answering by hand.
pub struct ScriptedRelay {
    pub sock: UdpSocket,
    buf: Vec<u8>,
}

/// What the scripted relay received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Discovery { nonce: u32 },
    Request { nonce: u32, p: bool },
    Update { mac: [u8; 6], nonce: u32, records: Vec<GroupRecord> },
    Teardown { mac: [u8; 6], nonce: u32, endpoint: SocketAddr },
    Other(Vec<u8>),
}

impl ScriptedRelay {
    pub fn bind(ns: &Netns, addr: SocketAddr) -> ScriptedRelay {
        let sock = ns.run(|| UdpSocket::bind(addr)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        ScriptedRelay { sock, buf: vec![0; 4096] }
    }

    /// The next message and its sender; panics after 3 s.
    pub fn recv(&mut self) -> (Got, SocketAddr) {
        let (n, from) = self.sock.recv_from(&mut self.buf).expect("relay: nothing from the gateway within 3 s");
        let got = match Repr::parse_bytes(&self.buf[..n]) {
            Ok(Repr::RelayDiscovery { nonce }) => Got::Discovery { nonce },
            Ok(Repr::Request { nonce, p_flag }) => Got::Request { nonce, p: p_flag },
            Ok(Repr::MembershipUpdate { mac, nonce, update }) => {
                let (_, records) = membership::parse_report(update).expect("valid report");
                Got::Update { mac, nonce, records }
            }
            Ok(Repr::Teardown { mac, nonce, gateway_port, gateway_addr }) => {
                Got::Teardown { mac, nonce, endpoint: SocketAddr::new(gateway_addr, gateway_port) }
            }
            _ => Got::Other(self.buf[..n].to_vec()),
        };
        (got, from)
    }

    pub fn send(&self, to: SocketAddr, repr: &Repr<'_>) {
        self.sock.send_to(&repr.to_vec().unwrap(), to).unwrap();
    }

    /// Answers a Request with a Query carrying `mac`, the G fields and a General Query.
    pub fn query(&self, to: SocketAddr, nonce: u32, p: bool, mac: [u8; 6]) {
        let family = Family::from_p_flag(p);
        let general = membership::general_query(family, Duration::from_secs(125), 2, Duration::from_secs(1)).unwrap();
        let repr =
            Repr::MembershipQuery { limit: false, mac, nonce, query: &general, gateway: Some((to.port(), to.ip())) };
        self.send(to, &repr);
    }
}

/// AMT Multicast Data with an inner IPv4 UDP datagram S → G:port.
pub fn amt_data(sg: SourceGroup, port: u16, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(g)) = (sg.source, sg.group) else { panic!("IPv4 only") };
    let mut segment = vec![0u8; 8 + payload.len()];
    udp::Repr { src_port: 40000, dst_port: port }
        .emit_with_payload(&mut segment, &sg.source, &sg.group, payload)
        .unwrap();
    let inner = ipv4::Repr::new(s, g, IpProtocol::UDP, ttl, segment.len()).datagram(&segment).unwrap();
    Repr::MulticastData { datagram: &inner }.to_vec().unwrap()
}

/// A UDP receiver in `ns` on `port`, joined to (S,G) on the interface holding `ifaddr`.
pub fn ssm_receiver(ns: &Netns, sg: SourceGroup, ifaddr: Ipv4Addr, port: u16) -> UdpSocket {
    let (IpAddr::V4(s), IpAddr::V4(g)) = (sg.source, sg.group) else { panic!("IPv4 only") };
    ns.run(|| {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        sock.set_reuse_address(true).unwrap();
        sock.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()).unwrap();
        sock.join_ssm_v4(&s, &g, &ifaddr).unwrap();
        sock.set_multicast_all_v4(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        UdpSocket::from(sock)
    })
}

/// Receives until a datagram equal to `want` arrives or `timeout` passes.
pub fn received(sock: &UdpSocket, want: &[u8], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf)
            && &buf[..n] == want
        {
            return true;
        }
    }
    false
}
