//! Listener, hostname and route-matching semantics (spec: ../shared/spec/kuma-gateway-semantics.md
//! sections 3 and 4). Every test runs a real meshgate against real echo backends.

mod common;

use common::*;

/// Gateway with two HTTP listeners on one port: `foo.example.com` (tags hostname: foo) and
/// `*.example.com` (tags hostname: wild) - the seed's example 2 layout.
fn gateway_foo_and_wild() -> String {
    dedent(
        r#"
        type: MeshGateway
        mesh: default
        name: edge-gateway
        selectors:
        - match:
            kuma.io/service: edge-gateway
        conf:
          listeners:
          - port: @LPORT:1@
            protocol: HTTP
            hostname: foo.example.com
            tags:
              hostname: foo
          - port: @LPORT:1@
            protocol: HTTP
            hostname: "*.example.com"
            tags:
              hostname: wild
        "#,
    )
}

/// A MeshHTTPRoute attached by `tags` with one PathPrefix rule.
fn tagged_prefix_route(name: &str, tags: &str, prefix: &str, service: &str) -> String {
    format!(
        "type: MeshHTTPRoute\nmesh: default\nname: {name}\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n    tags:\n{}  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: {prefix}\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: {service}\n",
        indent(tags, 6)
    )
}

// ---------------------------------------------------------------------------------------- seed

// Seed example 1 (spec §4.1, §5.3 default): PathPrefix / on a listener selected by tags sends every
// path to demo-app; path, query, method, body and Host reach the backend unchanged.
#[test]
fn seed_1_pathprefix_root_sends_everything_to_demo_app() {
    let _app = EchoHttp::start("demo-app");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        tags:
                          port: http-8080
                    "#,
                ),
            ),
            (
                "route.yaml",
                tagged_prefix_route("demo-app-route", "port: http-8080\n", "/", "demo-app"),
            ),
            ("dataplanes.yaml", dataplanes(&["demo-app"])),
            ("gateway-dataplane.yaml", gateway_dataplane()),
        ],
        &[],
    );
    gw.assert_routed(1, "/", "127.0.0.1", "demo-app");
    let r = gw.assert_routed(1, "/some/deep/path?x=1&y=2", "127.0.0.1", "demo-app");
    assert_eq!(r.seen_path(), "/some/deep/path?x=1&y=2");
    let r = gw.send(1, "POST", "/submit", "127.0.0.1", &[], b"hello");
    assert_eq!(backend_of(&r).as_deref(), Some("demo-app"));
    assert_eq!(r.echo()["method"], "POST");
    assert_eq!(r.echo()["body_len"], 5);
    let r = gw.assert_routed(1, "/", "anything.example", "demo-app");
    assert_eq!(r.seen_host(), "anything.example");
}

// Seed example 2 (spec §3.6, recommendation "404"): a more specific listener without routes owns
// its host and answers 404; the wildcard listener's route serves the other subdomains.
#[test]
fn seed_2_specific_listener_without_routes_answers_404_wildcard_serves_the_rest() {
    let _app = EchoHttp::start("demo-app");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_foo_and_wild()),
            (
                "route.yaml",
                tagged_prefix_route("wild-route", "hostname: wild\n", "/", "demo-app"),
            ),
            ("dataplanes.yaml", dataplanes(&["demo-app"])),
        ],
        &[],
    );
    gw.assert_status(1, "/", "foo.example.com", 404);
    gw.assert_routed(1, "/", "bar.example.com", "demo-app");
    gw.assert_routed(1, "/x", "baz.example.com:8080", "demo-app");
    gw.assert_status(1, "/", "example.org", 404);
}

// Seed example 3 (spec §4.6, §3.5): a to[] entry with hostnames [dev.example.com] wins for that host;
// the generic to[] entry serves every other host.
#[test]
fn seed_3_hostname_specific_to_entry_wins_generic_entry_serves_other_hosts() {
    let _v1 = EchoHttp::start("example-v1");
    let _v2 = EchoHttp::start("example-v2");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            (
                "route.yaml",
                dedent(
                    r#"
                    type: MeshHTTPRoute
                    name: example-route
                    mesh: default
                    spec:
                      targetRef:
                        kind: MeshGateway
                        name: edge-gateway
                      to:
                      - targetRef:
                          kind: Mesh
                        rules:
                        - matches:
                          - path:
                              type: PathPrefix
                              value: /
                          default:
                            backendRefs:
                            - kind: MeshService
                              name: example-v1
                      - targetRef:
                          kind: Mesh
                        hostnames:
                        - dev.example.com
                        rules:
                        - matches:
                          - path:
                              type: PathPrefix
                              value: /
                          default:
                            backendRefs:
                            - kind: MeshService
                              name: example-v2
                    "#,
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["example-v1", "example-v2"])),
        ],
        &[],
    );
    let port = gw.lport(1);
    gw.assert_routed(1, "/", "dev.example.com", "example-v2");
    gw.assert_routed(1, "/api", &format!("dev.example.com:{port}"), "example-v2");
    gw.assert_routed(1, "/", "example.com", "example-v1");
    gw.assert_routed(1, "/", "other.example.com", "example-v1");
    gw.assert_routed(1, "/", &format!("127.0.0.1:{port}"), "example-v1");
}

