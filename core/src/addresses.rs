//! Pool addresses: parsing the entries of `IPAddressPool.spec.addresses`, counting them, and
//! finding the lowest free one.
//!
//! An entry is a CIDR (`192.0.2.0/24`, host bits must be zero), an inclusive range of one
//! family (`192.0.2.10-192.0.2.20`, spaces around the dash allowed) or a single address. The
//! CRD's CEL rules accept exactly the entries that [`AddressRange::parse`] accepts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// The two address families, in the order Herald reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// Why an address entry was refused; the message names the entry and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "address entry {entry:?} is not a CIDR (192.0.2.0/24), a range (192.0.2.10-192.0.2.20) or a single address"
    )]
    Malformed { entry: String },
    #[error("address entry {entry:?} has host bits set: write the network address ({network})")]
    HostBitsSet { entry: String, network: String },
    #[error("address entry {entry:?} mixes IPv4 and IPv6: a range has both ends in one family")]
    MixedFamilies { entry: String },
    #[error("address entry {entry:?} is reversed: its first address is above its last")]
    Reversed { entry: String },
}

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    first: IpAddr,
    last: IpAddr,
}

impl AddressRange {
    /// Parses one entry of `spec.addresses`.
    pub fn parse(entry: &str) -> Result<Self, AddressError> {
        let malformed = || AddressError::Malformed {
            entry: entry.to_owned(),
        };
        if let Some((first, last)) = entry.split_once('-') {
            let first = IpAddr::from_str(first.trim()).map_err(|_| malformed())?;
            let last = IpAddr::from_str(last.trim()).map_err(|_| malformed())?;
            if IpFamily::of(first) != IpFamily::of(last) {
                return Err(AddressError::MixedFamilies {
                    entry: entry.to_owned(),
                });
            }
            if first > last {
                return Err(AddressError::Reversed {
                    entry: entry.to_owned(),
                });
            }
            return Ok(AddressRange { first, last });
        }
        if entry.contains('/') {
            let net = IpNet::from_str(entry).map_err(|_| malformed())?;
            if net.trunc() != net {
                return Err(AddressError::HostBitsSet {
                    entry: entry.to_owned(),
                    network: net.trunc().to_string(),
                });
            }
            return Ok(AddressRange {
                first: net.network(),
                last: net.broadcast(),
            });
        }
        let ip = IpAddr::from_str(entry).map_err(|_| malformed())?;
        Ok(AddressRange::single(ip))
    }

    pub fn single(ip: IpAddr) -> Self {
        AddressRange {
            first: ip,
            last: ip,
        }
    }

    pub fn first(&self) -> IpAddr {
        self.first
    }

    pub fn last(&self) -> IpAddr {
        self.last
    }

    pub fn family(&self) -> IpFamily {
        IpFamily::of(self.first)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        IpFamily::of(ip) == self.family() && self.first <= ip && ip <= self.last
    }

    /// The addresses both ranges hold, if any.
    pub fn intersection(&self, other: &AddressRange) -> Option<AddressRange> {
        if self.family() != other.family() {
            return None;
        }
        let first = self.first.max(other.first);
        let last = self.last.min(other.last);
        (first <= last).then_some(AddressRange { first, last })
    }

    /// How many addresses the range holds, saturating at `u128::MAX` (only `::/0` saturates).
    /// With `avoid_buggy_ips`, IPv4 addresses ending in `.0` or `.255` do not count.
    pub fn count(&self, avoid_buggy_ips: bool) -> u128 {
        let (first, last) = (to_bits(self.first), to_bits(self.last));
        let total = (last - first).saturating_add(1);
        if !(avoid_buggy_ips && self.family() == IpFamily::V4) {
            return total;
        }
        // Addresses in [first, last] whose last octet is `octet`.
        let ending_in = |octet: u128| {
            let below = |n: u128| (n + 255 - octet) / 256; // how many x < n have x % 256 == octet
            below(last + 1) - below(first)
        };
        total - ending_in(0) - ending_in(255)
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// Whether Herald must never hand out this address when a pool sets `avoidBuggyIPs`: IPv4
/// addresses ending in `.0` or `.255`, which some old clients treat as broadcast.
pub fn is_buggy(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255))
}

