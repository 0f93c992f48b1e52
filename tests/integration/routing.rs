//! Listener, hostname and route-matching semantics (spec: ../shared/spec/kuma-gateway-semantics.md
//! sections 3 and 4), in process: each test compiles its policy files and asks the proxy's own
//! decision code which backend a request reaches (and what it receives), or which status the
//! client gets (`meshgate::testkit::Routing`). What only the wire shows (bodies, framing,
//! refusals) is tested against a real process in `http_routing.rs` and `hostile.rs`.

use meshgate::testkit::*;

/// Two HTTP listeners on one port: `foo.example.com` (tags hostname: foo) and
/// `*.example.com` (tags hostname: wild) - the seed's example 2 layout.
fn gateway_foo_and_wild() -> String {
    gateway_listeners(&[
        (Some(1), "foo.example.com", "hostname: foo"),
        (Some(1), "*.example.com", "hostname: wild"),
    ])
}

fn single_route(rules_yaml: &str, services: &[&str]) -> Routing {
    Routing::build(&single_route_files(rules_yaml, services))
}

// ---------------------------------------------------------------------------------------- seed

// Seed example 1 (spec §4.1, §5.3 default): PathPrefix / on a listener selected by tags sends every
// path to demo-app; path, query and Host reach the backend unchanged.
#[test]
fn seed_1_pathprefix_root_sends_everything_to_demo_app() {
    let r = Routing::build(&[
        (
            "gateway.yaml",
            gateway_listeners(&[(None, "", "port: http-8080")]),
        ),
        (
            "route.yaml",
            tagged_prefix_route("demo-app-route", "port: http-8080\n", "/", "demo-app"),
        ),
        ("dataplanes.yaml", dataplanes(&["demo-app"])),
        ("gateway-dataplane.yaml", gateway_dataplane()),
    ]);
    r.assert_routed(1, "/", "127.0.0.1", "demo-app");
    let a = r.assert_routed(1, "/some/deep/path?x=1&y=2", "127.0.0.1", "demo-app");
    assert_eq!(a.seen_path(), "/some/deep/path?x=1&y=2");
    r.assert_routed_with(1, "POST", "/submit", "127.0.0.1", &[], "demo-app");
    let a = r.assert_routed(1, "/", "anything.example", "demo-app");
    assert_eq!(a.seen_host(), "anything.example");
}

// Seed example 2 (spec §3.6, recommendation "404"): a more specific listener without routes owns
// its host and answers 404; the wildcard listener's route serves the other subdomains.
#[test]
fn seed_2_specific_listener_without_routes_answers_404_wildcard_serves_the_rest() {
    let r = Routing::build(&[
        ("gateway.yaml", gateway_foo_and_wild()),
        (
            "route.yaml",
            tagged_prefix_route("wild-route", "hostname: wild\n", "/", "demo-app"),
        ),
        ("dataplanes.yaml", dataplanes(&["demo-app"])),
    ]);
    r.assert_status(1, "/", "foo.example.com", 404);
    r.assert_routed(1, "/", "bar.example.com", "demo-app");
    r.assert_routed(1, "/x", "baz.example.com:8080", "demo-app");
    r.assert_status(1, "/", "example.org", 404);
}

// Seed example 3 (spec §4.6, §3.5): a to[] entry with hostnames [dev.example.com] wins for that host;
// the generic to[] entry serves every other host.
#[test]
fn seed_3_hostname_specific_to_entry_wins_generic_entry_serves_other_hosts() {
    let route = http_route_tos(
        "example-route",
        &[
            (&[], &prefix_rule("/", "example-v1")),
            (&["dev.example.com"], &prefix_rule("/", "example-v2")),
        ],
    );
    let r = Routing::build(&[
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", route),
        ("dataplanes.yaml", dataplanes(&["example-v1", "example-v2"])),
    ]);
    let port = listener_port(1);
    r.assert_routed(1, "/", "dev.example.com", "example-v2");
    r.assert_routed(1, "/api", &format!("dev.example.com:{port}"), "example-v2");
    r.assert_routed(1, "/", "example.com", "example-v1");
    r.assert_routed(1, "/", "other.example.com", "example-v1");
    r.assert_routed(1, "/", &format!("127.0.0.1:{port}"), "example-v1");
}

