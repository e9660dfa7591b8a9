#![no_main]
//! PIMv2 messages: Hello options, Join/Prune (owned and zero-copy views), other types.
use libfuzzer_sys::fuzz_target;
use mcast_wire::pim::{ChecksumContext, Hello, JoinPrune, JoinPruneView, Packet, Repr};

fn roundtrip(bytes: &[u8], ctx: ChecksumContext) {
    let Ok(packet) = Packet::new_checked(bytes) else { return };
    if let Ok(options) = packet.hello_options() {
        for option in options.flatten() {
            let _ = option.value;
        }
    }
    if let Ok(view) = packet.join_prune() {
        let mut total = 0usize;
        for group in view.groups() {
            total += group.joins().count() + group.prunes().count();
        }
        let owned = JoinPrune::from_view(&view);
        let _ = (total, owned);
    }
    let _ = Hello::parse(packet.body());
    let _ = JoinPrune::parse(packet.body());
    let _ = JoinPruneView::new_checked(packet.body());
    let Ok(repr) = Repr::parse(&packet, ctx) else { return };
    if let Ok(out) = repr.to_bytes(ctx) {
        let again = Repr::parse(&Packet::new_checked(&out[..]).expect("check"), ctx).expect("reparse");
        assert_eq!(again, repr);
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip(data, ChecksumContext::V4);
    roundtrip(data, ChecksumContext::Unchecked);
    let mut fixed = data.to_vec();
    if let Ok(mut packet) = Packet::new_checked(&mut fixed[..]) {
        packet.fill_checksum(ChecksumContext::V4);
    }
    roundtrip(&fixed, ChecksumContext::V4);
});
