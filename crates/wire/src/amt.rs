//! Automatic Multicast Tunneling (RFC 7450 §5.1): the seven AMT messages carried in UDP on
//! port 2268.
//!
//! Every message starts with one byte holding the Version (high nibble, always 0) and the
//! Type (low nibble). The rest depends on the type:
//!
//! | Type | Message | Layout after byte 0 |
//! |---|---|---|
//! | 1 | Relay Discovery (§5.1.1) | 3 reserved, Discovery Nonce |
//! | 2 | Relay Advertisement (§5.1.2) | 3 reserved, Discovery Nonce, Relay Address (4 or 16 bytes) |
//! | 3 | Request (§5.1.3) | 7 reserved bits + P flag, 2 reserved, Request Nonce |
//! | 4 | Membership Query (§5.1.4) | 6 reserved bits + L + G, Response MAC, Request Nonce, IP datagram, \[Gateway Port, Gateway IP\] |
//! | 5 | Membership Update (§5.1.5) | 1 reserved, Response MAC, Request Nonce, IP datagram |
//! | 6 | Multicast Data (§5.1.6) | 1 reserved, IP datagram |
//! | 7 | Teardown (§5.1.7) | 1 reserved, Response MAC, Request Nonce, Gateway Port, Gateway IP |
//!
//! Reserved bits are written as zero and ignored on receipt (RFC 7450 §5.1.x.3: the sender
//! must set them to zero, the receiver must ignore them); unlike Linux, we do not drop
//! messages with non-zero reserved bits. Unknown types are kept as [`Repr::Unknown`].
//! Trailing bytes after the fixed-length messages (Discovery, Request, Teardown) are
//! ignored.
//!
//! Multicast Data is the hot path: [`Repr::parse`] borrows the encapsulated datagram, and
//! [`parse_data`] / [`emit_data_header`] handle the 2-byte header without building a `Repr`.

use core::ops::Range;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ip::{read_ipv4, read_ipv6, read_u16, read_u32, write_u16, write_u32};
use crate::{Error, Result};

/// The IANA-assigned AMT UDP port, used by relays and as the gateway's destination port.
pub const PORT: u16 = 2268;

/// Field offsets.
mod field {
    use core::ops::Range;

    /// Version (high nibble) and Type (low nibble).
    pub const VER_TYPE: usize = 0;
    /// The byte holding the P flag (Request) or the L and G flags (Query).
    pub const FLAGS: usize = 1;
    /// Discovery Nonce (Discovery, Advertisement) or Request Nonce (Request).
    pub const SHORT_NONCE: usize = 4;
    /// Relay Address of an Advertisement.
    pub const RELAY_ADDR: usize = 8;
    /// Response MAC of Query, Update and Teardown.
    pub const MAC: Range<usize> = 2..8;
    /// Request Nonce of Query, Update and Teardown.
    pub const LONG_NONCE: usize = 8;
    /// Encapsulated datagram of Query and Update.
    pub const ENCAPSULATED: usize = 12;
    /// Encapsulated datagram of Multicast Data.
    pub const DATA: usize = 2;
    /// Gateway Port Number of a Teardown.
    pub const TEARDOWN_PORT: usize = 12;
    /// Gateway IP Address of a Teardown.
    pub const TEARDOWN_ADDR: usize = 14;
}

/// Length of a Relay Discovery (§5.1.1).
pub const DISCOVERY_LEN: usize = 8;
/// Length of a Relay Advertisement carrying an IPv4 relay address (§5.1.2).
pub const ADVERTISEMENT_V4_LEN: usize = 12;
/// Length of a Relay Advertisement carrying an IPv6 relay address (§5.1.2).
pub const ADVERTISEMENT_V6_LEN: usize = 24;
/// Length of a Request (§5.1.3).
pub const REQUEST_LEN: usize = 8;
/// Length of the fixed part of a Membership Query or Update, before the datagram (§5.1.4, §5.1.5).
pub const QUERY_HEADER_LEN: usize = 12;
/// Length of the Gateway Port Number and Gateway IP Address fields at the end of a Membership
/// Query with G = 1 (§5.1.4.9: the gateway finds them by subtracting 18 from the length).
pub const GATEWAY_FIELDS_LEN: usize = 18;
/// Length of the Multicast Data header (§5.1.6).
pub const DATA_HEADER_LEN: usize = 2;
/// Length of a Teardown (§5.1.7).
pub const TEARDOWN_LEN: usize = 30;

/// The Multicast Data header (§5.1.6): version 0, type 6, reserved 0.
pub const DATA_HEADER: [u8; 2] = [TYPE_DATA, 0];

const TYPE_DISCOVERY: u8 = 1;
const TYPE_ADVERTISEMENT: u8 = 2;
const TYPE_REQUEST: u8 = 3;
const TYPE_QUERY: u8 = 4;
const TYPE_UPDATE: u8 = 5;
const TYPE_DATA: u8 = 6;
const TYPE_TEARDOWN: u8 = 7;

/// P flag of a Request (§5.1.3.4): least significant bit of byte 1.
const FLAG_P: u8 = 0x01;
/// L (Limit) flag of a Query (§5.1.4.4).
const FLAG_L: u8 = 0x02;
/// G (Gateway Address) flag of a Query (§5.1.4.5).
const FLAG_G: u8 = 0x01;