/// The addresses of one pool: its ranges in ascending order, and its `avoidBuggyIPs` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolAddresses {
    ranges: Vec<AddressRange>,
    avoid_buggy_ips: bool,
}

impl PoolAddresses {
    /// Parses every entry; all the entries' errors are returned, not just the first.
    pub fn parse<S: AsRef<str>>(
        entries: &[S],
        avoid_buggy_ips: bool,
    ) -> Result<Self, Vec<AddressError>> {
        let (ranges, errors): (Vec<_>, Vec<_>) = entries
            .iter()
            .map(|entry| AddressRange::parse(entry.as_ref()))
            .partition(Result::is_ok);
        if !errors.is_empty() {
            return Err(errors.into_iter().filter_map(Result::err).collect());
        }
        let mut ranges: Vec<AddressRange> = ranges.into_iter().filter_map(Result::ok).collect();
        ranges.sort();
        Ok(PoolAddresses {
            ranges,
            avoid_buggy_ips,
        })
    }

    pub fn ranges(&self) -> &[AddressRange] {
        &self.ranges
    }

    pub fn avoid_buggy_ips(&self) -> bool {
        self.avoid_buggy_ips
    }

    pub fn has_family(&self, family: IpFamily) -> bool {
        self.ranges.iter().any(|r| r.family() == family)
    }

