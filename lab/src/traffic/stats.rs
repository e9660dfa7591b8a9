//! Receiver statistics as pure functions of what arrived: loss, duplicates and reordering from
//! sequence numbers, one-way latency percentiles from the embedded send timestamps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What one arriving sequence number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first packet of the stream.
    First,
    /// Above everything seen so far, directly after it.
    InOrder,
    /// Above everything seen so far, with `skipped` numbers missing in between.
    Jump { skipped: u64 },
    /// Below the highest seen, filling a hole: it came late (reordering).
    Late,
    /// Seen before.
    Duplicate,
}

/// Tracks one sender session's sequence numbers exactly, in memory proportional to the number
/// of holes (missing numbers are kept as ranges).
///
/// * `lost` = numbers between the lowest and highest received that never arrived (so losses
///   before the first or after the last received packet are not counted: a receiver cannot
///   see them, compare with the sender's count for those).
/// * `reordered` = packets that arrived after a higher number had arrived.
/// * `duplicates` = packets whose number had already arrived.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    range: Option<(u64, u64)>,
    /// start → end (inclusive) of missing numbers inside `range`.
    missing: BTreeMap<u64, u64>,
    missing_count: u64,
    unique: u64,
    duplicates: u64,
    reordered: u64,
}

impl SeqTracker {
    pub fn new() -> SeqTracker {
        SeqTracker::default()
    }

    /// Records one arriving sequence number.
    pub fn observe(&mut self, seq: u64) -> Arrival {
        let Some((min, max)) = self.range else {
            self.range = Some((seq, seq));
            self.unique = 1;
            return Arrival::First;
        };
        if seq > max {
            self.range = Some((min, seq));
            self.unique += 1;
            if seq == max + 1 {
                return Arrival::InOrder;
            }
            self.add_missing(max + 1, seq - 1);
            return Arrival::Jump { skipped: seq - max - 1 };
        }
        if seq < min {
            self.range = Some((seq, max));
            self.unique += 1;
            self.reordered += 1;
            if seq + 1 < min {
                self.add_missing(seq + 1, min - 1);
            }
            return Arrival::Late;
        }
        // Inside the range: either it fills a hole or it is a duplicate.
        if let Some((&start, &end)) = self.missing.range(..=seq).next_back()
            && seq <= end
        {
            self.missing.remove(&start);
            if start < seq {
                self.missing.insert(start, seq - 1);
            }
            if seq < end {
                self.missing.insert(seq + 1, end);
            }
            self.missing_count -= 1;
            self.unique += 1;
            self.reordered += 1;
            return Arrival::Late;
        }
        self.duplicates += 1;
        Arrival::Duplicate
    }

    fn add_missing(&mut self, start: u64, end: u64) {
        self.missing.insert(start, end);
        self.missing_count += end - start + 1;
    }

    /// Distinct sequence numbers received.
    pub fn unique(&self) -> u64 {
        self.unique
    }
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
    pub fn reordered(&self) -> u64 {
        self.reordered
    }
    /// Numbers missing between the lowest and the highest received.
    pub fn lost(&self) -> u64 {
        self.missing_count
    }
    /// Number of separate holes.
    pub fn gaps(&self) -> u64 {
        self.missing.len() as u64
    }
    /// Lowest and highest received.
    pub fn range(&self) -> Option<(u64, u64)> {
        self.range
    }
    /// The first `limit` holes as inclusive ranges.
    pub fn gap_ranges(&self, limit: usize) -> Vec<[u64; 2]> {
        self.missing.iter().take(limit).map(|(&s, &e)| [s, e]).collect()
    }
}

/// Sequence tracking across sender sessions (a restarted sender starts a new session at 0).
#[derive(Debug, Clone, Default)]
pub struct Streams {
    sessions: Vec<(u64, SeqTracker)>,
}

impl Streams {
    pub fn observe(&mut self, session: u64, seq: u64) -> Arrival {
        if let Some((_, t)) = self.sessions.iter_mut().find(|(s, _)| *s == session) {
            return t.observe(seq);
        }
        let mut t = SeqTracker::new();
        let a = t.observe(seq);
        self.sessions.push((session, t));
        a
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    fn sum(&self, f: impl Fn(&SeqTracker) -> u64) -> u64 {
        self.sessions.iter().map(|(_, t)| f(t)).sum()
    }

    pub fn unique(&self) -> u64 {
        self.sum(SeqTracker::unique)
    }
    pub fn duplicates(&self) -> u64 {
        self.sum(SeqTracker::duplicates)
    }
    pub fn reordered(&self) -> u64 {
        self.sum(SeqTracker::reordered)
    }
    pub fn lost(&self) -> u64 {
        self.sum(SeqTracker::lost)
    }
    pub fn gaps(&self) -> u64 {
        self.sum(SeqTracker::gaps)
    }
    /// The current (most recently started) session's tracker.
    pub fn current(&self) -> Option<&SeqTracker> {
        self.sessions.last().map(|(_, t)| t)
    }
    pub fn gap_ranges(&self, limit: usize) -> Vec<[u64; 2]> {
        let mut v = Vec::new();
        for (_, t) in &self.sessions {
            v.extend(t.gap_ranges(limit - v.len().min(limit)));
        }
        v.truncate(limit);
        v
    }
}

/// One-way latency samples (microseconds), with bounded memory: after `cap` samples it keeps a
/// uniform reservoir, while min, max and mean stay exact.
#[derive(Debug, Clone)]
pub struct Latency {
    samples: Vec<f64>,
    seen: u64,
    cap: usize,
    min: f64,
    max: f64,
    sum: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::with_capacity(100_000)
    }
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn with_capacity(cap: usize) -> Latency {
        Latency { samples: Vec::new(), seen: 0, cap: cap.max(1), min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0 }
    }

