//! What one build leaves for the next, all keyed by content (never by memory address):
//! - [`FileCache`]: each policy file's resources, validated and lowered, kept while the file's
//!   text is unchanged (YAML decoding dominates a large directory's rebuild, and Kuma's rules
//!   look at one resource at a time, so a file's problems depend on its text alone);
//! - [`TableCache`]: the route tables of hostname groups whose rules, listener and everything
//!   they refer to are unchanged (compiling every group's table again was most of a
//!   10,000-rule rebuild);
//! - [`RegexCache`]: compiled route regexes by pattern (tens of microseconds and tens of
//!   kilobytes each; a directory repeats patterns and a reload changes few).

use crate::model::{Protocol, SourceId, ValidSet};
use crate::snapshot::backends::Backend;
use crate::snapshot::regex::{checked_regex, Regex, RegexCompiler};
use crate::snapshot::route_table::RouteTable;
use crate::snapshot::{ListenerInfo, VirtualHost};
use crate::violation::Violation;
use foldhash::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One file's build products, kept while its text is unchanged.
pub struct CachedFile {
    pub content_hash: u64,
    pub valid: ValidSet,
    /// Load and validation problems, in document order.
    pub violations: Vec<Violation>,
    pub warnings: Vec<String>,
}

#[derive(Default)]
pub struct FileCache {
    files: HashMap<String, CachedFile>,
}

impl FileCache {
    /// The cached build of `name` if its text still hashes to `content_hash`, else the one
    /// `fresh` makes (which replaces it). `reparsed` counts the files made fresh.
    pub fn get_or_build(
        &mut self,
        name: &str,
        content_hash: u64,
        fresh: impl FnOnce() -> CachedFile,
        reparsed: &mut usize,
    ) -> &CachedFile {
        let stale = self
            .files
            .get(name)
            .is_none_or(|f| f.content_hash != content_hash);
        if stale {
            *reparsed += 1;
            self.files.insert(name.to_string(), fresh());
        }
        // Present: inserted just above when it was not.
        &self.files[name]
    }

    /// The build of `name` if its text hashes to `content_hash`.
    pub fn get(&self, name: &str, content_hash: u64) -> Option<&CachedFile> {
        self.files
            .get(name)
            .filter(|f| f.content_hash == content_hash)
    }

    /// Forgets files that are no longer in the source.
    pub fn retain(&mut self, present: &HashSet<&str>) {
        self.files.retain(|name, _| present.contains(name.as_str()));
    }

    #[cfg(test)]
    pub fn content_hash(&self, name: &str) -> Option<u64> {
        self.files.get(name).map(|f| f.content_hash)
    }
}

/// Everything a route table can depend on besides its own rules: every resource that is
/// not a MeshHTTPRoute (by content) and the compile options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct World(u64);

impl World {
    pub fn of(set: &ValidSet, opts: &super::CompileOptions) -> World {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        opts.hash(&mut h);
        let ids = set
            .gateways
            .iter()
            .map(|r| SourceId::of(&r.meta))
            .chain(set.tcp_routes.iter().map(|r| SourceId::of(&r.meta)))
            .chain(set.dataplanes.iter().map(|r| SourceId::of(&r.meta)))
            .chain(set.mesh_services.iter().map(|r| SourceId::of(&r.meta)))
            .chain(set.external_services.iter().map(|r| SourceId::of(&r.meta)))
            .chain(set.secrets.iter().map(|r| SourceId::of(&r.meta)))
            .chain(set.policies.metas().map(SourceId::of));
        for id in ids {
            id.hash(&mut h);
        }
        World(h.finish())
    }
}

/// A hostname group's table, as identified across builds: its listener and group, and a
/// 128-bit digest of the group's `to[]` entries ([`super::merge::Group::digest`]) and the
/// PathPrefix values suppressed in it. Two tables with different rules share a digest with
/// probability 2^-128; holding the rule list itself cost 17 MB at 100,000 rules (heaptrack).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TableKey {
    port: u16,
    protocol: Protocol,
    listener_hostname: String,
    group: String,
    content: u128,
}

pub type RulePos = (SourceId, usize, usize);

