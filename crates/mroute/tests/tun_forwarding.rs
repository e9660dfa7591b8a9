//! A TUN as the incoming interface (where driad-ingest injects decapsulated traffic), and the
//! pimwatch scenario: ForwardingState + LinkWatcher + the real router following a native TUN
//! that appears late, disappears and comes back with a new ifindex.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::{
    Netns, inject_until_received, ip_mr_cache, receiver_v6, recv_expect, ssm_receiver_v4, udp_packet_v4, udp_packet_v6,
    veth, wait_for,
};
use mcast_mroute::links::{LinkEvent, LinkWatcher};
use mcast_mroute::tun::Tun;
use mcast_mroute::{Family, ForwardingState, MulticastRouter, MulticastRouter6};
use mcast_wire::SourceGroup;

/// An off-link source: nothing in any namespace routes to it.
const S: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const G: Ipv4Addr = Ipv4Addr::new(232, 1, 1, 2);
const C_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 2);
const PORT: u16 = 5003;

fn udp_v4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    udp_packet_v4(src, dst, ttl, PORT, payload)
}

fn r_and_c() -> (Netns, Netns) {
    let (r, c) = (Netns::new("R"), Netns::new("C"));
    veth(&r, "r1", &c, "c0");
    r.ip("addr add 10.200.2.1/24 dev r1");
    r.ip("-6 addr add fd00:2::1/64 dev r1 nodad");
    c.ip("addr add 10.200.2.2/24 dev c0");
    c.ip("-6 addr add fd00:2::2/64 dev c0 nodad");
    (r, c)
}

#[test]
fn ipv4_from_a_tun_is_forwarded_out_of_a_veth() {
    require_root!();
    let (r, c) = r_and_c();
    let tun = r.run(|| Tun::create_or_attach("native0")).unwrap();
    assert_eq!(tun.name(), "native0");
    r.run(|| {
        tun.set_up().unwrap();
        tun.set_mtu(1400).unwrap();
        assert_eq!(tun.disable_rp_filter().unwrap(), 0, "harness set all.rp_filter=0");
        assert_eq!(mcast_mroute::tun::rp_filter("native0").unwrap(), 0);
    });
    assert!(r.proc_net("dev").contains("native0"));
    let mut router = r.run(MulticastRouter::new).unwrap();
    let tun_vif = router.add_vif(tun.ifindex()).unwrap();
    let r1_vif = router.add_vif(r.ifindex("r1")).unwrap();
    router.set_mfc(S, G, tun_vif, &[r1_vif]).unwrap();

    let rx = ssm_receiver_v4(&c, S, G, C_ADDR, PORT);
    assert!(
        inject_until_received(&tun, &udp_v4(S, G, 16, b"via-tun"), &rx, b"via-tun", 30),
        "a datagram written into the TUN was not forwarded to C"
    );
    let before = router.sg_counters(S, G).unwrap().packets;
    assert!(before >= 1);

    // TTL 1 is not forwarded (lab-notes §8): the entry sees it, C does not.
    tun.send(&udp_v4(S, G, 1, b"ttl-1")).unwrap();
    assert!(recv_expect(&rx, b"ttl-1", Duration::from_millis(500)).is_none(), "TTL 1 must not be forwarded");
    // TTL 2 is.
    assert!(inject_until_received(&tun, &udp_v4(S, G, 2, b"ttl-2"), &rx, b"ttl-2", 30));
    router.close().unwrap();
}

#[test]
fn ipv6_from_a_tun_is_forwarded_out_of_a_veth() {
    require_root!();
    let (r, c) = r_and_c();
    let s6: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let g6: Ipv6Addr = "ff3e::8000:2".parse().unwrap();
    let tun = r.run(|| Tun::create_or_attach("native6")).unwrap();
    r.run(|| tun.set_up()).unwrap();
    let mut router = r.run(MulticastRouter6::new).unwrap();
    let tun_mif = router.add_mif(tun.ifindex()).unwrap();
    let r1_mif = router.add_mif(r.ifindex("r1")).unwrap();
    router.set_mfc6(s6, g6, tun_mif, &[r1_mif]).unwrap();

    let rx = receiver_v6(&c, g6, c.ifindex("c0"), PORT);
    assert!(
        inject_until_received(&tun, &udp_packet_v6(s6, g6, 16, PORT, b"via-tun6"), &rx, b"via-tun6", 30),
        "an IPv6 datagram written into the TUN was not forwarded to C"
    );
    assert!(router.sg_counters(s6, g6).unwrap().packets >= 1);
}

