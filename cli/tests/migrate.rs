//! `kubectl herald migrate metallb` against the real test API server with MetalLB's own CRDs
//! (its Go module's `config/crd/bases`, fetched by `scripts/metallb-crds`): a MetalLB
//! configuration as users write it, Services holding the addresses MetalLB gave them, then
//! the round trip: after `--apply`, Herald's real controller gives every Service the address
//! it already had.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use herald_tests::{TestCluster, eventually, test_cluster};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::{kubectl_herald, row_of};

mod support;

const WAIT: Duration = Duration::from_secs(30);

fn metallb_crds() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_METALLB_CRDS") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("bash")
        .arg(root.join("scripts/metallb-crds"))
        .output()
        .expect("running scripts/metallb-crds");
    assert!(
        output.status.success(),
        "scripts/metallb-crds: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Creates a MetalLB object (`kind` in `metallb.io/version`) in the test's namespace.
async fn metallb(cluster: &TestCluster, version: &str, kind: &str, name: &str, spec: Value) {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("metallb.io", version, kind));
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("metallb.io/{version}"), "kind": kind,
        "metadata": {"name": name, "namespace": cluster.namespace(), "labels": {"zone": "a"}},
        "spec": spec,
    }))
    .unwrap();
    Api::<DynamicObject>::namespaced_with(cluster.client(), cluster.namespace(), &resource)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("creating {kind} {name}: {e}"));
}

/// A LoadBalancer Service with one `port` (and `class`, if any) showing `ip`, as the load
/// balancer that handed it out left it.
async fn service(
    cluster: &TestCluster,
    name: &str,
    ip: &str,
    annotations: Value,
    port: Value,
    class: Option<&str>,
) {
    let api = Api::<Service>::namespaced(cluster.client(), cluster.namespace());
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [port], "allocateLoadBalancerNodePorts": false,
                 "loadBalancerClass": class},
    }))
    .unwrap();
    api.create(&PostParams::default(), &service).await.unwrap();
    let status = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": cluster.namespace()},
        "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}});
    api.patch_status(
        name,
        &PatchParams::apply("metallb-controller").force(),
        &Patch::Apply(&status),
    )
    .await
    .unwrap();
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
        .collect()
}

async fn ingress(cluster: &TestCluster, name: &str) -> Vec<IpAddr> {
    let service = Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .get(name)
        .await
        .unwrap();
    service
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

async fn allocated(cluster: &TestCluster, name: &str) -> Option<String> {
    let service = Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .get(name)
        .await
        .unwrap();
    service
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == herald_crds::conditions::ALLOCATED && c.status == "True")
        .map(|c| c.message)
}

