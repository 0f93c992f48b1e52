//! MeshAccessLog as the request path reads it (spec §11): per port, the logs to write, each
//! a template of Envoy command operators compiled once per snapshot and a sink that outlives
//! snapshots: lines to a file or a TCP collector (`runtime::log_sinks`), or OpenTelemetry log
//! records to an OTLP collector (`runtime::otel_logs`).

use http::HeaderName;
use std::fmt::Write as _;
use std::sync::Arc;

/// Kuma's default format of an HTTP access log line (K:`…/meshaccesslog/plugin/xds/configurer.go`).
pub const DEFAULT_HTTP: &str = "[%START_TIME%] %KUMA_MESH% \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%KUMA_SOURCE_SERVICE%\" \"%KUMA_DESTINATION_SERVICE%\" \"%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%\" \"%UPSTREAM_HOST%\"";

/// Kuma's default format of a TCP access log line.
pub const DEFAULT_TCP: &str = "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes";

/// Where formatted lines go; `send` never blocks (a full queue drops the line).
pub trait LogSink: Send + Sync + std::fmt::Debug {
    fn send(&self, line: String);
}

/// Which side of the gateway a log describes (`to[]`: outbound; `from[]`/`rules[]`: inbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Outbound,
    Inbound,
}

/// An OpenTelemetry log record, rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub body: LogValue,
    pub attributes: Vec<(String, String)>,
    /// When the request started.
    pub time: std::time::SystemTime,
}

/// An OTLP `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum LogValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<LogValue>),
    KvList(Vec<(String, LogValue)>),
}

/// Where OpenTelemetry log records go; `send` never blocks (a full queue drops the record).
pub trait RecordSink: Send + Sync + std::fmt::Debug {
    /// Gets ready to send (an exporter is built) when a snapshot using the sink is applied;
    /// until then records are dropped.
    fn start(&self) {}
    fn send(&self, record: LogRecord);
}

/// A body whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    Text(Vec<Piece>),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<BodyTemplate>),
    KvList(Vec<(String, BodyTemplate)>),
}

#[derive(Debug)]
pub enum LogOutput {
    /// Formatted lines.
    Lines {
        template: Template,
        sink: Arc<dyn LogSink>,
    },
    /// OpenTelemetry log records (body and attributes).
    Records {
        body: BodyTemplate,
        attributes: Vec<(String, Vec<Piece>)>,
        sink: Arc<dyn RecordSink>,
    },
}

#[derive(Debug)]
pub struct AccessLog {
    pub direction: Direction,
    pub output: LogOutput,
}

impl AccessLog {
    /// Writes the entry of one request or connection; `started` is when it began.
    pub fn write(&self, f: &dyn Fields, started: std::time::SystemTime) {
        match &self.output {
            LogOutput::Lines { template, sink } => sink.send(template.render(f)),
            LogOutput::Records {
                body,
                attributes,
                sink,
            } => sink.send(LogRecord {
                body: body.render(f),
                attributes: attributes
                    .iter()
                    .map(|(k, pieces)| (k.clone(), render_text(pieces, f)))
                    .collect(),
                time: started,
            }),
        }
    }
}

/// Text with operators substituted; one without a value is `-` (as in Plain lines).
fn render_text(pieces: &[Piece], f: &dyn Fields) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Op(op) => match f.value(op) {
                Some(v) if !v.is_empty() => v.append(&mut out),
                _ => out.push('-'),
            },
        }
    }
    out
}

impl BodyTemplate {
    /// The template of `text` (unknown operators kept as text, added to `unknown`).
    pub fn text(text: &str, unknown: &mut Vec<String>) -> BodyTemplate {
        BodyTemplate::Text(pieces(text, unknown))
    }

    fn render(&self, f: &dyn Fields) -> LogValue {
        match self {
            BodyTemplate::Text(pieces) => LogValue::String(render_text(pieces, f)),
            BodyTemplate::Bool(b) => LogValue::Bool(*b),
            BodyTemplate::Int(i) => LogValue::Int(*i),
            BodyTemplate::Double(d) => LogValue::Double(*d),
            BodyTemplate::Bytes(b) => LogValue::Bytes(b.clone()),
            BodyTemplate::Array(items) => {
                LogValue::Array(items.iter().map(|i| i.render(f)).collect())
            }
            BodyTemplate::KvList(items) => LogValue::KvList(
                items
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(f)))
                    .collect(),
            ),
        }
    }
}

