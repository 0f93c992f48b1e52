//! The command line and admin interface (issue 2 "The interface", team brief): `--check`, admin
//! `/ready`, `/config`, `/metrics`, `--gateway`, resource forms and the policy directory layout.
//! Validation messages follow spec §2 (../shared/spec/kuma-gateway-semantics.md).

use std::path::Path;
use std::time::Duration;

use crate::support::*;

fn valid_files() -> Vec<(&'static str, String)> {
    vec![
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", catch_all_route("route", "v1")),
        ("dataplanes.yaml", dataplane("dp-v1", "v1", "9001")),
    ]
}

/// The line of `--check` output that contains every needle.
fn line_with<'a>(out: &'a str, needles: &[&str]) -> Option<&'a str> {
    out.lines().find(|l| needles.iter().all(|n| l.contains(n)))
}

// ---------------------------------------------------------------------------------------- admin

// Interface: GET /ready -> 200 when serving; GET /config -> JSON with integer `generation` and
// `last_error` null; GET /metrics -> Prometheus text with `meshgate_*` names.
#[test]
fn admin_ready_config_and_metrics() {
    let _v1 = EchoHttp::start("v1");
    let gw = catch_all_gateway("route", "v1");
    assert_eq!(gw.admin_get("/ready").status, 200);
    let config = gw.config();
    assert!(
        config["generation"].is_i64(),
        "generation not an integer: {config}"
    );
    assert!(
        config.get("last_error").is_some() && config["last_error"].is_null(),
        "last_error must be present and null: {config}"
    );
    gw.assert_routed(1, "/", "a.test", "v1");
    let metrics = gw.admin_get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("meshgate_"))
        .collect();
    assert!(!samples.is_empty(), "no meshgate_* samples:\n{text}");
    assert!(
        text.lines().any(|l| l.starts_with("# TYPE meshgate_")),
        "no Prometheus # TYPE lines:\n{text}"
    );
    // every sample line is `name{labels} value`
    for s in samples {
        let value = s.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {s:?}");
    }
}

// ---------------------------------------------------------------------------------------- --check

// Interface: `--check` exits 0 on a valid directory.
#[test]
fn check_valid_directory_exits_0() {
    let dir = PolicyDir::new(&valid_files());
    let (code, out) = dir.check(&[]);
    assert_eq!(code, 0, "--check output:\n{out}");
}

// Interface: `--check` exits 1 with one line per error `FILE: document N: Kind/name: field.path:
// message`, with Kuma's field paths (spec §2.2). The document index base is not fixed by the
// interface, so document 3 of the file may be reported as "document 3" (1-based) or
// "document 2" (0-based).
#[test]
fn check_error_line_names_file_document_resource_and_field_path() {
    let mut files = valid_files();
    files.push((
        "routes.yaml",
        catch_all_route("good-one", "v1")
            + "---\n"
            + &catch_all_route("good-two", "v1")
            + "---\n"
            + &http_route(
                "bad-route",
                r#"
                - matches:
                  - path:
                      type: PathPrefix
                      value: /api/
                  default:
                    backendRefs:
                    - kind: MeshService
                      name: v1
                "#,
            ),
    ));
    let dir = PolicyDir::new(&files);
    let (code, out) = dir.check(&[]);
    assert_eq!(code, 1, "--check output:\n{out}");
    let line = line_with(
        &out,
        &[
            "routes.yaml",
            "MeshHTTPRoute/bad-route",
            "spec.to[0].rules[0].matches[0].path.value",
        ],
    )
    .unwrap_or_else(|| panic!("no line names file, resource and field path:\n{out}"));
    assert!(
        line.contains("document 3") || line.contains("document 2"),
        "no document index in {line:?}"
    );
    assert!(
        !out.contains("good-one") && !out.contains("good-two"),
        "valid resources reported as errors:\n{out}"
    );
}

