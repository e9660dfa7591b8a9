//! A small TUN device helper (`IFF_TUN | IFF_NO_PI`: each read or write is one IP packet).
//!
//! driad-ingest writes decapsulated multicast into a TUN, the "native" interface, and pimwatch
//! makes it the incoming VIF of its MFC entries. For the kernel to forward such packets:
//!
//! * the device must be up ([`Tun::set_up`]) and held open (a TUN has carrier only while a
//!   process has it attached);
//! * reverse-path filtering must not drop the off-link sources: the effective `rp_filter` of
//!   the device is the maximum of `conf/all/rp_filter` and `conf/<dev>/rp_filter`, so
//!   [`Tun::disable_rp_filter`] sets the device's to 0 and warns when `all` is not 0 (changing
//!   `all` is left to the caller: [`set_rp_filter`]`("all", 0)`);
//! * the packets' TTL must be at least 2 (the forwarding decrements it; the VIF threshold is 1);
//! * for IPv6, the device must not have IPv6 disabled: a new device takes
//!   `conf/default/disable_ipv6`, and where that is 1 the kernel discards every IPv6 packet
//!   written into it (RFC 8200 processing never starts; counted as `Ip6InDiscards`), so
//!   [`Tun::enable_ipv6`] sets the device's to 0.
//!
//! No address is needed on the TUN for forwarding (VIFs and MIFs are added by ifindex).

use core::ffi::{c_int, c_short, c_ulong};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::ffi::{self, Pod};

const IFNAMSIZ: usize = 16;

/// `struct ifreq` with the union viewed as a `short` (flags). 40 bytes, the size of `struct
/// ifreq` on 64-bit Linux (at least as large elsewhere).
#[repr(C)]
#[derive(Clone, Copy)]
struct IfReqFlags {
    name: [u8; IFNAMSIZ],
    flags: c_short,
    _pad: [u8; 22],
}

/// `struct ifreq` with the union viewed as an `int` (MTU, ifindex).
#[repr(C)]
#[derive(Clone, Copy)]
struct IfReqInt {
    name: [u8; IFNAMSIZ],
    value: c_int,
    _pad: [u8; 20],
}

// SAFETY: `#[repr(C)]` byte arrays and integers only; every bit pattern is valid.
unsafe impl Pod for IfReqFlags {}
// SAFETY: as above.
unsafe impl Pod for IfReqInt {}

fn ifname(name: &str) -> io::Result<[u8; IFNAMSIZ]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) || bytes.contains(&b'/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid interface name {name:?}")));
    }
    let mut out = [0u8; IFNAMSIZ];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

fn name_from(raw: &[u8; IFNAMSIZ]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(IFNAMSIZ);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// A socket for interface ioctls (`SIOCGIFFLAGS`, `SIOCSIFMTU`, ...).
fn ioctl_socket() -> io::Result<socket2::Socket> {
    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
}

/// Sets `IFF_UP` on (or off) interface `name`.
pub fn set_link_up(name: &str, up: bool) -> io::Result<()> {
    let sock = ioctl_socket()?;
    let mut req = IfReqFlags { name: ifname(name)?, flags: 0, _pad: [0; 22] };
    ffi::ioctl_inout(sock.as_fd(), libc::SIOCGIFFLAGS as c_ulong, &mut req)?;
    if up {
        req.flags |= libc::IFF_UP as c_short;
    } else {
        req.flags &= !(libc::IFF_UP as c_short);
    }
    ffi::ioctl_inout(sock.as_fd(), libc::SIOCSIFFLAGS as c_ulong, &mut req)
}

/// Sets the MTU of interface `name`.
pub fn set_link_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let sock = ioctl_socket()?;
    let value = c_int::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU too large"))?;
    let mut req = IfReqInt { name: ifname(name)?, value, _pad: [0; 20] };
    ffi::ioctl_inout(sock.as_fd(), libc::SIOCSIFMTU as c_ulong, &mut req)
}

fn rp_filter_path(ifname_or_all: &str) -> io::Result<String> {
    if ifname_or_all != "all" && ifname_or_all != "default" {
        ifname(ifname_or_all)?;
    }
    Ok(format!("/proc/sys/net/ipv4/conf/{ifname_or_all}/rp_filter"))
}

/// Reads `net.ipv4.conf.<name>.rp_filter` (`name` may be `all` or `default`) of the current
/// network namespace.
pub fn rp_filter(name: &str) -> io::Result<u8> {
    let text = std::fs::read_to_string(rp_filter_path(name)?)?;
    text.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("rp_filter is {text:?}")))
}

/// Writes `net.ipv4.conf.<name>.rp_filter` (0 off, 1 strict, 2 loose).
pub fn set_rp_filter(name: &str, value: u8) -> io::Result<()> {
    std::fs::write(rp_filter_path(name)?, format!("{value}\n"))
}

