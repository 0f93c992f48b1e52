//! MeshLoadBalancingStrategy
//! (K:`pkg/plugins/policies/meshloadbalancingstrategy/api/v1alpha1/validator.go`; spec §8.2).

use super::{check_entry_target, check_top, count, no_section, policy, Top, PROXY_POLICY_TOP};
use crate::model::policy::load_balancing::{
    HashFunction, HashPolicy, HashSource, LoadBalancer, LoadBalancingConf,
};
use crate::model::policy::{Policy, To};
use crate::resources::policy::load_balancing::{self as raw, MeshLoadBalancingStrategy};
use crate::validate::lower::target;
use crate::validate::messages::{schema, MUST_BE_DEFINED};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;
use crate::validate::values;

/// Envoy's ring bounds (`RingHashLbConfig`): at most 8M entries.
const MAX_RING: i64 = 8_388_608;
/// Envoy's Maglev table bound (`MaglevLbConfig.table_size` < 5000011, prime).
const MAX_TABLE: i64 = 5_000_011;

pub fn lower(
    r: &mut Report,
    spec: &MeshLoadBalancingStrategy,
) -> Option<Policy<LoadBalancingConf>> {
    let root = FieldPath::spec_of(r.meta());
    check_top(r, &root, spec.target_ref.as_ref(), &PROXY_POLICY_TOP);
    no_section(r, &root, "from", spec.from.as_ref());
    no_section(r, &root, "rules", spec.rules.as_ref());
    let top = Top::of(spec.target_ref.as_ref());
    let mut to = Vec::new();
    for (i, item) in spec.to.iter().flatten().enumerate() {
        let at = root.field("to").index(i);
        let kind = item.target_ref.as_ref().map_or("", |t| t.kind.as_str());
        let balancer_set = item
            .default
            .as_ref()
            .is_some_and(|d| d.load_balancer.is_some());
        if top.kind == "MeshGateway" && balancer_set && kind != "Mesh" && !kind.is_empty() {
            // Kuma's message names the top-level kind (sic).
            r.add(
                &at.field("targetRef").field("kind"),
                format!(
                    "value '{}' is not supported, only Mesh is allowed if loadBalancer is set",
                    top.kind
                ),
            );
            check_entry_target(r, &at, item.target_ref.as_ref(), &[kind]);
        } else {
            let kinds: &[&str] = if top.kind == "MeshGateway" {
                &["Mesh", "MeshService", "MeshMultiZoneService"]
            } else {
                &[
                    "Mesh",
                    "MeshService",
                    "MeshExternalService",
                    "MeshMultiZoneService",
                ]
            };
            check_entry_target(r, &at, item.target_ref.as_ref(), kinds);
        }
        if let Some(conf) = conf(r, &at.field("default"), item.default.as_ref()) {
            to.push(To {
                target: target(item.target_ref.as_ref()),
                conf,
            });
        }
    }
    Some(policy(r, spec, to, Vec::new()))
}

fn conf(
    r: &mut Report,
    at: &FieldPath,
    d: Option<&raw::LoadBalancingConf>,
) -> Option<LoadBalancingConf> {
    let empty = raw::LoadBalancingConf::default();
    let d = d.unwrap_or(&empty);
    let root_hashes = d.hash_policies.is_some();
    Some(LoadBalancingConf {
        load_balancer: d
            .load_balancer
            .as_ref()
            .and_then(|lb| balancer(r, &at.field("loadBalancer"), lb, root_hashes)),
        hash_policies: d
            .hash_policies
            .as_ref()
            .map(|l| hash_policies(r, &at.field("hashPolicies"), l)),
        locality_awareness: d.locality_awareness.as_ref().map(|_| true),
    })
}

