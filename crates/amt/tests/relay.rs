//! The relay state machine with injected time: every exchange, every nonce and MAC rule,
//! every timer, the SSM record semantics, the limits, and a property test that random input
//! never panics and never breaks the invariants.

mod relay_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mcast_amt::membership::{self, Family};
use mcast_amt::relay::{Config, ConfigError, DropReason, Event, GatewayDownReason, LeaveReason, Relay, datagram_sg};
use mcast_wire::amt::{MessageType, Repr};
use mcast_wire::igmp::RecordType;
use relay_common::*;

const S1: &str = "198.51.100.10,232.1.1.1";
const S2: &str = "198.51.100.11,232.1.1.1";
const S3: &str = "198.51.100.12,232.1.1.1";

#[test]
fn config_is_validated() {
    let now = Instant::now();
    let err = |c: Config| Relay::new(c, [0; 32], now).unwrap_err();
    assert_eq!(err(Config::default()), ConfigError::NoRelayAddress);
    assert_eq!(
        err(Config::new(vec!["232.1.1.1".parse().unwrap()])),
        ConfigError::BadRelayAddress("232.1.1.1".parse().unwrap())
    );
    let mut c = config();
    c.advertise = vec![("192.52.193.1".parse().unwrap(), "203.0.113.99".parse().unwrap())];
    assert!(matches!(err(c), ConfigError::AdvertisedNotRelay(_)));
    let mut c = config();
    c.robustness = 0;
    assert!(matches!(err(c), ConfigError::BadTiming(_)));
    let mut c = config();
    c.capacity = 0;
    assert!(matches!(err(c), ConfigError::ZeroLimit(_)));
    let mut c = config();
    c.query_interval = Duration::from_millis(500);
    assert!(matches!(err(c), ConfigError::BadTiming(_)));
    assert_eq!(config().membership_interval(), Duration::from_secs(21));
}

#[test]
fn discovery_is_answered_from_the_discovery_address_with_the_right_relay() {
    let now = Instant::now();
    let mut c = config();
    c.advertise = vec![("198.18.0.1".parse().unwrap(), "2001:db8::15".parse().unwrap())];
    let mut relay = relay_with(c, now);
    let cases = [
        // anycast IPv4 discovery address: the first IPv4 relay address
        (ANYCAST, GW, "203.0.113.15"),
        // sent to a relay address itself (RFC 8777 §3.3.3 check): that address
        (RELAY6, "[2001:db8::2]:40000", "2001:db8::15"),
        (RELAY, GW, "203.0.113.15"),
        // anycast IPv6: the first IPv6 relay address
        ("[2001:3::1]:2268", "[2001:db8::2]:40000", "2001:db8::15"),
        // explicit mapping: IPv4 discovery address advertising the IPv6 relay (RFC 8777 §2.2)
        ("198.18.0.1:2268", GW, "2001:db8::15"),
    ];
    for (i, (local, gw, relay_addr)) in cases.into_iter().enumerate() {
        let nonce = 0x1000 + i as u32;
        let payload = Repr::RelayDiscovery { nonce }.to_vec().unwrap();
        relay.handle_datagram(addr(local), addr(gw), &payload, now).unwrap();
        let t = one_transmit(&mut relay);
        // RFC 7450 §5.3.3.2 / protocols.md §A1: source = the Discovery's destination.
        assert_eq!(t.src, addr(local), "case {i}");
        assert_eq!(t.dst, addr(gw));
        assert_eq!(
            Repr::parse_bytes(&t.payload).unwrap(),
            Repr::RelayAdvertisement { nonce, relay: relay_addr.parse().unwrap() },
            "case {i}"
        );
    }
    assert_eq!(relay.counters().sent(MessageType::RelayAdvertisement), 5);
    assert_eq!(relay.gateway_count(), 0, "discovery creates no state");
}

#[test]
fn request_is_answered_with_a_query_echoing_the_nonce_with_g_fields() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let q = request(&mut relay, RELAY, GW, 0xdead_beef, false, now);
    assert_eq!(q.src, addr(RELAY), "the Query comes from the address the Request went to");
    assert_eq!(q.nonce, 0xdead_beef);
    assert!(!q.limit);
    assert_eq!(q.gateway, Some((40000, "192.0.2.2".parse().unwrap())), "G fields as seen");
    let info = membership::parse_query(&q.query).unwrap();
    assert_eq!(info.family, Family::V4);
    assert_eq!(info.query_interval, Duration::from_secs(10));
    assert_eq!(info.robustness, 2);
    assert_eq!(info.max_response, Duration::from_secs(1));

    // P = 1: an MLDv2 query, whatever the tunnel family.
    let q6 = request(&mut relay, RELAY, GW, 7, true, now);
    assert_eq!(membership::parse_query(&q6.query).unwrap().family, Family::V6);
    // IPv6 tunnel, IPv6 G fields.
    let q6 = request(&mut relay, RELAY6, "[2001:db8::2]:1234", 9, false, now);
    assert_eq!(q6.src, addr(RELAY6));
    assert_eq!(q6.gateway, Some((1234, "2001:db8::2".parse().unwrap())));
    // The same Request twice gets the same MAC (stateless); another nonce another MAC.
    let again = request(&mut relay, RELAY, GW, 0xdead_beef, false, now);
    assert_eq!(again.mac, q.mac);
    assert_ne!(request(&mut relay, RELAY, GW, 0xdead_bef0, false, now).mac, q.mac);
    assert_eq!(relay.gateway_count(), 0, "Requests create no state");

    let mut c = config();
    c.gateway_fields = false;
    let mut relay = relay_with(c, now);
    assert_eq!(request(&mut relay, RELAY, GW, 1, false, now).gateway, None);
}

