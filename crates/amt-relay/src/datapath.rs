//! The data path: native multicast in, AMT Multicast Data out.
//!
//! **Receive.** An `AF_PACKET`/`SOCK_DGRAM` socket bound to the upstream interface hands over
//! complete IP datagrams, header included, which is what Multicast Data carries (RFC 7450
//! §5.1.6: the encapsulated datagram is the whole IP packet). A classic BPF filter in the
//! kernel keeps only IPv4/IPv6 datagrams to a multicast destination that were not sent by
//! this host, so unicast traffic never reaches user space. Fragments are forwarded one by one
//! (the gateway's kernel reassembles), which a raw `IPPROTO_UDP` socket could not do (it
//! hands over reassembled datagrams, and only for IPv4 with the header).
//!
//! By default the socket has a memory-mapped `PACKET_RX_RING` (TPACKET_V2): the kernel copies
//! each datagram into the next ring frame, and the relay reads frames in place, with no
//! system call and no copy; the two bytes in front of the datagram in its frame take the AMT
//! header, and the send iovecs point into the frames, which go back to the kernel once the
//! batch is sent. With `--no-rx-ring` (or if the ring cannot be set up) datagrams are read in
//! batches with `recvmmsg` into fixed slots with the same two bytes reserved. Either way: no
//! allocation per packet. Datagrams whose checksum the sender left to offload (veth, bridges:
//! the kernel flags them TP_STATUS_CSUMNOTREADY) get their UDP checksum completed, or
//! receivers would drop them.
//!
//! **Send.** Consecutive packets of one (S,G) with the same length form a run; each
//! subscriber of the (S,G) gets the run as one message: with UDP GSO (`UDP_SEGMENT`) a single
//! message whose iovecs point at the run's datagrams, which the kernel splits into one
//! datagram per packet, or one message per packet without GSO. All messages of a batch go
//! out in `sendmmsg` calls from the socket of the relay address the gateway talks to. The
//! kernel computes the outer UDP checksum (RFC 7450 §5.1.6 allows zero over IPv4 and wants
//! non-zero over IPv6; the Linux relay computes it too).
//!
//! **Overload.** Nothing is queued in user space beyond one batch: the ring (or the socket's
//! receive buffer) drops what the relay cannot take, counted from `PACKET_STATISTICS`, and a
//! full send buffer (`EAGAIN`, `ENOBUFS`) drops the rest of the batch, counted.
//!
//! **Limits.** A datagram longer than the upstream MTU is dropped and counted (`oversized`):
//! it can only be a GSO/GRO "super-packet" (a local sender using UDP GSO over a veth, or UDP
//! GRO forwarding on the NIC), whose payload is several datagrams. Super-packets shorter than
//! the MTU cannot be told apart from the headers and would be forwarded as one datagram;
//! PACKET_VNET_HDR would tell, but needs a SOCK_RAW socket.
//!
//! Everything runs on the relay's single thread, so the subscriber table is read without a
//! lock.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use mcast_amt::relay::{Relay, datagram_sg};
use mcast_wire::SourceGroup;
use mcast_wire::amt::DATA_HEADER;
use serde::Serialize;
use socket2::SockAddr;

/// Bytes per receive slot: the 2-byte AMT header, then up to a 9216-byte jumbo datagram.
const SLOT: usize = 2 + 9216;
/// The most datagrams one GSO message may carry (the kernel's UDP_MAX_SEGMENTS on older
/// kernels; newer ones allow 128).
const MAX_GSO_SEGMENTS: usize = 64;
/// The largest GSO message (the payload of one UDP "super-datagram").
const MAX_GSO_BYTES: usize = 65_000;
/// The largest segment sent with GSO: the kernel refuses segments that do not fit the path
/// MTU with their headers; 1452 + 48 (IPv6 + UDP) fits 1500. Larger packets go one by one
/// (and the kernel fragments the outer datagram if needed).
const MAX_GSO_SEGMENT: usize = 1452;
/// sendmmsg's vlen limit (UIO_MAXIOV).
const MAX_MMSG: usize = 1024;
/// Error counts after which GSO is switched off for good.
const GSO_ERROR_LIMIT: u64 = 16;

