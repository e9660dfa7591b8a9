//! Network namespaces, links, addresses, routes and sysctls.
//!
//! Namespaces are named the `ip netns` way (bind mounts under /run/netns), so `ip netns exec`
//! and `ip -n` work on them. Creation and configuration go through a few `ip -batch`
//! invocations (one for all namespaces and links, then one per namespace, run in parallel);
//! sysctls are written in-process from a thread that entered the namespace.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};

use crate::topology::{Topology, expand_sysctls};

/// Where `ip netns` keeps its bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// Name of the switch namespace holding a run's bridges.
pub const SWITCH: &str = "sw";

/// A run prefix: `ml` + 4 hex digits, e.g. `ml3f2a`. Namespaces are `<prefix>-<node>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

impl RunId {
    /// A fresh random run id that no existing namespace or run directory uses.
    pub fn generate(run_base: &Path) -> RunId {
        loop {
            let id = RunId(format!("ml{:04x}", rand::random::<u16>()));
            let taken = run_base.join(id.as_str()).exists()
                || list_namespaces().iter().any(|n| parse_ns_name(n).is_some_and(|(r, _)| r == id));
            if !taken {
                return id;
            }
        }
    }

    /// Parses `ml` + 4 lowercase hex digits.
    pub fn parse(s: &str) -> Option<RunId> {
        let hex = s.strip_prefix("ml")?;
        (hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| RunId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace name of `node` in this run.
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.0)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits a namespace name of the lab's strict pattern `ml[0-9a-f]{4}-[a-z][a-z0-9]{0,11}` into
/// run id and node; anything else is not ours.
pub fn parse_ns_name(name: &str) -> Option<(RunId, String)> {
    let (run, node) = name.split_once('-')?;
    let run = RunId::parse(run)?;
    let mut chars = node.chars();
    let ok = matches!(chars.next(), Some('a'..='z'))
        && node.len() <= 12
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok.then(|| (run, node.to_string()))
}

/// Names of all namespaces under /run/netns.
pub fn list_namespaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else { return Vec::new() };
    let mut v: Vec<String> = dir.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)).collect();
    v.sort();
    v
}

pub fn ns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Opens a named namespace (for setns).
pub fn open_ns(name: &str) -> Result<File> {
    File::open(ns_path(name)).with_context(|| format!("opening network namespace {name}"))
}

/// Deletes a named namespace the way `ip netns del` does: detach the bind mount, remove the
/// file. The namespace itself (and its interfaces) goes away once nothing uses it.
pub fn delete_ns(name: &str) -> Result<()> {
    let path = ns_path(name);
    match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(anyhow!("unmounting {}: {e}", path.display())),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow!("removing {}: {e}", path.display())),
    }
}

/// Runs `ip [-n NS] -batch FILE`, with the batch text saved to `file` for the record.
fn ip_batch(ns: Option<&str>, file: &Path, text: &str) -> Result<std::process::Child> {
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.arg("-batch").arg(file).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().context("running `ip` (is iproute2 installed?)")
}

fn finish(child: std::process::Child, what: &str, file: &Path) -> Result<()> {
    let out = child.wait_with_output().with_context(|| format!("waiting for ip ({what})"))?;
    if !out.status.success() {
        bail!(
            "ip -batch {} ({what}) failed: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(())
}

/// The interface name of a bridge port in the switch namespace: `<link>-<node>` when that fits
/// in 15 characters, else `l<link#>p<member#>` (link and node names contain no `-`, so the two
/// forms never collide).
pub fn port_name(link_index: usize, link: &str, node: &str, member_index: usize) -> String {
    let name = format!("{link}-{node}");
    if name.len() <= 15 { name } else { format!("l{link_index}p{member_index}") }
}

/// The bridge name of a LAN in the switch namespace.
pub fn bridge_name(link: &str) -> String {
    format!("br-{link}")
}

fn route_line(route: &str) -> String {
    // `ip route add default via <IPv6>` would be taken as IPv4; spell the v6 default route.
    let v6 = route.split_whitespace().any(|w| w.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6()));
    if v6 && let Some(rest) = route.strip_prefix("default") {
        return format!("route add ::/0{rest}");
    }
    format!("route add {route}")
}

/// What [`build`] needs to know: the run id, the topology and a directory for batch files.
#[derive(Debug)]
pub struct BuildPlan<'a> {
    pub run: &'a RunId,
    pub topo: &'a Topology,
    pub setup_dir: &'a Path,
}

