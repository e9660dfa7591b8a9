//! Shell completions and man pages generated from a daemon's clap definition, so the package
//! can install them (`<daemon> completions SHELL`, `<daemon> manpage`).

use clap::{Command, ValueEnum};

/// Shells we generate completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    PowerShell,
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
