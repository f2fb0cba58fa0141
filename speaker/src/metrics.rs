//! Prometheus metrics (`herald_speaker_*`), served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Protocol {
    pub protocol: String,
}

/// How applying a configuration to FRR ended: `applied`, `rejected` (by FRR's check, nothing
/// changed) or `failed` (the reload itself).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadResult {
    pub result: String,
}

/// Why a gossip datagram was dropped (`gossip_auth::Rejected::reason`, or `unknown_sender`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropReason {
    pub reason: String,
}

/// A gossip key by its id (the first 8 bytes of its SHA-256, in hex); `signing` is "true" for
/// the one this speaker signs with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipKey {
    pub id: String,
    pub signing: String,
}

/// A counter per protocol, looked up in its family once: counting on the reply path is then
/// one atomic add, without the family's lock or a label to build.
#[derive(Clone, Default)]
pub struct ByProtocol {
    pub arp: Counter,
    pub ndp: Counter,
}

impl ByProtocol {
    fn of(family: &Family<Protocol, Counter>) -> Self {
        let counter = |protocol: &str| {
            family
                .get_or_create(&Protocol {
                    protocol: protocol.into(),
                })
                .clone()
        };
        ByProtocol {
            arp: counter("arp"),
            ndp: counter("ndp"),
        }
    }
}

/// How long one pass (elect, plan, carry out) takes: 50 µs to about 3 s, doubling.
#[derive(Clone)]
pub struct PassSeconds(pub Histogram);

impl Default for PassSeconds {
    fn default() -> Self {
        PassSeconds(Histogram::new(exponential_buckets(0.000_05, 2.0, 16)))
    }
}

impl PassSeconds {
    pub fn observe(&self, seconds: f64) {
        self.0.observe(seconds);
    }
}

/// Cloning shares the values: the responders count into the same metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    pub announced: Gauge,
    pub requests: ByProtocol,
    pub replies: ByProtocol,
    pub gratuitous: ByProtocol,
    pub elections: Counter,
    pub pass_seconds: PassSeconds,
    pub peers_alive: Gauge,
    pub conflicts: Counter,
    pub takeovers: Counter,
    pub fenced: Gauge,
    pub status_writes: Counter,
    pub gossip_dropped: Family<DropReason, Counter>,
    pub gossip_send_failures: Counter,
    pub gossip_keys: Family<GossipKey, Gauge>,
    pub bgp_reloads: Family<ReloadResult, Counter>,
    pub bgp_sessions_up: Gauge,
    pub bgp_prefixes_advertised: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let families: [Family<Protocol, Counter>; 3] = Default::default();
        let [requests, replies, gratuitous] = &families;
        let metrics = Metrics {
            requests: ByProtocol::of(requests),
            replies: ByProtocol::of(replies),
            gratuitous: ByProtocol::of(gratuitous),
            ..Metrics::default()
        };
        let r = registry.sub_registry_with_prefix("herald_speaker");
        r.register(
            "addresses_announced",
            "Addresses this node answers for",
            metrics.announced.clone(),
        );
        r.register(
            "requests",
            "ARP requests and Neighbor Solicitations answered, by protocol",
            requests.clone(),
        );
        r.register(
            "replies",
            "ARP replies and Neighbor Advertisements sent, by protocol",
            replies.clone(),
        );
        r.register(
            "gratuitous",
            "Gratuitous ARP and unsolicited Neighbor Advertisements sent, by protocol",
            gratuitous.clone(),
        );
        r.register(
            "elections",
            "Times the election was computed",
            metrics.elections.clone(),
        );
        r.register(
            "pass_seconds",
            "Time of one pass: electing, planning and carrying out the plan",
            metrics.pass_seconds.0.clone(),
        );
        r.register(
            "peers_alive",
            "Speakers alive as gossip shows them, this one included",
            metrics.peers_alive.clone(),
        );
        r.register(
            "conflicts",
            "Addresses not announced because another host on the LAN uses them",
            metrics.conflicts.clone(),
        );
        r.register(
            "takeovers",
            "Addresses this node began answering for: newly allocated, or moved here from another node",
            metrics.takeovers.clone(),
        );
        r.register(
            "fenced",
            "1 while this speaker stays silent to fence itself (link down, cut off)",
            metrics.fenced.clone(),
        );
        r.register(
            "status_writes",
            "Writes of the herald.dev/Announced condition",
            metrics.status_writes.clone(),
        );
        r.register(
            "gossip_packets_dropped",
            "Gossip datagrams dropped: unauthenticated, replayed, or from no known Node, by reason",
            metrics.gossip_dropped.clone(),
        );
        r.register(
            "gossip_send_failures",
            "Gossip datagrams the kernel refused to send (no route, wrong address family)",
            metrics.gossip_send_failures.clone(),
        );
        r.register(
            "gossip_keys",
            "The gossip keys this speaker accepts (1 each), by id; signing=\"true\" for the one it signs with",
            metrics.gossip_keys.clone(),
        );
        let bgp = registry.sub_registry_with_prefix("herald_bgp");
        bgp.register(
            "reloads",
            "Configurations applied to FRR with frr-reload.py, by result",
            metrics.bgp_reloads.clone(),
        );
        bgp.register(
            "sessions_up",
            "This node's BGP sessions that are Established",
            metrics.bgp_sessions_up.clone(),
        );
        bgp.register(
            "prefixes_advertised",
            "Prefixes this node advertises, summed over its Established BGP sessions",
            metrics.bgp_prefixes_advertised.clone(),
        );
        metrics
    }
}
