//! Test harness: anonymous network namespaces held by file descriptors.
//!
//! A [`Netns`] is created by a short-lived thread that `unshare(CLONE_NEWNET)`s and opens
//! `/proc/thread-self/ns/net`; the namespace lives exactly as long as that descriptor (and
//! any socket or device created in it), so nothing is named, nothing shows in `ip netns
//! list`, and a panicking test leaves nothing behind. Work inside a namespace runs on a
//! scoped thread that `setns`es into it; sockets created there keep their namespace and can
//! be used from any thread afterwards.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns, unshare};
use socket2::{Domain, Protocol, Socket, Type};

/// Whether the tests can create namespaces and take MRT_INIT.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns early (passing) with a clear message when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!(
                "SKIP {}: needs root (creates network namespaces, veth/TUN devices and takes MRT_INIT)",
                module_path!()
            );
            return;
        }
    };
}

/// An anonymous network namespace.
#[derive(Debug)]
pub struct Netns {
    fd: File,
    label: &'static str,
}

impl Netns {
    /// A fresh namespace with `lo` up and IPv4 reverse-path filtering off (`all` and
    /// `default`, so links created later inherit 0).
    pub fn new(label: &'static str) -> Netns {
        let fd = std::thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            File::open("/proc/thread-self/ns/net").expect("open netns")
        })
        .join()
        .expect("netns thread");
        let ns = Netns { fd, label };
        ns.ip("link set lo up");
        ns.sysctl("net/ipv4/conf/all/rp_filter", "0");
        ns.sysctl("net/ipv4/conf/default/rp_filter", "0");
        // No DAD delays for the addresses the tests add.
        ns.sysctl("net/ipv6/conf/all/accept_dad", "0");
        ns.sysctl("net/ipv6/conf/default/accept_dad", "0");
        ns
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&self.fd, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// A path other processes can open to reach this namespace (for `ip ... netns PATH`).
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    /// Runs `ip ARGS` inside the namespace; panics on failure.
    pub fn ip(&self, args: &str) {
        let out = self.run(|| Command::new("ip").args(args.split_whitespace()).output().expect("run ip"));
        assert!(out.status.success(), "[{}] ip {args}: {}", self.label, String::from_utf8_lossy(&out.stderr));
    }

    /// Writes /proc/sys/KEY in the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run(|| std::fs::write(format!("/proc/sys/{key}"), value))
            .unwrap_or_else(|e| panic!("[{}] sysctl {key}={value}: {e}", self.label));
    }

    /// Reads /proc/thread-self/net/FILE (the namespace's view of /proc/net).
    pub fn proc_net(&self, file: &str) -> String {
        self.run(|| std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))).expect("read /proc/net")
    }

    /// The ifindex of `name` in the namespace.
    pub fn ifindex(&self, name: &str) -> u32 {
        self.run(|| nix::net::if_::if_nametoindex(name)).unwrap_or_else(|e| panic!("ifindex of {name}: {e}"))
    }
}

/// A veth pair `a` (in `ns_a`) — `b` (in `ns_b`), both up.
pub fn veth(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) {
    ns_a.ip(&format!("link add {a} type veth peer name {b} netns {}", ns_b.path()));
    ns_a.ip(&format!("link set {a} up"));
    ns_b.ip(&format!("link set {b} up"));
}

/// Polls `f` until it returns `Some` or `timeout` passes.
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

/// A UDP receiver in `ns`, bound to `port`, joined to (source, group) on `ifaddr`'s interface.
pub fn ssm_receiver_v4(ns: &Netns, source: Ipv4Addr, group: Ipv4Addr, ifaddr: Ipv4Addr, port: u16) -> UdpSocket {
    ns.run(|| {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()).unwrap();
        s.join_ssm_v4(&source, &group, &ifaddr).unwrap();
        s.set_multicast_all_v4(false).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        UdpSocket::from(s)
    })
}

/// A UDP sender in `ns` with source `src`, egress by `src`'s interface, TTL 16.
pub fn sender_v4(ns: &Netns, src: Ipv4Addr) -> UdpSocket {
    ns.run(|| {
        let s = UdpSocket::bind((src, 0)).unwrap();
        s.set_multicast_ttl_v4(16).unwrap();
        s.set_multicast_loop_v4(false).unwrap();
        Socket::from(s.try_clone().unwrap()).set_multicast_if_v4(&src).unwrap();
        s
    })
}

/// Receives datagrams for up to `timeout`, returning the first whose payload is `expect`.
pub fn recv_expect(sock: &UdpSocket, expect: &[u8], timeout: Duration) -> Option<IpAddr> {
    let mut buf = [0u8; 2048];
    wait_for(timeout, || match sock.recv_from(&mut buf) {
        Ok((n, from)) if &buf[..n] == expect => Some(from.ip()),
        _ => None,
    })
}

/// Sends `payload` to (group, port) every 100 ms until `received` returns true or 3 s pass.
/// Returns whether it was received. Repeating covers the first packets that race setup.
pub fn send_until(sender: &UdpSocket, to: SocketAddr, payload: &[u8], mut received: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        sender.send_to(payload, to).unwrap();
        if received() {
            return true;
        }
    }
    false
}

/// Parses /proc/net/ip_mr_cache lines into (group, origin, iif, packets, oifs text).
pub fn ip_mr_cache(text: &str) -> Vec<(Ipv4Addr, Ipv4Addr, i32, u64, String)> {
    let hex = |h: &str| Ipv4Addr::from(u32::from_str_radix(h, 16).unwrap().to_ne_bytes());
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some((hex(f[0]), hex(f[1]), f[2].parse().ok()?, f[3].parse().ok()?, f[6..].join(" ")))
        })
        .collect()
}
