//! `mcast-lab dns-server`: the lab's authoritative DNS server (mcast-labdns) for the `dns` node.
//!
//! It serves the zone files of `--zone-dir` (every `*.zone`) and `--zone` on UDP and TCP,
//! re-reads them when they change (a scenario "changes a DNS record" by rewriting a file) and
//! on SIGHUP, and stops on SIGTERM/SIGINT. `--lab-zones` first writes the built-in lab zones
//! (lab/zones/, embedded) into the zone directory, keeping files that are already there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mcast_labdns::{LabDns, Options};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::signals;
use crate::util::Dur;

/// The built-in lab zones (lab/zones/): file name and text.
pub const LAB_ZONES: &[(&str, &str)] = &[
    ("100.51.198.in-addr.arpa.zone", include_str!("../zones/100.51.198.in-addr.arpa.zone")),
    ("0.0.1.0.8.b.d.0.1.0.0.2.ip6.arpa.zone", include_str!("../zones/0.0.1.0.8.b.d.0.1.0.0.2.ip6.arpa.zone")),
    ("example.net.zone", include_str!("../zones/example.net.zone")),
    ("example.com.zone", include_str!("../zones/example.com.zone")),
];

/// Options of `mcast-lab dns-server`.
#[derive(Debug, Clone, clap::Args)]
pub struct DnsServerArgs {
    /// UDP and TCP address to serve on (repeatable: one server per address, e.g. the node's
    /// IPv4 and IPv6 addresses, all serving the same zones).
    #[arg(long, default_value = "127.0.0.1:53")]
    pub listen: Vec<SocketAddr>,
    /// Directory of zone files (`*.zone`, one zone each); files may be added, rewritten, removed.
    #[arg(long)]
    pub zone_dir: Vec<PathBuf>,
    /// A zone file (repeatable).
    #[arg(long)]
    pub zone: Vec<PathBuf>,
    /// Write the built-in lab zones into the (first) --zone-dir first, keeping existing files.
    #[arg(long)]
    pub lab_zones: bool,
    /// How often the zone files are checked for changes.
    #[arg(long, default_value = "200ms")]
    pub watch_interval: Dur,
}

static HUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup(_: libc::c_int) {
    HUP.store(true, Ordering::SeqCst);
}

/// Writes the built-in zones into `dir` (created if needed) unless a file of that name exists.
/// Returns the files written.
pub fn install_lab_zones(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, text) in LAB_ZONES {
        let path = dir.join(name);
        if !path.exists() {
            crate::util::write_atomic(&path, text.as_bytes())?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Runs the server until SIGTERM/SIGINT.
pub fn run(args: &DnsServerArgs) -> Result<()> {
    if args.zone_dir.is_empty() && args.zone.is_empty() {
        bail!("give --zone-dir DIR or --zone FILE");
    }
    if args.lab_zones {
        let dir = args.zone_dir.first().context("--lab-zones needs --zone-dir")?;
        for p in install_lab_zones(dir)? {
            eprintln!("dns-server: installed {}", p.display());
        }
    }
    // SIGHUP reloads here instead of stopping (the lab's default handler).
    let hup = SigAction::new(SigHandler::Handler(on_hup), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGHUP, &hup) }.context("installing the SIGHUP handler")?;

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut servers = Vec::new();
        for &listen in &args.listen {
            let options = Options {
                listen,
                zone_files: args.zone.clone(),
                zone_dirs: args.zone_dir.clone(),
                watch_interval: Some(args.watch_interval.0),
            };
            let dns = LabDns::start(options).await?;
            let zones: Vec<String> = dns.zones().iter().map(ToString::to_string).collect();
            eprintln!("dns-server: serving {} on {} (udp+tcp)", zones.join(", "), dns.local_addr());
            servers.push(dns);
        }
        while !signals::stop_requested() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if HUP.swap(false, Ordering::SeqCst) {
                for dns in &mut servers {
                    let report = dns.reload();
                    eprintln!(
                        "dns-server: SIGHUP ({}): {} zones, {} errors",
                        dns.local_addr(),
                        report.zones.len(),
                        report.errors.len()
                    );
                    for e in &report.errors {
                        eprintln!("dns-server: {e}");
                    }
                }
            }
        }
        for dns in &mut servers {
            dns.stop().await;
        }
        eprintln!("dns-server: stopped");
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_zones_parse() {
        for (name, text) in LAB_ZONES {
            let zone = mcast_labdns::Zone::parse(text, name).unwrap();
            assert!(zone.warnings().is_empty(), "{name}: {:?}", zone.warnings());
            assert_eq!(format!("{}zone", zone.origin()), *name, "file named after its zone");
        }
    }

    #[test]
    fn install_keeps_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("example.net.zone"), "mine").unwrap();
        let written = install_lab_zones(&dir.path().join(".")).unwrap();
        assert_eq!(written.len(), LAB_ZONES.len() - 1);
        assert_eq!(std::fs::read_to_string(dir.path().join("example.net.zone")).unwrap(), "mine");
    }
}
