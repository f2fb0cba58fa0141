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
    /// Only BGP would announce it, and no node that may peers with a router of its family.
    pub const NO_BGP_PEER: &str = "NoBGPPeer";

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

    /// The Announced condition's reason for a Service that only BGP would announce, and does
    /// not.
    pub fn not_advertised(reason: &herald_core::bgp::Reason) -> &'static str {
        use herald_core::bgp::Reason;
        match reason {
            Reason::NoReadyEndpoint => NO_READY_ENDPOINT,
            Reason::NoEligibleNode { .. } => NO_ELIGIBLE_NODE,
            Reason::NoPeer { .. } => NO_BGP_PEER,
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
    /// A node's BGP session with a BGPPeer reached Established.
    BgpSessionUp,
    /// A node's BGP session with a BGPPeer left Established.
    BgpSessionDown,
    /// BGP objects that cannot be followed together as written (two peers at one address,
    /// clashing ASNs on one node...); the note says what is done instead.
    BgpConflict,
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
            EventReason::BgpSessionUp => "BGPSessionUp",
            EventReason::BgpSessionDown => "BGPSessionDown",
            EventReason::BgpConflict => "BGPConflict",
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

/// The message of an `Announced` condition that is true: which node answers for which
/// addresses, on which interfaces, and why that node. The speaker writes it and reads it back
/// (an address the cluster announced before is taken over without a probe); tools read it to
/// show who answers.
pub mod announced {
    use std::net::IpAddr;

    /// `node NODE answers for IP[, IP] on IFACE[, IFACE]: WHY`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Answering {
        pub node: String,
        pub ips: Vec<IpAddr>,
        pub interfaces: Vec<String>,
    }

    impl Answering {
        pub fn message(&self, why: &str) -> String {
            let list = |items: Vec<String>| items.join(", ");
            format!(
                "node {} answers for {} on {}: {why}",
                self.node,
                list(self.ips.iter().map(|ip| ip.to_string()).collect()),
                list(self.interfaces.clone())
            )
        }

        /// Reads a message [`Self::message`] wrote; `None` for any other text.
        pub fn parse(message: &str) -> Option<Answering> {
            let rest = message.strip_prefix("node ")?;
            let (node, rest) = rest.split_once(" answers for ")?;
            let (ips, rest) = rest.split_once(" on ")?;
            let (interfaces, _) = rest.split_once(": ")?;
            Some(Answering {
                node: node.to_owned(),
                ips: ips
                    .split(", ")
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
                interfaces: interfaces.split(", ").map(str::to_owned).collect(),
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_message_reads_back_as_written_and_other_text_not_at_all() {
            let answering = Answering {
                node: "node-a".into(),
                ips: vec![
                    "192.0.2.200".parse().unwrap(),
                    "2001:db8::200".parse().unwrap(),
                ],
                interfaces: vec!["eth0".into(), "eth1".into()],
            };
            let message = answering.message("the first choice: for its addresses");
            assert_eq!(
                message,
                "node node-a answers for 192.0.2.200, 2001:db8::200 on eth0, eth1: the first \
                 choice: for its addresses"
            );
            assert_eq!(Answering::parse(&message), Some(answering));
            assert_eq!(
                Answering::parse("no live node may announce 192.0.2.200"),
                None
            );
            assert_eq!(
                Answering::parse("node a answers for nothing on eth0: x"),
                None
            );
        }
    }
}

/// The message of an `Allocated` condition that is true: the addresses and their pool. The
/// controller writes it; tools read it to show which pool a Service's addresses come from
/// (with overlapping pools, the addresses alone do not tell).
pub mod allocated {
    use std::net::IpAddr;

    /// `IP[, IP] from pool "POOL"`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct FromPool {
        pub ips: Vec<IpAddr>,
        pub pool: String,
    }

    impl FromPool {
        pub fn message(&self) -> String {
            let ips: Vec<String> = self.ips.iter().map(|ip| ip.to_string()).collect();
            format!("{} from pool {:?}", ips.join(", "), self.pool)
        }

        /// Reads a message [`Self::message`] wrote; `None` for any other text.
        pub fn parse(message: &str) -> Option<FromPool> {
            let (ips, pool) = message.split_once(" from pool ")?;
            Some(FromPool {
                ips: ips
                    .split(", ")
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?,
                pool: serde_json::from_str(pool).ok()?,
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_message_reads_back_as_written() {
            let from = FromPool {
                ips: vec!["192.0.2.9".parse().unwrap(), "2001:db8::9".parse().unwrap()],
                pool: "lan".into(),
            };
            assert_eq!(from.message(), "192.0.2.9, 2001:db8::9 from pool \"lan\"");
            assert_eq!(FromPool::parse(&from.message()), Some(from));
            assert_eq!(
                FromPool::parse("pool \"lan\" has no free IPv4 address"),
                None
            );
        }
    }
}
