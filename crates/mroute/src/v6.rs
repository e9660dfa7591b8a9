//! IPv6 kernel multicast routing: the `MRT6_*` socket options on a raw ICMPv6 socket.

use core::ffi::c_int;
use std::net::Ipv6Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::ffi;
use crate::sys::{self, if_set, mf6cctl, mif6ctl, sioc_mif_req6, sioc_sg_req6};
use crate::upcall::{self, Upcall, UpcallReader};
use crate::{Family, SgCounters, Vif, VifCounters, VifSlots};

/// The IPv6 multicast forwarding cache of one network namespace (or one mroute6 table).
///
/// Owns a raw `IPPROTO_ICMPV6` socket on which `MRT6_INIT` succeeded. `MRT6_INIT` turns on
/// `net.ipv6.conf.all.mc_forwarding` by itself (read-only; nothing to write). The socket's
/// `ICMP6_FILTER` blocks every ICMPv6 type, so only upcalls (which the kernel queues directly,
/// bypassing the filter) are read. Dropping the router sends `MRT6_DONE`.
///
/// The API mirrors [`crate::MulticastRouter`]; MIFs are called [`Vif`]s here too.
#[derive(Debug)]
pub struct MulticastRouter6 {
    socket: Socket,
    table: Option<u32>,
    mifs: VifSlots,
    buf: Vec<u8>,
    discarded: u64,
    active: bool,
}

impl MulticastRouter6 {
    /// `MRT6_INIT` on the default table of the current network namespace.
    pub fn new() -> Result<MulticastRouter6> {
        Self::open(None)
    }

    /// `MRT6_TABLE` `table`, then `MRT6_INIT`.
    pub fn with_table(table: u32) -> Result<MulticastRouter6> {
        Self::open(Some(table))
    }

