//! Anonymous network namespaces held by file descriptors, for tests that need real sockets,
//! veths and TUN devices.
//!
//! A [`Netns`] is created by a short-lived thread that `unshare(CLONE_NEWNET)`s and opens
//! `/proc/thread-self/ns/net`; the namespace lives exactly as long as that descriptor (and
//! any socket or device created in it), so nothing is named, nothing shows in `ip netns
//! list`, and a panicking test leaves nothing behind. Work inside a namespace runs on a
//! scoped thread that `setns`es into it; sockets created there keep their namespace and can
//! be used from any thread afterwards.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns, unshare};

/// Whether the test runs as root (namespaces, veths, TUN devices and MRT need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns from the calling test with a SKIP line unless it runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::netns::is_root() {
            eprintln!("SKIP {}: needs root (network namespaces, veth/TUN devices, MRT)", module_path!());
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
    /// A fresh namespace with `lo` up, IPv4 reverse-path filtering off and no IPv6 DAD (`all`
    /// and `default`, so links created later inherit them).
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

    /// Enters the namespace on the calling thread for good (for dedicated threads).
    pub fn enter(&self) {
        setns(&self.fd, CloneFlags::CLONE_NEWNET).expect("setns");
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

    /// RX packets of `dev` from /proc/net/dev.
    pub fn rx_packets(&self, dev: &str) -> u64 {
        let text = self.proc_net("dev");
        let line =
            text.lines().find(|l| l.trim_start().starts_with(&format!("{dev}:"))).expect("device in /proc/net/dev");
        let fields: Vec<&str> = line.split(':').nth(1).unwrap().split_whitespace().collect();
        fields[1].parse().unwrap()
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
