//! Reads a policy directory into a [`ResourceSet`].
//!
//! Rules (the contract of `--policies DIR`):
//! - every `*.yaml` / `*.yml` below DIR, recursively, in path order, multi-document;
//! - names starting with `.` are skipped: editors' swap files, and Kubernetes ConfigMap mounts
//!   whose real files live in `..data/` behind top-level symlinks (reading only the symlinks
//!   means an atomic `..data` swap is seen as one consistent change);
//! - symlinks are followed; a symlink loop, a dangling `*.yaml` link or a directory deeper
//!   than 16 levels is an error naming the path (a second link to a directory already read
//!   is read once);
//! - a file with no document at all (empty, comments only) is an error: it is what a
//!   truncate-then-write editor leaves for a moment, and applying it would delete routes;
//! - unknown kinds are skipped with a warning, everything else is decoded into typed values
//!   and every problem is reported with file, document, resource and field.

use super::*;
use crate::violation::{Origin, Violation};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_norway::{Mapping, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Files larger than this are rejected (a Kubernetes ConfigMap cannot exceed 1 MiB anyway).
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
const MAX_DEPTH: usize = 16;

/// Result of loading a directory: the resources that decoded, every problem found, and
/// warnings that do not make the directory invalid.
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: ResourceSet,
    pub violations: Vec<Violation>,
    pub warnings: Vec<String>,
    /// Hash of every file name and content read: equal fingerprints mean nothing changed,
    /// so a touch or a no-op rewrite does not create a new generation.
    pub fingerprint: u64,
}

pub fn load_dir(dir: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let files = match list_files(dir) {
        Ok(files) => files,
        Err(v) => {
            loaded.violations.push(v);
            return loaded;
        }
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (rel, path) in files {
        use std::hash::Hash;
        rel.hash(&mut hasher);
        match read_file(&path) {
            Ok(text) => {
                text.hash(&mut hasher);
                loaded.append(load_text(&rel, &text));
            }
            Err(e) => loaded.violations.push(Violation::file(&rel, e)),
        }
    }
    loaded.fingerprint = std::hash::Hasher::finish(&hasher);
    loaded
}

/// Every policy file below `dir` as `(relative name, path)`, sorted by name; an unreadable
/// directory is a violation.
pub fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, Violation> {
    let mut files = Vec::new();
    collect_files(dir, dir, 0, &mut HashSet::new(), &mut files)
        .map_err(|e| Violation::file(&dir.display().to_string(), e))?;
    files.sort();
    Ok(files)
}

impl Loaded {
    /// Adds what another file loaded, after what is here (file order is kept).
    pub fn append(&mut self, other: Loaded) {
        self.resources.append(other.resources);
        self.violations.extend(other.violations);
        self.warnings.extend(other.warnings);
    }
}

/// Every policy file below `dir` as `(relative name, path)`, sorted; used by the reloader's
/// cheap change detection.
pub fn policy_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let _ = collect_files(dir, dir, 0, &mut HashSet::new(), &mut files);
    files.sort();
    files
}

fn collect_files(
    root: &Path,
    dir: &Path,
    depth: usize,
    seen_dirs: &mut HashSet<PathBuf>,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), String> {
    let mut ancestors = Vec::new();
    walk(root, dir, depth, &mut ancestors, seen_dirs, out)
}

/// Reads `dir`, whose canonical ancestors (the directories it was reached through) are
/// `ancestors`. A symlink back to one of them is a loop: an error naming it, not a skip.
fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    ancestors: &mut Vec<PathBuf>,
    seen_dirs: &mut HashSet<PathBuf>,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), String> {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    if depth > MAX_DEPTH {
        return Err(format!(
            "{}: more than {MAX_DEPTH} directory levels below the policy directory",
            rel(dir)
        ));
    }
    let canonical = dir
        .canonicalize()
        .map_err(|e| format!("{}: cannot read directory: {e}", rel(dir)))?;
    if ancestors.contains(&canonical) {
        return Err(format!(
            "{}: symlink loop (leads back to {})",
            rel(dir),
            canonical.display()
        ));
    }
    if !seen_dirs.insert(canonical.clone()) {
        return Ok(()); // a second link to a directory already read: its files count once
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("{}: cannot read directory: {e}", rel(dir)))?;
    ancestors.push(canonical);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let is_policy_name = name.ends_with(".yaml") || name.ends_with(".yml");
        // metadata() follows symlinks.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if is_policy_name => {
                return Err(format!("{}: cannot read: {e}", rel(&path)));
            }
            // A dangling link that is not named like a policy file is not one.
            Err(_) => continue,
        };
        if meta.is_dir() {
            walk(root, &path, depth + 1, ancestors, seen_dirs, out)?;
        } else if meta.is_file() && is_policy_name {
            out.push((rel(&path), path));
        }
    }
    ancestors.pop();
    Ok(())
}

