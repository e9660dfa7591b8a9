//! The AMT gateway state machine against a scripted relay, with injected time: every
//! exchange, every nonce/MAC rule and every timer of RFC 7450 §5.2 (and RFC 8777 §3.3).

mod gateway_common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use gateway_common::*;
use mcast_amt::gateway::{
    CloseReason, Config, ControlDrop, DataDrop, Event, FailReason, GatewayError, TunnelState, is_data,
};
use mcast_amt::membership::Family;
use mcast_wire::amt::Repr;
use mcast_wire::igmp::RecordType::{AllowNewSources, BlockOldSources, ModeIsInclude};

const S1: &str = "198.51.100.10,232.1.1.1";
const S2: &str = "198.51.100.11,232.1.1.2";
const S6: &str = "2001:db8::10,ff3e::8000:1";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ----- discovery ------------------------------------------------------------------------------

#[test]
fn discovery_advertisement_then_request_to_the_advertised_address() {
    let mut gw = gateway();
    let now = Instant::now();
    let (key, disc) = (ip(RELAY), ip(DISCOVERY));
    gw.add_tunnel(key, Some(disc), now).unwrap();
    let txs = drain(&mut gw);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].destination, at(DISCOVERY), "Discovery goes to the discovery address, port 2268");
    let nonce = discovery_nonce(&txs);
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Discovering);

    // The relay advertises another (unicast) address: Requests go there.
    let advertised = ip("203.0.113.99");
    gw.handle_datagram(now, at(DISCOVERY), None, &advertisement(nonce, advertised)).unwrap();
    assert_eq!(events(&mut gw), [Event::RelayDiscovered { relay: key, address: advertised }]);
    assert!(drain(&mut gw).is_empty(), "no Request before something is joined");
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Idle);

    gw.join(key, sg(S1), now).unwrap();
    let (dest, _, p) = request(&drain(&mut gw));
    assert_eq!(dest, SocketAddr::new(advertised, 2268));
    assert!(!p, "P = 0 for an IPv4 (S,G)");
    // The discovery timer is gone: the next deadline is the Request retransmission (1 s).
    assert_eq!(gw.poll_timeout(), Some(now + secs(1.0)));
}

#[test]
fn advertisement_with_a_wrong_nonce_is_dropped() {
    let mut gw = gateway();
    let now = Instant::now();
    gw.add_tunnel(ip(RELAY), Some(ip(DISCOVERY)), now).unwrap();
    let nonce = discovery_nonce(&drain(&mut gw));
    let r = gw.handle_datagram(now, at(DISCOVERY), None, &advertisement(nonce.wrapping_add(1), ip(RELAY)));
    assert_eq!(r, Err(ControlDrop::BadNonce));
    assert_eq!(gw.counters().control_drops.get(ControlDrop::BadNonce), 1);
    assert!(events(&mut gw).is_empty());
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Discovering);
    // The right nonce still works.
    gw.handle_datagram(now, at(DISCOVERY), None, &advertisement(nonce, ip(RELAY))).unwrap();
}

#[test]
fn advertisement_from_another_address_or_port_is_dropped() {
    let mut gw = gateway();
    let now = Instant::now();
    gw.add_tunnel(ip(RELAY), Some(ip(DISCOVERY)), now).unwrap();
    let nonce = discovery_nonce(&drain(&mut gw));
    let adv = advertisement(nonce, ip(RELAY));
    assert_eq!(gw.handle_datagram(now, at("192.52.193.2"), None, &adv), Err(ControlDrop::UnknownSender));
    let wrong_port = SocketAddr::new(ip(DISCOVERY), 2269);
    assert_eq!(gw.handle_datagram(now, wrong_port, None, &adv), Err(ControlDrop::UnknownSender));
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Discovering);
}

#[test]
fn d_bit_set_skips_discovery() {
    let mut gw = gateway();
    let now = Instant::now();
    gw.add_tunnel(ip(RELAY), None, now).unwrap();
    assert!(drain(&mut gw).is_empty(), "no Discovery when the relay may be asked directly (RFC 8777 §4.2.2)");
    gw.join(ip(RELAY), sg(S1), now).unwrap();
    let (dest, _, _) = request(&drain(&mut gw));
    assert_eq!(dest, at(RELAY));
}

#[test]
fn a_new_discovery_cycle_uses_a_new_nonce_and_failure_is_reported_after_three() {
    let mut gw = gateway();
    let mut now = Instant::now();
    let start = now;
    gw.add_tunnel(ip(RELAY), Some(ip(DISCOVERY)), now).unwrap();
    let first = discovery_nonce(&drain(&mut gw));
    let sent = run_until(&mut gw, &mut now, start + secs(8.0));
    let times: Vec<Instant> = sent.iter().map(|(t, _)| *t).collect();
    assert!(sent.iter().all(|(_, tx)| tx.destination == at(DISCOVERY)));
    // Retransmissions reuse the cycle's nonce.
    for (_, tx) in &sent {
        assert!(matches!(Repr::parse_bytes(&tx.payload).unwrap(), Repr::RelayDiscovery { nonce } if nonce == first));
    }
    assert_eq!(times[0] - start, secs(1.0), "first timeout: [1 s, 1 s]");
    let gap2 = times[1] - times[0];
    assert!(gap2 >= secs(1.0) && gap2 <= secs(2.0), "{gap2:?}");
    let evs = events(&mut gw);
    assert_eq!(evs, [Event::RelayFailed { relay: ip(RELAY), reason: FailReason::NoAdvertisement }]);
    assert_eq!(gw.status(now).tunnels[0].failed.as_deref(), Some("no-advertisement"));
}

// ----- request / query --------------------------------------------------------------------------