// ---------------------------------------------------------------------------------------- hostnames

// Spec §3.3: the Host header is matched with its port removed and case-insensitively.
#[test]
fn host_matching_ignores_port_and_case() {
    let r = Routing::build(&[
        (
            "gateway.yaml",
            gateway_listeners(&[(None, "foo.example.com", "")]),
        ),
        ("route.yaml", catch_all_route("route", "v1")),
        ("dataplanes.yaml", dataplanes(&["v1"])),
    ]);
    r.assert_routed(1, "/", "foo.example.com", "v1");
    r.assert_routed(1, "/", "foo.example.com:1234", "v1");
    r.assert_routed(1, "/", "FOO.Example.COM", "v1");
    r.assert_routed(1, "/", "Foo.EXAMPLE.com:80", "v1");
    // the listener hostname still restricts the Host
    r.assert_status(1, "/", "bar.example.com", 404);
    r.assert_status(1, "/", "foo.example.com.evil", 404);
}

// Spec §3.3: `*.example.com` matches one or more labels (`a.b.example.com`) but never the bare
// domain `example.com`, nor a host that merely ends in the same characters.
#[test]
fn wildcard_listener_hostname_matches_multiple_labels_never_the_bare_domain() {
    let r = Routing::build(&[
        (
            "gateway.yaml",
            gateway_listeners(&[(None, "*.example.com", "")]),
        ),
        ("route.yaml", catch_all_route("route", "v1")),
        ("dataplanes.yaml", dataplanes(&["v1"])),
    ]);
    r.assert_routed(1, "/", "a.example.com", "v1");
    r.assert_routed(1, "/", "a.b.example.com", "v1");
    r.assert_routed(1, "/", "A.B.Example.Com:9", "v1");
    r.assert_status(1, "/", "example.com", 404);
    r.assert_status(1, "/", "badexample.com", 404);
    r.assert_status(1, "/", "a.example.org", 404);
}

// Spec §3.6 (certain case, [code]): when the specific listener has routes, a request for its host
// uses only its own routes - the wildcard listener's routes never leak into it.
#[test]
fn listener_isolation_specific_listener_with_routes_serves_only_its_own_routes() {
    let r = Routing::build(&[
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
    ]);
    r.assert_routed(1, "/foo", "foo.example.com", "v1");
    r.assert_routed(1, "/foo/bar", "foo.example.com", "v1");
    // the wildcard listener's catch-all must not apply to foo.example.com
    r.assert_status(1, "/other", "foo.example.com", 404);
    r.assert_routed(1, "/foo", "bar.example.com", "v2");
    r.assert_routed(1, "/other", "bar.example.com", "v2");
}

// ---------------------------------------------------------------------------------------- attachment

fn two_listeners(gateway_tags: &str) -> String {
    let gateway = gateway_listeners(&[(None, "", "port: one"), (None, "", "port: two")]);
    match gateway_tags {
        "" => gateway,
        tags => gateway.replace("conf:\n", &format!("tags:\n{}conf:\n", indent(tags, 2))),
    }
}

