//! The flows the lab DORMS server knows, from a TOML or JSON file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

/// Where the `restconf` link is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostMeta {
    /// `/.well-known/host-meta` (XRD XML) and `/.well-known/host-meta.json`.
    #[default]
    Both,
    /// Only the XRD document (RFC 6415 §3).
    Xml,
    /// Only the JSON document (RFC 6415 appendix A); the XML one answers 404.
    Json,
    /// Neither (both 404): a server that is not a RESTCONF server.
    None,
}

/// A path layout of the DORMS/CBACC drafts (reference/protocols.md §A5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// dorms 2021-07-08 and later: `{root}/data/ietf-dorms:dorms/metadata/sender=S/group=G`,
    /// CBACC under the group with `max-speed` (kbit/s).
    Current,
    /// dorms 2019-08-25 / cbacc 2021-01-15 (the original platform's):
    /// `{root}/data/ietf-dorms:metadata/sender=S/group=G[/ietf-cbacc:cbacc]` with
    /// `max-bits-per-second` and `max-mss`.
    Legacy,
}

/// How a flow misbehaves, for failure tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// 404 with a RESTCONF error body, as for an unknown flow.
    NotFound,
    /// 500 with a RESTCONF error body.
    ServerError,
    /// Answer normally, but only after `delay` (default 30 s).
    Slow,
    /// Truncated JSON with the right content type.
    Malformed,
    /// A valid JSON document of 1 MiB.
    Huge,
    /// The right JSON, labelled `text/html`.
    WrongContentType,
    /// The DORMS group without the `ietf-cbacc:cbacc` container.
    NoCbacc,
}

fn default_port() -> u16 {
    5001
}

fn default_layouts() -> Vec<Layout> {
    vec![Layout::Current, Layout::Legacy]
}

/// One flow (S,G) and its CBACC metadata.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// The sender S.
    pub source: IpAddr,
    /// The group G.
    pub group: IpAddr,
    /// `max-speed` in kbit/s (the current leaf). Absent: the CBACC container has no rate.
    #[serde(default, alias = "max-speed")]
    pub max_speed: Option<u64>,
    /// What the legacy `max-bits-per-second` leaf says (default: `max_speed` × 1000, the
    /// bit/s reading of the original platform).
    #[serde(default, alias = "max-bits-per-second")]
    pub legacy_bits_per_second: Option<u64>,
    /// `priority` (higher: keep); absent: not sent (the YANG default is 256).
    #[serde(default)]
    pub priority: Option<u16>,
    /// `max-packet-size` (legacy: `max-mss`).
    #[serde(default, alias = "max-packet-size")]
    pub max_packet_size: Option<u16>,
    /// `data-rate-window` in milliseconds.
    #[serde(default, alias = "data-rate-window")]
    pub data_rate_window: Option<u32>,
    /// The UDP port of the flow's `udp-stream` entry.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The layouts this flow is served under (default both).
    #[serde(default = "default_layouts")]
    pub layouts: Vec<Layout>,
    /// Encode numbers as JSON strings, as the drafts' examples do (RFC 7951 uses numbers).
    #[serde(default)]
    pub strings: bool,
    /// Fault mode.
    #[serde(default)]
    pub fault: Fault,
    /// Delay before answering (`10s`, `500ms`); for `slow` the default is 30 s.
    #[serde(default)]
    pub delay: Option<String>,
}

/// The server's content: every flow plus server-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flows {
    /// The RESTCONF root published in host-meta (`/restconf`).
    #[serde(default = "default_root")]
    pub restconf_root: String,
    /// Which host-meta documents are served.
    #[serde(default)]
    pub host_meta: HostMeta,
    /// The flows (`[[flows]]` in TOML).
    #[serde(default)]
    pub flows: Vec<Flow>,
}

fn default_root() -> String {
    "/restconf".to_owned()
}

impl Default for Flows {
    fn default() -> Self {
        Flows { restconf_root: default_root(), host_meta: HostMeta::default(), flows: Vec::new() }
    }
}

