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
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

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
    async fn serves_the_registry() {
        let mut registry = Registry::with_prefix("demo");
        let packets = Counter::<u64>::default();
        registry.register("packets", "Packets seen", packets.clone());
        let registry: SharedRegistry = Arc::new(Mutex::new(registry));
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&registry)).await.unwrap();
        packets.inc_by(42);
        let response = get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("application/openmetrics-text"), "{response}");
        assert!(response.contains("demo_packets_total 42"), "{response}");
        assert!(response.trim_end().ends_with("# EOF"), "{response}");
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
