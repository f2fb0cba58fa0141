//! Which node answers for each address: every speaker computes the same answer from the same
//! inputs, so no coordination is needed beyond agreeing on who is alive.
//!
//! Rendezvous hashing: among the nodes eligible for an announcement group, the one with the
//! highest `hash(node, group key)` wins. A node's loss moves only the groups it won. A group
//! is a Service's addresses together with those of every Service sharing an address with it,
//! keyed by its lowest address, so that they all land on one node.
//!
//! A node is eligible for a Service when it is alive, not `NetworkUnavailable`, not labelled
//! `node.kubernetes.io/exclude-from-external-load-balancers`, selected by an L2Advertisement
//! that selects the address's pool, and, under `externalTrafficPolicy: Local`, has a ready
//! endpoint of the Service. With no ready endpoint anywhere nothing is announced.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::addresses::PoolAddresses;
use crate::allocation::ServiceKey;
use crate::selector::{LabelSelector, Labels, any_matches};

pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub network_unavailable: bool,
}

/// A pool as the election sees it: its labels (for pool selectors) and its addresses (to find
/// which pool an address belongs to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub labels: Labels,
    pub addresses: PoolAddresses,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertisement {
    pub name: String,
    pub pools: BTreeSet<String>,
    pub pool_selectors: Vec<LabelSelector>,
    pub node_selectors: Vec<LabelSelector>,
    /// Empty: every suitable interface.
    pub interfaces: BTreeSet<String>,
}

impl Advertisement {
    fn selects_pool(&self, pool: &Pool) -> bool {
        (self.pools.is_empty() && self.pool_selectors.is_empty())
            || self.pools.contains(&pool.name)
            || (!self.pool_selectors.is_empty()
                && self.pool_selectors.iter().any(|s| s.matches(&pool.labels)))
    }

    fn selects_node(&self, node: &Node) -> bool {
        any_matches(&self.node_selectors, &node.labels)
    }
}

/// A Service with addresses, as the election sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub ips: Vec<IpAddr>,
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// Nodes with a ready endpoint of the Service.
    pub ready_nodes: BTreeSet<String>,
    /// Whether it has a ready endpoint anywhere (endpoints need not be on a known node).
    pub has_ready_endpoint: bool,
}

/// Where the addresses of a Service are answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Announced {
        node: String,
        /// Empty: every suitable interface.
        interfaces: BTreeSet<String>,
    },
    NotAnnounced(Reason),
}

/// Why nobody answers for a Service's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    NotInAnyPool(IpAddr),
    NoAdvertisement { pool: String },
    NoReadyEndpoint,
    NoEligibleNode { local: bool },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotInAnyPool(ip) => write!(f, "{ip} is in no IPAddressPool the speakers know"),
            Reason::NoAdvertisement { pool } => write!(
                f,
                "no L2Advertisement selects pool {pool:?}: create one to announce its addresses"
            ),
            Reason::NoReadyEndpoint => f.write_str("the Service has no ready endpoint"),
            Reason::NoEligibleNode { local: true } => f.write_str(
                "externalTrafficPolicy Local and no node has a ready endpoint that may announce \
                 (alive, selected by an L2Advertisement, network available, not excluded)",
            ),
            Reason::NoEligibleNode { local: false } => f.write_str(
                "no node may announce: none is alive, selected by an L2Advertisement, with its \
                 network available and not excluded",
            ),
        }
    }
}

/// What every speaker knows.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub nodes: Vec<Node>,
    /// Speakers alive, by node name, as gossip shows them.
    pub alive: BTreeSet<String>,
    pub pools: Vec<Pool>,
    pub advertisements: Vec<Advertisement>,
    pub services: Vec<Service>,
}

