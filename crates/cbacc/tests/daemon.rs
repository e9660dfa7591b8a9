//! The cbacc binary end to end on 127.0.0.1: the lab DORMS server (HTTPS, generated CA) and
//! the lab DNS server, an input joinfile, the output joinfile, `cbacc status` and `cbacc info`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcast_labdns::LabDns;
use mcast_labdorms::{LabCa, LabDorms, Options};

const BIN: &str = env!("CARGO_BIN_EXE_cbacc");

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The worked example of original-system.md §4.5: A 4 Mbit/s, B 6 Mbit/s, C 3 Mbit/s.
const FLOWS: &str = r#"
[[flows]]
source = "198.51.100.10"
group = "232.1.1.1"
max_speed = 4000

[[flows]]
source = "198.51.100.10"
group = "232.1.1.2"
max_speed = 6000

[[flows]]
source = "198.51.100.11"
group = "232.2.2.2"
max_speed = 3000

[[flows]]
source = "198.51.100.11"
group = "232.9.9.9"
max_speed = 1000
fault = "slow"
delay = "30s"
"#;

struct Setup {
    dir: tempfile::TempDir,
    dorms: LabDorms,
    dns: LabDns,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = LabCa::load_or_create(&dir.path().join("ca")).unwrap();
    let identity = ca.issue(&["dorms.example.net".to_owned()]).unwrap();
    write(&dir.path().join("flows.toml"), FLOWS);
    let dorms = LabDorms::start(Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        flows_file: dir.path().join("flows.toml"),
        tls: identity.server_config().unwrap(),
        watch_interval: Duration::from_millis(50),
    })
    .await
    .unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    let port = dorms.local_addr().port();
    write(
        &zones.join("100.51.198.in-addr.arpa.zone"),
        &format!(
            "$ORIGIN 100.51.198.in-addr.arpa.\n$TTL 30\n@ IN SOA ns.example.net. h.example.net. ( 1 3600 600 86400 5 )\n  IN NS ns.example.net.\n\
             _dorms._tcp.10 IN SRV 0 0 {port} dorms.example.net.\n_dorms._tcp.11 IN SRV 0 0 {port} dorms.example.net.\n"
        ),
    );
    write(
        &zones.join("example.net.zone"),
        "$ORIGIN example.net.\n$TTL 30\n@ IN SOA ns h ( 1 3600 600 86400 5 )\n  IN NS ns\ndorms IN A 127.0.0.1\n",
    );
    let dns = LabDns::start(mcast_labdns::Options::dir("127.0.0.1:0".parse().unwrap(), &zones)).await.unwrap();
    Setup { dir, dorms, dns }
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cbacc(&self, extra: &[&str]) -> Daemon {
        let log = std::fs::File::create(self.path("cbacc.log")).unwrap();
        let mut args: Vec<String> = [
            "--input-file",
            self.path("in.sgs").to_str().unwrap(),
            "--output-file",
            self.path("out.sgs").to_str().unwrap(),
            "--bandwidth",
            "10Mibit/s",
            "--hold-down",
            "1s",
            "--hold-down-jitter",
            "200ms",
            "--nameserver",
            &self.dns.local_addr().to_string(),
            "--ca-file",
            self.path("ca/ca.pem").to_str().unwrap(),
            "--runtime-dir",
            self.path("run").to_str().unwrap(),
            "--log-level",
            "info,cbacc=debug",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let child =
            Command::new(BIN).args(&args).stdin(Stdio::null()).stderr(log).stdout(Stdio::null()).spawn().unwrap();
        Daemon { child, log: self.path("cbacc.log") }
    }

    fn output(&self) -> Option<String> {
        std::fs::read_to_string(self.path("out.sgs")).ok()
    }

    async fn wait_output(&self, want: &str, within: Duration, daemon: &Daemon) {
        let deadline = Instant::now() + within;
        while self.output().as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "output {:?}, wanted {want:?}\n{}",
                self.output(),
                std::fs::read_to_string(&daemon.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["status", "--json", "--runtime-dir", self.path("run").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admits_what_fits_holds_down_the_rest_and_follows_rate_changes() {
    let s = setup().await;
    let a = "198.51.100.10,232.1.1.1";
    let b = "198.51.100.10,232.1.1.2";
    let c = "198.51.100.11,232.2.2.2";
    write(&s.path("in.sgs"), &format!("# pimwatch\n{a}\n{b}\n"));
    let daemon = s.cbacc(&["--refresh", "1s"]);
    s.wait_output(&format!("{a}\n{b}\n"), Duration::from_secs(10), &daemon).await;

    // C joins: 13 Mbit/s > 10 Mibit/s; the smaller flows are kept, B is blocked.
    let joined = Instant::now();
    write(&s.path("in.sgs"), &format!("{a}\n{b}\n{c}\n"));
    s.wait_output(&format!("{a}\n{c}\n"), Duration::from_secs(5), &daemon).await;
    let status = s.status();
    let flow = |sg: &str| status["flows"].as_array().unwrap().iter().find(|f| f["sg"] == sg).unwrap().clone();
    assert_eq!(flow(b)["reason"], "over-cap");
    assert!(flow(b)["hold_down_remaining_secs"].as_f64().unwrap() > 0.5);
    assert_eq!(flow(a)["origin"]["kind"], "dorms");
    assert_eq!(status["admitted_bps"], 7_000_000);
    assert_eq!(status["cap_bps"], 10_485_760);

    // C leaves: B comes back only when its hold-down has expired (by the timer: no input
    // change is needed after C's leave).
    write(&s.path("in.sgs"), &format!("{a}\n{b}\n"));
    s.wait_output(&format!("{a}\n"), Duration::from_secs(5), &daemon).await;
    s.wait_output(&format!("{a}\n{b}\n"), Duration::from_secs(5), &daemon).await;
    let elapsed = joined.elapsed();
    assert!(elapsed >= Duration::from_secs(1), "readmitted after {elapsed:?}, before the hold-down ended");

    // B's advertised rate doubles: picked up at the next refresh (1 s): 16 Mbit/s do not fit
    // with A, and A, the smaller, is kept.
    write(&s.path("flows.toml"), &FLOWS.replace("max_speed = 6000", "max_speed = 12000"));
    s.wait_output(&format!("{a}\n"), Duration::from_secs(5), &daemon).await;
    // The log line follows the write.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut log = std::fs::read_to_string(&daemon.log).unwrap();
    while log.matches("output written").count() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        log = std::fs::read_to_string(&daemon.log).unwrap();
    }
    assert!(log.contains("rate changed"), "{log}");
    assert!(log.contains("flow blocked: does not fit under the cap"), "{log}");

    // The output was only ever written when it changed.
    let writes = log.matches("output written").count();
    assert_eq!(writes, 5, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_dorms_server_means_the_default_and_a_population_steers_the_choice() {
    let mut s = setup().await;
    s.dorms.stop().await;
    let a = "198.51.100.10,232.1.1.1";
    let b = "198.51.100.10,232.1.1.2";
    let c = "198.51.100.11,232.2.2.2";
    write(&s.path("in.sgs"), &format!("{a}\n{b},7\n{c}\nbogus line\n"));
    // Without a default every flow is blocked ("no metadata, no default")...
    let daemon = s.cbacc(&["--metadata-wait", "500ms", "--connect-timeout", "300ms"]);
    s.wait_output("", Duration::from_secs(10), &daemon).await;
    let status = s.status();
    assert!(status["flows"].as_array().unwrap().iter().all(|f| f["reason"] == "no-rate"), "{status:#}");
    drop(daemon);
    // ...with --default 4Mbit/s two fit: B first (population 7), then one more.
    std::fs::remove_dir_all(s.path("run")).ok();
    let daemon = s.cbacc(&["--default", "4Mbit/s", "--metadata-wait", "500ms", "--connect-timeout", "300ms"]);
    s.wait_output(&format!("{a}\n{b}\n"), Duration::from_secs(10), &daemon).await;
    let status = s.status();
    let b_status = status["flows"].as_array().unwrap().iter().find(|f| f["sg"] == b).unwrap().clone();
    assert_eq!(b_status["origin"]["kind"], "default");
    assert_eq!(b_status["population"], 7);
    assert_eq!(b_status["rank"], 0);
    assert!(b_status["last_problem"].as_str().unwrap().contains("onnect"), "{b_status:#}");
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(log.contains("malformed line skipped: line 4"), "{log}");
}

/// A DORMS server that never answers for one flow holds up neither the other flows' decisions
/// nor that flow's own for longer than --metadata-wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lookup_does_not_stall_other_decisions() {
    let s = setup().await;
    let a = "198.51.100.10,232.1.1.1";
    let slow = "198.51.100.11,232.9.9.9";
    write(&s.path("in.sgs"), &format!("{a}\n"));
    let daemon = s.cbacc(&["--http-timeout", "60s", "--metadata-wait", "3s", "--default", "1Mbit/s"]);
    s.wait_output(&format!("{a}\n"), Duration::from_secs(10), &daemon).await;
    let c = "198.51.100.11,232.2.2.2";
    // The slow flow and a normal one join together: the normal one is admitted at once...
    let t0 = Instant::now();
    write(&s.path("in.sgs"), &format!("{a}\n{c}\n{slow}\n"));
    s.wait_output(&format!("{a}\n{c}\n"), Duration::from_secs(5), &daemon).await;
    assert!(t0.elapsed() < Duration::from_millis(2500), "{:?}", t0.elapsed());
    let status = s.status();
    let flow = status["flows"].as_array().unwrap().iter().find(|f| f["sg"] == slow).unwrap().clone();
    assert_eq!(flow["reason"], "pending", "{flow:#}");
    // ...and the slow one, after --metadata-wait, gets the default while its lookup goes on.
    s.wait_output(&format!("{a}\n{c}\n{slow}\n"), Duration::from_secs(8), &daemon).await;
    let elapsed = t0.elapsed();
    assert!(elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(8), "{elapsed:?}");
    let status = s.status();
    let flow = status["flows"].as_array().unwrap().iter().find(|f| f["sg"] == slow).unwrap().clone();
    assert_eq!(flow["origin"]["kind"], "default", "{flow:#}");
    assert_eq!(flow["last_problem"], "first DORMS lookup still running");
    assert_eq!(status["lookups_running"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_shows_each_step() {
    let s = setup().await;
    let out = Command::new(BIN)
        .args([
            "info",
            "198.51.100.10",
            "232.1.1.2",
            "--nameserver",
            &s.dns.local_addr().to_string(),
            "--ca-file",
            s.path("ca/ca.pem").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SRV _dorms._tcp.10.100.51.198.in-addr.arpa.: 0 0"), "{text}");
    assert!(text.contains("RESTCONF root https://dorms.example.net:"), "{text}");
    assert!(text.contains("rate: 6Mbit/s (6000000 bit/s)"), "{text}");
    let out = Command::new(BIN)
        .args(["info", "198.51.100.12", "232.1.1.1", "--json", "--nameserver", &s.dns.local_addr().to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"]["kind"], "not-found", "{v:#}");
}
