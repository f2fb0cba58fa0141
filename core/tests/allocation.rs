//! Allocation rules, driven through the public API as the controller drives them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use herald_core::addresses::{IpFamily, PoolAddresses};
use herald_core::allocation::{
    AllocationError, Allocator, Backend, Considered, FamilyPolicy, Pool, PoolAllocation,
    PoolVerdict, Protocol, Rule, Service, ServiceKey, Sharing,
};
use herald_core::selector::{LabelSelector, Labels};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pool(name: &str, addresses: &[&str]) -> Pool {
    Pool {
        name: name.into(),
        addresses: PoolAddresses::parse(addresses, false).unwrap(),
        auto_assign: true,
        allocation: None,
        hands_out: true,
    }
}

fn service(name: &str) -> Service {
    Service {
        key: ServiceKey::new("default", name),
        labels: Labels::new(),
        namespace_labels: Labels::new(),
        families: FamilyPolicy::Single(IpFamily::V4),
        requested: vec![],
        pool: None,
        sharing: None,
        current: vec![],
    }
}

fn sharing(key: &str, ports: &[u16], backend: Backend) -> Option<Sharing> {
    Some(Sharing {
        key: key.into(),
        ports: ports.iter().map(|p| (Protocol::Tcp, *p)).collect(),
        backend,
    })
}

fn assigned(allocator: &mut Allocator, service: &Service) -> Vec<IpAddr> {
    allocator
        .assign(service)
        .result
        .unwrap_or_else(|e| panic!("{}: {e}", service.key))
        .ips
}

fn refused(allocator: &mut Allocator, service: &Service) -> AllocationError {
    allocator
        .assign(service)
        .result
        .expect_err("the Service should get no address")
}

#[test]
fn hands_out_the_lowest_free_address_and_keeps_it() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.10-192.0.2.12"]));
    assert_eq!(assigned(&mut a, &service("a")), ips(&["192.0.2.10"]));
    assert_eq!(assigned(&mut a, &service("b")), ips(&["192.0.2.11"]));
    // Asking again changes nothing.
    assert_eq!(assigned(&mut a, &service("a")), ips(&["192.0.2.10"]));
    a.release(&ServiceKey::new("default", "a"));
    assert_eq!(assigned(&mut a, &service("c")), ips(&["192.0.2.10"]));
}

#[test]
fn a_full_pool_says_so_and_serves_waiting_services_once_an_address_frees() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.10/31"]));
    assigned(&mut a, &service("a"));
    assigned(&mut a, &service("b"));
    let err = refused(&mut a, &service("c"));
    assert!(
        matches!(
            err,
            AllocationError::PoolExhausted { .. } | AllocationError::AllPoolsExhausted { .. }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "every pool that may serve this Service is out of IPv4 addresses"
    );
    a.release(&ServiceKey::new("default", "a"));
    assert_eq!(assigned(&mut a, &service("c")), ips(&["192.0.2.10"]));
}

#[test]
fn addresses_in_status_are_kept_after_a_restart() {
    let mut first = Allocator::new();
    first.set_pool(pool("lan", &["192.0.2.0/28"]));
    let names = ["a", "b", "c", "d"];
    let before: Vec<Vec<IpAddr>> = names
        .iter()
        .map(|n| assigned(&mut first, &service(n)))
        .collect();
    first.release(&ServiceKey::new("default", "a"));

    // A new allocator (a restart, or the other replica) reads the status back in another order.
    let mut second = Allocator::new();
    second.set_pool(pool("lan", &["192.0.2.0/28"]));
    for (name, current) in names.iter().zip(&before).skip(1).rev() {
        let svc = Service {
            current: current.clone(),
            ..service(name)
        };
        assert_eq!(&assigned(&mut second, &svc), current);
    }
    // A new Service does not take an address that another one still has in status.
    assert_eq!(assigned(&mut second, &service("e")), before[0]);
}

#[test]
fn two_services_claiming_one_address_in_status_do_not_both_get_it() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.0/28"]));
    let first = Service {
        current: ips(&["192.0.2.5"]),
        ..service("first")
    };
    let second = Service {
        current: ips(&["192.0.2.5"]),
        ..service("second")
    };
    assert_eq!(assigned(&mut a, &first), ips(&["192.0.2.5"]));
    assert_eq!(assigned(&mut a, &second), ips(&["192.0.2.0"]));
}

