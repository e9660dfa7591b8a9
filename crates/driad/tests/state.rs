//! The sans-IO discovery policy with injected time.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mcast_driad::{
    Answer, Candidate, Chosen, DiscoveryConfig, DiscoveryState, Event, LookupError, Name, Negative, Phase,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const S1: &str = "198.51.100.10";
const S2: &str = "198.51.100.11";
const R1: &str = "203.0.113.15";
const R2: &str = "203.0.113.16";
const R3: &str = "203.0.113.17";

fn answer(cands: &[(&str, u8, bool)], ttl: u64) -> Answer {
    Answer {
        name: Name::root(),
        records: Vec::new(),
        skipped: Vec::new(),
        candidates: cands
            .iter()
            .map(|&(a, p, d)| Candidate { addr: ip(a), precedence: p, discovery_optional: d, via_name: None })
            .collect(),
        ttl: Duration::from_secs(ttl),
        no_relay: false,
        negative: None,
        empty_names: Vec::new(),
        failed_names: Vec::new(),
    }
}

fn negative(kind: Negative, ttl: u64) -> Answer {
    Answer { negative: Some(kind), ..answer(&[], ttl) }
}

fn no_relay(ttl: u64) -> Answer {
    Answer { no_relay: true, ..answer(&[], ttl) }
}

fn chosen(relay: &str, d: bool) -> Chosen {
    Chosen { relay: ip(relay), discovery_optional: d }
}

fn events(s: &mut DiscoveryState) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// want + lookup + answer for one source.
fn resolve(s: &mut DiscoveryState, source: &str, result: Result<Answer, LookupError>, now: Instant) {
    s.want(ip(source));
    assert_eq!(s.poll_lookup(now), Some(ip(source)));
    s.on_answer(ip(source), result, now);
}

fn state() -> DiscoveryState {
    DiscoveryState::new(DiscoveryConfig::default(), 1)
}

#[test]
fn lowest_precedence_is_chosen() {
    let mut s = state();
    let t0 = Instant::now();
    resolve(&mut s, S1, Ok(answer(&[(R2, 20, false), (R1, 10, true)], 300)), t0);
    assert_eq!(events(&mut s), [Event::Chosen { source: ip(S1), chosen: chosen(R1, true) }]);
    assert_eq!(s.choice(ip(S1)), Some(chosen(R1, true)));
    assert_eq!(s.phase(ip(S1)), Some(Phase::Known));
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    assert_eq!(s.poll_lookup(t0), None, "nothing due before the TTL");
}

#[test]
fn ttl_expiry_re_resolves_and_keeps_the_relay_meanwhile() {
    let mut s = state();
    let t0 = Instant::now();
    resolve(&mut s, S1, Ok(answer(&[(R1, 10, false)], 60)), t0);
    events(&mut s);
    let t1 = t0 + Duration::from_secs(60);
    assert_eq!(s.poll_lookup(t1 - Duration::from_millis(1)), None);
    assert_eq!(s.poll_lookup(t1), Some(ip(S1)));
    assert_eq!(s.choice(ip(S1)), Some(chosen(R1, false)), "still in use while re-resolving");
    s.on_answer(ip(S1), Ok(answer(&[(R1, 10, false)], 60)), t1);
    assert!(events(&mut s).is_empty(), "same answer, no event");
    assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(60)));
}

