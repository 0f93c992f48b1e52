//! MeshHTTPRoute and MeshTCPRoute → [`crate::model::route`].

use super::{required, unreadable, Lowered};
use crate::model::route::{
    BackendRef, BackendTarget, Filter, HeaderMatch, HeaderModifier, HttpMatch, HttpRoute, HttpRule,
    HttpTo, Mirror, PathMatch, PathRewrite, QueryMatch, Redirect, ServicePortRef, TcpRoute, TcpTo,
    UrlRewrite, WrittenMatches,
};
use crate::model::target::{ProxyType, TargetRef};
use crate::resources::common::{BackendRef as RawBackendRef, TargetRef as RawTargetRef};
use crate::resources::http_route::{self as raw, MeshHttpRoute};
use crate::resources::MeshTcpRoute;
use crate::validate::values;
use http::{HeaderName, HeaderValue, Method};

/// A `targetRef` (absent: the whole mesh).
pub fn target(t: Option<&RawTargetRef>) -> TargetRef {
    let Some(t) = t else {
        return TargetRef::MESH;
    };
    let name = t.name.clone().unwrap_or_default();
    let tags = t.tags.clone().unwrap_or_default();
    let proxy_types = t.proxy_types.as_ref().map(|p| {
        p.iter()
            .filter_map(|p| match p.as_str() {
                "Gateway" => Some(ProxyType::Gateway),
                "Sidecar" => Some(ProxyType::Sidecar),
                _ => None,
            })
            .collect()
    });
    match t.kind.as_str() {
        "Mesh" => TargetRef::Mesh { proxy_types },
        "MeshSubset" => TargetRef::MeshSubset { tags, proxy_types },
        "MeshGateway" => TargetRef::MeshGateway { name, tags },
        "MeshHTTPRoute" => TargetRef::MeshHttpRoute { name },
        "MeshService" => TargetRef::MeshService { name },
        "MeshServiceSubset" => TargetRef::MeshServiceSubset { name, tags },
        "MeshExternalService" => TargetRef::MeshExternalService { name },
        other => TargetRef::Other {
            kind: other.to_string(),
            name: t.name.clone(),
        },
    }
}

pub fn http_route(spec: &MeshHttpRoute) -> Lowered<HttpRoute> {
    let mut to = Vec::new();
    for (i, t) in spec.to.iter().enumerate() {
        let at = format!("spec.to[{i}]");
        let mut rules = Vec::with_capacity(t.rules.as_ref().map_or(0, Vec::len));
        for (j, rule) in t.rules.iter().flatten().enumerate() {
            rules.push(http_rule(rule, &format!("{at}.rules[{j}]"))?);
        }
        to.push(HttpTo {
            hostnames: t
                .hostnames
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            rules,
        });
    }
    Ok(HttpRoute {
        target: target(spec.target_ref.as_ref()),
        to,
    })
}

fn http_rule(rule: &raw::HttpRule, at: &str) -> Lowered<HttpRule> {
    let written: &[raw::HttpMatch] = rule.matches.as_deref().unwrap_or_default();
    let mut matches = Vec::with_capacity(written.len());
    for (k, m) in written.iter().enumerate() {
        matches.push(http_match(m, &format!("{at}.matches[{k}]"))?);
    }
    let conf = rule.default.as_ref();
    let filters = match conf.and_then(|c| c.filters.as_ref()) {
        None => None,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (k, f) in list.iter().enumerate() {
                out.push(filter(f, &format!("{at}.default.filters[{k}]"))?);
            }
            Some(out)
        }
    };
    let backend_refs = match conf.and_then(|c| c.backend_refs.as_ref()) {
        None => None,
        Some(refs) => Some(backend_refs(refs, &format!("{at}.default.backendRefs"))?),
    };
    Ok(HttpRule {
        matches,
        written_matches: WrittenMatches::new(written),
        filters,
        backend_refs,
    })
}

fn header_name(name: &str, at: &str) -> Lowered<HeaderName> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|e| unreadable(at, e.to_string()))
}

fn header_value(value: &str, at: &str) -> Lowered<HeaderValue> {
    HeaderValue::from_str(value).map_err(|e| unreadable(at, e.to_string()))
}

