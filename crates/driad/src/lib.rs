//! mcast-driad: DRIAD relay discovery (RFC 8777) for the ingest gateway.
//!
//! * [`Discovery`] (async, tokio): the lookups. AMTRELAY (type 260) at the source's reverse
//!   name ([`reverse_name`]), CNAME and DNAME followed (RFC 8777 §3.4), every record parsed
//!   with `mcast_wire::amtrelay` (a malformed one is skipped with a warning naming the source
//!   and the bytes; the others still count), type-3 names resolved to A **and** AAAA (CNAMEs
//!   followed, other records ignored, a name with no address skipped — never a reason to bench
//!   a relay). NXDOMAIN/NODATA are answers (with the SOA-derived negative TTL, RFC 2308);
//!   timeouts, SERVFAIL, REFUSED are errors. At most 10 queries in any 100 ms by default
//!   (RFC 8777 §3, overridable). The system resolver configuration by default, or `--nameserver
//!   ADDR[:PORT]` ([`parse_nameserver`]).
//! * [`plan`] and [`RelayOrder`]: the type-0 policy (a type-0 record ends the precedence list;
//!   in the best tier it means "no relay") and the order relays are tried in (precedence,
//!   lowest first; uniformly random among equals, RFC 8777 §3.1.2).
//! * [`DiscoveryState`] (sans-IO, injected time, seeded RNG): per source, the chosen relay, the
//!   answer's expiry and re-resolution, negative caching, retries with randomised exponential
//!   backoff (1 s → 120 s, §3.5), hold-down of failed relays (default 10 min, §3.3) with
//!   failover to the next candidate, events, and a serde status.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Instant;
//! use mcast_driad::{Discovery, DiscoveryConfig, DiscoveryState, DnsConfig};
//!
//! let discovery = Discovery::new(&DnsConfig::default())?;
//! let mut state = DiscoveryState::new(DiscoveryConfig::default(), rand::random());
//! let source = "198.51.100.10".parse()?;
//! state.want(source);
//! while let Some(s) = state.poll_lookup(Instant::now()) {
//!     let result = discovery.lookup(s).await; // concurrently, in a real driver
//!     state.on_answer(s, result, Instant::now());
//! }
//! while let Some(event) = state.poll_event() {
//!     println!("{event:?}");
//! }
//! println!("{:?}", state.choice(source));
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod lookup;
mod order;
mod state;

pub use lookup::{
    AMTRELAY, Answer, Discovery, DnsConfig, INCOMPLETE_TTL, LookupError, Negative, RateLimit, SrvAnswer, SrvRecord,
    parse_nameserver, reverse_name, service_name, to_name,
};
pub use order::{Candidate, Plan, RelayOrder, RelayRecord, plan};
pub use state::{
    CandidateStatus, Chosen, DiscoveryConfig, DiscoveryState, Event, HeldDownStatus, Phase, SourceStatus, Status,
};

/// hickory's domain name type, as used in [`Answer`] and [`RelayRecord`].
pub use hickory_proto::rr::Name;
