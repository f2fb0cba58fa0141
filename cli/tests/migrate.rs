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
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
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
    // A cluster upgraded from MetalLB 0.12 may still hold its ConfigMap, BGP included: a peer
    // with its password in plain text, a BFD profile, a named community.
    let (legacy_bgp, slow) = (cluster.unique_name("old-bgp"), cluster.unique_name("slow"));
    let config = format!(
        "address-pools:
- name: {legacy}
  protocol: layer2
  addresses: [203.0.113.0/28]
- name: {legacy_bgp}
  protocol: bgp
  addresses: [203.0.113.16/28]
  bgp-advertisements:
  - {{aggregation-length: 32, localpref: 200, communities: [no-export, 64500:200]}}
peers:
- peer-address: 198.51.100.3
  peer-asn: 64503
  my-asn: 64500
  hold-time: 30s
  keepalive-time: 10s
  router-id: 192.0.2.12
  password: hunter2
  bfd-profile: {slow}
  node-selectors:
  - match-labels: {{rack: c}}
bgp-communities:
  no-export: 65535:65281
bfd-profiles:
- {{name: {slow}, receive-interval: 300, detect-multiplier: 5}}
"
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
    service(
        &cluster,
        "routed",
        "203.0.113.20",
        json!({}),
        json!({"port": 443}),
        None,
    )
    .await;

    // The test's namespace stands in for Herald's.
    let migrate = [
        "migrate",
        "metallb",
        "--metallb-namespace",
        &ns,
        "--herald-namespace",
        &ns,
    ];
    // The legacy peer's plain-text password refuses, naming the Secret to make; once it is
    // made, the BGPPeer reads it.
    let refused = kubectl_herald(&cluster, &migrate);
    assert!(!refused.success);
    let create_secret = format!(
        "kubectl create secret generic peer-198-51-100-3-password -n {ns} --from-literal=password="
    );
    assert!(
        refused.stderr.contains(&create_secret),
        "{}",
        refused.stderr
    );
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "peer-198-51-100-3-password"},
        "stringData": {"password": "hunter2"}}))
    .unwrap();
    Api::<Secret>::namespaced(cluster.client(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

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
        find("BGPPeer", "peer-198-51-100-3")["spec"],
        json!({"peerAddress": "198.51.100.3", "peerASN": 64503, "myASN": 64500, "holdTime": "30s",
               "keepaliveTime": "10s", "routerID": "192.0.2.12", "bfdProfile": slow,
               "passwordSecret": {"name": "peer-198-51-100-3-password"},
               "nodeSelectors": [{"matchLabels": {"rack": "c"}}]})
    );
    assert_eq!(
        find("BGPAdvertisement", &legacy_bgp)["spec"],
        json!({"ipAddressPools": [legacy_bgp], "aggregationLength": 32, "localPref": 200,
               "communities": ["65535:65281", "64500:200"]})
    );
    assert_eq!(
        find("BFDProfile", &slow)["spec"],
        json!({"receiveInterval": 300, "detectMultiplier": 5})
    );
    assert_eq!(
        row_of(&dry.stderr, &format!("ConfigMap {ns}/config peers[0]"))[1..3],
        ["BGPPeer peer-198-51-100-3".to_owned(), "converted".into()]
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
    assert_eq!(
        peers
            .get("peer-198-51-100-3")
            .await
            .unwrap()
            .spec
            .bfd_profile,
        Some(slow.clone())
    );
    assert_eq!(
        advertisements
            .get(&legacy_bgp)
            .await
            .unwrap()
            .spec
            .local_pref,
        Some(200)
    );
    assert_eq!(
        profiles.get(&slow).await.unwrap().spec.detect_multiplier,
        Some(5)
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
        ("routed", "203.0.113.20"),
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
