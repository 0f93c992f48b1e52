//! MeshGateway after validation.

use crate::resources::common::Tags;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Protocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "TLS")]
    Tls,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s {
            "HTTP" => Protocol::Http,
            "HTTPS" => Protocol::Https,
            "TCP" => Protocol::Tcp,
            "TLS" => Protocol::Tls,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
        }
    }

    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    Terminate,
    Passthrough,
}

#[derive(Debug, Clone)]
pub struct Gateway {
    /// `selectors[].match`: which gateway Dataplanes serve it.
    pub selectors: Vec<Tags>,
    pub tags: Tags,
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone)]
pub struct Listener {
    /// Position in `conf.listeners` (for field paths).
    pub index: usize,
    pub port: u16,
    pub protocol: Protocol,
    /// Lower case; `*` for any host.
    pub hostname: String,
    pub tags: Tags,
    pub tls: Option<ListenerTls>,
    /// `resources.connectionLimit`, when above 0.
    pub connection_limit: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub mode: TlsMode,
    pub certificates: Vec<DataSource>,
}

/// Where certificate or CA bytes come from (Kuma's `DataSource`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DataSource {
    /// A Secret of the mesh, by name.
    Secret(String),
    /// A file, relative paths from the policy directory.
    File(String),
    /// The bytes themselves (`inline` base64-decoded, or `inlineString`).
    Inline(Vec<u8>),
}
