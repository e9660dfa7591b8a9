//! driad-ingest: follows a joinfile, finds each source's AMT relay through DRIAD (RFC 8777
//! AMTRELAY records), keeps one AMT tunnel per relay and writes the decapsulated multicast
//! into a native interface. Subcommands: `status`, `lookup`, `zone-record`, and `gateway`
//! (one static tunnel, for troubleshooting).

mod cli;
mod daemon;
mod gateway_cmd;
mod lookup_cmd;
mod manager;
mod status;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let Some(cli::Command::ZoneRecord(args)) = &cli.command {
        return match lookup_cmd::zone_record(args) {
            Ok(text) => {
                print!("{text}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("driad-ingest: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("driad-ingest: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(cli::Command::Status(args)) => runtime.block_on(status::show(args)),
        Some(cli::Command::Lookup(args)) => runtime.block_on(lookup_cmd::lookup(args)),
        Some(cli::Command::ZoneRecord(_)) => Ok(()),
        Some(cli::Command::Gateway(args)) => match mcast_daemon::logging::init(&args.log) {
            Ok(_log) => runtime.block_on(gateway_cmd::run(args)),
            Err(e) => Err(e),
        },
        None => match mcast_daemon::logging::init(&cli.run.log) {
            Ok(_log) => runtime.block_on(daemon::run(cli.run)),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The log subscriber is not installed for the client subcommands, so print as
            // well as log.
            tracing::error!("{e:#}");
            eprintln!("driad-ingest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
