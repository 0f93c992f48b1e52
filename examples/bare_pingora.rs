//! A bare Pingora proxy with Pingora's default settings: the "framework's own cost"
//! yardstick of scripts/bench.sh. meshgate's numbers are reported as a ratio to this process.
//!
//! No tuning on purpose: the system allocator, Pingora's default server settings (1 worker
//! thread, work stealing on, keep-alive pool of 128) unless `-c FILE` says otherwise, and
//! Cargo's default release settings (profile `yardstick` in Cargo.toml: no LTO), i.e. the
//! framework as a user builds it.
//!
//! ```text
//! cargo build --profile yardstick --example bare_pingora
//! target/yardstick/examples/bare_pingora --listen 127.0.0.1:6190 --upstream 127.0.0.1:8000
//! BARE_PINGORA_UPSTREAM=127.0.0.1:8000 target/yardstick/examples/bare_pingora
//! ```

use std::process::ExitCode;

#[path = "support/bare_proxy.rs"]
mod bare_proxy;

fn main() -> ExitCode {
    bare_proxy::run("bare_pingora")
}
