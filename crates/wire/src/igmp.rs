//! IGMP (RFC 3376 IGMPv3), with IGMPv1 (RFC 1112) and IGMPv2 (RFC 2236) messages recognised.
//!
//! An IGMP message is the whole payload of an IPv4 datagram (IP protocol 2). [`Packet`] is a
//! zero-copy view of one; [`Repr`] is its parsed form. The IGMPv3 report's group records can be
//! walked without allocating through [`Packet::group_records`].
//!
//! The record layout, the record types and the floating-point time codes are shared with MLDv2
//! (RFC 3810), which is why [`Record`], [`Report`], [`RecordType`] and the record iterators are
//! generic over the address family ([`RecordAddr`]); the [`mld`](crate::mld) module reuses them.
//!
//! AMT (RFC 7450 §5.1.4, §5.1.5) carries queries and reports as complete IP datagrams, so
//! [`datagram`] and [`parse_datagram`] build and take apart the IPv4 envelope as well.
//!
//! RFC 3376 is obsoleted by RFC 9776 (IGMPv3 as STD 100), which keeps the wire format.

use core::fmt;
use core::iter::FusedIterator;
use core::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::checksum;
use crate::ip::{IpProtocol, read_ipv4, read_u16, write_u16};
use crate::ipv4;
use crate::{Error, Result};

/// Field offsets. Bytes 0–3 are common to every IGMP message.
mod field {
    pub const TYPE: usize = 0;
    /// Max Resp Code in queries; Reserved in reports (RFC 3376 §4.1.1, §4.2.1).
    pub const MAX_RESP: usize = 1;
    pub const CHECKSUM: usize = 2;
    /// Group Address of queries and of IGMPv1/v2 reports and leaves.
    pub const GROUP: usize = 4;
    /// IGMPv3 report: Reserved (16 bits), then Number of Group Records (RFC 3376 §4.2).
    pub const REPORT_RESERVED: usize = 4;
    pub const NUM_RECORDS: usize = 6;
    pub const RECORDS: usize = 8;
    /// IGMPv3 query: Resv (4 bits) | S (1 bit) | QRV (3 bits) (RFC 3376 §4.1.4–§4.1.6).
    pub const FLAGS: usize = 8;
    pub const QQIC: usize = 9;
    pub const NUM_SOURCES: usize = 10;
    pub const SOURCES: usize = 12;
}

/// Length of an IGMPv1/v2 message, and the shortest IGMP message of any type.
pub const HEADER_LEN: usize = 8;
/// Length of an IGMPv3 query without sources (RFC 3376 §4.1).
pub const QUERY_V3_HEADER_LEN: usize = field::SOURCES;
/// Length of an IGMPv3 report without records (RFC 3376 §4.2).
pub const REPORT_V3_HEADER_LEN: usize = field::RECORDS;

/// Membership Query, all versions (RFC 3376 §4.1).
pub const TYPE_MEMBERSHIP_QUERY: u8 = 0x11;
/// IGMPv1 Membership Report (RFC 1112 Appendix I).
pub const TYPE_V1_REPORT: u8 = 0x12;
/// IGMPv2 Membership Report (RFC 2236 §2.1).
pub const TYPE_V2_REPORT: u8 = 0x16;
/// IGMPv2 Leave Group (RFC 2236 §2.1).
pub const TYPE_V2_LEAVE: u8 = 0x17;
/// IGMPv3 Membership Report (RFC 3376 §4.2).
pub const TYPE_V3_REPORT: u8 = 0x22;

/// 224.0.0.1, the destination of General Queries (RFC 3376 §4.1.12).
pub const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);
/// 224.0.0.2, the destination of IGMPv2 Leave Group messages (RFC 2236 §9).
pub const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);
/// 224.0.0.22, the destination of IGMPv3 reports (RFC 3376 §4.2.14).
pub const ALL_IGMPV3_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);

// ---------------------------------------------------------------------------------------------
// Floating-point time codes
// ---------------------------------------------------------------------------------------------

/// Decodes the floating-point code shared by IGMPv3 and MLDv2: below `1 << (mant_bits + 3)`
/// the code is the value itself; otherwise it is `1 | exp (3 bits) | mant (mant_bits bits)`
/// and the value is `(mant | 1 << mant_bits) << (exp + 3)` (RFC 3376 §4.1.1 with 4 mantissa
/// bits, RFC 3810 §5.1.3 with 12).
pub(crate) fn decode_float_code(code: u32, mant_bits: u32) -> u32 {
    let threshold = 1u32 << (mant_bits + 3);
    if code < threshold {
        return code;
    }
    let mant = code & ((1 << mant_bits) - 1);
    let exp = (code >> mant_bits) & 7;
    (mant | 1 << mant_bits) << (exp + 3)
}

/// The inverse of [`decode_float_code`]: the exact code for values below the threshold, else the
/// code of the largest representable value not above `value` (the mantissa is truncated, and
/// values beyond the range saturate at the all-ones code).
///
/// The smallest floating-point value, `(1 << mant_bits) << 3`, equals the threshold, so the two
/// forms join without a gap.
pub(crate) fn encode_float_code(value: u32, mant_bits: u32) -> u32 {
    let threshold = 1u32 << (mant_bits + 3);
    if value < threshold {
        return value;
    }
    // Position of the leading one; at least mant_bits + 3 here.
    let top = 31 - value.leading_zeros();
    let exp = top - mant_bits - 3;
    if exp > 7 {
        return (threshold << 1) - 1;
    }
    let mant = (value >> (exp + 3)) & ((1 << mant_bits) - 1);
    threshold | exp << mant_bits | mant
}

/// Decodes an 8-bit IGMPv3 Max Resp Code (units of 1/10 s, RFC 3376 §4.1.1) or a QQIC
/// (seconds, RFC 3376 §4.1.7; MLDv2 uses the same 8-bit QQIC, RFC 3810 §5.1.9).
///
/// A code below 128 is the value itself; otherwise `(mant | 0x10) << (exp + 3)`.
pub fn decode_code8(c: u8) -> u32 {
    decode_float_code(u32::from(c), 4)
}

/// Encodes a value as an 8-bit Max Resp Code or QQIC: exact when below 128, otherwise the largest
/// representable value not above `value` (saturating at 0xff, which decodes to 31744).
pub fn encode_code8(value: u32) -> u8 {
    encode_float_code(value, 4) as u8
}

// ---------------------------------------------------------------------------------------------
// Records shared with MLDv2
// ---------------------------------------------------------------------------------------------

/// The type of an IGMPv3 group record or MLDv2 multicast address record (RFC 3376 §4.2.12,
/// RFC 3810 §5.2.12). Unassigned values are kept in [`RecordType::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordType {
    /// 1, MODE_IS_INCLUDE: current state, include mode.
    ModeIsInclude,
    /// 2, MODE_IS_EXCLUDE: current state, exclude mode.
    ModeIsExclude,
    /// 3, CHANGE_TO_INCLUDE_MODE: filter mode changed to include.
    ChangeToIncludeMode,
    /// 4, CHANGE_TO_EXCLUDE_MODE: filter mode changed to exclude.
    ChangeToExcludeMode,
    /// 5, ALLOW_NEW_SOURCES: sources added (an SSM join).
    AllowNewSources,
    /// 6, BLOCK_OLD_SOURCES: sources removed (an SSM leave).
    BlockOldSources,
    /// Any other value. Only holds values outside 1–6 when built through `From<u8>`.
    Unknown(u8),
}

impl From<u8> for RecordType {
    fn from(value: u8) -> Self {
        match value {
            1 => RecordType::ModeIsInclude,
            2 => RecordType::ModeIsExclude,
            3 => RecordType::ChangeToIncludeMode,
            4 => RecordType::ChangeToExcludeMode,
            5 => RecordType::AllowNewSources,
            6 => RecordType::BlockOldSources,
            other => RecordType::Unknown(other),
        }
    }
}