impl TableKey {
    pub fn new(
        listener: &ListenerInfo,
        group: &str,
        suppressed: &[String],
        group_digest: u128,
    ) -> TableKey {
        let mut bytes: Vec<u8> = Vec::with_capacity(24 + suppressed.len() * 24);
        bytes.extend_from_slice(&group_digest.to_le_bytes());
        bytes.extend_from_slice(&(suppressed.len() as u64).to_le_bytes());
        for path in suppressed {
            bytes.extend_from_slice(&(path.len() as u64).to_le_bytes());
            bytes.extend_from_slice(path.as_bytes());
        }
        TableKey {
            port: listener.port,
            protocol: listener.protocol,
            listener_hostname: listener.hostname.clone(),
            group: group.to_string(),
            content: digest128(&bytes),
        }
    }
}

/// A virtual host as identified across builds: its listener, its name and the groups it
/// selects, each by name and digest. Which of a group's PathPrefix values the virtual host
/// suppresses is a function of these, so an equal key means equal tables. A one-file change
/// touches a few of the hundreds of virtual hosts of a large directory; the others are taken
/// whole, without collecting their groups' paths.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VhostKey {
    port: u16,
    protocol: Protocol,
    listener_hostname: String,
    name: String,
    groups: u128,
}

impl VhostKey {
    pub fn new<'g>(
        listener: &ListenerInfo,
        name: &str,
        groups: impl Iterator<Item = (&'g str, u128)>,
    ) -> VhostKey {
        let mut bytes: Vec<u8> = Vec::with_capacity(128);
        for (group, digest) in groups {
            bytes.extend_from_slice(&(group.len() as u64).to_le_bytes());
            bytes.extend_from_slice(group.as_bytes());
            bytes.extend_from_slice(&digest.to_le_bytes());
        }
        VhostKey {
            port: listener.port,
            protocol: listener.protocol,
            listener_hostname: listener.hostname.clone(),
            name: name.to_string(),
            groups: digest128(&bytes),
        }
    }
}

/// A virtual host and the keys of the tables it holds.
pub struct CachedVhost {
    pub vhost: Arc<VirtualHost>,
    pub tables: Vec<TableKey>,
}

/// Two xxHash64 passes with different seeds.
pub fn digest128(bytes: &[u8]) -> u128 {
    let low = twox_hash::XxHash64::oneshot(0, bytes);
    let high = twox_hash::XxHash64::oneshot(0x9e37_79b9_7f4a_7c15, bytes);
    (u128::from(high) << 64) | u128::from(low)
}

/// A compiled route table and the distinct backends its entries send to. A build that
/// reuses the table takes these backends in without walking the entries again: at 100,000
/// rules, adopting every entry's backend (two clones and a hash each) was a third of a
/// one-file rebuild.
#[derive(Clone)]
pub struct CachedTable {
    pub table: Arc<RouteTable>,
    pub backends: Arc<[Arc<Backend>]>,
}

impl CachedTable {
    pub fn new(table: Arc<RouteTable>) -> Self {
        let mut seen: HashSet<*const Backend> = HashSet::default();
        let backends: Vec<Arc<Backend>> = table
            .entries()
            .iter()
            .flat_map(|e| e.action.backends())
            .filter(|b| seen.insert(Arc::as_ptr(b)))
            .cloned()
            .collect();
        CachedTable {
            table,
            backends: backends.into(),
        }
    }
}

/// The previous successful build's tables, and what they were compiled against.
#[derive(Default)]
pub struct TableCache {
    world: Option<World>,
    tables: HashMap<TableKey, CachedTable>,
    vhosts: HashMap<VhostKey, CachedVhost>,
    /// Warnings resolving each backend of those tables produced (repeated on reuse).
    warnings_by_key: HashMap<String, Vec<String>>,
}

impl TableCache {
    /// The tables a build in `world` may reuse: none when anything but the routes changed.
    pub fn reusable_in(&self, world: World) -> Option<&Self> {
        (self.world == Some(world)).then_some(self)
    }

    pub fn get(&self, key: &TableKey) -> Option<&CachedTable> {
        self.tables.get(key)
    }

    pub fn vhost(&self, key: &VhostKey) -> Option<&CachedVhost> {
        self.vhosts.get(key)
    }

