//! cbacc's metrics (`--metrics-listen`): flows by admission state and the bandwidth they use,
//! copied from the last evaluation once a second; DORMS fetches and drops counted where they
//! happen; the DORMS client's SRV lookups (atomics) read at refresh.

use std::sync::atomic::Ordering;

use cbacc::Rate;
use cbacc::admission::{Evaluation, Reason};
use cbacc::cache::FetchResult;
use cbacc::dorms::SrvLookups;
use mcast_daemon::metrics::{
    Counter, CounterFamily, Gauge, GaugeFamily, Registry, declare, set_counters, set_gauge, set_gauges,
};

const STATES: [Reason; 5] = [Reason::Admitted, Reason::OverCap, Reason::HeldDown, Reason::NoRate, Reason::Pending];

fn state_name(reason: Reason) -> &'static str {
    match reason {
        Reason::Admitted => "admitted",
        Reason::OverCap => "over-cap",
        Reason::HeldDown => "held-down",
        Reason::NoRate => "no-rate",
        Reason::Pending => "pending",
    }
}

/// Why cbacc dropped something.
#[derive(Debug, Clone, Copy)]
pub enum Drop {
    /// A line of the input joinfile that is not `S,G[,POPULATION]`.
    MalformedInputLine,
    /// The whole input file was unusable (the previous flows are kept).
    InputUnusable,
    /// A lookup result for a flow no longer wanted.
    StaleResult,
}

/// Every cbacc metric (names get the `cbacc_` prefix).
#[derive(Debug, Default)]
pub struct Metrics {
    flows: GaugeFamily,
    cap: Gauge,
    admitted: Gauge,
    blocked: Gauge,
    desired: Gauge,
    fetches: CounterFamily,
    dns: CounterFamily,
    drops: CounterFamily,
    /// Counted where it happens.
    pub output_writes: Counter,
    /// Counted where it happens.
    pub output_write_failures: Counter,
}

impl Metrics {
    /// The metrics and the registry that exposes them; every label value starts at 0.
    pub fn new() -> (Metrics, Registry) {
        let m = Metrics::default();
        let mut r = Registry::with_prefix("cbacc");
        r.register("flows", "Desired flows, by admission state", m.flows.clone());
        r.register("cap_bits_per_second", "The bandwidth cap (--bandwidth)", m.cap.clone());
        r.register("admitted_bits_per_second", "Sum of the admitted flows' rates", m.admitted.clone());
        r.register("blocked_bits_per_second", "Sum of the known rates of the flows not admitted", m.blocked.clone());
        r.register("desired_bits_per_second", "Sum of the known rates of every desired flow", m.desired.clone());
        r.register("dorms_fetches", "DORMS metadata lookups, by result", m.fetches.clone());
        r.register("dns_lookups", "DNS SRV lookups for DORMS servers, by result", m.dns.clone());
        r.register("drops", "Input lines, input files and lookup results not used, by reason", m.drops.clone());
        r.register("output_writes", "Output joinfile writes", m.output_writes.clone());
        r.register("output_write_failures", "Failed output joinfile writes", m.output_write_failures.clone());
        declare(&m.flows, "state", &STATES.map(state_name));
        declare(&m.fetches, "result", &["found", "not-found", "failed"]);
        declare(&m.dns, "result", &["found", "negative", "failed"]);
        for reason in [Drop::MalformedInputLine, Drop::InputUnusable, Drop::StaleResult] {
            m.drop_counter(reason);
        }
        (m, r)
    }

    fn drop_counter(&self, reason: Drop) -> Counter {
        let name = match reason {
            Drop::MalformedInputLine => "malformed-input-line",
            Drop::InputUnusable => "input-unusable",
            Drop::StaleResult => "stale-result",
        };
        self.drops.get_or_create(&[("reason", name.to_owned())]).clone()
    }

    /// Counts `n` drops for `reason`.
    pub fn dropped(&self, reason: Drop, n: u64) {
        self.drop_counter(reason).inc_by(n);
    }

    /// Counts a DORMS lookup's result.
    pub fn fetched(&self, result: &FetchResult) {
        let name = match result {
            FetchResult::Found { .. } => "found",
            FetchResult::NotFound { .. } => "not-found",
            FetchResult::Failed { .. } => "failed",
        };
        self.fetches.get_or_create(&[("result", name.to_owned())]).inc();
    }

    /// Copies the last evaluation and the SRV lookup counts (`base`: those of clients
    /// replaced by reloads).
    pub fn refresh(&self, evaluation: Option<&Evaluation>, cap: Rate, srv: &SrvLookups, base: [u64; 3]) {
        set_gauges(
            &self.flows,
            "state",
            STATES.map(|state| {
                (
                    state_name(state),
                    evaluation.map_or(0, |e| e.flows.iter().filter(|d| d.reason == state).count()) as u64,
                )
            }),
        );
        set_gauge(&self.cap, cap.bps());
        let blocked: u64 = evaluation
            .map_or(0, |e| e.flows.iter().filter(|d| !d.admitted).filter_map(|d| d.rate).map(Rate::bps).sum());
        set_gauge(&self.admitted, evaluation.map_or(0, |e| e.admitted_rate.bps()));
        set_gauge(&self.blocked, blocked);
        set_gauge(&self.desired, evaluation.map_or(0, |e| e.desired_rate.bps()));
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        set_counters(
            &self.dns,
            "result",
            [
                ("found", base[0] + load(&srv.found)),
                ("negative", base[1] + load(&srv.negative)),
                ("failed", base[2] + load(&srv.failed)),
            ],
        );
    }

    #[cfg(test)]
    fn encode(registry: Registry) -> String {
        mcast_daemon::metrics::encode(&std::sync::Arc::new(std::sync::Mutex::new(registry)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_states_bandwidth_and_lookups() {
        let (m, r) = Metrics::new();
        let srv = SrvLookups::default();
        srv.found.fetch_add(2, Ordering::Relaxed);
        m.refresh(None, Rate::from_bps(10_000_000), &srv, [1, 0, 0]);
        m.fetched(&FetchResult::NotFound { reason: "x".into() });
        m.dropped(Drop::StaleResult, 1);
        m.output_writes.inc();
        let text = Metrics::encode(r);
        for line in [
            "cbacc_flows{state=\"admitted\"} 0",
            "cbacc_flows{state=\"no-rate\"} 0",
            "cbacc_cap_bits_per_second 10000000",
            "cbacc_dorms_fetches_total{result=\"not-found\"} 1",
            "cbacc_dorms_fetches_total{result=\"found\"} 0",
            "cbacc_dns_lookups_total{result=\"found\"} 3",
            "cbacc_drops_total{reason=\"stale-result\"} 1",
            "cbacc_drops_total{reason=\"malformed-input-line\"} 0",
            "cbacc_output_writes_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
