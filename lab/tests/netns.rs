//! Integration tests in real network namespaces. They need root (CI runs as root); as another
//! user they print a notice and pass.
//!
//! * a lab comes up and goes away without leftovers (namespaces, processes, run directory,
//!   FRR crash directories), including processes it did not start itself;
//! * `mcast-lab down` cleans up after a `kill -9`ed `mcast-lab up`, and Ctrl-C (SIGINT) makes
//!   `up` tear down by itself;
//! * `send` and `recv` report loss correctly: deliberate sequence gaps, a sender that stops
//!   early, and packets dropped in the kernel by a token-bucket filter (checked against the
//!   qdisc's own drop counter); IPv6 SSM works too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcast_lab::lab::{Lab, LabOptions, SpawnSpec};
use mcast_lab::netns;
use mcast_lab::state::RunState;
use mcast_lab::topology::Topology;
use mcast_lab::traffic::stats::RecvReport;

const EXE: &str = env!("CARGO_BIN_EXE_mcast-lab");

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root (network namespaces)");
        return false;
    }
    true
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn small_lab(purpose: &str) -> Lab {
    let topo = Topology::load(Some(&data("small.toml"))).unwrap();
    let opts = LabOptions {
        purpose: purpose.into(),
        bin_dir: Some(Path::new(EXE).parent().unwrap().to_path_buf()),
        ..Default::default()
    };
    Lab::up(topo, &opts).unwrap()
}

fn sh(lab: &mut Lab, node: &str, cmd: &str) -> String {
    let out = lab.run(node, cmd, Duration::from_secs(20)).unwrap();
    assert!(out.status.success(), "`{cmd}` in {node}: {}", out.text());
    out.stdout
}

/// Runs `mcast-lab ARGS` inside `node` and returns (exit code, stdout).
fn tool(lab: &mut Lab, node: &str, args: &str) -> (i32, String) {
    let out = lab.run(node, &format!("{EXE} {args}"), Duration::from_secs(30)).unwrap();
    (out.status.code().unwrap_or(-1), out.stdout)
}