/// Decides every Service's outcome.
pub fn elect(inputs: &Inputs) -> BTreeMap<ServiceKey, Outcome> {
    let mut outcomes = BTreeMap::new();
    for group in groups(&inputs.services) {
        let members: Vec<&Service> = group.iter().map(|i| &inputs.services[*i]).collect();
        match group_candidates(inputs, &members) {
            Ok((candidates, interfaces)) => {
                let key = members
                    .iter()
                    .flat_map(|s| s.ips.iter())
                    .min()
                    .expect("groups hold Services with addresses");
                let winner = candidates
                    .iter()
                    .max_by_key(|node| (score(node, *key), node.as_str()))
                    .expect("candidates are not empty");
                for member in &members {
                    outcomes.insert(
                        member.key.clone(),
                        Outcome::Announced {
                            node: winner.clone(),
                            interfaces: interfaces
                                .get(winner)
                                .cloned()
                                .flatten()
                                .unwrap_or_default(),
                        },
                    );
                }
            }
            Err(reason) => {
                for member in &members {
                    outcomes.insert(member.key.clone(), Outcome::NotAnnounced(reason.clone()));
                }
            }
        }
    }
    outcomes
}

/// Services with addresses, grouped when they share an address (by index into `services`).
fn groups(services: &[Service]) -> Vec<Vec<usize>> {
    let mut by_ip: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for (i, service) in services.iter().enumerate() {
        for ip in &service.ips {
            by_ip.entry(*ip).or_default().push(i);
        }
    }
    let mut group_of: Vec<Option<usize>> = vec![None; services.len()];
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for start in 0..services.len() {
        if group_of[start].is_some() || services[start].ips.is_empty() {
            continue;
        }
        let id = groups.len();
        let mut members = vec![start];
        group_of[start] = Some(id);
        let mut next = 0;
        while next < members.len() {
            let current = members[next];
            next += 1;
            for ip in &services[current].ips {
                for other in &by_ip[ip] {
                    if group_of[*other].is_none() {
                        group_of[*other] = Some(id);
                        members.push(*other);
                    }
                }
            }
        }
        groups.push(members);
    }
    groups
}

/// Eligible nodes, and the interfaces each may answer on (None: every suitable interface).
type Candidates = (BTreeSet<String>, BTreeMap<String, Option<BTreeSet<String>>>);

/// The nodes that may announce every member of a group, with the interfaces each may use.
fn group_candidates(inputs: &Inputs, members: &[&Service]) -> Result<Candidates, Reason> {
    let mut candidates: Option<BTreeSet<String>> = None;
    let mut interfaces: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    let mut local = false;
    for service in members {
        local |= service.local;
        if !service.has_ready_endpoint {
            return Err(Reason::NoReadyEndpoint);
        }
        for ip in &service.ips {
            // Overlapping pools (the controller flags them) may each have advertisements.
            let pools: Vec<&Pool> = inputs
                .pools
                .iter()
                .filter(|p| p.addresses.contains(*ip))
                .collect();
            let first_pool = pools.first().ok_or(Reason::NotInAnyPool(*ip))?;
            let advertisements: Vec<&Advertisement> = inputs
                .advertisements
                .iter()
                .filter(|a| pools.iter().any(|p| a.selects_pool(p)))
                .collect();
            if advertisements.is_empty() {
                return Err(Reason::NoAdvertisement {
                    pool: first_pool.name.clone(),
                });
            }
            let mut eligible = BTreeSet::new();
            for node in inputs.nodes.iter().filter(|n| node_may_announce(inputs, n)) {
                if service.local && !service.ready_nodes.contains(&node.name) {
                    continue;
                }
                let selecting: Vec<&&Advertisement> = advertisements
                    .iter()
                    .filter(|a| a.selects_node(node))
                    .collect();
                if selecting.is_empty() {
                    continue;
                }
                eligible.insert(node.name.clone());
                // Any selecting advertisement without interfaces means every interface.
                let named = selecting.iter().all(|a| !a.interfaces.is_empty());
                let entry = interfaces
                    .entry(node.name.clone())
                    .or_insert_with(|| Some(BTreeSet::new()));
                match (named, entry.as_mut()) {
                    (true, Some(set)) => {
                        set.extend(selecting.iter().flat_map(|a| a.interfaces.iter().cloned()))
                    }
                    _ => *entry = None,
                }
            }
            candidates = Some(match candidates {
                None => eligible,
                Some(c) => c.intersection(&eligible).cloned().collect(),
            });
        }
    }
    match candidates {
        Some(c) if !c.is_empty() => Ok((c, interfaces)),
        _ => Err(Reason::NoEligibleNode { local }),
    }
}

fn node_may_announce(inputs: &Inputs, node: &Node) -> bool {
    inputs.alive.contains(&node.name)
        && !node.network_unavailable
        && !node.labels.contains_key(EXCLUDE_LABEL)
}

