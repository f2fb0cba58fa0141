//! The speaker's link layer: interfaces, raw sockets, the per-interface responder, and which
//! interfaces share a segment.

pub mod interfaces;
pub mod priority;
pub mod responder;
pub mod segments;
mod sockets;
