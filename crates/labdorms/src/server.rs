//! The HTTPS server.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::flows::{Fault, Flow, Flows, FlowsError, HostMeta, Layout};

/// The RESTCONF media type (RFC 8040 §11.3).
const YANG_JSON: &str = "application/yang-data+json";
/// At most this many requests are kept in the request log.
const REQUEST_LOG_LEN: usize = 10_000;
/// The body of the `huge` fault.
const HUGE_BODY: usize = 1024 * 1024;

/// How the server listens and what it serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// TCP address (port 0: a free port).
    pub listen: SocketAddr,
    /// The flows file (TOML or JSON); a missing file means no flows.
    pub flows_file: PathBuf,
    /// The TLS configuration (see [`crate::ServerIdentity::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Check the flows file for changes this often.
    pub watch_interval: Duration,
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// When it arrived.
    pub at: Instant,
    /// The request path as sent (percent-encoding kept).
    pub path: String,
    /// The status answered.
    pub status: u16,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listening socket.
    #[error("listening on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The flows file exists but does not parse.
    #[error(transparent)]
    Flows(#[from] FlowsError),
}

struct Shared {
    flows_file: PathBuf,
    /// The flows in service and the file text they came from (`None`: no file).
    flows: RwLock<(Flows, Option<String>)>,
    requests: Mutex<Vec<RequestRecord>>,
}

impl Shared {
    /// Re-reads the flows file if its text changed. A file that does not parse keeps the
    /// previous flows in service.
    fn reload(&self) -> Result<bool, FlowsError> {
        let text = match std::fs::read_to_string(&self.flows_file) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(FlowsError { path: self.flows_file.clone(), message: e.to_string() }),
        };
        let mut current = self.flows.write().unwrap_or_else(|e| e.into_inner());
        if current.1 == text {
            return Ok(false);
        }
        let flows = match &text {
            Some(t) => Flows::parse(t).map_err(|message| FlowsError { path: self.flows_file.clone(), message })?,
            None => Flows::default(),
        };
        info!(file = %self.flows_file.display(), flows = flows.flows.len(), "flows loaded");
        *current = (flows, text);
        Ok(true)
    }

    fn flows(&self) -> Flows {
        self.flows.read().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    fn record(&self, path: &str, status: StatusCode) {
        let mut log = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= REQUEST_LOG_LEN {
            log.remove(0);
        }
        log.push(RequestRecord { at: Instant::now(), path: path.to_owned(), status: status.as_u16() });
    }
}

/// The running server.
pub struct LabDorms {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LabDorms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabDorms").field("addr", &self.addr).field("flows_file", &self.shared.flows_file).finish()
    }
}

impl LabDorms {
    /// Loads the flows and starts serving.
    pub async fn start(options: Options) -> Result<LabDorms, StartError> {
        let shared = Arc::new(Shared {
            flows_file: options.flows_file.clone(),
            flows: RwLock::new((Flows::default(), None)),
            requests: Mutex::new(Vec::new()),
        });
        shared.reload()?;
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|error| StartError::Bind { addr: options.listen, error })?;
        let addr = listener.local_addr().map_err(|error| StartError::Bind { addr: options.listen, error })?;
        let acceptor = TlsAcceptor::from(options.tls.clone());
        let serve = tokio::spawn(accept_loop(listener, acceptor, shared.clone()));
        let watch_shared = shared.clone();
        let interval = options.watch_interval.max(Duration::from_millis(10));
        let watch = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = watch_shared.reload() {
                    warn!("{e}; the previous flows stay in service");
                }
            }
        });
        info!(%addr, file = %options.flows_file.display(), "DORMS server listening (HTTPS)");
        Ok(LabDorms { addr, shared, tasks: vec![serve, watch] })
    }

    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The flows in service.
    pub fn flows(&self) -> Flows {
        self.shared.flows()
    }

    /// Re-reads the flows file now; `Ok(true)` if it changed.
    pub fn reload(&self) -> Result<bool, FlowsError> {
        self.shared.reload()
    }

    /// Every request answered so far (the most recent 10,000).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops serving; open connections are dropped.
    pub async fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for LabDorms {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    // Connections live in the set, so aborting this task ends them too.
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |req| handle(shared.clone(), req));
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await
            {
                debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// A RESTCONF error document (RFC 8040 §7.1).
fn restconf_error(status: StatusCode, tag: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"ietf-restconf:errors": {"error": [{
        "error-type": "application", "error-tag": tag, "error-message": message
    }]}});
    response(status, YANG_JSON, body.to_string())
}

/// What a RESTCONF data path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    /// `ietf-dorms:dorms/metadata/sender=S/group=G`
    Current,
    /// `ietf-dorms:metadata/sender=S/group=G`
    LegacyGroup,
    /// `ietf-dorms:metadata/sender=S/group=G/ietf-cbacc:cbacc`
    LegacyCbacc,
}

/// A list key `name=value`, percent-decoded, as an address.
fn key(segment: &str, name: &str) -> Option<IpAddr> {
    let value = segment.strip_prefix(name)?.strip_prefix('=')?;
    percent_encoding::percent_decode_str(value).decode_utf8().ok()?.parse().ok()
}

