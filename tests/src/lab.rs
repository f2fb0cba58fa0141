//! The lab: Herald running for real on a LAN of network namespaces, as it would in a small
//! cluster. A control-plane host serves the test API server (bridged onto the LAN) and runs
//! `herald-controller`; each node host runs `herald-speaker` and the real `kube-proxy`
//! (iptables mode) and has pods behind it; a client host sends the traffic.
//!
//! Addresses, documentation ranges only:
//! - the LAN `192.0.2.0/24` and `2001:db8::/64`: control plane `.2`, client `.100`, node `i`
//!   `.(11 + i)` (see [`Lan`]);
//! - node `i`'s pods `198.51.100.(16·(i+1))/28` and `2001:db8:10:(i+1)::/64`, on a bridge
//!   `cni0` whose first address is the pods' gateway; each node routes the other nodes' pod
//!   networks through their LAN addresses, as a simple routed CNI does;
//! - the pool `192.0.2.200-192.0.2.220` and `2001:db8::200-2001:db8::220`, on the LAN.
//!
//! Herald's programs authenticate as their ServiceAccounts, with exactly the RBAC of `deploy/`
//! (see [`install`](crate::install)); kube-proxy as `system:kube-proxy`.
//!
//! No kubelet or controller-manager runs: the lab writes the Node and Pod objects and the
//! EndpointSlices that they would, and keeps the slices following the pods' readiness. The
//! Services' ClusterIPs come from the API server's own range; kube-proxy programs them inside
//! the nodes' namespaces, and nothing sends traffic to them.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::bridge::ApiBridge;
use crate::lan::{Host, Lan, ip_n, sysctl};
use crate::{ApiServer, Process, TestCluster, eventually, gossip_key, install, objects};

/// How long the lab waits for anything to converge before it gives up.
pub const WAIT: Duration = Duration::from_secs(60);
/// The port every Service exposes, and the port the pods listen on.
pub const SERVICE_PORT: u16 = 80;
const POD_PORT: u16 = 8080;
/// The label that selects the lab's pods.
const APP: &str = "echo";
const FIELD_MANAGER: &str = "herald-lab";
const POOL: &[&str] = &["192.0.2.200-192.0.2.220", "2001:db8::200-2001:db8::220"];

/// The programs the lab runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub controller: PathBuf,
    pub speaker: PathBuf,
    /// The test API server's multi-call binary's `kube-proxy` name.
    pub kube_proxy: PathBuf,
    pub echo: PathBuf,
    pub probe: PathBuf,
}

impl Binaries {
    /// Herald's binaries and the lab's, all in `dir` (a Cargo profile folder such as
    /// `target/debug`), and kube-proxy from the test API server's folder.
    pub fn in_dir(dir: &Path, server: &ApiServer) -> Binaries {
        let binaries = Binaries {
            controller: dir.join("herald-controller"),
            speaker: dir.join("herald-speaker"),
            kube_proxy: server.bin_dir().join("kube-proxy"),
            echo: dir.join("lab-echo"),
            probe: dir.join("lab-probe"),
        };
        for path in [
            &binaries.controller,
            &binaries.speaker,
            &binaries.kube_proxy,
            &binaries.echo,
            &binaries.probe,
        ] {
            assert!(
                path.exists(),
                "{} is missing: build it first (cargo build -p herald-controller -p herald-speaker \
                 -p herald-tests --bins; tests/apiserver/build.sh)",
                path.display()
            );
        }
        binaries
    }
}

/// What a lab holds.
pub struct LabConfig {
    /// Names the LAN's namespaces (`hl-<pid>-<name>-<host>`).
    pub name: String,
    pub nodes: usize,
    pub pods_per_node: usize,
    /// Where the processes' logs go.
    pub log_dir: PathBuf,
    pub binaries: Binaries,
}

