//! The compiler end to end: policy directories built, rebuilt and reused.

use super::*;
use crate::runtime::reload::pipeline::{build, build_with};
use crate::snapshot::matchers::RequestView;
use std::path::Path;
use std::sync::Arc;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write policy");
}

fn route(path: &str) -> String {
    format!(
        "type: MeshHTTPRoute\nname: r-{}\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n  - targetRef: {{kind: Mesh}}\n    rules:\n    - matches: [{{path: {{type: Exact, value: {path}}}}}]\n      default: {{backendRefs: [{{kind: MeshService, name: web}}]}}\n",
        path.trim_start_matches('/')
    )
}

/// The route entry a plain `GET path` with `Host: host` takes on port 8080.
fn route_of<'s>(
    snap: &'s Snapshot,
    host: &str,
    path: &str,
) -> Option<&'s crate::snapshot::route_table::RouteEntry> {
    let headers = http::HeaderMap::new();
    let req = RequestView {
        method: &http::Method::GET,
        path,
        query: None,
        headers: &headers,
    };
    snap.route(8080, None, host, &req).entry()
}

fn routed(snap: &Snapshot, path: &str) -> bool {
    route_of(snap, "any.test", path).is_some()
}

/// An empty policy directory of this test process.
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn rate_limit(num: u32) -> String {
    format!("type: MeshRateLimit\nname: rl\nmesh: default\nspec:\n  targetRef: {{kind: Mesh}}\n  to:\n  - targetRef: {{kind: Mesh}}\n    default:\n      local:\n        http:\n          requestRate: {{num: {num}, interval: 1m}}\n")
}

fn bucket_of(snap: &Snapshot, path: &str) -> Arc<crate::snapshot::rate_limit::TokenBucket> {
    let entry = route_of(snap, "any.test", path).expect("routed");
    let f = entry.action.forward().expect("forwards");
    f.rate_limit.as_ref().expect("limited").bucket.clone()
}

