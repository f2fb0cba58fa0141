//! Address allocation: which addresses each LoadBalancer Service holds.
//!
//! The [`Allocator`] is an index of pools and assignments, fed by the runtime's watch events;
//! every decision is a function of that state and of the Service asking, so the same inputs
//! always give the same addresses. An address is held by one Service, or by several that may
//! share it (same sharing key, no common port, compatible backends), never otherwise.
//!
//! Order for a Service (see the spec, "Allocation"): keep what it holds while that is still
//! valid; else the addresses in its status (a restart, another replica); else the addresses it
//! requests; else the pool it names; else the pools whose `serviceAllocation` selects it,
//! lowest priority first; else the other auto-assign pools, by name. Inside a pool, the
//! lowest free address. [`Service::rule`] and [`pool_verdict`] make those choices, and
//! [`Allocator::considered`] shows them pool by pool, so tools explain what allocation does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::addresses::{IpFamily, PoolAddresses};
use crate::selector::{LabelSelector, Labels, any_matches};
use crate::text::quote;

/// A Service, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pool, as allocation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub addresses: PoolAddresses,
    pub auto_assign: bool,
    /// `serviceAllocation`: when set, the pool serves only the Services it selects.
    pub allocation: Option<PoolAllocation>,
    /// False while the pool's spec is invalid: it keeps what it has handed out, and hands out
    /// nothing new until it is fixed (bad input loses nothing).
    pub hands_out: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolAllocation {
    pub priority: Option<i32>,
    pub namespaces: BTreeSet<String>,
    pub namespace_selectors: Vec<LabelSelector>,
    pub service_selectors: Vec<LabelSelector>,
}

impl Pool {
    /// Why this pool may not serve `service`, if it may not.
    fn refusal(&self, service: &Service) -> Option<String> {
        let allocation = self.allocation.as_ref()?;
        let namespaces_set =
            !allocation.namespaces.is_empty() || !allocation.namespace_selectors.is_empty();
        let namespace_allowed = allocation.namespaces.contains(&service.key.namespace)
            || (!allocation.namespace_selectors.is_empty()
                && any_matches(&allocation.namespace_selectors, &service.namespace_labels));
        if namespaces_set && !namespace_allowed {
            return Some(format!(
                "pool {:?} serves only some namespaces (serviceAllocation), not {:?}",
                self.name, service.key.namespace
            ));
        }
        if !any_matches(&allocation.service_selectors, &service.labels) {
            return Some(format!(
                "pool {:?} serves only Services that match its serviceAllocation.serviceSelectors",
                self.name
            ));
        }
        None
    }
}

/// Which families a Service wants, from `spec.ipFamilies` and `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyPolicy {
    Single(IpFamily),
    /// Both if one pool can give both, else the first family that can be had, primary first.
    PreferDual(IpFamily),
    RequireDual,
}

impl FamilyPolicy {
    fn families(self) -> Vec<IpFamily> {
        match self {
            FamilyPolicy::Single(f) => vec![f],
            FamilyPolicy::PreferDual(IpFamily::V4) | FamilyPolicy::RequireDual => {
                vec![IpFamily::V4, IpFamily::V6]
            }
            FamilyPolicy::PreferDual(IpFamily::V6) => vec![IpFamily::V6, IpFamily::V4],
        }
    }

