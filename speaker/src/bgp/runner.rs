//! BGP beside the speaker's loop: on every pass the loop hands over what it knows
//! ([`Bgp::pass`]): this decides, renders this node's `frr.conf` for the FRR driver, and
//! reports; FRR is polled for its sessions (on [`super::reads`]' schedule), and this node's
//! `BGPSessionState` objects and Events follow them. The decisions are in [`super::sessions`],
//! [`super::reads`] and [`herald_core::bgp`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use herald_core::allocation::ServiceKey;
use herald_core::bgp::{self, Decision, NodeBgp, Problem};
use herald_core::election;
use herald_crds::{BGPSessionState, EventReason, field_managers};
use herald_runtime::events::Publisher;
use herald_runtime::watches::Watch;
use herald_runtime::writer::{StatusWrite, Writer};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use super::objects::BgpObjects;
use super::reads::{self, Reads, Rendered};
use super::render::render;
use super::sessions::{self, FrrView, SessionState, SessionStates};
use crate::frr::{self, Frr, Paths, ReloadStatus};
use crate::metrics::Metrics;
use crate::runtime::{AbortOnDrop, kube_event as event};

/// The label on a `BGPSessionState` naming its node, so that a speaker finds its own.
pub const NODE_LABEL: &str = "herald.dev/node";

/// Where FRR is and how often it is asked about its sessions.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Paths,
    pub poll: Duration,
    pub reloads: frr::Timings,
}

/// How long a graceful stop waits for FRR to withdraw this node's routes.
const WITHDRAW_WAIT: Duration = Duration::from_secs(10);

/// The watches of the BGP objects: BGP decides only once every one has listed.
#[derive(Default)]
pub struct Watches {
    pub peers: Watch,
    pub advertisements: Watch,
    pub profiles: Watch,
    pub secrets: Watch,
}

pub struct Bgp {
    me: String,
    node_uid: String,
    pub objects: BgpObjects,
    pub watches: Watches,
    config: watch::Sender<Option<String>>,
    /// What the configuration handed to the driver sends each peer, for the poller.
    rendered: watch::Sender<Rendered>,
    reloads: watch::Receiver<ReloadStatus>,
    frr_view: watch::Receiver<FrrView>,
    /// The FRR driver and the poller; they end with this.
    _tasks: [AbortOnDrop; 2],
    /// This node's share of the last decision.
    node_bgp: Option<NodeBgp>,
    password_problems: BTreeMap<String, String>,
    states: SessionStates,
    /// Per object: the BGP state written and since when.
    transitions: BTreeMap<String, (String, Time)>,
    writer: Writer<SessionWrite>,
    publisher: Publisher,
    metrics: Metrics,
    reported_invalid: BTreeSet<super::objects::Invalid>,
    reported_problems: BTreeSet<Problem>,
}

/// What woke [`Bgp::next`]: nothing the loop's pass needs.
pub enum Woke {
    Sessions,
    Written,
    Published,
}

impl Bgp {
    /// Starts the FRR driver and the poller; finds the objects a previous run of this node's
    /// speaker left.
    pub async fn start(
        client: Client,
        me: &str,
        node_uid: &str,
        namespace: &str,
        settings: Settings,
        metrics: Metrics,
    ) -> Bgp {
        let frr = Frr::new(settings.paths.clone());
        let (config, wanted) = watch::channel(None);
        let (status_tx, reloads) = watch::channel(ReloadStatus::default());
        let (view_tx, frr_view) = watch::channel(FrrView::Unknown);
        let (rendered, rendered_rx) = watch::channel(Rendered::new());
        let (frr_restarted_tx, frr_restarted) = watch::channel(());
        let driver = tokio::spawn(frr::run(
            frr.clone(),
            wanted,
            frr_restarted,
            settings.reloads,
            status_tx,
            metrics.clone(),
        ));
        let poller = tokio::spawn(poll(
            frr,
            settings.poll,
            reloads.clone(),
            rendered_rx,
            view_tx,
            frr_restarted_tx,
        ));
        let found = Api::<BGPSessionState>::all(client.clone())
            .list_metadata(&ListParams::default().labels(&format!("{NODE_LABEL}={me}")))
            .await
            .map(|list| list.items.iter().map(|o| o.name_any()).collect())
            .unwrap_or_else(|e| {
                warn!(error = %e, "listing this node's BGPSessionStates failed; those of peers it no longer has stay");
                BTreeSet::new()
            });
        info!(config = %settings.paths.config_dir.display(), sockets = %settings.paths.vty_socket_dir.display(), "BGP on: FRR is driven through these folders");
        Bgp {
            me: me.to_owned(),
            node_uid: node_uid.to_owned(),
            objects: BgpObjects::new(namespace),
            watches: Watches::default(),
            config,
            rendered,
            reloads,
            frr_view,
            _tasks: [AbortOnDrop(driver), AbortOnDrop(poller)],
            node_bgp: None,
            password_problems: BTreeMap::new(),
            states: SessionStates::new(found),
            transitions: BTreeMap::new(),
            writer: Writer::new(client.clone(), "speaker", 4),
            publisher: Publisher::new(client, field_managers::SPEAKER, me),
            metrics,
            reported_invalid: BTreeSet::new(),
            reported_problems: BTreeSet::new(),
        }
    }

