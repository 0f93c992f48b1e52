//! Resolving `backendRefs` to [`Backend`]s (semantics §6), with a per-build cache so every
//! reference to one destination shares one `Arc<Backend>` (and its round robin). This and
//! [`super::certs`] are the only parts of compilation that do I/O: DNS lookups of endpoint
//! names here, certificate files there.

use super::certs::{parse_ca_bundle, read_datasource};
use crate::model::route::{BackendRef, BackendTarget, ServicePortRef};
use crate::model::service::TargetPort;
use crate::model::ValidSet;
use crate::resources::common::Tags;
use crate::snapshot::backends::{Backend, Destination, StateSource, UpstreamTls};
use crate::snapshot::cluster::ClusterConf;
use foldhash::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// The special backend name Kuma uses for references it could not resolve.
pub const UNRESOLVED_BACKEND: &str = "kuma.io/unresolved-backend";

type Endpoints = Vec<(SocketAddr, Option<String>)>;

pub struct Resolver<'a> {
    set: &'a ValidSet,
    mesh: &'a str,
    policy_dir: &'a std::path::Path,
    /// Where endpoints and clusters find their run-time state.
    states: &'a dyn StateSource,
    /// By destination key and cluster settings: two ports whose policies differ for one
    /// destination get two backends (Envoy clusters), ports that agree share one.
    cache: HashMap<(String, Arc<ClusterConf>), Arc<Backend>>,
    /// The cluster settings of the resolution in progress.
    cluster: Arc<ClusterConf>,
    pub warnings: Vec<String>,
    /// Backend key → the warnings resolving it produced, so a build that reuses a table
    /// (and the backends in it) can repeat them.
    pub warnings_by_key: HashMap<String, Vec<String>>,
    /// Keys of backends whose endpoints came from DNS lookups (or failed ones): tables that
    /// use them are not reused, so names are looked up again on every applied change.
    pub looked_up: HashSet<String>,
    name_lookups: usize,
}

impl<'a> Resolver<'a> {
    pub fn new(
        set: &'a ValidSet,
        mesh: &'a str,
        policy_dir: &'a std::path::Path,
        states: &'a dyn StateSource,
    ) -> Self {
        Resolver {
            set,
            mesh,
            policy_dir,
            states,
            cache: HashMap::default(),
            cluster: Arc::new(ClusterConf::default()),
            warnings: Vec::new(),
            warnings_by_key: HashMap::default(),
            looked_up: HashSet::default(),
            name_lookups: 0,
        }
    }

    /// Takes a backend an earlier build resolved (from a reused route table) into this
    /// build, with the warnings resolving it produced, unless this build already has one
    /// under its key.
    pub fn adopt(&mut self, backend: &Arc<Backend>, warnings: &[String]) {
        let key = (backend.key.clone(), backend.cluster.clone());
        if self.cache.contains_key(&key) {
            return;
        }
        self.cache.insert(key, backend.clone());
        if !warnings.is_empty() {
            self.warnings.extend(warnings.iter().cloned());
            self.warnings_by_key
                .insert(backend.key.clone(), warnings.to_vec());
        }
    }

    /// Runs one resolution, noting under the backend's key the warnings it produced and
    /// whether it looked a name up.
    fn tracked(&mut self, resolve: impl FnOnce(&mut Self) -> Arc<Backend>) -> Arc<Backend> {
        let (warned, lookups) = (self.warnings.len(), self.name_lookups);
        let backend = resolve(self);
        if self.warnings.len() > warned {
            let new = self.warnings.get(warned..).unwrap_or_default().to_vec();
            self.warnings_by_key
                .entry(backend.key.clone())
                .or_default()
                .extend(new);
        }
        if self.name_lookups > lookups {
            self.looked_up.insert(backend.key.clone());
        }
        backend
    }

