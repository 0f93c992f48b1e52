//! The circuit breaker's slots one request holds (MeshCircuitBreaker `connectionLimits`,
//! spec §7.1) and the in-flight count of the endpoint its attempt is at: taken as the
//! request moves on, given back when it does or ends (`Drop`), so no path can leak one.
//!
//! Requests are counted per destination from routing to the end of the response; a
//! connection slot is held by each attempt (an HTTP/1 exchange holds one connection);
//! requests that find every connection slot taken wait as pending, up to
//! `maxPendingRequests`; a retry needs one of `maxRetries` slots, held while it waits out its
//! back-off, until its attempt starts (Envoy's `RetryStateImpl`).

use crate::snapshot::backends::Backend;
use crate::snapshot::endpoint_state::{ClusterState, EndpointState};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct Slots {
    cluster: Option<Arc<ClusterState>>,
    request: bool,
    connection: bool,
    retry: bool,
    endpoint: Option<Arc<EndpointState>>,
}

/// Why a slot could not be had: Envoy's overflow (503 `UO`).
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

impl Slots {
    fn cluster(&mut self, backend: &Backend) -> &ClusterState {
        self.cluster.get_or_insert_with(|| backend.runtime.clone())
    }

    /// A request slot (`maxRequests`), when the destination has limits.
    pub fn take_request(&mut self, backend: &Backend) -> Result<(), Overflow> {
        let Some(limits) = backend.cluster.limits else {
            return Ok(());
        };
        if !ClusterState::try_take(&self.cluster(backend).requests, limits.max_requests) {
            return Err(Overflow);
        }
        self.request = true;
        Ok(())
    }

    /// A connection slot for the next attempt (`maxConnections`), waiting as a pending
    /// request (`maxPendingRequests`) up to `wait` when all are taken.
    pub async fn take_connection(
        &mut self,
        backend: &Backend,
        wait: Duration,
    ) -> Result<(), Overflow> {
        self.end_attempt();
        let Some(limits) = backend.cluster.limits else {
            return Ok(());
        };
        let cluster = self.cluster(backend);
        if ClusterState::try_take(&cluster.connections, limits.max_connections) {
            self.connection = true;
            return Ok(());
        }
        if !ClusterState::try_take(&cluster.pending, limits.max_pending_requests) {
            return Err(Overflow);
        }
        let cluster = backend.runtime.clone();
        let waited = tokio::time::timeout(wait, async {
            loop {
                let released = cluster.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if ClusterState::try_take(&cluster.connections, limits.max_connections) {
                    return;
                }
                released.await;
            }
        })
        .await;
        ClusterState::give_back(&cluster.pending);
        match waited {
            Ok(()) => {
                self.connection = true;
                Ok(())
            }
            Err(_) => Err(Overflow),
        }
    }

    /// A retry slot (`maxRetries`), held until the retry's attempt starts.
    pub fn take_retry(&mut self, backend: &Backend) -> bool {
        let Some(limits) = backend.cluster.limits else {
            return true;
        };
        if self.retry {
            return true;
        }
        self.retry = ClusterState::try_take(&self.cluster(backend).retries, limits.max_retries);
        self.retry
    }

    /// The attempt goes to this endpoint: counted in its in-flight requests.
    pub fn enter(&mut self, endpoint: &Arc<EndpointState>) {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        self.endpoint = Some(endpoint.clone());
    }

    /// The attempt is over (or the retry's begins): its connection slot, endpoint count and
    /// retry slot are given back.
    pub fn end_attempt(&mut self) {
        if std::mem::take(&mut self.retry) {
            if let Some(c) = &self.cluster {
                ClusterState::give_back(&c.retries);
            }
        }
        if let Some(ep) = self.endpoint.take() {
            ClusterState::give_back(&ep.in_flight);
        }
        if std::mem::take(&mut self.connection) {
            if let Some(c) = &self.cluster {
                ClusterState::give_back(&c.connections);
                if c.pending.load(Ordering::Relaxed) > 0 {
                    c.released.notify_one();
                }
            }
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.end_attempt();
        if let Some(c) = &self.cluster {
            if self.request {
                ClusterState::give_back(&c.requests);
            }
        }
    }
}