#[test]
fn requested_addresses_are_honoured_or_refused_with_the_reason() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.0/28", "2001:db8::/120"]));
    let wants_7 = Service {
        requested: ips(&["192.0.2.7"]),
        ..service("a")
    };
    assert_eq!(assigned(&mut a, &wants_7), ips(&["192.0.2.7"]));
    // Auto allocation goes around it.
    assert_eq!(assigned(&mut a, &service("b")), ips(&["192.0.2.0"]));

    let also_7 = Service {
        requested: ips(&["192.0.2.7"]),
        ..service("c")
    };
    let err = refused(&mut a, &also_7);
    assert!(matches!(err, AllocationError::InUse { .. }), "{err:?}");
    assert!(
        err.to_string().contains("in use by Service default/a"),
        "{err}"
    );

    let outside = Service {
        requested: ips(&["198.51.100.1"]),
        ..service("d")
    };
    assert_eq!(
        refused(&mut a, &outside).to_string(),
        "requested address 198.51.100.1 is not in any IPAddressPool"
    );
    let wrong_family = Service {
        requested: ips(&["2001:db8::1"]),
        ..service("e")
    };
    let refusal = refused(&mut a, &wrong_family);
    assert!(
        matches!(
            refusal,
            AllocationError::FamilyNotWanted { .. } | AllocationError::FamiliesIncomplete { .. }
        ),
        "{refusal:?}"
    );

    // Changing the request moves the Service, and says what it lost.
    let moved = Service {
        requested: ips(&["192.0.2.9"]),
        ..service("a")
    };
    let outcome = a.assign(&moved);
    assert_eq!(outcome.result.unwrap().ips, ips(&["192.0.2.9"]));
    assert_eq!(outcome.lost.unwrap().ips, ips(&["192.0.2.7"]));
}

#[test]
fn a_named_pool_is_used_even_without_auto_assign_and_other_pools_are_not() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.0/30"]));
    a.set_pool(Pool {
        auto_assign: false,
        ..pool("reserved", &["198.51.100.0/30"])
    });
    assert_eq!(assigned(&mut a, &service("a")), ips(&["192.0.2.0"]));
    let named = Service {
        pool: Some("reserved".into()),
        ..service("b")
    };
    assert_eq!(assigned(&mut a, &named), ips(&["198.51.100.0"]));
    let missing = Service {
        pool: Some("nope".into()),
        ..service("c")
    };
    let refusal = refused(&mut a, &missing);
    assert!(
        matches!(refusal, AllocationError::PoolNotFound { .. }),
        "{refusal:?}"
    );

    // Without an auto-assign pool left, an unnamed Service gets nothing.
    a.remove_pool("lan");
    let err = refused(&mut a, &service("d"));
    assert!(matches!(err, AllocationError::NoPool { .. }), "{err:?}");
}

#[test]
fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
    let mut a = Allocator::new();
    a.set_pool(Pool {
        addresses: PoolAddresses::parse(&["192.0.2.255-192.0.3.1"], true).unwrap(),
        ..pool("lan", &["192.0.2.0/32"])
    });
    assert_eq!(assigned(&mut a, &service("a")), ips(&["192.0.3.1"]));
    let wants_zero = Service {
        requested: ips(&["192.0.3.0"]),
        ..service("b")
    };
    let refusal = refused(&mut a, &wants_zero);
    assert!(
        matches!(
            refusal,
            AllocationError::NotInAnyPool { .. }
                | AllocationError::NotInOnePool { .. }
                | AllocationError::NotInNamedPool { .. }
        ),
        "{refusal:?}"
    );
}

fn restricted(
    name: &str,
    addresses: &[&str],
    priority: Option<i32>,
    allocation: PoolAllocation,
) -> Pool {
    Pool {
        allocation: Some(PoolAllocation {
            priority,
            ..allocation
        }),
        ..pool(name, addresses)
    }
}

