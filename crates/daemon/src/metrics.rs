//! The optional Prometheus/OpenMetrics endpoint (`--metrics-listen ADDR`): a tiny HTTP/1 server
//! that answers `GET /metrics` with the daemon's registry in the OpenMetrics text format.
//!
//! Daemons keep their metrics in a `prometheus_client::registry::Registry` (counters and gauges
//! are shared atomics, updated where things happen); the server only encodes the registry.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
pub use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;

/// A label set of one label, e.g. `[("reason", "bad-mac".into())]`.
pub type Label = [(&'static str, String); 1];
/// Counters by one label.
pub type CounterFamily = Family<Label, Counter>;
/// Gauges by one label.
pub type GaugeFamily = Family<Label, Gauge>;

/// Creates the series of every label value in `values` (at 0), so a dashboard sees them
/// before the first event.
pub fn declare<M>(family: &Family<Label, M>, key: &'static str, values: &[&str]) {
    for value in values {
        let _ = family.get_or_create(&[(key, (*value).to_owned())]);
    }
}

/// Sets a counter to a count the daemon's engine keeps itself (read at refresh time, so the
/// data path pays nothing for the metric). Engine counts never go down.
pub fn set_counter(counter: &Counter, value: u64) {
    counter.inner().store(value, std::sync::atomic::Ordering::Relaxed);
}

/// Sets a gauge (saturating at `i64::MAX`).
pub fn set_gauge(gauge: &Gauge, value: u64) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}

/// Sets one counter per label value from `(value, count)` pairs.
pub fn set_counters<S: Into<String>>(
    family: &CounterFamily,
    key: &'static str,
    counts: impl IntoIterator<Item = (S, u64)>,
) {
    for (value, count) in counts {
        set_counter(&family.get_or_create(&[(key, value.into())]), count);
    }
}

/// Sets one gauge per label value from `(value, number)` pairs.
pub fn set_gauges<S: Into<String>>(
    family: &GaugeFamily,
    key: &'static str,
    values: impl IntoIterator<Item = (S, u64)>,
) {
    for (value, n) in values {
        set_gauge(&family.get_or_create(&[(key, value.into())]), n);
    }
}

/// Sets one counter per key of a JSON object of counts (how the engines serialise their
/// counters by type or reason: `{"bad-mac": 3, "stale-nonce": 1}`); other values are skipped.
pub fn set_counters_from_json(family: &CounterFamily, key: &'static str, counts: &serde_json::Value) {
    if let Some(map) = counts.as_object() {
        set_counters(family, key, map.iter().filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n))));
    }
}

/// Starts the endpoint if `addr` is given (`--metrics-listen`), logging where it listens.
pub async fn start(
    addr: Option<SocketAddr>,
    registry: Registry,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = addr else { return Ok(None) };
    let (local, task) = serve(addr, Arc::new(Mutex::new(registry)))
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics endpoint {addr}: {e}"))?;
    tracing::info!(listen = %local, "metrics at http://{local}/metrics");
    Ok(Some(task))
}

/// The content type of OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry shared between the daemon (which registers and updates metrics) and the server.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// Encodes the registry as OpenMetrics text.
pub fn encode(registry: &SharedRegistry) -> String {
    let mut out = String::new();
    let registry = registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    out
}

/// Binds `addr` and serves `/metrics` until the task is dropped. Returns the bound address (the
/// port may be 0 in tests).
pub async fn serve(
    addr: SocketAddr,
    registry: SharedRegistry,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let registry = Arc::clone(&registry);
                    async move { Ok::<_, std::convert::Infallible>(respond(&request, &registry)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                // A slow or stuck scraper gets 10 s, then goes.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), connection).await;
            });
        }
    });
    Ok((local, task))
}

fn respond(request: &Request<hyper::body::Incoming>, registry: &SharedRegistry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, encode(registry)),
        (&hyper::Method::GET, _) => (StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics\n".to_owned()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serves_the_registry_and_engine_counts() {
        let mut registry = Registry::with_prefix("demo");
        let packets = Counter::<u64>::default();
        registry.register("packets", "Packets seen", packets.clone());
        let drops = CounterFamily::default();
        registry.register("drops", "Drops by reason", drops.clone());
        let registry: SharedRegistry = Arc::new(Mutex::new(registry));
        set_counters_from_json(&drops, "reason", &serde_json::json!({"bad-mac": 3, "x": "not a count"}));
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&registry)).await.unwrap();
        packets.inc_by(42);
        let response = get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("application/openmetrics-text"), "{response}");
        assert!(response.contains("demo_packets_total 42"), "{response}");
        assert!(response.contains("demo_drops_total{reason=\"bad-mac\"} 3"), "{response}");
        assert!(!response.contains("reason=\"x\""), "{response}");
        assert!(response.trim_end().ends_with("# EOF"), "{response}");
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
