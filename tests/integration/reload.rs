//! Hot reload (the interface contract in issue 2 / team brief: a change under DIR is applied within
//! 1 s, debounced; an invalid change is rejected whole and the old snapshot keeps serving;
//! `/config` reports `generation` and `last_error`; editors' write patterns end in one apply; a
//! half-written or empty file is rejected; no request fails during a reload).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// How long to watch for a second, unwanted apply after the first one. Longer than any sensible
/// debounce window (the contract applies changes within 1 s).
const SETTLE: Duration = Duration::from_millis(2000);

fn base(route_target: &str) -> Vec<(&'static str, String)> {
    vec![
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", catch_all_route("route", route_target)),
        ("dataplanes.yaml", dataplanes(&["v1", "v2"])),
    ]
}

/// Asserts that exactly one apply happened after generation `g0` and nothing more follows.
#[track_caller]
fn assert_exactly_one_apply(gw: &Gateway, g0: i64) {
    let g1 = gw.expect_generation_above(g0);
    assert_eq!(g1, g0 + 1, "one change must be one apply");
    thread::sleep(SETTLE);
    assert_eq!(
        gw.generation(),
        g0 + 1,
        "a second apply followed the change (intermediate file state applied?)"
    );
    assert_eq!(gw.last_error(), None);
}

// Contract: a valid change is applied (generation +1) and the new routes serve.
#[test]
fn valid_change_is_applied_generation_increments_and_new_routes_serve() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    gw.assert_routed(1, "/", "a.test", "v1");
    let g0 = gw.generation();
    assert_eq!(gw.last_error(), None);
    gw.dir
        .write_atomic("route.yaml", &catch_all_route("route", "v2"));
    assert_exactly_one_apply(&gw, g0);
    gw.assert_routed(1, "/", "a.test", "v2");
}

// An open keep-alive connection does not hold the snapshot it was accepted under: after
// three reloads only the active snapshot is in memory (each one holds every route table of
// its generation; a connection per generation would multiply the gateway's memory).
#[test]
fn an_idle_keep_alive_connection_does_not_keep_old_snapshots() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    let mut conn = Conn::open(gw.lport(1)).expect("connect");
    let first = conn
        .send("GET", "/", "a.test", &[], b"")
        .expect("first request");
    assert_eq!(backend_of(&first).as_deref(), Some("v1"));
    for (i, target) in ["v2", "v1", "v2"].iter().enumerate() {
        let g0 = gw.generation();
        gw.dir
            .write_atomic("route.yaml", &catch_all_route("route", target));
        gw.expect_generation_above(g0);
        assert_eq!(gw.generation(), g0 + 1, "reload {i}");
    }
    assert_eq!(gw.metric("meshgate_config_snapshots_live "), 1.0);
    // The connection still serves, under the newest snapshot.
    let last = conn
        .send("GET", "/", "a.test", &[], b"")
        .expect("request after reloads");
    assert_eq!(backend_of(&last).as_deref(), Some("v2"));
}

// Contract: an invalid change is rejected whole (a valid part written alongside is not applied
// either), `last_error` says why, and the previous snapshot keeps serving.
#[test]
fn invalid_change_is_rejected_whole_and_old_routes_keep_serving() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    let g0 = gw.generation();
    // the invalid file first, so that no intermediate state of the directory is valid
    gw.dir.write_atomic(
        "zz-bad.yaml",
        &http_route(
            "bad-route",
            r#"
            - matches:
              - path:
                  type: NotAPathMatchType
                  value: /bad
              default:
                backendRefs:
                - kind: MeshService
                  name: v2
            "#,
        ),
    );
    gw.dir
        .write_atomic("route.yaml", &catch_all_route("route", "v2"));
    let err = gw.wait_last_error(RELOAD_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "last_error still null after an invalid change\n{}",
            gw.log_tail()
        )
    });
    assert!(
        err.contains("zz-bad.yaml"),
        "last_error should name the offending file: {err:?}"
    );
    thread::sleep(SETTLE);
    assert_eq!(gw.generation(), g0, "the invalid change was applied");
    gw.assert_routed(1, "/", "a.test", "v1");
    gw.assert_routed(1, "/bad", "a.test", "v1");

    // Contract: the next good change clears last_error (and applies everything now valid).
    gw.dir.remove("zz-bad.yaml");
    let g1 = gw.expect_generation_above(g0);
    assert_eq!(g1, g0 + 1);
    assert_eq!(
        gw.last_error(),
        None,
        "last_error not cleared by a good change"
    );
    gw.assert_routed(1, "/", "a.test", "v2");
}

