//! Join/Prune acceptance and the downstream (S,G) state machine (RFC 7761 §4.5, §4.5.2, §4.8),
//! restore, limits; with injected time.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use mcast_pim::{Config, DownstreamState, DropReason, Event, GroupRange, PruneReason, SourceGroup};
use mcast_wire::pim::{EncodedSource, JoinPruneGroup, MessageType};

fn joined(h: &Harness) -> Vec<SourceGroup> {
    h.engine.joined().collect()
}

/// IF1 with FRR as neighbour and FRR's Join for the sample channel accepted.
fn joined_harness() -> Harness {
    let mut h = Harness::started();
    h.frr_up();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    h.drain();
    h
}

/// IF1 with two neighbours (FRR and another router), both advertising LAN Prune Delay
/// 500 ms / 2500 ms, so J/P_Override_Interval is 3 s.
fn two_neighbor_harness() -> Harness {
    let mut h = Harness::started();
    h.frr_up();
    h.recv(IF1, other_router(), &std_hello(105, 77, Some((500, 2500)))).unwrap();
    h.advance(ms(100));
    h.drain();
    assert_eq!(h.engine.jp_override_interval(IF1), Some(ms(3000)));
    h
}

#[test]
fn frr_join_is_accepted_with_events_and_expiry_timer() {
    let mut h = Harness::started();
    h.frr_up();
    let t = h.now;
    assert_eq!(h.recv(IF1, frr(), &bytes(FRR_JOIN)), Ok(()));
    let sg = sample_sg();
    assert_eq!(h.events(), vec![Event::InterfaceJoin { interface: IF1, sg, restored: false }, Event::Joined(sg)]);
    assert_eq!(joined(&h), vec![sg]);
    assert_eq!(h.engine.oifs(&sg), vec![IF1]);
    let ds = h.engine.downstream(IF1, &sg).unwrap();
    assert_eq!(ds.state, DownstreamState::Join);
    assert_eq!(ds.expires, Some(t + secs(210)), "ET = the message's HoldTime");
    assert!(!ds.restored);
    assert_eq!(h.engine.counters().received(MessageType::JoinPrune), 1);
    assert_eq!(h.engine.counters().join_entries, 1);
}

#[test]
fn join_from_a_non_neighbor_is_dropped() {
    let mut h = Harness::started();
    assert_eq!(h.recv(IF1, frr(), &bytes(FRR_JOIN)), Err(DropReason::NotNeighbor));
    assert!(h.events().is_empty());
    assert_eq!(joined(&h), vec![]);
    // A neighbour on another interface does not count.
    h.add_if2();
    h.recv(IF2, frr(), &frr_hello(105, 1)).unwrap();
    assert_eq!(h.recv(IF1, frr(), &bytes(FRR_JOIN)), Err(DropReason::NotNeighbor));
    // Nor does an expired neighbour (FRR keeps sending to us; we need its Hellos).
    h.recv(IF1, frr(), &std_hello(10, 1, None)).unwrap();
    h.advance(secs(10));
    assert_eq!(h.recv(IF1, frr(), &bytes(FRR_JOIN)), Err(DropReason::NotNeighbor));
    assert_eq!(h.engine.counters().dropped(DropReason::NotNeighbor), 3);
    assert_eq!(joined(&h), vec![]);
}

#[test]
fn join_with_a_wrong_upstream_neighbor_is_dropped() {
    let mut h = Harness::started();
    h.frr_up();
    assert_eq!(h.recv(IF1, frr(), &join_one(other_router(), 210, sample_sg())), Err(DropReason::WrongUpstream));
    // Our address on another interface is not our address on this one.
    h.add_if2();
    assert_eq!(h.recv(IF1, frr(), &join_one(us2(), 210, sample_sg())), Err(DropReason::WrongUpstream));
    assert_eq!(joined(&h), vec![]);
    assert_eq!(h.engine.counters().dropped(DropReason::WrongUpstream), 2);
}

#[test]
fn join_to_a_secondary_address_is_accepted() {
    let mut h = Harness::new(config());
    h.engine.add_interface(IF1, "ing0", us(), vec![ip("10.9.1.200")], h.now).unwrap();
    h.frr_up();
    assert_eq!(h.recv(IF1, frr(), &join_one(ip("10.9.1.200"), 210, sample_sg())), Ok(()));
    assert_eq!(joined(&h), vec![sample_sg()]);
}

#[test]
fn join_with_a_bad_checksum_is_dropped() {
    let mut h = Harness::started();
    h.frr_up();
    let mut bad = bytes(FRR_JOIN);
    bad[3] ^= 0x01;
    assert_eq!(h.recv(IF1, frr(), &bad), Err(DropReason::BadChecksum));
    let mut changed = bytes(FRR_JOIN);
    changed[33] ^= 0x01; // the source address, checksum unchanged
    assert_eq!(h.recv(IF1, frr(), &changed), Err(DropReason::BadChecksum));
    assert_eq!(joined(&h), vec![]);
    assert_eq!(h.engine.counters().dropped(DropReason::BadChecksum), 2);
}

