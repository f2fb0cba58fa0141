//! Leader election on a lease record, as decisions: given what the lease showed and when,
//! [`Elector::next`] says whether to claim it, wait, or stop leading. The runtime reads and
//! writes the Lease and reports back; time comes in as an argument, so every rule is tested
//! without a clock or an API server.
//!
//! The rules are client-go's. A follower takes the lease only once the holder has not renewed
//! it for a whole lease duration, measured on the follower's own clock from when it first saw
//! the record as it is (clocks of different machines are never compared). A leader stops
//! leading on its own clock once its last successful renewal is older than the renew
//! deadline, which is shorter than the lease duration: it has stopped before any follower
//! may take over, even when it cannot reach the API server to learn that it lost.

use std::time::{Duration, Instant};

/// What a read of the lease showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// None (or empty in the object) when nobody holds it.
    pub holder: Option<String>,
    pub duration: Duration,
    /// Changes with every write of the lease (its `resourceVersion`).
    pub version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long followers wait after the last renewal they saw before taking the lease.
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often a leader renews, and a follower looks again.
    pub retry_period: Duration,
}

/// Why timings cannot work, naming the flags a user sets.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimingsError {
    #[error("--lease-retry-period ({retry:?}) must be more than zero")]
    ZeroRetry { retry: Duration },
    #[error(
        "--lease-renew-deadline ({deadline:?}) must be longer than --lease-retry-period ({retry:?}), so that a leader renews at least once before it gives up"
    )]
    DeadlineNotAboveRetry { deadline: Duration, retry: Duration },
    #[error(
        "--lease-renew-deadline ({deadline:?}) must be shorter than --lease-duration ({duration:?}), so that a leader stops before another replica may take over"
    )]
    DeadlineNotBelowDuration {
        deadline: Duration,
        duration: Duration,
    },
}

