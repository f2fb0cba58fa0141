//! Authenticated gossip between real herald-speakers on a LAN of network namespaces: a host
//! with another key, and replays of a captured datagram, change nothing; a key rotation done
//! as the README says drops no member.
//!
//! One test at a time, as in layer2.rs: every speaker sees every Service of the API server.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use herald_speaker::gossip_auth::KeyId;
use herald_tests::eventually;
use herald_tests::gossip_key::{self, random_key};
use herald_tests::lan::Host;
use herald_tests::speaker_lan::{SpeakerLan, WAIT};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const GOSSIP_PORT: u16 = 7946;

async fn lab(name: &str) -> SpeakerLan {
    SpeakerLan::new(name, 3, Path::new(env!("CARGO_BIN_EXE_herald-speaker"))).await
}

/// The value of one series (`name{labels}`) in Prometheus' text format; 0 when absent.
fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn dropped(lab: &SpeakerLan, i: usize, reason: &str) -> f64 {
    metric(
        &lab.metrics(i),
        &format!("herald_speaker_gossip_packets_dropped_total{{reason=\"{reason}\"}}"),
    )
}

/// Every datagram node `i` dropped, whatever the reason.
fn dropped_total(lab: &SpeakerLan, i: usize) -> f64 {
    lab.metrics(i)
        .lines()
        .filter(|l| l.starts_with("herald_speaker_gossip_packets_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The membership changes node `i`'s speaker logged: speakers up, down, renewed, or itself
/// told it is down.
fn membership_changes(lab: &SpeakerLan, i: usize) -> usize {
    lab.log(i)
        .lines()
        .filter(|l| {
            ["speaker up", "speaker down", "speaker renewed", "rejoining"]
                .iter()
                .any(|event| l.contains(event))
        })
        .count()
}

/// Waits until each of the first three nodes' speakers sees all three alive.
async fn all_alive(lab: &SpeakerLan) {
    for i in 0..3 {
        eventually(
            WAIT,
            &format!("node {i} to see 3 speakers alive"),
            || async {
                (metric(&lab.metrics(i), "herald_speaker_peers_alive") == 3.0).then_some(())
            },
        )
        .await;
    }
}

/// Captures one gossip datagram that `host` receives from one of `senders`: its destination
/// and its bytes.
async fn capture_gossip(host: &Host, senders: &[Ipv4Addr], pcap: &Path) -> (SocketAddrV4, Vec<u8>) {
    let from: Vec<String> = senders.iter().map(|ip| format!("src host {ip}")).collect();
    let filter = format!("udp dst port {GOSSIP_PORT} and ({})", from.join(" or "));
    let (host, file) = (host.clone(), pcap.to_owned());
    tokio::task::spawn_blocking(move || {
        host.run(
            "tcpdump",
            &[
                "-i",
                "eth0",
                "-Q",
                "in",
                "-c",
                "1",
                "-s",
                "0",
                "-w",
                &file.to_string_lossy(),
                &filter,
            ],
        )
    })
    .await
    .unwrap();
    let bytes = std::fs::read(pcap).unwrap();
    udp_payloads(&bytes)
        .into_iter()
        .next()
        .expect("a captured gossip datagram")
}

/// The UDP datagrams (IPv4 over Ethernet) of a pcap file, with their destinations.
fn udp_payloads(pcap: &[u8]) -> Vec<(SocketAddrV4, Vec<u8>)> {
    let u32_at = |at: usize| u32::from_le_bytes(pcap[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xa1b2_c3d4, "a little-endian pcap file");
    let mut datagrams = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let length = u32_at(at + 8) as usize;
        let frame = &pcap[at + 16..at + 16 + length];
        at += 16 + length;
        let ip = &frame[14..];
        if frame[12..14] != [0x08, 0x00] || ip[9] != 17 {
            continue;
        }
        let udp = &ip[usize::from(ip[0] & 0x0f) * 4..];
        let udp_length = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        let to = SocketAddrV4::new(
            Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            u16::from_be_bytes([udp[2], udp[3]]),
        );
        datagrams.push((to, udp[8..udp_length].to_vec()));
    }
    datagrams
}

/// Sends `datagram` from `host` to `to` (UDP, from an ephemeral port).
fn send_from(host: &Host, to: SocketAddrV4, datagram: &[u8]) {
    let mut socat = host
        .command("socat")
        .args(["-u", "STDIN", &format!("UDP-SENDTO:{to}")])
        .stdin(Stdio::piped())
        .spawn()
        .expect("starting socat");
    // One write below the pipe's atomic size: socat reads it whole and sends one datagram.
    socat
        .stdin
        .take()
        .unwrap()
        .write_all(datagram)
        .expect("writing to socat");
    assert!(socat.wait().unwrap().success());
}

/// A host on the LAN whose Node the cluster knows runs a speaker with another key, and replays
/// a datagram captured from the speakers' traffic, to its receiver and to another speaker: no
/// speaker takes any of it, each says why in its metrics, and who answers does not change.
#[tokio::test]
async fn gossip_with_another_key_or_replayed_changes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut lab = lab("gossip-forged").await;
    lab.service("forged", &["192.0.2.240"], false, &[0]).await;
    let (winner, message) = lab.settled("forged", "192.0.2.240").await;
    all_alive(&lab).await;
    let before: Vec<usize> = (0..3).map(|i| membership_changes(&lab, i)).collect();

    // The intruder: a Node of the cluster, its speaker with a key of its own.
    let intruder = lab.add_node("intruder", 120).await;
    gossip_key::project(&lab.key_dir(intruder), &[("primary", &random_key())]);
    lab.start_speaker(intruder);
    for i in 0..3 {
        eventually(
            WAIT,
            &format!("node {i} to drop the intruder's datagrams"),
            || async { (dropped(&lab, i, "unknown_key") > 0.0).then_some(()) },
        )
        .await;
    }

    // A datagram a speaker sent node1, captured, then sent again by the intruder: to node1
    // (a replay) and to node0 (meant for another speaker).
    let pcap = lab.cluster.server().data_dir().join("gossip-forged.pcap");
    let speakers = [lab.nodes[0].1.ipv4, lab.nodes[2].1.ipv4];
    let (to, datagram) = capture_gossip(&lab.nodes[1].1, &speakers, &pcap).await;
    assert_eq!(*to.ip(), lab.nodes[1].1.ipv4);
    let intruder_host = lab.nodes[intruder].1.clone();
    send_from(&intruder_host, to, &datagram);
    let node0 = SocketAddrV4::new(lab.nodes[0].1.ipv4, GOSSIP_PORT);
    send_from(&intruder_host, node0, &datagram);
    eventually(WAIT, "node1 to drop the replay", || async {
        (dropped(&lab, 1, "replayed") == 1.0).then_some(())
    })
    .await;
    eventually(
        WAIT,
        "node0 to drop the datagram meant for node1",
        || async { (dropped(&lab, 0, "misdirected") == 1.0).then_some(()) },
    )
    .await;

    // Nothing changed: the three see each other and only each other, with no flap, and the
    // same node answers; the intruder is alone and silent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, before) in before.into_iter().enumerate() {
        let metrics = lab.metrics(i);
        assert_eq!(
            metric(&metrics, "herald_speaker_peers_alive"),
            3.0,
            "node {i}:\n{metrics}"
        );
        assert_eq!(
            membership_changes(&lab, i),
            before,
            "node {i}'s membership changed:\n{}",
            lab.log(i)
        );
    }
    assert_eq!(
        metric(&lab.metrics(intruder), "herald_speaker_peers_alive"),
        1.0
    );
    assert!(
        lab.log(intruder)
            .contains("gossip datagram dropped: signed with gossip key"),
        "{}",
        lab.log(intruder)
    );
    assert_eq!(
        lab.settled("forged", "192.0.2.240").await,
        (winner, message)
    );
}

/// A gossip key Secret's entries: (name, key).
type Entries<'a> = &'a [(&'a str, &'a [u8])];
/// The keys a speaker shows in its metrics: (key, signing).
type Shown<'a> = &'a [(&'a [u8], bool)];

/// Waits until node `i`'s speaker shows exactly `keys` in its metrics.
async fn keys_shown(lab: &SpeakerLan, i: usize, keys: Shown<'_>) {
    let mut want: Vec<String> = keys
        .iter()
        .map(|(key, signing)| {
            format!(
                "herald_speaker_gossip_keys{{id=\"{}\",signing=\"{signing}\"}} 1",
                KeyId::of(key)
            )
        })
        .collect();
    want.sort();
    eventually(WAIT, &format!("node {i} to show keys {want:?}"), || async {
        let mut shown: Vec<String> = lab
            .metrics(i)
            .lines()
            .filter(|l| l.starts_with("herald_speaker_gossip_keys{"))
            .map(str::to_owned)
            .collect();
        shown.sort();
        (shown == want).then_some(())
    })
    .await;
}

/// The README's rotation, each node's Secret mount changing at its own moment as kubelets do:
/// add the new key, make it primary, remove the old one. No datagram is dropped, no member
/// lost, and the same node answers throughout.
#[tokio::test]
async fn a_key_rotation_drops_no_member() {
    let _one = ONE_AT_A_TIME.lock().await;
    let lab = lab("gossip-rotation").await;
    lab.service("rotation", &["192.0.2.241"], false, &[0]).await;
    let (winner, message) = lab.settled("rotation", "192.0.2.241").await;
    all_alive(&lab).await;
    let old = lab.gossip_key.clone();
    let new = random_key();
    for i in 0..3 {
        keys_shown(&lab, i, &[(&old, true)]).await;
    }
    let changes: Vec<usize> = (0..3).map(|i| membership_changes(&lab, i)).collect();
    let drops: Vec<f64> = (0..3).map(|i| dropped_total(&lab, i)).collect();

    let steps: [(Entries, Shown); 3] = [
        (
            &[("primary", &old), ("next", &new)],
            &[(&old, true), (&new, false)],
        ),
        (
            &[("primary", &new), ("previous", &old)],
            &[(&new, true), (&old, false)],
        ),
        (&[("primary", &new)], &[(&new, true)]),
    ];
    for (secret, shown) in steps {
        for i in 0..3 {
            gossip_key::project(&lab.key_dir(i), secret);
            keys_shown(&lab, i, shown).await;
            // Kubelets update their mounts at different moments: the speakers stay one step
            // apart for longer than a silent speaker takes to be declared down (300 ms).
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    for (i, (changes, drops)) in changes.into_iter().zip(drops).enumerate() {
        assert_eq!(metric(&lab.metrics(i), "herald_speaker_peers_alive"), 3.0);
        assert_eq!(
            membership_changes(&lab, i),
            changes,
            "node {i}'s membership changed during the rotation:\n{}",
            lab.log(i)
        );
        assert_eq!(
            dropped_total(&lab, i),
            drops,
            "node {i} dropped datagrams during the rotation:\n{}",
            lab.metrics(i)
        );
    }
    assert_eq!(
        lab.settled("rotation", "192.0.2.241").await,
        (winner, message)
    );
}
