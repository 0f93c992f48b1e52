//! Endpoint health on real traffic (spec ../shared/spec/kuma-policies.md §6–§8): a real
//! meshgate in front of backends that die, hang, fail and come back ([`Flaky`]). What is
//! checked here only shows over time and on the wire: how soon a failed endpoint stops
//! getting requests and how soon it gets them again, ejections and their end, connection
//! limits with a pending queue, sticky hashing across 1,000 requests and a reload, least
//! request under load, and a kill and a hang under load with Kuma's default policies.
//! Matching, merging and validation of these kinds are unit-tested beside the code.

use crate::support::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Files for a gateway routing everything to service `a`, served by endpoints `a-1`..`a-n`,
/// plus `policies`.
fn files(n: usize, policies: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let dps: Vec<String> = (1..=n)
        .map(|i| dataplane(&format!("dp-a-{i}"), "a", &format!("@PORT:a-{i}@")))
        .collect();
    let mut f = vec![
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", catch_all_route("route", "a")),
        ("dataplanes.yaml", dps.join("---\n")),
    ];
    f.extend(policies.iter().cloned());
    f
}

fn to_mesh(kind: &'static str, file: &'static str, default: &str) -> (&'static str, String) {
    (
        file,
        policy(
            kind,
            &file.replace(".yaml", ""),
            &format!(
                "targetRef: {{kind: MeshGateway, name: edge-gateway}}\nto:\n- targetRef: {{kind: Mesh}}\n  default:\n{}",
                default
                    .lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            ),
        ),
    )
}

/// `/config`'s view of endpoint `addr` of backend `a`.
fn endpoint(gw: &Gateway, port: u16) -> Value {
    let cfg = gw.config();
    let backend = cfg["snapshot"]["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "a"))
        .cloned()
        .unwrap_or(Value::Null);
    backend["endpoint_state"]
        .as_array()
        .and_then(|eps| {
            eps.iter()
                .find(|e| e["address"] == format!("127.0.0.1:{port}"))
                .cloned()
        })
        .unwrap_or(Value::Null)
}

/// Waits until `cond` holds (polling every 20 ms), returning how long it took, or `None`
/// after `limit`.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

fn backends_of(gw: &Gateway, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = gw.send(1, "GET", "/", "a.test", headers, b"");
        let who = if r.status == 200 {
            backend_of(&r).unwrap_or_default()
        } else {
            format!("status {}", r.status)
        };
        *counts.entry(who).or_insert(0) += 1;
    }
    counts
}

// §6.2: a check that times out `unhealthyThreshold` times in a row takes the endpoint out of
// traffic within `interval × unhealthyThreshold` plus one interval (and the check's timeout);
// `healthyThreshold` passes bring it back. /config shows each state; metrics count both.
#[test]
fn a_hung_endpoint_leaves_in_time_and_comes_back_after_healthy_threshold_passes() {
    let a1 = Flaky::start("a-1");
    let a2 = Flaky::start("a-2");
    let gw = Gateway::start(
        &files(
            2,
            &[to_mesh(
                "MeshHealthCheck",
                "health.yaml",
                "interval: 300ms\ntimeout: 200ms\nunhealthyThreshold: 2\nhealthyThreshold: 2\nhttp:\n  path: /healthz\n",
            )],
        ),
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(3), || a2.checks() >= 1).is_some(),
        "checks run"
    );
    assert_eq!(endpoint(&gw, a2.port)["health"], "healthy");
    a2.set_health(Mode::Hang);
    a2.set_traffic(Mode::Hang);
    // Two failed checks (each up to 200 ms) one interval apart, plus the interval the
    // first one may wait for: 2 × 300 + 300 + 2 × 200 = 1.3 s; 0.7 s slack for a busy CI.
    let took = wait_until(Duration::from_secs(5), || {
        endpoint(&gw, a2.port)["health"] == "unhealthy"
    })
    .expect("a-2 marked unhealthy");
    assert!(took <= Duration::from_millis(2000), "took {took:?}");
    let counts = backends_of(&gw, 20, &[]);
    assert_eq!(counts.get("a-1"), Some(&20), "{counts:?}");
    a2.set_health(Mode::Answer);
    a2.set_traffic(Mode::Answer);
    let back = wait_until(Duration::from_secs(5), || {
        endpoint(&gw, a2.port)["health"] == "healthy"
    })
    .expect("a-2 healthy again");
    // Two passing checks: up to two intervals (+ the one in progress).
    assert!(back <= Duration::from_millis(1500), "took {back:?}");
    let counts = backends_of(&gw, 20, &[]);
    assert_eq!(
        counts.get("a-2"),
        Some(&10),
        "round robin again: {counts:?}"
    );
    let metrics = gw.admin_get("/metrics").text();
    for to in ["unhealthy", "healthy"] {
        assert!(
            metrics.contains(&format!(
                "meshgate_health_check_transitions_total{{backend=\"a\",to=\"{to}\"}} 1"
            )),
            "{to} transition counted:\n{metrics}"
        );
    }
    drop(a1);
}

