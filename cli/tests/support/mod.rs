#![allow(dead_code)] // each test binary uses a different part

//! What the plugin's integration tests share: running `kubectl-herald` and Herald's real
//! controller against the test API server, and reading the tables it prints.

use std::path::Path;
use std::process::Command;

use herald_tests::{Process, TestCluster, free_port};
use k8s_openapi::api::core::v1::Service;
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
