//! Leader election on a `coordination.k8s.io` Lease: only the holder writes. The decisions
//! (take, renew, wait, step down) are [`herald_core::lease`]'s; this module reads and writes
//! the Lease for them. Every write is a replace at the version last read, so two replicas can
//! never both believe they took it.

use std::future::Future;
use std::time::{Duration, Instant};

use herald_core::lease::{Elector, Record, Step, StepDown, Timings};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lost the leader lease {namespace}/{name}: {why}; stopped writing")]
    Lost {
        namespace: String,
        name: String,
        why: String,
    },
}

pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timings: Timings,
}

/// Waits for the lease, then runs `work` while holding it. Returns when `work` ends, or as
/// soon as the lease may be lost (another holder shows, or no renewal succeeded within the
/// renew deadline), dropping `work` and with it every write in flight. On `shutdown` it stops
/// `work` and hands the lease back, so that another replica takes over at once instead of
/// after the lease expires.
pub async fn while_leading<F, T>(
    client: Client,
    election: Election,
    work: F,
    shutdown: impl Future<Output = ()>,
) -> Result<Option<T>, Error>
where
    F: Future<Output = T>,
{
    let mut lease = LeaseClient {
        api: Api::namespaced(client, &election.namespace),
        name: election.name.clone(),
        timings: election.timings,
        current: None,
    };
    let mut elector = Elector::new(election.identity.clone(), election.timings);
    tokio::pin!(shutdown);
    info!(lease = %election.name, identity = %election.identity, "waiting for the leader lease");
    while !elector.leading() {
        match elector.next(Instant::now()) {
            Step::Claim => lease.claim(&mut elector).await,
            Step::Wait(wait) => tokio::select! {
                () = tokio::time::sleep(wait) => lease.read(&mut elector).await,
                () = &mut shutdown => return Ok(None),
            },
            // Only a leader steps down.
            Step::StepDown(_) => unreachable!("a follower is never told to step down"),
        }
    }
    info!(lease = %election.name, "leading");
    let result = tokio::select! {
        result = work => Ok(Some(result)),
        why = lease.keep(&mut elector) => {
            let why = match why {
                StepDown::Taken => "another replica holds it".to_owned(),
                StepDown::DeadlineMissed { since_renewal } => format!(
                    "no renewal succeeded for {since_renewal:.1?} (--lease-renew-deadline {:?}), \
                     so another replica may take it over",
                    election.timings.renew_deadline
                ),
            };
            warn!(lease = %election.name, "lost the leader lease: {why}");
            Err(Error::Lost {
                namespace: election.namespace.clone(),
                name: election.name.clone(),
                why,
            })
        }
        () = &mut shutdown => Ok(None),
    };
    if result.is_ok() && elector.leading() {
        lease.release(&elector).await;
    }
    result
}

/// Reads and writes the Lease for an [`Elector`].
struct LeaseClient {
    api: Api<Lease>,
    name: String,
    timings: Timings,
    /// The Lease as last read or written: its version is the precondition of the next write.
    current: Option<Lease>,
}

impl LeaseClient {
    /// Renews while leading; returns why leadership ended. Each attempt is cut off at the
    /// renew deadline, so that a request hanging on a dead connection cannot keep a replica
    /// leading past it.
    async fn keep(&mut self, elector: &mut Elector) -> StepDown {
        loop {
            match elector.next(Instant::now()) {
                Step::StepDown(why) => return why,
                Step::Wait(wait) => tokio::time::sleep(wait).await,
                Step::Claim => {
                    let deadline = elector.deadline().expect("leading");
                    let _ = tokio::time::timeout_at(deadline.into(), self.claim(elector)).await;
                }
            }
        }
    }

    async fn read(&mut self, elector: &mut Elector) {
        let read = tokio::time::timeout(self.timings.retry_period, self.api.get_opt(&self.name));
        match read.await {
            Ok(Ok(lease)) => {
                elector.observe(lease.as_ref().map(record), Instant::now());
                self.current = lease;
            }
            Ok(Err(e)) => warn!(lease = %self.name, error = %e, "reading the leader lease failed"),
            Err(_) => warn!(lease = %self.name, "reading the leader lease timed out"),
        }
    }

    /// Writes the Lease as ours (creating it if need be) at the version last read. On a
    /// conflict it reads the Lease again, so the elector sees who holds it.
    async fn claim(&mut self, elector: &mut Elector) {
        let sent = Instant::now();
        let now = MicroTime(Timestamp::now());
        let identity = elector.identity().to_owned();
        let mut lease = self.current.clone().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(identity.as_str()) {
            spec.acquire_time = Some(now.clone());
            if spec
                .holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty())
            {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.holder_identity = Some(identity);
        spec.lease_duration_seconds = Some(whole_seconds(self.timings.lease_duration));
        spec.renew_time = Some(now);
        let params = write_params();
        let written = match &self.current {
            Some(_) => self.api.replace(&self.name, &params, &lease).await,
            None => self.api.create(&params, &lease).await,
        };
        match written {
            Ok(lease) => {
                elector.claimed(record(&lease), sent);
                self.current = Some(lease);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => self.read(elector).await,
            Err(e) => warn!(lease = %self.name, error = %e, "writing the leader lease failed"),
        }
    }

    /// Hands the lease back: no holder, so that another replica takes it at once.
    async fn release(&mut self, elector: &Elector) {
        let Some(mut lease) = self.current.clone() else {
            return;
        };
        if let Some(spec) = &mut lease.spec
            && spec.holder_identity.as_deref() == Some(elector.identity())
        {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            let params = write_params();
            let released = self.api.replace(&self.name, &params, &lease);
            match tokio::time::timeout(Duration::from_secs(2), released).await {
                Ok(Ok(_)) => info!(lease = %self.name, "released the leader lease"),
                Ok(Err(e)) => {
                    warn!(lease = %self.name, error = %e, "releasing the leader lease failed")
                }
                Err(_) => warn!(lease = %self.name, "releasing the leader lease timed out"),
            }
        }
    }
}

fn write_params() -> PostParams {
    PostParams {
        field_manager: Some(crate::status::FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64),
        version: lease.resource_version().unwrap_or_default(),
    }
}

/// A Lease holds whole seconds; rounding up never shortens what followers wait.
fn whole_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).unwrap_or(i32::MAX)
}
