//! The flags both binaries share, defined once and flattened into each binary's own, and
//! their start-up: logging, the API client, the admin server.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::{LogFormat, admin, client, init_logging};

#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Kubeconfig to use; else $KUBECONFIG, else the in-cluster config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Where /metrics is served.
    #[arg(long)]
    pub metrics_bind_address: SocketAddr,

    /// Where /healthz and /readyz are served.
    #[arg(long)]
    pub health_bind_address: SocketAddr,

    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Each binary's own defaults for the shared addresses (they differ, so that a speaker and a
/// controller on one host's network do not clash). `[::]` takes IPv4 and IPv6 alike
/// ([`dual_stack`](crate::dual_stack)).
pub struct AdminDefaults {
    pub metrics: &'static str,
    pub health: &'static str,
}

/// Parses the command line into `T` (which flattens [`CommonArgs`]) with `defaults`; exits
/// with clap's message on bad flags, as `T::parse()` would.
pub fn parse<T: Parser>(defaults: AdminDefaults) -> T {
    let command = T::command()
        .mut_arg("metrics_bind_address", |a| {
            a.required(false).default_value(defaults.metrics)
        })
        .mut_arg("health_bind_address", |a| {
            a.required(false).default_value(defaults.health)
        });
    let matches = command.get_matches();
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

impl CommonArgs {
    /// Starts logging, then makes the API client.
    pub async fn start(&self) -> anyhow::Result<Client> {
        init_logging(self.log_format);
        client(self.kubeconfig.as_deref()).await
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` (what `ready` says) on the flags' addresses.
    pub fn serve_admin(
        &self,
        registry: Registry,
        ready: watch::Receiver<bool>,
    ) -> impl Future<Output = std::io::Result<()>> + use<> {
        admin::serve(
            self.metrics_bind_address,
            self.health_bind_address,
            Arc::new(registry),
            ready,
        )
    }
}

/// A duration flag's value (`value_parser = flags::duration`): a number with its unit, such as
/// `500ms`, `15s` or `2m`. Zero is refused: every duration Herald takes is a period or a
/// timeout, and zero would spin or give up at once.
pub fn duration(value: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = value.trim().parse().map_err(|_| {
        format!(
            "{value:?} is not a duration: write a number with its unit, such as 500ms, 15s or 2m"
        )
    })?;
    let duration = Duration::try_from(parsed)
        .map_err(|_| format!("{value:?} is negative: give a positive duration"))?;
    if duration.is_zero() {
        return Err(format!("{value:?} is zero: give a positive duration"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_must_be_positive() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("15").unwrap_err().contains("such as 500ms"));
        assert!(duration("0s").unwrap_err().contains("is zero"));
        assert!(duration("-1s").unwrap_err().contains("negative"));
    }
}
