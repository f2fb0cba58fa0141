//! The test LAN itself: hosts on it reach each other and see, with the kernel's own clients,
//! which MACs answer for an address; nothing it made outlives it.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use herald_tests::lan::{Lan, NeighborAdvert};

const WAIT: Duration = Duration::from_secs(1);

/// What the kernel answers for one of its own unicast addresses.
fn kernel_advert(mac: &str) -> NeighborAdvert {
    NeighborAdvert {
        mac: mac.to_string(),
        solicited: true,
        override_: true,
    }
}

/// The network namespaces whose names start with `prefix`.
fn namespaces(prefix: &str) -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("running ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// The namespace name prefix of this process's LAN `name`.
fn prefix(name: &str) -> String {
    format!("hl-{}-{name}-", std::process::id())
}

#[test]
fn two_hosts_reach_each_other() {
    let mut lan = Lan::new("reach");
    let a = lan.add_host("a", 1);
    let b = lan.add_host("b", 2);
    assert_eq!(lan.host("b").mac, "02:00:00:00:00:02");

    a.run("ping", &["-c1", "-W2", &b.ipv4.to_string()]);
    a.run("ping", &["-c1", "-W2", &b.ipv6.to_string()]);
    assert_eq!(a.arping(b.ipv4, 1, WAIT), [b.mac.as_str()]);
    assert_eq!(a.ndisc(b.ipv6, WAIT), [kernel_advert(&b.mac)]);

    // The pings left neighbour entries behind.
    for ip in [b.ipv4.into(), b.ipv6.into()] {
        let entry = a.neighbour(ip).expect("a neighbour entry after ping");
        assert_eq!(
            entry.mac.as_deref(),
            Some(b.mac.as_str()),
            "{ip}: {entry:?}"
        );
    }
    a.flush_neighbours();
    assert_eq!(a.neighbour(b.ipv4.into()), None);
    assert_eq!(a.neighbour(b.ipv6.into()), None);
}

#[test]
fn hosts_answer_for_added_addresses() {
    let mut lan = Lan::new("added");
    let a = lan.add_host("a", 1);
    let b = lan.add_host("b", 10);
    let c = lan.add_host("c", 200);
    assert_eq!(b.ipv6.to_string(), "2001:db8::10");
    assert_eq!(c.mac, "02:00:00:00:00:c8");

    b.add_address("192.0.2.100/24");
    b.add_address("2001:db8::100/64");
    assert_eq!(
        a.arping("192.0.2.100".parse().unwrap(), 1, WAIT),
        [b.mac.as_str()]
    );
    assert_eq!(
        a.ndisc("2001:db8::100".parse().unwrap(), WAIT),
        [kernel_advert(&b.mac)]
    );

    // A second host squatting the same addresses: both answer.
    c.add_address("192.0.2.100/24");
    c.add_address("2001:db8::100/64");
    let both = BTreeSet::from([b.mac.clone(), c.mac.clone()]);
    let arp: BTreeSet<String> = a
        .arping("192.0.2.100".parse().unwrap(), 2, WAIT)
        .into_iter()
        .collect();
    assert_eq!(arp, both);
    let adverts = a.ndisc("2001:db8::100".parse().unwrap(), WAIT);
    assert_eq!(adverts.len(), 2, "{adverts:?}");
    assert!(
        adverts.iter().all(|a| a.solicited && a.override_),
        "{adverts:?}"
    );
    let nd: BTreeSet<String> = adverts.into_iter().map(|a| a.mac).collect();
    assert_eq!(nd, both);
}

#[test]
fn a_host_whose_link_is_down_does_not_answer() {
    let mut lan = Lan::new("link");
    let a = lan.add_host("a", 1);
    let b = lan.add_host("b", 2);

    b.link_down();
    assert_eq!(a.arping(b.ipv4, 2, WAIT), Vec::<String>::new());
    assert_eq!(a.ndisc(b.ipv6, WAIT), []);

    b.link_up();
    assert_eq!(a.arping(b.ipv4, 1, WAIT), [b.mac.as_str()]);
    assert_eq!(a.ndisc(b.ipv6, WAIT), [kernel_advert(&b.mac)]);
    a.run("ping", &["-c1", "-W2", &b.ipv6.to_string()]);
}

#[test]
fn a_dropped_lan_leaves_nothing() {
    let mut lan = Lan::new("drop");
    let a = lan.add_host("a", 1);
    lan.add_host("b", 2);
    assert_eq!(namespaces(&prefix("drop")).len(), 3);
    // A process a test left running in a host is killed with it.
    let mut sleeper = a.command("sleep").arg("60").spawn().expect("sleep");
    drop(lan);
    assert_eq!(namespaces(&prefix("drop")), Vec::<String>::new());
    let status = sleeper.wait().expect("waiting for sleep");
    assert_eq!(status.code(), None, "sleep was killed: {status}");

    let failed = std::panic::catch_unwind(|| {
        let mut lan = Lan::new("panic");
        lan.add_host("a", 1);
        panic!("a failing test");
    });
    assert!(failed.is_err());
    assert_eq!(namespaces(&prefix("panic")), Vec::<String>::new());
}

#[test]
fn leftovers_of_dead_processes_are_removed() {
    let mut gone = Command::new("true").spawn().expect("true");
    gone.wait().expect("waiting for true");
    let leftover = format!("hl-{}-crashed-sw", gone.id());
    // Another test process's Lan::new may sweep it away while `ip netns add` is still making it.
    let added = (0..10).any(|_| {
        let output = Command::new("ip")
            .args(["netns", "add", &leftover])
            .output()
            .expect("ip netns add");
        output.status.success()
    });
    assert!(added, "could not add network namespace {leftover}");

    let _lan = Lan::new("sweeper");
    assert_eq!(namespaces(&leftover), Vec::<String>::new());
    assert_eq!(namespaces(&prefix("sweeper")).len(), 1);
}
