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

/// Unit tests' loopback connection: the accepted side as the stream Pingora would be given,
/// and the client side.
#[cfg(test)]
pub(crate) async fn accepted_stream_pair() -> (pingora::protocols::Stream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = tokio::net::TcpStream::connect(listener.local_addr().expect("address"))
        .await
        .expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (
        Box::new(pingora::protocols::l4::stream::Stream::from(server)),
        client,
    )
}
