//! Declarations from the Linux UAPI headers `<linux/mroute.h>` and `<linux/mroute6.h>`.
//!
//! Neither `libc` nor `nix` declares any of this, so the constants and `#[repr(C)]` structs are
//! mirrored here, with the header's names. Layouts are pinned by unit tests (`size_of` and every
//! `offset_of!`, against protocols.md §A6) and, where a C compiler and the kernel headers are
//! installed, by a test that compiles a C program against the real headers and compares.
//!
//! Addresses inside these structs are in network byte order, exactly as the kernel expects;
//! use the `From` conversions of [`in_addr`], [`in6_addr`] and [`sockaddr_in6`].

#![allow(non_camel_case_types)]

use core::ffi::{c_int, c_uint, c_ulong};
use std::net::{Ipv4Addr, Ipv6Addr};

// ---------------------------------------------------------------------------------------------
// IPv4: <linux/mroute.h>
// ---------------------------------------------------------------------------------------------

/// First MRT socket option number.
pub const MRT_BASE: c_int = 200;
/// Activate the kernel mroute code (int 1). Socket must be `SOCK_RAW, IPPROTO_IGMP`.
pub const MRT_INIT: c_int = MRT_BASE;
/// Shut down the kernel mroute code: flushes this table's VIFs and MFC entries.
pub const MRT_DONE: c_int = MRT_BASE + 1;
/// Add a virtual interface ([`vifctl`]).
pub const MRT_ADD_VIF: c_int = MRT_BASE + 2;
/// Delete a virtual interface ([`vifctl`], only `vifc_vifi` is read).
pub const MRT_DEL_VIF: c_int = MRT_BASE + 3;
/// Add or replace a multicast forwarding cache entry ([`mfcctl`]).
pub const MRT_ADD_MFC: c_int = MRT_BASE + 4;
/// Delete a multicast forwarding cache entry ([`mfcctl`]).
pub const MRT_DEL_MFC: c_int = MRT_BASE + 5;
/// Get the kernel multicast version (getsockopt, int).
pub const MRT_VERSION: c_int = MRT_BASE + 6;
/// Activate PIM assert mode (WRONGVIF upcalls).
pub const MRT_ASSERT: c_int = MRT_BASE + 7;
/// Enable the kernel PIM (register VIF) code.
pub const MRT_PIM: c_int = MRT_BASE + 8;
/// Select the mroute table (u32); must be set before `MRT_INIT`.
pub const MRT_TABLE: c_int = MRT_BASE + 9;
/// Add a (*,*|G) proxy MFC entry.
pub const MRT_ADD_MFC_PROXY: c_int = MRT_BASE + 10;
/// Delete a (*,*|G) proxy MFC entry.
pub const MRT_DEL_MFC_PROXY: c_int = MRT_BASE + 11;
/// Flush MFC entries and/or VIFs (int of `MRT_FLUSH_*` flags).
pub const MRT_FLUSH: c_int = MRT_BASE + 12;
/// Highest MRT option number.
pub const MRT_MAX: c_int = MRT_BASE + 12;

/// `MRT_FLUSH` flag: flush multicast entries.
pub const MRT_FLUSH_MFC: c_int = 1;
/// `MRT_FLUSH` flag: flush static multicast entries.
pub const MRT_FLUSH_MFC_STATIC: c_int = 2;
/// `MRT_FLUSH` flag: flush VIFs.
pub const MRT_FLUSH_VIFS: c_int = 4;
/// `MRT_FLUSH` flag: flush static VIFs.
pub const MRT_FLUSH_VIFS_STATIC: c_int = 8;

/// `SIOCPROTOPRIVATE` from `<linux/sockios.h>`.
pub const SIOCPROTOPRIVATE: c_ulong = 0x89E0;
/// ioctl: per-VIF counters ([`sioc_vif_req`]).
pub const SIOCGETVIFCNT: c_ulong = SIOCPROTOPRIVATE;
/// ioctl: per-(S,G) counters ([`sioc_sg_req`]).
pub const SIOCGETSGCNT: c_ulong = SIOCPROTOPRIVATE + 1;
/// ioctl: RPF information (unused here).
pub const SIOCGETRPF: c_ulong = SIOCPROTOPRIVATE + 2;

/// Number of VIFs per table.
pub const MAXVIFS: usize = 32;
/// VIF index type.
pub type vifi_t = u16;
/// "All VIFs" wildcard.
pub const ALL_VIFS: vifi_t = vifi_t::MAX;

