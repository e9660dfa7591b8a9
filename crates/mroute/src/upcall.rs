//! Kernel upcalls (cache misses and wrong-interface reports) read from the mroute socket.

use core::mem::{offset_of, size_of};
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use socket2::Socket;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::sys::{self, igmpmsg, mrt6msg};
use crate::{Family, Vif};

/// What the kernel reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpcallKind {
    /// Data arrived on a VIF and no MFC entry matches (`IGMPMSG_NOCACHE` / `MRT6MSG_NOCACHE`).
    /// The kernel queues a few packets in an unresolved entry for about 10 s.
    NoCache,
    /// Data arrived on a VIF other than the matching entry's parent (`IGMPMSG_WRONGVIF` /
    /// `MRT6MSG_WRONGMIF`); only sent after `MRT_ASSERT` was enabled.
    WrongVif,
    /// A whole packet for PIM Register processing (`IGMPMSG_WHOLEPKT` / `MRT6MSG_WHOLEPKT`).
    WholePacket,
    /// A whole packet that arrived on the wrong VIF (`IGMPMSG_WRVIFWHOLE` / `MRT6MSG_WRMIFWHOLE`).
    WrongVifWholePacket,
    /// A message type this crate does not know.
    Unknown(u8),
}

impl UpcallKind {
    fn from_code(code: u8) -> UpcallKind {
        match code {
            sys::IGMPMSG_NOCACHE => UpcallKind::NoCache,
            sys::IGMPMSG_WRONGVIF => UpcallKind::WrongVif,
            sys::IGMPMSG_WHOLEPKT => UpcallKind::WholePacket,
            sys::IGMPMSG_WRVIFWHOLE => UpcallKind::WrongVifWholePacket,
            other => UpcallKind::Unknown(other),
        }
    }

    /// Whether the kernel appends the whole data packet.
    pub fn carries_packet(self) -> bool {
        matches!(self, UpcallKind::WholePacket | UpcallKind::WrongVifWholePacket)
    }
}

/// One upcall from the kernel's multicast routing code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upcall {
    /// What happened.
    pub kind: UpcallKind,
    /// The VIF (MIF) the data arrived on.
    pub vif: Vif,
    /// Source address of the data.
    pub source: IpAddr,
    /// Destination (group) address of the data.
    pub group: IpAddr,
    /// For the whole-packet kinds, the data packet itself (starting at its IP header).
    pub packet: Option<Vec<u8>>,
}

// The parsers below read the fields at the offsets of the declared structs.
const IGMPMSG_LEN: usize = size_of::<igmpmsg>();
const MRT6MSG_LEN: usize = size_of::<mrt6msg>();

fn ipv4_at(buf: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3])
}

fn ipv6_at(buf: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&buf[at..at + 16]);
    Ipv6Addr::from(octets)
}

/// Parses what a read from the IPv4 mroute socket returned. `None` means the datagram is not
/// an upcall (an ordinary IGMP packet: its byte 9, the IPv4 protocol field, is 2 where an
/// upcall has `im_mbz` = 0) or is too short; such datagrams are to be discarded.
pub fn parse_igmpmsg(buf: &[u8]) -> Option<Upcall> {
    if buf.len() < IGMPMSG_LEN || buf[offset_of!(igmpmsg, im_mbz)] != 0 {
        return None;
    }
    let kind = UpcallKind::from_code(buf[offset_of!(igmpmsg, im_msgtype)]);
    let vif = u16::from(buf[offset_of!(igmpmsg, im_vif)]) | u16::from(buf[offset_of!(igmpmsg, im_vif_hi)]) << 8;
    let packet = kind.carries_packet().then(|| buf[IGMPMSG_LEN..].to_vec());
    Some(Upcall {
        kind,
        vif: Vif(vif),
        source: ipv4_at(buf, offset_of!(igmpmsg, im_src)).into(),
        group: ipv4_at(buf, offset_of!(igmpmsg, im_dst)).into(),
        packet,
    })
}