// Issue 16: a reload that leaves a limit unchanged keeps its bucket (and what was
// taken from it), even when the rule's file changed; a changed limit starts afresh.
#[test]
fn rate_limit_buckets_survive_reloads_that_keep_the_limit() {
    let dir = fresh_dir("buckets");
    write(&dir, "gateway.yaml", "type: MeshGateway\nname: gw\nmesh: default\nselectors:\n- match:\n    kuma.io/service: gw\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n---\ntype: Dataplane\nname: web-1\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 9\n    tags:\n      kuma.io/service: web\n");
    write(&dir, "a.yaml", &route("/a"));
    write(&dir, "rl.yaml", &rate_limit(1));
    let mut compiler = Compiler::new(CompileOptions {
        policy_dir: dir.clone(),
        ..Default::default()
    });
    let first = build_with(&mut compiler, &dir, 1)
        .map_err(|r| r.violations)
        .expect("valid");
    assert!(bucket_of(&first.snapshot, "/a").try_take());

    write(
        &dir,
        "a.yaml",
        &format!("{}---\n{}", route("/a"), route("/z")),
    );
    let second = build_with(&mut compiler, &dir, 2)
        .map_err(|r| r.violations)
        .expect("valid");
    assert!(
        !bucket_of(&second.snapshot, "/a").try_take(),
        "the reload handed out no new allowance"
    );
    assert!(
        bucket_of(&second.snapshot, "/z").try_take(),
        "a new rule gets its own"
    );

    write(&dir, "rl.yaml", &rate_limit(2));
    let third = build_with(&mut compiler, &dir, 3)
        .map_err(|r| r.violations)
        .expect("valid");
    assert!(
        bucket_of(&third.snapshot, "/a").try_take(),
        "a changed limit starts full"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_duplicate_name_is_rejected_naming_both_files() {
    let dir = fresh_dir("duplicates");
    write(&dir, "gateway.yaml", "type: MeshGateway\nname: gw\nmesh: default\nselectors:\n- match:\n    kuma.io/service: gw\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n");
    write(&dir, "a.yaml", &route("/a"));
    write(&dir, "b.yaml", &route("/a"));
    let opts = CompileOptions {
        policy_dir: dir.clone(),
        ..Default::default()
    };
    let Err(rejected) = build(&dir, &opts, 1) else {
        panic!("two MeshHTTPRoutes named r-a must be refused");
    };
    let lines: Vec<String> = rejected.violations.iter().map(|v| v.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("b.yaml: document 1: MeshHTTPRoute/r-a: duplicate")
            && lines[0].contains("a.yaml: document 1"),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cached_rebuilds_reparse_only_changed_files_and_match_a_fresh_build() {
    let dir = fresh_dir("reload-cache");
    write(&dir, "gateway.yaml", "type: MeshGateway\nname: gw\nmesh: default\nselectors:\n- match:\n    kuma.io/service: gw\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n---\ntype: Dataplane\nname: web-1\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 9\n    tags:\n      kuma.io/service: web\n");
    write(&dir, "a.yaml", &route("/a"));
    write(&dir, "b.yaml", &route("/b"));
    let opts = CompileOptions {
        gateway: None,
        policy_dir: dir.clone(),
        ..Default::default()
    };
    let mut compiler = Compiler::new(opts.clone());
    let first = build_with(&mut compiler, &dir, 1).map_err(|r| r.violations);
    let first = first.expect("valid directory");
    assert!(routed(&first.snapshot, "/a") && routed(&first.snapshot, "/b"));
    let hash_of = |compiler: &Compiler, f: &str| compiler.cached_file_hash(f);
    let a_before = hash_of(&compiler, "a.yaml");

    // b changes, a does not; c is new.
    write(&dir, "b.yaml", &route("/b2"));
    write(&dir, "c.yaml", &route("/c"));
    let second = build_with(&mut compiler, &dir, 2).map_err(|r| r.violations);
    let second = second.expect("valid directory");
    assert_eq!(hash_of(&compiler, "a.yaml"), a_before);
    assert!(routed(&second.snapshot, "/a"));
    assert!(
        !routed(&second.snapshot, "/b"),
        "the old content of b.yaml is gone"
    );
    assert!(routed(&second.snapshot, "/b2") && routed(&second.snapshot, "/c"));
    let fresh = build(&dir, &opts, 2)
        .map_err(|r| r.violations)
        .expect("valid");
    assert_eq!(second.fingerprint, fresh.fingerprint);
    assert_eq!(second.snapshot.route_entries, fresh.snapshot.route_entries);

    // A deleted file leaves the cache and the snapshot; a broken one is reported with
    // its own name, from the cache on the next build too.
    std::fs::remove_file(dir.join("c.yaml")).expect("remove");
    write(
        &dir,
        "b.yaml",
        "type: MeshHTTPRoute\nname: broken\nmesh: default\nspec:\n  to: [\n",
    );
    for generation in [3, 4] {
        let Err(rejected) = build_with(&mut compiler, &dir, generation) else {
            panic!("a broken file must reject the build");
        };
        assert!(rejected
            .violations
            .iter()
            .all(|v| v.origin.file == "b.yaml"));
    }
    assert!(compiler.cached_file_hash("c.yaml").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

fn host_route(name: &str, host: &str, path: &str, service: &str) -> String {
    format!(
        "type: MeshHTTPRoute\nname: {name}\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n  - targetRef: {{kind: Mesh}}\n    hostnames: [{host}]\n    rules:\n    - matches: [{{path: {{type: Exact, value: {path}}}}}]\n      default: {{backendRefs: [{{kind: MeshService, name: {service}}}]}}\n"
    )
}

fn dataplane(name: &str, address: &str, port: u16, service: &str) -> String {
    format!("---\ntype: Dataplane\nname: {name}\nmesh: default\nnetworking:\n  address: {address}\n  inbound:\n  - port: {port}\n    tags:\n      kuma.io/service: {service}\n")
}

/// The first (most exact) route table of `host`'s virtual host on port 8080.
fn table_of(snap: &Snapshot, host: &str) -> Arc<crate::snapshot::route_table::RouteTable> {
    let Some(crate::snapshot::Serving::Http { vhosts }) = snap.port(8080).map(|p| &p.serving)
    else {
        panic!("port 8080 serves HTTP");
    };
    let vhost = vhosts.lookup(host).expect("virtual host");
    vhost.tables.first().expect("a table").clone()
}

/// The port the request for `path` on `host` is sent to.
fn upstream_port(snap: &Snapshot, host: &str, path: &str) -> Option<u16> {
    let entry = route_of(snap, host, path)?;
    let backend = entry.action.backends().next()?;
    backend.endpoints.first().map(|e| e.addr.port())
}

#[test]
fn route_tables_are_reused_only_while_their_rules_and_what_they_refer_to_are_unchanged() {
    let dir = fresh_dir("reload-tables");
    let gateway = "type: MeshGateway\nname: gw\nmesh: default\nselectors:\n- match:\n    kuma.io/service: gw\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n";
    let dataplanes = |web_port: u16| {
        [
            dataplane("web-1", "127.0.0.1", web_port, "web"),
            dataplane("api-1", "127.0.0.1", 10, "api"),
            dataplane("named-1", "localhost", 12, "named"),
        ]
        .concat()
    };
    write(&dir, "gateway.yaml", gateway);
    write(&dir, "dataplanes.yaml", &dataplanes(9));
    write(&dir, "a.yaml", &host_route("a", "a.test", "/a", "web"));
    write(&dir, "b.yaml", &host_route("b", "b.test", "/b", "api"));
    write(
        &dir,
        "c.yaml",
        &host_route("c", "c.test", "/c", "kuma.io/unresolved-backend"),
    );
    write(&dir, "d.yaml", &host_route("d", "d.test", "/d", "named"));
    let opts = CompileOptions {
        gateway: None,
        policy_dir: dir.clone(),
        ..Default::default()
    };
    let mut compiler = Compiler::new(opts.clone());
    let build_next = |compiler: &mut Compiler, generation| {
        build_with(compiler, &dir, generation)
            .map_err(|r| r.violations)
            .expect("valid directory")
    };
    let first = build_next(&mut compiler, 1);
    assert_eq!(upstream_port(&first.snapshot, "a.test", "/a"), Some(9));

    // Only b.yaml changes: the other groups' tables are the very same objects, b's is
    // compiled anew, and the snapshot equals a build from scratch.
    write(&dir, "b.yaml", &host_route("b", "b.test", "/b2", "api"));
    let second = build_next(&mut compiler, 2);
    let same = |host| {
        Arc::ptr_eq(
            &table_of(&first.snapshot, host),
            &table_of(&second.snapshot, host),
        )
    };
    assert!(
        same("a.test") && same("c.test"),
        "unchanged groups are reused"
    );
    assert!(!same("b.test"), "the changed group is compiled again");
    assert!(
        !same("d.test"),
        "a table with a DNS-named backend is never reused"
    );
    assert_eq!(upstream_port(&second.snapshot, "b.test", "/b"), None);
    assert_eq!(upstream_port(&second.snapshot, "b.test", "/b2"), Some(10));
    let fresh = build(&dir, &opts, 2)
        .map_err(|r| r.violations)
        .expect("valid");
    assert_eq!(second.snapshot.route_entries, fresh.snapshot.route_entries);
    let keys = |snap: &Snapshot| {
        let mut k: Vec<String> = snap.backends.iter().map(|b| b.key.clone()).collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&second.snapshot),
        keys(&fresh.snapshot),
        "reused tables' backends are listed"
    );
    let sorted = |mut w: Vec<String>| {
        w.sort();
        w
    };
    assert_eq!(
        sorted(second.warnings.clone()),
        sorted(fresh.warnings.clone()),
        "a reused table's warnings are repeated"
    );
    assert!(second
        .warnings
        .iter()
        .any(|w| w.contains("unresolved-backend")));

    // A rejected change leaves the cache of the last good build.
    write(
        &dir,
        "b.yaml",
        "type: MeshHTTPRoute\nname: b\nmesh: default\nspec:\n  to: [\n",
    );
    assert!(build_with(&mut compiler, &dir, 3).is_err());
    write(&dir, "b.yaml", &host_route("b", "b.test", "/b3", "api"));
    let third = build_next(&mut compiler, 4);
    assert!(Arc::ptr_eq(
        &table_of(&second.snapshot, "a.test"),
        &table_of(&third.snapshot, "a.test")
    ));

    // Anything else changing (here a Dataplane's port) recompiles every table.
    write(&dir, "dataplanes.yaml", &dataplanes(11));
    let fourth = build_next(&mut compiler, 5);
    assert!(!Arc::ptr_eq(
        &table_of(&third.snapshot, "a.test"),
        &table_of(&fourth.snapshot, "a.test")
    ));
    assert_eq!(upstream_port(&fourth.snapshot, "a.test", "/a"), Some(11));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `host`'s virtual host on port 8080.
fn vhost_of(snap: &Snapshot, host: &str) -> Arc<crate::snapshot::VirtualHost> {
    let Some(crate::snapshot::Serving::Http { vhosts }) = snap.port(8080).map(|p| &p.serving)
    else {
        panic!("port 8080 serves HTTP");
    };
    vhosts.lookup(host).expect("virtual host").clone()
}

#[test]
fn virtual_hosts_are_reused_whole_unless_a_group_they_select_changes() {
    let dir = fresh_dir("reload-vhosts");
    write(&dir, "gateway.yaml", "type: MeshGateway\nname: gw\nmesh: default\nselectors:\n- match:\n    kuma.io/service: gw\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n");
    write(
        &dir,
        "dataplanes.yaml",
        &[
            dataplane("web-1", "127.0.0.1", 9, "web"),
            dataplane("api-1", "127.0.0.1", 10, "api"),
        ]
        .concat(),
    );
    // A generic PathPrefix every virtual host selects, and one route per host.
    write(
        &dir,
        "generic.yaml",
        "type: MeshHTTPRoute\nname: g\nmesh: default\nspec:\n  targetRef: {kind: MeshGateway, name: gw}\n  to:\n  - targetRef: {kind: Mesh}\n    rules:\n    - matches: [{path: {type: PathPrefix, value: /shared}}]\n      default: {backendRefs: [{kind: MeshService, name: web}]}\n",
    );
    write(&dir, "a.yaml", &host_route("a", "a.test", "/a", "web"));
    write(&dir, "b.yaml", &host_route("b", "b.test", "/b", "api"));
    let opts = CompileOptions {
        policy_dir: dir.clone(),
        ..Default::default()
    };
    let mut compiler = Compiler::new(opts.clone());
    let first = build_with(&mut compiler, &dir, 1)
        .map_err(|r| r.violations)
        .expect("valid");

    // b.test gains an Exact /shared: it suppresses the exact half of the generic prefix in
    // b.test's virtual host only.
    write(&dir, "b.yaml", &host_route("b", "b.test", "/shared", "api"));
    let second = build_with(&mut compiler, &dir, 2)
        .map_err(|r| r.violations)
        .expect("valid");
    assert!(
        Arc::ptr_eq(
            &vhost_of(&first.snapshot, "a.test"),
            &vhost_of(&second.snapshot, "a.test")
        ),
        "a virtual host whose groups did not change is taken whole"
    );
    let (before, after) = (
        vhost_of(&first.snapshot, "b.test"),
        vhost_of(&second.snapshot, "b.test"),
    );
    assert!(!Arc::ptr_eq(&before, &after));
    assert!(
        !Arc::ptr_eq(before.tables.last().unwrap(), after.tables.last().unwrap()),
        "the generic table is compiled again for the virtual host whose Exact paths changed"
    );
    assert!(
        Arc::ptr_eq(
            vhost_of(&first.snapshot, "a.test").tables.last().unwrap(),
            before.tables.last().unwrap()
        ),
        "before the change both hosts shared one generic table"
    );

    // The incremental build routes as a build from scratch does.
    let fresh = build(&dir, &opts, 2)
        .map_err(|r| r.violations)
        .expect("valid");
    for host in ["a.test", "b.test", "c.test"] {
        for path in ["/a", "/b", "/shared", "/shared/x", "/other"] {
            assert_eq!(
                upstream_port(&second.snapshot, host, path),
                upstream_port(&fresh.snapshot, host, path),
                "{host}{path}"
            );
        }
    }
    assert_eq!(
        upstream_port(&second.snapshot, "b.test", "/shared"),
        Some(10)
    );
    assert_eq!(
        upstream_port(&second.snapshot, "a.test", "/shared"),
        Some(9)
    );
    assert_eq!(second.snapshot.route_entries, fresh.snapshot.route_entries);

    // A new host's route adds a virtual host; the others are still taken whole.
    write(&dir, "c.yaml", &host_route("c", "c.test", "/c", "api"));
    let third = build_with(&mut compiler, &dir, 3)
        .map_err(|r| r.violations)
        .expect("valid");
    assert!(Arc::ptr_eq(
        &vhost_of(&second.snapshot, "a.test"),
        &vhost_of(&third.snapshot, "a.test")
    ));
    assert!(Arc::ptr_eq(
        &vhost_of(&second.snapshot, "b.test"),
        &vhost_of(&third.snapshot, "b.test")
    ));
    assert_eq!(upstream_port(&third.snapshot, "c.test", "/c"), Some(10));
    assert_eq!(
        upstream_port(&third.snapshot, "c.test", "/shared/x"),
        Some(9)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