impl From<RecordType> for u8 {
    fn from(value: RecordType) -> Self {
        match value {
            RecordType::ModeIsInclude => 1,
            RecordType::ModeIsExclude => 2,
            RecordType::ChangeToIncludeMode => 3,
            RecordType::ChangeToExcludeMode => 4,
            RecordType::AllowNewSources => 5,
            RecordType::BlockOldSources => 6,
            RecordType::Unknown(other) => other,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// An address family of membership records: [`Ipv4Addr`] for IGMPv3, [`Ipv6Addr`] for MLDv2.
/// Sealed; the methods are for this crate's codecs.
pub trait RecordAddr: sealed::Sealed + Copy + fmt::Debug + Eq + core::hash::Hash {
    /// Length of the address on the wire.
    const LEN: usize;
    /// Reads an address from a slice of exactly [`RecordAddr::LEN`] bytes (any other length
    /// yields the unspecified address; callers always pass exact chunks).
    fn read_from(bytes: &[u8]) -> Self;
    /// Writes the address into the first [`RecordAddr::LEN`] bytes of `out` (nothing if `out`
    /// is shorter; callers size it first).
    fn write_to(&self, out: &mut [u8]);
}

impl RecordAddr for Ipv4Addr {
    const LEN: usize = 4;
    fn read_from(bytes: &[u8]) -> Self {
        <[u8; 4]>::try_from(bytes).map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from)
    }
    fn write_to(&self, out: &mut [u8]) {
        if let Some(out) = out.get_mut(..Self::LEN) {
            out.copy_from_slice(&self.octets());
        }
    }
}

impl RecordAddr for Ipv6Addr {
    const LEN: usize = 16;
    fn read_from(bytes: &[u8]) -> Self {
        <[u8; 16]>::try_from(bytes).map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
    }
    fn write_to(&self, out: &mut [u8]) {
        if let Some(out) = out.get_mut(..Self::LEN) {
            out.copy_from_slice(&self.octets());
        }
    }
}

/// A zero-copy iterator over a list of source addresses (of a query or a record).
#[derive(Debug, Clone)]
pub struct Sources<'a, A> {
    chunks: core::slice::ChunksExact<'a, u8>,
    _addr: PhantomData<A>,
}

impl<'a, A: RecordAddr> Sources<'a, A> {
    /// Iterates over `bytes` in address-sized chunks (a partial trailing chunk is never read).
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Sources { chunks: bytes.chunks_exact(A::LEN), _addr: PhantomData }
    }
}

impl<A: RecordAddr> Iterator for Sources<'_, A> {
    type Item = A;

    fn next(&mut self) -> Option<A> {
        self.chunks.next().map(A::read_from)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl<A: RecordAddr> ExactSizeIterator for Sources<'_, A> {}
impl<A: RecordAddr> FusedIterator for Sources<'_, A> {}

/// A zero-copy view of one group record (IGMPv3, RFC 3376 §4.2.4) or multicast address record
/// (MLDv2, RFC 3810 §5.2.4): Record Type, Aux Data Len (32-bit words), Number of Sources,
/// Multicast Address, Source Addresses, Auxiliary Data. Its length has been checked, so every
/// accessor stays in bounds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a, A> {
    bytes: &'a [u8],
    _addr: PhantomData<A>,
}

/// A borrowed IGMPv3 group record.
pub type GroupRecordRef<'a> = RecordRef<'a, Ipv4Addr>;

impl<'a, A: RecordAddr> RecordRef<'a, A> {
    /// Length of the fixed part: type, aux data len, number of sources, multicast address.
    pub const HEADER_LEN: usize = 4 + A::LEN;

    /// Splits the first record off `buf`, checking that its sources and auxiliary data fit.
    pub(crate) fn split(buf: &'a [u8]) -> Result<(Self, &'a [u8])> {
        let (Some(&aux_words), Some(n)) = (buf.get(1), buf.get(2..4)) else {
            return Err(Error::Truncated);
        };
        if buf.len() < Self::HEADER_LEN {
            return Err(Error::Truncated);
        }
        let num_sources = usize::from(u16::from_be_bytes([n[0], n[1]]));
        let len = Self::HEADER_LEN + num_sources * A::LEN + usize::from(aux_words) * 4;
        if buf.len() < len {
            return Err(Error::Truncated);
        }
        let (bytes, rest) = buf.split_at(len);
        Ok((RecordRef { bytes, _addr: PhantomData }, rest))
    }

    /// The Record Type.
    pub fn record_type(&self) -> RecordType {
        RecordType::from(self.bytes[0])
    }

    /// The Aux Data Len field, in 32-bit words (RFC 3376 §4.2.6).
    pub fn aux_data_words(&self) -> u8 {
        self.bytes[1]
    }

    /// The Number of Sources field.
    pub fn num_sources(&self) -> u16 {
        read_u16(self.bytes, 2)
    }

    /// The Multicast Address.
    pub fn group(&self) -> A {
        A::read_from(&self.bytes[4..Self::HEADER_LEN])
    }

    /// The source addresses.
    pub fn sources(&self) -> Sources<'a, A> {
        Sources::new(&self.bytes[Self::HEADER_LEN..self.aux_start()])
    }

    /// The Auxiliary Data (IGMPv3 and MLDv2 define none; receivers ignore it).
    pub fn aux_data(&self) -> &'a [u8] {
        &self.bytes[self.aux_start()..]
    }

    /// The whole record.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Copies the record into an owned [`Record`].
    pub fn to_record(&self) -> Record<A> {
        Record {
            record_type: self.record_type(),
            group: self.group(),
            sources: self.sources().collect(),
            aux_data: self.aux_data().to_vec(),
        }
    }

    fn aux_start(&self) -> usize {
        Self::HEADER_LEN + usize::from(self.num_sources()) * A::LEN
    }
}

impl<A: RecordAddr> fmt::Debug for RecordRef<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRef")
            .field("record_type", &self.record_type())
            .field("group", &self.group())
            .field("sources", &self.sources().collect::<Vec<_>>())
            .field("aux_data", &self.aux_data())
            .finish()
    }
}

/// A zero-copy iterator over the records of an IGMPv3 or MLDv2 report. It yields
/// `Err(Error::Truncated)` once if a record (or the announced record count) runs past the
/// buffer, and then stops.
#[derive(Debug, Clone)]
pub struct Records<'a, A> {
    rest: &'a [u8],
    remaining: u16,
    failed: bool,
    _addr: PhantomData<A>,
}

/// The iterator over IGMPv3 group records.
pub type GroupRecords<'a> = Records<'a, Ipv4Addr>;

impl<'a, A: RecordAddr> Records<'a, A> {
    /// Walks `count` records starting at the beginning of `buf`.
    pub(crate) fn new(buf: &'a [u8], count: u16) -> Self {
        Records { rest: buf, remaining: count, failed: false, _addr: PhantomData }
    }

    /// The bytes not yet walked. Once the iterator is exhausted without error, this is the
    /// message's Additional Data (RFC 3376 §4.2.11, RFC 3810 §5.2.11).
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a, A: RecordAddr> Iterator for Records<'a, A> {
    type Item = Result<RecordRef<'a, A>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 || self.failed {
            return None;
        }
        match RecordRef::split(self.rest) {
            Ok((record, rest)) => {
                self.rest = rest;
                self.remaining -= 1;
                Some(Ok(record))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed { (0, Some(0)) } else { (0, Some(usize::from(self.remaining))) }
    }
}

impl<A: RecordAddr> FusedIterator for Records<'_, A> {}