/// Data-path counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataCounters {
    /// Datagrams read from the upstream interface (after the kernel filter).
    pub received: u64,
    /// Bytes of those datagrams.
    pub received_bytes: u64,
    /// Read batches (recvmmsg calls that returned data).
    pub batches: u64,
    /// Datagrams larger than a slot, dropped.
    pub truncated: u64,
    /// Datagrams whose IP header could not be read, dropped.
    pub not_ip: u64,
    /// Datagrams longer than the upstream interface's MTU, dropped: a GSO or GRO
    /// "super-packet" (a local sender using UDP GSO over a veth, or UDP GRO forwarding on the
    /// NIC) carries several datagrams' payload under one header, which must not be forwarded
    /// as one datagram.
    pub oversized: u64,
    /// Datagrams no gateway subscribed to.
    pub unsubscribed: u64,
    /// Multicast Data datagrams sent (one per packet per gateway).
    pub sent: u64,
    /// Bytes of them (UDP payload).
    pub sent_bytes: u64,
    /// Messages handed to sendmmsg (a GSO message carries several datagrams).
    pub messages: u64,
    /// sendmmsg calls.
    pub send_calls: u64,
    /// Datagrams dropped because the send buffer was full (EAGAIN, ENOBUFS).
    pub send_dropped: u64,
    /// Datagrams that failed to send for another reason.
    pub send_errors: u64,
    /// GSO messages the kernel refused (then sent one by one).
    pub gso_errors: u64,
    /// Datagrams whose UDP checksum the relay completed (the sender left it to offload, as
    /// on veth: the kernel marks them TP_STATUS_CSUMNOTREADY).
    pub checksums_completed: u64,
    /// Subscribers whose relay address has no socket (a bug if non-zero).
    pub no_socket: u64,
    /// Datagrams the kernel dropped before the relay read them (receive buffer full).
    pub kernel_drops: u64,
}

/// A sending socket of a relay address.
#[derive(Debug, Clone, Copy)]
pub struct SendSocket {
    pub local: SocketAddr,
    pub fd: RawFd,
}

/// The upstream packet socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ring: Option<Ring>,
}

/// A `PACKET_RX_RING` (TPACKET_V2): the kernel copies each datagram into the next frame of a
/// ring shared with the relay, so reading costs no system call and no copy; the relay hands
/// the frames back once their datagrams are sent.
#[derive(Debug)]
struct Ring {
    map: *mut u8,
    size: usize,
    frame_size: usize,
    frames: usize,
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `map` is the mapping of `size` bytes made in `Ring::new` and nothing else
        // unmaps it.
        unsafe { libc::munmap(self.map.cast(), self.size) };
    }
}

/// Frame header fields of a ring frame that the data path needs.
struct FrameInfo {
    status: u32,
    len: usize,
    snaplen: usize,
    net: usize,
}