/// Parses what a read from the IPv6 mroute socket returned. `None` means an ordinary ICMPv6
/// message (its type byte is never 0, where an upcall has `im6_mbz` = 0) or a short read.
pub fn parse_mrt6msg(buf: &[u8]) -> Option<Upcall> {
    if buf.len() < MRT6MSG_LEN || buf[offset_of!(mrt6msg, im6_mbz)] != 0 {
        return None;
    }
    let kind = UpcallKind::from_code(buf[offset_of!(mrt6msg, im6_msgtype)]);
    let at = offset_of!(mrt6msg, im6_mif);
    let mif = u16::from_ne_bytes([buf[at], buf[at + 1]]);
    let packet = kind.carries_packet().then(|| buf[MRT6MSG_LEN..].to_vec());
    Some(Upcall {
        kind,
        vif: Vif(mif),
        source: ipv6_at(buf, offset_of!(mrt6msg, im6_src)).into(),
        group: ipv6_at(buf, offset_of!(mrt6msg, im6_dst)).into(),
        packet,
    })
}

/// Largest datagram the mroute socket can deliver (a whole-packet upcall of a 64 KiB packet).
pub(crate) const RECV_BUF_LEN: usize = 65_536 + IGMPMSG_LEN + MRT6MSG_LEN;

/// Reads datagrams from a non-blocking mroute socket until an upcall or `WouldBlock`.
/// Non-upcall datagrams are counted into `discarded` and dropped.
pub(crate) fn read_upcall(
    socket: &Socket,
    family: Family,
    buf: &mut Vec<u8>,
    discarded: &mut u64,
) -> io::Result<Option<Upcall>> {
    buf.resize(RECV_BUF_LEN, 0);
    loop {
        let n = match (&*socket).read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let data = &buf[..n];
        let parsed = match family {
            Family::V4 => parse_igmpmsg(data),
            Family::V6 => parse_mrt6msg(data),
        };
        match parsed {
            Some(upcall) => return Ok(Some(upcall)),
            None => {
                *discarded += 1;
                tracing::trace!(len = n, %family, "discarded a non-upcall datagram on the mroute socket");
            }
        }
    }
}

/// An async reader of upcalls, on a duplicate of a router's socket (see
/// [`crate::MulticastRouter::upcall_reader`]). It drains and discards ordinary IGMP / ICMPv6
/// datagrams so that the socket's receive buffer never fills.
///
/// Dropping the reader does not end multicast routing; dropping the router does (it sends
/// `MRT_DONE` explicitly, so a live reader does not keep the kernel state alive).
#[derive(Debug)]
pub struct UpcallReader {
    fd: AsyncFd<Socket>,
    family: Family,
    buf: Vec<u8>,
    discarded: u64,
}

impl UpcallReader {
    /// Registers `socket` (non-blocking) with the current tokio runtime.
    pub(crate) fn new(socket: Socket, family: Family) -> io::Result<UpcallReader> {
        socket.set_nonblocking(true)?;
        Ok(UpcallReader {
            fd: crate::ffi::async_fd(socket, Interest::READABLE)?,
            family,
            buf: Vec::new(),
            discarded: 0,
        })
    }

