//! amt-relay end to end in network namespaces (root; passes with a notice otherwise):
//!
//! ```text
//!   gw ns: gateway sockets ── gw0 10.99.0.2 ─── amt0 10.99.0.1 ── relay ns ── up0 198.51.100.1 ─── src0 198.51.100.10 ── src ns: sender
//!                                          (anycast 192.52.193.1 on the relay's lo, added after start)
//! ```
//!
//! A scripted gateway discovers the relay through the anycast address, runs Request / Query /
//! Update with `mcast_wire` messages, and receives the source's native SSM packets
//! encapsulated in Multicast Data, each carrying the complete inner IP datagram; tshark
//! decodes the Data captured on the gateway's interface (outer UDP checksum verified). A
//! forged Update and a replayed Update subscribe nothing. The upstream join appears and
//! disappears in the relay's /proc/net/mcfilter, and SIGTERM ends the relay cleanly.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use mcast_testkit::tshark;
use mcast_wire::SourceGroup;
use mcast_wire::igmp::RecordType;
use mcast_wire::ipv4;
use socket2::{Domain, Protocol, Socket, Type};

fn sg() -> SourceGroup {
    "198.51.100.10,232.1.1.1".parse().unwrap()
}

fn source() -> Ipv4Addr {
    SOURCE.parse().unwrap()
}

fn group() -> Ipv4Addr {
    "232.1.1.1".parse().unwrap()
}

fn relay_socket() -> SocketAddr {
    SocketAddr::new(RELAY_ADDR.parse().unwrap(), 2268)
}

/// Sends `count` datagrams `tag:i` to 232.1.1.1:5001.
fn send_stream(sender: &std::net::UdpSocket, tag: &str, count: usize) -> Vec<Vec<u8>> {
    let dst = SocketAddr::from((group(), 5001));
    (0..count)
        .map(|i| {
            let payload = format!("{tag}:{i:05}").into_bytes();
            sender.send_to(&payload, dst).unwrap();
            std::thread::sleep(Duration::from_micros(200));
            payload
        })
        .collect()
}

/// A packet socket in the gateway namespace capturing every IPv4 datagram there.
fn capture(lab: &Lab) -> Socket {
    lab.gw.run(|| {
        let s =
            Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(i32::from((libc::ETH_P_IP as u16).to_be()))))
                .unwrap();
        s.set_recv_buffer_size(8 << 20).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    })
}