// ---------------------------------------------------------------------------------------- hostnames

// Spec §3.3: the Host header is matched with its port removed and case-insensitively.
#[test]
fn host_matching_ignores_port_and_case() {
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        hostname: foo.example.com
                    "#,
                ),
            ),
            ("route.yaml", catch_all_route("route", "v1")),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &[],
    );
    gw.assert_routed(1, "/", "foo.example.com", "v1");
    gw.assert_routed(1, "/", "foo.example.com:1234", "v1");
    gw.assert_routed(1, "/", "FOO.Example.COM", "v1");
    gw.assert_routed(1, "/", "Foo.EXAMPLE.com:80", "v1");
    // the listener hostname still restricts the Host
    gw.assert_status(1, "/", "bar.example.com", 404);
    gw.assert_status(1, "/", "foo.example.com.evil", 404);
}

// Spec §3.3: `*.example.com` matches one or more labels (`a.b.example.com`) but never the bare
// domain `example.com`, nor a host that merely ends in the same characters.
#[test]
fn wildcard_listener_hostname_matches_multiple_labels_never_the_bare_domain() {
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        hostname: "*.example.com"
                    "#,
                ),
            ),
            ("route.yaml", catch_all_route("route", "v1")),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &[],
    );
    gw.assert_routed(1, "/", "a.example.com", "v1");
    gw.assert_routed(1, "/", "a.b.example.com", "v1");
    gw.assert_routed(1, "/", "A.B.Example.Com:9", "v1");
    gw.assert_status(1, "/", "example.com", 404);
    gw.assert_status(1, "/", "badexample.com", 404);
    gw.assert_status(1, "/", "a.example.org", 404);
}

// Spec §3.6 (certain case, [code]): when the specific listener has routes, a request for its host
// uses only its own routes - the wildcard listener's routes never leak into it.
#[test]
fn listener_isolation_specific_listener_with_routes_serves_only_its_own_routes() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_foo_and_wild()),
            (
                "route-foo.yaml",
                tagged_prefix_route("foo-route", "hostname: foo\n", "/foo", "v1"),
            ),
            (
                "route-wild.yaml",
                tagged_prefix_route("wild-route", "hostname: wild\n", "/", "v2"),
            ),
            ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
        ],
        &[],
    );
    gw.assert_routed(1, "/foo", "foo.example.com", "v1");
    gw.assert_routed(1, "/foo/bar", "foo.example.com", "v1");
    // the wildcard listener's catch-all must not apply to foo.example.com
    gw.assert_status(1, "/other", "foo.example.com", 404);
    gw.assert_routed(1, "/foo", "bar.example.com", "v2");
    gw.assert_routed(1, "/other", "bar.example.com", "v2");
}

// ---------------------------------------------------------------------------------------- attachment

// Spec §3.4: a route attaches to the listeners whose effective tags contain all of targetRef.tags;
// a route without tags attaches to all listeners; a route whose tags match no listener has no
// effect; a route naming another gateway is ignored.
#[test]
fn route_attaches_to_listeners_by_targetref_tags() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let _v3 = EchoHttp::start("v3");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        tags:
                          port: one
                      - port: @LPORT:2@
                        protocol: HTTP
                        tags:
                          port: two
                    "#,
                ),
            ),
            (
                "route-one.yaml",
                tagged_prefix_route("route-one", "port: one\n", "/a", "v1"),
            ),
            (
                "route-all.yaml",
                dedent(
                    r#"
                    type: MeshHTTPRoute
                    mesh: default
                    name: route-all
                    spec:
                      targetRef:
                        kind: MeshGateway
                        name: edge-gateway
                      to:
                      - targetRef:
                          kind: Mesh
                        rules:
                        - matches:
                          - path:
                              type: PathPrefix
                              value: /b
                          default:
                            backendRefs:
                            - kind: MeshService
                              name: v2
                    "#,
                ),
            ),
            (
                "route-nowhere.yaml",
                tagged_prefix_route("route-nowhere", "port: three\n", "/c", "v3"),
            ),
            (
                "route-other-gateway.yaml",
                dedent(
                    r#"
                    type: MeshHTTPRoute
                    mesh: default
                    name: route-other-gateway
                    spec:
                      targetRef:
                        kind: MeshGateway
                        name: some-other-gateway
                      to:
                      - targetRef:
                          kind: Mesh
                        rules:
                        - matches:
                          - path:
                              type: PathPrefix
                              value: /d
                          default:
                            backendRefs:
                            - kind: MeshService
                              name: v3
                    "#,
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["v1", "v2", "v3"])),
        ],
        &[],
    );
    gw.assert_routed(1, "/a", "x.test", "v1");
    gw.assert_status(2, "/a", "x.test", 404);
    gw.assert_routed(1, "/b", "x.test", "v2");
    gw.assert_routed(2, "/b", "x.test", "v2");
    gw.assert_status(1, "/c", "x.test", 404);
    gw.assert_status(2, "/c", "x.test", 404);
    gw.assert_status(1, "/d", "x.test", 404);
    gw.assert_status(2, "/d", "x.test", 404);
}

