//! The real herald-speaker advertising Services over BGP: speakers started with `--bgp` in node
//! namespaces, each driving its own FRR 8.4, configured only through BGPPeer,
//! BGPAdvertisement and BFDProfile objects on the test API server, peering with a BIRD 2
//! router; a client behind the router (`herald_tests::bgp_speaker_lan`).
//!
//! The BGP tests of one binary run one at a time: every lab's router has the address
//! 192.0.2.1, and BGPPeers are cluster-scoped, so two labs at once would each see the other's
//! peer at that address.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use herald_crds::BGPSessionStateStatus;
use herald_speaker::frr::{Frr, Paths};
use herald_tests::bgp_lan::{ROUTER, ROUTER_ASN, ROUTER_V6, client_reaches, ipv6_protocol, serve};
use herald_tests::bgp_speaker_lan::BgpSpeakerLan;
use herald_tests::eventually;
use herald_tests::objects::services;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use tokio::sync::Mutex;

const WAIT: Duration = Duration::from_secs(60);

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn lab(name: &str, nodes: usize, neighbor_options: &str) -> BgpSpeakerLan {
    BgpSpeakerLan::new(
        name,
        nodes,
        Path::new(env!("CARGO_BIN_EXE_herald-speaker")),
        neighbor_options,
    )
    .await
}

fn address(n: u8) -> String {
    format!("203.0.113.{n}")
}

/// An IPv6 address of the lab's pool, off the LAN.
fn address_v6(n: u16) -> String {
    format!("2001:db8:ff::{n:x}")
}

async fn wait_for_gateways(lab: &BgpSpeakerLan, ip: &str, nodes: &[usize], what: &str) {
    let wanted = lab.node_addresses(ip, nodes);
    eventually(WAIT, what, || async {
        (lab.gateways(ip) == wanted).then_some(())
    })
    .await;
}

/// Waits for node `i`'s session state with `peer` to satisfy `check`.
async fn session_state(
    lab: &BgpSpeakerLan,
    i: usize,
    peer: &str,
    what: &str,
    check: impl Fn(&BGPSessionStateStatus) -> bool,
) -> BGPSessionStateStatus {
    eventually(WAIT, what, || async {
        lab.session_state(i, peer).await.filter(|s| check(s))
    })
    .await
}

/// The speaker's FRR driver on node `i`'s FRR, to read it as the speaker does.
fn frr(lab: &BgpSpeakerLan, i: usize) -> Frr {
    Frr::new(Paths {
        config_dir: lab.frr[i].dir().to_path_buf(),
        vty_socket_dir: lab.frr[i].dir().to_path_buf(),
        ..Paths::default()
    })
}

/// What says whether node `i`'s session was reset: FRR's counts of the sessions it established
/// and dropped with the router (BIRD, which must show it Established, stamps its protocol's time
/// again as its channels change state, a reset or not).
async fn session_marks(lab: &BgpSpeakerLan, i: usize) -> (u64, u64) {
    let neighbors = frr(lab, i).neighbors().await.expect("FRR's neighbors");
    let protocol = lab.router.protocol(&lab.lab.nodes[i].1.name);
    assert_eq!(protocol.info, "Established", "{protocol:?}");
    (neighbors[0].established_count, neighbors[0].dropped_count)
}

