//! The real herald-speaker binary on a LAN of network namespaces: three nodes, a client, and
//! the real test API server reachable on the LAN. The tests write Services' status as the
//! controller would, then check with the client's own kernel tools (`arping`, `ndisc6`,
//! `ip neigh`) who answers.
//!
//! The tests of this file run one at a time: every speaker sees every Service of the API
//! server, so two LANs at once would report on each other's Services. For the same reason each
//! test uses addresses of its own (Services of one address are announced together).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use herald_tests::bridge::ApiBridge;
use herald_tests::lan::{Host, Lan};
use herald_tests::{TestCluster, eventually, test_cluster};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const WAIT: Duration = Duration::from_secs(30);
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

struct Lab {
    cluster: TestCluster,
    lan: Lan,
    _bridge: ApiBridge,
    /// Node object name → (LAN host, speaker process).
    nodes: Vec<(String, Host, Option<Child>)>,
    client: Host,
    pool: String,
}

impl Lab {
    async fn new(name: &str, node_count: usize) -> Lab {
        let cluster = test_cluster(name).await;
        let mut lan = Lan::new(name);
        let api = lan.add_host("api", 2);
        let client = lan.add_host("client", 100);
        let bridge = ApiBridge::new(cluster.server(), &api);
        let mut nodes = Vec::new();
        for i in 0..node_count {
            let host = lan.add_host(&format!("node{i}"), 11 + i as u8);
            let node = cluster.unique_name(&format!("node{i}"));
            create_node(&cluster, &node, host.ipv4).await;
            nodes.push((node, host, None));
        }
        let pool = cluster.unique_name("lan");
        apply(
            &cluster,
            json!({
                "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
                "metadata": {"name": pool},
                "spec": {"addresses": ["192.0.2.200-192.0.2.250", "203.0.113.100-203.0.113.150",
                                   "2001:db8::200-2001:db8::250"]},
            }),
        )
        .await;
        // Only this test's nodes announce this test's pool.
        apply(
            &cluster,
            json!({
                "apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
                "metadata": {"name": pool},
                "spec": {"ipAddressPools": [pool],
                         "nodeSelectors": [{"matchLabels": {"herald-test": cluster.namespace()}}]},
            }),
        )
        .await;
        let mut lab = Lab {
            cluster,
            lan,
            _bridge: bridge,
            nodes,
            client,
            pool,
        };
        for i in 0..node_count {
            lab.start_speaker(i);
        }
        lab
    }

    fn start_speaker(&mut self, i: usize) {
        let kubeconfig = self._bridge.kubeconfig().to_owned();
        let namespace = self.cluster.namespace().to_owned();
        let (node, host, process) = &mut self.nodes[i];
        let log =
            std::fs::File::create(self.cluster.server().data_dir().join(format!("{node}.log")))
                .unwrap();
        let child = host
            .command(speaker())
            .args(["--node-name", node, "--namespace", &namespace])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--metrics-bind-address",
                "127.0.0.1:9403",
                "--health-bind-address",
                "127.0.0.1:9404",
            ])
            .env("RUST_LOG", "info,herald_speaker=debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting herald-speaker");
        *process = Some(child);
    }

    fn kill_speaker(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].2.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns at once; the speaker hands over, then exits.
    fn terminate_speaker(&mut self, i: usize) -> Child {
        let child = self.nodes[i].2.take().expect("a running speaker");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child
    }

    fn node_of_mac(&self, mac: &str) -> Option<usize> {
        self.nodes.iter().position(|(_, host, _)| host.mac == mac)
    }

    /// A Service with `ips` in its status as the controller writes them, and ready endpoints
    /// on the nodes with the given indexes.
    async fn service(&self, name: &str, ips: &[&str], local: bool, ready_on: &[usize]) {
        let policy = if local { "Local" } else { "Cluster" };
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy, "allocateLoadBalancerNodePorts": false,
                     "ports": [{"port": 80}], "selector": {"app": name}},
        }))
        .unwrap();
        services(&self.cluster)
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
        let ingress: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let status = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": self.cluster.namespace()},
            "status": {"loadBalancer": {"ingress": ingress}, "conditions": [{
                "type": "herald.dev/Allocated", "status": "True", "reason": "Allocated",
                "message": format!("from pool {:?}", self.pool), "lastTransitionTime": "2026-11-21T00:00:00Z"}]},
        });
        services(&self.cluster)
            .patch_status(
                name,
                &PatchParams::apply("herald-controller").force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap();
        self.endpoints(name, ready_on).await;
    }

    async fn endpoints(&self, service: &str, ready_on: &[usize]) {
        let endpoints: Vec<Value> = ready_on
            .iter()
            .map(|i| json!({"addresses": [format!("198.51.100.{}", 10 + i)], "nodeName": self.nodes[*i].0,
                            "conditions": {"ready": true}}))
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{service}-1"), "namespace": self.cluster.namespace(),
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": [{"port": 80}],
        });
        Api::<EndpointSlice>::namespaced(self.cluster.client(), self.cluster.namespace())
            .patch(
                &format!("{service}-1"),
                &PatchParams::apply("tests").force(),
                &Patch::Apply(&slice),
            )
            .await
            .unwrap();
    }

    /// Waits for the Service's Announced condition to have `reason` and returns its message.
    async fn announced(&self, service: &str, reason: &str) -> String {
        let api = services(&self.cluster);
        eventually(WAIT, &format!("{reason} on {service}"), || async {
            let svc = api.get(service).await.ok()?;
            let condition = svc
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "herald.dev/Announced")?;
            (condition.reason == reason).then_some(condition.message)
        })
        .await
    }

    /// Waits until exactly the node that the Service's condition names answers ARP for `ip`;
    /// returns that node and the condition's message.
    async fn settled(&self, service: &str, ip: &str) -> (usize, String) {
        eventually(
            WAIT,
            &format!("one node to answer for {ip} as {service}'s condition says"),
            || async {
                let message = self.announced(service, "Announced").await;
                let winner = winner_index(self, &message);
                let answers = self.arp_answers(ip).await;
                (answers == BTreeSet::from([self.nodes[winner].1.mac.clone()]))
                    .then_some((winner, message))
            },
        )
        .await
    }

    /// The MACs answering ARP for `ip` from the client, as a set.
    async fn arp_answers(&self, ip: &str) -> BTreeSet<String> {
        let client = self.client.clone();
        let ip: Ipv4Addr = ip.parse().unwrap();
        tokio::task::spawn_blocking(move || client.arping(ip, 2, Duration::from_millis(600)))
            .await
            .unwrap()
            .into_iter()
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (node, _, _) in &self.nodes {
                let log = self.cluster.server().data_dir().join(format!("{node}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(25).collect();
                eprintln!(
                    "--- {node} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
}

fn speaker() -> &'static str {
    env!("CARGO_BIN_EXE_herald-speaker")
}

fn services(cluster: &TestCluster) -> Api<Service> {
    Api::namespaced(cluster.client(), cluster.namespace())
}

async fn apply(cluster: &TestCluster, object: Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let kind = object["kind"].as_str().unwrap();
    let resource = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "herald.dev",
        "v1alpha1",
        kind,
    ));
    Api::<kube::core::DynamicObject>::all_with(cluster.client(), &resource)
        .patch(
            &name,
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
}

async fn create_node(cluster: &TestCluster, name: &str, ip: Ipv4Addr) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"herald-test": cluster.namespace()}},
    }))
    .unwrap();
    let api: Api<Node> = Api::all(cluster.client());
    api.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip.to_string()}]}});
    api.patch_status(
        name,
        &PatchParams::apply("tests").force(),
        &Patch::Apply(&status),
    )
    .await
    .unwrap();
}