#[test]
fn relay_changes_when_it_disappears_from_dns() {
    let mut s = state();
    let t0 = Instant::now();
    resolve(&mut s, S1, Ok(answer(&[(R1, 10, false), (R2, 20, false)], 60)), t0);
    events(&mut s);
    let t1 = t0 + Duration::from_secs(60);
    // A better relay appears: the current one stays (sticky).
    assert_eq!(s.poll_lookup(t1), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(answer(&[(R3, 5, false), (R1, 10, false)], 60)), t1);
    assert!(events(&mut s).is_empty());
    assert_eq!(s.choice(ip(S1)), Some(chosen(R1, false)));
    // The current one disappears: move to the best listed.
    let t2 = t1 + Duration::from_secs(60);
    assert_eq!(s.poll_lookup(t2), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(answer(&[(R2, 20, false), (R3, 5, false)], 60)), t2);
    assert_eq!(events(&mut s), [Event::RelayChanged { source: ip(S1), from: ip(R1), to: chosen(R3, false) }]);
    // Its D bit changes: reported, same relay.
    let t3 = t2 + Duration::from_secs(60);
    assert_eq!(s.poll_lookup(t3), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(answer(&[(R3, 5, true)], 60)), t3);
    assert_eq!(events(&mut s), [Event::RelayChanged { source: ip(S1), from: ip(R3), to: chosen(R3, true) }]);
}

#[test]
fn negative_answers_are_cached_for_the_soa_minimum_within_bounds() {
    let t0 = Instant::now();
    for (ttl, expect) in [(30, 30), (0, 5), (7200, 3600)] {
        let mut s = state();
        resolve(&mut s, S1, Ok(negative(Negative::NxDomain, ttl)), t0);
        let until = t0 + Duration::from_secs(expect);
        assert_eq!(events(&mut s), [Event::NoRecords { source: ip(S1), until, dropped: None }]);
        assert_eq!(s.phase(ip(S1)), Some(Phase::NoRecords));
        assert_eq!(s.poll_lookup(until - Duration::from_millis(1)), None);
        assert_eq!(s.poll_timeout(), Some(until));
        assert_eq!(s.poll_lookup(until), Some(ip(S1)));
        // Still nothing: no second event.
        s.on_answer(ip(S1), Ok(negative(Negative::NoData, ttl)), until);
        assert!(events(&mut s).is_empty());
    }
}

#[test]
fn records_removed_from_dns_drop_the_relay() {
    let mut s = state();
    let t0 = Instant::now();
    resolve(&mut s, S1, Ok(answer(&[(R1, 10, false)], 10)), t0);
    events(&mut s);
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(s.poll_lookup(t1), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(negative(Negative::NxDomain, 60)), t1);
    let until = t1 + Duration::from_secs(60);
    assert_eq!(events(&mut s), [Event::NoRecords { source: ip(S1), until, dropped: Some(ip(R1)) }]);
    assert_eq!(s.choice(ip(S1)), None);
    // Records come back after the negative TTL.
    assert_eq!(s.poll_lookup(until), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(answer(&[(R2, 10, false)], 10)), until);
    assert_eq!(events(&mut s), [Event::Chosen { source: ip(S1), chosen: chosen(R2, false) }]);
}

#[test]
fn type0_means_no_relay_for_its_ttl() {
    let mut s = state();
    let t0 = Instant::now();
    resolve(&mut s, S1, Ok(answer(&[(R1, 10, false)], 10)), t0);
    events(&mut s);
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(s.poll_lookup(t1), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(no_relay(3600)), t1);
    let until = t1 + Duration::from_secs(3600);
    assert_eq!(events(&mut s), [Event::NoRelay { source: ip(S1), until, dropped: Some(ip(R1)) }]);
    assert_eq!(s.phase(ip(S1)), Some(Phase::NoRelay));
    assert_eq!(s.choice(ip(S1)), None);
    assert_eq!(s.poll_lookup(until - Duration::from_secs(1)), None, "not retried sooner than the TTL");
    assert_eq!(s.poll_lookup(until), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(no_relay(3600)), until);
    assert!(events(&mut s).is_empty());
}

