//! `Secret` (Universal: `type: Secret`, `data` = base64). Referenced by TLS certificate
//! datasources `{secret: NAME}`.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Secret {
    /// Universal form: base64 of the secret bytes. Kubernetes form: `data.value`.
    pub data: Option<serde_norway::Value>,
}

impl Secret {
    /// The base64 payload, whichever form it came in.
    pub fn base64_payload(&self) -> Option<&str> {
        match self.data.as_ref()? {
            serde_norway::Value::String(s) => Some(s.as_str()),
            serde_norway::Value::Mapping(m) => m.get("value").and_then(|v| v.as_str()),
            _ => None,
        }
    }
}
