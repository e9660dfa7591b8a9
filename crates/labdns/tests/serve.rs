//! The lab DNS server answering real queries over UDP and TCP on 127.0.0.1.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use mcast_labdns::{LabDns, Mode, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const AMT: RecordType = RecordType::Unknown(260);

const REVERSE: &str = r#"$ORIGIN 100.51.198.in-addr.arpa.
$TTL 300
@ IN SOA ns.example.net. hostmaster.example.net. ( 1 7200 600 86400 30 )
  IN NS ns.example.net.
10 IN AMTRELAY 10 0 1 203.0.113.15
   IN AMTRELAY 20 0 1 203.0.113.16
11 IN TYPE260 \# 22 1003047234763403616d7406616b61646e73036e6574
12 IN PTR src12.example.net.
13 IN CNAME 13.v4.driad.example.com.
14 IN CNAME local
local 60 IN AMTRELAY 5 1 2 2001:db8::15
"#;

const DRIAD: &str = r#"$ORIGIN example.com.
$TTL 600
@ IN SOA ns.example.com. hostmaster.example.com. 1 7200 600 86400 45
13.v4.driad IN AMTRELAY 16 0 3 r4v4.amt.example.com.
r4v4.amt IN A 203.0.113.15
old IN DNAME new.example.com.
x.new IN AMTRELAY 1 0 1 203.0.113.99
"#;

fn write(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn start(dir: &Path) -> LabDns {
    LabDns::start(Options::dir("127.0.0.1:0".parse().unwrap(), dir)).await.unwrap()
}

fn query_bytes(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.metadata.recursion_desired = true;
    m.to_vec().unwrap()
}

async fn udp_query(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&query_bytes(name, rtype), server).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await.ok()?.unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    udp_query(server, name, rtype).await.expect("no answer")
}

async fn tcp_query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    let q = query_bytes(name, rtype);
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let mut len = [0; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn raw(r: &Record) -> Vec<u8> {
    match &r.data {
        RData::Unknown { rdata, .. } => rdata.anything.clone(),
        other => panic!("expected unknown rdata, got {other:?}"),
    }
}

fn amt_rdata(m: &Message) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = m.answers.iter().filter(|r| r.record_type() == AMT).map(raw).collect();
    v.sort();
    v
}

fn soa_minimum(m: &Message) -> Option<u32> {
    m.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.minimum),
        _ => None,
    })
}

#[tokio::test]
async fn answers_amtrelay_over_udp_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reverse.zone", REVERSE);
    write(dir.path(), "driad.zone", DRIAD);
    let dns = start(dir.path()).await;
    assert_eq!(dns.zones().len(), 2);

    let m = query(dns.local_addr(), "10.100.51.198.in-addr.arpa.", AMT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(amt_rdata(&m), [vec![10, 1, 203, 0, 113, 15], vec![20, 1, 203, 0, 113, 16]]);
    assert!(m.answers.iter().all(|r| r.ttl == 300));

    let t = tcp_query(dns.local_addr(), "10.100.51.198.in-addr.arpa.", AMT).await;
    assert_eq!(amt_rdata(&t), amt_rdata(&m));

    // Generic form served byte for byte (no root label, as Akamai publishes it).
    let m = query(dns.local_addr(), "11.100.51.198.in-addr.arpa.", AMT).await;
    assert_eq!(amt_rdata(&m)[0].len(), 22);
}

#[tokio::test]
async fn negative_answers_carry_the_soa() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reverse.zone", REVERSE);
    let dns = start(dir.path()).await;

    let nx = query(dns.local_addr(), "99.100.51.198.in-addr.arpa.", AMT).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.answers.is_empty());
    assert_eq!(soa_minimum(&nx), Some(30));

    let nodata = query(dns.local_addr(), "12.100.51.198.in-addr.arpa.", AMT).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(soa_minimum(&nodata), Some(30));

    // Not ours at all.
    let refused = query(dns.local_addr(), "example.org.", RecordType::A).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn cname_inside_a_zone_is_chased_across_zones_left_to_the_resolver() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reverse.zone", REVERSE);
    write(dir.path(), "driad.zone", DRIAD);
    let dns = start(dir.path()).await;

    let m = query(dns.local_addr(), "14.100.51.198.in-addr.arpa.", AMT).await;
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(amt_rdata(&m).len(), 1, "same-zone CNAME chased: {m:?}");

    let m = query(dns.local_addr(), "13.100.51.198.in-addr.arpa.", AMT).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].data.to_string(), "13.v4.driad.example.com.");
    let m = query(dns.local_addr(), "13.v4.driad.example.com.", AMT).await;
    assert_eq!(amt_rdata(&m).len(), 1);
}

