//! The bare Pingora proxy of `bare_pingora` with meshgate's allocator (mimalloc 2.x without
//! transparent huge pages, the same crate features as the gateway), built with meshgate's
//! release profile (fat LTO). scripts/bench.sh starts it with meshgate's Pingora settings
//! (`-c`: 1 thread, `work_stealing: false`), so it shows how far settings alone take Pingora
//! with no routing at all: the ceiling for what meshgate, which adds Kuma's per-request work,
//! can reach against the default `bare_pingora`.
//!
//! ```text
//! cargo build --release --example bare_pingora_tuned
//! target/release/examples/bare_pingora_tuned -c pingora.yaml --listen 127.0.0.1:6191 --upstream 127.0.0.1:8000
//! ```

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/bare_proxy.rs"]
mod bare_proxy;

fn main() -> ExitCode {
    bare_proxy::run("bare_pingora_tuned")
}
