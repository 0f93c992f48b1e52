//! Kuma resources as typed Rust values.
//!
//! Both shapes Kuma accepts end in the same types:
//! - Universal: `type` / `name` / `mesh` at the top; `MeshGateway` and `Dataplane` keep their
//!   fields flat beside them, newer resources put them under `spec`.
//! - Kubernetes: `apiVersion: kuma.io/v1alpha1`, `kind`, `metadata`, `spec`; the mesh comes from
//!   a top-level `mesh:` or the `kuma.io/mesh` label.
//!
//! The loader (`loader.rs`) turns files into these types; nothing here validates Kuma's rules
//! (that is `crate::validate`), so the types mirror Kuma's schema loosely: enum-like fields stay
//! strings and numbers stay wide so validation can word errors the way Kuma does.

pub mod common;
pub mod dataplane;
pub mod gateway;
pub mod http_route;
pub mod loader;
pub mod policy;
pub mod secret;
pub mod service;
pub mod tcp_route;

use crate::violation::Origin;
use std::collections::BTreeMap;
use std::sync::Arc;

pub use common::{BackendRef, TargetRef};
pub use dataplane::Dataplane;
pub use gateway::MeshGateway;
pub use http_route::MeshHttpRoute;
pub use policy::access_log::MeshAccessLog;
pub use policy::circuit_breaker::MeshCircuitBreaker;
pub use policy::fault::MeshFaultInjection;
pub use policy::health_check::MeshHealthCheck;
pub use policy::load_balancing::MeshLoadBalancingStrategy;
pub use policy::rate_limit::MeshRateLimit;
pub use policy::retry::MeshRetry;
pub use policy::timeout::MeshTimeout;
pub use policy::trace::{MeshOpenTelemetryBackend, MeshTrace};
pub use secret::Secret;
pub use service::{MeshExternalService, MeshService};
pub use tcp_route::MeshTcpRoute;

/// The resource kinds meshgate reads. Kuma kinds it does not apply are
/// [`Kind::NotApplied`] (listed by `--check` with the reason); anything else is skipped
/// with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    MeshGateway,
    MeshHttpRoute,
    MeshTcpRoute,
    Dataplane,
    MeshService,
    MeshExternalService,
    MeshTimeout,
    MeshRetry,
    MeshRateLimit,
    MeshFaultInjection,
    MeshHealthCheck,
    MeshCircuitBreaker,
    MeshLoadBalancingStrategy,
    MeshAccessLog,
    MeshTrace,
    MeshOpenTelemetryBackend,
    Secret,
    /// A Kuma kind meshgate knows and does not apply ([`not_applied`]).
    NotApplied(&'static str),
}