/// VIF flag: IPIP tunnel.
pub const VIFF_TUNNEL: u8 = 0x1;
/// VIF flag: source route (not implemented by Linux).
pub const VIFF_SRCRT: u8 = 0x2;
/// VIF flag: PIM register VIF.
pub const VIFF_REGISTER: u8 = 0x4;
/// VIF flag: `vifc_lcl_ifindex` names the interface instead of `vifc_lcl_addr`.
pub const VIFF_USE_IFINDEX: u8 = 0x8;

/// Upcall: data arrived on a VIF with no MFC entry (kernel cache fill request).
pub const IGMPMSG_NOCACHE: u8 = 1;
/// Upcall: data arrived on a VIF other than the entry's parent (needs `MRT_ASSERT`).
pub const IGMPMSG_WRONGVIF: u8 = 2;
/// Upcall: whole packet, for PIM Register processing.
pub const IGMPMSG_WHOLEPKT: u8 = 3;
/// Upcall: whole packet on the wrong VIF, for PIM Register and assert processing.
pub const IGMPMSG_WRVIFWHOLE: u8 = 4;

/// `struct in_addr`: an IPv4 address in network byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct in_addr {
    /// The address, network byte order (the in-memory bytes are the octets).
    pub s_addr: u32,
}

impl From<Ipv4Addr> for in_addr {
    fn from(addr: Ipv4Addr) -> Self {
        in_addr { s_addr: u32::from_ne_bytes(addr.octets()) }
    }
}

impl From<in_addr> for Ipv4Addr {
    fn from(addr: in_addr) -> Self {
        Ipv4Addr::from(addr.s_addr.to_ne_bytes())
    }
}

/// `struct vifctl`, the argument of `MRT_ADD_VIF` / `MRT_DEL_VIF` (16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct vifctl {
    /// VIF index, < [`MAXVIFS`].
    pub vifc_vifi: vifi_t,
    /// `VIFF_*` flags.
    pub vifc_flags: u8,
    /// TTL threshold: packets with a TTL below it are not forwarded out of this VIF.
    pub vifc_threshold: u8,
    /// Rate limit (not implemented by Linux).
    pub vifc_rate_limit: c_uint,
    /// The header's anonymous union of `struct in_addr vifc_lcl_addr` and `int vifc_lcl_ifindex`
    /// (both 4 bytes). With [`VIFF_USE_IFINDEX`] it holds the ifindex; otherwise store an
    /// address with [`vifctl::set_lcl_addr`].
    pub vifc_lcl_ifindex: c_int,
    /// IPIP tunnel remote address.
    pub vifc_rmt_addr: in_addr,
}

impl vifctl {
    /// Stores an address in the `vifc_lcl_addr` view of the union.
    pub fn set_lcl_addr(&mut self, addr: Ipv4Addr) {
        self.vifc_lcl_ifindex = c_int::from_ne_bytes(addr.octets());
    }
}

/// `struct mfcctl`, the argument of `MRT_ADD_MFC` / `MRT_DEL_MFC` (60 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mfcctl {
    /// S.
    pub mfcc_origin: in_addr,
    /// G.
    pub mfcc_mcastgrp: in_addr,
    /// Incoming VIF.
    pub mfcc_parent: vifi_t,
    /// Per-VIF TTL threshold: 0 = do not forward, n = forward packets whose TTL is > n - 1.
    pub mfcc_ttls: [u8; MAXVIFS],
    /// Packet count (not read by the kernel on add).
    pub mfcc_pkt_cnt: c_uint,
    /// Byte count.
    pub mfcc_byte_cnt: c_uint,
    /// Wrong-interface count.
    pub mfcc_wrong_if: c_uint,
    /// Expiry (unused on add).
    pub mfcc_expire: c_int,
}

/// `struct sioc_sg_req`, the argument of `SIOCGETSGCNT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct sioc_sg_req {
    /// S.
    pub src: in_addr,
    /// G.
    pub grp: in_addr,
    /// Packets forwarded.
    pub pktcnt: c_ulong,
    /// Bytes forwarded.
    pub bytecnt: c_ulong,
    /// Packets that arrived on a VIF other than the parent.
    pub wrong_if: c_ulong,
}

/// `struct sioc_vif_req`, the argument of `SIOCGETVIFCNT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct sioc_vif_req {
    /// VIF index.
    pub vifi: vifi_t,
    /// Packets in.
    pub icount: c_ulong,
    /// Packets out.
    pub ocount: c_ulong,
    /// Bytes in.
    pub ibytes: c_ulong,
    /// Bytes out.
    pub obytes: c_ulong,
}

