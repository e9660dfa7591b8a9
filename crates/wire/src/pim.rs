//! PIMv2 (RFC 7761 §4.9): the common header and its checksum, Hello and Join/Prune decoded in
//! full, every other message type recognised and kept verbatim.
//!
//! A PIM message has no length field: it runs to the end of the IP payload, so the buffer
//! handed to [`Packet`] must be exactly the PIM message (the IPv4 payload up to Total Length,
//! or the IPv6 upper-layer payload).
//!
//! * [`Packet`] is the zero-copy view of the common header; [`Packet::join_prune`] gives a
//!   validated, allocation-free [`JoinPruneView`] for the hot path (every Join a router sees).
//! * [`Repr`] is the owned form: flags byte plus a [`Message`] (Hello, Join/Prune, or any other
//!   type kept as raw bytes).
//! * The checksum (RFC 7761 §4.9) depends on the IP family, so parsing and emitting take a
//!   [`ChecksumContext`].
//!
//! Unknown message types, Hello options and reserved bits are kept, so `emit(parse(x))`
//! reproduces `x` (apart from bytes after the last Join/Prune group, which are ignored).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum;
use crate::ip::{IpProtocol, read_u16, write_u16};
use crate::{Error, Result};

/// Field offsets of the common header (RFC 7761 §4.9).
mod field {
    pub const VER_TYPE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const BODY: usize = 4;
}

/// Length of the common PIM header: version/type, reserved (flags) byte, checksum.
pub const HEADER_LEN: usize = field::BODY;
/// The PIM version this codec speaks (RFC 7761 §4.9).
pub const VERSION: u8 = 2;
/// ALL-PIM-ROUTERS for IPv4 (RFC 7761 §4.9): Hellos and Join/Prunes go here with TTL 1.
pub const ALL_PIM_ROUTERS_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 13);
/// ALL-PIM-ROUTERS for IPv6 (RFC 7761 §4.9), hop limit 1.
pub const ALL_PIM_ROUTERS_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xd);
/// Bytes of a Register message its checksum covers: the PIM header and the 4 bytes after it,
/// not the encapsulated data packet (RFC 7761 §4.9.3).
pub const REGISTER_CHECKSUM_LEN: usize = 8;

/// Address Family 1: IPv4 (IANA address family numbers, RFC 7761 §4.9.1).
pub const ADDR_FAMILY_IPV4: u8 = 1;
/// Address Family 2: IPv6.
pub const ADDR_FAMILY_IPV6: u8 = 2;
/// Encoding Type 0: the native encoding of the family, the only one RFC 7761 §4.9.1 defines.
pub const ENCODING_NATIVE: u8 = 0;

/// Hello option 1: Holdtime (RFC 7761 §4.9.2).
pub const OPT_HOLDTIME: u16 = 1;
/// Hello option 2: LAN Prune Delay (RFC 7761 §4.9.2).
pub const OPT_LAN_PRUNE_DELAY: u16 = 2;
/// Hello option 19: DR Priority (RFC 7761 §4.9.2).
pub const OPT_DR_PRIORITY: u16 = 19;
/// Hello option 20: Generation ID (RFC 7761 §4.9.2).
pub const OPT_GENERATION_ID: u16 = 20;
/// Hello option 24: Address List of secondary addresses (RFC 7761 §4.9.2).
pub const OPT_ADDRESS_LIST: u16 = 24;

/// Hello Holdtime meaning "never time out" (RFC 7761 §4.9.2); the same value in a Join/Prune
/// Holdtime means infinite (§4.9.5).
pub const HOLDTIME_INFINITE: u16 = 0xffff;

// ---------------------------------------------------------------------------------------------
// Small bounds-checked cursor helpers: every read and write goes through `get`, so no input can
// make them panic.

/// A read cursor over untrusted bytes; running past the end is `Error::Truncated`.
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(Error::Truncated)?;
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        self.take(1)?.first().copied().ok_or(Error::Truncated)
    }

    fn u16(&mut self) -> Result<u16> {
        let bytes: [u8; 2] = self.take(2)?.try_into().map_err(|_| Error::Truncated)?;
        Ok(u16::from_be_bytes(bytes))
    }

    fn rest(&self) -> &'a [u8] {
        self.buf
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A write cursor; running past the end is `Error::BufferTooSmall`.
#[derive(Debug)]
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.pos.checked_add(bytes.len()).ok_or(Error::BufferTooSmall)?;
        self.buf.get_mut(self.pos..end).ok_or(Error::BufferTooSmall)?.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn u8(&mut self, value: u8) -> Result<()> {
        self.put(&[value])
    }

    fn u16(&mut self, value: u16) -> Result<()> {
        self.put(&value.to_be_bytes())
    }

    fn u32(&mut self, value: u32) -> Result<()> {
        self.put(&value.to_be_bytes())
    }
}

// ---------------------------------------------------------------------------------------------
// Message types and the checksum context.

/// The 4-bit PIM message Type (RFC 7761 §4.9). Values without a name are kept as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageType {
    /// 0: Hello, multicast to ALL-PIM-ROUTERS.
    Hello,
    /// 1: Register, unicast to the RP.
    Register,
    /// 2: Register-Stop, unicast to the source of a Register.
    RegisterStop,
    /// 3: Join/Prune, multicast to ALL-PIM-ROUTERS.
    JoinPrune,
    /// 4: Bootstrap (RFC 5059).
    Bootstrap,
    /// 5: Assert.
    Assert,
    /// 6: Graft (PIM-DM only).
    Graft,
    /// 7: Graft-Ack (PIM-DM only).
    GraftAck,
    /// 8: Candidate-RP-Advertisement.
    CandidateRpAdvertisement,
    /// Any other value (9 to 15; RFC 8736 uses 12 and 13 as type-space extensions). Construct
    /// it through `From<u8>` so that named values get their variant.
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(value: u8) -> Self {
        match value {
            0 => MessageType::Hello,
            1 => MessageType::Register,
            2 => MessageType::RegisterStop,
            3 => MessageType::JoinPrune,
            4 => MessageType::Bootstrap,
            5 => MessageType::Assert,
            6 => MessageType::Graft,
            7 => MessageType::GraftAck,
            8 => MessageType::CandidateRpAdvertisement,
            other => MessageType::Unknown(other),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(value: MessageType) -> Self {
        match value {
            MessageType::Hello => 0,
            MessageType::Register => 1,
            MessageType::RegisterStop => 2,
            MessageType::JoinPrune => 3,
            MessageType::Bootstrap => 4,
            MessageType::Assert => 5,
            MessageType::Graft => 6,
            MessageType::GraftAck => 7,
            MessageType::CandidateRpAdvertisement => 8,
            MessageType::Unknown(other) => other,
        }
    }
}

/// What the PIM checksum covers besides the message itself (RFC 7761 §4.9).
///
/// Over IPv4 the checksum is the one's complement of the one's-complement sum of the PIM
/// message (checksum field zero). Over IPv6 the IPv6 pseudo-header (RFC 8200 §8.1: source,
/// destination, upper-layer length, next header 103) is summed as well, so the addresses of
/// the enclosing IPv6 header are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumContext {
    /// PIM over IPv4: the message alone.
    V4,
    /// PIM over IPv6: the message plus the pseudo-header built from these addresses.
    V6 {
        /// Source address of the IPv6 header (the sender's link-local address for Hello and
        /// Join/Prune).
        src: Ipv6Addr,
        /// Destination address of the IPv6 header (`ff02::d` for Hello and Join/Prune).
        dst: Ipv6Addr,
    },
    /// The kernel owns the checksum: parsing does not verify it and emitting writes zero.
    ///
    /// Use this on an IPv6 raw socket with `IPV6_CHECKSUM` set to 2 (RFC 3542 §3.1): the
    /// kernel then computes the checksum, pseudo-header included, into offset 2 on send, and
    /// verifies it on receive, discarding packets that fail. Never use it for IPv4, where the
    /// kernel does neither.
    Unchecked,
}

impl ChecksumContext {
    /// The context for a message carried between `src` and `dst` (the addresses of the IP
    /// header). Mixed families are `Error::Malformed`.
    pub fn from_addrs(src: IpAddr, dst: IpAddr) -> Result<ChecksumContext> {
        match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => Ok(ChecksumContext::V4),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Ok(ChecksumContext::V6 { src, dst }),
            _ => Err(Error::Malformed("mixed address families")),
        }
    }

    /// The folded pseudo-header sum for `covered` bytes of PIM message (zero over IPv4).
    fn pseudo_header(&self, covered: usize) -> u16 {
        match self {
            ChecksumContext::V6 { src, dst } => {
                // A PIM message always fits the 16-bit IPv6 Payload Length; saturate rather
                // than truncate if a caller hands in something absurd.
                let len = u32::try_from(covered).unwrap_or(u32::MAX);
                checksum::pseudo_header_v6(src, dst, IpProtocol::PIM.0, len)
            }
            ChecksumContext::V4 | ChecksumContext::Unchecked => 0,
        }
    }

    /// The folded sum over the pseudo-header and `data` (checksum field as it is in `data`).
    fn sum(&self, data: &[u8]) -> u16 {
        checksum::combine(&[self.pseudo_header(data.len()), checksum::data(data)])
    }
}

// ---------------------------------------------------------------------------------------------
// The zero-copy packet view.