#[test]
fn request_query_update_copies_mac_and_nonce_verbatim() {
    let mut gw = gateway();
    let now = Instant::now();
    gw.add_tunnel(ip(RELAY), None, now).unwrap();
    gw.join(ip(RELAY), sg(S1), now).unwrap();
    let (_, nonce, _) = request(&drain(&mut gw));
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Requesting);
    gw.handle_datagram(now, at(RELAY), Some(local()), &query(Family::V4, MAC, nonce, 125, 2, false, None)).unwrap();
    assert_eq!(events(&mut gw), [Event::TunnelEstablished { relay: ip(RELAY), family: Family::V4 }]);
    let txs = drain(&mut gw);
    // Byte-level: the MAC and nonce fields are the Query's, unchanged.
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].payload[0], 0x05);
    assert_eq!(&txs[0].payload[2..8], &MAC);
    assert_eq!(&txs[0].payload[8..12], &nonce.to_be_bytes());
    let ups = updates(&txs);
    assert_eq!(ups[0].dest, at(RELAY));
    assert_eq!(ups[0].entries(), [(ModeIsInclude, sg(S1))], "full-state report answers the Query");
    let st = gw.status(now);
    assert_eq!(st.tunnels[0].state, TunnelState::Established);
    assert_eq!(st.tunnels[0].families[0].mac.as_deref(), Some("0102030405a6"));
}

#[test]
fn query_with_a_wrong_nonce_or_from_elsewhere_is_dropped() {
    let mut gw = gateway();
    let now = Instant::now();
    gw.add_tunnel(ip(RELAY), None, now).unwrap();
    gw.join(ip(RELAY), sg(S1), now).unwrap();
    let (_, nonce, _) = request(&drain(&mut gw));
    let bad = query(Family::V4, MAC, nonce ^ 1, 125, 2, false, None);
    assert_eq!(gw.handle_datagram(now, at(RELAY), None, &bad), Err(ControlDrop::BadNonce));
    let good = query(Family::V4, MAC, nonce, 125, 2, false, None);
    assert_eq!(gw.handle_datagram(now, at("203.0.113.16"), None, &good), Err(ControlDrop::UnknownSender));
    let port = SocketAddr::new(ip(RELAY), 2269);
    assert_eq!(gw.handle_datagram(now, port, None, &good), Err(ControlDrop::UnknownSender));
    // An MLD query for a P = 0 Request.
    let v6 = query(Family::V6, MAC, nonce, 125, 2, false, None);
    assert_eq!(gw.handle_datagram(now, at(RELAY), None, &v6), Err(ControlDrop::WrongFamily));
    // Garbage inside the Query.
    let garbage = Repr::MembershipQuery { limit: false, mac: MAC, nonce, query: &[0x45, 0, 0], gateway: None };
    assert_eq!(gw.handle_datagram(now, at(RELAY), None, &garbage.to_vec().unwrap()), Err(ControlDrop::BadQuery));
    assert!(drain(&mut gw).is_empty() && events(&mut gw).is_empty(), "nothing acted on");
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Requesting);
    // A message type a gateway never receives.
    let req = Repr::Request { nonce: 1, p_flag: false }.to_vec().unwrap();
    assert_eq!(gw.handle_datagram(now, at(RELAY), None, &req), Err(ControlDrop::UnexpectedType));
    assert_eq!(gw.handle_datagram(now, at(RELAY), None, &[0x10, 0]), Err(ControlDrop::Malformed));
    // Still accepts the right one.
    gw.handle_datagram(now, at(RELAY), None, &good).unwrap();
}

#[test]
fn ipv4_and_ipv6_sgs_run_two_request_cycles() {
    let mut gw = gateway();
    let now = Instant::now();
    let ups = established(&mut gw, now, &[sg(S1), sg(S6)], 125);
    assert_eq!(ups.len(), 2);
    assert_eq!(ups[0].family, Family::V4);
    assert_eq!(ups[0].entries(), [(ModeIsInclude, sg(S1))]);
    assert_eq!(ups[1].family, Family::V6);
    assert_eq!(ups[1].entries(), [(ModeIsInclude, sg(S6))]);
    let evs = events(&mut gw);
    assert!(evs.contains(&Event::TunnelEstablished { relay: ip(RELAY), family: Family::V6 }));
    assert_eq!(gw.status(now).tunnels[0].families.len(), 2);
}

#[test]
fn qqic_drives_the_next_request_and_every_query_gets_a_full_state_report() {
    let mut gw = gateway();
    let mut now = Instant::now();
    let t0 = now;
    established(&mut gw, now, &[sg(S1), sg(S2)], 30);
    // Repetition of the unsolicited ALLOW, then the refresh Request exactly at t0 + 30 s.
    let sent = run_until(&mut gw, &mut now, t0 + secs(30.0));
    let reqs: Vec<_> = sent.iter().filter(|(_, tx)| tx.payload[0] == 3).collect();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0, t0 + secs(30.0), "QQIC 30 → Request at now + 30 s (RFC 7450 §5.2.3.5)");
    let (_, nonce, _) = request(&[reqs[0].1.clone()]);
    gw.handle_datagram(now, at(RELAY), Some(local()), &query(Family::V4, MAC2, nonce, 30, 2, false, None)).unwrap();
    let ups = updates(&drain(&mut gw));
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].mac, MAC2, "the new MAC from now on");
    assert_eq!(ups[0].entries(), [(ModeIsInclude, sg(S1)), (ModeIsInclude, sg(S2))]);
}

