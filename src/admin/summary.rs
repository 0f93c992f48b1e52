//! The JSON description of a snapshot served by `GET /config`, rendered on request (a
//! snapshot with 10,000 routes would otherwise carry a document of tens of megabytes).
//! By default virtual hosts show their entry counts and each port the distinct sets of route
//! policies its entries use; `full` lists every route entry with its policies.

use crate::snapshot::action::Action;
use crate::snapshot::backends::{Backend, BackendState};
use crate::snapshot::policy::RoutePolicies;
use crate::snapshot::route_table::RouteTable;
use crate::snapshot::{GatewayIdentity, Port, Serving, Snapshot, VirtualHost};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

use std::sync::Arc;

pub fn describe(snap: &Snapshot, full: bool) -> Value {
    let gw: &GatewayIdentity = &snap.gateway;
    let ports = &snap.ports;
    let mut port_numbers: Vec<&u16> = ports.keys().collect();
    port_numbers.sort();
    let ports_json: Vec<Value> = port_numbers
        .into_iter()
        .filter_map(|p| ports.get(p))
        .map(|p| port(p, full))
        .collect();
    let mut backends: Vec<&Arc<Backend>> = snap.backends.iter().collect();
    backends.sort_by(|a, b| a.key.cmp(&b.key));
    json!({
        "gateway": {"name": gw.name, "mesh": gw.mesh, "service": gw.service},
        "ports": ports_json,
        "backends": backends.iter().map(|b| backend(b)).collect::<Vec<_>>(),
    })
}

fn port(p: &Port, full: bool) -> Value {
    let detail = match &p.serving {
        Serving::Http { vhosts } => json!({"virtual_hosts": vhosts_json(vhosts.values(), full)}),
        Serving::Https { chains } => json!({
            "sni": chains.values().map(|c| json!({
                "listener_hostname": c.listener.hostname,
                "certificates": c.certs.keys.len(),
                "virtual_hosts": vhosts_json(c.vhosts.values(), full),
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
        "policies": super::policies::port(&p.policy),
        "route_policies": route_policy_sets(p),
        "serving": detail,
    })
}

/// The distinct route policy sets of a port's entries (shared objects, listed once), with
/// the routes using each.
fn route_policy_sets(p: &Port) -> Vec<Value> {
    let tables: Vec<&Arc<RouteTable>> = match &p.serving {
        Serving::Http { vhosts } => vhosts.values().flat_map(|v| v.tables.iter()).collect(),
        Serving::Https { chains } => chains
            .values()
            .flat_map(|c| c.vhosts.values())
            .flat_map(|v| v.tables.iter())
            .collect(),
        Serving::Tcp { .. } | Serving::Tls { .. } => Vec::new(),
    };
    let mut sets: Vec<(&Arc<RoutePolicies>, std::collections::BTreeSet<&str>)> = Vec::new();
    for entry in tables.iter().flat_map(|t| t.entries()) {
        let Some(f) = entry.action.forward() else {
            continue;
        };
        match sets.iter_mut().find(|(p, _)| Arc::ptr_eq(p, &f.policies)) {
            Some((_, routes)) => {
                routes.insert(&entry.route_name);
            }
            None => sets.push((&f.policies, [&*entry.route_name].into_iter().collect())),
        }
    }
    sets.iter()
        .map(|(p, routes)| {
            let mut doc = super::policies::route(p);
            let shown: Vec<&&str> = routes.iter().take(20).collect();
            doc["routes"] = json!(routes.len());
            doc["some_routes"] = json!(shown);
            doc
        })
        .collect()
}

fn vhosts_json<'a>(vhosts: impl Iterator<Item = &'a Arc<VirtualHost>>, full: bool) -> Vec<Value> {
    let mut v: Vec<&Arc<VirtualHost>> = vhosts.collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v.iter()
        .map(|vh| {
            let mut doc = json!({
                "name": vh.name,
                "listener": vh.listener.label,
                "route_entries": vh.entry_count(),
            });
            if full {
                let routes: Vec<Value> = vh.tables.iter().flat_map(|t| routes_json(t)).collect();
                doc["routes"] = Value::Array(routes);
            }
            doc
        })
        .collect()
}

fn routes_json(t: &RouteTable) -> Vec<Value> {
    t.entries()
        .iter()
        .map(|e| {
            let action = match e.action.as_ref() {
                Action::Forward(f) => json!({
                    "forward": f.backends.describe(),
                    "policies": super::policies::route(&f.policies),
                }),
                Action::Redirect(r) => json!({"redirect": r.status}),
            };
            json!({
                "route": &*e.route_name,
                "path": {"type": format!("{:?}", e.path.kind), "value": e.path.value},
                "method": e.conditions.method().map(|m| m.as_str()),
                "headers": e.conditions.headers().len(),
                "query": e.conditions.query().len(),
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
    let c = &b.cluster;
    let ms = |d: Option<std::time::Duration>| d.map(|d| format!("{}ms", d.as_millis()));
    let now = crate::snapshot::endpoint_state::now_ms();
    let endpoint_state: Vec<Value> = b
        .endpoints
        .iter()
        .map(|e| {
            let s = &e.state;
            let ejected = c.outlier.as_ref().and_then(|o| {
                let until = s.ejected_until_ms(o.base_ejection_time, o.max_ejection_time)?;
                Some(json!({
                    "by": s.ejected_by().as_str(),
                    "remaining_ms": until.saturating_sub(now),
                    "times": s.ejections.load(Ordering::Relaxed),
                }))
            });
            json!({
                "address": e.addr.to_string(),
                "health": if c.health.is_none() {
                    "not checked"
                } else if s.check_failed() {
                    "unhealthy"
                } else {
                    "healthy"
                },
                "ejected": ejected,
                "in_flight": s.in_flight.load(Ordering::Relaxed),
            })
        })
        .collect();
    let rt = &b.runtime;
    json!({
        "name": b.key,
        "state": state,
        "endpoints": b.endpoints.iter().map(|e| e.addr.to_string()).collect::<Vec<_>>(),
        "endpoint_state": endpoint_state,
        "cluster": {
            "connect_timeout": ms(Some(c.connect_timeout)),
            "idle_timeout": ms(c.idle_timeout),
            "max_stream_duration": ms(c.max_stream_duration),
            "max_connection_duration": ms(c.max_connection_duration),
            "load_balancer": c.lb.kind.name(),
            "hash_policies": c.lb.hash_policies.len(),
            "health_check": c.health.as_ref().map(|h| format!("{h:?}")),
            "connection_limits": c.limits.map(|l| json!({
                "max_connections": l.max_connections,
                "max_pending_requests": l.max_pending_requests,
                "max_requests": l.max_requests,
                "max_retries": l.max_retries,
            })),
            "outlier_detection": c.outlier.as_ref().map(|o| format!("{o:?}")),
            "healthy_panic_threshold": f64::from(c.panic_threshold) / 100.0,
            "fail_traffic_on_panic": c.fail_traffic_on_panic,
        },
        "in_flight": {
            "requests": rt.requests.load(Ordering::Relaxed),
            "connections": rt.connections.load(Ordering::Relaxed),
            "pending": rt.pending.load(Ordering::Relaxed),
            "retries": rt.retries.load(Ordering::Relaxed),
        },
    })
}
