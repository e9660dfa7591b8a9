//! Test helpers: the shared tshark harness (crates/testkit) plus builders that wrap messages
//! emitted by this crate into IP datagrams.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

pub use mcast_testkit::tshark::*;
use mcast_wire::{IpProtocol, ipv4, ipv6, udp};

/// Wraps an upper-layer message into an IPv4 datagram (TTL 1, TOS 0xc0 like control traffic).
pub fn ipv4_datagram(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload: &[u8],
    router_alert: bool,
) -> Vec<u8> {
    let mut repr = ipv4::Repr::new(src, dst, protocol, 1, payload.len());
    repr.tos = 0xc0;
    if router_alert {
        repr.options = ipv4::ROUTER_ALERT.to_vec();
    }
    repr.datagram(payload).unwrap()
}

/// Wraps a UDP payload into an IPv4 or IPv6 datagram with a correct UDP checksum.
pub fn udp_datagram(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let udp = udp::Repr { src_port, dst_port };
    let mut segment = vec![0u8; udp.header_len() + payload.len()];
    udp.emit_with_payload(&mut segment, &src, &dst, payload).unwrap();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ipv4::Repr::new(s, d, IpProtocol::UDP, 64, segment.len()).datagram(&segment).unwrap()
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ipv6::Repr::new(s, d, IpProtocol::UDP, 64, segment.len()).datagram(&segment).unwrap()
        }
        _ => panic!("mixed address families"),
    }
}
