//! Dataplane, MeshService, MeshExternalService and Secret → [`crate::model::service`].

use super::{required, Lowered};
use crate::model::service::{
    Dataplane, ExternalService, ExternalTls, GatewayDataplane, Inbound, MeshService, Secret,
    ServicePort, ServiceSelector, TargetPort,
};
use crate::resources::{dataplane, service, Secret as RawSecret};
use crate::validate::values;

pub fn dataplane(spec: &dataplane::Dataplane) -> Lowered<Dataplane> {
    let net = spec.networking.as_ref();
    let address = net.and_then(|n| n.address.clone()).unwrap_or_default();
    let inbounds = net
        .and_then(|n| n.inbound.as_ref())
        .into_iter()
        .flatten()
        .map(|i| Inbound {
            address: i.address.clone().unwrap_or_else(|| address.clone()),
            port: i.port.and_then(values::port),
            name: i.name.clone(),
            tags: i.tags.clone().unwrap_or_default(),
            healthy: i.is_healthy(),
        })
        .collect();
    let gateway = net
        .and_then(|n| n.gateway.as_ref())
        .map(|g| GatewayDataplane {
            builtin: g.gateway_type.as_deref() == Some("BUILTIN"),
            tags: g.tags.clone().unwrap_or_default(),
        });
    Ok(Dataplane { gateway, inbounds })
}

pub fn mesh_service(spec: &service::MeshService) -> Lowered<MeshService> {
    let selector = spec
        .selector
        .as_ref()
        .map(|s| ServiceSelector {
            dataplane_tags: s.dataplane_tags.clone(),
            dataplane_name: s
                .dataplane_ref
                .as_ref()
                .map(|r| r.name.clone().unwrap_or_default()),
            dataplane_labels: s.dataplane_labels.clone(),
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let at = format!("spec.ports[{i}]");
        let port = required(p.port.and_then(values::port), &format!("{at}.port"))?;
        let target = match &p.target_port {
            // Kuma defaults targetPort to port.
            None => TargetPort::Number(port),
            Some(serde_norway::Value::Number(n)) => TargetPort::Number(required(
                n.as_i64().and_then(values::port),
                &format!("{at}.targetPort"),
            )?),
            Some(serde_norway::Value::String(s)) => match s.parse::<i64>() {
                Ok(n) => {
                    TargetPort::Number(required(values::port(n), &format!("{at}.targetPort"))?)
                }
                Err(_) => TargetPort::Name(s.clone()),
            },
            Some(_) => TargetPort::Number(required(None, &format!("{at}.targetPort"))?),
        };
        ports.push(ServicePort {
            port,
            name: p.name.clone(),
            target,
            h2: matches!(p.app_protocol.as_deref(), Some("http2" | "grpc")),
        });
    }
    Ok(MeshService { selector, ports })
}

pub fn external_service(spec: &service::MeshExternalService) -> Lowered<ExternalService> {
    let endpoints = spec
        .endpoints
        .iter()
        .filter_map(|e| Some((e.address.clone()?, e.port.and_then(values::port)?)))
        .collect();
    let tls = match &spec.tls {
        None => None,
        Some(t) => {
            let verification = t.verification.as_ref();
            let mode = verification
                .and_then(|v| v.mode.as_deref())
                .unwrap_or("Secured");
            let ca_cert = match verification.and_then(|v| v.ca_cert.as_ref()) {
                Some(ds) => Some(required(
                    values::datasource(ds),
                    "spec.tls.verification.caCert",
                )?),
                None => None,
            };
            Some(ExternalTls {
                enabled: t.enabled.unwrap_or(false),
                verify_cert: !matches!(mode, "SkipCA" | "SkipAll"),
                verify_hostname: matches!(mode, "Secured" | "SkipCA"),
                server_name: verification.and_then(|v| v.server_name.clone()),
                ca_cert,
            })
        }
    };
    Ok(ExternalService {
        h2: matches!(
            spec.match_.as_ref().and_then(|m| m.protocol.as_deref()),
            Some("http2" | "grpc")
        ),
        endpoints,
        tls,
    })
}

pub fn secret(spec: &RawSecret, prefix: &str) -> Lowered<Secret> {
    let payload = required(spec.base64_payload(), &format!("{prefix}data"))?;
    Ok(Secret {
        data: required(values::base64(payload), &format!("{prefix}data"))?,
    })
}
