//! Zone files: RFC 1035 §5 master files with AMTRELAY (RFC 8777 §4.3), RFC 3597 generic
//! (`TYPEnnn \# LEN HEX`) and DNAME (RFC 6672) records.
//!
//! hickory's zone parser rejects `TYPE260`, `\#` and DNAME, so the file is split into entries
//! here (owner, TTL, class, type and RDATA words, with `$ORIGIN`, `$TTL`, `@`, relative owners,
//! blank-owner continuation, parentheses and `;` comments), and then
//!
//! * AMTRELAY in presentation form is parsed with [`mcast_wire::amtrelay::AmtRelay`] and stored
//!   in wire form (type-3 names with their root label);
//! * the generic form of any type (`TYPE260 \# 6 0a01cb00710f`, `AMTRELAY \# ...`) is stored
//!   **verbatim**, so a zone can publish what deployed zones publish (type-3 names without the
//!   root label, or bytes that are not valid AMTRELAY at all: a load-time warning, served anyway);
//! * DNAME is built from its target name;
//! * every other record goes through hickory's own parser, one entry at a time, with its owner
//!   and TTL made explicit.
//!
//! Records whose type hickory does not know are built as `RData::Unknown`, which hickory
//! serves byte for byte (no name compression).
//!
//! TTLs: an explicit TTL, else `$TTL`, else the last explicit TTL, else the SOA's MINIMUM (as
//! BIND does for old files without `$TTL`, like the original platform's sample zones).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use hickory_proto::serialize::txt::{Parser, parse_ttl};
use mcast_wire::amtrelay::{AmtRelay, RR_TYPE as AMTRELAY_TYPE};

/// Why a zone file could not be loaded: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct ZoneError {
    /// The file (or the name given to [`Zone::parse`]).
    pub source_name: String,
    /// 1-based line of the entry (0 when the problem is the whole file).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A warning from loading a zone (the zone still loads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneWarning {
    /// 1-based line of the entry.
    pub line: usize,
    /// What is odd.
    pub message: String,
}

impl fmt::Display for ZoneWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One authoritative zone: its apex (the SOA owner), the SOA and every record.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    serial: u32,
    minimum: u32,
    records: Vec<Record>,
    warnings: Vec<ZoneWarning>,
}

impl Zone {
    /// Parses a zone file's text. `source_name` names it in errors. The zone's apex is the owner
    /// of its single SOA record; every record must be at or below it.
    pub fn parse(text: &str, source_name: &str) -> Result<Zone, ZoneError> {
        Loader::new(source_name).load(text)
    }

    /// Reads and parses a zone file.
    pub fn load(path: &Path) -> Result<Zone, ZoneError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ZoneError {
            source_name: name.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Zone::parse(&text, &name)
    }

    /// The apex (the SOA owner), absolute.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The TTL of negative answers (RFC 2308 §5): min(SOA TTL, SOA MINIMUM).
    pub fn negative_ttl(&self) -> u32 {
        self.minimum
    }

    /// Every record, the SOA first.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Warnings from loading (e.g. generic AMTRELAY data that does not parse).
    pub fn warnings(&self) -> &[ZoneWarning] {
        &self.warnings
    }
}

/// One logical entry of a master file: its words (raw, quotes and escapes kept) and whether
/// the first line started with a blank (the owner is the previous one).
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    line: usize,
    blank_owner: bool,
    words: Vec<String>,
}

