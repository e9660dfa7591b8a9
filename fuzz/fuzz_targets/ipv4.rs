#![no_main]
//! IPv4 header: parse arbitrary bytes (and the same bytes with a valid header checksum, to get
//! past the checksum), then check that emitting what was parsed parses back to the same value.
use libfuzzer_sys::fuzz_target;
use mcast_wire::ipv4::{Packet, Repr, options_have_router_alert};

fn roundtrip(bytes: &[u8]) {
    let Ok(packet) = Packet::new_checked(bytes) else { return };
    let _ = (packet.payload(), options_have_router_alert(packet.options()), packet.frag_offset());
    let Ok(repr) = Repr::parse(&packet) else { return };
    let _ = repr.has_router_alert();
    let Ok(again) = repr.datagram(packet.payload()) else { return };
    let reparsed = Repr::parse(&Packet::new_checked(&again[..]).expect("emitted header checks")).expect("reparse");
    assert_eq!(Repr { options: Vec::new(), ..reparsed.clone() }, Repr { options: Vec::new(), ..repr.clone() });
}

fuzz_target!(|data: &[u8]| {
    roundtrip(data);
    let mut fixed = data.to_vec();
    if let Ok(mut packet) = Packet::new_checked(&mut fixed[..]) {
        packet.fill_checksum();
    }
    roundtrip(&fixed);
});
