//! The speaker's link layer: interfaces, raw sockets, and the per-interface responder.

pub mod interfaces;
pub mod responder;
mod sockets;