impl BuildPlan<'_> {
    /// Every namespace the plan creates: one per node, plus the switch when a link is bridged.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topo.nodes.keys().map(|n| self.run.ns(n)).collect();
        if self.topo.links.iter().any(|l| l.bridge) {
            v.push(self.run.ns(SWITCH));
        }
        v
    }

    /// The global batch: namespaces, bridges and veth pairs.
    pub fn global_batch(&self) -> String {
        let mut b = String::new();
        for ns in self.namespaces() {
            let _ = writeln!(b, "netns add {ns}");
        }
        let sw = self.run.ns(SWITCH);
        for (li, link) in self.topo.links.iter().enumerate() {
            let mtu = link.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
            if link.bridge {
                let snoop = if link.snooping { 1 } else { 0 };
                let _ = writeln!(
                    b,
                    "link add {} netns {sw}{mtu} type bridge mcast_snooping {snoop}",
                    bridge_name(&link.name)
                );
                for (i, m) in link.members.iter().enumerate() {
                    let _ = writeln!(
                        b,
                        "link add {} netns {sw}{mtu} type veth peer name {} netns {}{mtu}",
                        port_name(li, &link.name, &m.node, i),
                        m.ifname,
                        self.run.ns(&m.node)
                    );
                }
            } else {
                let (a, z) = (&link.members[0], &link.members[1]);
                let _ = writeln!(
                    b,
                    "link add {} netns {}{mtu} type veth peer name {} netns {}{mtu}",
                    a.ifname,
                    self.run.ns(&a.node),
                    z.ifname,
                    self.run.ns(&z.node)
                );
            }
        }
        b
    }

    /// Per-namespace batch, phase 1: interfaces up, addresses (and for the switch: ports
    /// into their bridges).
    pub fn node_batch(&self, node: &str) -> String {
        let mut b = String::from("link set dev lo up\n");
        if node == SWITCH {
            for (li, link) in self.topo.links.iter().enumerate().filter(|(_, l)| l.bridge) {
                let br = bridge_name(&link.name);
                for (i, m) in link.members.iter().enumerate() {
                    let p = port_name(li, &link.name, &m.node, i);
                    let _ = writeln!(b, "link set dev {p} master {br}");
                    let _ = writeln!(b, "link set dev {p} up");
                }
                let _ = writeln!(b, "link set dev {br} up");
            }
            return b;
        }
        let Some(n) = self.topo.nodes.get(node) else { return b };
        for a in &n.loopback {
            let nodad = if a.addr.is_ipv6() { " nodad" } else { "" };
            let _ = writeln!(b, "addr add {a} dev lo{nodad}");
        }
        for i in &n.interfaces {
            for a in &i.addrs {
                let nodad = if a.addr.is_ipv6() { " nodad" } else { "" };
                let _ = writeln!(b, "addr add {a} dev {}{nodad}", i.name);
            }
            let _ = writeln!(b, "link set dev {} up", i.name);
        }
        b
    }

    /// Per-namespace batch, phase 2: routes (after every link is up, so gateways resolve).
    pub fn route_batch(&self, node: &str) -> String {
        let Some(n) = self.topo.nodes.get(node) else { return String::new() };
        n.routes.iter().map(|r| route_line(r) + "\n").collect()
    }
}

/// Creates the namespaces and links of a topology and configures them. The caller records
/// the namespaces in the run state before calling, so a crash half-way is still cleaned up.
pub fn build(plan: &BuildPlan<'_>) -> Result<()> {
    std::fs::create_dir_all(plan.setup_dir).with_context(|| format!("creating {}", plan.setup_dir.display()))?;
    let global = plan.setup_dir.join("00-namespaces-and-links.ip");
    finish(ip_batch(None, &global, &plan.global_batch())?, "namespaces and links", &global)?;

    // Sysctls before addresses and link-up, so e.g. accept_dad and rp_filter hold from the start.
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = plan
            .topo
            .nodes
            .values()
            .map(|n| {
                let ns = plan.run.ns(&n.name);
                let sysctls = expand_sysctls(n);
                s.spawn(move || apply_sysctls(&ns, &sysctls))
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("sysctl thread panicked"))??;
        }
        Ok(())
    })?;

    let mut nodes: Vec<String> = plan.topo.nodes.keys().cloned().collect();
    if plan.topo.links.iter().any(|l| l.bridge) {
        nodes.push(SWITCH.to_string());
    }
    for phase in ["addrs", "routes"] {
        let mut running = Vec::new();
        for node in &nodes {
            let text = if phase == "addrs" { plan.node_batch(node) } else { plan.route_batch(node) };
            if text.is_empty() {
                continue;
            }
            let file = plan.setup_dir.join(format!("{node}-{phase}.ip"));
            running.push((node, file.clone(), ip_batch(Some(&plan.run.ns(node)), &file, &text)?));
        }
        let mut errors = Vec::new();
        for (node, file, child) in running {
            if let Err(e) = finish(child, &format!("{phase} of {node}"), &file) {
                errors.push(format!("{e:#}"));
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
    }
    Ok(())
}

/// Writes sysctls inside namespace `ns` from a thread that entered it (net.* sysctls are per
/// network namespace, resolved against the calling thread).
pub fn apply_sysctls(ns: &str, sysctls: &[(String, String)]) -> Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let f = open_ns(ns)?;
    let ns = ns.to_string();
    let sysctls = sysctls.to_vec();
    std::thread::spawn(move || -> Result<()> {
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET).with_context(|| format!("entering namespace {ns}"))?;
        for (k, v) in &sysctls {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("{ns}: sysctl {k} (no such setting?)"))?;
            file.write_all(v.as_bytes()).with_context(|| format!("{ns}: setting {k} = {v}"))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("sysctl thread panicked"))?
}

