//! cbacc as systemd runs it, without systemd: readiness, watchdog pings and the stopping
//! notice on a NOTIFY_SOCKET of our own, a SIGHUP reload of its configuration file (the new cap
//! in `status` and in the metrics), and a clean exit. No DORMS or DNS server is needed: the
//! input is empty.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cbacc");

/// Reads notifications until one contains `what`.
fn wait_for(socket: &UnixDatagram, what: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = text.lines().any(|l| l == what);
            seen.push(text);
            if found {
                return;
            }
        }
    }
    panic!("no {what} among {seen:?}");
}

fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn status(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) -> serde_json::Value {
    runtime.block_on(mcast_daemon::request(&dir.join("run/cbacc.sock"), "status")).unwrap()
}

fn config(dir: &std::path::Path, bandwidth: &str, port: u16) -> String {
    format!(
        "input-file = \"{in_}\"\noutput-file = \"{out}\"\nbandwidth = \"{bandwidth}\"\nnameserver = [\"127.0.0.1:9\"]\n\
         hold-down = \"150s\"\nmetrics-listen = \"127.0.0.1:{port}\"\nruntime-dir = \"{run}\"\n",
        in_ = dir.join("in.sgs").display(),
        out = dir.join("out.sgs").display(),
        run = dir.join("run").display(),
    )
}

#[test]
fn notifies_systemd_reloads_on_sighup_and_stops_cleanly() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let file = dir.path().join("cbacc.toml");
    std::fs::write(&file, config(dir.path(), "10Mbit/s", port)).unwrap();

    let mut child = Command::new(BIN)
        .args(["--config", file.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("RUST_LOG")
        .env_remove("RUNTIME_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    wait_for(&socket, "READY=1", &mut seen);
    wait_for(&socket, "WATCHDOG=1", &mut seen);
    assert_eq!(status(&runtime, dir.path())["cap_bps"], 10_000_000);
    assert!(metrics(port).contains("cbacc_cap_bits_per_second 10000000"));

    // A new cap from the file; the command line (none here) would still win.
    std::fs::write(&file, config(dir.path(), "20Mbit/s", port)).unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&runtime, dir.path())["cap_bps"] != 20_000_000 {
        assert!(Instant::now() < deadline, "the cap was not reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !metrics(port).contains("cbacc_cap_bits_per_second 20000000") {
        assert!(Instant::now() < deadline, "the metrics do not show the new cap");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A bad file is rejected; cbacc keeps its configuration and keeps running.
    std::fs::write(&file, "bandwith = \"1Gbit/s\"\n").unwrap();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&runtime, dir.path())["cap_bps"], 20_000_000);

    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    wait_for(&socket, "STOPPING=1", &mut seen);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
