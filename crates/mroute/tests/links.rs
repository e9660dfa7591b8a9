//! The NETLINK_ROUTE link watcher against a real namespace.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::Netns;
use mcast_mroute::links::{self, LinkEvent, LinkWatcher};

async fn wait_event(watcher: &mut LinkWatcher, seen: &mut Vec<LinkEvent>, want: impl Fn(&LinkEvent) -> bool) {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), watcher.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; events so far: {seen:#?}"))
            .unwrap();
        let hit = want(&ev);
        seen.push(ev);
        if hit {
            return;
        }
    }
}

#[test]
fn watcher_sees_veths_come_and_go_and_addresses() {
    require_root!();
    let ns = Netns::new("W");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut watcher = ns
        .run(|| {
            let _guard = rt.enter();
            LinkWatcher::new()
        })
        .unwrap();
    let lo = watcher.snapshot().link_by_name("lo").expect("lo in the snapshot").clone();
    assert!(lo.up);
    assert!(watcher.snapshot().addresses_of(lo.ifindex).any(|a| a.addr == IpAddr::from([127, 0, 0, 1])));
    // The free-standing dump sees the same.
    let snap = ns.run(links::snapshot).unwrap();
    assert_eq!(snap.link_by_name("lo").map(|l| l.ifindex), Some(lo.ifindex));

    let mut seen = Vec::new();
    ns.ip("link add wa type veth peer name wb");
    let (wa, wb) = (ns.ifindex("wa"), ns.ifindex("wb"));
    // Both ends, in whatever order the kernel announces them.
    rt.block_on(async {
        while !(seen.iter().any(|e| matches!(e, LinkEvent::Added { name, .. } if name == "wa"))
            && seen.iter().any(|e| matches!(e, LinkEvent::Added { name, .. } if name == "wb")))
        {
            wait_event(&mut watcher, &mut seen, |e| matches!(e, LinkEvent::Added { .. })).await;
        }
    });
    assert!(seen.contains(&LinkEvent::Added { name: "wa".into(), ifindex: wa, up: false, running: false }));

    ns.ip("addr add 10.1.1.1/24 dev wa");
    ns.ip("addr add 10.1.1.2/24 dev wa");
    rt.block_on(wait_event(
        &mut watcher,
        &mut seen,
        |e| matches!(e, LinkEvent::AddressAdded { addr, .. } if *addr == IpAddr::from([10, 1, 1, 2])),
    ));
    assert!(seen.contains(&LinkEvent::AddressAdded {
        ifindex: wa,
        addr: IpAddr::from([10, 1, 1, 1]),
        prefix_len: 24,
        tentative: false
    }));
    assert_eq!(watcher.snapshot().primary_ipv4(wa), Some([10, 1, 1, 1].into()), "the second is a secondary");

    // Up on both ends: carrier, then an IPv6 link-local address (the harness turned DAD off).
    ns.ip("link set wa up");
    ns.ip("link set wb up");
    rt.block_on(wait_event(&mut watcher, &mut seen, |e| {
        matches!(e, LinkEvent::AddressAdded { ifindex, addr: IpAddr::V6(v6), tentative: false, .. }
            if *ifindex == wa && v6.is_unicast_link_local())
    }));
    assert!(seen.iter().any(|e| matches!(e, LinkEvent::Added { name, up: true, running: true, .. } if name == "wa")));
    assert!(watcher.snapshot().ipv6_link_local(wa).is_some());

    ns.ip("addr del 10.1.1.1/24 dev wa");
    rt.block_on(wait_event(&mut watcher, &mut seen, |e| matches!(e, LinkEvent::AddressRemoved { .. })));

    ns.ip("link del wa");
    rt.block_on(async {
        let mut gone = (false, false);
        while gone != (true, true) {
            let mut last = Vec::new();
            wait_event(&mut watcher, &mut last, |e| matches!(e, LinkEvent::Removed { .. })).await;
            for e in &last {
                match e {
                    LinkEvent::Removed { name, ifindex } if name == "wa" && *ifindex == wa => gone.0 = true,
                    LinkEvent::Removed { name, ifindex } if name == "wb" && *ifindex == wb => gone.1 = true,
                    _ => {}
                }
            }
            seen.extend(last);
        }
    });
    assert!(watcher.snapshot().link_by_name("wa").is_none());
    assert!(watcher.snapshot().addresses_of(wa).next().is_none());
    assert_eq!(watcher.resyncs(), 0);
    // Nothing else pending.
    assert_eq!(watcher.try_next().unwrap(), None);
}

#[test]
fn rename_is_removed_then_added() {
    require_root!();
    let ns = Netns::new("W");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    ns.ip("link add old0 type veth peer name peer0");
    let mut watcher = ns
        .run(|| {
            let _guard = rt.enter();
            LinkWatcher::new()
        })
        .unwrap();
    let idx = ns.ifindex("old0");
    ns.ip("link set old0 name new0");
    let mut seen = Vec::new();
    rt.block_on(wait_event(&mut watcher, &mut seen, |e| matches!(e, LinkEvent::Added { name, .. } if name == "new0")));
    assert_eq!(
        seen,
        vec![
            LinkEvent::Removed { name: "old0".into(), ifindex: idx },
            LinkEvent::Added { name: "new0".into(), ifindex: idx, up: false, running: false }
        ]
    );
}
