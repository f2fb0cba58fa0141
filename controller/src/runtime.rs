//! The controller's runtime: watches Services, pools and namespaces into the [`Index`],
//! decides every Service that a change touches, and writes the results with bounded
//! concurrency. Everything runs inside one future, so that dropping it (the lease was lost)
//! stops every write at once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use herald_core::addresses::IpFamily;
use herald_core::allocation::ServiceKey;
use herald_crds::{EventReason, IPAddressPool};
use herald_runtime::events::Publisher;
use herald_runtime::forbidden;
use herald_runtime::watches::Watch;
use herald_runtime::writer::{StatusWrite, Writer};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher::watcher as watch_all};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::index::{Decision, Index, PoolReport};
use crate::metrics::{self, Metrics};
use crate::status::{self, FIELD_MANAGER, PoolStatus, ServiceStatus};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Serve only Services with this `spec.loadBalancerClass` (else only those without).
    pub load_balancer_class: Option<String>,
    /// Status writes in flight at once.
    pub write_concurrency: usize,
    /// How often pool statuses are brought up to date (they change with every allocation).
    pub pool_status_interval: Duration,
    /// Reported as the Events' reporting instance.
    pub instance: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the IPAddressPool CRD is not installed (listing ipaddresspools.herald.dev gave 404): apply deploy/crds/ first"
    )]
    MissingCrds,
    #[error(
        "not allowed to {verb} {resource}: {message}. Grant it to the controller's ServiceAccount (deploy/ holds the RBAC)"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        message: String,
    },
    #[error("checking {resource}: {source}")]
    Api {
        resource: &'static str,
        source: kube::Error,
    },
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// Fails early, with what to do, when the CRDs or permissions are missing.
pub async fn preflight(client: &Client) -> Result<(), Error> {
    let lp = ListParams::default().limit(1);
    let check = |resource: &'static str, result: Result<(), kube::Error>| match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 && resource == "ipaddresspools" => {
            Err(Error::MissingCrds)
        }
        Err(source) => match forbidden(&source) {
            Some(message) => Err(Error::Forbidden {
                verb: "list",
                resource,
                message: message.to_owned(),
            }),
            None => Err(Error::Api { resource, source }),
        },
    };
    check(
        "ipaddresspools",
        Api::<IPAddressPool>::all(client.clone())
            .list(&lp)
            .await
            .map(drop),
    )?;
    check(
        "services",
        Api::<Service>::all(client.clone())
            .list(&lp)
            .await
            .map(drop),
    )?;
    check(
        "namespaces",
        Api::<PartialObjectMeta<Namespace>>::all(client.clone())
            .list(&lp)
            .await
            .map(drop),
    )?;
    Ok(())
}

enum Change {
    Service(Box<Result<Event<Service>, watcher::Error>>),
    Pool(Result<Event<IPAddressPool>, watcher::Error>),
    Namespace(Result<Event<PartialObjectMeta<Namespace>>, watcher::Error>),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Target {
    Service(ServiceKey),
    Pool(String),
}

/// A status write: a Service's or a pool's.
#[derive(Clone, Debug)]
enum Write {
    Service(ServiceKey, ServiceStatus),
    Pool(String, PoolStatus),
}

impl StatusWrite for Write {
    type Target = Target;

    fn apply(
        &self,
        client: Client,
    ) -> Pin<Box<dyn Future<Output = Result<(), kube::Error>> + Send>> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match self.clone() {
            Write::Service(key, status) => Box::pin(async move {
                let body = status.apply_body(&key.namespace, &key.name);
                Api::<Service>::namespaced(client, &key.namespace)
                    .patch_status(&key.name, &params, &Patch::Apply(&body))
                    .await
                    .map(drop)
            }),
            Write::Pool(name, status) => Box::pin(async move {
                Api::<IPAddressPool>::all(client)
                    .patch_status(&name, &params, &Patch::Apply(&status.apply_body(&name)))
                    .await
                    .map(drop)
            }),
        }
    }
}

/// Runs until the watches end (they do not, short of an error) or the future is dropped.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: watch::Sender<bool>,
) -> Result<(), Error> {
    let config = watcher::Config::default();
    let services = watch_all(Api::<Service>::all(client.clone()), config.clone())
        .default_backoff()
        .map(|change| Change::Service(Box::new(change)));
    let pools = watch_all(Api::<IPAddressPool>::all(client.clone()), config.clone())
        .default_backoff()
        .map(Change::Pool);
    let namespaces = watch_all(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        config,
    )
    .default_backoff()
    .map(Change::Namespace);
    let streams: Vec<BoxStream<'static, Change>> =
        vec![services.boxed(), pools.boxed(), namespaces.boxed()];
    let mut changes = futures::stream::select_all(streams);

    let mut publisher = Publisher::new(client.clone(), FIELD_MANAGER, &settings.instance);
    let mut writer = Writer::new(client.clone(), "controller", settings.write_concurrency);
    let mut index = Index::new(settings.load_balancer_class.clone());
    let mut watches = Watches::default();
    let mut queue: BTreeSet<ServiceKey> = BTreeSet::new();
    let mut pool_status_written: BTreeMap<String, PoolStatus> = BTreeMap::new();
    let mut pool_tick = tokio::time::interval(settings.pool_status_interval);
    pool_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut started = false;

    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return Err(Error::WatchEnded("API")) };
                queue.extend(watches.apply(&mut index, change, &metrics));
                if !started && watches.synced() {
                    // Read back every existing assignment before allocating anything new.
                    index.claim_statuses();
                    queue.extend(index.ours());
                    started = true;
                    info!(services = queue.len(), "watches synced; existing addresses claimed");
                }
                if started {
                    decide_all(&mut index, &mut queue, &mut writer, &mut publisher, &metrics);
                    if !*ready.borrow() {
                        ready.send_replace(true);
                    }
                }
            }
            (_, outcome, took) = writer.next() => {
                metrics.status_write_seconds.observe(took.as_secs_f64());
                metrics
                    .status_writes
                    .get_or_create(&metrics::Outcome {
                        outcome: outcome.as_str().into(),
                    })
                    .inc();
            }
            Some(()) = publisher.next() => {}
            _ = pool_tick.tick(), if started => {
                write_pool_statuses(
                    &index,
                    &mut pool_status_written,
                    &mut writer,
                    &mut publisher,
                    &metrics,
                );
            }
        }
    }
}

