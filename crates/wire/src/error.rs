//! The one error type of the wire crate.

use core::fmt;

/// Why a buffer could not be parsed or a packet could not be emitted.
///
/// Parsers never panic: every problem with the input surfaces as one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The buffer is shorter than the fixed header, or than a length field says it should be.
    Truncated,
    /// A length field is inconsistent with the buffer or with another field.
    BadLength,
    /// The checksum does not verify.
    BadChecksum,
    /// The version field holds a value this codec does not speak.
    BadVersion(u8),
    /// A field holds a value the protocol forbids (for example an address family that does not
    /// match the address length). The string names the field.
    Malformed(&'static str),
    /// The output buffer given to `emit` is too small.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::BadLength => f.write_str("inconsistent length field"),
            Error::BadChecksum => f.write_str("bad checksum"),
            Error::BadVersion(v) => write!(f, "unsupported version {v}"),
            Error::Malformed(what) => write!(f, "malformed {what}"),
            Error::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl std::error::Error for Error {}

/// The result type of every parser and emitter in this crate.
pub type Result<T> = core::result::Result<T, Error>;
