//! Wire formats of multicast-ingest: every packet the platform parses or emits.
//!
//! No sockets, no async, no allocation on the data path, and no panics on any input.
//!
//! Each protocol module follows the smoltcp pattern:
//!
//! * `Packet<T: AsRef<[u8]>>` is a zero-copy view of a buffer. `Packet::new_checked` verifies
//!   that the buffer is long enough for every accessor, so accessors never go out of bounds.
//! * `Repr` is a small owned (or borrowing) value with `parse` (from a checked packet) and
//!   `emit` (into a byte buffer), plus `buffer_len` to size that buffer.
//! * Unknown code points (message types, option types, record types) are kept, not rejected,
//!   so a newer peer never makes a parser fail.
//! * Checksums are computed in one place, [`checksum`].
//!
//! | Module | Protocol |
//! |---|---|
//! | [`ipv4`], [`ipv6`], [`udp`] | IP headers (Router Alert, Hop-by-Hop) and UDP with pseudo-header checksums |
//! | [`igmp`] | IGMPv3 queries and reports (RFC 3376), IGMPv1/v2 recognised |
//! | [`mld`] | MLDv2 queries and reports (RFC 3810), MLDv1 recognised |
//! | [`pim`] | PIMv2 header, Hello and Join/Prune (RFC 7761 §4.9) |
//! | [`amt`] | the seven AMT messages (RFC 7450 §5.1) |
//! | [`amtrelay`] | AMTRELAY RDATA, wire and presentation form (RFC 8777 §4) |

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod amt;
pub mod amtrelay;
pub mod checksum;
mod error;
pub mod igmp;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod mld;
pub mod pim;
mod sg;
pub mod udp;

pub use error::{Error, Result};
pub use ip::IpProtocol;
pub use sg::{SourceGroup, SourceGroupError};
