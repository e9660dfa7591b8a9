//! `cbacc status`: asks the running daemon over its control socket and prints a table (or the
//! JSON as is).

use mcast_daemon::status::cell::{secs, text};
use mcast_daemon::table::render;
use serde_json::Value;

use crate::cli::StatusArgs;

pub async fn show(args: StatusArgs) -> anyhow::Result<()> {
    mcast_daemon::status::show(&args.runtime_dir.join("cbacc.sock"), "cbacc", args.json, render_text).await
}

fn duration(v: &Value) -> String {
    v.as_f64()
        .map_or("-".to_owned(), |s| humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string())
}

fn origin(flow: &Value) -> String {
    let o = &flow["origin"];
    match o["kind"].as_str() {
        Some("dorms") if o["stale"] == true => "dorms (stale)".to_owned(),
        Some(kind) => kind.to_owned(),
        None => "-".to_owned(),
    }
}

fn state(flow: &Value) -> &'static str {
    match flow["reason"].as_str() {
        Some("admitted") => "admitted",
        Some("over-cap") => "blocked: over cap",
        Some("held-down") => "blocked: held down",
        Some("no-rate") => "blocked: no metadata, no default",
        Some("pending") => "waiting for metadata",
        _ => "?",
    }
}

fn detail(flow: &Value) -> String {
    let url = flow["origin"]["url"].as_str();
    match (url, flow["last_problem"].as_str()) {
        (Some(url), Some(problem)) => format!("{url} (refresh failed: {problem})"),
        (Some(url), None) => url.to_owned(),
        (None, Some(problem)) => problem.to_owned(),
        (None, None) => String::new(),
    }
}

/// Renders the status JSON for an operator: the cap and its use, then one row per flow.
pub fn render_text(status: &Value) -> String {
    let empty = Vec::new();
    let flows = status["flows"].as_array().unwrap_or(&empty);
    let admitted = flows.iter().filter(|f| f["admitted"] == true).count();
    let mut out = format!(
        "cap {}, admitted {} in {} of {} flows (desired {}); default rate: {}\n",
        text(&status["cap"]),
        text(&status["admitted"]),
        admitted,
        flows.len(),
        status["desired_bps"].as_u64().map_or("-".to_owned(), |b| cbacc::Rate::from_bps(b).to_string()),
        status["default"].as_str().unwrap_or("none (blocked)"),
    );
    out.push_str(&format!(
        "hold-down {} + up to {}; refresh {}; input {} -> output {}\n\n",
        duration(&status["hold_down_secs"]),
        duration(&status["hold_down_jitter_secs"]),
        duration(&status["refresh_secs"]),
        text(&status["input_file"]),
        text(&status["output_file"]),
    ));
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            vec![
                text(&f["source"]),
                text(&f["group"]),
                text(&f["population"]),
                text(&f["rate"]),
                origin(f),
                text(&f["priority"]),
                state(f).to_owned(),
                if f["hold_down_remaining_secs"].is_null() {
                    "-".to_owned()
                } else {
                    secs(&f["hold_down_remaining_secs"])
                },
                detail(f),
            ]
        })
        .collect();
    out.push_str(&render(&["Source", "Group", "Pop", "Rate", "Origin", "Prio", "State", "Hold-down", "Detail"], &rows));
    if let Some(ignored) = status["ignored_servers"].as_array().filter(|a| !a.is_empty()) {
        out.push_str("\nIgnored DORMS servers\n");
        let rows: Vec<Vec<String>> =
            ignored.iter().map(|s| vec![text(&s["server"]), secs(&s["remaining_secs"]), text(&s["reason"])]).collect();
        out.push_str(&render(&["Server", "Remaining", "Reason"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_a_typical_status() {
        let url = "https://dorms.example.net/restconf/data/ietf-dorms:dorms/metadata";
        let status = json!({
            "daemon": "cbacc",
            "input_file": "/run/ingest/pimwatch.sgs",
            "output_file": "/run/ingest/cbacc.sgs",
            "cap_bps": 10485760u64, "cap": "10.486Mbit/s",
            "default_bps": null, "default": null,
            "admitted_bps": 7000000u64, "admitted": "7Mbit/s",
            "desired_bps": 13000000u64,
            "hold_down_secs": 150.0, "hold_down_jitter_secs": 30.0, "refresh_secs": 1800.0,
            "ignored_servers": [{"server": "dorms.example.org:443", "remaining_secs": 3599.2,
                                 "reason": "TLS: invalid peer certificate: UnknownIssuer"}],
            "flows": [
                {"source": "198.51.100.10", "group": "232.1.1.1", "population": 5, "rate": "4Mbit/s",
                 "origin": {"kind": "dorms", "url": format!("{url}/sender=198.51.100.10/group=232.1.1.1"), "age": 12.0, "stale": false},
                 "priority": 256, "admitted": true, "reason": "admitted", "hold_down_remaining_secs": null, "last_problem": null},
                {"source": "198.51.100.11", "group": "232.1.1.2", "population": 1, "rate": "6Mbit/s",
                 "origin": {"kind": "dorms", "url": format!("{url}/sender=198.51.100.11/group=232.1.1.2"), "age": 1900.0, "stale": true},
                 "priority": 256, "admitted": false, "reason": "held-down", "hold_down_remaining_secs": 149.4,
                 "last_problem": "dorms.example.net:443: https://dorms.example.net/...: HTTP 500"},
                {"source": "198.51.100.12", "group": "232.1.1.3", "population": 1, "rate": "3Mbit/s",
                 "origin": {"kind": "dorms", "url": format!("{url}/sender=198.51.100.12/group=232.1.1.3"), "age": 3.0, "stale": false},
                 "priority": 300, "admitted": true, "reason": "admitted", "hold_down_remaining_secs": null, "last_problem": null},
                {"source": "198.51.100.13", "group": "232.1.1.4", "population": 1, "rate": null,
                 "origin": {"kind": "unknown"}, "priority": 256, "admitted": false, "reason": "no-rate",
                 "hold_down_remaining_secs": null,
                 "last_problem": "no DORMS server for 198.51.100.13 (NXDOMAIN at _dorms._tcp.13.100.51.198.in-addr.arpa.)"},
                {"source": "198.51.100.14", "group": "232.1.1.5", "population": 1, "rate": null,
                 "origin": {"kind": "pending"}, "priority": 256, "admitted": false, "reason": "pending",
                 "hold_down_remaining_secs": null, "last_problem": "first DORMS lookup still running"}
            ]
        });
        insta::assert_snapshot!(render_text(&status));
    }
}
