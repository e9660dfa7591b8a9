//! Log setup: `tracing` with RUST_LOG-style filters, human-readable by default, JSON on request.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The logging flags every daemon takes.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter in RUST_LOG syntax, e.g. `info` or `info,mcast_pim=debug`. The RUST_LOG
    /// environment variable, when set, takes precedence.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Installs the global subscriber writing to stderr (journald captures it under systemd).
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env)?,
        _ => EnvFilter::try_new(&args.log_level)?,
    };
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, never into journald or a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match args.log_format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
