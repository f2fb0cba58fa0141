//! The speaker's runtime: watches feed the [`World`], gossip says who is alive, heartbeat
//! Leases back the self-fencing, and on every change the speaker elects, tells its
//! per-interface responders what to answer for, and reports on the Services it is
//! responsible for. Writes happen on transitions only: none per Service in steady state.
//! With BGP on, every pass also hands the same view to [`Bgp`], which keeps FRR and the
//! node's `BGPSessionState` objects in step.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Future, FutureExt, StreamExt};
use herald_core::allocation::ServiceKey;
use herald_core::election::Links;
use herald_core::fencing::ApiView;
use herald_crds::{BFDProfile, BGPAdvertisement, BGPPeer, IPAddressPool, L2Advertisement};
use herald_runtime::events::Publisher;
use herald_runtime::watches::Watch;
use herald_runtime::writer::{StatusWrite, Writer};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::watcher::{self, Event, watcher as watch_all};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::announce::{self, Announced, Announcer, Conflict, Pass, Regarding};
use crate::bgp::runner::{self as bgp_runner, Bgp};
use crate::heartbeat;
use crate::link::interfaces::{self, Interface};
use crate::link::priority;
use crate::link::responder::{self, Answer, Report, Wanted};
use crate::link::segments::Segments;
use crate::membership::{self, Membership};
use crate::metrics::Metrics;
use crate::packet::{MacAddr, Nonce};
use crate::world::World;
use herald_crds::conditions::ANNOUNCED;
use herald_crds::{EventReason, field_managers};

#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    /// Namespace of the heartbeat Leases (the speaker's own).
    pub namespace: String,
    pub gossip_bind: SocketAddr,
    pub gossip: membership::Timings,
    /// The gossip keys' folder (the Secret herald-gossip-key, mounted).
    pub gossip_key_dir: PathBuf,
    pub responder: responder::Timings,
    pub heartbeat_interval: Duration,
    pub heartbeat_duration: Duration,
    /// How long an address another host answered for stays unannounced before a new probe.
    pub conflict_retry: Duration,
    /// Where FRR is, when the speaker runs BGP.
    pub bgp: Option<bgp_runner::Settings>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Node {node:?} not found: --node-name (or $NODE_NAME) must name the node this speaker runs on"
    )]
    NoNode { node: String },
    #[error("Node {node:?} has no InternalIP address to gossip on")]
    NoAddress { node: String },
    #[error("reading Node {node:?}: {source}")]
    Api { node: String, source: kube::Error },
    #[error(transparent)]
    Membership(#[from] membership::Error),
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
    #[error("starting the responders' thread: {0}")]
    Responders(std::io::Error),
    #[error(
        "opening a netlink socket for the node's link events: {0} (the speaker needs the host's network namespace)"
    )]
    LinkEvents(std::io::Error),
}

enum Change {
    Node(Box<Event<Node>>),
    Pool(Event<IPAddressPool>),
    Advertisement(Event<L2Advertisement>),
    Service(Box<Event<Service>>),
    Slice(Event<EndpointSlice>),
    Lease(Event<Lease>),
    BgpPeer(Event<BGPPeer>),
    BgpAdvertisement(Event<BGPAdvertisement>),
    BfdProfile(Event<BFDProfile>),
    Secret(Event<Secret>),
    WatchError(&'static str, watcher::Error),
}

fn stream<K, F>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    wrap: F,
) -> BoxStream<'static, Change>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    F: Fn(Event<K>) -> Change + Send + 'static,
{
    watch_all(api, config)
        .default_backoff()
        .map(move |event| match event {
            Ok(event) => wrap(event),
            Err(e) => Change::WatchError(what, e),
        })
        .boxed()
}

/// The API server's message when a watch was refused for lack of permission.
fn watch_forbidden(error: &watcher::Error) -> Option<&str> {
    match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => herald_runtime::forbidden(e),
        _ => None,
    }
}