// Spec §3.4: a route attaches to the listeners whose effective tags contain all of targetRef.tags;
// a route without tags attaches to all listeners; a route whose tags match no listener has no
// effect; a route naming another gateway is ignored.
#[test]
fn route_attaches_to_listeners_by_targetref_tags() {
    let other_gateway = http_route("route-other-gateway", &prefix_rule("/d", "v3"))
        .replace("name: edge-gateway", "name: some-other-gateway");
    let r = Routing::build(&[
        ("gateway.yaml", two_listeners("")),
        (
            "route-one.yaml",
            tagged_prefix_route("route-one", "port: one\n", "/a", "v1"),
        ),
        (
            "route-all.yaml",
            http_route("route-all", &prefix_rule("/b", "v2")),
        ),
        (
            "route-nowhere.yaml",
            tagged_prefix_route("route-nowhere", "port: three\n", "/c", "v3"),
        ),
        ("route-other-gateway.yaml", other_gateway),
        ("dataplanes.yaml", dataplanes(&["v1", "v2", "v3"])),
    ]);
    r.assert_routed(1, "/a", "x.test", "v1");
    r.assert_status(2, "/a", "x.test", 404);
    r.assert_routed(1, "/b", "x.test", "v2");
    r.assert_routed(2, "/b", "x.test", "v2");
    r.assert_status(1, "/c", "x.test", 404);
    r.assert_status(2, "/c", "x.test", 404);
    r.assert_status(1, "/d", "x.test", 404);
    r.assert_status(2, "/d", "x.test", 404);
}

// Spec §1.1 + §3.4: listener effective tags = gateway Dataplane tags + MeshGateway tags + listener
// tags, so a route can select listeners by a gateway-wide tag combined with a listener tag.
#[test]
fn route_tags_match_merged_gateway_and_listener_tags() {
    let r = Routing::build(&[
        ("gateway.yaml", two_listeners("team: edge")),
        (
            "route.yaml",
            tagged_prefix_route("route", "team: edge\nport: two\n", "/", "v1"),
        ),
        ("dataplanes.yaml", dataplanes(&["v1"])),
    ]);
    r.assert_routed(2, "/", "x.test", "v1");
    r.assert_status(1, "/", "x.test", 404);
}

// Spec §3.5 / §4.6: rules of a to[] entry with hostnames bind to the intersection with the listener
// hostname; generic rules fall through into that host; other hosts only see generic rules.
#[test]
fn to_hostnames_intersect_listener_hostname_and_generic_rules_fall_through() {
    let route = http_route_tos(
        "route",
        &[
            (&["a.example.com"], &prefix_rule("/", "v1")),
            (&[], &prefix_rule("/generic", "v2")),
        ],
    );
    let r = Routing::build(&[
        (
            "gateway.yaml",
            gateway_listeners(&[(None, "*.example.com", "")]),
        ),
        ("route.yaml", route),
        ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
    ]);
    r.assert_routed(1, "/", "a.example.com", "v1");
    r.assert_routed(1, "/x", "a.example.com", "v1");
    // generic /generic is longer than the host-specific / and falls through into a.example.com
    r.assert_routed(1, "/generic", "a.example.com", "v2");
    r.assert_routed(1, "/generic", "b.example.com", "v2");
    r.assert_status(1, "/", "b.example.com", 404);
}

// Spec §3.5 step 2: route hostnames that do not intersect the listener hostname are ignored on that
// listener (they are not treated as generic rules).
#[test]
fn to_hostnames_without_intersection_are_ignored() {
    let r = Routing::build(&[
        (
            "gateway.yaml",
            gateway_listeners(&[(None, "foo.example.com", "")]),
        ),
        (
            "route.yaml",
            http_route_for_hosts("route", &["bar.example.com"], &prefix_rule("/", "v1")),
        ),
        ("dataplanes.yaml", dataplanes(&["v1"])),
    ]);
    r.assert_status(1, "/", "foo.example.com", 404);
    r.assert_status(1, "/", "bar.example.com", 404);
}

// Spec §3.5 (binding hostname = intersection; golden gateway-listener-different-hostnames-specific):
// on a specific listener `foo.example.com`, a to[] entry for `*.example.com` binds to
// foo.example.com; on a catch-all listener, only the route's hostnames get rules.
#[test]
fn wildcard_route_hostname_binds_to_specific_listener_and_catch_all_listener_serves_only_named_hosts(
) {
    let r = Routing::build(&[
        (
            "gateway.yaml",
            gateway_listeners(&[(None, "foo.example.com", ""), (None, "*", "")]),
        ),
        (
            "route.yaml",
            http_route_for_hosts("route", &["\"*.example.com\""], &prefix_rule("/", "v1")),
        ),
        ("dataplanes.yaml", dataplanes(&["v1"])),
    ]);
    r.assert_routed(1, "/", "foo.example.com", "v1");
    r.assert_routed(2, "/", "any.example.com", "v1");
    r.assert_status(2, "/", "example.org", 404);
}

