//! Micro-benchmarks (issue 5 item 3): route lookup at 10 / 1,000 / 10,000 / 100,000 routes
//! must stay flat, and snapshot compilation time is measured.
//!
//! Policies are generated like `scripts/bench/gen_routes.py` does: exact, prefix, regex and header
//! matches over several hostnames, with the route the benchmark request takes declared last.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, Method};
use meshgate::compile::{CompileOptions, Compiler};
use meshgate::runtime::reload::pipeline::{build, build_with};
use meshgate::snapshot::matchers::RequestView;
use std::fmt::Write;
use std::path::PathBuf;

const PORT: u16 = 18099;

fn write_policies(routes: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshgate-bench-{}-{routes}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut gw = String::new();
    let _ = write!(
        gw,
        "type: MeshGateway\nmesh: default\nname: bench\nselectors:\n- match:\n    kuma.io/service: bench\nconf:\n  listeners:\n  - port: {PORT}\n    protocol: HTTP\n---\ntype: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 9\n    tags:\n      kuma.io/service: backend\n"
    );
    std::fs::write(dir.join("gateway.yaml"), gw).expect("write");
    let per_file = 100;
    let mut i = 0;
    let mut file = 0;
    while i < routes {
        let mut doc = format!(
            "type: MeshHTTPRoute\nmesh: default\nname: r{file:06}\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: bench\n  to:\n  - targetRef:\n      kind: Mesh\n    hostnames: [\"h{}.example.com\", \"*.w{}.example.com\"]\n    rules:\n",
            file % 10,
            file % 7
        );
        for _ in 0..per_file.min(routes - i) {
            let last = i == routes - 1;
            let m = if last {
                "      - path: {type: PathPrefix, value: /bench/target}\n".to_string()
            } else {
                match i % 4 {
                    0 => format!("      - path: {{type: Exact, value: /svc{i}/item}}\n"),
                    1 => format!("      - path: {{type: PathPrefix, value: /svc{i}}}\n"),
                    2 => format!("      - path: {{type: RegularExpression, value: \"/re{i}/[0-9]+\"}}\n"),
                    _ => format!(
                        "      - path: {{type: PathPrefix, value: /hdr{i}}}\n        headers: [{{name: x-tenant, value: t{i}}}]\n"
                    ),
                }
            };
            let _ = write!(
                doc,
                "    - matches:\n{m}      default:\n        backendRefs: [{{kind: MeshService, name: backend}}]\n"
            );
            i += 1;
        }
        std::fs::write(dir.join(format!("routes-{file:06}.yaml")), doc).expect("write");
        file += 1;
    }
    dir
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for routes in [10usize, 1_000, 10_000, 100_000] {
        let (dir, opts) = policies_with_options(routes);
        let Ok(built) = build(&dir, &opts, 1) else {
            panic!("generated policies must be valid");
        };
        let snap = built.snapshot;
        let headers = HeaderMap::new();
        let host = format!("h{}.example.com", (routes.div_ceil(100) - 1) % 10);
        group.bench_with_input(BenchmarkId::from_parameter(routes), &routes, |b, _| {
            b.iter(|| {
                let req = RequestView {
                    method: &Method::GET,
                    path: black_box("/bench/target/x"),
                    query: None,
                    headers: &headers,
                };
                let hit = snap.route(PORT, None, black_box(&host), &req).entry();
                assert!(hit.is_some());
                hit.map(|e| e.route_name.len())
            })
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

/// [`write_policies`] and the compile options that read them.
fn policies_with_options(routes: usize) -> (PathBuf, CompileOptions) {
    let dir = write_policies(routes);
    let opts = CompileOptions {
        policy_dir: dir.clone(),
        ..Default::default()
    };
    (dir, opts)
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_compile");
    group.sample_size(10);
    for routes in [1_000usize, 10_000] {
        let (dir, opts) = policies_with_options(routes);
        group.bench_with_input(BenchmarkId::from_parameter(routes), &routes, |b, _| {
            b.iter(|| build(&dir, &opts, 1).is_ok())
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

/// A reload of a one-file change: the per-file cache skips the unchanged files' parsing and
/// the route tables of hostname groups the file does not feed are reused. Alternates between
/// two versions of one route file, so every iteration is a real change.
fn rebuild_one_file(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_rebuild_one_file");
    group.sample_size(10);
    for routes in [1_000usize, 10_000] {
        let (dir, opts) = policies_with_options(routes);
        let mut compiler = Compiler::new(opts.clone());
        let mut generation = 1;
        let _ = build_with(&mut compiler, &dir, generation);
        let changed = dir.join("routes-000000.yaml");
        let original = std::fs::read_to_string(&changed).expect("read");
        let versions = [
            original.replace("/svc0/item", "/svc0/changed"),
            original.clone(),
        ];
        group.bench_with_input(BenchmarkId::from_parameter(routes), &routes, |b, _| {
            b.iter(|| {
                generation += 1;
                let text = &versions[(generation % 2) as usize];
                std::fs::write(&changed, text).expect("write");
                build_with(&mut compiler, &dir, generation).is_ok()
            })
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, lookup, compile, rebuild_one_file);
criterion_main!(benches);
