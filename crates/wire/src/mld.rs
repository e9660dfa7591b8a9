//! MLD (RFC 3810 MLDv2), with MLDv1 (RFC 2710) messages recognised. MLD messages are ICMPv6
//! messages (RFC 4443), so their checksum covers the IPv6 pseudo-header (RFC 8200 §8.1, next
//! header 58) and [`Repr::parse`] and [`Repr::emit`] take the source and destination addresses.
//!
//! Address records share their layout, record types and iterators with IGMPv3 group records:
//! [`AddressRecord`], [`AddressRecordRef`], [`AddressRecords`] and [`ReportV2`] are the
//! [`igmp`] generics at [`Ipv6Addr`], and [`RecordType`] is [`igmp::RecordType`].
//!
//! AMT (RFC 7450 §5.1.4, §5.1.5) carries MLD as complete IPv6 packets (fixed header, Hop-by-Hop
//! header with Router Alert, MLD), so [`datagram`] and [`parse_datagram`] handle that envelope.
//!
//! RFC 3810 is obsoleted by RFC 9777 (MLDv2 as STD 101), which keeps the wire format.

use std::net::Ipv6Addr;
use std::time::Duration;

use crate::checksum;
use crate::igmp::{self, Records, Report, Sources, decode_float_code, encode_float_code};
use crate::ip::{IpProtocol, read_ipv6, read_u16, write_u16};
use crate::ipv6;
use crate::{Error, Result};

pub use crate::igmp::RecordType;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    /// Maximum Response Code (v2 query) or Maximum Response Delay (v1 query), 16 bits.
    pub const MAX_RESP: usize = 4;
    /// MLDv2 report: Reserved (16 bits) then Nr of Mcast Address Records (RFC 3810 §5.2).
    pub const REPORT_RESERVED: usize = 4;
    pub const NUM_RECORDS: usize = 6;
    pub const RECORDS: usize = 8;
    /// Multicast Address of queries and MLDv1 reports and dones.
    pub const MCAST_ADDR: usize = 8;
    /// MLDv2 query: Resv (4 bits) | S (1 bit) | QRV (3 bits).
    pub const FLAGS: usize = 24;
    pub const QQIC: usize = 25;
    pub const NUM_SOURCES: usize = 26;
    pub const SOURCES: usize = 28;
}

/// The shortest message this codec accepts: the 4-byte ICMPv6 header and 4 more bytes, which
/// every ICMPv6 message type has. It is also the length of an MLDv2 report without records.
pub const MIN_LEN: usize = 8;
/// Length of an MLDv1 message (RFC 2710 §3), and of the part of a query common to v1 and v2.
pub const V1_LEN: usize = 24;
/// Length of an MLDv2 query without sources (RFC 3810 §5.1).
pub const QUERY_V2_HEADER_LEN: usize = field::SOURCES;

/// Multicast Listener Query, v1 and v2 (RFC 3810 §5.1).
pub const TYPE_QUERY: u8 = 130;
/// MLDv1 Multicast Listener Report (RFC 2710 §3).
pub const TYPE_V1_REPORT: u8 = 131;
/// MLDv1 Multicast Listener Done (RFC 2710 §3).
pub const TYPE_V1_DONE: u8 = 132;
/// Version 2 Multicast Listener Report (RFC 3810 §5.2).
pub const TYPE_V2_REPORT: u8 = 143;

/// ff02::1, the destination of General Queries.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, the destination of MLDv1 Done messages (RFC 2710, message destinations).
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// ff02::16, the destination of MLDv2 reports (RFC 3810 §5.2.14).
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

/// An owned MLDv2 multicast address record (RFC 3810 §5.2.4).
pub type AddressRecord = igmp::Record<Ipv6Addr>;
/// A borrowed MLDv2 multicast address record.
pub type AddressRecordRef<'a> = igmp::RecordRef<'a, Ipv6Addr>;
/// The zero-copy iterator over the records of an MLDv2 report.
pub type AddressRecords<'a> = Records<'a, Ipv6Addr>;
/// An MLDv2 report body: reserved field, records, additional data (RFC 3810 §5.2).
pub type ReportV2 = Report<Ipv6Addr>;

/// Decodes a 16-bit MLDv2 Maximum Response Code into milliseconds (RFC 3810 §5.1.3): a code
/// below 32768 is the value itself, otherwise `(mant | 0x1000) << (exp + 3)` with a 3-bit
/// exponent and a 12-bit mantissa. (The 8-bit QQIC of MLDv2, §5.1.9, is IGMPv3's:
/// [`igmp::decode_code8`].)
pub fn decode_code16(c: u16) -> u32 {
    decode_float_code(u32::from(c), 12)
}

/// Encodes milliseconds as a 16-bit Maximum Response Code: exact below 32768, otherwise the
/// largest representable value not above `value` (saturating at 0xffff, which decodes to
/// 8387584 ms).
pub fn encode_code16(value: u32) -> u16 {
    encode_float_code(value, 12) as u16
}

fn pseudo_header(src: &Ipv6Addr, dst: &Ipv6Addr, len: usize) -> u16 {
    checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, u32::try_from(len).unwrap_or(u32::MAX))
}