    fn accepts(self, held: &[IpFamily]) -> bool {
        let wanted = self.families();
        let all_wanted = held.iter().all(|f| wanted.contains(f));
        match self {
            FamilyPolicy::Single(_) => all_wanted && held.len() == 1,
            FamilyPolicy::PreferDual(_) => all_wanted && !held.is_empty(),
            FamilyPolicy::RequireDual => all_wanted && held.len() == 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

/// What a Service's traffic reaches; Services that share an address must agree on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Cluster,
    /// `externalTrafficPolicy: Local`, with the Service's pod selector.
    Local(Labels),
}

/// A Service's `allow-shared-ip` key and what decides whether it may share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sharing {
    pub key: String,
    pub ports: BTreeSet<(Protocol, u16)>,
    pub backend: Backend,
}

impl Sharing {
    /// Why `self` and `other` may not share an address, if they may not.
    fn conflict(&self, other: &Sharing) -> Option<String> {
        if self.key != other.key {
            return Some(format!("its sharing key is {}", quote(&other.key)));
        }
        if let Some((protocol, port)) = self.ports.intersection(&other.ports).next() {
            return Some(format!("it uses {protocol} port {port} too"));
        }
        match (&self.backend, &other.backend) {
            (Backend::Cluster, Backend::Cluster) => None,
            (Backend::Local(a), Backend::Local(b)) if a == b => None,
            (Backend::Local(_), Backend::Local(_)) => {
                Some("both have externalTrafficPolicy Local and they select different pods".into())
            }
            _ => Some(
                "one has externalTrafficPolicy Local and the other Cluster: traffic would \
                 reach different nodes"
                    .into(),
            ),
        }
    }
}

/// What allocation needs to know of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    pub labels: Labels,
    pub namespace_labels: Labels,
    pub families: FamilyPolicy,
    /// Addresses asked for by annotation or `spec.loadBalancerIP`: at most one per family.
    pub requested: Vec<IpAddr>,
    /// The pool asked for by annotation.
    pub pool: Option<String>,
    pub sharing: Option<Sharing>,
    /// The addresses in the Service's status: kept if still valid, so restarts move nothing.
    pub current: Vec<IpAddr>,
}

/// Which rule gives a Service its addresses when it holds none (see the module
/// documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// It asks for these addresses (an annotation, or `spec.loadBalancerIP`).
    Requested(Vec<IpAddr>),
    /// It names a pool (an annotation).
    NamedPool(String),
    /// Pools whose `serviceAllocation` selects it, lowest priority first, then the other
    /// auto-assign pools.
    Automatic,
}

impl Service {
    pub fn rule(&self) -> Rule {
        if !self.requested.is_empty() {
            Rule::Requested(self.requested.clone())
        } else if let Some(pool) = &self.pool {
            Rule::NamedPool(pool.clone())
        } else {
            Rule::Automatic
        }
    }
}

/// How automatic allocation sees one pool for one Service: a candidate, and where it comes in
/// the order pools are tried, or why it is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolVerdict {
    /// Its `serviceAllocation` selects the Service: tried before pools without one, lowest
    /// priority first, unset priority last.
    Selects { priority: Option<i32> },
    /// An auto-assign pool without `serviceAllocation`: tried after those that select.
    AutoAssign,
    /// `autoAssign: false`: it serves only Services that name it or ask for its addresses.
    NotAutoAssign,
    /// Its `serviceAllocation` does not select the Service.
    Refuses(String),
    /// Its spec is invalid: it hands out nothing new until it is fixed.
    Invalid,
}

impl PoolVerdict {
    /// The pool's place in the order automatic allocation tries candidates; none for a pool
    /// it does not try.
    fn rank(&self) -> Option<(u8, u8, i32)> {
        match self {
            PoolVerdict::Selects { priority: Some(n) } => Some((0, 0, *n)),
            PoolVerdict::Selects { priority: None } => Some((0, 1, 0)),
            PoolVerdict::AutoAssign => Some((1, 0, 0)),
            _ => None,
        }
    }
}

impl fmt::Display for PoolVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolVerdict::Selects { priority: Some(n) } => {
                write!(f, "its serviceAllocation selects the Service, priority {n}")
            }
            PoolVerdict::Selects { priority: None } => f.write_str(
                "its serviceAllocation selects the Service, no priority (after those with one)",
            ),
            PoolVerdict::AutoAssign => {
                f.write_str("auto-assign, open to every Service (after pools that select)")
            }
            PoolVerdict::NotAutoAssign => f.write_str(
                "autoAssign is false: only for Services that name it or ask for its addresses",
            ),
            PoolVerdict::Refuses(why) => f.write_str(why),
            PoolVerdict::Invalid => {
                f.write_str("its spec is invalid: it hands out nothing new until it is fixed")
            }
        }
    }
}

