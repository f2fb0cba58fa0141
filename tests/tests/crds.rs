//! Herald's CRDs against the real API server: what a user who applies pools and
//! L2Advertisements sees.

use herald_core::addresses::AddressRange;
use herald_crds::{IPAddressPool, IPAddressPoolSpec, L2Advertisement, L2AdvertisementSpec};
use herald_tests::{TestCluster, test_cluster};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn pool(name: &str, addresses: &[&str]) -> IPAddressPool {
    IPAddressPool::new(
        name,
        IPAddressPoolSpec {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            auto_assign: true,
            avoid_buggy_ips: false,
            service_allocation: None,
        },
    )
}

/// Creates (as a dry run) a pool with the given entries and returns the API server's refusal.
async fn refusal(cluster: &TestCluster, addresses: &[&str]) -> Option<String> {
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match pools
        .create(&params, &pool(&cluster.unique_name("p"), addresses))
        .await
    {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.message),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn a_valid_pool_is_accepted_and_read_back_with_its_defaults() {
    let cluster = test_cluster("valid-pool").await;
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    let name = cluster.unique_name("lan");
    // Applied as a user would write it: only the addresses.
    let applied = json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "IPAddressPool",
        "metadata": { "name": name },
        "spec": { "addresses": ["192.0.2.200-192.0.2.250", "2001:db8:0:1::/120", "198.51.100.7"] }
    });
    pools
        .patch(
            &name,
            &PatchParams::apply("herald-tests"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    let read = pools.get(&name).await.unwrap();
    assert_eq!(
        read.spec.addresses,
        [
            "192.0.2.200-192.0.2.250",
            "2001:db8:0:1::/120",
            "198.51.100.7"
        ]
    );
    assert!(read.spec.auto_assign, "autoAssign defaults to true");
    assert!(
        !read.spec.avoid_buggy_ips,
        "avoidBuggyIPs defaults to false"
    );
    assert_eq!(read.spec.service_allocation, None);
}

#[tokio::test]
async fn every_malformed_address_entry_is_refused_with_a_message_naming_it() {
    let cluster = test_cluster("malformed").await;
    let cases = [
        ("192.0.2.300", "address entry \"192.0.2.300\" is not a CIDR"),
        ("lan", "address entry \"lan\" is not a CIDR"),
        (
            "192.0.2.0/33",
            "address entry \"192.0.2.0/33\" is not a CIDR",
        ),
        ("192.0.2.1-", "address entry \"192.0.2.1-\" is not a CIDR"),
        (
            "192.0.2.1-192.0.2.2-192.0.2.3",
            "address entry \"192.0.2.1-192.0.2.2-192.0.2.3\" is not a CIDR",
        ),
        (
            "192.0.2.1/24",
            "address entry \"192.0.2.1/24\" has host bits set: write the network address",
        ),
        (
            "2001:db8::1/64",
            "address entry \"2001:db8::1/64\" has host bits set: write the network address",
        ),
        (
            "192.0.2.1-2001:db8::1",
            "address entry \"192.0.2.1-2001:db8::1\" mixes IPv4 and IPv6",
        ),
        (
            "192.0.2.20-192.0.2.10",
            "address entry \"192.0.2.20-192.0.2.10\" is reversed",
        ),
        (
            "192.0.2.9-192.0.2.10",
            "", // ascending although "9" sorts after "10" as text
        ),
        (
            "2001:db8::10-2001:db8::f",
            "address entry \"2001:db8::10-2001:db8::f\" is reversed",
        ),
        (
            "2001:db8:1::-2001:db8::ffff",
            "address entry \"2001:db8:1::-2001:db8::ffff\" is reversed",
        ),
    ];
    for (entry, expected) in cases {
        let refused = refusal(&cluster, &["198.51.100.0/24", entry]).await;
        match (expected, refused) {
            ("", None) => {}
            ("", Some(message)) => panic!("{entry:?} was refused: {message}"),
            (_, None) => panic!("{entry:?} was accepted"),
            (expected, Some(message)) => {
                assert!(message.contains(expected), "{entry:?}: got {message:?}");
                assert!(
                    message.contains("spec.addresses[1]"),
                    "names the field: {message:?}"
                );
            }
        }
    }
    let empty = refusal(&cluster, &[])
        .await
        .expect("an empty pool is refused");
    assert!(empty.contains("spec.addresses"), "{empty}");
}

/// The API server's CEL rules and Herald's own parser agree on every entry, so the controller
/// never meets an entry it cannot read.
#[tokio::test]
async fn admission_accepts_exactly_what_the_controller_parses() {
    let cluster = test_cluster("cel-parity").await;
    let entries = [
        "192.0.2.0/24",
        "192.0.2.0/32",
        "0.0.0.0/0",
        "192.0.2.7",
        "192.0.2.10 - 192.0.2.20",
        "192.0.2.10-192.0.2.10",
        "192.0.2.255-192.0.3.0",
        "2001:db8::/32",
        "2001:db8::1",
        "2001:DB8::1",
        "2001:db8::-2001:db8::ff",
        "2001:db8:0:0:1::-2001:db8::1:0:0:0",
        "::-::1",
        "::/0",
        "2001:db8::1/128",
        "192.0.2.1/24",
        "2001:db8::1/64",
        "192.0.2.01",
        " 192.0.2.1",
        "192.0.2.1-192.0.2.0",
        "2001:db8::2-2001:db8::1",
        "2001:db8:0:0:1::-2001:db8::",
        "fe80::1%eth0",
        "192.0.2.0/-1",
        "-",
    ];
    for entry in entries {
        let admitted = refusal(&cluster, &[entry]).await;
        let parsed = AddressRange::parse(entry);
        assert_eq!(
            admitted.is_none(),
            parsed.is_ok(),
            "{entry:?}: API server says {admitted:?}, Herald's parser says {parsed:?}"
        );
    }
}

#[tokio::test]
async fn pool_status_is_written_through_the_status_subresource() {
    let cluster = test_cluster("pool-status").await;
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    let name = cluster.unique_name("lan");
    pools
        .create(&PostParams::default(), &pool(&name, &["192.0.2.0/28"]))
        .await
        .unwrap();
    let status = json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "IPAddressPool",
        "status": {
            "assignedIPv4": 3,
            "availableIPv4": 13,
            "assignedIPv6": 0,
            "availableIPv6": i64::MAX,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Allocating",
                "message": "16 IPv4 addresses", "lastTransitionTime": "2026-11-21T00:00:00Z"
            }]
        }
    });
    pools
        .patch_status(
            &name,
            &PatchParams::apply(herald_crds::field_managers::CONTROLLER).force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    let read = pools.get_status(&name).await.unwrap();
    let status = read.status.expect("a status");
    assert_eq!(status.assigned_ipv4, Some(3));
    assert_eq!(status.available_ipv4, Some(13));
    assert_eq!(status.available_ipv6, Some(i64::MAX));
    let ready: &Condition = &status.conditions[0];
    assert_eq!(
        (ready.type_.as_str(), ready.status.as_str()),
        ("Ready", "True")
    );

    // The status subresource ignores spec changes, and the main resource ignores status.
    let spec_through_status = json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
        "spec": { "addresses": ["198.51.100.0/24"] },
    });
    pools
        .patch_status(
            &name,
            &PatchParams::apply("intruder"),
            &Patch::Merge(&spec_through_status),
        )
        .await
        .unwrap();
    assert_eq!(
        pools.get(&name).await.unwrap().spec.addresses,
        ["192.0.2.0/28"]
    );
}

