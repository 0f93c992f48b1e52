//! Kuma policy resources as decoded: the outer shape every policy kind shares
//! ([`PolicySpec`]) around a kind-specific `default` conf (one module per kind).
//!
//! As for routes, enum-like fields stay strings and numbers stay wide so validation can word
//! its errors the way Kuma does; `deny_unknown_fields` catches misspelt fields with the
//! field path (`spec.to[0].default.http.numRetrys: unknown field ...`).

pub mod access_log;
pub mod circuit_breaker;
pub mod fault;
pub mod health_check;
pub mod load_balancing;
pub mod rate_limit;
pub mod retry;
pub mod timeout;
pub mod trace;

use super::common::TargetRef;
use serde::Deserialize;

/// `spec` of a policy: `targetRef`, `to[]`, `from[]`, `rules[]`. Kinds without `from` or
/// `rules` reject them in validation with Kuma's words.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "C: Deserialize<'de>")
)]
pub struct PolicySpec<C> {
    pub target_ref: Option<TargetRef>,
    pub to: Option<Vec<Item<C>>>,
    pub from: Option<Vec<Item<C>>>,
    pub rules: Option<Vec<Rule<C>>>,
}

/// A `to[]` or `from[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "C: Deserialize<'de>")
)]
pub struct Item<C> {
    pub target_ref: Option<TargetRef>,
    pub default: Option<C>,
}

/// A `rules[]` entry (inbound side; `matches` select mTLS clients).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "C: Deserialize<'de>")
)]
pub struct Rule<C> {
    pub matches: Option<Vec<RuleMatch>>,
    pub default: Option<C>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    #[serde(rename = "spiffeID")]
    pub spiffe_id: Option<serde_norway::Value>,
    pub sni: Option<String>,
}

/// The only field meshgate reads of a Kuma policy kind it does not apply: what it selects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetOnly {
    pub target_ref: Option<TargetRef>,
}
