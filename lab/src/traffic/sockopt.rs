//! Socket options the standard library and socket2 do not cover: protocol-independent SSM
//! joins by interface index (RFC 3678 `MCAST_JOIN_SOURCE_GROUP`, IPv4 and IPv6) and
//! `IP_MULTICAST_IF` by interface index (`struct ip_mreqn`). Plus interface lookups.

use std::mem::size_of;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use anyhow::{Context, Result, anyhow, bail};

/// Linux `MCAST_JOIN_SOURCE_GROUP` / `MCAST_LEAVE_SOURCE_GROUP` (linux/in.h).
const MCAST_JOIN_SOURCE_GROUP: libc::c_int = 46;
const MCAST_LEAVE_SOURCE_GROUP: libc::c_int = 47;

/// `struct group_source_req` (RFC 3678): interface index, then group and source as
/// `sockaddr_storage` (8-byte aligned, so 4 bytes of padding follow the index on 64-bit).
#[repr(C)]
struct GroupSourceReq {
    gsr_interface: u32,
    gsr_group: libc::sockaddr_storage,
    gsr_source: libc::sockaddr_storage,
}

fn storage(addr: IpAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in>(), sin) };
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in6>(), sin6) };
        }
    }
    ss
}

fn source_group(fd: &impl AsRawFd, join: bool, source: IpAddr, group: IpAddr, ifindex: u32) -> Result<()> {
    if source.is_ipv4() != group.is_ipv4() {
        bail!("source {source} and group {group} are of different address families");
    }
    let req = GroupSourceReq { gsr_interface: ifindex, gsr_group: storage(group), gsr_source: storage(source) };
    let level = if group.is_ipv4() { libc::IPPROTO_IP } else { libc::IPPROTO_IPV6 };
    let opt = if join { MCAST_JOIN_SOURCE_GROUP } else { MCAST_LEAVE_SOURCE_GROUP };
    // SAFETY: `req` is a valid group_source_req that outlives the call; the length matches.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            std::ptr::addr_of!(req).cast(),
            size_of::<GroupSourceReq>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!("{} ({source}, {group}) on ifindex {ifindex}", if join { "joining" } else { "leaving" })
        });
    }
    Ok(())
}

/// Joins (S,G) on the interface with index `ifindex` (0 = let the kernel choose by route).
pub fn join_source_group(fd: &impl AsRawFd, source: IpAddr, group: IpAddr, ifindex: u32) -> Result<()> {
    source_group(fd, true, source, group, ifindex)
}

/// Leaves (S,G): the kernel sends the IGMPv3 BLOCK / MLDv2 report at once.
pub fn leave_source_group(fd: &impl AsRawFd, source: IpAddr, group: IpAddr, ifindex: u32) -> Result<()> {
    source_group(fd, false, source, group, ifindex)
}

/// `IP_MULTICAST_IF` with `struct ip_mreqn` (by interface index), so the egress interface is
/// chosen independently of the bound source address.
pub fn set_multicast_if_v4_index(fd: &impl AsRawFd, ifindex: u32) -> Result<()> {
    let req = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex as libc::c_int,
    };
    // SAFETY: `req` is a valid ip_mreqn that outlives the call; the length matches.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            std::ptr::addr_of!(req).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context(format!("IP_MULTICAST_IF ifindex {ifindex}"));
    }
    Ok(())
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(|e| anyhow!("no interface {name:?} here ({e})"))
}

/// The name of the interface holding `addr`, if any.
pub fn interface_with_addr(addr: IpAddr) -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for ifa in addrs {
        let Some(sa) = ifa.address else { continue };
        let ip = if let Some(v4) = sa.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if ip == addr {
            return Some(ifa.interface_name);
        }
    }
    None
}

/// The first address of `family` (v4 if `v4`) on interface `name`.
pub fn interface_addr(name: &str, v4: bool) -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for ifa in addrs {
        if ifa.interface_name != name {
            continue;
        }
        let Some(sa) = ifa.address else { continue };
        if v4 && let Some(a) = sa.as_sockaddr_in() {
            return Some(IpAddr::V4(a.ip()));
        }
        if !v4 && let Some(a) = sa.as_sockaddr_in6() {
            return Some(IpAddr::V6(a.ip()));
        }
    }
    None
}

/// The interface the kernel would use to reach `dest` (via a connected UDP probe socket, the
/// way libmcrx's mcrx-check picks its join interface).
pub fn interface_toward(dest: IpAddr) -> Option<String> {
    let bind: SocketAddr = if dest.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect(SocketAddr::new(dest, 9)).ok()?;
    interface_with_addr(s.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_source_req_layout() {
        // Linux x86_64/aarch64: 4 + 4 padding + 128 + 128.
        assert_eq!(size_of::<GroupSourceReq>(), 264);
    }

    #[test]
    fn loopback_lookups() {
        assert_eq!(interface_with_addr("127.0.0.1".parse().unwrap()).as_deref(), Some("lo"));
        assert!(ifindex("lo").unwrap() >= 1);
        assert!(ifindex("no-such-if0").is_err());
        assert_eq!(interface_addr("lo", true), Some("127.0.0.1".parse().unwrap()));
    }
}
