//! IPv4 header (RFC 791), with options kept verbatim and the Router Alert option (RFC 2113)
//! that IGMP messages carry.

use std::net::Ipv4Addr;

use crate::checksum;
use crate::ip::{IpProtocol, read_ipv4, read_u16, write_u16};
use crate::{Error, Result};

/// Field offsets of the fixed IPv4 header.
mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const OPTIONS: usize = 20;
}

/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = field::OPTIONS;
/// Longest IPv4 header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;
/// The Router Alert option (RFC 2113) as IGMP routers expect it: type 148, length 4, value 0.
pub const ROUTER_ALERT: [u8; 4] = [0x94, 0x04, 0x00, 0x00];

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_ROUTER_ALERT: u8 = 0x94;

/// A read/write view of an IPv4 packet. [`Packet::new_checked`] guarantees that the header
/// and the payload the Total Length field announces fit in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors may panic on a short buffer; use
    /// [`Packet::new_checked`] for untrusted input.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer and checks that every accessor will stay in bounds.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the version, the header length and the total length against the buffer.
    /// A buffer longer than Total Length (link-layer padding) is accepted.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion(self.version()));
        }
        let header_len = self.header_len();
        if header_len < MIN_HEADER_LEN {
            return Err(Error::BadLength);
        }
        if data.len() < header_len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::BadLength);
        }
        if data.len() < total_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The Version field (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The Type of Service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// The Total Length field: header plus payload.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The Identification field.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x4000 != 0
    }

    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x2000 != 0
    }

    /// The Fragment Offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff) << 3
    }

    /// The Time to Live field.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The Protocol field.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The Header Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The Source Address.
    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::SRC)
    }

    /// The Destination Address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::DST)
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(checksum::data(&self.buffer.as_ref()[..self.header_len()]))
    }

    /// The raw option bytes (between the fixed header and the payload).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The payload: from the end of the header to Total Length (padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the Time to Live field (the checksum must be refilled afterwards).
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Recomputes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        let header_len = self.header_len();
        let data = self.buffer.as_mut();
        write_u16(data, field::CHECKSUM, 0);
        let sum = checksum::finish(checksum::data(&data[..header_len]));
        write_u16(data, field::CHECKSUM, sum);
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// Walks IPv4 options and tells whether a Router Alert option (RFC 2113) is present.
/// Malformed option lists simply end the walk.
pub fn options_have_router_alert(options: &[u8]) -> bool {
    let mut rest = options;
    while let Some((&kind, tail)) = rest.split_first() {
        match kind {
            OPT_END => return false,
            OPT_NOP => rest = tail,
            _ => {
                let Some(&len) = tail.first() else { return false };
                let len = usize::from(len);
                if len < 2 || len > rest.len() {
                    return false;
                }
                if kind == OPT_ROUTER_ALERT {
                    return true;
                }
                rest = &rest[len..];
            }
        }
    }
    false
}

/// A parsed IPv4 header. The payload is not part of the representation; `payload_len` says
/// how long it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    pub payload_len: usize,
    pub ttl: u8,
    /// Type of Service (DSCP << 2 | ECN). IGMP and PIM use 0xc0 (CS6).
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    /// Raw option bytes, kept verbatim. Emitted padded with End-of-Options to a multiple of 4.
    pub options: Vec<u8>,
}

