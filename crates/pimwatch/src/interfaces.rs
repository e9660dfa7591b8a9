//! The downstream interfaces: which exist, their PIM addresses, and one raw PIM socket per
//! interface and family, each with a reader task feeding the daemon's loop.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use mcast_mroute::links::Snapshot;
use mcast_mroute::pim::PimSocket;
use mcast_pim::{Family, InterfaceId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// A PIM message read from a socket.
#[derive(Debug)]
pub struct Received {
    pub interface: InterfaceId,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub payload: Vec<u8>,
}

/// PIM running on one interface in one family.
#[derive(Debug)]
pub struct Attached {
    pub id: InterfaceId,
    pub primary: IpAddr,
    pub secondary: Vec<IpAddr>,
    pub socket: Arc<PimSocket>,
    reader: JoinHandle<()>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The PIM addresses an interface has in one family: the primary (IPv4: the first
/// non-secondary address; IPv6: the link-local, RFC 7761 §4.9) and the secondaries that go
/// into the Hello's Address List.
pub fn pim_addresses(snapshot: &Snapshot, ifindex: u32, family: Family) -> Option<(IpAddr, Vec<IpAddr>)> {
    match family {
        Family::Ipv4 => {
            let primary = IpAddr::V4(snapshot.primary_ipv4(ifindex)?);
            let secondary = snapshot
                .addresses_of(ifindex)
                .filter(|a| a.addr.is_ipv4() && a.addr != primary)
                .map(|a| a.addr)
                .collect();
            Some((primary, secondary))
        }
        Family::Ipv6 => {
            let primary = IpAddr::V6(snapshot.ipv6_link_local(ifindex)?);
            let secondary = snapshot
                .addresses_of(ifindex)
                .filter(|a| match a.addr {
                    IpAddr::V6(v6) => !a.tentative && !v6.is_unicast_link_local() && !v6.is_loopback(),
                    IpAddr::V4(_) => false,
                })
                .map(|a| a.addr)
                .collect();
            Some((primary, secondary))
        }
    }
}

/// Opens the PIM socket for `id` and starts its reader.
pub fn attach(
    id: InterfaceId,
    primary: IpAddr,
    secondary: Vec<IpAddr>,
    tx: mpsc::Sender<Received>,
) -> std::io::Result<Attached> {
    let socket = match primary {
        IpAddr::V4(v4) => PimSocket::open_v4(id.ifindex, v4)?,
        IpAddr::V6(_) => PimSocket::open_v6(id.ifindex)?,
    };
    let socket = Arc::new(socket);
    let reader = tokio::spawn(read_loop(Arc::clone(&socket), id, tx));
    Ok(Attached { id, primary, secondary, socket, reader })
}

async fn read_loop(socket: Arc<PimSocket>, interface: InterfaceId, tx: mpsc::Sender<Received>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv(&mut buf).await {
            Ok(datagram) => {
                let received =
                    Received { interface, src: datagram.src, dst: datagram.dst, payload: datagram.payload.to_vec() };
                if tx.send(received).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(%interface, error = %e, "reading PIM socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Downstream interfaces by name, with what is attached.
#[derive(Debug, Default)]
pub struct Downstream {
    pub by_name: BTreeMap<String, BTreeMap<Family, Attached>>,
}

impl Downstream {
    /// The attachment serving `id`.
    pub fn get(&self, id: InterfaceId) -> Option<&Attached> {
        self.by_name.values().flat_map(|m| m.values()).find(|a| a.id == id)
    }

    /// The interface name of `id`.
    pub fn name_of(&self, id: InterfaceId) -> Option<&str> {
        self.by_name.iter().find(|(_, m)| m.values().any(|a| a.id == id)).map(|(name, _)| name.as_str())
    }
}
