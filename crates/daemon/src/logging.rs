//! Log setup: `tracing` with RUST_LOG-style filters, human-readable by default, JSON on request,
//! and a filter that SIGHUP can change without a restart.

use clap::{Args, ValueEnum};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

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
    /// environment variable, when set, takes precedence. Reloaded on SIGHUP.
    #[arg(long, default_value = "info", value_name = "FILTER")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Changes the log filter of the running daemon.
#[derive(Debug, Clone)]
pub struct LogHandle {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogHandle {
    /// Applies `filter` (RUST_LOG syntax). RUST_LOG, when set, still takes precedence, as at
    /// start. Returns the filter now in force.
    pub fn set_filter(&self, filter: &str) -> anyhow::Result<String> {
        let filter = effective_filter(filter)?;
        let text = filter.to_string();
        self.handle.reload(filter).map_err(|e| anyhow::anyhow!("changing the log filter: {e}"))?;
        Ok(text)
    }
}

fn effective_filter(level: &str) -> anyhow::Result<EnvFilter> {
    Ok(match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env)?,
        _ => EnvFilter::try_new(level)?,
    })
}

/// Checks a filter without installing it (for `--check-config`).
pub fn validate_filter(level: &str) -> anyhow::Result<()> {
    EnvFilter::try_new(level).map(|_| ()).map_err(|e| anyhow::anyhow!("--log-level {level:?}: {e}"))
}

/// Installs the global subscriber writing to stderr (journald captures it under systemd).
pub fn init(args: &LogArgs) -> anyhow::Result<LogHandle> {
    use std::io::IsTerminal;
    let (filter, handle) = reload::Layer::new(effective_filter(&args.log_level)?);
    // Colours only for a person at a terminal, never into journald or a log file.
    let ansi = std::io::stderr().is_terminal();
    let (text, json) = match args.log_format {
        LogFormat::Text => (
            Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi)),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            ),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    Ok(LogHandle { handle })
}