#[tokio::test]
async fn services_are_advertised_from_their_nodes_and_sessions_show_where_users_look() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let mut lab = lab("bgp-speaker", 3, "").await;
    let web = address(100);
    let mut servers: Vec<_> = lab.frr.iter().map(|node| serve(node, &web)).collect();
    let peer = lab.peer("tor", serde_json::json!({})).await;
    lab.advertise().await;
    lab.lab.service("web", &[&web], false, &[0]).await;

    // Cluster: every node advertises it, the router spreads it over them, the client gets in.
    wait_for_gateways(
        &lab,
        &web,
        &[0, 1, 2],
        "a route to web through all three nodes",
    )
    .await;
    let answered = client_reaches(&lab.outside, &web);
    assert!(
        answered.as_deref().is_some_and(|n| n.starts_with("node")),
        "the client reached {web} through the router: {answered:?}"
    );
    for i in 0..3 {
        let state = session_state(
            &lab,
            i,
            &peer,
            "an Established session with 1 prefix",
            |s| s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1),
        )
        .await;
        assert_eq!(
            (state.node.as_str(), state.peer.as_str()),
            (lab.node(i), &*peer)
        );
        assert_eq!(state.reason, None);
    }
    // The first live speaker writes it; while the speakers still meet, with fewer nodes.
    let nodes = (0..3).map(|i| lab.node(i)).collect::<Vec<_>>().join(", ");
    let wanted = format!("advertised over BGP by nodes {nodes} to peer {peer}");
    eventually(
        WAIT,
        &format!("web's condition to say {wanted:?}"),
        || async {
            let message = lab.lab.announced("web", "Announced").await;
            (message == wanted).then_some(())
        },
    )
    .await;
    // Each node said so on the BGPPeer, once.
    let events: Api<Event> = Api::all(lab.lab.cluster.client());
    let ups = eventually(WAIT, "a BGPSessionUp Event per node", || async {
        let list = events
            .list(&ListParams::default().fields(&format!("regarding.name={peer}")))
            .await
            .ok()?;
        let ups: Vec<String> = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("BGPSessionUp"))
            .filter_map(|e| e.note)
            .collect();
        (ups.len() == 3).then_some(ups)
    })
    .await;
    assert!(
        ups.iter().all(|note| note.contains("is established")),
        "{ups:?}"
    );
    let metrics = lab.lab.metrics(0);
    assert!(metrics.contains("herald_bgp_sessions_up 1"), "{metrics}");
    assert!(
        metrics.contains("herald_bgp_prefixes_advertised 1"),
        "{metrics}"
    );

    // Local: only the node with the ready endpoint advertises it.
    let local = address(101);
    servers.push(serve(&lab.frr[1], &local));
    lab.lab.service("local", &[&local], true, &[1]).await;
    wait_for_gateways(&lab, &local, &[1], "a route to local through node1 only").await;
    let frr_node1 = &lab.lab.nodes[1].1.name;
    assert_eq!(
        client_reaches(&lab.outside, &local).as_deref(),
        Some(frr_node1.as_str())
    );
    services(&lab.lab.cluster)
        .delete("local", &Default::default())
        .await
        .unwrap();
    wait_for_gateways(&lab, &local, &[], "local's route withdrawn").await;

    // 50 Services come, then go: no session is reset.
    let mut marks_before = Vec::new();
    for i in 0..3 {
        marks_before.push(session_marks(&lab, i).await);
    }
    let started = Instant::now();
    let churn: Vec<(String, String)> = (101..=150)
        .map(|n| (format!("churn-{n}"), address(n)))
        .collect();
    for (name, ip) in &churn {
        lab.lab.service(name, &[ip], false, &[0]).await;
    }
    eventually(WAIT, "the router's routes to web and 50 more", || async {
        (lab.router.kernel_routes().len() == 51).then_some(())
    })
    .await;
    let added = started.elapsed();
    for (name, _) in &churn {
        services(&lab.lab.cluster)
            .delete(name, &Default::default())
            .await
            .unwrap();
    }
    eventually(WAIT, "the router's routes back to web only", || async {
        (lab.router.kernel_routes() == [web.clone()]).then_some(())
    })
    .await;
    let churned = started.elapsed();
    for (i, before) in marks_before.iter().enumerate() {
        assert_eq!(
            &session_marks(&lab, i).await,
            before,
            "node{i}'s session was reset by the churn"
        );
    }
    println!(
        "50 Services added: routes on the router {added:?} after the first was created; \
         removed: {churned:?} in all; no session reset"
    );

    // A graceful stop withdraws the node's routes before the speaker exits; its FRR runs on,
    // as a sidecar does, so the router drops them because it was told to.
    let mut stopping = lab.lab.terminate_speaker(0);
    let stopped = Instant::now();
    wait_for_gateways(
        &lab,
        &web,
        &[1, 2],
        "node0's route withdrawn on its graceful stop",
    )
    .await;
    let withdrawn = stopped.elapsed();
    let status = stopping.wait().expect("the speaker exits");
    assert!(status.success(), "{status}");
    println!("graceful stop: node0's route withdrawn {withdrawn:?} after SIGTERM");
    drop(servers);
}

