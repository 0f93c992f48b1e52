//! The state shared by the proxy, the listeners, the reloader and the admin endpoint.

use crate::config::Settings;
use crate::snapshot::Snapshot;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which ports are bound, and why the others are not.
#[derive(Debug, Default, Clone)]
pub struct ListenerStatus {
    pub bound: BTreeSet<u16>,
    pub errors: BTreeMap<u16, String>,
}

pub struct GatewayState {
    /// The active snapshot. Readers take one `load_full()` per request/connection.
    pub snapshot: ArcSwap<Snapshot>,
    /// Why the latest change was rejected; cleared by the next applied change.
    pub last_error: ArcSwapOption<String>,
    pub listeners: ArcSwap<ListenerStatus>,
    /// Bumped (with the new generation) whenever a snapshot is applied, so the listener
    /// manager re-plans its ports at once.
    pub changes: tokio::sync::watch::Sender<u64>,
    /// Set once the process is draining (upgrade or shutdown): responses then carry
    /// `Connection: close` so keep-alive clients move to the new process in time. Set only
    /// through [`crate::runtime::drain::start`].
    draining: AtomicBool,
    pub settings: Settings,
    /// Where the policies come from: the directory (watched), or an etcd prefix.
    pub source: PolicySource,
}

/// The policy source a process serves from.
pub enum PolicySource {
    Dir(PathBuf),
    Etcd(Arc<crate::runtime::etcd::EtcdStatus>),
}

impl PolicySource {
    /// `/config`'s description of the source.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            PolicySource::Dir(dir) => serde_json::json!({
                "kind": "directory",
                "path": dir.display().to_string(),
            }),
            PolicySource::Etcd(etcd) => etcd.describe(),
        }
    }

    /// How the source is degraded while serving goes on (etcd unreachable), for `/ready`.
    pub fn degraded(&self) -> Option<String> {
        match self {
            PolicySource::Dir(_) => None,
            PolicySource::Etcd(etcd) => etcd.degraded(),
        }
    }
}

impl GatewayState {
    pub fn new(first: Snapshot, settings: Settings, source: PolicySource) -> Arc<Self> {
        let generation = first.generation;
        let (changes, _) = tokio::sync::watch::channel(generation);
        Arc::new(GatewayState {
            snapshot: ArcSwap::from_pointee(first),
            last_error: ArcSwapOption::empty(),
            listeners: ArcSwap::from_pointee(ListenerStatus::default()),
            changes,
            draining: AtomicBool::new(false),
            settings,
            source,
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks the process as draining; `true` if it was not already.
    pub(super) fn set_draining(&self) -> bool {
        !self.draining.swap(true, Ordering::Relaxed)
    }

    /// Ready = a snapshot is serving and every port it asks for is bound.
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("draining".to_string());
        }
        let snap = self.snapshot.load();
        let status = self.listeners.load();
        let mut missing = Vec::new();
        for port in snap.port_numbers() {
            if !status.bound.contains(&port) {
                match status.errors.get(&port) {
                    Some(e) => missing.push(format!("port {port}: {e}")),
                    None => missing.push(format!("port {port}: not bound yet")),
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }
}