impl LabConfig {
    /// The lab of the demo and of the end-to-end suite: three nodes with one pod each, running
    /// the binaries in `profile_dir`, logging into `log_dir`.
    pub fn three_nodes(
        name: &str,
        profile_dir: &Path,
        server: &ApiServer,
        log_dir: PathBuf,
    ) -> LabConfig {
        std::fs::create_dir_all(&log_dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_dir.display()));
        LabConfig {
            name: name.to_string(),
            nodes: 3,
            pods_per_node: 1,
            log_dir,
            binaries: Binaries::in_dir(profile_dir, server),
        }
    }
}

pub struct LabNode {
    /// The Node object's name.
    pub name: String,
    pub host: Host,
    pub pods: Vec<LabPod>,
    speaker: Option<Process>,
    kube_proxy: Option<Process>,
}

pub struct LabPod {
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub ready: bool,
    _process: Process,
}

pub struct Lab {
    pub cluster: TestCluster,
    pub nodes: Vec<LabNode>,
    pub client: Host,
    pub control_plane: Host,
    pub pool: String,
    controller: Option<Process>,
    config: LabConfig,
    /// Each program acts as its own identity, with the permissions `deploy/` gives it.
    controller_kubeconfig: PathBuf,
    speaker_kubeconfig: PathBuf,
    kube_proxy_kubeconfig: PathBuf,
    /// The speakers' gossip key Secret, as kubelet would mount it on every node.
    gossip_key_dir: PathBuf,
    /// Dropped after the processes above and before the LAN, whose namespaces it serves in.
    _bridge: ApiBridge,
    /// Held for its namespaces, which go when it is dropped, last.
    _lan: Lan,
}

impl Lab {
    /// Builds the LAN, writes the cluster's objects and Herald's RBAC (in herald-system), and
    /// starts every process; returns once every kube-proxy serves.
    pub async fn start(cluster: TestCluster, config: LabConfig) -> Lab {
        let mut lan = Lan::new(&config.name);
        let control_plane = lan.add_host("cp", 2);
        let client = lan.add_host("client", 100);
        let bridge = ApiBridge::new(cluster.server(), &control_plane);
        let server = cluster.server();
        install::install_rbac(server, install::NAMESPACE);
        let controller_kubeconfig = bridge.for_lan(&install::service_account_kubeconfig(
            server,
            install::NAMESPACE,
            install::CONTROLLER,
        ));
        let speaker_kubeconfig = bridge.for_lan(&install::service_account_kubeconfig(
            server,
            install::NAMESPACE,
            install::SPEAKER,
        ));
        // Bound to the ClusterRole system:node-proxier by the API server's defaults.
        let kube_proxy_kubeconfig =
            bridge.for_lan(&server.kubeconfig_for("system:kube-proxy", &[]));
        let mut nodes = Vec::new();
        for i in 0..config.nodes {
            let host = lan.add_host(&format!("node{i}"), 11 + i as u8);
            let name = cluster.unique_name(&format!("node{i}"));
            nodes.push(LabNode {
                name,
                host,
                pods: Vec::new(),
                speaker: None,
                kube_proxy: None,
            });
        }
        for i in 0..nodes.len() {
            wire_node(&nodes, i);
            let (v4, v6) = pod_cidrs(i);
            let host = &nodes[i].host;
            let addresses = [IpAddr::V4(host.ipv4), IpAddr::V6(host.ipv6)];
            objects::create_node(&cluster, &nodes[i].name, &addresses, &[v4, v6]).await;
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            for j in 0..config.pods_per_node {
                let pod = start_pod(&mut lan, &cluster, &config, node, i, j).await;
                node.pods.push(pod);
            }
        }
        let pool = cluster.unique_name("pool");
        objects::pool_for_lab_nodes(&cluster, &pool, POOL).await;
        let gossip_key_dir = server
            .data_dir()
            .join(format!("gossip-key-{}", config.name));
        let mut lab = Lab {
            cluster,
            nodes,
            client,
            control_plane,
            pool,
            controller: None,
            config,
            controller_kubeconfig,
            speaker_kubeconfig,
            kube_proxy_kubeconfig,
            gossip_key_dir,
            _bridge: bridge,
            _lan: lan,
        };
        lab.start_controller();
        lab.mount_gossip_key().await;
        for i in 0..lab.nodes.len() {
            lab.start_speaker(i);
            lab.start_kube_proxy(i);
        }
        for i in 0..lab.nodes.len() {
            lab.wait_for_kube_proxy(i).await;
        }
        lab
    }

