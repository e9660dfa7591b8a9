//! The server: hickory-server's catalog of in-memory zones behind a handler that adds DNAME
//! substitution, reloading, fault injection and a query log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::zone::{Zone, ZoneError};

/// How long a TCP connection may stay idle.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many queries are kept in the query log (the oldest are dropped).
const QUERY_LOG_LEN: usize = 10_000;
/// DNAME substitutions followed for one query before giving up (loops).
const MAX_DNAME_DEPTH: usize = 8;

/// Where the zones come from and how the server listens.
#[derive(Debug, Clone)]
pub struct Options {
    /// UDP and TCP address (port 0: a free port, the same for both).
    pub listen: SocketAddr,
    /// Zone files, one zone each.
    pub zone_files: Vec<PathBuf>,
    /// Directories whose `*.zone` files are zones (files may come and go).
    pub zone_dirs: Vec<PathBuf>,
    /// Check the files for changes this often and reload (`None`: only on [`LabDns::reload`]
    /// or SIGHUP with [`LabDns::serve_until`]).
    pub watch_interval: Option<Duration>,
}

impl Options {
    /// Serve the zones of `dir` on `listen`, watching every 200 ms.
    pub fn dir(listen: SocketAddr, dir: impl Into<PathBuf>) -> Options {
        Options {
            listen,
            zone_files: Vec::new(),
            zone_dirs: vec![dir.into()],
            watch_interval: Some(Duration::from_millis(200)),
        }
    }
}

/// How the server answers (fault injection for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answer from the zones.
    Normal = 0,
    /// Drop every query: the client times out.
    Silent = 1,
    /// Answer SERVFAIL to everything.
    ServFail = 2,
    /// Answer REFUSED to everything.
    Refused = 3,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Silent,
            2 => Mode::ServFail,
            3 => Mode::Refused,
            _ => Mode::Normal,
        }
    }
}

/// One query the server received.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    /// When it arrived.
    pub at: Instant,
    /// The query name.
    pub name: Name,
    /// The query type.
    pub rtype: RecordType,
}

/// The outcome of a (re)load.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// The zones now served (apexes).
    pub zones: Vec<Name>,
    /// Files that failed to load (the previous version of their zone, if any, is still served).
    pub errors: Vec<ZoneError>,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A zone file is broken.
    #[error("zone file error: {0}")]
    Zone(ZoneError),
}

/// What is being served: the catalog plus the DNAME records (hickory-server has no DNAME).
struct Served {
    catalog: Catalog,
    /// DNAME owner → (DNAME record, target).
    dnames: BTreeMap<LowerName, (Record, Name)>,
}

impl Served {
    fn build(zones: &[Zone]) -> Served {
        let mut catalog = Catalog::new();
        let mut dnames = BTreeMap::new();
        for zone in zones {
            let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
                zone.origin().clone(),
                ZoneType::Primary,
                AxfrPolicy::Deny,
            );
            for record in zone.records() {
                if !handler.upsert_mut(record.clone(), zone.serial()) {
                    warn!(zone = %zone.origin(), record = %record, "record not added (CNAME conflict or duplicate)");
                }
                if record.record_type() == RecordType::DNAME
                    && let RData::Unknown { rdata, .. } = &record.data
                {
                    let mut decoder = hickory_proto::serialize::binary::BinDecoder::new(&rdata.anything);
                    if let Ok(target) = <Name as hickory_proto::serialize::binary::BinDecodable>::read(&mut decoder) {
                        dnames.insert(LowerName::new(&record.name), (record.clone(), target));
                    }
                }
            }
            let handler: Arc<dyn ZoneHandler> = Arc::new(handler);
            catalog.upsert(LowerName::new(zone.origin()), vec![handler]);
        }
        Served { catalog, dnames }
    }

    /// The DNAME whose owner is a proper ancestor of `name`, the closest one.
    fn dname_for(&self, name: &LowerName) -> Option<&(Record, Name)> {
        let mut n = name.base_name();
        loop {
            if let Some(d) = self.dnames.get(&n) {
                return Some(d);
            }
            if n.is_root() {
                return None;
            }
            n = n.base_name();
        }
    }
}

/// State shared by the handler, the watcher and the [`LabDns`] handle.
struct Shared {
    options: Options,
    served: RwLock<Arc<Served>>,
    /// The last good zone of each file.
    loaded: Mutex<BTreeMap<PathBuf, Zone>>,
    mode: AtomicU8,
    log: Mutex<std::collections::VecDeque<QueryRecord>>,
}

