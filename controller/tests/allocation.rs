//! Every allocation rule through the real herald-controller binary and the real API server,
//! read back as a user sees it: the Service's status and condition, its Events, the pool's
//! status. One controller serves all the tests of this file; each test's pools serve only its
//! own namespace.

mod support;

use std::net::IpAddr;
use std::sync::Mutex;

use herald_crds::IPAddressPool;
use herald_tests::{Process, TestCluster, eventually, test_cluster};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::*;
use tokio::sync::OnceCell;

static CONTROLLER: OnceCell<Mutex<Process>> = OnceCell::const_new();

async fn cluster(test: &str) -> TestCluster {
    let cluster = test_cluster(test).await;
    CONTROLLER
        .get_or_init(|| async { Mutex::new(start_controller(&cluster, &["--leader-elect=false"])) })
        .await;
    cluster
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_service_gets_the_lowest_free_address_with_a_condition_and_an_event() {
    let cluster = cluster("basic").await;
    let lan = pool(
        &cluster,
        "lan",
        json!({"addresses": ["192.0.2.10-192.0.2.20"]}),
    )
    .await;
    service(&cluster, "web", json!({}), json!({})).await;
    assert_eq!(addresses(&cluster, "web").await, [ip("192.0.2.10")]);
    service(&cluster, "api", json!({}), json!({})).await;
    assert_eq!(addresses(&cluster, "api").await, [ip("192.0.2.11")]);

    let web = services(&cluster).get("web").await.unwrap();
    let ingress = &web
        .status
        .as_ref()
        .unwrap()
        .load_balancer
        .as_ref()
        .unwrap()
        .ingress
        .as_ref()
        .unwrap()[0];
    assert_eq!(ingress.ip_mode.as_deref(), Some("VIP"));
    let condition = allocated(&web).unwrap();
    assert_eq!(
        (condition.status, condition.reason.as_str()),
        (true, "Allocated")
    );
    assert_eq!(condition.message, format!("192.0.2.10 from pool {lan:?}"));
    assert_eq!(
        event(&cluster, "web", "IPAllocated").await,
        format!("IPAllocated: Assigned 192.0.2.10 from pool {lan:?}")
    );

    // The pool reports its usage.
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    eventually(WAIT, "pool usage", || async {
        let status = pools.get(&lan).await.ok()?.status?;
        (status.assigned_ipv4 == Some(2) && status.available_ipv4 == Some(9)).then_some(())
    })
    .await;
    let table = cluster.kubectl(&["get", "ippool", &lan]);
    assert!(table.lines().nth(1).unwrap().contains(" 2 "), "{table}");
}

#[tokio::test]
async fn a_full_pool_says_so_and_freed_or_added_addresses_go_to_waiting_services() {
    let cluster = cluster("exhausted").await;
    let lan = pool(&cluster, "lan", json!({"addresses": ["192.0.2.30/31"]})).await;
    for name in ["a", "b", "c"] {
        service(&cluster, name, json!({}), json!({})).await;
    }
    addresses(&cluster, "a").await;
    addresses(&cluster, "b").await;
    let waiting = condition(&cluster, "c", "PoolExhausted").await;
    assert!(!waiting.status);
    assert_eq!(
        waiting.message,
        "every pool that may serve this Service is out of IPv4 addresses"
    );
    assert!(
        event(&cluster, "c", "AllocationFailed")
            .await
            .contains("PoolExhausted")
    );

    let freed = addresses(&cluster, "a").await;
    services(&cluster)
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(addresses(&cluster, "c").await, freed);

    // Addresses added to the pool serve the next waiting Service.
    service(&cluster, "d", json!({}), json!({})).await;
    condition(&cluster, "d", "PoolExhausted").await;
    let ns = cluster.namespace().to_owned();
    apply(
        &cluster,
        "herald.dev/v1alpha1",
        "IPAddressPool",
        &lan,
        None,
        json!({"spec": {
        "addresses": ["192.0.2.30/31", "192.0.2.32"], "serviceAllocation": {"namespaces": [ns]}}}),
    )
    .await;
    assert_eq!(addresses(&cluster, "d").await, [ip("192.0.2.32")]);
}

#[tokio::test]
async fn requested_addresses_in_every_annotation_form_and_in_the_spec() {
    let cluster = cluster("requested").await;
    pool(
        &cluster,
        "lan",
        json!({"addresses": ["192.0.2.40/29", "2001:db8:40::/120"]}),
    )
    .await;
    service(
        &cluster,
        "herald",
        json!({"herald.dev/loadBalancerIPs": "192.0.2.45"}),
        json!({}),
    )
    .await;
    service(
        &cluster,
        "metallb",
        json!({"metallb.io/loadBalancerIPs": "192.0.2.44"}),
        json!({}),
    )
    .await;
    service(
        &cluster,
        "legacy",
        json!({"metallb.universe.tf/loadBalancerIPs": "192.0.2.43"}),
        json!({}),
    )
    .await;
    service(
        &cluster,
        "spec",
        json!({}),
        json!({"loadBalancerIP": "192.0.2.42"}),
    )
    .await;
    service(
        &cluster,
        "dual",
        json!({"herald.dev/loadBalancerIPs": "192.0.2.41,2001:db8:40::41"}),
        json!({"ipFamilyPolicy": "RequireDualStack"}),
    )
    .await;
    assert_eq!(addresses(&cluster, "herald").await, [ip("192.0.2.45")]);
    assert_eq!(addresses(&cluster, "metallb").await, [ip("192.0.2.44")]);
    assert_eq!(addresses(&cluster, "legacy").await, [ip("192.0.2.43")]);
    assert_eq!(addresses(&cluster, "spec").await, [ip("192.0.2.42")]);
    assert_eq!(
        addresses(&cluster, "dual").await,
        [ip("192.0.2.41"), ip("2001:db8:40::41")]
    );

    // Taken, outside every pool, both spec and annotation: each says what to fix.
    service(
        &cluster,
        "taken",
        json!({"herald.dev/loadBalancerIPs": "192.0.2.45"}),
        json!({}),
    )
    .await;
    let taken = condition(&cluster, "taken", "AddressInUse").await;
    assert!(
        taken
            .message
            .contains(&format!("in use by Service {}/herald", cluster.namespace())),
        "{}",
        taken.message
    );
    service(
        &cluster,
        "outside",
        json!({"herald.dev/loadBalancerIPs": "203.0.113.99"}),
        json!({}),
    )
    .await;
    assert_eq!(
        condition(&cluster, "outside", "AddressNotInPool")
            .await
            .message,
        "requested address 203.0.113.99 is not in any IPAddressPool"
    );
    service(
        &cluster,
        "both",
        json!({"herald.dev/loadBalancerIPs": "192.0.2.46"}),
        json!({"loadBalancerIP": "192.0.2.47"}),
    )
    .await;
    let both = condition(&cluster, "both", "InvalidRequest").await;
    assert!(
        both.message
            .contains("are both set: use only the annotation"),
        "{}",
        both.message
    );
    assert!(
        event(&cluster, "both", "AllocationFailed")
            .await
            .contains("InvalidRequest")
    );
    service(
        &cluster,
        "garbage",
        json!({"herald.dev/loadBalancerIPs": "192.0.2.500"}),
        json!({}),
    )
    .await;
    assert!(
        condition(&cluster, "garbage", "InvalidRequest")
            .await
            .message
            .contains("\"192.0.2.500\" is not an IP address")
    );
}

#[tokio::test]
async fn a_malformed_annotation_added_later_keeps_the_address_until_fixed() {
    let cluster = cluster("keep-on-bad-input").await;
    pool(&cluster, "lan", json!({"addresses": ["192.0.2.52/30"]})).await;
    service(&cluster, "web", json!({}), json!({})).await;
    let before = addresses(&cluster, "web").await;
    apply(
        &cluster,
        "v1",
        "Service",
        "web",
        Some(cluster.namespace()),
        json!({"metadata": {"annotations": {"herald.dev/loadBalancerIPs": "not-an-ip"}}}),
    )
    .await;
    let bad = condition(&cluster, "web", "InvalidRequest").await;
    assert!(
        bad.message.ends_with(&format!("; keeping {}", before[0])),
        "{}",
        bad.message
    );
    assert_eq!(
        ingress(&services(&cluster).get("web").await.unwrap()),
        before
    );
}

#[tokio::test]
async fn named_pools_auto_assign_and_avoid_buggy_ips() {
    let cluster = cluster("pools").await;
    let manual = pool(
        &cluster,
        "manual",
        json!({"addresses": ["198.51.100.0/30"], "autoAssign": false}),
    )
    .await;
    pool(
        &cluster,
        "buggy",
        json!({"addresses": ["192.0.2.255-192.0.3.1"], "avoidBuggyIPs": true}),
    )
    .await;
    service(&cluster, "auto", json!({}), json!({})).await;
    assert_eq!(addresses(&cluster, "auto").await, [ip("192.0.3.1")]);
    service(
        &cluster,
        "named",
        json!({"metallb.io/address-pool": manual}),
        json!({}),
    )
    .await;
    assert_eq!(addresses(&cluster, "named").await, [ip("198.51.100.0")]);
    service(
        &cluster,
        "missing",
        json!({"herald.dev/address-pool": "no-such-pool"}),
        json!({}),
    )
    .await;
    assert!(
        condition(&cluster, "missing", "PoolNotFound")
            .await
            .message
            .contains("\"no-such-pool\" does not exist")
    );
    // The only auto-assign pool is full now.
    service(&cluster, "more", json!({}), json!({})).await;
    condition(&cluster, "more", "PoolExhausted").await;
}

#[tokio::test]
async fn service_allocation_selectors_and_priority_decide_the_pool() {
    let cluster = cluster("priority").await;
    let ns = cluster.namespace().to_owned();
    pool(
        &cluster,
        "low",
        json!({"addresses": ["192.0.2.60/32"],
        "serviceAllocation": {"priority": 20, "namespaces": [ns]}}),
    )
    .await;
    pool(
        &cluster,
        "high",
        json!({"addresses": ["192.0.2.61/32"],
        "serviceAllocation": {"priority": 10, "namespaces": [ns]}}),
    )
    .await;
    pool(
        &cluster,
        "web-only",
        json!({"addresses": ["192.0.2.62/32"],
        "serviceAllocation": {"priority": 1, "namespaces": [ns],
            "serviceSelectors": [{"matchLabels": {"tier": "web"}}]}}),
    )
    .await;
    service(&cluster, "first", json!({}), json!({})).await;
    assert_eq!(addresses(&cluster, "first").await, [ip("192.0.2.61")]);
    service(&cluster, "second", json!({}), json!({})).await;
    assert_eq!(addresses(&cluster, "second").await, [ip("192.0.2.60")]);
    apply(
        &cluster,
        "v1",
        "Service",
        "web",
        Some(&ns),
        json!({
            "metadata": {"labels": {"tier": "web"}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        }),
    )
    .await;
    assert_eq!(addresses(&cluster, "web").await, [ip("192.0.2.62")]);
}

#[tokio::test]
async fn namespace_selectors_follow_namespace_labels() {
    let cluster = cluster("ns-labels").await;
    pool(&cluster, "prod", json!({"addresses": ["192.0.2.70/32"],
        "serviceAllocation": {"namespaceSelectors": [{"matchLabels": {"env": cluster.namespace()}}]}})).await;
    service(&cluster, "web", json!({}), json!({})).await;
    condition(&cluster, "web", "NoPoolAvailable").await;
    apply(
        &cluster,
        "v1",
        "Namespace",
        cluster.namespace(),
        None,
        json!({"metadata": {"labels": {"env": cluster.namespace()}}}),
    )
    .await;
    assert_eq!(addresses(&cluster, "web").await, [ip("192.0.2.70")]);
}

#[tokio::test]
async fn dual_stack_follows_the_family_policy() {
    let cluster = cluster("dual-stack").await;
    pool(
        &cluster,
        "dual",
        json!({"addresses": ["192.0.2.80/31", "2001:db8:80::/127"]}),
    )
    .await;
    service(
        &cluster,
        "require",
        json!({}),
        json!({"ipFamilyPolicy": "RequireDualStack"}),
    )
    .await;
    assert_eq!(
        addresses(&cluster, "require").await,
        [ip("192.0.2.80"), ip("2001:db8:80::")]
    );
    service(&cluster, "v6", json!({}), json!({"ipFamilies": ["IPv6"]})).await;
    assert_eq!(addresses(&cluster, "v6").await, [ip("2001:db8:80::1")]);
    // No IPv6 left: PreferDualStack falls back to IPv4, RequireDualStack waits.
    service(
        &cluster,
        "prefer",
        json!({}),
        json!({"ipFamilyPolicy": "PreferDualStack"}),
    )
    .await;
    assert_eq!(addresses(&cluster, "prefer").await, [ip("192.0.2.81")]);
}

#[tokio::test]
async fn sharing_keys_share_an_address_only_when_ports_and_backends_allow() {
    let cluster = cluster("sharing").await;
    pool(&cluster, "lan", json!({"addresses": ["192.0.2.88/30"]})).await;
    let key = json!({"herald.dev/allow-shared-ip": "k"});
    service(
        &cluster,
        "http",
        key.clone(),
        json!({"ports": [{"port": 80}]}),
    )
    .await;
    let shared = addresses(&cluster, "http").await;
    service(
        &cluster,
        "https",
        key.clone(),
        json!({"ports": [{"port": 443}]}),
    )
    .await;
    assert_eq!(addresses(&cluster, "https").await, shared);
    service(
        &cluster,
        "clash",
        key.clone(),
        json!({"ports": [{"port": 80}]}),
    )
    .await;
    assert_ne!(addresses(&cluster, "clash").await, shared);
    service(
        &cluster,
        "local",
        key.clone(),
        json!({"ports": [{"port": 8443}], "externalTrafficPolicy": "Local"}),
    )
    .await;
    assert_ne!(addresses(&cluster, "local").await, shared);
    service(
        &cluster,
        "asks",
        json!({"herald.dev/loadBalancerIPs": shared[0].to_string()}),
        json!({"ports": [{"port": 22}]}),
    )
    .await;
    let refused = condition(&cluster, "asks", "AddressInUse").await;
    assert!(
        refused.message.contains("no allow-shared-ip key"),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn addresses_are_released_on_delete_type_change_and_class_change() {
    let cluster = cluster("release").await;
    pool(&cluster, "lan", json!({"addresses": ["192.0.2.100/32"]})).await;
    service(&cluster, "one", json!({}), json!({})).await;
    let address = addresses(&cluster, "one").await;
    service(&cluster, "two", json!({}), json!({})).await;
    condition(&cluster, "two", "PoolExhausted").await;

    // Type change: the address goes, with our condition, and "two" gets it.
    apply(
        &cluster,
        "v1",
        "Service",
        "one",
        Some(cluster.namespace()),
        json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}),
    )
    .await;
    assert_eq!(addresses(&cluster, "two").await, address);
    // The two writes race: "two" may show the address a moment before "one" shows it gone.
    let api = services(&cluster);
    eventually(WAIT, "one to show no address and no condition", || async {
        let one = api.get("one").await.ok()?;
        (ingress(&one).is_empty() && allocated(&one).is_none()).then_some(())
    })
    .await;
    assert!(
        event(&cluster, "one", "IPReleased")
            .await
            .contains("no longer a LoadBalancer")
    );

    // A class that is not ours: ignored, and it frees nothing it never had.
    service(
        &cluster,
        "classy",
        json!({}),
        json!({"loadBalancerClass": "example.com/other"}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(allocated(&services(&cluster).get("classy").await.unwrap()).is_none());
}

#[tokio::test]
async fn a_pool_edit_takes_back_removed_addresses_visibly_and_moves_nothing_else() {
    let cluster = cluster("pool-edit").await;
    let lan = pool(
        &cluster,
        "lan",
        json!({"addresses": ["192.0.2.110-192.0.2.113"]}),
    )
    .await;
    service(&cluster, "a", json!({}), json!({})).await;
    assert_eq!(addresses(&cluster, "a").await, [ip("192.0.2.110")]);
    service(&cluster, "b", json!({}), json!({})).await;
    assert_eq!(addresses(&cluster, "b").await, [ip("192.0.2.111")]);
    let ns = cluster.namespace().to_owned();
    apply(
        &cluster,
        "herald.dev/v1alpha1",
        "IPAddressPool",
        &lan,
        None,
        json!({"spec": {
        "addresses": ["192.0.2.111-192.0.2.113"], "serviceAllocation": {"namespaces": [ns]}}}),
    )
    .await;
    let api = services(&cluster);
    eventually(WAIT, "a to move", || async {
        let ips = ingress(&api.get("a").await.ok()?);
        (ips == [ip("192.0.2.112")]).then_some(())
    })
    .await;
    let withdrawn = event(&cluster, "a", "IPWithdrawn").await;
    assert!(
        withdrawn.contains(&format!(
            "address 192.0.2.110 was removed from pool {lan:?}"
        )),
        "{withdrawn}"
    );
    assert_eq!(addresses(&cluster, "b").await, [ip("192.0.2.111")]);
}

#[tokio::test]
async fn overlapping_pools_are_flagged_and_never_hand_out_an_address_twice() {
    let cluster = cluster("overlap").await;
    let one = pool(&cluster, "one", json!({"addresses": ["192.0.2.120/31"]})).await;
    let two = pool(
        &cluster,
        "two",
        json!({"addresses": ["192.0.2.121-192.0.2.122"]}),
    )
    .await;
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    let conflicting = eventually(WAIT, "a Conflicting condition", || async {
        let status = pools.get(&one).await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Conflicting" && c.status == "True")
    })
    .await;
    assert!(
        conflicting
            .message
            .contains(&format!("192.0.2.121 with pool {two:?}")),
        "{}",
        conflicting.message
    );
    let mut seen = Vec::new();
    for name in ["s1", "s2", "s3"] {
        service(&cluster, name, json!({}), json!({})).await;
        let got = addresses(&cluster, name).await;
        assert!(!seen.contains(&got[0]), "{} handed out twice", got[0]);
        seen.push(got[0]);
    }
}

#[tokio::test]
async fn a_stable_cluster_writes_nothing_and_emits_no_events() {
    let cluster = cluster("quiet").await;
    pool(&cluster, "lan", json!({"addresses": ["192.0.2.140/30"]})).await;
    service(&cluster, "web", json!({}), json!({})).await;
    addresses(&cluster, "web").await;
    let api = services(&cluster);
    let before = api.get("web").await.unwrap().metadata.resource_version;
    // Unrelated changes: a label on the Service, another pool of another test.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = api.get("web").await.unwrap();
    assert_ne!(
        after.metadata.resource_version, before,
        "the label patch itself changed it"
    );
    let rv = after.metadata.resource_version.clone();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        api.get("web").await.unwrap().metadata.resource_version,
        rv,
        "the controller wrote again"
    );
    assert_eq!(
        events(&cluster, "web").await.len(),
        1,
        "{:?}",
        events(&cluster, "web").await
    );
}

/// Writes `ips` into the Service's status as MetalLB's controller would: its own field manager.
async fn write_status_as_metallb(cluster: &TestCluster, name: &str, ips: &[IpAddr]) {
    let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let body = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": cluster.namespace()},
        "status": {"loadBalancer": {"ingress": ingress}}});
    services(cluster)
        .patch_status(
            name,
            &PatchParams::apply("metallb-controller").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
}

/// Waits at most a second for the Service's status to show no address.
async fn ingress_cleared(cluster: &TestCluster, name: &str) {
    let api = services(cluster);
    eventually(
        std::time::Duration::from_secs(1),
        &format!("an empty ingress on Service {name}"),
        || async { ingress(&api.get(name).await.ok()?).is_empty().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn an_address_that_another_manager_also_wrote_is_cleared_when_herald_takes_it_away() {
    let cluster = cluster("from-metallb").await;
    let lan = pool(
        &cluster,
        "lan",
        json!({"addresses": ["192.0.2.150-192.0.2.151"]}),
    )
    .await;
    // Two Services moved from MetalLB: the address is in their status under MetalLB's field
    // manager as well as Herald's.
    for (name, address) in [("typed", "192.0.2.150"), ("edited", "192.0.2.151")] {
        service(
            &cluster,
            name,
            json!({"metallb.io/loadBalancerIPs": address}),
            json!({}),
        )
        .await;
        assert_eq!(addresses(&cluster, name).await, [ip(address)]);
        condition(&cluster, name, "Allocated").await;
        write_status_as_metallb(&cluster, name, &[ip(address)]).await;
    }

    // No longer a LoadBalancer: its address goes.
    apply(
        &cluster,
        "v1",
        "Service",
        "typed",
        Some(cluster.namespace()),
        json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}),
    )
    .await;
    ingress_cleared(&cluster, "typed").await;

    // A pool edit takes its address: it goes too.
    let ns = cluster.namespace().to_owned();
    apply(
        &cluster,
        "herald.dev/v1alpha1",
        "IPAddressPool",
        &lan,
        None,
        json!({"spec": {"addresses": ["192.0.2.150/32"], "serviceAllocation": {"namespaces": [ns]}}}),
    )
    .await;
    ingress_cleared(&cluster, "edited").await;
    condition(&cluster, "edited", "AddressNotInPool").await;
}

#[tokio::test]
async fn prefer_dual_stack_with_a_requested_address_settles_and_writes_nothing_more() {
    let cluster = cluster("prefer-requested").await;
    pool(
        &cluster,
        "dual",
        json!({"addresses": ["192.0.2.160/31", "2001:db8:160::/127"]}),
    )
    .await;
    service(
        &cluster,
        "by-spec",
        json!({}),
        json!({"loadBalancerIP": "192.0.2.161", "ipFamilyPolicy": "PreferDualStack"}),
    )
    .await;
    service(
        &cluster,
        "by-annotation",
        json!({"herald.dev/loadBalancerIPs": "2001:db8:160::1"}),
        json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
    )
    .await;
    let api = services(&cluster);
    for (name, expected) in [
        ("by-spec", [ip("192.0.2.161"), ip("2001:db8:160::")]),
        ("by-annotation", [ip("192.0.2.160"), ip("2001:db8:160::1")]),
    ] {
        eventually(WAIT, &format!("both families on {name}"), || async {
            (ingress(&api.get(name).await.ok()?) == expected).then_some(())
        })
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before: Vec<_> = [api.get("by-spec").await, api.get("by-annotation").await]
        .map(|s| s.unwrap().metadata.resource_version)
        .into();
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let after: Vec<_> = [api.get("by-spec").await, api.get("by-annotation").await]
        .map(|s| s.unwrap().metadata.resource_version)
        .into();
    assert_eq!(before, after, "the controller kept rewriting the Services");
}

#[tokio::test]
async fn a_huge_malformed_annotation_gives_a_short_message() {
    let cluster = cluster("huge-annotation").await;
    pool(&cluster, "lan", json!({"addresses": ["192.0.2.170/32"]})).await;
    let huge = "x".repeat(100 * 1024);
    service(
        &cluster,
        "huge",
        json!({"herald.dev/loadBalancerIPs": huge}),
        json!({}),
    )
    .await;
    let refused = condition(&cluster, "huge", "InvalidRequest").await;
    assert!(
        refused.message.len() < 400 && refused.message.contains("xxx…"),
        "{} characters: {}",
        refused.message.len(),
        &refused.message[..200]
    );
    let event = event(&cluster, "huge", "AllocationFailed").await;
    assert!(event.len() < 500, "{} characters", event.len());
}