fn winner_index(lab: &Lab, message: &str) -> usize {
    lab.nodes
        .iter()
        .position(|(name, _, _)| message.starts_with(&format!("node {name} answers on")))
        .unwrap_or_else(|| panic!("no node of this LAN in {message:?}"))
}

#[tokio::test]
async fn exactly_one_node_answers_arp_and_ndp_and_another_takes_over_when_it_dies() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = Lab::new("l2-basic", 3).await;
    lab.service("web", &["192.0.2.200", "2001:db8::200"], false, &[0])
        .await;
    // IPv4: exactly the MAC of the node the condition names (once gossip has converged).
    let (winner, message) = lab.settled("web", "192.0.2.200").await;
    assert!(message.ends_with("answers on eth0"), "{message}");
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

#[tokio::test]
async fn local_traffic_policy_answers_only_where_a_ready_endpoint_runs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = Lab::new("l2-local", 3).await;
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
    let mut lab = Lab::new("l2-conflict", 2).await;
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
}

#[tokio::test]
async fn a_graceful_stop_hands_the_address_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = Lab::new("l2-graceful", 2).await;
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

#[tokio::test]
async fn thirty_addresses_spread_over_three_nodes_and_a_lost_node_moves_only_its_own() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = Lab::new("l2-thirty", 3).await;
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
    let owners = |lab: &Lab| {
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
                    .find(|c| c.type_ == "herald.dev/Announced")?;
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

#[tokio::test]
async fn a_node_cut_off_from_gossip_goes_quiet_and_never_answers_beside_another() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = Lab::new("l2-partition", 3).await;
    lab.service("web", &["192.0.2.240"], false, &[0]).await;
    let (winner, _) = lab.settled("web", "192.0.2.240").await;
    // The winner stays on the LAN and reaches the API server, but its gossip is dropped.
    let host = &lab.nodes[winner].1;
    host.run("nft", &["add", "table", "inet", "cut"]);
    host.run(
        "nft",
        &["add chain inet cut input { type filter hook input priority 0 ; }"],
    );
    host.run(
        "nft",
        &["add chain inet cut output { type filter hook output priority 0 ; }"],
    );
    host.run("nft", &["add rule inet cut input udp dport 7946 drop"]);
    host.run("nft", &["add rule inet cut output udp dport 7946 drop"]);
    let (other, _) = eventually(WAIT, "another node to take over", || async {
        let (node, message) = lab.settled("web", "192.0.2.240").await;
        (node != winner).then_some((node, message))
    })
    .await;
    // From now on only the new owner answers, however often the client asks.
    for _ in 0..5 {
        assert_eq!(
            lab.arp_answers("192.0.2.240").await,
            BTreeSet::from([lab.nodes[other].1.mac.clone()])
        );
    }
}

#[tokio::test]
async fn a_two_node_cluster_keeps_answering_when_one_node_dies() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = Lab::new("l2-two", 2).await;
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
