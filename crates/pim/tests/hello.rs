//! Hellos, neighbours, DR election, LAN Prune Delay (RFC 7761 §4.3), with injected time.

mod common;

use std::time::Duration;

use common::*;
use mcast_pim::{Config, DropReason, Event, InterfaceError, InterfaceId, NeighborDownReason};
use mcast_wire::pim::{HelloOption, LanPruneDelay, MessageType};

#[test]
fn first_hello_within_triggered_delay_with_the_right_options() {
    let mut h = Harness::new(config());
    h.add_if1();
    // RFC 7761 §4.3.1: HT starts at rand(0, Triggered_Hello_Delay); ours is 100 ms.
    let first = h.engine.poll_timeout().unwrap();
    assert!(first <= h.now + ms(100), "first Hello due within 100 ms");
    h.advance_to(first);
    let tx = h.transmits();
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].interface, IF1);
    assert_eq!(tx[0].src, us());
    assert_eq!(tx[0].dst, all_pim_v4());
    let hello = decode_hello(&tx[0]); // checksum verified
    assert_eq!(hello.holdtime(), Some(105));
    assert_eq!(hello.dr_priority(), Some(1));
    assert_eq!(hello.generation_id(), h.engine.generation_id(IF1));
    assert_eq!(
        hello.lan_prune_delay(),
        Some(LanPruneDelay { t_bit: false, propagation_delay_ms: 500, override_interval_ms: 2500 })
    );
    assert_eq!(hello.addresses().count(), 0, "no Address List without secondary addresses");
    assert_eq!(h.engine.counters().sent(MessageType::Hello), 1);
}

#[test]
fn zero_triggered_delay_sends_the_first_hello_at_once() {
    let mut h = Harness::new(Config { triggered_hello_delay: Duration::ZERO, ..config() });
    h.add_if1();
    let tx = h.transmits();
    assert_eq!(tx.len(), 1, "a Hello right at start");
    assert_eq!(decode_hello(&tx[0]).holdtime(), Some(105));
}

#[test]
fn generation_ids_differ_per_interface_and_per_start() {
    let mut h = Harness::with_seed(config(), 1);
    h.add_if1();
    h.add_if2();
    let a = h.engine.generation_id(IF1).unwrap();
    assert_ne!(a, h.engine.generation_id(IF2).unwrap());
    // Restarting PIM on the interface draws a new GenID (§4.3.1).
    h.engine.remove_interface(IF1, h.now).unwrap();
    h.add_if1();
    assert_ne!(h.engine.generation_id(IF1).unwrap(), a);
    // A different seed (a restarted daemon) gives a different GenID.
    let mut other = Harness::with_seed(config(), 2);
    other.add_if1();
    assert_ne!(other.engine.generation_id(IF1).unwrap(), a);
}

#[test]
fn periodic_hellos_every_hello_period_less_jitter() {
    let mut h = Harness::new(config());
    h.add_if1();
    let mut sent = Vec::new();
    let end = h.t0 + secs(600);
    while let Some(t) = h.engine.poll_timeout().filter(|t| *t <= end) {
        h.advance_to(t);
        for tx in h.transmits() {
            assert_eq!(msg_type(&tx), MessageType::Hello);
            sent.push(h.now);
        }
    }
    assert!(sent.len() >= 20, "{} Hellos in 10 minutes", sent.len());
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    for gap in &gaps {
        assert!(*gap >= secs(27) && *gap <= secs(30), "gap {gap:?} outside Hello_Period - 10 %");
    }
    assert!(gaps.iter().any(|g| *g != gaps[0]), "the period is jittered");
}

#[test]
fn periodic_hellos_without_jitter_are_exactly_hello_period() {
    let mut h = Harness::new(Config { hello_jitter: Duration::ZERO, ..config() });
    h.add_if1();
    h.advance(ms(100));
    h.drain();
    let before = h.engine.poll_timeout().unwrap();
    h.advance_to(before);
    assert_eq!(h.transmits().len(), 1);
    assert_eq!(h.engine.poll_timeout().unwrap() - before, secs(30));
}

