//! Which of the node's interfaces share a segment, as the responders heard it: a frame from one
//! interface's MAC arriving on another. Two interfaces on one segment must not both answer for
//! an address (clients would see two MACs and switches flap), so each address is answered on one
//! interface per segment.

use std::collections::BTreeSet;

use super::interfaces::Interface;
use crate::packet::MacAddr;

/// Pairs of interfaces heard on one another, by name and MAC when heard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments {
    pairs: BTreeSet<[(String, MacAddr); 2]>,
}

impl Segments {
    /// `interface` heard `other_mac`. Records the pair when `snapshot` holds both, and exactly
    /// one interface with that MAC (VLAN interfaces share their parent's, and are other
    /// segments); returns the other interface's name when the pair is new.
    pub fn record(
        &mut self,
        interface: &str,
        other_mac: MacAddr,
        snapshot: &[Interface],
    ) -> Option<String> {
        let this = snapshot.iter().find(|i| i.name == interface)?;
        let mut with_mac = snapshot.iter().filter(|i| i.mac == other_mac);
        let other = with_mac.next()?;
        if with_mac.next().is_some() || other.name == this.name {
            return None;
        }
        let mut pair = [
            (this.name.clone(), this.mac),
            (other.name.clone(), other.mac),
        ];
        pair.sort();
        self.pairs.insert(pair).then(|| other.name.clone())
    }

    /// Forgets the pairs of interfaces that are gone from `snapshot` or changed MAC: what was
    /// heard may no longer hold.
    pub fn retain_present(&mut self, snapshot: &[Interface]) {
        self.pairs.retain(|pair| {
            pair.iter()
                .all(|(name, mac)| snapshot.iter().any(|i| &i.name == name && i.mac == *mac))
        });
    }

    /// Of `selected`, the interfaces to answer on: on each segment the first by name.
    pub fn one_per_segment<'a>(&self, mut selected: Vec<&'a Interface>) -> Vec<&'a Interface> {
        selected.sort_by(|a, b| a.name.cmp(&b.name));
        let mut kept: Vec<&Interface> = Vec::new();
        for interface in selected {
            if !kept
                .iter()
                .any(|k| self.same_segment(&k.name, &interface.name))
            {
                kept.push(interface);
            }
        }
        kept
    }

    /// Whether `a` and `b` were heard on one another, directly or through others.
    fn same_segment(&self, a: &str, b: &str) -> bool {
        let mut reached = BTreeSet::from([a]);
        let mut grew = true;
        while grew {
            grew = false;
            for [(x, _), (y, _)] in &self.pairs {
                let (x, y) = (x.as_str(), y.as_str());
                if reached.contains(x) != reached.contains(y) {
                    reached.insert(x);
                    reached.insert(y);
                    grew = true;
                }
            }
        }
        reached.contains(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, last: u8) -> Interface {
        Interface {
            name: name.into(),
            index: u32::from(last),
            mac: MacAddr(0x02, 0, 0, 0, 0, last),
            up: true,
            suitable_by_default: true,
        }
    }

    fn names(interfaces: &[&Interface]) -> Vec<String> {
        interfaces.iter().map(|i| i.name.clone()).collect()
    }

    #[test]
    fn one_interface_per_segment_the_first_by_name() {
        let snapshot = [
            interface("eth0", 1),
            interface("eth1", 2),
            interface("eth2", 3),
            interface("eth3", 4),
        ];
        let mut segments = Segments::default();
        assert_eq!(
            segments.record("eth1", snapshot[0].mac, &snapshot),
            Some("eth0".into())
        );
        assert_eq!(
            segments.record("eth0", snapshot[1].mac, &snapshot),
            None,
            "heard both ways, one pair"
        );
        // eth3 heard eth1: on the same segment as eth0 too.
        segments.record("eth3", snapshot[1].mac, &snapshot);
        let all: Vec<&Interface> = snapshot.iter().rev().collect();
        assert_eq!(names(&segments.one_per_segment(all)), ["eth0", "eth2"]);
        // With eth0 not selected (down, or not named), eth1 answers for the segment.
        let without_eth0: Vec<&Interface> = snapshot[1..].iter().collect();
        assert_eq!(
            names(&segments.one_per_segment(without_eth0)),
            ["eth1", "eth2"]
        );
    }

    #[test]
    fn an_interface_that_goes_or_changes_mac_is_forgotten() {
        let mut snapshot = vec![interface("eth0", 1), interface("eth1", 2)];
        let mut segments = Segments::default();
        segments.record("eth1", snapshot[0].mac, &snapshot);
        segments.retain_present(&snapshot);
        assert_eq!(
            names(&segments.one_per_segment(snapshot.iter().collect())),
            ["eth0"]
        );
        snapshot[1].mac = MacAddr(0x02, 0, 0, 0, 0, 9);
        segments.retain_present(&snapshot);
        assert_eq!(
            names(&segments.one_per_segment(snapshot.iter().collect())),
            ["eth0", "eth1"]
        );
    }

    #[test]
    fn a_mac_two_interfaces_share_tells_nothing() {
        let mut vlan = interface("eth0.100", 1);
        vlan.index = 100;
        let snapshot = [interface("eth0", 1), vlan, interface("eth1", 2)];
        let mut segments = Segments::default();
        assert_eq!(segments.record("eth1", snapshot[0].mac, &snapshot), None);
        assert_eq!(segments, Segments::default());
    }
}
