//! The lab: a real Kubernetes cluster on this machine, with Herald installed as its users
//! install it. A control-plane host serves the test API server (bridged onto the LAN) and runs
//! the real kube-controller-manager and kube-scheduler; each node host is a real node
//! ([`KubeNode`]: containerd, kubelet, kube-proxy); a client host sends the traffic. Herald
//! comes from its own image and Helm chart (`deploy/helm/herald`): the speaker DaemonSet's Pods
//! on every node, the controller Deployment's two replicas. The echo backends are the Pods of
//! a Deployment with readiness probes, one per node; their EndpointSlices are the controller-
//! manager's.
//!
//! Addresses, documentation ranges only:
//! - the LAN `192.0.2.0/24` and `2001:db8::/64`: control plane `.2`, client `.100`, node `i`
//!   `.(11 + i)` (see [`Lan`]);
//! - node `i`'s Pods in [`node::pod_cidrs`]`(i)`, behind its `cni0` bridge; each node routes
//!   the other nodes' Pod ranges through their LAN addresses, as a simple routed CNI does;
//! - the pool `192.0.2.200-192.0.2.220` and `2001:db8::200-2001:db8::220`, on the LAN.
//!
//! Images come from no registry: Herald's (`scripts/build-image`) and the lab's pause and echo
//! images (`scripts/build-lab-images`) are imported into every node's containerd.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

pub mod bgp;

use self::bgp::LabBgp;
use crate::bridge::ApiBridge;
use crate::lan::{Host, Lan, ip_n, sysctl};
use crate::node::{self, KubeNode, NodeConfig, pod_gateways};
use crate::{ApiServer, Process, TestCluster, eventually, install, objects};

/// How long the lab waits for anything to converge before it gives up.
pub const WAIT: Duration = Duration::from_secs(60);
/// How long a node's failure takes to show: the node controller waits 50 s
/// (`--node-monitor-grace-period`) for a kubelet's status before it marks the node NotReady.
pub const NODE_FAILURE_WAIT: Duration = Duration::from_secs(120);
/// The port every Service exposes, and the port the Pods listen on.
pub const SERVICE_PORT: u16 = 80;
const POD_PORT: u16 = 8080;
/// The label that selects the lab's echo Pods, and their Deployment's name.
const APP: &str = "echo";
const POOL: &[&str] = &["192.0.2.200-192.0.2.220", "2001:db8::200-2001:db8::220"];
/// The control plane's host number on the LAN: the API server's endpoint for Pods.
const CONTROL_PLANE_HOST: u8 = 2;
/// Herald's Helm release.
const RELEASE: &str = "herald";
const ECHO_IMAGE: &str = "lab.herald.dev/echo:1";
/// The speaker's health port, as the chart's default values have it.
const SPEAKER_HEALTH_PORT: u16 = 9404;
/// Herald's image, without its tag (`scripts/build-image` tags it with the version).
const HERALD_IMAGE: &str = "ghcr.io/herald-lb/herald";

/// Where a real cluster's Pods reach the API server: the control plane's LAN address, which
/// the lab's API bridge serves.
pub fn api_endpoint() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, CONTROL_PLANE_HOST))
}

/// What the lab runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The test API server's folder: kubelet, kube-proxy, kube-controller-manager,
    /// kube-scheduler (the multi-call binary's names).
    pub kubernetes: PathBuf,
    pub probe: PathBuf,
    pub helm: PathBuf,
    /// OCI image layouts: Herald's, and the lab's pause and echo images.
    pub images: Vec<PathBuf>,
}