/// An owned group record (IGMPv3) or multicast address record (MLDv2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record<A> {
    pub record_type: RecordType,
    /// The Multicast Address field.
    pub group: A,
    pub sources: Vec<A>,
    /// Auxiliary Data: a multiple of 4 bytes, at most 1020. IGMPv3 and MLDv2 define none and
    /// say senders must not include it (RFC 3376 §4.2.10); it is kept so a report re-emits as
    /// received.
    pub aux_data: Vec<u8>,
}

/// An owned IGMPv3 group record.
pub type GroupRecord = Record<Ipv4Addr>;

impl<A: RecordAddr> Record<A> {
    /// A record without auxiliary data.
    pub fn new(record_type: RecordType, group: A, sources: Vec<A>) -> Self {
        Record { record_type, group, sources, aux_data: Vec::new() }
    }

    /// Parses the first record of `buf` and returns it with the rest of the buffer.
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8])> {
        let (record, rest) = RecordRef::<A>::split(buf)?;
        Ok((record.to_record(), rest))
    }

    /// The encoded length of the record.
    pub fn buffer_len(&self) -> usize {
        RecordRef::<A>::HEADER_LEN + self.sources.len() * A::LEN + self.aux_data.len()
    }

    /// Writes the record at the start of `buf` and returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let num_sources = u16::try_from(self.sources.len()).map_err(|_| Error::BadLength)?;
        if !self.aux_data.len().is_multiple_of(4) || self.aux_data.len() > 255 * 4 {
            return Err(Error::Malformed("record aux data: whole 32-bit words, at most 1020 bytes"));
        }
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        let header = RecordRef::<A>::HEADER_LEN;
        let aux_start = header + self.sources.len() * A::LEN;
        buf[0] = self.record_type.into();
        buf[1] = (self.aux_data.len() / 4) as u8;
        write_u16(buf, 2, num_sources);
        self.group.write_to(&mut buf[4..header]);
        for (chunk, source) in buf[header..aux_start].chunks_exact_mut(A::LEN).zip(&self.sources) {
            source.write_to(chunk);
        }
        buf[aux_start..].copy_from_slice(&self.aux_data);
        Ok(len)
    }
}

/// The body of an IGMPv3 (RFC 3376 §4.2) or MLDv2 (RFC 3810 §5.2) report: everything after the
/// type, reserved byte and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Report<A> {
    /// The 16-bit Reserved field before the record count. Zero when sent; kept as received
    /// because RFC 9279 gives previously reserved bits a meaning (message extensions).
    pub reserved: u16,
    pub records: Vec<Record<A>>,
    /// Bytes after the last record. Receivers include them in the checksum and otherwise ignore
    /// them (RFC 3376 §4.2.11); RFC 9279 puts extensions here. Kept as received.
    pub additional_data: Vec<u8>,
}

/// An IGMPv3 report.
pub type ReportV3 = Report<Ipv4Addr>;

impl<A: RecordAddr> Report<A> {
    /// A report with these records, reserved bits clear and no additional data.
    pub fn new(records: Vec<Record<A>>) -> Self {
        Report { reserved: 0, records, additional_data: Vec::new() }
    }

    /// Length of the body (reserved, count, records, additional data).
    pub(crate) fn body_len(&self) -> usize {
        4 + self.records.iter().map(Record::buffer_len).sum::<usize>() + self.additional_data.len()
    }

    /// Parses a body: 2 bytes reserved, 2 bytes record count, records, additional data.
    pub(crate) fn parse_body(body: &[u8]) -> Result<Self> {
        let (Some(reserved), Some(count)) = (body.get(0..2), body.get(2..4)) else {
            return Err(Error::Truncated);
        };
        let reserved = u16::from_be_bytes([reserved[0], reserved[1]]);
        let count = u16::from_be_bytes([count[0], count[1]]);
        let list = body.get(4..).unwrap_or_default();
        // Never trust the count for the allocation: every record takes at least HEADER_LEN bytes.
        let capacity = usize::from(count).min(list.len() / RecordRef::<A>::HEADER_LEN);
        let mut records = Vec::with_capacity(capacity);
        let mut walker = Records::<A>::new(list, count);
        for record in walker.by_ref() {
            records.push(record?.to_record());
        }
        Ok(Report { reserved, records, additional_data: walker.remainder().to_vec() })
    }

    /// Writes the body at the start of `buf` and returns its length.
    pub(crate) fn emit_body(&self, buf: &mut [u8]) -> Result<usize> {
        let count = u16::try_from(self.records.len()).map_err(|_| Error::BadLength)?;
        let len = self.body_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        write_u16(buf, 0, self.reserved);
        write_u16(buf, 2, count);
        let mut at = 4;
        for record in &self.records {
            at += record.emit(&mut buf[at..])?;
        }
        buf[at..].copy_from_slice(&self.additional_data);
        Ok(len)
    }
}

/// Reads the Resv/S/QRV byte of an IGMPv3 or MLDv2 query: (resv, s, qrv).
pub(crate) fn parse_query_flags(byte: u8) -> (u8, bool, u8) {
    (byte >> 4, byte & 0x08 != 0, byte & 0x07)
}

/// Builds the Resv/S/QRV byte, rejecting values that do not fit their bits.
pub(crate) fn query_flags(resv: u8, suppress: bool, qrv: u8) -> Result<u8> {
    if qrv > 7 {
        return Err(Error::Malformed("QRV above 7"));
    }
    if resv > 15 {
        return Err(Error::Malformed("query Resv above 15"));
    }
    Ok(resv << 4 | u8::from(suppress) << 3 | qrv)
}

// ---------------------------------------------------------------------------------------------
// Packet
// ---------------------------------------------------------------------------------------------

