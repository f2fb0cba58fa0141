pub mod addresses;
pub mod allocation;
pub mod bgp;
pub mod election;
pub mod fencing;
pub mod lease;
pub mod selector;
pub mod text;
