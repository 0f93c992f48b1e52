//! Types shared by several resources: target references, backend references, tag maps.

use serde::Deserialize;
use std::collections::BTreeMap;

pub type Tags = BTreeMap<String, String>;

/// `targetRef` of a policy or of a `to[]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    #[serde(default)]
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub mesh: Option<String>,
    pub tags: Option<Tags>,
    pub labels: Option<Tags>,
    pub section_name: Option<String>,
    pub proxy_types: Option<Vec<String>>,
}

/// `backendRefs[]` entry (also the mirror filter's `backendRef`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    #[serde(default)]
    pub kind: String,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub mesh: Option<String>,
    pub labels: Option<Tags>,
    pub tags: Option<Tags>,
    pub port: Option<i64>,
    pub section_name: Option<String>,
    /// Kuma's schema default is 1.
    pub weight: Option<i64>,
    pub proxy_types: Option<Vec<String>>,
}

impl BackendRef {
    pub fn effective_weight(&self) -> u32 {
        match self.weight {
            None => 1,
            Some(w) => w.clamp(0, u32::MAX as i64) as u32,
        }
    }
}
