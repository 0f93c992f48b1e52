//! A timeout that costs nothing for an operation that completes at once (meshgate's patch,
//! see vendor/README.md).
//!
//! `pingora_timeout::timeout` reads the clock when it is created (to check its timer thread)
//! and registers a timer once the operation pends. A response or request write to a socket
//! with room, the common case, completes on its first poll: polling it once first spares the
//! clock read and the timer bookkeeping (with a write timeout set on both sides, three to four
//! per proxied request).

use pingora_timeout::Elapsed;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

/// Like `pingora_timeout::timeout(duration, operation)`; the time starts when `operation`
/// first pends rather than when it is created.
pub(crate) async fn timeout<F: Future>(
    duration: Duration,
    operation: F,
) -> Result<F::Output, Elapsed> {
    tokio::pin!(operation);
    if let Poll::Ready(out) = futures::poll!(operation.as_mut()) {
        return Ok(out);
    }
    pingora_timeout::timeout(duration, operation).await
}

