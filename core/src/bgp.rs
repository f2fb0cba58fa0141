//! Who advertises what over BGP: from the cluster's nodes, BGP peers, BGP advertisements and
//! Services, what each node tells each of its peers, and what the Service's
//! `herald.dev/Announced` condition says about it.
//!
//! Unlike layer 2, every node with a right to an address advertises it and the router spreads
//! traffic over them (ECMP). A node advertises a Service's address when:
//! - a BGPAdvertisement selects a pool holding the address and selects the node (its node
//!   selectors), and the node may announce at all (alive, network available, not excluded:
//!   the layer-2 election's own standing of a node);
//! - under `externalTrafficPolicy: Local`, the node has a ready endpoint of the Service; under
//!   `Cluster`, some ready endpoint exists anywhere;
//! - to each of the node's peers (peers whose node selectors select it) of the address's family
//!   that the advertisement names (or every peer, when it names none).
//!
//! The prefix advertised is the address rolled up to the advertisement's aggregation length
//! (`/32` and `/128` by default). When several advertisements give one prefix to one peer,
//! their attributes merge as in MetalLB: communities add up, and two different local
//! preferences are a [`Problem`] (the highest is used).
//!
//! FRR runs one BGP instance per node, so every peer of a node must agree on `myASN` and on
//! the router ID: the peer that sorts first by name decides, and a peer that disagrees is left
//! out of that node with a [`Problem`]. Two peers of one node with one address are one neighbor
//! to FRR: the first by name is kept (peers with one address that select different nodes, such
//! as racks behind an anycast gateway, are each used).
//!
//! [`node_verdicts`] says, for one Service, why each node does or does not advertise it, with
//! [`decide`]'s own filters and from its [`Decision`], so that an explanation cannot drift
//! from what the speakers do; [`problems_of`] picks the [`Problem`]s that concern it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::IpNet;

use crate::addresses::IpFamily;
use crate::allocation::ServiceKey;
use crate::election::{self, Node, Pool, Service};
use crate::selector::{LabelSelector, any_matches};
use crate::text::quote;

/// FRR's (and RFC 4271's) BGP port, used when a peer names none.
pub const DEFAULT_PORT: u16 = 179;

/// How many names a condition lists before it says how many more there are.
const LISTED_NAMES: usize = 10;

/// A BGP community: standard (RFC 1997, `65535:65282`) or large (RFC 8092, `large:1:2:3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Community {
    Standard(u16, u16),
    Large(u32, u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "community {value:?} is neither standard (two numbers up to 65535: 65535:65282) nor large \
     (\"large:\" and three numbers up to 4294967295: large:64512:1:2)"
)]
pub struct CommunityError {
    pub value: String,
}

impl FromStr for Community {
    type Err = CommunityError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = || CommunityError {
            value: value.to_owned(),
        };
        // Digits only: Rust's integer parser would also take a leading `+`.
        fn number<T: FromStr>(part: &str) -> Option<T> {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        }
        if let Some(large) = value.strip_prefix("large:") {
            let parts: Vec<u32> = large
                .split(':')
                .map(number)
                .collect::<Option<_>>()
                .ok_or_else(error)?;
            match parts.as_slice() {
                [a, b, c] => Ok(Community::Large(*a, *b, *c)),
                _ => Err(error()),
            }
        } else {
            let parts: Vec<u16> = value
                .split(':')
                .map(number)
                .collect::<Option<_>>()
                .ok_or_else(error)?;
            match parts.as_slice() {
                [a, b] => Ok(Community::Standard(*a, *b)),
                _ => Err(error()),
            }
        }
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Community::Standard(a, b) => write!(f, "{a}:{b}"),
            Community::Large(a, b, c) => write!(f, "large:{a}:{b}:{c}"),
        }
    }
}

/// Where a peer's TCP MD5 password is: a key of a Secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretKeyRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

/// A BGP router that nodes peer with (a `BGPPeer`), with durations in whole seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub address: IpAddr,
    pub asn: u32,
    pub my_asn: u32,
    /// None: [`DEFAULT_PORT`].
    pub port: Option<u16>,
    pub source_address: Option<IpAddr>,
    pub router_id: Option<Ipv4Addr>,
    pub hold_time: Option<u32>,
    pub keepalive_time: Option<u32>,
    pub connect_time: Option<u32>,
    pub ebgp_multihop: bool,
    pub password: Option<SecretKeyRef>,
    pub bfd_profile: Option<String>,
    pub graceful_restart: bool,
    /// Which nodes peer with it; empty: every node.
    pub node_selectors: Vec<LabelSelector>,
}

impl Peer {
    /// A peer with FRR's defaults for everything but what identifies it.
    pub fn new(name: impl Into<String>, address: IpAddr, asn: u32, my_asn: u32) -> Self {
        Peer {
            name: name.into(),
            address,
            asn,
            my_asn,
            port: None,
            source_address: None,
            router_id: None,
            hold_time: None,
            keepalive_time: None,
            connect_time: None,
            ebgp_multihop: false,
            password: None,
            bfd_profile: None,
            graceful_restart: false,
            node_selectors: Vec::new(),
        }
    }

    /// (keepalive, hold time) in seconds, or None for FRR's defaults. Given one, the other
    /// follows RFC 4271's ratio of three, as in MetalLB.
    pub fn timers(&self) -> Option<(u32, u32)> {
        match (self.keepalive_time, self.hold_time) {
            (None, None) => None,
            (Some(keepalive), Some(hold)) => Some((keepalive, hold)),
            (None, Some(hold)) => Some((hold / 3, hold)),
            (Some(keepalive), None) => Some((keepalive, keepalive.saturating_mul(3))),
        }
    }

    fn family(&self) -> IpFamily {
        IpFamily::of(self.address)
    }
}

/// A BFD profile (a `BFDProfile`): intervals in milliseconds; None leaves FRR's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BfdProfile {
    pub name: String,
    pub receive_interval: Option<u32>,
    pub transmit_interval: Option<u32>,
    pub detect_multiplier: Option<u32>,
    pub echo_interval: Option<u32>,
    pub echo_mode: bool,
    pub passive_mode: bool,
    pub minimum_ttl: Option<u32>,
}

/// What to advertise to whom (a `BGPAdvertisement`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advertisement {
    pub name: String,
    /// Pools by name; with no names and no selectors, every pool.
    pub pools: BTreeSet<String>,
    pub pool_selectors: Vec<LabelSelector>,
    /// Peers by name; empty: every peer.
    pub peers: BTreeSet<String>,
    /// Nodes that advertise; empty: every node.
    pub node_selectors: Vec<LabelSelector>,
    pub aggregation_length: u8,
    pub aggregation_length_v6: u8,
    pub local_pref: Option<u32>,
    pub communities: BTreeSet<Community>,
}

