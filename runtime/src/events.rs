//! Publishing Events a few at a time.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};
use tracing::warn;

/// Publishes Events with a few in flight. Events repeat what conditions say, so when a burst
/// (a cold start with thousands of Services) outruns the API server the oldest queued ones
/// are dropped rather than held in memory. Poll [`Publisher::next`] to make progress.
pub struct Publisher {
    recorder: Recorder,
    limit: usize,
    capacity: usize,
    queued: VecDeque<(Event, ObjectReference)>,
    running: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Publisher {
    /// `controller` and `instance` name the reporter.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Publisher {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: controller.into(),
                    instance: Some(instance.into()),
                },
            ),
            limit: 4,
            capacity: 1000,
            queued: VecDeque::new(),
            running: FuturesUnordered::new(),
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
        let done = self.running.next().await;
        self.start();
        done
    }

    fn start(&mut self) {
        while self.running.len() < self.limit {
            let Some((event, regarding)) = self.queued.pop_front() else {
                break;
            };
            let recorder = self.recorder.clone();
            self.running.push(Box::pin(async move {
                if let Err(e) = recorder.publish(&event, &regarding).await {
                    warn!(error = %e, reason = %event.reason, "publishing an event failed");
                }
            }));
        }
    }
}
