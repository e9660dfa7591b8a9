//! Test helpers shared by the multicast-ingest crates. Not part of any daemon.

pub mod netns;
pub mod tshark;
