//! Kuma's validation rules (semantics §2), applied to every resource of a directory.
//!
//! Entry point: [`validate`]. It never stops at the first problem and never panics; each
//! problem is a [`Violation`] carrying Kuma's field path and wording, e.g.
//! `routes.yaml: document 2: MeshHTTPRoute/edge-route: spec.to[0].rules[0].matches[0].path.value: must be an absolute path`.
//!
//! Layout (one job per module):
//! - per resource kind: [`gateway`], [`dataplane`], [`http_route`] (with [`http_match`] and
//!   [`http_filter`]), [`tcp_route`], [`services`], [`secret`]; [`meta`] for names/meshes;
//! - shared rules: [`route_target`] (policy and `to[]` targetRefs), [`target_ref`]
//!   (Kuma's `ValidateTargetRef`), [`backend_ref`], [`tags`], [`hostname`], [`datasource`],
//!   [`user_regex`];
//! - plumbing: [`path`] (field-path builder), [`report`] (violation sink), [`messages`]
//!   (Kuma's wording, Go validators and OpenAPI schema).
//!
//! Kuma validates new-style resources against their OpenAPI schema first and only then runs
//! its Go validator; meshgate reports both kinds of problems in one pass. Rules Kuma does not
//! have are marked "meshgate" where they are implemented.

mod backend_ref;
mod dataplane;
mod datasource;
mod gateway;
mod hostname;
mod http_filter;
pub(crate) mod http_match;
mod http_route;
mod messages;
mod meta;
mod path;
mod report;
mod route_target;
mod secret;
mod services;
mod tags;
mod target_ref;
mod tcp_route;
mod user_regex;

#[cfg(test)]
mod testutil;

pub mod lower;
pub mod policy;
pub mod values;

use crate::model::policy::PolicySet;
use crate::model::{Valid, ValidSet};
use crate::resources::{Meta, Res, ResourceSet, Shared};
use crate::violation::Violation;
use lower::Lowered;
use report::Report;
use std::sync::Arc;

/// What validation made of a set of resources: every problem, and the valid resources
/// lowered into [`crate::model`] values (complete only when there is no problem).
#[derive(Debug, Default)]
pub struct Validated {
    pub valid: ValidSet,
    pub violations: Vec<Violation>,
    /// Lines `--check` prints without failing: kinds and parts meshgate does not apply.
    pub warnings: Vec<String>,
}

/// Checks every resource in `set` against Kuma's rules and lowers the valid ones.
pub fn validate(set: &ResourceSet) -> Validated {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let valid = ValidSet {
        gateways: check_all(
            &set.gateways,
            &mut out,
            gateway::validate_gateway,
            |m, s| lower::gateway(s, m.spec_prefix()),
        ),
        dataplanes: check_all(
            &set.dataplanes,
            &mut out,
            dataplane::validate_dataplane,
            |_, s| lower::dataplane(s),
        ),
        http_routes: check_all(
            &set.http_routes,
            &mut out,
            http_route::validate_http_route,
            |_, s| lower::http_route(s),
        ),
        tcp_routes: check_all(
            &set.tcp_routes,
            &mut out,
            tcp_route::validate_tcp_route,
            |_, s| lower::tcp_route(s),
        ),
        mesh_services: check_all(
            &set.mesh_services,
            &mut out,
            services::validate_mesh_service,
            |_, s| lower::mesh_service(s),
        ),
        external_services: check_all(
            &set.external_services,
            &mut out,
            services::validate_external_service,
            |_, s| lower::external_service(s),
        ),
        secrets: check_all(&set.secrets, &mut out, secret::validate_secret, |m, s| {
            lower::secret(s, m.spec_prefix())
        }),
        policies: PolicySet {
            timeouts: check_policies(
                &set.timeouts,
                &mut out,
                &mut warnings,
                policy::timeout::lower,
            ),
            retries: check_policies(&set.retries, &mut out, &mut warnings, policy::retry::lower),
            rate_limits: check_policies(
                &set.rate_limits,
                &mut out,
                &mut warnings,
                policy::rate_limit::lower,
            ),
            faults: check_policies(&set.faults, &mut out, &mut warnings, policy::fault::lower),
            health_checks: check_policies(
                &set.health_checks,
                &mut out,
                &mut warnings,
                policy::health_check::lower,
            ),
            circuit_breakers: check_policies(
                &set.circuit_breakers,
                &mut out,
                &mut warnings,
                policy::circuit_breaker::lower,
            ),
            load_balancing: check_policies(
                &set.load_balancing,
                &mut out,
                &mut warnings,
                policy::load_balancing::lower,
            ),
            access_logs: check_policies(
                &set.access_logs,
                &mut out,
                &mut warnings,
                policy::access_log::lower,
            ),
            traces: check_policies(&set.traces, &mut out, &mut warnings, policy::trace::lower),
            otel_backends: check_all(
                &set.otel_backends,
                &mut out,
                policy::trace::check_backend,
                policy::trace::lower_backend,
            ),
        },
        skipped: set.skipped.clone(),
    };
    for res in &set.not_applied {
        let before = out.len();
        let mut report = Report::new(&res.meta, &mut out);
        meta::validate_meta(&mut report);
        policy::not_applied::check(&mut report, &res.spec);
        if out.len() == before {
            warnings.extend(policy::not_applied::warning(&res.meta));
        }
    }
    // Report in file order, as the user reads the directory.
    out.sort_by(|a, b| a.origin.cmp(&b.origin));
    Validated {
        valid,
        violations: out,
        warnings,
    }
}