fn disable_ipv6_path(name: &str) -> io::Result<String> {
    ifname(name)?;
    Ok(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"))
}

/// Reads `net.ipv6.conf.<name>.disable_ipv6` of the current network namespace; `None` when the
/// kernel has no IPv6 (the file does not exist).
pub fn ipv6_disabled(name: &str) -> io::Result<Option<bool>> {
    match std::fs::read_to_string(disable_ipv6_path(name)?) {
        Ok(text) => match text.trim() {
            "0" => Ok(Some(false)),
            "1" => Ok(Some(true)),
            other => Err(io::Error::new(io::ErrorKind::InvalidData, format!("disable_ipv6 is {other:?}"))),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A TUN device, open and attached. Closing it detaches; a non-persistent device is then
/// deleted by the kernel.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    ifindex: u32,
}

impl Tun {
    /// Creates the TUN device `name`, or attaches to it if it exists (a persistent TUN with
    /// the same flags and no other process attached; otherwise `EBUSY` / `EINVAL`). A name
    /// with `%d` lets the kernel pick a number. Needs `CAP_NET_ADMIN` unless the persistent
    /// device is owned by the caller.
    pub fn create_or_attach(name: &str) -> io::Result<Tun> {
        Tun::create_or_attach_with(name, false)
    }

    /// [`create_or_attach`](Self::create_or_attach), with `vnet_hdr` adding `IFF_VNET_HDR`:
    /// every packet written (and read) then starts with a 10-byte `struct virtio_net_hdr`,
    /// through which a writer can hand the kernel one UDP "super-packet" that it segments
    /// into many datagrams (`VIRTIO_NET_HDR_GSO_UDP_L4`, Linux 6.2+), the way GRO would have
    /// coalesced them. A header of all zeroes means an ordinary packet.
    pub fn create_or_attach_with(name: &str, vnet_hdr: bool) -> io::Result<Tun> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("/dev/net/tun: {e}")))?;
        let vnet = if vnet_hdr { libc::IFF_VNET_HDR } else { 0 };
        let mut req = IfReqFlags {
            name: ifname(name)?,
            flags: (libc::IFF_TUN | libc::IFF_NO_PI | vnet) as c_short,
            _pad: [0; 22],
        };
        ffi::ioctl_inout(file.as_fd(), libc::TUNSETIFF as c_ulong, &mut req)
            .map_err(|e| io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")))?;
        let name = name_from(&req.name);
        let ifindex = nix::net::if_::if_nametoindex(name.as_str()).map_err(io::Error::from)?;
        tracing::debug!(%name, ifindex, "TUN attached");
        Ok(Tun { file, name, ifindex })
    }

    /// The device name (as the kernel assigned it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sets `IFF_UP`.
    pub fn set_up(&self) -> io::Result<()> {
        set_link_up(&self.name, true)
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        set_link_mtu(&self.name, mtu)
    }

    /// `TUNSETPERSIST`: a persistent device outlives this handle.
    pub fn set_persistent(&self, persistent: bool) -> io::Result<()> {
        ffi::ioctl_value(self.file.as_fd(), libc::TUNSETPERSIST as c_ulong, c_ulong::from(persistent))
    }

    /// Sets this device's `rp_filter` to 0 and warns if `conf/all/rp_filter` would still
    /// filter (the kernel uses the maximum of the two). Returns the effective value.
    pub fn disable_rp_filter(&self) -> io::Result<u8> {
        set_rp_filter(&self.name, 0)?;
        let all = rp_filter("all")?;
        if all != 0 {
            tracing::warn!(
                tun = %self.name,
                all,
                "net.ipv4.conf.all.rp_filter is not 0, so it still applies to the TUN; off-link sources may be dropped"
            );
        }
        Ok(all)
    }

    /// Makes sure IPv6 packets written into the device are processed: sets
    /// `net.ipv6.conf.<dev>.disable_ipv6` to 0 if it is 1 (inherited from `conf/default`).
    /// Returns whether it changed anything; `Ok(false)` also when the kernel has no IPv6.
    /// Needs `CAP_NET_ADMIN` (as the device itself does).
    pub fn enable_ipv6(&self) -> io::Result<bool> {
        if ipv6_disabled(&self.name)? != Some(true) {
            return Ok(false);
        }
        std::fs::write(disable_ipv6_path(&self.name)?, "0\n")?;
        Ok(true)
    }

    /// Sets or clears `O_NONBLOCK`.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        let flags = nix::fcntl::fcntl(&self.file, nix::fcntl::FcntlArg::F_GETFL)?;
        let mut flags = nix::fcntl::OFlag::from_bits_retain(flags);
        flags.set(nix::fcntl::OFlag::O_NONBLOCK, nonblocking);
        nix::fcntl::fcntl(&self.file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(())
    }

    /// Reads one packet.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one packet (an IPv4 or IPv6 datagram, starting at its header).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }

    /// Registers the device with the current tokio runtime (switches it to non-blocking).
    pub fn into_async(self) -> io::Result<AsyncTun> {
        self.set_nonblocking(true)?;
        Ok(AsyncTun { fd: crate::ffi::async_fd(self, Interest::READABLE | Interest::WRITABLE)? })
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// A [`Tun`] usable from async code.
#[derive(Debug)]
pub struct AsyncTun {
    fd: AsyncFd<Tun>,
}

impl AsyncTun {
    /// The device.
    pub fn get_ref(&self) -> &Tun {
        self.fd.get_ref()
    }

    /// Waits for and reads one packet.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.async_io(Interest::READABLE, |t| t.recv(buf)).await
    }

    /// Writes one packet, waiting while the device queue is full.
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.fd.async_io(Interest::WRITABLE, |t| t.send(packet)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_sizes() {
        assert_eq!(size_of::<IfReqFlags>(), 40);
        assert_eq!(size_of::<IfReqInt>(), 40);
        assert_eq!(core::mem::offset_of!(IfReqFlags, flags), 16);
        assert_eq!(core::mem::offset_of!(IfReqInt, value), 16);
    }

    #[test]
    fn interface_names() {
        assert!(ifname("tun0").is_ok());
        assert!(ifname("").is_err());
        assert!(ifname("a-name-that-is-too-long").is_err());
        assert!(ifname("../x").is_err());
        assert_eq!(name_from(&ifname("native0").unwrap()), "native0");
        assert!(rp_filter_path("all").is_ok());
        assert!(rp_filter_path("../../x").is_err());
    }
}
