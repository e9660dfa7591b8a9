//! IPv4 kernel multicast routing, for real: three namespaces S — R — C joined by veths, the
//! router in R, a UDP sender in S and an SSM receiver in C.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Netns, ip_mr_cache, recv_expect, send_until, sender_v4, ssm_receiver_v4, veth, wait_for};
use mcast_mroute::{Error, MulticastRouter, UpcallKind, Vif};

const S: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 2);
const G: Ipv4Addr = Ipv4Addr::new(232, 1, 1, 1);
const G_UNROUTED: Ipv4Addr = Ipv4Addr::new(232, 1, 1, 99);
const C_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 2);
const PORT: u16 = 5001;

struct Lab {
    s: Netns,
    r: Netns,
    c: Netns,
}

fn lab() -> Lab {
    let (s, r, c) = (Netns::new("S"), Netns::new("R"), Netns::new("C"));
    veth(&r, "r0", &s, "s0");
    veth(&r, "r1", &c, "c0");
    s.ip("addr add 10.200.1.2/24 dev s0");
    r.ip("addr add 10.200.1.1/24 dev r0");
    r.ip("addr add 10.200.2.1/24 dev r1");
    c.ip("addr add 10.200.2.2/24 dev c0");
    c.ip("route add default via 10.200.2.1");
    Lab { s, r, c }
}

