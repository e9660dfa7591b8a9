//! The gateway driver in a network namespace against a scripted relay in another: discovery,
//! request/query/update over real UDP sockets, data decapsulated into the TUN and received by
//! a local SSM receiver joined on it, spoofed data dropped, leave → BLOCK + Teardown, and
//! shutdown → BLOCK + Teardown.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Got, Netns, ScriptedRelay, amt_data, received, ssm_receiver, veth};
use mcast_amt::gateway::{DataDrop, Event};
use mcast_amt_gateway::{Config, spawn};
use mcast_wire::SourceGroup;
use mcast_wire::amt::Repr;
use mcast_wire::igmp::RecordType;

const GW: &str = "10.77.0.2:40000";
const RELAY: &str = "10.77.0.1:2268";
const SPOOF: &str = "10.77.0.3:2268";
const TUN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const PORT: u16 = 5001;
const MAC: [u8; 6] = [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];

fn sg() -> SourceGroup {
    "198.51.100.10,232.1.1.1".parse().unwrap()
}

fn entries(records: &[mcast_amt::membership::GroupRecord]) -> Vec<(RecordType, SourceGroup)> {
    records.iter().flat_map(|r| r.sources.iter().map(|s| (r.record_type, SourceGroup::new(*s, r.group)))).collect()
}

#[test]
fn gateway_against_a_scripted_relay_in_namespaces() {
    require_root!();
    let (g, r) = (Netns::new("G"), Netns::new("R"));
    veth(&g, "g0", &r, "r0");
    g.ip("addr add 10.77.0.2/24 dev g0");
    r.ip("addr add 10.77.0.1/24 dev r0");
    r.ip("addr add 10.77.0.3/24 dev r0");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    let mut config = Config::new("amtg0");
    config.local_v4 = Some(GW.parse().unwrap());
    config.local_v6 = None;
    config.seed = Some(1);
    config.gateway.no_traffic_initial = None;
    let (handle, mut events, task) = g
        .run(|| {
            let _guard = rt.enter();
            spawn(config)
        })
        .unwrap();
    assert_eq!(handle.local_addrs(), [GW.parse::<SocketAddr>().unwrap()]);
    g.ip(&format!("addr add {TUN_ADDR}/32 dev amtg0"));
    assert_eq!(g.run(|| mcast_mroute::tun::rp_filter("amtg0")).unwrap(), 0, "rp_filter off on the native interface");
    let rx = ssm_receiver(&g, sg(), TUN_ADDR, PORT);

    let mut relay = ScriptedRelay::bind(&r, RELAY.parse().unwrap());
    let spoof = ScriptedRelay::bind(&r, SPOOF.parse().unwrap());
    let spoof_port = ScriptedRelay::bind(&r, "10.77.0.1:2269".parse().unwrap());
    let relay_ip = RELAY.parse::<SocketAddr>().unwrap().ip();

    // Discovery → Advertisement.
    rt.block_on(handle.add_tunnel(relay_ip, Some(relay_ip))).unwrap();
    assert!(rt.block_on(handle.join(relay_ip, sg())).unwrap());
    let (got, gw) = relay.recv();
    assert_eq!(gw, GW.parse().unwrap(), "from the configured local endpoint");
    let Got::Discovery { nonce } = got else { panic!("expected a Discovery, got {got:?}") };
    relay.send(gw, &Repr::RelayAdvertisement { nonce, relay: relay_ip });

    // Request → Query → Update with our MAC and the full state.
    let (got, from) = relay.recv();
    let Got::Request { nonce, p } = got else { panic!("expected a Request, got {got:?}") };
    assert!(!p);
    assert_eq!(from, gw, "same socket for every message");
    relay.query(gw, nonce, p, MAC);
    let (got, _) = relay.recv();
    let Got::Update { mac, nonce: n, records } = got else { panic!("expected an Update, got {got:?}") };
    assert_eq!((mac, n), (MAC, nonce));
    assert_eq!(entries(&records), [(RecordType::ModeIsInclude, sg())]);

    // Data from the relay reaches a receiver joined on the TUN.
    let mut delivered = false;
    for _ in 0..20 {
        relay.send(gw, &Repr::parse_bytes(&amt_data(sg(), PORT, 16, b"hello")).unwrap());
        if received(&rx, b"hello", Duration::from_millis(150)) {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "decapsulated data seen on the TUN");

    // Spoofed: right port, wrong address; right address, wrong port. Neither arrives.
    for _ in 0..5 {
        spoof.send(gw, &Repr::parse_bytes(&amt_data(sg(), PORT, 16, b"spoofed")).unwrap());
        spoof_port.send(gw, &Repr::parse_bytes(&amt_data(sg(), PORT, 16, b"spoofed")).unwrap());
    }
    assert!(!received(&rx, b"spoofed", Duration::from_millis(500)), "spoofed data must not reach the TUN");
    let status = rt.block_on(handle.status()).unwrap();
    assert!(status.gateway.counters.data_drops.get(DataDrop::NotFromRelay) >= 10, "{:?}", status.gateway.counters);
    assert!(status.driver.tun_written >= 1);
    assert_eq!(status.gateway.tunnels[0].gateway_endpoint, Some(gw));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["native_interface"], "amtg0");

    // The last leave: BLOCK then Teardown, at once.
    assert!(rt.block_on(handle.leave(relay_ip, sg())).unwrap());
    let records = loop {
        // Skip a late repetition of the ALLOW record.
        match relay.recv() {
            (Got::Update { records, .. }, _) if records[0].record_type == RecordType::AllowNewSources => continue,
            (Got::Update { records, .. }, _) => break records,
            (got, _) => panic!("expected the BLOCK Update, got {got:?}"),
        }
    };
    assert_eq!(entries(&records), [(RecordType::BlockOldSources, sg())]);
    let (got, _) = relay.recv();
    assert_eq!(got, Got::Teardown { mac: MAC, nonce, endpoint: gw });

    // Join again, then shut down: BLOCK + Teardown again.
    assert!(rt.block_on(handle.join(relay_ip, sg())).unwrap());
    let nonce = loop {
        // Skip the repetitions of the closing messages.
        if let (Got::Request { nonce, .. }, _) = relay.recv() {
            break nonce;
        }
    };
    relay.query(gw, nonce, false, MAC);
    let (got, _) = relay.recv();
    assert!(matches!(got, Got::Update { .. }), "{got:?}");
    rt.block_on(handle.shutdown()).unwrap();
    let mut seen_teardown = false;
    while let Ok(n) = {
        relay.sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 2048];
        relay.sock.recv(&mut buf).map(|n| buf[..n].to_vec())
    } {
        if n.first() == Some(&7) {
            seen_teardown = true;
        }
    }
    assert!(seen_teardown, "shutdown sends a Teardown");
    rt.block_on(task).unwrap();
    let mut evs = Vec::new();
    while let Some(e) = events.try_recv() {
        evs.push(e);
    }
    assert!(evs.iter().any(|e| matches!(e, Event::TunnelEstablished { .. })), "{evs:?}");
    assert!(evs.iter().any(|e| matches!(e, Event::TunnelClosed { .. })), "{evs:?}");
    assert!(rt.block_on(handle.join(relay_ip, sg())).is_err(), "stopped");
    // The TUN device goes away with the task.
    assert!(!g.proc_net("dev").contains("amtg0"));
}
