//! The gateway task: sockets, TUN, timers and commands around the sans-IO engine.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mcast_amt::gateway::{Event, Gateway, is_data};
use mcast_mroute::tun::{AsyncTun, Tun};
use quinn_udp::RecvMeta;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::inject::Injector;
use crate::socket::{BATCH, GatewaySocket, MAX_DATAGRAM};
use crate::{Command, Config, Status};

/// `recvmmsg` calls per wake-up before timers and commands get a turn.
const RECV_BUDGET: usize = 64;
/// How long `shutdown` waits for a Teardown that cannot be sent at once.
const SHUTDOWN_SEND_TIMEOUT: Duration = Duration::from_millis(500);

/// Socket and TUN counters of the driver.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriverCounters {
    /// `recvmmsg` calls that returned datagrams.
    pub batches: u64,
    /// UDP datagrams received (GRO segments counted one by one).
    pub datagrams: u64,
    /// Inner packets written to the TUN.
    pub tun_written: u64,
    /// TUN writes (one per packet, or one per coalesced run of packets).
    pub tun_writes: u64,
    /// Inner packets written inside a coalesced UDP super-packet.
    pub tun_coalesced: u64,
    /// Inner packets dropped because the TUN queue was full.
    pub tun_full: u64,
    /// Other TUN write errors.
    pub tun_errors: u64,
    /// Super-packets the TUN refused (then written one by one).
    pub tun_gso_errors: u64,
    /// Whether runs are coalesced now.
    pub tun_coalescing: bool,
    /// Packets the kernel sent out of the TUN (read and discarded).
    pub tun_read: u64,
    /// Times the TUN was made again after it vanished.
    pub tun_recreated: u64,
    /// Socket receive errors.
    pub recv_errors: u64,
    /// Control messages that could not be sent.
    pub send_errors: u64,
    /// Events dropped because the consumer of `Events` did not keep up.
    pub events_lost: u64,
}

/// How the TUN is made, kept to make it again if it vanishes.
struct TunSetup {
    name: String,
    mtu: u32,
    offload: bool,
}

impl TunSetup {
    /// Creates (or attaches to) the TUN, sets its MTU, brings it up and turns rp_filter off.
    /// Returns whether it has IFF_VNET_HDR.
    fn open(&self) -> io::Result<(Tun, bool)> {
        // IFF_VNET_HDR for coalesced writes; without it (an old kernel, a persistent device
        // made otherwise) one datagram per write.
        let (tun, vnet) = match self.offload {
            true => match Tun::create_or_attach_with(&self.name, true) {
                Ok(tun) => (tun, true),
                Err(e) => {
                    warn!(tun = %self.name, error = %e, "no IFF_VNET_HDR on the TUN: one datagram per write");
                    (Tun::create_or_attach(&self.name)?, false)
                }
            },
            false => (Tun::create_or_attach(&self.name)?, false),
        };
        tun.set_mtu(self.mtu)
            .map_err(|e| io::Error::new(e.kind(), format!("setting the MTU of {}: {e}", self.name)))?;
        tun.set_up().map_err(|e| io::Error::new(e.kind(), format!("bringing {} up: {e}", self.name)))?;
        if let Err(e) = tun.disable_rp_filter() {
            warn!(tun = %self.name, error = %e, "cannot turn rp_filter off on the native interface");
        }
        // IPv6 data (P = 1 tunnels) is dropped on a device with IPv6 disabled, which a new TUN
        // is where net.ipv6.conf.default.disable_ipv6 = 1.
        match tun.enable_ipv6() {
            Ok(true) => info!(tun = %self.name, "IPv6 was disabled on the native interface (conf/default); enabled it"),
            Ok(false) => {}
            Err(e) => {
                warn!(tun = %self.name, error = %e, "cannot enable IPv6 on the native interface; IPv6 data would be dropped")
            }
        }
        Ok((tun, vnet))
    }
}

/// Whether the TUN device behind `fd` still exists: once it is deleted (`ip link del`), the
/// kernel detaches the file and TUNGETIFF fails with EBADFD. Asked of the descriptor rather
/// than by name, since the task may run in another network namespace than the device's.
fn tun_exists(fd: std::os::fd::RawFd) -> bool {
    let mut ifreq = [0u8; 40];
    // SAFETY: TUNGETIFF writes one struct ifreq (40 bytes on 64-bit Linux) into the buffer.
    let rc = unsafe { libc::ioctl(fd, libc::TUNGETIFF as _, ifreq.as_mut_ptr()) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EBADFD)
}

/// How often the driver checks that its TUN still exists (an operator may delete it).
const TUN_CHECK: Duration = Duration::from_secs(1);

pub(crate) struct Driver {
    tun_setup: TunSetup,
    gw: Gateway,
    v4: Option<GatewaySocket>,
    v6: Option<GatewaySocket>,
    tun: AsyncTun,
    native: String,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    counters: DriverCounters,
    bufs: Vec<u8>,
    slot: usize,
    meta: [RecvMeta; BATCH],
    tun_buf: Vec<u8>,
    inject: Injector,
}

