//! driad-ingest: follows a joinfile, finds each source's AMT relay through DRIAD (RFC 8777
//! AMTRELAY records), keeps one AMT tunnel per relay and writes the decapsulated multicast
//! into a native interface. Subcommands: `status`, `lookup`, `zone-record`, and `gateway`
//! (one static tunnel, for troubleshooting).

mod cli;
mod daemon;
mod gateway_cmd;
mod lookup_cmd;
mod manager;
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
        Some(cli::Command::ZoneRecord(args)) => {
            return match lookup_cmd::zone_record(args) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => service::finish("driad-ingest", Err(e)),
            };
        }
        _ => {}
    }
    let runtime = match service::runtime("driad-ingest", 1) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    if cli.command.is_none() {
        // The DNS resolver is built in the check: inside the runtime.
        let validation = {
            let _guard = runtime.enter();
            daemon::validate(&cli.run).map(drop)
        };
        if let Some(code) = service::check_config("driad-ingest", cli.run.config.check_config, validation) {
            return code;
        }
    }
    let result = match cli.command {
        Some(cli::Command::Status(args)) => runtime.block_on(status::show(args)),
        Some(cli::Command::Lookup(args)) => runtime.block_on(lookup_cmd::lookup(args)),
        Some(cli::Command::ZoneRecord(_) | cli::Command::Tool(_)) => Ok(()),
        Some(cli::Command::Gateway(args)) => match mcast_daemon::logging::init(&args.log) {
            Ok(_log) => runtime.block_on(gateway_cmd::run(args)),
            Err(e) => Err(e),
        },
        None => service::run_daemon::<cli::Cli, _>(&runtime, cli.run.log.clone(), loaded.argv, |reloader, log| {
            daemon::run(cli.run, reloader, log)
        }),
    };
    service::finish("driad-ingest", result)
}
