//! `kubectl herald why SERVICE`: the whole story of one Service. Allocation is told by the
//! controller's own index and allocator, announcement by the speaker's own world and election,
//! fed with what the API server holds, so the story cannot drift from what they do. What the
//! API server does not hold is said as such: liveness comes from the speakers' heartbeat
//! Leases (the speakers themselves decide on gossip, which is faster), and which interfaces a
//! speaker has up travels only in gossip, so the interfaces shown are those the answering
//! speaker reported in the `Announced` condition. BGP is told by the speaker's own reading of
//! the BGP objects and [`bgp::decide`], fed with the layer-2 election's inputs as the speaker
//! feeds it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_controller::index::{Explanation, Index};
use herald_controller::service;
use herald_core::allocation::{Considered, PoolVerdict, Rule, ServiceKey};
use herald_core::bgp::{self, NodeVerdict};
use herald_core::election::{self, Outcome, Verdict};
use herald_core::selector::Labels;
use herald_crds::announced::Answering;
use herald_crds::{
    BGPAdvertisement, BGPPeer, IPAddressPool, L2Advertisement, conditions, service_status,
};
use herald_speaker::bgp::objects::BgpObjects;
use herald_speaker::heartbeat;
use herald_speaker::world::World;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::services::join;
use crate::table;

/// How many of the Service's Events are shown, the most recent.
const EVENTS: usize = 10;

/// What the API server holds that the story needs.
pub struct Objects<'a> {
    pub services: &'a [Service],
    pub pools: &'a [IPAddressPool],
    pub advertisements: &'a [L2Advertisement],
    /// Labels of each namespace, for pools' `serviceAllocation.namespaceSelectors`.
    pub namespaces: &'a BTreeMap<String, Labels>,
    pub nodes: &'a [Node],
    /// The EndpointSlices of the Service and of those sharing its addresses.
    pub slices: &'a [EndpointSlice],
    /// The speakers' heartbeat Leases.
    pub leases: &'a [Lease],
    /// The Service's Events.
    pub events: &'a [Event],
    /// The BGP objects, or why they cannot be read (their CRDs are not installed, or listing
    /// them is forbidden).
    pub bgp: Result<Bgp<'a>, String>,
}

