//! One rebuild and its outcome, whichever source asked for it (see [`Applier`]).

use super::builder::{Input, PolicyBuilder};
use crate::runtime::publish;
use crate::runtime::state::GatewayState;
use log::error;
use std::time::Duration;

/// What became of a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The same content as what serves: nothing done.
    Unchanged,
    /// The same content as the change rejected last: nothing done, still rejected.
    StillRejected,
    /// A new snapshot serves.
    Swapped,
    /// Invalid: the previous snapshot keeps serving, `last_error` says why.
    Rejected,
    /// The builder thread is gone; nothing can be applied any more.
    BuilderGone,
}

/// Builds a source's content and swaps it in, skipping content that did not change.
pub struct Applier<'a> {
    pub state: &'a GatewayState,
    pub builder: &'a PolicyBuilder,
    /// Fingerprint of the content last built (applied or rejected).
    pub last_fingerprint: u64,
    /// Whether that content was rejected.
    pub last_rejected: bool,
}

impl Applier<'_> {
    pub async fn apply(&mut self, input: Input) -> Applied {
        let next_generation = self.state.snapshot.load().generation + 1;
        let Some(result) = self.builder.build(input, next_generation).await else {
            error!("the policy builder thread is gone; policy changes are not applied");
            return Applied::BuilderGone;
        };
        match result {
            Ok(built) => {
                if built.fingerprint == self.last_fingerprint {
                    return Applied::Unchanged; // touched or rewritten with the same content
                }
                self.last_fingerprint = built.fingerprint;
                self.last_rejected = false;
                publish::applied(self.state, built);
                // Requests still running on the old snapshot finish within moments; then its
                // memory can go back to the OS.
                self.builder.collect_later(Duration::from_secs(2));
                Applied::Swapped
            }
            Err(rejected) => {
                if rejected.fingerprint == self.last_fingerprint {
                    return Applied::StillRejected;
                }
                self.last_fingerprint = rejected.fingerprint;
                self.last_rejected = true;
                publish::rejected(self.state, &rejected);
                Applied::Rejected
            }
        }
    }
}
