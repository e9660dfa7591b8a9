//! Cross-checks the PIMv2 codec against tshark: every message here is emitted by
//! `mcast_wire::pim`, wrapped into IPv4 or IPv6, and decoded by tshark, which must agree on
//! every field, call the checksum good, and raise no malformed/warning/error expert info.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mcast_wire::pim::{
    ALL_PIM_ROUTERS_V4, ALL_PIM_ROUTERS_V6, ChecksumContext, EncodedGroup, EncodedSource, EncodedUnicast, HelloOption,
    JoinPruneGroup, LanPruneDelay, MessageType, Repr,
};
use mcast_wire::{IpProtocol, ipv6};
use serde_json::Value;

const SRC_V4: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 1);

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().unwrap())
}

/// Emits `repr` for IPv4 and wraps it (TOS 0xc0, TTL 1) from 10.9.1.1 to 224.0.0.13.
fn ipv4_pim(repr: &Repr) -> Vec<u8> {
    let pim = repr.to_bytes(ChecksumContext::V4).unwrap();
    common::ipv4_datagram(SRC_V4, ALL_PIM_ROUTERS_V4, IpProtocol::PIM, &pim, false)
}

/// Emits `repr` for IPv6 (checksum with the pseudo-header) and wraps it, hop limit 1, to ff02::d.
fn ipv6_pim(repr: &Repr, src: Ipv6Addr) -> Vec<u8> {
    let ctx = ChecksumContext::V6 { src, dst: ALL_PIM_ROUTERS_V6 };
    let pim = repr.to_bytes(ctx).unwrap();
    ipv6::Repr::new(src, ALL_PIM_ROUTERS_V6, IpProtocol::PIM, 1, pim.len()).datagram(&pim).unwrap()
}

/// Runs tshark (merging duplicate JSON keys into arrays, since a Join/Prune repeats fields per
/// group). Set `PIM_TSHARK_DUMP=1` to print the decoded PIM layers while debugging.
fn decode(datagrams: &[Vec<u8>]) -> Vec<Value> {
    let layers = common::tshark_decode(datagrams, &["--no-duplicate-keys"]);
    if std::env::var_os("PIM_TSHARK_DUMP").is_some() {
        for l in &layers {
            eprintln!("{:#}", l["pim"]);
        }
    }
    layers
}

/// Asserts the common header fields tshark reports: version 2, the type, checksum good.
fn assert_header(layers: &Value, kind: MessageType) {
    let pim = &layers["pim"];
    assert!(pim.is_object(), "tshark did not dissect PIM: {layers:#}");
    assert_eq!(common::field(pim, "pim.version"), "2");
    assert_eq!(common::field(pim, "pim.type"), u8::from(kind).to_string());
    // 1 = PROTO_CHECKSUM_E_GOOD (epan/proto.h: BAD 0, GOOD 1, UNVERIFIED 2).
    assert_eq!(common::field(pim, "pim.cksum.status"), "1", "checksum not verified good: {pim:#}");
}

#[test]
fn hello_with_every_option_kind() {
    if !common::tshark_available() {
        return;
    }
    let repr = Repr::hello(vec![
        HelloOption::Holdtime(105),
        HelloOption::LanPruneDelay(LanPruneDelay {
            t_bit: true,
            propagation_delay_ms: 500,
            override_interval_ms: 2500,
        }),
        HelloOption::DrPriority(7),
        HelloOption::GenerationId(0x1d6b9760),
        HelloOption::AddressList(vec![v6("fe80::c8a:2fff:fe0f:d81d"), v4(192, 0, 2, 7)]),
        HelloOption::Unknown { kind: 65000, value: vec![0xde, 0xad, 0xbe, 0xef] },
    ]);
    let layers = decode(&[ipv4_pim(&repr)]);
    let pim = &layers[0]["pim"];
    assert_header(&layers[0], MessageType::Hello);
    assert_eq!(common::field(pim, "pim.holdtime"), "105");
    assert_eq!(common::field(pim, "pim.t"), "1");
    assert_eq!(common::field(pim, "pim.propagation_delay"), "500");
    assert_eq!(common::field(pim, "pim.override_interval"), "2500");
    assert_eq!(common::field(pim, "pim.dr_priority"), "7");
    assert_eq!(common::field(pim, "pim.generation_id"), 0x1d6b9760u32.to_string());
    assert_eq!(common::field(pim, "pim.address_list_ip6"), "fe80::c8a:2fff:fe0f:d81d");
    assert_eq!(common::field(pim, "pim.address_list"), "192.0.2.7");
    // serde_json sorts object keys, and tshark keys options by label, so compare as a set.
    let mut kinds = common::find_all(pim, "pim.optiontype");
    kinds.sort_by_key(|k| k.parse::<u16>().unwrap());
    assert_eq!(kinds, ["1", "2", "19", "20", "24", "65000"]);
    assert_eq!(common::field(pim, "pim.optionvalue").replace(':', ""), "deadbeef");
}

