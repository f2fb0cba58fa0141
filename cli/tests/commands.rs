//! `kubectl herald services` and `pools` against the real test API server and the real
//! controller: pools (one overlapping another), and Services allocated, shared, exhausted and
//! under `externalTrafficPolicy: Local` without endpoints. The speakers' `Announced`
//! conditions are written as a speaker writes them (its field manager, its message format).

use std::time::Duration;

use herald_crds::announced::Answering;
use herald_crds::{conditions, field_managers, reasons};
use herald_tests::{TestCluster, eventually, test_cluster};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::{rows, service};

mod support;

const WAIT: Duration = Duration::from_secs(30);

fn kubectl_herald(cluster: &TestCluster, args: &[&str]) -> String {
    let run = support::kubectl_herald(cluster, args);
    assert!(run.success, "kubectl herald {args:?}: {}", run.stderr);
    run.stdout
}

async fn pool(cluster: &TestCluster, name: &str, spec: Value) {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "herald.dev",
        "v1alpha1",
        "IPAddressPool",
    ));
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
        "metadata": {"name": name}, "spec": spec}))
    .unwrap();
    Api::<DynamicObject>::all_with(cluster.client(), &resource)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// The Service's `Allocated` condition reason, once the controller wrote it.
async fn allocated(cluster: &TestCluster, name: &str) -> String {
    eventually(WAIT, &format!("{name}'s Allocated condition"), || async {
        let service = Api::<Service>::namespaced(cluster.client(), cluster.namespace())
            .get(name)
            .await
            .ok()?;
        service
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == conditions::ALLOCATED)
            .map(|c| c.reason)
    })
    .await
}

