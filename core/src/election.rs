//! Which node answers for each address: every speaker computes the same answer from the same
//! inputs, so no coordination is needed beyond agreeing on who is alive.
//!
//! Rendezvous hashing: among the nodes eligible for an announcement group, the one with the
//! highest `hash(node, group key)` wins. A node's loss moves only the groups it won. A group
//! is a Service's addresses together with those of every Service sharing an address with it,
//! keyed by its lowest address, so that they all land on one node.
//!
//! A node is eligible for a Service when it is alive, not `NetworkUnavailable`, not labelled
//! `node.kubernetes.io/exclude-from-external-load-balancers`, selected for each of the
//! Service's addresses by an L2Advertisement that selects the address's pool and whose
//! interfaces it has up (when its speaker says which it has), and, under
//! `externalTrafficPolicy: Local`, has a ready endpoint of the Service. With no ready endpoint
//! anywhere nothing is announced. [`node_verdicts`] gives each node's verdict on its own, the
//! very rules the election applies, so that tools can say why a node is not eligible.
//!
//! Inside a group each member is decided on its own: one that cannot be announced anywhere
//! (no ready endpoint, no pool, no advertisement, no eligible node) is not announced, with its
//! own reason, and does not hold back the others. The group goes to the node where most of
//! the remaining members are eligible (the highest score among those); when they have a node
//! in common that is simply the rendezvous winner among the common nodes.
//!
//! Each address is answered on the interfaces named by the advertisements that select its
//! pool and the winning node, whichever member of a group it belongs to: an address shared by
//! two Services is in the same pool(s) for both, so it gets the same interfaces from both.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::addresses::PoolAddresses;
use crate::allocation::ServiceKey;
use crate::selector::{LabelSelector, Labels, any_matches};
use crate::text::quote;

pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub network_unavailable: bool,
}

/// The interfaces a node's speaker can answer on now, as it tells its peers, so that a node
/// whose interface is down or missing is not elected to black-hole addresses on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links {
    /// Interfaces that are up and can answer, by name. An interface an advertisement names
    /// that is not here is taken as down or missing.
    pub up: BTreeSet<String>,
    /// Whether one of them may answer for an advertisement that names no interfaces (not
    /// container plumbing, not enslaved to a bridge or bond).
    pub suitable_up: bool,
}

impl Links {
    fn serve(&self, advertisement: &Advertisement) -> bool {
        if advertisement.interfaces.is_empty() {
            self.suitable_up
        } else {
            advertisement
                .interfaces
                .iter()
                .any(|name| self.up.contains(name))
        }
    }
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
        selects_pool(&self.pools, &self.pool_selectors, pool)
    }

    fn selects_node(&self, node: &Node) -> bool {
        any_matches(&self.node_selectors, &node.labels)
    }
}

/// Whether an advertisement (layer 2 or BGP) with these pool names and pool selectors selects
/// `pool`: with neither, it selects every pool.
pub fn selects_pool(names: &BTreeSet<String>, selectors: &[LabelSelector], pool: &Pool) -> bool {
    (names.is_empty() && selectors.is_empty())
        || names.contains(&pool.name)
        || selectors.iter().any(|s| s.matches(&pool.labels))
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
        /// For each of the Service's addresses, the interfaces to answer on (empty: every
        /// suitable interface).
        interfaces: BTreeMap<IpAddr, BTreeSet<String>>,
    },
    NotAnnounced(Reason),
}

/// Why nobody answers for a Service's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    NotInAnyPool(IpAddr),
    NoAdvertisement { pool: String },
    NoReadyEndpoint,
    NoEligibleNode(Ineligible),
}

