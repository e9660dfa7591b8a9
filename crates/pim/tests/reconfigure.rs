//! `Engine::reconfigure` (pimwatch's SIGHUP): new Hello options announced at once, Hello_Period
//! rescheduled, narrowed SSM ranges drop what they no longer cover, neighbours and GenIDs kept,
//! a bad configuration refused; with injected time.

mod common;

use std::time::Duration;

use common::*;
use mcast_pim::{Config, DropReason, Event, GroupRange, PruneReason};

#[test]
fn new_hello_options_are_sent_at_once_and_keep_genid_and_neighbours() {
    let mut h = Harness::started();
    h.frr_up();
    let genid = h.engine.generation_id(IF1);
    let config = Config { dr_priority: 200, hello_holdtime: secs(90), ..config() };
    h.engine.reconfigure(config, h.now).unwrap();
    let sent = h.transmits();
    assert_eq!(sent.len(), 1, "one Hello with the new options at once");
    let hello = decode_hello(&sent[0]);
    assert_eq!(hello.dr_priority(), Some(200));
    assert_eq!(hello.holdtime(), Some(90));
    assert_eq!(h.engine.generation_id(IF1), genid, "the GenID stays: neighbours must not reset");
    assert_eq!(h.engine.neighbors(IF1), vec![frr()]);
    // Priority 200 beats FRR's default 1: we are DR again (we were already, by address).
    assert_eq!(h.engine.dr(IF1), Some(us()));
    assert_eq!(h.engine.config().dr_priority, 200);
}

#[test]
fn an_unchanged_configuration_sends_nothing() {
    let mut h = Harness::started();
    h.frr_up();
    let next = h.engine.poll_timeout();
    h.engine.reconfigure(config(), h.now).unwrap();
    assert!(h.transmits().is_empty());
    assert!(h.events().is_empty());
    assert_eq!(h.engine.poll_timeout(), next, "the periodic Hello keeps its time");
}

#[test]
fn a_new_hello_period_reschedules_the_next_hello_from_now() {
    let mut h = Harness::new(Config { hello_jitter: Duration::ZERO, ..config() });
    h.add_if1();
    h.advance(ms(100));
    h.drain();
    h.advance(secs(5));
    let config = Config { hello_period: secs(10), hello_jitter: Duration::ZERO, ..config() };
    h.engine.reconfigure(config, h.now).unwrap();
    assert!(h.transmits().is_empty(), "only the period changed: no Hello now");
    assert_eq!(h.engine.poll_timeout(), Some(h.now + secs(10)));
    h.advance(secs(10));
    assert_eq!(h.transmits().len(), 1);
    assert_eq!(h.engine.poll_timeout(), Some(h.now + secs(10)));
}

#[test]
fn narrowed_ssm_ranges_drop_the_groups_they_no_longer_cover() {
    let mut h = Harness::new(Config { ssm_ranges: vec!["232.0.0.0/7".parse::<GroupRange>().unwrap()], ..config() });
    h.add_if1();
    h.advance(ms(100));
    h.frr_up();
    let inside = sg("198.51.100.10", "232.1.1.1");
    let outside = sg("198.51.100.10", "233.252.0.1");
    h.recv(IF1, frr(), &join_one(us(), 210, inside)).unwrap();
    h.recv(IF1, frr(), &join_one(us(), 210, outside)).unwrap();
    h.drain();
    assert_eq!(h.engine.joined().count(), 2);

    h.engine.reconfigure(config(), h.now).unwrap(); // back to 232.0.0.0/8 (and ff3x::/32)
    assert_eq!(
        h.events(),
        vec![
            Event::InterfacePrune { interface: IF1, sg: outside, reason: PruneReason::Reconfigured },
            Event::Left(outside),
        ]
    );
    assert_eq!(h.engine.joined().collect::<Vec<_>>(), vec![inside]);
    // A new Join for it is refused now.
    h.recv(IF1, frr(), &join_one(us(), 210, outside)).unwrap();
    assert!(matches!(h.events()[..], [Event::EntryIgnored { reason: DropReason::NotSsm, .. }]));
    assert_eq!(h.engine.counters().dropped(DropReason::NotSsm), 1);
    assert!(!h.engine.is_joined(&outside));
    // Its Expiry Timer went with it: past the old holdtime only `inside` (and FRR) expire.
    h.advance(secs(211));
    let events = h.events();
    assert!(events.contains(&Event::Left(inside)), "{events:?}");
    let about_outside = |e: &Event| match e {
        Event::InterfacePrune { sg, .. } | Event::Left(sg) | Event::Joined(sg) => *sg == outside,
        _ => false,
    };
    assert!(!events.iter().any(about_outside), "{events:?}");
}

#[test]
fn an_invalid_configuration_is_refused_and_the_running_one_stays() {
    let mut h = Harness::started();
    h.frr_up();
    let bad = Config { hello_period: secs(60), hello_holdtime: secs(30), ..config() };
    assert!(h.engine.reconfigure(bad, h.now).is_err());
    assert_eq!(h.engine.config(), &config());
    assert!(h.transmits().is_empty());
}
