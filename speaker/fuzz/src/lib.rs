//! The speaker's packet module, compiled on its own. Depending on herald-speaker would build
//! kube, k8s-openapi and tokio with sanitizer instrumentation for code that needs only `std`
//! and `pnet_packet`, and would tie the fuzz build to the rest of the speaker compiling.

#[path = "../../src/packet/mod.rs"]
pub mod packet;