fn balancer(
    r: &mut Report,
    at: &FieldPath,
    lb: &raw::LoadBalancer,
    root_hashes: bool,
) -> Option<LoadBalancer> {
    const TYPES: &[&str] = &["RoundRobin", "LeastRequest", "RingHash", "Random", "Maglev"];
    let inner_hashes = |r: &mut Report, at: FieldPath, l: Option<&Vec<raw::HashPolicy>>| {
        let l = l?;
        if root_hashes {
            r.add(&at, "hashPolicies already specified in the root level");
        }
        Some(hash_policies(r, &at, l))
    };
    match lb.kind.as_deref() {
        None => {
            r.add(&at.field("type"), schema::REQUIRED);
            None
        }
        Some("RoundRobin") => Some(LoadBalancer::RoundRobin),
        Some("Random") => Some(LoadBalancer::Random),
        Some("LeastRequest") => {
            let lr = lb.least_request.clone().unwrap_or_default();
            let at = at.field("leastRequest");
            let choice_count = match lr.choice_count {
                Some(n) if n < 2 => {
                    r.add(&at.field("choiceCount"), schema::minimum(2));
                    None
                }
                Some(n) => count(r, &at.field("choiceCount"), n, true),
                None => Some(2),
            };
            let bias = match lr.active_request_bias.as_ref().map(|b| b.as_f64()) {
                None => Some(100),
                Some(Some(b)) if b >= 0.0 => Some((b * 100.0).round() as u32),
                Some(Some(_)) => {
                    r.add(
                        &at.field("activeRequestBias"),
                        "must be greater or equal then: 0",
                    );
                    None
                }
                Some(None) => {
                    r.add(
                        &at.field("activeRequestBias"),
                        "string must be a valid number",
                    );
                    None
                }
            };
            Some(LoadBalancer::LeastRequest {
                choice_count: choice_count?,
                active_request_bias: bias?,
            })
        }
        Some("RingHash") => {
            let rh = lb.ring_hash.clone().unwrap_or_default();
            let at = at.field("ringHash");
            let hash_function = match rh.hash_function.as_deref() {
                None | Some("XXHash") => Some(HashFunction::XxHash),
                Some("MurmurHash2") => Some(HashFunction::MurmurHash2),
                Some(_) => {
                    r.add(
                        &at.field("hashFunction"),
                        schema::one_of(&["XXHash", "MurmurHash2"]),
                    );
                    None
                }
            };
            let size = |r: &mut Report, field: &str, v: Option<i64>, default: u32| match v {
                None => Some(default),
                Some(n) if (1..=MAX_RING).contains(&n) => u32::try_from(n).ok(),
                Some(_) => {
                    r.add(
                        &at.field(field),
                        format!("must be in inclusive range [1, {MAX_RING}]"),
                    );
                    None
                }
            };
            let min = size(r, "minRingSize", rh.min_ring_size, 1024);
            let max = size(r, "maxRingSize", rh.max_ring_size, 8_388_608);
            if let (Some(lo), Some(hi)) = (min, max) {
                if lo > hi {
                    r.add(
                        &at.field("minRingSize"),
                        "must be less than or equal to maxRingSize",
                    );
                }
            }
            let hashes = inner_hashes(r, at.field("hashPolicies"), rh.hash_policies.as_ref());
            Some(LoadBalancer::RingHash {
                hash_function: hash_function?,
                min_ring_size: min?,
                max_ring_size: max?,
                hash_policies: hashes,
            })
        }
        Some("Maglev") => {
            let m = lb.maglev.clone().unwrap_or_default();
            let at = at.field("maglev");
            let table_size = match m.table_size {
                None => Some(65_537),
                Some(n) if (1..MAX_TABLE).contains(&n) && is_prime(n) => u32::try_from(n).ok(),
                Some(_) => {
                    r.add(
                        &at.field("tableSize"),
                        format!("must be a prime number below {MAX_TABLE}"),
                    );
                    None
                }
            };
            let hashes = inner_hashes(r, at.field("hashPolicies"), m.hash_policies.as_ref());
            Some(LoadBalancer::Maglev {
                table_size: table_size?,
                hash_policies: hashes,
            })
        }
        Some(_) => {
            r.add(&at.field("type"), schema::one_of(TYPES));
            None
        }
    }
}

