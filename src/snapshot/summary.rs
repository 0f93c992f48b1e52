//! The JSON description of a snapshot served by `GET /config`, rendered once per snapshot.

use super::action::Action;
use super::backends::{Backend, BackendState};
use super::route_table::RouteTable;
use super::{GatewayIdentity, Port, Serving, VirtualHost};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub fn describe<'a>(
    gw: &GatewayIdentity,
    ports: &HashMap<u16, Arc<Port>>,
    backends: impl Iterator<Item = &'a Arc<Backend>>,
) -> Value {
    let mut port_numbers: Vec<&u16> = ports.keys().collect();
    port_numbers.sort();
    let ports_json: Vec<Value> = port_numbers
        .into_iter()
        .filter_map(|p| ports.get(p))
        .map(|p| port(p))
        .collect();
    let mut backends: Vec<&Arc<Backend>> = backends.collect();
    backends.sort_by(|a, b| a.key.cmp(&b.key));
    json!({
        "gateway": {"name": gw.name, "mesh": gw.mesh, "service": gw.service},
        "ports": ports_json,
        "backends": backends.iter().map(|b| backend(b)).collect::<Vec<_>>(),
    })
}

fn port(p: &Port) -> Value {
    let detail = match &p.serving {
        Serving::Http { vhosts } => json!({"virtual_hosts": vhosts_json(vhosts.values())}),
        Serving::Https { chains } => json!({
            "sni": chains.values().map(|c| json!({
                "listener_hostname": c.listener.hostname,
                "certificates": c.certs.keys.len(),
                "virtual_hosts": vhosts_json(c.vhosts.values()),
            })).collect::<Vec<_>>()
        }),
        Serving::Tcp { backends, .. } => json!({"backends": backends.describe()}),
        Serving::Tls { chains } => json!({
            "sni": chains.values().map(|c| json!({
                "listener_hostname": c.listener.hostname,
                "mode": format!("{:?}", c.mode),
                "backends": c.backends.describe(),
            })).collect::<Vec<_>>()
        }),
    };
    json!({
        "port": p.port,
        "protocol": p.protocol,
        "connection_limit": p.connection_limit,
        "serving": detail,
    })
}

fn vhosts_json<'a>(vhosts: impl Iterator<Item = &'a Arc<VirtualHost>>) -> Vec<Value> {
    let mut v: Vec<&Arc<VirtualHost>> = vhosts.collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.iter()
        .map(|vh| {
            json!({
                "name": vh.name,
                "listener": vh.listener.label,
                "routes": routes_json(&vh.routes),
            })
        })
        .collect()
}

fn routes_json(t: &RouteTable) -> Vec<Value> {
    t.entries()
        .iter()
        .map(|e| {
            let action = match e.action.as_ref() {
                Action::Forward(f) => json!({"forward": f.backends.describe()}),
                Action::Redirect(r) => json!({"redirect": r.status}),
            };
            json!({
                "route": &*e.route_name,
                "path": {"type": format!("{:?}", e.path.kind), "value": e.path.value},
                "method": e.conditions.method.as_ref().map(|m| m.as_str()),
                "headers": e.conditions.headers.len(),
                "query": e.conditions.query.len(),
                "action": action,
            })
        })
        .collect()
}

fn backend(b: &Backend) -> Value {
    let state = match &b.state {
        BackendState::Ready => "ready".to_string(),
        BackendState::NoEndpoints => "no endpoints (503)".to_string(),
        BackendState::Unresolved(r) => format!("unresolved (500): {r}"),
    };
    json!({
        "name": b.key,
        "state": state,
        "endpoints": b.endpoints.iter().map(|e| e.addr.to_string()).collect::<Vec<_>>(),
    })
}
