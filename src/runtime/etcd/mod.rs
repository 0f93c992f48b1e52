//! Policies from an etcd prefix: `--policies etcd://HOST:PORT[,HOST:PORT…]/PREFIX`.
//!
//! Every key under `PREFIX/` whose name ends in `.yaml`/`.yml` is a policy file named by the
//! rest of the key (`/meshgate/prod/routes/a.yaml` under `etcd://…/meshgate/prod` is
//! `routes/a.yaml` in errors, `/config` and `--check`). One read of the prefix is one etcd
//! revision, so the keys of a transaction are always applied together; the snapshot is built
//! by the same compiler as a directory's.
//!
//! - [`read`]: the prefix at one revision, as source files;
//! - [`watch`]: the background service that follows the prefix, reconnects with backoff and
//!   re-reads everything after a gap (a compacted revision included);
//! - [`cache`]: `--policy-cache DIR`, the last applied revision on disk, to start from when
//!   etcd is down at start-up;
//! - [`publish`]: `meshgate publish`, a directory written to the prefix in one transaction.

pub mod cache;
pub mod publish;
pub mod read;
pub mod watch;

use arc_swap::ArcSwapOption;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// An etcd endpoint list and the prefix meshgate reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// `host:port` as given.
    pub endpoints: Vec<String>,
    /// The key prefix, `/`-terminated (`/meshgate/prod/`).
    pub prefix: String,
}

impl EtcdTarget {
    /// `Ok(None)` when `source` is not an etcd URL (a directory); an error names what is
    /// wrong with one that is.
    pub fn parse(source: &str) -> Result<Option<EtcdTarget>, String> {
        let Some(rest) = source.strip_prefix("etcd://") else {
            return Ok(None);
        };
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(format!(
                "{source}: no etcd endpoint (etcd://HOST:PORT/PREFIX)"
            ));
        }
        for e in &endpoints {
            let port_ok = e
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !port_ok {
                return Err(format!(
                    "{source}: etcd endpoint {e:?} must be HOST:PORT (etcd://HOST:PORT/PREFIX)"
                ));
            }
        }
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(format!(
                "{source}: a key prefix is required (etcd://HOST:PORT/PREFIX), so meshgate never reads a whole etcd"
            ));
        }
        Ok(Some(EtcdTarget {
            endpoints,
            prefix: format!("{trimmed}/"),
        }))
    }

    /// `etcd://a:1,b:2/prefix` (as a user wrote it, for logs, errors and `/config`).
    pub fn url(&self) -> String {
        format!(
            "etcd://{}{}",
            self.endpoints.join(","),
            self.prefix.trim_end_matches('/')
        )
    }
}

/// How to reach etcd: TLS files and user/password (`--etcd-*` flags).
#[derive(Debug, Clone, Default)]
pub struct EtcdAccess {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// A request that takes longer than this fails (and the watcher reconnects).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on the watch connection: a silently vanished etcd (a cut network rather
/// than a stopped process) is noticed within interval + timeout.
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(3));

impl EtcdAccess {
    fn uses_tls(&self) -> bool {
        self.ca.is_some() || self.cert.is_some()
    }

    fn options(&self) -> Result<ConnectOptions, String> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            // etcd's auth token expires after 5 idle minutes (`--auth-token-ttl`): a quiet
            // prefix must not look like a lost etcd, so the client logs in again and retries.
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        } else if self.user.is_some() {
            return Err(
                "--etcd-user needs a password (--etcd-password-file or MESHGATE_ETCD_PASSWORD)"
                    .to_string(),
            );
        }
        if self.uses_tls() {
            let read = |p: &PathBuf, what: &str| {
                std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
            };
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca, "--etcd-ca")?));
            }
            match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(
                        read(cert, "--etcd-cert")?,
                        read(key, "--etcd-key")?,
                    ));
                }
                (None, None) => {}
                _ => return Err("--etcd-cert and --etcd-key go together".to_string()),
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }

    /// A client for `target` (the first request connects).
    pub async fn connect(&self, target: &EtcdTarget) -> Result<Client, String> {
        let scheme = if self.uses_tls() { "https" } else { "http" };
        let urls: Vec<String> = target
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let options = self.options()?;
        tokio::time::timeout(
            CONNECT_TIMEOUT + REQUEST_TIMEOUT,
            Client::connect(urls, Some(options)),
        )
        .await
        .map_err(|_| format!("{}: no answer", target.url()))?
        .map_err(|e| format!("{}: {e}", target.url()))
    }
}

