//! Which speakers are alive, learnt from the speakers themselves.
//!
//! SWIM gossip over UDP with the `foca` crate. foca is sans-IO: this module
//! owns the socket, the timers and the loop that feeds both to foca, and
//! publishes the node names of the live speakers.
//!
//! Each speaker also tells its peers which interfaces it can answer on ([`Links`]), as a foca
//! custom broadcast: a newer version replaces an older one, and every speaker says it again
//! (a new version) when a member joins, so that the joiner learns every node's links. Its
//! identity stays as it is: foca's `change_identity` would forget every member for a moment.
//!
//! Every datagram is sealed with the cluster's gossip key ([`gossip_auth`]); one that fails is
//! dropped and counted before foca sees it. Members come only from the Nodes the speaker
//! knows: a datagram from an identity that is not a known Node at its Node's address is
//! dropped too, and only known Nodes count as alive.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, binary_heap::PeekMut},
    fmt::Display,
    net::{IpAddr, SocketAddr},
    num::{NonZeroU8, NonZeroUsize},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use foca::{
    AccumulatingRuntime, BroadcastHandler, Codec, Foca, Invalidates, OwnedNotification,
    PostcardCodec, Timer,
};
use herald_core::election::Links;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::{
    net::UdpSocket,
    sync::{oneshot, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, info, warn};

use herald_runtime::dual_stack;

use crate::gossip_auth::{self, KeyError, Keys, ReplayGuard};
use crate::metrics::{DropReason, GossipKey, Metrics};

/// Largest datagram sent or accepted, sealed: below any LAN MTU, so never fragmented.
const MAX_PACKET_SIZE: usize = 1400;

/// How often the keys' folder is read again. A rotation's steps are minutes apart (kubelet
/// takes up to about a minute to update a mounted Secret), so this is plenty.
const KEY_RELOAD: Duration = Duration::from_secs(2);

/// A foreign host could flood the log: each kind of warning is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where this speaker gossips and how fast.
#[derive(Clone, Debug)]
pub struct Config {
    /// This speaker's Kubernetes node name.
    pub node: String,
    /// UDP address to listen on, e.g. `[::]:7946` (dual-stack: see [`dual_stack`]).
    pub bind: SocketAddr,
    /// Address the peers reach this speaker on. Port 0 stands for the port
    /// `bind` got (ephemeral ports, in tests).
    pub advertise: SocketAddr,
    pub timings: Timings,
    /// The gossip keys' folder (see [`Keys::read_dir`]), read again every few seconds.
    pub key_dir: PathBuf,
}

/// SWIM timings. Every live speaker probes one peer per `probe_period`, so a
/// dead speaker is probed within a period or two, suspected when that probe's
/// period ends, and declared down `suspect_to_down` later; `gossip_period`
/// then spreads the verdict.
#[derive(Clone, Debug)]
pub struct Timings {
    /// How often each speaker probes one peer. A peer that answers neither
    /// directly nor through others before the period ends is suspected.
    pub probe_period: Duration,
    /// How long to wait for a direct answer before asking `indirect_probes`
    /// other peers to probe as well. Only costs packets: a late direct
    /// answer still counts until the period ends.
    pub probe_rtt: Duration,
    /// How many peers probe on our behalf when the direct probe is late.
    pub indirect_probes: usize,
    /// How long a suspected speaker has to refute before it is declared down.
    pub suspect_to_down: Duration,
    /// How often pending updates go to `gossip_fanout` random peers, on top
    /// of those piggybacked on probes. Also how fast a suspected speaker
    /// hears it is suspected, so it can refute in time.
    pub gossip_period: Duration,
    pub gossip_fanout: usize,
    /// How many times each update is sent on (1 to 255).
    pub max_transmissions: usize,
    /// How often to announce ourselves to the seeds that are not live
    /// members: speakers that started after us, or the other side of a
    /// healed partition.
    pub announce_period: Duration,
}

impl Default for Timings {
    /// Fast LAN timings: a crash is seen everywhere in about 0.35 s (0.55 s at
    /// worst) in a small cluster, while a live speaker has to stay silent for
    /// about `probe_period + suspect_to_down` (300 ms) to be declared down.
    /// On a loaded 2-core host, 250 ms gave an occasional false down; 300 ms
    /// gave none in 30 speaker-minutes.
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(100),
            // LAN round trips are well under a millisecond; this leaves room
            // for a busy host and for the indirect round trip before the
            // period ends.
            probe_rtt: Duration::from_millis(40),
            indirect_probes: 3,
            suspect_to_down: Duration::from_millis(200),
            gossip_period: Duration::from_millis(50),
            gossip_fanout: 3,
            // 4 * log10(cluster size + 1), foca's LAN rule, for up to ~100 nodes.
            max_transmissions: 8,
            announce_period: Duration::from_secs(1),
        }
    }
}

