//! tshark cross-check of the IGMP (RFC 3376) and MLD (RFC 3810) codecs: every packet is built
//! with `igmp::datagram` / `mld::datagram` and decoded by tshark, which must agree on every
//! field and report good checksums and no malformed packet.
//!
//! tshark's JSON repeats keys for repeated fields (sources, records, options), so every decode
//! runs with `--no-duplicate-keys`, which turns repeats into arrays. Records are compared as
//! sorted lists because the JSON object order is not the packet order.
//!
//! Field conventions of tshark 4.0 learnt from these decodes: `igmp.max_resp` is the decoded
//! Max Resp Time in 1/10 s (RFC 3376 §4.1.1) but `igmp.qqic` is the raw QQIC code, while for
//! MLD both `icmpv6.mld.maximum_response_code` (ms, RFC 3810 §5.1.3) and `icmpv6.mld.qqi`
//! (s, §5.1.9) are decoded values. `*.checksum.status` 1 means "Good".

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use mcast_wire::igmp::{self, QueryV3, Record, RecordType, Report};
use mcast_wire::mld::{self, AddressRecord, QueryV2};
use serde_json::Value;

const DECODE_ARGS: &[&str] = &["--no-duplicate-keys"];

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn decode(datagrams: &[Vec<u8>]) -> Vec<Value> {
    common::tshark_decode(datagrams, DECODE_ARGS)
}

/// The sorted values of `key` anywhere under `value`.
fn sorted(value: &Value, key: &str) -> Vec<String> {
    let mut all = common::find_all(value, key);
    all.sort();
    all
}

fn sorted_strings<T: ToString>(items: &[T]) -> Vec<String> {
    let mut all: Vec<String> = items.iter().map(ToString::to_string).collect();
    all.sort();
    all
}

/// The record objects of a report: values of keys starting with `prefix` (tshark labels each
/// record subtree "Group Record : …" for IGMP; MLD uses the field `icmpv6.mldr.mar`), with
/// arrays (from --no-duplicate-keys) flattened.
fn record_objects<'a>(layer: &'a Value, prefix: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    if let Value::Object(map) = layer {
        for (key, value) in map {
            if key.starts_with(prefix) {
                match value {
                    Value::Array(items) => out.extend(items.iter()),
                    other => out.push(other),
                }
            }
        }
    }
    out
}

/// One record as (type, group, sorted sources, aux data len), from tshark.
type RecordKey = (String, String, Vec<String>, String);

fn igmp_records_from_tshark(igmp_layer: &Value) -> Vec<RecordKey> {
    let mut records: Vec<RecordKey> = record_objects(igmp_layer, "Group Record")
        .into_iter()
        .map(|r| {
            (
                common::field(r, "igmp.record_type"),
                common::field(r, "igmp.maddr"),
                sorted(r, "igmp.saddr"),
                common::field(r, "igmp.aux_data_len"),
            )
        })
        .collect();
    records.sort();
    records
}

fn mld_records_from_tshark(icmpv6_layer: &Value) -> Vec<RecordKey> {
    let mut records: Vec<RecordKey> = record_objects(icmpv6_layer, "icmpv6.mldr.mar")
        .into_iter()
        .filter(|r| r.is_object())
        .map(|r| {
            (
                common::field(r, "icmpv6.mldr.mar.record_type"),
                common::field(r, "icmpv6.mldr.mar.multicast_address"),
                sorted(r, "icmpv6.mldr.mar.source_address"),
                common::field(r, "icmpv6.mldr.mar.aux_data_len"),
            )
        })
        .collect();
    records.sort();
    records
}