    pub fn start_controller(&mut self) {
        let mut command = self
            .control_plane
            .command(&self.config.binaries.controller.to_string_lossy());
        command
            .arg("--kubeconfig")
            .arg(&self.controller_kubeconfig)
            .args([
                "--metrics-bind-address",
                "127.0.0.1:9401",
                "--health-bind-address",
                "127.0.0.1:9402",
                "--lease-namespace",
                install::NAMESPACE,
            ]);
        self.controller = Some(self.spawn("herald-controller", command));
    }

    /// Waits for the gossip key Secret that the controller creates, and lays it out as the
    /// nodes' kubelets would mount it.
    async fn mount_gossip_key(&self) {
        let secrets = Api::<Secret>::namespaced(self.cluster.client(), install::NAMESPACE);
        let data = eventually(WAIT, "the controller's gossip key Secret", || async {
            secrets.get_opt("herald-gossip-key").await.ok()??.data
        })
        .await;
        let entries: Vec<(&str, &[u8])> = data
            .iter()
            .map(|(name, key)| (name.as_str(), key.0.as_slice()))
            .collect();
        gossip_key::project(&self.gossip_key_dir, &entries);
    }

    /// Stops the controller as Kubernetes would (SIGTERM: it hands its lease back).
    pub fn stop_controller(&mut self) {
        if let Some(mut controller) = self.controller.take() {
            controller.terminate();
        }
    }

    pub fn start_speaker(&mut self, i: usize) {
        let node = &self.nodes[i];
        let mut command = node
            .host
            .command(&self.config.binaries.speaker.to_string_lossy());
        command
            .args(["--node-name", &node.name, "--namespace", install::NAMESPACE])
            .arg("--kubeconfig")
            .arg(&self.speaker_kubeconfig)
            .arg("--gossip-key-dir")
            .arg(&self.gossip_key_dir)
            .args([
                "--metrics-bind-address",
                "127.0.0.1:9403",
                "--health-bind-address",
                "127.0.0.1:9404",
            ]);
        let process = self.spawn(&format!("herald-speaker-{}", node.host.name), command);
        self.nodes[i].speaker = Some(process);
    }

