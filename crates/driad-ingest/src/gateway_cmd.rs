//! `driad-ingest gateway`: one static AMT tunnel.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use mcast_amt::gateway::Event;
use mcast_amt_gateway::{Config, Events, GatewayHandle};
use mcast_daemon::Signals;
use mcast_daemon::signals::SignalEvent;
use tracing::{info, warn};

use crate::cli::GatewayArgs;

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let mut config = Config::new(args.native_interface.clone());
    config.tun_mtu = args.tun_mtu;
    if let Some(local) = args.local {
        match local.ip() {
            IpAddr::V4(_) => config.local_v4 = Some(local),
            IpAddr::V6(_) => config.local_v6 = Some(local),
        }
    }
    let signals = Signals::new().context("installing signal handlers")?;
    let (handle, events, task) = mcast_amt_gateway::spawn(config)
        .with_context(|| format!("starting the AMT gateway on {}", args.native_interface))?;
    handle.add_tunnel(args.relay, args.discovery).await.context("adding the tunnel")?;
    for sg in &args.sgs {
        handle.join(args.relay, *sg).await.with_context(|| format!("joining {sg}"))?;
    }
    info!(
        relay = %args.relay,
        discovery = %args.discovery.map_or("-".to_owned(), |d| d.to_string()),
        local = ?handle.local_addrs(),
        sgs = args.sgs.len(),
        "tunnel requested"
    );
    serve(&handle, events, signals).await;
    handle.shutdown().await.ok();
    task.await.context("the gateway task failed")?;
    Ok(())
}

async fn serve(handle: &GatewayHandle, mut events: Events, mut signals: Signals) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => log_event(&event),
                None => {
                    warn!("the gateway stopped by itself");
                    return;
                }
            },
            signal = signals.next() => match signal {
                SignalEvent::Shutdown => {
                    info!("shutting down: leaving the (S,G)s and tearing the tunnel down");
                    return;
                }
                SignalEvent::Reload => log_status(handle).await,
            },
        }
    }
}

fn log_event(event: &Event) {
    match event {
        Event::RelayFailed { .. } | Event::NoTraffic { .. } | Event::LimitReached { .. } => warn!("{event}"),
        _ => info!("{event}"),
    }
}

/// SIGHUP: one log line per tunnel with its state and counters.
async fn log_status(handle: &GatewayHandle) {
    let Ok(status) = handle.status().await else { return };
    for t in &status.gateway.tunnels {
        info!(
            relay = %t.relay,
            relay_address = %t.relay_address.map_or("-".to_owned(), |a| a.to_string()),
            state = ?t.state,
            sgs = t.sgs.len(),
            packets = t.counters.packets,
            bytes = t.counters.bytes,
            drops = t.counters.drops.total(),
            endpoint = %t.gateway_endpoint.map_or("-".to_owned(), |e: SocketAddr| e.to_string()),
            "tunnel status"
        );
    }
    info!(
        tun_written = status.driver.tun_written,
        tun_full = status.driver.tun_full,
        datagrams = status.driver.datagrams,
        data_drops = status.gateway.counters.data_drops.total(),
        "gateway status"
    );
}
