//! Kuma resources after validation: what compilation reads.
//!
//! `validate` checks the resources the loader decoded (strings and wide numbers, so errors
//! can be worded as Kuma words them) and lowers every valid one into these types, where each
//! value is already parsed: ports are `u16`, durations `Duration`, filter and match kinds
//! enums, header names `HeaderName`s, percentages fractions. Compilation never parses a
//! string again and has no fallback for a value that cannot be read: such a value never gets
//! here.

pub mod gateway;
pub mod policy;
pub mod route;
pub mod service;
pub mod target;

use crate::resources::{Meta, Res};
use crate::violation::Origin;
use std::sync::Arc;

pub use gateway::{Gateway, Listener, Protocol, TlsMode};
pub use route::{HttpRoute, TcpRoute};
pub use service::{Dataplane, ExternalService, MeshService, Secret};
pub use target::TargetRef;

/// A validated resource: its metadata and its lowered spec.
pub type Valid<T> = Arc<Res<T>>;

/// Every valid resource of a policy directory, grouped by kind, in file order.
#[derive(Debug, Clone, Default)]
pub struct ValidSet {
    pub gateways: Vec<Valid<Gateway>>,
    pub http_routes: Vec<Valid<HttpRoute>>,
    pub tcp_routes: Vec<Valid<TcpRoute>>,
    pub dataplanes: Vec<Valid<Dataplane>>,
    pub mesh_services: Vec<Valid<MeshService>>,
    pub external_services: Vec<Valid<ExternalService>>,
    pub secrets: Vec<Valid<Secret>>,
    pub policies: policy::PolicySet,
    /// Documents of kinds meshgate does not apply (for `--check`'s lines).
    pub skipped: Vec<(Origin, String)>,
}

impl ValidSet {
    /// Moves `other`'s resources in after this set's, kind by kind.
    pub fn append(&mut self, mut other: ValidSet) {
        self.gateways.append(&mut other.gateways);
        self.http_routes.append(&mut other.http_routes);
        self.tcp_routes.append(&mut other.tcp_routes);
        self.dataplanes.append(&mut other.dataplanes);
        self.mesh_services.append(&mut other.mesh_services);
        self.external_services.append(&mut other.external_services);
        self.secrets.append(&mut other.secrets);
        self.policies.append(other.policies);
        self.skipped.append(&mut other.skipped);
    }

    pub fn len(&self) -> usize {
        self.gateways.len()
            + self.http_routes.len()
            + self.tcp_routes.len()
            + self.dataplanes.len()
            + self.mesh_services.len()
            + self.external_services.len()
            + self.secrets.len()
            + self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every resource's metadata, whatever its kind.
    pub fn metas(&self) -> impl Iterator<Item = &Meta> {
        self.gateways
            .iter()
            .map(|r| &r.meta)
            .chain(self.http_routes.iter().map(|r| &r.meta))
            .chain(self.tcp_routes.iter().map(|r| &r.meta))
            .chain(self.dataplanes.iter().map(|r| &r.meta))
            .chain(self.mesh_services.iter().map(|r| &r.meta))
            .chain(self.external_services.iter().map(|r| &r.meta))
            .chain(self.secrets.iter().map(|r| &r.meta))
            .chain(self.policies.metas())
    }

    /// Kuma names a resource uniquely per kind and mesh (and namespace on Kubernetes): a
    /// second one of the same identity is an error naming both places.
    pub fn duplicates(&self) -> Vec<crate::violation::Violation> {
        let mut seen: std::collections::HashMap<_, &Meta> = std::collections::HashMap::new();
        let mut out = Vec::new();
        for meta in self.metas() {
            let key = (meta.kind, &meta.mesh, &meta.namespace, &meta.name);
            match seen.get(&key) {
                Some(first) => out.push(crate::violation::Violation::new(
                    &meta.origin,
                    Some(meta.display_name()),
                    "",
                    format!(
                        "duplicate: {} in mesh {:?} is also defined at {} (names are unique per kind and mesh)",
                        meta.display_name(),
                        meta.mesh,
                        first.origin
                    ),
                )),
                None => {
                    seen.insert(key, meta);
                }
            }
        }
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        out
    }
}

/// What identifies a resource across builds by content: the hash of the file it came from and
/// its document index. Equal identities mean the very same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId {
    pub file_hash: u64,
    pub document: usize,
}

impl SourceId {
    pub fn of(meta: &Meta) -> SourceId {
        SourceId {
            file_hash: meta.source_hash,
            document: meta.origin.document,
        }
    }
}