/// Why no node may announce a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ineligible {
    /// No node is alive, selected by an advertisement of its pool, with its network available
    /// and not excluded, and (`local`) with a ready endpoint of the Service.
    NoNode { local: bool },
    /// Such nodes exist, but none has up an interface that an advertisement selecting it
    /// names: `named`, or with `any_suitable` any suitable interface.
    InterfacesDown {
        named: BTreeSet<String>,
        any_suitable: bool,
    },
    /// It may be announced on its own, but the Services it shares an address with (`with`,
    /// sorted) are announced from `node`, where it may not be: no node suits them all.
    SharingElsewhere { node: String, with: Vec<ServiceKey> },
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
            Reason::NoEligibleNode(why) => why.fmt(f),
        }
    }
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::NoNode { local: true } => f.write_str(
                "externalTrafficPolicy Local and no node has a ready endpoint that may announce \
                 (alive, selected by an L2Advertisement, network available, not excluded)",
            ),
            Ineligible::NoNode { local: false } => f.write_str(
                "no node may announce: none is alive, selected by an L2Advertisement, with its \
                 network available and not excluded",
            ),
            Ineligible::InterfacesDown {
                named,
                any_suitable,
            } => write!(
                f,
                "no node that may announce has {} up (the interfaces its L2Advertisements allow)",
                interfaces_wanted(named, *any_suitable)
            ),
            Ineligible::SharingElsewhere { node, with } => {
                let others = match with.as_slice() {
                    [] => "other Services".to_owned(),
                    [one] => one.to_string(),
                    [first, rest @ ..] => format!("{first} and {} more Services", rest.len()),
                };
                write!(
                    f,
                    "it shares an address with {others}, announced from node {node:?} where it \
                     may not be announced: no node may announce them all"
                )
            }
        }
    }
}

/// What every speaker knows.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub nodes: Vec<Node>,
    /// Speakers alive, by node name, as gossip shows them.
    pub alive: BTreeSet<String>,
    /// What each node's speaker says it can answer on, by node name. A node missing here has
    /// not said (an older speaker, or not yet): it is taken to serve every advertisement.
    pub links: BTreeMap<String, Links>,
    pub pools: Vec<Pool>,
    pub advertisements: Vec<Advertisement>,
    pub services: Vec<Service>,
}

