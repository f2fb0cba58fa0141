//! End to end, on the lab (`herald_tests::lab`, a real cluster with Herald installed from its
//! image and Helm chart): allocation → announcement → traffic → source address → failover, for
//! IPv4 and IPv6 and both traffic policies, a node whose kubelet stops, a pool edit and a
//! controller restart in the middle of traffic, a speaker Pod deleted and a rolling update of
//! Herald's image (one node answering afterwards), with real clients (`arping`, `ndisc6`, `curl`,
//! `ip neigh`). One lab serves every step: its controller sees every Service of the API
//! server. Needs root (network namespaces), and the images and helm `scripts/lab` prepares
//! (`HERALD_IMAGE`, `HERALD_LAB_IMAGES`, `HERALD_HELM`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use herald_tests::eventually;
use herald_tests::lab::{Lab, NODE_FAILURE_WAIT, Probe, Reply, WAIT};

const CLUSTER: &str = "echo-cluster";
const LOCAL: &str = "echo-local";

async fn lab(name: &str) -> Lab {
    // Cargo builds every binary of the workspace into one folder before it runs the tests.
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_lab-echo"))
        .parent()
        .expect("a target folder");
    Lab::for_test(name, profile_dir, false).await
}

#[tokio::test]
async fn herald_end_to_end() {
    let mut lab = lab("e2e").await;
    lab.create_service(CLUSTER, false).await;
    lab.create_service(LOCAL, true).await;

    // Allocation: each Service gets one address of each family from the pool, none shared.
    let cluster_ips = lab.addresses(CLUSTER).await;
    let local_ips = lab.addresses(LOCAL).await;
    for ips in [&cluster_ips, &local_ips] {
        assert!(ips[0].is_ipv4() && ips[1].is_ipv6(), "{ips:?}");
        for ip in ips.iter() {
            let in_pool = match ip {
                IpAddr::V4(ip) => (200..=220).contains(&ip.octets()[3]),
                IpAddr::V6(ip) => (0x200..=0x220).contains(&ip.segments()[7]),
            };
            assert!(in_pool, "{ip} is not in the lab's pool");
        }
    }
    let all: BTreeSet<IpAddr> = cluster_ips.iter().chain(&local_ips).copied().collect();
    assert_eq!(
        all.len(),
        4,
        "an address handed out twice: {cluster_ips:?} {local_ips:?}"
    );

    // Announcement, traffic and source address, for each family and policy.
    for (service, ips, local) in [(CLUSTER, &cluster_ips, false), (LOCAL, &local_ips, true)] {
        for ip in ips.iter().copied() {
            let node = lab.settled(service, ip).await;
            assert_eq!(
                answering_macs(&lab, ip).await,
                BTreeSet::from([lab.nodes[node].host.mac.clone()]),
                "{service} {ip}: exactly the node its condition names answers"
            );
            let reply = reply(&lab, ip);
            if local {
                assert_local(&lab, &reply, ip, node, "first");
            } else {
                assert!(
                    lab.node_of_address(reply.saw).is_some(),
                    "{service} {ip}: Cluster traffic comes from a node, not {}",
                    reply.saw
                );
            }
        }
    }

    // Local follows the ready endpoints: when the kubelet of the node answering for echo-local
    // stops, the node controller marks the node NotReady and its Pod's endpoints unready, and a
    // node with a ready Pod answers instead; the Pod there still sees the client's own address.
    let node = lab.settled(LOCAL, local_ips[0]).await;
    lab.stop_kubelet(node);
    lab.wait_node_ready(node, false, NODE_FAILURE_WAIT).await;
    for ip in local_ips.iter().copied() {
        eventually(
            WAIT,
            "echo-local to leave the node without a ready Pod",
            || async { (lab.announcer(LOCAL).await != node).then_some(()) },
        )
        .await;
        let now = lab.settled(LOCAL, ip).await;
        assert_local(
            &lab,
            &reply(&lab, ip),
            ip,
            now,
            "after its node's kubelet stopped",
        );
    }
    // The addresses go back once the node is Ready again: wait for that before going on.
    lab.start_kubelet(node);
    lab.wait_node_ready(node, true, WAIT).await;
    for ip in local_ips.iter().copied() {
        lab.settled(LOCAL, ip).await;
    }

    // A pool edit in the middle of traffic: more addresses, in another order. Nothing moves and
    // no request fails.
    let probes = steady_traffic(&lab, &[cluster_ips[0], local_ips[1]]);
    lab.set_pool_addresses(&["2001:db8::200-2001:db8::230", "192.0.2.200-192.0.2.230"])
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(lab.addresses(CLUSTER).await, cluster_ips);
    assert_eq!(lab.addresses(LOCAL).await, local_ips);
    nothing_lost(&probes, "during the pool edit");

    // A controller restart in the middle of traffic: a Service created while it is down gets a
    // new address once it is back; nothing held moves and no request fails.
    let probes = steady_traffic(&lab, &[cluster_ips[1], local_ips[0]]);
    lab.stop_controller().await;
    lab.create_service("echo-late", false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    lab.start_controller().await;
    let late_ips = lab.addresses("echo-late").await;
    assert!(
        late_ips.iter().all(|ip| !all.contains(ip)),
        "echo-late got a held address: {late_ips:?}"
    );
    assert_eq!(lab.addresses(CLUSTER).await, cluster_ips);
    assert_eq!(lab.addresses(LOCAL).await, local_ips);
    lab.settled("echo-late", late_ips[0]).await;
    assert!(reply(&lab, late_ips[1]).saw.is_ipv6());
    nothing_lost(&probes, "during the controller restart");

    // The speaker Pod on the node answering for echo-cluster is deleted: the DaemonSet makes a
    // new one, and the address is answered by one node again.
    let node = lab.settled(CLUSTER, cluster_ips[1]).await;
    lab.delete_speaker_pod(node).await;
    for ip in [cluster_ips[1], local_ips[1]] {
        one_answerer(&lab, ip, "after a speaker Pod was deleted").await;
    }

    // A rolling update to a new image tag, as a user upgrades: every speaker is replaced in
    // turn; no request is answered by two nodes meanwhile, and each address is answered by
    // one node afterwards.
    let ips: Vec<IpAddr> = cluster_ips.iter().chain(&local_ips).copied().collect();
    let watches: Vec<_> = ips.iter().map(|ip| lab.client.watch_answers(*ip)).collect();
    lab.upgrade_herald("0.1.0-rollout").await;
    for ip in &ips {
        one_answerer(&lab, *ip, "after the rolling update").await;
    }
    for (ip, watch) in ips.iter().zip(watches) {
        let answers = watch.stop();
        let twice: Vec<_> = answers.iter().filter(|macs| macs.len() > 1).collect();
        let unanswered = answers.iter().filter(|macs| macs.is_empty()).count();
        eprintln!(
            "rolling update, {ip}: {} requests, {unanswered} unanswered, {} answered by two nodes",
            answers.len(),
            twice.len()
        );
        assert!(
            twice.is_empty(),
            "{ip}: requests answered by more than one node during the rolling update: {twice:?}"
        );
    }

    // Failover, for each family and policy: the answering node fails under traffic, traffic
    // comes back through another node, and Local traffic still keeps the client's address.
    for (service, ip, local) in [
        (CLUSTER, cluster_ips[0], false),
        (LOCAL, local_ips[1], true),
        (CLUSTER, cluster_ips[1], false),
        (LOCAL, local_ips[0], true),
    ] {
        let node = lab.settled(service, ip).await;
        let (gap, body) = lab.failover(ip, node).await;
        let after = Reply::parse(&body).unwrap_or_else(|| panic!("a lab reply: {body:?}"));
        let now = lab.announcer(service).await;
        assert_ne!(
            now, node,
            "{service} {ip}: still announced by the failed node"
        );
        assert_eq!(
            lab.neighbour_node(ip),
            Some(now),
            "{service} {ip}: the client's neighbour entry"
        );
        if local {
            assert_local(&lab, &after, ip, now, "after the failover");
        }
        eprintln!(
            "{service} {ip}: {} failed; traffic back through {} after {} ms",
            lab.nodes[node].name,
            lab.nodes[now].name,
            gap.as_millis()
        );
        lab.restore_node(node).await;
    }
}

/// The MACs that answer ARP (IPv4) or NDP (IPv6) for `ip` at the client, with the kernel's
/// own tools.
async fn answering_macs(lab: &Lab, ip: IpAddr) -> BTreeSet<String> {
    let client = lab.client.clone();
    tokio::task::spawn_blocking(move || match ip {
        IpAddr::V4(ip) => client
            .arping(ip, 2, Duration::from_millis(600))
            .into_iter()
            .collect(),
        IpAddr::V6(ip) => client
            .ndisc(ip, Duration::from_millis(600))
            .into_iter()
            .map(|advert| {
                assert!(advert.solicited && advert.override_, "{ip}: {advert:?}");
                advert.mac
            })
            .collect(),
    })
    .await
    .expect("the client's probe")
}

/// Waits until the address's Service settles on one node, and checks that this node alone
/// answers for it, and that the client reaches it.
async fn one_answerer(lab: &Lab, ip: IpAddr, when: &str) {
    let service = if lab.addresses(CLUSTER).await.contains(&ip) {
        CLUSTER
    } else {
        LOCAL
    };
    let node = lab.settled(service, ip).await;
    assert_eq!(
        answering_macs(lab, ip).await,
        BTreeSet::from([lab.nodes[node].host.mac.clone()]),
        "{service} {ip} ({when}): the MACs answering"
    );
    reply(lab, ip);
}

/// With `externalTrafficPolicy: Local` the request reached the pod on the announcing node with
/// the client's own address.
fn assert_local(lab: &Lab, reply: &Reply, ip: IpAddr, announcing: usize, when: &str) {
    let client = match ip {
        IpAddr::V4(_) => IpAddr::V4(lab.client.ipv4),
        IpAddr::V6(_) => IpAddr::V6(lab.client.ipv6),
    };
    assert_eq!(
        reply.saw, client,
        "{ip} ({when}): Local keeps the client's address"
    );
    assert_eq!(
        reply.node, lab.nodes[announcing].name,
        "{ip} ({when}): Local traffic stays on the announcing node"
    );
}

fn reply(lab: &Lab, ip: IpAddr) -> Reply {
    let body = lab
        .curl(ip)
        .unwrap_or_else(|e| panic!("curl {ip} from the client: {e}"));
    Reply::parse(&body).unwrap_or_else(|| panic!("curl {ip}: not a lab reply: {body:?}"))
}

/// A request every 20 ms to each address, each given 2 s: on this 2-core machine a loaded
/// moment must not look like a lost request.
fn steady_traffic(lab: &Lab, ips: &[IpAddr]) -> Vec<(IpAddr, Probe)> {
    ips.iter()
        .map(|ip| {
            let probe = lab.probe(*ip, Duration::from_millis(20), Duration::from_secs(2));
            (*ip, probe)
        })
        .collect()
}

/// Every request the probes sent has been answered.
fn nothing_lost(probes: &[(IpAddr, Probe)], when: &str) {
    for (ip, probe) in probes {
        let samples = probe.samples();
        assert!(
            samples.len() > 50,
            "{ip} {when}: only {} requests",
            samples.len()
        );
        let failed: Vec<_> = samples.iter().filter(|s| s.outcome.is_err()).collect();
        assert!(
            failed.is_empty(),
            "{ip} {when}: {} of {} requests failed, first: {:?}",
            failed.len(),
            samples.len(),
            failed.first()
        );
    }
}
