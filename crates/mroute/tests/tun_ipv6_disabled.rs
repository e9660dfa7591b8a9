//! A TUN created where `net.ipv6.conf.default.disable_ipv6` = 1 (hosts that switch IPv6 off
//! that way) drops every IPv6 packet written into it, so decapsulated IPv6 data would never be
//! forwarded; [`Tun::enable_ipv6`] turns IPv6 on for the device alone, and forwarding works.

mod common;

use std::net::Ipv6Addr;

use common::{Netns, inject_until_received, receiver_v6, udp_packet_v6, veth};
use mcast_mroute::MulticastRouter6;
use mcast_mroute::tun::{Tun, ipv6_disabled};

const PORT: u16 = 5006;

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

    let rx = receiver_v6(&c, g6, c.ifindex("c0"), PORT);
    let packet = udp_packet_v6(s6, g6, 16, PORT, b"ipv6-on-tun");
    assert!(!inject_until_received(&tun, &packet, &rx, b"ipv6-on-tun", 5), "IPv6 disabled: nothing may be forwarded");
    assert_eq!(router.sg_counters(s6, g6).unwrap().packets, 0);

    assert!(r.run(|| tun.enable_ipv6()).unwrap(), "it was disabled");
    assert_eq!(r.run(|| ipv6_disabled("native6d")).unwrap(), Some(false));
    assert!(!r.run(|| tun.enable_ipv6()).unwrap(), "nothing left to change");
    assert!(inject_until_received(&tun, &packet, &rx, b"ipv6-on-tun", 30), "enabled: forwarded to C");
    assert!(router.sg_counters(s6, g6).unwrap().packets >= 1);
    router.close().unwrap();
}
