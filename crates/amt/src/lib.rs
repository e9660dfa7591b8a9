//! AMT (RFC 7450) for multicast-ingest, sans-IO: the gateway and relay state machines take
//! `now` and datagrams in and hand out datagrams, timers and events. Sockets, TUN devices and
//! clocks live in thin tokio layers elsewhere (crates/amt-gateway, crates/amt-relay).
//!
//! * [`membership`]: the IGMPv3/MLDv2 datagrams AMT encapsulates: General Queries (relay →
//!   gateway) and reports (gateway → relay), built and parsed here for both sides.

pub mod gateway;
pub mod membership;
pub mod relay;