#[test]
fn service_allocation_restricts_pools_and_orders_them_by_priority() {
    let mut a = Allocator::new();
    a.set_pool(pool("any", &["203.0.113.0/30"]));
    let team_a = PoolAllocation {
        namespaces: BTreeSet::from(["team-a".to_string()]),
        ..PoolAllocation::default()
    };
    a.set_pool(restricted(
        "a-low",
        &["192.0.2.0/32"],
        Some(20),
        team_a.clone(),
    ));
    a.set_pool(restricted(
        "a-high",
        &["192.0.2.8/32"],
        Some(10),
        team_a.clone(),
    ));
    a.set_pool(restricted("a-unset", &["192.0.2.16/32"], None, team_a));
    let in_team_a = |name: &str| Service {
        key: ServiceKey::new("team-a", name),
        ..service(name)
    };
    assert_eq!(assigned(&mut a, &in_team_a("1")), ips(&["192.0.2.8"]));
    assert_eq!(assigned(&mut a, &in_team_a("2")), ips(&["192.0.2.0"]));
    assert_eq!(assigned(&mut a, &in_team_a("3")), ips(&["192.0.2.16"]));
    assert_eq!(assigned(&mut a, &in_team_a("4")), ips(&["203.0.113.0"]));
    // Other namespaces never get the restricted pools, even by name.
    assert_eq!(assigned(&mut a, &service("x")), ips(&["203.0.113.1"]));
    let named = Service {
        pool: Some("a-low".into()),
        ..service("y")
    };
    let err = refused(&mut a, &named);
    assert!(
        matches!(err, AllocationError::PoolNotAllowed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"default\""), "{err}");
}

/// What `kubectl herald why` shows: every pool's verdict in the order allocation tries them,
/// and what each candidate would give a Service that holds nothing.
#[test]
fn every_pool_is_considered_in_the_order_allocation_tries_them() {
    let mut a = Allocator::new();
    let team_a = PoolAllocation {
        namespaces: BTreeSet::from(["team-a".to_string()]),
        ..PoolAllocation::default()
    };
    a.set_pool(pool("any", &["203.0.113.0/32"]));
    a.set_pool(restricted(
        "a-high",
        &["192.0.2.8/32"],
        Some(10),
        team_a.clone(),
    ));
    a.set_pool(restricted("a-unset", &["192.0.2.16/32"], None, team_a));
    a.set_pool(Pool {
        auto_assign: false,
        ..pool("manual", &["198.51.100.0/32"])
    });
    a.set_pool(Pool {
        hands_out: false,
        ..pool("broken", &["198.51.100.8/32"])
    });
    let web = Service {
        key: ServiceKey::new("team-a", "web"),
        ..service("web")
    };
    assert_eq!(web.rule(), Rule::Automatic);
    // Fill the first choice, so the Service gets the second.
    let first = Service {
        key: ServiceKey::new("team-a", "first"),
        ..service("first")
    };
    assert_eq!(assigned(&mut a, &first), ips(&["192.0.2.8"]));
    let considered = a.considered(&web);
    let exhausted = AllocationError::PoolExhausted {
        pool: "a-high".into(),
        family: IpFamily::V4,
    };
    assert_eq!(
        considered,
        [
            Considered {
                pool: "a-high".into(),
                verdict: PoolVerdict::Selects { priority: Some(10) },
                offer: Some(Err(exhausted)),
            },
            Considered {
                pool: "a-unset".into(),
                verdict: PoolVerdict::Selects { priority: None },
                offer: Some(Ok(ips(&["192.0.2.16"]))),
            },
            Considered {
                pool: "any".into(),
                verdict: PoolVerdict::AutoAssign,
                offer: Some(Ok(ips(&["203.0.113.0"]))),
            },
            Considered {
                pool: "broken".into(),
                verdict: PoolVerdict::Invalid,
                offer: None,
            },
            Considered {
                pool: "manual".into(),
                verdict: PoolVerdict::NotAutoAssign,
                offer: None,
            },
        ]
    );
    // Allocation takes the first candidate with an offer.
    assert_eq!(assigned(&mut a, &web), ips(&["192.0.2.16"]));
    // Holding addresses, the Service is shown the order, not offers.
    assert!(a.considered(&web).iter().all(|c| c.offer.is_none()));
    let other = service("other");
    assert!(matches!(
        &a.considered(&other)[..2],
        [
            Considered { pool: p, verdict: PoolVerdict::AutoAssign, .. },
            Considered { verdict: PoolVerdict::Refuses(_), .. },
        ] if p == "any"
    ));
}

