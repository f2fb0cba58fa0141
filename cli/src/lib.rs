//! kubectl-herald: Herald's decisions shown from what the API server holds, and MetalLB's
//! configuration moved over. Each command's module turns objects into views and text; `main`
//! only reads the API and prints.

pub mod metallb;
pub mod migrate;
pub mod pools;
pub mod services;
pub mod status;
pub mod table;
pub mod why;
