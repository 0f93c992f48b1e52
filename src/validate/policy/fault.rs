//! MeshFaultInjection (K:`pkg/plugins/policies/meshfaultinjection/api/v1alpha1/validator.go`;
//! spec §10.2). Kuma puts the entry's index after the fault kind:
//! `spec.to[0].default.http.abort[1].httpStatus` is the abort of `http[1]`.

use super::{check_top, gateway_to_only, policy, Top, PROXY_POLICY_TOP};
use crate::model::policy::fault::{Abort, Bandwidth, Delay, Fault, FaultConf};
use crate::model::policy::Policy;
use crate::resources::common::IntOrString;
use crate::resources::policy::fault::{self as raw, MeshFaultInjection};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;
use crate::validate::values;
use std::time::Duration;

pub fn lower(r: &mut Report, spec: &MeshFaultInjection) -> Option<Policy<FaultConf>> {
    let root = FieldPath::spec_of(r.meta());
    check_top(r, &root, spec.target_ref.as_ref(), &PROXY_POLICY_TOP);
    let top = Top::of(spec.target_ref.as_ref());
    // `rules` select sidecars' inbound traffic: checked, never applied to a gateway.
    super::lower_rules(r, &root, spec.rules.as_ref(), conf);
    let to = gateway_to_only(r, &root, spec, &top, conf);
    Some(policy(r, spec, to, Vec::new()))
}

fn conf(r: &mut Report, at: &FieldPath, d: Option<&raw::FaultConf>) -> Option<FaultConf> {
    let Some(list) = d.and_then(|d| d.http.as_ref()) else {
        return Some(FaultConf::default());
    };
    let at = at.field("http");
    let faults = list
        .iter()
        .enumerate()
        .map(|(j, f)| Fault {
            abort: f
                .abort
                .as_ref()
                .and_then(|a| abort(r, &at.field("abort").index(j), a)),
            delay: f
                .delay
                .as_ref()
                .and_then(|d| delay(r, &at.field("delay").index(j), d)),
            response_bandwidth: f
                .response_bandwidth
                .as_ref()
                .and_then(|b| bandwidth(r, &at.field("responseBandwidth").index(j), b)),
        })
        .collect();
    Some(FaultConf { http: Some(faults) })
}

/// An absent percentage reads as 0 (Kuma's zero value): the fault never fires.
fn percentage(r: &mut Report, at: &FieldPath, v: Option<&IntOrString>) -> Option<f64> {
    match v {
        None => Some(0.0),
        Some(_) => super::percentage(r, at, v),
    }
}

fn abort(r: &mut Report, at: &FieldPath, a: &raw::Abort) -> Option<Abort> {
    let status = match a.http_status.unwrap_or(0) {
        s @ 100..=599 => u16::try_from(s).ok(),
        _ => {
            r.add(
                &at.field("httpStatus"),
                "must be in inclusive range [100, 599]",
            );
            None
        }
    };
    let percentage = percentage(r, &at.field("percentage"), a.percentage.as_ref());
    Some(Abort {
        http_status: status?,
        percentage: percentage?,
    })
}

fn delay(r: &mut Report, at: &FieldPath, d: &raw::Delay) -> Option<Delay> {
    let value = match d.value.as_deref() {
        None => Some(Duration::ZERO),
        Some(s) => match values::go_duration(s) {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                r.add(&at.field("value"), "must not be negative when defined");
                None
            }
            None => {
                r.add(&at.field("value"), format!("invalid duration {s:?}"));
                None
            }
        },
    };
    let percentage = percentage(r, &at.field("percentage"), d.percentage.as_ref());
    Some(Delay {
        value: value?,
        percentage: percentage?,
    })
}

fn bandwidth(r: &mut Report, at: &FieldPath, b: &raw::Bandwidth) -> Option<Bandwidth> {
    let bits = b.limit.as_deref().and_then(bits_per_second);
    if bits.is_none() {
        r.add(&at.field("limit"), "must be in kbps/Mbps/Gbps units");
    }
    let percentage = percentage(r, &at.field("percentage"), b.percentage.as_ref());
    Some(Bandwidth {
        bits_per_second: bits?,
        percentage: percentage?,
    })
}

/// `100kbps`, `10Mbps`, `1Gbps` (1 kbps = 1000 bit/s) as bits per second.
pub fn bits_per_second(s: &str) -> Option<u64> {
    let s = s.trim();
    let (number, scale) = [("kbps", 1e3), ("Mbps", 1e6), ("Gbps", 1e9)]
        .iter()
        .find_map(|(unit, scale)| s.strip_suffix(unit).map(|n| (n.trim(), *scale)))?;
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let bits = value * scale;
    (bits.is_finite() && bits >= 1.0).then_some(bits as u64)
}

#[cfg(test)]
mod tests {
    use super::bits_per_second;
    use crate::validate::testutil::assert_yaml;

    fn doc(target: &str, http: &str) -> String {
        format!("type: MeshFaultInjection\nname: fi\nmesh: default\nspec:\n  targetRef: {target}\n  to:\n  - targetRef: {{kind: Mesh}}\n    default:\n      http:\n{http}")
    }

    #[test]
    fn valid_faults() {
        assert_yaml(
            &doc("{kind: MeshGateway, name: gw}", "      - abort: {httpStatus: 503, percentage: 50}\n        delay: {value: 10s, percentage: \"5.5\"}\n      - responseBandwidth: {limit: 100Mbps, percentage: 5}\n"),
            &[],
        );
    }

    #[test]
    fn kuma_paths_put_the_index_after_the_fault_kind() {
        assert_yaml(
            &doc("{kind: MeshGateway, name: gw}", "      - abort: {httpStatus: 677, percentage: 111}\n      - delay: {value: -5s, percentage: 1111}\n      - responseBandwidth: {limit: '1000', percentage: xyz}\n"),
            &[
                "spec.to[0].default.http.abort[0].httpStatus: must be in inclusive range [100, 599]",
                "spec.to[0].default.http.abort[0].percentage: must be in inclusive range [0.0, 100.0]",
                "spec.to[0].default.http.delay[1].value: must not be negative when defined",
                "spec.to[0].default.http.delay[1].percentage: must be in inclusive range [0.0, 100.0]",
                "spec.to[0].default.http.responseBandwidth[2].limit: must be in kbps/Mbps/Gbps units",
                "spec.to[0].default.http.responseBandwidth[2].percentage: string must be a valid number",
            ],
        );
    }

    #[test]
    fn scope_rules() {
        assert_yaml(
            &doc(
                "{kind: Mesh, proxyTypes: [Sidecar]}",
                "      - abort: {httpStatus: 500, percentage: 1}\n",
            ),
            &["spec.to: must not be defined"],
        );
        assert_yaml(
            &doc(
                "{kind: MeshHTTPRoute, name: r}",
                "      - abort: {httpStatus: 500, percentage: 1}\n",
            ),
            &["spec.targetRef.kind: value 'MeshHTTPRoute' is not supported"],
        );
    }

    #[test]
    fn bandwidth_units() {
        assert_eq!(bits_per_second("100kbps"), Some(100_000));
        assert_eq!(bits_per_second("2Mbps"), Some(2_000_000));
        assert_eq!(bits_per_second("1Gbps"), Some(1_000_000_000));
        assert_eq!(bits_per_second("1000"), None);
        assert_eq!(bits_per_second("10mbps"), None);
    }
}