/// The Type field of an AMT message (RFC 7450 §5.1). Values this codec does not know are
/// kept in `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1: gateway → relay discovery address (§5.1.1).
    RelayDiscovery,
    /// 2: relay → gateway (§5.1.2).
    RelayAdvertisement,
    /// 3: gateway → relay (§5.1.3).
    Request,
    /// 4: relay → gateway (§5.1.4).
    MembershipQuery,
    /// 5: gateway → relay (§5.1.5).
    MembershipUpdate,
    /// 6: relay → gateway (§5.1.6).
    MulticastData,
    /// 7: gateway → relay (§5.1.7).
    Teardown,
    /// Any other 4-bit value.
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(value: u8) -> Self {
        match value {
            TYPE_DISCOVERY => MessageType::RelayDiscovery,
            TYPE_ADVERTISEMENT => MessageType::RelayAdvertisement,
            TYPE_REQUEST => MessageType::Request,
            TYPE_QUERY => MessageType::MembershipQuery,
            TYPE_UPDATE => MessageType::MembershipUpdate,
            TYPE_DATA => MessageType::MulticastData,
            TYPE_TEARDOWN => MessageType::Teardown,
            other => MessageType::Unknown(other),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(value: MessageType) -> Self {
        match value {
            MessageType::RelayDiscovery => TYPE_DISCOVERY,
            MessageType::RelayAdvertisement => TYPE_ADVERTISEMENT,
            MessageType::Request => TYPE_REQUEST,
            MessageType::MembershipQuery => TYPE_QUERY,
            MessageType::MembershipUpdate => TYPE_UPDATE,
            MessageType::MulticastData => TYPE_DATA,
            MessageType::Teardown => TYPE_TEARDOWN,
            MessageType::Unknown(other) => other,
        }
    }
}

/// The 48-bit Response MAC (§5.1.4.6) as an integer, as tshark and Linux print it.
pub fn mac_to_u64(mac: [u8; 6]) -> u64 {
    let [a, b, c, d, e, f] = mac;
    u64::from_be_bytes([0, 0, a, b, c, d, e, f])
}

/// The low 48 bits of `value` as a Response MAC (the upper 16 bits are dropped).
pub fn mac_from_u64(value: u64) -> [u8; 6] {
    let [_, _, a, b, c, d, e, f] = value.to_be_bytes();
    [a, b, c, d, e, f]
}

/// Decodes a 16-byte Gateway IP Address (§5.1.4.9.2, §5.1.7.7).
///
/// RFC 7450 stores an IPv4 gateway as an IPv4-compatible IPv6 address, "the IPv4 address
/// prefixed with 96 bits set to zero" (RFC 4291 §2.5.5.1). Some senders use the IPv4-mapped
/// form `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2) instead, so both decode as IPv4. `::` and `::1`
/// also have 96 zero bits but are the IPv6 unspecified and loopback addresses; RFC 4291
/// §2.5.5.1 requires the embedded IPv4 address of a compatible address to be a globally
/// unique unicast address, which 0.0.0.0 and 0.0.0.1 are not, so they stay IPv6 (and, for
/// symmetry, so do `::ffff:0.0.0.0` and `::ffff:0.0.0.1`). Every value this returns is
/// accepted by [`encode_gateway_addr`].
pub fn decode_gateway_addr(octets: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(octets);
    let [a, b, c, d] = [octets[12], octets[13], octets[14], octets[15]];
    let compatible = octets[..12].iter().all(|&x| x == 0);
    let mapped = octets[..10].iter().all(|&x| x == 0) && octets[10] == 0xff && octets[11] == 0xff;
    let unicast = u32::from_be_bytes([a, b, c, d]) > 1;
    if (compatible || mapped) && unicast { IpAddr::V4(Ipv4Addr::new(a, b, c, d)) } else { IpAddr::V6(v6) }
}

/// Encodes a Gateway IP Address: IPv6 as is, IPv4 as an IPv4-compatible address
/// (§5.1.4.9.2). IPv4 0.0.0.0 and 0.0.0.1 are refused, since they would read back as the
/// IPv6 addresses `::` and `::1` (see [`decode_gateway_addr`]) and are never a gateway
/// endpoint anyway.
pub fn encode_gateway_addr(addr: &IpAddr) -> Result<[u8; 16]> {
    match addr {
        IpAddr::V4(v4) => {
            if u32::from(*v4) <= 1 {
                return Err(Error::Malformed("AMT gateway IPv4 address 0.0.0.0/0.0.0.1"));
            }
            let mut octets = [0u8; 16];
            octets[12..].copy_from_slice(&v4.octets());
            Ok(octets)
        }
        IpAddr::V6(v6) => Ok(v6.octets()),
    }
}

/// The encapsulated datagram of a Multicast Data message, without building a [`Repr`]: the
/// gateway's per-packet fast path. `None` unless byte 0 is version 0, type 6 (the reserved
/// byte is ignored, §5.1.6.3).
#[inline]
pub fn parse_data(payload: &[u8]) -> Option<&[u8]> {
    match payload {
        [TYPE_DATA, _, datagram @ ..] => Some(datagram),
        _ => None,
    }
}

/// The 2-byte Multicast Data header (§5.1.6), for a relay that builds the datagram in place.
#[inline]
pub const fn data_header() -> [u8; 2] {
    DATA_HEADER
}

/// Writes the Multicast Data header at the start of `buf`, so a relay can reserve two bytes
/// in front of a datagram it already holds. Returns 2.
#[inline]
pub fn emit_data_header(buf: &mut [u8]) -> Result<usize> {
    let head = buf.get_mut(..DATA_HEADER_LEN).ok_or(Error::BufferTooSmall)?;
    head.copy_from_slice(&DATA_HEADER);
    Ok(DATA_HEADER_LEN)
}

/// A read/write view of an AMT message (the UDP payload). [`Packet::new_checked`]
/// guarantees the version is 0 and the buffer holds every field its type defines.
///
/// Field accessors return `None` when the message type does not carry that field (or, on
/// an unchecked packet, when the buffer is too short), so they never panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer and checks the version and the per-type length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the version is 0 (`BadVersion` otherwise) and that the buffer is long
    /// enough for the type (`Truncated`): 8 bytes for Discovery and Request, 12 or 24 for an
    /// Advertisement (other lengths are `Malformed`), 12 for Query and Update (30 for a Query
    /// with G = 1), 2 for Data, 30 for Teardown, 1 for unknown types.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        let Some(&first) = data.first() else {
            return Err(Error::Truncated);
        };
        if first >> 4 != 0 {
            return Err(Error::BadVersion(first >> 4));
        }
        let len = data.len();
        let min = match first & 0x0f {
            TYPE_DISCOVERY => DISCOVERY_LEN,
            TYPE_ADVERTISEMENT => {
                if len < ADVERTISEMENT_V4_LEN {
                    return Err(Error::Truncated);
                }
                // §5.1.2.5: the Relay Address is 4 or 16 bytes; the family follows from the
                // message length.
                if len != ADVERTISEMENT_V4_LEN && len != ADVERTISEMENT_V6_LEN {
                    return Err(Error::Malformed("AMT relay address length"));
                }
                ADVERTISEMENT_V4_LEN
            }
            TYPE_REQUEST => REQUEST_LEN,
            TYPE_QUERY => {
                let g = data.get(field::FLAGS).is_some_and(|&f| f & FLAG_G != 0);
                if g { QUERY_HEADER_LEN + GATEWAY_FIELDS_LEN } else { QUERY_HEADER_LEN }
            }
            TYPE_UPDATE => QUERY_HEADER_LEN,
            TYPE_DATA => DATA_HEADER_LEN,
            TYPE_TEARDOWN => TEARDOWN_LEN,
            _ => 1,
        };
        if len < min {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn type_bits(&self) -> Option<u8> {
        self.bytes().get(field::VER_TYPE).map(|b| b & 0x0f)
    }

    fn read_u32_at(&self, at: usize) -> Option<u32> {
        let b = self.bytes().get(at..at + 4)?;
        Some(read_u32(b, 0))
    }

    /// The Version field (high nibble of byte 0; 0 in every RFC 7450 message). 0 for an
    /// empty unchecked buffer.
    pub fn version(&self) -> u8 {
        self.bytes().get(field::VER_TYPE).map_or(0, |b| b >> 4)
    }

    /// The Type field (low nibble of byte 0).
    pub fn msg_type(&self) -> MessageType {
        MessageType::from(self.type_bits().unwrap_or(0))
    }

    /// Everything after byte 0 (the whole message body, for unknown types).
    pub fn body(&self) -> &[u8] {
        self.bytes().get(1..).unwrap_or(&[])
    }

    /// The Discovery Nonce (Discovery, Advertisement: §5.1.1.4, §5.1.2.4) or Request Nonce
    /// (Request, Query, Update, Teardown: §5.1.3.5, §5.1.4.7, §5.1.5.5, §5.1.7.5).
    pub fn nonce(&self) -> Option<u32> {
        match self.type_bits()? {
            TYPE_DISCOVERY | TYPE_ADVERTISEMENT | TYPE_REQUEST => self.read_u32_at(field::SHORT_NONCE),
            TYPE_QUERY | TYPE_UPDATE | TYPE_TEARDOWN => self.read_u32_at(field::LONG_NONCE),
            _ => None,
        }
    }

    /// The Relay Address of an Advertisement (§5.1.2.5): IPv4 if the message is 12 bytes,
    /// IPv6 if it is 24.
    pub fn relay_addr(&self) -> Option<IpAddr> {
        if self.type_bits()? != TYPE_ADVERTISEMENT {
            return None;
        }
        let data = self.bytes();
        match data.len() {
            ADVERTISEMENT_V4_LEN => Some(IpAddr::V4(read_ipv4(data, field::RELAY_ADDR))),
            ADVERTISEMENT_V6_LEN => Some(IpAddr::V6(read_ipv6(data, field::RELAY_ADDR))),
            _ => None,
        }
    }

    fn flag(&self, kind: u8, mask: u8) -> Option<bool> {
        if self.type_bits()? != kind {
            return None;
        }
        self.bytes().get(field::FLAGS).map(|f| f & mask != 0)
    }

    /// The P flag of a Request (§5.1.3.4): `false` asks for an IPv4 IGMPv3 General Query,
    /// `true` for an IPv6 MLDv2 General Query. (tshark 4.0 labels the two values the other
    /// way round; the RFC text is authoritative.)
    pub fn p_flag(&self) -> Option<bool> {
        self.flag(TYPE_REQUEST, FLAG_P)
    }

    /// The L (Limit) flag of a Query (§5.1.4.4): the relay accepts no Updates from new
    /// gateway endpoints.
    pub fn l_flag(&self) -> Option<bool> {
        self.flag(TYPE_QUERY, FLAG_L)
    }

    /// The G (Gateway Address) flag of a Query (§5.1.4.5): the Gateway Port and IP fields
    /// follow the encapsulated query.
    pub fn g_flag(&self) -> Option<bool> {
        self.flag(TYPE_QUERY, FLAG_G)
    }

    /// The 48-bit Response MAC of a Query, Update or Teardown (§5.1.4.6), opaque to the
    /// gateway, which echoes it verbatim.
    pub fn response_mac(&self) -> Option<[u8; 6]> {
        match self.type_bits()? {
            TYPE_QUERY | TYPE_UPDATE | TYPE_TEARDOWN => self.bytes().get(field::MAC)?.try_into().ok(),
            _ => None,
        }
    }

    /// The Response MAC as an integer (see [`mac_to_u64`]).
    pub fn response_mac_u64(&self) -> Option<u64> {
        self.response_mac().map(mac_to_u64)
    }

    /// Offset of the Gateway Port Number: 12 in a Teardown (§5.1.7), length − 18 in a Query
    /// with G = 1 (§5.1.4.9, found without parsing the encapsulated datagram).
    fn gateway_offset(&self) -> Option<usize> {
        let len = self.bytes().len();
        let at = match self.type_bits()? {
            TYPE_QUERY if self.g_flag()? => len.checked_sub(GATEWAY_FIELDS_LEN)?,
            TYPE_TEARDOWN => field::TEARDOWN_PORT,
            _ => return None,
        };
        (at >= QUERY_HEADER_LEN && at + GATEWAY_FIELDS_LEN <= len).then_some(at)
    }

    /// The Gateway Port Number of a Query with G = 1 or a Teardown (§5.1.4.9.1, §5.1.7.6).
    pub fn gateway_port(&self) -> Option<u16> {
        let at = self.gateway_offset()?;
        Some(read_u16(self.bytes(), at))
    }

    /// The raw 16-byte Gateway IP Address of a Query with G = 1 or a Teardown, exactly as
    /// sent (the relay's MAC covers these bytes).
    pub fn gateway_addr_octets(&self) -> Option<[u8; 16]> {
        let at = self.gateway_offset()? + 2;
        self.bytes().get(at..at + 16)?.try_into().ok()
    }

    /// The Gateway IP Address of a Query with G = 1 or a Teardown (§5.1.4.9.2, §5.1.7.7),
    /// decoded by [`decode_gateway_addr`].
    pub fn gateway_addr(&self) -> Option<IpAddr> {
        self.gateway_addr_octets().map(decode_gateway_addr)
    }

    fn encapsulated_range(&self) -> Option<Range<usize>> {
        let len = self.bytes().len();
        let range = match self.type_bits()? {
            TYPE_QUERY => {
                let end = if self.g_flag()? { len.checked_sub(GATEWAY_FIELDS_LEN)? } else { len };
                field::ENCAPSULATED..end
            }
            TYPE_UPDATE => field::ENCAPSULATED..len,
            TYPE_DATA => field::DATA..len,
            _ => return None,
        };
        (range.start <= range.end).then_some(range)
    }

    /// The encapsulated IP datagram of a Query (§5.1.4.8: IGMPv3 or MLDv2 General Query,
    /// before the gateway fields when G = 1), an Update (§5.1.5.6) or Multicast Data
    /// (§5.1.6.4). Not parsed here.
    pub fn encapsulated(&self) -> Option<&[u8]> {
        let range = self.encapsulated_range()?;
        self.bytes().get(range)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// The encapsulated datagram, mutably (for example to decrement the inner TTL before
    /// forwarding decapsulated data).
    pub fn encapsulated_mut(&mut self) -> Option<&mut [u8]> {
        let range = self.encapsulated_range()?;
        self.buffer.as_mut().get_mut(range)
    }
}

/// A parsed AMT message. The encapsulated datagrams of Query, Update and Data are borrowed
/// from the packet, so parsing never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr<'a> {
    /// Relay Discovery (§5.1.1).
    RelayDiscovery {
        /// Discovery Nonce (§5.1.1.4).
        nonce: u32,
    },
    /// Relay Advertisement (§5.1.2).
    RelayAdvertisement {
        /// Discovery Nonce copied from the Discovery (§5.1.2.4).
        nonce: u32,
        /// Relay Address (§5.1.2.5): 4 bytes on the wire for IPv4, 16 for IPv6.
        relay: IpAddr,
    },
    /// Request (§5.1.3).
    Request {
        /// Request Nonce (§5.1.3.5).
        nonce: u32,
        /// P flag (§5.1.3.4): `false` = IPv4/IGMPv3 General Query wanted, `true` =
        /// IPv6/MLDv2. tshark 4.0 labels these the wrong way round.
        p_flag: bool,
    },
    /// Membership Query (§5.1.4).
    MembershipQuery {
        /// L flag (§5.1.4.4): the relay accepts no Updates from new gateway endpoints.
        limit: bool,
        /// Response MAC (§5.1.4.6).
        mac: [u8; 6],
        /// Request Nonce echoed from the Request (§5.1.4.7).
        nonce: u32,
        /// The encapsulated IP datagram with an IGMPv3 or MLDv2 General Query (§5.1.4.8).
        query: &'a [u8],
        /// Gateway Port Number and IP Address (§5.1.4.9), present iff G = 1.
        gateway: Option<(u16, IpAddr)>,
    },
    /// Membership Update (§5.1.5).
    MembershipUpdate {
        /// Response MAC copied from the Query (§5.1.5.4).
        mac: [u8; 6],
        /// Request Nonce copied from the Query (§5.1.5.5).
        nonce: u32,
        /// The encapsulated IP datagram with an IGMP or MLD report (§5.1.5.6).
        update: &'a [u8],
    },
    /// Multicast Data (§5.1.6).
    MulticastData {
        /// The encapsulated IP multicast datagram (§5.1.6.4).
        datagram: &'a [u8],
    },
    /// Teardown (§5.1.7).
    Teardown {
        /// Response MAC from the Query sent to the old endpoint (§5.1.7.4).
        mac: [u8; 6],
        /// Request Nonce from that Query (§5.1.7.5).
        nonce: u32,
        /// Gateway Port Number of the old endpoint (§5.1.7.6).
        gateway_port: u16,
        /// Gateway IP Address of the old endpoint (§5.1.7.7).
        gateway_addr: IpAddr,
    },
    /// A message type RFC 7450 does not define, kept verbatim.
    Unknown {
        /// The Type nibble (0 or 8–15).
        kind: u8,
        /// Everything after byte 0.
        body: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a checked packet. The encapsulated datagrams are borrowed, not copied.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        let data: &'a [u8] = T::as_ref(packet.buffer);
        let len = data.len();
        // check_len guaranteed the lengths used below for each type.
        let mac = |d: &[u8]| [d[2], d[3], d[4], d[5], d[6], d[7]];
        let gateway_addr = |at: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&data[at..at + 16]);
            decode_gateway_addr(octets)
        };
        let repr = match data[field::VER_TYPE] & 0x0f {
            TYPE_DISCOVERY => Repr::RelayDiscovery { nonce: read_u32(data, field::SHORT_NONCE) },
            TYPE_ADVERTISEMENT => {
                let relay = if len == ADVERTISEMENT_V4_LEN {
                    IpAddr::V4(read_ipv4(data, field::RELAY_ADDR))
                } else {
                    IpAddr::V6(read_ipv6(data, field::RELAY_ADDR))
                };
                Repr::RelayAdvertisement { nonce: read_u32(data, field::SHORT_NONCE), relay }
            }
            TYPE_REQUEST => {
                Repr::Request { nonce: read_u32(data, field::SHORT_NONCE), p_flag: data[field::FLAGS] & FLAG_P != 0 }
            }
            TYPE_QUERY => {
                let flags = data[field::FLAGS];
                let (end, gateway) = if flags & FLAG_G != 0 {
                    let at = len - GATEWAY_FIELDS_LEN;
                    (at, Some((read_u16(data, at), gateway_addr(at + 2))))
                } else {
                    (len, None)
                };
                Repr::MembershipQuery {
                    limit: flags & FLAG_L != 0,
                    mac: mac(data),
                    nonce: read_u32(data, field::LONG_NONCE),
                    query: &data[field::ENCAPSULATED..end],
                    gateway,
                }
            }
            TYPE_UPDATE => Repr::MembershipUpdate {
                mac: mac(data),
                nonce: read_u32(data, field::LONG_NONCE),
                update: &data[field::ENCAPSULATED..],
            },
            TYPE_DATA => Repr::MulticastData { datagram: &data[field::DATA..] },
            TYPE_TEARDOWN => Repr::Teardown {
                mac: mac(data),
                nonce: read_u32(data, field::LONG_NONCE),
                gateway_port: read_u16(data, field::TEARDOWN_PORT),
                gateway_addr: gateway_addr(field::TEARDOWN_ADDR),
            },
            kind => Repr::Unknown { kind, body: &data[1..] },
        };
        Ok(repr)
    }

    /// Parses a UDP payload (`Packet::new_checked` followed by [`Repr::parse`]).
    pub fn parse_bytes(payload: &'a [u8]) -> Result<Repr<'a>> {
        Repr::parse(&Packet::new_checked(payload)?)
    }

    /// The message type of this representation.
    pub fn msg_type(&self) -> MessageType {
        match self {
            Repr::RelayDiscovery { .. } => MessageType::RelayDiscovery,
            Repr::RelayAdvertisement { .. } => MessageType::RelayAdvertisement,
            Repr::Request { .. } => MessageType::Request,
            Repr::MembershipQuery { .. } => MessageType::MembershipQuery,
            Repr::MembershipUpdate { .. } => MessageType::MembershipUpdate,
            Repr::MulticastData { .. } => MessageType::MulticastData,
            Repr::Teardown { .. } => MessageType::Teardown,
            Repr::Unknown { kind, .. } => MessageType::Unknown(*kind),
        }
    }

    /// The length of the UDP payload [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::RelayDiscovery { .. } => DISCOVERY_LEN,
            Repr::RelayAdvertisement { relay: IpAddr::V4(_), .. } => ADVERTISEMENT_V4_LEN,
            Repr::RelayAdvertisement { relay: IpAddr::V6(_), .. } => ADVERTISEMENT_V6_LEN,
            Repr::Request { .. } => REQUEST_LEN,
            Repr::MembershipQuery { query, gateway, .. } => {
                QUERY_HEADER_LEN + query.len() + if gateway.is_some() { GATEWAY_FIELDS_LEN } else { 0 }
            }
            Repr::MembershipUpdate { update, .. } => QUERY_HEADER_LEN + update.len(),
            Repr::MulticastData { datagram } => DATA_HEADER_LEN + datagram.len(),
            Repr::Teardown { .. } => TEARDOWN_LEN,
            Repr::Unknown { body, .. } => 1 + body.len(),
        }
    }

    /// Writes the message at the start of `buf` (reserved bits zero) and returns its length.
    ///
    /// Fails with `BufferTooSmall` if `buf` is short, and with `Malformed` for an IPv4
    /// gateway address 0.0.0.0/0.0.0.1 (see [`encode_gateway_addr`]) or an `Unknown` whose
    /// `kind` is not a 4-bit value outside 1–7 (it would not parse back as `Unknown`).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        // Validate before writing anything.
        let gateway = match self {
            Repr::MembershipQuery { gateway: Some((port, addr)), .. } => Some((*port, encode_gateway_addr(addr)?)),
            Repr::Teardown { gateway_port, gateway_addr, .. } => {
                Some((*gateway_port, encode_gateway_addr(gateway_addr)?))
            }
            Repr::Unknown { kind, .. } if *kind > 0x0f || (TYPE_DISCOVERY..=TYPE_TEARDOWN).contains(kind) => {
                return Err(Error::Malformed("AMT unknown message type"));
            }
            _ => None,
        };
        let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        // Every byte past the 12-byte fixed part is written below; zero only the part that
        // holds reserved bits, so emitting Multicast Data does not touch the datagram twice.
        buf[..len.min(QUERY_HEADER_LEN)].fill(0);
        buf[field::VER_TYPE] = u8::from(self.msg_type());
        let write_mac_nonce = |buf: &mut [u8], mac: &[u8; 6], nonce: u32| {
            buf[field::MAC].copy_from_slice(mac);
            write_u32(buf, field::LONG_NONCE, nonce);
        };
        let write_gateway = |buf: &mut [u8], at: usize| {
            if let Some((port, octets)) = gateway {
                write_u16(buf, at, port);
                buf[at + 2..at + GATEWAY_FIELDS_LEN].copy_from_slice(&octets);
            }
        };
        match self {
            Repr::RelayDiscovery { nonce } => write_u32(buf, field::SHORT_NONCE, *nonce),
            Repr::RelayAdvertisement { nonce, relay } => {
                write_u32(buf, field::SHORT_NONCE, *nonce);
                match relay {
                    IpAddr::V4(v4) => buf[field::RELAY_ADDR..].copy_from_slice(&v4.octets()),
                    IpAddr::V6(v6) => buf[field::RELAY_ADDR..].copy_from_slice(&v6.octets()),
                }
            }
            Repr::Request { nonce, p_flag } => {
                buf[field::FLAGS] = if *p_flag { FLAG_P } else { 0 };
                write_u32(buf, field::SHORT_NONCE, *nonce);
            }
            Repr::MembershipQuery { limit, mac, nonce, query, gateway: g } => {
                buf[field::FLAGS] = if *limit { FLAG_L } else { 0 } | if g.is_some() { FLAG_G } else { 0 };
                write_mac_nonce(buf, mac, *nonce);
                let end = field::ENCAPSULATED + query.len();
                buf[field::ENCAPSULATED..end].copy_from_slice(query);
                write_gateway(buf, end);
            }
            Repr::MembershipUpdate { mac, nonce, update } => {
                write_mac_nonce(buf, mac, *nonce);
                buf[field::ENCAPSULATED..].copy_from_slice(update);
            }
            Repr::MulticastData { datagram } => buf[field::DATA..].copy_from_slice(datagram),
            Repr::Teardown { mac, nonce, .. } => {
                write_mac_nonce(buf, mac, *nonce);
                write_gateway(buf, field::TEARDOWN_PORT);
            }
            Repr::Unknown { body, .. } => buf[1..].copy_from_slice(body),
        }
        Ok(len)
    }

    /// Emits into a new `Vec` (for control messages; the data path should use
    /// [`Repr::emit`] or [`emit_data_header`] on its own buffer).
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = vec![0; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONCE: u32 = 0x1a2b_3c4d;
    const MAC: [u8; 6] = [0x01, 0x02, 0x03, 0x04, 0x05, 0xa6];

    // Samples: protocols.md §A1 "Example encodings" (UDP payloads).
    const DISCOVERY: &str = "010000001a2b3c4d";
    const ADVERTISEMENT: &str = "020000001a2b3c4dcb00710f";
    const REQUEST: &str = "030000001a2b3c4d";
    const QUERY_HEAD: &str = "04000102030405a61a2b3c4d";
    /// IPv4 (IHL 6, Router Alert) + IGMPv3 General Query, 198.51.100.1 → 224.0.0.1.
    const QUERY_INNER: &str = "46c0002400000000010219dec6336401e0000001940400001164ec1e00000000027d0000";
    const UPDATE_HEAD: &str = "05000102030405a61a2b3c4d";
    /// IPv4 + IGMPv3 Report, ALLOW_NEW_SOURCES 232.1.1.1 from 23.212.185.4.
    const UPDATE_INNER: &str =
        "46c0002c000000000102 43f600000000e000001694040000 22001f2200000001 05000001e801010117d4b904";
    /// IPv4 + UDP 40000 → 5001 with payload "amt-payload".
    const DATA_INNER: &str = "4500002700000000 4011c0eb17d4b904e8010101 9c40138900130000 616d742d7061796c6f6164";
    /// Teardown with the gateway address in IPv4-mapped form.
    const TEARDOWN_MAPPED: &str = "07000102030405a61a2b3c4d08dc00000000000000000000ffffc6336407";
    /// The same Teardown in the IPv4-compatible form our emitter writes.
    const TEARDOWN_COMPATIBLE: &str = "07000102030405a61a2b3c4d08dc000000000000000000000000c6336407";

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn query_bytes() -> Vec<u8> {
        hex(&format!("{QUERY_HEAD}{QUERY_INNER}"))
    }

    fn update_bytes() -> Vec<u8> {
        hex(&format!("{UPDATE_HEAD}{UPDATE_INNER}"))
    }

    fn data_bytes() -> Vec<u8> {
        hex(&format!("0600{DATA_INNER}"))
    }

    /// Parses, and checks that emit reproduces the input byte for byte.
    fn parse_roundtrip(bytes: &[u8]) -> Repr<'_> {
        let repr = Repr::parse(&Packet::new_checked(bytes).unwrap()).unwrap();
        assert_eq!(repr.buffer_len(), bytes.len());
        assert_eq!(hex::encode(repr.to_vec().unwrap()), hex::encode(bytes));
        repr
    }

    #[test]
    fn relay_discovery_sample() {
        let bytes = hex(DISCOVERY);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 0);
        assert_eq!(packet.msg_type(), MessageType::RelayDiscovery);
        assert_eq!(packet.nonce(), Some(NONCE));
        assert_eq!(packet.response_mac(), None);
        assert_eq!(packet.encapsulated(), None);
        assert_eq!(parse_roundtrip(&bytes), Repr::RelayDiscovery { nonce: NONCE });
    }

    #[test]
    fn relay_advertisement_samples() {
        let bytes = hex(ADVERTISEMENT);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        let relay = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 15));
        assert_eq!(packet.relay_addr(), Some(relay));
        assert_eq!(packet.nonce(), Some(NONCE));
        assert_eq!(parse_roundtrip(&bytes), Repr::RelayAdvertisement { nonce: NONCE, relay });

        let v6 = hex("020000001a2b3c4d 20010db8000000000000000000000015");
        let relay: IpAddr = "2001:db8::15".parse().unwrap();
        assert_eq!(Packet::new_checked(&v6[..]).unwrap().relay_addr(), Some(relay));
        assert_eq!(parse_roundtrip(&v6), Repr::RelayAdvertisement { nonce: NONCE, relay });
    }

    #[test]
    fn request_samples() {
        let bytes = hex(REQUEST);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.p_flag(), Some(false));
        assert_eq!(packet.l_flag(), None);
        assert_eq!(parse_roundtrip(&bytes), Repr::Request { nonce: NONCE, p_flag: false });

        let p1 = hex("030100001a2b3c4d");
        assert_eq!(Packet::new_checked(&p1[..]).unwrap().p_flag(), Some(true));
        assert_eq!(parse_roundtrip(&p1), Repr::Request { nonce: NONCE, p_flag: true });
    }

    #[test]
    fn membership_query_sample() {
        let bytes = query_bytes();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.msg_type(), MessageType::MembershipQuery);
        assert_eq!(packet.l_flag(), Some(false));
        assert_eq!(packet.g_flag(), Some(false));
        assert_eq!(packet.response_mac(), Some(MAC));
        assert_eq!(packet.response_mac_u64(), Some(0x0102_0304_05a6));
        assert_eq!(packet.nonce(), Some(NONCE));
        assert_eq!(packet.gateway_port(), None);
        assert_eq!(packet.gateway_addr(), None);
        assert_eq!(packet.encapsulated(), Some(&hex(QUERY_INNER)[..]));
        let repr = parse_roundtrip(&bytes);
        assert_eq!(
            repr,
            Repr::MembershipQuery { limit: false, mac: MAC, nonce: NONCE, query: &hex(QUERY_INNER), gateway: None }
        );
    }

    #[test]
    fn membership_query_with_limit_and_gateway() {
        let inner = hex(QUERY_INNER);
        // L = 1, G = 0.
        let mut limited = query_bytes();
        limited[1] = FLAG_L;
        let repr = parse_roundtrip(&limited);
        assert!(matches!(repr, Repr::MembershipQuery { limit: true, gateway: None, .. }));

        // G = 1 with an IPv4 gateway (IPv4-compatible) and an IPv6 gateway; the gateway
        // fields are found 18 bytes from the end without parsing the inner datagram.
        for (tail, addr) in [
            ("08dc 000000000000000000000000c6336407", IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
            ("c350 20010db8000000000000000000000007", "2001:db8::7".parse().unwrap()),
        ] {
            let mut bytes = query_bytes();
            bytes[1] = FLAG_L | FLAG_G;
            bytes.extend_from_slice(&hex(tail));
            let port = read_u16(&bytes, bytes.len() - 18);
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(packet.g_flag(), Some(true));
            assert_eq!(packet.gateway_port(), Some(port));
            assert_eq!(packet.gateway_addr(), Some(addr));
            assert_eq!(packet.encapsulated(), Some(&inner[..]));
            let repr = parse_roundtrip(&bytes);
            assert_eq!(
                repr,
                Repr::MembershipQuery {
                    limit: true,
                    mac: MAC,
                    nonce: NONCE,
                    query: &inner,
                    gateway: Some((port, addr))
                }
            );
        }
    }

    #[test]
    fn membership_update_sample() {
        let bytes = update_bytes();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.response_mac(), Some(MAC));
        assert_eq!(packet.nonce(), Some(NONCE));
        assert_eq!(packet.encapsulated(), Some(&hex(UPDATE_INNER)[..]));
        assert_eq!(
            parse_roundtrip(&bytes),
            Repr::MembershipUpdate { mac: MAC, nonce: NONCE, update: &hex(UPDATE_INNER) }
        );
    }

    #[test]
    fn multicast_data_sample_and_fast_path() {
        let bytes = data_bytes();
        let inner = hex(DATA_INNER);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.nonce(), None);
        assert_eq!(packet.encapsulated(), Some(&inner[..]));
        assert_eq!(parse_roundtrip(&bytes), Repr::MulticastData { datagram: &inner });
        assert_eq!(parse_data(&bytes), Some(&inner[..]));
        assert_eq!(parse_data(&[0x06, 0xff]), Some(&[][..]), "reserved byte ignored");
        assert_eq!(parse_data(&[0x06]), None);
        assert_eq!(parse_data(&[0x16, 0x00, 0x45]), None, "version 1");
        assert_eq!(parse_data(&hex(DISCOVERY)), None);

        // A relay reserves two bytes in front of the datagram it already holds.
        let mut buf = vec![0xee; 2 + inner.len()];
        buf[2..].copy_from_slice(&inner);
        assert_eq!(emit_data_header(&mut buf), Ok(2));
        assert_eq!(buf, bytes);
        assert_eq!(data_header(), [0x06, 0x00]);
        assert_eq!(emit_data_header(&mut [0u8; 1]), Err(Error::BufferTooSmall));

        // Decapsulated data can be edited in place (e.g. the inner TTL).
        let mut owned = bytes.clone();
        let mut packet = Packet::new_checked(&mut owned[..]).unwrap();
        packet.encapsulated_mut().unwrap()[8] = 63;
        assert_eq!(owned[10], 63);
    }

    #[test]
    fn teardown_samples() {
        let mapped = hex(TEARDOWN_MAPPED);
        let packet = Packet::new_checked(&mapped[..]).unwrap();
        let addr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(packet.response_mac(), Some(MAC));
        assert_eq!(packet.nonce(), Some(NONCE));
        assert_eq!(packet.gateway_port(), Some(2268));
        assert_eq!(packet.gateway_addr(), Some(addr));
        assert_eq!(packet.gateway_addr_octets(), Some(hex("00000000000000000000ffffc6336407").try_into().unwrap()));
        let expected = Repr::Teardown { mac: MAC, nonce: NONCE, gateway_port: 2268, gateway_addr: addr };
        assert_eq!(Repr::parse(&packet).unwrap(), expected);
        // Our emitter writes the IPv4-compatible form of RFC 7450 §5.1.7.7, not the mapped one.
        assert_eq!(hex::encode(expected.to_vec().unwrap()), TEARDOWN_COMPATIBLE);
        assert_eq!(parse_roundtrip(&hex(TEARDOWN_COMPATIBLE)), expected);
    }

    #[test]
    fn unknown_types_are_kept() {
        for bytes in [hex("0f123456"), hex("00"), hex("08ff")] {
            let repr = parse_roundtrip(&bytes);
            assert_eq!(repr, Repr::Unknown { kind: bytes[0], body: &bytes[1..] });
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(packet.msg_type(), MessageType::Unknown(bytes[0]));
            assert_eq!(packet.nonce(), None);
            assert_eq!(packet.encapsulated(), None);
        }
        // Emitting an Unknown with a known or non-4-bit type is refused.
        for kind in [1, 7, 16, 0xff] {
            let repr = Repr::Unknown { kind, body: &[] };
            assert_eq!(repr.emit(&mut [0u8; 4]), Err(Error::Malformed("AMT unknown message type")));
        }
    }

    #[test]
    fn message_type_conversions() {
        for v in 0..=15u8 {
            assert_eq!(u8::from(MessageType::from(v)), v);
        }
    }

    #[test]
    fn reserved_bits_are_ignored() {
        // §5.1.x.3: the receiver ignores reserved bits.
        let discovery = hex("01ffffff1a2b3c4d");
        assert_eq!(Repr::parse_bytes(&discovery), Ok(Repr::RelayDiscovery { nonce: NONCE }));
        let request = hex("03feffff1a2b3c4d");
        assert_eq!(Repr::parse_bytes(&request), Ok(Repr::Request { nonce: NONCE, p_flag: false }));
        let mut query = query_bytes();
        query[1] = 0xfc;
        assert!(matches!(Repr::parse_bytes(&query), Ok(Repr::MembershipQuery { limit: false, gateway: None, .. })));
        let mut data = data_bytes();
        data[1] = 0xff;
        assert!(matches!(Repr::parse_bytes(&data), Ok(Repr::MulticastData { .. })));
    }

    #[test]
    fn trailing_bytes_after_fixed_messages_are_ignored() {
        let mut discovery = hex(DISCOVERY);
        discovery.push(0xaa);
        assert_eq!(Repr::parse_bytes(&discovery), Ok(Repr::RelayDiscovery { nonce: NONCE }));
        let mut teardown = hex(TEARDOWN_COMPATIBLE);
        teardown.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(Repr::parse_bytes(&teardown), Ok(Repr::Teardown { gateway_port: 2268, .. })));
    }

    #[test]
    fn rejects_truncation_at_every_length() {
        let cases = [
            (hex(DISCOVERY), DISCOVERY_LEN),
            (hex(ADVERTISEMENT), ADVERTISEMENT_V4_LEN),
            (hex(REQUEST), REQUEST_LEN),
            (query_bytes(), QUERY_HEADER_LEN),
            (update_bytes(), QUERY_HEADER_LEN),
            (data_bytes(), DATA_HEADER_LEN),
            (hex(TEARDOWN_COMPATIBLE), TEARDOWN_LEN),
        ];
        for (bytes, min) in cases {
            for n in 0..min {
                assert_eq!(Packet::new_checked(&bytes[..n]).unwrap_err(), Error::Truncated, "{bytes:02x?} at {n}");
                assert_eq!(Repr::parse_bytes(&bytes[..n]).unwrap_err(), Error::Truncated);
            }
            // Variable-length messages accept any longer prefix (the inner datagram is not
            // parsed here).
            if matches!(bytes[0], TYPE_QUERY | TYPE_UPDATE | TYPE_DATA) {
                for n in min..=bytes.len() {
                    assert!(Repr::parse_bytes(&bytes[..n]).is_ok());
                }
            }
        }
        // A Query with G = 1 needs the 18 gateway bytes after the 12-byte header.
        let mut g = query_bytes()[..QUERY_HEADER_LEN].to_vec();
        g[1] = FLAG_G;
        g.extend_from_slice(&[0; GATEWAY_FIELDS_LEN]);
        for n in 0..g.len() {
            assert_eq!(Packet::new_checked(&g[..n]).unwrap_err(), Error::Truncated);
        }
        let repr = Repr::parse_bytes(&g).unwrap();
        assert!(matches!(repr, Repr::MembershipQuery { query: [], gateway: Some((0, IpAddr::V6(_))), .. }));
    }

    #[test]
    fn rejects_bad_advertisement_lengths_and_versions() {
        let v6 = hex("020000001a2b3c4d 20010db8000000000000000000000015 00");
        for n in (ADVERTISEMENT_V4_LEN + 1..ADVERTISEMENT_V6_LEN).chain([ADVERTISEMENT_V6_LEN + 1]) {
            assert_eq!(Packet::new_checked(&v6[..n]).unwrap_err(), Error::Malformed("AMT relay address length"));
        }
        for (first, version) in [(0x11, 1), (0x16, 1), (0xf0, 15)] {
            let mut bytes = data_bytes();
            bytes[0] = first;
            assert_eq!(Packet::new_checked(&bytes[..]).unwrap_err(), Error::BadVersion(version));
        }
    }

    #[test]
    fn emit_rejects_short_buffers() {
        let samples = [
            hex(DISCOVERY),
            hex(ADVERTISEMENT),
            hex(REQUEST),
            query_bytes(),
            update_bytes(),
            data_bytes(),
            hex(TEARDOWN_COMPATIBLE),
        ];
        for bytes in &samples {
            let repr = Repr::parse_bytes(bytes).unwrap();
            let mut buf = vec![0u8; bytes.len() + 3];
            for n in 0..bytes.len() {
                assert_eq!(repr.emit(&mut buf[..n]), Err(Error::BufferTooSmall));
            }
            // A longer buffer is fine; only the message is written.
            buf.fill(0xee);
            assert_eq!(repr.emit(&mut buf), Ok(bytes.len()));
            assert_eq!(&buf[..bytes.len()], &bytes[..]);
            assert_eq!(&buf[bytes.len()..], &[0xee; 3]);
        }
    }

    #[test]
    fn gateway_address_forms() {
        let v4 = |s: &str| IpAddr::V4(s.parse().unwrap());
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        let decode = |s: &str| decode_gateway_addr(s.parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(decode("::198.51.100.7"), v4("198.51.100.7"));
        assert_eq!(decode("::ffff:198.51.100.7"), v4("198.51.100.7"));
        assert_eq!(decode("::0.0.0.2"), v4("0.0.0.2"));
        assert_eq!(decode("::"), v6("::"));
        assert_eq!(decode("::1"), v6("::1"));
        assert_eq!(decode("::ffff:0.0.0.1"), v6("::ffff:0.0.0.1"));
        assert_eq!(decode("2001:db8::7"), v6("2001:db8::7"));
        assert_eq!(decode("::1:0:0:7"), v6("::1:0:0:7"));
        assert_eq!(
            encode_gateway_addr(&v4("198.51.100.7")).unwrap(),
            "::198.51.100.7".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(
            encode_gateway_addr(&v6("2001:db8::7")).unwrap(),
            "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets()
        );
        for bad in ["0.0.0.0", "0.0.0.1"] {
            assert_eq!(
                encode_gateway_addr(&v4(bad)),
                Err(Error::Malformed("AMT gateway IPv4 address 0.0.0.0/0.0.0.1"))
            );
            let repr = Repr::Teardown { mac: MAC, nonce: NONCE, gateway_port: 1, gateway_addr: v4(bad) };
            assert!(matches!(repr.emit(&mut [0u8; 64]), Err(Error::Malformed(_))));
        }
    }

    #[test]
    fn mac_helpers() {
        assert_eq!(mac_to_u64(MAC), 0x0000_0102_0304_05a6);
        assert_eq!(mac_from_u64(0xffff_0102_0304_05a6), MAC);
        assert_eq!(mac_from_u64(mac_to_u64([0xff; 6])), [0xff; 6]);
    }

    #[test]
    fn unchecked_accessors_never_panic_on_short_buffers() {
        for first in 0..=0x1fu8 {
            for len in 0..=20usize {
                let mut bytes = vec![0xffu8; len];
                if let Some(b) = bytes.first_mut() {
                    *b = first;
                }
                exercise(&Packet::new_unchecked(&bytes[..]));
            }
        }
    }

    #[test]
    fn snapshots() {
        let adv6 = hex("020000001a2b3c4d 20010db8000000000000000000000015");
        let mut query_g = query_bytes();
        query_g[1] = FLAG_G;
        query_g.extend_from_slice(&hex("08dc 000000000000000000000000c6336407"));
        let query = query_bytes();
        let update = update_bytes();
        let data = data_bytes();
        let teardown = hex(TEARDOWN_MAPPED);
        insta::assert_debug_snapshot!("relay_discovery", Repr::parse_bytes(&hex(DISCOVERY)).unwrap());
        insta::assert_debug_snapshot!("relay_advertisement_v4", Repr::parse_bytes(&hex(ADVERTISEMENT)).unwrap());
        insta::assert_debug_snapshot!("relay_advertisement_v6", Repr::parse_bytes(&adv6).unwrap());
        insta::assert_debug_snapshot!("request_p1", Repr::parse_bytes(&hex("030100001a2b3c4d")).unwrap());
        insta::assert_debug_snapshot!("membership_query", Repr::parse_bytes(&query).unwrap());
        insta::assert_debug_snapshot!("membership_query_g", Repr::parse_bytes(&query_g).unwrap());
        insta::assert_debug_snapshot!("membership_update", Repr::parse_bytes(&update).unwrap());
        insta::assert_debug_snapshot!("multicast_data", Repr::parse_bytes(&data).unwrap());
        insta::assert_debug_snapshot!("teardown_mapped", Repr::parse_bytes(&teardown).unwrap());
    }

    /// Calls every accessor; used by the never-panic tests.
    fn exercise(packet: &Packet<&[u8]>) {
        let _ = (packet.version(), packet.msg_type(), packet.body(), packet.nonce(), packet.relay_addr());
        let _ = (packet.p_flag(), packet.l_flag(), packet.g_flag(), packet.response_mac(), packet.response_mac_u64());
        let _ = (packet.gateway_port(), packet.gateway_addr(), packet.gateway_addr_octets(), packet.encapsulated());
        let _ = packet.check_len();
        let mut owned = packet.into_inner().to_vec();
        let _ = Packet::new_unchecked(&mut owned[..]).encapsulated_mut();
        let _ = parse_data(packet.into_inner());
    }

    /// Arbitrary bytes whose first byte is usually a valid version-0 type.
    fn amt_bytes() -> impl Strategy<Value = Vec<u8>> {
        (prop_oneof![4 => 0u8..=0x0f, 1 => any::<u8>()], proptest::collection::vec(any::<u8>(), 0..72)).prop_map(
            |(first, mut rest)| {
                rest.insert(0, first);
                rest
            },
        )
    }

    fn gateway_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>()
                .prop_filter("0.0.0.0/0.0.0.1 are not encodable", |&a| a > 1)
                .prop_map(|a| IpAddr::V4(a.into())),
            // IPv6 addresses that do not read back as IPv4 (see decode_gateway_addr).
            any::<u128>().prop_map(|a| IpAddr::V6(a.into())).prop_filter("canonical IPv6 gateway", |a| {
                matches!(a, IpAddr::V6(v6) if decode_gateway_addr(v6.octets()) == *a)
            }),
        ]
    }

    fn relay_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![any::<u32>().prop_map(|a| IpAddr::V4(a.into())), any::<u128>().prop_map(|a| IpAddr::V6(a.into()))]
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in amt_bytes()) {
            exercise(&Packet::new_unchecked(&bytes[..]));
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                exercise(&packet);
                if let Ok(repr) = Repr::parse(&packet) {
                    let _ = repr.emit(&mut [0u8; 16]);
                }
            }
            // Any prefix is also handled.
            for n in 0..bytes.len().min(34) {
                let _ = Repr::parse_bytes(&bytes[..n]);
            }
        }

        #[test]
        fn emit_then_parse_roundtrips(
            selector in 0u8..8,
            nonce in any::<u32>(),
            mac in any::<[u8; 6]>(),
            flag in any::<bool>(),
            gateway in proptest::option::of((any::<u16>(), gateway_ip())),
            relay in relay_ip(),
            gateway_addr in gateway_ip(),
            inner in proptest::collection::vec(any::<u8>(), 0..64),
            kind in prop_oneof![Just(0u8), 8u8..=15],
        ) {
            let repr = match selector {
                0 => Repr::RelayDiscovery { nonce },
                1 => Repr::RelayAdvertisement { nonce, relay },
                2 => Repr::Request { nonce, p_flag: flag },
                3 => Repr::MembershipQuery { limit: flag, mac, nonce, query: &inner, gateway },
                4 => Repr::MembershipUpdate { mac, nonce, update: &inner },
                5 => Repr::MulticastData { datagram: &inner },
                6 => Repr::Teardown { mac, nonce, gateway_port: nonce as u16, gateway_addr },
                _ => Repr::Unknown { kind, body: &inner },
            };
            let bytes = repr.to_vec().unwrap();
            prop_assert_eq!(bytes.len(), repr.buffer_len());
            prop_assert_eq!(Repr::parse_bytes(&bytes).unwrap(), repr);
            if let Repr::MulticastData { datagram } = repr {
                prop_assert_eq!(parse_data(&bytes), Some(datagram));
            }
        }

        #[test]
        fn parse_emit_parse_is_stable(bytes in amt_bytes()) {
            if let Ok(repr) = Repr::parse_bytes(&bytes) {
                // Only a mapped gateway address (rewritten as compatible) or trailing bytes
                // after a fixed-length message change the bytes; the meaning never changes.
                let out = repr.to_vec().unwrap();
                prop_assert_eq!(Repr::parse_bytes(&out).unwrap(), repr);
                prop_assert!(out.len() <= bytes.len());
            }
        }
    }
}