impl Default for Advertisement {
    fn default() -> Self {
        Advertisement {
            name: String::new(),
            pools: BTreeSet::new(),
            pool_selectors: Vec::new(),
            peers: BTreeSet::new(),
            node_selectors: Vec::new(),
            aggregation_length: 32,
            aggregation_length_v6: 128,
            local_pref: None,
            communities: BTreeSet::new(),
        }
    }
}

impl Advertisement {
    fn selects_pool(&self, pool: &Pool) -> bool {
        election::selects_pool(&self.pools, &self.pool_selectors, pool)
    }

    fn selects_peer(&self, peer: &Peer) -> bool {
        self.peers.is_empty() || self.peers.contains(&peer.name)
    }

    /// `ip` rolled up to this advertisement's aggregation length for its family.
    fn prefix(&self, ip: IpAddr) -> IpNet {
        let length = match ip {
            IpAddr::V4(_) => self.aggregation_length.min(32),
            IpAddr::V6(_) => self.aggregation_length_v6.min(128),
        };
        IpNet::new(ip, length)
            .expect("the length is within the family's")
            .trunc()
    }
}

/// What every speaker knows; the same types as the layer-2 election's where they are the same
/// things.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub nodes: Vec<Node>,
    /// Speakers alive, by node name. A speaker counts itself in.
    pub alive: BTreeSet<String>,
    pub pools: Vec<Pool>,
    pub peers: Vec<Peer>,
    pub advertisements: Vec<Advertisement>,
    pub services: Vec<Service>,
}

/// The path attributes of one advertised prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attributes {
    pub local_pref: Option<u32>,
    pub communities: BTreeSet<Community>,
}

/// One peer of a node and what the node advertises to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub peer: Peer,
    /// Of the peer's address family only.
    pub prefixes: BTreeMap<IpNet, Attributes>,
}

/// What one node runs: its BGP instance and its sessions, sorted by peer name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBgp {
    pub node: String,
    pub my_asn: u32,
    pub router_id: Option<Ipv4Addr>,
    pub sessions: Vec<Session>,
}

/// Whether, and how, BGP advertises a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Advertised {
        nodes: BTreeSet<String>,
        peers: BTreeSet<String>,
    },
    NotAdvertised(Reason),
}

/// Why BGP does not advertise a Service that a BGPAdvertisement selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    NoReadyEndpoint,
    /// No node may advertise it: none is alive, selected by a BGPAdvertisement of its pool,
    /// with its network available and not excluded, and (`local`) with a ready endpoint.
    NoEligibleNode {
        local: bool,
    },
    /// Nodes may advertise it, but none of them peers with a router of its address family that
    /// its BGPAdvertisements name.
    NoPeer {
        nodes: BTreeSet<String>,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Advertised { nodes, peers } => write!(
                f,
                "advertised over BGP by {} {} to {} {}",
                plural(nodes.len(), "node", "nodes"),
                list(nodes),
                plural(peers.len(), "peer", "peers"),
                list(peers)
            ),
            Outcome::NotAdvertised(reason) => write!(f, "not advertised over BGP: {reason}"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoReadyEndpoint => f.write_str("the Service has no ready endpoint"),
            Reason::NoEligibleNode { local: true } => f.write_str(
                "externalTrafficPolicy Local and no node with a ready endpoint may advertise it \
                 (alive, selected by a BGPAdvertisement of its pool, network available, not \
                 excluded)",
            ),
            Reason::NoEligibleNode { local: false } => f.write_str(
                "no node may advertise it: none is alive, selected by a BGPAdvertisement of its \
                 pool, with its network available and not excluded",
            ),
            Reason::NoPeer { nodes } => write!(
                f,
                "the nodes that may advertise it ({}) peer with no BGPPeer of its address family \
                 that its BGPAdvertisements name: check the BGPPeers' nodeSelectors and the \
                 BGPAdvertisements' peers",
                list(nodes)
            ),
        }
    }
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}

/// `names` joined with commas, the first [`LISTED_NAMES`] of them, so that a condition stays
/// small on a large cluster.
fn list(names: &BTreeSet<String>) -> String {
    let mut shown: Vec<&str> = names
        .iter()
        .take(LISTED_NAMES)
        .map(String::as_str)
        .collect();
    let more = names.len().saturating_sub(LISTED_NAMES);
    let more = format!("and {more} more");
    if names.len() > LISTED_NAMES {
        shown.push(&more);
    }
    shown.join(", ")
}

/// A configuration that cannot be followed as written, and what was done instead.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// `peer` shares its address with `kept` (first by name), which is used instead.
    DuplicatePeerAddress {
        address: IpAddr,
        peer: String,
        kept: String,
    },
    /// On `node`, `peer` wants another local ASN or router ID than `kept`, which decides the
    /// node's BGP instance: the node does not peer with `peer`.
    InstanceConflict {
        node: String,
        peer: String,
        kept: String,
        what: String,
    },
    /// Advertisements give `prefix` two local preferences for `peer`; `used` (the highest)
    /// wins.
    LocalPrefConflict {
        prefix: IpNet,
        peer: String,
        advertisements: Vec<String>,
        used: u32,
    },
    /// `advertisement` would roll `ip` up to `prefix`, which holds addresses outside its pool:
    /// the route would draw traffic for addresses Herald does not hand out. Not advertised.
    AggregationWiderThanPool {
        advertisement: String,
        pool: String,
        ip: IpAddr,
        prefix: IpNet,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::DuplicatePeerAddress {
                address,
                peer,
                kept,
            } => write!(
                f,
                "BGPPeer {} has the peerAddress {address} of BGPPeer {}, which is used instead: \
                 a node has one session per router address, so delete one of them",
                quote(peer),
                quote(kept)
            ),
            Problem::InstanceConflict {
                node,
                peer,
                kept,
                what,
            } => write!(
                f,
                "node {} does not peer with BGPPeer {}: its {what} differs from BGPPeer {}'s, and \
                 a node runs one BGP instance; give every BGPPeer of a node the same myASN and \
                 routerID",
                quote(node),
                quote(peer),
                quote(kept)
            ),
            Problem::LocalPrefConflict {
                prefix,
                peer,
                advertisements,
                used,
            } => write!(
                f,
                "BGPAdvertisements {} give {prefix} different localPref values for BGPPeer {}; \
                 {used}, the highest, is used: give them one localPref",
                advertisements
                    .iter()
                    .map(|a| quote(a))
                    .collect::<Vec<_>>()
                    .join(", "),
                quote(peer)
            ),
            Problem::AggregationWiderThanPool {
                advertisement,
                pool,
                ip,
                prefix,
            } => write!(
                f,
                "BGPAdvertisement {} does not advertise {ip}: its aggregation length makes it \
                 {prefix}, which holds addresses outside pool {}; use a longer aggregation length",
                quote(advertisement),
                quote(pool)
            ),
        }
    }
}

