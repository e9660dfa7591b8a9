//! For the daemons' command-line tests (`tests/config.rs` of each): run the real binary with a
//! configuration file, and check the packaging subcommands, the same way for all four.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Output {
    /// The exit status (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `bin` with `args` (RUST_LOG unset).
pub fn run(bin: &str, args: &[&str]) -> Output {
    let out = Command::new(bin).args(args).env_remove("RUST_LOG").output().expect("the binary runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "mcast-daemon-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("temporary directory");
        TempDir(path)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `bin --config FILE --check-config EXTRA...` where FILE holds `text`, with `{dir}`
/// replaced by the directory FILE is in (for files the configuration names).
pub fn check_config(bin: &str, text: &str, extra: &[&str]) -> Output {
    let dir = TempDir::new();
    let path = dir.0.join("config.toml");
    std::fs::write(&path, text.replace("{dir}", &dir.0.display().to_string())).expect("config file written");
    let path = path.display().to_string();
    let mut args = vec!["--config", path.as_str(), "--check-config"];
    args.extend_from_slice(extra);
    run(bin, &args)
}

/// Asserts that `bin` accepts the configuration file `text` with `--check-config`: exit
/// status 0 and "configuration OK".
pub fn assert_accepted(bin: &str, text: &str, extra: &[&str]) {
    let out = check_config(bin, text, extra);
    assert_eq!((out.code, out.stdout.as_str()), (0, "configuration OK\n"), "{}", out.stderr);
}

/// Asserts that `bin` rejects the configuration file `text` with `--check-config`: exit
/// status 2 and `why` in the message.
pub fn assert_rejected(bin: &str, text: &str, extra: &[&str], why: &str) {
    let out = check_config(bin, text, extra);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(why), "expected {why:?} in: {}", out.stderr);
}

/// Asserts that `bin`'s completions for bash, zsh and fish mention every flag of `flags`
/// (and `metrics-listen`), and that `bin manpage` renders a section 1 page named `name`.
pub fn assert_packaging(bin: &str, name: &str, flags: &[&str]) {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(bin, &["completions", shell]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        for flag in flags.iter().chain(&["metrics-listen", "config"]) {
            assert!(out.stdout.contains(flag), "{shell} completions lack {flag}: {}", out.stdout);
        }
    }
    let out = run(bin, &["manpage"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&format!(".TH {name} 1")), "{}", out.stdout);
    assert!(out.stdout.contains("check\\-config"), "{}", out.stdout);
    let out = run(bin, &["--version"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with(&format!("{name} ")), "{}", out.stdout);
}
