//! BGP in the lab ([`LabConfig::with_bgp`](super::LabConfig::with_bgp)): Herald installed with
//! the chart's `speaker.bgp.enabled`, so every speaker Pod runs FRR beside it (the FRR image,
//! `scripts/build-frr-image`, imported into every node's containerd); a top-of-rack router on
//! the LAN (BIRD 2, as the namespace tests run it) peering with every node, with BFD at
//! 100 ms x 3; and a client outside, on a network of its own behind the router, which reaches
//! the Services' addresses only through the routes the router learnt. The router spreads
//! connections over equal routes by a layer-4 hash, as datacenter routers do.
//!
//! Addresses, documentation ranges only: the router `192.0.2.1` on the LAN; the outside network
//! `203.0.113.0/25` (router `.1`, client `.100`); the BGP pool `203.0.113.200-203.0.113.220`,
//! which Services ask for by name (`autoAssign: false`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use herald_crds::{BGPSessionState, BGPSessionStateStatus, annotations};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::{APP, Lab, SERVICE_PORT, WAIT, now_micros};
use crate::bgp_lan::{BgpLan, NODE_ASN, ROUTER, ROUTER_ASN};
use crate::lan::{Host, Lan, ip_n, sysctl};
use crate::objects::{self, apply_herald};
use crate::router::{Router, bird_config};
use crate::{TestCluster, eventually};

const OUTSIDE_NETWORK: &str = "203.0.113.0/25";
const OUTSIDE_ROUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const OUTSIDE_CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
const POOL: &str = "203.0.113.200-203.0.113.220";
/// The BFD profile's intervals, as the router's (`router::bird_config`).
const BFD_INTERVAL_MS: u32 = 100;

/// The lab's BGP side.
pub struct LabBgp {
    pub router: Router,
    /// The client behind the router.
    pub outside: Host,
    /// The cluster-scoped objects' names: the pool BGP advertises, the router's BGPPeer, its
    /// BFDProfile.
    pub pool: String,
    pub peer: String,
    pub bfd_profile: String,
}

impl LabBgp {
    /// Adds the router (host 1 on the LAN, a BGP neighbor for each of `nodes` with BFD on) and
    /// the outside client behind it; routes the nodes' replies to the outside through it.
    /// Before the nodes start: their speakers find the router waiting.
    pub(super) fn add(lan: &mut Lan, nodes: &[Host], cluster: &TestCluster) -> LabBgp {
        let router_host = lan.add_host("router", 1);
        let outside_netns = lan.add_behind(&router_host, "outside", "eth1");
        let prefix_len = OUTSIDE_NETWORK.split_once('/').expect("a CIDR").1;
        router_host.run(
            "ip",
            &[
                "address",
                "add",
                &format!("{OUTSIDE_ROUTER}/{prefix_len}"),
                "dev",
                "eth1",
            ],
        );
        router_host.run("ip", &["link", "set", "eth1", "up"]);
        // Forwarding, and each connection hashed onto one of the equal routes by its ports too
        // (the kernel's default hashes addresses only: one client would reach one node).
        sysctl(
            &router_host.netns,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv4.fib_multipath_hash_policy=1",
            ],
        );
        let outside = Host {
            name: "outside".into(),
            netns: outside_netns,
            ipv4: OUTSIDE_CLIENT,
            ..router_host.clone()
        };
        outside.run(
            "ip",
            &[
                "address",
                "add",
                &format!("{OUTSIDE_CLIENT}/{prefix_len}"),
                "dev",
                "eth0",
            ],
        );
        outside.run("ip", &["link", "set", "eth0", "up"]);
        outside.run(
            "ip",
            &[
                "route",
                "add",
                "default",
                "via",
                &OUTSIDE_ROUTER.to_string(),
            ],
        );
        for node in nodes {
            route_outside(node);
        }
        let router = Router::start(
            &router_host,
            &bird_config(ROUTER, ROUTER_ASN, &BgpLan::neighbors(nodes, "bfd on;")),
        );
        LabBgp {
            router,
            outside,
            pool: cluster.unique_name("bgp"),
            peer: cluster.unique_name("tor"),
            bfd_profile: cluster.unique_name("fast"),
        }
    }

    /// The BFDProfile, the router's BGPPeer, the pool and its BGPAdvertisement, as a user would
    /// write them, for the lab's nodes.
    pub(super) async fn configure(&self, cluster: &TestCluster) {
        let nodes = json!([{"matchLabels": {objects::NODE_LABEL: cluster.namespace()}}]);
        let objects = [
            json!({"kind": "BFDProfile", "metadata": {"name": self.bfd_profile},
                   "spec": {"receiveInterval": BFD_INTERVAL_MS, "transmitInterval": BFD_INTERVAL_MS,
                            "detectMultiplier": 3}}),
            json!({"kind": "BGPPeer", "metadata": {"name": self.peer},
                   "spec": {"peerAddress": ROUTER.to_string(), "peerASN": ROUTER_ASN,
                            "myASN": NODE_ASN, "bfdProfile": self.bfd_profile,
                            "nodeSelectors": nodes}}),
            json!({"kind": "IPAddressPool", "metadata": {"name": self.pool},
                   "spec": {"addresses": [POOL], "autoAssign": false}}),
            json!({"kind": "BGPAdvertisement", "metadata": {"name": self.pool},
                   "spec": {"ipAddressPools": [self.pool], "peers": [self.peer],
                            "nodeSelectors": nodes}}),
        ];
        for mut object in objects {
            object["apiVersion"] = json!("herald.dev/v1alpha1");
            apply_herald(cluster, object).await;
        }
    }
}