// §7.2: three 503s in a row eject the endpoint at once; it returns at the first sweep after
// `baseEjectionTime` and takes traffic again.
#[test]
fn consecutive_gateway_errors_eject_and_the_endpoint_returns_after_the_ejection_time() {
    let _a1 = Flaky::start("a-1");
    let a2 = Flaky::start("a-2");
    let gw = Gateway::start(
        &files(
            2,
            &[to_mesh(
                "MeshCircuitBreaker",
                "cb.yaml",
                "outlierDetection:\n  interval: 200ms\n  baseEjectionTime: 1s\n  detectors:\n    gatewayFailures:\n      consecutive: 3\n",
            )],
        ),
        &[],
    );
    a2.set_traffic(Mode::Fail503);
    let counts = backends_of(&gw, 6, &[]);
    assert_eq!(counts.get("status 503"), Some(&3), "{counts:?}");
    let ep = endpoint(&gw, a2.port);
    assert_eq!(ep["ejected"]["by"], "gatewayFailures", "{ep}");
    a2.set_traffic(Mode::Answer);
    let counts = backends_of(&gw, 10, &[]);
    assert_eq!(counts.get("a-1"), Some(&10), "ejected: {counts:?}");
    let back = wait_until(Duration::from_secs(4), || {
        endpoint(&gw, a2.port)["ejected"].is_null()
    })
    .expect("returns");
    assert!(
        back <= Duration::from_millis(1800),
        "1 s ejection + one 200 ms sweep: {back:?}"
    );
    let counts = backends_of(&gw, 10, &[]);
    assert_eq!(counts.get("a-2"), Some(&5), "{counts:?}");
    assert!(gw.admin_get("/metrics").text().contains(
        "meshgate_outlier_ejections_total{backend=\"a\",detector=\"gatewayFailures\"} 1"
    ));
}

// §7.1: with one connection slot and one pending slot, a second concurrent request waits
// for the first and is served; a third gets Envoy's immediate overflow 503.
#[test]
fn a_pending_request_waits_for_a_connection_and_the_next_one_overflows() {
    let a1 = EchoHttp::start("a-1");
    let gw = Gateway::start(
        &files(
            1,
            &[to_mesh(
                "MeshCircuitBreaker",
                "cb.yaml",
                "connectionLimits:\n  maxConnections: 1\n  maxPendingRequests: 1\n  maxRequests: 10\n",
            )],
        ),
        &[],
    );
    let port = gw.lport(1);
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..3u64 {
        let results = results.clone();
        threads.push(thread::spawn(move || {
            thread::sleep(Duration::from_millis(100 * i));
            let start = Instant::now();
            let r = send(
                port,
                "GET",
                "/",
                "a.test",
                &[("x-echo-delay-ms", "600")],
                b"",
            );
            results.lock().unwrap().push((
                i,
                r.status,
                r.header("x-envoy-overloaded").map(str::to_string),
                start.elapsed(),
            ));
        }));
    }
    for t in threads {
        t.join().expect("client thread");
    }
    let mut results = results.lock().unwrap().clone();
    results.sort_by_key(|r| r.0);
    assert_eq!(results[0].1, 200, "{results:?}");
    assert_eq!(results[1].1, 200, "the pending one is served: {results:?}");
    assert!(
        results[1].3 >= Duration::from_millis(1000),
        "it waited: {results:?}"
    );
    assert_eq!(results[2].1, 503, "{results:?}");
    assert_eq!(results[2].2.as_deref(), Some("true"));
    assert!(
        results[2].3 < Duration::from_millis(500),
        "immediate: {results:?}"
    );
    assert_eq!(a1.count(), 2);
    assert!(gw.admin_get("/metrics").text().contains(
        "meshgate_upstream_overflow_total{backend=\"a\",limit=\"max_pending_requests\"} 1"
    ));
}

