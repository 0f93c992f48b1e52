//! Resolving `backendRefs` to [`Backend`]s (semantics §6), with a per-snapshot cache so every
//! reference to one destination shares one `Arc<Backend>`.

use super::backends::{Backend, UpstreamTls};
use crate::resources::common::Tags;
use crate::resources::dataplane::Inbound;
use crate::resources::{BackendRef, ResourceSet};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// The special backend name Kuma uses for references it could not resolve.
pub const UNRESOLVED_BACKEND: &str = "kuma.io/unresolved-backend";

type Endpoints = Vec<(SocketAddr, Option<String>)>;

pub struct Resolver<'a> {
    set: &'a ResourceSet,
    mesh: &'a str,
    policy_dir: &'a std::path::Path,
    cache: HashMap<String, Arc<Backend>>,
    pub warnings: Vec<String>,
    /// Backend key → the warnings resolving it produced, so a build that reuses a table
    /// (and the backends in it) can repeat them.
    pub warnings_by_key: HashMap<String, Vec<String>>,
    /// Keys of backends whose endpoints came from DNS lookups (or failed ones): tables
    /// that use them are not reused, so names are looked up again on every applied change.
    pub looked_up: HashSet<String>,
    name_lookups: usize,
}

impl<'a> Resolver<'a> {
    pub fn new(set: &'a ResourceSet, mesh: &'a str, policy_dir: &'a std::path::Path) -> Self {
        Resolver {
            set,
            mesh,
            policy_dir,
            cache: HashMap::new(),
            warnings: Vec::new(),
            warnings_by_key: HashMap::new(),
            looked_up: HashSet::new(),
            name_lookups: 0,
        }
    }