/// Attribute templates (unknown operators kept as text, added to `unknown`).
pub fn attribute_templates(
    attributes: &[(String, String)],
    unknown: &mut Vec<String>,
) -> Vec<(String, Vec<Piece>)> {
    attributes
        .iter()
        .map(|(k, v)| (k.clone(), pieces(v, unknown)))
        .collect()
}

/// An Envoy command operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    StartTime,
    /// `%REQ(A?B)%`: the first present of the headers (`:method`, `:path`, `:authority`,
    /// `:scheme` are the request's own).
    Req(Vec<String>),
    Resp(Vec<String>),
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    RouteName,
    RequestedServerName,
    KumaMesh,
    KumaSourceService,
    KumaDestinationService,
    KumaSourceAddressWithoutPort,
    KumaTrafficDirection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Op(Op),
}

/// What a template reads its values from (one request or connection).
pub trait Fields {
    /// The value of `op`; `None` (or an empty string) when there is none.
    fn value(&self, op: &Op) -> Option<Value<'_>>;
}

/// One operator's value, written straight into the line: a line costs no allocation per
/// value (six per Json line of the benchmark's access log before).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Owned(String),
    Uint(u64),
    Addr(std::net::SocketAddr),
    Ip(std::net::IpAddr),
    /// `%START_TIME%`: RFC 3339 in UTC with milliseconds.
    Time(std::time::SystemTime),
}

impl Value<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Value::Str(s) => s.is_empty(),
            Value::Owned(s) => s.is_empty(),
            _ => false,
        }
    }

    fn append(&self, out: &mut String) {
        match self {
            Value::Str(s) => out.push_str(s),
            Value::Owned(s) => out.push_str(s),
            Value::Uint(n) => push_decimal(out, *n),
            Value::Addr(std::net::SocketAddr::V4(a)) => {
                push_ipv4(out, a.ip());
                out.push(':');
                push_decimal(out, u64::from(a.port()));
            }
            Value::Addr(a) => {
                let _ = write!(out, "{a}");
            }
            Value::Ip(std::net::IpAddr::V4(ip)) => push_ipv4(out, ip),
            Value::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            Value::Time(t) => crate::admin::access_log::append_timestamp(*t, out),
        }
    }

    /// Appends the value inside a JSON string. Only strings can hold a byte JSON escapes:
    /// numbers, addresses and times go in as they are.
    fn append_json(&self, out: &mut String) {
        match self {
            Value::Str(s) => push_json_escaped(out, s),
            Value::Owned(s) => push_json_escaped(out, s),
            v => v.append(out),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    Plain {
        pieces: Vec<Piece>,
        omit_empty: bool,
    },
    Json {
        entries: Vec<JsonEntry>,
        omit_empty: bool,
    },
}

/// One key of a Json template, its JSON escaping done when the template is built: `key` is
/// the quoted key and its colon, and the value's text pieces are escaped already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonEntry {
    key: String,
    pieces: Vec<Piece>,
}

fn parse_op(name: &str) -> Option<Op> {
    // Lower-cased names; `:method`, `:path`, `:authority` and `:scheme` are the request's.
    let headers = |inner: &str| -> Option<Vec<String>> {
        let names: Vec<String> = inner
            .split('?')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let valid = names.iter().all(|n| {
            n.strip_prefix(':').map_or_else(
                || HeaderName::from_bytes(n.as_bytes()).is_ok(),
                |p| !p.is_empty(),
            )
        });
        valid.then_some(names)
    };
    if let Some(inner) = name.strip_prefix("REQ(").and_then(|r| r.split(')').next()) {
        return headers(inner).map(Op::Req);
    }
    if let Some(inner) = name.strip_prefix("RESP(").and_then(|r| r.split(')').next()) {
        return headers(inner).map(Op::Resp);
    }
    Some(match name {
        "START_TIME" => Op::StartTime,
        "PROTOCOL" => Op::Protocol,
        "RESPONSE_CODE" => Op::ResponseCode,
        "RESPONSE_FLAGS" => Op::ResponseFlags,
        "BYTES_RECEIVED" => Op::BytesReceived,
        "BYTES_SENT" => Op::BytesSent,
        "DURATION" => Op::Duration,
        "UPSTREAM_HOST" => Op::UpstreamHost,
        "UPSTREAM_CLUSTER" => Op::UpstreamCluster,
        "DOWNSTREAM_REMOTE_ADDRESS" => Op::DownstreamRemoteAddress,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Op::DownstreamRemoteAddressWithoutPort,
        "ROUTE_NAME" => Op::RouteName,
        "REQUESTED_SERVER_NAME" => Op::RequestedServerName,
        "KUMA_MESH" => Op::KumaMesh,
        "KUMA_SOURCE_SERVICE" => Op::KumaSourceService,
        "KUMA_DESTINATION_SERVICE" => Op::KumaDestinationService,
        "KUMA_SOURCE_ADDRESS_WITHOUT_PORT" | "KUMA_SOURCE_ADDRESS" => {
            Op::KumaSourceAddressWithoutPort
        }
        "KUMA_TRAFFIC_DIRECTION" => Op::KumaTrafficDirection,
        _ => return None,
    })
}