// Spec §1.1 + §3.4: listener effective tags = gateway Dataplane tags + MeshGateway tags + listener
// tags, so a route can select listeners by a gateway-wide tag combined with a listener tag.
#[test]
fn route_tags_match_merged_gateway_and_listener_tags() {
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    tags:
                      team: edge
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        tags:
                          port: one
                      - port: @LPORT:2@
                        protocol: HTTP
                        tags:
                          port: two
                    "#,
                ),
            ),
            (
                "route.yaml",
                tagged_prefix_route("route", "team: edge\nport: two\n", "/", "v1"),
            ),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &[],
    );
    gw.assert_routed(2, "/", "x.test", "v1");
    gw.assert_status(1, "/", "x.test", 404);
}

// Spec §3.5 / §4.6: rules of a to[] entry with hostnames bind to the intersection with the listener
// hostname; generic rules fall through into that host; other hosts only see generic rules.
#[test]
fn to_hostnames_intersect_listener_hostname_and_generic_rules_fall_through() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        hostname: "*.example.com"
                    "#,
                ),
            ),
            (
                "route.yaml",
                dedent(
                    r#"
                    type: MeshHTTPRoute
                    mesh: default
                    name: route
                    spec:
                      targetRef:
                        kind: MeshGateway
                        name: edge-gateway
                      to:
                      - targetRef:
                          kind: Mesh
                        hostnames:
                        - a.example.com
                        rules:
                        - matches:
                          - path:
                              type: PathPrefix
                              value: /
                          default:
                            backendRefs:
                            - kind: MeshService
                              name: v1
                      - targetRef:
                          kind: Mesh
                        rules:
                        - matches:
                          - path:
                              type: PathPrefix
                              value: /generic
                          default:
                            backendRefs:
                            - kind: MeshService
                              name: v2
                    "#,
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
        ],
        &[],
    );
    gw.assert_routed(1, "/", "a.example.com", "v1");
    gw.assert_routed(1, "/x", "a.example.com", "v1");
    // generic /generic is longer than the host-specific / and falls through into a.example.com
    gw.assert_routed(1, "/generic", "a.example.com", "v2");
    gw.assert_routed(1, "/generic", "b.example.com", "v2");
    gw.assert_status(1, "/", "b.example.com", 404);
}

// Spec §3.5 step 2: route hostnames that do not intersect the listener hostname are ignored on that
// listener (they are not treated as generic rules).
#[test]
fn to_hostnames_without_intersection_are_ignored() {
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        hostname: foo.example.com
                    "#,
                ),
            ),
            (
                "route.yaml",
                dedent(
                    r#"
                    type: MeshHTTPRoute
                    mesh: default
                    name: route
                    spec:
                      targetRef:
                        kind: MeshGateway
                        name: edge-gateway
                      to:
                      - targetRef:
                          kind: Mesh
                        hostnames:
                        - bar.example.com
                        rules:
                        - matches:
                          - path:
                              type: PathPrefix
                              value: /
                          default:
                            backendRefs:
                            - kind: MeshService
                              name: v1
                    "#,
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &[],
    );
    gw.assert_status(1, "/", "foo.example.com", 404);
    gw.assert_status(1, "/", "bar.example.com", 404);
}

// Spec §3.5 (binding hostname = intersection; golden gateway-listener-different-hostnames-specific):
// on a specific listener `foo.example.com`, a to[] entry for `*.example.com` binds to
// foo.example.com; on a catch-all listener, only the route's hostnames get rules.
#[test]
fn wildcard_route_hostname_binds_to_specific_listener_and_catch_all_listener_serves_only_named_hosts(
) {
    let _v1 = EchoHttp::start("v1");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        hostname: foo.example.com
                      - port: @LPORT:2@
                        protocol: HTTP
                        hostname: "*"
                    "#,
                ),
            ),
            (
                "route.yaml",
                dedent(
                    r#"
                    type: MeshHTTPRoute
                    mesh: default
                    name: route
                    spec:
                      targetRef:
                        kind: MeshGateway
                        name: edge-gateway
                      to:
                      - targetRef:
                          kind: Mesh
                        hostnames:
                        - "*.example.com"
                        rules:
                        - matches:
                          - path:
                              type: PathPrefix
                              value: /
                          default:
                            backendRefs:
                            - kind: MeshService
                              name: v1
                    "#,
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &[],
    );
    gw.assert_routed(1, "/", "foo.example.com", "v1");
    gw.assert_routed(2, "/", "any.example.com", "v1");
    gw.assert_status(2, "/", "example.org", 404);
}

// ---------------------------------------------------------------------------------------- path matching

// Spec §4.1: PathPrefix is segment-wise (/api matches /api, /api/, /api/x but not /apix) and
// case-sensitive.
#[test]
fn pathprefix_matches_whole_segments_and_is_case_sensitive() {
    let _v1 = EchoHttp::start("v1");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /api
          default:
            backendRefs:
            - kind: MeshService
              name: v1
        "#,
        &["v1"],
    );
    gw.assert_routed(1, "/api", "a.test", "v1");
    gw.assert_routed(1, "/api/", "a.test", "v1");
    gw.assert_routed(1, "/api/x/y", "a.test", "v1");
    gw.assert_routed(1, "/api?q=1", "a.test", "v1");
    gw.assert_status(1, "/apix", "a.test", 404);
    gw.assert_status(1, "/API", "a.test", 404);
    gw.assert_status(1, "/", "a.test", 404);
}

