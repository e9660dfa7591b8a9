#![no_main]
//! The lab DNS server's zone-file parser (`mcast_labdns::Zone::parse`: RFC 1035 master files
//! with AMTRELAY in presentation and RFC 3597 generic form, DNAME, and hickory's parser for the
//! rest), three ways:
//!
//! * the input as a whole zone file;
//! * the input as record lines after a valid `$ORIGIN`/SOA header (so the fuzzer spends its
//!   time in the record-line parsing rather than on the header);
//! * the input as an AMTRELAY record's RDATA: when it parses as presentation form, the record
//!   written as `driad-ingest zone-record` writes it (presentation and generic form) must load
//!   in a zone and give the same record both ways.
use libfuzzer_sys::fuzz_target;
use mcast_labdns::Zone;
use mcast_wire::amtrelay::AmtRelay;

const HEADER: &str = "$ORIGIN 100.51.198.in-addr.arpa.\n$TTL 30\n\
@ IN SOA ns.example.net. hostmaster.example.net. 1 3600 600 86400 5\n@ IN NS ns.example.net.\n";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match mode % 3 {
        0 => {
            if let Ok(zone) = Zone::parse(text, "fuzz.zone") {
                assert!(!zone.records().is_empty(), "a zone has at least its SOA");
            }
        }
        1 => {
            let _ = Zone::parse(&format!("{HEADER}{text}\n"), "fuzz.zone");
        }
        _ => {
            let Ok(record) = text.parse::<AmtRelay>() else { return };
            // The record as `driad-ingest zone-record` writes it (owner, IN, type, RDATA).
            let presentation = format!("{HEADER}10 IN AMTRELAY {record}\n");
            let generic = format!("{HEADER}10 IN TYPE260 {}\n", record.to_generic());
            let a = Zone::parse(&presentation, "p.zone").unwrap_or_else(|e| panic!("{e}\n{presentation}"));
            let b = Zone::parse(&generic, "g.zone").unwrap_or_else(|e| panic!("{e}\n{generic}"));
            assert_eq!(a.records().len(), 3);
            let wire = |z: &Zone| {
                use hickory_proto::serialize::binary::BinEncodable;
                z.records()[2].data.to_bytes().expect("RDATA encodes")
            };
            assert_eq!(wire(&a), wire(&b), "presentation and generic forms differ\n{presentation}{generic}");
            assert_eq!(AmtRelay::parse(&wire(&a)).expect("served RDATA decodes"), record);
        }
    }
});