/// The responders running, one per interface, on a thread and runtime of their own: whatever
/// keeps this runtime busy (watch events, elections, writes) never stands between a request
/// and its reply.
struct Responders {
    running: BTreeMap<String, (watch::Sender<Wanted>, tokio::task::JoinHandle<()>)>,
    /// The MACs of all the node's interfaces, and the nonce of this speaker's DAD probes: what
    /// one responder hears of another is never a conflict.
    own_macs: watch::Sender<BTreeSet<MacAddr>>,
    nonce: Nonce,
    runtime: tokio::runtime::Handle,
    /// Dropping it ends the thread, and with its runtime any task left.
    _stop: oneshot::Sender<()>,
    reports: mpsc::UnboundedSender<Report>,
    timings: responder::Timings,
    metrics: Metrics,
}

impl Responders {
    fn start(
        reports: mpsc::UnboundedSender<Report>,
        timings: responder::Timings,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("responders".into())
            .spawn(move || {
                if let Err(e) = priority::realtime() {
                    info!(error = %e, "responders run at normal priority (CAP_SYS_NICE lets them answer ahead of a busy CPU)");
                }
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Responders {
            running: BTreeMap::new(),
            own_macs: watch::Sender::new(BTreeSet::new()),
            nonce: rand::random(),
            runtime: handle,
            _stop: stop,
            reports,
            timings,
            metrics,
        })
    }

    /// Answers on each interface of `snapshot` for what `wanted` says.
    fn set(&mut self, mut wanted: BTreeMap<String, Wanted>, snapshot: &[Interface]) {
        let macs: BTreeSet<MacAddr> = snapshot.iter().map(|i| i.mac).collect();
        self.own_macs.send_if_modified(|current| {
            let changed = *current != macs;
            *current = macs;
            changed
        });
        self.running.retain(|name, (_, task)| {
            let keep = wanted.contains_key(name) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, addresses) in std::mem::take(&mut wanted) {
            if let Some((sender, _)) = self.running.get(&name) {
                sender.send_if_modified(|current| {
                    let changed = *current != addresses;
                    *current = addresses.clone();
                    changed
                });
                continue;
            }
            let Some(interface) = snapshot.iter().find(|i| i.name == name).cloned() else {
                continue;
            };
            let (sender, receiver) = watch::channel(addresses);
            let reports = self.reports.clone();
            let (own_macs, nonce) = (self.own_macs.subscribe(), self.nonce);
            let (timings, metrics) = (self.timings, self.metrics.clone());
            let interface_name = name.clone();
            let task = self.runtime.spawn(async move {
                let run = responder::run(
                    interface, receiver, own_macs, nonce, timings, reports, metrics,
                );
                if let Err(e) = run.await {
                    warn!(interface = %interface_name, error = %e, "responder stopped; restarting it");
                }
            });
            self.running.insert(name, (sender, task));
        }
    }
}

impl Drop for Responders {
    fn drop(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.running) {
            task.abort();
        }
    }
}

/// Runs the speaker until `shutdown` resolves, then hands its addresses over and returns.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    ready: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let me = settings.node.clone();
    let node = Api::<Node>::all(client.clone())
        .get_opt(&me)
        .await
        .map_err(|source| Error::Api {
            node: me.clone(),
            source,
        })?
        .ok_or_else(|| Error::NoNode { node: me.clone() })?;
    let mut world = World::default();
    world.apply_node(&node);
    let own_address = world
        .address(&me)
        .ok_or_else(|| Error::NoAddress { node: me.clone() })?;

    let (seeds_tx, seeds_rx) = watch::channel(BTreeMap::new());
    let membership = Membership::start(
        membership::Config {
            node: me.clone(),
            bind: settings.gossip_bind,
            advertise: SocketAddr::new(own_address, settings.gossip_bind.port()),
            timings: settings.gossip.clone(),
            key_dir: settings.gossip_key_dir.clone(),
        },
        seeds_rx,
        metrics.clone(),
    )
    .await?;
    let mut alive = membership.alive();
    let mut peer_links = membership.links();
    let mut snapshot = interfaces::watch().map_err(Error::LinkEvents)?;

