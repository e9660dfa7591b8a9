//! Discovery lookups against a real DNS server (mcast-labdns on 127.0.0.1, random port).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcast_driad::{
    Discovery, DiscoveryConfig, DiscoveryState, DnsConfig, Event, LookupError, Negative, RateLimit, reverse_name,
};
use mcast_labdns::{LabDns, Mode, Options};

const REVERSE: &str = r#"$ORIGIN 100.51.198.in-addr.arpa.
$TTL 300
@ IN SOA ns.example.net. hostmaster.example.net. ( 1 7200 600 86400 45 )
  IN NS ns.example.net.
; type 1 and 2
10 IN AMTRELAY 10 0 1 203.0.113.15
   IN AMTRELAY 20 1 2 2001:db8::16
; type 3: generic form without the root label (as deployed), presentation form with it
11 IN TYPE260 \# 19 10030472347634076578616d706c65036e6574
   120 IN AMTRELAY 30 1 3 relays.example.net.
   IN AMTRELAY 40 0 3 nowhere.example.net.
; type 0
12 60 IN AMTRELAY 0 0 0 .
   IN AMTRELAY 10 0 1 203.0.113.15
; RFC 2317-style delegation to another zone (like Akamai's 4.185.212.23.in-addr.arpa)
13 77 IN CNAME 13.v4.driad.example.com.
; NODATA
14 IN PTR src14.example.net.
; malformed among good ones
15 IN TYPE260 \# 3 0a0101
   IN TYPE260 \# 6 0a01cb00710f
   IN TYPE260 \# 4 0a03c00c
   IN TYPE260 \# 5 0a05010203
; a type-3 name that resolves to nothing, alone
16 IN AMTRELAY 10 0 3 nowhere.example.net.
; short TTL, for re-resolution
17 1 IN AMTRELAY 10 0 1 203.0.113.15
"#;

const EXAMPLE_NET: &str = r#"$ORIGIN example.net.
$TTL 600
@ IN SOA ns hostmaster 1 7200 600 86400 30
ns IN A 127.0.0.1
r4v4 200 IN A 203.0.113.15
relays IN A 203.0.113.15
       IN A 203.0.113.16
       IN AAAA 2001:db8::15
       IN TXT "not an address"
"#;

const EXAMPLE_COM: &str = r#"$ORIGIN example.com.
$TTL 600
@ IN SOA ns.example.net. hostmaster.example.net. 1 7200 600 86400 30
13.v4.driad IN AMTRELAY 16 0 3 relay.amt.example.com.
relay.amt IN CNAME r4v4.example.net.
7.v4.driad 500 IN AMTRELAY 5 0 1 203.0.113.16
"#;

/// RFC 6672 DNAME: the whole 192.0.2.0/24 reverse zone is redirected.
const DNAME_ZONE: &str = r#"$ORIGIN 2.0.192.in-addr.arpa.
@ 600 IN SOA ns.example.net. hostmaster.example.net. 1 7200 600 86400 30
@ 90 IN DNAME v4.driad.example.com.
"#;

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn lab() -> (tempfile::TempDir, LabDns) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reverse.zone", REVERSE);
    write(dir.path(), "example.net.zone", EXAMPLE_NET);
    write(dir.path(), "example.com.zone", EXAMPLE_COM);
    write(dir.path(), "dname.zone", DNAME_ZONE);
    let dns = LabDns::start(Options::dir("127.0.0.1:0".parse().unwrap(), dir.path())).await.unwrap();
    (dir, dns)
}

