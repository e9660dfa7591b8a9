//! Bit rates with explicit units.
//!
//! Every rate on the command line carries its unit: `50Mbit/s`, `800kbit/s`, `1.5Gbit/s`,
//! `2000bit/s` (SI prefixes: k = 1000, M = 1000², G = 1000³, T = 1000⁴), or with binary
//! prefixes `50Mibit/s` (Ki = 1024, Mi = 1024², Gi = 1024³, Ti = 1024⁴). `bps` may stand for
//! `bit/s` (`50Mbps`). Decimals are accepted and rounded to the nearest bit/s. A plain number
//! is refused: the original cbacc took plain integers labelled "MiBps" that really meant
//! Mibit/s (its `--bandwidth 50` was 50 × 1,048,576 = 52,428,800 bit/s), so a bare number is
//! exactly the ambiguity this type exists to remove. Byte rates (`MB/s`) are refused too: DORMS
//! advertises bits.

use std::fmt;
use std::str::FromStr;

/// A rate in bit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(u64);

/// Why a rate does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RateError(String);

/// What every error message explains.
const UNITS_HELP: &str = "give a unit: 50Mbit/s, 800kbit/s, 1.5Gbit/s or 2000bit/s (k, M, G, T = powers of 1000), \
     or 50Mibit/s (Ki, Mi, Gi, Ti = powers of 1024); the original cbacc's plain --bandwidth/--default \
     numbers were Mibit/s: its 50 is 50Mibit/s (52428800 bit/s) here";

impl Rate {
    /// Zero.
    pub const ZERO: Rate = Rate(0);

    /// From bit/s.
    pub const fn from_bps(bps: u64) -> Rate {
        Rate(bps)
    }

    /// From kbit/s (the unit of CBACC's `max-speed`); `None` on overflow.
    pub fn from_kbps(kbps: u64) -> Option<Rate> {
        kbps.checked_mul(1000).map(Rate)
    }

    /// In bit/s.
    pub const fn bps(self) -> u64 {
        self.0
    }

    /// Sum, saturating at `u64::MAX` bit/s.
    pub fn saturating_add(self, other: Rate) -> Rate {
        Rate(self.0.saturating_add(other.0))
    }
}

impl std::iter::Sum for Rate {
    fn sum<I: Iterator<Item = Rate>>(iter: I) -> Rate {
        iter.fold(Rate::ZERO, Rate::saturating_add)
    }
}

/// The multiplier of a unit (without the `bit/s` part), or `None`.
fn prefix_multiplier(prefix: &str) -> Option<u64> {
    Some(match prefix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    })
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Rate, RateError> {
        let s = text.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim());
        if number.is_empty() {
            return Err(RateError(format!("{text:?} is not a rate: {UNITS_HELP}")));
        }
        if unit.is_empty() {
            return Err(RateError(format!("{text:?} has no unit: {UNITS_HELP}")));
        }
        let prefix = unit.strip_suffix("bit/s").or_else(|| unit.strip_suffix("bps"));
        let Some(multiplier) = prefix.and_then(prefix_multiplier) else {
            let bytes = unit.ends_with("B/s") || unit.ends_with("Bps") || unit.contains("byte");
            let hint = if bytes { "rates are in bits per second, not bytes; " } else { "" };
            return Err(RateError(format!("{text:?}: unknown unit {unit:?}: {hint}{UNITS_HELP}")));
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 12 {
            return Err(RateError(format!("{text:?}: {number:?} is not a number")));
        }
        // Exact decimal arithmetic: value = (int.frac) × multiplier, rounded to nearest.
        let digits = format!("{int}{frac}");
        let mantissa: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| RateError(format!("{text:?}: too large")))?
        };
        let scale = 10u128.pow(frac.len() as u32);
        let bps = (mantissa * u128::from(multiplier) + scale / 2) / scale;
        u64::try_from(bps).map(Rate).map_err(|_| RateError(format!("{text:?}: too large")))
    }
}