// Spec §4.1: Exact is byte-exact on the path without the query string.
#[test]
fn exact_path_matches_only_the_exact_path_query_ignored() {
    let _v1 = EchoHttp::start("v1");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: Exact
              value: /exact
          default:
            backendRefs:
            - kind: MeshService
              name: v1
        "#,
        &["v1"],
    );
    gw.assert_routed(1, "/exact", "a.test", "v1");
    let r = gw.assert_routed(1, "/exact?x=1", "a.test", "v1");
    assert_eq!(r.seen_path(), "/exact?x=1");
    gw.assert_status(1, "/exact/", "a.test", 404);
    gw.assert_status(1, "/exactly", "a.test", 404);
    gw.assert_status(1, "/Exact", "a.test", 404);
}

// Spec §4.1: RegularExpression must match the whole path (anchors implied), query excluded.
#[test]
fn regex_path_must_match_the_whole_path() {
    let _v1 = EchoHttp::start("v1");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: RegularExpression
              value: /api/v[0-9]+
          default:
            backendRefs:
            - kind: MeshService
              name: v1
        "#,
        &["v1"],
    );
    gw.assert_routed(1, "/api/v1", "a.test", "v1");
    gw.assert_routed(1, "/api/v42?debug=1", "a.test", "v1");
    gw.assert_status(1, "/api/v1/users", "a.test", 404);
    gw.assert_status(1, "/x/api/v1", "a.test", 404);
    gw.assert_status(1, "/api/vx", "a.test", 404);
}

// ---------------------------------------------------------------------------------------- precedence

// Spec §4.5.1 / §4.1 (golden 08): for the same value, Exact beats PathPrefix; the prefix still
// serves the sub-paths.
#[test]
fn precedence_exact_beats_prefix_of_the_same_path() {
    let _v1 = EchoHttp::start("exact");
    let _v2 = EchoHttp::start("prefix");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /api
          default:
            backendRefs:
            - kind: MeshService
              name: prefix
        - matches:
          - path:
              type: Exact
              value: /api
          default:
            backendRefs:
            - kind: MeshService
              name: exact
        "#,
        &["exact", "prefix"],
    );
    gw.assert_routed(1, "/api", "a.test", "exact");
    gw.assert_routed(1, "/api/", "a.test", "prefix");
    gw.assert_routed(1, "/api/x", "a.test", "prefix");
}

// Spec §4.5.2: among prefixes the longer one wins, whatever the declaration order.
#[test]
fn precedence_longer_prefix_wins_regardless_of_order() {
    let _v1 = EchoHttp::start("short");
    let _v2 = EchoHttp::start("long");
    let _v3 = EchoHttp::start("longest");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /a
          default:
            backendRefs:
            - kind: MeshService
              name: short
        - matches:
          - path:
              type: PathPrefix
              value: /a/b/c
          default:
            backendRefs:
            - kind: MeshService
              name: longest
        - matches:
          - path:
              type: PathPrefix
              value: /a/b
          default:
            backendRefs:
            - kind: MeshService
              name: long
        "#,
        &["short", "long", "longest"],
    );
    gw.assert_routed(1, "/a/x", "a.test", "short");
    gw.assert_routed(1, "/a/b", "a.test", "long");
    gw.assert_routed(1, "/a/b/x", "a.test", "long");
    gw.assert_routed(1, "/a/b/c/d", "a.test", "longest");
    gw.assert_routed(1, "/a/bc", "a.test", "short");
}

// Spec §4.5.3 (golden 13): a prefix entry always outranks a regex entry, so PathPrefix `/` shadows a
// RegularExpression rule; without the catch-all the regex rule serves its paths.
#[test]
fn precedence_prefix_outranks_regex_and_root_prefix_shadows_regex() {
    let _v1 = EchoHttp::start("prefix");
    let _v2 = EchoHttp::start("regex");
    let regex_rule = r#"
        - matches:
          - path:
              type: RegularExpression
              value: /api/v[0-9]+
          default:
            backendRefs:
            - kind: MeshService
              name: regex
        "#;
    let shadowed = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            (
                "route.yaml",
                http_route(
                    "route",
                    &format!(
                        "{}{}",
                        dedent(regex_rule),
                        dedent(
                            r#"
                            - matches:
                              - path:
                                  type: PathPrefix
                                  value: /
                              default:
                                backendRefs:
                                - kind: MeshService
                                  name: prefix
                            "#
                        )
                    ),
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["prefix", "regex"])),
        ],
        &[],
    );
    shadowed.assert_routed(1, "/api/v1", "a.test", "prefix");
    drop(shadowed);

    let not_shadowed = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            (
                "route.yaml",
                http_route(
                    "route",
                    &format!(
                        "{}{}",
                        dedent(regex_rule),
                        dedent(
                            r#"
                            - matches:
                              - path:
                                  type: PathPrefix
                                  value: /other
                              default:
                                backendRefs:
                                - kind: MeshService
                                  name: prefix
                            "#
                        )
                    ),
                ),
            ),
            ("dataplanes.yaml", dataplanes(&["prefix", "regex"])),
        ],
        &[],
    );
    not_shadowed.assert_routed(1, "/api/v1", "a.test", "regex");
    not_shadowed.assert_routed(1, "/other", "a.test", "prefix");
}

