//! Making a built snapshot the one that serves, and reporting a rejected change: the only
//! writers of the active snapshot, `last_error` and the configuration metrics, for the
//! first snapshot and every later one alike.

use super::reload::{Built, Rejected};
use super::state::GatewayState;
use crate::admin::metrics::{unix_now, METRICS};
use crate::snapshot::access_log::LogOutput;
use crate::snapshot::{Serving, Snapshot};
use crate::violation::render;
use log::{error, info, warn};
use std::sync::Arc;
use std::time::Duration;

/// The metrics that describe the serving snapshot.
fn describe(snapshot: &Snapshot, took: Duration) {
    METRICS.last_reload_successful.set(1);
    METRICS.last_reload_success_timestamp.set(unix_now());
    METRICS.generation.set(snapshot.generation as i64);
    METRICS.compile_seconds.set(took.as_secs_f64());
    METRICS.route_entries.set(snapshot.route_entries as i64);
    // Certificates: one series per listener hostname of the serving snapshot.
    METRICS.cert_expiry.reset();
    for port in snapshot.ports.values() {
        let chains: Vec<(
            &crate::snapshot::ListenerInfo,
            &crate::snapshot::certs::CertSet,
        )> = match &port.serving {
            Serving::Https { chains } => {
                chains.values().map(|c| (&*c.listener, &*c.certs)).collect()
            }
            Serving::Tls { chains } => chains
                .values()
                .filter_map(|c| c.certs.as_deref().map(|k| (&*c.listener, k)))
                .collect(),
            Serving::Http { .. } | Serving::Tcp { .. } => Vec::new(),
        };
        for (listener, certs) in chains {
            if let Some(at) = crate::snapshot::certs::not_after(&certs.keys) {
                METRICS
                    .cert_expiry
                    .with_label_values(&[&listener.label, &listener.hostname])
                    .set(at as f64);
            }
        }
    }
}

/// Builds the OTLP exporters (spans, access log records) the snapshot's ports use before it
/// serves, so no request waits for one. Exporters already running (the previous snapshot's)
/// are left as they are.
fn start_exporters(snapshot: &Snapshot) {
    for port in snapshot.ports.values() {
        if let Some(tracing) = &port.policy.tracing {
            tracing.exporter.start();
        }
        for log in &port.policy.access_logs {
            if let LogOutput::Records { sink, .. } = &log.output {
                sink.start();
            }
        }
    }
}

/// Logs and describes the snapshot the process starts with (before the state exists).
pub fn first(built: &Built) {
    crate::admin::metrics::mark_start();
    for w in &built.warnings {
        warn!("{w}");
    }
    describe(&built.snapshot, built.took);
    start_exporters(&built.snapshot);
    info!(
        "policies loaded: {} route entries in {:.1} ms",
        built.snapshot.route_entries,
        built.took.as_secs_f64() * 1000.0
    );
}

/// Swaps `built` in: requests that start from now on see it; the listener manager is told
/// to bind the ports it asks for.
pub fn applied(state: &GatewayState, built: Built) {
    for w in &built.warnings {
        warn!("{w}");
    }
    let generation = built.snapshot.generation;
    let entries = built.snapshot.route_entries;
    describe(&built.snapshot, built.took);
    start_exporters(&built.snapshot);
    state.snapshot.store(Arc::new(built.snapshot));
    state.last_error.store(None);
    let _ = state.changes.send(generation);
    METRICS.reloads.with_label_values(&["success"]).inc();
    info!(
        "policies applied: generation {generation}, {entries} route entries, built in {:.1} ms",
        built.took.as_secs_f64() * 1000.0
    );
}

/// Records why a change was rejected; the previous snapshot keeps serving.
pub fn rejected(state: &GatewayState, rejected: &Rejected) {
    let text = render(&rejected.violations);
    error!("policy change rejected, previous snapshot keeps serving:\n{text}");
    state.last_error.store(Some(Arc::new(text)));
    METRICS.reloads.with_label_values(&["failure"]).inc();
    METRICS.last_reload_successful.set(0);
}
