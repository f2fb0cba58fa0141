//! Herald's API vocabulary beyond the types: the conditions it writes and their reasons, the
//! reasons of its Events, the Service annotations it reads and its field managers. Both
//! binaries, the tests and tools use these, so a name is spelled in one place.

/// Condition types.
pub mod conditions {
    /// On Services, written by the controller: whether the Service holds its addresses.
    pub const ALLOCATED: &str = "herald.dev/Allocated";
    /// On Services, written by the speaker that answers (or the first live speaker, when none
    /// may): whether and where its addresses are announced.
    pub const ANNOUNCED: &str = "herald.dev/Announced";
    /// On IPAddressPools: the pool hands out addresses.
    pub const POOL_READY: &str = "Ready";
    /// On IPAddressPools: the pool overlaps another (its message names it).
    pub const POOL_CONFLICTING: &str = "Conflicting";
    /// On IPAddressPools: the spec is invalid (its message names the field).
    pub const POOL_INVALID: &str = "Invalid";
}

/// Condition reasons: machine-readable, each with a message a person can act on.
pub mod reasons {
    use herald_core::allocation::AllocationError;
    use herald_core::election::Reason as NotAnnounced;

    // herald.dev/Allocated
    pub const ALLOCATED: &str = "Allocated";
    pub const INVALID_REQUEST: &str = "InvalidRequest";
    pub const POOL_NOT_FOUND: &str = "PoolNotFound";
    pub const POOL_INVALID: &str = "PoolInvalid";
    pub const POOL_NOT_ALLOWED: &str = "PoolNotAllowed";
    pub const POOL_EXHAUSTED: &str = "PoolExhausted";
    pub const POOL_LACKS_FAMILY: &str = "PoolLacksFamily";
    pub const NO_POOL_AVAILABLE: &str = "NoPoolAvailable";
    pub const ADDRESS_NOT_IN_POOL: &str = "AddressNotInPool";
    pub const FAMILY_MISMATCH: &str = "FamilyMismatch";
    pub const ADDRESS_IN_USE: &str = "AddressInUse";

    // herald.dev/Announced
    pub const ANNOUNCED: &str = "Announced";
    pub const ADDRESS_CONFLICT: &str = "AddressConflict";
    pub const NOT_IN_ANY_POOL: &str = "NotInAnyPool";
    pub const NO_L2_ADVERTISEMENT: &str = "NoL2Advertisement";
    pub const NO_READY_ENDPOINT: &str = "NoReadyEndpoint";
    pub const NO_ELIGIBLE_NODE: &str = "NoEligibleNode";

    // IPAddressPool conditions
    pub const POOL_READY: &str = "Ready";
    pub const POOL_NOT_READY: &str = "Invalid";
    pub const NO_OVERLAP: &str = "NoOverlap";
    pub const OVERLAP: &str = "Overlap";
    pub const VALID_SPEC: &str = "Valid";
    pub const INVALID_SPEC: &str = "InvalidSpec";

    /// The Allocated condition's reason for a Service that gets no address.
    pub fn allocation_failure(error: &AllocationError) -> &'static str {
        match error {
            AllocationError::PoolNotFound { .. } => POOL_NOT_FOUND,
            AllocationError::PoolInvalid { .. } => POOL_INVALID,
            AllocationError::PoolNotAllowed { .. } => POOL_NOT_ALLOWED,
            AllocationError::PoolExhausted { .. } | AllocationError::AllPoolsExhausted { .. } => {
                POOL_EXHAUSTED
            }
            AllocationError::PoolLacksFamily { .. } => POOL_LACKS_FAMILY,
            AllocationError::NoPool { .. } => NO_POOL_AVAILABLE,
            AllocationError::NotInAnyPool { .. }
            | AllocationError::NotInOnePool { .. }
            | AllocationError::NotInNamedPool { .. } => ADDRESS_NOT_IN_POOL,
            AllocationError::FamilyNotWanted { .. }
            | AllocationError::FamiliesIncomplete { .. } => FAMILY_MISMATCH,
            AllocationError::InUse { .. } => ADDRESS_IN_USE,
        }
    }

    /// The Announced condition's reason for a Service that nobody announces.
    pub fn not_announced(reason: &NotAnnounced) -> &'static str {
        match reason {
            NotAnnounced::NotInAnyPool(_) => NOT_IN_ANY_POOL,
            NotAnnounced::NoAdvertisement { .. } => NO_L2_ADVERTISEMENT,
            NotAnnounced::NoReadyEndpoint => NO_READY_ENDPOINT,
            NotAnnounced::NoEligibleNode { .. } => NO_ELIGIBLE_NODE,
        }
    }
}

/// The reasons of the Events Herald publishes, on transitions only. They also label the
/// metrics that count those transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventReason {
    /// A Service got (or changed) its addresses.
    IpAllocated,
    /// A Service got no address; the Allocated condition says why.
    AllocationFailed,
    /// A Service lost an address it held (a pool edit, a new request).
    IpWithdrawn,
    /// A Service that Herald no longer serves gave its addresses back.
    IpReleased,
    /// A pool's spec turned invalid.
    InvalidSpec,
    /// This node started answering for a Service's addresses.
    Announcing,
    /// Another host on the LAN uses an address.
    AddressConflict,
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::IpAllocated => "IPAllocated",
            EventReason::AllocationFailed => "AllocationFailed",
            EventReason::IpWithdrawn => "IPWithdrawn",
            EventReason::IpReleased => "IPReleased",
            EventReason::InvalidSpec => "InvalidSpec",
            EventReason::Announcing => "Announcing",
            EventReason::AddressConflict => "AddressConflict",
        }
    }
}

impl std::fmt::Display for EventReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Service annotations Herald reads: each suffix under each prefix.
pub mod annotations {
    /// Herald's own prefix first; MetalLB's are honoured so that Services move over unchanged.
    pub const PREFIXES: [&str; 3] = ["herald.dev/", "metallb.io/", "metallb.universe.tf/"];
    /// Comma-separated addresses, at most one per family.
    pub const LOAD_BALANCER_IPS: &str = "loadBalancerIPs";
    /// The pool to allocate from.
    pub const ADDRESS_POOL: &str = "address-pool";
    /// The sharing key.
    pub const ALLOW_SHARED_IP: &str = "allow-shared-ip";
}

/// The field managers of Herald's server-side applies, and its Events' reporting controllers.
pub mod field_managers {
    pub const CONTROLLER: &str = "herald-controller";
    pub const SPEAKER: &str = "herald-speaker";
}