    /// Takes a backend an earlier build resolved (from a reused route table) into this
    /// build, with the warnings resolving it produced, unless this build already has one
    /// under its key.
    pub fn adopt(&mut self, backend: &Arc<Backend>, warnings: &[String]) {
        if self.cache.contains_key(&backend.key) {
            return;
        }
        self.cache.insert(backend.key.clone(), backend.clone());
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

    pub fn resolve(&mut self, r: &BackendRef) -> Arc<Backend> {
        self.tracked(|this| this.resolve_untracked(r))
    }

    /// Legacy reference: Dataplane inbounds tagged `kuma.io/service: NAME` (+ subset tags).
    pub fn legacy(&mut self, service: &str, subset: Option<&Tags>) -> Arc<Backend> {
        self.tracked(|this| this.legacy_untracked(service, subset))
    }

    fn resolve_untracked(&mut self, r: &BackendRef) -> Arc<Backend> {
        let name = r.name.clone().unwrap_or_default();
        match r.kind.as_str() {
            "MeshService" if r.port.is_none() && r.section_name.is_none() => {
                self.legacy_untracked(&name, None)
            }
            "MeshServiceSubset" => self.legacy_untracked(&name, r.tags.as_ref()),
            "MeshService" => self.mesh_service(r, &name),
            "MeshExternalService" => self.external(&name),
            other => self.unresolved(
                format!("{other}/{name}"),
                format!("backendRef kind {other} is not supported by meshgate"),
            ),
        }
    }

    fn legacy_untracked(&mut self, service: &str, subset: Option<&Tags>) -> Arc<Backend> {
        let mut key = service.to_string();
        if let Some(tags) = subset.filter(|t| !t.is_empty()) {
            let inner: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            key = format!("{service}{{{}}}", inner.join(","));
        }
        if let Some(b) = self.cache.get(&key) {
            return b.clone();
        }
        if service == UNRESOLVED_BACKEND {
            return self.unresolved(key, "backend is kuma.io/unresolved-backend".into());
        }
        let mut endpoints = Vec::new();
        let mut h2 = false;
        for (addr, inbound) in self.healthy_inbounds() {
            let Some(tags) = &inbound.tags else { continue };
            if tags.get("kuma.io/service").map(String::as_str) != Some(service) {
                continue;
            }
            if let Some(subset) = subset {
                if !subset.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                    continue;
                }
            }
            h2 |= matches!(
                tags.get("kuma.io/protocol").map(String::as_str),
                Some("http2" | "grpc")
            );
            if let Some(ep) = self.endpoint(&addr, inbound.port) {
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
    fn mesh_service(&mut self, r: &BackendRef, name: &str) -> Arc<Backend> {
        let port_label = match (&r.port, &r.section_name) {
            (Some(p), _) => p.to_string(),
            (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        };
        let ns = r.namespace.as_deref();
        let key = match ns {
            Some(ns) => format!("MeshService/{ns}/{name}:{port_label}"),
            None => format!("MeshService/{name}:{port_label}"),
        };
        if let Some(b) = self.cache.get(&key) {
            return b.clone();
        }
        let set = self.set;
        let mesh = self.mesh;
        let ms = set.mesh_services.iter().find(|m| {
            m.meta.name == name
                && m.meta.mesh == mesh
                && (ns.is_none() || m.meta.namespace.as_deref() == ns)
        });
        let Some(ms) = ms else {
            return self.unresolved(key, format!("MeshService {name:?} not found"));
        };
        let port = ms
            .spec
            .ports
            .iter()
            .find(|p| match (&r.port, &r.section_name) {
                (Some(want), _) => p.port == Some(*want),
                (None, Some(section)) => p.name.as_deref() == Some(section.as_str()),
                (None, None) => false,
            });
        let Some(port) = port else {
            return self.unresolved(
                key,
                format!("MeshService {name:?} has no port {port_label}"),
            );
        };
        let h2 = matches!(port.app_protocol.as_deref(), Some("http2" | "grpc"));
        let target_port = match &port.target_port {
            Some(serde_norway::Value::Number(n)) => TargetPort::Number(n.as_i64()),
            Some(serde_norway::Value::String(s)) => match s.parse::<i64>() {
                Ok(n) => TargetPort::Number(Some(n)),
                Err(_) => TargetPort::Name(s.clone()),
            },
            // Kuma defaults targetPort to port.
            _ => TargetPort::Number(port.port),
        };
        let selector = ms.spec.selector.clone().unwrap_or_default();
        let mut endpoints = Vec::new();
        for dp in set.dataplanes.iter().filter(|d| d.meta.mesh == mesh) {
            if let Some(r) = &selector.dataplane_ref {
                if r.name.as_deref() != Some(dp.meta.name.as_str()) {
                    continue;
                }
            }
            if let Some(labels) = &selector.dataplane_labels {
                if !labels.iter().all(|(k, v)| dp.meta.labels.get(k) == Some(v)) {
                    continue;
                }
            }
            let Some(net) = &dp.spec.networking else {
                continue;
            };
            for inbound in net.inbound.iter().flatten().filter(|i| i.is_healthy()) {
                if let Some(want) = &selector.dataplane_tags {
                    let tags = inbound.tags.clone().unwrap_or_default();
                    if !want.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                        continue;
                    }
                }
                let port_ok = match &target_port {
                    TargetPort::Number(n) => inbound.port.is_some() && inbound.port == *n,
                    TargetPort::Name(s) => inbound.name.as_deref() == Some(s.as_str()),
                };
                if !port_ok {
                    continue;
                }
                let addr = inbound
                    .address
                    .clone()
                    .or_else(|| net.address.clone())
                    .unwrap_or_default();
                if let Some(ep) = self.endpoint(&addr, inbound.port) {
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
            h2,
        )
    }

    fn external(&mut self, name: &str) -> Arc<Backend> {
        let key = format!("MeshExternalService/{name}");
        if let Some(b) = self.cache.get(&key) {
            return b.clone();
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
        for ep in &mes.spec.endpoints {
            if let Some(e) = self.endpoint(ep.address.as_deref().unwrap_or(""), ep.port) {
                endpoints.extend(e);
            }
        }
        let tls = mes.spec.tls.as_ref();
        let verification = tls.and_then(|t| t.verification.as_ref());
        let mode = verification
            .and_then(|v| v.mode.as_deref())
            .unwrap_or("Secured");
        let ca = match verification.and_then(|v| v.ca_cert.as_ref()) {
            None => None,
            Some(ds) => {
                let ders =
                    super::certs::read_datasource(ds, self.policy_dir, self.mesh, &set.secrets)
                        .and_then(|pem| super::certs::parse_ca_bundle(&pem));
                match ders {
                    Ok(d) => Some(Arc::new(d)),
                    Err(e) => {
                        return self.unresolved(key, format!("tls.verification.caCert: {e}"));
                    }
                }
            }
        };
        let upstream_tls = UpstreamTls {
            enabled: tls.and_then(|t| t.enabled).unwrap_or(false),
            verify_cert: !matches!(mode, "SkipCA" | "SkipAll"),
            verify_hostname: matches!(mode, "Secured" | "SkipCA"),
            server_name: verification.and_then(|v| v.server_name.clone()),
            ca,
        };
        let h2 = matches!(
            mes.spec.match_.as_ref().and_then(|m| m.protocol.as_deref()),
            Some("http2" | "grpc")
        );
        self.insert(
            key,
            name.to_string(),
            Ok(endpoints),
            true,
            &upstream_tls,
            h2,
        )
    }

    fn healthy_inbounds(&self) -> Vec<(String, &'a Inbound)> {
        let mut out = Vec::new();
        for dp in self
            .set
            .dataplanes
            .iter()
            .filter(|d| d.meta.mesh == self.mesh)
        {
            let Some(net) = &dp.spec.networking else {
                continue;
            };
            for inbound in net.inbound.iter().flatten().filter(|i| i.is_healthy()) {
                let addr = inbound
                    .address
                    .clone()
                    .or_else(|| net.address.clone())
                    .unwrap_or_default();
                out.push((addr, inbound));
            }
        }
        out
    }

    /// `address` may be an IP or a DNS name; names are resolved here, off the request path.
    fn endpoint(&mut self, address: &str, port: Option<i64>) -> Option<Endpoints> {
        let port = u16::try_from(port?).ok()?;
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
        let b = Arc::new(Backend::new(
            key.clone(),
            service,
            endpoints,
            external,
            tls,
            h2,
        ));
        self.cache.insert(key, b.clone());
        b
    }
}

enum TargetPort {
    Number(Option<i64>),
    Name(String),
}