fn drain(mut capture: Socket) -> Vec<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = capture.read(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

#[test]
fn a_gateway_gets_the_source_encapsulated_and_forged_or_replayed_updates_do_nothing() {
    require_root!();
    let lab = Lab::new();
    let mut daemon = Daemon::start(
        &lab.relay,
        &[
            "--relay-address",
            RELAY_ADDR,
            "--discovery-address",
            ANYCAST,
            "--upstream-interface",
            "up0",
            "--query-interval",
            "5s",
        ],
    );
    // The anycast address arrives after the relay bound it (IP_FREEBIND).
    lab.relay.ip(&format!("addr add {ANYCAST}/32 dev lo"));

    // Discovery to the anycast address: the Advertisement comes from that address and names
    // the relay address.
    let a = Gateway::new(&lab.gw, relay_socket());
    let (adv_from, relay) = a.discover(SocketAddr::new(ANYCAST.parse().unwrap(), 2268), 0x5eed);
    assert_eq!(adv_from, SocketAddr::new(ANYCAST.parse().unwrap(), 2268));
    assert_eq!(relay, RELAY_ADDR.parse::<std::net::IpAddr>().unwrap());

    // Request → Query from the relay address, nonce echoed, G fields = our endpoint.
    let q = a.request(0x0101_0101);
    assert_eq!(q.from, relay_socket());
    assert!(!q.limit);
    assert_eq!(q.gateway, Some((a.local().port(), a.local().ip())));
    assert_eq!(mcast_amt::membership::parse_query(&q.query).unwrap().query_interval, Duration::from_secs(5));

    // Update: join (S,G) → the relay joins it natively.
    a.update(&q, RecordType::AllowNewSources, &[sg()]);
    assert!(
        wait_for(Duration::from_secs(5), || has_ssm_join(&lab.relay, source(), group()).then_some(())).is_some(),
        "no SSM join on the relay: {}\n{}",
        lab.relay.proc_net("mcfilter"),
        daemon.log_text()
    );

    // The source sends; the gateway gets every datagram, in order, as complete IP packets.
    // The kernel computes the outer checksum in software, so the capture sees the real one.
    disable_tx_checksum_offload(&lab.relay, "amt0");
    let cap = capture(&lab);
    let sender = sender(&lab.src, source());
    let sent = send_stream(&sender, "a", 200);
    let got = a.collect_data(Duration::from_millis(800));
    assert_eq!(got.len(), sent.len(), "every datagram arrives: {}", daemon.status_text());
    for (inner, payload) in got.iter().zip(&sent) {
        let packet = ipv4::Packet::new_checked(inner.as_slice()).expect("an IPv4 header");
        assert_eq!(packet.src_addr(), source());
        assert_eq!(packet.dst_addr(), group());
        assert_eq!(packet.protocol(), mcast_wire::IpProtocol::UDP);
        assert!(packet.verify_checksum());
        assert!(packet.ttl() > 1);
        let udp = mcast_wire::udp::Packet::new_checked(packet.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (40000, 5001));
        assert_eq!(udp.payload(), payload.as_slice());
        assert!(udp.verify_checksum(&source().into(), &group().into()));
    }

    // tshark decodes the Data as captured (outer UDP checksum checked: the kernel computed it).
    if tshark::tshark_available() {
        let frames: Vec<Vec<u8>> = drain(cap)
            .into_iter()
            .filter(|f| {
                ipv4::Packet::new_checked(f.as_slice()).is_ok_and(|p| {
                    let payload = p.payload();
                    p.protocol() == mcast_wire::IpProtocol::UDP
                        && payload.len() > 8
                        && payload[0..2] == 2268u16.to_be_bytes()
                        && payload[8] == 6
                })
            })
            .take(5)
            .collect();
        assert_eq!(frames.len(), 5, "captured Data");
        let decoded = tshark::tshark_decode(&frames, &["-d", "udp.port==2268,amt", "-o", "udp.check_checksum:TRUE"]);
        for layers in &decoded {
            assert_eq!(tshark::field(&layers["amt"], "amt.type"), "6");
            assert_ne!(tshark::field(&layers["udp"], "udp.checksum"), "0x0000", "non-zero outer checksum");
            assert_eq!(tshark::field(&layers["udp"], "udp.checksum.status"), "1", "outer checksum good");
            assert_eq!(tshark::field(&layers["amt"]["ip"], "ip.src"), SOURCE);
            assert_eq!(tshark::field(&layers["amt"]["ip"], "ip.dst"), "232.1.1.1");
            assert_eq!(tshark::field(&layers["amt"]["udp"], "udp.dstport"), "5001");
        }
    }

    // Gateway B forges its Update's MAC: nothing for it.
    let b = Gateway::new(&lab.gw, relay_socket());
    let qb = b.request(0x0202_0202);
    let mut forged = qb.mac;
    forged[5] ^= 0xff;
    b.send(&Gateway::update_payload(forged, qb.nonce, RecordType::AllowNewSources, &[sg()]));

    // Gateway C joins, starts a new cycle, leaves; then its first Update is replayed.
    let c = Gateway::new(&lab.gw, relay_socket());
    let qc1 = c.request(0x0303_0301);
    let old = c.update(&qc1, RecordType::AllowNewSources, &[sg()]);
    let qc2 = c.request(0x0303_0302);
    c.update(&qc2, RecordType::BlockOldSources, &[sg()]);
    std::thread::sleep(Duration::from_millis(100));
    c.send(&old);
    std::thread::sleep(Duration::from_millis(100));

    let sent = send_stream(&sender, "b", 50);
    assert_eq!(a.collect_data(Duration::from_millis(500)).len(), sent.len());
    assert!(b.collect_data(Duration::from_millis(200)).is_empty(), "forged Update subscribed");
    assert!(c.collect_data(Duration::from_millis(200)).is_empty(), "replayed Update subscribed");

    let status = daemon.status();
    assert_eq!(status["rx_ring"], true, "the RX ring is the default");
    assert!(status["datapath"]["checksums_completed"].as_u64().unwrap() > 0, "veth leaves checksums to offload");
    let relay = &status["relay"];
    let gateways: Vec<String> =
        relay["gateways"].as_array().unwrap().iter().map(|g| g["gateway"].as_str().unwrap().to_owned()).collect();
    assert_eq!(gateways, [a.local().to_string()], "only A has state");
    assert_eq!(relay["counters"]["dropped"]["bad-mac"], 1);
    assert_eq!(relay["counters"]["dropped"]["stale-nonce"], 1);
    assert_eq!(relay["channels"][0]["sg"], "198.51.100.10,232.1.1.1");
    assert_eq!(relay["channels"][0]["subscribers"], 1);
    assert_eq!(status["upstream_joins"], 1);
    assert!(status["datapath"]["sent"].as_u64().unwrap() >= 250);
    let text = daemon.status_text();
    assert!(text.contains("198.51.100.10  232.1.1.1"), "{text}");

    // A leaves: the relay leaves upstream at once.
    let q = a.request(0x0101_0102);
    a.update(&q, RecordType::BlockOldSources, &[sg()]);
    assert!(
        wait_for(Duration::from_secs(5), || (!has_ssm_join(&lab.relay, source(), group())).then_some(())).is_some(),
        "the relay still holds the join"
    );
    send_stream(&sender, "c", 10);
    assert!(a.collect_data(Duration::from_millis(200)).is_empty());

    // SIGTERM: clean exit.
    let started = Instant::now();
    let exit = daemon.terminate();
    assert!(exit.success(), "exit status {exit}: {}", daemon.log_text());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn sigterm_leaves_upstream_joins() {
    require_root!();
    let lab = Lab::new();
    let mut daemon = Daemon::start(&lab.relay, &["--relay-address", RELAY_ADDR, "--upstream-interface", "up0"]);
    let a = Gateway::new(&lab.gw, relay_socket());
    let q = a.request(7);
    // Many (S,G)s: more than one IPv4 socket can hold (20 groups, 10 sources per group).
    let sgs: Vec<SourceGroup> = (0..30)
        .flat_map(|g| (0..12).map(move |s| format!("198.51.100.{},232.1.2.{}", 10 + s, g).parse().unwrap()))
        .collect();
    a.update(&q, RecordType::AllowNewSources, &sgs);
    assert!(
        wait_for(Duration::from_secs(5), || (daemon.status()["upstream_joins"] == 360).then_some(())).is_some(),
        "{}",
        daemon.log_text()
    );
    let status = daemon.status();
    assert_eq!(status["join_errors"], 0);
    assert!(status["join_sockets"].as_u64().unwrap() > 1, "joins spread over sockets");
    assert!(has_ssm_join(&lab.relay, "198.51.100.21".parse().unwrap(), "232.1.2.29".parse().unwrap()));
    assert!(daemon.terminate().success());
    assert!(!lab.relay.proc_net("mcfilter").contains("0xe8010201"), "joins left on exit");
}

#[test]
fn ipv6_tunnel_and_ipv6_channel() {
    require_root!();
    use mcast_amt::membership::{self, Family};
    use mcast_wire::amt::{self, Repr};
    use std::net::{Ipv6Addr, UdpSocket};
    let lab = Lab::new();
    lab.gw.ip("addr add 2001:db8:99::2/64 dev gw0 nodad");
    lab.relay.ip("addr add 2001:db8:99::1/64 dev amt0 nodad");
    lab.relay.ip("addr add 2001:db8:51::1/64 dev up0 nodad");
    lab.src.ip("addr add 2001:db8:51::10/64 dev src0 nodad");
    // recvmmsg instead of the RX ring: the other receive path, with its checksum completion
    // from PACKET_AUXDATA.
    let mut daemon = Daemon::start(
        &lab.relay,
        &["--relay-address", "2001:db8:99::1", "--upstream-interface", "up0", "--no-rx-ring"],
    );
    let relay: SocketAddr = "[2001:db8:99::1]:2268".parse().unwrap();
    let gw = lab.gw.run(|| {
        let s = UdpSocket::bind("[2001:db8:99::2]:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        s
    });
    gw.send_to(&Repr::Request { nonce: 9, p_flag: true }.to_vec().unwrap(), relay).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = gw.recv_from(&mut buf).expect("a Query");
    assert_eq!(from, relay);
    let Repr::MembershipQuery { mac, nonce, query, gateway, .. } = Repr::parse_bytes(&buf[..n]).unwrap() else {
        panic!("not a Query")
    };
    assert_eq!(membership::parse_query(query).unwrap().family, Family::V6);
    assert_eq!(gateway, Some((gw.local_addr().unwrap().port(), gw.local_addr().unwrap().ip())));
    let sg: SourceGroup = "2001:db8:51::10,ff3e::8000:1".parse().unwrap();
    let records = membership::records_for(RecordType::AllowNewSources, [sg]);
    let report = membership::report_datagrams(Family::V6, &records, 1400).unwrap().remove(0);
    gw.send_to(&Repr::MembershipUpdate { mac, nonce, update: &report }.to_vec().unwrap(), relay).unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || lab
            .relay
            .proc_net("mcfilter6")
            .contains("20010db8005100000000000000000010")
            .then_some(()))
        .is_some(),
        "no MLDv2 source join: {}",
        lab.relay.proc_net("mcfilter6")
    );
    let sender = lab.src.run(|| {
        let s = UdpSocket::bind("[2001:db8:51::10]:40000").unwrap();
        let sock = socket2::SockRef::from(&s);
        sock.set_multicast_hops_v6(16).unwrap();
        sock.set_multicast_loop_v6(false).unwrap();
        sock.set_multicast_if_v6(nix::net::if_::if_nametoindex("src0").unwrap()).unwrap();
        s
    });
    let group: Ipv6Addr = "ff3e::8000:1".parse().unwrap();
    for i in 0..20u8 {
        sender.send_to(&[i; 64], SocketAddr::new(group.into(), 5001)).unwrap();
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while got.len() < 20 && Instant::now() < deadline {
        if let Ok((n, from)) = gw.recv_from(&mut buf)
            && let Some(inner) = amt::parse_data(&buf[..n])
        {
            assert_eq!(from, relay);
            got.push(inner.to_vec());
        }
    }
    assert_eq!(got.len(), 20, "{}", daemon.status_text());
    assert_eq!(daemon.status()["rx_ring"], false);
    for (i, inner) in got.iter().enumerate() {
        let ip = mcast_wire::ipv6::Packet::new_checked(inner.as_slice()).unwrap();
        assert_eq!(ip.dst_addr(), group);
        let udp = mcast_wire::udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.payload(), &[i as u8; 64]);
        assert!(udp.verify_checksum(&ip.src_addr().into(), &group.into()), "inner checksum completed");
    }
    assert!(daemon.terminate().success());
}