    pub fn warnings_for(&self, backend: &Backend) -> &[String] {
        self.warnings_by_key
            .get(&backend.key)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The cache a successful build leaves for the next one: its tables, except those with a
    /// backend resolved through DNS (names are looked up again on every applied change).
    pub fn after_build(
        world: World,
        tables: HashMap<TableKey, CachedTable>,
        vhosts: HashMap<VhostKey, CachedVhost>,
        warnings_by_key: HashMap<String, Vec<String>>,
        looked_up: &HashSet<String>,
    ) -> TableCache {
        let tables: HashMap<TableKey, CachedTable> = tables
            .into_iter()
            .filter(|(_, cached)| !cached.backends.iter().any(|b| looked_up.contains(&b.key)))
            .collect();
        // A virtual host is taken whole only while every table it holds could be reused.
        let vhosts = vhosts
            .into_iter()
            .filter(|(_, v)| v.tables.iter().all(|k| tables.contains_key(k)))
            .collect();
        TableCache {
            world: Some(world),
            tables,
            vhosts,
            warnings_by_key,
        }
    }
}

/// Compiled route regexes by pattern, shared by every matcher of a snapshot that uses one
/// and handed to the next build.
#[derive(Default)]
pub struct RegexCache {
    /// Pattern → compiled full-match regex and the build that last used it.
    compiled: HashMap<Box<str>, (Arc<Regex>, u64)>,
    builds: u64,
    check_only: bool,
    compiler: RegexCompiler,
}

impl RegexCache {
    /// `check_only`: the patterns are compiled only as far as their validity needs (see
    /// [`crate::snapshot::regex::checked_regex`]).
    pub fn new(check_only: bool) -> Self {
        RegexCache {
            check_only,
            ..Default::default()
        }
    }

    /// Starts a build's use of the cache.
    pub fn begin(&mut self) {
        self.builds += 1;
    }

    /// `pattern` anchored to match the whole subject, as Envoy's `safe_regex` does.
    pub fn full_match(&mut self, pattern: &str) -> Result<Arc<Regex>, String> {
        let build = self.builds;
        if let Some((re, used)) = self.compiled.get_mut(pattern) {
            *used = build;
            return Ok(re.clone());
        }
        let re = Arc::new(if self.check_only {
            checked_regex(pattern)?
        } else {
            self.compiler.full_match(pattern)?
        });
        self.compiled.insert(pattern.into(), (re.clone(), build));
        Ok(re)
    }

    /// Ends a build: forgets the patterns it did not use, unless a table outside the cache
    /// still holds them (a table a reload reused without compiling it: compiling its
    /// patterns anew when its group changes would cost time and duplicate them).
    pub fn end(&mut self) {
        let build = self.builds;
        self.compiled
            .retain(|_, (re, used)| *used == build || Arc::strong_count(re) > 1);
        self.compiler.forget_unused();
    }

    #[cfg(test)]
    pub fn holds(&self, pattern: &str) -> bool {
        self.compiled.contains_key(pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_compiled_once_per_build_and_kept_for_the_next() {
        let mut cache = RegexCache::default();
        let pattern = "/regex-cache-test/[0-9]+";
        cache.begin();
        let a = cache.full_match(pattern).expect("valid");
        let b = cache.full_match(pattern).expect("valid");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.is_match("/regex-cache-test/12"));
        assert!(!a.is_match("/regex-cache-test/12/x"));
        cache.end();
        cache.begin();
        let c = cache.full_match(pattern).expect("valid");
        assert!(
            Arc::ptr_eq(&a, &c),
            "the next build reuses the compiled regex"
        );
        assert!(cache.full_match("(").is_err());
    }

    #[test]
    fn a_pattern_no_build_uses_stays_only_while_something_holds_it() {
        let mut cache = RegexCache::default();
        let (held, dropped) = ("/regex-cache-held/[0-9]+", "/regex-cache-dropped/[0-9]+");
        cache.begin();
        let kept = cache.full_match(held).expect("valid");
        drop(cache.full_match(dropped).expect("valid"));
        cache.end();
        // A build that uses neither (a reload that reused the table holding `kept`).
        cache.begin();
        cache.end();
        assert!(!cache.holds(dropped), "a pattern nothing holds is dropped");
        cache.begin();
        assert!(
            Arc::ptr_eq(&kept, &cache.full_match(held).expect("valid")),
            "a pattern a live table holds is not compiled again"
        );
    }
}