/// What `/config`, `/ready` and the metrics say about an etcd source.
#[derive(Debug)]
pub struct EtcdStatus {
    pub target: EtcdTarget,
    /// The revision the serving snapshot was read at (0: none yet).
    revision: AtomicI64,
    connected: AtomicBool,
    /// Unix seconds since when etcd has been unreachable (0 while connected).
    down_since: AtomicU64,
    /// Started from `--policy-cache` because etcd was unreachable at start-up.
    pub from_cache: AtomicBool,
    last_error: ArcSwapOption<String>,
}

impl EtcdStatus {
    pub fn new(target: EtcdTarget) -> Self {
        EtcdStatus {
            target,
            revision: AtomicI64::new(0),
            connected: AtomicBool::new(false),
            down_since: AtomicU64::new(0),
            from_cache: AtomicBool::new(false),
            last_error: ArcSwapOption::empty(),
        }
    }

    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Relaxed)
    }

    pub fn set_revision(&self, revision: i64) {
        self.revision.store(revision, Ordering::Relaxed);
        crate::admin::metrics::METRICS.etcd_revision.set(revision);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn set_connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.down_since.store(0, Ordering::Relaxed);
        self.last_error.store(None);
        crate::admin::metrics::METRICS.etcd_connected.set(1);
    }

    pub fn set_disconnected(&self, why: &str) {
        if self.connected.swap(false, Ordering::Relaxed) {
            crate::admin::metrics::METRICS.etcd_disconnects.inc();
        }
        let now = crate::admin::metrics::unix_now() as u64;
        let _ = self
            .down_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_error
            .store(Some(std::sync::Arc::new(why.to_string())));
        crate::admin::metrics::METRICS.etcd_connected.set(0);
    }

    /// `None` while connected; otherwise how the source is degraded (for `/ready`'s body).
    pub fn degraded(&self) -> Option<String> {
        if self.is_connected() {
            return None;
        }
        let since = self.down_since.load(Ordering::Relaxed);
        let for_secs = (crate::admin::metrics::unix_now() as u64).saturating_sub(since);
        let error = self.last_error.load();
        Some(format!(
            "etcd {} unreachable for {for_secs} s ({}); serving revision {}{}",
            self.target.url(),
            error.as_deref().map_or("connecting", |e| e.as_str()),
            self.revision(),
            if self.from_cache.load(Ordering::Relaxed) {
                " from the policy cache"
            } else {
                ""
            }
        ))
    }

    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "etcd",
            "endpoints": self.target.endpoints,
            "prefix": self.target.prefix,
            "revision": self.revision(),
            "connected": self.is_connected(),
            "from_cache": self.from_cache.load(Ordering::Relaxed),
            "error": self.last_error.load().as_deref(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_endpoints_and_a_slash_terminated_prefix() {
        let t = EtcdTarget::parse("etcd://127.0.0.1:2379,127.0.0.2:2379/meshgate/prod/")
            .unwrap()
            .unwrap();
        assert_eq!(t.endpoints, vec!["127.0.0.1:2379", "127.0.0.2:2379"]);
        assert_eq!(t.prefix, "/meshgate/prod/");
        assert_eq!(
            t.url(),
            "etcd://127.0.0.1:2379,127.0.0.2:2379/meshgate/prod"
        );
        assert_eq!(EtcdTarget::parse("/etc/meshgate").unwrap(), None);
    }

    #[test]
    fn a_missing_prefix_or_port_is_an_error() {
        assert!(EtcdTarget::parse("etcd://127.0.0.1:2379")
            .unwrap_err()
            .contains("prefix is required"));
        assert!(EtcdTarget::parse("etcd://127.0.0.1:2379/")
            .unwrap_err()
            .contains("prefix is required"));
        assert!(EtcdTarget::parse("etcd://127.0.0.1/x")
            .unwrap_err()
            .contains("HOST:PORT"));
        assert!(EtcdTarget::parse("etcd:///x")
            .unwrap_err()
            .contains("no etcd endpoint"));
    }
}
