//! The speaker's FRR driver against real routing engines: nodes running FRR 8.4 (Debian's
//! `frr`), configured only through the driver, peering with a top-of-rack router running BIRD 2
//! (Debian's `bird2`), and a client behind the router, in network namespaces
//! (`herald_tests::bgp_lan`). The `frr.conf` texts are written here by hand.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use herald_speaker::frr::{self, Frr, Outcome, Paths, ReloadStatus, Timings};
use herald_speaker::metrics::{Metrics, ReloadResult};
use herald_tests::bgp_lan::{BgpLan, NODE_ASN, ROUTER, ROUTER_ASN, client_reaches, serve};
use herald_tests::frr::FrrNode;
use herald_tests::lan::Host;
use herald_tests::router::bird_config;
use herald_tests::{Process, eventually};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(30);
const SERVICE: &str = "203.0.113.10";

/// What a node's hand-written `frr.conf` holds besides its prefixes.
#[derive(Clone, Default)]
struct Options {
    /// The router's AS as this node has it (the right one when None).
    router_asn: Option<u32>,
    /// The router's address (192.0.2.1 when None).
    router: Option<IpAddr>,
    password: Option<&'static str>,
    bfd: bool,
    graceful_restart: bool,
}

/// A complete `frr.conf` for `host` advertising `prefixes` to the router, each peer's prefixes
/// in a prefix-list of its own as the speaker's renderer does.
fn frr_config(host: &Host, prefixes: &[String], options: &Options) -> String {
    let router = options.router.unwrap_or(IpAddr::V4(ROUTER));
    let list = format!("herald-{router}");
    let mut config = format!("frr defaults traditional\nhostname {}\n!\n", host.name);
    if prefixes.is_empty() {
        config.push_str(&format!("ip prefix-list {list} seq 5 deny any\n"));
    }
    for (i, prefix) in prefixes.iter().enumerate() {
        config.push_str(&format!(
            "ip prefix-list {list} seq {} permit {prefix}\n",
            (i + 1) * 5
        ));
    }
    config.push_str(&format!(
        "!\nroute-map {list} permit 10\n match ip address prefix-list {list}\n!\n"
    ));
    if options.bfd {
        config.push_str(
            "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  \
             detect-multiplier 3\n!\n",
        );
    }
    config.push_str(&format!(
        "router bgp {NODE_ASN}\n bgp router-id {}\n no bgp ebgp-requires-policy\n no bgp \
         network import-check\n",
        host.ipv4
    ));
    if options.graceful_restart {
        config.push_str(" bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n");
    }
    let asn = options.router_asn.unwrap_or(ROUTER_ASN);
    config.push_str(&format!(
        " neighbor {router} remote-as {asn}\n neighbor {router} timers 3 9\n neighbor {router} \
         timers connect 1\n"
    ));
    if let Some(password) = options.password {
        config.push_str(&format!(" neighbor {router} password {password}\n"));
    }
    if options.bfd {
        config.push_str(&format!(
            " neighbor {router} bfd\n neighbor {router} bfd profile fast\n"
        ));
    }
    config.push_str(" address-family ipv4 unicast\n");
    for prefix in prefixes {
        config.push_str(&format!("  network {prefix}\n"));
    }
    config.push_str(&format!(
        "  neighbor {router} route-map {list} out\n exit-address-family\n!\n"
    ));
    config
}

/// The driver's handle on a rig node's FRR.
fn driver(node: &FrrNode) -> Frr {
    Frr::new(Paths {
        config_dir: node.dir().to_path_buf(),
        vty_socket_dir: node.dir().to_path_buf(),
        ..Paths::default()
    })
}

async fn apply(node: &FrrNode, config: &str) {
    let outcome = driver(node).apply(config).await;
    assert_eq!(
        outcome,
        Outcome::Applied,
        "applying on {}:\n{config}",
        node.host.name
    );
}

/// A TCP server on SERVICE in every node, and SERVICE/32 advertised from each with `options`;
/// the servers run until dropped.
async fn serve_from_every_node(lan: &BgpLan, options: &Options) -> Vec<Process> {
    let prefixes = vec![format!("{SERVICE}/32")];
    let mut servers = Vec::new();
    for node in &lan.nodes {
        servers.push(serve(node, SERVICE));
        apply(node, &frr_config(&node.host, &prefixes, options)).await;
    }
    servers
}

