//! Random sequences of Hellos, Join/Prunes, restores, interface changes, garbage and time
//! advances: the engine never panics, and what its events say always matches what it reports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use mcast_pim::{Config, Engine, Event, InterfaceId, SourceGroup};
use mcast_wire::pim::{ChecksumContext, EncodedSource, HelloOption, JoinPruneGroup, LanPruneDelay, Repr};
use proptest::prelude::*;

const IFACES: [InterfaceId; 3] = [IF1, IF2, IF6];

fn our_addr(i: usize) -> IpAddr {
    match i {
        0 => ip("10.9.1.2"),
        1 => ip("10.9.2.2"),
        _ => ip("fe80::2"),
    }
}

fn neighbor_addr(i: usize, n: usize) -> IpAddr {
    match i {
        0 => ip(&format!("10.9.1.{}", 10 + n)),
        1 => ip(&format!("10.9.2.{}", 10 + n)),
        _ => ip(&format!("fe80::{}", 10 + n)),
    }
}

fn channel(i: usize, s: usize, g: usize) -> SourceGroup {
    if i == 2 {
        sg(&format!("2001:db8::{}", s + 1), &format!("ff3e::{}", g + 1))
    } else {
        sg(&format!("23.212.185.{}", s + 1), &format!("232.1.1.{}", g + 1))
    }
}

fn ctx(i: usize) -> ChecksumContext {
    if i == 2 { ChecksumContext::Unchecked } else { ChecksumContext::V4 }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sg,
    StarG,
    Rpt,
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Hello { iface: usize, nbr: usize, holdtime: u16, genid: u32, lpd: bool },
    JoinPrune { iface: usize, nbr: usize, to_us: bool, holdtime: u16, entries: Vec<(usize, usize, bool, Kind)> },
    Garbage { iface: usize, nbr: usize, bytes: Vec<u8> },
    Restore { entries: Vec<(usize, usize, usize)>, holdtime: u64 },
    Remove(usize),
    Add(usize),
    Readdress(usize, bool),
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![8 => Just(Kind::Sg), 1 => Just(Kind::StarG), 1 => Just(Kind::Rpt)];
    let holdtime = prop_oneof![Just(0u16), Just(3), Just(17), Just(210), Just(0xffff)];
    prop_oneof![
        6 => prop_oneof![0..5_000u64, 0..250_000u64].prop_map(Op::Advance),
        4 => (0..3usize, 0..3usize, prop_oneof![Just(0u16), Just(5), Just(105), Just(0xffff)], 0..3u32, any::<bool>())
            .prop_map(|(iface, nbr, holdtime, genid, lpd)| Op::Hello { iface, nbr, holdtime, genid, lpd }),
        8 => (
            0..3usize,
            0..3usize,
            prop::bool::weighted(0.9),
            holdtime,
            prop::collection::vec((0..3usize, 0..3usize, prop::bool::weighted(0.6), kind), 1..6)
        )
            .prop_map(|(iface, nbr, to_us, holdtime, entries)| Op::JoinPrune { iface, nbr, to_us, holdtime, entries }),
        1 => (0..3usize, 0..3usize, prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(iface, nbr, bytes)| Op::Garbage { iface, nbr, bytes }),
        1 => (prop::collection::vec((0..3usize, 0..3usize, 0..3usize), 0..4), 0..300u64)
            .prop_map(|(entries, holdtime)| Op::Restore { entries, holdtime }),
        1 => (0..3usize).prop_map(Op::Remove),
        1 => (0..3usize).prop_map(Op::Add),
        1 => (0..3usize, any::<bool>()).prop_map(|(i, b)| Op::Readdress(i, b)),
        1 => Just(Op::Shutdown),
    ]
}

/// What the events have said so far.
#[derive(Default)]
struct Model {
    joined: BTreeSet<SourceGroup>,
    oifs: BTreeMap<SourceGroup, BTreeSet<InterfaceId>>,
}

