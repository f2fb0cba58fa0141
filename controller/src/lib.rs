//! herald-controller: hands out addresses from IPAddressPools to LoadBalancer Services.

pub mod gossip_key;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod pool;
pub mod runtime;
pub mod service;
pub mod status;
