//! Routing in process: a snapshot built from policy files, asked what the proxy would do
//! with a request. The answer comes from the proxy's own decision and edit code
//! (`proxy::http::decide`, `proxy::http::edit`) over `Snapshot::route`, so a routing test
//! needs no process, socket or backend, yet checks what the wire would show: the backend
//! that gets the request and the request it gets, or the status the client gets.

use super::fixtures::fill;
use crate::compile::{CompileOptions, Compiler, SourceFile, SourceText};
use crate::proxy::http::checks::{refusal, CheckRules};
use crate::proxy::http::decide::{decide, Decision};
use crate::proxy::http::{edit, RequestCtx};
use crate::snapshot::Snapshot;
use pingora::http::{RequestHeader, ResponseHeader};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Port of listener `n` (`@LPORT:n@`).
pub fn listener_port(n: u32) -> u16 {
    20000 + n as u16
}

/// A request head as Pingora would hand it over, `None` when one cannot be written.
fn request_head(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Option<RequestHeader> {
    let mut req = RequestHeader::build(method, target.as_bytes(), None).ok()?;
    req.insert_header(http::header::HOST, host).ok()?;
    for (name, value) in headers {
        req.append_header(name.to_string(), *value).ok()?;
    }
    Some(req)
}

/// The address every in-process request comes from.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

/// A snapshot built from policy files, and the backend names behind its endpoint ports.
pub struct Routing {
    pub snapshot: Arc<Snapshot>,
    /// Endpoint port → backend name (`@PORT:name@`).
    names: HashMap<u16, String>,
}

/// What the proxy would do with one request.
pub struct Answer {
    /// The status meshgate answers itself with (404, redirect, 5xx), `None` when proxied.
    pub status: Option<u16>,
    /// `Location` of a redirect.
    pub location: Option<String>,
    /// The backend (by `@PORT:name@` name) whose endpoint gets the request.
    pub backend: Option<String>,
    /// The MeshHTTPRoute whose entry matched.
    pub route: Option<String>,
    /// The request as that backend receives it.
    pub upstream: Option<RequestHeader>,
    ctx: RequestCtx,
}

impl Routing {
    /// Builds `files` (name, YAML with placeholders). Panics with every problem when the
    /// files are not valid: a test states its files are.
    pub fn build(files: &[(&str, String)]) -> Routing {
        let mut ports: HashMap<String, u16> = HashMap::new();
        let mut next = 40000u16;
        let sources: Vec<SourceFile> = files
            .iter()
            .map(|(name, text)| SourceFile {
                name: name.to_string(),
                text: SourceText::Read(fill(
                    text,
                    listener_port,
                    |backend| {
                        *ports.entry(backend.to_string()).or_insert_with(|| {
                            next += 1;
                            next
                        })
                    },
                    19999,
                )),
            })
            .collect();
        let built = Compiler::new(CompileOptions::default()).build(&sources, 1);
        let built = match built {
            Ok(b) => b,
            Err(rejected) => panic!(
                "the policies are not valid:\n{}",
                crate::violation::render(&rejected.violations)
            ),
        };
        Routing {
            snapshot: Arc::new(built.snapshot),
            names: ports.into_iter().map(|(name, port)| (port, name)).collect(),
        }
    }

    /// The policies of listener `listener`'s port.
    pub fn port_policy(&self, listener: u32) -> &crate::snapshot::policy::PortPolicy {
        let port = self
            .snapshot
            .port(listener_port(listener))
            .unwrap_or_else(|| panic!("no port for listener {listener}"));
        &port.policy
    }

    /// `method target` with `Host: host` and `headers` on plain-HTTP listener `listener`.
    pub fn request(
        &self,
        listener: u32,
        method: &str,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        self.ask(listener, None, method, target, host, headers)
    }

    /// The same on an HTTPS listener, for a connection with TLS server name `sni`.
    pub fn request_tls(
        &self,
        listener: u32,
        sni: &str,
        method: &str,
        target: &str,
        host: &str,
    ) -> Answer {
        self.ask(listener, Some(sni), method, target, host, &[])
    }

    /// Like [`Routing::request`], for generated input: `None` when the request cannot be
    /// written at all (Pingora's parser would refuse it), a refusal status when meshgate's
    /// checks refuse it, else the decision.
    pub fn try_request(
        &self,
        listener: u32,
        method: &str,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Option<Answer> {
        let req = request_head(method, target, host, headers)?;
        let rules = CheckRules {
            allow_underscore_headers: false,
            max_header_fields: crate::proxy::conn::MAX_HEAD_FIELDS,
            max_header_bytes: crate::proxy::conn::MAX_HEAD_BYTES,
            reject_http10: false,
        };
        if let Some(refusal) = refusal(&req, None, rules) {
            let ctx = RequestCtx::for_connection(listener_port(listener), false);
            return Some(Answer {
                status: Some(refusal.status),
                location: None,
                backend: None,
                route: None,
                upstream: None,
                ctx,
            });
        }
        Some(self.decide(listener, None, req))
    }

    fn ask(
        &self,
        listener: u32,
        sni: Option<&str>,
        method: &str,
        target: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let req = request_head(method, target, host, headers)
            .unwrap_or_else(|| panic!("cannot write {method} {target} Host: {host} {headers:?}"));
        self.decide(listener, sni, req)
    }

    fn decide(&self, listener: u32, sni: Option<&str>, req: RequestHeader) -> Answer {
        let mut ctx = RequestCtx::for_connection(listener_port(listener), sni.is_some());
        let decision = decide(&self.snapshot, &req, sni, &mut ctx);
        ctx.set_snapshot(self.snapshot.clone());
        let route = ctx.entry().map(|e| e.route_name.to_string());
        let mut answer = Answer {
            status: None,
            location: None,
            backend: None,
            route,
            upstream: None,
            ctx,
        };
        match decision {
            Decision::Local(local) => answer.status = Some(local.status),
            Decision::Redirect { location, status } => {
                answer.status = Some(status);
                answer.location = Some(location);
            }
            Decision::Proxy => {
                let endpoint = answer
                    .ctx
                    .upstream()
                    .and_then(|u| u.backend.endpoints.get(u.endpoint).map(|e| e.addr.port()));
                answer.backend = endpoint.map(|p| {
                    self.names
                        .get(&p)
                        .cloned()
                        .unwrap_or_else(|| format!("port {p}"))
                });
                let mut upstream = req.clone();
                edit::upstream_request(&mut upstream, &answer.ctx, Some(CLIENT))
                    .expect("upstream request");
                answer.upstream = Some(upstream);
            }
        }
        answer
    }

    /// Asserts `GET path` with `Host: host` on listener `listener` goes to `backend`.
    #[track_caller]
    pub fn assert_routed(&self, listener: u32, path: &str, host: &str, backend: &str) -> Answer {
        self.assert_routed_with(listener, "GET", path, host, &[], backend)
    }

    #[track_caller]
    pub fn assert_routed_with(
        &self,
        listener: u32,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        backend: &str,
    ) -> Answer {
        let a = self.request(listener, method, path, host, headers);
        assert_eq!(
            a.backend.as_deref(),
            Some(backend),
            "{method} {path} Host: {host} {headers:?}: {a:?}"
        );
        a
    }

    /// Asserts `GET path` with `Host: host` is answered by meshgate with `status`.
    #[track_caller]
    pub fn assert_status(&self, listener: u32, path: &str, host: &str, status: u16) -> Answer {
        self.assert_status_with(listener, "GET", path, host, &[], status)
    }

    #[track_caller]
    pub fn assert_status_with(
        &self,
        listener: u32,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        status: u16,
    ) -> Answer {
        let a = self.request(listener, method, path, host, headers);
        assert_eq!(
            a.status,
            Some(status),
            "{method} {path} Host: {host} {headers:?}: {a:?}"
        );
        a
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("location", &self.location)
            .field("backend", &self.backend)
            .field("route", &self.route)
            .field("seen_path", &self.seen_path())
            .finish()
    }
}

impl Answer {
    /// The policies of the matched entry (timeouts, retries, rate limit).
    pub fn policies(&self) -> Option<&crate::snapshot::policy::RoutePolicies> {
        self.ctx.forward().map(|f| &*f.policies)
    }

    /// The matched entry's forward action (its rate-limit bucket, backends).
    pub fn forward(&self) -> Option<&crate::snapshot::action::Forward> {
        self.ctx.forward()
    }

    /// The cluster settings of the backend the request goes to.
    pub fn cluster(&self) -> Option<&crate::snapshot::cluster::ClusterConf> {
        self.ctx.upstream().map(|u| &*u.backend.cluster)
    }

    /// The path and query the backend receives.
    pub fn seen_path(&self) -> String {
        self.upstream
            .as_ref()
            .map(|u| String::from_utf8_lossy(u.raw_path()).into_owned())
            .unwrap_or_default()
    }

    /// Every value of header `name` the backend receives, joined with `, `.
    pub fn seen_header(&self, name: &str) -> Option<String> {
        let up = self.upstream.as_ref()?;
        let values: Vec<String> = up
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    pub fn seen_host(&self) -> String {
        self.seen_header("host").unwrap_or_default()
    }

    /// The response the client gets when the backend answers 200 with `headers`.
    pub fn response_with(&self, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(200, None).expect("response");
        for (name, value) in headers {
            resp.append_header(name.to_string(), *value)
                .expect("header");
        }
        edit::response(&mut resp, &self.ctx, false).expect("response edit");
        resp
    }
}
