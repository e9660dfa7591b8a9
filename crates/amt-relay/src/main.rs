//! amt-relay: an AMT (RFC 7450) relay.

mod cli;
mod daemon;
mod datapath;
mod metrics;
mod probe;
mod status;
mod upstream;

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
            let validation = daemon::validate(&cli.run);
            if let Some(code) = service::check_config("amt-relay", cli.run.config.check_config, validation) {
                return code;
            }
        }
        Some(_) => {}
    }
    // One thread: the relay state, the control plane and the data path share it, so the data
    // path reads the subscriber table without a lock.
    let runtime = match service::runtime("amt-relay", 1) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = match cli.command {
        Some(cli::Command::Status(args)) => runtime.block_on(status::show(args)),
        Some(cli::Command::Probe(args)) => probe::run(args),
        Some(cli::Command::Tool(_)) => Ok(()),
        None => service::run_daemon::<cli::Cli, _>(&runtime, cli.run.log.clone(), loaded.argv, |reloader, log| {
            daemon::run(cli.run, reloader, log)
        }),
    };
    service::finish("amt-relay", result)
}
