//! Shell completions and man pages generated from a daemon's clap definition, so the package
//! can install them (`<daemon> completions SHELL`, `<daemon> manpage`).

use clap::{Command, Subcommand, ValueEnum};

/// Shells we generate completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    PowerShell,
}

/// The end of every daemon's `--help` and man page: exit status, signals, systemd.
pub const AFTER_HELP: &str = "\
Exit status: 0 after a clean stop (SIGTERM, SIGINT) or a good --check-config; 1 when the daemon fails \
while running (a socket it cannot open, a missing capability); 2 for a configuration or usage error.

Signals: SIGTERM and SIGINT stop the daemon cleanly. SIGHUP re-reads the --config file with the \
same command line and applies the options that can change without dropping a stream (the log \
filter always); changed options that need a restart are named in a warning.

systemd: Type=notify. READY=1 once the daemon listens, STOPPING=1 when it stops, WATCHDOG=1 from \
its event loop when WatchdogSec= is set.";

/// The subcommands every daemon has besides its own (flattened into its `Command` enum with
/// `#[command(flatten)]`), for packagers: the Nix package runs exactly these.
#[derive(Debug, Clone, Subcommand)]
pub enum ToolCommand {
    /// Print the shell completion script for SHELL on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff, section 1) on stdout.
    Manpage,
}

impl ToolCommand {
    /// Prints what was asked for `command` (the daemon's whole clap command).
    pub fn run(&self, command: Command) -> std::process::ExitCode {
        match self {
            ToolCommand::Completions { shell } => print_completions(command, *shell),
            ToolCommand::Manpage => {
                if let Err(e) = print_manpage(command) {
                    eprintln!("writing the man page: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        std::process::ExitCode::SUCCESS
    }
}

/// Writes the completion script for `shell` to stdout.
pub fn print_completions(mut command: Command, shell: Shell) {
    let name = command.get_name().to_owned();
    let mut out = std::io::stdout();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut command, name, &mut out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut command, name, &mut out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut command, name, &mut out),
        Shell::Elvish => clap_complete::generate(clap_complete::Shell::Elvish, &mut command, name, &mut out),
        Shell::PowerShell => clap_complete::generate(clap_complete::Shell::PowerShell, &mut command, name, &mut out),
    }
}

/// Writes the roff man page (section 1) to stdout.
pub fn print_manpage(command: Command) -> std::io::Result<()> {
    clap_mangen::Man::new(command).render(&mut std::io::stdout())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Command {
        Command::new("demo")
            .about("A demo daemon")
            .arg(clap::Arg::new("interface").long("interface").help("An interface"))
    }

    #[test]
    fn man_page_and_completions_render() {
        let mut page = Vec::new();
        clap_mangen::Man::new(demo()).render(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH demo 1"), "{page}");
        assert!(page.contains("interface"), "{page}");
        let mut script = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut demo(), "demo", &mut script);
        assert!(String::from_utf8(script).unwrap().contains("--interface"));
    }
}
