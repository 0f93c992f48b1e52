//! The least an HTTP/1.1 keep-alive proxy on tokio can do per request: the floor under any
//! tokio-based gateway, meshgate and Pingora included (scripts/bench/load_points.sh,
//! `FLOOR=1`).
//!
//! One current-thread runtime, meshgate's allocator and release profile. Each client
//! connection gets its own upstream connection, opened with its first request and kept for
//! its life (no pool to look up). A request head is found with `httparse` and its bytes are
//! sent upstream untouched; the response head is found the same way and the head and its
//! `Content-Length` body go back untouched. Nothing is rewritten, routed, timed or logged.
//!
//! It is a yardstick, not a proxy: it refuses requests with a body and responses without
//! `Content-Length`, closing the connection. Its figure against nginx in the same run says how
//! much of a proxy's per-request CPU the runtime itself costs, so how much is left to win above
//! it.
//!
//! ```text
//! cargo build --release --example tokio_floor
//! target/release/examples/tokio_floor --listen 127.0.0.1:6192 --upstream 127.0.0.1:8000
//! ```

use std::io::{Error, ErrorKind, Result};
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::{Buf, BytesMut};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Heads beyond this many fields are refused (the bench sends a handful).
const MAX_FIELDS: usize = 32;
/// The read buffer of each side, as large as Pingora's first read of a request head.
const BUF_SIZE: usize = 4096;

#[derive(Parser)]
#[command(about = "The least a tokio HTTP/1.1 keep-alive proxy can do (benchmark floor)")]
struct Args {
    /// Address to accept HTTP/1.1 clients on.
    #[arg(long, default_value = "127.0.0.1:6192")]
    listen: SocketAddr,
    /// The upstream every request is sent to, as IP:PORT.
    #[arg(long)]
    upstream: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio_floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_floor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = args.upstream;
        tokio::spawn(async move {
            // A connection ends on the first error or refusal; the yardstick has no one to
            // tell.
            let _ = proxy_connection(client, upstream).await;
        });
    }
}

/// What the yardstick does not proxy: the connection is closed.
fn unsupported() -> Error {
    Error::from(ErrorKind::Unsupported)
}

async fn proxy_connection(mut client: TcpStream, upstream: SocketAddr) -> Result<()> {
    client.set_nodelay(true)?;
    let mut upstream_conn: Option<TcpStream> = None;
    let mut from_client = BytesMut::with_capacity(BUF_SIZE);
    let mut from_upstream = BytesMut::with_capacity(BUF_SIZE);
    loop {
        let head_len = loop {
            if let Some(len) = request_head_len(&from_client)? {
                break len;
            }
            if client.read_buf(&mut from_client).await? == 0 {
                return Ok(());
            }
        };
        let conn = match upstream_conn.as_mut() {
            Some(conn) => conn,
            None => {
                let conn = TcpStream::connect(upstream).await?;
                conn.set_nodelay(true)?;
                upstream_conn.insert(conn)
            }
        };
        conn.write_all(&from_client[..head_len]).await?;
        from_client.advance(head_len);

        let response_len = loop {
            if let Some(len) = response_len(&from_upstream)? {
                break len;
            }
            if conn.read_buf(&mut from_upstream).await? == 0 {
                return Err(Error::from(ErrorKind::UnexpectedEof));
            }
        };
        while from_upstream.len() < response_len {
            if conn.read_buf(&mut from_upstream).await? == 0 {
                return Err(Error::from(ErrorKind::UnexpectedEof));
            }
        }
        client.write_all(&from_upstream[..response_len]).await?;
        from_upstream.advance(response_len);
    }
}

/// The length of a complete request head at the start of `buf`, `None` if more is needed.
fn request_head_len(buf: &[u8]) -> Result<Option<usize>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let has_body = request.headers.iter().any(|field| {
                field.name.eq_ignore_ascii_case("transfer-encoding")
                    || (field.name.eq_ignore_ascii_case("content-length") && field.value != b"0")
            });
            if has_body {
                return Err(unsupported());
            }
            Ok(Some(len))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(unsupported()),
    }
}

/// The length of a complete response (head and `Content-Length` body) starting `buf`, once
/// its head is there; `None` if the head is not complete yet.
fn response_len(buf: &[u8]) -> Result<Option<usize>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let body_len = response
                .headers
                .iter()
                .find(|field| field.name.eq_ignore_ascii_case("content-length"))
                .and_then(|field| std::str::from_utf8(field.value).ok())
                .and_then(|value| value.trim().parse::<usize>().ok())
                .ok_or_else(unsupported)?;
            Ok(Some(head_len + body_len))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(unsupported()),
    }
}