#[test]
fn l_flag_without_state_fails_the_relay_with_state_is_ignored() {
    // No state yet: no Update, RelayFailed { Limit }, retried later.
    let mut gw = gateway();
    let mut now = Instant::now();
    gw.add_tunnel(ip(RELAY), None, now).unwrap();
    gw.join(ip(RELAY), sg(S1), now).unwrap();
    let (_, nonce, _) = request(&drain(&mut gw));
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC, nonce, 125, 2, true, None)).unwrap();
    assert!(updates(&drain(&mut gw)).is_empty(), "no Update to a relay at capacity");
    assert_eq!(events(&mut gw), [Event::RelayFailed { relay: ip(RELAY), reason: FailReason::Limit }]);
    let sent = run_for(&mut gw, &mut now, secs(10.0));
    let (_, nonce2, _) = requests(&sent.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>())[0];
    assert_ne!(nonce2, nonce, "a new Request cycle");

    // With state: proceed, report LimitReached once.
    let mut gw = gateway();
    let mut now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 10);
    events(&mut gw);
    let sent = run_for(&mut gw, &mut now, secs(10.0));
    let (_, nonce, _) = request(&sent.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>());
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC2, nonce, 10, 2, true, None)).unwrap();
    let ups = updates(&drain(&mut gw));
    assert_eq!(ups[0].mac, MAC2);
    assert_eq!(events(&mut gw), [Event::LimitReached { relay: ip(RELAY), family: Family::V4 }]);
}

#[test]
fn gateway_endpoint_change_tears_down_the_old_endpoint() {
    let mut gw = gateway();
    let mut now = Instant::now();
    let relay = ip(RELAY);
    gw.add_tunnel(relay, None, now).unwrap();
    gw.join(relay, sg(S1), now).unwrap();
    let (_, n1, _) = request(&drain(&mut gw));
    let old = (5000, ip("198.51.100.7"));
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC, n1, 10, 2, false, Some(old))).unwrap();
    events(&mut gw);
    assert_eq!(gw.status(now).tunnels[0].gateway_endpoint, Some("198.51.100.7:5000".parse().unwrap()));
    let sent = run_for(&mut gw, &mut now, secs(10.0));
    let (_, n2, _) = request(&sent.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>());
    // Same endpoint again: nothing torn down.
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC, n2, 10, 2, false, Some(old))).unwrap();
    assert!(teardowns(&drain(&mut gw)).is_empty());
    let sent = run_for(&mut gw, &mut now, secs(10.0));
    let (_, n3, _) = request(&sent.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>());
    // NAT rebinding: new port.
    let new = (6000, ip("198.51.100.7"));
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC2, n3, 10, 2, false, Some(new))).unwrap();
    let txs = drain(&mut gw);
    let tds = teardowns(&txs);
    assert_eq!(tds, [(at(RELAY), MAC, n2, "198.51.100.7:5000".parse().unwrap())], "old MAC, nonce, endpoint");
    // The new endpoint gets the full state.
    assert_eq!(updates(&txs)[0].entries(), [(ModeIsInclude, sg(S1))]);
    assert_eq!(updates(&txs)[0].mac, MAC2);
    assert!(events(&mut gw).contains(&Event::GatewayEndpointChanged {
        relay,
        old: "198.51.100.7:5000".parse().unwrap(),
        new: "198.51.100.7:6000".parse().unwrap(),
    }));
}

// ----- membership changes -----------------------------------------------------------------------

#[test]
fn join_and_leave_are_sent_at_once_and_repeated() {
    let mut gw = gateway();
    let mut now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 125);
    run_for(&mut gw, &mut now, secs(1.0)); // let the first repetition pass
    let t = now;
    gw.join(ip(RELAY), sg(S2), now).unwrap();
    let ups = updates(&drain(&mut gw));
    assert_eq!(ups.len(), 1, "sent at once with the valid MAC");
    assert_eq!(ups[0].entries(), [(AllowNewSources, sg(S2))]);
    assert_eq!(ups[0].mac, MAC);
    let sent = run_until(&mut gw, &mut now, t + secs(2.0));
    let ups: Vec<_> = sent.iter().filter(|(_, tx)| tx.payload[0] == 5).collect();
    assert_eq!(ups.len(), 1, "QRV 2: one repetition");
    let gap = ups[0].0 - t;
    assert!(gap >= secs(0.1) && gap <= secs(0.5), "repetition after {gap:?}");
    assert_eq!(updates(&[ups[0].1.clone()])[0].entries(), [(AllowNewSources, sg(S2))]);

    let t = now;
    assert!(gw.leave(ip(RELAY), sg(S2), now).unwrap());
    assert_eq!(updates(&drain(&mut gw))[0].entries(), [(BlockOldSources, sg(S2))]);
    let sent = run_until(&mut gw, &mut now, t + secs(2.0));
    let blocks: Vec<_> = updates(&sent.into_iter().map(|(_, t)| t).collect::<Vec<_>>());
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].entries(), [(BlockOldSources, sg(S2))]);
    assert!(!gw.leave(ip(RELAY), sg(S2), now).unwrap(), "not joined any more");
}

#[test]
fn qrv_from_the_query_sets_the_number_of_transmissions() {
    let mut gw = gateway();
    let mut now = Instant::now();
    let relay = ip(RELAY);
    gw.add_tunnel(relay, None, now).unwrap();
    gw.join(relay, sg(S1), now).unwrap();
    let (_, nonce, _) = request(&drain(&mut gw));
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC, nonce, 125, 4, false, None)).unwrap();
    drain(&mut gw);
    run_for(&mut gw, &mut now, secs(3.0));
    gw.join(relay, sg(S2), now).unwrap();
    let mut sent = drain(&mut gw);
    sent.extend(run_for(&mut gw, &mut now, secs(3.0)).into_iter().map(|(_, t)| t));
    assert_eq!(updates(&sent).len(), 4, "QRV 4: four transmissions of the ALLOW record");
}