    /// All distinct backends resolved so far (for `/config`).
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.cache.values()
    }

    /// The backend `r` names, with the cluster settings `cluster` (its port's policies for
    /// that destination).
    pub fn resolve(&mut self, r: &BackendRef, cluster: Arc<ClusterConf>) -> Arc<Backend> {
        self.cluster = cluster;
        self.tracked(|this| match &r.target {
            BackendTarget::Legacy { service, subset } => this.legacy(service, subset),
            BackendTarget::MeshService {
                name,
                namespace,
                port,
            } => this.mesh_service(name, namespace.as_deref(), port),
            BackendTarget::MeshExternalService { name } => this.external(name),
            BackendTarget::Unsupported { kind, name } => this.unresolved(
                format!("{kind}/{name}"),
                format!("backendRef kind {kind} is not supported by meshgate"),
            ),
        })
    }

    /// Legacy reference: Dataplane inbounds tagged `kuma.io/service: NAME` (+ subset tags).
    fn legacy(&mut self, service: &str, subset: &Tags) -> Arc<Backend> {
        let key = if subset.is_empty() {
            service.to_string()
        } else {
            let inner: Vec<String> = subset.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{service}{{{}}}", inner.join(","))
        };
        if let Some(b) = self.cached(&key) {
            return b;
        }
        if service == UNRESOLVED_BACKEND {
            return self.unresolved(key, "backend is kuma.io/unresolved-backend".into());
        }
        let mut endpoints = Vec::new();
        let mut h2 = false;
        let (set, mesh) = (self.set, self.mesh);
        let inbounds = set
            .dataplanes
            .iter()
            .filter(|d| d.meta.mesh == mesh)
            .flat_map(|d| d.spec.inbounds.iter())
            .filter(|i| i.healthy);
        for inbound in inbounds {
            let tags = &inbound.tags;
            if tags.get("kuma.io/service").map(String::as_str) != Some(service) {
                continue;
            }
            if !subset.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                continue;
            }
            h2 |= matches!(
                tags.get("kuma.io/protocol").map(String::as_str),
                Some("http2" | "grpc")
            );
            if let Some(ep) = self.endpoint(&inbound.address, inbound.port) {
                endpoints.extend(ep);
            }
        }
        self.insert(
            key,
            service.to_string(),
            Ok(endpoints),
            false,
            &UpstreamTls::default(),
            h2,
        )
    }

    /// Real MeshService reference: `name` (+`namespace`) and `port` → the MeshService's port
    /// entry → `targetPort` → Dataplane inbounds selected by the MeshService (§6.2).
    fn mesh_service(
        &mut self,
        name: &str,
        namespace: Option<&str>,
        port_ref: &ServicePortRef,
    ) -> Arc<Backend> {
        let port_label = match port_ref {
            ServicePortRef::Number(p) => p.to_string(),
            ServicePortRef::Name(s) => s.clone(),
        };
        let key = match namespace {
            Some(ns) => format!("MeshService/{ns}/{name}:{port_label}"),
            None => format!("MeshService/{name}:{port_label}"),
        };
        if let Some(b) = self.cached(&key) {
            return b;
        }
        let set = self.set;
        let mesh = self.mesh;
        let ms = set.mesh_services.iter().find(|m| {
            m.meta.name == name
                && m.meta.mesh == mesh
                && (namespace.is_none() || m.meta.namespace.as_deref() == namespace)
        });
        let Some(ms) = ms else {
            return self.unresolved(key, format!("MeshService {name:?} not found"));
        };
        let port = ms.spec.ports.iter().find(|p| match port_ref {
            ServicePortRef::Number(want) => p.port == *want,
            ServicePortRef::Name(section) => p.name.as_deref() == Some(section.as_str()),
        });
        let Some(port) = port else {
            return self.unresolved(
                key,
                format!("MeshService {name:?} has no port {port_label}"),
            );
        };
        let selector = &ms.spec.selector;
        let mut endpoints = Vec::new();
        for dp in set.dataplanes.iter().filter(|d| d.meta.mesh == mesh) {
            if let Some(want) = &selector.dataplane_name {
                if *want != dp.meta.name {
                    continue;
                }
            }
            if let Some(labels) = &selector.dataplane_labels {
                if !labels.iter().all(|(k, v)| dp.meta.labels.get(k) == Some(v)) {
                    continue;
                }
            }
            for inbound in dp.spec.inbounds.iter().filter(|i| i.healthy) {
                if let Some(want) = &selector.dataplane_tags {
                    if !want.iter().all(|(k, v)| inbound.tags.get(k) == Some(v)) {
                        continue;
                    }
                }
                let port_ok = match &port.target {
                    TargetPort::Number(n) => inbound.port == Some(*n),
                    TargetPort::Name(s) => inbound.name.as_deref() == Some(s.as_str()),
                };
                if !port_ok {
                    continue;
                }
                if let Some(ep) = self.endpoint(&inbound.address, inbound.port) {
                    endpoints.extend(ep);
                }
            }
        }
        self.insert(
            key,
            name.to_string(),
            Ok(endpoints),
            false,
            &UpstreamTls::default(),
            port.h2,
        )
    }

    fn external(&mut self, name: &str) -> Arc<Backend> {
        let key = format!("MeshExternalService/{name}");
        if let Some(b) = self.cached(&key) {
            return b;
        }
        let set = self.set;
        let Some(mes) = set
            .external_services
            .iter()
            .find(|m| m.meta.name == name && m.meta.mesh == self.mesh)
        else {
            return self.unresolved(key, format!("MeshExternalService {name:?} not found"));
        };
        let mut endpoints = Vec::new();
        for (address, port) in &mes.spec.endpoints {
            if let Some(e) = self.endpoint(address, Some(*port)) {
                endpoints.extend(e);
            }
        }
        let mut upstream_tls = UpstreamTls::default();
        if let Some(tls) = &mes.spec.tls {
            let ca = match &tls.ca_cert {
                None => None,
                Some(ds) => {
                    let ders = read_datasource(ds, self.policy_dir, self.mesh, &set.secrets)
                        .and_then(|pem| parse_ca_bundle(&pem));
                    match ders {
                        Ok(d) => Some(Arc::new(d)),
                        Err(e) => {
                            return self.unresolved(key, format!("tls.verification.caCert: {e}"))
                        }
                    }
                }
            };
            upstream_tls = UpstreamTls {
                enabled: tls.enabled,
                verify_cert: tls.verify_cert,
                verify_hostname: tls.verify_hostname,
                server_name: tls.server_name.clone(),
                ca,
            };
        }
        self.insert(
            key,
            name.to_string(),
            Ok(endpoints),
            true,
            &upstream_tls,
            mes.spec.h2,
        )
    }

    fn cached(&self, key: &str) -> Option<Arc<Backend>> {
        self.cache
            .get(&(key.to_string(), self.cluster.clone()))
            .cloned()
    }

    /// `address` may be an IP or a DNS name; names are resolved here, off the request path.
    fn endpoint(&mut self, address: &str, port: Option<u16>) -> Option<Endpoints> {
        let port = port?;
        if let Ok(ip) = address.parse::<IpAddr>() {
            return Some(vec![(SocketAddr::new(ip, port), None)]);
        }
        let host = address.trim_end_matches('.');
        self.name_lookups += 1;
        match (host, port).to_socket_addrs() {
            Ok(addrs) => Some(addrs.map(|a| (a, Some(host.to_string()))).take(1).collect()),
            Err(e) => {
                self.warnings
                    .push(format!("cannot resolve endpoint {host}:{port}: {e}"));
                None
            }
        }
    }

    fn unresolved(&mut self, key: String, reason: String) -> Arc<Backend> {
        self.warnings
            .push(format!("{key}: {reason} (requests get 500)"));
        let service = key.clone();
        self.insert(
            key,
            service,
            Err(reason),
            false,
            &UpstreamTls::default(),
            false,
        )
    }

    fn insert(
        &mut self,
        key: String,
        service: String,
        endpoints: Result<Endpoints, String>,
        external: bool,
        tls: &UpstreamTls,
        h2: bool,
    ) -> Arc<Backend> {
        let dest = Destination {
            key: key.clone(),
            service,
            external,
            h2,
        };
        let b = Arc::new(Backend::new(
            dest,
            endpoints,
            tls,
            self.cluster.clone(),
            self.states,
        ));
        self.cache.insert((key, self.cluster.clone()), b.clone());
        b
    }
}