#[test]
fn update_with_a_valid_mac_subscribes_and_joins_upstream_once() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    subscribe(&mut relay, GW, 1, &[S1], now);
    assert_eq!(
        events(&mut relay),
        [
            Event::GatewayUp { gateway: addr(GW), local: addr(RELAY) },
            Event::JoinUpstream(sg(S1)),
            Event::Subscribed { gateway: addr(GW), sg: sg(S1) },
        ]
    );
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
    assert_eq!(relay.subscribers(&sg(S1))[0].local, addr(RELAY), "Data comes from the relay address");
    // A second gateway on the same (S,G): no second upstream join.
    subscribe(&mut relay, "192.0.2.3:40000", 2, &[S1], now);
    assert_eq!(upstream(&mut relay), []);
    assert_eq!(subscribers(&relay, S1), [addr(GW), addr("192.0.2.3:40000")]);
    // A refresh changes nothing upstream either.
    let q = request(&mut relay, RELAY, GW, 3, false, now);
    update(&mut relay, RELAY, GW, &q, &[record(RecordType::ModeIsInclude, "232.1.1.1", &["198.51.100.10"])], now)
        .unwrap();
    assert_eq!(upstream(&mut relay), []);
    // The first leaves: still one subscriber, no upstream leave.
    update(&mut relay, RELAY, GW, &q, &[record(RecordType::BlockOldSources, "232.1.1.1", &["198.51.100.10"])], now)
        .unwrap();
    assert_eq!(
        events(&mut relay),
        [
            Event::Unsubscribed { gateway: addr(GW), sg: sg(S1), reason: LeaveReason::Report },
            Event::GatewayDown { gateway: addr(GW), reason: GatewayDownReason::Left },
        ]
    );
    // The last leaves: exactly one LeaveUpstream.
    let q = request(&mut relay, RELAY, "192.0.2.3:40000", 4, false, now);
    update(
        &mut relay,
        RELAY,
        "192.0.2.3:40000",
        &q,
        &[record(RecordType::BlockOldSources, "232.1.1.1", &["198.51.100.10"])],
        now,
    )
    .unwrap();
    assert_eq!(upstream(&mut relay), [Event::LeaveUpstream(sg(S1))]);
    assert!(relay.subscribers(&sg(S1)).is_empty());
    assert_eq!(relay.gateway_count(), 0);
    assert_eq!(relay.counters().updates_accepted, 5);
    relay.check_consistency().unwrap();
}

#[test]
fn forged_mac_is_rejected() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let q = request(&mut relay, RELAY, GW, 1, false, now);
    let records = [record(RecordType::AllowNewSources, "232.1.1.1", &["198.51.100.10"])];
    let mut forged = q.clone();
    forged.mac[5] ^= 1;
    assert_eq!(update(&mut relay, RELAY, GW, &forged, &records, now), Err(DropReason::BadMac));
    // A MAC for another nonce does not work for this one.
    let mut other = q.clone();
    other.nonce = 2;
    assert_eq!(update(&mut relay, RELAY, GW, &other, &records, now), Err(DropReason::BadMac));
    // All-zero MAC, as a naive forger would send.
    forged.mac = [0; 6];
    assert_eq!(update(&mut relay, RELAY, GW, &forged, &records, now), Err(DropReason::BadMac));
    assert_eq!(relay.counters().dropped(DropReason::BadMac), 3);
    assert_eq!(relay.gateway_count(), 0);
    assert!(events(&mut relay).is_empty());
    // A forged Update to a gateway with state changes nothing either.
    subscribe(&mut relay, GW, 5, &[S1], now);
    events(&mut relay);
    let q = request(&mut relay, RELAY, GW, 6, false, now);
    let mut forged = q.clone();
    forged.mac = [1, 2, 3, 4, 5, 6];
    let block = [record(RecordType::BlockOldSources, "232.1.1.1", &["198.51.100.10"])];
    assert_eq!(update(&mut relay, RELAY, GW, &forged, &block, now), Err(DropReason::BadMac));
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
}

