//! Endpoint health off the request path: active checks (MeshHealthCheck, [`check`]) and the
//! outlier-detection sweep (MeshCircuitBreaker, [`sweep`]), run as tasks that follow the
//! serving snapshot.
//!
//! On every applied snapshot the tasks are reconciled with it: a check keeps running for an
//! endpoint whose identity (its run-time state) and check settings are unchanged, is started
//! for a new one, and stops for an endpoint that left; sweeps follow the backends with
//! outlier detection. Checks run at most [`MAX_CONCURRENT_CHECKS`] at a time.

mod check;
mod probe;
mod sweep;

use crate::runtime::state::GatewayState;
use crate::snapshot::cluster::HealthCheck;
use crate::snapshot::Snapshot;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Checks in progress at once, across all endpoints: 1,000 endpoints at a 1 s interval and
/// a few ms per check need a handful; the bound keeps a slow, black-holed backend from
/// holding thousands of sockets.
pub const MAX_CONCURRENT_CHECKS: usize = 64;

pub struct HealthService {
    pub state: Arc<GatewayState>,
}

struct Running<P> {
    plan: P,
    task: JoinHandle<()>,
}

impl<P> Drop for Running<P> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The tasks that follow one snapshot, keyed by the identity of what they watch.
pub struct Tasks {
    checks: HashMap<usize, Running<(Arc<HealthCheck>, check::Target)>>,
    sweeps: HashMap<usize, Running<()>>,
    limit: Arc<Semaphore>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    pub fn new() -> Self {
        Tasks {
            checks: HashMap::new(),
            sweeps: HashMap::new(),
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)),
        }
    }

    /// Brings the running tasks in line with `snap`.
    pub fn reconcile(&mut self, snap: &Snapshot) {
        let mut checks = HashMap::new();
        let mut sweeps = HashMap::new();
        for backend in &snap.backends {
            if let Some(plan) = &backend.cluster.health {
                let prober = Arc::new(probe::Prober::new(plan, backend));
                for endpoint in &backend.endpoints {
                    let key = Arc::as_ptr(&endpoint.state) as usize;
                    if checks.contains_key(&key) {
                        // One endpoint identity under two ports' clusters: one check.
                        continue;
                    }
                    let target = check::Target::of(backend, endpoint);
                    let kept = self.checks.remove(&key).filter(|r| {
                        *r.plan.0 == **plan && r.plan.1 == target && !r.task.is_finished()
                    });
                    let running = kept.unwrap_or_else(|| Running {
                        task: tokio::spawn(check::run(
                            plan.clone(),
                            target.clone(),
                            endpoint.state.clone(),
                            backend.runtime.clone(),
                            prober.clone(),
                            self.limit.clone(),
                        )),
                        plan: (plan.clone(), target),
                    });
                    checks.insert(key, running);
                }
            }
            if let Some(outlier) = &backend.cluster.outlier {
                let key = Arc::as_ptr(backend) as usize;
                let running = self.sweeps.remove(&key).unwrap_or_else(|| Running {
                    task: tokio::spawn(sweep::run(outlier.clone(), backend.clone())),
                    plan: (),
                });
                sweeps.insert(key, running);
            }
        }
        // What is left is gone from the snapshot: dropping aborts it.
        self.checks = checks;
        self.sweeps = sweeps;
    }

    pub fn checks(&self) -> usize {
        self.checks.len()
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut changes = self.state.changes.subscribe();
        let mut tasks = Tasks::new();
        loop {
            tasks.reconcile(&self.state.snapshot.load_full());
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
