//! What the controller writes: the Service's addresses and `herald.dev/Allocated` condition,
//! the pools' usage and conditions, and Events. Writes are server-side applies that carry only
//! the fields the controller owns, so the speaker's `herald.dev/Announced` condition and
//! everything else stay untouched.

use std::net::IpAddr;

use herald_core::allocation::{Assignment, Lost, PoolUsage};
use herald_crds::IPAddressPool;
use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as KubeCondition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use herald_crds::allocated::FromPool;
use herald_crds::{
    EventReason, IPAddressPoolStatus, conditions, field_managers, reasons, service_status,
};

/// The controller's field manager for server-side apply.
pub const FIELD_MANAGER: &str = field_managers::CONTROLLER;

/// A condition as Herald reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
    pub last_transition: Option<Time>,
}

impl Condition {
    fn new(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.into(),
            last_transition: None,
        }
    }

    pub fn allocated(assignment: &Assignment) -> Self {
        Condition::new(
            conditions::ALLOCATED,
            true,
            reasons::ALLOCATED,
            FromPool {
                ips: assignment.ips.clone(),
                pool: assignment.pool.clone(),
            }
            .message(),
        )
    }

    pub fn failed(reason: &str, message: String) -> Self {
        Condition::new(conditions::ALLOCATED, false, reason, message)
    }

    /// Same status, reason and message: nothing a person would see as a change.
    pub fn same_as(&self, other: &Condition) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
    }

    /// Keeps the previous transition time while the status stays the same.
    pub fn since(mut self, previous: Option<&Condition>, now: &Time) -> Self {
        self.last_transition = match previous {
            Some(p) if p.status == self.status && p.last_transition.is_some() => {
                p.last_transition.clone()
            }
            _ => Some(now.clone()),
        };
        self
    }

    /// As the API holds it; the transition time is [`Condition::since`]'s, else now.
    fn to_kube(&self, generation: Option<i64>) -> KubeCondition {
        KubeCondition {
            type_: self.type_.clone(),
            status: if self.status { "True" } else { "False" }.into(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            last_transition_time: self
                .last_transition
                .clone()
                .unwrap_or_else(|| Time(Timestamp::now())),
            observed_generation: generation,
        }
    }

    fn from_kube(c: &KubeCondition) -> Self {
        Condition {
            type_: c.type_.clone(),
            status: c.status == "True",
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition: Some(c.last_transition_time.clone()),
        }
    }
}

/// The `herald.dev/Allocated` condition the Service shows.
pub fn allocated_condition(service: &KubeService) -> Option<Condition> {
    service_status::condition(service, conditions::ALLOCATED).map(Condition::from_kube)
}

/// The part of a Service's status the controller owns.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    /// The addresses `status.loadBalancer.ingress` shows; empty clears it.
    pub ips: Vec<IpAddr>,
    /// False gives the ingress list up without clearing it: the addresses in it are another
    /// implementation's.
    pub owns_ingress: bool,
    /// None takes the condition away (the Service is no longer Herald's).
    pub condition: Option<Condition>,
    pub generation: Option<i64>,
    /// The version of the Service this was decided on: a write over a newer version fails
    /// (409), so that a stale view never overwrites a newer one.
    pub resource_version: Option<String>,
}

impl ServiceStatus {
    /// The server-side apply body. Fields left out are given up: with no condition ours goes.
    /// Addresses are cleared by an empty list, not by leaving the list out: another field
    /// manager (MetalLB's, on a Service that moved over) may own the same list, and leaving it
    /// out would only drop Herald's share and leave the addresses in place.
    pub fn apply_body(&self, namespace: &str, name: &str) -> Value {
        let mut status = json!({});
        if self.owns_ingress {
            let ingress: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
                .collect();
            status["loadBalancer"] = json!({ "ingress": ingress });
        }
        if let Some(condition) = &self.condition {
            status["conditions"] = json!([condition.to_kube(self.generation)]);
        }
        let mut metadata = json!({ "name": name, "namespace": namespace });
        if let Some(version) = &self.resource_version {
            metadata["resourceVersion"] = json!(version);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "status": status,
        })
    }
}

/// An Event about a Service, published on transitions only.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub warning: bool,
    pub reason: EventReason,
    pub note: String,
    /// For [`EventReason::AllocationFailed`]: the Allocated condition's reason.
    pub failure: Option<String>,
}

impl Event {
    pub fn allocated(assignment: &Assignment) -> Self {
        Event {
            warning: false,
            reason: EventReason::IpAllocated,
            note: format!(
                "Assigned {} from pool {:?}",
                join(&assignment.ips),
                assignment.pool
            ),
            failure: None,
        }
    }

    pub fn failed(condition: &Condition) -> Self {
        Event {
            warning: true,
            reason: EventReason::AllocationFailed,
            note: format!("{}: {}", condition.reason, condition.message),
            failure: Some(condition.reason.clone()),
        }
    }

    pub fn lost(lost: &Lost) -> Self {
        Event {
            warning: true,
            reason: EventReason::IpWithdrawn,
            note: format!("Took back {}: {}", join(&lost.ips), lost.reason),
            failure: None,
        }
    }