#[test]
fn an_update_from_another_port_is_another_gateway() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let q = request(&mut relay, RELAY, GW, 1, false, now);
    let records = [record(RecordType::AllowNewSources, "232.1.1.1", &["198.51.100.10"])];
    // The MAC binds the port: the same Update from another port (or address) is refused.
    assert_eq!(update(&mut relay, RELAY, "192.0.2.2:40001", &q, &records, now), Err(DropReason::BadMac));
    assert_eq!(update(&mut relay, RELAY, "192.0.2.9:40000", &q, &records, now), Err(DropReason::BadMac));
    // Its own handshake makes it a separate gateway with separate state.
    update(&mut relay, RELAY, GW, &q, &records, now).unwrap();
    subscribe(&mut relay, "192.0.2.2:40001", 1, &[S2], now);
    assert_eq!(relay.gateway_count(), 2);
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
    assert_eq!(subscribers(&relay, S2), [addr("192.0.2.2:40001")]);
}

#[test]
fn macs_survive_one_rotation_and_die_at_the_second() {
    let t0 = Instant::now();
    let mut c = config();
    c.query_interval = Duration::from_secs(100); // memberships outlive the test
    let mut relay = relay_with(c, t0);
    let q = request(&mut relay, RELAY, GW, 1, false, t0);
    let records = [record(RecordType::AllowNewSources, "232.1.1.1", &["198.51.100.10"])];
    // The rotation timer is the first deadline.
    assert_eq!(relay.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    relay.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(relay.counters().secret_rotations, 1);
    // Valid under the previous secret.
    let t1 = t0 + Duration::from_secs(90);
    update(&mut relay, RELAY, GW, &q, &records, t1).unwrap();
    // A fresh Query now carries a MAC under the new secret.
    assert_ne!(request(&mut relay, RELAY, GW, 1, false, t1).mac, q.mac);
    // After the second rotation the first secret is gone.
    relay.handle_timeout(t0 + Duration::from_secs(120));
    assert_eq!(relay.counters().secret_rotations, 2);
    let t2 = t0 + Duration::from_secs(121);
    let block = [record(RecordType::BlockOldSources, "232.1.1.1", &["198.51.100.10"])];
    assert_eq!(update(&mut relay, RELAY, GW, &q, &block, t2), Err(DropReason::BadMac));
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
    let status = relay.status(t2);
    assert!(status.previous_secret);
    assert_eq!(status.secret_age_secs, 1.0);
}

#[test]
fn a_late_driver_still_expires_old_macs() {
    // No handle_timeout at all: a datagram long after the rotation deadline rotates first,
    // and a MAC two periods old is refused.
    let t0 = Instant::now();
    let mut relay = relay_with(config(), t0);
    let q = request(&mut relay, RELAY, GW, 1, false, t0);
    let records = [record(RecordType::AllowNewSources, "232.1.1.1", &["198.51.100.10"])];
    assert_eq!(update(&mut relay, RELAY, GW, &q, &records, t0 + Duration::from_secs(125)), Err(DropReason::BadMac));
    // One period late is still fine.
    let mut relay = relay_with(config(), t0);
    let q = request(&mut relay, RELAY, GW, 1, false, t0);
    update(&mut relay, RELAY, GW, &q, &records, t0 + Duration::from_secs(70)).unwrap();
}

#[test]
fn replayed_update_from_an_older_cycle_is_rejected() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let allow = [record(RecordType::AllowNewSources, "232.1.1.1", &["198.51.100.10"])];
    let block = [record(RecordType::BlockOldSources, "232.1.1.1", &["198.51.100.10"])];
    let q1 = request(&mut relay, RELAY, GW, 1, false, now);
    let old_allow = update_payload(q1.mac, q1.nonce, &allow);
    relay.handle_datagram(addr(RELAY), addr(GW), &old_allow, now).unwrap();
    // The gateway's next cycle.
    let q2 = request(&mut relay, RELAY, GW, 2, false, now);
    // An Update of the old cycle (valid MAC!) is now refused.
    assert_eq!(update(&mut relay, RELAY, GW, &q1, &block, now), Err(DropReason::StaleNonce));
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
    // The gateway leaves with the current nonce: state removed.
    update(&mut relay, RELAY, GW, &q2, &block, now).unwrap();
    assert_eq!(relay.gateway_count(), 0);
    // Replaying the old ALLOW does not bring it back: the endpoint's nonce is remembered.
    assert_eq!(relay.handle_datagram(addr(RELAY), addr(GW), &old_allow, now), Err(DropReason::StaleNonce));
    assert!(relay.subscribers(&sg(S1)).is_empty());
    assert_eq!(relay.counters().dropped(DropReason::StaleNonce), 2);
    // A new cycle of the real gateway works as usual.
    subscribe(&mut relay, GW, 3, &[S1], now);
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
    relay.check_consistency().unwrap();
}