#[test]
fn new_neighbor_is_up_and_gets_a_triggered_hello() {
    let mut h = Harness::started();
    let periodic = h.engine.poll_timeout().unwrap();
    assert_eq!(h.recv(IF1, frr(), &frr_hello(105, 0x4d114bd5)), Ok(()));
    let ev = h.events();
    assert_eq!(ev, vec![Event::NeighborUp { interface: IF1, neighbor: frr(), genid: Some(0x4d114bd5), holdtime: 105 }]);
    assert_eq!(h.engine.neighbors(IF1), vec![frr()]);
    // The triggered Hello is due within Triggered_Hello_Delay (100 ms).
    let due = h.engine.poll_timeout().unwrap();
    assert!(due <= h.now + ms(100) && due < periodic);
    h.advance_to(due);
    let tx = h.transmits();
    assert_eq!(tx.len(), 1);
    assert_eq!(decode_hello(&tx[0]).holdtime(), Some(105));
    // The periodic schedule is unchanged (§4.3.1: "need not change the timing").
    assert_eq!(h.engine.poll_timeout(), Some(periodic));
    // A refresh from a known neighbour triggers nothing.
    h.recv(IF1, frr(), &frr_hello(105, 0x4d114bd5)).unwrap();
    assert!(h.events().is_empty());
    assert_eq!(h.engine.poll_timeout(), Some(periodic));
    // FRR's Address List (IPv6 link-local on IPv4) is kept as the neighbour's secondary.
    let status = h.engine.status(h.now);
    assert_eq!(status.interfaces[0].neighbors[0].secondary, vec![ip("fe80::c8a:2fff:fe0f:d81d")]);
}

#[test]
fn triggered_hello_delay_is_random_within_bounds() {
    let mut delays = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let mut h = Harness::with_seed(config(), seed);
        h.add_if1();
        h.advance(ms(100));
        h.drain();
        h.recv(IF1, frr(), &frr_hello(105, 1)).unwrap();
        let due = h.engine.poll_timeout().unwrap();
        assert!(due >= h.now && due <= h.now + ms(100));
        delays.insert(due - h.now);
    }
    assert!(delays.len() > 10, "delays vary with the seed");
}

#[test]
fn genid_change_restarts_the_neighbor_and_triggers_a_hello() {
    let mut h = Harness::started();
    h.frr_up();
    let periodic = h.engine.poll_timeout().unwrap();
    h.advance(secs(5));
    h.recv(IF1, frr(), &frr_hello(105, 0x11111111)).unwrap();
    assert_eq!(
        h.events(),
        vec![Event::NeighborRestarted {
            interface: IF1,
            neighbor: frr(),
            old_genid: Some(0x4d114bd5),
            new_genid: Some(0x11111111)
        }]
    );
    let due = h.engine.poll_timeout().unwrap();
    assert!(due <= h.now + ms(100) && due < periodic);
    h.advance_to(due);
    assert_eq!(h.transmits().iter().map(msg_type).collect::<Vec<_>>(), vec![MessageType::Hello]);
    assert_eq!(h.engine.status(h.now).interfaces[0].neighbors[0].genid, Some(0x11111111));
}

#[test]
fn neighbor_expires_exactly_at_its_holdtime() {
    let mut h = Harness::started();
    let start = h.now;
    h.recv(IF1, frr(), &std_hello(105, 1, None)).unwrap();
    assert_eq!(h.engine.neighbor_expiry(IF1, &frr()), Some(Some(start + secs(105))));
    h.drain();
    // A refresh at +50 s restarts the Neighbor Liveness Timer.
    h.advance(secs(50));
    h.recv(IF1, frr(), &std_hello(105, 1, None)).unwrap();
    let expiry = start + secs(155);
    assert_eq!(h.engine.neighbor_expiry(IF1, &frr()), Some(Some(expiry)));
    h.advance_to(expiry - ms(1));
    assert_eq!(h.engine.neighbors(IF1), vec![frr()]);
    assert!(h.events().is_empty());
    h.advance_to(expiry);
    assert!(h.engine.neighbors(IF1).is_empty());
    assert_eq!(
        h.events(),
        vec![Event::NeighborDown { interface: IF1, neighbor: frr(), reason: NeighborDownReason::Expired }]
    );
}