    pub fn synced(&self) -> bool {
        let w = &self.watches;
        [&w.peers, &w.advertisements, &w.profiles, &w.secrets]
            .iter()
            .all(|w| w.synced())
    }

    /// Decides from the layer-2 election's inputs, hands this node's `frr.conf` to the driver
    /// and reports; returns whether BGP advertises each Service it selects. `reporter`: this
    /// speaker is the one that reports on the cluster's objects (the first alive).
    pub fn pass(
        &mut self,
        inputs: election::Inputs,
        reporter: bool,
    ) -> BTreeMap<ServiceKey, bgp::Outcome> {
        let Decision {
            mut nodes,
            services,
            problems,
        } = bgp::decide(&bgp::Inputs {
            nodes: inputs.nodes,
            alive: inputs.alive,
            pools: inputs.pools,
            peers: self.objects.peers(),
            advertisements: self.objects.advertisements(),
            services: inputs.services,
        });
        for problem in problems.difference(&self.reported_problems) {
            warn!(%problem, "BGP configuration problem");
            if reporter {
                let (kind, name) = problem_object(problem);
                let regarding = ObjectReference {
                    api_version: Some("herald.dev/v1alpha1".into()),
                    kind: Some(kind.into()),
                    name: Some(name.to_owned()),
                    ..ObjectReference::default()
                };
                self.publisher.submit(
                    event(true, EventReason::BgpConflict, &problem.to_string()),
                    regarding,
                );
            }
        }
        self.reported_problems = problems;
        if reporter {
            self.report_invalid();
        }
        // Every peer's; the session states look up this node's peers only.
        let (passwords, password_problems) = self.objects.passwords();
        self.node_bgp = nodes.remove(&self.me);
        self.password_problems = password_problems;
        let config = render(
            &self.me,
            self.node_bgp.as_ref(),
            &passwords,
            &self.objects.profiles(),
        );
        self.hand_over(config, self.node_bgp.as_ref());
        self.report_sessions();
        services
    }

