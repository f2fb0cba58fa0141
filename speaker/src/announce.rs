//! The speaker's decisions, as data: from the world, the live speakers, the API server's view
//! of the heartbeats, the node's interfaces and the conflicts seen, an [`Announcer`] plans
//! what each interface answers for, which `herald.dev/Announced` conditions to write and which
//! Events to publish. It makes no call and reads no clock; the runtime carries the plan out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_core::allocation::ServiceKey;
use herald_core::bgp;
use herald_core::election::{self, Links, Outcome, elect};
use herald_core::fencing::{self, ApiView, Silence, Verdict};
use herald_crds::announced::Answering;
use herald_crds::{EventReason, reasons};

use crate::link::interfaces::{self, Interface};
use crate::link::responder::{Answer, Wanted};
use crate::link::segments::Segments;
use crate::world::World;

/// Another host on the LAN answered for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub mac: String,
    pub interface: String,
}

/// Everything one pass decides on.
pub struct Pass<'a> {
    pub world: &'a World,
    /// The speakers gossip shows alive, this one included.
    pub alive: &'a BTreeSet<String>,
    /// The speakers that should be running: Nodes with a heartbeat Lease.
    pub peers: &'a BTreeSet<String>,
    pub api: &'a ApiView,
    /// This node's interfaces, as last scanned.
    pub interfaces: &'a [Interface],
    /// Which of them share a segment: an address is answered on one interface per segment.
    pub segments: &'a Segments,
    /// What the other speakers said they can answer on (see [`interfaces::links`]). This
    /// node's own come from `interfaces`, fresher than what its peers heard.
    pub links: &'a BTreeMap<String, Links>,
    /// Addresses other hosts answered for, recently.
    pub conflicts: &'a BTreeMap<IpAddr, Conflict>,
    /// Addresses the responders answer for now (probed, announced), and on which interfaces.
    pub answering: &'a BTreeMap<IpAddr, BTreeSet<String>>,
    /// Whether BGP advertises each Service a BGPAdvertisement selects (see
    /// [`bgp::decide`]); empty without BGP.
    pub bgp: &'a BTreeMap<ServiceKey, bgp::Outcome>,
}

/// The Announced condition as the speaker writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regarding {
    Service(ServiceKey),
    Advertisement { name: String, uid: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub regarding: Regarding,
    pub reason: EventReason,
    pub warning: bool,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What each interface answers for, or why this speaker answers for nothing.
    pub answer: Result<BTreeMap<String, Wanted>, Silence>,
    /// The Announced condition each Service should show (only those this speaker reports on).
    pub conditions: Vec<(ServiceKey, Announced)>,
    pub events: Vec<Event>,
    /// How many (address, interface) pairs are answered.
    pub announced: usize,
}

/// Plans each pass, remembering what it announced so that Events follow transitions and an
/// address is probed before this node first answers for it.
#[derive(Debug)]
pub struct Announcer {
    me: String,
    /// Services this node announces, for the Announcing event.
    announcing: BTreeSet<ServiceKey>,
    /// Addresses this node has answered for since it started.
    announced_before: BTreeSet<IpAddr>,
    /// Invalid L2Advertisements reported, with what was said.
    reported_invalid: BTreeMap<String, String>,
}

impl Announcer {
    pub fn new(me: impl Into<String>) -> Self {
        Announcer {
            me: me.into(),
            announcing: BTreeSet::new(),
            announced_before: BTreeSet::new(),
            reported_invalid: BTreeMap::new(),
        }
    }