/// Splits `text` into literal text and operators; an unknown operator stays literal text
/// (its name is returned, for a warning).
fn pieces(text: &str, unknown: &mut Vec<String>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        lit.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 && !after[..end].contains(char::is_whitespace) => {
                let name = &after[..end];
                match parse_op(name) {
                    Some(op) => {
                        if !lit.is_empty() {
                            out.push(Piece::Text(std::mem::take(&mut lit)));
                        }
                        out.push(Piece::Op(op));
                    }
                    None => {
                        unknown.push(name.to_string());
                        lit.push('%');
                        lit.push_str(name);
                        lit.push('%');
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                lit.push('%');
                rest = after;
            }
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        out.push(Piece::Text(lit));
    }
    out
}

impl Template {
    /// A Plain template from `text`, with the unknown operators it keeps literally.
    pub fn plain(text: &str, omit_empty: bool) -> (Template, Vec<String>) {
        let mut unknown = Vec::new();
        let pieces = pieces(text, &mut unknown);
        (Template::Plain { pieces, omit_empty }, unknown)
    }

    pub fn json(entries: &[(String, String)], omit_empty: bool) -> (Template, Vec<String>) {
        let mut unknown = Vec::new();
        let entries = entries
            .iter()
            .map(|(k, v)| {
                let mut key = String::with_capacity(k.len() + 3);
                push_json_str(&mut key, k);
                key.push(':');
                let pieces = pieces(v, &mut unknown)
                    .into_iter()
                    .map(|p| match p {
                        Piece::Text(t) => {
                            let mut escaped = String::with_capacity(t.len());
                            push_json_escaped(&mut escaped, &t);
                            Piece::Text(escaped)
                        }
                        op => op,
                    })
                    .collect();
                JsonEntry { key, pieces }
            })
            .collect();
        (
            Template::Json {
                entries,
                omit_empty,
            },
            unknown,
        )
    }

    /// One line (with its newline) for the values `f` gives.
    pub fn render(&self, f: &dyn Fields) -> String {
        match self {
            Template::Plain { pieces, omit_empty } => {
                let mut out = String::with_capacity(256);
                for p in pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Op(op) => match f.value(op) {
                            Some(v) if !v.is_empty() => v.append(&mut out),
                            _ if *omit_empty => {}
                            _ => out.push('-'),
                        },
                    }
                }
                out.push('\n');
                out
            }
            Template::Json {
                entries,
                omit_empty,
            } => {
                // Written by hand, straight into the line: keys keep the policy's order (a
                // JSON map would sort them), and no value is copied on the way.
                let mut out = String::with_capacity(256);
                out.push('{');
                for JsonEntry { key, pieces } in entries {
                    let entry_start = out.len();
                    if entry_start > 1 {
                        out.push(',');
                    }
                    out.push_str(key);
                    let value_start = out.len();
                    out.push('"');
                    let mut missing = false;
                    for p in pieces {
                        match p {
                            Piece::Text(t) => out.push_str(t),
                            Piece::Op(op) => match f.value(op) {
                                Some(v) if !v.is_empty() => v.append_json(&mut out),
                                _ => missing = true,
                            },
                        }
                    }
                    let whole_op = pieces.len() == 1 && matches!(pieces[0], Piece::Op(_));
                    if missing && whole_op {
                        if *omit_empty {
                            out.truncate(entry_start);
                        } else {
                            out.truncate(value_start);
                            out.push_str("null");
                        }
                    } else {
                        out.push('"');
                    }
                }
                out.push_str("}\n");
                out
            }
        }
    }
}

