//! The bare Pingora proxy behind the two benchmark yardsticks of scripts/bench.sh:
//! `bare_pingora` (Pingora's defaults, "the framework's own cost") and `bare_pingora_tuned`
//! (the same proxy with meshgate's allocator and release profile; the bench gives it
//! meshgate's server settings).
//!
//! Every request goes to one fixed upstream over plain HTTP/1.1. There is no routing on
//! purpose, and no tuning beyond what the example's own file sets: server settings are
//! Pingora's defaults (1 worker thread, work stealing on, keep-alive pool of 128) unless
//! `-c FILE` says otherwise.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;

/// Environment fallback for `--upstream`, handy under process supervisors.
const UPSTREAM_ENV: &str = "BARE_PINGORA_UPSTREAM";

#[derive(Parser)]
#[command(about = "Bare Pingora proxy with one fixed upstream (benchmark yardstick)")]
struct Args {
    /// Address to accept HTTP/1.1 clients on.
    #[arg(long, default_value = "127.0.0.1:6190")]
    listen: SocketAddr,
    /// The upstream every request is sent to, as IP:PORT (no DNS: Pingora resolves
    /// peer names with a blocking call). Defaults to $BARE_PINGORA_UPSTREAM.
    #[arg(long)]
    upstream: Option<SocketAddr>,
    #[command(flatten)]
    pingora: Opt,
}

struct BareProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        // A fresh peer per request is what a typical ProxyHttp does; the pool reuses
        // connections by the peer's hash, not by object identity.
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn upstream_from(args: &Args) -> std::result::Result<SocketAddr, String> {
    if let Some(addr) = args.upstream {
        return Ok(addr);
    }
    let value = std::env::var(UPSTREAM_ENV)
        .map_err(|_| format!("no upstream: pass --upstream IP:PORT or set {UPSTREAM_ENV}"))?;
    value
        .parse()
        .map_err(|e| format!("{UPSTREAM_ENV}={value:?}: not an IP:PORT ({e})"))
}

/// Runs the proxy; `name` prefixes error messages.
pub fn run(name: &str) -> ExitCode {
    env_logger::init();
    let args = Args::parse();
    let upstream = match upstream_from(&args) {
        Ok(addr) => addr,
        Err(msg) => {
            eprintln!("{name}: {msg}");
            return ExitCode::from(2);
        }
    };
    let mut server = match Server::new(Some(args.pingora)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, BareProxy { upstream });
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    server.run_forever()
}
