//! Command line of amt-relay.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mcast_daemon::cli::ToolCommand;
use mcast_daemon::{ConfigArgs, LogArgs};

/// AMT relay (RFC 7450).
///
/// Gateways discover the relay (Relay Discovery → Advertisement), run the Request / Query /
/// Update handshake with it (Response MAC, current nonce), and subscribe to (S,G)s with IGMPv3
/// or MLDv2 reports. The relay joins each subscribed (S,G) natively on its upstream interface
/// and sends every packet of it, encapsulated in AMT Multicast Data, to every subscribed
/// gateway, until the last one leaves.
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_long_help = mcast_daemon::cli::AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show gateways, subscribed (S,G)s and counters of the running relay.
    Status(StatusArgs),
    /// Act as a scripted AMT gateway against a relay (checks, lab scenarios): join (S,G)s and
    /// count the Multicast Data that arrives, or try a forged or replayed Update.
    Probe(crate::probe::ProbeArgs),
    #[command(flatten)]
    Tool(ToolCommand),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Runtime directory of the relay (where its control socket lives).
    #[arg(long, env = "RUNTIME_DIRECTORY", default_value = "/run/amt-relay")]
    pub runtime_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Unicast relay address (repeat for several): gateways send Requests and Updates here,
    /// Queries and Data come from here, and Advertisements name it.
    #[arg(long = "relay-address", value_name = "ADDR", required = true)]
    pub relay_addresses: Vec<IpAddr>,

    /// Relay discovery address, anycast or unicast (repeat for several): only Relay
    /// Discovery is expected there (the RFC 7450 §7 anycast prefixes are 192.52.193.0/24 and
    /// 2001:3::/32). It may be absent from the host when the relay starts (IP_FREEBIND).
    #[arg(long = "discovery-address", value_name = "ADDR")]
    pub discovery_addresses: Vec<IpAddr>,

    /// Which relay address to advertise for Discoveries received on a discovery address:
    /// DISCOVERY=RELAY (repeat). Default: the same address if it is a relay address, else
    /// the first relay address of the same family, else the first relay address.
    #[arg(long = "advertise", value_name = "DISCOVERY=RELAY", value_parser = parse_pair)]
    pub advertise: Vec<(IpAddr, IpAddr)>,

    /// Interface where sources are reached natively: (S,G)s are joined and received here.
    // An `Option` only so that `amt-relay status` parses without it.
    #[arg(long, value_name = "IF", required = true)]
    pub upstream_interface: Option<String>,

    /// UDP port to listen on (RFC 7450: 2268).
    #[arg(long, value_name = "PORT", default_value_t = mcast_wire::amt::PORT)]
    pub port: u16,

    /// Most gateway endpoints (address, port) served at once; new ones beyond it get the L
    /// flag in their Query.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub capacity: usize,

    /// Most (S,G)s one gateway may subscribe to.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_sgs_per_gateway: usize,

    /// Most distinct (S,G)s joined upstream.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_sgs: usize,

    /// Query Interval told to gateways (QQIC): they refresh their membership this often.
    #[arg(long, value_name = "DURATION", default_value = "125s", value_parser = humantime::parse_duration)]
    pub query_interval: Duration,

    /// Robustness told to gateways (QRV).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub robustness: u8,

    /// Maximum response delay in the encapsulated General Query; part of the membership
    /// timeout (robustness × query interval + this).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_response: Duration,

    /// How often the Response MAC secret is replaced (MACs stay valid one more period).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub secret_rotation: Duration,

    /// Most Queries and Advertisements sent per second (burst of as many): caps how much the
    /// relay reflects toward spoofed Request sources. 0: unlimited.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_replies_per_sec: u32,

    /// Native packets received per batch (recvmmsg) and largest GSO run.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub batch: u16,

    /// Do not coalesce Data to one gateway with UDP GSO (one message per packet instead).
    #[arg(long)]
    pub no_gso: bool,

    /// Upstream receive buffer, bytes: the PACKET_RX_RING shared with the kernel (resident
    /// memory once traffic has filled it), or the socket buffer with --no-rx-ring. Datagrams
    /// beyond it are dropped by the kernel and counted.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    pub receive_buffer: usize,

    /// Read the upstream interface with recvmmsg (a copy per datagram) instead of through a
    /// memory-mapped PACKET_RX_RING.
    #[arg(long)]
    pub no_rx_ring: bool,

    /// Runtime directory for the control socket (`amt-relay status` talks to it).
    #[arg(long, env = "RUNTIME_DIRECTORY", default_value = "/run/amt-relay")]
    pub runtime_dir: PathBuf,

    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl RunArgs {
    /// The upstream interface (clap guarantees it is present when the daemon runs).
    pub fn upstream_interface(&self) -> &str {
        self.upstream_interface.as_deref().unwrap_or("")
    }
}

fn parse_pair(text: &str) -> Result<(IpAddr, IpAddr), String> {
    let (a, b) = text.split_once('=').ok_or_else(|| format!("expected DISCOVERY=RELAY, got {text:?}"))?;
    let parse = |s: &str| s.trim().parse::<IpAddr>().map_err(|_| format!("not an IP address: {s:?}"));
    Ok((parse(a)?, parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_a_typical_command_line() {
        let cli = Cli::try_parse_from([
            "amt-relay",
            "--relay-address",
            "203.0.113.15",
            "--relay-address",
            "2001:db8::15",
            "--discovery-address",
            "192.52.193.1",
            "--advertise",
            "192.52.193.1=203.0.113.15",
            "--upstream-interface",
            "src0",
            "--capacity",
            "50",
            "--query-interval",
            "5s",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.relay_addresses.len(), 2);
        assert_eq!(cli.run.discovery_addresses, ["192.52.193.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(cli.run.advertise, [("192.52.193.1".parse().unwrap(), "203.0.113.15".parse().unwrap())]);
        assert_eq!(cli.run.upstream_interface(), "src0");
        assert_eq!(cli.run.capacity, 50);
        assert_eq!(cli.run.query_interval, Duration::from_secs(5));
        assert_eq!(cli.run.secret_rotation, Duration::from_secs(60));
        assert_eq!(cli.run.port, 2268);
    }

    #[test]
    fn status_needs_no_daemon_flags() {
        let cli = Cli::try_parse_from(["amt-relay", "status", "--json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Status(StatusArgs { json: true, .. }))));
    }

    #[test]
    fn parses_a_probe() {
        let cli = Cli::try_parse_from([
            "amt-relay",
            "probe",
            "--relay",
            "203.0.113.15",
            "--mode",
            "forged-mac",
            "--max",
            "0",
            "--min",
            "0",
            "198.51.100.10,232.1.1.1",
        ])
        .unwrap();
        let Some(Command::Probe(p)) = cli.command else { panic!() };
        assert_eq!(p.mode, crate::probe::Mode::ForgedMac);
        assert_eq!(p.max, Some(0));
        assert_eq!(p.sgs.len(), 1);
    }

    #[test]
    fn rejects_bad_values_with_clear_errors() {
        let err = Cli::try_parse_from(["amt-relay", "--upstream-interface", "x"]).unwrap_err().to_string();
        assert!(err.contains("--relay-address"), "{err}");
        let err = Cli::try_parse_from(["amt-relay", "--relay-address", "1.2.3.4"]).unwrap_err().to_string();
        assert!(err.contains("--upstream-interface"), "{err}");
        let err = Cli::try_parse_from([
            "amt-relay",
            "--relay-address",
            "1.2.3.4",
            "--upstream-interface",
            "x",
            "--advertise",
            "1.2.3.4",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("DISCOVERY=RELAY"), "{err}");
    }
}
