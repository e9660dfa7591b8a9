//! IPv6 header (RFC 8200) and the Hop-by-Hop Options header with the Router Alert option
//! (RFC 2711) that MLD messages carry (RFC 3810 §5).

use std::net::Ipv6Addr;

use crate::ip::{IpProtocol, read_ipv6, read_u16, read_u32, write_u16, write_u32};
use crate::{Error, Result};

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Hop-by-Hop option type Pad1.
pub const OPT_PAD1: u8 = 0;
/// Hop-by-Hop option type PadN.
pub const OPT_PADN: u8 = 1;
/// Hop-by-Hop option type Router Alert (RFC 2711).
pub const OPT_ROUTER_ALERT: u8 = 5;
/// Router Alert value for MLD (RFC 2711 §2.1).
pub const ROUTER_ALERT_MLD: u16 = 0;

/// A read/write view of an IPv6 packet. [`Packet::new_checked`] guarantees the fixed header
/// and the payload the Payload Length field announces fit in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer and checks the version and lengths.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version, and that header plus Payload Length fit in the buffer (trailing
    /// link-layer padding is accepted). Jumbograms (Payload Length 0 with a Jumbo option) are
    /// not supported and read as an empty payload.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::BadVersion(self.version()));
        }
        if len < HEADER_LEN + usize::from(self.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The Version field (6 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// The Traffic Class.
    pub fn traffic_class(&self) -> u8 {
        (read_u32(self.buffer.as_ref(), field::VER_TC_FLOW) >> 20) as u8
    }

    /// The Flow Label (20 bits).
    pub fn flow_label(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// The Payload Length field (extension headers included).
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The Next Header field.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// The Hop Limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The Source Address.
    pub fn src_addr(&self) -> Ipv6Addr {
        read_ipv6(self.buffer.as_ref(), field::SRC)
    }

    /// The Destination Address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        read_ipv6(self.buffer.as_ref(), field::DST)
    }

    /// The payload after the fixed header (extension headers included), up to Payload Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the Hop-by-Hop, Routing and Destination Options headers to the upper layer.
    pub fn upper_layer(&self) -> Result<UpperLayer<'_>> {
        upper_layer(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the Hop Limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }
}

/// The upper-layer protocol of an IPv6 packet, found after its extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    /// The upper-layer protocol (or the first header this walker does not step over, such as
    /// a Fragment header).
    pub protocol: IpProtocol,
    /// Its bytes.
    pub payload: &'a [u8],
    /// The value of a Router Alert option in the Hop-by-Hop header, if present.
    pub router_alert: Option<u16>,
}

const ROUTING: u8 = 43;
const DEST_OPTS: u8 = 60;

/// Steps over Hop-by-Hop (only as the first header), Routing and Destination Options headers.
pub fn upper_layer(first: IpProtocol, mut payload: &[u8]) -> Result<UpperLayer<'_>> {
    let mut next = first;
    let mut router_alert = None;
    let mut first_header = true;
    loop {
        match next.0 {
            0 if first_header => {
                let hbh = HopByHop::new_checked(payload)?;
                router_alert = hbh.router_alert();
                next = hbh.next_header();
                payload = &payload[hbh.header_len()..];
            }
            ROUTING | DEST_OPTS => {
                let hdr = HopByHop::new_checked(payload)?;
                next = hdr.next_header();
                payload = &payload[hdr.header_len()..];
            }
            0 => return Err(Error::Malformed("Hop-by-Hop header not first")),
            _ => return Ok(UpperLayer { protocol: next, payload, router_alert }),
        }
        first_header = false;
    }
}

/// A view of a Hop-by-Hop Options header (the same layout serves Destination Options and the
/// generic part of Routing headers): Next Header, Hdr Ext Len in 8-octet units not counting
/// the first 8, then options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopByHop<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HopByHop<T> {
    /// Wraps a buffer and checks that the whole header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let hdr = HopByHop { buffer };
        let data = hdr.buffer.as_ref();
        if data.len() < 8 {
            return Err(Error::Truncated);
        }
        if data.len() < hdr.header_len() {
            return Err(Error::Truncated);
        }
        Ok(hdr)
    }

    /// The Next Header field.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[0])
    }

    /// The header length in bytes.
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 1) * 8
    }

    /// The raw option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }

    /// The value of the first Router Alert option, if any. A malformed option list ends the
    /// walk.
    pub fn router_alert(&self) -> Option<u16> {
        let mut rest = self.options();
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == OPT_PAD1 {
                rest = tail;
                continue;
            }
            let &len = tail.first()?;
            let body = tail.get(1..1 + usize::from(len))?;
            if kind == OPT_ROUTER_ALERT && body.len() == 2 {
                return Some(u16::from_be_bytes([body[0], body[1]]));
            }
            rest = &tail[1 + usize::from(len)..];
        }
        None
    }
}

