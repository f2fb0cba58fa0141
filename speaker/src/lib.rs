//! herald-speaker: elects the node that answers for each address and answers ARP and NDP.

pub mod announce;
pub mod bgp;
pub mod frr;
pub mod gossip_auth;
pub mod heartbeat;
pub mod link;
pub mod membership;
pub mod metrics;
pub mod packet;
pub mod runtime;
pub mod world;
