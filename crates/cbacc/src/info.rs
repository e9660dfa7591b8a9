//! `cbacc info S G`: one flow's DORMS discovery and metadata, step by step (replaces the
//! original's cbacc-bw.py).

use anyhow::Context;
use cbacc::SourceGroup;
use cbacc::cache::FetchResult;
use cbacc::dorms::DormsClient;
use serde_json::json;

use crate::cli::InfoArgs;

/// Prints the lookup; `Ok(true)` when metadata was found.
pub async fn show(args: InfoArgs) -> anyhow::Result<bool> {
    let sg = SourceGroup::checked(args.source, args.group).map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = DormsClient::new(args.dorms.client_config()?).context("setting up the DORMS client")?;
    let fetch = client.fetch(sg).await;
    let found = matches!(fetch.result, FetchResult::Found { .. });
    if args.json {
        let result = match &fetch.result {
            FetchResult::Found { metadata, url, max_age } => json!({
                "kind": "found", "url": url, "rate_bps": metadata.rate.bps(), "rate": metadata.rate.to_string(),
                "metadata": metadata, "max_age_secs": max_age.map(|d| d.as_secs()),
            }),
            FetchResult::NotFound { reason } => json!({"kind": "not-found", "reason": reason}),
            FetchResult::Failed { error } => json!({"kind": "failed", "error": error}),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"sg": sg.to_string(), "steps": fetch.trace, "result": result}))?
        );
        return Ok(found);
    }
    println!("{sg}");
    for (i, step) in fetch.trace.iter().enumerate() {
        println!("  {:>2}. {step}", i + 1);
    }
    match &fetch.result {
        FetchResult::Found { metadata, url, .. } => {
            println!("rate: {} ({} bit/s)", metadata.rate, metadata.rate.bps());
            println!(
                "priority {}, max packet size {} bytes, data rate window {} ms, from {:?} at {url}",
                metadata.priority, metadata.max_packet_size, metadata.data_rate_window_ms, metadata.leaf
            );
        }
        FetchResult::NotFound { reason } => println!("no metadata: {reason}"),
        FetchResult::Failed { error } => println!("lookup failed: {error}"),
    }
    Ok(found)
}
