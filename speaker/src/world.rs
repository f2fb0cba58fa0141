//! What a speaker knows of the cluster, fed by watch events: Nodes, pools, L2Advertisements,
//! Services with Herald's addresses, and EndpointSlices. Synchronous and free of API calls,
//! so the election's inputs can be built and tested without a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use herald_core::addresses::PoolAddresses;
use herald_core::allocation::ServiceKey;
use herald_core::election::{self, Advertisement, Inputs, Links};
use herald_crds::{IPAddressPool, L2Advertisement, label_selector};
use herald_runtime::watches::{Index, ObjectKey};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use std::convert::Infallible;

use herald_crds::conditions::{ALLOCATED, ANNOUNCED};
use herald_crds::service_status;
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What an EndpointSlice says: the nodes with a ready endpoint (sorted, each once), and
/// whether any endpoint is ready. Vectors rather than sets: a Service has a slice or a few,
/// each on a few nodes, and the speaker keeps one per Service of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Endpoints {
    ready_nodes: Vec<String>,
    any_ready: bool,
}

/// What the speaker keeps of a Service with Herald's addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFacts {
    pub uid: String,
    pub ips: Vec<IpAddr>,
    pub local: bool,
    /// The `herald.dev/Announced` condition it shows, if any.
    pub announced: Option<Condition>,
}

#[derive(Debug, Default)]
pub struct World {
    nodes: BTreeMap<String, election::Node>,
    /// Each Node's first InternalIP, where its speaker gossips.
    node_addresses: BTreeMap<String, IpAddr>,
    pools: BTreeMap<String, election::Pool>,
    pool_uids: BTreeMap<String, String>,
    advertisements: BTreeMap<String, Advertisement>,
    invalid_advertisements: BTreeMap<String, (String, String)>,
    services: BTreeMap<ServiceKey, ServiceFacts>,
    /// Per Service, per EndpointSlice name.
    endpoints: BTreeMap<ServiceKey, Vec<(String, Endpoints)>>,
}

impl World {
    /// Where `node`'s speaker gossips (its first InternalIP, IPv4 first).
    pub fn address(&self, node: &str) -> Option<IpAddr> {
        self.node_addresses.get(node).copied()
    }