/// Routes replies to the outside network through the router. Dropped with the node's link, so a
/// node coming back needs it again.
pub(super) fn route_outside(node: &Host) {
    ip_n(
        &node.netns,
        &format!("route replace {OUTSIDE_NETWORK} via {ROUTER}"),
    );
}

/// What a node failure did to traffic through the router (see [`Lab::bgp_failover`]).
#[derive(Clone, Debug)]
pub struct BgpFailover {
    /// From the failure until the router had no route through the node.
    pub withdrawn: Duration,
    /// From the failure until the last request that failed was sent; none if none failed.
    pub failing: Option<Duration>,
    /// Requests sent from the failure until the route was withdrawn, and how many failed.
    pub sent: usize,
    pub failed: usize,
}

impl Lab {
    /// The lab's BGP side; panics on a lab without it.
    pub fn bgp(&self) -> &LabBgp {
        self.bgp
            .as_ref()
            .expect("a lab with BGP (LabConfig::with_bgp)")
    }

    /// A single-stack IPv4 `type: LoadBalancer` Service over the echo Pods, with an address of
    /// the BGP pool (`herald.dev/address-pool`); returns its address once allocated.
    pub async fn create_bgp_service(&self, name: &str, local: bool) -> IpAddr {
        let policy = if local { "Local" } else { "Cluster" };
        let annotation = format!("{}{}", annotations::PREFIXES[0], annotations::ADDRESS_POOL);
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {annotation: self.bgp().pool}},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy,
                     "selector": {"app": APP},
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]},
        }))
        .expect("a Service");
        let services = self.services();
        services
            .create(&PostParams::default(), &service)
            .await
            .unwrap_or_else(|e| panic!("creating Service {name}: {e}"));
        eventually(WAIT, &format!("an address for {name}"), || async {
            let status = services.get(name).await.ok()?.status?;
            status
                .load_balancer?
                .ingress?
                .first()?
                .ip
                .as_ref()?
                .parse()
                .ok()
        })
        .await
    }

    /// The nodes the router routes `ip` through, by index.
    pub fn router_nodes(&self, ip: IpAddr) -> Vec<usize> {
        let gateways = self.bgp().router.kernel_gateways(&ip.to_string());
        (0..self.nodes.len())
            .filter(|i| gateways.contains(&IpAddr::V4(self.nodes[*i].host.ipv4)))
            .collect()
    }

    /// Waits until the router routes `ip` through exactly `nodes`.
    pub async fn wait_router_nodes(&self, ip: IpAddr, nodes: &[usize]) {
        let names: Vec<&str> = nodes.iter().map(|i| self.nodes[*i].name.as_str()).collect();
        eventually(
            WAIT,
            &format!("the router to route {ip} through {names:?}"),
            || async { (self.router_nodes(ip) == nodes).then_some(()) },
        )
        .await;
    }

    /// One request from the outside client with the real `curl`: the response body, or why
    /// none came.
    pub fn outside_curl(&self, ip: IpAddr) -> Result<String, String> {
        super::curl_from(&self.bgp().outside, ip)
    }

    /// Every node's BGPSessionState for the router, once each says `wanted` of its status.
    pub async fn session_states(
        &self,
        what: &str,
        wanted: impl Fn(&BGPSessionStateStatus) -> bool,
    ) -> Vec<BGPSessionStateStatus> {
        let api = Api::<BGPSessionState>::all(self.cluster.client());
        let peer = &self.bgp().peer;
        eventually(WAIT, &format!("every node's session to {what}"), || async {
            let mut states = Vec::new();
            for node in &self.nodes {
                let state = api.get_opt(&format!("{}-{peer}", node.name)).await.ok()??;
                states.push(state.status.filter(&wanted)?);
            }
            Some(states)
        })
        .await
    }

    /// Fails node `i` under a steady stream of requests from the outside client to `ip` (one
    /// every 5 ms, each on a new connection, so the router spreads them over its routes), and
    /// returns what it did to them until the router withdrew the node's route.
    pub async fn bgp_failover(&mut self, ip: IpAddr, i: usize) -> BgpFailover {
        let outside = self.bgp().outside.clone();
        let probe = self.probe_from(
            &outside,
            ip,
            Duration::from_millis(5),
            Duration::from_millis(500),
        );
        probe.first_success_after(now_micros(), WAIT).await;
        let failed_at = self.fail_node(i);
        let withdrawn_at = eventually(
            WAIT,
            &format!(
                "the router to withdraw {}'s route to {ip}",
                self.nodes[i].name
            ),
            || async {
                let routed = self.router_nodes(ip);
                (!routed.is_empty() && !routed.contains(&i)).then(now_micros)
            },
        )
        .await;
        // Requests sent before the withdrawal may still be waiting for their answer or timeout.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let during: Vec<_> = probe
            .samples()
            .into_iter()
            .filter(|s| s.sent >= failed_at && s.sent <= withdrawn_at)
            .collect();
        let micros = |t: u128| Duration::from_micros((t - failed_at) as u64);
        BgpFailover {
            withdrawn: micros(withdrawn_at),
            failing: during
                .iter()
                .filter(|s| s.outcome.is_err())
                .map(|s| micros(s.sent))
                .max(),
            sent: during.len(),
            failed: during.iter().filter(|s| s.outcome.is_err()).count(),
        }
    }
}
