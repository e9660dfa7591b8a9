//! Traffic tools: a paced, sequenced multicast sender and an SSM receiver that measures loss,
//! duplicates, reordering, first-packet delay and one-way latency.

pub mod payload;
pub mod recv;
pub mod send;
pub mod sockopt;
pub mod stats;