    pub fn apply_node(&mut self, node: &Node) {
        let name = node.name_any();
        let status = node.status.as_ref();
        let network_unavailable = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True");
        let address = status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse::<IpAddr>().ok())
            .min_by_key(|ip| ip.is_ipv6());
        match address {
            Some(ip) => self.node_addresses.insert(name.clone(), ip),
            None => self.node_addresses.remove(&name),
        };
        self.nodes.insert(
            name.clone(),
            election::Node {
                name,
                labels: node.labels().clone().into_iter().collect(),
                network_unavailable,
            },
        );
    }

    /// Whether a Node of that name exists.
    pub fn is_node(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    pub fn delete_node(&mut self, name: &str) {
        self.nodes.remove(name);
        self.node_addresses.remove(name);
    }

    /// Invalid pools (the controller reports them) announce nothing.
    pub fn apply_pool(&mut self, pool: &IPAddressPool) {
        let name = pool.name_any();
        self.pool_uids
            .insert(name.clone(), pool.metadata.uid.clone().unwrap_or_default());
        match PoolAddresses::parse(&pool.spec.addresses, pool.spec.avoid_buggy_ips) {
            Ok(addresses) => self.pools.insert(
                name.clone(),
                election::Pool {
                    name,
                    labels: pool.labels().clone().into_iter().collect(),
                    addresses,
                },
            ),
            Err(_) => self.pools.remove(&name),
        };
    }

    pub fn delete_pool(&mut self, name: &str) {
        self.pools.remove(name);
        self.pool_uids.remove(name);
    }

    /// Reads an L2Advertisement. Bad input loses nothing: one that is invalid (a selector
    /// stored before the CRD refused it) keeps announcing as its last valid spec said, and the
    /// error says so; with no valid spec seen, it announces nothing.
    pub fn apply_advertisement(&mut self, advertisement: &L2Advertisement) -> Result<(), String> {
        let name = advertisement.name_any();
        let spec = &advertisement.spec;
        let selectors =
            |list: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector],
             field: &str| {
                list.iter()
                    .enumerate()
                    .map(|(i, s)| label_selector(s).map_err(|e| format!("{field}[{i}]: {e}")))
                    .collect::<Result<Vec<_>, _>>()
            };
        let read = selectors(
            &spec.ip_address_pool_selectors,
            "spec.ipAddressPoolSelectors",
        )
        .and_then(|pool_selectors| {
            Ok(Advertisement {
                name: name.clone(),
                pools: spec.ip_address_pools.iter().cloned().collect(),
                pool_selectors,
                node_selectors: selectors(&spec.node_selectors, "spec.nodeSelectors")?,
                interfaces: spec.interfaces.iter().cloned().collect(),
            })
        });
        match read {
            Ok(advertisement) => {
                self.advertisements.insert(name.clone(), advertisement);
                self.invalid_advertisements.remove(&name);
                Ok(())
            }
            Err(problem) => {
                let effect = if self.advertisements.contains_key(&name) {
                    "it keeps announcing as its last valid spec said until it is fixed"
                } else {
                    "it announces nothing until it is fixed"
                };
                let problem = format!("{problem}; {effect}");
                let uid = advertisement.metadata.uid.clone().unwrap_or_default();
                self.invalid_advertisements
                    .insert(name.clone(), (uid, problem.clone()));
                Err(format!("L2Advertisement {name:?}: {problem}"))
            }
        }
    }

    pub fn delete_advertisement(&mut self, name: &str) {
        self.advertisements.remove(name);
        self.invalid_advertisements.remove(name);
    }

    /// L2Advertisements whose spec is invalid: name → (uid, what is wrong and its effect).
    pub fn invalid_advertisements(&self) -> &BTreeMap<String, (String, String)> {
        &self.invalid_advertisements
    }

    /// Keeps a Service while it shows addresses that Herald allocated.
    pub fn apply_service(&mut self, service: &Service) {
        let key = key(service);
        let allocated =
            service_status::condition(service, ALLOCATED).is_some_and(|c| c.status == "True");
        let ips = service_status::addresses(service);
        let is_load_balancer =
            service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        if allocated && is_load_balancer && !ips.is_empty() {
            let local = service
                .spec
                .as_ref()
                .and_then(|s| s.external_traffic_policy.as_deref())
                == Some("Local");
            let announced = service_status::condition(service, ANNOUNCED).cloned();
            let facts = ServiceFacts {
                uid: service.metadata.uid.clone().unwrap_or_default(),
                ips,
                local,
                announced,
            };
            self.services.insert(key, facts);
        } else {
            self.services.remove(&key);
        }
    }

    pub fn delete_service(&mut self, key: &ServiceKey) {
        self.services.remove(key);
    }

    pub fn apply_slice(&mut self, slice: &EndpointSlice) {
        let Some(key) = slice_service(slice) else {
            return;
        };
        let mut endpoints = Endpoints::default();
        for endpoint in &slice.endpoints {
            // The API says a missing `ready` means ready.
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if ready {
                endpoints.any_ready = true;
                if let Some(node) = &endpoint.node_name {
                    endpoints.ready_nodes.push(node.clone());
                }
            }
        }
        endpoints.ready_nodes.sort();
        endpoints.ready_nodes.dedup();
        endpoints.ready_nodes.shrink_to_fit();
        let name = slice.name_any();
        let slices = self.endpoints.entry(key).or_default();
        match slices.iter_mut().find(|(n, _)| *n == name) {
            Some((_, known)) => *known = endpoints,
            None => slices.push((name, endpoints)),
        }
    }

    pub fn delete_slice(&mut self, slice: &EndpointSlice) {
        let Some(key) = slice_service(slice) else {
            return;
        };
        if let Some(slices) = self.endpoints.get_mut(&key) {
            let name = slice.name_any();
            slices.retain(|(n, _)| *n != name);
            if slices.is_empty() {
                self.endpoints.remove(&key);
            }
        }
    }

    /// Every interface an L2Advertisement names: the speakers tell each other which of these
    /// they have up.
    pub fn advertised_interfaces(&self) -> BTreeSet<String> {
        self.advertisements
            .values()
            .flat_map(|a| a.interfaces.iter().cloned())
            .collect()
    }

    /// The election's inputs, with `alive` the speakers gossip shows alive and `links` what
    /// the live ones said they can answer on.
    pub fn inputs(&self, alive: &BTreeSet<String>, links: &BTreeMap<String, Links>) -> Inputs {
        let services = self
            .services
            .iter()
            .map(|(key, facts)| {
                let mut ready_nodes = BTreeSet::new();
                let mut has_ready_endpoint = false;
                for (_, endpoints) in self.endpoints.get(key).into_iter().flatten() {
                    // Only Local Services look at where the endpoints are.
                    if facts.local {
                        ready_nodes.extend(endpoints.ready_nodes.iter().cloned());
                    }
                    has_ready_endpoint |= endpoints.any_ready;
                }
                election::Service {
                    key: key.clone(),
                    ips: facts.ips.clone(),
                    local: facts.local,
                    ready_nodes,
                    has_ready_endpoint,
                }
            })
            .collect();
        Inputs {
            nodes: self.nodes.values().cloned().collect(),
            alive: alive.clone(),
            links: links
                .iter()
                .filter(|(node, _)| alive.contains(*node))
                .map(|(node, links)| (node.clone(), links.clone()))
                .collect(),
            pools: self.pools.values().cloned().collect(),
            advertisements: self.advertisements.values().cloned().collect(),
            services,
        }
    }

    /// Where the other speakers gossip, by node name: each Node's InternalIP and the gossip port.
    pub fn peers(&self, me: &str, port: u16) -> BTreeMap<String, SocketAddr> {
        self.node_addresses
            .iter()
            .filter(|(name, _)| name.as_str() != me)
            .map(|(name, ip)| (name.clone(), SocketAddr::new(*ip, port)))
            .collect()
    }

    /// The pools (name, uid) that hold `ip`.
    pub fn pools_holding(&self, ip: IpAddr) -> Vec<(String, String)> {
        self.pools
            .values()
            .filter(|p| p.addresses.contains(ip))
            .map(|p| {
                (
                    p.name.clone(),
                    self.pool_uids.get(&p.name).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceFacts> {
        self.services.get(key)
    }
}

fn key(service: &Service) -> ServiceKey {
    ServiceKey::new(service.namespace().unwrap_or_default(), service.name_any())
}

fn slice_service(slice: &EndpointSlice) -> Option<ServiceKey> {
    let service = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some(ServiceKey::new(
        slice.namespace().unwrap_or_default(),
        service.clone(),
    ))
}

// The watches feed the world through these. The speaker reads the world whole on every pass,
// so a change touches nothing in particular.

impl Index<Node> for World {
    type Touched = Infallible;

    fn apply(&mut self, node: &Node) -> Vec<Infallible> {
        self.apply_node(node);
        Vec::new()
    }

    fn delete(&mut self, node: &Node) -> Vec<Infallible> {
        self.delete_node(&node.name_any());
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.nodes
            .retain(|name, _| present.contains(&cluster_key(name)));
        self.node_addresses
            .retain(|name, _| present.contains(&cluster_key(name)));
        Vec::new()
    }
}

impl Index<IPAddressPool> for World {
    type Touched = Infallible;

    fn apply(&mut self, pool: &IPAddressPool) -> Vec<Infallible> {
        self.apply_pool(pool);
        Vec::new()
    }

    fn delete(&mut self, pool: &IPAddressPool) -> Vec<Infallible> {
        self.delete_pool(&pool.name_any());
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.pools
            .retain(|name, _| present.contains(&cluster_key(name)));
        self.pool_uids
            .retain(|name, _| present.contains(&cluster_key(name)));
        Vec::new()
    }
}

impl Index<L2Advertisement> for World {
    type Touched = Infallible;

    fn apply(&mut self, advertisement: &L2Advertisement) -> Vec<Infallible> {
        if let Err(problem) = self.apply_advertisement(advertisement) {
            tracing::warn!(%problem, "L2Advertisement is invalid");
        }
        Vec::new()
    }

    fn delete(&mut self, advertisement: &L2Advertisement) -> Vec<Infallible> {
        self.delete_advertisement(&advertisement.name_any());
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.advertisements
            .retain(|name, _| present.contains(&cluster_key(name)));
        self.invalid_advertisements
            .retain(|name, _| present.contains(&cluster_key(name)));
        Vec::new()
    }
}

impl Index<Service> for World {
    type Touched = Infallible;

    fn apply(&mut self, service: &Service) -> Vec<Infallible> {
        self.apply_service(service);
        Vec::new()
    }

    fn delete(&mut self, service: &Service) -> Vec<Infallible> {
        self.delete_service(&key(service));
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        self.services
            .retain(|key, _| present.contains(&namespaced_key(&key.namespace, &key.name)));
        Vec::new()
    }
}

impl Index<EndpointSlice> for World {
    type Touched = Infallible;

    fn apply(&mut self, slice: &EndpointSlice) -> Vec<Infallible> {
        self.apply_slice(slice);
        Vec::new()
    }

    fn delete(&mut self, slice: &EndpointSlice) -> Vec<Infallible> {
        self.delete_slice(slice);
        Vec::new()
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<Infallible> {
        for (key, slices) in self.endpoints.iter_mut() {
            slices.retain(|(name, _)| present.contains(&namespaced_key(&key.namespace, name)));
        }
        self.endpoints.retain(|_, slices| !slices.is_empty());
        Vec::new()
    }
}

fn cluster_key(name: &str) -> ObjectKey {
    namespaced_key("", name)
}

fn namespaced_key(namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::election::{Outcome, elect};
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    fn node(name: &str, ip: &str) -> Node {
        from(json!({"metadata": {"name": name, "labels": {"zone": "a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}))
    }

    fn allocated_service(name: &str, ip: &str, policy: &str) -> Service {
        from(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy},
            "status": {
                "loadBalancer": {"ingress": [{"ip": ip}]},
                "conditions": [{"type": ALLOCATED, "status": "True", "reason": "Allocated",
                    "message": "", "lastTransitionTime": "2026-11-21T00:00:00Z"}],
            },
        }))
    }

    fn slice(name: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
        from(json!({"metadata": {"name": name, "namespace": "shop",
            "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4", "endpoints": endpoints}))
    }

    fn world() -> World {
        let mut world = World::default();
        for (n, ip) in [("node-a", "192.0.2.1"), ("node-b", "192.0.2.2")] {
            world.apply_node(&node(n, ip));
        }
        world.apply_pool(&from(
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": "lan"}, "spec": {"addresses": ["192.0.2.100/30"]}}),
        ));
        world
            .apply_advertisement(&from(
                json!({"apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
                "metadata": {"name": "lan"}, "spec": {}}),
            ))
            .unwrap();
        world
    }

    fn alive() -> BTreeSet<String> {
        BTreeSet::from(["node-a".to_string(), "node-b".to_string()])
    }

    fn outcome(world: &World) -> Outcome {
        elect(&world.inputs(&alive(), &BTreeMap::new()))[&ServiceKey::new("shop", "web")].clone()
    }

    #[test]
    fn local_services_follow_the_ready_endpoints_of_their_slices() {
        let mut world = world();
        world.apply_service(&allocated_service("web", "192.0.2.100", "Local"));
        world.apply_slice(&slice("web-1", "web", json!([
            {"addresses": ["198.51.100.9"], "nodeName": "node-b", "conditions": {"ready": true}},
            {"addresses": ["198.51.100.8"], "nodeName": "node-a", "conditions": {"ready": false}},
        ])));
        assert!(matches!(outcome(&world), Outcome::Announced { node, .. } if node == "node-b"));
        world.apply_slice(&slice(
            "web-1",
            "web",
            json!([
                {"addresses": ["198.51.100.8"], "nodeName": "node-a"},
            ]),
        ));
        assert!(matches!(outcome(&world), Outcome::Announced { node, .. } if node == "node-a"));
        world.delete_slice(&slice("web-1", "web", json!([])));
        assert!(matches!(
            outcome(&world),
            Outcome::NotAnnounced(herald_core::election::Reason::NoReadyEndpoint)
        ));
    }

    #[test]
    fn only_addresses_herald_allocated_are_announced() {
        let mut world = world();
        let mut foreign = allocated_service("web", "192.0.2.100", "Cluster");
        foreign.status.as_mut().unwrap().conditions = None;
        world.apply_service(&foreign);
        assert!(world.inputs(&alive(), &BTreeMap::new()).services.is_empty());
        world.apply_service(&allocated_service("web", "192.0.2.100", "Cluster"));
        assert_eq!(world.inputs(&alive(), &BTreeMap::new()).services.len(), 1);
    }

    #[test]
    fn peers_are_the_other_nodes_internal_addresses() {
        let world = world();
        assert_eq!(
            world.peers("node-a", 7946),
            BTreeMap::from([("node-b".to_owned(), "192.0.2.2:7946".parse().unwrap())])
        );
    }

    /// The speaker gossips on its Node's InternalIP: the IPv6 one on an IPv6-only Node, the
    /// IPv4 one on a dual-stack Node whichever it lists first.
    #[test]
    fn a_node_gossips_on_its_ipv4_internal_ip_if_it_has_one_else_its_ipv6_one() {
        let node_with = |name: &str, addresses: &[&str]| -> Node {
            let addresses: Vec<_> = addresses
                .iter()
                .map(|ip| json!({"type": "InternalIP", "address": ip}))
                .collect();
            from(json!({"metadata": {"name": name}, "status": {"addresses": addresses}}))
        };
        let mut world = World::default();
        world.apply_node(&node_with("v6", &["2001:db8::11"]));
        world.apply_node(&node_with("dual", &["2001:db8::12", "192.0.2.12"]));
        assert_eq!(world.address("v6"), Some("2001:db8::11".parse().unwrap()));
        assert_eq!(world.address("dual"), Some("192.0.2.12".parse().unwrap()));
    }

    #[test]
    fn a_malformed_selector_keeps_what_the_advertisement_announced_and_says_why() {
        let mut world = world();
        let bad: L2Advertisement = from(
            json!({"apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
            "metadata": {"name": "lan"}, "spec": {"nodeSelectors": [{"matchExpressions": [
                {"key": "zone", "operator": "Near"}]}]}}),
        );
        let before = world.inputs(&alive(), &BTreeMap::new()).advertisements;
        let problem = world.apply_advertisement(&bad).unwrap_err();
        assert!(
            problem.contains("spec.nodeSelectors[0]")
                && problem.contains("\"Near\"")
                && problem
                    .ends_with("it keeps announcing as its last valid spec said until it is fixed"),
            "{problem}"
        );
        assert_eq!(
            world.inputs(&alive(), &BTreeMap::new()).advertisements,
            before
        );
        assert_eq!(world.invalid_advertisements().len(), 1);
        // Fixed: valid again.
        world
            .apply_advertisement(&from(
                json!({"apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
                "metadata": {"name": "lan"}, "spec": {}}),
            ))
            .unwrap();
        assert!(world.invalid_advertisements().is_empty());
        // One never valid announces nothing.
        let mut fresh = World::default();
        let problem = fresh.apply_advertisement(&bad).unwrap_err();
        assert!(
            problem.ends_with("it announces nothing until it is fixed"),
            "{problem}"
        );
        assert!(
            fresh
                .inputs(&alive(), &BTreeMap::new())
                .advertisements
                .is_empty()
        );
    }
}