    let config = watcher::Config::default();
    let mut streams = vec![
        stream(
            Api::<Node>::all(client.clone()),
            config.clone(),
            "nodes",
            |e| Change::Node(Box::new(e)),
        ),
        stream(
            Api::<IPAddressPool>::all(client.clone()),
            config.clone(),
            "ipaddresspools",
            Change::Pool,
        ),
        stream(
            Api::<L2Advertisement>::all(client.clone()),
            config.clone(),
            "l2advertisements",
            Change::Advertisement,
        ),
        stream(
            Api::<Service>::all(client.clone()),
            config.clone(),
            "services",
            |e| Change::Service(Box::new(e)),
        ),
        stream(
            Api::<EndpointSlice>::all(client.clone()),
            config.clone(),
            "endpointslices",
            Change::Slice,
        ),
        stream(
            Api::<Lease>::namespaced(client.clone(), &settings.namespace),
            config.clone().labels(&format!("{}=true", heartbeat::LABEL)),
            "leases",
            Change::Lease,
        ),
    ];
    let bgp = match &settings.bgp {
        Some(bgp_settings) => {
            streams.extend([
                stream(
                    Api::<BGPPeer>::all(client.clone()),
                    config.clone(),
                    "bgppeers",
                    Change::BgpPeer,
                ),
                stream(
                    Api::<BGPAdvertisement>::all(client.clone()),
                    config.clone(),
                    "bgpadvertisements",
                    Change::BgpAdvertisement,
                ),
                stream(
                    Api::<BFDProfile>::all(client.clone()),
                    config.clone(),
                    "bfdprofiles",
                    Change::BfdProfile,
                ),
                // The peers' passwords: Secrets in the speaker's namespace only.
                stream(
                    Api::<Secret>::namespaced(client.clone(), &settings.namespace),
                    config.clone(),
                    "secrets",
                    Change::Secret,
                ),
            ]);
            let uid = node.metadata.uid.clone().unwrap_or_default();
            let namespace = &settings.namespace;
            let bgp_settings = bgp_settings.clone();
            Some(
                Bgp::start(
                    client.clone(),
                    &me,
                    &uid,
                    namespace,
                    bgp_settings,
                    metrics.clone(),
                )
                .await,
            )
        }
        None => None,
    };
    let mut changes = futures::stream::select_all(streams);

    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let mut responders = Responders::start(reports_tx, settings.responder, metrics.clone())
        .map_err(Error::Responders)?;
    let mut speaker = Speaker {
        me: me.clone(),
        settings: settings.clone(),
        metrics: metrics.clone(),
        world,
        heartbeats: heartbeat::Leases::default(),
        watches: Watches::default(),
        api_reachable: true,
        conflicts: BTreeMap::new(),
        written: BTreeMap::new(),
        announcer: Announcer::new(me.clone()),
        interfaces: snapshot.borrow_and_update().clone(),
        answering: BTreeMap::new(),
        segments: Segments::default(),
        writer: Writer::new(client.clone(), "speaker", WRITES_IN_FLIGHT),
        publisher: Publisher::new(client.clone(), field_managers::SPEAKER, &me),
        bgp,
    };

