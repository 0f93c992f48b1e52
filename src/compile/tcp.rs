//! TCP and TLS ports (semantics §7) and the certificates of TLS-terminating listeners
//! (§3.7).

use super::certs::{key_family, parse_pem_pair, read_datasource};
use super::listeners::{attaches, PlannedListener};
use super::merge::merge_tcp_routes;
use super::policies::PortScope;
use super::Build;
use crate::model::route::BackendRef;
use crate::model::{TcpRoute, TlsMode, Valid};
use crate::snapshot::backends::WeightedBackends;
use crate::snapshot::certs::CertSet;
use crate::snapshot::hostname::HostTable;
use crate::snapshot::{Serving, TlsChain};
use crate::violation::Violation;
use rustls::sign::CertifiedKey;
use std::sync::Arc;

impl<'a> Build<'a> {
    pub(super) fn tcp_port(
        &mut self,
        ls: &[&PlannedListener<'a>],
        scope: &mut PortScope<'a>,
    ) -> Serving {
        // One TCP proxy per port: the union of every listener's destinations (§7.2).
        let refs: Vec<&BackendRef> = ls.iter().flat_map(|l| self.tcp_refs(l)).collect();
        Serving::Tcp {
            listener: ls[0].info.clone(),
            backends: self.weighted(refs, scope),
        }
    }

    pub(super) fn tls_port(
        &mut self,
        ls: &[&PlannedListener<'a>],
        scope: &mut PortScope<'a>,
    ) -> Serving {
        let mut chains = HostTable::default();
        for l in ls {
            let mode = l.spec.tls.as_ref().map_or(TlsMode::Terminate, |t| t.mode);
            let certs = match mode {
                TlsMode::Terminate => match self.cert_set(l) {
                    Some(c) => Some(c),
                    None => continue,
                },
                TlsMode::Passthrough => None,
            };
            let refs: Vec<&BackendRef> = self.tcp_refs(l).iter().collect();
            let backends = self.weighted(refs, scope);
            chains.insert(
                &l.info.hostname,
                Arc::new(TlsChain {
                    listener: l.info.clone(),
                    mode,
                    certs,
                    backends,
                }),
            );
        }
        Serving::Tls { chains }
    }

    fn weighted(&mut self, refs: Vec<&BackendRef>, scope: &mut PortScope) -> WeightedBackends {
        WeightedBackends::new(
            refs.into_iter()
                .map(|r| {
                    (
                        super::actions::resolve(r, &mut self.resolver, scope),
                        r.weight,
                    )
                })
                .collect(),
        )
    }

    /// The merged backendRefs of the MeshTCPRoutes attached to `l`.
    fn tcp_refs(&self, l: &PlannedListener) -> &'a [BackendRef] {
        let set = self.set;
        let gateway = &self.gateway.meta;
        let mut routes: Vec<&'a Valid<TcpRoute>> = set
            .tcp_routes
            .iter()
            .filter(|r| attaches(&r.meta, &r.spec.target, gateway, l))
            .collect();
        routes.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        merge_tcp_routes(&routes)
    }

    /// Loads and checks a listener's certificates; problems become violations naming the
    /// field.
    pub(super) fn cert_set(&mut self, l: &PlannedListener) -> Option<Arc<CertSet>> {
        let meta = &self.gateway.meta;
        let base = format!(
            "{}conf.listeners[{}].tls.certificates",
            meta.spec_prefix(),
            l.spec.index
        );
        let certs = l
            .spec
            .tls
            .as_ref()
            .map(|t| t.certificates.as_slice())
            .unwrap_or_default();
        if certs.is_empty() {
            self.violations.push(Violation::new(
                &meta.origin,
                Some(meta.display_name()),
                base,
                "cannot be empty in TLS termination mode",
            ));
            return None;
        }
        let mut keys: Vec<Arc<CertifiedKey>> = Vec::new();
        for (j, ds) in certs.iter().enumerate() {
            let parsed = read_datasource(ds, &self.opts.policy_dir, &meta.mesh, &self.set.secrets)
                .and_then(|pem| parse_pem_pair(&pem));
            match parsed {
                Ok(k) => {
                    if keys.iter().any(|other| key_family(other) == key_family(&k)) {
                        self.violations.push(Violation::new(
                            &meta.origin,
                            Some(meta.display_name()),
                            format!("{base}[{j}]"),
                            "certificates must differ in key type (one RSA, one ECDSA)",
                        ));
                    }
                    keys.push(k);
                }
                Err(e) => self.violations.push(Violation::new(
                    &meta.origin,
                    Some(meta.display_name()),
                    format!("{base}[{j}]"),
                    e,
                )),
            }
        }
        (!keys.is_empty() && keys.len() == certs.len()).then(|| Arc::new(CertSet { keys }))
    }
}
