//! The whole build, policy directory → snapshot: load → validate → compile. `--check` and
//! every reload run it, so the two can never disagree. Every problem is reported, not just
//! the first.

use crate::resources::loader::{list_files, load_text, read_file, Loaded};
use crate::snapshot::table_cache::TableCache;
use crate::snapshot::{compile_reusing, CompileOptions, Snapshot};
use crate::validate::validate;
use crate::violation::Violation;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Built {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
    pub fingerprint: u64,
    pub took: Duration,
}

pub struct Rejected {
    pub violations: Vec<Violation>,
    pub fingerprint: u64,
}

/// Returns the memory a rebuild freed (the parsed YAML of every policy file) to the OS.
/// mimalloc keeps freed pages for reuse otherwise, and a 10,000-route directory parses into
/// far more memory than its compiled snapshot keeps.
pub fn release_freed_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; `force` also frees abandoned pages.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Loads, validates and compiles `dir`. Every problem is reported, not just the first.
pub fn build(dir: &Path, opts: &CompileOptions, generation: u64) -> Result<Built, Rejected> {
    build_cached(dir, opts, generation, &mut PolicyCache::default())
}

/// What one policy file decoded and validated to, kept while its content is unchanged.
/// Kuma's validation rules look at one resource at a time, so a file's violations depend on
/// its text alone; only compilation needs the whole directory.
struct CachedFile {
    content_hash: u64,
    loaded: Loaded,
    validation: Vec<Violation>,
}

/// Per-file results of the previous build: a reload re-reads every file (cheap) but parses
/// and validates only those whose content changed (YAML decoding dominates a large
/// directory's rebuild).
#[derive(Default)]
pub struct PolicyCache {
    files: HashMap<String, CachedFile>,
    /// The route tables of the last successful build (reused where their rules and
    /// everything they refer to are unchanged).
    tables: TableCache,
}