/// A read/write view of an IGMP message (the whole IPv4 payload).
///
/// [`Packet::new_checked`] guarantees at least 8 bytes and, for an IGMPv3 query, that the
/// announced sources fit, so every accessor stays in bounds. Accessors of fields that a message
/// type does not have read as zero (or empty) rather than panic. IGMPv3 report records are
/// checked as they are walked ([`Packet::group_records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer and checks it with [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the message has the 8 bytes every IGMP message has and, for an IGMPv3 query
    /// (type 0x11, 12 bytes or more), that its Number of Sources fits.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.is_v3_query() && len < field::SOURCES + usize::from(self.num_sources()) * 4 {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The Type field.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The Max Resp Code of a query (the Reserved byte of a report).
    pub fn max_resp_code(&self) -> u8 {
        self.buffer.as_ref()[field::MAX_RESP]
    }

    /// The Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The Group Address of a query, IGMPv1/v2 report or leave.
    pub fn group_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::GROUP)
    }

    /// The version of a Membership Query by RFC 3376 §7.1: 8 bytes with Max Resp Code 0 is
    /// IGMPv1, 8 bytes otherwise IGMPv2, 12 bytes or more IGMPv3. `None` for other lengths
    /// (which must be ignored) and for other message types.
    pub fn query_version(&self) -> Option<u8> {
        if self.msg_type() != TYPE_MEMBERSHIP_QUERY {
            return None;
        }
        match self.buffer.as_ref().len() {
            HEADER_LEN if self.max_resp_code() == 0 => Some(1),
            HEADER_LEN => Some(2),
            len if len >= QUERY_V3_HEADER_LEN => Some(3),
            _ => None,
        }
    }

    fn is_v3_query(&self) -> bool {
        self.msg_type() == TYPE_MEMBERSHIP_QUERY && self.buffer.as_ref().len() >= QUERY_V3_HEADER_LEN
    }

    /// The IGMPv3 query's Resv/S/QRV byte (0 if this is not an IGMPv3 query).
    fn query_flags_byte(&self) -> u8 {
        if self.is_v3_query() { self.buffer.as_ref()[field::FLAGS] } else { 0 }
    }

    /// The 4 Resv bits of an IGMPv3 query (RFC 3376 §4.1.4).
    pub fn resv(&self) -> u8 {
        parse_query_flags(self.query_flags_byte()).0
    }

    /// The S flag (Suppress Router-Side Processing) of an IGMPv3 query (RFC 3376 §4.1.5).
    pub fn s_flag(&self) -> bool {
        parse_query_flags(self.query_flags_byte()).1
    }

    /// The QRV (Querier's Robustness Variable) of an IGMPv3 query (RFC 3376 §4.1.6).
    pub fn qrv(&self) -> u8 {
        parse_query_flags(self.query_flags_byte()).2
    }

    /// The QQIC (Querier's Query Interval Code) of an IGMPv3 query (RFC 3376 §4.1.7).
    pub fn qqic(&self) -> u8 {
        if self.is_v3_query() { self.buffer.as_ref()[field::QQIC] } else { 0 }
    }

    /// The Number of Sources of an IGMPv3 query (RFC 3376 §4.1.8).
    pub fn num_sources(&self) -> u16 {
        if self.is_v3_query() { read_u16(self.buffer.as_ref(), field::NUM_SOURCES) } else { 0 }
    }

    /// The source addresses of an IGMPv3 query (empty for other messages).
    pub fn sources(&self) -> Sources<'_, Ipv4Addr> {
        let data = self.buffer.as_ref();
        let end = field::SOURCES + usize::from(self.num_sources()) * 4;
        Sources::new(data.get(field::SOURCES..end).unwrap_or_default())
    }

    /// Bytes after the sources of an IGMPv3 query (RFC 3376 §4.1.10; empty for other messages).
    pub fn query_additional_data(&self) -> &[u8] {
        if !self.is_v3_query() {
            return &[];
        }
        let start = field::SOURCES + usize::from(self.num_sources()) * 4;
        self.buffer.as_ref().get(start..).unwrap_or_default()
    }

    /// The 16-bit Reserved field of an IGMPv3 report.
    pub fn report_reserved(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::REPORT_RESERVED)
    }

    /// The Number of Group Records of an IGMPv3 report (RFC 3376 §4.2.3).
    pub fn num_group_records(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NUM_RECORDS)
    }

    /// Walks the group records of an IGMPv3 report without allocating (empty for other
    /// message types). Each record is bounds-checked before it is yielded.
    pub fn group_records(&self) -> GroupRecords<'_> {
        let data = self.buffer.as_ref();
        if self.msg_type() != TYPE_V3_REPORT {
            return Records::new(&[], 0);
        }
        Records::new(data.get(field::RECORDS..).unwrap_or_default(), self.num_group_records())
    }

    /// Whether the checksum over the whole message verifies (RFC 3376 §4.1.2, §4.2.2).
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(checksum::data(self.buffer.as_ref()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes the checksum over the whole message and writes it (nothing if the buffer cannot
    /// hold the checksum field).
    pub fn fill_checksum(&mut self) {
        let data = self.buffer.as_mut();
        if data.len() < field::CHECKSUM + 2 {
            return;
        }
        write_u16(data, field::CHECKSUM, 0);
        let sum = checksum::finish(checksum::data(data));
        write_u16(data, field::CHECKSUM, sum);
    }
}

// ---------------------------------------------------------------------------------------------
// Repr
// ---------------------------------------------------------------------------------------------

/// An IGMPv3 Membership Query (RFC 3376 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryV3 {
    /// Max Resp Code, in units of 1/10 s, floating point from 128 (see [`decode_code8`]).
    pub max_resp_code: u8,
    /// Group Address: unspecified for a General Query.
    pub group: Ipv4Addr,
    /// S flag: Suppress Router-Side Processing (RFC 3376 §4.1.5).
    pub suppress: bool,
    /// Querier's Robustness Variable, 0–7 (RFC 3376 §4.1.6).
    pub qrv: u8,
    /// Querier's Query Interval Code, seconds, floating point from 128 (RFC 3376 §4.1.7).
    pub qqic: u8,
    pub sources: Vec<Ipv4Addr>,
    /// The 4 Resv bits, zero when sent (RFC 3376 §4.1.4); kept as received (RFC 9279 assigns
    /// a previously reserved bit).
    pub resv: u8,
    /// Bytes after the sources, covered by the checksum and otherwise ignored (RFC 3376
    /// §4.1.10). Kept as received.
    pub additional_data: Vec<u8>,
}

impl QueryV3 {
    /// A General Query: group 0, no sources, S clear.
    pub fn general(max_resp_code: u8, qrv: u8, qqic: u8) -> Self {
        QueryV3 {
            max_resp_code,
            group: Ipv4Addr::UNSPECIFIED,
            suppress: false,
            qrv,
            qqic,
            sources: Vec::new(),
            resv: 0,
            additional_data: Vec::new(),
        }
    }

    /// A Group-Specific (no sources) or Group-and-Source-Specific Query (RFC 3376 §4.1.9).
    pub fn specific(max_resp_code: u8, qrv: u8, qqic: u8, group: Ipv4Addr, sources: Vec<Ipv4Addr>) -> Self {
        QueryV3 { group, sources, ..QueryV3::general(max_resp_code, qrv, qqic) }
    }

    /// The Max Resp Time the code stands for (RFC 3376 §4.1.1).
    pub fn max_resp_time(&self) -> Duration {
        Duration::from_millis(u64::from(decode_code8(self.max_resp_code)) * 100)
    }

    /// The Querier's Query Interval the QQIC stands for (RFC 3376 §4.1.7).
    pub fn query_interval(&self) -> Duration {
        Duration::from_secs(u64::from(decode_code8(self.qqic)))
    }

    fn buffer_len(&self) -> usize {
        QUERY_V3_HEADER_LEN + self.sources.len() * 4 + self.additional_data.len()
    }
}

/// A parsed IGMP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Repr {
    /// IGMPv1 Membership Query: 8 bytes with Max Resp Code 0 (RFC 3376 §7.1). The group field
    /// is unused in IGMPv1 and normally zero.
    QueryV1 { group: Ipv4Addr },
    /// IGMPv2 Membership Query: 8 bytes, Max Resp Time (1/10 s) not zero (RFC 2236 §2.2).
    QueryV2 { max_resp_time: u8, group: Ipv4Addr },
    /// IGMPv3 Membership Query: 12 bytes or more (RFC 3376 §4.1).
    QueryV3(QueryV3),
    /// IGMPv1 Membership Report (type 0x12).
    ReportV1 { group: Ipv4Addr },
    /// IGMPv2 Membership Report (type 0x16).
    ReportV2 { group: Ipv4Addr },
    /// IGMPv2 Leave Group (type 0x17).
    LeaveV2 { group: Ipv4Addr },
    /// IGMPv3 Membership Report (type 0x22, RFC 3376 §4.2).
    ReportV3(ReportV3),
    /// Any other type (DVMRP, mtrace, …), kept whole: byte 1 and everything after the checksum.
    Unknown { kind: u8, code: u8, body: Vec<u8> },
}

