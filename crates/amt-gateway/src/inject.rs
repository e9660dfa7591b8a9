//! TUN injection: decapsulated datagrams into the native interface, coalesced where the
//! kernel can split them again.
//!
//! Writing one datagram per `write` costs a system call, an skb, a pass through the IP
//! receive path and the multicast forwarding for every packet: that, not the AMT parsing, was
//! the gateway's cost per packet. So consecutive datagrams of one flow are handed to the
//! kernel as one UDP "super-packet" (a TUN opened with `IFF_VNET_HDR`, whose
//! `struct virtio_net_hdr` says `VIRTIO_NET_HDR_GSO_UDP_L4` with the segment size, Linux
//! 6.2+): it travels the receive path and the multicast forwarding once and is split into the
//! original datagrams at the outgoing interface (or by the receiving socket), the way UDP GRO
//! coalesces on a physical NIC. One `writev` then carries up to [`MAX_SEGMENTS`] datagrams.
//!
//! **Which datagrams coalesce** (a *run*): IPv4 without options and not fragmented, or IPv6
//! with UDP as the next header; same source, destination, ports, TOS/traffic class, TTL/hop
//! limit and DF bit (IPv6: flow label); the same UDP payload size, except that a shorter one
//! may end the run; a UDP checksum that verifies (IPv4 may carry none), so a damaged datagram
//! is never "repaired" by the kernel's new checksum but written alone, unchanged, as before.
//! Runs never cross a receive batch (the iovecs point into the receive buffers) and order is
//! kept: anything that does not extend the run is written after it.
//!
//! **What the kernel changes**: each segment gets the run's first IPv4 header with the
//! Identification counting up from the first datagram's, and a freshly computed UDP checksum;
//! lengths, addresses, ports, TTL, TOS, DF and payload are the originals.
//!
//! **Size limit**: Linux's IPv4 multicast forwarding drops (counts as `FragFails`) a
//! forwarded packet longer than the outgoing MTU with DF set, *before* segmentation, even
//! when it is a GSO super-packet that would segment into datagrams that fit. So runs of
//! datagrams with DF set, and IPv6 runs (IPv6 routers never fragment), stay within the TUN's
//! MTU: 100-byte payloads still go 14 to a write, 1400-byte ones one by one. Runs without DF
//! may grow to [`MAX_SEGMENTS`] or 64 KiB. (A downstream interface with a smaller MTU than
//! the TUN drops such a run where it would have forwarded the single datagrams: keep the
//! TUN's MTU at or below the downstream MTUs, as the defaults are.)
//!
//! If the kernel refuses a super-packet (`EINVAL`: no UDP segmentation offload on TUN), the
//! run is written datagram by datagram and coalescing is switched off for good.

use std::io;
use std::os::fd::RawFd;

use mcast_wire::checksum;

/// Datagrams per super-packet at most (the kernel's UDP_MAX_SEGMENTS on older kernels).
pub const MAX_SEGMENTS: usize = 64;
/// Largest super-packet, IP header included.
const MAX_SUPER: usize = 65_535;
/// `struct virtio_net_hdr` (without `num_buffers`).
const VNET_HDR: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;
/// The kernel refused this many super-packets: coalescing is switched off.
const GSO_ERROR_LIMIT: u64 = 4;

/// Injection counters (part of the driver's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectCounters {
    /// Datagrams written (one per original datagram, coalesced or not).
    pub written: u64,
    /// `writev` calls that succeeded.
    pub writes: u64,
    /// Datagrams that went out inside a super-packet.
    pub coalesced: u64,
    /// Datagrams dropped because the TUN queue was full.
    pub full: u64,
    /// Datagrams lost to other write errors.
    pub errors: u64,
    /// Super-packets the kernel refused (then written one by one).
    pub gso_errors: u64,
}

/// What makes datagrams one flow: the header bytes that must match, per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow {
    v6: bool,
    /// IPv4: ver/IHL, TOS, flags (DF), TTL, protocol, source, destination, ports;
    /// IPv6: version/class/flow label, next header, hop limit, source, destination, ports.
    key: [u8; 44],
    /// IP + UDP header length: 28 or 48.
    header: usize,
    /// Whether the run must fit the MTU (DF set, or IPv6).
    fit_mtu: bool,
}

