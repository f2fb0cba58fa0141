//! A controller restart with 1,000 allocated Services moves nothing, writes nothing, and
//! allocates again for new Services.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::stream::{self, StreamExt};
use herald_tests::{eventually, test_cluster};
use kube::api::ListParams;
use serde_json::json;
use std::time::Duration;
use support::*;

const SERVICES: usize = 1000;

#[tokio::test]
async fn a_restart_with_1000_services_changes_no_address_and_writes_nothing() {
    let cluster = test_cluster("restart").await;
    pool(&cluster, "lan", json!({"addresses": ["2001:db8:1::/116"]})).await;
    let mut first = start_controller(&cluster, &["--leader-elect=false"]);
    create_many(&cluster, "svc", SERVICES).await;
    let before = wait_allocated(&cluster, SERVICES).await;

    first.kill();
    // Created while no controller runs, and first in name order: it must not take an
    // address that an existing Service still shows.
    service(
        &cluster,
        "aaa-new",
        json!({}),
        json!({"ipFamilies": ["IPv6"]}),
    )
    .await;
    let _second = start_controller(&cluster, &["--leader-elect=false"]);
    let new = addresses(&cluster, "aaa-new").await;
    let after = wait_allocated(&cluster, SERVICES + 1).await;
    for (name, (ips, version)) in &before {
        let (ips_after, version_after) = &after[name];
        assert_eq!(ips_after, ips, "{name} moved");
        assert_eq!(version_after, version, "{name} was written again");
    }
    assert!(
        !before.values().any(|(ips, _)| ips == &new),
        "{new:?} handed out twice"
    );
}

pub async fn create_many(cluster: &herald_tests::TestCluster, prefix: &str, count: usize) {
    stream::iter(0..count)
        .for_each_concurrent(16, |i| async move {
            service(
                cluster,
                &format!("{prefix}-{i}"),
                json!({}),
                json!({"ipFamilies": ["IPv6"]}),
            )
            .await;
        })
        .await;
}

/// Waits until `count` Services show an address; returns name → (addresses, resourceVersion).
pub async fn wait_allocated(
    cluster: &herald_tests::TestCluster,
    count: usize,
) -> BTreeMap<String, (Vec<IpAddr>, Option<String>)> {
    let api = services(cluster);
    eventually(
        Duration::from_secs(120),
        &format!("{count} allocated Services"),
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let allocated: BTreeMap<_, _> = list
                .items
                .iter()
                .filter(|s| !ingress(s).is_empty())
                .map(|s| {
                    (
                        s.metadata.name.clone().unwrap_or_default(),
                        (ingress(s), s.metadata.resource_version.clone()),
                    )
                })
                .collect();
            (allocated.len() == count).then_some(allocated)
        },
    )
    .await
}
