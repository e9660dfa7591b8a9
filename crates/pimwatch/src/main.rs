//! pimwatch: the ingest device's PIM-SSM face toward the operator's network.

mod cli;
mod daemon;
mod interfaces;
mod status;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pimwatch: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(cli::Command::Status(args)) => runtime.block_on(status::show(args)),
        None => {
            if let Err(e) = mcast_daemon::logging::init(&cli.run.log) {
                eprintln!("pimwatch: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
            runtime.block_on(daemon::run(cli.run))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The log subscriber may not be installed (status), so print as well as log.
            tracing::error!("{e:#}");
            eprintln!("pimwatch: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
