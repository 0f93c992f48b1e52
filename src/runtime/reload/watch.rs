//! Watching the policy directory (see [`PolicyWatcher`]).

use super::apply::Applier;
use super::builder::{Input, PolicyBuilder};
use crate::resources::loader::policy_files;
use crate::runtime::state::GatewayState;
use async_trait::async_trait;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes that arrive closer together than this are applied together. A rename into the
/// directory is one event; an editor's truncate-then-write and a tool writing several files
/// (git checkout, rsync, a ConfigMap update) come well within 25 ms of each other. Every
/// change waits this long before its build starts, so it is a floor under how soon a change
/// serves (100 ms was most of a one-file change at 10,000 rules).
const DEBOUNCE: Duration = Duration::from_millis(25);
/// Upper bound on waiting for writes to settle, so a constantly-written directory still
/// reloads.
const MAX_SETTLE: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub struct PolicyWatcher {
    state: Arc<GatewayState>,
    dir: std::path::PathBuf,
    /// Fingerprint of the directory the first snapshot was built from.
    initial_fingerprint: u64,
    /// The thread that built the first snapshot (and holds its per-file cache).
    builder: PolicyBuilder,
}

impl PolicyWatcher {
    pub fn new(
        state: Arc<GatewayState>,
        dir: std::path::PathBuf,
        initial_fingerprint: u64,
        builder: PolicyBuilder,
    ) -> Self {
        PolicyWatcher {
            state,
            dir,
            initial_fingerprint,
            builder,
        }
    }
}

/// Cheap change detection: names, sizes, modification times and inodes of the policy files.
fn stat_fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (rel, path) in policy_files(dir) {
        rel.hash(&mut h);
        if let Ok(m) = std::fs::metadata(&path) {
            (m.len(), m.mtime(), m.mtime_nsec(), m.ino()).hash(&mut h);
        }
    }
    h.finish()
}

#[async_trait]
impl BackgroundService for PolicyWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let dir = self.dir.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reading the files (our own rebuild included) produces access events; only
            // changes matter, or every rebuild would trigger the next one.
            if let Ok(ev) = res {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(());
                }
            }
        });
        match &mut watcher {
            Ok(w) => {
                use notify::Watcher;
                if let Err(e) = w.watch(&dir, notify::RecursiveMode::Recursive) {
                    warn!("cannot watch {}: {e}; relying on polling", dir.display());
                }
            }
            Err(e) => warn!("file watching unavailable ({e}); relying on polling"),
        }
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut applier = Applier {
            state: &self.state,
            builder: &self.builder,
            last_fingerprint: self.initial_fingerprint,
            last_rejected: false,
        };
        let mut last_stat = stat_fingerprint(&dir);
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hup = tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        crate::runtime::drain::start(&self.state, "shutdown");
                        break;
                    }
                    continue;
                }
                Some(()) = rx.recv() => false,
                _ = poll.tick() => {
                    let now = stat_fingerprint(&dir);
                    if now == last_stat {
                        continue;
                    }
                    false
                }
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    info!("SIGHUP: re-reading policies");
                    true
                }
            };
            // Let the burst of writes settle.
            let settle_start = Instant::now();
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) if settle_start.elapsed() < MAX_SETTLE => continue,
                    _ => break,
                }
            }
            while rx.try_recv().is_ok() {}
            // Names, sizes, mtimes and inodes unchanged: nothing was written (an attribute
            // change, a directory listing), so skip the rebuild. SIGHUP always rebuilds.
            let now = stat_fingerprint(&dir);
            if now == last_stat && !hup {
                continue;
            }
            last_stat = now;
            let input = if hup {
                Input::DirRereadAll(self.dir.clone())
            } else {
                Input::Dir(self.dir.clone())
            };
            applier.apply(input).await;
        }
    }
}
