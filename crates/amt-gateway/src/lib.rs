//! The AMT gateway driver: one tokio task owns the sans-IO [`mcast_amt::gateway::Gateway`],
//! its UDP sockets and the TUN device that decapsulated multicast is written into.
//!
//! * **Sockets**: one per outer family, bound to `0.0.0.0:0` / `[::]:0` (or the configured
//!   local address and port). A relay keys gateways by address *and* port, so every message
//!   to a relay leaves from the same socket. Datagrams are received in batches of up to 32
//!   with `recvmmsg` (quinn-udp), with UDP GRO when the kernel coalesces (each buffer then
//!   holds several datagrams of one stride); `IP_PKTINFO` gives the local address for
//!   Teardowns. The IPv6 socket accepts zero UDP checksums (`UDP_NO_CHECK6_RX`, RFC 7450
//!   §5.1.6 lets relays send them over IPv4 only, but some do over IPv6).
//! * **Data path**: per datagram, Multicast Data goes to `Gateway::accept_data` (O(1), no
//!   allocation, no lock) and the inner datagram, a sub-slice of the receive buffer, is
//!   written to the TUN; everything else goes to `Gateway::handle_datagram`. A full TUN queue
//!   drops (and counts) rather than queueing without bound.
//! * **TUN** (`--native-interface`): created if absent (attached if it exists), brought up,
//!   MTU set, `rp_filter` off, so the kernel sees the decapsulated packets arriving natively
//!   and pimwatch's MFC can forward them.
//! * **Control**: a [`GatewayHandle`] sends commands over a channel into the task; events come
//!   out of [`Events`]. [`GatewayHandle::shutdown`] sends the Teardowns and waits until they
//!   have been handed to the kernel.
//!
//! Issue 10 will optimise further (multi-queue TUN, batched TUN writes with virtio-net
//! headers and UDP segmentation offload); the loop is shaped for it: receive a batch, decide
//! per packet, then write.

mod driver;
mod inject;
mod socket;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mcast_amt::gateway::{Event, GatewayError};
use mcast_wire::SourceGroup;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

pub use driver::DriverCounters;
pub use mcast_amt::gateway as core;

/// Driver settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The TUN device decapsulated multicast is written into (created if absent).
    pub native_interface: String,
    /// Local address of the IPv4 socket (default `0.0.0.0:0`, an ephemeral port); `None`:
    /// no IPv4 tunnels.
    pub local_v4: Option<SocketAddr>,
    /// Local address of the IPv6 socket (default `[::]:0`); `None`: no IPv6 tunnels. When
    /// the wildcard default cannot be bound (IPv6 disabled), the gateway runs without it.
    pub local_v6: Option<SocketAddr>,
    /// MTU of the TUN device (default 1500: inner packets of up to 1500 bytes).
    pub tun_mtu: u32,
    /// Coalesce runs of datagrams of one flow into UDP super-packets (`IFF_VNET_HDR` with
    /// UDP segmentation offload; default on, see the `inject` module): one TUN write and one
    /// pass through the kernel's receive and forwarding path per run instead of per packet.
    pub tun_offload: bool,
    /// Socket receive buffer to ask for (default 4 MiB; `SO_RCVBUFFORCE` when permitted).
    pub recv_buffer: usize,
    /// The protocol engine's settings.
    pub gateway: mcast_amt::gateway::Config,
    /// RNG seed for nonces and timers; `None`: a random one.
    pub seed: Option<u64>,
    /// Events buffered for the consumer of [`Events`]; beyond, events are dropped and
    /// counted (`DriverCounters::events_lost`).
    pub event_capacity: usize,
}

impl Config {
    /// The defaults with `native_interface`.
    pub fn new(native_interface: impl Into<String>) -> Config {
        Config {
            native_interface: native_interface.into(),
            local_v4: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
            local_v6: Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)),
            tun_mtu: 1500,
            tun_offload: true,
            recv_buffer: 4 << 20,
            gateway: mcast_amt::gateway::Config::default(),
            seed: None,
            event_capacity: 4096,
        }
    }
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The gateway refused it.
    Gateway(GatewayError),
    /// The gateway task has stopped.
    Stopped,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Gateway(e) => e.fmt(f),
            Error::Stopped => f.write_str("the AMT gateway task has stopped"),
        }
    }
}

