//! `pimwatch status`: asks the running daemon over its control socket and prints tables (or
//! the JSON as is).

use mcast_daemon::status::cell::{secs, split_sg, text};
use mcast_daemon::table::render;
use serde_json::Value;

use crate::cli::StatusArgs;

pub async fn show(args: StatusArgs) -> anyhow::Result<()> {
    mcast_daemon::status::show(&args.runtime_dir.join("pimwatch.sock"), "pimwatch", args.json, render_text).await
}

/// Renders the status JSON as the tables an operator reads: interfaces, neighbours, joined
/// (S,G)s per interface and the kernel forwarding entries with their counters.
pub fn render_text(status: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let interfaces = status["pim"]["interfaces"].as_array().unwrap_or(&empty);

    out.push_str("PIM interfaces\n");
    let rows: Vec<Vec<String>> = interfaces
        .iter()
        .map(|i| {
            vec![
                text(&i["name"]),
                text(&i["address"]),
                format!("{:#010x}", i["genid"].as_u64().unwrap_or(0)),
                text(&i["dr_priority"]),
                text(&i["dr"]),
                i["neighbors"].as_array().map_or(0, Vec::len).to_string(),
                secs(&i["uptime_secs"]),
            ]
        })
        .collect();
    out.push_str(&render(&["Interface", "Address", "GenID", "DR Pri", "DR", "Neighbors", "Uptime"], &rows));

    out.push_str("\nPIM neighbors\n");
    let rows: Vec<Vec<String>> = interfaces
        .iter()
        .flat_map(|i| {
            let empty = Vec::new();
            i["neighbors"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|n| {
                    vec![
                        text(&i["name"]),
                        text(&n["address"]),
                        secs(&n["uptime_secs"]),
                        secs(&n["expires_in_secs"]),
                        text(&n["dr_priority"]),
                        n["genid"].as_u64().map_or("-".to_owned(), |g| format!("{g:#010x}")),
                    ]
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.push_str(&render(&["Interface", "Neighbor", "Uptime", "Expires", "DR Pri", "GenID"], &rows));

    out.push_str("\nJoined (S,G)\n");
    let rows: Vec<Vec<String>> = interfaces
        .iter()
        .flat_map(|i| {
            let empty = Vec::new();
            i["sgs"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(|sg| {
                    let (source, group) = split_sg(&sg["sg"]);
                    let state = match sg["state"].as_str() {
                        Some("join") if sg["restored"] == true => "J (restored)",
                        Some("join") => "J",
                        Some("prune-pending") => "PP",
                        _ => "?",
                    };
                    vec![
                        source,
                        group,
                        text(&i["name"]),
                        state.to_owned(),
                        secs(&sg["expires_in_secs"]),
                        secs(&sg["uptime_secs"]),
                    ]
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.push_str(&render(&["Source", "Group", "Interface", "State", "Expires", "Uptime"], &rows));

    if status["forwarding_enabled"] == true {
        out.push_str("\nKernel multicast forwarding\n");
        let rows: Vec<Vec<String>> = status["forwarding"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|f| {
                let (source, group) = split_sg(&f["sg"]);
                let oifs: Vec<String> = f["oifs"].as_array().unwrap_or(&empty).iter().map(text).collect();
                vec![
                    source,
                    group,
                    text(&f["iif"]),
                    oifs.join(","),
                    if f["installed"] == true { "yes".to_owned() } else { "waiting for iif".to_owned() },
                    text(&f["packets"]),
                    text(&f["bytes"]),
                ]
            })
            .collect();
        out.push_str(&render(&["Source", "Group", "Input", "Output", "Installed", "Packets", "Bytes"], &rows));
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
            "daemon": "pimwatch",
            "forwarding_enabled": true,
            "pim": {
                "interfaces": [{
                    "name": "down0", "address": "10.9.1.2", "genid": 305419896u64, "dr_priority": 1,
                    "dr": "10.9.1.2", "uptime_secs": 75.2,
                    "neighbors": [{ "address": "10.9.1.1", "uptime_secs": 70.0, "expires_in_secs": 95.5,
                                    "dr_priority": 1, "genid": 1292973269u64 }],
                    "sgs": [
                        { "sg": "198.51.100.10,232.1.1.1", "state": "join", "restored": false,
                          "expires_in_secs": 200.1, "uptime_secs": 10.0 },
                        { "sg": "198.51.100.11,232.1.1.2", "state": "join", "restored": true,
                          "expires_in_secs": null, "uptime_secs": 1.0 }
                    ]
                }]
            },
            "forwarding": [
                { "sg": "198.51.100.10,232.1.1.1", "iif": "amt0", "oifs": ["down0"], "installed": true,
                  "packets": 12, "bytes": 12000 }
            ]
        });
        insta::assert_snapshot!(render_text(&status));
    }
}
