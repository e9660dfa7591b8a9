//! driad-ingest's metrics (`--metrics-listen`): the manager's and the AMT gateway's own
//! counters, copied once a second by the event loop (the gateway counts per tunnel on the data
//! path already; the metrics add nothing there).

use std::collections::BTreeSet;

use mcast_amt::gateway::DataDrop;
use mcast_daemon::metrics::{
    Counter, CounterFamily, Gauge, GaugeFamily, Registry, declare, set_counter, set_counters, set_gauge, set_gauges,
};

use crate::manager::{Counters, Summary};

/// Every driad-ingest metric (names get the `driad_ingest_` prefix).
#[derive(Debug, Default)]
pub struct Metrics {
    tunnel_packets: CounterFamily,
    tunnel_bytes: CounterFamily,
    tunnels: GaugeFamily,
    sources: Gauge,
    wanted: Gauge,
    joined: Gauge,
    dns: CounterFamily,
    relay_failures: Counter,
    failovers: Counter,
    drops: CounterFamily,
    tun_packets: Counter,
    /// Relays with a series now (removed with their tunnel).
    relays: BTreeSet<String>,
}

impl Metrics {
    /// The metrics and the registry that exposes them.
    pub fn new() -> (Metrics, Registry) {
        let m = Metrics::default();
        let mut r = Registry::with_prefix("driad_ingest");
        r.register(
            "tunnel_packets",
            "Multicast Data packets decapsulated, by tunnel (relay)",
            m.tunnel_packets.clone(),
        );
        r.register("tunnel_bytes", "Bytes of decapsulated datagrams, by tunnel (relay)", m.tunnel_bytes.clone());
        r.register("tunnels", "AMT tunnels, by state", m.tunnels.clone());
        r.register("sources", "Sources wanted", m.sources.clone());
        r.register("wanted_sgs", "(S,G)s in the joinfile", m.wanted.clone());
        r.register("joined_sgs", "(S,G)s joined over the tunnels", m.joined.clone());
        r.register("dns_lookups", "AMTRELAY lookups, by result", m.dns.clone());
        r.register("relay_failures", "Relays reported failed", m.relay_failures.clone());
        r.register("failovers", "Sources moved from one relay to another", m.failovers.clone());
        r.register("drops", "Multicast Data dropped, by reason", m.drops.clone());
        r.register("tun_packets", "Packets written to the native interface", m.tun_packets.clone());
        declare(&m.tunnels, "state", &["connecting", "established", "failing"]);
        declare(&m.dns, "result", &["relays", "no-records", "no-relay", "failed"]);
        let mut reasons: Vec<&str> = DataDrop::ALL.iter().map(|r| r.as_str()).collect();
        reasons.push("tun-full");
        declare(&m.drops, "reason", &reasons);
        (m, r)
    }

    /// Copies the manager's counts and, when the gateway answered, its per-tunnel counters.
    pub fn refresh(&mut self, summary: &Summary, counters: &Counters, gateway: Option<&mcast_amt_gateway::Status>) {
        set_counters(
            &self.dns,
            "result",
            [
                ("relays", counters.lookups_with_relays),
                ("no-records", counters.lookups_no_records),
                ("no-relay", counters.lookups_no_relay),
                ("failed", counters.lookups_failed),
            ],
        );
        set_counter(&self.relay_failures, counters.relay_failures);
        set_counter(&self.failovers, counters.failovers);
        set_gauges(
            &self.tunnels,
            "state",
            [("connecting", summary.connecting), ("established", summary.established), ("failing", summary.failing)]
                .map(|(s, n)| (s, n as u64)),
        );
        set_gauge(&self.sources, summary.sources as u64);
        set_gauge(&self.wanted, summary.wanted_sgs as u64);
        set_gauge(&self.joined, summary.tunnel_sgs as u64);
        let Some(gateway) = gateway else { return };
        let mut relays = BTreeSet::new();
        for t in &gateway.gateway.tunnels {
            let relay = t.relay.to_string();
            set_counter(&self.tunnel_packets.get_or_create(&[("relay", relay.clone())]), t.counters.packets);
            set_counter(&self.tunnel_bytes.get_or_create(&[("relay", relay.clone())]), t.counters.bytes);
            relays.insert(relay);
        }
        for gone in self.relays.difference(&relays) {
            self.tunnel_packets.remove(&[("relay", gone.clone())]);
            self.tunnel_bytes.remove(&[("relay", gone.clone())]);
        }
        self.relays = relays;
        let drops = &gateway.gateway.counters.data_drops;
        set_counters(&self.drops, "reason", DataDrop::ALL.iter().map(|r| (r.as_str(), drops.get(*r))));
        set_counters(&self.drops, "reason", [("tun-full", gateway.driver.tun_full)]);
        set_counter(&self.tun_packets, gateway.driver.tun_written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_lookups_and_tunnels() {
        let (mut m, r) = Metrics::new();
        let counters = Counters { lookups_with_relays: 2, failovers: 1, ..Counters::default() };
        let summary = Summary { tunnels: 1, established: 1, wanted_sgs: 3, tunnel_sgs: 2, ..Summary::default() };
        m.refresh(&summary, &counters, None);
        let text = mcast_daemon::metrics::encode(&std::sync::Arc::new(std::sync::Mutex::new(r)));
        for line in [
            "driad_ingest_dns_lookups_total{result=\"relays\"} 2",
            "driad_ingest_dns_lookups_total{result=\"failed\"} 0",
            "driad_ingest_failovers_total 1",
            "driad_ingest_tunnels{state=\"established\"} 1",
            "driad_ingest_tunnels{state=\"failing\"} 0",
            "driad_ingest_wanted_sgs 3",
            "driad_ingest_joined_sgs 2",
            "driad_ingest_drops_total{reason=\"tun-full\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
