//! Keeps FRR running the configuration the speaker wants: performs what [`Reloads`] decides,
//! one reload at a time, counts the outcomes and publishes the last failure.

use std::time::Instant;

use tokio::sync::watch;
use tokio::time::sleep_until;
use tracing::{info, warn};

use super::control::Frr;
use super::reloads::{Outcome, Reloads, Timings};
use crate::metrics::{Metrics, ReloadResult};

/// What the driver has done, for conditions and Events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// The configuration FRR runs, as last applied in full; None before the first.
    pub running: Option<String>,
    /// FRR's message for the last attempt, while the configuration wanted is not applied
    /// because of it.
    pub last_failure: Option<String>,
}

/// Runs until `wanted` is closed. `wanted` holds the newest complete `frr.conf`, None until
/// there is one; `frr_restarted` changes when FRR's daemons have restarted (its container
/// restarted).
pub async fn run(
    frr: Frr,
    mut wanted: watch::Receiver<Option<String>>,
    mut frr_restarted: watch::Receiver<()>,
    timings: Timings,
    status: watch::Sender<ReloadStatus>,
    metrics: Metrics,
) {
    let mut reloads = Reloads::new(timings);
    wanted.mark_changed();
    loop {
        let deadline = reloads.next_deadline();
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
                if let Some(config) = wanted.borrow_and_update().clone() {
                    reloads.on_wanted(config, Instant::now());
                }
            }
            Ok(()) = frr_restarted.changed() => {
                info!("FRR restarted: applying the configuration again");
                reloads.on_frr_restarted(Instant::now());
            }
            () = sleep_until(tokio::time::Instant::from_std(deadline.unwrap_or_else(Instant::now))),
                if deadline.is_some() =>
            {
                let Some(config) = reloads.on_deadline(Instant::now()) else {
                    continue;
                };
                let outcome = frr.apply(&config).await;
                let result = match &outcome {
                    Outcome::Applied => {
                        info!(path = %frr.config_path().display(), "FRR runs the new configuration");
                        "applied"
                    }
                    Outcome::Rejected(message) => {
                        warn!(%message, "FRR rejected the configuration; it runs the previous one");
                        "rejected"
                    }
                    Outcome::Failed(message) => {
                        warn!(%message, "reloading FRR failed");
                        "failed"
                    }
                };
                metrics
                    .bgp_reloads
                    .get_or_create(&ReloadResult { result: result.into() })
                    .inc();
                reloads.on_outcome(&outcome, Instant::now());
                status.send_modify(|s| {
                    if outcome == Outcome::Applied {
                        s.running = Some(config.clone());
                    }
                    s.last_failure = reloads.last_failure().map(str::to_string);
                });
            }
        }
    }
}