/// A datagram that could be part of a run: its flow and UDP payload length.
fn flow_of(d: &[u8]) -> Option<(Flow, usize)> {
    let mut key = [0u8; 44];
    match d.first()? >> 4 {
        4 => {
            // No options, not a fragment, UDP, lengths consistent.
            if d.len() < 28 || d[0] != 0x45 || d[9] != 17 || (u16::from_be_bytes([d[6], d[7]]) & 0x3fff) != 0 {
                return None;
            }
            if usize::from(u16::from_be_bytes([d[2], d[3]])) != d.len()
                || usize::from(u16::from_be_bytes([d[24], d[25]])) != d.len() - 20
            {
                return None;
            }
            key[..2].copy_from_slice(&d[..2]);
            key[2] = d[6] & 0x40; // DF
            key[3..5].copy_from_slice(&d[8..10]);
            key[5..13].copy_from_slice(&d[12..20]);
            key[13..17].copy_from_slice(&d[20..24]);
            let df = d[6] & 0x40 != 0;
            Some((Flow { v6: false, key, header: 28, fit_mtu: df }, d.len() - 28))
        }
        6 => {
            if d.len() < 48 || d[6] != 17 {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([d[4], d[5]]));
            if payload + 40 != d.len() || usize::from(u16::from_be_bytes([d[44], d[45]])) != payload {
                return None;
            }
            // A zero UDP checksum is not valid over IPv6: such a datagram goes alone.
            if d[46] == 0 && d[47] == 0 {
                return None;
            }
            key[..4].copy_from_slice(&d[..4]);
            key[4..6].copy_from_slice(&d[6..8]);
            key[6..38].copy_from_slice(&d[8..40]);
            key[38..42].copy_from_slice(&d[40..44]);
            Some((Flow { v6: true, key, header: 48, fit_mtu: true }, d.len() - 48))
        }
        _ => None,
    }
}

/// Whether the UDP checksum of a datagram accepted by [`flow_of`] verifies (IPv4: or is 0).
fn checksum_ok(d: &[u8], flow: &Flow) -> bool {
    let ip = if flow.v6 { 40 } else { 20 };
    let udp = &d[ip..];
    if !flow.v6 && udp[6] == 0 && udp[7] == 0 {
        return true;
    }
    let pseudo = pseudo_sum(d, flow.v6, udp.len());
    checksum::verifies(checksum::combine(&[pseudo, checksum::data(udp)]))
}

/// The folded pseudo-header sum of datagram `d` (its addresses) for a UDP length `len`.
fn pseudo_sum(d: &[u8], v6: bool, len: usize) -> u16 {
    if v6 {
        let src: [u8; 16] = d[8..24].try_into().unwrap_or([0; 16]);
        let dst: [u8; 16] = d[24..40].try_into().unwrap_or([0; 16]);
        checksum::pseudo_header_v6(&src.into(), &dst.into(), 17, len as u32)
    } else {
        let src: [u8; 4] = d[12..16].try_into().unwrap_or([0; 4]);
        let dst: [u8; 4] = d[16..20].try_into().unwrap_or([0; 4]);
        checksum::pseudo_header_v4(&src.into(), &dst.into(), 17, len as u16)
    }
}

/// The open run.
#[derive(Debug, Clone, Copy)]
struct Run {
    flow: Flow,
    /// Payload bytes per segment (the first datagram's).
    segment: usize,
    /// Datagrams in the run.
    count: usize,
    /// Payload bytes so far.
    payload: usize,
    /// The first datagram, written whole if the run stays a single datagram.
    first: *const u8,
    first_len: usize,
    /// Its checksum was verified (done when a second datagram joins).
    first_checked: bool,
    /// A shorter segment ended it.
    closed: bool,
}

/// Writes decapsulated datagrams into a TUN, coalescing runs; see the module documentation.
///
/// [`push`](Self::push) keeps pointers into the caller's receive buffer:
/// [`flush`](Self::flush) must be called before that buffer is written again.
#[derive(Debug)]
pub struct Injector {
    /// The TUN has `IFF_VNET_HDR` (every write starts with a virtio_net_hdr).
    vnet: bool,
    /// Runs are coalesced (vnet and the kernel takes super-packets).
    coalesce: bool,
    /// The TUN's MTU: runs that must fit it stop there.
    mtu: usize,
    run: Option<Run>,
    /// vnet header + rebuilt IP/UDP header of the current super-packet.
    head: [u8; VNET_HDR + 48],
    /// iov[0]: the head; iov[1..]: the payloads of the run.
    iov: Vec<libc::iovec>,
    pub counters: InjectCounters,
}

// SAFETY: the raw pointers in `run` and `iov` point into the receive buffer of the task that
// owns the injector; they are only dereferenced (by the kernel, in `writev`) within the
// receive call that stored them, and cleared by `flush` before that call returns.
unsafe impl Send for Injector {}

