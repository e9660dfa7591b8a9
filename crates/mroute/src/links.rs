//! A NETLINK_ROUTE watcher of links and their addresses.
//!
//! [`LinkWatcher::new`] subscribes to `RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR` and
//! `RTMGRP_IPV6_IFADDR` *first* and dumps links and addresses *second*, so no change falls in
//! between; [`LinkWatcher::snapshot`] is that dump kept current by every event returned since.
//! [`LinkWatcher::next`] returns [`LinkEvent`]s; they are deduplicated against the snapshot (a
//! link's statistics update produces no event) and have upsert meaning: `Added` is also sent
//! when a known link changes its up/running state, and a rename is sent as `Removed` (old name)
//! then `Added` (new name), so consumers keyed by name stay right. If the kernel drops
//! notifications (`ENOBUFS`: the socket buffer overflowed), the watcher dumps again and sends
//! the difference as events, so the stream stays consistent.
//!
//! Everything applies to the network namespace the watcher was created in.
//!
//! pimwatch uses [`Snapshot::primary_ipv4`] and [`Snapshot::ipv6_link_local`] for its
//! interfaces' PIM source addresses, and the `Added`/`Removed` events (through
//! [`crate::ForwardingState::on_link_event`]) to follow the TUN coming and going.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A change of links or addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link appeared, or its `up`/`running` state changed (upsert).
    Added {
        /// Interface name.
        name: String,
        /// Interface index.
        ifindex: u32,
        /// Administratively up (`IFF_UP`).
        up: bool,
        /// Operationally up (`IFF_RUNNING`: up with carrier; a TUN only while a process holds it).
        running: bool,
    },
    /// A link went away (or was renamed away from `name`, or moved to another namespace).
    Removed {
        /// Interface name.
        name: String,
        /// Interface index.
        ifindex: u32,
    },
    /// An address appeared, or its tentative state changed (upsert).
    AddressAdded {
        /// Interface index.
        ifindex: u32,
        /// The local address.
        addr: IpAddr,
        /// Prefix length.
        prefix_len: u8,
        /// IPv6 duplicate address detection is still running (`IFA_F_TENTATIVE`): the address
        /// cannot be used as a source yet. An `AddressAdded` with `tentative: false` follows.
        tentative: bool,
    },
    /// An address went away.
    AddressRemoved {
        /// Interface index.
        ifindex: u32,
        /// The local address.
        addr: IpAddr,
        /// Prefix length.
        prefix_len: u8,
    },
}

/// A link as the snapshot knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// `IFF_UP`.
    pub up: bool,
    /// `IFF_RUNNING`.
    pub running: bool,
}

/// An address as the snapshot knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Interface index.
    pub ifindex: u32,
    /// The local address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// `IFA_F_TENTATIVE`.
    pub tentative: bool,
    /// `IFA_F_SECONDARY` (IPv4: not the primary address of its subnet).
    pub secondary: bool,
}

impl Address {
    fn same_key(&self, other: &Address) -> bool {
        self.ifindex == other.ifindex && self.addr == other.addr && self.prefix_len == other.prefix_len
    }
}

/// Links and addresses of a namespace at one moment. Addresses keep the kernel's order (a
/// new address is appended), so the first non-secondary IPv4 address is the primary one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Links by ifindex.
    pub links: BTreeMap<u32, Link>,
    /// Addresses, in the kernel's order.
    pub addresses: Vec<Address>,
}