/// `n` in decimal, without the formatting machinery (`write!` was a third of a Json line's
/// cost: status, duration, byte counts and the upstream address are numbers).
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// An IPv4 address in dotted decimal (as `Ipv4Addr`'s `Display`).
fn push_ipv4(out: &mut String, ip: &std::net::Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_decimal(out, u64::from(octet));
    }
}

/// `s` as a JSON string, quotes included.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    push_json_escaped(out, s);
    out.push('"');
}

/// `s` escaped for the inside of a JSON string (RFC 8259 §7: quote, backslash and control
/// characters).
fn push_json_escaped(out: &mut String, s: &str) {
    // Most values (paths, methods, host names) need no escape: one scan, one copy.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(s);
        return;
    }
    let mut plain_from = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain_from..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain_from = i + 1;
    }
    out.push_str(&s[plain_from..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct F;
    impl Fields for F {
        fn value(&self, op: &Op) -> Option<Value<'_>> {
            match op {
                Op::Req(h) if h.iter().any(|h| h == ":method") => Some(Value::Str("GET")),
                Op::Req(h) if h.iter().any(|h| h == ":path") => Some(Value::Str("/a")),
                Op::ResponseCode => Some(Value::Uint(200)),
                Op::KumaMesh => Some(Value::Owned("default".into())),
                _ => None,
            }
        }
    }

    #[test]
    fn plain_and_json_render_envoys_way() {
        let (t, unknown) = Template::plain("%KUMA_MESH% %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% %REQ(USER-AGENT)% 50% %NOPE%", false);
        assert_eq!(unknown, vec!["NOPE".to_string()]);
        assert_eq!(t.render(&F), "default GET /a 200 - 50% %NOPE%\n");
        let (t, _) = Template::plain("[%REQ(USER-AGENT)%]", true);
        assert_eq!(t.render(&F), "[]\n");
        let entries = vec![
            ("m".to_string(), "%REQ(:METHOD)%".to_string()),
            ("ua".to_string(), "%REQ(USER-AGENT)%".to_string()),
            ("s".to_string(), "code=%RESPONSE_CODE%".to_string()),
        ];
        let (t, _) = Template::json(&entries, false);
        assert_eq!(
            t.render(&F),
            "{\"m\":\"GET\",\"ua\":null,\"s\":\"code=200\"}\n"
        );
        let (t, _) = Template::json(&entries, true);
        assert_eq!(t.render(&F), "{\"m\":\"GET\",\"s\":\"code=200\"}\n");
    }

    #[test]
    fn values_are_written_as_their_display_forms() {
        use std::net::{IpAddr, Ipv6Addr, SocketAddr};
        let cases: Vec<(Value<'_>, String)> = vec![
            (Value::Uint(0), "0".into()),
            (Value::Uint(u64::MAX), u64::MAX.to_string()),
            (Value::Uint(200), "200".into()),
            (
                Value::Addr("10.0.255.1:8080".parse().unwrap()),
                "10.0.255.1:8080".into(),
            ),
            (
                Value::Addr("[::1]:443".parse().unwrap()),
                "[::1]:443".parse::<SocketAddr>().unwrap().to_string(),
            ),
            (Value::Ip("0.0.0.0".parse().unwrap()), "0.0.0.0".into()),
            (
                Value::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                Ipv6Addr::LOCALHOST.to_string(),
            ),
        ];
        for (value, display) in cases {
            let mut out = String::new();
            value.append(&mut out);
            assert_eq!(out, display, "{value:?}");
        }
    }

    #[test]
    fn json_values_and_keys_are_escaped() {
        struct Hostile;
        impl Fields for Hostile {
            fn value(&self, _: &Op) -> Option<Value<'_>> {
                Some(Value::Str("a\"b\\c\n\u{1}é\u{7f}"))
            }
        }
        let entries = vec![(
            "k\"ey".to_string(),
            "%REQ(USER-AGENT)% %RESPONSE_CODE%".to_string(),
        )];
        let (t, _) = Template::json(&entries, false);
        let line = t.render(&Hostile);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("valid JSON");
        assert_eq!(v["k\"ey"], "a\"b\\c\n\u{1}é\u{7f} a\"b\\c\n\u{1}é\u{7f}");
    }

    #[test]
    fn kumas_default_formats_parse_without_unknown_operators() {
        for f in [DEFAULT_HTTP, DEFAULT_TCP] {
            let (_, unknown) = Template::plain(f, false);
            assert!(unknown.is_empty(), "{unknown:?}");
        }
    }
}