/// Feeds watcher events into the state until `done` says so (3 s at most), applying after
/// each change. Returns the events seen.
fn pump(
    rt: &tokio::runtime::Runtime,
    watcher: &mut LinkWatcher,
    state: &mut ForwardingState,
    router: &mut MulticastRouter,
    done: impl Fn(&LinkEvent) -> bool,
) -> Vec<LinkEvent> {
    let mut seen = Vec::new();
    rt.block_on(async {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(3), watcher.next())
                .await
                .unwrap_or_else(|_| panic!("no matching link event; saw {seen:?}"))
                .unwrap();
            if state.on_link_event(&ev) {
                let errors = state.apply(router);
                assert!(errors.is_empty(), "{errors:?}");
            }
            let stop = done(&ev);
            seen.push(ev);
            if stop {
                return;
            }
        }
    });
    seen
}

#[test]
fn forwarding_state_follows_a_native_tun_that_comes_and_goes() {
    require_root!();
    let (r, c) = r_and_c();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut router = r.run(MulticastRouter::new).unwrap();
    let mut watcher = r
        .run(|| {
            let _guard = rt.enter();
            LinkWatcher::new()
        })
        .unwrap();

    // pimwatch at start: the downstream exists, the native TUN does not yet.
    let mut state = ForwardingState::new(Family::V4);
    state.manage_interface("native0");
    state.manage_interface("r1");
    for link in watcher.snapshot().links.values() {
        state.set_interface(link.name.clone(), link.ifindex);
    }
    let sg: SourceGroup = format!("{S},{G}").parse().unwrap();
    state.set_route(sg, "native0", ["r1"]).unwrap();
    assert!(state.apply(&mut router).is_empty());
    assert!(state.installed_mfcs().is_empty(), "the iif is absent: nothing installed yet");
    assert!(state.installed_vif("r1").is_some());

    let rx = ssm_receiver_v4(&c, S, G, C_ADDR, PORT);
    let is_native_added = |e: &LinkEvent| matches!(e, LinkEvent::Added { name, .. } if name == "native0");

    // The TUN appears.
    let tun = r.run(|| Tun::create_or_attach("native0")).unwrap();
    r.run(|| tun.set_up()).unwrap();
    pump(&rt, &mut watcher, &mut state, &mut router, is_native_added);
    let first_ifindex = tun.ifindex();
    assert_eq!(state.interface("native0"), Some(first_ifindex));
    assert!(state.is_converged());
    let installed = state.installed_mfcs()[&sg].clone();
    assert_eq!(Some(installed.iif), state.installed_vif("native0"));
    assert!(inject_until_received(&tun, &udp_v4(S, G, 16, b"first-tun"), &rx, b"first-tun", 30));

    // The TUN goes away (driad-ingest closed it): the entry and the VIF go, the route stays.
    drop(tun);
    let seen = pump(
        &rt,
        &mut watcher,
        &mut state,
        &mut router,
        |e| matches!(e, LinkEvent::Removed { name, .. } if name == "native0"),
    );
    assert!(seen.iter().any(|e| matches!(e, LinkEvent::Removed { ifindex, .. } if *ifindex == first_ifindex)));
    assert!(state.installed_mfcs().is_empty());
    assert!(state.installed_vif("native0").is_none());
    assert!(state.route(sg).is_some());
    let cache = ip_mr_cache(&r.proc_net("ip_mr_cache"));
    assert!(!cache.iter().any(|e| e.0 == G && e.2 >= 0), "{cache:?}");

    // It comes back, with a new ifindex: forwarding resumes through the new device.
    let tun = r.run(|| Tun::create_or_attach("native0")).unwrap();
    r.run(|| tun.set_up()).unwrap();
    assert_ne!(tun.ifindex(), first_ifindex);
    pump(&rt, &mut watcher, &mut state, &mut router, is_native_added);
    assert_eq!(state.interface("native0"), Some(tun.ifindex()));
    assert!(state.is_converged());
    assert!(inject_until_received(&tun, &udp_v4(S, G, 16, b"second-tun"), &rx, b"second-tun", 30));

    // The receiver's interface is the only oif: removing the route stops forwarding.
    state.remove_oif(sg, "r1");
    assert!(state.apply(&mut router).is_empty());
    tun.send(&udp_v4(S, G, 16, b"pruned")).unwrap();
    assert!(recv_expect(&rx, b"pruned", Duration::from_millis(500)).is_none());

    // Exit: flush removes everything.
    assert!(state.flush(&mut router).is_empty());
    assert_eq!(r.proc_net("ip_mr_vif").lines().count(), 1);
    let got = wait_for(Duration::from_millis(100), || Some(router.vifs()));
    assert_eq!(got, Some(vec![]));
    drop((router, watcher, tun, IpAddr::V4(S)));
}
