//! Watches Pingora's execution phase and flags the process as draining as soon as an upgrade
//! or shutdown begins, so responses carry `Connection: close` and keep-alive clients reconnect
//! (to the new process) before the old one stops accepting (operations.md §1.1).

use crate::state::GatewayState;
use async_trait::async_trait;
use log::info;
use pingora::server::{ExecutionPhase, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::atomic::Ordering;
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
                    ) && !self.state.draining.swap(true, Ordering::Relaxed)
                    {
                        info!("draining ({phase:?}): responses now close their connections");
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}
