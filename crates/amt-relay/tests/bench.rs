//! Relay encapsulation throughput (ignored by default; root):
//!
//! ```sh
//! cargo test --release -p amt-relay --test bench -- --ignored --nocapture
//! AMT_BENCH_GATEWAYS=100 AMT_BENCH_RATE=200000 cargo test --release -p amt-relay --test bench -- --ignored --nocapture
//! ```
//!
//! A sender in the source namespace blasts 100-byte UDP payloads to (198.51.100.10,
//! 232.1.1.1) with sendmmsg (as fast as it can, or paced to AMT_BENCH_RATE packets/s) for
//! AMT_BENCH_SECS seconds (default 5); AMT_BENCH_GATEWAYS gateway endpoints (default 1) are
//! subscribed. Measured from the relay's own counters and /proc: datagrams received
//! upstream, Multicast Data datagrams sent, kernel drops, the relay's CPU time, and what the
//! gateway namespace's UDP layer got (InDatagrams + RcvbufErrors: the gateway sockets are not
//! read, so the measurement costs no receiver CPU beyond the kernel's delivery).
//!
//! On a 2-core machine the sender cannot outrun the relay, so the relay reads small batches
//! and pays per-syscall costs on few packets. AMT_BENCH_NICE=19 pins the relay and the sender
//! to CPU 0 and runs the relay at that lower priority: it then works on full batches (and the
//! kernel drops what it cannot take), which shows its per-core efficiency under saturation. The relay's CPU time
//! includes the gateway namespace's receive processing (veth delivers in the sender's
//! context), which a real NIC would not charge to the relay.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use mcast_wire::SourceGroup;
use mcast_wire::igmp::RecordType;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// UDP InDatagrams + RcvbufErrors of a namespace.
fn udp_delivered(ns: &Netns) -> u64 {
    let snmp = ns.proc_net("snmp");
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let values: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let get = |name: &str| values[header.iter().position(|h| *h == name).unwrap()].parse::<u64>().unwrap();
    get("InDatagrams") + get("RcvbufErrors")
}

fn counter(status: &serde_json::Value, key: &str) -> u64 {
    status["datapath"][key].as_u64().unwrap_or(0)
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture as root"]
fn relay_encapsulation_throughput() {
    require_root!();
    let secs = env("AMT_BENCH_SECS", 5);
    let gateways = env("AMT_BENCH_GATEWAYS", 1) as usize;
    let rate = env("AMT_BENCH_RATE", 0);
    let batch = env("AMT_BENCH_BATCH", 64).to_string();
    let lab = Lab::new();
    let mut args = vec!["--relay-address", RELAY_ADDR, "--upstream-interface", "up0", "--batch", &batch];
    if std::env::var_os("AMT_BENCH_NO_GSO").is_some() {
        args.push("--no-gso");
    }
    if std::env::var_os("AMT_BENCH_NO_RING").is_some() {
        args.push("--no-rx-ring");
    }
    let nice = std::env::var("AMT_BENCH_NICE").ok().and_then(|v| v.parse().ok());
    let daemon = Daemon::start_with(&lab.relay, &args, nice);
    let sg: SourceGroup = "198.51.100.10,232.1.1.1".parse().unwrap();
    let relay = SocketAddr::new(RELAY_ADDR.parse().unwrap(), 2268);
    let gws: Vec<Gateway> = (0..gateways)
        .map(|i| {
            let gw = Gateway::new(&lab.gw, relay);
            let q = gw.request(i as u32 + 1);
            gw.update(&q, RecordType::AllowNewSources, &[sg]);
            gw
        })
        .collect();
    assert!(
        wait_for(Duration::from_secs(5), || (daemon.status()["relay"]["channels"][0]["subscribers"] == gateways)
            .then_some(()))
        .is_some()
    );

    let source: Ipv4Addr = SOURCE.parse().unwrap();
    let sender = sender(&lab.src, source);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let thread = {
        let stop = stop.clone();
        let sent = sent.clone();
        let pin = nice.is_some();
        std::thread::spawn(move || {
            if pin {
                // SAFETY: cpu_set_t is plain data; CPU_SET and sched_setaffinity get valid
                // pointers to it.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
                }
            }
            blast(&sender, rate, &stop, &sent)
        })
    };
    // Warm up, then measure.
    std::thread::sleep(Duration::from_millis(500));
    let s0 = daemon.status();
    let c0 = cpu_ticks(daemon.pid());
    let d0 = udp_delivered(&lab.gw);
    let n0 = sent.load(Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let s1 = daemon.status();
    let c1 = cpu_ticks(daemon.pid());
    let d1 = udp_delivered(&lab.gw);
    let n1 = sent.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();

    // SAFETY: sysconf is a plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (c1 - c0) as f64 / hz / elapsed;
    let rx = (counter(&s1, "received") - counter(&s0, "received")) as f64 / elapsed;
    let tx = (counter(&s1, "sent") - counter(&s0, "sent")) as f64 / elapsed;
    let msgs = (counter(&s1, "messages") - counter(&s0, "messages")) as f64 / elapsed;
    let kdrops = counter(&s1, "kernel_drops") - counter(&s0, "kernel_drops");
    let sdrops = counter(&s1, "send_dropped") - counter(&s0, "send_dropped");
    let delivered = (d1 - d0) as f64 / elapsed;
    let offered = (n1 - n0) as f64 / elapsed;
    println!(
        "relay bench: {gateways} gateway(s), 100-byte payloads, {secs} s, batch {batch}, gso {}, rx ring {}\n  \
         offered {:.0} kpps, relay received {:.0} kpps, sent {:.0} kpps Data ({:.0} k messages/s), \
         gateway namespace got {:.0} kpps\n  kernel drops {kdrops}, send drops {sdrops}, relay CPU {:.0} % \
         → {:.0} kpps encapsulated per core",
        s1["gso"],
        s1["rx_ring"],
        offered / 1e3,
        rx / 1e3,
        tx / 1e3,
        msgs / 1e3,
        delivered / 1e3,
        cpu * 100.0,
        if cpu > 0.0 { tx / cpu / 1e3 } else { 0.0 },
    );
    drop(gws);
}

/// Sends 100-byte datagrams with sendmmsg, 64 at a time, paced to `rate` per second (0: as
/// fast as possible), until `stop`.
fn blast(socket: &std::net::UdpSocket, rate: u64, stop: &AtomicBool, sent: &AtomicU64) {
    const BATCH: usize = 64;
    // Connected: the route is looked up once, not per datagram.
    socket.connect(SocketAddr::from(("232.1.1.1".parse::<Ipv4Addr>().unwrap(), 5001))).unwrap();
    let mut payloads = vec![[0u8; 100]; BATCH];
    // SAFETY: iovec and mmsghdr are plain data; zero is valid and overwritten below.
    let mut iov: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // SAFETY: as above.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let start = Instant::now();
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if rate > 0 {
            let due = Duration::from_secs_f64(seq as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(1)));
                continue;
            }
        }
        for i in 0..BATCH {
            payloads[i][..8].copy_from_slice(&(seq + i as u64).to_be_bytes());
            iov[i] = libc::iovec { iov_base: payloads[i].as_mut_ptr().cast(), iov_len: 100 };
            hdrs[i].msg_hdr.msg_iov = &raw mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: sendmmsg on a valid socket with BATCH initialised headers pointing at live
        // buffers.
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), hdrs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            seq += n as u64;
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}