/// The BGP objects the story needs.
pub struct Bgp<'a> {
    pub peers: &'a [BGPPeer],
    pub advertisements: &'a [BGPAdvertisement],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Why {
    pub namespace: String,
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub external_traffic_policy: String,
    pub allocation: Allocation,
    pub announcement: Announcement,
    pub events: Vec<EventView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The `Allocated` condition's reason, or `Pending` while it has none.
    pub state: String,
    pub message: String,
    pub pool: Option<String>,
    /// The rule that gives the Service its addresses: `requested`, `namedPool`,
    /// `serviceAllocation` or `autoAssign`.
    pub rule: &'static str,
    /// The rule in words.
    pub because: String,
    /// Every pool as automatic allocation sees it, in the order it tries them (only when the
    /// Service names no pool and asks for no address).
    pub pools: Vec<PoolConsidered>,
    pub sharing: Option<SharingView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolConsidered {
    pub name: String,
    /// `selects`, `autoAssign` (both candidates), `notAutoAssign`, `refuses` or `invalid`.
    pub verdict: &'static str,
    pub detail: String,
    /// For a Service without addresses: what the pool could give it now, or why nothing.
    pub offer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SharingView {
    pub key: String,
    pub annotation: String,
    /// `namespace/name` of each Service holding one of its addresses.
    pub with: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Announcement {
    /// The `Announced` condition's reason; `Pending` while no speaker reported, `NoAddress`
    /// when there is nothing to announce.
    pub state: String,
    pub message: String,
    /// The node answering and its interfaces, as that speaker reported them.
    pub node: Option<String>,
    pub interfaces: Vec<String>,
    /// The node the speakers' election picks from what the API server shows.
    pub elected: Option<String>,
    /// Why no node may announce the Service at all in layer 2, when none may.
    pub nowhere: Option<String>,
    pub nodes: Vec<NodeView>,
    /// The BGP story, when a BGPAdvertisement selects the Service's pool.
    pub bgp: Option<BgpView>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpView {
    /// `Advertised` or `NotAdvertised`.
    pub state: &'static str,
    /// Which nodes advertise it to which peers, or why none does, as the speakers say it in
    /// `Announced`.
    pub message: String,
    /// Every Node, the advertising ones first (none when the Service has no ready endpoint).
    pub nodes: Vec<BgpNodeView>,
    /// The BGP configuration problems that concern the Service, and BGP objects that cannot
    /// be read.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpNodeView {
    pub name: String,
    pub advertises: bool,
    /// `Advertises`, `PrefixTooWide`, `NotAlive`, `NetworkUnavailable`, `Excluded`,
    /// `NoReadyEndpoint`, `NotSelected` or `NoPeer`.
    pub verdict: &'static str,
    /// The peers it advertises the Service's addresses to.
    pub peers: Vec<String>,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub name: String,
    pub eligible: bool,
    /// `Eligible`, `NotAlive`, `NetworkUnavailable`, `Excluded`, `NoReadyEndpoint`,
    /// `NotSelected` or `InterfacesDown`.
    pub verdict: &'static str,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// When it last happened.
    pub last: Option<Timestamp>,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    /// The component that reported it.
    pub from: String,
}

/// The story of `service`, one of `objects.services`.
pub fn why(service: &Service, objects: &Objects, now: Timestamp) -> Why {
    let key = service::key(service);
    let addresses = service_status::addresses(service);
    let spec = service.spec.clone().unwrap_or_default();
    let allocation = allocation(service, &key, objects);
    let announcement = announcement(service, &key, &addresses, objects, now);
    Why {
        namespace: key.namespace,
        name: key.name,
        addresses,
        external_traffic_policy: spec
            .external_traffic_policy
            .unwrap_or_else(|| "Cluster".to_owned()),
        allocation,
        announcement,
        events: events(objects.events),
    }
}

fn allocation(service: &Service, key: &ServiceKey, objects: &Objects) -> Allocation {
    // The controller's own index, as a controller starting now would build it: every status
    // claimed back, nothing new allocated. The Service's own class is taken as the
    // controller's, so a classed Service is explained as that class's controller sees it.
    let class = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.clone());
    let mut index = Index::new(class.clone());
    for pool in objects.pools {
        index.apply_pool(pool);
    }
    for (name, labels) in objects.namespaces {
        index.apply_namespace(name, labels.clone());
    }
    for other in objects.services {
        index.apply_service(other);
    }
    index.claim_statuses();
    let condition = service_status::condition(service, conditions::ALLOCATED);
    let (state, message) = match condition {
        Some(c) => (c.reason.clone(), c.message.clone()),
        None => (
            "Pending".to_owned(),
            "the controller has not written its Allocated condition yet".to_owned(),
        ),
    };
    let Some(explanation) = index.explain(key) else {
        return Allocation {
            state,
            message,
            pool: None,
            rule: "notHerald",
            because: "Herald does not serve it: it is being deleted".to_owned(),
            pools: Vec::new(),
            sharing: None,
        };
    };
    let sources = service::sources(service);
    let pool = explanation.held.as_ref().map(|a| a.pool.clone());
    let (rule, mut because) = rule(&explanation, &sources);
    if let Some(class) = class {
        because.push_str(&format!(
            "; its loadBalancerClass is {class:?}: Herald serves it only when its controller \
             runs with --load-balancer-class {class}"
        ));
    }
    let pools = match explanation.request.rule() {
        Rule::Automatic => explanation.pools.iter().map(considered).collect(),
        _ => Vec::new(),
    };
    let sharing = explanation.request.sharing.as_ref().map(|s| SharingView {
        key: s.key.clone(),
        annotation: sources.sharing.clone().unwrap_or_default(),
        with: explanation
            .sharers
            .iter()
            .map(ServiceKey::to_string)
            .collect(),
    });
    Allocation {
        state,
        message,
        pool,
        rule,
        because,
        pools,
        sharing,
    }
}

/// The rule that gives the Service its addresses, and the rule in words.
fn rule(explanation: &Explanation, sources: &service::Sources) -> (&'static str, String) {
    let by = |source: &Option<String>| match source {
        Some(name) if name.starts_with("spec.") => format!("by {name}"),
        Some(name) => format!("by annotation {name}"),
        None => String::new(),
    };
    let held = explanation.held.as_ref();
    let mut rule = match explanation.request.rule() {
        Rule::Requested(ips) => {
            let mut words = format!("it asks for {} {}", join(&ips), by(&sources.addresses));
            if let Some(held) = held {
                words.push_str(&format!(", an address of pool {:?}", held.pool));
            }
            ("requested", words)
        }
        Rule::NamedPool(pool) => (
            "namedPool",
            format!("it names pool {pool:?} {}", by(&sources.pool)),
        ),
        Rule::Automatic => {
            let verdict = held.and_then(|held| {
                explanation
                    .pools
                    .iter()
                    .find(|c| c.pool == held.pool)
                    .map(|c| (held, &c.verdict))
            });
            match verdict {
                Some((held, PoolVerdict::Selects { .. })) => (
                    "serviceAllocation",
                    format!(
                        "it names no pool and asks for no address; pool {:?} serves it: {}",
                        held.pool,
                        held_verdict(explanation, &held.pool)
                    ),
                ),
                Some((held, _)) => (
                    "autoAssign",
                    format!(
                        "it names no pool and asks for no address; pool {:?} serves it: {}",
                        held.pool,
                        held_verdict(explanation, &held.pool)
                    ),
                ),
                None => (
                    "autoAssign",
                    "it names no pool and asks for no address: the pools are tried in the order \
                     below"
                        .to_owned(),
                ),
            }
        }
    };
    if let Some(error) = &explanation.error {
        rule.1
            .push_str(&format!("; its request has an error: {error}"));
    }
    rule
}

/// The held pool's verdict, and its place among the candidates.
fn held_verdict(explanation: &Explanation, pool: &str) -> String {
    let candidates: Vec<&Considered> = explanation
        .pools
        .iter()
        .filter(|c| {
            matches!(
                c.verdict,
                PoolVerdict::Selects { .. } | PoolVerdict::AutoAssign
            )
        })
        .collect();
    let verdict = explanation
        .pools
        .iter()
        .find(|c| c.pool == pool)
        .map(|c| c.verdict.to_string())
        .unwrap_or_default();
    match candidates.iter().position(|c| c.pool == pool) {
        Some(0) if candidates.len() == 1 => format!("{verdict} (the only candidate)"),
        Some(i) => format!("{verdict} (candidate {} of {})", i + 1, candidates.len()),
        None => format!("{verdict} (it holds the address from before)"),
    }
}

fn considered(considered: &Considered) -> PoolConsidered {
    PoolConsidered {
        name: considered.pool.clone(),
        verdict: match considered.verdict {
            PoolVerdict::Selects { .. } => "selects",
            PoolVerdict::AutoAssign => "autoAssign",
            PoolVerdict::NotAutoAssign => "notAutoAssign",
            PoolVerdict::Refuses(_) => "refuses",
            PoolVerdict::Invalid => "invalid",
        },
        detail: considered.verdict.to_string(),
        offer: considered.offer.as_ref().map(|offer| match offer {
            Ok(ips) => format!("would give {}", join(ips)),
            Err(e) => e.to_string(),
        }),
    }
}

fn announcement(
    service: &Service,
    key: &ServiceKey,
    addresses: &[IpAddr],
    objects: &Objects,
    now: Timestamp,
) -> Announcement {
    let condition = service_status::condition(service, conditions::ANNOUNCED);
    let answering = condition
        .filter(|c| c.status == "True")
        .and_then(|c| Answering::parse(&c.message));
    let (state, message) = match condition {
        Some(c) => (c.reason.clone(), c.message.clone()),
        None if addresses.is_empty() => (
            "NoAddress".to_owned(),
            "nothing to announce: the Service has no address".to_owned(),
        ),
        None => (
            "Pending".to_owned(),
            "no speaker has reported on it yet".to_owned(),
        ),
    };
    let mut announcement = Announcement {
        state,
        message,
        node: answering.as_ref().map(|a| a.node.clone()),
        interfaces: answering.map(|a| a.interfaces).unwrap_or_default(),
        elected: None,
        nowhere: None,
        nodes: Vec::new(),
        bgp: None,
        notes: Vec::new(),
    };
    // The speaker's own world, fed the group of Services sharing an address with this one
    // (only they decide where its addresses go).
    let mut world = World::default();
    for node in objects.nodes {
        world.apply_node(node);
    }
    for pool in objects.pools {
        world.apply_pool(pool);
    }
    for advertisement in objects.advertisements {
        if let Err(problem) = world.apply_advertisement(advertisement) {
            announcement.notes.push(problem);
        }
    }
    for other in objects.services {
        let theirs = service_status::addresses(other);
        if service::key(other) == *key || theirs.iter().any(|ip| addresses.contains(ip)) {
            world.apply_service(other);
        }
    }
    for slice in objects.slices {
        world.apply_slice(slice);
    }
    let (known, alive) = heartbeat::view(objects.leases.iter(), |n| world.is_node(n), now);
    // Links travel only in gossip: without them every live node is taken to serve.
    let inputs = world.inputs(&alive, &BTreeMap::new());
    let Some(ours) = inputs.services.iter().find(|s| s.key == *key) else {
        return announcement;
    };
    if let Some(Outcome::Announced { node, .. }) = election::elect(&inputs).get(key) {
        announcement.elected = Some(node.clone());
    }
    announcement.bgp = match &objects.bgp {
        Ok(objects) => bgp_view(objects, &inputs, ours, &known),
        Err(unreadable) => {
            announcement
                .notes
                .push(format!("BGP: not shown: {unreadable}"));
            None
        }
    };
    match election::node_verdicts(&inputs, ours) {
        Ok(verdicts) => {
            announcement.nodes = verdicts
                .into_iter()
                .map(|(name, verdict)| node_view(name, &verdict, &known, &announcement.node))
                .collect();
            // The answering node first, then the eligible ones, then the others.
            announcement
                .nodes
                .sort_by_key(|n| (announcement.node.as_ref() != Some(&n.name), !n.eligible));
        }
        // Creating an L2Advertisement is no advice for a pool that BGP announces.
        Err(election::Reason::NoAdvertisement { pool }) if announcement.bgp.is_some() => {
            announcement.nowhere = Some(format!("no L2Advertisement selects pool {pool:?}"));
        }
        Err(reason) => announcement.nowhere = Some(reason.to_string()),
    }
    announcement.notes.push(
        "alive: as the speakers' heartbeat Leases show; the speakers themselves decide on \
         gossip, which sees a failure sooner"
            .to_owned(),
    );
    let names_interfaces = objects
        .advertisements
        .iter()
        .any(|a| !a.spec.interfaces.is_empty());
    if names_interfaces {
        announcement.notes.push(
            "interfaces: as the speakers reported them, see Announced (which interfaces each \
             speaker has up travels only in gossip, not through the API server)"
                .to_owned(),
        );
    }
    if let (Some(elected), Some(node)) = (&announcement.elected, &announcement.node)
        && elected != node
    {
        announcement.notes.push(format!(
            "from what the API server shows, the speakers would elect {elected}, yet {node} \
             answers: they see liveness or interfaces through gossip, or are moving it now"
        ));
    }
    announcement
}

/// The BGP story of `service`, as the speakers decide it from the layer-2 election's
/// `inputs`; None when no BGPAdvertisement selects its pool.
fn bgp_view(
    objects: &Bgp,
    inputs: &election::Inputs,
    service: &election::Service,
    known: &BTreeSet<String>,
) -> Option<BgpView> {
    let mut notes = Vec::new();
    // The speaker's own reading; passwords play no part in what is advertised.
    let mut read = BgpObjects::default();
    for peer in objects.peers {
        if let Err(problem) = read.apply_peer(peer) {
            notes.push(problem);
        }
    }
    for advertisement in objects.advertisements {
        if let Err(problem) = read.apply_advertisement(advertisement) {
            notes.push(problem);
        }
    }
    let inputs = bgp::Inputs {
        nodes: inputs.nodes.clone(),
        alive: inputs.alive.clone(),
        pools: inputs.pools.clone(),
        peers: read.peers(),
        advertisements: read.advertisements(),
        services: inputs.services.clone(),
    };
    let decision = bgp::decide(&inputs);
    let outcome = decision.services.get(&service.key)?;
    notes.extend(
        bgp::problems_of(&inputs, &decision, service)
            .iter()
            .map(ToString::to_string),
    );
    let mut nodes: Vec<BgpNodeView> = bgp::node_verdicts(&inputs, &decision, service)
        .into_iter()
        .map(|(name, verdict)| bgp_node_view(name, &verdict, known))
        .collect();
    nodes.sort_by_key(|n| !n.advertises);
    Some(BgpView {
        state: match outcome {
            bgp::Outcome::Advertised { .. } => "Advertised",
            bgp::Outcome::NotAdvertised(_) => "NotAdvertised",
        },
        message: outcome.to_string(),
        nodes,
        notes,
    })
}

fn bgp_node_view(name: String, verdict: &NodeVerdict, known: &BTreeSet<String>) -> BgpNodeView {
    let (code, detail) = match verdict {
        NodeVerdict::Standing(standing) => (
            verdict_code(standing),
            standing_detail(&name, standing, known),
        ),
        NodeVerdict::Advertises { .. } => ("Advertises", verdict.to_string()),
        NodeVerdict::PrefixTooWide { .. } => ("PrefixTooWide", verdict.to_string()),
        NodeVerdict::NoReadyEndpoint => ("NoReadyEndpoint", verdict.to_string()),
        NodeVerdict::NotSelected { .. } => ("NotSelected", verdict.to_string()),
        NodeVerdict::NoPeer { .. } => ("NoPeer", verdict.to_string()),
    };
    let peers = match verdict {
        NodeVerdict::Advertises { peers } => peers.iter().cloned().collect(),
        _ => Vec::new(),
    };
    BgpNodeView {
        advertises: !peers.is_empty(),
        verdict: code,
        peers,
        detail,
        name,
    }
}

fn verdict_code(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Eligible => "Eligible",
        Verdict::NotAlive => "NotAlive",
        Verdict::NetworkUnavailable => "NetworkUnavailable",
        Verdict::Excluded => "Excluded",
        Verdict::NoReadyEndpoint => "NoReadyEndpoint",
        Verdict::NotSelected { .. } => "NotSelected",
        Verdict::InterfacesDown { .. } => "InterfacesDown",
    }
}

/// A verdict in words, saying for a node that is not alive what its heartbeat Lease shows.
fn standing_detail(name: &str, verdict: &Verdict, known: &BTreeSet<String>) -> String {
    match verdict {
        Verdict::NotAlive if known.contains(name) => {
            format!("{verdict}: its heartbeat Lease expired")
        }
        Verdict::NotAlive => format!("{verdict}: no speaker keeps a heartbeat Lease for it"),
        _ => verdict.to_string(),
    }
}

fn node_view(
    name: String,
    verdict: &Verdict,
    known: &BTreeSet<String>,
    answering: &Option<String>,
) -> NodeView {
    let code = verdict_code(verdict);
    let detail = match verdict {
        Verdict::Eligible if answering.as_ref() == Some(&name) => "answers".to_owned(),
        _ => standing_detail(&name, verdict, known),
    };
    NodeView {
        eligible: *verdict == Verdict::Eligible,
        verdict: code,
        detail,
        name,
    }
}

fn events(events: &[Event]) -> Vec<EventView> {
    let time = |t: &Option<Time>| t.as_ref().map(|t| t.0);
    let mut views: Vec<EventView> = events
        .iter()
        .map(|e| EventView {
            last: e
                .series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| t.0)
                .or_else(|| time(&e.last_timestamp))
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| time(&e.metadata.creation_timestamp)),
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1)
                .max(1),
            from: e
                .reporting_component
                .clone()
                .filter(|c| !c.is_empty())
                .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
                .unwrap_or_default(),
        })
        .collect();
    views.sort_by_key(|e| e.last);
    let skip = views.len().saturating_sub(EVENTS);
    views.split_off(skip)
}