fn http_match(m: &raw::HttpMatch, at: &str) -> Lowered<HttpMatch> {
    let path = match &m.path {
        None => None,
        Some(p) => {
            let value = required(p.value.clone(), &format!("{at}.path.value"))?;
            Some(match p.match_type.as_deref() {
                Some("Exact") => PathMatch::Exact(value),
                Some("PathPrefix") => PathMatch::Prefix(match value.trim_end_matches('/') {
                    "" => "/".to_string(),
                    trimmed => trimmed.to_string(),
                }),
                Some("RegularExpression") => PathMatch::Regex(value),
                other => return Err(unreadable(format!("{at}.path.type"), format!("{other:?}"))),
            })
        }
    };
    let method = match &m.method {
        None => None,
        Some(s) => Some(
            Method::from_bytes(s.as_bytes())
                .map_err(|e| unreadable(format!("{at}.method"), e.to_string()))?,
        ),
    };
    let headers = header_matches(
        m.headers.as_deref().unwrap_or_default(),
        &format!("{at}.headers"),
    )?;
    let mut query = Vec::with_capacity(m.query_params.as_ref().map_or(0, Vec::len));
    for (k, q) in m.query_params.iter().flatten().enumerate() {
        query.push(match q.match_type.as_deref().unwrap_or("Exact") {
            // Kuma drops an Exact query match with an empty value too (§4.4).
            "Exact" if q.value.is_empty() => continue,
            "Exact" => QueryMatch::Exact(q.name.clone(), q.value.clone()),
            "RegularExpression" => QueryMatch::Regex(q.name.clone(), q.value.clone()),
            other => return Err(unreadable(format!("{at}.queryParams[{k}].type"), other)),
        });
    }
    Ok(HttpMatch {
        path,
        method,
        headers,
        query,
    })
}

/// Header conditions (`at` names the list). Kuma quirk (§4.3): an Exact match with an
/// empty value is dropped.
pub fn header_matches(list: &[raw::HeaderMatch], at: &str) -> Lowered<Vec<HeaderMatch>> {
    // Sized ahead: pushing into an empty Vec reserves four, and a 100,000-rule directory
    // keeps every rule's header conditions (12.8 MB of them, heaptrack).
    let mut headers = Vec::with_capacity(list.len());
    for (k, h) in list.iter().enumerate() {
        let hat = format!("{at}[{k}]");
        let name = header_name(&h.name, &format!("{hat}.name"))?;
        let value = h.value.clone().unwrap_or_default();
        headers.push(match h.match_type.as_deref().unwrap_or("Exact") {
            "Exact" if value.is_empty() => continue,
            "Exact" => HeaderMatch::Exact(name, value),
            "Present" => HeaderMatch::Present(name),
            "Absent" => HeaderMatch::Absent(name),
            "Prefix" => HeaderMatch::Prefix(name, value),
            "RegularExpression" => HeaderMatch::Regex(name, value),
            other => return Err(unreadable(format!("{hat}.type"), other)),
        });
    }
    Ok(headers)
}

fn header_modifier(m: &raw::HeaderModifier, at: &str) -> Lowered<HeaderModifier> {
    let pairs = |list: &Option<Vec<raw::HeaderValue>>, field: &str| {
        let mut out = Vec::new();
        for (k, h) in list.iter().flatten().enumerate() {
            let hat = format!("{at}.{field}[{k}]");
            out.push((
                header_name(&h.name, &format!("{hat}.name"))?,
                header_value(&h.value, &format!("{hat}.value"))?,
            ));
        }
        Ok(out)
    };
    let mut remove = Vec::new();
    for (k, name) in m.remove.iter().flatten().enumerate() {
        remove.push(header_name(name, &format!("{at}.remove[{k}]"))?);
    }
    Ok(HeaderModifier {
        set: pairs(&m.set, "set")?,
        add: pairs(&m.add, "add")?,
        remove,
    })
}

fn path_rewrite(p: &raw::PathRewrite, at: &str) -> Lowered<PathRewrite> {
    match p.rewrite_type.as_deref() {
        Some("ReplaceFullPath") => Ok(PathRewrite::ReplaceFullPath(required(
            p.replace_full_path.clone(),
            &format!("{at}.replaceFullPath"),
        )?)),
        Some("ReplacePrefixMatch") => Ok(PathRewrite::ReplacePrefixMatch(required(
            p.replace_prefix_match.clone(),
            &format!("{at}.replacePrefixMatch"),
        )?)),
        other => Err(unreadable(format!("{at}.type"), format!("{other:?}"))),
    }
}