/// Kuma kinds meshgate accepts without applying them, and why. MeshProxyPatch is refused
/// when it selects the gateway (validation).
pub const NOT_APPLIED: &[(&str, &str)] = &[
    (
        "MeshTrafficPermission",
        "Kuma does not apply it to built-in gateways either; the backends' sidecars enforce it",
    ),
    (
        "MeshTLS",
        "mesh mTLS needs Kuma's control plane to issue identities",
    ),
    (
        "MeshPassthrough",
        "Kuma does not apply it to built-in gateways",
    ),
    (
        "MeshMetric",
        "meshgate serves its own metrics on the admin port (/metrics)",
    ),
    (
        "MeshProxyPatch",
        "it patches Envoy configuration; it selects no gateway here",
    ),
    ("Mesh", "mesh settings are Kuma control-plane configuration"),
    ("MeshIdentity", "mesh identities need Kuma's control plane"),
    ("MeshTrust", "mesh identities need Kuma's control plane"),
    ("MeshMultiZoneService", "zones need Kuma's control plane"),
    (
        "HostnameGenerator",
        "meshgate routes by MeshHTTPRoute hostnames only",
    ),
    (
        "TrafficRoute",
        "legacy policy: replaced by MeshHTTPRoute/MeshTCPRoute",
    ),
    (
        "TrafficPermission",
        "legacy policy: replaced by MeshTrafficPermission",
    ),
    ("Retry", "legacy policy: use MeshRetry"),
    ("Timeout", "legacy policy: use MeshTimeout"),
    ("CircuitBreaker", "legacy policy: use MeshCircuitBreaker"),
    ("HealthCheck", "legacy policy: use MeshHealthCheck"),
    ("TrafficLog", "legacy policy: use MeshAccessLog"),
    ("TrafficTrace", "legacy policy: use MeshTrace"),
    ("RateLimit", "legacy policy: use MeshRateLimit"),
    ("FaultInjection", "legacy policy: use MeshFaultInjection"),
    (
        "ProxyTemplate",
        "legacy policy: patches Envoy configuration",
    ),
];

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "MeshGateway" => Kind::MeshGateway,
            "MeshHTTPRoute" => Kind::MeshHttpRoute,
            "MeshTCPRoute" => Kind::MeshTcpRoute,
            "Dataplane" => Kind::Dataplane,
            "MeshService" => Kind::MeshService,
            "MeshExternalService" => Kind::MeshExternalService,
            "MeshTimeout" => Kind::MeshTimeout,
            "MeshRetry" => Kind::MeshRetry,
            "MeshRateLimit" => Kind::MeshRateLimit,
            "MeshFaultInjection" => Kind::MeshFaultInjection,
            "MeshHealthCheck" => Kind::MeshHealthCheck,
            "MeshCircuitBreaker" => Kind::MeshCircuitBreaker,
            "MeshLoadBalancingStrategy" => Kind::MeshLoadBalancingStrategy,
            "MeshAccessLog" => Kind::MeshAccessLog,
            "MeshTrace" => Kind::MeshTrace,
            "MeshOpenTelemetryBackend" => Kind::MeshOpenTelemetryBackend,
            "Secret" => Kind::Secret,
            other => {
                let (kind, _) = NOT_APPLIED.iter().find(|(k, _)| *k == other)?;
                Kind::NotApplied(kind)
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MeshGateway => "MeshGateway",
            Kind::MeshHttpRoute => "MeshHTTPRoute",
            Kind::MeshTcpRoute => "MeshTCPRoute",
            Kind::Dataplane => "Dataplane",
            Kind::MeshService => "MeshService",
            Kind::MeshExternalService => "MeshExternalService",
            Kind::MeshTimeout => "MeshTimeout",
            Kind::MeshRetry => "MeshRetry",
            Kind::MeshRateLimit => "MeshRateLimit",
            Kind::MeshFaultInjection => "MeshFaultInjection",
            Kind::MeshHealthCheck => "MeshHealthCheck",
            Kind::MeshCircuitBreaker => "MeshCircuitBreaker",
            Kind::MeshLoadBalancingStrategy => "MeshLoadBalancingStrategy",
            Kind::MeshAccessLog => "MeshAccessLog",
            Kind::MeshTrace => "MeshTrace",
            Kind::MeshOpenTelemetryBackend => "MeshOpenTelemetryBackend",
            Kind::Secret => "Secret",
            Kind::NotApplied(kind) => kind,
        }
    }

    /// Why meshgate does not apply this kind, when it does not.
    pub fn not_applied_reason(self) -> Option<&'static str> {
        match self {
            Kind::NotApplied(kind) => NOT_APPLIED
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, why)| *why),
            _ => None,
        }
    }

    /// Kuma's older (protobuf) resources keep their fields flat in Universal form, so their
    /// field paths have no `spec.` prefix there.
    pub fn is_flat_in_universal(self) -> bool {
        matches!(self, Kind::MeshGateway | Kind::Dataplane | Kind::Secret)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Universal,
    Kubernetes,
}

/// What every resource carries besides its spec.
#[derive(Debug, Clone)]
pub struct Meta {
    pub origin: Origin,
    pub kind: Kind,
    pub name: String,
    pub mesh: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub form: Form,
    /// Hash of the text of the file the resource came from: with `origin.document` it
    /// identifies the resource by content across builds (`model::SourceId`).
    pub source_hash: u64,
}

