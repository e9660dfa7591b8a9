//! pimwatch: the ingest device's PIM-SSM face toward the operator's network.

mod cli;
mod daemon;
mod interfaces;
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
    match &cli.command {
        Some(cli::Command::Tool(tool)) => return tool.run(cli::Cli::command()),
        None => {
            let validation = daemon::validate(&cli.run).map(drop);
            if let Some(code) = service::check_config("pimwatch", cli.run.config.check_config, validation) {
                return code;
            }
        }
        Some(_) => {}
    }
    let runtime = match service::runtime("pimwatch", 1) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = match cli.command {
        Some(cli::Command::Status(args)) => runtime.block_on(status::show(args)),
        Some(cli::Command::Tool(_)) => Ok(()),
        None => service::run_daemon::<cli::Cli, _>(&runtime, cli.run.log.clone(), loaded.argv, |reloader, log| {
            daemon::run(cli.run, reloader, log)
        }),
    };
    service::finish("pimwatch", result)
}
