//! MeshHTTPRoute filters (spec: ../shared/spec/kuma-gateway-semantics.md section 5): header
//! modifiers, redirects, URL rewrites and request mirroring, checked end to end.

use std::time::Duration;

use crate::support::*;

/// One rule: PathPrefix `prefix`, the given `filters:` list (YAML at column 0) and optional
/// backend.
fn rule(prefix: &str, filters: &str, backend: Option<&str>) -> String {
    let mut s = format!(
        "- matches:\n  - path:\n      type: PathPrefix\n      value: {prefix}\n  default:\n    filters:\n{}",
        indent(&dedent(filters), 4)
    );
    if let Some(b) = backend {
        s.push_str(&format!(
            "    backendRefs:\n    - kind: MeshService\n      name: {b}\n"
        ));
    }
    s
}

fn start(rules: &[String], backends: &[&str]) -> Gateway {
    Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            ("route.yaml", http_route("route", &rules.concat())),
            ("dataplanes.yaml", dataplanes(backends)),
        ],
        &[],
    )
}

// ---------------------------------------------------------------------------------------- header modifiers

// Spec §5.1: RequestHeaderModifier `set` overwrites, `add` appends (the backend sees both values),
// `remove` deletes; other headers pass unchanged.
#[test]
fn request_header_modifier_set_add_remove() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/",
            r#"
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set:
                - name: x-set
                  value: new
                add:
                - name: x-add
                  value: two
                remove:
                - x-remove
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let r = gw.send(
        1,
        "GET",
        "/",
        "a.test",
        &[
            ("x-set", "old"),
            ("x-add", "one"),
            ("x-remove", "bye"),
            ("x-keep", "kept"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "body {:?}", r.text());
    assert_eq!(r.seen_header("x-set"), vec!["new"]);
    let mut add = r.seen_header("x-add");
    add.sort();
    assert_eq!(add, vec!["one", "two"]);
    assert!(
        r.seen_header("x-remove").is_empty(),
        "x-remove was forwarded"
    );
    assert_eq!(r.seen_header("x-keep"), vec!["kept"]);

    // without client headers: set and add create the header
    let r = gw.get(1, "/", "a.test");
    assert_eq!(r.seen_header("x-set"), vec!["new"]);
    assert_eq!(r.seen_header("x-add"), vec!["two"]);
}

// Spec §5.1 ([code], golden 14): `set` of `host` in a RequestHeaderModifier rewrites the Host header.
#[test]
fn request_header_modifier_set_host_rewrites_host() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/",
            r#"
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set:
                - name: host
                  value: rewritten.example
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let r = gw.assert_routed(1, "/x", "original.test", "v1");
    assert_eq!(r.seen_host(), "rewritten.example");
    assert_eq!(r.seen_path(), "/x");
}

// Spec §5.1: ResponseHeaderModifier set/add/remove apply to the backend's response.
#[test]
fn response_header_modifier_set_add_remove() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/",
            r#"
            - type: ResponseHeaderModifier
              responseHeaderModifier:
                set:
                - name: x-resp-set
                  value: gateway
                add:
                - name: x-resp-add
                  value: two
                remove:
                - x-resp-remove
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let r = gw.send(
        1,
        "GET",
        "/",
        "a.test",
        &[(
            "x-echo-set-header",
            "x-resp-set:backend,x-resp-add:one,x-resp-remove:yes,x-resp-keep:kept",
        )],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(backend_of(&r).as_deref(), Some("v1"));
    assert_eq!(r.header_all("x-resp-set"), vec!["gateway"]);
    let mut add: Vec<String> = r
        .header_all("x-resp-add")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    add.sort();
    assert_eq!(add, vec!["one", "two"]);
    assert!(
        r.header("x-resp-remove").is_none(),
        "x-resp-remove survived"
    );
    assert_eq!(r.header("x-resp-keep"), Some("kept"));
}

// ---------------------------------------------------------------------------------------- redirects

// Spec §5.2 (golden 05): scheme + hostname + statusCode; the port defaults to the *listener* port and
// is written explicitly even when the scheme changes; the query is stripped; no backend contacted.
#[test]
fn redirect_scheme_hostname_status_with_listener_port_and_query_stripped() {
    let v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/",
            r#"
            - type: RequestRedirect
              requestRedirect:
                scheme: https
                hostname: example.com
                statusCode: 301
            "#,
            None,
        )],
        &["v1"],
    );
    let port = gw.lport(1);
    let r = gw.get(1, "/some/path?x=1&y=2", "a.test:1234");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://example.com:{port}/some/path").as_str())
    );
    assert_eq!(v1.count(), 0, "a redirect must not contact a backend");
}

