//! Per-node heartbeat Leases: the API server's slow, authoritative view of which speakers are
//! alive, consulted only when gossip loses sight of most peers (see `herald_core::fencing`).
//! One write per node per interval, never per Service.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Duration;

use herald_runtime::watches::{Index, ObjectKey};
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

/// The Node a heartbeat Lease belongs to: the Lease is owned by it, so that the garbage
/// collector removes it with the Node (a replaced node leaves no Lease behind).
#[derive(Clone, Debug)]
pub struct Owner {
    pub node: String,
    pub uid: String,
}

/// Renews this node's Lease.
pub async fn renew(
    client: &Client,
    namespace: &str,
    owner: &Owner,
    duration: Duration,
) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    let node = owner.node.as_str();
    let body = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(node), "namespace": namespace, "labels": { LABEL: "true" },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": node, "uid": owner.uid }],
        },
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

/// The heartbeat Leases the watch shows, by name.
#[derive(Debug, Default)]
pub struct Leases(BTreeMap<String, Lease>);

impl Leases {
    pub fn all(&self) -> impl Iterator<Item = &Lease> {
        self.0.values()
    }
}

impl Index<Lease> for Leases {
    type Touched = Infallible;

    fn apply(&mut self, lease: &Lease) -> Vec<Infallible> {
        self.0.insert(lease.name_any(), lease.clone());
        Vec::new()
    }

    fn delete(&mut self, lease: &Lease) -> Vec<Infallible> {
        self.0.remove(&lease.name_any());
        Vec::new()
    }

    /// A relist replaces the set: Leases deleted while the watch was away go.
    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.0
            .retain(|_, lease| present.contains(&ObjectKey::of(lease)));
        Vec::new()
    }
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

/// Nodes with a heartbeat Lease, and those whose Lease is fresh. Only Leases of existing Nodes
/// count (`is_node`): a Lease left behind by a deleted node must never look like a peer that
/// this speaker lost, or a few node replacements would make every speaker fence itself at the
/// first failed renewal.
pub fn view<'a>(
    leases: impl Iterator<Item = &'a Lease>,
    is_node: impl Fn(&str) -> bool,
    now: Timestamp,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut known = BTreeSet::new();
    let mut fresh = BTreeSet::new();
    for lease in leases {
        if let Some((node, is_fresh)) = read(lease, now).filter(|(node, _)| is_node(node)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn lease(node: &str, renewed: Timestamp) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": lease_name(node), "labels": {LABEL: "true"}},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 3, "renewTime": MicroTime(renewed)},
        }))
        .unwrap()
    }

    #[test]
    fn a_relist_forgets_leases_deleted_while_the_watch_was_away() {
        use herald_runtime::watches::Watch;
        use kube::runtime::watcher::Event;
        let now = Timestamp::now();
        let mut watch = Watch::default();
        let mut leases = Leases::default();
        for event in [
            Event::Init,
            Event::InitApply(lease("a", now)),
            Event::InitApply(lease("gone", now)),
            Event::InitDone,
            // The API server restarts; "gone" was deleted meanwhile.
            Event::Init,
            Event::InitApply(lease("a", now)),
            Event::InitDone,
        ] {
            watch.handle(&mut leases, event);
        }
        let (known, _) = view(leases.all(), |_| true, now);
        assert_eq!(known, BTreeSet::from(["a".to_string()]));
    }

    #[test]
    fn leases_of_deleted_nodes_are_no_peers() {
        let now = Timestamp::now();
        let long_ago = now - SignedDuration::from_hours(24);
        let mut leases: Vec<Lease> = ["a", "b", "c"].iter().map(|n| lease(n, now)).collect();
        leases.extend(
            ["old-1", "old-2", "old-3", "old-4"]
                .iter()
                .map(|n| lease(n, long_ago)),
        );
        let nodes = ["a", "b", "c"];
        let (known, fresh) = view(leases.iter(), |n| nodes.contains(&n), now);
        let all: BTreeSet<String> = nodes.iter().map(|n| n.to_string()).collect();
        assert_eq!((&known, &fresh), (&all, &all));
        // So a speaker that sees its two peers alive answers even when the API server is away.
        let verdict = herald_core::fencing::verdict(
            "a",
            true,
            &known,
            &all,
            &herald_core::fencing::ApiView::Unreachable,
        );
        assert_eq!(verdict, herald_core::fencing::Verdict::Answer);
    }
}