#[test]
fn removed_endpoints_are_forgotten_after_two_rotation_periods() {
    let t0 = Instant::now();
    let mut relay = relay_with(config(), t0);
    let q = subscribe(&mut relay, GW, 1, &[S1], t0);
    update(&mut relay, RELAY, GW, &q, &[record(RecordType::BlockOldSources, "232.1.1.1", &["198.51.100.10"])], t0)
        .unwrap();
    assert_eq!(relay.status(t0).recently_removed, 1);
    relay.handle_timeout(t0 + Duration::from_secs(120));
    assert_eq!(relay.status(t0 + Duration::from_secs(120)).recently_removed, 0);
    relay.check_consistency().unwrap();
}

#[test]
fn capacity_sets_the_l_flag_for_new_gateways_only() {
    let now = Instant::now();
    let mut c = config();
    c.capacity = 1;
    let mut relay = relay_with(c, now);
    assert!(!request(&mut relay, RELAY, "192.0.2.3:1", 9, false, now).limit, "room before the first gateway");
    subscribe(&mut relay, GW, 1, &[S1], now);
    let q_new = request(&mut relay, RELAY, "192.0.2.3:1", 9, false, now);
    assert!(q_new.limit, "a new endpoint is told the relay is full");
    assert!(!request(&mut relay, RELAY, GW, 2, false, now).limit, "an endpoint with state never gets L");
    assert_eq!(relay.counters().limit_queries, 1);
    // A new gateway that ignores L is still refused.
    let records = [record(RecordType::AllowNewSources, "232.1.1.1", &["198.51.100.11"])];
    assert_eq!(update(&mut relay, RELAY, "192.0.2.3:1", &q_new, &records, now), Err(DropReason::AtCapacity));
    assert_eq!(relay.gateway_count(), 1);
    assert!(relay.status(now).at_capacity);
    // The existing gateway keeps working.
    let q = request(&mut relay, RELAY, GW, 3, false, now);
    update(&mut relay, RELAY, GW, &q, &records, now).unwrap();
    assert_eq!(subscribers(&relay, S2), [addr(GW)]);
}

#[test]
fn memberships_expire_after_the_group_membership_interval() {
    let t0 = Instant::now();
    let mut relay = relay_with(config(), t0);
    // GMI = 2 × 10 s + 1 s = 21 s.
    subscribe(&mut relay, GW, 1, &[S1, S2], t0);
    events(&mut relay);
    // S2 is refreshed at t0 + 15 s; S1 is not.
    let t1 = t0 + Duration::from_secs(15);
    let q = request(&mut relay, RELAY, GW, 2, false, t1);
    update(&mut relay, RELAY, GW, &q, &[record(RecordType::ModeIsInclude, "232.1.1.1", &["198.51.100.11"])], t1)
        .unwrap();
    let expiry = t0 + Duration::from_secs(21);
    assert_eq!(relay.poll_timeout(), Some(expiry));
    relay.handle_timeout(expiry - Duration::from_millis(1));
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
    relay.handle_timeout(expiry);
    assert!(relay.subscribers(&sg(S1)).is_empty());
    assert_eq!(subscribers(&relay, S2), [addr(GW)]);
    assert_eq!(
        events(&mut relay),
        [
            Event::Unsubscribed { gateway: addr(GW), sg: sg(S1), reason: LeaveReason::Expired },
            Event::LeaveUpstream(sg(S1)),
        ]
    );
    // S2 expires 21 s after its refresh, and with it the gateway.
    relay.handle_timeout(t1 + Duration::from_secs(21));
    assert_eq!(relay.gateway_count(), 0);
    let events = events(&mut relay);
    assert!(events.contains(&Event::LeaveUpstream(sg(S2))));
    assert!(events.contains(&Event::GatewayDown { gateway: addr(GW), reason: GatewayDownReason::Expired }));
    assert_eq!(relay.counters().memberships_expired, 2);
    relay.check_consistency().unwrap();
}

#[test]
fn teardown_with_a_good_mac_removes_the_endpoint_and_a_bad_one_does_not() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let q = subscribe(&mut relay, GW, 1, &[S1], now);
    events(&mut relay);
    // The Teardown comes from the gateway's new endpoint (NAT rebinding) and names the old one.
    let from = addr("192.0.2.2:40500");
    let mut bad = q.mac;
    bad[0] ^= 0x80;
    assert_eq!(relay.handle_datagram(addr(RELAY), from, &teardown(bad, 1, GW), now), Err(DropReason::BadMac));
    // The right MAC for another endpoint does not tear this one down.
    assert_eq!(
        relay.handle_datagram(addr(RELAY), from, &teardown(q.mac, 1, "192.0.2.2:40001"), now),
        Err(DropReason::BadMac)
    );
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
    relay.handle_datagram(addr(RELAY), from, &teardown(q.mac, 1, GW), now).unwrap();
    assert_eq!(relay.gateway_count(), 0);
    assert_eq!(
        events(&mut relay),
        [
            Event::Unsubscribed { gateway: addr(GW), sg: sg(S1), reason: LeaveReason::Teardown },
            Event::LeaveUpstream(sg(S1)),
            Event::GatewayDown { gateway: addr(GW), reason: GatewayDownReason::Teardown },
        ]
    );
    assert_eq!(relay.counters().teardowns_accepted, 1);
    // Again: nothing left to tear down.
    relay.handle_datagram(addr(RELAY), from, &teardown(q.mac, 1, GW), now).unwrap();
    assert_eq!(relay.counters().teardowns_without_state, 1);
}