impl Shared {
    /// The zone files now: the listed files and each directory's `*.zone` files.
    fn zone_paths(&self) -> Vec<PathBuf> {
        let mut paths = self.options.zone_files.clone();
        for dir in &self.options.zone_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "zone") && p.is_file())
                .collect();
            found.sort();
            paths.extend(found);
        }
        paths
    }

    fn fingerprint(&self) -> Vec<(PathBuf, Option<FileStamp>)> {
        self.zone_paths().into_iter().map(|p| (p.clone(), FileStamp::of(&p))).collect()
    }

    fn reload(&self) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: BTreeMap<PathBuf, Zone> = BTreeMap::new();
        let mut origins: BTreeMap<Name, PathBuf> = BTreeMap::new();
        for path in self.zone_paths() {
            let zone = match Zone::load(&path) {
                Ok(zone) => {
                    for w in zone.warnings() {
                        warn!(file = %path.display(), "{w}");
                    }
                    zone
                }
                Err(e) => {
                    error!("{e}");
                    report.errors.push(e);
                    match loaded.get(&path) {
                        Some(old) => {
                            warn!(file = %path.display(), zone = %old.origin(), "keeping the previous version");
                            old.clone()
                        }
                        None => continue,
                    }
                }
            };
            if let Some(other) = origins.get(zone.origin()) {
                let e = ZoneError {
                    source_name: path.display().to_string(),
                    line: 0,
                    message: format!("zone {} is already loaded from {}", zone.origin(), other.display()),
                };
                error!("{e}");
                report.errors.push(e);
                continue;
            }
            origins.insert(zone.origin().clone(), path.clone());
            next.insert(path, zone);
        }
        let zones: Vec<Zone> = next.values().cloned().collect();
        for zone in &zones {
            debug!(zone = %zone.origin(), serial = zone.serial(), records = zone.records().len(), "serving");
        }
        report.zones = zones.iter().map(|z| z.origin().clone()).collect();
        let served = Arc::new(Served::build(&zones));
        *self.served.write().unwrap_or_else(|e| e.into_inner()) = served;
        *loaded = next;
        info!(zones = report.zones.len(), errors = report.errors.len(), "zones loaded");
        report
    }

    fn log_query(&self, name: Name, rtype: RecordType) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= QUERY_LOG_LEN {
            log.pop_front();
        }
        log.push_back(QueryRecord { at: Instant::now(), name, rtype });
    }
}

/// What identifies a version of a file: a rename gives a new inode, a rewrite a new mtime,
/// ctime or length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The hickory request handler.
struct Handler {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response_handle: R) -> ResponseInfo {
        let query = request.request_info().ok().map(|info| (info.query.name().clone(), info.query.query_type()));
        if let Some((name, rtype)) = &query {
            self.shared.log_query(Name::from(name), *rtype);
        }
        match Mode::from_u8(self.shared.mode.load(Ordering::Relaxed)) {
            Mode::Normal => {}
            Mode::Silent => {
                let metadata = Metadata::response_from_request(&request.metadata);
                return ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() });
            }
            Mode::ServFail => return send_error(request, ResponseCode::ServFail, response_handle).await,
            Mode::Refused => return send_error(request, ResponseCode::Refused, response_handle).await,
        }
        let served = self.shared.served.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((name, rtype)) = query
            && rtype != RecordType::DNAME
            && served.dname_for(&name).is_some()
        {
            return answer_dname(&served, request, name, response_handle).await;
        }
        served.catalog.handle_request::<R, T>(request, response_handle).await
    }
}

async fn send_error<R: ResponseHandler>(request: &Request, code: ResponseCode, mut handle: R) -> ResponseInfo {
    let response = MessageResponseBuilder::from_message_request(request).error_msg(&request.metadata, code);
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            error!(error = %e, "failed to send a response");
            let metadata = Metadata::response_from_request(&request.metadata);
            ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
        }
    }
}

