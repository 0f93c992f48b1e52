//! Watching the policy directory (see [`PolicyWatcher`]).

use super::builder::PolicyBuilder;
use crate::resources::loader::policy_files;
use crate::runtime::publish;
use crate::runtime::state::GatewayState;
use async_trait::async_trait;
use log::{error, info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes that arrive closer together than this are applied together.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Upper bound on waiting for writes to settle, so a constantly-written directory still
/// reloads.
const MAX_SETTLE: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub struct PolicyWatcher {
    state: Arc<GatewayState>,
    /// Fingerprint of the directory the first snapshot was built from.
    initial_fingerprint: u64,
    /// The thread that built the first snapshot (and holds its per-file cache).
    builder: PolicyBuilder,
}

impl PolicyWatcher {
    pub fn new(state: Arc<GatewayState>, initial_fingerprint: u64, builder: PolicyBuilder) -> Self {
        PolicyWatcher {
            state,
            initial_fingerprint,
            builder,
        }
    }

    /// Rebuilds and, if the content changed and is valid, swaps the snapshot in.
    async fn apply(&self, last_fingerprint: &mut u64) {
        let state = &self.state;
        let next_generation = state.snapshot.load().generation + 1;
        let Some(result) = self.builder.build(&state.policy_dir, next_generation).await else {
            error!("the policy builder thread is gone; policy changes are not applied");
            return;
        };
        match result {
            Ok(built) => {
                if built.fingerprint == *last_fingerprint {
                    return; // touched or rewritten with the same content
                }
                *last_fingerprint = built.fingerprint;
                publish::applied(&self.state, built);
                // Requests still running on the old snapshot finish within moments; then its
                // memory can go back to the OS.
                self.builder.collect_later(Duration::from_secs(2));
            }
            Err(rejected) => {
                if rejected.fingerprint == *last_fingerprint {
                    return;
                }
                *last_fingerprint = rejected.fingerprint;
                publish::rejected(&self.state, &rejected);
            }
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
        let dir = self.state.policy_dir.clone();
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
        let mut last_fingerprint = self.initial_fingerprint;
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
            self.apply(&mut last_fingerprint).await;
        }
    }
}
