//! `cbacc` (admission decision time and memory with 10,000 flows) and `idle` (each daemon's
//! resident memory at rest).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use cbacc::admission::{Admission, AdmissionConfig, FlowInput};
use cbacc::{Rate, SourceGroup};
use nix::sys::signal::Signal;
use rand::{RngExt, SeedableRng};

use super::throughput::{process_cpu, process_mem_mib};
use super::{BenchArgs, DNS, Figure, Goal, daemon_command, wait_until};
use crate::lab::{Lab, LabOptions, SpawnSpec};
use crate::topology::Topology;

/// Flows of the cbacc benchmark.
const FLOWS: usize = 10_000;
/// Admission decisions timed.
const DECISIONS: usize = 200;
/// Resident memory of an idle daemon, at most (MB = 10^6 bytes).
const GOAL_IDLE_MB: f64 = 10.0;

fn mb(mib: f64) -> f64 {
    mib * 1024.0 * 1024.0 / 1e6
}

fn flow_sg(k: usize) -> SourceGroup {
    SourceGroup::v4(
        Ipv4Addr::new(198, 18, (96 + k / 2500) as u8, (1 + k / 10 % 250) as u8),
        Ipv4Addr::new(232, 20, 0, (1 + k % 10) as u8),
    )
}

/// The admission module alone: `DECISIONS` evaluations of 10,000 flows (random populations,
/// rates of 0.5–20 Mbit/s and priorities, a cap that admits about half), each after one flow
/// joins or leaves, as cbacc evaluates after every change.
fn admission_micro() -> Figure {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(10);
    let flows: Vec<FlowInput> = (0..FLOWS)
        .map(|k| FlowInput {
            sg: flow_sg(k),
            population: rng.random_range(1..200),
            rate: Some(Rate::from_bps(rng.random_range(500_000..20_000_000))),
            priority: rng.random_range(0..512),
            pending: false,
        })
        .collect();
    let config = AdmissionConfig {
        cap: Rate::from_bps(FLOWS as u64 * 5_000_000),
        hold_down: Duration::from_secs(150),
        hold_down_jitter: Duration::from_secs(30),
    };
    let mut admission = Admission::new(config, 1);
    let t = Instant::now();
    let first = admission.evaluate(t, flows.iter().copied());
    let mut times = Vec::with_capacity(DECISIONS);
    for i in 0..DECISIONS {
        let skip = i * 37 % FLOWS;
        let now = t + Duration::from_millis(i as u64 * 10);
        let input = flows.iter().enumerate().filter(|(k, _)| *k != skip).map(|(_, f)| *f);
        let started = Instant::now();
        let ev = admission.evaluate(now, input);
        times.push(started.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(ev);
    }
    Figure::latency("cbacc", &format!("admission decision, {FLOWS} flows"), times, 0, Some(10.0)).with_note(format!(
        "cbacc::admission::Admission::evaluate in this process (release build), one flow fewer each time; {} of {FLOWS} admitted under a {} cap",
        first.admitted.len(),
        config.cap
    ))
}

/// cbacc the daemon with 10,000 flows: the lab DNS answers NXDOMAIN for their DORMS SRV
/// names, so each gets `--default` after its lookup; the cap admits about half.
fn cbacc_daemon(lab: &mut Lab) -> Result<Vec<Figure>> {
    let bin = lab.bin_dir().to_path_buf();
    let zones = lab.node_dir("dns").join("zones");
    std::fs::create_dir_all(&zones)?;
    std::fs::write(
        zones.join("18.198.in-addr.arpa.zone"),
        "$ORIGIN 18.198.in-addr.arpa.\n$TTL 3600\n@ IN SOA ns.example.net. hostmaster.example.net. ( 1 3600 600 86400 300 )\n  IN NS ns.example.net.\n",
    )?;
    lab.start("dns/dns-server")?;
    let ing = lab.node_dir("ing");
    let input = ing.join("bench-cbacc-in.sgs");
    let output = ing.join("bench-cbacc-out.sgs");
    let mut text = String::new();
    for k in 0..FLOWS {
        let sg = flow_sg(k);
        let _ = writeln!(text, "{},{},{}", sg.source, sg.group, 1 + k % 50);
    }
    let runtime = ing.join("cbacc-bench");
    let argv: Vec<String> = vec![
        bin.join("cbacc").display().to_string(),
        "--input-file".into(),
        input.display().to_string(),
        "--output-file".into(),
        output.display().to_string(),
        "--bandwidth".into(),
        "5Gbit/s".into(),
        "--default".into(),
        "1Mbit/s".into(),
        "--nameserver".into(),
        DNS.into(),
        "--runtime-dir".into(),
        runtime.display().to_string(),
        "--log-level".into(),
        "warn".into(),
    ];
    let spec =
        SpawnSpec { argv, log: Some(ing.join("cbacc-bench.log")), user: Some("nobody".into()), ..Default::default() };
    let pid = lab.spawn("bench:cbacc", "ing", &spec)?;
    let sock = runtime.join("cbacc.sock");
    wait_until("cbacc's control socket", Duration::from_secs(10), || Ok(daemon_command(&sock, "status").is_ok()))?;
    let rss_idle = process_mem_mib(pid, "VmRSS")?;
    let cpu0 = process_cpu(pid)?;
    let t0 = Instant::now();
    std::fs::write(&input, text)?;
    // Every flow looked up (NXDOMAIN) and decided: the output holds the admitted half.
    let admitted = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_or(0, |t| t.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count())
    };
    wait_until("cbacc to admit 5,000 flows", Duration::from_secs(120), || Ok(admitted(&output) >= FLOWS / 2))?;
    let decided = t0.elapsed().as_secs_f64();
    let cpu = process_cpu(pid)? - cpu0;
    std::thread::sleep(Duration::from_secs(1));
    let rss = process_mem_mib(pid, "VmRSS")?;
    lab.stop_key("bench:cbacc", Signal::SIGTERM, Duration::from_secs(5))?;
    Ok(vec![
        Figure::value("cbacc", &format!("cbacc RSS with {FLOWS} flows"), "MB", mb(rss), None).with_note(format!(
            "the daemon in the lab: {:.1} MB idle before the flows; {FLOWS} flows (DORMS SRV lookups answered NXDOMAIN, so --default 1Mbit/s) decided and {} written {decided:.1} s after the input, {cpu:.1} s of CPU",
            mb(rss_idle),
            admitted(&output)
        )),
    ])
}