impl Timings {
    fn to_foca(&self) -> Result<foca::Config, Error> {
        let non_zero = |n, what| NonZeroUsize::new(n).ok_or(Error::Timings(what));
        if self.probe_rtt.is_zero() || self.probe_rtt >= self.probe_period {
            return Err(Error::Timings(
                "probe_rtt must be above zero and below probe_period",
            ));
        }
        if self.suspect_to_down.is_zero()
            || self.gossip_period.is_zero()
            || self.announce_period.is_zero()
        {
            return Err(Error::Timings(
                "suspect_to_down, gossip_period and announce_period must be above zero",
            ));
        }
        let max_transmissions = u8::try_from(self.max_transmissions)
            .ok()
            .and_then(NonZeroU8::new)
            .ok_or(Error::Timings("max_transmissions must be 1 to 255"))?;
        Ok(foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: non_zero(
                self.indirect_probes,
                "indirect_probes must be above zero",
            )?,
            max_transmissions,
            suspect_to_down_after: self.suspect_to_down,
            max_packet_size: NonZeroUsize::new(MAX_PACKET_SIZE - gossip_auth::OVERHEAD)
                .expect("not zero"),
            // A speaker wrongly declared down learns it from the next peer it
            // talks to, and rejoins under a renewed identity. (foca 2.0 also
            // tells a speaker that refuted its suspicion in time, which then
            // renews needlessly: harmless, the node name stays alive.)
            notify_down_members: true,
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_period,
                num_members: non_zero(self.gossip_fanout, "gossip_fanout must be above zero")?,
            }),
            // The seeds (every node's speaker) are re-announced to by this
            // module, which finds new and returning peers without these.
            periodic_announce: None,
            periodic_announce_to_down_members: None,
            ..foca::Config::simple()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind the gossip socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "--gossip-bind-address {bind} (bound to {bound}) cannot receive the gossip that peers send \
         to this node's address {advertise}, its Node's InternalIP: bind [::]:{port} (IPv4 and \
         IPv6) or the InternalIP itself",
        port = bind.port()
    )]
    Unreachable {
        bind: SocketAddr,
        bound: SocketAddr,
        advertise: SocketAddr,
    },
    #[error("invalid gossip timings: {0}")]
    Timings(&'static str),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// A running member of the speakers' gossip. Dropping it stops the protocol
/// without a goodbye, as a crash would; [`Membership::leave`] says goodbye.
pub struct Membership {
    advertise: SocketAddr,
    alive: watch::Receiver<BTreeSet<String>>,
    links: watch::Receiver<BTreeMap<String, Links>>,
    own_links: watch::Sender<Option<Links>>,
    leave: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Membership {
    /// Binds the socket and starts the protocol task. `peers` are the gossip
    /// addresses of the speakers by node name, from the Node objects (ours may
    /// be among them): the only members accepted, announced to as they appear.
    pub async fn start(
        config: Config,
        peers: watch::Receiver<BTreeMap<String, SocketAddr>>,
        metrics: Metrics,
    ) -> Result<Membership, Error> {
        let foca_config = config.timings.to_foca()?;
        let keys = Keys::read_dir(&config.key_dir)?;
        let bind_error = |source| Error::Bind {
            addr: config.bind,
            source,
        };
        let socket = dual_stack::udp(config.bind).map_err(bind_error)?;
        let bound = socket.local_addr().map_err(bind_error)?;
        let mut advertise = config.advertise;
        if advertise.port() == 0 {
            advertise.set_port(bound.port());
        }
        if !receives_at(bound.ip(), advertise.ip()) {
            return Err(Error::Unreachable {
                bind: config.bind,
                bound,
                advertise,
            });
        }

        let identity = Identity {
            node: config.node.clone(),
            addr: advertise,
            generation: start_generation(),
        };
        let (alive_tx, alive) = watch::channel(BTreeSet::from([config.node.clone()]));
        let (links_tx, links) = watch::channel(BTreeMap::new());
        let (own_links, own_links_rx) = watch::channel(None);
        let (leave, left) = oneshot::channel();
        let book = LinksBook::default();
        let handler = LinksHandler {
            me: config.node,
            book: book.clone(),
        };
        let agent = Agent {
            foca: Foca::with_custom_broadcast(
                identity,
                foca_config,
                rand::make_rng(),
                PostcardCodec,
                handler,
            ),
            runtime: AccumulatingRuntime::new(),
            socket,
            timers: BinaryHeap::new(),
            alive: alive_tx,
            key_dir: config.key_dir,
            keys,
            last_sealed_ms: 0,
            replays: ReplayGuard::new(gossip_auth::WINDOW, gossip_auth::REMEMBERED),
            peers: BTreeMap::new(),
            metrics,
            warned: HashMap::new(),
            book,
            links_published: 0,
            links: links_tx,
            own_links: None,
            links_version: now_micros(),
            retell_links: false,
        };
        agent.show_keys();
        let task =
            tokio::spawn(agent.run(peers, own_links_rx, left, config.timings.announce_period));
        Ok(Membership {
            advertise,
            alive,
            links,
            own_links,
            leave: Some(leave),
            task,
        })
    }

    /// The address peers reach this speaker on.
    pub fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    /// Node names of the speakers alive right now, this one included; changes
    /// as soon as the protocol decides.
    pub fn alive(&self) -> watch::Receiver<BTreeSet<String>> {
        self.alive.clone()
    }

    /// What the live peers said they can answer on, by node name (this node not included); a
    /// live peer that has not said yet is missing.
    pub fn links(&self) -> watch::Receiver<BTreeMap<String, Links>> {
        self.links.clone()
    }

    /// Tells the peers what this node can answer on now; nothing is sent when it has not
    /// changed.
    pub fn tell_links(&self, links: Links) {
        self.own_links.send_if_modified(|told| {
            let changed = told.as_ref() != Some(&links);
            *told = Some(links);
            changed
        });
    }

    /// Leaves gracefully: peers learn it at once, so they take over this
    /// node's addresses without waiting for failure detection. Then stops.
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            // An error means the task already stopped: nobody to tell.
            let _ = leave.send(());
        }
        if let Err(error) = (&mut self.task).await {
            warn!(%error, "gossip task failed");
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a speaker is known to its peers. foca keeps one identity per address;
/// the generation grows with every restart and renewal so that the newest
/// incarnation at an address wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    node: String,
    addr: SocketAddr,
    generation: u64,
}

impl foca::Identity for Identity {
    type Addr = SocketAddr;

    /// Called when the peers declared us down: come back as a newer
    /// generation instead of staying out.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Microseconds since the epoch: a restarted speaker beats its previous
/// run, which renewed once per false death at most.
fn start_generation() -> u64 {
    now_micros()
}

/// Microseconds since the epoch: the versions of our links news.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// Whether a socket bound to `bound` receives what is sent to `advertise`: `[::]` (dual-stack)
/// does for both families, `0.0.0.0` for IPv4 only, any other address for itself only.
fn receives_at(bound: IpAddr, advertise: IpAddr) -> bool {
    match bound {
        IpAddr::V6(any) if any.is_unspecified() => true,
        IpAddr::V4(any) if any.is_unspecified() => advertise.is_ipv4(),
        address => address == advertise,
    }
}

/// Milliseconds since the epoch: the date on sealed datagrams.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// A speaker's links as it tells them: the custom broadcast's wire form. The version grows
/// with every telling, from the speaker's start time, so a restarted speaker's links replace
/// those of its previous run.
#[derive(Debug, Serialize, Deserialize)]
struct LinksNews {
    node: String,
    version: u64,
    up: Vec<String>,
    suitable_up: bool,
}

/// Which broadcast a [`LinksNews`] is: a node's newer version replaces its older ones.
struct LinksKey {
    node: String,
    version: u64,
}

impl Invalidates for LinksKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node && self.version >= other.version
    }
}

/// The newest links each peer told, with their version; `revision` counts the changes.
#[derive(Clone, Default)]
struct LinksBook(Arc<Mutex<LinksEntries>>);

#[derive(Default)]
struct LinksEntries {
    by_node: BTreeMap<String, (u64, Links)>,
    revision: u64,
}

impl LinksBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, LinksEntries> {
        // Nothing panics while holding it; a poisoned book is still a consistent one.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads the links news in foca's messages into the book, and tells foca which to spread on:
/// news newer than the book's, and our own.
struct LinksHandler {
    me: String,
    book: LinksBook,
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable links news: {0}")]
struct LinksNewsError(postcard::Error);

impl BroadcastHandler<Identity> for LinksHandler {
    type Key = LinksKey;
    type Error = LinksNewsError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Identity>,
    ) -> Result<Option<LinksKey>, LinksNewsError> {
        let news: LinksNews = postcard::from_bytes(data).map_err(LinksNewsError)?;
        let key = LinksKey {
            node: news.node,
            version: news.version,
        };
        // No sender: our own, added by the agent. Ours coming back from a peer is old news.
        if sender.is_none() {
            return Ok(Some(key));
        }
        if key.node == self.me {
            return Ok(None);
        }
        let mut book = self.book.lock();
        if book
            .by_node
            .get(&key.node)
            .is_some_and(|(known, _)| *known >= key.version)
        {
            return Ok(None);
        }
        let links = Links {
            up: news.up.into_iter().collect(),
            suitable_up: news.suitable_up,
        };
        book.by_node.insert(key.node.clone(), (key.version, links));
        book.revision += 1;
        Ok(Some(key))
    }
}

/// The node names that count as alive: ours, and the members that are a known Node at the
/// address their Node gives. foca may hold others (a key holder told it of them); they only
/// cost a probe now and then.
fn alive_nodes<'a>(
    me: &Identity,
    members: impl Iterator<Item = &'a Identity>,
    peers: &BTreeMap<String, SocketAddr>,
) -> BTreeSet<String> {
    std::iter::once(me.node.clone())
        .chain(
            members
                .filter(|id| peers.get(&id.node) == Some(&id.addr))
                .map(|id| id.node.clone()),
        )
        .collect()
}

/// The protocol task's state: foca and what it asked for.
struct Agent {
    foca: Foca<Identity, PostcardCodec, StdRng, LinksHandler>,
    runtime: AccumulatingRuntime<Identity>,
    socket: UdpSocket,
    timers: BinaryHeap<Reverse<(Instant, Timer<Identity>)>>,
    alive: watch::Sender<BTreeSet<String>>,
    key_dir: PathBuf,
    keys: Keys,
    /// The date of the last datagram sealed: each one gets a later date than the one before.
    last_sealed_ms: u64,
    replays: ReplayGuard,
    /// The speakers' gossip addresses by node name, from the Node objects.
    peers: BTreeMap<String, SocketAddr>,
    metrics: Metrics,
    /// When each kind of warning was last logged.
    warned: HashMap<&'static str, Instant>,
    /// The links the peers told, and the book's revision last published.
    book: LinksBook,
    links_published: u64,
    links: watch::Sender<BTreeMap<String, Links>>,
    /// Ours, once the runtime says, and the version last told.
    own_links: Option<Links>,
    links_version: u64,
    /// A member joined: tell our links again once the current batch is sent.
    retell_links: bool,
}

impl Agent {
    async fn run(
        mut self,
        mut peers: watch::Receiver<BTreeMap<String, SocketAddr>>,
        mut own_links: watch::Receiver<Option<Links>>,
        mut leave: oneshot::Receiver<()>,
        announce_period: Duration,
    ) {
        let mut packet = vec![0; MAX_PACKET_SIZE];
        let mut announce = tokio::time::interval(announce_period);
        announce.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut reload = tokio::time::interval(KEY_RELOAD);
        reload.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.peers = peers.borrow_and_update().clone();
        let mut peers_open = true;
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                // Received packets first: after this process stalled, the
                // answers queued meanwhile must reach foca before the overdue
                // probe timers do, or we would suspect peers that answered.
                biased;
                received = self.socket.recv_from(&mut packet) => match received {
                    Ok((len, from)) => self.receive(&packet[..len], from),
                    Err(error) => debug!(%error, "gossip receive failed"),
                },
                _ = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                    self.fire_due_timers();
                }
                changed = peers.changed(), if peers_open => match changed {
                    Ok(()) => {
                        self.peers = peers.borrow_and_update().clone();
                        self.announce();
                        self.publish_alive();
                    }
                    // The list is final: keep announcing to it.
                    Err(_) => peers_open = false,
                },
                Ok(()) = own_links.changed() => {
                    self.own_links = own_links.borrow_and_update().clone();
                    self.tell_links();
                }
                _ = announce.tick() => self.announce(),
                _ = reload.tick() => self.reload_keys(),
                left = &mut leave => {
                    // Err: the Membership was dropped, which is a crash, not a goodbye.
                    if left.is_ok() {
                        if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
                            warn!(%error, "cannot leave the gossip cluster");
                        }
                        self.flush().await;
                    }
                    return;
                }
            }
            self.flush().await;
            if std::mem::take(&mut self.retell_links) {
                self.tell_links();
                self.flush().await;
            }
        }
    }

    /// Hands the due timers to foca, earliest first: foca relies on that
    /// order (an indirect probe before the end of its probe period).
    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(next) = self.timers.peek_mut()
            && next.0.0 <= now
        {
            let Reverse((_, timer)) = PeekMut::pop(next);
            if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                debug!(%error, "gossip timer failed");
            }
        }
    }

    /// Opens a datagram and hands it to foca if it is authentic, fresh, and from a known Node.
    fn receive(&mut self, packet: &[u8], from: SocketAddr) {
        let me = self.foca.identity().addr;
        let payload = match self.keys.open(packet, me, now_ms(), &mut self.replays) {
            Ok(payload) => payload,
            Err(rejected) => return self.dropped(from, rejected.reason(), &rejected),
        };
        // The sender is checked here rather than after foca: foca would take it as a member
        // (and spread it) the moment it reads the datagram. Updates about other members are
        // left to foca; only known Nodes count as alive (`alive_nodes`).
        let sender: Identity = match PostcardCodec.decode_header(payload) {
            Ok(header) => header.src,
            Err(error) => {
                return self.dropped(from, "malformed", &format_args!("undecodable: {error}"));
            }
        };
        if self.peers.get(&sender.node) != Some(&sender.addr) {
            // Also the short while before the Node watch has listed the peers: not worth a
            // warning, counted still.
            self.count_drop("unknown_sender");
            debug!(%from, node = sender.node, addr = %sender.addr, "gossip from no known Node at that address dropped");
            return;
        }
        if let Err(error) = self.foca.handle_data(payload, &mut self.runtime) {
            debug!(%from, %error, "gossip packet rejected");
        }
    }

    fn count_drop(&self, reason: &'static str) {
        self.metrics
            .gossip_dropped
            .get_or_create(&DropReason {
                reason: reason.into(),
            })
            .inc();
    }

    fn dropped(&mut self, from: SocketAddr, reason: &'static str, why: &dyn Display) {
        self.count_drop(reason);
        if self.may_warn(reason) {
            warn!(%from, reason, "gossip datagram dropped: {why} (further ones are counted in herald_speaker_gossip_packets_dropped_total, logged at debug level)");
        } else {
            debug!(%from, reason, "gossip datagram dropped: {why}");
        }
    }

    /// A peer that gossip cannot reach soon looks dead, and this node cut off: worth a warning.
    fn send_failed(&mut self, to: SocketAddr, error: &std::io::Error) {
        self.metrics.gossip_send_failures.inc();
        if self.may_warn("send") {
            warn!(%to, %error, "gossip send failed (further failures are counted in herald_speaker_gossip_send_failures_total, logged at debug level)");
        } else {
            debug!(%to, %error, "gossip send failed");
        }
    }

    /// True if no warning of this kind was logged within [`WARN_EVERY`].
    fn may_warn(&mut self, kind: &'static str) -> bool {
        let now = Instant::now();
        let quiet = self
            .warned
            .get(kind)
            .is_none_or(|last| now.duration_since(*last) >= WARN_EVERY);
        if quiet {
            self.warned.insert(kind, now);
        }
        quiet
    }

    /// Reads the keys again: a rotation changes them. Keeps the keys it has if the folder
    /// is wrong now (a botched edit of the Secret), so that gossip goes on.
    fn reload_keys(&mut self) {
        match Keys::read_dir(&self.key_dir) {
            Ok(keys) if keys == self.keys => {}
            Ok(keys) => {
                self.keys = keys;
                self.show_keys();
            }
            Err(error) => {
                if self.may_warn("keys") {
                    warn!(%error, "gossip keys not reloaded; the speaker keeps the keys it has");
                }
            }
        }
    }

    /// Logs the keys and shows them in the `gossip_keys` metric.
    fn show_keys(&self) {
        let signing = self.keys.signing();
        let accepted: Vec<String> = self.keys.accepted().map(|id| id.to_string()).collect();
        info!(%signing, ?accepted, "gossip keys: signing with one, accepting these");
        self.metrics.gossip_keys.clear();
        for id in self.keys.accepted() {
            self.metrics
                .gossip_keys
                .get_or_create(&GossipKey {
                    id: id.to_string(),
                    signing: (id == signing).to_string(),
                })
                .set(1);
        }
    }

    /// Tells the peers our links under a new version, at once rather than at the next gossip.
    fn tell_links(&mut self) {
        let Some(links) = &self.own_links else {
            return;
        };
        self.links_version = now_micros().max(self.links_version + 1);
        let news = LinksNews {
            node: self.foca.identity().node.clone(),
            version: self.links_version,
            up: links.up.iter().cloned().collect(),
            suitable_up: links.suitable_up,
        };
        let mut buffer = [0; MAX_PACKET_SIZE];
        let told = postcard::to_slice(&news, &mut buffer)
            .map_err(|e| e.to_string())
            .and_then(|data| {
                self.foca
                    .add_broadcast(data)
                    .map_err(|e| format!("{e} ({} bytes)", data.len()))
            })
            .and_then(|_| {
                self.foca
                    .broadcast(&mut self.runtime)
                    .map_err(|e| e.to_string())
            });
        let interfaces = links.up.len();
        if let Err(error) = told
            && self.may_warn("links")
        {
            warn!(%error, interfaces, "cannot tell the peers which interfaces this node can answer on; they keep what it told before, or take it to answer on all");
        }
    }

    /// Publishes the links the live peers told, if they changed.
    fn publish_links(&mut self, members_changed: bool) {
        let book = self.book.lock();
        if !members_changed && book.revision == self.links_published {
            return;
        }
        self.links_published = book.revision;
        let alive = alive_nodes(
            self.foca.identity(),
            self.foca.iter_members().map(|m| m.id()),
            &self.peers,
        );
        let links: BTreeMap<String, Links> = book
            .by_node
            .iter()
            .filter(|(node, _)| alive.contains(*node))
            .map(|(node, (_, links))| (node.clone(), links.clone()))
            .collect();
        drop(book);
        self.links.send_if_modified(|current| {
            let changed = *current != links;
            *current = links;
            changed
        });
    }

    /// Publishes the node names alive now, if they changed.
    fn publish_alive(&self) {
        let alive = alive_nodes(
            self.foca.identity(),
            self.foca.iter_members().map(|m| m.id()),
            &self.peers,
        );
        self.alive.send_if_modified(|current| {
            let changed = *current != alive;
            *current = alive;
            changed
        });
    }

    /// Announces ourselves to the peers that are not live members yet.
    fn announce(&mut self) {
        let me = self.foca.identity().addr;
        let members: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for &seed in self.peers.values() {
            if seed == me || members.contains(&seed) {
                continue;
            }
            // foca accepts an announce sent to any identity at its address,
            // so the name and generation here don't matter.
            let to = Identity {
                node: String::new(),
                addr: seed,
                generation: 0,
            };
            if let Err(error) = self.foca.announce(to, &mut self.runtime) {
                debug!(%seed, %error, "cannot announce to seed");
            }
        }
    }

    /// Carries out what foca asked for: packets, timers, notifications.
    async fn flush(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            // Two identical datagrams sealed within one millisecond (foca sends such) would be
            // byte for byte the same, and the receiver would drop the second as a replay.
            let dated = now_ms().max(self.last_sealed_ms + 1);
            self.last_sealed_ms = dated;
            let sealed = self.keys.seal(&data, to.addr, dated);
            if let Err(error) = self.socket.send_to(&sealed, to.addr).await {
                self.send_failed(to.addr, &error);
            }
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timers.push(Reverse((now + after, timer)));
        }
        let mut members_changed = false;
        let mut joined = false;
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => {
                    info!(node = id.node, addr = %id.addr, "speaker up");
                    members_changed = true;
                    joined = true;
                }
                OwnedNotification::MemberDown(id) => {
                    info!(node = id.node, addr = %id.addr, "speaker down");
                    members_changed = true;
                }
                // A newer generation took over an address: a restart or a rejoin.
                OwnedNotification::Rename(_, id) => {
                    info!(node = id.node, addr = %id.addr, generation = id.generation, "speaker renewed");
                    members_changed = true;
                    joined = true;
                }
                OwnedNotification::Rejoin(id) => {
                    warn!(
                        generation = id.generation,
                        "peers told this speaker it is down; rejoining"
                    );
                }
                OwnedNotification::Idle => info!("no other speaker is alive"),
                other => debug!(?other, "gossip notification"),
            }
        }
        if members_changed {
            self.publish_alive();
        }
        self.publish_links(members_changed);
        // The joiner knows nobody's links: everyone tells theirs again, as new news that every
        // member spreads on.
        self.retell_links |= joined;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: &str = "127.0.0.1:0";

    type Peers = BTreeMap<String, SocketAddr>;

    /// A folder of test keys (speaker/testdata/gossip-keys): "cluster" or "foreign".
    fn keys(name: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/gossip-keys")).join(name)
    }

    fn config(node: &str) -> Config {
        Config {
            node: node.to_owned(),
            bind: LOOPBACK.parse().unwrap(),
            advertise: LOOPBACK.parse().unwrap(),
            timings: Timings::default(),
            key_dir: keys("cluster"),
        }
    }

    async fn start(node: &str, peers: &watch::Sender<Peers>) -> Membership {
        start_with(node, "cluster", peers).await.0
    }

    /// A speaker with the keys of test folder `keys_name`, and its metrics.
    async fn start_with(
        node: &str,
        keys_name: &str,
        peers: &watch::Sender<Peers>,
    ) -> (Membership, Metrics) {
        let metrics = Metrics::default();
        let config = Config {
            key_dir: keys(keys_name),
            ..config(node)
        };
        let member = Membership::start(config, peers.subscribe(), metrics.clone())
            .await
            .expect("membership starts");
        (member, metrics)
    }

    /// Starts speakers that know each other's addresses, once all are bound.
    async fn cluster(nodes: &[&str]) -> (watch::Sender<Peers>, Vec<Membership>) {
        let peers = watch::Sender::new(Peers::new());
        let mut members = Vec::new();
        for node in nodes {
            members.push(start(node, &peers).await);
        }
        peers.send_replace(
            nodes
                .iter()
                .zip(&members)
                .map(|(node, member)| (node.to_string(), member.advertise()))
                .collect(),
        );
        for member in &members {
            wait_for(member, nodes, Instant::now(), Duration::from_secs(5)).await;
        }
        (peers, members)
    }

    fn dropped(metrics: &Metrics, reason: &str) -> u64 {
        metrics
            .gossip_dropped
            .get_or_create(&DropReason {
                reason: reason.into(),
            })
            .get()
    }

    /// Asserts that `member` sees exactly `nodes` alive for all of `during`.
    async fn stays(member: &Membership, nodes: &[&str], during: Duration) {
        let want: BTreeSet<String> = nodes.iter().map(|&n| n.to_owned()).collect();
        let mut alive = member.alive();
        assert_eq!(*alive.borrow_and_update(), want);
        let changed = tokio::time::timeout(during, alive.changed()).await;
        assert!(
            changed.is_err(),
            "{} saw {:?} instead of {want:?}",
            member.advertise(),
            *alive.borrow()
        );
    }

    /// Waits until `member` sees exactly `nodes` alive; returns how long after `since`.
    async fn wait_for(
        member: &Membership,
        nodes: &[&str],
        since: Instant,
        within: Duration,
    ) -> Duration {
        let want: BTreeSet<String> = nodes.iter().map(|&n| n.to_owned()).collect();
        let mut alive = member.alive();
        let seen = tokio::time::timeout(within, alive.wait_for(|a| *a == want))
            .await
            .map(|seen| seen.is_ok());
        assert!(
            matches!(seen, Ok(true)),
            "{} did not see {want:?} within {within:?}, sees {:?}",
            member.advertise(),
            *alive.borrow()
        );
        since.elapsed()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_three_speakers_see_each_other_and_stay() {
        let (_seeds, members) = cluster(&["a", "b", "c"]).await;
        let mut views: Vec<_> = members.iter().map(Membership::alive).collect();
        for view in &mut views {
            view.mark_unchanged();
        }
        // No false positive while all three are healthy (and the host busy).
        tokio::time::sleep(Duration::from_secs(3)).await;
        for view in &views {
            assert!(
                !view.has_changed().unwrap(),
                "flapped: {:?}",
                *view.borrow()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_crash_is_detected() {
        let (_seeds, mut members) = cluster(&["a", "b", "c"]).await;
        let crashed = Instant::now();
        drop(members.pop());
        let (a, b) = tokio::join!(
            wait_for(&members[0], &["a", "b"], crashed, Duration::from_secs(3)),
            wait_for(&members[1], &["a", "b"], crashed, Duration::from_secs(3)),
        );
        println!("crash detected: a {a:?}, b {b:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_leave_is_seen_at_once() {
        let (_seeds, mut members) = cluster(&["a", "b", "c"]).await;
        let left = Instant::now();
        members.pop().unwrap().leave().await;
        let (a, b) = tokio::join!(
            wait_for(&members[0], &["a", "b"], left, Duration::from_secs(1)),
            wait_for(&members[1], &["a", "b"], left, Duration::from_secs(1)),
        );
        println!("leave seen: a {a:?}, b {b:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_crashed_speaker_restarts_on_a_new_port() {
        let (seeds, mut members) = cluster(&["a", "b", "c"]).await;
        drop(members.pop());
        for member in &members {
            wait_for(member, &["a", "b"], Instant::now(), Duration::from_secs(3)).await;
        }
        let restarted_at = Instant::now();
        let restarted = start("c", &seeds).await;
        seeds.send_modify(|seeds| {
            seeds.insert("c".into(), restarted.advertise());
        });
        members.push(restarted);
        for member in &members {
            let seen = wait_for(
                member,
                &["a", "b", "c"],
                restarted_at,
                Duration::from_secs(5),
            )
            .await;
            println!("restarted c seen by {} after {seen:?}", member.advertise());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_a_speaker_is_a_member_only_once_its_node_is_known() {
        // a and b know each other; d knows all three, but a and b do not know d's Node yet.
        let peers = watch::Sender::new(Peers::new());
        let (a, a_metrics) = start_with("a", "cluster", &peers).await;
        let b = start("b", &peers).await;
        peers.send_replace(Peers::from([
            ("a".into(), a.advertise()),
            ("b".into(), b.advertise()),
        ]));
        let d_peers = watch::Sender::new(peers.borrow().clone());
        let d = start("d", &d_peers).await;
        d_peers.send_modify(|peers| {
            peers.insert("d".into(), d.advertise());
        });
        for member in [&a, &b] {
            wait_for(member, &["a", "b"], Instant::now(), Duration::from_secs(5)).await;
        }
        // d announces itself (once a second) in vain.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        for member in [&a, &b] {
            stays(member, &["a", "b"], Duration::from_millis(500)).await;
        }
        assert_eq!(*d.alive().borrow(), BTreeSet::from(["d".to_owned()]));
        assert!(dropped(&a_metrics, "unknown_sender") > 0);

        // Their Node watch shows d: they find each other.
        peers.send_modify(|peers| {
            peers.insert("d".into(), d.advertise());
        });
        for member in [&a, &b, &d] {
            wait_for(
                member,
                &["a", "b", "d"],
                Instant::now(),
                Duration::from_secs(5),
            )
            .await;
        }
    }

    /// A speaker with another key, on a Node the others know: nobody hears it, and it hears
    /// nobody; each side counts the other's datagrams as signed with an unknown key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_a_speaker_with_another_key_is_no_member() {
        let peers = watch::Sender::new(Peers::new());
        let (a, a_metrics) = start_with("a", "cluster", &peers).await;
        let b = start("b", &peers).await;
        let (foreign, foreign_metrics) = start_with("f", "foreign", &peers).await;
        peers.send_replace(
            [("a", &a), ("b", &b), ("f", &foreign)]
                .into_iter()
                .map(|(node, member)| (node.to_owned(), member.advertise()))
                .collect(),
        );
        for member in [&a, &b] {
            wait_for(member, &["a", "b"], Instant::now(), Duration::from_secs(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        for member in [&a, &b] {
            stays(member, &["a", "b"], Duration::from_millis(500)).await;
        }
        stays(&foreign, &["f"], Duration::from_millis(100)).await;
        assert!(dropped(&a_metrics, "unknown_key") > 0);
        assert!(dropped(&foreign_metrics, "unknown_key") > 0);
        assert_eq!(dropped(&a_metrics, "unknown_sender"), 0);
    }

    fn links(up: &[&str]) -> Links {
        Links {
            up: up.iter().map(|n| n.to_string()).collect(),
            suitable_up: true,
        }
    }

    /// Waits until `member` has heard exactly `want` from its peers.
    async fn hears(member: &Membership, want: &[(&str, Links)]) {
        let want: BTreeMap<String, Links> = want
            .iter()
            .map(|(node, links)| (node.to_string(), links.clone()))
            .collect();
        let mut heard = member.links();
        let seen = tokio::time::timeout(Duration::from_secs(5), heard.wait_for(|h| *h == want))
            .await
            .map(|seen| seen.is_ok());
        assert!(
            matches!(seen, Ok(true)),
            "{} did not hear {want:?}, heard {:?}",
            member.advertise(),
            *heard.borrow()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_speakers_tell_each_other_their_links_and_a_joiner_hears_them_all() {
        let (seeds, members) = cluster(&["a", "b"]).await;
        members[0].tell_links(links(&["eth0", "eth1"]));
        members[1].tell_links(links(&["eth0"]));
        hears(&members[0], &[("b", links(&["eth0"]))]).await;
        hears(&members[1], &[("a", links(&["eth0", "eth1"]))]).await;
        // A change replaces what was told.
        members[0].tell_links(links(&["eth0"]));
        hears(&members[1], &[("a", links(&["eth0"]))]).await;

        // c joins after the telling: it hears both, and they hear it.
        let c = start("c", &seeds).await;
        c.tell_links(links(&["eth2"]));
        seeds.send_modify(|seeds| {
            seeds.insert("c".into(), c.advertise());
        });
        hears(&c, &[("a", links(&["eth0"])), ("b", links(&["eth0"]))]).await;
        hears(
            &members[0],
            &[("b", links(&["eth0"])), ("c", links(&["eth2"]))],
        )
        .await;

        // Only live members' links count.
        drop(c);
        hears(&members[0], &[("b", links(&["eth0"]))]).await;
    }

    #[test]
    fn membership_only_known_nodes_at_their_address_count_as_alive() {
        let id = |node: &str, addr: &str| Identity {
            node: node.into(),
            addr: addr.parse().unwrap(),
            generation: 1,
        };
        let me = id("a", "192.0.2.11:7946");
        let peers = Peers::from([
            ("b".into(), "192.0.2.12:7946".parse().unwrap()),
            ("c".into(), "192.0.2.13:7946".parse().unwrap()),
        ]);
        let members = [
            id("b", "192.0.2.12:7946"),
            // c's name at another address, and a Node nobody knows.
            id("c", "192.0.2.66:7946"),
            id("ghost", "192.0.2.14:7946"),
        ];
        assert_eq!(
            alive_nodes(&me, members.iter(), &peers),
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
    }

    /// A speaker frozen long enough to be declared down (a paused VM, a
    /// starved process) renews its identity and comes back by itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_speaker_declared_down_rejoins() {
        let (seeds, members) = cluster(&["a", "b"]).await;
        let (addr_tx, addr_rx) = oneshot::channel();
        let (freeze_tx, freeze_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let c_seeds = seeds.subscribe();
        // c runs on its own runtime thread so that it can be frozen alone.
        let c_thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let c = Membership::start(config("c"), c_seeds, Metrics::default())
                    .await
                    .unwrap();
                addr_tx.send(c.advertise()).unwrap();
                freeze_rx.await.unwrap();
                std::thread::sleep(Duration::from_secs(2));
                done_rx.await.unwrap();
            });
        });
        let c = addr_rx.await.unwrap();
        seeds.send_modify(|seeds| {
            seeds.insert("c".into(), c);
        });
        for member in &members {
            wait_for(
                member,
                &["a", "b", "c"],
                Instant::now(),
                Duration::from_secs(5),
            )
            .await;
        }
        let frozen = Instant::now();
        freeze_tx.send(()).unwrap();
        for member in &members {
            let down = wait_for(member, &["a", "b"], frozen, Duration::from_secs(2)).await;
            println!("frozen c declared down after {down:?}");
        }
        for member in &members {
            let back = wait_for(member, &["a", "b", "c"], frozen, Duration::from_secs(5)).await;
            println!("c back {back:?} after the start of its 2 s freeze");
        }
        done_tx.send(()).unwrap();
        c_thread.join().unwrap();
    }

    #[tokio::test]
    async fn membership_bind_error_names_the_address() {
        let (_seeds, members) = cluster(&["a"]).await;
        let taken = members[0].advertise();
        let config = Config {
            bind: taken,
            ..config("b")
        };
        let (_none, no_seeds) = watch::channel(Peers::new());
        let error = Membership::start(config, no_seeds, Metrics::default())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains(&taken.to_string()), "{error}");
    }

    /// Two speakers bound to `[::]`, one gossiping on IPv4 and one on IPv6, as on the nodes
    /// of a dual-stack cluster whose Nodes list either family first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn membership_dual_stack_sockets_gossip_with_either_family() {
        let peers = watch::Sender::new(Peers::new());
        let mut members = Vec::new();
        for (node, advertise) in [("a", "127.0.0.1:0"), ("b", "[::1]:0")] {
            let config = Config {
                bind: "[::]:0".parse().unwrap(),
                advertise: advertise.parse().unwrap(),
                ..config(node)
            };
            let member = Membership::start(config, peers.subscribe(), Metrics::default())
                .await
                .expect("membership starts");
            members.push(member);
        }
        peers.send_replace(Peers::from([
            ("a".into(), members[0].advertise()),
            ("b".into(), members[1].advertise()),
        ]));
        for member in &members {
            wait_for(member, &["a", "b"], Instant::now(), Duration::from_secs(5)).await;
        }
    }

    #[tokio::test]
    async fn membership_refuses_a_bind_address_that_cannot_receive_at_the_advertised_one() {
        let config = Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            advertise: "[::1]:7946".parse().unwrap(),
            ..config("a")
        };
        let (_none, no_seeds) = watch::channel(Peers::new());
        let error = Membership::start(config, no_seeds, Metrics::default())
            .await
            .err()
            .expect("refused");
        let message = error.to_string();
        for part in ["--gossip-bind-address 127.0.0.1:0", "[::1]:7946", "[::]:0"] {
            assert!(message.contains(part), "{part:?} not in: {message}");
        }
    }

    #[test]
    fn membership_a_socket_receives_at_its_own_address_or_a_wildcard_of_its_family() {
        let receives = |bound: &str, advertise: &str| {
            receives_at(bound.parse().unwrap(), advertise.parse().unwrap())
        };
        assert!(receives("::", "192.0.2.11"));
        assert!(receives("::", "2001:db8::11"));
        assert!(receives("0.0.0.0", "192.0.2.11"));
        assert!(!receives("0.0.0.0", "2001:db8::11"));
        assert!(receives("2001:db8::11", "2001:db8::11"));
        assert!(!receives("2001:db8::11", "2001:db8::12"));
        assert!(!receives("192.0.2.11", "2001:db8::11"));
    }

    /// An IPv4 socket cannot send to an IPv6 peer: counted, not only logged.
    #[tokio::test]
    async fn membership_counts_the_datagrams_it_cannot_send() {
        let peers = watch::Sender::new(Peers::from([("b".into(), "[::1]:7946".parse().unwrap())]));
        let (_a, metrics) = start_with("a", "cluster", &peers).await;
        tokio::time::timeout(Duration::from_secs(5), async {
            while metrics.gossip_send_failures.get() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the announce to b failed and was counted");
    }

    #[test]
    fn membership_rejects_probe_rtt_beyond_probe_period() {
        let timings = Timings {
            probe_rtt: Duration::from_millis(300),
            ..Timings::default()
        };
        assert!(matches!(timings.to_foca(), Err(Error::Timings(_))));
    }
}
