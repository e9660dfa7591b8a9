//! Parse and emit cost of the two hottest messages: AMT Multicast Data (every ingested packet
//! crosses the gateway and the relay) and PIM Join/Prune (every join the network sends).
//! Run with `cargo bench -p mcast-wire`; figures are recorded in BENCHMARKS.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mcast_wire::pim::{ChecksumContext, EncodedSource, JoinPruneGroup, Packet as PimPacket, Repr as PimRepr};
use mcast_wire::{IpProtocol, amt, ipv4, udp};

/// An AMT Multicast Data message carrying an IPv4/UDP datagram with `payload` bytes of data.
fn amt_data(payload: usize) -> Vec<u8> {
    let src = Ipv4Addr::new(198, 51, 100, 10);
    let dst = Ipv4Addr::new(232, 1, 1, 1);
    let data = vec![0x5a; payload];
    let mut segment = vec![0; udp::HEADER_LEN + payload];
    udp::Repr { src_port: 40000, dst_port: 5001 }
        .emit_with_payload(&mut segment, &IpAddr::V4(src), &IpAddr::V4(dst), &data)
        .unwrap();
    let datagram = ipv4::Repr::new(src, dst, IpProtocol::UDP, 64, segment.len()).datagram(&segment).unwrap();
    amt::Repr::MulticastData { datagram: &datagram }.to_vec().unwrap()
}

/// A Join/Prune with `groups` groups of one joined source each, like FRR aggregates them.
fn join_prune(groups: usize) -> PimRepr {
    let groups = (0..groups)
        .map(|i| {
            JoinPruneGroup::new(IpAddr::V4(Ipv4Addr::new(232, 1, (i >> 8) as u8, i as u8)))
                .with_join(EncodedSource::source(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10))))
        })
        .collect();
    PimRepr::join_prune(IpAddr::V4(Ipv4Addr::new(10, 9, 1, 2)), 210, groups)
}

fn bench_amt(c: &mut Criterion) {
    let mut group = c.benchmark_group("amt_data");
    for payload in [100usize, 1400] {
        let message = amt_data(payload);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("parse_repr", payload), &message, |b, m| {
            b.iter(|| {
                let repr = amt::Repr::parse_bytes(black_box(m)).unwrap();
                black_box(repr);
            })
        });
        group.bench_with_input(BenchmarkId::new("parse_fast_path", payload), &message, |b, m| {
            b.iter(|| black_box(amt::parse_data(black_box(m))))
        });
        let inner = amt::parse_data(&message).unwrap().to_vec();
        let mut out = vec![0u8; 2048];
        group.bench_with_input(BenchmarkId::new("emit_repr", payload), &inner, |b, d| {
            b.iter(|| {
                let n = amt::Repr::MulticastData { datagram: black_box(d) }.emit(&mut out).unwrap();
                black_box(&out[..n]);
            })
        });
        // The relay's way: the datagram is already in the send buffer after a 2-byte gap.
        let mut buf = vec![0u8; 2 + inner.len()];
        buf[2..].copy_from_slice(&inner);
        group.bench_function(BenchmarkId::new("emit_header_in_place", payload), |b| {
            b.iter(|| {
                amt::emit_data_header(black_box(&mut buf)).unwrap();
                black_box(&buf);
            })
        });
    }
    group.finish();
}

fn bench_pim(c: &mut Criterion) {
    let mut group = c.benchmark_group("pim_join_prune");
    for groups in [1usize, 20] {
        let repr = join_prune(groups);
        let bytes = repr.to_bytes(ChecksumContext::V4).unwrap();
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("parse_repr", groups), &bytes, |b, m| {
            b.iter(|| {
                let packet = PimPacket::new_checked(black_box(&m[..])).unwrap();
                black_box(PimRepr::parse(&packet, ChecksumContext::V4).unwrap());
            })
        });
        group.bench_with_input(BenchmarkId::new("parse_view", groups), &bytes, |b, m| {
            b.iter(|| {
                let packet = PimPacket::new_checked(black_box(&m[..])).unwrap();
                assert!(packet.verify_checksum(ChecksumContext::V4));
                let view = packet.join_prune().unwrap();
                let mut n = 0;
                for g in view.groups() {
                    for s in g.joins() {
                        n += usize::from(s.sparse);
                    }
                }
                black_box(n);
            })
        });
        let mut out = vec![0u8; repr.buffer_len()];
        group.bench_with_input(BenchmarkId::new("emit", groups), &repr, |b, r| {
            b.iter(|| black_box(r.emit(&mut out, ChecksumContext::V4).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_amt, bench_pim);
criterion_main!(benches);