/// Splits master-file text into entries (RFC 1035 §5.1).
fn split_entries(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut entries = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut in_quote = false;
    let mut open_paren_line: Option<usize> = None;
    let mut line = 1;
    let mut entry_line = 1;
    let mut blank_owner = false;
    let mut at_line_start = true;
    let mut chars = text.chars().peekable();

    fn end_word(words: &mut Vec<String>, word: &mut String, in_word: &mut bool) {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    }

    while let Some(c) = chars.next() {
        if at_line_start && open_paren_line.is_none() {
            at_line_start = false;
            entry_line = line;
            blank_owner = c == ' ' || c == '\t';
        }
        if in_quote {
            match c {
                '"' => {
                    word.push(c);
                    in_quote = false;
                }
                '\\' => {
                    word.push(c);
                    if let Some(next) = chars.next() {
                        if next == '\n' {
                            line += 1;
                        }
                        word.push(next);
                    }
                }
                '\n' => return Err((line, "line break inside a quoted string".into())),
                _ => word.push(c),
            }
            continue;
        }
        match c {
            '\\' => {
                in_word = true;
                word.push(c);
                match chars.next() {
                    Some('\n') | None => return Err((line, "backslash at the end of a line".into())),
                    Some(next) => word.push(next),
                }
            }
            '"' => {
                in_word = true;
                in_quote = true;
                word.push(c);
            }
            ';' => {
                end_word(&mut words, &mut word, &mut in_word);
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            '(' => {
                end_word(&mut words, &mut word, &mut in_word);
                if open_paren_line.is_some() {
                    return Err((line, "nested parentheses".into()));
                }
                open_paren_line = Some(line);
            }
            ')' => {
                end_word(&mut words, &mut word, &mut in_word);
                if open_paren_line.take().is_none() {
                    return Err((line, "unbalanced ')'".into()));
                }
            }
            '\n' => {
                end_word(&mut words, &mut word, &mut in_word);
                line += 1;
                if open_paren_line.is_none() {
                    if !words.is_empty() {
                        entries.push(Entry { line: entry_line, blank_owner, words: std::mem::take(&mut words) });
                    }
                    at_line_start = true;
                }
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_quote {
        return Err((line, "unterminated quoted string".into()));
    }
    if let Some(open) = open_paren_line {
        return Err((open, "'(' is never closed".into()));
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        entries.push(Entry { line: entry_line, blank_owner, words });
    }
    Ok(entries)
}

/// The record type word of an entry: a mnemonic hickory knows, AMTRELAY, or `TYPEnnn`.
fn parse_type(word: &str) -> Option<RecordType> {
    let upper = word.to_ascii_uppercase();
    if upper == "AMTRELAY" {
        return Some(RecordType::from(AMTRELAY_TYPE));
    }
    if let Some(num) = upper.strip_prefix("TYPE") {
        return num.parse::<u16>().ok().map(RecordType::from);
    }
    match RecordType::from_str(&upper) {
        Ok(RecordType::Unknown(_)) | Err(_) => None,
        Ok(t) => Some(t),
    }
}

fn parse_class(word: &str) -> Option<DNSClass> {
    match word.to_ascii_uppercase().as_str() {
        "IN" | "CLASS1" => Some(DNSClass::IN),
        "CH" | "CLASS3" => Some(DNSClass::CH),
        "HS" | "CLASS4" => Some(DNSClass::HS),
        _ => None,
    }
}

/// Decodes the RFC 3597 §5 generic RDATA words after `\#`: the length, then hex words.
fn decode_generic(words: &[String]) -> Result<Vec<u8>, String> {
    let mut iter = words.iter();
    let len: usize = iter
        .next()
        .ok_or("\\# without a length")?
        .parse()
        .map_err(|_| "the length after \\# is not a decimal number".to_string())?;
    // RDATA is at most 65535 bytes (RFC 3597 §5); never allocate what the text merely claims
    // (a fuzzed `\# 1821027132076` asked for 1.8 TB).
    if len > usize::from(u16::MAX) {
        return Err(format!("\\# says {len} bytes: RDATA is at most 65535"));
    }
    let mut data = Vec::with_capacity(len);
    for w in iter {
        if w.len() % 2 != 0 {
            return Err(format!("hex word {w:?} has an odd number of digits"));
        }
        for pair in w.as_bytes().chunks_exact(2) {
            let s = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            data.push(u8::from_str_radix(s, 16).map_err(|_| format!("{w:?} is not hex"))?);
        }
    }
    if data.len() != len {
        return Err(format!("\\# says {len} bytes but the hex data has {}", data.len()));
    }
    Ok(data)
}

struct Loader {
    source_name: String,
    origin: Option<Name>,
    origin_explicit: bool,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    owner: Option<Name>,
    class: DNSClass,
    apex: Option<Name>,
    serial: u32,
    minimum: Option<u32>,
    records: Vec<Record>,
    warnings: Vec<ZoneWarning>,
}

impl Loader {
    fn new(source_name: &str) -> Loader {
        Loader {
            source_name: source_name.to_string(),
            origin: None,
            origin_explicit: false,
            default_ttl: None,
            last_ttl: None,
            owner: None,
            class: DNSClass::IN,
            apex: None,
            serial: 0,
            minimum: None,
            records: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn err(&self, line: usize, message: impl Into<String>) -> ZoneError {
        ZoneError { source_name: self.source_name.clone(), line, message: message.into() }
    }

    fn load(mut self, text: &str) -> Result<Zone, ZoneError> {
        let entries = split_entries(text).map_err(|(line, m)| self.err(line, m))?;
        for entry in &entries {
            self.entry(entry).map_err(|m| self.err(entry.line, m))?;
        }
        let apex = self.apex.clone().ok_or_else(|| self.err(0, "the zone has no SOA record"))?;
        for r in &self.records {
            if !apex.zone_of(&r.name) {
                return Err(self.err(0, format!("{} is outside the zone {apex}", r.name)));
            }
        }
        // The SOA first.
        self.records.sort_by_key(|r| r.record_type() != RecordType::SOA);
        Ok(Zone {
            origin: apex,
            serial: self.serial,
            minimum: self.minimum.unwrap_or(0),
            records: self.records,
            warnings: self.warnings,
        })
    }

    fn name(&self, word: &str) -> Result<Name, String> {
        let mut name = if word == "@" {
            self.origin.clone().ok_or("@ used before any $ORIGIN or SOA")?
        } else {
            let name = Name::parse(word, self.origin.as_ref()).map_err(|e| format!("bad name {word:?}: {e}"))?;
            if !name.is_fqdn() {
                return Err(format!("relative name {word:?} with no $ORIGIN"));
            }
            name
        };
        name.set_fqdn(true);
        Ok(name)
    }

    fn entry(&mut self, entry: &Entry) -> Result<(), String> {
        let words = &entry.words;
        let first = words.first().map(String::as_str).unwrap_or_default();
        if !entry.blank_owner && first.starts_with('$') {
            return self.directive(first, &words[1..]);
        }
        let mut rest = words.as_slice();
        if !entry.blank_owner {
            self.owner = Some(self.name(first)?);
            rest = &rest[1..];
        }
        let owner = self.owner.clone().ok_or("no owner name (the first record starts with a blank)")?;
        let mut ttl = None;
        let mut rtype = None;
        while let Some((word, tail)) = rest.split_first() {
            rest = tail;
            if let Some(class) = parse_class(word) {
                self.class = class;
            } else if let Some(t) = parse_type(word) {
                rtype = Some(t);
                break;
            } else if let Ok(t) = parse_ttl(word) {
                ttl = Some(t);
            } else {
                return Err(format!("{word:?} is neither a TTL, a class nor a known record type"));
            }
        }
        let rtype = rtype.ok_or("no record type")?;
        if let Some(t) = ttl {
            self.last_ttl = Some(t);
        }
        let ttl = ttl.or(self.default_ttl).or(self.last_ttl).or(self.minimum);
        let generic = rest.first().is_some_and(|w| w == "\\#");

        let record = if rtype == RecordType::from(AMTRELAY_TYPE) {
            let rdata = if generic {
                let data = decode_generic(&rest[1..])?;
                if let Err(e) = AmtRelay::parse(&data) {
                    self.warnings.push(ZoneWarning {
                        line: entry.line,
                        message: format!("{owner} TYPE260 data is not valid AMTRELAY ({e}); served as written"),
                    });
                }
                data
            } else {
                let text = rest.join(" ");
                let relay = AmtRelay::from_str(&text).map_err(|e| format!("{e}"))?;
                relay.to_vec().map_err(|e| format!("AMTRELAY {text}: {e}"))?
            };
            unknown_record(owner, ttl, rtype, rdata)?
        } else if generic {
            let data = decode_generic(&rest[1..])?;
            unknown_record(owner, ttl, rtype, data)?
        } else if rtype == RecordType::DNAME {
            let [target] = rest else { return Err("DNAME takes exactly one target name".into()) };
            let target = self.name(target)?;
            let wire = target.to_bytes().map_err(|e| format!("DNAME target: {e}"))?;
            unknown_record(owner, ttl, rtype, wire)?
        } else if matches!(rtype, RecordType::Unknown(_)) {
            return Err(format!("{rtype} needs the generic form (\\# LEN HEX)"));
        } else {
            self.hickory_record(&owner, ttl, rtype, rest)?
        };
        let mut record = record;
        record.dns_class = self.class;
        if let RData::SOA(soa) = &record.data {
            if self.apex.is_some() {
                return Err("a second SOA record: one zone per file".into());
            }
            self.apex = Some(record.name.clone());
            self.serial = soa.serial;
            self.minimum = Some(soa.minimum.min(record.ttl));
            if !self.origin_explicit && self.origin.is_none() {
                self.origin = Some(record.name.clone());
            }
        }
        self.records.push(record);
        Ok(())
    }

    /// Parses a standard record with hickory, owner and TTL made explicit. A record with no TTL
    /// at all can only be an SOA, whose MINIMUM then becomes its TTL.
    fn hickory_record(
        &self,
        owner: &Name,
        ttl: Option<u32>,
        rtype: RecordType,
        rdata: &[String],
    ) -> Result<Record, String> {
        // hickory needs an origin; without one, names in the RDATA must be absolute anyway.
        let origin = self.origin.clone().unwrap_or_else(Name::root);
        let text = format!("$ORIGIN {origin}\n{owner} {} IN {rtype} {}\n", ttl.unwrap_or(0), rdata.join(" "));
        let (_, sets) = Parser::new(text, None, Some(origin)).parse().map_err(|e| format!("{e}"))?;
        let mut record = sets
            .into_values()
            .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
            .next()
            .ok_or("hickory's parser returned no record")?;
        if ttl.is_none() {
            match &record.data {
                RData::SOA(soa) => record.ttl = soa.minimum,
                _ => return Err("no TTL: give one, or a $TTL, or an SOA before this record".into()),
            }
        }
        Ok(record)
    }

    fn directive(&mut self, word: &str, args: &[String]) -> Result<(), String> {
        match (word.to_ascii_uppercase().as_str(), args) {
            ("$ORIGIN", [name]) => {
                let mut origin = Name::parse(name, self.origin.as_ref()).map_err(|e| format!("bad $ORIGIN: {e}"))?;
                if !origin.is_fqdn() {
                    return Err(format!("$ORIGIN {name} is relative and there is no origin yet"));
                }
                origin.set_fqdn(true);
                self.origin = Some(origin);
                self.origin_explicit = true;
                Ok(())
            }
            ("$TTL", [ttl]) => {
                self.default_ttl = Some(parse_ttl(ttl).map_err(|e| format!("bad $TTL: {e}"))?);
                Ok(())
            }
            ("$INCLUDE", _) => Err("$INCLUDE is not supported".into()),
            (d, _) => Err(format!("bad directive {d} {}", args.join(" "))),
        }
    }
}

fn unknown_record(owner: Name, ttl: Option<u32>, rtype: RecordType, data: Vec<u8>) -> Result<Record, String> {
    let ttl = ttl.ok_or("no TTL: give one, or a $TTL, or put the SOA first")?;
    if data.is_empty() {
        // hickory's NULL cannot hold empty data (a type-0 AMTRELAY always has 2 bytes).
        return Err("empty RDATA is not supported".into());
    }
    Ok(Record::from_rdata(owner, ttl, RData::Unknown { code: rtype, rdata: NULL::with(data) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdata_bytes(r: &Record) -> &[u8] {
        match &r.data {
            RData::Unknown { rdata, .. } => &rdata.anything,
            other => panic!("not unknown: {other:?}"),
        }
    }

    fn find<'a>(zone: &'a Zone, name: &str, t: RecordType) -> Vec<&'a Record> {
        let name = Name::from_ascii(name).unwrap();
        zone.records().iter().filter(|r| r.name == name && r.record_type() == t).collect()
    }

    const AMT: RecordType = RecordType::Unknown(260);

    #[test]
    fn splits_entries_with_parentheses_comments_and_quotes() {
        let text = "a IN TXT \"x ; (y)\" ; c\n  IN A 1.2.3.4\n\n; only a comment\nb ( 1\n 2 ) ; tail\n";
        let e = split_entries(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].words, ["a", "IN", "TXT", "\"x ; (y)\""]);
        assert!(!e[0].blank_owner);
        assert!(e[1].blank_owner);
        assert_eq!(e[1].line, 2);
        assert_eq!(e[2].words, ["b", "1", "2"]);
        assert_eq!(e[2].line, 5);
        assert!(split_entries("a ( b\n").is_err());
        assert!(split_entries("a ) b\n").is_err());
        assert!(split_entries("a \"b\n").is_err());
    }

    #[test]
    fn original_sample_zone_loads() {
        // original-system.md §7.3, verbatim layout: no $TTL, no TTLs, SOA across lines.
        let text = r#"201.138.250.162.in-addr.arpa. IN SOA ns1.hackathon.jakeholland.net. jakeholland.net.gmail.com (
                                 22     ; SERIAL
                                 7200   ; REFRESH
                                 600    ; RETRY
                                 120    ; EXPIRE
                                 60)    ; MINIMUM

  IN NS ns1.hackathon.jakeholland.net.

$ORIGIN 201.138.250.162.in-addr.arpa.

  IN	PTR	kanrensrc.hackathon.jakeholland.net.
  ; IN AMTRELAY 15 0 1 69.77.14.145
  IN TYPE260 \# ( 6 0f 01 454d0e91 )
  IN TYPE260 \# ( 25 10 03 09616d742d72656c6179076d326963617374036e657400 )
  IN TYPE260 \# ( 6 20 01 a2fa89fe )
"#;
        let zone = Zone::parse(text, "kanren").unwrap();
        assert_eq!(zone.origin().to_string(), "201.138.250.162.in-addr.arpa.");
        assert_eq!(zone.serial(), 22);
        assert_eq!(zone.negative_ttl(), 60);
        assert_eq!(zone.records()[0].record_type(), RecordType::SOA);
        let amt = find(&zone, "201.138.250.162.in-addr.arpa.", AMT);
        assert_eq!(amt.len(), 3);
        assert!(amt.iter().all(|r| r.ttl == 60), "TTL falls back to the SOA minimum");
        assert_eq!(rdata_bytes(amt[0]), [0x0f, 0x01, 69, 77, 14, 145]);
        let relay = AmtRelay::parse(rdata_bytes(amt[1])).unwrap();
        assert_eq!(relay.to_string(), "16 0 3 amt-relay.m2icast.net.");
        assert_eq!(find(&zone, "201.138.250.162.in-addr.arpa.", RecordType::PTR).len(), 1);
        assert!(zone.warnings().is_empty());
    }

    #[test]
    fn amtrelay_presentation_and_generic_forms() {
        let text = r#"$ORIGIN 100.51.198.in-addr.arpa.
$TTL 300
@ IN SOA ns.example. host.example. 1 7200 600 86400 30
10 IN AMTRELAY 10 0 1 203.0.113.15
   IN AMTRELAY 128 1 3 amtrelays.example.com.
   600 IN AMTRELAY 20 0 2 2001:db8::15
11 IN TYPE260 \# 6 0a01cb00710f
   IN TYPE260 \# 22 1003047234763403616d7406616b61646e73036e6574
   IN AMTRELAY 0 0 0 .
12 IN TYPE260 \# 3 0a0101
relays.example.net. 60 IN A 203.0.113.15
"#;
        // relays.example.net. is outside the zone: refused.
        let err = Zone::parse(text, "z").unwrap_err();
        assert!(err.message.contains("outside the zone"), "{err}");
        let text = text.replace("relays.example.net. 60 IN A 203.0.113.15\n", "relays 60 IN A 203.0.113.15\n");
        let zone = Zone::parse(&text, "z").unwrap();
        let r10 = find(&zone, "10.100.51.198.in-addr.arpa.", AMT);
        assert_eq!(r10.len(), 3);
        assert_eq!(rdata_bytes(r10[0]), [10, 1, 203, 0, 113, 15]);
        assert_eq!(r10[0].ttl, 300);
        let name = AmtRelay::parse(rdata_bytes(r10[1])).unwrap();
        assert_eq!(name.to_string(), "128 1 3 amtrelays.example.com.");
        assert_eq!(*rdata_bytes(r10[1]).last().unwrap(), 0, "presentation form is emitted with the root label");
        assert_eq!(r10[2].ttl, 600);
        let r11 = find(&zone, "11.100.51.198.in-addr.arpa.", AMT);
        assert_eq!(r11.len(), 3);
        // Stored verbatim: 22 bytes, no root label.
        assert_eq!(rdata_bytes(r11[1]).len(), 22);
        assert_eq!(rdata_bytes(r11[2]), [0, 0]);
        // Malformed generic data is served with a warning.
        assert_eq!(find(&zone, "12.100.51.198.in-addr.arpa.", AMT).len(), 1);
        assert_eq!(zone.warnings().len(), 1);
        assert_eq!(zone.warnings()[0].line, 10);
        assert_eq!(find(&zone, "relays.100.51.198.in-addr.arpa.", RecordType::A).len(), 1);
    }

    #[test]
    fn dname_cname_srv_and_relative_names() {
        let text = r#"$ORIGIN example.net.
$TTL 1h
@ SOA ns hostmaster 7 3600 600 86400 5
@ NS ns
ns A 203.0.113.53
old DNAME new.example.net.
alias CNAME target
_dorms._tcp.10 SRV 0 0 443 dorms
"#;
        let zone = Zone::parse(text, "z").unwrap();
        assert_eq!(zone.negative_ttl(), 5);
        let d = find(&zone, "old.example.net.", RecordType::DNAME);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].ttl, 3600);
        assert_eq!(rdata_bytes(d[0]), Name::from_ascii("new.example.net.").unwrap().to_bytes().unwrap());
        let c = find(&zone, "alias.example.net.", RecordType::CNAME);
        assert_eq!(c[0].data.to_string(), "target.example.net.");
        let s = find(&zone, "_dorms._tcp.10.example.net.", RecordType::SRV);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn errors_name_the_line() {
        let e =
            Zone::parse("$ORIGIN x.\n@ 60 SOA a. b. 1 2 3 4 5\n  60 IN AMTRELAY 10 2 1 1.2.3.4\n", "f").unwrap_err();
        assert_eq!((e.source_name.as_str(), e.line), ("f", 3));
        assert!(e.message.contains("discovery-optional"), "{e}");
        let e =
            Zone::parse("$ORIGIN x.\n@ 60 SOA a. b. 1 2 3 4 5\na 60 IN TYPE260 \\# 7 0a01cb00710f\n", "f").unwrap_err();
        assert_eq!(e.line, 3);
        // Found by fuzzing (fuzz/fuzz_targets/zone.rs): a huge declared length was allocated
        // before the hex data was counted.
        let e = Zone::parse("$ORIGIN x.\n@ 60 SOA a. b. 1 2 3 4 5\na 60 IN TYPE260 \\# 1821027132076 0a\n", "f")
            .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("at most 65535"), "{e}");
        let e = Zone::parse("$ORIGIN x.\na 60 IN A 1.2.3.4\n", "f").unwrap_err();
        assert!(e.message.contains("no SOA"), "{e}");
        let e = Zone::parse("$ORIGIN x.\n@ 60 SOA a. b. 1 2 3 4 5\n@ 60 SOA a. b. 1 2 3 4 5\n", "f").unwrap_err();
        assert_eq!(e.line, 3);
        let e = Zone::parse("$ORIGIN x.\n@ 60 SOA a. b. 1 2 3 4 5\na 60 IN BOGUS 1\n", "f").unwrap_err();
        assert_eq!(e.line, 3);
        let e = Zone::parse("$INCLUDE other\n", "f").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