impl Repr {
    /// A plain header with no options, DF clear, TOS 0.
    pub fn new(src_addr: Ipv4Addr, dst_addr: Ipv4Addr, protocol: IpProtocol, ttl: u8, payload_len: usize) -> Repr {
        Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl,
            tos: 0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
            options: Vec::new(),
        }
    }

    /// Parses a checked packet, verifying the header checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            options: packet.options().to_vec(),
        })
    }

    /// Whether the options carry a Router Alert.
    pub fn has_router_alert(&self) -> bool {
        options_have_router_alert(&self.options)
    }

    /// The header length this representation emits (options padded to 4 bytes).
    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len().div_ceil(4) * 4
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header (checksum included) at the start of `buf` and returns its length.
    /// The payload is the caller's to write after it.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let header_len = self.header_len();
        if header_len > MAX_HEADER_LEN {
            return Err(Error::Malformed("IPv4 options longer than 40 bytes"));
        }
        let total_len = u16::try_from(self.buffer_len()).map_err(|_| Error::BadLength)?;
        if self.frag_offset & 7 != 0 || self.frag_offset > 0xfff8 {
            return Err(Error::Malformed("IPv4 fragment offset"));
        }
        let buf = buf.get_mut(..header_len).ok_or(Error::BufferTooSmall)?;
        buf[field::VER_IHL] = 0x40 | (header_len / 4) as u8;
        buf[field::TOS] = self.tos;
        write_u16(buf, field::LENGTH, total_len);
        write_u16(buf, field::IDENT, self.ident);
        let flags = if self.dont_frag { 0x4000 } else { 0 } | if self.more_frags { 0x2000 } else { 0 };
        write_u16(buf, field::FLG_OFF, flags | (self.frag_offset >> 3));
        buf[field::TTL] = self.ttl;
        buf[field::PROTOCOL] = self.protocol.0;
        buf[field::SRC..field::SRC + 4].copy_from_slice(&self.src_addr.octets());
        buf[field::DST..field::DST + 4].copy_from_slice(&self.dst_addr.octets());
        let options = &mut buf[field::OPTIONS..header_len];
        options.fill(OPT_END);
        options[..self.options.len()].copy_from_slice(&self.options);
        Packet::new_unchecked(buf).fill_checksum();
        Ok(header_len)
    }

    /// Builds a whole datagram around `payload` (`payload_len` is taken from it).
    pub fn datagram(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let repr = Repr { payload_len: payload.len(), ..self.clone() };
        let mut out = vec![0; repr.buffer_len()];
        let header_len = repr.emit(&mut out)?;
        out[header_len..].copy_from_slice(payload);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 header of the AMT Membership Query sample (protocols.md §A1): IHL 6 with a
    /// Router Alert, TOS 0xc0, TTL 1, protocol IGMP, 198.51.100.1 → 224.0.0.1, checksum 0x19de.
    const QUERY_HEADER: &str = "46c0002400000000010219dec6336401e000000194040000";

    fn query_datagram() -> Vec<u8> {
        let mut bytes = hex::decode(QUERY_HEADER).unwrap();
        bytes.extend_from_slice(&hex::decode("1164ec1e00000000027d0000").unwrap());
        bytes
    }

    #[test]
    fn parses_real_sample() {
        let bytes = query_datagram();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert!(packet.verify_checksum());
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.src_addr, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(repr.dst_addr, Ipv4Addr::new(224, 0, 0, 1));
        assert_eq!(repr.protocol, IpProtocol::IGMP);
        assert_eq!(repr.ttl, 1);
        assert_eq!(repr.tos, 0xc0);
        assert_eq!(repr.payload_len, 12);
        assert!(repr.has_router_alert());
        assert_eq!(packet.payload(), &bytes[24..]);
    }

    #[test]
    fn emit_reproduces_sample() {
        let bytes = query_datagram();
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        let mut out = vec![0; repr.buffer_len()];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(hex::encode(&out[..n]), QUERY_HEADER);
    }

    #[test]
    fn rejects_bad_input() {
        let bytes = query_datagram();
        assert_eq!(Packet::new_checked(&bytes[..19]).unwrap_err(), Error::Truncated);
        let mut v6 = bytes.clone();
        v6[0] = 0x66;
        assert_eq!(Packet::new_checked(&v6[..]).unwrap_err(), Error::BadVersion(6));
        let mut short_ihl = bytes.clone();
        short_ihl[0] = 0x44;
        assert_eq!(Packet::new_checked(&short_ihl[..]).unwrap_err(), Error::BadLength);
        let mut long_total = bytes.clone();
        long_total[3] = 0xff;
        assert_eq!(Packet::new_checked(&long_total[..]).unwrap_err(), Error::Truncated);
        let mut bad_sum = bytes.clone();
        bad_sum[10] ^= 1;
        assert_eq!(Repr::parse(&Packet::new_checked(&bad_sum[..]).unwrap()).unwrap_err(), Error::BadChecksum);
    }

    #[test]
    fn padding_after_total_length_is_ignored() {
        let mut bytes = query_datagram();
        bytes.extend_from_slice(&[0xaa; 10]);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.payload().len(), 12);
    }

    #[test]
    fn router_alert_detection() {
        assert!(options_have_router_alert(&ROUTER_ALERT));
        assert!(options_have_router_alert(&[OPT_NOP, 0x94, 4, 0, 0]));
        assert!(!options_have_router_alert(&[OPT_END, 0x94, 4, 0]));
        assert!(!options_have_router_alert(&[0x83, 0x00]));
        assert!(!options_have_router_alert(&[0x83, 0xff, 0x94, 4, 0, 0]));
    }

    #[test]
    fn odd_option_length_is_padded() {
        let mut repr = Repr::new(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, IpProtocol::UDP, 64, 0);
        repr.options = vec![OPT_NOP];
        assert_eq!(repr.header_len(), 24);
        let out = repr.datagram(&[]).unwrap();
        assert_eq!(&out[20..24], &[OPT_NOP, 0, 0, 0]);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&packet);
                let _ = packet.payload();
                let _ = packet.options();
            }
        }

        #[test]
        fn roundtrip(src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, tos: u8, ident: u16, df: bool,
                     payload in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
                     ra: bool) {
            let mut repr = Repr::new(src.into(), dst.into(), IpProtocol(proto), ttl, payload.len());
            repr.tos = tos;
            repr.ident = ident;
            repr.dont_frag = df;
            if ra { repr.options = ROUTER_ALERT.to_vec(); }
            let bytes = repr.datagram(&payload).unwrap();
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            proptest::prop_assert_eq!(Repr::parse(&packet).unwrap(), repr);
            proptest::prop_assert_eq!(packet.payload(), &payload[..]);
        }
    }
}