#[test]
fn lookup_failures_back_off_randomly_from_1s_to_120s() {
    // Over many seeds, the n-th failure in a row waits a random time in [1 s, min(2^(n-1), 120) s].
    let mut max_seen = [Duration::ZERO; 10];
    for seed in 0..200 {
        let mut s = DiscoveryState::new(DiscoveryConfig::default(), seed);
        let mut now = Instant::now();
        s.want(ip(S1));
        for n in 1..=10u32 {
            assert_eq!(s.poll_lookup(now), Some(ip(S1)));
            s.on_answer(ip(S1), Err(LookupError::Timeout), now);
            let ev = events(&mut s);
            let [Event::LookupFailed { retry_at, keeping: None, .. }] = ev.as_slice() else { panic!("{ev:?}") };
            let delay = *retry_at - now;
            let hi = Duration::from_secs((1u64 << (n - 1)).min(120));
            assert!(delay >= Duration::from_secs(1) && delay <= hi, "failure {n}: {delay:?} > {hi:?}");
            max_seen[n as usize - 1] = max_seen[n as usize - 1].max(delay);
            assert_eq!(s.phase(ip(S1)), Some(Phase::Failed));
            assert_eq!(s.poll_lookup(*retry_at - Duration::from_millis(1)), None);
            now = *retry_at;
        }
    }
    assert!(max_seen[9] > Duration::from_secs(100), "the range really opens up to 120 s: {max_seen:?}");
    assert!(max_seen[3] > Duration::from_secs(6));
}

#[test]
fn backoff_resets_after_success_and_a_failed_refresh_keeps_the_relay() {
    let mut s = state();
    let t0 = Instant::now();
    resolve(&mut s, S1, Ok(answer(&[(R1, 10, false)], 30)), t0);
    events(&mut s);
    let t1 = t0 + Duration::from_secs(30);
    assert_eq!(s.poll_lookup(t1), Some(ip(S1)));
    s.on_answer(ip(S1), Err(LookupError::Server("SERVFAIL".into())), t1);
    let ev = events(&mut s);
    assert!(matches!(ev.as_slice(), [Event::LookupFailed { keeping: Some(r), .. }] if *r == ip(R1)), "{ev:?}");
    assert_eq!(s.choice(ip(S1)), Some(chosen(R1, false)));
    assert_eq!(s.phase(ip(S1)), Some(Phase::Known));
    assert_eq!(s.status(t1).sources[0].failures, 1);
    let t2 = t1 + Duration::from_secs(1);
    assert_eq!(s.poll_lookup(t2), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(answer(&[(R1, 10, false)], 30)), t2);
    let st = s.status(t2);
    assert_eq!(st.sources[0].failures, 0);
    assert_eq!(st.sources[0].last_error, None);
}

#[test]
fn hold_down_moves_every_source_to_its_next_relay() {
    let mut s = state();
    let t0 = Instant::now();
    resolve(&mut s, S1, Ok(answer(&[(R1, 10, false), (R2, 20, true)], 3600)), t0);
    resolve(&mut s, S2, Ok(answer(&[(R1, 10, false), (R3, 30, false)], 3600)), t0);
    events(&mut s);
    let t1 = t0 + Duration::from_secs(5);
    s.relay_failed(ip(R1), "no Relay Advertisement", t1);
    assert_eq!(
        events(&mut s),
        [
            Event::RelayChanged { source: ip(S1), from: ip(R1), to: chosen(R2, true) },
            Event::RelayChanged { source: ip(S2), from: ip(R1), to: chosen(R3, false) },
        ]
    );
    assert!(s.is_held_down(ip(R1), t1));
    let hold_end = t1 + Duration::from_secs(600);
    assert_eq!(s.poll_timeout(), Some(hold_end));
    let st = s.status(t1);
    assert_eq!(st.held_down.len(), 1);
    assert_eq!(st.held_down[0].reason, "no Relay Advertisement");
    assert!(st.sources[0].candidates[0].held_down);

    // A new source listing R1 first does not get it while it is held down ...
    let s3 = "198.51.100.12";
    resolve(&mut s, s3, Ok(answer(&[(R1, 10, false), (R2, 20, true)], 3600)), t1);
    assert_eq!(events(&mut s), [Event::Chosen { source: ip(s3), chosen: chosen(R2, true) }]);
    // ... and after the hold-down the sources stay where they are (no flapping) ...
    s.handle_timeout(hold_end);
    assert!(!s.is_held_down(ip(R1), hold_end));
    assert!(s.status(hold_end).held_down.is_empty());
    assert_eq!(s.choice(ip(S1)), Some(chosen(R2, true)));
    // ... while a source discovered afterwards uses R1 again.
    let s4 = "198.51.100.13";
    resolve(&mut s, s4, Ok(answer(&[(R1, 10, false), (R2, 20, true)], 3600)), hold_end);
    assert_eq!(events(&mut s), [Event::Chosen { source: ip(s4), chosen: chosen(R1, false) }]);
}

