//! A TUN created where `net.ipv6.conf.default.disable_ipv6` = 1 (hosts that switch IPv6 off
//! that way) drops every IPv6 packet written into it, so decapsulated IPv6 data would never be
//! forwarded; [`Tun::enable_ipv6`] turns IPv6 on for the device alone, and forwarding works.

mod common;

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{Netns, recv_expect, veth};
use mcast_mroute::MulticastRouter6;
use mcast_mroute::tun::{Tun, ipv6_disabled};
use mcast_wire::{IpProtocol, ipv6, udp};
use socket2::{Domain, Protocol, Socket, Type};

const PORT: u16 = 5006;

fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut dgram = vec![0u8; 8 + payload.len()];
    udp::Repr { src_port: 40000, dst_port: PORT }
        .emit_with_payload(&mut dgram, &src.into(), &dst.into(), payload)
        .unwrap();
    ipv6::Repr::new(src, dst, IpProtocol::UDP, 16, dgram.len()).datagram(&dgram).unwrap()
}

/// Writes `packet` every 100 ms for `tries` rounds; whether C received `payload`.
fn inject(tun: &Tun, packet: &[u8], rx: &UdpSocket, payload: &[u8], tries: usize) -> bool {
    (0..tries).any(|_| {
        tun.send(packet).unwrap();
        recv_expect(rx, payload, Duration::from_millis(100)).is_some()
    })
}

#[test]
fn ipv6_disabled_by_default_on_a_new_tun_is_enabled_and_forwarded() {
    require_root!();
    let (r, c) = (Netns::new("R"), Netns::new("C"));
    veth(&r, "r1", &c, "c0");
    r.ip("-6 addr add 2001:db8:66::1/64 dev r1 nodad");
    c.ip("-6 addr add 2001:db8:66::2/64 dev c0 nodad");
    r.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
    let s6: Ipv6Addr = "2001:db8:100::7".parse().unwrap();
    let g6: Ipv6Addr = "ff3e::8000:6".parse().unwrap();
    let tun = r.run(|| Tun::create_or_attach("native6d")).unwrap();
    r.run(|| tun.set_up()).unwrap();
    assert_eq!(r.run(|| ipv6_disabled("native6d")).unwrap(), Some(true), "inherited from conf/default");
    let mut router = r.run(MulticastRouter6::new).unwrap();
    let tun_mif = router.add_mif(tun.ifindex()).unwrap();
    let r1_mif = router.add_mif(r.ifindex("r1")).unwrap();
    router.set_mfc6(s6, g6, tun_mif, &[r1_mif]).unwrap();

    let c0 = c.ifindex("c0");
    let rx = c.run(|| {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_only_v6(true).unwrap();
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, PORT)).into()).unwrap();
        s.join_multicast_v6(&g6, c0).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        UdpSocket::from(s)
    });
    let packet = udp_v6(s6, g6, b"ipv6-on-tun");
    assert!(!inject(&tun, &packet, &rx, b"ipv6-on-tun", 5), "IPv6 disabled: nothing may be forwarded");
    assert_eq!(router.sg_counters(s6, g6).unwrap().packets, 0);

    assert!(r.run(|| tun.enable_ipv6()).unwrap(), "it was disabled");
    assert_eq!(r.run(|| ipv6_disabled("native6d")).unwrap(), Some(false));
    assert!(!r.run(|| tun.enable_ipv6()).unwrap(), "nothing left to change");
    assert!(inject(&tun, &packet, &rx, b"ipv6-on-tun", 30), "enabled: forwarded to C");
    assert!(router.sg_counters(s6, g6).unwrap().packets >= 1);
    router.close().unwrap();
}
