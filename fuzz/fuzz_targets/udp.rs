#![no_main]
//! UDP header with both pseudo-header families and both zero-checksum policies.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use mcast_wire::udp::{Packet, Repr, ZeroChecksum};

fuzz_target!(|data: &[u8]| {
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let Ok(packet) = Packet::new_checked(data) else { return };
    let _ = packet.payload();
    for addr in [v4, v6] {
        for policy in [ZeroChecksum::Ipv4Only, ZeroChecksum::Always] {
            if let Ok(repr) = Repr::parse(&packet, &addr, &addr, policy) {
                let mut out = vec![0; 8 + packet.payload().len()];
                repr.emit_with_payload(&mut out, &addr, &addr, packet.payload()).expect("emit");
                let again = Packet::new_checked(&out[..]).expect("check");
                assert_eq!(Repr::parse(&again, &addr, &addr, ZeroChecksum::Ipv4Only).expect("reparse"), repr);
            }
        }
    }
});