#[test]
fn teardown_from_an_older_cycle_is_a_replay() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let q1 = subscribe(&mut relay, GW, 1, &[S1], now);
    // Next cycle: Request 2, Update with nonce 2.
    let q2 = subscribe(&mut relay, GW, 2, &[S1], now);
    // Request 3 outstanding: a Teardown with the last Update's nonce (2) is still accepted,
    // one with nonce 1 is a replay.
    request(&mut relay, RELAY, GW, 3, false, now);
    assert_eq!(
        relay.handle_datagram(addr(RELAY), addr(GW), &teardown(q1.mac, 1, GW), now),
        Err(DropReason::StaleNonce)
    );
    assert_eq!(relay.gateway_count(), 1);
    relay.handle_datagram(addr(RELAY), addr(GW), &teardown(q2.mac, 2, GW), now).unwrap();
    assert_eq!(relay.gateway_count(), 0);
}

#[test]
fn ipv6_gateway_with_an_mldv2_report() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let gw = "[2001:db8::2]:40000";
    let q = request(&mut relay, RELAY6, gw, 5, true, now);
    let records = [record(RecordType::AllowNewSources, "ff3e::8000:1", &["2001:db8:1::10"])];
    update(&mut relay, RELAY6, gw, &q, &records, now).unwrap();
    let sg6 = "2001:db8:1::10,ff3e::8000:1";
    assert_eq!(subscribers(&relay, sg6), [addr(gw)]);
    assert_eq!(relay.subscribers(&sg(sg6))[0].local, addr(RELAY6));
    assert_eq!(upstream(&mut relay), [Event::JoinUpstream(sg(sg6))]);
    // An IPv6 Teardown for it.
    relay.handle_datagram(addr(RELAY6), addr(gw), &teardown(q.mac, 5, gw), now).unwrap();
    assert_eq!(upstream(&mut relay), [Event::LeaveUpstream(sg(sg6))]);
    // IPv4-mapped addresses from a dual-stack socket are the IPv4 gateway.
    let payload = Repr::Request { nonce: 8, p_flag: false }.to_vec().unwrap();
    relay.handle_datagram(addr("[::ffff:203.0.113.15]:2268"), addr("[::ffff:192.0.2.2]:40000"), &payload, now).unwrap();
    let t = one_transmit(&mut relay);
    assert_eq!((t.src, t.dst), (addr(RELAY), addr(GW)));
    let Repr::MembershipQuery { mac, nonce, .. } = Repr::parse_bytes(&t.payload).unwrap() else { panic!() };
    let records = [record(RecordType::AllowNewSources, "232.1.1.1", &["198.51.100.10"])];
    relay.handle_datagram(addr(RELAY), addr(GW), &update_payload(mac, nonce, &records), now).unwrap();
    assert_eq!(subscribers(&relay, S1), [addr(GW)]);
}