#[test]
fn mrt_init_is_exclusive_and_released_on_drop() {
    require_root!();
    let r = Netns::new("R");
    let first = r.run(MulticastRouter::new).expect("MRT_INIT in a fresh namespace");
    assert!(first.version().unwrap() > 0);

    let second = r.run(MulticastRouter::new);
    let err = second.expect_err("a second MRT_INIT in the same namespace must fail");
    assert!(matches!(err, Error::RouterInUse { .. }), "{err:?}");
    assert!(err.to_string().contains("another multicast routing daemon holds MRT_INIT in this namespace"), "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));

    // mc_forwarding is switched on by MRT_INIT itself.
    let mcf = r.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/mc_forwarding")).unwrap();
    assert_eq!(mcf.trim(), "1");

    // Another namespace is independent.
    let other = Netns::new("other");
    other.run(MulticastRouter::new).expect("MRT_INIT in another namespace");

    drop(first);
    let mcf = r.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/mc_forwarding")).unwrap();
    assert_eq!(mcf.trim(), "0", "MRT_DONE on drop turns mc_forwarding off");
    r.run(MulticastRouter::new).expect("MRT_INIT again after the first router was dropped").close().unwrap();
}

#[test]
fn mrt_table_selects_another_table() {
    require_root!();
    let r = Netns::new("R");
    let main = r.run(MulticastRouter::new).unwrap();
    let t = r.run(|| MulticastRouter::with_table(42)).expect("MRT_TABLE 42 + MRT_INIT beside the default table");
    assert_eq!(t.table(), Some(42));
    let err = r.run(|| MulticastRouter::with_table(42)).expect_err("table 42 is taken");
    assert!(err.to_string().contains("for mroute table 42"), "{err}");
    drop((main, t));
}

#[test]
fn vifs_mfc_forwarding_counters_and_upcalls() {
    require_root!();
    let lab = lab();
    let (r0, r1) = (lab.r.ifindex("r0"), lab.r.ifindex("r1"));
    let mut router = lab.r.run(MulticastRouter::new).unwrap();

    let vif0 = router.add_vif(r0).unwrap();
    let vif1 = router.add_vif(r1).unwrap();
    assert_eq!((vif0, vif1), (Vif(0), Vif(1)), "lowest free slots");
    assert!(matches!(router.add_vif_at(Vif(1), r0), Err(Error::VifInUse { .. })));
    assert!(matches!(router.del_vif(Vif(7)), Err(Error::UnknownVif(_))));
    let vifs = lab.r.proc_net("ip_mr_vif");
    assert!(vifs.contains(" r0 ") && vifs.contains(" r1 "), "/proc/net/ip_mr_vif:\n{vifs}");
    // VIFF_USE_IFINDEX shows as flag 00008.
    assert!(vifs.lines().any(|l| l.contains(" r0 ") && l.contains("00008")), "{vifs}");

    router.set_mfc(S, G, vif0, &[vif1]).unwrap();
    let cache = ip_mr_cache(&lab.r.proc_net("ip_mr_cache"));
    let entry = cache.iter().find(|e| e.0 == G && e.1 == S).expect("(S,G) in /proc/net/ip_mr_cache");
    assert_eq!(entry.2, 0, "iif vif0");
    assert_eq!(entry.4, "1:1", "oif vif1 with TTL threshold 1");

    // Real forwarding: S sends (TTL 16) into r0, C receives it out of r1.
    let rx = ssm_receiver_v4(&lab.c, S, G, C_ADDR, PORT);
    let tx = sender_v4(&lab.s, S);
    let to = SocketAddr::from((G, PORT));
    let got =
        send_until(&tx, to, b"forwarded-1", || recv_expect(&rx, b"forwarded-1", Duration::from_millis(50)).is_some());
    assert!(got, "C never received (S,G) traffic forwarded by the kernel MFC");

    let sg = router.sg_counters(S, G).unwrap();
    assert!(sg.packets >= 1 && sg.bytes >= 1, "{sg:?}");
    assert_eq!(sg.wrong_if, 0);
    let c0 = router.vif_counters(vif0).unwrap();
    let c1 = router.vif_counters(vif1).unwrap();
    assert!(c0.in_packets >= 1 && c1.out_packets >= 1, "{c0:?} {c1:?}");

    // A group without an entry: a NOCACHE upcall naming vif0, S and the group. IGMP reports
    // from C arrive on the same socket and must not come out as upcalls.
    tx.send_to(b"no-entry", SocketAddr::from((G_UNROUTED, PORT))).unwrap();
    let up = wait_for(Duration::from_secs(3), || router.recv_upcall().unwrap()).expect("NOCACHE upcall");
    assert_eq!(up.kind, UpcallKind::NoCache);
    assert_eq!(up.vif, vif0);
    assert_eq!((up.source, up.group), (IpAddr::V4(S), IpAddr::V4(G_UNROUTED)));
    assert_eq!(up.packet, None);

    // Replace: no oifs any more (the entry stays, forwarding stops).
    router.set_mfc(S, G, vif0, &[]).unwrap();
    let cache = ip_mr_cache(&lab.r.proc_net("ip_mr_cache"));
    assert_eq!(cache.iter().find(|e| e.0 == G && e.1 == S).unwrap().4, "");
    tx.send_to(b"blocked", to).unwrap();
    assert!(recv_expect(&rx, b"blocked", Duration::from_millis(600)).is_none(), "forwarded without an oif");

    // Delete: gone from /proc, and deleting again says there was nothing.
    router.set_mfc(S, G, vif0, &[vif1]).unwrap();
    assert!(router.del_mfc(S, G).unwrap());
    assert!(!router.del_mfc(S, G).unwrap());
    let cache = ip_mr_cache(&lab.r.proc_net("ip_mr_cache"));
    assert!(!cache.iter().any(|e| e.0 == G && e.1 == S && e.2 >= 0), "{cache:?}");
    assert!(router.sg_counters(S, G).is_err(), "no counters without an entry");

    router.del_vif(vif1).unwrap();
    assert!(!lab.r.proc_net("ip_mr_vif").contains(" r1 "));

    // Drop = MRT_DONE: every VIF and entry is gone.
    drop(router);
    let vifs = lab.r.proc_net("ip_mr_vif");
    assert_eq!(vifs.lines().count(), 1, "only the header line left:\n{vifs}");
}

#[test]
fn async_upcall_reader() {
    require_root!();
    let lab = lab();
    let mut router = lab.r.run(MulticastRouter::new).unwrap();
    let vif0 = router.add_vif(lab.r.ifindex("r0")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut reader = rt.block_on(async { router.upcall_reader() }).unwrap();
    let tx = sender_v4(&lab.s, S);
    let up = rt.block_on(async {
        for _ in 0..20 {
            tx.send_to(b"x", SocketAddr::from((G, PORT))).unwrap();
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), reader.recv()).await {
                return r;
            }
        }
        panic!("no upcall within 4 s");
    });
    let up = up.unwrap();
    assert_eq!((up.kind, up.vif, up.group), (UpcallKind::NoCache, vif0, IpAddr::V4(G)));
    drop(router);
    // The reader's socket is a duplicate: routing ended with the router anyway.
    assert_eq!(lab.r.proc_net("ip_mr_vif").lines().count(), 1);
    drop(reader);
}

