//! cbacc: bandwidth admission between pimwatch and driad-ingest.

mod cli;
mod daemon;
mod info;
mod status;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cbacc: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(cli::Command::Status(args)) => runtime.block_on(status::show(args)),
        Some(cli::Command::Info(args)) => {
            if std::env::var_os("RUST_LOG").is_some() {
                let _ = mcast_daemon::logging::init(&mcast_daemon::LogArgs {
                    log_level: "info".into(),
                    log_format: mcast_daemon::LogFormat::Text,
                });
            }
            match runtime.block_on(info::show(args)) {
                Ok(true) => Ok(()),
                Ok(false) => return std::process::ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
        None => {
            if let Err(e) = mcast_daemon::logging::init(&cli.run.log) {
                eprintln!("cbacc: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
            runtime.block_on(daemon::run(cli.run))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The log subscriber may not be installed (status, info), so print as well as log.
            tracing::error!("{e:#}");
            eprintln!("cbacc: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
