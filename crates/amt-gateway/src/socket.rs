//! The gateway's UDP sockets: one per outer family, batched receive through quinn-udp.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use quinn_udp::{RecvMeta, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

/// Datagrams per `recvmmsg` call.
pub const BATCH: usize = quinn_udp::BATCH_SIZE;

/// Largest AMT datagram we expect: a 1500-byte inner packet plus the 2-byte Data header,
/// rounded up (control messages are smaller).
pub const MAX_DATAGRAM: usize = 2048;

/// A bound, registered UDP socket.
#[derive(Debug)]
pub struct GatewaySocket {
    pub io: tokio::net::UdpSocket,
    pub state: UdpSocketState,
    pub local: SocketAddr,
}

/// `setsockopt(fd, level, name, &value)` for an `int` option.
fn set_int_option(socket: &Socket, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: FFI call with a valid open descriptor, a pointer to a live `c_int` and its exact
    // size; the kernel only reads `optlen` bytes.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

impl GatewaySocket {
    /// Binds `addr` and registers the socket with the current tokio runtime.
    pub fn bind(addr: SocketAddr, recv_buffer: usize) -> io::Result<GatewaySocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
            // Accept IPv6 Multicast Data with a zero UDP checksum (protocols.md §A1: Linux
            // drops them otherwise).
            if let Err(e) = set_int_option(&socket, libc::IPPROTO_UDP, libc::UDP_NO_CHECK6_RX, 1) {
                tracing::debug!(error = %e, "UDP_NO_CHECK6_RX not available");
            }
        }
        // A large receive buffer absorbs bursts while the task is busy; root may exceed
        // net.core.rmem_max.
        let want = libc::c_int::try_from(recv_buffer).unwrap_or(libc::c_int::MAX);
        if set_int_option(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_err() {
            let _ = socket.set_recv_buffer_size(recv_buffer);
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let std_socket: std::net::UdpSocket = socket.into();
        let state = UdpSocketState::new((&std_socket).into())?;
        let local = std_socket.local_addr()?;
        let io = tokio::net::UdpSocket::from_std(std_socket)?;
        Ok(GatewaySocket { io, state, local })
    }

    /// One `recvmmsg` into `bufs` (split into `BATCH` slots of `slot` bytes). Returns the
    /// number of datagrams (buffers) filled, `WouldBlock` when none is waiting.
    pub fn try_recv(&self, bufs: &mut [u8], slot: usize, meta: &mut [RecvMeta; BATCH]) -> io::Result<usize> {
        self.io.try_io(Interest::READABLE, || {
            let mut chunks = bufs.chunks_mut(slot);
            let mut iovs: [IoSliceMut<'_>; BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
            self.state.recv((&self.io).into(), &mut iovs, meta)
        })
    }
}