impl Binaries {
    /// `lab-probe` from `dir` (a Cargo profile folder such as `target/debug`), Kubernetes from
    /// the test API server's folder, helm from `HERALD_HELM` (`scripts/install-helm`), Herald's
    /// image from `HERALD_IMAGE` (`scripts/build-image`) and the lab's from `HERALD_LAB_IMAGES`
    /// (`scripts/build-lab-images`).
    pub fn in_dir(dir: &Path, server: &ApiServer) -> Binaries {
        let from_env = |name: &str, script: &str| -> PathBuf {
            std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| {
                panic!("{name} is not set: run `export {name}=$({script})` first (scripts/lab does)")
            })
        };
        let lab_images = from_env("HERALD_LAB_IMAGES", "scripts/build-lab-images");
        let binaries = Binaries {
            kubernetes: server.bin_dir().to_owned(),
            probe: dir.join("lab-probe"),
            helm: from_env("HERALD_HELM", "scripts/install-helm"),
            images: vec![
                from_env("HERALD_IMAGE", "scripts/build-image"),
                lab_images.join("pause"),
                lab_images.join("echo"),
            ],
        };
        let kubelet = binaries.kubernetes.join("kubelet");
        for path in [&binaries.probe, &binaries.helm, &kubelet]
            .into_iter()
            .chain(&binaries.images)
        {
            assert!(
                path.exists(),
                "{} is missing: build it first (cargo build -p herald-tests --bins; \
                 tests/apiserver/build.sh; scripts/build-image; scripts/build-lab-images)",
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
    /// BGP beside layer 2 ([`LabConfig::with_bgp`]).
    pub bgp: bool,
    /// Where the processes' logs go.
    pub log_dir: PathBuf,
    pub binaries: Binaries,
}

impl LabConfig {
    /// The lab of the demo and of the end-to-end suite: three nodes with one echo Pod each,
    /// logging into `log_dir`.
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
            bgp: false,
            log_dir,
            binaries: Binaries::in_dir(profile_dir, server),
        }
    }

    /// BGP too ([`bgp`]): a router on the LAN, and Herald installed with the chart's FRR
    /// sidecar, from the FRR image in `HERALD_FRR_IMAGE` (`scripts/build-frr-image`).
    pub fn with_bgp(mut self) -> LabConfig {
        let image = std::env::var_os("HERALD_FRR_IMAGE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "HERALD_FRR_IMAGE is not set: run `export HERALD_FRR_IMAGE=$(scripts/build-frr-image)` \
                     first (scripts/lab does)"
                )
            });
        assert!(
            image.exists(),
            "{} is missing: run scripts/build-frr-image",
            image.display()
        );
        self.binaries.images.push(image);
        self.bgp = true;
        self
    }
}

pub struct LabNode {
    /// The Node object's name.
    pub name: String,
    pub host: Host,
    /// False from a failure ([`Lab::fail_node`]) until the node is back.
    pub up: bool,
    kube: KubeNode,
}

/// An echo Pod, as the API server has it.
pub struct LabPod {
    pub name: String,
    pub node: String,
    pub ips: Vec<IpAddr>,
}

pub struct Lab {
    pub cluster: TestCluster,
    pub nodes: Vec<LabNode>,
    pub client: Host,
    pub control_plane: Host,
    pub pool: String,
    /// The router and the outside client, with BGP ([`LabConfig::with_bgp`]).
    pub bgp: Option<LabBgp>,
    config: LabConfig,
    /// The control plane's controllers; dropped before the bridge they reach the server by.
    _control_plane_processes: Vec<Process>,
    /// Dropped after the processes above and before the LAN, whose namespaces it serves in.
    _bridge: ApiBridge,
    /// Held for its namespaces, which go when it is dropped, last.
    _lan: Lan,
}

