//! The real herald-speaker binary on a LAN of network namespaces: three nodes, a client, and
//! the real test API server reachable on the LAN. The tests write Services' status as the
//! controller would, then check with the client's own kernel tools (`arping`, `ndisc6`,
//! `ip neigh`) who answers.
//!
//! The tests of this file run one at a time: every speaker sees every Service of the API
//! server, so two LANs at once would report on each other's Services. For the same reason each
//! test uses addresses of its own (Services of one address are announced together).

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald_speaker::heartbeat;
use herald_tests::eventually;
use herald_tests::lan::{Family, Host};
use herald_tests::objects::services;
use herald_tests::speaker_lan::{SpeakerLan, WAIT, winner_index};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn lab(name: &str, nodes: usize) -> SpeakerLan {
    SpeakerLan::new(name, nodes, Path::new(env!("CARGO_BIN_EXE_herald-speaker"))).await
}

#[tokio::test]
async fn exactly_one_node_answers_arp_and_ndp_and_another_takes_over_when_it_dies() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("l2-basic", 3).await;
    lab.service("web", &["192.0.2.200", "2001:db8::200"], false, &[0])
        .await;
    // IPv4: exactly the MAC of the node the condition names (once gossip has converged).
    let (winner, message) = lab.settled("web", "192.0.2.200").await;
    assert!(
        message.contains(" answers for 192.0.2.200, 2001:db8::200 on eth0: "),
        "{message}"
    );
    let winner_mac = lab.nodes[winner].1.mac.clone();
    // An unallocated pool address: nobody.
    assert!(lab.arp_answers("192.0.2.201").await.is_empty());
    // IPv6: the winner's MAC, Solicited and Override set.
    let client = lab.client.clone();
    let adverts = tokio::task::spawn_blocking(move || {
        client.ndisc(
            "2001:db8::200".parse::<Ipv6Addr>().unwrap(),
            Duration::from_millis(500),
        )
    })
    .await
    .unwrap();
    assert_eq!(adverts.len(), 1, "{adverts:?}");
    assert_eq!(adverts[0].mac, winner_mac);
    assert!(adverts[0].solicited && adverts[0].override_, "{adverts:?}");

    // The client resolves the address (ping: its kernel's own ARP), then the winner dies.
    let _ = lab
        .client
        .command("ping")
        .args(["-c1", "-W1", "192.0.2.200"])
        .stdout(Stdio::null())
        .status();
    let before = lab
        .client
        .neighbour("192.0.2.200".parse().unwrap())
        .and_then(|n| n.mac);
    assert_eq!(before.as_deref(), Some(winner_mac.as_str()));
    let killed = Instant::now();
    lab.kill_speaker(winner);
    let new_mac = eventually(WAIT, "the client's neighbour entry to move", || async {
        let mac = lab.client.neighbour("192.0.2.200".parse().unwrap())?.mac?;
        (mac != winner_mac).then_some(mac)
    })
    .await;
    eprintln!(
        "hard kill: the client's neighbour entry moved after {:?}",
        killed.elapsed()
    );
    let new_winner = lab
        .node_of_mac(&new_mac)
        .expect("a node of this LAN answers");
    assert_ne!(new_winner, winner);
    assert_eq!(
        lab.arp_answers("192.0.2.200").await,
        BTreeSet::from([new_mac])
    );
    assert_eq!(lab.settled("web", "192.0.2.200").await.0, new_winner);
}

/// RFC 4861 §7.1.1: a Neighbor Solicitation whose hop limit is not 255 came through a router (or
/// was forged to look local) and is not answered. The client's own `ndisc6` asks, first as it
/// sends (255), then with its hop limit rewritten to 64 by nftables on the way out.
#[tokio::test]
async fn a_solicitation_whose_hop_limit_is_not_255_is_not_answered() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = lab("l2-hoplimit", 1).await;
    lab.service("web", &["192.0.2.250", "2001:db8::250"], false, &[0])
        .await;
    lab.settled("web", "192.0.2.250").await;
    let ask = || {
        let client = lab.client.clone();
        tokio::task::spawn_blocking(move || {
            client.ndisc(
                "2001:db8::250".parse::<Ipv6Addr>().unwrap(),
                Duration::from_millis(500),
            )
        })
    };
    let adverts = ask().await.unwrap();
    assert_eq!(adverts.len(), 1, "hop limit 255: {adverts:?}");

    for command in [
        "add table ip6 hops",
        "add chain ip6 hops out { type filter hook output priority 0 ; }",
        "add rule ip6 hops out icmpv6 type nd-neighbor-solicit ip6 hoplimit set 64",
    ] {
        lab.client.run("nft", &[command]);
    }
    let adverts = ask().await.unwrap();
    assert_eq!(adverts, [], "hop limit 64: answered");
}

