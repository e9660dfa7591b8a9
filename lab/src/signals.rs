//! Process-wide signal flags. Handlers only set atomics; every wait loop in the lab polls
//! [`stop_requested`], so Ctrl-C (SIGINT), SIGTERM and SIGHUP end a run through the normal
//! return path and the teardown guards run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);
static STOP_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    STOP_SIGNAL.store(sig as usize, Ordering::SeqCst);
}

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.store(true, Ordering::SeqCst);
}

/// Installs the handlers for SIGINT, SIGTERM and SIGHUP (stop) and SIGUSR1 (report).
/// SIGPIPE is ignored so a closed terminal or pipe shows up as a write error.
pub fn install() -> Result<()> {
    let stop = SigAction::new(SigHandler::Handler(on_stop), SaFlags::SA_RESTART, SigSet::empty());
    let usr1 = SigAction::new(SigHandler::Handler(on_usr1), SaFlags::SA_RESTART, SigSet::empty());
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            sigaction(sig, &stop).with_context(|| format!("installing a handler for {sig}"))?;
        }
        sigaction(Signal::SIGUSR1, &usr1).context("installing a handler for SIGUSR1")?;
        sigaction(Signal::SIGPIPE, &ignore).context("ignoring SIGPIPE")?;
    }
    Ok(())
}

/// True once SIGINT, SIGTERM or SIGHUP arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The signal that asked us to stop, if any.
pub fn stop_signal() -> Option<Signal> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n as i32).ok(),
    }
}

/// Asks the process to stop as if a signal had arrived (used by tests and `--duration`).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Returns true (once) if SIGUSR1 arrived since the last call.
pub fn take_usr1() -> bool {
    USR1.swap(false, Ordering::SeqCst)
}

/// An error if a stop was requested: `?` on this inside wait loops unwinds to the guards.
pub fn check() -> Result<()> {
    if stop_requested() {
        match stop_signal() {
            Some(sig) => bail!("interrupted by {sig}"),
            None => bail!("interrupted"),
        }
    }
    Ok(())
}

/// Sleeps `d` in small slices, returning early (with an error) if a stop is requested.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}