/// A flows file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FlowsError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl Flows {
    /// Parses a flows file: JSON when the text starts with `{`, TOML otherwise.
    pub fn parse(text: &str) -> Result<Flows, String> {
        let flows: Flows = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml::from_str(text).map_err(|e| e.to_string())?
        };
        for f in &flows.flows {
            if let Some(d) = &f.delay {
                humantime::parse_duration(d).map_err(|e| format!("flow {},{}: delay {d:?}: {e}", f.source, f.group))?;
            }
        }
        if !flows.restconf_root.starts_with('/') {
            return Err(format!("restconf_root {:?} must start with /", flows.restconf_root));
        }
        Ok(flows)
    }

    /// Reads and parses a flows file.
    pub fn load(path: &Path) -> Result<Flows, FlowsError> {
        let err = |message: String| FlowsError { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Flows::parse(&text).map_err(err)
    }

    /// The flow (S,G), if known.
    pub fn find(&self, source: IpAddr, group: IpAddr) -> Option<&Flow> {
        self.flows.iter().find(|f| f.source == source && f.group == group)
    }

    /// The RESTCONF root without a trailing slash.
    pub fn root(&self) -> &str {
        self.restconf_root.trim_end_matches('/')
    }

    /// The XRD host-meta document (RFC 6415) with the `restconf` link (RFC 8040 §3.1).
    pub fn host_meta_xml(&self) -> String {
        format!(
            "<?xml version='1.0' encoding='UTF-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  \
             <Link rel='author' href='mailto:lab@example.net'/>\n  <Link rel='restconf' href='{}'/>\n</XRD>\n",
            self.root()
        )
    }

    /// The JSON host-meta document.
    pub fn host_meta_json(&self) -> String {
        json!({"links": [{"rel": "restconf", "href": self.root()}]}).to_string()
    }
}

impl Flow {
    /// How long to wait before answering.
    pub fn delay(&self) -> Duration {
        let configured = self.delay.as_deref().and_then(|d| humantime::parse_duration(d).ok());
        match (configured, self.fault) {
            (Some(d), _) => d,
            (None, Fault::Slow) => Duration::from_secs(30),
            (None, _) => Duration::ZERO,
        }
    }

    fn number(&self, n: u64) -> Value {
        if self.strings { Value::String(n.to_string()) } else { Value::from(n) }
    }

    /// The current CBACC container (cbacc 2021-07-08).
    fn cbacc_current(&self) -> Value {
        let mut c = serde_json::Map::new();
        if let Some(v) = self.max_speed {
            c.insert("max-speed".into(), self.number(v));
        }
        if let Some(v) = self.max_packet_size {
            c.insert("max-packet-size".into(), self.number(v.into()));
        }
        if let Some(v) = self.data_rate_window {
            c.insert("data-rate-window".into(), self.number(v.into()));
        }
        if let Some(v) = self.priority {
            c.insert("priority".into(), self.number(v.into()));
        }
        Value::Object(c)
    }

    /// The legacy CBACC container (cbacc 2021-01-15).
    fn cbacc_legacy(&self) -> Value {
        let mut c = serde_json::Map::new();
        if let Some(v) = self.legacy_bits_per_second.or(self.max_speed.map(|k| k * 1000)) {
            c.insert("max-bits-per-second".into(), self.number(v));
        }
        if let Some(v) = self.max_packet_size {
            c.insert("max-mss".into(), self.number(v.into()));
        }
        if let Some(v) = self.data_rate_window {
            c.insert("data-rate-window".into(), self.number(v.into()));
        }
        if let Some(v) = self.priority {
            c.insert("priority".into(), self.number(v.into()));
        }
        Value::Object(c)
    }

    /// The response to `{root}/data/ietf-dorms:dorms/metadata/sender=S/group=G`.
    pub fn current_group(&self) -> Value {
        let mut group = json!({
            "address": self.group.to_string(),
            "udp-stream": [{"port": self.number(self.port.into())}],
        });
        if self.fault != Fault::NoCbacc {
            group["ietf-cbacc:cbacc"] = self.cbacc_current();
        }
        json!({"ietf-dorms:group": [group]})
    }

