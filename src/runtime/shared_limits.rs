//! Rate limits counted across a fleet, in Redis (`--rate-limit-store redis://…`).
//!
//! A fleet limit (`meshgate.io/rate-limit-scope: fleet` on a MeshRateLimit) counts requests in
//! fixed windows aligned to the Unix clock: window `w = now_ms / interval_ms`, key
//! `<limit key>:<w>`. One Lua script increments the key and sets its expiry atomically, so
//! N instances together let `num` requests through per window, as a local bucket does for
//! one instance (Envoy's bucket refills to full at each interval boundary too).
//!
//! The request path makes one round trip over a multiplexed connection (redis-rs pipelines
//! concurrent requests on it) bounded by [`ANSWER_TIMEOUT`]. When the store does not answer,
//! the connection is dropped and every request is decided by the instance's own bucket
//! (same `num` per `interval`) until [`SharedLimitStore::supervise`] reconnects: counted in
//! `meshgate_rate_limit_store_fallbacks_total`, `meshgate_rate_limit_store_up` says which.

use crate::admin::metrics::METRICS;
use crate::snapshot::rate_limit::FleetKey;
use arc_swap::ArcSwapOption;
use log::{info, warn};
use redis::aio::ConnectionManager;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest a request waits for the store before its instance's bucket decides. A
/// loopback or same-zone Redis answers in well under a millisecond; this only bounds a
/// store that has gone away without closing its connection.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the supervisor checks a connected store, and retries a lost one.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// INCR the window's counter; the first request of a window sets its expiry (two windows,
/// so a slow clock on one instance still finds the counter).
const TAKE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

pub struct SharedLimitStore {
    client: redis::Client,
    /// The address for logs and `/config` (without any password).
    pub display: String,
    /// `None` while the store is unreachable: requests then use their local bucket at once
    /// instead of waiting for a timeout each.
    connection: ArcSwapOption<ConnectionManager>,
    script: redis::Script,
}

static STORE: OnceLock<SharedLimitStore> = OnceLock::new();

/// The process's store, when `--rate-limit-store` names one.
pub fn store() -> Option<&'static SharedLimitStore> {
    STORE.get()
}

/// Sets the process's store from `--rate-limit-store` (once, at start-up).
pub fn configure(url: &str) -> Result<&'static SharedLimitStore, String> {
    let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
    let info = client.get_connection_info();
    let display = format!("redis://{}", info.addr());
    let store = SharedLimitStore {
        client,
        display,
        connection: ArcSwapOption::empty(),
        script: redis::Script::new(TAKE),
    };
    METRICS.rate_limit_store_up.set(0);
    STORE
        .set(store)
        .map_err(|_| "the rate-limit store is already set".to_string())?;
    STORE
        .get()
        .ok_or_else(|| "the rate-limit store is not set".to_string())
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl SharedLimitStore {
    pub fn is_up(&self) -> bool {
        self.connection.load().is_some()
    }

    /// Counts one request against `key` in the current window: `Some(true)` to let it
    /// through, `Some(false)` when the fleet has used the window's `num`, `None` when the
    /// store cannot answer (the caller's own bucket decides).
    pub async fn try_take(&self, key: &FleetKey) -> Option<bool> {
        let Some(connection) = self.connection.load_full() else {
            METRICS.rate_limit_store_fallbacks.inc();
            return None;
        };
        let window = unix_millis() / key.interval_ms;
        let counter = format!("{}:{window}", key.prefix);
        let mut connection = ConnectionManager::clone(&connection);
        let mut call = self.script.key(counter);
        call.arg(key.interval_ms.saturating_mul(2));
        match tokio::time::timeout(ANSWER_TIMEOUT, call.invoke_async::<u64>(&mut connection)).await
        {
            Ok(Ok(n)) => Some(n <= u64::from(key.num)),
            Ok(Err(e)) => {
                self.lost(&e.to_string());
                None
            }
            Err(_) => {
                self.lost(&format!("no answer within {ANSWER_TIMEOUT:?}"));
                None
            }
        }
    }

    fn lost(&self, why: &str) {
        METRICS.rate_limit_store_fallbacks.inc();
        if self.connection.swap(None).is_some() {
            METRICS.rate_limit_store_up.set(0);
            warn!(
                "rate-limit store {}: {why}; fleet limits count per instance until it is back",
                self.display
            );
        }
    }

    async fn connect(&self) -> Result<ConnectionManager, String> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(ANSWER_TIMEOUT * 4))
            .set_number_of_retries(1);
        let mut connection = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| e.to_string())?;
        self.ping(&mut connection).await?;
        Ok(connection)
    }

    async fn ping(&self, connection: &mut ConnectionManager) -> Result<(), String> {
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(connection);
        match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer to PING within {CONNECT_TIMEOUT:?}")),
        }
    }

    /// Keeps the connection: probes it every second, drops it when it stops answering and
    /// reconnects (the background service runs this until shutdown).
    pub async fn supervise(&self) {
        let mut reported_down = false;
        loop {
            match self.connection.load_full() {
                Some(connection) => {
                    let mut connection = ConnectionManager::clone(&connection);
                    if let Err(e) = self.ping(&mut connection).await {
                        self.lost(&e);
                    }
                }
                None => match self.connect().await {
                    Ok(connection) => {
                        self.connection.store(Some(Arc::new(connection)));
                        METRICS.rate_limit_store_up.set(1);
                        reported_down = false;
                        info!("rate-limit store {}: connected", self.display);
                    }
                    Err(e) if !reported_down => {
                        reported_down = true;
                        warn!(
                            "rate-limit store {}: {e}; fleet limits count per instance until it is reachable",
                            self.display
                        );
                    }
                    Err(_) => {}
                },
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

/// The Pingora background service that keeps the store connected.
pub struct StoreSupervisor;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for StoreSupervisor {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let Some(store) = store() else { return };
        tokio::select! {
            _ = store.supervise() => {}
            _ = shutdown.changed() => {}
        }
    }
}
