pub mod addresses;
pub mod allocation;
pub mod selector;
