//! End to end, on the lab: allocation → announcement → traffic → source address → failover,
//! for IPv4 and IPv6 and both traffic policies, with the real controller, speakers and
//! kube-proxy. Needs root (network namespaces).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use herald_tests::lab_cluster::{Binaries, Lab, LabConfig, now_micros};
use herald_tests::test_cluster;

async fn lab(name: &str) -> Lab {
    let cluster = test_cluster(name).await;
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_lab-echo"))
        .parent()
        .expect("a target folder");
    let log_dir = cluster.server().data_dir().join(name);
    std::fs::create_dir_all(&log_dir).unwrap();
    let binaries = Binaries::in_dir(profile_dir, cluster.server());
    Lab::start(
        cluster,
        LabConfig {
            name: name.to_string(),
            nodes: 3,
            pods_per_node: 1,
            log_dir,
            binaries,
        },
    )
    .await
}

#[tokio::test]
async fn traffic_reaches_the_pods_and_fails_over() {
    let mut lab = lab("e2e").await;
    lab.create_service("echo-cluster", false).await;
    lab.create_service("echo-local", true).await;
    let cluster_ips = lab.addresses("echo-cluster").await;
    let local_ips = lab.addresses("echo-local").await;
    for ip in cluster_ips.iter().chain(&local_ips) {
        eprintln!("{ip}: {:?}", lab.curl(*ip));
    }
    let node = lab.announcer("echo-cluster").await;
    let probe = lab.probe(
        cluster_ips[0],
        Duration::from_millis(10),
        Duration::from_millis(500),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failed_at = now_micros();
    lab.fail_node(node);
    let back = probe
        .first_success_after(failed_at, Duration::from_secs(10))
        .await;
    eprintln!(
        "back after {} ms: {:?}",
        (back.done - failed_at) / 1000,
        back.outcome
    );
    let _: IpAddr = cluster_ips[0];
}
