//! AMTRELAY resource record data (RFC 8777 §4): wire form, presentation form (§4.3) and the
//! RFC 3597 generic form (`\# LEN HEX`).
//!
//! DRIAD gateways look up AMTRELAY (type 260) at the reverse name of a multicast source and
//! get back one or more of these records. The RDATA is
//!
//! ```text
//! | precedence (8) | D (1) | type (7) | relay (variable) |
//! ```
//!
//! * [`Packet`] is a zero-copy view of RDATA, like the other modules of this crate.
//! * [`AmtRelay`] is the owned representation, with [`AmtRelay::parse`], [`AmtRelay::emit`],
//!   `Display`/`FromStr` in presentation form and [`AmtRelay::to_generic`] /
//!   [`AmtRelay::from_generic`] in the RFC 3597 form.
//! * Relay types 4–127 are unassigned (IANA registry, after RFC 8777 erratum 6688); they are
//!   kept as [`Relay::Unknown`] so a newer record never makes the parser fail, and
//!   [`AmtRelay::is_usable`] tells a gateway to skip them (§4.2.3: such RRs SHOULD NOT be
//!   considered).
//!
//! Type-3 names: the RFC's own hex examples (§4.3.2, Appendix A) and deployed records such as
//! Akamai's omit the terminating root label, so a name that simply ends at the end of the
//! RDATA is accepted. Names are always emitted with the root label. Compression is forbidden
//! (§4.2.3, RFC 3597 §4), so compression pointers and the reserved label types are rejected.
//!
//! There is no tshark cross-check for this module: Wireshark 4.0 has no AMTRELAY dissector
//! (it shows type 260 as "Unknown" with "Dissector for DNS Type (260) code not implemented").

use core::fmt;
use core::hash::{Hash, Hasher};
use core::str::FromStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Error, Result};

/// Field offsets of the RDATA.
mod field {
    pub const PRECEDENCE: usize = 0;
    pub const D_TYPE: usize = 1;
    pub const RELAY: usize = 2;
}

/// Length of the fixed part of the RDATA (precedence and D/type).
pub const HEADER_LEN: usize = field::RELAY;
/// Largest RDATA a DNS RR can carry (RDLENGTH is 16 bits, RFC 1035 §3.2.1).
pub const MAX_RDATA_LEN: usize = 0xffff;
/// The RR type code of AMTRELAY, assigned by IANA for RFC 8777.
pub const RR_TYPE: u16 = 260;

/// Relay type 0: no relay; no AMT relay should be used for this source (§4.2.3).
pub const TYPE_NONE: u8 = 0;
/// Relay type 1: a 4-byte IPv4 address (§4.2.3).
pub const TYPE_IPV4: u8 = 1;
/// Relay type 2: a 16-byte IPv6 address (§4.2.3).
pub const TYPE_IPV6: u8 = 2;
/// Relay type 3: an uncompressed wire-format domain name (§4.2.3).
pub const TYPE_NAME: u8 = 3;

/// The Discovery Optional bit, most significant bit of byte 1 (§4.2.2).
const D_BIT: u8 = 0x80;
/// The 7-bit relay type below the D bit (§4.2.3).
const TYPE_MASK: u8 = 0x7f;

/// Longest label of a domain name (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest domain name in wire form, root label included (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;

/// A read/write view of AMTRELAY RDATA. [`Packet::new_checked`] guarantees the two fixed bytes
/// are present; the relay field is whatever follows (its shape is checked by
/// [`AmtRelay::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors may panic on a buffer shorter than
    /// [`HEADER_LEN`]; use [`Packet::new_checked`] for untrusted input.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer and checks that every accessor will stay in bounds.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that precedence and D/type are present.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN { Err(Error::Truncated) } else { Ok(()) }
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The precedence; lower values are tried first (§4.2.1).
    pub fn precedence(&self) -> u8 {
        self.buffer.as_ref()[field::PRECEDENCE]
    }

    /// The D (Discovery Optional) bit (§4.2.2): when set, the gateway MAY send a Request
    /// to the relay without first receiving a Relay Advertisement.
    pub fn discovery_optional(&self) -> bool {
        self.buffer.as_ref()[field::D_TYPE] & D_BIT != 0
    }

    /// The 7-bit relay type (§4.2.3): [`TYPE_NONE`], [`TYPE_IPV4`], [`TYPE_IPV6`],
    /// [`TYPE_NAME`] or an unassigned value.
    pub fn relay_type(&self) -> u8 {
        self.buffer.as_ref()[field::D_TYPE] & TYPE_MASK
    }

    /// The raw relay field: everything after the two fixed bytes.
    pub fn relay_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::RELAY..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the precedence.
    pub fn set_precedence(&mut self, value: u8) {
        self.buffer.as_mut()[field::PRECEDENCE] = value;
    }

    /// Sets or clears the D bit, keeping the type.
    pub fn set_discovery_optional(&mut self, value: bool) {
        let byte = &mut self.buffer.as_mut()[field::D_TYPE];
        *byte = if value { *byte | D_BIT } else { *byte & !D_BIT };
    }

    /// Sets the relay type (only its low 7 bits are used), keeping the D bit.
    pub fn set_relay_type(&mut self, value: u8) {
        let byte = &mut self.buffer.as_mut()[field::D_TYPE];
        *byte = (*byte & D_BIT) | (value & TYPE_MASK);
    }

    /// The raw relay field, mutably.
    pub fn relay_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::RELAY..]
    }
}

/// An owned domain name, kept in uncompressed wire form with its root label.
///
/// Case is preserved; equality and hashing are ASCII case-insensitive (RFC 4343).
/// `Display` gives the absolute presentation form with a trailing dot and RFC 1035 §5.1
/// escapes; `FromStr` reads it back (relative names are taken as absolute, `.` is the root).
#[derive(Clone)]
pub struct DomainName {
    /// Wire form: length-prefixed labels ending with the root label `0`. Invariant: every
    /// label is 1..=63 bytes and the whole is at most [`MAX_NAME_LEN`] bytes.
    wire: Vec<u8>,
}

impl DomainName {
    /// The root name `.`.
    pub fn root() -> DomainName {
        DomainName { wire: vec![0] }
    }

    /// Builds a name from its labels (root label not included), checking each label is
    /// 1..=63 bytes and the wire form is at most 255 bytes (RFC 1035 §2.3.4).
    pub fn from_labels<I, L>(labels: I) -> Result<DomainName>
    where
        I: IntoIterator<Item = L>,
        L: AsRef<[u8]>,
    {
        let mut wire = Vec::new();
        for label in labels {
            push_label(&mut wire, label.as_ref()).map_err(Error::Malformed)?;
        }
        wire.push(0);
        Ok(DomainName { wire })
    }

