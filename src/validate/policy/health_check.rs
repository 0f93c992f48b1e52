//! MeshHealthCheck (K:`pkg/plugins/policies/meshhealthcheck/api/v1alpha1/validator.go`; spec
//! §6.3).

use super::{
    check_top, count, duration, hundredths, lower_to, no_section, policy, Sign, GREATER_THAN_ZERO,
    PROXY_POLICY_TOP,
};
use crate::model::policy::health_check::{
    CheckHeaders, GrpcCheck, HealthCheckConf, HttpCheck, TcpCheck,
};
use crate::model::policy::Policy;
use crate::resources::policy::health_check::{self as raw, MeshHealthCheck};
use crate::validate::messages::{must_have_at_least_one, MUST_BE_DEFINED, MUST_NOT_BE_DEFINED};
use crate::validate::path::FieldPath;
use crate::validate::report::Report;

const TO_KINDS: &[&str] = &[
    "Mesh",
    "MeshService",
    "MeshExternalService",
    "MeshMultiZoneService",
];

pub fn lower(r: &mut Report, spec: &MeshHealthCheck) -> Option<Policy<HealthCheckConf>> {
    let root = FieldPath::spec_of(r.meta());
    check_top(r, &root, spec.target_ref.as_ref(), &PROXY_POLICY_TOP);
    no_section(r, &root, "from", spec.from.as_ref());
    no_section(r, &root, "rules", spec.rules.as_ref());
    if spec.to.as_ref().is_none_or(Vec::is_empty) {
        r.add(&root.field("to"), "needs at least one item");
    }
    let to = lower_to(r, &root, spec.to.as_ref(), TO_KINDS, conf);
    Some(policy(r, spec, to, Vec::new()))
}

fn conf(
    r: &mut Report,
    at: &FieldPath,
    d: Option<&raw::HealthCheckConf>,
) -> Option<HealthCheckConf> {
    let empty = raw::HealthCheckConf::default();
    let d = d.unwrap_or(&empty);
    if d.http.is_none() && d.tcp.is_none() && d.grpc.is_none() {
        r.add(at, must_have_at_least_one(&["http", "tcp", "grpc"]));
    }
    let positive = |r: &mut Report, field: &str, v: Option<&String>| {
        duration(r, &at.field(field), v, Sign::Positive)
    };
    let threshold = |r: &mut Report, field: &str, v: Option<i64>| {
        let v = v?;
        if v <= 0 {
            r.add(&at.field(field), GREATER_THAN_ZERO);
            return None;
        }
        count(r, &at.field(field), v, true)
    };
    if let Some(p) = &d.event_log_path {
        if p.is_empty() || p.contains('\0') {
            r.add(
                &at.field("eventLogPath"),
                "must be a valid path when defined",
            );
        }
    }
    Some(HealthCheckConf {
        interval: positive(r, "interval", d.interval.as_ref()),
        timeout: positive(r, "timeout", d.timeout.as_ref()),
        unhealthy_threshold: threshold(r, "unhealthyThreshold", d.unhealthy_threshold),
        healthy_threshold: threshold(r, "healthyThreshold", d.healthy_threshold),
        initial_jitter: positive(r, "initialJitter", d.initial_jitter.as_ref()),
        interval_jitter: positive(r, "intervalJitter", d.interval_jitter.as_ref()),
        interval_jitter_percent: d.interval_jitter_percent.and_then(|p| {
            if (0..=100).contains(&p) {
                u32::try_from(p).ok()
            } else {
                r.add(
                    &at.field("intervalJitterPercent"),
                    "must be in inclusive range [0, 100]",
                );
                None
            }
        }),
        healthy_panic_threshold: hundredths(
            r,
            &at.field("healthyPanicThreshold"),
            d.healthy_panic_threshold.as_ref(),
        ),
        fail_traffic_on_panic: d.fail_traffic_on_panic,
        no_traffic_interval: positive(r, "noTrafficInterval", d.no_traffic_interval.as_ref()),
        event_log_path: d.event_log_path.clone(),
        always_log_health_check_failures: d.always_log_health_check_failures,
        reuse_connection: d.reuse_connection,
        tcp: d.tcp.as_ref().map(|t| TcpCheck {
            disabled: t.disabled,
            send: t.send.clone(),
            receive: t.receive.clone(),
        }),
        http: d.http.as_ref().map(|h| http(r, &at.field("http"), h)),
        grpc: d.grpc.as_ref().map(|g| GrpcCheck {
            disabled: g.disabled,
            service_name: g.service_name.clone(),
            authority: g.authority.clone(),
        }),
    })
}

