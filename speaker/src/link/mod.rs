//! The speaker's link layer: interfaces, raw sockets, and the per-interface responder.

pub mod interfaces;
pub mod priority;
pub mod responder;
mod sockets;