    /// Parses an uncompressed wire-format name that fills all of `bytes`.
    ///
    /// A name that ends at the end of `bytes` without the root label is accepted (RFC 8777's
    /// examples and deployed records are published that way); bytes after the root label are
    /// [`Error::BadLength`]; compression pointers and the reserved label types 01/10 are
    /// [`Error::Malformed`] (RFC 8777 §4.2.3, RFC 3597 §4, RFC 6891 §5); a label running past
    /// the end is [`Error::Truncated`]; an empty buffer is [`Error::Truncated`].
    pub fn from_wire(bytes: &[u8]) -> Result<DomainName> {
        if bytes.is_empty() {
            return Err(Error::Truncated);
        }
        let mut pos = 0;
        while let Some(&len) = bytes.get(pos) {
            match len >> 6 {
                0 => {}
                3 => return Err(Error::Malformed("compression pointer in relay name")),
                _ => return Err(Error::Malformed("reserved label type in relay name")),
            }
            if len == 0 {
                if pos + 1 != bytes.len() {
                    return Err(Error::BadLength);
                }
                return Ok(DomainName { wire: bytes.to_vec() });
            }
            let end = pos + 1 + usize::from(len);
            if end > bytes.len() {
                return Err(Error::Truncated);
            }
            // The name plus the root label must fit in 255 bytes.
            if end + 1 > MAX_NAME_LEN {
                return Err(Error::Malformed("relay name longer than 255 octets"));
            }
            pos = end;
        }
        // Ended without the root label: accepted, and the root label is added.
        let mut wire = Vec::with_capacity(bytes.len() + 1);
        wire.extend_from_slice(bytes);
        wire.push(0);
        Ok(DomainName { wire })
    }

    /// The wire form, always ending with the root label.
    pub fn as_wire(&self) -> &[u8] {
        &self.wire
    }

    /// Length of the wire form, root label included.
    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// Whether this is the root name `.`.
    pub fn is_root(&self) -> bool {
        self.wire.len() == 1
    }

    /// The labels, most specific first, without the root label.
    pub fn labels(&self) -> Labels<'_> {
        Labels { rest: &self.wire }
    }

    /// The wire form with ASCII letters folded to lower case, for comparisons.
    fn folded(&self) -> impl Iterator<Item = u8> + '_ {
        // Length bytes are at most 63, below b'A', so folding never changes them.
        self.wire.iter().map(u8::to_ascii_lowercase)
    }
}

/// Appends one length-prefixed label (no root label) to `wire`, enforcing the RFC 1035 §2.3.4
/// limits with room left for the root label.
fn push_label(wire: &mut Vec<u8>, label: &[u8]) -> core::result::Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    let len = u8::try_from(label.len()).ok().filter(|&l| usize::from(l) <= MAX_LABEL_LEN);
    let Some(len) = len else {
        return Err("label longer than 63 octets");
    };
    if wire.len() + 1 + label.len() + 1 > MAX_NAME_LEN {
        return Err("name longer than 255 octets");
    }
    wire.push(len);
    wire.extend_from_slice(label);
    Ok(())
}

/// Iterator over the labels of a [`DomainName`].
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (&len, tail) = self.rest.split_first()?;
        let label = tail.get(..usize::from(len)).filter(|l| !l.is_empty());
        match label {
            Some(label) => {
                self.rest = tail.get(label.len()..).unwrap_or_default();
                Some(label)
            }
            None => {
                self.rest = &[];
                None
            }
        }
    }
}

impl PartialEq for DomainName {
    fn eq(&self, other: &Self) -> bool {
        self.wire.eq_ignore_ascii_case(&other.wire)
    }
}

impl Eq for DomainName {}

impl Hash for DomainName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.wire.len());
        for byte in self.folded() {
            state.write_u8(byte);
        }
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for label in self.labels() {
            for &byte in label {
                match byte {
                    // Characters with a meaning in master files (RFC 1035 §5.1).
                    b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => write!(f, "\\{}", char::from(byte))?,
                    0x21..=0x7e => write!(f, "{}", char::from(byte))?,
                    _ => write!(f, "\\{byte:03}")?,
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName(\"{self}\")")
    }
}

impl FromStr for DomainName {
    type Err = ParseError;

    /// Parses the presentation form (RFC 1035 §5.1): labels separated by `.`, `\X` for a
    /// literal character X, `\DDD` for a byte in decimal. A missing trailing dot is accepted
    /// (the name is taken as absolute); `.` alone is the root.
    fn from_str(s: &str) -> core::result::Result<Self, ParseError> {
        let invalid = |reason| ParseError::Invalid { field: "name", reason };
        if s == "." {
            return Ok(DomainName::root());
        }
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        let bytes = s.as_bytes();
        let mut wire = Vec::new();
        let mut label = Vec::new();
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            match byte {
                b'\\' => {
                    let Some(&next) = bytes.get(i + 1) else {
                        return Err(invalid("dangling backslash"));
                    };
                    if next.is_ascii_digit() {
                        let digits = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(u8::is_ascii_digit));
                        let Some(digits) = digits else {
                            return Err(invalid("\\DDD escape needs three digits"));
                        };
                        let value = digits.iter().fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
                        let value = u8::try_from(value).map_err(|_| invalid("\\DDD escape above 255"))?;
                        label.push(value);
                        i += 4;
                    } else {
                        label.push(next);
                        i += 2;
                    }
                }
                b'.' => {
                    push_label(&mut wire, &label).map_err(invalid)?;
                    label.clear();
                    i += 1;
                }
                _ if byte.is_ascii_whitespace() => return Err(invalid("unescaped whitespace")),
                _ => {
                    label.push(byte);
                    i += 1;
                }
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(invalid("label longer than 63 octets"));
            }
        }
        if !label.is_empty() {
            push_label(&mut wire, &label).map_err(invalid)?;
        }
        wire.push(0);
        Ok(DomainName { wire })
    }
}

/// The relay field, by type (RFC 8777 §4.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Relay {
    /// Type 0: no relay; no AMT relay should be used for multicast from this source.
    None,
    /// Type 1: an IPv4 relay address.
    Ipv4(Ipv4Addr),
    /// Type 2: an IPv6 relay address.
    Ipv6(Ipv6Addr),
    /// Type 3: a relay name; its A/AAAA records inherit precedence and D bit (§4.2.4).
    Name(DomainName),
    /// An unassigned type (4–127), kept verbatim. Gateways SHOULD NOT consider it (§4.2.3).
    /// `emit` refuses a `kind` outside 4..=127, which would not parse back to this variant.
    Unknown {
        /// The 7-bit relay type.
        kind: u8,
        /// The raw relay field.
        data: Vec<u8>,
    },
}

