//! A pool that turns invalid after it was admitted (stored before the CRD refused its mistake,
//! as after an upgrade) loses nothing: its Services keep their addresses, it hands out nothing
//! new, and it says why on itself and in an Event. Its own file, so that relaxing the CRD for
//! a moment touches no other test's API server.

mod support;

use std::time::Duration;

use herald_crds::IPAddressPool;
use herald_tests::{eventually, test_cluster};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use support::*;

const CRD: &str = "ipaddresspools.herald.dev";

/// The schema of one `matchExpressions` entry of `serviceAllocation.serviceSelectors`.
fn expression_schema(crd: &mut Value) -> &mut Value {
    &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["serviceAllocation"]["properties"]["serviceSelectors"]["items"]["properties"]["matchExpressions"]
        ["items"]
}

/// Replaces the CRD with `edit` applied, and waits until the API server uses it.
async fn edit_crd(crds: &Api<CustomResourceDefinition>, edit: impl Fn(&mut Value)) {
    let mut crd = serde_json::to_value(crds.get(CRD).await.unwrap()).unwrap();
    edit(&mut crd);
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    crds.replace(CRD, &PostParams::default(), &crd)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pool_that_turns_invalid_keeps_what_it_holds_and_hands_out_nothing_new() {
    let cluster = test_cluster("invalid-pool").await;
    let _controller = start_controller(&cluster, &["--leader-elect=false"]);
    let ns = cluster.namespace().to_owned();
    let spec = |operator: &str| {
        json!({"addresses": ["192.0.2.180/31"], "serviceAllocation": {"namespaces": [ns],
            "serviceSelectors": [{"matchExpressions": [
                {"key": "tier", "operator": operator, "values": ["web"]}]}]}})
    };
    let lan = pool(&cluster, "lan", spec("In")).await;
    let labelled = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"tier": "web"}},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
    };
    apply(&cluster, "v1", "Service", "web", Some(&ns), labelled("web")).await;
    let held = addresses(&cluster, "web").await;

    // The typo is stored as it would have been before the CRD refused it.
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    let original = crds.get(CRD).await.unwrap();
    edit_crd(&crds, |crd| {
        let schema = expression_schema(crd);
        schema["properties"]["operator"]
            .as_object_mut()
            .unwrap()
            .remove("enum");
        schema
            .as_object_mut()
            .unwrap()
            .remove("x-kubernetes-validations");
    })
    .await;
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    eventually(WAIT, "the API server to take the typo", || async {
        let mut pool = pools.get(&lan).await.ok()?;
        pool.spec = serde_json::from_value(spec("Inn")).ok()?;
        pools
            .replace(&lan, &PostParams::default(), &pool)
            .await
            .ok()
    })
    .await;
    edit_crd(&crds, |crd| {
        crd["spec"] = serde_json::to_value(&original.spec).unwrap();
    })
    .await;

    // The pool says what is wrong, on itself and in an Event.
    let invalid = eventually(WAIT, "an Invalid condition", || async {
        let status = pools.get(&lan).await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Invalid" && c.status == "True")
    })
    .await;
    assert!(
        invalid.message.contains(
            "spec.serviceAllocation.serviceSelectors[0]: matchExpressions on key \"tier\""
        ) && invalid
            .message
            .contains("keeps the addresses it has handed out"),
        "{}",
        invalid.message
    );
    let events: Api<Event> = Api::all(cluster.client());
    eventually(WAIT, "an InvalidSpec Event on the pool", || async {
        let list = events
            .list(&ListParams::default().fields(&format!("regarding.name={lan}")))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InvalidSpec"))
    })
    .await;

    // Nothing is taken from the Service, and nothing new is handed out.
    apply(&cluster, "v1", "Service", "new", Some(&ns), labelled("new")).await;
    condition(&cluster, "new", "NoPoolAvailable").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let web = services(&cluster).get("web").await.unwrap();
    assert_eq!(ingress(&web), held);
    assert_eq!(allocated(&web).unwrap().reason, "Allocated");

    // Fixed: the pool serves again.
    pool(&cluster, "lan", spec("In")).await;
    assert_eq!(addresses(&cluster, "new").await.len(), 1);
    assert_eq!(ingress(&services(&cluster).get("web").await.unwrap()), held);
}
