//! The command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::bench::{self, BenchArgs};
use crate::dns::{self, DnsServerArgs};
use crate::dorms::{self, DormsServerArgs};
use crate::down::{self, DownOptions};
use crate::flood::{self, FloodArgs};
use crate::httpget::{self, HttpGetArgs};
use crate::pim6router::{self, Pim6RouterArgs};
use crate::pimstub::{self, PimHelloArgs};
use crate::runner::{self, RunOptions};
use crate::scenario;
use crate::topology::Topology;
use crate::traffic::recv::{self, RecvArgs};
use crate::traffic::send::{self, SendArgs};
use crate::up;
use crate::watchfile::{self, WatchFileArgs};

/// The multicast-ingest virtual lab: network namespaces, FRR as the PIM router, traffic tools
/// and end-to-end scenarios.
#[derive(Debug, Parser)]
#[command(name = "mcast-lab", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Bring the lab up for a person, start the demo, keep it up until Ctrl-C.
    Up {
        /// Topology file (default: the built-in lab/topology.toml).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Override a topology variable, e.g. --set join_prune_interval=5.
        #[arg(long = "set", value_name = "VAR=VALUE", value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// Do not start the demo services.
        #[arg(long)]
        no_demo: bool,
    },
    /// Run scenarios, each in a fresh lab (default: every scenarios/*.toml).
    Run {
        /// Scenario files or directories.
        scenarios: Vec<PathBuf>,
        /// Topology for scenarios that do not name one.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Write a JSON report here.
        #[arg(long, value_name = "REPORT")]
        json: Option<PathBuf>,
        /// Where failed scenarios' logs and pcaps are kept.
        #[arg(long, default_value = "lab-results")]
        results: PathBuf,
        /// Keep the results of passing scenarios too.
        #[arg(long)]
        keep: bool,
        /// Print every step as it runs.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Remove leftovers of crashed runs (namespaces, processes, run directories).
    Down {
        /// Only this run (stopped even if it is running).
        run: Option<String>,
        /// Every run, running ones included.
        #[arg(long)]
        all: bool,
    },
    /// Open a shell (or run a command) inside a node of the running lab.
    Shell {
        node: String,
        /// Which lab, when several run.
        #[arg(long)]
        run: Option<String>,
        /// Command to run instead of $SHELL.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Run vtysh against a node's FRR in the running lab.
    Vtysh {
        node: String,
        #[arg(long)]
        run: Option<String>,
        /// vtysh commands (interactive vtysh without).
        #[arg(short = 'c', long = "command")]
        commands: Vec<String>,
    },
    /// List the labs on this host.
    List,
    /// Check a topology file and print what it defines.
    Check {
        /// Topology file (default: the built-in one).
        topology: Option<PathBuf>,
        /// Scenario files to check as well.
        #[arg(long)]
        scenario: Vec<PathBuf>,
    },
    /// Send paced, sequenced multicast UDP datagrams.
    Send(SendArgs),
    /// Join (S,G) and measure what arrives: loss, duplicates, reordering, latency.
    Recv(RecvArgs),
    /// A minimal upstream PIM neighbour: Hellos, and a log of decoded Join/Prunes.
    PimHello(PimHelloArgs),
    /// The IPv6 half of the access router: MLDv2 querier downstream, PIM6 (S,G) Joins upstream, MFC6.
    Pim6Router(Pim6RouterArgs),
    /// The lab's authoritative DNS server (AMTRELAY zones), reloading changed zone files.
    DnsServer(DnsServerArgs),
    /// Run benchmarks in fresh labs (default: all: join, leave, gateway, relay, scale, cbacc,
    /// idle) and print p50/p99/max or the value against each goal.
    Bench(BenchArgs),
    /// The lab's DORMS server (HTTPS, CBACC metadata), with a CA made at start.
    DormsServer(DormsServerArgs),
    /// Hostile input at a target (random bytes, malformed AMT, bad PIM, a hostile relay), at a
    /// rate, for a while.
    Flood(FloodArgs),
    /// Watch a joinfile and fail if it is ever seen missing, empty or half-written.
    WatchFile(WatchFileArgs),
    /// HTTP GET a URL and print the body (e.g. a daemon's /metrics); exit 1 unless 200.
    HttpGet(HttpGetArgs),
}

fn parse_kv(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("{s:?} is not VAR=VALUE"))
}