/// `struct igmpmsg`, the upcall read from the mroute socket (20 bytes). It overlays an IPv4
/// header: `im_mbz` sits where a real packet has its protocol byte (2 for IGMP).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct igmpmsg {
    /// Unused (IPv4 header bytes 0..4).
    pub unused1: u32,
    /// Unused (IPv4 header bytes 4..8).
    pub unused2: u32,
    /// `IGMPMSG_*`.
    pub im_msgtype: u8,
    /// Always 0 in an upcall.
    pub im_mbz: u8,
    /// Low 8 bits of the VIF index.
    pub im_vif: u8,
    /// High 8 bits of the VIF index.
    pub im_vif_hi: u8,
    /// Source of the data packet.
    pub im_src: in_addr,
    /// Destination (group) of the data packet.
    pub im_dst: in_addr,
}

// ---------------------------------------------------------------------------------------------
// IPv6: <linux/mroute6.h>
// ---------------------------------------------------------------------------------------------

/// First MRT6 socket option number (level `IPPROTO_IPV6`).
pub const MRT6_BASE: c_int = 200;
/// Activate the kernel IPv6 mroute code. Socket must be `SOCK_RAW, IPPROTO_ICMPV6`.
pub const MRT6_INIT: c_int = MRT6_BASE;
/// Shut down: flushes this table's MIFs and MFC entries.
pub const MRT6_DONE: c_int = MRT6_BASE + 1;
/// Add a MIF ([`mif6ctl`]).
pub const MRT6_ADD_MIF: c_int = MRT6_BASE + 2;
/// Delete a MIF (a `mifi_t`).
pub const MRT6_DEL_MIF: c_int = MRT6_BASE + 3;
/// Add or replace an MFC entry ([`mf6cctl`]).
pub const MRT6_ADD_MFC: c_int = MRT6_BASE + 4;
/// Delete an MFC entry ([`mf6cctl`]).
pub const MRT6_DEL_MFC: c_int = MRT6_BASE + 5;
/// Get the kernel multicast version.
pub const MRT6_VERSION: c_int = MRT6_BASE + 6;
/// Activate PIM assert mode.
pub const MRT6_ASSERT: c_int = MRT6_BASE + 7;
/// Enable the kernel PIM code.
pub const MRT6_PIM: c_int = MRT6_BASE + 8;
/// Select the mroute table (u32); must be set before `MRT6_INIT`.
pub const MRT6_TABLE: c_int = MRT6_BASE + 9;
/// Add a (*,*|G) proxy MFC entry.
pub const MRT6_ADD_MFC_PROXY: c_int = MRT6_BASE + 10;
/// Delete a (*,*|G) proxy MFC entry.
pub const MRT6_DEL_MFC_PROXY: c_int = MRT6_BASE + 11;
/// Flush MFC entries and/or MIFs.
pub const MRT6_FLUSH: c_int = MRT6_BASE + 12;
/// Highest MRT6 option number.
pub const MRT6_MAX: c_int = MRT6_BASE + 12;

/// `MRT6_FLUSH` flag: flush multicast entries.
pub const MRT6_FLUSH_MFC: c_int = 1;
/// `MRT6_FLUSH` flag: flush static multicast entries.
pub const MRT6_FLUSH_MFC_STATIC: c_int = 2;
/// `MRT6_FLUSH` flag: flush MIFs.
pub const MRT6_FLUSH_MIFS: c_int = 4;
/// `MRT6_FLUSH` flag: flush static MIFs.
pub const MRT6_FLUSH_MIFS_STATIC: c_int = 8;

/// ioctl: per-MIF counters ([`sioc_mif_req6`]).
pub const SIOCGETMIFCNT_IN6: c_ulong = SIOCPROTOPRIVATE;
/// ioctl: per-(S,G) counters ([`sioc_sg_req6`]).
pub const SIOCGETSGCNT_IN6: c_ulong = SIOCPROTOPRIVATE + 1;

/// Number of MIFs per table.
pub const MAXMIFS: usize = 32;
/// MIF index type.
pub type mifi_t = u16;
/// "All MIFs" wildcard.
pub const ALL_MIFS: mifi_t = mifi_t::MAX;

/// MIF flag: PIM register MIF.
pub const MIFF_REGISTER: u8 = 0x1;

/// Upcall: data arrived on a MIF with no MFC entry.
pub const MRT6MSG_NOCACHE: u8 = 1;
/// Upcall: data arrived on a MIF other than the entry's parent (needs `MRT6_ASSERT`).
pub const MRT6MSG_WRONGMIF: u8 = 2;
/// Upcall: whole packet, for PIM Register processing.
pub const MRT6MSG_WHOLEPKT: u8 = 3;
/// Upcall: whole packet on the wrong MIF.
pub const MRT6MSG_WRMIFWHOLE: u8 = 4;