/// The cbacc benchmark.
pub(super) fn cbacc(args: &BenchArgs) -> Result<Vec<Figure>> {
    let mut figures = vec![admission_micro()];
    let topo = Topology::load(None)?;
    let mut lab = Lab::up(
        topo,
        &LabOptions { purpose: "bench cbacc".into(), start_frr: false, autostart: false, bin_dir: None },
    )?;
    let result = cbacc_daemon(&mut lab);
    keep(&mut lab, args, "cbacc");
    lab.teardown();
    figures.extend(result?);
    Ok(figures)
}

fn keep(lab: &mut Lab, args: &BenchArgs, name: &str) {
    if let Some(dir) = &args.keep {
        let dest = dir.join(format!("{}-bench-{name}", crate::util::utc_stamp()));
        lab.keep_results(dest.clone());
        eprintln!("bench {name}: run directory kept in {}", dest.display());
    }
}

/// The idle benchmark: the demo's daemons as the lab runs them (pimwatch with FRR as its
/// neighbour, cbacc on pimwatch's joinfile with the DORMS server, driad-ingest on cbacc's
/// output, amt-relay on relay1), nothing joined, 3 s after their control sockets answer.
pub(super) fn idle(args: &BenchArgs) -> Result<Vec<Figure>> {
    let topo = Topology::load(None)?;
    let mut lab = Lab::up(topo, &LabOptions { purpose: "bench idle".into(), ..Default::default() })?;
    let result = idle_in(&mut lab);
    keep(&mut lab, args, "idle");
    lab.teardown();
    result
}

fn idle_in(lab: &mut Lab) -> Result<Vec<Figure>> {
    lab.start("dns/dns-server")?;
    lab.start("dorms/dorms")?;
    let ca = lab.node_dir("dorms").join("ca").join("ca.pem");
    wait_until("the DORMS server's CA", Duration::from_secs(10), || Ok(ca.exists()))?;
    let services = [
        ("ing/pimwatch", "ing", "pimwatch/pimwatch.sock"),
        ("ing/cbacc", "ing", "cbacc/cbacc.sock"),
        ("ing/driad-ingest-cbacc", "ing", "driad-ingest/driad-ingest.sock"),
        ("relay1/amt-relay", "relay1", "amt-relay/amt-relay.sock"),
    ];
    for (target, node, sock) in services {
        lab.start(target)?;
        let path = lab.node_dir(node).join(sock);
        wait_until(&format!("{target}'s control socket"), Duration::from_secs(10), || {
            Ok(daemon_command(&path, "status").is_ok())
        })?;
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut figures = Vec::new();
    for (target, _, _) in services {
        let key = lab.target_keys(target)?.into_iter().next().ok_or_else(|| anyhow!("no process for {target}"))?;
        let pid = lab.pid(&key).ok_or_else(|| anyhow!("{target} is not running"))?;
        let daemon = target.split('/').nth(1).unwrap_or(target).trim_end_matches("-cbacc");
        let rss = process_mem_mib(pid, "VmRSS")?;
        let hwm = process_mem_mib(pid, "VmHWM")?;
        figures.push(
            Figure::value("idle", &format!("{daemon} RSS at rest"), "MB", mb(rss), Some(Goal::at_most(GOAL_IDLE_MB)))
                .with_note(format!("peak so far (VmHWM) {:.1} MB", mb(hwm))),
        );
    }
    if figures.is_empty() {
        bail!("no daemon measured");
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_distinct() {
        let all: std::collections::BTreeSet<SourceGroup> = (0..FLOWS).map(flow_sg).collect();
        assert_eq!(all.len(), FLOWS);
    }
}