/// The story in plain words.
pub fn render(why: &Why, now: Timestamp) -> String {
    let or_none = |ips: &[IpAddr]| {
        if ips.is_empty() {
            "no address".to_owned()
        } else {
            join(ips)
        }
    };
    let mut out = format!(
        "Service {}/{}: {} (externalTrafficPolicy {})\n",
        why.namespace,
        why.name,
        or_none(&why.addresses),
        why.external_traffic_policy
    );
    let allocation = &why.allocation;
    out.push_str(&format!(
        "\nAllocation: {}: {}\n  Rule: {}\n",
        allocation.state, allocation.message, allocation.because
    ));
    if let Some(sharing) = &allocation.sharing {
        let with = if sharing.with.is_empty() {
            "no other Service holds its address now".to_owned()
        } else {
            format!("shares with {}", sharing.with.join(", "))
        };
        out.push_str(&format!(
            "  Sharing: key {:?} ({}); {with}\n",
            sharing.key, sharing.annotation
        ));
    }
    if !allocation.pools.is_empty() {
        out.push_str("  Pools, in the order allocation tries them:\n");
        let with_offers = allocation.pools.iter().any(|p| p.offer.is_some());
        let rows: Vec<Vec<String>> = allocation
            .pools
            .iter()
            .map(|p| {
                let mut row = vec![p.name.clone(), p.detail.clone()];
                if with_offers {
                    row.push(p.offer.clone().unwrap_or_else(|| "-".to_owned()));
                }
                row
            })
            .collect();
        let headers: &[&str] = if with_offers {
            &["POOL", "VERDICT", "NOW"]
        } else {
            &["POOL", "VERDICT"]
        };
        out.push_str(&indent(&indent(&table::render(headers, &rows))));
    }
    let announcement = &why.announcement;
    out.push_str(&format!(
        "\nAnnouncement: {}: {}\n",
        announcement.state, announcement.message
    ));
    match &announcement.bgp {
        None => out.push_str(&indent(&layer2(announcement))),
        Some(bgp) => {
            out.push_str(&indent(&labelled_layer2(announcement)));
            out.push_str(&indent(&bgp_story(bgp)));
        }
    }
    for note in &announcement.notes {
        out.push_str(&format!("  Note: {note}\n"));
    }
    out.push_str("\nEvents:");
    if why.events.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        let rows: Vec<Vec<String>> = why
            .events
            .iter()
            .map(|e| {
                let mut last = e.last.map_or("-".to_owned(), |t| age(now, t));
                if e.count > 1 {
                    last.push_str(&format!(" (x{})", e.count));
                }
                vec![
                    last,
                    e.type_.clone(),
                    e.reason.clone(),
                    e.from.clone(),
                    e.message.clone(),
                ]
            })
            .collect();
        out.push_str(&indent(&table::render(
            &["LAST", "TYPE", "REASON", "FROM", "MESSAGE"],
            &rows,
        )));
    }
    out
}