/// Whether automatic allocation may take `service`'s addresses from `pool`, and in which
/// order: the one rule that both allocation and explanations apply.
pub fn pool_verdict(pool: &Pool, service: &Service) -> PoolVerdict {
    if !pool.auto_assign {
        PoolVerdict::NotAutoAssign
    } else if let Some(why) = pool.refusal(service) {
        PoolVerdict::Refuses(why)
    } else if !pool.hands_out {
        PoolVerdict::Invalid
    } else {
        match &pool.allocation {
            Some(allocation) => PoolVerdict::Selects {
                priority: allocation.priority,
            },
            None => PoolVerdict::AutoAssign,
        }
    }
}

/// One pool as allocation sees it for one Service (see [`Allocator::considered`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Considered {
    pub pool: String,
    pub verdict: PoolVerdict,
    /// For a candidate, when the Service holds nothing: the addresses the pool would give it
    /// now, or why none.
    pub offer: Option<Result<Vec<IpAddr>, AllocationError>>,
}

/// The addresses a Service holds, and the pool they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub pool: String,
    /// One per family, IPv4 first.
    pub ips: Vec<IpAddr>,
}

/// The result of [`Allocator::assign`]: the addresses the Service holds now (or why it holds
/// none), and what it held before and lost, with why, so the runtime can say so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<Assignment, AllocationError>,
    pub lost: Option<Lost>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    pub ips: Vec<IpAddr>,
    pub reason: String,
}

/// Why a Service gets no address, with a message that says what to fix (the condition's
/// machine reason is `herald_crds::reasons::allocation_failure`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error(
        "pool {} does not exist: fix the address-pool annotation or create the pool",
        quote(.pool)
    )]
    PoolNotFound { pool: String },
    #[error(
        "pool {pool:?} is invalid and hands out no new addresses until its spec is fixed \
         (see its Invalid condition)"
    )]
    PoolInvalid { pool: String },
    #[error("{why}")]
    PoolNotAllowed { pool: String, why: String },
    #[error("pool {pool:?} has no free {family} address")]
    PoolExhausted { pool: String, family: IpFamily },
    #[error("pool {pool:?} has no {family} addresses, and the Service needs one")]
    PoolLacksFamily { pool: String, family: IpFamily },
    #[error(
        "no pool may serve this Service{detail}: create an IPAddressPool with autoAssign, or name one"
    )]
    NoPool { detail: String },
    #[error("every pool that may serve this Service is out of {families} addresses")]
    AllPoolsExhausted { families: String },
    #[error("requested address {ip} is not in any IPAddressPool")]
    NotInAnyPool { ip: IpAddr },
    #[error("requested addresses {ips} are not in one pool: request addresses of one pool")]
    NotInOnePool { ips: String },
    #[error(
        "requested {ips} is in pool {pool:?}, but the Service asks for pool {}",
        quote(.wanted)
    )]
    NotInNamedPool {
        ips: String,
        pool: String,
        wanted: String,
    },
    #[error("requested address {ip} is {family}, but the Service's ipFamilies do not include it")]
    FamilyNotWanted { ip: IpAddr, family: IpFamily },
    #[error("requested addresses {ips} do not satisfy the Service's ipFamilyPolicy {policy}")]
    FamiliesIncomplete { ips: String, policy: String },
    #[error("address {ip} is in use by Service {holder}, which it may not share: {why}")]
    InUse {
        ip: IpAddr,
        holder: ServiceKey,
        why: String,
    },
}

#[derive(Clone, Debug)]
struct Holding {
    assignment: Assignment,
    sharing: Option<Sharing>,
}

/// Pools and assignments; see the module documentation.
#[derive(Debug, Default)]
pub struct Allocator {
    pools: BTreeMap<String, Pool>,
    holdings: BTreeMap<ServiceKey, Holding>,
    holders: BTreeMap<IpAddr, BTreeSet<ServiceKey>>,
}

/// How many addresses of a pool are in use and still free, per family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub assigned_v4: u128,
    pub available_v4: u128,
    pub assigned_v6: u128,
    pub available_v6: u128,
}

impl Allocator {
    pub fn new() -> Self {
        Allocator::default()
    }

    /// Adds or replaces a pool. Services whose addresses it no longer holds lose them at their
    /// next [`assign`](Self::assign), which says why.
    pub fn set_pool(&mut self, pool: Pool) {
        self.pools.insert(pool.name.clone(), pool);
    }