/// The Hop-by-Hop header Linux puts in front of MLD messages: Router Alert (value 0, MLD)
/// and a 2-byte PadN, 8 bytes in all.
pub fn hop_by_hop_router_alert(next_header: IpProtocol) -> [u8; 8] {
    let ra = ROUTER_ALERT_MLD.to_be_bytes();
    [next_header.0, 0, OPT_ROUTER_ALERT, 2, ra[0], ra[1], OPT_PADN, 0]
}

/// A parsed fixed IPv6 header. Extension headers count as payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Repr {
    /// A header with traffic class and flow label zero.
    pub fn new(
        src_addr: Ipv6Addr,
        dst_addr: Ipv6Addr,
        next_header: IpProtocol,
        hop_limit: u8,
        payload_len: usize,
    ) -> Repr {
        Repr { src_addr, dst_addr, next_header, payload_len, hop_limit, traffic_class: 0, flow_label: 0 }
    }

    /// Parses a checked packet.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// The fixed header length.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header at the start of `buf` and returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let payload_len = u16::try_from(self.payload_len).map_err(|_| Error::BadLength)?;
        if self.flow_label > 0x000f_ffff {
            return Err(Error::Malformed("IPv6 flow label"));
        }
        let buf = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        write_u32(buf, field::VER_TC_FLOW, 6 << 28 | u32::from(self.traffic_class) << 20 | self.flow_label);
        write_u16(buf, field::LENGTH, payload_len);
        buf[field::NXT_HDR] = self.next_header.0;
        buf[field::HOP_LIMIT] = self.hop_limit;
        buf[field::SRC..field::SRC + 16].copy_from_slice(&self.src_addr.octets());
        buf[field::DST..field::DST + 16].copy_from_slice(&self.dst_addr.octets());
        Ok(HEADER_LEN)
    }

    /// Builds a whole packet around `payload` (`payload_len` is taken from it).
    pub fn datagram(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let repr = Repr { payload_len: payload.len(), ..*self };
        let mut out = vec![0; repr.buffer_len()];
        repr.emit(&mut out)?;
        out[HEADER_LEN..].copy_from_slice(payload);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mld_envelope() -> Vec<u8> {
        // fe80::1 → ff02::16, next header Hop-by-Hop, hop limit 1, then the Linux-style HBH
        // header `3a 00 05 02 00 00 01 00` and 4 bytes standing in for an MLD message.
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::16".parse().unwrap();
        let mut payload = hop_by_hop_router_alert(IpProtocol::ICMPV6).to_vec();
        payload.extend_from_slice(&[143, 0, 0, 0]);
        Repr::new(src, dst, IpProtocol::HOP_BY_HOP, 1, 0).datagram(&payload).unwrap()
    }

    #[test]
    fn hop_by_hop_matches_linux() {
        assert_eq!(hop_by_hop_router_alert(IpProtocol::ICMPV6), [0x3a, 0, 5, 2, 0, 0, 1, 0]);
    }

    #[test]
    fn walks_to_upper_layer_with_router_alert() {
        let bytes = mld_envelope();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.next_header, IpProtocol::HOP_BY_HOP);
        assert_eq!(repr.hop_limit, 1);
        let upper = packet.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::ICMPV6);
        assert_eq!(upper.router_alert, Some(0));
        assert_eq!(upper.payload, &[143, 0, 0, 0]);
    }

    #[test]
    fn header_roundtrip() {
        let bytes = mld_envelope();
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        let mut out = [0u8; 40];
        repr.emit(&mut out).unwrap();
        assert_eq!(&out[..], &bytes[..40]);
    }

    #[test]
    fn rejects_bad_input() {
        let bytes = mld_envelope();
        assert_eq!(Packet::new_checked(&bytes[..39]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&bytes[..bytes.len() - 1]).unwrap_err(), Error::Truncated);
        let mut v4 = bytes.clone();
        v4[0] = 0x45;
        assert_eq!(Packet::new_checked(&v4[..]).unwrap_err(), Error::BadVersion(4));
        // Hop-by-Hop length pointing past the end.
        let mut long_hbh = bytes.clone();
        long_hbh[41] = 3;
        let packet = Packet::new_checked(&long_hbh[..]).unwrap();
        assert_eq!(packet.upper_layer().unwrap_err(), Error::Truncated);
    }

    #[test]
    fn tc_and_flow_label() {
        let mut repr = Repr::new(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, IpProtocol::UDP, 64, 0);
        repr.traffic_class = 0xc0;
        repr.flow_label = 0xabcde;
        let bytes = repr.datagram(&[]).unwrap();
        let parsed = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&packet);
                let _ = packet.upper_layer();
            }
            let _ = upper_layer(IpProtocol::HOP_BY_HOP, &bytes);
            if let Ok(h) = HopByHop::new_checked(&bytes[..]) {
                let _ = h.router_alert();
            }
        }
    }
}