#[tokio::test]
async fn kubectl_get_prints_the_pool_columns() {
    let cluster = test_cluster("printer-columns").await;
    let name = cluster.unique_name("lan");
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    pools
        .create(
            &PostParams::default(),
            &pool(&name, &["192.0.2.0/28", "2001:db8::/120"]),
        )
        .await
        .unwrap();
    let status = json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
        "status": {
            "assignedIPv4": 2, "availableIPv4": 14, "assignedIPv6": 1, "availableIPv6": 255,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Allocating",
                            "message": "", "lastTransitionTime": "2026-11-21T00:00:00Z"}]
        }
    });
    pools
        .patch_status(
            &name,
            &PatchParams::apply(herald_crds::field_managers::CONTROLLER).force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();

    // The short name, as a user types it.
    let table = cluster.kubectl(&["get", "ippool", &name]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ADDRESSES",
            "AUTO ASSIGN",
            "V4 ASSIGNED",
            "V4 AVAILABLE",
            "V6 ASSIGNED",
            "V6 AVAILABLE",
            "READY",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..8],
        [
            name.as_str(),
            r#"["192.0.2.0/28","2001:db8::/120"]"#,
            "true",
            "2",
            "14",
            "1",
            "255",
            "True"
        ]
    );

    // The category lists every Herald object.
    assert!(cluster.kubectl(&["get", "herald"]).contains(&name));
}

