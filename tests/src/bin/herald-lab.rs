//! `herald-lab`: Herald running for real on this machine (see `herald_tests::lab`), with
//! a demo to watch. `scripts/lab` builds everything and runs it.
//!
//! - `up`: stops a lab left running, starts a new one in the background (`serve`), shows its
//!   demo as it runs, and returns once the demo is over; the lab stays up.
//! - `bgp`: the same with BGP: a router on the LAN, FRR beside every speaker, and a demo of
//!   routes spread over the nodes (ECMP) and a BFD failover.
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
    /// Start the lab with BGP (a router, FRR beside every speaker) and show its demo.
    Bgp,
    /// Stop the lab and remove everything it made.
    Down,
    /// Measure failover through real traffic, on a lab of its own.
    Bench {
        /// Node failures per Service.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Measure BGP's failover instead: through the router, with BFD.
        #[arg(long)]
        bgp: bool,
    },
    /// Run the lab in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        bgp: bool,
    },
}

const NAMESPACE: &str = "demo";
const CLUSTER_SERVICE: &str = "echo-cluster";
const LOCAL_SERVICE: &str = "echo-local";
const BGP_SERVICE: &str = "echo-bgp";
const BGP_LOCAL_SERVICE: &str = "echo-bgp-local";
/// The line `serve` prints when the demo is over, which ends `up`.
const DEMO_DONE: &str = "The lab stays up.";

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Action::Up => up(&cli.state_dir, false).await,
        Action::Bgp => up(&cli.state_dir, true).await,
        Action::Down => down(&cli.state_dir),
        Action::Serve { bgp } => serve(&cli.state_dir, bgp).await,
        Action::Bench { trials, bgp: false } => bench(trials).await,
        Action::Bench { trials, bgp: true } => bench_bgp(trials).await,
    }
}