#[test]
fn no_candidate_left_is_unreachable_with_backoff() {
    let mut s = state();
    let t0 = Instant::now();
    resolve(&mut s, S1, Ok(answer(&[(R1, 10, false)], 3600)), t0);
    events(&mut s);
    s.relay_failed(ip(R1), "L flag", t0);
    let ev = events(&mut s);
    let [Event::Unreachable { source, retry_at, dropped: Some(d) }] = ev.as_slice() else { panic!("{ev:?}") };
    assert_eq!((*source, *d), (ip(S1), ip(R1)));
    assert_eq!(*retry_at - t0, Duration::from_secs(1), "first retry after 1 s");
    assert_eq!(s.phase(ip(S1)), Some(Phase::Failed));
    assert_eq!(s.choice(ip(S1)), None);
    assert!(s.status(t0).sources[0].last_error.as_deref().unwrap().contains("held down"));
    // DNS is asked again; R1 is still held down: unreachable again, longer backoff.
    let t1 = *retry_at;
    assert_eq!(s.poll_lookup(t1), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(answer(&[(R1, 10, false)], 3600)), t1);
    let ev = events(&mut s);
    let [Event::Unreachable { retry_at, dropped: None, .. }] = ev.as_slice() else { panic!("{ev:?}") };
    let d = *retry_at - t1;
    assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2), "{d:?}");
    // DNS now lists another relay.
    let t2 = *retry_at;
    assert_eq!(s.poll_lookup(t2), Some(ip(S1)));
    s.on_answer(ip(S1), Ok(answer(&[(R1, 10, false), (R2, 50, false)], 3600)), t2);
    assert_eq!(events(&mut s), [Event::Chosen { source: ip(S1), chosen: chosen(R2, false) }]);
    assert_eq!(s.status(t2).sources[0].failures, 0);
}

#[test]
fn at_most_max_in_flight_lookups_and_none_blocks_the_others() {
    let mut s = DiscoveryState::new(DiscoveryConfig { max_in_flight: 2, ..DiscoveryConfig::default() }, 3);
    let t0 = Instant::now();
    let sources: Vec<IpAddr> = (10..15).map(|i| ip(&format!("198.51.100.{i}"))).collect();
    for &src in &sources {
        s.want(src);
    }
    let a = s.poll_lookup(t0).unwrap();
    let b = s.poll_lookup(t0).unwrap();
    assert_eq!((a, b), (sources[0], sources[1]), "in the order wanted");
    assert_eq!(s.poll_lookup(t0), None);
    assert_eq!(s.poll_timeout(), None, "nothing to wait for but answers");
    // The second answers first (the first is slow): the third starts.
    s.on_answer(b, Ok(answer(&[(R1, 10, false)], 60)), t0);
    assert_eq!(s.poll_lookup(t0), Some(sources[2]));
    assert_eq!(s.poll_lookup(t0), None);
    s.on_answer(sources[2], Ok(answer(&[(R2, 10, false)], 60)), t0);
    assert_eq!(s.poll_lookup(t0), Some(sources[3]));
    assert_eq!(s.choice(sources[2]), Some(chosen(R2, false)), "known while the first is still out");
}

