//! Decapsulation throughput: a sender in a "relay" namespace blasts AMT Multicast Data (inner
//! IPv4/UDP, 100-byte payload) with `sendmmsg` over a veth pair at the gateway, which writes
//! every inner packet into its TUN. Reports packets per second through the TUN and the CPU
//! time of the gateway's thread.
//!
//! Ignored by default (it saturates both cores for a few seconds). Run with
//! `cargo test --release -p mcast-amt-gateway --test bench -- --ignored --nocapture`;
//! `AMT_BENCH_SECS` (default 5), `AMT_BENCH_RATE` (packets/s, default 0 = as fast as
//! possible) and `AMT_BENCH_PAYLOAD` (default 100) tune it. `AMT_BENCH_GSO=1` sends with UDP
//! GSO (64 datagrams per `sendmsg`, as a relay using segmentation offload does): over a veth
//! the segments stay one buffer and arrive through the gateway's UDP GRO as one receive.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Got, Netns, ScriptedRelay, amt_data, veth};
use mcast_amt_gateway::{Config, GatewayHandle, spawn};
use mcast_wire::SourceGroup;
use mcast_wire::amt::Repr;

const GW: &str = "10.78.0.2:40000";
const RELAY: &str = "10.78.0.1:2268";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime + stime of thread `tid` of this process, in seconds.
fn thread_cpu(tid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are 12 and 13 after the comm field.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Busy and total jiffies of the whole machine from /proc/stat.
fn machine_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap();
    let v: Vec<u64> = text.lines().next().unwrap().split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    let idle = v[3] + v[4];
    let total: u64 = v.iter().take(8).sum();
    (total - idle, total)
}

/// Sends `copies` of `payload` to `to` in one `sendmmsg` call. Returns how many went out.
fn sendmmsg(sock: &UdpSocket, to: SocketAddr, payload: &[u8], copies: usize) -> usize {
    let SocketAddr::V4(v4) = to else { panic!("IPv4 only") };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
    // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..copies).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_name = (&raw const addr) as *mut libc::c_void;
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = &raw mut iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: FFI with a valid descriptor and `copies` initialised headers whose pointers
    // (address, iovec, payload) outlive the call; the kernel only reads the payload.
    let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), copies as libc::c_uint, 0) };
    n.max(0) as usize
}

#[test]
#[ignore = "benchmark: saturates the machine for a few seconds"]
fn decap_throughput() {
    require_root!();
    let secs = env("AMT_BENCH_SECS", 5);
    let rate = env("AMT_BENCH_RATE", 0);
    let payload_len = env("AMT_BENCH_PAYLOAD", 100) as usize;
    let (g, r) = (Arc::new(Netns::new("G")), Netns::new("R"));
    veth(&g, "g0", &r, "r0");
    g.ip("addr add 10.78.0.2/24 dev g0");
    r.ip("addr add 10.78.0.1/24 dev r0");
    let sg: SourceGroup = "198.51.100.10,232.1.1.1".parse().unwrap();
    let relay_ip = RELAY.parse::<SocketAddr>().unwrap().ip();

    // The gateway on its own thread (current-thread runtime) inside G.
    let (tx, rx) = std::sync::mpsc::channel::<(GatewayHandle, i32)>();
    let stop = Arc::new(AtomicBool::new(false));
    let gw_thread = {
        let (g, stop) = (g.clone(), stop.clone());
        std::thread::spawn(move || {
            g.enter();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut config = Config::new("amtb0");
                config.local_v4 = Some(GW.parse().unwrap());
                config.local_v6 = None;
                config.gateway.no_traffic_initial = None;
                let (handle, _events, task) = spawn(config).unwrap();
                tx.send((handle.clone(), nix::unistd::gettid().as_raw())).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                handle.shutdown().await.unwrap();
                task.await.unwrap();
            });
        })
    };
    let (handle, gw_tid) = rx.recv().unwrap();
    let ctl = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // Handshake with a scripted relay (D = 1).
    let mut relay = ScriptedRelay::bind(&r, RELAY.parse().unwrap());
    ctl.block_on(handle.add_tunnel(relay_ip, None)).unwrap();
    ctl.block_on(handle.join(relay_ip, sg)).unwrap();
    let (Got::Request { nonce, p }, gw) = relay.recv() else { panic!("expected a Request") };
    relay.query(gw, nonce, p, [1, 2, 3, 4, 5, 6]);
    assert!(matches!(relay.recv().0, Got::Update { .. }));

    let packet = amt_data(sg, 5001, 64, &vec![0x5a; payload_len]);
    assert!(Repr::parse_bytes(&packet).is_ok());
    let gso = env("AMT_BENCH_GSO", 0) == 1;
    let gso_state = quinn_udp::UdpSocketState::new((&relay.sock).into()).unwrap();
    relay.sock.set_nonblocking(false).unwrap();
    let gso_segments = gso_state.max_gso_segments().min(64);
    let gso_buf: Vec<u8> = packet.repeat(gso_segments);
    let before = ctl.block_on(handle.status()).unwrap().driver.tun_written;
    let cpu0 = thread_cpu(gw_tid);
    let (busy0, total0) = machine_cpu();
    let start = Instant::now();
    let mut sent = 0u64;
    let batch = 64;
    while start.elapsed() < Duration::from_secs(secs) {
        if rate > 0 {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            if sent >= due {
                std::hint::spin_loop();
                continue;
            }
        }
        if gso {
            let transmit = quinn_udp::Transmit {
                destination: gw,
                ecn: None,
                contents: &gso_buf,
                segment_size: Some(packet.len()),
                src_ip: None,
            };
            if gso_state.try_send((&relay.sock).into(), &transmit).is_ok() {
                sent += gso_segments as u64;
            }
        } else {
            sent += sendmmsg(&relay.sock, gw, &packet, batch) as u64;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300)); // let the gateway drain its socket
    let cpu1 = thread_cpu(gw_tid);
    let (busy1, total1) = machine_cpu();
    let status = ctl.block_on(handle.status()).unwrap();
    let written = status.driver.tun_written - before;
    let tun_rx = g.rx_packets("amtb0");
    stop.store(true, Ordering::Relaxed);
    gw_thread.join().unwrap();

    let gw_cpu = cpu1 - cpu0;
    let kpps = written as f64 / elapsed / 1000.0;
    let machine = (busy1 - busy0) as f64 / (total1 - total0) as f64 * 2.0;
    println!(
        "AMT gateway decap+inject ({}): payload {payload_len} B, {secs} s, offered {:.0} kpps, \
         through the TUN {kpps:.0} kpps ({written} packets, TUN rx {tun_rx}), loss {:.2} %, \
         gateway thread CPU {:.2} s = {:.0} % of a core → {:.0} kpps per core of gateway CPU; \
         machine busy {:.2} of 2 cores; batches {} datagrams {} tun_full {}",
        if gso { "sender GSO, gateway GRO" } else { "sender sendmmsg, one datagram per buffer" },
        sent as f64 / elapsed / 1000.0,
        (sent.saturating_sub(written)) as f64 * 100.0 / sent.max(1) as f64,
        gw_cpu,
        gw_cpu / elapsed * 100.0,
        written as f64 / gw_cpu.max(1e-9) / 1000.0,
        machine,
        status.driver.batches,
        status.driver.datagrams,
        status.driver.tun_full,
    );
    assert!(written > 0);
}