// ---------------------------------------------------------------------------------------- path matching

fn rule(path_type: &str, value: &str, service: &str) -> String {
    format!(
        "- matches:\n  - path:\n      type: {path_type}\n      value: {value}\n  default:\n    backendRefs:\n    - kind: MeshService\n      name: {service}\n"
    )
}

// Spec §4.1: PathPrefix is segment-wise (/api matches /api, /api/, /api/x but not /apix) and
// case-sensitive.
#[test]
fn pathprefix_matches_whole_segments_and_is_case_sensitive() {
    let r = single_route(&rule("PathPrefix", "/api", "v1"), &["v1"]);
    r.assert_routed(1, "/api", "a.test", "v1");
    r.assert_routed(1, "/api/", "a.test", "v1");
    r.assert_routed(1, "/api/x/y", "a.test", "v1");
    r.assert_routed(1, "/api?q=1", "a.test", "v1");
    r.assert_status(1, "/apix", "a.test", 404);
    r.assert_status(1, "/API", "a.test", 404);
    r.assert_status(1, "/", "a.test", 404);
}

// Spec §4.1: Exact is byte-exact on the path without the query string.
#[test]
fn exact_path_matches_only_the_exact_path_query_ignored() {
    let r = single_route(&rule("Exact", "/exact", "v1"), &["v1"]);
    r.assert_routed(1, "/exact", "a.test", "v1");
    let a = r.assert_routed(1, "/exact?x=1", "a.test", "v1");
    assert_eq!(a.seen_path(), "/exact?x=1");
    r.assert_status(1, "/exact/", "a.test", 404);
    r.assert_status(1, "/exactly", "a.test", 404);
    r.assert_status(1, "/Exact", "a.test", 404);
}

// Spec §4.1: RegularExpression must match the whole path (anchors implied), query excluded.
#[test]
fn regex_path_must_match_the_whole_path() {
    let r = single_route(&rule("RegularExpression", "/api/v[0-9]+", "v1"), &["v1"]);
    r.assert_routed(1, "/api/v1", "a.test", "v1");
    r.assert_routed(1, "/api/v42?debug=1", "a.test", "v1");
    r.assert_status(1, "/api/v1/users", "a.test", 404);
    r.assert_status(1, "/x/api/v1", "a.test", 404);
    r.assert_status(1, "/api/vx", "a.test", 404);
}

// Spec §3.8 ([code] path normalisation on): dot segments are removed and `//` merged before
// matching, and the backend receives the normalised path.
#[test]
fn path_is_normalised_before_matching_and_forwarded_normalised() {
    let r = single_route(&rule("Exact", "/b/c", "v1"), &["v1"]);
    for path in ["/b/c", "/a/../b/c", "/b/./c", "//b//c", "/b/x/../c?q=1"] {
        let a = r.assert_routed(1, path, "a.test", "v1");
        assert_eq!(a.seen_path().split('?').next(), Some("/b/c"), "{path}");
    }
    r.assert_status(1, "/b/c/..", "a.test", 404);
}

// ---------------------------------------------------------------------------------------- precedence

// Spec §4.5.1 / §4.1 (golden 08): for the same value, Exact beats PathPrefix; the prefix still
// serves the sub-paths.
#[test]
fn precedence_exact_beats_prefix_of_the_same_path() {
    let rules = rule("PathPrefix", "/api", "prefix") + &rule("Exact", "/api", "exact");
    let r = single_route(&rules, &["exact", "prefix"]);
    r.assert_routed(1, "/api", "a.test", "exact");
    r.assert_routed(1, "/api/", "a.test", "prefix");
    r.assert_routed(1, "/api/x", "a.test", "prefix");
}