#[test]
fn forgotten_sources_ignore_late_answers() {
    let mut s = state();
    let t0 = Instant::now();
    s.want(ip(S1));
    assert_eq!(s.poll_lookup(t0), Some(ip(S1)));
    s.forget(ip(S1));
    s.on_answer(ip(S1), Ok(answer(&[(R1, 10, false)], 60)), t0);
    assert!(events(&mut s).is_empty());
    assert_eq!(s.choice(ip(S1)), None);
    assert_eq!(s.sources().count(), 0);
    // An answer nobody asked for is ignored too.
    s.want(ip(S2));
    s.on_answer(ip(S2), Ok(answer(&[(R1, 10, false)], 60)), t0);
    assert_eq!(s.choice(ip(S2)), None);
}

#[test]
fn status_is_json() {
    let mut s = state();
    let t0 = Instant::now();
    let mut a = answer(&[(R1, 10, false)], 60);
    a.records.push(mcast_driad::RelayRecord {
        owner: Name::from_ascii("10.100.51.198.in-addr.arpa.").unwrap(),
        ttl: 60,
        rdata: "10 0 1 203.0.113.15".parse().unwrap(),
    });
    a.skipped.push("\\# 3 0a0101 (truncated)".into());
    resolve(&mut s, S1, Ok(a), t0);
    s.relay_failed(ip(R2), "test", t0);
    let json = serde_json::to_value(s.status(t0 + Duration::from_secs(10))).unwrap();
    let src = &json["sources"][0];
    assert_eq!(src["source"], S1);
    assert_eq!(src["state"], "known");
    assert_eq!(src["records"][0], "10.100.51.198.in-addr.arpa. 60 IN AMTRELAY 10 0 1 203.0.113.15");
    assert_eq!(src["skipped"][0], "\\# 3 0a0101 (truncated)");
    assert_eq!(src["chosen"]["relay"], R1);
    assert_eq!(src["candidates"][0]["precedence"], 10);
    assert_eq!(src["expires_in"], 50.0);
    assert_eq!(json["held_down"][0]["relay"], R2);
    assert_eq!(json["held_down"][0]["remaining"], 590.0);
}

/// 10,000 sources (issue 10's scale benchmark): lookups go out in the order the sources were
/// wanted, never more than `max_in_flight` at once, answers reschedule them by their TTL, and
/// forgetting sources in every state keeps the queue consistent. The queue makes each poll
/// O(log n); with the old scan of every source this loop took seconds.
#[test]
fn ten_thousand_sources_are_looked_up_in_order_with_bounded_lookups() {
    let mut s = state();
    let t = Instant::now();
    let sources: Vec<IpAddr> =
        (0..10_000u32).map(|i| IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 + i))).collect();
    for src in &sources {
        s.want(*src);
    }
    let max = s.config().max_in_flight;
    let mut next = 0;
    let mut out = std::collections::VecDeque::new();
    let started = std::time::Instant::now();
    while next < sources.len() || !out.is_empty() {
        while let Some(src) = s.poll_lookup(t) {
            assert_eq!(src, sources[next], "in the order wanted");
            next += 1;
            out.push_back(src);
            assert!(out.len() <= max, "at most {max} in flight");
        }
        let src = out.pop_front().expect("a lookup is out");
        // Every tenth source gets a 60 s answer, the rest 30 s.
        let ttl = if u32::from(src.to_string().parse::<std::net::Ipv4Addr>().unwrap()) % 10 == 0 { 60 } else { 30 };
        s.on_answer(src, Ok(answer(&[(R1, 10, false)], ttl)), t);
    }
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(events(&mut s).len(), 10_000);
    assert_eq!(s.poll_lookup(t + Duration::from_secs(29)), None);
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(30)));
    // Forget half (some in flight, some waiting): the rest stay consistent.
    assert_eq!(s.poll_lookup(t + Duration::from_secs(30)), Some(sources[0]));
    for src in sources.iter().step_by(2) {
        s.forget(*src);
    }
    let due: Vec<IpAddr> = std::iter::from_fn(|| s.poll_lookup(t + Duration::from_secs(30))).collect();
    assert_eq!(due.len(), max, "the in-flight count fell with the forgotten lookup");
    assert_eq!(due[0], sources[1]);
    assert!(due.iter().all(|d| !sources.iter().step_by(2).any(|f| f == d)));
}
