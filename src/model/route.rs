//! MeshHTTPRoute and MeshTCPRoute after validation.

use super::target::TargetRef;
use crate::resources::common::Tags;
use crate::resources::http_route::HttpMatch as RawMatch;
use http::{HeaderName, HeaderValue, Method};

#[derive(Debug, Clone)]
pub struct HttpRoute {
    pub target: TargetRef,
    pub to: Vec<HttpTo>,
}

#[derive(Debug, Clone)]
pub struct HttpTo {
    /// Lower case; empty for the generic group.
    pub hostnames: Vec<String>,
    pub rules: Vec<HttpRule>,
}

#[derive(Debug, Clone)]
pub struct HttpRule {
    /// Empty: one match that matches every request (§4.1).
    pub matches: Vec<HttpMatch>,
    /// The matches as written: Kuma merges the rules of one hostname whose `matches` are
    /// deep-equal as written (§4.7), so a rule with `type: Exact` spelled out and one relying
    /// on the default stay apart, as in Kuma.
    pub written_matches: Vec<RawMatch>,
    /// A hash of `written_matches`, taken once when the file is read: every build groups
    /// every rule by it, and hashing the matches themselves each time was a tenth of a
    /// 100,000-rule rebuild.
    pub written_matches_hash: u64,
    /// `default.filters` (`None`: not set, which matters to merging).
    pub filters: Option<Vec<Filter>>,
    /// `default.backendRefs` (`None`: not set).
    pub backend_refs: Option<Vec<BackendRef>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HttpMatch {
    pub path: Option<PathMatch>,
    pub method: Option<Method>,
    /// Kuma drops an `Exact` header match with an empty value (§4.3); so does lowering.
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathMatch {
    Exact(String),
    /// Without a trailing `/` (validation refuses one), `/` for the root.
    Prefix(String),
    /// An RE2 pattern, anchored when compiled.
    Regex(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderMatch {
    Exact(HeaderName, String),
    Present(HeaderName),
    Absent(HeaderName),
    Prefix(HeaderName, String),
    Regex(HeaderName, String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueryMatch {
    Exact(String, String),
    Regex(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    RequestHeaderModifier(HeaderModifier),
    ResponseHeaderModifier(HeaderModifier),
    RequestRedirect(Redirect),
    UrlRewrite(UrlRewrite),
    RequestMirror(Mirror),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HeaderModifier {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathRewrite>,
    pub port: Option<u16>,
    /// 301, 302 (Kuma's default), 303, 307 or 308.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlRewrite {
    /// The `Host` to send, ready as a header value.
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathRewrite>,
    pub host_to_backend_hostname: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathRewrite {
    ReplaceFullPath(String),
    ReplacePrefixMatch(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mirror {
    pub backend: BackendRef,
    /// Share of requests copied, in millionths (1,000,000 = all).
    pub per_million: u32,
}

/// A `backendRefs[]` entry (or a mirror's `backendRef`) and what it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendRef {
    pub target: BackendTarget,
    /// Kuma's default is 1.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendTarget {
    /// `MeshService NAME` without a port, or `MeshServiceSubset NAME` with `tags`: the
    /// Dataplane inbounds tagged `kuma.io/service: NAME` (and the subset's tags).
    Legacy {
        service: String,
        subset: Tags,
    },
    /// `MeshService NAME` with `port` or `sectionName`: a real MeshService's port.
    MeshService {
        name: String,
        namespace: Option<String>,
        port: ServicePortRef,
    },
    MeshExternalService {
        name: String,
    },
    /// A kind meshgate does not route to (`MeshMultiZoneService`): requests get 500.
    Unsupported {
        kind: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServicePortRef {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone)]
pub struct TcpRoute {
    pub target: TargetRef,
    pub to: Vec<TcpTo>,
}

#[derive(Debug, Clone)]
pub struct TcpTo {
    /// `rules[0].default.backendRefs` (a MeshTCPRoute has at most one rule), `None` when
    /// not set.
    pub backend_refs: Option<Vec<BackendRef>>,
}