    /// Hands `config`, which renders `bgp`, to the driver, and what it sends to the poller.
    fn hand_over(&self, config: String, bgp: Option<&NodeBgp>) {
        let rendered = reads::rendered(bgp);
        self.rendered.send_if_modified(|current| {
            let changed = *current != rendered;
            *current = rendered;
            changed
        });
        self.config.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&config);
            *current = Some(config);
            changed
        });
    }

    /// Waits for FRR's sessions, a finished write or Event, and handles it.
    pub async fn next(&mut self) -> Woke {
        tokio::select! {
            Ok(()) = self.frr_view.changed() => {
                self.report_sessions();
                Woke::Sessions
            }
            _ = self.writer.next() => Woke::Written,
            Some(()) = self.publisher.next() => Woke::Published,
        }
    }

    /// On a graceful stop: FRR stops advertising this node's routes to the peers without
    /// graceful restart (those with it keep forwarding on them while the speaker restarts).
    pub async fn withdraw(&mut self) {
        let Some(current) = &self.node_bgp else {
            return;
        };
        let kept = keeping_on_stop(current);
        let (passwords, _) = self.objects.passwords();
        let config = render(
            &self.me,
            kept.as_ref(),
            &passwords,
            &self.objects.profiles(),
        );
        self.hand_over(config.clone(), kept.as_ref());
        // Until FRR runs this very configuration: a reload in flight when the stop came (of
        // the configuration before) ends first, and is no withdrawal.
        if self.reloads.borrow().running.as_ref() == Some(&config) {
            return;
        }
        info!("withdrawing this node's routes from its BGP peers");
        let withdrawn = self
            .reloads
            .wait_for(|status| status.running.as_ref() == Some(&config));
        let withdrawn = matches!(
            tokio::time::timeout(WITHDRAW_WAIT, withdrawn).await,
            Ok(Ok(_))
        );
        if withdrawn {
            info!("routes withdrawn");
        } else {
            let failure = self.reloads.borrow().last_failure.clone();
            warn!(
                ?failure,
                "FRR did not withdraw the routes within {WITHDRAW_WAIT:?}"
            );
        }
    }

    fn report_invalid(&mut self) {
        let invalid: BTreeSet<_> = self.objects.invalid().cloned().collect();
        for object in invalid.difference(&self.reported_invalid) {
            let regarding = ObjectReference {
                api_version: Some("herald.dev/v1alpha1".into()),
                kind: Some(object.kind.into()),
                name: Some(object.name.clone()),
                uid: Some(object.uid.clone()),
                ..ObjectReference::default()
            };
            self.publisher.submit(
                event(true, EventReason::InvalidSpec, &object.problem),
                regarding,
            );
        }
        self.reported_invalid = invalid;
    }

    fn report_sessions(&mut self) {
        let frr = self.frr_view.borrow_and_update().clone();
        let reload_failure = self.reloads.borrow().last_failure.clone();
        let desired = sessions::desired(&sessions::Inputs {
            node: &self.me,
            bgp: self.node_bgp.as_ref(),
            password_problems: &self.password_problems,
            reload_failure: reload_failure.as_deref(),
            frr: &frr,
        });
        let frr_read = self.node_bgp.is_none() || frr != FrrView::Unknown;
        let plan = self.states.plan(desired, frr_read);
        for name in plan.deletes {
            self.transitions.remove(&name);
            self.writer
                .submit(name.clone(), SessionWrite::Delete { name });
        }
        for (name, state) in plan.writes {
            let since = match self.transitions.get(&name) {
                Some((bgp_state, since)) if *bgp_state == state.bgp_state => since.clone(),
                _ => Time(Timestamp::now()),
            };
            self.transitions
                .insert(name.clone(), (state.bgp_state.clone(), since.clone()));
            let write = SessionWrite::Apply {
                name: name.clone(),
                node: self.me.clone(),
                node_uid: self.node_uid.clone(),
                status: status_body(&state, &since),
            };
            self.writer.submit(name, write);
        }
        for session in plan.events {
            let (reason, warning) = if session.up {
                (EventReason::BgpSessionUp, false)
            } else {
                (EventReason::BgpSessionDown, true)
            };
            info!(peer = %session.peer, note = %session.note, "BGP session change");
            let regarding = ObjectReference {
                api_version: Some("herald.dev/v1alpha1".into()),
                kind: Some("BGPPeer".into()),
                name: Some(session.peer.clone()),
                ..ObjectReference::default()
            };
            self.publisher
                .submit(event(warning, reason, &session.note), regarding);
        }
        let (up, prefixes) = self.states.totals();
        self.metrics.bgp_sessions_up.set(up as i64);
        self.metrics
            .bgp_prefixes_advertised
            .set(i64::try_from(prefixes).unwrap_or(i64::MAX));
    }
}

/// The object an Event about `problem` is on: the BGPPeer or BGPAdvertisement to change.
fn problem_object(problem: &Problem) -> (&'static str, &str) {
    match problem {
        Problem::DuplicatePeerAddress { peer, .. }
        | Problem::InstanceConflict { peer, .. }
        | Problem::LocalPrefConflict { peer, .. } => ("BGPPeer", peer),
        Problem::AggregationWiderThanPool { advertisement, .. } => {
            ("BGPAdvertisement", advertisement)
        }
    }
}

/// What a node keeps advertising while its speaker stops: the sessions of peers with graceful
/// restart, whose routers keep forwarding on its routes; None when no peer has it.
pub fn keeping_on_stop(bgp: &NodeBgp) -> Option<NodeBgp> {
    let sessions: Vec<_> = bgp
        .sessions
        .iter()
        .filter(|s| s.peer.graceful_restart)
        .cloned()
        .collect();
    (!sessions.is_empty()).then(|| NodeBgp {
        sessions,
        ..bgp.clone()
    })
}

fn status_body(state: &SessionState, since: &Time) -> serde_json::Value {
    json!({
        "node": state.node,
        "peer": state.peer,
        "peerAddress": state.peer_address,
        "bgpState": state.bgp_state,
        "bfdState": state.bfd_state,
        "prefixesAdvertised": state.prefixes,
        "reason": state.reason,
        "lastTransitionTime": since,
    })
}

