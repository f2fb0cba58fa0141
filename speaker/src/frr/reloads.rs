//! When to reload FRR, without I/O: a burst of new configurations becomes one reload of the
//! last, a configuration FRR already runs is not reloaded, one reload runs at a time, and a
//! failed one is tried again later. [`super::driver::run`] feeds in the configurations, the
//! clock and the outcomes, and performs the reloads this says.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long a new configuration waits for newer ones before it is applied.
    pub debounce: Duration,
    /// How long after a failed reload the configuration is tried again (FRR may still be
    /// starting, in a sidecar started with the speaker).
    pub retry: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            debounce: Duration::from_millis(200),
            retry: Duration::from_secs(5),
        }
    }
}

/// How applying a configuration ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// FRR refused it before changing anything (`frr-reload.py --test`).
    Rejected(String),
    /// The reload itself failed: FRR may run part of it.
    Failed(String),
}

#[derive(Debug)]
struct Pending {
    config: String,
    due: Instant,
}

#[derive(Debug)]
pub struct Reloads {
    timings: Timings,
    /// What FRR runs, as far as is known: the configuration last applied in full.
    running: Option<String>,
    /// The newest configuration wanted that FRR does not run, and when to apply it.
    pending: Option<Pending>,
    /// The configuration being applied now.
    applying: Option<String>,
    /// FRR's message for the last attempt, while it failed.
    last_failure: Option<String>,
}

impl Reloads {
    pub fn new(timings: Timings) -> Self {
        Reloads {
            timings,
            running: None,
            pending: None,
            applying: None,
            last_failure: None,
        }
    }

    /// A new complete configuration is wanted.
    pub fn on_wanted(&mut self, config: String, now: Instant) {
        let current = self.applying.as_ref().or(self.running.as_ref());
        if current == Some(&config) {
            self.pending = None;
            return;
        }
        // The first of a burst sets when it is applied; later ones only replace it, so that a
        // steady stream of changes still reloads every `debounce`. A new configuration does
        // not wait for the retry of a failed one.
        let debounced = now + self.timings.debounce;
        let due = match &self.pending {
            Some(pending) => pending.due.min(debounced),
            None => debounced,
        };
        self.pending = Some(Pending { config, due });
    }

