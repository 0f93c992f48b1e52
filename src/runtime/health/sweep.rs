//! The outlier-detection sweep of one backend every `interval` (spec §7.2): ejections that
//! are over end, ejection counts decay, and the success-rate and failure-percentage
//! detectors run over the interval's counts ([`crate::snapshot::outlier`]).

use crate::admin::metrics::METRICS;
use crate::snapshot::backends::Backend;
use crate::snapshot::cluster::Outlier;
use std::sync::Arc;

pub async fn run(conf: Arc<Outlier>, backend: Arc<Backend>) {
    let mut tick = tokio::time::interval(conf.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for (i, change) in conf.sweep(&*backend) {
            let addr = backend.endpoints.get(i).map(|e| e.addr.to_string());
            let addr = addr.unwrap_or_default();
            match change {
                None => log::info!(
                    "outlier detection: {} endpoint {addr} returns to service",
                    backend.key
                ),
                Some(detector) => {
                    log::warn!(
                        "outlier detection: {} endpoint {addr} ejected ({})",
                        backend.key,
                        detector.as_str()
                    );
                    METRICS
                        .outlier_ejections
                        .with_label_values(&[&backend.key, detector.as_str()])
                        .inc();
                }
            }
        }
    }
}