    pub fn start_kube_proxy(&mut self, i: usize) {
        let node = &self.nodes[i];
        let config = self
            .config
            .log_dir
            .join(format!("kube-proxy-{}.yaml", node.host.name));
        std::fs::write(
            &config,
            kube_proxy_config(&node.name, &self.kube_proxy_kubeconfig),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let mut command = node
            .host
            .command(&self.config.binaries.kube_proxy.to_string_lossy());
        command.arg("--config").arg(&config);
        let process = self.spawn(&format!("kube-proxy-{}", node.host.name), command);
        self.nodes[i].kube_proxy = Some(process);
    }

    async fn wait_for_kube_proxy(&self, i: usize) {
        let host = self.nodes[i].host.clone();
        eventually(
            WAIT,
            &format!("kube-proxy on {} to sync", host.name),
            || {
                let host = host.clone();
                async move {
                    let output = host
                        .command("curl")
                        .args(["-sf", "-m", "1", "http://127.0.0.1:10256/healthz"])
                        .output()
                        .ok()?;
                    output.status.success().then_some(())
                }
            },
        )
        .await;
    }

    /// The node fails as a machine does when it loses power: its LAN link goes down, and its
    /// speaker and kube-proxy die. Its pods stay as they were: without a node controller,
    /// nothing marks them unready. Returns when the link went down, in µs since the Unix epoch.
    pub fn fail_node(&mut self, i: usize) -> u128 {
        let node = &mut self.nodes[i];
        node.host.link_down();
        let failed_at = now_micros();
        for mut process in [node.speaker.take(), node.kube_proxy.take()]
            .into_iter()
            .flatten()
        {
            process.kill();
        }
        failed_at
    }

    /// Brings a failed node back: link up, speaker and kube-proxy started again.
    pub async fn restore_node(&mut self, i: usize) {
        self.nodes[i].host.link_up();
        route_pods(&self.nodes, i);
        self.start_speaker(i);
        self.start_kube_proxy(i);
        self.wait_for_kube_proxy(i).await;
    }

    /// A `type: LoadBalancer` Service over the lab's pods, dual-stack, with port 80 to the
    /// pods' 8080, and its EndpointSlices.
    pub async fn create_service(&self, name: &str, local: bool) {
        let policy = if local { "Local" } else { "Cluster" };
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy,
                     "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"],
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": POD_PORT}],
                     "selector": {"app": APP}},
        }))
        .expect("a Service");
        self.services()
            .create(&PostParams::default(), &service)
            .await
            .unwrap_or_else(|e| panic!("creating Service {name}: {e}"));
        self.write_endpoint_slices(name).await;
    }

    /// Marks a pod ready or not, in its status and in every Service's EndpointSlices, as the
    /// kubelet and the EndpointSlice controller would.
    pub async fn set_pod_ready(&mut self, node: usize, pod: usize, ready: bool, services: &[&str]) {
        self.nodes[node].pods[pod].ready = ready;
        write_pod_status(
            &self.cluster,
            &self.nodes[node],
            &self.nodes[node].pods[pod],
        )
        .await;
        for service in services {
            self.write_endpoint_slices(service).await;
        }
    }

    async fn write_endpoint_slices(&self, service: &str) {
        let slices: Api<EndpointSlice> =
            Api::namespaced(self.cluster.client(), self.cluster.namespace());
        for family in ["IPv4", "IPv6"] {
            let endpoints: Vec<Value> = self
                .nodes
                .iter()
                .flat_map(|node| node.pods.iter().map(move |pod| (node, pod)))
                .map(|(node, pod)| {
                    let address = match family {
                        "IPv4" => pod.ipv4.to_string(),
                        _ => pod.ipv6.to_string(),
                    };
                    json!({"addresses": [address], "nodeName": node.name,
                           "targetRef": {"kind": "Pod", "name": pod.name,
                                         "namespace": self.cluster.namespace()},
                           "conditions": {"ready": pod.ready, "serving": pod.ready,
                                          "terminating": false}})
                })
                .collect();
            let name = format!("{service}-{}", family.to_ascii_lowercase());
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "namespace": self.cluster.namespace(),
                             "labels": {"kubernetes.io/service-name": service,
                                        "endpointslice.kubernetes.io/managed-by": "lab.herald.dev"}},
                "addressType": family, "endpoints": endpoints,
                "ports": [{"name": "http", "port": POD_PORT, "protocol": "TCP"}],
            });
            slices
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&slice),
                )
                .await
                .unwrap_or_else(|e| panic!("writing EndpointSlice {name}: {e}"));
        }
    }

    /// Replaces the pool's addresses.
    pub async fn set_pool_addresses(&self, addresses: &[&str]) {
        objects::apply_herald(
            &self.cluster,
            json!({
                "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
                "metadata": {"name": self.pool}, "spec": {"addresses": addresses},
            }),
        )
        .await;
    }

    pub fn services(&self) -> Api<Service> {
        objects::services(&self.cluster)
    }

    /// Waits for the Service's addresses (IPv4 first) in its status.
    pub async fn addresses(&self, service: &str) -> Vec<IpAddr> {
        let api = self.services();
        eventually(WAIT, &format!("both addresses of {service}"), || async {
            let status = api.get(service).await.ok()?.status?;
            let mut ips: Vec<IpAddr> = status
                .load_balancer?
                .ingress?
                .iter()
                .filter_map(|i| i.ip.as_ref()?.parse().ok())
                .collect();
            ips.sort_by_key(|ip| ip.is_ipv6());
            (ips.len() == 2).then_some(ips)
        })
        .await
    }

    /// Waits for the Service's `herald.dev/Announced` condition to have `reason` and returns its
    /// message.
    pub async fn announced(&self, service: &str, reason: &str) -> String {
        objects::announced(&self.services(), service, reason, WAIT).await
    }

    /// The node that an Announced message names.
    pub fn node_named_in(&self, message: &str) -> Option<usize> {
        objects::announcing_node(message, self.nodes.iter().map(|node| node.name.as_str()))
    }

    /// Waits until the Service is announced by a live node, and returns that node.
    pub async fn announcer(&self, service: &str) -> usize {
        eventually(
            WAIT,
            &format!("a live node to announce {service}"),
            || async {
                let message = self.announced(service, "Announced").await;
                self.node_named_in(&message)
                    .filter(|i| self.nodes[*i].speaker.is_some())
            },
        )
        .await
    }

    /// The node whose MAC the client's neighbour entry for `ip` holds, if any.
    pub fn neighbour_node(&self, ip: IpAddr) -> Option<usize> {
        let mac = self.client.neighbour(ip)?.mac?;
        self.nodes.iter().position(|node| node.host.mac == mac)
    }

    /// One request from the client with the real `curl`: the response body, or why none came.
    pub fn curl(&self, ip: IpAddr) -> Result<String, String> {
        let url = match ip {
            IpAddr::V4(ip) => format!("http://{ip}:{SERVICE_PORT}/"),
            IpAddr::V6(ip) => format!("http://[{ip}]:{SERVICE_PORT}/"),
        };
        let output = self
            .client
            .command("curl")
            .args(["-sS", "--max-time", "2", &url])
            .output()
            .map_err(|e| format!("running curl: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// Starts a steady stream of requests from the client to `ip` (see `lab-probe`).
    pub fn probe(&self, ip: IpAddr, every: Duration, timeout: Duration) -> Probe {
        let mut command = self
            .client
            .command(&self.config.binaries.probe.to_string_lossy());
        command
            .args([
                ip.to_string(),
                SERVICE_PORT.to_string(),
                every.as_millis().to_string(),
                timeout.as_millis().to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child =
            crate::spawn_tied(command).unwrap_or_else(|e| panic!("starting lab-probe: {e}"));
        let stdout = child.stdout.take().expect("a piped stdout");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(sample) = Sample::parse(&line) {
                    sink.lock().expect("not poisoned").push(sample);
                }
            }
        });
        Probe { child, samples }
    }

    /// Waits until the Service's condition names a live node, the client reaches `ip`, and the
    /// client's neighbour entry for `ip` holds that node's MAC, all still so a while later (a
    /// node that came back takes its addresses back after its conflict probe); returns the
    /// node.
    pub async fn settled(&self, service: &str, ip: IpAddr) -> usize {
        let answering = || async {
            let node = self.announcer(service).await;
            self.curl(ip).ok()?;
            (self.neighbour_node(ip) == Some(node)).then_some(node)
        };
        eventually(
            WAIT,
            &format!("{service} to settle on one node for {ip}"),
            || async {
                let before = answering().await?;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                (answering().await? == before).then_some(before)
            },
        )
        .await
    }

    /// Fails node `i` under a steady stream of requests from the client to `ip` (one every
    /// 5 ms, each on a new connection) and returns how long after the failure the first
    /// request sent after it succeeded, with that request's response.
    pub async fn failover(&mut self, ip: IpAddr, i: usize) -> (Duration, String) {
        let probe = self.probe(ip, Duration::from_millis(5), Duration::from_millis(500));
        probe.first_success_after(now_micros(), WAIT).await;
        let failed_at = self.fail_node(i);
        let back = probe.first_success_after(failed_at, WAIT).await;
        let gap = Duration::from_micros((back.done - failed_at) as u64);
        (gap, back.outcome.unwrap_or_default())
    }

    /// Where the node's pod networks are, for the messages that show which node a request
    /// came through.
    pub fn node_of_address(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().enumerate().find_map(|(i, node)| {
            let on_lan = ip == IpAddr::V4(node.host.ipv4) || ip == IpAddr::V6(node.host.ipv6);
            (on_lan || ip == IpAddr::V4(gateway_v4(i)) || ip == IpAddr::V6(gateway_v6(i)))
                .then_some(i)
        })
    }

    fn spawn(&self, name: &str, command: std::process::Command) -> Process {
        Process::spawn(
            name,
            command,
            self.config.log_dir.join(format!("{name}.log")),
        )
    }
}

/// What a lab pod answers: `<pod> on <node> saw <address>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub pod: String,
    /// The Node object's name.
    pub node: String,
    /// The address the pod saw the request come from.
    pub saw: IpAddr,
}