impl Snapshot {
    /// The link called `name`.
    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.values().find(|l| l.name == name)
    }

    /// The addresses of `ifindex`.
    pub fn addresses_of(&self, ifindex: u32) -> impl Iterator<Item = &Address> {
        self.addresses.iter().filter(move |a| a.ifindex == ifindex)
    }

    /// The primary IPv4 address of `ifindex`: its first non-secondary IPv4 address.
    pub fn primary_ipv4(&self, ifindex: u32) -> Option<Ipv4Addr> {
        self.addresses_of(ifindex).find_map(|a| match a.addr {
            IpAddr::V4(v4) if !a.secondary => Some(v4),
            _ => None,
        })
    }

    /// The usable (not tentative) IPv6 link-local address of `ifindex`.
    pub fn ipv6_link_local(&self, ifindex: u32) -> Option<Ipv6Addr> {
        self.addresses_of(ifindex).find_map(|a| match a.addr {
            IpAddr::V6(v6) if v6.is_unicast_link_local() && !a.tentative => Some(v6),
            _ => None,
        })
    }

    fn upsert_link(&mut self, link: Link, events: &mut Vec<LinkEvent>) {
        match self.links.get(&link.ifindex) {
            Some(old) if *old == link => return,
            Some(old) if old.name != link.name => {
                events.push(LinkEvent::Removed { name: old.name.clone(), ifindex: old.ifindex });
            }
            _ => {}
        }
        events.push(LinkEvent::Added {
            name: link.name.clone(),
            ifindex: link.ifindex,
            up: link.up,
            running: link.running,
        });
        self.links.insert(link.ifindex, link);
    }

    fn remove_link(&mut self, ifindex: u32, events: &mut Vec<LinkEvent>) {
        if let Some(old) = self.links.remove(&ifindex) {
            // The kernel reports address removals before the link's; drop any left silently.
            self.addresses.retain(|a| a.ifindex != ifindex);
            events.push(LinkEvent::Removed { name: old.name, ifindex });
        }
    }

    fn upsert_address(&mut self, addr: Address, events: &mut Vec<LinkEvent>) {
        if let Some(old) = self.addresses.iter_mut().find(|a| a.same_key(&addr)) {
            if *old == addr {
                return;
            }
            *old = addr.clone();
        } else {
            self.addresses.push(addr.clone());
        }
        events.push(LinkEvent::AddressAdded {
            ifindex: addr.ifindex,
            addr: addr.addr,
            prefix_len: addr.prefix_len,
            tentative: addr.tentative,
        });
    }

    fn remove_address(&mut self, addr: &Address, events: &mut Vec<LinkEvent>) {
        if let Some(pos) = self.addresses.iter().position(|a| a.same_key(addr)) {
            let old = self.addresses.remove(pos);
            events.push(LinkEvent::AddressRemoved { ifindex: old.ifindex, addr: old.addr, prefix_len: old.prefix_len });
        }
    }

    /// Applies one rtnetlink message; returns the resulting events.
    pub fn apply_message(&mut self, msg: &RouteNetlinkMessage) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        match msg {
            RouteNetlinkMessage::NewLink(m) => {
                if let Some(link) = parse_link(m) {
                    self.upsert_link(link, &mut events);
                }
            }
            // AF_BRIDGE and other per-family notifications (a port leaving a bridge) are not
            // the link going away.
            RouteNetlinkMessage::DelLink(m) if m.header.interface_family == AddressFamily::Unspec => {
                self.remove_link(m.header.index, &mut events);
            }
            RouteNetlinkMessage::NewAddress(m) => {
                if let Some(addr) = parse_address(m) {
                    self.upsert_address(addr, &mut events);
                }
            }
            RouteNetlinkMessage::DelAddress(m) => {
                if let Some(addr) = parse_address(m) {
                    self.remove_address(&addr, &mut events);
                }
            }
            _ => {}
        }
        events
    }

    /// Replaces this snapshot by `new`, returning the events that describe the difference.
    pub fn replace_with(&mut self, new: Snapshot) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        let gone: Vec<u32> = self.links.keys().filter(|i| !new.links.contains_key(i)).copied().collect();
        for ifindex in gone {
            self.remove_link(ifindex, &mut events);
        }
        let gone: Vec<Address> =
            self.addresses.iter().filter(|a| !new.addresses.iter().any(|n| n.same_key(a))).cloned().collect();
        for addr in gone {
            self.remove_address(&addr, &mut events);
        }
        for link in new.links.into_values() {
            self.upsert_link(link, &mut events);
        }
        for addr in new.addresses {
            self.upsert_address(addr, &mut events);
        }
        events
    }
}

fn parse_link(m: &LinkMessage) -> Option<Link> {
    if m.header.interface_family != AddressFamily::Unspec {
        return None;
    }
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    Some(Link {
        name,
        ifindex: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        running: m.header.flags.contains(LinkFlags::Running),
    })
}