    pub fn remove_pool(&mut self, name: &str) {
        self.pools.remove(name);
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    pub fn assignment(&self, key: &ServiceKey) -> Option<&Assignment> {
        self.holdings.get(key).map(|h| &h.assignment)
    }

    /// The Services holding `ip`.
    pub fn holders(&self, ip: IpAddr) -> impl Iterator<Item = &ServiceKey> {
        self.holders.get(&ip).into_iter().flatten()
    }

    /// Frees what the Service holds (it was deleted, or is no longer a Herald LoadBalancer).
    pub fn release(&mut self, key: &ServiceKey) -> Option<Assignment> {
        let holding = self.holdings.remove(key)?;
        for ip in &holding.assignment.ips {
            if let Some(keys) = self.holders.get_mut(ip) {
                keys.remove(key);
                if keys.is_empty() {
                    self.holders.remove(ip);
                }
            }
        }
        Some(holding.assignment)
    }

    /// Gives `service` its addresses: keeps what it holds or has in status while still valid,
    /// else allocates in the order of the module documentation.
    pub fn assign(&mut self, service: &Service) -> Outcome {
        let mut lost = None;
        if let Some(holding) = self.holdings.get(&service.key) {
            let held = holding.assignment.clone();
            match self.still_valid(service, &held) {
                Ok(()) => {
                    // Its sharing key or ports may have changed without making it move.
                    self.hold(service, held.clone());
                    return Outcome {
                        result: Ok(self.extend_preferred(service, held)),
                        lost: None,
                    };
                }
                Err(reason) => {
                    self.release(&service.key);
                    lost = Some(Lost {
                        ips: held.ips,
                        reason,
                    });
                }
            }
        }
        let result = match self.claim(service) {
            Some(assignment) => Ok(self.extend_preferred(service, assignment)),
            None => self.allocate(service),
        };
        Outcome { result, lost }
    }

    /// Why `held` may no longer stay with `service`, if so.
    fn still_valid(&self, service: &Service, held: &Assignment) -> Result<(), String> {
        let ips = join(&held.ips);
        let Some(pool) = self.pools.get(&held.pool) else {
            return Err(format!("pool {:?} was deleted", held.pool));
        };
        if let Some(ip) = held.ips.iter().find(|ip| !pool.addresses.contains(**ip)) {
            return Err(format!(
                "address {ip} was removed from pool {:?}",
                pool.name
            ));
        }
        if let Some(why) = pool.refusal(service) {
            return Err(why);
        }
        if let Some(wanted) = &service.pool
            && wanted != &pool.name
        {
            return Err(format!("the Service now asks for pool {wanted:?}"));
        }
        if !holds_request(&service.requested, &held.ips) {
            return Err(format!(
                "the Service now requests {} instead of {ips}",
                join(&service.requested)
            ));
        }
        let families: Vec<IpFamily> = held.ips.iter().map(|ip| IpFamily::of(*ip)).collect();
        if !service.families.accepts(&families) {
            return Err(format!(
                "the Service's ipFamilies changed; {ips} no longer fit"
            ));
        }
        for ip in &held.ips {
            if let Err(AllocationError::InUse { holder, why, .. }) = self.shareable(*ip, service) {
                return Err(format!("it can no longer share {ip} with {holder}: {why}"));
            }
        }
        Ok(())
    }

    /// Claims the addresses in the Service's status when they are still valid for it and free
    /// (or shareable), so that a restart or a new leader moves nothing. Allocates nothing new.
    pub fn claim(&mut self, service: &Service) -> Option<Assignment> {
        if service.current.is_empty() {
            return None;
        }
        let assignment = self
            .pools
            .values()
            .filter(|p| service.current.iter().all(|ip| p.addresses.contains(*ip)))
            .map(|p| Assignment {
                pool: p.name.clone(),
                ips: sorted(&service.current),
            })
            .find(|a| self.still_valid(service, a).is_ok())?;
        self.hold(service, assignment.clone());
        Some(assignment)
    }

    /// A PreferDualStack Service that holds one family gets the other when its pool has one
    /// free, without moving the address it has.
    fn extend_preferred(&mut self, service: &Service, held: Assignment) -> Assignment {
        if !matches!(service.families, FamilyPolicy::PreferDual(_)) || held.ips.len() == 2 {
            return held;
        }
        let has = IpFamily::of(held.ips[0]);
        let other = if has == IpFamily::V4 {
            IpFamily::V6
        } else {
            IpFamily::V4
        };
        let Some(pool) = self.pools.get(&held.pool).filter(|p| p.hands_out) else {
            return held;
        };
        let Ok(extra) = self.pick(pool, other, service) else {
            return held;
        };
        let mut ips = held.ips.clone();
        ips.push(extra);
        let assignment = Assignment {
            pool: held.pool,
            ips: sorted(&ips),
        };
        self.release(&service.key);
        self.hold(service, assignment.clone());
        assignment
    }

    fn allocate(&mut self, service: &Service) -> Result<Assignment, AllocationError> {
        let assignment = match service.rule() {
            Rule::Requested(_) => {
                let requested = self.requested(service)?;
                self.hold(service, requested.clone());
                // The request names the addresses of its families; PreferDualStack fills the
                // others from the same pool.
                return Ok(self.extend_preferred(service, requested));
            }
            Rule::NamedPool(name) => {
                let pool = self
                    .pools
                    .get(&name)
                    .ok_or_else(|| AllocationError::PoolNotFound { pool: name.clone() })?;
                if let Some(why) = pool.refusal(service) {
                    return Err(AllocationError::PoolNotAllowed { pool: name, why });
                }
                if !pool.hands_out {
                    return Err(AllocationError::PoolInvalid { pool: name });
                }
                self.allocate_in(pool, service)?
            }
            Rule::Automatic => self.automatic(service)?,
        };
        self.hold(service, assignment.clone());
        Ok(assignment)
    }

    fn requested(&self, service: &Service) -> Result<Assignment, AllocationError> {
        let wanted = service.families.families();
        for ip in &service.requested {
            if !wanted.contains(&IpFamily::of(*ip)) {
                return Err(AllocationError::FamilyNotWanted {
                    ip: *ip,
                    family: IpFamily::of(*ip),
                });
            }
        }
        let families: Vec<IpFamily> = service
            .requested
            .iter()
            .map(|ip| IpFamily::of(*ip))
            .collect();
        if !service.families.accepts(&families) {
            return Err(AllocationError::FamiliesIncomplete {
                ips: join(&service.requested),
                policy: format!("{:?}", service.families),
            });
        }
        if let Some(ip) = service
            .requested
            .iter()
            .find(|ip| !self.pools.values().any(|p| p.addresses.contains(**ip)))
        {
            return Err(AllocationError::NotInAnyPool { ip: *ip });
        }
        let holding_all: Vec<&Pool> = self
            .pools
            .values()
            .filter(|p| service.requested.iter().all(|ip| p.addresses.contains(*ip)))
            .collect();
        let pool = holding_all
            .iter()
            .find(|p| p.refusal(service).is_none())
            .or(holding_all.first())
            .ok_or_else(|| AllocationError::NotInOnePool {
                ips: join(&service.requested),
            })?;
        if let Some(why) = pool.refusal(service) {
            return Err(AllocationError::PoolNotAllowed {
                pool: pool.name.clone(),
                why,
            });
        }
        if let Some(wanted) = &service.pool
            && wanted != &pool.name
        {
            return Err(AllocationError::NotInNamedPool {
                ips: join(&service.requested),
                pool: pool.name.clone(),
                wanted: wanted.clone(),
            });
        }
        if !pool.hands_out {
            return Err(AllocationError::PoolInvalid {
                pool: pool.name.clone(),
            });
        }
        for ip in &service.requested {
            self.shareable(*ip, service)?;
        }
        Ok(Assignment {
            pool: pool.name.clone(),
            ips: sorted(&service.requested),
        })
    }

    /// Pools that may serve the Service without being named: those whose serviceAllocation
    /// selects it by priority (unset last), then the others, each group by name.
    fn automatic(&self, service: &Service) -> Result<Assignment, AllocationError> {
        let ranked = self.ranked(service);
        let candidates: Vec<&Pool> = ranked
            .iter()
            .filter(|(_, verdict)| verdict.rank().is_some())
            .map(|(pool, _)| *pool)
            .collect();
        if candidates.is_empty() {
            let refusing = self.pools.values().filter(|p| p.auto_assign).count();
            let invalid = ranked
                .iter()
                .find(|(_, verdict)| *verdict == PoolVerdict::Invalid);
            let detail = if let Some((pool, _)) = invalid {
                format!(
                    " (pool {:?} is invalid and hands out nothing new until its spec is fixed)",
                    pool.name
                )
            } else if refusing > 0 {
                format!(
                    " ({refusing} auto-assign pools restrict serviceAllocation and do not select it)"
                )
            } else {
                String::new()
            };
            return Err(AllocationError::NoPool { detail });
        }
        if let FamilyPolicy::PreferDual(_) = service.families
            && let Some(both) = candidates.iter().find_map(|p| {
                self.allocate_families_in(p, service, FamilyPolicy::RequireDual)
                    .ok()
            })
        {
            return Ok(both);
        }
        // Report exhaustion only when some pool has every family the Service needs.
        let mut lacking = None;
        let mut exhausted = false;
        for pool in &candidates {
            match self.allocate_in(pool, service) {
                Ok(assignment) => return Ok(assignment),
                Err(e @ AllocationError::PoolLacksFamily { .. }) => {
                    lacking.get_or_insert(e);
                }
                Err(_) => exhausted = true,
            }
        }
        match lacking {
            Some(e) if !exhausted => Err(e),
            _ => Err(AllocationError::AllPoolsExhausted {
                families: service
                    .families
                    .families()
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            }),
        }
    }

    /// Every pool with its verdict for `service`: the candidates in the order automatic
    /// allocation tries them, then the others by name.
    fn ranked(&self, service: &Service) -> Vec<(&Pool, PoolVerdict)> {
        let mut ranked: Vec<(&Pool, PoolVerdict)> = self
            .pools
            .values()
            .map(|pool| (pool, pool_verdict(pool, service)))
            .collect();
        // Stable: pools of one rank stay in name order.
        ranked.sort_by_key(|(_, verdict)| (verdict.rank().is_none(), verdict.rank()));
        ranked
    }

    /// How automatic allocation sees every pool for `service`, in the order it tries them,
    /// with what each candidate would give now when the Service holds nothing. Decides
    /// nothing: for tools that explain.
    pub fn considered(&self, service: &Service) -> Vec<Considered> {
        let holds_nothing = self.assignment(&service.key).is_none();
        self.ranked(service)
            .into_iter()
            .map(|(pool, verdict)| Considered {
                pool: pool.name.clone(),
                offer: (holds_nothing && verdict.rank().is_some())
                    .then(|| self.allocate_in(pool, service).map(|a| a.ips)),
                verdict,
            })
            .collect()
    }

    /// The other Services holding an address that `key` holds.
    pub fn sharers(&self, key: &ServiceKey) -> Vec<ServiceKey> {
        let mut sharers: Vec<ServiceKey> = self
            .assignment(key)
            .into_iter()
            .flat_map(|a| a.ips.iter())
            .flat_map(|ip| self.holders(*ip))
            .filter(|holder| *holder != key)
            .cloned()
            .collect();
        sharers.sort();
        sharers.dedup();
        sharers
    }

    fn allocate_in(&self, pool: &Pool, service: &Service) -> Result<Assignment, AllocationError> {
        self.allocate_families_in(pool, service, service.families)
    }

    fn allocate_families_in(
        &self,
        pool: &Pool,
        service: &Service,
        policy: FamilyPolicy,
    ) -> Result<Assignment, AllocationError> {
        let mut ips = Vec::new();
        let mut first_error = None;
        for family in policy.families() {
            if !pool.addresses.has_family(family) {
                first_error.get_or_insert(AllocationError::PoolLacksFamily {
                    pool: pool.name.clone(),
                    family,
                });
                continue;
            }
            match self.pick(pool, family, service) {
                Ok(ip) => ips.push(ip),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let families: Vec<IpFamily> = ips.iter().map(|ip| IpFamily::of(*ip)).collect();
        match first_error {
            Some(e) if !policy.accepts(&families) => Err(e),
            _ => Ok(Assignment {
                pool: pool.name.clone(),
                ips: sorted(&ips),
            }),
        }
    }

    /// The lowest address of `family` in `pool` that the Service may take: free, or held
    /// only by Services it may share with.
    fn pick(
        &self,
        pool: &Pool,
        family: IpFamily,
        service: &Service,
    ) -> Result<IpAddr, AllocationError> {
        let free = pool.addresses.lowest_free(family, &self.holders);
        let shared = service.sharing.as_ref().and_then(|_| {
            self.holders
                .keys()
                .filter(|ip| IpFamily::of(**ip) == family && pool.addresses.contains(**ip))
                .find(|ip| self.shareable(**ip, service).is_ok())
                .copied()
        });
        match (free, shared) {
            (Some(a), Some(b)) => Ok(a.min(b)),
            (Some(ip), None) | (None, Some(ip)) => Ok(ip),
            (None, None) => Err(AllocationError::PoolExhausted {
                pool: pool.name.clone(),
                family,
            }),
        }
    }

    /// Whether `service` may hold `ip` next to its current holders.
    fn shareable(&self, ip: IpAddr, service: &Service) -> Result<(), AllocationError> {
        for holder in self.holders(ip).filter(|k| **k != service.key) {
            let theirs = self.holdings.get(holder).and_then(|h| h.sharing.as_ref());
            let why = match (&service.sharing, theirs) {
                (Some(ours), Some(theirs)) => ours.conflict(theirs),
                (None, _) => Some("this Service has no allow-shared-ip key".to_owned()),
                (_, None) => Some("it has no allow-shared-ip key".to_owned()),
            };
            if let Some(why) = why {
                return Err(AllocationError::InUse {
                    ip,
                    holder: holder.clone(),
                    why,
                });
            }
        }
        Ok(())
    }

    fn hold(&mut self, service: &Service, assignment: Assignment) {
        for ip in &assignment.ips {
            self.holders
                .entry(*ip)
                .or_default()
                .insert(service.key.clone());
        }
        self.holdings.insert(
            service.key.clone(),
            Holding {
                assignment,
                sharing: service.sharing.clone(),
            },
        );
    }

    /// Addresses in use and free in `pool`, per family. An address in use counts once
    /// however many Services share it.
    pub fn usage(&self, pool: &Pool) -> PoolUsage {
        let in_pool = |family| {
            self.holders
                .keys()
                .filter(|ip| IpFamily::of(**ip) == family && pool.addresses.contains(**ip))
                .count() as u128
        };
        let (assigned_v4, assigned_v6) = (in_pool(IpFamily::V4), in_pool(IpFamily::V6));
        PoolUsage {
            assigned_v4,
            available_v4: pool
                .addresses
                .count(IpFamily::V4)
                .saturating_sub(assigned_v4),
            assigned_v6,
            available_v6: pool
                .addresses
                .count(IpFamily::V6)
                .saturating_sub(assigned_v6),
        }
    }

    /// Other pools that hold some of `pool`'s addresses, with the first shared range.
    pub fn overlaps(&self, pool: &Pool) -> Vec<(String, String)> {
        self.pools
            .values()
            .filter(|other| other.name != pool.name)
            .filter_map(|other| {
                pool.addresses.ranges().iter().find_map(|a| {
                    other
                        .addresses
                        .ranges()
                        .iter()
                        .find_map(|b| a.intersection(b))
                        .map(|shared| (other.name.clone(), shared.to_string()))
                })
            })
            .collect()
    }
}

fn sorted(ips: &[IpAddr]) -> Vec<IpAddr> {
    let mut ips = ips.to_vec();
    ips.sort_by_key(|ip| (IpFamily::of(*ip), *ip));
    ips
}

/// Whether `held` has every requested address, and no other address of a requested family.
/// With nothing requested, any holding will do.
fn holds_request(requested: &[IpAddr], held: &[IpAddr]) -> bool {
    requested.iter().all(|r| held.contains(r))
        && held.iter().all(|h| {
            requested.contains(h)
                || requested
                    .iter()
                    .all(|r| IpFamily::of(*r) != IpFamily::of(*h))
        })
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
