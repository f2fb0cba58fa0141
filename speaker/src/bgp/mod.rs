//! BGP mode: what this node tells its routers, as FRR configuration.
//!
//! [`herald_core::bgp::decide`] says what each node advertises to which peer;
//! [`render::render`] turns one node's share into a complete `frr.conf`, which the speaker
//! applies with FRR's own reload tool.

pub mod render;