/// A read/write view of a PIM message. [`Packet::new_checked`] guarantees the common header
/// is present and the version is 2, so every accessor stays in bounds.
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

    /// Wraps a buffer and checks the header length and the version.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the 4-byte common header fits and that PIM Ver is 2 (RFC 7761 §4.9).
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != VERSION {
            return Err(Error::BadVersion(self.version()));
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The PIM Ver field (2 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// The Type field.
    pub fn msg_type(&self) -> MessageType {
        MessageType::from(self.buffer.as_ref()[field::VER_TYPE] & 0x0f)
    }

    /// The byte after the type, "Reserved" in RFC 7761 §4.9 and type-specific flag bits since
    /// RFC 8736 §3 (for example the No-Forward bit of a Register). Kept, never rejected.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The whole message, header included.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The message after the common header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY..]
    }

    /// How many bytes the checksum covers: the whole message, except for a Register where it
    /// covers only the first 8 bytes (RFC 7761 §4.9.3).
    pub fn checksum_len(&self) -> usize {
        let len = self.buffer.as_ref().len();
        if self.msg_type() == MessageType::Register { len.min(REGISTER_CHECKSUM_LEN) } else { len }
    }

    /// Whether the checksum verifies in `ctx` (always true for [`ChecksumContext::Unchecked`]).
    ///
    /// For a Register, RFC 7761 §4.9.3 has the checksum over the first 8 bytes only (with an
    /// IPv6 pseudo-header length of 8) but says a checksum over the whole message should also
    /// be accepted for interoperability; both are accepted here.
    pub fn verify_checksum(&self, ctx: ChecksumContext) -> bool {
        if ctx == ChecksumContext::Unchecked {
            return true;
        }
        let data = self.buffer.as_ref();
        let covered = self.checksum_len();
        if checksum::verifies(ctx.sum(&data[..covered])) {
            return true;
        }
        covered != data.len() && checksum::verifies(ctx.sum(data))
    }

    /// A validated, allocation-free view of a Join/Prune body. `Error::Malformed` if this is
    /// not a Join/Prune; see [`JoinPruneView::new_checked`] for the other errors. The checksum
    /// is not looked at: call [`Packet::verify_checksum`] first.
    pub fn join_prune(&self) -> Result<JoinPruneView<'_>> {
        if self.msg_type() != MessageType::JoinPrune {
            return Err(Error::Malformed("PIM message type is not Join/Prune"));
        }
        JoinPruneView::new_checked(self.body())
    }

    /// An iterator over the raw option TLVs of a Hello body. `Error::Malformed` if this is not
    /// a Hello.
    pub fn hello_options(&self) -> Result<HelloOptions<'_>> {
        if self.msg_type() != MessageType::Hello {
            return Err(Error::Malformed("PIM message type is not Hello"));
        }
        Ok(HelloOptions::new(self.body()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags (reserved) byte; the checksum must be refilled afterwards.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Computes and writes the checksum for `ctx` ([`ChecksumContext::Unchecked`] writes zero
    /// for the kernel to fill). Registers are summed over their first 8 bytes (§4.9.3).
    pub fn fill_checksum(&mut self, ctx: ChecksumContext) {
        let covered = self.checksum_len();
        let data = self.buffer.as_mut();
        write_u16(data, field::CHECKSUM, 0);
        if ctx != ChecksumContext::Unchecked {
            let sum = checksum::finish(ctx.sum(&data[..covered]));
            write_u16(data, field::CHECKSUM, sum);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoded addresses (RFC 7761 §4.9.1).

/// Length of an address of `addr`'s family in bytes.
fn addr_len(addr: &IpAddr) -> usize {
    match addr {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

/// The host mask length of `addr`'s family: 32 or 128, the only mask length RFC 7761 §4.9.1
/// allows in an Encoded-Source and the one SSM uses for groups.
pub fn full_mask_len(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn family_of(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => ADDR_FAMILY_IPV4,
        IpAddr::V6(_) => ADDR_FAMILY_IPV6,
    }
}

/// Reads Addr Family and Encoding Type and checks both are known: any other family or
/// encoding has an unknown length, so the enclosing message cannot be parsed further.
fn read_family(r: &mut Reader<'_>) -> Result<u8> {
    let family = r.u8()?;
    let encoding = r.u8()?;
    if family != ADDR_FAMILY_IPV4 && family != ADDR_FAMILY_IPV6 {
        return Err(Error::Malformed("PIM encoded address family"));
    }
    if encoding != ENCODING_NATIVE {
        return Err(Error::Malformed("PIM encoded address encoding type"));
    }
    Ok(family)
}

/// Reads the address of a family `read_family` accepted.
fn read_addr(r: &mut Reader<'_>, family: u8) -> Result<IpAddr> {
    if family == ADDR_FAMILY_IPV4 {
        let b: [u8; 4] = r.take(4)?.try_into().map_err(|_| Error::Truncated)?;
        Ok(IpAddr::V4(Ipv4Addr::from(b)))
    } else {
        let b: [u8; 16] = r.take(16)?.try_into().map_err(|_| Error::Truncated)?;
        Ok(IpAddr::V6(Ipv6Addr::from(b)))
    }
}

fn write_addr(w: &mut Writer<'_>, addr: &IpAddr) -> Result<()> {
    match addr {
        IpAddr::V4(a) => w.put(&a.octets()),
        IpAddr::V6(a) => w.put(&a.octets()),
    }
}

/// An Encoded-Unicast address (RFC 7761 §4.9.1): Addr Family, Encoding Type 0, address;
/// 6 bytes for IPv4, 18 for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodedUnicast(pub IpAddr);

impl EncodedUnicast {
    /// Parses one address at the start of `buf`; returns it and the bytes it used.
    pub fn parse(buf: &[u8]) -> Result<(EncodedUnicast, usize)> {
        let mut r = Reader::new(buf);
        let value = Self::read(&mut r)?;
        Ok((value, buf.len() - r.rest().len()))
    }

    fn read(r: &mut Reader<'_>) -> Result<EncodedUnicast> {
        let family = read_family(r)?;
        Ok(EncodedUnicast(read_addr(r, family)?))
    }

    /// Encoded length: 6 or 18.
    pub fn buffer_len(&self) -> usize {
        2 + addr_len(&self.0)
    }

    /// Writes the address at the start of `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let mut w = Writer::new(buf);
        self.write(&mut w)?;
        Ok(w.pos)
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<()> {
        w.u8(family_of(&self.0))?;
        w.u8(ENCODING_NATIVE)?;
        write_addr(w, &self.0)
    }
}

impl From<IpAddr> for EncodedUnicast {
    fn from(addr: IpAddr) -> Self {
        EncodedUnicast(addr)
    }
}

impl From<Ipv4Addr> for EncodedUnicast {
    fn from(addr: Ipv4Addr) -> Self {
        EncodedUnicast(addr.into())
    }
}

impl From<Ipv6Addr> for EncodedUnicast {
    fn from(addr: Ipv6Addr) -> Self {
        EncodedUnicast(addr.into())
    }
}

const GROUP_BIDIR: u8 = 0x80;
const GROUP_ZONE: u8 = 0x01;
const GROUP_RESERVED: u8 = 0x7e;
const SOURCE_SPARSE: u8 = 0x04;
const SOURCE_WILDCARD: u8 = 0x02;
const SOURCE_RPT: u8 = 0x01;
const SOURCE_RESERVED: u8 = 0xf8;

/// An Encoded-Group address (RFC 7761 §4.9.1): Addr Family, Encoding Type 0,
/// `B | Reserved (6) | Z`, Mask Len, group; 8 bytes for IPv4, 20 for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodedGroup {
    /// The group address (or the base of a group range).
    pub addr: IpAddr,
    /// Mask Len: 32 or 128 for a single group, as SSM uses.
    pub mask_len: u8,
    /// B: the range is Bidir-PIM (RFC 5015).
    pub bidir: bool,
    /// Z: the range is an admin-scope zone (Bootstrap only, RFC 5059).
    pub zone: bool,
    /// The six reserved bits as received, in place (mask 0x7e); zero when sending. Kept so
    /// `emit(parse(x))` reproduces `x`; bits outside 0x7e are ignored on emit.
    pub reserved: u8,
}

impl EncodedGroup {
    /// A single group: host mask length, no flags.
    pub fn new(addr: IpAddr) -> EncodedGroup {
        EncodedGroup { addr, mask_len: full_mask_len(&addr), bidir: false, zone: false, reserved: 0 }
    }

    /// Parses one Encoded-Group at the start of `buf`; returns it and the bytes it used.
    pub fn parse(buf: &[u8]) -> Result<(EncodedGroup, usize)> {
        let mut r = Reader::new(buf);
        let value = Self::read(&mut r)?;
        Ok((value, buf.len() - r.rest().len()))
    }

    fn read(r: &mut Reader<'_>) -> Result<EncodedGroup> {
        let family = read_family(r)?;
        let flags = r.u8()?;
        let mask_len = r.u8()?;
        let addr = read_addr(r, family)?;
        Ok(EncodedGroup {
            addr,
            mask_len,
            bidir: flags & GROUP_BIDIR != 0,
            zone: flags & GROUP_ZONE != 0,
            reserved: flags & GROUP_RESERVED,
        })
    }

    /// Encoded length: 8 or 20.
    pub fn buffer_len(&self) -> usize {
        4 + addr_len(&self.addr)
    }

    /// Writes the address at the start of `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let mut w = Writer::new(buf);
        self.write(&mut w)?;
        Ok(w.pos)
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<()> {
        let flags = if self.bidir { GROUP_BIDIR } else { 0 }
            | if self.zone { GROUP_ZONE } else { 0 }
            | (self.reserved & GROUP_RESERVED);
        w.put(&[family_of(&self.addr), ENCODING_NATIVE, flags, self.mask_len])?;
        write_addr(w, &self.addr)
    }
}

/// An Encoded-Source address (RFC 7761 §4.9.1): Addr Family, Encoding Type 0,
/// `Rsrvd (5) | S | W | R`, Mask Len, source; 8 bytes for IPv4, 20 for IPv6.
///
/// In a Join/Prune (RFC 7761 §4.9.5.1) an (S,G) entry has W = 0, R = 0; an (S,G,rpt) entry
/// W = 0, R = 1; a (*,G) entry carries the RP address with W = 1, R = 1. S must be 1 for
/// PIM-SM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodedSource {
    /// The source address (the RP address for a (*,G) entry).
    pub addr: IpAddr,
    /// Mask Len: RFC 7761 §4.9.1 requires 32 or 128 and says routers SHOULD ignore messages
    /// with any other value; that policy is the receiver's, the codec keeps the value.
    pub mask_len: u8,
    /// S: Sparse bit, 1 for PIM-SM.
    pub sparse: bool,
    /// W: WildCard bit, 1 for a (*,G) entry.
    pub wildcard: bool,
    /// R: RPT bit, 1 for (S,G,rpt) and (*,G) entries.
    pub rpt: bool,
    /// The five reserved bits as received, in place (mask 0xf8); zero when sending. Bits
    /// outside 0xf8 are ignored on emit.
    pub reserved: u8,
}

impl EncodedSource {
    /// An (S,G) entry: S = 1, W = 0, R = 0, host mask length (flags byte 0x04, what FRR sends).
    pub fn source(addr: IpAddr) -> EncodedSource {
        EncodedSource { addr, mask_len: full_mask_len(&addr), sparse: true, wildcard: false, rpt: false, reserved: 0 }
    }

    /// An (S,G,rpt) entry: S = 1, W = 0, R = 1.
    pub fn source_rpt(addr: IpAddr) -> EncodedSource {
        EncodedSource { rpt: true, ..EncodedSource::source(addr) }
    }

    /// A (*,G) entry naming the RP: S = 1, W = 1, R = 1 (RFC 7761 §4.9.5.1).
    pub fn wildcard(rp: IpAddr) -> EncodedSource {
        EncodedSource { wildcard: true, rpt: true, ..EncodedSource::source(rp) }
    }

    /// Whether this is a plain (S,G) entry (W = 0, R = 0), the only kind PIM-SSM acts on
    /// (RFC 7761 §4.8.1).
    pub fn is_sg(&self) -> bool {
        !self.wildcard && !self.rpt
    }

    /// Parses one Encoded-Source at the start of `buf`; returns it and the bytes it used.
    pub fn parse(buf: &[u8]) -> Result<(EncodedSource, usize)> {
        let mut r = Reader::new(buf);
        let value = Self::read(&mut r)?;
        Ok((value, buf.len() - r.rest().len()))
    }

    fn read(r: &mut Reader<'_>) -> Result<EncodedSource> {
        let family = read_family(r)?;
        let flags = r.u8()?;
        let mask_len = r.u8()?;
        let addr = read_addr(r, family)?;
        Ok(EncodedSource {
            addr,
            mask_len,
            sparse: flags & SOURCE_SPARSE != 0,
            wildcard: flags & SOURCE_WILDCARD != 0,
            rpt: flags & SOURCE_RPT != 0,
            reserved: flags & SOURCE_RESERVED,
        })
    }

    /// Encoded length: 8 or 20.
    pub fn buffer_len(&self) -> usize {
        4 + addr_len(&self.addr)
    }

    /// Writes the address at the start of `buf`; returns the bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let mut w = Writer::new(buf);
        self.write(&mut w)?;
        Ok(w.pos)
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<()> {
        let flags = if self.sparse { SOURCE_SPARSE } else { 0 }
            | if self.wildcard { SOURCE_WILDCARD } else { 0 }
            | if self.rpt { SOURCE_RPT } else { 0 }
            | (self.reserved & SOURCE_RESERVED);
        w.put(&[family_of(&self.addr), ENCODING_NATIVE, flags, self.mask_len])?;
        write_addr(w, &self.addr)
    }
}

// ---------------------------------------------------------------------------------------------
// Hello (type 0, RFC 7761 §4.9.2).

/// The value of the LAN Prune Delay option (RFC 7761 §4.9.2, used by §4.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LanPruneDelay {
    /// T: the sender can disable Join suppression.
    pub t_bit: bool,
    /// Propagation_Delay in milliseconds (15 bits: at most 0x7fff).
    pub propagation_delay_ms: u16,
    /// Override_Interval in milliseconds.
    pub override_interval_ms: u16,
}

/// One Hello option TLV (RFC 7761 §4.9.2).
///
/// RFC 7761 §4.9.2 says unknown options MUST be ignored and MUST NOT prevent a neighbour
/// relationship from forming. It says nothing of a known option with the wrong length; such
/// an option is kept here as `Unknown` (so it is ignored like an unknown one and re-emitted
/// verbatim) rather than failing the whole Hello. The same goes for an Address List holding
/// an entry of an unknown family or encoding, which cannot be split into addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HelloOption {
    /// 1: Holdtime in seconds; 0xffff never times out, 0 removes the neighbour at once.
    Holdtime(u16),
    /// 2: LAN Prune Delay.
    LanPruneDelay(LanPruneDelay),
    /// 19: DR Priority; higher wins the DR election.
    DrPriority(u32),
    /// 20: Generation ID, a random value that changes whenever PIM restarts on the interface.
    GenerationId(u32),
    /// 24: secondary addresses, each an Encoded-Unicast of either family (FRR lists its IPv6
    /// link-local address here even on IPv4 PIM).
    AddressList(Vec<IpAddr>),
    /// Any other option, or a known one whose value could not be decoded; kept verbatim.
    Unknown {
        /// OptionType.
        kind: u16,
        /// OptionValue.
        value: Vec<u8>,
    },
}

impl HelloOption {
    /// Decodes one option from its type and value. Never fails: anything that does not match
    /// the option's format becomes [`HelloOption::Unknown`].
    pub fn decode(kind: u16, value: &[u8]) -> HelloOption {
        let decoded = match (kind, value) {
            (OPT_HOLDTIME, &[a, b]) => Some(HelloOption::Holdtime(u16::from_be_bytes([a, b]))),
            (OPT_LAN_PRUNE_DELAY, &[a, b, c, d]) => Some(HelloOption::LanPruneDelay(LanPruneDelay {
                t_bit: a & 0x80 != 0,
                propagation_delay_ms: u16::from_be_bytes([a & 0x7f, b]),
                override_interval_ms: u16::from_be_bytes([c, d]),
            })),
            (OPT_DR_PRIORITY, &[a, b, c, d]) => Some(HelloOption::DrPriority(u32::from_be_bytes([a, b, c, d]))),
            (OPT_GENERATION_ID, &[a, b, c, d]) => Some(HelloOption::GenerationId(u32::from_be_bytes([a, b, c, d]))),
            (OPT_ADDRESS_LIST, _) => decode_address_list(value).map(HelloOption::AddressList),
            _ => None,
        };
        decoded.unwrap_or_else(|| HelloOption::Unknown { kind, value: value.to_vec() })
    }

    /// The OptionType.
    pub fn kind(&self) -> u16 {
        match self {
            HelloOption::Holdtime(_) => OPT_HOLDTIME,
            HelloOption::LanPruneDelay(_) => OPT_LAN_PRUNE_DELAY,
            HelloOption::DrPriority(_) => OPT_DR_PRIORITY,
            HelloOption::GenerationId(_) => OPT_GENERATION_ID,
            HelloOption::AddressList(_) => OPT_ADDRESS_LIST,
            HelloOption::Unknown { kind, .. } => *kind,
        }
    }

    /// The OptionLength this option emits.
    pub fn value_len(&self) -> usize {
        match self {
            HelloOption::Holdtime(_) => 2,
            HelloOption::LanPruneDelay(_) | HelloOption::DrPriority(_) | HelloOption::GenerationId(_) => 4,
            HelloOption::AddressList(addrs) => addrs.iter().map(|a| 2 + addr_len(a)).sum(),
            HelloOption::Unknown { value, .. } => value.len(),
        }
    }

    /// The whole TLV length (4-byte type and length, then the value).
    pub fn buffer_len(&self) -> usize {
        4 + self.value_len()
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<()> {
        let len = u16::try_from(self.value_len()).map_err(|_| Error::BadLength)?;
        w.u16(self.kind())?;
        w.u16(len)?;
        match self {
            HelloOption::Holdtime(t) => w.u16(*t),
            HelloOption::LanPruneDelay(d) => {
                if d.propagation_delay_ms > 0x7fff {
                    return Err(Error::Malformed("PIM LAN Prune Delay propagation delay over 15 bits"));
                }
                w.u16(if d.t_bit { 0x8000 } else { 0 } | d.propagation_delay_ms)?;
                w.u16(d.override_interval_ms)
            }
            HelloOption::DrPriority(v) | HelloOption::GenerationId(v) => w.u32(*v),
            HelloOption::AddressList(addrs) => addrs.iter().try_for_each(|a| EncodedUnicast(*a).write(w)),
            HelloOption::Unknown { value, .. } => w.put(value),
        }
    }
}

/// Splits an Address List value into addresses; `None` if any entry is unknown or cut short.
fn decode_address_list(value: &[u8]) -> Option<Vec<IpAddr>> {
    let mut r = Reader::new(value);
    // Each entry is at least 6 bytes, so this bounds the allocation by the input.
    let mut addrs = Vec::with_capacity(value.len() / 6);
    while !r.is_empty() {
        addrs.push(EncodedUnicast::read(&mut r).ok()?.0);
    }
    Some(addrs)
}

/// One raw Hello option TLV, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawHelloOption<'a> {
    /// OptionType.
    pub kind: u16,
    /// OptionValue (OptionLength bytes).
    pub value: &'a [u8],
}

impl RawHelloOption<'_> {
    /// Decodes the option (see [`HelloOption::decode`]).
    pub fn decode(&self) -> HelloOption {
        HelloOption::decode(self.kind, self.value)
    }
}

/// An allocation-free iterator over the option TLVs of a Hello body. Yields
/// `Err(Error::Truncated)` once, and then stops, if an option runs past the end of the message.
#[derive(Debug, Clone)]
pub struct HelloOptions<'a> {
    rest: Reader<'a>,
    failed: bool,
}

impl<'a> HelloOptions<'a> {
    /// Iterates over the options of `body`, the Hello after the common header.
    pub fn new(body: &'a [u8]) -> HelloOptions<'a> {
        HelloOptions { rest: Reader::new(body), failed: false }
    }
}

impl<'a> Iterator for HelloOptions<'a> {
    type Item = Result<RawHelloOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let mut r = self.rest;
        match read_option(&mut r) {
            Ok(option) => {
                self.rest = r;
                Some(Ok(option))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads one option TLV: OptionType, OptionLength, OptionValue (RFC 7761 §4.9.2).
fn read_option<'a>(r: &mut Reader<'a>) -> Result<RawHelloOption<'a>> {
    let kind = r.u16()?;
    let len = r.u16()?;
    let value = r.take(usize::from(len))?;
    Ok(RawHelloOption { kind, value })
}

/// A Hello message body (RFC 7761 §4.9.2): a sequence of option TLVs, in the order received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Hello {
    /// The options, in wire order (duplicates kept).
    pub options: Vec<HelloOption>,
}

impl Hello {
    /// Parses a Hello body (the message after the common header). An option that runs past
    /// the end of the message is `Error::Truncated`; a known option with a bad value is kept
    /// as [`HelloOption::Unknown`].
    pub fn parse(body: &[u8]) -> Result<Hello> {
        // Each option takes at least 4 bytes, so this bounds the allocation by the input.
        let mut options = Vec::with_capacity(body.len() / 4);
        for raw in HelloOptions::new(body) {
            options.push(raw?.decode());
        }
        Ok(Hello { options })
    }

    /// The body length this Hello emits.
    pub fn buffer_len(&self) -> usize {
        self.options.iter().map(HelloOption::buffer_len).sum()
    }

    /// Writes the body (options only, no common header) at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let mut w = Writer::new(buf);
        self.write(&mut w)?;
        Ok(w.pos)
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<()> {
        self.options.iter().try_for_each(|o| o.write(w))
    }

    /// The first Holdtime option, in seconds.
    pub fn holdtime(&self) -> Option<u16> {
        self.options.iter().find_map(|o| match o {
            HelloOption::Holdtime(t) => Some(*t),
            _ => None,
        })
    }

    /// The first LAN Prune Delay option.
    pub fn lan_prune_delay(&self) -> Option<LanPruneDelay> {
        self.options.iter().find_map(|o| match o {
            HelloOption::LanPruneDelay(d) => Some(*d),
            _ => None,
        })
    }

    /// The first DR Priority option. `None` matters: DR election falls back to addresses
    /// only if any neighbour omits it (RFC 7761 §4.3.2).
    pub fn dr_priority(&self) -> Option<u32> {
        self.options.iter().find_map(|o| match o {
            HelloOption::DrPriority(p) => Some(*p),
            _ => None,
        })
    }

    /// The first Generation ID option.
    pub fn generation_id(&self) -> Option<u32> {
        self.options.iter().find_map(|o| match o {
            HelloOption::GenerationId(g) => Some(*g),
            _ => None,
        })
    }

    /// Every address of every decoded Address List option, in order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.options
            .iter()
            .filter_map(|o| match o {
                HelloOption::AddressList(addrs) => Some(addrs.iter().copied()),
                _ => None,
            })
            .flatten()
    }
}

// ---------------------------------------------------------------------------------------------
// Join/Prune (type 3, RFC 7761 §4.9.5).

/// Steps over `count` Encoded-Source addresses, validating each.
fn skip_sources(r: &mut Reader<'_>, count: u16) -> Result<()> {
    for _ in 0..count {
        EncodedSource::read(r)?;
    }
    Ok(())
}

/// A validated, zero-copy view of a Join/Prune body (RFC 7761 §4.9.5).
///
/// [`JoinPruneView::new_checked`] walks every group and source once, so the group and source
/// iterators afterwards are infallible and allocate nothing. Bytes after the last group are
/// ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinPruneView<'a> {
    upstream_neighbor: IpAddr,
    reserved: u8,
    num_groups: u8,
    holdtime: u16,
    groups: &'a [u8],
}

