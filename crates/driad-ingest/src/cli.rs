//! Command line of driad-ingest.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mcast_daemon::cli::ToolCommand;
use mcast_daemon::{ConfigArgs, LogArgs};
use mcast_wire::SourceGroup;

/// DRIAD ingest for the multicast ingest device.
///
/// Watches a joinfile (one `SOURCE,GROUP` per line, written by pimwatch or cbacc), finds the
/// AMT relay of each source through DNS (AMTRELAY records, RFC 8777), keeps one AMT tunnel
/// (RFC 7450) per relay and writes the decapsulated multicast into a native interface (a TUN
/// device it creates), where the kernel forwards it like traffic that arrived natively.
/// Relays that fail are held down and their sources move to the next relay DNS lists.
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
    /// Show sources, relays, tunnels and counters of the running daemon.
    Status(StatusArgs),
    /// Look up the AMT relays of a source (AMTRELAY records at its reverse name) and print
    /// them in presentation form with the relay addresses the daemon would use, in order.
    Lookup(LookupArgs),
    /// Print the zone-file line that publishes RELAY as the AMT relay of SOURCE (the reverse
    /// name, the AMTRELAY record, and its RFC 3597 generic form).
    ZoneRecord(ZoneRecordArgs),
    /// One static AMT tunnel, without DNS: for troubleshooting and interop checks. Runs until
    /// SIGTERM/SIGINT, then leaves the (S,G)s and sends a Teardown.
    Gateway(GatewayArgs),
    #[command(flatten)]
    Tool(ToolCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Joinfile to follow: one `SOURCE,GROUP` per line (a third population column is
    /// accepted and ignored), written by pimwatch or cbacc. A missing file is an empty set; a
    /// file that is not a joinfile at all is ignored (the current set is kept).
    // An `Option` only so that the subcommands parse without it; clap still requires it for
    // the daemon.
    #[arg(long, short = 'j', value_name = "FILE", required = true)]
    pub joinfile: Option<PathBuf>,

    /// TUN device to write decapsulated multicast into (created if absent): the native
    /// interface pimwatch forwards from.
    #[arg(long, value_name = "NAME", required = true)]
    pub native_interface: Option<String>,

    /// DNS server to ask for AMTRELAY records (repeat for several); default: the system's
    /// resolver configuration (/etc/resolv.conf).
    #[arg(long = "nameserver", value_name = "ADDR[:PORT]", value_parser = mcast_driad::parse_nameserver)]
    pub nameservers: Vec<SocketAddr>,

    /// How long a failed relay is avoided (no Advertisement or Query after the retries, the L
    /// flag, or no traffic), for every source (RFC 8777 §3.3).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub hold_down: Duration,

    /// A tunnel that carried data and then receives none for this long counts as a relay
    /// failure, and its sources move to their next relay (RFC 8777 §3.3.1). 0 turns the
    /// check off (the gateway still re-handshakes a silent tunnel).
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = humantime::parse_duration)]
    pub no_traffic_timeout: Duration,

    /// Local address (and port) of the AMT socket of that family (repeat for IPv4 and IPv6);
    /// default: any address, an ephemeral port.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_local)]
    pub local: Vec<SocketAddr>,

    /// At most this many tunnels (relays) at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_tunnels: usize,

    /// MTU of the native interface.
    #[arg(long, value_name = "BYTES", default_value_t = 1500)]
    pub tun_mtu: u32,

    /// Runtime directory for the control socket (`driad-ingest status` talks to it).
    #[arg(long, env = "RUNTIME_DIRECTORY", default_value = "/run/driad-ingest")]
    pub runtime_dir: PathBuf,

    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl RunArgs {
    /// The joinfile path (clap guarantees it is present when the daemon runs).
    pub fn joinfile(&self) -> &std::path::Path {
        self.joinfile.as_deref().unwrap_or(std::path::Path::new("driad-ingest.sgs"))
    }

    /// The native interface (clap guarantees it is present when the daemon runs).
    pub fn native_interface(&self) -> &str {
        self.native_interface.as_deref().unwrap_or("amt0")
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Runtime directory of the daemon (where its control socket lives).
    #[arg(long, env = "RUNTIME_DIRECTORY", default_value = "/run/driad-ingest")]
    pub runtime_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The multicast source (IPv4 or IPv6).
    #[arg(value_name = "SOURCE")]
    pub source: IpAddr,
    /// DNS server to ask (repeat for several); default: the system's resolver.
    #[arg(long = "nameserver", value_name = "ADDR[:PORT]", value_parser = mcast_driad::parse_nameserver)]
    pub nameservers: Vec<SocketAddr>,
    /// Time to wait for each DNS answer.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ZoneRecordArgs {
    /// The multicast source (IPv4 or IPv6): the record goes at its reverse name.
    #[arg(value_name = "SOURCE")]
    pub source: IpAddr,
    /// The relay: an IPv4 address (type 1), an IPv6 address (type 2), a domain name (type 3;
    /// the root label is added), or `.` for "no relay" (type 0).
    #[arg(value_name = "RELAY")]
    pub relay: String,
    /// Precedence: lower is tried first.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub precedence: u8,
    /// Set the D bit: gateways may send a Request straight to the relay without Relay
    /// Discovery (RFC 8777 §4.2.2).
    #[arg(long, short = 'd')]
    pub discovery_optional: bool,
    /// Publish the RFC 3597 generic form (`TYPE260 \# LEN HEX`, for DNS servers without
    /// AMTRELAY support); the presentation form becomes the comment.
    #[arg(long)]
    pub generic: bool,
    /// TTL to put on the record (omitted by default: the zone's $TTL applies).
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<u32>,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The AMT relay's unicast address. Without `--discovery`, Requests go straight to it (as
    /// with a DRIAD record whose D bit is set).
    #[arg(long, value_name = "ADDR")]
    pub relay: IpAddr,

    /// Send a Relay Discovery here first and use the relay address it advertises (a DRIAD
    /// record with D = 0 means `--discovery` = `--relay`; an anycast discovery address works
    /// too).
    #[arg(long, value_name = "ADDR")]
    pub discovery: Option<IpAddr>,

    /// TUN device to write decapsulated multicast into (created if absent).
    #[arg(long, value_name = "NAME")]
    pub native_interface: String,

    /// Local address (and port) of the AMT socket of that family; default: any address, an
    /// ephemeral port.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_local)]
    pub local: Option<SocketAddr>,

    /// MTU of the native interface.
    #[arg(long, value_name = "BYTES", default_value_t = 1500)]
    pub tun_mtu: u32,

    /// (S,G)s to join, as `SOURCE,GROUP`.
    #[arg(value_name = "S,G", required = true)]
    pub sgs: Vec<SourceGroup>,

    #[command(flatten)]
    pub log: LogArgs,
}

/// `ADDR` or `ADDR:PORT` (`[V6]:PORT` for IPv6 with a port).
pub fn parse_local(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|_| format!("not an address or address:port: {text:?}"))
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
    fn parses_the_daemon_command_line() {
        let cli = Cli::try_parse_from([
            "driad-ingest",
            "--joinfile",
            "/run/ingest/pimwatch.sgs",
            "--native-interface",
            "amt0",
            "--nameserver",
            "203.0.113.53",
            "--nameserver",
            "[2001:db8::53]:5353",
            "--hold-down",
            "3m",
            "--local",
            "192.0.2.2:40000",
            "--runtime-dir",
            "/tmp/d",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        let run = cli.run;
        assert_eq!(run.joinfile(), std::path::Path::new("/run/ingest/pimwatch.sgs"));
        assert_eq!(run.native_interface(), "amt0");
        assert_eq!(run.nameservers, ["203.0.113.53:53".parse().unwrap(), "[2001:db8::53]:5353".parse().unwrap()]);
        assert_eq!(run.hold_down, Duration::from_secs(180));
        assert_eq!(run.no_traffic_timeout, Duration::from_secs(4));
        assert_eq!(run.local, ["192.0.2.2:40000".parse().unwrap()]);
        assert_eq!(run.max_tunnels, 10_000);
    }

    #[test]
    fn the_daemon_needs_its_joinfile_and_interface() {
        let err = Cli::try_parse_from(["driad-ingest", "--native-interface", "amt0"]).unwrap_err().to_string();
        assert!(err.contains("--joinfile"), "{err}");
        let err = Cli::try_parse_from(["driad-ingest", "--joinfile", "j"]).unwrap_err().to_string();
        assert!(err.contains("--native-interface"), "{err}");
        let err = Cli::try_parse_from(["driad-ingest", "-j", "j", "--native-interface", "a", "--nameserver", "dns"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ADDR[:PORT]"), "{err}");
    }

    #[test]
    fn subcommands_need_no_daemon_flags() {
        let cli = Cli::try_parse_from(["driad-ingest", "status", "--json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Status(StatusArgs { json: true, .. }))));
        let cli =
            Cli::try_parse_from(["driad-ingest", "lookup", "198.51.100.10", "--nameserver", "127.0.0.1:5353"]).unwrap();
        let Some(Command::Lookup(args)) = cli.command else { panic!("not lookup") };
        assert_eq!(args.nameservers, ["127.0.0.1:5353".parse().unwrap()]);
        let cli =
            Cli::try_parse_from(["driad-ingest", "zone-record", "2001:db8::10", "relay.example.net", "-d"]).unwrap();
        let Some(Command::ZoneRecord(args)) = cli.command else { panic!("not zone-record") };
        assert!(args.discovery_optional);
        assert_eq!(args.precedence, 10);
        let err = Cli::try_parse_from(["driad-ingest", "--joinfile", "j", "status"]).unwrap_err().to_string();
        assert!(err.contains("cannot be used"), "{err}");
    }

    #[test]
    fn parses_the_gateway_subcommand() {
        let cli = Cli::try_parse_from([
            "driad-ingest",
            "gateway",
            "--relay",
            "203.0.113.15",
            "--native-interface",
            "amt0",
            "--local",
            "192.0.2.2:40000",
            "198.51.100.10,232.1.1.1",
            "2001:db8::10,ff3e::8000:1",
        ])
        .unwrap();
        let Some(Command::Gateway(args)) = cli.command else { panic!("not gateway") };
        assert_eq!(args.relay, "203.0.113.15".parse::<IpAddr>().unwrap());
        assert_eq!(args.discovery, None);
        assert_eq!(args.local, Some("192.0.2.2:40000".parse().unwrap()));
        assert_eq!(args.sgs.len(), 2);
    }

    #[test]
    fn local_without_port_and_bad_input() {
        assert_eq!(parse_local("192.0.2.2"), Ok("192.0.2.2:0".parse().unwrap()));
        assert_eq!(parse_local("2001:db8::2"), Ok("[2001:db8::2]:0".parse().unwrap()));
        assert_eq!(parse_local("[2001:db8::2]:2268"), Ok("[2001:db8::2]:2268".parse().unwrap()));
        assert!(parse_local("nope").is_err());
        let err =
            Cli::try_parse_from(["driad-ingest", "gateway", "--relay", "203.0.113.15", "--native-interface", "a"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("S,G"), "{err}");
        let err = Cli::try_parse_from([
            "driad-ingest",
            "gateway",
            "--relay",
            "203.0.113.15",
            "--native-interface",
            "a",
            "232.1.1.1,198.51.100.1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("multicast"), "{err}");
    }
}
