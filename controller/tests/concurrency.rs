//! 200 Services created at once against a pool of 100: exactly 100 get distinct addresses,
//! the rest say the pool is exhausted, and get addresses as others are deleted.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use herald_tests::{eventually, test_cluster};
use kube::api::{DeleteParams, ListParams};
use serde_json::json;
use support::*;

#[tokio::test]
async fn concurrent_creates_never_share_an_address_and_the_rest_wait() {
    let cluster = test_cluster("concurrent").await;
    pool(
        &cluster,
        "lan",
        json!({"addresses": ["192.0.2.1-192.0.2.100"]}),
    )
    .await;
    let _controller = start_controller(&cluster, &["--leader-elect=false"]);
    let names: Vec<String> = (0..200).map(|i| format!("svc-{i}")).collect();
    stream::iter(&names)
        .for_each_concurrent(64, |name| {
            let cluster = &cluster;
            async move { service(cluster, name, json!({}), json!({})).await }
        })
        .await;

    let api = services(&cluster);
    let (holders, waiting) = eventually(
        Duration::from_secs(60),
        "100 allocated and 100 waiting",
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let holders: Vec<_> = list
                .items
                .iter()
                .filter(|s| !ingress(s).is_empty())
                .cloned()
                .collect();
            let waiting: Vec<_> = list
                .items
                .iter()
                .filter(|s| allocated(s).is_some_and(|c| c.reason == "PoolExhausted"))
                .cloned()
                .collect();
            (holders.len() == 100 && waiting.len() == 100).then_some((holders, waiting))
        },
    )
    .await;
    let distinct: BTreeSet<_> = holders.iter().flat_map(ingress).collect();
    assert_eq!(distinct.len(), 100, "an address was handed out twice");

    for svc in holders.iter().take(10) {
        api.delete(
            svc.metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    }
    let list = eventually(
        Duration::from_secs(30),
        "10 waiting Services to get the freed addresses",
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let now: Vec<_> = list
                .items
                .iter()
                .filter(|s| !ingress(s).is_empty())
                .cloned()
                .collect();
            let served_waiters = waiting
                .iter()
                .filter(|w| now.iter().any(|n| n.metadata.name == w.metadata.name))
                .count();
            (now.len() == 100 && served_waiters == 10).then_some(now)
        },
    )
    .await;
    let distinct: BTreeSet<_> = list.iter().flat_map(ingress).collect();
    assert_eq!(
        distinct.len(),
        100,
        "an address was handed out twice after the deletes"
    );
}