#[tokio::test]
async fn metallb_configuration_moves_over_and_every_service_keeps_its_address() {
    let cluster = test_cluster("migrate").await;
    cluster
        .server()
        .install_crds_from(&metallb_crds())
        .await
        .unwrap();
    let ns = cluster.namespace().to_owned();
    let (lan, dmz, legacy) = (
        cluster.unique_name("lan"),
        cluster.unique_name("dmz"),
        cluster.unique_name("old"),
    );
    // What MetalLB users write: a default pool, a pool pinned to Services by selector with a
    // priority, an advertisement per pool with node selectors and interfaces, and a BGP peer.
    metallb(
        &cluster,
        "v1beta1",
        "IPAddressPool",
        &lan,
        json!({"addresses": ["192.0.2.0/28", "2001:db8:1::/124"], "avoidBuggyIPs": true}),
    )
    .await;
    metallb(
        &cluster,
        "v1beta1",
        "IPAddressPool",
        &dmz,
        json!({
        "addresses": ["198.51.100.10-198.51.100.19"], "autoAssign": false,
        "serviceAllocation": {"priority": 10, "namespaces": [ns],
                              "serviceSelectors": [{"matchLabels": {"tier": "dmz"}}]}}),
    )
    .await;
    metallb(&cluster, "v1beta1", "L2Advertisement", &lan, json!({
        "ipAddressPools": [lan],
        "nodeSelectors": [{"matchExpressions": [{"key": "node-role.kubernetes.io/edge", "operator": "Exists"}]}],
        "interfaces": ["eth1"]})).await;
    metallb(
        &cluster,
        "v1beta1",
        "L2Advertisement",
        &dmz,
        json!({"ipAddressPoolSelectors": [{"matchLabels": {"zone": "a"}}]}),
    )
    .await;
    // BGP: a plain peer; a rack's peer with a password Secret, BFD and timers; a BFD profile,
    // named communities and an advertisement using one of them.
    let (tor, tor_b, fast, routed) = (
        cluster.unique_name("tor"),
        cluster.unique_name("tor-b"),
        cluster.unique_name("fast"),
        cluster.unique_name("routed"),
    );
    metallb(
        &cluster,
        "v1beta2",
        "BGPPeer",
        &tor,
        json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "198.51.100.1"}),
    )
    .await;
    metallb(
        &cluster,
        "v1beta2",
        "BGPPeer",
        &tor_b,
        json!({
        "myASN": 64500, "peerASN": 64502, "peerAddress": "198.51.100.2", "holdTime": "9s",
        "keepaliveTime": "3s", "bfdProfile": fast, "enableGracefulRestart": true,
        "passwordSecret": {"name": "tor-b", "namespace": ns},
        "nodeSelectors": [{"matchLabels": {"rack": "b"}}]}),
    )
    .await;
    metallb(
        &cluster,
        "v1beta1",
        "BFDProfile",
        &fast,
        json!({"receiveInterval": 100, "transmitInterval": 100, "detectMultiplier": 3}),
    )
    .await;
    metallb(
        &cluster,
        "v1beta1",
        "Community",
        &cluster.unique_name("names"),
        json!({"communities": [{"name": "no-advertise", "value": "65535:65282"}]}),
    )
    .await;
    metallb(
        &cluster,
        "v1beta1",
        "BGPAdvertisement",
        &routed,
        json!({
        "ipAddressPools": [dmz], "localPref": 150, "peers": [tor_b],
        "communities": ["no-advertise", "64500:100"]}),
    )
    .await;
    // A cluster upgraded from MetalLB 0.12 may still hold its ConfigMap.
    let config = format!(
        "address-pools:\n- name: {legacy}\n  protocol: layer2\n  addresses: [203.0.113.0/28]\n"
    );
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "config"}, "data": {"config": config}}))
    .unwrap();
    Api::<ConfigMap>::namespaced(cluster.client(), &ns)
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();
    // Services as MetalLB left them: none on the lowest free address of its pool.
    service(
        &cluster,
        "web",
        "192.0.2.9",
        json!({}),
        json!({"port": 80}),
        None,
    )
    .await;
    let shared = json!({"metallb.universe.tf/allow-shared-ip": "dns"});
    service(
        &cluster,
        "dns-udp",
        "192.0.2.5",
        shared.clone(),
        json!({"port": 53, "protocol": "UDP"}),
        None,
    )
    .await;
    service(
        &cluster,
        "dns-tcp",
        "192.0.2.5",
        shared,
        json!({"port": 53, "protocol": "TCP"}),
        None,
    )
    .await;
    service(
        &cluster,
        "pinned",
        "203.0.113.7",
        json!({"metallb.io/address-pool": legacy}),
        json!({"port": 443}),
        None,
    )
    .await;

    let migrate = ["migrate", "metallb", "--metallb-namespace", &ns];
    let dry = kubectl_herald(&cluster, &migrate);
    assert!(dry.success, "{}", dry.stderr);
    // The README's example (`-- --nocapture` shows it).
    eprintln!(
        "$ kubectl herald migrate metallb > herald.yaml\n{}",
        dry.stderr
    );
    let objects = documents(&dry.stdout);
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {}", dry.stdout))
            .clone()
    };
    let pool = find("IPAddressPool", &lan);
    assert_eq!(pool["apiVersion"], "herald.dev/v1alpha1");
    assert_eq!(
        pool["spec"],
        json!({"addresses": ["192.0.2.0/28", "2001:db8:1::/124"],
                                    "autoAssign": true, "avoidBuggyIPs": true})
    );
    assert_eq!(pool["metadata"]["labels"]["zone"], "a");
    assert_eq!(
        find("IPAddressPool", &dmz)["spec"]["serviceAllocation"],
        json!({
        "priority": 10, "namespaces": [ns], "serviceSelectors": [{"matchLabels": {"tier": "dmz"}}]})
    );
    assert_eq!(
        find("L2Advertisement", &lan)["spec"],
        json!({"ipAddressPools": [lan],
        "nodeSelectors": [{"matchExpressions": [{"key": "node-role.kubernetes.io/edge", "operator": "Exists"}]}],
        "interfaces": ["eth1"]})
    );
    assert_eq!(
        find("L2Advertisement", &dmz)["spec"],
        json!({"ipAddressPoolSelectors": [{"matchLabels": {"zone": "a"}}]})
    );
    assert_eq!(
        find("IPAddressPool", &legacy)["spec"]["addresses"],
        json!(["203.0.113.0/28"])
    );
    assert_eq!(
        find("L2Advertisement", &legacy)["spec"],
        json!({"ipAddressPools": [legacy]})
    );
    assert_eq!(
        find("BGPPeer", &tor_b)["spec"],
        // peerPort: MetalLB's CRD defaults it.
        json!({"peerAddress": "198.51.100.2", "peerASN": 64502, "myASN": 64500, "peerPort": 179, "holdTime": "9s",
               "keepaliveTime": "3s", "bfdProfile": fast, "enableGracefulRestart": true,
               "passwordSecret": {"name": "tor-b"},
               "nodeSelectors": [{"matchLabels": {"rack": "b"}}]})
    );
    assert_eq!(
        find("BFDProfile", &fast)["spec"],
        json!({"receiveInterval": 100, "transmitInterval": 100, "detectMultiplier": 3})
    );
    assert_eq!(
        find("BGPAdvertisement", &routed)["spec"],
        // The aggregation lengths: MetalLB's CRD defaults them (one route per address).
        json!({"ipAddressPools": [dmz], "peers": [tor_b], "localPref": 150,
               "aggregationLength": 32, "aggregationLengthV6": 128,
               "communities": ["65535:65282", "64500:100"]})
    );
    // The table names every source; nothing is written yet. The only warning is the peer
    // whose password Secret must be copied to Herald's namespace.
    assert_eq!(
        row_of(&dry.stderr, &format!("IPAddressPool {ns}/{lan}"))[1..3],
        [format!("IPAddressPool {lan}"), "converted".into()]
    );
    assert_eq!(
        row_of(&dry.stderr, &format!("BGPPeer {ns}/{tor}"))[1..3],
        [format!("BGPPeer {tor}"), "converted".into()]
    );
    let warnings: Vec<&str> = dry
        .stderr
        .lines()
        .filter(|line| line.contains("warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", dry.stderr);
    assert!(
        warnings[0].starts_with(&format!("BGPPeer {ns}/{tor_b}"))
            && warnings[0].contains(&format!("copy Secret {ns}/tor-b into Herald's namespace")),
        "{}",
        dry.stderr
    );
    let pools = Api::<herald_crds::IPAddressPool>::all(cluster.client());
    assert!(pools.get_opt(&lan).await.unwrap().is_none());

    // A Service of another load balancer showing an address of a pool: refused, and why.
    service(
        &cluster,
        "vip",
        "192.0.2.12",
        json!({}),
        json!({"port": 8080}),
        Some("kube-vip.io/kube-vip-class"),
    )
    .await;
    let refused = kubectl_herald(&cluster, &[&migrate[..], &["--apply"]].concat());
    assert!(!refused.success);
    assert!(
        refused.stderr.contains(&format!(
            "Service {ns}/vip shows 192.0.2.12, which Herald would hand out to other Services"
        )),
        "{}",
        refused.stderr
    );
    assert!(pools.get_opt(&lan).await.unwrap().is_none());
    Api::<Service>::namespaced(cluster.client(), &ns)
        .delete("vip", &Default::default())
        .await
        .unwrap();

    let applied = kubectl_herald(&cluster, &[&migrate[..], &["--apply"]].concat());
    assert!(applied.success, "{}", applied.stderr);
    assert_eq!(
        pools.get(&lan).await.unwrap().spec.addresses,
        ["192.0.2.0/28", "2001:db8:1::/124"]
    );
    // Herald's API (its CEL rules included) takes the BGP objects.
    let peers = Api::<herald_crds::BGPPeer>::all(cluster.client());
    assert_eq!(
        peers.get(&tor_b).await.unwrap().spec.bfd_profile,
        Some(fast.clone())
    );
    let advertisements = Api::<herald_crds::BGPAdvertisement>::all(cluster.client());
    assert_eq!(
        advertisements.get(&routed).await.unwrap().spec.local_pref,
        Some(150)
    );
    let profiles = Api::<herald_crds::BFDProfile>::all(cluster.client());
    assert_eq!(
        profiles.get(&fast).await.unwrap().spec.detect_multiplier,
        Some(3)
    );
    // Again: nothing changes.
    let again = kubectl_herald(&cluster, &migrate);
    assert_eq!(
        row_of(&again.stderr, &format!("IPAddressPool {ns}/{lan}"))[2],
        "unchanged"
    );

    // The round trip: Herald's controller keeps every address MetalLB gave.
    let _controller = support::start_controller(&cluster);
    for (name, ip) in [
        ("web", "192.0.2.9"),
        ("dns-udp", "192.0.2.5"),
        ("dns-tcp", "192.0.2.5"),
        ("pinned", "203.0.113.7"),
    ] {
        let message = eventually(
            WAIT,
            &format!("{name} to be Allocated by Herald"),
            || async { allocated(&cluster, name).await },
        )
        .await;
        assert_eq!(
            ingress(&cluster, name).await,
            [ip.parse::<IpAddr>().unwrap()],
            "{name}: {message}"
        );
    }
}
