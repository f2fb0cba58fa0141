use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herald_runtime::flags::{self, AdminDefaults, CommonArgs};
use herald_runtime::shutdown;
use herald_speaker::bgp::runner as bgp;
use herald_speaker::frr;
use herald_speaker::link::responder;
use herald_speaker::membership;
use herald_speaker::metrics::Metrics;
use herald_speaker::runtime::{self, Settings};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Answers ARP and NDP for the LoadBalancer addresses this node wins.
#[derive(Parser, Debug)]
#[command(name = "herald-speaker", version)]
struct Args {
    /// The node this speaker runs on.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,

    /// Namespace of the speakers' heartbeat Leases.
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald-system")]
    namespace: String,

    #[command(flatten)]
    common: CommonArgs,

    /// Where the speakers gossip (UDP); peers use this port on each Node's InternalIP. `[::]`
    /// takes IPv4 and IPv6 (0.0.0.0 on a kernel without IPv6); an address must be able to
    /// receive at this Node's InternalIP.
    #[arg(long, default_value = "[::]:7946")]
    gossip_bind_address: SocketAddr,

    /// Folder of the gossip keys (the Secret herald-gossip-key, mounted): a file per key; the
    /// one named `primary` signs, every one is accepted. Read again every 2 s (key rotation).
    #[arg(long, default_value = "/etc/herald/gossip-key")]
    gossip_key_dir: PathBuf,

    /// Gossip: how often each speaker probes a peer; longer than --probe-rtt.
    #[arg(long, default_value = "100ms", value_parser = flags::duration)]
    probe_period: Duration,

    /// Gossip: how long to wait for a direct answer before asking others to probe.
    #[arg(long, default_value = "40ms", value_parser = flags::duration)]
    probe_rtt: Duration,

    /// Gossip: how long a suspected speaker has to refute before it is declared down.
    #[arg(long, default_value = "200ms", value_parser = flags::duration)]
    suspect_to_down: Duration,

    /// Gratuitous ARP / unsolicited NA sent on taking an address over (0: none).
    #[arg(long, default_value_t = 3)]
    burst: u32,

    /// Time between the announcements of a burst.
    #[arg(long, default_value = "100ms", value_parser = flags::duration)]
    burst_interval: Duration,

    /// How often owned addresses are announced again, for switches' tables.
    #[arg(long, default_value = "30s", value_parser = flags::duration)]
    refresh: Duration,

    /// How long to listen for another host using an address before first announcing it.
    #[arg(long, default_value = "300ms", value_parser = flags::duration)]
    probe_wait: Duration,

    /// How long an address another node has won is still answered here while that node has
    /// not announced it (on a rolling update, a failover back, a graceful stop).
    #[arg(long, default_value = "1s", value_parser = flags::duration)]
    handover: Duration,

    /// How often this node's heartbeat Lease is renewed.
    #[arg(long, default_value = "1s", value_parser = flags::duration)]
    heartbeat_interval: Duration,

    /// How long the heartbeat Lease stays valid after a renewal; longer than
    /// --heartbeat-interval. It bounds failover when gossip alone cannot decide (a two-node
    /// cluster).
    #[arg(long, default_value = "3s", value_parser = flags::duration)]
    heartbeat_duration: Duration,

    /// Advertise addresses over BGP too, as the cluster's BGPPeers and BGPAdvertisements say,
    /// through the FRR that runs beside the speaker (the chart's FRR sidecar). Without it the
    /// speaker does layer 2 only and reads no BGP object.
    #[arg(long, env = "HERALD_BGP")]
    bgp: bool,

    /// BGP: FRR's configuration folder, shared with FRR; the speaker writes `frr.conf` there.
    #[arg(long, default_value = "/etc/frr")]
    frr_config_dir: PathBuf,

    /// BGP: the folder of FRR's daemons' vty sockets (`bgpd.vty`...), shared with FRR.
    #[arg(long, default_value = "/var/run/frr")]
    frr_socket_dir: PathBuf,

    /// BGP: how often FRR is asked for its sessions' state (and after every reload).
    #[arg(long, default_value = "3s", value_parser = flags::duration)]
    bgp_poll_interval: Duration,
}

// One thread serves the API watches, gossip and elections, which wait on the network far more
// than they compute; the responders answer on a thread of their own (runtime.rs).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Args = flags::parse(AdminDefaults {
        metrics: "[::]:9403",
        health: "[::]:9404",
    });
    check_timings(&args)?;
    let client = args.common.start().await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(false);
    let admin = args.common.serve_admin(registry, ready_rx);
    let settings = Settings {
        node: args.node_name.clone(),
        namespace: args.namespace.clone(),
        gossip_bind: args.gossip_bind_address,
        gossip: membership::Timings {
            probe_period: args.probe_period,
            probe_rtt: args.probe_rtt,
            suspect_to_down: args.suspect_to_down,
            ..membership::Timings::default()
        },
        gossip_key_dir: args.gossip_key_dir.clone(),
        responder: responder::Timings {
            burst: args.burst,
            burst_interval: args.burst_interval,
            refresh: args.refresh,
            probe_wait: args.probe_wait,
            handover: args.handover,
        },
        heartbeat_interval: args.heartbeat_interval,
        heartbeat_duration: args.heartbeat_duration,
        conflict_retry: Duration::from_secs(60),
        bgp: args.bgp.then(|| bgp::Settings {
            paths: frr::Paths {
                config_dir: args.frr_config_dir.clone(),
                vty_socket_dir: args.frr_socket_dir.clone(),
                ..frr::Paths::default()
            },
            poll: args.bgp_poll_interval,
            reloads: frr::Timings::default(),
        }),
    };
    tokio::select! {
        result = runtime::run(client, settings, metrics, ready_tx, shutdown()) => result.context("herald-speaker"),
        result = admin => result.context("serving metrics and health"),
    }
}

/// Timings that each make sense alone but not together are refused before anything starts.
fn check_timings(args: &Args) -> anyhow::Result<()> {
    if args.probe_period <= args.probe_rtt {
        anyhow::bail!(
            "--probe-period ({:?}) must be longer than --probe-rtt ({:?}): a probe waits for its \
             answer before the next one starts",
            args.probe_period,
            args.probe_rtt
        );
    }
    if args.heartbeat_duration <= args.heartbeat_interval {
        anyhow::bail!(
            "--heartbeat-duration ({:?}) must be longer than --heartbeat-interval ({:?}): \
             otherwise the Lease expires between two renewals and every peer fences itself",
            args.heartbeat_duration,
            args.heartbeat_interval
        );
    }
    Ok(())
}