fn http(r: &mut Report, at: &FieldPath, h: &raw::HttpCheck) -> HttpCheck {
    if h.path.as_deref() == Some("") {
        r.add(&at.field("path"), MUST_BE_DEFINED);
    }
    let expected_statuses = h.expected_statuses.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| match u16::try_from(*s) {
                Ok(s) if (100..=599).contains(&s) => Some(s),
                _ => {
                    r.add(
                        &at.field("expectedStatuses").index(i),
                        "must be in inclusive range [100, 599]",
                    );
                    None
                }
            })
            .collect()
    });
    let request_headers_to_add = h.request_headers_to_add.as_ref().map(|m| {
        let at = at.field("requestHeadersToAdd");
        if m.remove.is_some() {
            r.add(&at.field("remove"), MUST_NOT_BE_DEFINED);
        }
        CheckHeaders {
            set: m
                .set
                .as_ref()
                .map(|l| super::rate_limit::header_list(r, &at.field("set"), l)),
            add: m
                .add
                .as_ref()
                .map(|l| super::rate_limit::header_list(r, &at.field("add"), l)),
        }
    });
    HttpCheck {
        disabled: h.disabled,
        path: h.path.clone().filter(|p| !p.is_empty()),
        request_headers_to_add,
        expected_statuses,
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::testutil::assert_yaml;

    fn doc(default: &str) -> String {
        format!(
            "type: MeshHealthCheck\nname: hc\nmesh: default\nspec:\n  targetRef: {{kind: MeshGateway, name: gw}}\n  to:\n  - targetRef: {{kind: Mesh}}\n    default: {default}\n"
        )
    }

    #[test]
    fn a_full_check_is_valid() {
        assert_yaml(
            &doc("{interval: 10s, timeout: 2s, unhealthyThreshold: 3, healthyThreshold: 1, intervalJitterPercent: 10, healthyPanicThreshold: '40.5', http: {path: /health, expectedStatuses: [200, 204], requestHeadersToAdd: {set: [{name: x-check, value: gw}]}}, tcp: {send: ping, receive: [pong]}}"),
            &[],
        );
    }

    #[test]
    fn kuma_rules_and_messages() {
        assert_yaml(
            &doc("{interval: 10s}"),
            &["spec.to[0].default: must have at least one defined: http, tcp, grpc"],
        );
        assert_yaml(
            &doc("{interval: 0s, timeout: -1s, unhealthyThreshold: 0, intervalJitterPercent: 101, healthyPanicThreshold: '101', http: {path: '', expectedStatuses: [99, 200, 600]}}"),
            &[
                "spec.to[0].default.interval: must be greater than zero when defined",
                "spec.to[0].default.timeout: must be greater than zero when defined",
                "spec.to[0].default.unhealthyThreshold: must be greater than zero when defined",
                "spec.to[0].default.intervalJitterPercent: must be in inclusive range [0, 100]",
                "spec.to[0].default.healthyPanicThreshold: must be in inclusive range [0.0, 100.0]",
                "spec.to[0].default.http.path: must be defined",
                "spec.to[0].default.http.expectedStatuses[0]: must be in inclusive range [100, 599]",
                "spec.to[0].default.http.expectedStatuses[2]: must be in inclusive range [100, 599]",
            ],
        );
    }
}