impl Relay {
    /// The 7-bit relay type code.
    pub fn kind(&self) -> u8 {
        match self {
            Relay::None => TYPE_NONE,
            Relay::Ipv4(_) => TYPE_IPV4,
            Relay::Ipv6(_) => TYPE_IPV6,
            Relay::Name(_) => TYPE_NAME,
            Relay::Unknown { kind, .. } => *kind,
        }
    }

    /// The relay address for types 1 and 2.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Relay::Ipv4(a) => Some(IpAddr::V4(*a)),
            Relay::Ipv6(a) => Some(IpAddr::V6(*a)),
            _ => None,
        }
    }

    /// The relay name for type 3.
    pub fn name(&self) -> Option<&DomainName> {
        match self {
            Relay::Name(n) => Some(n),
            _ => None,
        }
    }

    /// Length of the relay field in wire form.
    pub fn wire_len(&self) -> usize {
        match self {
            Relay::None => 0,
            Relay::Ipv4(_) => 4,
            Relay::Ipv6(_) => 16,
            Relay::Name(n) => n.wire_len(),
            Relay::Unknown { data, .. } => data.len(),
        }
    }

    /// Parses the relay field of type `kind` (§4.2.3). Wrong address lengths and data after a
    /// type-0 relay are [`Error::BadLength`]; see [`DomainName::from_wire`] for type 3.
    pub fn parse(kind: u8, bytes: &[u8]) -> Result<Relay> {
        match kind & TYPE_MASK {
            TYPE_NONE if bytes.is_empty() => Ok(Relay::None),
            TYPE_NONE => Err(Error::BadLength),
            TYPE_IPV4 => <[u8; 4]>::try_from(bytes).map(|o| Relay::Ipv4(o.into())).map_err(|_| Error::BadLength),
            TYPE_IPV6 => <[u8; 16]>::try_from(bytes).map(|o| Relay::Ipv6(o.into())).map_err(|_| Error::BadLength),
            TYPE_NAME => DomainName::from_wire(bytes).map(Relay::Name),
            other => Ok(Relay::Unknown { kind: other, data: bytes.to_vec() }),
        }
    }

    /// Appends the relay field to `out`.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Relay::None => {}
            Relay::Ipv4(a) => out.extend_from_slice(&a.octets()),
            Relay::Ipv6(a) => out.extend_from_slice(&a.octets()),
            Relay::Name(n) => out.extend_from_slice(n.as_wire()),
            Relay::Unknown { data, .. } => out.extend_from_slice(data),
        }
    }
}

/// One AMTRELAY record's data (RFC 8777 §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AmtRelay {
    /// Lower is tried first (§4.2.1).
    pub precedence: u8,
    /// The D bit (§4.2.2): the gateway MAY skip relay discovery and send a Request directly.
    pub discovery_optional: bool,
    /// The relay (§4.2.3).
    pub relay: Relay,
}

impl AmtRelay {
    /// Parses RDATA. Unassigned relay types are kept as [`Relay::Unknown`].
    pub fn parse(rdata: &[u8]) -> Result<AmtRelay> {
        AmtRelay::parse_packet(&Packet::new_checked(rdata)?)
    }

    /// Parses a checked [`Packet`] view.
    pub fn parse_packet<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<AmtRelay> {
        packet.check_len()?;
        Ok(AmtRelay {
            precedence: packet.precedence(),
            discovery_optional: packet.discovery_optional(),
            relay: Relay::parse(packet.relay_type(), packet.relay_bytes())?,
        })
    }

    /// Length of the RDATA this representation emits.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.relay.wire_len()
    }

    /// Whether a gateway should consider this record: false for unassigned relay types
    /// (§4.2.3 "SHOULD NOT be considered"). Type 0 is usable: it says "use no relay".
    pub fn is_usable(&self) -> bool {
        !matches!(self.relay, Relay::Unknown { .. })
    }

    /// Writes the RDATA into `buf` and returns its length. Type-3 names are written with the
    /// root label. Fails with [`Error::BufferTooSmall`] if `buf` is short,
    /// [`Error::Malformed`] for an [`Relay::Unknown`] kind outside 4..=127 and
    /// [`Error::BadLength`] above 65535 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if let Relay::Unknown { kind, .. } = self.relay
            && (kind <= TYPE_NAME || kind > TYPE_MASK)
        {
            return Err(Error::Malformed("unknown relay type must be 4..=127"));
        }
        let len = self.buffer_len();
        if len > MAX_RDATA_LEN {
            return Err(Error::BadLength);
        }
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        out.copy_from_slice(&self.raw_bytes());
        Ok(len)
    }

    /// The RDATA as a new vector (see [`AmtRelay::emit`] for the errors).
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = vec![0; self.buffer_len()];
        self.emit(&mut out)?;
        Ok(out)
    }

    /// The RDATA without the checks of `emit` (the type is masked to 7 bits).
    fn raw_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        out.push(self.precedence);
        let d = if self.discovery_optional { D_BIT } else { 0 };
        out.push(d | (self.relay.kind() & TYPE_MASK));
        self.relay.write(&mut out);
        out
    }

    /// The RFC 3597 §5 generic form, `\# LEN HEX`, e.g. `\# 6 0a01cb00710f`.
    pub fn to_generic(&self) -> String {
        let bytes = self.raw_bytes();
        let mut s = format!("\\# {}", bytes.len());
        if !bytes.is_empty() {
            s.push(' ');
        }
        for byte in bytes {
            s.push_str(&format!("{byte:02x}"));
        }
        s
    }

    /// Parses the RFC 3597 §5 generic form: `\#`, the decimal length, then hex words, each
    /// with an even number of digits, possibly in parentheses across lines as zone files
    /// write it (`\# ( 25 10 03 09616d74... )`). The length must match the data.
    pub fn from_generic(s: &str) -> core::result::Result<AmtRelay, ParseError> {
        let tokens = tokenize(s)?;
        let mut tokens = tokens.into_iter();
        match tokens.next() {
            Some("\\#") => {}
            Some(_) => return Err(ParseError::Invalid { field: "generic form", reason: "must start with \\#" }),
            None => return Err(ParseError::Missing("\\#")),
        }
        let len_field = "generic length";
        let len = tokens.next().ok_or(ParseError::Missing(len_field))?;
        let len = parse_decimal(len, MAX_RDATA_LEN as u64, len_field)?;
        let mut data = Vec::new();
        for word in tokens {
            decode_hex(word, &mut data)?;
        }
        if u64::try_from(data.len()) != Ok(len) {
            return Err(ParseError::Invalid { field: len_field, reason: "does not match the hex data" });
        }
        AmtRelay::parse(&data).map_err(ParseError::Wire)
    }
}

