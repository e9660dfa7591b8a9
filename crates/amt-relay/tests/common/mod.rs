//! Harness for the relay's namespace tests: named network namespaces `amtr-<pid>-<n>-*`
//! (deleted on drop, also on panic), the relay daemon started inside one, and a scripted
//! AMT gateway built from `mcast_wire` messages.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mcast_amt::membership::{self, Family};
use mcast_wire::SourceGroup;
use mcast_wire::amt::{self, Repr};
use mcast_wire::igmp::RecordType;
use nix::sched::{CloneFlags, setns};
use socket2::{Domain, Protocol, Socket, Type};

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!("SKIP {}: needs root (creates network namespaces and veth pairs)", module_path!());
            return;
        }
    };
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(label: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("amtr-{}-{n}-{label}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns.sysctl("net/ipv4/conf/all/rp_filter", "0");
        ns.sysctl("net/ipv4/conf/default/rp_filter", "0");
        ns.sysctl("net/ipv6/conf/all/accept_dad", "0");
        ns.sysctl("net/ipv6/conf/default/accept_dad", "0");
        ns
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay in it).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).expect("open netns");
                setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    pub fn ip(&self, args: &str) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend(args.split_whitespace());
        run("ip", &full);
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.run(|| std::fs::write(format!("/proc/sys/{key}"), value))
            .unwrap_or_else(|e| panic!("[{}] sysctl {key}={value}: {e}", self.name));
    }

    pub fn proc_net(&self, file: &str) -> String {
        self.run(|| std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))).expect("read /proc/net")
    }

    /// `ip netns exec NAME PROGRAM ARGS...`
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A veth pair `a` (in `ns_a`) — `b` (in `ns_b`), both up.
pub fn veth(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) {
    ns_a.ip(&format!("link add {a} type veth peer name {b} netns {}", ns_b.name));
    ns_a.ip(&format!("link set {a} up"));
    ns_b.ip(&format!("link set {b} up"));
}

pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Turns transmit checksum offload off on `ifname` in `ns` (ETHTOOL_STXCSUM), so packets
/// captured on the peer carry the checksum the kernel computed rather than a partial one.
pub fn disable_tx_checksum_offload(ns: &Netns, ifname: &str) {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_STXCSUM: u32 = 0x17;
    ns.run(|| {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        let mut value = EthtoolValue { cmd: ETHTOOL_STXCSUM, data: 0 };
        // SAFETY: ifreq is plain data; all-zero is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = (&raw mut value).cast();
        use std::os::fd::AsRawFd;
        // SAFETY: SIOCETHTOOL with a valid socket and an ifreq pointing at a live
        // ethtool_value for the duration of the call.
        let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
        assert_eq!(rc, 0, "ETHTOOL_STXCSUM on {ifname}: {}", std::io::Error::last_os_error());
    });
}

/// The lab of the tests: `gw` —(10.99.0.0/24)— `relay` —(198.51.100.0/24)— `src`.
pub struct Lab {
    pub gw: Netns,
    pub relay: Netns,
    pub src: Netns,
}

pub const RELAY_ADDR: &str = "10.99.0.1";
pub const GW_ADDR: &str = "10.99.0.2";
pub const SOURCE: &str = "198.51.100.10";
pub const ANYCAST: &str = "192.52.193.1";

impl Lab {
    pub fn new() -> Lab {
        let lab = Lab { gw: Netns::new("gw"), relay: Netns::new("relay"), src: Netns::new("src") };
        veth(&lab.gw, "gw0", &lab.relay, "amt0");
        veth(&lab.src, "src0", &lab.relay, "up0");
        lab.gw.ip("addr add 10.99.0.2/24 dev gw0");
        lab.relay.ip("addr add 10.99.0.1/24 dev amt0");
        lab.relay.ip("addr add 198.51.100.1/24 dev up0");
        lab.src.ip("addr add 198.51.100.10/24 dev src0");
        lab.gw.ip("route add 192.52.193.0/24 via 10.99.0.1");
        lab
    }
}

/// The relay daemon, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub runtime_dir: PathBuf,
    pub log: PathBuf,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_amt-relay"))
}

impl Daemon {
    pub fn start(ns: &Netns, args: &[&str]) -> Daemon {
        Daemon::start_with(ns, args, None)
    }

