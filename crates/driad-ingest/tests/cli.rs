//! The `lookup` and `zone-record` subcommands, run as a user would (no root needed): `lookup`
//! against the lab's own zones served by mcast-labdns on 127.0.0.1, `zone-record` against the
//! RFC 8777 §4.4 examples.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use mcast_labdns::{LabDns, Options};

fn driad_ingest(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_driad-ingest")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lab's zone files (lab/zones), so this test and the lab scenarios see the same records.
async fn lab_dns() -> (tempfile::TempDir, LabDns) {
    let dir = tempfile::tempdir().unwrap();
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lab/zones");
    for entry in std::fs::read_dir(&zones).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let dns = LabDns::start(Options::dir("127.0.0.1:0".parse().unwrap(), dir.path())).await.unwrap();
    (dir, dns)
}

fn lookup(server: SocketAddr, source: &str) -> (bool, String, String) {
    driad_ingest(&["lookup", source, "--nameserver", &server.to_string(), "--timeout", "500ms"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_prints_records_and_relays_in_order() {
    let (_dir, dns) = lab_dns().await;
    let server = dns.local_addr();

    let (ok, out, err) = lookup(server, "198.51.100.10");
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "; AMTRELAY records of 198.51.100.10 at 10.100.51.198.in-addr.arpa.");
    assert_eq!(lines[1], "10.100.51.198.in-addr.arpa. 30 IN AMTRELAY 10 0 1 203.0.113.15");
    assert_eq!(lines[2], "10.100.51.198.in-addr.arpa. 30 IN AMTRELAY 20 0 1 203.0.113.16");
    assert!(out.contains(";  1. 203.0.113.15  precedence 10  D=0 (Relay Discovery first)"), "{out}");
    assert!(out.contains(";  2. 203.0.113.16  precedence 20  D=0"), "{out}");

    // Type 3: both addresses of the name, equal precedence (random order), the name shown.
    let (ok, out, err) = lookup(server, "198.51.100.11");
    assert!(ok, "{err}");
    assert!(out.contains("11.100.51.198.in-addr.arpa. 30 IN AMTRELAY 10 0 3 relays.example.net."), "{out}");
    assert!(out.contains("random among equal precedence"), "{out}");
    assert!(out.contains("203.0.113.15  precedence 10  D=0 (Relay Discovery first) via relays.example.net."), "{out}");
    assert!(out.contains("203.0.113.16  precedence 10  D=0 (Relay Discovery first) via relays.example.net."), "{out}");

    // D = 1, published in the generic form, printed in presentation form.
    let (ok, out, err) = lookup(server, "198.51.100.12");
    assert!(ok, "{err}");
    assert!(out.contains("12.100.51.198.in-addr.arpa. 30 IN AMTRELAY 10 1 1 203.0.113.16"), "{out}");
    assert!(out.contains(";  1. 203.0.113.16  precedence 10  D=1 (Request straight to the relay)"), "{out}");

    // Type 0.
    let (ok, out, err) = lookup(server, "198.51.100.13");
    assert!(ok, "{err}");
    assert!(out.contains("IN AMTRELAY 0 0 0 ."), "{out}");
    assert!(out.contains("no AMT relay should be used for this source"), "{out}");

    // NODATA and NXDOMAIN, with the SOA minimum as the negative TTL.
    let (ok, out, _) = lookup(server, "198.51.100.14");
    assert!(ok && out.contains("no AMTRELAY record (NODATA); negative TTL 5 s"), "{out}");
    let (ok, out, _) = lookup(server, "198.51.100.15");
    assert!(ok && out.contains("no AMTRELAY record (NXDOMAIN); negative TTL 5 s"), "{out}");

    // A CNAME into another zone, to a record without the root label (as deployed).
    let (ok, out, err) = lookup(server, "198.51.100.21");
    assert!(ok, "{err}");
    assert!(out.contains("21.v4.driad.example.com. 30 IN AMTRELAY 16 0 3 r1.example.net."), "{out}");
    assert!(out.contains("203.0.113.15  precedence 16  D=0 (Relay Discovery first) via r1.example.net."), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_fails_clearly_without_a_server() {
    // A port nobody listens on.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    drop(sock);
    let (ok, _, err) = lookup(addr, "198.51.100.10");
    assert!(!ok);
    assert!(err.contains("looking up 198.51.100.10"), "{err}");
}

#[test]
fn zone_record_matches_the_rfc_8777_examples() {
    // RFC 8777 §4.4: 198.51.100.12 → 203.0.113.15.
    let (ok, out, err) = driad_ingest(&["zone-record", "198.51.100.12", "203.0.113.15"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1], "12.100.51.198.in-addr.arpa. IN AMTRELAY 10 0 1 203.0.113.15");
    assert_eq!(lines[3], "; 12.100.51.198.in-addr.arpa. IN TYPE260 \\# 6 0a01cb00710f");

    // IPv6 source and relay.
    let (ok, out, err) = driad_ingest(&["zone-record", "2001:db8::1", "2001:db8::15"]);
    assert!(ok, "{err}");
    let owner = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert!(out.contains(&format!("{owner} IN AMTRELAY 10 0 2 2001:db8::15\n")), "{out}");
    assert!(out.contains(&format!("{owner} IN TYPE260 \\# 18 0a0220010db8000000000000000000000015\n")), "{out}");

    // A name with D = 1 (mkdriad.py rejected -d 1) and the root label emitted: 25 bytes
    // where the RFC's own example (without the root label) has 24.
    let (ok, out, err) =
        driad_ingest(&["zone-record", "2001:db8::2", "amtrelays.example.com", "--precedence", "128", "-d"]);
    assert!(ok, "{err}");
    let owner = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert!(out.contains(&format!("{owner} IN AMTRELAY 128 1 3 amtrelays.example.com.\n")), "{out}");
    assert!(
        out.contains(&format!("{owner} IN TYPE260 \\# 25 808309616d7472656c617973076578616d706c6503636f6d00\n")),
        "{out}"
    );
    assert!(out.contains("D=1: gateways may send a Request straight to the relay"), "{out}");
}

#[test]
fn zone_record_generic_form_ttl_and_type_0() {
    let (ok, out, err) =
        driad_ingest(&["zone-record", "198.51.100.10", "relay1.example.net.", "--generic", "--ttl", "300"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        "10.100.51.198.in-addr.arpa. 300 IN TYPE260 \\# 22 0a030672656c617931076578616d706c65036e657400"
    );
    assert_eq!(lines[3], "; 10.100.51.198.in-addr.arpa. 300 IN AMTRELAY 10 0 3 relay1.example.net.");

    let (ok, out, err) = driad_ingest(&["zone-record", "198.51.100.13", ".", "--precedence", "0"]);
    assert!(ok, "{err}");
    assert!(out.contains("13.100.51.198.in-addr.arpa. IN AMTRELAY 0 0 0 .\n"), "{out}");
    assert!(out.contains("IN TYPE260 \\# 2 0000\n"), "{out}");

    let (ok, _, err) = driad_ingest(&["zone-record", "198.51.100.13", "232.1.1.1"]);
    assert!(!ok);
    assert!(err.contains("cannot be a relay address"), "{err}");
    let (ok, _, err) = driad_ingest(&["zone-record", "198.51.100.13", "a..b"]);
    assert!(!ok, "{err}");
}
