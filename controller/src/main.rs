use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herald_controller::{leader, metrics::Metrics, runtime};
use herald_runtime::{LogFormat, admin, client, init_logging, shutdown};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Hands out addresses from IPAddressPools to Services of type LoadBalancer.
#[derive(Parser, Debug)]
#[command(name = "herald-controller", version)]
struct Args {
    /// Kubeconfig to use; else $KUBECONFIG, else the in-cluster config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,

    /// Serve only Services with this spec.loadBalancerClass (else only Services without one).
    #[arg(long)]
    load_balancer_class: Option<String>,

    /// Where /metrics is served.
    #[arg(long, default_value = "0.0.0.0:9401")]
    metrics_bind_address: SocketAddr,

    /// Where /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:9402")]
    health_bind_address: SocketAddr,

    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Elect a leader among replicas on a Lease; only the leader writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,

    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald-system")]
    lease_namespace: String,

    #[arg(long, default_value = "herald-controller")]
    lease_name: String,

    /// This replica's name in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// How long the Lease is valid after its last renewal, in seconds.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,

    /// How long before the Lease expires the leader renews it, in seconds.
    #[arg(long, default_value_t = 5)]
    lease_renew_before: u64,

    /// Status writes in flight at once.
    #[arg(long, default_value_t = 16)]
    write_concurrency: usize,

    /// How often pool statuses are updated, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pool_status_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    if args.lease_renew_before >= args.lease_duration {
        anyhow::bail!(
            "--lease-renew-before ({}) must be less than --lease-duration ({})",
            args.lease_renew_before,
            args.lease_duration
        );
    }
    let client = client(args.kubeconfig.as_deref()).await?;

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let (ready_tx, ready_rx) = watch::channel(false);
    let admin = admin::serve(
        args.metrics_bind_address,
        args.health_bind_address,
        Arc::new(registry),
        ready_rx,
    );

    runtime::preflight(&client).await?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let settings = runtime::Settings {
        load_balancer_class: args.load_balancer_class.clone(),
        write_concurrency: args.write_concurrency,
        pool_status_interval: Duration::from_millis(args.pool_status_interval_ms),
        instance: identity.clone(),
    };
    let work = {
        let metrics = metrics.clone();
        let client = client.clone();
        async move {
            metrics.leader.set(1);
            runtime::run(client, settings, metrics, ready_tx).await
        }
    };
    let controller = async {
        if args.leader_elect {
            let election = leader::Election {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity,
                duration_seconds: args.lease_duration,
                renew_before_seconds: args.lease_renew_before,
            };
            match leader::while_leading(client.clone(), election, work, shutdown()).await? {
                Some(result) => result.map_err(anyhow::Error::from),
                None => Ok(()),
            }
        } else {
            tokio::select! {
                result = work => result.map_err(anyhow::Error::from),
                () = shutdown() => Ok(()),
            }
        }
    };
    tokio::select! {
        result = controller => result,
        result = admin => result.context("serving metrics and health"),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "herald-controller".into())
}
