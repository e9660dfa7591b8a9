#![no_main]
//! AMT messages as received on UDP 2268, including the Multicast Data fast path.
use libfuzzer_sys::fuzz_target;
use mcast_wire::amt::{Packet, Repr, parse_data};

fuzz_target!(|data: &[u8]| {
    let _ = parse_data(data);
    let Ok(packet) = Packet::new_checked(data) else { return };
    let _ = (packet.nonce(), packet.relay_addr(), packet.response_mac(), packet.gateway_addr(), packet.encapsulated());
    let Ok(repr) = Repr::parse(&packet) else { return };
    if let Ok(out) = repr.to_vec() {
        let again = Repr::parse_bytes(&out).expect("reparse what was emitted");
        assert_eq!(again, repr);
    }
});
