#![no_main]
//! cbacc's reading of a DORMS RESTCONF answer (`cbacc::metadata::parse_metadata`), for an IPv4
//! and an IPv6 flow and both legacy units. Oracles: never panics; a rate found is consistent
//! between the two legacy readings where only `max-speed` is used.
use std::net::IpAddr;

use cbacc::metadata::{LegacyUnit, RateLeaf, parse_metadata};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let flows: [(IpAddr, IpAddr); 2] = [
        ("198.51.100.10".parse().unwrap(), "232.1.1.1".parse().unwrap()),
        ("2001:db8::10".parse().unwrap(), "ff3e::8000:1".parse().unwrap()),
    ];
    for (source, group) in flows {
        let bit = parse_metadata(data, source, group, LegacyUnit::Bit);
        let kbit = parse_metadata(data, source, group, LegacyUnit::Kbit);
        if let (Ok(Some(a)), Ok(Some(b))) = (&bit, &kbit)
            && a.leaf == RateLeaf::MaxSpeed
            && b.leaf == RateLeaf::MaxSpeed
        {
            assert_eq!(a, b, "max-speed does not depend on the legacy unit");
        }
    }
});