impl fmt::Display for AmtRelay {
    /// The presentation form (§4.3): `precedence D type relay`, e.g. `10 0 1 203.0.113.15`,
    /// `128 1 3 amtrelays.example.com.` or `0 0 0 .`. An unassigned type has no presentation
    /// form, so the whole RDATA is written in the RFC 3597 generic form instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, d, k) = (self.precedence, u8::from(self.discovery_optional), self.relay.kind());
        match &self.relay {
            Relay::None => write!(f, "{p} {d} {k} ."),
            Relay::Ipv4(a) => write!(f, "{p} {d} {k} {a}"),
            Relay::Ipv6(a) => write!(f, "{p} {d} {k} {a}"),
            Relay::Name(n) => write!(f, "{p} {d} {k} {n}"),
            Relay::Unknown { .. } => f.write_str(&self.to_generic()),
        }
    }
}

impl FromStr for AmtRelay {
    type Err = ParseError;

    /// Parses the presentation form (§4.3): all four fields are required, D is 0 or 1, the
    /// type is 0–3 with a matching relay (`.` for type 0). Input starting with `\#` is read as
    /// the generic form ([`AmtRelay::from_generic`]). Master-file parentheses and `;` comments
    /// are accepted.
    fn from_str(s: &str) -> core::result::Result<Self, ParseError> {
        let tokens = tokenize(s)?;
        if tokens.first() == Some(&"\\#") {
            return AmtRelay::from_generic(s);
        }
        let mut tokens = tokens.into_iter();
        let precedence = tokens.next().ok_or(ParseError::Missing("precedence"))?;
        let d = tokens.next().ok_or(ParseError::Missing("discovery-optional"))?;
        let kind = tokens.next().ok_or(ParseError::Missing("type"))?;
        let relay = tokens.next().ok_or(ParseError::Missing("relay"))?;
        if tokens.next().is_some() {
            return Err(ParseError::Trailing);
        }
        let precedence = parse_decimal(precedence, 255, "precedence")? as u8;
        let discovery_optional = match d {
            "0" => false,
            "1" => true,
            _ => return Err(ParseError::Invalid { field: "discovery-optional", reason: "must be 0 or 1" }),
        };
        let kind = parse_decimal(kind, u64::from(TYPE_MASK), "type")? as u8;
        let bad_relay = |reason| ParseError::Invalid { field: "relay", reason };
        let relay = match kind {
            TYPE_NONE if relay == "." => Relay::None,
            TYPE_NONE => return Err(bad_relay("must be \".\" for type 0")),
            TYPE_IPV4 => Relay::Ipv4(relay.parse().map_err(|_| bad_relay("not an IPv4 address"))?),
            TYPE_IPV6 => Relay::Ipv6(relay.parse().map_err(|_| bad_relay("not an IPv6 address"))?),
            TYPE_NAME => Relay::Name(relay.parse()?),
            _ => return Err(bad_relay("unassigned type has no presentation form; use \\#")),
        };
        Ok(AmtRelay { precedence, discovery_optional, relay })
    }
}

/// Why presentation-form or generic-form text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// A required field is missing; names the field.
    Missing(&'static str),
    /// Text follows the last field.
    Trailing,
    /// A field is invalid: which field and why.
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The generic form's bytes are not valid AMTRELAY RDATA.
    Wire(Error),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Missing(field) => write!(f, "AMTRELAY: missing {field}"),
            ParseError::Trailing => f.write_str("AMTRELAY: unexpected text after the relay"),
            ParseError::Invalid { field, reason } => write!(f, "AMTRELAY: invalid {field}: {reason}"),
            ParseError::Wire(e) => write!(f, "AMTRELAY: invalid RDATA: {e}"),
        }
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ParseError::Wire(e) => Some(e),
            _ => None,
        }
    }
}

/// Splits master-file text into words (RFC 1035 §5.1): whitespace separates, `\` escapes the
/// next character (kept in the word for the field parser), `( )` group lines and are dropped,
/// `;` starts a comment to the end of the line. A line break outside parentheses ends the
/// record, so more words after one are refused.
fn tokenize(s: &str) -> core::result::Result<Vec<&str>, ParseError> {
    let invalid = |reason| ParseError::Invalid { field: "record", reason };
    let bytes = s.as_bytes();
    let mut tokens = Vec::new();
    let mut start: Option<usize> = None;
    let mut open = false;
    let mut line_ended = false;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let delimiter = byte.is_ascii_whitespace() || matches!(byte, b'(' | b')' | b';');
        if !delimiter {
            if start.is_none() && line_ended {
                return Err(invalid("line break outside parentheses"));
            }
            start.get_or_insert(i);
            // Skip the escaped character (its continuation bytes, if any, are not delimiters).
            i += if byte == b'\\' { 2 } else { 1 };
            continue;
        }
        if let Some(st) = start.take() {
            tokens.push(s.get(st..i).ok_or(invalid("bad escape"))?);
        }
        match byte {
            b'(' if open => return Err(invalid("nested parentheses")),
            b'(' if line_ended => return Err(invalid("line break outside parentheses")),
            b'(' => open = true,
            b')' if !open => return Err(invalid("unbalanced parentheses")),
            b')' => open = false,
            b';' => {
                while bytes.get(i + 1).is_some_and(|&b| b != b'\n') {
                    i += 1;
                }
            }
            b'\n' if !open => line_ended = true,
            _ => {}
        }
        i += 1;
    }
    if let Some(st) = start {
        tokens.push(s.get(st..).ok_or(invalid("bad escape"))?);
    }
    if open {
        return Err(invalid("unclosed parenthesis"));
    }
    Ok(tokens)
}

/// Parses an unsigned decimal of ASCII digits only (no sign), at most `max`.
fn parse_decimal(word: &str, max: u64, field: &'static str) -> core::result::Result<u64, ParseError> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Invalid { field, reason: "not a decimal number" });
    }
    word.parse::<u64>().ok().filter(|&v| v <= max).ok_or(ParseError::Invalid { field, reason: "number out of range" })
}