    /// Whether the pool may hand out `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        !(self.avoid_buggy_ips && is_buggy(ip)) && self.ranges.iter().any(|r| r.contains(ip))
    }

    /// How many addresses of `family` the pool may hand out; entries that overlap each other
    /// count once.
    pub fn count(&self, family: IpFamily) -> u128 {
        let mut total: u128 = 0;
        let mut covered_up_to: Option<u128> = None;
        for range in self.ranges.iter().filter(|r| r.family() == family) {
            let first = to_bits(range.first);
            let first = match covered_up_to {
                Some(end) if end >= to_bits(range.last) => continue,
                Some(end) if end >= first => end + 1,
                _ => first,
            };
            let rest = AddressRange {
                first: from_bits(family, first),
                last: range.last,
            };
            total = total.saturating_add(rest.count(self.avoid_buggy_ips));
            covered_up_to = Some(to_bits(range.last));
        }
        total
    }

    /// The lowest address of `family` that the pool may hand out and that is not a key of
    /// `used`.
    pub fn lowest_free<T>(&self, family: IpFamily, used: &BTreeMap<IpAddr, T>) -> Option<IpAddr> {
        self.ranges
            .iter()
            .filter(|r| r.family() == family)
            .find_map(|range| self.lowest_free_in(range, used))
    }

    fn lowest_free_in<T>(
        &self,
        range: &AddressRange,
        used: &BTreeMap<IpAddr, T>,
    ) -> Option<IpAddr> {
        let last = to_bits(range.last);
        let mut candidate = to_bits(range.first);
        // Walk the used addresses from the start of the range: the first gap is the answer.
        let mut taken = used
            .range(range.first..=range.last)
            .map(|(ip, _)| to_bits(*ip));
        let mut next_taken = taken.next();
        loop {
            let ip = from_bits(range.family(), candidate);
            let buggy = self.avoid_buggy_ips && is_buggy(ip);
            while next_taken.is_some_and(|t| t < candidate) {
                next_taken = taken.next();
            }
            if !buggy && next_taken != Some(candidate) {
                return Some(ip);
            }
            if candidate == last {
                return None;
            }
            candidate += 1;
        }
    }
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(family: IpFamily, bits: u128) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(bits as u32)),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn used(ips: &[IpAddr]) -> BTreeMap<IpAddr, ()> {
        ips.iter().map(|ip| (*ip, ())).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(entries: &[&str], avoid_buggy_ips: bool) -> PoolAddresses {
        PoolAddresses::parse(entries, avoid_buggy_ips).unwrap()
    }

    #[test]
    fn parses_each_entry_form() {
        let cidr = AddressRange::parse("192.0.2.0/30").unwrap();
        assert_eq!(
            (cidr.first(), cidr.last()),
            (ip("192.0.2.0"), ip("192.0.2.3"))
        );
        let range = AddressRange::parse("192.0.2.10 - 192.0.2.20").unwrap();
        assert_eq!(
            (range.first(), range.last()),
            (ip("192.0.2.10"), ip("192.0.2.20"))
        );
        let single = AddressRange::parse("2001:db8::7").unwrap();
        assert_eq!(
            (single.first(), single.last()),
            (ip("2001:db8::7"), ip("2001:db8::7"))
        );
        let v6 = AddressRange::parse("2001:db8:0:1::/120").unwrap();
        assert_eq!(v6.last(), ip("2001:db8:0:1::ff"));
        assert_eq!(AddressRange::parse("192.0.2.1/32").unwrap().count(false), 1);
    }

    #[test]
    fn refuses_bad_entries_naming_them() {
        let err = AddressRange::parse("192.0.2.300").unwrap_err();
        assert!(matches!(err, AddressError::Malformed { .. }));
        assert!(err.to_string().contains("\"192.0.2.300\""), "{err}");
        for bad in [
            "",
            "lan",
            "192.0.2.0/33",
            "192.0.2.1-",
            "192.0.2.01",
            "2001:db8::/129",
        ] {
            assert!(
                matches!(
                    AddressRange::parse(bad),
                    Err(AddressError::Malformed { .. })
                ),
                "{bad:?} should be malformed"
            );
        }
        assert_eq!(
            AddressRange::parse("192.0.2.1/24").unwrap_err().to_string(),
            "address entry \"192.0.2.1/24\" has host bits set: write the network address (192.0.2.0/24)"
        );
        assert!(matches!(
            AddressRange::parse("192.0.2.1-2001:db8::1"),
            Err(AddressError::MixedFamilies { .. })
        ));
        assert!(matches!(
            AddressRange::parse("192.0.2.20-192.0.2.10"),
            Err(AddressError::Reversed { .. })
        ));
        assert!(matches!(
            AddressRange::parse("2001:db8::10-2001:db8::f"),
            Err(AddressError::Reversed { .. })
        ));
    }

    #[test]
    fn pool_reports_every_bad_entry() {
        let errors =
            PoolAddresses::parse(&["192.0.2.0/24", "x", "192.0.2.9-192.0.2.1"], false).unwrap_err();
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn counts_per_family_without_double_counting_overlaps() {
        let p = pool(
            &[
                "192.0.2.0/24",
                "192.0.2.100-192.0.2.110",
                "192.0.2.255",
                "2001:db8::/120",
            ],
            false,
        );
        assert_eq!(p.count(IpFamily::V4), 256);
        assert_eq!(p.count(IpFamily::V6), 256);
        let partial = pool(&["192.0.2.10-192.0.2.20", "192.0.2.15-192.0.2.30"], false);
        assert_eq!(partial.count(IpFamily::V4), 21);
        assert_eq!(pool(&["::/0"], false).count(IpFamily::V6), u128::MAX);
    }

    #[test]
    fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
        let p = pool(&["192.0.2.0/23"], true);
        assert_eq!(p.count(IpFamily::V4), 512 - 4);
        assert!(!p.contains(ip("192.0.2.0")));
        assert!(!p.contains(ip("192.0.2.255")));
        assert!(!p.contains(ip("192.0.3.0")));
        assert!(p.contains(ip("192.0.2.1")));
        assert_eq!(
            p.lowest_free(IpFamily::V4, &used(&[])),
            Some(ip("192.0.2.1"))
        );
        let taken = used(&[ip("192.0.2.254")]);
        assert_eq!(
            pool(&["192.0.2.254-192.0.3.1"], true).lowest_free(IpFamily::V4, &taken),
            Some(ip("192.0.3.1"))
        );
        // IPv6 has no such addresses to avoid.
        assert_eq!(pool(&["2001:db8::/126"], true).count(IpFamily::V6), 4);
    }

    #[test]
    fn lowest_free_is_the_lowest_unused_address_across_entries() {
        let p = pool(&["192.0.2.20-192.0.2.21", "192.0.2.10-192.0.2.11"], false);
        let mut taken = used(&[]);
        for expected in ["192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.21"] {
            let got = p.lowest_free(IpFamily::V4, &taken).unwrap();
            assert_eq!(got, ip(expected));
            taken.insert(got, ());
        }
        assert_eq!(p.lowest_free(IpFamily::V4, &taken), None);
        taken.remove(&ip("192.0.2.11"));
        assert_eq!(p.lowest_free(IpFamily::V4, &taken), Some(ip("192.0.2.11")));
        assert_eq!(p.lowest_free(IpFamily::V6, &used(&[])), None);
    }

    #[test]
    fn ranges_intersect_only_within_a_family() {
        let a = AddressRange::parse("192.0.2.0/28").unwrap();
        let b = AddressRange::parse("192.0.2.10-192.0.2.40").unwrap();
        assert_eq!(
            a.intersection(&b).unwrap().to_string(),
            "192.0.2.10-192.0.2.15"
        );
        let v6 = AddressRange::parse("2001:db8::/64").unwrap();
        assert_eq!(a.intersection(&v6), None);
    }

    proptest! {
        #[test]
        fn count_matches_enumeration(start in 0u32..2048, len in 0u32..1024, avoid in any::<bool>()) {
            let first = Ipv4Addr::from(0xC000_0200u32 + start);
            let last = Ipv4Addr::from(0xC000_0200u32 + start + len);
            let range = AddressRange::parse(&format!("{first}-{last}")).unwrap();
            let enumerated = (u32::from(first)..=u32::from(last))
                .filter(|n| !(avoid && is_buggy(IpAddr::V4(Ipv4Addr::from(*n)))))
                .count() as u128;
            prop_assert_eq!(range.count(avoid), enumerated);
        }

        #[test]
        fn lowest_free_never_returns_a_used_or_foreign_address(
            used in proptest::collection::btree_set(0u32..64, 0..64),
            avoid in any::<bool>(),
        ) {
            let p = pool(&["192.0.2.224/27", "192.0.2.250-192.0.3.5"], avoid);
            let used: BTreeSet<IpAddr> =
                used.iter().map(|n| IpAddr::V4(Ipv4Addr::from(0xC000_02E0u32 + n))).collect();
            let taken: BTreeMap<IpAddr, ()> = used.iter().map(|ip| (*ip, ())).collect();
            match p.lowest_free(IpFamily::V4, &taken) {
                Some(free) => {
                    prop_assert!(p.contains(free) && !used.contains(&free));
                    let lower_free = (0xC000_02E0u32..u32::from(match free { IpAddr::V4(v) => v, _ => unreachable!() }))
                        .map(|n| IpAddr::V4(Ipv4Addr::from(n)))
                        .any(|c| p.contains(c) && !used.contains(&c));
                    prop_assert!(!lower_free, "a lower free address exists below {}", free);
                }
                None => prop_assert!((0xC000_02E0u32..=0xC000_0305)
                    .map(|n| IpAddr::V4(Ipv4Addr::from(n)))
                    .all(|c| !p.contains(c) || used.contains(&c))),
            }
        }
    }
}