/// Everything decided: each node's BGP instance (nodes that peer with nobody are absent), the
/// outcome of every Service a BGPAdvertisement selects, and what could not be followed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub nodes: BTreeMap<String, NodeBgp>,
    pub services: BTreeMap<ServiceKey, Outcome>,
    pub problems: BTreeSet<Problem>,
}

/// Decides what every node advertises to each of its peers.
pub fn decide(inputs: &Inputs) -> Decision {
    let mut problems = BTreeSet::new();
    let mut peers: Vec<&Peer> = inputs.peers.iter().collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut nodes: BTreeMap<String, NodeBgp> = inputs
        .nodes
        .iter()
        .filter_map(|node| instance(node, &peers, &mut problems))
        .map(|instance| (instance.node.clone(), instance))
        .collect();
    // Which advertisements gave each (node, peer, prefix) a local preference, to report clashes.
    let mut local_prefs: BTreeMap<(String, String, IpNet), BTreeMap<u32, BTreeSet<String>>> =
        BTreeMap::new();
    let mut services = BTreeMap::new();
    for service in &inputs.services {
        let mut selected = false;
        let mut eligible_nodes = BTreeSet::new();
        let mut advertising_nodes = BTreeSet::new();
        let mut advertised_peers = BTreeSet::new();
        for ip in &service.ips {
            for (advertisement, pool) in advertisements_of(inputs, *ip) {
                selected = true;
                if !service.has_ready_endpoint {
                    continue;
                }
                let prefix = advertisement.prefix(*ip);
                if !within_pool(prefix, pool) {
                    problems.insert(Problem::AggregationWiderThanPool {
                        advertisement: advertisement.name.clone(),
                        pool: pool.name.clone(),
                        ip: *ip,
                        prefix,
                    });
                    continue;
                }
                for node in inputs
                    .nodes
                    .iter()
                    .filter(|node| node_refusal(inputs, service, advertisement, node).is_none())
                {
                    eligible_nodes.insert(node.name.clone());
                    let Some(instance) = nodes.get_mut(&node.name) else {
                        continue;
                    };
                    for session in instance
                        .sessions
                        .iter_mut()
                        .filter(|s| carries(s, *ip, advertisement))
                    {
                        advertising_nodes.insert(node.name.clone());
                        advertised_peers.insert(session.peer.name.clone());
                        let attributes = session.prefixes.entry(prefix).or_default();
                        attributes
                            .communities
                            .extend(advertisement.communities.iter().copied());
                        if let Some(local_pref) = advertisement.local_pref {
                            attributes.local_pref = attributes.local_pref.max(Some(local_pref));
                            local_prefs
                                .entry((node.name.clone(), session.peer.name.clone(), prefix))
                                .or_default()
                                .entry(local_pref)
                                .or_default()
                                .insert(advertisement.name.clone());
                        }
                    }
                }
            }
        }
        if !selected {
            continue;
        }
        let outcome = if !service.has_ready_endpoint {
            Outcome::NotAdvertised(Reason::NoReadyEndpoint)
        } else if eligible_nodes.is_empty() {
            Outcome::NotAdvertised(Reason::NoEligibleNode {
                local: service.local,
            })
        } else if advertising_nodes.is_empty() {
            Outcome::NotAdvertised(Reason::NoPeer {
                nodes: eligible_nodes,
            })
        } else {
            Outcome::Advertised {
                nodes: advertising_nodes,
                peers: advertised_peers,
            }
        };
        services.insert(service.key.clone(), outcome);
    }
    for ((_, peer, prefix), by_value) in local_prefs {
        if by_value.len() > 1 {
            problems.insert(Problem::LocalPrefConflict {
                prefix,
                peer,
                advertisements: by_value.values().flatten().cloned().collect(),
                used: *by_value.keys().last().expect("more than one value"),
            });
        }
    }
    nodes.retain(|_, instance| !instance.sessions.is_empty());
    Decision {
        nodes,
        services,
        problems,
    }
}

/// The BGPAdvertisements that select a pool holding `ip`, each with the first such pool.
fn advertisements_of(inputs: &Inputs, ip: IpAddr) -> Vec<(&Advertisement, &Pool)> {
    let pools: Vec<&Pool> = inputs
        .pools
        .iter()
        .filter(|p| p.addresses.contains(ip))
        .collect();
    inputs
        .advertisements
        .iter()
        .filter_map(|a| pools.iter().find(|p| a.selects_pool(p)).map(|p| (a, *p)))
        .collect()
}

/// Which of [`decide`]'s filters on nodes refuses `node` the addresses of `service` that
/// `advertisement` advertises, the first in its order; None when the node passes them all.
enum NodeRefusal {
    /// It may announce nothing at all (the election's own standing of a node).
    Standing(election::Verdict),
    NoReadyEndpoint,
    NotSelected,
}

fn node_refusal(
    inputs: &Inputs,
    service: &Service,
    advertisement: &Advertisement,
    node: &Node,
) -> Option<NodeRefusal> {
    if let Some(standing) = election::node_standing(&inputs.alive, node) {
        Some(NodeRefusal::Standing(standing))
    } else if service.local && !service.ready_nodes.contains(&node.name) {
        Some(NodeRefusal::NoReadyEndpoint)
    } else if !any_matches(&advertisement.node_selectors, &node.labels) {
        Some(NodeRefusal::NotSelected)
    } else {
        None
    }
}

/// Whether `session` carries `ip` when `advertisement` advertises it: a peer of its family
/// that the advertisement names.
fn carries(session: &Session, ip: IpAddr, advertisement: &Advertisement) -> bool {
    session.peer.family() == IpFamily::of(ip) && advertisement.selects_peer(&session.peer)
}