#[tokio::test]
async fn a_wrong_asn_and_a_missing_password_secret_show_on_the_session_state() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let lab = lab("bgp-speaker-fail", 1, "").await;
    let peer = lab
        .peer("tor", serde_json::json!({"peerASN": ROUTER_ASN + 1}))
        .await;
    lab.advertise().await;
    let state = session_state(&lab, 0, &peer, "a reason about the AS", |s| {
        s.reason
            .as_deref()
            .is_some_and(|r| r.contains(&format!("not in AS {}", ROUTER_ASN + 1)))
    })
    .await;
    assert_ne!(state.bgp_state.as_deref(), Some("Established"));
    println!("wrong ASN: {state:?}");

    // The right AS, and a password Secret that does not exist: FRR is not configured for the
    // peer, and its state says why.
    let peer = lab
        .peer(
            "tor",
            serde_json::json!({"passwordSecret": {"name": "tor-password"}}),
        )
        .await;
    let state = session_state(&lab, 0, &peer, "a reason about the Secret", |s| {
        s.reason
            .as_deref()
            .is_some_and(|r| r.contains("tor-password does not exist"))
    })
    .await;
    println!("missing Secret: {state:?}");
    // Created while the router has no password for the node: the router's kernel drops the
    // signed segments, and the reason says to compare the passwords.
    Api::<Secret>::namespaced(lab.lab.cluster.client(), lab.lab.cluster.namespace())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "tor-password"},
                "stringData": {"password": "right"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let state = session_state(&lab, 0, &peer, "a reason about the password", |s| {
        s.reason
            .as_deref()
            .is_some_and(|r| r.contains("password mismatch"))
    })
    .await;
    println!("password set, router without one: {state:?}");
    assert!(
        lab.lab.log(0).lines().all(|l| !l.contains("panicked")),
        "{}",
        lab.lab.log(0)
    );
}

/// Percentile `p` (0 to 100) of sorted `gaps`.
fn percentile(gaps: &[Duration], p: usize) -> Duration {
    gaps[((gaps.len() * p).div_ceil(100)).clamp(1, gaps.len()) - 1]
}