#[test]
fn truncated_join_is_malformed() {
    let mut h = Harness::started();
    h.frr_up();
    let mut cut = bytes(FRR_JOIN);
    cut.truncate(30);
    let sum = mcast_wire::checksum::finish(mcast_wire::checksum::data(&{
        let mut c = cut.clone();
        c[2..4].copy_from_slice(&[0, 0]);
        c
    }));
    cut[2..4].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(h.recv(IF1, frr(), &cut), Err(DropReason::Malformed));
}

#[test]
fn duplicate_joins_are_idempotent() {
    let mut h = Harness::started();
    h.frr_up();
    // FRR sends two identical Joins back to back (lab-notes.md §5.2).
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    let events = h.events();
    assert_eq!(events.len(), 2, "one InterfaceJoin and one Joined: {events:?}");
    assert_eq!(joined(&h), vec![sample_sg()]);
}

#[test]
fn refresh_extends_the_expiry_timer_by_the_max_rule() {
    let mut h = joined_harness();
    let t0 = h.now;
    let sg = sample_sg();
    // FRR's periodic refresh after t_periodic = 60 s.
    h.advance(secs(60));
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    assert_eq!(h.engine.downstream(IF1, &sg).unwrap().expires, Some(t0 + secs(270)));
    // A Join with a shorter HoldTime does not shorten the ET: max(current, HoldTime).
    h.advance(secs(10));
    h.recv(IF1, frr(), &join_one(us(), 17, sg)).unwrap();
    assert_eq!(h.engine.downstream(IF1, &sg).unwrap().expires, Some(t0 + secs(270)));
    // A longer one extends it.
    h.recv(IF1, frr(), &join_one(us(), 1000, sg)).unwrap();
    assert_eq!(h.engine.downstream(IF1, &sg).unwrap().expires, Some(h.now + secs(1000)));
    assert!(h.events().is_empty(), "refreshes produce no events");
}

#[test]
fn expiry_timer_fires_exactly_at_the_holdtime() {
    let mut h = joined_harness();
    h.recv(IF1, frr(), &frr_hello(0xffff, 0x4d114bd5)).unwrap(); // keep FRR a neighbour throughout
    let sg = sample_sg();
    let expires = h.engine.downstream(IF1, &sg).unwrap().expires.unwrap();
    h.advance_to(expires - Duration::from_nanos(1));
    assert!(h.engine.downstream(IF1, &sg).is_some(), "not before");
    assert!(h.events().is_empty());
    h.advance_to(expires);
    assert!(h.engine.downstream(IF1, &sg).is_none(), "at the holdtime");
    assert_eq!(
        h.events(),
        vec![Event::InterfacePrune { interface: IF1, sg, reason: PruneReason::Expired }, Event::Left(sg)]
    );
    assert_eq!(joined(&h), vec![]);
    // Fires late too: a driver that wakes up after the deadline still gets it.
    let mut h = joined_harness();
    let expires = h.engine.downstream(IF1, &sg).unwrap().expires.unwrap();
    h.advance_to(expires + secs(5));
    assert_eq!(joined(&h), vec![]);
}

#[test]
fn holdtime_ffff_join_holds_until_pruned() {
    let mut h = Harness::started();
    h.frr_up();
    let sg = sample_sg();
    h.recv(IF1, frr(), &join_one(us(), 0xffff, sg)).unwrap();
    assert_eq!(h.engine.downstream(IF1, &sg).unwrap().expires, None);
    // A finite refresh does not shorten "infinite" (max rule).
    h.recv(IF1, frr(), &join_one(us(), 210, sg)).unwrap();
    assert_eq!(h.engine.downstream(IF1, &sg).unwrap().expires, None);
    h.advance(Duration::from_secs(30 * 24 * 3600));
    h.recv(IF1, frr(), &frr_hello(105, 0x4d114bd5)).unwrap();
    assert_eq!(joined(&h), vec![sg]);
    h.recv(IF1, frr(), &prune_one(us(), 210, sg)).unwrap();
    assert_eq!(joined(&h), vec![]);
}

#[test]
fn join_with_zero_holdtime_creates_nothing() {
    let mut h = Harness::started();
    h.frr_up();
    let sg = sample_sg();
    assert_eq!(h.recv(IF1, frr(), &join_one(us(), 0, sg)), Ok(()));
    assert_eq!(joined(&h), vec![]);
    assert!(matches!(h.events()[..], [Event::EntryIgnored { reason: DropReason::ZeroHoldtime, .. }]));
    // On existing state it is a no-op refresh (max rule).
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    let before = h.engine.downstream(IF1, &sg).unwrap().expires;
    h.recv(IF1, frr(), &join_one(us(), 0, sg)).unwrap();
    assert_eq!(h.engine.downstream(IF1, &sg).unwrap().expires, before);
}

#[test]
fn prune_with_one_neighbor_removes_at_once() {
    let mut h = joined_harness();
    let sg = sample_sg();
    assert_eq!(h.recv(IF1, frr(), &bytes(FRR_PRUNE)), Ok(()));
    assert_eq!(
        h.events(),
        vec![Event::InterfacePrune { interface: IF1, sg, reason: PruneReason::Pruned }, Event::Left(sg)]
    );
    assert_eq!(joined(&h), vec![]);
    assert!(h.engine.oifs(&sg).is_empty());
    // No PruneEcho with a single neighbour.
    h.advance(secs(1));
    assert!(h.transmits().is_empty());
    // A Prune in NoInfo does nothing.
    assert_eq!(h.recv(IF1, frr(), &bytes(FRR_PRUNE)), Ok(()));
    assert!(h.events().is_empty());
    assert_eq!(h.engine.counters().prune_entries, 2);
}