#[tokio::test]
async fn local_traffic_policy_answers_only_where_a_ready_endpoint_runs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = lab("l2-local", 3).await;
    lab.service("local", &["192.0.2.210"], true, &[1]).await;
    assert_eq!(lab.settled("local", "192.0.2.210").await.0, 1);

    lab.endpoints("local", &[2]).await;
    eventually(WAIT, "node 2 to answer", || async {
        (lab.arp_answers("192.0.2.210").await == BTreeSet::from([lab.nodes[2].1.mac.clone()]))
            .then_some(())
    })
    .await;

    lab.endpoints("local", &[]).await;
    let why = lab.announced("local", "NoReadyEndpoint").await;
    assert_eq!(why, "the Service has no ready endpoint");
    eventually(WAIT, "silence", || async {
        lab.arp_answers("192.0.2.210")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_address_another_host_uses_is_not_announced_and_the_conflict_is_reported() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("l2-conflict", 2).await;
    let squatter = lab.lan.add_host("squatter", 120);
    squatter.add_address("192.0.2.220/24");
    lab.service("taken", &["192.0.2.220"], false, &[0]).await;
    let message = lab.announced("taken", "AddressConflict").await;
    assert!(
        message.contains(&format!("192.0.2.220 is already used by {}", squatter.mac)),
        "{message}"
    );
    assert_eq!(
        lab.arp_answers("192.0.2.220").await,
        BTreeSet::from([squatter.mac.clone()])
    );
    // The pool says so too, as an Event.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::all(lab.cluster.client());
    let on_pool = eventually(WAIT, "an AddressConflict Event on the pool", || async {
        let list = events
            .list(&kube::api::ListParams::default().fields(&format!("regarding.name={}", lab.pool)))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("AddressConflict"))
    })
    .await;
    assert!(
        on_pool
            .note
            .unwrap_or_default()
            .contains("192.0.2.220 is already used by")
    );
}

#[tokio::test]
async fn a_graceful_stop_hands_the_address_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("l2-graceful", 2).await;
    lab.service("web", &["192.0.2.230"], false, &[0]).await;
    let winner = lab.settled("web", "192.0.2.230").await.0;
    let _ = lab
        .client
        .command("ping")
        .args(["-c1", "-W1", "192.0.2.230"])
        .stdout(Stdio::null())
        .status();
    let stopped = Instant::now();
    let mut stopping = lab.terminate_speaker(winner);
    let other_mac = lab.nodes[1 - winner].1.mac.clone();
    eventually(WAIT, "the other node to take over", || async {
        let mac = lab.client.neighbour("192.0.2.230".parse().unwrap())?.mac?;
        (mac == other_mac).then_some(())
    })
    .await;
    eprintln!("graceful stop: handed over after {:?}", stopped.elapsed());
    assert!(
        stopping.wait().unwrap().success(),
        "the speaker exits cleanly on SIGTERM"
    );
}

