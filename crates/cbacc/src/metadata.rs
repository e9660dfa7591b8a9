//! DORMS documents: host-meta (the RESTCONF root), the metadata paths of every draft revision,
//! and the CBACC leaves in the JSON answers (reference/protocols.md §A5).

use std::net::IpAddr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::rate::Rate;

/// The unit of the legacy `max-bits-per-second` leaf. Its name says bit/s, its YANG
/// description says kilobits; the original platform read it as bit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LegacyUnit {
    /// bit/s (the original platform's reading; default).
    #[default]
    Bit,
    /// kbit/s (the YANG description's).
    Kbit,
}

/// Which leaf the rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLeaf {
    /// `max-speed` (kbit/s), cbacc 2021-07-08 and later.
    MaxSpeed,
    /// `max-bits-per-second`, cbacc 2019/2021-01 (unit per [`LegacyUnit`]).
    MaxBitsPerSecond,
}

/// The CBACC metadata of one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Metadata {
    /// The advertised maximum rate.
    pub rate: Rate,
    /// Where it came from.
    pub leaf: RateLeaf,
    /// `priority` (higher: keep), default 256.
    pub priority: u16,
    /// `max-packet-size` / `max-mss` in octets, default 1400.
    pub max_packet_size: u16,
    /// `data-rate-window` in milliseconds, default 2000.
    pub data_rate_window_ms: u32,
}

/// The YANG defaults.
pub const DEFAULT_PRIORITY: u16 = 256;
const DEFAULT_MAX_PACKET_SIZE: u16 = 1400;
const DEFAULT_DATA_RATE_WINDOW_MS: u32 = 2000;

/// The metadata paths, in the order a client tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathLayout {
    /// dorms 2021-07-08 and later: `data/ietf-dorms:dorms/metadata/sender=S/group=G`.
    Current,
    /// cbacc 2021-01-15 (the original platform's):
    /// `data/ietf-dorms:metadata/sender=S/group=G/ietf-cbacc:cbacc`.
    Legacy,
    /// dorms 2019-08-25: `data/ietf-dorms:metadata/sender=S/group=G` (CBACC per udp-stream).
    LegacyGroup,
}

impl PathLayout {
    /// Every layout, newest first.
    pub const ALL: [PathLayout; 3] = [PathLayout::Current, PathLayout::Legacy, PathLayout::LegacyGroup];

    /// The path below the RESTCONF root (which ends in `/`), keys percent-encoded.
    pub fn path(self, source: IpAddr, group: IpAddr) -> String {
        let (s, g) = (encode_key(source), encode_key(group));
        match self {
            PathLayout::Current => format!("data/ietf-dorms:dorms/metadata/sender={s}/group={g}"),
            PathLayout::Legacy => format!("data/ietf-dorms:metadata/sender={s}/group={g}/ietf-cbacc:cbacc"),
            PathLayout::LegacyGroup => format!("data/ietf-dorms:metadata/sender={s}/group={g}"),
        }
    }
}

/// RFC 8040 §3.5.3: key values are percent-encoded (RFC 3986), so IPv6 colons go as `%3A`.
const KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_').remove(b'~');

/// A list key value as it goes into a URL: the canonical text form, percent-encoded.
pub fn encode_key(addr: IpAddr) -> String {
    utf8_percent_encode(&addr.to_string(), KEY).to_string()
}

/// The `restconf` link of an XRD host-meta document (RFC 6415, RFC 8040 §3.1).
pub fn host_meta_xml(text: &str) -> Result<Option<String>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) if e.local_name().as_ref() == b"Link" => {
                let mut rel = None;
                let mut href = None;
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| format!("bad XML attribute: {e}"))?;
                    let value = attr
                        .decode_and_unescape_value(reader.decoder())
                        .map_err(|e| format!("bad XML attribute value: {e}"))?
                        .into_owned();
                    match attr.key.local_name().as_ref() {
                        b"rel" => rel = Some(value),
                        b"href" => href = Some(value),
                        _ => {}
                    }
                }
                if rel.as_deref() == Some("restconf")
                    && let Some(href) = href
                {
                    return Ok(Some(href));
                }
            }
            Ok(Event::Eof) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(format!("not XML: {e}")),
        }
    }
}

/// The `restconf` link of a JSON host-meta document (RFC 6415 appendix A).
pub fn host_meta_json(text: &str) -> Result<Option<String>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    Ok(v["links"].as_array().and_then(|links| {
        links.iter().find(|l| l["rel"] == "restconf").and_then(|l| l["href"].as_str().map(str::to_owned))
    }))
}

