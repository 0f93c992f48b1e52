//! Policy files → [`Snapshot`] (semantics Appendix C, "configuration build").
//!
//! [`Compiler::build`] is the whole build: each file is loaded and validated
//! ([`crate::resources`], [`crate::validate`]), then the valid resources are compiled, one job
//! per module:
//! 1. [`listeners`]: pick the MeshGateway and its builtin gateway Dataplane; compute each
//!    listener's effective tags; attach routes by `targetRef {kind: MeshGateway, name, tags}`;
//! 2. [`merge`]: per listener, merge the attached routes' rules (§4.7);
//! 3. [`vhosts`]: per HTTP(S) port, virtual hosts from listener hostnames most exact first,
//!    with Kuma's hostname intersection, generic fall-through and listener isolation (§3.5);
//! 4. [`rules`]: expand rules into entries (PathPrefix → `/p/` prefix + `/p` exact, §4.1),
//!    with conditions and rewrites specialised per entry; [`actions`]: filters and backends
//!    into what an entry does; [`policies`]: the Kuma policies of each port, rule and
//!    destination (timeouts, retries, rate limits, fault injection);
//! 5. [`backends`]: resolve backend references to endpoints (DNS names looked up here);
//!    [`certs`]: read and parse certificates; [`tcp`]: TCP and TLS ports.
//!
//! The [`Compiler`] owns what one build leaves for the next ([`reuse`]), so a reload that
//! changes one file of a large directory parses one file and compiles only the route tables
//! that change.

mod actions;
mod backends;
mod certs;
mod listeners;
mod merge;
mod policies;
mod reuse;
mod rules;
mod tcp;
mod vhosts;

pub use backends::UNRESOLVED_BACKEND;
pub use policies::ListenerDefaults;

use crate::model::{Gateway, Protocol, Valid, ValidSet};
use crate::resources::loader::{content_hash, load_text};
use crate::runtime::registry::Registry;
use crate::snapshot::{Liveness, Port, Snapshot};
use crate::validate::validate;
use crate::violation::Violation;
use listeners::PlannedListener;
use reuse::{
    CachedFile, CachedVhost, FileCache, RegexCache, TableCache, TableKey, VhostKey, World,
};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// `--gateway NAME`; `None` = the only MeshGateway in the directory.
    pub gateway: Option<String>,
    /// Base for relative certificate `file` paths.
    pub policy_dir: PathBuf,
    /// Listener timeouts where no MeshTimeout sets them (meshgate's flags).
    pub listener_defaults: ListenerDefaults,
    /// The snapshot is only checked, never served (`--check`, `publish`): route regexes are
    /// compiled as far as their validity needs, not into the DFAs requests would run.
    pub check_only: bool,
}

/// One policy file as the source holds it: its name (relative to the policy directory, or
/// the etcd key under the prefix) and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: SourceText,
}

#[derive(Debug, Clone)]
pub enum SourceText {
    Read(String),
    /// Why the file could not be read.
    Unreadable(String),
    /// The same text as when this compiler last built the file, known to the source without
    /// reading it again; the compiler's copy has this content hash ([`Compiler::holds`]).
    Unchanged {
        content_hash: u64,
    },
}

impl SourceText {
    /// The text, or why there is none here.
    pub fn as_text(&self) -> Result<&str, String> {
        match self {
            SourceText::Read(text) => Ok(text),
            SourceText::Unreadable(e) => Err(e.clone()),
            SourceText::Unchanged { .. } => Err("not read again (unchanged)".to_string()),
        }
    }
}

impl From<Result<String, String>> for SourceText {
    fn from(read: Result<String, String>) -> Self {
        match read {
            Ok(text) => SourceText::Read(text),
            Err(e) => SourceText::Unreadable(e),
        }
    }
}

pub struct Built {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
    /// Hash of every file's name and content: equal fingerprints mean nothing changed, so a
    /// touch or a no-op rewrite does not create a new generation.
    pub fingerprint: u64,
    pub took: Duration,
}

pub struct Rejected {
    pub violations: Vec<Violation>,
    pub fingerprint: u64,
}

/// Builds snapshots, keeping what a later build can reuse.
pub struct Compiler {
    opts: CompileOptions,
    files: FileCache,
    tables: TableCache,
    regexes: RegexCache,
    /// Run-time state the snapshots share across builds (rate-limit buckets).
    registry: Arc<Registry>,
}

impl Compiler {
    pub fn new(opts: CompileOptions) -> Self {
        Self::with_registry(opts, Arc::default())
    }