    pub fn plan(&mut self, pass: &Pass) -> Plan {
        self.announced_before.extend(pass.answering.keys().copied());
        let mut links = pass.links.clone();
        links.insert(
            self.me.clone(),
            interfaces::links(pass.interfaces, &pass.world.advertised_interfaces()),
        );
        let outcomes = elect(&pass.world.inputs(pass.alive, &links));
        // Per Service this node wins, per address: the interfaces that address is answered on.
        let mine: Vec<(&ServiceKey, BTreeMap<IpAddr, Vec<&Interface>>)> = outcomes
            .iter()
            .filter_map(|(key, outcome)| match outcome {
                Outcome::Announced { node, interfaces } if *node == self.me => Some((
                    key,
                    interfaces
                        .iter()
                        .map(|(ip, names)| {
                            let selected = interfaces::select(names, pass.interfaces);
                            (*ip, pass.segments.one_per_segment(selected))
                        })
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        let link_up = mine.is_empty()
            || mine
                .iter()
                .any(|(_, per_address)| per_address.values().any(|i| !i.is_empty()));
        if let Verdict::Quiet(why) =
            fencing::verdict(&self.me, link_up, pass.peers, pass.alive, pass.api)
        {
            self.announcing.clear();
            return Plan {
                answer: Err(why),
                conditions: Vec::new(),
                events: Vec::new(),
                announced: 0,
            };
        }

        let mut plan = Plan {
            answer: Ok(BTreeMap::new()),
            conditions: Vec::new(),
            events: Vec::new(),
            announced: 0,
        };
        let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
        for (key, per_address) in &mine {
            let Some(facts) = pass.world.service(key) else {
                continue;
            };
            let shown = facts
                .announced
                .as_ref()
                .filter(|c| c.status == "True")
                .map(|c| c.message.as_str());
            if let Some((ip, conflict)) = facts
                .ips
                .iter()
                .find_map(|ip| pass.conflicts.get(ip).map(|c| (*ip, c)))
            {
                let condition = Announced {
                    status: false,
                    reason: reasons::ADDRESS_CONFLICT,
                    message: format!(
                        "{ip} is already used by {} on {} (seen by node {}); not announced",
                        conflict.mac, conflict.interface, self.me
                    ),
                };
                if self.announcing.remove(*key) || shown.is_some() {
                    plan.events.push(Event {
                        regarding: Regarding::Service((*key).clone()),
                        reason: EventReason::AddressConflict,
                        warning: true,
                        note: condition.message.clone(),
                    });
                }
                plan.conditions.push(((*key).clone(), condition));
                continue;
            }
            for (ip, ifaces) in per_address {
                // Probe an address unless this node answered for it before, or the Service
                // shows that a node of the cluster did (a failover must not wait).
                let answer = if !self.announced_before.contains(ip)
                    && !shown.is_some_and(|m| names_address(m, *ip))
                {
                    Answer::AfterProbe
                } else {
                    Answer::AtOnce
                };
                for interface in ifaces {
                    wanted
                        .entry(interface.name.clone())
                        .or_default()
                        .insert(*ip, answer);
                    plan.announced += 1;
                }
            }
            // Say so once the responders answer (after the probe, for a new address).
            if facts.ips.iter().all(|ip| pass.answering.contains_key(ip)) {
                let mut message = announced_message(&self.me, &facts.ips, per_address, facts.local);
                if let Some(advertised @ bgp::Outcome::Advertised { .. }) = pass.bgp.get(*key) {
                    message = format!("{message}; {advertised}");
                }
                let condition = Announced {
                    status: true,
                    reason: reasons::ANNOUNCED,
                    message,
                };
                if self.announcing.insert((*key).clone()) {
                    plan.events.push(Event {
                        regarding: Regarding::Service((*key).clone()),
                        reason: EventReason::Announcing,
                        warning: false,
                        note: condition.message.clone(),
                    });
                }
                plan.conditions.push(((*key).clone(), condition));
            }
        }
        self.announcing
            .retain(|key| mine.iter().any(|(k, _)| *k == key));
        // Addresses answered here that another node won: answered until it announces them, so
        // that a request meets neither two answers nor none.
        for outcome in outcomes.values() {
            let Outcome::Announced { node, interfaces } = outcome else {
                continue;
            };
            if *node == self.me {
                continue;
            }
            for ip in interfaces.keys() {
                for interface in pass.answering.get(ip).into_iter().flatten() {
                    wanted
                        .entry(interface.clone())
                        .or_default()
                        .entry(*ip)
                        .or_insert(Answer::UntilTakenOver);
                }
            }
        }

        // Services nobody may announce, and invalid advertisements: the first speaker alive
        // (by name) says why, once per change.
        if pass.alive.iter().next() == Some(&self.me) {
            let invalid = pass.world.invalid_advertisements();
            for (name, (uid, problem)) in invalid {
                if self.reported_invalid.get(name) != Some(problem) {
                    plan.events.push(Event {
                        regarding: Regarding::Advertisement {
                            name: name.clone(),
                            uid: uid.clone(),
                        },
                        reason: EventReason::InvalidSpec,
                        warning: true,
                        note: problem.clone(),
                    });
                }
            }
            self.reported_invalid = invalid
                .iter()
                .map(|(name, (_, problem))| (name.clone(), problem.clone()))
                .collect();
            for (key, outcome) in &outcomes {
                if let Outcome::NotAnnounced(reason) = outcome {
                    plan.conditions
                        .push((key.clone(), not_on_layer2(reason, pass.bgp.get(key))));
                }
            }
        }
        plan.answer = Ok(wanted);
        plan
    }
}

/// The Announced message: which node answers for which addresses, on which interfaces, and
/// why that node ([`Answering`], the format tools read too). It names the addresses, so that a
/// speaker taking a Service over can tell an address the cluster announced before (no probe:
/// the failover must not wait) from a new one.
fn announced_message(
    node: &str,
    ips: &[IpAddr],
    interfaces: &BTreeMap<IpAddr, Vec<&Interface>>,
    local: bool,
) -> String {
    let names: BTreeSet<&str> = interfaces
        .values()
        .flatten()
        .map(|i| i.name.as_str())
        .collect();
    let why = if local {
        "the first choice for its addresses among the live nodes with a ready endpoint \
         (externalTrafficPolicy Local) that may announce them"
    } else {
        "the first choice for its addresses among the live nodes that may announce them"
    };
    Answering {
        node: node.to_owned(),
        ips: ips.to_vec(),
        interfaces: names.into_iter().map(str::to_owned).collect(),
    }
    .message(why)
}

/// The Announced condition of a Service that layer 2 does not announce, which BGP may
/// advertise: the first speaker alive writes it, as every node advertising it would say the
/// same.
fn not_on_layer2(reason: &election::Reason, bgp: Option<&bgp::Outcome>) -> Announced {
    let no_l2_advertisement = matches!(reason, election::Reason::NoAdvertisement { .. });
    match bgp {
        Some(advertised @ bgp::Outcome::Advertised { .. }) => Announced {
            status: true,
            reason: reasons::ANNOUNCED,
            message: if no_l2_advertisement {
                advertised.to_string()
            } else {
                format!("{advertised}; not announced on layer 2: {reason}")
            },
        },
        // BGP alone is meant to announce the pool: why it does not, with no advice to add
        // layer 2.
        Some(not_advertised @ bgp::Outcome::NotAdvertised(why)) if no_l2_advertisement => {
            Announced {
                status: false,
                reason: reasons::not_advertised(why),
                message: not_advertised.to_string(),
            }
        }
        Some(not_advertised) => Announced {
            status: false,
            reason: reasons::not_announced(reason),
            message: format!("{reason}; {not_advertised}"),
        },
        None => Announced {
            status: false,
            reason: reasons::not_announced(reason),
            message: reason.to_string(),
        },
    }
}

/// Whether an Announced message names `ip` among the addresses answered for.
fn names_address(message: &str, ip: IpAddr) -> bool {
    Answering::parse(message).is_some_and(|answering| answering.ips.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::responder::{Action, Frame, Report, Responder, Timings};
    use crate::packet::{self, MacAddr, NDP_HOP_LIMIT, Nonce};
    use herald_crds::{IPAddressPool, L2Advertisement};
    use k8s_openapi::api::core::v1::{Node, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;
    use std::net::Ipv6Addr;
    use std::time::Instant;

    const ME: &str = "node-a";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn eth0(up: bool) -> Vec<Interface> {
        vec![Interface {
            name: "eth0".into(),
            index: 2,
            mac: MacAddr::zero(),
            up,
            suitable_by_default: true,
        }]
    }

    /// A world of one node (this one), a pool, an advertisement and Service `web` with `ips`
    /// and, when given, the Announced condition it shows.
    fn world(ips: &[&str], shown: Option<&str>) -> World {
        let mut world = World::default();
        let node: Node = serde_json::from_value(json!({"metadata": {"name": ME},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}}))
        .unwrap();
        world.apply_node(&node);
        let pool: IPAddressPool =
            serde_json::from_value(json!({"metadata": {"name": "lan", "uid": "p"},
            "spec": {"addresses": ["192.0.2.200/29", "2001:db8::200/125"]}}))
            .unwrap();
        world.apply_pool(&pool);
        let advert: L2Advertisement =
            serde_json::from_value(json!({"metadata": {"name": "all"}, "spec": {}})).unwrap();
        world.apply_advertisement(&advert).unwrap();
        let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let mut conditions = vec![json!({"type": "herald.dev/Allocated", "status": "True",
            "reason": "Allocated", "message": "", "lastTransitionTime": "2026-11-28T00:00:00Z"})];
        if let Some(message) = shown {
            conditions.push(json!({"type": "herald.dev/Announced", "status": "True",
                "reason": "Announced", "message": message, "lastTransitionTime": "2026-11-28T00:00:00Z"}));
        }
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": ingress}, "conditions": conditions},
        }))
        .unwrap();
        world.apply_service(&service);
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["198.51.100.10"], "nodeName": ME, "conditions": {"ready": true}}],
        }))
        .unwrap();
        world.apply_slice(&slice);
        world
    }

    struct Fixture {
        world: World,
        alive: BTreeSet<String>,
        interfaces: Vec<Interface>,
        segments: Segments,
        links: BTreeMap<String, Links>,
        conflicts: BTreeMap<IpAddr, Conflict>,
        answering: BTreeMap<IpAddr, BTreeSet<String>>,
        bgp: BTreeMap<ServiceKey, bgp::Outcome>,
    }

    impl Fixture {
        fn new(world: World) -> Self {
            Fixture {
                world,
                alive: BTreeSet::from([ME.to_string()]),
                interfaces: eth0(true),
                segments: Segments::default(),
                links: BTreeMap::new(),
                conflicts: BTreeMap::new(),
                answering: BTreeMap::new(),
                bgp: BTreeMap::new(),
            }
        }

        fn plan(&self, announcer: &mut Announcer) -> Plan {
            announcer.plan(&Pass {
                world: &self.world,
                alive: &self.alive,
                peers: &self.alive,
                api: &ApiView::Fresh(self.alive.clone()),
                interfaces: &self.interfaces,
                segments: &self.segments,
                links: &self.links,
                conflicts: &self.conflicts,
                answering: &self.answering,
                bgp: &self.bgp,
            })
        }
    }

    fn answers(plan: &Plan) -> Wanted {
        plan.answer.as_ref().unwrap()["eth0"].clone()
    }

    /// `ips` answered on eth0.
    fn on_eth0(ips: &[&str]) -> BTreeMap<IpAddr, BTreeSet<String>> {
        ips.iter()
            .map(|i| (ip(i), BTreeSet::from(["eth0".to_owned()])))
            .collect()
    }

    #[test]
    fn a_new_address_is_probed_then_announced_once_with_an_event() {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        let mut announcer = Announcer::new(ME);
        let first = fixture.plan(&mut announcer);
        assert_eq!(
            answers(&first),
            Wanted::from([(ip("192.0.2.200"), Answer::AfterProbe)])
        );
        assert!(first.conditions.is_empty() && first.events.is_empty());
        // The responder probed and answers now.
        fixture.answering = on_eth0(&["192.0.2.200"]);
        let second = fixture.plan(&mut announcer);
        let (_, condition) = &second.conditions[0];
        assert_eq!(
            condition.message,
            "node node-a answers for 192.0.2.200 on eth0: the first choice for its addresses \
             among the live nodes that may announce them"
        );
        assert_eq!(second.events[0].reason, EventReason::Announcing);
        assert!(fixture.plan(&mut announcer).events.is_empty());
    }

    #[test]
    fn an_address_the_cluster_announced_is_taken_over_without_a_probe() {
        let shown = "node node-b answers for 192.0.2.200 on eth0: the first choice";
        let fixture = Fixture::new(world(&["192.0.2.200"], Some(shown)));
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert_eq!(
            answers(&plan),
            Wanted::from([(ip("192.0.2.200"), Answer::AtOnce)])
        );
    }

    #[test]
    fn a_new_address_of_an_announced_service_is_probed() {
        // A pool edit moved the Service from .200 to .201; its condition still names .200.
        let shown = "node node-b answers for 192.0.2.200 on eth0: the first choice";
        let fixture = Fixture::new(world(&["192.0.2.201"], Some(shown)));
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert_eq!(
            answers(&plan),
            Wanted::from([(ip("192.0.2.201"), Answer::AfterProbe)])
        );
    }

    #[test]
    fn an_address_another_host_uses_is_not_answered_and_the_condition_says_who() {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        fixture.conflicts.insert(
            ip("192.0.2.200"),
            Conflict {
                mac: "02:00:00:00:00:99".into(),
                interface: "eth0".into(),
            },
        );
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert!(plan.answer.as_ref().unwrap().is_empty());
        let (_, condition) = &plan.conditions[0];
        assert_eq!(condition.reason, reasons::ADDRESS_CONFLICT);
        assert!(
            condition
                .message
                .starts_with("192.0.2.200 is already used by 02:00:00:00:00:99")
        );
    }

    #[test]
    fn a_node_whose_only_interface_is_down_is_no_candidate_and_says_why() {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        fixture.interfaces = eth0(false);
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert_eq!(plan.answer, Ok(BTreeMap::new()));
        let (_, condition) = &plan.conditions[0];
        assert_eq!(condition.reason, reasons::NO_ELIGIBLE_NODE);
        assert!(
            condition.message.contains("has a suitable interface up"),
            "{}",
            condition.message
        );
    }

    #[test]
    fn only_a_node_that_said_it_has_the_interface_up_is_elected() {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        let peer: Node = serde_json::from_value(json!({"metadata": {"name": "node-b"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.12"}]}}))
        .unwrap();
        fixture.world.apply_node(&peer);
        fixture.alive.insert("node-b".into());
        let links = |up: &[&str]| Links {
            up: up.iter().map(|n| n.to_string()).collect(),
            suitable_up: !up.is_empty(),
        };
        // The peer's eth0 is down: this node answers, whichever the first choice.
        fixture.links = BTreeMap::from([("node-b".to_string(), links(&[]))]);
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert_eq!(
            answers(&plan),
            Wanted::from([(ip("192.0.2.200"), Answer::AfterProbe)])
        );
        // Ours is down and the peer's up: the peer answers, and this node stays in service.
        fixture.interfaces = eth0(false);
        fixture.links = BTreeMap::from([("node-b".to_string(), links(&["eth0"]))]);
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert_eq!(plan.answer, Ok(BTreeMap::new()));
    }

    /// This node answers for web's address; web is Local and its only ready endpoint is on
    /// node-b (`ready_on_b`) or nowhere.
    fn handing_over(ready_on_b: bool) -> Fixture {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        let peer: Node = serde_json::from_value(json!({"metadata": {"name": "node-b"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.12"}]}}))
        .unwrap();
        fixture.world.apply_node(&peer);
        fixture.alive.insert("node-b".into());
        let local: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.200"}]},
                       "conditions": [{"type": "herald.dev/Allocated", "status": "True", "reason": "Allocated",
                                       "message": "", "lastTransitionTime": "2026-11-28T00:00:00Z"}]},
        }))
        .unwrap();
        fixture.world.apply_service(&local);
        let endpoints: Vec<_> = ready_on_b
            .then(|| json!({"addresses": ["198.51.100.11"], "nodeName": "node-b", "conditions": {"ready": true}}))
            .into_iter()
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": endpoints,
        }))
        .unwrap();
        fixture.world.apply_slice(&slice);
        fixture.answering = on_eth0(&["192.0.2.200"]);
        fixture
    }

    #[test]
    fn an_address_another_node_won_is_answered_until_it_announces_it() {
        let fixture = handing_over(true);
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert_eq!(
            answers(&plan),
            Wanted::from([(ip("192.0.2.200"), Answer::UntilTakenOver)])
        );
        assert_eq!(plan.announced, 0);
        assert!(plan.conditions.is_empty(), "{:?}", plan.conditions);
    }

    #[test]
    fn an_address_nobody_may_announce_is_not_answered_from_the_next_pass_on() {
        let fixture = handing_over(false);
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert_eq!(plan.answer, Ok(BTreeMap::new()));
    }

    #[test]
    fn an_invalid_advertisement_keeps_announcing_and_is_reported_once() {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        let bad: L2Advertisement = serde_json::from_value(json!({"metadata": {"name": "all", "uid": "a"},
            "spec": {"nodeSelectors": [{"matchExpressions": [{"key": "zone", "operator": "Inn"}]}]}}))
        .unwrap();
        fixture.world.apply_advertisement(&bad).unwrap_err();
        let mut announcer = Announcer::new(ME);
        let plan = fixture.plan(&mut announcer);
        // Still answered, as the last valid spec said.
        assert_eq!(
            answers(&plan),
            Wanted::from([(ip("192.0.2.200"), Answer::AfterProbe)])
        );
        let reported: Vec<&Event> = plan
            .events
            .iter()
            .filter(|e| e.reason == EventReason::InvalidSpec)
            .collect();
        assert_eq!(reported.len(), 1);
        assert!(
            reported[0].note.contains("spec.nodeSelectors[0]")
                && reported[0].note.contains("keeps announcing"),
            "{}",
            reported[0].note
        );
        assert!(fixture.plan(&mut announcer).events.is_empty());
    }

    fn web() -> ServiceKey {
        ServiceKey::new("default", "web")
    }

    fn advertised_over_bgp() -> bgp::Outcome {
        bgp::Outcome::Advertised {
            nodes: BTreeSet::from([ME.to_string(), "node-b".to_string()]),
            peers: BTreeSet::from(["tor".to_string()]),
        }
    }

    #[test]
    fn a_service_layer_2_and_bgp_both_announce_says_both_and_still_names_its_node() {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        fixture.answering = on_eth0(&["192.0.2.200"]);
        fixture.bgp.insert(web(), advertised_over_bgp());
        let plan = fixture.plan(&mut Announcer::new(ME));
        let (_, condition) = &plan.conditions[0];
        assert!(condition.status);
        assert_eq!(
            condition.message,
            "node node-a answers for 192.0.2.200 on eth0: the first choice for its addresses \
             among the live nodes that may announce them; advertised over BGP by nodes node-a, \
             node-b to peer tor"
        );
        assert!(names_address(&condition.message, ip("192.0.2.200")));
    }

    #[test]
    fn a_service_only_bgp_advertises_is_announced_by_the_first_speaker_alive() {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        fixture.world.delete_advertisement("all");
        fixture.bgp.insert(web(), advertised_over_bgp());
        let plan = fixture.plan(&mut Announcer::new(ME));
        assert_eq!(plan.answer, Ok(BTreeMap::new()));
        assert_eq!(
            plan.conditions,
            [(
                web(),
                Announced {
                    status: true,
                    reason: reasons::ANNOUNCED,
                    message: "advertised over BGP by nodes node-a, node-b to peer tor".into(),
                }
            )]
        );
        // Another speaker alive first by name writes it instead.
        fixture.alive.insert("node-0".into());
        assert!(fixture.plan(&mut Announcer::new(ME)).conditions.is_empty());
    }

    /// A pool that only BGP announces: the condition says why BGP does not, and gives no
    /// advice to announce it on layer 2 too.
    #[test]
    fn a_service_bgp_alone_would_advertise_says_why_bgp_does_not() {
        let mut fixture = Fixture::new(world(&["192.0.2.200"], None));
        fixture.world.delete_advertisement("all");
        fixture.bgp.insert(
            web(),
            bgp::Outcome::NotAdvertised(bgp::Reason::NoPeer {
                nodes: BTreeSet::from([ME.to_string()]),
            }),
        );
        let plan = fixture.plan(&mut Announcer::new(ME));
        let (_, condition) = &plan.conditions[0];
        assert!(!condition.status);
        assert_eq!(condition.reason, reasons::NO_BGP_PEER);
        assert!(
            condition
                .message
                .starts_with("not advertised over BGP: the nodes")
                && !condition.message.contains("L2Advertisement"),
            "{}",
            condition.message
        );
    }

    /// What `from` sends for `frame`, delivered to `to`, as the wire would: ARP frames and NDP
    /// messages built as the responder's loop builds them.
    fn deliver(frame: Frame, from: &Interface, nonce: Nonce, to: &mut Responder) -> Vec<Report> {
        let now = Instant::now();
        let actions = match frame {
            Frame::Probe(IpAddr::V4(v4)) => to.on_arp(&packet::arp_probe(from.mac, v4), now),
            Frame::Probe(IpAddr::V6(v6)) => {
                let probe = packet::dad_neighbor_solicitation(v6, nonce);
                to.on_ndp(&probe, Ipv6Addr::UNSPECIFIED, NDP_HOP_LIMIT, now)
            }
            Frame::Gratuitous(IpAddr::V4(v4)) => {
                let mut actions = to.on_arp(&packet::gratuitous_arp_request(from.mac, v4), now);
                actions.extend(to.on_arp(&packet::gratuitous_arp_reply(from.mac, v4), now));
                actions
            }
            Frame::Gratuitous(IpAddr::V6(v6)) => {
                let advertisement = packet::unsolicited_neighbor_advertisement(v6, from.mac);
                to.on_ndp(&advertisement, v6, NDP_HOP_LIMIT, now)
            }
            other => panic!("not sent in this test: {other:?}"),
        };
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Report(report) => Some(report),
                _ => None,
            })
            .collect()
    }

    /// Defect 6, with the race forced: two interfaces of this node on one segment probe for the
    /// same addresses at the same instant and each hears the other's probes (RFC 5227 and DAD)
    /// while it probes, then the other's announcements. Neither takes the other for another
    /// host, and once the runtime knows they share the segment, one interface answers.
    #[test]
    fn two_interfaces_on_one_segment_probing_at_once_conflict_with_nobody_and_one_answers() {
        let interfaces = vec![
            Interface {
                name: "eth0".into(),
                index: 2,
                mac: MacAddr(0x02, 0, 0, 0, 0, 0x0b),
                up: true,
                suitable_by_default: true,
            },
            Interface {
                name: "eth1".into(),
                index: 3,
                mac: MacAddr(0x02, 0, 0, 0, 1, 0x0b),
                up: true,
                suitable_by_default: true,
            },
        ];
        let own: BTreeSet<MacAddr> = interfaces.iter().map(|i| i.mac).collect();
        let nonce = [7; 6];
        let start = Instant::now();
        let timings = Timings::default();
        let mut responders: Vec<Responder> = interfaces
            .iter()
            .map(|i| Responder::new(&i.name, i.mac, nonce, timings, own.clone(), start))
            .collect();
        let wanted = Wanted::from([
            (ip("192.0.2.200"), Answer::AfterProbe),
            (ip("2001:db8::200"), Answer::AfterProbe),
        ]);
        let frames = |actions: Vec<Action>| -> Vec<Frame> {
            actions
                .into_iter()
                .filter_map(|a| match a {
                    Action::Send(frame) => Some(frame),
                    _ => None,
                })
                .collect()
        };
        let mut reports = Vec::new();
        // Both probe at once, and each hears the other's probes while probing.
        let probes: Vec<Vec<Frame>> = responders
            .iter_mut()
            .map(|r| frames(r.on_wanted(&wanted, start)))
            .collect();
        let end = start + timings.probe_wait;
        let mut announcements = Vec::new();
        for (me, other) in [(0, 1), (1, 0)] {
            for frame in &probes[other] {
                reports.extend(deliver(
                    *frame,
                    &interfaces[other],
                    nonce,
                    &mut responders[me],
                ));
            }
        }
        for responder in &mut responders {
            let actions = responder.on_deadline(end);
            reports.extend(actions.iter().filter_map(|a| match a {
                Action::Report(report) => Some(report.clone()),
                _ => None,
            }));
            announcements.push(frames(actions));
        }
        for (me, other) in [(0, 1), (1, 0)] {
            for frame in &announcements[other] {
                reports.extend(deliver(
                    *frame,
                    &interfaces[other],
                    nonce,
                    &mut responders[me],
                ));
            }
        }
        let conflicts: Vec<&Report> = reports
            .iter()
            .filter(|r| matches!(r, Report::Conflict { .. }))
            .collect();
        assert_eq!(conflicts, Vec::<&Report>::new());
        let announced = |name: &str| {
            reports
                .iter()
                .filter(|r| matches!(r, Report::Announcing { interface, .. } if interface == name))
                .count()
        };
        assert_eq!((announced("eth0"), announced("eth1")), (2, 2));

        // The runtime learns that they share the segment; the announcer answers on one of them.
        let mut segments = Segments::default();
        for report in &reports {
            if let Report::SharedSegment {
                interface,
                other_mac,
            } = report
            {
                segments.record(interface, *other_mac, &interfaces);
            }
        }
        let mut fixture = Fixture::new(world(&["192.0.2.200", "2001:db8::200"], None));
        fixture.interfaces = interfaces;
        fixture.segments = segments;
        fixture.answering = on_eth0(&["192.0.2.200", "2001:db8::200"]);
        let plan = fixture.plan(&mut Announcer::new(ME));
        let answering: Vec<&String> = plan.answer.as_ref().unwrap().keys().collect();
        assert_eq!(answering, ["eth0"]);
        let (_, condition) = &plan.conditions[0];
        assert!(
            condition.message.starts_with(
                "node node-a answers for 192.0.2.200, 2001:db8::200 on eth0: the first choice"
            ),
            "{}",
            condition.message
        );
    }

    #[test]
    fn the_message_names_exactly_its_addresses() {
        let message = "node a answers for 192.0.2.200, 2001:db8::200 on eth0: why";
        assert!(names_address(message, ip("2001:db8::200")));
        assert!(!names_address(message, ip("192.0.2.20")));
        assert!(!names_address(
            "node a answers on eth0: why",
            ip("192.0.2.200")
        ));
    }
}
