//! Raw PIM sockets between two namespaces: a Hello from A reaches B with the right
//! addresses, interface, TTL and TOS; IPv6 checksums are filled in and verified by the kernel.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use common::{Netns, veth, wait_for};
use mcast_mroute::pim::{self, ALL_PIM_ROUTERS_V4, ALL_PIM_ROUTERS_V6, PimSocket};
use mcast_wire::{checksum, ipv4};
use socket2::{Domain, Protocol, Socket, Type};

/// The Hello of lab-notes §5.1 (IPv4 checksum 0x2a98 included).
const HELLO: [u8; 26] = [
    0x20, 0x00, 0x2a, 0x98, 0x00, 0x01, 0x00, 0x02, 0x00, 0x69, 0x00, 0x13, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x14, 0x00, 0x04, 0x1d, 0x6b, 0x97, 0x60,
];

const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 2);

fn pair() -> (Netns, Netns) {
    let (a, b) = (Netns::new("A"), Netns::new("B"));
    veth(&a, "a0", &b, "b0");
    a.ip("addr add 10.9.1.2/24 dev a0");
    b.ip("addr add 10.9.1.1/24 dev b0");
    (a, b)
}

fn link_local(ns: &Netns, dev: &str) -> Ipv6Addr {
    let idx = ns.ifindex(dev);
    wait_for(Duration::from_secs(5), || {
        let snap = ns.run(mcast_mroute::links::snapshot).unwrap();
        snap.ipv6_link_local(idx)
    })
    .expect("a link-local address")
}

#[test]
fn ipv4_hello_between_namespaces() {
    require_root!();
    let (a, b) = pair();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (a0, b0) = (a.ifindex("a0"), b.ifindex("b0"));
    let sa = a
        .run(|| {
            let _g = rt.enter();
            PimSocket::open_v4(a0, A_ADDR)
        })
        .unwrap();
    let sb = b
        .run(|| {
            let _g = rt.enter();
            PimSocket::open_v4(b0, Ipv4Addr::new(10, 9, 1, 1))
        })
        .unwrap();
    // A plain raw socket in B to look at the IP header the kernel built.
    let spy = b.run(|| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(103)))).unwrap();
    spy.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    rt.block_on(async {
        assert_eq!(sa.send(&HELLO).await.unwrap(), HELLO.len());
        let mut buf = vec![0u8; 65_536];
        let got =
            tokio::time::timeout(Duration::from_secs(3), sb.recv(&mut buf)).await.expect("B got no Hello").unwrap();
        assert_eq!(got.payload, &HELLO[..]);
        assert_eq!(got.src, IpAddr::V4(A_ADDR));
        assert_eq!(got.dst, IpAddr::V4(ALL_PIM_ROUTERS_V4));
        assert_eq!(got.ifindex, b0);

        // No loopback of our own Hello.
        let mut own = vec![0u8; 2048];
        assert!(tokio::time::timeout(Duration::from_millis(300), sa.recv(&mut own)).await.is_err());
    });

    let mut raw = [0u8; 2048];
    let n = std::io::Read::read(&mut &spy, &mut raw).expect("spy socket read");
    let header = ipv4::Packet::new_checked(&raw[..n]).unwrap();
    assert_eq!(header.ttl(), 1);
    assert_eq!(header.tos(), 0xc0, "CS6");
    assert_eq!(header.payload(), &HELLO[..]);

    // The synchronous helpers work on the same sockets.
    pim::send_pim_v4(sa.socket(), &HELLO).unwrap();
    let mut buf = vec![0u8; 2048];
    let got =
        wait_for(Duration::from_secs(3), || pim::recv_pim_v4(sb.socket(), &mut buf).ok().map(|d| d.payload.len()));
    assert_eq!(got, Some(HELLO.len()));
}

#[test]
fn ipv6_hello_with_kernel_checksum() {
    require_root!();
    let (a, b) = pair();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (a0, b0) = (a.ifindex("a0"), b.ifindex("b0"));
    let a_ll = link_local(&a, "a0");
    link_local(&b, "b0");
    let sa = a
        .run(|| {
            let _g = rt.enter();
            PimSocket::open_v6(a0)
        })
        .unwrap();
    let sb = b
        .run(|| {
            let _g = rt.enter();
            PimSocket::open_v6(b0)
        })
        .unwrap();

    let mut hello = HELLO;
    hello[2] = 0;
    hello[3] = 0; // the kernel computes it
    rt.block_on(async {
        sa.send(&hello).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let got =
            tokio::time::timeout(Duration::from_secs(3), sb.recv(&mut buf)).await.expect("B got no Hello").unwrap();
        assert_eq!(got.src, IpAddr::V6(a_ll));
        assert_eq!(got.dst, IpAddr::V6(ALL_PIM_ROUTERS_V6));
        assert_eq!(got.ifindex, b0);
        assert_eq!(got.payload.len(), hello.len());
        assert_eq!(got.payload[..2], hello[..2]);
        assert_eq!(got.payload[4..], hello[4..]);
        // The checksum the kernel filled in covers the IPv6 pseudo-header (RFC 7761 §4.9).
        let sum = checksum::combine(&[
            checksum::pseudo_header_v6(&a_ll, &ALL_PIM_ROUTERS_V6, 103, got.payload.len() as u32),
            checksum::data(got.payload),
        ]);
        assert!(checksum::verifies(sum), "checksum {:02x}{:02x} does not verify", got.payload[2], got.payload[3]);
    });

    // A Hello with a wrong checksum (sent from a raw socket without IPV6_CHECKSUM) is dropped
    // by B's kernel before the PIM socket sees it.
    let bad_sender = a.run(|| Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(103)))).unwrap();
    bad_sender.set_multicast_if_v6(a0).unwrap();
    bad_sender.set_multicast_hops_v6(1).unwrap();
    let mut bad = hello;
    bad[2] = 0x12;
    bad[3] = 0x34;
    bad_sender.send_to(&bad, &SocketAddrV6::new(ALL_PIM_ROUTERS_V6, 0, 0, a0).into()).unwrap();
    rt.block_on(async {
        let mut buf = vec![0u8; 2048];
        let r = tokio::time::timeout(Duration::from_millis(500), sb.recv(&mut buf)).await;
        assert!(r.is_err(), "a bad checksum reached the PIM socket: {r:?}");
    });
}
