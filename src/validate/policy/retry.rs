//! MeshRetry (K:`pkg/plugins/policies/meshretry/api/v1alpha1/validator.go`; spec §5.3).
//! Kuma roots every `default` path at `conf` (`spec.to[0].default.conf.http.retryOn[1]`).

use super::{
    check_top, count, duration, lower_to, no_section, outbound_to_kinds, policy, Sign, Top,
    ROUTE_POLICY_TOP,
};
use crate::model::policy::retry::{
    BackOff, GrpcRetry, GrpcRetryOn, HostPredicate, HttpRetry, HttpRetryOn, RateLimitedBackOff,
    ResetFormat, ResetHeader, RetryConf, TcpRetry,
};
use crate::model::policy::Policy;
use crate::resources::policy::retry::{self as raw, MeshRetry};
use crate::validate::lower::header_matches;
use crate::validate::messages::{schema, MUST_BE_DEFINED, MUST_NOT_BE_EMPTY};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;

const DEFINED_AND_POSITIVE: &str = "must be defined and greater than zero";

pub fn lower(r: &mut Report, spec: &MeshRetry) -> Option<Policy<RetryConf>> {
    let root = FieldPath::spec_of(r.meta());
    check_top(r, &root, spec.target_ref.as_ref(), &ROUTE_POLICY_TOP);
    let top = Top::of(spec.target_ref.as_ref());
    no_section(r, &root, "from", spec.from.as_ref());
    no_section(r, &root, "rules", spec.rules.as_ref());
    if spec.to.as_ref().is_none_or(Vec::is_empty) {
        r.add(&root.field("to"), "needs at least one item");
    }
    let to_kinds = outbound_to_kinds(&top);
    let to = lower_to(r, &root, spec.to.as_ref(), to_kinds, |r, at, d| {
        conf(r, &at.field("conf"), d)
    });
    Some(policy(r, spec, to, Vec::new()))
}

fn conf(r: &mut Report, at: &FieldPath, d: Option<&raw::RetryConf>) -> Option<RetryConf> {
    let empty = raw::RetryConf::default();
    let d = d.unwrap_or(&empty);
    if d.tcp.is_none() && d.http.is_none() && d.grpc.is_none() {
        r.add(
            at,
            "at least one of the 'tcp', 'http', 'grpc' must be specified",
        );
        return None;
    }
    Some(RetryConf {
        tcp: d.tcp.as_ref().map(|t| tcp(r, &at.field("tcp"), t)),
        http: d.http.as_ref().map(|h| http(r, &at.field("http"), h)),
        grpc: d.grpc.as_ref().map(|g| grpc(r, &at.field("grpc"), g)),
    })
}

fn tcp(r: &mut Report, at: &FieldPath, t: &raw::TcpRetry) -> TcpRetry {
    let max_connect_attempt = match t.max_connect_attempt {
        None => {
            r.add(at, MUST_NOT_BE_EMPTY);
            None
        }
        Some(n) => count(r, &at.field("maxConnectAttempt"), n, true),
    };
    TcpRetry {
        max_connect_attempt,
    }
}

/// The fields the `http` and `grpc` sections share, read alike.
struct Common<T> {
    num_retries: Option<u32>,
    per_try_timeout: Option<std::time::Duration>,
    back_off: Option<BackOff>,
    rate_limited_back_off: Option<RateLimitedBackOff>,
    retry_on: Option<Vec<T>>,
}

/// The shared fields as written.
struct RawCommon<'a> {
    num_retries: Option<i64>,
    per_try_timeout: Option<&'a String>,
    back_off: Option<&'a raw::BackOff>,
    rate_limited_back_off: Option<&'a raw::RateLimitedBackOff>,
    retry_on: Option<&'a Vec<String>>,
}

fn common<T>(
    r: &mut Report,
    at: &FieldPath,
    raw: RawCommon,
    parse: fn(&str) -> Option<T>,
) -> Common<T> {
    let RawCommon {
        num_retries,
        per_try_timeout,
        back_off: b,
        rate_limited_back_off: rlb,
        retry_on,
    } = raw;
    Common {
        num_retries: num_retries.and_then(|n| count(r, &at.field("numRetries"), n, false)),
        per_try_timeout: duration(
            r,
            &at.field("perTryTimeout"),
            per_try_timeout,
            Sign::NotNegative,
        ),
        back_off: b.map(|b| back_off(r, &at.field("backOff"), b)),
        rate_limited_back_off: rlb
            .map(|b| rate_limited_back_off(r, &at.field("rateLimitedBackOff"), b)),
        retry_on: retry_on.map(|list| {
            let at = at.field("retryOn");
            list.iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let parsed = parse(item);
                    if parsed.is_none() {
                        r.add(&at.index(i), format!("unknown item '{item}'"));
                    }
                    parsed
                })
                .collect()
        }),
    }
}