// Spec §4.1 ("rules without path get a PathPrefix / entry") + §4.5.3: a path-less rule is a prefix
// `/` entry and therefore outranks a regex rule.
#[test]
fn precedence_rule_without_path_counts_as_prefix_root_and_beats_regex() {
    let _v1 = EchoHttp::start("no-path");
    let _v2 = EchoHttp::start("regex");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: RegularExpression
              value: /r.*
          default:
            backendRefs:
            - kind: MeshService
              name: regex
        - matches:
          - method: GET
          default:
            backendRefs:
            - kind: MeshService
              name: no-path
        "#,
        &["no-path", "regex"],
    );
    gw.assert_routed(1, "/r1", "a.test", "no-path");
    gw.assert_routed_with(1, "POST", "/r1", "a.test", &[], "regex");
}

// Spec §4.5.1: Exact outranks RegularExpression too.
#[test]
fn precedence_exact_beats_regex() {
    let _v1 = EchoHttp::start("exact");
    let _v2 = EchoHttp::start("regex");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: RegularExpression
              value: /.*
          default:
            backendRefs:
            - kind: MeshService
              name: regex
        - matches:
          - path:
              type: Exact
              value: /exact
          default:
            backendRefs:
            - kind: MeshService
              name: exact
        "#,
        &["exact", "regex"],
    );
    gw.assert_routed(1, "/exact", "a.test", "exact");
    gw.assert_routed(1, "/other", "a.test", "regex");
}

// Spec §4.5.4 (sorter_test "method before header"): with the same path, a rule with a method
// outranks a rule without one, whatever the declaration order.
#[test]
fn precedence_method_match_beats_no_method() {
    let _v1 = EchoHttp::start("any");
    let _v2 = EchoHttp::start("post");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /x
          default:
            backendRefs:
            - kind: MeshService
              name: any
        - matches:
          - path:
              type: PathPrefix
              value: /x
            method: POST
          default:
            backendRefs:
            - kind: MeshService
              name: post
        "#,
        &["any", "post"],
    );
    gw.assert_routed_with(1, "POST", "/x", "a.test", &[], "post");
    gw.assert_routed(1, "/x", "a.test", "any");
    gw.assert_routed_with(1, "PUT", "/x/y", "a.test", &[], "any");
}

// Spec §4.5.5 (golden 10): with the same path and method, the rule with more header conditions is
// tried first.
#[test]
fn precedence_more_header_conditions_first() {
    let _v1 = EchoHttp::start("one-header");
    let _v2 = EchoHttp::start("two-headers");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            (
                "route.yaml",
                http_route(
                    "route",
                    r#"
                    - matches:
                      - path:
                          type: PathPrefix
                          value: /x
                        headers:
                        - type: Present
                          name: x-a
                      default:
                        backendRefs:
                        - kind: MeshService
                          name: one-header
                    - matches:
                      - path:
                          type: PathPrefix
                          value: /x
                        headers:
                        - type: Present
                          name: x-a
                        - type: Present
                          name: x-b
                      default:
                        backendRefs:
                        - kind: MeshService
                          name: two-headers
                    "#,
                ),
            ),
            (
                "dataplanes.yaml",
                dataplanes(&["one-header", "two-headers"]),
            ),
        ],
        &[],
    );
    gw.assert_routed_with(
        1,
        "GET",
        "/x",
        "a.test",
        &[("x-a", "1"), ("x-b", "1")],
        "two-headers",
    );
    gw.assert_routed_with(1, "GET", "/x", "a.test", &[("x-a", "1")], "one-header");
    gw.assert_status_with(1, "GET", "/x", "a.test", &[("x-b", "1")], 404);
}

// Spec §4.5 (path specificity is compared before header count): a longer prefix without headers
// beats a shorter prefix with two header conditions.
#[test]
fn precedence_path_specificity_before_header_count() {
    let _v1 = EchoHttp::start("long-path");
    let _v2 = EchoHttp::start("headers");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /
            headers:
            - name: x-a
              value: "1"
            - name: x-b
              value: "1"
          default:
            backendRefs:
            - kind: MeshService
              name: headers
        - matches:
          - path:
              type: PathPrefix
              value: /long
          default:
            backendRefs:
            - kind: MeshService
              name: long-path
        "#,
        &["long-path", "headers"],
    );
    let h = [("x-a", "1"), ("x-b", "1")];
    gw.assert_routed_with(1, "GET", "/long", "a.test", &h, "long-path");
    gw.assert_routed_with(1, "GET", "/other", "a.test", &h, "headers");
}

// ---------------------------------------------------------------------------------------- headers / query

