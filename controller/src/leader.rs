//! Leader election on a `coordination.k8s.io` Lease: only the holder writes.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        source: LeaseManagerError,
    },
    #[error("lost the leader lease {namespace}/{name}; stopped writing")]
    Lost { namespace: String, name: String },
}

pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration_seconds: u64,
    pub renew_before_seconds: u64,
}

/// Waits for the lease, then runs `work` while holding it. Returns when `work` ends, or as
/// soon as the lease is lost, dropping `work` (and with it every write in flight). On
/// `shutdown` it stops `work` and hands the lease back, so that another replica takes over
/// at once instead of after the lease expires.
pub async fn while_leading<F, T>(
    client: Client,
    election: Election,
    work: F,
    shutdown: impl Future<Output = ()>,
) -> Result<Option<T>, Error>
where
    F: Future<Output = T>,
{
    let lease_error = |source| Error::Lease {
        namespace: election.namespace.clone(),
        name: election.name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client, &election.name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration_seconds)
        .with_grace(election.renew_before_seconds)
        .with_field_manager(format!("herald-controller-{}", election.identity))
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leading, task) = manager.watch().await;
    tokio::pin!(shutdown);
    info!(lease = %election.name, identity = %election.identity, "waiting for the leader lease");
    let lost = || Error::Lost {
        namespace: election.namespace.clone(),
        name: election.name.clone(),
    };
    while !*leading.borrow_and_update() {
        tokio::select! {
            changed = leading.changed() => changed.map_err(|_| lost())?,
            () = &mut shutdown => return Ok(None),
        }
    }
    info!(lease = %election.name, "leading");
    let result = tokio::select! {
        result = work => Ok(Some(result)),
        _ = async {
            while *leading.borrow_and_update() {
                if leading.changed().await.is_err() { break; }
            }
        } => {
            warn!(lease = %election.name, "lost the leader lease");
            Err(lost())
        }
        () = &mut shutdown => Ok(None),
    };
    // Closing the channel makes the manager release the lease; wait for it briefly.
    drop(leading);
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    result
}
