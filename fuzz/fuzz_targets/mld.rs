#![no_main]
//! MLD messages (v1/v2) with the IPv6 pseudo-header checksum, and whole MLD datagrams.
use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use mcast_wire::mld::{self, Packet, Repr};

const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

fn roundtrip(bytes: &[u8]) {
    let Ok(packet) = Packet::new_checked(bytes) else { return };
    for record in packet.address_records().flatten() {
        let _ = (record.sources().count(), record.aux_data(), record.to_record());
    }
    let Ok(repr) = Repr::parse(&packet, &SRC, &DST) else { return };
    let mut out = vec![0; repr.buffer_len()];
    if repr.emit(&mut out, &SRC, &DST).is_ok() {
        let again = Repr::parse(&Packet::new_checked(&out[..]).expect("check"), &SRC, &DST).expect("reparse");
        assert_eq!(again, repr);
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip(data);
    let mut fixed = data.to_vec();
    if let Ok(mut packet) = Packet::new_checked(&mut fixed[..]) {
        packet.fill_checksum(&SRC, &DST);
    }
    roundtrip(&fixed);
    let _ = mld::parse_datagram(data);
});