/// Decodes one hex word of the generic form (an even number of digits, RFC 3597 §5).
fn decode_hex(word: &str, out: &mut Vec<u8>) -> core::result::Result<(), ParseError> {
    let invalid = |reason| ParseError::Invalid { field: "generic data", reason };
    let bytes = word.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(invalid("hex word with an odd number of digits"));
    }
    for pair in bytes.chunks_exact(2) {
        let digit = |c: u8| char::from(c).to_digit(16).ok_or(invalid("not a hex digit"));
        let (hi, lo) = match pair {
            [hi, lo] => (digit(*hi)?, digit(*lo)?),
            _ => return Err(invalid("hex word with an odd number of digits")),
        };
        out.push((hi * 16 + lo) as u8);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (wire hex, presentation) pairs from protocols.md §A2 ("More RDATA examples") and the
    /// platform's sample zones. Wire forms are in canonical form (root label present).
    const CANONICAL: &[(&str, &str)] = &[
        ("0A030572656C6179076578616D706C6500", "10 0 3 relay.example."),
        ("1401CB00710F", "20 0 1 203.0.113.15"),
        ("1E8220010DB8000000000000000000000015", "30 1 2 2001:db8::15"),
        ("100309616d742d72656c6179076d326963617374036e657400", "16 0 3 amt-relay.m2icast.net."),
        ("0f01454d0e91", "15 0 1 69.77.14.145"),
        ("2001a2fa89fe", "32 0 1 162.250.137.254"),
    ];

    /// Akamai's published record (no root label), protocols.md §A2.
    const AKAMAI: &str = "1003047234763403616d7406616b61646e73036e6574";

    fn parse_hex(h: &str) -> Result<AmtRelay> {
        AmtRelay::parse(&hex::decode(h).unwrap())
    }

    fn name(s: &str) -> DomainName {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_samples_roundtrip_all_forms() {
        for &(h, text) in CANONICAL {
            let bytes = hex::decode(h).unwrap();
            let repr = AmtRelay::parse(&bytes).unwrap();
            assert_eq!(repr.to_string(), text);
            assert_eq!(text.parse::<AmtRelay>().unwrap(), repr);
            assert_eq!(repr.buffer_len(), bytes.len());
            assert_eq!(repr.to_vec().unwrap(), bytes);
            let generic = repr.to_generic();
            assert_eq!(generic, format!("\\# {} {}", bytes.len(), h.to_ascii_lowercase()));
            assert_eq!(AmtRelay::from_generic(&generic).unwrap(), repr);
            assert_eq!(generic.parse::<AmtRelay>().unwrap(), repr);
            assert!(repr.is_usable());
        }
    }

    #[test]
    fn sample_fields() {
        let r = parse_hex("0A030572656C6179076578616D706C6500").unwrap();
        assert_eq!(r.precedence, 10);
        assert!(!r.discovery_optional);
        assert_eq!(r.relay, Relay::Name(DomainName::from_labels(["relay", "example"]).unwrap()));
        assert_eq!(r.relay.name().unwrap().labels().collect::<Vec<_>>(), [&b"relay"[..], b"example"]);

        let r = parse_hex("1401CB00710F").unwrap();
        assert_eq!((r.precedence, r.discovery_optional), (20, false));
        assert_eq!(r.relay, Relay::Ipv4(Ipv4Addr::new(203, 0, 113, 15)));
        assert_eq!(r.relay.ip(), Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 15))));

        let r = parse_hex("1E8220010DB8000000000000000000000015").unwrap();
        assert_eq!((r.precedence, r.discovery_optional), (30, true));
        assert_eq!(r.relay, Relay::Ipv6("2001:db8::15".parse().unwrap()));
        assert_eq!(r.relay.kind(), TYPE_IPV6);

        let r = parse_hex("0f01454d0e91").unwrap();
        assert_eq!((r.precedence, r.discovery_optional), (15, false));
        assert_eq!(r.relay, Relay::Ipv4(Ipv4Addr::new(69, 77, 14, 145)));

        let r = parse_hex("100309616d742d72656c6179076d326963617374036e657400").unwrap();
        assert_eq!(r.precedence, 16);
        assert_eq!(r.relay, Relay::Name(name("amt-relay.m2icast.net.")));
    }

    #[test]
    fn packet_view_accessors_and_setters() {
        let bytes = hex::decode("1E8220010DB8000000000000000000000015").unwrap();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.precedence(), 30);
        assert!(p.discovery_optional());
        assert_eq!(p.relay_type(), TYPE_IPV6);
        assert_eq!(p.relay_bytes(), &bytes[2..]);

        let mut buf = [0u8; 6];
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_precedence(10);
        p.set_relay_type(TYPE_IPV4);
        p.set_discovery_optional(true);
        p.set_discovery_optional(false);
        p.relay_bytes_mut().copy_from_slice(&[203, 0, 113, 15]);
        assert_eq!(p.relay_type(), TYPE_IPV4);
        assert_eq!(buf, [0x0a, 0x01, 203, 0, 113, 15]);
        assert_eq!(Packet::new_checked(&buf[..1]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn akamai_name_without_root_label() {
        let bytes = hex::decode(AKAMAI).unwrap();
        assert_eq!(bytes.len(), 22);
        let r = AmtRelay::parse(&bytes).unwrap();
        assert_eq!(r.precedence, 16);
        assert!(!r.discovery_optional);
        assert_eq!(r.to_string(), "16 0 3 r4v4.amt.akadns.net.");
        let out = r.to_vec().unwrap();
        assert_eq!(out.len(), 23);
        assert_eq!(&out[..22], &bytes[..]);
        assert_eq!(out[22], 0);
        assert_eq!(AmtRelay::parse(&out).unwrap(), r);
        // The generic form as published (upper-case hex) parses too.
        let published = "\\# 22 1003047234763403616D7406616B61646E73036E6574";
        assert_eq!(AmtRelay::from_generic(published).unwrap(), r);
        assert_eq!(r.to_generic(), format!("\\# 23 {AKAMAI}00"));
    }

    #[test]
    fn rfc_presentation_examples() {
        // RFC 8777 §4.3.2.
        let r: AmtRelay = "10 0 1 203.0.113.15".parse().unwrap();
        assert_eq!(r.relay, Relay::Ipv4(Ipv4Addr::new(203, 0, 113, 15)));
        assert_eq!(r.to_generic(), "\\# 6 0a01cb00710f");
        assert_eq!(AmtRelay::from_generic("\\# 6 0a01cb00710f").unwrap(), r);

        let r: AmtRelay = "10 0 2 2001:db8::15".parse().unwrap();
        assert_eq!(r.to_vec().unwrap(), hex::decode("0a0220010db8000000000000000000000015").unwrap());
        assert_eq!(r.to_string(), "10 0 2 2001:db8::15");

        let r: AmtRelay = "128 1 3 amtrelays.example.com.".parse().unwrap();
        assert_eq!((r.precedence, r.discovery_optional), (128, true));
        assert_eq!(r.to_string(), "128 1 3 amtrelays.example.com.");
        assert_eq!(r.to_generic(), "\\# 25 808309616d7472656c617973076578616d706c6503636f6d00");
        // The RFC's own generic example (§4.3.2), comments included. It says 24 octets and
        // omits the root label; accepted as a name ending at the end of the RDATA.
        let rfc = "\\# (\n       24 ; length\n       80 ; precedence=128\n       \
                   83 ; D=1, relay type=3, a wire-encoded domain name\n       \
                   09616d7472656c617973076578616d706c6503636f6d ) ; domain name\n";
        assert_eq!(AmtRelay::from_generic(rfc).unwrap(), r);

        // §4.3.2's IPv6 generic example writes decimal 15 as hex 0f (reported as an erratum):
        // its bytes are 2001:db8::f, not the 2001:db8::15 of the presentation example.
        let rfc = "\\# ( 18 ; length\n 0a ; precedence=10\n 02 ; D=0, relay type=2, an IPv6 address\n \
                   20010db800000000000000000000000f ) ; 2001:db8::15\n";
        assert_eq!(AmtRelay::from_generic(rfc).unwrap().to_string(), "10 0 2 2001:db8::f");
        let rfc = "\\# ( 6 ; length\n 0a ; precedence=10\n 01 ; D=0, relay type=1, an IPv4 address\n \
                   cb00710f ) ; 203.0.113.15\n";
        assert_eq!(AmtRelay::from_generic(rfc).unwrap().to_string(), "10 0 1 203.0.113.15");

        let r: AmtRelay = "0 0 0 .".parse().unwrap();
        assert_eq!(r, AmtRelay { precedence: 0, discovery_optional: false, relay: Relay::None });
        assert_eq!(r.to_string(), "0 0 0 .");
        assert_eq!(r.to_vec().unwrap(), [0, 0]);
    }

    #[test]
    fn generic_form_with_parentheses_and_comments() {
        let r = AmtRelay::from_generic("\\# ( 25 10 03 09616d742d72656c6179076d326963617374036e657400 )").unwrap();
        assert_eq!(r.to_string(), "16 0 3 amt-relay.m2icast.net.");
        let r = AmtRelay::from_generic("\\# ( 6 0f 01 454d0e91 )").unwrap();
        assert_eq!(r.to_string(), "15 0 1 69.77.14.145");
        let r = AmtRelay::from_generic("\\# ( 6 20 01   ; precedence 32, type 1\n\t a2fa89fe )").unwrap();
        assert_eq!(r.to_string(), "32 0 1 162.250.137.254");
        let r: AmtRelay = "( 10 0\n 3 relay.example. ) ; trailing comment".parse().unwrap();
        assert_eq!(r.to_string(), "10 0 3 relay.example.");
        // A line may end with a comment and a line break; nothing may follow on the next line.
        let r: AmtRelay = "10 0 1 203.0.113.15 ; relay\n".parse().unwrap();
        assert_eq!(r.to_string(), "10 0 1 203.0.113.15");
        assert!("10 0 1\n203.0.113.15".parse::<AmtRelay>().is_err());
        assert!("10 0 1\n(203.0.113.15)".parse::<AmtRelay>().is_err());
        // An escaped space stays inside the name.
        let r: AmtRelay = "10 0 3 sp\\ ace.example.".parse().unwrap();
        assert_eq!(r.relay.name().unwrap().labels().next(), Some(&b"sp ace"[..]));
    }

    #[test]
    fn generic_form_rejections() {
        let bad = |s: &str| AmtRelay::from_generic(s).unwrap_err();
        assert_eq!(bad(""), ParseError::Missing("\\#"));
        assert_eq!(bad("\\#"), ParseError::Missing("generic length"));
        assert!(matches!(bad("# 6 0a01cb00710f"), ParseError::Invalid { field: "generic form", .. }));
        assert!(matches!(bad("\\# 7 0a01cb00710f"), ParseError::Invalid { field: "generic length", .. }));
        assert!(matches!(bad("\\# 5 0a01cb00710f"), ParseError::Invalid { field: "generic length", .. }));
        assert!(matches!(bad("\\# -6 0a01cb00710f"), ParseError::Invalid { field: "generic length", .. }));
        assert!(matches!(bad("\\# 70000 00"), ParseError::Invalid { field: "generic length", .. }));
        assert!(matches!(bad("\\# 6 0a01cb00710"), ParseError::Invalid { field: "generic data", .. }));
        assert!(matches!(bad("\\# 6 0a01cb00710 f"), ParseError::Invalid { field: "generic data", .. }));
        assert!(matches!(bad("\\# 6 0a01cb0071zz"), ParseError::Invalid { field: "generic data", .. }));
        assert!(matches!(bad("\\# ( 6 0a01cb00710f"), ParseError::Invalid { field: "record", .. }));
        assert!(matches!(bad("\\# 6 0a01cb00710f )"), ParseError::Invalid { field: "record", .. }));
        assert!(matches!(bad("\\# ( ( 6 0a01cb00710f ) )"), ParseError::Invalid { field: "record", .. }));
        assert!(matches!(bad("\\# 6\n0a01cb00710f"), ParseError::Invalid { field: "record", .. }));
        assert_eq!(bad("\\# 5 0a01cb0071"), ParseError::Wire(Error::BadLength));
        assert_eq!(bad("\\# 1 0a"), ParseError::Wire(Error::Truncated));
        assert_eq!(bad("\\# 0"), ParseError::Wire(Error::Truncated));
    }

    #[test]
    fn presentation_rejections() {
        let bad = |s: &str| s.parse::<AmtRelay>().unwrap_err();
        assert_eq!(bad(""), ParseError::Missing("precedence"));
        assert_eq!(bad("10"), ParseError::Missing("discovery-optional"));
        assert_eq!(bad("10 0"), ParseError::Missing("type"));
        assert_eq!(bad("10 0 1"), ParseError::Missing("relay"));
        assert_eq!(bad("10 0 1 203.0.113.15 extra"), ParseError::Trailing);
        assert!(matches!(bad("256 0 1 203.0.113.15"), ParseError::Invalid { field: "precedence", .. }));
        assert!(matches!(bad("+10 0 1 203.0.113.15"), ParseError::Invalid { field: "precedence", .. }));
        assert!(matches!(bad("10 2 1 203.0.113.15"), ParseError::Invalid { field: "discovery-optional", .. }));
        assert!(matches!(bad("10 00 1 203.0.113.15"), ParseError::Invalid { field: "discovery-optional", .. }));
        assert!(matches!(bad("10 0 128 ."), ParseError::Invalid { field: "type", .. }));
        assert!(matches!(bad("10 0 x ."), ParseError::Invalid { field: "type", .. }));
        assert!(matches!(bad("10 0 0 relay.example."), ParseError::Invalid { field: "relay", .. }));
        assert!(matches!(bad("10 0 1 2001:db8::15"), ParseError::Invalid { field: "relay", .. }));
        assert!(matches!(bad("10 0 2 203.0.113.15"), ParseError::Invalid { field: "relay", .. }));
        assert!(matches!(bad("10 0 1 relay.example."), ParseError::Invalid { field: "relay", .. }));
        assert!(matches!(bad("10 0 4 ."), ParseError::Invalid { field: "relay", .. }));
        assert!(matches!(bad("10 0 3 a..b."), ParseError::Invalid { field: "name", .. }));
        assert!(matches!(bad("10 0 3 \\"), ParseError::Invalid { field: "name", .. }));
        assert!(bad("10 0 3 a..b.").to_string().contains("empty label"));
    }

    #[test]
    fn wire_rejections() {
        // Truncated fixed part.
        assert_eq!(AmtRelay::parse(&[]), Err(Error::Truncated));
        assert_eq!(AmtRelay::parse(&[10]), Err(Error::Truncated));
        // Type 0 with data.
        assert_eq!(parse_hex("0a0001"), Err(Error::BadLength));
        // Type 1 with 3 or 5 bytes; type 2 with 15 or 17.
        assert_eq!(parse_hex("0a01cb0071"), Err(Error::BadLength));
        assert_eq!(parse_hex("0a01cb00710f00"), Err(Error::BadLength));
        assert_eq!(parse_hex("0a01"), Err(Error::BadLength));
        assert_eq!(parse_hex("0a0220010db80000000000000000000000"), Err(Error::BadLength));
        assert_eq!(parse_hex("0a0220010db800000000000000000000001500"), Err(Error::BadLength));
        // Type 3: empty, compression pointer, reserved label types (lengths 64..=191).
        assert_eq!(parse_hex("0a03"), Err(Error::Truncated));
        assert!(matches!(parse_hex("0a030572656c6179c00c"), Err(Error::Malformed(_))));
        assert!(matches!(parse_hex("0a03c00c"), Err(Error::Malformed(_))));
        assert!(matches!(parse_hex("0a0340"), Err(Error::Malformed(_))));
        assert!(matches!(parse_hex("0a0380"), Err(Error::Malformed(_))));
        // Label of 64 bytes.
        let mut long_label = vec![0x0a, 0x03, 64];
        long_label.extend_from_slice(&[b'a'; 64]);
        long_label.push(0);
        assert!(matches!(AmtRelay::parse(&long_label), Err(Error::Malformed(_))));
        // A label running past the end.
        assert_eq!(parse_hex("0a030572656c61"), Err(Error::Truncated));
        // Bytes after the root label.
        assert_eq!(parse_hex("0a030572656c61790000"), Err(Error::BadLength));
        assert_eq!(parse_hex("0a03000a"), Err(Error::BadLength));
    }

    /// Builds type-3 RDATA whose name has `labels` labels of 63 bytes plus `extra` bytes.
    fn long_name_rdata(total_name_len: usize, root: bool) -> Vec<u8> {
        let mut out = vec![0x0a, 0x03];
        let mut left = total_name_len - usize::from(root);
        while left > 0 {
            let label = (left - 1).min(63);
            assert!(label > 0, "unrepresentable length");
            out.push(label as u8);
            out.extend(std::iter::repeat_n(b'x', label));
            left -= label + 1;
        }
        if root {
            out.push(0);
        }
        out
    }

    #[test]
    fn name_length_limit() {
        // 255 bytes with the root label: accepted; 256: rejected.
        let ok = long_name_rdata(255, true);
        let r = AmtRelay::parse(&ok).unwrap();
        assert_eq!(r.to_vec().unwrap(), ok);
        assert!(matches!(AmtRelay::parse(&long_name_rdata(256, true)), Err(Error::Malformed(_))));
        // Without the root label, 254 bytes (255 once the root is added) is the limit.
        assert!(AmtRelay::parse(&long_name_rdata(254, false)).is_ok());
        assert!(matches!(AmtRelay::parse(&long_name_rdata(255, false)), Err(Error::Malformed(_))));
        // The same limits in presentation form.
        let text = r.to_string();
        assert_eq!(text.parse::<AmtRelay>().unwrap(), r);
        let too_long = text.replacen("10 0 3 ", "10 0 3 x.", 1);
        assert!(too_long.parse::<AmtRelay>().unwrap_err().to_string().contains("255"));
        assert!(DomainName::from_labels([[b'a'; 64]]).is_err());
        assert!(DomainName::from_labels([&b""[..]]).is_err());
    }

    #[test]
    fn truncation_at_every_length() {
        for &(h, _) in CANONICAL {
            let bytes = hex::decode(h).unwrap();
            for n in 0..bytes.len() {
                let cut = &bytes[..n];
                match AmtRelay::parse(cut) {
                    // A name cut exactly at a label boundary is a name without its root label.
                    Ok(r) => {
                        assert_eq!(bytes[1] & 0x7f, TYPE_NAME, "{h} cut at {n}");
                        assert_eq!(r.to_vec().unwrap().len(), n + 1);
                    }
                    Err(e) => assert!(matches!(e, Error::Truncated | Error::BadLength), "{h} cut at {n}: {e:?}"),
                }
            }
        }
    }

    #[test]
    fn unknown_types_are_kept() {
        let bytes = hex::decode("0a04deadbeef").unwrap();
        let r = AmtRelay::parse(&bytes).unwrap();
        assert_eq!(r.relay, Relay::Unknown { kind: 4, data: vec![0xde, 0xad, 0xbe, 0xef] });
        assert!(!r.is_usable());
        assert_eq!(r.to_vec().unwrap(), bytes);
        // No presentation form: Display falls back to the generic form, which FromStr reads.
        assert_eq!(r.to_string(), "\\# 6 0a04deadbeef");
        assert_eq!(r.to_string().parse::<AmtRelay>().unwrap(), r);
        let r = AmtRelay::parse(&[0, 0xff]).unwrap();
        assert_eq!(
            r,
            AmtRelay { precedence: 0, discovery_optional: true, relay: Relay::Unknown { kind: 127, data: vec![] } }
        );
        assert_eq!(r.to_vec().unwrap(), [0, 0xff]);
        // Kinds that would not parse back to Unknown are refused by emit.
        for kind in [0, 1, 3, 128] {
            let r = AmtRelay { precedence: 0, discovery_optional: false, relay: Relay::Unknown { kind, data: vec![] } };
            assert!(matches!(r.to_vec(), Err(Error::Malformed(_))));
        }
        let big = AmtRelay {
            precedence: 0,
            discovery_optional: false,
            relay: Relay::Unknown { kind: 9, data: vec![0; 65534] },
        };
        assert_eq!(big.to_vec(), Err(Error::BadLength));
    }

    #[test]
    fn emit_buffer_too_small() {
        let r: AmtRelay = "10 0 3 relay.example.".parse().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(r.emit(&mut buf), Err(Error::BufferTooSmall));
        let mut buf = [0u8; 17];
        assert_eq!(r.emit(&mut buf), Ok(17));
    }

    #[test]
    fn domain_name_presentation() {
        assert_eq!(name(".").to_string(), ".");
        assert!(name(".").is_root());
        assert_eq!(name("relay.example").to_string(), "relay.example.");
        assert_eq!(name("relay.example"), name("relay.example."));
        // Case preserved, compared case-insensitively.
        let upper = name("Relay.EXAMPLE.");
        assert_eq!(upper.to_string(), "Relay.EXAMPLE.");
        assert_eq!(upper, name("relay.example."));
        let hash = |n: &DomainName| {
            use std::collections::hash_map::DefaultHasher;
            let mut h = DefaultHasher::new();
            n.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&upper), hash(&name("relay.example.")));
        assert_ne!(name("relay.example."), name("relay.example.com."));
        // Escapes: special characters and non-printable bytes.
        let odd = DomainName::from_labels([&b"a.b"[..], b"c\\d", b"sp ace", b"\x00\x7f\xff", b"@$;()\""]).unwrap();
        assert_eq!(odd.to_string(), "a\\.b.c\\\\d.sp\\032ace.\\000\\127\\255.\\@\\$\\;\\(\\)\\\".");
        assert_eq!(name(&odd.to_string()), odd);
        assert_eq!(name(&odd.to_string()).as_wire(), odd.as_wire());
        assert_eq!(name("\\065\\b.c").as_wire(), b"\x02Ab\x01c\x00");
        // Rejections.
        for bad in ["", "..", ".a", "a..", "a\\", "a\\25", "a\\256", "a b"] {
            assert!(bad.parse::<DomainName>().is_err(), "{bad:?}");
        }
        assert!(format!("{}.", "a".repeat(64)).parse::<DomainName>().is_err());
        assert!(format!("{}.", "a".repeat(63)).parse::<DomainName>().is_ok());
        assert_eq!(format!("{:?}", name("relay.example")), "DomainName(\"relay.example.\")");
    }

    #[test]
    fn parse_error_display() {
        assert_eq!(ParseError::Missing("relay").to_string(), "AMTRELAY: missing relay");
        let e = ParseError::Wire(Error::Truncated);
        assert_eq!(e.to_string(), "AMTRELAY: invalid RDATA: truncated packet");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn snapshot_decoded_samples() {
        let mut decoded: Vec<(String, AmtRelay)> = Vec::new();
        for &(h, _) in CANONICAL {
            decoded.push((h.to_ascii_lowercase(), parse_hex(h).unwrap()));
        }
        decoded.push((AKAMAI.to_string(), parse_hex(AKAMAI).unwrap()));
        for text in ["10 0 1 203.0.113.15", "10 0 2 2001:db8::15", "128 1 3 amtrelays.example.com.", "0 0 0 ."] {
            decoded.push((text.to_string(), text.parse().unwrap()));
        }
        insta::assert_debug_snapshot!(decoded);
    }

    fn arb_name() -> impl proptest::strategy::Strategy<Value = DomainName> {
        use proptest::prelude::*;
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..=20), 0..6)
            .prop_map(|labels| DomainName::from_labels(labels).unwrap())
    }

    fn arb_relay() -> impl proptest::strategy::Strategy<Value = Relay> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Relay::None),
            any::<[u8; 4]>().prop_map(|o| Relay::Ipv4(o.into())),
            any::<[u8; 16]>().prop_map(|o| Relay::Ipv6(o.into())),
            arb_name().prop_map(Relay::Name),
            (4u8..=127, proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(kind, data)| Relay::Unknown { kind, data }),
        ]
    }

    fn arb_amtrelay() -> impl proptest::strategy::Strategy<Value = AmtRelay> {
        use proptest::prelude::*;
        (any::<u8>(), any::<bool>(), arb_relay()).prop_map(|(precedence, discovery_optional, relay)| AmtRelay {
            precedence,
            discovery_optional,
            relay,
        })
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = (packet.precedence(), packet.discovery_optional(), packet.relay_type(), packet.relay_bytes());
            }
            if let Ok(r) = AmtRelay::parse(&bytes) {
                let _ = (r.to_string(), r.to_generic(), r.is_usable(), r.relay.ip());
                if let Some(n) = r.relay.name() {
                    let _ = n.labels().count();
                }
            }
            let _ = DomainName::from_wire(&bytes);
        }

        #[test]
        fn type3_bytes_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut bytes = vec![1, 3];
            bytes.extend_from_slice(&tail);
            if let Ok(r) = AmtRelay::parse(&bytes) {
                let _ = r.to_string();
            }
        }

        #[test]
        fn text_parsers_never_panic(s in "\\PC*") {
            let _ = s.parse::<AmtRelay>();
            let _ = AmtRelay::from_generic(&s);
            let _ = s.parse::<DomainName>();
        }

        #[test]
        fn text_parsers_never_panic_on_likely_input(s in "[0-9a-f\\\\#(); \n.:\u{e9}]{0,40}") {
            let _ = s.parse::<AmtRelay>();
            let _ = AmtRelay::from_generic(&s);
            let _ = s.parse::<DomainName>();
        }

        #[test]
        fn emit_parse_roundtrip(r in arb_amtrelay()) {
            let bytes = r.to_vec().unwrap();
            proptest::prop_assert_eq!(bytes.len(), r.buffer_len());
            let back = AmtRelay::parse(&bytes).unwrap();
            proptest::prop_assert_eq!(&back, &r);
            proptest::prop_assert_eq!(back.to_vec().unwrap(), bytes);
        }

        #[test]
        fn text_roundtrip(r in arb_amtrelay()) {
            let text = r.to_string();
            let back: AmtRelay = text.parse().unwrap();
            proptest::prop_assert_eq!(&back, &r);
            // Names compare case-insensitively; check the bytes too.
            proptest::prop_assert_eq!(back.to_vec().unwrap(), r.to_vec().unwrap());
            proptest::prop_assert_eq!(AmtRelay::from_generic(&r.to_generic()).unwrap(), r);
        }

        #[test]
        fn reparse_is_stable(kind in 0u8..=5, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            // Half the cases get a real relay type in byte 1 so names and addresses are hit.
            let mut bytes = bytes;
            if bytes.len() >= 2 && kind < 4 {
                bytes[1] = (bytes[1] & D_BIT) | kind;
            }
            if let Ok(r) = AmtRelay::parse(&bytes) {
                let out = r.to_vec().unwrap();
                proptest::prop_assert_eq!(AmtRelay::parse(&out).unwrap(), r);
            }
        }
    }
}