    fn open(table: Option<u32>) -> Result<MulticastRouter6> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .map_err(|e| Error::os("socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6) (needs CAP_NET_RAW)", e))?;
        socket.set_nonblocking(true).map_err(|e| Error::os("O_NONBLOCK on the mroute6 socket", e))?;
        if let Some(table) = table {
            ffi::setsockopt(socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_TABLE, &table)
                .map_err(|e| Error::os(format!("MRT6_TABLE {table}"), e))?;
        }
        match ffi::setsockopt(socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_INIT, &(1 as c_int)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
                return Err(Error::RouterInUse { family: Family::V6, table });
            }
            Err(e) => return Err(Error::os("MRT6_INIT (needs CAP_NET_ADMIN and CONFIG_IPV6_MROUTE)", e)),
        }
        if let Err(e) =
            ffi::setsockopt(socket.as_fd(), libc::IPPROTO_ICMPV6, sys::ICMP6_FILTER, &sys::icmp6_filter::BLOCK_ALL)
        {
            tracing::warn!(error = %e, "could not set ICMP6_FILTER; ICMPv6 will be read and discarded");
        }
        tracing::info!(?table, "MRT6_INIT: IPv6 multicast routing enabled");
        Ok(MulticastRouter6 { socket, table, mifs: VifSlots::default(), buf: Vec::new(), discarded: 0, active: true })
    }

    /// The mroute6 table, if one was selected.
    pub fn table(&self) -> Option<u32> {
        self.table
    }

    /// `MRT6_VERSION`.
    pub fn version(&self) -> Result<i32> {
        ffi::getsockopt::<c_int>(self.socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_VERSION)
            .map_err(|e| Error::os("MRT6_VERSION", e))
    }

    /// `MRT6_ASSERT`: whether the kernel sends WRONGMIF upcalls.
    pub fn set_assert(&mut self, on: bool) -> Result<()> {
        ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_ASSERT, &c_int::from(on))
            .map_err(|e| Error::os("MRT6_ASSERT", e))
    }

    /// Adds a MIF for `ifindex` (threshold 1) in the lowest free slot.
    pub fn add_mif(&mut self, ifindex: u32) -> Result<Vif> {
        let mif = self.mifs.lowest_free().ok_or(Error::NoFreeVif(Family::V6))?;
        self.add_mif_at(mif, ifindex)?;
        Ok(mif)
    }

    /// Adds a MIF for `ifindex` in slot `mif`. The ifindex must fit in 16 bits.
    pub fn add_mif_at(&mut self, mif: Vif, ifindex: u32) -> Result<()> {
        self.mifs.check_free(mif)?;
        let pifi = u16::try_from(ifindex).map_err(|_| Error::IfindexTooLarge(ifindex))?;
        let ctl =
            mif6ctl { mif6c_mifi: mif.0, mif6c_flags: 0, vifc_threshold: 1, mif6c_pifi: pifi, vifc_rate_limit: 0 };
        ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_ADD_MIF, &ctl)
            .map_err(|e| Error::os(format!("MRT6_ADD_MIF {mif} ifindex {ifindex}"), e))?;
        self.mifs.insert(mif, ifindex);
        tracing::debug!(%mif, ifindex, "added IPv6 MIF");
        Ok(())
    }

    /// Removes a MIF; one whose interface was deleted is already gone (`EADDRNOTAVAIL`) and
    /// that counts as success.
    pub fn del_mif(&mut self, mif: Vif) -> Result<()> {
        self.mifs.check_used(mif)?;
        match ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_DEL_MIF, &mif.0) {
            Ok(()) => tracing::debug!(%mif, "deleted IPv6 MIF"),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                tracing::debug!(%mif, "IPv6 MIF was already gone (interface deleted)");
            }
            Err(e) => return Err(Error::os(format!("MRT6_DEL_MIF {mif}"), e)),
        }
        self.mifs.remove(mif);
        Ok(())
    }

    /// The MIFs this router added: (slot, ifindex).
    pub fn mifs(&self) -> Vec<(Vif, u32)> {
        self.mifs.iter().collect()
    }

    /// `MRT6_ADD_MFC`: forward (source, group) arriving on `iif` out of `oifs`, replacing an
    /// existing entry. Every MIF must have been added by this router. `iif` in `oifs` is
    /// ignored.
    pub fn set_mfc6(&mut self, source: Ipv6Addr, group: Ipv6Addr, iif: Vif, oifs: &[Vif]) -> Result<()> {
        self.mifs.check_used(iif)?;
        let mut ifset = if_set::default();
        for &oif in oifs {
            self.mifs.check_used(oif)?;
            if oif != iif {
                ifset.set(usize::from(oif.0));
            }
        }
        let ctl = mf6cctl {
            mf6cc_origin: source.into(),
            mf6cc_mcastgrp: group.into(),
            mf6cc_parent: iif.0,
            mf6cc_ifset: ifset,
        };
        ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_ADD_MFC, &ctl)
            .map_err(|e| Error::os(format!("MRT6_ADD_MFC ({source},{group}) iif {iif}"), e))?;
        tracing::debug!(%source, %group, %iif, ?oifs, "set IPv6 MFC entry");
        Ok(())
    }

    /// `MRT6_DEL_MFC`. Returns `false` if there was no such entry.
    pub fn del_mfc6(&mut self, source: Ipv6Addr, group: Ipv6Addr) -> Result<bool> {
        let ctl = mf6cctl { mf6cc_origin: source.into(), mf6cc_mcastgrp: group.into(), ..Default::default() };
        match ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_DEL_MFC, &ctl) {
            Ok(()) => {
                tracing::debug!(%source, %group, "deleted IPv6 MFC entry");
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::os(format!("MRT6_DEL_MFC ({source},{group})"), e)),
        }
    }

    /// `SIOCGETSGCNT_IN6`: the entry's counters.
    pub fn sg_counters(&self, source: Ipv6Addr, group: Ipv6Addr) -> Result<SgCounters> {
        let mut req = sioc_sg_req6 { src: source.into(), grp: group.into(), ..Default::default() };
        ffi::ioctl_inout(self.socket.as_fd(), sys::SIOCGETSGCNT_IN6, &mut req)
            .map_err(|e| Error::os(format!("SIOCGETSGCNT_IN6 ({source},{group})"), e))?;
        Ok(SgCounters {
            packets: crate::ulong(req.pktcnt),
            bytes: crate::ulong(req.bytecnt),
            wrong_if: crate::ulong(req.wrong_if),
        })
    }

    /// `SIOCGETMIFCNT_IN6`: a MIF's counters.
    pub fn mif_counters(&self, mif: Vif) -> Result<VifCounters> {
        let mut req = sioc_mif_req6 { mifi: mif.0, ..Default::default() };
        ffi::ioctl_inout(self.socket.as_fd(), sys::SIOCGETMIFCNT_IN6, &mut req)
            .map_err(|e| Error::os(format!("SIOCGETMIFCNT_IN6 {mif}"), e))?;
        Ok(VifCounters {
            in_packets: crate::ulong(req.icount),
            out_packets: crate::ulong(req.ocount),
            in_bytes: crate::ulong(req.ibytes),
            out_bytes: crate::ulong(req.obytes),
        })
    }

    /// Returns a pending upcall without blocking (`None` if there is none).
    pub fn recv_upcall(&mut self) -> Result<Option<Upcall>> {
        upcall::read_upcall(&self.socket, Family::V6, &mut self.buf, &mut self.discarded)
            .map_err(|e| Error::os("recv on the mroute6 socket", e))
    }

    /// How many non-upcall datagrams [`MulticastRouter6::recv_upcall`] discarded.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// An async upcall reader on a duplicate of the socket (inside a tokio runtime).
    pub fn upcall_reader(&self) -> Result<UpcallReader> {
        let dup = self.socket.try_clone().map_err(|e| Error::os("dup of the mroute6 socket", e))?;
        UpcallReader::new(dup, Family::V6).map_err(|e| Error::os("registering the mroute6 socket with tokio", e))
    }

    /// Sends `MRT6_DONE` and closes the socket, reporting failure.
    pub fn close(mut self) -> Result<()> {
        self.done()
    }

    fn done(&mut self) -> Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        ffi::setsockopt(self.socket.as_fd(), libc::IPPROTO_IPV6, sys::MRT6_DONE, &(0 as c_int))
            .map_err(|e| Error::os("MRT6_DONE", e))?;
        tracing::info!(table = ?self.table, mifs = self.mifs.len(), "MRT6_DONE: IPv6 MIFs and MFC entries flushed");
        self.mifs = VifSlots::default();
        Ok(())
    }
}

impl Drop for MulticastRouter6 {
    fn drop(&mut self) {
        if let Err(e) = self.done() {
            tracing::warn!(error = %e, "MRT6_DONE failed; closing the socket flushes the table anyway");
        }
    }
}

impl AsFd for MulticastRouter6 {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for MulticastRouter6 {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}
