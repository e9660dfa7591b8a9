//! tshark decodes every control message the relay sends (Advertisement with an IPv4 and an
//! IPv6 relay address; Membership Query for P = 0 and P = 1, with the G fields, with the L
//! flag, over IPv4 and IPv6 tunnels) with no malformed packet and no expert warning, and
//! agrees on the fields. Multicast Data is checked on the wire by the amt-relay crate's
//! namespace test (it is built by the driver, with the kernel's UDP checksum).

mod relay_common;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mcast_amt::relay::Transmit;
use mcast_testkit::tshark;
use mcast_wire::{IpProtocol, amt, ipv4, ipv6, udp};
use relay_common::*;
use serde_json::Value;

/// The transmit as tshark would capture it: IP + UDP (with a computed checksum) + payload.
fn on_the_wire(t: &Transmit) -> Vec<u8> {
    let udp = udp::Repr { src_port: t.src.port(), dst_port: t.dst.port() };
    let mut segment = vec![0u8; udp.header_len() + t.payload.len()];
    udp.emit_with_payload(&mut segment, &t.src.ip(), &t.dst.ip(), &t.payload).unwrap();
    match (t.src.ip(), t.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ipv4::Repr::new(s, d, IpProtocol::UDP, 64, segment.len()).datagram(&segment).unwrap()
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ipv6::Repr::new(s, d, IpProtocol::UDP, 64, segment.len()).datagram(&segment).unwrap()
        }
        _ => panic!("mixed families"),
    }
}

fn amt_field(layers: &Value, key: &str) -> String {
    tshark::field(&layers["amt"], key)
}

fn send(relay: &mut mcast_amt::relay::Relay, local: &str, gw: &str, payload: &[u8], now: Instant) -> Transmit {
    relay.handle_datagram(addr(local), addr(gw), payload, now).unwrap();
    one_transmit(relay)
}

#[test]
fn every_relay_control_message_decodes_cleanly() {
    if !tshark::tshark_available() {
        return;
    }
    let now = Instant::now();
    let mut c = config();
    c.capacity = 1;
    let mut relay = relay_with(c, now);
    let discovery = |nonce| mcast_wire::amt::Repr::RelayDiscovery { nonce }.to_vec().unwrap();
    let request = |nonce, p_flag| mcast_wire::amt::Repr::Request { nonce, p_flag }.to_vec().unwrap();
    let gw6 = "[2001:db8::2]:40000";
    let transmits = [
        // 0: Advertisement of the IPv4 relay address, from the IPv4 anycast address.
        send(&mut relay, ANYCAST, GW, &discovery(0x11), now),
        // 1: Advertisement of the IPv6 relay address, from the IPv6 anycast address.
        send(&mut relay, "[2001:3::1]:2268", gw6, &discovery(0x12), now),
        // 2: Query, P = 0 (IGMPv3), G fields, IPv4 tunnel.
        send(&mut relay, RELAY, GW, &request(0x13, false), now),
        // 3: Query, P = 1 (MLDv2), G fields, IPv6 tunnel.
        send(&mut relay, RELAY6, gw6, &request(0x14, true), now),
    ];
    // Fill the relay (capacity 1), then a new gateway gets L.
    subscribe(&mut relay, GW, 0x15, &["198.51.100.10,232.1.1.1"], now);
    let limited = [
        // 4: Query with L and G, P = 0, IPv4 tunnel.
        send(&mut relay, RELAY, "192.0.2.3:50000", &request(0x16, false), now),
        // 5: Query with L and G, P = 1, IPv6 tunnel.
        send(&mut relay, RELAY6, gw6, &request(0x17, true), now),
    ];
    let all: Vec<Transmit> = transmits.into_iter().chain(limited).collect();
    let datagrams: Vec<Vec<u8>> = all.iter().map(on_the_wire).collect();
    let decoded = tshark::tshark_decode(&datagrams, &["-d", "udp.port==2268,amt", "-o", "udp.check_checksum:TRUE"]);

    // Advertisements: the relay address of the right family and the echoed nonce, from the
    // address the Discovery went to.
    assert_eq!(amt_field(&decoded[0], "amt.type"), "2");
    assert_eq!(amt_field(&decoded[0], "amt.discovery_nonce"), "0x00000011");
    assert_eq!(amt_field(&decoded[0], "amt.relay_address.ipv4"), "203.0.113.15");
    assert_eq!(tshark::field(&decoded[0]["ip"], "ip.src"), "192.52.193.1");
    assert_eq!(amt_field(&decoded[1], "amt.relay_address.ipv6"), "2001:db8::15");
    assert_eq!(tshark::field(&decoded[1]["ipv6"], "ipv6.src"), "2001:3::1");

    let mac_of = |t: &Transmit| match mcast_wire::amt::Repr::parse_bytes(&t.payload).unwrap() {
        mcast_wire::amt::Repr::MembershipQuery { mac, .. } => format!("{:#018x}", amt::mac_to_u64(mac)),
        other => panic!("{other:?}"),
    };
    let queries = [
        (2, "0", "0x00000013", "40000", "::192.0.2.2", false),
        (3, "0", "0x00000014", "40000", "2001:db8::2", true),
        (4, "1", "0x00000016", "50000", "::192.0.2.3", false),
        (5, "1", "0x00000017", "40000", "2001:db8::2", true),
    ];
    for (i, l, nonce, port, gw_ip, mld) in queries {
        let layers = &decoded[i];
        assert_eq!(amt_field(layers, "amt.type"), "4", "packet {i}");
        assert_eq!(amt_field(layers, "amt.membership_query.l"), l, "packet {i}");
        assert_eq!(amt_field(layers, "amt.membership_query.g"), "1", "packet {i}");
        assert_eq!(amt_field(layers, "amt.request_nonce"), nonce, "packet {i}");
        assert_eq!(amt_field(layers, "amt.response_mac"), mac_of(&all[i]), "packet {i}");
        assert_eq!(amt_field(layers, "amt.gateway.port_number"), port, "packet {i}");
        assert_eq!(amt_field(layers, "amt.gateway.ip_address"), gw_ip, "packet {i}");
        let inner = &layers["amt"];
        if mld {
            assert_eq!(tshark::field(inner, "icmpv6.type"), "130", "packet {i}");
            assert_eq!(tshark::field(inner, "icmpv6.mld.flag.qrv"), "2");
            assert_eq!(tshark::field(inner, "icmpv6.mld.qqi"), "10");
        } else {
            assert_eq!(tshark::field(inner, "igmp.type"), "0x11", "packet {i}");
            assert_eq!(tshark::field(inner, "igmp.qrv"), "2");
            assert_eq!(tshark::field(inner, "igmp.qqic"), "10");
            assert_eq!(tshark::field(&inner["ip"], "ip.dst"), "224.0.0.1");
        }
    }
    // Sources: the address the Request went to.
    assert_eq!(tshark::field(&decoded[2]["ip"], "ip.src"), "203.0.113.15");
    assert_eq!(tshark::field(&decoded[3]["ipv6"], "ipv6.src"), "2001:db8::15");
    let _: SocketAddr = addr(RELAY);
}
