//! `amt-relay status`: asks the running relay over its control socket and prints tables (or
//! the JSON as is).

use mcast_daemon::status::cell::{secs, split_sg, text};
use mcast_daemon::table::{render, timer};
use serde_json::Value;

use crate::cli::StatusArgs;

pub async fn show(args: StatusArgs) -> anyhow::Result<()> {
    mcast_daemon::status::show(&args.runtime_dir.join("amt-relay.sock"), "amt-relay", args.json, render_text).await
}

fn counter_list(v: &Value) -> String {
    match v.as_object() {
        Some(map) if !map.is_empty() => map.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
        _ => "-".to_owned(),
    }
}

/// Renders the status JSON as the tables an operator reads: the relay, its gateways and
/// their (S,G)s, the channels joined upstream, and the counters.
pub fn render_text(status: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let relay = &status["relay"];

    out.push_str("AMT relay\n");
    let addresses: Vec<String> = relay["relay_addresses"].as_array().unwrap_or(&empty).iter().map(text).collect();
    let listen: Vec<String> = status["listen"].as_array().unwrap_or(&empty).iter().map(text).collect();
    let gateways = relay["gateways"].as_array().unwrap_or(&empty);
    let rows = vec![vec![
        addresses.join(","),
        listen.join(","),
        text(&status["upstream_interface"]["name"]),
        format!(
            "{}/{}{}",
            gateways.len(),
            text(&relay["capacity"]),
            if relay["at_capacity"] == true { " (full)" } else { "" }
        ),
        secs(&relay["query_interval_secs"]),
        secs(&relay["membership_interval_secs"]),
        format!("{} of {}", secs(&relay["secret_age_secs"]), secs(&relay["secret_rotation_secs"])),
        timer(status["uptime_secs"].as_u64()),
    ]];
    out.push_str(&render(
        &["Relay address", "Listening", "Upstream", "Gateways", "Query int", "Timeout", "Secret age", "Uptime"],
        &rows,
    ));

    out.push_str("\nGateways\n");
    let rows: Vec<Vec<String>> = gateways
        .iter()
        .map(|g| {
            vec![
                text(&g["gateway"]),
                text(&g["relay"]),
                g["sgs"].as_array().map_or(0, Vec::len).to_string(),
                text(&g["updates"]),
                secs(&g["last_update_secs"]),
                secs(&g["uptime_secs"]),
            ]
        })
        .collect();
    out.push_str(&render(&["Gateway", "Via", "(S,G)s", "Updates", "Last update", "Uptime"], &rows));

    out.push_str("\nMemberships\n");
    let rows: Vec<Vec<String>> = gateways
        .iter()
        .flat_map(|g| {
            let empty = Vec::new();
            g["sgs"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|m| {
                    let (source, group) = split_sg(&m["sg"]);
                    vec![text(&g["gateway"]), source, group, secs(&m["expires_in_secs"])]
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.push_str(&render(&["Gateway", "Source", "Group", "Expires"], &rows));

    out.push_str("\nChannels (joined upstream)\n");
    let rows: Vec<Vec<String>> = relay["channels"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|c| {
            let (source, group) = split_sg(&c["sg"]);
            vec![
                source,
                group,
                text(&c["subscribers"]),
                text(&c["packets"]),
                text(&c["bytes"]),
                secs(&c["uptime_secs"]),
            ]
        })
        .collect();
    out.push_str(&render(&["Source", "Group", "Gateways", "Packets", "Bytes", "Uptime"], &rows));

    out.push_str("\nCounters\n");
    let counters = &relay["counters"];
    let data = &status["datapath"];
    let rows = vec![
        vec!["received".to_owned(), counter_list(&counters["received"])],
        vec!["sent".to_owned(), counter_list(&counters["sent"])],
        vec!["dropped".to_owned(), counter_list(&counters["dropped"])],
        vec![
            "native in".to_owned(),
            format!(
                "{} packets, {} unsubscribed, {} oversized or truncated, {} kernel drops",
                text(&data["received"]),
                text(&data["unsubscribed"]),
                data["oversized"].as_u64().unwrap_or(0) + data["truncated"].as_u64().unwrap_or(0),
                text(&data["kernel_drops"])
            ),
        ],
        vec![
            "data out".to_owned(),
            format!(
                "{} datagrams in {} messages, {} dropped, {} errors",
                text(&data["sent"]),
                text(&data["messages"]),
                text(&data["send_dropped"]),
                text(&data["send_errors"])
            ),
        ],
    ];
    out.push_str(&render(&["Counter", "Values"], &rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_a_typical_status() {
        let status = json!({
            "daemon": "amt-relay",
            "uptime_secs": 3725,
            "listen": ["203.0.113.15:2268", "192.52.193.1:2268"],
            "upstream_interface": { "name": "src0", "ifindex": 3 },
            "relay": {
                "relay_addresses": ["203.0.113.15"],
                "capacity": 1000, "at_capacity": false,
                "query_interval_secs": 125.0, "membership_interval_secs": 260.0,
                "secret_rotation_secs": 60.0, "secret_age_secs": 12.5,
                "gateways": [{
                    "gateway": "192.0.2.2:40000", "relay": "203.0.113.15:2268", "updates": 3,
                    "last_update_secs": 4.2, "uptime_secs": 300.0,
                    "sgs": [
                        { "sg": "198.51.100.10,232.1.1.1", "expires_in_secs": 255.8 },
                        { "sg": "198.51.100.11,232.1.1.2", "expires_in_secs": 100.0 }
                    ]
                }],
                "channels": [
                    { "sg": "198.51.100.10,232.1.1.1", "subscribers": 1, "packets": 1200, "bytes": 153600, "uptime_secs": 299.0 },
                    { "sg": "198.51.100.11,232.1.1.2", "subscribers": 1, "packets": 0, "bytes": 0, "uptime_secs": 10.0 }
                ],
                "counters": {
                    "received": { "relay-discovery": 1, "request": 4, "membership-update": 3 },
                    "sent": { "relay-advertisement": 1, "membership-query": 4 },
                    "dropped": { "bad-mac": 1, "stale-nonce": 1 }
                }
            },
            "datapath": { "received": 1250, "unsubscribed": 50, "kernel_drops": 0, "sent": 1200, "messages": 40,
                          "send_dropped": 0, "send_errors": 0 }
        });
        insta::assert_snapshot!(render_text(&status));
    }
}
