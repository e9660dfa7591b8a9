//! What every multicast-ingest daemon shares, written once: configuration files, log setup
//! (with reload), signal handling, systemd notifications, the metrics endpoint, the Unix
//! control socket that `<daemon> status` talks to, plain-text status tables, and completions
//! and man pages.

pub mod cli;
pub mod config;
pub mod control;
pub mod logging;
pub mod metrics;
pub mod signals;
pub mod systemd;
pub mod table;

pub use control::{ControlServer, request};
pub use logging::{LogArgs, LogFormat, LogHandle};
pub use signals::Signals;