impl fmt::Display for Rate {
    /// SI units, up to three decimals: `52.429Mbit/s`, `4Mbit/s`, `800kbit/s`, `0bit/s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (div, unit) = match self.0 {
            n if n >= 1_000_000_000_000 => (1_000_000_000_000u64, "Tbit/s"),
            n if n >= 1_000_000_000 => (1_000_000_000, "Gbit/s"),
            n if n >= 1_000_000 => (1_000_000, "Mbit/s"),
            n if n >= 1_000 => (1_000, "kbit/s"),
            _ => (1, "bit/s"),
        };
        // Round to thousandths of the unit with integer arithmetic.
        let thousandths = (u128::from(self.0) * 1000 + u128::from(div) / 2) / u128::from(div);
        let (whole, frac) = (thousandths / 1000, thousandths % 1000);
        if frac == 0 {
            write!(f, "{whole}{unit}")
        } else {
            let frac = format!("{frac:03}");
            write!(f, "{whole}.{}{unit}", frac.trim_end_matches('0'))
        }
    }
}

impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> u64 {
        s.parse::<Rate>().unwrap_or_else(|e| panic!("{s}: {e}")).bps()
    }

    #[test]
    fn parses_si_and_binary_units() {
        assert_eq!(r("50Mbit/s"), 50_000_000);
        assert_eq!(r("800kbit/s"), 800_000);
        assert_eq!(r("800Kbit/s"), 800_000);
        assert_eq!(r("1.5Gbit/s"), 1_500_000_000);
        assert_eq!(r("2000bit/s"), 2000);
        assert_eq!(r("2Tbit/s"), 2_000_000_000_000);
        assert_eq!(r(" 12 Mbit/s "), 12_000_000);
        assert_eq!(r("50Mbps"), 50_000_000);
        assert_eq!(r("10Mibit/s"), 10_485_760);
        assert_eq!(r("12Mibit/s"), 12_582_912);
        assert_eq!(r("1Kibit/s"), 1024);
        assert_eq!(r("1Gibit/s"), 1 << 30);
        assert_eq!(r("0.5bit/s"), 1, "rounded to the nearest bit/s");
        assert_eq!(r("0bit/s"), 0);
        assert_eq!(r(".5kbit/s"), 500);
        assert_eq!(r("2.kbit/s"), 2000);
        assert_eq!(r("0.000001Mbit/s"), 1);
    }

    #[test]
    fn refuses_plain_numbers_with_the_original_units_explained() {
        let e = "50".parse::<Rate>().unwrap_err().to_string();
        assert!(e.contains("has no unit"), "{e}");
        assert!(e.contains("50Mibit/s (52428800 bit/s)"), "{e}");
        assert!(e.contains("50Mbit/s"), "{e}");
    }

    #[test]
    fn refuses_bytes_garbage_and_overflow() {
        let e = "50MB/s".parse::<Rate>().unwrap_err().to_string();
        assert!(e.contains("not bytes"), "{e}");
        let e = "6MiB/s".parse::<Rate>().unwrap_err().to_string();
        assert!(e.contains("not bytes"), "{e}");
        for bad in ["", "Mbit/s", "fast", "1.2.3Mbit/s", "-5Mbit/s", "5 Mbit", "5Xbit/s", "5mbit/s", ".bit/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} accepted");
        }
        assert!("99999999999Tbit/s".parse::<Rate>().is_err());
        assert!("999999999999999999999999999999bit/s".parse::<Rate>().is_err());
    }

    #[test]
    fn displays_in_si_units() {
        let d = |bps| Rate::from_bps(bps).to_string();
        assert_eq!(d(0), "0bit/s");
        assert_eq!(d(999), "999bit/s");
        assert_eq!(d(2000), "2kbit/s");
        assert_eq!(d(4_000_000), "4Mbit/s");
        assert_eq!(d(10_485_760), "10.486Mbit/s");
        assert_eq!(d(52_428_800), "52.429Mbit/s");
        assert_eq!(d(1_500_000_000), "1.5Gbit/s");
        assert_eq!(d(u64::MAX), "18446744.074Tbit/s");
        assert_eq!(Rate::from_kbps(4000), Some(Rate::from_bps(4_000_000)));
        assert_eq!(Rate::from_kbps(u64::MAX), None);
    }

    #[test]
    fn display_round_trips_within_a_thousandth_of_the_unit() {
        for bps in [1u64, 7, 1234, 999_999, 1_000_001, 52_428_800, 3_333_333_333] {
            let shown = Rate::from_bps(bps).to_string();
            let back = r(&shown);
            assert!(back.abs_diff(bps) * 1000 <= bps.max(1), "{bps} -> {shown} -> {back}");
        }
    }
}