// §8.1: RingHash on a header keeps every key on one endpoint for 1,000 requests; removing an
// endpoint by reload moves only the keys it had.
#[test]
fn ring_hash_keeps_keys_for_a_thousand_requests_and_a_reload_moves_only_removed_keys() {
    let _a = [
        Flaky::start("a-1"),
        Flaky::start("a-2"),
        Flaky::start("a-3"),
    ];
    let lb = to_mesh(
        "MeshLoadBalancingStrategy",
        "lb.yaml",
        "loadBalancer:\n  type: RingHash\n  ringHash:\n    hashPolicies:\n    - type: Header\n      header:\n        name: x-user\n",
    );
    let gw = Gateway::start(&files(3, std::slice::from_ref(&lb)), &[]);
    let mut owner: HashMap<String, String> = HashMap::new();
    for i in 0..1000 {
        let user = format!("user-{}", i % 50);
        let r = gw.send(1, "GET", "/", "a.test", &[("x-user", &user)], b"");
        assert_eq!(r.status, 200);
        let who = backend_of(&r).unwrap_or_default();
        let first = owner.entry(user.clone()).or_insert_with(|| who.clone());
        assert_eq!(*first, who, "{user} moved");
    }
    let per_backend: std::collections::HashSet<&String> = owner.values().collect();
    assert_eq!(
        per_backend.len(),
        3,
        "50 keys spread over the three endpoints"
    );
    let generation = gw.generation();
    let two: Vec<String> = (1..=2)
        .map(|i| dataplane(&format!("dp-a-{i}"), "a", &format!("@PORT:a-{i}@")))
        .collect();
    gw.dir.write_atomic("dataplanes.yaml", &two.join("---\n"));
    gw.expect_generation_above(generation);
    for (user, before) in &owner {
        let r = gw.send(1, "GET", "/", "a.test", &[("x-user", user)], b"");
        let now = backend_of(&r).unwrap_or_default();
        if before != "a-3" {
            assert_eq!(&now, before, "{user} stays");
        } else {
            assert_ne!(now, "a-3");
        }
    }
}

// §8.1: a Cookie hash policy with a ttl sets the cookie when the request has none; the
// client sending it back stays on its endpoint.
#[test]
fn a_generated_cookie_keeps_the_client_on_its_endpoint() {
    let _a = [
        Flaky::start("a-1"),
        Flaky::start("a-2"),
        Flaky::start("a-3"),
    ];
    let gw = Gateway::start(
        &files(
            3,
            &[to_mesh(
                "MeshLoadBalancingStrategy",
                "lb.yaml",
                "loadBalancer:\n  type: Maglev\nhashPolicies:\n- type: Cookie\n  cookie:\n    name: sticky\n    ttl: 1h\n    path: /\n",
            )],
        ),
        &[],
    );
    let first = gw.get(1, "/", "a.test");
    let set = first.header("set-cookie").expect("cookie set").to_string();
    assert!(
        set.starts_with("sticky=\"") && set.ends_with("; Max-Age=3600; Path=/; HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap_or_default().to_string();
    let who = backend_of(&first);
    for _ in 0..30 {
        let r = gw.send(1, "GET", "/", "a.test", &[("cookie", &cookie)], b"");
        assert_eq!(backend_of(&r), who);
        assert!(
            r.header("set-cookie").is_none(),
            "no new cookie when one is sent"
        );
    }
}

// §8.1: LeastRequest (two choices) sends most requests to the endpoint with fewer in flight:
// with two endpoints the slow one wins only when both choices fall on it (about a quarter of
// the picks) where round robin would give it half.
#[test]
fn least_request_prefers_the_idle_endpoint_under_load() {
    let slow = Flaky::start("a-1");
    let fast = Flaky::start("a-2");
    slow.set_traffic(Mode::Slow);
    let gw = Gateway::start(
        &files(
            2,
            &[to_mesh(
                "MeshLoadBalancingStrategy",
                "lb.yaml",
                "loadBalancer:\n  type: LeastRequest\n",
            )],
        ),
        &[],
    );
    let port = gw.lport(1);
    let threads: Vec<_> = (0..6)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..30 {
                    assert_eq!(send(port, "GET", "/", "a.test", &[], b"").status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    let (s, f) = (slow.served(), fast.served());
    eprintln!("least request: slow {s}, fast {f}");
    assert_eq!(s + f, 180);
    // Expected about 25 % (45); round robin: 50 % (90). 40 % is four standard deviations
    // above the expectation.
    assert!(
        s * 10 < 180 * 4,
        "the idle endpoint takes most: slow {s}, fast {f}"
    );
}

/// Sends requests from `threads` clients until `stop`, recording every status and the
/// slowest answer.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    statuses: Arc<Mutex<HashMap<u16, usize>>>,
    slowest: Arc<Mutex<Duration>>,
    by_backend: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Load {
    fn start(port: u16, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(HashMap::new()));
        let slowest = Arc::new(Mutex::new(Duration::ZERO));
        let by_backend = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, statuses, slowest, by_backend) = (
                    stop.clone(),
                    statuses.clone(),
                    slowest.clone(),
                    by_backend.clone(),
                );
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let start = Instant::now();
                        let status = match try_send(port, "GET", "/", "a.test", &[], b"") {
                            Ok(r) => {
                                if let Some(b) = backend_of(&r) {
                                    by_backend.lock().unwrap().push((Instant::now(), b));
                                }
                                r.status
                            }
                            Err(_) => 0,
                        };
                        let took = start.elapsed();
                        let mut s = slowest.lock().unwrap();
                        *s = (*s).max(took);
                        drop(s);
                        *statuses.lock().unwrap().entry(status).or_insert(0) += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            statuses,
            slowest,
            by_backend,
        }
    }

    fn finish(self) -> (HashMap<u16, usize>, Duration, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("load thread");
        }
        let statuses = self.statuses.lock().unwrap().clone();
        let slowest = *self.slowest.lock().unwrap();
        let seen = self.by_backend.lock().unwrap().clone();
        (statuses, slowest, seen)
    }
}