/// Bits in an [`if_set`].
pub const IF_SETSIZE: usize = 256;
/// Bits per `if_mask` word.
pub const NIFBITS: usize = 32;

/// `struct in6_addr` (16 bytes, 4-byte aligned like the kernel's union).
#[repr(C, align(4))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct in6_addr {
    /// The address bytes, network order.
    pub s6_addr: [u8; 16],
}

impl From<Ipv6Addr> for in6_addr {
    fn from(addr: Ipv6Addr) -> Self {
        in6_addr { s6_addr: addr.octets() }
    }
}

impl From<in6_addr> for Ipv6Addr {
    fn from(addr: in6_addr) -> Self {
        Ipv6Addr::from(addr.s6_addr)
    }
}

/// `struct sockaddr_in6` (28 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct sockaddr_in6 {
    /// `AF_INET6`.
    pub sin6_family: u16,
    /// Port, network order.
    pub sin6_port: u16,
    /// Flow information, network order.
    pub sin6_flowinfo: u32,
    /// The address.
    pub sin6_addr: in6_addr,
    /// Scope (interface) id.
    pub sin6_scope_id: u32,
}

impl From<Ipv6Addr> for sockaddr_in6 {
    fn from(addr: Ipv6Addr) -> Self {
        sockaddr_in6 { sin6_family: libc::AF_INET6 as u16, sin6_addr: addr.into(), ..Default::default() }
    }
}

/// `struct if_set`: a 256-bit set of MIF indexes (bit n set = forward on MIF n).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct if_set {
    /// The bit words.
    pub ifs_bits: [u32; IF_SETSIZE / NIFBITS],
}

impl if_set {
    /// `IF_SET(n, p)`.
    pub fn set(&mut self, n: usize) {
        self.ifs_bits[n / NIFBITS] |= 1 << (n % NIFBITS);
    }

    /// `IF_CLR(n, p)`.
    pub fn clear(&mut self, n: usize) {
        self.ifs_bits[n / NIFBITS] &= !(1 << (n % NIFBITS));
    }

    /// `IF_ISSET(n, p)`.
    pub fn is_set(&self, n: usize) -> bool {
        self.ifs_bits[n / NIFBITS] & (1 << (n % NIFBITS)) != 0
    }
}

/// `struct mif6ctl`, the argument of `MRT6_ADD_MIF` (12 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mif6ctl {
    /// MIF index.
    pub mif6c_mifi: mifi_t,
    /// `MIFF_*` flags.
    pub mif6c_flags: u8,
    /// TTL (hop limit) threshold.
    pub vifc_threshold: u8,
    /// Physical interface index. Only 16 bits: ifindexes above 65535 cannot be MIFs.
    pub mif6c_pifi: u16,
    /// Rate limit (not implemented).
    pub vifc_rate_limit: c_uint,
}

/// `struct mf6cctl`, the argument of `MRT6_ADD_MFC` / `MRT6_DEL_MFC` (92 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mf6cctl {
    /// S (`sin6_family` = `AF_INET6`).
    pub mf6cc_origin: sockaddr_in6,
    /// G.
    pub mf6cc_mcastgrp: sockaddr_in6,
    /// Incoming MIF.
    pub mf6cc_parent: mifi_t,
    /// Outgoing MIFs.
    pub mf6cc_ifset: if_set,
}

/// `struct sioc_sg_req6`, the argument of `SIOCGETSGCNT_IN6`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct sioc_sg_req6 {
    /// S.
    pub src: sockaddr_in6,
    /// G.
    pub grp: sockaddr_in6,
    /// Packets forwarded.
    pub pktcnt: c_ulong,
    /// Bytes forwarded.
    pub bytecnt: c_ulong,
    /// Packets that arrived on a MIF other than the parent.
    pub wrong_if: c_ulong,
}

/// `struct sioc_mif_req6`, the argument of `SIOCGETMIFCNT_IN6`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct sioc_mif_req6 {
    /// MIF index.
    pub mifi: mifi_t,
    /// Packets in.
    pub icount: c_ulong,
    /// Packets out.
    pub ocount: c_ulong,
    /// Bytes in.
    pub ibytes: c_ulong,
    /// Bytes out.
    pub obytes: c_ulong,
}