/// Decides every Service's outcome.
pub fn elect(inputs: &Inputs) -> BTreeMap<ServiceKey, Outcome> {
    let mut outcomes = BTreeMap::new();
    for group in groups(&inputs.services) {
        let members: Vec<&Service> = group.iter().map(|i| &inputs.services[*i]).collect();
        // Keyed by all members, announced or not, so that one coming or going moves nothing.
        let key = members
            .iter()
            .flat_map(|s| s.ips.iter())
            .min()
            .expect("groups hold Services with addresses");
        // A member that may be announced nowhere (say, without a ready endpoint) has no say
        // over where the others go: wherever the address is answered, its own traffic is
        // dropped (Local) or refused (Cluster) until it has endpoints, so holding back its
        // sharers would only take their traffic down too.
        let mut placements = Vec::new();
        for member in members {
            match placement(inputs, member) {
                Ok(placement) => placements.push(placement),
                Err(reason) => {
                    outcomes.insert(member.key.clone(), Outcome::NotAnnounced(reason));
                }
            }
        }
        let mut members_per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for placement in &placements {
            for node in placement.nodes.keys() {
                *members_per_node.entry(node).or_default() += 1;
            }
        }
        // A Local member restricts the group to the nodes with its ready endpoints. When the
        // members have no node in common, the address goes where most of them may be
        // announced rather than nowhere: the others are not announced, as they would not be
        // served there (kube-proxy drops Local traffic on a node without a ready endpoint).
        let Some(winner) = members_per_node
            .iter()
            .max_by_key(|(node, members)| (**members, score(node, *key), **node))
            .map(|(node, _)| *node)
        else {
            continue;
        };
        let mut announced: Vec<ServiceKey> = placements
            .iter()
            .filter(|p| p.nodes.contains_key(winner))
            .map(|p| p.service.key.clone())
            .collect();
        announced.sort();
        for placement in &placements {
            let outcome = if let Some(node) = placement.nodes.get(winner) {
                Outcome::Announced {
                    node: winner.to_owned(),
                    interfaces: placement.interfaces_on(inputs, node),
                }
            } else {
                Outcome::NotAnnounced(Reason::NoEligibleNode(Ineligible::SharingElsewhere {
                    node: winner.to_owned(),
                    with: announced.clone(),
                }))
            };
            outcomes.insert(placement.service.key.clone(), outcome);
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

/// Where one Service may be announced, on its own.
struct Placement<'a> {
    service: &'a Service,
    /// For each of its addresses, the advertisements of the pools holding it.
    advertisements: Vec<(IpAddr, Vec<&'a Advertisement>)>,
    /// The nodes eligible for all its addresses, by name: never empty.
    nodes: BTreeMap<&'a str, &'a Node>,
}

impl Placement<'_> {
    /// The interfaces each address is answered on from `node`: those the advertisements that
    /// may announce it there name, or every suitable one if one of them names none.
    fn interfaces_on(&self, inputs: &Inputs, node: &Node) -> BTreeMap<IpAddr, BTreeSet<String>> {
        self.advertisements
            .iter()
            .map(|(ip, advertisements)| {
                let announcing: Vec<&&Advertisement> = advertisements
                    .iter()
                    .filter(|a| may_announce_for(inputs, a, node))
                    .collect();
                let interfaces = if announcing.iter().any(|a| a.interfaces.is_empty()) {
                    BTreeSet::new()
                } else {
                    announcing
                        .iter()
                        .flat_map(|a| a.interfaces.iter().cloned())
                        .collect()
                };
                (*ip, interfaces)
            })
            .collect()
    }
}

/// Why a node may or may not announce a Service's addresses: the first rule it fails, in the
/// order the module documentation gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Eligible,
    /// Its speaker is not alive (gossip, or whatever the caller knows of liveness).
    NotAlive,
    /// The Node's `NetworkUnavailable` condition is true.
    NetworkUnavailable,
    /// The Node carries [`EXCLUDE_LABEL`].
    Excluded,
    /// `externalTrafficPolicy: Local`, and the node has no ready endpoint of the Service.
    NoReadyEndpoint,
    /// No L2Advertisement of the pools holding `ip` selects the node (`nodeSelectors`).
    NotSelected {
        ip: IpAddr,
    },
    /// Selected, but its speaker has none of the interfaces up that those advertisements
    /// allow: `named`, or with `any_suitable` any suitable interface.
    InterfacesDown {
        named: BTreeSet<String>,
        any_suitable: bool,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Eligible => f.write_str("may announce"),
            Verdict::NotAlive => f.write_str("its speaker is not alive"),
            Verdict::NetworkUnavailable => f.write_str("its NetworkUnavailable condition is true"),
            Verdict::Excluded => write!(f, "it is labelled {EXCLUDE_LABEL}"),
            Verdict::NoReadyEndpoint => {
                f.write_str("it has no ready endpoint of the Service (externalTrafficPolicy Local)")
            }
            Verdict::NotSelected { ip } => write!(
                f,
                "no L2Advertisement of the pool holding {ip} selects it (nodeSelectors)"
            ),
            Verdict::InterfacesDown {
                named,
                any_suitable,
            } => write!(
                f,
                "its speaker has not {} up (the interfaces its L2Advertisements allow)",
                interfaces_wanted(named, *any_suitable)
            ),
        }
    }
}

/// The interfaces an advertisement wants up, in words: `"eth1" or a suitable interface`.
fn interfaces_wanted(named: &BTreeSet<String>, any_suitable: bool) -> String {
    let mut wanted: Vec<String> = named.iter().map(|name| quote(name)).collect();
    if any_suitable {
        wanted.push("a suitable interface".into());
    }
    wanted.join(" or ")
}

/// Whether each node may announce `service`, by node name; or why no node may (no ready
/// endpoint anywhere, an address in no pool, a pool without advertisement). The election
/// decides with the same verdicts, so an explanation built on them cannot drift from it.
pub fn node_verdicts(
    inputs: &Inputs,
    service: &Service,
) -> Result<BTreeMap<String, Verdict>, Reason> {
    let advertisements = advertisements_per_ip(inputs, service)?;
    Ok(inputs
        .nodes
        .iter()
        .map(|node| {
            (
                node.name.clone(),
                verdict(inputs, service, &advertisements, node),
            )
        })
        .collect())
}

