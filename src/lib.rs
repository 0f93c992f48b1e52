//! meshgate: Kuma's built-in gateway (MeshGateway, MeshHTTPRoute, MeshTCPRoute) on Pingora.
//!
//! The pipeline, one module per stage; data flows one way:
//! policy files → [`resources`] (Kuma resources as written) → [`validate`] (Kuma's rules,
//! lowering into [`model`] values) → [`compile`] → [`snapshot`] (immutable lookup structures)
//! → `ArcSwap<Snapshot>` read by
//! [`proxy`] on every request/connection. [`runtime`] runs beside the request path: it
//! rebuilds and publishes snapshots, binds the ports they ask for, and owns the state that
//! outlives a snapshot; [`admin`] exposes it (endpoints, metrics, access log).

pub mod admin;
pub mod build_info;
pub mod compile;
pub mod config;
pub mod logging;
pub mod memory;
pub mod model;
pub mod proxy;
pub mod resources;
pub mod runtime;
pub mod snapshot;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod validate;
pub mod violation;
