#![no_main]
//! AMTRELAY RDATA in wire form, as it arrives inside a DNS answer.
use libfuzzer_sys::fuzz_target;
use mcast_wire::amtrelay::{AmtRelay, Packet};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = (packet.precedence(), packet.discovery_optional(), packet.relay_type(), packet.relay_bytes());
    }
    let Ok(record) = AmtRelay::parse(data) else { return };
    let _ = (record.is_usable(), record.to_string(), record.to_generic());
    let wire = record.to_vec().expect("emit what was parsed");
    assert_eq!(AmtRelay::parse(&wire).expect("reparse"), record);
    let text: AmtRelay = record.to_string().parse().expect("presentation form parses back");
    assert_eq!(text, record);
});