// Contract: malformed YAML is rejected; last_error is set; a later good change clears it.
#[test]
fn malformed_yaml_is_rejected_and_next_good_change_clears_last_error() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    let g0 = gw.generation();
    gw.dir.write_atomic(
        "route.yaml",
        "type: MeshHTTPRoute\nname: route\nmesh: default\nspec: [this is: not valid yaml\n",
    );
    let err = gw
        .wait_last_error(RELOAD_TIMEOUT)
        .expect("last_error still null after malformed YAML");
    assert!(err.contains("route.yaml"), "last_error: {err:?}");
    assert_eq!(gw.generation(), g0);
    gw.assert_routed(1, "/", "a.test", "v1");
    gw.dir
        .write_atomic("route.yaml", &catch_all_route("route", "v2"));
    gw.expect_generation_above(g0);
    assert_eq!(gw.last_error(), None);
    gw.assert_routed(1, "/", "a.test", "v2");
}

// Contract: deleting a file is a change.
#[test]
fn deleting_a_file_is_a_change() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    gw.assert_routed(1, "/", "a.test", "v1");
    let g0 = gw.generation();
    gw.dir.remove("route.yaml");
    assert_exactly_one_apply(&gw, g0);
    gw.assert_status(1, "/", "a.test", 404);
}

// Contract (editor patterns): truncate-then-write on the same file ends in exactly one apply, and
// the intermediate empty/half file is never applied.
#[test]
fn truncate_then_write_in_place_ends_in_one_apply() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    let g0 = gw.generation();
    gw.dir
        .write_in_place("route.yaml", &catch_all_route("route", "v2"));
    assert_exactly_one_apply(&gw, g0);
    gw.assert_routed(1, "/", "a.test", "v2");
}

// Contract (editor patterns): write a temp file beside the target (not *.yaml), rename it over the
// target: one apply, the temp file itself is never loaded.
#[test]
fn temp_file_then_rename_ends_in_one_apply() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    let g0 = gw.generation();
    gw.dir
        .write_via_sibling_temp("route.yaml", &catch_all_route("route", "v2"));
    assert_exactly_one_apply(&gw, g0);
    gw.assert_routed(1, "/", "a.test", "v2");
}

// Contract (editor patterns): the Kubernetes ConfigMap volume layout (`..data` symlink swapped to
// a new hidden timestamped directory, keys are symlinks through `..data`) is served, and an
// update (one atomic symlink swap) ends in exactly one apply.
#[test]
fn configmap_symlink_swap_ends_in_one_apply() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let dir = PolicyDir::new(&[]);
    dir.write_configmap(&base("v1"));
    let gw = Gateway::start_dir(dir, &[]);
    gw.assert_routed(1, "/", "a.test", "v1");
    let g0 = gw.generation();
    gw.dir.write_configmap(&base("v2"));
    assert_exactly_one_apply(&gw, g0);
    gw.assert_routed(1, "/", "a.test", "v2");
    // and once more, after the old data directory was deleted
    let g1 = gw.generation();
    gw.dir.write_configmap(&base("v1"));
    assert_exactly_one_apply(&gw, g1);
    gw.assert_routed(1, "/", "a.test", "v1");
}

// Contract ("a half-written or empty file is rejected"): a policy file left empty is not applied
// (the routes it held keep serving) until it is written completely.
#[test]
fn empty_file_is_rejected_until_written_completely() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    let g0 = gw.generation();
    gw.dir.truncate("route.yaml");
    thread::sleep(SETTLE);
    assert_eq!(gw.generation(), g0, "an empty file was applied");
    gw.assert_routed(1, "/", "a.test", "v1");
    gw.dir.append("route.yaml", &catch_all_route("route", "v2"));
    gw.expect_generation_above(g0);
    assert_eq!(gw.last_error(), None);
    gw.assert_routed(1, "/", "a.test", "v2");
}

// Contract ("a half-written or empty file is rejected"): a file cut in the middle of a resource is
// rejected; completing it applies the whole resource.
#[test]
fn half_written_file_is_rejected_until_completed() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    let g0 = gw.generation();
    let full = catch_all_route("route", "v2");
    let cut = full
        .find("backendRefs")
        .expect("route text has backendRefs")
        + 4;
    gw.dir.truncate("route.yaml");
    gw.dir.append("route.yaml", &full[..cut]);
    gw.wait_last_error(RELOAD_TIMEOUT)
        .expect("a half-written route was not reported in last_error");
    assert_eq!(gw.generation(), g0, "a half-written file was applied");
    gw.assert_routed(1, "/", "a.test", "v1");
    gw.dir.append("route.yaml", &full[cut..]);
    gw.expect_generation_above(g0);
    assert_eq!(gw.last_error(), None);
    gw.assert_routed(1, "/", "a.test", "v2");
}

