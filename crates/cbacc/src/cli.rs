//! Command line of cbacc.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cbacc::Rate;
use cbacc::dorms::ClientConfig;
use cbacc::metadata::LegacyUnit;
use clap::{Args, Parser, Subcommand};
use mcast_daemon::cli::ToolCommand;
use mcast_daemon::{ConfigArgs, LogArgs};
use mcast_driad::DnsConfig;

/// Bandwidth admission for the multicast ingest device.
///
/// cbacc watches the joinfile of joined (S,G)s (pimwatch's; an optional third column is the
/// population), finds each flow's advertised maximum bitrate through DORMS (DNS SRV
/// `_dorms._tcp.<reverse name of S>`, host-meta, RESTCONF, CBACC `max-speed`), and writes the
/// flows that fit under `--bandwidth` to its output joinfile for driad-ingest. When they do
/// not all fit, it keeps the flows with the highest offload ((population − 1) × rate), then
/// the smaller ones, then those already admitted, then the higher CBACC priority; a blocked
/// flow is held down (`--hold-down`) before it competes again.
///
/// Rates take explicit units: 50Mbit/s, 800kbit/s, 1.5Gbit/s, 2000bit/s (k/M/G = 1000^n) or
/// 50Mibit/s (Ki/Mi/Gi = 1024^n). The original cbacc's `--bandwidth 50` meant 50Mibit/s.
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
    /// Show every flow of the running daemon: rate, where it came from, admitted or why not.
    Status(StatusArgs),
    /// Run the DORMS discovery and metadata lookup for one flow and show every step (exit
    /// status 0 when metadata was found, 1 otherwise).
    Info(InfoArgs),
    #[command(flatten)]
    Tool(ToolCommand),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Runtime directory of the daemon (where its control socket lives).
    #[arg(long, env = "RUNTIME_DIRECTORY", default_value = "/run/cbacc")]
    pub runtime_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The source S.
    pub source: IpAddr,
    /// The group G.
    pub group: IpAddr,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dorms: DormsArgs,
}

/// How DORMS is reached (the daemon and `cbacc info` share these).
#[derive(Debug, Clone, Args)]
pub struct DormsArgs {
    /// DNS server for the SRV lookups and the DORMS servers' names, ADDR[:PORT] (repeat for
    /// several). Default: the system's resolver configuration for SRV, the system resolver
    /// for host names.
    #[arg(long = "nameserver", value_name = "ADDR[:PORT]", value_parser = mcast_driad::parse_nameserver)]
    pub nameservers: Vec<SocketAddr>,

    /// Extra trusted CA certificates (PEM), in addition to the system roots (repeatable).
    #[arg(long = "ca-file", value_name = "PEM")]
    pub ca_files: Vec<PathBuf>,

    /// Unit of the legacy `max-bits-per-second` leaf (its name says bit/s, its YANG
    /// description kilobits; the original read bit/s). `max-speed` is always kbit/s.
    #[arg(long, value_enum, default_value_t = LegacyUnit::Bit)]
    pub legacy_rate_unit: LegacyUnit,

    /// Total time allowed for one HTTPS request (connect, headers and body).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub http_timeout: Duration,

    /// Time allowed to connect (TCP and TLS).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// How long a DORMS server with a bad certificate or without a RESTCONF root is skipped
    /// (the DORMS draft's ignore list: 1 h to 24 h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub ignore_time: Duration,
}