impl<'a> JoinPruneView<'a> {
    /// Validates a Join/Prune body (the message after the common header).
    ///
    /// Num Groups and the per-group source counts are checked against the buffer: a count
    /// that runs past the end is `Error::Truncated`. An address of an unknown family or
    /// encoding type is `Error::Malformed`, since its length, and so the rest of the message,
    /// cannot be known.
    pub fn new_checked(body: &'a [u8]) -> Result<JoinPruneView<'a>> {
        let mut r = Reader::new(body);
        let upstream_neighbor = EncodedUnicast::read(&mut r)?.0;
        let reserved = r.u8()?;
        let num_groups = r.u8()?;
        let holdtime = r.u16()?;
        let start = r.rest();
        for _ in 0..num_groups {
            EncodedGroup::read(&mut r)?;
            let joins = r.u16()?;
            let prunes = r.u16()?;
            skip_sources(&mut r, joins)?;
            skip_sources(&mut r, prunes)?;
        }
        let used = start.len() - r.rest().len();
        let groups = start.get(..used).ok_or(Error::Truncated)?;
        Ok(JoinPruneView { upstream_neighbor, reserved, num_groups, holdtime, groups })
    }

    /// Upstream Neighbor Address: act on the message as a downstream Join/Prune only if this
    /// is one of our addresses on the receiving interface (RFC 7761 §4.5.2).
    pub fn upstream_neighbor(&self) -> IpAddr {
        self.upstream_neighbor
    }

    /// The Reserved byte after the upstream neighbour.
    pub fn reserved(&self) -> u8 {
        self.reserved
    }

    /// Num Groups.
    pub fn num_groups(&self) -> u8 {
        self.num_groups
    }

    /// Holdtime in seconds (0xffff: infinite).
    pub fn holdtime(&self) -> u16 {
        self.holdtime
    }

    /// The groups, in wire order.
    pub fn groups(&self) -> JoinPruneGroups<'a> {
        JoinPruneGroups { rest: Reader::new(self.groups), remaining: self.num_groups }
    }
}

