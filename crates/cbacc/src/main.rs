//! cbacc: bandwidth admission between pimwatch and driad-ingest.

mod cli;
mod daemon;
mod info;
mod metrics;
mod status;

use std::process::ExitCode;

use clap::CommandFactory;
use mcast_daemon::service;

fn main() -> ExitCode {
    let loaded = match mcast_daemon::config::load::<cli::Cli>() {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let cli = loaded.cli;
    if let Some(cli::Command::Tool(tool)) = &cli.command {
        return tool.run(cli::Cli::command());
    }
    let runtime = match service::runtime("cbacc", 2) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    if cli.command.is_none() {
        // The DNS resolver and the HTTPS client are built in the check: inside the runtime.
        let validation = {
            let _guard = runtime.enter();
            daemon::validate(&cli.run).map(drop)
        };
        if let Some(code) = service::check_config("cbacc", cli.run.config.check_config, validation) {
            return code;
        }
    }
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
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
        Some(cli::Command::Tool(_)) => Ok(()),
        None => service::run_daemon::<cli::Cli, _>(&runtime, cli.run.log.clone(), loaded.argv, |reloader, log| {
            daemon::run(cli.run, reloader, log)
        }),
    };
    service::finish("cbacc", result)
}