/// Reads one sysctl inside a namespace (for tests and diagnostics).
pub fn read_sysctl(ns: &str, key: &str) -> Result<String> {
    let f = open_ns(ns)?;
    let key = key.to_string();
    std::thread::spawn(move || -> Result<String> {
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET)?;
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        Ok(std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?.trim().to_string())
    })
    .join()
    .map_err(|_| anyhow!("sysctl thread panicked"))?
}

/// Runs `f` on a thread inside namespace `ns` (for socket work in tests and tools).
pub fn with_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let file = open_ns(ns)?;
    std::thread::spawn(move || -> Result<T> {
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).context("entering namespace")?;
        f()
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?
}

/// The sysctl map of a node after `*` expansion, for display.
pub fn sysctl_summary(topo: &Topology, node: &str) -> BTreeMap<String, String> {
    topo.nodes.get(node).map(|n| expand_sysctls(n).into_iter().collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_and_names() {
        let id = RunId::parse("ml3f2a").unwrap();
        assert_eq!(id.ns("rcv1"), "ml3f2a-rcv1");
        assert!(RunId::parse("ml3F2a").is_none());
        assert!(RunId::parse("ml3f2").is_none());
        assert!(RunId::parse("xx3f2a").is_none());
        assert_eq!(parse_ns_name("ml3f2a-rcv1"), Some((id.clone(), "rcv1".into())));
        assert_eq!(parse_ns_name("ml3f2a-sw"), Some((id, "sw".into())));
        for bad in [
            "ml3f2a",
            "ml3f2a-",
            "ml3f2a-Rcv",
            "ml3f2a-rcv-1",
            "mlzzzz-a",
            "fzacc",
            "ml3f2a-averylongnodename",
            "ml3f2a1-a",
        ] {
            assert!(parse_ns_name(bad).is_none(), "{bad}");
        }
        let tmp = std::env::temp_dir();
        let g = RunId::generate(&tmp);
        assert!(RunId::parse(g.as_str()).is_some());
    }

    #[test]
    fn batches_for_default_topology() {
        let topo = Topology::default_topology().unwrap();
        let run = RunId::parse("ml0001").unwrap();
        let plan = BuildPlan { run: &run, topo: &topo, setup_dir: Path::new("/nonexistent") };
        let ns = plan.namespaces();
        assert!(ns.contains(&"ml0001-acc".to_string()) && ns.contains(&"ml0001-sw".to_string()));
        let g = plan.global_batch();
        assert!(g.contains("netns add ml0001-rcv1\n"));
        assert!(g.contains("link add br-rcvlan netns ml0001-sw type bridge mcast_snooping 0\n"));
        assert!(g.contains("link add rcvlan-rcv1 netns ml0001-sw type veth peer name eth0 netns ml0001-rcv1\n"));
        assert!(g.contains("link add to-ing netns ml0001-acc type veth peer name down0 netns ml0001-ing\n"));
        let ing = plan.node_batch("ing");
        assert!(ing.contains("addr add 198.51.100.200/32 dev down0\n"), "{ing}");
        let sw = plan.node_batch(SWITCH);
        assert!(sw.contains("link set dev rcvlan-acc master br-rcvlan\n"));
        assert!(ing.contains("addr add 2001:db8:9:1::2/64 dev down0 nodad\n"), "{ing}");
        assert_eq!(
            plan.route_batch("ing"),
            "route add default via 192.0.2.1\nroute add 10.7.1.0/24 via 10.9.1.1\n\
             route add ::/0 via 2001:db8:2::1\nroute add 2001:db8:7:1::/64 via 2001:db8:9:1::1\n"
        );
        for l in g.lines().chain(sw.lines()) {
            for w in l.split_whitespace() {
                if l.starts_with("link add") && (w.starts_with("br-") || w.contains("lan-")) {
                    assert!(w.len() <= 15, "{w}");
                }
            }
        }
    }

    #[test]
    fn ipv6_routes_and_ports() {
        assert_eq!(route_line("default via 2001:db8::1"), "route add ::/0 via 2001:db8::1");
        assert_eq!(route_line("default via 10.0.0.1"), "route add default via 10.0.0.1");
        assert_eq!(port_name(0, "rcvlan", "rcv1", 1), "rcvlan-rcv1");
        assert_eq!(port_name(4, "averylonglan", "node12", 3), "l4p3");
    }
}