// Contract: no request fails during reloads. 20 rewrites (alternating v1/v2), each awaited, while
// two clients loop: one opening a connection per request, one reusing a keep-alive connection.
#[test]
fn twenty_reloads_under_load_fail_no_request() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let gw = Gateway::start(&base("v1"), &[]);
    let port = gw.lport(1);
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(300);

    let mut clients = Vec::new();
    for keep_alive in [false, true] {
        let (stop, total, failures) = (stop.clone(), total.clone(), failures.clone());
        clients.push(thread::spawn(move || {
            let mut conn = None;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let res = if keep_alive {
                    if conn.is_none() {
                        conn = Conn::open(port).ok();
                    }
                    match conn.as_mut() {
                        Some(c) => c.send("GET", "/", "a.test", &[], b""),
                        None => Err(std::io::Error::other("connect failed")),
                    }
                } else {
                    try_send(port, "GET", "/", "a.test", &[], b"")
                };
                total.fetch_add(1, Ordering::SeqCst);
                match res {
                    Ok(r)
                        if r.status == 200
                            && matches!(backend_of(&r).as_deref(), Some("v1" | "v2")) => {}
                    Ok(r) => failures.lock().unwrap().push(format!(
                        "keep_alive={keep_alive}: status {} from {:?}",
                        r.status,
                        backend_of(&r)
                    )),
                    Err(e) => {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("keep_alive={keep_alive}: {e}"));
                        conn = None;
                    }
                }
            }
        }));
    }

    let mut g = gw.generation();
    for i in 0..20 {
        let target = if i % 2 == 0 { "v2" } else { "v1" };
        gw.dir
            .write_atomic("route.yaml", &catch_all_route("route", target));
        g = gw.expect_generation_above(g);
        gw.assert_routed(1, "/", "a.test", target);
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    let total = total.load(Ordering::SeqCst);
    assert!(total > 0, "no request was sent during the reloads");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed during 20 reloads; first: {:?}",
        failures.len(),
        failures.first()
    );
}

// Team brief (signals): SIGHUP re-reads the policies now; meshgate keeps running and serving.
#[test]
fn sighup_rereads_policies_and_keeps_serving() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let mut gw = Gateway::start(&base("v1"), &[]);
    gw.signal(libc::SIGHUP);
    thread::sleep(Duration::from_millis(500));
    assert!(gw.try_exit().is_none(), "meshgate died on SIGHUP");
    gw.assert_routed(1, "/", "a.test", "v1");
    assert_eq!(gw.admin_get("/ready").status, 200);
}

// A reload that changes only route files reuses the compiled tables of the hostname groups it
// did not touch. Those tables still follow every other change: here a Dataplane moving the
// service `app` from backend v1 to v2 must reach the untouched a.test group.
#[test]
fn untouched_route_groups_follow_a_backend_change_after_route_only_reloads() {
    let _v1 = EchoHttp::start("v1");
    let _v2 = EchoHttp::start("v2");
    let app_on = |backend: &str| {
        [
            dataplanes(&["v1", "v2"]),
            dataplane("dp-app", "app", &format!("@PORT:{backend}@")),
        ]
        .join("---\n")
    };
    let gw = Gateway::start(
        &[
            ("gateway.yaml", gateway_one_http()),
            (
                "a.yaml",
                http_route_for_hosts("a", &["a.test"], &catch_all_rule("app")),
            ),
            (
                "b.yaml",
                http_route_for_hosts("b", &["b.test"], &catch_all_rule("v1")),
            ),
            ("dataplanes.yaml", app_on("v1")),
        ],
        &[],
    );
    gw.assert_routed(1, "/x", "a.test", "v1");
    gw.assert_routed(1, "/x", "b.test", "v1");

    // Route-only changes: b.test moves, a.test is untouched.
    for (step, target) in ["v2", "v1", "v2"].iter().enumerate() {
        let g0 = gw.generation();
        gw.dir.write_atomic(
            "b.yaml",
            &http_route_for_hosts("b", &["b.test"], &catch_all_rule(target)),
        );
        gw.expect_generation_above(g0);
        gw.assert_routed(1, "/x", "b.test", target);
        gw.assert_routed(1, &format!("/step-{step}"), "a.test", "v1");
    }

    // Then the service behind the untouched group moves.
    let g0 = gw.generation();
    gw.dir.write_atomic("dataplanes.yaml", &app_on("v2"));
    gw.expect_generation_above(g0);
    gw.assert_routed(1, "/x", "a.test", "v2");
    gw.assert_routed(1, "/x", "b.test", "v2");
}
