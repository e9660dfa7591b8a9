#![no_main]
//! AMTRELAY presentation form and RFC 3597 generic form, as written in zone/config files.
use libfuzzer_sys::fuzz_target;
use mcast_wire::amtrelay::{AmtRelay, DomainName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = text.parse::<DomainName>().map(|n| n.to_string());
    for parsed in [text.parse::<AmtRelay>(), AmtRelay::from_generic(text)] {
        let Ok(record) = parsed else { continue };
        let again: AmtRelay = record.to_string().parse().expect("Display output parses");
        assert_eq!(again, record);
        assert_eq!(AmtRelay::from_generic(&record.to_generic()).expect("generic parses"), record);
    }
});