#[test]
fn changes_before_the_first_query_wait_for_it() {
    let mut gw = gateway();
    let now = Instant::now();
    let relay = ip(RELAY);
    gw.add_tunnel(relay, None, now).unwrap();
    gw.join(relay, sg(S1), now).unwrap();
    gw.join(relay, sg(S2), now).unwrap();
    gw.leave(relay, sg(S2), now).unwrap();
    let txs = drain(&mut gw);
    assert_eq!(requests(&txs).len(), 1, "one Request for the batch");
    assert!(updates(&txs).is_empty(), "no MAC yet");
    let (_, nonce, _) = request(&txs);
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC, nonce, 125, 2, false, None)).unwrap();
    let ups = updates(&drain(&mut gw));
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].entries(), [(ModeIsInclude, sg(S1)), (BlockOldSources, sg(S2))]);
}

#[test]
fn a_thousand_joins_coalesce_into_a_few_updates() {
    let mut gw = gateway();
    let mut now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 125);
    run_for(&mut gw, &mut now, secs(1.0));
    let sgs: Vec<_> =
        (0..1000u32).map(|i| sg(&format!("198.51.100.{},232.2.{}.{}", 20 + i % 50, i / 250, i % 250))).collect();
    for s in &sgs {
        gw.join(ip(RELAY), *s, now).unwrap();
    }
    assert_eq!(gw.poll_timeout(), Some(now), "pending changes make the driver wake at once");
    let txs = drain(&mut gw);
    let ups = updates(&txs);
    assert!(ups.len() <= 10, "{} Updates for 1000 joins", ups.len());
    assert!(txs.iter().all(|t| t.payload.len() <= 12 + 1400));
    let mut announced: Vec<_> = ups.iter().flat_map(|u| u.entries()).map(|(_, s)| s).collect();
    announced.sort();
    let mut want = sgs.clone();
    want.sort();
    assert_eq!(announced, want);
}

// ----- timers: backoff, failure, recovery ---------------------------------------------------------

#[test]
fn request_backoff_ranges_and_failure_after_three() {
    let mut gw = gateway();
    let mut now = Instant::now();
    let t0 = now;
    gw.add_tunnel(ip(RELAY), None, now).unwrap();
    gw.join(ip(RELAY), sg(S1), now).unwrap();
    let (_, nonce, _) = request(&drain(&mut gw));
    let sent = run_until(&mut gw, &mut now, t0 + secs(600.0));
    let mut times = vec![t0];
    for (t, tx) in &sent {
        let Repr::Request { nonce: n, .. } = Repr::parse_bytes(&tx.payload).unwrap() else { panic!() };
        assert_eq!(n, nonce, "retransmissions reuse the cycle's nonce (D = 1: no rediscovery)");
        times.push(*t);
    }
    for (n, w) in times.windows(2).enumerate() {
        let gap = w[1] - w[0];
        let hi = secs((1u64 << n).min(120) as f64);
        assert!(gap >= secs(1.0) && gap <= hi, "retransmission {n}: {gap:?} not in [1 s, {hi:?}]");
    }
    assert!(times.len() > 8, "keeps retrying");
    let evs = events(&mut gw);
    assert_eq!(evs, [Event::RelayFailed { relay: ip(RELAY), reason: FailReason::NoQuery }], "reported once");
    // The failure is reported after the third timeout: between 3 s and 7 s.
    assert_eq!(gw.status(now).tunnels[0].families[0].request_attempts as usize, times.len());
}

#[test]
fn a_discovered_relay_that_stops_answering_sends_the_tunnel_back_to_discovery() {
    let mut gw = gateway();
    let mut now = Instant::now();
    gw.add_tunnel(ip(RELAY), Some(ip(DISCOVERY)), now).unwrap();
    let n = discovery_nonce(&drain(&mut gw));
    gw.handle_datagram(now, at(DISCOVERY), None, &advertisement(n, ip(RELAY))).unwrap();
    gw.join(ip(RELAY), sg(S1), now).unwrap();
    request(&drain(&mut gw));
    let sent: Vec<_> = run_for(&mut gw, &mut now, secs(8.0)).into_iter().map(|(_, t)| t).collect();
    let n2 = discovery_nonce(&sent);
    assert_ne!(n2, n, "a new discovery cycle, a new nonce");
    assert!(events(&mut gw).contains(&Event::RelayFailed { relay: ip(RELAY), reason: FailReason::NoQuery }));
    // The relay answers again: a new Request follows at once.
    gw.handle_datagram(now, at(DISCOVERY), None, &advertisement(n2, ip(RELAY))).unwrap();
    let (dest, _, _) = request(&drain(&mut gw));
    assert_eq!(dest, at(RELAY));
}