// Interface: all errors are reported, not just the first (several files, several resources, spec
// §2 rules with their field paths).
#[test]
fn check_reports_every_error_not_just_the_first() {
    let mut files = valid_files();
    files.push((
        "a-trailing-slash.yaml",
        http_route(
            "trailing-slash",
            r#"
            - matches:
              - path:
                  type: PathPrefix
                  value: /api/
              default:
                backendRefs:
                - kind: MeshService
                  name: v1
            "#,
        ),
    ));
    files.push((
        "b-relative.yaml",
        http_route(
            "relative-path",
            r#"
            - matches:
              - path:
                  type: PathPrefix
                  value: /ok
              - path:
                  type: Exact
                  value: relative
              default:
                backendRefs:
                - kind: MeshService
                  name: v1
            "#,
        ),
    ));
    files.push((
        "c-present-with-value.yaml",
        http_route(
            "present-with-value",
            r#"
            - matches:
              - headers:
                - type: Present
                  name: x-a
                  value: should-not-be-here
              default:
                backendRefs:
                - kind: MeshService
                  name: v1
            "#,
        ),
    ));
    files.push((
        "d-no-backends.yaml",
        http_route(
            "no-backends",
            r#"
            - matches:
              - path:
                  type: PathPrefix
                  value: /nb
              default:
                backendRefs: []
            "#,
        ),
    ));
    files.push((
        "e-bad-regex.yaml",
        http_route(
            "bad-regex",
            r#"
            - matches:
              - path:
                  type: RegularExpression
                  value: /api/(unclosed
              default:
                backendRefs:
                - kind: MeshService
                  name: v1
            "#,
        ),
    ));
    files.push((
        "g-gateway.yaml",
        dedent(
            r#"
            type: MeshGateway
            mesh: default
            name: second-gateway
            selectors:
            - match:
                kuma.io/service: second-gateway
            conf:
              listeners:
              - port: 0
                protocol: HTTP
            "#,
        ),
    ));
    let dir = PolicyDir::new(&files);
    let (code, out) = dir.check(&["--gateway", "edge-gateway"]);
    assert_eq!(code, 1, "--check output:\n{out}");
    let expected: [(&str, &str, &str); 6] = [
        // spec §2.2: PathPrefix with a trailing slash
        (
            "a-trailing-slash.yaml",
            "MeshHTTPRoute/trailing-slash",
            "spec.to[0].rules[0].matches[0].path.value",
        ),
        // spec §2.2: Exact path must be absolute
        (
            "b-relative.yaml",
            "MeshHTTPRoute/relative-path",
            "spec.to[0].rules[0].matches[1].path.value",
        ),
        // spec §2.2: Present header match with a value
        (
            "c-present-with-value.yaml",
            "MeshHTTPRoute/present-with-value",
            "spec.to[0].rules[0].matches[0].headers[0].value",
        ),
        // spec §2.2: gateway rule without backendRefs (and without a redirect)
        (
            "d-no-backends.yaml",
            "MeshHTTPRoute/no-backends",
            "spec.to[0].rules[0].default.backendRefs",
        ),
        // issue 2 validation: regexes are compiled (RE2 syntax)
        (
            "e-bad-regex.yaml",
            "MeshHTTPRoute/bad-regex",
            "spec.to[0].rules[0].matches[0].path",
        ),
        // spec §2.1: listener port out of range (flat MeshGateway paths have no `spec.`)
        (
            "g-gateway.yaml",
            "MeshGateway/second-gateway",
            "conf.listeners[0].port",
        ),
    ];
    let mut missing = Vec::new();
    for (file, resource, field) in expected {
        if line_with(&out, &[file, resource, field]).is_none() {
            missing.push(format!("{file} {resource} {field}"));
        }
    }
    assert!(
        missing.is_empty(),
        "errors not reported (file, resource and field path on one line):\n  {}\n--- output ---\n{out}",
        missing.join("\n  ")
    );
}

// Issue 2 ("Bad YAML reports line/column"): malformed YAML names the file and the line.
#[test]
fn check_malformed_yaml_reports_file_and_line() {
    let mut files = valid_files();
    // line 6 holds the error: a second `: ` where a plain value was expected
    files.push((
        "broken.yaml",
        "type: MeshHTTPRoute\nname: broken\nmesh: default\nspec:\n  targetRef: {kind: MeshGateway, name: edge-gateway}\n  to: oops: bad\n"
            .to_string(),
    ));
    let dir = PolicyDir::new(&files);
    let (code, out) = dir.check(&[]);
    assert_eq!(code, 1, "--check output:\n{out}");
    let line = line_with(&out, &["broken.yaml"])
        .unwrap_or_else(|| panic!("no line names broken.yaml:\n{out}"));
    let lower = line.to_lowercase();
    assert!(
        lower.contains("line 6") || line.contains(":6:"),
        "the line number (6) is missing: {line:?}"
    );
}

// Interface: unknown kinds are skipped with a warning (not an error), and the rest is served.
#[test]
fn unknown_kind_is_skipped() {
    let _v1 = EchoHttp::start("v1");
    let files = vec![
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", catch_all_route("route", "v1")),
        ("dataplanes.yaml", dataplanes(&["v1"])),
        (
            "future.yaml",
            dedent(
                r#"
                type: MeshSomethingFromTheFuture
                name: future-policy
                mesh: default
                spec:
                  targetRef:
                    kind: Mesh
                  default:
                    whatever: 1
                "#,
            ),
        ),
    ];
    let dir = PolicyDir::new(&files);
    let (code, out) = dir.check(&[]);
    assert_eq!(code, 0, "--check output:\n{out}");
    let gw = Gateway::start_dir(dir, &[]);
    gw.assert_routed(1, "/", "a.test", "v1");
}

// Interface + spec §1: Kubernetes-form documents (apiVersion kuma.io/v1alpha1, kind, metadata,
// spec; mesh from a top-level `mesh:` for old kinds or the `kuma.io/mesh` label).
#[test]
fn kubernetes_form_resources_are_served() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let files = vec![(
        "k8s.yaml",
        dedent(
            r#"
                apiVersion: kuma.io/v1alpha1
                kind: MeshGateway
                mesh: default
                metadata:
                  name: edge-gateway
                spec:
                  selectors:
                  - match:
                      kuma.io/service: edge-gateway
                  conf:
                    listeners:
                    - port: @LPORT:1@
                      protocol: HTTP
                ---
                apiVersion: kuma.io/v1alpha1
                kind: MeshHTTPRoute
                metadata:
                  name: k8s-route
                  namespace: kuma-system
                  labels:
                    kuma.io/mesh: default
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
                          value: /legacy
                      default:
                        backendRefs:
                        - kind: MeshService
                          name: v1
                    - matches:
                      - path:
                          type: PathPrefix
                          value: /real
                      default:
                        backendRefs:
                        - kind: MeshService
                          name: real
                          namespace: kuma-demo
                          port: 80
                ---
                apiVersion: kuma.io/v1alpha1
                kind: Dataplane
                mesh: default
                metadata:
                  name: v1-pod
                  namespace: kuma-demo
                spec:
                  networking:
                    address: 127.0.0.1
                    inbound:
                    - port: @PORT:v1@
                      tags:
                        kuma.io/service: v1
                ---
                apiVersion: kuma.io/v1alpha1
                kind: Dataplane
                mesh: default
                metadata:
                  name: v2-pod
                  namespace: kuma-demo
                spec:
                  networking:
                    address: 127.0.0.1
                    inbound:
                    - port: @PORT:v2@
                      tags:
                        kuma.io/service: v2_kuma-demo_svc_80
                        app: real
                ---
                apiVersion: kuma.io/v1alpha1
                kind: MeshService
                metadata:
                  name: real
                  namespace: kuma-demo
                  labels:
                    kuma.io/mesh: default
                spec:
                  selector:
                    dataplaneTags:
                      app: real
                  ports:
                  - port: 80
                    targetPort: @PORT:v2@
                    appProtocol: http
                "#,
        ),
    )];
    let gw = Gateway::start(&files, &[]);
    gw.assert_routed(1, "/legacy", "a.test", "v1");
    gw.assert_routed(1, "/real", "a.test", "v2");
}

