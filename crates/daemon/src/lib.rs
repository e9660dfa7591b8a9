//! What every multicast-ingest daemon shares, written once: configuration files, log setup
//! (with reload), signal handling, systemd notifications, the metrics endpoint, the Unix
//! control socket that `<daemon> status` talks to, plain-text status tables, and completions
//! and man pages.

pub mod cli;
pub mod config;
pub mod control;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod service;
pub mod signals;
pub mod status;
pub mod systemd;
pub mod table;
pub mod testing;

pub use config::ConfigArgs;
pub use control::{ControlServer, request};
pub use logging::{LogArgs, LogFormat, LogHandle};
pub use reload::Reloader;
pub use service::Ticker;
pub use signals::Signals;
