//! systemd integration: readiness and stopping notifications and the watchdog. Every call is a
//! no-op when the daemon does not run under systemd (no NOTIFY_SOCKET), so daemons call them
//! unconditionally.

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// READY=1 with a status line: call once the daemon listens and serves.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// STOPPING=1: call when a clean shutdown starts.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// STATUS=...: a one-line state shown by `systemctl status`.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// How often to ping the watchdog, if systemd asked for one (WatchdogSec=): half the timeout,
/// so one late turn of the event loop does not kill the daemon.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|timeout| !timeout.is_zero()).map(|timeout| timeout / 2)
}

/// WATCHDOG=1: call from the daemon's main event loop (not from a side task), so the ping
/// proves the loop is turning.
pub fn watchdog_ping() {
    notify(&[NotifyState::Watchdog]);
}
