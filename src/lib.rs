//! meshgate: Kuma's built-in gateway (MeshGateway, MeshHTTPRoute, MeshTCPRoute) on Pingora.
//!
//! The pipeline, one module per stage:
//! policy files → [`resources`] (typed Kuma resources) → [`validate`] (Kuma's rules) →
//! [`snapshot`] (compiled, immutable lookup structures) → `ArcSwap<Snapshot>` read by
//! [`proxy`] on every request/connection; [`reload`] builds and swaps the next snapshot,
//! [`listeners`] binds the ports a snapshot asks for, [`admin`] and [`metrics`] expose state.

pub mod access_log;
pub mod admin;
pub mod drain;
pub mod listeners;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod resources;
pub mod settings;
pub mod snapshot;
pub mod state;
pub mod validate;
pub mod violation;
