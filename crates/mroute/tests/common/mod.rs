//! Test harness: sockets and /proc parsing on top of mcast-testkit's anonymous network
//! namespaces.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mcast_mroute::tun::Tun;
use mcast_wire::{IpProtocol, ipv4, ipv6, udp};
use socket2::{Domain, Protocol, Socket, Type};

pub use mcast_testkit::netns::{Netns, veth, wait_for};

#[macro_export]
macro_rules! require_root {
    () => {
        mcast_testkit::require_root!()
    };
}

/// A UDP receiver in `ns`, bound to `port`, joined to (source, group) on `ifaddr`'s interface.
pub fn ssm_receiver_v4(ns: &Netns, source: Ipv4Addr, group: Ipv4Addr, ifaddr: Ipv4Addr, port: u16) -> UdpSocket {
    ns.run(|| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()).unwrap();
        s.join_ssm_v4(&source, &group, &ifaddr).unwrap();
        s.set_multicast_all_v4(false).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        UdpSocket::from(s)
    })
}

/// An IPv6 UDP receiver in `ns`, bound to `port`, joined to `group` on interface `ifindex` and to
/// nothing else (IPV6_MULTICAST_ALL off).
pub fn receiver_v6(ns: &Netns, group: Ipv6Addr, ifindex: u32, port: u16) -> UdpSocket {
    ns.run(|| {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_only_v6(true).unwrap();
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into()).unwrap();
        s.join_multicast_v6(&group, ifindex).unwrap();
        s.set_multicast_all_v6(false).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        UdpSocket::from(s)
    })
}

/// A whole IPv4 packet (header, UDP, payload) as a TUN carries it, from source port 40000.
pub fn udp_packet_v4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut dgram = vec![0u8; 8 + payload.len()];
    udp::Repr { src_port: 40000, dst_port: port }
        .emit_with_payload(&mut dgram, &src.into(), &dst.into(), payload)
        .unwrap();
    ipv4::Repr::new(src, dst, IpProtocol::UDP, ttl, dgram.len()).datagram(&dgram).unwrap()
}

/// A whole IPv6 packet (header, UDP, payload) as a TUN carries it, from source port 40000.
pub fn udp_packet_v6(src: Ipv6Addr, dst: Ipv6Addr, hops: u8, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut dgram = vec![0u8; 8 + payload.len()];
    udp::Repr { src_port: 40000, dst_port: port }
        .emit_with_payload(&mut dgram, &src.into(), &dst.into(), payload)
        .unwrap();
    ipv6::Repr::new(src, dst, IpProtocol::UDP, hops, dgram.len()).datagram(&dgram).unwrap()
}

/// Writes `packet` into the TUN every 100 ms, `tries` times at most; whether `rx` received
/// `payload`. Repeating covers the first packets that race setup.
pub fn inject_until_received(tun: &Tun, packet: &[u8], rx: &UdpSocket, payload: &[u8], tries: usize) -> bool {
    (0..tries).any(|_| {
        tun.send(packet).unwrap();
        recv_expect(rx, payload, Duration::from_millis(100)).is_some()
    })
}

/// A UDP sender in `ns` with source `src`, egress by `src`'s interface, TTL 16.
pub fn sender_v4(ns: &Netns, src: Ipv4Addr) -> UdpSocket {
    ns.run(|| {
        let s = UdpSocket::bind((src, 0)).unwrap();
        s.set_multicast_ttl_v4(16).unwrap();
        s.set_multicast_loop_v4(false).unwrap();
        Socket::from(s.try_clone().unwrap()).set_multicast_if_v4(&src).unwrap();
        s
    })
}

/// Receives datagrams for up to `timeout`, returning the first whose payload is `expect`.
pub fn recv_expect(sock: &UdpSocket, expect: &[u8], timeout: Duration) -> Option<IpAddr> {
    let mut buf = [0u8; 2048];
    wait_for(timeout, || match sock.recv_from(&mut buf) {
        Ok((n, from)) if &buf[..n] == expect => Some(from.ip()),
        _ => None,
    })
}

/// Sends `payload` to (group, port) every 100 ms until `received` returns true or 3 s pass.
/// Returns whether it was received. Repeating covers the first packets that race setup.
pub fn send_until(sender: &UdpSocket, to: SocketAddr, payload: &[u8], mut received: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        sender.send_to(payload, to).unwrap();
        if received() {
            return true;
        }
    }
    false
}

/// Parses /proc/net/ip_mr_cache lines into (group, origin, iif, packets, oifs text).
pub fn ip_mr_cache(text: &str) -> Vec<(Ipv4Addr, Ipv4Addr, i32, u64, String)> {
    let hex = |h: &str| Ipv4Addr::from(u32::from_str_radix(h, 16).unwrap().to_ne_bytes());
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some((hex(f[0]), hex(f[1]), f[2].parse().ok()?, f[3].parse().ok()?, f[6..].join(" ")))
        })
        .collect()
}
