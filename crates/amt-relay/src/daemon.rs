//! The amt-relay daemon: one thread owns the relay state machine, the UDP sockets, the
//! upstream packet socket and the joins, and drives them from one event loop.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use mcast_amt::relay::{Config, Event, Relay};
use mcast_daemon::signals::SignalEvent;
use mcast_daemon::{ControlServer, LogHandle, Reloader, Signals, Ticker};
use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::cli::{Cli, RunArgs};
use crate::datapath::{DataPath, PacketSocket, SendSocket};
use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// Batches read in a row before the loop looks at control traffic and timers again.
const BATCHES_PER_TURN: usize = 16;
/// Data datagrams sent in a turn after which it ends early (fan-out to many gateways).
const DATAGRAMS_PER_TURN: u64 = 16_384;
/// Control datagrams waiting for the loop; more are dropped (the sockets' buffers hold the
/// rest, and a flood of Requests must not grow memory).
const CONTROL_QUEUE: usize = 4096;
/// Control datagrams handled in a row before data and timers get a turn.
const CONTROL_PER_TURN: usize = 256;
/// Largest control datagram read (Updates are at most a few kilobytes).
const CONTROL_MAX: usize = 65_535;
/// Send buffer of the relay sockets (Data bursts to many gateways).
const SEND_BUFFER: libc::c_int = 4 << 20;

struct Received {
    socket: usize,
    from: SocketAddr,
    payload: Vec<u8>,
}

struct Listener {
    local: SocketAddr,
    socket: Arc<UdpSocket>,
}

/// What SIGHUP changes in a running relay (gateways and memberships stay).
const RELOADABLE: &[&str] = &[
    "capacity",
    "max-sgs-per-gateway",
    "max-sgs",
    "max-replies-per-sec",
    "query-interval",
    "robustness",
    "max-response",
    "secret-rotation",
];

fn relay_config(args: &RunArgs) -> Config {
    let mut config = Config::new(args.relay_addresses.clone());
    config.advertise = args.advertise.clone();
    config.query_interval = args.query_interval;
    config.robustness = args.robustness;
    config.max_response = args.max_response;
    config.secret_rotation = args.secret_rotation;
    config.capacity = args.capacity;
    config.max_sgs_per_gateway = args.max_sgs_per_gateway;
    config.max_sgs = args.max_sgs;
    config.max_replies_per_sec = args.max_replies_per_sec;
    config
}

/// Checks everything amt-relay would refuse at start without touching the system
/// (`--check-config`, start, reload): the log filter and the relay's configuration.
pub fn validate(args: &RunArgs) -> anyhow::Result<()> {
    mcast_daemon::logging::validate_filter(&args.log.log_level)?;
    if args.upstream_interface().is_empty() {
        bail!("--upstream-interface is required");
    }
    Relay::new(relay_config(args), [0; 32], Instant::now())
        .map(drop)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
}

