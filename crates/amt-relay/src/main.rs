//! amt-relay: an AMT (RFC 7450) relay.

mod cli;
mod daemon;
mod datapath;
mod probe;
mod status;
mod upstream;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // One thread: the relay state, the control plane and the data path share it, so the data
    // path reads the subscriber table without a lock.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("amt-relay: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(cli::Command::Status(args)) => runtime.block_on(status::show(args)),
        Some(cli::Command::Probe(args)) => probe::run(args),
        None => {
            if let Err(e) = mcast_daemon::logging::init(&cli.run.log) {
                eprintln!("amt-relay: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
            runtime.block_on(daemon::run(cli.run))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("amt-relay: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
