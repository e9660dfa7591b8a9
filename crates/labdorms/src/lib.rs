//! mcast-labdorms: a small DORMS server (draft-ietf-mboned-dorms) with CBACC metadata
//! (draft-ietf-mboned-cbacc) for the lab and for tests, over HTTPS.
//!
//! * [`LabCa`]: a throwaway certificate authority made with rcgen when the lab starts (no key
//!   material in the repository), and the server certificates it issues
//!   (`dorms.example.net` in the lab, `localhost`/`127.0.0.1` in tests). Clients trust it with
//!   its `ca.pem` (`cbacc --ca-file`).
//! * [`Flows`]: the flows the server knows, from a TOML or JSON file that is re-read when it
//!   changes, so a scenario changes a bitrate by rewriting the file. Each flow may pick the
//!   path layouts and leaf names it is served under, numbers as JSON strings, and a fault mode
//!   ([`Fault`]: 404, 500, slow, malformed JSON, huge body, wrong content type, no CBACC data).
//! * [`LabDorms`]: the server (hyper + tokio-rustls, HTTP/1.1): `/.well-known/host-meta` (XRD)
//!   and `/.well-known/host-meta.json` with the `restconf` link, the RESTCONF metadata of the
//!   current layout (`{root}/data/ietf-dorms:dorms/metadata/sender=S/group=G`) and of the older
//!   ones (`{root}/data/ietf-dorms:metadata/sender=S/group=G[/ietf-cbacc:cbacc]`), keys
//!   percent-encoded or not, and a request log for tests.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod ca;
mod flows;
mod server;

pub use ca::{CaError, LabCa, ServerIdentity};
pub use flows::{Fault, Flow, Flows, FlowsError, HostMeta, Layout};
pub use server::{LabDorms, Options, RequestRecord, StartError};
