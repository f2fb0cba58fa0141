//! The node's network interfaces, as `/sys/class/net` shows them, read again when the kernel
//! says one changed.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use herald_core::election::Links;
use tokio::sync::watch;
use tracing::warn;

use crate::link::sockets::LinkEvents;
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

/// Link events that come this close together (an interface set up, its carrier, its master)
/// are read with a single scan.
const SETTLE: Duration = Duration::from_millis(10);

/// The node's interfaces, scanned once now and again after each burst of link events: the
/// snapshot every pass reads, never `/sys` per pass. Ends when the receiver is dropped.
pub fn watch() -> std::io::Result<watch::Receiver<Vec<Interface>>> {
    let events = LinkEvents::open()?;
    let (snapshot, receiver) = watch::channel(scan());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = snapshot.closed() => return,
                next = events.next() => if let Err(e) = next {
                    // Read again all the same, and not in a busy loop.
                    warn!(error = %e, "reading link events failed; reading the interfaces again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                },
            }
            tokio::time::sleep(SETTLE).await;
            let Ok(scanned) = tokio::task::spawn_blocking(scan).await else {
                continue;
            };
            snapshot.send_if_modified(|current| {
                let changed = *current != scanned;
                *current = scanned;
                changed
            });
        }
    });
    Ok(receiver)
}

/// The interfaces of `snapshot` to answer on: `names`, or with none named every suitable one.
/// Interfaces that are down are left out (a speaker whose link is down must stay silent).
pub fn select<'a>(names: &BTreeSet<String>, snapshot: &'a [Interface]) -> Vec<&'a Interface> {
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

/// What this node can answer on, as its peers need to know it to elect: the interfaces of
/// `snapshot` that are up and either suitable by default or `named` by an L2Advertisement.
/// Container plumbing nobody names is left out, so that a node with hundreds of Pods still
/// tells it in one datagram.
pub fn links(snapshot: &[Interface], named: &BTreeSet<String>) -> Links {
    let up = snapshot.iter().filter(|i| i.up);
    Links {
        up: up
            .clone()
            .filter(|i| i.suitable_by_default || named.contains(&i.name))
            .map(|i| i.name.clone())
            .collect(),
        suitable_up: up.clone().any(|i| i.suitable_by_default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn links_are_the_interfaces_up_that_are_suitable_or_named() {
        let snapshot = [
            interface("eth0", false, true),
            interface("eth1", true, true),
            interface("veth1", true, false),
            interface("veth2", true, false),
        ];
        let named = BTreeSet::from(["veth2".to_string(), "eth0".to_string()]);
        let links = links(&snapshot, &named);
        assert_eq!(
            links.up,
            BTreeSet::from(["eth1".to_string(), "veth2".to_string()])
        );
        assert!(links.suitable_up);
        let plumbing_only = [interface("veth1", true, false)];
        assert!(!super::links(&plumbing_only, &BTreeSet::new()).suitable_up);
    }
}
