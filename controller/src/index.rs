//! The controller's index: what the watches have shown of Services, pools and namespaces, and
//! the allocator fed from it. It is synchronous and makes no API calls: each change says which
//! Services to look at again, and [`Index::decide`] says what to write on a Service. The
//! runtime carries that out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_core::allocation::{Allocator, Assignment, Considered, Pool, ServiceKey};
use herald_core::selector::Labels;
use herald_crds::{IPAddressPool, reasons, service_status};
use herald_runtime::watches::{Index as WatchIndex, ObjectKey};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::Service as KubeService;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use crate::service::{self, RequestError};
use crate::{pool, status};

/// What the index keeps of a Service (not the whole object: 10,000 of them must fit in a few
/// MiB).
#[derive(Debug)]
struct ServiceEntry {
    uid: String,
    generation: Option<i64>,
    resource_version: Option<String>,
    created: Option<Time>,
    /// None when the Service is not Herald's (type, class, being deleted); else its request,
    /// with what was malformed left out, and the error if anything was.
    request: Option<(herald_core::allocation::Service, Option<RequestError>)>,
    /// The addresses and our condition as last seen in its status.
    observed_ips: Vec<IpAddr>,
    observed_condition: Option<status::Condition>,
    /// What we last reported, so that events follow transitions only.
    reported: Option<status::Condition>,
}

/// One pool as read from the API.
#[derive(Debug)]
struct PoolEntry {
    uid: String,
    read: Result<Pool, pool::Invalid>,
    /// The status the pool shows, so a new leader keeps its conditions' transition times.
    observed: Option<status::PoolStatus>,
}

/// A pool's status as it should be, and as it shows now.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolReport {
    pub name: String,
    pub uid: String,
    pub status: status::PoolStatus,
    pub observed: Option<status::PoolStatus>,
}

/// What to do for one Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub key: ServiceKey,
    pub uid: String,
    /// The status to apply, when it differs from what the Service shows.
    pub write: Option<status::ServiceStatus>,
    pub events: Vec<status::Event>,
}

/// How allocation sees one Service now (see [`Index::explain`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// What it asks, with what was malformed left out, and the error if anything was.
    pub request: herald_core::allocation::Service,
    pub error: Option<RequestError>,
    pub held: Option<Assignment>,
    /// Every pool as automatic allocation sees it, in the order it tries them.
    pub pools: Vec<Considered>,
    /// The other Services holding one of its addresses.
    pub sharers: Vec<ServiceKey>,
}

#[derive(Default)]
pub struct Index {
    class: Option<String>,
    allocator: Allocator,
    services: BTreeMap<ServiceKey, ServiceEntry>,
    pools: BTreeMap<String, PoolEntry>,
    namespaces: BTreeMap<String, Labels>,
}

impl Index {
    pub fn new(class: Option<String>) -> Self {
        Index {
            class,
            ..Index::default()
        }
    }

    /// Records a Service as the watch shows it; returns the Services to decide again.
    pub fn apply_service(&mut self, object: &KubeService) -> Vec<ServiceKey> {
        let key = service::key(object);
        let ours = service::is_ours(object, self.class.as_deref());
        let namespace_labels = self
            .namespaces
            .get(&key.namespace)
            .cloned()
            .unwrap_or_default();
        let observed_condition = status::allocated_condition(object);
        let previous = self.services.remove(&key);
        let entry = ServiceEntry {
            uid: object.metadata.uid.clone().unwrap_or_default(),
            generation: object.metadata.generation,
            resource_version: object.metadata.resource_version.clone(),
            created: object.metadata.creation_timestamp.clone(),
            request: ours.then(|| service::request(object, &namespace_labels)),
            observed_ips: service_status::addresses(object),
            reported: previous
                .and_then(|p| p.reported)
                .or_else(|| observed_condition.clone()),
            observed_condition,
        };
        self.services.insert(key.clone(), entry);
        vec![key]
    }

    /// Forgets a deleted Service and frees what it held; Services waiting for an address
    /// are decided again.
    pub fn delete_service(&mut self, key: &ServiceKey) -> Vec<ServiceKey> {
        self.services.remove(key);
        match self.allocator.release(key) {
            Some(_) => self.waiting(),
            None => Vec::new(),
        }
    }

