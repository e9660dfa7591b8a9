//! The Internet checksum (RFC 1071), in one place.
//!
//! Every checksummed header in this crate (IPv4, UDP, IGMP, MLD, PIM) computes and verifies
//! its checksum through these functions, so there is exactly one implementation to get right.
//!
//! The functions work on *folded partial sums*: [`data`] sums a byte slice, [`pseudo_header_v4`]
//! and [`pseudo_header_v6`] sum the upper-layer pseudo-headers (RFC 768, RFC 8200 §8.1), and
//! [`combine`] adds partial sums together. The value written into a header is the one's
//! complement of the combined sum; a received message verifies when the combined sum over the
//! message (checksum field included) is `0xffff`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds 16-bit big-endian words of `data` into a wide accumulator. An odd trailing byte is
/// padded with zero on the right, as RFC 1071 §4.1 requires.
fn accumulate(mut acc: u64, data: &[u8]) -> u64 {
    // Eight bytes at a time: four 16-bit words per iteration keeps the loop cheap for the
    // 1400-byte payloads the relay checksums on the hot path.
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
        acc += (word >> 48) + ((word >> 32) & 0xffff) + ((word >> 16) & 0xffff) + (word & 0xffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for pair in &mut rest {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a wide accumulator into 16 bits with end-around carry.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The folded one's-complement sum of `data` (not complemented).
pub fn data(data: &[u8]) -> u16 {
    fold(accumulate(0, data))
}

/// Adds several folded partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The folded sum of the IPv4 pseudo-header used by UDP (RFC 768): source, destination,
/// zero, protocol and upper-layer length.
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let mut acc = accumulate(0, &src.octets());
    acc = accumulate(acc, &dst.octets());
    acc += u64::from(protocol) + u64::from(length);
    fold(acc)
}

/// The folded sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit
/// upper-layer length, three zero bytes and the next-header value.
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut acc = accumulate(0, &src.octets());
    acc = accumulate(acc, &dst.octets());
    acc += u64::from(length >> 16) + u64::from(length & 0xffff) + u64::from(next_header);
    fold(acc)
}

/// The value to write into a checksum field, given the folded sum over everything it covers
/// (computed with the checksum field set to zero).
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// Whether a received message verifies: the folded sum over everything the checksum covers,
/// checksum field included, must be all ones.
pub fn verifies(sum: u16) -> bool {
    sum == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 worked example: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        assert_eq!(data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(data(&[0x12]), 0x1200);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn wide_and_narrow_paths_agree() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1403).collect();
        let narrow = fold(bytes.chunks(2).map(|c| u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0))).sum());
        assert_eq!(data(&bytes), narrow);
    }

    #[test]
    fn ipv4_header_sample_verifies() {
        // IPv4 header of the AMT Membership Query sample in protocols.md (IHL 6, Router Alert).
        let hdr = hex::decode("46c0002400000000010219dec6336401e000000194040000").unwrap();
        assert!(verifies(data(&hdr)));
    }

    #[test]
    fn pim_hello_sample_checksum() {
        // lab-notes.md §5.1: the checksum of this Hello is 0x2a98.
        let mut hello = hex::decode("20002a98000100020069001300040000000100140004 1d6b9760".replace(' ', "")).unwrap();
        assert!(verifies(data(&hello)));
        hello[2] = 0;
        hello[3] = 0;
        assert_eq!(finish(data(&hello)), 0x2a98);
    }

    #[test]
    fn pseudo_headers_sum_their_fields() {
        let v4 = pseudo_header_v4(&Ipv4Addr::new(192, 0, 2, 1), &Ipv4Addr::new(198, 51, 100, 2), 17, 8);
        assert_eq!(v4, data(&[192, 0, 2, 1, 198, 51, 100, 2, 0, 17, 0, 8]));
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::d".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&70000u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 103]);
        assert_eq!(pseudo_header_v6(&src, &dst, 103, 70000), data(&bytes));
    }
}
