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
        })
    }

    /// Whether the interface may answer when an L2Advertisement names no interfaces: not
    /// container or CNI plumbing, and not enslaved to a bridge or bond (its master answers).
    fn suitable_by_default(&self) -> bool {
        !SKIPPED_PREFIXES.iter().any(|p| self.name.starts_with(p))
            && !Path::new("/sys/class/net")
                .join(&self.name)
                .join("master")
                .exists()
    }
}

/// The interfaces to answer on: `names`, or with none named every suitable one. Interfaces
/// that are down are left out (a speaker whose link is down must stay silent).
pub fn select(names: &std::collections::BTreeSet<String>) -> Vec<Interface> {
    let candidates: Vec<String> = if names.is_empty() {
        fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect()
    } else {
        names.iter().cloned().collect()
    };
    let mut interfaces: Vec<Interface> = candidates
        .iter()
        .filter_map(|name| Interface::read(name))
        .filter(|i| i.up && (!names.is_empty() || i.suitable_by_default()))
        .collect();
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    interfaces
}
