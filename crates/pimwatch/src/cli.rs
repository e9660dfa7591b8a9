//! Command line of pimwatch.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mcast_daemon::cli::ToolCommand;
use mcast_daemon::{ConfigArgs, LogArgs};
use mcast_pim::GroupRange;

/// PIM-SSM upstream neighbour for the multicast ingest device.
///
/// pimwatch speaks PIM-SM (the SSM subset of RFC 7761) on the downstream interfaces, so the
/// operator's routers send their (S,G) Joins here. It keeps the joined set (each Join's
/// holdtime honoured, Prunes acted on), writes it to a joinfile for cbacc/driad-ingest, and
/// programs the kernel's multicast forwarding so traffic injected on the native interface
/// flows out of every downstream interface that asked for it.
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
    /// Show neighbours and joined (S,G)s of the running daemon.
    Status(StatusArgs),
    #[command(flatten)]
    Tool(ToolCommand),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Runtime directory of the daemon (where its control socket lives).
    #[arg(long, env = "RUNTIME_DIRECTORY", default_value = "/run/pimwatch")]
    pub runtime_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Downstream interface toward the operator's PIM routers (repeat for several). The union
    /// of the Joins received on all of them is the joined set.
    #[arg(long = "interface", short = 'i', value_name = "IF", required = true)]
    pub interfaces: Vec<String>,

    /// Interface where decapsulated traffic is injected (driad-ingest's TUN). It may appear
    /// after pimwatch starts, and disappear and come back: forwarding follows it.
    #[arg(long, value_name = "IF", required_unless_present = "no_forwarding")]
    pub native_interface: Option<String>,

    /// Joinfile to write: one `S,G` per line, replaced atomically whenever the set changes.
    // An `Option` only so that `pimwatch status` parses without it; clap still requires it
    // for the daemon.
    #[arg(long, short = 'j', value_name = "PATH", required = true)]
    pub joinfile: Option<PathBuf>,

    /// File mode of the joinfile (octal). Use 640 with a shared group for cbacc/driad-ingest.
    #[arg(long, value_name = "MODE", default_value = "644", value_parser = parse_mode)]
    pub joinfile_mode: u32,

    /// Group range handled as SSM (repeat for several). Joins for groups outside every range
    /// are ignored. Defaults to 232.0.0.0/8 and ff3x::/32 (RFC 4607). Widen it, e.g. with
    /// 232.0.0.0/7 for GLOP groups, where the original needed a patched pimd.
    #[arg(long = "ssm-range", value_name = "PREFIX")]
    pub ssm_ranges: Vec<GroupRange>,

    /// Also speak PIM over IPv6 and program IPv6 forwarding (MRT6).
    #[arg(long)]
    pub ipv6: bool,

    /// Do not touch kernel multicast forwarding (only write the joinfile). For hosts where
    /// another daemon owns the multicast routing table.
    #[arg(long)]
    pub no_forwarding: bool,

    /// Kernel multicast routing table to use (MRT_TABLE); default: the main table.
    #[arg(long, value_name = "N")]
    pub mroute_table: Option<u32>,

    /// Interval between periodic Hellos (RFC 7761 §4.11 Hello_Period).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub hello_period: Duration,

    /// Holdtime advertised in our Hellos: neighbours drop us this long after our last Hello.
    /// Default 3.5 × Hello period.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub hello_holdtime: Option<Duration>,

    /// Largest random delay before a triggered Hello (RFC 7761 §4.3.1 Triggered_Hello_Delay;
    /// the RFC default is 5 s, ours is short because the first Join waits for adjacency).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = humantime::parse_duration)]
    pub triggered_hello_delay: Duration,

    /// DR Priority advertised in our Hellos.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub dr_priority: u32,

    /// After a restart, keep the (S,G)s found in the previous joinfile for this long unless a
    /// Prune comes first, so traffic the network still wants never stops (default: one J/P
    /// holdtime, 210 s).
    #[arg(long, value_name = "DURATION", default_value = "210s", value_parser = humantime::parse_duration)]
    pub restore_holdtime: Duration,

    /// Largest number of (S,G)s held at once; further Joins are dropped and counted.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_sgs: usize,

    /// Runtime directory for the control socket (`pimwatch status` talks to it).
    #[arg(long, env = "RUNTIME_DIRECTORY", default_value = "/run/pimwatch")]
    pub runtime_dir: PathBuf,

    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl RunArgs {
    /// The joinfile path (clap guarantees it is present when the daemon runs).
    pub fn joinfile(&self) -> &std::path::Path {
        self.joinfile.as_deref().unwrap_or(std::path::Path::new("pimwatch.sgs"))
    }
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
            "pimwatch",
            "-i",
            "down0",
            "--native-interface",
            "amt0",
            "-j",
            "/run/ingest/pimwatch.sgs",
            "--ssm-range",
            "232.0.0.0/7",
            "--hello-period",
            "10s",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.interfaces, ["down0"]);
        assert_eq!(cli.run.hello_period, Duration::from_secs(10));
        assert_eq!(cli.run.ssm_ranges.len(), 1);
        assert_eq!(cli.run.joinfile_mode, 0o644);
    }

    #[test]
    fn status_needs_no_daemon_flags() {
        let cli = Cli::try_parse_from(["pimwatch", "status", "--json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Status(StatusArgs { json: true, .. }))));
    }

    #[test]
    fn rejects_bad_values_with_clear_errors() {
        let err = Cli::try_parse_from(["pimwatch", "-i", "d", "-j", "f", "--no-forwarding", "--joinfile-mode", "999"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an octal file mode"), "{err}");
        let err = Cli::try_parse_from(["pimwatch", "-j", "f", "--no-forwarding"]).unwrap_err().to_string();
        assert!(err.contains("--interface"), "{err}");
        let err = Cli::try_parse_from(["pimwatch", "-i", "d", "-j", "f"]).unwrap_err().to_string();
        assert!(err.contains("--native-interface"), "{err}");
    }
}
