//! `mcast-lab dorms-server`: the lab's DORMS server (mcast-labdorms) for the `dorms` node.
//!
//! At start it makes (or reuses) the lab CA in `--ca-dir` (`ca.pem`, `ca.key`; rcgen, no key
//! material in the repository), issues a certificate for `--name` (dorms.example.net), and
//! serves HTTPS on `--listen`: host-meta and the RESTCONF metadata of the flows in `--flows`
//! (TOML or JSON), re-read when the file changes. cbacc trusts the CA with `--ca-file
//! {run}/dorms/ca/ca.pem`. It stops on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use mcast_labdorms::{LabCa, LabDorms, Options};

use crate::signals;
use crate::util::Dur;

/// The built-in lab flows (lab/dorms-flows.toml).
pub const LAB_FLOWS: &str = include_str!("../dorms-flows.toml");

/// Options of `mcast-lab dorms-server`.
#[derive(Debug, Clone, clap::Args)]
pub struct DormsServerArgs {
    /// TCP address to serve HTTPS on (repeatable: one server per address, e.g. the node's IPv4
    /// and IPv6 addresses, all serving the same flows).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: Vec<SocketAddr>,
    /// The flows file (TOML or JSON; missing: no flows).
    #[arg(long)]
    pub flows: PathBuf,
    /// Write the built-in lab flows to --flows first, unless the file exists.
    #[arg(long)]
    pub lab_flows: bool,
    /// Where the lab CA lives (created on first use): ca.pem for clients, ca.key (0600).
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// Names the server certificate is valid for (repeatable).
    #[arg(long = "name", default_value = "dorms.example.net")]
    pub names: Vec<String>,
    /// How often the flows file is checked for changes.
    #[arg(long, default_value = "200ms")]
    pub watch_interval: Dur,
}

/// Runs the server until SIGTERM/SIGINT.
pub fn run(args: &DormsServerArgs) -> Result<()> {
    if args.lab_flows && !args.flows.exists() {
        crate::util::write_atomic(&args.flows, LAB_FLOWS.as_bytes())?;
        eprintln!("dorms-server: installed {}", args.flows.display());
    }
    let ca = LabCa::load_or_create(&args.ca_dir).context("the lab CA")?;
    let identity = ca.issue(&args.names).context("the server certificate")?;
    let tls = identity.server_config()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut servers = Vec::new();
        for &listen in &args.listen {
            let server = LabDorms::start(Options {
                listen,
                flows_file: args.flows.clone(),
                tls: tls.clone(),
                watch_interval: args.watch_interval.0,
            })
            .await?;
            eprintln!(
                "dorms-server: https://{} for {} ({} flows), CA {}",
                server.local_addr(),
                args.names.join(", "),
                server.flows().flows.len(),
                args.ca_dir.join("ca.pem").display()
            );
            servers.push(server);
        }
        while !signals::stop_requested() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for server in &mut servers {
            server.stop().await;
        }
        eprintln!("dorms-server: stopped");
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_flows_parse() {
        let flows = mcast_labdorms::Flows::parse(LAB_FLOWS).unwrap();
        assert_eq!(flows.flows.len(), 7);
        // The worked example (IPv4) and the IPv6 flows each exceed the lab cap of 10Mibit/s.
        for v4 in [true, false] {
            let total: u64 = flows
                .flows
                .iter()
                .filter(|f| f.source.is_ipv4() == v4)
                .filter(|f| f.source != "198.51.100.40".parse::<std::net::IpAddr>().unwrap())
                .map(|f| f.max_speed.unwrap())
                .sum();
            assert!(total * 1000 > 10 * 1024 * 1024, "the lab flows (IPv4: {v4}) exceed the lab cap of 10Mibit/s");
        }
    }
}