impl Injector {
    /// An injector for a TUN with (`vnet`) or without a virtio_net_hdr; coalescing needs it.
    pub fn new(vnet: bool, coalesce: bool, mtu: usize) -> Injector {
        Injector {
            vnet,
            coalesce: vnet && coalesce,
            mtu,
            run: None,
            head: [0; VNET_HDR + 48],
            iov: Vec::with_capacity(MAX_SEGMENTS + 1),
            counters: InjectCounters::default(),
        }
    }

    /// Whether runs are coalesced (false after the kernel refused super-packets).
    pub fn coalescing(&self) -> bool {
        self.coalesce
    }

    /// Adds one datagram (a whole inner IP packet) to be written to `fd`; earlier datagrams
    /// may be written now.
    pub fn push(&mut self, fd: RawFd, datagram: &[u8]) {
        if !self.coalesce {
            self.write_single(fd, datagram);
            return;
        }
        let Some((flow, payload)) = flow_of(datagram) else {
            self.flush(fd);
            self.write_single(fd, datagram);
            return;
        };
        if let Some(run) = self.run
            && self.extends(&run, &flow, payload)
        {
            let first_ok = run.first_checked || {
                // SAFETY: `first` points at `first_len` bytes of the receive buffer, still
                // unchanged (see the type's documentation).
                let first = unsafe { std::slice::from_raw_parts(run.first, run.first_len) };
                checksum_ok(first, &run.flow)
            };
            if !first_ok {
                // The first datagram goes alone, unchanged; this one starts a new run.
                self.flush(fd);
                self.start(flow, payload, datagram);
                return;
            }
            if !checksum_ok(datagram, &flow) {
                self.flush(fd);
                self.write_single(fd, datagram);
                return;
            }
            self.iov
                .push(libc::iovec { iov_base: datagram[flow.header..].as_ptr().cast_mut().cast(), iov_len: payload });
            let run = self.run.as_mut().unwrap_or_else(|| unreachable!());
            run.first_checked = true;
            run.count += 1;
            run.payload += payload;
            run.closed = payload < run.segment;
            if run.closed || run.count == MAX_SEGMENTS {
                self.flush(fd);
            }
            return;
        }
        self.flush(fd);
        self.start(flow, payload, datagram);
    }

    fn extends(&self, run: &Run, flow: &Flow, payload: usize) -> bool {
        if run.closed || run.flow != *flow || payload > run.segment || payload == 0 {
            return false;
        }
        let total = flow.header + run.payload + payload;
        total <= if flow.fit_mtu { self.mtu } else { MAX_SUPER }
    }