impl Timings {
    pub fn validate(self) -> Result<Self, TimingsError> {
        let (duration, deadline, retry) =
            (self.lease_duration, self.renew_deadline, self.retry_period);
        if retry.is_zero() {
            return Err(TimingsError::ZeroRetry { retry });
        }
        if deadline <= retry {
            return Err(TimingsError::DeadlineNotAboveRetry { deadline, retry });
        }
        if deadline >= duration {
            return Err(TimingsError::DeadlineNotBelowDuration { deadline, duration });
        }
        Ok(self)
    }
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the lease as held by us (take it, or renew it), then report with
    /// [`Elector::claimed`] or [`Elector::observe`].
    Claim,
    /// Read the lease again after this long, and report with [`Elector::observe`].
    Wait(Duration),
    /// Stop every write now: the lease may be another replica's.
    StepDown(StepDown),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepDown {
    /// No renewal succeeded within the renew deadline.
    DeadlineMissed { since_renewal: Duration },
    /// The lease shows another holder.
    Taken,
}

#[derive(Debug)]
pub struct Elector {
    identity: String,
    timings: Timings,
    /// The last record read, and when it was first seen as it is.
    observed: Option<(Record, Instant)>,
    /// While leading: when the last successful renewal was sent.
    renewed: Option<Instant>,
    taken: bool,
}

impl Elector {
    pub fn new(identity: impl Into<String>, timings: Timings) -> Self {
        Elector {
            identity: identity.into(),
            timings,
            observed: None,
            renewed: None,
            taken: false,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn leading(&self) -> bool {
        self.renewed.is_some()
    }

    /// Reports a read of the lease (None: it does not exist) at `now`.
    pub fn observe(&mut self, record: Option<Record>, now: Instant) {
        let Some(record) = record else {
            self.observed = None;
            return;
        };
        if self.leading() && record.holder.as_deref() != Some(self.identity.as_str()) {
            self.taken = true;
        }
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| seen.version != record.version);
        if changed {
            self.observed = Some((record, now));
        }
    }

    /// Reports a successful claim that was sent at `sent`, and the record it wrote.
    pub fn claimed(&mut self, record: Record, sent: Instant) {
        self.renewed = Some(sent);
        self.observed = Some((record, sent));
    }

    pub fn next(&self, now: Instant) -> Step {
        if self.taken {
            return Step::StepDown(StepDown::Taken);
        }
        let retry = self.timings.retry_period;
        if let Some(renewed) = self.renewed {
            let since_renewal = now.saturating_duration_since(renewed);
            if since_renewal >= self.timings.renew_deadline {
                return Step::StepDown(StepDown::DeadlineMissed { since_renewal });
            }
            return match retry.checked_sub(since_renewal) {
                Some(left) if !left.is_zero() => Step::Wait(left),
                _ => Step::Claim,
            };
        }
        let Some((record, seen)) = &self.observed else {
            return Step::Claim;
        };
        match record.holder.as_deref() {
            None | Some("") => return Step::Claim,
            Some(holder) if holder == self.identity => return Step::Claim,
            Some(_) => {}
        }
        let expires = *seen + record.duration;
        match expires.checked_duration_since(now) {
            Some(left) if !left.is_zero() => Step::Wait(left.min(retry)),
            _ => Step::Claim,
        }
    }

    /// When the current leadership must end at the latest, without a renewal.
    pub fn deadline(&self) -> Option<Instant> {
        self.renewed.map(|r| r + self.timings.renew_deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn timings() -> Timings {
        Timings {
            lease_duration: 15 * SECOND,
            renew_deadline: 10 * SECOND,
            retry_period: 2 * SECOND,
        }
    }

    fn record(holder: &str, version: &str) -> Option<Record> {
        Some(Record {
            holder: (!holder.is_empty()).then(|| holder.to_owned()),
            duration: 15 * SECOND,
            version: version.into(),
        })
    }

    #[test]
    fn a_free_or_missing_lease_is_claimed_at_once() {
        let t0 = Instant::now();
        let mut elector = Elector::new("a", timings());
        assert_eq!(elector.next(t0), Step::Claim);
        elector.observe(record("", "1"), t0);
        assert_eq!(elector.next(t0), Step::Claim);
    }

    #[test]
    fn a_held_lease_is_taken_only_after_a_whole_duration_without_a_change() {
        let t0 = Instant::now();
        let mut elector = Elector::new("b", timings());
        elector.observe(record("a", "1"), t0);
        assert_eq!(elector.next(t0), Step::Wait(2 * SECOND));
        // The holder renews: the clock starts again from when that was seen.
        elector.observe(record("a", "2"), t0 + 10 * SECOND);
        assert_eq!(elector.next(t0 + 20 * SECOND), Step::Wait(2 * SECOND));
        assert_eq!(elector.next(t0 + 24 * SECOND), Step::Wait(SECOND));
        // Seeing the same record again does not restart it.
        elector.observe(record("a", "2"), t0 + 24 * SECOND);
        assert_eq!(elector.next(t0 + 25 * SECOND), Step::Claim);
    }

    #[test]
    fn a_leader_renews_every_retry_period_and_steps_down_at_the_deadline() {
        let t0 = Instant::now();
        let mut elector = Elector::new("a", timings());
        elector.claimed(record("a", "1").unwrap(), t0);
        assert!(elector.leading());
        assert_eq!(elector.next(t0 + SECOND), Step::Wait(SECOND));
        assert_eq!(elector.next(t0 + 2 * SECOND), Step::Claim);
        // Renewals fail (the API server cannot be reached): it keeps trying, then stops
        // before a follower that saw the last renewal could take over (15 s).
        assert_eq!(elector.next(t0 + 9 * SECOND), Step::Claim);
        assert_eq!(
            elector.next(t0 + 10 * SECOND),
            Step::StepDown(StepDown::DeadlineMissed {
                since_renewal: 10 * SECOND
            })
        );
        assert_eq!(elector.deadline(), Some(t0 + 10 * SECOND));
    }

    #[test]
    fn a_leader_that_sees_another_holder_steps_down_at_once() {
        let t0 = Instant::now();
        let mut elector = Elector::new("a", timings());
        elector.claimed(record("a", "1").unwrap(), t0);
        elector.observe(record("intruder", "2"), t0 + SECOND);
        assert_eq!(elector.next(t0 + SECOND), Step::StepDown(StepDown::Taken));
    }

    #[test]
    fn timings_must_leave_room_to_renew_and_to_stop_first() {
        let ok = timings();
        assert_eq!(ok.validate(), Ok(ok));
        let late = Timings {
            renew_deadline: 15 * SECOND,
            ..ok
        };
        assert!(late.validate().unwrap_err().to_string().starts_with(
            "--lease-renew-deadline (15s) must be shorter than --lease-duration (15s)"
        ));
        let busy = Timings {
            retry_period: 10 * SECOND,
            ..ok
        };
        assert!(matches!(
            busy.validate(),
            Err(TimingsError::DeadlineNotAboveRetry { .. })
        ));
        let zero = Timings {
            retry_period: Duration::ZERO,
            ..ok
        };
        assert!(matches!(
            zero.validate(),
            Err(TimingsError::ZeroRetry { .. })
        ));
    }
}
