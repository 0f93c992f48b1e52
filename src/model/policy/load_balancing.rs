//! MeshLoadBalancingStrategy `default`
//! (K:`pkg/plugins/policies/meshloadbalancingstrategy/api/v1alpha1`; spec §8).

use crate::merge_fields;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LoadBalancingConf {
    pub load_balancer: Option<LoadBalancer>,
    /// Top-level hash policies win over the ones inside `ringHash`/`maglev`.
    pub hash_policies: Option<Vec<HashPolicy>>,
    /// Set when the policy asks for locality awareness (validated, not applied).
    pub locality_awareness: Option<bool>,
}

/// `loadBalancer`: the `type` and its section, replaced whole (a new type brings its own
/// settings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoadBalancer {
    RoundRobin,
    Random,
    LeastRequest {
        choice_count: u32,
        /// Hundredths; only meaningful with endpoint weights, which meshgate's endpoints
        /// do not carry.
        active_request_bias: u32,
    },
    RingHash {
        hash_function: HashFunction,
        min_ring_size: u32,
        max_ring_size: u32,
        hash_policies: Option<Vec<HashPolicy>>,
    },
    Maglev {
        table_size: u32,
        hash_policies: Option<Vec<HashPolicy>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFunction {
    XxHash,
    MurmurHash2,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashPolicy {
    pub source: HashSource,
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashSource {
    Header(String),
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: Option<String>,
    },
    /// `Connection {sourceIP: true}` and `SourceIP`.
    SourceIp,
    QueryParameter(String),
    /// Envoy-internal filter state: never produces a hash here.
    FilterState(String),
}

merge_fields!(LoadBalancingConf {
    replace: [load_balancer, hash_policies, locality_awareness],
    nested: [],
});

impl LoadBalancingConf {
    /// The hash policies in force: top-level ones, else the ring's or table's own.
    pub fn effective_hash_policies(&self) -> &[HashPolicy] {
        if let Some(p) = &self.hash_policies {
            return p;
        }
        match &self.load_balancer {
            Some(LoadBalancer::RingHash {
                hash_policies: Some(p),
                ..
            })
            | Some(LoadBalancer::Maglev {
                hash_policies: Some(p),
                ..
            }) => p,
            _ => &[],
        }
    }
}