/// A speaker restarted, as a rolling update restarts it: it hands its addresses over when it
/// stops and takes them back when it returns, and no request is ever answered by two nodes.
#[tokio::test]
async fn a_restarted_speaker_hands_over_and_takes_back_and_no_request_is_answered_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("l2-restart", 3).await;
    let ips = ["192.0.2.232", "2001:db8::232"];
    lab.service("web", &ips, false, &[0]).await;
    let winner = lab.settled("web", ips[0]).await.0;
    lab.settled("web", ips[1]).await;
    let watches: Vec<_> = ips
        .iter()
        .map(|ip| lab.client.watch_answers(ip.parse().unwrap()))
        .collect();

    let mut stopping = lab.terminate_speaker(winner);
    assert!(
        stopping.wait().unwrap().success(),
        "a clean exit on SIGTERM"
    );
    let (other, _) = lab.settled("web", ips[0]).await;
    assert_ne!(
        other, winner,
        "another node answers while the speaker is away"
    );
    lab.start_speaker(winner);
    eventually(
        WAIT,
        "the restarted speaker to take its addresses back",
        || async {
            let message = lab.announced("web", "Announced").await;
            (winner_index(&lab, &message) == winner).then_some(())
        },
    )
    .await;
    for ip in ips {
        lab.settled("web", ip).await;
    }

    for (ip, watch) in ips.iter().zip(watches) {
        let answers = watch.stop();
        let twice: Vec<_> = answers.iter().filter(|macs| macs.len() > 1).collect();
        let unanswered = answers.iter().filter(|macs| macs.is_empty()).count();
        eprintln!(
            "{ip}: {} requests, {unanswered} unanswered, {} answered by two nodes",
            answers.len(),
            twice.len()
        );
        assert!(
            twice.is_empty(),
            "{ip}: requests answered by more than one node: {twice:?}"
        );
    }
}

#[tokio::test]
async fn thirty_addresses_spread_over_three_nodes_and_a_lost_node_moves_only_its_own() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("l2-thirty", 3).await;
    for i in 0..30 {
        lab.service(
            &format!("s{i}"),
            &[&format!("203.0.113.{}", 100 + i)],
            false,
            &[0],
        )
        .await;
    }
    // Service name → the condition's message, once all 30 are announced.
    let owners = |lab: &SpeakerLan| {
        let api = services(&lab.cluster);
        async move {
            let list = api.list(&Default::default()).await.ok()?;
            let mut owners = std::collections::BTreeMap::new();
            for svc in list.items {
                let name = svc.metadata.name.clone()?;
                let condition = svc
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == herald_crds::conditions::ANNOUNCED)?;
                if condition.reason != "Announced" {
                    return None;
                }
                owners.insert(name, condition.message);
            }
            (owners.len() == 30).then_some(owners)
        }
    };
    let before = eventually(WAIT, "30 announced Services", || owners(&lab)).await;
    let per_node: Vec<usize> = (0..3)
        .map(|n| {
            before
                .values()
                .filter(|m| winner_index(&lab, m) == n)
                .count()
        })
        .collect();
    assert!(per_node.iter().all(|c| *c >= 4), "spread {per_node:?}");

    // The speaker's metrics count the addresses it answers for (with those of earlier tests'
    // Services that its pool's range also holds).
    let metrics = lab.nodes[0]
        .1
        .run("curl", &["-s", "http://127.0.0.1:9403/metrics"]);
    let announced: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_speaker_addresses_announced "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no addresses_announced in {metrics}"));
    assert!(announced >= per_node[0], "{announced} < {}", per_node[0]);

    lab.kill_speaker(1);
    let after = eventually(WAIT, "node 1's addresses to move", || async {
        let owners = owners(&lab).await?;
        owners
            .values()
            .all(|m| winner_index(&lab, m) != 1)
            .then_some(owners)
    })
    .await;
    for (name, message) in &before {
        if winner_index(&lab, message) != 1 {
            assert_eq!(
                &after[name], message,
                "{name} moved although its node lives"
            );
        }
    }
}

/// Cuts the answering node off with `rules` (nftables, in its own namespace) and checks that
/// another node takes over and that, from then on, only that node answers, however often the
/// client asks: the cut-off node fenced itself.
async fn cut_off_the_winner(name: &str, ip: &str, rules: &[&str]) {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = lab(name, 3).await;
    lab.service("web", &[ip], false, &[0]).await;
    let (winner, _) = lab.settled("web", ip).await;
    let host = &lab.nodes[winner].1;
    host.run("nft", &["add", "table", "inet", "cut"]);
    for hook in ["input", "output"] {
        let chain = format!("add chain inet cut {hook} {{ type filter hook {hook} priority 0 ; }}");
        host.run("nft", &[&chain]);
    }
    for rule in rules {
        host.run("nft", &[&format!("add rule inet cut {rule}")]);
    }
    let other = eventually(WAIT, "another node to take over", || async {
        let (node, _) = lab.settled("web", ip).await;
        (node != winner).then_some(node)
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            lab.arp_answers(ip).await,
            BTreeSet::from([lab.nodes[other].1.mac.clone()])
        );
    }
    // The fenced speaker says so on /readyz, so that its Pod shows as not ready.
    assert_eq!(readyz(host), "503", "/readyz of the cut-off speaker");
    assert_eq!(
        readyz(&lab.nodes[other].1),
        "200",
        "/readyz of the new winner"
    );
}

