//! IPv6 kernel multicast routing (MRT6), for real: S — R — C over veths.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use common::{Netns, receiver_v6, recv_expect, send_until, veth, wait_for};
use mcast_mroute::{Error, ForwardingTable, MulticastRouter6, Router, UpcallKind, Vif};
use mcast_wire::SourceGroup;
use socket2::{Domain, Protocol, Socket, Type};

const S: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
const G: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 1);
const G_UNROUTED: Ipv6Addr = Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, 99);
const PORT: u16 = 5002;

struct Lab {
    s: Netns,
    r: Netns,
    c: Netns,
}

fn lab() -> Lab {
    let (s, r, c) = (Netns::new("S"), Netns::new("R"), Netns::new("C"));
    veth(&r, "r0", &s, "s0");
    veth(&r, "r1", &c, "c0");
    s.ip("-6 addr add fd00:1::2/64 dev s0 nodad");
    r.ip("-6 addr add fd00:1::1/64 dev r0 nodad");
    r.ip("-6 addr add fd00:2::1/64 dev r1 nodad");
    c.ip("-6 addr add fd00:2::2/64 dev c0 nodad");
    Lab { s, r, c }
}

fn sender(ns: &Netns, ifindex: u32) -> UdpSocket {
    ns.run(|| {
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.bind(&SocketAddr::from((S, 0)).into()).unwrap();
        s.set_multicast_if_v6(ifindex).unwrap();
        s.set_multicast_hops_v6(16).unwrap();
        s.set_multicast_loop_v6(false).unwrap();
        UdpSocket::from(s)
    })
}

/// (group, origin, iif, packets, oifs) from /proc/net/ip6_mr_cache.
fn ip6_mr_cache(text: &str) -> Vec<(Ipv6Addr, Ipv6Addr, i32, u64, String)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f[0].parse().ok()?, f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?, f[6..].join(" ")))
        })
        .collect()
}

#[test]
fn mrt6_init_is_exclusive() {
    require_root!();
    let r = Netns::new("R");
    let first = r.run(MulticastRouter6::new).expect("MRT6_INIT in a fresh namespace");
    let err = r.run(MulticastRouter6::new).expect_err("second MRT6_INIT");
    assert!(matches!(err, Error::RouterInUse { .. }));
    assert!(err.to_string().contains("another multicast routing daemon holds MRT6_INIT in this namespace"), "{err}");
    let mcf = r.run(|| std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/mc_forwarding")).unwrap();
    assert_eq!(mcf.trim(), "1");
    // IPv4 and IPv6 routing are independent.
    r.run(mcast_mroute::MulticastRouter::new).expect("MRT_INIT beside MRT6_INIT");
    first.close().unwrap();
    r.run(MulticastRouter6::new).expect("MRT6_INIT after close");
}

#[test]
fn mifs_mfc6_forwarding_counters_and_upcalls() {
    require_root!();
    let lab = lab();
    let (r0, r1) = (lab.r.ifindex("r0"), lab.r.ifindex("r1"));
    let mut router = lab.r.run(MulticastRouter6::new).unwrap();
    let mif0 = router.add_mif(r0).unwrap();
    let mif1 = router.add_mif(r1).unwrap();
    assert_eq!((mif0, mif1), (Vif(0), Vif(1)));
    assert!(matches!(router.add_mif_at(Vif(5), 70_000), Err(Error::IfindexTooLarge(70_000))));
    let mifs = lab.r.proc_net("ip6_mr_vif");
    assert!(mifs.contains(" r0 ") && mifs.contains(" r1 "), "/proc/net/ip6_mr_vif:\n{mifs}");

    router.set_mfc6(S, G, mif0, &[mif1]).unwrap();
    let cache = ip6_mr_cache(&lab.r.proc_net("ip6_mr_cache"));
    let entry = cache.iter().find(|e| e.0 == G && e.1 == S).expect("(S,G) in /proc/net/ip6_mr_cache");
    assert_eq!((entry.2, entry.4.as_str()), (0, "1:1"));

    let rx = receiver_v6(&lab.c, G, lab.c.ifindex("c0"), PORT);
    let tx = sender(&lab.s, lab.s.ifindex("s0"));
    let to = SocketAddr::V6(SocketAddrV6::new(G, PORT, 0, 0));
    let got =
        send_until(&tx, to, b"v6-forwarded", || recv_expect(&rx, b"v6-forwarded", Duration::from_millis(50)).is_some());
    assert!(got, "C never received IPv6 (S,G) traffic forwarded by the kernel MFC6");
    let sg = router.sg_counters(S, G).unwrap();
    assert!(sg.packets >= 1, "{sg:?}");
    assert!(router.mif_counters(mif1).unwrap().out_packets >= 1);

    // Unrouted group: NOCACHE upcall (MLD from C is blocked by ICMP6_FILTER).
    tx.send_to(b"x", SocketAddr::V6(SocketAddrV6::new(G_UNROUTED, PORT, 0, 0))).unwrap();
    let up = wait_for(Duration::from_secs(3), || router.recv_upcall().unwrap()).expect("MRT6MSG_NOCACHE");
    assert_eq!((up.kind, up.vif), (UpcallKind::NoCache, mif0));
    assert_eq!((up.source, up.group), (IpAddr::V6(S), IpAddr::V6(G_UNROUTED)));

    assert!(router.del_mfc6(S, G).unwrap());
    assert!(!router.del_mfc6(S, G).unwrap());
    let cache = ip6_mr_cache(&lab.r.proc_net("ip6_mr_cache"));
    assert!(!cache.iter().any(|e| e.0 == G && e.2 >= 0), "{cache:?}");
    tx.send_to(b"after-delete", to).unwrap();
    assert!(recv_expect(&rx, b"after-delete", Duration::from_millis(600)).is_none());

    drop(router);
    assert_eq!(lab.r.proc_net("ip6_mr_vif").lines().count(), 1, "MRT6_DONE removed the MIFs");
}

#[test]
fn router_enum_and_trait_treat_families_alike() {
    require_root!();
    let lab = lab();
    let mut v6 = lab.r.run(|| Router::open(mcast_mroute::Family::V6, None)).unwrap();
    let mut v4 = lab.r.run(|| Router::open(mcast_mroute::Family::V4, None)).unwrap();
    let sg6: SourceGroup = format!("{S},{G}").parse().unwrap();
    let sg4: SourceGroup = "10.0.0.1,232.0.0.1".parse().unwrap();
    for (router, sg, other) in [(&mut v4, sg4, sg6), (&mut v6, sg6, sg4)] {
        let a = router.add_vif(lab.r.ifindex("r0")).unwrap();
        let b = router.add_vif(lab.r.ifindex("r1")).unwrap();
        router.set_mfc(sg, a, &[b]).unwrap();
        assert_eq!(router.sg_counters(sg).unwrap().packets, 0);
        assert!(matches!(router.set_mfc(other, a, &[b]), Err(Error::FamilyMismatch { .. })));
        assert!(router.del_mfc(sg).unwrap());
        router.del_vif(b).unwrap();
        assert_eq!(router.vifs(), vec![(a, lab.r.ifindex("r0"))]);
    }
    v4.close().unwrap();
    v6.close().unwrap();
}