#[test]
fn prune_with_two_neighbors_waits_and_a_join_overrides() {
    let mut h = two_neighbor_harness();
    let sg = sample_sg();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    h.drain();
    let pruned_at = h.now;
    h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
    let until = pruned_at + ms(3000);
    assert_eq!(h.events(), vec![Event::InterfacePrunePending { interface: IF1, sg, until }]);
    let ds = h.engine.downstream(IF1, &sg).unwrap();
    assert_eq!(ds.state, DownstreamState::PrunePending);
    assert_eq!(ds.prune_pending_until, Some(until));
    // Still forwarding during Prune-Pending.
    assert_eq!(joined(&h), vec![sg]);
    assert_eq!(h.engine.oifs(&sg), vec![IF1]);
    // A second Prune does not restart the PPT.
    h.advance(ms(1000));
    h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
    assert_eq!(h.engine.downstream(IF1, &sg).unwrap().prune_pending_until, Some(until));
    // The other router overrides with a Join: back to Join, PPT cancelled, ET = max.
    h.advance(ms(1000));
    h.recv(IF1, other_router(), &bytes(FRR_JOIN)).unwrap();
    assert_eq!(h.events(), vec![Event::InterfacePruneOverridden { interface: IF1, sg }]);
    let ds = h.engine.downstream(IF1, &sg).unwrap();
    assert_eq!(ds.state, DownstreamState::Join);
    assert_eq!(ds.prune_pending_until, None);
    assert_eq!(ds.expires, Some(h.now + secs(210)));
    h.advance_to(until + secs(1));
    assert_eq!(joined(&h), vec![sg]);
    assert!(h.events().is_empty());
    assert!(h.transmits().iter().all(|t| msg_type(t) == MessageType::Hello));
}

#[test]
fn prune_pending_timer_expiry_removes_and_sends_a_prune_echo() {
    let mut h = two_neighbor_harness();
    let sg = sample_sg();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
    h.drain();
    let until = h.now + ms(3000);
    h.advance_to(until - ms(1));
    assert_eq!(joined(&h), vec![sg]);
    assert!(h.transmits().is_empty());
    h.advance_to(until);
    assert_eq!(
        h.events(),
        vec![Event::InterfacePrune { interface: IF1, sg, reason: PruneReason::Pruned }, Event::Left(sg)]
    );
    let tx = h.transmits();
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].dst, all_pim_v4());
    assert_eq!(tx[0].src, us());
    // The PruneEcho: a Prune(S,G) with our own address as Upstream Neighbor (§4.5.2).
    let echo = decode_jp(&tx[0]);
    assert_eq!(echo.upstream_neighbor.0, us());
    assert_eq!(echo.holdtime, 210);
    assert_eq!(echo.groups.len(), 1);
    assert_eq!(echo.groups[0].group.addr, sg.group);
    assert_eq!(echo.groups[0].group.mask_len, 32);
    assert!(echo.groups[0].joins.is_empty());
    assert_eq!(echo.groups[0].prunes, vec![EncodedSource::source(sg.source)]);
    assert_eq!(h.engine.counters().sent(MessageType::JoinPrune), 1);
    // Our own PruneEcho looped back is ignored.
    assert_eq!(h.recv(IF1, us(), &tx[0].payload), Err(DropReason::OwnPacket));
}

#[test]
fn prune_echoes_are_batched_per_interface() {
    let mut h = two_neighbor_harness();
    let sgs: Vec<SourceGroup> = (1..=5).map(|i| sg(&format!("23.212.185.{i}"), "232.1.1.1")).collect();
    let mut group = JoinPruneGroup::new(ip("232.1.1.1"));
    let mut prune = JoinPruneGroup::new(ip("232.1.1.1"));
    for s in &sgs {
        group = group.with_join(EncodedSource::source(s.source));
        prune = prune.with_prune(EncodedSource::source(s.source));
    }
    h.recv(IF1, frr(), &jp(us(), 210, vec![group])).unwrap();
    h.recv(IF1, frr(), &jp(us(), 210, vec![prune])).unwrap();
    h.advance(ms(3000));
    let tx = h.transmits();
    assert_eq!(tx.len(), 1, "one PruneEcho for all five");
    let echo = decode_jp(&tx[0]);
    let pruned: BTreeSet<_> = echo.groups[0].prunes.iter().map(|s| SourceGroup::new(s.addr, ip("232.1.1.1"))).collect();
    assert_eq!(pruned, sgs.iter().copied().collect());
}

#[test]
fn no_prune_echo_if_only_one_neighbor_is_left() {
    let mut h = two_neighbor_harness();
    let sg = sample_sg();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
    h.recv(IF1, other_router(), &std_hello(0, 77, None)).unwrap(); // goodbye
    h.drain();
    h.advance(ms(3000));
    assert_eq!(joined(&h), vec![]);
    assert!(h.transmits().is_empty());
    assert!(h.events().contains(&Event::InterfacePrune { interface: IF1, sg, reason: PruneReason::Pruned }));
}

