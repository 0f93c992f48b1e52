//! What a merged rule does (semantics §5): forward to its backends with its filters, or
//! redirect. With backendRefs the rule forwards even when it also has a redirect (Kuma
//! configures the forward action last).

use super::backends::Resolver;
use super::merge::MergedRule;
use super::policies::PortScope;
use crate::model::route::{BackendRef, BackendTarget, Filter, HeaderModifier, PathRewrite};
use crate::snapshot::action::{Action, Forward, HeaderMods, HostRewrite, Mirror, Redirect};
use crate::snapshot::backends::{Backend, WeightedBackends};
use crate::snapshot::policy::RoutePolicies;
use crate::snapshot::rate_limit::HttpLimit;
use std::sync::Arc;

/// The backend `r` names, with its port's cluster settings for that destination.
pub fn resolve(r: &BackendRef, resolver: &mut Resolver, scope: &mut PortScope) -> Arc<Backend> {
    let service = match &r.target {
        BackendTarget::Legacy { service, .. } => Some(service.as_str()),
        BackendTarget::MeshService { name, .. } => Some(name.as_str()),
        BackendTarget::MeshExternalService { .. } | BackendTarget::Unsupported { .. } => None,
    };
    resolver.resolve(r, scope.cluster(service))
}

/// The action of `rule`, with its policies and its rate-limit bucket.
pub fn action(
    rule: &MergedRule,
    resolver: &mut Resolver,
    scope: &mut PortScope,
    policies: Arc<RoutePolicies>,
    rate_limit: Option<Arc<HttpLimit>>,
) -> Action {
    let mut request_headers = HeaderMods::default();
    let mut response_headers = HeaderMods::default();
    let mut host_rewrite = None;
    let mut redirect = None;
    let mut mirror = None;
    for f in rule.conf.filters() {
        match f {
            Filter::RequestHeaderModifier(m) => {
                let mut mods = header_mods(m);
                // `set: host` is Kuma's host rewrite (§5.1).
                if let Some(i) = mods.set.iter().position(|(n, _)| n == http::header::HOST) {
                    let (_, v) = mods.set.remove(i);
                    host_rewrite = Some(HostRewrite::Literal(v));
                }
                request_headers.extend(mods);
            }
            Filter::ResponseHeaderModifier(m) => response_headers.extend(header_mods(m)),
            Filter::RequestRedirect(r) => redirect = Some(r),
            Filter::UrlRewrite(u) => {
                if let Some(h) = &u.hostname {
                    host_rewrite = Some(HostRewrite::Literal(h.clone()));
                } else if u.host_to_backend_hostname {
                    host_rewrite = Some(HostRewrite::BackendHostname);
                }
            }
            Filter::RequestMirror(m) if m.per_million > 0 => {
                mirror = Some(Mirror {
                    backend: resolve(&m.backend, resolver, scope),
                    fraction: f64::from(m.per_million.min(1_000_000)) / 1_000_000.0,
                });
            }
            Filter::RequestMirror(_) => {}
        }
    }
    let refs = rule.conf.backend_refs();
    if let (true, Some(r)) = (refs.is_empty(), redirect) {
        return Action::Redirect(Redirect {
            scheme: r.scheme.clone(),
            hostname: r.hostname.clone(),
            port: r.port,
            status: r.status,
        });
    }
    let backends = WeightedBackends::new(
        refs.iter()
            .map(|r| (resolve(r, resolver, scope), r.weight))
            .collect(),
    );
    Action::Forward(Box::new(Forward {
        backends,
        request_headers,
        response_headers,
        host_rewrite,
        mirror,
        policies,
        rate_limit,
    }))
}

fn header_mods(m: &HeaderModifier) -> HeaderMods {
    HeaderMods {
        set: m.set.clone(),
        add: m.add.clone(),
        remove: m.remove.clone(),
    }
}

/// The path rewrite a rule asks for: its redirect's when it redirects, else its URLRewrite's.
pub fn rewrite_of<'a>(rule: &MergedRule<'a>) -> Option<&'a PathRewrite> {
    let forwards = !rule.conf.backend_refs().is_empty();
    let mut out = None;
    for f in rule.conf.filters() {
        let p = match f {
            Filter::RequestRedirect(r) if !forwards => r.path.as_ref(),
            Filter::UrlRewrite(u) if forwards => u.path.as_ref(),
            _ => None,
        };
        if p.is_some() {
            out = p;
        }
    }
    out
}
