#![no_main]
//! IGMP messages (v1/v2/v3) and whole IGMP datagrams as AMT encapsulates them.
use libfuzzer_sys::fuzz_target;
use mcast_wire::igmp::{self, Packet, Repr};

fn roundtrip(bytes: &[u8]) {
    let Ok(packet) = Packet::new_checked(bytes) else { return };
    let _ = (packet.query_version(), packet.sources().count(), packet.group_records().count());
    for record in packet.group_records().flatten() {
        let _ = (record.sources().count(), record.aux_data(), record.to_record());
    }
    let Ok(repr) = Repr::parse(&packet) else { return };
    let mut out = vec![0; repr.buffer_len()];
    if repr.emit(&mut out).is_ok() {
        let again = Repr::parse(&Packet::new_checked(&out[..]).expect("check")).expect("reparse");
        assert_eq!(again, repr);
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip(data);
    let mut fixed = data.to_vec();
    if let Ok(mut packet) = Packet::new_checked(&mut fixed[..]) {
        packet.fill_checksum();
    }
    roundtrip(&fixed);
    let _ = igmp::parse_datagram(data);
});