#[test]
fn recovery_after_a_relay_restart_without_restarting_the_gateway() {
    let mut gw = gateway_with(Config::default());
    let mut now = Instant::now();
    let relay = ip(RELAY);
    established(&mut gw, now, &[sg(S1)], 125);
    events(&mut gw);
    // Data flows for a while.
    for _ in 0..3 {
        run_for(&mut gw, &mut now, secs(2.0));
        gw.accept_data(at(RELAY), &data(sg(S1), 16, b"x")).unwrap();
    }
    assert!(events(&mut gw).is_empty(), "traffic: no NoTraffic");
    // The relay restarts: it lost our state and its secret; no more data.
    let sent: Vec<_> = run_for(&mut gw, &mut now, secs(10.0)).into_iter().map(|(_, t)| t).collect();
    let evs = events(&mut gw);
    assert!(matches!(evs.as_slice(), [Event::NoTraffic { silent_for, .. }] if *silent_for >= secs(4.0)), "{evs:?}");
    let reqs = requests(&sent);
    assert!(!reqs.is_empty(), "NoTraffic starts a fresh handshake");
    // The restarted relay answers with a new MAC: full state with the new MAC.
    let (_, nonce, _) = *reqs.last().unwrap();
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC2, nonce, 125, 2, false, None)).unwrap();
    let ups = updates(&drain(&mut gw));
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].mac, MAC2);
    assert_eq!(ups[0].nonce, nonce);
    assert_eq!(ups[0].entries(), [(ModeIsInclude, sg(S1))]);
    gw.accept_data(at(RELAY), &data(sg(S1), 16, b"y")).unwrap();
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Established);
    let _ = relay;
}

#[test]
fn relay_down_then_back_recovers_with_backoff() {
    let mut gw = gateway();
    let mut now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 20);
    // The relay is gone for 5 minutes: refresh Requests go unanswered.
    let sent: Vec<_> = run_for(&mut gw, &mut now, secs(300.0)).into_iter().map(|(_, t)| t).collect();
    assert!(requests(&sent).len() >= 5);
    assert!(events(&mut gw).contains(&Event::RelayFailed { relay: ip(RELAY), reason: FailReason::NoQuery }));
    // It is back: the next retransmission gets a Query.
    let sent: Vec<_> = run_for(&mut gw, &mut now, secs(121.0)).into_iter().map(|(_, t)| t).collect();
    let (_, nonce, _) = *requests(&sent).last().expect("a retransmission within 120 s");
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC2, nonce, 20, 2, false, None)).unwrap();
    assert_eq!(updates(&drain(&mut gw))[0].entries(), [(ModeIsInclude, sg(S1))]);
    assert_eq!(gw.status(now).tunnels[0].failed, None);
}

// ----- teardown, remove, shutdown ------------------------------------------------------------------

#[test]
fn last_leave_sends_block_then_teardown_at_once() {
    let mut gw = gateway();
    let mut now = Instant::now();
    let relay = ip(RELAY);
    established(&mut gw, now, &[sg(S1)], 125);
    events(&mut gw);
    run_for(&mut gw, &mut now, secs(1.0));
    gw.leave(relay, sg(S1), now).unwrap();
    let txs = drain(&mut gw);
    let kinds: Vec<u8> = txs.iter().map(|t| t.payload[0]).collect();
    assert_eq!(kinds, [5, 7], "BLOCK Update, then Teardown, in the same poll");
    assert_eq!(updates(&txs)[0].entries(), [(BlockOldSources, sg(S1))]);
    // G = 0: the Teardown names our local endpoint as the driver saw it.
    let tds = teardowns(&txs);
    assert_eq!(tds.len(), 1);
    assert_eq!(tds[0].1, MAC);
    assert_eq!(tds[0].3, local());
    assert_eq!(events(&mut gw), [Event::TunnelClosed { relay, reason: CloseReason::LastLeave }]);
    // Repeated once (QRV 2), then silence: no refresh, no no-traffic check.
    let sent = run_for(&mut gw, &mut now, secs(600.0));
    let kinds: Vec<u8> = sent.iter().map(|(_, t)| t.payload[0]).collect();
    assert_eq!(kinds, [5, 7]);
    assert!(events(&mut gw).is_empty());
    assert_eq!(gw.poll_timeout(), None);
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Idle);
    // A new join starts over with a Request.
    gw.join(relay, sg(S2), now).unwrap();
    request(&drain(&mut gw));
}

#[test]
fn remove_tunnel_tears_down_and_drops_later_data() {
    let mut gw = gateway();
    let now = Instant::now();
    let relay = ip(RELAY);
    established(&mut gw, now, &[sg(S1), sg(S2)], 125);
    events(&mut gw);
    gw.remove_tunnel(relay, now).unwrap();
    let txs = drain(&mut gw);
    assert_eq!(updates(&txs)[0].entries(), [(BlockOldSources, sg(S1)), (BlockOldSources, sg(S2))]);
    assert_eq!(teardowns(&txs).len(), 1);
    assert_eq!(events(&mut gw), [Event::TunnelClosed { relay, reason: CloseReason::Removed }]);
    assert_eq!(gw.accept_data(at(RELAY), &data(sg(S1), 16, b"late")), Err(DataDrop::NotFromRelay));
    assert_eq!(gw.join(relay, sg(S1), now), Err(GatewayError::UnknownTunnel(relay)));
    assert!(gw.status(now).tunnels.is_empty());
    // It can be added again at once.
    gw.add_tunnel(relay, None, now).unwrap();
}

#[test]
fn shutdown_tears_every_tunnel_down() {
    let mut gw = gateway();
    let now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 125);
    let other = ip("203.0.113.16");
    gw.add_tunnel(other, None, now).unwrap();
    gw.join(other, sg(S2), now).unwrap();
    let (_, nonce, _) = request(&drain(&mut gw));
    let g = Some((40000, ip("192.0.2.2")));
    gw.handle_datagram(now, at("203.0.113.16"), None, &query(Family::V4, MAC2, nonce, 125, 2, false, g)).unwrap();
    drain(&mut gw);
    events(&mut gw);
    gw.shutdown(now);
    let txs = drain(&mut gw);
    let tds = teardowns(&txs);
    assert_eq!(tds.len(), 2);
    assert!(tds.iter().any(|t| t.0 == at("203.0.113.16") && t.1 == MAC2 && t.3 == "192.0.2.2:40000".parse().unwrap()));
    assert_eq!(updates(&txs).len(), 2);
    assert_eq!(events(&mut gw).len(), 2);
    assert_eq!(gw.poll_timeout(), None);
    assert_eq!(gw.join(ip(RELAY), sg(S1), now), Err(GatewayError::ShutDown));
    assert_eq!(gw.handle_datagram(now, at(RELAY), None, &[0x04]), Err(ControlDrop::ShutDown));
    assert!(gw.is_shut_down());
}