/// `struct mrt6msg`, the IPv6 upcall (40 bytes). It overlays an ICMPv6 header: `im6_mbz` sits
/// where ICMPv6 has its type, which is never 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct mrt6msg {
    /// Always 0 in an upcall.
    pub im6_mbz: u8,
    /// `MRT6MSG_*`.
    pub im6_msgtype: u8,
    /// MIF the packet arrived on.
    pub im6_mif: u16,
    /// Padding.
    pub im6_pad: u32,
    /// Source of the data packet.
    pub im6_src: in6_addr,
    /// Destination (group) of the data packet.
    pub im6_dst: in6_addr,
}

// ---------------------------------------------------------------------------------------------
// Odds and ends libc lacks (or that differ between libc targets)
// ---------------------------------------------------------------------------------------------

/// IP protocol number of PIM.
pub const IPPROTO_PIM: c_int = 103;
/// `ICMP6_FILTER` (level `IPPROTO_ICMPV6`), from `<netinet/icmp6.h>`.
pub const ICMP6_FILTER: c_int = 1;

/// `struct icmp6_filter`: bit n set = ICMPv6 type n is **blocked** (Linux semantics).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct icmp6_filter {
    /// The bit words.
    pub icmp6_filt: [u32; 8],
}

impl icmp6_filter {
    /// `ICMP6_FILTER_SETBLOCKALL`.
    pub const BLOCK_ALL: icmp6_filter = icmp6_filter { icmp6_filt: [u32::MAX; 8] };
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    // The numbers below are protocols.md §A6, verified there against the UAPI headers.

    #[test]
    fn vifctl_layout() {
        assert_eq!(size_of::<vifctl>(), 16);
        assert_eq!(offset_of!(vifctl, vifc_vifi), 0);
        assert_eq!(offset_of!(vifctl, vifc_flags), 2);
        assert_eq!(offset_of!(vifctl, vifc_threshold), 3);
        assert_eq!(offset_of!(vifctl, vifc_rate_limit), 4);
        assert_eq!(offset_of!(vifctl, vifc_lcl_ifindex), 8);
        assert_eq!(offset_of!(vifctl, vifc_rmt_addr), 12);
    }

    #[test]
    fn mfcctl_layout() {
        assert_eq!(size_of::<mfcctl>(), 60);
        assert_eq!(offset_of!(mfcctl, mfcc_origin), 0);
        assert_eq!(offset_of!(mfcctl, mfcc_mcastgrp), 4);
        assert_eq!(offset_of!(mfcctl, mfcc_parent), 8);
        assert_eq!(offset_of!(mfcctl, mfcc_ttls), 10);
        assert_eq!(offset_of!(mfcctl, mfcc_pkt_cnt), 44);
        assert_eq!(offset_of!(mfcctl, mfcc_byte_cnt), 48);
        assert_eq!(offset_of!(mfcctl, mfcc_wrong_if), 52);
        assert_eq!(offset_of!(mfcctl, mfcc_expire), 56);
    }

    #[test]
    fn igmpmsg_layout() {
        assert_eq!(size_of::<igmpmsg>(), 20);
        assert_eq!(offset_of!(igmpmsg, unused1), 0);
        assert_eq!(offset_of!(igmpmsg, unused2), 4);
        assert_eq!(offset_of!(igmpmsg, im_msgtype), 8);
        assert_eq!(offset_of!(igmpmsg, im_mbz), 9);
        assert_eq!(offset_of!(igmpmsg, im_vif), 10);
        assert_eq!(offset_of!(igmpmsg, im_vif_hi), 11);
        assert_eq!(offset_of!(igmpmsg, im_src), 12);
        assert_eq!(offset_of!(igmpmsg, im_dst), 16);
    }

    #[test]
    fn mif6ctl_layout() {
        assert_eq!(size_of::<mif6ctl>(), 12);
        assert_eq!(offset_of!(mif6ctl, mif6c_mifi), 0);
        assert_eq!(offset_of!(mif6ctl, mif6c_flags), 2);
        assert_eq!(offset_of!(mif6ctl, vifc_threshold), 3);
        assert_eq!(offset_of!(mif6ctl, mif6c_pifi), 4);
        assert_eq!(offset_of!(mif6ctl, vifc_rate_limit), 8);
    }

    #[test]
    fn sockaddr_in6_layout() {
        assert_eq!(size_of::<sockaddr_in6>(), 28);
        assert_eq!(size_of::<sockaddr_in6>(), size_of::<libc::sockaddr_in6>());
        assert_eq!(offset_of!(sockaddr_in6, sin6_family), 0);
        assert_eq!(offset_of!(sockaddr_in6, sin6_port), 2);
        assert_eq!(offset_of!(sockaddr_in6, sin6_flowinfo), 4);
        assert_eq!(offset_of!(sockaddr_in6, sin6_addr), 8);
        assert_eq!(offset_of!(sockaddr_in6, sin6_scope_id), 24);
        assert_eq!(size_of::<in6_addr>(), 16);
        assert_eq!(core::mem::align_of::<in6_addr>(), 4);
    }