impl Reply {
    pub fn parse(body: &str) -> Option<Reply> {
        let (pod, rest) = body.trim().split_once(" on ")?;
        let (node, saw) = rest.split_once(" saw ")?;
        Some(Reply {
            pod: pod.to_string(),
            node: node.to_string(),
            saw: saw.parse().ok()?,
        })
    }
}

/// What `lab-probe` reports of one request.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was sent and when it ended, in µs since the Unix epoch.
    pub sent: u128,
    pub done: u128,
    /// The response body, or why there was none.
    pub outcome: Result<String, String>,
}

impl Sample {
    fn parse(line: &str) -> Option<Sample> {
        let mut fields = line.splitn(4, ' ');
        let sent = fields.next()?.parse().ok()?;
        let done = fields.next()?.parse().ok()?;
        let verdict = fields.next()?;
        let text = fields.next().unwrap_or_default().to_string();
        let outcome = if verdict == "ok" { Ok(text) } else { Err(text) };
        Some(Sample {
            sent,
            done,
            outcome,
        })
    }
}

/// A running `lab-probe`; stopped when dropped.
pub struct Probe {
    child: Child,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Probe {
    /// Every request that has ended so far, in the order they ended.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("not poisoned").clone()
    }

    /// Waits until a request sent after `since` (µs since the epoch) succeeds, and returns it.
    pub async fn first_success_after(&self, since: u128, timeout: Duration) -> Sample {
        eventually(timeout, "a request to succeed", || async {
            self.samples()
                .into_iter()
                .filter(|s| s.sent >= since && s.outcome.is_ok())
                .min_by_key(|s| s.sent)
        })
        .await
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, in µs since the Unix epoch, the clock `lab-probe` uses.
pub fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default()
}

fn gateway_v4(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 16 * (node as u8 + 1) + 1)
}

