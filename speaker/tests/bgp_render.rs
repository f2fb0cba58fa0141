//! The `frr.conf` the speaker renders, against golden files in `tests/golden/`, one per case,
//! that together use every field of BGPPeer, BGPAdvertisement and BFDProfile. Every golden
//! file must also pass FRR's own parser (`vtysh --dryrun`, Debian's `frr` package, which
//! `scripts/install-deps` installs).
//!
//! After a deliberate change of the output, regenerate the files and review their diff:
//! `HERALD_UPDATE_GOLDEN=1 cargo test -p herald-speaker --test bgp_render`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use herald_core::addresses::PoolAddresses;
use herald_core::allocation::ServiceKey;
use herald_core::bgp::{
    Advertisement, BfdProfile, Community, Inputs, NodeBgp, Peer, SecretKeyRef, decide,
};
use herald_core::election::{Node, Pool, Service};
use herald_core::selector::Labels;
use herald_speaker::bgp::render::{Passwords, render};

const NODE: &str = "node-a";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `rendered` with `tests/golden/<name>.conf`, or writes it there when
/// `HERALD_UPDATE_GOLDEN` is set.
fn assert_golden(name: &str, rendered: &str) {
    let path = golden_dir().join(format!("{name}.conf"));
    if std::env::var_os("HERALD_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run HERALD_UPDATE_GOLDEN=1 cargo test -p herald-speaker --test bgp_render",
            path.display()
        )
    });
    assert!(
        golden == rendered,
        "{name}: the rendered frr.conf differs from {}; if the change is meant, regenerate with \
         HERALD_UPDATE_GOLDEN=1 and review the diff.\n--- rendered ---\n{rendered}",
        path.display()
    );
}

fn pool(name: &str, entries: &[&str]) -> Pool {
    Pool {
        name: name.into(),
        labels: Labels::new(),
        addresses: PoolAddresses::parse(entries, false).unwrap(),
    }
}

fn service(name: &str, ips: &[&str]) -> Service {
    Service {
        key: ServiceKey::new("demo", name),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        local: false,
        ready_nodes: BTreeSet::new(),
        has_ready_endpoint: true,
    }
}

fn peer(name: &str, address: &str) -> Peer {
    Peer::new(name, address.parse().unwrap(), 64513, 64512)
}

/// One node, pool `lan`, the given peers and advertisements, and two dual-stack Services.
fn inputs(peers: Vec<Peer>, advertisements: Vec<Advertisement>) -> Inputs {
    Inputs {
        nodes: vec![Node {
            name: NODE.into(),
            labels: Labels::new(),
            network_unavailable: false,
        }],
        alive: BTreeSet::from([NODE.to_string()]),
        pools: vec![pool("lan", &["192.0.2.0/24", "2001:db8::/64"])],
        peers,
        advertisements,
        services: vec![
            service("web", &["192.0.2.10", "2001:db8::10"]),
            service("api", &["192.0.2.20", "2001:db8::20"]),
        ],
    }
}

fn every_pool() -> Advertisement {
    Advertisement {
        name: "all".into(),
        ..Advertisement::default()
    }
}

fn node_bgp(inputs: &Inputs) -> NodeBgp {
    let decision = decide(inputs);
    assert!(decision.problems.is_empty(), "{:?}", decision.problems);
    decision.nodes[NODE].clone()
}

fn secret(name: &str) -> SecretKeyRef {
    SecretKeyRef {
        namespace: "herald-system".into(),
        name: name.into(),
        key: "password".into(),
    }
}

/// A profile with every field away from FRR's defaults.
fn fast_profile() -> BfdProfile {
    BfdProfile {
        name: "fast".into(),
        receive_interval: Some(100),
        transmit_interval: Some(120),
        detect_multiplier: Some(4),
        echo_interval: Some(40),
        echo_mode: true,
        passive_mode: true,
        minimum_ttl: Some(250),
    }
}

