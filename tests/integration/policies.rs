//! Kuma policies on the gateway (spec: ../shared/spec/kuma-policies.md), in process: which
//! policies select a port or a route, how they are ordered and merged, and what the request
//! path then reads (`meshgate::testkit::Routing`). What only the wire shows (retries observed
//! at a backend, 429s under a real rate, measured delays and timeouts) is in
//! `policy_traffic.rs`.

use meshgate::testkit::*;
use std::sync::Arc;
use std::time::Duration;

/// Two HTTP listeners (ports 1 and 2, tags `port: http-1` / `port: http-2`), a catch-all
/// route on each to `a`, the gateway Dataplane, and `extra` files.
fn two_ports(extra: &[(&'static str, String)]) -> Routing {
    let mut files = vec![
        (
            "gateway.yaml",
            gateway_listeners(&[(None, "", "port: http-1"), (None, "", "port: http-2")]),
        ),
        (
            "route-1.yaml",
            tagged_prefix_route("route-1", "port: http-1\n", "/", "a"),
        ),
        (
            "route-2.yaml",
            tagged_prefix_route("route-2", "port: http-2\n", "/", "a"),
        ),
        ("dataplanes.yaml", dataplanes(&["a", "b"])),
        ("gateway-dataplane.yaml", gateway_dataplane()),
    ];
    files.extend(extra.iter().cloned());
    Routing::build(&files)
}

fn timeout(name: &str, target: &str, request: &str) -> String {
    policy(
        "MeshTimeout",
        name,
        &format!(
            "targetRef: {target}\nto:\n- targetRef: {{kind: Mesh}}\n  default:\n    http:\n      requestTimeout: {request}\n"
        ),
    )
}

fn request_timeout(r: &Routing, listener: u32) -> Option<Duration> {
    r.request(listener, "GET", "/", "a.test", &[])
        .policies()
        .expect("forwarded")
        .timeouts
        .request
}

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

// §4.1: without any MeshTimeout a gateway route has Kuma's 15 s route timeout and 5 s idle.
#[test]
fn routes_without_policies_get_kumas_gateway_defaults() {
    let r = two_ports(&[]);
    let p = r.request(1, "GET", "/", "a.test", &[]);
    let p = p.policies().expect("forwarded");
    assert_eq!(p.timeouts.request, secs(15));
    assert_eq!(p.timeouts.stream_idle, secs(5));
    assert!(p.retry.is_none() && p.rate_limit.is_none() && p.applied.is_empty());
}

// §2: a MeshGateway target with listener tags selects only the listeners (ports) whose merged
// tags contain them; a Mesh target selects every port.
#[test]
fn listener_tags_scope_a_policy_to_their_port() {
    let r = two_ports(&[(
        "t.yaml",
        timeout(
            "port-2-only",
            "{kind: MeshGateway, name: edge-gateway, tags: {port: http-2}}",
            "3s",
        ),
    )]);
    assert_eq!(request_timeout(&r, 1), secs(15));
    assert_eq!(request_timeout(&r, 2), secs(3));
}

// §3.1: within one level the lexicographically smaller name wins; a MeshGateway policy with
// listener tags beats a gateway-wide one whatever their names; a more specific kind beats a
// less specific one.
#[test]
fn ordering_kind_then_listener_tags_then_smaller_name() {
    let gw = "{kind: MeshGateway, name: edge-gateway}";
    let r = two_ports(&[
        ("a.yaml", timeout("aaa", gw, "2s")),
        ("z.yaml", timeout("zzz", gw, "9s")),
        ("m.yaml", timeout("mesh", "{kind: Mesh}", "7s")),
    ]);
    assert_eq!(
        request_timeout(&r, 1),
        secs(2),
        "aaa beats zzz, both beat Mesh"
    );
    let r = two_ports(&[
        ("a.yaml", timeout("aaa", gw, "2s")),
        (
            "t.yaml",
            timeout(
                "zzz-tagged",
                "{kind: MeshGateway, name: edge-gateway, tags: {port: http-1}}",
                "4s",
            ),
        ),
    ]);
    assert_eq!(
        request_timeout(&r, 1),
        secs(4),
        "listener tags beat the name order"
    );
    assert_eq!(request_timeout(&r, 2), secs(2));
}

// §3.2 and §3.3: confs merge field by field across levels; a route-level policy overrides
// what it sets for its own route only and inherits the rest.
#[test]
fn merging_across_levels_and_route_level_policies() {
    let r = two_ports(&[
        (
            "mesh.yaml",
            policy(
                "MeshTimeout",
                "mesh-wide",
                "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http:\n      requestTimeout: 8s\n      streamIdleTimeout: 3s\n",
            ),
        ),
        (
            "route.yaml",
            timeout(
                "route-1-level",
                "{kind: MeshHTTPRoute, name: route-1}",
                "1s",
            ),
        ),
    ]);
    let p1 = r.request(1, "GET", "/", "a.test", &[]);
    let p1 = p1.policies().expect("forwarded");
    assert_eq!(p1.timeouts.request, secs(1), "route level wins");
    assert_eq!(
        p1.timeouts.stream_idle,
        secs(3),
        "inherited from the Mesh policy"
    );
    assert_eq!(
        &*p1.applied.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        ["MeshTimeout/mesh-wide", "MeshTimeout/route-1-level"]
    );
    let p2 = r.request(2, "GET", "/", "a.test", &[]);
    assert_eq!(p2.policies().expect("forwarded").timeouts.request, secs(8));
}

// §2: `proxyTypes: [Sidecar]`, another mesh, and `kuma.io/effect: shadow` select nothing on
// the gateway; `proxyTypes: [Gateway]` does.
#[test]
fn policies_for_sidecars_other_meshes_and_shadows_do_not_apply() {
    let other_mesh = timeout("other", "{kind: Mesh}", "1s").replace("mesh: default", "mesh: other");
    let shadow = timeout("shadowed", "{kind: Mesh}", "2s").replace(
        "mesh: default\n",
        "mesh: default\nlabels:\n  kuma.io/effect: shadow\n",
    );
    let r = two_ports(&[
        (
            "sidecar.yaml",
            timeout("sidecars", "{kind: Mesh, proxyTypes: [Sidecar]}", "3s"),
        ),
        ("other.yaml", other_mesh),
        ("shadow.yaml", shadow),
    ]);
    assert_eq!(request_timeout(&r, 1), secs(15));
    let r = two_ports(&[(
        "gateways.yaml",
        timeout("gateways", "{kind: Mesh, proxyTypes: [Gateway]}", "4s"),
    )]);
    assert_eq!(request_timeout(&r, 1), secs(4));
}

// §2: MeshService naming the gateway's own service (its Dataplane's kuma.io/service) and
// MeshSubset with matching listener tags select the gateway; MeshService is more specific
// than MeshSubset.
#[test]
fn service_and_subset_targets_select_the_gateway_by_tags() {
    let r = two_ports(&[
        (
            "subset.yaml",
            timeout("subset", "{kind: MeshSubset, tags: {port: http-2}}", "6s"),
        ),
        (
            "service.yaml",
            timeout(
                "by-service",
                "{kind: MeshService, name: edge-gateway}",
                "5s",
            ),
        ),
    ]);
    assert_eq!(request_timeout(&r, 1), secs(5));
    assert_eq!(
        request_timeout(&r, 2),
        secs(5),
        "MeshService beats MeshSubset"
    );
    let r = two_ports(&[(
        "subset.yaml",
        timeout("subset", "{kind: MeshSubset, tags: {port: http-2}}", "6s"),
    )]);
    assert_eq!(request_timeout(&r, 1), secs(15));
    assert_eq!(request_timeout(&r, 2), secs(6));
}

// §4.1: the inbound side (`from`/`rules`) sets the listener's own timeouts; `0s` turns one off.
#[test]
fn inbound_confs_set_the_listener_timeouts() {
    let r = two_ports(&[(
        "listener.yaml",
        policy(
            "MeshTimeout",
            "listener",
            "targetRef: {kind: Mesh}\nrules:\n- default:\n    idleTimeout: 0s\n    http:\n      streamIdleTimeout: 2s\n      requestHeadersTimeout: 700ms\n      requestTimeout: 9s\n",
        ),
    )]);
    let l = r.port_policy(1).listener;
    assert_eq!(l.idle, None);
    assert_eq!(l.stream_idle, secs(2));
    assert_eq!(l.request_headers, Some(Duration::from_millis(700)));
    assert_eq!(l.request, secs(9));
    let defaults = two_ports(&[]).port_policy(1).listener;
    assert_eq!(defaults.idle, secs(300), "--idle-timeout");
    assert_eq!(defaults.request_headers, secs(10), "--header-timeout");
    assert_eq!(defaults.stream_idle, secs(5), "Kuma's gateway default");
}

// §4.1, §3.2: cluster settings come from `to` entries covering the destination: Mesh entries
// first, then the ones naming the service.
#[test]
fn cluster_timeouts_follow_the_destination() {
    let files = [(
        "cluster.yaml",
        policy(
            "MeshTimeout",
            "clusters",
            "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: MeshService, name: b}\n  default:\n    connectionTimeout: 2s\n- targetRef: {kind: Mesh}\n  default:\n    connectionTimeout: 3s\n    http:\n      maxStreamDuration: 4s\n",
        ),
    )];
    let mut all = vec![
        ("gateway.yaml", gateway_one_http()),
        (
            "route.yaml",
            http_route("route", &(prefix_rule("/a", "a") + &prefix_rule("/b", "b"))),
        ),
        ("dataplanes.yaml", dataplanes(&["a", "b"])),
    ];
    all.extend(files);
    let r = Routing::build(&all);
    let a = r.request(1, "GET", "/a", "x.test", &[]);
    let a = a.cluster().expect("backend a");
    assert_eq!(a.connect_timeout, Duration::from_secs(3));
    assert_eq!(a.max_stream_duration, secs(4));
    let b = r.request(1, "GET", "/b", "x.test", &[]);
    let b = b.cluster().expect("backend b");
    assert_eq!(
        b.connect_timeout,
        Duration::from_secs(2),
        "the MeshService entry wins"
    );
    assert_eq!(b.max_stream_duration, secs(4), "merged with the Mesh entry");
}

// §3.5: Kuma's default MeshRetry compiles to 5 retries of gateway errors, connect failures
// and refused streams, 16 s per try, 25-250 ms back-off; its grpc section is kept apart.
#[test]
fn the_kuma_default_retry_policy() {
    let r = two_ports(&[(
        "retry.yaml",
        policy(
            "MeshRetry",
            "mesh-retry-all-default",
            "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    tcp: {maxConnectAttempt: 5}\n    http: {numRetries: 5, perTryTimeout: 16s, backOff: {baseInterval: 25ms, maxInterval: 250ms}}\n    grpc: {numRetries: 5, perTryTimeout: 16s, backOff: {baseInterval: 25ms, maxInterval: 250ms}}\n",
        ),
    )]);
    let a = r.request(1, "GET", "/", "a.test", &[]);
    let p = a.policies().expect("forwarded");
    let http = p.retry.as_ref().expect("http retry");
    assert_eq!(http.num_retries, 5);
    assert_eq!(http.per_try_timeout, secs(16));
    assert_eq!(
        (http.base_interval, http.max_interval),
        (Duration::from_millis(25), Duration::from_millis(250))
    );
    assert_eq!(
        http.on.names(),
        ["gateway-error", "connect-failure", "refused-stream"]
    );
    let grpc = p.grpc_retry.as_ref().expect("grpc retry");
    assert_eq!(&*grpc.grpc_codes, &[1, 8, 14]);
    assert_eq!(r.port_policy(1).tcp_connect_attempts, 5);
}

// §3.2: lists are replaced, not appended; numRetries is inherited.
#[test]
fn retry_on_lists_are_replaced_by_the_higher_priority_policy() {
    let r = two_ports(&[(
        "retry.yaml",
        policy(
            "MeshRetry",
            "mesh",
            "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http: {numRetries: 3, retryOn: [GatewayError, \"500\"]}\n",
        ) + "---\n"
            + &policy(
                "MeshRetry",
                "gateway",
                "targetRef: {kind: MeshGateway, name: edge-gateway}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http: {retryOn: [Retriable4xx]}\n",
            ),
    )]);
    let a = r.request(1, "GET", "/", "a.test", &[]);
    let http = a
        .policies()
        .and_then(|p| p.retry.clone())
        .expect("http retry");
    assert_eq!(http.num_retries, 3);
    assert_eq!(http.on.names(), ["retriable-4xx"]);
    assert!(http.status_codes.is_empty());
}

// §9.1: every rule gets its own bucket (Envoy's per-route limit); rules without route-level
// policies share one policies object (one allocation, not one per route).
#[test]
fn rate_limit_buckets_are_per_rule_and_policies_are_shared() {
    let r = two_ports(&[(
        "rl.yaml",
        policy(
            "MeshRateLimit",
            "rl",
            "targetRef: {kind: MeshGateway, name: edge-gateway}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    local:\n      http:\n        requestRate: {num: 1, interval: 1m}\n        onRateLimit: {status: 428}\n",
        ),
    )]);
    let one = r.request(1, "GET", "/", "a.test", &[]);
    let two = r.request(2, "GET", "/", "a.test", &[]);
    let (f1, f2) = (one.forward().expect("f1"), two.forward().expect("f2"));
    let (l1, l2) = (
        f1.rate_limit.as_ref().expect("limit 1"),
        f2.rate_limit.as_ref().expect("limit 2"),
    );
    assert!(!Arc::ptr_eq(&l1.bucket, &l2.bucket), "one bucket per rule");
    assert_eq!(l1.status, 428);
    assert!(l1.bucket.try_take() && !l1.bucket.try_take());
    assert!(l2.bucket.try_take(), "the other route keeps its allowance");

    let r = single_route_gateway_routing(&(prefix_rule("/x", "a") + &prefix_rule("/y", "a")));
    let x = r.request(1, "GET", "/x", "a.test", &[]);
    let y = r.request(1, "GET", "/y", "a.test", &[]);
    assert!(Arc::ptr_eq(
        &x.forward().expect("x").policies,
        &y.forward().expect("y").policies
    ));
}

fn single_route_gateway_routing(rules: &str) -> Routing {
    Routing::build(&single_route_files(rules, &["a"]))
}

// §9.1: a MeshGateway-level `disabled: true` switches a Mesh-level limit off; a route-level
// conf replaces the listener's for its route.
#[test]
fn rate_limits_merge_and_disable() {
    let mesh_limit = policy(
        "MeshRateLimit",
        "mesh",
        "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    local:\n      http:\n        requestRate: {num: 5, interval: 1s}\n",
    );
    let r = two_ports(&[
        ("mesh.yaml", mesh_limit.clone()),
        (
            "off.yaml",
            policy(
                "MeshRateLimit",
                "off-on-port-2",
                "targetRef: {kind: MeshGateway, name: edge-gateway, tags: {port: http-2}}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    local:\n      http:\n        disabled: true\n",
            ),
        ),
        (
            "route.yaml",
            policy(
                "MeshRateLimit",
                "route-1",
                "targetRef: {kind: MeshHTTPRoute, name: route-1}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    local:\n      http:\n        requestRate: {num: 2, interval: 10s}\n",
            ),
        ),
    ]);
    let one = r.request(1, "GET", "/", "a.test", &[]);
    let spec = one
        .policies()
        .and_then(|p| p.rate_limit.clone())
        .expect("route-1 limit");
    assert_eq!(
        (spec.rate.num, spec.rate.interval),
        (2, Duration::from_secs(10))
    );
    let two = r.request(2, "GET", "/", "a.test", &[]);
    assert!(two.forward().expect("forwarded").rate_limit.is_none());
}

// §10.1: fault entries apply per port, in order; lists are replaced by a higher-priority
// policy.
#[test]
fn faults_are_per_port_and_replaced_whole() {
    let r = two_ports(&[(
        "fi.yaml",
        policy(
            "MeshFaultInjection",
            "mesh",
            "targetRef: {kind: Mesh}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http:\n    - abort: {httpStatus: 500, percentage: 10}\n    - delay: {value: 1s, percentage: 20}\n",
        ) + "---\n"
            + &policy(
                "MeshFaultInjection",
                "port-2",
                "targetRef: {kind: MeshGateway, name: edge-gateway, tags: {port: http-2}}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    http:\n    - responseBandwidth: {limit: 10kbps, percentage: 100}\n",
            ),
    )]);
    let one = &r.port_policy(1).faults;
    assert_eq!(one.len(), 2);
    assert_eq!(one[0].abort.map(|a| a.http_status), Some(500));
    let two = &r.port_policy(2).faults;
    assert_eq!(
        two.len(),
        1,
        "the MeshGateway policy's list replaces the Mesh one"
    );
    assert_eq!(
        two[0].response_bandwidth.map(|b| b.bits_per_second),
        Some(10_000)
    );
}

// §9.1: `local.tcp.connectionRate` applies to the port (HTTP ports too).
#[test]
fn connection_rate_is_a_port_setting() {
    let r = two_ports(&[(
        "tcp.yaml",
        policy(
            "MeshRateLimit",
            "conns",
            "targetRef: {kind: MeshGateway, name: edge-gateway, tags: {port: http-1}}\nto:\n- targetRef: {kind: Mesh}\n  default:\n    local:\n      tcp:\n        connectionRate: {num: 3, interval: 1s}\n",
        ),
    )]);
    let b = r
        .port_policy(1)
        .connection_rate
        .clone()
        .expect("port 1 limited");
    assert_eq!(b.num(), 3);
    assert!(r.port_policy(2).connection_rate.is_none());
}