/// The layer-2 story of a Service that BGP leaves alone.
fn layer2(announcement: &Announcement) -> String {
    let mut out = String::new();
    if let (None, Some(elected)) = (&announcement.node, &announcement.elected) {
        out.push_str(&format!(
            "The speakers would elect {elected}, from what the API server shows\n"
        ));
    }
    if let Some(nowhere) = &announcement.nowhere {
        out.push_str(&format!("No node may announce it: {nowhere}\n"));
    }
    out.push_str(&layer2_table(announcement));
    out
}

/// The layer-2 story beside the BGP one, labelled as such.
fn labelled_layer2(announcement: &Announcement) -> String {
    let summary = match (
        &announcement.nowhere,
        &announcement.node,
        &announcement.elected,
    ) {
        (Some(nowhere), _, _) => format!("not announced: {nowhere}"),
        (None, Some(node), _) => format!("node {node} answers"),
        (None, None, Some(elected)) => {
            format!("the speakers would elect {elected}, from what the API server shows")
        }
        (None, None, None) => "not announced".to_owned(),
    };
    format!(
        "Layer 2: {summary}\n{}",
        indent(&layer2_table(announcement))
    )
}

fn layer2_table(announcement: &Announcement) -> String {
    if announcement.nodes.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = announcement
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                if n.eligible { "yes" } else { "no" }.to_owned(),
                n.detail.clone(),
            ]
        })
        .collect();
    table::render(&["NODE", "ELIGIBLE", "WHY"], &rows)
}