#[test]
fn service_allocation_selects_by_namespace_and_service_labels() {
    let mut a = Allocator::new();
    let selected = |pairs: &[(&str, &str)]| LabelSelector {
        match_labels: labels(pairs),
        ..LabelSelector::default()
    };
    a.set_pool(restricted(
        "prod",
        &["192.0.2.0/30"],
        None,
        PoolAllocation {
            namespace_selectors: vec![selected(&[("env", "prod")])],
            service_selectors: vec![selected(&[("tier", "web")])],
            ..PoolAllocation::default()
        },
    ));
    let web_in_prod = Service {
        namespace_labels: labels(&[("env", "prod")]),
        labels: labels(&[("tier", "web")]),
        ..service("web")
    };
    assert_eq!(assigned(&mut a, &web_in_prod), ips(&["192.0.2.0"]));
    let db_in_prod = Service {
        namespace_labels: labels(&[("env", "prod")]),
        labels: labels(&[("tier", "db")]),
        ..service("db")
    };
    let refusal = refused(&mut a, &db_in_prod);
    assert!(
        matches!(refusal, AllocationError::NoPool { .. }),
        "{refusal:?}"
    );
    // Relabelling the Service out of the pool's selection takes the address back.
    let relabelled = Service {
        labels: labels(&[("tier", "cache")]),
        ..web_in_prod
    };
    let refusal = refused(&mut a, &relabelled);
    assert!(
        matches!(refusal, AllocationError::NoPool { .. }),
        "{refusal:?}"
    );
    assert_eq!(a.assignment(&relabelled.key), None);
}

#[test]
fn dual_stack_follows_the_family_policy() {
    let mut a = Allocator::new();
    a.set_pool(pool("v4", &["192.0.2.0/30"]));
    a.set_pool(pool("z-dual", &["198.51.100.0/30", "2001:db8::/126"]));
    let require = Service {
        families: FamilyPolicy::RequireDual,
        ..service("require")
    };
    // Both families from one pool, although "v4" comes first by name.
    assert_eq!(
        assigned(&mut a, &require),
        ips(&["198.51.100.0", "2001:db8::"])
    );
    let prefer = Service {
        families: FamilyPolicy::PreferDual(IpFamily::V4),
        ..service("prefer")
    };
    assert_eq!(
        assigned(&mut a, &prefer),
        ips(&["198.51.100.1", "2001:db8::1"])
    );
    let v6 = Service {
        families: FamilyPolicy::Single(IpFamily::V6),
        ..service("v6")
    };
    assert_eq!(assigned(&mut a, &v6), ips(&["2001:db8::2"]));

    // With no pool able to give both, RequireDualStack gets nothing, PreferDualStack gets one
    // family, and the other joins it later without moving the first.
    let mut b = Allocator::new();
    b.set_pool(pool("v4", &["192.0.2.0/30"]));
    let err = refused(
        &mut b,
        &Service {
            families: FamilyPolicy::RequireDual,
            ..service("require")
        },
    );
    assert!(
        matches!(err, AllocationError::PoolLacksFamily { .. }),
        "{err:?}"
    );
    assert_eq!(assigned(&mut b, &prefer), ips(&["192.0.2.0"]));
    b.set_pool(pool("v4", &["192.0.2.0/30", "2001:db8::/126"]));
    assert_eq!(assigned(&mut b, &prefer), ips(&["192.0.2.0", "2001:db8::"]));
}