    /// A compiler whose snapshots keep their run-time state in `registry` (which may outlive
    /// the compiler: the builder thread is started anew after `-d` forks).
    pub fn with_registry(opts: CompileOptions, registry: Arc<Registry>) -> Self {
        Compiler {
            regexes: RegexCache::new(opts.check_only),
            opts,
            files: FileCache::default(),
            tables: TableCache::default(),
            registry,
        }
    }

    pub fn options(&self) -> &CompileOptions {
        &self.opts
    }

    /// Whether this compiler holds the build of file `name` with the text hashing to
    /// `content_hash` (so a source may pass it as [`SourceText::Unchanged`]).
    pub fn holds(&self, name: &str, content_hash: u64) -> bool {
        self.files.get(name, content_hash).is_some()
    }

    /// Loads, validates and compiles `files` into the snapshot of `generation`. Every
    /// problem is reported, not just the first; a rejected build leaves the caches as the
    /// last successful one left them, except for the per-file results.
    pub fn build(&mut self, files: &[SourceFile], generation: u64) -> Result<Built, Rejected> {
        let started = Instant::now();
        let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
        let mut valid = ValidSet::default();
        let mut violations = Vec::new();
        let mut warnings = Vec::new();
        let mut present = foldhash::HashSet::default();
        let mut reparsed = 0usize;
        for file in files {
            file.name.hash(&mut fingerprint);
            let text = match &file.text {
                SourceText::Read(text) => text,
                SourceText::Unreadable(e) => {
                    violations.push(Violation::file(&file.name, e.clone()));
                    continue;
                }
                SourceText::Unchanged { content_hash } => {
                    content_hash.hash(&mut fingerprint);
                    present.insert(file.name.as_str());
                    let Some(cached) = self.files.get(&file.name, *content_hash) else {
                        // A source only says so of files this compiler holds.
                        violations.push(Violation::file(
                            &file.name,
                            "the file was not read (internal error); send SIGHUP to re-read \
                             every file"
                                .to_string(),
                        ));
                        continue;
                    };
                    valid.append(cached.valid.clone());
                    violations.extend(cached.violations.iter().cloned());
                    warnings.extend(cached.warnings.iter().cloned());
                    continue;
                }
            };
            let hash = content_hash(text);
            hash.hash(&mut fingerprint);
            present.insert(file.name.as_str());
            let fresh = || {
                let loaded = load_text(&file.name, text);
                let validated = validate(&loaded.resources);
                let mut problems = loaded.violations;
                problems.extend(validated.violations);
                let mut warnings = loaded.warnings;
                warnings.extend(validated.warnings);
                CachedFile {
                    content_hash: hash,
                    valid: validated.valid,
                    violations: problems,
                    warnings,
                }
            };
            let cached = self
                .files
                .get_or_build(&file.name, hash, fresh, &mut reparsed);
            valid.append(cached.valid.clone());
            violations.extend(cached.violations.iter().cloned());
            warnings.extend(cached.warnings.iter().cloned());
        }
        self.files.retain(&present);
        violations.extend(valid.duplicates());
        let fingerprint = fingerprint.finish();
        log::debug!(
            "policies: {} files ({reparsed} parsed) loaded and validated in {:.1} ms",
            files.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        if !violations.is_empty() {
            return Err(Rejected {
                violations,
                fingerprint,
            });
        }
        match self.compile(&valid, generation) {
            Ok((snapshot, more)) => {
                warnings.extend(more);
                Ok(Built {
                    snapshot,
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

    /// Compiles validated resources, reusing the route tables of the previous successful
    /// build where nothing they depend on changed.
    pub fn compile(
        &mut self,
        set: &ValidSet,
        generation: u64,
    ) -> Result<(Snapshot, Vec<String>), Vec<Violation>> {
        let world = World::of(set, &self.opts);
        let gateway = listeners::select_gateway(set, self.opts.gateway.as_deref())?;
        self.regexes.begin();
        let dataplane_tags = listeners::gateway_dataplane_tags(set, gateway);
        let identity = listeners::identity(gateway, &dataplane_tags);
        let mut build = Build {
            set,
            opts: &self.opts,
            registry: &self.registry,
            gateway,
            identity: identity.clone(),
            resolver: backends::Resolver::new(
                set,
                &gateway.meta.mesh,
                &self.opts.policy_dir,
                &*self.registry,
            ),
            violations: Vec::new(),
            route_entries: 0,
            regexes: &mut self.regexes,
            previous: self.tables.reusable_in(world),
            tables: foldhash::HashMap::default(),
            vhosts: foldhash::HashMap::default(),
            actions: foldhash::HashMap::default(),
            route_names: foldhash::HashMap::default(),
            reused_tables: 0,
        };
        let planned = listeners::plan(gateway, &dataplane_tags);
        let ports = build.ports(&planned);
        let result = if build.violations.is_empty() {
            log::debug!(
                "route tables: {} compiled, {} reused from the previous build",
                build.tables.len() - build.reused_tables,
                build.reused_tables
            );
            let backends = build.resolver.backends().cloned().collect();
            let mut warnings = std::mem::take(&mut build.resolver.warnings);
            warnings.extend(policies::warnings(set));
            let next = TableCache::after_build(
                world,
                std::mem::take(&mut build.tables),
                std::mem::take(&mut build.vhosts),
                std::mem::take(&mut build.resolver.warnings_by_key),
                &build.resolver.looked_up,
            );
            let snapshot = Snapshot {
                generation,
                gateway: identity,
                ports,
                route_entries: build.route_entries,
                backends,
                alive: Liveness::new(),
            };
            Ok((snapshot, warnings, next))
        } else {
            Err(std::mem::take(&mut build.violations))
        };
        drop(build);
        self.regexes.end();
        let (snapshot, warnings, next) = result?;
        self.tables = next;
        Ok((snapshot, warnings))
    }

    #[cfg(test)]
    fn cached_file_hash(&self, name: &str) -> Option<u64> {
        self.files.content_hash(name)
    }
}

/// One compilation in progress: what it reads and what it has made so far. Its methods live
/// in the modules of their jobs ([`vhosts`], [`tcp`]).
struct Build<'a> {
    set: &'a ValidSet,
    opts: &'a CompileOptions,
    registry: &'a Registry,
    gateway: &'a Valid<Gateway>,
    /// The gateway's mesh identity (spans' service name, access log values).
    identity: crate::snapshot::GatewayIdentity,
    resolver: backends::Resolver<'a>,
    violations: Vec<Violation>,
    route_entries: usize,
    regexes: &'a mut RegexCache,
    /// The previous build's tables, when everything but the routes is unchanged.
    previous: Option<&'a TableCache>,
    /// The tables this build uses, compiled or reused: the next build's cache.
    tables: foldhash::HashMap<TableKey, reuse::CachedTable>,
    /// The virtual hosts this build made or reused: the next build's cache.
    vhosts: foldhash::HashMap<VhostKey, CachedVhost>,
    /// Actions shared by the rules written alike ([`vhosts::ActionKey`]).
    actions: foldhash::HashMap<vhosts::ActionKey<'a>, Arc<crate::snapshot::action::Action>>,
    /// One name per route, shared by its entries.
    route_names: foldhash::HashMap<&'a str, Arc<str>>,
    reused_tables: usize,
}

impl<'a> Build<'a> {
    /// Everything served per port (Kuma collapses same-port listeners into one socket).
    fn ports(&mut self, planned: &'a [PlannedListener<'a>]) -> foldhash::HashMap<u16, Arc<Port>> {
        let mut by_port: BTreeMap<u16, Vec<&PlannedListener>> = BTreeMap::new();
        for l in planned {
            by_port.entry(l.info.port).or_default().push(l);
        }
        let mut ports = foldhash::HashMap::default();
        for (port, mut ls) in by_port {
            // Most exact hostname first: the order Kuma processes listener hostnames in.
            ls.sort_by(|a, b| {
                crate::snapshot::hostname::exactness(&a.info.hostname, &b.info.hostname)
            });
            let protocol = ls[0].info.protocol;
            let connection_limit = ls.iter().filter_map(|l| l.spec.connection_limit).max();
            let tags: Vec<&crate::resources::common::Tags> = ls.iter().map(|l| &l.tags).collect();
            let mut scope = policies::PortScope::new(
                &self.set.policies,
                &self.gateway.meta,
                port,
                protocol,
                &tags,
                self.opts.listener_defaults,
            );
            let policy = Arc::new(scope.port_policy(self.registry, &self.identity));
            let serving = match protocol {
                Protocol::Http => self.http_port(&ls, &mut scope),
                Protocol::Https => self.https_port(&ls, &mut scope),
                Protocol::Tcp => self.tcp_port(&ls, &mut scope),
                Protocol::Tls => self.tls_port(&ls, &mut scope),
            };
            ports.insert(
                port,
                Arc::new(Port {
                    port,
                    label: port.to_string(),
                    protocol,
                    connection_limit,
                    policy,
                    serving,
                }),
            );
        }
        ports
    }
}
#[cfg(test)]
mod tests;
