//! Prometheus metrics (operations.md §4), served by the admin endpoint `/metrics`.
//!
//! Per-request counters go through a thread-local cache of label handles, so the request path
//! does a hash lookup in thread-local memory and an atomic add: no allocation for label
//! strings and no lock on the metric families' label maps.

use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::cell::RefCell;
use std::sync::LazyLock;

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Time from an upstream attempt's start to the backend's response head, per backend.
    pub upstream_duration: HistogramVec,
    /// Process facts, refreshed when `/metrics` is read.
    process_rss: Gauge,
    process_fds: Gauge,
    process_cpu: Gauge,
    pub http_rejected: IntCounterVec,
    /// HTTP/2 connections meshgate ended with GOAWAY for a protocol violation or abuse.
    pub http2_connections_cut: IntCounterVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_connect_failures: IntCounterVec,
    pub upstream_timeouts: IntCounterVec,
    pub downstream_active: IntGaugeVec,
    /// Idle plain-text keep-alive connections holding only their socket (`proxy::parked`).
    pub downstream_parked: IntGaugeVec,
    pub downstream_total: IntCounterVec,
    pub tcp_connections: IntCounterVec,
    pub reloads: IntCounterVec,
    pub last_reload_successful: IntGauge,
    pub last_reload_success_timestamp: Gauge,
    pub generation: IntGauge,
    pub snapshots_live: IntGauge,
    pub compile_seconds: Gauge,
    pub route_entries: IntGauge,
    pub listeners_bound: IntGauge,
    pub listener_errors: IntGauge,
    pub access_log_dropped: IntCounter,
    pub mirror_requests: IntCounterVec,
    /// Retries by route and what was retried (MeshRetry).
    pub upstream_retries: IntCounterVec,
    /// Requests that were retried at least once, by route and how they ended.
    pub retried_requests: IntCounterVec,
    /// Requests and connections refused by a MeshRateLimit.
    pub rate_limited: IntCounterVec,
    /// Faults injected by MeshFaultInjection, by kind.
    pub faults_injected: IntCounterVec,
    /// Endpoints ejected by outlier detection, by backend and detector.
    pub outlier_ejections: IntCounterVec,
    /// Requests and retries refused by a circuit breaker, by backend and limit.
    pub upstream_overflows: IntCounterVec,
    /// Health-check verdict changes, by backend and new state.
    pub health_transitions: IntCounterVec,
    /// When each listener hostname's certificate expires (the soonest of its pairs).
    pub cert_expiry: GaugeVec,
    /// 1 while the shared rate-limit store answers (`--rate-limit-store`).
    pub rate_limit_store_up: IntGauge,
    /// Fleet-limited requests decided by the instance's own bucket (store unreachable).
    pub rate_limit_store_fallbacks: IntCounter,
    /// etcd source: the revision of the serving snapshot, and 1 while the watch is live.
    pub etcd_revision: IntGauge,
    pub etcd_connected: IntGauge,
    /// etcd source: sessions lost (etcd stopped, network cut, compacted watch).
    pub etcd_disconnects: IntCounter,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric definition");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

