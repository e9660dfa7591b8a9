//! The tshark cross-check harness: writes packets into a pcap file, runs tshark on it and
//! hands back its JSON decode, failing on any malformed-packet or warning expert info.
//!
//! tshark is an independent decoder; a disagreement between it and this crate is treated as
//! our bug unless the RFC proves tshark wrong (each such case is commented with the section).
//!
//! These tests fail when tshark is missing: CI installs it. Set
//! `MCAST_SKIP_TSHARK=1` to skip them explicitly on a machine without tshark.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// LINKTYPE_RAW: each record is a bare IPv4 or IPv6 datagram.
const LINKTYPE_RAW: u32 = 101;

/// Writes a classic little-endian pcap file holding `datagrams` (raw IP, one per record).
pub fn write_pcap(datagrams: &[Vec<u8>]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcast-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("capture-{n}.pcap"));
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microsecond timestamps
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    for (i, datagram) in datagrams.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(datagram.len() as u32).to_le_bytes());
        out.extend_from_slice(&(datagram.len() as u32).to_le_bytes());
        out.extend_from_slice(datagram);
    }
    std::fs::File::create(&path).unwrap().write_all(&out).unwrap();
    path
}

/// Whether the tshark tests should run. Panics when tshark is missing unless skipping was
/// asked for explicitly, so CI can never silently skip the cross-check.
pub fn tshark_available() -> bool {
    if std::env::var_os("MCAST_SKIP_TSHARK").is_some_and(|v| v == "1") {
        eprintln!("MCAST_SKIP_TSHARK=1: skipping the tshark cross-check");
        return false;
    }
    match Command::new("tshark").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => panic!("tshark is not installed (apt-get install tshark), or set MCAST_SKIP_TSHARK=1"),
    }
}

/// Runs `tshark -r FILE -T json` with extra decode-as arguments and returns one JSON
/// `layers` object per packet.
pub fn tshark_decode(datagrams: &[Vec<u8>], extra_args: &[&str]) -> Vec<Value> {
    let path = write_pcap(datagrams);
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(&path)
        .args(["-T", "json", "-V"])
        .args(extra_args)
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("tshark JSON");
    let packets = json.as_array().expect("array of packets");
    assert_eq!(packets.len(), datagrams.len(), "tshark saw a different number of packets");
    let layers: Vec<Value> = packets.iter().map(|p| p["_source"]["layers"].clone()).collect();
    for (i, layer) in layers.iter().enumerate() {
        assert_no_malformed(i, layer);
    }
    let _ = std::fs::remove_file(&path);
    layers
}

/// Fails if tshark flagged the packet as malformed or raised a warning/error expert item.
pub fn assert_no_malformed(index: usize, layers: &Value) {
    let text = layers.to_string();
    assert!(!text.contains("\"_ws.malformed\""), "packet {index}: tshark reports malformed packet: {layers:#}");
    // Expert info severities: "Error" and "Warning" indicate a decode problem (bad checksum,
    // bad length); "Chat"/"Note" are informational.
    let mut problems = Vec::new();
    collect_expert(layers, &mut problems);
    assert!(problems.is_empty(), "packet {index}: tshark expert info {problems:?} in {layers:#}");
}

fn collect_expert(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "_ws.expert" {
                    let severity = v.get("_ws.expert.severity").and_then(Value::as_str).unwrap_or("");
                    // 6291456 = PI_WARN, 8388608 = PI_ERROR (epan/proto.h).
                    if severity == "6291456" || severity == "8388608" {
                        out.push(v.get("_ws.expert.message").map(Value::to_string).unwrap_or_default());
                    }
                }
                collect_expert(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_expert(v, out)),
        _ => {}
    }
}

/// Finds every value stored under `key` anywhere in a tshark JSON tree (tshark nests fields
/// under tree labels that are awkward to address directly).
pub fn find_all(value: &Value, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    find_into(value, key, &mut out);
    out
}

fn find_into(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        Value::Array(items) => out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned))),
                        other => out.push(other.to_string()),
                    }
                }
                find_into(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| find_into(v, key, out)),
        _ => {}
    }
}

/// The single value stored under `key`; panics (failing the test) if absent or repeated.
pub fn field(value: &Value, key: &str) -> String {
    let all = find_all(value, key);
    assert_eq!(all.len(), 1, "expected exactly one {key}, got {all:?} in {value:#}");
    all.into_iter().next().unwrap()
}
