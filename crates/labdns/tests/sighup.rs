//! SIGHUP reloads the zones (its own test binary: the signal goes to this whole process).

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use mcast_labdns::{LabDns, Options};
use tokio::net::UdpSocket;

const ZONE: &str = "$ORIGIN 100.51.198.in-addr.arpa.\n@ 60 IN SOA ns.example. h.example. 1 2 3 4 5\n";

async fn answers(server: std::net::SocketAddr) -> usize {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii("10.100.51.198.in-addr.arpa.").unwrap(), RecordType::Unknown(260)));
    sock.send_to(&m.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await.unwrap().unwrap();
    Message::from_vec(&buf[..n]).unwrap().answers.len()
}

#[tokio::test]
async fn sighup_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.zone");
    std::fs::write(&file, ZONE).unwrap();
    let mut options = Options::dir("127.0.0.1:0".parse().unwrap(), dir.path());
    options.watch_interval = None; // only the signal reloads
    let dns = LabDns::start(options).await.unwrap();
    let addr = dns.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(dns.serve_until(
        async {
            let _ = stop_rx.await;
        },
        true,
    ));
    tokio::time::sleep(Duration::from_millis(100)).await; // the handler is installed
    assert_eq!(answers(addr).await, 0);

    std::fs::write(&file, format!("{ZONE}10 60 IN AMTRELAY 10 0 1 203.0.113.15\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(answers(addr).await, 0, "no watcher: nothing changes without the signal");

    let status = std::process::Command::new("kill").arg("-HUP").arg(std::process::id().to_string()).status().unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    while answers(addr).await != 1 {
        assert!(t0.elapsed() < Duration::from_secs(2), "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