    /// Waits for the next upcall. Cancel-safe.
    pub async fn recv(&mut self) -> io::Result<Upcall> {
        loop {
            let mut guard = self.fd.readable().await?;
            match read_upcall(guard.get_inner(), self.family, &mut self.buf, &mut self.discarded) {
                Ok(Some(upcall)) => return Ok(upcall),
                Ok(None) => guard.clear_ready(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns a pending upcall without waiting, `None` if there is none.
    pub fn try_recv(&mut self) -> io::Result<Option<Upcall>> {
        read_upcall(self.fd.get_ref(), self.family, &mut self.buf, &mut self.discarded)
    }

    /// How many non-upcall datagrams (ordinary IGMP / ICMPv6) were read and dropped.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// The family of the router this reads from.
    pub fn family(&self) -> Family {
        self.family
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn igmpmsg_nocache_is_parsed() {
        // An upcall as ipmr_cache_report builds it: the IPv4 header copied, protocol (im_mbz)
        // zeroed, msgtype, vif, then an 8-byte IGMP header.
        let mut buf = vec![0x45, 0, 0, 28, 0, 0, 0, 0, sys::IGMPMSG_NOCACHE, 0, 3, 0];
        buf.extend_from_slice(&[198, 51, 100, 7, 232, 1, 1, 1]);
        buf.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let up = parse_igmpmsg(&buf).unwrap();
        assert_eq!(up.kind, UpcallKind::NoCache);
        assert_eq!(up.vif, Vif(3));
        assert_eq!(up.source, IpAddr::from([198, 51, 100, 7]));
        assert_eq!(up.group, IpAddr::from([232, 1, 1, 1]));
        assert_eq!(up.packet, None);
    }

    #[test]
    fn igmpmsg_vif_hi_and_whole_packet() {
        let mut buf = vec![0x45, 0, 0, 48, 0, 0, 0, 0, sys::IGMPMSG_WRVIFWHOLE, 0, 0x01, 0x01];
        buf.extend_from_slice(&[10, 0, 0, 1, 239, 1, 2, 3]);
        buf.extend_from_slice(b"the original packet.");
        let up = parse_igmpmsg(&buf).unwrap();
        assert_eq!(up.kind, UpcallKind::WrongVifWholePacket);
        assert_eq!(up.vif, Vif(0x101));
        assert_eq!(up.packet.as_deref(), Some(&b"the original packet."[..]));
    }

    #[test]
    fn ordinary_igmp_is_not_an_upcall() {
        // IPv4 header with protocol 2 (IGMP), then an IGMPv2 report.
        let mut buf = vec![0x46, 0xc0, 0, 32, 0, 0, 0x40, 0, 1, 2, 0, 0, 10, 0, 0, 2, 224, 0, 0, 22];
        buf.extend_from_slice(&[0x94, 4, 0, 0, 0x16, 0, 0, 0, 239, 1, 1, 1]);
        assert_eq!(parse_igmpmsg(&buf), None);
        assert_eq!(parse_igmpmsg(&buf[..10]), None);
    }

    #[test]
    fn mrt6msg_parsed_and_icmpv6_ignored() {
        let mut buf = vec![0, sys::MRT6MSG_NOCACHE];
        buf.extend_from_slice(&5u16.to_ne_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        buf.extend_from_slice(&"ff3e::8000:1".parse::<Ipv6Addr>().unwrap().octets());
        let up = parse_mrt6msg(&buf).unwrap();
        assert_eq!(up.kind, UpcallKind::NoCache);
        assert_eq!(up.vif, Vif(5));
        assert_eq!(up.source, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(up.group, "ff3e::8000:1".parse::<IpAddr>().unwrap());

        let mut whole = buf.clone();
        whole[1] = sys::MRT6MSG_WHOLEPKT;
        whole.extend_from_slice(&[0x60, 0, 0, 0]);
        assert_eq!(parse_mrt6msg(&whole).unwrap().packet.as_deref(), Some(&[0x60, 0, 0, 0][..]));

        // An MLDv2 report (ICMPv6 type 143) is not an upcall.
        let mut mld = buf.clone();
        mld[0] = 143;
        assert_eq!(parse_mrt6msg(&mld), None);
        assert_eq!(parse_mrt6msg(&buf[..39]), None);
    }

    #[test]
    fn unknown_kind_is_kept() {
        let mut buf = vec![0u8; 20];
        buf[8] = 9;
        assert_eq!(parse_igmpmsg(&buf).unwrap().kind, UpcallKind::Unknown(9));
    }
}