/// The HTTP status of the speaker's `/readyz` on `host`.
fn readyz(host: &Host) -> String {
    host.run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:9404/readyz",
        ],
    )
}

/// Still on the LAN and reaching the API server, but its gossip is dropped.
#[tokio::test]
async fn a_node_cut_off_from_gossip_goes_quiet_and_never_answers_beside_another() {
    cut_off_the_winner(
        "l2-partition",
        "192.0.2.240",
        &["input udp dport 7946 drop", "output udp dport 7946 drop"],
    )
    .await;
}

/// Neither gossip nor the API server (192.0.2.2:6443) gets through any more.
#[tokio::test]
async fn a_node_cut_off_from_gossip_and_the_api_server_goes_quiet() {
    cut_off_the_winner(
        "l2-isolated",
        "192.0.2.242",
        &["output udp dport 7946 drop", "output tcp dport 6443 drop"],
    )
    .await;
}

#[tokio::test]
async fn a_two_node_cluster_keeps_answering_when_one_node_dies() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("l2-two", 2).await;
    lab.service("web", &["192.0.2.245"], false, &[0]).await;
    let (winner, _) = lab.settled("web", "192.0.2.245").await;
    let started = Instant::now();
    lab.kill_speaker(winner);
    let (survivor, _) = lab.settled("web", "192.0.2.245").await;
    assert_eq!(survivor, 1 - winner);
    eprintln!(
        "two nodes, hard kill: the survivor answered after {:?} (its peer's heartbeat had to expire)",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_node_whose_link_goes_down_is_replaced_and_one_node_answers_after_it_returns() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = lab("l2-link", 3).await;
    lab.service("web", &["192.0.2.235"], false, &[0]).await;
    let (winner, _) = lab.settled("web", "192.0.2.235").await;
    let winner_mac = lab.nodes[winner].1.mac.clone();
    let _ = lab
        .client
        .command("ping")
        .args(["-c1", "-W1", "192.0.2.235"])
        .stdout(Stdio::null())
        .status();
    let down = Instant::now();
    lab.nodes[winner].1.link_down();
    eventually(WAIT, "the client's neighbour entry to move", || async {
        let mac = lab.client.neighbour("192.0.2.235".parse().unwrap())?.mac?;
        (mac != winner_mac).then_some(())
    })
    .await;
    eprintln!(
        "link down: the client's neighbour entry moved after {:?}",
        down.elapsed()
    );
    lab.nodes[winner].1.link_up();
    // Back on the link, the node rejoins; whoever wins, exactly one node answers.
    lab.settled("web", "192.0.2.235").await;
}

#[tokio::test]
async fn interfaces_an_advertisement_does_not_name_stay_silent() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = lab("l2-iface", 2).await;
    lab.service("web", &["192.0.2.238"], false, &[0]).await;
    lab.settled("web", "192.0.2.238").await;
    // Only an interface the nodes do not have may answer now: eth0 goes quiet.
    advertise_only_on(&lab, &["eth9"]).await;
    eventually(WAIT, "silence on eth0", || async {
        lab.arp_answers("192.0.2.238")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    // No node is elected to black-hole the address, and the condition says why.
    let why = lab.announced("web", "NoEligibleNode").await;
    assert_eq!(
        why,
        "no node that may announce has \"eth9\" up (the interfaces its L2Advertisements allow)"
    );
}

/// Makes the LAN's L2Advertisement name only `interfaces`.
async fn advertise_only_on(lab: &SpeakerLan, interfaces: &[&str]) {
    let advertisement = json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
        "metadata": {"name": lab.pool},
        "spec": {"ipAddressPools": [lab.pool], "interfaces": interfaces,
                 "nodeSelectors": [{"matchLabels": {"herald-test": lab.cluster.namespace()}}]},
    });
    let resource = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "herald.dev",
        "v1alpha1",
        "L2Advertisement",
    ));
    kube::Api::<kube::core::DynamicObject>::all_with(lab.cluster.client(), &resource)
        .patch(
            &lab.pool,
            &kube::api::PatchParams::apply("tests").force(),
            &kube::api::Patch::Apply(&advertisement),
        )
        .await
        .unwrap();
}