/// Iterator over the groups of a [`JoinPruneView`].
#[derive(Debug, Clone)]
pub struct JoinPruneGroups<'a> {
    rest: Reader<'a>,
    remaining: u8,
}

impl<'a> Iterator for JoinPruneGroups<'a> {
    type Item = GroupView<'a>;

    fn next(&mut self) -> Option<GroupView<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The view was validated, so none of these can fail; if one did, the walk just ends.
        let mut r = self.rest;
        let group = EncodedGroup::read(&mut r).ok()?;
        let num_joins = r.u16().ok()?;
        let num_prunes = r.u16().ok()?;
        let joins_start = r.rest();
        skip_sources(&mut r, num_joins).ok()?;
        let joins = joins_start.get(..joins_start.len() - r.rest().len())?;
        let prunes_start = r.rest();
        skip_sources(&mut r, num_prunes).ok()?;
        let prunes = prunes_start.get(..prunes_start.len() - r.rest().len())?;
        self.rest = r;
        self.remaining -= 1;
        Some(GroupView { group, num_joins, num_prunes, joins, prunes })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.remaining), Some(usize::from(self.remaining)))
    }
}

impl ExactSizeIterator for JoinPruneGroups<'_> {}

/// One group of a [`JoinPruneView`] with its joined and pruned sources, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupView<'a> {
    group: EncodedGroup,
    num_joins: u16,
    num_prunes: u16,
    joins: &'a [u8],
    prunes: &'a [u8],
}

impl<'a> GroupView<'a> {
    /// The Multicast Group Address.
    pub fn group(&self) -> EncodedGroup {
        self.group
    }

    /// Number of Joined Sources.
    pub fn num_joins(&self) -> u16 {
        self.num_joins
    }

    /// Number of Pruned Sources.
    pub fn num_prunes(&self) -> u16 {
        self.num_prunes
    }

    /// The joined sources.
    pub fn joins(&self) -> Sources<'a> {
        Sources { rest: Reader::new(self.joins), remaining: self.num_joins }
    }

    /// The pruned sources.
    pub fn prunes(&self) -> Sources<'a> {
        Sources { rest: Reader::new(self.prunes), remaining: self.num_prunes }
    }

    /// Copies the group into its owned form.
    pub fn to_owned_group(&self) -> JoinPruneGroup {
        JoinPruneGroup { group: self.group, joins: self.joins().collect(), prunes: self.prunes().collect() }
    }
}

/// Iterator over the joined or pruned sources of a [`GroupView`].
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    rest: Reader<'a>,
    remaining: u16,
}

impl Iterator for Sources<'_> {
    type Item = EncodedSource;

    fn next(&mut self) -> Option<EncodedSource> {
        if self.remaining == 0 {
            return None;
        }
        let source = EncodedSource::read(&mut self.rest).ok()?;
        self.remaining -= 1;
        Some(source)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.remaining), Some(usize::from(self.remaining)))
    }
}

impl ExactSizeIterator for Sources<'_> {}

/// One group of a Join/Prune with the sources joined and pruned in it (RFC 7761 §4.9.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JoinPruneGroup {
    /// Multicast Group Address.
    pub group: EncodedGroup,
    /// Joined Source Addresses.
    pub joins: Vec<EncodedSource>,
    /// Pruned Source Addresses.
    pub prunes: Vec<EncodedSource>,
}

impl JoinPruneGroup {
    /// A single group (host mask length) with no sources yet.
    pub fn new(group: IpAddr) -> JoinPruneGroup {
        JoinPruneGroup { group: EncodedGroup::new(group), joins: Vec::new(), prunes: Vec::new() }
    }

    /// Adds a joined source entry.
    pub fn with_join(mut self, source: EncodedSource) -> JoinPruneGroup {
        self.joins.push(source);
        self
    }