#[test]
fn expiry_during_prune_pending_goes_to_noinfo_without_echo() {
    let mut h = two_neighbor_harness();
    let sg = sample_sg();
    h.recv(IF1, frr(), &join_one(us(), 2, sg)).unwrap();
    h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
    h.drain();
    h.advance(ms(2000));
    assert_eq!(
        h.events(),
        vec![Event::InterfacePrune { interface: IF1, sg, reason: PruneReason::Expired }, Event::Left(sg)]
    );
    h.advance(ms(2000));
    assert!(h.transmits().is_empty());
    assert!(h.events().is_empty());
}

#[test]
fn prune_echo_is_preceded_by_an_owed_hello() {
    // RFC 7761 §4.3.1: a Join/Prune to a new neighbour must not go out before our Hello. With
    // the RFC's 5 s Triggered_Hello_Delay and a 300 ms J/P_Override_Interval, the PruneEcho
    // can come due first; the engine then sends the Hello at once, first.
    let config =
        Config { triggered_hello_delay: secs(5), propagation_delay: ms(100), override_interval: ms(200), ..config() };
    let mut owed = 0;
    for seed in 0..20 {
        let mut h = Harness::with_seed(config.clone(), seed);
        h.add_if1();
        h.recv(IF1, frr(), &std_hello(105, 1, Some((100, 200)))).unwrap();
        h.recv(IF1, other_router(), &std_hello(105, 2, Some((100, 200)))).unwrap();
        h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
        h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
        let echo_due = h.now + ms(300);
        let mut sent = Vec::new();
        let end = h.now + secs(6);
        while let Some(t) = h.engine.poll_timeout().filter(|t| *t <= end) {
            h.advance_to(t);
            sent.extend(h.transmits().iter().map(|tx| (t, msg_type(tx))));
        }
        let echo = sent.iter().position(|(_, t)| *t == MessageType::JoinPrune).expect("a PruneEcho");
        assert_eq!(sent[echo].0, echo_due, "seed {seed}");
        let hellos_before: Vec<_> = sent[..echo].iter().filter(|(_, t)| *t == MessageType::Hello).collect();
        assert!(!hellos_before.is_empty(), "seed {seed}: {sent:?}");
        if hellos_before.iter().all(|(at, _)| *at == echo_due) {
            owed += 1;
            // The owed Hello replaced the pending first and triggered ones: no other Hello
            // within the 5 s Triggered_Hello_Delay.
            assert_eq!(sent.iter().filter(|(_, t)| *t == MessageType::Hello).count(), 1, "seed {seed}: {sent:?}");
        }
    }
    assert!(owed >= 10, "the owed-Hello path ran for {owed} of 20 seeds");
}

#[test]
fn two_interfaces_joined_one_prunes_stays_joined() {
    let mut h = Harness::started();
    h.add_if2();
    h.frr_up();
    h.recv(IF2, frr2(), &frr_hello(105, 2)).unwrap();
    let sg = sample_sg();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    h.recv(IF2, frr2(), &join_one(us2(), 210, sg)).unwrap();
    let events = h.events();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Joined(_))).count(), 1);
    assert_eq!(events.iter().filter(|e| matches!(e, Event::InterfaceJoin { .. })).count(), 2);
    assert_eq!(h.engine.oifs(&sg), vec![IF1, IF2]);
    h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
    assert_eq!(h.events(), vec![Event::InterfacePrune { interface: IF1, sg, reason: PruneReason::Pruned }]);
    assert_eq!(joined(&h), vec![sg]);
    assert_eq!(h.engine.oifs(&sg), vec![IF2]);
    h.recv(IF2, frr2(), &prune_one(us2(), 210, sg)).unwrap();
    assert_eq!(
        h.events(),
        vec![Event::InterfacePrune { interface: IF2, sg, reason: PruneReason::Pruned }, Event::Left(sg)]
    );
}

#[test]
fn star_g_and_sg_rpt_entries_are_ignored_while_the_rest_is_processed() {
    let mut h = Harness::started();
    h.frr_up();
    let g1 = ip("232.1.1.1");
    let g2 = ip("232.1.1.2");
    let not_sparse = EncodedSource { sparse: false, ..EncodedSource::source(ip("23.212.185.9")) };
    let msg = jp(
        us(),
        210,
        vec![
            JoinPruneGroup::new(g1)
                .with_join(EncodedSource::wildcard(ip("10.0.0.1"))) // (*,G)
                .with_join(EncodedSource::source_rpt(ip("23.212.185.1"))) // (S,G,rpt)
                .with_join(EncodedSource::source(ip("23.212.185.2"))) // (S,G)
                .with_join(not_sparse)
                .with_prune(EncodedSource::source_rpt(ip("23.212.185.3"))),
            JoinPruneGroup::new(g2).with_join(EncodedSource::source(ip("23.212.185.4"))),
        ],
    );
    assert_eq!(h.recv(IF1, frr(), &msg), Ok(()));
    assert_eq!(joined(&h), vec![sg("23.212.185.2", "232.1.1.1"), sg("23.212.185.4", "232.1.1.2")]);
    let ignored: Vec<(std::net::IpAddr, bool, DropReason)> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::EntryIgnored { interface, from, group, source, join, reason } => {
                assert_eq!((interface, from, group), (IF1, frr(), g1));
                Some((source, join, reason))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        ignored,
        vec![
            (ip("10.0.0.1"), true, DropReason::WildcardOrRpt),
            (ip("23.212.185.1"), true, DropReason::WildcardOrRpt),
            (ip("23.212.185.9"), true, DropReason::NotSparse),
            (ip("23.212.185.3"), false, DropReason::WildcardOrRpt),
        ]
    );
    assert_eq!(h.engine.counters().dropped(DropReason::WildcardOrRpt), 3);
    assert_eq!(h.engine.counters().dropped(DropReason::NotSparse), 1);
    assert_eq!(h.engine.counters().join_entries, 2);
}

