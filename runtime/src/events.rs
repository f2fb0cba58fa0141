//! Publishing Events a few at a time.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use tracing::warn;

/// How long a published Event takes repeats into its series, as `kube`'s `Recorder` does.
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// What is kept of a published Event to count its repeats: its name, not the whole Event
/// (`kube`'s `Recorder` keeps whole Events, about 2 KiB each, and a cold start publishes one
/// per Service).
struct Published {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

type Publish = Pin<Box<dyn Future<Output = Option<(String, Published)>> + Send>>;

/// Publishes Events with a few in flight. Events repeat what conditions say, so when a burst
/// (a cold start with thousands of Services) outruns the API server the oldest queued ones
/// are dropped rather than held in memory. An Event repeated within a few minutes (same type,
/// action, reason and object) counts into the first one's series instead of adding an Event.
/// Poll [`Publisher::next`] to make progress.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    limit: usize,
    capacity: usize,
    queued: VecDeque<(Event, ObjectReference)>,
    running: FuturesUnordered<Publish>,
    /// Recently published Events, by what makes a repeat.
    series: HashMap<String, Published>,
}

impl Publisher {
    /// `controller` and `instance` name the reporter.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Publisher {
            client,
            controller: controller.into(),
            instance: instance.into(),
            limit: 4,
            capacity: 1000,
            queued: VecDeque::new(),
            running: FuturesUnordered::new(),
            series: HashMap::new(),
        }
    }

    /// Queues an Event; returns whether an older one had to be dropped for it.
    pub fn submit(&mut self, event: Event, regarding: ObjectReference) -> bool {
        let dropped = self.queued.len() >= self.capacity;
        if dropped {
            self.queued.pop_front();
        }
        self.queued.push_back((event, regarding));
        self.start();
        dropped
    }

    /// Completes when a publish finishes (never while none runs), starting queued ones.
    pub async fn next(&mut self) -> Option<()> {
        let done = self.running.next().await?;
        if let Some((key, published)) = done {
            self.series.insert(key, published);
        }
        self.start();
        Some(())
    }

    fn start(&mut self) {
        while self.running.len() < self.limit {
            let Some((event, regarding)) = self.queued.pop_front() else {
                break;
            };
            let now = Timestamp::now();
            self.series
                .retain(|_, published| published.last + SERIES_WINDOW > now);
            let key = series_key(&event, &regarding);
            let publish = match self.series.get(&key) {
                Some(first) => self.repeat(key, first, now, event.reason),
                None => self.create(key, &event, regarding, now),
            };
            self.running.push(publish);
        }
    }

    fn create(
        &self,
        key: String,
        event: &Event,
        regarding: ObjectReference,
        now: Timestamp,
    ) -> Publish {
        // Cluster-scoped objects' Events go to "default", as with `kube`'s `Recorder`.
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let body = K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_name(event.type_).into()),
            metadata: ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        Box::pin(async move {
            match api.create(&PostParams::default(), &body).await {
                Ok(_) => Some((
                    key,
                    Published {
                        namespace,
                        name,
                        count: 1,
                        last: now,
                    },
                )),
                Err(e) => {
                    let reason = body.reason.unwrap_or_default();
                    warn!(error = %e, %reason, "publishing an event failed");
                    None
                }
            }
        })
    }

    fn repeat(&self, key: String, first: &Published, now: Timestamp, reason: String) -> Publish {
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &first.namespace);
        let (namespace, name, count) = (first.namespace.clone(), first.name.clone(), first.count);
        Box::pin(async move {
            // A merge patch: what it leaves out stays as created.
            let series = K8sEvent {
                series: Some(EventSeries {
                    count: count + 1,
                    last_observed_time: MicroTime(now),
                }),
                ..K8sEvent::default()
            };
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => Some((
                    key,
                    Published {
                        namespace,
                        name,
                        count: count + 1,
                        last: now,
                    },
                )),
                Err(e) => {
                    warn!(error = %e, %reason, "publishing an event failed");
                    None
                }
            }
        })
    }
}

/// What makes Events repeats of each other: type, action, reason, and the objects they are
/// about.
fn series_key(event: &Event, regarding: &ObjectReference) -> String {
    let reference = |r: &ObjectReference| {
        format!(
            "{}/{}/{}/{}/{}",
            r.api_version.as_deref().unwrap_or_default(),
            r.kind.as_deref().unwrap_or_default(),
            r.namespace.as_deref().unwrap_or_default(),
            r.name.as_deref().unwrap_or_default(),
            r.uid.as_deref().unwrap_or_default()
        )
    };
    format!(
        "{} {} {} {} {}",
        type_name(event.type_),
        event.action,
        event.reason,
        reference(regarding),
        event.secondary.as_ref().map(reference).unwrap_or_default()
    )
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}