fn leftovers(id: &str) -> Vec<String> {
    netns::list_namespaces().into_iter().filter(|n| n.starts_with(&format!("{id}-"))).collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn frr_crash_dir(daemon: &str, pid: u32) -> PathBuf {
    PathBuf::from(format!("/var/tmp/frr/{daemon}.{pid}"))
}

#[test]
fn lab_lifecycle_leaves_nothing() {
    if !can_run() {
        return;
    }
    let mut lab = small_lab("test lifecycle");
    let id = lab.id.to_string();
    assert!(lab.setup_time < Duration::from_secs(5), "setup took {:?}", lab.setup_time);
    let st = RunState::load(&lab.dir).unwrap();
    assert_eq!(st.namespaces.len(), 4, "{:?}", st.namespaces);
    assert!(st.owner_alive());
    for ns in &st.namespaces {
        assert!(netns::ns_path(ns).exists(), "{ns}");
    }
    // Configuration: sysctls (with * expansion), addresses, routes, bridge.
    assert_eq!(netns::read_sysctl(&lab.ns_name("a"), "net.ipv4.conf.eth0.rp_filter").unwrap(), "0");
    assert_eq!(netns::read_sysctl(&lab.ns_name("c"), "net.ipv4.ip_forward").unwrap(), "1");
    assert!(sh(&mut lab, "a", "ip -br addr show dev eth0").contains("2001:db8::1/64"));
    assert!(sh(&mut lab, "b", "ip route").contains("192.0.2.101 via 10.0.0.1"));
    assert!(sh(&mut lab, "a", "ip -br addr show dev lo").contains("192.0.2.101/32"));
    // The rendered FRR config, and zebra answering.
    let conf = std::fs::read_to_string(lab.frr_dir("c").join("zebra.conf")).unwrap();
    assert!(conf.contains("hello from node c"), "{conf}");
    let v = lab.vtysh("c", &["show interface brief".to_string()]).unwrap();
    assert!(v.stdout.contains("lan0"), "{}", v.text());
    // The autostart service runs, the manual one does not.
    assert!(lab.is_running("svc:c/sleeper"));
    assert!(!lab.is_running("svc:c/manual"));
    lab.start("c/manual").unwrap();
    assert!(lab.is_running("svc:c/manual"));
    lab.stop("c/manual").unwrap();
    assert!(!lab.is_running("svc:c/manual"));
    // A service as another user keeps just the capabilities it asks for (via setpriv).
    lab.start("c/unprivileged").unwrap();
    let pid = lab.pid("svc:c/unprivileged").unwrap();
    wait_for("setpriv to exec", Duration::from_secs(5), || mcast_lab::process::comm(pid).as_deref() == Some("sleep"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).unwrap().split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(field("Uid:"), "65534", "{status}");
    let amb = u64::from_str_radix(&field("CapAmb:"), 16).unwrap();
    assert_eq!(amb, (1 << 12) | (1 << 13), "{status}");
    // A process the lab did not start (as `mcast-lab shell` would), and a tracked one.
    let stray = Command::new("ip")
        .args(["netns", "exec", &lab.ns_name("b"), "sleep", "300"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let stray_pid = stray.id();
    let tracked =
        lab.spawn("bg:sleep", "a", &SpawnSpec { shell: Some("sleep 300".into()), ..Default::default() }).unwrap();
    let zebra = lab.pid("frr:c/zebra").unwrap();
    let st = RunState::load(&lab.dir).unwrap();
    assert!(st.processes.iter().any(|p| p.pid == tracked && p.key == "bg:sleep"));
    assert!(st.processes.iter().any(|p| p.pid == zebra && p.frr_daemon.as_deref() == Some("zebra")));
    // A killed FRR daemon leaves its crash directory; teardown must remove it.
    lab.kill("c/zebra").unwrap();
    assert!(!frr_crash_dir("zebra", zebra).exists());
    lab.start("c/zebra").unwrap();
    let zebra2 = lab.pid("frr:c/zebra").unwrap();

    let dir = lab.dir.clone();
    let report = lab.teardown();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.strays.iter().map(|s| s.0).collect::<Vec<_>>(), vec![stray_pid], "{:?}", report.strays);
    assert!(leftovers(&id).is_empty(), "{:?}", leftovers(&id));
    assert!(!dir.exists());
    for pid in [tracked, zebra2, stray_pid] {
        assert!(mcast_lab::process::state(pid).is_none_or(|s| s == 'Z'), "pid {pid} still running");
    }
    assert!(!frr_crash_dir("zebra", zebra2).exists());
    drop(stray);
}

#[test]
fn lab_is_torn_down_on_panic() {
    if !can_run() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::thread::spawn(move || {
        let lab = small_lab("test panic");
        tx.send((lab.id.to_string(), lab.dir.clone())).unwrap();
        panic!("deliberate panic with a lab up");
    })
    .join();
    assert!(r.is_err());
    let (id, dir) = rx.recv().unwrap();
    assert!(leftovers(&id).is_empty());
    assert!(!dir.exists());
}

fn spawn_up() -> (std::process::Child, RunState) {
    let child = Command::new(EXE)
        .args(["up", "--no-demo", "--topology"])
        .arg(data("small.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut found = None;
    wait_for("the lab to come up", Duration::from_secs(10), || {
        found = mcast_lab::state::live_runs()
            .into_iter()
            .find(|s| s.owner_pid == pid && s.processes.iter().any(|p| p.key == "svc:c/sleeper"));
        found.is_some()
    });
    (child, found.unwrap())
}

#[test]
fn ctrl_c_tears_down_and_down_cleans_after_kill_9() {
    if !can_run() {
        return;
    }
    // SIGINT: `up` tears down by itself.
    let (mut child, st) = spawn_up();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(leftovers(&st.run_id).is_empty());
    assert!(!st.dir.exists());
    for p in &st.processes {
        assert!(!mcast_lab::process::alive(p.pid, p.start_time), "{p:?}");
    }

    // kill -9: everything stays behind until `mcast-lab down`.
    let (mut child, st) = spawn_up();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!leftovers(&st.run_id).is_empty());
    let zebra = st.processes.iter().find(|p| p.frr_daemon.is_some()).unwrap().clone();
    assert!(mcast_lab::process::alive(zebra.pid, zebra.start_time), "zebra should survive kill -9 of its owner");
    // Another lab running meanwhile must not be touched by a plain `down`.
    let mut other = small_lab("test bystander");
    let out = Command::new(EXE).arg("down").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("{}: deleted namespace {}-c", st.run_id, st.run_id)), "{text}");
    assert!(text.contains(&format!("{}: running", other.id)), "{text}");
    assert!(leftovers(&st.run_id).is_empty());
    assert!(!st.dir.exists());
    assert!(!mcast_lab::process::alive(zebra.pid, zebra.start_time));
    assert!(!frr_crash_dir("zebra", zebra.pid).exists());
    for p in &st.processes {
        assert!(!mcast_lab::process::alive(p.pid, p.start_time), "{p:?}");
    }
    // The bystander is intact.
    assert!(other.is_running("frr:c/zebra"));
    assert_eq!(leftovers(other.id.as_str()).len(), 4);
    other.teardown();
}

fn report(json: &str) -> RecvReport {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn recv_counts_gaps_and_early_stops() {
    if !can_run() {
        return;
    }
    let mut lab = small_lab("test recv");
    let sender = "send --source 10.0.0.1 --group 232.9.9.9 --port 6000 --interface eth0 --rate 500";
    let recv = "recv --source 10.0.0.1 --group 232.9.9.9 --port 6000 --json";
    // All 50 arrive: exit 0.
    let r = lab
        .spawn(
            "bg:rx1",
            "b",
            &SpawnSpec {
                shell: Some(format!("{EXE} {recv} --count 50 --timeout 10s > rx1.json")),
                ..Default::default()
            },
        )
        .unwrap();
    let _ = r;
    std::thread::sleep(Duration::from_millis(300));
    let (code, out) = tool(&mut lab, "a", &format!("{sender} --count 50"));
    assert_eq!(code, 0, "{out}");
    wait_for("rx1", Duration::from_secs(10), || !lab.is_running("bg:rx1"));
    assert_eq!(lab.exit_status("bg:rx1").unwrap().code(), Some(0));
    let rx = report(&std::fs::read_to_string(lab.node_dir("b").join("rx1.json")).unwrap());
    assert_eq!((rx.received, rx.lost, rx.gaps, rx.duplicates, rx.state.as_str(), rx.ok), (50, 0, 0, 0, "done", true));
    assert!(rx.first_packet_delay_ms.is_some() && rx.latency_us.is_some());

    // Deliberate gaps: 3 of 50 never sent, so 50 never arrive: exit 1 with exact loss.
    lab.spawn(
        "bg:rx2",
        "b",
        &SpawnSpec { shell: Some(format!("{EXE} {recv} --count 50 --timeout 2s > rx2.json")), ..Default::default() },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (code, out) = tool(&mut lab, "a", &format!("{sender} --count 50 --skip-seq 10-11,30"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"sent\":47") && out.contains("\"skipped\":3"), "{out}");
    wait_for("rx2", Duration::from_secs(10), || !lab.is_running("bg:rx2"));
    assert_eq!(lab.exit_status("bg:rx2").unwrap().code(), Some(1));
    let rx = report(&std::fs::read_to_string(lab.node_dir("b").join("rx2.json")).unwrap());
    assert_eq!((rx.received, rx.lost, rx.gaps, rx.state.as_str(), rx.ok), (47, 3, 2, "timeout", false));
    assert_eq!(rx.gap_ranges, vec![[10, 11], [30, 30]]);

    // The sender stops early (30 of the 50 wanted): no gap to see, but the count is short.
    lab.spawn(
        "bg:rx3",
        "b",
        &SpawnSpec { shell: Some(format!("{EXE} {recv} --count 50 --timeout 2s > rx3.json")), ..Default::default() },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (code, _) = tool(&mut lab, "a", &format!("{sender} --count 30"));
    assert_eq!(code, 0);
    wait_for("rx3", Duration::from_secs(10), || !lab.is_running("bg:rx3"));
    assert_eq!(lab.exit_status("bg:rx3").unwrap().code(), Some(1));
    let rx = report(&std::fs::read_to_string(lab.node_dir("b").join("rx3.json")).unwrap());
    assert_eq!((rx.received, rx.lost, rx.last_seq, rx.ok), (30, 0, Some(29), false));

    // A receiver that joined another source gets nothing from this one (SSM filtering).
    let (code, out) = {
        lab.spawn("bg:tx", "a", &SpawnSpec { shell: Some(format!("{EXE} {sender} --count 0")), ..Default::default() })
            .unwrap();
        tool(&mut lab, "b", "recv --source 10.0.0.9 --group 232.9.9.9 --port 6000 --count 1 --timeout 1s --json")
    };
    assert_eq!(code, 1, "{out}");
    assert_eq!(report(&out).packets, 0);
    lab.stop_key("bg:tx", nix::sys::signal::Signal::SIGTERM, Duration::from_secs(2)).unwrap();
    lab.teardown();
}

#[test]
fn ipv6_ssm_join_and_send() {
    if !can_run() {
        return;
    }
    let mut lab = small_lab("test ipv6");
    lab.spawn(
        "bg:tx",
        "a",
        &SpawnSpec {
            shell: Some(format!(
                "{EXE} send --source 2001:db8::1 --group ff3e::8000:1 --port 6001 --interface eth0 --rate 200 --count 0"
            )),
            ..Default::default()
        },
    )
    .unwrap();
    let (code, out) = tool(
        &mut lab,
        "b",
        "recv --source 2001:db8::1 --group ff3e::8000:1 --port 6001 --interface eth0 --count 20 --timeout 5s --json",
    );
    assert_eq!(code, 0, "{out}");
    let rx = report(&out);
    assert_eq!((rx.received, rx.lost, rx.interface.as_str()), (20, 0, "eth0"));
    lab.teardown();
}

/// Parses `dropped N` from `tc -s qdisc show`.
fn tc_dropped(text: &str) -> u64 {
    let i = text.find("dropped ").unwrap_or_else(|| panic!("no drop counter in {text}"));
    text[i + 8..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn kernel_drops_are_reported_exactly() {
    if !can_run() {
        return;
    }
    let mut lab = small_lab("test tbf");
    // Only the test's datagrams may leave eth0 while it counts: with IPv6 on, the kernel's own
    // Router Solicitations (every 4 s after the link comes up) and MLD reports would go
    // through the same qdisc and could be counted as drops too (seen once: 601 for 600).
    sh(&mut lab, "a", "sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1");
    // A token bucket far below the send rate: the kernel drops most packets, in many holes.
    sh(&mut lab, "a", "tc qdisc add dev eth0 root tbf rate 400kbit burst 4000 limit 2000");
    let stats = lab.node_dir("b").join("rx.json");
    lab.spawn(
        "bg:rx",
        "b",
        &SpawnSpec {
            shell: Some(format!(
                "{EXE} recv --source 10.0.0.1 --group 232.9.9.8 --port 6002 --count 0 --stats-file {}",
                stats.display()
            )),
            ..Default::default()
        },
    )
    .unwrap();
    wait_for("the receiver", Duration::from_secs(5), || stats.exists());
    std::thread::sleep(Duration::from_millis(200));
    let sent = 600u64;
    let (code, out) = tool(
        &mut lab,
        "a",
        &format!(
            "send --source 10.0.0.1 --group 232.9.9.8 --port 6002 --interface eth0 --rate 3000 --size 300 --count {sent}"
        ),
    );
    assert_eq!(code, 0, "{out}");
    std::thread::sleep(Duration::from_millis(500));
    lab.stop_key("bg:rx", nix::sys::signal::Signal::SIGTERM, Duration::from_secs(3)).unwrap();
    let rx = report(&std::fs::read_to_string(&stats).unwrap());
    let dropped = tc_dropped(&sh(&mut lab, "a", "tc -s qdisc show dev eth0"));
    assert!(dropped > 50, "tbf dropped only {dropped}");
    assert_eq!(rx.received + dropped, sent, "received {} + dropped {dropped} != sent {sent}", rx.received);
    // What the receiver can see as lost: the holes between its first and last packet.
    let (first, last) = (rx.first_seq.unwrap(), rx.last_seq.unwrap());
    let invisible = first + (sent - 1 - last);
    assert_eq!(rx.lost, dropped - invisible, "{rx:?}");
    assert!(rx.gaps > 1);
    assert_eq!((rx.duplicates, rx.reordered), (0, 0));
    lab.teardown();
}

#[test]
fn random_drops_with_nftables() {
    if !can_run() {
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipping: nft (nftables) is not installed");
        return;
    }
    let mut lab = small_lab("test nft");
    sh(
        &mut lab,
        "b",
        "nft add table inet loss && nft add chain inet loss in '{ type filter hook input priority 0; }' && \
         nft add rule inet loss in udp dport 6003 numgen random mod 100 '<' 20 counter drop",
    );
    let stats = lab.node_dir("b").join("rx.json");
    lab.spawn(
        "bg:rx",
        "b",
        &SpawnSpec {
            shell: Some(format!(
                "{EXE} recv --source 10.0.0.1 --group 232.9.9.7 --port 6003 --count 0 --stats-file {}",
                stats.display()
            )),
            ..Default::default()
        },
    )
    .unwrap();
    wait_for("the receiver", Duration::from_secs(5), || stats.exists());
    std::thread::sleep(Duration::from_millis(200));
    let sent = 500u64;
    let (code, out) = tool(
        &mut lab,
        "a",
        &format!("send --source 10.0.0.1 --group 232.9.9.7 --port 6003 --interface eth0 --rate 2000 --count {sent}"),
    );
    assert_eq!(code, 0, "{out}");
    std::thread::sleep(Duration::from_millis(300));
    lab.stop_key("bg:rx", nix::sys::signal::Signal::SIGTERM, Duration::from_secs(3)).unwrap();
    let rx = report(&std::fs::read_to_string(&stats).unwrap());
    let listing = sh(&mut lab, "b", "nft list table inet loss");
    let i = listing.find("packets ").unwrap();
    let dropped: u64 = listing[i + 8..].split_whitespace().next().unwrap().parse().unwrap();
    assert!(dropped > 20, "{listing}");
    assert_eq!(rx.received + dropped, sent);
    let invisible = rx.first_seq.unwrap() + (sent - 1 - rx.last_seq.unwrap());
    assert_eq!(rx.lost, dropped - invisible, "{rx:?}");
    lab.teardown();
}