#[test]
fn record_types_follow_ssm_router_semantics() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let q = request(&mut relay, RELAY, GW, 1, false, now);
    let g = "232.1.1.1";
    let src = |s: &[&str]| s.iter().map(|x| format!("198.51.100.{x}")).collect::<Vec<_>>();
    let rec = |kind, s: &[&str]| {
        let sources = src(s);
        record(kind, g, &sources.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let sources = |relay: &Relay| {
        let mut v: Vec<String> = relay
            .gateway_sgs(&addr(GW))
            .map(|it| it.map(|(sg, _)| sg.source.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    // IS_IN adds.
    update(&mut relay, RELAY, GW, &q, &[rec(RecordType::ModeIsInclude, &["10"])], now).unwrap();
    assert_eq!(sources(&relay), src(&["10"]));
    // ALLOW adds.
    update(&mut relay, RELAY, GW, &q, &[rec(RecordType::AllowNewSources, &["11", "12"])], now).unwrap();
    assert_eq!(sources(&relay), src(&["10", "11", "12"]));
    // BLOCK removes at once (one host per tunnel: no last-member query).
    update(&mut relay, RELAY, GW, &q, &[rec(RecordType::BlockOldSources, &["11"])], now).unwrap();
    assert_eq!(sources(&relay), src(&["10", "12"]));
    // TO_IN replaces the group's set.
    update(&mut relay, RELAY, GW, &q, &[rec(RecordType::ChangeToIncludeMode, &["12", "13"])], now).unwrap();
    assert_eq!(sources(&relay), src(&["12", "13"]));
    let events = upstream(&mut relay);
    assert!(events.contains(&Event::LeaveUpstream(sg("198.51.100.10,232.1.1.1"))));
    assert!(events.contains(&Event::JoinUpstream(sg("198.51.100.13,232.1.1.1"))));
    // EXCLUDE-mode records (ASM) are ignored and counted; the rest of the Update applies.
    update(
        &mut relay,
        RELAY,
        GW,
        &q,
        &[
            record(RecordType::ChangeToExcludeMode, "232.2.2.2", &[]),
            record(RecordType::ModeIsExclude, "232.2.2.3", &["198.51.100.1"]),
            rec(RecordType::AllowNewSources, &["14"]),
        ],
        now,
    )
    .unwrap();
    assert_eq!(sources(&relay), src(&["12", "13", "14"]));
    assert_eq!(relay.counters().dropped(DropReason::ExcludeMode), 2);
    // Link-local groups and non-unicast sources are refused record by record.
    update(
        &mut relay,
        RELAY,
        GW,
        &q,
        &[
            record(RecordType::AllowNewSources, "224.0.0.5", &["198.51.100.1"]),
            record(RecordType::AllowNewSources, "232.1.1.1", &["0.0.0.0"]),
        ],
        now,
    )
    .unwrap();
    assert_eq!(relay.counters().dropped(DropReason::BadRecord), 2);
    // TO_IN with an empty set is a leave of the group; the gateway goes away.
    update(&mut relay, RELAY, GW, &q, &[rec(RecordType::ChangeToIncludeMode, &[])], now).unwrap();
    assert_eq!(relay.gateway_count(), 0);
    relay.check_consistency().unwrap();
}

#[test]
fn limits_per_gateway_and_in_total() {
    let now = Instant::now();
    let mut c = config();
    c.max_sgs_per_gateway = 2;
    c.max_sgs = 3;
    let mut relay = relay_with(c, now);
    subscribe(&mut relay, GW, 1, &[S1, S2, S3], now);
    assert_eq!(relay.gateway_sgs(&addr(GW)).unwrap().count(), 2);
    assert_eq!(relay.counters().dropped(DropReason::TooManyGatewaySgs), 1);
    subscribe(&mut relay, "192.0.2.3:1", 1, &["198.51.100.20,232.1.1.2", "198.51.100.21,232.1.1.2"], now);
    assert_eq!(relay.channels().count(), 3);
    assert_eq!(relay.counters().dropped(DropReason::TooManySgs), 1);
    // Existing channels can still be joined by others.
    subscribe(&mut relay, "192.0.2.4:1", 1, &[S1], now);
    assert_eq!(subscribers(&relay, S1).len(), 2);
    relay.check_consistency().unwrap();
}

#[test]
fn junk_is_counted_and_dropped() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let local = addr(RELAY);
    let gw = addr(GW);
    assert_eq!(relay.handle_datagram(local, gw, &[], now), Err(DropReason::Malformed));
    assert_eq!(relay.handle_datagram(local, gw, &[0x13, 0, 0, 0], now), Err(DropReason::Malformed));
    assert_eq!(relay.handle_datagram(local, gw, &[3, 0, 0], now), Err(DropReason::Malformed));
    assert_eq!(relay.handle_datagram(local, gw, &[6, 0, 0x45], now), Err(DropReason::UnexpectedType));
    assert_eq!(relay.handle_datagram(local, gw, &[0x0f, 1, 2], now), Err(DropReason::UnknownType));
    let request = Repr::Request { nonce: 1, p_flag: false }.to_vec().unwrap();
    assert_eq!(relay.handle_datagram(local, addr("0.0.0.0:5"), &request, now), Err(DropReason::BadSource));
    assert_eq!(relay.handle_datagram(local, addr("192.0.2.2:0"), &request, now), Err(DropReason::BadSource));
    assert_eq!(relay.handle_datagram(local, addr("232.1.1.1:5"), &request, now), Err(DropReason::BadSource));
    // A valid MAC over a report that is not one.
    let q = request_fields(&mut relay, now);
    let not_a_report =
        membership::general_query(Family::V4, Duration::from_secs(1), 2, Duration::from_secs(1)).unwrap();
    let payload = Repr::MembershipUpdate { mac: q.mac, nonce: q.nonce, update: &not_a_report }.to_vec().unwrap();
    assert_eq!(relay.handle_datagram(local, gw, &payload, now), Err(DropReason::BadReport));
    let c = relay.counters();
    assert_eq!(c.dropped(DropReason::Malformed), 3);
    assert_eq!(c.dropped(DropReason::BadSource), 3);
    assert_eq!(c.received(MessageType::MulticastData), 1);
    assert_eq!(relay.gateway_count(), 0);
}

fn request_fields(relay: &mut Relay, now: Instant) -> QueryFields {
    request(relay, RELAY, GW, 77, false, now)
}

#[test]
fn data_path_lookup_counts_per_channel() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    subscribe(&mut relay, GW, 1, &[S1], now);
    let datagram =
        hex::decode("450000270000000040110000c633640ae80101019c40138900130000616d742d7061796c6f6164").unwrap();
    let native = datagram_sg(&datagram).unwrap();
    assert_eq!(native, sg(S1));
    assert_eq!(relay.forward(&native, 1, datagram.len() as u64).len(), 1);
    assert!(relay.forward(&sg(S2), 1, 100).is_empty());
    let status = relay.status(now);
    assert_eq!(status.channels[0].packets, 1);
    assert_eq!(status.channels[0].bytes, datagram.len() as u64);
    assert_eq!(status.counters.data_unsubscribed, 1);
}

#[test]
fn status_serialises() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    subscribe(&mut relay, GW, 0x0a0b_0c0d, &[S1], now);
    let json = serde_json::to_value(relay.status(now + Duration::from_secs(2))).unwrap();
    assert_eq!(json["gateways"][0]["gateway"], GW);
    assert_eq!(json["gateways"][0]["relay"], RELAY);
    assert_eq!(json["gateways"][0]["request_nonce"], "0x0a0b0c0d");
    assert_eq!(json["gateways"][0]["sgs"][0]["sg"], S1);
    assert_eq!(json["gateways"][0]["sgs"][0]["expires_in_secs"], 19.0);
    assert_eq!(json["channels"][0]["subscribers"], 1);
    assert_eq!(json["counters"]["received"]["request"], 1);
    assert_eq!(json["counters"]["received"]["membership-update"], 1);
    assert_eq!(json["counters"]["sent"]["membership-query"], 1);
    assert_eq!(json["membership_interval_secs"], 21.0);
    assert_eq!(json["secret_age_secs"], 2.0);
}

#[test]
fn the_transmit_queue_is_bounded() {
    let now = Instant::now();
    let mut relay = relay_with(config(), now);
    let request = Repr::Request { nonce: 1, p_flag: false }.to_vec().unwrap();
    for _ in 0..mcast_amt::relay::MAX_QUEUED_TRANSMITS {
        relay.handle_datagram(addr(RELAY), addr(GW), &request, now).unwrap();
    }
    assert_eq!(relay.handle_datagram(addr(RELAY), addr(GW), &request, now), Err(DropReason::QueueFull));
}

#[test]
fn replies_are_rate_limited_against_reflection() {
    let t0 = Instant::now();
    let mut c = config();
    c.max_replies_per_sec = 10;
    let mut relay = relay_with(c, t0);
    let request = Repr::Request { nonce: 1, p_flag: false }.to_vec().unwrap();
    let discovery = Repr::RelayDiscovery { nonce: 1 }.to_vec().unwrap();
    // A burst of one second's worth, then nothing.
    for i in 0..10 {
        let payload = if i % 2 == 0 { &request } else { &discovery };
        relay.handle_datagram(addr(RELAY), addr(GW), payload, t0).unwrap();
    }
    assert_eq!(relay.handle_datagram(addr(RELAY), addr(GW), &request, t0), Err(DropReason::RateLimited));
    assert_eq!(relay.handle_datagram(addr(RELAY), addr(GW), &discovery, t0), Err(DropReason::RateLimited));
    // 100 ms later one more token.
    let t1 = t0 + Duration::from_millis(100);
    relay.handle_datagram(addr(RELAY), addr(GW), &request, t1).unwrap();
    assert_eq!(relay.handle_datagram(addr(RELAY), addr(GW), &request, t1), Err(DropReason::RateLimited));
    assert_eq!(relay.counters().dropped(DropReason::RateLimited), 3);
    // Updates are not limited (they are authenticated and answered with nothing).
    while relay.poll_transmit().is_some() {}
    let t2 = t0 + Duration::from_secs(5);
    let q = request_fields(&mut relay, t2);
    update(&mut relay, RELAY, GW, &q, &[record(RecordType::AllowNewSources, "232.1.1.1", &["198.51.100.10"])], t2)
        .unwrap();
    // A rate-limited Request still moves the endpoint's nonce on (no stale cycle revives).
    for _ in 0..20 {
        let _ = relay.handle_datagram(
            addr(RELAY),
            addr(GW),
            &Repr::Request { nonce: 99, p_flag: false }.to_vec().unwrap(),
            t2,
        );
    }
    let block = [record(RecordType::BlockOldSources, "232.1.1.1", &["198.51.100.10"])];
    assert_eq!(update(&mut relay, RELAY, GW, &q, &block, t2), Err(DropReason::StaleNonce));
}

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Junk(Vec<u8>),
        Request {
            gw: u8,
            nonce: u8,
            p: bool,
        },
        /// An Update using the MAC of the `age`-th latest Query that gateway got.
        Update {
            gw: u8,
            age: u8,
            records: Vec<(u8, u8, u8)>,
        },
        Teardown {
            gw: u8,
            age: u8,
        },
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Junk),
            (0..6u8, 0..4u8, any::<bool>()).prop_map(|(gw, nonce, p)| Op::Request { gw, nonce, p }),
            (0..6u8, 0..3u8, proptest::collection::vec((0..7u8, 0..4u8, 0..5u8), 1..4))
                .prop_map(|(gw, age, records)| Op::Update { gw, age, records }),
            (0..6u8, 0..3u8).prop_map(|(gw, age)| Op::Teardown { gw, age }),
            (0..40_000u16).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_input_never_panics_and_state_stays_bounded(ops in proptest::collection::vec(op(), 1..80)) {
            let mut now = Instant::now();
            let mut c = config();
            c.capacity = 3;
            c.max_sgs_per_gateway = 3;
            c.max_sgs = 4;
            let mut relay = relay_with(c, now);
            let gw = |i: u8| -> SocketAddr { format!("192.0.2.{}:{}", 1 + i % 3, 4000 + u16::from(i / 3)).parse().unwrap() };
            let mut queries: Vec<Vec<(u32, [u8; 6])>> = vec![Vec::new(); 6];
            for op in ops {
                match op {
                    Op::Junk(bytes) => { let _ = relay.handle_datagram(addr(RELAY), gw(0), &bytes, now); }
                    Op::Request { gw: g, nonce, p } => {
                        let payload = Repr::Request { nonce: u32::from(nonce), p_flag: p }.to_vec().unwrap();
                        let _ = relay.handle_datagram(addr(RELAY), gw(g), &payload, now);
                        while let Some(t) = relay.poll_transmit() {
                            if let Ok(Repr::MembershipQuery { mac, nonce, .. }) = Repr::parse_bytes(&t.payload) {
                                queries[g as usize].push((nonce, mac));
                            }
                        }
                    }
                    Op::Update { gw: g, age, records } => {
                        let list = &queries[g as usize];
                        let (nonce, mac) = list.len().checked_sub(1 + age as usize).map_or((0, [0; 6]), |i| list[i]);
                        let records: Vec<_> = records.into_iter().map(|(kind, group, source)| {
                            membership::GroupRecord {
                                record_type: RecordType::from(kind),
                                group: format!("232.1.1.{group}").parse().unwrap(),
                                sources: vec![format!("198.51.100.{source}").parse().unwrap()],
                            }
                        }).collect();
                        if let Ok(datagrams) = membership::report_datagrams(Family::V4, &records, 1400) {
                            let payload = Repr::MembershipUpdate { mac, nonce, update: &datagrams[0] }.to_vec().unwrap();
                            let _ = relay.handle_datagram(addr(RELAY), gw(g), &payload, now);
                        }
                    }
                    Op::Teardown { gw: g, age } => {
                        let list = &queries[g as usize];
                        let (nonce, mac) = list.len().checked_sub(1 + age as usize).map_or((0, [0; 6]), |i| list[i]);
                        let endpoint = gw(g);
                        let payload = teardown(mac, nonce, &endpoint.to_string());
                        let _ = relay.handle_datagram(addr(RELAY), gw((g + 1) % 6), &payload, now);
                    }
                    Op::Advance(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        if relay.poll_timeout().is_some_and(|t| t <= now) {
                            relay.handle_timeout(now);
                        }
                    }
                }
                while relay.poll_transmit().is_some() {}
                // Upstream joins and leaves alternate per (S,G) and match the channel set.
                while let Some(e) = relay.poll_event() { let _ = e; }
                prop_assert!(relay.check_consistency().is_ok(), "{:?}", relay.check_consistency());
            }
        }

        #[test]
        fn upstream_joins_and_leaves_pair_up(ops in proptest::collection::vec((0..4u8, 0..3u8, any::<bool>()), 1..60)) {
            let now = Instant::now();
            let mut relay = relay_with(config(), now);
            let mut joined = std::collections::BTreeSet::new();
            let mut nonce = 0u32;
            for (g, s, join) in ops {
                nonce += 1;
                let gw_text = format!("192.0.2.{}:5000", g + 1);
                let q = request(&mut relay, RELAY, &gw_text, nonce, false, now);
                let kind = if join { RecordType::AllowNewSources } else { RecordType::BlockOldSources };
                let source = format!("198.51.100.{s}");
                update(&mut relay, RELAY, &gw_text, &q, &[record(kind, "232.1.1.1", &[source.as_str()])], now).unwrap();
                for e in events(&mut relay) {
                    match e {
                        Event::JoinUpstream(sg) => prop_assert!(joined.insert(sg), "joined twice"),
                        Event::LeaveUpstream(sg) => prop_assert!(joined.remove(&sg), "left without a join"),
                        _ => {}
                    }
                }
                let channels: std::collections::BTreeSet<_> = relay.channels().copied().collect();
                prop_assert_eq!(&channels, &joined);
            }
        }
    }
}
