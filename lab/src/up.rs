//! `mcast-lab up`, `shell`, `vtysh` and `list`: the lab for a person.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::lab::{Lab, LabOptions};
use crate::signals;
use crate::state::{RunState, live_runs};
use crate::topology::Topology;
use crate::util::fmt_secs;

/// Brings the lab up, prints what runs where, starts the demo, follows the demo's output
/// until Ctrl-C, then tears everything down.
pub fn up(topology: Option<&Path>, vars: &[(String, String)], demo: bool) -> Result<()> {
    let mut topo = Topology::load(topology)?;
    let overrides = vars.iter().map(|(k, v)| (k.clone(), toml::Value::String(v.clone()))).collect();
    topo.set_vars(&overrides)?;
    let mut lab = Lab::up(topo, &LabOptions { purpose: "up".into(), ..Default::default() })?;
    println!("mcast-lab {}: lab up in {} ({})", lab.id, fmt_secs(lab.setup_time), lab.topo.origin);
    println!();
    print_summary(&mut lab);
    let mut follow: Vec<(String, PathBuf, u64)> = Vec::new();
    if demo && !lab.topo.demo.start.is_empty() {
        println!();
        for target in lab.topo.demo.start.clone() {
            lab.start(&target).with_context(|| format!("starting demo service {target}"))?;
            println!("demo: started {target}");
        }
        for target in lab.topo.demo.follow.clone() {
            if let Some((node, _)) = target.split_once('/') {
                let svc = target.split_once('/').map(|(_, s)| s).unwrap_or_default();
                follow.push((target.clone(), lab.node_dir(node).join(format!("{svc}.log")), 0));
            }
        }
    }
    println!();
    // Examples with the topology's own node names.
    let first = lab.topo.nodes.keys().next().cloned().unwrap_or_default();
    let shell_node = lab.topo.demo.follow.first().and_then(|t| t.split_once('/')).map_or(first, |(n, _)| n.to_string());
    let frr_node = lab.topo.nodes.values().find(|n| !n.frr.is_empty()).map(|n| n.name.clone());
    println!(
        "Enter a node:      mcast-lab shell {shell_node}            (or: ip netns exec {} bash)",
        lab.ns_name(&shell_node)
    );
    if let Some(f) = frr_node {
        println!("Run in a node:     mcast-lab shell {f} -- ip mroute");
        println!("Ask FRR:           mcast-lab vtysh {f} -c 'show ip pim upstream'");
    }
    if demo {
        let hints = status_hints(&lab);
        if !hints.is_empty() {
            println!();
            println!("Look at the daemons (each answers `status`, `--json` for JSON):");
            for (what, command) in hints {
                println!("  {what:<22} {command}");
            }
            println!();
        }
    }
    println!("Logs and state:    {} (<node>/<service>.log)", lab.dir.display());
    println!("Stop:              Ctrl-C (everything is torn down)");
    println!();
    let mut reported_exit: Vec<String> = Vec::new();
    while !signals::stop_requested() {
        for (target, path, pos) in follow.iter_mut() {
            for line in read_new_lines(path, pos) {
                if !line.starts_with("=== ") {
                    println!("[{target}] {line}");
                }
            }
        }
        for target in lab.topo.demo.start.clone() {
            let key = format!("svc:{target}");
            if !lab.is_running(&key) && !reported_exit.contains(&key) {
                let st = lab.exit_status(&key).map(|s| s.to_string()).unwrap_or_default();
                println!("demo: {target} exited ({st}); see {}", lab.dir.display());
                reported_exit.push(key);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!();
    println!("stopping ...");
    let r = lab.teardown();
    println!("mcast-lab {}: torn down in {}", lab.id, fmt_secs(r.duration));
    Ok(())
}

/// How to look at each daemon the demo started: `status` for every service whose command line
/// has a `--runtime-dir` (pimwatch, driad-ingest, amt-relay), and, for a DNS server and a
/// driad-ingest with `--nameserver`, the AMTRELAY lookup of the demo receiver's source.
fn status_hints(lab: &Lab) -> Vec<(String, String)> {
    let mut hints = Vec::new();
    let mut dns: Option<(String, String)> = None;
    let mut driad: Option<(String, String, String)> = None;
    let mut source: Option<String> = None;
    for target in &lab.topo.demo.start {
        let Some((node, name)) = target.split_once('/') else { continue };
        let Some(service) = lab.topo.nodes.get(node).and_then(|n| n.services.iter().find(|s| s.name == name)) else {
            continue;
        };
        let cmd = lab.expand(node, &service.cmd);
        let tokens: Vec<&str> = cmd.split_whitespace().collect();
        let value = |flag: &str| tokens.iter().position(|t| *t == flag).and_then(|i| tokens.get(i + 1)).copied();
        let Some(bin) = tokens.first() else { continue };
        if let Some(dir) = value("--runtime-dir") {
            hints.push((
                format!("{name} on {node}:"),
                format!("mcast-lab shell {node} -- {bin} status --runtime-dir {dir}"),
            ));
        }
        if tokens.contains(&"dns-server")
            && let Some(listen) = value("--listen")
        {
            let ip = listen.rsplit_once(':').map_or(listen, |(ip, _)| ip).to_string();
            dns = Some((node.to_string(), ip));
        }
        if let Some(ns) = value("--nameserver")
            && bin.ends_with("driad-ingest")
        {
            driad = Some((node.to_string(), bin.to_string(), ns.to_string()));
        }
        if lab.topo.demo.follow.contains(target)
            && let Some(s) = value("--source")
        {
            source = Some(s.to_string());
        }
    }
    let source = source.unwrap_or_else(|| "SOURCE".into());
    if let Some((node, bin, ns)) = driad {
        hints.push((
            "AMTRELAY lookup:".into(),
            format!("mcast-lab shell {node} -- {bin} lookup {source} --nameserver {ns}"),
        ));
    } else if let Some((_, ip)) = dns {
        hints.push(("AMTRELAY records:".into(), format!("dig @{ip} -x {source} TYPE260 (from any node)")));
    }
    hints
}

/// Whole lines appended to `path` since byte offset `pos` (advanced past them).
fn read_new_lines(path: &Path, pos: &mut u64) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
    if f.seek(SeekFrom::Start(*pos)).is_err() {
        return Vec::new();
    }
    let mut s = String::new();
    if f.read_to_string(&mut s).is_err() {
        return Vec::new();
    }
    let upto = s.rfind('\n').map(|i| i + 1).unwrap_or(0);
    *pos += upto as u64;
    s[..upto].lines().map(str::to_string).collect()
}

fn print_summary(lab: &mut Lab) {
    println!("{:<8} {:<14} {:<34} what runs there", "node", "namespace", "interfaces");
    let nodes: Vec<String> = lab.topo.nodes.keys().cloned().collect();
    let running = lab.running_keys();
    for name in nodes {
        let node = lab.topo.nodes[&name].clone();
        let mut ifs: Vec<String> = node
            .interfaces
            .iter()
            .map(|i| {
                let addrs: Vec<String> = i.addrs.iter().map(|a| a.to_string()).collect();
                format!("{} {}", i.name, addrs.join(","))
            })
            .collect();
        if ifs.is_empty() {
            ifs.push("-".into());
        }
        let mut what: Vec<String> = Vec::new();
        if !node.frr.is_empty() {
            let ds: Vec<&str> = node.frr.iter().map(|d| d.daemon.as_str()).collect();
            what.push(format!("FRR {}", ds.join("+")));
        }
        for s in &node.services {
            let key = format!("svc:{}/{}", name, s.name);
            let st = if running.contains(&key) {
                "running"
            } else if lab.topo.demo.start.contains(&format!("{name}/{}", s.name)) {
                "demo"
            } else {
                "not started"
            };
            what.push(format!("{} ({st})", s.name));
        }
        for (i, line) in ifs.iter().enumerate() {
            if i == 0 {
                println!("{:<8} {:<14} {:<34} {}", name, lab.ns_name(&name), line, what.join(", "));
            } else {
                println!("{:<8} {:<14} {:<34}", "", "", line);
            }
        }
    }
    for l in &lab.topo.links {
        let members: Vec<String> = l.members.iter().map(|m| format!("{}:{}", m.node, m.ifname)).collect();
        let kind = if l.bridge { format!("bridge in {}", lab.switch_ns().unwrap_or_default()) } else { "veth".into() };
        println!("link {:<8} {kind}: {}", l.name, members.join(" "));
    }
}

/// Picks the live run to act on: `run` if given, else the only live one.
pub fn pick_run(run: Option<&str>) -> Result<RunState> {
    let live = live_runs();
    if let Some(r) = run {
        return live
            .into_iter()
            .find(|s| s.run_id == r)
            .ok_or_else(|| anyhow!("no running lab {r:?} (see `mcast-lab list`)"));
    }
    match live.len() {
        0 => bail!("no lab is running (start one with `mcast-lab up`)"),
        1 => Ok(live.into_iter().next().unwrap_or_else(|| unreachable!())),
        _ => {
            let ids: Vec<String> = live.iter().map(|s| format!("{} ({})", s.run_id, s.purpose)).collect();
            bail!("several labs are running: {}; choose one with --run ID", ids.join(", "))
        }
    }
}

fn ns_of(st: &RunState, node: &str) -> Result<String> {
    if !st.nodes.iter().any(|n| n == node) {
        bail!("run {} has no node {node:?} (nodes: {})", st.run_id, st.nodes.join(", "));
    }
    Ok(format!("{}-{node}", st.run_id))
}

/// `mcast-lab shell NODE [-- CMD...]`: replaces this process with `ip netns exec`.
pub fn shell(node: &str, run: Option<&str>, cmd: &[String]) -> Result<()> {
    crate::lab::check_root()?;
    let st = pick_run(run)?;
    let ns = ns_of(&st, node)?;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns]);
    if cmd.is_empty() {
        let sh = std::env::var("SHELL").unwrap_or_else(|_| "/bin/bash".into());
        eprintln!("mcast-lab: entering {node} ({ns}); `exit` to leave");
        c.arg(sh);
    } else {
        c.args(cmd);
    }
    c.env("MCAST_LAB_RUN", &st.run_id)
        .env("MCAST_LAB_NODE", node)
        .env("MCAST_LAB_NODE_DIR", st.dir.join(node))
        .env("MCAST_LAB_RUN_DIR", &st.dir);
    let err = c.exec();
    Err(err).context("running ip netns exec")
}