fn records_from_repr<A: igmp::RecordAddr + ToString>(records: &[Record<A>]) -> Vec<RecordKey> {
    let mut keys: Vec<RecordKey> = records
        .iter()
        .map(|r| {
            (
                u8::from(r.record_type).to_string(),
                r.group.to_string(),
                sorted_strings(&r.sources),
                (r.aux_data.len() / 4).to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// Checks the IPv4 envelope every IGMP datagram gets: TTL 1, TOS 0xc0, Router Alert, IGMP.
fn assert_igmp_envelope(layers: &Value, src: Ipv4Addr, dst: Ipv4Addr) {
    let ip = &layers["ip"];
    assert_eq!(common::field(ip, "ip.src"), src.to_string());
    assert_eq!(common::field(ip, "ip.dst"), dst.to_string());
    assert_eq!(common::field(ip, "ip.ttl"), "1");
    assert_eq!(common::field(ip, "ip.dsfield"), "0xc0");
    assert_eq!(common::field(ip, "ip.proto"), "2");
    assert_eq!(common::field(ip, "ip.checksum.status"), "2", "IPv4 header checksum is not verified by default");
    assert_eq!(common::field(ip, "ip.opt.type"), "148");
    assert_eq!(common::field(ip, "ip.opt.ra"), "0");
    assert_eq!(common::field(&layers["igmp"], "igmp.checksum.status"), "1");
}

/// Checks the IPv6 envelope of MLD: hop limit 1, Hop-by-Hop with Router Alert 0 (MLD), ICMPv6.
fn assert_mld_envelope(layers: &Value, src: Ipv6Addr, dst: Ipv6Addr) {
    let ip = &layers["ipv6"];
    assert_eq!(common::field(ip, "ipv6.src"), src.to_string());
    assert_eq!(common::field(ip, "ipv6.dst"), dst.to_string());
    assert_eq!(common::field(ip, "ipv6.hlim"), "1");
    assert_eq!(common::field(ip, "ipv6.nxt"), "0");
    assert_eq!(common::field(ip, "ipv6.hopopts.nxt"), "58");
    assert_eq!(sorted(ip, "ipv6.opt.type"), ["0x01", "0x05"]);
    assert_eq!(common::field(ip, "ipv6.opt.router_alert"), "0");
    assert_eq!(common::field(&layers["icmpv6"], "icmpv6.checksum.status"), "1");
}

#[test]
fn igmpv3_general_queries() {
    if !common::tshark_available() {
        return;
    }
    let querier = v4("198.51.100.1");
    // The AMT sample (MRC 0x64 = 10 s, QRV 2, QQIC 125), and one with floating-point codes,
    // S set and the largest QRV.
    let sample = QueryV3::general(0x64, 2, 125);
    let floating = QueryV3 { suppress: true, ..QueryV3::general(0xff, 7, 0x90) };
    let queries = [sample, floating];
    let datagrams: Vec<Vec<u8>> =
        queries.iter().map(|q| igmp::datagram(querier, &igmp::Repr::QueryV3(q.clone())).unwrap()).collect();
    let layers = decode(&datagrams);
    for (query, layers) in queries.iter().zip(&layers) {
        assert_igmp_envelope(layers, querier, igmp::ALL_SYSTEMS);
        let igmp_layer = &layers["igmp"];
        assert_eq!(common::field(igmp_layer, "igmp.type"), "0x11");
        assert_eq!(common::field(igmp_layer, "igmp.version"), "3");
        assert_eq!(common::field(igmp_layer, "igmp.maddr"), "0.0.0.0");
        assert_eq!(common::field(igmp_layer, "igmp.max_resp"), igmp::decode_code8(query.max_resp_code).to_string());
        assert_eq!(common::field(igmp_layer, "igmp.s"), if query.suppress { "1" } else { "0" });
        assert_eq!(common::field(igmp_layer, "igmp.qrv"), query.qrv.to_string());
        assert_eq!(common::field(igmp_layer, "igmp.qqic"), query.qqic.to_string());
        assert_eq!(common::field(igmp_layer, "igmp.num_src"), "0");
        assert!(common::find_all(igmp_layer, "igmp.saddr").is_empty());
    }
    // 0xff: exp 7, mant 15 → 31 << 10 = 31744 tenths of a second (RFC 3376 §4.1.1).
    assert_eq!(common::field(&layers[1]["igmp"], "igmp.max_resp"), "31744");
    assert_eq!(common::field(&layers[1]["igmp"], "igmp.max_resp.exp"), "0x07");
    assert_eq!(common::field(&layers[1]["igmp"], "igmp.max_resp.mant"), "0x0f");
}

#[test]
fn igmpv3_group_and_source_specific_query() {
    if !common::tshark_available() {
        return;
    }
    let querier = v4("10.7.1.1");
    let group = v4("232.1.1.1");
    let sources = vec![v4("23.212.185.4"), v4("198.51.100.7"), v4("203.0.113.15")];
    let query = QueryV3 { suppress: true, ..QueryV3::specific(0x8a, 2, 125, group, sources.clone()) };
    let group_only = QueryV3::specific(10, 2, 125, group, vec![]);
    let datagrams = vec![
        igmp::datagram(querier, &igmp::Repr::QueryV3(query)).unwrap(),
        igmp::datagram(querier, &igmp::Repr::QueryV3(group_only)).unwrap(),
    ];
    let layers = decode(&datagrams);
    for layer in &layers {
        assert_igmp_envelope(layer, querier, group);
        assert_eq!(common::field(&layer["igmp"], "igmp.maddr"), "232.1.1.1");
        assert_eq!(common::field(&layer["igmp"], "igmp.version"), "3");
    }
    let igmp_layer = &layers[0]["igmp"];
    // 0x8a: exp 0, mant 10 → 26 << 3 = 208 (20.8 s).
    assert_eq!(common::field(igmp_layer, "igmp.max_resp"), "208");
    assert_eq!(common::field(igmp_layer, "igmp.s"), "1");
    assert_eq!(common::field(igmp_layer, "igmp.num_src"), "3");
    assert_eq!(sorted(igmp_layer, "igmp.saddr"), sorted_strings(&sources));
    assert_eq!(common::field(&layers[1]["igmp"], "igmp.num_src"), "0");
    assert_eq!(common::field(&layers[1]["igmp"], "igmp.max_resp"), "10");
}

#[test]
fn igmpv3_reports_with_every_record_type() {
    if !common::tshark_available() {
        return;
    }
    let s1 = v4("23.212.185.4");
    let s2 = v4("198.51.100.7");
    let s3 = v4("203.0.113.15");
    let every_type = vec![
        Record::new(RecordType::ModeIsInclude, v4("232.1.1.1"), vec![s1, s2]),
        Record::new(RecordType::ModeIsExclude, v4("239.1.1.1"), vec![]),
        Record::new(RecordType::ChangeToIncludeMode, v4("232.1.1.3"), vec![s3]),
        Record::new(RecordType::ChangeToExcludeMode, v4("239.1.1.4"), vec![s1]),
        Record::new(RecordType::AllowNewSources, v4("232.1.1.5"), vec![s1, s2, s3]),
        Record::new(RecordType::BlockOldSources, v4("232.1.1.6"), vec![s2]),
    ];
    // The SSM join / leave pair Linux sends (lab-notes.md §10.3), and the AMT sample report.
    let join_leave = vec![
        Record::new(RecordType::AllowNewSources, v4("232.1.1.1"), vec![s1]),
        Record::new(RecordType::BlockOldSources, v4("232.1.1.2"), vec![s1]),
        Record::new(RecordType::ModeIsInclude, v4("232.1.1.3"), vec![s1]),
    ];
    let sample = vec![Record::new(RecordType::AllowNewSources, v4("232.1.1.1"), vec![s1])];
    let reports = [every_type, join_leave, sample];
    let hosts = [Ipv4Addr::UNSPECIFIED, v4("10.7.1.2"), Ipv4Addr::UNSPECIFIED];
    let datagrams: Vec<Vec<u8>> = reports
        .iter()
        .zip(hosts)
        .map(|(records, host)| igmp::datagram(host, &igmp::Repr::ReportV3(Report::new(records.clone()))).unwrap())
        .collect();
    let layers = decode(&datagrams);
    for ((records, host), layer) in reports.iter().zip(hosts).zip(&layers) {
        assert_igmp_envelope(layer, host, igmp::ALL_IGMPV3_ROUTERS);
        let igmp_layer = &layer["igmp"];
        assert_eq!(common::field(igmp_layer, "igmp.type"), "0x22");
        assert_eq!(common::field(igmp_layer, "igmp.version"), "3");
        assert_eq!(common::field(igmp_layer, "igmp.num_grp_recs"), records.len().to_string());
        assert_eq!(igmp_records_from_tshark(igmp_layer), records_from_repr(records));
    }
    // All six record types appear (RFC 3376 §4.2.12).
    let types = sorted(&layers[0]["igmp"], "igmp.record_type");
    assert_eq!(types, ["1", "2", "3", "4", "5", "6"]);
    // The AMT sample report's checksum (protocols.md §A1).
    assert_eq!(common::field(&layers[2]["igmp"], "igmp.checksum"), "0x1f22");
}

#[test]
fn igmpv2_report_leave_and_query() {
    if !common::tshark_available() {
        return;
    }
    let host = v4("10.7.1.2");
    let group = v4("239.1.2.3");
    let datagrams = vec![
        igmp::datagram(host, &igmp::Repr::ReportV2 { group }).unwrap(),
        igmp::datagram(host, &igmp::Repr::LeaveV2 { group }).unwrap(),
        igmp::datagram(host, &igmp::Repr::QueryV2 { max_resp_time: 100, group: Ipv4Addr::UNSPECIFIED }).unwrap(),
        igmp::datagram(host, &igmp::Repr::QueryV2 { max_resp_time: 10, group }).unwrap(),
        igmp::datagram(host, &igmp::Repr::ReportV1 { group }).unwrap(),
    ];
    let layers = decode(&datagrams);
    let expected = [
        ("0x16", "2", group, "0", group),
        ("0x17", "2", igmp::ALL_ROUTERS, "0", group),
        ("0x11", "2", igmp::ALL_SYSTEMS, "100", Ipv4Addr::UNSPECIFIED),
        ("0x11", "2", group, "10", group),
        ("0x12", "1", group, "0", group),
    ];
    for (layer, (kind, version, dst, max_resp, maddr)) in layers.iter().zip(expected) {
        assert_igmp_envelope(layer, host, dst);
        let igmp_layer = &layer["igmp"];
        assert_eq!(common::field(igmp_layer, "igmp.type"), kind);
        assert_eq!(common::field(igmp_layer, "igmp.version"), version);
        assert_eq!(common::field(igmp_layer, "igmp.maddr"), maddr.to_string());
        if version == "2" {
            assert_eq!(common::field(igmp_layer, "igmp.max_resp"), max_resp);
        }
    }
}

#[test]
fn mldv2_reports_with_several_records() {
    if !common::tshark_available() {
        return;
    }
    let s1 = v6("2001:db8::1");
    let s2 = v6("2001:db8::2");
    let s3 = v6("2001:db8:ffff::15");
    let records = vec![
        AddressRecord::new(RecordType::AllowNewSources, v6("ff3e::8000:1"), vec![s1]),
        AddressRecord::new(RecordType::BlockOldSources, v6("ff3e::8000:2"), vec![s1, s2]),
        AddressRecord::new(RecordType::ModeIsInclude, v6("ff3e::8000:3"), vec![s3, s1, s2]),
        AddressRecord::new(RecordType::ModeIsExclude, v6("ff15::1234"), vec![]),
        AddressRecord::new(RecordType::ChangeToIncludeMode, v6("ff3e::8000:5"), vec![s2]),
        AddressRecord::new(RecordType::ChangeToExcludeMode, v6("ff15::5678"), vec![s3]),
    ];
    let single = vec![AddressRecord::new(RecordType::AllowNewSources, v6("ff3e::8000:1"), vec![s1])];
    let reports = [records, single];
    let hosts = [v6("fe80::1"), Ipv6Addr::UNSPECIFIED];
    let datagrams: Vec<Vec<u8>> = reports
        .iter()
        .zip(hosts)
        .map(|(records, host)| mld::datagram(host, &mld::Repr::ReportV2(Report::new(records.clone()))).unwrap())
        .collect();
    let layers = decode(&datagrams);
    for ((records, host), layer) in reports.iter().zip(hosts).zip(&layers) {
        assert_mld_envelope(layer, host, mld::ALL_MLDV2_ROUTERS);
        let icmp = &layer["icmpv6"];
        assert_eq!(common::field(icmp, "icmpv6.type"), "143");
        assert_eq!(common::field(icmp, "icmpv6.code"), "0");
        assert_eq!(common::field(icmp, "icmpv6.mldr.nb_mcast_records"), records.len().to_string());
        assert_eq!(mld_records_from_tshark(icmp), records_from_repr(records));
    }
    assert_eq!(sorted(&layers[0]["icmpv6"], "icmpv6.mldr.mar.record_type"), ["1", "2", "3", "4", "5", "6"]);
}

#[test]
fn mldv2_queries() {
    if !common::tshark_available() {
        return;
    }
    let querier = v6("fe80::1");
    let group = v6("ff3e::8000:1");
    let sources = vec![v6("2001:db8::1"), v6("2001:db8::2")];
    // General (MRC 10000 ms, the RFC 3810 §9.3 default), specific with sources, S set and
    // floating-point codes (MRC 0x9234 = 0x1234 << 4 ms, QQIC 0x90 = 256 s).
    let general = QueryV2::general(10000, 2, 125);
    let specific = QueryV2 { suppress: true, ..QueryV2::specific(0x9234, 3, 0x90, group, sources.clone()) };
    let queries = [(general, mld::ALL_NODES), (specific, group)];
    let datagrams: Vec<Vec<u8>> =
        queries.iter().map(|(q, _)| mld::datagram(querier, &mld::Repr::QueryV2(q.clone())).unwrap()).collect();
    let layers = decode(&datagrams);
    for ((query, dst), layer) in queries.iter().zip(&layers) {
        assert_mld_envelope(layer, querier, *dst);
        let icmp = &layer["icmpv6"];
        assert_eq!(common::field(icmp, "icmpv6.type"), "130");
        assert_eq!(common::field(icmp, "icmpv6.mld.multicast_address"), query.group.to_string());
        assert_eq!(
            common::field(icmp, "icmpv6.mld.maximum_response_code"),
            mld::decode_code16(query.max_resp_code).to_string()
        );
        assert_eq!(common::field(icmp, "icmpv6.mld.flag.s"), if query.suppress { "1" } else { "0" });
        assert_eq!(common::field(icmp, "icmpv6.mld.flag.qrv"), query.qrv.to_string());
        // Unlike igmp.qqic, tshark shows the decoded interval here (RFC 3810 §5.1.9).
        assert_eq!(common::field(icmp, "icmpv6.mld.qqi"), igmp::decode_code8(query.qqic).to_string());
        assert_eq!(common::field(icmp, "icmpv6.mld.nb_sources"), query.sources.len().to_string());
        assert_eq!(sorted(icmp, "icmpv6.mld.source_address"), sorted_strings(&query.sources));
    }
}