#[test]
fn mixed_joins_and_prunes_in_one_message() {
    let mut h = joined_harness();
    let a = sample_sg();
    let b = sg("23.212.185.5", "232.1.1.1");
    let c = sg("23.212.185.6", "232.1.1.7");
    let msg = jp(
        us(),
        210,
        vec![
            JoinPruneGroup::new(a.group)
                .with_join(EncodedSource::source(b.source))
                .with_prune(EncodedSource::source(a.source)),
            JoinPruneGroup::new(c.group).with_join(EncodedSource::source(c.source)),
        ],
    );
    h.recv(IF1, frr(), &msg).unwrap();
    assert_eq!(joined(&h), vec![b, c]);
}

#[test]
fn non_ssm_groups_are_ignored() {
    let mut h = Harness::started();
    h.frr_up();
    let glop = sg("23.212.185.4", "233.252.0.1");
    assert_eq!(h.recv(IF1, frr(), &join_one(us(), 210, glop)), Ok(()));
    assert_eq!(joined(&h), vec![]);
    assert!(matches!(h.events()[..], [Event::EntryIgnored { reason: DropReason::NotSsm, .. }]));
    assert_eq!(h.engine.counters().dropped(DropReason::NotSsm), 1);
}

#[test]
fn widened_ssm_ranges_are_accepted() {
    let mut h = Harness::new(Config { ssm_ranges: vec!["232.0.0.0/7".parse().unwrap()], ..config() });
    h.add_if1();
    h.frr_up();
    h.recv(IF1, frr(), &join_one(us(), 210, sg("23.212.185.4", "233.252.0.1"))).unwrap();
    h.recv(IF1, frr(), &join_one(us(), 210, sg("23.212.185.4", "234.0.0.1"))).unwrap();
    assert_eq!(joined(&h), vec![sg("23.212.185.4", "233.252.0.1")]);

    // The original's "every group is SSM" hack as configuration.
    let mut h = Harness::new(Config { ssm_ranges: vec![GroupRange::ipv4_all()], ..config() });
    h.add_if1();
    h.frr_up();
    h.recv(IF1, frr(), &join_one(us(), 210, sg("23.212.185.4", "239.1.2.3"))).unwrap();
    // Link-local groups are never forwarded, whatever the range.
    h.recv(IF1, frr(), &join_one(us(), 210, sg("23.212.185.4", "224.0.0.251"))).unwrap();
    assert_eq!(joined(&h), vec![sg("23.212.185.4", "239.1.2.3")]);
    assert_eq!(h.engine.counters().dropped(DropReason::BadGroup), 1);
}

#[test]
fn bad_groups_and_sources_are_ignored_per_entry() {
    let mut h = Harness::started();
    h.frr_up();
    let range_group =
        mcast_wire::pim::EncodedGroup { mask_len: 24, ..mcast_wire::pim::EncodedGroup::new(ip("232.1.1.0")) };
    let bidir = mcast_wire::pim::EncodedGroup { bidir: true, ..mcast_wire::pim::EncodedGroup::new(ip("232.1.1.5")) };
    let msg = jp(
        us(),
        210,
        vec![
            JoinPruneGroup {
                group: range_group,
                joins: vec![EncodedSource::source(ip("23.212.185.4"))],
                prunes: vec![],
            },
            JoinPruneGroup { group: bidir, joins: vec![EncodedSource::source(ip("23.212.185.4"))], prunes: vec![] },
            JoinPruneGroup::new(ip("ff3e::1")).with_join(EncodedSource::source(ip("2001:db8::1"))),
            JoinPruneGroup::new(ip("232.1.1.1"))
                .with_join(EncodedSource::source(ip("0.0.0.0")))
                .with_join(EncodedSource::source(ip("232.9.9.9")))
                .with_join(EncodedSource::source(ip("127.0.0.1")))
                .with_join(EncodedSource::source(ip("2001:db8::1")))
                .with_join(EncodedSource::source(ip("23.212.185.4"))),
        ],
    );
    assert_eq!(h.recv(IF1, frr(), &msg), Ok(()));
    assert_eq!(joined(&h), vec![sample_sg()]);
    assert_eq!(h.engine.counters().dropped(DropReason::BadGroup), 3);
    assert_eq!(h.engine.counters().dropped(DropReason::BadSource), 4);
}

#[test]
fn bad_source_mask_drops_the_whole_message() {
    // RFC 7761 §4.9.1: "A router SHOULD ignore any messages received with any other mask length."
    let mut h = Harness::started();
    h.frr_up();
    let masked = EncodedSource { mask_len: 24, ..EncodedSource::source(ip("23.212.185.0")) };
    let msg = jp(
        us(),
        210,
        vec![
            JoinPruneGroup::new(ip("232.1.1.1")).with_join(EncodedSource::source(ip("23.212.185.4"))).with_join(masked),
        ],
    );
    assert_eq!(h.recv(IF1, frr(), &msg), Err(DropReason::BadSourceMask));
    assert_eq!(joined(&h), vec![]);
}

