//! Configuration files: every daemon takes its flags on the command line, from a TOML file
//! given with `--config FILE`, or both, with the command line winning.
//!
//! The file is flat and mirrors the flags one to one: the key is the long flag name (`kebab-case`,
//! or the same in `snake_case`), the value a string, number or boolean, or an array for a flag
//! that may be repeated:
//!
//! ```toml
//! interface = ["down0", "down1"]   # --interface down0 --interface down1
//! native-interface = "amt0"        # --native-interface amt0
//! hello-period = "10s"
//! ipv6 = true                      # --ipv6 (false: leave it off)
//! ```
//!
//! The file is turned into arguments placed before the real ones, and clap parses the result,
//! so every value goes through exactly the same validation as on the command line. A key that
//! is not a flag of the daemon is rejected with its name and line, and a flag given on the
//! command line replaces the file's value entirely (also for repeatable flags).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};

/// Why a configuration file could not be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read { path: PathBuf, error: std::io::Error },
    /// The file is not valid TOML.
    Syntax { path: PathBuf, message: String },
    /// A key that is not an option of this daemon.
    UnknownKey { path: PathBuf, key: String, line: usize, program: String },
    /// A value of a type the key cannot take (e.g. an array for a single-valued flag).
    BadValue { path: PathBuf, key: String, line: usize, expected: &'static str },
    /// `--config` without a file name.
    MissingPath,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ConfigError::Syntax { path, message } => write!(f, "{}: {message}", path.display()),
            ConfigError::UnknownKey { path, key, line, program } => {
                write!(f, "{}:{line}: unknown key `{key}` ({program} has no option --{key})", path.display())
            }
            ConfigError::BadValue { path, key, line, expected } => {
                write!(f, "{}:{line}: key `{key}` expects {expected}", path.display())
            }
            ConfigError::MissingPath => f.write_str("--config needs a file name"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The flags every daemon takes besides its own: the configuration file, checking it, and the
/// metrics endpoint. Flattened into each daemon's run arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Read options from this TOML file: one `key = value` per long flag (`log-level =
    /// "debug"`, `hold-down = "5m"`), an array for a repeatable flag, true/false for a switch.
    /// Flags on the command line win over the file; an unknown key is an error. SIGHUP re-reads
    /// the file and applies what can change without a restart.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the configuration (flags, config file, the files and values they name) and exit:
    /// status 0 and "configuration OK" if the daemon would start with it, 2 and the problem if
    /// not.
    #[arg(long)]
    pub check_config: bool,

    /// Serve Prometheus/OpenMetrics metrics at http://ADDR:PORT/metrics (e.g.
    /// 127.0.0.1:9101). Default: no metrics endpoint.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A daemon's parsed command line and the arguments it came from (kept for SIGHUP reloads).
#[derive(Debug)]
pub struct Loaded<C> {
    /// The parsed command line, config file merged in.
    pub cli: C,
    /// The process's own arguments, without the file's (a reload merges the file again).
    pub argv: Vec<OsString>,
}

/// Parses the process's command line with the `--config` file merged in. On a configuration
/// or usage error prints it and returns the exit code to use: 2 (`--help` and `--version`
/// print and return 0).
pub fn load<C: clap::Parser>() -> Result<Loaded<C>, std::process::ExitCode> {
    load_from(std::env::args_os().collect())
}

/// [`load`] with explicit arguments (tests).
pub fn load_from<C: clap::Parser>(argv: Vec<OsString>) -> Result<Loaded<C>, std::process::ExitCode> {
    let command = C::command();
    let merged = merge_config_file(&command, argv.clone()).map_err(|e| {
        eprintln!("{}: {e}", command.get_name());
        std::process::ExitCode::from(crate::service::EXIT_CONFIG)
    })?;
    match C::try_parse_from(merged) {
        Ok(cli) => Ok(Loaded { cli, argv }),
        Err(e) => {
            let _ = e.print();
            Err(std::process::ExitCode::from(e.exit_code().clamp(0, 255) as u8))
        }
    }
}

/// Flags that never come from a file.
const NOT_IN_FILE: &[&str] = &["config", "check-config", "help", "version"];

/// Returns `argv` with the options of the `--config FILE` it names (if any) inserted before
/// the command-line arguments. With a subcommand (`pimwatch status`, ...) `argv` is returned
/// unchanged: files configure the daemon, not its client commands.
pub fn merge_config_file(command: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = config_path(command, &argv)? else { return Ok(argv) };
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read { path: path.clone(), error })?;
    let file_args = file_arguments(command, &path, &text, &given_flags(&argv))?;
    let mut merged = Vec::with_capacity(argv.len() + file_args.len());
    let mut rest = argv.into_iter();
    merged.extend(rest.next());
    merged.extend(file_args);
    merged.extend(rest);
    Ok(merged)
}

/// The `--config` path, unless the first argument is a subcommand.
fn config_path(command: &Command, argv: &[OsString]) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(first) = argv.get(1).and_then(|a| a.to_str())
        && command.find_subcommand(first).is_some()
    {
        return Ok(None);
    }
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == "--config" {
            return args.next().map(|p| Some(PathBuf::from(p))).ok_or(ConfigError::MissingPath);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Ok(Some(PathBuf::from(path)));
        }
    }
    Ok(None)
}