fn parse_address(m: &AddressMessage) -> Option<Address> {
    if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
        return None;
    }
    let mut local = None;
    let mut address = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
    for attr in &m.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    // IFA_LOCAL is the local address when present (IPv4 always, IPv6 point-to-point);
    // otherwise IFA_ADDRESS is.
    let addr = local.or(address)?;
    Some(Address {
        ifindex: m.header.index,
        addr,
        prefix_len: m.header.prefix_len,
        tentative: flags.contains(AddressFlags::Tentative),
        secondary: flags.contains(AddressFlags::Secondary) || m.header.flags.contains(AddressHeaderFlags::Secondary),
    })
}

// ---------------------------------------------------------------------------------------------
// Netlink I/O
// ---------------------------------------------------------------------------------------------

const RECV_BUF: usize = 64 * 1024;

fn recv_datagram(socket: &Socket, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    buf.reserve(RECV_BUF);
    let n = socket.recv(buf, libc::MSG_TRUNC)?;
    if n > buf.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "netlink datagram truncated"));
    }
    Ok(n)
}

/// Splits a datagram into netlink messages. Messages that fail to parse are skipped (a newer
/// kernel attribute the crate cannot decode must not stop the watcher).
fn messages(mut data: &[u8]) -> Vec<NetlinkMessage<RouteNetlinkMessage>> {
    let mut out = Vec::new();
    while data.len() >= 16 {
        let len = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len < 16 || len > data.len() {
            break;
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..len]) {
            Ok(msg) => out.push(msg),
            Err(e) => tracing::debug!(error = %e, "skipping an undecodable rtnetlink message"),
        }
        let aligned = (len + 3) & !3;
        data = &data[aligned.min(data.len())..];
    }
    out
}

/// Sends one dump request and feeds every answer into `snapshot`. Returns whether the dump was
/// interrupted by a concurrent change (`NLM_F_DUMP_INTR`) and must be repeated.
fn dump_into(socket: &Socket, request: RouteNetlinkMessage, seq: u32, snapshot: &mut Snapshot) -> io::Result<bool> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(request));
    msg.finalize();
    let mut out = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut out);
    socket.send(&out, 0)?;

    let mut interrupted = false;
    let mut buf = Vec::new();
    loop {
        let n = recv_datagram(socket, &mut buf)?;
        for msg in messages(&buf[..n]) {
            if msg.header.sequence_number != seq {
                continue;
            }
            interrupted |= msg.header.flags & NLM_F_DUMP_INTR != 0;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(interrupted),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::InnerMessage(inner) => {
                    snapshot.apply_message(&inner);
                }
                _ => {}
            }
        }
    }
}

/// Dumps the links and addresses of the current network namespace (blocking; the kernel
/// answers at once).
pub fn snapshot() -> io::Result<Snapshot> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    for attempt in 0u32..10 {
        let mut snap = Snapshot::default();
        let seq = attempt * 2 + 1;
        let interrupted = dump_into(&socket, RouteNetlinkMessage::GetLink(LinkMessage::default()), seq, &mut snap)?
            | dump_into(&socket, RouteNetlinkMessage::GetAddress(AddressMessage::default()), seq + 1, &mut snap)?;
        if !interrupted {
            return Ok(snap);
        }
        tracing::debug!(attempt, "rtnetlink dump interrupted by a change; dumping again");
    }
    Err(io::Error::other("rtnetlink dump kept being interrupted"))
}

/// Watches links and addresses; see the module docs.
#[derive(Debug)]
pub struct LinkWatcher {
    socket: AsyncFd<Socket>,
    state: Snapshot,
    pending: VecDeque<LinkEvent>,
    buf: Vec<u8>,
    resyncs: u64,
}