    fn start(&mut self, flow: Flow, payload: usize, datagram: &[u8]) {
        self.iov.clear();
        // iov[0] is the head, filled at flush time.
        self.iov.push(libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 });
        self.iov.push(libc::iovec { iov_base: datagram[flow.header..].as_ptr().cast_mut().cast(), iov_len: payload });
        self.run = Some(Run {
            flow,
            segment: payload,
            count: 1,
            payload,
            first: datagram.as_ptr(),
            first_len: datagram.len(),
            first_checked: false,
            closed: payload == 0,
        });
    }

    /// Writes the open run, if any. Must be called before the receive buffer is reused.
    pub fn flush(&mut self, fd: RawFd) {
        let Some(run) = self.run.take() else { return };
        if run.count == 1 {
            // SAFETY: as in `push`.
            let first = unsafe { std::slice::from_raw_parts(run.first, run.first_len) };
            self.write_single(fd, first);
            return;
        }
        let h = run.flow.header;
        let udp_len = 8 + run.payload;
        // SAFETY: as in `push`; the header is `h` bytes at the start of the first datagram.
        let first = unsafe { std::slice::from_raw_parts(run.first, h) };
        let head = &mut self.head[..VNET_HDR + h];
        head[VNET_HDR..].copy_from_slice(first);
        let ip = &mut head[VNET_HDR..];
        if run.flow.v6 {
            ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        } else {
            ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            ip[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum::finish(checksum::data(&ip[..20]));
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        let l3 = h - 8;
        ip[l3 + 4..l3 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, the kernel adds the rest.
        let pseudo = pseudo_sum(ip, run.flow.v6, udp_len);
        ip[l3 + 6..l3 + 8].copy_from_slice(&pseudo.to_be_bytes());
        let vnet = &mut head[..VNET_HDR];
        vnet[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        vnet[1] = VIRTIO_NET_HDR_GSO_UDP_L4;
        vnet[2..4].copy_from_slice(&(h as u16).to_ne_bytes());
        vnet[4..6].copy_from_slice(&(run.segment as u16).to_ne_bytes());
        vnet[6..8].copy_from_slice(&(l3 as u16).to_ne_bytes());
        vnet[8..10].copy_from_slice(&6u16.to_ne_bytes());
        self.iov[0] = libc::iovec { iov_base: self.head.as_mut_ptr().cast(), iov_len: VNET_HDR + h };
        match writev(fd, &self.iov) {
            Ok(()) => {
                self.counters.writes += 1;
                self.counters.written += run.count as u64;
                self.counters.coalesced += run.count as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.counters.full += run.count as u64,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // No UDP segmentation offload on this TUN: write the run one by one.
                self.counters.gso_errors += 1;
                if self.counters.gso_errors >= GSO_ERROR_LIMIT {
                    self.coalesce = false;
                    tracing::warn!(error = %e, "the TUN refuses UDP super-packets; writing one datagram per write");
                }
                self.write_run_singly(fd, &run);
            }
            Err(e) => {
                self.counters.errors += run.count as u64;
                if self.counters.errors.is_power_of_two() {
                    tracing::warn!(error = %e, "writing to the TUN failed");
                }
            }
        }
    }

    /// The datagrams of a refused run, each whole: the first one, then the others rebuilt
    /// from its header (they share it but for the lengths and checksums, which are theirs).
    fn write_run_singly(&mut self, fd: RawFd, run: &Run) {
        // SAFETY: as in `push`.
        let first = unsafe { std::slice::from_raw_parts(run.first, run.first_len) };
        self.write_single(fd, first);
        let h = run.flow.header;
        for k in 2..self.iov.len() {
            // The payload's datagram starts `h` bytes before it, in the same receive buffer.
            let payload = self.iov[k];
            // SAFETY: every payload iovec was made from `datagram[h..]` of a whole datagram
            // in the receive buffer, so the `h` bytes before it are that datagram's header.
            let datagram = unsafe {
                std::slice::from_raw_parts(payload.iov_base.cast::<u8>().cast_const().sub(h), h + payload.iov_len)
            };
            self.write_single(fd, datagram);
        }
    }

    fn write_single(&mut self, fd: RawFd, datagram: &[u8]) {
        let zero = [0u8; VNET_HDR];
        let mut iov = [
            libc::iovec { iov_base: zero.as_ptr().cast_mut().cast(), iov_len: VNET_HDR },
            libc::iovec { iov_base: datagram.as_ptr().cast_mut().cast(), iov_len: datagram.len() },
        ];
        let iov = if self.vnet { &mut iov[..] } else { &mut iov[1..] };
        match writev(fd, iov) {
            Ok(()) => {
                self.counters.writes += 1;
                self.counters.written += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.counters.full += 1,
            Err(e) => {
                self.counters.errors += 1;
                if self.counters.errors.is_power_of_two() {
                    tracing::warn!(error = %e, "writing to the TUN failed");
                }
            }
        }
    }
}

fn writev(fd: RawFd, iov: &[libc::iovec]) -> io::Result<()> {
    // SAFETY: every iovec points at live memory of its stated length (the caller's receive
    // buffer or our own head), and the kernel only reads it.
    let rc = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 UDP datagram 198.51.100.10:40000 → 232.1.1.1:5001 with `payload`, DF as given.
    fn v4(payload: &[u8], df: bool, id: u16) -> Vec<u8> {
        let src = "198.51.100.10".parse().unwrap();
        let dst = "232.1.1.1".parse().unwrap();
        let mut udp = vec![0u8; 8 + payload.len()];
        mcast_wire::udp::Repr { src_port: 40000, dst_port: 5001 }
            .emit_with_payload(&mut udp, &src, &dst, payload)
            .unwrap();
        let mut d = mcast_wire::ipv4::Repr::new(
            "198.51.100.10".parse().unwrap(),
            "232.1.1.1".parse().unwrap(),
            mcast_wire::IpProtocol::UDP,
            16,
            udp.len(),
        )
        .datagram(&udp)
        .unwrap();
        d[4..6].copy_from_slice(&id.to_be_bytes());
        d[6] = if df { 0x40 } else { 0 };
        d[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::finish(checksum::data(&d[..20]));
        d[10..12].copy_from_slice(&sum.to_be_bytes());
        d
    }

    #[test]
    fn flows_and_checksums() {
        let a = v4(&[1; 100], true, 1);
        let (flow, payload) = flow_of(&a).unwrap();
        assert_eq!(payload, 100);
        assert!(flow.fit_mtu);
        assert!(checksum_ok(&a, &flow));
        let b = v4(&[1; 100], true, 2);
        assert_eq!(flow_of(&b).unwrap().0, flow, "the Identification is not part of the flow");
        assert_ne!(flow_of(&v4(&[1; 100], false, 1)).unwrap().0, flow, "DF is");
        let mut bad = a.clone();
        bad[40] ^= 0xff;
        assert!(!checksum_ok(&bad, &flow));
        let mut fragment = a.clone();
        fragment[6] |= 0x20;
        assert!(flow_of(&fragment).is_none());
        assert!(flow_of(&a[..27]).is_none());
    }

    /// A pipe stands in for the TUN: each writev is one read on the other end.
    fn pipe() -> (std::fs::File, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 with a valid array of two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) }, 0);
        // SAFETY: fds[0] is a fresh descriptor we own.
        (unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) }, fds[1])
    }

    fn read_all(r: &mut std::fs::File) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 70_000];
        while let Ok(n) = std::io::Read::read(r, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn a_run_becomes_one_super_packet_with_a_gso_header() {
        let (mut r, w) = pipe();
        let mut inj = Injector::new(true, true, 1500);
        let ds: Vec<Vec<u8>> = (0..5).map(|i| v4(&[i as u8; 100], true, 7 + i)).collect();
        let mut buf = Vec::new();
        for d in &ds {
            buf.extend_from_slice(d);
        }
        for k in 0..5 {
            inj.push(w, &buf[k * 128..(k + 1) * 128]);
        }
        inj.flush(w);
        assert_eq!(inj.counters, InjectCounters { written: 5, writes: 1, coalesced: 5, ..Default::default() });
        let out = read_all(&mut r);
        assert_eq!(out.len(), 10 + 28 + 500);
        assert_eq!(out[..2], [VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4]);
        assert_eq!(u16::from_ne_bytes([out[4], out[5]]), 100, "segment size");
        let ip = &out[10..];
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 528);
        assert!(checksum::verifies(checksum::data(&ip[..20])));
        assert_eq!(u16::from_be_bytes([ip[24], ip[25]]), 508);
        assert_eq!(ip[28..128], [0u8; 100]);
        assert_eq!(ip[428..528], [4u8; 100]);
        // SAFETY: closing the write end we own.
        unsafe { libc::close(w) };
    }

    #[test]
    fn df_runs_fit_the_mtu_others_may_grow() {
        let (mut r, w) = pipe();
        let mut inj = Injector::new(true, true, 1500);
        let one = v4(&[3; 100], true, 1);
        for _ in 0..20 {
            inj.push(w, &one);
        }
        inj.flush(w);
        assert_eq!((inj.counters.writes, inj.counters.written), (2, 20), "14 + 6 with DF");
        let _ = read_all(&mut r);
        let mut inj = Injector::new(true, true, 1500);
        let free = v4(&[3; 100], false, 1);
        for _ in 0..20 {
            inj.push(w, &free);
        }
        inj.flush(w);
        assert_eq!((inj.counters.writes, inj.counters.written), (1, 20), "without DF");
        // SAFETY: closing the write end we own.
        unsafe { libc::close(w) };
    }

    #[test]
    fn damaged_other_and_short_datagrams_keep_their_order() {
        let (mut r, w) = pipe();
        let mut inj = Injector::new(true, true, 1500);
        let good = v4(&[5; 100], true, 1);
        let mut bad = good.clone();
        bad[60] ^= 1;
        let short = v4(&[6; 50], true, 2);
        let other = v4(&[7; 80], false, 3);
        for d in [&good, &good, &bad, &good, &good, &short, &good, &other] {
            inj.push(w, d);
        }
        inj.flush(w);
        // [good good] [bad] [good good short] [good] [other]
        assert_eq!(inj.counters.writes, 5);
        assert_eq!(inj.counters.written, 8);
        assert_eq!(inj.counters.coalesced, 5);
        let out = read_all(&mut r);
        // The damaged one is written as it came, with a zero vnet header.
        let bad_at = 10 + 28 + 200;
        assert_eq!(out[bad_at..bad_at + 10], [0u8; 10]);
        assert_eq!(out[bad_at + 10..bad_at + 10 + 128], bad[..]);
        // SAFETY: closing the write end we own.
        unsafe { libc::close(w) };
    }

    #[test]
    fn without_a_vnet_header_every_datagram_is_written_alone() {
        let (mut r, w) = pipe();
        let mut inj = Injector::new(false, true, 1500);
        let d = v4(&[1; 100], true, 1);
        inj.push(w, &d);
        inj.push(w, &d);
        inj.flush(w);
        assert_eq!((inj.counters.writes, inj.counters.coalesced), (2, 0));
        assert_eq!(read_all(&mut r), [d.clone(), d].concat());
        // SAFETY: closing the write end we own.
        unsafe { libc::close(w) };
    }
}