/// `node`'s BGP instance, with a session (no prefixes yet) per peer that selects it, agrees
/// with the first on the instance's settings and has an address no earlier one has (`peers`
/// sorted by name); None if no peer selects it.
fn instance(node: &Node, peers: &[&Peer], problems: &mut BTreeSet<Problem>) -> Option<NodeBgp> {
    let mut selecting = peers
        .iter()
        .filter(|peer| any_matches(&peer.node_selectors, &node.labels));
    let first = selecting.next()?;
    let mut sessions = vec![Session {
        peer: (*first).clone(),
        prefixes: BTreeMap::new(),
    }];
    let mut router_id = first.router_id;
    let mut router_id_from = first;
    for peer in selecting {
        // Peers at one address are fine for different nodes (racks behind an anycast
        // gateway), not for one: FRR has one neighbor per address.
        if let Some(kept) = sessions.iter().find(|s| s.peer.address == peer.address) {
            problems.insert(Problem::DuplicatePeerAddress {
                address: peer.address,
                peer: peer.name.clone(),
                kept: kept.peer.name.clone(),
            });
            continue;
        }
        let conflict = if peer.my_asn != first.my_asn {
            Some((format!("myASN {}", peer.my_asn), first))
        } else {
            match (router_id, peer.router_id) {
                (Some(kept), Some(id)) if kept != id => {
                    Some((format!("routerID {id}"), router_id_from))
                }
                _ => None,
            }
        };
        if let Some((what, kept)) = conflict {
            problems.insert(Problem::InstanceConflict {
                node: node.name.clone(),
                peer: peer.name.clone(),
                kept: kept.name.clone(),
                what,
            });
            continue;
        }
        if router_id.is_none() && peer.router_id.is_some() {
            router_id = peer.router_id;
            router_id_from = peer;
        }
        sessions.push(Session {
            peer: (*peer).clone(),
            prefixes: BTreeMap::new(),
        });
    }
    Some(NodeBgp {
        node: node.name.clone(),
        my_asn: first.my_asn,
        router_id,
        sessions,
    })
}

/// Why a node does or does not advertise a Service: the first of [`decide`]'s filters it
/// fails, in its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeVerdict {
    /// It advertises the Service's addresses to these peers.
    Advertises { peers: BTreeSet<String> },
    /// Each BGPAdvertisement of the Service's pools rolls its addresses up to a prefix wider
    /// than their pool, which no node advertises (a [`Problem`] says which).
    PrefixTooWide { advertisements: BTreeSet<String> },
    /// It may advertise nothing at all: the layer-2 election's own verdict
    /// ([`election::Verdict::NotAlive`], [`election::Verdict::NetworkUnavailable`] or
    /// [`election::Verdict::Excluded`]).
    Standing(election::Verdict),
    /// `externalTrafficPolicy: Local`, and the node has no ready endpoint of the Service.
    NoReadyEndpoint,
    /// None of these BGPAdvertisements (those of the Service's pools) selects the node.
    NotSelected { advertisements: BTreeSet<String> },
    /// These BGPAdvertisements select the node, but it peers with no BGPPeer of the address
    /// `families` that they name. `left_out`: such peers that select the node, left out of its
    /// BGP instance (a [`Problem`] says why).
    NoPeer {
        families: BTreeSet<IpFamily>,
        advertisements: BTreeSet<String>,
        left_out: BTreeSet<String>,
    },
}

impl fmt::Display for NodeVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeVerdict::Advertises { peers } => write!(
                f,
                "to {} {}",
                plural(peers.len(), "peer", "peers"),
                list(peers)
            ),
            NodeVerdict::PrefixTooWide { advertisements } => write!(
                f,
                "{} {} its addresses up to a prefix wider than their pool: use a longer \
                 aggregation length",
                advertisement_names(advertisements),
                plural(advertisements.len(), "rolls", "roll")
            ),
            NodeVerdict::Standing(verdict) => verdict.fmt(f),
            NodeVerdict::NoReadyEndpoint => {
                f.write_str("it has no ready endpoint of the Service (externalTrafficPolicy Local)")
            }
            NodeVerdict::NotSelected { advertisements } => write!(
                f,
                "no BGPAdvertisement of its pool selects it: check the nodeSelectors of {}",
                advertisement_names(advertisements)
            ),
            NodeVerdict::NoPeer {
                families,
                advertisements,
                left_out,
            } => {
                let families: Vec<String> = families.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "it peers with no {} BGPPeer that {} {} to: check the BGPPeers' \
                     nodeSelectors and the {} peers",
                    families.join(" or "),
                    advertisement_names(advertisements),
                    plural(advertisements.len(), "advertises", "advertise"),
                    plural(
                        advertisements.len(),
                        "BGPAdvertisement's",
                        "BGPAdvertisements'"
                    )
                )?;
                if !left_out.is_empty() {
                    write!(
                        f,
                        "; {} {} it but {} left out of its BGP instance: a BGP configuration \
                         problem says why",
                        peer_names(left_out),
                        plural(left_out.len(), "selects", "select"),
                        plural(left_out.len(), "is", "are")
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// `BGPAdvertisement "a"` or `BGPAdvertisements "a", "b"`.
fn advertisement_names(names: &BTreeSet<String>) -> String {
    kind_and_names("BGPAdvertisement", "BGPAdvertisements", names)
}

fn peer_names(names: &BTreeSet<String>) -> String {
    kind_and_names("BGPPeer", "BGPPeers", names)
}

fn kind_and_names(one: &str, many: &str, names: &BTreeSet<String>) -> String {
    let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
    format!("{} {}", plural(names.len(), one, many), quoted.join(", "))
}

/// Why each node, by name, does or does not advertise `service` in `decision` (made by
/// [`decide`] from `inputs`). Empty when no BGPAdvertisement selects the Service or it has no
/// ready endpoint anywhere: the Service's [`Outcome`] says so for every node.
pub fn node_verdicts(
    inputs: &Inputs,
    decision: &Decision,
    service: &Service,
) -> BTreeMap<String, NodeVerdict> {
    if !decision.services.contains_key(&service.key) || !service.has_ready_endpoint {
        return BTreeMap::new();
    }
    // The (address, advertisement) pairs that decide advertises, and the advertisements it
    // refuses for their too-wide prefix.
    let mut routes = Vec::new();
    let mut too_wide = BTreeSet::new();
    for ip in &service.ips {
        for (advertisement, pool) in advertisements_of(inputs, *ip) {
            if within_pool(advertisement.prefix(*ip), pool) {
                routes.push((*ip, advertisement));
            } else {
                too_wide.insert(advertisement.name.clone());
            }
        }
    }
    inputs
        .nodes
        .iter()
        .map(|node| {
            let verdict = if routes.is_empty() {
                NodeVerdict::PrefixTooWide {
                    advertisements: too_wide.clone(),
                }
            } else {
                node_verdict(inputs, decision, service, &routes, node)
            };
            (node.name.clone(), verdict)
        })
        .collect()
}

fn node_verdict(
    inputs: &Inputs,
    decision: &Decision,
    service: &Service,
    routes: &[(IpAddr, &Advertisement)],
    node: &Node,
) -> NodeVerdict {
    let mut not_selecting = BTreeSet::new();
    let mut selecting = Vec::new();
    for (ip, advertisement) in routes {
        match node_refusal(inputs, service, advertisement, node) {
            Some(NodeRefusal::Standing(verdict)) => return NodeVerdict::Standing(verdict),
            Some(NodeRefusal::NoReadyEndpoint) => return NodeVerdict::NoReadyEndpoint,
            Some(NodeRefusal::NotSelected) => {
                not_selecting.insert(advertisement.name.clone());
            }
            None => selecting.push((*ip, *advertisement)),
        }
    }
    if selecting.is_empty() {
        return NodeVerdict::NotSelected {
            advertisements: not_selecting,
        };
    }
    let sessions = decision
        .nodes
        .get(&node.name)
        .map_or(&[][..], |n| &n.sessions);
    let peers: BTreeSet<String> = sessions
        .iter()
        .filter(|s| selecting.iter().any(|(ip, a)| carries(s, *ip, a)))
        .map(|s| s.peer.name.clone())
        .collect();
    if !peers.is_empty() {
        return NodeVerdict::Advertises { peers };
    }
    let left_out = inputs
        .peers
        .iter()
        .filter(|peer| {
            any_matches(&peer.node_selectors, &node.labels)
                && selecting
                    .iter()
                    .any(|(ip, a)| peer.family() == IpFamily::of(*ip) && a.selects_peer(peer))
        })
        .map(|peer| peer.name.clone())
        .collect();
    NodeVerdict::NoPeer {
        families: selecting.iter().map(|(ip, _)| IpFamily::of(*ip)).collect(),
        advertisements: selecting.iter().map(|(_, a)| a.name.clone()).collect(),
        left_out,
    }
}

/// The problems of `decision` that concern `service`: a prefix of its addresses refused or
/// given two local preferences, and a peer its BGPAdvertisements would advertise it to that
/// is left out of a node.
pub fn problems_of<'a>(
    inputs: &Inputs,
    decision: &'a Decision,
    service: &Service,
) -> Vec<&'a Problem> {
    let would_carry = |peer_name: &str| {
        inputs
            .peers
            .iter()
            .filter(|peer| peer.name == peer_name)
            .any(|peer| {
                service.ips.iter().any(|ip| {
                    peer.family() == IpFamily::of(*ip)
                        && advertisements_of(inputs, *ip)
                            .iter()
                            .any(|(a, _)| a.selects_peer(peer))
                })
            })
    };
    decision
        .problems
        .iter()
        .filter(|problem| match problem {
            Problem::AggregationWiderThanPool { ip, .. } => service.ips.contains(ip),
            Problem::LocalPrefConflict { prefix, .. } => {
                service.ips.iter().any(|ip| prefix.contains(ip))
            }
            Problem::DuplicatePeerAddress { peer, .. } | Problem::InstanceConflict { peer, .. } => {
                would_carry(peer)
            }
        })
        .collect()
}

