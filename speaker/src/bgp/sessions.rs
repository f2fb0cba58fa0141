//! What this node's `BGPSessionState` objects should say, from what the node should peer with
//! and what FRR reports; and, against what was written last, which objects to write or delete
//! and which Events to publish. Pure: the runtime polls FRR and performs the plan.

use std::collections::{BTreeMap, BTreeSet};

use herald_core::bgp::NodeBgp;

use crate::frr::Session;

/// One session's state as users see it (a `BGPSessionState`'s status, without its time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub node: String,
    pub peer: String,
    pub peer_address: String,
    /// FRR's BGP state; `Idle` for a session FRR does not run.
    pub bgp_state: String,
    pub bfd_state: Option<String>,
    pub prefixes: u64,
    /// Why it is not established, when it is not.
    pub reason: Option<String>,
}

impl SessionState {
    pub fn established(&self) -> bool {
        self.bgp_state == ESTABLISHED
    }
}

const ESTABLISHED: &str = "Established";
const IDLE: &str = "Idle";

/// The `BGPSessionState` name of `node`'s session with `peer`.
pub fn object_name(node: &str, peer: &str) -> String {
    format!("{node}-{peer}")
}

/// What FRR was last heard to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrrView {
    /// Not asked yet.
    Unknown,
    Sessions(Vec<Session>),
    /// FRR cannot be read (not started yet, or down): its error.
    Unreadable(String),
}

/// Everything the session states are made of.
pub struct Inputs<'a> {
    pub node: &'a str,
    /// What the node should peer with; None: nothing.
    pub bgp: Option<&'a NodeBgp>,
    /// Peers left out of FRR's configuration for their password, and why.
    pub password_problems: &'a BTreeMap<String, String>,
    /// FRR's message while the configuration wanted is not applied because of it.
    pub reload_failure: Option<&'a str>,
    pub frr: &'a FrrView,
}

/// Each session's state, by object name; empty while FRR has not been read, so that nothing is
/// written from ignorance.
pub fn desired(inputs: &Inputs) -> BTreeMap<String, SessionState> {
    let Some(bgp) = inputs.bgp else {
        return BTreeMap::new();
    };
    let sessions = match inputs.frr {
        FrrView::Unknown => return BTreeMap::new(),
        FrrView::Sessions(sessions) => Ok(sessions),
        FrrView::Unreadable(error) => Err(error),
    };
    bgp.sessions
        .iter()
        .map(|wanted| {
            let peer = &wanted.peer;
            let address = peer.address.to_string();
            let mut state = SessionState {
                node: inputs.node.to_owned(),
                peer: peer.name.clone(),
                peer_address: address.clone(),
                bgp_state: IDLE.to_owned(),
                bfd_state: None,
                prefixes: 0,
                reason: None,
            };
            let running = sessions
                .as_ref()
                .ok()
                .and_then(|s| s.iter().find(|s| s.neighbor.peer == address));
            state.reason = if let Some(problem) = inputs.password_problems.get(&peer.name) {
                Some(problem.clone())
            } else if let Err(error) = &sessions {
                state.bgp_state = "Unknown".to_owned();
                Some(format!("FRR cannot be read: {error}"))
            } else if let Some(session) = running {
                state.bgp_state = session.neighbor.state.to_string();
                state.bfd_state = session
                    .bfd
                    .as_ref()
                    .map(|b| b.state.to_string())
                    .or_else(|| session.neighbor.bfd.as_ref().map(ToString::to_string));
                state.prefixes = session.advertised.len() as u64;
                session.neighbor.problem()
            } else if let Some(failure) = inputs.reload_failure {
                Some(format!(
                    "FRR did not take this node's configuration: {failure}"
                ))
            } else {
                Some("FRR is being configured for this session".to_owned())
            };
            (object_name(inputs.node, &peer.name), state)
        })
        .collect()
}

/// A session came up or went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub peer: String,
    pub up: bool,
    pub note: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub writes: Vec<(String, SessionState)>,
    pub deletes: Vec<String>,
    pub events: Vec<SessionEvent>,
}

