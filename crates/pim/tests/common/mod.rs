//! Test harness: an engine with injected time, packet builders using mcast_wire, and the FRR
//! samples from lab-notes.md.
#![allow(dead_code)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mcast_pim::{Config, Engine, Event, InterfaceId, SourceGroup, Transmit};
use mcast_wire::checksum;
use mcast_wire::pim::{
    ChecksumContext, EncodedSource, Hello, HelloOption, JoinPrune, JoinPruneGroup, LanPruneDelay, MessageType, Packet,
    Repr,
};

/// lab-notes.md §6.1: FRR 8.4.4's Join from 10.9.1.1 to upstream 10.9.1.2 for
/// (23.212.185.4, 232.1.1.1), holdtime 210 s.
pub const FRR_JOIN: &str = "2300100501000a090102000100d201000020e8010101000100000100042017d4b904";
/// lab-notes.md §6.1: the matching Prune.
pub const FRR_PRUNE: &str = "2300100501000a090102000100d201000020e8010101000000010100042017d4b904";

pub const IF1: InterfaceId = InterfaceId::v4(2);
pub const IF2: InterfaceId = InterfaceId::v4(3);
pub const IF6: InterfaceId = InterfaceId::v6(2);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn sg(s: &str, g: &str) -> SourceGroup {
    SourceGroup::new(ip(s), ip(g))
}

/// Our address on IF1 and the downstream router's (lab-notes.md §2).
pub fn us() -> IpAddr {
    ip("10.9.1.2")
}
pub fn frr() -> IpAddr {
    ip("10.9.1.1")
}
pub fn other_router() -> IpAddr {
    ip("10.9.1.3")
}
pub fn us2() -> IpAddr {
    ip("10.9.2.2")
}
pub fn frr2() -> IpAddr {
    ip("10.9.2.1")
}
pub fn all_pim_v4() -> IpAddr {
    ip("224.0.0.13")
}
pub fn all_pim_v6() -> IpAddr {
    ip("ff02::d")
}

/// The sample channel of lab-notes.md.
pub fn sample_sg() -> SourceGroup {
    sg("23.212.185.4", "232.1.1.1")
}

pub fn bytes(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str.replace(' ', "")).unwrap()
}

/// FRR's Hello (lab-notes.md §5.1): Holdtime, LAN Prune Delay T=0 500 ms / 2500 ms, DR
/// Priority 1, GenID, and an Address List with an IPv6 link-local address (family 2) even on
/// IPv4. Holdtime and GenID are parameters.
pub fn frr_hello(holdtime: u16, genid: u32) -> Vec<u8> {
    let mut msg = bytes("20000000");
    msg.extend_from_slice(&[0, 1, 0, 2]);
    msg.extend_from_slice(&holdtime.to_be_bytes());
    msg.extend_from_slice(&bytes("0002 0004 01f4 09c4"));
    msg.extend_from_slice(&bytes("0013 0004 00000001"));
    msg.extend_from_slice(&[0, 0x14, 0, 4]);
    msg.extend_from_slice(&genid.to_be_bytes());
    msg.extend_from_slice(&bytes("0018 0012 0200 fe800000000000000c8a2ffffe0fd81d"));
    let sum = checksum::finish(checksum::data(&msg));
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    msg
}

/// A Hello with exactly these options, IPv4 checksum.
pub fn hello(options: Vec<HelloOption>) -> Vec<u8> {
    Repr::hello(options).to_bytes(ChecksumContext::V4).unwrap()
}

/// A Hello with Holdtime, LAN Prune Delay, DR Priority 1 and GenID (like FRR, no address list).
pub fn std_hello(holdtime: u16, genid: u32, lpd: Option<(u16, u16)>) -> Vec<u8> {
    let mut options = vec![HelloOption::Holdtime(holdtime)];
    if let Some((p, o)) = lpd {
        options.push(HelloOption::LanPruneDelay(LanPruneDelay {
            t_bit: false,
            propagation_delay_ms: p,
            override_interval_ms: o,
        }));
    }
    options.push(HelloOption::DrPriority(1));
    options.push(HelloOption::GenerationId(genid));
    hello(options)
}

/// A Join/Prune, IPv4 checksum.
pub fn jp(upstream: IpAddr, holdtime: u16, groups: Vec<JoinPruneGroup>) -> Vec<u8> {
    Repr::join_prune(upstream, holdtime, groups).to_bytes(ChecksumContext::V4).unwrap()
}