/// Whether every address of `prefix` lies in one entry of `pool`.
fn within_pool(prefix: IpNet, pool: &Pool) -> bool {
    pool.addresses
        .ranges()
        .iter()
        .any(|range| range.contains(prefix.network()) && range.contains(prefix.broadcast()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addresses::PoolAddresses;
    use crate::election::EXCLUDE_LABEL;
    use crate::selector::Labels;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            network_unavailable: false,
        }
    }

    fn selector(key: &str, value: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Labels::from([(key.to_string(), value.to_string())]),
            ..LabelSelector::default()
        }
    }

    fn peer(name: &str, address: &str) -> Peer {
        Peer::new(name, address.parse().unwrap(), 64513, 64512)
    }

    fn pool(name: &str, entries: &[&str]) -> Pool {
        Pool {
            name: name.into(),
            labels: Labels::new(),
            addresses: PoolAddresses::parse(entries, false).unwrap(),
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

    fn net(prefix: &str) -> IpNet {
        prefix.parse().unwrap()
    }

    /// Three nodes, one IPv4 and one IPv6 router peering with all of them, pool `lan` advertised
    /// to every peer, and a dual-stack Cluster Service.
    fn world() -> Inputs {
        Inputs {
            nodes: vec![
                node("a", &[("rack", "1")]),
                node("b", &[("rack", "1")]),
                node("c", &[("rack", "2")]),
            ],
            alive: ["a", "b", "c"].iter().map(|n| n.to_string()).collect(),
            pools: vec![pool("lan", &["192.0.2.0/24", "2001:db8::/64"])],
            peers: vec![peer("tor", "198.51.100.1"), peer("tor6", "2001:db8:1::1")],
            advertisements: vec![Advertisement {
                name: "all".into(),
                ..Advertisement::default()
            }],
            services: vec![service("web", &["192.0.2.10", "2001:db8::10"])],
        }
    }

    /// The prefixes `node` advertises to `peer`.
    fn advertised(decision: &Decision, node: &str, peer: &str) -> Vec<String> {
        decision
            .nodes
            .get(node)
            .and_then(|n| n.sessions.iter().find(|s| s.peer.name == peer))
            .map(|s| s.prefixes.keys().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    fn outcome(decision: &Decision, name: &str) -> Outcome {
        decision.services[&ServiceKey::new("default", name)].clone()
    }

    #[test]
    fn cluster_services_are_advertised_by_every_live_node_to_peers_of_their_family() {
        let decision = decide(&world());
        for node in ["a", "b", "c"] {
            assert_eq!(advertised(&decision, node, "tor"), ["192.0.2.10/32"]);
            assert_eq!(advertised(&decision, node, "tor6"), ["2001:db8::10/128"]);
        }
        assert_eq!(
            outcome(&decision, "web").to_string(),
            "advertised over BGP by nodes a, b, c to peers tor, tor6"
        );
        assert!(decision.problems.is_empty(), "{:?}", decision.problems);
    }

    #[test]
    fn local_services_are_advertised_only_by_nodes_with_a_ready_endpoint() {
        let mut inputs = world();
        inputs.services[0].local = true;
        inputs.services[0].ready_nodes = BTreeSet::from(["b".to_string()]);
        let decision = decide(&inputs);
        assert_eq!(advertised(&decision, "b", "tor"), ["192.0.2.10/32"]);
        assert!(advertised(&decision, "a", "tor").is_empty());
        assert!(advertised(&decision, "c", "tor").is_empty());
        // The other nodes keep their sessions, with nothing to advertise.
        assert_eq!(decision.nodes["a"].sessions.len(), 2);
        assert_eq!(
            outcome(&decision, "web").to_string(),
            "advertised over BGP by node b to peers tor, tor6"
        );

        inputs.services[0].ready_nodes.clear();
        assert_eq!(
            outcome(&decide(&inputs), "web"),
            Outcome::NotAdvertised(Reason::NoEligibleNode { local: true })
        );
    }

    #[test]
    fn dead_excluded_unavailable_and_unselected_nodes_advertise_nothing() {
        let mut inputs = world();
        inputs.nodes.push(node("dead", &[]));
        inputs.nodes.push(node("excluded", &[(EXCLUDE_LABEL, "")]));
        let mut unavailable = node("unavailable", &[]);
        unavailable.network_unavailable = true;
        inputs.nodes.push(unavailable);
        inputs
            .alive
            .extend(["excluded", "unavailable"].map(String::from));
        inputs.advertisements[0].node_selectors = vec![LabelSelector::default()];
        let decision = decide(&inputs);
        for node in ["dead", "excluded", "unavailable"] {
            assert!(advertised(&decision, node, "tor").is_empty(), "{node}");
            assert!(decision.nodes.contains_key(node), "{node} still peers");
        }

        // The advertisement's node selectors, then the peer's, narrow it down.
        inputs.advertisements[0].node_selectors = vec![selector("rack", "1")];
        let decision = decide(&inputs);
        assert!(advertised(&decision, "c", "tor").is_empty());
        assert_eq!(advertised(&decision, "a", "tor"), ["192.0.2.10/32"]);
        inputs.peers[0].node_selectors = vec![selector("rack", "2")];
        let decision = decide(&inputs);
        assert!(
            !decision.nodes["a"]
                .sessions
                .iter()
                .any(|s| s.peer.name == "tor")
        );
        assert_eq!(advertised(&decision, "c", "tor"), Vec::<String>::new());
        assert_eq!(
            outcome(&decision, "web").to_string(),
            "advertised over BGP by nodes a, b to peer tor6"
        );
    }

    #[test]
    fn no_eligible_node_no_peer_or_no_endpoint_advertises_nothing_and_says_why() {
        let mut inputs = world();
        inputs.alive.clear();
        let decision = decide(&inputs);
        assert!(
            decision
                .nodes
                .values()
                .all(|n| n.sessions.iter().all(|s| s.prefixes.is_empty()))
        );
        assert_eq!(
            outcome(&decision, "web"),
            Outcome::NotAdvertised(Reason::NoEligibleNode { local: false })
        );

        let mut inputs = world();
        inputs.advertisements[0].peers = BTreeSet::from(["elsewhere".to_string()]);
        let message = outcome(&decide(&inputs), "web").to_string();
        assert!(
            message.starts_with("not advertised over BGP: the nodes that may advertise it (a, b, c) peer with no BGPPeer"),
            "{message}"
        );

        let mut inputs = world();
        inputs.services[0].has_ready_endpoint = false;
        assert_eq!(
            outcome(&decide(&inputs), "web").to_string(),
            "not advertised over BGP: the Service has no ready endpoint"
        );
    }

    #[test]
    fn services_of_pools_without_a_bgp_advertisement_are_not_bgp_s_business() {
        let mut inputs = world();
        inputs.pools.push(pool("l2-only", &["203.0.113.0/24"]));
        inputs.advertisements[0].pools = BTreeSet::from(["lan".to_string()]);
        inputs.services.push(service("l2", &["203.0.113.5"]));
        let decision = decide(&inputs);
        assert!(
            !decision
                .services
                .contains_key(&ServiceKey::new("default", "l2"))
        );
        assert!(
            decision
                .services
                .contains_key(&ServiceKey::new("default", "web"))
        );
    }

    #[test]
    fn advertisements_name_their_peers_and_pools() {
        let mut inputs = world();
        inputs.pools.push(pool("dmz", &["203.0.113.0/24"]));
        inputs.peers.push(peer("edge", "198.51.100.2"));
        inputs.services.push(service("public", &["203.0.113.7"]));
        inputs.advertisements = vec![
            Advertisement {
                name: "lan-to-tor".into(),
                pools: BTreeSet::from(["lan".to_string()]),
                peers: BTreeSet::from(["tor".to_string()]),
                ..Advertisement::default()
            },
            Advertisement {
                name: "dmz-to-edge".into(),
                pools: BTreeSet::from(["dmz".to_string()]),
                peers: BTreeSet::from(["edge".to_string()]),
                ..Advertisement::default()
            },
        ];
        let decision = decide(&inputs);
        assert_eq!(advertised(&decision, "a", "tor"), ["192.0.2.10/32"]);
        assert_eq!(advertised(&decision, "a", "edge"), ["203.0.113.7/32"]);
        assert!(advertised(&decision, "a", "tor6").is_empty());
    }

    #[test]
    fn aggregation_rolls_addresses_up_and_refuses_prefixes_wider_than_the_pool() {
        let mut inputs = world();
        inputs.services.push(service("api", &["192.0.2.20"]));
        inputs.advertisements[0].aggregation_length = 24;
        inputs.advertisements[0].aggregation_length_v6 = 64;
        let decision = decide(&inputs);
        assert_eq!(advertised(&decision, "a", "tor"), ["192.0.2.0/24"]);
        assert_eq!(advertised(&decision, "a", "tor6"), ["2001:db8::/64"]);

        inputs.advertisements[0].aggregation_length = 23;
        let decision = decide(&inputs);
        assert!(advertised(&decision, "a", "tor").is_empty());
        let problem = decision
            .problems
            .iter()
            .find(|p| matches!(p, Problem::AggregationWiderThanPool { .. }))
            .expect("the wide prefix is reported");
        assert_eq!(
            problem.to_string(),
            "BGPAdvertisement \"all\" does not advertise 192.0.2.10: its aggregation length makes \
             it 192.0.2.0/23, which holds addresses outside pool \"lan\"; use a longer \
             aggregation length"
        );
    }

    #[test]
    fn attributes_of_several_advertisements_merge_and_local_pref_clashes_are_reported() {
        let mut inputs = world();
        inputs.advertisements = vec![
            Advertisement {
                name: "one".into(),
                local_pref: Some(100),
                communities: BTreeSet::from([Community::Standard(65535, 65282)]),
                ..Advertisement::default()
            },
            Advertisement {
                name: "two".into(),
                local_pref: Some(200),
                communities: BTreeSet::from([Community::Large(64512, 1, 2)]),
                ..Advertisement::default()
            },
            Advertisement {
                name: "plain".into(),
                ..Advertisement::default()
            },
        ];
        let decision = decide(&inputs);
        let session = &decision.nodes["a"].sessions[0];
        assert_eq!(
            session.prefixes[&net("192.0.2.10/32")],
            Attributes {
                local_pref: Some(200),
                communities: BTreeSet::from([
                    Community::Standard(65535, 65282),
                    Community::Large(64512, 1, 2)
                ]),
            }
        );
        let clashes: Vec<String> = decision.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            clashes,
            [
                "BGPAdvertisements \"one\", \"two\" give 192.0.2.10/32 different localPref values \
                 for BGPPeer \"tor\"; 200, the highest, is used: give them one localPref",
                "BGPAdvertisements \"one\", \"two\" give 2001:db8::10/128 different localPref \
                 values for BGPPeer \"tor6\"; 200, the highest, is used: give them one localPref",
            ]
        );
    }

    #[test]
    fn a_node_runs_one_instance_and_peers_that_disagree_with_it_are_left_out() {
        let mut inputs = world();
        inputs.peers[0].router_id = Some("192.0.2.250".parse().unwrap());
        let mut other_asn = peer("z-other-asn", "198.51.100.3");
        other_asn.my_asn = 65000;
        let mut other_id = peer("z-other-id", "198.51.100.4");
        other_id.router_id = Some("192.0.2.251".parse().unwrap());
        let duplicate = peer("z-duplicate", "198.51.100.1");
        inputs.peers.extend([other_asn, other_id, duplicate]);
        let decision = decide(&inputs);
        let a = &decision.nodes["a"];
        assert_eq!(a.my_asn, 64512);
        assert_eq!(a.router_id, Some("192.0.2.250".parse().unwrap()));
        let names: Vec<&str> = a.sessions.iter().map(|s| s.peer.name.as_str()).collect();
        assert_eq!(names, ["tor", "tor6"]);
        let problems: Vec<String> = decision
            .problems
            .iter()
            .filter(|p| !matches!(p, Problem::InstanceConflict { node, .. } if node != "a"))
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "BGPPeer \"z-duplicate\" has the peerAddress 198.51.100.1 of BGPPeer \"tor\", which \
                 is used instead: a node has one session per router address, so delete one of them",
                "node \"a\" does not peer with BGPPeer \"z-other-asn\": its myASN 65000 differs from \
                 BGPPeer \"tor\"'s, and a node runs one BGP instance; give every BGPPeer of a node \
                 the same myASN and routerID",
                "node \"a\" does not peer with BGPPeer \"z-other-id\": its routerID 192.0.2.251 \
                 differs from BGPPeer \"tor\"'s, and a node runs one BGP instance; give every \
                 BGPPeer of a node the same myASN and routerID",
            ]
        );
    }

    /// Racks whose top-of-rack routers share one address (an anycast gateway): a BGPPeer per
    /// rack, each selecting its rack's nodes, and each node peers with its own.
    #[test]
    fn peers_at_one_address_for_different_nodes_are_each_used() {
        let mut inputs = world();
        let mut rack1 = peer("a-rack1", "198.51.100.1");
        rack1.node_selectors = vec![selector("rack", "1")];
        let mut rack2 = peer("b-rack2", "198.51.100.1");
        rack2.node_selectors = vec![selector("rack", "2")];
        inputs.peers = vec![rack1, rack2];
        let decision = decide(&inputs);
        let peers_of = |node: &str| -> Vec<String> {
            decision.nodes[node]
                .sessions
                .iter()
                .map(|s| s.peer.name.clone())
                .collect()
        };
        assert_eq!(peers_of("a"), ["a-rack1"]);
        assert_eq!(peers_of("c"), ["b-rack2"]);
        assert_eq!(decision.problems, BTreeSet::new());
        assert_eq!(
            outcome(&decision, "web").to_string(),
            "advertised over BGP by nodes a, b, c to peers a-rack1, b-rack2"
        );
    }

    #[test]
    fn nodes_that_peer_with_nobody_have_no_instance() {
        let mut inputs = world();
        for peer in &mut inputs.peers {
            peer.node_selectors = vec![selector("rack", "2")];
        }
        let decision = decide(&inputs);
        assert_eq!(decision.nodes.keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(
            outcome(&decision, "web").to_string(),
            "advertised over BGP by node c to peers tor, tor6"
        );
    }

    #[test]
    fn long_lists_of_nodes_are_cut_short() {
        let mut inputs = world();
        inputs.nodes = (0..25).map(|i| node(&format!("n{i:02}"), &[])).collect();
        inputs.alive = inputs.nodes.iter().map(|n| n.name.clone()).collect();
        let message = outcome(&decide(&inputs), "web").to_string();
        assert_eq!(
            message,
            "advertised over BGP by nodes n00, n01, n02, n03, n04, n05, n06, n07, n08, n09, and \
             15 more to peers tor, tor6"
        );
    }

    /// Each node's verdict on Service `name`, checked against the decision's outcome: the
    /// nodes that advertise, and their peers, are the outcome's.
    fn verdicts(inputs: &Inputs, name: &str) -> BTreeMap<String, NodeVerdict> {
        let decision = decide(inputs);
        let service = inputs.services.iter().find(|s| s.key.name == name).unwrap();
        let verdicts = node_verdicts(inputs, &decision, service);
        let mut nodes = BTreeSet::new();
        let mut peers = BTreeSet::new();
        for (node, verdict) in &verdicts {
            if let NodeVerdict::Advertises { peers: to } = verdict {
                nodes.insert(node.clone());
                peers.extend(to.iter().cloned());
            }
        }
        match decision.services.get(&service.key) {
            Some(Outcome::Advertised {
                nodes: outcome_nodes,
                peers: outcome_peers,
            }) => assert_eq!((&nodes, &peers), (outcome_nodes, outcome_peers)),
            _ => assert!(nodes.is_empty(), "{verdicts:?}"),
        }
        verdicts
    }

    fn words(verdicts: &BTreeMap<String, NodeVerdict>) -> Vec<(String, String)> {
        verdicts
            .iter()
            .map(|(node, verdict)| (node.clone(), verdict.to_string()))
            .collect()
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_node_that_advertises_says_to_which_peers() {
        let verdicts = verdicts(&world(), "web");
        for node in ["a", "b", "c"] {
            assert_eq!(
                verdicts[node],
                NodeVerdict::Advertises {
                    peers: names(&["tor", "tor6"])
                }
            );
        }
        assert_eq!(verdicts["a"].to_string(), "to peers tor, tor6");
    }

    #[test]
    fn nodes_that_do_not_advertise_say_which_filter_stops_them_in_decides_order() {
        let mut inputs = world();
        inputs.nodes.push(node("dead", &[("rack", "1")]));
        inputs
            .nodes
            .push(node("excluded", &[("rack", "1"), (EXCLUDE_LABEL, "")]));
        let mut unavailable = node("unavailable", &[("rack", "1")]);
        unavailable.network_unavailable = true;
        inputs.nodes.push(unavailable);
        inputs.nodes.push(node("far", &[("rack", "3")]));
        inputs.nodes.push(node("idle", &[("rack", "1")]));
        inputs
            .alive
            .extend(["excluded", "unavailable", "far", "idle"].map(String::from));
        inputs.services[0].local = true;
        inputs.services[0].ready_nodes = names(&["a", "c", "far", "dead", "excluded"]);
        // rack 3 is not the advertisement's; rack 2 peers with nobody of the IPv4 family.
        inputs.advertisements[0].name = "racks".into();
        inputs.advertisements[0].node_selectors =
            vec![selector("rack", "1"), selector("rack", "2")];
        inputs.peers[0].node_selectors = vec![selector("rack", "1")];
        inputs.services[0].ips = vec!["192.0.2.10".parse().unwrap()];
        let verdicts = verdicts(&inputs, "web");
        assert_eq!(
            words(&verdicts),
            [
                ("a", "to peer tor"),
                (
                    "b",
                    "it has no ready endpoint of the Service (externalTrafficPolicy Local)"
                ),
                (
                    "c",
                    "it peers with no IPv4 BGPPeer that BGPAdvertisement \"racks\" advertises \
                     to: check the BGPPeers' nodeSelectors and the BGPAdvertisement's peers"
                ),
                ("dead", "its speaker is not alive"),
                (
                    "excluded",
                    "it is labelled node.kubernetes.io/exclude-from-external-load-balancers"
                ),
                (
                    "far",
                    "no BGPAdvertisement of its pool selects it: check the nodeSelectors of \
                     BGPAdvertisement \"racks\""
                ),
                (
                    "idle",
                    "it has no ready endpoint of the Service (externalTrafficPolicy Local)"
                ),
                ("unavailable", "its NetworkUnavailable condition is true"),
            ]
            .map(|(n, w)| (n.to_string(), w.to_string()))
        );
        assert_eq!(
            verdicts["dead"],
            NodeVerdict::Standing(election::Verdict::NotAlive)
        );
    }

    #[test]
    fn a_node_whose_peer_is_left_out_of_its_instance_says_so() {
        let mut inputs = world();
        let mut other_asn = peer("z-other-asn", "198.51.100.3");
        other_asn.my_asn = 65000;
        inputs.peers.push(other_asn);
        inputs.advertisements[0].peers = names(&["z-other-asn"]);
        let verdicts = verdicts(&inputs, "web");
        assert_eq!(
            verdicts["a"],
            NodeVerdict::NoPeer {
                families: BTreeSet::from([IpFamily::V4, IpFamily::V6]),
                advertisements: names(&["all"]),
                left_out: names(&["z-other-asn"]),
            }
        );
        assert_eq!(
            verdicts["a"].to_string(),
            "it peers with no IPv4 or IPv6 BGPPeer that BGPAdvertisement \"all\" advertises to: \
             check the BGPPeers' nodeSelectors and the BGPAdvertisement's peers; BGPPeer \
             \"z-other-asn\" selects it but is left out of its BGP instance: a BGP \
             configuration problem says why"
        );
        let decision = decide(&inputs);
        let problems: Vec<String> = problems_of(&inputs, &decision, &inputs.services[0])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 3, "one per node: {problems:?}");
        assert!(problems[0].starts_with("node \"a\" does not peer with BGPPeer \"z-other-asn\""));
    }

    #[test]
    fn an_aggregation_wider_than_the_pool_stops_every_node() {
        let mut inputs = world();
        inputs.services[0].ips = vec!["192.0.2.10".parse().unwrap()];
        inputs.advertisements[0].aggregation_length = 23;
        let verdicts = verdicts(&inputs, "web");
        assert_eq!(
            verdicts["a"].to_string(),
            "BGPAdvertisement \"all\" rolls its addresses up to a prefix wider than their pool: \
             use a longer aggregation length"
        );
        assert_eq!(verdicts.len(), 3);
    }

    #[test]
    fn services_bgp_leaves_alone_or_without_endpoints_have_no_node_verdicts() {
        let mut inputs = world();
        inputs.advertisements[0].pools = names(&["elsewhere"]);
        assert!(verdicts(&inputs, "web").is_empty());
        let mut inputs = world();
        inputs.services[0].has_ready_endpoint = false;
        assert!(verdicts(&inputs, "web").is_empty());
    }

    #[test]
    fn only_the_problems_of_the_service_concern_it() {
        let mut inputs = world();
        inputs.pools.push(pool("small", &["203.0.113.0/30"]));
        inputs.services.push(service("other", &["203.0.113.1"]));
        inputs.advertisements.push(Advertisement {
            name: "wide".into(),
            pools: names(&["small"]),
            aggregation_length: 24,
            ..Advertisement::default()
        });
        inputs.advertisements[0].pools = names(&["lan"]);
        let duplicate = peer("z-duplicate", "198.51.100.1");
        inputs.peers.push(duplicate);
        let decision = decide(&inputs);
        let of = |name: &str| -> Vec<String> {
            let service = inputs.services.iter().find(|s| s.key.name == name).unwrap();
            problems_of(&inputs, &decision, service)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        // Both advertisements name every peer: the duplicate concerns both Services.
        let web = of("web");
        assert_eq!(web.len(), 1, "{web:?}");
        assert!(web[0].starts_with("BGPPeer \"z-duplicate\""), "{web:?}");
        let other = of("other");
        assert_eq!(other.len(), 2, "{other:?}");
        assert!(
            other
                .iter()
                .any(|p| p.starts_with("BGPAdvertisement \"wide\""))
        );

        inputs.advertisements[0].peers = names(&["tor6"]);
        inputs.advertisements[1].peers = names(&["tor6"]);
        let decision = decide(&inputs);
        let service = &inputs.services[0];
        assert!(problems_of(&inputs, &decision, service).is_empty());
    }

    #[test]
    fn communities_parse_in_both_forms_and_refuse_the_rest() {
        assert_eq!(
            "65535:65282".parse::<Community>(),
            Ok(Community::Standard(65535, 65282))
        );
        assert_eq!(
            "large:4294967295:0:7".parse::<Community>(),
            Ok(Community::Large(u32::MAX, 0, 7))
        );
        for good in ["0:0", "65535:65282", "large:1:2:3"] {
            assert_eq!(good.parse::<Community>().unwrap().to_string(), good);
        }
        for bad in [
            "65536:1",
            "1:2:3",
            "large:1:2",
            "large:1:2:4294967296",
            "+1:2",
            "no-export",
            "",
            "1:",
        ] {
            let err = bad.parse::<Community>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn timers_follow_the_rfc_ratio_when_only_one_is_given() {
        let mut p = peer("tor", "198.51.100.1");
        assert_eq!(p.timers(), None);
        p.hold_time = Some(9);
        assert_eq!(p.timers(), Some((3, 9)));
        p.keepalive_time = Some(1);
        assert_eq!(p.timers(), Some((1, 9)));
        p.hold_time = None;
        assert_eq!(p.timers(), Some((1, 3)));
    }
}