/// Every BGPPeer field: an IPv4 peer with each one set, and an IPv6 peer with the rest of the
/// cases (default port written out, only a hold time, a profile at FRR's defaults).
fn every_peer_field() -> (NodeBgp, Passwords, Vec<BfdProfile>) {
    let mut tor = peer("tor", "198.51.100.1");
    tor.port = Some(1179);
    tor.source_address = Some("192.0.2.11".parse().unwrap());
    tor.router_id = Some("192.0.2.11".parse().unwrap());
    tor.hold_time = Some(9);
    tor.keepalive_time = Some(3);
    tor.connect_time = Some(5);
    tor.ebgp_multihop = true;
    tor.password = Some(secret("tor-password"));
    tor.bfd_profile = Some("fast".into());
    tor.graceful_restart = true;
    let mut tor6 = peer("tor6", "2001:db8:1::1");
    tor6.asn = 64512;
    tor6.port = Some(179);
    tor6.hold_time = Some(30);
    tor6.bfd_profile = Some("defaults".into());
    tor6.source_address = Some("2001:db8::11".parse().unwrap());
    let profiles = vec![
        fast_profile(),
        BfdProfile {
            name: "defaults".into(),
            receive_interval: Some(300),
            transmit_interval: Some(300),
            detect_multiplier: Some(3),
            echo_interval: Some(50),
            minimum_ttl: Some(254),
            ..BfdProfile::default()
        },
        BfdProfile {
            name: "unused".into(),
            ..fast_profile()
        },
    ];
    let passwords = Passwords::from([("tor".to_string(), "s3cr#t!x".to_string())]);
    (
        node_bgp(&inputs(vec![tor6, tor], vec![every_pool()])),
        passwords,
        profiles,
    )
}

/// Every BGPAdvertisement field: pools by name and by selector, peers, node selectors,
/// aggregation in both families, local preference and both kinds of community.
fn every_advertisement_field() -> NodeBgp {
    let mut world = inputs(
        vec![
            peer("tor", "198.51.100.1"),
            peer("edge", "198.51.100.2"),
            peer("tor6", "2001:db8:1::1"),
        ],
        Vec::new(),
    );
    world.nodes[0]
        .labels
        .insert("rack".to_string(), "a".to_string());
    world.pools.push(Pool {
        labels: Labels::from([("zone".to_string(), "dmz".to_string())]),
        ..pool("dmz", &["203.0.113.0/24", "2001:db8:2::/48"])
    });
    world
        .services
        .push(service("public", &["203.0.113.7", "2001:db8:2::7"]));
    let rack_a = herald_core::selector::LabelSelector {
        match_labels: Labels::from([("rack".to_string(), "a".to_string())]),
        ..Default::default()
    };
    world.advertisements = vec![
        Advertisement {
            name: "lan".into(),
            pools: BTreeSet::from(["lan".to_string()]),
            node_selectors: vec![rack_a],
            ..Advertisement::default()
        },
        Advertisement {
            name: "lan-preferred-to-tor".into(),
            pools: BTreeSet::from(["lan".to_string()]),
            peers: BTreeSet::from(["tor".to_string(), "tor6".to_string()]),
            local_pref: Some(200),
            communities: BTreeSet::from([
                Community::Standard(65535, 65282),
                Community::Large(64512, 1, 2),
            ]),
            ..Advertisement::default()
        },
        Advertisement {
            name: "dmz-aggregated-to-edge".into(),
            pool_selectors: vec![herald_core::selector::LabelSelector {
                match_labels: Labels::from([("zone".to_string(), "dmz".to_string())]),
                ..Default::default()
            }],
            peers: BTreeSet::from(["edge".to_string(), "tor6".to_string()]),
            aggregation_length: 24,
            aggregation_length_v6: 64,
            communities: BTreeSet::from([Community::Standard(64512, 300)]),
            ..Advertisement::default()
        },
    ];
    node_bgp(&world)
}

#[test]
fn a_node_without_peers_runs_no_bgp() {
    assert_golden("no-peers", &render(NODE, None, &Passwords::new(), &[]));
}

#[test]
fn one_peer_with_defaults() {
    let bgp = node_bgp(&inputs(
        vec![peer("tor", "198.51.100.1")],
        vec![every_pool()],
    ));
    assert_golden(
        "one-peer",
        &render(NODE, Some(&bgp), &Passwords::new(), &[]),
    );
}

#[test]
fn every_peer_and_bfd_profile_field_is_written() {
    let (bgp, passwords, profiles) = every_peer_field();
    assert_golden(
        "every-peer-field",
        &render(NODE, Some(&bgp), &passwords, &profiles),
    );
}

#[test]
fn every_advertisement_field_and_attributes() {
    let bgp = every_advertisement_field();
    assert_golden(
        "every-advertisement-field",
        &render(NODE, Some(&bgp), &Passwords::new(), &[]),
    );
}

#[test]
fn peers_with_nothing_to_advertise_keep_their_sessions_and_deny_everything() {
    let mut world = inputs(
        vec![peer("tor", "198.51.100.1"), peer("tor6", "2001:db8:1::1")],
        vec![every_pool()],
    );
    world.services.clear();
    assert_golden(
        "nothing-to-advertise",
        &render(NODE, Some(&node_bgp(&world)), &Passwords::new(), &[]),
    );
}

