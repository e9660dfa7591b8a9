//! Raw PIM sockets (IP protocol 103) for pimwatch.
//!
//! Design: **one raw socket per interface**, bound to it with `SO_BINDTODEVICE` (by index), so
//! each socket receives and sends on exactly one link and sending needs no per-packet
//! interface selection. `IP_PKTINFO` / `IPV6_RECVPKTINFO` are enabled anyway, and the receive
//! helpers report the arrival ifindex from them.
//!
//! * IPv4 ([`open_pim_socket_v4`]): the kernel builds the IP header (source = the address
//!   given, via `IP_MULTICAST_IF`); received datagrams start with the IPv4 header, which
//!   [`recv_pim_v4`] strips with [`mcast_wire::ipv4::Packet`]. The PIM checksum is computed by
//!   the sender (over the PIM message only).
//! * IPv6 ([`open_pim_socket_v6`]): `IPV6_CHECKSUM` = 2, so the kernel fills in and verifies
//!   the checksum (with the pseudo-header) at offset 2 of the PIM message; datagrams with a
//!   bad checksum never reach the socket. The source is the interface's link-local address,
//!   which must have finished duplicate address detection.
//!
//! Both join ALL-PIM-ROUTERS on their interface: without the membership, a namespace in which
//! nothing holds `MRT_INIT` drops incoming link-local multicast before raw delivery
//! (lab-notes §5.1). Multicast loopback is off, so a socket never reads its own Hellos;
//! `IP_MULTICAST_ALL` / `IPV6_MULTICAST_ALL` are off, so a socket sees only its own joins.
//! TTL / hop limit 1 and traffic class CS6 (0xc0), like FRR.

use core::ffi::c_int;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::num::NonZeroU32;
use std::os::fd::{AsFd, AsRawFd};

use mcast_wire::ipv4;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, recvmsg};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::Family;
use crate::ffi;
use crate::sys::IPPROTO_PIM;

/// ALL-PIM-ROUTERS, IPv4.
pub const ALL_PIM_ROUTERS_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 13);
/// ALL-PIM-ROUTERS, IPv6.
pub const ALL_PIM_ROUTERS_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xd);
/// TOS / traffic class of PIM packets: CS6 (network control), as FRR sends them.
pub const PIM_TOS: u32 = 0xc0;

fn ifindex_nz(ifindex: u32) -> io::Result<NonZeroU32> {
    NonZeroU32::new(ifindex).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "ifindex 0"))
}

fn with_context(what: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Opens the IPv4 PIM socket of interface `ifindex`, whose primary address is `local`
/// (the source of everything sent). Non-blocking.
pub fn open_pim_socket_v4(ifindex: u32, local: Ipv4Addr) -> io::Result<Socket> {
    let index = ifindex_nz(ifindex)?;
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_PIM)))
        .map_err(with_context("socket(AF_INET, SOCK_RAW, 103) (needs CAP_NET_RAW)"))?;
    socket.bind_device_by_index_v4(Some(index)).map_err(with_context("SO_BINDTOIFINDEX"))?;
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: u32::from_ne_bytes(local.octets()) },
        imr_ifindex: ifindex as c_int,
    };
    ffi::setsockopt(socket.as_fd(), libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)
        .map_err(with_context("IP_MULTICAST_IF"))?;
    socket.set_multicast_ttl_v4(1).map_err(with_context("IP_MULTICAST_TTL"))?;
    socket.set_multicast_loop_v4(false).map_err(with_context("IP_MULTICAST_LOOP"))?;
    socket.set_multicast_all_v4(false).map_err(with_context("IP_MULTICAST_ALL"))?;
    socket
        .join_multicast_v4_n(&ALL_PIM_ROUTERS_V4, &InterfaceIndexOrAddress::Index(ifindex))
        .map_err(with_context("IP_ADD_MEMBERSHIP 224.0.0.13"))?;
    ffi::setsockopt(socket.as_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, &(1 as c_int))
        .map_err(with_context("IP_PKTINFO"))?;
    socket.set_tos_v4(PIM_TOS).map_err(with_context("IP_TOS"))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Opens the IPv6 PIM socket of interface `ifindex`. Non-blocking.
pub fn open_pim_socket_v6(ifindex: u32) -> io::Result<Socket> {
    let index = ifindex_nz(ifindex)?;
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(IPPROTO_PIM)))
        .map_err(with_context("socket(AF_INET6, SOCK_RAW, 103) (needs CAP_NET_RAW)"))?;
    socket.bind_device_by_index_v6(Some(index)).map_err(with_context("SO_BINDTOIFINDEX"))?;
    ffi::setsockopt(socket.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, &(2 as c_int))
        .map_err(with_context("IPV6_CHECKSUM"))?;
    socket.set_multicast_if_v6(ifindex).map_err(with_context("IPV6_MULTICAST_IF"))?;
    socket.set_multicast_hops_v6(1).map_err(with_context("IPV6_MULTICAST_HOPS"))?;
    socket.set_multicast_loop_v6(false).map_err(with_context("IPV6_MULTICAST_LOOP"))?;
    socket.set_multicast_all_v6(false).map_err(with_context("IPV6_MULTICAST_ALL"))?;
    socket.join_multicast_v6(&ALL_PIM_ROUTERS_V6, ifindex).map_err(with_context("IPV6_JOIN_GROUP ff02::d"))?;
    ffi::setsockopt(socket.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &(1 as c_int))
        .map_err(with_context("IPV6_RECVPKTINFO"))?;
    socket.set_tclass_v6(PIM_TOS).map_err(with_context("IPV6_TCLASS"))?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A received PIM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PimDatagram<'a> {
    /// The PIM message (IP header stripped).
    pub payload: &'a [u8],
    /// IP source.
    pub src: IpAddr,
    /// IP destination (224.0.0.13 / ff02::d, or a unicast address).
    pub dst: IpAddr,
    /// Arrival interface (from the packet-info control message).
    pub ifindex: u32,
}