/// Cuts node 0's link `trials` times; each time, how long until the router routes `ip`
/// through node 1 only, the client reaching node 1; then restores it.
async fn failover_gaps(lab: &BgpSpeakerLan, ip: &str, trials: usize) -> Vec<Duration> {
    let mut gaps = Vec::new();
    let node0 = &lab.lab.nodes[0].1;
    let rest = lab.node_addresses(ip, &[1]);
    for trial in 0..trials {
        wait_for_gateways(lab, ip, &[0, 1], "a route through both nodes").await;
        let cut = Instant::now();
        node0.link_down();
        let gap = loop {
            if lab.gateways(ip) == rest {
                break cut.elapsed();
            }
            assert!(
                cut.elapsed() < WAIT,
                "trial {trial}: the router still routes {ip} through node0 {WAIT:?} after its \
                 link was cut"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(
            client_reaches(&lab.outside, ip).as_deref(),
            Some(lab.lab.nodes[1].1.name.as_str())
        );
        node0.link_up();
        gaps.push(gap);
    }
    gaps.sort();
    gaps
}

fn trials(default: usize) -> usize {
    std::env::var("HERALD_BGP_FAILOVER_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(default)
}

fn print_gaps(what: &str, gaps: &[Duration]) {
    println!(
        "{what}: {} trials, gap p50 {:?}, p99 {:?}, max {:?}",
        gaps.len(),
        percentile(gaps, 50),
        percentile(gaps, 99),
        gaps.last().unwrap()
    );
}

#[tokio::test]
async fn bfd_withdraws_a_lost_nodes_route_within_half_a_second() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let lab = lab("bgp-speaker-bfd", 2, "bfd on;").await;
    let web = address(100);
    let _servers: Vec<_> = lab.frr.iter().map(|node| serve(node, &web)).collect();
    let profile = lab.bfd_profile("fast", 100).await;
    let peer = lab
        .peer("tor", serde_json::json!({"bfdProfile": profile}))
        .await;
    lab.advertise().await;
    lab.lab.service("web", &[&web], false, &[0, 1]).await;
    for i in 0..2 {
        session_state(&lab, i, &peer, "BFD up", |s| {
            s.bfd_state.as_deref() == Some("Up") && s.prefixes_advertised == Some(1)
        })
        .await;
    }
    let gaps = failover_gaps(&lab, &web, trials(1)).await;
    print_gaps("BFD 100 ms x 3", &gaps);
    assert!(
        percentile(&gaps, 99) < Duration::from_millis(500),
        "{gaps:?}"
    );
}

#[tokio::test]
async fn without_bfd_a_lost_nodes_route_goes_with_the_hold_time() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let lab = lab("bgp-speaker-hold", 2, "").await;
    let web = address(100);
    let _servers: Vec<_> = lab.frr.iter().map(|node| serve(node, &web)).collect();
    lab.peer("tor", serde_json::json!({})).await;
    lab.advertise().await;
    lab.lab.service("web", &[&web], false, &[0, 1]).await;
    let gaps = failover_gaps(&lab, &web, trials(1)).await;
    print_gaps("no BFD, hold time 9 s", &gaps);
    // The router's hold time bounds it (BIRD's 9 s, checked each second).
    assert!(percentile(&gaps, 99) < Duration::from_secs(11), "{gaps:?}");
}

/// The prefixes node `i`'s FRR advertises to `peer`, as text.
async fn advertised_to(lab: &BgpSpeakerLan, i: usize, peer: IpAddr) -> Vec<String> {
    let sessions = frr(lab, i).sessions().await.expect("FRR's sessions");
    let session = sessions
        .iter()
        .find(|s| s.neighbor.peer == peer.to_string())
        .unwrap_or_else(|| panic!("node{i}'s FRR has no neighbor {peer}: {sessions:#?}"));
    session.advertised.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn an_ipv6_peer_learns_the_ipv6_addresses_from_every_node_and_only_those() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let lab = lab("bgp-speaker-v6", 2, "").await;
    let (web4, web6) = (address(100), address_v6(0x100));
    let _servers: Vec<_> = lab
        .frr
        .iter()
        .flat_map(|node| [serve(node, &web4), serve(node, &web6)])
        .collect();
    let tor = lab.peer("tor", serde_json::json!({})).await;
    let tor6 = lab
        .peer(
            "tor6",
            serde_json::json!({"peerAddress": ROUTER_V6.to_string()}),
        )
        .await;
    lab.advertise().await;
    lab.lab
        .service("web", &[&web4, &web6], false, &[0, 1])
        .await;

    // The router learns the IPv6 address from both nodes over IPv6 (their IPv6 next hops), and
    // the client reaches it through the router.
    wait_for_gateways(
        &lab,
        &web6,
        &[0, 1],
        "a route to web's IPv6 address through both nodes",
    )
    .await;
    wait_for_gateways(
        &lab,
        &web4,
        &[0, 1],
        "a route to web's IPv4 address through both nodes",
    )
    .await;
    let answered = client_reaches(&lab.outside, &web6);
    assert!(
        answered.as_deref().is_some_and(|n| n.starts_with("node")),
        "the client reached {web6} through the router: {answered:?}"
    );
    for i in 0..2 {
        let state = session_state(
            &lab,
            i,
            &tor6,
            "an Established IPv6 session with 1 prefix",
            |s| s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1),
        )
        .await;
        assert_eq!(state.peer_address, Some(ROUTER_V6.to_string()));
        assert_eq!(state.reason, None);
        session_state(
            &lab,
            i,
            &tor,
            "an Established IPv4 session with 1 prefix",
            |s| s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1),
        )
        .await;
        // Each family's address goes to the peer of its family only: in what FRR sends, and in
        // what the router learnt over each session.
        assert_eq!(
            advertised_to(&lab, i, IpAddr::V6(ROUTER_V6)).await,
            [format!("{web6}/128")]
        );
        assert_eq!(
            advertised_to(&lab, i, IpAddr::V4(ROUTER)).await,
            [format!("{web4}/32")]
        );
        let host = &lab.lab.nodes[i].1.name;
        assert_eq!(
            lab.router.routes_from(&ipv6_protocol(host)),
            [format!("{web6}/128")]
        );
        assert_eq!(lab.router.routes_from(host), [format!("{web4}/32")]);
    }
    let metrics = lab.lab.metrics(0);
    assert!(metrics.contains("herald_bgp_sessions_up 2"), "{metrics}");
}