/// Long flag names present on the command line (by long or short name).
fn given_flags(argv: &[OsString]) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for arg in argv.iter().skip(1).filter_map(|a| a.to_str()) {
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            flags.insert(long.split('=').next().unwrap_or(long).to_owned());
        } else if let Some(short) = arg.strip_prefix('-')
            && let Some(c) = short.chars().next()
        {
            flags.insert(format!("-{c}"));
        }
    }
    flags
}

/// The 1-based line where `key` is assigned, for error messages (the file is flat, so a
/// line-oriented search is exact enough; 0 if not found).
fn line_of(text: &str, key: &str) -> usize {
    for (index, line) in text.lines().enumerate() {
        let line = line.trim_start();
        let name = line.split('=').next().unwrap_or("").trim().trim_matches('"').trim_matches('\'');
        if line.contains('=') && name == key {
            return index + 1;
        }
    }
    0
}

fn file_arguments(
    command: &Command,
    path: &Path,
    text: &str,
    given: &BTreeSet<String>,
) -> Result<Vec<OsString>, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    let mut out = Vec::new();
    for (raw_key, value) in &table {
        let key = raw_key.replace('_', "-");
        let line = line_of(text, raw_key);
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && !NOT_IN_FILE.contains(&key.as_str()))
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: raw_key.clone(),
                line,
                program: command.get_name().to_owned(),
            })?;
        let short = arg.get_short().map(|c| format!("-{c}"));
        if given.contains(&key) || short.is_some_and(|s| given.contains(&s)) {
            continue; // the command line wins
        }
        let bad = |expected| ConfigError::BadValue { path: path.to_path_buf(), key: raw_key.clone(), line, expected };
        let flag = OsString::from(format!("--{key}"));
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(true)) => out.push(flag),
            (ArgAction::SetTrue, toml::Value::Boolean(false)) => {}
            (ArgAction::SetTrue, _) => return Err(bad("true or false")),
            (ArgAction::Append, toml::Value::Array(items)) => {
                for item in items {
                    out.push(flag.clone());
                    out.push(scalar(item).ok_or_else(|| bad("an array of strings or numbers"))?);
                }
            }
            (_, toml::Value::Array(_)) => return Err(bad("a single value, not an array")),
            (_, value) => {
                out.push(flag);
                out.push(scalar(value).ok_or_else(|| bad("a string, number or boolean"))?);
            }
        }
    }
    Ok(out)
}

