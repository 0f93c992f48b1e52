//! Policy YAML for tests and benchmarks: the building blocks every suite uses, written once.
//!
//! Text may hold placeholders, filled by [`fill`]: `@LPORT:n@` (the n-th listener port),
//! `@PORT:name@` (the port of backend `name`), `@ADMIN_PORT@`.

/// Removes the common leading indentation of all non-empty lines and a leading newline, so YAML
/// can be written indented inside Rust raw strings.
pub fn dedent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in text.lines() {
        if line.len() >= indent {
            out.push_str(&line[indent..]);
        } else {
            out.push_str(line.trim_start());
        }
        out.push('\n');
    }
    out
}

/// Indents every non-empty line of `text` by `n` spaces.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A MeshGateway `edge-gateway` with one plain HTTP listener on `@LPORT:1@` (no hostname, tags
/// `listener: http`).
pub fn gateway_one_http() -> String {
    dedent(
        r#"
        type: MeshGateway
        mesh: default
        name: edge-gateway
        selectors:
        - match:
            kuma.io/service: edge-gateway
        conf:
          listeners:
          - port: @LPORT:1@
            protocol: HTTP
            tags:
              listener: http
        "#,
    )
}

/// A MeshHTTPRoute `name` targeting `edge-gateway` with one generic `to[]` entry whose `rules`
/// are `rules_yaml` (written at column 0, starting with `- matches:`).
pub fn http_route(name: &str, rules_yaml: &str) -> String {
    http_route_for_hosts(name, &[], rules_yaml)
}

/// [`http_route`] whose `to[]` entry lists `hostnames` (none: the generic group).
pub fn http_route_for_hosts(name: &str, hostnames: &[&str], rules_yaml: &str) -> String {
    http_route_tos(name, &[(hostnames, rules_yaml)])
}

/// A MeshHTTPRoute `name` targeting `edge-gateway` with one `to[]` entry per
/// `(hostnames, rules_yaml)`, in order.
pub fn http_route_tos(name: &str, tos: &[(&[&str], &str)]) -> String {
    let mut out = format!(
        "type: MeshHTTPRoute\nmesh: default\nname: {name}\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n  to:\n"
    );
    for (hostnames, rules) in tos {
        out.push_str("  - targetRef:\n      kind: Mesh\n");
        if !hostnames.is_empty() {
            out.push_str(&format!("    hostnames: [{}]\n", hostnames.join(", ")));
        }
        out.push_str(&format!("    rules:\n{}", indent(&dedent(rules), 4)));
    }
    out
}

/// The rule sending PathPrefix `/` to the legacy MeshService `service`.
pub fn catch_all_rule(service: &str) -> String {
    format!(
        "- matches:\n  - path:\n      type: PathPrefix\n      value: /\n  default:\n    backendRefs:\n    - kind: MeshService\n      name: {service}\n"
    )
}

/// A MeshHTTPRoute `name` sending PathPrefix `/` to the legacy MeshService `service`.
pub fn catch_all_route(name: &str, service: &str) -> String {
    http_route(name, &catch_all_rule(service))
}

/// One backend Dataplane (`dp-NAME`) per backend name, inbound on `@PORT:NAME@`, tagged
/// `kuma.io/service: NAME`, `kuma.io/protocol: http`.
pub fn dataplanes(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| dataplane(&format!("dp-{n}"), n, &format!("@PORT:{n}@")))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A backend Dataplane named `dp_name` with one inbound `port` for service `service`.
pub fn dataplane(dp_name: &str, service: &str, port: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {dp_name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: {port}\n    tags:\n      kuma.io/service: {service}\n      kuma.io/protocol: http\n"
    )
}