#[test]
fn vif_of_a_deleted_interface_disappears_with_it() {
    require_root!();
    let lab = lab();
    let mut router = lab.r.run(MulticastRouter::new).unwrap();
    let vif0 = router.add_vif(lab.r.ifindex("r0")).unwrap();
    let vif1 = router.add_vif(lab.r.ifindex("r1")).unwrap();
    router.set_mfc(S, G, vif0, &[vif1]).unwrap();

    lab.r.ip("link del r1");
    let vifs = lab.r.proc_net("ip_mr_vif");
    assert!(!vifs.contains(" r1 "), "the kernel removed the VIF with its device:\n{vifs}");
    // The MFC entry still lists the dead slot as an oif: the kernel keeps thresholds.
    // Deleting the gone VIF succeeds (EADDRNOTAVAIL is treated as already done).
    router.del_vif(vif1).unwrap();

    // /proc hides the dead slot, but the entry keeps its threshold for it: a *different*
    // interface added in the same slot is forwarded to at once. This is why ForwardingState
    // never reuses a slot that an installed entry still refers to.
    let cache = ip_mr_cache(&lab.r.proc_net("ip_mr_cache"));
    assert_eq!(cache.iter().find(|e| e.0 == G).unwrap().4, "");
    lab.r.ip("link add r2 type veth peer name r2p");
    router.add_vif_at(vif1, lab.r.ifindex("r2")).unwrap();
    let cache = ip_mr_cache(&lab.r.proc_net("ip_mr_cache"));
    assert_eq!(cache.iter().find(|e| e.0 == G).unwrap().4, "1:1", "the stale threshold applies to the new device");
}

/// Sends an IGMPv2 general query (another querier on the LAN) from `ns` to 224.0.0.1.
fn send_igmp_query(ns: &Netns, from: Ipv4Addr) {
    ns.run(|| {
        let s =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::from(2))).unwrap();
        s.set_multicast_if_v4(&from).unwrap();
        s.set_multicast_ttl_v4(1).unwrap();
        let mut query = [0x11u8, 100, 0, 0, 0, 0, 0, 0];
        let sum = !mcast_wire::checksum::data(&query);
        query[2..4].copy_from_slice(&sum.to_be_bytes());
        s.send_to(&query, &SocketAddr::from((Ipv4Addr::new(224, 0, 0, 1), 0)).into()).unwrap();
    });
}

#[test]
fn igmp_on_the_mroute_socket_is_filtered_or_discarded() {
    require_root!();
    let lab = lab();
    let mut router = lab.r.run(MulticastRouter::new).unwrap();
    router.add_vif(lab.r.ifindex("r1")).unwrap();

    // With the socket filter: a query from another querier (to 224.0.0.1, which every host
    // receives) never reaches userspace.
    send_igmp_query(&lab.c, C_ADDR);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(router.recv_upcall().unwrap(), None);
    assert_eq!(router.discarded(), 0);

    // Without the filter, it arrives on the same socket and is read and discarded.
    socket2::SockRef::from(&router).detach_filter().unwrap();
    let discarded = wait_for(Duration::from_secs(3), || {
        send_igmp_query(&lab.c, C_ADDR);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(router.recv_upcall().unwrap(), None, "an IGMP packet must not come out as an upcall");
        (router.discarded() > 0).then_some(router.discarded())
    });
    assert!(discarded.is_some(), "no IGMP query arrived on the mroute socket");
}