/// Logs on the 1st, 2nd, 4th, 8th... occurrence only.
fn worth_logging(count: u64) -> bool {
    count.is_power_of_two()
}

fn open_socket(addr: Option<SocketAddr>, recv_buffer: usize) -> io::Result<Option<GatewaySocket>> {
    let Some(addr) = addr else { return Ok(None) };
    match GatewaySocket::bind(addr, recv_buffer) {
        Ok(s) => Ok(Some(s)),
        // The wildcard default of a family the host lacks is not an error.
        Err(e) if addr.ip().is_unspecified() && addr.port() == 0 => {
            warn!(%addr, error = %e, "cannot open an AMT socket for this family; tunnels over it are unavailable");
            Ok(None)
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("binding the AMT socket {addr}: {e}"))),
    }
}

impl Driver {
    pub(crate) fn open(
        config: &Config,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
    ) -> io::Result<Driver> {
        let seed = config.seed.unwrap_or_else(rand::random);
        let gw = Gateway::new(config.gateway.clone(), seed)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let v4 = open_socket(config.local_v4, config.recv_buffer)?;
        let v6 = open_socket(config.local_v6, config.recv_buffer)?;
        if v4.is_none() && v6.is_none() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no AMT socket could be opened"));
        }
        let tun_setup =
            TunSetup { name: config.native_interface.clone(), mtu: config.tun_mtu, offload: config.tun_offload };
        let (tun, vnet) = tun_setup.open()?;
        let native = tun.name().to_owned();
        let tun = tun.into_async()?;
        // GRO may coalesce up to `gro_segments` datagrams into one buffer.
        let gro = [&v4, &v6].iter().filter_map(|s| s.as_ref()).map(|s| s.state.gro_segments()).max().unwrap_or(1);
        let slot = MAX_DATAGRAM * gro.clamp(1, 64);
        info!(
            native = %native,
            local = ?[&v4, &v6].iter().filter_map(|s| s.as_ref().map(|s| s.local)).collect::<Vec<_>>(),
            gro_segments = gro,
            tun_offload = vnet,
            "AMT gateway started"
        );
        Ok(Driver {
            tun_setup,
            gw,
            v4,
            v6,
            tun,
            native,
            commands,
            events,
            counters: DriverCounters::default(),
            bufs: vec![0u8; slot * BATCH],
            slot,
            meta: [RecvMeta::default(); BATCH],
            tun_buf: vec![0u8; 65536],
            inject: Injector::new(vnet, true, config.tun_mtu as usize),
        })
    }

    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        [&self.v4, &self.v6].iter().filter_map(|s| s.as_ref().map(|s| s.local)).collect()
    }

    pub(crate) async fn run(mut self) {
        let mut tun_check = tokio::time::interval_at(tokio::time::Instant::now() + TUN_CHECK, TUN_CHECK);
        tun_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.gw.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = tun_check.tick() => self.check_tun(),
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        debug!("every gateway handle dropped: shutting down");
                        self.shutdown(None).await;
                        return;
                    };
                    if let Command::Shutdown { reply } = command {
                        self.shutdown(Some(reply)).await;
                        return;
                    }
                    self.command(command);
                    // Take every command already queued, so a burst of joins is flushed as a
                    // batch of Updates.
                    while let Ok(command) = self.commands.try_recv() {
                        if let Command::Shutdown { reply } = command {
                            self.shutdown(Some(reply)).await;
                            return;
                        }
                        self.command(command);
                    }
                }
                ready = readable(self.v4.as_ref()) => if ready.is_ok() { self.receive(false) },
                ready = readable(self.v6.as_ref()) => if ready.is_ok() { self.receive(true) },
                () = sleep_until(deadline) => self.gw.handle_timeout(Instant::now()),
                read = self.tun.recv(&mut self.tun_buf) => match read {
                    Ok(_) => self.counters.tun_read += 1,
                    Err(e) => {
                        warn!(tun = %self.native, error = %e, "reading the TUN failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
            self.flush().await;
        }
    }

    /// Makes the TUN again if it was deleted (`ip link del amt0`), or attaches to the device an
    /// operator made in its place: the tunnels and joins stay, pimwatch sees the interface
    /// return and re-adds its VIF and forwarding entries.
    fn check_tun(&mut self) {
        let ours = self.tun.get_ref();
        if tun_exists(ours.as_raw_fd()) {
            return;
        }
        warn!(tun = %self.native, ifindex = ours.ifindex(), "the native interface was deleted; making it again");
        match self.tun_setup.open().and_then(|(tun, vnet)| Ok((tun.into_async()?, vnet))) {
            Ok((tun, vnet)) => {
                self.counters.tun_recreated += 1;
                info!(tun = %self.native, ifindex = tun.get_ref().ifindex(), offload = vnet, "native interface made again");
                self.tun = tun;
                let counters = self.inject.counters;
                self.inject = Injector::new(vnet, true, self.tun_setup.mtu as usize);
                self.inject.counters = counters;
            }
            Err(e) => {
                warn!(tun = %self.native, error = %e, "cannot make the native interface again; retrying every second");
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::AddTunnel { relay, discovery, reply } => {
                let _ = reply.send(self.gw.add_tunnel(relay, discovery, now));
            }
            Command::RemoveTunnel { relay, reply } => {
                let _ = reply.send(self.gw.remove_tunnel(relay, now));
            }
            Command::Join { relay, sg, reply } => {
                let _ = reply.send(self.gw.join(relay, sg, now));
            }
            Command::Leave { relay, sg, reply } => {
                let _ = reply.send(self.gw.leave(relay, sg, now));
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status(now));
            }
            Command::TunnelPackets { reply } => {
                let gw = &self.gw;
                let packets =
                    gw.tunnels().map(|relay| (relay, gw.tunnel_counters(relay).map_or(0, |c| c.packets))).collect();
                let _ = reply.send(packets);
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn status(&self, now: Instant) -> Status {
        let mut driver = self.counters.clone();
        let c = &self.inject.counters;
        driver.tun_written = c.written;
        driver.tun_writes = c.writes;
        driver.tun_coalesced = c.coalesced;
        driver.tun_full = c.full;
        driver.tun_errors = c.errors;
        driver.tun_gso_errors = c.gso_errors;
        driver.tun_coalescing = self.inject.coalescing();
        Status {
            native_interface: self.native.clone(),
            local: self.local_addrs(),
            gateway: self.gw.status(now),
            driver,
        }
    }

    /// Receives batches until the socket is drained or the budget is spent, deciding per
    /// datagram: data into the TUN, control into the engine.
    fn receive(&mut self, v6: bool) {
        let Self { gw, v4: s4, v6: s6, tun, bufs, slot, meta, counters, inject, .. } = self;
        let Some(sock) = (if v6 { s6.as_ref() } else { s4.as_ref() }) else { return };
        let tun = tun.get_ref().as_raw_fd();
        let port = sock.local.port();
        for _ in 0..RECV_BUDGET {
            let n = match sock.try_recv(bufs, *slot, meta) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    counters.recv_errors += 1;
                    if worth_logging(counters.recv_errors) {
                        warn!(local = %sock.local, error = %e, "AMT socket receive failed");
                    }
                    return;
                }
            };
            counters.batches += 1;
            let now = Instant::now();
            for (i, m) in meta.iter().take(n).enumerate() {
                let start = i * *slot;
                let Some(buf) = bufs.get(start..start + m.len.min(*slot)) else { continue };
                let from = SocketAddr::new(m.addr.ip().to_canonical(), m.addr.port());
                let local = m.dst_ip.map(|ip| SocketAddr::new(ip.to_canonical(), port));
                for datagram in buf.chunks(m.stride.max(1)) {
                    counters.datagrams += 1;
                    if is_data(datagram) {
                        match gw.accept_data(from, datagram) {
                            Ok(inner) => inject.push(tun, inner),
                            Err(reason) => debug!(%from, %reason, "Multicast Data dropped"),
                        }
                    } else if let Err(reason) = gw.handle_datagram(now, from, local, datagram) {
                        debug!(%from, %reason, "AMT control message dropped");
                    }
                }
            }
            // The runs point into `bufs`: written before the next receive reuses it.
            inject.flush(tun);
            if n < BATCH {
                return;
            }
        }
    }

    fn socket_for(&self, destination: &SocketAddr) -> Option<&GatewaySocket> {
        match destination.ip() {
            IpAddr::V4(_) => self.v4.as_ref(),
            IpAddr::V6(_) => self.v6.as_ref(),
        }
    }

    /// Sends what the engine queued and hands its events on.
    async fn flush(&mut self) {
        while let Some(tx) = self.gw.poll_transmit() {
            let Some(sock) = self.socket_for(&tx.destination) else {
                self.counters.send_errors += 1;
                if worth_logging(self.counters.send_errors) {
                    warn!(destination = %tx.destination, "no AMT socket of this address family");
                }
                continue;
            };
            let result = match sock.io.try_send_to(&tx.payload, tx.destination) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(SHUTDOWN_SEND_TIMEOUT, sock.io.send_to(&tx.payload, tx.destination))
                        .await
                        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
                }
                other => other,
            };
            if let Err(e) = result {
                self.counters.send_errors += 1;
                if worth_logging(self.counters.send_errors) {
                    warn!(destination = %tx.destination, error = %e, "sending an AMT message failed");
                }
            }
        }
        while let Some(event) = self.gw.poll_event() {
            debug!(%event, "AMT gateway event");
            if self.events.try_send(event).is_err() {
                self.counters.events_lost += 1;
            }
        }
    }

    async fn shutdown(&mut self, reply: Option<tokio::sync::oneshot::Sender<()>>) {
        self.gw.shutdown(Instant::now());
        self.flush().await;
        info!(native = %self.native, "AMT gateway stopped");
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }
}

async fn readable(socket: Option<&GatewaySocket>) -> io::Result<()> {
    match socket {
        Some(s) => s.io.readable().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
