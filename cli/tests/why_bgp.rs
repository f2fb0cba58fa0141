//! `kubectl herald why` for a Service that only BGP announces, against the real test API
//! server and the real controller: a pool that a BGPAdvertisement selects and no
//! L2Advertisement does, a BGPPeer that selects some nodes, and a `Local` Service with ready
//! endpoints on some. No speaker runs: `why` computes the BGP story itself from the objects and
//! the speakers' heartbeat Leases, and says per node whether it advertises and why not. Then
//! the BGP CRDs go away, and `why` still tells the layer-2 story. Its own test binary, so its
//! API server holds only its objects (no L2Advertisement selects every pool here).

use herald_crds::reasons;
use herald_tests::objects::apply_herald;
use herald_tests::{eventually, test_cluster};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};

mod support;

use support::{WAIT, allocated, endpoints, heartbeat, node, service, why};

/// (name, advertises, verdict, detail) of each node of the BGP story, in its order.
fn bgp_nodes(why: &Value) -> Vec<(String, bool, String, String)> {
    why["announcement"]["bgp"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no BGP story: {why}"))
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["advertises"].as_bool().unwrap(),
                n["verdict"].as_str().unwrap().to_owned(),
                n["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn why_tells_which_nodes_advertise_over_bgp_and_why_the_others_do_not() {
    let cluster = test_cluster("why-bgp").await;
    let ns = cluster.namespace().to_owned();
    for object in [
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
               "metadata": {"name": "routed"}, "spec": {"addresses": ["203.0.113.0/28"]}}),
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPAdvertisement",
               "metadata": {"name": "to-tor"}, "spec": {"ipAddressPools": ["routed"]}}),
        json!({"apiVersion": "herald.dev/v1alpha1", "kind": "BGPPeer",
               "metadata": {"name": "tor"},
               "spec": {"peerAddress": "198.51.100.1", "peerASN": 64513, "myASN": 64512,
                        "nodeSelectors": [{"matchLabels": {"rack": "1"}}]}}),
    ] {
        apply_herald(&cluster, object).await;
    }
    let _controller = support::start_controller(&cluster);
    service(
        &cluster,
        "web",
        json!({}),
        json!({"externalTrafficPolicy": "Local"}),
    )
    .await;
    allocated(&cluster, "web", reasons::ALLOCATED).await;

    // a advertises; b has no endpoint; c's rack has no BGPPeer; d's speaker is gone.
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| cluster.unique_name(n));
    for (name, rack) in [(&a, "1"), (&b, "1"), (&c, "2"), (&d, "1")] {
        node(&cluster, name, json!({"rack": rack})).await;
    }
    for name in [&a, &b, &c] {
        heartbeat(&cluster, name, true).await;
    }
    endpoints(&cluster, "web", &[(&a, true), (&c, true), (&d, true)]).await;

    let web = why(&cluster, "web");
    assert_eq!(web["addresses"], json!(["203.0.113.0"]));
    let announcement = &web["announcement"];
    // No speaker runs: nothing wrote Announced.
    assert_eq!(announcement["state"], "Pending");
    // Layer 2 says what it does not do, without telling a BGP user to create an L2Advertisement.
    assert_eq!(
        announcement["nowhere"],
        "no L2Advertisement selects pool \"routed\""
    );
    let bgp = &announcement["bgp"];
    assert_eq!(bgp["state"], "Advertised");
    assert_eq!(
        bgp["message"],
        format!("advertised over BGP by node {a} to peer tor")
    );
    let peers_of_a = bgp["nodes"][0]["peers"].clone();
    assert_eq!(peers_of_a, json!(["tor"]));
    assert_eq!(
        bgp_nodes(&web),
        [
            (a.clone(), true, "Advertises", "to peer tor"),
            (
                b.clone(),
                false,
                "NoReadyEndpoint",
                "it has no ready endpoint of the Service (externalTrafficPolicy Local)"
            ),
            (
                c.clone(),
                false,
                "NoPeer",
                "it peers with no IPv4 BGPPeer that BGPAdvertisement \"to-tor\" advertises to: \
                 check the BGPPeers' nodeSelectors and the BGPAdvertisement's peers"
            ),
            (
                d.clone(),
                false,
                "NotAlive",
                "its speaker is not alive: no speaker keeps a heartbeat Lease for it"
            ),
        ]
        .map(|(n, yes, v, w)| (n, yes, v.to_owned(), w.to_owned()))
    );
    assert_eq!(bgp["notes"], json!([]));

    // The words a person reads (the README's transcript).
    let run = support::kubectl_herald(&cluster, &["why", "web", "-n", &ns]);
    assert!(run.success, "{}", run.stderr);
    let text = run.stdout;
    println!("{text}");
    assert!(!text.contains("create one"), "{text}");
    assert!(
        text.contains(&format!(
            "\nAnnouncement: Pending: no speaker has reported on it yet\n  \
             Layer 2: not announced: no L2Advertisement selects pool \"routed\"\n  \
             BGP: advertised over BGP by node {a} to peer tor\n"
        )),
        "{text}"
    );
    let table: String = text
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        support::row_of(&table, "NODE"),
        ["NODE", "ADVERTISES", "WHY"]
    );
    assert_eq!(
        support::row_of(&table, &a),
        [a.as_str(), "yes", "to peer tor"]
    );
    assert_eq!(support::row_of(&table, &b)[1], "no");

    let yaml = support::kubectl_herald(&cluster, &["why", "web", "-n", &ns, "-o", "yaml"]);
    assert!(yaml.success, "{}", yaml.stderr);
    assert!(
        yaml.stdout.contains("  bgp:\n    state: Advertised\n"),
        "{}",
        yaml.stdout
    );

    // Without the BGP CRDs (or the right to list them), the layer-2 story still stands.
    Api::<CustomResourceDefinition>::all(cluster.client())
        .delete("bgppeers.herald.dev", &DeleteParams::default())
        .await
        .unwrap();
    let web = eventually(WAIT, "why without BGPPeers", || async {
        let web = why(&cluster, "web");
        web["announcement"]["bgp"].is_null().then_some(web)
    })
    .await;
    let notes = web["announcement"]["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            == "BGP: not shown: the API server does not serve BGPPeers (are Herald's CRDs \
                installed?)"),
        "{notes:?}"
    );
    assert_eq!(
        web["announcement"]["nowhere"],
        "no L2Advertisement selects pool \"routed\": create one to announce its addresses"
    );
}