#[test]
fn without_teardown_on_last_leave_only_block_records_go_out() {
    let mut gw = gateway_with(Config { teardown_on_last_leave: false, ..quiet() });
    let mut now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 125);
    run_for(&mut gw, &mut now, secs(1.0));
    gw.leave(ip(RELAY), sg(S1), now).unwrap();
    let mut txs = drain(&mut gw);
    txs.extend(run_for(&mut gw, &mut now, secs(400.0)).into_iter().map(|(_, t)| t));
    assert!(teardowns(&txs).is_empty());
    assert_eq!(updates(&txs).len(), 2);
    assert!(requests(&txs).is_empty(), "no refresh for an empty tunnel");
}

// ----- data -----------------------------------------------------------------------------------

#[test]
fn data_accept_and_drop_rules() {
    let mut gw = gateway();
    let now = Instant::now();
    established(&mut gw, now, &[sg(S1), sg(S6)], 125);
    let good = data(sg(S1), 16, b"payload");
    assert!(is_data(&good));
    let inner = gw.accept_data(at(RELAY), &good).unwrap();
    assert_eq!(inner, &good[2..], "the inner datagram, zero-copy");
    assert!(gw.accept_data(at(RELAY), &data(sg(S6), 2, b"v6")).is_ok());
    // Spoofed sender address, spoofed port.
    assert_eq!(gw.accept_data(at("203.0.113.66"), &good), Err(DataDrop::NotFromRelay));
    assert_eq!(gw.accept_data(SocketAddr::new(ip(RELAY), 2269), &good), Err(DataDrop::NotFromRelay));
    // Not joined, TTL 1, not UDP, malformed, not data.
    assert_eq!(gw.accept_data(at(RELAY), &data(sg(S2), 16, b"x")), Err(DataDrop::NotJoined));
    assert_eq!(gw.accept_data(at(RELAY), &data(sg(S1), 1, b"x")), Err(DataDrop::TtlExpired));
    let mut icmp = data(sg(S1), 16, b"x");
    icmp[2 + 9] = 1;
    // Fix the IPv4 header checksum after changing the protocol.
    icmp[2 + 10] = 0;
    icmp[2 + 11] = 0;
    let sum = mcast_wire::checksum::finish(mcast_wire::checksum::data(&icmp[2..22]));
    icmp[2 + 10..2 + 12].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(gw.accept_data(at(RELAY), &icmp), Err(DataDrop::NotUdp));
    assert_eq!(gw.accept_data(at(RELAY), &good[..20]), Err(DataDrop::Malformed));
    let mut bad_sum = good.clone();
    bad_sum[2 + 8] = 99;
    assert_eq!(gw.accept_data(at(RELAY), &bad_sum), Err(DataDrop::BadChecksum));
    assert_eq!(gw.accept_data(at(RELAY), &[0x04, 0, 0]), Err(DataDrop::NotData));
    let c = gw.tunnel_counters(ip(RELAY)).unwrap();
    assert_eq!(c.packets, 2);
    assert_eq!(c.bytes as usize, good.len() - 2 + data(sg(S6), 2, b"v6").len() - 2);
    assert_eq!(c.drops.get(DataDrop::NotJoined), 1);
    assert_eq!(c.drops.get(DataDrop::TtlExpired), 1);
    let g = gw.counters();
    assert_eq!(g.data_drops.get(DataDrop::NotFromRelay), 2);
    assert_eq!(g.data_drops.get(DataDrop::NotData), 1);
    assert_eq!(g.data_packets, 2);
    let json = serde_json::to_value(gw.status(now)).unwrap();
    assert_eq!(json["counters"]["data_drops"]["not-from-relay"], 2);
    assert_eq!(json["tunnels"][0]["counters"]["drops"]["ttl-expired"], 1);
    // A left (S,G) is dropped at once.
    gw.leave(ip(RELAY), sg(S6), now).unwrap();
    assert_eq!(gw.accept_data(at(RELAY), &data(sg(S6), 2, b"v6")), Err(DataDrop::NotJoined));
    // Trailing bytes after the inner datagram are cut off.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 9]);
    assert_eq!(gw.accept_data(at(RELAY), &padded).unwrap().len(), good.len() - 2);
}

#[test]
fn data_is_accepted_only_from_the_advertised_relay() {
    let mut gw = gateway();
    let now = Instant::now();
    gw.add_tunnel(ip(RELAY), Some(ip(DISCOVERY)), now).unwrap();
    let n = discovery_nonce(&drain(&mut gw));
    let advertised = ip("203.0.113.99");
    gw.handle_datagram(now, at(DISCOVERY), None, &advertisement(n, advertised)).unwrap();
    gw.join(ip(RELAY), sg(S1), now).unwrap();
    drain(&mut gw);
    let d = data(sg(S1), 16, b"x");
    assert_eq!(gw.accept_data(at(DISCOVERY), &d), Err(DataDrop::NotFromRelay));
    assert_eq!(gw.accept_data(at(RELAY), &d), Err(DataDrop::NotFromRelay));
    assert!(gw.accept_data(SocketAddr::new(advertised, 2268), &d).is_ok());
}

// ----- API rules and scale ------------------------------------------------------------------------

