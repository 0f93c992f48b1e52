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

/// Kubernetes' `IntOrString` (Kuma's percentages): `50` or `"50.5"`. A YAML float is
/// refused as the Kubernetes API refuses it.
#[derive(Debug, Clone, PartialEq)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IntOrString;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer or a string (write a decimal as a string: \"50.5\")")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl IntOrString {
    /// The value as a number, if it reads as one (`"50.5"` → 50.5).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            IntOrString::Int(i) => Some(*i as f64),
            IntOrString::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        }
    }
}