    /// Starts the relay, optionally pinned to CPU 0 under `nice -n NICE` (benchmarks: a relay
    /// that gets less CPU than the sender works on full batches).
    pub fn start_with(ns: &Netns, args: &[&str], nice: Option<i32>) -> Daemon {
        let runtime_dir = std::env::temp_dir().join(format!("{}-run", ns.name));
        std::fs::create_dir_all(&runtime_dir).unwrap();
        let log = runtime_dir.join("amt-relay.log");
        let mut command = match nice {
            Some(n) => {
                // On CPU 0 with the benchmark's sender, at a lower priority.
                let mut c = ns.command(Path::new("taskset"));
                c.args(["-c", "0", "nice", "-n", &n.to_string()]).arg(binary());
                c
            }
            None => ns.command(&binary()),
        };
        let child = command
            .args(args)
            .arg("--runtime-dir")
            .arg(&runtime_dir)
            .args(["--log-level", "debug"])
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start amt-relay");
        let daemon = Daemon { child, runtime_dir, log };
        let sock = daemon.runtime_dir.join("amt-relay.sock");
        assert!(
            wait_for(Duration::from_secs(10), || sock.exists().then_some(())).is_some(),
            "amt-relay did not come up: {}",
            daemon.log_text()
        );
        daemon
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(binary())
            .args(["status", "--json", "--runtime-dir"])
            .arg(&self.runtime_dir)
            .output()
            .expect("amt-relay status");
        assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    pub fn status_text(&self) -> String {
        let out =
            Command::new(binary()).args(["status", "--runtime-dir"]).arg(&self.runtime_dir).output().expect("status");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pid(&self) -> u32 {
        // `ip netns exec` execs the program: the child's pid is the relay's.
        self.child.id()
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "amt-relay did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

/// A scripted AMT gateway: a UDP socket in the gateway namespace.
pub struct Gateway {
    pub socket: UdpSocket,
    pub relay: SocketAddr,
}

/// What a Query carried.
#[derive(Debug, Clone)]
pub struct Query {
    pub from: SocketAddr,
    pub limit: bool,
    pub mac: [u8; 6],
    pub nonce: u32,
    pub gateway: Option<(u16, IpAddr)>,
    pub query: Vec<u8>,
}

impl Gateway {
    pub fn new(ns: &Netns, relay: SocketAddr) -> Gateway {
        let socket = ns.run(|| {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
            s.set_recv_buffer_size(4 << 20).unwrap();
            s.bind(&SocketAddr::from((GW_ADDR.parse::<Ipv4Addr>().unwrap(), 0)).into()).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            UdpSocket::from(s)
        });
        Gateway { socket, relay }
    }

    pub fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Receives the next AMT message that is not Data (Data is skipped), or None on timeout.
    pub fn recv_control(&self) -> Option<(SocketAddr, Vec<u8>)> {
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) if buf.first() != Some(&6) => return Some((from, buf[..n].to_vec())),
                Ok(_) => {}
                Err(_) => {}
            }
        }
        None
    }

    pub fn discover(&self, to: SocketAddr, nonce: u32) -> (SocketAddr, IpAddr) {
        self.socket.send_to(&Repr::RelayDiscovery { nonce }.to_vec().unwrap(), to).unwrap();
        let (from, payload) = self.recv_control().expect("an Advertisement");
        match Repr::parse_bytes(&payload).unwrap() {
            Repr::RelayAdvertisement { nonce: n, relay } => {
                assert_eq!(n, nonce);
                (from, relay)
            }
            other => panic!("not an Advertisement: {other:?}"),
        }
    }

    pub fn request(&self, nonce: u32) -> Query {
        self.socket.send_to(&Repr::Request { nonce, p_flag: false }.to_vec().unwrap(), self.relay).unwrap();
        let (from, payload) = self.recv_control().expect("a Query");
        match Repr::parse_bytes(&payload).unwrap() {
            Repr::MembershipQuery { limit, mac, nonce: n, query, gateway } => {
                assert_eq!(n, nonce);
                Query { from, limit, mac, nonce, gateway, query: query.to_vec() }
            }
            other => panic!("not a Query: {other:?}"),
        }
    }

    /// The Update(s) announcing `sgs` (several when the report does not fit one datagram).
    pub fn update_payloads(mac: [u8; 6], nonce: u32, kind: RecordType, sgs: &[SourceGroup]) -> Vec<Vec<u8>> {
        let records = membership::records_for(kind, sgs.iter().copied());
        let reports = membership::report_datagrams(Family::V4, &records, membership::MAX_REPORT_DATAGRAM).unwrap();
        reports.iter().map(|r| Repr::MembershipUpdate { mac, nonce, update: r }.to_vec().unwrap()).collect()
    }

    pub fn update_payload(mac: [u8; 6], nonce: u32, kind: RecordType, sgs: &[SourceGroup]) -> Vec<u8> {
        let mut all = Gateway::update_payloads(mac, nonce, kind, sgs);
        assert_eq!(all.len(), 1, "one datagram");
        all.remove(0)
    }

    pub fn send(&self, payload: &[u8]) {
        self.socket.send_to(payload, self.relay).unwrap();
    }

    /// Sends the Update(s) for `sgs`; returns the first.
    pub fn update(&self, q: &Query, kind: RecordType, sgs: &[SourceGroup]) -> Vec<u8> {
        let payloads = Gateway::update_payloads(q.mac, q.nonce, kind, sgs);
        for p in &payloads {
            self.send(p);
        }
        payloads.into_iter().next().unwrap_or_default()
    }

    /// Collects the inner datagrams of Multicast Data for `wait`.
    pub fn collect_data(&self, wait: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.socket.recv_from(&mut buf)
                && let Some(inner) = amt::parse_data(&buf[..n])
            {
                assert_eq!(from, self.relay, "Data from the relay address");
                out.push(inner.to_vec());
            }
        }
        out
    }
}

/// A multicast sender bound to `source` in `ns` (TTL 16, egress by the source's interface).
pub fn sender(ns: &Netns, source: Ipv4Addr) -> UdpSocket {
    ns.run(|| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.bind(&SocketAddr::from((source, 40000)).into()).unwrap();
        s.set_multicast_ttl_v4(16).unwrap();
        s.set_multicast_loop_v4(false).unwrap();
        s.set_multicast_if_v4(&source).unwrap();
        s.set_send_buffer_size(4 << 20).unwrap();
        UdpSocket::from(s)
    })
}

/// Whether the kernel in `ns` holds a source-specific membership for (source, group) (from
/// /proc/net/mcfilter: addresses in network-order hex).
pub fn has_ssm_join(ns: &Netns, source: Ipv4Addr, group: Ipv4Addr) -> bool {
    let hex = |a: Ipv4Addr| format!("0x{:08x}", u32::from(a));
    ns.proc_net("mcfilter").lines().any(|l| l.contains(&hex(group)) && l.contains(&hex(source)))
}