pub async fn run(args: RunArgs, reloader: Reloader, log: LogHandle) -> anyhow::Result<()> {
    let now = Instant::now();
    validate(&args)?;
    let relay = Relay::new(relay_config(&args), rand::random(), now)
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;

    let ifname = args.upstream_interface().to_owned();
    let ifindex = ifindex(&ifname).with_context(|| format!("upstream interface {ifname:?}"))?;
    let packet = match PacketSocket::open(ifindex, &ifname, args.receive_buffer, !args.no_rx_ring) {
        Ok(packet) => packet,
        Err(e) if !args.no_rx_ring => {
            warn!(error = %e, "no PACKET_RX_RING on the upstream socket; reading with recvmmsg");
            PacketSocket::open(ifindex, &ifname, args.receive_buffer, false)
                .with_context(|| format!("opening the packet socket on {ifname} (needs CAP_NET_RAW)"))?
        }
        Err(e) => return Err(e).with_context(|| format!("opening the packet socket on {ifname} (needs CAP_NET_RAW)")),
    };
    let rx_ring = packet.has_ring();
    let mtu = packet.mtu(&ifname).with_context(|| format!("reading the MTU of {ifname}"))?;
    let packet = async_fd(packet).context("registering the packet socket")?;

    let mut addresses: Vec<IpAddr> = Vec::new();
    for addr in args.relay_addresses.iter().chain(&args.discovery_addresses) {
        if !addresses.contains(addr) {
            addresses.push(*addr);
        }
    }
    let mut listeners = Vec::new();
    for addr in addresses {
        let local = SocketAddr::new(addr, args.port);
        let socket = bind_udp(local).with_context(|| format!("binding UDP {local}"))?;
        listeners.push(Listener { local, socket: Arc::new(socket) });
    }
    let control = ControlServer::bind(args.runtime_dir.join("amt-relay.sock"))
        .await
        .with_context(|| format!("binding the control socket in {}", args.runtime_dir.display()))?;
    let signals = Signals::new().context("installing signal handlers")?;
    let (metrics, registry) = Metrics::new();
    let metrics_on = mcast_daemon::metrics::start(args.config.metrics_listen, registry).await?.is_some();

    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    let mut readers = Vec::new();
    for (index, listener) in listeners.iter().enumerate() {
        let socket = listener.socket.clone();
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; CONTROL_MAX];
            loop {
                match socket.recv_from(&mut buf).await {
                    Ok((len, from)) => {
                        let received = Received { socket: index, from, payload: buf[..len].to_vec() };
                        // Full queue: drop (bounded memory under a flood).
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(received) {
                            return;
                        }
                    }
                    Err(e) => debug!(error = %e, "UDP receive failed"),
                }
            }
        }));
    }
    drop(tx);

    let sockets: Vec<SendSocket> =
        listeners.iter().map(|l| SendSocket { local: l.local, fd: l.socket.as_raw_fd() }).collect();
    let mut daemon = Daemon {
        datapath: DataPath::new(usize::from(args.batch), !args.no_gso, mtu),
        args,
        relay,
        listeners,
        sockets,
        upstream: Upstream::new(ifindex),
        join_errors: 0,
        control_dropped: 0,
        oversized_warned: false,
        rx_ring,
        started: now,
        ifindex,
        metrics,
        metrics_on,
        reloader,
        log,
    };
    info!(
        relay = ?daemon.args.relay_addresses,
        discovery = ?daemon.args.discovery_addresses,
        upstream = %ifname,
        port = daemon.args.port,
        capacity = daemon.args.capacity,
        query_interval = %humantime::format_duration(daemon.args.query_interval),
        "amt-relay started"
    );
    mcast_daemon::systemd::ready(&format!(
        "relay {}, upstream {}",
        daemon.listeners.iter().map(|l| l.local.to_string()).collect::<Vec<_>>().join(", "),
        daemon.args.upstream_interface()
    ));
    let result = daemon.serve(packet, rx, control, signals).await;
    mcast_daemon::systemd::stopping();
    for reader in readers {
        reader.abort();
    }
    daemon.shutdown();
    result
}

struct Daemon {
    args: RunArgs,
    relay: Relay,
    listeners: Vec<Listener>,
    sockets: Vec<SendSocket>,
    datapath: DataPath,
    upstream: Upstream,
    join_errors: u64,
    control_dropped: u64,
    oversized_warned: bool,
    rx_ring: bool,
    started: Instant,
    ifindex: u32,
    metrics: Metrics,
    metrics_on: bool,
    reloader: Reloader,
    log: LogHandle,
}