/// Checks for `duration` that the router keeps routing `ip` through `nodes` and the client
/// reaches it.
async fn keeps_routing(lab: &BgpSpeakerLan, ip: &str, nodes: &[usize], duration: Duration) {
    let wanted = lab.node_addresses(ip, nodes);
    let since = Instant::now();
    while since.elapsed() < duration {
        assert_eq!(
            lab.gateways(ip),
            wanted,
            "the router's route to {ip} changed {:?} in",
            since.elapsed()
        );
        let answered = client_reaches(&lab.outside, ip);
        assert!(
            answered.is_some(),
            "the client did not reach {ip} {:?} in",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// FRR's container may come back without what it ran (its frr.conf could not be loaded): the
/// speaker sees FRR back and applies its configuration again.
#[tokio::test]
async fn an_frr_that_comes_back_empty_is_configured_again() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let mut lab = lab("bgp-speaker-frr-back", 2, "").await;
    let web = address(100);
    let _servers: Vec<_> = lab.frr.iter().map(|node| serve(node, &web)).collect();
    let peer = lab.peer("tor", serde_json::json!({})).await;
    lab.advertise().await;
    lab.lab.service("web", &[&web], false, &[0, 1]).await;
    wait_for_gateways(&lab, &web, &[0, 1], "a route through both nodes").await;

    lab.frr[0].crash();
    wait_for_gateways(&lab, &web, &[1], "node0's route gone with its FRR").await;
    lab.frr[0].restart_empty();
    wait_for_gateways(&lab, &web, &[0, 1], "node0's route back once its FRR is").await;
    session_state(&lab, 0, &peer, "node0's session Established again", |s| {
        s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1)
    })
    .await;
}

#[tokio::test]
async fn with_graceful_restart_the_router_keeps_a_nodes_routes_while_its_frr_restarts() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let mut lab = lab("bgp-speaker-gr-frr", 2, "").await;
    let web = address(100);
    let _servers: Vec<_> = lab.frr.iter().map(|node| serve(node, &web)).collect();
    let peer = lab
        .peer("tor", serde_json::json!({"enableGracefulRestart": true}))
        .await;
    lab.advertise().await;
    lab.lab.service("web", &[&web], false, &[0, 1]).await;
    wait_for_gateways(&lab, &web, &[0, 1], "a route through both nodes").await;
    for i in 0..2 {
        session_state(&lab, i, &peer, "an Established session", |s| {
            s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1)
        })
        .await;
    }

    // FRR's container crashes on node0: its daemons die at once, the speaker runs on.
    lab.frr[0].crash();
    let node0 = lab.lab.nodes[0].1.name.clone();
    eventually(WAIT, "BIRD to see node0's session go", || async {
        (lab.router.protocol(&node0).info != "Established").then_some(())
    })
    .await;
    let down = session_state(&lab, 0, &peer, "node0's session down", |s| {
        s.bgp_state.as_deref() != Some("Established")
    })
    .await;
    println!("while node0's FRR is down its session state says: {down:?}");
    // Longer than the hold time (9 s): the routes stay, stale, and traffic flows.
    keeps_routing(&lab, &web, &[0, 1], Duration::from_secs(12)).await;
    let session = lab.router.protocol(&node0);
    assert_ne!(session.info, "Established", "{session:?}");

    // The container comes back, loading the speaker's frr.conf.
    lab.frr[0].restart();
    eventually(WAIT, "node0's session back on the router", || async {
        (lab.router.protocol(&node0).info == "Established").then_some(())
    })
    .await;
    wait_for_gateways(&lab, &web, &[0, 1], "both nodes' routes after the restart").await;
    let state = session_state(&lab, 0, &peer, "node0's session Established again", |s| {
        s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1)
    })
    .await;
    assert_eq!(state.reason, None);
}