#[test]
fn an_invalid_pool_keeps_what_it_holds_and_hands_out_nothing_new() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.0/30"]));
    let web = service("web");
    assert_eq!(assigned(&mut a, &web), ips(&["192.0.2.0"]));
    a.set_pool(Pool {
        hands_out: false,
        ..pool("lan", &["192.0.2.0/30"])
    });
    // The holder keeps its address, also after a restart (claimed from its status).
    assert_eq!(assigned(&mut a, &web), ips(&["192.0.2.0"]));
    let mut restarted = Allocator::new();
    restarted.set_pool(Pool {
        hands_out: false,
        ..pool("lan", &["192.0.2.0/30"])
    });
    let in_status = Service {
        current: ips(&["192.0.2.0"]),
        ..service("web")
    };
    assert_eq!(assigned(&mut restarted, &in_status), ips(&["192.0.2.0"]));
    // Nothing new: not automatically, not by name, not by request.
    let err = refused(&mut a, &service("new"));
    assert!(matches!(err, AllocationError::NoPool { .. }), "{err:?}");
    assert!(err.to_string().contains("pool \"lan\" is invalid"), "{err}");
    let named = Service {
        pool: Some("lan".into()),
        ..service("named")
    };
    let refusal = refused(&mut a, &named);
    assert!(
        matches!(refusal, AllocationError::PoolInvalid { .. }),
        "{refusal:?}"
    );
    let asks = Service {
        requested: ips(&["192.0.2.1"]),
        ..service("asks")
    };
    let refusal = refused(&mut a, &asks);
    assert!(
        matches!(refusal, AllocationError::PoolInvalid { .. }),
        "{refusal:?}"
    );
}

#[test]
fn prefer_dual_stack_with_one_requested_address_gets_both_families_and_keeps_them() {
    let mut a = Allocator::new();
    a.set_pool(pool("dual", &["192.0.2.0/30", "2001:db8::/126"]));
    let web = Service {
        families: FamilyPolicy::PreferDual(IpFamily::V4),
        requested: ips(&["192.0.2.2"]),
        ..service("web")
    };
    // The request names the IPv4 address; PreferDualStack fills IPv6 from the same pool.
    let first = a.assign(&web);
    assert_eq!(first.result.unwrap().ips, ips(&["192.0.2.2", "2001:db8::"]));
    // Deciding again, as the controller does on every change, keeps both and withdraws nothing.
    for _ in 0..3 {
        let again = a.assign(&web);
        assert_eq!(again.lost, None, "withdrew {:?}", again.lost);
        assert_eq!(again.result.unwrap().ips, ips(&["192.0.2.2", "2001:db8::"]));
    }
    // Also after a restart, from what the status shows.
    let mut b = Allocator::new();
    b.set_pool(pool("dual", &["192.0.2.0/30", "2001:db8::/126"]));
    let restarted = Service {
        current: ips(&["192.0.2.2", "2001:db8::"]),
        ..web.clone()
    };
    let claimed = b.assign(&restarted);
    assert_eq!(
        (claimed.lost, claimed.result.unwrap().ips),
        (None, ips(&["192.0.2.2", "2001:db8::"]))
    );
    // Requesting another IPv4 address moves only that family's address.
    let moved = Service {
        requested: ips(&["192.0.2.3"]),
        ..web
    };
    let outcome = a.assign(&moved);
    assert_eq!(
        outcome.result.unwrap().ips,
        ips(&["192.0.2.3", "2001:db8::"])
    );
}