// Spec §4.3: Exact header match (the default type): names case-insensitive, values case-sensitive.
#[test]
fn header_exact_match_name_case_insensitive_value_case_sensitive() {
    let _v1 = EchoHttp::start("matched");
    let _v2 = EchoHttp::start("fallback");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /
            headers:
            - name: x-env
              value: prod
          default:
            backendRefs:
            - kind: MeshService
              name: matched
        - matches:
          - path:
              type: PathPrefix
              value: /
          default:
            backendRefs:
            - kind: MeshService
              name: fallback
        "#,
        &["matched", "fallback"],
    );
    gw.assert_routed_with(1, "GET", "/", "a.test", &[("x-env", "prod")], "matched");
    gw.assert_routed_with(1, "GET", "/", "a.test", &[("X-Env", "prod")], "matched");
    gw.assert_routed_with(1, "GET", "/", "a.test", &[("x-env", "Prod")], "fallback");
    gw.assert_routed_with(1, "GET", "/", "a.test", &[("x-env", "prod2")], "fallback");
    gw.assert_routed(1, "/", "a.test", "fallback");
}

// Spec §4.3: Present matches any value of an existing header; Absent matches only without it.
#[test]
fn header_present_and_absent_matches() {
    let _v1 = EchoHttp::start("present");
    let _v2 = EchoHttp::start("absent");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /p
            headers:
            - type: Present
              name: x-token
          default:
            backendRefs:
            - kind: MeshService
              name: present
        - matches:
          - path:
              type: PathPrefix
              value: /a
            headers:
            - type: Absent
              name: x-token
          default:
            backendRefs:
            - kind: MeshService
              name: absent
        "#,
        &["present", "absent"],
    );
    gw.assert_routed_with(
        1,
        "GET",
        "/p",
        "a.test",
        &[("x-token", "anything")],
        "present",
    );
    gw.assert_status(1, "/p", "a.test", 404);
    gw.assert_routed(1, "/a", "a.test", "absent");
    gw.assert_status_with(1, "GET", "/a", "a.test", &[("x-token", "x")], 404);
}

// Spec §4.3: RegularExpression header match is a full match; Prefix matches the value's start.
#[test]
fn header_regex_full_match_and_prefix_match() {
    let _v1 = EchoHttp::start("regex");
    let _v2 = EchoHttp::start("prefix");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /r
            headers:
            - type: RegularExpression
              name: x-version
              value: v[0-9]+
          default:
            backendRefs:
            - kind: MeshService
              name: regex
        - matches:
          - path:
              type: PathPrefix
              value: /p
            headers:
            - type: Prefix
              name: x-user
              value: admin-
          default:
            backendRefs:
            - kind: MeshService
              name: prefix
        "#,
        &["regex", "prefix"],
    );
    gw.assert_routed_with(1, "GET", "/r", "a.test", &[("x-version", "v12")], "regex");
    gw.assert_status_with(1, "GET", "/r", "a.test", &[("x-version", "v1x")], 404);
    gw.assert_status_with(1, "GET", "/r", "a.test", &[("x-version", "xv1")], 404);
    gw.assert_routed_with(
        1,
        "GET",
        "/p",
        "a.test",
        &[("x-user", "admin-bob")],
        "prefix",
    );
    gw.assert_status_with(1, "GET", "/p", "a.test", &[("x-user", "bob-admin-")], 404);
}

// Spec §4.4: query Exact (value equality) and RegularExpression (full match); all listed
// parameters are ANDed (the spec recommends the intended AND over Kuma's regex-list bug).
#[test]
fn query_param_exact_and_regex_matches_are_anded() {
    let _v1 = EchoHttp::start("exact");
    let _v2 = EchoHttp::start("regex");
    let _v3 = EchoHttp::start("both");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /e
            queryParams:
            - type: Exact
              name: version
              value: "2"
          default:
            backendRefs:
            - kind: MeshService
              name: exact
        - matches:
          - path:
              type: PathPrefix
              value: /r
            queryParams:
            - type: RegularExpression
              name: debug
              value: (true|1)
          default:
            backendRefs:
            - kind: MeshService
              name: regex
        - matches:
          - path:
              type: PathPrefix
              value: /b
            queryParams:
            - type: RegularExpression
              name: x
              value: "[0-9]+"
            - type: RegularExpression
              name: y
              value: "[a-z]+"
          default:
            backendRefs:
            - kind: MeshService
              name: both
        "#,
        &["exact", "regex", "both"],
    );
    gw.assert_routed(1, "/e?version=2", "a.test", "exact");
    gw.assert_routed(1, "/e?a=b&version=2", "a.test", "exact");
    gw.assert_status(1, "/e?version=20", "a.test", 404);
    gw.assert_status(1, "/e", "a.test", 404);
    gw.assert_routed(1, "/r?debug=1", "a.test", "regex");
    gw.assert_routed(1, "/r?debug=true", "a.test", "regex");
    gw.assert_status(1, "/r?debug=10", "a.test", 404);
    gw.assert_routed(1, "/b?x=1&y=a", "a.test", "both");
    gw.assert_status(1, "/b?x=a&y=a", "a.test", 404);
    gw.assert_status(1, "/b?x=1&y=1", "a.test", 404);
    gw.assert_status(1, "/b?y=a", "a.test", 404);
}