    // The heartbeat runs on its own so that an API server that stops answering cannot stall
    // the loop that decides what this node answers for: it only flips `reachable`.
    let (reachable_tx, mut reachable) = watch::channel(true);
    let heartbeat = AbortOnDrop(tokio::spawn({
        let owner = heartbeat::Owner {
            node: me.clone(),
            uid: node.metadata.uid.clone().unwrap_or_default(),
        };
        let (client, namespace) = (client.clone(), settings.namespace.clone());
        let (interval, duration) = (settings.heartbeat_interval, settings.heartbeat_duration);
        async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let renewed = tokio::time::timeout(
                    interval,
                    heartbeat::renew(&client, &namespace, &owner, duration),
                )
                .await;
                match &renewed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "renewing the heartbeat Lease failed"),
                    Err(_) => warn!("renewing the heartbeat Lease timed out"),
                }
                reachable_tx.send_if_modified(|was| {
                    let now = matches!(renewed, Ok(Ok(())));
                    std::mem::replace(was, now) != now
                });
            }
        }
    }));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_pass: Option<tokio::time::Instant> = None;
    let mut pass_due: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let wake = tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return Err(Error::WatchEnded("API")) };
                speaker.apply(change);
                // A burst (a relist, Services created by the hundred) is applied in one go
                // before electing again: an election per burst, not one per object.
                for _ in 0..BURST {
                    let Some(Some(change)) = changes.next().now_or_never() else { break };
                    speaker.apply(change);
                }
                seeds_tx.send_if_modified(|seeds| {
                    let now = speaker.world.peers(&me, settings.gossip_bind.port());
                    let changed = *seeds != now;
                    *seeds = now;
                    changed
                });
                Wake::Soon
            }
            changed = alive.changed() => {
                if changed.is_err() { return Err(Error::WatchEnded("gossip")); }
                Wake::Now
            }
            changed = peer_links.changed() => {
                if changed.is_err() { return Err(Error::WatchEnded("gossip")); }
                Wake::Now
            }
            changed = snapshot.changed() => {
                if changed.is_err() { return Err(Error::WatchEnded("link events")); }
                speaker.interfaces = snapshot.borrow_and_update().clone();
                // Pairs of an interface that went or changed its MAC are forgotten.
                speaker.segments.retain_present(&speaker.interfaces);
                Wake::Now
            }
            Some(report) = reports.recv() => {
                speaker.report(report);
                while let Ok(report) = reports.try_recv() {
                    speaker.report(report);
                }
                Wake::Soon
            }
            Ok(()) = reachable.changed() => {
                speaker.api_reachable = *reachable.borrow_and_update();
                Wake::Now
            }
            _ = tick.tick() => Wake::Now,
            () = async { tokio::time::sleep_until(pass_due.expect("guarded")).await }, if pass_due.is_some() => Wake::Now,
            _ = speaker.writer.next() => {
                metrics.status_writes.inc();
                Wake::Never
            }
            Some(()) = speaker.publisher.next() => Wake::Never,
            _ = bgp_next(&mut speaker.bgp) => Wake::Never,
            () = &mut shutdown => break,
        };
        let now = tokio::time::Instant::now();
        let gap_over = last_pass.is_none_or(|last| now >= last + MIN_PASS_GAP);
        match wake {
            Wake::Never => continue,
            Wake::Soon if !gap_over => {
                pass_due.get_or_insert(last_pass.expect("a pass ran") + MIN_PASS_GAP);
                continue;
            }
            Wake::Soon | Wake::Now => {}
        }
        if speaker.watches.synced() && speaker.bgp.as_ref().is_none_or(Bgp::synced) {
            last_pass = Some(now);
            pass_due = None;
            let alive_now = alive.borrow().clone();
            let links_now = peer_links.borrow_and_update().clone();
            let wanted = speaker.converge(&alive_now, &links_now);
            membership.tell_links(speaker.links());
            // Not ready while fenced, so that the Pod shows it.
            let answering = wanted.is_some();
            responders.set(wanted.unwrap_or_default(), &speaker.interfaces);
            ready.send_if_modified(|was| std::mem::replace(was, answering) != answering);
        }
    }
    // Hand over: with our heartbeat Lease gone the API server confirms we left, and peers
    // learn of the leave at once and take the addresses over. Each address is answered until
    // its new owner announces it (or the handover runs out): one answer to every request,
    // never none or two.
    info!("leaving the gossip cluster; peers take over");
    drop(heartbeat);
    if let Err(e) = heartbeat::remove(&client, &settings.namespace, &me).await {
        warn!(error = %e, "removing the heartbeat Lease failed; peers wait for it to expire");
    }
    responders.set(speaker.handing_over_all(), &speaker.interfaces);
    membership.leave().await;
    let handed_over = async {
        while !speaker.answering.is_empty() {
            let Some(report) = reports.recv().await else {
                break;
            };
            speaker.report(report);
        }
    };
    // The responders end each handover by then; the margin is for their reports.
    let margin = Duration::from_millis(100);
    if tokio::time::timeout(settings.responder.handover + margin, handed_over)
        .await
        .is_err()
    {
        warn!("handovers not reported in time; stopping");
    }
    drop(responders);
    if let Some(bgp) = &mut speaker.bgp {
        bgp.withdraw().await;
    }
    Ok(())
}

/// What BGP's side of the speaker has to do next; never, without BGP.
async fn bgp_next(bgp: &mut Option<Bgp>) -> bgp_runner::Woke {
    match bgp {
        Some(bgp) => bgp.next().await,
        None => std::future::pending().await,
    }
}