/// A read/write view of an MLD (ICMPv6) message.
///
/// [`Packet::new_checked`] guarantees at least 8 bytes, 24 for queries and MLDv1 messages, and
/// for an MLDv2 query that the announced sources fit, so every accessor stays in bounds.
/// Accessors of fields a message type does not have read as zero (or empty). MLDv2 report
/// records are checked as they are walked ([`Packet::address_records`]).
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

    /// Checks the length: 8 bytes for any message, 24 for queries and MLDv1 reports and dones,
    /// and for an MLDv2 query (28 bytes or more) room for its Number of Sources.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < MIN_LEN {
            return Err(Error::Truncated);
        }
        if matches!(self.msg_type(), TYPE_QUERY | TYPE_V1_REPORT | TYPE_V1_DONE) && len < V1_LEN {
            return Err(Error::Truncated);
        }
        if self.is_v2_query() && len < field::SOURCES + usize::from(self.num_sources()) * 16 {
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

    /// The ICMPv6 Type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The ICMPv6 Code (zero for MLD messages, ignored on receipt).
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The Maximum Response Code (MLDv2 query) or Maximum Response Delay in milliseconds (MLDv1
    /// query).
    pub fn max_resp_code(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::MAX_RESP)
    }

    /// The Multicast Address of a query, MLDv1 report or done (unspecified for other types).
    pub fn mcast_addr(&self) -> Ipv6Addr {
        match self.msg_type() {
            TYPE_QUERY | TYPE_V1_REPORT | TYPE_V1_DONE if self.buffer.as_ref().len() >= V1_LEN => {
                read_ipv6(self.buffer.as_ref(), field::MCAST_ADDR)
            }
            _ => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// The version of a query (RFC 3810 §8.1): 24 bytes is MLDv1, 28 or more MLDv2. `None` for
    /// other lengths (which must be ignored) and other message types.
    pub fn query_version(&self) -> Option<u8> {
        if self.msg_type() != TYPE_QUERY {
            return None;
        }
        match self.buffer.as_ref().len() {
            V1_LEN => Some(1),
            len if len >= QUERY_V2_HEADER_LEN => Some(2),
            _ => None,
        }
    }

    fn is_v2_query(&self) -> bool {
        self.msg_type() == TYPE_QUERY && self.buffer.as_ref().len() >= QUERY_V2_HEADER_LEN
    }

    fn query_flags_byte(&self) -> u8 {
        if self.is_v2_query() { self.buffer.as_ref()[field::FLAGS] } else { 0 }
    }

    /// The 4 Resv bits of an MLDv2 query.
    pub fn resv(&self) -> u8 {
        igmp::parse_query_flags(self.query_flags_byte()).0
    }

    /// The S flag (Suppress Router-Side Processing) of an MLDv2 query.
    pub fn s_flag(&self) -> bool {
        igmp::parse_query_flags(self.query_flags_byte()).1
    }

    /// The QRV (Querier's Robustness Variable) of an MLDv2 query.
    pub fn qrv(&self) -> u8 {
        igmp::parse_query_flags(self.query_flags_byte()).2
    }

    /// The QQIC (Querier's Query Interval Code) of an MLDv2 query (RFC 3810 §5.1.9).
    pub fn qqic(&self) -> u8 {
        if self.is_v2_query() { self.buffer.as_ref()[field::QQIC] } else { 0 }
    }

    /// The Number of Sources of an MLDv2 query.
    pub fn num_sources(&self) -> u16 {
        if self.is_v2_query() { read_u16(self.buffer.as_ref(), field::NUM_SOURCES) } else { 0 }
    }

    /// The source addresses of an MLDv2 query (empty for other messages).
    pub fn sources(&self) -> Sources<'_, Ipv6Addr> {
        let end = field::SOURCES + usize::from(self.num_sources()) * 16;
        Sources::new(self.buffer.as_ref().get(field::SOURCES..end).unwrap_or_default())
    }

    /// Bytes after the sources of an MLDv2 query (RFC 3810 §5.1.12; empty for other messages).
    pub fn query_additional_data(&self) -> &[u8] {
        if !self.is_v2_query() {
            return &[];
        }
        let start = field::SOURCES + usize::from(self.num_sources()) * 16;
        self.buffer.as_ref().get(start..).unwrap_or_default()
    }

    /// The 16-bit Reserved field of an MLDv2 report.
    pub fn report_reserved(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::REPORT_RESERVED)
    }

    /// The Nr of Mcast Address Records of an MLDv2 report.
    pub fn num_records(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NUM_RECORDS)
    }

    /// Walks the multicast address records of an MLDv2 report without allocating (empty for
    /// other message types). Each record is bounds-checked before it is yielded.
    pub fn address_records(&self) -> AddressRecords<'_> {
        if self.msg_type() != TYPE_V2_REPORT {
            return Records::new(&[], 0);
        }
        Records::new(self.buffer.as_ref().get(field::RECORDS..).unwrap_or_default(), self.num_records())
    }

    /// Whether the ICMPv6 checksum verifies for a packet from `src` to `dst` (RFC 4443 §2.3).
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        checksum::verifies(checksum::combine(&[pseudo_header(src, dst, data.len()), checksum::data(data)]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and writes the ICMPv6 checksum for a packet from `src` to `dst` (nothing if the
    /// buffer cannot hold the checksum field).
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let data = self.buffer.as_mut();
        if data.len() < field::CHECKSUM + 2 {
            return;
        }
        write_u16(data, field::CHECKSUM, 0);
        let sum = checksum::combine(&[pseudo_header(src, dst, data.len()), checksum::data(data)]);
        write_u16(data, field::CHECKSUM, checksum::finish(sum));
    }
}

/// An MLDv2 Multicast Listener Query (RFC 3810 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueryV2 {
    /// Maximum Response Code, milliseconds, floating point from 32768 (see [`decode_code16`]).
    pub max_resp_code: u16,
    /// Multicast Address: unspecified for a General Query.
    pub group: Ipv6Addr,
    /// S flag: Suppress Router-Side Processing.
    pub suppress: bool,
    /// Querier's Robustness Variable, 0–7.
    pub qrv: u8,
    /// Querier's Query Interval Code, seconds, floating point from 128 (RFC 3810 §5.1.9).
    pub qqic: u8,
    pub sources: Vec<Ipv6Addr>,
    /// The 4 Resv bits, zero when sent; kept as received (RFC 9279 assigns a previously
    /// reserved bit).
    pub resv: u8,
    /// Bytes after the sources, covered by the checksum and otherwise ignored (RFC 3810
    /// §5.1.12). Kept as received.
    pub additional_data: Vec<u8>,
}

