//! pimwatch's metrics (`--metrics-listen`): the PIM engine's own counters, copied into the
//! registry once a second by the event loop, so receiving a packet costs nothing extra.

use mcast_daemon::metrics::Registry;
use mcast_daemon::metrics::{Counter, CounterFamily, Gauge, GaugeFamily, set_counter, set_counters, set_gauge};
use mcast_pim::Counters;

/// Every pimwatch metric (names get the `pimwatch_` prefix).
#[derive(Debug, Default)]
pub struct Metrics {
    received: CounterFamily,
    sent: CounterFamily,
    drops: CounterFamily,
    join_entries: Counter,
    prune_entries: Counter,
    neighbors: GaugeFamily,
    joined: Gauge,
    forwarding: Gauge,
    /// Counted where it happens.
    pub joinfile_write_failures: Counter,
}

impl Metrics {
    /// The metrics and the registry that exposes them.
    pub fn new() -> (Metrics, Registry) {
        let m = Metrics::default();
        let mut r = Registry::with_prefix("pimwatch");
        r.register("pim_messages_received", "PIM messages received, by type", m.received.clone());
        r.register("pim_messages_sent", "PIM messages sent, by type", m.sent.clone());
        r.register("drops", "PIM packets and Join/Prune entries not acted on, by reason", m.drops.clone());
        r.register("join_entries", "(S,G) Join entries acted on", m.join_entries.clone());
        r.register("prune_entries", "(S,G) Prune entries acted on", m.prune_entries.clone());
        r.register("neighbors", "PIM neighbours, by downstream interface", m.neighbors.clone());
        r.register("joined_sgs", "(S,G)s joined (the joinfile's lines)", m.joined.clone());
        r.register("forwarding_entries", "Kernel multicast forwarding (MFC) entries installed", m.forwarding.clone());
        r.register("joinfile_write_failures", "Failed joinfile writes", m.joinfile_write_failures.clone());
        (m, r)
    }

    /// Copies the engine's counts.
    pub fn refresh(
        &self,
        counters: &Counters,
        neighbors: impl IntoIterator<Item = (String, u64)>,
        joined: u64,
        forwarding: u64,
    ) {
        set_counters(&self.received, "type", counters.received.iter().map(|(t, n)| (t.to_string(), *n)));
        set_counters(&self.sent, "type", counters.sent.iter().map(|(t, n)| (t.to_string(), *n)));
        set_counters(&self.drops, "reason", counters.dropped.iter().map(|(r, n)| (r.as_str(), *n)));
        set_counter(&self.join_entries, counters.join_entries);
        set_counter(&self.prune_entries, counters.prune_entries);
        for (interface, n) in neighbors {
            set_gauge(&self.neighbors.get_or_create(&[("interface", interface)]), n);
        }
        set_gauge(&self.joined, joined);
        set_gauge(&self.forwarding, forwarding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_engine_counts() {
        let (m, r) = Metrics::new();
        let mut counters = Counters::default();
        counters.received.insert(mcast_wire::pim::MessageType::Hello.into(), 3);
        counters.dropped.insert(mcast_pim::DropReason::NotSsm, 2);
        counters.join_entries = 5;
        m.refresh(&counters, [("down0".to_owned(), 1)], 4, 4);
        m.joinfile_write_failures.inc();
        let text = mcast_daemon::metrics::encode(&std::sync::Arc::new(std::sync::Mutex::new(r)));
        for line in [
            "pimwatch_pim_messages_received_total{type=\"hello\"} 3",
            "pimwatch_drops_total{reason=\"not-ssm\"} 2",
            "pimwatch_join_entries_total 5",
            "pimwatch_neighbors{interface=\"down0\"} 1",
            "pimwatch_joined_sgs 4",
            "pimwatch_forwarding_entries 4",
            "pimwatch_joinfile_write_failures_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
