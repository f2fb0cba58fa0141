//! Helpers for driving the real herald-controller binary against the test API server.

#![allow(dead_code)] // each test binary uses a different part

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use herald_controller::status::{self, Condition};
use herald_tests::{Process, TestCluster, eventually, free_port};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

pub const WAIT: Duration = Duration::from_secs(30);

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_herald-controller"))
}

/// Starts a controller on the test API server with `extra` flags.
pub fn start_controller(cluster: &TestCluster, extra: &[&str]) -> Process {
    start_controller_on(cluster, free_port(), free_port(), extra)
}

/// Starts a controller serving metrics and health on the given loopback ports.
pub fn start_controller_on(
    cluster: &TestCluster,
    metrics: u16,
    health: u16,
    extra: &[&str],
) -> Process {
    let mut args: Vec<String> = vec![
        "--metrics-bind-address".into(),
        format!("127.0.0.1:{metrics}"),
        "--health-bind-address".into(),
        format!("127.0.0.1:{health}"),
        "--pool-status-interval".into(),
        "200ms".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    cluster.server().run(binary(), &args)
}

/// Runs the controller to its exit and returns whether it succeeded and what it printed.
pub fn run_to_exit(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(binary())
        .args(args)
        .output()
        .expect("the controller runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A pool that serves only the test's namespace, so tests sharing a controller never meet.
pub async fn pool(cluster: &TestCluster, name: &str, spec: Value) -> String {
    let full = cluster.unique_name(name);
    let mut spec = spec;
    if spec.get("serviceAllocation").is_none() {
        spec["serviceAllocation"] = json!({ "namespaces": [cluster.namespace()] });
    }
    apply(
        cluster,
        "herald.dev/v1alpha1",
        "IPAddressPool",
        &full,
        None,
        json!({ "spec": spec }),
    )
    .await;
    full
}

/// Server-side applies an object as a user would (field manager "user").
pub async fn apply(
    cluster: &TestCluster,
    api_version: &str,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    body: Value,
) {
    let mut object = body;
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    object["metadata"]["name"] = json!(name);
    if let Some(ns) = namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    let resource = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        api_version.split_once('/').map_or("", |(g, _)| g),
        api_version.rsplit('/').next().unwrap_or(api_version),
        kind,
    ));
    let api: Api<kube::core::DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(cluster.client(), ns, &resource),
        None => Api::all_with(cluster.client(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply("user").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
}

/// A LoadBalancer Service in the test's namespace with `annotations` and extra `spec` fields.
pub async fn service(cluster: &TestCluster, name: &str, annotations: Value, spec: Value) {
    let mut full_spec = json!({
        "type": "LoadBalancer",
        "ports": [{"port": 80, "protocol": "TCP"}],
        "selector": {"app": name},
    });
    for (k, v) in spec.as_object().expect("an object") {
        full_spec[k] = v.clone();
    }
    let object: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": full_spec,
    }))
    .unwrap();
    Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating Service {name}: {e}"));
}

pub fn services(cluster: &TestCluster) -> Api<Service> {
    Api::namespaced(cluster.client(), cluster.namespace())
}

pub fn ingress(service: &Service) -> Vec<IpAddr> {
    herald_crds::service_status::addresses(service)
}

pub fn allocated(service: &Service) -> Option<Condition> {
    herald_controller::status::allocated_condition(service)
}

/// Waits until the Service shows addresses and returns them.
pub async fn addresses(cluster: &TestCluster, name: &str) -> Vec<IpAddr> {
    let api = services(cluster);
    eventually(WAIT, &format!("an address on Service {name}"), || async {
        let svc = api.get(name).await.ok()?;
        let ips = ingress(&svc);
        (!ips.is_empty()).then_some(ips)
    })
    .await
}

/// Waits until the Service's Allocated condition has `reason`, and returns it.
pub async fn condition(cluster: &TestCluster, name: &str, reason: &str) -> Condition {
    let api = services(cluster);
    eventually(
        WAIT,
        &format!("reason {reason} on Service {name}"),
        || async { allocated(&api.get(name).await.ok()?).filter(|c| c.reason == reason) },
    )
    .await
}

/// Herald's controller's Events about a Service, as `reason: note`. Not the API server's own:
/// its ClusterIP repair loop may report on a Service too (`ClusterIPNotAllocated`).
pub async fn events(cluster: &TestCluster, name: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(cluster.client(), cluster.namespace());
    let list = api
        .list(&ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some(status::FIELD_MANAGER))
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect()
}

/// Waits until an Event with `reason` exists for the Service.
pub async fn event(cluster: &TestCluster, name: &str, reason: &str) -> String {
    eventually(
        WAIT,
        &format!("a {reason} Event for Service {name}"),
        || async {
            events(cluster, name)
                .await
                .into_iter()
                .find(|e| e.starts_with(&format!("{reason}:")))
        },
    )
    .await
}
