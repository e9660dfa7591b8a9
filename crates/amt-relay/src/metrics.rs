//! amt-relay's metrics (`--metrics-listen`): the relay state machine's and the data path's own
//! counters (plain integers on the data path), copied once a second by the event loop.

use mcast_amt::relay::Relay;
use mcast_daemon::metrics::{
    Counter, CounterFamily, Gauge, Registry, declare, set_counter, set_counters, set_counters_from_json, set_gauge,
};

use crate::datapath::DataCounters;

/// Every amt-relay metric (names get the `amt_relay_` prefix).
#[derive(Debug, Default)]
pub struct Metrics {
    received: CounterFamily,
    sent: CounterFamily,
    drops: CounterFamily,
    native_packets: Counter,
    native_bytes: Counter,
    data_sent: Counter,
    data_bytes: Counter,
    gateways: Gauge,
    channels: Gauge,
    join_errors: Counter,
}

/// Data-path drop reasons, with the counter each comes from.
fn data_drops(d: &DataCounters) -> [(&'static str, u64); 7] {
    [
        ("unsubscribed", d.unsubscribed),
        ("oversized", d.oversized),
        ("truncated", d.truncated),
        ("not-ip", d.not_ip),
        ("kernel", d.kernel_drops),
        ("send-buffer-full", d.send_dropped),
        ("send-error", d.send_errors),
    ]
}

impl Metrics {
    /// The metrics and the registry that exposes them.
    pub fn new() -> (Metrics, Registry) {
        let m = Metrics::default();
        let mut r = Registry::with_prefix("amt_relay");
        r.register("messages_received", "AMT messages received, by type", m.received.clone());
        r.register("messages_sent", "AMT control messages sent, by type", m.sent.clone());
        r.register("drops", "Datagrams, records and packets not acted on, by reason", m.drops.clone());
        r.register("native_packets", "Datagrams read from the upstream interface", m.native_packets.clone());
        r.register("native_bytes", "Bytes of the datagrams read upstream", m.native_bytes.clone());
        r.register("data_datagrams_sent", "AMT Multicast Data sent (one per packet per gateway)", m.data_sent.clone());
        r.register("data_bytes_sent", "UDP payload bytes of the Multicast Data sent", m.data_bytes.clone());
        r.register("gateways", "Gateway endpoints served", m.gateways.clone());
        r.register("channels", "(S,G)s joined upstream", m.channels.clone());
        r.register("upstream_join_errors", "Upstream joins that failed", m.join_errors.clone());
        declare(&m.drops, "reason", &data_drops(&DataCounters::default()).map(|(r, _)| r));
        (m, r)
    }

    /// Copies the relay's and the data path's counts.
    pub fn refresh(&self, relay: &Relay, data: &DataCounters, join_errors: u64) {
        let counters = relay.counters();
        set_counters_from_json(&self.received, "type", &serde_json::to_value(&counters.received).unwrap_or_default());
        set_counters_from_json(&self.sent, "type", &serde_json::to_value(&counters.sent).unwrap_or_default());
        set_counters_from_json(&self.drops, "reason", &serde_json::to_value(&counters.dropped).unwrap_or_default());
        set_counters(&self.drops, "reason", data_drops(data));
        set_counter(&self.native_packets, data.received);
        set_counter(&self.native_bytes, data.received_bytes);
        set_counter(&self.data_sent, data.sent);
        set_counter(&self.data_bytes, data.sent_bytes);
        set_gauge(&self.gateways, relay.gateway_count() as u64);
        set_gauge(&self.channels, relay.channels().count() as u64);
        set_counter(&self.join_errors, join_errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn exposes_relay_and_data_path_counts() {
        let (m, r) = Metrics::new();
        let relay =
            Relay::new(mcast_amt::relay::Config::new(vec!["203.0.113.15".parse().unwrap()]), [1; 32], Instant::now())
                .unwrap();
        let data = DataCounters { received: 10, sent: 20, unsubscribed: 3, ..DataCounters::default() };
        m.refresh(&relay, &data, 1);
        let text = mcast_daemon::metrics::encode(&std::sync::Arc::new(std::sync::Mutex::new(r)));
        for line in [
            "amt_relay_native_packets_total 10",
            "amt_relay_data_datagrams_sent_total 20",
            "amt_relay_drops_total{reason=\"unsubscribed\"} 3",
            "amt_relay_drops_total{reason=\"kernel\"} 0",
            "amt_relay_gateways 0",
            "amt_relay_channels 0",
            "amt_relay_upstream_join_errors_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
