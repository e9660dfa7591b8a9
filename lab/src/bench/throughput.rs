//! `gateway` and `relay`: data-path throughput, each daemon alone, in a fresh lab without FRR.
//!
//! **Gateway** (driad-ingest, as nobody with CAP_NET_ADMIN + CAP_NET_RAW, on a joinfile with
//! one (S,G) whose AMTRELAY record names relay1 with D = 1): a scripted relay in `relay1`
//! (203.0.113.15:2268, in this process) answers the Request with a Query; then AMT Multicast
//! Data comes from the relay's address and port, sent with `sendmmsg`, one datagram per
//! message (so the gateway's socket gets one datagram per buffer, the worst case: no GRO
//! coalescing), from `inet` (a transparent socket, one veth hop from `ing`'s up0, so that
//! the source costs the machine less than the whole way from relay1 would). A
//! forwarding entry (S,G) amt0 → down0 (this process's own MRT socket in `ing`, as pimwatch
//! would set it) forwards what the gateway injects into the TUN out of down0, where a
//! receiver on `acc` (UDP GRO, recvmmsg) counts the datagrams: that count is "delivered".
//!
//! **Relay** (amt-relay on relay1, as nobody with CAP_NET_RAW + CAP_NET_ADMIN): a native
//! source on `src` blasts the (S,G) with `sendmmsg` over srclan; 1 or 100 scripted gateways
//! in `inet` (203.0.113.1 on svclan, one bridge away from the relay; one UDP socket each, in
//! this process) have joined it through the relay with a proper Request/Query/Update
//! handshake and count the Multicast Data that arrives (UDP GRO).
//! Delivered = datagrams at the gateways; offered = datagrams sent × gateways.
//!
//! **Runs**: a saturation run (as fast as the source can send, `run_secs / 2`), then runs
//! of `run_secs` at a paced rate, from 95 % of the saturation's delivered rate down by a
//! fifth at a time until one loses nothing (three at most): that is the zero-loss rate. CPU
//! per daemon is utime + stime from /proc/PID/stat over the run, so it includes the kernel
//! work done in the daemon's system calls (for the gateway: the TUN write, the IP receive
//! and the forwarding of what it writes, softirq work that runs in its context); kpps per
//! core = delivered rate / that CPU. Everything shares the machine's two cores: the sources
//! and receivers here, the kernel's forwarding between namespaces and the daemon.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mcast_amt::membership::{self, Family};
use mcast_wire::SourceGroup;
use mcast_wire::amt::Repr;
use mcast_wire::igmp::RecordType;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::Signal;

use super::{BenchArgs, Figure, Goal, PORT, RELAY1, daemon_status, spawn_driad, wait_until};
use crate::lab::{Lab, LabOptions, SpawnSpec};
use crate::signals;
use crate::topology::Topology;

/// The goal: packets per second per core of the daemon, in kpps.
const GOAL_KPPS_PER_CORE: f64 = 500.0;
/// Datagrams per sendmmsg of the sources.
const SEND_BATCH: usize = 32;

// ---- process and machine counters ---------------------------------------------------------

/// utime + stime of process `pid` (all its threads), seconds.
pub(super) fn process_cpu(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    let after = stat.rfind(')').map(|i| &stat[i + 2..]).ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are 12 and 13 after the state field (index 0 here).
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// A field of /proc/PID/status in kB (VmRSS, VmHWM, ...), as MiB.
pub(super) fn process_mem_mib(pid: u32, field: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// Busy time of the whole machine, seconds (all cores).
pub(super) fn machine_busy() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        text.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let busy: u64 = v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    busy as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

// ---- sockets in namespaces ----------------------------------------------------------------

/// Runs `f` on a thread that has entered namespace `ns`; sockets made there stay in it.
pub(super) fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let file = crate::netns::open_ns(ns)?;
    std::thread::spawn(move || {
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET).context("entering the namespace")?;
        f()
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?
}

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> Result<()> {
    // SAFETY: setsockopt with a live int and its size.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (&raw const value).cast(), size_of::<libc::c_int>() as libc::socklen_t)
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()).context("setsockopt") }
}