// Spec §1 ("Recommendation: accept either"): a Kubernetes MeshGateway may carry its mesh in the
// `kuma.io/mesh` label instead of a top-level `mesh:`.
#[test]
fn kubernetes_meshgateway_mesh_from_label() {
    let _v1 = EchoHttp::start("v1");
    let files = vec![
        (
            "gateway.yaml",
            dedent(
                r#"
                apiVersion: kuma.io/v1alpha1
                kind: MeshGateway
                metadata:
                  name: edge-gateway
                  labels:
                    kuma.io/mesh: default
                spec:
                  selectors:
                  - match:
                      kuma.io/service: edge-gateway
                  conf:
                    listeners:
                    - port: @LPORT:1@
                      protocol: HTTP
                "#,
            ),
        ),
        ("route.yaml", catch_all_route("route", "v1")),
        ("dataplanes.yaml", dataplanes(&["v1"])),
    ];
    let gw = Gateway::start(&files, &[]);
    gw.assert_routed(1, "/", "a.test", "v1");
}

// Interface: every *.yaml / *.yml below DIR, recursively, multi-document; other files ignored.
#[test]
fn policy_dir_is_read_recursively_with_multi_document_yml_files() {
    let _v1 = EchoHttp::start("v1");
    let files = vec![
        (
            "nested/deeper/all-in-one.yml",
            gateway_one_http() + "---\n" + &catch_all_route("route", "v1"),
        ),
        ("other/dataplanes.yaml", dataplanes(&["v1"])),
        (
            "nested/notes.txt",
            "this is not a policy file: type: MeshHTTPRoute\n{ garbage\n".to_string(),
        ),
        (
            "README.md",
            "# notes\n\ntype: MeshGateway\n  - {{ not yaml\n".to_string(),
        ),
    ];
    let gw = Gateway::start(&files, &[]);
    gw.assert_routed(1, "/", "a.test", "v1");
}