pub(crate) fn kube_event(warning: bool, reason: EventReason, note: &str) -> KubeEvent {
    KubeEvent {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.as_str().into(),
        note: Some(note.into()),
        action: "Announce".into(),
        secondary: None,
    }
}

/// The speaker's watches: it elects only once every one has listed.
#[derive(Default)]
struct Watches {
    nodes: Watch,
    pools: Watch,
    advertisements: Watch,
    services: Watch,
    slices: Watch,
    leases: Watch,
}

impl Watches {
    fn synced(&self) -> bool {
        [
            &self.nodes,
            &self.pools,
            &self.advertisements,
            &self.services,
            &self.slices,
            &self.leases,
        ]
        .iter()
        .all(|w| w.synced())
    }
}

/// Watch events applied at most between two elections.
const BURST: usize = 256;

/// The least time between two passes that watch events or the responders' reports ask for. A
/// failover moving a few hundred Services brings a condition write, a watch event and a report
/// per Service; a pass each would keep this thread, which gossip shares, busy for seconds and
/// make peers take this node for dead. Changes to who is alive, to this node's links or to the
/// API server's reachability pass at once: failover never waits for this.
const MIN_PASS_GAP: Duration = Duration::from_millis(50);

/// What an event asks of the loop.
enum Wake {
    /// A pass now: who may answer may have changed.
    Now,
    /// A pass, but not closer than [`MIN_PASS_GAP`] to the last one.
    Soon,
    /// No pass: nothing a pass reads changed.
    Never,
}

/// Condition writes in flight at once: a thousand at once would hold a thousand requests'
/// buffers (the latest body per Service is all that is kept).
const WRITES_IN_FLIGHT: usize = 8;

/// A task that stops when its owner drops it, whatever path the owner leaves by.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A Service's Announced condition, as a server-side apply body.
#[derive(Clone, Debug)]
struct ConditionWrite {
    key: ServiceKey,
    body: serde_json::Value,
}

impl StatusWrite for ConditionWrite {
    type Target = ServiceKey;

    fn apply(
        &self,
        client: Client,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), kube::Error>> + Send>> {
        let ConditionWrite { key, body } = self.clone();
        Box::pin(async move {
            Api::<Service>::namespaced(client, &key.namespace)
                .patch_status(
                    &key.name,
                    &PatchParams::apply(field_managers::SPEAKER).force(),
                    &Patch::Apply(&body),
                )
                .await
                .map(drop)
        })
    }
}

struct Speaker {
    me: String,
    settings: Settings,
    metrics: Metrics,
    world: World,
    heartbeats: heartbeat::Leases,
    watches: Watches,
    api_reachable: bool,
    /// Addresses another host answered for, and when.
    conflicts: BTreeMap<IpAddr, (Conflict, tokio::time::Instant)>,
    announcer: Announcer,
    /// This node's interfaces, kept current by link events.
    interfaces: Vec<Interface>,
    /// What we last wrote per Service, until the watch shows it.
    written: BTreeMap<ServiceKey, Announced>,
    /// Addresses the responders answer for now (probed and announced), and on which
    /// interfaces.
    answering: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Which of its interfaces share a segment, as the responders heard it.
    segments: Segments,
    writer: Writer<ConditionWrite>,
    publisher: Publisher,
    bgp: Option<Bgp>,
}