fn http(r: &mut Report, at: &FieldPath, h: &raw::HttpRetry) -> HttpRetry {
    if h.num_retries.is_none()
        && h.per_try_timeout.is_none()
        && h.back_off.is_none()
        && h.retry_on.is_none()
        && h.retriable_request_headers.is_none()
        && h.retriable_response_headers.is_none()
        && h.rate_limited_back_off.is_none()
        && h.host_selection.is_none()
    {
        r.add(at, MUST_NOT_BE_EMPTY);
    }
    let c = common(
        r,
        at,
        RawCommon {
            num_retries: h.num_retries,
            per_try_timeout: h.per_try_timeout.as_ref(),
            back_off: h.back_off.as_ref(),
            rate_limited_back_off: h.rate_limited_back_off.as_ref(),
            retry_on: h.retry_on.as_ref(),
        },
        http_retry_on,
    );
    HttpRetry {
        num_retries: c.num_retries,
        per_try_timeout: c.per_try_timeout,
        back_off: c.back_off,
        rate_limited_back_off: c.rate_limited_back_off,
        retry_on: c.retry_on,
        retriable_response_headers: h
            .retriable_response_headers
            .as_ref()
            .and_then(|l| headers(r, &at.field("retriableResponseHeaders"), l)),
        retriable_request_headers: h
            .retriable_request_headers
            .as_ref()
            .and_then(|l| headers(r, &at.field("retriableRequestHeaders"), l)),
        host_selection: h
            .host_selection
            .as_ref()
            .map(|l| host_selection(r, &at.field("hostSelection"), l)),
        host_selection_max_attempts: h
            .host_selection_max_attempts
            .and_then(|n| count(r, &at.field("hostSelectionMaxAttempts"), n, false)),
    }
}

fn grpc(r: &mut Report, at: &FieldPath, g: &raw::GrpcRetry) -> GrpcRetry {
    if g.num_retries.is_none()
        && g.per_try_timeout.is_none()
        && g.back_off.is_none()
        && g.retry_on.is_none()
        && g.rate_limited_back_off.is_none()
    {
        r.add(at, MUST_NOT_BE_EMPTY);
    }
    let c = common(
        r,
        at,
        RawCommon {
            num_retries: g.num_retries,
            per_try_timeout: g.per_try_timeout.as_ref(),
            back_off: g.back_off.as_ref(),
            rate_limited_back_off: g.rate_limited_back_off.as_ref(),
            retry_on: g.retry_on.as_ref(),
        },
        grpc_retry_on,
    );
    GrpcRetry {
        num_retries: c.num_retries,
        per_try_timeout: c.per_try_timeout,
        back_off: c.back_off,
        rate_limited_back_off: c.rate_limited_back_off,
        retry_on: c.retry_on,
    }
}

fn back_off(r: &mut Report, at: &FieldPath, b: &raw::BackOff) -> BackOff {
    if b.base_interval.is_none() && b.max_interval.is_none() {
        r.add(at, MUST_NOT_BE_EMPTY);
    }
    BackOff {
        base_interval: duration(
            r,
            &at.field("baseInterval"),
            b.base_interval.as_ref(),
            Sign::Positive,
        ),
        max_interval: duration(
            r,
            &at.field("maxInterval"),
            b.max_interval.as_ref(),
            Sign::Positive,
        ),
    }
}

fn rate_limited_back_off(
    r: &mut Report,
    at: &FieldPath,
    b: &raw::RateLimitedBackOff,
) -> RateLimitedBackOff {
    let max_interval = b.max_interval.as_ref().and_then(|s| {
        let d = duration(r, &at.field("maxInterval"), Some(s), Sign::NotNegative);
        if d.is_some_and(|d| d.is_zero()) {
            r.add(&at.field("maxInterval"), DEFINED_AND_POSITIVE);
            return None;
        }
        d
    });
    let reset_headers = match &b.reset_headers {
        None => {
            r.add(&at.field("resetHeaders"), MUST_BE_DEFINED);
            None
        }
        Some(list) => Some(
            list.iter()
                .enumerate()
                .filter_map(|(i, h)| reset_header(r, &at.field("resetHeaders").index(i), h))
                .collect(),
        ),
    };
    RateLimitedBackOff {
        reset_headers,
        max_interval,
    }
}

