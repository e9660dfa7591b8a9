//! The DORMS client: discovery (SRV, host-meta) and the metadata GET, with caching of the
//! discovery steps, an ignore list for unusable servers, and every failure turned into a
//! [`FetchResult`] (never a panic, never an unbounded wait).
//!
//! Per source S: SRV `_dorms._tcp.<reverse name of S>` through hickory (the answer cached for
//! its TTL, negative answers for the negative TTL), targets ordered by RFC 2782 for each
//! lookup. Per server: `https://host:port/.well-known/host-meta` (XRD), or
//! `/.well-known/host-meta.json`, for the `restconf` link; the RESTCONF root is cached for an
//! hour, and forgotten when the server fails. Per flow: the metadata GET with `Accept:
//! application/yang-data+json`, trying the current path layout first, then the older ones (the
//! layout that worked is tried first next time). A 404 on every layout, or a DORMS answer
//! without CBACC data, means "no metadata" and ends the lookup; any other failure (connect,
//! TLS, timeout, HTTP status, content type, size, malformed JSON) moves on to the next server.
//! A server whose certificate fails or that publishes no RESTCONF root is put on the ignore
//! list for `--ignore-time` (DORMS: 1–24 h).
//!
//! HTTPS: reqwest with rustls (ring); certificates verified against the system roots plus
//! `--ca-file`; connect and total timeouts per request; the status checked; the content type
//! checked; bodies larger than 64 KiB refused.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcast_driad::{Discovery, DnsConfig, LookupError, Name};
use mcast_wire::SourceGroup;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderMap};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::cache::FetchResult;
use crate::metadata::{LegacyUnit, PathLayout, host_meta_json, host_meta_xml, parse_metadata};
use crate::srv::{Target, order};

/// The RESTCONF media type.
const YANG_JSON: &str = "application/yang-data+json";
/// How long a RESTCONF root found through host-meta is used.
const ROOT_TTL: Duration = Duration::from_secs(3600);
/// Longest time a discovery (SRV) answer is cached, whatever its TTL.
const MAX_DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// How the client looks things up.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// DNS for the SRV lookups (`--nameserver`, or the system's).
    pub dns: DnsConfig,
    /// Resolve the DORMS servers' host names through `dns` too (so `--nameserver` covers
    /// them); otherwise through the system resolver.
    pub http_dns: bool,
    /// Extra trust anchors (PEM, `--ca-file`), added to the system roots.
    pub ca_pem: Vec<Vec<u8>>,
    /// TCP+TLS connect timeout.
    pub connect_timeout: Duration,
    /// Total time for one request (connect, headers and body).
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_body: usize,
    /// The unit of the legacy `max-bits-per-second` leaf.
    pub legacy_unit: LegacyUnit,
    /// How long an unusable server is skipped.
    pub ignore_time: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            dns: DnsConfig::default(),
            http_dns: false,
            ca_pem: Vec::new(),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            max_body: 64 * 1024,
            legacy_unit: LegacyUnit::Bit,
            ignore_time: Duration::from_secs(3600),
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The resolver.
    #[error(transparent)]
    Dns(#[from] LookupError),
    /// The CA file does not hold usable certificates.
    #[error("CA certificates: {0}")]
    Ca(String),
    /// reqwest refused the configuration.
    #[error("HTTPS client: {0}")]
    Http(String),
}

/// One lookup's outcome and the steps it took (for logs and `cbacc info`).
#[derive(Debug, Clone)]
pub struct Fetch {
    /// The outcome.
    pub result: FetchResult,
    /// What happened, step by step.
    pub trace: Vec<String>,
}

/// A cached SRV answer.
#[derive(Debug, Clone)]
struct Discovered {
    targets: Vec<Target>,
    /// Why there are no targets (a negative answer), for the "not found" reason.
    negative: Option<String>,
    until: Instant,
}

/// A cached RESTCONF root.
#[derive(Debug, Clone)]
struct Root {
    url: reqwest::Url,
    until: Instant,
    /// The layout that answered last time.
    layout: Option<PathLayout>,
}

/// A server-level failure.
struct ServerFailure {
    message: String,
    /// Put the server on the ignore list.
    ignore: bool,
}

/// What a flow-level step found at one server.
enum FlowOutcome {
    Found(FetchResult),
    NotFound(String),
    Failed(ServerFailure),
}