// Spec §4.5.2: among prefixes the longer one wins, whatever the declaration order.
#[test]
fn precedence_longer_prefix_wins_regardless_of_order() {
    let rules = rule("PathPrefix", "/a", "short")
        + &rule("PathPrefix", "/a/b/c", "longest")
        + &rule("PathPrefix", "/a/b", "long");
    let r = single_route(&rules, &["short", "long", "longest"]);
    r.assert_routed(1, "/a/x", "a.test", "short");
    r.assert_routed(1, "/a/b", "a.test", "long");
    r.assert_routed(1, "/a/b/x", "a.test", "long");
    r.assert_routed(1, "/a/b/c/d", "a.test", "longest");
    r.assert_routed(1, "/a/bc", "a.test", "short");
}

// Spec §4.5.3 (golden 13): a prefix entry always outranks a regex entry, so PathPrefix `/` shadows a
// RegularExpression rule; without the catch-all the regex rule serves its paths.
#[test]
fn precedence_prefix_outranks_regex_and_root_prefix_shadows_regex() {
    let regex = rule("RegularExpression", "/api/v[0-9]+", "regex");
    let shadowed = single_route(
        &(regex.clone() + &rule("PathPrefix", "/", "prefix")),
        &["prefix", "regex"],
    );
    shadowed.assert_routed(1, "/api/v1", "a.test", "prefix");
    let not_shadowed = single_route(
        &(regex + &rule("PathPrefix", "/other", "prefix")),
        &["prefix", "regex"],
    );
    not_shadowed.assert_routed(1, "/api/v1", "a.test", "regex");
    not_shadowed.assert_routed(1, "/other", "a.test", "prefix");
}

// Spec §4.1 ("rules without path get a PathPrefix / entry") + §4.5.3: a path-less rule is a prefix
// `/` entry and therefore outranks a regex rule.
#[test]
fn precedence_rule_without_path_counts_as_prefix_root_and_beats_regex() {
    let rules = rule("RegularExpression", "/r.*", "regex")
        + "- matches:\n  - method: GET\n  default:\n    backendRefs:\n    - kind: MeshService\n      name: no-path\n";
    let r = single_route(&rules, &["no-path", "regex"]);
    r.assert_routed(1, "/r1", "a.test", "no-path");
    r.assert_routed_with(1, "POST", "/r1", "a.test", &[], "regex");
}

// Spec §4.5.1: Exact outranks RegularExpression too.
#[test]
fn precedence_exact_beats_regex() {
    let rules = rule("RegularExpression", "/.*", "regex") + &rule("Exact", "/exact", "exact");
    let r = single_route(&rules, &["exact", "regex"]);
    r.assert_routed(1, "/exact", "a.test", "exact");
    r.assert_routed(1, "/other", "a.test", "regex");
}

// Spec §4.5.4 (sorter_test "method before header"): with the same path, a rule with a method
// outranks a rule without one, whatever the declaration order.
#[test]
fn precedence_method_match_beats_no_method() {
    let rules = rule("PathPrefix", "/x", "any")
        + "- matches:\n  - path:\n      type: PathPrefix\n      value: /x\n    method: POST\n  default:\n    backendRefs:\n    - kind: MeshService\n      name: post\n";
    let r = single_route(&rules, &["any", "post"]);
    r.assert_routed_with(1, "POST", "/x", "a.test", &[], "post");
    r.assert_routed(1, "/x", "a.test", "any");
    r.assert_routed_with(1, "PUT", "/x/y", "a.test", &[], "any");
}

fn header_rule(path: &str, headers: &str, service: &str) -> String {
    format!(
        "- matches:\n  - path:\n      type: PathPrefix\n      value: {path}\n    headers:\n{}  default:\n    backendRefs:\n    - kind: MeshService\n      name: {service}\n",
        indent(headers, 4)
    )
}