    #[test]
    fn mf6cctl_layout() {
        assert_eq!(size_of::<mf6cctl>(), 92);
        assert_eq!(offset_of!(mf6cctl, mf6cc_origin), 0);
        assert_eq!(offset_of!(mf6cctl, mf6cc_mcastgrp), 28);
        assert_eq!(offset_of!(mf6cctl, mf6cc_parent), 56);
        assert_eq!(offset_of!(mf6cctl, mf6cc_ifset), 60);
        assert_eq!(size_of::<if_set>(), 32);
    }

    #[test]
    fn mrt6msg_layout() {
        assert_eq!(size_of::<mrt6msg>(), 40);
        assert_eq!(offset_of!(mrt6msg, im6_mbz), 0);
        assert_eq!(offset_of!(mrt6msg, im6_msgtype), 1);
        assert_eq!(offset_of!(mrt6msg, im6_mif), 2);
        assert_eq!(offset_of!(mrt6msg, im6_pad), 4);
        assert_eq!(offset_of!(mrt6msg, im6_src), 8);
        assert_eq!(offset_of!(mrt6msg, im6_dst), 24);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn counter_requests_layout_lp64() {
        assert_eq!(size_of::<sioc_sg_req>(), 32);
        assert_eq!(offset_of!(sioc_sg_req, src), 0);
        assert_eq!(offset_of!(sioc_sg_req, grp), 4);
        assert_eq!(offset_of!(sioc_sg_req, pktcnt), 8);
        assert_eq!(offset_of!(sioc_sg_req, bytecnt), 16);
        assert_eq!(offset_of!(sioc_sg_req, wrong_if), 24);

        assert_eq!(size_of::<sioc_vif_req>(), 40);
        assert_eq!(offset_of!(sioc_vif_req, vifi), 0);
        assert_eq!(offset_of!(sioc_vif_req, icount), 8);
        assert_eq!(offset_of!(sioc_vif_req, ocount), 16);
        assert_eq!(offset_of!(sioc_vif_req, ibytes), 24);
        assert_eq!(offset_of!(sioc_vif_req, obytes), 32);

        assert_eq!(size_of::<sioc_sg_req6>(), 80);
        assert_eq!(offset_of!(sioc_sg_req6, src), 0);
        assert_eq!(offset_of!(sioc_sg_req6, grp), 28);
        assert_eq!(offset_of!(sioc_sg_req6, pktcnt), 56);
        assert_eq!(offset_of!(sioc_sg_req6, bytecnt), 64);
        assert_eq!(offset_of!(sioc_sg_req6, wrong_if), 72);

        assert_eq!(size_of::<sioc_mif_req6>(), 40);
        assert_eq!(offset_of!(sioc_mif_req6, mifi), 0);
        assert_eq!(offset_of!(sioc_mif_req6, icount), 8);
        assert_eq!(offset_of!(sioc_mif_req6, obytes), 32);
    }

    #[test]
    fn constants_match_protocols_md() {
        assert_eq!(
            [
                MRT_INIT,
                MRT_DONE,
                MRT_ADD_VIF,
                MRT_DEL_VIF,
                MRT_ADD_MFC,
                MRT_DEL_MFC,
                MRT_VERSION,
                MRT_ASSERT,
                MRT_PIM,
                MRT_TABLE,
                MRT_ADD_MFC_PROXY,
                MRT_DEL_MFC_PROXY,
                MRT_FLUSH
            ],
            [200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212]
        );
        assert_eq!(
            [
                MRT6_INIT,
                MRT6_DONE,
                MRT6_ADD_MIF,
                MRT6_DEL_MIF,
                MRT6_ADD_MFC,
                MRT6_DEL_MFC,
                MRT6_VERSION,
                MRT6_ASSERT,
                MRT6_PIM,
                MRT6_TABLE,
                MRT6_ADD_MFC_PROXY,
                MRT6_DEL_MFC_PROXY,
                MRT6_FLUSH
            ],
            [200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212]
        );
        assert_eq!((MAXVIFS, MAXMIFS), (32, 32));
        assert_eq!((VIFF_TUNNEL, VIFF_REGISTER, VIFF_USE_IFINDEX, MIFF_REGISTER), (1, 4, 8, 1));
        assert_eq!([IGMPMSG_NOCACHE, IGMPMSG_WRONGVIF, IGMPMSG_WHOLEPKT, IGMPMSG_WRVIFWHOLE], [1, 2, 3, 4]);
        assert_eq!([MRT6MSG_NOCACHE, MRT6MSG_WRONGMIF, MRT6MSG_WHOLEPKT, MRT6MSG_WRMIFWHOLE], [1, 2, 3, 4]);
        assert_eq!(
            (SIOCGETVIFCNT, SIOCGETSGCNT, SIOCGETMIFCNT_IN6, SIOCGETSGCNT_IN6),
            (0x89E0, 0x89E1, 0x89E0, 0x89E1)
        );
    }

    #[test]
    fn address_conversions_keep_network_order() {
        let a = in_addr::from(Ipv4Addr::new(232, 1, 2, 3));
        assert_eq!(a.s_addr.to_ne_bytes(), [232, 1, 2, 3]);
        assert_eq!(Ipv4Addr::from(a), Ipv4Addr::new(232, 1, 2, 3));
        let s6 = sockaddr_in6::from("ff3e::8000:1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(s6.sin6_family, libc::AF_INET6 as u16);
        assert_eq!(s6.sin6_addr.s6_addr[0], 0xff);
        let mut v = vifctl::default();
        v.set_lcl_addr(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(v.vifc_lcl_ifindex.to_ne_bytes(), [10, 0, 0, 1]);
    }

    #[test]
    fn if_set_bits() {
        let mut s = if_set::default();
        s.set(0);
        s.set(31);
        s.set(33);
        assert_eq!(s.ifs_bits[0], 0x8000_0001);
        assert_eq!(s.ifs_bits[1], 0x2);
        assert!(s.is_set(33) && !s.is_set(32));
        s.clear(31);
        assert_eq!(s.ifs_bits[0], 1);
    }

    /// Compiles a C program against the installed UAPI headers and compares every size and
    /// offset with ours. Skips (with a message) when there is no C compiler or no headers.
    #[test]
    fn layouts_match_installed_uapi_headers() {
        let headers = ["/usr/include/linux/mroute.h", "/usr/include/linux/mroute6.h"];
        if headers.iter().any(|h| !std::path::Path::new(h).exists()) {
            eprintln!("SKIP layouts_match_installed_uapi_headers: kernel UAPI headers not installed");
            return;
        }
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let dir = std::env::temp_dir().join(format!("mcast-mroute-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("layout.c");
        let exe = dir.join("layout");

        let mut checks: Vec<(String, usize)> = Vec::new();
        macro_rules! size {
            ($t:ident) => {
                checks.push((format!("sizeof(struct {})", stringify!($t)), size_of::<$t>()));
            };
        }
        macro_rules! off {
            ($t:ident, $f:ident) => {
                checks.push((format!("offsetof(struct {}, {})", stringify!($t), stringify!($f)), offset_of!($t, $f)));
            };
        }
        size!(vifctl);
        off!(vifctl, vifc_vifi);
        off!(vifctl, vifc_flags);
        off!(vifctl, vifc_threshold);
        off!(vifctl, vifc_rate_limit);
        off!(vifctl, vifc_lcl_ifindex);
        off!(vifctl, vifc_rmt_addr);
        size!(mfcctl);
        off!(mfcctl, mfcc_origin);
        off!(mfcctl, mfcc_mcastgrp);
        off!(mfcctl, mfcc_parent);
        off!(mfcctl, mfcc_ttls);
        off!(mfcctl, mfcc_pkt_cnt);
        off!(mfcctl, mfcc_byte_cnt);
        off!(mfcctl, mfcc_wrong_if);
        off!(mfcctl, mfcc_expire);
        size!(sioc_sg_req);
        off!(sioc_sg_req, src);
        off!(sioc_sg_req, grp);
        off!(sioc_sg_req, pktcnt);
        off!(sioc_sg_req, bytecnt);
        off!(sioc_sg_req, wrong_if);
        size!(sioc_vif_req);
        off!(sioc_vif_req, vifi);
        off!(sioc_vif_req, icount);
        off!(sioc_vif_req, ocount);
        off!(sioc_vif_req, ibytes);
        off!(sioc_vif_req, obytes);
        size!(igmpmsg);
        off!(igmpmsg, im_msgtype);
        off!(igmpmsg, im_mbz);
        off!(igmpmsg, im_vif);
        off!(igmpmsg, im_vif_hi);
        off!(igmpmsg, im_src);
        off!(igmpmsg, im_dst);
        size!(mif6ctl);
        off!(mif6ctl, mif6c_mifi);
        off!(mif6ctl, mif6c_flags);
        off!(mif6ctl, vifc_threshold);
        off!(mif6ctl, mif6c_pifi);
        off!(mif6ctl, vifc_rate_limit);
        size!(mf6cctl);
        off!(mf6cctl, mf6cc_origin);
        off!(mf6cctl, mf6cc_mcastgrp);
        off!(mf6cctl, mf6cc_parent);
        off!(mf6cctl, mf6cc_ifset);
        size!(if_set);
        size!(sioc_sg_req6);
        off!(sioc_sg_req6, src);
        off!(sioc_sg_req6, grp);
        off!(sioc_sg_req6, pktcnt);
        off!(sioc_sg_req6, bytecnt);
        off!(sioc_sg_req6, wrong_if);
        size!(sioc_mif_req6);
        off!(sioc_mif_req6, mifi);
        off!(sioc_mif_req6, icount);
        off!(sioc_mif_req6, ocount);
        off!(sioc_mif_req6, ibytes);
        off!(sioc_mif_req6, obytes);
        size!(mrt6msg);
        off!(mrt6msg, im6_mbz);
        off!(mrt6msg, im6_msgtype);
        off!(mrt6msg, im6_mif);
        off!(mrt6msg, im6_pad);
        off!(mrt6msg, im6_src);
        off!(mrt6msg, im6_dst);
        size!(sockaddr_in6);
        size!(icmp6_filter);
        let constants: [(&str, i64); 25] = [
            ("MRT_INIT", MRT_INIT.into()),
            ("MRT_DONE", MRT_DONE.into()),
            ("MRT_ADD_VIF", MRT_ADD_VIF.into()),
            ("MRT_DEL_VIF", MRT_DEL_VIF.into()),
            ("MRT_ADD_MFC", MRT_ADD_MFC.into()),
            ("MRT_DEL_MFC", MRT_DEL_MFC.into()),
            ("MRT_TABLE", MRT_TABLE.into()),
            ("MRT_FLUSH", MRT_FLUSH.into()),
            ("MRT6_INIT", MRT6_INIT.into()),
            ("MRT6_ADD_MIF", MRT6_ADD_MIF.into()),
            ("MRT6_ADD_MFC", MRT6_ADD_MFC.into()),
            ("MRT6_TABLE", MRT6_TABLE.into()),
            ("MAXVIFS", MAXVIFS as i64),
            ("MAXMIFS", MAXMIFS as i64),
            ("VIFF_USE_IFINDEX", VIFF_USE_IFINDEX.into()),
            ("VIFF_REGISTER", VIFF_REGISTER.into()),
            ("MIFF_REGISTER", MIFF_REGISTER.into()),
            ("IGMPMSG_WRVIFWHOLE", IGMPMSG_WRVIFWHOLE.into()),
            ("MRT6MSG_WRMIFWHOLE", MRT6MSG_WRMIFWHOLE.into()),
            ("SIOCGETVIFCNT", SIOCGETVIFCNT as i64),
            ("SIOCGETSGCNT", SIOCGETSGCNT as i64),
            ("SIOCGETMIFCNT_IN6", SIOCGETMIFCNT_IN6 as i64),
            ("SIOCGETSGCNT_IN6", SIOCGETSGCNT_IN6 as i64),
            ("IPPROTO_PIM", IPPROTO_PIM.into()),
            ("ICMP6_FILTER", ICMP6_FILTER.into()),
        ];
        for (name, value) in constants {
            checks.push((name.to_owned(), value as usize));
        }

        let mut program = String::from(
            "#include <stddef.h>\n#include <stdio.h>\n#include <netinet/in.h>\n#include <netinet/icmp6.h>\n\
             #include <linux/mroute.h>\n#include <linux/mroute6.h>\nint main(void) {\n",
        );
        for (expr, _) in &checks {
            program.push_str(&format!("    printf(\"%lu\\n\", (unsigned long)({expr}));\n"));
        }
        program.push_str("    return 0;\n}\n");
        std::fs::write(&src, program).unwrap();

        let compiled = std::process::Command::new(&cc).arg("-o").arg(&exe).arg(&src).output();
        let compiled = match compiled {
            Ok(out) => out,
            Err(e) => {
                eprintln!("SKIP layouts_match_installed_uapi_headers: no C compiler ({cc}: {e})");
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
        };
        assert!(compiled.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&compiled.stderr));
        let out = std::process::Command::new(&exe).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<usize> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(lines.len(), checks.len());
        for ((expr, ours), theirs) in checks.iter().zip(lines) {
            assert_eq!(*ours, theirs, "{expr}: Rust says {ours}, the C headers say {theirs}");
        }
    }
}
