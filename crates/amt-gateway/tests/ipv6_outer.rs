//! The gateway driver over IPv6 (outer family) carrying IPv6 (inner family), against a scripted
//! relay in another namespace: Discovery, a Request with P = 1, an MLDv2 Query, an Update with
//! the MLDv2 report, then Multicast Data sent with a **zero UDP checksum**.
//!
//! RFC 7450 §5.1.6 (with RFC 6935/6936) lets a relay send AMT over IPv6 with a zero UDP
//! checksum; Linux drops such datagrams unless the receiving socket set `UDP_NO_CHECK6_RX`.
//! The relay here sets `UDP_NO_CHECK6_TX`, so the checksum really is zero on the wire: a plain
//! socket next to the gateway's drops the same datagram (the control), the gateway's socket
//! takes it and writes the inner packet into the TUN.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{Got, Netns, ScriptedRelay, veth};
use mcast_amt_gateway::{Config, spawn};
use mcast_wire::SourceGroup;
use mcast_wire::amt::Repr;
use mcast_wire::igmp::RecordType;
use mcast_wire::ip::IpProtocol;
use mcast_wire::{ipv6, udp};

const GW: &str = "[2001:db8:77::2]:40000";
const CONTROL: &str = "[2001:db8:77::2]:40001";
const RELAY: &str = "[2001:db8:77::1]:2268";
const MAC: [u8; 6] = [1, 2, 3, 4, 5, 6];

fn sg() -> SourceGroup {
    "2001:db8:100::10,ff3e::8000:1".parse().unwrap()
}

/// AMT Multicast Data with an inner IPv6 UDP datagram S → G:5001.
fn amt_data_v6(payload: &[u8]) -> Vec<u8> {
    let (std::net::IpAddr::V6(s), std::net::IpAddr::V6(g)) = (sg().source, sg().group) else { unreachable!() };
    let mut segment = vec![0u8; 8 + payload.len()];
    udp::Repr { src_port: 40000, dst_port: 5001 }
        .emit_with_payload(&mut segment, &sg().source, &sg().group, payload)
        .unwrap();
    let inner = ipv6::Repr::new(s, g, IpProtocol::UDP, 16, segment.len()).datagram(&segment).unwrap();
    Repr::MulticastData { datagram: &inner }.to_vec().unwrap()
}

/// Makes the kernel send this socket's IPv6 datagrams with a zero UDP checksum.
fn zero_checksum_tx(sock: &UdpSocket) {
    let one: libc::c_int = 1;
    // SAFETY: a valid descriptor and a pointer to a live c_int with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_UDP,
            libc::UDP_NO_CHECK6_TX,
            (&raw const one).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_NO_CHECK6_TX: {}", std::io::Error::last_os_error());
}

#[test]
fn ipv6_data_in_an_ipv6_tunnel_with_zero_udp_checksums() {
    require_root!();
    let (g, r) = (Netns::new("G6"), Netns::new("R6"));
    veth(&g, "g0", &r, "r0");
    g.ip("addr add 2001:db8:77::2/64 dev g0 nodad");
    r.ip("addr add 2001:db8:77::1/64 dev r0 nodad");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    let mut config = Config::new("amtg6");
    config.local_v4 = None;
    config.local_v6 = Some(GW.parse().unwrap());
    config.seed = Some(1);
    config.gateway.no_traffic_initial = None;
    let (handle, _events, task) = g
        .run(|| {
            let _guard = rt.enter();
            spawn(config)
        })
        .unwrap();
    let control = g.run(|| UdpSocket::bind(CONTROL)).unwrap();
    control.set_read_timeout(Some(Duration::from_millis(300))).unwrap();

    let mut relay = ScriptedRelay::bind(&r, RELAY.parse().unwrap());
    let relay_ip = RELAY.parse::<SocketAddr>().unwrap().ip();
    rt.block_on(handle.add_tunnel(relay_ip, Some(relay_ip))).unwrap();
    assert!(rt.block_on(handle.join(relay_ip, sg())).unwrap());
    let (got, gw) = relay.recv();
    assert_eq!(gw, GW.parse().unwrap());
    let Got::Discovery { nonce } = got else { panic!("expected a Discovery, got {got:?}") };
    relay.send(gw, &Repr::RelayAdvertisement { nonce, relay: relay_ip });

    // An IPv6 (S,G): P = 1 (RFC 7450 §5.1.3.3), an MLDv2 Query, an MLDv2 report in the Update
    // (an IGMPv3 record could not carry the IPv6 group and source checked below).
    // A Discovery retransmitted before our Advertisement arrived (a loaded machine) is skipped.
    let (nonce, p) = loop {
        match relay.recv() {
            (Got::Discovery { .. }, _) => continue,
            (Got::Request { nonce, p }, _) => break (nonce, p),
            (got, _) => panic!("expected a Request, got {got:?}"),
        }
    };
    assert!(p, "P = 1 for an IPv6 channel");
    relay.query(gw, nonce, p, MAC);
    let (mac, records) = loop {
        match relay.recv() {
            (Got::Discovery { .. } | Got::Request { .. }, _) => continue,
            (Got::Update { mac, records, .. }, _) => break (mac, records),
            (got, _) => panic!("expected an Update, got {got:?}"),
        }
    };
    assert_eq!(mac, MAC);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record_type, RecordType::ModeIsInclude);
    assert_eq!((records[0].group, records[0].sources.clone()), (sg().group, vec![sg().source]));

    // From now on the relay sends with a zero UDP checksum.
    zero_checksum_tx(&relay.sock);
    let data = amt_data_v6(b"zero checksum");
    for _ in 0..5 {
        relay.sock.send_to(&data, CONTROL).unwrap();
    }
    let mut buf = [0u8; 2048];
    assert!(control.recv(&mut buf).is_err(), "a socket without UDP_NO_CHECK6_RX must drop zero-checksum datagrams");

    let mut written = 0;
    for _ in 0..20 {
        relay.sock.send_to(&data, gw).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        written = rt.block_on(handle.status()).unwrap().driver.tun_written;
        if written > 0 {
            break;
        }
    }
    assert!(written > 0, "the gateway accepted zero-checksum Data and wrote the inner packet to the TUN");

    // The control socket itself works: with a checksum, the same datagram arrives.
    let checked = r.run(|| UdpSocket::bind("[2001:db8:77::1]:0")).unwrap();
    checked.send_to(&data, CONTROL).unwrap();
    assert!(control.recv(&mut buf).is_ok(), "the control socket receives checksummed datagrams");

    rt.block_on(handle.shutdown()).unwrap();
    rt.block_on(task).unwrap();
}