// Spec §4.5.5 (golden 10): with the same path and method, the rule with more header conditions is
// tried first.
#[test]
fn precedence_more_header_conditions_first() {
    let rules = header_rule("/x", "- type: Present\n  name: x-a\n", "one-header")
        + &header_rule(
            "/x",
            "- type: Present\n  name: x-a\n- type: Present\n  name: x-b\n",
            "two-headers",
        );
    let r = single_route(&rules, &["one-header", "two-headers"]);
    let both = [("x-a", "1"), ("x-b", "1")];
    r.assert_routed_with(1, "GET", "/x", "a.test", &both, "two-headers");
    r.assert_routed_with(1, "GET", "/x", "a.test", &[("x-a", "1")], "one-header");
    r.assert_status_with(1, "GET", "/x", "a.test", &[("x-b", "1")], 404);
}

// Spec §4.5 (path specificity is compared before header count): a longer prefix without headers
// beats a shorter prefix with two header conditions.
#[test]
fn precedence_path_specificity_before_header_count() {
    let rules = header_rule(
        "/",
        "- name: x-a\n  value: \"1\"\n- name: x-b\n  value: \"1\"\n",
        "headers",
    ) + &rule("PathPrefix", "/long", "long-path");
    let r = single_route(&rules, &["long-path", "headers"]);
    let h = [("x-a", "1"), ("x-b", "1")];
    r.assert_routed_with(1, "GET", "/long", "a.test", &h, "long-path");
    r.assert_routed_with(1, "GET", "/other", "a.test", &h, "headers");
}

// ---------------------------------------------------------------------------------------- headers / query

// Spec §4.3: Exact header match (the default type): names case-insensitive, values case-sensitive.
#[test]
fn header_exact_match_name_case_insensitive_value_case_sensitive() {
    let rules = header_rule("/", "- name: x-env\n  value: prod\n", "matched")
        + &rule("PathPrefix", "/", "fallback");
    let r = single_route(&rules, &["matched", "fallback"]);
    r.assert_routed_with(1, "GET", "/", "a.test", &[("x-env", "prod")], "matched");
    r.assert_routed_with(1, "GET", "/", "a.test", &[("X-Env", "prod")], "matched");
    r.assert_routed_with(1, "GET", "/", "a.test", &[("x-env", "Prod")], "fallback");
    r.assert_routed_with(1, "GET", "/", "a.test", &[("x-env", "prod2")], "fallback");
    r.assert_routed(1, "/", "a.test", "fallback");
}

// Spec §4.3: Present matches any value of an existing header; Absent matches only without it.
#[test]
fn header_present_and_absent_matches() {
    let rules = header_rule("/p", "- type: Present\n  name: x-token\n", "present")
        + &header_rule("/a", "- type: Absent\n  name: x-token\n", "absent");
    let r = single_route(&rules, &["present", "absent"]);
    let token = [("x-token", "anything")];
    r.assert_routed_with(1, "GET", "/p", "a.test", &token, "present");
    r.assert_status(1, "/p", "a.test", 404);
    r.assert_routed(1, "/a", "a.test", "absent");
    r.assert_status_with(1, "GET", "/a", "a.test", &[("x-token", "x")], 404);
}

// Spec §4.3: RegularExpression header match is a full match; Prefix matches the value's start.
#[test]
fn header_regex_full_match_and_prefix_match() {
    let rules = header_rule(
        "/r",
        "- type: RegularExpression\n  name: x-version\n  value: v[0-9]+\n",
        "regex",
    ) + &header_rule(
        "/p",
        "- type: Prefix\n  name: x-user\n  value: admin-\n",
        "prefix",
    );
    let r = single_route(&rules, &["regex", "prefix"]);
    r.assert_routed_with(1, "GET", "/r", "a.test", &[("x-version", "v12")], "regex");
    r.assert_status_with(1, "GET", "/r", "a.test", &[("x-version", "v1x")], 404);
    r.assert_status_with(1, "GET", "/r", "a.test", &[("x-version", "xv1")], 404);
    let admin = [("x-user", "admin-bob")];
    r.assert_routed_with(1, "GET", "/p", "a.test", &admin, "prefix");
    r.assert_status_with(1, "GET", "/p", "a.test", &[("x-user", "bob-admin-")], 404);
}