/// A Join/Prune for IPv6 with a zero checksum (as the kernel delivers it with IPV6_CHECKSUM).
pub fn jp6(upstream: IpAddr, holdtime: u16, groups: Vec<JoinPruneGroup>) -> Vec<u8> {
    Repr::join_prune(upstream, holdtime, groups).to_bytes(ChecksumContext::Unchecked).unwrap()
}

/// Join(S,G) for one channel.
pub fn join_one(upstream: IpAddr, holdtime: u16, sg: SourceGroup) -> Vec<u8> {
    jp(upstream, holdtime, vec![JoinPruneGroup::new(sg.group).with_join(EncodedSource::source(sg.source))])
}

/// Prune(S,G) for one channel.
pub fn prune_one(upstream: IpAddr, holdtime: u16, sg: SourceGroup) -> Vec<u8> {
    jp(upstream, holdtime, vec![JoinPruneGroup::new(sg.group).with_prune(EncodedSource::source(sg.source))])
}

/// Decodes a transmitted message, checking its checksum for its family.
pub fn decode(tx: &Transmit) -> Repr {
    let packet = Packet::new_checked(&tx.payload[..]).unwrap();
    let ctx = if tx.dst.is_ipv4() {
        ChecksumContext::V4
    } else {
        assert_eq!(packet.checksum(), 0, "IPv6 checksum is left to the kernel");
        ChecksumContext::Unchecked
    };
    Repr::parse(&packet, ctx).unwrap()
}

pub fn decode_hello(tx: &Transmit) -> Hello {
    decode(tx).as_hello().cloned().expect("a Hello")
}

pub fn decode_jp(tx: &Transmit) -> JoinPrune {
    decode(tx).as_join_prune().cloned().expect("a Join/Prune")
}

pub fn msg_type(tx: &Transmit) -> MessageType {
    Packet::new_checked(&tx.payload[..]).unwrap().msg_type()
}

/// The test config: defaults, deterministic through the seed.
pub fn config() -> Config {
    Config::default()
}

/// An engine with injected time.
pub struct Harness {
    pub engine: Engine,
    pub t0: Instant,
    pub now: Instant,
}

impl Harness {
    pub fn new(config: Config) -> Harness {
        Harness::with_seed(config, 7)
    }

    pub fn with_seed(config: Config, seed: u64) -> Harness {
        let t0 = Instant::now();
        Harness { engine: Engine::new(config, seed).unwrap(), t0, now: t0 }
    }

    /// Default config, IF1 up with 10.9.1.2, its first Hello sent and drained.
    pub fn started() -> Harness {
        let mut h = Harness::new(config());
        h.add_if1();
        h.advance(Duration::from_millis(100));
        h.drain();
        h
    }

    pub fn add_if1(&mut self) {
        self.engine.add_interface(IF1, "ing0", us(), vec![], self.now).unwrap();
    }

    pub fn add_if2(&mut self) {
        self.engine.add_interface(IF2, "ing1", us2(), vec![], self.now).unwrap();
    }

    /// Moves the clock and runs due timers.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.engine.handle_timeout(self.now);
    }

    /// Moves the clock to `t` and runs due timers.
    pub fn advance_to(&mut self, t: Instant) {
        assert!(t >= self.now);
        self.now = t;
        self.engine.handle_timeout(self.now);
    }

    /// Receives an IPv4 PIM message on `id` from `src` to ALL-PIM-ROUTERS.
    pub fn recv(&mut self, id: InterfaceId, src: IpAddr, payload: &[u8]) -> Result<(), mcast_pim::DropReason> {
        let dst = if src.is_ipv4() { all_pim_v4() } else { all_pim_v6() };
        self.engine.handle_packet(id, src, dst, payload, self.now)
    }

    /// FRR's Hello on IF1, events and transmits drained.
    pub fn frr_up(&mut self) {
        self.recv(IF1, frr(), &frr_hello(105, 0x4d114bd5)).unwrap();
        self.advance(Duration::from_millis(100));
        self.drain();
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }

    pub fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.engine.poll_transmit()).collect()
    }

    pub fn drain(&mut self) {
        self.events();
        self.transmits();
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}