#[tokio::test]
async fn dname_synthesises_a_cname() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "driad.zone", DRIAD);
    let dns = start(dir.path()).await;

    let m = query(dns.local_addr(), "x.old.example.com.", AMT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers.len(), 2, "{m:?}");
    assert_eq!(m.answers[0].record_type(), RecordType::DNAME);
    assert_eq!(m.answers[0].name.to_string(), "old.example.com.");
    assert_eq!(m.answers[1].record_type(), RecordType::CNAME);
    assert_eq!(m.answers[1].name.to_string(), "x.old.example.com.");
    assert_eq!(m.answers[1].data.to_string(), "x.new.example.com.");
    assert_eq!(m.answers[1].ttl, 600);

    // The DNAME itself is an ordinary record at its owner.
    let m = query(dns.local_addr(), "old.example.com.", RecordType::DNAME).await;
    assert_eq!(m.answers.len(), 1);
}

#[tokio::test]
async fn rewritten_zone_is_served_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reverse.zone", REVERSE);
    let dns = start(dir.path()).await;
    let name = "10.100.51.198.in-addr.arpa.";
    assert_eq!(amt_rdata(&query(dns.local_addr(), name, AMT).await).len(), 2);

    // Atomic replace: relay2 removed.
    write(dir.path(), "reverse.zone", &REVERSE.replace("   IN AMTRELAY 20 0 1 203.0.113.16\n", ""));
    let t0 = Instant::now();
    loop {
        if amt_rdata(&query(dns.local_addr(), name, AMT).await).len() == 1 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "change not served after 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // In-place rewrite adds a record.
    std::fs::write(dir.path().join("reverse.zone"), format!("{REVERSE}15 IN AMTRELAY 0 0 0 .\n")).unwrap();
    let t0 = Instant::now();
    loop {
        let m = query(dns.local_addr(), "15.100.51.198.in-addr.arpa.", AMT).await;
        if amt_rdata(&m) == [vec![0, 0]] {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "in-place change not served after 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A new zone file appears; then one vanishes.
    write(dir.path(), "driad.zone", DRIAD);
    let t0 = Instant::now();
    while dns.zones().len() != 2 {
        assert!(t0.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(dir.path().join("reverse.zone")).unwrap();
    let t0 = Instant::now();
    loop {
        let m = query(dns.local_addr(), name, AMT).await;
        if m.metadata.response_code == ResponseCode::Refused {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn broken_rewrite_keeps_the_previous_zone() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reverse.zone", REVERSE);
    let dns = start(dir.path()).await;
    std::fs::write(dir.path().join("reverse.zone"), format!("{REVERSE}16 IN AMTRELAY 10 7 1 203.0.113.15\n")).unwrap();
    let report = dns.reload();
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].line, 12);
    let m = query(dns.local_addr(), "10.100.51.198.in-addr.arpa.", AMT).await;
    assert_eq!(amt_rdata(&m).len(), 2, "old zone still served");
}

#[tokio::test]
async fn a_broken_file_at_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.zone", "$ORIGIN x.\n@ 60 IN SOA a. b. 1 2 3 4 5\n@ 60 IN AMTRELAY 1 0 1 not-an-ip\n");
    let err = LabDns::start(Options::dir("127.0.0.1:0".parse().unwrap(), dir.path())).await.unwrap_err();
    assert!(err.to_string().contains("bad.zone:3"), "{err}");
}

#[tokio::test]
async fn fault_modes_and_query_log() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "reverse.zone", REVERSE);
    let dns = start(dir.path()).await;
    let name = "10.100.51.198.in-addr.arpa.";
    dns.set_mode(Mode::Silent);
    assert!(udp_query(dns.local_addr(), name, AMT).await.is_none());
    dns.set_mode(Mode::ServFail);
    assert_eq!(query(dns.local_addr(), name, AMT).await.metadata.response_code, ResponseCode::ServFail);
    dns.set_mode(Mode::Refused);
    assert_eq!(query(dns.local_addr(), name, AMT).await.metadata.response_code, ResponseCode::Refused);
    dns.set_mode(Mode::Normal);
    assert_eq!(amt_rdata(&query(dns.local_addr(), name, AMT).await).len(), 2);
    let log = dns.queries();
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|q| q.rtype == AMT && q.name.to_string() == name));
    dns.clear_queries();
    assert!(dns.queries().is_empty());
}

#[tokio::test]
async fn resolver_reads_it_like_any_server() {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "driad.zone", DRIAD);
    let dns = start(dir.path()).await;
    let mut ns = NameServerConfig::udp_and_tcp(dns.local_addr().ip());
    for c in &mut ns.connections {
        c.port = dns.local_addr().port();
    }
    let resolver = hickory_resolver::Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .build()
    .unwrap();
    let ips = resolver.lookup_ip("r4v4.amt.example.com.").await.unwrap();
    assert_eq!(ips.iter().map(|i| i.to_string()).collect::<Vec<_>>(), ["203.0.113.15"]);
}
