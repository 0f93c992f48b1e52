//! Route tables carried from one build to the next.
//!
//! A reload usually changes one file of a large directory, yet compiling every hostname
//! group's table again was most of a 10,000-rule rebuild. A group's table is a function of
//! its merged rules (in order), the listener it serves, the Exact paths that suppress its
//! PathPrefix halves, and the rest of the directory its rules refer to: services,
//! dataplanes, timeouts, the gateway. The loader hands every build the very same `Arc`s for
//! the resources of unchanged files, so "unchanged" is pointer identity:
//! - the [`World`] (every resource except MeshHTTPRoutes, and the compile options) must be
//!   the same `Arc`s in the same order, or nothing is reused;
//! - a group's key names each of its rules by the addresses of the route data it borrows
//!   (matches, filters, backendRefs, route name), so a rule of a re-parsed file never equals
//!   one of the previous build.
//!
//! The cache keeps the previous build's routes alive, so an address in a key can only be
//! that resource's: a new resource cannot be allocated where a live one is.
//!
//! Tables whose backends were resolved through DNS are never reused: names are looked up
//! again on every applied change, as before this cache existed.

use super::backends::Backend;
use super::merge::MergedRule;
use super::route_table::RouteTable;
use super::{CompileOptions, Protocol};
use crate::resources::{ResourceSet, Shared};
use foldhash::HashMap;
use std::sync::Arc;

/// The previous successful build's tables, and what they were compiled against.
#[derive(Default)]
pub struct TableCache {
    world: Option<World>,
    tables: HashMap<TableKey, Arc<RouteTable>>,
    /// Warnings resolving each backend of those tables produced (replayed on reuse).
    warnings_by_key: std::collections::HashMap<String, Vec<String>>,
    /// Never read: holds the previous build's routes so the addresses its keys are made of
    /// stay theirs (a new resource cannot be allocated where a live one is).
    _routes: Vec<Shared<crate::resources::MeshHttpRoute>>,
}

impl TableCache {
    /// The tables a build of `set` may reuse: none when anything but the routes changed.
    pub(super) fn reusable_for(&self, world: &World) -> Option<&Self> {
        self.world
            .as_ref()
            .filter(|w| w.same_as(world))
            .map(|_| self)
    }

    pub(super) fn get(&self, key: &TableKey) -> Option<&Arc<RouteTable>> {
        self.tables.get(key)
    }

    pub(super) fn warnings_for(&self, backend: &Backend) -> &[String] {
        self.warnings_by_key
            .get(&backend.key)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The cache a successful build leaves for the next one: its tables, except those with
    /// a backend resolved through DNS.
    pub(super) fn after_build(
        world: World,
        set: &ResourceSet,
        tables: HashMap<TableKey, Arc<RouteTable>>,
        warnings_by_key: std::collections::HashMap<String, Vec<String>>,
        looked_up: &std::collections::HashSet<String>,
    ) -> TableCache {
        let tables = tables
            .into_iter()
            .filter(|(_, table)| {
                !table
                    .entries()
                    .iter()
                    .flat_map(|e| e.action.backends())
                    .any(|b| looked_up.contains(&b.key))
            })
            .collect();
        TableCache {
            world: Some(world),
            tables,
            warnings_by_key,
            _routes: set.http_routes.clone(),
        }
    }
}

/// Everything a route table can depend on besides its own rules.
pub(super) struct World {
    opts: CompileOptions,
    set: ResourceSet,
}

impl World {
    pub(super) fn of(set: &ResourceSet, opts: &CompileOptions) -> World {
        World {
            opts: opts.clone(),
            set: ResourceSet {
                http_routes: Vec::new(),
                skipped: Vec::new(),
                ..set.clone()
            },
        }
    }

    fn same_as(&self, other: &World) -> bool {
        fn same<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
        }
        let (a, b) = (&self.set, &other.set);
        self.opts == other.opts
            && same(&a.gateways, &b.gateways)
            && same(&a.tcp_routes, &b.tcp_routes)
            && same(&a.dataplanes, &b.dataplanes)
            && same(&a.mesh_services, &b.mesh_services)
            && same(&a.external_services, &b.external_services)
            && same(&a.timeouts, &b.timeouts)
            && same(&a.secrets, &b.secrets)
    }
}

/// A hostname group's table, as identified across builds.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct TableKey {
    port: u16,
    protocol: Protocol,
    listener_hostname: String,
    group: String,
    suppressed: Vec<String>,
    rules: Vec<RuleIdentity>,
}

/// A merged rule by the addresses (and lengths) of what it borrows from its routes.
#[derive(PartialEq, Eq, Hash)]
struct RuleIdentity {
    matches: (usize, usize),
    filters: Option<(usize, usize)>,
    backend_refs: Option<(usize, usize)>,
    route_name: (usize, usize),
}

fn slice_id<T>(s: &[T]) -> (usize, usize) {
    (s.as_ptr() as usize, s.len())
}

impl TableKey {
    pub(super) fn new(
        listener: &super::ListenerInfo,
        group: &str,
        suppressed: &[String],
        rules: &[MergedRule],
    ) -> TableKey {
        TableKey {
            port: listener.port,
            protocol: listener.protocol,
            listener_hostname: listener.hostname.clone(),
            group: group.to_string(),
            suppressed: suppressed.to_vec(),
            rules: rules
                .iter()
                .map(|r| RuleIdentity {
                    matches: slice_id(r.matches),
                    filters: r.conf.filters.map(slice_id),
                    backend_refs: r.conf.backend_refs.map(slice_id),
                    route_name: slice_id(r.route_name.as_bytes()),
                })
                .collect(),
        }
    }
}
