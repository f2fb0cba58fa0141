//! Benchmarks the real herald-speaker on a LAN of network namespaces and prints the figures
//! the spec sets bars for. Run it with `scripts/bench-speaker`.
//!
//! - Failover: three nodes; the client resolves the address (its kernel's own ARP), then the
//!   answering node fails (SIGKILL of its speaker, or its link goes down); the gap is the time
//!   until the client's neighbour entry (`ip neigh`) shows another node's MAC. 20 trials each.
//! - Graceful handover: the same with SIGTERM. 20 trials.
//! - ARP request to reply, timed on the answering node by a capture of its interface, for the
//!   speaker's userspace reply and, next to it, the kernel's own reply for the node's address.
//! - Speaker RSS with 1,000 announced addresses on one node (IPv6, so that a documentation
//!   range holds them).
//! - With those 1,000 Services spread over the three nodes and 50 more interfaces on each node
//!   (veth pairs, suitable by default): the time of one speaker pass (elect, plan, carry out;
//!   the `herald_speaker_pass_seconds` histogram, all nodes, over that phase) and the failover
//!   gap on a hard kill.
//!
//! `--trials N` sets the failover trials per kind (0 skips them, to time only ARP and RSS).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald_tests::speaker_lan::{SpeakerLan, WAIT};
use herald_tests::{eventually, lan::Host};
use serde_json::json;

const TRIALS: usize = 20;
const ADDRESS: &str = "192.0.2.200";

#[tokio::main]
async fn main() {
    const USAGE: &str = "usage: bench-speaker PATH-TO-herald-speaker [--trials N]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (speaker, trials) = match args.as_slice() {
        [path] => (PathBuf::from(path), TRIALS),
        [path, flag, n] if flag == "--trials" => (PathBuf::from(path), n.parse().expect(USAGE)),
        _ => panic!("{USAGE}"),
    };
    let mut lab = SpeakerLan::new("bench", 3, &speaker).await;
    lab.service("web", &[ADDRESS], false, &[0, 1, 2]).await;
    lab.settled("web", ADDRESS).await;

    for (what, failure) in [
        ("hard kill (SIGKILL)", Failure::Kill),
        ("link down", Failure::LinkDown),
        ("graceful stop (SIGTERM)", Failure::Terminate),
    ] {
        if trials == 0 {
            break;
        }
        let mut gaps = Vec::new();
        for _ in 0..trials {
            gaps.push(trial(&mut lab, failure).await);
        }
        report(what, &mut gaps);
    }

    arp_latency(&lab).await;
    let big = rss_with_1000_addresses(&lab).await;
    under_load(&mut lab, &big, trials).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Failure {
    Kill,
    LinkDown,
    Terminate,
}

/// One failover: returns the gap the client saw.
async fn trial(lab: &mut SpeakerLan, failure: Failure) -> Duration {
    let (winner, _) = lab.settled("web", ADDRESS).await;
    let old_mac = lab.nodes[winner].1.mac.clone();
    let client = lab.client.clone();
    let _ = client
        .command("ping")
        .args(["-c1", "-W1", ADDRESS])
        .stdout(Stdio::null())
        .status();
    let started = Instant::now();
    let mut stopping = None;
    match failure {
        Failure::Kill => lab.kill_speaker(winner),
        Failure::LinkDown => lab.nodes[winner].1.link_down(),
        Failure::Terminate => stopping = Some(lab.terminate_speaker(winner)),
    }
    let gap = tokio::task::spawn_blocking(move || wait_for_new_mac(&client, &old_mac, started))
        .await
        .expect("the neighbour poll");
    match failure {
        Failure::LinkDown => lab.nodes[winner].1.link_up(),
        Failure::Kill => lab.start_speaker(winner),
        Failure::Terminate => {
            let _ = stopping.expect("a stopping speaker").wait();
            lab.start_speaker(winner);
        }
    }
    // Let the node rejoin before the next trial.
    tokio::time::sleep(Duration::from_secs(2)).await;
    gap
}

