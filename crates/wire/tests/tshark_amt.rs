//! tshark cross-check of the AMT codec (RFC 7450 §5.1): every message type is emitted by
//! `mcast_wire::amt`, wrapped in UDP port 2268 over IPv4 or IPv6, and decoded by tshark's
//! `amt` dissector, which must agree on every field and decode the encapsulated IGMP, MLD and
//! UDP datagrams without expert warnings.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mcast_wire::amt::{self, Repr};
use mcast_wire::{IpProtocol, checksum, ipv6};
use serde_json::Value;

const NONCE: u32 = 0x1a2b_3c4d;
const MAC: [u8; 6] = [0x01, 0x02, 0x03, 0x04, 0x05, 0xa6];
/// tshark prints the 48-bit Response MAC as a 64-bit hex value.
const MAC_TSHARK: &str = "0x00000102030405a6";
const NONCE_TSHARK: &str = "0x1a2b3c4d";

/// IPv4 (IHL 6, Router Alert) + IGMPv3 General Query, 198.51.100.1 → 224.0.0.1
/// (protocols.md §A1, Membership Query sample).
const IGMP_QUERY: &str = "46c0002400000000010219dec6336401e0000001940400001164ec1e00000000027d0000";
/// IPv4 + IGMPv3 Report, ALLOW_NEW_SOURCES 232.1.1.1 from 23.212.185.4 (Membership Update sample).
const IGMP_REPORT: &str = "46c0002c00000000010243f600000000e00000169404000022001f220000000105000001e801010117d4b904";
/// IPv4 + UDP 40000 → 5001, zero checksum, "amt-payload" (Multicast Data sample).
const DATA_V4: &str = "45000027000000004011c0eb17d4b904e80101019c40138900130000616d742d7061796c6f6164";

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn gateway4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
}

fn relay4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 15))
}

fn gateway6() -> IpAddr {
    IpAddr::V6("2001:db8::1".parse().unwrap())
}

fn relay6() -> IpAddr {
    IpAddr::V6("2001:db8::15".parse().unwrap())
}

/// Emits `repr` with our codec and wraps it in UDP 2268 → 2268 from `src` to `dst`.
fn wrap(src: IpAddr, dst: IpAddr, repr: &Repr<'_>) -> Vec<u8> {
    let payload = repr.to_vec().unwrap();
    assert_eq!(Repr::parse_bytes(&payload).unwrap(), *repr, "our own round trip");
    common::udp_datagram(src, dst, amt::PORT, amt::PORT, &payload)
}

fn amt_field(layers: &Value, key: &str) -> String {
    common::field(&layers["amt"], key)
}

/// An IPv6 MLDv2 General Query datagram as a relay encapsulates it for P = 1: fe80::1 →
/// ff02::1, hop limit 1, Hop-by-Hop Router Alert, MLDv2 query with MRC 1000, QRV 2, QQIC 125.
fn mld_query_datagram() -> Vec<u8> {
    let src: Ipv6Addr = "fe80::1".parse().unwrap();
    let dst: Ipv6Addr = "ff02::1".parse().unwrap();
    let mut mld = vec![130, 0, 0, 0, 0x03, 0xe8, 0, 0];
    mld.extend_from_slice(&[0; 16]);
    mld.extend_from_slice(&[0x02, 125, 0, 0]);
    let sum = checksum::combine(&[
        checksum::pseudo_header_v6(&src, &dst, IpProtocol::ICMPV6.0, mld.len() as u32),
        checksum::data(&mld),
    ]);
    mld[2..4].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    let mut payload = ipv6::hop_by_hop_router_alert(IpProtocol::ICMPV6).to_vec();
    payload.extend_from_slice(&mld);
    ipv6::Repr::new(src, dst, IpProtocol::HOP_BY_HOP, 1, payload.len()).datagram(&payload).unwrap()
}