#[test]
fn hello_samples_from_the_lab() {
    if !common::tshark_available() {
        return;
    }
    // lab-notes.md §10.2: tshark shows holdtime 105, DR priority 1, GenID 493590368.
    let stub = Repr::hello(vec![
        HelloOption::Holdtime(105),
        HelloOption::DrPriority(1),
        HelloOption::GenerationId(0x1d6b9760),
    ]);
    let pim = stub.to_bytes(ChecksumContext::V4).unwrap();
    assert_eq!(
        hex::encode(&pim),
        "20002a98000100020069001300040000000100140004\
         1d6b9760"
    );
    let goodbye = Repr::hello(vec![HelloOption::Holdtime(0)]);
    let layers = decode(&[ipv4_pim(&stub), ipv4_pim(&goodbye)]);
    assert_header(&layers[0], MessageType::Hello);
    assert_eq!(common::field(&layers[0]["pim"], "pim.holdtime"), "105");
    assert_eq!(common::field(&layers[0]["pim"], "pim.dr_priority"), "1");
    assert_eq!(common::field(&layers[0]["pim"], "pim.generation_id"), "493590368");
    assert_eq!(common::field(&layers[0]["pim"], "pim.cksum"), "0x2a98");
    assert_eq!(common::field(&layers[1]["pim"], "pim.holdtime"), "0");
}

/// One Join/Prune group as tshark decoded it.
#[derive(Debug, PartialEq, Eq)]
struct TsGroup {
    group: String,
    mask_len: String,
    joins: Vec<String>,
    prunes: Vec<String>,
    /// The Encoded-Source flags byte of every join then every prune, as "0x04".
    flags: Vec<String>,
    /// The Encoded-Source mask lengths, joins then prunes.
    masks: Vec<String>,
}

/// tshark prints a repeated item as an array and a single one as a bare value.
fn items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v:#}")).to_owned()
}

/// The groups of a decoded Join/Prune, in wire order. Each group's address appears both as
/// the subtree label and inside it, so fields are addressed by position, not searched for.
fn ts_groups(pim: &Value, ipv6: bool) -> Vec<TsGroup> {
    let (group_key, join_key, prune_key) = if ipv6 {
        ("pim.group_ip6", "pim.join_ip6", "pim.prune_ip6")
    } else {
        ("pim.group", "pim.join_ip", "pim.prune_ip")
    };
    items(&pim["pim.option"]["pim.group_set_tree"])
        .into_iter()
        .map(|g| {
            let joins = &g["pim.numjoins_tree"];
            let prunes = &g["pim.numprunes_tree"];
            let both = |key: &str| {
                let mut v = common::find_all(joins, key);
                v.extend(common::find_all(prunes, key));
                v
            };
            TsGroup {
                group: text(&g[group_key]),
                mask_len: text(&g[format!("{group_key}_tree").as_str()]["pim.mask_len"]),
                joins: common::find_all(joins, join_key),
                prunes: common::find_all(prunes, prune_key),
                flags: both("pim.source_addr.flags"),
                masks: both("pim.mask_len"),
            }
        })
        .collect()
}

/// What tshark should report for the groups of `repr`, computed from the codec's own types.
fn expected_groups(repr: &Repr) -> Vec<TsGroup> {
    let jp = repr.as_join_prune().unwrap();
    jp.groups
        .iter()
        .map(|g| {
            let sources = || g.joins.iter().chain(&g.prunes);
            TsGroup {
                group: g.group.addr.to_string(),
                mask_len: g.group.mask_len.to_string(),
                joins: g.joins.iter().map(|s| s.addr.to_string()).collect(),
                prunes: g.prunes.iter().map(|s| s.addr.to_string()).collect(),
                flags: sources()
                    .map(|s| format!("0x{:02x}", u8::from(s.sparse) << 2 | u8::from(s.wildcard) << 1 | u8::from(s.rpt)))
                    .collect(),
                masks: sources().map(|s| s.mask_len.to_string()).collect(),
            }
        })
        .collect()
}