/// The process-wide metrics. Definitions are static, so the `expect`s can only fire on a
/// programming error, at first use during start-up.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let http_duration = HistogramVec::new(
        HistogramOpts::new(
            "meshgate_http_request_duration_seconds",
            "Time from request head to the end of the response",
        )
        .buckets(exponential_buckets(0.0005, 2.5, 14).expect("valid buckets")),
        &["listener", "route"],
    )
    .expect("valid metric definition");
    r.register(Box::new(http_duration.clone()))
        .expect("metric registered once");
    let upstream_duration = HistogramVec::new(
        HistogramOpts::new(
            "meshgate_upstream_request_duration_seconds",
            "Time from an upstream attempt's start to the backend's response head (Envoy's upstream_rq_time), by backend",
        )
        .buckets(exponential_buckets(0.0005, 2.5, 14).expect("valid buckets")),
        &["backend"],
    )
    .expect("valid metric definition");
    r.register(Box::new(upstream_duration.clone()))
        .expect("metric registered once");
    let float_gauge = |name: &str, help: &str| {
        let g = Gauge::new(name, help).expect("valid metric definition");
        r.register(Box::new(g.clone()))
            .expect("metric registered once");
        g
    };
    let process_rss = float_gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
    );
    let process_fds = float_gauge("process_open_fds", "Number of open file descriptors");
    let process_cpu = float_gauge(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds",
    );
    let downstream_active = IntGaugeVec::new(
        Opts::new(
            "meshgate_downstream_connections_active",
            "Open downstream connections",
        ),
        &["listener"],
    )
    .expect("valid metric definition");
    r.register(Box::new(downstream_active.clone()))
        .expect("metric registered once");
    let downstream_parked = IntGaugeVec::new(
        Opts::new(
            "meshgate_downstream_connections_parked",
            "Idle plain-text keep-alive connections parked: only their socket held until their next request",
        ),
        &["listener"],
    )
    .expect("valid metric definition");
    r.register(Box::new(downstream_parked.clone()))
        .expect("metric registered once");
    let last_reload_success_timestamp = Gauge::new(
        "meshgate_config_last_reload_success_timestamp_seconds",
        "Unix time of the last applied policy change",
    )
    .expect("valid metric definition");
    r.register(Box::new(last_reload_success_timestamp.clone()))
        .expect("metric registered once");
    let compile_seconds = Gauge::new(
        "meshgate_config_compile_seconds",
        "Time to load, validate and compile the last applied snapshot",
    )
    .expect("valid metric definition");
    r.register(Box::new(compile_seconds.clone()))
        .expect("metric registered once");
    let access_log_dropped = IntCounter::new(
        "meshgate_access_log_dropped_total",
        "Access log lines dropped because the writer fell behind",
    )
    .expect("valid metric definition");
    r.register(Box::new(access_log_dropped.clone()))
        .expect("metric registered once");

    let build = IntGaugeVec::new(
        Opts::new("meshgate_build_info", "Build information"),
        &["version", "pingora", "commit", "pgo"],
    )
    .expect("valid metric definition");
    r.register(Box::new(build.clone()))
        .expect("metric registered once");
    build
        .with_label_values(&[
            crate::build_info::VERSION,
            crate::build_info::PINGORA,
            crate::build_info::COMMIT,
            crate::build_info::PGO,
        ])
        .set(1);
    let start = Gauge::new(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds",
    )
    .expect("valid metric definition");
    r.register(Box::new(start.clone()))
        .expect("metric registered once");
    start.set(unix_now());

    Metrics {
        upstream_retries: counter(
            &r,
            "meshgate_upstream_retries_total",
            "Retries of requests to backends (MeshRetry), by route and what failed",
            &["route", "reason"],
        ),
        retried_requests: counter(
            &r,
            "meshgate_retried_requests_total",
            "Requests retried at least once, by route and outcome (success: the last attempt got a response below 500; failure: anything else)",
            &["route", "outcome"],
        ),
        rate_limited: counter(
            &r,
            "meshgate_rate_limited_total",
            "Requests (route) and connections (route \"\") refused by MeshRateLimit, by listener port",
            &["listener", "route"],
        ),
        faults_injected: counter(
            &r,
            "meshgate_faults_injected_total",
            "Faults injected by MeshFaultInjection, by kind (abort, delay, bandwidth)",
            &["listener", "kind"],
        ),
        outlier_ejections: counter(
            &r,
            "meshgate_outlier_ejections_total",
            "Endpoints ejected by MeshCircuitBreaker outlier detection, by backend and detector",
            &["backend", "detector"],
        ),
        upstream_overflows: counter(
            &r,
            "meshgate_upstream_overflow_total",
            "Requests (max_requests, max_pending_requests) and retries (max_retries) refused by a MeshCircuitBreaker connection limit",
            &["backend", "limit"],
        ),
        cert_expiry: {
            let g = GaugeVec::new(
                Opts::new(
                    "meshgate_certificate_expiry_timestamp_seconds",
                    "Unix time the certificate of an HTTPS/TLS listener hostname expires (the soonest of its pairs)",
                ),
                &["listener", "hostname"],
            )
            .expect("valid metric definition");
            r.register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        },
        health_transitions: counter(
            &r,
            "meshgate_health_check_transitions_total",
            "MeshHealthCheck verdict changes of endpoints, by backend and new state (healthy, unhealthy)",
            &["backend", "to"],
        ),
        http_requests: counter(
            &r,
            "meshgate_http_requests_total",
            "HTTP requests by listener, route and status code",
            &["listener", "route", "code"],
        ),
        http_duration,
        upstream_duration,
        process_rss,
        process_fds,
        process_cpu,
        http_rejected: counter(
            &r,
            "meshgate_http_requests_rejected_total",
            "Requests refused before routing, by reason",
            &["listener", "reason"],
        ),
        http2_connections_cut: counter(
            &r,
            "meshgate_http2_connections_cut_total",
            "HTTP/2 connections ended with GOAWAY for a protocol violation or abuse (rapid reset, CONTINUATION flood, oversized header block...), by HTTP/2 error code",
            &["reason"],
        ),
        upstream_requests: counter(
            &r,
            "meshgate_upstream_requests_total",
            "Requests sent to backends, by backend and status code",
            &["backend", "code"],
        ),
        upstream_connect_failures: counter(
            &r,
            "meshgate_upstream_connect_failures_total",
            "Failed connection attempts to backends",
            &["backend"],
        ),
        upstream_timeouts: counter(
            &r,
            "meshgate_upstream_timeouts_total",
            "Backend requests that timed out",
            &["backend"],
        ),
        downstream_active,
        downstream_parked,
        downstream_total: counter(
            &r,
            "meshgate_downstream_connections_total",
            "Accepted downstream connections",
            &["listener"],
        ),
        tcp_connections: counter(
            &r,
            "meshgate_tcp_connections_total",
            "TCP/TLS route connections by backend and result",
            &["listener", "backend", "result"],
        ),
        reloads: counter(
            &r,
            "meshgate_config_reloads_total",
            "Policy changes by result",
            &["result"],
        ),
        last_reload_successful: gauge(
            &r,
            "meshgate_config_last_reload_successful",
            "1 if the last policy change was applied, 0 if it was rejected",
        ),
        last_reload_success_timestamp,
        generation: gauge(
            &r,
            "meshgate_config_generation",
            "Generation of the active snapshot (as in /config)",
        ),
        snapshots_live: gauge(
            &r,
            "meshgate_config_snapshots_live",
            "Snapshots in memory: the active one and older ones still held by requests or TCP \
             connections in flight",
        ),
        compile_seconds,
        route_entries: gauge(
            &r,
            "meshgate_config_route_entries",
            "Route entries in the active snapshot",
        ),
        listeners_bound: gauge(
            &r,
            "meshgate_listeners_bound",
            "Ports currently bound for MeshGateway listeners",
        ),
        listener_errors: gauge(
            &r,
            "meshgate_listener_bind_errors",
            "MeshGateway ports that could not be bound",
        ),
        access_log_dropped,
        mirror_requests: counter(
            &r,
            "meshgate_mirror_requests_total",
            "Mirrored requests by backend and result",
            &["backend", "result"],
        ),
        rate_limit_store_up: gauge(
            &r,
            "meshgate_rate_limit_store_up",
            "1 while the shared rate-limit store (--rate-limit-store) answers",
        ),
        rate_limit_store_fallbacks: plain_counter(
            &r,
            "meshgate_rate_limit_store_fallbacks_total",
            "Fleet-limited requests decided by this instance's own bucket because the store did not answer",
        ),
        etcd_revision: gauge(
            &r,
            "meshgate_etcd_revision",
            "etcd revision of the serving policies (etcd source)",
        ),
        etcd_connected: gauge(
            &r,
            "meshgate_etcd_connected",
            "1 while the etcd watch is live (etcd source)",
        ),
        etcd_disconnects: plain_counter(
            &r,
            "meshgate_etcd_disconnects_total",
            "etcd sessions lost (etcd source)",
        ),
        registry: r,
    }
});

