//! tshark decodes every message the gateway sends (Relay Discovery, Request P = 0 and P = 1,
//! Membership Update with IGMPv3 and with MLDv2, Teardown) without malformed-packet or
//! warning expert info, and agrees on the fields.

mod gateway_common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use gateway_common::*;
use mcast_amt::gateway::Transmit;
use mcast_amt::membership::Family;
use mcast_testkit::tshark;
use mcast_wire::{IpProtocol, ipv4, ipv6, udp};

/// Our address and port, as the relay would see them.
fn gateway_addr(family_of: IpAddr) -> SocketAddr {
    match family_of {
        IpAddr::V4(_) => "192.0.2.2:40000".parse().unwrap(),
        IpAddr::V6(_) => "[2001:db8::2]:40000".parse().unwrap(),
    }
}

/// Wraps a Transmit into IP/UDP from the gateway's endpoint, with a valid UDP checksum.
fn wrap(tx: &Transmit) -> Vec<u8> {
    let src = gateway_addr(tx.destination.ip());
    let (s, d) = (src.ip(), tx.destination.ip());
    let mut segment = vec![0u8; 8 + tx.payload.len()];
    udp::Repr { src_port: src.port(), dst_port: tx.destination.port() }
        .emit_with_payload(&mut segment, &s, &d, &tx.payload)
        .unwrap();
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ipv4::Repr::new(s, d, IpProtocol::UDP, 64, segment.len()).datagram(&segment).unwrap()
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ipv6::Repr::new(s, d, IpProtocol::UDP, 64, segment.len()).datagram(&segment).unwrap()
        }
        _ => unreachable!(),
    }
}

fn amt(layers: &serde_json::Value, key: &str) -> String {
    tshark::field(&layers["amt"], key)
}

/// Everything a gateway sends in one life: discovery over IPv6 to an IPv4 and IPv6 relay,
/// both Request cycles, Updates of both families, the closing BLOCK and Teardown.
fn gateway_messages() -> Vec<Transmit> {
    let mut gw = gateway();
    let mut now = Instant::now();
    let relay6: IpAddr = "2001:db8::15".parse().unwrap();
    let mut out = Vec::new();
    // Discovery over IPv6 (the outer family is independent of the inner one).
    gw.add_tunnel(relay6, Some(relay6), now).unwrap();
    let txs = drain(&mut gw);
    let n = discovery_nonce(&txs);
    out.extend(txs);
    gw.handle_datagram(now, SocketAddr::new(relay6, 2268), None, &advertisement(n, relay6)).unwrap();
    gw.join(relay6, sg("198.51.100.10,232.1.1.1"), now).unwrap();
    gw.join(relay6, sg("2001:db8::10,ff3e::8000:1"), now).unwrap();
    let txs = drain(&mut gw);
    let reqs = requests(&txs);
    assert_eq!(reqs.len(), 2, "P = 0 and P = 1");
    out.extend(txs);
    for (dest, nonce, p) in reqs {
        let family = Family::from_p_flag(p);
        let g = Some((40000, "2001:db8::2".parse().unwrap()));
        gw.handle_datagram(now, dest, None, &query(family, MAC, nonce, 125, 2, false, g)).unwrap();
    }
    out.extend(drain(&mut gw));
    now += Duration::from_secs(1);
    gw.handle_timeout(now);
    gw.leave(relay6, sg("198.51.100.10,232.1.1.1"), now).unwrap();
    gw.leave(relay6, sg("2001:db8::10,ff3e::8000:1"), now).unwrap();
    out.extend(drain(&mut gw));
    out
}

#[test]
fn tshark_decodes_every_gateway_message() {
    if !tshark::tshark_available() {
        return;
    }
    let mut txs = gateway_messages();
    // And an IPv4 tunnel's Teardown with an IPv4 endpoint (IPv4-compatible on the wire).
    let mut gw = gateway();
    let now = Instant::now();
    established(&mut gw, now, &[sg("198.51.100.10,232.1.1.1")], 125);
    gw.remove_tunnel(ip(RELAY), now).unwrap();
    txs.extend(drain(&mut gw));

    let packets: Vec<Vec<u8>> = txs.iter().map(wrap).collect();
    let decoded = tshark::tshark_decode(&packets, &["-d", "udp.port==2268,amt"]);
    let mut seen = std::collections::BTreeMap::new();
    for (tx, layers) in txs.iter().zip(&decoded) {
        let t = amt(layers, "amt.type");
        assert_eq!(t, (tx.payload[0] & 0x0f).to_string());
        *seen.entry(t.clone()).or_insert(0) += 1;
        match t.as_str() {
            "1" => assert_eq!(
                amt(layers, "amt.discovery_nonce"),
                format!("{:#010x}", discovery_nonce(std::slice::from_ref(tx)))
            ),
            "3" => {
                let (_, nonce, p) = request(std::slice::from_ref(tx));
                assert_eq!(amt(layers, "amt.request_nonce"), format!("{nonce:#010x}"));
                assert_eq!(amt(layers, "amt.request.p"), if p { "1" } else { "0" });
            }
            "5" => {
                assert_eq!(amt(layers, "amt.response_mac"), "0x00000102030405a6");
                let up = &updates(std::slice::from_ref(tx))[0];
                match up.family {
                    Family::V4 => assert_eq!(tshark::field(&layers["amt"], "igmp.type"), "0x22"),
                    Family::V6 => assert_eq!(tshark::field(&layers["amt"], "icmpv6.type"), "143"),
                }
            }
            "7" => {
                assert_eq!(amt(layers, "amt.response_mac"), "0x00000102030405a6");
                assert_eq!(amt(layers, "amt.gateway.port_number"), "40000");
            }
            other => panic!("unexpected message type {other}"),
        }
    }
    for kind in ["1", "3", "5", "7"] {
        assert!(seen.contains_key(kind), "type {kind} covered: {seen:?}");
    }
    // Both Update families and both P values were decoded.
    let fams: Vec<Family> = updates(&txs).iter().map(|u| u.family).collect();
    assert!(fams.contains(&Family::V4) && fams.contains(&Family::V6));
    let ps: Vec<bool> = requests(&txs).iter().map(|r| r.2).collect();
    assert!(ps.contains(&false) && ps.contains(&true));
}