#[test]
fn join_prune_ipv4_two_groups_mixed() {
    if !common::tshark_available() {
        return;
    }
    let g1 = JoinPruneGroup::new(v4(232, 1, 1, 1))
        .with_join(EncodedSource::source(v4(23, 212, 185, 4)))
        .with_join(EncodedSource::source(v4(198, 51, 100, 9)))
        .with_prune(EncodedSource::source(v4(192, 0, 2, 33)));
    // A shared-tree group: (*,G) join (W and R set, the RP address) and an (S,G,rpt) prune.
    let g2 = JoinPruneGroup::new(v4(239, 1, 2, 3))
        .with_join(EncodedSource::wildcard(v4(10, 0, 0, 1)))
        .with_prune(EncodedSource::source_rpt(v4(192, 0, 2, 44)));
    let repr = Repr::join_prune(v4(10, 9, 1, 2), 210, vec![g1, g2]);
    let layers = decode(&[ipv4_pim(&repr)]);
    let pim = &layers[0]["pim"];
    assert_header(&layers[0], MessageType::JoinPrune);
    assert_eq!(common::field(pim, "pim.upstream_neighbor"), "10.9.1.2");
    assert_eq!(common::field(pim, "pim.holdtime"), "210");
    assert_eq!(common::field(pim, "pim.numgroups"), "2");
    let groups = ts_groups(pim, false);
    assert_eq!(groups, expected_groups(&repr));
    // Spelled out once, so the expectation above is not just the codec agreeing with itself.
    assert_eq!(groups[0].joins, ["23.212.185.4", "198.51.100.9"]);
    assert_eq!(groups[0].prunes, ["192.0.2.33"]);
    assert_eq!(groups[1].group, "239.1.2.3");
    assert_eq!(groups[1].flags, ["0x07", "0x05"]);
    assert_eq!(common::find_all(pim, "pim.source_addr.flags.w"), ["0", "0", "0", "1", "0"]);
}

#[test]
fn join_and_prune_samples_from_frr() {
    if !common::tshark_available() {
        return;
    }
    // lab-notes.md §6.1 / §10.2: FRR's Join and Prune for (23.212.185.4, 232.1.1.1).
    let source = EncodedSource::source(v4(23, 212, 185, 4));
    let join = Repr::join_prune(v4(10, 9, 1, 2), 210, vec![JoinPruneGroup::new(v4(232, 1, 1, 1)).with_join(source)]);
    let prune = Repr::join_prune(v4(10, 9, 1, 2), 210, vec![JoinPruneGroup::new(v4(232, 1, 1, 1)).with_prune(source)]);
    assert_eq!(
        hex::encode(join.to_bytes(ChecksumContext::V4).unwrap()),
        "2300100501000a090102000100d201000020e8010101000100000100042017d4b904"
    );
    assert_eq!(
        hex::encode(prune.to_bytes(ChecksumContext::V4).unwrap()),
        "2300100501000a090102000100d201000020e8010101000000010100042017d4b904"
    );
    let layers = decode(&[ipv4_pim(&join), ipv4_pim(&prune)]);
    for (l, repr) in layers.iter().zip([&join, &prune]) {
        let pim = &l["pim"];
        assert_header(l, MessageType::JoinPrune);
        assert_eq!(common::field(pim, "pim.cksum"), "0x1005");
        assert_eq!(common::field(pim, "pim.upstream_neighbor"), "10.9.1.2");
        assert_eq!(common::field(pim, "pim.holdtime"), "210");
        assert_eq!(ts_groups(pim, false), expected_groups(repr));
    }
    assert_eq!(common::find_all(&layers[0], "pim.join_ip"), ["23.212.185.4"]);
    assert!(common::find_all(&layers[0], "pim.prune_ip").is_empty());
    assert_eq!(common::find_all(&layers[1], "pim.prune_ip"), ["23.212.185.4"]);
    assert!(common::find_all(&layers[1], "pim.join_ip").is_empty());
}

