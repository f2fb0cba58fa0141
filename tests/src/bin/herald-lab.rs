//! `herald-lab`: Herald running for real on this machine (see `herald_tests::lab`), with
//! a demo to watch. `scripts/lab` builds everything and runs it.
//!
//! - `up`: stops a lab left running, starts a new one in the background (`serve`), shows its
//!   demo as it runs, and returns once the demo is over; the lab stays up.
//! - `down`: stops the lab and removes every namespace, process and file it made.
//! - `bench`: failover through real traffic, over many trials, on a lab of its own.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use herald_tests::lab::{Lab, LabConfig, Reply, WAIT, api_endpoint};
use herald_tests::{cluster_api_server, eventually, lan, namespace_on, node};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(about = "Herald's lab: a cluster made of network namespaces on this machine")]
struct Cli {
    /// Where the running lab keeps its PID, logs, kubeconfig and helper commands.
    #[arg(long, global = true, default_value = "/run/herald-lab")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Start the lab in the background and show the demo.
    Up,
    /// Stop the lab and remove everything it made.
    Down,
    /// Measure failover through real traffic, on a lab of its own.
    Bench {
        /// Node failures per Service.
        #[arg(long, default_value_t = 20)]
        trials: usize,
    },
    /// Run the lab in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve,
}

const NAMESPACE: &str = "demo";
const CLUSTER_SERVICE: &str = "echo-cluster";
const LOCAL_SERVICE: &str = "echo-local";
/// The line `serve` prints when the demo is over, which ends `up`.
const DEMO_DONE: &str = "The lab stays up.";

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Action::Up => up(&cli.state_dir).await,
        Action::Down => down(&cli.state_dir),
        Action::Serve => serve(&cli.state_dir).await,
        Action::Bench { trials } => bench(trials).await,
    }
}