#[tokio::test]
async fn l2advertisements_are_accepted_with_their_short_name_and_refuse_bad_interfaces() {
    let cluster = test_cluster("l2adv").await;
    let ads: Api<L2Advertisement> = Api::all(cluster.client());
    let name = cluster.unique_name("lan");
    let spec = L2AdvertisementSpec {
        ip_address_pools: vec!["lan".into()],
        interfaces: vec!["eth0".into()],
        node_selectors: vec![
            serde_json::from_value(json!({"matchLabels": {"rack": "a"}})).unwrap(),
        ],
        ..L2AdvertisementSpec::default()
    };
    ads.create(
        &PostParams::default(),
        &L2Advertisement::new(&name, spec.clone()),
    )
    .await
    .unwrap();
    let read = ads.get(&name).await.unwrap();
    assert_eq!(read.spec, spec);
    let table = cluster.kubectl(&["get", "l2adv", &name]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains(r#"["lan"]"#) && table.contains(r#"["eth0"]"#),
        "{table}"
    );

    for bad in ["a-name-longer-than-15", "eth0/1", ""] {
        let spec = L2AdvertisementSpec {
            interfaces: vec![bad.into()],
            ..L2AdvertisementSpec::default()
        };
        let err = ads
            .create(
                &PostParams::default(),
                &L2Advertisement::new(&cluster.unique_name("bad"), spec),
            )
            .await
            .expect_err(bad);
        assert!(
            err.to_string().contains("spec.interfaces[0]"),
            "{bad:?}: {err}"
        );
    }
}

#[tokio::test]
async fn selectors_with_a_bad_operator_or_values_are_refused_at_admission() {
    let cluster = test_cluster("bad-selectors").await;
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    let adverts: Api<L2Advertisement> = Api::all(cluster.client());
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let expression = |operator: &str, values: serde_json::Value| {
        let mut e = json!({"key": "tier", "operator": operator});
        if !values.is_null() {
            e["values"] = values;
        }
        json!([{"matchExpressions": [e]}])
    };
    let cases = [
        (
            expression("Inn", json!(["web"])),
            "Unsupported value: \"Inn\"",
        ),
        (
            expression("In", json!([])),
            "In and NotIn need at least one value",
        ),
        (
            expression("NotIn", serde_json::Value::Null),
            "In and NotIn need at least one value",
        ),
        (
            expression("Exists", json!(["web"])),
            "Exists and DoesNotExist take no values",
        ),
    ];
    for (selectors, expected) in cases {
        let pool: IPAddressPool = serde_json::from_value(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": cluster.unique_name("p")},
            "spec": {"addresses": ["192.0.2.0/30"],
                     "serviceAllocation": {"serviceSelectors": selectors.clone(),
                                           "namespaceSelectors": selectors.clone()}},
        }))
        .unwrap();
        let refused = pools.create(&dry_run, &pool).await.expect_err(expected);
        for field in [
            "spec.serviceAllocation.serviceSelectors[0].matchExpressions[0]",
            "spec.serviceAllocation.namespaceSelectors[0].matchExpressions[0]",
        ] {
            assert!(refused.to_string().contains(field), "{field}: {refused}");
        }
        assert!(refused.to_string().contains(expected), "{refused}");
        let advert: L2Advertisement = serde_json::from_value(json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": "L2Advertisement",
            "metadata": {"name": cluster.unique_name("a")},
            "spec": {"ipAddressPoolSelectors": selectors.clone(), "nodeSelectors": selectors},
        }))
        .unwrap();
        let refused = adverts.create(&dry_run, &advert).await.expect_err(expected);
        for field in [
            "spec.ipAddressPoolSelectors[0].matchExpressions[0]",
            "spec.nodeSelectors[0].matchExpressions[0]",
        ] {
            assert!(refused.to_string().contains(field), "{field}: {refused}");
        }
    }
    // Every valid form passes.
    let valid = json!([{"matchLabels": {"a": "b"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["web"]},
        {"key": "tier", "operator": "NotIn", "values": ["db"]},
        {"key": "zone", "operator": "Exists"},
        {"key": "old", "operator": "DoesNotExist", "values": []}]}]);
    let pool: IPAddressPool = serde_json::from_value(json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
        "metadata": {"name": cluster.unique_name("ok")},
        "spec": {"addresses": ["192.0.2.0/30"], "serviceAllocation": {"serviceSelectors": valid}},
    }))
    .unwrap();
    pools.create(&dry_run, &pool).await.unwrap();
}