fn is_prime(n: i64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn hash_policies(r: &mut Report, at: &FieldPath, list: &[raw::HashPolicy]) -> Vec<HashPolicy> {
    const TYPES: &[&str] = &[
        "Header",
        "Cookie",
        "Connection",
        "SourceIP",
        "QueryParameter",
        "FilterState",
    ];
    let mut out = Vec::new();
    for (j, p) in list.iter().enumerate() {
        let at = at.index(j);
        let named = |r: &mut Report, field: &str, v: Option<&raw::Named>| match v
            .and_then(|n| n.name.clone())
            .filter(|n| !n.is_empty())
        {
            Some(n) => Some(n),
            None => {
                r.add(&at.field(field), MUST_BE_DEFINED);
                None
            }
        };
        let source = match p.kind.as_deref() {
            Some("Header") => named(r, "header", p.header.as_ref()).map(HashSource::Header),
            Some("QueryParameter") => named(r, "queryParameter", p.query_parameter.as_ref())
                .map(HashSource::QueryParameter),
            Some("Cookie") => match &p.cookie {
                None => {
                    r.add(&at.field("cookie"), MUST_BE_DEFINED);
                    None
                }
                Some(c) => cookie(r, &at.field("cookie"), c),
            },
            Some(kind @ ("Connection" | "SourceIP")) => match &p.connection {
                // Kuma's builder reads `connection.sourceIP` for both types.
                None if kind == "Connection" => {
                    r.add(&at.field("connection"), MUST_BE_DEFINED);
                    None
                }
                _ => Some(HashSource::SourceIp),
            },
            Some("FilterState") => match p.filter_state.as_ref().and_then(|f| f.key.clone()) {
                Some(k) => Some(HashSource::FilterState(k)),
                None => {
                    r.add(&at.field("filterState"), MUST_BE_DEFINED);
                    None
                }
            },
            None => {
                r.add(&at.field("type"), schema::REQUIRED);
                None
            }
            Some(_) => {
                r.add(&at.field("type"), schema::one_of(TYPES));
                None
            }
        };
        if let Some(source) = source {
            out.push(HashPolicy {
                source,
                terminal: p.terminal.unwrap_or(false),
            });
        }
    }
    out
}

fn cookie(r: &mut Report, at: &FieldPath, c: &raw::Cookie) -> Option<HashSource> {
    let name = c.name.clone().filter(|n| !n.is_empty());
    if name.is_none() {
        r.add(&at.field("name"), MUST_BE_DEFINED);
    }
    if let Some(p) = &c.path {
        if !p.starts_with('/') {
            r.add(&at.field("path"), "must be an absolute path");
        }
    }
    let ttl = match c.ttl.as_deref().map(values::go_duration) {
        None => None,
        Some(Some(Ok(d))) => Some(d),
        Some(_) => {
            r.add(&at.field("ttl"), "must be a valid duration");
            None
        }
    };
    Some(HashSource::Cookie {
        name: name?,
        ttl,
        path: c.path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn doc(to_kind: &str, default: &str) -> String {
        format!(
            "type: MeshLoadBalancingStrategy\nname: lb\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n  - targetRef: {to_kind}\n    default: {default}\n"
        )
    }

    #[test]
    fn ring_hash_with_header_and_cookie_is_valid() {
        assert_yaml(
            &doc("{kind: Mesh}", "{loadBalancer: {type: RingHash, ringHash: {hashFunction: MurmurHash2, minRingSize: 64, hashPolicies: [{type: Header, header: {name: x-user}}, {type: Cookie, cookie: {name: s, ttl: 1h, path: /}, terminal: true}]}}}"),
            &[],
        );
        assert_yaml(
            &doc(
                "{kind: MeshService, name: a}",
                "{hashPolicies: [{type: SourceIP}]}",
            ),
            &[],
        );
    }

    #[test]
    fn kuma_rules_and_messages() {
        assert_yaml(
            &doc("{kind: MeshService, name: a}", "{loadBalancer: {type: LeastRequest}}"),
            &["spec.to[0].targetRef.kind: value 'MeshGateway' is not supported, only Mesh is allowed if loadBalancer is set"],
        );
        assert_yaml(
            &doc("{kind: Mesh}", "{hashPolicies: [{type: Header}], loadBalancer: {type: RingHash, ringHash: {hashPolicies: [{type: Cookie, cookie: {name: c, path: rel}}]}}}"),
            &[
                "spec.to[0].default.loadBalancer.ringHash.hashPolicies: hashPolicies already specified in the root level",
                "spec.to[0].default.loadBalancer.ringHash.hashPolicies[0].cookie.path: must be an absolute path",
                "spec.to[0].default.hashPolicies[0].header: must be defined",
            ],
        );
        assert_yaml(
            &doc("{kind: Mesh}", "{loadBalancer: {type: LeastRequest, leastRequest: {activeRequestBias: '-1'}}}"),
            &["spec.to[0].default.loadBalancer.leastRequest.activeRequestBias: must be greater or equal then: 0"],
        );
    }
}
