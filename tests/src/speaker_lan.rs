//! A LAN of network namespaces running the real herald-speaker: an API host bridged to the
//! test API server, a client and some nodes, with the Node objects, a pool and an
//! L2Advertisement a real cluster would hold, and the gossip key each node's kubelet would
//! mount. Services get their status as the controller would write it. The speakers bind
//! gossip, metrics and health where `deploy/` binds them. Used by the speaker's layer-2 and
//! gossip tests and its benchmark.

use herald_crds::{conditions, field_managers, reasons};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::bridge::ApiBridge;
use crate::gossip_key;
use crate::install;
use crate::lan::{Family, Host, Lan};
use crate::objects::{self, services};
use crate::{TestCluster, eventually, test_cluster};

pub const WAIT: Duration = Duration::from_secs(30);

pub struct SpeakerLan {
    pub cluster: TestCluster,
    pub lan: Lan,
    bridge: ApiBridge,
    speaker: PathBuf,
    /// Node object name → (LAN host, speaker process).
    pub nodes: Vec<(String, Host, Option<Child>)>,
    pub client: Host,
    pub pool: String,
    /// The cluster's gossip key, in every node's key folder as `primary` at the start.
    pub gossip_key: Vec<u8>,
    /// More arguments for each node's speaker, by node index.
    pub speaker_args: Vec<Vec<String>>,
}

impl SpeakerLan {
    /// A LAN with an API host, a client and `node_count` nodes, each running `speaker`.
    pub async fn new(name: &str, node_count: usize, speaker: &Path) -> SpeakerLan {
        SpeakerLan::with_family(name, node_count, speaker, Family::DualStack).await
    }

    /// As [`SpeakerLan::new`], with hosts of `family`. The Node objects give each host's
    /// IPv4 address as its InternalIP, or its IPv6 address on an IPv6-only LAN.
    pub async fn with_family(
        name: &str,
        node_count: usize,
        speaker: &Path,
        family: Family,
    ) -> SpeakerLan {
        let mut lab = SpeakerLan::stopped(name, node_count, speaker, family).await;
        for i in 0..node_count {
            lab.start_speaker(i);
        }
        lab
    }

    /// As [`SpeakerLan::with_family`], with no speaker started yet.
    pub async fn stopped(
        name: &str,
        node_count: usize,
        speaker: &Path,
        family: Family,
    ) -> SpeakerLan {
        let cluster = test_cluster(name).await;
        let mut lan = Lan::with_family(name, family);
        let api = lan.add_host("api", 2);
        let client = lan.add_host("client", 100);
        let bridge = ApiBridge::new(cluster.server(), &api);
        let pool = cluster.unique_name("lan");
        objects::pool_for_lab_nodes(
            &cluster,
            &pool,
            &[
                "192.0.2.200-192.0.2.250",
                "203.0.113.100-203.0.113.150",
                "2001:db8::200-2001:db8::250",
                "2001:db8:ff::100-2001:db8:ff::150",
            ],
        )
        .await;
        let mut lab = SpeakerLan {
            cluster,
            lan,
            bridge,
            speaker: speaker.to_owned(),
            nodes: Vec::new(),
            client,
            pool,
            gossip_key: gossip_key::random_key(),
            speaker_args: Vec::new(),
        };
        for i in 0..node_count {
            lab.add_node(&format!("node{i}"), 11 + i as u8).await;
        }
        lab
    }

    /// Adds host `host_name` (number `n` on the LAN) and its Node object, with the cluster's
    /// gossip key in its key folder; returns its index. Its speaker is not started.
    pub async fn add_node(&mut self, host_name: &str, n: u8) -> usize {
        let host = self.lan.add_host(host_name, n);
        let node = self.cluster.unique_name(host_name);
        let internal_ip = match host.family {
            Family::DualStack => IpAddr::V4(host.ipv4),
            Family::Ipv6Only => IpAddr::V6(host.ipv6),
        };
        objects::create_node(&self.cluster, &node, &[internal_ip], &[]).await;
        self.nodes.push((node, host, None));
        self.speaker_args.push(Vec::new());
        let i = self.nodes.len() - 1;
        gossip_key::project(&self.key_dir(i), &[("primary", &self.gossip_key)]);
        i
    }

    /// Node `i`'s gossip key folder, as its kubelet would mount the Secret: change it with
    /// [`gossip_key::project`].
    pub fn key_dir(&self, i: usize) -> PathBuf {
        self.cluster
            .server()
            .data_dir()
            .join("gossip-keys")
            .join(&self.nodes[i].0)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.cluster
            .server()
            .data_dir()
            .join(format!("{}.log", self.nodes[i].0))
    }