fn gateway_v6(node: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x10, node as u16 + 1, 0, 0, 0, 1)
}

fn pod_cidrs(node: usize) -> (String, String) {
    (
        format!("198.51.100.{}/28", 16 * (node + 1)),
        format!("2001:db8:10:{}::/64", node + 1),
    )
}

/// Makes node `i` a router for its pods: forwarding on, the `cni0` bridge with the pods'
/// gateway addresses, and routes to the other nodes' pods through their LAN addresses.
fn wire_node(nodes: &[LabNode], i: usize) {
    let netns = &nodes[i].host.netns;
    sysctl(
        netns,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    );
    ip_n(netns, "link add cni0 type bridge");
    ip_n(netns, &format!("address add {}/28 dev cni0", gateway_v4(i)));
    ip_n(netns, &format!("address add {}/64 dev cni0", gateway_v6(i)));
    ip_n(netns, "link set cni0 up");
    route_pods(nodes, i);
}

/// Routes node `i` to the other nodes' pods through their LAN addresses. The kernel drops
/// these routes when the LAN link goes down, so a node coming back needs them again.
fn route_pods(nodes: &[LabNode], i: usize) {
    let netns = &nodes[i].host.netns;
    for (k, other) in nodes.iter().enumerate().filter(|(k, _)| *k != i) {
        let (v4, v6) = pod_cidrs(k);
        ip_n(
            netns,
            &format!("route replace {v4} via {}", other.host.ipv4),
        );
        ip_n(
            netns,
            &format!("-6 route replace {v6} via {}", other.host.ipv6),
        );
    }
}