/// Writes the Announced condition as a speaker does.
async fn announced(cluster: &TestCluster, name: &str, status: bool, reason: &str, message: &str) {
    let body = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": cluster.namespace()},
        "status": {"conditions": [{"type": conditions::ANNOUNCED,
            "status": if status { "True" } else { "False" }, "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-28T00:00:00Z"}]}});
    Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .patch_status(
            name,
            &PatchParams::apply(field_managers::SPEAKER).force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn services_and_pools_show_every_state_field_by_field() {
    let cluster = test_cluster("commands").await;
    let ns = cluster.namespace().to_owned();
    let (lan, shadow) = (cluster.unique_name("lan"), cluster.unique_name("shadow"));
    pool(
        &cluster,
        &lan,
        json!({"addresses": ["192.0.2.0/30"],
                                "serviceAllocation": {"namespaces": [ns]}}),
    )
    .await;
    pool(
        &cluster,
        &shadow,
        json!({"addresses": ["192.0.2.3/32"], "autoAssign": false}),
    )
    .await;
    let _controller = support::start_controller(&cluster);
    // Four addresses: web, a shared one for dns, local, then extra; late finds none.
    service(
        &cluster,
        "web",
        json!({"herald.dev/loadBalancerIPs": "192.0.2.0"}),
        json!({"ports": [{"port": 80}]}),
    )
    .await;
    assert_eq!(allocated(&cluster, "web").await, reasons::ALLOCATED);
    for (name, protocol) in [("dns-udp", "UDP"), ("dns-tcp", "TCP")] {
        service(
            &cluster,
            name,
            json!({"herald.dev/allow-shared-ip": "dns",
                                       "herald.dev/loadBalancerIPs": "192.0.2.1"}),
            json!({"ports": [{"port": 53, "protocol": protocol}]}),
        )
        .await;
        assert_eq!(allocated(&cluster, name).await, reasons::ALLOCATED);
    }
    service(
        &cluster,
        "local",
        json!({"herald.dev/loadBalancerIPs": "192.0.2.2"}),
        json!({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"}),
    )
    .await;
    assert_eq!(allocated(&cluster, "local").await, reasons::ALLOCATED);
    service(
        &cluster,
        "extra",
        json!({}),
        json!({"ports": [{"port": 80}]}),
    )
    .await;
    assert_eq!(allocated(&cluster, "extra").await, reasons::ALLOCATED);
    service(
        &cluster,
        "late",
        json!({}),
        json!({"ports": [{"port": 80}]}),
    )
    .await;
    assert_eq!(allocated(&cluster, "late").await, reasons::POOL_EXHAUSTED);

    // The node whose speaker answers, alive by its heartbeat Lease as a speaker keeps it.
    let node_b = cluster.unique_name("node-b");
    let node: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(json!({"metadata": {"name": node_b}})).unwrap();
    Api::all(cluster.client())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(json!({
        "metadata": {"name": format!("herald-speaker-{node_b}"),
                     "labels": {herald_speaker::heartbeat::LABEL: "true"}},
        "spec": {"holderIdentity": node_b, "leaseDurationSeconds": 300,
                 "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                     k8s_openapi::jiff::Timestamp::now())}}))
    .unwrap();
    Api::namespaced(cluster.client(), &ns)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
    let answering = |ips: &[&str]| Answering {
        node: node_b.clone(),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        interfaces: vec!["eth0".into()],
    };
    let why = "the first choice for its addresses among the live nodes that may announce them";
    announced(
        &cluster,
        "web",
        true,
        reasons::ANNOUNCED,
        &answering(&["192.0.2.0"]).message(why),
    )
    .await;
    for name in ["dns-udp", "dns-tcp"] {
        announced(
            &cluster,
            name,
            true,
            reasons::ANNOUNCED,
            &answering(&["192.0.2.1"]).message(why),
        )
        .await;
    }
    let no_endpoint = "no node has a ready endpoint of this Service (externalTrafficPolicy Local)";
    announced(
        &cluster,
        "local",
        false,
        reasons::NO_READY_ENDPOINT,
        no_endpoint,
    )
    .await;

    let table = kubectl_herald(&cluster, &["services", "-n", &ns, "-o", "wide"]);
    let by_name = |name: &str| {
        rows(&table)
            .into_iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row for {name} in\n{table}"))
    };
    assert_eq!(
        rows(&table)[0],
        [
            "NAME",
            "ADDRESSES",
            "POOL",
            "NODE",
            "INTERFACES",
            "STATE",
            "MESSAGE"
        ]
    );
    assert_eq!(
        by_name("web")[..6],
        [
            "web",
            "192.0.2.0",
            lan.as_str(),
            node_b.as_str(),
            "eth0",
            "Announced"
        ]
    );
    assert_eq!(
        by_name("dns-tcp")[..6],
        [
            "dns-tcp",
            "192.0.2.1",
            lan.as_str(),
            node_b.as_str(),
            "eth0",
            "Announced"
        ]
    );
    assert_eq!(
        by_name("dns-udp")[..6],
        [
            "dns-udp",
            "192.0.2.1",
            lan.as_str(),
            node_b.as_str(),
            "eth0",
            "Announced"
        ]
    );
    assert_eq!(
        by_name("local"),
        [
            "local",
            "192.0.2.2",
            lan.as_str(),
            "-",
            "-",
            "NoReadyEndpoint",
            no_endpoint
        ]
    );
    // The controller wrote extra's address; no speaker has reported yet.
    assert_eq!(
        by_name("extra")[..6],
        ["extra", "192.0.2.3", lan.as_str(), "-", "-", "Pending"]
    );
    let late = by_name("late");
    assert_eq!(late[..6], ["late", "-", "-", "-", "-", "PoolExhausted"]);
    assert_eq!(
        late[6],
        "every pool that may serve this Service is out of IPv4 addresses"
    );

    let json: Value =
        serde_json::from_str(&kubectl_herald(&cluster, &["services", "-A", "-o", "json"])).unwrap();
    let web = json
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "web" && v["namespace"] == ns)
        .unwrap();
    assert_eq!(web["addresses"], json!(["192.0.2.0"]));
    assert_eq!(web["node"], node_b.as_str());

    let pools: Value =
        serde_json::from_str(&kubectl_herald(&cluster, &["pools", "-o", "json"])).unwrap();
    let find = |name: &str| {
        pools
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no pool {name} in {pools}"))
            .clone()
    };
    let lan_view = eventually(WAIT, "the pool's status to count 4 assigned", || async {
        let pools: Value =
            serde_json::from_str(&kubectl_herald(&cluster, &["pools", "-o", "json"])).unwrap();
        let view = pools
            .as_array()?
            .iter()
            .find(|p| p["name"] == lan.as_str())?
            .clone();
        (view["usage"] == json!([{"family": "IPv4", "assigned": 4, "available": 0}]))
            .then_some(view)
    })
    .await;
    assert_eq!(lan_view["state"], "Conflicting");
    assert_eq!(
        lan_view["services"],
        json!([
            format!("{ns}/dns-tcp (192.0.2.1)"),
            format!("{ns}/dns-udp (192.0.2.1)"),
            format!("{ns}/extra (192.0.2.3)"),
            format!("{ns}/local (192.0.2.2)"),
            format!("{ns}/web (192.0.2.0)")
        ])
    );
    assert!(
        find(&shadow)["message"].as_str().unwrap().contains(&lan),
        "{pools}"
    );
    let text = kubectl_herald(&cluster, &["pools"]);
    assert!(
        text.contains("  IPv4  [####################]  4 of 4 assigned\n"),
        "{text}"
    );

    let status: Value =
        serde_json::from_str(&kubectl_herald(&cluster, &["status", "-o", "json"])).unwrap();
    let speaker = status["speakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == node_b.as_str())
        .unwrap_or_else(|| panic!("no speaker of {node_b} in {status}"));
    assert_eq!(
        speaker,
        &json!({"node": node_b, "speaker": "live", "addresses": 2})
    );
    let trouble: Vec<&str> = status["trouble"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["namespace"] == ns.as_str())
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(trouble, ["late", "local", "extra"]);
}