/// [`build`], reusing `cache` for files whose content is unchanged and updating it.
pub fn build_cached(
    dir: &Path,
    opts: &CompileOptions,
    generation: u64,
    cache: &mut PolicyCache,
) -> Result<Built, Rejected> {
    let started = Instant::now();
    let files = match list_files(dir) {
        Ok(files) => files,
        Err(v) => {
            return Err(Rejected {
                violations: vec![v],
                fingerprint: 0,
            })
        }
    };
    let mut fingerprint = DefaultHasher::new();
    let mut loaded = Loaded::default();
    let mut validation = Vec::new();
    let mut present = HashSet::with_capacity(files.len());
    let mut reparsed = 0usize;
    for (rel, path) in &files {
        rel.hash(&mut fingerprint);
        let text = match read_file(path) {
            Ok(text) => text,
            Err(e) => {
                loaded.violations.push(Violation::file(rel, e));
                continue;
            }
        };
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        let content_hash = h.finish();
        content_hash.hash(&mut fingerprint);
        present.insert(rel.as_str());
        let fresh = |rel: &str| {
            let loaded = load_text(rel, &text);
            let validation = validate(&loaded.resources);
            CachedFile {
                content_hash,
                loaded,
                validation,
            }
        };
        let cached = match cache.files.entry(rel.clone()) {
            Entry::Occupied(mut e) => {
                if e.get().content_hash != content_hash {
                    reparsed += 1;
                    e.insert(fresh(rel));
                }
                e.into_mut()
            }
            Entry::Vacant(e) => {
                reparsed += 1;
                e.insert(fresh(rel))
            }
        };
        loaded.append(Loaded {
            resources: cached.loaded.resources.clone(),
            violations: cached.loaded.violations.clone(),
            warnings: cached.loaded.warnings.clone(),
            fingerprint: 0,
        });
        validation.extend(cached.validation.iter().cloned());
    }
    cache.files.retain(|rel, _| present.contains(rel.as_str()));
    let fingerprint = fingerprint.finish();
    let load_took = started.elapsed();
    let mut violations = loaded.violations;
    // Load problems first, then rule violations, each in file order.
    violations.extend(validation);
    log::debug!(
        "policies: {} files ({reparsed} parsed) loaded and validated in {:.1} ms",
        files.len(),
        load_took.as_secs_f64() * 1000.0
    );
    if !violations.is_empty() {
        return Err(Rejected {
            violations,
            fingerprint,
        });
    }
    match compile_reusing(&loaded.resources, opts, generation, &mut cache.tables) {
        Ok(c) => {
            let mut warnings = loaded.warnings;
            warnings.extend(c.warnings);
            Ok(Built {
                snapshot: c.snapshot,
                warnings,
                fingerprint,
                took: started.elapsed(),
            })
        }
        Err(violations) => Err(Rejected {
            violations,
            fingerprint,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::matchers::RequestView;
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

    #[test]
    fn cached_rebuilds_reparse_only_changed_files_and_match_a_fresh_build() {
        let dir = fresh_dir("reload-cache");
        write(&dir, "gateway.yaml", "type: MeshGateway\nname: gw\nmesh: default\nselectors:\n- match:\n    kuma.io/service: gw\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n---\ntype: Dataplane\nname: web-1\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 9\n    tags:\n      kuma.io/service: web\n");
        write(&dir, "a.yaml", &route("/a"));
        write(&dir, "b.yaml", &route("/b"));
        let opts = CompileOptions {
            gateway: None,
            policy_dir: dir.clone(),
        };
        let mut cache = PolicyCache::default();
        let first = build_cached(&dir, &opts, 1, &mut cache).map_err(|r| r.violations);
        let first = first.expect("valid directory");
        assert!(routed(&first.snapshot, "/a") && routed(&first.snapshot, "/b"));
        let hash_of = |cache: &PolicyCache, f: &str| cache.files.get(f).map(|c| c.content_hash);
        let a_before = hash_of(&cache, "a.yaml");

        // b changes, a does not; c is new.
        write(&dir, "b.yaml", &route("/b2"));
        write(&dir, "c.yaml", &route("/c"));
        let second = build_cached(&dir, &opts, 2, &mut cache).map_err(|r| r.violations);
        let second = second.expect("valid directory");
        assert_eq!(hash_of(&cache, "a.yaml"), a_before);
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
            let Err(rejected) = build_cached(&dir, &opts, generation, &mut cache) else {
                panic!("a broken file must reject the build");
            };
            assert!(rejected
                .violations
                .iter()
                .all(|v| v.origin.file == "b.yaml"));
        }
        assert!(!cache.files.contains_key("c.yaml"));
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
        };
        let mut cache = PolicyCache::default();
        let build_next = |cache: &mut PolicyCache, generation| {
            build_cached(&dir, &opts, generation, cache)
                .map_err(|r| r.violations)
                .expect("valid directory")
        };
        let first = build_next(&mut cache, 1);
        assert_eq!(upstream_port(&first.snapshot, "a.test", "/a"), Some(9));

        // Only b.yaml changes: the other groups' tables are the very same objects, b's is
        // compiled anew, and the snapshot equals a build from scratch.
        write(&dir, "b.yaml", &host_route("b", "b.test", "/b2", "api"));
        let second = build_next(&mut cache, 2);
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
        assert!(build_cached(&dir, &opts, 3, &mut cache).is_err());
        write(&dir, "b.yaml", &host_route("b", "b.test", "/b3", "api"));
        let third = build_next(&mut cache, 4);
        assert!(Arc::ptr_eq(
            &table_of(&second.snapshot, "a.test"),
            &table_of(&third.snapshot, "a.test")
        ));

        // Anything else changing (here a Dataplane's port) recompiles every table.
        write(&dir, "dataplanes.yaml", &dataplanes(11));
        let fourth = build_next(&mut cache, 5);
        assert!(!Arc::ptr_eq(
            &table_of(&third.snapshot, "a.test"),
            &table_of(&fourth.snapshot, "a.test")
        ));
        assert_eq!(upstream_port(&fourth.snapshot, "a.test", "/a"), Some(11));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
