//! What one request carries through the hooks: the snapshot it started with, where it was
//! routed, and what happened to it so far.

use super::attempt::Attempts;
use super::checks::Refusal;
use super::compress::Gzip;
use super::outcome::{Local, ResponseFlag};
use super::slots::Slots;
use super::trace::ActiveSpan;
use crate::proxy::mirror::MirrorBody;
use crate::snapshot::action::Forward;
use crate::snapshot::backends::Backend;
use crate::snapshot::policy::PortPolicy;
use crate::snapshot::retry::RetryPolicy;
use crate::snapshot::route_table::RouteEntry;
use crate::snapshot::{EntryRef, ListenerInfo, Snapshot, VirtualHost};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The request as routed: the virtual host and entry that matched and, when the entry
/// forwards, the chosen backend and endpoint. Built by `request_filter`.
pub struct Routed {
    pub vhost: Arc<VirtualHost>,
    pub entry: EntryRef,
    pub upstream: Option<Upstream>,
}

impl Routed {
    pub fn entry(&self) -> Option<&RouteEntry> {
        self.vhost.entry(self.entry)
    }
}

/// Where a forwarded request goes.
pub struct Upstream {
    pub backend: Arc<Backend>,
    /// Index into `backend.endpoints` of the current attempt.
    pub endpoint: usize,
    /// The request's hash under the backend's hash policies (retries pick with it too).
    pub hash: Option<u64>,
}

/// Per-request state. Holds the snapshot the request started with, so every hook sees one
/// consistent configuration even if a reload happens mid-request.
pub struct RequestCtx {
    pub(super) started: Instant,
    pub(super) snapshot: Option<Arc<Snapshot>>,
    /// The local port the request arrived on.
    pub(super) port: u16,
    pub(super) https: bool,
    /// The listener hostname that took the request, once known.
    pub(super) listener: Option<Arc<ListenerInfo>>,
    pub(super) routed: Option<Routed>,
    /// The normalised path when it differs from what the client sent.
    pub(super) path: Option<String>,
    /// The normalised Host.
    pub(super) host: String,
    /// Set when meshgate answered (or will answer) itself.
    pub(super) local: Option<Local>,
    /// Set when the request was refused before routing.
    pub(super) refused: Option<Refusal>,
    pub(super) flag: ResponseFlag,
    pub(super) mirror: Option<MirrorBody>,
    /// The port's policies (listener timeouts, faults), from the request's snapshot.
    pub(super) port_policy: Option<Arc<PortPolicy>>,
    /// The attempts made to forward the request.
    pub(super) attempt: Attempts,
    /// A gRPC request (MeshRetry's `grpc` section applies to it).
    pub(super) grpc: bool,
    /// Fault injection's response bandwidth, in bits per second.
    pub(super) bandwidth: Option<u64>,
    /// The client's address (source-IP hash policies, generated cookies).
    pub(super) client: Option<SocketAddr>,
    /// A cookie a Cookie hash policy generated, returned with the response.
    pub(super) set_cookie: Option<http::HeaderValue>,
    /// Circuit-breaker slots and the endpoint count this request holds.
    pub(super) slots: Slots,
    /// The response body's compressor, when it is compressed. Boxed, like `span`: most
    /// requests have neither, and inline the two were 464 of the context's 976 bytes, which
    /// Pingora moves into each request's future and copies once more on the way.
    pub(super) gzip: Option<Box<Gzip>>,
    /// The request's MeshTrace span, when it is traced.
    pub(super) span: Option<Box<ActiveSpan>>,
}

impl RequestCtx {
    /// A fresh context for a request on local `port` (over TLS when `https`).
    pub(crate) fn for_connection(port: u16, https: bool) -> Self {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            port,
            https,
            listener: None,
            routed: None,
            path: None,
            host: String::new(),
            local: None,
            refused: None,
            flag: ResponseFlag::None,
            mirror: None,
            port_policy: None,
            attempt: Attempts::default(),
            grpc: false,
            bandwidth: None,
            client: None,
            set_cookie: None,
            slots: Slots::default(),
            gzip: None,
            span: None,
        }
    }

    #[cfg(feature = "testkit")]
    pub(crate) fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = Some(snapshot);
    }

    pub(crate) fn entry(&self) -> Option<&RouteEntry> {
        self.routed.as_ref()?.entry()
    }

    pub(crate) fn upstream(&self) -> Option<&Upstream> {
        self.routed.as_ref()?.upstream.as_ref()
    }

    pub(crate) fn forward(&self) -> Option<&Forward> {
        self.entry()?.action.forward()
    }

    /// The retry policy of this request (MeshRetry's `grpc` section for gRPC requests when
    /// it has one); `None` when no MeshRetry selects its route.
    pub(super) fn retry_policy(&self) -> Option<Arc<RetryPolicy>> {
        let policies = &self.forward()?.policies;
        match (&policies.grpc_retry, self.grpc) {
            (Some(g), true) => Some(g.clone()),
            _ => policies.retry.clone(),
        }
    }

    pub(super) fn route_label(&self) -> &str {
        self.entry().map(|e| &*e.route_name).unwrap_or("")
    }

    pub(super) fn port_label(&self) -> String {
        self.port.to_string()
    }
}