fn config(server: SocketAddr) -> DnsConfig {
    DnsConfig {
        nameservers: Some(vec![server]),
        timeout: Duration::from_millis(300),
        attempts: 0,
        ..DnsConfig::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cands(a: &mcast_driad::Answer) -> Vec<(String, u8, bool, Option<String>)> {
    let mut v: Vec<_> = a
        .candidates
        .iter()
        .map(|c| (c.addr.to_string(), c.precedence, c.discovery_optional, c.via_name.as_ref().map(|n| n.to_string())))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn types_1_and_2() {
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let a = d.lookup(ip("198.51.100.10")).await.unwrap();
    assert_eq!(a.name.to_string(), "10.100.51.198.in-addr.arpa.");
    assert_eq!(cands(&a), [("2001:db8::16".into(), 20, true, None), ("203.0.113.15".into(), 10, false, None)]);
    assert_eq!(a.ttl, Duration::from_secs(300));
    assert!(!a.no_relay);
    assert_eq!(a.negative, None);
    let mut lines: Vec<String> = a.records.iter().map(ToString::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "10.100.51.198.in-addr.arpa. 300 IN AMTRELAY 10 0 1 203.0.113.15",
            "10.100.51.198.in-addr.arpa. 300 IN AMTRELAY 20 1 2 2001:db8::16",
        ]
    );
}

#[tokio::test]
async fn type_3_names_resolve_to_a_and_aaaa_inheriting_precedence_and_d() {
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let a = d.lookup(ip("198.51.100.11")).await.unwrap();
    assert_eq!(
        cands(&a),
        [
            ("2001:db8::15".into(), 30, true, Some("relays.example.net.".into())),
            ("203.0.113.15".into(), 16, false, Some("r4v4.example.net.".into())),
            ("203.0.113.15".into(), 30, true, Some("relays.example.net.".into())),
            ("203.0.113.16".into(), 30, true, Some("relays.example.net.".into())),
        ]
    );
    // The stored name without the root label parsed like the one with it.
    assert_eq!(a.records.len(), 3);
    assert!(a.records.iter().any(|r| r.rdata.to_string() == "16 0 3 r4v4.example.net."));
    // A name with no address is skipped; it benches nothing.
    let empty: Vec<String> = a.empty_names.iter().map(ToString::to_string).collect();
    assert_eq!(empty, ["nowhere.example.net."]);
    assert!(a.failed_names.is_empty());
    // TTL: min of the records (120), the addresses (600) and the empty names' negative TTL (30).
    assert_eq!(a.ttl, Duration::from_secs(30));
}

#[tokio::test]
async fn type_3_name_without_root_label_through_a_cname_to_another_zone() {
    // 13.100.51.198.in-addr.arpa CNAME 13.v4.driad.example.com (RFC 2317 style), whose record
    // is type 3 relay.amt.example.com, a CNAME to r4v4.example.net (A, TTL 200).
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let a = d.lookup(ip("198.51.100.13")).await.unwrap();
    assert_eq!(cands(&a), [("203.0.113.15".into(), 16, false, Some("relay.amt.example.com.".into()))]);
    assert_eq!(a.records[0].owner.to_string(), "13.v4.driad.example.com.");
    assert_eq!(a.ttl, Duration::from_secs(77), "the CNAME's TTL bounds the answer");
}

#[tokio::test]
async fn dname_is_followed() {
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let a = d.lookup(ip("192.0.2.7")).await.unwrap();
    assert_eq!(cands(&a), [("203.0.113.16".into(), 5, false, None)]);
    assert_eq!(a.records[0].owner.to_string(), "7.v4.driad.example.com.");
    assert_eq!(a.ttl, Duration::from_secs(90), "the DNAME's (and synthesised CNAME's) TTL");
    // Below the DNAME with no record at the target: NXDOMAIN from the target zone.
    let a = d.lookup(ip("192.0.2.8")).await.unwrap();
    assert_eq!(a.negative, Some(Negative::NxDomain));
}

#[tokio::test]
async fn type_0_means_no_relay() {
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let a = d.lookup(ip("198.51.100.12")).await.unwrap();
    assert!(a.no_relay);
    assert!(a.candidates.is_empty(), "a relay at the same precedence as type 0 is not used");
    assert_eq!(a.records.len(), 2);
    assert_eq!(a.ttl, Duration::from_secs(60), "the type-0 record's TTL");
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_the_soa_minimum() {
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let nx = d.lookup(ip("198.51.100.99")).await.unwrap();
    assert_eq!(nx.negative, Some(Negative::NxDomain));
    assert!(nx.candidates.is_empty() && nx.records.is_empty());
    assert_eq!(nx.ttl, Duration::from_secs(45));
    let nodata = d.lookup(ip("198.51.100.14")).await.unwrap();
    assert_eq!(nodata.negative, Some(Negative::NoData));
    assert_eq!(nodata.ttl, Duration::from_secs(45));
}

#[tokio::test]
async fn malformed_rdata_is_skipped_and_the_others_count() {
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let a = d.lookup(ip("198.51.100.15")).await.unwrap();
    assert_eq!(cands(&a), [("203.0.113.15".into(), 10, false, None)]);
    let mut skipped = a.skipped.clone();
    skipped.sort();
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].starts_with("\\# 3 0a0101 ("), "{skipped:?}");
    assert!(skipped[1].starts_with("\\# 4 0a03c00c ("), "{skipped:?}");
    // An unassigned relay type (5) parses, is listed, and is not considered (§4.2.3).
    assert_eq!(a.records.len(), 2);
    assert!(a.records.iter().any(|r| r.rdata.relay.kind() == 5));
}

#[tokio::test]
async fn a_name_with_no_address_alone_is_no_records_not_an_error() {
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let a = d.lookup(ip("198.51.100.16")).await.unwrap();
    assert!(a.candidates.is_empty());
    assert!(!a.no_relay);
    assert_eq!(a.empty_names.len(), 1);
    assert_eq!(a.ttl, Duration::from_secs(30));
}

#[tokio::test]
async fn silent_server_times_out_quickly_then_comes_back() {
    let (_dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    dns.set_mode(Mode::Silent);
    let t0 = Instant::now();
    let e = d.lookup(ip("198.51.100.10")).await.unwrap_err();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(e, LookupError::Timeout, "{e}");
    dns.set_mode(Mode::ServFail);
    let e = d.lookup(ip("198.51.100.10")).await.unwrap_err();
    assert!(matches!(e, LookupError::Server(_)), "{e:?}");
    dns.set_mode(Mode::Refused);
    assert!(d.lookup(ip("198.51.100.10")).await.is_err());
    dns.set_mode(Mode::Normal);
    assert_eq!(d.lookup(ip("198.51.100.10")).await.unwrap().candidates.len(), 2);
}

#[tokio::test]
async fn server_that_never_answers_and_one_that_starts_later() {
    // Nothing but a bound UDP socket: queries vanish.
    let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = hole.local_addr().unwrap();
    let d = Discovery::new(&config(addr)).unwrap();
    let t0 = Instant::now();
    assert!(d.lookup(ip("198.51.100.10")).await.is_err());
    assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    // The server starts on that port.
    drop(hole);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reverse.zone", REVERSE);
    let mut opts = Options::dir(addr, dir.path());
    opts.watch_interval = None;
    let _dns = LabDns::start(opts).await.unwrap();
    assert_eq!(d.lookup(ip("198.51.100.10")).await.unwrap().candidates.len(), 2);
}

#[tokio::test]
async fn at_most_ten_queries_in_any_100ms() {
    let (_dir, dns) = lab().await;
    let d = Arc::new(Discovery::new(&config(dns.local_addr())).unwrap());
    dns.clear_queries();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30u8 {
        let d = d.clone();
        tasks.spawn(async move { d.lookup(IpAddr::from([198, 51, 100, 100 + i])).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap().unwrap().negative, Some(Negative::NxDomain));
    }
    let log = dns.queries();
    assert_eq!(log.len(), 30);
    for w in log.windows(11) {
        // Server-side arrival times: the limiter spaces the sends by >= 100 ms; allow for the
        // time between a send being allowed and the datagram arriving (scheduling on a busy host).
        assert!(w[10].at - w[0].at >= Duration::from_millis(70), "11 queries within {:?}", w[10].at - w[0].at);
    }
    assert!(t0.elapsed() >= Duration::from_millis(200));

    // Unlimited when configured so.
    let d = Discovery::new(&DnsConfig { rate_limit: None, ..config(dns.local_addr()) }).unwrap();
    dns.clear_queries();
    let t0 = Instant::now();
    for i in 0..30u8 {
        d.lookup(IpAddr::from([198, 51, 100, 100 + i])).await.unwrap();
    }
    assert!(t0.elapsed() < Duration::from_millis(200), "{:?}", t0.elapsed());
    let custom = RateLimit { queries: 2, per: Duration::from_millis(100) };
    let d = Discovery::new(&DnsConfig { rate_limit: Some(custom), ..config(dns.local_addr()) }).unwrap();
    let t0 = Instant::now();
    for i in 0..5u8 {
        d.lookup(IpAddr::from([198, 51, 100, 100 + i])).await.unwrap();
    }
    assert!(t0.elapsed() >= Duration::from_millis(200), "{:?}", t0.elapsed());
}

/// The whole loop: DiscoveryState driving real lookups; the zone is rewritten and the TTL
/// (1 s) expiry moves the source to the new relay.
#[tokio::test]
async fn state_follows_a_zone_change_after_the_ttl() {
    let (dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    let mut state = DiscoveryState::new(DiscoveryConfig::default(), 9);
    let source = ip("198.51.100.17");
    state.want(source);
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut rewritten = false;
    while Instant::now() < deadline {
        let now = Instant::now();
        state.handle_timeout(now);
        while let Some(s) = state.poll_lookup(now) {
            let result = d.lookup(s).await;
            state.on_answer(s, result, Instant::now());
        }
        while let Some(e) = state.poll_event() {
            events.push(e);
        }
        if !rewritten && state.choice(source).is_some() {
            write(
                dir.path(),
                "reverse.zone",
                &REVERSE.replace("17 1 IN AMTRELAY 10 0 1 203.0.113.15", "17 1 IN AMTRELAY 10 1 1 203.0.113.16"),
            );
            rewritten = true;
        }
        if events.iter().any(|e| matches!(e, Event::RelayChanged { .. })) {
            break;
        }
        let wake = state.poll_timeout().unwrap_or(now + Duration::from_millis(100));
        tokio::time::sleep(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(200))).await;
    }
    assert!(matches!(events[0], Event::Chosen { chosen, .. } if chosen.relay == ip("203.0.113.15")), "{events:?}");
    let changed = events.iter().find(|e| matches!(e, Event::RelayChanged { .. })).expect("no relay change");
    let Event::RelayChanged { from, to, .. } = changed else { unreachable!() };
    assert_eq!(*from, ip("203.0.113.15"));
    assert_eq!(to.relay, ip("203.0.113.16"));
    assert!(to.discovery_optional);
    assert_eq!(reverse_name(source).to_string(), "17.100.51.198.in-addr.arpa.");
}

/// hickory's cache is off: a changed record is seen at once by the next lookup, whatever its
/// TTL (DiscoveryState decides when to ask again, not the resolver).
#[tokio::test]
async fn no_hidden_resolver_cache() {
    let (dir, dns) = lab().await;
    let d = Discovery::new(&config(dns.local_addr())).unwrap();
    assert_eq!(d.lookup(ip("198.51.100.10")).await.unwrap().candidates.len(), 2);
    assert_eq!(d.lookup(ip("198.51.100.99")).await.unwrap().negative, Some(Negative::NxDomain));
    write(dir.path(), "reverse.zone", &format!("{REVERSE}99 IN AMTRELAY 10 0 1 203.0.113.99\n"));
    let report = dns.reload();
    assert!(report.errors.is_empty());
    assert_eq!(d.lookup(ip("198.51.100.99")).await.unwrap().candidates.len(), 1);
}