#[test]
fn services_share_an_address_only_when_every_sharing_rule_allows_it() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.0/29"]));
    let web = Service {
        sharing: sharing("k", &[80], Backend::Cluster),
        ..service("web")
    };
    let tls = Service {
        sharing: sharing("k", &[443], Backend::Cluster),
        ..service("tls")
    };
    assert_eq!(assigned(&mut a, &web), ips(&["192.0.2.0"]));
    assert_eq!(assigned(&mut a, &tls), ips(&["192.0.2.0"]));
    assert_eq!(a.holders(ip("192.0.2.0")).count(), 2);

    let same_port = Service {
        sharing: sharing("k", &[80], Backend::Cluster),
        ..service("same-port")
    };
    assert_eq!(assigned(&mut a, &same_port), ips(&["192.0.2.1"]));
    let other_key = Service {
        sharing: sharing("other", &[22], Backend::Cluster),
        ..service("other-key")
    };
    assert_eq!(assigned(&mut a, &other_key), ips(&["192.0.2.2"]));
    let no_key = Service {
        requested: ips(&["192.0.2.0"]),
        ..service("no-key")
    };
    assert!(
        refused(&mut a, &no_key)
            .to_string()
            .contains("no allow-shared-ip key")
    );

    let pods = labels(&[("app", "web")]);
    let local = Service {
        sharing: sharing("k", &[8080], Backend::Local(pods.clone())),
        requested: ips(&["192.0.2.0"]),
        ..service("local")
    };
    assert!(
        refused(&mut a, &local)
            .to_string()
            .contains("Local and the other Cluster")
    );

    let mut b = Allocator::new();
    b.set_pool(pool("lan", &["192.0.2.0/29"]));
    let local_a = Service {
        sharing: sharing("k", &[80], Backend::Local(pods.clone())),
        ..service("local-a")
    };
    let local_b = Service {
        sharing: sharing("k", &[443], Backend::Local(pods)),
        ..service("local-b")
    };
    let local_other_pods = Service {
        sharing: sharing("k", &[22], Backend::Local(labels(&[("app", "db")]))),
        ..service("local-c")
    };
    assert_eq!(assigned(&mut b, &local_a), ips(&["192.0.2.0"]));
    assert_eq!(assigned(&mut b, &local_b), ips(&["192.0.2.0"]));
    assert_eq!(assigned(&mut b, &local_other_pods), ips(&["192.0.2.1"]));

    // A sharer that changes its ports to collide moves away; the other keeps the address.
    let tls_on_80 = Service {
        sharing: sharing("k", &[80], Backend::Cluster),
        ..tls
    };
    let outcome = a.assign(&tls_on_80);
    assert_ne!(outcome.result.unwrap().ips, ips(&["192.0.2.0"]));
    let reason = outcome.lost.unwrap().reason;
    assert!(
        reason.contains("default/web: it uses TCP port 80 too"),
        "{reason}"
    );
    assert_eq!(a.assignment(&web.key).unwrap().ips, ips(&["192.0.2.0"]));
}

#[test]
fn a_pool_edit_takes_back_removed_addresses_and_nothing_else() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.0/29"]));
    let first = assigned(&mut a, &service("a"));
    let second = assigned(&mut a, &service("b"));
    a.set_pool(pool("lan", &["192.0.2.1-192.0.2.7"]));
    let outcome = a.assign(&service("a"));
    let lost = outcome.lost.expect("a lost its address");
    assert_eq!(lost.ips, first);
    assert_eq!(
        lost.reason,
        "address 192.0.2.0 was removed from pool \"lan\""
    );
    assert_eq!(outcome.result.unwrap().ips, ips(&["192.0.2.2"]));
    assert_eq!(a.assign(&service("b")).lost, None);
    assert_eq!(a.assignment(&service("b").key).unwrap().ips, second);

    // A deleted pool takes its addresses back, and says so.
    a.remove_pool("lan");
    let outcome = a.assign(&service("b"));
    let refusal = outcome.result.unwrap_err();
    assert!(
        matches!(refusal, AllocationError::NoPool { .. }),
        "{refusal:?}"
    );
    assert_eq!(outcome.lost.unwrap().reason, "pool \"lan\" was deleted");
}

#[test]
fn overlapping_pools_are_reported_and_never_hand_out_an_address_twice() {
    let mut a = Allocator::new();
    a.set_pool(pool("one", &["192.0.2.0/30"]));
    a.set_pool(pool("two", &["192.0.2.2-192.0.2.5"]));
    let one = a.pool("one").unwrap().clone();
    assert_eq!(
        a.overlaps(&one),
        vec![("two".to_string(), "192.0.2.2-192.0.2.3".to_string())]
    );
    let mut seen = BTreeSet::new();
    for n in 0..6 {
        let got = assigned(&mut a, &service(&format!("s{n}")));
        assert!(seen.insert(got[0]), "{} handed out twice", got[0]);
    }
    let refusal = refused(&mut a, &service("s6"));
    assert!(
        matches!(
            refusal,
            AllocationError::PoolExhausted { .. } | AllocationError::AllPoolsExhausted { .. }
        ),
        "{refusal:?}"
    );
}