    /// When [`Reloads::on_deadline`] must be called next; None while nothing is to be applied
    /// or a reload runs.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (&self.applying, &self.pending) {
            (None, Some(pending)) => Some(pending.due),
            _ => None,
        }
    }

    /// The configuration to apply now, if one is due; the caller applies it and reports with
    /// [`Reloads::on_outcome`].
    pub fn on_deadline(&mut self, now: Instant) -> Option<String> {
        if self.applying.is_some() || self.pending.as_ref().is_none_or(|p| p.due > now) {
            return None;
        }
        let config = self.pending.take()?.config;
        self.applying = Some(config.clone());
        Some(config)
    }

    /// How applying the configuration [`Reloads::on_deadline`] gave ended.
    pub fn on_outcome(&mut self, outcome: &Outcome, now: Instant) {
        let Some(config) = self.applying.take() else {
            return;
        };
        let message = match outcome {
            Outcome::Applied => {
                self.running = Some(config);
                self.last_failure = None;
                return;
            }
            Outcome::Rejected(message) => message,
            Outcome::Failed(message) => {
                // Part of it may run: the next configuration is applied whatever it is.
                self.running = None;
                message
            }
        };
        self.last_failure = Some(message.clone());
        if self.pending.is_none() {
            self.pending = Some(Pending {
                config,
                due: now + self.timings.retry,
            });
        }
    }

    /// FRR's daemons restarted (its container did): what they run is not known any more, so
    /// the configuration they ran is applied again (a reload that changes nothing when they
    /// loaded it at start).
    pub fn on_frr_restarted(&mut self, now: Instant) {
        let Some(config) = self.running.take() else {
            return;
        };
        if self.pending.is_none() && self.applying.is_none() {
            self.pending = Some(Pending {
                config,
                due: now + self.timings.debounce,
            });
        }
    }

    /// FRR's message for the last attempt, while the configuration wanted is not applied
    /// because of it.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// The configuration FRR runs in full, if known.
    pub fn running(&self) -> Option<&str> {
        self.running.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(200);
    const RETRY: Duration = Duration::from_secs(5);

    fn reloads() -> Reloads {
        Reloads::new(Timings {
            debounce: DEBOUNCE,
            retry: RETRY,
        })
    }

    #[test]
    fn a_burst_is_one_reload_of_the_last() {
        let mut r = reloads();
        let t0 = Instant::now();
        r.on_wanted("a".into(), t0);
        r.on_wanted("b".into(), t0 + Duration::from_millis(50));
        r.on_wanted("c".into(), t0 + Duration::from_millis(150));
        assert_eq!(r.next_deadline(), Some(t0 + DEBOUNCE));
        assert_eq!(r.on_deadline(t0 + Duration::from_millis(199)), None);
        assert_eq!(r.on_deadline(t0 + DEBOUNCE).as_deref(), Some("c"));
        r.on_outcome(&Outcome::Applied, t0 + DEBOUNCE);
        assert_eq!(r.running(), Some("c"));
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn what_runs_is_not_reloaded() {
        let mut r = reloads();
        let t0 = Instant::now();
        r.on_wanted("a".into(), t0);
        let a = r.on_deadline(t0 + DEBOUNCE).unwrap();
        r.on_outcome(&Outcome::Applied, t0 + DEBOUNCE);
        r.on_wanted(a, t0 + DEBOUNCE * 2);
        assert_eq!(r.next_deadline(), None);
        // A change and its undoing within one burst: nothing to do either.
        r.on_wanted("b".into(), t0 + DEBOUNCE * 3);
        r.on_wanted("a".into(), t0 + DEBOUNCE * 3);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn one_reload_at_a_time() {
        let mut r = reloads();
        let t0 = Instant::now();
        r.on_wanted("a".into(), t0);
        assert_eq!(r.on_deadline(t0 + DEBOUNCE).as_deref(), Some("a"));
        r.on_wanted("b".into(), t0 + DEBOUNCE);
        // "a" is still being applied.
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.on_deadline(t0 + DEBOUNCE * 5), None);
        r.on_outcome(&Outcome::Applied, t0 + DEBOUNCE * 5);
        assert_eq!(r.on_deadline(t0 + DEBOUNCE * 5).as_deref(), Some("b"));
        // What is being applied counts as running for what comes meanwhile.
        r.on_wanted("b".into(), t0 + DEBOUNCE * 5);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn a_failed_reload_is_kept_and_tried_again() {
        let mut r = reloads();
        let t0 = Instant::now();
        r.on_wanted("a".into(), t0);
        r.on_deadline(t0 + DEBOUNCE).unwrap();
        r.on_outcome(&Outcome::Rejected("line 3: % Unknown command".into()), t0);
        assert_eq!(r.last_failure(), Some("line 3: % Unknown command"));
        assert_eq!(r.next_deadline(), Some(t0 + RETRY));
        assert_eq!(r.on_deadline(t0 + RETRY).as_deref(), Some("a"));
        r.on_outcome(&Outcome::Applied, t0 + RETRY);
        assert_eq!(r.last_failure(), None);
        assert_eq!(r.running(), Some("a"));
    }

    #[test]
    fn a_newer_configuration_replaces_a_failed_one() {
        let mut r = reloads();
        let t0 = Instant::now();
        r.on_wanted("a".into(), t0);
        r.on_deadline(t0 + DEBOUNCE).unwrap();
        r.on_wanted("b".into(), t0 + DEBOUNCE);
        r.on_outcome(&Outcome::Failed("vtysh timed out".into()), t0 + DEBOUNCE);
        assert_eq!(r.running(), None);
        assert_eq!(r.next_deadline(), Some(t0 + DEBOUNCE * 2));
        assert_eq!(r.on_deadline(t0 + DEBOUNCE * 2).as_deref(), Some("b"));
    }

    #[test]
    fn after_a_failed_reload_the_old_configuration_is_applied_again() {
        let mut r = reloads();
        let t0 = Instant::now();
        r.on_wanted("a".into(), t0);
        r.on_deadline(t0 + DEBOUNCE).unwrap();
        r.on_outcome(&Outcome::Applied, t0 + DEBOUNCE);
        r.on_wanted("b".into(), t0 + DEBOUNCE);
        r.on_deadline(t0 + DEBOUNCE * 2).unwrap();
        r.on_outcome(&Outcome::Failed("half done".into()), t0 + DEBOUNCE * 2);
        // FRR may run half of "b": going back to "a" is a reload, not a no-op.
        r.on_wanted("a".into(), t0 + DEBOUNCE * 2);
        assert_eq!(r.on_deadline(t0 + DEBOUNCE * 3).as_deref(), Some("a"));
    }

    #[test]
    fn what_ran_is_applied_again_when_frr_restarts() {
        let mut r = reloads();
        let t0 = Instant::now();
        r.on_wanted("a".into(), t0);
        r.on_deadline(t0 + DEBOUNCE).unwrap();
        r.on_outcome(&Outcome::Applied, t0 + DEBOUNCE);
        r.on_frr_restarted(t0 + DEBOUNCE * 2);
        assert_eq!(r.running(), None);
        assert_eq!(r.on_deadline(t0 + DEBOUNCE * 3).as_deref(), Some("a"));
        // A newer configuration wanted meanwhile is what is applied.
        r.on_outcome(&Outcome::Applied, t0 + DEBOUNCE * 3);
        r.on_wanted("b".into(), t0 + DEBOUNCE * 4);
        r.on_frr_restarted(t0 + DEBOUNCE * 4);
        assert_eq!(r.on_deadline(t0 + DEBOUNCE * 5).as_deref(), Some("b"));
        // Before anything was applied there is nothing to apply again.
        let mut fresh = reloads();
        fresh.on_frr_restarted(t0);
        assert_eq!(fresh.next_deadline(), None);
    }
}