/// A UDP socket bound to `addr` with big buffers and UDP GRO (so GSO super-packets and
/// coalesced runs arrive as one buffer with their segment size).
fn counting_socket(addr: SocketAddr) -> Result<socket2::Socket> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    let _ = set_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 32 << 20);
    set_int(sock.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)?;
    sock.bind(&addr.into()).with_context(|| format!("binding {addr}"))?;
    Ok(sock)
}

// ---- the source: paced sendmmsg ------------------------------------------------------------

/// Sends one datagram over and over from a socket, `SEND_BATCH` per `sendmmsg`, at a rate
/// set from outside (0: paused, `u64::MAX`: as fast as it can).
struct Blaster {
    rate: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Blaster {
    /// With `gso`, each message carries `GSO_SEGMENTS` copies of `payload` as one UDP
    /// super-packet (`UDP_SEGMENT`): it crosses the namespaces as one packet and reaches a
    /// receiver with UDP GRO as one buffer, as a NIC's GRO would coalesce a burst.
    fn start(sock: UdpSocket, to: SocketAddrV4, payload: Vec<u8>, gso: bool) -> Blaster {
        let rate = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, n, s) = (rate.clone(), sent.clone(), stop.clone());
        let thread = std::thread::spawn(move || blast(&sock, to, &payload, gso, &r, &n, &s));
        Blaster { rate, sent, stop, thread: Some(thread) }
    }