impl Speaker {
    fn apply(&mut self, change: Change) {
        let world = &mut self.world;
        let watches = &mut self.watches;
        match change {
            Change::WatchError(what, e) => match watch_forbidden(&e) {
                Some(message) => error!(
                    resource = what,
                    "not allowed to list and watch {what}: {message}. Grant it to the speaker's \
                     ServiceAccount (deploy/ holds the RBAC); retrying with backoff"
                ),
                None => warn!(resource = what, error = %e, "watch error; retrying with backoff"),
            },
            Change::Node(event) => drop(watches.nodes.handle(world, *event)),
            Change::Pool(event) => drop(watches.pools.handle(world, event)),
            Change::Advertisement(event) => drop(watches.advertisements.handle(world, event)),
            Change::Service(event) => {
                // What the watch shows now is what to compare with: our write arrived, or
                // another speaker's replaced it.
                if let Event::Apply(s) | Event::Delete(s) = event.as_ref() {
                    let key = ServiceKey::new(s.namespace().unwrap_or_default(), s.name_any());
                    self.written.remove(&key);
                }
                drop(watches.services.handle(world, *event));
            }
            Change::Slice(event) => drop(watches.slices.handle(world, event)),
            Change::Lease(event) => drop(watches.leases.handle(&mut self.heartbeats, event)),
            Change::BgpPeer(event) => {
                if let Some(bgp) = &mut self.bgp {
                    drop(bgp.watches.peers.handle(&mut bgp.objects, event));
                }
            }
            Change::BgpAdvertisement(event) => {
                if let Some(bgp) = &mut self.bgp {
                    drop(bgp.watches.advertisements.handle(&mut bgp.objects, event));
                }
            }
            Change::BfdProfile(event) => {
                if let Some(bgp) = &mut self.bgp {
                    drop(bgp.watches.profiles.handle(&mut bgp.objects, event));
                }
            }
            Change::Secret(event) => {
                if let Some(bgp) = &mut self.bgp {
                    drop(bgp.watches.secrets.handle(&mut bgp.objects, event));
                }
            }
        }
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Conflict { ip, interface, mac } => {
                self.metrics.conflicts.inc();
                // Reported on the pools too: whoever owns the LAN sees it there.
                let note = format!(
                    "{ip} is already used by {mac} on {interface} (seen by node {}); Services with it are not announced",
                    self.me
                );
                for (pool, uid) in self.world.pools_holding(ip) {
                    let regarding = ObjectReference {
                        api_version: Some("herald.dev/v1alpha1".into()),
                        kind: Some("IPAddressPool".into()),
                        name: Some(pool),
                        uid: Some(uid),
                        ..ObjectReference::default()
                    };
                    self.publisher.submit(
                        kube_event(true, EventReason::AddressConflict, &note),
                        regarding,
                    );
                }
                let conflict = Conflict {
                    mac: mac.to_string(),
                    interface,
                };
                self.conflicts
                    .insert(ip, (conflict, tokio::time::Instant::now()));
            }
            Report::Announcing { ip, interface } => {
                info!(%ip, %interface, "announcing");
                if !self.answering.contains_key(&ip) {
                    self.metrics.takeovers.inc();
                }
                self.answering.entry(ip).or_default().insert(interface);
            }
            Report::HandedOver { ip, interface } => {
                info!(%ip, %interface, "handed over");
                if let Some(interfaces) = self.answering.get_mut(&ip) {
                    interfaces.remove(&interface);
                    if interfaces.is_empty() {
                        self.answering.remove(&ip);
                    }
                }
            }
            Report::SharedSegment {
                interface,
                other_mac,
            } => {
                if let Some(other) = self
                    .segments
                    .record(&interface, other_mac, &self.interfaces)
                {
                    info!(%interface, %other, "the two interfaces share a segment; each address is answered on one of them");
                }
            }
        }
    }

    /// Every address answered now, to be answered until its new owner announces it.
    fn handing_over_all(&self) -> BTreeMap<String, Wanted> {
        let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
        for (ip, interfaces) in &self.answering {
            for interface in interfaces {
                wanted
                    .entry(interface.clone())
                    .or_default()
                    .insert(*ip, Answer::UntilTakenOver);
            }
        }
        wanted
    }

    /// What this node can answer on, as its peers need to know to elect.
    fn links(&self) -> Links {
        interfaces::links(&self.interfaces, &self.world.advertised_interfaces())
    }

    /// Plans a pass (see [`Announcer`]) and carries it out: writes conditions and publishes
    /// events; returns what each interface answers for, or `None` while this speaker fences
    /// itself.
    fn converge(
        &mut self,
        alive: &BTreeSet<String>,
        links: &BTreeMap<String, Links>,
    ) -> Option<BTreeMap<String, Wanted>> {
        let started = std::time::Instant::now();
        let wanted = self.plan_and_carry_out(alive, links);
        self.metrics
            .pass_seconds
            .observe(started.elapsed().as_secs_f64());
        wanted
    }

    fn plan_and_carry_out(
        &mut self,
        alive: &BTreeSet<String>,
        links: &BTreeMap<String, Links>,
    ) -> Option<BTreeMap<String, Wanted>> {
        let retry = self.settings.conflict_retry;
        self.conflicts.retain(|_, (_, seen)| seen.elapsed() < retry);
        let (peers, fresh) = heartbeat::view(
            self.heartbeats.all(),
            |n| self.world.is_node(n),
            Timestamp::now(),
        );
        let api = if self.api_reachable {
            ApiView::Fresh(fresh)
        } else {
            ApiView::Unreachable
        };
        let conflicts: BTreeMap<IpAddr, Conflict> = self
            .conflicts
            .iter()
            .map(|(ip, (conflict, _))| (*ip, conflict.clone()))
            .collect();
        // BGP decides on the same view, and says for the conditions what it advertises.
        let reporter = alive.iter().next() == Some(&self.me);
        let bgp = match &mut self.bgp {
            Some(bgp) => bgp.pass(self.world.inputs(alive, &BTreeMap::new()), reporter),
            None => BTreeMap::new(),
        };
        let plan = self.announcer.plan(&Pass {
            world: &self.world,
            alive,
            peers: &peers,
            api: &api,
            interfaces: &self.interfaces,
            segments: &self.segments,
            links,
            conflicts: &conflicts,
            answering: &self.answering,
            bgp: &bgp,
        });
        self.metrics.elections.inc();
        self.metrics.peers_alive.set(alive.len() as i64);
        for (key, condition) in plan.conditions {
            self.write(&key, condition);
        }
        for event in plan.events {
            self.publish(event);
        }
        let wanted = match plan.answer {
            Ok(wanted) => wanted,
            Err(why) => {
                warn!(reason = %why, "not answering");
                self.metrics.fenced.set(1);
                self.metrics.announced.set(0);
                self.answering.clear();
                return None;
            }
        };
        self.metrics.fenced.set(0);
        self.metrics.announced.set(plan.announced as i64);
        for (ip, interfaces) in &mut self.answering {
            interfaces.retain(|name| wanted.get(name).is_some_and(|w| w.contains_key(ip)));
        }
        self.answering
            .retain(|_, interfaces| !interfaces.is_empty());
        Some(wanted)
    }

    fn publish(&mut self, event: announce::Event) {
        let regarding = match event.regarding {
            Regarding::Service(key) => {
                let Some(facts) = self.world.service(&key) else {
                    return;
                };
                ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Service".into()),
                    namespace: Some(key.namespace.clone()),
                    name: Some(key.name.clone()),
                    uid: Some(facts.uid.clone()),
                    ..ObjectReference::default()
                }
            }
            Regarding::Advertisement { name, uid } => ObjectReference {
                api_version: Some("herald.dev/v1alpha1".into()),
                kind: Some("L2Advertisement".into()),
                name: Some(name),
                uid: Some(uid),
                ..ObjectReference::default()
            },
        };
        self.publisher.submit(
            kube_event(event.warning, event.reason, &event.note),
            regarding,
        );
    }

    /// Writes the Service's Announced condition when it differs from what it shows and from
    /// what we wrote last.
    fn write(&mut self, key: &ServiceKey, condition: Announced) {
        let Some(facts) = self.world.service(key) else {
            return;
        };
        let shown = facts.announced.as_ref();
        if shown.is_some_and(|c| {
            (c.status == "True") == condition.status
                && c.reason == condition.reason
                && c.message == condition.message
        }) {
            self.written.remove(key);
            return;
        }
        if self.written.get(key) == Some(&condition) {
            return;
        }
        tracing::trace!(service = %key, ?condition, ?shown, "writing the Announced condition");
        self.written.insert(key.clone(), condition.clone());
        let keep_time = shown
            .filter(|c| (c.status == "True") == condition.status)
            .map(|c| c.last_transition_time.clone());
        let since = keep_time.unwrap_or(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": key.name, "namespace": key.namespace },
            "status": { "conditions": [{
                "type": ANNOUNCED,
                "status": if condition.status { "True" } else { "False" },
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": since,
            }]},
        });
        self.writer.submit(
            key.clone(),
            ConditionWrite {
                key: key.clone(),
                body,
            },
        );
    }
}