    /// Adds a pruned source entry.
    pub fn with_prune(mut self, source: EncodedSource) -> JoinPruneGroup {
        self.prunes.push(source);
        self
    }

    fn buffer_len(&self) -> usize {
        self.group.buffer_len()
            + 4
            + self.joins.iter().map(EncodedSource::buffer_len).sum::<usize>()
            + self.prunes.iter().map(EncodedSource::buffer_len).sum::<usize>()
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<()> {
        let joins = u16::try_from(self.joins.len()).map_err(|_| Error::BadLength)?;
        let prunes = u16::try_from(self.prunes.len()).map_err(|_| Error::BadLength)?;
        self.group.write(w)?;
        w.u16(joins)?;
        w.u16(prunes)?;
        self.joins.iter().chain(&self.prunes).try_for_each(|s| s.write(w))
    }
}

/// A Join/Prune message body (RFC 7761 §4.9.5), owned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JoinPrune {
    /// Upstream Neighbor Address: the router the joins and prunes are meant for.
    pub upstream_neighbor: EncodedUnicast,
    /// The Reserved byte before Num Groups; zero when sending.
    pub reserved: u8,
    /// Holdtime in seconds (0xffff: infinite); FRR sends 210 (3.5 × t_periodic).
    pub holdtime: u16,
    /// The groups (at most 255).
    pub groups: Vec<JoinPruneGroup>,
}

impl JoinPrune {
    /// A Join/Prune for `upstream_neighbor` with reserved byte zero.
    pub fn new(upstream_neighbor: IpAddr, holdtime: u16, groups: Vec<JoinPruneGroup>) -> JoinPrune {
        JoinPrune { upstream_neighbor: EncodedUnicast(upstream_neighbor), reserved: 0, holdtime, groups }
    }

    /// Parses a Join/Prune body (see [`JoinPruneView::new_checked`] for the errors).
    pub fn parse(body: &[u8]) -> Result<JoinPrune> {
        Ok(JoinPrune::from_view(&JoinPruneView::new_checked(body)?))
    }

    /// Copies a validated view into the owned form.
    pub fn from_view(view: &JoinPruneView<'_>) -> JoinPrune {
        JoinPrune {
            upstream_neighbor: EncodedUnicast(view.upstream_neighbor()),
            reserved: view.reserved(),
            holdtime: view.holdtime(),
            groups: view.groups().map(|g| g.to_owned_group()).collect(),
        }
    }

    /// The body length this Join/Prune emits.
    pub fn buffer_len(&self) -> usize {
        self.upstream_neighbor.buffer_len() + 4 + self.groups.iter().map(JoinPruneGroup::buffer_len).sum::<usize>()
    }

    /// Writes the body (no common header) at the start of `buf`. More than 255 groups, or
    /// more than 65535 joined or pruned sources in a group, is `Error::BadLength`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let mut w = Writer::new(buf);
        self.write(&mut w)?;
        Ok(w.pos)
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<()> {
        let num_groups = u8::try_from(self.groups.len()).map_err(|_| Error::BadLength)?;
        self.upstream_neighbor.write(w)?;
        w.u8(self.reserved)?;
        w.u8(num_groups)?;
        w.u16(self.holdtime)?;
        self.groups.iter().try_for_each(|g| g.write(w))
    }
}

// ---------------------------------------------------------------------------------------------
// The whole message.

/// The body of a PIM message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// Type 0.
    Hello(Hello),
    /// Type 3.
    JoinPrune(JoinPrune),
    /// Every other type, body kept verbatim (Register, Register-Stop, Bootstrap, Assert,
    /// Graft, Graft-Ack, C-RP-Advertisement, unknown types).
    Other {
        /// The message type.
        kind: MessageType,
        /// Everything after the common header.
        body: Vec<u8>,
    },
}

/// A parsed PIM message: the flags byte and the body. The checksum is verified on parse and
/// computed on emit according to a [`ChecksumContext`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The byte after the type: Reserved in RFC 7761 §4.9, type-specific flags since
    /// RFC 8736. Zero for Hello and Join/Prune.
    pub flags: u8,
    /// The message.
    pub message: Message,
}

impl Repr {
    /// A Hello with these options, flags zero.
    pub fn hello(options: Vec<HelloOption>) -> Repr {
        Repr { flags: 0, message: Message::Hello(Hello { options }) }
    }

    /// A Join/Prune for `upstream_neighbor`, flags and reserved byte zero.
    pub fn join_prune(upstream_neighbor: IpAddr, holdtime: u16, groups: Vec<JoinPruneGroup>) -> Repr {
        Repr { flags: 0, message: Message::JoinPrune(JoinPrune::new(upstream_neighbor, holdtime, groups)) }
    }

    /// Any other message type with a raw body, flags zero.
    pub fn other(kind: MessageType, body: Vec<u8>) -> Repr {
        Repr { flags: 0, message: Message::Other { kind, body } }
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match &self.message {
            Message::Hello(_) => MessageType::Hello,
            Message::JoinPrune(_) => MessageType::JoinPrune,
            Message::Other { kind, .. } => *kind,
        }
    }

    /// The Hello, if this is one.
    pub fn as_hello(&self) -> Option<&Hello> {
        match &self.message {
            Message::Hello(h) => Some(h),
            _ => None,
        }
    }

    /// The Join/Prune, if this is one.
    pub fn as_join_prune(&self) -> Option<&JoinPrune> {
        match &self.message {
            Message::JoinPrune(jp) => Some(jp),
            _ => None,
        }
    }