    /// The response to `{root}/data/ietf-dorms:metadata/sender=S/group=G`.
    pub fn legacy_group(&self) -> Value {
        let mut group = json!({
            "group-address": self.group.to_string(),
            "udp-stream": [{"port": self.number(self.port.into())}],
        });
        if self.fault != Fault::NoCbacc {
            group["ietf-cbacc:cbacc"] = self.cbacc_legacy();
        }
        json!({"ietf-dorms:group": [group]})
    }

    /// The response to `{root}/data/ietf-dorms:metadata/sender=S/group=G/ietf-cbacc:cbacc`
    /// (`None`: 404, the flow has no CBACC data).
    pub fn legacy_cbacc(&self) -> Option<Value> {
        (self.fault != Fault::NoCbacc).then(|| json!({"ietf-cbacc:cbacc": self.cbacc_legacy()}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_toml_and_json_with_defaults() {
        let flows = Flows::parse(
            r#"
            [[flows]]
            source = "198.51.100.10"
            group = "232.1.1.1"
            max_speed = 4000
            priority = 300

            [[flows]]
            source = "2001:db8::a"
            group = "ff3e::8000:1"
            max-speed = 2
            fault = "slow"
            layouts = ["legacy"]
            strings = true
            "#,
        )
        .unwrap();
        assert_eq!(flows.restconf_root, "/restconf");
        assert_eq!(flows.flows.len(), 2);
        let a = flows.find("198.51.100.10".parse().unwrap(), "232.1.1.1".parse().unwrap()).unwrap();
        assert_eq!(a.layouts, [Layout::Current, Layout::Legacy]);
        assert_eq!(a.delay(), Duration::ZERO);
        assert_eq!(
            a.current_group(),
            json!({"ietf-dorms:group": [{"address": "232.1.1.1", "udp-stream": [{"port": 5001}],
                   "ietf-cbacc:cbacc": {"max-speed": 4000, "priority": 300}}]})
        );
        assert_eq!(
            a.legacy_cbacc().unwrap(),
            json!({"ietf-cbacc:cbacc": {"max-bits-per-second": 4_000_000, "priority": 300}})
        );
        let b = &flows.flows[1];
        assert_eq!(b.delay(), Duration::from_secs(30));
        assert_eq!(b.legacy_cbacc().unwrap(), json!({"ietf-cbacc:cbacc": {"max-bits-per-second": "2000"}}));

        let json =
            Flows::parse(r#"{"host_meta": "json", "flows": [{"source": "198.51.100.10", "group": "232.1.1.1"}]}"#)
                .unwrap();
        assert_eq!(json.host_meta, HostMeta::Json);
        assert_eq!(json.flows[0].max_speed, None);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(Flows::parse("[[flows]]\nsource = \"198.51.100.10\"\ngroup = \"232.1.1.1\"\nspeed = 1\n").is_err());
        assert!(Flows::parse("[[flows]]\nsource = \"x\"\ngroup = \"232.1.1.1\"\n").is_err());
        assert!(
            Flows::parse("[[flows]]\nsource = \"198.51.100.10\"\ngroup = \"232.1.1.1\"\ndelay = \"soon\"\n").is_err()
        );
        assert!(Flows::parse("restconf_root = \"restconf\"\n").is_err());
    }

    #[test]
    fn host_meta_documents() {
        let flows = Flows { restconf_root: "/top/restconf/".into(), ..Flows::default() };
        assert!(flows.host_meta_xml().contains("<Link rel='restconf' href='/top/restconf'/>"));
        let doc: Value = serde_json::from_str(&flows.host_meta_json()).unwrap();
        assert_eq!(doc, json!({"links": [{"rel": "restconf", "href": "/top/restconf"}]}));
    }
}