#[test]
fn control_messages_over_ipv4() {
    if !common::tshark_available() {
        return;
    }
    let (gw, relay) = (gateway4(), relay4());
    let gw_v4 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let gw_v6: IpAddr = "2001:db8::7".parse().unwrap();
    let packets = [
        wrap(gw, relay, &Repr::RelayDiscovery { nonce: NONCE }),
        wrap(relay, gw, &Repr::RelayAdvertisement { nonce: NONCE, relay: relay4() }),
        wrap(relay, gw, &Repr::RelayAdvertisement { nonce: NONCE, relay: relay6() }),
        wrap(gw, relay, &Repr::Request { nonce: NONCE, p_flag: false }),
        wrap(gw, relay, &Repr::Request { nonce: NONCE, p_flag: true }),
        wrap(gw, relay, &Repr::Teardown { mac: MAC, nonce: NONCE, gateway_port: 2268, gateway_addr: gw_v4 }),
        wrap(gw, relay, &Repr::Teardown { mac: MAC, nonce: NONCE, gateway_port: 50000, gateway_addr: gw_v6 }),
        wrap(gw, relay, &Repr::Unknown { kind: 15, body: &[0x12, 0x34, 0x56] }),
    ];
    let decoded = common::tshark_decode(&packets, &["-d", "udp.port==2268,amt"]);

    let discovery = &decoded[0];
    assert_eq!(amt_field(discovery, "amt.version"), "0");
    assert_eq!(amt_field(discovery, "amt.type"), "1");
    assert_eq!(amt_field(discovery, "amt.discovery_nonce"), NONCE_TSHARK);

    let adv4 = &decoded[1];
    assert_eq!(amt_field(adv4, "amt.type"), "2");
    assert_eq!(amt_field(adv4, "amt.discovery_nonce"), NONCE_TSHARK);
    assert_eq!(amt_field(adv4, "amt.relay_address.ipv4"), "203.0.113.15");
    assert!(common::find_all(adv4, "amt.relay_address.ipv6").is_empty());

    let adv6 = &decoded[2];
    assert_eq!(amt_field(adv6, "amt.relay_address.ipv6"), "2001:db8::15");
    assert!(common::find_all(adv6, "amt.relay_address.ipv4").is_empty());

    // RFC 7450 §5.1.3.4: P = 0 asks for an IPv4 IGMPv3 General Query, P = 1 for an IPv6
    // MLDv2 one. tshark 4.0 agrees on the bit value but its value label says the opposite
    // ("IPv6 packet carrying an MLDv2 General Query" for P = 0); the RFC is authoritative, so
    // only the raw bit is compared here.
    for (layers, p) in [(&decoded[3], "0"), (&decoded[4], "1")] {
        assert_eq!(amt_field(layers, "amt.type"), "3");
        assert_eq!(amt_field(layers, "amt.request.p"), p);
        assert_eq!(amt_field(layers, "amt.request.reserved"), "0x00");
        assert_eq!(amt_field(layers, "amt.request_nonce"), NONCE_TSHARK);
    }

    // RFC 7450 §5.1.7.7: an IPv4 gateway is written as an IPv4-compatible IPv6 address.
    for (layers, port, addr) in [(&decoded[5], "2268", "::198.51.100.7"), (&decoded[6], "50000", "2001:db8::7")] {
        assert_eq!(amt_field(layers, "amt.type"), "7");
        assert_eq!(amt_field(layers, "amt.response_mac"), MAC_TSHARK);
        assert_eq!(amt_field(layers, "amt.request_nonce"), NONCE_TSHARK);
        assert_eq!(amt_field(layers, "amt.gateway.port_number"), port);
        assert_eq!(amt_field(layers, "amt.gateway.ip_address"), addr);
    }

    // An unknown type is emitted verbatim; tshark notes it as unknown data (a Note, not a
    // warning).
    assert_eq!(amt_field(&decoded[7], "amt.type"), "15");
}