impl Daemon {
    async fn serve(
        &mut self,
        packet: AsyncFd<PacketSocket>,
        mut rx: mpsc::Receiver<Received>,
        control: ControlServer,
        mut signals: Signals,
    ) -> anyhow::Result<()> {
        // ControlServer::accept reads the command after accepting, so it is not cancel-safe
        // in a select! that a busy data path keeps winning: accept in a task of its own.
        let (requests_tx, mut requests) = mpsc::channel(8);
        let acceptor = tokio::spawn(async move {
            loop {
                match control.accept().await {
                    Ok(request) => {
                        if requests_tx.send(request).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        let result = self.event_loop(packet, &mut rx, &mut requests, &mut signals).await;
        acceptor.abort();
        result
    }

    async fn event_loop(
        &mut self,
        packet: AsyncFd<PacketSocket>,
        rx: &mut mpsc::Receiver<Received>,
        requests: &mut mpsc::Receiver<mcast_daemon::control::Request>,
        signals: &mut Signals,
    ) -> anyhow::Result<()> {
        let mut ticker = Ticker::new(self.metrics_on);
        loop {
            let deadline = self.relay.poll_timeout().map(tokio::time::Instant::from_std);
            // Unbiased: under a flood of control traffic or of data, the other side still gets
            // its turns (tokio picks a random ready branch first).
            tokio::select! {
                signal = signals.next() => match signal {
                    SignalEvent::Shutdown => return Ok(()),
                    SignalEvent::Reload => self.reload(),
                },
                () = ticker.tick() => self.refresh_metrics(&packet),
                Some(received) = rx.recv() => {
                    self.on_control(received);
                    // Take a bounded bite of what else is queued.
                    for _ in 0..CONTROL_PER_TURN {
                        let Ok(received) = rx.try_recv() else { break };
                        self.on_control(received);
                    }
                }
                () = sleep_until(deadline) => self.relay.handle_timeout(Instant::now()),
                Some(request) = requests.recv() => {
                    let answer = match request.command.as_str() {
                        "status" => self.status(&packet),
                        other => json!({ "error": format!("unknown command {other:?}") }),
                    };
                    // Answer without holding up the loop (a slow reader must not stall Data).
                    tokio::spawn(async move { request.respond(&answer).await });
                },
                guard = packet.readable() => {
                    let mut guard = guard.context("waiting for upstream packets")?;
                    let sent_before = self.datapath.counters.sent;
                    let oversized_before = self.datapath.counters.oversized;
                    for _ in 0..BATCHES_PER_TURN {
                        // A turn ends early under heavy fan-out, so control traffic, timers and
                        // status requests keep getting turns.
                        if self.datapath.counters.sent - sent_before >= DATAGRAMS_PER_TURN {
                            break;
                        }
                        match self.datapath.run_batch(packet.get_ref(), &mut self.relay, &self.sockets) {
                            Ok(0) => {
                                guard.clear_ready();
                                break;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %e, "reading the upstream interface failed");
                                guard.clear_ready();
                                break;
                            }
                        }
                    }
                    if self.datapath.counters.oversized != oversized_before {
                        // Maybe the MTU grew; if not, these were GSO/GRO super-packets.
                        self.refresh_mtu(&packet);
                        let dropped = self.datapath.counters.oversized - oversized_before;
                        let mtu = self.datapath.mtu();
                        if std::mem::replace(&mut self.oversized_warned, true) {
                            debug!(dropped, mtu, "upstream datagrams larger than the MTU dropped");
                        } else {
                            warn!(
                                dropped,
                                mtu,
                                "upstream datagrams larger than the MTU dropped (GSO/GRO-merged on the receive \
                                 path; counted as oversized, logged once)"
                            );
                        }
                    }
                }
            }
            self.process_outputs();
            // Let the socket readers and the control acceptor (tasks of this thread) run even
            // when a ready data path would keep this loop busy.
            tokio::task::yield_now().await;
        }
    }

    /// SIGHUP: applies the reloadable options of the re-read configuration.
    fn reload(&mut self) {
        let checked = self.reloader.reload_checked(&self.log, |c: &Cli| &c.run.log, |c| validate(&c.run));
        let Some((reload, ())) = checked else { return };
        // The relay keeps its addresses; everything else of the new configuration applies.
        if RELOADABLE.iter().any(|o| reload.changed(o))
            && let Err(e) = self.relay.reconfigure(relay_config(&reload.cli.run))
        {
            return error!(error = %e, "reload rejected; the configuration stays as it was");
        }
        self.reloader.applied(&reload, RELOADABLE);
    }

    fn refresh_metrics(&mut self, packet: &AsyncFd<PacketSocket>) {
        if self.metrics_on {
            self.datapath.counters.kernel_drops += packet.get_ref().take_drops();
            self.metrics.refresh(&self.relay, &self.datapath.counters, self.join_errors);
        }
    }

    fn on_control(&mut self, received: Received) {
        let Some(listener) = self.listeners.get(received.socket) else { return };
        let local = listener.local;
        if let Err(reason) = self.relay.handle_datagram(local, received.from, &received.payload, Instant::now()) {
            debug!(%local, from = %received.from, %reason, "AMT message dropped");
        }
    }

    /// Sends queued control replies and acts on events.
    fn process_outputs(&mut self) {
        while let Some(transmit) = self.relay.poll_transmit() {
            let Some(listener) = self.listeners.iter().find(|l| l.local == transmit.src) else {
                warn!(src = %transmit.src, "no socket for a reply's source address");
                continue;
            };
            if let Err(e) = listener.socket.try_send_to(&transmit.payload, transmit.dst) {
                debug!(dst = %transmit.dst, error = %e, "sending an AMT reply failed");
                self.control_dropped += 1;
            }
        }
        while let Some(event) = self.relay.poll_event() {
            match event {
                Event::JoinUpstream(sg) => match self.upstream.join(sg) {
                    Ok(()) => info!(%sg, interface = self.args.upstream_interface(), "joined upstream"),
                    Err(e) => {
                        self.join_errors += 1;
                        warn!(%sg, error = %e, "upstream join failed");
                    }
                },
                Event::LeaveUpstream(sg) => match self.upstream.leave(sg) {
                    Ok(()) => info!(%sg, "left upstream"),
                    Err(e) => warn!(%sg, error = %e, "upstream leave failed"),
                },
                Event::GatewayUp { gateway, local } => info!(%gateway, relay = %local, "gateway up"),
                Event::GatewayDown { gateway, reason } => info!(%gateway, ?reason, "gateway down"),
                Event::Subscribed { gateway, sg } => debug!(%gateway, %sg, "subscribed"),
                Event::Unsubscribed { gateway, sg, reason } => debug!(%gateway, %sg, ?reason, "unsubscribed"),
                Event::SecretRotated => debug!("MAC secret rotated"),
            }
        }
    }

    fn status(&mut self, packet: &AsyncFd<PacketSocket>) -> serde_json::Value {
        self.datapath.counters.kernel_drops += packet.get_ref().take_drops();
        self.refresh_mtu(packet);
        let now = Instant::now();
        let listen: Vec<String> = self.listeners.iter().map(|l| l.local.to_string()).collect();
        let discovery: BTreeSet<String> = self.args.discovery_addresses.iter().map(ToString::to_string).collect();
        json!({
            "daemon": "amt-relay",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": self.started.elapsed().as_secs(),
            "listen": listen,
            "discovery_addresses": discovery,
            "upstream_interface": { "name": self.args.upstream_interface(), "ifindex": self.ifindex },
            "upstream_joins": self.upstream.len(),
            "join_sockets": self.upstream.sockets(),
            "join_errors": self.join_errors,
            "control_replies_dropped": self.control_dropped,
            "gso": self.datapath.gso(),
            "rx_ring": self.rx_ring,
            "relay": self.relay.status(now),
            "datapath": self.datapath.counters,
        })
    }

    /// Follows MTU changes of the upstream interface (checked on status requests and when
    /// datagrams were dropped as oversized).
    fn refresh_mtu(&mut self, packet: &AsyncFd<PacketSocket>) {
        match packet.get_ref().mtu(self.args.upstream_interface()) {
            Ok(mtu) if mtu != self.datapath.mtu() => {
                info!(mtu, "upstream interface MTU changed");
                self.datapath.set_mtu(mtu);
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "reading the upstream MTU failed"),
        }
    }

    fn shutdown(&mut self) {
        info!(joins = self.upstream.len(), "shutting down: leaving upstream joins");
        for (sg, e) in self.upstream.leave_all() {
            warn!(%sg, error = %e, "upstream leave failed");
        }
    }
}

fn ifindex(name: &str) -> anyhow::Result<u32> {
    let c = std::ffi::CString::new(name).context("interface name")?;
    // SAFETY: if_nametoindex reads a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("no such interface: {}", std::io::Error::last_os_error());
    }
    Ok(index)
}

/// A UDP socket bound to `local`, which may not be configured on the host yet (IP_FREEBIND:
/// anycast discovery addresses come and go with routing).
fn bind_udp(local: SocketAddr) -> anyhow::Result<UdpSocket> {
    let domain = if local.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    if local.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let (level, option) =
        if local.is_ipv4() { (libc::IPPROTO_IP, libc::IP_FREEBIND) } else { (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND) };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid descriptor and an int value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        warn!(%local, error = %std::io::Error::last_os_error(), "IP_FREEBIND not available");
    }
    let size = SEND_BUFFER;
    // SAFETY: as above.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let _ = socket.set_send_buffer_size(SEND_BUFFER as usize);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&local.into())?;
    Ok(UdpSocket::from_std(socket.into())?)
}

/// Registers the packet socket with tokio.
///
/// tokio 1.53.3 deprecated `AsyncFd::new` in favour of the `unsafe` `register`, whose
/// condition is that the descriptor stays the same and open for the value's life: the packet
/// socket owns its `OwnedFd` and never replaces it. The deprecated constructor keeps the
/// workspace's `tokio = "1.47"` requirement (as crates/mroute does).
#[allow(deprecated)]
fn async_fd(packet: PacketSocket) -> std::io::Result<AsyncFd<PacketSocket>> {
    AsyncFd::new(packet)
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