/// A response worth looking at (status and body read within the limits).
struct Answer {
    status: u16,
    content_type: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The DORMS client. Cheap to share (`Arc`); lookups run concurrently.
pub struct DormsClient {
    srv_lookups: SrvLookups,
    http: reqwest::Client,
    dns: Arc<Discovery>,
    config: ClientConfig,
    sources: Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<Option<Discovered>>>>>,
    roots: Mutex<HashMap<String, Root>>,
    ignored: Mutex<HashMap<String, (Instant, String)>>,
    rng: Mutex<SmallRng>,
}

impl std::fmt::Debug for DormsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DormsClient").field("dns", &self.dns).finish_non_exhaustive()
    }
}

/// SRV lookups (`_dorms._tcp.<reverse name>`) sent by a client, by result: cheap atomics,
/// read by the metrics.
#[derive(Debug, Default)]
pub struct SrvLookups {
    /// Answered with at least one target.
    pub found: AtomicU64,
    /// NXDOMAIN or NODATA.
    pub negative: AtomicU64,
    /// No usable answer (timeout, SERVFAIL, ...).
    pub failed: AtomicU64,
}

/// reqwest's resolver hook: DORMS host names through the same hickory resolver as the SRV
/// lookups (the lab's DNS server is not the system's).
struct HickoryHttpResolver(Arc<Discovery>);

