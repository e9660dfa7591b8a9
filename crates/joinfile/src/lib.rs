//! The joinfile: how pimwatch, cbacc and driad-ingest hand the set of joined (S,G)s to each other.
//!
//! The format is the original platform's, kept for compatibility: one `SOURCE,GROUP` per line
//! (optionally `SOURCE,GROUP,POPULATION` for cbacc's input), `#` full-line comments and blank
//! lines allowed, IPv4 or IPv6. What changes is how it is handled:
//!
//! * **Writers** ([`Writer`]) replace the file atomically (temporary file in the same directory,
//!   `fsync`, `rename`, `fsync` of the directory) and only when the content changes, so a reader
//!   never sees an empty or half-written file.
//! * **Readers** ([`read`], [`Watcher`]) log and skip malformed lines but keep the valid ones; a
//!   file that is not a regular file, is larger than a limit, or holds nothing but garbage is
//!   rejected as a whole so the state a daemon already holds is never lost to bad input.
//! * **Watching** uses inotify on the directory, matches the exact file name, reacts to
//!   completed writes and renames only, and re-reads periodically as a safety net.

mod parse;
mod watch;
mod write;

pub use mcast_wire::{SourceGroup, SourceGroupError};
pub use parse::{Joinfile, LineProblem, MAX_PROBLEMS, ParseOptions, format, parse};
pub use watch::{Watcher, WatcherOptions};
pub use write::{Writer, write_atomic};

use std::io;
use std::path::Path;

/// Refuse to read joinfiles larger than this by default: 10,000 IPv6 (S,G)s with populations fit
/// in under 1 MiB, so anything much larger is not a joinfile.
pub const DEFAULT_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Why a joinfile as a whole could not be used. Individual bad lines are not errors: they are
/// reported in [`Joinfile::problems`] and skipped.
#[derive(Debug)]
pub enum ReadError {
    /// The file does not exist (yet).
    Missing,
    /// The path exists but is not a regular file (a directory, a socket...).
    NotAFile,
    /// The file is larger than the configured limit.
    TooLarge { size: u64, limit: u64 },
    /// The file is not empty but has no valid line at all: not a joinfile.
    NoValidEntries {
        /// The first [`MAX_PROBLEMS`] malformed lines.
        problems: Vec<LineProblem>,
        /// How many more there were.
        more: usize,
    },
    /// Any other I/O error.
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Missing => f.write_str("file does not exist"),
            ReadError::NotAFile => f.write_str("not a regular file"),
            ReadError::TooLarge { size, limit } => {
                write!(f, "file is {size} bytes, larger than the {limit}-byte limit")
            }
            ReadError::NoValidEntries { problems, more } => {
                write!(f, "no valid line, {} malformed", problems.len() + more)?;
                if let Some(first) = problems.first() {
                    write!(f, " (first: {first})")?;
                }
                Ok(())
            }
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Reads and parses a joinfile. See [`ReadError`] for when the whole file is rejected.
pub fn read(path: &Path, options: &ParseOptions, max_bytes: u64) -> Result<Joinfile, ReadError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) if e.raw_os_error() == Some(libc_eisdir()) => return Err(ReadError::NotAFile),
        Err(e) => return Err(ReadError::Io(e)),
    };
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    if meta.len() > max_bytes {
        return Err(ReadError::TooLarge { size: meta.len(), limit: max_bytes });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` guards against a file that grows between metadata() and read().
    file.take(max_bytes + 1).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadError::TooLarge { size: bytes.len() as u64, limit: max_bytes });
    }
    let text = String::from_utf8_lossy(&bytes);
    let parsed = parse(&text, options);
    if parsed.entries.is_empty() && !parsed.problems.is_empty() {
        return Err(ReadError::NoValidEntries { problems: parsed.problems, more: parsed.more_problems });
    }
    Ok(parsed)
}

/// EISDIR: opening a directory for reading succeeds on Linux, but keep the check in case a
/// platform reports it at open time.
const fn libc_eisdir() -> i32 {
    21
}
