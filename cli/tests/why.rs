//! `kubectl herald why` against the real test API server and the real controller: Services
//! allocated by a requested address, by a named pool, by serviceAllocation and priority, and by
//! auto-assign; one in an exhausted cluster, one whose request clashes, two sharing, two under
//! `externalTrafficPolicy: Local`; and nodes that may not announce for every reason the API
//! server shows (excluded by label, not selected by the advertisement, speaker not alive, no
//! ready endpoint). The answering speaker's `Announced` condition is written as a speaker
//! writes it. Its own test binary, so its API server holds only its objects.

use herald_crds::announced::Answering;
use herald_crds::{conditions, field_managers, reasons};
use herald_tests::objects::apply_herald;
use herald_tests::{TestCluster, eventually, test_cluster};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

mod support;

use support::{WAIT, allocated, endpoints, heartbeat, node, service, why};

/// Writes the Announced condition as the speaker of `node` does.
async fn announced(cluster: &TestCluster, name: &str, node: &str, ip: &str) {
    let message = Answering {
        node: node.to_owned(),
        ips: vec![ip.parse().unwrap()],
        interfaces: vec!["eth0".into()],
    }
    .message("the first choice for its addresses among the live nodes that may announce them");
    let body = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": cluster.namespace()},
        "status": {"conditions": [{"type": conditions::ANNOUNCED, "status": "True",
            "reason": reasons::ANNOUNCED, "message": message,
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

/// (name, verdict) of each node of the story, in its order.
fn verdicts(why: &Value) -> Vec<(String, String)> {
    why["announcement"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pool_verdicts(why: &Value) -> Vec<(String, String, Value)> {
    why["allocation"]["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["verdict"].as_str().unwrap().to_owned(),
                p["offer"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn why_tells_each_services_story_field_by_field() {
    let cluster = test_cluster("why").await;
    let ns = cluster.namespace().to_owned();
    let pool = |name: &str, spec: Value| {
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
               "metadata": {"name": name}, "spec": spec})
    };
    let team = json!({"namespaces": [ns]});
    for object in [
        pool(
            "fixed",
            json!({"addresses": ["192.0.2.0/29"], "autoAssign": false}),
        ),
        pool(
            "team-high",
            json!({"addresses": ["198.51.100.8/32"],
                   "serviceAllocation": {"priority": 10, "namespaces": team["namespaces"]}}),
        ),
        pool(
            "team-low",
            json!({"addresses": ["198.51.100.0/32"],
                   "serviceAllocation": {"priority": 20, "namespaces": team["namespaces"]}}),
        ),
        pool("open", json!({"addresses": ["203.0.113.0/32"]})),
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
               "metadata": {"name": "lan"},
               "spec": {"interfaces": ["eth0"], "nodeSelectors": [{"matchExpressions": [
                   {"key": "zone", "operator": "NotIn", "values": ["far"]}]}]}}),
    ] {
        apply_herald(&cluster, object).await;
    }
    let _controller = support::start_controller(&cluster);

    // Requested, named, by priority, by auto-assign, then nothing left.
    service(
        &cluster,
        "web",
        json!({"herald.dev/loadBalancerIPs": "192.0.2.0"}),
        json!({}),
    )
    .await;
    allocated(&cluster, "web", reasons::ALLOCATED).await;
    service(
        &cluster,
        "named",
        json!({"metallb.io/address-pool": "fixed"}),
        json!({}),
    )
    .await;
    allocated(&cluster, "named", reasons::ALLOCATED).await;
    for name in ["picked", "second", "fallback"] {
        service(&cluster, name, json!({}), json!({})).await;
        allocated(&cluster, name, reasons::ALLOCATED).await;
    }
    service(&cluster, "late", json!({}), json!({})).await;
    allocated(&cluster, "late", reasons::POOL_EXHAUSTED).await;
    service(
        &cluster,
        "clash",
        json!({}),
        json!({"loadBalancerIP": "192.0.2.0"}),
    )
    .await;
    allocated(&cluster, "clash", reasons::ADDRESS_IN_USE).await;
    for (name, protocol) in [("dns-udp", "UDP"), ("dns-tcp", "TCP")] {
        service(
            &cluster,
            name,
            json!({"herald.dev/allow-shared-ip": "dns", "herald.dev/loadBalancerIPs": "192.0.2.2"}),
            json!({"ports": [{"port": 53, "protocol": protocol}]}),
        )
        .await;
        allocated(&cluster, name, reasons::ALLOCATED).await;
    }
    for (name, ip) in [("local", "192.0.2.3"), ("idle", "192.0.2.4")] {
        service(
            &cluster,
            name,
            json!({"herald.dev/loadBalancerIPs": ip}),
            json!({"externalTrafficPolicy": "Local"}),
        )
        .await;
        allocated(&cluster, name, reasons::ALLOCATED).await;
    }

    // Nodes: one for each reason a node may not announce, and two that may.
    let [a, excluded, far, stale, never, empty] =
        ["a", "excluded", "far", "stale", "never", "empty"].map(|n| cluster.unique_name(n));
    node(&cluster, &a, json!({})).await;
    node(
        &cluster,
        &excluded,
        json!({"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
    )
    .await;
    node(&cluster, &far, json!({"zone": "far"})).await;
    for name in [&stale, &never, &empty] {
        node(&cluster, name, json!({})).await;
    }
    for name in [&a, &excluded, &far, &empty] {
        heartbeat(&cluster, name, true).await;
    }
    heartbeat(&cluster, &stale, false).await;
    endpoints(&cluster, "web", &[(&a, true)]).await;
    endpoints(
        &cluster,
        "local",
        &[(&a, true), (&far, true), (&empty, false)],
    )
    .await;
    announced(&cluster, "web", &a, "192.0.2.0").await;

    let web = eventually(WAIT, "web's IPAllocated Event", || async {
        let web = why(&cluster, "web");
        let events = web["events"].as_array()?;
        events
            .iter()
            .any(|e| e["reason"] == "IPAllocated" && e["from"] == field_managers::CONTROLLER)
            .then_some(web)
    })
    .await;
    assert_eq!(web["addresses"], json!(["192.0.2.0"]));
    assert_eq!(web["externalTrafficPolicy"], "Cluster");
    let allocation = &web["allocation"];
    assert_eq!(allocation["state"], reasons::ALLOCATED);
    assert_eq!(allocation["message"], "192.0.2.0 from pool \"fixed\"");
    assert_eq!(allocation["pool"], "fixed");
    assert_eq!(allocation["rule"], "requested");
    assert_eq!(
        allocation["because"],
        "it asks for 192.0.2.0 by annotation herald.dev/loadBalancerIPs, an address of pool \"fixed\""
    );
    assert_eq!(allocation["pools"], json!([]));
    assert_eq!(allocation["sharing"], Value::Null);
    let announcement = &web["announcement"];
    assert_eq!(announcement["state"], reasons::ANNOUNCED);
    assert_eq!(announcement["node"], a.as_str());
    assert_eq!(announcement["interfaces"], json!(["eth0"]));
    assert_eq!(announcement["nowhere"], Value::Null);
    // The answering node first, then the other eligible one, then the others by name.
    assert_eq!(
        verdicts(&web),
        [
            (a.clone(), "Eligible".to_owned()),
            (empty.clone(), "Eligible".to_owned()),
            (excluded.clone(), "Excluded".to_owned()),
            (far.clone(), "NotSelected".to_owned()),
            (never.clone(), "NotAlive".to_owned()),
            (stale.clone(), "NotAlive".to_owned()),
        ]
    );
    let detail = |why: &Value, node: &str| -> String {
        why["announcement"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(detail(&web, &a), "answers");
    assert_eq!(
        detail(&web, &stale),
        "its speaker is not alive: its heartbeat Lease expired"
    );
    assert_eq!(
        detail(&web, &never),
        "its speaker is not alive: no speaker keeps a heartbeat Lease for it"
    );
    assert_eq!(
        detail(&web, &excluded),
        "it is labelled node.kubernetes.io/exclude-from-external-load-balancers"
    );
    assert_eq!(
        detail(&web, &far),
        "no L2Advertisement of the pool holding 192.0.2.0 selects it (nodeSelectors)"
    );
    // Which node the election picks depends on the hash; it is one of the eligible.
    let elected = announcement["elected"].as_str().unwrap();
    assert!(elected == a || elected == empty, "{announcement}");
    let notes = announcement["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("interfaces: as the speakers reported them, see Announced")),
        "{notes:?}"
    );

    let named = why(&cluster, "named");
    assert_eq!(named["allocation"]["rule"], "namedPool");
    assert_eq!(
        named["allocation"]["because"],
        "it names pool \"fixed\" by annotation metallb.io/address-pool"
    );
    assert_eq!(named["addresses"], json!(["192.0.2.1"]));
    assert_eq!(named["announcement"]["state"], "Pending");

    let not_tried = |pools: &[(&str, &str)]| -> Vec<(String, String, Value)> {
        pools
            .iter()
            .map(|(p, v)| (p.to_string(), v.to_string(), Value::Null))
            .collect()
    };
    let order = [
        ("team-high", "selects"),
        ("team-low", "selects"),
        ("open", "autoAssign"),
        ("fixed", "notAutoAssign"),
    ];
    let picked = why(&cluster, "picked");
    assert_eq!(picked["allocation"]["rule"], "serviceAllocation");
    assert_eq!(picked["allocation"]["pool"], "team-high");
    assert_eq!(
        picked["allocation"]["because"],
        "it names no pool and asks for no address; pool \"team-high\" serves it: its \
         serviceAllocation selects the Service, priority 10 (candidate 1 of 3)"
    );
    assert_eq!(pool_verdicts(&picked), not_tried(&order));
    let second = why(&cluster, "second");
    assert_eq!(second["allocation"]["rule"], "serviceAllocation");
    assert_eq!(second["allocation"]["pool"], "team-low");
    let fallback = why(&cluster, "fallback");
    assert_eq!(fallback["allocation"]["rule"], "autoAssign");
    assert_eq!(fallback["allocation"]["pool"], "open");
    assert_eq!(
        fallback["allocation"]["because"],
        "it names no pool and asks for no address; pool \"open\" serves it: auto-assign, open to \
         every Service (after pools that select) (candidate 3 of 3)"
    );

    let late = why(&cluster, "late");
    assert_eq!(late["addresses"], json!([]));
    assert_eq!(late["allocation"]["state"], reasons::POOL_EXHAUSTED);
    assert_eq!(
        late["allocation"]["message"],
        "every pool that may serve this Service is out of IPv4 addresses"
    );
    assert_eq!(late["allocation"]["pool"], Value::Null);
    let exhausted = |pool: &str| json!(format!("pool {pool:?} has no free IPv4 address"));
    assert_eq!(
        pool_verdicts(&late),
        [
            ("team-high".into(), "selects".into(), exhausted("team-high")),
            ("team-low".into(), "selects".into(), exhausted("team-low")),
            ("open".into(), "autoAssign".into(), exhausted("open")),
            ("fixed".into(), "notAutoAssign".into(), Value::Null),
        ]
    );
    assert_eq!(late["announcement"]["state"], "NoAddress");
    assert_eq!(late["announcement"]["nodes"], json!([]));

    let clash = why(&cluster, "clash");
    assert_eq!(clash["allocation"]["state"], reasons::ADDRESS_IN_USE);
    assert_eq!(
        clash["allocation"]["message"],
        format!(
            "address 192.0.2.0 is in use by Service {ns}/web, which it may not share: this \
             Service has no allow-shared-ip key"
        )
    );
    assert_eq!(clash["allocation"]["rule"], "requested");
    assert_eq!(
        clash["allocation"]["because"],
        "it asks for 192.0.2.0 by spec.loadBalancerIP"
    );

    let dns = why(&cluster, "dns-udp");
    assert_eq!(
        dns["allocation"]["sharing"],
        json!({"key": "dns", "annotation": "herald.dev/allow-shared-ip",
               "with": [format!("{ns}/dns-tcp")]})
    );
    // Neither has endpoints: the group is announced nowhere, and each says so.
    assert_eq!(
        dns["announcement"]["nowhere"],
        "the Service has no ready endpoint"
    );

    let local = why(&cluster, "local");
    assert_eq!(local["externalTrafficPolicy"], "Local");
    assert_eq!(
        verdicts(&local),
        [
            (a.clone(), "Eligible".to_owned()),
            (empty.clone(), "NoReadyEndpoint".to_owned()),
            (excluded.clone(), "Excluded".to_owned()),
            (far.clone(), "NotSelected".to_owned()),
            (never.clone(), "NotAlive".to_owned()),
            (stale.clone(), "NotAlive".to_owned()),
        ]
    );
    assert_eq!(local["announcement"]["elected"], a.as_str());
    assert_eq!(
        detail(&local, &empty),
        "it has no ready endpoint of the Service (externalTrafficPolicy Local)"
    );
    let idle = why(&cluster, "idle");
    assert_eq!(
        idle["announcement"]["nowhere"],
        "the Service has no ready endpoint"
    );
    assert_eq!(idle["announcement"]["elected"], Value::Null);

    // The words a person reads (both stories are the README's transcripts).
    for name in ["web", "late"] {
        println!(
            "{}",
            support::kubectl_herald(&cluster, &["why", name, "-n", &ns]).stdout
        );
    }
    let run = support::kubectl_herald(&cluster, &["why", "local", "-n", &ns]);
    assert!(run.success, "{}", run.stderr);
    let text = run.stdout;
    println!("{text}");
    assert!(
        text.starts_with(&format!(
            "Service {ns}/local: 192.0.2.3 (externalTrafficPolicy Local)\n\n\
             Allocation: Allocated: 192.0.2.3 from pool \"fixed\"\n  \
             Rule: it asks for 192.0.2.3 by annotation herald.dev/loadBalancerIPs, an address \
             of pool \"fixed\"\n\nAnnouncement: Pending: no speaker has reported on it yet\n  \
             The speakers would elect {a}, from what the API server shows\n"
        )),
        "{text}"
    );
    let row = support::row_of(
        &text
            .lines()
            .map(str::trim_start)
            .collect::<Vec<_>>()
            .join("\n"),
        &empty,
    );
    assert_eq!(
        row,
        [
            empty.as_str(),
            "no",
            "it has no ready endpoint of the Service (externalTrafficPolicy Local)"
        ]
    );

    let missing = support::kubectl_herald(&cluster, &["why", "nothing", "-n", &ns]);
    assert!(!missing.success);
    assert_eq!(
        missing.stderr,
        format!("error: Service {ns}/nothing not found: check its name and -n NAMESPACE\n")
    );
}