#[test]
fn holdtime_zero_is_a_goodbye() {
    let mut h = Harness::started();
    h.frr_up();
    h.recv(IF1, frr(), &std_hello(0, 0x4d114bd5, None)).unwrap();
    assert!(h.engine.neighbors(IF1).is_empty());
    assert_eq!(
        h.events(),
        vec![Event::NeighborDown { interface: IF1, neighbor: frr(), reason: NeighborDownReason::Goodbye }]
    );
    // A goodbye from a stranger changes nothing.
    h.recv(IF1, other_router(), &std_hello(0, 5, None)).unwrap();
    assert!(h.engine.neighbors(IF1).is_empty());
    assert!(h.events().is_empty());
}

#[test]
fn holdtime_ffff_never_expires() {
    let mut h = Harness::started();
    h.recv(IF1, frr(), &std_hello(0xffff, 1, None)).unwrap();
    assert_eq!(h.engine.neighbor_expiry(IF1, &frr()), Some(None));
    h.advance(Duration::from_secs(400 * 24 * 3600));
    assert_eq!(h.engine.neighbors(IF1), vec![frr()]);
    assert!(!h.events().iter().any(|e| matches!(e, Event::NeighborDown { .. })));
    // A later finite Holdtime starts a timer again.
    h.recv(IF1, frr(), &std_hello(30, 1, None)).unwrap();
    assert_eq!(h.engine.neighbor_expiry(IF1, &frr()), Some(Some(h.now + secs(30))));
}

#[test]
fn hello_without_holdtime_option_uses_default_hello_holdtime() {
    let mut h = Harness::started();
    h.recv(IF1, frr(), &hello(vec![HelloOption::GenerationId(9)])).unwrap();
    assert_eq!(h.engine.neighbor_expiry(IF1, &frr()), Some(Some(h.now + secs(105))));
}

#[test]
fn unknown_hello_options_are_ignored() {
    let mut h = Harness::started();
    let msg = hello(vec![
        HelloOption::Unknown { kind: 21, value: vec![1, 0, 0, 60] }, // State Refresh Capable (PIM-DM)
        HelloOption::Holdtime(105),
        HelloOption::Unknown { kind: 22, value: vec![] }, // Bidir Capable
        HelloOption::Unknown { kind: 65001, value: vec![0xde, 0xad] },
        HelloOption::Unknown { kind: 19, value: vec![1] }, // DR Priority with a wrong length
        HelloOption::GenerationId(3),
    ]);
    assert_eq!(h.recv(IF1, frr(), &msg), Ok(()));
    assert_eq!(h.engine.neighbors(IF1), vec![frr()]);
}

#[test]
fn own_looped_back_hello_is_ignored() {
    let mut h = Harness::new(config());
    h.add_if1();
    h.advance(ms(100));
    let tx = h.transmits();
    assert_eq!(h.recv(IF1, us(), &tx[0].payload), Err(DropReason::OwnPacket));
    assert!(h.engine.neighbors(IF1).is_empty());
    assert_eq!(h.engine.counters().dropped(DropReason::OwnPacket), 1);
    assert_eq!(h.engine.counters().received(MessageType::Hello), 0);
}