/// For each of the Service's addresses, the advertisements of the pools holding it; or why
/// nobody may announce it.
fn advertisements_per_ip<'a>(
    inputs: &'a Inputs,
    service: &Service,
) -> Result<Vec<(IpAddr, Vec<&'a Advertisement>)>, Reason> {
    if !service.has_ready_endpoint {
        return Err(Reason::NoReadyEndpoint);
    }
    service
        .ips
        .iter()
        .map(|ip| Ok((*ip, advertisements_of(inputs, *ip)?)))
        .collect()
}

fn verdict(
    inputs: &Inputs,
    service: &Service,
    advertisements: &[(IpAddr, Vec<&Advertisement>)],
    node: &Node,
) -> Verdict {
    if let Some(verdict) = node_standing(&inputs.alive, node) {
        return verdict;
    }
    if service.local && !service.ready_nodes.contains(&node.name) {
        return Verdict::NoReadyEndpoint;
    }
    if let Some((ip, _)) = advertisements
        .iter()
        .find(|(_, list)| !list.iter().any(|a| a.selects_node(node)))
    {
        return Verdict::NotSelected { ip: *ip };
    }
    match advertisements
        .iter()
        .find(|(_, list)| !list.iter().any(|a| may_announce_for(inputs, a, node)))
    {
        Some((_, list)) => {
            let selecting: Vec<&&Advertisement> =
                list.iter().filter(|a| a.selects_node(node)).collect();
            Verdict::InterfacesDown {
                named: selecting
                    .iter()
                    .flat_map(|a| a.interfaces.iter().cloned())
                    .collect(),
                any_suitable: selecting.iter().any(|a| a.interfaces.is_empty()),
            }
        }
        None => Verdict::Eligible,
    }
}

/// Where `service` may be announced, or why nowhere.
fn placement<'a>(inputs: &'a Inputs, service: &'a Service) -> Result<Placement<'a>, Reason> {
    let advertisements = advertisements_per_ip(inputs, service)?;
    let verdicts: Vec<(&Node, Verdict)> = inputs
        .nodes
        .iter()
        .map(|node| (node, verdict(inputs, service, &advertisements, node)))
        .collect();
    // Nodes that would be eligible whatever their interfaces, to tell the reasons apart.
    let selected: Vec<&Node> = verdicts
        .iter()
        .filter(|(_, v)| matches!(v, Verdict::Eligible | Verdict::InterfacesDown { .. }))
        .map(|(node, _)| *node)
        .collect();
    if selected.is_empty() {
        return Err(Reason::NoEligibleNode(Ineligible::NoNode {
            local: service.local,
        }));
    }
    let nodes: BTreeMap<&str, &Node> = verdicts
        .iter()
        .filter(|(_, v)| *v == Verdict::Eligible)
        .map(|(node, _)| (node.name.as_str(), *node))
        .collect();
    if nodes.is_empty() {
        let wanted: Vec<&&Advertisement> = advertisements
            .iter()
            .flat_map(|(_, list)| list)
            .filter(|a| selected.iter().any(|node| a.selects_node(node)))
            .collect();
        return Err(Reason::NoEligibleNode(Ineligible::InterfacesDown {
            named: wanted
                .iter()
                .flat_map(|a| a.interfaces.iter().cloned())
                .collect(),
            any_suitable: wanted.iter().any(|a| a.interfaces.is_empty()),
        }));
    }
    Ok(Placement {
        service,
        advertisements,
        nodes,
    })
}

/// The advertisements of the pools holding `ip`: overlapping pools (the controller flags
/// them) may each have some.
fn advertisements_of(inputs: &Inputs, ip: IpAddr) -> Result<Vec<&Advertisement>, Reason> {
    let pools: Vec<&Pool> = inputs
        .pools
        .iter()
        .filter(|p| p.addresses.contains(ip))
        .collect();
    let Some(first_pool) = pools.iter().min_by_key(|p| &p.name) else {
        return Err(Reason::NotInAnyPool(ip));
    };
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
    Ok(advertisements)
}