impl Ring {
    /// Sets up a ring of about `bytes` on `fd`, frames big enough for `mtu`-byte datagrams.
    fn new(fd: RawFd, bytes: usize, mtu: usize) -> io::Result<Ring> {
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &(libc::tpacket_versions::TPACKET_V2 as libc::c_int))?;
        // The datagram starts at TPACKET_ALIGN(TPACKET2_HDRLEN) + 16 = 80 bytes into a frame
        // (SOCK_DGRAM); the frame holds at least an MTU after that.
        let frame_size = (mtu + 128).next_power_of_two().max(2048);
        let block_size = frame_size.max(1 << 16);
        let blocks = (bytes / block_size).max(4);
        let frames = blocks * (block_size / frame_size);
        let req = libc::tpacket_req {
            tp_block_size: block_size as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: frame_size as u32,
            tp_frame_nr: frames as u32,
        };
        setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let size = block_size * blocks;
        // SAFETY: mapping the ring the kernel just allocated for this socket, read/write,
        // shared, at offset 0; the result is checked.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring { map: map.cast(), size, frame_size, frames })
    }

    fn frame(&self, index: usize) -> *mut u8 {
        // SAFETY: index % frames < frames, and frames * frame_size <= size (blocks hold whole
        // frames back to back).
        unsafe { self.map.add((index % self.frames) * self.frame_size) }
    }

    /// The header of frame `index`, if the kernel handed it to user space.
    fn ready(&self, index: usize) -> Option<FrameInfo> {
        let frame = self.frame(index);
        // SAFETY: every frame starts with a tpacket2_hdr (4-byte aligned: frames are at least
        // 2048-byte aligned within the page-aligned mapping); tp_status is written by the
        // kernel and read atomically with acquire ordering before the rest of the header.
        unsafe {
            let status = (*frame.cast::<std::sync::atomic::AtomicU32>()).load(std::sync::atomic::Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                return None;
            }
            let hdr = std::ptr::read(frame.cast::<libc::tpacket2_hdr>());
            Some(FrameInfo {
                status,
                len: hdr.tp_len as usize,
                snaplen: hdr.tp_snaplen as usize,
                net: usize::from(hdr.tp_net),
            })
        }
    }

    /// Gives frame `index` back to the kernel.
    fn release(&self, index: usize) {
        // SAFETY: as in `ready`; the release store publishes that we are done with the frame.
        unsafe {
            (*self.frame(index).cast::<std::sync::atomic::AtomicU32>())
                .store(libc::TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release);
        }
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Classic BPF: accept IPv4 to 224.0.0.0/4 and IPv6 to ff00::/8, not sent by this host.
/// The socket is SOCK_DGRAM, so offset 0 is the network header.
fn filter() -> [libc::sock_filter; 13] {
    const LD_W_ABS: u16 = 0x20;
    const LD_B_ABS: u16 = 0x30;
    const RSH_K: u16 = 0x74;
    const AND_K: u16 = 0x54;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let pkttype = (libc::SKF_AD_OFF + libc::SKF_AD_PKTTYPE) as u32;
    [
        /* 0 */ op(LD_W_ABS, 0, 0, pkttype),
        /* 1 */ op(JEQ_K, 10, 0, u32::from(libc::PACKET_OUTGOING)), // → 12 drop
        /* 2 */ op(LD_B_ABS, 0, 0, 0),
        /* 3 */ op(RSH_K, 0, 0, 4),
        /* 4 */ op(JEQ_K, 1, 0, 4), // → 6 IPv4
        /* 5 */ op(JEQ_K, 3, 6, 6), // → 9 IPv6, else → 12 drop
        /* 6 */ op(LD_B_ABS, 0, 0, 16), // IPv4 destination, first byte
        /* 7 */ op(AND_K, 0, 0, 0xf0),
        /* 8 */ op(JEQ_K, 2, 3, 0xe0), // → 11 accept, else → 12 drop
        /* 9 */ op(LD_B_ABS, 0, 0, 24), // IPv6 destination, first byte
        /* 10 */ op(JEQ_K, 0, 1, 0xff), // → 11 accept, else → 12 drop
        /* 11 */ op(RET_K, 0, 0, 0x0004_0000),
        /* 12 */ op(RET_K, 0, 0, 0),
    ]
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid, initialised T for the duration of the call and its size is
    // passed along; the kernel only reads it.
    let rc =
        unsafe { libc::setsockopt(fd, level, option, (value as *const T).cast(), size_of::<T>() as libc::socklen_t) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

impl PacketSocket {
    /// Opens the packet socket on `ifindex`, filter attached before it sees any packet. With
    /// `ring`, datagrams land in a PACKET_RX_RING of about `receive_buffer` bytes with frames
    /// for `mtu`-byte datagrams; otherwise they queue in the socket's receive buffer of that
    /// size and are read with recvmmsg.
    pub fn open(ifindex: u32, ifname: &str, receive_buffer: usize, ring: bool) -> io::Result<PacketSocket> {
        // Protocol 0: no packet is delivered until bind() names one, after the filter is in.
        // SAFETY: plain socket(2) call.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let program = filter();
        let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
        setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
        // Tells which datagrams carry an unfinished checksum (checksum offload on the sender's
        // side of a veth or bridge): the relay completes those before forwarding.
        setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, &1 as &libc::c_int)?;
        // Outgoing packets are dropped by the filter too; this skips them earlier (Linux 4.20+).
        let _ = setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1 as &libc::c_int);
        let ring = if ring {
            let mtu = interface_mtu(fd.as_raw_fd(), ifname)?;
            Some(Ring::new(fd.as_raw_fd(), receive_buffer, mtu)?)
        } else {
            let size = receive_buffer.min(i32::MAX as usize) as libc::c_int;
            if setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
                setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &size)?;
            }
            None
        };
        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: bind with a valid descriptor and a sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, ring })
    }

    /// Whether datagrams arrive through the RX ring.
    pub fn has_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// The MTU of interface `ifname`.
    pub fn mtu(&self, ifname: &str) -> io::Result<usize> {
        interface_mtu(self.fd.as_raw_fd(), ifname)
    }

    /// Datagrams dropped by the kernel since the last call (PACKET_STATISTICS resets).
    pub fn take_drops(&self) -> u64 {
        // SAFETY: tpacket_stats is plain data; all-zero is valid.
        let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt with a valid descriptor and an out-buffer of `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &mut len,
            )
        };
        if rc == 0 { u64::from(stats.tp_drops) } else { 0 }
    }
}

/// The MTU of interface `ifname` (SIOCGIFMTU on any socket `fd`).
fn interface_mtu(fd: RawFd, ifname: &str) -> io::Result<usize> {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if ifname.len() >= ifr.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU with a valid descriptor and an ifreq naming the interface; the
    // kernel writes the MTU into the union.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU as _, &mut ifr) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU filled the ifru_mtu member.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(usize::try_from(mtu).unwrap_or(0))
}

/// One received datagram: `data` points at its IP header, with two writable bytes in front
/// (a receive slot's reserve, or the free space before the data in a ring frame).
#[derive(Debug, Clone, Copy)]
struct RxPacket {
    data: *mut u8,
    len: usize,
    truncated: bool,
    csum_not_ready: bool,
}

/// One message to send: a run of packets to one gateway.
#[derive(Debug, Clone, Copy)]
struct Pending {
    socket: usize,
    dst: SocketAddr,
    /// First iovec of the run in `send_iov`, and how many.
    iov_start: usize,
    iov_count: usize,
    /// Segment (AMT payload) size, for GSO.
    segment: usize,
}

/// Receive slots, iovecs and message arrays, allocated once and reused for every batch.
#[derive(Debug)]
pub struct DataPath {
    batch: usize,
    slots: Box<[u8]>,
    recv_iov: Vec<libc::iovec>,
    recv_hdrs: Vec<libc::mmsghdr>,
    recv_cmsgs: Vec<[u64; 8]>,
    /// The datagrams of the current batch.
    rx: Vec<RxPacket>,
    /// Next ring frame to read.
    ring_cursor: usize,
    send_iov: Vec<libc::iovec>,
    pending: Vec<Pending>,
    names: Vec<SockAddr>,
    cmsgs: Vec<[u64; 4]>,
    send_hdrs: Vec<libc::mmsghdr>,
    gso: bool,
    /// Largest datagram forwarded: the upstream interface's MTU.
    mtu: usize,
    pub counters: DataCounters,
}

/// CMSG space for one u16 (UDP_SEGMENT) fits in [u64; 4] (32 bytes, 8-aligned).
const CMSG_BUF: usize = 32;

impl DataPath {
    pub fn new(batch: usize, gso: bool, mtu: usize) -> DataPath {
        let batch = batch.clamp(1, 1024);
        // SAFETY: iovec and mmsghdr are plain data; all-zero values (null pointers, zero
        // lengths) are valid and are overwritten before each use.
        let zero_iov: libc::iovec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        DataPath {
            batch,
            slots: vec![0u8; batch * SLOT].into_boxed_slice(),
            recv_iov: vec![zero_iov; batch],
            recv_hdrs: vec![zero_hdr; batch],
            recv_cmsgs: vec![[0u64; 8]; batch],
            rx: Vec::with_capacity(batch),
            ring_cursor: 0,
            send_iov: Vec::with_capacity(batch),
            pending: Vec::with_capacity(batch),
            names: Vec::with_capacity(batch),
            cmsgs: Vec::with_capacity(batch),
            send_hdrs: Vec::with_capacity(batch),
            gso,
            mtu,
            counters: DataCounters::default(),
        }
    }

    /// Updates the largest datagram forwarded (the upstream MTU changed).
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    /// The largest datagram forwarded.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Whether GSO is (still) in use.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Reads one batch and sends it on. Returns how many datagrams were read (0 when the
    /// socket had nothing; `WouldBlock` is mapped to `Ok(0)`).
    pub fn run_batch(&mut self, packet: &PacketSocket, relay: &mut Relay, sockets: &[SendSocket]) -> io::Result<usize> {
        let n = match &packet.ring {
            Some(ring) => self.receive_ring(ring),
            None => self.receive_mmsg(packet.as_raw_fd())?,
        };
        if n > 0 {
            self.counters.batches += 1;
            self.forward(relay, sockets);
        }
        // The sends copied the data: hand the frames back.
        if let Some(ring) = &packet.ring {
            for k in 0..n {
                ring.release(self.ring_cursor + k);
            }
            self.ring_cursor = (self.ring_cursor + n) % ring.frames;
        }
        Ok(n)
    }

    /// Takes the ready frames at the ring's cursor (at most a batch).
    fn receive_ring(&mut self, ring: &Ring) -> usize {
        self.rx.clear();
        for k in 0..self.batch.min(ring.frames) {
            let index = self.ring_cursor + k;
            let Some(info) = ring.ready(index) else { break };
            let frame = ring.frame(index);
            // The AMT header goes into the two bytes before the datagram, which lie in the
            // frame's free space after the tpacket2_hdr and sockaddr_ll (52 bytes).
            let sane = info.net >= 54 && info.net + info.snaplen <= ring.frame_size;
            self.rx.push(RxPacket {
                // SAFETY: info.net < frame_size (checked when `sane`; unused otherwise).
                data: if sane { unsafe { frame.add(info.net) } } else { frame },
                len: if sane { info.snaplen } else { 0 },
                truncated: !sane || info.snaplen < info.len,
                csum_not_ready: info.status & libc::TP_STATUS_CSUMNOTREADY != 0,
            });
        }
        self.rx.len()
    }

    fn receive_mmsg(&mut self, fd: RawFd) -> io::Result<usize> {
        let base = self.slots.as_mut_ptr();
        for i in 0..self.batch {
            // SAFETY: i * SLOT + 2 is within the slots buffer (batch * SLOT bytes).
            let data = unsafe { base.add(i * SLOT + 2) };
            self.recv_iov[i] = libc::iovec { iov_base: data.cast(), iov_len: SLOT - 2 };
            // SAFETY: msghdr is plain data; all-zero is valid.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_iov = &raw mut self.recv_iov[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.recv_cmsgs[i].as_mut_ptr().cast();
            hdr.msg_controllen = size_of::<[u64; 8]>();
            self.recv_hdrs[i] = libc::mmsghdr { msg_hdr: hdr, msg_len: 0 };
        }
        // SAFETY: recvmmsg on a valid descriptor with `batch` initialised headers whose iovecs
        // point into `slots`, which outlives the call and is not otherwise borrowed.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.recv_hdrs.as_mut_ptr(),
                self.batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.rx.clear();
        for i in 0..n as usize {
            let hdr = &self.recv_hdrs[i];
            let len = hdr.msg_len as usize;
            self.rx.push(RxPacket {
                data: self.recv_iov[i].iov_base.cast(),
                len: len.min(SLOT - 2),
                truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > SLOT - 2,
                csum_not_ready: checksum_not_ready(&hdr.msg_hdr),
            });
        }
        Ok(n as usize)
    }

    fn forward(&mut self, relay: &mut Relay, sockets: &[SendSocket]) {
        self.send_iov.clear();
        self.pending.clear();
        // The open run: (sg, iov_start, count, datagram length).
        let mut run: Option<(SourceGroup, usize, usize, usize)> = None;
        for i in 0..self.rx.len() {
            let rx = self.rx[i];
            self.counters.received += 1;
            self.counters.received_bytes += rx.len as u64;
            if rx.truncated {
                self.counters.truncated += 1;
                continue;
            }
            if rx.len > self.mtu {
                self.counters.oversized += 1;
                continue;
            }
            // SAFETY: `data` points at `len` received bytes with two writable bytes before
            // them (a slot's reserve or a ring frame's free space), owned by us until the
            // batch is released, and not aliased by any other live reference.
            let datagram = unsafe { std::slice::from_raw_parts_mut(rx.data.sub(2), rx.len + 2) };
            let Some(sg) = datagram_sg(&datagram[2..]) else {
                self.counters.not_ip += 1;
                continue;
            };
            if rx.csum_not_ready && complete_udp_checksum(&mut datagram[2..]) {
                self.counters.checksums_completed += 1;
            }
            datagram[..2].copy_from_slice(&DATA_HEADER);
            let len = rx.len;
            let segment = len + 2;
            let extend = match run {
                Some((run_sg, _, count, run_len)) => {
                    self.gso
                        && run_sg == sg
                        && run_len == len
                        && segment <= MAX_GSO_SEGMENT
                        && count < MAX_GSO_SEGMENTS
                        && (count + 1) * segment <= MAX_GSO_BYTES
                }
                None => false,
            };
            if let (false, Some(done)) = (extend, run) {
                self.close_run(done, relay, sockets);
            }
            self.send_iov.push(libc::iovec { iov_base: datagram.as_mut_ptr().cast(), iov_len: segment });
            run = match run {
                Some((run_sg, iov_start, count, run_len)) if extend => Some((run_sg, iov_start, count + 1, run_len)),
                _ => Some((sg, self.send_iov.len() - 1, 1, len)),
            };
        }
        if let Some(done) = run {
            self.close_run(done, relay, sockets);
        }
        self.flush(sockets);
    }

    fn close_run(
        &mut self,
        (sg, iov_start, count, len): (SourceGroup, usize, usize, usize),
        relay: &mut Relay,
        sockets: &[SendSocket],
    ) {
        let subscribers = relay.forward(&sg, count as u64, (count * len) as u64);
        if subscribers.is_empty() {
            self.counters.unsubscribed += count as u64;
            return;
        }
        for sub in subscribers {
            let Some(socket) = sockets.iter().position(|s| s.local == sub.local) else {
                self.counters.no_socket += count as u64;
                continue;
            };
            if count == 1 || self.gso {
                self.pending.push(Pending { socket, dst: sub.gateway, iov_start, iov_count: count, segment: len + 2 });
            } else {
                for k in 0..count {
                    self.pending.push(Pending {
                        socket,
                        dst: sub.gateway,
                        iov_start: iov_start + k,
                        iov_count: 1,
                        segment: len + 2,
                    });
                }
            }
        }
    }

    /// Sends every pending message, socket by socket, in sendmmsg calls.
    fn flush(&mut self, sockets: &[SendSocket]) {
        for (index, socket) in sockets.iter().enumerate() {
            self.names.clear();
            self.cmsgs.clear();
            self.send_hdrs.clear();
            let mut first = None;
            for (p_index, p) in self.pending.iter().enumerate() {
                if p.socket != index {
                    continue;
                }
                first.get_or_insert(p_index);
                self.names.push(SockAddr::from(p.dst));
                let mut cmsg = [0u64; 4];
                if p.iov_count > 1 {
                    write_segment_cmsg(&mut cmsg, p.segment as u16);
                }
                self.cmsgs.push(cmsg);
            }
            if first.is_none() {
                continue;
            }
            // Headers point into `names`, `cmsgs` and `send_iov`, which are not touched until
            // the sends below are done.
            for (k, p) in self.pending.iter().filter(|p| p.socket == index).enumerate() {
                // SAFETY: msghdr is plain data; all-zero is valid.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_name = self.names[k].as_ptr().cast_mut().cast();
                hdr.msg_namelen = self.names[k].len();
                hdr.msg_iov = &raw mut self.send_iov[p.iov_start];
                hdr.msg_iovlen = p.iov_count;
                if p.iov_count > 1 {
                    hdr.msg_control = self.cmsgs[k].as_mut_ptr().cast();
                    hdr.msg_controllen = cmsg_space();
                }
                self.send_hdrs.push(libc::mmsghdr { msg_hdr: hdr, msg_len: 0 });
            }
            self.send_all(socket.fd, index);
        }
    }

    fn send_all(&mut self, fd: RawFd, index: usize) {
        let total = self.send_hdrs.len();
        let mut off = 0;
        while off < total {
            let count = (total - off).min(MAX_MMSG);
            // SAFETY: sendmmsg on a valid descriptor with `count` initialised headers whose
            // pointers (names, iovecs, control buffers) are live and unchanged for the call.
            let sent = unsafe {
                libc::sendmmsg(fd, self.send_hdrs.as_mut_ptr().add(off), count as libc::c_uint, libc::MSG_DONTWAIT)
            };
            self.counters.send_calls += 1;
            if sent > 0 {
                for h in &self.send_hdrs[off..off + sent as usize] {
                    let segments = h.msg_hdr.msg_iovlen as u64;
                    self.counters.sent += segments;
                    self.counters.sent_bytes += u64::from(h.msg_len);
                    self.counters.messages += 1;
                }
                off += sent as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            let failed = &self.send_hdrs[off];
            let segments = failed.msg_hdr.msg_iovlen as u64;
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                    // The send buffer is full: drop the rest of this batch for this socket.
                    let rest: u64 = self.send_hdrs[off..].iter().map(|h| h.msg_hdr.msg_iovlen as u64).sum();
                    self.counters.send_dropped += rest;
                    return;
                }
                _ if segments > 1 => {
                    // The kernel refused the GSO message (path MTU, no GSO support): send
                    // its datagrams one by one, and stop using GSO if this keeps happening.
                    self.counters.gso_errors += 1;
                    if self.counters.gso_errors >= GSO_ERROR_LIMIT && self.gso {
                        self.gso = false;
                        tracing::warn!(error = %e, "UDP GSO refused repeatedly; sending one datagram per message");
                    }
                    self.send_one_by_one(fd, off);
                    off += 1;
                }
                _ => {
                    tracing::debug!(error = %e, socket = index, "sending Multicast Data failed");
                    self.counters.send_errors += 1;
                    off += 1;
                }
            }
        }
    }

    fn send_one_by_one(&mut self, fd: RawFd, at: usize) {
        let hdr = self.send_hdrs[at].msg_hdr;
        for k in 0..hdr.msg_iovlen {
            // SAFETY: msghdr is plain data; all-zero is valid.
            let mut single: libc::msghdr = unsafe { std::mem::zeroed() };
            single.msg_name = hdr.msg_name;
            single.msg_namelen = hdr.msg_namelen;
            // SAFETY: k < msg_iovlen, so this iovec is within the run's iovecs.
            single.msg_iov = unsafe { hdr.msg_iov.add(k) };
            single.msg_iovlen = 1;
            // SAFETY: sendmsg on a valid descriptor with pointers into live buffers.
            let rc = unsafe { libc::sendmsg(fd, &single, libc::MSG_DONTWAIT) };
            if rc >= 0 {
                self.counters.sent += 1;
                self.counters.sent_bytes += rc as u64;
                self.counters.messages += 1;
            } else {
                self.counters.send_errors += 1;
            }
        }
    }
}

/// Whether the PACKET_AUXDATA of a received datagram says its checksum is not finished.
fn checksum_not_ready(hdr: &libc::msghdr) -> bool {
    if hdr.msg_control.is_null() || hdr.msg_controllen < size_of::<libc::cmsghdr>() {
        return false;
    }
    // SAFETY: the control buffer and its length were set by us and filled by recvmmsg; the
    // CMSG_* macros stay within msg_controllen, and the auxdata is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET
                && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                && (*cmsg).cmsg_len >= libc::CMSG_LEN(size_of::<libc::tpacket_auxdata>() as u32) as usize
            {
                let aux = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::tpacket_auxdata>());
                return aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    false
}

/// Computes the UDP checksum of an unfragmented IPv4 or IPv6 (no extension header) UDP
/// datagram in place. Returns whether it did.
fn complete_udp_checksum(datagram: &mut [u8]) -> bool {
    use mcast_wire::{IpProtocol, ipv4, ipv6, udp};
    let (src, dst, offset) = match datagram.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(ip) = ipv4::Packet::new_checked(&*datagram) else { return false };
            if ip.protocol() != IpProtocol::UDP || ip.more_frags() || ip.frag_offset() != 0 {
                return false;
            }
            (ip.src_addr().into(), ip.dst_addr().into(), ip.header_len())
        }
        Some(6) => {
            let Ok(ip) = ipv6::Packet::new_checked(&*datagram) else { return false };
            if ip.next_header() != IpProtocol::UDP {
                return false;
            }
            (ip.src_addr().into(), ip.dst_addr().into(), 40)
        }
        _ => return false,
    };
    let Some(segment) = datagram.get_mut(offset..) else { return false };
    let Ok(mut packet) = udp::Packet::new_checked(segment) else { return false };
    packet.fill_checksum(&src, &dst).is_ok()
}

fn cmsg_space() -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    (unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) }) as usize
}

/// Writes a `SOL_UDP`/`UDP_SEGMENT` control message with the segment size into `buf`.
fn write_segment_cmsg(buf: &mut [u64; 4], segment: u16) {
    debug_assert!(cmsg_space() <= CMSG_BUF);
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_control = buf.as_mut_ptr().cast();
    hdr.msg_controllen = cmsg_space();
    // SAFETY: the control buffer is 8-aligned and large enough for one cmsg carrying a u16
    // (checked above), so CMSG_FIRSTHDR returns a valid pointer into it and CMSG_DATA points
    // at room for the u16.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_jumps_land_on_instructions() {
        let program = filter();
        for (i, ins) in program.iter().enumerate() {
            if ins.code == 0x15 {
                assert!(i + 1 + (ins.jt as usize) < program.len(), "jt of {i}");
                assert!(i + 1 + (ins.jf as usize) < program.len(), "jf of {i}");
            }
        }
        // Both drop paths end at the last instruction, which returns 0.
        assert_eq!(program[12].code, 0x06);
        assert_eq!(program[12].k, 0);
        assert_eq!(program[11].k, 0x0004_0000);
    }

    #[test]
    fn completes_partial_udp_checksums() {
        // IPv4 UDP 198.51.100.10:40000 → 232.1.1.1:5001 "hello", checksum field holding only
        // the pseudo-header sum (as offload leaves it).
        let udp = mcast_wire::udp::Repr { src_port: 40000, dst_port: 5001 };
        let src = "198.51.100.10".parse().unwrap();
        let dst = "232.1.1.1".parse().unwrap();
        let mut segment = vec![0u8; 8 + 5];
        udp.emit_with_payload(&mut segment, &src, &dst, b"hello").unwrap();
        let good = segment.clone();
        segment[6..8].copy_from_slice(&[0x12, 0x34]);
        let repr = mcast_wire::ipv4::Repr::new(
            "198.51.100.10".parse().unwrap(),
            "232.1.1.1".parse().unwrap(),
            mcast_wire::IpProtocol::UDP,
            16,
            segment.len(),
        );
        let mut datagram = repr.datagram(&segment).unwrap();
        assert!(complete_udp_checksum(&mut datagram));
        assert_eq!(&datagram[20..], &good[..]);
        // Not UDP, or too short: left alone.
        assert!(!complete_udp_checksum(&mut datagram[..10]));
    }

    #[test]
    fn segment_cmsg_is_well_formed() {
        let mut buf = [0u64; 4];
        write_segment_cmsg(&mut buf, 1234);
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let len = usize::from_ne_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(len, 18);
        let level = i32::from_ne_bytes(bytes[8..12].try_into().unwrap());
        let kind = i32::from_ne_bytes(bytes[12..16].try_into().unwrap());
        assert_eq!((level, kind), (libc::SOL_UDP, libc::UDP_SEGMENT));
        assert_eq!(u16::from_ne_bytes(bytes[16..18].try_into().unwrap()), 1234);
    }
}