impl std::error::Error for Error {}

impl From<GatewayError> for Error {
    fn from(e: GatewayError) -> Self {
        Error::Gateway(e)
    }
}

/// Status of the whole gateway: the engine's view and the driver's counters.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The TUN device.
    pub native_interface: String,
    /// The bound sockets.
    pub local: Vec<SocketAddr>,
    /// Tunnels, (S,G)s, protocol counters.
    pub gateway: mcast_amt::gateway::Status,
    /// Socket and TUN counters.
    pub driver: DriverCounters,
}

type Reply<T> = oneshot::Sender<Result<T, GatewayError>>;

#[derive(Debug)]
enum Command {
    AddTunnel { relay: IpAddr, discovery: Option<IpAddr>, reply: Reply<()> },
    RemoveTunnel { relay: IpAddr, reply: Reply<()> },
    Join { relay: IpAddr, sg: SourceGroup, reply: Reply<bool> },
    Leave { relay: IpAddr, sg: SourceGroup, reply: Reply<bool> },
    Status { reply: oneshot::Sender<Status> },
    TunnelPackets { reply: oneshot::Sender<Vec<(IpAddr, u64)>> },
    Shutdown { reply: oneshot::Sender<()> },
}

/// Controls a running gateway; cheap to clone. Dropping every handle shuts the gateway down
/// (with Teardowns).
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    tx: mpsc::Sender<Command>,
    local: Vec<SocketAddr>,
}

impl GatewayHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?.map_err(Error::Gateway)
    }

    /// Adds a tunnel to `relay`; with `discovery`, Relay Discovery goes there first (DRIAD
    /// D = 0), without it Requests go straight to `relay` (D = 1).
    pub async fn add_tunnel(&self, relay: IpAddr, discovery: Option<IpAddr>) -> Result<(), Error> {
        self.call(|reply| Command::AddTunnel { relay, discovery, reply }).await
    }

    /// Removes the tunnel to `relay` (BLOCK records and a Teardown go out).
    pub async fn remove_tunnel(&self, relay: IpAddr) -> Result<(), Error> {
        self.call(|reply| Command::RemoveTunnel { relay, reply }).await
    }

    /// Joins `sg` through the tunnel to `relay`; returns whether it was new.
    pub async fn join(&self, relay: IpAddr, sg: SourceGroup) -> Result<bool, Error> {
        self.call(|reply| Command::Join { relay, sg, reply }).await
    }

    /// Leaves `sg` on the tunnel to `relay`; returns whether it was joined. After the last
    /// (S,G), a Teardown follows the BLOCK record.
    pub async fn leave(&self, relay: IpAddr, sg: SourceGroup) -> Result<bool, Error> {
        self.call(|reply| Command::Leave { relay, sg, reply }).await
    }

    /// The current status.
    pub async fn status(&self) -> Result<Status, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Status { reply }).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Each tunnel's count of Multicast Data packets accepted: what a no-traffic check needs,
    /// without building the whole [`Status`] (one pair per tunnel, nothing per (S,G)).
    pub async fn tunnel_packets(&self) -> Result<Vec<(IpAddr, u64)>, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::TunnelPackets { reply }).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Tears every tunnel down, waits until the Teardowns are handed to the kernel, and stops
    /// the task.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Shutdown { reply }).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// The local socket addresses (port resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }
}

/// The gateway's events (tunnel established, relay failed, no traffic, ...).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the gateway has stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

/// Opens the sockets and the TUN device and spawns the gateway task on the current tokio
/// runtime. Must be called inside the runtime (and, for tests, inside the network namespace
/// the sockets and device belong to).
pub fn spawn(config: Config) -> std::io::Result<(GatewayHandle, Events, tokio::task::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(256);
    let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
    let driver = driver::Driver::open(&config, rx, events_tx)?;
    let local = driver.local_addrs();
    let task = tokio::spawn(driver.run());
    Ok((GatewayHandle { tx, local }, Events { rx: events_rx }, task))
}
