//! Watches Pingora's execution phase and flags the process as draining as soon as an upgrade
//! or shutdown begins, so responses carry `Connection: close` and keep-alive clients reconnect
//! (to the new process) before the old one stops accepting (operations.md §1.1).

use crate::runtime::state::GatewayState;
use async_trait::async_trait;
use log::info;
use pingora::server::{ExecutionPhase, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::sync::{broadcast, Mutex};

pub struct DrainWatcher {
    pub state: Arc<GatewayState>,
    pub phases: Mutex<broadcast::Receiver<ExecutionPhase>>,
}

#[async_trait]
impl BackgroundService for DrainWatcher {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let mut rx = self.phases.lock().await;
        loop {
            match rx.recv().await {
                Ok(phase) => {
                    if matches!(
                        phase,
                        ExecutionPhase::GracefulUpgradeTransferringFds
                            | ExecutionPhase::GracefulUpgradeCloseTimeout
                            | ExecutionPhase::GracefulTerminate
                            | ExecutionPhase::ShutdownStarted
                    ) {
                        start(&self.state, &format!("{phase:?}"));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}

/// Starts draining: from now on responses close their connections and `/ready` answers 503.
pub fn start(state: &GatewayState, why: &str) {
    if state.set_draining() {
        info!("draining ({why}): responses now close their connections");
    }
}