#[test]
fn peers_without_a_usable_password_are_left_out_and_a_missing_profile_turns_bfd_off() {
    let mut missing = peer("missing-secret", "198.51.100.1");
    missing.password = Some(secret("absent"));
    let mut spaced = peer("spaced-password", "198.51.100.2");
    spaced.password = Some(secret("spaced"));
    let mut no_profile = peer("no-profile", "198.51.100.3");
    no_profile.bfd_profile = Some("absent".into());
    let bgp = node_bgp(&inputs(
        vec![missing, spaced, no_profile],
        vec![every_pool()],
    ));
    let passwords = Passwords::from([("spaced-password".to_string(), "two words".to_string())]);
    let rendered = render(NODE, Some(&bgp), &passwords, &[fast_profile()]);
    assert!(!rendered.contains("two words"), "a password leaked");
    assert_golden("left-out", &rendered);
}

/// What a reload must not see: a Service coming or going changes prefix-list and network
/// lines only, never a neighbor, a route-map or the instance, so no session is reset.
#[test]
fn adding_and_removing_a_service_changes_only_prefix_lists_and_networks() {
    let (bgp, passwords, profiles) = every_peer_field();
    let before = render(NODE, Some(&bgp), &passwords, &profiles);
    let mut world = inputs(
        bgp.sessions.iter().map(|s| s.peer.clone()).collect(),
        vec![every_pool()],
    );
    world
        .services
        .push(service("new", &["192.0.2.15", "2001:db8::15"]));
    world.services.retain(|s| s.key.name != "api");
    let after = render(NODE, Some(&node_bgp(&world)), &passwords, &profiles);
    let lines = |text: &str| -> BTreeSet<String> { text.lines().map(str::to_owned).collect() };
    let (before_lines, after_lines) = (lines(&before), lines(&after));
    let changed: Vec<&String> = before_lines.symmetric_difference(&after_lines).collect();
    assert!(!changed.is_empty());
    for line in changed {
        assert!(
            line.starts_with("ip prefix-list herald-")
                || line.starts_with("ipv6 prefix-list herald-")
                || line.starts_with("  network "),
            "{line:?} changed"
        );
    }
}

#[test]
fn the_output_does_not_depend_on_the_order_of_the_inputs() {
    let (bgp, passwords, mut profiles) = every_peer_field();
    let mut shuffled = bgp.clone();
    shuffled.sessions.reverse();
    profiles.reverse();
    assert_eq!(
        render(NODE, Some(&bgp), &passwords, &profiles),
        render(NODE, Some(&shuffled), &passwords, &profiles)
    );
}

/// A peer without graceful restart has it disabled, not left to FRR's default helper mode,
/// which offers the capability: a router that helps would keep a dead node's routes for the
/// restart time after the hold time.
#[test]
fn graceful_restart_is_on_only_where_enabled_off_elsewhere_and_never_with_timers() {
    let (mut bgp, passwords, profiles) = every_peer_field();
    let with = render(NODE, Some(&bgp), &passwords, &profiles);
    assert!(with.contains(" neighbor 198.51.100.1 graceful-restart\n"));
    assert!(with.contains(" bgp graceful-restart preserve-fw-state\n"));
    assert!(!with.contains("restart-time") && !with.contains("stalepath-time"));
    for session in &mut bgp.sessions {
        session.peer.graceful_restart = false;
    }
    let without = render(NODE, Some(&bgp), &passwords, &profiles);
    let lines: Vec<&str> = without
        .lines()
        .filter(|l| l.contains("graceful-restart"))
        .collect();
    assert!(
        !lines.is_empty()
            && lines
                .iter()
                .all(|l| l.starts_with(" neighbor ") && l.ends_with(" graceful-restart-disable")),
        "{without}"
    );
}

/// FRR's own parser accepts every golden file. vtysh checks the grammar and the value ranges
/// of every daemon's commands without any daemon running.
#[test]
fn frr_accepts_every_golden_file() {
    let mut checked = 0;
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "conf") {
            continue;
        }
        let output = Command::new("vtysh")
            .arg("--dryrun")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "running vtysh: {e}; install FRR (Debian's frr package) with \
                     scripts/install-deps"
                )
            });
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && said.trim().is_empty(),
            "FRR refuses {}: {said}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} golden files");
}

#[test]
fn frr_refuses_a_broken_file_so_the_check_above_means_something() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.conf");
    std::fs::write(
        &path,
        "router bgp 64512\n neighbor 198.51.100.1 remote-as 64513\n neighbor 198.51.100.1 password two words\nexit\n",
    )
    .unwrap();
    let output = Command::new("vtysh")
        .arg("--dryrun")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
}
