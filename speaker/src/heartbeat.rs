//! Per-node heartbeat Leases: the API server's slow, authoritative view of which speakers are
//! alive, consulted only when gossip loses sight of most peers (see `herald_core::fencing`).
//! One write per node per interval, never per Service.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The label that marks the speakers' heartbeat Leases.
pub const LABEL: &str = "herald.dev/speaker-heartbeat";
pub const FIELD_MANAGER: &str = herald_crds::field_managers::SPEAKER;

pub fn lease_name(node: &str) -> String {
    format!("herald-speaker-{node}")
}

/// Renews this node's Lease.
pub async fn renew(
    client: &Client,
    namespace: &str,
    node: &str,
    duration: Duration,
) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    let body = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": lease_name(node), "namespace": namespace, "labels": { LABEL: "true" } },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration.as_secs().max(1),
            "renewTime": MicroTime(now),
        },
    });
    Api::<Lease>::namespaced(client.clone(), namespace)
        .patch(
            &lease_name(node),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map(drop)
}

/// Removes this node's Lease on a graceful stop, so peers need not wait for it to expire.
pub async fn remove(client: &Client, namespace: &str, node: &str) -> Result<(), kube::Error> {
    Api::<Lease>::namespaced(client.clone(), namespace)
        .delete(&lease_name(node), &Default::default())
        .await
        .map(drop)
}

/// The node a heartbeat Lease belongs to, and whether it is fresh at `now`.
pub fn read(lease: &Lease, now: Timestamp) -> Option<(String, bool)> {
    let spec = lease.spec.as_ref()?;
    let node = spec.holder_identity.clone()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = i64::from(spec.lease_duration_seconds?);
    let fresh = renewed
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(duration))
        .is_ok_and(|expires| expires > now);
    Some((node, fresh))
}

/// Nodes with a heartbeat Lease, and those whose Lease is fresh.
pub fn view<'a>(
    leases: impl Iterator<Item = &'a Lease>,
    now: Timestamp,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut known = BTreeSet::new();
    let mut fresh = BTreeSet::new();
    for lease in leases {
        if let Some((node, is_fresh)) = read(lease, now) {
            if is_fresh {
                fresh.insert(node.clone());
            }
            known.insert(node);
        } else {
            tracing::debug!(lease = %lease.name_any(), "heartbeat Lease without holder or times");
        }
    }
    (known, fresh)
}
