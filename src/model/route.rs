//! MeshHTTPRoute and MeshTCPRoute after validation.

use super::target::TargetRef;
use crate::resources::common::Tags;
use crate::resources::http_route::HttpMatch as RawMatch;
use http::{HeaderName, HeaderValue, Method};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::LazyLock;

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
    pub written_matches: WrittenMatches,
    /// `default.filters` (`None`: not set, which matters to merging).
    pub filters: Option<Vec<Filter>>,
    /// `default.backendRefs` (`None`: not set).
    pub backend_refs: Option<Vec<BackendRef>>,
}

/// A rule's `matches` as written, kept only to be compared: a 128-bit keyed digest of them.
/// Equal matches give equal digests; different ones collide with probability ~2⁻¹²⁸ per
/// pair, and the keys are drawn at random per process, so no file can be written to
/// collide with another. Every build keeps every rule's, and the matches themselves would
/// take 11 MB (JSON-encoded) to 25 MB (cloned) of a 100,000-rule directory (heaptrack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenMatches(u128);

impl WrittenMatches {
    pub fn new(matches: &[RawMatch]) -> WrittenMatches {
        // Two SipHash-1-3 keys (std's RandomState), drawn once: builds of one process must
        // agree, as the compiler keeps unchanged files' rules from earlier builds.
        static KEYS: LazyLock<[RandomState; 2]> =
            LazyLock::new(|| [RandomState::new(), RandomState::new()]);
        // The derived Hash writes lengths and enum tags, so it encodes the value unambiguously.
        let [low, high] = &*KEYS;
        WrittenMatches(u128::from(high.hash_one(matches)) << 64 | u128::from(low.hash_one(matches)))
    }
}

impl Hash for WrittenMatches {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 as u64);
    }
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