#[expect(
    clippy::zombie_processes,
    reason = "the lab outlives this command on purpose; init reaps it"
)]
async fn up(state: &Path, bgp: bool) {
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
        .args(bgp.then_some("--bgp"))
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

async fn start_lab(name: &str, namespace: &str, log_dir: PathBuf, bgp: bool) -> Lab {
    let cluster = namespace_on(cluster_api_server(api_endpoint()).await, namespace).await;
    let exe = std::env::current_exe().expect("this program's path");
    let profile_dir = exe.parent().expect("a folder");
    let mut config = LabConfig::three_nodes(name, profile_dir, cluster.server(), log_dir);
    if bgp {
        config = config.with_bgp();
    }
    Lab::start(cluster, config).await
}

async fn serve(state: &Path, bgp: bool) {
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    let demo = async {
        if bgp {
            bgp_demo(state).await
        } else {
            demo(state).await
        }
    };
    tokio::select! {
        lab = demo => {
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
    let mut lab = start_lab("lab", NAMESPACE, state.join("logs"), false).await;
    write_explore_helpers(state, &lab);
    say(&format!(
        "  control plane {}   client {}",
        lab.control_plane.ipv4, lab.client.ipv4
    ));
    show_nodes(&lab).await;
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
    let pod = lab.echo_pod_on(before).await;
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
    explore(
        state,
        &lab,
        &[
            format!("kubectl get svc -n {NAMESPACE}"),
            format!("kubectl describe svc -n {NAMESPACE} {LOCAL_SERVICE}"),
            format!(
                "kubectl herald why -n {NAMESPACE} {CLUSTER_SERVICE}      kubectl herald services -A"
            ),
            "kubectl get ipaddresspools -o wide".into(),
            format!("kubectl get events -n {NAMESPACE}"),
            format!(
                "lab-client curl http://{}/      lab-client curl 'http://[{}]/'",
                cluster_ips[0], local_ips[1]
            ),
            "lab-client ip neigh             lab-node0 iptables-save -t nat | grep KUBE-EXT".into(),
        ],
    );
    lab
}

/// Starts the lab with BGP and walks through what Herald does with it; returns the running lab.
async fn bgp_demo(state: &Path) -> Lab {
    step("Starting the lab, with BGP");
    say(
        "The lab's real Kubernetes cluster (see `./scripts/lab`), with Herald installed by its Helm",
    );
    say(
        "chart with `speaker.bgp.enabled=true`: every speaker Pod runs FRR (zebra, bfdd, bgpd) in a",
    );
    say(
        "second container, from Herald's FRR image. A top-of-rack router (BIRD 2) on the LAN peers",
    );
    say(
        "with every node, and a client outside, on a network of its own behind the router, reaches",
    );
    say("the Services only through the routes the router learns (documentation addresses only):");
    let mut lab = start_lab("lab", NAMESPACE, state.join("logs"), true).await;
    write_explore_helpers(state, &lab);
    let bgp = lab.bgp();
    say(&format!(
        "  router {} (AS 64500)   outside client {} behind it   control plane {}",
        bgp.router.host.ipv4, bgp.outside.ipv4, lab.control_plane.ipv4
    ));
    show_nodes(&lab).await;
    pause().await;

    step("A BGP peer with BFD, and a pool that BGP advertises");
    kubectl(
        &lab,
        &[
            "get",
            "bfdprofiles,bgppeers,bgpadvertisements",
            "-o",
            "wide",
        ],
    );
    kubectl(&lab, &["get", "ipaddresspools"]);
    let cluster_ip = lab.create_bgp_service(BGP_SERVICE, false).await;
    let local_ip = lab.create_bgp_service(BGP_LOCAL_SERVICE, true).await;
    kubectl(&lab, &["get", "svc", "-n", NAMESPACE]);
    pause().await;

    step("Sessions, where users look for them: BGPSessionState objects and the Service");
    lab.session_states("be established with BFD up and both prefixes", |s| {
        s.bgp_state.as_deref() == Some("Established")
            && s.bfd_state.as_deref() == Some("Up")
            && s.prefixes_advertised == Some(2)
    })
    .await;
    kubectl(&lab, &["get", "bgpsessionstates"]);
    for service in [BGP_SERVICE, BGP_LOCAL_SERVICE] {
        let message = lab.announced(service, "Announced").await;
        say(&format!("  {service}: {message}"));
    }
    pause().await;

    step("The router's view: one route through every node (ECMP)");
    let all: Vec<usize> = (0..lab.nodes.len()).collect();
    lab.wait_router_nodes(cluster_ip, &all).await;
    lab.wait_router_nodes(local_ip, &all).await;
    router_shows(&lab, &["birdc", "show", "protocols"]);
    router_shows(&lab, &["ip", "route", "show", "proto", "bird"]);
    say(&format!(
        "  30 requests from the outside client to {BGP_LOCAL_SERVICE} ({local_ip}), each on a new connection:"
    ));
    let mut by_node = std::collections::BTreeMap::<String, usize>::new();
    let mut saw = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let reply = lab
            .outside_curl(local_ip)
            .ok()
            .and_then(|body| Reply::parse(&body));
        let node = match reply {
            Some(reply) => {
                saw.insert(reply.saw);
                reply.node
            }
            None => "failed".into(),
        };
        *by_node.entry(node).or_default() += 1;
    }
    for (node, count) in &by_node {
        say(&format!(
            "    {count:>2} answered by the echo Pod on {node}"
        ));
    }
    let saw: Vec<String> = saw.iter().map(IpAddr::to_string).collect();
    say("  The router spread them over the nodes; with externalTrafficPolicy Local each node sent");
    say(&format!(
        "  them to its own Pod, which saw the client's own address: {}.",
        saw.join(", ")
    ));
    pause().await;

    step("A node loses echo-bgp-local's endpoint: its route for that Service goes");
    let node = 2;
    let name = lab.nodes[node].name.clone();
    let pod = lab.echo_pod_on(node).await;
    say(&format!(
        "  {name} is cordoned and its echo Pod deleted (the new Pod waits: one per node)."
    ));
    kubectl(&lab, &["cordon", &name]);
    kubectl(&lab, &["delete", "pod", "-n", NAMESPACE, &pod.name]);
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != node).collect();
    lab.wait_router_nodes(local_ip, &others).await;
    lab.wait_router_nodes(cluster_ip, &all).await;
    router_shows(&lab, &["ip", "route", "show", "proto", "bird"]);
    say(&format!(
        "  {BGP_LOCAL_SERVICE} ({local_ip}) is advertised by the nodes with a ready endpoint only;"
    ));
    say(&format!(
        "  {BGP_SERVICE} (Cluster, {cluster_ip}) still by every node: kube-proxy forwards to Pods elsewhere."
    ));
    say(&format!(
        "  {BGP_LOCAL_SERVICE}: {}",
        lab.announced(BGP_LOCAL_SERVICE, "Announced").await
    ));
    kubectl(&lab, &["uncordon", &name]);
    eventually(
        WAIT,
        &format!("{name} to advertise {local_ip} again"),
        || async { (lab.router_nodes(local_ip) == all).then_some(()) },
    )
    .await;
    pause().await;

    step("A node fails: BFD withdraws its routes within a few hundred milliseconds");
    let node = 1;
    say(&format!(
        "  The outside client sends a request to {local_ip} every 5 ms, each on a new connection. Now"
    ));
    say(&format!(
        "  {} loses its link, and everything on it dies, as when a machine loses power.",
        lab.nodes[node].name
    ));
    let failover = lab.bgp_failover(local_ip, node).await;
    say(&format!(
        "  The router withdrew {}'s route {} ms after the failure (BFD, 100 ms x 3).",
        lab.nodes[node].name,
        failover.withdrawn.as_millis()
    ));
    let failing = failover
        .failing
        .map(|d| format!("the last one sent {} ms after the failure", d.as_millis()))
        .unwrap_or_else(|| "none".into());
    say(&format!(
        "  Of the {} requests sent until then, {} failed ({failing}):",
        failover.sent, failover.failed
    ));
    say("  those the router hashed onto the failed node. The others went through the other nodes");
    say("  all along.");
    router_shows(&lab, &["birdc", "show", "protocols"]);
    router_shows(&lab, &["ip", "route", "show", "proto", "bird"]);
    say(&format!(
        "  {}'s BGPSessionState keeps its last reading: its speaker went with the node. The router's",
        lab.nodes[node].name
    ));
    say("  side (birdc) shows the session down.");
    pause().await;

    step("The node comes back");
    lab.restore_node(node).await;
    lab.wait_router_nodes(local_ip, &all).await;
    lab.wait_router_nodes(cluster_ip, &all).await;
    lab.session_states("be established again", |s| {
        s.bgp_state.as_deref() == Some("Established") && s.prefixes_advertised == Some(2)
    })
    .await;
    router_shows(&lab, &["ip", "route", "show", "proto", "bird"]);
    kubectl(&lab, &["get", "bgpsessionstates"]);

    explore(
        state,
        &lab,
        &[
            "kubectl get bgpsessionstates -o wide      kubectl get bgppeers,bgpadvertisements,bfdprofiles"
                .into(),
            format!("kubectl herald why -n {NAMESPACE} {BGP_LOCAL_SERVICE}"),
            format!("kubectl get events -n {NAMESPACE}"),
            "birdc show route all      birdc show bfd sessions      (the router's BIRD)".into(),
            "lab-router ip route".into(),
            format!(
                "lab-outside curl http://{local_ip}/      lab-outside curl http://{cluster_ip}/"
            ),
        ],
    );
    lab
}

/// Runs `command` on the router (`birdc` on its control socket) and shows what it printed.
fn router_shows(lab: &Lab, command: &[&str]) {
    let router = &lab.bgp().router;
    say(&format!("  router$ {}", command.join(" ")));
    let text = match command {
        ["birdc", args @ ..] => router.birdc(args),
        [program, args @ ..] => router.host.run(program, args),
        [] => String::new(),
    };
    for line in text.lines().filter(|line| !line.starts_with("BIRD ")) {
        say(&format!("  {line}"));
    }
}

/// Each node's addresses and MAC, with its echo Pods, and Herald's Pods.
async fn show_nodes(lab: &Lab) {
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
    kubectl(lab, &["get", "pods", "-n", "herald-system", "-o", "wide"]);
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

/// What to try next (`tries`, one command a line), and where the helpers and logs are.
fn explore(state: &Path, lab: &Lab, tries: &[String]) {
    step("Explore");
    let bin = state.join("bin");
    say(&format!("  source {}", state.join("env").display()));
    for line in tries {
        say(&format!("  {line}"));
    }
    say(&format!(
        "  (lab-<host> runs a command on that host; hosts: {}; they are in {})",
        lab_hosts(lab)
            .map(|host| host.name.as_str())
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
    for host in lab_hosts(lab) {
        let path = bin.join(format!("lab-{}", host.name));
        std::fs::write(
            &path,
            format!("#!/bin/sh\nexec ip netns exec {} \"$@\"\n", host.netns),
        )
        .expect("writing a host command");
        let _ = Command::new("chmod").arg("+x").arg(&path).status();
    }
    if let Some(bgp) = &lab.bgp {
        let path = bin.join("birdc");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nexec /usr/sbin/birdc -s {} \"$@\"\n",
                bgp.router.dir().join("bird.ctl").display()
            ),
        )
        .expect("writing the router's birdc");
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

/// Every host of the lab: the control plane, the client, the nodes, and with BGP the router and
/// the outside client.
fn lab_hosts(lab: &Lab) -> impl Iterator<Item = &lan::Host> {
    [&lab.control_plane, &lab.client]
        .into_iter()
        .chain(lab.nodes.iter().map(|n| &n.host))
        .chain(
            lab.bgp
                .iter()
                .flat_map(|bgp| [&bgp.router.host, &bgp.outside]),
        )
}

/// Fails the node answering for each Service `trials` times under traffic, and prints the
/// gaps' percentiles.
async fn bench(trials: usize) {
    let log_dir = tempfile::Builder::new()
        .prefix("herald-lab-bench-")
        .tempdir()
        .expect("a folder for the benchmark's logs");
    let mut lab = start_lab("bench", "bench", log_dir.path().to_owned(), false).await;
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

/// Fails each node in turn `trials` times under traffic from the outside client through the
/// router to a `Local` Service advertised over BGP with BFD, and prints the percentiles of how
/// long the router took to withdraw the node's route and of how long requests failed.
async fn bench_bgp(trials: usize) {
    let log_dir = tempfile::Builder::new()
        .prefix("herald-lab-bench-")
        .tempdir()
        .expect("a folder for the benchmark's logs");
    let mut lab = start_lab("bench", "bench", log_dir.path().to_owned(), true).await;
    let ip = lab.create_bgp_service(BGP_LOCAL_SERVICE, true).await;
    let all: Vec<usize> = (0..lab.nodes.len()).collect();
    println!(
        "BGP failover through real traffic: {trials} node failures (link down, everything on the \
         node killed), BFD 100 ms x 3; requests from the outside client through the router to \
         {BGP_LOCAL_SERVICE} (Local), one every 5 ms"
    );
    let mut withdrawn = Vec::new();
    let mut failing = Vec::new();
    for trial in 0..trials {
        lab.wait_router_nodes(ip, &all).await;
        let failover = lab.bgp_failover(ip, trial % all.len()).await;
        withdrawn.push(failover.withdrawn);
        failing.push(failover.failing.unwrap_or_default());
        lab.restore_node(trial % all.len()).await;
    }
    for (what, mut gaps) in [
        ("route withdrawn after", withdrawn),
        ("requests failing for", failing),
    ] {
        gaps.sort();
        let at = |q: f64| gaps[((gaps.len() - 1) as f64 * q).round() as usize].as_millis();
        println!(
            "  {what:<22} p50 {} ms  p99 {} ms  max {} ms",
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