// Spec §4 intro + §4.2-4.4 (golden 12): the elements of matches[] are ORed; the conditions inside
// one match (path, method, headers, query) are ANDed.
#[test]
fn matches_are_ored_and_conditions_inside_a_match_are_anded() {
    let _v1 = EchoHttp::start("v1");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: Exact
              value: /a
          - path:
              type: Exact
              value: /b
            method: POST
          - path:
              type: Exact
              value: /c
            method: PUT
            headers:
            - name: x-k
              value: v
            queryParams:
            - type: Exact
              name: q
              value: "1"
          default:
            backendRefs:
            - kind: MeshService
              name: v1
        "#,
        &["v1"],
    );
    gw.assert_routed(1, "/a", "a.test", "v1");
    gw.assert_routed_with(1, "POST", "/b", "a.test", &[], "v1");
    gw.assert_status(1, "/b", "a.test", 404);
    gw.assert_routed_with(1, "PUT", "/c?q=1", "a.test", &[("x-k", "v")], "v1");
    gw.assert_status_with(1, "PUT", "/c?q=1", "a.test", &[], 404);
    gw.assert_status_with(1, "GET", "/c?q=1", "a.test", &[("x-k", "v")], 404);
    gw.assert_status_with(1, "PUT", "/c", "a.test", &[("x-k", "v")], 404);
}

// ---------------------------------------------------------------------------------------- merging

// Spec §4.7: rules with different matches from several routes on one listener are unioned.
#[test]
fn routes_on_the_same_listener_are_unioned() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let rule = |prefix: &str, svc: &str| {
        format!(
            "- matches:\n  - path:\n      type: PathPrefix\n      value: {prefix}\n  default:\n    backendRefs:\n    - kind: MeshService\n      name: {svc}\n"
        )
    };
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            ("route-a.yaml", http_route("route-a", &rule("/a", "v1"))),
            ("route-b.yaml", http_route("route-b", &rule("/b", "v2"))),
            ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
        ],
        &[],
    );
    gw.assert_routed(1, "/a", "a.test", "v1");
    gw.assert_routed(1, "/b/x", "a.test", "v2");
    gw.assert_status(1, "/c", "a.test", 404);
}

// Spec §4.7: identical matches in two routes are merged into one rule by JSON merge-patch of
// `default`. Which route wins is UNCONFIRMED in Kuma (docs: smaller name; code: greater name); we
// follow the spec's recommendation (code: the lexicographically greater name, `beta`, wins). Its
// backendRefs replace alpha's, while alpha's filters survive because beta defines none.
#[test]
fn identical_matches_across_routes_merge_greater_name_wins_and_filters_survive() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            (
                "routes.yaml",
                http_route(
                    "alpha",
                    r#"
                    - matches:
                      - path:
                          type: PathPrefix
                          value: /
                      default:
                        filters:
                        - type: RequestHeaderModifier
                          requestHeaderModifier:
                            add:
                            - name: x-from
                              value: alpha
                        backendRefs:
                        - kind: MeshService
                          name: v1
                    "#,
                ) + "---\n"
                    + &catch_all_route("beta", "v2"),
            ),
            ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
        ],
        &[],
    );
    for _ in 0..5 {
        let r = gw.assert_routed(1, "/", "a.test", "v2");
        assert_eq!(r.seen_header("x-from"), vec!["alpha".to_string()]);
    }
}

// Spec §4.7 ("within one to[] entry, for duplicate matches, the first rule wins"; code-derived,
// UNCONFIRMED by a Kuma test - we follow the spec).
#[test]
fn duplicate_matches_inside_one_to_entry_first_rule_wins() {
    let _v1 = EchoHttp::start("first");
    let _v2 = EchoHttp::start("second");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: PathPrefix
              value: /dup
          default:
            backendRefs:
            - kind: MeshService
              name: first
        - matches:
          - path:
              type: PathPrefix
              value: /dup
          default:
            backendRefs:
            - kind: MeshService
              name: second
        "#,
        &["first", "second"],
    );
    for _ in 0..5 {
        gw.assert_routed(1, "/dup", "a.test", "first");
    }
}

// ---------------------------------------------------------------------------------------- misc

// Spec §4.8 / §3.9: no route matching -> 404, also on a gateway whose listener has no route at all.
#[test]
fn no_matching_route_answers_404_and_no_backend_is_contacted() {
    let v1 = EchoHttp::start("v1");
    let gw = Gateway::start(
        &[
            (
                "gateway.yaml",
                dedent(
                    r#"
                    type: MeshGateway
                    mesh: default
                    name: edge-gateway
                    selectors:
                    - match:
                        kuma.io/service: edge-gateway
                    conf:
                      listeners:
                      - port: @LPORT:1@
                        protocol: HTTP
                        tags:
                          port: one
                      - port: @LPORT:2@
                        protocol: HTTP
                        tags:
                          port: two
                    "#,
                ),
            ),
            (
                "route.yaml",
                tagged_prefix_route("route", "port: one\n", "/only", "v1"),
            ),
            ("dataplanes.yaml", dataplanes(&["v1"])),
        ],
        &[],
    );
    let r = gw.assert_status(1, "/nothing", "a.test", 404);
    assert_eq!(backend_of(&r), None);
    let r = gw.assert_status(2, "/only", "a.test", 404);
    assert_eq!(backend_of(&r), None);
    assert_eq!(v1.count(), 0, "no backend may see an unrouted request");
}

