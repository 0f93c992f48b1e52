//! What a matched route entry does: forward (with filters) or redirect (semantics §5).

use super::backends::{Backend, WeightedBackends};
use super::policy::RoutePolicies;
use super::rate_limit::HttpLimit;
use http::{HeaderName, HeaderValue};
use std::sync::Arc;

/// set / add / remove of one header modifier filter (or several, accumulated in order).
#[derive(Debug, Clone, Default)]
pub struct HeaderMods {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderMods {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    pub fn extend(&mut self, other: HeaderMods) {
        self.set.extend(other.set);
        self.add.extend(other.add);
        self.remove.extend(other.remove);
    }

    /// Applies the modifier as Gateway API orders it: remove, then set, then add.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// How an entry rewrites the path, already specialised for that entry by the PathPrefix
/// expansion (§5.3): the `/p/` prefix entry replaces the matched prefix, the synthesized exact
/// `/p` entry replaces the whole path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRewrite {
    /// Replace the whole path; the query is kept.
    Full(String),
    /// Replace the byte prefix `matched` with `replacement`.
    Prefix {
        matched: String,
        replacement: String,
    },
}

impl PathRewrite {
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathRewrite::Full(p) => p.clone(),
            PathRewrite::Prefix {
                matched,
                replacement,
            } => match path.strip_prefix(matched.as_str()) {
                Some(rest) => format!("{replacement}{rest}"),
                None => path.to_string(),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub enum HostRewrite {
    /// Compiled to a header value once, not per request.
    Literal(http::HeaderValue),
    /// `hostToBackendHostname`: the chosen endpoint's DNS name, when it has one.
    BackendHostname,
}

#[derive(Debug, Clone)]
pub struct Mirror {
    pub backend: Arc<Backend>,
    /// 0.0..=1.0
    pub fraction: f64,
}

#[derive(Debug, Clone)]
pub struct Forward {
    pub backends: WeightedBackends,
    pub request_headers: HeaderMods,
    pub response_headers: HeaderMods,
    pub host_rewrite: Option<HostRewrite>,
    pub mirror: Option<Mirror>,
    /// Timeouts, retries and rate-limit settings, shared by every rule they apply to.
    pub policies: Arc<RoutePolicies>,
    /// This rule's own rate-limit bucket (Envoy keeps one per route entry).
    pub rate_limit: Option<Arc<HttpLimit>>,
}

#[derive(Debug, Clone)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub enum Action {
    Forward(Box<Forward>),
    Redirect(Redirect),
}

impl Action {
    /// What the action forwards with, when it forwards.
    pub fn forward(&self) -> Option<&Forward> {
        match self {
            Action::Forward(f) => Some(f),
            Action::Redirect(_) => None,
        }
    }

    /// The backends the action sends to, the mirror's included.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        let forward = match self {
            Action::Forward(f) => Some(f),
            Action::Redirect(_) => None,
        };
        forward.into_iter().flat_map(|f| {
            f.backends
                .backends()
                .chain(f.mirror.as_ref().map(|m| &m.backend))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(m: &str, r: &str) -> PathRewrite {
        PathRewrite::Prefix {
            matched: m.into(),
            replacement: r.into(),
        }
    }

    #[test]
    fn replace_prefix_keeps_the_rest_of_the_path() {
        // §5.3: /p/rest -> /r/rest
        assert_eq!(prefix("/p/", "/r/").apply("/p/rest"), "/r/rest");
        assert_eq!(prefix("/p/", "/r/").apply("/p/"), "/r/");
        // replacement `/`: /p/rest -> /rest
        assert_eq!(prefix("/p/", "/").apply("/p/rest"), "/rest");
        // root prefix with /a/b: /x -> /a/b/x
        assert_eq!(prefix("/", "/a/b/").apply("/x"), "/a/b/x");
    }
}