fn plain_counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric definition");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

static STARTED: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);

/// Notes the process start (call once at start-up).
pub fn mark_start() {
    LazyLock::force(&STARTED);
}

/// Time since [`mark_start`].
pub fn uptime() -> std::time::Duration {
    STARTED.elapsed()
}

/// Reads the process facts from /proc (Linux); left unchanged elsewhere.
fn refresh_process() {
    // Linux on x86-64 and arm64: 4 KiB pages, 100 clock ticks per second.
    let page = 4096.0;
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        if let Some(rss) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
        {
            METRICS.process_rss.set(rss * page);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        METRICS.process_fds.set(fds.count() as f64);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces): utime is the 14th field.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // `rest` starts at field 3 (state): utime is field 14, stime 15.
            METRICS.process_cpu.set((ticks(11) + ticks(12)) / 100.0);
        }
    }
}

/// Prometheus text exposition of every meshgate metric.
pub fn render() -> Vec<u8> {
    refresh_process();
    METRICS
        .snapshots_live
        .set(crate::snapshot::live_snapshots() as i64);
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    let _ = encoder.encode(&METRICS.registry.gather(), &mut buf);
    buf
}

/// Identity of a request's label sets for the thread-local cache: addresses of the
/// snapshot's interned listener, route and backend strings (0: no backend answered) plus the
/// status code. Valid within one snapshot generation.
type HandleKey = (usize, usize, usize, u16);

