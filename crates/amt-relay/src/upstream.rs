//! Native source-specific joins on the upstream interface.
//!
//! Each subscribed (S,G) is joined with `MCAST_JOIN_SOURCE_GROUP` (RFC 3678 §5.1; IPv4 at
//! `IPPROTO_IP`, IPv6 at `IPPROTO_IPV6`) by interface index, so the upstream router gets an
//! IGMPv3/MLDv2 report and forwards the channel onto the interface, where the data path's
//! packet socket picks it up.
//!
//! Linux caps memberships per socket: `net.ipv4.igmp_max_memberships` (default 20) groups and
//! `net.ipv4.igmp_max_msf` (default 10) sources per group per IPv4 socket, `net.ipv6.mld_max_msf`
//! (64) for IPv6. Instead of asking operators to raise them, joins are spread over a pool of
//! sockets: a join that fails with ENOBUFS moves on to the next socket, and a new socket is
//! opened when every one is full. The sockets are never bound to a port and have
//! IP(V6)_MULTICAST_ALL off, so they receive nothing.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use mcast_wire::SourceGroup;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Sockets opened at most per family (each holds at least 20 groups × 10 sources): far more
/// than the relay's (S,G) limit needs.
const MAX_SOCKETS: usize = 4096;

/// `IPV6_MULTICAST_ALL` (linux/in6.h), not in libc.
const IPV6_MULTICAST_ALL: libc::c_int = 29;

#[derive(Debug)]
struct Pool {
    sockets: Vec<Socket>,
}

/// The joins held on the upstream interface.
#[derive(Debug)]
pub struct Upstream {
    ifindex: u32,
    v4: Pool,
    v6: Pool,
    /// Which socket of its family's pool holds each join.
    joined: HashMap<SourceGroup, usize>,
}

impl Upstream {
    pub fn new(ifindex: u32) -> Upstream {
        Upstream { ifindex, v4: Pool { sockets: Vec::new() }, v6: Pool { sockets: Vec::new() }, joined: HashMap::new() }
    }

    /// Joins `sg` on the upstream interface (idempotent).
    pub fn join(&mut self, sg: SourceGroup) -> io::Result<()> {
        if self.joined.contains_key(&sg) {
            return Ok(());
        }
        let v4 = sg.is_ipv4();
        let ifindex = self.ifindex;
        let pool = if v4 { &mut self.v4 } else { &mut self.v6 };
        for (i, socket) in pool.sockets.iter().enumerate() {
            match set_membership(socket, ifindex, &sg, true) {
                Ok(()) => {
                    self.joined.insert(sg, i);
                    return Ok(());
                }
                // This socket is full (memberships or sources per group): try the next.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => return Err(e),
            }
        }
        if pool.sockets.len() >= MAX_SOCKETS {
            return Err(io::Error::other("too many join sockets"));
        }
        let socket = join_socket(v4)?;
        set_membership(&socket, ifindex, &sg, true)?;
        pool.sockets.push(socket);
        self.joined.insert(sg, pool.sockets.len() - 1);
        Ok(())
    }

    /// Leaves `sg` (idempotent).
    pub fn leave(&mut self, sg: SourceGroup) -> io::Result<()> {
        let Some(i) = self.joined.remove(&sg) else { return Ok(()) };
        let pool = if sg.is_ipv4() { &self.v4 } else { &self.v6 };
        match pool.sockets.get(i) {
            Some(socket) => set_membership(socket, self.ifindex, &sg, false),
            None => Ok(()),
        }
    }

    /// Leaves everything (closing the sockets would too; explicit leaves report errors).
    pub fn leave_all(&mut self) -> Vec<(SourceGroup, io::Error)> {
        let sgs: Vec<SourceGroup> = self.joined.keys().copied().collect();
        sgs.into_iter().filter_map(|sg| self.leave(sg).err().map(|e| (sg, e))).collect()
    }

    /// Number of joins held.
    pub fn len(&self) -> usize {
        self.joined.len()
    }

    /// Number of sockets holding them.
    pub fn sockets(&self) -> usize {
        self.v4.sockets.len() + self.v6.sockets.len()
    }
}

fn join_socket(v4: bool) -> io::Result<Socket> {
    let (domain, level, option) = if v4 {
        (Domain::IPV4, libc::IPPROTO_IP, libc::IP_MULTICAST_ALL)
    } else {
        (Domain::IPV6, libc::IPPROTO_IPV6, IPV6_MULTICAST_ALL)
    };
    let socket = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    let off: libc::c_int = 0;
    // SAFETY: setsockopt with a valid descriptor, an int option value and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const off).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn storage(ip: IpAddr) -> libc::sockaddr_storage {
    let addr = SockAddr::from(SocketAddr::new(ip, 0));
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut out: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = (addr.len() as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: both are valid for `len` bytes (a sockaddr is never longer than the storage)
    // and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(addr.as_ptr().cast::<u8>(), (&raw mut out).cast::<u8>(), len);
    }
    out
}

/// MCAST_JOIN_SOURCE_GROUP / MCAST_LEAVE_SOURCE_GROUP by interface index.
fn set_membership(socket: &Socket, ifindex: u32, sg: &SourceGroup, join: bool) -> io::Result<()> {
    let req =
        libc::group_source_req { gsr_interface: ifindex, gsr_group: storage(sg.group), gsr_source: storage(sg.source) };
    let level = if sg.is_ipv4() { libc::IPPROTO_IP } else { libc::IPPROTO_IPV6 };
    let option = if join { libc::MCAST_JOIN_SOURCE_GROUP } else { libc::MCAST_LEAVE_SOURCE_GROUP };
    // SAFETY: setsockopt with a valid descriptor and a fully initialised group_source_req of
    // the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const req).cast(),
            size_of::<libc::group_source_req>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