#[test]
fn api_errors_and_limits() {
    let mut gw = gateway_with(Config { max_tunnels: 2, max_sgs: 2, ..quiet() });
    let now = Instant::now();
    let relay = ip(RELAY);
    assert_eq!(gw.add_tunnel(ip("224.0.0.1"), None, now), Err(GatewayError::InvalidAddress(ip("224.0.0.1"))));
    gw.add_tunnel(relay, None, now).unwrap();
    gw.add_tunnel(relay, None, now).unwrap();
    assert_eq!(gw.add_tunnel(relay, Some(ip(DISCOVERY)), now), Err(GatewayError::Exists(relay)));
    gw.add_tunnel(ip("203.0.113.16"), None, now).unwrap();
    assert_eq!(gw.add_tunnel(ip("203.0.113.17"), None, now), Err(GatewayError::TooManyTunnels));
    assert!(gw.join(relay, sg(S1), now).unwrap());
    assert!(!gw.join(relay, sg(S1), now).unwrap());
    assert!(gw.join(relay, sg(S2), now).unwrap());
    assert_eq!(gw.join(relay, sg(S6), now), Err(GatewayError::TooManySgs));
    let bad = mcast_wire::SourceGroup::new(ip("232.1.1.1"), ip("232.1.1.1"));
    assert!(matches!(gw.join(relay, bad, now), Err(GatewayError::InvalidSg(_))));
    assert_eq!(gw.join(ip("203.0.113.99"), sg(S1), now), Err(GatewayError::UnknownTunnel(ip("203.0.113.99"))));
    assert_eq!(gw.joined(relay).count(), 2);
}

#[test]
fn two_tunnels_cannot_share_a_relay_address() {
    let mut gw = gateway();
    let now = Instant::now();
    gw.add_tunnel(ip(RELAY), None, now).unwrap();
    gw.add_tunnel(ip("192.0.2.200"), Some(ip(DISCOVERY)), now).unwrap();
    let n = discovery_nonce(&drain(&mut gw));
    assert_eq!(
        gw.handle_datagram(now, at(DISCOVERY), None, &advertisement(n, ip(RELAY))),
        Err(ControlDrop::RelayInUse)
    );
    assert_eq!(events(&mut gw), [Event::RelayFailed { relay: ip("192.0.2.200"), reason: FailReason::RelayInUse }]);
}

#[test]
fn thousands_of_tunnels_share_one_ordered_timer_set() {
    let mut gw = gateway_with(Config { max_tunnels: 5000, ..quiet() });
    let mut now = Instant::now();
    let t0 = now;
    let relays: Vec<IpAddr> =
        (0..3000u32).map(|i| IpAddr::from([10, 100, (i / 250) as u8, (i % 250 + 1) as u8])).collect();
    for (i, r) in relays.iter().enumerate() {
        // Spread the start times so the deadlines interleave.
        let at_ = t0 + Duration::from_millis(i as u64);
        gw.add_tunnel(*r, None, at_).unwrap();
        gw.join(*r, sg(&format!("198.51.100.{},232.3.{}.{}", i % 200 + 1, i / 250, i % 250)), at_).unwrap();
    }
    let first = requests(&drain(&mut gw));
    assert_eq!(first.len(), 3000);
    // Answer half of them at once: their next deadline becomes the refresh (QI 60 s).
    for (dest, nonce, _) in first.iter().take(1500) {
        gw.handle_datagram(now, *dest, None, &query(Family::V4, MAC, *nonce, 60, 2, false, None)).unwrap();
    }
    drain(&mut gw);
    // Walk the timers: deadlines come out in order; every unanswered tunnel retransmits
    // within [1 s, 1 s] then [1 s, 2 s], the answered ones only repeat their report.
    let mut last = t0;
    let mut retransmitted = std::collections::HashSet::new();
    let mut fired = 0usize;
    while let Some(t) = gw.poll_timeout() {
        if t > t0 + secs(4.0) {
            break;
        }
        assert!(t >= last, "timers in order");
        last = t;
        now = t;
        gw.handle_timeout(now);
        fired += 1;
        for tx in drain(&mut gw) {
            if tx.payload[0] == 3 {
                retransmitted.insert(tx.destination.ip());
            }
        }
    }
    assert!(fired > 0);
    assert_eq!(retransmitted.len(), 1500, "exactly the unanswered tunnels retransmit");
    assert!(first.iter().skip(1500).all(|(d, _, _)| retransmitted.contains(&d.ip())));
    let st = gw.status(now);
    assert_eq!(st.tunnels.len(), 3000);
    assert_eq!(st.joined_sgs, 3000);
    assert_eq!(st.tunnels.iter().filter(|t| t.state == TunnelState::Established).count(), 1500);
}