fn query_rule(path: &str, params: &str, service: &str) -> String {
    format!(
        "- matches:\n  - path:\n      type: PathPrefix\n      value: {path}\n    queryParams:\n{}  default:\n    backendRefs:\n    - kind: MeshService\n      name: {service}\n",
        indent(params, 4)
    )
}

// Spec §4.4: query Exact (value equality) and RegularExpression (full match); all listed
// parameters are ANDed (the spec recommends the intended AND over Kuma's regex-list bug).
#[test]
fn query_param_exact_and_regex_matches_are_anded() {
    let rules = query_rule(
        "/e",
        "- type: Exact\n  name: version\n  value: \"2\"\n",
        "exact",
    ) + &query_rule(
        "/r",
        "- type: RegularExpression\n  name: debug\n  value: (true|1)\n",
        "regex",
    ) + &query_rule(
        "/b",
        "- type: RegularExpression\n  name: x\n  value: \"[0-9]+\"\n- type: RegularExpression\n  name: y\n  value: \"[a-z]+\"\n",
        "both",
    );
    let r = single_route(&rules, &["exact", "regex", "both"]);
    r.assert_routed(1, "/e?version=2", "a.test", "exact");
    r.assert_routed(1, "/e?a=b&version=2", "a.test", "exact");
    r.assert_status(1, "/e?version=20", "a.test", 404);
    r.assert_status(1, "/e", "a.test", 404);
    r.assert_routed(1, "/r?debug=1", "a.test", "regex");
    r.assert_routed(1, "/r?debug=true", "a.test", "regex");
    r.assert_status(1, "/r?debug=10", "a.test", 404);
    r.assert_routed(1, "/b?x=1&y=a", "a.test", "both");
    r.assert_status(1, "/b?x=a&y=a", "a.test", 404);
    r.assert_status(1, "/b?x=1&y=1", "a.test", 404);
    r.assert_status(1, "/b?y=a", "a.test", 404);
}

// Spec §4 intro + §4.2-4.4 (golden 12): the elements of matches[] are ORed; the conditions inside
// one match (path, method, headers, query) are ANDed.
#[test]
fn matches_are_ored_and_conditions_inside_a_match_are_anded() {
    let rules = dedent(
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
    );
    let r = single_route(&rules, &["v1"]);
    r.assert_routed(1, "/a", "a.test", "v1");
    r.assert_routed_with(1, "POST", "/b", "a.test", &[], "v1");
    r.assert_status(1, "/b", "a.test", 404);
    r.assert_routed_with(1, "PUT", "/c?q=1", "a.test", &[("x-k", "v")], "v1");
    r.assert_status_with(1, "PUT", "/c?q=1", "a.test", &[], 404);
    r.assert_status_with(1, "GET", "/c?q=1", "a.test", &[("x-k", "v")], 404);
    r.assert_status_with(1, "PUT", "/c", "a.test", &[("x-k", "v")], 404);
}

// ---------------------------------------------------------------------------------------- merging

// Spec §4.7: rules with different matches from several routes on one listener are unioned.
#[test]
fn routes_on_the_same_listener_are_unioned() {
    let r = Routing::build(&[
        ("gateway.yaml", gateway_one_http()),
        (
            "route-a.yaml",
            http_route("route-a", &prefix_rule("/a", "v1")),
        ),
        (
            "route-b.yaml",
            http_route("route-b", &prefix_rule("/b", "v2")),
        ),
        ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
    ]);
    r.assert_routed(1, "/a", "a.test", "v1");
    r.assert_routed(1, "/b/x", "a.test", "v2");
    r.assert_status(1, "/c", "a.test", 404);
}

