//! The test payload: a 32-byte header at the start of every datagram, padded to the size
//! asked for.
//!
//! ```text
//!  0      4    5      6       8               16              24              32
//!  +------+----+------+-------+---------------+---------------+---------------+---
//!  | MLAB | v1 | flags| rsvd  | session (u64) | sequence (u64)| sent ns (u64) | padding
//!  +------+----+------+-------+---------------+---------------+---------------+---
//! ```
//!
//! All integers are big-endian. `session` is random per sender run, so a receiver can tell a
//! restarted sender (sequence back at 0) from reordering. `sent ns` is CLOCK_REALTIME in
//! nanoseconds: every namespace of a host shares that clock, so receiver-side one-way delay is
//! exact to the clock's resolution.

/// The first four bytes of every lab datagram.
pub const MAGIC: [u8; 4] = *b"MLAB";
/// Version of the header layout.
pub const VERSION: u8 = 1;
/// Bytes of the header; the smallest allowed `--size`.
pub const HEADER_LEN: usize = 32;

/// The decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub session: u64,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header into the start of `buf` (which must hold [`HEADER_LEN`] bytes).
    pub fn write(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&MAGIC);
        buf[4] = VERSION;
        buf[5] = 0;
        buf[6..8].copy_from_slice(&[0, 0]);
        buf[8..16].copy_from_slice(&self.session.to_be_bytes());
        buf[16..24].copy_from_slice(&self.seq.to_be_bytes());
        buf[24..32].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Parses a datagram; `None` if it is not a lab datagram.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        if buf.len() < HEADER_LEN || buf[0..4] != MAGIC || buf[4] != VERSION {
            return None;
        }
        let u = |r: std::ops::Range<usize>| u64::from_be_bytes(buf[r].try_into().unwrap_or([0; 8]));
        Some(Header { session: u(8..16), seq: u(16..24), sent_ns: u(24..32) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let h = Header { session: 0x0102_0304_0506_0708, seq: 42, sent_ns: 1_700_000_000_123_456_789 };
        let mut buf = vec![0u8; 100];
        h.write(&mut buf);
        assert_eq!(&buf[0..5], b"MLAB\x01");
        assert_eq!(Header::parse(&buf), Some(h));
        assert_eq!(Header::parse(&buf[..31]), None);
        buf[0] = b'X';
        assert_eq!(Header::parse(&buf), None);
    }
}