/// Creates `object` as a dry run and returns the API server's refusal, if any.
async fn dry_run_refusal(
    cluster: &TestCluster,
    plural: &str,
    object: serde_json::Value,
) -> Option<String> {
    let resource = kube::discovery::ApiResource {
        group: "herald.dev".into(),
        version: "v1alpha1".into(),
        api_version: "herald.dev/v1alpha1".into(),
        kind: object["kind"].as_str().unwrap().into(),
        plural: plural.into(),
    };
    let api: Api<kube::api::DynamicObject> = Api::all_with(cluster.client(), &resource);
    let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api.create(&params, &object).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.message),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Checks each (spec, expected refusal) of kind `kind`: "" means accepted.
async fn check_specs(
    cluster: &TestCluster,
    kind: &str,
    plural: &str,
    cases: Vec<(serde_json::Value, &str)>,
) {
    for (spec, expected) in cases {
        let object = json!({
            "apiVersion": "herald.dev/v1alpha1", "kind": kind,
            "metadata": {"name": cluster.unique_name("x")},
            "spec": spec,
        });
        match (expected, dry_run_refusal(cluster, plural, object).await) {
            ("", None) => {}
            ("", Some(message)) => panic!("{kind} {spec} was refused: {message}"),
            (_, None) => panic!("{kind} {spec} was accepted; expected {expected:?}"),
            (expected, Some(message)) => {
                assert!(message.contains(expected), "{kind} {spec}: got {message:?}")
            }
        }
    }
}