/// Remembers what this node's objects say, so that they are written on transitions only.
#[derive(Debug, Default)]
pub struct SessionStates {
    written: BTreeMap<String, SessionState>,
    /// Objects of this node found at start whose content is not known: written or deleted on
    /// the first plan.
    found: BTreeSet<String>,
}

impl SessionStates {
    /// `found`: this node's objects that exist already (a restarted speaker's).
    pub fn new(found: BTreeSet<String>) -> Self {
        SessionStates {
            written: BTreeMap::new(),
            found,
        }
    }

    /// What to write, delete and tell, for `desired` to show. `frr_read`: FRR was read, so
    /// that objects of sessions the node no longer has may go.
    pub fn plan(&mut self, desired: BTreeMap<String, SessionState>, frr_read: bool) -> Plan {
        let mut plan = Plan::default();
        if frr_read {
            let gone: Vec<String> = self
                .written
                .keys()
                .chain(&self.found)
                .filter(|name| !desired.contains_key(*name))
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            for name in gone {
                self.written.remove(&name);
                self.found.remove(&name);
                plan.deletes.push(name);
            }
        }
        for (name, state) in desired {
            let before = self.written.get(&name);
            if before == Some(&state) {
                continue;
            }
            let was_up = before.map(SessionState::established);
            match (was_up, state.established()) {
                (Some(false) | None, true) => plan.events.push(SessionEvent {
                    peer: state.peer.clone(),
                    up: true,
                    note: format!(
                        "node {}'s BGP session with {} ({}) is established; {} prefixes \
                         advertised",
                        state.node, state.peer, state.peer_address, state.prefixes
                    ),
                }),
                (Some(true), false) => plan.events.push(SessionEvent {
                    peer: state.peer.clone(),
                    up: false,
                    note: format!(
                        "node {}'s BGP session with {} ({}) went down ({}): {}",
                        state.node,
                        state.peer,
                        state.peer_address,
                        state.bgp_state,
                        state.reason.as_deref().unwrap_or("no reason given")
                    ),
                }),
                _ => {}
            }
            self.found.remove(&name);
            self.written.insert(name.clone(), state.clone());
            plan.writes.push((name, state));
        }
        plan
    }

