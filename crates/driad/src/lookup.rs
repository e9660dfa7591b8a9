//! The lookup side: AMTRELAY queries through hickory-resolver.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::{Resolver, TokioResolver};
use mcast_wire::amtrelay::{AmtRelay, DomainName, RR_TYPE, Relay};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::order::{Candidate, RelayRecord, plan};

/// The AMTRELAY record type (RFC 8777 §4.1), as hickory sees it.
pub const AMTRELAY: RecordType = RecordType::Unknown(RR_TYPE);

/// When a type-3 name could not be resolved (a transient error) but other relays were found,
/// the answer is kept at most this long, so the name is tried again soon.
pub const INCOMPLETE_TTL: Duration = Duration::from_secs(30);

/// The DNS query rate limit. RFC 8777 §3 (with its Happy Eyeballs guidance for several relay
/// records): a gateway whose DNS library does not rate-limit MUST, and by default SHOULD NOT
/// allow more than 10 queries in any 100 ms window; an administrator may override that.
/// (The exact subsection is not pinned down here: reference/protocols.md §A2 quotes the rule
/// under "Multiple records" next to §3.2.3.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// At most this many queries...
    pub queries: usize,
    /// ...in any window of this length.
    pub per: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { queries: 10, per: Duration::from_millis(100) }
    }
}

/// Where and how to query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The servers to ask (`--nameserver ADDR[:PORT]`); `None`: the system's (/etc/resolv.conf).
    pub nameservers: Option<Vec<SocketAddr>>,
    /// Time to wait for one answer.
    pub timeout: Duration,
    /// Retries after a timeout, as hickory counts them (0: one try only).
    pub attempts: usize,
    /// Query rate limit (`None`: unlimited).
    pub rate_limit: Option<RateLimit>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: None,
            timeout: Duration::from_secs(2),
            attempts: 2,
            rate_limit: Some(RateLimit::default()),
        }
    }
}

/// Parses `ADDR[:PORT]` (`192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53`, `[2001:db8::53]:5353`);
/// the port defaults to 53.
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if let Some(ip) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return ip.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)).map_err(|e| format!("{s:?}: {e}"));
    }
    s.parse::<SocketAddr>().map_err(|_| format!("{s:?} is not ADDR[:PORT]"))
}

/// Why a lookup failed. All of these are transient: retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No answer in time.
    #[error("DNS timeout")]
    Timeout,
    /// The server answered with an error code (SERVFAIL, REFUSED, ...).
    #[error("DNS server answered {0}")]
    Server(String),
    /// Any other resolver or transport error.
    #[error("DNS lookup failed: {0}")]
    Other(String),
    /// The records name relays that could not be resolved (and there is nothing else).
    #[error("relay name {name}: {error}")]
    RelayName {
        /// The type-3 name.
        name: String,
        /// What went wrong.
        error: Box<LookupError>,
    },
    /// The resolver could not be set up.
    #[error("DNS configuration: {0}")]
    Config(String),
}

impl LookupError {
    fn from_net(e: &NetError) -> LookupError {
        match e {
            NetError::Timeout => LookupError::Timeout,
            NetError::Dns(DnsError::ResponseCode(code)) => LookupError::Server(code.to_string()),
            other => LookupError::Other(other.to_string()),
        }
    }
}

/// Why an answer has no records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Negative {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// NODATA: the name exists, without AMTRELAY records.
    NoData,
}

/// The outcome of one discovery lookup for a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The reverse name queried.
    pub name: Name,
    /// Every AMTRELAY record that parsed (all of them, also those the type-0 policy left out).
    pub records: Vec<RelayRecord>,
    /// Records that did not parse, as `\# LEN HEX` with the reason (skipped, with a warning).
    pub skipped: Vec<String>,
    /// The relay addresses to use (type 1/2 records and the addresses of type-3 names), in
    /// record order; [`crate::RelayOrder`] sorts them.
    pub candidates: Vec<Candidate>,
    /// How long this answer holds: the minimum TTL of what was used (records, CNAME/DNAME
    /// chain, relay names' A/AAAA); for a negative answer the SOA-derived negative TTL (RFC
    /// 2308 §5), zero without an SOA.
    pub ttl: Duration,
    /// A type-0 record says: no AMT relay for this source (see [`crate::order::plan`]).
    pub no_relay: bool,
    /// Set for NXDOMAIN/NODATA.
    pub negative: Option<Negative>,
    /// Type-3 names that resolved to no address (skipped; no reason to bench anything).
    pub empty_names: Vec<DomainName>,
    /// Type-3 names whose resolution failed transiently (with the error), when other relays
    /// were found; the TTL is then at most [`INCOMPLETE_TTL`].
    pub failed_names: Vec<(DomainName, LookupError)>,
}