/// Pod `j` of node `i`: a namespace behind the node's `cni0`, running `lab-echo`, and its Pod
/// object, ready.
async fn start_pod(
    lan: &mut Lan,
    cluster: &TestCluster,
    config: &LabConfig,
    node: &LabNode,
    i: usize,
    j: usize,
) -> LabPod {
    let ipv4 = Ipv4Addr::new(198, 51, 100, 16 * (i as u8 + 1) + 2 + j as u8);
    let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0x10, i as u16 + 1, 0, 0, 0, 2 + j as u16);
    let port = format!("p{j}");
    let netns = lan.add_behind(&node.host, &format!("{}-pod{j}", node.host.name), &port);
    ip_n(&node.host.netns, &format!("link set {port} master cni0 up"));
    sysctl(&netns, &["net.ipv6.conf.eth0.accept_dad=0"]);
    ip_n(&netns, &format!("address add {ipv4}/28 dev eth0"));
    ip_n(&netns, &format!("address add {ipv6}/64 dev eth0"));
    ip_n(&netns, "link set eth0 up");
    ip_n(&netns, &format!("route add default via {}", gateway_v4(i)));
    ip_n(
        &netns,
        &format!("-6 route add default via {}", gateway_v6(i)),
    );
    let name = format!("echo-{}-{j}", node.host.name);
    let mut command = crate::lan::netns_exec(&netns, &config.binaries.echo.to_string_lossy());
    command.args([&name, &node.name]);
    let process = Process::spawn(&name, command, config.log_dir.join(format!("{name}.log")));
    let pod = LabPod {
        name,
        ipv4,
        ipv6,
        ready: true,
        _process: process,
    };
    let object: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod.name, "labels": {"app": APP}},
        "spec": {"nodeName": node.name,
                 "containers": [{"name": "echo", "image": "lab.herald.dev/echo",
                                 "ports": [{"name": "http", "containerPort": POD_PORT}]}]},
    }))
    .expect("a Pod");
    Api::<Pod>::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating Pod {}: {e}", pod.name));
    write_pod_status(cluster, node, &pod).await;
    pod
}

async fn write_pod_status(cluster: &TestCluster, node: &LabNode, pod: &LabPod) {
    let ready = if pod.ready { "True" } else { "False" };
    let status = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": cluster.namespace()},
        "status": {"phase": "Running", "hostIP": node.host.ipv4.to_string(),
                   "podIP": pod.ipv4.to_string(),
                   "podIPs": [{"ip": pod.ipv4.to_string()}, {"ip": pod.ipv6.to_string()}],
                   "conditions": [{"type": "Ready", "status": ready},
                                  {"type": "ContainersReady", "status": ready}]},
    });
    Api::<Pod>::namespaced(cluster.client(), cluster.namespace())
        .patch_status(
            &pod.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap_or_else(|e| panic!("writing the status of Pod {}: {e}", pod.name));
}

/// kube-proxy's configuration for one node: iptables mode; traffic from the pod networks is
/// local. Conntrack sysctls are left alone: `nf_conntrack_max` belongs to the whole machine,
/// not to the node's namespace.
fn kube_proxy_config(node: &str, kubeconfig: &Path) -> String {
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {node}
mode: iptables
clusterCIDR: 198.51.100.0/24,2001:db8:10::/48
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
",
        kubeconfig = kubeconfig.display()
    )
}