/// Checks and lowers every policy of one kind. A policy Kuma would give a non-system role
/// (a Kubernetes policy outside Kuma's namespace) selects workloads by namespace, which has
/// no meaning standalone: it is checked, then skipped with a warning.
fn check_policies<T, C>(
    resources: &[Shared<T>],
    out: &mut Vec<Violation>,
    warnings: &mut Vec<String>,
    lower: fn(&mut Report, &T) -> Option<crate::model::policy::Policy<C>>,
) -> Vec<Valid<crate::model::policy::Policy<C>>> {
    let mut valid = Vec::with_capacity(resources.len());
    for res in resources {
        let before = out.len();
        let mut report = Report::new(&res.meta, out);
        meta::validate_meta(&mut report);
        let lowered = lower(&mut report, &res.spec);
        if out.len() > before {
            continue;
        }
        let Some(spec) = lowered else { continue };
        if !route_target::is_system_role(&res.meta) {
            warnings.push(format!(
                "{}: {}: not applied by meshgate: a policy outside Kuma's system namespace selects workloads by namespace",
                res.meta.origin,
                res.meta.display_name()
            ));
            continue;
        }
        valid.push(Arc::new(Res {
            meta: res.meta.clone(),
            spec,
        }));
    }
    valid
}

/// Runs the name/mesh rules and `rules` on every resource of one kind, and lowers each one
/// they found nothing wrong with.
fn check_all<T, M>(
    resources: &[Shared<T>],
    out: &mut Vec<Violation>,
    rules: fn(&mut Report, &T),
    lower: impl Fn(&Meta, &T) -> Lowered<M>,
) -> Vec<Valid<M>> {
    let mut valid = Vec::with_capacity(resources.len());
    for res in resources {
        let before = out.len();
        let mut report = Report::new(&res.meta, out);
        meta::validate_meta(&mut report);
        rules(&mut report, &res.spec);
        if out.len() > before {
            continue;
        }
        match lower(&res.meta, &res.spec) {
            Ok(spec) => valid.push(Arc::new(Res {
                meta: res.meta.clone(),
                spec,
            })),
            Err(e) => out.push(Violation::new(
                &res.meta.origin,
                Some(res.meta.display_name()),
                e.field,
                e.what,
            )),
        }
    }
    valid
}

#[cfg(test)]
mod tests {
    use super::testutil::validate_yaml;

