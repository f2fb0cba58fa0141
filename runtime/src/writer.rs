//! Status writes for both binaries: the latest desired state per target only, a few in flight
//! at once, failed writes retried with backoff unless a newer state replaced them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kube::Client;
use tracing::{debug, error, warn};

use crate::forbidden;

/// One status write.
pub trait StatusWrite: Clone + Send + 'static {
    /// What is written: a newer write for the same target replaces an older one.
    type Target: Ord + Clone + Debug + Send + 'static;

    fn apply(
        &self,
        client: Client,
    ) -> Pin<Box<dyn Future<Output = Result<(), kube::Error>> + Send>>;
}

/// How a write went, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The object is gone (404): nothing to write any more.
    Gone,
    /// The object changed after the version the write was decided on (409): the watch brings
    /// the new version, which is decided again, so the write is dropped.
    Conflict,
    /// Any other failure: retried.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Gone => "gone",
            Outcome::Conflict => "conflict",
            Outcome::Error => "error",
        }
    }
}

const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A finished write: its target, what it wrote, how long it waited first, how long the API
/// call took, how it went.
type Finished<W> = (
    <W as StatusWrite>::Target,
    W,
    Duration,
    Duration,
    Result<(), kube::Error>,
);

pub struct Writer<W: StatusWrite> {
    client: Client,
    /// Whose ServiceAccount a refused write names ("controller", "speaker").
    component: &'static str,
    limit: usize,
    latest: BTreeMap<W::Target, (W, Duration)>,
    in_flight: BTreeSet<W::Target>,
    running: FuturesUnordered<Pin<Box<dyn Future<Output = Finished<W>> + Send>>>,
}

impl<W: StatusWrite> Writer<W> {
    pub fn new(client: Client, component: &'static str, limit: usize) -> Self {
        Writer {
            client,
            component,
            limit: limit.max(1),
            latest: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            running: FuturesUnordered::new(),
        }
    }

    pub fn submit(&mut self, target: W::Target, write: W) {
        self.latest.insert(target, (write, Duration::ZERO));
        self.start();
    }

    /// The next write to finish, how it went and how long its API call took; pending while
    /// none is in flight (so it can sit in a `select!` loop).
    pub async fn next(&mut self) -> (W::Target, Outcome, Duration) {
        let Some(finished) = self.running.next().await else {
            return std::future::pending().await;
        };
        self.finished(finished)
    }

    fn start(&mut self) {
        let ready: Vec<W::Target> = self
            .latest
            .keys()
            .filter(|t| !self.in_flight.contains(*t))
            .take(self.limit.saturating_sub(self.in_flight.len()))
            .cloned()
            .collect();
        for target in ready {
            let (write, delay) = self.latest.remove(&target).expect("listed above");
            self.in_flight.insert(target.clone());
            let client = self.client.clone();
            self.running.push(Box::pin(async move {
                tokio::time::sleep(delay).await;
                let started = tokio::time::Instant::now();
                let result = write.apply(client).await;
                (target, write, delay, started.elapsed(), result)
            }));
        }
    }

    /// Records a finished write; a failed one is retried with backoff (doubling from 500 ms up
    /// to 30 s) unless a newer state replaced it meanwhile.
    fn finished(
        &mut self,
        (target, write, delay, took, result): Finished<W>,
    ) -> (W::Target, Outcome, Duration) {
        self.in_flight.remove(&target);
        let outcome = match &result {
            Ok(()) => Outcome::Ok,
            Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Gone,
            Err(kube::Error::Api(s)) if s.code == 409 => Outcome::Conflict,
            Err(_) => Outcome::Error,
        };
        if outcome == Outcome::Conflict {
            debug!(
                ?target,
                "the object changed since this write was decided (409); dropped"
            );
        }
        if let Err(e) = result
            && outcome == Outcome::Error
        {
            let retry = (delay * 2).clamp(RETRY_MIN, RETRY_MAX);
            match forbidden(&e) {
                Some(message) => error!(
                    ?target,
                    "not allowed to write the status: {message}. Grant it to the {}'s \
                     ServiceAccount (deploy/ holds the RBAC); retrying in {retry:?}",
                    self.component
                ),
                None => warn!(?target, error = %e, "status write failed; retrying in {retry:?}"),
            }
            self.latest.entry(target.clone()).or_insert((write, retry));
        }
        self.start();
        (target, outcome, took)
    }
}
