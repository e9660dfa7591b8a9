//! `mcast-lab`: see lab/README.md.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MCAST_LAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: services log into files.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = mcast_lab::cli::Cli::parse();
    match mcast_lab::cli::main_with(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mcast-lab: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
