//! IPv4 kernel multicast routing: the `MRT_*` socket options on a raw IGMP socket.

use core::ffi::c_int;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use crate::error::{Error, Result};
use crate::ffi;
use crate::sys::{self, mfcctl, sioc_sg_req, sioc_vif_req, vifctl};
use crate::upcall::{self, Upcall, UpcallReader};
use crate::{Family, SgCounters, Vif, VifCounters, VifSlots};

/// Classic BPF program attached to the mroute socket: accept a datagram only if its byte 9
/// is 0. Upcalls have `im_mbz` = 0 there; real IGMP packets have the IPv4 protocol field
/// (2), so the kernel drops them before they take receive-buffer space (the filter runs on
/// every datagram queued to the socket, upcalls included). Userspace still discards any that
/// arrive, for example if attaching the filter failed.
fn attach_upcall_filter(socket: &Socket) -> std::io::Result<()> {
    const MBZ: u32 = core::mem::offset_of!(sys::igmpmsg, im_mbz) as u32;
    socket.attach_filter(&[
        SockFilter::new(0x30, 0, 0, MBZ),         // ldb [9]
        SockFilter::new(0x15, 0, 1, 0),           // jeq #0, accept, drop
        SockFilter::new(0x06, 0, 0, 0xffff_ffff), // accept: ret #-1 (whole datagram)
        SockFilter::new(0x06, 0, 0, 0),           // drop: ret #0
    ])
}

/// The IPv4 multicast forwarding cache of one network namespace (or one mroute table in it).
///
/// Owns a raw `IPPROTO_IGMP` socket on which `MRT_INIT` succeeded: while it lives, the kernel
/// forwards multicast according to the VIFs and MFC entries added here. `MRT_INIT` also turns
/// on `net.ipv4.conf.all.mc_forwarding` (and each VIF's device `mc_forwarding`); the sysctl is
/// read-only and there is nothing to write. Dropping the router sends `MRT_DONE`, which
/// removes every VIF and MFC entry it added.
///
/// Needs `CAP_NET_ADMIN` (for `MRT_INIT`) and `CAP_NET_RAW` (for the raw socket).
#[derive(Debug)]
pub struct MulticastRouter {
    socket: Socket,
    table: Option<u32>,
    vifs: VifSlots,
    buf: Vec<u8>,
    discarded: u64,
    active: bool,
}

impl MulticastRouter {
    /// `MRT_INIT` on the default table of the current network namespace.
    pub fn new() -> Result<MulticastRouter> {
        Self::open(None)
    }

    /// `MRT_TABLE` `table`, then `MRT_INIT` (needs `CONFIG_IP_MROUTE_MULTIPLE_TABLES`).
    pub fn with_table(table: u32) -> Result<MulticastRouter> {
        Self::open(Some(table))
    }