/// Decodes every document of one file's text (`rel` names it in violations).
pub fn load_text(rel: &str, text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    let source_hash = content_hash(text);
    let mut documents = 0usize;
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let origin = Origin {
            file: rel.to_string(),
            document: i + 1,
        };
        let value = match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                loaded
                    .violations
                    .push(Violation::new(&origin, None, "", yaml_error(&e)));
                // The parser cannot resynchronise after a syntax error.
                return loaded;
            }
        };
        if value.is_null() {
            continue; // an empty document between `---` separators
        }
        documents += 1;
        load_document(origin, source_hash, value, &mut loaded);
    }
    if documents == 0 {
        loaded.violations.push(Violation::file(
            rel,
            "no resource in file (empty or only comments); delete the file to remove its resources",
        ));
    }
    loaded
}

/// One policy file's text, refusing files too large to be policies.
pub fn read_file(path: &Path) -> Result<String, String> {
    read_capped(path)
}

fn read_capped(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read file: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} bytes, more than the {} allowed",
            meta.len(),
            MAX_FILE_BYTES
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read file: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "file is not UTF-8".to_string())
}

fn yaml_error(e: &serde_norway::Error) -> String {
    match e.location() {
        Some(loc) => format!(
            "invalid YAML at line {} column {}: {}",
            loc.line(),
            loc.column(),
            strip_location(&e.to_string())
        ),
        None => format!("invalid YAML: {e}"),
    }
}

/// serde_norway appends " at line L column C" itself; we print the location first instead.
fn strip_location(msg: &str) -> &str {
    match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// The parts of a document every resource has, whichever form it is written in.
struct Header {
    kind: String,
    name: String,
    mesh: String,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    form: Form,
    spec: Value,
}

/// The hash that identifies a file's text across builds. Every build hashes every file
/// (31 MB at 100,000 rules): SipHash took ~10 ms of such a reload (perf); xxHash64 is
/// several times faster.
pub fn content_hash(text: &str) -> u64 {
    twox_hash::XxHash64::oneshot(0, text.as_bytes())
}

fn load_document(origin: Origin, source_hash: u64, value: Value, loaded: &mut Loaded) {
    let Value::Mapping(map) = value else {
        loaded.violations.push(Violation::new(
            &origin,
            None,
            "",
            "document is not a mapping (expected a Kuma resource)",
        ));
        return;
    };
    let header = match read_header(map) {
        Ok(h) => h,
        Err((field, msg)) => {
            loaded
                .violations
                .push(Violation::new(&origin, None, field, msg));
            return;
        }
    };
    let Some(kind) = Kind::parse(&header.kind) else {
        loaded.warnings.push(format!(
            "{origin}: {}/{}: kind {:?} is not served by meshgate; skipped",
            header.kind, header.name, header.kind
        ));
        loaded.resources.skipped.push((origin, header.kind));
        return;
    };
    let meta = Meta {
        origin,
        kind,
        name: header.name,
        mesh: header.mesh,
        namespace: header.namespace,
        labels: header.labels,
        form: header.form,
        source_hash,
    };
    let set = &mut loaded.resources;
    let violations = &mut loaded.violations;
    match kind {
        Kind::MeshGateway => push(meta, header.spec, &mut set.gateways, violations),
        Kind::MeshHttpRoute => push(meta, header.spec, &mut set.http_routes, violations),
        Kind::MeshTcpRoute => push(meta, header.spec, &mut set.tcp_routes, violations),
        Kind::Dataplane => push(meta, header.spec, &mut set.dataplanes, violations),
        Kind::MeshService => push(meta, header.spec, &mut set.mesh_services, violations),
        Kind::MeshExternalService => {
            push(meta, header.spec, &mut set.external_services, violations)
        }
        Kind::MeshTimeout => push(meta, header.spec, &mut set.timeouts, violations),
        Kind::MeshRetry => push(meta, header.spec, &mut set.retries, violations),
        Kind::MeshRateLimit => push(meta, header.spec, &mut set.rate_limits, violations),
        Kind::MeshFaultInjection => push(meta, header.spec, &mut set.faults, violations),
        Kind::MeshHealthCheck => push(meta, header.spec, &mut set.health_checks, violations),
        Kind::MeshCircuitBreaker => push(meta, header.spec, &mut set.circuit_breakers, violations),
        Kind::MeshLoadBalancingStrategy => {
            push(meta, header.spec, &mut set.load_balancing, violations)
        }
        Kind::MeshAccessLog => push(meta, header.spec, &mut set.access_logs, violations),
        Kind::MeshTrace => push(meta, header.spec, &mut set.traces, violations),
        Kind::MeshOpenTelemetryBackend => {
            push(meta, header.spec, &mut set.otel_backends, violations)
        }
        Kind::Secret => push(meta, header.spec, &mut set.secrets, violations),
        Kind::NotApplied(_) => push(meta, header.spec, &mut set.not_applied, violations),
    }
}

fn push<T: DeserializeOwned>(
    meta: Meta,
    spec: Value,
    out: &mut Vec<Shared<T>>,
    violations: &mut Vec<Violation>,
) {
    // An absent spec decodes like an empty one, so missing required fields are reported by
    // validation with Kuma's wording instead of a serde message.
    let spec = if spec.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        spec
    };
    match serde_path_to_error::deserialize::<_, T>(spec) {
        Ok(spec) => out.push(std::sync::Arc::new(Res { meta, spec })),
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." {
                meta.spec_prefix().trim_end_matches('.').to_string()
            } else {
                format!("{}{}", meta.spec_prefix(), path)
            };
            violations.push(Violation::new(
                &meta.origin,
                Some(meta.display_name()),
                field,
                e.into_inner().to_string(),
            ));
        }
    }
}