/// The rendezvous score of `node` for the group keyed by `ip`: FNV-1a over "node#ip", then a
/// 64-bit finalizer (from splitmix64) so that close inputs spread. Stable across builds and
/// platforms, unlike std's hasher, so speakers of different versions agree.
fn score(node: &str, ip: IpAddr) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let key = format!("{node}#{ip}");
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            labels: Labels::new(),
            network_unavailable: false,
        }
    }

    fn inputs(nodes: &[&str], services: Vec<Service>) -> Inputs {
        Inputs {
            nodes: nodes.iter().map(|n| node(n)).collect(),
            alive: nodes.iter().map(|n| n.to_string()).collect(),
            pools: vec![Pool {
                name: "lan".into(),
                labels: Labels::new(),
                addresses: PoolAddresses::parse(&["192.0.2.0/24", "2001:db8::/64"], false).unwrap(),
            }],
            advertisements: vec![Advertisement::default()],
            services,
        }
    }

    fn service(name: &str, ips: &[&str]) -> Service {
        Service {
            key: ServiceKey::new("default", name),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            local: false,
            ready_nodes: BTreeSet::new(),
            has_ready_endpoint: true,
        }
    }

    fn winner(outcomes: &BTreeMap<ServiceKey, Outcome>, name: &str) -> Option<String> {
        match &outcomes[&ServiceKey::new("default", name)] {
            Outcome::Announced { node, .. } => Some(node.clone()),
            Outcome::NotAnnounced(_) => None,
        }
    }

    fn reason(outcomes: &BTreeMap<ServiceKey, Outcome>, name: &str) -> Reason {
        match &outcomes[&ServiceKey::new("default", name)] {
            Outcome::NotAnnounced(reason) => reason.clone(),
            other => panic!("{name} is announced: {other:?}"),
        }
    }

    fn thirty() -> Vec<Service> {
        (0..30)
            .map(|i| service(&format!("s{i}"), &[&format!("192.0.2.{}", i + 10)]))
            .collect()
    }

    #[test]
    fn thirty_addresses_spread_over_three_nodes_and_a_loss_moves_only_the_lost_ones() {
        let mut world = inputs(&["node-a", "node-b", "node-c"], thirty());
        let before = elect(&world);
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..30 {
            *per_node
                .entry(winner(&before, &format!("s{i}")).unwrap())
                .or_default() += 1;
        }
        assert_eq!(per_node.len(), 3, "{per_node:?}");
        assert!(per_node.values().all(|n| *n >= 5), "{per_node:?}");

        world.alive.remove("node-b");
        let after = elect(&world);
        for i in 0..30 {
            let name = format!("s{i}");
            let (was, is) = (
                winner(&before, &name).unwrap(),
                winner(&after, &name).unwrap(),
            );
            assert_ne!(is, "node-b");
            if was != "node-b" {
                assert_eq!(was, is, "{name} moved although its node stayed");
            }
        }
    }

    #[test]
    fn dual_stack_and_shared_addresses_land_on_one_node() {
        let services: Vec<Service> = (0..20)
            .flat_map(|i| {
                vec![
                    service(
                        &format!("dual{i}"),
                        &[&format!("192.0.2.{i}"), &format!("2001:db8::{i}")],
                    ),
                    service(&format!("sharer{i}"), &[&format!("2001:db8::{i}")]),
                ]
            })
            .collect();
        let outcomes = elect(&inputs(&["a", "b", "c", "d"], services));
        for i in 0..20 {
            assert_eq!(
                winner(&outcomes, &format!("dual{i}")),
                winner(&outcomes, &format!("sharer{i}"))
            );
        }
    }

    #[test]
    fn unavailable_excluded_unselected_and_dead_nodes_never_win() {
        let mut world = inputs(&["dead", "down", "excluded", "other-rack", "ok"], thirty());
        world.alive.remove("dead");
        world.nodes[1].network_unavailable = true;
        world.nodes[2]
            .labels
            .insert(EXCLUDE_LABEL.into(), String::new());
        world.nodes[3].labels.insert("rack".into(), "b".into());
        world.nodes[4].labels.insert("rack".into(), "a".into());
        world.advertisements[0].node_selectors = vec![LabelSelector {
            match_labels: Labels::from([("rack".to_string(), "a".to_string())]),
            ..LabelSelector::default()
        }];
        let outcomes = elect(&world);
        for i in 0..30 {
            assert_eq!(winner(&outcomes, &format!("s{i}")).as_deref(), Some("ok"));
        }
        world.alive.remove("ok");
        assert_eq!(
            reason(&elect(&world), "s0"),
            Reason::NoEligibleNode { local: false }
        );
    }

    #[test]
    fn local_traffic_policy_follows_the_ready_endpoints() {
        let mut web = service("web", &["192.0.2.7"]);
        web.local = true;
        web.ready_nodes = BTreeSet::from(["b".to_string()]);
        let mut world = inputs(&["a", "b", "c"], vec![web]);
        assert_eq!(winner(&elect(&world), "web").as_deref(), Some("b"));
        world.services[0].ready_nodes = BTreeSet::from(["c".to_string()]);
        assert_eq!(winner(&elect(&world), "web").as_deref(), Some("c"));
        world.services[0].ready_nodes.clear();
        let why = reason(&elect(&world), "web");
        assert_eq!(why, Reason::NoEligibleNode { local: true });
        assert!(
            why.to_string()
                .starts_with("externalTrafficPolicy Local and no node has a ready endpoint")
        );
        world.services[0].has_ready_endpoint = false;
        assert_eq!(reason(&elect(&world), "web"), Reason::NoReadyEndpoint);
    }

    #[test]
    fn only_pools_selected_by_an_advertisement_are_announced() {
        let mut world = inputs(
            &["a"],
            vec![
                service("web", &["192.0.2.7"]),
                service("far", &["203.0.113.1"]),
            ],
        );
        world.advertisements[0].pools = BTreeSet::from(["other".to_string()]);
        let outcomes = elect(&world);
        assert_eq!(
            reason(&outcomes, "web"),
            Reason::NoAdvertisement { pool: "lan".into() }
        );
        assert!(matches!(reason(&outcomes, "far"), Reason::NotInAnyPool(_)));
        world.advertisements[0].pools.clear();
        world.advertisements[0].pool_selectors = vec![LabelSelector {
            match_labels: Labels::from([("announce".to_string(), "yes".to_string())]),
            ..LabelSelector::default()
        }];
        world.pools[0]
            .labels
            .insert("announce".into(), "yes".into());
        assert_eq!(winner(&elect(&world), "web").as_deref(), Some("a"));
    }

    #[test]
    fn an_address_in_overlapping_pools_is_announced_by_any_pools_advertisement() {
        let mut world = inputs(&["a"], vec![service("web", &["192.0.2.7"])]);
        world.pools.insert(
            0,
            Pool {
                name: "other".into(),
                ..world.pools[0].clone()
            },
        );
        world.advertisements[0].pools = BTreeSet::from(["lan".to_string()]);
        assert_eq!(winner(&elect(&world), "web").as_deref(), Some("a"));
    }

    #[test]
    fn interfaces_are_the_union_of_the_selecting_advertisements_or_all() {
        let mut world = inputs(&["a"], vec![service("web", &["192.0.2.7"])]);
        world.advertisements = vec![
            Advertisement {
                name: "one".into(),
                interfaces: BTreeSet::from(["eth0".to_string()]),
                ..Advertisement::default()
            },
            Advertisement {
                name: "two".into(),
                interfaces: BTreeSet::from(["eth1".to_string()]),
                ..Advertisement::default()
            },
        ];
        let announced = &elect(&world)[&ServiceKey::new("default", "web")];
        let expected = BTreeSet::from(["eth0".to_string(), "eth1".to_string()]);
        assert_eq!(
            announced,
            &Outcome::Announced {
                node: "a".into(),
                interfaces: expected
            }
        );
        world.advertisements.push(Advertisement::default());
        let announced = &elect(&world)[&ServiceKey::new("default", "web")];
        assert_eq!(
            announced,
            &Outcome::Announced {
                node: "a".into(),
                interfaces: BTreeSet::new()
            }
        );
    }

    #[test]
    fn every_speaker_computes_the_same_winner_whatever_the_input_order() {
        let world = inputs(&["a", "b", "c"], thirty());
        let mut shuffled = world.clone();
        shuffled.nodes.reverse();
        shuffled.services.reverse();
        assert_eq!(elect(&world), elect(&shuffled));
    }
}
