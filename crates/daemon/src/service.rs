//! The life of a daemon process, the same in all four: exit codes, `--check-config`, the
//! periodic tick that pings the systemd watchdog and refreshes metrics, and printing a
//! failure.

use std::process::ExitCode;
use std::time::Duration;

/// Exit status of a clean run (also `--check-config` with a usable configuration).
pub const EXIT_OK: u8 = 0;
/// Exit status of a failure while running (a socket that cannot be opened, a lost capability).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit status of a configuration or usage error (as clap's usage errors).
pub const EXIT_CONFIG: u8 = 2;

/// After the command line is parsed: `validation` is the daemon's check of everything it
/// would refuse at start. On an error prints it and returns exit status 2; with
/// `--check-config` prints "configuration OK" and returns 0. `None`: go on and run.
pub fn check_config(name: &str, check_only: bool, validation: anyhow::Result<()>) -> Option<ExitCode> {
    match validation {
        Err(e) => {
            eprintln!("{name}: configuration error: {e:#}");
            Some(ExitCode::from(EXIT_CONFIG))
        }
        Ok(()) if check_only => {
            println!("configuration OK");
            Some(ExitCode::from(EXIT_OK))
        }
        Ok(()) => None,
    }
}

/// The exit status of a finished run: 0, or 1 with the error printed (and logged, for when
/// stderr goes nowhere a person looks).
pub fn finish(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// The tokio runtime of a daemon process: one thread (`threads` = 1) or a pool. On failure
/// prints why and returns exit status 1.
pub fn runtime(name: &str, threads: usize) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.enable_all().build().map_err(|e| finish(name, Err(anyhow::anyhow!("cannot start the runtime: {e}"))))
}

/// Runs the daemon itself: installs the log subscriber from `log`, sets up SIGHUP reloads for
/// the command `C` started with `argv`, and runs `daemon` to its end.
pub fn run_daemon<C: clap::CommandFactory, F: std::future::Future<Output = anyhow::Result<()>>>(
    runtime: &tokio::runtime::Runtime,
    log: crate::LogArgs,
    argv: Vec<std::ffi::OsString>,
    daemon: impl FnOnce(crate::Reloader, crate::LogHandle) -> F,
) -> anyhow::Result<()> {
    let handle = crate::logging::init(&log)?;
    let reloader = crate::Reloader::new(C::command(), argv);
    runtime.block_on(daemon(reloader, handle))
}

/// How often the tick runs at most (metrics are refreshed this often).
const TICK: Duration = Duration::from_secs(1);

/// The main loop's periodic tick: pings the systemd watchdog (from the loop itself, so a
/// ping proves it turns) and tells the daemon to refresh its metrics. Never fires when
/// neither is wanted.
#[derive(Debug)]
pub struct Ticker {
    interval: Option<tokio::time::Interval>,
    watchdog: bool,
}

impl Ticker {
    /// A tick every second, or at half the watchdog timeout if that is shorter; none when there
    /// is no watchdog and `metrics` is false. Must run inside a tokio runtime.
    pub fn new(metrics: bool) -> Ticker {
        let watchdog = crate::systemd::watchdog_interval();
        let period = match watchdog {
            Some(w) => Some(w.min(TICK).max(Duration::from_millis(10))),
            None => metrics.then_some(TICK),
        };
        let interval = period.map(|p| {
            let mut i = tokio::time::interval(p);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        Ticker { interval, watchdog: watchdog.is_some() }
    }

    /// Waits for the next tick (cancel-safe) and pings the watchdog.
    pub async fn tick(&mut self) {
        match &mut self.interval {
            Some(interval) => {
                interval.tick().await;
                if self.watchdog {
                    crate::systemd::watchdog_ping();
                }
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(check_config("d", true, Ok(())), Some(ExitCode::from(0)));
        assert_eq!(check_config("d", false, Ok(())), None);
        assert_eq!(check_config("d", false, Err(anyhow::anyhow!("bad"))), Some(ExitCode::from(2)));
        assert_eq!(finish("d", Err(anyhow::anyhow!("bad"))), ExitCode::from(1));
    }

    #[tokio::test]
    async fn ticks_when_metrics_are_wanted() {
        let mut ticker = Ticker::new(true);
        tokio::time::timeout(Duration::from_secs(5), ticker.tick()).await.unwrap();
        if crate::systemd::watchdog_interval().is_none() {
            let mut idle = Ticker::new(false);
            assert!(tokio::time::timeout(Duration::from_millis(50), idle.tick()).await.is_err());
        }
    }
}