#[test]
fn bad_or_malformed_hellos_are_dropped() {
    let mut h = Harness::started();
    let mut bad = frr_hello(105, 1);
    bad[10] ^= 1;
    assert_eq!(h.recv(IF1, frr(), &bad), Err(DropReason::BadChecksum));
    assert_eq!(h.recv(IF1, frr(), &[0x20]), Err(DropReason::Malformed));
    assert_eq!(h.recv(IF1, frr(), &bytes("10000000")), Err(DropReason::Malformed), "PIM version 1");
    // An option running past the end (checksum fixed up so only the structure is wrong).
    let mut cut = bytes("20000000 0001 0004 0069");
    let sum = mcast_wire::checksum::finish(mcast_wire::checksum::data(&cut));
    cut[2..4].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(h.recv(IF1, frr(), &cut), Err(DropReason::Malformed));
    assert!(h.engine.neighbors(IF1).is_empty());
    assert_eq!(h.engine.counters().dropped(DropReason::BadChecksum), 1);
    assert_eq!(h.engine.counters().dropped(DropReason::Malformed), 3);
    // Wrong family, unknown interface.
    assert_eq!(
        h.engine.handle_packet(IF1, ip("fe80::1"), all_pim_v6(), &frr_hello(105, 1), h.now),
        Err(DropReason::WrongFamily)
    );
    assert_eq!(h.recv(InterfaceId::v4(99), frr(), &frr_hello(105, 1)), Err(DropReason::UnknownInterface));
}

#[test]
fn other_pim_types_are_counted_and_ignored() {
    let mut h = Harness::started();
    h.frr_up();
    let assert_msg = mcast_wire::pim::Repr::other(MessageType::Assert, vec![0; 20])
        .to_bytes(mcast_wire::pim::ChecksumContext::V4)
        .unwrap();
    assert_eq!(h.recv(IF1, frr(), &assert_msg), Err(DropReason::UnsupportedType));
    let bsm = mcast_wire::pim::Repr::other(MessageType::Bootstrap, vec![0; 8])
        .to_bytes(mcast_wire::pim::ChecksumContext::V4)
        .unwrap();
    assert_eq!(h.recv(IF1, frr(), &bsm), Err(DropReason::UnsupportedType));
    assert_eq!(h.engine.counters().received(MessageType::Assert), 1);
    assert_eq!(h.engine.counters().received(MessageType::Bootstrap), 1);
    assert_eq!(h.engine.counters().dropped(DropReason::UnsupportedType), 2);
}

#[test]
fn too_many_neighbors_are_refused() {
    let mut h = Harness::new(Config { max_neighbors: 2, ..config() });
    h.add_if1();
    assert_eq!(h.recv(IF1, ip("10.9.1.10"), &std_hello(105, 1, None)), Ok(()));
    assert_eq!(h.recv(IF1, ip("10.9.1.11"), &std_hello(105, 2, None)), Ok(()));
    assert_eq!(h.recv(IF1, ip("10.9.1.12"), &std_hello(105, 3, None)), Err(DropReason::TooManyNeighbors));
    // Known neighbours still refresh.
    assert_eq!(h.recv(IF1, ip("10.9.1.11"), &std_hello(105, 2, None)), Ok(()));
    assert_eq!(h.engine.neighbors(IF1).len(), 2);
}

#[test]
fn dr_election_by_priority_then_address() {
    let mut h = Harness::started();
    assert_eq!(h.engine.dr(IF1), Some(us()));
    // 10.9.1.1 < 10.9.1.2, same priority: we stay DR.
    h.recv(IF1, frr(), &std_hello(105, 1, None)).unwrap();
    assert_eq!(h.engine.dr(IF1), Some(us()));
    // 10.9.1.3 > 10.9.1.2 at equal priority: it wins.
    h.drain();
    h.recv(IF1, other_router(), &std_hello(105, 2, None)).unwrap();
    assert_eq!(h.engine.dr(IF1), Some(other_router()));
    assert!(h.events().contains(&Event::DrChanged { interface: IF1, dr: other_router() }));
    // A higher priority wins over a higher address.
    h.recv(
        IF1,
        frr(),
        &hello(vec![HelloOption::Holdtime(105), HelloOption::DrPriority(10), HelloOption::GenerationId(1)]),
    )
    .unwrap();
    assert_eq!(h.engine.dr(IF1), Some(frr()));
    // A neighbour without the DR Priority option: addresses only (§4.3.2).
    h.recv(IF1, ip("10.9.1.0"), &hello(vec![HelloOption::Holdtime(105), HelloOption::GenerationId(4)])).unwrap();
    assert_eq!(h.engine.dr(IF1), Some(other_router()));
    // It leaves: priorities again.
    h.recv(IF1, ip("10.9.1.0"), &hello(vec![HelloOption::Holdtime(0)])).unwrap();
    assert_eq!(h.engine.dr(IF1), Some(frr()));
    let status = h.engine.status(h.now);
    assert!(!status.interfaces[0].i_am_dr);
}