    pub fn add(&mut self, micros: f64) {
        self.seen += 1;
        self.min = self.min.min(micros);
        self.max = self.max.max(micros);
        self.sum += micros;
        if self.samples.len() < self.cap {
            self.samples.push(micros);
        } else {
            let j = rand::random_range(0..self.seen);
            if (j as usize) < self.cap {
                self.samples[j as usize] = micros;
            }
        }
    }

    pub fn summary(&self) -> Option<LatencySummary> {
        if self.seen == 0 {
            return None;
        }
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        Some(LatencySummary {
            samples: self.seen,
            min: self.min,
            mean: self.sum / self.seen as f64,
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: self.max,
        })
    }
}

/// Nearest-rank percentile of sorted data.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The receiver's report, printed with `--json` and written to `--stats-file` (the scenario
/// runner reads it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecvReport {
    pub source: String,
    pub group: String,
    pub port: u16,
    pub interface: String,
    /// `joined` (waiting/receiving), `listening` (no join), `done` (count reached), `timeout`, `stopped` (signal, or
    /// the end of `--duration`).
    pub state: String,
    /// True when the count was reached (always false in hold mode, `--count 0`).
    pub ok: bool,
    pub count_target: u64,
    pub joined_unix: f64,
    pub elapsed_s: f64,
    /// Datagrams read from the socket (including duplicates and foreign ones).
    pub packets: u64,
    pub bytes: u64,
    /// Distinct lab datagrams received.
    pub received: u64,
    pub lost: u64,
    pub gaps: u64,
    pub gap_ranges: Vec<[u64; 2]>,
    pub duplicates: u64,
    pub reordered: u64,
    /// Datagrams that were not lab datagrams, or came from another source.
    pub foreign: u64,
    pub sessions: u64,
    /// Lowest and highest sequence number of the current sender session.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Time from the join to the first datagram.
    pub first_packet_delay_ms: Option<f64>,
    pub last_packet_unix: Option<f64>,
    /// Received datagrams per second between the first and the last one.
    pub rate_pps: Option<f64>,
    pub latency_us: Option<LatencySummary>,
}

impl RecvReport {
    /// Loss as a fraction of what should have arrived between the first and last packet.
    pub fn loss_ratio(&self) -> f64 {
        let expected = self.received + self.lost;
        if expected == 0 { 0.0 } else { self.lost as f64 / expected as f64 }
    }

