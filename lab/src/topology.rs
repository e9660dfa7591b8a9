//! The declarative lab topology (lab/topology.toml): nodes, links, addresses, routes, sysctls,
//! FRR daemons and services. Parsing is strict (unknown keys are errors) and validation
//! explains what is wrong and where, before anything is created.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::util::{render_template, toml_scalar, valid_ifname};

/// The default topology, embedded so `mcast-lab` works from any directory.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../topology.toml");

/// Files the default topology refers to (FRR config templates), embedded likewise.
pub const EMBEDDED_FILES: &[(&str, &str)] = &[
    ("frr/acc-zebra.conf", include_str!("../frr/acc-zebra.conf")),
    ("frr/acc-pimd.conf", include_str!("../frr/acc-pimd.conf")),
];

/// FRR daemons the lab knows how to start (zebra first, always).
pub const FRR_DAEMONS: &[&str] = &["zebra", "staticd", "pimd", "pim6d", "bgpd", "ospfd", "ospf6d", "bfdd"];

/// Node names the lab reserves: the hidden switch namespace is `<prefix>-sw`.
pub const RESERVED_NODES: &[&str] = &["sw"];

// ---------------------------------------------------------------------------------------------
// The file format (serde).

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
    #[serde(default)]
    defaults: DefaultsFile,
    nodes: BTreeMap<String, NodeFile>,
    #[serde(default)]
    links: Vec<LinkFile>,
    #[serde(default)]
    demo: DemoFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsFile {
    #[serde(default)]
    sysctl: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    loopback: Vec<String>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    sysctl: BTreeMap<String, toml::Value>,
    #[serde(default)]
    frr: Vec<FrrFile>,
    #[serde(default)]
    services: Vec<ServiceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrrFile {
    daemon: String,
    config: String,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    name: String,
    cmd: String,
    #[serde(default)]
    description: String,
    #[serde(default = "yes")]
    autostart: bool,
    user: Option<String>,
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkFile {
    name: String,
    members: Vec<MemberFile>,
    #[serde(default)]
    bridge: bool,
    #[serde(default)]
    snooping: bool,
    mtu: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFile {
    node: String,
    ifname: String,
    #[serde(default)]
    addrs: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoFile {
    #[serde(default)]
    start: Vec<String>,
    #[serde(default)]
    follow: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The validated model.

/// An interface address with its prefix length, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl FromStr for IfAddr {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<IfAddr> {
        let (a, p) = s.split_once('/').ok_or_else(|| anyhow!("address {s:?} needs a prefix length (e.g. /24)"))?;
        let addr: IpAddr = a.parse().map_err(|_| anyhow!("invalid IP address {a:?} in {s:?}"))?;
        let prefix: u8 = p.parse().map_err(|_| anyhow!("invalid prefix length {p:?} in {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            bail!("prefix length /{prefix} too long for {addr} (max /{max})");
        }
        if addr.is_unspecified() || addr.is_multicast() {
            bail!("{addr} cannot be an interface address");
        }
        Ok(IfAddr { addr, prefix })
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The whole validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Where it came from (a path, or "<embedded default>").
    pub origin: String,
    /// Template variables with their current values (defaults, then overrides).
    pub vars: BTreeMap<String, String>,
    pub nodes: BTreeMap<String, Node>,
    pub links: Vec<Link>,
    pub demo: Demo,
    /// Directory relative to which template paths resolve; `None` for the embedded default.
    base_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub description: String,
    pub loopback: Vec<IfAddr>,
    pub routes: Vec<String>,
    /// Sysctls to set (defaults merged with the node's own); keys may contain `*`.
    pub sysctl: BTreeMap<String, String>,
    pub frr: Vec<FrrDaemon>,
    pub services: Vec<Service>,
    /// Interfaces of this node, in link order.
    pub interfaces: Vec<Interface>,
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub link: String,
    pub addrs: Vec<IfAddr>,
}

#[derive(Debug, Clone)]
pub struct FrrDaemon {
    pub daemon: String,
    /// Template path as written (relative to the topology file).
    pub config: String,
    pub args: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub description: String,
    pub cmd: String,
    pub autostart: bool,
    pub user: Option<String>,
    pub caps: Vec<String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    pub members: Vec<Member>,
    /// A bridge in the switch namespace (more than two members, or asked for).
    pub bridge: bool,
    /// IGMP snooping on that bridge (off by default: a plain hub-like LAN).
    pub snooping: bool,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub node: String,
    pub ifname: String,
    pub addrs: Vec<IfAddr>,
}

#[derive(Debug, Clone, Default)]
pub struct Demo {
    pub start: Vec<String>,
    pub follow: Vec<String>,
}

impl Topology {
    /// The embedded default topology (lab/topology.toml).
    pub fn default_topology() -> Result<Topology> {
        Topology::parse(DEFAULT_TOPOLOGY, "<embedded lab/topology.toml>", None)
    }

    /// Loads `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Topology> {
        match path {
            None => Topology::default_topology(),
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading topology {}", p.display()))?;
                let base = p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
                Topology::parse(&text, &p.display().to_string(), Some(base))
            }
        }
    }

    /// Parses and validates topology text. `base_dir` resolves template paths; `None` means
    /// the embedded files.
    pub fn parse(text: &str, origin: &str, base_dir: Option<PathBuf>) -> Result<Topology> {
        let file: TopologyFile = toml::from_str(text).with_context(|| format!("topology {origin}: invalid TOML"))?;
        build(file, origin, base_dir).with_context(|| format!("topology {origin}"))
    }

    /// Overrides template variables (from a scenario's `[vars]`). Unknown names are errors.
    pub fn set_vars(&mut self, overrides: &BTreeMap<String, toml::Value>) -> Result<()> {
        for (k, v) in overrides {
            if !self.vars.contains_key(k) {
                let known: Vec<&str> = self.vars.keys().map(String::as_str).collect();
                bail!("unknown variable {k:?} (the topology defines: {})", known.join(", "));
            }
            let value = toml_scalar(v).with_context(|| format!("variable {k:?}"))?;
            self.vars.insert(k.clone(), value);
        }
        // Re-check that every template still renders.
        for node in self.nodes.values() {
            for d in &node.frr {
                self.render_frr_config(node, d)?;
            }
        }
        Ok(())
    }

    /// The text of a file the topology refers to (a template), from disk or the embedded set.
    pub fn read_file(&self, rel: &str) -> Result<String> {
        match &self.base_dir {
            Some(dir) => {
                let p = dir.join(rel);
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
            }
            None => {
                EMBEDDED_FILES.iter().find(|(name, _)| *name == rel).map(|(_, text)| (*text).to_string()).ok_or_else(
                    || anyhow!("no embedded file {rel:?} (embedded: lab/frr/*.conf of the default topology)"),
                )
            }
        }
    }

    /// The rendered configuration of one FRR daemon of `node`.
    pub fn render_frr_config(&self, node: &Node, d: &FrrDaemon) -> Result<String> {
        let text = self.read_file(&d.config).with_context(|| format!("node {}: {} config", node.name, d.daemon))?;
        let mut vars = self.vars.clone();
        vars.insert("node".into(), node.name.clone());
        vars.insert("hostname".into(), node.name.clone());
        render_template(&text, &vars).with_context(|| format!("node {}: rendering {}", node.name, d.config))
    }

    /// Looks up a service by `node/name`.
    pub fn service(&self, target: &str) -> Option<(&Node, &Service)> {
        let (n, s) = target.split_once('/')?;
        let node = self.nodes.get(n)?;
        node.services.iter().find(|x| x.name == s).map(|svc| (node, svc))
    }

    /// All addresses of a node (interfaces and loopback).
    pub fn node_addrs(&self, node: &str) -> Vec<IfAddr> {
        let Some(n) = self.nodes.get(node) else { return Vec::new() };
        n.interfaces.iter().flat_map(|i| i.addrs.iter().copied()).chain(n.loopback.iter().copied()).collect()
    }
}

fn valid_name(name: &str, max: usize) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= max
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn valid_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn parse_addrs(list: &[String], what: &str) -> Result<Vec<IfAddr>> {
    list.iter().map(|a| a.parse::<IfAddr>().with_context(|| what.to_string())).collect()
}

fn build(file: TopologyFile, origin: &str, base_dir: Option<PathBuf>) -> Result<Topology> {
    if file.nodes.is_empty() {
        bail!("no nodes defined (add [nodes.NAME] tables)");
    }
    let mut vars = BTreeMap::new();
    for (k, v) in &file.vars {
        if !valid_service_name(k) {
            bail!("[vars]: invalid variable name {k:?} (use lowercase letters, digits, - and _)");
        }
        vars.insert(k.clone(), toml_scalar(v).with_context(|| format!("[vars] {k}"))?);
    }
    let mut default_sysctl = BTreeMap::new();
    for (k, v) in &file.defaults.sysctl {
        check_sysctl_key(k).with_context(|| "[defaults.sysctl]")?;
        default_sysctl.insert(k.clone(), toml_scalar(v).with_context(|| format!("[defaults.sysctl] {k}"))?);
    }

    let mut nodes = BTreeMap::new();
    for (name, nf) in file.nodes {
        if !valid_name(&name, 12) {
            bail!(
                "node {name:?}: invalid name (1-12 characters, lowercase letters and digits, starting with a letter)"
            );
        }
        if RESERVED_NODES.contains(&name.as_str()) {
            bail!("node {name:?}: the name is reserved (the switch namespace is <prefix>-sw)");
        }
        let node = build_node(&name, nf, &default_sysctl).with_context(|| format!("node {name:?}"))?;
        nodes.insert(name, node);
    }

    let mut links = Vec::new();
    let mut link_names = BTreeSet::new();
    let mut all_addrs: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (n, node) in &nodes {
        for a in &node.loopback {
            if let Some(prev) = all_addrs.insert(a.addr, format!("{n} lo")) {
                bail!("address {} is used twice ({prev} and {n} lo)", a.addr);
            }
        }
    }
    for (i, lf) in file.links.into_iter().enumerate() {
        let what = format!("link #{} ({:?})", i + 1, lf.name);
        if !valid_name(&lf.name, 12) {
            bail!("{what}: invalid name (1-12 characters, lowercase letters and digits, starting with a letter)");
        }
        if !link_names.insert(lf.name.clone()) {
            bail!("{what}: duplicate link name");
        }
        if lf.members.len() < 2 {
            bail!("{what}: needs at least two members, has {}", lf.members.len());
        }
        if let Some(mtu) = lf.mtu
            && !(68..=65535).contains(&mtu)
        {
            bail!("{what}: mtu {mtu} out of range 68..=65535");
        }
        let mut members = Vec::new();
        let mut seen_nodes = BTreeSet::new();
        for (j, mf) in lf.members.into_iter().enumerate() {
            let mwhat = format!("{what} member #{} ({}:{})", j + 1, mf.node, mf.ifname);
            let Some(node) = nodes.get_mut(&mf.node) else {
                let known: Vec<&str> = nodes.keys().map(String::as_str).collect();
                bail!("{mwhat}: unknown node {:?} (known: {})", mf.node, known.join(", "));
            };
            if !seen_nodes.insert(mf.node.clone()) {
                bail!("{mwhat}: node {:?} is on this link twice", mf.node);
            }
            if !valid_ifname(&mf.ifname) || mf.ifname == "lo" {
                bail!("{mwhat}: invalid interface name {:?} (1-15 characters of A-Z a-z 0-9 _ . -, not lo)", mf.ifname);
            }
            if node.interfaces.iter().any(|x| x.name == mf.ifname) {
                bail!("{mwhat}: node {:?} already has an interface {:?}", mf.node, mf.ifname);
            }
            let addrs = parse_addrs(&mf.addrs, &mwhat)?;
            for a in &addrs {
                if let Some(prev) = all_addrs.insert(a.addr, format!("{} {}", mf.node, mf.ifname)) {
                    bail!("{mwhat}: address {} is already used by {prev}", a.addr);
                }
            }
            node.interfaces.push(Interface { name: mf.ifname.clone(), link: lf.name.clone(), addrs: addrs.clone() });
            members.push(Member { node: mf.node, ifname: mf.ifname, addrs });
        }
        let bridge = lf.bridge || members.len() > 2;
        if lf.snooping && !bridge {
            bail!("{what}: snooping needs a bridge (set bridge = true)");
        }
        links.push(Link { name: lf.name, members, bridge, snooping: lf.snooping, mtu: lf.mtu });
    }

    for node in nodes.values() {
        for key in node.sysctl.keys() {
            if let Some(ifname) = sysctl_interface(key)
                && ifname != "all"
                && ifname != "default"
                && ifname != "*"
                && ifname != "lo"
                && !node.interfaces.iter().any(|i| i.name == ifname)
            {
                bail!("node {:?}: sysctl {key:?} names interface {ifname:?}, which the node does not have", node.name);
            }
        }
    }

    let check_ref = |r: &str, what: &str| -> Result<()> {
        let (n, s) = r.split_once('/').ok_or_else(|| anyhow!("[demo] {what}: {r:?} is not NODE/SERVICE"))?;
        let node = nodes.get(n).ok_or_else(|| anyhow!("[demo] {what}: unknown node {n:?} in {r:?}"))?;
        if !node.services.iter().any(|x| x.name == s) {
            bail!("[demo] {what}: node {n:?} has no service {s:?}");
        }
        Ok(())
    };
    for r in &file.demo.start {
        check_ref(r, "start")?;
    }
    for r in &file.demo.follow {
        check_ref(r, "follow")?;
    }

    let topo = Topology {
        origin: origin.to_string(),
        vars,
        nodes,
        links,
        demo: Demo { start: file.demo.start, follow: file.demo.follow },
        base_dir,
    };
    for node in topo.nodes.values() {
        for d in &node.frr {
            topo.render_frr_config(node, d)?;
        }
    }
    Ok(topo)
}

fn build_node(name: &str, nf: NodeFile, default_sysctl: &BTreeMap<String, String>) -> Result<Node> {
    let loopback = parse_addrs(&nf.loopback, "loopback")?;
    for r in &nf.routes {
        check_route(r).with_context(|| format!("route {r:?}"))?;
    }
    let mut sysctl = default_sysctl.clone();
    for (k, v) in &nf.sysctl {
        check_sysctl_key(k)?;
        sysctl.insert(k.clone(), toml_scalar(v).with_context(|| format!("sysctl {k}"))?);
    }
    let mut frr: Vec<FrrDaemon> = Vec::new();
    for (i, f) in nf.frr.into_iter().enumerate() {
        if !FRR_DAEMONS.contains(&f.daemon.as_str()) {
            bail!("frr daemon {:?} unknown (supported: {})", f.daemon, FRR_DAEMONS.join(", "));
        }
        if i == 0 && f.daemon != "zebra" {
            bail!("frr: the first daemon must be zebra (the others connect to its zserv.api socket)");
        }
        if frr.iter().any(|d| d.daemon == f.daemon) {
            bail!("frr daemon {:?} listed twice", f.daemon);
        }
        frr.push(FrrDaemon { daemon: f.daemon, config: f.config, args: f.args });
    }
    let mut services: Vec<Service> = Vec::new();
    for s in nf.services {
        if !valid_service_name(&s.name) {
            bail!("service {:?}: invalid name (lowercase letters, digits, - and _, starting with a letter)", s.name);
        }
        if FRR_DAEMONS.contains(&s.name.as_str()) || s.name == "frr" {
            bail!("service {:?}: the name is reserved for FRR daemons (NODE/{} addresses the daemon)", s.name, s.name);
        }
        if services.iter().any(|x| x.name == s.name) {
            bail!("service {:?} defined twice", s.name);
        }
        if s.cmd.trim().is_empty() {
            bail!("service {:?}: empty cmd", s.name);
        }
        for c in &s.caps {
            if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_') {
                bail!("service {:?}: invalid capability {c:?} (e.g. net_admin, net_raw)", s.name);
            }
        }
        if !s.caps.is_empty() && s.user.is_none() {
            bail!("service {:?}: caps only make sense with user (root has them all)", s.name);
        }
        services.push(Service {
            name: s.name,
            description: s.description,
            cmd: s.cmd,
            autostart: s.autostart,
            user: s.user,
            caps: s.caps,
            env: s.env,
        });
    }
    Ok(Node {
        name: name.to_string(),
        description: nf.description,
        loopback,
        routes: nf.routes,
        sysctl,
        frr,
        services,
        interfaces: Vec::new(),
    })
}

fn check_route(r: &str) -> Result<()> {
    let mut words = r.split_whitespace();
    let first = words.next().ok_or_else(|| anyhow!("empty route"))?;
    if first != "default" {
        let net = first.split_once('/').map_or(first, |(a, _)| a);
        net.parse::<IpAddr>().map_err(|_| anyhow!("a route starts with \"default\" or a prefix, not {first:?}"))?;
        if let Some((_, len)) = first.split_once('/') {
            len.parse::<u8>().map_err(|_| anyhow!("invalid prefix length in {first:?}"))?;
        }
    }
    if words.next().is_none() {
        bail!("a route needs a next hop or device (e.g. \"via 10.9.1.2\" or \"dev eth0\")");
    }
    Ok(())
}

fn check_sysctl_key(k: &str) -> Result<()> {
    if !k.starts_with("net.") {
        bail!("sysctl {k:?}: only net.* sysctls are per namespace");
    }
    if k.split('.').any(str::is_empty) || k.contains('/') || k.contains("..") {
        bail!("sysctl {k:?}: malformed key");
    }
    if k.contains('*') && sysctl_interface(k) != Some("*") {
        bail!("sysctl {k:?}: `*` is only allowed in the interface position (net.ipv4.conf.*.rp_filter)");
    }
    Ok(())
}

/// The interface part of a per-interface sysctl (`net.ipv4.conf.IF.x`, `net.ipv6.conf.IF.x`).
pub fn sysctl_interface(k: &str) -> Option<&str> {
    let parts: Vec<&str> = k.splitn(5, '.').collect();
    if parts.len() == 5 && parts[0] == "net" && (parts[2] == "conf" || parts[2] == "neigh") {
        Some(parts[3])
    } else {
        None
    }
}

/// Expands the `*` of per-interface sysctls into `all`, `default`, `lo` and every interface of
/// `node`; returns (key, value) pairs in application order (all/default first).
pub fn expand_sysctls(node: &Node) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in &node.sysctl {
        if sysctl_interface(k) == Some("*") {
            let mut names = vec!["all".to_string(), "default".to_string(), "lo".to_string()];
            names.extend(node.interfaces.iter().map(|i| i.name.clone()));
            for n in names {
                out.push((k.replacen(".*.", &format!(".{n}."), 1), v.clone()));
            }
        } else {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology> {
        Topology::parse(text, "test.toml", None)
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    const MINI: &str = r#"
        [nodes.a]
        routes = ["default via 10.0.0.2"]
        [nodes.b]
        [[links]]
        name = "ab"
        members = [{ node = "a", ifname = "eth0", addrs = ["10.0.0.1/24", "2001:db8::1/64"] },
                   { node = "b", ifname = "eth0", addrs = ["10.0.0.2/24"] }]
    "#;

    #[test]
    fn default_topology_is_valid() {
        let t = Topology::default_topology().unwrap();
        for n in ["rcv1", "rcv2", "acc", "ing", "inet", "relay1", "relay2", "dns", "dorms", "src"] {
            assert!(t.nodes.contains_key(n), "missing node {n}");
        }
        let acc = &t.nodes["acc"];
        assert_eq!(acc.frr.iter().map(|d| d.daemon.as_str()).collect::<Vec<_>>(), ["zebra", "pimd"]);
        let pimd = t.render_frr_config(acc, &acc.frr[1]).unwrap();
        assert!(pimd.contains("ip pim join-prune-interval 60"), "{pimd}");
        assert!(pimd.contains("interface to-rcv") && pimd.contains("ip igmp version 3"));
        let rcvlan = t.links.iter().find(|l| l.name == "rcvlan").unwrap();
        assert!(rcvlan.bridge && rcvlan.members.len() == 3);
        let ingdown = t.links.iter().find(|l| l.name == "ingdown").unwrap();
        assert!(!ingdown.bridge);
        let ing = &t.nodes["ing"];
        assert!(ing.interfaces.iter().any(|i| i.name == "down0"));
        assert!(ing.services.iter().any(|s| s.name == "pimwatch" && !s.autostart));
        assert!(t.service("ing/pim-hello").is_some());
        assert!(t.nodes["acc"].routes.iter().any(|r| r.starts_with("198.51.100.0/24 via 10.9.1.2")));
        // Every address is from a documentation or private range.
        for n in t.nodes.keys() {
            for a in t.node_addrs(n) {
                let s = a.addr.to_string();
                assert!(
                    ["10.", "192.0.2.", "198.51.100.", "203.0.113.", "2001:db8:"].iter().any(|p| s.starts_with(p)),
                    "{n}: {s}"
                );
            }
        }
    }

    #[test]
    fn var_overrides() {
        let mut t = Topology::default_topology().unwrap();
        let mut o = BTreeMap::new();
        o.insert("join_prune_interval".to_string(), toml::Value::Integer(5));
        t.set_vars(&o).unwrap();
        let acc = &t.nodes["acc"];
        assert!(t.render_frr_config(acc, &acc.frr[1]).unwrap().contains("join-prune-interval 5\n"));
        o.insert("no_such_var".to_string(), toml::Value::Integer(1));
        let e = t.set_vars(&o).unwrap_err().to_string();
        assert!(e.contains("unknown variable \"no_such_var\""), "{e}");
    }

    #[test]
    fn mini_topology_and_ipv6() {
        let t = parse(MINI).unwrap();
        assert_eq!(t.links.len(), 1);
        assert!(!t.links[0].bridge);
        let a = &t.nodes["a"];
        assert_eq!(a.interfaces[0].addrs[1].to_string(), "2001:db8::1/64");
        assert!(a.interfaces[0].addrs[1].addr.is_ipv6());
    }

    #[test]
    fn sysctl_expansion() {
        let t = parse(&format!("[defaults.sysctl]\n\"net.ipv4.conf.*.rp_filter\" = 0\n{MINI}")).unwrap();
        let ex = expand_sysctls(&t.nodes["a"]);
        let keys: Vec<&str> = ex.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "net.ipv4.conf.all.rp_filter",
                "net.ipv4.conf.default.rp_filter",
                "net.ipv4.conf.lo.rp_filter",
                "net.ipv4.conf.eth0.rp_filter"
            ]
        );
        assert!(ex.iter().all(|(_, v)| v == "0"));
    }

    #[test]
    fn bad_topologies_give_clear_errors() {
        let cases: &[(&str, &str)] = &[
            ("[nodes]", "no nodes defined"),
            ("[nodes.A]", "invalid name"),
            ("[nodes.sw]", "reserved"),
            ("[nodes.a]\nbogus = 1", "unknown field `bogus`"),
            ("[nodes.a]\nroutes = [\"via 1.2.3.4\"]", "starts with \"default\" or a prefix"),
            ("[nodes.a]\nroutes = [\"10.0.0.0/8\"]", "needs a next hop"),
            (
                "[nodes.a]\n[[links]]\nname = \"l\"\nmembers = [{node=\"a\", ifname=\"e\"}, {node=\"zz\", ifname=\"e\"}]",
                "unknown node \"zz\"",
            ),
            ("[nodes.a]\n[nodes.b]\n[[links]]\nname = \"l\"\nmembers = [{node=\"a\", ifname=\"e\"}]", "at least two"),
            (
                "[nodes.a]\n[nodes.b]\n[[links]]\nname = \"l\"\nmembers = [{node=\"a\", ifname=\"averyveryverylongname\"}, {node=\"b\", ifname=\"e\"}]",
                "invalid interface name",
            ),
            (
                "[nodes.a]\n[nodes.b]\n[[links]]\nname = \"l\"\nmembers = [{node=\"a\", ifname=\"e\", addrs=[\"10.0.0.1\"]}, {node=\"b\", ifname=\"e\"}]",
                "needs a prefix length",
            ),
            (
                "[nodes.a]\n[nodes.b]\n[[links]]\nname = \"l\"\nmembers = [{node=\"a\", ifname=\"e\", addrs=[\"10.0.0.1/33\"]}, {node=\"b\", ifname=\"e\"}]",
                "too long",
            ),
            (
                "[nodes.a]\n[nodes.b]\n[[links]]\nname = \"l\"\nmembers = [{node=\"a\", ifname=\"e\", addrs=[\"10.0.0.1/24\"]}, {node=\"b\", ifname=\"e\", addrs=[\"10.0.0.1/24\"]}]",
                "already used by a e",
            ),
            (
                "[nodes.a]\n[nodes.b]\n[[links]]\nname = \"l\"\nmembers = [{node=\"a\", ifname=\"e\"}, {node=\"a\", ifname=\"f\"}]",
                "on this link twice",
            ),
            ("[nodes.a]\n[[nodes.a.frr]]\ndaemon = \"pimd\"\nconfig = \"x\"", "first daemon must be zebra"),
            ("[nodes.a]\n[[nodes.a.frr]]\ndaemon = \"quagga\"\nconfig = \"x\"", "unknown"),
            ("[nodes.a]\n[[nodes.a.frr]]\ndaemon = \"zebra\"\nconfig = \"frr/nope.conf\"", "no embedded file"),
            ("[nodes.a]\n[[nodes.a.services]]\nname = \"pimd\"\ncmd = \"x\"", "reserved for FRR"),
            ("[nodes.a]\n[[nodes.a.services]]\nname = \"x\"\ncmd = \" \"", "empty cmd"),
            ("[nodes.a]\n[[nodes.a.services]]\nname = \"x\"\ncmd = \"y\"\ncaps = [\"net_admin\"]", "only make sense"),
            ("[nodes.a]\nsysctl = { \"kernel.pid_max\" = 1 }", "only net.*"),
            ("[nodes.a]\nsysctl = { \"net.ipv4.conf.eth9.rp_filter\" = 1 }", "does not have"),
            ("[demo]\nstart = [\"a/x\"]\n[nodes.a]", "has no service"),
            ("[demo]\nstart = [\"x\"]\n[nodes.a]", "not NODE/SERVICE"),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.contains(want), "topology:\n{text}\nerror: {e}\nwanted: {want}");
        }
    }

    #[test]
    fn template_vars_are_checked() {
        let dir = std::env::temp_dir().join(format!("mcast-lab-topo-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("z.conf"), "hostname {{node}}\nx {{missing}}\n").unwrap();
        let text = "[nodes.a]\n[[nodes.a.frr]]\ndaemon = \"zebra\"\nconfig = \"z.conf\"\n";
        let e = format!("{:#}", Topology::parse(text, "t", Some(dir.clone())).unwrap_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("unknown template variable {{missing}}"), "{e}");
    }
}