/// Asks FRR for its sessions every `period`, and after each reload until FRR runs what was
/// `rendered` ([`Reads`]); tells the driver through `frr_restarted` when FRR's daemons are new
/// ones (see [`Frr::instance`]).
async fn poll(
    frr: Frr,
    period: Duration,
    mut reloads: watch::Receiver<ReloadStatus>,
    rendered: watch::Receiver<Rendered>,
    view: watch::Sender<FrrView>,
    frr_restarted: watch::Sender<()>,
) {
    let mut reads = Reads::new(period);
    let mut instance = None;
    loop {
        let read = match frr.sessions().await {
            Ok(sessions) => FrrView::Sessions(sessions),
            Err(e) => FrrView::Unreadable(e.to_string()),
        };
        if let Some(now) = frr.instance() {
            if instance.as_ref().is_some_and(|before| *before != now) {
                frr_restarted.send_replace(());
            }
            instance = Some(now);
        }
        let settled = match &read {
            FrrView::Sessions(sessions) => reads::runs_as_rendered(&rendered.borrow(), sessions),
            // Nothing to follow up on: FRR is down or starting, the period's reads will tell.
            FrrView::Unknown | FrrView::Unreadable(_) => true,
        };
        let wait = reads.after_read(settled);
        view.send_if_modified(|current| {
            let changed = *current != read;
            *current = read;
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = reloads.changed() => {
                if changed.is_err() {
                    return;
                }
                reads.on_reload();
            }
        }
    }
}

/// A `BGPSessionState` write: its status by server-side apply (the object is created first
/// if it does not exist), or its deletion.
#[derive(Clone, Debug)]
enum SessionWrite {
    Apply {
        name: String,
        node: String,
        node_uid: String,
        status: serde_json::Value,
    },
    Delete {
        name: String,
    },
}

impl StatusWrite for SessionWrite {
    type Target = String;

    fn apply(
        &self,
        client: Client,
    ) -> Pin<Box<dyn Future<Output = Result<(), kube::Error>> + Send>> {
        let write = self.clone();
        Box::pin(async move {
            let api = Api::<BGPSessionState>::all(client);
            match write {
                SessionWrite::Delete { name } => {
                    match api.delete(&name, &DeleteParams::default()).await {
                        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                        other => other.map(drop),
                    }
                }
                SessionWrite::Apply {
                    name,
                    node,
                    node_uid,
                    status,
                } => {
                    let body = json!({
                        "apiVersion": "herald.dev/v1alpha1", "kind": "BGPSessionState",
                        "metadata": {"name": name}, "status": status,
                    });
                    let params = PatchParams::apply(field_managers::SPEAKER).force();
                    match api.patch_status(&name, &params, &Patch::Apply(&body)).await {
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        other => return other.map(drop),
                    }
                    // The speakers may create these objects, not patch them: created, then
                    // the status applied. The Node owns them: they go with it.
                    let mut object = BGPSessionState::new(&name, Default::default());
                    object.metadata.labels = Some([(NODE_LABEL.to_owned(), node.clone())].into());
                    object.metadata.owner_references = Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node,
                        uid: node_uid,
                        ..OwnerReference::default()
                    }]);
                    match api.create(&PostParams::default(), &object).await {
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        other => drop(other?),
                    }
                    api.patch_status(&name, &params, &Patch::Apply(&body))
                        .await
                        .map(drop)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::bgp::{Peer, Session};

    #[test]
    fn a_stopping_node_keeps_only_the_sessions_of_peers_with_graceful_restart() {
        let session = |name: &str, graceful_restart: bool| Session {
            peer: Peer {
                graceful_restart,
                ..Peer::new(name, "192.0.2.1".parse().unwrap(), 64500, 64512)
            },
            prefixes: BTreeMap::from([("203.0.113.10/32".parse().unwrap(), Default::default())]),
        };
        let node = NodeBgp {
            node: "node1".into(),
            my_asn: 64512,
            router_id: None,
            sessions: vec![session("plain", false), session("gr", true)],
        };
        let kept = keeping_on_stop(&node).unwrap();
        assert_eq!(kept.sessions, vec![session("gr", true)]);
        let without = NodeBgp {
            sessions: vec![session("plain", false)],
            ..node
        };
        assert_eq!(keeping_on_stop(&without), None);
    }
}
