#![allow(dead_code)] // each test binary uses a different part

//! What the plugin's integration tests share: running `kubectl-herald` and Herald's real
//! controller against the test API server, and reading the tables it prints.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use herald_crds::conditions;
use herald_tests::{Process, TestCluster, eventually, free_port};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// What one `kubectl herald` run printed, and whether it succeeded.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Creates LoadBalancer Service `name` (port 80, selecting `app: name`) with `annotations`;
/// `spec` adds to its spec or replaces parts of it.
pub async fn service(cluster: &TestCluster, name: &str, annotations: Value, spec: Value) {
    let mut full = json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                          "selector": {"app": name}, "ports": [{"port": 80}]});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations}, "spec": full}))
    .unwrap();
    Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
}

pub fn kubectl_herald(cluster: &TestCluster, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_kubectl-herald"))
        .arg("--kubeconfig")
        .arg(cluster.server().kubeconfig_path())
        .args(args)
        .output()
        .expect("running kubectl-herald");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The real herald-controller, built beside the plugin (`cargo test --workspace` builds it).
pub fn start_controller(cluster: &TestCluster) -> Process {
    let controller =
        Path::new(env!("CARGO_BIN_EXE_kubectl-herald")).with_file_name("herald-controller");
    assert!(
        controller.exists(),
        "build it first: cargo build -p herald-controller"
    );
    cluster.server().run(
        &controller,
        &[
            "--leader-elect=false".into(),
            "--metrics-bind-address".into(),
            format!("127.0.0.1:{}", free_port()),
            "--health-bind-address".into(),
            format!("127.0.0.1:{}", free_port()),
        ],
    )
}

pub const WAIT: Duration = Duration::from_secs(30);

/// Waits for the controller's Allocated condition to have `reason`.
pub async fn allocated(cluster: &TestCluster, name: &str, reason: &str) {
    eventually(WAIT, &format!("{reason} on {name}"), || async {
        let service = Api::<Service>::namespaced(cluster.client(), cluster.namespace())
            .get(name)
            .await
            .ok()?;
        service
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == conditions::ALLOCATED && c.reason == reason)
            .map(drop)
    })
    .await
}

pub async fn node(cluster: &TestCluster, name: &str, labels: Value) {
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    Api::<Node>::all(cluster.client())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
}

/// A heartbeat Lease as a speaker keeps it, renewed at `renewed` for 300 s (3 s when stale).
pub async fn heartbeat(cluster: &TestCluster, node: &str, fresh: bool) {
    let (renewed, seconds) = if fresh {
        (Timestamp::now(), 300)
    } else {
        (Timestamp::now() - SignedDuration::from_hours(1), 3)
    };
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": herald_speaker::heartbeat::lease_name(node),
                     "labels": {herald_speaker::heartbeat::LABEL: "true"}},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": seconds,
                 "renewTime": MicroTime(renewed)}}))
    .unwrap();
    Api::<Lease>::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
}

/// An EndpointSlice of `service` with one endpoint per node, ready or not.
pub async fn endpoints(cluster: &TestCluster, service: &str, on: &[(&str, bool)]) {
    let endpoints: Vec<Value> = on
        .iter()
        .enumerate()
        .map(|(i, (node, ready))| {
            json!({"addresses": [format!("10.0.0.{}", i + 1)], "nodeName": node,
                   "conditions": {"ready": ready}})
        })
        .collect();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-1"),
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": [{"port": 80}]}))
    .unwrap();
    Api::<EndpointSlice>::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();
}

pub fn why(cluster: &TestCluster, name: &str) -> Value {
    let run = kubectl_herald(
        cluster,
        &["why", name, "-n", cluster.namespace(), "-o", "json"],
    );
    assert!(run.success, "kubectl herald why {name}: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// A table's lines as cells (columns are two or more spaces apart).
pub fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().map(cells).collect()
}

/// The cells of the table's row for `source` (its first column).
pub fn row_of(table: &str, source: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{source} ")))
        .unwrap_or_else(|| panic!("no row for {source} in\n{table}"));
    cells(line)
}

fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}