impl reqwest::dns::Resolve for HickoryHttpResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        let host = name.as_str().trim_end_matches('.').to_owned();
        Box::pin(async move {
            let fqdn = Name::from_ascii(format!("{host}.")).map_err(|e| format!("{host}: {e}"))?;
            let (addrs, _) = dns.addresses(&fqdn).await?;
            if addrs.is_empty() {
                return Err(format!("{host} has no address (A/AAAA)").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Installs ring as rustls' process-wide crypto provider (reqwest is built without one, so
/// aws-lc never gets compiled). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The error and every cause, joined (`error sending request: client error (Connect): ...`).
fn chain(e: &(dyn std::error::Error + 'static)) -> (String, bool) {
    let mut parts: Vec<String> = Vec::new();
    let mut tls = false;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            tls = true;
        }
        let text = err.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    let message = parts.join(": ");
    let lower = message.to_ascii_lowercase();
    tls |= lower.contains("certificate") || lower.contains("handshake") || lower.contains("tls");
    (message, tls)
}

fn describe(e: &reqwest::Error, timeout: Duration) -> (String, bool) {
    if e.is_timeout() {
        return (format!("timed out (limit {})", humantime::format_duration(timeout)), false);
    }
    let (message, tls) = chain(e);
    // reqwest repeats the URL in its message; the caller names it already.
    let message = message.replace(&format!(" for url ({})", e.url().map(|u| u.as_str()).unwrap_or("")), "");
    (if tls { format!("TLS: {message}") } else { message }, tls)
}

/// `Cache-Control`: `Some(ZERO)` for no-cache/no-store, `Some(max-age)`, or `None`.
fn cache_control(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(CACHE_CONTROL)?.to_str().ok()?;
    let mut max_age = None;
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-cache" || directive == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = directive.strip_prefix("max-age=").and_then(|n| n.trim_matches('"').parse::<u64>().ok()) {
            max_age = Some(Duration::from_secs(n));
        }
    }
    max_age
}

fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

impl DormsClient {
    /// Builds the resolver and the HTTPS client.
    pub fn new(config: ClientConfig) -> Result<DormsClient, ClientError> {
        install_crypto_provider();
        let dns = Arc::new(Discovery::new(&config.dns)?);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .http1_only()
            .user_agent(concat!("cbacc/", env!("CARGO_PKG_VERSION")));
        let mut certs = Vec::new();
        for pem in &config.ca_pem {
            let bundle = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError::Ca(e.to_string()))?;
            if bundle.is_empty() {
                return Err(ClientError::Ca("no certificate in the PEM data".into()));
            }
            certs.extend(bundle);
        }
        if !certs.is_empty() {
            builder = builder.tls_certs_merge(certs);
        }
        if config.http_dns {
            builder = builder.dns_resolver(Arc::new(HickoryHttpResolver(dns.clone())));
        }
        let http = builder.build().map_err(|e| ClientError::Http(chain(&e).0))?;
        Ok(DormsClient {
            srv_lookups: SrvLookups::default(),
            http,
            dns,
            config,
            sources: Mutex::new(HashMap::new()),
            roots: Mutex::new(HashMap::new()),
            ignored: Mutex::new(HashMap::new()),
            rng: Mutex::new(SmallRng::seed_from_u64(rand::random())),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The SRV lookups this client sent, by result.
    pub fn srv_lookups(&self) -> &SrvLookups {
        &self.srv_lookups
    }

    /// Servers on the ignore list now, with the time left and why.
    pub fn ignored(&self) -> Vec<(String, Duration, String)> {
        let now = Instant::now();
        let ignored = self.ignored.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = ignored
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(k, (until, why))| (k.clone(), *until - now, why.clone()))
            .collect();
        v.sort();
        v
    }

    /// Forgets every cached discovery step and the ignore list (SIGHUP).
    pub fn clear_caches(&self) {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.roots.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.ignored.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Looks up the CBACC metadata of `sg`.
    pub async fn fetch(&self, sg: SourceGroup) -> Fetch {
        let mut trace = Vec::new();
        let result = self.fetch_traced(sg, &mut trace).await;
        Fetch { result, trace }
    }

    async fn fetch_traced(&self, sg: SourceGroup, trace: &mut Vec<String>) -> FetchResult {
        let targets = match self.targets(sg.source, trace).await {
            Ok(t) => t,
            Err(result) => return result,
        };
        let mut errors = Vec::new();
        for target in &targets {
            let key = target.server();
            let now = Instant::now();
            let skip = self.ignored.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
            if let Some((until, why)) = skip
                && until > now
            {
                let left = humantime::format_duration(Duration::from_secs((until - now).as_secs()));
                trace.push(format!("{key}: on the ignore list for {left} ({why}); skipped"));
                errors.push(format!("{key}: ignored ({why})"));
                continue;
            }
            let root = match self.root(target, trace).await {
                Ok(root) => root,
                Err(f) => {
                    self.server_failed(&key, &f, trace);
                    errors.push(format!("{key}: {}", f.message));
                    continue;
                }
            };
            match self.metadata(target, &root, sg, trace).await {
                FlowOutcome::Found(result) => return result,
                FlowOutcome::NotFound(reason) => return FetchResult::NotFound { reason },
                FlowOutcome::Failed(f) => {
                    self.server_failed(&key, &f, trace);
                    errors.push(format!("{key}: {}", f.message));
                }
            }
        }
        FetchResult::Failed { error: errors.join("; ") }
    }

    fn server_failed(&self, key: &str, failure: &ServerFailure, trace: &mut Vec<String>) {
        // Discover the root again next time: the server may have changed.
        self.roots.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        if failure.ignore {
            let until = Instant::now() + self.config.ignore_time;
            warn!(
                server = key,
                reason = %failure.message,
                for_ = %humantime::format_duration(self.config.ignore_time),
                "DORMS server unusable: on the ignore list"
            );
            trace
                .push(format!("{key}: on the ignore list for {}", humantime::format_duration(self.config.ignore_time)));
            self.ignored
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_owned(), (until, failure.message.clone()));
        }
    }

    /// The ordered DORMS servers of `source`.
    async fn targets(&self, source: IpAddr, trace: &mut Vec<String>) -> Result<Vec<Target>, FetchResult> {
        let name = mcast_driad::service_name("_dorms._tcp", source)
            .map_err(|e| FetchResult::Failed { error: format!("SRV name for {source}: {e}") })?;
        let slot = {
            let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            sources.entry(source).or_default().clone()
        };
        // One discovery per source at a time: concurrent lookups of its flows wait for it.
        let mut cached = slot.lock().await;
        let now = Instant::now();
        let discovered = match cached.as_ref() {
            Some(d) if d.until > now => {
                trace.push(format!(
                    "SRV {name}: cached ({} target(s), {}s left)",
                    d.targets.len(),
                    (d.until - now).as_secs()
                ));
                d.clone()
            }
            _ => {
                let answer = match self.dns.srv(&name).await {
                    Ok(a) => {
                        let counter =
                            if a.negative.is_some() { &self.srv_lookups.negative } else { &self.srv_lookups.found };
                        counter.fetch_add(1, Ordering::Relaxed);
                        a
                    }
                    Err(e) => {
                        self.srv_lookups.failed.fetch_add(1, Ordering::Relaxed);
                        trace.push(format!("SRV {name}: {e}"));
                        return Err(FetchResult::Failed { error: format!("SRV {name}: {e}") });
                    }
                };
                let targets: Vec<Target> = answer
                    .records
                    .iter()
                    .map(|r| Target {
                        priority: r.priority,
                        weight: r.weight,
                        host: r.target.to_string().trim_end_matches('.').to_owned(),
                        port: r.port,
                    })
                    .collect();
                let negative = answer.negative.map(|n| format!("{n:?}").to_uppercase());
                let ttl = answer.ttl.min(MAX_DISCOVERY_TTL);
                trace.push(match &negative {
                    Some(n) => format!("SRV {name}: {n} (cached {}s)", ttl.as_secs()),
                    None => format!(
                        "SRV {name}: {} (TTL {}s)",
                        targets
                            .iter()
                            .map(|t| format!("{} {} {} {}", t.priority, t.weight, t.port, t.host))
                            .collect::<Vec<_>>()
                            .join(", "),
                        ttl.as_secs()
                    ),
                });
                let d = Discovered { targets, negative, until: now + ttl };
                *cached = Some(d.clone());
                d
            }
        };
        drop(cached);
        let ordered = order(&discovered.targets, &mut *self.rng.lock().unwrap_or_else(|e| e.into_inner()));
        if ordered.is_empty() {
            let why = match &discovered.negative {
                Some(n) => format!("no DORMS server for {source} ({n} at {name})"),
                None => format!("no DORMS service for {source} (SRV target \".\" at {name})"),
            };
            return Err(FetchResult::NotFound { reason: why });
        }
        if ordered.len() > 1 {
            trace.push(format!("order: {}", ordered.iter().map(Target::server).collect::<Vec<_>>().join(", ")));
        }
        Ok(ordered)
    }

    /// GET `url`; the body is read only for 2xx (and within the size limit).
    async fn get(&self, url: &reqwest::Url, accept: &str) -> Result<Answer, ServerFailure> {
        let failure = |e: &reqwest::Error| {
            let (message, tls) = describe(e, self.config.timeout);
            ServerFailure { message: format!("{url}: {message}"), ignore: tls }
        };
        let mut response = self.http.get(url.clone()).header(ACCEPT, accept).send().await.map_err(|e| failure(&e))?;
        let status = response.status().as_u16();
        let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        if response.status().is_success() {
            let limit = self.config.max_body;
            let too_large = || ServerFailure {
                message: format!("{url}: response body larger than {} KiB", limit / 1024),
                ignore: false,
            };
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            while let Some(chunk) = response.chunk().await.map_err(|e| failure(&e))? {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
        }
        Ok(Answer { status, content_type, headers, body })
    }

    /// The RESTCONF root of a server, from host-meta (XRD first, then JSON).
    async fn root(&self, target: &Target, trace: &mut Vec<String>) -> Result<Root, ServerFailure> {
        let key = target.server();
        let now = Instant::now();
        if let Some(root) = self.roots.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && root.until > now
        {
            trace.push(format!("{key}: RESTCONF root {} (cached)", root.url));
            return Ok(root.clone());
        }
        let base = reqwest::Url::parse(&target.base_url())
            .map_err(|e| ServerFailure { message: format!("bad server name {key:?}: {e}"), ignore: true })?;
        let mut problems = Vec::new();
        type Parser = fn(&str) -> Result<Option<String>, String>;
        let variants: [(&str, &str, &[&str], Parser); 2] = [
            (
                ".well-known/host-meta",
                "application/xrd+xml",
                &["application/xrd+xml", "application/xml", "text/xml"],
                host_meta_xml,
            ),
            (
                ".well-known/host-meta.json",
                "application/json",
                &["application/json", "application/jrd+json", "application/xrd+json"],
                host_meta_json,
            ),
        ];
        for (path, accept, types, parse) in variants {
            let url = base.join(path).map_err(|e| ServerFailure { message: e.to_string(), ignore: true })?;
            // A transport failure (connect, TLS, timeout) ends it for this server.
            let answer = self.get(&url, accept).await.inspect_err(|f| trace.push(f.message.clone()))?;
            let href = if answer.status != 200 {
                Err(format!("HTTP {}", answer.status))
            } else if !types.contains(&media_type(&answer.content_type).as_str()) {
                Err(format!("content type {:?}", answer.content_type))
            } else {
                let text = String::from_utf8_lossy(&answer.body);
                parse(&text).and_then(|href| href.ok_or_else(|| "no restconf link".to_owned()))
            };
            match href {
                Ok(href) => {
                    let mut root = base.join(&href).map_err(|e| ServerFailure {
                        message: format!("{url}: bad restconf href {href:?}: {e}"),
                        ignore: true,
                    })?;
                    if !root.path().ends_with('/') {
                        root.set_path(&format!("{}/", root.path()));
                    }
                    trace.push(format!("{url}: RESTCONF root {root}"));
                    let entry = Root { url: root, until: now + ROOT_TTL, layout: None };
                    self.roots.lock().unwrap_or_else(|e| e.into_inner()).insert(key, entry.clone());
                    return Ok(entry);
                }
                Err(why) => {
                    trace.push(format!("{url}: {why}"));
                    problems.push(format!("{url}: {why}"));
                }
            }
        }
        Err(ServerFailure { message: format!("not a RESTCONF server ({})", problems.join("; ")), ignore: true })
    }

    /// The metadata GET at one server, trying each path layout.
    async fn metadata(&self, target: &Target, root: &Root, sg: SourceGroup, trace: &mut Vec<String>) -> FlowOutcome {
        let mut layouts: Vec<PathLayout> = PathLayout::ALL.to_vec();
        if let Some(preferred) = root.layout {
            layouts.retain(|l| *l != preferred);
            layouts.insert(0, preferred);
        }
        let mut not_found = Vec::new();
        for layout in layouts {
            let url = match root.url.join(&layout.path(sg.source, sg.group)) {
                Ok(u) => u,
                Err(e) => return FlowOutcome::Failed(ServerFailure { message: e.to_string(), ignore: false }),
            };
            let answer = match self.get(&url, YANG_JSON).await {
                Ok(a) => a,
                Err(f) => {
                    trace.push(f.message.clone());
                    return FlowOutcome::Failed(f);
                }
            };
            let fail = |message: String| FlowOutcome::Failed(ServerFailure { message, ignore: false });
            match answer.status {
                404 => {
                    trace.push(format!("{url}: HTTP 404"));
                    not_found.push(url.to_string());
                    continue;
                }
                200 => {}
                status => {
                    trace.push(format!("{url}: HTTP {status}"));
                    return fail(format!("{url}: HTTP {status}"));
                }
            }
            let media = media_type(&answer.content_type);
            if media != YANG_JSON && media != "application/json" {
                trace.push(format!("{url}: wrong content type {:?}", answer.content_type));
                return fail(format!("{url}: wrong content type {:?} (expected {YANG_JSON})", answer.content_type));
            }
            let key = target.server();
            if let Some(root) = self.roots.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&key) {
                root.layout = Some(layout);
            }
            return match parse_metadata(&answer.body, sg.source, sg.group, self.config.legacy_unit) {
                Ok(Some(metadata)) => {
                    trace.push(format!(
                        "{url}: {} ({:?}), priority {}",
                        metadata.rate, metadata.leaf, metadata.priority
                    ));
                    FlowOutcome::Found(FetchResult::Found {
                        metadata,
                        url: url.to_string(),
                        max_age: cache_control(&answer.headers),
                    })
                }
                Ok(None) => {
                    trace.push(format!("{url}: no CBACC data"));
                    FlowOutcome::NotFound(format!("no CBACC data for {sg} at {url}"))
                }
                Err(e) => {
                    trace.push(format!("{url}: {e}"));
                    fail(format!("{url}: {e}"))
                }
            };
        }
        FlowOutcome::NotFound(format!("HTTP 404 for {sg} at every path layout of {}", root.url))
    }
}

/// Logs a lookup's outcome as one line (and its steps at debug level).
pub fn log_fetch(sg: SourceGroup, fetch: &Fetch) {
    for step in &fetch.trace {
        debug!(%sg, "DORMS: {step}");
    }
    match &fetch.result {
        FetchResult::Found { metadata, url, .. } => {
            info!(%sg, rate = %metadata.rate, priority = metadata.priority, %url, "DORMS metadata")
        }
        FetchResult::NotFound { reason } => info!(%sg, %reason, "no DORMS metadata"),
        FetchResult::Failed { error } => warn!(%sg, %error, "DORMS lookup failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn cache_control_directives() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            cache_control(&m)
        };
        assert_eq!(cache_control(&HeaderMap::new()), None);
        assert_eq!(h("max-age=600"), Some(Duration::from_secs(600)));
        assert_eq!(h("public, Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(h("max-age=600, no-cache"), Some(Duration::ZERO));
        assert_eq!(h("no-store"), Some(Duration::ZERO));
        assert_eq!(h("private"), None);
        assert_eq!(media_type("Application/YANG-Data+JSON; charset=utf-8"), YANG_JSON);
    }
}