    /// After a relist: Services the list no longer holds were deleted while the watch was
    /// away.
    pub fn retain_services(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<ServiceKey> {
        let gone: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| !present.contains(&object_key(k)))
            .cloned()
            .collect();
        gone.iter().flat_map(|k| self.delete_service(k)).collect()
    }

    pub fn apply_pool(&mut self, object: &IPAddressPool) -> Vec<ServiceKey> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let read = pool::read(object);
        match &read {
            Ok(p) => self.allocator.set_pool(p.clone()),
            // Bad input loses nothing: the pool keeps what it handed out (by its last valid
            // spec, else by its addresses) and hands out nothing new until it is fixed.
            Err(invalid) => {
                let kept = self.allocator.pool(&name).cloned().or_else(|| {
                    Some(Pool {
                        name: name.clone(),
                        addresses: invalid.addresses.clone()?,
                        auto_assign: object.spec.auto_assign,
                        allocation: None,
                        hands_out: false,
                    })
                });
                match kept {
                    Some(pool) => self.allocator.set_pool(Pool {
                        hands_out: false,
                        ..pool
                    }),
                    None => self.allocator.remove_pool(&name),
                }
            }
        }
        let entry = PoolEntry {
            uid: object.metadata.uid.clone().unwrap_or_default(),
            read,
            observed: status::PoolStatus::observed(object),
        };
        self.pools.insert(name, entry);
        self.ours()
    }

    /// After a relist: pools the list no longer holds were deleted while the watch was away.
    pub fn retain_pools(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<ServiceKey> {
        let gone: Vec<String> = self
            .pools
            .keys()
            .filter(|name| {
                !present.contains(&ObjectKey {
                    namespace: String::new(),
                    name: (*name).clone(),
                })
            })
            .cloned()
            .collect();
        gone.iter()
            .flat_map(|name| self.delete_pool(name))
            .collect()
    }

    pub fn delete_pool(&mut self, name: &str) -> Vec<ServiceKey> {
        self.pools.remove(name);
        self.allocator.remove_pool(name);
        self.ours()
    }

    /// Records a namespace's labels; its Services are decided again if they changed.
    pub fn apply_namespace(&mut self, name: &str, labels: Labels) -> Vec<ServiceKey> {
        if self.namespaces.get(name) == Some(&labels) {
            return Vec::new();
        }
        self.namespaces.insert(name.to_owned(), labels.clone());
        let mut keys = Vec::new();
        for (key, entry) in self.services.range_mut(namespace_range(name)) {
            if let Some((request, _)) = &mut entry.request {
                request.namespace_labels = labels.clone();
            }
            keys.push(key.clone());
        }
        keys
    }

    /// Claims the addresses every Service shows in its status, oldest Service first, before
    /// anything new is allocated, so that a restart or a new leader moves nothing. Only claims:
    /// a Service whose address is no longer valid gets a new one later, after every other
    /// Service has claimed its own.
    pub fn claim_statuses(&mut self) {
        let mut order: Vec<(&Option<Time>, &ServiceKey)> = self
            .services
            .iter()
            .filter(|(_, e)| !e.observed_ips.is_empty())
            .map(|(k, e)| (&e.created, k))
            .collect();
        order.sort_by(|a, b| {
            (a.0.as_ref().map(|t| t.0), a.1).cmp(&(b.0.as_ref().map(|t| t.0), b.1))
        });
        let keys: Vec<ServiceKey> = order.into_iter().map(|(_, k)| k.clone()).collect();
        for key in keys {
            if let Some(Some((request, _))) = self.services.get(&key).map(|e| &e.request) {
                let request = request.clone();
                self.allocator.claim(&request);
            }
        }
    }

    /// Every Service of ours, for a full pass.
    pub fn ours(&self) -> Vec<ServiceKey> {
        self.services
            .iter()
            .filter(|(_, e)| e.request.is_some() || e.observed_condition.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Services of ours that hold no address.
    fn waiting(&self) -> Vec<ServiceKey> {
        self.services
            .iter()
            .filter(|(k, e)| e.request.is_some() && self.allocator.assignment(k).is_none())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Decides the Service's addresses and condition, and what to write and report. The
    /// second value lists other Services to decide again (an address was freed).
    pub fn decide(&mut self, key: &ServiceKey, now: &Time) -> (Option<Decision>, Vec<ServiceKey>) {
        let Some(entry) = self.services.get(key) else {
            return (None, Vec::new());
        };
        let held_before = self.allocator.assignment(key).cloned();
        // Herald sets the ingress list of its Services, also to empty; of a Service it no
        // longer serves it clears only addresses from its own pools.
        let mut owns_ingress = true;
        let (ips, condition, mut events) = match &entry.request {
            None => {
                let released = self.allocator.release(key);
                if entry.observed_condition.is_none() {
                    return (None, self.freed(released.is_some()));
                }
                owns_ingress = entry.observed_ips.iter().all(|ip| {
                    self.allocator
                        .pools()
                        .any(|pool| pool.addresses.contains(*ip))
                });
                let events = released
                    .map(|a| vec![status::Event::released(&a.ips)])
                    .unwrap_or_default();
                (Vec::new(), None, events)
            }
            Some((request, Some(e))) => {
                // Bad input loses nothing: keep (or claim back) what it holds until it is fixed.
                let request = request.clone();
                let kept = match &held_before {
                    Some(held) => Some(held.clone()),
                    None => self.allocator.claim(&request),
                };
                let ips = kept.map(|a| a.ips).unwrap_or_default();
                let mut message = e.to_string();
                if !ips.is_empty() {
                    message.push_str(&format!("; keeping {}", status::join(&ips)));
                }
                (
                    ips,
                    Some(status::Condition::failed(e.reason(), message)),
                    Vec::new(),
                )
            }
            Some((request, None)) => {
                let request = request.clone();
                let outcome = self.allocator.assign(&request);
                let mut events: Vec<status::Event> =
                    outcome.lost.iter().map(status::Event::lost).collect();
                match outcome.result {
                    Ok(assignment) => {
                        let condition = status::Condition::allocated(&assignment);
                        if held_before.as_ref() != Some(&assignment) {
                            events.push(status::Event::allocated(&assignment));
                        }
                        (assignment.ips, Some(condition), events)
                    }
                    Err(e) => (
                        Vec::new(),
                        Some(status::Condition::failed(
                            reasons::allocation_failure(&e),
                            e.to_string(),
                        )),
                        events,
                    ),
                }
            }
        };
        let entry = self.services.get_mut(key).expect("looked up above");
        if let Some(condition) = &condition
            && !condition.status
            && entry
                .reported
                .as_ref()
                .is_none_or(|r| !r.same_as(condition))
        {
            events.push(status::Event::failed(condition));
        }
        entry.reported = condition.clone();
        let condition = condition.map(|c| c.since(entry.observed_condition.as_ref(), now));
        let unchanged = entry.observed_ips == ips
            && match (&condition, &entry.observed_condition) {
                (Some(c), Some(o)) => c.same_as(o),
                (None, None) => true,
                _ => false,
            };
        let write = (!unchanged).then(|| status::ServiceStatus {
            ips: ips.clone(),
            owns_ingress,
            condition: condition.clone(),
            generation: entry.generation,
            resource_version: entry.resource_version.clone(),
        });
        let decision = Decision {
            key: key.clone(),
            uid: entry.uid.clone(),
            write,
            events,
        };
        let freed = held_before.is_some_and(|before| before.ips.iter().any(|ip| !ips.contains(ip)));
        (Some(decision), self.freed(freed))
    }

    fn freed(&self, freed: bool) -> Vec<ServiceKey> {
        if freed { self.waiting() } else { Vec::new() }
    }

    /// Every pool's status as it should be, and as it shows now.
    pub fn pool_statuses(&self) -> Vec<PoolReport> {
        self.pools
            .iter()
            .map(|(name, entry)| {
                let status = match &entry.read {
                    Ok(pool) => status::PoolStatus::valid(
                        self.allocator.usage(pool),
                        &self.allocator.overlaps(pool),
                    ),
                    Err(invalid) => status::PoolStatus::invalid(
                        &invalid.problems,
                        self.allocator.pool(name).is_some(),
                    ),
                };
                PoolReport {
                    name: name.clone(),
                    uid: entry.uid.clone(),
                    status,
                    observed: entry.observed.clone(),
                }
            })
            .collect()
    }

    pub fn assignment(&self, key: &ServiceKey) -> Option<&Assignment> {
        self.allocator.assignment(key)
    }

    /// How allocation sees a Service of ours now, with the allocator's own rules: for tools
    /// that explain. Decides nothing; `None` for a Service that is not Herald's.
    pub fn explain(&self, key: &ServiceKey) -> Option<Explanation> {
        let (request, error) = self.services.get(key)?.request.as_ref()?;
        Some(Explanation {
            request: request.clone(),
            error: error.clone(),
            held: self.allocator.assignment(key).cloned(),
            pools: self.allocator.considered(request),
            sharers: self.allocator.sharers(key),
        })
    }
}

fn object_key(key: &ServiceKey) -> ObjectKey {
    ObjectKey {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
    }
}

// The watches feed the index through these; each change returns the Services to decide again.

impl WatchIndex<KubeService> for Index {
    type Touched = ServiceKey;

    fn apply(&mut self, object: &KubeService) -> Vec<ServiceKey> {
        self.apply_service(object)
    }

    fn delete(&mut self, object: &KubeService) -> Vec<ServiceKey> {
        self.delete_service(&service::key(object))
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<ServiceKey> {
        self.retain_services(present)
    }
}

impl WatchIndex<IPAddressPool> for Index {
    type Touched = ServiceKey;

    fn apply(&mut self, object: &IPAddressPool) -> Vec<ServiceKey> {
        self.apply_pool(object)
    }

    fn delete(&mut self, object: &IPAddressPool) -> Vec<ServiceKey> {
        self.delete_pool(&object.name_any())
    }

    fn retain(&mut self, present: &BTreeSet<ObjectKey>) -> Vec<ServiceKey> {
        self.retain_pools(present)
    }
}

impl WatchIndex<PartialObjectMeta<Namespace>> for Index {
    type Touched = ServiceKey;

    fn apply(&mut self, object: &PartialObjectMeta<Namespace>) -> Vec<ServiceKey> {
        let labels = object.labels().clone().into_iter().collect();
        self.apply_namespace(&object.name_any(), labels)
    }

    /// A deleted namespace's Services are deleted with it, each by its own event.
    fn delete(&mut self, _: &PartialObjectMeta<Namespace>) -> Vec<ServiceKey> {
        Vec::new()
    }

    fn retain(&mut self, _: &BTreeSet<ObjectKey>) -> Vec<ServiceKey> {
        Vec::new()
    }
}

fn namespace_range(namespace: &str) -> std::ops::RangeInclusive<ServiceKey> {
    ServiceKey::new(namespace, "")..=ServiceKey::new(namespace, "\u{10FFFF}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_crds::EventReason;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn now() -> Time {
        Time(Timestamp::now())
    }

    fn pool(addresses: &[&str]) -> IPAddressPool {
        serde_json::from_value(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": "lan"}, "spec": {"addresses": addresses},
        }))
        .unwrap()
    }

    /// A LoadBalancer Service created at second `created`, with `ips` in its status.
    fn service(
        name: &str,
        created: i64,
        ips: &[&str],
        annotations: serde_json::Value,
    ) -> KubeService {
        let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "annotations": annotations,
                         "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap()
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("default", name)
    }

    fn decide(index: &mut Index, name: &str) -> Decision {
        index.decide(&key(name), &now()).0.expect("a decision")
    }

    #[test]
    fn a_restart_claims_every_status_before_allocating_anything() {
        let mut index = Index::new(None);
        index.apply_pool(&pool(&["192.0.2.0/30"]));
        // "a-new" sorts first and holds nothing; "b-old" shows .0 in its status.
        index.apply_service(&service("a-new", 20, &[], json!({})));
        index.apply_service(&service("b-old", 10, &["192.0.2.0"], json!({})));
        index.claim_statuses();
        let new = decide(&mut index, "a-new");
        assert_eq!(
            new.write.unwrap().ips,
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        let old = decide(&mut index, "b-old");
        assert_eq!(
            old.write.unwrap().ips,
            ["192.0.2.0".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn claiming_never_allocates_so_an_invalid_status_cannot_take_a_valid_one() {
        let mut index = Index::new(None);
        index.apply_pool(&pool(&["192.0.2.0/30"]));
        // The older Service shows an address the pool no longer has; the newer one shows .0.
        index.apply_service(&service("older", 10, &["198.51.100.1"], json!({})));
        index.apply_service(&service("newer", 20, &["192.0.2.0"], json!({})));
        index.claim_statuses();
        assert_eq!(index.assignment(&key("older")), None);
        assert_eq!(
            index.assignment(&key("newer")).unwrap().ips,
            ["192.0.2.0".parse::<IpAddr>().unwrap()]
        );
        let older = decide(&mut index, "older");
        assert_eq!(
            older.write.unwrap().ips,
            ["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn bad_input_keeps_the_address_in_status_also_after_a_restart() {
        let mut index = Index::new(None);
        index.apply_pool(&pool(&["192.0.2.0/30"]));
        let bad = json!({"herald.dev/loadBalancerIPs": "not-an-ip"});
        index.apply_service(&service("web", 10, &["192.0.2.2"], bad));
        index.claim_statuses();
        let decision = decide(&mut index, "web");
        let write = decision.write.unwrap();
        assert_eq!(write.ips, ["192.0.2.2".parse::<IpAddr>().unwrap()]);
        let condition = write.condition.unwrap();
        assert_eq!(condition.reason, "InvalidRequest");
        assert!(
            condition.message.ends_with("; keeping 192.0.2.2"),
            "{}",
            condition.message
        );
        // Nobody else gets it meanwhile.
        index.apply_service(&service(
            "other",
            20,
            &[],
            json!({"herald.dev/loadBalancerIPs": "192.0.2.2"}),
        ));
        let other = decide(&mut index, "other");
        assert_eq!(
            other.write.unwrap().condition.unwrap().reason,
            "AddressInUse"
        );
    }

    #[test]
    fn events_follow_transitions_and_a_stable_service_writes_nothing() {
        let mut index = Index::new(None);
        index.apply_pool(&pool(&["192.0.2.0/31"]));
        index.apply_service(&service("web", 10, &[], json!({})));
        let first = decide(&mut index, "web");
        assert_eq!(first.events.len(), 1);
        assert_eq!(first.events[0].reason, EventReason::IpAllocated);
        // Deciding again before the watch shows the write: same write, no second event.
        let again = decide(&mut index, "web");
        assert!(again.events.is_empty());
        // The watch shows the written status: nothing to write any more.
        let mut written = service("web", 10, &["192.0.2.0"], json!({}));
        let condition = first.write.unwrap().condition.unwrap();
        written.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({"type": condition.type_, "status": "True",
                "reason": condition.reason, "message": condition.message,
                "lastTransitionTime": condition.last_transition}))
            .unwrap(),
        ]);
        index.apply_service(&written);
        let stable = decide(&mut index, "web");
        assert_eq!((stable.write, stable.events.len()), (None, 0));
    }

    #[test]
    fn deleting_a_holder_serves_the_waiting_services() {
        let mut index = Index::new(None);
        index.apply_pool(&pool(&["192.0.2.0/32"]));
        index.apply_service(&service("a", 10, &[], json!({})));
        index.apply_service(&service("b", 20, &[], json!({})));
        decide(&mut index, "a");
        let waiting = decide(&mut index, "b");
        assert_eq!(
            waiting.write.unwrap().condition.unwrap().reason,
            "PoolExhausted"
        );
        assert_eq!(index.delete_service(&key("a")), vec![key("b")]);
        let served = decide(&mut index, "b");
        assert_eq!(
            served.write.unwrap().ips,
            ["192.0.2.0".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn a_service_that_is_no_longer_ours_gives_its_address_back() {
        let mut index = Index::new(None);
        index.apply_pool(&pool(&["192.0.2.0/32"]));
        let mut web = service("web", 10, &[], json!({}));
        index.apply_service(&web);
        let allocated = decide(&mut index, "web").write.unwrap();
        let condition = allocated.condition.unwrap();
        web.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({"type": condition.type_, "status": "True",
                "reason": condition.reason, "message": condition.message,
                "lastTransitionTime": condition.last_transition}))
            .unwrap(),
        ]);
        web.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        index.apply_service(&web);
        let (decision, waiting) = index.decide(&key("web"), &now());
        let decision = decision.unwrap();
        let write = decision.write.unwrap();
        assert!(write.ips.is_empty() && write.condition.is_none());
        assert_eq!(decision.events[0].reason, EventReason::IpReleased);
        assert!(waiting.is_empty());
        assert_eq!(index.assignment(&key("web")), None);
    }
}