/// Where a datagram landed in the buffer, and its addresses.
#[derive(Debug, Clone, Copy)]
struct Meta {
    start: usize,
    end: usize,
    src: IpAddr,
    dst: IpAddr,
    ifindex: u32,
}

impl Meta {
    fn datagram(self, buf: &[u8]) -> PimDatagram<'_> {
        PimDatagram { payload: &buf[self.start..self.end], src: self.src, dst: self.dst, ifindex: self.ifindex }
    }
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "PIM datagram larger than the buffer")
}

fn recv_meta_v4(socket: &Socket, buf: &mut [u8]) -> io::Result<Meta> {
    let mut cmsg = nix::cmsg_space!(libc::in_pktinfo);
    let (len, ifindex) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrIn>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(truncated());
        }
        let mut ifindex = 0;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                ifindex = info.ipi_ifindex as u32;
            }
        }
        (msg.bytes, ifindex)
    };
    let packet = ipv4::Packet::new_checked(&buf[..len])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad IPv4 header on a PIM datagram: {e}")))?;
    let start = packet.header_len();
    let end = usize::from(packet.total_len());
    Ok(Meta { start, end, src: packet.src_addr().into(), dst: packet.dst_addr().into(), ifindex })
}

fn recv_meta_v6(socket: &Socket, buf: &mut [u8]) -> io::Result<Meta> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(truncated());
    }
    let mut ifindex = 0;
    let mut dst = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::Ipv6PacketInfo(info) = c {
            ifindex = info.ipi6_ifindex;
            dst = IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr));
        }
    }
    let src = msg.address.map(|a| IpAddr::V6(a.ip())).unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    Ok(Meta { start: 0, end: msg.bytes, src, dst, ifindex })
}

/// Reads one datagram from an IPv4 PIM socket (non-blocking: `WouldBlock` when empty).
pub fn recv_pim_v4<'a>(socket: &Socket, buf: &'a mut [u8]) -> io::Result<PimDatagram<'a>> {
    let meta = recv_meta_v4(socket, buf)?;
    Ok(meta.datagram(buf))
}

/// Reads one datagram from an IPv6 PIM socket (non-blocking: `WouldBlock` when empty).
pub fn recv_pim_v6<'a>(socket: &Socket, buf: &'a mut [u8]) -> io::Result<PimDatagram<'a>> {
    let meta = recv_meta_v6(socket, buf)?;
    Ok(meta.datagram(buf))
}

/// Sends a PIM message to 224.0.0.13 (the checksum must already be filled in).
pub fn send_pim_v4(socket: &Socket, message: &[u8]) -> io::Result<usize> {
    socket.send_to(message, &SocketAddrV4::new(ALL_PIM_ROUTERS_V4, 0).into())
}

/// Sends a PIM message to a unicast IPv4 neighbour.
pub fn send_pim_v4_to(socket: &Socket, message: &[u8], dst: Ipv4Addr) -> io::Result<usize> {
    socket.send_to(message, &SocketAddrV4::new(dst, 0).into())
}

/// Sends a PIM message to ff02::d on `ifindex` (the kernel fills in the checksum).
pub fn send_pim_v6(socket: &Socket, message: &[u8], ifindex: u32) -> io::Result<usize> {
    socket.send_to(message, &SocketAddrV6::new(ALL_PIM_ROUTERS_V6, 0, 0, ifindex).into())
}

/// A PIM socket registered with tokio.
#[derive(Debug)]
pub struct PimSocket {
    fd: AsyncFd<Socket>,
    family: Family,
    ifindex: u32,
}

impl PimSocket {
    /// [`open_pim_socket_v4`], registered with the current tokio runtime.
    pub fn open_v4(ifindex: u32, local: Ipv4Addr) -> io::Result<PimSocket> {
        Self::from_socket(open_pim_socket_v4(ifindex, local)?, Family::V4, ifindex)
    }

    /// [`open_pim_socket_v6`], registered with the current tokio runtime.
    pub fn open_v6(ifindex: u32) -> io::Result<PimSocket> {
        Self::from_socket(open_pim_socket_v6(ifindex)?, Family::V6, ifindex)
    }

    /// Wraps a socket opened by one of the functions above.
    pub fn from_socket(socket: Socket, family: Family, ifindex: u32) -> io::Result<PimSocket> {
        socket.set_nonblocking(true)?;
        Ok(PimSocket { fd: crate::ffi::async_fd(socket, Interest::READABLE | Interest::WRITABLE)?, family, ifindex })
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The interface.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The socket.
    pub fn socket(&self) -> &Socket {
        self.fd.get_ref()
    }

    /// Waits for the next PIM message.
    pub async fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<PimDatagram<'a>> {
        let family = self.family;
        let meta = self
            .fd
            .async_io(Interest::READABLE, |s| match family {
                Family::V4 => recv_meta_v4(s, buf),
                Family::V6 => recv_meta_v6(s, buf),
            })
            .await?;
        Ok(meta.datagram(buf))
    }

    /// Sends to ALL-PIM-ROUTERS on this socket's interface.
    pub async fn send(&self, message: &[u8]) -> io::Result<usize> {
        let (family, ifindex) = (self.family, self.ifindex);
        self.fd
            .async_io(Interest::WRITABLE, |s| match family {
                Family::V4 => send_pim_v4(s, message),
                Family::V6 => send_pim_v6(s, message, ifindex),
            })
            .await
    }
}