#[test]
fn status_serialises() {
    let mut gw = gateway();
    let now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 125);
    let json = serde_json::to_value(gw.status(now)).unwrap();
    let t = &json["tunnels"][0];
    assert_eq!(t["relay"], RELAY);
    assert_eq!(t["state"], "established");
    assert_eq!(t["sgs"][0], S1);
    assert_eq!(t["families"][0]["family"], "ipv4");
    assert_eq!(t["families"][0]["query_interval_secs"], 125.0);
    assert_eq!(t["families"][0]["next_refresh_secs"], 125.0);
    assert_eq!(json["counters"]["sent"]["membership-update"], 1);
    assert_eq!(json["counters"]["received"]["membership-query"], 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Random bytes from the relay's own address (the worst case: past the sender check)
    /// never panic and never lose the tunnel's state.
    #[test]
    fn random_datagrams_never_panic(
        payloads in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..80), 1..20),
        kinds in proptest::collection::vec(0u8..8, 1..20),
    ) {
        let mut gw = gateway();
        let now = Instant::now();
        established(&mut gw, now, &[sg(S1)], 125);
        for (mut p, k) in payloads.into_iter().zip(kinds) {
            if let Some(first) = p.first_mut() {
                *first = k; // mostly valid types, to get past the first check
            }
            let _ = gw.handle_datagram(now, at(RELAY), Some(local()), &p);
            let _ = gw.accept_data(at(RELAY), &p);
            let _ = gw.handle_datagram(now, at("198.51.100.1"), None, &p);
        }
        drain(&mut gw);
        proptest::prop_assert!(gw.joined(ip(RELAY)).any(|s| s == sg(S1)));
        proptest::prop_assert!(gw.accept_data(at(RELAY), &data(sg(S1), 16, b"ok")).is_ok());
    }

    /// Random API sequences with random time steps keep the bookkeeping consistent.
    #[test]
    fn random_operations_keep_invariants(ops in proptest::collection::vec((0u8..6, 0u8..4, 0u64..3000), 1..80)) {
        let mut gw = gateway();
        let mut now = Instant::now();
        let relays = [ip(RELAY), ip("203.0.113.16")];
        let sgs = [sg(S1), sg(S2), sg(S6), sg("198.51.100.12,232.1.1.3")];
        for (op, i, dt) in ops {
            now += Duration::from_millis(dt);
            let r = relays[(i % 2) as usize];
            let s = sgs[i as usize];
            match op {
                0 => { let _ = gw.add_tunnel(r, if i >= 2 { Some(ip(DISCOVERY)) } else { None }, now); }
                1 | 2 => { let _ = gw.join(r, s, now); }
                3 => { let _ = gw.leave(r, s, now); }
                4 => { let _ = gw.remove_tunnel(r, now); }
                _ => gw.handle_timeout(now),
            }
            for tx in drain(&mut gw) {
                // Answer every Request like a relay would, to drive all paths.
                if let Ok(Repr::Request { nonce, p_flag }) = Repr::parse_bytes(&tx.payload) {
                    let family = Family::from_p_flag(p_flag);
                    let _ = gw.handle_datagram(now, tx.destination, Some(local()), &query(family, MAC, nonce, 5, 2, false, None));
                }
                if let Ok(Repr::RelayDiscovery { nonce }) = Repr::parse_bytes(&tx.payload) {
                    let _ = gw.handle_datagram(now, tx.destination, None, &advertisement(nonce, relays[1]));
                }
            }
            events(&mut gw);
            let st = gw.status(now);
            let counted: usize = st.tunnels.iter().map(|t| t.sgs.len()).sum();
            proptest::prop_assert_eq!(counted, st.joined_sgs);
            if let Some(t) = gw.poll_timeout() {
                proptest::prop_assert!(t + Duration::from_secs(200) >= now);
            }
        }
        gw.shutdown(now);
        drain(&mut gw);
        proptest::prop_assert_eq!(gw.poll_timeout(), None);
    }
}

#[test]
fn no_traffic_backs_off_from_4_s_to_120_s_and_traffic_resets_it() {
    let mut gw = gateway_with(Config::default());
    let mut now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 3600);
    events(&mut gw);
    let mut last = now;
    let mut gaps = Vec::new();
    // Answer every Request so only the no-traffic timer drives events.
    while gaps.len() < 8 {
        let t = gw.poll_timeout().unwrap();
        now = t;
        gw.handle_timeout(now);
        for (_, nonce, _) in requests(&drain(&mut gw)) {
            gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC, nonce, 3600, 2, false, None)).unwrap();
            drain(&mut gw);
        }
        for e in events(&mut gw) {
            if let Event::NoTraffic { .. } = e {
                gaps.push(now - last);
                last = now;
            }
        }
    }
    for (n, gap) in gaps.iter().enumerate() {
        let hi = secs((4u64 << n).min(120) as f64);
        assert!(*gap >= secs(4.0) && *gap <= hi, "silent period {n}: {gap:?} not in [4 s, {hi:?}]");
    }
    // Traffic resets the backoff: the next check is 4 s after the one that saw data.
    gw.accept_data(at(RELAY), &data(sg(S1), 16, b"x")).unwrap();
    let check = gw.status(now).tunnels[0].no_traffic_check_in_secs.unwrap();
    run_for(&mut gw, &mut now, secs(check + 0.001));
    assert!(events(&mut gw).is_empty(), "data arrived in that period");
    assert!(gw.status(now).tunnels[0].no_traffic_check_in_secs.unwrap() <= 4.0);
}

#[test]
fn a_join_while_closing_cancels_the_closing_repetitions() {
    let mut gw = gateway();
    let mut now = Instant::now();
    established(&mut gw, now, &[sg(S1)], 125);
    run_for(&mut gw, &mut now, secs(1.0));
    gw.leave(ip(RELAY), sg(S1), now).unwrap();
    assert_eq!(teardowns(&drain(&mut gw)).len(), 1);
    assert_eq!(gw.status(now).tunnels[0].state, TunnelState::Closing);
    gw.join(ip(RELAY), sg(S1), now).unwrap();
    let (_, nonce, _) = request(&drain(&mut gw));
    let sent: Vec<_> = run_for(&mut gw, &mut now, secs(0.9)).into_iter().map(|(_, t)| t).collect();
    assert!(teardowns(&sent).is_empty(), "no Teardown repetition after the rejoin");
    gw.handle_datagram(now, at(RELAY), None, &query(Family::V4, MAC2, nonce, 125, 2, false, None)).unwrap();
    assert_eq!(updates(&drain(&mut gw))[0].entries(), [(ModeIsInclude, sg(S1))]);
}