impl Meta {
    /// `Kind/name`, as error lines show it.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.name)
    }

    /// The prefix of field paths inside this resource's spec, matching what the user wrote:
    /// flat Universal resources have none, everything else is under `spec.`.
    pub fn spec_prefix(&self) -> &'static str {
        if self.form == Form::Universal && self.kind.is_flat_in_universal() {
            ""
        } else {
            "spec."
        }
    }
}

/// A decoded resource with its metadata.
#[derive(Debug, Clone)]
pub struct Res<T> {
    pub meta: Meta,
    pub spec: T,
}

/// A decoded resource, shared: the reloader keeps each file's resources between builds and
/// hands them to every build without copying them.
pub type Shared<T> = Arc<Res<T>>;

/// Every resource found in a policy directory, grouped by kind, in a deterministic order
/// (file path, then document index). Cloning is cheap (reference counts).
#[derive(Debug, Clone, Default)]
pub struct ResourceSet {
    pub gateways: Vec<Shared<MeshGateway>>,
    pub http_routes: Vec<Shared<MeshHttpRoute>>,
    pub tcp_routes: Vec<Shared<MeshTcpRoute>>,
    pub dataplanes: Vec<Shared<Dataplane>>,
    pub mesh_services: Vec<Shared<MeshService>>,
    pub external_services: Vec<Shared<MeshExternalService>>,
    pub timeouts: Vec<Shared<MeshTimeout>>,
    pub retries: Vec<Shared<MeshRetry>>,
    pub rate_limits: Vec<Shared<MeshRateLimit>>,
    pub faults: Vec<Shared<MeshFaultInjection>>,
    pub health_checks: Vec<Shared<MeshHealthCheck>>,
    pub circuit_breakers: Vec<Shared<MeshCircuitBreaker>>,
    pub load_balancing: Vec<Shared<MeshLoadBalancingStrategy>>,
    pub access_logs: Vec<Shared<MeshAccessLog>>,
    pub traces: Vec<Shared<MeshTrace>>,
    pub otel_backends: Vec<Shared<MeshOpenTelemetryBackend>>,
    pub secrets: Vec<Shared<Secret>>,
    /// Kuma kinds meshgate reads but does not apply (only their targetRef is decoded).
    pub not_applied: Vec<Shared<policy::TargetOnly>>,
    /// Documents of kinds meshgate does not know (kept for the `--check` warning lines).
    pub skipped: Vec<(Origin, String)>,
}

impl ResourceSet {
    /// Moves `other`'s resources in after this set's, kind by kind.
    pub fn append(&mut self, mut other: ResourceSet) {
        self.gateways.append(&mut other.gateways);
        self.http_routes.append(&mut other.http_routes);
        self.tcp_routes.append(&mut other.tcp_routes);
        self.dataplanes.append(&mut other.dataplanes);
        self.mesh_services.append(&mut other.mesh_services);
        self.external_services.append(&mut other.external_services);
        self.timeouts.append(&mut other.timeouts);
        self.retries.append(&mut other.retries);
        self.rate_limits.append(&mut other.rate_limits);
        self.faults.append(&mut other.faults);
        self.health_checks.append(&mut other.health_checks);
        self.circuit_breakers.append(&mut other.circuit_breakers);
        self.load_balancing.append(&mut other.load_balancing);
        self.access_logs.append(&mut other.access_logs);
        self.traces.append(&mut other.traces);
        self.otel_backends.append(&mut other.otel_backends);
        self.secrets.append(&mut other.secrets);
        self.not_applied.append(&mut other.not_applied);
        self.skipped.append(&mut other.skipped);
    }

    pub fn len(&self) -> usize {
        self.gateways.len()
            + self.http_routes.len()
            + self.tcp_routes.len()
            + self.dataplanes.len()
            + self.mesh_services.len()
            + self.external_services.len()
            + self.timeouts.len()
            + self.retries.len()
            + self.rate_limits.len()
            + self.faults.len()
            + self.health_checks.len()
            + self.circuit_breakers.len()
            + self.load_balancing.len()
            + self.access_logs.len()
            + self.traces.len()
            + self.otel_backends.len()
            + self.secrets.len()
            + self.not_applied.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
