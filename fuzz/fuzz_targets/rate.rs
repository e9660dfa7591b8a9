#![no_main]
//! cbacc's rate parser (`--bandwidth 10Mibit/s`, `--default 4Mbit/s`). Oracles: never panics;
//! a parsed rate, displayed (SI units, three decimals), parses back to within a thousandth of
//! the displayed unit.
use cbacc::Rate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rate) = text.parse::<Rate>() else { return };
    let shown = rate.to_string();
    let a = rate.bps();
    let back: Rate = match shown.parse() {
        Ok(back) => back,
        // Display rounds to thousandths of a Tbit/s: within 0.5 Gbit/s of u64::MAX bit/s the
        // shown value exceeds what a Rate holds (18446744.074Tbit/s).
        Err(_) if a > u64::MAX - 500_000_000 => return,
        Err(e) => panic!("{text:?} -> {shown:?}: {e}"),
    };
    let b = back.bps();
    assert!(a.abs_diff(b) as u128 * 1000 <= u128::from(a.max(1)), "{text:?} = {a} -> {shown} -> {b}");
});
