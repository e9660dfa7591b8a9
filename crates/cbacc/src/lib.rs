//! cbacc: bandwidth admission for the ingest device.
//!
//! cbacc reads the joined (S,G)s (pimwatch's joinfile, optionally with a population column),
//! looks up each flow's advertised maximum bitrate through DORMS (draft-ietf-mboned-dorms:
//! SRV `_dorms._tcp.<reverse name of S>`, host-meta, RESTCONF) with the CBACC leaves
//! (draft-ietf-mboned-cbacc), and writes the flows that fit under a bandwidth cap to its own
//! joinfile, which driad-ingest reads.
//!
//! * [`rate`]: rates with explicit units (`50Mbit/s`, `800kbit/s`; plain numbers refused).
//! * [`admission`]: the pure admission decision (ordering, cap, hold-down).
//! * [`cache`]: the pure metadata cache and lookup schedule (refresh, backoff, pending).
//! * [`metadata`]: DORMS documents (host-meta, path layouts, CBACC leaves).
//! * [`srv`]: RFC 2782 target ordering.
//! * [`dorms`]: the DORMS client (hickory for DNS, reqwest with rustls for HTTPS).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admission;
pub mod cache;
pub mod dorms;
pub mod metadata;
pub mod rate;
pub mod srv;

pub use mcast_wire::SourceGroup;
pub use rate::Rate;
