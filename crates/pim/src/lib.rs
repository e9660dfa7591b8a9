//! A sans-IO PIM-SM engine for the SSM subset of RFC 7761, in the upstream-neighbour role.
//!
//! pimwatch faces the operator network: the downstream router (FRR pimd in the lab) sends
//! `Join(S,G)` / `Prune(S,G)` with Upstream Neighbor Address = us. This crate is the protocol
//! engine only, in the style of quinn-proto: no sockets, no clocks, no tasks. Time is passed in
//! as `now: Instant` on every call; packets go in as bytes; packets to send, the next timer
//! deadline and events come out.
//!
//! What it does:
//!
//! * Hellos (RFC 7761 §4.3.1): a random Generation ID per interface start; the first Hello
//!   after rand(0, Triggered_Hello_Delay), then every Hello_Period (jittered down by up to
//!   10 %); a triggered Hello to a new neighbour or one with a new GenID; Holdtime 105 s, DR
//!   Priority, LAN Prune Delay and Address List options; goodbye Hellos (Holdtime 0) when an
//!   interface goes away, its primary address changes, or on shutdown.
//! * The neighbour table (§4.3.1–§4.3.3): liveness timers (Holdtime 0 = goodbye, 0xffff =
//!   never expires), GenID tracking, DR election (for status), Effective Propagation Delay and
//!   Override Interval, hence J/P_Override_Interval(I).
//! * Downstream (S,G) state per interface (§4.5.2): NoInfo / Join / Prune-Pending with the
//!   Expiry and Prune-Pending Timers and PruneEchoes; Join/Prune accepted only from a neighbour,
//!   only when addressed to us, only with a valid checksum; (*,G) and (S,G,rpt) entries and
//!   groups outside the SSM ranges ignored entry by entry (§4.8).
//! * The union over interfaces ([`Engine::joined`], `Joined` / `Left` events) for the joinfile,
//!   and the per-interface outgoing lists ([`Engine::oifs`], `InterfaceJoin` / `InterfacePrune`)
//!   for the kernel MFC.
//! * Restart without loss ([`Engine::restore`]).
//!
//! # Driver loop
//!
//! ```
//! use std::time::{Duration, Instant};
//! use mcast_pim::{Config, Engine, InterfaceId};
//!
//! let mut engine = Engine::new(Config::default(), 0x5eed).unwrap(); // seed from the OS in real use
//! let now = Instant::now(); // the driver's clock; the engine never reads one
//! let ing0 = InterfaceId::v4(3);
//! engine.add_interface(ing0, "ing0", "10.9.1.2".parse().unwrap(), vec![], now).unwrap();
//! // loop {
//! //     wait for a packet (→ engine.handle_packet) or engine.poll_timeout() (→ engine.handle_timeout)
//! engine.handle_timeout(now + Duration::from_millis(100));
//! while let Some(tx) = engine.poll_transmit() {
//!     // send tx.payload, IP protocol 103, TTL 1, to tx.dst on tx.interface
//!     assert_eq!(tx.dst.to_string(), "224.0.0.13");
//! }
//! while let Some(event) = engine.poll_event() {
//!     // update the MFC / joinfile, log
//! #   let _ = event;
//! }
//! assert!(engine.poll_timeout().is_some());
//! // }
//! ```
//!
//! Checksums: IPv4 PIM checksums are computed and verified here. For IPv6 the driver sets
//! `IPV6_CHECKSUM` = 2 on the raw socket, so the kernel fills in outgoing checksums (the engine
//! leaves them zero) and drops incoming packets whose checksum fails (the engine does not
//! check them).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod config;
mod counters;
mod engine;
mod event;
mod range;
mod status;
mod types;

pub use config::{Config, ConfigError, MAX_SENT_HOLDTIME_SECS};
pub use counters::{Counters, DropReason, PimType};
pub use engine::{
    DEFAULT_HELLO_HOLDTIME, Engine, InterfaceError, MAX_SECONDARY_ADDRESSES, PROPAGATION_DELAY_DEFAULT,
    T_OVERRIDE_DEFAULT,
};
pub use event::{Event, NeighborDownReason, PruneReason, Transmit};
pub use range::{GroupRange, ParseGroupRangeError};
pub use status::{
    DownstreamInfo, DownstreamState, InterfaceStatus, LanPruneDelayStatus, NeighborStatus, SgStatus, Status,
};
pub use types::{Family, InterfaceId, SourceGroup, sg_family};
