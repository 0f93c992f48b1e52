//! Generated input never makes meshgate panic: arbitrary YAML documents and resource trees go
//! through load + validate + compile, arbitrary request heads through the request checks and
//! the routing decision. Every rejection of a document is a violation naming where it is and
//! what is wrong.
//!
//! `cargo test` runs a bounded number of cases (PROPTEST_CASES, default 64 per property); the
//! long run is `PROPTEST_CASES=20000 cargo test --release --test integration properties::`.

use meshgate::compile::{CompileOptions, Compiler, SourceFile};
use meshgate::testkit::{catch_all_route, dataplanes, gateway_one_http, Routing};
use proptest::prelude::*;
use serde_norway::{Mapping, Value};

/// Field names and values Kuma resources use, so generated trees reach deep into the
/// validators and the compiler instead of stopping at the first unknown key.
const KEYS: &[&str] = &[
    "type",
    "name",
    "mesh",
    "spec",
    "targetRef",
    "kind",
    "to",
    "from",
    "rules",
    "matches",
    "path",
    "value",
    "default",
    "backendRefs",
    "port",
    "listeners",
    "protocol",
    "hostname",
    "hostnames",
    "tags",
    "selectors",
    "match",
    "conf",
    "filters",
    "requestHeaderModifier",
    "set",
    "add",
    "remove",
    "headers",
    "queryParams",
    "method",
    "weight",
    "tls",
    "mode",
    "certificates",
    "networking",
    "address",
    "inbound",
    "gateway",
    "requestRedirect",
    "statusCode",
    "urlRewrite",
    "requestMirror",
    "percentage",
    "backendRef",
    "sectionName",
    "http",
    "requestTimeout",
    "connectionTimeout",
    "apiVersion",
    "metadata",
    "labels",
];
const STRINGS: &[&str] = &[
    "MeshGateway",
    "MeshHTTPRoute",
    "MeshTCPRoute",
    "Dataplane",
    "MeshService",
    "MeshExternalService",
    "MeshTimeout",
    "Secret",
    "Mesh",
    "default",
    "edge-gateway",
    "HTTP",
    "HTTPS",
    "TCP",
    "TLS",
    "PathPrefix",
    "Exact",
    "RegularExpression",
    "/",
    "/a",
    "a.test",
    "*.test",
    "*",
    "RequestHeaderModifier",
    "URLRewrite",
    "RequestRedirect",
    "RequestMirror",
    "ReplacePrefixMatch",
    "ReplaceFullPath",
    "1s",
    "-1s",
    "0",
    "abc",
    "kuma.io/service",
    "127.0.0.1",
    "x-h",
    "GET",
    "(",
    "[a-z]+",
    "TERMINATE",
    "PASSTHROUGH",
    "",
    "\u{0}",
    "é",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(STRINGS).prop_map(|s| Value::String(s.to_string())),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        (0i64..70000).prop_map(|n| Value::Number(n.into())),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        ".{0,12}".prop_map(Value::String),
    ]
}

/// A YAML tree of Kuma-like shape, a few levels deep.
fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|pairs| {
                let mut m = Mapping::new();
                for (k, v) in pairs {
                    m.insert(Value::String(k.to_string()), v);
                }
                Value::Mapping(m)
            }),
        ]
    })
}

/// A document that is a resource of a known kind with a generated body.
fn resource() -> impl Strategy<Value = Value> {
    (prop::sample::select(&STRINGS[..8]), tree(), any::<bool>()).prop_map(|(kind, body, nested)| {
        let mut m = match body {
            Value::Mapping(m) if !nested => m,
            other => {
                let mut m = Mapping::new();
                m.insert(Value::String("spec".into()), other);
                m
            }
        };
        m.insert(Value::String("type".into()), Value::String(kind.into()));
        m.insert(Value::String("name".into()), Value::String("gen".into()));
        m.insert(
            Value::String("mesh".into()),
            Value::String("default".into()),
        );
        Value::Mapping(m)
    })
}

/// Builds `files` with a fresh compiler; a rejection must name a file and say why.
fn build_checks_violations(files: Vec<(String, String)>) -> Result<(), TestCaseError> {
    let sources: Vec<SourceFile> = files
        .into_iter()
        .map(|(name, text)| SourceFile {
            name,
            text: Ok(text).into(),
        })
        .collect();
    let mut compiler = Compiler::new(CompileOptions::default());
    if let Err(rejected) = compiler.build(&sources, 1) {
        prop_assert!(!rejected.violations.is_empty());
        for v in &rejected.violations {
            prop_assert!(!v.message.trim().is_empty(), "an empty message: {v:?}");
            let line = v.to_string();
            prop_assert!(
                line.starts_with(&v.origin.file) || v.origin.file.is_empty(),
                "the line does not start with its file: {line}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any text at all as a policy file.
    #[test]
    fn arbitrary_text_is_refused_or_built_never_a_panic(text in ".{0,400}") {
        build_checks_violations(vec![("any.yaml".into(), text)])?;
    }

    /// Kuma-shaped resource trees beside a valid gateway, route and backends: every
    /// validator and the compiler see them.
    #[test]
    fn generated_resources_are_refused_or_built_never_a_panic(
        docs in prop::collection::vec(resource(), 1..4)
    ) {
        let generated = docs
            .iter()
            .map(|d| serde_norway::to_string(d).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("---\n");
        build_checks_violations(vec![
            ("gateway.yaml".into(), gateway_one_http().replace("@LPORT:1@", "8080")),
            ("route.yaml".into(), catch_all_route("route", "v1")),
            ("dataplanes.yaml".into(), dataplanes(&["v1"]).replace("@PORT:v1@", "9000")),
            ("generated.yaml".into(), generated),
        ])?;
    }

    /// Arbitrary request heads get a decision: refused, answered locally or routed.
    #[test]
    fn arbitrary_requests_get_a_decision_never_a_panic(
        method in prop::sample::select(&["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-CUSTOM"][..]),
        path in "/[!-~]{0,60}",
        host in "[a-zA-Z0-9.:\\[\\]_-]{0,30}",
        headers in prop::collection::vec(("[a-z_-]{1,12}", "[ -~]{0,20}"), 0..8),
    ) {
        thread_local! {
            static ROUTING: Routing = Routing::build(&[
                ("gateway.yaml", gateway_one_http()),
                ("route.yaml", catch_all_route("route", "v1")),
                ("dataplanes.yaml", dataplanes(&["v1"])),
            ]);
        }
        let headers: Vec<(&str, &str)> =
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        ROUTING.with(|r| {
            if let Some(answer) = r.try_request(1, method, &path, &host, &headers) {
                assert!(
                    answer.status.is_some() || answer.backend.is_some(),
                    "no decision for {method} {path}: {answer:?}"
                );
            }
        });
    }
}
