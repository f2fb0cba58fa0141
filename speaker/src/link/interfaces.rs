//! The node's network interfaces, as `/sys/class/net` shows them.

use std::fs;
use std::path::Path;

use crate::packet::MacAddr;

/// Interfaces never worth answering on: virtual plumbing of containers, CNIs and proxies (the
/// same list MetalLB skips), and loopback.
const SKIPPED_PREFIXES: [&str; 14] = [
    "docker",
    "cbr",
    "dummy",
    "virbr",
    "lxcbr",
    "veth",
    "cali",
    "tunl",
    "flannel",
    "kube-ipvs",
    "cni",
    "nodelocaldns",
    "lxc",
    "lo",
];

const IFF_UP: u32 = 0x1;
const IFF_NOARP: u32 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: MacAddr,
    pub up: bool,
    /// Whether it may answer when an L2Advertisement names no interfaces: not container or
    /// CNI plumbing, and not enslaved to a bridge or bond (its master answers).
    pub suitable_by_default: bool,
}

impl Interface {
    /// Reads one interface; None when it is gone or has no Ethernet address.
    pub fn read(name: &str) -> Option<Interface> {
        let dir = Path::new("/sys/class/net").join(name);
        let read = |file: &str| {
            fs::read_to_string(dir.join(file))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let flags = u32::from_str_radix(read("flags")?.trim_start_matches("0x"), 16).ok()?;
        let mac: MacAddr = read("address")?.parse().ok()?;
        if flags & IFF_NOARP != 0 || mac.is_zero() {
            return None;
        }
        Some(Interface {
            name: name.to_owned(),
            index: read("ifindex")?.parse().ok()?,
            mac,
            up: flags & IFF_UP != 0 && read("carrier").as_deref() == Some("1"),
            suitable_by_default: !SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p))
                && !dir.join("master").exists(),
        })
    }
}

/// Every interface of the node that could answer ARP and NDP, read once: elections read this
/// snapshot, never `/sys` per Service.
pub fn scan() -> Vec<Interface> {
    let mut interfaces: Vec<Interface> = fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| Interface::read(&name))
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    interfaces
}

/// The interfaces of `snapshot` to answer on: `names`, or with none named every suitable one.
/// Interfaces that are down are left out (a speaker whose link is down must stay silent).
pub fn select<'a>(
    names: &std::collections::BTreeSet<String>,
    snapshot: &'a [Interface],
) -> Vec<&'a Interface> {
    snapshot
        .iter()
        .filter(|i| i.up)
        .filter(|i| {
            if names.is_empty() {
                i.suitable_by_default
            } else {
                names.contains(&i.name)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn interface(name: &str, up: bool, suitable: bool) -> Interface {
        Interface {
            name: name.into(),
            index: 1,
            mac: MacAddr::zero(),
            up,
            suitable_by_default: suitable,
        }
    }

    #[test]
    fn named_interfaces_or_every_suitable_one_and_never_one_that_is_down() {
        let snapshot = [
            interface("br0", true, true),
            interface("eth0", true, true),
            interface("eth1", false, true),
            interface("veth1", true, false),
        ];
        let names = |s: &[&Interface]| s.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&select(&BTreeSet::new(), &snapshot)), ["br0", "eth0"]);
        let wanted = BTreeSet::from(["eth1".to_string(), "veth1".to_string()]);
        assert_eq!(names(&select(&wanted, &snapshot)), ["veth1"]);
    }
}