fn parse_data_path(path: &str) -> Option<(Resource, IpAddr, IpAddr)> {
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        ["ietf-dorms:dorms", "metadata", s, g] => Some((Resource::Current, key(s, "sender")?, key(g, "group")?)),
        ["ietf-dorms:metadata", s, g] => Some((Resource::LegacyGroup, key(s, "sender")?, key(g, "group")?)),
        ["ietf-dorms:metadata", s, g, "ietf-cbacc:cbacc"] => {
            Some((Resource::LegacyCbacc, key(s, "sender")?, key(g, "group")?))
        }
        _ => None,
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let response = route(&shared, req.method(), &path).await;
    info!(method = %req.method(), %path, status = response.status().as_u16(), "request");
    shared.record(&path, response.status());
    Ok(response)
}

async fn route(shared: &Shared, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return restconf_error(StatusCode::METHOD_NOT_ALLOWED, "operation-not-supported", "read-only lab server");
    }
    let flows = shared.flows();
    match path {
        "/.well-known/host-meta" if matches!(flows.host_meta, HostMeta::Both | HostMeta::Xml) => {
            return response(StatusCode::OK, "application/xrd+xml", flows.host_meta_xml());
        }
        "/.well-known/host-meta.json" if matches!(flows.host_meta, HostMeta::Both | HostMeta::Json) => {
            return response(StatusCode::OK, "application/json", flows.host_meta_json());
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix(flows.root()).and_then(|r| r.strip_prefix('/')) else {
        return response(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    };
    if rest == "yang-library-version" {
        return response(StatusCode::OK, YANG_JSON, r#"{"ietf-restconf:yang-library-version":"2016-06-21"}"#);
    }
    let Some((resource, source, group)) = rest.strip_prefix("data/").and_then(parse_data_path) else {
        return restconf_error(StatusCode::NOT_FOUND, "invalid-value", "no such resource");
    };
    let Some(flow) = flows.find(source, group) else {
        return restconf_error(StatusCode::NOT_FOUND, "invalid-value", "no such flow");
    };
    let layout = if resource == Resource::Current { Layout::Current } else { Layout::Legacy };
    if !flow.layouts.contains(&layout) {
        return restconf_error(StatusCode::NOT_FOUND, "invalid-value", "no such resource");
    }
    let delay = flow.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    flow_response(flow, resource)
}

fn flow_response(flow: &Flow, resource: Resource) -> Response<Full<Bytes>> {
    let body = match resource {
        Resource::Current => Some(flow.current_group()),
        Resource::LegacyGroup => Some(flow.legacy_group()),
        Resource::LegacyCbacc => flow.legacy_cbacc(),
    };
    let Some(body) = body else {
        return restconf_error(StatusCode::NOT_FOUND, "invalid-value", "no CBACC data for this flow");
    };
    let text = body.to_string();
    match flow.fault {
        Fault::None | Fault::Slow | Fault::NoCbacc => response(StatusCode::OK, YANG_JSON, text),
        Fault::NotFound => restconf_error(StatusCode::NOT_FOUND, "invalid-value", "no such flow"),
        Fault::ServerError => restconf_error(StatusCode::INTERNAL_SERVER_ERROR, "operation-failed", "lab fault"),
        Fault::Malformed => response(StatusCode::OK, YANG_JSON, text[..text.len() / 2].to_owned()),
        Fault::WrongContentType => response(StatusCode::OK, "text/html; charset=utf-8", text),
        Fault::Huge => {
            let padding = "x".repeat(HUGE_BODY);
            let mut body = body;
            body["padding"] = serde_json::Value::String(padding);
            response(StatusCode::OK, YANG_JSON, body.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_paths() {
        let s: IpAddr = "198.51.100.10".parse().unwrap();
        let g: IpAddr = "232.1.1.1".parse().unwrap();
        assert_eq!(
            parse_data_path("ietf-dorms:dorms/metadata/sender=198.51.100.10/group=232.1.1.1"),
            Some((Resource::Current, s, g))
        );
        assert_eq!(
            parse_data_path("ietf-dorms:metadata/sender=198.51.100.10/group=232.1.1.1/ietf-cbacc:cbacc"),
            Some((Resource::LegacyCbacc, s, g))
        );
        assert_eq!(
            parse_data_path("ietf-dorms:metadata/sender=198.51.100.10/group=232.1.1.1"),
            Some((Resource::LegacyGroup, s, g))
        );
        let s6: IpAddr = "2001:db8::a".parse().unwrap();
        let g6: IpAddr = "ff3e::8000:1".parse().unwrap();
        for path in [
            "ietf-dorms:dorms/metadata/sender=2001%3Adb8%3A%3Aa/group=ff3e%3A%3A8000%3A1",
            "ietf-dorms:dorms/metadata/sender=2001:db8::a/group=ff3e::8000:1",
        ] {
            assert_eq!(parse_data_path(path), Some((Resource::Current, s6, g6)), "{path}");
        }
        assert_eq!(parse_data_path("ietf-dorms:dorms/metadata/sender=x/group=232.1.1.1"), None);
        assert_eq!(parse_data_path("ietf-dorms:dorms/metadata/group=232.1.1.1/sender=198.51.100.10"), None);
    }
}
