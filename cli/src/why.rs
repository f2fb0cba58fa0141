//! `kubectl herald why SERVICE`: the whole story of one Service. Allocation is told by the
//! controller's own index and allocator, announcement by the speaker's own world and election,
//! fed with what the API server holds, so the story cannot drift from what they do. What the
//! API server does not hold is said as such: liveness comes from the speakers' heartbeat
//! Leases (the speakers themselves decide on gossip, which is faster), and which interfaces a
//! speaker has up travels only in gossip, so the interfaces shown are those the answering
//! speaker reported in the `Announced` condition.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_controller::index::{Explanation, Index};
use herald_controller::service;
use herald_core::allocation::{Considered, PoolVerdict, Rule, ServiceKey};
use herald_core::election::{self, Outcome, Verdict};
use herald_core::selector::Labels;
use herald_crds::announced::Answering;
use herald_crds::{IPAddressPool, L2Advertisement, conditions, service_status};
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
    /// Why no node may announce the Service at all, when none may.
    pub nowhere: Option<String>,
    pub nodes: Vec<NodeView>,
    pub notes: Vec<String>,
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

fn node_view(
    name: String,
    verdict: &Verdict,
    known: &BTreeSet<String>,
    answering: &Option<String>,
) -> NodeView {
    let code = match verdict {
        Verdict::Eligible => "Eligible",
        Verdict::NotAlive => "NotAlive",
        Verdict::NetworkUnavailable => "NetworkUnavailable",
        Verdict::Excluded => "Excluded",
        Verdict::NoReadyEndpoint => "NoReadyEndpoint",
        Verdict::NotSelected { .. } => "NotSelected",
        Verdict::InterfacesDown { .. } => "InterfacesDown",
    };
    let detail = match verdict {
        Verdict::Eligible if answering.as_ref() == Some(&name) => "answers".to_owned(),
        Verdict::NotAlive if known.contains(&name) => {
            format!("{verdict}: its heartbeat Lease expired")
        }
        Verdict::NotAlive => format!("{verdict}: no speaker keeps a heartbeat Lease for it"),
        _ => verdict.to_string(),
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
    if let (None, Some(elected)) = (&announcement.node, &announcement.elected) {
        out.push_str(&format!(
            "  The speakers would elect {elected}, from what the API server shows\n"
        ));
    }
    if let Some(nowhere) = &announcement.nowhere {
        out.push_str(&format!("  No node may announce it: {nowhere}\n"));
    }
    if !announcement.nodes.is_empty() {
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
        out.push_str(&indent(&table::render(&["NODE", "ELIGIBLE", "WHY"], &rows)));
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