// Spec §3.8 ([test], golden 08): an incoming `x-kuma-tags` header is removed before forwarding,
// so clients cannot forge mesh identity tags.
#[test]
fn client_supplied_x_kuma_tags_header_is_not_forwarded() {
    let _v1 = EchoHttp::start("v1");
    let gw = catch_all_gateway("route", "v1");
    let r = gw.send(
        1,
        "GET",
        "/",
        "a.test",
        &[("x-kuma-tags", "&kuma.io/service=forged&")],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = r.seen_header("x-kuma-tags");
    assert!(
        !seen.iter().any(|v| v.contains("forged")),
        "the backend saw the client's x-kuma-tags: {seen:?}"
    );
}

// Spec §3.8 ([code] path normalisation on): dot segments are removed and `//` merged before
// matching, and the backend receives the normalised path.
#[test]
fn path_is_normalised_before_matching() {
    let _v1 = EchoHttp::start("v1");
    let gw = single_route_gateway(
        r#"
        - matches:
          - path:
              type: Exact
              value: /b/c
          default:
            backendRefs:
            - kind: MeshService
              name: v1
        "#,
        &["v1"],
    );
    for path in ["/b/c", "/a/../b/c", "/b/./c", "//b//c", "/b/x/../c?q=1"] {
        let r = gw.assert_routed(1, path, "a.test", "v1");
        assert_eq!(
            r.seen_path().split('?').next(),
            Some("/b/c"),
            "{path} reached the backend as {}",
            r.seen_path()
        );
    }
    gw.assert_status(1, "/b/c/..", "a.test", 404);
}

// Spec §3.8 / Appendix A ([code/envoy]): a request header name containing `_` is rejected with 400
// and never reaches a backend; `--allow-underscore-headers` (team brief) lets it through.
#[test]
fn header_name_with_underscore_is_rejected_with_400() {
    let v1 = EchoHttp::start("v1");
    let files = catch_all_files("route", "v1");
    let gw = Gateway::start(&files, &[]);
    gw.assert_status_with(
        1,
        "GET",
        "/",
        "a.test",
        &[("x_forwarded_user", "admin")],
        400,
    );
    assert_eq!(v1.count(), 0, "the request reached the backend");
    gw.assert_routed_with(1, "GET", "/", "a.test", &[("x-ok", "1")], "v1");
    drop(gw);

    let gw = Gateway::start(&files, &["--allow-underscore-headers"]);
    let r = gw.assert_routed_with(1, "GET", "/", "a.test", &[("x_custom", "1")], "v1");
    assert_eq!(r.seen_header("x_custom"), vec!["1"]);
}

// Chunked uploads pass the gateway's head guard, which follows them chunk by chunk to find the
// next request (src/proxy/chunked.rs): the backend gets every byte however the body is cut
// into reads, and the keep-alive connection goes on with the request after it, sent later or
// pipelined in the same write.
#[test]
fn chunked_uploads_arrive_whole_and_the_connection_goes_on() {
    let _v1 = EchoHttp::start("v1");
    let gw = catch_all_gateway("route", "v1");
    // ~300 KiB in chunks of 1 to ~9,000 bytes, some with extensions, then a trailer.
    let mut body = Vec::new();
    let mut data_len = 0;
    for i in 0..70usize {
        let size = 1 + (i * 7919) % 9000;
        let ext = if i % 3 == 0 { ";i=\"x\"" } else { "" };
        body.extend_from_slice(format!("{size:X}{ext}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, size));
        body.extend_from_slice(b"\r\n");
        data_len += size;
    }
    body.extend_from_slice(b"0\r\nx-checksum: 1\r\n\r\n");
    let head: &[u8] =
        b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let upload = [head, &body].concat();

    let mut conn = Conn::open(gw.lport(1)).expect("connect");
    for cut in [1000, 4093] {
        let pieces: Vec<&[u8]> = upload.chunks(cut).collect();
        let r = conn
            .send_in_pieces(&pieces, "POST")
            .expect("upload answered");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echo()["body_len"], data_len, "cut every {cut} bytes");
        let next = conn
            .send("GET", "/after", "a.test", &[], b"")
            .expect("next request");
        assert_eq!(next.status, 200);
        assert_eq!(next.echo()["path"], "/after");
    }
    let pipelined = [
        &upload[..],
        b"GET /pipelined HTTP/1.1\r\nHost: a.test\r\n\r\n",
    ]
    .concat();
    let r = conn
        .send_in_pieces(&[&pipelined], "POST")
        .expect("upload answered");
    assert_eq!(r.echo()["body_len"], data_len);
    let next = conn.receive("GET").expect("pipelined request answered");
    assert_eq!(next.echo()["path"], "/pipelined");
}