    fn set_rate(&self, pps: u64) {
        self.rate.store(pps, Ordering::Relaxed);
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Blaster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Datagrams per message of a GSO source.
const GSO_SEGMENTS: usize = 32;

fn blast(
    sock: &UdpSocket,
    to: SocketAddrV4,
    payload: &[u8],
    gso: bool,
    rate: &AtomicU64,
    sent: &AtomicU64,
    stop: &AtomicBool,
) {
    let segments = if gso { GSO_SEGMENTS } else { 1 };
    let buf = payload.repeat(segments);
    let mut cmsg = [0u64; 4];
    if gso {
        // SAFETY: writing one cmsghdr + u16 into an 8-aligned 32-byte buffer through the libc
        // macros (CMSG_SPACE(2) = 24 fits).
        unsafe {
            let c = cmsg.as_mut_ptr().cast::<libc::cmsghdr>();
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), payload.len() as u16);
        }
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*to.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let mut iov = libc::iovec { iov_base: buf.as_ptr().cast_mut().cast(), iov_len: buf.len() };
    // SAFETY: mmsghdr is plain data; all-zero is valid and the pointers are set below.
    let mut msgs: Vec<libc::mmsghdr> = (0..SEND_BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for m in &mut msgs {
        m.msg_hdr.msg_name = (&raw const addr).cast_mut().cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = &raw mut iov;
        m.msg_hdr.msg_iovlen = 1;
        if gso {
            m.msg_hdr.msg_control = cmsg.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is a pure size computation.
            m.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
        }
    }
    // With GSO, fewer messages per call carry the same datagrams.
    let per_call = if gso { 4 } else { SEND_BATCH };
    let (mut epoch, mut epoch_sent, mut epoch_rate) = (Instant::now(), 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let r = rate.load(Ordering::Relaxed);
        if r == 0 {
            std::thread::sleep(Duration::from_millis(1));
            epoch_rate = 0;
            continue;
        }
        if r != epoch_rate {
            (epoch, epoch_sent, epoch_rate) = (Instant::now(), 0, r);
        }
        if r != u64::MAX {
            let due = Duration::from_secs_f64(epoch_sent as f64 / r as f64);
            let elapsed = epoch.elapsed();
            if elapsed < due {
                let wait = due - elapsed;
                if wait > Duration::from_micros(300) {
                    std::thread::sleep(wait - Duration::from_micros(200));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            if elapsed > due + Duration::from_millis(50) {
                // Fell behind (the machine was busy): do not burst to catch up.
                (epoch, epoch_sent) = (Instant::now(), 0);
            }
        }
        // SAFETY: sendmmsg with SEND_BATCH initialised headers whose pointers (address,
        // iovec, payload) live for the call; the kernel only reads them.
        let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), per_call as libc::c_uint, 0) };
        if n > 0 {
            let datagrams = n as u64 * segments as u64;
            sent.fetch_add(datagrams, Ordering::Relaxed);
            epoch_sent += datagrams;
        }
    }
}

// ---- the counter: receivers with GRO -------------------------------------------------------

/// Counts what arrives: datagrams read from a set of sockets on one thread (GRO buffers
/// counted by their segments), or a namespace's IPv4 packets received.
struct Counter {
    total: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Counter {
    fn start(socks: Vec<socket2::Socket>) -> Counter {
        let total = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (total.clone(), stop.clone());
        let thread = std::thread::spawn(move || count(&socks, &t, &s));
        Counter { total, stop, thread: Some(thread) }
    }

    /// IPv4 packets received in namespace `ns` (`IpExtInNoECTPkts`: `ip_rcv` counts a GSO
    /// super-packet by its segments, before any routing decision), read every 10 ms. Counts
    /// packets arriving at a downstream node without a receiver there: nothing in the
    /// daemon's system calls pays for a socket delivery that a physical downstream link
    /// would not have.
    fn ip_received(ns: &str) -> Result<Counter> {
        let file = crate::netns::open_ns(ns)?;
        let total = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (total.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            if let Err(e) = setns(file.as_fd(), CloneFlags::CLONE_NEWNET) {
                let _ = ready_tx.send(Err(anyhow!("entering the namespace: {e}")));
                return;
            }
            let _ = ready_tx.send(in_no_ect().map(drop));
            while !s.load(Ordering::Relaxed) {
                if let Ok(v) = in_no_ect() {
                    t.store(v, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        ready_rx.recv().map_err(|_| anyhow!("counter thread died"))??;
        std::thread::sleep(Duration::from_millis(30));
        Ok(Counter { total, stop, thread: Some(thread) })
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn count(socks: &[socket2::Socket], total: &AtomicU64, stop: &AtomicBool) {
    const N: usize = 64;
    const SLOT: usize = 65_536;
    let mut bufs = vec![0u8; N * SLOT];
    let mut cmsgs = vec![[0u64; 8]; N];
    let mut iovs: Vec<libc::iovec> =
        (0..N).map(|i| libc::iovec { iov_base: bufs[i * SLOT..].as_mut_ptr().cast(), iov_len: SLOT }).collect();
    // SAFETY: mmsghdr is plain data; all-zero is valid.
    let mut msgs: Vec<libc::mmsghdr> = (0..N).map(|_| unsafe { std::mem::zeroed() }).collect();
    while !stop.load(Ordering::Relaxed) {
        let mut got = false;
        for s in socks {
            loop {
                for i in 0..N {
                    msgs[i].msg_hdr.msg_iov = &raw mut iovs[i];
                    msgs[i].msg_hdr.msg_iovlen = 1;
                    msgs[i].msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
                    msgs[i].msg_hdr.msg_controllen = size_of::<[u64; 8]>();
                }
                // SAFETY: recvmmsg with N headers pointing at live buffers of the stated sizes.
                let n = unsafe {
                    libc::recvmmsg(
                        s.as_raw_fd(),
                        msgs.as_mut_ptr(),
                        N as libc::c_uint,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if n <= 0 {
                    break;
                }
                got = true;
                let mut c = 0u64;
                for m in &msgs[..n as usize] {
                    let len = m.msg_len as usize;
                    let seg = gro_segment(&m.msg_hdr).unwrap_or(len).max(1);
                    c += len.div_ceil(seg) as u64;
                }
                total.fetch_add(c, Ordering::Relaxed);
                if (n as usize) < N {
                    break;
                }
            }
        }
        if !got {
            // Sleep rather than poll(): a sleeping reader would be woken for every datagram,
            // and that wake-up is paid by whoever delivers it (the daemon's system calls).
            // The receive buffers hold far more than a millisecond of traffic.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// `IpExt: InNoECTPkts` of this thread's network namespace.
fn in_no_ect() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat")?;
    let mut lines = text.lines().filter(|l| l.starts_with("IpExt:"));
    let (names, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "InNoECTPkts")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| anyhow!("no IpExt InNoECTPkts"))
}

/// The segment size of a GRO buffer (the `UDP_GRO` control message), if any.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    if hdr.msg_controllen < size_of::<libc::cmsghdr>() {
        return None;
    }
    // SAFETY: walking control messages the kernel wrote, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

// ---- packets --------------------------------------------------------------------------------

/// An IPv4 UDP datagram S:40000 → G:5001, TTL 16, DF set (as Linux senders send), the
/// payload filled with its offset.
fn inner_datagram(s: Ipv4Addr, g: Ipv4Addr, payload: usize) -> Vec<u8> {
    let body: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    let mut udp = vec![0u8; 8 + payload];
    mcast_wire::udp::Repr { src_port: 40000, dst_port: PORT }
        .emit_with_payload(&mut udp, &IpAddr::V4(s), &IpAddr::V4(g), &body)
        .expect("a UDP datagram");
    let mut d = mcast_wire::ipv4::Repr::new(s, g, mcast_wire::IpProtocol::UDP, 16, udp.len())
        .datagram(&udp)
        .expect("an IPv4 datagram");
    d[6] |= 0x40;
    d[10..12].copy_from_slice(&[0, 0]);
    let sum = mcast_wire::checksum::finish(mcast_wire::checksum::data(&d[..20]));
    d[10..12].copy_from_slice(&sum.to_be_bytes());
    d
}

// ---- runs -----------------------------------------------------------------------------------

/// One run's result.
#[derive(Debug, Clone, Copy)]
struct Run {
    secs: f64,
    offered: u64,
    delivered: u64,
    /// CPU of the daemon, in cores (1.0 = one core busy).
    cpu: f64,
    /// CPU of the whole machine, in cores.
    machine: f64,
}

impl Run {
    fn delivered_kpps(&self) -> f64 {
        self.delivered as f64 / self.secs / 1e3
    }
    fn offered_kpps(&self) -> f64 {
        self.offered as f64 / self.secs / 1e3
    }
    fn lost(&self) -> u64 {
        self.offered.saturating_sub(self.delivered)
    }
    fn per_core(&self) -> f64 {
        if self.cpu > 0.0 { self.delivered_kpps() / self.cpu } else { f64::NAN }
    }
    fn describe(&self) -> String {
        format!(
            "{:.0} kpps offered, {:.0} kpps delivered ({} lost, {:.3} %), daemon CPU {:.0} % of a core, machine {:.0} % of 2 cores",
            self.offered_kpps(),
            self.delivered_kpps(),
            self.lost(),
            100.0 * self.lost() as f64 / (self.offered.max(1)) as f64,
            self.cpu * 100.0,
            self.machine * 50.0
        )
    }
}

/// Runs the source at `rate` (`u64::MAX`: flat out) for `secs`; `fanout` gateways each get
/// every datagram.
fn measure(blaster: &Blaster, counter: &Counter, pid: u32, rate: u64, secs: f64, fanout: u64) -> Result<Run> {
    signals::check()?;
    blaster.set_rate(0);
    std::thread::sleep(Duration::from_millis(300));
    let (s0, r0, c0, m0, t0) = (blaster.sent(), counter.total(), process_cpu(pid)?, machine_busy(), Instant::now());
    blaster.set_rate(rate);
    std::thread::sleep(Duration::from_secs_f64(secs));
    blaster.set_rate(0);
    let (c1, m1, t1) = (process_cpu(pid)?, machine_busy(), Instant::now());
    // What is still in flight arrives; then count.
    std::thread::sleep(Duration::from_millis(400));
    let (s1, r1) = (blaster.sent(), counter.total());
    let wall = (t1 - t0).as_secs_f64();
    Ok(Run {
        secs: wall,
        offered: (s1 - s0) * fanout,
        delivered: r1 - r0,
        cpu: (c1 - c0) / wall,
        machine: (m1 - m0) / wall,
    })
}

/// The saturation run and the zero-loss search; figures named after `what`.
fn search(
    bench: &str,
    what: &str,
    args: &BenchArgs,
    blaster: &Blaster,
    counter: &Counter,
    pid: u32,
    fanout: u64,
) -> Result<Vec<Figure>> {
    let sat = measure(blaster, counter, pid, u64::MAX, (args.run_secs / 2.0).max(2.0), fanout)?;
    eprintln!("bench {bench}: {what}: saturation: {}", sat.describe());
    // Paced runs from 95 % of what got through at saturation, down a fifth at a time.
    let mut rate = sat.delivered_kpps() * 1e3 / fanout as f64 * 0.95;
    let mut zero = None;
    let mut tries = Vec::new();
    for _ in 0..3 {
        let run = measure(blaster, counter, pid, rate.max(1.0) as u64, args.run_secs, fanout)?;
        eprintln!("bench {bench}: {what}: paced at {:.0} kpps: {}", rate * fanout as f64 / 1e3, run.describe());
        tries.push(format!("{:.0}: {} lost", run.offered_kpps(), run.lost()));
        if run.lost() == 0 && run.delivered > 0 {
            zero = Some(run);
            break;
        }
        rate *= 0.8;
    }
    let goal = Some(Goal::at_least(GOAL_KPPS_PER_CORE));
    let mut out = vec![
        Figure::value(bench, &format!("{what}: saturation, delivered"), "kpps", sat.delivered_kpps(), None)
            .with_note(format!("saturation: {}", sat.describe())),
        Figure::value(bench, &format!("{what}: saturation, per core of the daemon"), "kpps", sat.per_core(), goal),
    ];
    match zero {
        Some(z) => {
            out.push(
                Figure::value(
                    bench,
                    &format!("{what}: zero loss over {:.0} s", z.secs),
                    "kpps",
                    z.delivered_kpps(),
                    None,
                )
                .with_note(format!(
                    "zero loss: {} (tries, kpps offered: {})",
                    z.describe(),
                    tries.join(", ")
                )),
            );
            out.push(Figure::value(
                bench,
                &format!("{what}: zero loss, per core of the daemon"),
                "kpps",
                z.per_core(),
                goal,
            ));
        }
        None => out.push(
            Figure::value(bench, &format!("{what}: zero loss over {:.0} s", args.run_secs), "kpps", 0.0, None)
                .with_note(format!("no paced run was free of loss (kpps offered: {})", tries.join(", "))),
        ),
    }
    Ok(out)
}

fn lab_without_frr(purpose: &str) -> Result<Lab> {
    let topo = Topology::load(None)?;
    let lab =
        Lab::up(topo, &LabOptions { purpose: purpose.into(), start_frr: false, autostart: false, bin_dir: None })?;
    // Bridged traffic through iptables (br_netfilter, when some other software loaded it)
    // would cost every packet crossing a lab bridge as much again; no real LAN has it.
    if let Some(sw) = lab.switch_ns() {
        let _ = in_ns(&sw, || {
            for f in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"] {
                let _ = std::fs::write(format!("/proc/sys/net/bridge/{f}"), "0\n");
            }
            Ok(())
        });
    }
    Ok(lab)
}

fn ip_batch(lab: &mut Lab, node: &str, name: &str, lines: &str) -> Result<()> {
    let file = lab.dir.join(format!("bench-{name}.batch"));
    std::fs::write(&file, lines)?;
    let out = lab.run(node, &format!("ip -batch {}", file.display()), Duration::from_secs(60))?;
    if !out.status.success() {
        bail!("ip -batch on {node}: {}", out.text());
    }
    Ok(())
}

fn keep(lab: &mut Lab, args: &BenchArgs, name: &str) {
    if let Some(dir) = &args.keep {
        let dest = dir.join(format!("{}-bench-{name}", crate::util::utc_stamp()));
        lab.keep_results(dest.clone());
        eprintln!("bench {name}: run directory kept in {}", dest.display());
    }
}

// ---- gateway --------------------------------------------------------------------------------

const GW_SOURCE: Ipv4Addr = Ipv4Addr::new(198, 18, 32, 1);
const GW_GROUP: Ipv4Addr = Ipv4Addr::new(232, 18, 32, 1);

/// The gateway throughput benchmark.
pub(super) fn gateway(args: &BenchArgs) -> Result<Vec<Figure>> {
    let mut lab = lab_without_frr("bench gateway")?;
    let result = gateway_in(&mut lab, args);
    keep(&mut lab, args, "gateway");
    lab.teardown();
    result
}

/// A scripted relay: answers every Request with a Query (until stopped) so the tunnel stays
/// up whatever the gateway's no-traffic check does.
fn scripted_relay(sock: UdpSocket, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
            if let Ok(Repr::Request { nonce, p_flag }) = Repr::parse_bytes(&buf[..n]) {
                let family = Family::from_p_flag(p_flag);
                let Ok(general) =
                    membership::general_query(family, Duration::from_secs(125), 2, Duration::from_secs(1))
                else {
                    continue;
                };
                let q = Repr::MembershipQuery {
                    limit: false,
                    mac: [1, 2, 3, 4, 5, 6],
                    nonce,
                    query: &general,
                    gateway: Some((from.port(), from.ip())),
                };
                if let Ok(bytes) = q.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        }
    })
}

fn gateway_in(lab: &mut Lab, args: &BenchArgs) -> Result<Vec<Figure>> {
    // The source's AMTRELAY record (relay1, D = 1) and the DNS server.
    let zones = lab.node_dir("dns").join("zones");
    std::fs::create_dir_all(&zones)?;
    let s = GW_SOURCE.octets();
    std::fs::write(
        zones.join("18.198.in-addr.arpa.zone"),
        format!(
            "$ORIGIN 18.198.in-addr.arpa.\n$TTL 3600\n@ IN SOA ns.example.net. hostmaster.example.net. ( 1 3600 600 86400 5 )\n  IN NS ns.example.net.\n{}.{} IN AMTRELAY 10 1 1 {RELAY1}\n",
            s[3], s[2]
        ),
    )?;
    lab.start("dns/dns-server")?;
    // The scripted relay in relay1: it answers the handshake; the blaster sends from its socket.
    let relay_sock = in_ns(&lab.ns_name("relay1"), || {
        UdpSocket::bind(SocketAddr::new(IpAddr::V4(RELAY1), mcast_wire::amt::PORT)).context("binding the relay socket")
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let relay_thread = scripted_relay(relay_sock.try_clone()?, stop.clone());

    // driad-ingest on a joinfile with the one (S,G).
    let joinfile = lab.node_dir("ing").join("bench.sgs");
    std::fs::write(&joinfile, format!("{GW_SOURCE},{GW_GROUP}\n"))?;
    let (pid, sock) = spawn_driad(lab, &joinfile, "info")?;
    wait_until("the tunnel to the scripted relay", Duration::from_secs(10), || {
        let st = daemon_status(&sock)?;
        Ok(st["tunnels"].as_array().is_some_and(|t| t.iter().any(|t| t["phase"] == "established")))
    })?;
    let gw_port = daemon_status(&sock)?["local"]
        .as_array()
        .and_then(|l| l.iter().filter_map(|a| a.as_str()?.parse::<SocketAddr>().ok()).find(|a| a.is_ipv4()))
        .map(|a| a.port())
        .ok_or_else(|| anyhow!("driad-ingest has no IPv4 AMT socket"))?;

    // Forwarding amt0 → down0, as pimwatch would install it.
    let _router = in_ns(&lab.ns_name("ing"), || {
        let mut r = mcast_mroute::MulticastRouter::new().map_err(|e| anyhow!("MRT_INIT: {e}"))?;
        let amt0 = nix::net::if_::if_nametoindex("amt0").context("amt0")?;
        let down0 = nix::net::if_::if_nametoindex("down0").context("down0")?;
        let iif = r.add_vif(amt0).map_err(|e| anyhow!("adding amt0: {e}"))?;
        let oif = r.add_vif(down0).map_err(|e| anyhow!("adding down0: {e}"))?;
        r.set_mfc(GW_SOURCE, GW_GROUP, iif, &[oif]).map_err(|e| anyhow!("MFC: {e}"))?;
        Ok(r)
    })?;
    // What leaves down0 arrives at acc (no FRR, nothing joined there: dropped after ip_rcv
    // has counted it).
    let counter = Counter::ip_received(&lab.ns_name("acc"))?;
    // The relay's address and port, one hop from ing.
    let source = in_ns(&lab.ns_name("inet"), || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        s.set_ip_transparent_v4(true).context("IP_TRANSPARENT")?;
        let _ = set_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 8 << 20);
        s.bind(&SocketAddr::new(IpAddr::V4(RELAY1), mcast_wire::amt::PORT).into())
            .context("binding the relay's address")?;
        Ok(UdpSocket::from(s))
    })?;

    let mut figures = Vec::new();
    for (size, gso) in [(100usize, false), (1400, false), (100, true), (1400, true)] {
        if std::env::var("TMP_CASES").is_ok_and(|c| !c.contains(&format!("{size}{}", if gso { "g" } else { "p" }))) {
            continue;
        }
        let inner = inner_datagram(GW_SOURCE, GW_GROUP, size);
        let data = Repr::MulticastData { datagram: &inner }.to_vec()?;
        let to = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), gw_port);
        let blaster = Blaster::start(source.try_clone()?, to, data, gso);
        // Check the path first: a few packets must arrive.
        let check = measure(&blaster, &counter, pid, 1000, 0.5, 1)?;
        if check.delivered == 0 {
            bail!("nothing reached the receiver through the gateway ({})", check.describe());
        }
        let what = format!("{size} B, {}", if gso { "GRO input" } else { "1 per buffer" });
        figures.extend(search("gateway", &what, args, &blaster, &counter, pid, 1)?);
    }
    let st = daemon_status(&sock)?;
    let g = &st["gateway"];
    if let Some(f) = figures.first_mut() {
        f.note.push_str(&format!(
            "; gateway totals: {} packets written to the TUN in {} writes ({} coalesced), {} TUN full",
            g["tun_written"], g["tun_writes"], g["tun_coalesced"], g["tun_full"]
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = relay_thread.join();
    lab.stop_key("bench:driad", Signal::SIGTERM, Duration::from_secs(3))?;
    Ok(figures)
}

// ---- relay ----------------------------------------------------------------------------------

/// Where the scripted gateways are: inet's address on svclan.
const GATEWAYS_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const RELAY_SOURCE: Ipv4Addr = Ipv4Addr::new(198, 18, 33, 1);
const RELAY_GROUP: Ipv4Addr = Ipv4Addr::new(232, 18, 33, 1);

/// The relay throughput benchmark: 1 gateway (100 and 1400 B), 100 gateways (100 B).
pub(super) fn relay(args: &BenchArgs) -> Result<Vec<Figure>> {
    let mut lab = lab_without_frr("bench relay")?;
    let result = relay_in(&mut lab, args);
    keep(&mut lab, args, "relay");
    lab.teardown();
    result
}

/// `n` scripted gateways in the current namespace (on `GATEWAYS_ADDR`), joined to `sg` through the relay at
/// `relay`; their sockets, ready for counting.
fn scripted_gateways(n: usize, relay: SocketAddr, sg: SourceGroup) -> Result<Vec<socket2::Socket>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    for k in 0..n {
        let sock = counting_socket(SocketAddr::new(IpAddr::V4(GATEWAYS_ADDR), 0))?;
        sock.set_read_timeout(Some(Duration::from_millis(300)))?;
        let udp: UdpSocket = sock.try_clone()?.into();
        let nonce = 0x1000 + k as u32;
        let mut joined = false;
        for _attempt in 0..5 {
            udp.send_to(&Repr::Request { nonce, p_flag: false }.to_vec()?, relay)?;
            let Ok((len, from)) = udp.recv_from(&mut buf) else { continue };
            let Ok(Repr::MembershipQuery { mac, nonce: qn, .. }) = Repr::parse_bytes(&buf[..len]) else { continue };
            if from != relay || qn != nonce {
                continue;
            }
            let records = membership::records_for(RecordType::AllowNewSources, [sg]);
            for r in membership::report_datagrams(Family::V4, &records, membership::MAX_REPORT_DATAGRAM)? {
                udp.send_to(&Repr::MembershipUpdate { mac, nonce, update: &r }.to_vec()?, relay)?;
            }
            joined = true;
            break;
        }
        if !joined {
            bail!("scripted gateway {k}: no Membership Query from the relay");
        }
        sock.set_nonblocking(true)?;
        out.push(sock);
    }
    Ok(out)
}

fn relay_in(lab: &mut Lab, args: &BenchArgs) -> Result<Vec<Figure>> {
    let bin = lab.bin_dir().to_path_buf();
    let dir = lab.node_dir("relay1");
    let argv: Vec<String> = vec![
        bin.join("amt-relay").display().to_string(),
        "--relay-address".into(),
        RELAY1.to_string(),
        "--upstream-interface".into(),
        "src0".into(),
        "--runtime-dir".into(),
        dir.join("amt-relay").display().to_string(),
        "--log-level".into(),
        "info".into(),
    ];
    let spec = SpawnSpec {
        argv,
        log: Some(dir.join("amt-relay.log")),
        user: Some("nobody".into()),
        caps: vec!["net_raw".into(), "net_admin".into()],
        ..Default::default()
    };
    let pid = lab.spawn("bench:relay", "relay1", &spec)?;
    let ctl = dir.join("amt-relay").join("amt-relay.sock");
    wait_until("amt-relay's control socket", Duration::from_secs(10), || Ok(daemon_status(&ctl).is_ok()))?;
    ip_batch(lab, "src", "relay-src", &format!("addr add {RELAY_SOURCE}/32 dev eth0\n"))?;
    let source = in_ns(&lab.ns_name("src"), || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        s.bind(&SocketAddr::new(IpAddr::V4(RELAY_SOURCE), 40000).into())?;
        s.set_multicast_if_v4(&RELAY_SOURCE)?;
        s.set_multicast_ttl_v4(16)?;
        s.set_multicast_loop_v4(false)?;
        let _ = set_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 8 << 20);
        Ok(UdpSocket::from(s))
    })?;
    let sg = SourceGroup::v4(RELAY_SOURCE, RELAY_GROUP);
    let relay = SocketAddr::new(IpAddr::V4(RELAY1), mcast_wire::amt::PORT);
    let mut figures = Vec::new();
    for (gateways, sizes) in [(1usize, &[100usize, 1400][..]), (100, &[100][..])] {
        let socks = in_ns(&lab.ns_name("inet"), move || scripted_gateways(gateways, relay, sg))?;
        let counter = Counter::start(socks);
        for &size in sizes {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let blaster = Blaster::start(source.try_clone()?, SocketAddrV4::new(RELAY_GROUP, PORT), payload, false);
            let check = measure(&blaster, &counter, pid, 1000, 0.5, gateways as u64)?;
            if check.delivered == 0 {
                bail!("nothing reached the scripted gateways through the relay ({})", check.describe());
            }
            let what = format!("{size} B, {gateways} gateway{}", if gateways == 1 { "" } else { "s" });
            figures.extend(search("relay", &what, args, &blaster, &counter, pid, gateways as u64)?);
        }
        // Leaving is left to the relay's membership timeout: the lab goes away next.
        drop(counter);
    }
    if let Ok(st) = daemon_status(&ctl)
        && let Some(f) = figures.first_mut()
    {
        f.note.push_str(&format!("; relay data-path counters: {}", st["datapath"]));
    }
    lab.stop_key("bench:relay", Signal::SIGTERM, Duration::from_secs(3))?;
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_datagrams_are_valid_and_df() {
        let d = inner_datagram(GW_SOURCE, GW_GROUP, 100);
        assert_eq!(d.len(), 128);
        assert_eq!(d[6] & 0x40, 0x40);
        assert!(mcast_wire::checksum::verifies(mcast_wire::checksum::data(&d[..20])));
        let amt = Repr::MulticastData { datagram: &d }.to_vec().unwrap();
        assert!(mcast_wire::amt::parse_data(&amt).is_some());
    }

    #[test]
    fn process_counters_read_our_own_process() {
        let me = std::process::id();
        assert!(process_cpu(me).unwrap() >= 0.0);
        assert!(process_mem_mib(me, "VmRSS").unwrap() > 0.0);
        assert!(machine_busy() > 0.0);
    }
}