fn gateways(lan: &BgpLan, prefix: &str) -> Vec<IpAddr> {
    lan.router.kernel_gateways(prefix)
}

fn node_addresses(lan: &BgpLan, names: &[&str]) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = names
        .iter()
        .map(|name| IpAddr::V4(lan.node(name).host.ipv4))
        .collect();
    addresses.sort();
    addresses
}

async fn wait_for_gateways(lan: &BgpLan, prefix: &str, wanted: &[IpAddr], what: &str) {
    eventually(WAIT, what, || async {
        (gateways(lan, prefix) == wanted).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_router_learns_an_address_from_every_node_and_the_client_reaches_it() {
    let lan = BgpLan::new("bgp-ecmp", 3, "");
    let _servers = serve_from_every_node(&lan, &Options::default()).await;
    let all = node_addresses(&lan, &["node1", "node2", "node3"]);
    wait_for_gateways(
        &lan,
        SERVICE,
        &all,
        "a multipath route through all three nodes",
    )
    .await;

    let answered = client_reaches(&lan.client, SERVICE);
    assert!(
        answered
            .as_deref()
            .is_some_and(|n| ["node1", "node2", "node3"].contains(&n)),
        "the client reached {SERVICE} through the router: {answered:?}"
    );

    // A configuration FRR does not understand changes nothing, and says why in FRR's words.
    let node = &lan.nodes[0];
    let frr = driver(node);
    let applied = std::fs::read_to_string(frr.config_path()).expect("frr.conf");
    let broken = applied.replace(" no bgp ebgp-requires-policy\n", " bgp no-such-command\n");
    let Outcome::Rejected(message) = frr.apply(&broken).await else {
        panic!("FRR took a configuration with an unknown command");
    };
    assert!(
        message.contains("% Unknown command:  bgp no-such-command"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(frr.config_path()).expect("frr.conf"),
        applied
    );
    assert_eq!(gateways(&lan, SERVICE), all);

    // The driver reads the session back: up, with the address advertised.
    let sessions = driver(&lan.nodes[0]).sessions().await.expect("sessions");
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let session = &sessions[0];
    assert_eq!(session.neighbor.peer, ROUTER.to_string());
    assert!(session.neighbor.established(), "{session:#?}");
    assert_eq!(session.neighbor.problem(), None);
    assert_eq!(
        session
            .advertised
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [format!("{SERVICE}/32")]
    );
}

/// What says whether a session was reset: FRR's counts of the sessions it established and
/// dropped with the router (BIRD, which must show it Established, stamps its protocol's time
/// again as its channels change state, a reset or not).
#[derive(Debug, PartialEq, Eq)]
struct SessionMarks {
    frr_established: u64,
    frr_dropped: u64,
}

async fn session_marks(lan: &BgpLan, node: &str) -> SessionMarks {
    let neighbors = driver(lan.node(node)).neighbors().await.expect("neighbors");
    let neighbor = &neighbors[0];
    assert!(neighbor.established(), "{neighbor:#?}");
    let protocol = lan.router.protocol(node);
    assert_eq!(protocol.info, "Established", "{protocol:?}");
    SessionMarks {
        frr_established: neighbor.established_count,
        frr_dropped: neighbor.dropped_count,
    }
}

#[tokio::test]
async fn fifty_prefixes_come_and_go_by_reloads_without_a_session_reset() {
    let lan = BgpLan::new("bgp-churn", 1, "");
    let node = lan.node("node1");
    let base = vec![format!("{SERVICE}/32")];
    let metrics = Metrics::default();
    let (wanted, configs) = watch::channel(None);
    let (status_sender, status) = watch::channel(ReloadStatus::default());
    // FRR stays up here.
    let (_frr_restarted, frr_restarted) = watch::channel(());
    let driver_task = tokio::spawn(frr::run(
        driver(node),
        configs,
        frr_restarted,
        Timings::default(),
        status_sender,
        metrics.clone(),
    ));
    wanted.send_replace(Some(frr_config(&node.host, &base, &Options::default())));
    eventually(WAIT, "the router's route to the base address", || async {
        lan.router
            .kernel_routes()
            .contains(&SERVICE.to_string())
            .then_some(())
    })
    .await;
    let before = session_marks(&lan, "node1").await;

    // One prefix more per configuration, as Services come one by one, then one fewer; every
    // ten, the router has them all before more come (so that bursts and single reloads both
    // happen).
    let extra: Vec<String> = (100..150).map(|i| format!("203.0.113.{i}/32")).collect();
    let started = Instant::now();
    for n in (1..=extra.len()).chain((0..extra.len()).rev()) {
        let prefixes: Vec<String> = base.iter().chain(&extra[..n]).cloned().collect();
        wanted.send_replace(Some(frr_config(&node.host, &prefixes, &Options::default())));
        if n % 10 == 0 {
            eventually(
                WAIT,
                &format!("the router's routes to {} addresses", n + 1),
                || async { (lan.router.kernel_routes().len() == n + 1).then_some(()) },
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually(
        WAIT,
        "the router's routes back to the base address",
        || async { (lan.router.kernel_routes() == [SERVICE.to_string()]).then_some(()) },
    )
    .await;
    let churn = started.elapsed();

    let after = session_marks(&lan, "node1").await;
    assert_eq!(after, before, "the session was reset by a reload");
    assert_eq!(status.borrow().last_failure, None);
    let count = |result: &str| {
        metrics
            .bgp_reloads
            .get_or_create(&ReloadResult {
                result: result.into(),
            })
            .get()
    };
    assert_eq!((count("rejected"), count("failed")), (0, 0));
    println!(
        "100 configurations (+50 prefixes, -50) in {churn:?}: {} reloads applied, session \
         unchanged ({after:?})",
        count("applied")
    );
    drop(wanted);
    driver_task
        .await
        .expect("the driver ends when its input closes");
}

#[tokio::test]
async fn sessions_that_fail_say_why() {
    let lan = BgpLan::new("bgp-fail", 3, "");
    // The router has a password for node1 that node1 does not.
    let mut neighbors = BgpLan::neighbors(
        &lan.nodes.iter().map(|n| n.host.clone()).collect::<Vec<_>>(),
        "",
    );
    neighbors[0].options = "password \"right\";".into();
    lan.router
        .reconfigure(&bird_config(ROUTER, ROUTER_ASN, &neighbors));
    let none: Vec<String> = Vec::new();
    let configs = [
        Options {
            password: Some("wrong"),
            ..Options::default()
        },
        Options {
            router_asn: Some(ROUTER_ASN + 1),
            ..Options::default()
        },
        Options {
            router: Some("198.51.100.99".parse().unwrap()),
            ..Options::default()
        },
    ];
    // node3 has no route to the client's network, where its peer is.
    lan.node("node3")
        .host
        .run("ip", &["route", "del", "default"]);
    for (node, options) in lan.nodes.iter().zip(&configs) {
        apply(node, &frr_config(&node.host, &none, options)).await;
    }
    let expected = [
        ("node1", "password mismatch"),
        ("node2", &*format!("not in AS {}", ROUTER_ASN + 1)),
        ("node3", "no route to 198.51.100.99"),
    ];
    let mut problems = BTreeMap::new();
    for (name, words) in expected {
        let problem = eventually(
            WAIT,
            &format!("{name}'s session to say {words:?}"),
            || async {
                let neighbors = driver(lan.node(name)).neighbors().await.ok()?;
                neighbors[0].problem().filter(|p| p.contains(words))
            },
        )
        .await;
        problems.insert(name, problem);
    }
    println!("{problems:#?}");
    // The router sees node2 refuse it.
    let node2 = lan.router.protocol("node2");
    assert_ne!(node2.info, "Established", "{node2:?}");
}

#[tokio::test]
async fn bfd_withdraws_the_route_of_a_node_whose_link_is_cut() {
    let lan = BgpLan::new("bgp-bfd", 2, "bfd on;");
    let options = Options {
        bfd: true,
        ..Options::default()
    };
    let _servers = serve_from_every_node(&lan, &options).await;
    let both = node_addresses(&lan, &["node1", "node2"]);
    wait_for_gateways(&lan, SERVICE, &both, "a multipath route through both nodes").await;
    eventually(WAIT, "BFD up on node1", || async {
        let peers = driver(lan.node("node1")).bfd_peers().await.ok()?;
        (peers.first()?.state == frr::state::BfdState::Up).then_some(())
    })
    .await;

    let node1 = lan.node("node1");
    let cut = Instant::now();
    node1.host.link_down();
    let rest = node_addresses(&lan, &["node2"]);
    let mut gap = None;
    while cut.elapsed() < WAIT {
        if gateways(&lan, SERVICE) == rest {
            gap = Some(cut.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let gap = gap.unwrap_or_else(|| {
        panic!(
            "the router still routes {SERVICE} through node1 {WAIT:?} after its link was cut: \
             {:?}",
            gateways(&lan, SERVICE)
        )
    });
    println!("BFD 100 ms x 3: the router withdrew node1's route {gap:?} after its link was cut");
    assert_eq!(
        client_reaches(&lan.client, SERVICE).as_deref(),
        Some("node2")
    );
    // node1's own view says why: BFD went down, or (once zebra has seen its link go) it has
    // no route to the router; whichever FRR noticed first.
    let neighbors = driver(node1).neighbors().await.expect("neighbors");
    let problem = neighbors[0].problem();
    assert!(
        problem
            .as_deref()
            .is_some_and(|p| p.contains("BFD") || p.starts_with("no route to 192.0.2.1")),
        "{problem:?}"
    );
}

#[tokio::test]
async fn graceful_restart_keeps_a_nodes_routes_while_its_bgpd_restarts() {
    let mut lan = BgpLan::new("bgp-gr", 2, "");
    let options = Options {
        graceful_restart: true,
        ..Options::default()
    };
    let _servers = serve_from_every_node(&lan, &options).await;
    let both = node_addresses(&lan, &["node1", "node2"]);
    wait_for_gateways(&lan, SERVICE, &both, "a multipath route through both nodes").await;

    lan.node_mut("node1").kill_daemon("bgpd");
    eventually(WAIT, "BIRD to see node1's session go", || async {
        (lan.router.protocol("node1").info != "Established").then_some(())
    })
    .await;
    // Longer than the hold time: the routes stay, stale, for the restart time (120 s).
    let stale_for = Duration::from_secs(12);
    let since = Instant::now();
    while since.elapsed() < stale_for {
        assert_eq!(
            gateways(&lan, SERVICE),
            both,
            "the router dropped node1's route {:?} after its bgpd died",
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // BIRD does not mark stale routes in `show route`: its session is what says so.
    let session = lan.router.protocol("node1");
    assert_ne!(session.info, "Established", "{session:?}");

    let node1 = lan.node_mut("node1");
    node1.start_daemon("bgpd");
    node1.boot_config("bgpd");
    eventually(WAIT, "node1's session back", || async {
        (lan.router.protocol("node1").info == "Established").then_some(())
    })
    .await;
    wait_for_gateways(&lan, SERVICE, &both, "both nodes' routes after the restart").await;
}

/// Once FRR runs a rendered configuration, frr-reload.py finds nothing left to change. A line
/// FRR shows otherwise than it was written is "changed" again at every reload, so every Service
/// that comes or goes would re-apply it: for `neighbor X bfd`, that takes BFD off the session
/// and the router drops it.
#[tokio::test]
async fn frr_runs_every_golden_file_as_written() {
    let lan = BgpLan::new("bgp-fixpoint", 1, "");
    let node = &lan.nodes[0];
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&golden)
        .expect("the golden files")
        .map(|entry| entry.expect("a golden file").path())
        .filter(|path| path.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    let mut left = BTreeMap::new();
    for file in &files {
        let config = std::fs::read_to_string(file).expect("reading a golden file");
        apply(node, &config).await;
        let frr = driver(node);
        let plan = frr
            .pending_changes(&frr.config_path())
            .await
            .unwrap_or_else(|e| panic!("frr-reload.py --test: {e}"));
        if !plan.is_empty() {
            left.insert(
                file.file_name().unwrap().to_string_lossy().into_owned(),
                plan,
            );
        }
    }
    assert!(files.len() >= 6, "only {} golden files", files.len());
    assert!(
        left.is_empty(),
        "frr-reload.py would change these again at every reload: {left:#?}"
    );
}
