//! mcast-lab: the multicast-ingest virtual lab.
//!
//! * [`topology`]: the declarative topology (lab/topology.toml) and its validation.
//! * [`netns`], [`process`], [`frr`], [`lab`]: building a run (namespaces, links, FRR,
//!   services) and tearing it down; [`state`] and [`down`]: crash-proof bookkeeping.
//! * [`traffic`]: the `send` and `recv` tools; [`pimstub`]: the minimal PIM neighbour;
//!   [`pim6router`]: the scripted PIM6/MLDv2 access router (FRR here has no pim6d);
//!   [`dns`]: the lab's DNS server; [`dorms`]: the lab's DORMS server; [`flood`]: hostile
//!   input; [`watchfile`]: a joinfile watcher that proves it is never empty or half-written.
//! * [`scenario`], [`runner`], [`capture`]: scenario files and the runner.
//! * [`up`], [`cli`]: the commands for people; [`bench`]: benchmarks in the lab.

pub mod bench;
pub mod capture;
pub mod cli;
pub mod dns;
pub mod dorms;
pub mod down;
pub mod flood;
pub mod frr;
pub mod httpget;
pub mod lab;
pub mod netns;
pub mod pim6router;
pub mod pimstub;
pub mod process;
pub mod runner;
pub mod scenario;
pub mod signals;
pub mod state;
pub mod topology;
pub mod traffic;
pub mod up;
pub mod util;
pub mod watchfile;