    /// Parses a checked packet, verifying its checksum in `ctx` (`Error::BadChecksum`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>, ctx: ChecksumContext) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum(ctx) {
            return Err(Error::BadChecksum);
        }
        let message = match packet.msg_type() {
            MessageType::Hello => Message::Hello(Hello::parse(packet.body())?),
            MessageType::JoinPrune => Message::JoinPrune(JoinPrune::parse(packet.body())?),
            kind => Message::Other { kind, body: packet.body().to_vec() },
        };
        Ok(Repr { flags: packet.flags(), message })
    }

    /// The whole message length, common header included.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match &self.message {
                Message::Hello(h) => h.buffer_len(),
                Message::JoinPrune(jp) => jp.buffer_len(),
                Message::Other { body, .. } => body.len(),
            }
    }

    /// Writes the message at the start of `buf` with the checksum for `ctx`, and returns its
    /// length. A message type over 15 is `Error::Malformed`.
    pub fn emit(&self, buf: &mut [u8], ctx: ChecksumContext) -> Result<usize> {
        let kind = u8::from(self.message_type());
        if kind > 0x0f {
            return Err(Error::Malformed("PIM message type over 4 bits"));
        }
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let mut w = Writer::new(buf);
        w.put(&[VERSION << 4 | kind, self.flags, 0, 0])?;
        match &self.message {
            Message::Hello(h) => h.write(&mut w)?,
            Message::JoinPrune(jp) => jp.write(&mut w)?,
            Message::Other { body, .. } => w.put(body)?,
        }
        if w.pos != len {
            return Err(Error::BadLength);
        }
        Packet::new_unchecked(buf).fill_checksum(ctx);
        Ok(len)
    }

    /// Emits into a new vector of exactly [`Repr::buffer_len`] bytes.
    pub fn to_bytes(&self, ctx: ChecksumContext) -> Result<Vec<u8>> {
        let mut out = vec![0; self.buffer_len()];
        self.emit(&mut out, ctx)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// lab-notes.md §5.1: the upstream-neighbour stub's Hello, Holdtime 105, DR Priority 1,
    /// GenID 0x1d6b9760, checksum 0x2a98.
    const HELLO: &str = "20002a98000100020069001300040000000100140004 1d6b9760";
    /// lab-notes.md §6.1: FRR 8.4.4's Join from 10.9.1.1 for (23.212.185.4, 232.1.1.1).
    const JOIN: &str = "2300100501000a090102000100d201000020e8010101000100000100042017d4b904";
    /// lab-notes.md §6.1: the matching Prune (same checksum: the counts swapped words).
    const PRUNE: &str = "2300100501000a090102000100d201000020e8010101000000010100042017d4b904";

    fn bytes(hex_str: &str) -> Vec<u8> {
        hex::decode(hex_str.replace(' ', "")).unwrap()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    fn parse_v4(data: &[u8]) -> Result<Repr> {
        Repr::parse(&Packet::new_checked(data)?, ChecksumContext::V4)
    }

    /// FRR's 56-byte Hello (lab-notes.md §5.1), rebuilt from its description: Holdtime 105,
    /// LAN Prune Delay T=0 500 ms / 2500 ms, DR Priority 1, a GenID, and an Address List with
    /// the interface's IPv6 link-local address encoded as family 2.
    fn frr_hello_bytes() -> Vec<u8> {
        let mut msg = bytes("20000000");
        msg.extend_from_slice(&bytes("0001 0002 0069"));
        msg.extend_from_slice(&bytes("0002 0004 01f4 09c4"));
        msg.extend_from_slice(&bytes("0013 0004 00000001"));
        msg.extend_from_slice(&bytes("0014 0004 4d114bd5"));
        msg.extend_from_slice(&bytes("0018 0012 0200 fe800000000000000c8a2ffffe0fd81d"));
        let sum = checksum::finish(checksum::data(&msg));
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
        msg
    }

    #[test]
    fn hello_sample() {
        let data = bytes(HELLO);
        let packet = Packet::new_checked(&data[..]).unwrap();
        assert_eq!(packet.version(), 2);
        assert_eq!(packet.msg_type(), MessageType::Hello);
        assert_eq!(packet.flags(), 0);
        assert_eq!(packet.checksum(), 0x2a98);
        assert!(packet.verify_checksum(ChecksumContext::V4));
        let repr = Repr::parse(&packet, ChecksumContext::V4).unwrap();
        assert_eq!(repr.flags, 0);
        let hello = repr.as_hello().unwrap();
        assert_eq!(
            hello.options,
            vec![HelloOption::Holdtime(105), HelloOption::DrPriority(1), HelloOption::GenerationId(0x1d6b9760)]
        );
        assert_eq!(hello.holdtime(), Some(105));
        assert_eq!(hello.dr_priority(), Some(1));
        assert_eq!(hello.generation_id(), Some(0x1d6b9760));
        assert_eq!(hello.lan_prune_delay(), None);
        assert_eq!(hello.addresses().count(), 0);
        assert_eq!(repr.buffer_len(), 26);
        assert_eq!(repr.to_bytes(ChecksumContext::V4).unwrap(), data);
        // Built from scratch too.
        let built = Repr::hello(vec![
            HelloOption::Holdtime(105),
            HelloOption::DrPriority(1),
            HelloOption::GenerationId(0x1d6b9760),
        ]);
        assert_eq!(built.to_bytes(ChecksumContext::V4).unwrap(), data);
        insta::assert_debug_snapshot!("hello_sample", repr);
    }

    fn check_join_prune_sample(hex_str: &str, joined: bool) -> Repr {
        let data = bytes(hex_str);
        let packet = Packet::new_checked(&data[..]).unwrap();
        assert_eq!(packet.msg_type(), MessageType::JoinPrune);
        assert_eq!(packet.checksum(), 0x1005);
        let repr = Repr::parse(&packet, ChecksumContext::V4).unwrap();
        let jp = repr.as_join_prune().unwrap();
        assert_eq!(jp.upstream_neighbor, EncodedUnicast(v4(10, 9, 1, 2)));
        assert_eq!(jp.reserved, 0);
        assert_eq!(jp.holdtime, 210);
        assert_eq!(jp.groups.len(), 1);
        let group = &jp.groups[0];
        assert_eq!(group.group, EncodedGroup::new(v4(232, 1, 1, 1)));
        assert_eq!(group.group.mask_len, 32);
        let source = EncodedSource::source(v4(23, 212, 185, 4));
        assert!(source.is_sg() && source.sparse && source.mask_len == 32);
        let (joins, prunes) = if joined { (vec![source], vec![]) } else { (vec![], vec![source]) };
        assert_eq!(group.joins, joins);
        assert_eq!(group.prunes, prunes);
        assert_eq!(repr.to_bytes(ChecksumContext::V4).unwrap(), data);
        let group = if joined {
            JoinPruneGroup::new(v4(232, 1, 1, 1)).with_join(source)
        } else {
            JoinPruneGroup::new(v4(232, 1, 1, 1)).with_prune(source)
        };
        let built = Repr::join_prune(v4(10, 9, 1, 2), 210, vec![group]);
        assert_eq!(built.to_bytes(ChecksumContext::V4).unwrap(), data);

        // The zero-copy view sees the same thing.
        let view = packet.join_prune().unwrap();
        assert_eq!(view.upstream_neighbor(), v4(10, 9, 1, 2));
        assert_eq!(view.holdtime(), 210);
        assert_eq!(view.num_groups(), 1);
        let groups: Vec<_> = view.groups().collect();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].group(), EncodedGroup::new(v4(232, 1, 1, 1)));
        assert_eq!(groups[0].joins().len(), usize::from(joined));
        assert_eq!(groups[0].prunes().len(), usize::from(!joined));
        assert_eq!(groups[0].joins().chain(groups[0].prunes()).collect::<Vec<_>>(), vec![source]);
        repr
    }

    #[test]
    fn join_sample() {
        let repr = check_join_prune_sample(JOIN, true);
        insta::assert_debug_snapshot!("join_sample", repr);
    }

    #[test]
    fn prune_sample() {
        let repr = check_join_prune_sample(PRUNE, false);
        insta::assert_debug_snapshot!("prune_sample", repr);
    }

    #[test]
    fn frr_hello_with_ipv6_link_local_address_list() {
        let data = frr_hello_bytes();
        assert_eq!(data.len(), 56);
        let repr = parse_v4(&data).unwrap();
        let hello = repr.as_hello().unwrap();
        assert_eq!(hello.options.len(), 5);
        assert_eq!(hello.holdtime(), Some(105));
        assert_eq!(
            hello.lan_prune_delay(),
            Some(LanPruneDelay { t_bit: false, propagation_delay_ms: 500, override_interval_ms: 2500 })
        );
        assert_eq!(hello.dr_priority(), Some(1));
        assert_eq!(hello.generation_id(), Some(0x4d114bd5));
        assert_eq!(hello.addresses().collect::<Vec<_>>(), vec![v6("fe80::c8a:2fff:fe0f:d81d")]);
        assert_eq!(repr.to_bytes(ChecksumContext::V4).unwrap(), data);
        insta::assert_debug_snapshot!("frr_hello", repr);
    }

    #[test]
    fn lan_prune_delay_t_bit() {
        let opt = HelloOption::decode(OPT_LAN_PRUNE_DELAY, &[0x81, 0xf4, 0x09, 0xc4]);
        assert_eq!(
            opt,
            HelloOption::LanPruneDelay(LanPruneDelay {
                t_bit: true,
                propagation_delay_ms: 500,
                override_interval_ms: 2500
            })
        );
        let bytes = Repr::hello(vec![opt]).to_bytes(ChecksumContext::V4).unwrap();
        assert_eq!(&bytes[4..], &[0, 2, 0, 4, 0x81, 0xf4, 0x09, 0xc4]);
        let too_big = HelloOption::LanPruneDelay(LanPruneDelay {
            t_bit: false,
            propagation_delay_ms: 0x8000,
            override_interval_ms: 0,
        });
        assert!(matches!(Repr::hello(vec![too_big]).to_bytes(ChecksumContext::V4), Err(Error::Malformed(_))));
    }

    #[test]
    fn malformed_known_options_are_kept_as_unknown() {
        // Holdtime with 4 bytes, DR Priority with 2, an Address List with an unknown family,
        // then a good Generation ID: the Hello survives and the good option is decoded.
        let mut msg = bytes("20000000");
        msg.extend_from_slice(&bytes("0001 0004 00690000"));
        msg.extend_from_slice(&bytes("0013 0002 0001"));
        msg.extend_from_slice(&bytes("0018 0006 0300 0a000001"));
        msg.extend_from_slice(&bytes("0018 0008 0100 0a000001 0100"));
        msg.extend_from_slice(&bytes("0014 0004 00000007"));
        msg.extend_from_slice(&bytes("fde8 0003 abcdef"));
        let mut packet = Packet::new_unchecked(&mut msg[..]);
        packet.fill_checksum(ChecksumContext::V4);
        let repr = parse_v4(&msg).unwrap();
        let hello = repr.as_hello().unwrap();
        assert_eq!(
            hello.options,
            vec![
                HelloOption::Unknown { kind: 1, value: vec![0, 0x69, 0, 0] },
                HelloOption::Unknown { kind: 19, value: vec![0, 1] },
                HelloOption::Unknown { kind: 24, value: bytes("0300 0a000001") },
                HelloOption::Unknown { kind: 24, value: bytes("0100 0a000001 0100") },
                HelloOption::GenerationId(7),
                HelloOption::Unknown { kind: 65000, value: vec![0xab, 0xcd, 0xef] },
            ]
        );
        assert_eq!(hello.holdtime(), None);
        assert_eq!(hello.generation_id(), Some(7));
        assert_eq!(repr.to_bytes(ChecksumContext::V4).unwrap(), msg);
    }

    #[test]
    fn address_list_mixed_families_and_empty() {
        let list = HelloOption::AddressList(vec![v4(10, 9, 1, 2), v6("2001:db8::2"), v4(192, 0, 2, 1)]);
        assert_eq!(list.value_len(), 6 + 18 + 6);
        let repr = Repr::hello(vec![list.clone(), HelloOption::AddressList(vec![])]);
        let data = repr.to_bytes(ChecksumContext::V4).unwrap();
        let parsed = parse_v4(&data).unwrap();
        assert_eq!(parsed, repr);
        assert_eq!(parsed.as_hello().unwrap().addresses().count(), 3);
    }

    #[test]
    fn hello_option_iterator_is_zero_copy() {
        let data = frr_hello_bytes();
        let packet = Packet::new_checked(&data[..]).unwrap();
        let kinds: Vec<u16> = packet.hello_options().unwrap().map(|o| o.unwrap().kind).collect();
        assert_eq!(kinds, vec![1, 2, 19, 20, 24]);
        assert!(packet.join_prune().is_err());
        let join = bytes(JOIN);
        assert!(Packet::new_checked(&join[..]).unwrap().hello_options().is_err());
    }

    #[test]
    fn hello_truncated_option_is_rejected() {
        let data = bytes(HELLO);
        for cut in 5..data.len() {
            let mut short = data[..cut].to_vec();
            Packet::new_unchecked(&mut short[..]).fill_checksum(ChecksumContext::V4);
            // Cutting exactly at an option boundary leaves a valid, shorter Hello.
            let boundary = [4, 10, 18, 26].contains(&cut);
            match parse_v4(&short) {
                Ok(repr) => assert!(boundary, "cut {cut} parsed: {repr:?}"),
                Err(e) => {
                    assert!(!boundary, "cut {cut}: {e:?}");
                    assert_eq!(e, Error::Truncated, "cut {cut}");
                }
            }
        }
        // An OptionLength running past the end of the message.
        let mut long_len = data.clone();
        long_len[6] = 0xff;
        long_len[7] = 0xff;
        Packet::new_unchecked(&mut long_len[..]).fill_checksum(ChecksumContext::V4);
        assert_eq!(parse_v4(&long_len).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn header_rejections() {
        let data = bytes(JOIN);
        for cut in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&data[..cut]).unwrap_err(), Error::Truncated, "cut {cut}");
        }
        let mut v1 = data.clone();
        v1[0] = 0x13;
        assert_eq!(Packet::new_checked(&v1[..]).unwrap_err(), Error::BadVersion(1));
        let mut bad_sum = data.clone();
        bad_sum[3] ^= 1;
        assert_eq!(parse_v4(&bad_sum).unwrap_err(), Error::BadChecksum);
        let mut corrupt = data.clone();
        corrupt[20] ^= 0x10;
        assert_eq!(parse_v4(&corrupt).unwrap_err(), Error::BadChecksum);
        // Unchecked skips verification (the kernel did it).
        let repr = Repr::parse(&Packet::new_checked(&bad_sum[..]).unwrap(), ChecksumContext::Unchecked).unwrap();
        assert_eq!(repr.message_type(), MessageType::JoinPrune);
    }

    #[test]
    fn join_prune_truncated_at_every_length() {
        let data = bytes(JOIN);
        for cut in HEADER_LEN..data.len() {
            let mut short = data[..cut].to_vec();
            Packet::new_unchecked(&mut short[..]).fill_checksum(ChecksumContext::V4);
            assert_eq!(parse_v4(&short).unwrap_err(), Error::Truncated, "cut {cut}");
            let packet = Packet::new_checked(&short[..]).unwrap();
            assert_eq!(packet.join_prune().unwrap_err(), Error::Truncated, "cut {cut}");
        }
    }

    #[test]
    fn join_prune_counts_are_not_trusted() {
        let data = bytes(JOIN);
        // Num Groups 255 with one group present.
        let mut groups = data.clone();
        groups[11] = 0xff;
        Packet::new_unchecked(&mut groups[..]).fill_checksum(ChecksumContext::V4);
        assert_eq!(parse_v4(&groups).unwrap_err(), Error::Truncated);
        // 65535 joined sources with one present.
        let mut joins = data.clone();
        joins[22] = 0xff;
        joins[23] = 0xff;
        Packet::new_unchecked(&mut joins[..]).fill_checksum(ChecksumContext::V4);
        assert_eq!(parse_v4(&joins).unwrap_err(), Error::Truncated);
        // Zero groups is valid and trailing bytes after the last group are ignored.
        let mut zero = data[..14].to_vec();
        zero[11] = 0;
        zero.extend_from_slice(&[0xde, 0xad]);
        Packet::new_unchecked(&mut zero[..]).fill_checksum(ChecksumContext::V4);
        let repr = parse_v4(&zero).unwrap();
        assert_eq!(repr.as_join_prune().unwrap().groups, vec![]);
    }

    #[test]
    fn join_prune_unknown_family_or_encoding_is_malformed() {
        let data = bytes(JOIN);
        for (at, value) in [(4, 3), (5, 1), (14, 0), (15, 1), (26, 9), (27, 1)] {
            let mut bad = data.clone();
            bad[at] = value;
            Packet::new_unchecked(&mut bad[..]).fill_checksum(ChecksumContext::V4);
            assert!(matches!(parse_v4(&bad), Err(Error::Malformed(_))), "byte {at} = {value}");
        }
    }

    #[test]
    fn flags_and_reserved_bits_are_kept() {
        let mut data = bytes(JOIN);
        data[1] = 0x80; // RFC 8736 flag bits
        data[10] = 0x5a; // Reserved before Num Groups
        data[16] = 0xff; // B, 6 reserved bits, Z
        data[28] = 0xff; // 5 reserved bits, S, W, R
        Packet::new_unchecked(&mut data[..]).fill_checksum(ChecksumContext::V4);
        let repr = parse_v4(&data).unwrap();
        assert_eq!(repr.flags, 0x80);
        let jp = repr.as_join_prune().unwrap();
        assert_eq!(jp.reserved, 0x5a);
        let g = jp.groups[0].group;
        assert!(g.bidir && g.zone && g.reserved == 0x7e);
        let s = jp.groups[0].joins[0];
        assert!(s.sparse && s.wildcard && s.rpt && s.reserved == 0xf8 && !s.is_sg());
        assert_eq!(repr.to_bytes(ChecksumContext::V4).unwrap(), data);
    }

    #[test]
    fn wildcard_and_rpt_entries() {
        let rp = v4(10, 0, 0, 1);
        let star = EncodedSource::wildcard(rp);
        let mut buf = [0u8; 8];
        assert_eq!(star.emit(&mut buf).unwrap(), 8);
        assert_eq!(buf, [1, 0, 0x07, 32, 10, 0, 0, 1]);
        let rpt = EncodedSource::source_rpt(v4(192, 0, 2, 9));
        rpt.emit(&mut buf).unwrap();
        assert_eq!(buf[2], 0x05);
        assert_eq!(EncodedSource::parse(&buf).unwrap(), (rpt, 8));
        assert_eq!(star.emit(&mut [0u8; 7]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn encoded_address_formats() {
        let (u, n) = EncodedUnicast::parse(&bytes("0200 fe800000000000000000000000000001 ffff")).unwrap();
        assert_eq!((u, n), (EncodedUnicast(v6("fe80::1")), 18));
        assert_eq!(u.buffer_len(), 18);
        let g = EncodedGroup { addr: v6("ff3e::8000:1"), mask_len: 128, bidir: true, zone: false, reserved: 0 };
        let mut buf = [0u8; 20];
        assert_eq!(g.emit(&mut buf).unwrap(), 20);
        assert_eq!(&buf[..4], &[2, 0, 0x80, 128]);
        assert_eq!(EncodedGroup::parse(&buf).unwrap(), (g, 20));
        assert_eq!(EncodedGroup::parse(&buf[..19]).unwrap_err(), Error::Truncated);
        assert!(matches!(EncodedUnicast::parse(&[0, 0, 1, 2, 3, 4]), Err(Error::Malformed(_))));
        assert!(matches!(EncodedUnicast::parse(&[1, 1, 1, 2, 3, 4]), Err(Error::Malformed(_))));
        assert_eq!(EncodedUnicast::parse(&[1]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn ipv6_checksum_includes_pseudo_header() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst = ALL_PIM_ROUTERS_V6;
        let ctx = ChecksumContext::V6 { src, dst };
        let group = JoinPruneGroup::new(v6("ff3e::8000:1")).with_join(EncodedSource::source(v6("2001:db8::5")));
        let repr = Repr::join_prune(v6("fe80::2"), 210, vec![group]);
        let data = repr.to_bytes(ctx).unwrap();
        // Check against a direct computation over pseudo-header bytes + message.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&(data.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 103]);
        pseudo.extend_from_slice(&data);
        assert!(checksum::verifies(checksum::data(&pseudo)));
        let packet = Packet::new_checked(&data[..]).unwrap();
        assert_eq!(Repr::parse(&packet, ctx).unwrap(), repr);
        assert_eq!(Repr::parse(&packet, ChecksumContext::V4).unwrap_err(), Error::BadChecksum);
        let other = ChecksumContext::V6 { src: "fe80::9".parse().unwrap(), dst };
        assert_eq!(Repr::parse(&packet, other).unwrap_err(), Error::BadChecksum);
        // Unchecked emits a zero checksum for the kernel to fill.
        let raw = repr.to_bytes(ChecksumContext::Unchecked).unwrap();
        assert_eq!(&raw[2..4], &[0, 0]);
        assert_eq!(&raw[4..], &data[4..]);
    }

    #[test]
    fn checksum_context_from_addrs() {
        assert_eq!(ChecksumContext::from_addrs(v4(1, 2, 3, 4), v4(224, 0, 0, 13)), Ok(ChecksumContext::V4));
        assert_eq!(
            ChecksumContext::from_addrs(v6("fe80::1"), v6("ff02::d")),
            Ok(ChecksumContext::V6 { src: "fe80::1".parse().unwrap(), dst: ALL_PIM_ROUTERS_V6 })
        );
        assert!(ChecksumContext::from_addrs(v4(1, 2, 3, 4), v6("ff02::d")).is_err());
    }

    #[test]
    fn register_checksum_covers_first_eight_bytes() {
        // Register: B/N word then an encapsulated IPv4 packet (RFC 7761 §4.9.3).
        let body = bytes("00000000 4500001c0000000040110000c0000201e8010101 0000000000000000");
        let repr = Repr::other(MessageType::Register, body.clone());
        let data = repr.to_bytes(ChecksumContext::V4).unwrap();
        assert!(checksum::verifies(checksum::data(&data[..8])));
        // Data after the first 8 bytes does not matter.
        let mut changed = data.clone();
        changed[20] ^= 0xff;
        assert_eq!(parse_v4(&changed).unwrap(), Repr::other(MessageType::Register, changed[4..].to_vec()));
        // A whole-message checksum is accepted too, for interoperability (§4.9.3).
        let mut whole = data.clone();
        whole[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum::finish(checksum::data(&whole));
        whole[2..4].copy_from_slice(&sum.to_be_bytes());
        assert!(parse_v4(&whole).is_ok());
        // IPv6: pseudo-header length is 8.
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let ctx = ChecksumContext::V6 { src, dst };
        let data6 = repr.to_bytes(ctx).unwrap();
        let pseudo = checksum::pseudo_header_v6(&src, &dst, 103, 8);
        assert!(checksum::verifies(checksum::combine(&[pseudo, checksum::data(&data6[..8])])));
        assert_eq!(Repr::parse(&Packet::new_checked(&data6[..]).unwrap(), ctx).unwrap(), repr);
    }

    #[test]
    fn other_types_are_kept() {
        for kind in 0..16u8 {
            let t = MessageType::from(kind);
            assert_eq!(u8::from(t), kind);
            if matches!(t, MessageType::Hello | MessageType::JoinPrune) {
                continue;
            }
            let mut repr = Repr::other(t, vec![1, 2, 3, 4, 5]);
            repr.flags = 0x42;
            let data = repr.to_bytes(ChecksumContext::V4).unwrap();
            assert_eq!(data[0], 0x20 | kind);
            assert_eq!(parse_v4(&data).unwrap(), repr);
        }
        assert!(matches!(MessageType::from(12), MessageType::Unknown(12)));
        let bad = Repr::other(MessageType::Unknown(16), vec![]);
        assert!(matches!(bad.to_bytes(ChecksumContext::V4), Err(Error::Malformed(_))));
    }

    #[test]
    fn emit_rejects_small_buffers_and_oversized_counts() {
        let repr = parse_v4(&bytes(JOIN)).unwrap();
        for len in 0..repr.buffer_len() {
            assert_eq!(repr.emit(&mut vec![0; len], ChecksumContext::V4), Err(Error::BufferTooSmall), "len {len}");
        }
        let many = Repr::join_prune(v4(10, 0, 0, 1), 210, vec![JoinPruneGroup::new(v4(232, 1, 1, 1)); 256]);
        assert_eq!(many.to_bytes(ChecksumContext::V4), Err(Error::BadLength));
        let huge = Repr::hello(vec![HelloOption::Unknown { kind: 99, value: vec![0; 65536] }]);
        assert_eq!(huge.to_bytes(ChecksumContext::V4), Err(Error::BadLength));
    }

    // -----------------------------------------------------------------------------------------
    // Property tests.

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    fn arb_group() -> impl Strategy<Value = EncodedGroup> {
        (arb_ip(), any::<u8>(), any::<bool>(), any::<bool>(), any::<u8>()).prop_map(
            |(addr, mask_len, bidir, zone, reserved)| EncodedGroup {
                addr,
                mask_len,
                bidir,
                zone,
                reserved: reserved & GROUP_RESERVED,
            },
        )
    }

    fn arb_source() -> impl Strategy<Value = EncodedSource> {
        (arb_ip(), any::<u8>(), any::<u8>()).prop_map(|(addr, mask_len, flags)| EncodedSource {
            addr,
            mask_len,
            sparse: flags & SOURCE_SPARSE != 0,
            wildcard: flags & SOURCE_WILDCARD != 0,
            rpt: flags & SOURCE_RPT != 0,
            reserved: flags & SOURCE_RESERVED,
        })
    }

    fn arb_option() -> impl Strategy<Value = HelloOption> {
        prop_oneof![
            any::<u16>().prop_map(HelloOption::Holdtime),
            (any::<bool>(), 0..=0x7fffu16, any::<u16>()).prop_map(|(t_bit, p, o)| HelloOption::LanPruneDelay(
                LanPruneDelay { t_bit, propagation_delay_ms: p, override_interval_ms: o }
            )),
            any::<u32>().prop_map(HelloOption::DrPriority),
            any::<u32>().prop_map(HelloOption::GenerationId),
            proptest::collection::vec(arb_ip(), 0..4).prop_map(HelloOption::AddressList),
            // Unknown kinds only: a known kind with a well-formed value would parse back as
            // the decoded variant.
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..12))
                .prop_filter("unknown kind", |(k, _)| ![1, 2, 19, 20, 24].contains(k))
                .prop_map(|(kind, value)| HelloOption::Unknown { kind, value }),
        ]
    }

    fn arb_jp_group() -> impl Strategy<Value = JoinPruneGroup> {
        (arb_group(), proptest::collection::vec(arb_source(), 0..4), proptest::collection::vec(arb_source(), 0..4))
            .prop_map(|(group, joins, prunes)| JoinPruneGroup { group, joins, prunes })
    }

    fn arb_repr() -> impl Strategy<Value = Repr> {
        let message = prop_oneof![
            proptest::collection::vec(arb_option(), 0..6).prop_map(|options| Message::Hello(Hello { options })),
            (arb_ip(), any::<u8>(), any::<u16>(), proptest::collection::vec(arb_jp_group(), 0..4)).prop_map(
                |(up, reserved, holdtime, groups)| Message::JoinPrune(JoinPrune {
                    upstream_neighbor: EncodedUnicast(up),
                    reserved,
                    holdtime,
                    groups
                })
            ),
            (prop_oneof![Just(1u8), 2..3u8, 4..16u8], proptest::collection::vec(any::<u8>(), 0..24))
                .prop_map(|(kind, body)| Message::Other { kind: MessageType::from(kind), body }),
        ];
        (any::<u8>(), message).prop_map(|(flags, message)| Repr { flags, message })
    }

    fn arb_ctx() -> impl Strategy<Value = ChecksumContext> {
        prop_oneof![
            Just(ChecksumContext::V4),
            (any::<[u8; 16]>(), any::<[u8; 16]>())
                .prop_map(|(s, d)| ChecksumContext::V6 { src: Ipv6Addr::from(s), dst: Ipv6Addr::from(d) }),
            Just(ChecksumContext::Unchecked),
        ]
    }

    /// Bytes that look like a PIM message often enough to reach deep into the parsers: a
    /// version-2 header with type Hello or Join/Prune, then arbitrary bytes.
    fn pim_like() -> impl Strategy<Value = Vec<u8>> {
        (prop_oneof![Just(0x20u8), Just(0x23u8), any::<u8>()], proptest::collection::vec(any::<u8>(), 0..96)).prop_map(
            |(first, rest)| {
                let mut v = vec![first];
                v.extend(rest);
                v
            },
        )
    }

    /// Touches every accessor and iterator of a packet.
    fn exercise(data: &[u8]) {
        let _ = EncodedUnicast::parse(data);
        let _ = EncodedGroup::parse(data);
        let _ = EncodedSource::parse(data);
        let _ = Hello::parse(data);
        for o in HelloOptions::new(data).flatten() {
            let _ = o.decode();
        }
        if let Ok(view) = JoinPruneView::new_checked(data) {
            for g in view.groups() {
                let _ = g.joins().count() + g.prunes().count();
            }
        }
        let Ok(packet) = Packet::new_checked(data) else { return };
        let _ = (packet.version(), packet.msg_type(), packet.flags(), packet.checksum(), packet.body());
        let _ = packet.checksum_len();
        let ctx6 = ChecksumContext::V6 { src: Ipv6Addr::LOCALHOST, dst: ALL_PIM_ROUTERS_V6 };
        for ctx in [ChecksumContext::V4, ctx6, ChecksumContext::Unchecked] {
            let _ = packet.verify_checksum(ctx);
            let _ = Repr::parse(&packet, ctx);
        }
        if let Ok(options) = packet.hello_options() {
            for o in options.flatten() {
                let _ = o.decode();
            }
        }
        if let Ok(view) = packet.join_prune() {
            let _ = (view.upstream_neighbor(), view.reserved(), view.num_groups(), view.holdtime());
            for g in view.groups() {
                let _ = (g.group(), g.num_joins(), g.num_prunes(), g.to_owned_group());
            }
            let _ = JoinPrune::from_view(&view);
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in pim_like()) {
            exercise(&data);
        }

        #[test]
        fn emit_then_parse_roundtrips(repr in arb_repr(), ctx in arb_ctx()) {
            let data = repr.to_bytes(ctx).unwrap();
            prop_assert_eq!(data.len(), repr.buffer_len());
            let packet = Packet::new_checked(&data[..]).unwrap();
            prop_assert!(packet.verify_checksum(ctx));
            prop_assert_eq!(Repr::parse(&packet, ctx).unwrap(), repr);
        }

        #[test]
        fn parse_emit_parse_is_stable(data in pim_like()) {
            // Fill in a valid checksum first so arbitrary bodies get past verification.
            let mut data = data;
            if data.len() >= HEADER_LEN {
                Packet::new_unchecked(&mut data[..]).fill_checksum(ChecksumContext::V4);
            }
            if let Ok(repr) = parse_v4(&data) {
                let out = repr.to_bytes(ChecksumContext::V4).unwrap();
                prop_assert_eq!(parse_v4(&out).unwrap(), repr.clone());
                // Everything is reproduced except bytes after the last Join/Prune group (which
                // the checksum also covered).
                if out.len() == data.len() {
                    prop_assert_eq!(out, data);
                } else {
                    prop_assert_eq!(repr.message_type(), MessageType::JoinPrune);
                    prop_assert_eq!(&out[..2], &data[..2]);
                    prop_assert_eq!(&out[4..], &data[4..out.len()]);
                }
            }
        }

        #[test]
        fn mutated_messages_never_panic(repr in arb_repr(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4), cut: usize) {
            // Valid messages with a few bytes changed and the tail cut off reach the deep
            // paths (counts, families, option lengths) that uniform random bytes rarely do.
            let mut data = repr.to_bytes(ChecksumContext::V4).unwrap();
            for (at, value) in flips {
                let len = data.len();
                data[at % len] = value;
            }
            data.truncate(cut % (data.len() + 1));
            exercise(&data);
            if data.len() >= HEADER_LEN {
                Packet::new_unchecked(&mut data[..]).fill_checksum(ChecksumContext::V4);
            }
            if let Ok(parsed) = parse_v4(&data) {
                let out = parsed.to_bytes(ChecksumContext::V4).unwrap();
                prop_assert_eq!(parse_v4(&out).unwrap(), parsed);
            }
        }

        #[test]
        fn join_prune_structured_bytes_roundtrip(repr in arb_repr()) {
            // Re-parse structured messages through the zero-copy view as well.
            let data = repr.to_bytes(ChecksumContext::V4).unwrap();
            let packet = Packet::new_checked(&data[..]).unwrap();
            if let Message::JoinPrune(jp) = &repr.message {
                let view = packet.join_prune().unwrap();
                prop_assert_eq!(&JoinPrune::from_view(&view), jp);
                prop_assert_eq!(view.groups().len(), jp.groups.len());
            }
            exercise(&data);
        }
    }
}
