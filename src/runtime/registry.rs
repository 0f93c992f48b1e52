//! State that must outlive a snapshot, in one place, keyed by stable identity (not by
//! memory address): a reload builds new snapshots, and anything that counts over time would
//! otherwise start from zero at every reload.
//!
//! - rate-limit buckets, keyed by what the limit applies to and its rate, so a reload that
//!   keeps a limit keeps its bucket and a changed limit starts a fresh one;
//! - endpoint state (health, ejection, in-flight requests), keyed by the endpoint's
//!   identity ([`EndpointId`]: destination, address, TLS name);
//! - cluster state (requests, connections and retries in flight), keyed by destination.
//!
//! Entries are weak: state no snapshot uses any more is dropped with its last snapshot, and
//! an endpoint that comes back later starts afresh, as a new one does in Envoy. Used at
//! compile time only (a lock here never touches the request path).

use crate::runtime::log_sinks::{Sink, Target};
use crate::runtime::otel_logs::OtelLogSink;
use crate::runtime::tracing::{Exporter, OtlpProtocol};
use crate::snapshot::backends::{EndpointId, StateSource};
use crate::snapshot::endpoint_state::{ClusterState, EndpointState};
use crate::snapshot::rate_limit::TokenBucket;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Registry {
    buckets: Mutex<HashMap<u64, Weak<TokenBucket>>>,
    endpoints: Mutex<HashMap<EndpointId, Weak<EndpointState>>>,
    clusters: Mutex<HashMap<String, Weak<ClusterState>>>,
    log_sinks: Mutex<HashMap<String, Weak<Sink>>>,
    exporters: Mutex<HashMap<(String, OtlpProtocol, String), Weak<Exporter>>>,
    otel_log_sinks: Mutex<HashMap<(String, OtlpProtocol, String), Weak<OtelLogSink>>>,
}

/// The live entry under `key`, or a new one from `make`; dead entries are swept now and
/// then so the map stays the size of what snapshots use.
fn shared<K: Hash + Eq, V>(
    map: &Mutex<HashMap<K, Weak<V>>>,
    key: K,
    make: impl FnOnce() -> V,
) -> Arc<V> {
    let mut map = match map.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(v) = map.get(&key).and_then(Weak::upgrade) {
        return v;
    }
    if map.len() > 1024 && map.len().is_power_of_two() {
        map.retain(|_, w| w.strong_count() > 0);
    }
    let v = Arc::new(make());
    map.insert(key, Arc::downgrade(&v));
    v
}

impl Registry {
    /// The access log sink writing to `target`: one per file or collector, whatever the
    /// snapshot or port (lines of one file stay in order across reloads).
    pub fn log_sink(&self, target: Target) -> Arc<Sink> {
        let key = format!("{target:?}");
        shared(&self.log_sinks, key, || Sink::new(target))
    }

    /// The OpenTelemetry access log exporter to the OTLP `url` for the gateway `service`.
    pub fn otel_log_sink(
        &self,
        url: &str,
        protocol: OtlpProtocol,
        service: &str,
    ) -> Arc<OtelLogSink> {
        let key = (url.to_string(), protocol, service.to_string());
        shared(&self.otel_log_sinks, key, || {
            OtelLogSink::new(url.to_string(), protocol, service.to_string())
        })
    }

    /// The span exporter to the OTLP `url` for the gateway `service`.
    pub fn exporter(&self, url: &str, protocol: OtlpProtocol, service: &str) -> Arc<Exporter> {
        let key = (url.to_string(), protocol, service.to_string());
        shared(&self.exporters, key, || {
            Exporter::new(url.to_string(), protocol, service.to_string())
        })
    }
}

impl StateSource for Registry {
    fn endpoint(&self, id: &EndpointId) -> Arc<EndpointState> {
        shared(&self.endpoints, id.clone(), EndpointState::default)
    }

    fn cluster(&self, backend: &str) -> Arc<ClusterState> {
        shared(&self.clusters, backend.to_string(), ClusterState::default)
    }
}

impl Registry {
    /// The bucket for `identity` (a hash of what it limits) with this rate: the one a
    /// previous snapshot uses, or a new full one.
    pub fn bucket(&self, identity: u64, num: u32, interval: Duration) -> Arc<TokenBucket> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (identity, num, interval).hash(&mut h);
        shared(&self.buckets, h.finish(), || {
            TokenBucket::new(num, interval)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_limit_gets_the_same_bucket_a_changed_one_a_fresh_one() {
        let r = Registry::default();
        let a = r.bucket(7, 1, Duration::from_secs(60));
        assert!(a.try_take());
        let again = r.bucket(7, 1, Duration::from_secs(60));
        assert!(Arc::ptr_eq(&a, &again));
        assert!(!again.try_take(), "the allowance is not handed out twice");
        let changed = r.bucket(7, 2, Duration::from_secs(60));
        assert!(changed.try_take());
        drop((a, again));
        let fresh = r.bucket(7, 1, Duration::from_secs(60));
        assert!(fresh.try_take(), "a bucket no snapshot holds is gone");
    }

    #[test]
    fn an_endpoint_keeps_its_state_while_a_snapshot_holds_it() {
        let r = Registry::default();
        let id = EndpointId {
            backend: "a".into(),
            addr: ([127, 0, 0, 1], 80).into(),
            tls_name: None,
        };
        let s = r.endpoint(&id);
        s.set_check_failed(true);
        assert!(r.endpoint(&id).check_failed(), "same identity, same state");
        let other = EndpointId {
            tls_name: Some("x".into()),
            ..id.clone()
        };
        assert!(
            !r.endpoint(&other).check_failed(),
            "another TLS name is another endpoint"
        );
        drop(s);
        assert!(
            !r.endpoint(&id).check_failed(),
            "dropped with its last snapshot"
        );
    }
}