#[test]
fn usage_counts_shared_addresses_once() {
    let mut a = Allocator::new();
    a.set_pool(pool("lan", &["192.0.2.0/28", "2001:db8::/64"]));
    for name in ["a", "b"] {
        let svc = Service {
            sharing: sharing("k", &[if name == "a" { 80 } else { 443 }], Backend::Cluster),
            ..service(name)
        };
        assigned(&mut a, &svc);
    }
    assigned(&mut a, &service("c"));
    let usage = a.usage(a.pool("lan").unwrap());
    assert_eq!((usage.assigned_v4, usage.available_v4), (2, 14));
    assert_eq!((usage.assigned_v6, usage.available_v6), (0, 1 << 64));
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        name: u8,
        share: Option<(u8, u16)>,
        dual: bool,
        request: Option<u8>,
    },
    Delete {
        name: u8,
    },
    EditPool {
        last: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, proptest::option::of((0u8..2, 0u16..3)), any::<bool>(), proptest::option::of(0u8..16))
            .prop_map(|(name, share, dual, request)| Op::Create { name, share, dual, request }),
        2 => (0u8..24).prop_map(|name| Op::Delete { name }),
        1 => (4u8..16).prop_map(|last| Op::EditPool { last }),
    ]
}

proptest! {
    /// Whatever Services come and go and however the pool changes, no address is held by two
    /// Services that may not share it, and every held address is in its pool.
    #[test]
    fn no_address_is_ever_held_twice(ops in proptest::collection::vec(op(), 1..80)) {
        let mut a = Allocator::new();
        a.set_pool(pool("lan", &["192.0.2.0-192.0.2.15", "2001:db8::/124"]));
        let mut services: BTreeMap<u8, Service> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Create { name, share, dual, request } => {
                    let svc = Service {
                        families: if dual { FamilyPolicy::PreferDual(IpFamily::V4) } else { FamilyPolicy::Single(IpFamily::V4) },
                        sharing: share.map(|(key, port)| Sharing {
                            key: key.to_string(),
                            ports: BTreeSet::from([(Protocol::Tcp, port)]),
                            backend: Backend::Cluster,
                        }),
                        requested: request.map(|n| vec![IpAddr::from([192, 0, 2, n])]).unwrap_or_default(),
                        ..service(&name.to_string())
                    };
                    let _ = a.assign(&svc);
                    services.insert(name, svc);
                }
                Op::Delete { name } => {
                    services.remove(&name);
                    a.release(&ServiceKey::new("default", name.to_string()));
                }
                Op::EditPool { last } => {
                    a.set_pool(pool("lan", &[&format!("192.0.2.0-192.0.2.{last}"), "2001:db8::/124"]));
                    for svc in services.values() {
                        let _ = a.assign(svc);
                    }
                }
            }
            let mut holders: BTreeMap<IpAddr, Vec<&Service>> = BTreeMap::new();
            for svc in services.values() {
                if let Some(assignment) = a.assignment(&svc.key) {
                    let lan = a.pool("lan").unwrap();
                    for ip in &assignment.ips {
                        prop_assert!(lan.addresses.contains(*ip), "{ip} is not in the pool");
                        holders.entry(*ip).or_default().push(svc);
                    }
                }
            }
            for (ip, list) in holders {
                for (i, x) in list.iter().enumerate() {
                    for y in &list[i + 1..] {
                        let (Some(sx), Some(sy)) = (&x.sharing, &y.sharing) else {
                            return Err(TestCaseError::fail(format!("{ip} held by {} and {} without sharing keys", x.key, y.key)));
                        };
                        prop_assert_eq!(&sx.key, &sy.key);
                        prop_assert!(sx.ports.is_disjoint(&sy.ports), "{} and {} share {} on one port", x.key, y.key, ip);
                    }
                }
            }
        }
    }

    /// The same Services in the same order get the same addresses.
    #[test]
    fn allocation_is_deterministic(names in proptest::collection::vec(0u8..40, 1..30)) {
        let run = || {
            let mut a = Allocator::new();
            a.set_pool(pool("b", &["198.51.100.0/28"]));
            a.set_pool(pool("a", &["192.0.2.0/28"]));
            names.iter().map(|n| a.assign(&service(&n.to_string())).result.map(|o| o.ips).ok()).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(), run());
    }
}