/// A MeshGateway `edge-gateway` with one HTTP listener per `(hostname, tags)`, listener `n`
/// (from 1) on `@LPORT:n@`; `port` numbers listeners sharing a port (`Some(1)`: `@LPORT:1@`).
pub fn gateway_listeners(listeners: &[(Option<u32>, &str, &str)]) -> String {
    let mut out = String::from(
        "type: MeshGateway\nmesh: default\nname: edge-gateway\nselectors:\n- match:\n    kuma.io/service: edge-gateway\nconf:\n  listeners:\n",
    );
    for (i, (port, hostname, tags)) in listeners.iter().enumerate() {
        let n = port.unwrap_or(i as u32 + 1);
        out.push_str(&format!("  - port: @LPORT:{n}@\n    protocol: HTTP\n"));
        if !hostname.is_empty() {
            out.push_str(&format!("    hostname: \"{hostname}\"\n"));
        }
        if !tags.is_empty() {
            out.push_str(&format!("    tags:\n{}", indent(tags, 6)));
        }
    }
    out
}

/// A MeshHTTPRoute attached by listener `tags` (YAML lines) with one PathPrefix rule.
pub fn tagged_prefix_route(name: &str, tags: &str, prefix: &str, service: &str) -> String {
    format!(
        "type: MeshHTTPRoute\nmesh: default\nname: {name}\nspec:\n  targetRef:\n    kind: MeshGateway\n    name: edge-gateway\n    tags:\n{}  to:\n  - targetRef:\n      kind: Mesh\n    rules:\n    - matches:\n      - path:\n          type: PathPrefix\n          value: {prefix}\n      default:\n        backendRefs:\n        - kind: MeshService\n          name: {service}\n",
        indent(tags, 6)
    )
}

/// The rule sending PathPrefix `prefix` to the legacy MeshService `service`.
pub fn prefix_rule(prefix: &str, service: &str) -> String {
    format!(
        "- matches:\n  - path:\n      type: PathPrefix\n      value: {prefix}\n  default:\n    backendRefs:\n    - kind: MeshService\n      name: {service}\n"
    )
}

/// The files of a gateway with one HTTP listener, one MeshHTTPRoute `route` holding
/// `rules_yaml`, and Dataplanes for `services`: the shape most routing tests need.
pub fn single_route_files(rules_yaml: &str, services: &[&str]) -> Vec<(&'static str, String)> {
    vec![
        ("gateway.yaml", gateway_one_http()),
        ("route.yaml", http_route("route", rules_yaml)),
        ("dataplanes.yaml", dataplanes(services)),
    ]
}

/// The builtin gateway Dataplane of `edge-gateway` (what Kuma would run the gateway as).
pub fn gateway_dataplane() -> String {
    dedent(
        r#"
        type: Dataplane
        mesh: default
        name: edge-gateway-1
        networking:
          address: 127.0.0.1
          gateway:
            type: BUILTIN
            tags:
              kuma.io/service: edge-gateway
        "#,
    )
}

/// A Universal policy document of `kind` named `name` in mesh `default` with `spec` (YAML
/// written at column 0).
pub fn policy(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "type: {kind}\nname: {name}\nmesh: default\nspec:\n{}",
        indent(&dedent(spec), 2)
    )
}

/// Fills the placeholders of `text`: `lport(n)` for `@LPORT:n@`, `port(name)` for
/// `@PORT:name@`, `admin` for `@ADMIN_PORT@`; other `@...@` text is left as it is.
pub fn fill(
    text: &str,
    mut lport: impl FnMut(u32) -> u16,
    mut port: impl FnMut(&str) -> u16,
    admin: u16,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('@') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let token = &after[..end];
        let replacement = if let Some(n) = token.strip_prefix("LPORT:") {
            n.parse().ok().map(|n| lport(n).to_string())
        } else if let Some(name) = token.strip_prefix("PORT:") {
            Some(port(name).to_string())
        } else if token == "ADMIN_PORT" {
            Some(admin.to_string())
        } else {
            None
        };
        match replacement {
            Some(r) => {
                out.push_str(&r);
                rest = &after[end + 1..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_other_text_kept() {
        let text = "port: @LPORT:2@ to @PORT:web@ admin @ADMIN_PORT@ mail a@b.c @LPORT:x@";
        let filled = fill(
            text,
            |n| 8000 + n as u16,
            |name| if name == "web" { 9 } else { 0 },
            7,
        );
        assert_eq!(filled, "port: 8002 to 9 admin 7 mail a@b.c @LPORT:x@");
    }
}
