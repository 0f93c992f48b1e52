//! HTTP/2 towards clients, as Kuma sets up its gateway's listeners (Envoy's
//! `http2_protocol_options` in Kuma's gateway listener generator): plain-text HTTP/2 with
//! prior knowledge on HTTP listeners (h2c, see [`super::conn`]), ALPN `h2` on HTTPS ones.
//!
//! Settings: at most 100 concurrent streams per connection, a 64 KiB initial stream window
//! and a 1 MiB connection window. The framing limits against the known HTTP/2 attacks (rapid
//! reset, CONTINUATION floods, SETTINGS and PING floods) are the `h2` crate's.
//!
//! Request header lists: up to 64 KiB (as the HTTP/1 head; Envoy's default is 60 KiB), and a
//! larger one is answered 431 on its own stream (`crate::proxy::http::checks`), the
//! connection's other streams going on. `h2` enforces its own `max_header_list_size`
//! differently: a header block whose *encoded* size passes it ends the whole connection
//! with GOAWAY (it cannot skip the bytes without desynchronising HPACK). So `h2`'s limit is
//! set 4× higher, as the abuse cut-off: 64 KiB–256 KiB gets a 431, beyond that GOAWAY
//! (counted in `meshgate_http2_connections_cut_total`).

use pingora::apps::HttpServerOptions;
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};

/// Kuma's `max_concurrent_streams`.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Kuma's `initial_stream_window_size`.
pub const INITIAL_STREAM_WINDOW: u32 = 64 * 1024;
/// Kuma's `initial_connection_window_size`.
pub const INITIAL_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Header blocks beyond this end the connection (see the module's comment); the 431 limit is
/// [`crate::proxy::conn::MAX_HEAD_BYTES`].
pub const HEADER_BLOCK_CUTOFF: u32 = 4 * crate::proxy::conn::MAX_HEAD_BYTES as u32;

/// The options of meshgate's HTTP server: h2c on plain-text connections; an HTTP/2
/// connection without streams is closed after `idle` (the listeners' default idle timeout,
/// `--idle-timeout`).
pub fn server_options(idle: std::time::Duration) -> HttpServerOptions {
    let mut o = HttpServerOptions::default();
    o.h2c = true;
    o.h2_idle_timeout = Some(idle);
    o
}

/// The HTTP/2 settings meshgate's listeners announce.
pub fn h2_options() -> H2Options {
    let mut o = default_h2_options();
    o.max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_window_size(INITIAL_STREAM_WINDOW)
        .initial_connection_window_size(INITIAL_CONNECTION_WINDOW)
        .max_header_list_size(HEADER_BLOCK_CUTOFF);
    o
}