/// The controller's three watches, so that nothing is decided before all three have listed.
#[derive(Default)]
struct Watches {
    services: Watch,
    pools: Watch,
    namespaces: Watch,
}

impl Watches {
    fn synced(&self) -> bool {
        self.services.synced() && self.pools.synced() && self.namespaces.synced()
    }

    /// Applies a change; returns the Services to decide again.
    fn apply(&mut self, index: &mut Index, change: Change, metrics: &Metrics) -> Vec<ServiceKey> {
        let error = |resource: &str, e: &watcher::Error| {
            warn!(resource, error = %e, "watch error; retrying with backoff");
            metrics
                .watch_errors
                .get_or_create(&metrics::Resource {
                    resource: resource.into(),
                })
                .inc();
            Vec::new()
        };
        match change {
            Change::Service(change) => match *change {
                Ok(event) => self.services.handle(index, event),
                Err(e) => error("services", &e),
            },
            Change::Pool(Ok(event)) => self.pools.handle(index, event),
            Change::Pool(Err(e)) => error("ipaddresspools", &e),
            Change::Namespace(Ok(event)) => self.namespaces.handle(index, event),
            Change::Namespace(Err(e)) => error("namespaces", &e),
        }
    }
}

fn decide_all(
    index: &mut Index,
    queue: &mut BTreeSet<ServiceKey>,
    writer: &mut Writer<Write>,
    publisher: &mut Publisher,
    metrics: &Metrics,
) {
    let now = Time(Timestamp::now());
    while let Some(key) = queue.pop_first() {
        let started = Instant::now();
        let (decision, again) = index.decide(&key, &now);
        metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        queue.extend(again);
        let Some(Decision {
            key,
            uid,
            write,
            events: to_publish,
        }) = decision
        else {
            continue;
        };
        if let Some(status) = write {
            debug!(service = %key, ?status, "writing status");
            writer.submit(
                Target::Service(key.clone()),
                Write::Service(key.clone(), status),
            );
        }
        for event in to_publish {
            count(&event, index, &key, metrics);
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Service".into()),
                namespace: Some(key.namespace.clone()),
                name: Some(key.name.clone()),
                uid: Some(uid.clone()),
                ..ObjectReference::default()
            };
            if publisher.submit(event.to_kube(), reference) {
                metrics.events_dropped.inc();
            }
        }
    }
}

fn count(event: &status::Event, index: &Index, key: &ServiceKey, metrics: &Metrics) {
    match event.reason {
        EventReason::IpAllocated => {
            let pool = index
                .assignment(key)
                .map(|a| a.pool.clone())
                .unwrap_or_default();
            metrics
                .allocations
                .get_or_create(&metrics::Pool { pool })
                .inc();
        }
        EventReason::AllocationFailed => {
            let reason = event.failure.clone().unwrap_or_default();
            metrics
                .allocation_failures
                .get_or_create(&metrics::Reason { reason })
                .inc();
        }
        _ => {}
    }
}

fn write_pool_statuses(
    index: &Index,
    written: &mut BTreeMap<String, PoolStatus>,
    writer: &mut Writer<Write>,
    publisher: &mut Publisher,
    metrics: &Metrics,
) {
    let now = Time(Timestamp::now());
    let statuses = index.pool_statuses();
    written.retain(|name, _| statuses.iter().any(|report| &report.name == name));
    for PoolReport {
        name,
        uid,
        status,
        observed,
    } in statuses
    {
        if let Some(usage) = status.usage {
            for (family, total, used) in [
                (
                    IpFamily::V4,
                    usage.assigned_v4 + usage.available_v4,
                    usage.assigned_v4,
                ),
                (
                    IpFamily::V6,
                    usage.assigned_v6.saturating_add(usage.available_v6),
                    usage.assigned_v6,
                ),
            ] {
                let labels = metrics::PoolFamily {
                    pool: name.clone(),
                    family: family.to_string(),
                };
                let gauge = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
                metrics.addresses.get_or_create(&labels).set(gauge(total));
                metrics
                    .addresses_in_use
                    .get_or_create(&labels)
                    .set(gauge(used));
            }
        }
        let previous = written.get(&name).or(observed.as_ref());
        if previous.is_some_and(|p| p.same_as(&status)) {
            continue;
        }
        if let Some(invalid) = status.invalid_condition()
            && previous
                .and_then(PoolStatus::invalid_condition)
                .is_none_or(|before| !before.same_as(invalid))
        {
            let reference = ObjectReference {
                api_version: Some("herald.dev/v1alpha1".into()),
                kind: Some("IPAddressPool".into()),
                name: Some(name.clone()),
                uid: Some(uid),
                ..ObjectReference::default()
            };
            if publisher.submit(status::Event::pool_invalid(invalid).to_kube(), reference) {
                metrics.events_dropped.inc();
            }
        }
        let status = status.since(previous, &now);
        written.insert(name.clone(), status.clone());
        writer.submit(Target::Pool(name.clone()), Write::Pool(name, status));
    }
}
