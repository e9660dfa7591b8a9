//! Signals a daemon reacts to: SIGTERM/SIGINT stop it cleanly, SIGHUP asks for a reload.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The daemon's signal handlers, installed once at start.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGTERM or SIGINT: shut down cleanly.
    Shutdown,
    /// SIGHUP: reload what can be reloaded.
    Reload,
}

impl Signals {
    /// Installs the handlers. Must run inside a tokio runtime.
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.term.recv() => SignalEvent::Shutdown,
            _ = self.int.recv() => SignalEvent::Shutdown,
            _ = self.hup.recv() => SignalEvent::Reload,
        }
    }
}
