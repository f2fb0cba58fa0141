use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herald_runtime::flags::{self, AdminDefaults, CommonArgs};
use herald_runtime::shutdown;
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

    /// Where the speakers gossip (UDP); peers use this port on each Node's InternalIP.
    #[arg(long, default_value = "0.0.0.0:7946")]
    gossip_bind_address: SocketAddr,

    /// Folder of the gossip keys (the Secret herald-gossip-key, mounted): a file per key; the
    /// one named `primary` signs, every one is accepted. Read again every 2 s (key rotation).
    #[arg(long, default_value = "/etc/herald/gossip-key")]
    gossip_key_dir: PathBuf,

    /// Gossip: how often each speaker probes a peer.
    #[arg(long, default_value_t = 100)]
    probe_period_ms: u64,

    /// Gossip: how long to wait for a direct answer before asking others to probe.
    #[arg(long, default_value_t = 40)]
    probe_rtt_ms: u64,

    /// Gossip: how long a suspected speaker has to refute before it is declared down.
    #[arg(long, default_value_t = 200)]
    suspect_to_down_ms: u64,

    /// Gratuitous ARP / unsolicited NA sent on taking an address over.
    #[arg(long, default_value_t = 3)]
    burst: u32,

    #[arg(long, default_value_t = 100)]
    burst_interval_ms: u64,

    /// How often owned addresses are announced again, for switches' tables.
    #[arg(long, default_value_t = 30)]
    refresh_seconds: u64,

    /// How long to listen for another host using an address before first announcing it.
    #[arg(long, default_value_t = 300)]
    probe_wait_ms: u64,

    /// How often this node's heartbeat Lease is renewed, and how long it stays valid. The
    /// duration bounds failover when gossip alone cannot decide (a two-node cluster).
    #[arg(long, default_value_t = 1)]
    heartbeat_interval_seconds: u64,

    #[arg(long, default_value_t = 3)]
    heartbeat_duration_seconds: u64,
}

// One thread serves the API watches, gossip and elections, which wait on the network far more
// than they compute; the responders answer on a thread of their own (runtime.rs).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Args = flags::parse(AdminDefaults {
        metrics: "0.0.0.0:9403",
        health: "0.0.0.0:9404",
    });
    let client = args.common.start().await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (ready_tx, ready_rx) = watch::channel(false);
    let admin = args.common.serve_admin(registry, ready_rx);
    let ms = Duration::from_millis;
    let settings = Settings {
        node: args.node_name.clone(),
        namespace: args.namespace.clone(),
        gossip_bind: args.gossip_bind_address,
        gossip: membership::Timings {
            probe_period: ms(args.probe_period_ms),
            probe_rtt: ms(args.probe_rtt_ms),
            suspect_to_down: ms(args.suspect_to_down_ms),
            ..membership::Timings::default()
        },
        gossip_key_dir: args.gossip_key_dir.clone(),
        responder: responder::Timings {
            burst: args.burst,
            burst_interval: ms(args.burst_interval_ms),
            refresh: Duration::from_secs(args.refresh_seconds),
            probe_wait: ms(args.probe_wait_ms),
        },
        heartbeat_interval: Duration::from_secs(args.heartbeat_interval_seconds),
        heartbeat_duration: Duration::from_secs(args.heartbeat_duration_seconds),
        conflict_retry: Duration::from_secs(60),
    };
    tokio::select! {
        result = runtime::run(client, settings, metrics, ready_tx, shutdown()) => result.context("herald-speaker"),
        result = admin => result.context("serving metrics and health"),
    }
}
