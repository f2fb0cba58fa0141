//! kubectl-herald: Herald's decisions shown from what the API server holds, and MetalLB's
//! configuration moved over.

pub mod metallb;
pub mod migrate;
