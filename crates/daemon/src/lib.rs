//! What every multicast-ingest daemon shares, written once: log setup, signal handling, the
//! Unix control socket that `<daemon> status` talks to, and plain-text status tables.

pub mod control;
pub mod logging;
pub mod signals;
pub mod table;

pub use control::{ControlServer, request};
pub use logging::{LogArgs, LogFormat};
pub use signals::Signals;
