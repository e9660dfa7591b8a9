//! mcast-labdns: a small authoritative DNS server for the lab and for tests, on hickory-server.
//!
//! * [`Zone`]: zone files (RFC 1035 master format) that may hold AMTRELAY records in
//!   presentation form (`IN AMTRELAY 10 0 1 203.0.113.15`) or the RFC 3597 generic form
//!   (`IN TYPE260 \# 6 0a01cb00710f`), DNAME records, and everything hickory's own zone parser
//!   knows (SOA, NS, A, AAAA, CNAME, PTR, SRV, TXT, ...).
//! * [`LabDns`]: serves the zones of some files and directories on UDP and TCP, authoritative:
//!   NXDOMAIN and NODATA carry the zone's SOA (RFC 2308 negative caching); CNAMEs inside a zone
//!   are chased, a CNAME into another zone is left to the resolver; DNAME (RFC 6672) answers
//!   carry the synthesised CNAME. Zone files are re-read when they change (polled) and on
//!   SIGHUP ([`LabDns::serve_until`]); a file that no longer parses keeps its previous version
//!   in service. [`Mode`] makes it drop, SERVFAIL or REFUSE queries for failure tests, and
//!   [`LabDns::queries`] tells what it was asked and when.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod server;
mod zone;

pub use server::{LabDns, Mode, Options, QueryRecord, ReloadReport, StartError};
pub use zone::{Zone, ZoneError, ZoneWarning};