#[test]
fn query_update_and_data_over_ipv4() {
    if !common::tshark_available() {
        return;
    }
    let (gw, relay) = (gateway4(), relay4());
    let igmp_query = hex(IGMP_QUERY);
    let igmp_report = hex(IGMP_REPORT);
    let data = hex(DATA_V4);
    let gw_v4 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let gw_v6: IpAddr = "2001:db8::7".parse().unwrap();
    let query = |limit, gateway| Repr::MembershipQuery { limit, mac: MAC, nonce: NONCE, query: &igmp_query, gateway };
    let packets = [
        wrap(relay, gw, &query(false, None)),
        wrap(relay, gw, &query(true, Some((2268, gw_v4)))),
        wrap(relay, gw, &query(false, Some((50000, gw_v6)))),
        wrap(gw, relay, &Repr::MembershipUpdate { mac: MAC, nonce: NONCE, update: &igmp_report }),
        wrap(relay, gw, &Repr::MulticastData { datagram: &data }),
    ];
    let decoded = common::tshark_decode(&packets, &["-d", "udp.port==2268,amt"]);

    for (layers, l, g) in [(&decoded[0], "0", "0"), (&decoded[1], "1", "1"), (&decoded[2], "0", "1")] {
        assert_eq!(amt_field(layers, "amt.type"), "4");
        assert_eq!(amt_field(layers, "amt.membership_query.l"), l);
        assert_eq!(amt_field(layers, "amt.membership_query.g"), g);
        assert_eq!(amt_field(layers, "amt.response_mac"), MAC_TSHARK);
        assert_eq!(amt_field(layers, "amt.request_nonce"), NONCE_TSHARK);
        // The encapsulated IGMPv3 General Query is decoded (and ends before the gateway
        // fields when G = 1, or tshark would flag trailing bytes in the IGMP message).
        let inner = &layers["amt"];
        assert_eq!(common::field(&inner["ip"], "ip.src"), "198.51.100.1");
        assert_eq!(common::field(&inner["ip"], "ip.dst"), "224.0.0.1");
        assert_eq!(common::field(inner, "igmp.type"), "0x11");
        assert_eq!(common::field(inner, "igmp.qrv"), "2");
        assert_eq!(common::field(inner, "igmp.qqic"), "125");
    }
    assert!(common::find_all(&decoded[0], "amt.gateway.port_number").is_empty());
    assert_eq!(amt_field(&decoded[1], "amt.gateway.port_number"), "2268");
    assert_eq!(amt_field(&decoded[1], "amt.gateway.ip_address"), "::198.51.100.7");
    assert_eq!(amt_field(&decoded[2], "amt.gateway.port_number"), "50000");
    assert_eq!(amt_field(&decoded[2], "amt.gateway.ip_address"), "2001:db8::7");

    let update = &decoded[3];
    assert_eq!(amt_field(update, "amt.type"), "5");
    assert_eq!(amt_field(update, "amt.response_mac"), MAC_TSHARK);
    assert_eq!(amt_field(update, "amt.request_nonce"), NONCE_TSHARK);
    assert_eq!(common::field(&update["amt"], "igmp.type"), "0x22");
    assert_eq!(common::field(&update["amt"], "igmp.record_type"), "5");
    assert_eq!(common::field(&update["amt"], "igmp.maddr"), "232.1.1.1");
    assert_eq!(common::field(&update["amt"], "igmp.saddr"), "23.212.185.4");

    let data_layers = &decoded[4];
    assert_eq!(amt_field(data_layers, "amt.type"), "6");
    assert_eq!(amt_field(data_layers, "amt.multicast_data").replace(':', ""), DATA_V4);
    assert_eq!(common::field(&data_layers["amt"]["ip"], "ip.dst"), "232.1.1.1");
    assert_eq!(common::field(&data_layers["udp"], "udp.dstport"), "2268");
    assert_eq!(common::field(&data_layers["amt"]["udp"], "udp.dstport"), "5001");
    assert_eq!(common::field(data_layers, "data.data").replace(':', ""), hex::encode(b"amt-payload"));
}

#[test]
fn messages_over_ipv6() {
    if !common::tshark_available() {
        return;
    }
    let (gw, relay) = (gateway6(), relay6());
    let mld_query = mld_query_datagram();
    let inner_src = IpAddr::V6("2001:db8:5::1".parse().unwrap());
    let inner_dst = IpAddr::V6("ff3e::8000:1".parse().unwrap());
    let data = common::udp_datagram(inner_src, inner_dst, 40000, 5001, b"amt-payload");
    // The data path: a relay holding the datagram prepends the 2-byte header in place.
    let mut data_payload = vec![0u8; amt::DATA_HEADER_LEN + data.len()];
    data_payload[amt::DATA_HEADER_LEN..].copy_from_slice(&data);
    amt::emit_data_header(&mut data_payload).unwrap();
    assert_eq!(amt::parse_data(&data_payload), Some(&data[..]));

    let packets = [
        wrap(gw, relay, &Repr::RelayDiscovery { nonce: NONCE }),
        wrap(gw, relay, &Repr::Request { nonce: NONCE, p_flag: true }),
        wrap(
            relay,
            gw,
            &Repr::MembershipQuery {
                limit: false,
                mac: MAC,
                nonce: NONCE,
                query: &mld_query,
                gateway: Some((2268, gw)),
            },
        ),
        common::udp_datagram(relay, gw, amt::PORT, amt::PORT, &data_payload),
    ];
    let decoded = common::tshark_decode(&packets, &["-d", "udp.port==2268,amt"]);

    assert_eq!(amt_field(&decoded[0], "amt.type"), "1");
    assert_eq!(amt_field(&decoded[0], "amt.discovery_nonce"), NONCE_TSHARK);
    assert_eq!(amt_field(&decoded[1], "amt.request.p"), "1");

    let query = &decoded[2];
    assert_eq!(amt_field(query, "amt.type"), "4");
    assert_eq!(amt_field(query, "amt.membership_query.g"), "1");
    assert_eq!(amt_field(query, "amt.gateway.port_number"), "2268");
    assert_eq!(amt_field(query, "amt.gateway.ip_address"), "2001:db8::1");
    assert_eq!(common::field(&query["amt"], "icmpv6.type"), "130");
    assert_eq!(common::field(&query["amt"], "icmpv6.mld.flag.qrv"), "2");

    let data_layers = &decoded[3];
    assert_eq!(amt_field(data_layers, "amt.type"), "6");
    assert_eq!(common::field(&data_layers["amt"]["ipv6"], "ipv6.dst"), "ff3e::8000:1");
    assert_eq!(common::field(&data_layers["udp"], "udp.dstport"), "2268");
    assert_eq!(common::field(&data_layers["amt"]["udp"], "udp.dstport"), "5001");
}