    /// One human-readable line.
    pub fn summary_line(&self) -> String {
        let mut s = format!(
            "{} ({}, {}):{} on {}: received {} lost {} ({:.2}%) gaps {} dup {} reordered {}",
            self.state,
            self.source,
            self.group,
            self.port,
            self.interface,
            self.received,
            self.lost,
            self.loss_ratio() * 100.0,
            self.gaps,
            self.duplicates,
            self.reordered
        );
        if let Some(d) = self.first_packet_delay_ms {
            s.push_str(&format!(" first-packet {d:.1}ms"));
        }
        if let Some(l) = &self.latency_us {
            s.push_str(&format!(" latency p50 {:.0}us p99 {:.0}us max {:.0}us", l.p50, l.p99, l.max));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::new();
        for &s in seqs {
            t.observe(s);
        }
        t
    }

    #[test]
    fn in_order_no_loss() {
        let t = track(&[0, 1, 2, 3, 4]);
        assert_eq!((t.unique(), t.lost(), t.gaps(), t.duplicates(), t.reordered()), (5, 0, 0, 0, 0));
        assert_eq!(t.range(), Some((0, 4)));
    }

    #[test]
    fn starts_mid_stream() {
        // Joining late is not loss.
        let t = track(&[100, 101, 102]);
        assert_eq!((t.unique(), t.lost()), (3, 0));
    }

    #[test]
    fn gaps_are_counted_and_ranged() {
        let t = track(&[0, 1, 5, 6, 9]);
        assert_eq!(t.lost(), 5);
        assert_eq!(t.gaps(), 2);
        assert_eq!(t.gap_ranges(10), vec![[2, 4], [7, 8]]);
    }

    #[test]
    fn late_packets_fill_holes() {
        let mut t = SeqTracker::new();
        assert_eq!(t.observe(0), Arrival::First);
        assert_eq!(t.observe(3), Arrival::Jump { skipped: 2 });
        assert_eq!(t.observe(2), Arrival::Late);
        assert_eq!(t.observe(1), Arrival::Late);
        assert_eq!(t.observe(4), Arrival::InOrder);
        assert_eq!((t.unique(), t.lost(), t.gaps(), t.reordered(), t.duplicates()), (5, 0, 0, 2, 0));
        // Filling the middle of a hole splits it.
        let mut t = track(&[0, 10]);
        assert_eq!(t.observe(5), Arrival::Late);
        assert_eq!(t.gap_ranges(10), vec![[1, 4], [6, 9]]);
        assert_eq!(t.lost(), 8);
    }

    #[test]
    fn duplicates() {
        let mut t = track(&[0, 1, 2]);
        assert_eq!(t.observe(1), Arrival::Duplicate);
        assert_eq!(t.observe(2), Arrival::Duplicate);
        assert_eq!((t.unique(), t.duplicates(), t.lost(), t.reordered()), (3, 2, 0, 0));
        // A late arrival that fills a hole is not a duplicate, but the second copy is.
        let mut t = track(&[0, 2]);
        assert_eq!(t.observe(1), Arrival::Late);
        assert_eq!(t.observe(1), Arrival::Duplicate);
    }

    #[test]
    fn below_first() {
        let mut t = track(&[5, 6]);
        assert_eq!(t.observe(2), Arrival::Late);
        assert_eq!(t.range(), Some((2, 6)));
        assert_eq!((t.lost(), t.gap_ranges(5)), (2, vec![[3, 4]]));
        assert_eq!(t.observe(4), Arrival::Late);
        assert_eq!(t.observe(3), Arrival::Late);
        assert_eq!((t.lost(), t.gaps(), t.unique(), t.reordered()), (0, 0, 5, 3));
        assert_eq!(t.observe(1), Arrival::Late);
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn huge_jump_is_cheap() {
        let t = track(&[0, 1_000_000_000_000]);
        assert_eq!(t.lost(), 999_999_999_999);
        assert_eq!(t.gaps(), 1);
    }

    #[test]
    fn exhaustive_small_permutations_agree_with_a_set() {
        // Every arrival order of a small stream with holes and duplicates: the tracker must
        // agree with a naive set-based computation.
        let base: [u64; 6] = [0, 1, 3, 3, 6, 7];
        let mut idx: Vec<usize> = (0..base.len()).collect();
        let mut count = 0;
        permute(&mut idx, 0, &mut |order| {
            count += 1;
            let seqs: Vec<u64> = order.iter().map(|&i| base[i]).collect();
            let t = track(&seqs);
            let set: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
            let (min, max) = (*set.first().unwrap(), *set.last().unwrap());
            assert_eq!(t.unique(), set.len() as u64, "{seqs:?}");
            assert_eq!(t.duplicates(), (seqs.len() - set.len()) as u64, "{seqs:?}");
            assert_eq!(t.lost(), max - min + 1 - set.len() as u64, "{seqs:?}");
            let mut hi = None::<u64>;
            let mut seen = std::collections::BTreeSet::new();
            let mut reord = 0;
            for &s in &seqs {
                if seen.insert(s) && hi.is_some_and(|h| s < h) {
                    reord += 1;
                }
                hi = Some(hi.map_or(s, |h| h.max(s)));
            }
            assert_eq!(t.reordered(), reord, "{seqs:?}");
        });
        assert_eq!(count, 720);
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut impl FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }

    #[test]
    fn sessions_are_separate() {
        let mut s = Streams::default();
        for q in [0, 1, 2, 5] {
            s.observe(1, q);
        }
        // Sender restarted: new session from 0 is neither duplicate nor reordering.
        for q in [0, 1, 2] {
            s.observe(2, q);
        }
        assert_eq!(s.sessions(), 2);
        assert_eq!((s.unique(), s.lost(), s.duplicates(), s.reordered()), (7, 2, 0, 0));
        assert_eq!(s.current().unwrap().range(), Some((0, 2)));
        assert_eq!(s.gap_ranges(10), vec![[3, 4]]);
    }

    #[test]
    fn latency_percentiles() {
        let mut l = Latency::with_capacity(1000);
        for i in 1..=100 {
            l.add(i as f64);
        }
        let s = l.summary().unwrap();
        assert_eq!((s.min, s.p50, s.p90, s.p99, s.max), (1.0, 50.0, 90.0, 99.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert!(Latency::default().summary().is_none());
        // Past the cap, min/max/mean stay exact.
        let mut l = Latency::with_capacity(10);
        for i in 0..1000 {
            l.add(i as f64);
        }
        let s = l.summary().unwrap();
        assert_eq!((s.samples, s.min, s.max), (1000, 0.0, 999.0));
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn report_roundtrip() {
        let r = RecvReport { received: 9, lost: 1, state: "done".into(), ..Default::default() };
        assert!((r.loss_ratio() - 0.1).abs() < 1e-12);
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<RecvReport>(&j).unwrap(), r);
        assert!(r.summary_line().contains("lost 1 (10.00%)"));
    }
}
