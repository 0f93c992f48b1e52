//! meshgate's integration tests, one test binary. Each module is one subject; most start a
//! real meshgate process with real backends and clients (`support`), some ask the compiled
//! snapshot in process (`routing`, `policies`, `properties`).
//!
//! One binary instead of one per file: a debug link of meshgate with Pingora costs seconds,
//! and the test harness runs tests in parallel only within a binary. The tests mostly wait on
//! timers and sockets, so `scripts/test.sh` runs more threads than cores (see there).
//!
//! Run one subject: `cargo test --test integration access_logs::`.

mod support;

mod access_logs;
mod admin_and_check;
mod admin_page;
mod backends;
mod dynamic_listeners;
mod endpoint_health;
mod filters;
mod fleet;
mod hostile;
mod http2;
mod http_routing;
mod observability;
mod policies;
mod policy_traffic;
mod properties;
mod protocols;
mod reload;
mod routing;
mod tcp_routes;
mod timeouts;
mod tls_listeners;
mod tracing;
