//! UDP (RFC 768) with IPv4 and IPv6 pseudo-header checksums.
//!
//! A zero checksum means "not computed" over IPv4. Over IPv6 it is invalid (RFC 8200 §8.1)
//! except where RFC 6935/6936 allow it for tunnels; RFC 7450 §5.1.6 lets AMT Multicast Data
//! use it, so [`Repr::parse`] takes a [`ZeroChecksum`] policy instead of deciding for the caller.

use std::net::IpAddr;

use crate::checksum;
use crate::ip::{IpProtocol, read_u16, write_u16};
use crate::{Error, Result};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A read/write view of a UDP datagram. [`Packet::new_checked`] guarantees the header and the
/// Length field fit in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer and checks the header and the Length field against it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header fits and that Length is between 8 and the buffer length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let declared = usize::from(self.len());
        if declared < HEADER_LEN {
            return Err(Error::BadLength);
        }
        if declared > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The Source Port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The Destination Port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The Length field (header plus payload).
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) == HEADER_LEN
    }

    /// The Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload (up to Length).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum verifies with the pseudo-header of `src` → `dst`. A zero checksum
    /// is reported as not verifying; callers decide whether zero is acceptable.
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let Some(pseudo) = pseudo_header(src, dst, self.len()) else {
            return false;
        };
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::verifies(checksum::combine(&[pseudo, checksum::data(data)]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// Computes and writes the checksum for `src` → `dst`. A computed zero is sent as 0xffff
    /// (RFC 768), since zero means "no checksum".
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) -> Result<()> {
        let len = self.len();
        let pseudo = pseudo_header(src, dst, len).ok_or(Error::Malformed("mixed address families"))?;
        let data = self.buffer.as_mut();
        write_u16(data, field::CHECKSUM, 0);
        let sum = checksum::finish(checksum::combine(&[pseudo, checksum::data(&data[..usize::from(len)])]));
        write_u16(data, field::CHECKSUM, if sum == 0 { 0xffff } else { sum });
        Ok(())
    }

    /// Writes a zero checksum ("not computed"); valid over IPv4, and over IPv6 only for the
    /// tunnel cases of RFC 6935.
    pub fn clear_checksum(&mut self) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
    }
}

fn pseudo_header(src: &IpAddr, dst: &IpAddr, len: u16) -> Option<u16> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(checksum::pseudo_header_v4(s, d, IpProtocol::UDP.0, len)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(checksum::pseudo_header_v6(s, d, IpProtocol::UDP.0, u32::from(len))),
        _ => None,
    }
}

/// What to do with a zero UDP checksum when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroChecksum {
    /// Accept zero over IPv4 only (RFC 768, RFC 8200 §8.1).
    Ipv4Only,
    /// Accept zero over both families (RFC 6935 tunnels, e.g. AMT Multicast Data).
    Always,
}

/// A parsed UDP header; the payload stays in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl Repr {
    /// Parses a checked datagram, verifying a non-zero checksum and applying `zero` to a zero
    /// one.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&T>,
        src: &IpAddr,
        dst: &IpAddr,
        zero: ZeroChecksum,
    ) -> Result<Repr> {
        packet.check_len()?;
        if packet.checksum() == 0 {
            let allowed = src.is_ipv4() || zero == ZeroChecksum::Always;
            if !allowed {
                return Err(Error::BadChecksum);
            }
        } else if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        Ok(Repr { src_port: packet.src_port(), dst_port: packet.dst_port() })
    }

    /// Length of the header this representation emits.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with Length = 8 + `payload_len` and a zero checksum; the caller
    /// writes the payload and then calls [`Packet::fill_checksum`].
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        let len = u16::try_from(HEADER_LEN + payload_len).map_err(|_| Error::BadLength)?;
        let buf = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        write_u16(buf, field::SRC_PORT, self.src_port);
        write_u16(buf, field::DST_PORT, self.dst_port);
        write_u16(buf, field::LENGTH, len);
        write_u16(buf, field::CHECKSUM, 0);
        Ok(HEADER_LEN)
    }

    /// Writes header and payload into `buf` and fills the checksum for `src` → `dst`.
    /// Returns the datagram length.
    pub fn emit_with_payload(&self, buf: &mut [u8], src: &IpAddr, dst: &IpAddr, payload: &[u8]) -> Result<usize> {
        let total = HEADER_LEN + payload.len();
        let buf = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        self.emit(buf, payload.len())?;
        buf[HEADER_LEN..].copy_from_slice(payload);
        Packet::new_unchecked(buf).fill_checksum(src, dst)?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The inner UDP of the AMT Multicast Data sample (protocols.md §A1): 40000 → 5001,
    /// length 19, zero checksum, payload "amt-payload".
    const DATA_UDP: &str = "9c40138900130000616d742d7061796c6f6164";

    #[test]
    fn parses_zero_checksum_sample_over_ipv4() {
        let bytes = hex::decode(DATA_UDP).unwrap();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let src = IpAddr::V4(Ipv4Addr::new(23, 212, 185, 4));
        let dst = IpAddr::V4(Ipv4Addr::new(232, 1, 1, 1));
        let repr = Repr::parse(&packet, &src, &dst, ZeroChecksum::Ipv4Only).unwrap();
        assert_eq!(repr, Repr { src_port: 40000, dst_port: 5001 });
        assert_eq!(packet.payload(), b"amt-payload");
    }

    #[test]
    fn zero_checksum_over_ipv6_follows_policy() {
        let bytes = hex::decode(DATA_UDP).unwrap();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let src = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(Repr::parse(&packet, &src, &src, ZeroChecksum::Ipv4Only), Err(Error::BadChecksum));
        assert!(Repr::parse(&packet, &src, &src, ZeroChecksum::Always).is_ok());
    }

    #[test]
    fn checksum_roundtrip_both_families() {
        for (src, dst) in [
            (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V4(Ipv4Addr::new(232, 1, 1, 1))),
            (IpAddr::V6("2001:db8::1".parse().unwrap()), IpAddr::V6("ff3e::8000:1".parse().unwrap())),
        ] {
            let repr = Repr { src_port: 2268, dst_port: 2268 };
            let mut buf = [0u8; 64];
            let n = repr.emit_with_payload(&mut buf, &src, &dst, b"hello").unwrap();
            let packet = Packet::new_checked(&buf[..n]).unwrap();
            assert!(packet.verify_checksum(&src, &dst));
            assert_eq!(Repr::parse(&packet, &src, &dst, ZeroChecksum::Ipv4Only).unwrap(), repr);
            let mut corrupt = buf;
            corrupt[9] ^= 0x40;
            let packet = Packet::new_checked(&corrupt[..n]).unwrap();
            assert_eq!(Repr::parse(&packet, &src, &dst, ZeroChecksum::Always), Err(Error::BadChecksum));
        }
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(Packet::new_checked(&[0u8; 7][..]).unwrap_err(), Error::Truncated);
        let mut bytes = hex::decode(DATA_UDP).unwrap();
        bytes[5] = 7;
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap_err(), Error::BadLength);
        bytes[5] = 0xff;
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap_err(), Error::Truncated);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
                let _ = Repr::parse(&packet, &a, &a, ZeroChecksum::Always);
                let _ = packet.payload();
            }
        }
    }
}