#[test]
fn ipv6_join_with_link_local_upstream() {
    let mut h = Harness::new(config());
    h.engine.add_interface(IF6, "ing0", ip("fe80::2"), vec![ip("2001:db8:9::2")], h.now).unwrap();
    let hello6 = mcast_wire::pim::Repr::hello(vec![
        mcast_wire::pim::HelloOption::Holdtime(105),
        mcast_wire::pim::HelloOption::GenerationId(1),
    ])
    .to_bytes(mcast_wire::pim::ChecksumContext::Unchecked)
    .unwrap();
    let nbr = ip("fe80::1");
    h.engine.handle_packet(IF6, nbr, all_pim_v6(), &hello6, h.now).unwrap();
    let a = sg("2001:db8::5", "ff3e::8000:1");
    let b = sg("2001:db8::6", "ff35::8000:2");
    let join_a = jp6(ip("fe80::2"), 210, vec![JoinPruneGroup::new(a.group).with_join(EncodedSource::source(a.source))]);
    assert_eq!(h.engine.handle_packet(IF6, nbr, all_pim_v6(), &join_a, h.now), Ok(()));
    // The global address from our Address List works as Upstream Neighbor too.
    let join_b =
        jp6(ip("2001:db8:9::2"), 210, vec![JoinPruneGroup::new(b.group).with_join(EncodedSource::source(b.source))]);
    assert_eq!(h.engine.handle_packet(IF6, nbr, all_pim_v6(), &join_b, h.now), Ok(()));
    assert_eq!(joined(&h), vec![a, b]);
    assert_eq!(h.engine.oifs(&a), vec![IF6]);
    // Outside ff3x::/32, or link-local scope: ignored.
    let bad = jp6(
        ip("fe80::2"),
        210,
        vec![
            JoinPruneGroup::new(ip("ff1e::1")).with_join(EncodedSource::source(a.source)),
            JoinPruneGroup::new(ip("ff32::1")).with_join(EncodedSource::source(a.source)),
        ],
    );
    h.engine.handle_packet(IF6, nbr, all_pim_v6(), &bad, h.now).unwrap();
    assert_eq!(joined(&h), vec![a, b]);
    assert_eq!(h.engine.counters().dropped(DropReason::NotSsm), 1);
    assert_eq!(h.engine.counters().dropped(DropReason::BadGroup), 1);
    // An IPv6 prune with one neighbour: immediate.
    let prune_a =
        jp6(ip("fe80::2"), 210, vec![JoinPruneGroup::new(a.group).with_prune(EncodedSource::source(a.source))]);
    h.engine.handle_packet(IF6, nbr, all_pim_v6(), &prune_a, h.now).unwrap();
    assert_eq!(joined(&h), vec![b]);
}

#[test]
fn ipv4_and_ipv6_instances_on_one_link_are_separate() {
    let mut h = Harness::started();
    h.engine.add_interface(IF6, "ing0", ip("fe80::2"), vec![], h.now).unwrap();
    h.frr_up();
    // FRR is a neighbour of the IPv4 instance only.
    let join6 = jp6(
        ip("fe80::2"),
        210,
        vec![JoinPruneGroup::new(ip("ff3e::1")).with_join(EncodedSource::source(ip("2001:db8::5")))],
    );
    assert_eq!(h.engine.handle_packet(IF6, ip("fe80::1"), all_pim_v6(), &join6, h.now), Err(DropReason::NotNeighbor));
}

#[test]
fn max_joined_sgs_is_enforced() {
    let mut h = Harness::new(Config { max_joined_sgs: 3, ..config() });
    h.add_if1();
    h.add_if2();
    h.frr_up();
    h.recv(IF2, frr2(), &frr_hello(105, 2)).unwrap();
    let sgs: Vec<SourceGroup> = (1..=4).map(|i| sg(&format!("23.212.185.{i}"), "232.1.1.1")).collect();
    let mut group = JoinPruneGroup::new(ip("232.1.1.1"));
    for s in &sgs {
        group = group.with_join(EncodedSource::source(s.source));
    }
    h.recv(IF1, frr(), &jp(us(), 210, vec![group])).unwrap();
    assert_eq!(joined(&h), sgs[..3].to_vec());
    assert_eq!(h.engine.counters().dropped(DropReason::TooManyStates), 1);
    // The same (S,G)s on another interface are no new memory: allowed. The fourth is not.
    for s in &sgs {
        h.recv(IF2, frr2(), &join_one(us2(), 210, *s)).unwrap();
    }
    assert_eq!(h.engine.oifs(&sgs[0]), vec![IF1, IF2]);
    assert_eq!(joined(&h).len(), 3);
    assert_eq!(h.engine.counters().dropped(DropReason::TooManyStates), 2);
    // Once one leaves, there is room again.
    h.recv(IF1, frr(), &prune_one(us(), 210, sgs[0])).unwrap();
    h.recv(IF2, frr2(), &prune_one(us2(), 210, sgs[0])).unwrap();
    h.recv(IF1, frr(), &join_one(us(), 210, sgs[3])).unwrap();
    assert_eq!(joined(&h), sgs[1..].to_vec());
}

