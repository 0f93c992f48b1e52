//! The data path: Pingora hooks for HTTP(S) ([`http`]) and the L4 proxy for TCP/TLS routes
//! ([`tcp`]). They only look up the current snapshot, apply its compiled decisions and record
//! what happened; nothing here parses configuration.

pub mod chunked;
pub mod coalesce;
pub mod forwarded;
pub mod guard;
pub mod http;
pub mod local;
pub mod mirror;
pub mod normalize;
pub mod plain_header;
pub mod tcp;
pub mod tls;