fn read_header(mut map: Mapping) -> Result<Header, (&'static str, String)> {
    let is_kubernetes = map.contains_key("apiVersion") || map.contains_key("metadata");
    if is_kubernetes {
        let kind = take_string(&mut map, "kind").ok_or(("kind", "cannot be empty".into()))?;
        let metadata = match map.remove("metadata") {
            Some(Value::Mapping(m)) => m,
            _ => return Err(("metadata", "must be a mapping with a name".into())),
        };
        let name = metadata
            .get("name")
            .and_then(Value::as_str)
            .ok_or(("metadata.name", "cannot be empty".to_string()))?
            .to_string();
        let namespace = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let labels = string_map(metadata.get("labels"));
        let mesh = take_string(&mut map, "mesh")
            .or_else(|| labels.get("kuma.io/mesh").cloned())
            .unwrap_or_else(|| "default".to_string());
        let spec = if kind == "Secret" {
            // Kubernetes Secrets keep their payload at the top level, not under spec.
            let mut m = Mapping::new();
            if let Some(d) = map.remove("data") {
                m.insert("data".into(), d);
            }
            Value::Mapping(m)
        } else {
            map.remove("spec").unwrap_or(Value::Null)
        };
        return Ok(Header {
            kind,
            name,
            mesh,
            namespace,
            labels,
            form: Form::Kubernetes,
            spec,
        });
    }
    let kind = take_string(&mut map, "type").ok_or((
        "type",
        "cannot be empty (expected a Kuma resource with type/name/mesh, or apiVersion/kind/metadata)"
            .into(),
    ))?;
    let name = take_string(&mut map, "name").ok_or(("name", "cannot be empty".into()))?;
    let mesh = take_string(&mut map, "mesh").unwrap_or_else(|| "default".to_string());
    let labels = string_map(map.remove("labels").as_ref());
    // Bookkeeping fields that `kumactl get -o yaml` prints; not part of the spec.
    map.remove("creationTime");
    map.remove("modificationTime");
    let flat = Kind::parse(&kind).is_some_and(Kind::is_flat_in_universal);
    let spec = if flat {
        Value::Mapping(map)
    } else {
        map.remove("spec").unwrap_or(Value::Null)
    };
    Ok(Header {
        kind,
        name,
        mesh,
        namespace: None,
        labels,
        form: Form::Universal,
        spec,
    })
}

