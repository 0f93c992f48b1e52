//! A route table's exact-path index: request path → the entries with that exact path, in
//! precedence order, without a copy of the path.
//!
//! The index holds entry positions only and compares a request path against the first
//! entry's own path value. A `HashMap<String, Vec<u32>>` kept a second copy of every path
//! and a list per path: at 100,000 rules (a PathPrefix rule adds an exact path too) that was
//! ~15 MB of the snapshot, against 2.5 MB here (heaptrack). A lookup hashes the path
//! and compares it once, as the map did; the entry it reads is the one it goes on to check
//! the conditions of.

use super::matchers::PathKind;
use super::route_table::RouteEntry;
use foldhash::fast::RandomState;
use foldhash::HashMap;
use hashbrown::HashTable;
use std::hash::BuildHasher;

#[derive(Debug, Default)]
pub struct ExactPaths {
    /// Seeded per table: the paths come from policies, which a tenant may write.
    hasher: RandomState,
    slots: HashTable<Slot>,
    /// The entries after each path's first, path by path (most paths have one entry).
    more: Box<[u32]>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The path's first entry in precedence order; its path value is the key.
    first: u32,
    /// `more[more_start..][..more_len]`: its other entries, in precedence order.
    more_start: u32,
    more_len: u32,
}

impl ExactPaths {
    /// Indexes the exact-path entries of `entries` (in precedence order).
    pub fn new(entries: &[RouteEntry]) -> ExactPaths {
        let exact = |e: &&RouteEntry| e.path.kind == PathKind::Exact;
        // Grouped through a map borrowing the paths (freed on return); `order` keeps the
        // first-seen order so equal inputs give equal layouts.
        let mut groups: HashMap<&str, Vec<u32>> = HashMap::default();
        let mut order: Vec<&str> = Vec::new();
        for (i, e) in entries.iter().enumerate().filter(|(_, e)| exact(e)) {
            let ids = groups.entry(e.path.value.as_str()).or_insert_with(|| {
                order.push(e.path.value.as_str());
                Vec::new()
            });
            ids.push(i as u32);
        }
        let hasher = RandomState::default();
        let mut slots = HashTable::with_capacity(order.len());
        let mut more = Vec::with_capacity(groups.values().map(|ids| ids.len() - 1).sum());
        for path in order {
            let Some((&first, rest)) = groups.get(path).and_then(|ids| ids.split_first()) else {
                continue;
            };
            let slot = Slot {
                first,
                more_start: more.len() as u32,
                more_len: rest.len() as u32,
            };
            more.extend_from_slice(rest);
            let first_path = |s: &Slot| hasher.hash_one(path_of(entries, s.first));
            slots.insert_unique(hasher.hash_one(path), slot, first_path);
        }
        ExactPaths {
            hasher,
            slots,
            more: more.into_boxed_slice(),
        }
    }

    /// The entries whose exact path is `path`, in precedence order (`entries` is the list
    /// the index was built from).
    pub fn get<'t>(
        &'t self,
        entries: &[RouteEntry],
        path: &str,
    ) -> Option<impl Iterator<Item = u32> + 't> {
        let hash = self.hasher.hash_one(path);
        let slot = self
            .slots
            .find(hash, |s| path_of(entries, s.first) == path)?;
        let more = self
            .more
            .get(slot.more_start as usize..)
            .and_then(|m| m.get(..slot.more_len as usize))
            .unwrap_or_default();
        Some(std::iter::once(slot.first).chain(more.iter().copied()))
    }
}

fn path_of(entries: &[RouteEntry], i: u32) -> &str {
    entries
        .get(i as usize)
        .map_or("", |e| e.path.value.as_str())
}