/// Waits until exactly one node answers ARP for `ip`, with its eth1 MAC (`eth1_macs`, by node),
/// and the Service's condition names that node, other than `not`; returns it.
async fn answered_on_eth1(
    lab: &SpeakerLan,
    service: &str,
    ip: &str,
    eth1_macs: &[String],
    not: Option<usize>,
) -> usize {
    eventually(
        WAIT,
        &format!(
            "one node other than {not:?} to answer for {ip} on eth1 as {service}'s condition says"
        ),
        || async {
            let message = lab.announced(service, "Announced").await;
            let winner = winner_index(lab, &message);
            let answers = lab.arp_answers(ip).await;
            (Some(winner) != not
                && message.contains(" on eth1: ")
                && answers == BTreeSet::from([eth1_macs[winner].clone()]))
            .then_some(winner)
        },
    )
    .await
}

#[tokio::test]
async fn a_winner_whose_named_interface_goes_down_is_no_candidate_and_another_node_answers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("l2-eth1", 3).await;
    let mut eth1_macs = Vec::new();
    for i in 0..3 {
        let host = lab.nodes[i].1.clone();
        eth1_macs.push(lab.lan.add_interface(&host, "eth1"));
    }
    advertise_only_on(&lab, &["eth1"]).await;
    let ip = "192.0.2.239";
    lab.service("web", &[ip], false, &[0]).await;
    let first = answered_on_eth1(&lab, "web", ip, &eth1_macs, None).await;

    // The first choice cannot answer on eth1 any more: another node is elected in its place,
    // while the first one stays alive in gossip.
    let down = Instant::now();
    lab.nodes[first].1.interface_down("eth1");
    let second = answered_on_eth1(&lab, "web", ip, &eth1_macs, Some(first)).await;
    eprintln!(
        "eth1 down on node{first}: node{second} answered after {:?}",
        down.elapsed()
    );

    // Back up: whoever wins, exactly one node answers.
    lab.nodes[first].1.interface_up("eth1");
    answered_on_eth1(&lab, "web", ip, &eth1_macs, None).await;
}

#[tokio::test]
async fn heartbeat_leases_of_deleted_nodes_fence_nobody_while_the_api_server_is_away() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = lab("l2-stale-leases", 3).await;
    // Four replaced nodes left their heartbeat Leases behind (the garbage collector had not
    // removed them, or they predate owner references).
    let leases: Api<Lease> = Api::namespaced(lab.cluster.client(), lab.cluster.namespace());
    let long_ago = MicroTime(Timestamp::now() - SignedDuration::from_hours(24));
    for i in 0..4 {
        let node = format!("replaced-{i}");
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": heartbeat::lease_name(&node), "labels": {heartbeat::LABEL: "true"}},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 3, "renewTime": long_ago}});
        leases
            .patch(
                &heartbeat::lease_name(&node),
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&lease),
            )
            .await
            .unwrap();
    }
    let ip = "192.0.2.247";
    lab.service("web", &[ip], false, &[0]).await;
    let (winner, _) = lab.settled("web", ip).await;
    let winner_mac = lab.nodes[winner].1.mac.clone();

    // The API server goes away for a while, as in a restart: every renewal fails, but each
    // speaker still sees both its peers, so none fences itself.
    let api = lab.lan.host("api");
    api.run(
        "nft",
        &["add table inet away; add chain inet away in { type filter hook input priority 0 ; }; add rule inet away in tcp dport 6443 drop"],
    );
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        assert_eq!(
            lab.arp_answers(ip).await,
            BTreeSet::from([winner_mac.clone()]),
            "while the API server was away"
        );
    }
    api.run("nft", &["delete table inet away"]);

    // The speakers' own Leases are owned by their Nodes: the garbage collector removes them
    // with the Node.
    let own = leases
        .get(&heartbeat::lease_name(&lab.nodes[winner].0))
        .await
        .unwrap();
    let owner = &own.metadata.owner_references.unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", lab.nodes[winner].0.as_str())
    );
}

