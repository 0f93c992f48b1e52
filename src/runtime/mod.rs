//! Everything that runs beside the request path and outlives a snapshot: the shared state
//! ([`state`]), the build-and-swap loop ([`reload`], [`publish`]), the listeners that follow
//! the snapshot's ports ([`listeners`]), the draining flag ([`drain`]) and the state that outlives snapshots ([`registry`]).
//!
//! Run-time state that must survive a snapshot swap (endpoint health, ejections, rate-limit
//! buckets) lives here too, keyed by stable identity; a snapshot may point at it, never the
//! other way round.

pub mod drain;
pub mod etcd;
pub mod health;
pub mod listeners;
pub mod log_sinks;
pub mod otel_logs;
pub mod otlp;
pub mod publish;
pub mod registry;
pub mod reload;
pub mod shared_limits;
pub mod state;
pub mod tracing;