#[tokio::test]
async fn with_graceful_restart_a_restarted_speaker_takes_over_its_frr_without_a_session_reset() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let mut lab = lab("bgp-speaker-gr-stop", 1, "").await;
    let web = address(100);
    let _server = serve(&lab.frr[0], &web);
    let peer = lab
        .peer("tor", serde_json::json!({"enableGracefulRestart": true}))
        .await;
    lab.advertise().await;
    lab.lab.service("web", &[&web], false, &[0]).await;
    wait_for_gateways(&lab, &web, &[0], "a route through node0").await;
    session_state(&lab, 0, &peer, "an Established session", |s| {
        s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1)
    })
    .await;
    let before = session_marks(&lab, 0).await;

    // A graceful stop keeps what it advertises to peers with graceful restart: the router goes
    // on forwarding to the node while its speaker is away.
    let status = lab
        .lab
        .terminate_speaker(0)
        .wait()
        .expect("the speaker exits");
    assert!(status.success(), "{status}");
    keeps_routing(&lab, &web, &[0], Duration::from_secs(3)).await;

    // The new speaker applies the same configuration to the FRR that ran on: no session reset.
    lab.lab.start_speaker(0);
    eventually(
        WAIT,
        "the new speaker to apply its configuration",
        || async {
            lab.lab
                .log(0)
                .contains("FRR runs the new configuration")
                .then_some(())
        },
    )
    .await;
    keeps_routing(&lab, &web, &[0], Duration::from_secs(3)).await;
    assert_eq!(
        session_marks(&lab, 0).await,
        before,
        "the session was reset by the speaker's restart"
    );
    let state = session_state(&lab, 0, &peer, "the session Established", |s| {
        s.bgp_state.as_deref() == Some("Established")
    })
    .await;
    assert_eq!(state.prefixes_advertised, Some(1));
}

#[tokio::test]
async fn session_states_follow_a_new_peer_and_new_prefixes_without_waiting_for_a_poll() {
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let mut lab = lab("bgp-speaker-fresh", 1, "").await;
    let tor = lab.peer("tor", serde_json::json!({})).await;
    lab.advertise().await;
    lab.lab
        .service("web", &[&address(100), &address_v6(0x100)], false, &[0])
        .await;
    session_state(&lab, 0, &tor, "an Established session with 1 prefix", |s| {
        s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1)
    })
    .await;

    // The speaker again, asking FRR on its own schedule only every 10 minutes: only what it
    // reads after its reloads can keep the states fresh within the wait.
    lab.lab.kill_speaker(0);
    lab.set_poll_interval(0, "600s");
    lab.lab.start_speaker(0);
    eventually(
        WAIT,
        "the new speaker to apply its configuration",
        || async {
            lab.lab
                .log(0)
                .contains("FRR runs the new configuration")
                .then_some(())
        },
    )
    .await;

    // A new peer: its session comes up after the reload, and its first prefixes follow.
    let tor6 = lab
        .peer(
            "tor6",
            serde_json::json!({"peerAddress": ROUTER_V6.to_string()}),
        )
        .await;
    session_state(
        &lab,
        0,
        &tor6,
        "the new IPv6 session Established with 1 prefix",
        |s| s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(1),
    )
    .await;
    // FRR took the new peer at the first reload.
    let metrics = lab.lab.metrics(0);
    assert!(
        !metrics.lines().any(
            |l| l.starts_with("herald_bgp_reloads_total{result=\"failed\"}") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    // New Services: FRR advertises each at once (the router has its route), and the session
    // state counts it; and one fewer.
    for (n, name) in [(2, "api"), (3, "db")] {
        let ip = address(99 + n as u8);
        lab.lab.service(name, &[&ip], false, &[0]).await;
        wait_for_gateways(&lab, &ip, &[0], &format!("{name}'s route on the router")).await;
        session_state(
            &lab,
            0,
            &tor,
            &format!("{n} prefixes on the session state"),
            |s| s.prefixes_advertised == Some(n),
        )
        .await;
    }
    services(&lab.lab.cluster)
        .delete("api", &Default::default())
        .await
        .unwrap();
    session_state(&lab, 0, &tor, "2 prefixes again", |s| {
        s.prefixes_advertised == Some(2)
    })
    .await;
    // The next tests' labs have pools of the same addresses, and their speakers see every
    // namespace's Services: only web's address may stay.
    services(&lab.lab.cluster)
        .delete("db", &Default::default())
        .await
        .unwrap();
}