#[test]
fn jp_override_interval_follows_the_lan_prune_delay_options() {
    let mut h = Harness::started();
    // No neighbours: our own values, 500 + 2500 ms.
    assert_eq!(h.engine.jp_override_interval(IF1), Some(ms(3000)));
    h.recv(IF1, frr(), &std_hello(105, 1, Some((500, 2500)))).unwrap();
    assert_eq!(h.engine.jp_override_interval(IF1), Some(ms(3000)));
    // The largest advertised values win when everyone advertises (§4.3.3).
    h.recv(IF1, other_router(), &std_hello(105, 2, Some((1000, 4000)))).unwrap();
    assert_eq!(h.engine.jp_override_interval(IF1), Some(ms(5000)));
    // Someone without the option: the defaults, whatever the others say.
    h.recv(IF1, ip("10.9.1.4"), &std_hello(105, 3, None)).unwrap();
    assert_eq!(h.engine.jp_override_interval(IF1), Some(ms(3000)));

    // Our own configured values are part of the maximum.
    let mut h = Harness::new(Config { propagation_delay: ms(800), override_interval: ms(3000), ..config() });
    h.add_if1();
    h.recv(IF1, frr(), &std_hello(105, 1, Some((500, 2500)))).unwrap();
    assert_eq!(h.engine.jp_override_interval(IF1), Some(ms(3800)));
}

#[test]
fn interface_errors() {
    let mut h = Harness::started();
    assert_eq!(h.engine.add_interface(IF1, "x", us(), vec![], h.now), Err(InterfaceError::Exists(IF1)));
    assert!(matches!(
        h.engine.add_interface(IF2, "x", ip("fe80::1"), vec![], h.now),
        Err(InterfaceError::FamilyMismatch { .. })
    ));
    assert_eq!(
        h.engine.add_interface(IF6, "x", ip("2001:db8::1"), vec![], h.now),
        Err(InterfaceError::NotLinkLocal(ip("2001:db8::1")))
    );
    assert_eq!(
        h.engine.add_interface(IF2, "x", ip("224.0.0.13"), vec![], h.now),
        Err(InterfaceError::NotUnicast(ip("224.0.0.13")))
    );
    let many = (0..65).map(|i| ip(&format!("10.1.0.{i}"))).collect();
    assert_eq!(h.engine.add_interface(IF2, "x", us2(), many, h.now), Err(InterfaceError::TooManySecondary(65)));
    assert_eq!(h.engine.remove_interface(IF2, h.now), Err(InterfaceError::Unknown(IF2)));
    assert_eq!(h.engine.update_addresses(IF2, us2(), vec![], h.now), Err(InterfaceError::Unknown(IF2)));
}

#[test]
fn primary_address_change_sends_goodbye_then_hello() {
    let mut h = Harness::started();
    let new = ip("10.9.1.20");
    h.engine.update_addresses(IF1, new, vec![], h.now).unwrap();
    let tx = h.transmits();
    assert_eq!(tx.len(), 2);
    assert_eq!(tx[0].src, us());
    assert_eq!(decode_hello(&tx[0]).holdtime(), Some(0), "goodbye from the old address");
    assert_eq!(tx[1].src, new);
    assert_eq!(decode_hello(&tx[1]).holdtime(), Some(105));
    assert_eq!(decode_hello(&tx[0]).generation_id(), decode_hello(&tx[1]).generation_id(), "GenID unchanged");
    // Joins to the old address are now another router's business.
    h.frr_up();
    assert_eq!(h.recv(IF1, frr(), &bytes(FRR_JOIN)), Err(DropReason::WrongUpstream));
    assert_eq!(h.recv(IF1, frr(), &join_one(new, 210, sample_sg())), Ok(()));
}