#[test]
fn restore_holds_entries_for_the_holdtime() {
    let mut h = Harness::started();
    h.add_if2();
    h.engine.add_interface(IF6, "ing0", ip("fe80::2"), vec![], h.now).unwrap();
    h.drain();
    let a = sample_sg();
    let b = sg("23.212.185.5", "232.1.1.1");
    let v6 = sg("2001:db8::5", "ff3e::8000:1");
    let bad = sg("23.212.185.5", "239.1.1.1"); // not SSM any more
    let start = h.now;
    assert_eq!(h.engine.restore([a, b, v6, bad, a], secs(210), h.now), 3);
    let events = h.events();
    assert!(events.contains(&Event::InterfaceJoin { interface: IF1, sg: a, restored: true }));
    assert!(events.contains(&Event::InterfaceJoin { interface: IF2, sg: a, restored: true }));
    assert!(events.contains(&Event::InterfaceJoin { interface: IF6, sg: v6, restored: true }));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Joined(_))).count(), 3);
    assert_eq!(joined(&h), vec![a, b, v6]);
    assert_eq!(h.engine.oifs(&a), vec![IF1, IF2], "every interface of the family");
    assert_eq!(h.engine.oifs(&v6), vec![IF6]);
    let ds = h.engine.downstream(IF1, &a).unwrap();
    assert!(ds.restored);
    assert_eq!(ds.expires, Some(start + secs(210)));
    assert_eq!(h.engine.counters().dropped(DropReason::NotSsm), 1);
    // Held until the holdtime, then gone.
    h.advance_to(start + secs(210) - ms(1));
    assert_eq!(joined(&h).len(), 3);
    h.advance_to(start + secs(210));
    assert_eq!(joined(&h), vec![]);
    let events = h.events();
    assert!(events.contains(&Event::InterfacePrune { interface: IF1, sg: a, reason: PruneReason::RestoreExpired }));
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Left(_))).count(), 3);
}

#[test]
fn restore_entry_ends_on_a_prune() {
    let mut h = Harness::started();
    let a = sample_sg();
    h.engine.restore([a], secs(210), h.now);
    h.frr_up();
    h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
    assert_eq!(
        h.events(),
        vec![Event::InterfacePrune { interface: IF1, sg: a, reason: PruneReason::Pruned }, Event::Left(a)]
    );
    assert_eq!(joined(&h), vec![]);
}

#[test]
fn restore_entry_is_taken_over_by_a_join() {
    let mut h = Harness::started();
    let a = sample_sg();
    let start = h.now;
    h.engine.restore([a], secs(210), h.now);
    h.frr_up();
    h.drain();
    // FRR with fast timers: Join holdtime 17 s (lab-notes.md §6.3). It takes over, so the ET is
    // the Join's, not the restore's.
    h.advance(secs(5));
    h.recv(IF1, frr(), &join_one(us(), 17, a)).unwrap();
    assert_eq!(h.events(), vec![Event::RestoreConfirmed { interface: IF1, sg: a }]);
    let ds = h.engine.downstream(IF1, &a).unwrap();
    assert!(!ds.restored);
    assert_eq!(ds.expires, Some(h.now + secs(17)));
    assert_eq!(ds.since, start, "no gap: the state was never NoInfo");
    h.advance(secs(17));
    assert_eq!(
        h.events(),
        vec![Event::InterfacePrune { interface: IF1, sg: a, reason: PruneReason::Expired }, Event::Left(a)]
    );
}

#[test]
fn restore_is_per_interface_and_leaves_real_state_alone() {
    let mut h = Harness::started();
    h.add_if2();
    h.frr_up();
    h.recv(IF2, frr2(), &frr_hello(105, 2)).unwrap();
    let a = sample_sg();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    let real = h.engine.downstream(IF1, &a).unwrap();
    h.drain();
    assert_eq!(h.engine.restore([a], secs(100), h.now), 1);
    assert_eq!(h.engine.downstream(IF1, &a).unwrap(), real, "existing state untouched");
    assert!(h.engine.downstream(IF2, &a).unwrap().restored);
    assert_eq!(h.events(), vec![Event::InterfaceJoin { interface: IF2, sg: a, restored: true }]);
    // A Join on IF1 does not end IF2's hold; a Prune on IF2 does.
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    assert!(h.engine.downstream(IF2, &a).unwrap().restored);
    h.recv(IF2, frr2(), &prune_one(us2(), 210, a)).unwrap();
    assert!(h.engine.downstream(IF2, &a).is_none());
    assert_eq!(h.engine.oifs(&a), vec![IF1]);
    // Nothing to restore onto: nothing held.
    assert_eq!(h.engine.restore([sg("2001:db8::5", "ff3e::1")], secs(100), h.now), 0);
}

#[test]
fn restore_respects_max_joined_sgs() {
    let mut h = Harness::new(Config { max_joined_sgs: 2, ..config() });
    h.add_if1();
    let sgs: Vec<SourceGroup> = (1..=3).map(|i| sg(&format!("23.212.185.{i}"), "232.1.1.1")).collect();
    assert_eq!(h.engine.restore(sgs.clone(), secs(210), h.now), 2);
    assert_eq!(joined(&h), sgs[..2].to_vec());
    assert_eq!(h.engine.counters().dropped(DropReason::TooManyStates), 1);
}

