//! Two replicas with leader election: killing the leader in the middle of a stream of
//! creates hands over to the other, allocation resumes, and no address is given twice; a
//! leader whose lease is taken stops writing.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use herald_tests::{eventually, test_cluster};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use serde_json::json;
use support::*;

#[tokio::test]
async fn killing_the_leader_mid_stream_loses_nothing_and_duplicates_nothing() {
    let cluster = test_cluster("ha").await;
    pool(&cluster, "lan", json!({"addresses": ["192.0.2.0/24"]})).await;
    let ns = cluster.namespace().to_owned();
    let replica = |name: &str| {
        start_controller(
            &cluster,
            &[
                "--lease-namespace",
                &ns,
                "--identity",
                name,
                "--lease-duration",
                "3s",
                "--lease-renew-deadline",
                "2s",
                "--lease-retry-period",
                "500ms",
            ],
        )
    };
    let mut replicas = [replica("replica-a"), replica("replica-b")];

    let leases: Api<Lease> = Api::namespaced(cluster.client(), &ns);
    let holder = || async {
        leases
            .get("herald-controller")
            .await
            .ok()?
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    };
    let leader = eventually(WAIT, "a leader", holder).await;

    for i in 0..60 {
        service(&cluster, &format!("before-{i}"), json!({}), json!({})).await;
    }
    let killed = Instant::now();
    let index = if leader == "replica-a" { 0 } else { 1 };
    replicas[index].kill();
    for i in 0..60 {
        service(&cluster, &format!("after-{i}"), json!({}), json!({})).await;
    }
    let api = services(&cluster);
    let all = eventually(
        Duration::from_secs(60),
        "all 120 Services allocated",
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let allocated: Vec<_> = list
                .items
                .into_iter()
                .filter(|s| !ingress(s).is_empty())
                .collect();
            (allocated.len() == 120).then_some(allocated)
        },
    )
    .await;
    eprintln!(
        "all allocated {:?} after the leader was killed",
        killed.elapsed()
    );
    let distinct: BTreeSet<_> = all.iter().flat_map(ingress).collect();
    assert_eq!(distinct.len(), 120, "an address was handed out twice");
    let new_leader = eventually(WAIT, "a new leader", holder).await;
    assert_ne!(new_leader, leader);

    // A leader that sees the lease taken stops writing: it exits, and says why.
    let survivor = &mut replicas[1 - index];
    let stolen = json!({"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 3600,
        "renewTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string()}});
    leases
        .patch(
            "herald-controller",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&stolen),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while survivor.running() {
        assert!(Instant::now() < deadline, "the deposed leader still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        survivor.log_tail(200).contains("lost the leader lease"),
        "{}",
        survivor.log_tail(30)
    );
}
