pub mod addresses;
pub mod allocation;
pub mod election;
pub mod selector;