fn filter(f: &raw::Filter, at: &str) -> Lowered<Filter> {
    let part = |field: &str| format!("{at}.{field}");
    Ok(match f.filter_type.as_str() {
        "RequestHeaderModifier" => Filter::RequestHeaderModifier(header_modifier(
            required(
                f.request_header_modifier.as_ref(),
                &part("requestHeaderModifier"),
            )?,
            &part("requestHeaderModifier"),
        )?),
        "ResponseHeaderModifier" => Filter::ResponseHeaderModifier(header_modifier(
            required(
                f.response_header_modifier.as_ref(),
                &part("responseHeaderModifier"),
            )?,
            &part("responseHeaderModifier"),
        )?),
        "RequestRedirect" => {
            let r = required(f.request_redirect.as_ref(), &part("requestRedirect"))?;
            let path = match &r.path {
                Some(p) => Some(path_rewrite(p, &part("requestRedirect.path"))?),
                None => None,
            };
            Filter::RequestRedirect(Redirect {
                scheme: r.scheme.clone(),
                hostname: r.hostname.clone(),
                path,
                port: match r.port {
                    Some(p) => Some(required(values::port(p), &part("requestRedirect.port"))?),
                    None => None,
                },
                status: match r.status_code {
                    Some(s) => {
                        required(u16::try_from(s).ok(), &part("requestRedirect.statusCode"))?
                    }
                    None => 302,
                },
            })
        }
        "URLRewrite" => {
            let u = required(f.url_rewrite.as_ref(), &part("urlRewrite"))?;
            Filter::UrlRewrite(UrlRewrite {
                hostname: match &u.hostname {
                    Some(h) => Some(header_value(h, &part("urlRewrite.hostname"))?),
                    None => None,
                },
                path: match &u.path {
                    Some(p) => Some(path_rewrite(p, &part("urlRewrite.path"))?),
                    None => None,
                },
                host_to_backend_hostname: u.host_to_backend_hostname == Some(true),
            })
        }
        "RequestMirror" => {
            let m = required(f.request_mirror.as_ref(), &part("requestMirror"))?;
            let backend = required(m.backend_ref.as_ref(), &part("requestMirror.backendRef"))?;
            let percent = match &m.percentage {
                None => 100.0,
                Some(p) => required(values::percentage(p), &part("requestMirror.percentage"))?,
            };
            Filter::RequestMirror(Mirror {
                // A legacy reference only: the service name and subset tags (§5.4).
                backend: BackendRef {
                    target: BackendTarget::Legacy {
                        service: backend.name.clone().unwrap_or_default(),
                        subset: backend.tags.clone().unwrap_or_default(),
                    },
                    weight: 1,
                },
                per_million: (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32,
            })
        }
        other => return Err(unreadable(part("type"), other)),
    })
}

fn backend_refs(refs: &[RawBackendRef], at: &str) -> Lowered<Vec<BackendRef>> {
    // Sized ahead: collecting through `Result` starts a list at four references, and the
    // lowered rules are kept as long as their file (100,000 rules: 32 MB of lists holding
    // one reference each, heaptrack).
    let mut out = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        out.push(backend_ref(r, &format!("{at}[{i}]"))?);
    }
    Ok(out)
}

fn backend_ref(r: &RawBackendRef, at: &str) -> Lowered<BackendRef> {
    let name = r.name.clone().unwrap_or_default();
    let target = match r.kind.as_str() {
        "MeshService" if r.port.is_none() && r.section_name.is_none() => BackendTarget::Legacy {
            service: name,
            subset: Default::default(),
        },
        "MeshServiceSubset" => BackendTarget::Legacy {
            service: name,
            subset: r.tags.clone().unwrap_or_default(),
        },
        "MeshService" => BackendTarget::MeshService {
            name,
            namespace: r.namespace.clone(),
            port: match (r.port, &r.section_name) {
                (Some(p), _) => {
                    ServicePortRef::Number(required(values::port(p), &format!("{at}.port"))?)
                }
                (None, Some(section)) => ServicePortRef::Name(section.clone()),
                (None, None) => return Err(unreadable(at, "no port")),
            },
        },
        "MeshExternalService" => BackendTarget::MeshExternalService { name },
        other => BackendTarget::Unsupported {
            kind: other.to_string(),
            name,
        },
    };
    Ok(BackendRef {
        target,
        weight: match r.weight {
            None => 1,
            // Validation refuses a negative weight; a huge one is as good as the largest.
            Some(w) => u32::try_from(w.max(0)).unwrap_or(u32::MAX),
        },
    })
}

pub fn tcp_route(spec: &MeshTcpRoute) -> Lowered<TcpRoute> {
    let mut to = Vec::new();
    for (i, t) in spec.to.iter().enumerate() {
        let refs = t
            .rules
            .as_ref()
            .and_then(|r| r.first())
            .and_then(|r| r.default.as_ref())
            .and_then(|d| d.backend_refs.as_ref());
        to.push(TcpTo {
            backend_refs: match refs {
                Some(refs) => Some(backend_refs(
                    refs,
                    &format!("spec.to[{i}].rules[0].default.backendRefs"),
                )?),
                None => None,
            },
        });
    }
    Ok(TcpRoute {
        target: target(spec.target_ref.as_ref()),
        to,
    })
}