impl Answer {
    fn negative(name: Name, kind: Negative, ttl: Option<u32>) -> Answer {
        Answer {
            name,
            records: Vec::new(),
            skipped: Vec::new(),
            candidates: Vec::new(),
            ttl: Duration::from_secs(ttl.unwrap_or(0).into()),
            no_relay: false,
            negative: Some(kind),
            empty_names: Vec::new(),
            failed_names: Vec::new(),
        }
    }
}

/// The reverse DNS name of a source (RFC 8777 §2.1, §3.4): `12.100.51.198.in-addr.arpa.` or
/// the 32 nibbles under `ip6.arpa.`, absolute.
pub fn reverse_name(source: IpAddr) -> Name {
    let mut name = Name::from(source);
    name.set_fqdn(true);
    name
}

/// The name of a service bootstrapped from a source's reverse name, e.g. `_dorms._tcp` for
/// DORMS (draft-ietf-mboned-dorms): `_dorms._tcp.12.100.51.198.in-addr.arpa.`.
pub fn service_name(service: &str, source: IpAddr) -> Result<Name, String> {
    Name::from_ascii(service)
        .and_then(|prefix| prefix.append_domain(&reverse_name(source)))
        .map_err(|e| format!("{service}: {e}"))
}

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative weight among records of the same priority.
    pub weight: u16,
    /// The service's port on the target.
    pub port: u16,
    /// The target host (`.` means: the service is decidedly not available).
    pub target: Name,
}

/// The outcome of an SRV query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvAnswer {
    /// The name queried.
    pub name: Name,
    /// The records, in answer order.
    pub records: Vec<SrvRecord>,
    /// How long the answer holds (for a negative answer: the SOA-derived negative TTL).
    pub ttl: Duration,
    /// Set for NXDOMAIN/NODATA.
    pub negative: Option<Negative>,
}

