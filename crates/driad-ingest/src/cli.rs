//! Command line of driad-ingest.

use std::net::{IpAddr, SocketAddr};

use clap::{Args, Parser, Subcommand};
use mcast_daemon::LogArgs;
use mcast_wire::SourceGroup;

/// DRIAD ingest for the multicast ingest device.
///
/// Finds the AMT relay for each multicast source through DNS (AMTRELAY records, RFC 8777),
/// keeps one AMT tunnel (RFC 7450) per relay and writes the decapsulated multicast into a
/// native interface, where the kernel forwards it like traffic that arrived natively.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One static AMT tunnel, without DNS: for troubleshooting and interop checks. Runs until
    /// SIGTERM/SIGINT, then leaves the (S,G)s and sends a Teardown.
    Gateway(GatewayArgs),
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
fn parse_local(text: &str) -> Result<SocketAddr, String> {
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
        let Command::Gateway(args) = cli.command;
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
