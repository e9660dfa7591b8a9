#![no_main]
//! IPv6 header and extension-header walk (Hop-by-Hop Router Alert).
use libfuzzer_sys::fuzz_target;
use mcast_wire::ipv6::{HopByHop, Packet, Repr, upper_layer};
use mcast_wire::IpProtocol;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = packet.upper_layer();
        if let Ok(repr) = Repr::parse(&packet) {
            let again = repr.datagram(packet.payload()).expect("emit what was parsed");
            assert_eq!(Repr::parse(&Packet::new_checked(&again[..]).expect("check")).expect("reparse"), repr);
        }
    }
    let _ = upper_layer(IpProtocol::HOP_BY_HOP, data);
    if let Ok(hbh) = HopByHop::new_checked(data) {
        let _ = (hbh.router_alert(), hbh.options(), hbh.next_header());
    }
});