/// A wire-format relay name as a hickory name (absolute).
pub fn to_name(name: &DomainName) -> Result<Name, String> {
    let mut n = Name::from_labels(name.labels()).map_err(|e| format!("{name}: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Sliding-window query rate limiter.
#[derive(Debug)]
struct RateLimiter {
    limit: RateLimit,
    sent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    async fn acquire(&self) {
        loop {
            let wait_until = {
                let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while sent.front().is_some_and(|t| now.duration_since(*t) >= self.limit.per) {
                    sent.pop_front();
                }
                if sent.len() < self.limit.queries.max(1) {
                    sent.push_back(now);
                    return;
                }
                match sent.front() {
                    Some(t) => *t + self.limit.per,
                    None => return,
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }
}

/// The result of resolving one type-3 relay name.
#[derive(Debug, Default)]
struct NameResult {
    /// Addresses with the TTL that applies to each (record and CNAME chain).
    addrs: Vec<(IpAddr, u32)>,
    /// The smallest negative TTL among the A/AAAA answers that were empty.
    negative_ttl: Option<u32>,
    /// A transient error from A or AAAA (only reported when nothing was found).
    error: Option<LookupError>,
}

/// Discovery lookups (RFC 8777 §3): AMTRELAY at the source's reverse name, CNAME and DNAME
/// followed (hickory follows the CNAME a server synthesises for a DNAME), every record parsed
/// with `mcast_wire`, type-3 names resolved to A and AAAA.
///
/// hickory's own cache is off: [`crate::DiscoveryState`] caches answers for their TTL and
/// decides when to ask again. Each resolver call (the AMTRELAY query, each A and each AAAA)
/// passes the rate limiter; CNAME hops and retransmissions inside hickory are not counted
/// separately.
pub struct Discovery {
    resolver: TokioResolver,
    /// The servers asked, for Debug.
    servers: Vec<IpAddr>,
    limiter: Option<RateLimiter>,
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery").field("nameservers", &self.servers).finish()
    }
}

impl Discovery {
    /// Builds the resolver: the configured servers (UDP, then TCP on truncation), or the
    /// system's resolver configuration. The hosts file is not consulted.
    pub fn new(config: &DnsConfig) -> Result<Discovery, LookupError> {
        let (resolver_config, mut opts) = match &config.nameservers {
            Some(servers) => {
                if servers.is_empty() {
                    return Err(LookupError::Config("no nameserver given".into()));
                }
                let servers = servers
                    .iter()
                    .map(|sa| {
                        let mut ns = NameServerConfig::udp_and_tcp(sa.ip());
                        for c in &mut ns.connections {
                            c.port = sa.port();
                        }
                        ns
                    })
                    .collect();
                (ResolverConfig::from_name_servers(servers), ResolverOpts::default())
            }
            None => hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| LookupError::Config(format!("reading the system resolver configuration: {e}")))?,
        };
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        opts.cache_size = 0;
        opts.preserve_intermediates = true;
        opts.use_hosts_file = ResolveHosts::Never;
        let servers = resolver_config.name_servers().iter().map(|ns| ns.ip).collect();
        let resolver = Resolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| LookupError::Config(e.to_string()))?;
        let limiter = config.rate_limit.map(|limit| RateLimiter { limit, sent: Mutex::new(VecDeque::new()) });
        Ok(Discovery { resolver, servers, limiter })
    }

    async fn query(&self, name: &Name, rtype: RecordType) -> Result<hickory_resolver::lookup::Lookup, NetError> {
        if let Some(l) = &self.limiter {
            l.acquire().await;
        }
        debug!(%name, %rtype, "DNS query");
        self.resolver.lookup(name.clone(), rtype).await
    }

    /// Looks up the relays of `source`. NXDOMAIN and NODATA are `Ok` with no candidates and
    /// the negative TTL; timeouts, SERVFAIL, REFUSED and the like are `Err` (transient).
    pub async fn lookup(&self, source: IpAddr) -> Result<Answer, LookupError> {
        let name = reverse_name(source);
        let lookup = match self.query(&name, AMTRELAY).await {
            Ok(lookup) => lookup,
            Err(e) => return negative_or_error(name, &e),
        };
        let answers = lookup.answers();
        let chain_ttl = chain_ttl(answers);
        let mut records = Vec::new();
        let mut skipped = Vec::new();
        for r in answers.iter().filter(|r| r.record_type() == AMTRELAY) {
            let RData::Unknown { rdata, .. } = &r.data else { continue };
            let bytes = &rdata.anything;
            match AmtRelay::parse(bytes) {
                Ok(rdata) => records.push(RelayRecord { owner: r.name.clone(), ttl: r.ttl, rdata }),
                Err(e) => {
                    let generic = generic_form(bytes);
                    warn!(%source, owner = %r.name, rdata = %generic, error = %e, "malformed AMTRELAY record skipped");
                    skipped.push(format!("{generic} ({e})"));
                }
            }
        }
        if records.is_empty() && skipped.is_empty() {
            // An answer with no AMTRELAY at all (e.g. a CNAME to nowhere we could follow).
            return Ok(Answer::negative(name, Negative::NoData, Some(chain_ttl.unwrap_or(0))));
        }
        let all_ttl = answers.iter().filter(|r| r.record_type() == AMTRELAY).map(|r| r.ttl).min().unwrap_or(0);
        let rdatas: Vec<AmtRelay> = records.iter().map(|r| r.rdata.clone()).collect();
        let plan = plan(&rdatas);
        let mut ttl = chain_ttl.unwrap_or(u32::MAX);
        let mut candidates = Vec::new();
        let mut empty_names = Vec::new();
        let mut failed_names = Vec::new();
        if plan.no_relay {
            for &i in &plan.type0_records {
                ttl = ttl.min(records[i].ttl);
            }
        } else if plan.use_records.is_empty() {
            // Only malformed records or records of unassigned types: no relay to use, for as
            // long as those records live.
            ttl = ttl.min(all_ttl);
        }
        // Each name is resolved once, however many records list it (in record order).
        let mut names: Vec<(DomainName, NameResult)> = Vec::new();
        for &i in &plan.use_records {
            let record = &records[i];
            ttl = ttl.min(record.ttl);
            let rdata = &record.rdata;
            match &rdata.relay {
                Relay::Ipv4(_) | Relay::Ipv6(_) => candidates.push(Candidate {
                    addr: rdata.relay.ip().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                    precedence: rdata.precedence,
                    discovery_optional: rdata.discovery_optional,
                    via_name: None,
                }),
                Relay::Name(relay_name) => {
                    if !names.iter().any(|(n, _)| n == relay_name) {
                        let result = self.resolve_name(source, relay_name).await;
                        names.push((relay_name.clone(), result));
                    }
                    let Some((_, result)) = names.iter().find(|(n, _)| n == relay_name) else { continue };
                    for &(addr, addr_ttl) in &result.addrs {
                        ttl = ttl.min(addr_ttl);
                        candidates.push(Candidate {
                            addr,
                            precedence: rdata.precedence,
                            discovery_optional: rdata.discovery_optional,
                            via_name: Some(relay_name.clone()),
                        });
                    }
                }
                Relay::None | Relay::Unknown { .. } => {}
            }
        }
        for (relay_name, result) in names {
            if !result.addrs.is_empty() {
                continue;
            }
            match result.error {
                Some(e) => failed_names.push((relay_name, e)),
                None => {
                    debug!(%source, name = %relay_name, "relay name has no address; skipped");
                    if let Some(n) = result.negative_ttl {
                        ttl = ttl.min(n);
                    }
                    empty_names.push(relay_name);
                }
            }
        }
        if candidates.is_empty()
            && !plan.no_relay
            && let Some((relay_name, error)) = failed_names.first()
        {
            return Err(LookupError::RelayName { name: relay_name.to_string(), error: Box::new(error.clone()) });
        }
        let mut ttl = Duration::from_secs(if ttl == u32::MAX { 0 } else { ttl.into() });
        if !failed_names.is_empty() {
            ttl = ttl.min(INCOMPLETE_TTL);
        }
        Ok(Answer {
            name,
            records,
            skipped,
            candidates,
            ttl,
            no_relay: plan.no_relay,
            negative: None,
            empty_names,
            failed_names,
        })
    }

    /// SRV records at `name` (RFC 2782), CNAMEs followed: for other services that are
    /// bootstrapped from a source's reverse name the way DRIAD is, e.g. DORMS
    /// (`_dorms._tcp.<reverse name>`, see [`service_name`]). NXDOMAIN and NODATA are `Ok` with
    /// no records and the negative TTL; transient failures are `Err`. Records come in answer
    /// order: the caller applies RFC 2782 ordering. The TTL is the minimum over the records and
    /// the CNAME chain.
    pub async fn srv(&self, name: &Name) -> Result<SrvAnswer, LookupError> {
        let lookup = match self.query(name, RecordType::SRV).await {
            Ok(lookup) => lookup,
            Err(e) => {
                return match negative_ttl(&e) {
                    Some((kind, ttl)) => Ok(SrvAnswer {
                        name: name.clone(),
                        records: Vec::new(),
                        ttl: Duration::from_secs(ttl.unwrap_or(0).into()),
                        negative: Some(kind),
                    }),
                    None => Err(LookupError::from_net(&e)),
                };
            }
        };
        let answers = lookup.answers();
        let mut ttl = chain_ttl(answers).unwrap_or(u32::MAX);
        let mut records = Vec::new();
        for r in answers {
            if let RData::SRV(srv) = &r.data {
                ttl = ttl.min(r.ttl);
                records.push(SrvRecord {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: srv.target.clone(),
                });
            }
        }
        let negative = records.is_empty().then_some(Negative::NoData);
        let ttl = Duration::from_secs(if ttl == u32::MAX { 0 } else { ttl.into() });
        Ok(SrvAnswer { name: name.clone(), records, ttl, negative })
    }

    /// The A and AAAA addresses of a host name (CNAMEs followed), with the smallest TTL. A
    /// name without addresses is `Ok` with none; an error is returned only when neither query
    /// got an answer.
    pub async fn addresses(&self, name: &Name) -> Result<(Vec<IpAddr>, Duration), LookupError> {
        let (a, aaaa) = tokio::join!(self.query(name, RecordType::A), self.query(name, RecordType::AAAA));
        let mut addrs = Vec::new();
        let mut ttl = u32::MAX;
        let mut error = None;
        for answer in [a, aaaa] {
            match answer {
                Ok(lookup) => {
                    let chain = chain_ttl(lookup.answers()).unwrap_or(u32::MAX);
                    for r in lookup.answers() {
                        let addr = match &r.data {
                            RData::A(a) => IpAddr::V4(a.0),
                            RData::AAAA(a) => IpAddr::V6(a.0),
                            _ => continue,
                        };
                        ttl = ttl.min(r.ttl).min(chain);
                        addrs.push(addr);
                    }
                }
                Err(e) => match negative_ttl(&e) {
                    Some((_, negative)) => ttl = ttl.min(negative.unwrap_or(0)),
                    None => error = Some(LookupError::from_net(&e)),
                },
            }
        }
        if addrs.is_empty()
            && let Some(e) = error
        {
            return Err(e);
        }
        Ok((addrs, Duration::from_secs(if ttl == u32::MAX { 0 } else { ttl.into() })))
    }

    /// A and AAAA of a type-3 relay name, CNAMEs followed, anything but addresses ignored.
    async fn resolve_name(&self, source: IpAddr, relay_name: &DomainName) -> NameResult {
        let name = match to_name(relay_name) {
            Ok(n) => n,
            Err(e) => {
                warn!(%source, "unusable relay name {e}");
                return NameResult::default();
            }
        };
        let (a, aaaa) = tokio::join!(self.query(&name, RecordType::A), self.query(&name, RecordType::AAAA));
        let mut result = NameResult::default();
        for answer in [a, aaaa] {
            match answer {
                Ok(lookup) => {
                    let chain = chain_ttl(lookup.answers()).unwrap_or(u32::MAX);
                    for r in lookup.answers() {
                        let addr = match &r.data {
                            RData::A(a) => IpAddr::V4(a.0),
                            RData::AAAA(a) => IpAddr::V6(a.0),
                            _ => continue,
                        };
                        result.addrs.push((addr, r.ttl.min(chain)));
                    }
                }
                Err(e) => match negative_ttl(&e) {
                    Some((_, ttl)) => {
                        let ttl = ttl.unwrap_or(0);
                        result.negative_ttl = Some(result.negative_ttl.map_or(ttl, |n| n.min(ttl)));
                    }
                    None => {
                        warn!(%source, name = %relay_name, error = %e, "relay name lookup failed");
                        result.error = Some(LookupError::from_net(&e));
                    }
                },
            }
        }
        result
    }
}

/// The smallest TTL of the CNAME and DNAME records in an answer (the chain to the records).
fn chain_ttl(answers: &[Record]) -> Option<u32> {
    answers.iter().filter(|r| matches!(r.record_type(), RecordType::CNAME | RecordType::DNAME)).map(|r| r.ttl).min()
}

/// NXDOMAIN/NODATA with the negative TTL hickory derived from the SOA (min of SOA TTL and
/// MINIMUM), or `None` for a real failure.
fn negative_ttl(e: &NetError) -> Option<(Negative, Option<u32>)> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => {
            let kind = if nr.response_code == ResponseCode::NXDomain { Negative::NxDomain } else { Negative::NoData };
            Some((kind, nr.negative_ttl))
        }
        _ => None,
    }
}

fn negative_or_error(name: Name, e: &NetError) -> Result<Answer, LookupError> {
    match negative_ttl(e) {
        Some((kind, ttl)) => Ok(Answer::negative(name, kind, ttl)),
        None => Err(LookupError::from_net(e)),
    }
}

/// RFC 3597 generic form of raw RDATA, for logs.
fn generic_form(bytes: &[u8]) -> String {
    let mut s = format!("\\# {}", bytes.len());
    if !bytes.is_empty() {
        s.push(' ');
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name("198.51.100.12".parse().unwrap()).to_string(), "12.100.51.198.in-addr.arpa.");
        assert_eq!(
            reverse_name("2001:db8::a".parse().unwrap()).to_string(),
            "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
        assert!(reverse_name("192.0.2.1".parse().unwrap()).is_fqdn());
    }

    #[test]
    fn relay_names_convert() {
        let d: DomainName = "r4v4.amt.akadns.net.".parse().unwrap();
        let n = to_name(&d).unwrap();
        assert_eq!(n.to_string(), "r4v4.amt.akadns.net.");
        assert!(n.is_fqdn());
    }

    #[test]
    fn nameserver_syntax() {
        assert_eq!(parse_nameserver("203.0.113.53").unwrap().to_string(), "203.0.113.53:53");
        assert_eq!(parse_nameserver("127.0.0.1:5353").unwrap().to_string(), "127.0.0.1:5353");
        assert_eq!(parse_nameserver("2001:db8::53").unwrap().to_string(), "[2001:db8::53]:53");
        assert_eq!(parse_nameserver("[2001:db8::53]").unwrap().to_string(), "[2001:db8::53]:53");
        assert_eq!(parse_nameserver("[2001:db8::53]:5300").unwrap().to_string(), "[2001:db8::53]:5300");
        assert!(parse_nameserver("dns.example").is_err());
        assert!(parse_nameserver("1.2.3.4:x").is_err());
    }

    #[test]
    fn generic_form_for_logs() {
        assert_eq!(generic_form(&[10, 1, 203, 0, 113, 15]), "\\# 6 0a01cb00710f");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_ten_per_100ms() {
        let limiter = RateLimiter { limit: RateLimit::default(), sent: Mutex::new(VecDeque::new()) };
        let t0 = Instant::now();
        let mut at = Vec::new();
        for _ in 0..35 {
            limiter.acquire().await;
            at.push(t0.elapsed());
        }
        for w in at.windows(11) {
            assert!(w[10] - w[0] >= Duration::from_millis(100), "11 queries within 100 ms: {w:?}");
        }
        assert!(at[9] < Duration::from_millis(1), "the first ten go at once");
        assert_eq!(at[34], Duration::from_millis(300), "35 queries take three windows");
    }
}
