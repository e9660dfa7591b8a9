//! driad-ingest: AMT tunnels to the relays that DRIAD (RFC 8777) names for each multicast
//! source, decapsulated onto a native interface. For now only the `gateway` subcommand (one
//! static tunnel, for troubleshooting and interop checks); the joinfile-driven daemon comes
//! with DRIAD discovery.

mod cli;
mod gateway_cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("driad-ingest: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        cli::Command::Gateway(args) => {
            if let Err(e) = mcast_daemon::logging::init(&args.log) {
                eprintln!("driad-ingest: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
            runtime.block_on(gateway_cmd::run(args))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("driad-ingest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