/// The default scenario directory: ./scenarios, or the repository's scenarios/ next to the
/// build directory of the executable.
fn default_scenario_dir() -> Result<PathBuf> {
    let cwd = PathBuf::from("scenarios");
    if cwd.is_dir() {
        return Ok(cwd);
    }
    let bin = crate::util::bin_dir()?;
    for up in ["../../scenarios", "../../../scenarios"] {
        let p = bin.join(up);
        if p.is_dir() {
            return Ok(p);
        }
    }
    bail!("no scenarios/ directory here; pass scenario files or run from the repository root")
}

fn expand_scenarios(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if args.is_empty() {
        return scenario::discover(&default_scenario_dir()?);
    }
    let mut v = Vec::new();
    for a in args {
        if a.is_dir() {
            v.extend(scenario::discover(a)?);
        } else if a.exists() {
            v.push(a.clone());
        } else {
            // A bare name: scenarios/<name>.toml.
            let p = default_scenario_dir()?.join(format!("{}.toml", a.display()));
            if !p.exists() {
                bail!("no scenario {}", a.display());
            }
            v.push(p);
        }
    }
    Ok(v)
}

/// Runs the command line; returns the process exit code.
pub fn main_with(cli: Cli) -> Result<ExitCode> {
    crate::signals::install()?;
    match cli.command {
        Cmd::Up { topology, set, no_demo } => {
            up::up(topology.as_deref(), &set, !no_demo)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { scenarios, topology, json, results, keep, verbose } => {
            crate::lab::check_root()?;
            let files = expand_scenarios(&scenarios)?;
            if files.is_empty() {
                bail!("no scenarios to run");
            }
            let opts = RunOptions {
                scenarios: files,
                topology,
                json,
                results_dir: results,
                keep_all: keep,
                bin_dir: None,
                verbose,
            };
            let report = runner::run_all(&opts)?;
            let interrupted = crate::signals::stop_requested();
            Ok(if report.failed == 0 && !interrupted { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::Down { run, all } => {
            for m in down::down(&DownOptions { run, all })? {
                println!("{m}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Shell { node, run, cmd } => {
            up::shell(&node, run.as_deref(), &cmd)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Vtysh { node, run, commands } => {
            up::vtysh(&node, run.as_deref(), &commands)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List => {
            up::list()?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { topology, scenario } => {
            check(topology.as_deref(), &scenario)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Send(args) => {
            let summary = send::run(&args)?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Recv(args) => {
            let report = recv::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("recv: {}", report.summary_line());
            }
            Ok(if args.count == 0 || report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::PimHello(args) => {
            pimstub::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Pim6Router(args) => {
            pim6router::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::DnsServer(args) => {
            dns::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(args) => {
            let report = bench::run(&args)?;
            // A missed goal is printed as FAIL; it fails the command only with --strict.
            let failed = !report.complete() || (args.strict && !report.goals_hold());
            Ok(if failed || crate::signals::stop_requested() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Cmd::DormsServer(args) => {
            dorms::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Flood(args) => {
            let summary = flood::run(&args)?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::WatchFile(args) => {
            let summary = watchfile::run(&args)?;
            Ok(if summary.violations == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Cmd::HttpGet(args) => {
            print!("{}", httpget::get(&args)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(topology: Option<&Path>, scenarios: &[PathBuf]) -> Result<()> {
    let topo = Topology::load(topology)?;
    println!("topology {}: ok", topo.origin);
    for (name, node) in &topo.nodes {
        let ifs: Vec<String> = node
            .interfaces
            .iter()
            .map(|i| format!("{}[{}]", i.name, i.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")))
            .collect();
        let frr: Vec<&str> = node.frr.iter().map(|d| d.daemon.as_str()).collect();
        let svcs: Vec<String> =
            node.services.iter().map(|s| format!("{}{}", s.name, if s.autostart { "" } else { "(manual)" })).collect();
        println!("  {name}: {} | frr: {} | services: {}", ifs.join(" "), frr.join(","), svcs.join(", "));
    }
    println!("  vars: {}", topo.vars.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    for s in scenarios {
        let sc = scenario::Scenario::load(s)?;
        let mut t = topo.clone();
        t.set_vars(&sc.vars).with_context(|| format!("scenario {}", s.display()))?;
        println!("scenario {}: ok ({} steps)", sc.name, sc.steps.len());
    }
    Ok(())
}
