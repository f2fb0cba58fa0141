//! BGP end to end, on the lab with BGP (`herald_tests::lab::bgp`): Herald installed by its
//! Helm chart with `speaker.bgp.enabled`, so that FRR runs as the speaker Pod's sidecar on real
//! kubelets, from Herald's FRR image; a BIRD 2 router on the LAN peering with every node with
//! BFD; a client outside that reaches the Services only through the router. Sessions on the
//! BGPSessionState objects, ECMP, the Local policy's endpoint nodes, a failed node's routes
//! withdrawn and back. Needs root, and what `scripts/test` prepares (`HERALD_IMAGE`,
//! `HERALD_LAB_IMAGES`, `HERALD_FRR_IMAGE`, `HERALD_HELM`). Its own test binary: one lab runs
//! at a time, and Cargo runs test binaries one after the other.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use herald_tests::lab::bgp::OUTSIDE_CLIENT;
use herald_tests::lab::{Lab, Reply};

async fn lab(name: &str) -> Lab {
    // Cargo builds every binary of the workspace into one folder before it runs the tests.
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_lab-echo"))
        .parent()
        .expect("a target folder");
    Lab::for_test(name, profile_dir, true).await
}

/// The echo replies to `count` requests from the outside client to `ip`; panics on a failed
/// one.
fn outside_replies(lab: &Lab, ip: IpAddr, count: usize) -> Vec<Reply> {
    (0..count)
        .map(|n| {
            let body = lab
                .outside_curl(ip)
                .unwrap_or_else(|e| panic!("request {n} to {ip} from outside failed: {e}"));
            Reply::parse(&body).unwrap_or_else(|| panic!("not an echo reply: {body}"))
        })
        .collect()
}

#[tokio::test]
async fn bgp_end_to_end() {
    let mut lab = lab("e2e-bgp").await;
    let all: Vec<usize> = (0..lab.nodes.len()).collect();
    let cluster_ip = lab.create_bgp_service("echo-bgp", false).await;
    let local_ip = lab.create_bgp_service("echo-bgp-local", true).await;

    // Every node's FRR sidecar holds its session, with BFD, advertising both addresses; users
    // see it on the BGPSessionState objects and the Services' conditions.
    let states = lab
        .session_states("be established with BFD up and both prefixes", |s| {
            s.bgp_state.as_deref() == Some("Established")
                && s.bfd_state.as_deref() == Some("Up")
                && s.prefixes_advertised == Some(2)
        })
        .await;
    let nodes: BTreeSet<&str> = states.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(
        nodes,
        lab.nodes.iter().map(|n| n.name.as_str()).collect(),
        "a session state per node"
    );
    let peer = lab.bgp().peer.clone();
    for service in ["echo-bgp", "echo-bgp-local"] {
        let message = lab.announced(service, "Announced").await;
        assert!(
            message.contains("advertised over BGP by nodes")
                && lab.nodes.iter().all(|n| message.contains(&n.name))
                && message.contains(&peer),
            "{service}: {message}"
        );
    }

    // ECMP: the router routes each address through every node, and spreads connections over
    // them. Local keeps the client's address.
    lab.wait_router_nodes(cluster_ip, &all).await;
    lab.wait_router_nodes(local_ip, &all).await;
    let replies = outside_replies(&lab, local_ip, 30);
    let answering: BTreeSet<&str> = replies.iter().map(|r| r.node.as_str()).collect();
    assert!(
        answering.len() > 1,
        "30 connections through the router all reached {answering:?}"
    );
    for reply in &replies {
        assert_eq!(
            reply.saw,
            IpAddr::V4(OUTSIDE_CLIENT),
            "Local: the Pod sees the client's own address"
        );
    }
    outside_replies(&lab, cluster_ip, 5);

    // A node without a ready endpoint stops advertising the Local Service only.
    let node = 2;
    let name = lab.nodes[node].name.clone();
    let pod = lab.echo_pod_on(node).await;
    lab.cluster.kubectl(&["cordon", &name]);
    lab.cluster
        .kubectl(&["delete", "pod", "-n", lab.cluster.namespace(), &pod.name]);
    lab.wait_router_nodes(local_ip, &others_than(&all, node))
        .await;
    assert_eq!(lab.router_nodes(cluster_ip), all, "Cluster: every node");
    outside_replies(&lab, local_ip, 10);
    lab.cluster.kubectl(&["uncordon", &name]);
    lab.wait_router_nodes(local_ip, &all).await;

    // A failed node's routes are withdrawn (BFD) and traffic flows through the others; they
    // come back with the node. (How long it takes is measured, not asserted: the lab bench and
    // scripts/bench-bgp-failover.)
    let node = 1;
    let failover = lab.bgp_failover(local_ip, node).await;
    println!(
        "BGP failover on the real cluster: route withdrawn {} ms after the failure; {} of {} \
         requests failed until then",
        failover.withdrawn.as_millis(),
        failover.failed,
        failover.sent
    );
    lab.wait_router_nodes(cluster_ip, &others_than(&all, node))
        .await;
    // Local only: with Cluster, kube-proxy on the other nodes still sends some connections to
    // the failed node's Pod until the node controller marks it NotReady (50 s).
    outside_replies(&lab, local_ip, 10);
    lab.restore_node(node).await;
    lab.wait_router_nodes(local_ip, &all).await;
    lab.wait_router_nodes(cluster_ip, &all).await;
    lab.session_states("be established again", |s| {
        s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(2)
    })
    .await;
}

fn others_than(all: &[usize], node: usize) -> Vec<usize> {
    all.iter().copied().filter(|i| *i != node).collect()
}
