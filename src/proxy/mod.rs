//! The data path: Pingora hooks for HTTP(S) ([`http`]) over the connections [`conn`] sets
//! up, and the L4 proxy for TCP/TLS routes ([`tcp`], [`tls`]). They only look up the current
//! snapshot, apply its compiled decisions and record what happened; nothing here parses
//! configuration, and HTTP framing is Pingora's alone.

pub mod conn;
pub mod h2;
pub mod http;
pub mod mirror;
pub mod parked;
pub mod tcp;
pub mod tls;