impl Model {
    fn apply(&mut self, event: &Event) -> Result<(), TestCaseError> {
        match event {
            Event::InterfaceJoin { interface, sg, .. } => {
                prop_assert!(self.oifs.entry(*sg).or_default().insert(*interface), "double InterfaceJoin {event:?}");
            }
            Event::InterfacePrune { interface, sg, .. } => {
                let set = self.oifs.entry(*sg).or_default();
                prop_assert!(set.remove(interface), "InterfacePrune without InterfaceJoin {event:?}");
                if set.is_empty() {
                    self.oifs.remove(sg);
                }
            }
            Event::Joined(sg) => {
                prop_assert!(self.joined.insert(*sg), "Joined twice without Left: {sg}");
                prop_assert!(self.oifs.contains_key(sg), "Joined before any InterfaceJoin: {sg}");
            }
            Event::Left(sg) => {
                prop_assert!(self.joined.remove(sg), "Left without Joined: {sg}");
                prop_assert!(!self.oifs.contains_key(sg), "Left while an interface is still joined: {sg}");
            }
            Event::InterfacePrunePending { interface, sg, .. }
            | Event::InterfacePruneOverridden { interface, sg }
            | Event::RestoreConfirmed { interface, sg } => {
                prop_assert!(self.oifs.get(sg).is_some_and(|s| s.contains(interface)), "{event:?} on NoInfo");
            }
            Event::NeighborUp { .. }
            | Event::NeighborDown { .. }
            | Event::NeighborRestarted { .. }
            | Event::DrChanged { .. }
            | Event::EntryIgnored { .. } => {}
        }
        Ok(())
    }
}

fn check(engine: &mut Engine, model: &mut Model, now: Instant) -> Result<(), TestCaseError> {
    while let Some(event) = engine.poll_event() {
        model.apply(&event)?;
    }
    while let Some(tx) = engine.poll_transmit() {
        let repr = decode(&tx); // valid, checksummed for IPv4, zero for IPv6
        prop_assert_eq!(tx.dst, tx.interface.family.all_pim_routers());
        if let Some(jp) = repr.as_join_prune() {
            // Only PruneEchoes: our own address as upstream, prunes only.
            prop_assert_eq!(jp.upstream_neighbor.0, tx.src);
            prop_assert!(jp.groups.iter().all(|g| g.joins.is_empty() && !g.prunes.is_empty()));
        }
    }
    let joined: BTreeSet<SourceGroup> = engine.joined().collect();
    prop_assert_eq!(&joined, &model.joined);
    prop_assert!(engine.joined().collect::<Vec<_>>().windows(2).all(|w| w[0] < w[1]), "joined() is sorted");
    for sg in &joined {
        let oifs: BTreeSet<InterfaceId> = engine.oifs(sg).into_iter().collect();
        prop_assert!(!oifs.is_empty());
        prop_assert_eq!(Some(&oifs), model.oifs.get(sg));
        for id in &oifs {
            prop_assert!(engine.downstream(*id, sg).is_some());
        }
    }
    prop_assert_eq!(model.oifs.len(), joined.len());
    if let Some(t) = engine.poll_timeout() {
        prop_assert!(t > now, "a due timer was left unprocessed");
    }
    Ok(())
}