fn reset_header(r: &mut Report, at: &FieldPath, h: &raw::ResetHeader) -> Option<ResetHeader> {
    let name = match h.name.as_deref().filter(|n| !n.is_empty()) {
        None => {
            r.add(&at.field("name"), MUST_BE_DEFINED);
            None
        }
        Some(n) => match http::HeaderName::from_bytes(n.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                r.add(&at.field("name"), format!("invalid header name {n:?}"));
                None
            }
        },
    };
    let format = match h.format.as_deref() {
        Some("Seconds") => Some(ResetFormat::Seconds),
        Some("UnixTimestamp") => Some(ResetFormat::UnixTimestamp),
        None => {
            r.add(&at.field("format"), schema::REQUIRED);
            None
        }
        Some(_) => {
            r.add(
                &at.field("format"),
                schema::one_of(&["Seconds", "UnixTimestamp"]),
            );
            None
        }
    };
    Some(ResetHeader {
        name: name?,
        format: format?,
    })
}

fn headers(
    r: &mut Report,
    at: &FieldPath,
    list: &[crate::resources::http_route::HeaderMatch],
) -> Option<Vec<crate::model::route::HeaderMatch>> {
    const TYPES: &[&str] = &["Exact", "Present", "RegularExpression", "Absent", "Prefix"];
    let mut ok = true;
    for (i, h) in list.iter().enumerate() {
        let hat = at.index(i);
        if h.name.is_empty() {
            r.add(&hat.field("name"), MUST_BE_DEFINED);
            ok = false;
        } else if http::HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            r.add(
                &hat.field("name"),
                format!("invalid header name {:?}", h.name),
            );
            ok = false;
        }
        if let Some(t) = h.match_type.as_deref() {
            if !TYPES.contains(&t) {
                r.add(&hat.field("type"), schema::one_of(TYPES));
                ok = false;
            }
        }
        if matches!(h.match_type.as_deref(), Some("RegularExpression")) {
            let pattern = h.value.as_deref().unwrap_or("");
            if let Err(e) = crate::snapshot::regex::full_match_regex(pattern) {
                r.add(
                    &hat.field("value"),
                    format!("invalid regular expression: {e}"),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    match header_matches(list, at.as_str()) {
        Ok(l) => Some(l),
        Err(e) => {
            r.add(&FieldPath::root().field(&e.field), e.what);
            None
        }
    }
}

fn host_selection(r: &mut Report, at: &FieldPath, list: &[raw::Predicate]) -> Vec<HostPredicate> {
    let mut out = Vec::new();
    let mut priorities_seen = false;
    for (i, p) in list.iter().enumerate() {
        let pat = at.index(i);
        let kind = p.predicate.as_deref().unwrap_or("");
        match kind {
            "OmitPreviousHosts" => out.push(HostPredicate::OmitPreviousHosts),
            "OmitHostsWithTags" => match &p.tags {
                None => r.add(&pat.field("tags"), MUST_BE_DEFINED),
                Some(tags) => out.push(HostPredicate::OmitHostsWithTags(tags.clone())),
            },
            "OmitPreviousPriorities" => {
                if priorities_seen {
                    r.add(
                        &pat.field("predicate"),
                        "OmitPreviousPriorities must only be specified once",
                    );
                }
                priorities_seen = true;
                match p.update_frequency.and_then(|f| u32::try_from(f).ok()) {
                    Some(f) if f > 0 => out.push(HostPredicate::OmitPreviousPriorities {
                        update_frequency: f,
                    }),
                    _ => r.add(&pat.field("updateFrequency"), DEFINED_AND_POSITIVE),
                }
            }
            other => r.add(
                &pat.field("predicate"),
                format!("unknown predicate type '{other}'"),
            ),
        }
    }
    out
}

/// A `retryOn` item in Kuma's case-sensitive spelling; a number must be a status code Go's
/// `http.StatusText` knows.
fn http_retry_on(s: &str) -> Option<HttpRetryOn> {
    Some(match s {
        "5xx" => HttpRetryOn::FiveXx,
        "GatewayError" => HttpRetryOn::GatewayError,
        "Reset" => HttpRetryOn::Reset,
        "Retriable4xx" => HttpRetryOn::Retriable4xx,
        "ConnectFailure" => HttpRetryOn::ConnectFailure,
        "EnvoyRatelimited" => HttpRetryOn::EnvoyRatelimited,
        "RefusedStream" => HttpRetryOn::RefusedStream,
        "Http3PostConnectFailure" => HttpRetryOn::Http3PostConnectFailure,
        _ => {
            if let Some(m) = s.strip_prefix("HttpMethod") {
                const METHODS: &[&str] = &[
                    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
                ];
                return METHODS
                    .contains(&m)
                    .then(|| http::Method::from_bytes(m.as_bytes()).ok())
                    .flatten()
                    .map(HttpRetryOn::Method);
            }
            let code: u16 = s.parse().ok()?;
            if !go_status_text_known(code) {
                return None;
            }
            HttpRetryOn::Status(code)
        }
    })
}

/// The status codes Go's `net/http.StatusText` names.
fn go_status_text_known(code: u16) -> bool {
    matches!(code,
        100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428
        | 429 | 431 | 451 | 500..=508 | 510 | 511)
}

fn grpc_retry_on(s: &str) -> Option<GrpcRetryOn> {
    Some(match s {
        "Canceled" => GrpcRetryOn::Canceled,
        "DeadlineExceeded" => GrpcRetryOn::DeadlineExceeded,
        "Internal" => GrpcRetryOn::Internal,
        "ResourceExhausted" => GrpcRetryOn::ResourceExhausted,
        "Unavailable" => GrpcRetryOn::Unavailable,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn doc(default: &str) -> String {
        format!("type: MeshRetry\nname: r\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n  - targetRef: {{kind: Mesh}}\n    default:\n{default}")
    }

    #[test]
    fn kuma_default_policy_is_valid() {
        assert_yaml(
            &doc("      tcp: {maxConnectAttempt: 5}\n      http: {numRetries: 5, perTryTimeout: 16s, backOff: {baseInterval: 25ms, maxInterval: 250ms}}\n      grpc: {numRetries: 5, perTryTimeout: 16s, backOff: {baseInterval: 25ms, maxInterval: 250ms}}\n"),
            &[],
        );
    }

    #[test]
    fn retry_on_items_are_case_sensitive_and_codes_must_be_known() {
        assert_yaml(
            &doc("      http:\n        retryOn: [5xx, 5XX, reset, \"409\", \"123\", \"952\", HttpMethodGET, HttpMethodFOO]\n"),
            &[
                "spec.to[0].default.conf.http.retryOn[1]: unknown item '5XX'",
                "spec.to[0].default.conf.http.retryOn[2]: unknown item 'reset'",
                "spec.to[0].default.conf.http.retryOn[4]: unknown item '123'",
                "spec.to[0].default.conf.http.retryOn[5]: unknown item '952'",
                "spec.to[0].default.conf.http.retryOn[7]: unknown item 'HttpMethodFOO'",
            ],
        );
    }

    #[test]
    fn sections_must_not_be_empty() {
        assert_yaml(
            &doc("      tcp: {}\n      http: {}\n      grpc: {retryOn: [Nope]}\n"),
            &[
                "spec.to[0].default.conf.tcp: must not be empty",
                "spec.to[0].default.conf.http: must not be empty",
                "spec.to[0].default.conf.grpc.retryOn[0]: unknown item 'Nope'",
            ],
        );
        assert_yaml(
            &doc("      tcp: {maxConnectAttempt: 0}\n"),
            &["spec.to[0].default.conf.tcp.maxConnectAttempt: must be greater than 0"],
        );
        assert_yaml(
            &doc("      {}\n"),
            &["spec.to[0].default.conf: at least one of the 'tcp', 'http', 'grpc' must be specified"],
        );
    }

    #[test]
    fn back_off_and_host_selection() {
        assert_yaml(
            &doc("      http:\n        backOff: {}\n        rateLimitedBackOff: {maxInterval: 0s}\n        hostSelection:\n        - predicate: OmitHostsWithTags\n        - predicate: OmitPreviousPriorities\n        - predicate: OmitPreviousPriorities\n          updateFrequency: 2\n        - predicate: Other\n"),
            &[
                "spec.to[0].default.conf.http.backOff: must not be empty",
                "spec.to[0].default.conf.http.rateLimitedBackOff.maxInterval: must be defined and greater than zero",
                "spec.to[0].default.conf.http.rateLimitedBackOff.resetHeaders: must be defined",
                "spec.to[0].default.conf.http.hostSelection[0].tags: must be defined",
                "spec.to[0].default.conf.http.hostSelection[1].updateFrequency: must be defined and greater than zero",
                "spec.to[0].default.conf.http.hostSelection[2].predicate: OmitPreviousPriorities must only be specified once",
                "spec.to[0].default.conf.http.hostSelection[3].predicate: unknown predicate type 'Other'",
            ],
        );
    }

    #[test]
    fn gateway_scope_narrows_to_kinds() {
        assert_yaml(
            "type: MeshRetry\nname: r\nmesh: default\nspec:\n  targetRef: {kind: MeshGateway, name: gw}\n  to:\n  - targetRef: {kind: MeshService, name: a}\n    default: {http: {numRetries: 1}}\n",
            &["spec.to[0].targetRef.kind: value 'MeshService' is not supported"],
        );
        assert_yaml(
            "type: MeshRetry\nname: r\nmesh: default\nspec:\n  targetRef: {kind: Mesh}\n",
            &["spec.to: needs at least one item"],
        );
    }
}
