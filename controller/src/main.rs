use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herald_controller::gossip_key::{self, Outcome};
use herald_controller::{leader, metrics::Metrics, runtime};
use herald_core::lease::Timings;
use herald_runtime::flags::{self, AdminDefaults, CommonArgs};
use herald_runtime::shutdown;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Hands out addresses from IPAddressPools to Services of type LoadBalancer.
#[derive(Parser, Debug)]
#[command(name = "herald-controller", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Serve only Services with this spec.loadBalancerClass (else only Services without one).
    #[arg(long)]
    load_balancer_class: Option<String>,

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

    /// How long other replicas wait after the leader's last renewal before taking over.
    #[arg(long, default_value = "15s", value_parser = flags::duration)]
    lease_duration: Duration,

    /// How long the leader keeps writing without a successful renewal; shorter than
    /// --lease-duration, so that it has stopped before another replica takes over.
    #[arg(long, default_value = "10s", value_parser = flags::duration)]
    lease_renew_deadline: Duration,

    /// How often the leader renews the Lease, and the others look at it.
    #[arg(long, default_value = "2s", value_parser = flags::duration)]
    lease_retry_period: Duration,

    /// The Secret (in --lease-namespace) that holds the speakers' gossip key: created with a
    /// random key if it is missing; an existing one is never read nor changed.
    #[arg(long, default_value = "herald-gossip-key")]
    gossip_key_secret: String,

    /// Status writes in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    write_concurrency: u16,

    /// How often pool statuses are brought up to date.
    #[arg(long, default_value = "1s", value_parser = flags::duration)]
    pool_status_interval: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = flags::parse(AdminDefaults {
        metrics: "[::]:9401",
        health: "[::]:9402",
    });
    let timings = Timings {
        lease_duration: args.lease_duration,
        renew_deadline: args.lease_renew_deadline,
        retry_period: args.lease_retry_period,
    }
    .validate()?;
    let client = args.common.start().await?;

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let (ready_tx, ready_rx) = watch::channel(false);
    let admin = args.common.serve_admin(registry, ready_rx);

    runtime::preflight(&client).await?;
    // Every replica tries: creating is idempotent, and the speakers wait for the Secret.
    match gossip_key::ensure(&client, &args.lease_namespace, &args.gossip_key_secret).await {
        Ok(Outcome::Created) => tracing::info!(
            namespace = args.lease_namespace,
            secret = args.gossip_key_secret,
            "created the speakers' gossip key Secret with a random key"
        ),
        Ok(Outcome::Existed) => {}
        // Allocation does not need it: go on, and say what the speakers miss.
        Err(error) => tracing::warn!(%error, "the speakers' gossip key"),
    }
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let settings = runtime::Settings {
        load_balancer_class: args.load_balancer_class.clone(),
        write_concurrency: usize::from(args.write_concurrency),
        pool_status_interval: args.pool_status_interval,
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
                timings,
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
