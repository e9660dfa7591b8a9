//! FRR without its `frr` user (FRR from Nix on a host without FRR's package): with
//! `MCAST_LAB_FRR_USER=root` (what the lab falls back to when user frr does not exist) the
//! daemons run as root with the vty group, answer vtysh, and the lab goes away cleanly.
//! Needs root (CI runs as root); as another user it prints a notice and passes.
//!
//! A test binary of its own: the variable is process-wide and must not reach other lab tests.

use std::path::Path;

use mcast_lab::lab::{Lab, LabOptions};
use mcast_lab::topology::Topology;

const EXE: &str = env!("CARGO_BIN_EXE_mcast-lab");

fn status_field(pid: u32, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {status}"));
    line.split_whitespace().skip(1).map(str::to_string).collect()
}

#[test]
fn frr_runs_as_root_with_the_vty_group() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root (network namespaces)");
        return;
    }
    let Some(vty) = nix::unistd::Group::from_name(mcast_lab::frr::VTY_GROUP).unwrap() else {
        eprintln!("skipping: group {} does not exist (FRR is not installed)", mcast_lab::frr::VTY_GROUP);
        return;
    };
    // SAFETY: the only test of this binary, set before any thread of ours reads the environment.
    unsafe { std::env::set_var("MCAST_LAB_FRR_USER", "root") };

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/small.toml");
    let topo = Topology::load(Some(&data)).unwrap();
    let opts = LabOptions {
        purpose: "test frr as root".into(),
        bin_dir: Some(Path::new(EXE).parent().unwrap().to_path_buf()),
        ..Default::default()
    };
    let mut lab = Lab::up(topo, &opts).unwrap();

    let zebra = lab.pid("frr:c/zebra").unwrap();
    let cmdline = std::fs::read(format!("/proc/{zebra}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    assert!(argv.windows(4).any(|w| w == ["-u", "root", "-g", "frrvty"]), "{argv:?}");
    // Already root, FRR keeps its uid and gid (it only switches when the user differs).
    assert_eq!(status_field(zebra, "Uid:"), ["0", "0", "0", "0"]);
    let dir = lab.frr_dir("c");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), vty.gid.as_raw(), "{}", dir.display());
    let v = lab.vtysh("c", &["show interface brief".to_string()]).unwrap();
    assert!(v.stdout.contains("lan0"), "{}", v.text());

    let report = lab.teardown();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}
