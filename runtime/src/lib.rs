//! What both Herald binaries run on: their shared flags and start-up (`flags`: the API client
//! from `--kubeconfig`, logging, the admin server with `/healthz`, `/readyz`, `/metrics`),
//! dual-stack sockets, Events, and shutdown signals. `anyhow` is fine here: these run only in the binaries' `main`.

pub mod admin;
pub mod dual_stack;
pub mod events;
pub mod flags;
pub mod watches;
pub mod writer;

use std::path::Path;

use anyhow::Context;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// `--log-format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, at the level `RUST_LOG` sets (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A client from `--kubeconfig`, else `$KUBECONFIG`, else the in-cluster config.
async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no --kubeconfig, no $KUBECONFIG and not in a cluster")?,
    };
    Client::try_from(config).context("building the API client")
}

/// The API server's message when it refused a request for lack of permission (HTTP 403), so
/// that a binary can say which permission to grant.
pub fn forbidden(error: &kube::Error) -> Option<&str> {
    match error {
        kube::Error::Api(status) if status.code == 403 => Some(&status.message),
        _ => None,
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