/// Kuma's default policies (conf/policies/mesh-defaults.yaml) with a health check.
fn kuma_defaults_with_health() -> Vec<(&'static str, String)> {
    let defaults = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/policies/mesh-defaults.yaml"),
    )
    .expect("conf/policies/mesh-defaults.yaml");
    vec![
        ("mesh-defaults.yaml", defaults),
        to_mesh(
            "MeshHealthCheck",
            "health.yaml",
            "interval: 300ms\ntimeout: 300ms\nunhealthyThreshold: 2\nhealthyThreshold: 1\nhttp:\n  path: /healthz\n",
        ),
    ]
}

// Chaos under load with Kuma's default policies: one of three endpoints killed mid-run loses
// no client request (a refused connection is retried on another endpoint), is marked
// unhealthy within the check budget, and takes traffic again once restarted. Three clients:
// Kuma's default circuit breaker allows three retries at once (each held through its
// back-off), so a fourth concurrent failure gets the connect error, in Kuma as here.
#[test]
fn a_killed_endpoint_under_load_loses_no_request_and_returns() {
    let _a1 = Flaky::start("a-1");
    let _a2 = Flaky::start("a-2");
    let mut a3 = Flaky::start("a-3");
    let gw = Gateway::start(&files(3, &kuma_defaults_with_health()), &[]);
    let load = Load::start(gw.lport(1), 3);
    thread::sleep(Duration::from_millis(700));
    a3.down();
    let out = wait_until(Duration::from_secs(5), || {
        endpoint(&gw, a3.port)["health"] == "unhealthy"
    })
    .expect("a-3 marked unhealthy");
    thread::sleep(Duration::from_millis(800));
    a3.up();
    let restarted = Instant::now();
    let back = wait_until(Duration::from_secs(5), || {
        endpoint(&gw, a3.port)["health"] == "healthy"
    })
    .expect("a-3 healthy again");
    thread::sleep(Duration::from_millis(800));
    let (statuses, slowest, seen) = load.finish();
    eprintln!(
        "kill: unhealthy after {out:?}, healthy {back:?} after restart; statuses {statuses:?}; slowest {slowest:?}"
    );
    assert_eq!(
        statuses.len(),
        1,
        "every request answered 200: {statuses:?}"
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 50,
        "{statuses:?}"
    );
    // 2 × (300 ms interval + 300 ms timeout) + one interval, and slack.
    assert!(out <= Duration::from_millis(2500), "{out:?}");
    assert!(
        seen.iter().any(|(at, b)| b == "a-3" && *at > restarted),
        "a-3 takes traffic again"
    );
}

// An endpoint that accepts and never answers costs the requests in flight on it at most the
// configured timeout (never a stuck client), and none once the health check has taken it
// out.
#[test]
fn a_hanging_endpoint_costs_at_most_the_timeout() {
    let _a1 = Flaky::start("a-1");
    let _a2 = Flaky::start("a-2");
    let a3 = Flaky::start("a-3");
    let mut policies = kuma_defaults_with_health();
    policies.push(to_mesh(
        "MeshTimeout",
        "timeout.yaml",
        "http:\n  requestTimeout: 1s\n",
    ));
    let gw = Gateway::start(&files(3, &policies), &[]);
    let load = Load::start(gw.lport(1), 4);
    thread::sleep(Duration::from_millis(500));
    a3.set_health(Mode::Hang);
    a3.set_traffic(Mode::Hang);
    wait_until(Duration::from_secs(5), || {
        endpoint(&gw, a3.port)["health"] == "unhealthy"
    })
    .expect("a-3 marked unhealthy");
    let before = load
        .statuses
        .lock()
        .unwrap()
        .get(&504)
        .copied()
        .unwrap_or(0);
    thread::sleep(Duration::from_millis(1500));
    let (statuses, slowest, _) = load.finish();
    eprintln!("hang: statuses {statuses:?}; slowest {slowest:?}");
    let after = statuses.get(&504).copied().unwrap_or(0);
    assert!(
        slowest < Duration::from_millis(2500),
        "bounded by the 1 s timeout: {slowest:?}"
    );
    assert!(
        after <= before + 4,
        "no new timeouts once it is out (4 may have been in flight): {before} -> {after}"
    );
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 504),
        "{statuses:?}"
    );
}