fn two_gateways() -> Vec<(&'static str, String)> {
    vec![
        (
            "gateways.yaml",
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
                ---
                type: MeshGateway
                mesh: default
                name: other-gateway
                selectors:
                - match:
                    kuma.io/service: other-gateway
                conf:
                  listeners:
                  - port: @LPORT:2@
                    protocol: HTTP
                "#,
            ),
        ),
        ("route-edge.yaml", catch_all_route("edge-route", "v1")),
        (
            "route-other.yaml",
            catch_all_route("other-route", "v2")
                .replace("name: edge-gateway", "name: other-gateway"),
        ),
        ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
    ]
}

// Interface: `--gateway NAME` selects the MeshGateway served; the other one's listeners are not
// bound and its routes do not apply.
#[test]
fn gateway_flag_selects_the_meshgateway_served() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&two_gateways(), &["--gateway", "other-gateway"]);
    gw.assert_routed(2, "/", "a.test", "v2");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", gw.lport(1))).is_err(),
        "the listener of the gateway not selected is bound"
    );
}

// Interface: without `--gateway`, several MeshGateways in DIR are an error: meshgate exits
// non-zero and never becomes ready.
#[test]
fn several_gateways_without_gateway_flag_is_an_error_exit() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let mut gw = Gateway::spawn(PolicyDir::new(&two_gateways()), &[]);
    let status = gw.wait_exit(READY_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "meshgate kept running with two MeshGateways and no --gateway\n{}",
            gw.log_tail()
        )
    });
    assert!(!status.success(), "exit status {status}");
    let log = gw.log();
    assert!(
        log.to_lowercase().contains("gateway"),
        "the error should say what is wrong (several gateways, use --gateway):\n{log}"
    );
}

// The demo configuration shipped in conf/policies is valid (README's first command serves it).
#[test]
fn demo_configuration_is_valid() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/policies");
    let out = std::process::Command::new(BIN)
        .arg("--policies")
        .arg(&conf)
        .arg("--check")
        .output()
        .expect("run meshgate --check");
    assert!(
        out.status.success(),
        "conf/policies does not pass --check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// Hostile input: a malformed request gets an error answer (or a closed connection), never a
// backend, and the gateway keeps serving.
#[test]
fn malformed_request_is_refused_and_gateway_keeps_serving() {
    let v1 = EchoHttp::start("v1");
    let gw = catch_all_gateway("route", "v1");
    let port = gw.lport(1);
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: -5\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nHost: a.test\r\nbad header line without colon\r\n\r\n"[..],
        &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"[..],
    ] {
        let answer = send_raw(port, garbage, Duration::from_secs(3));
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.0 4"),
            "unexpected answer to {:?}: {text:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    assert_eq!(v1.count(), 0, "a malformed request reached the backend");
    gw.assert_routed(1, "/", "a.test", "v1");
}
