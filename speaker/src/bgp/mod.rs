//! BGP mode: what this node tells its routers, as FRR configuration, and what it says back
//! about its sessions.
//!
//! [`objects`] reads the cluster's BGP objects; [`herald_core::bgp::decide`] says what each
//! node advertises to which peer; [`render::render`] turns one node's share into a complete
//! `frr.conf`, which the speaker applies with FRR's own reload tool; [`sessions`] says what
//! this node's `BGPSessionState` objects should show, from FRR's sessions read when [`reads`]
//! says; [`runner`] performs all that beside the speaker's loop.

pub mod objects;
pub mod reads;
pub mod render;
pub mod runner;
pub mod sessions;