impl QueryV2 {
    /// A General Query: unspecified address, no sources, S clear.
    pub fn general(max_resp_code: u16, qrv: u8, qqic: u8) -> Self {
        QueryV2 {
            max_resp_code,
            group: Ipv6Addr::UNSPECIFIED,
            suppress: false,
            qrv,
            qqic,
            sources: Vec::new(),
            resv: 0,
            additional_data: Vec::new(),
        }
    }

    /// A Multicast Address Specific (no sources) or Multicast Address and Source Specific Query.
    pub fn specific(max_resp_code: u16, qrv: u8, qqic: u8, group: Ipv6Addr, sources: Vec<Ipv6Addr>) -> Self {
        QueryV2 { group, sources, ..QueryV2::general(max_resp_code, qrv, qqic) }
    }

    /// The Maximum Response Delay the code stands for (RFC 3810 §5.1.3).
    pub fn max_resp_delay(&self) -> Duration {
        Duration::from_millis(u64::from(decode_code16(self.max_resp_code)))
    }

    /// The Querier's Query Interval the QQIC stands for (RFC 3810 §5.1.9).
    pub fn query_interval(&self) -> Duration {
        Duration::from_secs(u64::from(igmp::decode_code8(self.qqic)))
    }

    fn buffer_len(&self) -> usize {
        QUERY_V2_HEADER_LEN + self.sources.len() * 16 + self.additional_data.len()
    }
}

/// A parsed MLD message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Repr {
    /// MLDv1 Query: exactly 24 bytes (RFC 3810 §8.1); Maximum Response Delay in milliseconds
    /// (RFC 2710 §3).
    QueryV1 { max_resp_delay: u16, group: Ipv6Addr },
    /// MLDv2 Query: 28 bytes or more (RFC 3810 §5.1).
    QueryV2(QueryV2),
    /// MLDv1 Multicast Listener Report (type 131).
    ReportV1 { group: Ipv6Addr },
    /// MLDv1 Multicast Listener Done (type 132).
    DoneV1 { group: Ipv6Addr },
    /// MLDv2 Report (type 143, RFC 3810 §5.2).
    ReportV2(ReportV2),
    /// Any other ICMPv6 type, kept whole: the code and everything after the checksum.
    Unknown { kind: u8, code: u8, body: Vec<u8> },
}

impl Repr {
    /// Parses a checked message from `src` to `dst`, verifying the ICMPv6 checksum.
    ///
    /// MLDv1 reports and dones longer than 24 bytes are accepted and the extra bytes ignored; a
    /// query of 25 to 27 bytes is [`Error::BadLength`] (RFC 3810 §8.1 says to ignore it). The
    /// Code byte and the reserved bytes of queries and MLDv1 messages are ignored, as receivers
    /// must.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>, src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let data = packet.as_bytes();
        let group = packet.mcast_addr();
        let repr = match packet.msg_type() {
            TYPE_QUERY => match packet.query_version() {
                Some(1) => Repr::QueryV1 { max_resp_delay: packet.max_resp_code(), group },
                Some(_) => Repr::QueryV2(QueryV2 {
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
            TYPE_V1_DONE => Repr::DoneV1 { group },
            TYPE_V2_REPORT => {
                Repr::ReportV2(Report::parse_body(data.get(field::REPORT_RESERVED..).unwrap_or_default())?)
            }
            kind => Repr::Unknown {
                kind,
                code: packet.code(),
                body: data.get(field::MAX_RESP..).unwrap_or_default().to_vec(),
            },
        };
        Ok(repr)
    }

    /// The ICMPv6 type this representation emits.
    pub fn msg_type(&self) -> u8 {
        match self {
            Repr::QueryV1 { .. } | Repr::QueryV2(_) => TYPE_QUERY,
            Repr::ReportV1 { .. } => TYPE_V1_REPORT,
            Repr::DoneV1 { .. } => TYPE_V1_DONE,
            Repr::ReportV2(_) => TYPE_V2_REPORT,
            Repr::Unknown { kind, .. } => *kind,
        }
    }

    /// The encoded length of the message.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::QueryV1 { .. } | Repr::ReportV1 { .. } | Repr::DoneV1 { .. } => V1_LEN,
            Repr::QueryV2(query) => query.buffer_len(),
            Repr::ReportV2(report) => 4 + report.body_len(),
            Repr::Unknown { body, .. } => 4 + body.len(),
        }
    }

