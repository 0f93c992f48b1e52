//! `GET /route?port=P&host=H&path=/p[&method=M][&sni=S]`: which route answers a request, by
//! the proxy's own lookup (`Snapshot::route`), for the admin page's search box and for
//! people asking "why did this go there". Read-only.

use crate::snapshot::matchers::RequestView;
use crate::snapshot::{Route, Snapshot};
use serde_json::{json, Value};

/// Decodes `%XX` and `+` in a query value.
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match v
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn route(snap: &Snapshot, query: &str) -> Value {
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| decode(v))
        })
    };
    let Some(port) = param("port").and_then(|p| p.parse::<u16>().ok()) else {
        return json!({"error": "port= is required"});
    };
    let host = param("host").unwrap_or_default();
    let full_path = param("path").unwrap_or_else(|| "/".to_string());
    let (path, q) = match full_path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (full_path.clone(), None),
    };
    let method = param("method")
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())
        .unwrap_or(http::Method::GET);
    let sni = param("sni");
    let headers = http::HeaderMap::new();
    let view = RequestView {
        method: &method,
        path: &path,
        query: q.as_deref(),
        headers: &headers,
    };
    let host = crate::snapshot::hostname::normalize_host(&host).into_owned();
    match snap.route(port, sni.as_deref(), &host, &view) {
        Route::NoListener => {
            json!({"answer": "no listener on this port (the connection is refused)"})
        }
        Route::NoRoute { .. } => json!({"answer": "404: no route matches"}),
        Route::Entry {
            listener,
            vhost,
            entry,
        } => {
            let Some(e) = vhost.entry(entry) else {
                return json!({"answer": "404: no route matches"});
            };
            let action = match e.action.forward() {
                Some(f) => json!({"forward": f.backends.describe()}),
                None => json!({"redirect": true}),
            };
            json!({
                "answer": "routed",
                "listener": listener.label,
                "virtual_host": vhost.name,
                "route": &*e.route_name,
                "path": {"type": format!("{:?}", e.path.kind), "value": e.path.value},
                "action": action,
            })
        }
    }
}
