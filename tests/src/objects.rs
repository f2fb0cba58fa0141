//! The objects that the labs write as a cluster's own components would (Nodes, a pool that only
//! their nodes announce), and what they read back from Herald (the Announced condition).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::{TestCluster, eventually};

/// The label on a lab's Nodes (the value is the test's namespace) that its L2Advertisement
/// selects, so that labs sharing an API server never announce each other's pools.
pub const NODE_LABEL: &str = "herald-test";
const FIELD_MANAGER: &str = "herald-tests";

/// A Node object `name` with the lab's label, `addresses` as its InternalIPs and, when given,
/// its pod networks.
pub async fn create_node(
    cluster: &TestCluster,
    name: &str,
    addresses: &[IpAddr],
    pod_cidrs: &[String],
) {
    let mut spec = json!({});
    if let Some(first) = pod_cidrs.first() {
        spec = json!({"podCIDR": first, "podCIDRs": pod_cidrs});
    }
    let object: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {NODE_LABEL: cluster.namespace(),
                                             "kubernetes.io/hostname": name}},
        "spec": spec,
    }))
    .expect("a Node");
    let api: Api<Node> = Api::all(cluster.client());
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating Node {name}: {e}"));
    let mut addresses: Vec<Value> = addresses
        .iter()
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": name}));
    let status = json!({"status": {"addresses": addresses,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "the lab's node is up"}]}});
    // A merge patch: server-side apply cannot hold two InternalIP addresses, as `addresses`
    // is keyed on type in the schema (kubernetes#103411); the kubelet patches it too.
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("writing the status of Node {name}: {e}"));
}

/// An IPAddressPool `pool` with `addresses`, and an L2Advertisement of it that selects only the
/// lab's nodes.
pub async fn pool_for_lab_nodes(cluster: &TestCluster, pool: &str, addresses: &[&str]) {
    apply_herald(
        cluster,
        json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": pool}, "spec": {"addresses": addresses},
        }),
    )
    .await;
    apply_herald(
        cluster,
        json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
            "metadata": {"name": pool},
            "spec": {"ipAddressPools": [pool],
                     "nodeSelectors": [{"matchLabels": {NODE_LABEL: cluster.namespace()}}]},
        }),
    )
    .await;
}

/// Server-side applies one of Herald's objects (`herald.dev/v1alpha1`).
pub async fn apply_herald(cluster: &TestCluster, object: Value) {
    let name = object["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let kind = object["kind"].as_str().expect("a kind").to_owned();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("herald.dev", "v1alpha1", &kind));
    Api::<DynamicObject>::all_with(cluster.client(), &resource)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
}

/// The Services of the test's namespace.
pub fn services(cluster: &TestCluster) -> Api<Service> {
    Api::namespaced(cluster.client(), cluster.namespace())
}

/// Which of `nodes` (Node names, in order) a `herald.dev/Announced` message names as the one
/// that answers.
pub fn announcing_node<'a>(
    message: &str,
    mut nodes: impl Iterator<Item = &'a str>,
) -> Option<usize> {
    let answering = herald_crds::announced::Answering::parse(message)?;
    nodes.position(|name| name == answering.node)
}

/// Waits up to `timeout` for the Service's `herald.dev/Announced` condition to have `reason`,
/// and returns its message.
pub async fn announced(
    services: &Api<Service>,
    service: &str,
    reason: &str,
    timeout: Duration,
) -> String {
    eventually(timeout, &format!("{reason} on {service}"), || async {
        let condition = services
            .get(service)
            .await
            .ok()?
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == herald_crds::conditions::ANNOUNCED)?;
        (condition.reason == reason).then_some(condition.message)
    })
    .await
}