#[test]
fn shutdown_keeps_the_joined_set() {
    let mut h = joined_harness();
    h.engine.shutdown(h.now);
    assert!(!h.events().iter().any(|e| matches!(e, Event::Left(_))));
    assert_eq!(joined(&h), vec![sample_sg()]);
}

#[test]
fn ten_thousand_sgs_expire_in_order_at_their_deadlines() {
    let mut h = Harness::started();
    h.recv(IF1, frr(), &frr_hello(0xffff, 1)).unwrap(); // a neighbour that never expires
    h.drain();
    let mut expected: Vec<(std::time::Instant, SourceGroup)> = Vec::new();
    // 100 messages of 100 (S,G)s, one every 250 ms, with HoldTimes spread over 100..300 s so
    // that expiries of different messages interleave.
    for m in 0..100u32 {
        let holdtime = 100 + (m * 37 % 200) as u16;
        let group = ip(&format!("232.0.{}.{}", m / 256, m % 256));
        let mut g = JoinPruneGroup::new(group);
        for s in 0..100u32 {
            let source = ip(&format!("10.{}.{}.1", m, s));
            g = g.with_join(EncodedSource::source(source));
            expected.push((h.now + secs(u64::from(holdtime)), SourceGroup::new(source, group)));
        }
        h.recv(IF1, frr(), &jp(us(), holdtime, vec![g])).unwrap();
        h.advance(ms(250));
    }
    assert_eq!(joined(&h).len(), 10_000);
    h.drain();
    expected.sort();
    let mut got: Vec<(std::time::Instant, SourceGroup)> = Vec::new();
    let mut last = h.now;
    while let Some(t) = h.engine.poll_timeout() {
        assert!(t >= last, "poll_timeout never goes back");
        last = t;
        if t > h.t0 + secs(400) {
            break; // only Hellos left
        }
        h.advance_to(t);
        for e in h.events() {
            match e {
                Event::InterfacePrune { sg, reason: PruneReason::Expired, .. } => got.push((t, sg)),
                Event::Left(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        h.transmits();
    }
    assert_eq!(got.len(), 10_000);
    assert_eq!(joined(&h).len(), 0);
    // Each fired exactly at its deadline, in deadline order.
    let deadlines: Vec<_> = got.iter().map(|(t, _)| *t).collect();
    assert!(deadlines.windows(2).all(|w| w[0] <= w[1]));
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, expected);
}

#[test]
fn status_reports_interfaces_neighbors_and_sgs() {
    let mut h = two_neighbor_harness();
    let a = sample_sg();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    h.advance(secs(10));
    let status = h.engine.status(h.now);
    assert_eq!(status.joined, vec![a]);
    assert_eq!(status.ssm_ranges, vec!["232.0.0.0/8".to_string(), "ff3x::/32".to_string()]);
    let i = &status.interfaces[0];
    assert_eq!(i.id, IF1);
    assert_eq!(i.name, "ing0");
    assert_eq!(i.address, us());
    assert_eq!(Some(i.genid), h.engine.generation_id(IF1));
    assert_eq!(i.dr, other_router());
    assert_eq!(i.jp_override_interval_secs, 3.0);
    assert_eq!(i.neighbors.len(), 2);
    assert_eq!(i.neighbors[0].address, frr());
    assert!(i.neighbors[0].expires_in_secs.unwrap() <= 105.0);
    assert_eq!(i.sgs.len(), 1);
    assert_eq!(i.sgs[0].expires_in_secs, Some(200.0));
    assert_eq!(i.sgs[0].state, DownstreamState::Join);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["joined"][0], "23.212.185.4,232.1.1.1");
    assert_eq!(json["interfaces"][0]["id"]["family"], "ipv4");
    assert_eq!(json["interfaces"][0]["sgs"][0]["state"], "join");
    assert_eq!(json["interfaces"][0]["sgs"][0]["sg"], "23.212.185.4,232.1.1.1");
    assert_eq!(json["counters"]["received"]["join-prune"], 1);
    assert_eq!(json["interfaces"][0]["neighbors"][0]["lan_prune_delay"]["override_interval_ms"], 2500);
}

#[test]
fn timers_are_cancelled_with_their_state() {
    // After a Prune removes the state, its ET must not fire later as a ghost.
    let mut h = joined_harness();
    h.recv(IF1, frr(), &frr_hello(0xffff, 0x4d114bd5)).unwrap();
    h.recv(IF1, frr(), &bytes(FRR_PRUNE)).unwrap();
    h.drain();
    h.recv(IF1, frr(), &bytes(FRR_JOIN)).unwrap();
    let expires = h.engine.downstream(IF1, &sample_sg()).unwrap().expires.unwrap();
    h.drain();
    h.advance(secs(209));
    assert!(h.events().is_empty());
    h.advance_to(expires);
    assert_eq!(h.events().len(), 2);
    // Only the periodic Hello and the neighbour's NLT remain.
    h.recv(IF1, frr(), &frr_hello(0, 0x4d114bd5)).unwrap();
    let next = h.engine.poll_timeout().unwrap();
    h.advance_to(next);
    assert!(h.transmits().iter().all(|t| msg_type(t) == MessageType::Hello));
}