#[tokio::test]
async fn bgp_peers_are_checked_like_metallb_checks_them() {
    let cluster = test_cluster("bgppeer").await;
    let peer = |extra: serde_json::Value| {
        let mut spec = json!({"peerAddress": "198.51.100.1", "peerASN": 64513, "myASN": 64512});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    let cases = vec![
        (
            peer(json!({
                "peerPort": 1179, "sourceAddress": "192.0.2.11", "routerID": "192.0.2.11",
                "holdTime": "9s", "keepaliveTime": "3s", "connectTime": "5s",
                "ebgpMultiHop": true, "bfdProfile": "fast", "enableGracefulRestart": true,
                "passwordSecret": {"name": "tor", "namespace": "herald-system", "key": "pw"},
                "nodeSelectors": [{"matchLabels": {"rack": "a"}}],
            })),
            "",
        ),
        (
            peer(json!({"peerAddress": "2001:db8::1", "holdTime": "0s", "keepaliveTime": "0s"})),
            "",
        ),
        (peer(json!({"holdTime": "1m30s"})), ""),
        (
            peer(json!({"peerAddress": "router"})),
            "peerAddress must be an IPv4 or IPv6 address",
        ),
        (peer(json!({"peerASN": 0})), "spec.peerASN"),
        (peer(json!({"myASN": 4294967296_u64})), "spec.myASN"),
        (peer(json!({"peerPort": 0})), "spec.peerPort"),
        (
            peer(json!({"routerID": "2001:db8::1"})),
            "routerID must be an IPv4 address",
        ),
        (
            peer(json!({"sourceAddress": "2001:db8::1"})),
            "sourceAddress and peerAddress must be of one address family",
        ),
        (
            peer(json!({"holdTime": "2s"})),
            "holdTime must be 0s or between 3s and 65535s",
        ),
        (
            peer(json!({"holdTime": "90"})),
            "holdTime must be a duration such as 90s or 1m30s",
        ),
        (
            peer(json!({"holdTime": "1500ms"})),
            "holdTime must be a whole number of seconds",
        ),
        (
            peer(json!({"holdTime": "20h"})),
            "holdTime must be 0s or between 3s and 65535s",
        ),
        (
            peer(json!({"holdTime": "9s", "keepaliveTime": "9s"})),
            "keepaliveTime must be lower than holdTime",
        ),
        (
            peer(json!({"keepaliveTime": "30000s"})),
            "keepaliveTime without holdTime",
        ),
        (
            peer(json!({"connectTime": "0s"})),
            "connectTime must be between 1s and 65535s",
        ),
        (
            peer(json!({"myASN": 64513, "ebgpMultiHop": true})),
            "ebgpMultiHop is for eBGP",
        ),
        (
            peer(json!({"passwordSecret": {"namespace": "herald-system"}})),
            "spec.passwordSecret.name",
        ),
        (
            json!({"peerAddress": "198.51.100.1", "myASN": 64512}),
            "spec.peerASN",
        ),
    ];
    check_specs(&cluster, "BGPPeer", "bgppeers", cases).await;
}

#[tokio::test]
async fn bgp_advertisements_and_bfd_profiles_refuse_what_frr_cannot_do() {
    let cluster = test_cluster("bgpadv").await;
    let cases = vec![
        (
            json!({
                "ipAddressPools": ["lan"], "ipAddressPoolSelectors": [{"matchLabels": {"bgp": "yes"}}],
                "peers": ["tor"], "nodeSelectors": [{"matchLabels": {"rack": "a"}}],
                "aggregationLength": 24, "aggregationLengthV6": 64, "localPref": 200,
                "communities": ["65535:65282", "0:0", "large:4294967295:1:2"],
            }),
            "",
        ),
        (json!({}), ""),
        (json!({"aggregationLength": 33}), "spec.aggregationLength"),
        (json!({"aggregationLength": 0}), "spec.aggregationLength"),
        (
            json!({"aggregationLengthV6": 129}),
            "spec.aggregationLengthV6",
        ),
        (
            json!({"communities": ["65536:1"]}),
            "community \"65536:1\" is neither standard",
        ),
        (
            json!({"communities": ["no-export"]}),
            "community \"no-export\" is neither standard",
        ),
        (
            json!({"communities": ["large:1:2"]}),
            "community \"large:1:2\" is neither standard",
        ),
        (
            json!({"communities": ["large:1:2:4294967296"]}),
            "is neither standard",
        ),
        (json!({"localPref": -1}), "spec.localPref"),
    ];
    check_specs(&cluster, "BGPAdvertisement", "bgpadvertisements", cases).await;

    let cases = vec![
        (
            json!({"receiveInterval": 100, "transmitInterval": 100, "detectMultiplier": 3,
                   "echoInterval": 50, "echoMode": true, "passiveMode": true, "minimumTtl": 254}),
            "",
        ),
        (json!({"receiveInterval": 9}), "spec.receiveInterval"),
        (json!({"transmitInterval": 60001}), "spec.transmitInterval"),
        (json!({"detectMultiplier": 1}), "spec.detectMultiplier"),
        (json!({"detectMultiplier": 256}), "spec.detectMultiplier"),
        (json!({"minimumTtl": 255}), "spec.minimumTtl"),
    ];
    check_specs(&cluster, "BFDProfile", "bfdprofiles", cases).await;
}

#[tokio::test]
async fn kubectl_get_prints_the_bgp_session_state_columns() {
    let cluster = test_cluster("bgpsession").await;
    let sessions: Api<herald_crds::BGPSessionState> = Api::all(cluster.client());
    let name = cluster.unique_name("node-a-tor");
    sessions
        .create(
            &PostParams::default(),
            &herald_crds::BGPSessionState::new(&name, herald_crds::BGPSessionStateSpec {}),
        )
        .await
        .unwrap();
    let status = json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "BGPSessionState",
        "status": {"node": "node-a", "peer": "tor", "peerAddress": "198.51.100.1",
                   "bgpState": "Established", "bfdState": "Up", "prefixesAdvertised": 3,
                   "lastTransitionTime": "2026-11-21T00:00:00Z"}
    });
    sessions
        .patch_status(
            &name,
            &PatchParams::apply("herald-speaker").force(),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    let table = cluster.kubectl(&["get", "bgpsession", &name]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "NODE", "PEER", "BGP", "BFD", "PREFIXES", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..6],
        [name.as_str(), "node-a", "tor", "Established", "Up", "3"]
    );
}
