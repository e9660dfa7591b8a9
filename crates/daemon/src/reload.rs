//! SIGHUP reloads, the same way in every daemon: merge the `--config` file again with the
//! original command line (flags still win), parse it with the daemon's own clap definition (so
//! every value goes through the same validation as at start), and find which options changed
//! against the running configuration. The daemon applies the changed options it can change
//! without dropping a stream; the others are reported as needing a restart and keep their
//! running value.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use clap::{ArgMatches, Command, FromArgMatches};

use crate::config::merge_config_file;
use crate::logging::{LogArgs, LogHandle};

/// Options every daemon reloads.
pub const ALWAYS_RELOADABLE: &[&str] = &["log-level"];

/// The raw values of every long option, as clap saw them (defaults included).
type Values = BTreeMap<String, Vec<OsString>>;

/// Re-reads the configuration on request. Created at start with the process's arguments.
#[derive(Debug)]
pub struct Reloader {
    command: Command,
    argv: Vec<OsString>,
    /// What the daemon runs with now.
    running: Values,
}

/// The outcome of a re-read: the new command line and which options differ from the running
/// ones.
#[derive(Debug)]
pub struct Reload<C> {
    /// The newly parsed command line.
    pub cli: C,
    /// Long names of the options whose value changed (e.g. `hold-down`).
    pub changed: BTreeSet<String>,
    values: Values,
}

impl<C> Reload<C> {
    /// Whether option `long` (e.g. `"bandwidth"`) changed.
    pub fn changed(&self, long: &str) -> bool {
        self.changed.contains(long)
    }
}

fn values(command: &Command, matches: &ArgMatches) -> Values {
    let mut out = Values::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if let Ok(Some(raw)) = matches.try_get_raw(arg.get_id().as_str()) {
            out.insert(long.to_owned(), raw.map(OsString::from).collect());
        }
    }
    out
}

impl Reloader {
    /// `command` is the daemon's clap command, `argv` the process's own arguments (as
    /// [`crate::config::Loaded::argv`]).
    pub fn new(command: Command, argv: Vec<OsString>) -> Reloader {
        let running = merge_config_file(&command, argv.clone())
            .ok()
            .and_then(|merged| command.clone().try_get_matches_from(merged).ok())
            .map(|m| values(&command, &m))
            .unwrap_or_default();
        Reloader { command, argv, running }
    }

    /// Reads the configuration again. An unreadable file, an unknown key or a bad value is an
    /// error (the daemon keeps running as it is).
    pub fn reload<C: FromArgMatches>(&self) -> Result<Reload<C>, String> {
        let merged = merge_config_file(&self.command, self.argv.clone()).map_err(|e| e.to_string())?;
        let matches = self
            .command
            .clone()
            .try_get_matches_from(merged)
            .map_err(|e| e.render().to_string().trim_end().replace('\n', " "))?;
        let cli = C::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        let values = values(&self.command, &matches);
        let keys: BTreeSet<&String> = values.keys().chain(self.running.keys()).collect();
        let changed = keys.into_iter().filter(|k| values.get(*k) != self.running.get(*k)).cloned().collect();
        Ok(Reload { cli, changed, values })
    }

    /// [`reload`](Self::reload), then the daemon's own check of the new command line
    /// (`validate`, whose result it returns with the reload), then the new log filter if it
    /// changed (`log_args` finds the log flags in the command line). Any failure is logged as
    /// one error line and yields `None`: the daemon keeps running as it was. The daemon then
    /// applies its reloadable options and calls [`applied`](Self::applied).
    pub fn reload_checked<C: FromArgMatches, T>(
        &self,
        log: &LogHandle,
        log_args: impl FnOnce(&C) -> &LogArgs,
        validate: impl FnOnce(&C) -> anyhow::Result<T>,
    ) -> Option<(Reload<C>, T)> {
        let checked = self.reload::<C>().map_err(anyhow::Error::msg).and_then(|reload| {
            let value = validate(&reload.cli)?;
            if reload.changed("log-level") {
                log.set_filter(&log_args(&reload.cli).log_level)?;
            }
            Ok((reload, value))
        });
        match checked {
            Ok(checked) => Some(checked),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "reload rejected; the configuration stays as it was");
                None
            }
        }
    }

    /// Records that the daemon applied the changes of `reload` to the options in
    /// `reloadable` (besides [`ALWAYS_RELOADABLE`]) and logs one line with what changed, and a
    /// warning naming the changed options that need a restart (they keep their running value,
    /// and are named again at the next reload). Returns the options applied.
    pub fn applied<C>(&mut self, reload: &Reload<C>, reloadable: &[&str]) -> Vec<String> {
        let can = |k: &str| ALWAYS_RELOADABLE.contains(&k) || reloadable.contains(&k);
        let (applied, restart): (Vec<String>, Vec<String>) = reload.changed.iter().cloned().partition(|k| can(k));
        for key in &applied {
            match reload.values.get(key) {
                Some(v) => self.running.insert(key.clone(), v.clone()),
                None => self.running.remove(key),
            };
        }
        tracing::info!(changed = ?applied, "configuration reloaded");
        if !restart.is_empty() {
            tracing::warn!(restart = ?restart, "changed settings need a restart; they keep their running values");
        }
        applied
    }

    /// The command's name (for messages).
    pub fn name(&self) -> &str {
        self.command.get_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    #[command(name = "demo")]
    struct Cli {
        #[arg(long, default_value = "info")]
        log_level: String,
        #[arg(long, default_value = "10s")]
        hold_down: String,
        #[arg(long = "nameserver")]
        nameservers: Vec<String>,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    }

    #[test]
    fn finds_changes_and_keeps_restart_only_options_pending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.toml");
        std::fs::write(&path, "hold-down = \"10s\"\nnameserver = [\"a\"]\nport = 1\n").unwrap();
        let argv: Vec<OsString> =
            vec!["demo".into(), "--config".into(), path.clone().into(), "--log-level".into(), "debug".into()];
        let mut reloader = Reloader::new(Cli::command(), argv);

        let same = reloader.reload::<Cli>().unwrap();
        assert!(same.changed.is_empty(), "{:?}", same.changed);

        std::fs::write(&path, "hold-down = \"20s\"\nnameserver = [\"a\", \"b\"]\nport = 2\nlog-level = \"trace\"\n")
            .unwrap();
        let reload = reloader.reload::<Cli>().unwrap();
        // The command line still wins for log-level.
        assert_eq!(reload.cli.log_level, "debug");
        assert_eq!(reload.cli.hold_down, "20s");
        assert_eq!(reload.changed.iter().map(String::as_str).collect::<Vec<_>>(), ["hold-down", "nameserver", "port"]);
        assert_eq!(reloader.applied(&reload, &["hold-down", "nameserver"]), ["hold-down", "nameserver"]);
        // The port needs a restart: still pending at the next reload; the others are applied.
        let again = reloader.reload::<Cli>().unwrap();
        assert_eq!(again.changed.iter().map(String::as_str).collect::<Vec<_>>(), ["port"]);

        std::fs::write(&path, "hold-down = \"20s\"\nportt = 2\n").unwrap();
        let err = reloader.reload::<Cli>().unwrap_err();
        assert!(err.contains("unknown key `portt`"), "{err}");
        std::fs::write(&path, "port = \"x\"\n").unwrap();
        let err = reloader.reload::<Cli>().unwrap_err();
        assert!(err.contains("--port"), "{err}");
    }
}
