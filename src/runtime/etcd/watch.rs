//! Following an etcd prefix (see [`EtcdWatcher`]).

use super::read::{read_all, Revision};
use super::{cache, EtcdAccess, EtcdStatus};
use crate::runtime::reload::apply::{Applied, Applier};
use crate::runtime::reload::{Input, PolicyBuilder};
use crate::runtime::state::GatewayState;
use async_trait::async_trait;
use etcd_client::WatchOptions;
use log::{info, warn};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Changes closer together than this are applied together (as a directory's writes are).
const DEBOUNCE: Duration = Duration::from_millis(100);
const MAX_SETTLE: Duration = Duration::from_millis(500);
/// Reconnection backoff: doubled from the first to the last after each failed attempt.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));

/// The background service of an etcd source: reads the prefix, applies it, watches it from
/// the next revision, and on any change re-reads the whole prefix at one revision (so the
/// keys of one transaction are applied together and a rebuild never sees half of a change).
///
/// When etcd goes away the last good snapshot keeps serving; the watcher reconnects with
/// backoff and, once back, re-reads everything: what changed meanwhile is applied, and a
/// compacted revision needs no special case.
pub struct EtcdWatcher {
    pub state: Arc<GatewayState>,
    pub status: Arc<EtcdStatus>,
    pub access: EtcdAccess,
    pub builder: PolicyBuilder,
    /// Fingerprint of the content the first snapshot was built from.
    pub initial_fingerprint: u64,
    pub cache: Option<PathBuf>,
}

/// Why a session with etcd ended.
enum Ended {
    Shutdown,
    Lost(String),
}

impl EtcdWatcher {
    /// Builds and applies one revision; remembers it in the cache when it serves.
    async fn apply(&self, applier: &mut Applier<'_>, revision: Revision) {
        if revision.revision == self.status.revision() {
            return;
        }
        let number = revision.revision;
        let files_for_cache = self.cache.as_ref().map(|_| revision.files.clone());
        match applier.apply(Input::Files(revision.files)).await {
            Applied::Swapped | Applied::Unchanged => {
                self.status.set_revision(number);
                self.status
                    .from_cache
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                if let (Some(dir), Some(files)) = (&self.cache, files_for_cache) {
                    if let Err(e) = cache::store(dir, number, &files) {
                        warn!("policy cache {}: {e}", dir.display());
                    }
                }
            }
            Applied::Rejected | Applied::StillRejected => warn!(
                "etcd revision {number} of {} rejected; revision {} keeps serving",
                self.status.target.url(),
                self.status.revision()
            ),
            Applied::BuilderGone => {}
        }
    }

    /// One connection's life: read, apply, watch until it breaks or the process stops.
    async fn session(
        &self,
        applier: &mut Applier<'_>,
        shutdown: &mut ShutdownWatch,
        backoff: &mut Duration,
    ) -> Ended {
        let target = &self.status.target;
        let mut client = match self.access.connect(target).await {
            Ok(c) => c,
            Err(e) => return Ended::Lost(e),
        };
        let revision = match read_all(&mut client, target).await {
            Ok(r) => r,
            Err(e) => return Ended::Lost(e),
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision.revision + 1);
        let mut stream = match client.watch(target.prefix.as_str(), Some(options)).await {
            Ok(s) => s,
            Err(e) => return Ended::Lost(format!("{}: watch: {e}", target.url())),
        };
        if !self.status.is_connected() {
            info!(
                "etcd {}: watching from revision {}",
                target.url(),
                revision.revision
            );
        }
        self.status.set_connected();
        *backoff = BACKOFF.0;
        self.apply(applier, revision).await;
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let message = tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return Ended::Shutdown;
                    }
                    continue;
                }
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    info!("SIGHUP: re-reading {}", target.url());
                    None
                }
                m = stream.message() => Some(m),
            };
            if let Some(message) = message {
                match message {
                    Ok(Some(m)) if m.canceled() || m.compact_revision() > 0 => {
                        return Ended::Lost(format!(
                            "{}: watch ended by etcd ({})",
                            target.url(),
                            if m.compact_revision() > 0 {
                                "revision compacted".to_string()
                            } else {
                                m.cancel_reason().to_string()
                            }
                        ));
                    }
                    Ok(Some(m)) if m.events().is_empty() => continue, // created, progress
                    Ok(Some(_)) => {
                        // Let a burst of changes settle, then read them all at once.
                        let settle = Instant::now();
                        while settle.elapsed() < MAX_SETTLE {
                            match tokio::time::timeout(DEBOUNCE, stream.message()).await {
                                Ok(Ok(Some(_))) => continue,
                                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
                            }
                        }
                    }
                    Ok(None) => return Ended::Lost(format!("{}: watch closed", target.url())),
                    Err(e) => return Ended::Lost(format!("{}: watch: {e}", target.url())),
                }
            }
            match read_all(&mut client, target).await {
                Ok(revision) => self.apply(applier, revision).await,
                Err(e) => return Ended::Lost(e),
            }
        }
    }
}

#[async_trait]
impl BackgroundService for EtcdWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut applier = Applier {
            state: &self.state,
            builder: &self.builder,
            last_fingerprint: self.initial_fingerprint,
            last_rejected: false,
        };
        let mut backoff = BACKOFF.0;
        loop {
            match self
                .session(&mut applier, &mut shutdown, &mut backoff)
                .await
            {
                Ended::Shutdown => break,
                Ended::Lost(why) => {
                    // Once per outage; the retries are in /ready, /config and the metrics.
                    if self.status.is_connected() {
                        warn!(
                            "{why}; serving revision {}, reconnecting",
                            self.status.revision()
                        );
                    } else {
                        log::debug!("{why}; retrying in {backoff:?}");
                    }
                    self.status.set_disconnected(&why);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                }
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
        crate::runtime::drain::start(&self.state, "shutdown");
    }
}
