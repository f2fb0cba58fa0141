//! The real herald-speaker advertising over BGP: a [`SpeakerLan`] (test API server, Node
//! objects, a pool) whose nodes also run FRR ([`FrrNode`], the speaker started with `--bgp`
//! and pointed at that FRR's folder, as the chart's sidecar shares it), a BIRD 2 router on the
//! LAN peering with every node, and a client behind the router that reaches Services only
//! through the routes the router learnt, over IPv4 and IPv6. Layer 2 is off: the lab's
//! L2Advertisement is removed. Documentation addresses only (see [`crate::bgp_lan`]); the lab's
//! pool holds `203.0.113.100-150` and `2001:db8:ff::100-150` off the LAN for BGP.

use std::net::IpAddr;
use std::path::Path;

use herald_crds::{BGPSessionState, BGPSessionStateStatus};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use crate::bgp_lan::{NODE_ASN, ROUTER, ROUTER_ASN, add_router};
use crate::frr::FrrNode;
use crate::lan::{Family, Host};
use crate::objects::apply_herald;
use crate::router::Router;
use crate::speaker_lan::SpeakerLan;

pub struct BgpSpeakerLan {
    // Dropped in this order (after the speakers, which Drop kills): FRR and the router before
    // the namespaces they run in.
    pub frr: Vec<FrrNode>,
    pub router: Router,
    /// The client behind the router.
    pub outside: Host,
    pub lab: SpeakerLan,
}

impl BgpSpeakerLan {
    /// `node_count` nodes running FRR and `speaker` with BGP on, a router peering with each
    /// (`neighbor_options` in each of its neighbors: `bfd on;`). No BGP object exists yet.
    pub async fn new(
        name: &str,
        node_count: usize,
        speaker: &Path,
        neighbor_options: &str,
    ) -> BgpSpeakerLan {
        let mut lab = SpeakerLan::stopped(name, node_count, speaker, Family::DualStack).await;
        // BGP only: the nodes serve the Services' addresses on their loopback, which would
        // answer layer 2's probes as another host's.
        let l2 = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "herald.dev",
            "v1alpha1",
            "L2Advertisement",
        ));
        Api::<DynamicObject>::all_with(lab.cluster.client(), &l2)
            .delete(&lab.pool, &DeleteParams::default())
            .await
            .expect("deleting the lab's L2Advertisement");
        let hosts: Vec<Host> = lab.nodes.iter().map(|(_, host, _)| host.clone()).collect();
        let (router, outside) = add_router(&mut lab.lan, &hosts, "outside", neighbor_options);
        let frr: Vec<FrrNode> = hosts.iter().map(FrrNode::start).collect();
        for (i, node) in frr.iter().enumerate() {
            let dir = node.dir().display().to_string();
            lab.speaker_args[i] = [
                "--bgp",
                "--frr-config-dir",
                &dir,
                "--frr-socket-dir",
                &dir,
                "--bgp-poll-interval",
                "1s",
            ]
            .map(String::from)
            .to_vec();
            lab.start_speaker(i);
        }
        BgpSpeakerLan {
            frr,
            router,
            outside,
            lab,
        }
    }

    /// Node `i`'s object name.
    pub fn node(&self, i: usize) -> &str {
        &self.lab.nodes[i].0
    }

    /// Node `i`'s LAN address of the family of `ip`: its next hop for `ip` on the router.
    pub fn node_address(&self, i: usize, ip: &str) -> IpAddr {
        let host = &self.lab.nodes[i].1;
        match ip.parse().expect("an IP address") {
            IpAddr::V4(_) => IpAddr::V4(host.ipv4),
            IpAddr::V6(_) => IpAddr::V6(host.ipv6),
        }
    }

    /// The addresses of nodes `indexes` of the family of `ip`, sorted as the router lists its
    /// gateways.
    pub fn node_addresses(&self, ip: &str, indexes: &[usize]) -> Vec<IpAddr> {
        let mut addresses: Vec<IpAddr> =
            indexes.iter().map(|i| self.node_address(*i, ip)).collect();
        addresses.sort();
        addresses
    }

    /// Sets node `i`'s `--bgp-poll-interval` (`60s`) for its speaker's next start.
    pub fn set_poll_interval(&mut self, i: usize, interval: &str) {
        let args = &mut self.lab.speaker_args[i];
        let flag = args
            .iter()
            .position(|a| a == "--bgp-poll-interval")
            .expect("the lab's speakers get --bgp-poll-interval");
        args[flag + 1] = interval.to_owned();
    }

    /// Applies BGPPeer `name` for the router, selecting this lab's nodes, with `more` fields
    /// of its spec (they win); returns its name.
    pub async fn peer(&self, name: &str, more: Value) -> String {
        let name = self.lab.cluster.unique_name(name);
        let mut spec = json!({
            "peerAddress": ROUTER.to_string(), "peerASN": ROUTER_ASN, "myASN": NODE_ASN,
            "holdTime": "9s", "keepaliveTime": "3s", "connectTime": "1s",
            "nodeSelectors": [self.lab_nodes()],
        });
        for (key, value) in more.as_object().expect("fields").clone() {
            spec[key] = value;
        }
        apply_herald(
            &self.lab.cluster,
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
                   "metadata": {"name": name}, "spec": spec}),
        )
        .await;
        name
    }

    /// A BGPAdvertisement of the lab's pool from its nodes to every peer.
    pub async fn advertise(&self) {
        let pool = &self.lab.pool;
        apply_herald(
            &self.lab.cluster,
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
                   "metadata": {"name": pool},
                   "spec": {"ipAddressPools": [pool], "nodeSelectors": [self.lab_nodes()]}}),
        )
        .await;
    }

    /// A BFDProfile of `interval_ms` x 3; returns its name.
    pub async fn bfd_profile(&self, name: &str, interval_ms: u32) -> String {
        let name = self.lab.cluster.unique_name(name);
        apply_herald(
            &self.lab.cluster,
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BFDProfile",
                   "metadata": {"name": name},
                   "spec": {"receiveInterval": interval_ms, "transmitInterval": interval_ms,
                            "detectMultiplier": 3}}),
        )
        .await;
        name
    }

    fn lab_nodes(&self) -> Value {
        json!({"matchLabels": {crate::objects::NODE_LABEL: self.lab.cluster.namespace()}})
    }

    /// Node `i`'s `BGPSessionState` for `peer`, if written.
    pub async fn session_state(&self, i: usize, peer: &str) -> Option<BGPSessionStateStatus> {
        Api::<BGPSessionState>::all(self.lab.cluster.client())
            .get_opt(&format!("{}-{peer}", self.node(i)))
            .await
            .ok()
            .flatten()
            .and_then(|s| s.status)
    }

    /// The router's next hops for `prefix` (an address: its /32 or /128), sorted.
    pub fn gateways(&self, prefix: &str) -> Vec<IpAddr> {
        self.router.kernel_gateways(prefix)
    }
}

impl Drop for BgpSpeakerLan {
    fn drop(&mut self) {
        for i in 0..self.lab.nodes.len() {
            self.lab.kill_speaker(i);
        }
    }
}