    /// Writes the message at the start of `buf`, with the checksum for a packet from `src` to
    /// `dst`, and returns its length.
    ///
    /// Rejects what would not parse back to the same value: QRV above 7, more than 65535
    /// sources or records, an `Unknown` with an MLD type or a body shorter than 4 bytes.
    pub fn emit(&self, buf: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<usize> {
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        buf[..field::MCAST_ADDR.min(len)].fill(0);
        buf[field::TYPE] = self.msg_type();
        match self {
            Repr::QueryV1 { max_resp_delay, group } => {
                write_u16(buf, field::MAX_RESP, *max_resp_delay);
                buf[field::MCAST_ADDR..V1_LEN].copy_from_slice(&group.octets());
            }
            Repr::ReportV1 { group } | Repr::DoneV1 { group } => {
                buf[field::MCAST_ADDR..V1_LEN].copy_from_slice(&group.octets());
            }
            Repr::QueryV2(query) => {
                let num_sources = u16::try_from(query.sources.len()).map_err(|_| Error::BadLength)?;
                write_u16(buf, field::MAX_RESP, query.max_resp_code);
                buf[field::MCAST_ADDR..V1_LEN].copy_from_slice(&query.group.octets());
                buf[field::FLAGS] = igmp::query_flags(query.resv, query.suppress, query.qrv)?;
                buf[field::QQIC] = query.qqic;
                write_u16(buf, field::NUM_SOURCES, num_sources);
                let end = field::SOURCES + query.sources.len() * 16;
                for (chunk, source) in buf[field::SOURCES..end].chunks_exact_mut(16).zip(&query.sources) {
                    chunk.copy_from_slice(&source.octets());
                }
                buf[end..].copy_from_slice(&query.additional_data);
            }
            Repr::ReportV2(report) => {
                report.emit_body(&mut buf[field::REPORT_RESERVED..])?;
            }
            Repr::Unknown { kind, code, body } => {
                if matches!(*kind, TYPE_QUERY | TYPE_V1_REPORT | TYPE_V1_DONE | TYPE_V2_REPORT) {
                    return Err(Error::Malformed("Unknown MLD message with an MLD type"));
                }
                if body.len() < MIN_LEN - 4 {
                    return Err(Error::BadLength);
                }
                buf[field::CODE] = *code;
                buf[field::MAX_RESP..].copy_from_slice(body);
            }
        }
        Packet::new_unchecked(&mut *buf).fill_checksum(src, dst);
        Ok(len)
    }

    /// The IPv6 destination this message is sent to: ff02::1 for General Queries, the
    /// multicast address for specific queries (RFC 3810 §5.1.15) and MLDv1 reports, ff02::2
    /// for MLDv1 Done (RFC 2710's message destinations), ff02::16 for MLDv2 reports (RFC 3810
    /// §5.2.14). `None` for unknown types.
    pub fn destination(&self) -> Option<Ipv6Addr> {
        let query_dst = |group: &Ipv6Addr| if group.is_unspecified() { ALL_NODES } else { *group };
        match self {
            Repr::QueryV1 { group, .. } => Some(query_dst(group)),
            Repr::QueryV2(query) => Some(query_dst(&query.group)),
            Repr::ReportV1 { group } => Some(*group),
            Repr::DoneV1 { .. } => Some(ALL_ROUTERS),
            Repr::ReportV2(_) => Some(ALL_MLDV2_ROUTERS),
            Repr::Unknown { .. } => None,
        }
    }
}

/// Builds a complete IPv6 packet carrying `repr` from `src` to [`Repr::destination`], as AMT
/// (RFC 7450 §5.1.4, §5.1.5) encapsulates it and as RFC 3810 §5 requires: hop limit 1, a
/// Hop-by-Hop header with a Router Alert option (value 0, MLD) from
/// [`ipv6::hop_by_hop_router_alert`], then the MLD message with its checksum. `src` may be `::`
/// (RFC 3810 §5.2.13).
pub fn datagram(src: Ipv6Addr, repr: &Repr) -> Result<Vec<u8>> {
    let dst = repr.destination().ok_or(Error::Malformed("MLD message type without a defined destination"))?;
    datagram_to(src, dst, repr)
}

/// Like [`datagram`], to an explicit destination.
pub fn datagram_to(src: Ipv6Addr, dst: Ipv6Addr, repr: &Repr) -> Result<Vec<u8>> {
    let hbh = ipv6::hop_by_hop_router_alert(IpProtocol::ICMPV6);
    let ip = ipv6::Repr::new(src, dst, IpProtocol::HOP_BY_HOP, 1, hbh.len() + repr.buffer_len());
    let mut out = vec![0; ip.buffer_len()];
    let header_len = ip.emit(&mut out)?;
    let (hbh_out, mld_out) = out.get_mut(header_len..).ok_or(Error::BufferTooSmall)?.split_at_mut(hbh.len());
    hbh_out.copy_from_slice(&hbh);
    repr.emit(mld_out, &src, &dst)?;
    Ok(out)
}

/// Parses a complete IPv6 packet carrying MLD: the fixed header, the Hop-by-Hop, Routing and
/// Destination Options headers ([`ipv6::Packet::upper_layer`]), next header 58, then the MLD
/// message with its pseudo-header checksum. Any source is accepted, `::` included (RFC 3810
/// §5.2.13); checking the hop limit and the Router Alert is left to the caller. Trailing
/// link-layer padding is ignored.
pub fn parse_datagram(bytes: &[u8]) -> Result<(ipv6::Repr, Repr)> {
    let packet = ipv6::Packet::new_checked(bytes)?;
    let ip = ipv6::Repr::parse(&packet)?;
    let upper = packet.upper_layer()?;
    if upper.protocol != IpProtocol::ICMPV6 {
        return Err(Error::Malformed("upper-layer protocol is not ICMPv6"));
    }
    let mld = Packet::new_checked(upper.payload)?;
    let repr = Repr::parse(&mld, &ip.src_addr, &ip.dst_addr)?;
    Ok((ip, repr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn src() -> Ipv6Addr {
        a("fe80::1")
    }

    /// MLDv2 report fe80::1 → ff02::16: one ALLOW_NEW_SOURCES record for ff3e::8000:1 with
    /// source 2001:db8::1. The checksum 0xc101 was computed independently (Python, RFC 1071
    /// over the RFC 8200 §8.1 pseudo-header with length 44 and next header 58), and tshark
    /// agrees (tests/tshark_membership.rs).
    const REPORT: &str = "8f00c101 0000 0001 05 00 0001 ff3e0000000000000000000080000001 \
                          20010db8000000000000000000000001";
    /// MLDv2 General Query fe80::1 → ff02::1: MRC 10000 (10 s), QRV 2, QQIC 125, checksum 0x5696.
    const QUERY: &str = "82005696 2710 0000 00000000000000000000000000000000 02 7d 0000";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn report_repr() -> Repr {
        Repr::ReportV2(Report::new(vec![AddressRecord::new(
            RecordType::AllowNewSources,
            a("ff3e::8000:1"),
            vec![a("2001:db8::1")],
        )]))
    }

    fn emit(repr: &Repr, dst: &Ipv6Addr) -> Vec<u8> {
        let mut out = vec![0; repr.buffer_len()];
        assert_eq!(repr.emit(&mut out, &src(), dst).unwrap(), out.len());
        out
    }

    fn parse(bytes: &[u8], dst: &Ipv6Addr) -> Result<Repr> {
        Repr::parse(&Packet::new_checked(bytes)?, &src(), dst)
    }

    fn with_checksum(mut bytes: Vec<u8>, dst: &Ipv6Addr) -> Vec<u8> {
        Packet::new_unchecked(&mut bytes[..]).fill_checksum(&src(), dst);
        bytes
    }

    #[test]
    fn code16_matches_rfc3810() {
        for c in [0u16, 1, 10000, 32767] {
            assert_eq!(decode_code16(c), u32::from(c));
            assert_eq!(encode_code16(u32::from(c)), c);
        }
        // 0x8000: exp 0, mant 0 → 0x1000 << 3 = 32768; 0xffff: 0x1fff << 10.
        assert_eq!(decode_code16(0x8000), 32768);
        assert_eq!(decode_code16(0xffff), 0x1fff << 10);
        assert_eq!(encode_code16(32768), 0x8000);
        // exp 1, mant 0x234: (0x1234) << 4.
        assert_eq!(decode_code16(0x9234), 0x1234 << 4);
        assert_eq!(encode_code16(0x1234 << 4), 0x9234);
        assert_eq!(encode_code16((0x1234 << 4) + 15), 0x9234);
        assert_eq!(encode_code16(u32::MAX), 0xffff);
        for c in (0..=u16::MAX).step_by(7) {
            assert_eq!(encode_code16(decode_code16(c)), c);
            if c < u16::MAX {
                assert!(decode_code16(c + 1) > decode_code16(c));
            }
        }
    }

    #[test]
    fn report_fields_and_checksum() {
        let bytes = emit(&report_repr(), &ALL_MLDV2_ROUTERS);
        assert_eq!(bytes, unhex(REPORT));
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), TYPE_V2_REPORT);
        assert_eq!(packet.code(), 0);
        assert_eq!(packet.checksum(), 0xc101);
        assert!(packet.verify_checksum(&src(), &ALL_MLDV2_ROUTERS));
        assert_eq!(packet.report_reserved(), 0);
        assert_eq!(packet.num_records(), 1);
        let records: Vec<_> = packet.address_records().collect::<Result<_>>().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].record_type(), RecordType::AllowNewSources);
        assert_eq!(records[0].aux_data_words(), 0);
        assert_eq!(records[0].num_sources(), 1);
        assert_eq!(records[0].group(), a("ff3e::8000:1"));
        assert_eq!(records[0].sources().collect::<Vec<_>>(), [a("2001:db8::1")]);
        assert_eq!(parse(&bytes, &ALL_MLDV2_ROUTERS).unwrap(), report_repr());
    }

    #[test]
    fn checksum_covers_pseudo_header() {
        let bytes = unhex(REPORT);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        // Another destination or source changes the pseudo-header and fails the check.
        assert!(!packet.verify_checksum(&src(), &ALL_NODES));
        assert!(!packet.verify_checksum(&Ipv6Addr::UNSPECIFIED, &ALL_MLDV2_ROUTERS));
        assert_eq!(Repr::parse(&packet, &src(), &ALL_NODES), Err(Error::BadChecksum));
        // The same message from :: (RFC 3810 §5.2.13) carries another checksum.
        let mut out = vec![0; bytes.len()];
        report_repr().emit(&mut out, &Ipv6Addr::UNSPECIFIED, &ALL_MLDV2_ROUTERS).unwrap();
        assert_ne!(out, bytes);
        let packet = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(Repr::parse(&packet, &Ipv6Addr::UNSPECIFIED, &ALL_MLDV2_ROUTERS).unwrap(), report_repr());
    }

    #[test]
    fn general_query_fields() {
        let repr = Repr::QueryV2(QueryV2::general(10000, 2, 125));
        let bytes = emit(&repr, &ALL_NODES);
        assert_eq!(bytes, unhex(QUERY));
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), TYPE_QUERY);
        assert_eq!(packet.query_version(), Some(2));
        assert_eq!(packet.checksum(), 0x5696);
        assert_eq!(packet.max_resp_code(), 10000);
        assert_eq!(packet.mcast_addr(), Ipv6Addr::UNSPECIFIED);
        assert!(!packet.s_flag());
        assert_eq!(packet.qrv(), 2);
        assert_eq!(packet.qqic(), 125);
        assert_eq!(packet.num_sources(), 0);
        let Repr::QueryV2(query) = parse(&bytes, &ALL_NODES).unwrap() else { panic!("not a v2 query") };
        assert_eq!(query.max_resp_delay(), Duration::from_secs(10));
        assert_eq!(query.query_interval(), Duration::from_secs(125));
        assert_eq!(Repr::QueryV2(query), repr);
    }

    #[test]
    fn datagrams() {
        let group = a("ff3e::8000:1");
        let s = a("2001:db8::1");
        let cases = [
            (Repr::QueryV1 { max_resp_delay: 10000, group: Ipv6Addr::UNSPECIFIED }, ALL_NODES),
            (Repr::QueryV1 { max_resp_delay: 1000, group }, group),
            (Repr::QueryV2(QueryV2::general(10000, 2, 125)), ALL_NODES),
            (Repr::QueryV2(QueryV2::specific(1000, 2, 125, group, vec![s])), group),
            (Repr::ReportV1 { group }, group),
            (Repr::DoneV1 { group }, ALL_ROUTERS),
            (report_repr(), ALL_MLDV2_ROUTERS),
        ];
        for (repr, dst) in cases {
            for source in [src(), Ipv6Addr::UNSPECIFIED] {
                let bytes = datagram(source, &repr).unwrap();
                let (ip, parsed) = parse_datagram(&bytes).unwrap();
                assert_eq!(ip.src_addr, source);
                assert_eq!(ip.dst_addr, dst, "{repr:?}");
                assert_eq!(ip.hop_limit, 1);
                assert_eq!(ip.next_header, IpProtocol::HOP_BY_HOP);
                let packet = ipv6::Packet::new_checked(&bytes[..]).unwrap();
                assert_eq!(packet.upper_layer().unwrap().router_alert, Some(ipv6::ROUTER_ALERT_MLD));
                assert_eq!(parsed, repr);
            }
        }
        // The report datagram, byte for byte: fixed header, Linux-style HBH, then the message.
        let bytes = datagram(src(), &report_repr()).unwrap();
        let header = "6000000000340001fe800000000000000000000000000001ff020000000000000000000000000016";
        assert_eq!(hex::encode(&bytes), format!("{header}3a00050200000100{}", hex::encode(unhex(REPORT))));
        let unknown = Repr::Unknown { kind: 128, code: 0, body: vec![0; 4] };
        assert!(datagram(src(), &unknown).is_err());
    }

    #[test]
    fn parse_datagram_rejections() {
        let bytes = datagram(src(), &report_repr()).unwrap();
        // Upper layer not ICMPv6: UDP behind the Hop-by-Hop header.
        let mut udp = bytes.clone();
        udp[40] = IpProtocol::UDP.0;
        assert_eq!(parse_datagram(&udp), Err(Error::Malformed("upper-layer protocol is not ICMPv6")));
        // Checksum: change the destination address.
        let mut moved = bytes.clone();
        moved[39] = 0x01;
        assert_eq!(parse_datagram(&moved), Err(Error::BadChecksum));
        // Truncated payload, IPv4.
        assert_eq!(parse_datagram(&bytes[..bytes.len() - 1]), Err(Error::Truncated));
        let mut v4 = bytes.clone();
        v4[0] = 0x45;
        assert_eq!(parse_datagram(&v4), Err(Error::BadVersion(4)));
        // IGMP is not MLD: too short for an IPv6 header, and with padding the wrong version.
        let mut igmp = crate::igmp::datagram(
            std::net::Ipv4Addr::UNSPECIFIED,
            &crate::igmp::Repr::LeaveV2 { group: std::net::Ipv4Addr::new(239, 1, 1, 1) },
        )
        .unwrap();
        assert_eq!(parse_datagram(&igmp), Err(Error::Truncated));
        igmp.resize(64, 0);
        assert_eq!(parse_datagram(&igmp), Err(Error::BadVersion(4)));
    }

    #[test]
    fn mldv1_and_unknown() {
        let group = a("ff15::1234");
        let v1 = Repr::QueryV1 { max_resp_delay: 2500, group };
        let bytes = emit(&v1, &group);
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[..2], &[130, 0]);
        assert_eq!(&bytes[4..6], &2500u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap().query_version(), Some(1));
        assert_eq!(parse(&bytes, &group).unwrap(), v1);
        // MLDv1 report with extra bytes: ignored, but checksummed.
        let mut long = emit(&Repr::ReportV1 { group }, &group);
        long.extend_from_slice(&[1, 2, 3, 4]);
        let long = with_checksum(long, &group);
        assert_eq!(parse(&long, &group).unwrap(), Repr::ReportV1 { group });
        // Code byte ignored for MLD types.
        let mut coded = emit(&Repr::DoneV1 { group }, &ALL_ROUTERS);
        coded[1] = 9;
        let coded = with_checksum(coded, &ALL_ROUTERS);
        assert_eq!(parse(&coded, &ALL_ROUTERS).unwrap(), Repr::DoneV1 { group });
        // Echo Request (128): kept whole.
        let echo = with_checksum(unhex("80000000 1234 0001 6869"), &group);
        let repr = parse(&echo, &group).unwrap();
        assert_eq!(repr, Repr::Unknown { kind: 128, code: 0, body: unhex("123400016869") });
        assert_eq!(emit(&repr, &group), echo);
        // Reserved bits, aux data, unknown record types and additional data are kept.
        let report = with_checksum(
            unhex(
                "8f00 0000 4000 0001 07 01 0000 ff020000000000000000000000000001 deadbeef \
                 0a0b",
            ),
            &ALL_MLDV2_ROUTERS,
        );
        let Repr::ReportV2(parsed) = parse(&report, &ALL_MLDV2_ROUTERS).unwrap() else { panic!("not a report") };
        assert_eq!(parsed.reserved, 0x4000);
        assert_eq!(parsed.records[0].record_type, RecordType::Unknown(7));
        assert_eq!(parsed.records[0].aux_data, unhex("deadbeef"));
        assert_eq!(parsed.additional_data, unhex("0a0b"));
        assert_eq!(emit(&Repr::ReportV2(parsed), &ALL_MLDV2_ROUTERS), report);
    }

    #[test]
    fn rejections() {
        let report = unhex(REPORT);
        let query = unhex(QUERY);
        for (bytes, dst) in [(&report, ALL_MLDV2_ROUTERS), (&query, ALL_NODES)] {
            for len in 0..bytes.len() {
                let result = parse(&bytes[..len], &dst);
                assert!(result.is_err(), "{len}");
                if len < MIN_LEN {
                    assert_eq!(result, Err(Error::Truncated));
                }
                let fixed = with_checksum(bytes[..len].to_vec(), &dst);
                let result = parse(&fixed, &dst);
                match (bytes[0], len) {
                    (_, 0..MIN_LEN) => assert_eq!(result, Err(Error::Truncated)),
                    (TYPE_QUERY, 8..V1_LEN) => assert_eq!(result, Err(Error::Truncated)),
                    // 24 bytes is a valid MLDv1 query.
                    (TYPE_QUERY, V1_LEN) => {
                        assert_eq!(result, Ok(Repr::QueryV1 { max_resp_delay: 10000, group: Ipv6Addr::UNSPECIFIED }))
                    }
                    (TYPE_QUERY, _) => assert_eq!(result, Err(Error::BadLength), "{len}"),
                    _ => assert_eq!(result, Err(Error::Truncated), "{len}"),
                }
            }
        }
        // Bad checksum.
        let mut bad = report.clone();
        bad[20] ^= 1;
        assert_eq!(parse(&bad, &ALL_MLDV2_ROUTERS), Err(Error::BadChecksum));
        // An MLDv2 query announcing more sources than present.
        let mut many = query.clone();
        many[27] = 3;
        many.extend_from_slice(&[0; 16]);
        assert_eq!(Packet::new_checked(&many[..]).unwrap_err(), Error::Truncated);
        // A huge record count.
        let mut huge = report.clone();
        huge[6] = 0xff;
        let huge = with_checksum(huge, &ALL_MLDV2_ROUTERS);
        assert_eq!(parse(&huge, &ALL_MLDV2_ROUTERS), Err(Error::Truncated));
        // Emit rejections.
        let mut buf = [0u8; 128];
        let mut q = QueryV2::general(1, 9, 1);
        assert!(Repr::QueryV2(q.clone()).emit(&mut buf, &src(), &ALL_NODES).is_err());
        q.qrv = 1;
        assert_eq!(Repr::QueryV2(q).emit(&mut buf[..27], &src(), &ALL_NODES), Err(Error::BufferTooSmall));
        let known = Repr::Unknown { kind: TYPE_V2_REPORT, code: 0, body: vec![0; 4] };
        assert!(known.emit(&mut buf, &src(), &ALL_NODES).is_err());
        let short = Repr::Unknown { kind: 1, code: 4, body: vec![0; 2] };
        assert_eq!(short.emit(&mut buf, &src(), &ALL_NODES), Err(Error::BadLength));
    }

    #[test]
    fn snapshot_samples() {
        insta::assert_debug_snapshot!("report_sample", parse(&unhex(REPORT), &ALL_MLDV2_ROUTERS).unwrap());
        insta::assert_debug_snapshot!("query_sample", parse(&unhex(QUERY), &ALL_NODES).unwrap());
    }

    fn addr6() -> impl Strategy<Value = Ipv6Addr> {
        prop_oneof![
            any::<[u8; 16]>().prop_map(Ipv6Addr::from),
            any::<u16>().prop_map(|x| Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 0x8000, x)),
        ]
    }

    fn record() -> impl Strategy<Value = AddressRecord> {
        (
            any::<u8>().prop_map(RecordType::from),
            addr6(),
            prop::collection::vec(addr6(), 0..4),
            (0..3usize).prop_map(|words| vec![0x5a; words * 4]),
        )
            .prop_map(|(record_type, group, sources, aux_data)| AddressRecord {
                record_type,
                group,
                sources,
                aux_data,
            })
    }

    fn repr() -> impl Strategy<Value = Repr> {
        let known = [TYPE_QUERY, TYPE_V1_REPORT, TYPE_V1_DONE, TYPE_V2_REPORT];
        prop_oneof![
            (any::<u16>(), addr6()).prop_map(|(max_resp_delay, group)| Repr::QueryV1 { max_resp_delay, group }),
            (
                any::<u16>(),
                addr6(),
                any::<bool>(),
                0..8u8,
                any::<u8>(),
                prop::collection::vec(addr6(), 0..4),
                0..16u8,
                prop::collection::vec(any::<u8>(), 0..6),
            )
                .prop_map(|(max_resp_code, group, suppress, qrv, qqic, sources, resv, additional_data)| {
                    Repr::QueryV2(QueryV2 { max_resp_code, group, suppress, qrv, qqic, sources, resv, additional_data })
                }),
            addr6().prop_map(|group| Repr::ReportV1 { group }),
            addr6().prop_map(|group| Repr::DoneV1 { group }),
            (any::<u16>(), prop::collection::vec(record(), 0..4), prop::collection::vec(any::<u8>(), 0..6)).prop_map(
                |(reserved, records, additional_data)| Repr::ReportV2(Report { reserved, records, additional_data })
            ),
            (
                any::<u8>().prop_filter("unknown type", move |k| !known.contains(k)),
                any::<u8>(),
                prop::collection::vec(any::<u8>(), 4..12)
            )
                .prop_map(|(kind, code, body)| Repr::Unknown { kind, code, body }),
        ]
    }

    /// Arbitrary bytes, biased towards MLD types, small counts and good checksums.
    fn mld_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(130u8), Just(131), Just(132), Just(143), any::<u8>()],
            prop::collection::vec(any::<u8>(), 0..120),
            any::<bool>(),
        )
            .prop_map(|(kind, mut rest, fix)| {
                rest.insert(0, kind);
                if fix && rest.len() >= 4 {
                    if rest.len() > 7 && kind == TYPE_V2_REPORT {
                        rest[6] = 0;
                        rest[7] %= 3;
                    }
                    if rest.len() > 27 && kind == TYPE_QUERY {
                        rest[26] = 0;
                        rest[27] %= 3;
                    }
                    Packet::new_unchecked(&mut rest[..]).fill_checksum(&src(), &ALL_NODES);
                }
                rest
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in mld_bytes()) {
            let _ = Packet::new_unchecked(&bytes[..]).check_len();
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = (packet.msg_type(), packet.code(), packet.checksum(), packet.max_resp_code());
                let _ = (packet.mcast_addr(), packet.query_version(), packet.resv(), packet.s_flag());
                let _ = (packet.qrv(), packet.qqic(), packet.num_sources(), packet.sources().count());
                let _ = (packet.query_additional_data(), packet.report_reserved(), packet.num_records());
                let _ = packet.verify_checksum(&src(), &ALL_NODES);
                let mut walk = packet.address_records();
                for record in walk.by_ref() {
                    let Ok(record) = record else { break };
                    let _ = (record.record_type(), record.aux_data_words(), record.num_sources(), record.group());
                    let _ = (record.sources().count(), record.aux_data(), record.to_record());
                }
                let _ = walk.remainder();
                let _ = Repr::parse(&packet, &src(), &ALL_NODES);
            }
            let _ = parse_datagram(&bytes);
            let _ = AddressRecord::parse(&bytes);
        }

        #[test]
        fn emit_then_parse(repr in repr()) {
            let bytes = emit(&repr, &ALL_NODES);
            prop_assert_eq!(parse(&bytes, &ALL_NODES).unwrap(), repr.clone());
            if repr.destination().is_some() {
                let dgram = datagram(src(), &repr).unwrap();
                prop_assert_eq!(parse_datagram(&dgram).unwrap().1, repr);
            }
        }

        #[test]
        fn parse_then_emit(bytes in mld_bytes()) {
            if let Ok(repr) = parse(&bytes, &ALL_NODES) {
                let again = emit(&repr, &ALL_NODES);
                prop_assert_eq!(parse(&again, &ALL_NODES).unwrap(), repr.clone());
                if matches!(repr, Repr::Unknown { .. })
                    || (matches!(repr, Repr::ReportV2(_)) && bytes[1] == 0)
                {
                    prop_assert_eq!(again, bytes);
                }
            }
        }
    }
}