    pub fn released(ips: &[IpAddr]) -> Self {
        Event {
            warning: false,
            reason: EventReason::IpReleased,
            note: format!(
                "Released {}: the Service is no longer a LoadBalancer that Herald serves",
                join(ips)
            ),
            failure: None,
        }
    }

    /// About a pool whose spec turned invalid.
    pub fn pool_invalid(condition: &Condition) -> Self {
        Event {
            warning: true,
            reason: EventReason::InvalidSpec,
            note: condition.message.clone(),
            failure: None,
        }
    }

    pub fn to_kube(&self) -> kube::runtime::events::Event {
        kube::runtime::events::Event {
            type_: if self.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: self.reason.as_str().into(),
            note: Some(self.note.clone()),
            action: "Allocate".into(),
            secondary: None,
        }
    }
}

/// A pool's status: usage per family and its Ready, Conflicting and Invalid conditions. The
/// conditions get their transition times from [`PoolStatus::since`] before they are written.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStatus {
    pub usage: Option<PoolUsage>,
    pub conditions: Vec<Condition>,
}

use conditions::{POOL_CONFLICTING as CONFLICTING, POOL_INVALID as INVALID, POOL_READY as READY};

impl PoolStatus {
    pub fn valid(usage: PoolUsage, overlaps: &[(String, String)]) -> Self {
        let conflicting = if overlaps.is_empty() {
            Condition::new(
                CONFLICTING,
                false,
                reasons::NO_OVERLAP,
                "no other pool holds these addresses",
            )
        } else {
            let with: Vec<String> = overlaps
                .iter()
                .map(|(pool, range)| format!("{range} with pool {pool:?}"))
                .collect();
            Condition::new(
                CONFLICTING,
                true,
                reasons::OVERLAP,
                format!(
                    "shares {}; each address is still handed out once",
                    with.join(", ")
                ),
            )
        };
        let ready = Condition::new(
            READY,
            true,
            reasons::POOL_READY,
            format!(
                "{} of {} IPv4 and {} of {} IPv6 addresses in use",
                usage.assigned_v4,
                usage.assigned_v4 + usage.available_v4,
                usage.assigned_v6,
                usage.assigned_v6.saturating_add(usage.available_v6)
            ),
        );
        PoolStatus {
            usage: Some(usage),
            conditions: vec![
                ready,
                conflicting,
                Condition::new(INVALID, false, reasons::VALID_SPEC, "the spec is valid"),
            ],
        }
    }

    /// `keeps`: whether the pool keeps what it has handed out (its addresses are known).
    pub fn invalid(problems: &[String], keeps: bool) -> Self {
        let effect = if keeps {
            "it keeps the addresses it has handed out and hands out no new ones until fixed"
        } else {
            "it hands out nothing until fixed"
        };
        let message = format!("{}; {effect}", problems.join("; "));
        PoolStatus {
            usage: None,
            conditions: vec![
                Condition::new(READY, false, reasons::POOL_NOT_READY, message.clone()),
                Condition::new(INVALID, true, reasons::INVALID_SPEC, message),
            ],
        }
    }

    /// The Invalid condition, when it is True.
    pub fn invalid_condition(&self) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.type_ == INVALID && c.status)
    }

    /// The status a pool shows (its conditions, for their transition times).
    pub fn observed(pool: &IPAddressPool) -> Option<PoolStatus> {
        let status = pool.status.as_ref()?;
        Some(PoolStatus {
            usage: None,
            conditions: status.conditions.iter().map(Condition::from_kube).collect(),
        })
    }

    /// Same counts and conditions, whatever the times.
    pub fn same_as(&self, other: &PoolStatus) -> bool {
        self.usage == other.usage
            && self.conditions.len() == other.conditions.len()
            && self
                .conditions
                .iter()
                .zip(&other.conditions)
                .all(|(a, b)| a.same_as(b))
    }

    /// Keeps each condition's transition time from `previous` while its status holds.
    pub fn since(mut self, previous: Option<&PoolStatus>, now: &Time) -> Self {
        self.conditions = self
            .conditions
            .into_iter()
            .map(|c| {
                let before =
                    previous.and_then(|p| p.conditions.iter().find(|b| b.type_ == c.type_));
                c.since(before, now)
            })
            .collect();
        self
    }

    pub fn apply_body(&self, name: &str) -> Value {
        let saturate = |n: u128| Some(i64::try_from(n).unwrap_or(i64::MAX));
        let usage = self.usage.unwrap_or_default();
        let counted = self.usage.is_some();
        let status = IPAddressPoolStatus {
            assigned_ipv4: saturate(usage.assigned_v4).filter(|_| counted),
            available_ipv4: saturate(usage.available_v4).filter(|_| counted),
            assigned_ipv6: saturate(usage.assigned_v6).filter(|_| counted),
            available_ipv6: saturate(usage.available_v6).filter(|_| counted),
            conditions: self.conditions.iter().map(|c| c.to_kube(None)).collect(),
        };
        json!({
            "apiVersion": "herald.dev/v1alpha1",
            "kind": "IPAddressPool",
            "metadata": { "name": name },
            "status": status,
        })
    }
}

pub fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