impl Lab {
    /// Builds the LAN, starts the control plane's controllers and the nodes, installs Herald
    /// with its Helm chart and the echo Deployment; returns once every Pod is ready.
    /// `cluster`'s server must serve a real cluster (see
    /// [`cluster_api_server`](crate::cluster_api_server) and [`api_endpoint`]).
    pub async fn start(cluster: TestCluster, config: LabConfig) -> Lab {
        node::remove_leftovers();
        let mut lan = Lan::new(&config.name);
        let control_plane = lan.add_host("cp", CONTROL_PLANE_HOST);
        let client = lan.add_host("client", 100);
        let server = cluster.server();
        let bridge = ApiBridge::new(server, &control_plane);
        let control_plane_processes = start_control_plane(server, &bridge, &control_plane, &config);

        let mut hosts = Vec::new();
        for i in 0..config.nodes {
            hosts.push(lan.add_host(&format!("node{i}"), 11 + i as u8));
        }
        for i in 0..hosts.len() {
            wire_node(&hosts, i);
        }
        let bgp = config.bgp.then(|| LabBgp::add(&mut lan, &hosts, &cluster));
        // The control plane routes to the Pods too: Pods reach the API server there.
        route_pods(&control_plane, &hosts, None);
        let mut nodes = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let name = cluster.unique_name(&format!("node{i}"));
            let node_config = NodeConfig {
                bin_dir: config.binaries.kubernetes.clone(),
                ca_file: server.data_dir().join("ca.crt"),
                kubelet_kubeconfig: bridge.for_lan(
                    &server.kubeconfig_for(&format!("system:node:{name}"), &["system:nodes"]),
                ),
                kube_proxy_kubeconfig: bridge
                    .for_lan(&server.kubeconfig_for("system:kube-proxy", &[])),
                images: config.binaries.images.clone(),
                labels: vec![(
                    objects::NODE_LABEL.to_string(),
                    cluster.namespace().to_string(),
                )],
                log_dir: config.log_dir.clone(),
            };
            let kube = KubeNode::start(&name, host, i, node_config).await;
            nodes.push(LabNode {
                name,
                host: host.clone(),
                up: true,
                kube,
            });
        }
        let pool = cluster.unique_name("pool");
        let lab = Lab {
            cluster,
            nodes,
            client,
            control_plane,
            pool,
            bgp,
            config,
            _control_plane_processes: control_plane_processes,
            _bridge: bridge,
            _lan: lan,
        };
        for i in 0..lab.nodes.len() {
            lab.wait_node_ready(i, true, WAIT).await;
        }
        lab.install_herald();
        lab.create_echo().await;
        lab.wait_herald_ready().await;
        lab.wait_echo_ready(WAIT).await;
        objects::pool_for_lab_nodes(&lab.cluster, &lab.pool, POOL).await;
        if let Some(bgp) = &lab.bgp {
            bgp.configure(&lab.cluster).await;
        }
        lab
    }

    /// A lab for a test binary: a namespace of its own on the real cluster's API server, the
    /// processes' logs in the server's folder. `profile_dir`: the Cargo profile folder of the
    /// test's binaries (`lab-probe`); `bgp`: [`LabConfig::with_bgp`].
    pub async fn for_test(name: &str, profile_dir: &Path, bgp: bool) -> Lab {
        let server = crate::cluster_api_server(api_endpoint()).await;
        let cluster = crate::namespace_on(server, &format!("{name}-{}", std::process::id())).await;
        let log_dir = cluster.server().data_dir().join(name);
        let mut config = LabConfig::three_nodes(name, profile_dir, cluster.server(), log_dir);
        if bgp {
            config = config.with_bgp();
        }
        Lab::start(cluster, config).await
    }

    /// `helm install` of `deploy/helm/herald` with its default values, as the README has it;
    /// with BGP, the FRR sidecar on (`speaker.bgp.enabled`).
    fn install_herald(&self) {
        if self.bgp.is_some() {
            self.helm_upgrade(&["--set", "speaker.bgp.enabled=true"]);
        } else {
            self.helm_upgrade(&[]);
        }
    }

    /// Upgrades Herald to the image tag `tag`, as a user would (`helm upgrade --set
    /// image.tag=...`): every node's containerd gets Herald's image under that tag first, as a
    /// registry would serve it. Returns once the rollout is over.
    pub async fn upgrade_herald(&self, tag: &str) {
        let image = format!("{HERALD_IMAGE}:{}", env!("CARGO_PKG_VERSION"));
        for node in &self.nodes {
            node.kube
                .tag_image(&image, &format!("{HERALD_IMAGE}:{tag}"));
        }
        self.helm_upgrade(&["--reuse-values", "--set", &format!("image.tag={tag}")]);
        self.wait_herald_ready().await;
    }

    fn helm_upgrade(&self, args: &[&str]) {
        let server = self.cluster.server();
        let chart = crate::repo_root().join("deploy/helm/herald");
        let output = Command::new(&self.config.binaries.helm)
            .env("KUBECONFIG", server.kubeconfig_path())
            .args(["upgrade", "--install", RELEASE])
            .arg(&chart)
            .args(["--namespace", install::NAMESPACE, "--create-namespace"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running helm: {e}"));
        assert!(
            output.status.success(),
            "helm install {} failed: {}",
            chart.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }

    /// Waits until the speaker DaemonSet has an up-to-date ready Pod on every node and the
    /// controller Deployment both replicas up to date and ready.
    pub async fn wait_herald_ready(&self) {
        let client = self.cluster.client();
        let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), install::NAMESPACE);
        let deployments = Api::<Deployment>::namespaced(client, install::NAMESPACE);
        let nodes = self.nodes.len() as i32;
        eventually(WAIT, "Herald's Pods to be ready", || async {
            let speaker = daemonsets.get(install::SPEAKER).await.ok()?;
            let controller = deployments.get(install::CONTROLLER).await.ok()?;
            let speaker_status = speaker.status?;
            let controller_status = controller.status?;
            (speaker_status.observed_generation == speaker.metadata.generation
                && speaker_status.number_ready == nodes
                && speaker_status.updated_number_scheduled == Some(nodes)
                && controller_status.observed_generation == controller.metadata.generation
                && controller_status.updated_replicas == Some(2)
                && controller_status.ready_replicas == Some(2)
                && controller_status.replicas == Some(2))
            .then_some(())
        })
        .await;
    }

    /// Deletes the speaker's Pod on node `i`, as `kubectl delete pod` does (SIGTERM: it hands
    /// its addresses over), and returns once the DaemonSet's new Pod there is ready.
    pub async fn delete_speaker_pod(&self, i: usize) {
        let pods = Api::<Pod>::namespaced(self.cluster.client(), install::NAMESPACE);
        let params = ListParams::default()
            .labels("app.kubernetes.io/component=speaker")
            .fields(&format!("spec.nodeName={}", self.nodes[i].name));
        let pod = pods
            .list(&params)
            .await
            .unwrap_or_else(|e| panic!("listing the speaker's Pods: {e}"))
            .items
            .into_iter()
            .next()
            .and_then(|pod| pod.metadata.name)
            .unwrap_or_else(|| panic!("no speaker Pod on {}", self.nodes[i].name));
        pods.delete(&pod, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("deleting Pod {pod}: {e}"));
        eventually(
            WAIT,
            &format!("a new speaker Pod on {}", self.nodes[i].name),
            || async {
                let list = pods.list(&params).await.ok()?;
                list.items
                    .iter()
                    .any(|p| {
                        p.metadata.name.as_ref() != Some(&pod)
                            && p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                    })
                    .then_some(())
            },
        )
        .await;
    }

    /// The echo Deployment: one Pod per node (a topology spread), each answering with its own
    /// and its node's names (downward API), ready once it answers HTTP.
    async fn create_echo(&self) {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": APP},
            "spec": {
                "replicas": self.nodes.len(),
                "selector": {"matchLabels": {"app": APP}},
                "template": {
                    "metadata": {"labels": {"app": APP}},
                    "spec": {
                        "topologySpreadConstraints": [{
                            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": {"app": APP}}}],
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "echo", "image": ECHO_IMAGE, "imagePullPolicy": "Never",
                            "args": ["$(POD_NAME)", "$(NODE_NAME)"],
                            "env": [
                                {"name": "POD_NAME",
                                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "NODE_NAME",
                                 "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            "ports": [{"name": "http", "containerPort": POD_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                               "periodSeconds": 1, "failureThreshold": 1}}]}}}
        }))
        .expect("a Deployment");
        Api::<Deployment>::namespaced(self.cluster.client(), self.cluster.namespace())
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap_or_else(|e| panic!("creating the echo Deployment: {e}"));
    }

    async fn wait_echo_ready(&self, timeout: Duration) {
        let deployments =
            Api::<Deployment>::namespaced(self.cluster.client(), self.cluster.namespace());
        let replicas = self.nodes.len() as i32;
        eventually(timeout, "the echo Pods to be ready", || async {
            let status = deployments.get(APP).await.ok()?.status?;
            (status.ready_replicas == Some(replicas)).then_some(())
        })
        .await;
    }

    /// The echo Pods, by name.
    pub async fn pods(&self) -> Vec<LabPod> {
        let pods = Api::<Pod>::namespaced(self.cluster.client(), self.cluster.namespace())
            .list(&ListParams::default().labels(&format!("app={APP}")))
            .await
            .unwrap_or_else(|e| panic!("listing the echo Pods: {e}"));
        let mut pods: Vec<LabPod> = pods
            .into_iter()
            .map(|pod| LabPod {
                name: pod.metadata.name.unwrap_or_default(),
                node: pod.spec.and_then(|s| s.node_name).unwrap_or_default(),
                ips: pod
                    .status
                    .and_then(|s| s.pod_ips)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|ip| ip.ip.parse().ok())
                    .collect(),
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }

    /// The echo Pod on node `i`.
    pub async fn echo_pod_on(&self, i: usize) -> LabPod {
        let node = &self.nodes[i].name;
        self.pods()
            .await
            .into_iter()
            .find(|p| &p.node == node)
            .unwrap_or_else(|| panic!("no echo Pod on {node}"))
    }

    /// Stops the controller as Kubernetes would: its Deployment scaled to none (SIGTERM: a
    /// leader hands its lease back).
    pub async fn stop_controller(&mut self) {
        self.scale_controller(0).await;
        let pods = Api::<Pod>::namespaced(self.cluster.client(), install::NAMESPACE);
        let selector = "app.kubernetes.io/component=controller";
        eventually(WAIT, "the controller's Pods to be gone", || async {
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            list.items.is_empty().then_some(())
        })
        .await;
    }

    /// Scales the controller's Deployment back to its two replicas.
    pub async fn start_controller(&mut self) {
        self.scale_controller(2).await;
    }

    async fn scale_controller(&self, replicas: i32) {
        Api::<Deployment>::namespaced(self.cluster.client(), install::NAMESPACE)
            .patch_scale(
                install::CONTROLLER,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap_or_else(|e| panic!("scaling the controller to {replicas}: {e}"));
    }

    /// The node fails as a machine does when it loses power: its LAN link goes down, and
    /// everything on it dies at once (containerd, kubelet, kube-proxy, every container, the
    /// speaker among them). Returns when the link went down, in µs since the Unix epoch.
    pub fn fail_node(&mut self, i: usize) -> u128 {
        let node = &mut self.nodes[i];
        node.host.link_down();
        let failed_at = now_micros();
        node.kube.kill();
        node.up = false;
        failed_at
    }

    /// Brings a failed node back, as a machine that boots: link up, its processes started
    /// again; returns once the node is Ready and Herald's and the echo Pods are ready again.
    pub async fn restore_node(&mut self, i: usize) {
        self.nodes[i].host.link_up();
        let hosts: Vec<Host> = self.nodes.iter().map(|n| n.host.clone()).collect();
        route_services(&hosts[i]);
        route_pods(&hosts[i], &hosts, Some(i));
        if self.bgp.is_some() {
            bgp::route_outside(&hosts[i]);
        }
        self.nodes[i].kube.boot().await;
        self.nodes[i].up = true;
        self.wait_node_ready(i, true, NODE_FAILURE_WAIT).await;
        // The node controller may not have noticed the failure, so the API can still show the
        // dead speaker's Pod as ready: wait for the new one to serve on the node.
        let host = self.nodes[i].host.clone();
        eventually(
            WAIT,
            &format!("the speaker on {} to serve again", self.nodes[i].name),
            || {
                let host = host.clone();
                async move {
                    let url = format!("http://127.0.0.1:{SPEAKER_HEALTH_PORT}/healthz");
                    let output = host
                        .command("curl")
                        .args(["-sf", "-m", "1", &url])
                        .output()
                        .ok()?;
                    output.status.success().then_some(())
                }
            },
        )
        .await;
        self.wait_herald_ready().await;
        // The booted node's echo Pod starts again from its sandbox up; on a loaded machine that
        // took over a minute once.
        self.wait_echo_ready(NODE_FAILURE_WAIT).await;
    }

    /// Stops node `i`'s kubelet alone: its containers keep running until the node controller
    /// marks the node NotReady and its Pods' endpoints unready.
    pub fn stop_kubelet(&mut self, i: usize) {
        self.nodes[i].kube.kill_kubelet();
    }

    pub fn start_kubelet(&mut self, i: usize) {
        self.nodes[i].kube.start_kubelet();
    }

    /// Waits until Node `i`'s Ready condition is `ready`.
    pub async fn wait_node_ready(&self, i: usize, ready: bool, timeout: Duration) {
        let nodes = Api::<Node>::all(self.cluster.client());
        let name = &self.nodes[i].name;
        let want = if ready { "True" } else { "not True" };
        eventually(
            timeout,
            &format!("Node {name} to have Ready {want}"),
            || async {
                let conditions = nodes.get(name).await.ok()?.status?.conditions?;
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && (c.status == "True") == ready)
                    .then_some(())
            },
        )
        .await;
    }

    /// A `type: LoadBalancer` Service over the echo Pods, dual-stack, with port 80 to the Pods'
    /// 8080.
    pub async fn create_service(&self, name: &str, local: bool) {
        let policy = if local { "Local" } else { "Cluster" };
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy,
                     "ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"],
                     "selector": {"app": APP},
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]},
        }))
        .expect("a Service");
        self.services()
            .create(&PostParams::default(), &service)
            .await
            .unwrap_or_else(|e| panic!("creating Service {name}: {e}"));
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
                self.node_named_in(&message).filter(|i| self.nodes[*i].up)
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
        curl_from(&self.client, ip)
    }

    /// Starts a steady stream of requests from the client to `ip` (see `lab-probe`).
    pub fn probe(&self, ip: IpAddr, every: Duration, timeout: Duration) -> Probe {
        self.probe_from(&self.client, ip, every, timeout)
    }

    /// Starts a steady stream of requests from `host` to `ip` (see `lab-probe`).
    pub fn probe_from(&self, host: &Host, ip: IpAddr, every: Duration, timeout: Duration) -> Probe {
        let mut command = host.command(&self.config.binaries.probe.to_string_lossy());
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

    /// Where the node's Pod networks are, for the messages that show which node a request
    /// came through.
    pub fn node_of_address(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().enumerate().find_map(|(i, node)| {
            let on_lan = ip == IpAddr::V4(node.host.ipv4) || ip == IpAddr::V6(node.host.ipv6);
            let (gateway_v4, gateway_v6) = pod_gateways(i);
            (on_lan || ip == IpAddr::V4(gateway_v4) || ip == IpAddr::V6(gateway_v6)).then_some(i)
        })
    }
}