/// Polls the client's neighbour entry every millisecond until it names another MAC.
fn wait_for_new_mac(client: &Host, old_mac: &str, started: Instant) -> Duration {
    let ip = ADDRESS.parse().expect("an address");
    loop {
        if let Some(mac) = client.neighbour(ip).and_then(|n| n.mac)
            && mac != old_mac
        {
            return started.elapsed();
        }
        assert!(started.elapsed() < WAIT, "no failover within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn report(what: &str, gaps: &mut [Duration]) {
    gaps.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = gaps[(gaps.len() * 99 / 100).min(gaps.len() - 1)];
    println!(
        "{what}: {} trials, gap p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms",
        gaps.len(),
        ms(gaps[gaps.len() / 2]),
        ms(p99),
        ms(gaps[0]),
        ms(gaps[gaps.len() - 1])
    );
}

/// ARP request to reply on the answering node: 200 requests from the client, timed by a
/// capture on the node's interface (kernel timestamps of the request coming in and the reply
/// going out), for the speaker's address and, for reference, the node's own address that its
/// kernel answers.
async fn arp_latency(lab: &SpeakerLan) {
    let (winner, _) = lab.settled("web", ADDRESS).await;
    let node = lab.nodes[winner].1.clone();
    let node_ip = node.ipv4.to_string();
    for (what, ip) in [
        ("speaker (userspace)", ADDRESS.to_owned()),
        ("node kernel", node_ip),
    ] {
        let capture = node
            .command("tcpdump")
            .args(["-i", "eth0", "-n", "-tt", "-l", "arp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = lab
            .client
            .command("arping")
            .args(["-c", "200", "-i", "eth0", "-W", "0.01", &ip])
            .output()
            .expect("arping");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = std::process::Command::new("kill")
            .arg(capture.id().to_string())
            .status();
        let output = capture.wait_with_output().expect("the capture");
        let mut micros = request_to_reply(&String::from_utf8_lossy(&output.stdout), &ip);
        micros.sort_by(f64::total_cmp);
        if micros.is_empty() {
            println!("ARP request to reply, {what}: no pairs captured");
            continue;
        }
        println!(
            "ARP request to reply on the node, {what}: {} pairs, p50 {:.0} us, p99 {:.0} us",
            micros.len(),
            micros[micros.len() / 2],
            micros[(micros.len() * 99 / 100).min(micros.len() - 1)]
        );
    }
}

/// Pairs each captured request for `ip` with the next reply for it; microseconds between them.
fn request_to_reply(capture: &str, ip: &str) -> Vec<f64> {
    let mut pending: Option<f64> = None;
    let mut micros = Vec::new();
    for line in capture.lines() {
        let Some((time, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(time) = time.parse::<f64>() else {
            continue;
        };
        if rest.contains(&format!("Request who-has {ip} ")) {
            pending = Some(time);
        } else if rest.contains(&format!("Reply {ip} is-at"))
            && let Some(asked) = pending.take()
        {
            micros.push((time - asked) * 1e6);
        }
    }
    micros
}

/// Applies a Herald object (an IPAddressPool or an L2Advertisement).
async fn apply(lab: &SpeakerLan, object: serde_json::Value) {
    let kind = object["kind"].as_str().expect("a kind").to_owned();
    let name = object["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let resource = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "herald.dev",
        "v1alpha1",
        &kind,
    ));
    kube::Api::<kube::core::DynamicObject>::all_with(lab.cluster.client(), &resource)
        .patch(
            &name,
            &kube::api::PatchParams::apply("bench").force(),
            &kube::api::Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
}

/// How many addresses `host`'s speaker answers for, as its metrics say.
fn announced(host: &Host) -> u64 {
    host.run("curl", &["-s", "http://127.0.0.1:9403/metrics"])
        .lines()
        .find_map(|l| l.strip_prefix("herald_speaker_addresses_announced "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Waits, as long as a loaded host may need, until the nodes answer for exactly `total`
/// (address, interface) pairs in all.
async fn wait_for_announced(lab: &SpeakerLan, total: u64, what: &str) {
    eventually(Duration::from_secs(600), what, || async {
        let now: u64 = lab.nodes.iter().map(|(_, host, _)| announced(host)).sum();
        (now == total).then_some(())
    })
    .await;
}

/// Creates 1,000 Services announced from node 0 and prints each speaker's RSS; returns the
/// name of their pool (and of its L2Advertisement).
async fn rss_with_1000_addresses(lab: &SpeakerLan) -> String {
    let big = format!("{}-big", lab.pool);
    apply(
        lab,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
        "metadata": {"name": big}, "spec": {"addresses": ["2001:db8:1::/116"]}}),
    )
    .await;
    apply(
        lab,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
        "metadata": {"name": big}, "spec": {"ipAddressPools": [big],
            // All of them on one node: one speaker announcing 1,000 addresses.
            "nodeSelectors": [{"matchLabels": {"kubernetes.io/hostname": lab.nodes[0].0}}]}}),
    )
    .await;
    let created = Instant::now();
    futures::StreamExt::for_each_concurrent(
        futures::stream::iter(0..1000u32),
        16,
        |i| async move {
            lab.service(
                &format!("bulk-{i}"),
                &[&format!("2001:db8:1::{:x}", i + 1)],
                false,
                &[0, 1, 2],
            )
            .await;
        },
    )
    .await;
    wait_for_announced(lab, 1001, "1,001 announced addresses").await;
    println!(
        "1,000 more Services announced {:.1} s after the first create",
        created.elapsed().as_secs_f64()
    );
    for (name, host, process) in &lab.nodes {
        let Some(process) = process else { continue };
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", process.id())).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default();
        println!(
            "speaker RSS on {name}: {rss} ({} addresses announced)",
            announced(host)
        );
    }
    big
}

/// Spreads the 1,000 Services over the three nodes, on eth0, gives each node 50 more
/// interfaces, and measures the pass time and the failover gap under that load.
async fn under_load(lab: &mut SpeakerLan, big: &str, trials: usize) {
    apply(
        lab,
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
        "metadata": {"name": big}, "spec": {"ipAddressPools": [big], "interfaces": ["eth0"],
            "nodeSelectors": [{"matchLabels": {"herald-test": lab.cluster.namespace()}}]}}),
    )
    .await;
    wait_for_announced(lab, 1001, "the 1,000 Services spread over the nodes").await;
    for (_, host, _) in &lab.nodes {
        for k in 0..25 {
            host.run(
                "ip",
                &[
                    "link",
                    "add",
                    &format!("bn{k}a"),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &format!("bn{k}b"),
                ],
            );
            for end in ["a", "b"] {
                host.run("ip", &["link", "set", &format!("bn{k}{end}"), "up"]);
            }
        }
    }
    // web on its node's new interfaces too (its advertisement names none), the rest on eth0.
    // The two ends of a veth pair hear each other: one segment, answered on one end only, so
    // web gains 25 interfaces, not 50.
    wait_for_announced(lab, 1026, "web on one end of each new veth pair too").await;
    let before = pass_buckets(lab);
    let started = Instant::now();
    let mut gaps = Vec::new();
    for _ in 0..trials {
        gaps.push(trial(lab, Failure::Kill).await);
        wait_for_announced(lab, 1026, "the 1,000 Services back after a failover").await;
    }
    if trials == 0 {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let after = pass_buckets(lab);
    // Per node, the passes since `before`; all of them for a speaker restarted meanwhile.
    let mut passes: Vec<(f64, u64)> = Vec::new();
    for (i, (pid, buckets)) in after.iter().enumerate() {
        for (k, (le, count)) in buckets.iter().enumerate() {
            let earlier = match &before[i] {
                (was, old) if was == pid => old.get(k).map_or(0, |(_, n)| *n),
                _ => 0,
            };
            match passes.get_mut(k) {
                Some((_, total)) => *total += count.saturating_sub(earlier),
                None => passes.push((*le, count.saturating_sub(earlier))),
            }
        }
    }
    let total = passes.last().map_or(0, |(_, n)| *n);
    let quantile = |q: f64| {
        passes
            .iter()
            .find(|(_, n)| *n as f64 >= q * total as f64)
            .map_or(f64::INFINITY, |(le, _)| *le)
    };
    println!(
        "1,000 Services, 50 more interfaces per node: {total} passes over {:.0} s (three \
         nodes), pass time p50 <= {:.2} ms, p99 <= {:.2} ms (histogram bucket bounds)",
        started.elapsed().as_secs_f64(),
        quantile(0.5) * 1000.0,
        quantile(0.99) * 1000.0
    );
    if !gaps.is_empty() {
        report(
            "hard kill (SIGKILL) with 1,000 Services and 50 more interfaces",
            &mut gaps,
        );
    }
}

/// Per node: its speaker's process id and its pass-time histogram's cumulative buckets
/// (upper bound, count).
type Buckets = Vec<(Option<u32>, Vec<(f64, u64)>)>;

fn pass_buckets(lab: &SpeakerLan) -> Buckets {
    lab.nodes
        .iter()
        .map(|(_, host, process)| {
            let metrics = host.run("curl", &["-s", "http://127.0.0.1:9403/metrics"]);
            let buckets = metrics
                .lines()
                .filter_map(|l| {
                    let rest = l.strip_prefix("herald_speaker_pass_seconds_bucket{le=\"")?;
                    let (le, count) = rest.split_once("\"} ")?;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((le, count.trim().parse::<u64>().ok()?))
                })
                .collect();
            (process.as_ref().map(|p| p.id()), buckets)
        })
        .collect()
}
