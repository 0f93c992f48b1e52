//! Policy directory → snapshot, at start-up and whenever the directory changes.
//!
//! [`build`] is the whole pipeline (load → validate → compile) and is also what `--check`
//! runs, so the two can never disagree. [`PolicyWatcher`] is a Pingora background service: it
//! watches the directory (inotify through `notify`, plus a 1 s stat-based poll that catches
//! what events miss, such as a ConfigMap's `..data` symlink swap), waits until writes settle
//! (debounce), rebuilds off the request path on a blocking thread and swaps the snapshot in
//! with one `ArcSwap::store`. A rejected change leaves the old snapshot serving and sets
//! `last_error`. SIGHUP forces a re-read.

use crate::metrics::{unix_now, METRICS};
use crate::resources::loader::{load_dir, policy_files};
use crate::snapshot::{compile, CompileOptions, Snapshot};
use crate::state::GatewayState;
use crate::validate::validate;
use crate::violation::{render, Violation};
use async_trait::async_trait;
use log::{error, info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes that arrive closer together than this are applied together.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Upper bound on waiting for writes to settle, so a constantly-written directory still
/// reloads.
const MAX_SETTLE: Duration = Duration::from_millis(500);
const POLL_INTERVAL: Duration = Duration::from_secs(1);

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
    let started = Instant::now();
    let loaded = load_dir(dir);
    let fingerprint = loaded.fingerprint;
    let load_took = started.elapsed();
    let mut violations = loaded.violations;
    violations.extend(validate(&loaded.resources));
    log::debug!(
        "policies: loaded in {:.1} ms, validated in {:.1} ms",
        load_took.as_secs_f64() * 1000.0,
        (started.elapsed() - load_took).as_secs_f64() * 1000.0
    );
    if !violations.is_empty() {
        return Err(Rejected {
            violations,
            fingerprint,
        });
    }
    match compile(&loaded.resources, opts, generation) {
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

pub struct PolicyWatcher {
    state: Arc<GatewayState>,
    /// Fingerprint of the directory the first snapshot was built from.
    initial_fingerprint: u64,
}

impl PolicyWatcher {
    pub fn new(state: Arc<GatewayState>, initial_fingerprint: u64) -> Self {
        PolicyWatcher {
            state,
            initial_fingerprint,
        }
    }

    /// Rebuilds and, if the content changed and is valid, swaps the snapshot in.
    async fn apply(&self, last_fingerprint: &mut u64) {
        let state = self.state.clone();
        let next_generation = state.snapshot.load().generation + 1;
        let result = tokio::task::spawn_blocking(move || {
            let r = build(&state.policy_dir, &state.compile, next_generation);
            release_freed_memory();
            r
        })
        .await;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                error!("policy reload task failed: {e}");
                return;
            }
        };
        match result {
            Ok(built) => {
                if built.fingerprint == *last_fingerprint {
                    return; // touched or rewritten with the same content
                }
                *last_fingerprint = built.fingerprint;
                for w in &built.warnings {
                    warn!("{w}");
                }
                let generation = built.snapshot.generation;
                let entries = built.snapshot.route_entries;
                self.state.snapshot.store(Arc::new(built.snapshot));
                self.state.last_error.store(None);
                let _ = self.state.changes.send(generation);
                METRICS.reloads.with_label_values(&["success"]).inc();
                METRICS.last_reload_successful.set(1);
                METRICS.last_reload_success_timestamp.set(unix_now());
                METRICS.generation.set(generation as i64);
                METRICS.compile_seconds.set(built.took.as_secs_f64());
                METRICS.route_entries.set(entries as i64);
                info!(
                    "policies applied: generation {generation}, {entries} route entries, built in {:.1} ms",
                    built.took.as_secs_f64() * 1000.0
                );
            }
            Err(rejected) => {
                if rejected.fingerprint == *last_fingerprint {
                    return;
                }
                *last_fingerprint = rejected.fingerprint;
                let text = render(&rejected.violations);
                error!("policy change rejected, previous snapshot keeps serving:\n{text}");
                self.state.last_error.store(Some(Arc::new(text)));
                METRICS.reloads.with_label_values(&["failure"]).inc();
                METRICS.last_reload_successful.set(0);
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
                        self.state.draining.store(true, Ordering::Relaxed);
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