#[test]
fn secondary_address_change_sends_a_hello_with_the_new_address_list() {
    let mut h = Harness::started();
    h.engine.update_addresses(IF1, us(), vec![ip("23.212.185.1")], h.now).unwrap();
    let tx = h.transmits();
    assert_eq!(tx.len(), 1);
    let hello = decode_hello(&tx[0]);
    assert_eq!(hello.holdtime(), Some(105));
    assert_eq!(hello.addresses().collect::<Vec<_>>(), vec![ip("23.212.185.1")]);
    // Unchanged addresses: nothing.
    h.engine.update_addresses(IF1, us(), vec![ip("23.212.185.1")], h.now).unwrap();
    assert!(h.transmits().is_empty());
}

#[test]
fn ipv6_hellos_have_a_zero_checksum_and_the_global_in_the_address_list() {
    let mut h = Harness::new(Config { triggered_hello_delay: Duration::ZERO, ..config() });
    h.engine.add_interface(IF6, "ing0", ip("fe80::2"), vec![ip("2001:db8:9::2")], h.now).unwrap();
    let tx = h.transmits();
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].dst, all_pim_v6());
    assert_eq!(tx[0].src, ip("fe80::2"));
    let hello = decode_hello(&tx[0]); // asserts the zero checksum
    assert_eq!(hello.addresses().collect::<Vec<_>>(), vec![ip("2001:db8:9::2")]);
    // A neighbour's IPv6 Hello (checksum verified by the kernel, so not here).
    let theirs = mcast_wire::pim::Repr::hello(vec![HelloOption::Holdtime(105), HelloOption::GenerationId(5)])
        .to_bytes(mcast_wire::pim::ChecksumContext::Unchecked)
        .unwrap();
    assert_eq!(h.engine.handle_packet(IF6, ip("fe80::1"), all_pim_v6(), &theirs, h.now), Ok(()));
    assert_eq!(h.engine.neighbors(IF6), vec![ip("fe80::1")]);
}

#[test]
fn shutdown_sends_goodbyes_and_stops_hellos() {
    let mut h = Harness::started();
    h.add_if2();
    h.frr_up();
    h.engine.shutdown(h.now);
    let tx = h.transmits();
    assert_eq!(tx.len(), 2);
    for t in &tx {
        assert_eq!(decode_hello(t).holdtime(), Some(0));
    }
    assert_eq!(tx.iter().map(|t| t.interface).collect::<Vec<_>>(), vec![IF1, IF2]);
    assert!(h.engine.is_shut_down());
    // No more Hellos, not even triggered ones.
    h.recv(IF1, other_router(), &std_hello(105, 1, None)).unwrap();
    h.advance(secs(300));
    assert!(h.transmits().is_empty());
    h.engine.shutdown(h.now);
    assert!(h.transmits().is_empty());
}

#[test]
fn remove_interface_sends_goodbye_and_drops_state() {
    let mut h = Harness::started();
    h.frr_up();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    h.drain();
    h.engine.remove_interface(IF1, h.now).unwrap();
    let tx = h.transmits();
    assert_eq!(tx.len(), 1);
    assert_eq!(decode_hello(&tx[0]).holdtime(), Some(0));
    assert_eq!(
        h.events(),
        vec![
            Event::NeighborDown { interface: IF1, neighbor: frr(), reason: NeighborDownReason::InterfaceRemoved },
            Event::InterfacePrune { interface: IF1, sg: sample_sg(), reason: mcast_pim::PruneReason::InterfaceRemoved },
            Event::Left(sample_sg()),
        ]
    );
    assert_eq!(h.engine.joined().count(), 0);
    assert_eq!(h.engine.poll_timeout(), None, "every timer of the interface is gone");
}