impl LinkWatcher {
    /// Subscribes, then dumps the current state. Must be called inside a tokio runtime.
    pub fn new() -> io::Result<LinkWatcher> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        let groups = libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR;
        socket.bind(&SocketAddr::new(0, groups as u32))?;
        // A roomy buffer makes overruns (and the resulting re-dumps) rare.
        if let Err(e) = socket.set_rx_buf_sz(4 * 1024 * 1024) {
            tracing::debug!(error = %e, "could not enlarge the rtnetlink socket buffer");
        }
        socket.set_non_blocking(true)?;
        let socket = crate::ffi::async_fd(socket, Interest::READABLE)?;
        let state = snapshot()?;
        Ok(LinkWatcher { socket, state, pending: VecDeque::new(), buf: Vec::new(), resyncs: 0 })
    }

    /// The links and addresses, as of the events returned so far.
    pub fn snapshot(&self) -> &Snapshot {
        &self.state
    }

    /// How many times notifications were lost and the state was dumped again.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Waits for the next change. Cancel-safe (for `tokio::select!`): an event is never lost
    /// by dropping the future.
    pub async fn next(&mut self) -> io::Result<LinkEvent> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let mut guard = self.socket.readable().await?;
            match recv_datagram(guard.get_inner(), &mut self.buf) {
                Ok(n) => {
                    let data = std::mem::take(&mut self.buf);
                    self.ingest(&data[..n])?;
                    self.buf = data;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.resync()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns a pending change without waiting.
    pub fn try_next(&mut self) -> io::Result<Option<LinkEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            match recv_datagram(self.socket.get_ref(), &mut self.buf) {
                Ok(n) => {
                    let data = std::mem::take(&mut self.buf);
                    self.ingest(&data[..n])?;
                    self.buf = data;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => self.resync()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn ingest(&mut self, data: &[u8]) -> io::Result<()> {
        for msg in messages(data) {
            match msg.payload {
                NetlinkPayload::InnerMessage(inner) => self.pending.extend(self.state.apply_message(&inner)),
                NetlinkPayload::Overrun(_) => self.resync()?,
                _ => {}
            }
        }
        Ok(())
    }

    fn resync(&mut self) -> io::Result<()> {
        self.resyncs += 1;
        tracing::warn!("rtnetlink notifications were lost (ENOBUFS); dumping links and addresses again");
        let fresh = snapshot()?;
        self.pending.extend(self.state.replace_with(fresh));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::address::AddressHeaderFlags;

    use super::*;

    fn link_msg(index: u32, name: &str, flags: LinkFlags) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m
    }

    fn addr_msg(index: u32, addr: &str, prefix_len: u8, flags: AddressFlags) -> AddressMessage {
        let addr: IpAddr = addr.parse().unwrap();
        let mut m = AddressMessage::default();
        m.header.family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        m.header.index = index;
        m.header.prefix_len = prefix_len;
        m.header.flags = AddressHeaderFlags::from_bits_retain(flags.bits() as u8);
        m.attributes.push(AddressAttribute::Address(addr));
        if addr.is_ipv4() {
            m.attributes.push(AddressAttribute::Local(addr));
        }
        m.attributes.push(AddressAttribute::Flags(flags));
        m
    }

    #[test]
    fn link_events_are_deduplicated_and_upserted() {
        let mut s = Snapshot::default();
        let up = LinkFlags::Up | LinkFlags::Running;
        let ev = s.apply_message(&RouteNetlinkMessage::NewLink(link_msg(5, "tun0", LinkFlags::empty())));
        assert_eq!(ev, vec![LinkEvent::Added { name: "tun0".into(), ifindex: 5, up: false, running: false }]);
        // The same again (a statistics update): nothing.
        assert!(s.apply_message(&RouteNetlinkMessage::NewLink(link_msg(5, "tun0", LinkFlags::empty()))).is_empty());
        let ev = s.apply_message(&RouteNetlinkMessage::NewLink(link_msg(5, "tun0", up)));
        assert_eq!(ev, vec![LinkEvent::Added { name: "tun0".into(), ifindex: 5, up: true, running: true }]);
        // Rename.
        let ev = s.apply_message(&RouteNetlinkMessage::NewLink(link_msg(5, "native", up)));
        assert_eq!(
            ev,
            vec![
                LinkEvent::Removed { name: "tun0".into(), ifindex: 5 },
                LinkEvent::Added { name: "native".into(), ifindex: 5, up: true, running: true }
            ]
        );
        // A bridge-family delete is not the link going away.
        let mut bridge = link_msg(5, "native", up);
        bridge.header.interface_family = AddressFamily::Bridge;
        assert!(s.apply_message(&RouteNetlinkMessage::DelLink(bridge)).is_empty());
        let ev = s.apply_message(&RouteNetlinkMessage::DelLink(link_msg(5, "native", up)));
        assert_eq!(ev, vec![LinkEvent::Removed { name: "native".into(), ifindex: 5 }]);
        assert!(s.apply_message(&RouteNetlinkMessage::DelLink(link_msg(5, "native", up))).is_empty());
    }

    #[test]
    fn addresses_primary_and_link_local() {
        let mut s = Snapshot::default();
        s.apply_message(&RouteNetlinkMessage::NewLink(link_msg(3, "eth0", LinkFlags::Up)));
        let ev =
            s.apply_message(&RouteNetlinkMessage::NewAddress(addr_msg(3, "10.9.1.2", 24, AddressFlags::Permanent)));
        assert_eq!(
            ev,
            vec![LinkEvent::AddressAdded {
                ifindex: 3,
                addr: "10.9.1.2".parse().unwrap(),
                prefix_len: 24,
                tentative: false
            }]
        );
        s.apply_message(&RouteNetlinkMessage::NewAddress(addr_msg(3, "10.9.1.3", 24, AddressFlags::Secondary)));
        assert_eq!(s.primary_ipv4(3), Some(Ipv4Addr::new(10, 9, 1, 2)));

        let ll = "fe80::1";
        let ev = s.apply_message(&RouteNetlinkMessage::NewAddress(addr_msg(3, ll, 64, AddressFlags::Tentative)));
        assert!(matches!(ev[..], [LinkEvent::AddressAdded { tentative: true, .. }]));
        assert_eq!(s.ipv6_link_local(3), None, "tentative addresses are not usable");
        let ev = s.apply_message(&RouteNetlinkMessage::NewAddress(addr_msg(3, ll, 64, AddressFlags::Permanent)));
        assert!(matches!(ev[..], [LinkEvent::AddressAdded { tentative: false, .. }]));
        assert_eq!(s.ipv6_link_local(3), Some("fe80::1".parse().unwrap()));

        let ev = s.apply_message(&RouteNetlinkMessage::DelAddress(addr_msg(3, "10.9.1.2", 24, AddressFlags::empty())));
        assert_eq!(
            ev,
            vec![LinkEvent::AddressRemoved { ifindex: 3, addr: "10.9.1.2".parse().unwrap(), prefix_len: 24 }]
        );
        // (The kernel promotes the secondary with its own NEWADDR; not modelled here.)
        s.apply_message(&RouteNetlinkMessage::DelLink(link_msg(3, "eth0", LinkFlags::Up)));
        assert!(s.addresses.is_empty());
    }

    #[test]
    fn resync_diff() {
        let mut old = Snapshot::default();
        old.apply_message(&RouteNetlinkMessage::NewLink(link_msg(1, "lo", LinkFlags::Up)));
        old.apply_message(&RouteNetlinkMessage::NewLink(link_msg(7, "tun0", LinkFlags::Up)));
        old.apply_message(&RouteNetlinkMessage::NewAddress(addr_msg(7, "10.0.0.1", 24, AddressFlags::Permanent)));
        let mut new = Snapshot::default();
        new.apply_message(&RouteNetlinkMessage::NewLink(link_msg(1, "lo", LinkFlags::Up)));
        new.apply_message(&RouteNetlinkMessage::NewLink(link_msg(9, "tun0", LinkFlags::Up)));
        let ev = old.replace_with(new.clone());
        assert_eq!(
            ev,
            vec![
                LinkEvent::Removed { name: "tun0".into(), ifindex: 7 },
                LinkEvent::Added { name: "tun0".into(), ifindex: 9, up: true, running: false }
            ]
        );
        assert_eq!(old, new);
    }

    #[test]
    fn datagram_splitting_skips_garbage() {
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::NewLink(link_msg(2, "a", LinkFlags::Up))),
        );
        m.finalize();
        let mut one = vec![0u8; m.buffer_len()];
        m.serialize(&mut one);
        let mut two = one.clone();
        while two.len() % 4 != 0 {
            two.push(0);
        }
        two.extend_from_slice(&one);
        assert_eq!(messages(&two).len(), 2);
        assert!(messages(&[1, 2, 3]).is_empty());
        let mut bad = one.clone();
        bad[0] = 200; // length beyond the buffer
        assert!(messages(&bad).is_empty());
    }
}