// Spec §5.2: statusCode defaults to 302; an explicit port replaces the listener port; without a
// hostname the request Host (port removed) is used; without scheme the request's scheme (http).
#[test]
fn redirect_default_status_302_explicit_port_and_request_host() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[
            rule(
                "/port",
                r#"
                - type: RequestRedirect
                  requestRedirect:
                    port: 8443
                "#,
                None,
            ),
            rule(
                "/plain",
                r#"
                - type: RequestRedirect
                  requestRedirect:
                    statusCode: 307
                "#,
                None,
            ),
        ],
        &["v1"],
    );
    let port = gw.lport(1);
    let r = gw.get(1, "/port/x?q=1", "a.test:1234");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://a.test:8443/port/x"));
    let r = gw.get(1, "/plain", "B.test");
    assert_eq!(r.status, 307);
    let loc = r.header("location").unwrap_or_default().to_string();
    assert!(
        loc.eq_ignore_ascii_case(&format!("http://b.test:{port}/plain")),
        "Location {loc:?}"
    );
}

// Spec §5.2: a redirect with path ReplaceFullPath sends the client to that path, query stripped.
#[test]
fn redirect_replace_full_path() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/old",
            r#"
            - type: RequestRedirect
              requestRedirect:
                path:
                  type: ReplaceFullPath
                  replaceFullPath: /new/place
            "#,
            None,
        )],
        &["v1"],
    );
    let port = gw.lport(1);
    let r = gw.get(1, "/old/x/y?q=1", "a.test");
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("http://a.test:{port}/new/place").as_str())
    );
}

// Spec §5.2 + §5.3 (golden rewrite-prefix): a redirect with ReplacePrefixMatch replaces the matched
// prefix segment-wise; query stripped.
#[test]
fn redirect_replace_prefix_match() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/old",
            r#"
            - type: RequestRedirect
              requestRedirect:
                path:
                  type: ReplacePrefixMatch
                  replacePrefixMatch: /new
            "#,
            None,
        )],
        &["v1"],
    );
    let port = gw.lport(1);
    let loc = |path: &str| {
        let r = gw.get(1, path, "a.test");
        assert_eq!(r.status, 302, "{path}");
        r.header("location").unwrap_or_default().to_string()
    };
    assert_eq!(loc("/old/x?q=1"), format!("http://a.test:{port}/new/x"));
    assert_eq!(loc("/old"), format!("http://a.test:{port}/new"));
    assert_eq!(loc("/old/"), format!("http://a.test:{port}/new/"));
}

// ---------------------------------------------------------------------------------------- URL rewrites

// Spec §5.3: ReplaceFullPath replaces the whole path and keeps the query string.
#[test]
fn urlrewrite_replace_full_path_keeps_query() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/any",
            r#"
            - type: URLRewrite
              urlRewrite:
                path:
                  type: ReplaceFullPath
                  replaceFullPath: /replaced
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let r = gw.assert_routed(1, "/any/thing?x=1&y=2", "a.test", "v1");
    assert_eq!(r.seen_path(), "/replaced?x=1&y=2");
    let r = gw.assert_routed(1, "/any", "a.test", "v1");
    assert_eq!(r.seen_path(), "/replaced");
}

// Spec §5.3: ReplacePrefixMatch `/p/a` -> `/r`: `/p/a/rest` -> `/r/rest`, `/p/a` -> `/r`,
// `/p/a/` -> `/r/`; query kept; segment-wise (so `/p/ab` is not matched at all).
#[test]
fn urlrewrite_replace_prefix_match_is_segment_aware() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/p/a",
            r#"
            - type: URLRewrite
              urlRewrite:
                path:
                  type: ReplacePrefixMatch
                  replacePrefixMatch: /r
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let seen = |path: &str| gw.assert_routed(1, path, "a.test", "v1").seen_path();
    assert_eq!(seen("/p/a/rest"), "/r/rest");
    assert_eq!(seen("/p/a/x/y?q=1"), "/r/x/y?q=1");
    assert_eq!(seen("/p/a"), "/r");
    assert_eq!(seen("/p/a/"), "/r/");
    gw.assert_status(1, "/p/ab", "a.test", 404);
}

// Spec §5.3 (golden drop-prefix): replacement `/` drops the prefix: `/prefix/rest` -> `/rest`,
// `/prefix` -> `/`, `/prefix/` -> `/`.
#[test]
fn urlrewrite_replace_prefix_with_slash_drops_the_prefix() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/prefix",
            r#"
            - type: URLRewrite
              urlRewrite:
                path:
                  type: ReplacePrefixMatch
                  replacePrefixMatch: /
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let seen = |path: &str| gw.assert_routed(1, path, "a.test", "v1").seen_path();
    assert_eq!(seen("/prefix/rest"), "/rest");
    assert_eq!(seen("/prefix/a/b?q=1"), "/a/b?q=1");
    assert_eq!(seen("/prefix"), "/");
    assert_eq!(seen("/prefix/"), "/");
}

// Spec §5.3 (golden rewrite root prefix): match prefix `/` with replacement `/a/b`: `/x` -> `/a/b/x`,
// `/` -> `/a/b`.
#[test]
fn urlrewrite_replace_root_prefix_prepends_the_replacement() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/",
            r#"
            - type: URLRewrite
              urlRewrite:
                path:
                  type: ReplacePrefixMatch
                  replacePrefixMatch: /a/b
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let seen = |path: &str| gw.assert_routed(1, path, "a.test", "v1").seen_path();
    assert_eq!(seen("/x"), "/a/b/x");
    assert_eq!(seen("/x/y?q=1"), "/a/b/x/y?q=1");
    assert_eq!(seen("/"), "/a/b");
}