impl DormsArgs {
    /// The client configuration (reads the CA files).
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut ca_pem = Vec::new();
        for path in &self.ca_files {
            ca_pem.push(std::fs::read(path).with_context(|| format!("reading --ca-file {}", path.display()))?);
        }
        let nameservers = (!self.nameservers.is_empty()).then(|| self.nameservers.clone());
        Ok(ClientConfig {
            http_dns: nameservers.is_some(),
            dns: DnsConfig { nameservers, ..DnsConfig::default() },
            ca_pem,
            connect_timeout: self.connect_timeout,
            timeout: self.http_timeout,
            legacy_unit: self.legacy_rate_unit,
            ignore_time: self.ignore_time,
            ..ClientConfig::default()
        })
    }
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    text.parse::<Rate>().map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The joinfile to read: `S,G` or `S,G,POPULATION` per line (pimwatch writes it).
    // `Option`s only so that the subcommands parse without them; clap requires them for the
    // daemon.
    #[arg(long, short = 'i', visible_alias = "input", value_name = "PATH", required = true)]
    pub input_file: Option<PathBuf>,

    /// The joinfile to write: the admitted (S,G)s, replaced atomically when the set changes
    /// (driad-ingest reads it).
    #[arg(long, short = 'o', visible_alias = "output", value_name = "PATH", required = true)]
    pub output_file: Option<PathBuf>,

    /// The cap on the sum of the admitted flows' advertised rates, with a unit (50Mbit/s).
    #[arg(long, short = 'b', value_name = "RATE", required = true, value_parser = parse_rate)]
    pub bandwidth: Option<Rate>,

    /// The rate assumed for flows without DORMS metadata. Without it such flows are blocked.
    #[arg(long, short = 'd', value_name = "RATE", value_parser = parse_rate)]
    pub default: Option<Rate>,

    /// How long a flow blocked for lack of capacity stays blocked (the CBACC draft: at least
    /// 2.5 min).
    #[arg(long, value_name = "DURATION", default_value = "150s", value_parser = humantime::parse_duration)]
    pub hold_down: Duration,

    /// Plus a uniformly random desynchronisation of up to this much (the draft: at least 30 s).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub hold_down_jitter: Duration,

    /// How long DORMS metadata is used before it is fetched again (plus up to 10 % jitter;
    /// an answer's Cache-Control may shorten it).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    pub refresh: Duration,

    /// How long a new flow waits for its first DORMS answer before it counts as without
    /// metadata (`--default` or blocked) while the lookup goes on.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = humantime::parse_duration)]
    pub metadata_wait: Duration,

    /// DORMS lookups running at once, at most.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_lookups: u16,

    /// File mode of the output joinfile (octal).
    #[arg(long, value_name = "MODE", default_value = "644", value_parser = parse_mode)]
    pub output_mode: u32,

    /// Runtime directory for the control socket (`cbacc status` talks to it).
    #[arg(long, env = "RUNTIME_DIRECTORY", default_value = "/run/cbacc")]
    pub runtime_dir: PathBuf,

    #[command(flatten)]
    pub dorms: DormsArgs,

    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text, 8).map_err(|_| format!("not an octal file mode: {text:?}"))?;
    if mode > 0o777 {
        return Err(format!("file mode out of range: {text}"));
    }
    Ok(mode)
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
            "cbacc",
            "--input-file",
            "/run/ingest/pimwatch.sgs",
            "-o",
            "/run/ingest/cbacc.sgs",
            "--bandwidth",
            "50Mbit/s",
            "--default",
            "12Mibit/s",
            "--hold-down",
            "5s",
            "--nameserver",
            "203.0.113.53",
            "--ca-file",
            "/run/ca.pem",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let run = cli.run;
        assert_eq!(run.bandwidth, Some(Rate::from_bps(50_000_000)));
        assert_eq!(run.default, Some(Rate::from_bps(12 * 1024 * 1024)));
        assert_eq!(run.hold_down, Duration::from_secs(5));
        assert_eq!(run.hold_down_jitter, Duration::from_secs(30));
        assert_eq!(run.refresh, Duration::from_secs(1800));
        assert_eq!(run.dorms.nameservers, ["203.0.113.53:53".parse::<SocketAddr>().unwrap()]);
        assert_eq!(run.dorms.legacy_rate_unit, LegacyUnit::Bit);
        let config = run.dorms.client_config().unwrap_err().to_string();
        assert!(config.contains("--ca-file /run/ca.pem"), "{config}");
    }

    #[test]
    fn the_original_short_flags_and_plain_numbers() {
        let err = Cli::try_parse_from(["cbacc", "-i", "in", "-o", "out", "-b", "100"]).unwrap_err().to_string();
        assert!(err.contains("has no unit") && err.contains("Mibit/s"), "{err}");
        let cli =
            Cli::try_parse_from(["cbacc", "-i", "in", "-o", "out", "-b", "100Mibit/s", "-d", "2Mibit/s"]).unwrap();
        assert_eq!(cli.run.bandwidth.unwrap().bps(), 104_857_600);
        let err = Cli::try_parse_from(["cbacc", "-i", "in", "-o", "out"]).unwrap_err().to_string();
        assert!(err.contains("--bandwidth"), "{err}");
    }

    #[test]
    fn subcommands_need_no_daemon_flags() {
        let cli = Cli::try_parse_from(["cbacc", "status", "--json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Status(StatusArgs { json: true, .. }))));
        let cli = Cli::try_parse_from([
            "cbacc",
            "info",
            "198.51.100.10",
            "232.1.1.1",
            "--nameserver",
            "127.0.0.1:5353",
            "--legacy-rate-unit",
            "kbit",
        ])
        .unwrap();
        let Some(Command::Info(info)) = cli.command else { panic!() };
        assert_eq!(info.group, "232.1.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(info.dorms.legacy_rate_unit, LegacyUnit::Kbit);
        assert!(info.dorms.client_config().unwrap().http_dns);
    }
}