#[test]
fn join_prune_ipv6() {
    if !common::tshark_available() {
        return;
    }
    let src: Ipv6Addr = "fe80::1".parse().unwrap();
    let g1 = JoinPruneGroup::new(v6("ff3e::8000:1"))
        .with_join(EncodedSource::source(v6("2001:db8::5")))
        .with_prune(EncodedSource::source(v6("2001:db8::6")));
    let g2 = JoinPruneGroup::new(v6("ff3e::8000:2")).with_join(EncodedSource::source(v6("2001:db8:1::7")));
    let repr = Repr::join_prune(v6("fe80::2"), 210, vec![g1, g2]);
    let hello = Repr::hello(vec![
        HelloOption::Holdtime(105),
        HelloOption::DrPriority(1),
        HelloOption::GenerationId(42),
        HelloOption::AddressList(vec![v6("2001:db8::1")]),
    ]);
    let layers = decode(&[ipv6_pim(&repr, src), ipv6_pim(&hello, src)]);
    let pim = &layers[0]["pim"];
    assert_header(&layers[0], MessageType::JoinPrune);
    assert_eq!(common::field(pim, "pim.upstream_neighbor_ip6"), "fe80::2");
    assert_eq!(common::field(pim, "pim.holdtime"), "210");
    let groups = ts_groups(pim, true);
    assert_eq!(groups, expected_groups(&repr));
    assert_eq!(groups[0].group, "ff3e::8000:1");
    assert_eq!(groups[0].mask_len, "128");
    assert_eq!(groups[1].joins, ["2001:db8:1::7"]);
    let pim = &layers[1]["pim"];
    assert_header(&layers[1], MessageType::Hello);
    assert_eq!(common::field(pim, "pim.holdtime"), "105");
    assert_eq!(common::field(pim, "pim.generation_id"), "42");
    assert_eq!(common::field(pim, "pim.address_list_ip6"), "2001:db8::1");
}

#[test]
fn other_types_assert_and_register_stop() {
    if !common::tshark_available() {
        return;
    }
    // Assert (RFC 7761 §4.9.6): Encoded-Group, Encoded-Unicast source, R|Metric Preference,
    // Metric. Built with the codec's encoders, carried as an "other" message.
    let mut assert_body = vec![0u8; 8 + 6 + 8];
    let n = EncodedGroup::new(v4(232, 1, 1, 1)).emit(&mut assert_body).unwrap();
    let n = n + EncodedUnicast(v4(23, 212, 185, 4)).emit(&mut assert_body[n..]).unwrap();
    assert_body[n..n + 4].copy_from_slice(&110u32.to_be_bytes());
    assert_body[n + 4..].copy_from_slice(&20u32.to_be_bytes());
    let assert_msg = Repr::other(MessageType::Assert, assert_body);
    // Register-Stop (RFC 7761 §4.9.4): Encoded-Group, Encoded-Unicast source.
    let mut stop_body = vec![0u8; 8 + 6];
    let n = EncodedGroup::new(v4(239, 1, 1, 1)).emit(&mut stop_body).unwrap();
    EncodedUnicast(v4(192, 0, 2, 1)).emit(&mut stop_body[n..]).unwrap();
    let stop = Repr::other(MessageType::RegisterStop, stop_body);

    let layers = decode(&[ipv4_pim(&assert_msg), ipv4_pim(&stop)]);
    assert_header(&layers[0], MessageType::Assert);
    // The group is printed both as the subtree label and inside it: address it directly.
    let pim = &layers[0]["pim"];
    assert_eq!(text(&pim["pim.option"]["pim.group"]), "232.1.1.1");
    assert_eq!(text(&pim["pim.option"]["pim.source"]), "23.212.185.4");
    assert_eq!(common::field(pim, "pim.rpt"), "0");
    assert_eq!(common::field(pim, "pim.metric_pref"), "110");
    assert_eq!(common::field(pim, "pim.metric"), "20");
    assert_header(&layers[1], MessageType::RegisterStop);
    let pim = &layers[1]["pim"];
    assert_eq!(text(&pim["pim.option"]["pim.group"]), "239.1.1.1");
    assert_eq!(text(&pim["pim.option"]["pim.source"]), "192.0.2.1");
}