/// Why `node` may announce nothing at all, in layer 2 or over BGP, if it may not: its speaker
/// is not alive ([`Verdict::NotAlive`]), its network is unavailable
/// ([`Verdict::NetworkUnavailable`]), or it is excluded from external load balancers
/// ([`Verdict::Excluded`]).
pub(crate) fn node_standing(alive: &BTreeSet<String>, node: &Node) -> Option<Verdict> {
    if !alive.contains(&node.name) {
        Some(Verdict::NotAlive)
    } else if node.network_unavailable {
        Some(Verdict::NetworkUnavailable)
    } else if node.labels.contains_key(EXCLUDE_LABEL) {
        Some(Verdict::Excluded)
    } else {
        None
    }
}

/// Whether `node` may answer for `advertisement`: it selects the node, and the node has one
/// of its interfaces up (or has not said which it has).
fn may_announce_for(inputs: &Inputs, advertisement: &Advertisement, node: &Node) -> bool {
    advertisement.selects_node(node)
        && inputs
            .links
            .get(&node.name)
            .is_none_or(|links| links.serve(advertisement))
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
            links: BTreeMap::new(),
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
            Reason::NoEligibleNode(Ineligible::NoNode { local: false })
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
        assert_eq!(
            why,
            Reason::NoEligibleNode(Ineligible::NoNode { local: true })
        );
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
                interfaces: BTreeMap::from([("192.0.2.7".parse().unwrap(), expected)])
            }
        );
        world.advertisements.push(Advertisement::default());
        let announced = &elect(&world)[&ServiceKey::new("default", "web")];
        assert_eq!(
            announced,
            &Outcome::Announced {
                node: "a".into(),
                interfaces: BTreeMap::from([("192.0.2.7".parse().unwrap(), BTreeSet::new())])
            }
        );
    }

    /// The interfaces `name`'s address `ip` is answered on (empty: every suitable one).
    fn interfaces_of(
        outcomes: &BTreeMap<ServiceKey, Outcome>,
        name: &str,
        ip: &str,
    ) -> BTreeSet<String> {
        match &outcomes[&ServiceKey::new("default", name)] {
            Outcome::Announced { interfaces, .. } => interfaces[&ip.parse().unwrap()].clone(),
            other => panic!("{name} is not announced: {other:?}"),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_service_without_endpoints_does_not_silence_an_address_it_shares() {
        let web = service("web", &["192.0.2.7"]);
        let mut dns = service("dns", &["192.0.2.7"]);
        dns.has_ready_endpoint = false;
        let outcomes = elect(&inputs(&["a", "b", "c"], vec![web, dns]));
        assert!(winner(&outcomes, "web").is_some());
        assert_eq!(reason(&outcomes, "dns"), Reason::NoReadyEndpoint);
    }

    #[test]
    fn a_sharer_without_pool_or_advertisement_does_not_silence_the_others() {
        let web = service("web", &["192.0.2.7"]);
        let stray = service("stray", &["192.0.2.7", "203.0.113.1"]);
        let mut world = inputs(&["a", "b"], vec![web, stray]);
        let outcomes = elect(&world);
        assert!(winner(&outcomes, "web").is_some());
        assert!(matches!(
            reason(&outcomes, "stray"),
            Reason::NotInAnyPool(_)
        ));

        world.pools.push(Pool {
            name: "far".into(),
            labels: Labels::new(),
            addresses: PoolAddresses::parse(&["203.0.113.0/24"], false).unwrap(),
        });
        world.advertisements[0].pools = names(&["lan"]);
        let outcomes = elect(&world);
        assert!(winner(&outcomes, "web").is_some());
        assert_eq!(
            reason(&outcomes, "stray"),
            Reason::NoAdvertisement { pool: "far".into() }
        );
    }

    #[test]
    fn local_sharers_with_endpoints_restrict_the_nodes_and_one_without_does_not_veto() {
        let local = |name: &str, ready: &[&str]| {
            let mut s = service(name, &["192.0.2.7"]);
            s.local = true;
            s.ready_nodes = names(ready);
            s.has_ready_endpoint = !ready.is_empty();
            s
        };
        let services = vec![
            local("web", &["b", "c"]),
            local("dns", &["c"]),
            local("idle", &[]),
        ];
        let mut world = inputs(&["a", "b", "c"], services);
        let outcomes = elect(&world);
        assert_eq!(winner(&outcomes, "web").as_deref(), Some("c"));
        assert_eq!(winner(&outcomes, "dns").as_deref(), Some("c"));
        assert_eq!(reason(&outcomes, "idle"), Reason::NoReadyEndpoint);

        // Ready endpoints only on a node that may not announce: it is not announced, and the
        // others are.
        world.services[1].ready_nodes = names(&["gone"]);
        let outcomes = elect(&world);
        assert!(matches!(
            winner(&outcomes, "web").as_deref(),
            Some("b") | Some("c")
        ));
        assert_eq!(
            reason(&outcomes, "dns"),
            Reason::NoEligibleNode(Ineligible::NoNode { local: true })
        );
    }

    #[test]
    fn a_sharer_losing_its_endpoints_moves_nothing() {
        let web = service("web", &["192.0.2.200"]);
        let dns = service("dns", &["192.0.2.200", "192.0.2.1"]);
        let mut world = inputs(&["a", "b", "c", "d", "e"], vec![web, dns]);
        let before = winner(&elect(&world), "web");
        for i in 0..8 {
            world.services[1].has_ready_endpoint = i % 2 == 1;
            assert_eq!(winner(&elect(&world), "web"), before);
        }
    }

    #[test]
    fn sharers_with_no_node_in_common_go_where_most_of_them_may_be_announced() {
        let local = |name: &str, ready: &[&str]| {
            let mut s = service(name, &["192.0.2.7"]);
            s.local = true;
            s.ready_nodes = names(ready);
            s
        };
        let services = vec![
            local("web", &["a"]),
            local("api", &["a"]),
            local("dns", &["b"]),
        ];
        let outcomes = elect(&inputs(&["a", "b", "c"], services));
        assert_eq!(winner(&outcomes, "web").as_deref(), Some("a"));
        assert_eq!(winner(&outcomes, "api").as_deref(), Some("a"));
        let why = reason(&outcomes, "dns");
        assert_eq!(
            why,
            Reason::NoEligibleNode(Ineligible::SharingElsewhere {
                node: "a".into(),
                with: vec![
                    ServiceKey::new("default", "api"),
                    ServiceKey::new("default", "web")
                ],
            })
        );
        assert_eq!(
            why.to_string(),
            "it shares an address with default/api and 1 more Services, announced from node \"a\" \
             where it may not be announced: no node may announce them all"
        );
    }

    /// A world of two pools, each with its advertisement naming its own interface.
    fn two_pools_two_interfaces(services: Vec<Service>) -> Inputs {
        let mut world = inputs(&["a"], services);
        world.pools = vec![
            Pool {
                name: "v4".into(),
                labels: Labels::new(),
                addresses: PoolAddresses::parse(&["192.0.2.0/24"], false).unwrap(),
            },
            Pool {
                name: "v6".into(),
                labels: Labels::new(),
                addresses: PoolAddresses::parse(&["2001:db8::/64"], false).unwrap(),
            },
        ];
        world.advertisements = vec![
            Advertisement {
                name: "v4".into(),
                pools: names(&["v4"]),
                interfaces: names(&["eth0"]),
                ..Advertisement::default()
            },
            Advertisement {
                name: "v6".into(),
                pools: names(&["v6"]),
                interfaces: names(&["eth1"]),
                ..Advertisement::default()
            },
        ];
        world
    }

    #[test]
    fn each_address_is_answered_only_on_its_own_advertisements_interfaces() {
        let dual = service("dual", &["192.0.2.7", "2001:db8::7"]);
        let outcomes = elect(&two_pools_two_interfaces(vec![dual]));
        assert_eq!(
            interfaces_of(&outcomes, "dual", "192.0.2.7"),
            names(&["eth0"])
        );
        assert_eq!(
            interfaces_of(&outcomes, "dual", "2001:db8::7"),
            names(&["eth1"])
        );
    }

    #[test]
    fn inside_a_sharing_group_too_each_address_keeps_its_own_interfaces() {
        let web = service("web", &["192.0.2.7"]);
        let dns = service("dns", &["192.0.2.7", "2001:db8::7"]);
        let outcomes = elect(&two_pools_two_interfaces(vec![web, dns]));
        assert_eq!(
            interfaces_of(&outcomes, "web", "192.0.2.7"),
            names(&["eth0"])
        );
        assert_eq!(
            interfaces_of(&outcomes, "dns", "192.0.2.7"),
            names(&["eth0"])
        );
        assert_eq!(
            interfaces_of(&outcomes, "dns", "2001:db8::7"),
            names(&["eth1"])
        );
    }

    /// An operator's expectation: an address is answered where the advertisements of its own
    /// pool allow. Held by two pools (overlapping, which the controller flags), it is in both,
    /// so both pools' advertisements apply, and the same to every Service sharing it.
    #[test]
    fn a_shared_address_in_two_pools_is_answered_on_the_interfaces_of_both() {
        let web = service("web", &["192.0.2.7"]);
        let dns = service("dns", &["192.0.2.7"]);
        let mut world = two_pools_two_interfaces(vec![web, dns]);
        world.pools[1].addresses = PoolAddresses::parse(&["192.0.2.0/28"], false).unwrap();
        let outcomes = elect(&world);
        for name in ["web", "dns"] {
            assert_eq!(
                interfaces_of(&outcomes, name, "192.0.2.7"),
                names(&["eth0", "eth1"])
            );
        }
    }

    fn links(up: &[&str], suitable_up: bool) -> Links {
        Links {
            up: names(up),
            suitable_up,
        }
    }

    #[test]
    fn a_node_without_the_advertisements_interface_up_is_no_candidate() {
        let mut world = inputs(&["a", "b", "c"], thirty());
        world.advertisements[0].interfaces = names(&["eth1"]);
        world.links = BTreeMap::from([
            ("a".to_string(), links(&["eth0"], true)),
            ("b".to_string(), links(&["eth0", "eth1"], true)),
        ]);
        // "c" has not said: it may still win.
        let outcomes = elect(&world);
        for i in 0..30 {
            assert_ne!(winner(&outcomes, &format!("s{i}")).as_deref(), Some("a"));
        }
        world.links.insert("c".into(), links(&["eth0"], true));
        world.links.insert("b".into(), links(&["eth0"], true));
        let why = reason(&elect(&world), "s0");
        assert_eq!(
            why,
            Reason::NoEligibleNode(Ineligible::InterfacesDown {
                named: names(&["eth1"]),
                any_suitable: false,
            })
        );
        assert_eq!(
            why.to_string(),
            "no node that may announce has \"eth1\" up (the interfaces its L2Advertisements allow)"
        );
    }

    #[test]
    fn an_advertisement_naming_no_interface_needs_a_suitable_one_up() {
        let mut world = inputs(&["a", "b"], vec![service("web", &["192.0.2.7"])]);
        world.links = BTreeMap::from([
            ("a".to_string(), links(&["veth1"], false)),
            ("b".to_string(), links(&["eth0"], true)),
        ]);
        assert_eq!(winner(&elect(&world), "web").as_deref(), Some("b"));
        world.links.insert("b".into(), links(&[], false));
        assert_eq!(
            reason(&elect(&world), "web"),
            Reason::NoEligibleNode(Ineligible::InterfacesDown {
                named: BTreeSet::new(),
                any_suitable: true,
            })
        );
    }

    #[test]
    fn the_winner_answers_only_on_the_advertisements_it_can_serve() {
        let mut world = inputs(&["a"], vec![service("web", &["192.0.2.7"])]);
        world.advertisements = vec![
            Advertisement {
                name: "one".into(),
                interfaces: names(&["eth0"]),
                ..Advertisement::default()
            },
            Advertisement {
                name: "all".into(),
                ..Advertisement::default()
            },
        ];
        // No suitable interface up: "all" is out, and "one" leaves eth0 alone.
        world.links = BTreeMap::from([("a".to_string(), links(&["eth0"], false))]);
        let outcomes = elect(&world);
        assert_eq!(
            interfaces_of(&outcomes, "web", "192.0.2.7"),
            names(&["eth0"])
        );
    }

    #[test]
    fn each_node_has_its_verdict_and_the_winner_is_among_the_eligible() {
        let mut web = service("web", &["192.0.2.7"]);
        web.local = true;
        web.ready_nodes = names(&["ok", "dead", "down", "excluded", "elsewhere", "nolink"]);
        let mut world = inputs(
            &[
                "ok",
                "dead",
                "down",
                "excluded",
                "no-endpoint",
                "elsewhere",
                "nolink",
            ],
            vec![web],
        );
        world.alive.remove("dead");
        for node in &mut world.nodes {
            match node.name.as_str() {
                "down" => node.network_unavailable = true,
                "excluded" => {
                    node.labels.insert(EXCLUDE_LABEL.into(), String::new());
                }
                "elsewhere" => {
                    node.labels.insert("zone".into(), "b".into());
                }
                _ => {}
            }
        }
        world.advertisements[0].node_selectors = vec![LabelSelector {
            match_expressions: vec![crate::selector::Requirement::NotIn(
                "zone".into(),
                names(&["b"]),
            )],
            ..LabelSelector::default()
        }];
        world
            .links
            .insert("nolink".into(), links(&["veth0"], false));
        let verdicts = node_verdicts(&world, &world.services[0]).unwrap();
        let expected = [
            ("dead", Verdict::NotAlive),
            ("down", Verdict::NetworkUnavailable),
            (
                "elsewhere",
                Verdict::NotSelected {
                    ip: "192.0.2.7".parse().unwrap(),
                },
            ),
            ("excluded", Verdict::Excluded),
            ("no-endpoint", Verdict::NoReadyEndpoint),
            (
                "nolink",
                Verdict::InterfacesDown {
                    named: BTreeSet::new(),
                    any_suitable: true,
                },
            ),
            ("ok", Verdict::Eligible),
        ];
        assert_eq!(
            verdicts,
            expected
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        );
        assert_eq!(winner(&elect(&world), "web").as_deref(), Some("ok"));
        assert_eq!(
            verdicts["elsewhere"].to_string(),
            "no L2Advertisement of the pool holding 192.0.2.7 selects it (nodeSelectors)"
        );

        world.services[0].has_ready_endpoint = false;
        assert_eq!(
            node_verdicts(&world, &world.services[0]),
            Err(Reason::NoReadyEndpoint)
        );
    }

    #[test]
    fn every_speaker_computes_the_same_winner_whatever_the_input_order() {
        let mut services = thirty();
        // Sharing groups whose members disagree on nodes, and a member not announced.
        for i in 0..10 {
            let ip = format!("192.0.2.{}", 100 + i);
            for (name, ready) in [
                ("web", ["a", "b"]),
                ("api", ["b", "c"]),
                ("dns", ["c", "a"]),
            ] {
                let mut sharer = service(&format!("{name}{i}"), &[&ip]);
                sharer.local = true;
                sharer.ready_nodes = names(&ready);
                sharer.has_ready_endpoint = name != "dns" || i % 3 != 0;
                services.push(sharer);
            }
        }
        let mut world = inputs(&["a", "b", "c"], services);
        world.advertisements = vec![
            Advertisement {
                name: "one".into(),
                interfaces: names(&["eth0"]),
                ..Advertisement::default()
            },
            Advertisement {
                name: "two".into(),
                interfaces: names(&["eth1"]),
                ..Advertisement::default()
            },
        ];
        world.links = BTreeMap::from([("c".to_string(), links(&["eth1"], true))]);
        let mut shuffled = world.clone();
        shuffled.nodes.reverse();
        shuffled.services.reverse();
        shuffled.advertisements.reverse();
        assert_eq!(elect(&world), elect(&shuffled));
    }
}