/// RFC 6672 §3.2: a query below a DNAME owner gets the DNAME and a CNAME synthesised from
/// it (TTL of the DNAME). Further DNAMEs on the new name are applied too; the final name is not
/// looked up here, the resolver follows the CNAME (as it does for CNAMEs into another zone).
async fn answer_dname<R: ResponseHandler>(
    served: &Served,
    request: &Request,
    qname: LowerName,
    mut handle: R,
) -> ResponseInfo {
    let mut answers = Vec::new();
    let mut current = Name::from(&qname);
    let mut code = ResponseCode::NoError;
    for _ in 0..MAX_DNAME_DEPTH {
        let Some((dname, target)) = served.dname_for(&LowerName::new(&current)) else { break };
        let keep = usize::from(current.num_labels() - dname.name.num_labels());
        let prefix = Name::from_labels(current.iter().take(keep)).and_then(|p| p.append_name(target));
        let Ok(mut next) = prefix else {
            code = ResponseCode::YXDomain;
            answers.push(dname.clone());
            break;
        };
        next.set_fqdn(true);
        answers.push(dname.clone());
        answers.push(Record::from_rdata(current.clone(), dname.ttl, RData::CNAME(CNAME(next.clone()))));
        current = next;
    }
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = true;
    metadata.response_code = code;
    let response = MessageResponseBuilder::from_message_request(request).build(
        metadata,
        answers.iter(),
        std::iter::empty(),
        std::iter::empty(),
        std::iter::empty(),
    );
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            error!(error = %e, "failed to send a DNAME response");
            let metadata = Metadata::response_from_request(&request.metadata);
            ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
        }
    }
}

/// A running lab DNS server. Dropping it stops it.
pub struct LabDns {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Server<Handler>,
    watcher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LabDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabDns").field("addr", &self.addr).field("zones", &self.zones()).finish()
    }
}

impl LabDns {
    /// Loads the zones (any broken file is an error here) and serves them on UDP and TCP.
    pub async fn start(options: Options) -> Result<LabDns, StartError> {
        let (udp, tcp) = bind_pair(options.listen).await?;
        let addr = udp.local_addr().map_err(|source| StartError::Bind { addr: options.listen, source })?;
        let shared = Arc::new(Shared {
            options,
            served: RwLock::new(Arc::new(Served::build(&[]))),
            loaded: Mutex::new(BTreeMap::new()),
            mode: AtomicU8::new(Mode::Normal as u8),
            log: Mutex::new(Default::default()),
        });
        let stamps = shared.fingerprint();
        let report = shared.reload();
        if let Some(e) = report.errors.into_iter().next() {
            return Err(StartError::Zone(e));
        }
        let mut server = Server::new(Handler { shared: shared.clone() });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, 64 * 1024);
        let watcher = shared.options.watch_interval.map(|every| tokio::spawn(watch(shared.clone(), stamps, every)));
        info!(%addr, zones = ?report.zones.iter().map(ToString::to_string).collect::<Vec<_>>(), "lab DNS server listening");
        Ok(LabDns { addr, shared, server, watcher })
    }

    /// The UDP and TCP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reloads every zone file now.
    pub fn reload(&self) -> ReloadReport {
        self.shared.reload()
    }

    /// The zones now served.
    pub fn zones(&self) -> Vec<Name> {
        self.shared.loaded.lock().unwrap_or_else(|e| e.into_inner()).values().map(|z| z.origin().clone()).collect()
    }

    /// Changes how the server answers (fault injection).
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// The queries received so far (the last 10 000).
    pub fn queries(&self) -> Vec<QueryRecord> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Forgets the query log.
    pub fn clear_queries(&self) {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Serves until `shutdown` completes, reloading on SIGHUP when `sighup` is set, then stops.
    pub async fn serve_until(mut self, shutdown: impl Future<Output = ()>, sighup: bool) -> std::io::Result<()> {
        let mut hup =
            if sighup { Some(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?) } else { None };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    info!("SIGHUP: reloading zones");
                    self.shared.reload();
                }
            }
        }
        self.stop().await;
        Ok(())
    }

    /// Stops serving and waits for the listeners to close.
    pub async fn stop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        if let Err(e) = self.server.shutdown_gracefully().await {
            warn!(error = %e, "DNS server shutdown");
        }
    }
}

impl Drop for LabDns {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        self.server.shutdown_token().cancel();
    }
}

/// Binds UDP and TCP on the same port (for port 0, a few tries at a free port for both).
async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), StartError> {
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(listen).await.map_err(|source| StartError::Bind { addr: listen, source })?;
        let addr = udp.local_addr().map_err(|source| StartError::Bind { addr: listen, source })?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(source) => return Err(StartError::Bind { addr, source }),
        }
    }
    Err(StartError::Bind { addr: listen, source: last.unwrap_or_else(|| std::io::Error::other("no free port")) })
}

/// Polls the zone files and reloads when any changed, appeared or vanished. A file that is
/// still being written is read again on the next tick (its stamp changes once more).
async fn watch(shared: Arc<Shared>, mut stamps: Vec<(PathBuf, Option<FileStamp>)>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = shared.fingerprint();
        if now != stamps {
            debug!("zone files changed");
            let shared2 = shared.clone();
            // Parsing is synchronous file work: keep it off the query path.
            let _ = tokio::task::spawn_blocking(move || shared2.reload()).await;
            stamps = now;
        }
    }
}