// Spec §4.7: identical matches in two routes are merged into one rule by JSON merge-patch of
// `default`. Which route wins is UNCONFIRMED in Kuma (docs: smaller name; code: greater name); we
// follow the spec's recommendation (code: the lexicographically greater name, `beta`, wins). Its
// backendRefs replace alpha's, while alpha's filters survive because beta defines none.
#[test]
fn identical_matches_across_routes_merge_greater_name_wins_and_filters_survive() {
    let alpha = http_route(
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
    );
    let r = Routing::build(&[
        ("gateway.yaml", gateway_one_http()),
        (
            "routes.yaml",
            alpha + "---\n" + &catch_all_route("beta", "v2"),
        ),
        ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
    ]);
    let a = r.assert_routed(1, "/", "a.test", "v2");
    assert_eq!(a.seen_header("x-from").as_deref(), Some("alpha"));
    assert_eq!(a.route.as_deref(), Some("beta"));
}

// Spec §4.7 ("within one to[] entry, for duplicate matches, the first rule wins"; code-derived,
// UNCONFIRMED by a Kuma test - we follow the spec).
#[test]
fn duplicate_matches_inside_one_to_entry_first_rule_wins() {
    let rules = rule("PathPrefix", "/dup", "first") + &rule("PathPrefix", "/dup", "second");
    let r = single_route(&rules, &["first", "second"]);
    r.assert_routed(1, "/dup", "a.test", "first");
}

// ---------------------------------------------------------------------------------------- misc

// Spec §4.8 / §3.9: no route matching -> 404, also on a listener with no route at all.
#[test]
fn no_matching_route_answers_404() {
    let r = Routing::build(&[
        ("gateway.yaml", two_listeners("")),
        (
            "route.yaml",
            tagged_prefix_route("route", "port: one\n", "/only", "v1"),
        ),
        ("dataplanes.yaml", dataplanes(&["v1"])),
    ]);
    let a = r.assert_status(1, "/nothing", "a.test", 404);
    assert_eq!(a.backend, None);
    let a = r.assert_status(2, "/only", "a.test", 404);
    assert_eq!(a.backend, None);
}

// Spec §3.8 ([test], golden 08): an incoming `x-kuma-tags` header is replaced before forwarding,
// so clients cannot forge mesh identity tags; the gateway adds its own.
#[test]
fn client_supplied_x_kuma_tags_header_is_replaced_by_the_gateways() {
    let r = Routing::build(&[
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", catch_all_route("route", "v1")),
        ("dataplanes.yaml", dataplanes(&["v1"])),
        ("gateway-dataplane.yaml", gateway_dataplane()),
    ]);
    let forged = [("x-kuma-tags", "&kuma.io/service=forged&")];
    let a = r.assert_routed_with(1, "GET", "/", "a.test", &forged, "v1");
    assert_eq!(
        a.seen_header("x-kuma-tags").as_deref(),
        Some("&kuma.io/service=edge-gateway&")
    );
}

// Spec §3.8 (Envoy use_remote_address): the client address is appended to x-forwarded-for and
// x-forwarded-proto names the listener's scheme.
#[test]
fn forwarded_headers_name_the_client_and_the_scheme() {
    let r = Routing::build(&[
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", catch_all_route("route", "v1")),
        ("dataplanes.yaml", dataplanes(&["v1"])),
    ]);
    let a = r.assert_routed(1, "/", "a.test", "v1");
    assert_eq!(
        a.seen_header("x-forwarded-for").as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(a.seen_header("x-forwarded-proto").as_deref(), Some("http"));
    let a = r.assert_routed_with(
        1,
        "GET",
        "/",
        "a.test",
        &[("x-forwarded-for", "10.0.0.1")],
        "v1",
    );
    assert_eq!(
        a.seen_header("x-forwarded-for").as_deref(),
        Some("10.0.0.1, 192.0.2.7")
    );
}