/// Why a metadata document is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetadataError(pub String);

/// A leaf that is a uint (RFC 7951 encodes uint32 as a number, the drafts' examples as strings).
fn uint(c: &Map<String, Value>, name: &str) -> Result<Option<u64>, MetadataError> {
    match c.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_u64().map(Some).ok_or_else(|| MetadataError(format!("{name}: {n} is not an unsigned integer")))
        }
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| MetadataError(format!("{name}: {s:?} is not an unsigned integer"))),
        Some(other) => Err(MetadataError(format!("{name}: {other} is not an unsigned integer"))),
    }
}

fn narrow<T: TryFrom<u64>>(v: Option<u64>, name: &str, default: T) -> Result<T, MetadataError> {
    match v {
        None => Ok(default),
        Some(v) => T::try_from(v).map_err(|_| MetadataError(format!("{name}: {v} is out of range"))),
    }
}

/// One `ietf-cbacc:cbacc` container.
fn container(c: &Map<String, Value>, legacy: LegacyUnit) -> Result<Metadata, MetadataError> {
    let (rate, leaf) = if let Some(kbps) = uint(c, "max-speed")? {
        (
            Rate::from_kbps(kbps).ok_or_else(|| MetadataError(format!("max-speed {kbps} is too large")))?,
            RateLeaf::MaxSpeed,
        )
    } else if let Some(v) = uint(c, "max-bits-per-second")? {
        let rate = match legacy {
            LegacyUnit::Bit => Some(Rate::from_bps(v)),
            LegacyUnit::Kbit => Rate::from_kbps(v),
        };
        (
            rate.ok_or_else(|| MetadataError(format!("max-bits-per-second {v} is too large")))?,
            RateLeaf::MaxBitsPerSecond,
        )
    } else {
        return Err(MetadataError("CBACC data without max-speed (or max-bits-per-second)".into()));
    };
    let mps = uint(c, "max-packet-size")?.or(uint(c, "max-mss")?);
    Ok(Metadata {
        rate,
        leaf,
        priority: narrow(uint(c, "priority")?, "priority", DEFAULT_PRIORITY)?,
        max_packet_size: narrow(mps, "max-packet-size", DEFAULT_MAX_PACKET_SIZE)?,
        data_rate_window_ms: narrow(uint(c, "data-rate-window")?, "data-rate-window", DEFAULT_DATA_RATE_WINDOW_MS)?,
    })
}

/// The local name of a JSON member (`ietf-cbacc:cbacc` → `cbacc`).
fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// Whether a list entry is for `addr` (entries without an address key are kept: lenient).
fn entry_is_for(entry: &Value, addr: IpAddr) -> bool {
    let Some(map) = entry.as_object() else { return true };
    for key in ["address", "group-address", "source-address"] {
        if let Some(v) = map.iter().find(|(k, _)| local(k) == key).map(|(_, v)| v) {
            return v.as_str().and_then(|s| s.trim().parse::<IpAddr>().ok()) == Some(addr);
        }
    }
    true
}

/// Collects the CBACC containers that belong to (S,G), whatever the layout: the container
/// at the top (cbacc 2021-01-15 path), under the group (current), under each udp-stream
/// (2019), or inside a full `ietf-dorms:dorms` tree (sender and group entries of other
/// addresses are skipped).
fn collect<'a>(v: &'a Value, source: IpAddr, group: IpAddr, out: &mut Vec<&'a Map<String, Value>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match (local(k), child) {
                    ("cbacc", Value::Object(c)) => out.push(c),
                    ("group", Value::Array(entries)) => {
                        entries.iter().filter(|e| entry_is_for(e, group)).for_each(|e| collect(e, source, group, out))
                    }
                    ("sender", Value::Array(entries)) => {
                        entries.iter().filter(|e| entry_is_for(e, source)).for_each(|e| collect(e, source, group, out))
                    }
                    _ => collect(child, source, group, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, source, group, out)),
        _ => {}
    }
}