    /// What node `i`'s speaker logged so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// Node `i`'s speaker's metrics, as Prometheus reads them.
    pub fn metrics(&self, i: usize) -> String {
        self.nodes[i].1.run(
            "curl",
            &["-sS", "--max-time", "2", "http://127.0.0.1:9403/metrics"],
        )
    }

    pub fn start_speaker(&mut self, i: usize) {
        let kubeconfig = self.bridge.kubeconfig().to_owned();
        let namespace = self.cluster.namespace().to_owned();
        let key_dir = self.key_dir(i);
        let log = std::fs::File::create(self.log_path(i)).unwrap();
        let (node, host, process) = &mut self.nodes[i];
        let mut command = host.command(&self.speaker.to_string_lossy());
        command
            .args(["--node-name", node, "--namespace", &namespace])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--gossip-key-dir")
            .arg(&key_dir)
            .args(deploy_bind_flags())
            .args(&self.speaker_args[i])
            .env("RUST_LOG", "info,herald_speaker=debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        let child = crate::spawn_tied(command).expect("starting herald-speaker");
        *process = Some(child);
    }

    pub fn kill_speaker(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].2.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns at once; the speaker hands over, then exits.
    pub fn terminate_speaker(&mut self, i: usize) -> Child {
        let child = self.nodes[i].2.take().expect("a running speaker");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child
    }

    pub fn node_of_mac(&self, mac: &str) -> Option<usize> {
        self.nodes.iter().position(|(_, host, _)| host.mac == mac)
    }

    /// A Service with `ips` in its status as the controller writes them, and ready endpoints
    /// on the nodes with the given indexes.
    pub async fn service(&self, name: &str, ips: &[&str], local: bool, ready_on: &[usize]) {
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
                "type": conditions::ALLOCATED, "status": "True", "reason": reasons::ALLOCATED,
                "message": format!("from pool {:?}", self.pool), "lastTransitionTime": "2026-11-21T00:00:00Z"}]},
        });
        services(&self.cluster)
            .patch_status(
                name,
                &PatchParams::apply(field_managers::CONTROLLER).force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap();
        self.endpoints(name, ready_on).await;
    }

    pub async fn endpoints(&self, service: &str, ready_on: &[usize]) {
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
    pub async fn announced(&self, service: &str, reason: &str) -> String {
        objects::announced(&services(&self.cluster), service, reason, WAIT).await
    }

    /// Waits until exactly the node that the Service's condition names answers ARP (NDP for an
    /// IPv6 `ip`) for `ip`; returns that node and the condition's message.
    pub async fn settled(&self, service: &str, ip: &str) -> (usize, String) {
        eventually(
            WAIT,
            &format!("one node to answer for {ip} as {service}'s condition says"),
            || async {
                let message = self.announced(service, "Announced").await;
                let winner = winner_index(self, &message);
                let answers = self.answers(ip).await;
                (answers == BTreeSet::from([self.nodes[winner].1.mac.clone()]))
                    .then_some((winner, message))
            },
        )
        .await
    }

    /// The MACs answering for `ip` from the client (ARP for IPv4, NDP for IPv6), as a set.
    pub async fn answers(&self, ip: &str) -> BTreeSet<String> {
        match ip.parse().unwrap() {
            IpAddr::V4(_) => self.arp_answers(ip).await,
            IpAddr::V6(ip) => {
                let client = self.client.clone();
                tokio::task::spawn_blocking(move || client.ndisc(ip, Duration::from_millis(600)))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|advert| advert.mac)
                    .collect()
            }
        }
    }

    /// The MACs answering ARP for `ip` from the client, as a set.
    pub async fn arp_answers(&self, ip: &str) -> BTreeSet<String> {
        let client = self.client.clone();
        let ip: Ipv4Addr = ip.parse().unwrap();
        tokio::task::spawn_blocking(move || client.arping(ip, 2, Duration::from_millis(600)))
            .await
            .unwrap()
            .into_iter()
            .collect()
    }
}

impl Drop for SpeakerLan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, (node, _, _)) in self.nodes.iter().enumerate() {
                let text = self.log(i);
                let tail: Vec<&str> = text.lines().rev().take(25).collect();
                eprintln!(
                    "--- {node} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
    }
}

/// The speaker's `--*-bind-address` arguments in `deploy/herald.yaml`.
fn deploy_bind_flags() -> Vec<String> {
    let (_, args) = install::deploy_container("DaemonSet");
    args.into_iter()
        .filter(|arg| {
            arg.split_once('=')
                .is_some_and(|(flag, _)| flag.ends_with("-bind-address"))
        })
        .collect()
}

/// The node a `herald.dev/Announced` message names.
pub fn winner_index(lab: &SpeakerLan, message: &str) -> usize {
    objects::announcing_node(message, lab.nodes.iter().map(|(name, _, _)| name.as_str()))
        .unwrap_or_else(|| panic!("no node of this LAN in {message:?}"))
}