impl Repr {
    /// Parses a checked message, verifying its checksum.
    ///
    /// IGMPv1/v2 messages longer than 8 bytes are accepted and the extra bytes ignored (RFC 2236
    /// §2.5); a query of 9 to 11 bytes is [`Error::BadLength`] (RFC 3376 §7.1 says to ignore it).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        let data = packet.as_bytes();
        let group = packet.group_addr();
        let repr = match packet.msg_type() {
            TYPE_MEMBERSHIP_QUERY => match packet.query_version() {
                Some(1) => Repr::QueryV1 { group },
                Some(2) => Repr::QueryV2 { max_resp_time: packet.max_resp_code(), group },
                Some(_) => Repr::QueryV3(QueryV3 {
                    max_resp_code: packet.max_resp_code(),
                    group,
                    suppress: packet.s_flag(),
                    qrv: packet.qrv(),
                    qqic: packet.qqic(),
                    sources: packet.sources().collect(),
                    resv: packet.resv(),
                    additional_data: packet.query_additional_data().to_vec(),
                }),
                None => return Err(Error::BadLength),
            },
            TYPE_V1_REPORT => Repr::ReportV1 { group },
            TYPE_V2_REPORT => Repr::ReportV2 { group },
            TYPE_V2_LEAVE => Repr::LeaveV2 { group },
            TYPE_V3_REPORT => Repr::ReportV3(Report::parse_body(data.get(field::GROUP..).unwrap_or_default())?),
            kind => Repr::Unknown {
                kind,
                code: packet.max_resp_code(),
                body: data.get(field::GROUP..).unwrap_or_default().to_vec(),
            },
        };
        Ok(repr)
    }

    /// The IGMP message type this representation emits.
    pub fn msg_type(&self) -> u8 {
        match self {
            Repr::QueryV1 { .. } | Repr::QueryV2 { .. } | Repr::QueryV3(_) => TYPE_MEMBERSHIP_QUERY,
            Repr::ReportV1 { .. } => TYPE_V1_REPORT,
            Repr::ReportV2 { .. } => TYPE_V2_REPORT,
            Repr::LeaveV2 { .. } => TYPE_V2_LEAVE,
            Repr::ReportV3(_) => TYPE_V3_REPORT,
            Repr::Unknown { kind, .. } => *kind,
        }
    }

    /// The encoded length of the message.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::QueryV3(query) => query.buffer_len(),
            Repr::ReportV3(report) => 4 + report.body_len(),
            Repr::Unknown { body, .. } => 4 + body.len(),
            _ => HEADER_LEN,
        }
    }

    /// Writes the message, checksum included, at the start of `buf` and returns its length.
    ///
    /// Rejects what would not parse back to the same value: an IGMPv2 query with Max Resp
    /// Time 0 (that is an IGMPv1 query), QRV above 7, more than 65535 sources or records, an
    /// `Unknown` with a known type or a body shorter than 4 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        buf[field::TYPE] = self.msg_type();
        buf[field::MAX_RESP] = 0;
        write_u16(buf, field::CHECKSUM, 0);
        match self {
            Repr::QueryV1 { group } | Repr::ReportV1 { group } | Repr::ReportV2 { group } | Repr::LeaveV2 { group } => {
                buf[field::GROUP..HEADER_LEN].copy_from_slice(&group.octets());
            }
            Repr::QueryV2 { max_resp_time, group } => {
                if *max_resp_time == 0 {
                    return Err(Error::Malformed("IGMPv2 query with Max Resp Time 0 (an IGMPv1 query)"));
                }
                buf[field::MAX_RESP] = *max_resp_time;
                buf[field::GROUP..HEADER_LEN].copy_from_slice(&group.octets());
            }
            Repr::QueryV3(query) => {
                let num_sources = u16::try_from(query.sources.len()).map_err(|_| Error::BadLength)?;
                buf[field::MAX_RESP] = query.max_resp_code;
                buf[field::GROUP..HEADER_LEN].copy_from_slice(&query.group.octets());
                buf[field::FLAGS] = query_flags(query.resv, query.suppress, query.qrv)?;
                buf[field::QQIC] = query.qqic;
                write_u16(buf, field::NUM_SOURCES, num_sources);
                let end = field::SOURCES + query.sources.len() * 4;
                for (chunk, source) in buf[field::SOURCES..end].chunks_exact_mut(4).zip(&query.sources) {
                    chunk.copy_from_slice(&source.octets());
                }
                buf[end..].copy_from_slice(&query.additional_data);
            }
            Repr::ReportV3(report) => {
                report.emit_body(&mut buf[field::GROUP..])?;
            }
            Repr::Unknown { kind, code, body } => {
                if matches!(
                    *kind,
                    TYPE_MEMBERSHIP_QUERY | TYPE_V1_REPORT | TYPE_V2_REPORT | TYPE_V2_LEAVE | TYPE_V3_REPORT
                ) {
                    return Err(Error::Malformed("Unknown IGMP message with a known type"));
                }
                if body.len() < HEADER_LEN - 4 {
                    return Err(Error::BadLength);
                }
                buf[field::MAX_RESP] = *code;
                buf[field::GROUP..].copy_from_slice(body);
            }
        }
        Packet::new_unchecked(&mut *buf).fill_checksum();
        Ok(len)
    }

    /// The IPv4 destination this message is sent to: 224.0.0.1 for General Queries, the group
    /// for group-specific queries (RFC 3376 §4.1.12) and IGMPv1/v2 reports (RFC 2236 §9),
    /// 224.0.0.2 for a Leave (RFC 2236 §9), 224.0.0.22 for IGMPv3 reports (RFC 3376 §4.2.14).
    /// `None` for unknown types.
    pub fn destination(&self) -> Option<Ipv4Addr> {
        let query_dst = |group: &Ipv4Addr| if group.is_unspecified() { ALL_SYSTEMS } else { *group };
        match self {
            Repr::QueryV1 { group } | Repr::QueryV2 { group, .. } => Some(query_dst(group)),
            Repr::QueryV3(query) => Some(query_dst(&query.group)),
            Repr::ReportV1 { group } | Repr::ReportV2 { group } => Some(*group),
            Repr::LeaveV2 { .. } => Some(ALL_ROUTERS),
            Repr::ReportV3(_) => Some(ALL_IGMPV3_ROUTERS),
            Repr::Unknown { .. } => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Whole datagrams
// ---------------------------------------------------------------------------------------------

/// Builds a complete IPv4 datagram carrying `repr` from `src` to [`Repr::destination`], as AMT
/// (RFC 7450 §5.1.4, §5.1.5) encapsulates it and as hosts send it (RFC 3376 §4): TTL 1, TOS 0xc0,
/// a Router Alert option ([`ipv4::ROUTER_ALERT`]), Identification 0 and DF clear. `src` may be
/// 0.0.0.0 (RFC 3376 §4.2.13).
///
/// Identification 0 and DF clear match the protocols.md AMT samples byte for byte. (Linux sets
/// DF on its own IGMP packets; nothing in RFC 3376 asks for it, and an 8- to 1480-byte message
/// sent with TTL 1 is never fragmented.)
pub fn datagram(src: Ipv4Addr, repr: &Repr) -> Result<Vec<u8>> {
    let dst = repr.destination().ok_or(Error::Malformed("IGMP message type without a defined destination"))?;
    datagram_to(src, dst, repr)
}

/// Like [`datagram`], to an explicit destination (for example a unicast query).
pub fn datagram_to(src: Ipv4Addr, dst: Ipv4Addr, repr: &Repr) -> Result<Vec<u8>> {
    let mut ip = ipv4::Repr::new(src, dst, IpProtocol::IGMP, 1, repr.buffer_len());
    ip.tos = 0xc0;
    ip.options = ipv4::ROUTER_ALERT.to_vec();
    let mut out = vec![0; ip.buffer_len()];
    let header_len = ip.emit(&mut out)?;
    repr.emit(out.get_mut(header_len..).ok_or(Error::BufferTooSmall)?)?;
    Ok(out)
}

/// Parses a complete IPv4 datagram carrying IGMP: the IPv4 header checksum, protocol 2, no
/// fragmentation, then the IGMP message and its checksum. Any source is accepted, 0.0.0.0
/// included (RFC 3376 §4.2.13); whether a Router Alert is present is left to the caller
/// ([`ipv4::Repr::has_router_alert`]). Trailing link-layer padding is ignored.
pub fn parse_datagram(bytes: &[u8]) -> Result<(ipv4::Repr, Repr)> {
    let packet = ipv4::Packet::new_checked(bytes)?;
    let ip = ipv4::Repr::parse(&packet)?;
    if ip.protocol != IpProtocol::IGMP {
        return Err(Error::Malformed("IP protocol is not IGMP"));
    }
    if ip.more_frags || ip.frag_offset != 0 {
        return Err(Error::Malformed("fragmented IGMP message"));
    }
    let igmp = Packet::new_checked(packet.payload())?;
    let repr = Repr::parse(&igmp)?;
    Ok((ip, repr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The IGMPv3 General Query inside the AMT Membership Query sample (protocols.md §A1):
    /// MRC 0x64 (10 s), group 0, S clear, QRV 2, QQIC 125, no sources, checksum 0xec1e.
    const QUERY: &str = "1164ec1e00000000027d0000";
    /// Its IPv4 envelope: IHL 6, TOS 0xc0, TTL 1, 198.51.100.1 → 224.0.0.1, Router Alert.
    const QUERY_IP: &str = "46c0002400000000010219dec6336401e000000194040000";
    /// The IGMPv3 report inside the AMT Membership Update sample (protocols.md §A1, §A4): one
    /// ALLOW_NEW_SOURCES record for 232.1.1.1 with source 23.212.185.4, checksum 0x1f22.
    const REPORT: &str = "22001f22000000010500 0001e801010117d4b904";
    /// Its IPv4 envelope: 0.0.0.0 → 224.0.0.22, otherwise as the query's.
    const REPORT_IP: &str = "46c0002c00000000010243f600000000e000001694040000";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn emit(repr: &Repr) -> Vec<u8> {
        let mut out = vec![0; repr.buffer_len()];
        assert_eq!(repr.emit(&mut out).unwrap(), out.len());
        out
    }

    fn parse(bytes: &[u8]) -> Result<Repr> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
        Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes
    }

    fn g(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn code8_matches_rfc3376() {
        // Below 128 the code is the value (RFC 3376 §4.1.1).
        for c in 0..128u8 {
            assert_eq!(decode_code8(c), u32::from(c));
            assert_eq!(encode_code8(u32::from(c)), c);
        }
        // 0x80: exp 0, mant 0 → 16 << 3 = 128; 0xff: exp 7, mant 15 → 31 << 10 = 31744.
        assert_eq!(decode_code8(0x80), 128);
        assert_eq!(decode_code8(0xff), 31744);
        // RFC 6636 §4.2's example: 0b1000_1001 (exp 0, mant 9) is 200, i.e. 20.0 s.
        assert_eq!(decode_code8(0b1000_1001), 200);
        assert_eq!(encode_code8(200), 0b1000_1001);
        // Not representable: round down to the largest code not above the value.
        assert_eq!(encode_code8(201), 0b1000_1001);
        assert_eq!(encode_code8(207), 0b1000_1001);
        assert_eq!(encode_code8(208), 0b1000_1010);
        assert_eq!(encode_code8(31744), 0xff);
        assert_eq!(encode_code8(u32::MAX), 0xff);
    }

    #[test]
    fn code8_encode_is_largest_not_above() {
        // Exhaustive over the range: the encoded code decodes to ≤ value, and the next code
        // up (if any) decodes to > value.
        for value in 0..40_000u32 {
            let c = encode_code8(value);
            assert!(decode_code8(c) <= value, "{value}");
            if c < 0xff {
                assert!(decode_code8(c + 1) > value, "{value}");
            }
        }
        for c in 0..=255u8 {
            assert_eq!(encode_code8(decode_code8(c)), c);
        }
    }

    #[test]
    fn parses_query_sample() {
        let bytes = unhex(QUERY);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), TYPE_MEMBERSHIP_QUERY);
        assert_eq!(packet.query_version(), Some(3));
        assert_eq!(packet.max_resp_code(), 0x64);
        assert_eq!(packet.checksum(), 0xec1e);
        assert!(packet.verify_checksum());
        assert_eq!(packet.group_addr(), Ipv4Addr::UNSPECIFIED);
        assert!(!packet.s_flag());
        assert_eq!(packet.qrv(), 2);
        assert_eq!(packet.qqic(), 125);
        assert_eq!(packet.num_sources(), 0);
        assert_eq!(packet.sources().count(), 0);
        let Repr::QueryV3(query) = parse(&bytes).unwrap() else { panic!("not a v3 query") };
        assert_eq!(query, QueryV3::general(0x64, 2, 125));
        assert_eq!(query.max_resp_time(), Duration::from_secs(10));
        assert_eq!(query.query_interval(), Duration::from_secs(125));
        assert_eq!(emit(&Repr::QueryV3(query)), bytes);
    }

    #[test]
    fn parses_report_sample() {
        let bytes = unhex(REPORT);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), TYPE_V3_REPORT);
        assert_eq!(packet.checksum(), 0x1f22);
        assert!(packet.verify_checksum());
        assert_eq!(packet.num_group_records(), 1);
        let records: Vec<_> = packet.group_records().collect::<Result<_>>().unwrap();
        assert_eq!(records.len(), 1);
        let record = records[0];
        assert_eq!(record.record_type(), RecordType::AllowNewSources);
        assert_eq!(record.aux_data_words(), 0);
        assert_eq!(record.num_sources(), 1);
        assert_eq!(record.group(), g("232.1.1.1"));
        assert_eq!(record.sources().collect::<Vec<_>>(), [g("23.212.185.4")]);
        assert!(record.aux_data().is_empty());
        let repr = parse(&bytes).unwrap();
        let expected = Repr::ReportV3(Report::new(vec![Record::new(
            RecordType::AllowNewSources,
            g("232.1.1.1"),
            vec![g("23.212.185.4")],
        )]));
        assert_eq!(repr, expected);
        assert_eq!(emit(&repr), bytes);
    }

    #[test]
    fn datagram_reproduces_amt_samples() {
        let query = Repr::QueryV3(QueryV3::general(0x64, 2, 125));
        let bytes = datagram(g("198.51.100.1"), &query).unwrap();
        assert_eq!(hex::encode(&bytes), format!("{QUERY_IP}{QUERY}"));

        let report = Repr::ReportV3(Report::new(vec![Record::new(
            RecordType::AllowNewSources,
            g("232.1.1.1"),
            vec![g("23.212.185.4")],
        )]));
        let bytes = datagram(Ipv4Addr::UNSPECIFIED, &report).unwrap();
        assert_eq!(hex::encode(&bytes), format!("{REPORT_IP}{}", REPORT.replace(' ', "")));
    }

    #[test]
    fn parse_datagram_accepts_zero_source() {
        let bytes = unhex(&format!("{REPORT_IP}{REPORT}"));
        let (ip, repr) = parse_datagram(&bytes).unwrap();
        assert_eq!(ip.src_addr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(ip.dst_addr, ALL_IGMPV3_ROUTERS);
        assert_eq!(ip.ttl, 1);
        assert_eq!(ip.tos, 0xc0);
        assert!(ip.has_router_alert());
        assert_eq!(repr, parse(&unhex(REPORT)).unwrap());

        let bytes = unhex(&format!("{QUERY_IP}{QUERY}"));
        let (ip, repr) = parse_datagram(&bytes).unwrap();
        assert_eq!(ip.src_addr, g("198.51.100.1"));
        assert_eq!(ip.dst_addr, ALL_SYSTEMS);
        assert_eq!(repr, Repr::QueryV3(QueryV3::general(0x64, 2, 125)));

        // Link-layer padding after Total Length is ignored.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse_datagram(&padded).unwrap().1, repr);
    }

    #[test]
    fn parse_datagram_rejections() {
        let bytes = unhex(&format!("{QUERY_IP}{QUERY}"));
        // Not IGMP: protocol UDP (header checksum fixed up).
        let mut ip = ipv4::Repr::parse(&ipv4::Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        ip.protocol = IpProtocol::UDP;
        let udp = ip.datagram(&unhex(QUERY)).unwrap();
        assert_eq!(parse_datagram(&udp), Err(Error::Malformed("IP protocol is not IGMP")));
        // A fragment.
        ip.protocol = IpProtocol::IGMP;
        ip.more_frags = true;
        let frag = ip.datagram(&unhex(QUERY)).unwrap();
        assert_eq!(parse_datagram(&frag), Err(Error::Malformed("fragmented IGMP message")));
        // Bad IGMP checksum, bad IP checksum, truncated, IPv6.
        let mut bad = bytes.clone();
        bad[26] ^= 1;
        assert_eq!(parse_datagram(&bad), Err(Error::BadChecksum));
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert_eq!(parse_datagram(&bad), Err(Error::BadChecksum));
        assert_eq!(parse_datagram(&bytes[..30]), Err(Error::Truncated));
        let mut v6 = bytes.clone();
        v6[0] = 0x66;
        assert_eq!(parse_datagram(&v6), Err(Error::BadVersion(6)));
    }

    #[test]
    fn destinations() {
        let group = g("232.1.1.1");
        let src = g("192.0.2.1");
        let cases = [
            (Repr::QueryV1 { group: Ipv4Addr::UNSPECIFIED }, ALL_SYSTEMS),
            (Repr::QueryV2 { max_resp_time: 100, group: Ipv4Addr::UNSPECIFIED }, ALL_SYSTEMS),
            (Repr::QueryV2 { max_resp_time: 10, group }, group),
            (Repr::QueryV3(QueryV3::general(100, 2, 125)), ALL_SYSTEMS),
            (Repr::QueryV3(QueryV3::specific(10, 2, 125, group, vec![src])), group),
            (Repr::ReportV1 { group }, group),
            (Repr::ReportV2 { group }, group),
            (Repr::LeaveV2 { group }, ALL_ROUTERS),
            (Repr::ReportV3(Report::new(vec![])), ALL_IGMPV3_ROUTERS),
        ];
        for (repr, dst) in cases {
            let bytes = datagram(src, &repr).unwrap();
            let (ip, parsed) = parse_datagram(&bytes).unwrap();
            assert_eq!(ip.dst_addr, dst, "{repr:?}");
            assert_eq!(ip.ttl, 1);
            assert_eq!(ip.tos, 0xc0);
            assert!(ip.has_router_alert());
            assert_eq!(parsed, repr);
        }
        let unknown = Repr::Unknown { kind: 0x13, code: 0, body: vec![0; 4] };
        assert!(datagram(src, &unknown).is_err());
        assert!(datagram_to(src, ALL_SYSTEMS, &unknown).is_ok());
    }

    #[test]
    fn v1_v2_messages() {
        // IGMPv2 report for 239.1.2.3 (RFC 2236 §2): type 0x16, MRT 0.
        let report = with_checksum(unhex("16000000ef010203"));
        assert_eq!(parse(&report).unwrap(), Repr::ReportV2 { group: g("239.1.2.3") });
        let leave = with_checksum(unhex("17000000ef010203"));
        assert_eq!(parse(&leave).unwrap(), Repr::LeaveV2 { group: g("239.1.2.3") });
        let v1 = with_checksum(unhex("12000000ef010203"));
        assert_eq!(parse(&v1).unwrap(), Repr::ReportV1 { group: g("239.1.2.3") });
        // Query version by length and MRC (RFC 3376 §7.1).
        let q1 = with_checksum(unhex("1100000000000000"));
        assert_eq!(parse(&q1).unwrap(), Repr::QueryV1 { group: Ipv4Addr::UNSPECIFIED });
        let q2 = with_checksum(unhex("1164000000000000"));
        assert_eq!(parse(&q2).unwrap(), Repr::QueryV2 { max_resp_time: 100, group: Ipv4Addr::UNSPECIFIED });
        // Extra bytes after an IGMPv2 report are ignored (RFC 2236 §2.5) but checksummed.
        let long = with_checksum(unhex("16000000ef010203deadbeef"));
        assert_eq!(parse(&long).unwrap(), Repr::ReportV2 { group: g("239.1.2.3") });
        for bytes in [report, leave, v1, q1, q2] {
            assert_eq!(emit(&parse(&bytes).unwrap()), bytes);
        }
    }

    #[test]
    fn unknown_types_are_kept() {
        // A DVMRP (0x13) message with code 7 and 8 body bytes.
        let bytes = with_checksum(unhex("1307000000010203aabbccdd"));
        let repr = parse(&bytes).unwrap();
        assert_eq!(repr, Repr::Unknown { kind: 0x13, code: 7, body: unhex("00010203aabbccdd") });
        assert_eq!(emit(&repr), bytes);
        let mut bad = bytes.clone();
        bad[5] ^= 1;
        assert_eq!(parse(&bad), Err(Error::BadChecksum));
        // Unknown record types, reserved bits, aux data and additional data survive too.
        let report =
            with_checksum(unhex("2200 0000 8001 0002 09 01 0001 e8010101 17d4b904 11223344 c0 00 0000 ffee0000 abcd"));
        let Repr::ReportV3(parsed) = parse(&report).unwrap() else { panic!("not a v3 report") };
        assert_eq!(parsed.reserved, 0x8001);
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.records[0].record_type, RecordType::Unknown(9));
        assert_eq!(parsed.records[0].aux_data, unhex("11223344"));
        assert_eq!(parsed.records[1], Record::new(RecordType::Unknown(0xc0), g("255.238.0.0"), vec![]));
        assert_eq!(parsed.additional_data, unhex("abcd"));
        assert_eq!(emit(&Repr::ReportV3(parsed)), report);
        let query = with_checksum(unhex("11 64 0000 e8010101 fa 7d 0001 17d4b904 0102"));
        let Repr::QueryV3(q) = parse(&query).unwrap() else { panic!("not a v3 query") };
        assert_eq!((q.resv, q.suppress, q.qrv, q.qqic), (0xf, true, 2, 125));
        assert_eq!(q.additional_data, unhex("0102"));
        assert_eq!(emit(&Repr::QueryV3(q)), query);
    }

    #[test]
    fn rejections() {
        // Every truncation of every sample fails, and never panics.
        for sample in [QUERY, REPORT] {
            let bytes = unhex(sample);
            for len in 0..bytes.len() {
                let err = parse(&bytes[..len]).unwrap_err();
                if len < HEADER_LEN {
                    assert_eq!(err, Error::Truncated, "{sample} at {len}");
                }
            }
            // Truncations with a fixed-up checksum fail for the right reason.
            for len in HEADER_LEN..bytes.len() {
                let cut = with_checksum(bytes[..len].to_vec());
                let result = parse(&cut);
                if sample == QUERY && len == HEADER_LEN {
                    // The first 8 bytes of a v3 query (MRC 0x64) are a valid IGMPv2 query.
                    assert_eq!(result, Ok(Repr::QueryV2 { max_resp_time: 0x64, group: Ipv4Addr::UNSPECIFIED }));
                } else if sample == QUERY {
                    // 9 to 11 bytes: neither v1/v2 nor v3 (RFC 3376 §7.1).
                    assert_eq!(result, Err(Error::BadLength), "{sample} at {len}");
                } else {
                    assert_eq!(result, Err(Error::Truncated), "{sample} at {len}");
                }
            }
        }
        // Bad checksum.
        let mut bytes = unhex(QUERY);
        bytes[2] ^= 0x80;
        assert_eq!(parse(&bytes), Err(Error::BadChecksum));
        // A v3 query announcing more sources than it carries: rejected by check_len.
        let bytes = with_checksum(unhex("1164000000000000027d0002 17d4b904"));
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap_err(), Error::Truncated);
        // A report with a huge record count: Truncated, and no huge allocation.
        let bytes = with_checksum(unhex("22000000 0000 ffff 05000001e801010117d4b904"));
        assert_eq!(parse(&bytes), Err(Error::Truncated));
        // A record whose aux data runs past the end.
        let bytes = with_checksum(unhex("22000000 0000 0001 05 ff 0001 e8010101 17d4b904"));
        assert_eq!(parse(&bytes), Err(Error::Truncated));
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let mut walk = packet.group_records();
        assert_eq!(walk.next(), Some(Err(Error::Truncated)));
        assert_eq!(walk.next(), None);
    }

    #[test]
    fn emit_rejections() {
        let mut big = [0u8; 64];
        assert!(Repr::QueryV2 { max_resp_time: 0, group: Ipv4Addr::UNSPECIFIED }.emit(&mut big).is_err());
        let mut q = QueryV3::general(1, 8, 1);
        assert_eq!(Repr::QueryV3(q.clone()).emit(&mut big), Err(Error::Malformed("QRV above 7")));
        q.qrv = 2;
        q.resv = 16;
        assert!(Repr::QueryV3(q).emit(&mut big).is_err());
        let known = Repr::Unknown { kind: TYPE_V3_REPORT, code: 0, body: vec![0; 4] };
        assert!(known.emit(&mut big).is_err());
        let short = Repr::Unknown { kind: 0x30, code: 0, body: vec![0; 3] };
        assert_eq!(short.emit(&mut big), Err(Error::BadLength));
        let mut record = Record::new(RecordType::ModeIsInclude, g("232.1.1.1"), vec![]);
        record.aux_data = vec![1, 2, 3];
        assert!(Repr::ReportV3(Report::new(vec![record])).emit(&mut big).is_err());
        let report = Repr::ReportV3(Report::new(vec![Record::new(RecordType::ModeIsInclude, g("232.1.1.1"), vec![])]));
        assert_eq!(report.emit(&mut big[..11]), Err(Error::BufferTooSmall));
        let sources = vec![Ipv4Addr::UNSPECIFIED; 65536];
        let mut huge = vec![0u8; 12 + 4 * 65536];
        let query = Repr::QueryV3(QueryV3::specific(1, 2, 3, g("232.1.1.1"), sources));
        assert_eq!(query.emit(&mut huge), Err(Error::BadLength));
    }

    #[test]
    fn snapshot_samples() {
        insta::assert_debug_snapshot!("query_sample", parse(&unhex(QUERY)).unwrap());
        insta::assert_debug_snapshot!("report_sample", parse(&unhex(REPORT)).unwrap());
    }

    fn addr4() -> impl Strategy<Value = Ipv4Addr> {
        any::<[u8; 4]>().prop_map(Ipv4Addr::from)
    }

    fn record() -> impl Strategy<Value = GroupRecord> {
        (
            any::<u8>().prop_map(RecordType::from),
            addr4(),
            prop::collection::vec(addr4(), 0..5),
            prop::collection::vec(any::<u8>(), 0..3).prop_map(|w| vec![0xa5; w.len() * 4]),
        )
            .prop_map(|(record_type, group, sources, aux_data)| Record {
                record_type,
                group,
                sources,
                aux_data,
            })
    }

    fn repr() -> impl Strategy<Value = Repr> {
        let known = [TYPE_MEMBERSHIP_QUERY, TYPE_V1_REPORT, TYPE_V2_REPORT, TYPE_V2_LEAVE, TYPE_V3_REPORT];
        prop_oneof![
            addr4().prop_map(|group| Repr::QueryV1 { group }),
            (1..=255u8, addr4()).prop_map(|(max_resp_time, group)| Repr::QueryV2 { max_resp_time, group }),
            (
                any::<u8>(),
                addr4(),
                any::<bool>(),
                0..8u8,
                any::<u8>(),
                prop::collection::vec(addr4(), 0..5),
                0..16u8,
                prop::collection::vec(any::<u8>(), 0..6),
            )
                .prop_map(|(max_resp_code, group, suppress, qrv, qqic, sources, resv, additional_data)| {
                    Repr::QueryV3(QueryV3 { max_resp_code, group, suppress, qrv, qqic, sources, resv, additional_data })
                }),
            addr4().prop_map(|group| Repr::ReportV1 { group }),
            addr4().prop_map(|group| Repr::ReportV2 { group }),
            addr4().prop_map(|group| Repr::LeaveV2 { group }),
            (any::<u16>(), prop::collection::vec(record(), 0..4), prop::collection::vec(any::<u8>(), 0..6)).prop_map(
                |(reserved, records, additional_data)| Repr::ReportV3(Report { reserved, records, additional_data })
            ),
            (
                any::<u8>().prop_filter("unknown type", move |k| !known.contains(k)),
                any::<u8>(),
                prop::collection::vec(any::<u8>(), 4..12)
            )
                .prop_map(|(kind, code, body)| Repr::Unknown { kind, code, body }),
        ]
    }

    /// Arbitrary bytes, biased towards plausible IGMP headers.
    fn igmp_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(0x11u8), Just(0x12), Just(0x16), Just(0x17), Just(0x22), any::<u8>()],
            prop::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
        )
            .prop_map(|(kind, mut rest, fix)| {
                rest.insert(0, kind);
                if fix && rest.len() >= 4 {
                    // Small counts make it past the length checks more often.
                    if rest.len() > 7 && kind == 0x22 {
                        rest[6] = 0;
                        rest[7] %= 4;
                    }
                    if rest.len() > 11 && kind == 0x11 {
                        rest[10] = 0;
                        rest[11] %= 4;
                    }
                    Packet::new_unchecked(&mut rest[..]).fill_checksum();
                }
                rest
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in igmp_bytes()) {
            let packet = Packet::new_unchecked(&bytes[..]);
            let _ = packet.check_len();
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = (packet.msg_type(), packet.max_resp_code(), packet.checksum(), packet.group_addr());
                let _ = (packet.query_version(), packet.resv(), packet.s_flag(), packet.qrv(), packet.qqic());
                let _ = (packet.num_sources(), packet.sources().count(), packet.query_additional_data());
                let _ = (packet.report_reserved(), packet.num_group_records(), packet.verify_checksum());
                let mut walk = packet.group_records();
                for record in walk.by_ref() {
                    let Ok(record) = record else { break };
                    let _ = (record.record_type(), record.aux_data_words(), record.num_sources(), record.group());
                    let _ = (record.sources().count(), record.aux_data(), record.as_bytes(), record.to_record());
                    let _ = format!("{record:?}");
                }
                let _ = walk.remainder();
                let _ = Repr::parse(&packet);
            }
            let _ = parse_datagram(&bytes);
            let _ = Record::<Ipv4Addr>::parse(&bytes);
        }

        #[test]
        fn emit_then_parse(repr in repr()) {
            let bytes = emit(&repr);
            prop_assert_eq!(parse(&bytes).unwrap(), repr.clone());
            if repr.destination().is_some() {
                let dgram = datagram(Ipv4Addr::new(192, 0, 2, 9), &repr).unwrap();
                prop_assert_eq!(parse_datagram(&dgram).unwrap().1, repr);
            }
        }

        #[test]
        fn parse_then_emit(bytes in igmp_bytes()) {
            if let Ok(repr) = parse(&bytes) {
                let again = emit(&repr);
                prop_assert_eq!(parse(&again).unwrap(), repr.clone());
                // IGMPv3 messages and unknown types re-emit byte for byte (only v1/v2 drop
                // trailing bytes and the unused byte 1 of reports).
                if matches!(repr, Repr::QueryV3(_) | Repr::Unknown { .. })
                    || (matches!(repr, Repr::ReportV3(_)) && bytes[1] == 0)
                {
                    prop_assert_eq!(again, bytes);
                }
            }
        }

        #[test]
        fn code8_roundtrip(value in any::<u32>()) {
            let c = encode_code8(value);
            prop_assert!(decode_code8(c) <= value);
        }
    }
}