    /// Sessions established, and prefixes advertised over them, as last written.
    pub fn totals(&self) -> (usize, u64) {
        let up = self.written.values().filter(|s| s.established());
        (up.clone().count(), up.map(|s| s.prefixes).sum::<u64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frr::state::{BfdPeer, BfdState, BgpState, Neighbor, Prefix};
    use herald_core::bgp::{Peer, Session as WantedSession};
    use std::time::Duration;

    fn node_bgp(peers: &[(&str, &str)]) -> NodeBgp {
        NodeBgp {
            node: "node1".into(),
            my_asn: 64512,
            router_id: None,
            sessions: peers
                .iter()
                .map(|(name, address)| WantedSession {
                    peer: Peer::new(*name, address.parse().unwrap(), 64500, 64512),
                    prefixes: BTreeMap::new(),
                })
                .collect(),
        }
    }

    fn frr_session(peer: &str, state: BgpState, prefixes: usize, bfd: Option<BfdState>) -> Session {
        Session {
            neighbor: Neighbor::example(peer, state),
            bfd: bfd.map(|state| BfdPeer {
                peer: peer.parse().unwrap(),
                interface: None,
                state,
                diagnostic: "ok".into(),
                receive_interval: Duration::from_millis(100),
                transmit_interval: Duration::from_millis(100),
                detect_multiplier: 3,
            }),
            advertised: (0..prefixes)
                .map(|i| Prefix {
                    address: format!("203.0.113.{i}").parse().unwrap(),
                    length: 32,
                })
                .collect(),
        }
    }

    fn states(
        bgp: &NodeBgp,
        problems: &BTreeMap<String, String>,
        frr: &FrrView,
    ) -> BTreeMap<String, SessionState> {
        desired(&Inputs {
            node: "node1",
            bgp: Some(bgp),
            password_problems: problems,
            reload_failure: None,
            frr,
        })
    }

    #[test]
    fn each_peer_of_the_node_gets_its_sessions_state_from_frr() {
        let bgp = node_bgp(&[("tor-a", "192.0.2.1"), ("tor-b", "192.0.2.2")]);
        let frr = FrrView::Sessions(vec![
            frr_session("192.0.2.1", BgpState::Established, 2, Some(BfdState::Up)),
            frr_session("192.0.2.2", BgpState::Connect, 0, None),
        ]);
        let states = states(&bgp, &BTreeMap::new(), &frr);
        let a = &states["node1-tor-a"];
        assert_eq!(
            (
                a.bgp_state.as_str(),
                a.bfd_state.as_deref(),
                a.prefixes,
                &a.reason
            ),
            ("Established", Some("Up"), 2, &None)
        );
        let b = &states["node1-tor-b"];
        assert_eq!(b.bgp_state, "Connect");
        assert!(b.reason.is_some(), "{b:?}");
    }

    #[test]
    fn a_peer_left_out_for_its_password_says_why() {
        let bgp = node_bgp(&[("tor", "192.0.2.1")]);
        let problems = BTreeMap::from([(
            "tor".to_string(),
            "its password Secret herald-system/pw does not exist".to_string(),
        )]);
        let states = states(&bgp, &problems, &FrrView::Sessions(Vec::new()));
        let tor = &states["node1-tor"];
        assert_eq!(tor.bgp_state, "Idle");
        assert_eq!(tor.reason.as_deref(), Some(problems["tor"].as_str()));
    }

    #[test]
    fn nothing_is_said_before_frr_is_read_and_an_unreadable_frr_is_a_reason() {
        let bgp = node_bgp(&[("tor", "192.0.2.1")]);
        assert!(states(&bgp, &BTreeMap::new(), &FrrView::Unknown).is_empty());
        let states = states(
            &bgp,
            &BTreeMap::new(),
            &FrrView::Unreadable("no bgpd.vty".into()),
        );
        assert_eq!(
            states["node1-tor"].reason.as_deref(),
            Some("FRR cannot be read: no bgpd.vty")
        );
    }

    #[test]
    fn writes_follow_transitions_with_events_and_gone_peers_are_deleted() {
        let bgp = node_bgp(&[("tor", "192.0.2.1")]);
        let mut tracker = SessionStates::new(BTreeSet::from(["node1-old".to_string()]));
        let connecting =
            FrrView::Sessions(vec![frr_session("192.0.2.1", BgpState::Active, 0, None)]);
        let plan = tracker.plan(states(&bgp, &BTreeMap::new(), &connecting), true);
        assert_eq!(plan.deletes, ["node1-old"]);
        assert_eq!(plan.writes.len(), 1);
        assert!(plan.events.is_empty(), "{plan:?}");
        // The same again: nothing.
        let plan = tracker.plan(states(&bgp, &BTreeMap::new(), &connecting), true);
        assert_eq!(plan, Plan::default());

        let up = FrrView::Sessions(vec![frr_session(
            "192.0.2.1",
            BgpState::Established,
            1,
            None,
        )]);
        let plan = tracker.plan(states(&bgp, &BTreeMap::new(), &up), true);
        assert_eq!(plan.writes.len(), 1);
        assert_eq!(plan.events.len(), 1);
        assert!(plan.events[0].up, "{plan:?}");
        assert_eq!(tracker.totals(), (1, 1));

        let plan = tracker.plan(states(&bgp, &BTreeMap::new(), &connecting), true);
        assert!(!plan.events[0].up, "{plan:?}");
        assert!(
            plan.events[0].note.contains("went down (Active)"),
            "{plan:?}"
        );

        // The peer goes: its object goes, once FRR has been read.
        let plan = tracker.plan(BTreeMap::new(), false);
        assert_eq!(plan, Plan::default());
        let plan = tracker.plan(BTreeMap::new(), true);
        assert_eq!(plan.deletes, ["node1-tor"]);
        assert_eq!(tracker.totals(), (0, 0));
    }
}