    fn open(table: Option<u32>) -> Result<MulticastRouter> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_IGMP)))
            .map_err(|e| Error::os("socket(AF_INET, SOCK_RAW, IPPROTO_IGMP) (needs CAP_NET_RAW)", e))?;
        socket.set_nonblocking(true).map_err(|e| Error::os("O_NONBLOCK on the mroute socket", e))?;
        if let Some(table) = table {
            ffi::setsockopt(socket.as_fd(), libc::IPPROTO_IP, sys::MRT_TABLE, &table)
                .map_err(|e| Error::os(format!("MRT_TABLE {table}"), e))?;
        }
        match ffi::setsockopt(socket.as_fd(), libc::IPPROTO_IP, sys::MRT_INIT, &(1 as c_int)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
                return Err(Error::RouterInUse { family: Family::V4, table });
            }
            Err(e) => return Err(Error::os("MRT_INIT (needs CAP_NET_ADMIN and CONFIG_IP_MROUTE)", e)),
        }
        if let Err(e) = attach_upcall_filter(&socket) {
            tracing::warn!(error = %e, "could not attach the upcall filter; IGMP will be read and discarded");
        }
        tracing::info!(?table, "MRT_INIT: IPv4 multicast routing enabled");
        Ok(MulticastRouter { socket, table, vifs: VifSlots::default(), buf: Vec::new(), discarded: 0, active: true })
    }

    /// The mroute table, if one was selected.
    pub fn table(&self) -> Option<u32> {
        self.table
    }

    /// `MRT_VERSION`.
    pub fn version(&self) -> Result<i32> {
        ffi::getsockopt::<c_int>(self.socket.as_fd(), libc::IPPROTO_IP, sys::MRT_VERSION)
            .map_err(|e| Error::os("MRT_VERSION", e))
    }

    /// `MRT_ASSERT`: whether the kernel sends WRONGVIF upcalls.
    pub fn set_assert(&mut self, on: bool) -> Result<()> {
        ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IP, sys::MRT_ASSERT, &c_int::from(on))
            .map_err(|e| Error::os("MRT_ASSERT", e))
    }

    /// Adds a VIF for the interface `ifindex` (with `VIFF_USE_IFINDEX`, TTL threshold 1) in
    /// the lowest free slot.
    pub fn add_vif(&mut self, ifindex: u32) -> Result<Vif> {
        let vif = self.vifs.lowest_free().ok_or(Error::NoFreeVif(Family::V4))?;
        self.add_vif_at(vif, ifindex)?;
        Ok(vif)
    }

    /// Adds a VIF for `ifindex` in slot `vif`.
    pub fn add_vif_at(&mut self, vif: Vif, ifindex: u32) -> Result<()> {
        self.vifs.check_free(vif)?;
        let ctl = vifctl {
            vifc_vifi: vif.0,
            vifc_flags: sys::VIFF_USE_IFINDEX,
            vifc_threshold: 1,
            vifc_rate_limit: 0,
            vifc_lcl_ifindex: ifindex as c_int,
            vifc_rmt_addr: sys::in_addr::default(),
        };
        ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IP, sys::MRT_ADD_VIF, &ctl)
            .map_err(|e| Error::os(format!("MRT_ADD_VIF {vif} ifindex {ifindex}"), e))?;
        self.vifs.insert(vif, ifindex);
        tracing::debug!(%vif, ifindex, "added IPv4 VIF");
        Ok(())
    }

    /// Removes a VIF. A VIF whose interface was deleted is already gone from the kernel
    /// (`EADDRNOTAVAIL`); that counts as success.
    pub fn del_vif(&mut self, vif: Vif) -> Result<()> {
        self.vifs.check_used(vif)?;
        let ctl = vifctl { vifc_vifi: vif.0, ..Default::default() };
        match ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IP, sys::MRT_DEL_VIF, &ctl) {
            Ok(()) => tracing::debug!(%vif, "deleted IPv4 VIF"),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                tracing::debug!(%vif, "IPv4 VIF was already gone (interface deleted)");
            }
            Err(e) => return Err(Error::os(format!("MRT_DEL_VIF {vif}"), e)),
        }
        self.vifs.remove(vif);
        Ok(())
    }

    /// The VIFs this router added: (slot, ifindex).
    pub fn vifs(&self) -> Vec<(Vif, u32)> {
        self.vifs.iter().collect()
    }

    /// `MRT_ADD_MFC`: forward (source, group) arriving on `iif` out of `oifs` (replacing an
    /// existing entry for the pair). Every VIF must have been added by this router: the kernel
    /// computes the forwarding thresholds when the entry is added and silently ignores VIFs
    /// that do not exist yet. `iif` in `oifs` is ignored.
    pub fn set_mfc(&mut self, source: Ipv4Addr, group: Ipv4Addr, iif: Vif, oifs: &[Vif]) -> Result<()> {
        self.vifs.check_used(iif)?;
        let mut ctl = mfcctl {
            mfcc_origin: source.into(),
            mfcc_mcastgrp: group.into(),
            mfcc_parent: iif.0,
            ..Default::default()
        };
        for &oif in oifs {
            self.vifs.check_used(oif)?;
            if oif != iif {
                ctl.mfcc_ttls[usize::from(oif.0)] = 1;
            }
        }
        ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IP, sys::MRT_ADD_MFC, &ctl)
            .map_err(|e| Error::os(format!("MRT_ADD_MFC ({source},{group}) iif {iif}"), e))?;
        tracing::debug!(%source, %group, %iif, ?oifs, "set IPv4 MFC entry");
        Ok(())
    }

    /// `MRT_DEL_MFC`. Returns `false` if there was no such entry.
    pub fn del_mfc(&mut self, source: Ipv4Addr, group: Ipv4Addr) -> Result<bool> {
        let ctl = mfcctl { mfcc_origin: source.into(), mfcc_mcastgrp: group.into(), ..Default::default() };
        match ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IP, sys::MRT_DEL_MFC, &ctl) {
            Ok(()) => {
                tracing::debug!(%source, %group, "deleted IPv4 MFC entry");
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::os(format!("MRT_DEL_MFC ({source},{group})"), e)),
        }
    }

    /// `SIOCGETSGCNT`: the entry's packet, byte and wrong-interface counters.
    pub fn sg_counters(&self, source: Ipv4Addr, group: Ipv4Addr) -> Result<SgCounters> {
        let mut req = sioc_sg_req { src: source.into(), grp: group.into(), ..Default::default() };
        ffi::ioctl_inout(self.socket.as_fd(), sys::SIOCGETSGCNT, &mut req)
            .map_err(|e| Error::os(format!("SIOCGETSGCNT ({source},{group})"), e))?;
        Ok(SgCounters {
            packets: crate::ulong(req.pktcnt),
            bytes: crate::ulong(req.bytecnt),
            wrong_if: crate::ulong(req.wrong_if),
        })
    }

    /// `SIOCGETVIFCNT`: a VIF's counters.
    pub fn vif_counters(&self, vif: Vif) -> Result<VifCounters> {
        let mut req = sioc_vif_req { vifi: vif.0, ..Default::default() };
        ffi::ioctl_inout(self.socket.as_fd(), sys::SIOCGETVIFCNT, &mut req)
            .map_err(|e| Error::os(format!("SIOCGETVIFCNT {vif}"), e))?;
        Ok(VifCounters {
            in_packets: crate::ulong(req.icount),
            out_packets: crate::ulong(req.ocount),
            in_bytes: crate::ulong(req.ibytes),
            out_bytes: crate::ulong(req.obytes),
        })
    }

    /// Returns a pending upcall without blocking (`None` if there is none). Ordinary IGMP
    /// packets read on the way are discarded.
    pub fn recv_upcall(&mut self) -> Result<Option<Upcall>> {
        upcall::read_upcall(&self.socket, Family::V4, &mut self.buf, &mut self.discarded)
            .map_err(|e| Error::os("recv on the mroute socket", e))
    }

    /// How many non-upcall datagrams [`MulticastRouter::recv_upcall`] discarded.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// An async upcall reader on a duplicate of the socket; must be called inside a tokio
    /// runtime. Only one reader should be used at a time.
    pub fn upcall_reader(&self) -> Result<UpcallReader> {
        let dup = self.socket.try_clone().map_err(|e| Error::os("dup of the mroute socket", e))?;
        UpcallReader::new(dup, Family::V4).map_err(|e| Error::os("registering the mroute socket with tokio", e))
    }

    /// Sends `MRT_DONE` (removing every VIF and MFC entry) and closes the socket, reporting
    /// failure. Dropping the router does the same and logs failures.
    pub fn close(mut self) -> Result<()> {
        self.done()
    }

    fn done(&mut self) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IP, sys::MRT_DONE, &(0 as c_int))
            .map_err(|e| Error::os("MRT_DONE", e))?;
        tracing::info!(table = ?self.table, vifs = self.vifs.len(), "MRT_DONE: IPv4 VIFs and MFC entries flushed");
        self.vifs = VifSlots::default();
        Ok(())
    }
}

impl Drop for MulticastRouter {
    fn drop(&mut self) {
        if let Err(e) = self.done() {
            tracing::warn!(error = %e, "MRT_DONE failed; closing the socket flushes the table anyway");
        }
    }
}

impl AsFd for MulticastRouter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for MulticastRouter {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
