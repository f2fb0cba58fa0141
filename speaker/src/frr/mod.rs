//! Drives FRR (`bgpd`, `bfdd` and `zebra`), the routing engine that holds the BGP sessions:
//! applies complete `frr.conf` texts with FRR's own `frr-reload.py` and reads session and
//! route state back from `vtysh ... json`.
//!
//! The decisions are pure: [`Reloads`] (when to reload) and [`state`] (what FRR's JSON says, and
//! what to do about a session that is down); [`Frr`] runs FRR's tools and [`run`] performs the
//! reloads.

mod control;
mod driver;
mod reloads;
pub mod state;

pub use control::{AddressFamily, Frr, FrrError, Paths, Session};
pub use driver::{ReloadStatus, run};
pub use reloads::{Outcome, Reloads, Timings};