/// One request from `host` with the real `curl`: the response body, or why none came.
fn curl_from(host: &Host, ip: IpAddr) -> Result<String, String> {
    let url = match ip {
        IpAddr::V4(ip) => format!("http://{ip}:{SERVICE_PORT}/"),
        IpAddr::V6(ip) => format!("http://[{ip}]:{SERVICE_PORT}/"),
    };
    let output = host
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

/// kube-controller-manager (every controller, ServiceAccount tokens signed with the server's
/// key) and kube-scheduler on the control-plane host, each as its own identity.
fn start_control_plane(
    server: &ApiServer,
    bridge: &ApiBridge,
    host: &Host,
    config: &LabConfig,
) -> Vec<Process> {
    let data = server.data_dir();
    let file = |name: &str| data.join(name).display().to_string();
    let spawn = |name: &str, args: Vec<String>| {
        let mut command = host.command(&config.binaries.kubernetes.join(name).to_string_lossy());
        command.args(args);
        Process::spawn(name, command, config.log_dir.join(format!("{name}.log")))
    };
    let kubeconfig = |user: &str| {
        bridge
            .for_lan(&server.kubeconfig_for(user, &[]))
            .display()
            .to_string()
    };
    let controller_manager = spawn(
        "kube-controller-manager",
        vec![
            format!(
                "--kubeconfig={}",
                kubeconfig("system:kube-controller-manager")
            ),
            "--controllers=*".into(),
            "--use-service-account-credentials".into(),
            format!("--service-account-private-key-file={}", file("sa.key")),
            format!("--root-ca-file={}", file("ca.crt")),
            format!("--cluster-signing-cert-file={}", file("ca.crt")),
            format!("--cluster-signing-key-file={}", file("ca.key")),
            format!("--service-cluster-ip-range={}", node::SERVICE_CIDRS),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
        ],
    );
    let scheduler = spawn(
        "kube-scheduler",
        vec![
            format!("--kubeconfig={}", kubeconfig("system:kube-scheduler")),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
        ],
    );
    vec![controller_manager, scheduler]
}

/// Makes node `i` a router for its Pods: forwarding on, and routes to the other nodes' Pods
/// through their LAN addresses (its own `cni0` the CNI bridge plugin makes).
fn wire_node(hosts: &[Host], i: usize) {
    sysctl(
        &hosts[i].netns,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    );
    route_services(&hosts[i]);
    route_pods(&hosts[i], hosts, Some(i));
}

/// Routes the Services' ClusterIP ranges onto the host's LAN link: the kernel routes a host
/// network process's packet (the speaker's, to the API server's ClusterIP) before kube-proxy's
/// rules rewrite its destination, so without a route it fails as unreachable. Dropped with the
/// link, as the Pods' routes are.
fn route_services(host: &Host) {
    for cidr in node::SERVICE_CIDRS.split(',') {
        ip_n(&host.netns, &format!("route replace {cidr} dev eth0"));
    }
}

/// Routes `from` to the Pods of every node (but `except`, which is `from` itself) through
/// their LAN addresses. The kernel drops these routes when the LAN link goes down, so a node
/// coming back needs them again.
fn route_pods(from: &Host, nodes: &[Host], except: Option<usize>) {
    let netns = &from.netns;
    for (k, other) in nodes.iter().enumerate().filter(|(k, _)| Some(*k) != except) {
        let (v4, v6) = node::pod_cidrs(k);
        ip_n(netns, &format!("route replace {v4} via {}", other.ipv4));
        ip_n(netns, &format!("-6 route replace {v6} via {}", other.ipv6));
    }
}