    /// The acceptance scenarios' documents (kuma.py V01–V24) in one directory: every
    /// expected `field: message` must be produced.
    #[test]
    fn acceptance_scenarios_are_rejected_with_kuma_wording() {
        let cases: &[(&str, &[&str])] = &[
            (
                "type: MeshGateway\nmesh: default\nname: v01\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - protocol: HTTP\n",
                &["conf.listeners[0].port: port must be in the range [1, 65535]"],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v02\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n    hostname: a.test\n  - port: 8080\n    protocol: TCP\n    hostname: b.test\n",
                &[
                    "conf.listeners[0]: protocol conflicts with other listeners on this port",
                    "conf.listeners[1]: protocol conflicts with other listeners on this port",
                ],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v03\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n  - port: 8080\n    protocol: HTTP\n    hostname: \"*\"\n",
                &[
                    "conf.listeners[0]: multiple listeners for hostname on this port",
                    "conf.listeners[1]: multiple listeners for hostname on this port",
                ],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v04\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: 8443\n    protocol: HTTPS\n",
                &["conf.listeners[0].tls: cannot be empty"],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v05\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: 8443\n    protocol: HTTPS\n    hostname: foo.example.com\n    tls:\n      mode: PASSTHROUGH\n",
                &["conf.listeners[0].tls.mode: mode is not supported on HTTPS listeners"],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v06\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: 8443\n    protocol: HTTPS\n    tls:\n      mode: TERMINATE\n",
                &["conf.listeners[0].tls.certificates: cannot be empty in TLS termination mode"],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v07\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n    hostname: \"*.foo.*.example.com\"\n  - port: 8081\n    protocol: HTTP\n    hostname: \"foo.example$.com\"\n",
                &[
                    "conf.listeners[0].hostname: invalid wildcard domain",
                    "conf.listeners[1].hostname: invalid hostname",
                ],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v08\nselectors:\n- match:\n    kuma.io/service: edge-gateway\ntags:\n  kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n",
                &["tags[\"kuma.io/service\"]: tag name must not be \"kuma.io/service\""],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v09\nselectors:\n- match:\n    app: edge\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n",
                &["selectors[0].match: mandatory tag \"kuma.io/service\" is missing"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v10\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: MeshService\n      name: v1\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: /\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.to[0].targetRef.kind: value 'MeshService' is not supported"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v11\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: /api/\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.to[0].rules[0].matches[0].path.value: does not need a trailing slash because only a `/`-separated prefix or an entire path is matched"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v12\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: Exact\n          value: relative\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.to[0].rules[0].matches[0].path.value: must be an absolute path"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v13\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: /\n      default:\n        filters:\n        - type: URLRewrite\n          urlRewrite:\n            path:\n              type: ReplacePrefixMatch\n              replacePrefixMatch: /other\n",
                &["spec.to[0].rules[0].default.backendRefs: must not be empty"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v14\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: Exact\n          value: /a\n      default:\n        filters:\n        - type: URLRewrite\n          urlRewrite:\n            path:\n              type: ReplacePrefixMatch\n              replacePrefixMatch: /b\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.to[0].rules[0].default.filters[0].urlRewrite.path.replacePrefixMatch: can only appear if all matches match a path prefix"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v15\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - headers:\n        - type: Present\n          name: x-a\n          value: \"1\"\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.to[0].rules[0].matches[0].headers[0].value: must not be defined"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v16\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - queryParams:\n        - type: Exact\n          name: foo\n          value: \"1\"\n        - type: RegularExpression\n          name: foo\n          value: \"[0-9]+\"\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.to[0].rules[0].matches[0].queryParams[1].name: multiple entries for name foo"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v17\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: /\n      default:\n        filters:\n        - type: URLRewrite\n          urlRewrite:\n            hostname: a.example.com\n            hostToBackendHostname: true\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.to[0].rules[0].default.filters[0].urlRewrite.hostToBackendHostname: cannot be set together with hostname"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v18\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: /\n      default:\n        filters:\n        - type: RequestRedirect\n          requestRedirect:\n            hostname: 10.0.0.1\n",
                &["spec.to[0].rules[0].default.filters[0].requestRedirect.hostname: cannot be an IP address"],
            ),
            (
                "type: MeshTCPRoute\nmesh: default\nname: v19\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - default: {}\n",
                &["spec.to[0].rules[0].default.backendRefs: must be defined"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v20\nspec:\n  targetRef:\n    kind: MeshGateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: /\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.targetRef.name: must be set when kind is MeshGateway"],
            ),
            (
                "type: Dataplane\nmesh: default\nname: v21\nnetworking:\n  address: 127.0.0.1\n  gateway:\n    type: BUILTIN\n    tags:\n      kuma.io/service: edge-gateway\n  inbound:\n  - port: 9000\n    tags:\n      kuma.io/service: edge-gateway\n",
                &["networking.inbound: inbound cannot be defined for builtin gateways"],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v22\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - headers:\n        - type: Exact\n          name: Content-Type\n          value: application/json\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &[r"spec.to[0].rules[0].matches[0].headers[0].name: in body should match '^[a-z0-9!#$%&'*+\-.^_`|~]+$'"],
            ),
            (
                "type: MeshGateway\nmesh: default\nname: v23\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n    hostname: one.test\n    resources:\n      connectionLimit: 2\n  - port: 8080\n    protocol: HTTP\n    hostname: two.test\n    resources:\n      connectionLimit: 1\n",
                &[
                    "conf.listeners[0].resources.connectionLimit: conflicting values for this port",
                    "conf.listeners[1].resources.connectionLimit: conflicting values for this port",
                ],
            ),
            (
                "type: MeshHTTPRoute\nmesh: default\nname: v24\nspec:\n  targetRef:\n    kind: Mesh\n  to:\n  - targetRef:\n      kind: MeshService\n      name: v1\n    hostnames:\n    - a.test\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: /\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: v1\n",
                &["spec.to[0].hostnames: must not be defined"],
            ),
        ];
        for (yaml, expected) in cases {
            assert_eq!(validate_yaml(yaml), *expected, "YAML:\n{yaml}");
        }
    }

    #[test]
    fn violations_carry_file_document_and_resource() {
        let dir =
            std::env::temp_dir().join(format!("meshgate-validate-mod-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(
            dir.join("routes.yaml"),
            "type: MeshHTTPRoute\nmesh: default\nname: ok\nspec: {}\n---\ntype: MeshHTTPRoute\nmesh: default\nname: edge-route\nspec:\n  targetRef: {kind: MeshGateway, name: gw}\n  to:\n  - targetRef: {kind: Mesh}\n    rules:\n    - matches: [{path: {type: Exact, value: rel}}]\n      default: {backendRefs: [{kind: MeshService, name: a}]}\n",
        )
        .expect("write");
        let loaded = crate::resources::loader::load_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let lines: Vec<String> = super::validate(&loaded.resources)
            .violations
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            lines,
            ["routes.yaml: document 2: MeshHTTPRoute/edge-route: spec.to[0].rules[0].matches[0].path.value: must be an absolute path"]
        );
    }

    #[test]
    fn the_demo_configuration_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/policies");
        if !dir.is_dir() {
            return; // the demo configuration is not there yet
        }
        let loaded = crate::resources::loader::load_dir(&dir);
        let violations = super::validate(&loaded.resources).violations;
        assert!(
            violations.is_empty(),
            "{}",
            crate::violation::render(&violations)
        );
    }
}
