//! Prometheus metrics (`herald_*`), served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolFamily {
    pub pool: String,
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Pool {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Resource {
    pub resource: String,
}

pub struct Metrics {
    pub addresses: Family<PoolFamily, Gauge>,
    pub addresses_in_use: Family<PoolFamily, Gauge>,
    pub allocations: Family<Pool, Counter>,
    pub allocation_failures: Family<Reason, Counter>,
    pub decision_seconds: Histogram,
    pub status_writes: Family<Outcome, Counter>,
    pub status_write_seconds: Histogram,
    pub watch_errors: Family<Resource, Counter>,
    pub events_dropped: Counter,
    pub leader: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            addresses: Family::default(),
            addresses_in_use: Family::default(),
            allocations: Family::default(),
            allocation_failures: Family::default(),
            decision_seconds: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
            status_writes: Family::default(),
            // 1 ms to about 16 s.
            status_write_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            watch_errors: Family::default(),
            events_dropped: Counter::default(),
            leader: Gauge::default(),
        };
        // An empty family is not exported at all: zero from the start, so that the first
        // watch error shows as an increase.
        for resource in ["services", "ipaddresspools", "namespaces"] {
            drop(metrics.watch_errors.get_or_create(&Resource {
                resource: resource.into(),
            }));
        }
        let herald = registry.sub_registry_with_prefix("herald");
        herald.register(
            "pool_addresses",
            "Addresses a pool may hand out, per family (saturates at the largest int64)",
            metrics.addresses.clone(),
        );
        herald.register(
            "pool_addresses_in_use",
            "Addresses of a pool held by Services, per family",
            metrics.addresses_in_use.clone(),
        );
        herald.register(
            "allocations",
            "Services given addresses, by pool",
            metrics.allocations.clone(),
        );
        herald.register(
            "allocation_failures",
            "Services refused an address, by reason",
            metrics.allocation_failures.clone(),
        );
        herald.register(
            "allocation_decision_seconds",
            "Time to decide one Service's addresses (the reconcile, without the API write)",
            metrics.decision_seconds.clone(),
        );
        herald.register(
            "status_writes",
            "Status writes to Services and pools, by outcome",
            metrics.status_writes.clone(),
        );
        herald.register(
            "status_write_seconds",
            "Time one status write to the API server took, without the wait before a retry",
            metrics.status_write_seconds.clone(),
        );
        herald.register(
            "watch_errors",
            "Errors from the API watches, by resource",
            metrics.watch_errors.clone(),
        );
        herald.register(
            "events_dropped",
            "Events not published because a burst outran the API server (conditions still say it)",
            metrics.events_dropped.clone(),
        );
        herald.register(
            "controller_leader",
            "1 while this replica holds the leader lease and writes",
            metrics.leader.clone(),
        );
        metrics
    }
}