fn bgp_story(bgp: &BgpView) -> String {
    let mut out = format!("BGP: {}\n", bgp.message);
    if !bgp.nodes.is_empty() {
        let rows: Vec<Vec<String>> = bgp
            .nodes
            .iter()
            .map(|n| {
                vec![
                    n.name.clone(),
                    if n.advertises { "yes" } else { "no" }.to_owned(),
                    n.detail.clone(),
                ]
            })
            .collect();
        out.push_str(&indent(&table::render(
            &["NODE", "ADVERTISES", "WHY"],
            &rows,
        )));
    }
    for note in &bgp.notes {
        out.push_str(&format!("  Note: {note}\n"));
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// How long ago, as kubectl says it.
fn age(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s if s < 172_800 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(bgp: Option<BgpView>, nowhere: Option<&str>) -> Why {
        Why {
            namespace: "shop".into(),
            name: "web".into(),
            addresses: vec!["203.0.113.0".parse().unwrap()],
            external_traffic_policy: "Cluster".into(),
            allocation: Allocation {
                state: "Allocated".into(),
                message: "203.0.113.0 from pool \"routed\"".into(),
                pool: Some("routed".into()),
                rule: "namedPool",
                because: "it names pool \"routed\" by annotation herald.dev/address-pool".into(),
                pools: Vec::new(),
                sharing: None,
            },
            announcement: Announcement {
                state: "Announced".into(),
                message: "node a answers for 203.0.113.0 on eth0".into(),
                node: nowhere.is_none().then(|| "a".to_owned()),
                interfaces: vec!["eth0".into()],
                elected: nowhere.is_none().then(|| "a".to_owned()),
                nowhere: nowhere.map(str::to_owned),
                nodes: if nowhere.is_some() {
                    Vec::new()
                } else {
                    vec![NodeView {
                        name: "a".into(),
                        eligible: true,
                        verdict: "Eligible",
                        detail: "answers".into(),
                    }]
                },
                bgp,
                notes: vec!["alive: as the heartbeat Leases show".into()],
            },
            events: Vec::new(),
        }
    }

    fn announcement_lines(why: &Why) -> String {
        let text = render(why, Timestamp::UNIX_EPOCH);
        let start = text.find("Announcement:").unwrap();
        let end = text.find("\nEvents:").unwrap();
        text[start..end].to_owned()
    }

    fn bgp() -> BgpView {
        BgpView {
            state: "Advertised",
            message: "advertised over BGP by node a to peer tor".into(),
            nodes: vec![
                BgpNodeView {
                    name: "a".into(),
                    advertises: true,
                    verdict: "Advertises",
                    peers: vec!["tor".into()],
                    detail: "to peer tor".into(),
                },
                BgpNodeView {
                    name: "b".into(),
                    advertises: false,
                    verdict: "NotAlive",
                    peers: Vec::new(),
                    detail: "its speaker is not alive".into(),
                },
            ],
            notes: vec!["BGPPeer \"tor2\" has the peerAddress of BGPPeer \"tor\"".into()],
        }
    }

    #[test]
    fn a_service_announced_both_ways_tells_each_story_under_its_label() {
        assert_eq!(
            announcement_lines(&why(Some(bgp()), None)),
            "Announcement: Announced: node a answers for 203.0.113.0 on eth0\n  \
             Layer 2: node a answers\n    \
             NODE  ELIGIBLE  WHY\n    \
             a     yes       answers\n  \
             BGP: advertised over BGP by node a to peer tor\n    \
             NODE  ADVERTISES  WHY\n    \
             a     yes         to peer tor\n    \
             b     no          its speaker is not alive\n    \
             Note: BGPPeer \"tor2\" has the peerAddress of BGPPeer \"tor\"\n  \
             Note: alive: as the heartbeat Leases show\n"
        );
    }

    #[test]
    fn a_service_bgp_leaves_alone_keeps_its_unlabelled_layer_2_story() {
        assert_eq!(
            announcement_lines(&why(
                None,
                Some(
                    "no L2Advertisement selects pool \"routed\": create one to announce its addresses"
                )
            )),
            "Announcement: Announced: node a answers for 203.0.113.0 on eth0\n  \
             No node may announce it: no L2Advertisement selects pool \"routed\": create one to \
             announce its addresses\n  \
             Note: alive: as the heartbeat Leases show\n"
        );
    }
}