#[expect(
    clippy::zombie_processes,
    reason = "the lab outlives this command on purpose; init reaps it"
)]
async fn up(state: &Path) {
    down(state);
    std::fs::create_dir_all(state.join("logs"))
        .unwrap_or_else(|e| panic!("creating {}: {e}", state.display()));
    let log_path = state.join("lab.log");
    let log = std::fs::File::create(&log_path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
    // A session of its own, so that the lab outlives this command and its terminal.
    let mut serve = Command::new("setsid")
        .arg(std::env::current_exe().expect("this program's path"))
        .arg("--state-dir")
        .arg(state)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a log file handle"))
        .stderr(log)
        .spawn()
        .expect("starting the lab");
    std::fs::write(state.join("pid"), serve.id().to_string()).expect("writing the lab's PID");

    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    let mut shown = 0;
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        print!("{}", &text[shown..]);
        shown = text.len();
        if text.contains(DEMO_DONE) {
            return;
        }
        if !matches!(serve.try_wait(), Ok(None)) {
            eprintln!(
                "\nThe lab stopped before the demo was over. Its processes' logs are in {}; \
                 `./scripts/lab down` removes them.",
                state.join("logs").display()
            );
            std::process::exit(1);
        }
        tokio::select! {
            _ = interrupt.recv() => {
                println!("\nInterrupted: stopping the lab.");
                down(state);
                std::process::exit(130);
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Stops the lab `serve` process (SIGTERM: it removes what it made), then whatever a lab that
/// could not clean up left: namespaces, its API bridge, the state folder.
fn down(state: &Path) {
    let pid = std::fs::read_to_string(state.join("pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok());
    if let Some(pid) = pid.filter(|pid| running(*pid)) {
        println!("Stopping the lab (PID {pid})...");
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        for _ in 0..200 {
            if !running(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if running(pid) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    lan::remove_leftovers();
    node::remove_leftovers();
    if let Ok(data_dir) = std::fs::read_to_string(state.join("api-data-dir")) {
        // The root side of the API bridge, if the lab died before it could stop it.
        let _ = Command::new("pkill")
            .args(["-f", &format!("UNIX-LISTEN:{}", data_dir.trim())])
            .status();
    }
    if state.exists() {
        std::fs::remove_dir_all(state)
            .unwrap_or_else(|e| panic!("removing {}: {e}", state.display()));
    }
}

fn running(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) is not running.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z'))
    })
}

async fn start_lab(name: &str, namespace: &str, log_dir: PathBuf) -> Lab {
    let cluster = namespace_on(cluster_api_server(api_endpoint()).await, namespace).await;
    let exe = std::env::current_exe().expect("this program's path");
    let profile_dir = exe.parent().expect("a folder");
    let config = LabConfig::three_nodes(name, profile_dir, cluster.server(), log_dir);
    Lab::start(cluster, config).await
}

async fn serve(state: &Path) {
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        lab = demo(state) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            println!("Stopping: removing the lab's processes and namespaces.");
            drop(lab);
        }
        _ = terminate.recv() => println!("Stopped during the demo."),
        _ = interrupt.recv() => println!("Stopped during the demo."),
    }
}

/// Starts the lab and walks through what Herald does in it; returns the running lab.
async fn demo(state: &Path) -> Lab {
    step("Starting the lab");
    say("A real Kubernetes cluster: kube-apiserver (with etcd), kube-controller-manager and");
    say("kube-scheduler on the control-plane host, and three nodes, each running containerd,");
    say("kubelet and kube-proxy (iptables mode). Herald is installed with its Helm chart from its");
    say(
        "own image: the speaker DaemonSet on every node, the controller Deployment's two replicas.",
    );
    say("An echo Deployment (one Pod per node) replies with the address it sees the caller as. A");
    say("client host sends the traffic. Every host is a network namespace on one bridge");
    say("(documentation addresses only):");
    let mut lab = start_lab("lab", NAMESPACE, state.join("logs")).await;
    write_explore_helpers(state, &lab);
    say(&format!(
        "  control plane {}   client {}",
        lab.control_plane.ipv4, lab.client.ipv4
    ));
    let pods = lab.pods().await;
    for node in &lab.nodes {
        let pods: Vec<String> = pods
            .iter()
            .filter(|p| p.node == node.name)
            .map(|p| {
                let ips: Vec<String> = p.ips.iter().map(IpAddr::to_string).collect();
                format!("{} {}", p.name, ips.join(" "))
            })
            .collect();
        say(&format!(
            "  {} {} {} (MAC {})   pods: {}",
            node.name,
            node.host.ipv4,
            node.host.ipv6,
            node.host.mac,
            pods.join(", ")
        ));
    }
    kubectl(&lab, &["get", "pods", "-n", "herald-system", "-o", "wide"]);
    pause().await;

    step("A pool of addresses, and two LoadBalancer Services over the echo pods");
    kubectl(&lab, &["get", "ipaddresspools,l2advertisements"]);
    lab.create_service(CLUSTER_SERVICE, false).await;
    lab.create_service(LOCAL_SERVICE, true).await;
    let cluster_ips = lab.addresses(CLUSTER_SERVICE).await;
    let local_ips = lab.addresses(LOCAL_SERVICE).await;
    kubectl(&lab, &["get", "svc", "-n", NAMESPACE, "-o", "wide"]);
    pause().await;

    step("Which node answers for each address, and why (the herald.dev/Announced condition)");
    for service in [CLUSTER_SERVICE, LOCAL_SERVICE] {
        let message = lab.announced(service, "Announced").await;
        say(&format!("  {service}: {message}"));
    }
    pause().await;

    step("The client reaches both Services, over IPv4 and IPv6");
    for (service, ips) in [(CLUSTER_SERVICE, &cluster_ips), (LOCAL_SERVICE, &local_ips)] {
        let node = lab.settled(service, ips[0]).await;
        for ip in ips.iter() {
            let answer = match lab.curl(*ip) {
                Ok(body) => annotate(&lab, &body),
                Err(e) => format!("failed: {e}"),
            };
            say(&format!(
                "  curl {:<16} ({service}) → {answer}",
                ip.to_string()
            ));
        }
        say(&format!(
            "  the client's neighbour entry for {} is {}'s MAC {}",
            ips[0], lab.nodes[node].name, lab.nodes[node].host.mac
        ));
    }
    say(&format!(
        "  {LOCAL_SERVICE} (externalTrafficPolicy: Local): the pod saw the client's own address, {}.",
        lab.client.ipv4
    ));
    say(&format!(
        "  {CLUSTER_SERVICE} (Cluster): kube-proxy masqueraded the request, so the pod saw a node's address."
    ));
    pause().await;

    step("The node answering for echo-cluster fails");
    let ip = cluster_ips[0];
    let node = lab.settled(CLUSTER_SERVICE, ip).await;
    say(&format!(
        "  The client sends a request to {ip} every 5 ms, each on a new connection. Now {} loses",
        lab.nodes[node].name
    ));
    say(
        "  its link, and everything on it dies (containerd, kubelet, kube-proxy, every container),",
    );
    say("  as when a machine loses power.");
    let (gap, response) = lab.failover(ip, node).await;
    say(&format!(
        "  Traffic flowed again {} ms after the failure: {}",
        gap.as_millis(),
        annotate(&lab, &response)
    ));
    let now = lab.announcer(CLUSTER_SERVICE).await;
    say(&format!(
        "  {} answers now: {}",
        lab.nodes[now].name,
        lab.announced(CLUSTER_SERVICE, "Announced").await
    ));
    if let Some(neighbour) = lab.neighbour_node(ip) {
        say(&format!(
            "  The client's neighbour entry for {ip} moved to {}'s MAC {}.",
            lab.nodes[neighbour].name, lab.nodes[neighbour].host.mac
        ));
    }
    say(
        "  Until the node controller marks the failed node NotReady (it waits 50 s for a kubelet's",
    );
    say("  status) and its Pod's endpoints unready, kube-proxy still sends some requests there.");
    pause().await;

    step("The node comes back");
    lab.restore_node(node).await;
    let back = lab.settled(CLUSTER_SERVICE, ip).await;
    say(&format!(
        "  {} is back; {ip} is answered by {} (each address has one preferred node among the",
        lab.nodes[node].name, lab.nodes[back].name
    ));
    say("  live ones, so addresses go back when their node does).");
    pause().await;

    step("A node loses echo-local's endpoint: kubectl herald why tells the whole story");
    let before = lab.settled(LOCAL_SERVICE, local_ips[0]).await;
    let node = lab.nodes[before].name.clone();
    let pods = lab.pods().await;
    let pod = pods
        .iter()
        .find(|p| p.node == node)
        .expect("an echo Pod on every node");
    say(&format!(
        "  {node} answers for {LOCAL_SERVICE}. Cordoned, with its echo Pod deleted, it has no ready"
    ));
    say("  endpoint (the new Pod waits: one per node), so it may no longer answer.");
    kubectl(&lab, &["cordon", &node]);
    kubectl(&lab, &["delete", "pod", "-n", NAMESPACE, &pod.name]);
    eventually(
        WAIT,
        &format!("{LOCAL_SERVICE} to leave {node}"),
        || async { (lab.announcer(LOCAL_SERVICE).await != before).then_some(()) },
    )
    .await;
    herald_why(&lab, LOCAL_SERVICE);
    kubectl(&lab, &["uncordon", &node]);
    let back = eventually(WAIT, &format!("an echo Pod on {node} again"), || async {
        lab.pods()
            .await
            .into_iter()
            .find(|p| p.node == node && p.name != pod.name)
    })
    .await;
    let ready = format!("pod/{}", back.name);
    kubectl(
        &lab,
        &[
            "wait",
            "--for=condition=Ready",
            "-n",
            NAMESPACE,
            &ready,
            "--timeout=60s",
        ],
    );
    explore(state, &lab, &cluster_ips, &local_ips);
    lab
}

/// `kubectl-herald`, built beside this program (`scripts/lab` builds it).
fn plugin() -> PathBuf {
    std::env::current_exe()
        .expect("this program's path")
        .with_file_name("kubectl-herald")
}

/// Runs `kubectl herald why` as a user would, and shows what it says.
fn herald_why(lab: &Lab, service: &str) {
    say(&format!("  $ kubectl herald why {service} -n {NAMESPACE}"));
    let output = Command::new(plugin())
        .arg("--kubeconfig")
        .arg(lab.cluster.server().kubeconfig_path())
        .args(["why", service, "-n", NAMESPACE])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", plugin().display()));
    let text = String::from_utf8_lossy(if output.status.success() {
        &output.stdout
    } else {
        &output.stderr
    })
    .into_owned();
    for line in text.lines() {
        say(&format!("  {line}"));
    }
}

fn explore(state: &Path, lab: &Lab, cluster_ips: &[IpAddr], local_ips: &[IpAddr]) {
    step("Explore");
    let bin = state.join("bin");
    say(&format!("  source {}", state.join("env").display()));
    say(&format!("  kubectl get svc -n {NAMESPACE}"));
    say(&format!(
        "  kubectl describe svc -n {NAMESPACE} {LOCAL_SERVICE}"
    ));
    say(&format!(
        "  kubectl herald why -n {NAMESPACE} {CLUSTER_SERVICE}      kubectl herald services -A"
    ));
    say("  kubectl get ipaddresspools -o wide");
    say(&format!("  kubectl get events -n {NAMESPACE}"));
    say(&format!(
        "  lab-client curl http://{}/      lab-client curl 'http://[{}]/'",
        cluster_ips[0], local_ips[1]
    ));
    say("  lab-client ip neigh             lab-node0 iptables-save -t nat | grep KUBE-EXT");
    say(&format!(
        "  (lab-<host> runs a command on that host; hosts: {}; they are in {})",
        std::iter::once("cp")
            .chain(std::iter::once("client"))
            .chain(lab.nodes.iter().map(|n| n.host.name.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        bin.display()
    ));
    say(&format!(
        "  Logs of every process: {}",
        state.join("logs").display()
    ));
    say("  Stop the lab and remove everything it made: ./scripts/lab down");
    say("");
    say(DEMO_DONE);
}

/// `env` (KUBECONFIG and PATH) and `bin/`: kubectl and one `lab-<host>` command per host.
fn write_explore_helpers(state: &Path, lab: &Lab) {
    let bin = state.join("bin");
    std::fs::create_dir_all(&bin).expect("creating the lab's bin folder");
    let server = lab.cluster.server();
    std::os::unix::fs::symlink(server.bin_dir().join("kubectl"), bin.join("kubectl"))
        .expect("linking kubectl");
    std::os::unix::fs::symlink(plugin(), bin.join("kubectl-herald"))
        .expect("linking kubectl-herald");
    let hosts = [&lab.control_plane, &lab.client]
        .into_iter()
        .chain(lab.nodes.iter().map(|n| &n.host));
    for host in hosts {
        let path = bin.join(format!("lab-{}", host.name));
        std::fs::write(
            &path,
            format!("#!/bin/sh\nexec ip netns exec {} \"$@\"\n", host.netns),
        )
        .expect("writing a host command");
        let _ = Command::new("chmod").arg("+x").arg(&path).status();
    }
    std::fs::write(
        state.join("env"),
        format!(
            "export KUBECONFIG={}\nexport PATH={}:\"$PATH\"\n",
            server.kubeconfig_path().display(),
            bin.display()
        ),
    )
    .expect("writing the lab's env file");
    std::fs::write(
        state.join("api-data-dir"),
        server.data_dir().display().to_string(),
    )
    .expect("writing the API server's folder");
}

/// Fails the node answering for each Service `trials` times under traffic, and prints the
/// gaps' percentiles.
async fn bench(trials: usize) {
    let log_dir = tempfile::Builder::new()
        .prefix("herald-lab-bench-")
        .tempdir()
        .expect("a folder for the benchmark's logs");
    let mut lab = start_lab("bench", "bench", log_dir.path().to_owned()).await;
    lab.create_service(CLUSTER_SERVICE, false).await;
    lab.create_service(LOCAL_SERVICE, true).await;
    println!(
        "failover through real traffic: {trials} node failures per case (link down, everything on \
         the node killed); gap = failure → first request sent after it that succeeds (one every 5 ms)"
    );
    for (service, family) in [
        (CLUSTER_SERVICE, 0),
        (LOCAL_SERVICE, 0),
        (CLUSTER_SERVICE, 1),
    ] {
        let ip = lab.addresses(service).await[family];
        let mut gaps = Vec::new();
        for _ in 0..trials {
            let node = lab.settled(service, ip).await;
            let (gap, _) = lab.failover(ip, node).await;
            gaps.push(gap);
            lab.restore_node(node).await;
        }
        gaps.sort();
        let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q).round() as usize].as_millis();
        println!(
            "  {service:<13} {ip:<14} p50 {} ms  p99 {} ms  max {} ms",
            at(0.5),
            at(0.99),
            gaps.last().map(Duration::as_millis).unwrap_or_default()
        );
    }
}

/// A pod's reply, with the node whose address the pod saw, if it was a node's.
fn annotate(lab: &Lab, body: &str) -> String {
    let node = Reply::parse(body)
        .and_then(|reply| lab.node_of_address(reply.saw))
        .map(|i| format!(" ({}'s address)", lab.nodes[i].name));
    format!("{body}{}", node.unwrap_or_default())
}

fn kubectl(lab: &Lab, args: &[&str]) {
    say(&format!("  $ kubectl {}", args.join(" ")));
    for line in lab.cluster.kubectl(args).lines() {
        say(&format!("  {line}"));
    }
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn say(line: &str) {
    println!("{line}");
}

/// Time to read a step before the next one.
async fn pause() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}
