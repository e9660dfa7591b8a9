//! `driad-ingest status`: asks the running daemon over its control socket and prints tables
//! (or the JSON as is).

use mcast_daemon::status::cell::{secs_or_dash as secs, split_sg, text};
use mcast_daemon::table::{render, timer};
use serde_json::Value;

use crate::cli::StatusArgs;

pub async fn show(args: StatusArgs) -> anyhow::Result<()> {
    mcast_daemon::status::show(&args.runtime_dir.join("driad-ingest.sock"), "driad-ingest", args.json, render_text)
        .await
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Renders the status JSON as the tables an operator reads: sources with their records and
/// relay choice, tunnels with their (S,G)s and counters, held-down relays, counters.
pub fn render_text(status: &Value) -> String {
    let mut out = String::new();
    let jf = &status["joinfile"];
    let jf_state = if jf["missing"] == true {
        "missing".to_owned()
    } else if let Some(e) = jf["last_error"].as_str() {
        format!("last read rejected: {e}")
    } else {
        plural(status["wanted_sgs"].as_u64().unwrap_or(0) as usize, "(S,G)", "(S,G)s")
    };
    out.push_str(&format!(
        "driad-ingest {}, up {}, native interface {}, AMT socket {}\njoinfile {}: {jf_state}; {}, {} rejected, {}\n",
        text(&status["version"]),
        timer(status["uptime_secs"].as_u64()),
        text(&status["native_interface"]),
        array(&status["local"]).iter().map(text).collect::<Vec<_>>().join(", "),
        text(&jf["path"]),
        plural(jf["reads"].as_u64().unwrap_or(0) as usize, "read", "reads"),
        jf["rejected"].as_u64().unwrap_or(0),
        plural(array(&jf["problems"]).len(), "bad line", "bad lines"),
    ));
    for p in array(&jf["problems"]) {
        out.push_str(&format!("  skipped {}\n", text(p)));
    }

    let sources = array(&status["sources"]);
    out.push_str(&format!("\nSources ({})\n", sources.len()));
    let rows: Vec<Vec<String>> = sources
        .iter()
        .map(|s| {
            let candidates: Vec<String> = array(&s["candidates"])
                .iter()
                .map(|c| {
                    let held = if c["held_down"] == true { " held" } else { "" };
                    format!("{} p{}{held}", text(&c["addr"]), text(&c["precedence"]))
                })
                .collect();
            let d = match s["chosen"]["discovery_optional"].as_bool() {
                Some(true) => "1",
                Some(false) => "0",
                None => "-",
            };
            let lookup = if s["lookup_in_flight"] == true { "now".to_owned() } else { secs(&s["next_lookup_in"]) };
            vec![
                text(&s["source"]),
                text(&s["state"]),
                text(&s["chosen"]["relay"]),
                d.to_owned(),
                if candidates.is_empty() { "-".to_owned() } else { candidates.join(", ") },
                secs(&s["expires_in"]),
                lookup,
                array(&s["sgs"]).len().to_string(),
                s["problem"].as_str().map_or_else(|| text(&s["last_error"]), str::to_owned),
            ]
        })
        .collect();
    out.push_str(&render(
        &["Source", "State", "Relay", "D", "Candidates", "Expires", "Next lookup", "(S,G)s", "Problem"],
        &rows,
    ));

    let rows: Vec<Vec<String>> = sources
        .iter()
        .flat_map(|s| {
            let records = array(&s["records"]).iter().map(move |r| vec![text(&s["source"]), text(r)]);
            let skipped =
                array(&s["skipped"]).iter().map(move |r| vec![text(&s["source"]), format!("skipped: {}", text(r))]);
            let negative = s["negative"].as_str().map(|n| vec![text(&s["source"]), format!("({n})")]).into_iter();
            records.chain(skipped).chain(negative).collect::<Vec<_>>()
        })
        .collect();
    out.push_str("\nAMTRELAY records\n");
    out.push_str(&render(&["Source", "Record"], &rows));

    let tunnels = array(&status["tunnels"]);
    out.push_str(&format!("\nTunnels ({})\n", tunnels.len()));
    let rows: Vec<Vec<String>> = tunnels
        .iter()
        .map(|t| {
            let state = match (t["phase"].as_str(), t["state"].as_str()) {
                (Some("failing"), _) => format!("failing ({})", text(&t["failure"])),
                (_, Some(state)) => state.to_owned(),
                (phase, None) => phase.unwrap_or("-").to_owned(),
            };
            vec![
                text(&t["relay"]),
                text(&t["discovery"]),
                text(&t["relay_address"]),
                state,
                array(&t["sgs"]).len().to_string(),
                array(&t["sources"]).len().to_string(),
                text(&t["packets"]),
                text(&t["bytes"]),
                t["established_after_ms"].as_f64().map_or("-".to_owned(), |ms| format!("{ms:.1} ms")),
                timer(t["age_secs"].as_f64().map(|s| s as u64)),
            ]
        })
        .collect();
    out.push_str(&render(
        &["Relay", "Discovery", "Relay address", "State", "(S,G)s", "Sources", "Packets", "Bytes", "Setup", "Age"],
        &rows,
    ));

    out.push_str("\nJoined (S,G)s\n");
    let rows: Vec<Vec<String>> = tunnels
        .iter()
        .flat_map(|t| {
            array(&t["sgs"])
                .iter()
                .map(|sg| {
                    let (source, group) = split_sg(sg);
                    vec![source, group, text(&t["relay"])]
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.push_str(&render(&["Source", "Group", "Relay"], &rows));

    let held = array(&status["held_down"]);
    out.push_str(&format!("\nHeld-down relays ({})\n", held.len()));
    let rows: Vec<Vec<String>> =
        held.iter().map(|h| vec![text(&h["relay"]), text(&h["reason"]), secs(&h["remaining"])]).collect();
    out.push_str(&render(&["Relay", "Reason", "Remaining"], &rows));

    let c = &status["counters"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    out.push_str(&format!(
        "\nlookups: {} with relays, {} without records, {} type 0, {} failed; tunnels: {} opened, {} closed; relay failures: {}, failovers: {}\n",
        n("lookups_with_relays"),
        n("lookups_no_records"),
        n("lookups_no_relay"),
        n("lookups_failed"),
        n("tunnels_added"),
        n("tunnels_removed"),
        n("relay_failures"),
        n("failovers"),
    ));
    let g = &status["gateway"];
    if g.is_object() {
        out.push_str(&format!(
            "gateway: {} (S,G)s joined, {} data packets, {} dropped, {} written to the TUN, {} lost to a full TUN queue\n",
            text(&g["joined_sgs"]),
            text(&g["data_packets"]),
            text(&g["data_drops"]),
            text(&g["tun_written"]),
            text(&g["tun_full"]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_a_typical_status() {
        let status = json!({
            "daemon": "driad-ingest",
            "version": "0.1.0",
            "uptime_secs": 75,
            "native_interface": "amt0",
            "local": ["0.0.0.0:40000", "[::]:40001"],
            "wanted_sgs": 3,
            "joinfile": {
                "path": "/run/ingest/pimwatch.sgs", "reads": 4, "rejected": 1, "missing": false,
                "problems": ["line 3: expected SOURCE,GROUP (\"garbage\")"], "last_error": null
            },
            "sources": [
                {
                    "source": "198.51.100.10", "state": "known", "lookup_in_flight": false,
                    "reverse_name": "10.100.51.198.in-addr.arpa.",
                    "records": [
                        "10.100.51.198.in-addr.arpa. 30 IN AMTRELAY 10 0 1 203.0.113.15",
                        "10.100.51.198.in-addr.arpa. 30 IN AMTRELAY 20 0 1 203.0.113.16"
                    ],
                    "skipped": [], "negative": null,
                    "candidates": [
                        { "addr": "203.0.113.15", "precedence": 10, "discovery_optional": false, "via_name": null, "held_down": true },
                        { "addr": "203.0.113.16", "precedence": 20, "discovery_optional": false, "via_name": null, "held_down": false }
                    ],
                    "chosen": { "relay": "203.0.113.16", "discovery_optional": false },
                    "expires_in": 24.2, "next_lookup_in": 24.2, "failures": 0, "last_error": null,
                    "sgs": ["198.51.100.10,232.1.1.1", "198.51.100.10,232.1.1.2"],
                    "joined_on": "203.0.113.16", "problem": null, "age_secs": 70.5
                },
                {
                    "source": "198.51.100.13", "state": "no-relay", "lookup_in_flight": false,
                    "reverse_name": "13.100.51.198.in-addr.arpa.",
                    "records": ["13.100.51.198.in-addr.arpa. 30 IN AMTRELAY 0 0 0 ."],
                    "skipped": [], "negative": null, "candidates": [], "chosen": null,
                    "expires_in": 12.0, "next_lookup_in": 12.0, "failures": 0, "last_error": null,
                    "sgs": ["198.51.100.13,232.1.1.3"], "joined_on": null, "problem": "no-relay", "age_secs": 18.0
                },
                {
                    "source": "198.51.100.15", "state": "no-records", "lookup_in_flight": false,
                    "reverse_name": "15.100.51.198.in-addr.arpa.", "records": [], "skipped": [], "negative": "nxdomain",
                    "candidates": [], "chosen": null, "expires_in": 3.5, "next_lookup_in": 3.5, "failures": 0,
                    "last_error": null, "sgs": ["198.51.100.15,232.1.1.4"], "joined_on": null,
                    "problem": "no-records", "age_secs": 1.5
                }
            ],
            "tunnels": [{
                "relay": "203.0.113.16", "discovery": "203.0.113.16", "phase": "established", "failure": null,
                "sgs": ["198.51.100.10,232.1.1.1", "198.51.100.10,232.1.1.2"], "sources": ["198.51.100.10"],
                "age_secs": 61.2, "established_after_ms": 1.84, "silent_secs": 0.01,
                "state": "established", "relay_address": "203.0.113.16", "packets": 6100, "bytes": 1342000,
                "drops": 0, "gateway_endpoint": "192.0.2.2:40000", "gateway_failure": null
            }],
            "held_down": [{ "relay": "203.0.113.15", "reason": "no-traffic", "remaining": 538.3 }],
            "counters": {
                "lookups_with_relays": 1, "lookups_no_records": 1, "lookups_no_relay": 1, "lookups_failed": 0,
                "tunnels_added": 2, "tunnels_removed": 1, "relay_failures": 1, "failovers": 1
            },
            "gateway": { "joined_sgs": 2, "data_packets": 6100, "data_drops": 0, "tun_written": 6100, "tun_full": 0, "events_lost": 0 }
        });
        insta::assert_snapshot!(render_text(&status));
    }

    #[test]
    fn renders_an_empty_status() {
        let status = json!({
            "version": "0.1.0", "uptime_secs": 1, "native_interface": "amt0", "local": [],
            "wanted_sgs": 0, "joinfile": { "path": "j", "reads": 1, "rejected": 0, "missing": true, "problems": [] },
            "sources": [], "tunnels": [], "held_down": [], "counters": {}
        });
        let text = render_text(&status);
        assert!(text.contains("joinfile j: missing"), "{text}");
        assert!(text.contains("Tunnels (0)"), "{text}");
    }
}