/// An IPv6-only cluster: no host has an IPv4 address on its link, the Node objects give only
/// IPv6 InternalIPs, the API server is reached over IPv6, and the speakers bind where
/// `deploy/` binds them. The speakers find each other by gossip, exactly one answers NDP, and
/// another takes over when it dies. Prometheus reaches each speaker on its node's address.
#[tokio::test]
async fn an_ipv6_only_cluster_answers_ndp_and_another_node_takes_over_when_the_winner_dies() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = SpeakerLan::with_family(
        "l2-v6only",
        3,
        Path::new(env!("CARGO_BIN_EXE_herald-speaker")),
        Family::Ipv6Only,
    )
    .await;
    let ip = "2001:db8::230";
    lab.service("web", &[ip], false, &[0]).await;
    let (winner, message) = lab.settled("web", ip).await;
    assert!(
        message.contains(&format!(" answers for {ip} on eth0: ")),
        "{message}"
    );

    for (node, host, _) in &lab.nodes {
        let url = format!("http://[{}]:9403/metrics", host.ipv6);
        let metrics = lab.client.run("curl", &["-sS", "--max-time", "2", &url]);
        assert!(
            metrics.contains("herald_speaker_peers_alive 3"),
            "{node}'s metrics at {url}:\n{metrics}"
        );
    }

    lab.kill_speaker(winner);
    let new_winner = eventually(WAIT, "another node to answer NDP", || async {
        let (node, _) = lab.settled("web", ip).await;
        (node != winner).then_some(node)
    })
    .await;
    assert_eq!(
        lab.answers(ip).await,
        BTreeSet::from([lab.nodes[new_winner].1.mac.clone()])
    );
}

/// A node with two interfaces on one switch, both suitable by default: they must not take each
/// other's probes for another host's (neither reports a conflict), and each address is answered
/// on one of them only, the first by name, which the condition names.
#[tokio::test]
async fn two_interfaces_of_one_node_on_one_segment_answer_each_address_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("l2-two-links", 1).await;
    let host = lab.nodes[0].1.clone();
    lab.lan.add_interface(&host, "eth1");
    let wanted: [(&str, &[&str]); 3] = [
        ("a", &["192.0.2.214", "2001:db8::214"]),
        ("b", &["192.0.2.215", "2001:db8::215"]),
        ("c", &["192.0.2.216"]),
    ];
    for (name, ips) in wanted {
        lab.service(name, ips, false, &[0]).await;
    }
    let api = services(&lab.cluster);
    for (name, ips) in wanted {
        eventually(WAIT, &format!("{name} announced on eth0 only"), || async {
            let condition = api
                .get(name)
                .await
                .ok()?
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == herald_crds::conditions::ANNOUNCED)?;
            assert_ne!(
                condition.reason, "AddressConflict",
                "{name}: {}",
                condition.message
            );
            (condition.reason == "Announced" && condition.message.contains(" on eth0: "))
                .then_some(())
        })
        .await;
        for ip in ips {
            match ip.parse::<std::net::IpAddr>().unwrap() {
                std::net::IpAddr::V4(_) => {
                    eventually(
                        WAIT,
                        &format!("only eth0 to answer ARP for {ip}"),
                        || async {
                            (lab.arp_answers(ip).await == BTreeSet::from([host.mac.clone()]))
                                .then_some(())
                        },
                    )
                    .await
                }
                std::net::IpAddr::V6(v6) => {
                    let client = lab.client.clone();
                    let adverts = tokio::task::spawn_blocking(move || {
                        client.ndisc(v6, Duration::from_millis(500))
                    })
                    .await
                    .unwrap();
                    let macs: Vec<&str> = adverts.iter().map(|a| a.mac.as_str()).collect();
                    assert_eq!(macs, [host.mac.as_str()], "NDP answers for {ip}");
                }
            }
        }
    }
    // Still so once everything has settled: no late conflict.
    for (name, _) in wanted {
        let message = lab.announced(name, "Announced").await;
        assert!(message.contains(" on eth0: "), "{message}");
    }
}