/// The metric handles one finished request updates, found with one lookup.
struct RequestHandles {
    requests: IntCounter,
    duration: prometheus::Histogram,
    /// The backend's request counter and time-to-head histogram.
    upstream: Option<(IntCounter, prometheus::Histogram)>,
}

impl RequestHandles {
    fn new(listener: &str, route: &str, backend: Option<&str>, code: u16) -> Self {
        let code = code.to_string();
        RequestHandles {
            requests: METRICS
                .http_requests
                .with_label_values(&[listener, route, code.as_str()]),
            duration: METRICS.http_duration.with_label_values(&[listener, route]),
            upstream: backend.map(|backend| {
                (
                    METRICS
                        .upstream_requests
                        .with_label_values(&[backend, code.as_str()]),
                    METRICS.upstream_duration.with_label_values(&[backend]),
                )
            }),
        }
    }
}

/// Keyed by addresses and status codes, none chosen by a client, so the map uses foldhash
/// instead of std's DoS-resistant SipHash; one lookup per request (it was four, one per
/// metric: ~1,000 instructions).
struct HandleCache {
    generation: u64,
    requests: foldhash::HashMap<HandleKey, RequestHandles>,
}

thread_local! {
    static HANDLES: RefCell<HandleCache> = RefCell::new(HandleCache {
        generation: u64::MAX,
        requests: Default::default(),
    });
}

/// Counts one finished HTTP request. `listener`, `route` and `upstream` (the backend that
/// answered, if one did, with its time to the response head) must be strings owned by the
/// snapshot of `generation`: their addresses identify the label set.
pub fn observe_request(
    generation: u64,
    listener: &str,
    route: &str,
    upstream: Option<(&str, Option<f64>)>,
    code: u16,
    seconds: f64,
) {
    HANDLES.with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return;
        };
        if cache.generation != generation {
            cache.generation = generation;
            cache.requests.clear();
        }
        let backend = upstream.map(|(backend, _)| backend);
        let key = (
            listener.as_ptr() as usize,
            route.as_ptr() as usize,
            backend.map_or(0, |b| b.as_ptr() as usize),
            code,
        );
        let handles = cache
            .requests
            .entry(key)
            .or_insert_with(|| RequestHandles::new(listener, route, backend, code));
        handles.requests.inc();
        handles.duration.observe(seconds);
        if let (Some((requests, duration)), Some((_, upstream_seconds))) =
            (&handles.upstream, upstream)
        {
            requests.inc();
            if let Some(s) = upstream_seconds {
                duration.observe(s);
            }
        }
    });
}