/// Reads the CBACC metadata of (S,G) from a RESTCONF answer. `Ok(None)`: the document is
/// fine but holds no CBACC data for the flow. Unknown members are ignored (DORMS: extensions
/// appear inline). Several containers (one per udp-stream in the 2019 layout) are added up:
/// the rates summed, the largest priority, packet size and window kept.
pub fn parse_metadata(
    body: &[u8],
    source: IpAddr,
    group: IpAddr,
    legacy: LegacyUnit,
) -> Result<Option<Metadata>, MetadataError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MetadataError(format!("malformed JSON: {e}")))?;
    if !v.is_object() {
        return Err(MetadataError("not a JSON object".into()));
    }
    let mut containers = Vec::new();
    collect(&v, source, group, &mut containers);
    let mut total: Option<Metadata> = None;
    for c in containers {
        let m = container(c, legacy)?;
        total = Some(match total {
            None => m,
            Some(t) => Metadata {
                rate: t.rate.saturating_add(m.rate),
                leaf: t.leaf,
                priority: t.priority.max(m.priority),
                max_packet_size: t.max_packet_size.max(m.max_packet_size),
                data_rate_window_ms: t.data_rate_window_ms.max(m.data_rate_window_ms),
            },
        });
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> IpAddr {
        "198.51.100.10".parse().unwrap()
    }
    fn g() -> IpAddr {
        "232.1.1.1".parse().unwrap()
    }
    fn parse(json: &str) -> Result<Option<Metadata>, MetadataError> {
        parse_metadata(json.as_bytes(), s(), g(), LegacyUnit::Bit)
    }

    #[test]
    fn paths_of_every_layout_with_encoded_keys() {
        assert_eq!(
            PathLayout::Current.path(s(), g()),
            "data/ietf-dorms:dorms/metadata/sender=198.51.100.10/group=232.1.1.1"
        );
        assert_eq!(
            PathLayout::Legacy.path(s(), g()),
            "data/ietf-dorms:metadata/sender=198.51.100.10/group=232.1.1.1/ietf-cbacc:cbacc"
        );
        assert_eq!(
            PathLayout::LegacyGroup.path(s(), g()),
            "data/ietf-dorms:metadata/sender=198.51.100.10/group=232.1.1.1"
        );
        let (s6, g6) = ("2001:db8::a".parse().unwrap(), "ff3e::8000:1".parse().unwrap());
        assert_eq!(
            PathLayout::Current.path(s6, g6),
            "data/ietf-dorms:dorms/metadata/sender=2001%3Adb8%3A%3Aa/group=ff3e%3A%3A8000%3A1"
        );
    }

    #[test]
    fn current_layout_with_numbers_or_strings() {
        let m = parse(
            r#"{"ietf-dorms:group":[{"address":"232.1.1.1","udp-stream":[{"port":5001}],
                "ietf-cbacc:cbacc":{"max-speed":2000,"max-packet-size":1400,"data-rate-window":2000,"priority":256}}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.rate.bps(), 2_000_000);
        assert_eq!(m.leaf, RateLeaf::MaxSpeed);
        assert_eq!((m.priority, m.max_packet_size, m.data_rate_window_ms), (256, 1400, 2000));
        let m = parse(r#"{"ietf-dorms:group":[{"address":"232.1.1.1","ietf-cbacc:cbacc":{"max-speed":"4000","priority":"300","x-vendor":{"a":1}}}]}"#)
            .unwrap()
            .unwrap();
        assert_eq!((m.rate.bps(), m.priority), (4_000_000, 300));
    }

    #[test]
    fn legacy_leaves_and_their_unit() {
        let doc = r#"{"ietf-cbacc:cbacc":{"max-bits-per-second":2000,"max-mss":1200,"priority":7}}"#;
        let m = parse(doc).unwrap().unwrap();
        assert_eq!((m.rate.bps(), m.leaf, m.max_packet_size, m.priority), (2000, RateLeaf::MaxBitsPerSecond, 1200, 7));
        let m = parse_metadata(doc.as_bytes(), s(), g(), LegacyUnit::Kbit).unwrap().unwrap();
        assert_eq!(m.rate.bps(), 2_000_000);
        // Both leaves: max-speed wins.
        let m = parse(r#"{"ietf-cbacc:cbacc":{"max-bits-per-second":5,"max-speed":3}}"#).unwrap().unwrap();
        assert_eq!(m.rate.bps(), 3000);
    }

    #[test]
    fn the_2019_layout_sums_its_udp_streams() {
        let m = parse(
            r#"{"ietf-dorms:group":[{"group-address":"232.1.1.1","udp-stream":[
                {"port":"5001","ietf-cbacc:cbacc":{"max-bits-per-second":"2000","priority":"10"}},
                {"port":"5002","ietf-cbacc:cbacc":{"max-bits-per-second":"3000","priority":"20"}}]}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((m.rate.bps(), m.priority), (5000, 20));
    }

    #[test]
    fn a_full_tree_selects_the_flow() {
        let m = parse(
            r#"{"ietf-dorms:dorms":{"metadata":{"sender":[
                {"source-address":"23.185.212.4","group":[{"group-address":"232.1.1.1","ietf-cbacc:cbacc":{"max-speed":1}}]},
                {"source-address":"198.51.100.10","group":[
                    {"group-address":"232.1.1.2","ietf-cbacc:cbacc":{"max-speed":2}},
                    {"group-address":"232.1.1.1","udp-stream":[{"port":"5001","ietf-cbacc:cbacc":{"max-bits-per-second":"2000"}}]}]}]}}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.rate.bps(), 2000);
    }

    #[test]
    fn no_cbacc_data_and_bad_documents() {
        assert_eq!(
            parse(r#"{"ietf-dorms:group":[{"address":"232.1.1.1","udp-stream":[{"port":5001}]}]}"#).unwrap(),
            None
        );
        assert_eq!(
            parse(r#"{"ietf-dorms:group":[{"address":"232.9.9.9","ietf-cbacc:cbacc":{"max-speed":1}}]}"#).unwrap(),
            None
        );
        for (doc, want) in [
            (r#"{"ietf-dorms:group":[{"#, "malformed JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"ietf-cbacc:cbacc":{"priority":1}}"#, "without max-speed"),
            (r#"{"ietf-cbacc:cbacc":{"max-speed":-1}}"#, "not an unsigned integer"),
            (r#"{"ietf-cbacc:cbacc":{"max-speed":1.5}}"#, "not an unsigned integer"),
            (r#"{"ietf-cbacc:cbacc":{"max-speed":"fast"}}"#, "not an unsigned integer"),
            (r#"{"ietf-cbacc:cbacc":{"max-speed":true}}"#, "not an unsigned integer"),
            (r#"{"ietf-cbacc:cbacc":{"max-speed":1,"priority":70000}}"#, "out of range"),
            (r#"{"ietf-cbacc:cbacc":{"max-speed":18446744073709551615}}"#, "too large"),
        ] {
            let e = parse(doc).unwrap_err().to_string();
            assert!(e.contains(want), "{doc}: {e}");
        }
    }

    proptest::proptest! {
        /// Whatever a server sends, the parsers return a value or an error, never panic.
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_metadata(&bytes, s(), g(), LegacyUnit::Kbit);
            let text = String::from_utf8_lossy(&bytes);
            let _ = host_meta_xml(&text);
            let _ = host_meta_json(&text);
            let _ = text.parse::<Rate>();
        }

        #[test]
        fn json_shaped_documents_never_panic(
            speed in proptest::prelude::any::<i128>(),
            key in "(max-speed|max-bits-per-second|priority|max-mss|data-rate-window)",
            nested in 0usize..4,
        ) {
            let mut doc = format!(r#"{{"ietf-cbacc:cbacc":{{"{key}":{speed}}}}}"#);
            for _ in 0..nested {
                doc = format!(r#"{{"ietf-dorms:group":[{{"address":"232.1.1.1","x":{doc}}}]}}"#);
            }
            let _ = parse_metadata(doc.as_bytes(), s(), g(), LegacyUnit::Bit);
        }
    }

    #[test]
    fn host_meta_documents() {
        let xrd = "<?xml version='1.0' encoding='UTF-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n\
                   <Link rel='author' href='mailto:x'/>\n<Link rel='restconf' href='/restconf'/>\n</XRD>";
        assert_eq!(host_meta_xml(xrd).unwrap().as_deref(), Some("/restconf"));
        let prefixed = r#"<x:XRD xmlns:x="http://docs.oasis-open.org/ns/xri/xrd-1.0"><x:Link rel="restconf" href="/a&amp;b"></x:Link></x:XRD>"#;
        assert_eq!(host_meta_xml(prefixed).unwrap().as_deref(), Some("/a&b"));
        assert_eq!(host_meta_xml("<XRD><Link rel='lrdd' href='/x'/></XRD>").unwrap(), None);
        assert!(host_meta_xml("<XRD><Link rel='restconf' href='/x></XRD>").is_err());
        assert_eq!(
            host_meta_json(r#"{"links":[{"rel":"other","href":"/x"},{"rel":"restconf","href":"/top/restconf"}]}"#)
                .unwrap()
                .as_deref(),
            Some("/top/restconf")
        );
        assert_eq!(host_meta_json(r#"{"links":[]}"#).unwrap(), None);
        assert!(host_meta_json("<xml/>").is_err());
    }
}