fn scalar(value: &toml::Value) -> Option<OsString> {
    match value {
        toml::Value::String(s) => Some(s.into()),
        toml::Value::Integer(i) => Some(i.to_string().into()),
        toml::Value::Float(f) => Some(f.to_string().into()),
        toml::Value::Boolean(b) => Some(b.to_string().into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Parser, Subcommand};

    /// A stand-in daemon command line.
    #[derive(Debug, Parser)]
    #[command(name = "demo", args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    struct Cli {
        #[command(subcommand)]
        command: Option<Sub>,
        #[arg(long = "interface", short = 'i')]
        interfaces: Vec<String>,
        #[arg(long)]
        native_interface: Option<String>,
        #[arg(long, default_value = "30s")]
        hello_period: String,
        #[arg(long)]
        ipv6: bool,
        #[arg(long, default_value_t = 1)]
        dr_priority: u32,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        check_config: bool,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        Status {
            #[arg(long)]
            json: bool,
        },
    }

    fn parse(file: &str, args: &[&str]) -> Result<Cli, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["demo".into(), "--config".into(), path.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        let merged = merge_config_file(&<Cli as clap::CommandFactory>::command(), argv).map_err(|e| {
            // Show the message without the temporary directory.
            e.to_string().replace(&path.display().to_string(), "demo.toml")
        })?;
        Cli::try_parse_from(merged).map_err(|e| e.to_string())
    }

    #[test]
    fn file_supplies_options() {
        let cli = parse(
            "interface = [\"down0\", \"down1\"]\nnative-interface = \"amt0\"\nhello_period = \"10s\"\nipv6 = true\ndr-priority = 5\n",
            &[],
        )
        .unwrap();
        assert_eq!(cli.interfaces, ["down0", "down1"]);
        assert_eq!(cli.native_interface.as_deref(), Some("amt0"));
        assert_eq!(cli.hello_period, "10s");
        assert!(cli.ipv6);
        assert_eq!(cli.dr_priority, 5);
    }

    #[test]
    fn command_line_wins_even_for_repeatable_flags() {
        let cli = parse(
            "interface = [\"down0\", \"down1\"]\ndr-priority = 5\nipv6 = false\n",
            &["-i", "eth9", "--dr-priority", "7"],
        )
        .unwrap();
        assert_eq!(cli.interfaces, ["eth9"]);
        assert_eq!(cli.dr_priority, 7);
        assert!(!cli.ipv6);
    }

    #[test]
    fn unknown_keys_are_rejected_with_name_and_line() {
        let err = parse("# comment\ninterface = [\"down0\"]\n\nhelo-period = \"10s\"\n", &[]).unwrap_err();
        assert_eq!(err, "demo.toml:4: unknown key `helo-period` (demo has no option --helo-period)");
        let err = parse("config = \"other.toml\"\n", &[]).unwrap_err();
        assert!(err.contains("unknown key `config`"), "{err}");
    }

    #[test]
    fn wrong_shapes_and_values_are_rejected() {
        let err = parse("native-interface = [\"a\", \"b\"]\n", &[]).unwrap_err();
        assert_eq!(err, "demo.toml:1: key `native-interface` expects a single value, not an array");
        let err = parse("ipv6 = \"yes\"\n", &[]).unwrap_err();
        assert_eq!(err, "demo.toml:1: key `ipv6` expects true or false");
        let err = parse("dr-priority = \"high\"\n", &[]).unwrap_err();
        assert!(err.contains("--dr-priority"), "clap reports the flag: {err}");
        let err = parse("interface = \n", &[]).unwrap_err();
        assert!(err.starts_with("demo.toml: "), "{err}");
    }

    #[test]
    fn subcommands_and_no_config_pass_through() {
        let command = <Cli as clap::CommandFactory>::command();
        let argv: Vec<OsString> = ["demo", "status", "--json"].iter().map(OsString::from).collect();
        assert_eq!(merge_config_file(&command, argv.clone()).unwrap(), argv);
        let argv: Vec<OsString> = ["demo", "-i", "x"].iter().map(OsString::from).collect();
        assert_eq!(merge_config_file(&command, argv.clone()).unwrap(), argv);
        let argv: Vec<OsString> = ["demo", "--config"].iter().map(OsString::from).collect();
        assert!(matches!(merge_config_file(&command, argv), Err(ConfigError::MissingPath)));
        let argv: Vec<OsString> = ["demo", "--config=/nonexistent.toml"].iter().map(OsString::from).collect();
        assert!(matches!(merge_config_file(&command, argv), Err(ConfigError::Read { .. })));
    }
}
