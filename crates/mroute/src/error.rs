//! The crate's error type.

use std::io;

use crate::{Family, Vif};

/// Errors from the kernel multicast routing objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `MRT_INIT` / `MRT6_INIT` answered `EADDRINUSE`: only one socket per network namespace
    /// (and per mroute table) may own the kernel's multicast routing.
    #[error(
        "another multicast routing daemon holds {} in this namespace{} (EADDRINUSE); stop it (pimd, pim6d, smcroute, mrouted...) or use another table",
        if *.family == Family::V4 { "MRT_INIT" } else { "MRT6_INIT" },
        match .table { Some(t) => format!(" for mroute table {t}"), None => String::new() }
    )]
    RouterInUse {
        /// Which family's `MRT*_INIT` failed.
        family: Family,
        /// The table asked for with `MRT_TABLE`, if any.
        table: Option<u32>,
    },
    /// A system call failed; `op` says which.
    #[error("{op}: {source}")]
    Os {
        /// What was attempted, for example `"MRT_ADD_VIF vif 3 ifindex 7"`.
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// All `MAXVIFS` / `MAXMIFS` slots are taken.
    #[error("no free {0} VIF: all 32 are in use")]
    NoFreeVif(Family),
    /// A VIF index is not below `MAXVIFS`.
    #[error("{0} is out of range (VIF indexes are 0..32)")]
    VifOutOfRange(Vif),
    /// The VIF slot is already used by this router.
    #[error("{vif} is already in use (ifindex {ifindex})")]
    VifInUse {
        /// The slot.
        vif: Vif,
        /// The interface that holds it.
        ifindex: u32,
    },
    /// The VIF was not added by this router.
    #[error("{0} is not a VIF of this router")]
    UnknownVif(Vif),
    /// `struct mif6ctl` stores the interface index in 16 bits.
    #[error("ifindex {0} does not fit the 16-bit mif6c_pifi field of struct mif6ctl")]
    IfindexTooLarge(u32),
    /// An address of the other family was given.
    #[error("{what} is not an {expected} address")]
    FamilyMismatch {
        /// The family this object handles.
        expected: Family,
        /// A description of the offending value.
        what: String,
    },
}

impl Error {
    pub(crate) fn os(op: impl Into<String>, source: io::Error) -> Error {
        Error::Os { op: op.into(), source }
    }

    /// The underlying OS error number, if this is an OS error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            Error::RouterInUse { .. } => Some(libc::EADDRINUSE),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