fn take_string(map: &mut Mapping, key: &str) -> Option<String> {
    match map.remove(key)? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Value::Mapping(m)) = v {
        for (k, v) in m {
            if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(files: &[(&str, &str)]) -> Loaded {
        let dir = std::env::temp_dir().join(format!(
            "meshgate-loader-test-{}-{}",
            std::process::id(),
            files
                .first()
                .map(|f| f.0.len() * 31 + f.1.len())
                .unwrap_or(0)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let l = load_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        l
    }

    #[test]
    fn universal_flat_and_spec_forms_decode() {
        let l = load_text(&[(
            "a.yaml",
            "type: MeshGateway\nname: gw\nmesh: default\nselectors:\n- match:\n    kuma.io/service: gw\nconf:\n  listeners:\n  - port: 8080\n    protocol: HTTP\n---\ntype: MeshHTTPRoute\nname: r\nmesh: default\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: gw\n",
        )]);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        assert_eq!(l.resources.gateways.len(), 1);
        assert_eq!(l.resources.http_routes.len(), 1);
        assert_eq!(l.resources.http_routes[0].meta.origin.document, 2);
    }

    #[test]
    fn kubernetes_form_takes_mesh_from_label() {
        let l = load_text(&[(
            "k.yml",
            "apiVersion: kuma.io/v1alpha1\nkind: MeshHTTPRoute\nmetadata:\n  name: r\n  namespace: kuma-system\n  labels:\n    kuma.io/mesh: other\nspec:\n  to: []\n",
        )]);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        let r = &l.resources.http_routes[0];
        assert_eq!(r.meta.mesh, "other");
        assert_eq!(r.meta.form, Form::Kubernetes);
        assert_eq!(r.meta.spec_prefix(), "spec.");
    }

    #[test]
    fn bad_yaml_reports_line_and_column() {
        let l = load_text(&[("broken.yaml", "type: MeshHTTPRoute\nspec: [this is: bad\n")]);
        assert_eq!(l.violations.len(), 1);
        let line = l.violations[0].to_string();
        assert!(line.starts_with("broken.yaml: document 1:"), "{line}");
        assert!(line.contains("line "), "{line}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let l = load_text(&[("empty.yaml", "# only a comment\n")]);
        assert_eq!(l.violations.len(), 1);
        assert!(l.violations[0].to_string().starts_with("empty.yaml: "));
    }

    #[test]
    fn type_errors_carry_kuma_field_paths() {
        let l = load_text(&[(
            "r.yaml",
            "type: MeshHTTPRoute\nname: r\nmesh: default\nspec:\n  to:\n  - rules:\n    - matches:\n      - path:\n          type: Exact\n          value: [1]\n",
        )]);
        assert_eq!(l.violations.len(), 1, "{:?}", l.violations);
        assert_eq!(
            l.violations[0].field.as_deref(),
            Some("spec.to[0].rules[0].matches[0].path.value")
        );
        assert_eq!(l.violations[0].resource.as_deref(), Some("MeshHTTPRoute/r"));
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("meshgate-loader-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_symlink_loop_is_an_error_naming_it() {
        let dir = temp_dir("loop");
        std::fs::create_dir_all(dir.join("sub")).expect("sub");
        std::os::unix::fs::symlink(&dir, dir.join("sub/back")).expect("symlink");
        let err = list_files(&dir).expect_err("a loop is refused");
        assert!(err.to_string().contains("sub/back: symlink loop"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dangling_policy_link_is_an_error_other_dangling_links_are_not_policies() {
        let dir = temp_dir("dangling");
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("notes.txt")).expect("symlink");
        assert!(list_files(&dir).is_ok());
        std::os::unix::fs::symlink(dir.join("gone.yaml"), dir.join("route.yaml")).expect("symlink");
        let err = list_files(&dir).expect_err("a broken policy file is refused");
        assert!(err.to_string().contains("route.yaml: cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_link_to_a_directory_reads_it_once() {
        let dir = temp_dir("twice");
        std::fs::create_dir_all(dir.join("real")).expect("real");
        std::fs::write(dir.join("real/a.yaml"), "x: 1\n").expect("write");
        std::os::unix::fs::symlink(dir.join("real"), dir.join("alias")).expect("symlink");
        let files = list_files(&dir).expect("readable");
        assert_eq!(files.len(), 1, "{files:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_kind_is_skipped_with_a_warning() {
        let l = load_text(&[(
            "x.yaml",
            "type: ZoneIngress\nname: p\nmesh: default\nspec: {}\n",
        )]);
        assert!(l.violations.is_empty());
        assert_eq!(l.resources.skipped.len(), 1);
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn kuma_kinds_meshgate_does_not_apply_are_kept_with_their_target() {
        let l = load_text(&[(
            "x.yaml",
            "type: MeshTrafficPermission\nname: p\nmesh: default\nspec:\n  targetRef: {kind: Mesh}\n  from: []\n",
        )]);
        assert!(l.violations.is_empty() && l.warnings.is_empty());
        assert_eq!(l.resources.not_applied.len(), 1);
        let p = &l.resources.not_applied[0];
        assert!(p.meta.kind.not_applied_reason().is_some());
        assert_eq!(
            p.spec.target_ref.as_ref().map(|t| t.kind.as_str()),
            Some("Mesh")
        );
    }
}
