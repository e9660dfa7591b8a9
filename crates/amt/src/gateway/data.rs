//! The decapsulation fast path: checks of the IP datagram inside a Multicast Data message,
//! on borrowed bytes, without allocating.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mcast_wire::SourceGroup;

use super::counters::DataDrop;

const PROTO_UDP: u8 = 17;
const UDP_HEADER: usize = 8;

/// What the data path needs from an inner datagram's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inner {
    /// (source, destination group); the destination may not be multicast (then it is never
    /// joined).
    pub sg: SourceGroup,
    /// The IP datagram's length from its header (trailing bytes after it are cut off).
    pub len: usize,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Whether the upper layer is UDP (for a non-first fragment: the fragment header's next
    /// header; for others a UDP header is present in full).
    pub udp: bool,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The Internet checksum of an IPv4 header verifies (the one's complement sum is 0xffff).
#[inline]
fn ipv4_header_ok(header: &[u8]) -> bool {
    let mut sum: u32 = 0;
    for pair in header.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// Parses and checks the headers of the datagram carried by Multicast Data (RFC 7450
/// §5.1.6.4: "a complete IPv4 or IPv6 multicast datagram").
#[inline]
pub(crate) fn inspect(datagram: &[u8]) -> Result<Inner, DataDrop> {
    match datagram.first().map(|b| b >> 4) {
        Some(4) => inspect_v4(datagram),
        Some(6) => inspect_v6(datagram),
        _ => Err(DataDrop::Malformed),
    }
}

fn inspect_v4(d: &[u8]) -> Result<Inner, DataDrop> {
    if d.len() < 20 {
        return Err(DataDrop::Malformed);
    }
    let ihl = usize::from(d[0] & 0x0f) * 4;
    let total = usize::from(be16(d, 2));
    if ihl < 20 || total < ihl || total > d.len() {
        return Err(DataDrop::Malformed);
    }
    if !ipv4_header_ok(&d[..ihl]) {
        return Err(DataDrop::BadChecksum);
    }
    let frag_offset = be16(d, 6) & 0x1fff;
    let udp = d[9] == PROTO_UDP;
    // A first (or only) fragment must hold the whole UDP header.
    if udp && frag_offset == 0 && total - ihl < UDP_HEADER {
        return Err(DataDrop::Malformed);
    }
    let src = Ipv4Addr::new(d[12], d[13], d[14], d[15]);
    let dst = Ipv4Addr::new(d[16], d[17], d[18], d[19]);
    Ok(Inner { sg: SourceGroup::new(IpAddr::V4(src), IpAddr::V4(dst)), len: total, ttl: d[8], udp })
}

/// Extension headers walked before giving up (they are rare in multicast data).
const MAX_EXTENSION_HEADERS: usize = 8;

fn inspect_v6(d: &[u8]) -> Result<Inner, DataDrop> {
    if d.len() < 40 {
        return Err(DataDrop::Malformed);
    }
    let payload_len = usize::from(be16(d, 4));
    // Payload length 0 is a jumbogram (RFC 2675), never carried in AMT.
    let total = 40 + payload_len;
    if payload_len == 0 || total > d.len() {
        return Err(DataDrop::Malformed);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&d[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&d[24..40]);
    let sg = SourceGroup::new(IpAddr::V6(Ipv6Addr::from(src)), IpAddr::V6(Ipv6Addr::from(dst)));
    let mut next = d[6];
    let mut at = 40;
    let mut udp = false;
    for _ in 0..MAX_EXTENSION_HEADERS {
        match next {
            PROTO_UDP => {
                if total - at < UDP_HEADER {
                    return Err(DataDrop::Malformed);
                }
                udp = true;
                break;
            }
            // Hop-by-Hop, Routing, Destination Options: length in 8-octet units, not
            // counting the first 8 (RFC 8200 §4.3–§4.6).
            0 | 43 | 60 => {
                if total - at < 8 {
                    return Err(DataDrop::Malformed);
                }
                let len = (usize::from(d[at + 1]) + 1) * 8;
                if total - at < len {
                    return Err(DataDrop::Malformed);
                }
                next = d[at];
                at += len;
            }
            // Fragment (RFC 8200 §4.5): 8 bytes; a non-first fragment has no UDP header.
            44 => {
                if total - at < 8 {
                    return Err(DataDrop::Malformed);
                }
                let offset = be16(d, at + 2) >> 3;
                next = d[at];
                at += 8;
                if offset != 0 {
                    udp = next == PROTO_UDP;
                    break;
                }
            }
            _ => break,
        }
    }
    Ok(Inner { sg, len: total, ttl: d[7], udp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcast_wire::{IpProtocol, ipv4, ipv6, udp};

    fn v4(ttl: u8, proto: IpProtocol, payload: &[u8]) -> Vec<u8> {
        ipv4::Repr::new("198.51.100.10".parse().unwrap(), "232.1.1.1".parse().unwrap(), proto, ttl, payload.len())
            .datagram(payload)
            .unwrap()
    }

    fn udp_segment() -> Vec<u8> {
        let mut seg = vec![0u8; 8 + 5];
        udp::Repr { src_port: 1, dst_port: 2 }
            .emit_with_payload(&mut seg, &"198.51.100.10".parse().unwrap(), &"232.1.1.1".parse().unwrap(), b"hello")
            .unwrap();
        seg
    }

    #[test]
    fn ipv4_udp_is_recognised_and_trailing_bytes_cut() {
        let mut d = v4(16, IpProtocol::UDP, &udp_segment());
        let len = d.len();
        d.extend_from_slice(&[0xee; 7]);
        let inner = inspect(&d).unwrap();
        assert_eq!(inner.len, len);
        assert_eq!(inner.ttl, 16);
        assert!(inner.udp);
        assert_eq!(inner.sg.to_string(), "198.51.100.10,232.1.1.1");
    }

    #[test]
    fn ipv4_errors() {
        let good = v4(16, IpProtocol::UDP, &udp_segment());
        assert_eq!(inspect(&good[..19]), Err(DataDrop::Malformed));
        let mut bad_sum = good.clone();
        bad_sum[8] = 15; // TTL changed without fixing the checksum
        assert_eq!(inspect(&bad_sum), Err(DataDrop::BadChecksum));
        let mut long = good.clone();
        long.truncate(good.len() - 1);
        assert_eq!(inspect(&long), Err(DataDrop::Malformed), "total length beyond the data");
        let short_udp = v4(16, IpProtocol::UDP, &[0; 4]);
        assert_eq!(inspect(&short_udp), Err(DataDrop::Malformed));
        let tcp = v4(16, IpProtocol(6), &[0; 20]);
        assert!(!inspect(&tcp).unwrap().udp);
        assert_eq!(inspect(&[]), Err(DataDrop::Malformed));
        assert_eq!(inspect(&[0x50; 40]), Err(DataDrop::Malformed));
    }

    #[test]
    fn ipv6_udp_with_extension_headers() {
        let src: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let dst: Ipv6Addr = "ff3e::8000:1".parse().unwrap();
        let mut seg = vec![0u8; 8 + 3];
        udp::Repr { src_port: 1, dst_port: 2 }.emit_with_payload(&mut seg, &src.into(), &dst.into(), b"abc").unwrap();
        let plain = ipv6::Repr::new(src, dst, IpProtocol::UDP, 5, seg.len()).datagram(&seg).unwrap();
        let inner = inspect(&plain).unwrap();
        assert!(inner.udp);
        assert_eq!(inner.ttl, 5);
        assert_eq!(inner.len, plain.len());
        // Destination Options (8 bytes, next = UDP) in front.
        let mut with_opts = vec![17, 0, 1, 4, 0, 0, 0, 0];
        with_opts.extend_from_slice(&seg);
        let d = ipv6::Repr::new(src, dst, IpProtocol(60), 5, with_opts.len()).datagram(&with_opts).unwrap();
        assert!(inspect(&d).unwrap().udp);
        // A non-first fragment of a UDP datagram.
        let mut frag = vec![17, 0, 0x00, 0x08, 0, 0, 0, 1];
        frag.extend_from_slice(&[0xaa; 16]);
        let d = ipv6::Repr::new(src, dst, IpProtocol(44), 5, frag.len()).datagram(&frag).unwrap();
        assert!(inspect(&d).unwrap().udp);
        // Truncated extension header.
        let d = ipv6::Repr::new(src, dst, IpProtocol(60), 5, 4).datagram(&[17, 3, 0, 0]).unwrap();
        assert_eq!(inspect(&d), Err(DataDrop::Malformed));
        // ICMPv6 is not UDP.
        let d = ipv6::Repr::new(src, dst, IpProtocol::ICMPV6, 5, 8).datagram(&[0; 8]).unwrap();
        assert!(!inspect(&d).unwrap().udp);
    }
}