/// `mcast-lab vtysh NODE [-c CMD]...`: vtysh against a node's FRR.
pub fn vtysh(node: &str, run: Option<&str>, commands: &[String]) -> Result<()> {
    crate::lab::check_root()?;
    let st = pick_run(run)?;
    let ns = ns_of(&st, node)?;
    let dir = st.dir.join(node).join("frr");
    if !dir.exists() {
        bail!("node {node} runs no FRR");
    }
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns, "vtysh", "--vty_socket"]).arg(&dir);
    for cmd in commands {
        c.arg("-c").arg(cmd);
    }
    let err = c.exec();
    Err(err).context("running vtysh")
}

/// `mcast-lab list`: the labs on this host.
pub fn list() -> Result<()> {
    let runs = crate::state::list_runs();
    if runs.is_empty() {
        println!("no labs");
    }
    for (id, dir) in runs {
        match RunState::load(&dir) {
            Ok(st) => {
                let age = crate::util::unix_now() - st.created_unix;
                let status = if st.owner_alive() { "running" } else { "crashed (clean up with `mcast-lab down`)" };
                println!(
                    "{id}  {status}  pid {}  {}  up {}  {} namespaces, {} processes",
                    st.owner_pid,
                    st.purpose,
                    fmt_secs(Duration::from_secs_f64(age.max(0.0))),
                    st.namespaces.len(),
                    st.processes.len()
                );
            }
            Err(_) => println!("{id}  (no state; clean up with `mcast-lab down`)"),
        }
    }
    Ok(())
}