// Spec §5.3: the trailing `/` of a replacement is ignored (`/r/` behaves like `/r`).
#[test]
fn urlrewrite_replacement_trailing_slash_is_ignored() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/p",
            r#"
            - type: URLRewrite
              urlRewrite:
                path:
                  type: ReplacePrefixMatch
                  replacePrefixMatch: /r/
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let seen = |path: &str| gw.assert_routed(1, path, "a.test", "v1").seen_path();
    assert_eq!(seen("/p/x"), "/r/x");
    assert_eq!(seen("/p"), "/r");
}

// Spec §5.3: URLRewrite hostname replaces the Host header; the path is unchanged.
#[test]
fn urlrewrite_hostname_replaces_host() {
    let _v1 = EchoHttp::start("v1");
    let gw = start(
        &[rule(
            "/",
            r#"
            - type: URLRewrite
              urlRewrite:
                hostname: internal.example
            "#,
            Some("v1"),
        )],
        &["v1"],
    );
    let r = gw.assert_routed(1, "/keep/me?x=1", "public.test", "v1");
    assert_eq!(r.seen_host(), "internal.example");
    assert_eq!(r.seen_path(), "/keep/me?x=1");
}

// ---------------------------------------------------------------------------------------- mirror

fn mirror_rule(percentage: Option<&str>, mirror: &str) -> String {
    let pct = percentage
        .map(|p| format!("    percentage: {p}\n"))
        .unwrap_or_default();
    rule(
        "/",
        &format!(
            "- type: RequestMirror\n  requestMirror:\n    backendRef:\n      kind: MeshService\n      name: {mirror}\n{pct}"
        ),
        Some("v1"),
    )
}

// Spec §5.4 (golden 04): a copy of each request (method, path, body) goes to the mirror backend;
// the client gets the primary backend's response.
#[test]
fn request_mirror_sends_a_copy_and_client_gets_the_primary_response() {
    let v1 = EchoHttp::start("v1");
    let mirror = EchoHttp::start("mirror");
    let gw = start(&[mirror_rule(None, "mirror")], &["v1", "mirror"]);
    let r = gw.send(
        1,
        "POST",
        "/m?x=1",
        "a.test",
        &[("x-test-id", "mirror-1")],
        b"hello",
    );
    assert_eq!(r.status, 200);
    assert_eq!(backend_of(&r).as_deref(), Some("v1"));
    assert!(v1.find("mirror-1").is_some());
    let copy = mirror
        .wait_for("mirror-1", Duration::from_secs(5))
        .expect("the mirror backend never received the copy");
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.path(), "/m");
    assert_eq!(copy.body, b"hello");
}

// Spec §5.4 [envoy]: the mirrored request's Host gets the `-shadow` suffix.
#[test]
fn request_mirror_copy_has_shadow_host() {
    let _v1 = EchoHttp::start("v1");
    let mirror = EchoHttp::start("mirror");
    let gw = start(&[mirror_rule(None, "mirror")], &["v1", "mirror"]);
    let r = gw.send(1, "GET", "/", "a.test", &[("x-test-id", "shadow-1")], b"");
    assert_eq!(r.status, 200);
    let copy = mirror
        .wait_for("shadow-1", Duration::from_secs(5))
        .expect("the mirror backend never received the copy");
    assert_eq!(copy.host.as_deref(), Some("a.test-shadow"));
}

// Spec §5.4: percentage 0 mirrors nothing.
#[test]
fn request_mirror_percentage_zero_mirrors_nothing() {
    let _v1 = EchoHttp::start("v1");
    let mirror = EchoHttp::start("mirror");
    let gw = start(&[mirror_rule(Some("0"), "mirror")], &["v1", "mirror"]);
    for i in 0..40 {
        let id = format!("zero-{i}");
        let r = gw.send(1, "GET", "/", "a.test", &[("x-test-id", &id)], b"");
        assert_eq!(r.status, 200);
        assert_eq!(backend_of(&r).as_deref(), Some("v1"));
    }
    // mirrored copies are fire-and-forget: give stragglers time to arrive before counting
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(mirror.count(), 0, "percentage 0 mirrored requests");
}

// Spec §5.4: mirror failures are ignored - a mirror backend that refuses connections does not affect
// the client's response.
#[test]
fn request_mirror_failure_does_not_affect_the_client() {
    let _v1 = EchoHttp::start("v1");
    let dead_port = free_port(); // nothing listens here
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            (
                "route.yaml",
                http_route("route", &mirror_rule(None, "dead-mirror")),
            ),
            (
                "dataplanes.yaml",
                dataplanes(&["v1"])
                    + "---\n"
                    + &dataplane("dp-dead", "dead-mirror", &dead_port.to_string()),
            ),
        ],
        &[],
    );
    for _ in 0..10 {
        gw.assert_routed(1, "/", "a.test", "v1");
    }
}