fn run(ops: Vec<Op>, config: Config) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut engine = Engine::new(config, 99).unwrap();
    let mut model = Model::default();
    for (i, id) in IFACES.iter().enumerate() {
        engine.add_interface(*id, format!("if{i}"), our_addr(i), vec![], now).unwrap();
    }
    let mut readdressed = [false; 3];
    for op in ops {
        match op {
            Op::Advance(ms) => {
                now += Duration::from_millis(ms);
                engine.handle_timeout(now);
            }
            Op::Hello { iface, nbr, holdtime, genid, lpd } => {
                let mut options = vec![HelloOption::Holdtime(holdtime), HelloOption::GenerationId(genid)];
                if lpd {
                    options.push(HelloOption::LanPruneDelay(LanPruneDelay {
                        t_bit: false,
                        propagation_delay_ms: 500,
                        override_interval_ms: 2500,
                    }));
                }
                let bytes = Repr::hello(options).to_bytes(ctx(iface)).unwrap();
                let src = neighbor_addr(iface, nbr);
                let _ = engine.handle_packet(IFACES[iface], src, IFACES[iface].family.all_pim_routers(), &bytes, now);
            }
            Op::JoinPrune { iface, nbr, to_us, holdtime, entries } => {
                let upstream = if !to_us {
                    neighbor_addr(iface, 2)
                } else if readdressed[iface] {
                    ip(if iface == 2 { "fe80::99" } else { "10.9.9.9" })
                } else {
                    our_addr(iface)
                };
                let mut groups: BTreeMap<IpAddr, JoinPruneGroup> = BTreeMap::new();
                for (s, g, join, kind) in entries {
                    let c = channel(iface, s, g);
                    let source = match kind {
                        Kind::Sg => EncodedSource::source(c.source),
                        Kind::StarG => EncodedSource::wildcard(c.source),
                        Kind::Rpt => EncodedSource::source_rpt(c.source),
                    };
                    let group = groups.entry(c.group).or_insert_with(|| JoinPruneGroup::new(c.group));
                    if join {
                        group.joins.push(source);
                    } else {
                        group.prunes.push(source);
                    }
                }
                let bytes =
                    Repr::join_prune(upstream, holdtime, groups.into_values().collect()).to_bytes(ctx(iface)).unwrap();
                let src = neighbor_addr(iface, nbr);
                let _ = engine.handle_packet(IFACES[iface], src, IFACES[iface].family.all_pim_routers(), &bytes, now);
            }
            Op::Garbage { iface, nbr, bytes } => {
                let src = neighbor_addr(iface, nbr);
                let _ = engine.handle_packet(IFACES[iface], src, IFACES[iface].family.all_pim_routers(), &bytes, now);
            }
            Op::Restore { entries, holdtime } => {
                let sgs: Vec<SourceGroup> = entries.into_iter().map(|(i, s, g)| channel(i, s, g)).collect();
                engine.restore(sgs, Duration::from_secs(holdtime), now);
            }
            Op::Remove(i) => {
                let _ = engine.remove_interface(IFACES[i], now);
            }
            Op::Add(i) => {
                let _ = engine.add_interface(IFACES[i], format!("if{i}"), our_addr(i), vec![], now);
                readdressed[i] = false;
            }
            Op::Readdress(i, new_primary) => {
                let primary = if new_primary { ip(if i == 2 { "fe80::99" } else { "10.9.9.9" }) } else { our_addr(i) };
                let secondary = if i == 2 { vec![ip("2001:db8:9::2")] } else { vec![ip("10.9.3.3")] };
                if engine.update_addresses(IFACES[i], primary, secondary, now).is_ok() {
                    readdressed[i] = new_primary;
                }
            }
            Op::Shutdown => engine.shutdown(now),
        }
        check(&mut engine, &mut model, now)?;
    }
    // Everything eventually expires, except infinite holdtimes.
    now += Duration::from_secs(100_000);
    engine.handle_timeout(now);
    check(&mut engine, &mut model, now)?;
    for sg in engine.joined().collect::<Vec<_>>() {
        for id in engine.oifs(&sg) {
            prop_assert_eq!(engine.downstream(id, &sg).unwrap().expires, None, "only infinite holdtimes remain");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_events_and_state_consistent(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, Config::default())?;
    }

    #[test]
    fn random_sequences_with_tight_limits(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, Config { max_joined_sgs: 3, max_neighbors: 2, triggered_hello_delay: Duration::ZERO, ..Config::default() })?;
    }
}
