//! Two replicas with leader election: killing the leader in the middle of a stream of
//! creates hands over to the other, allocation resumes, and no address is given twice; a
//! leader whose lease is taken stops writing; a leader cut off from the API server stops on
//! its own clock, before the other replica may take the lease.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_tests::bridge::ApiBridge;
use herald_tests::lan::{Host, Lan};
use herald_tests::{Process, eventually, test_cluster};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use support::*;

#[tokio::test]
async fn killing_the_leader_mid_stream_loses_nothing_and_duplicates_nothing() {
    let cluster = test_cluster("ha").await;
    pool(&cluster, "lan", json!({"addresses": ["192.0.2.0/24"]})).await;
    let ns = cluster.namespace().to_owned();
    let replica = |name: &str| {
        start_controller(
            &cluster,
            &[
                "--lease-namespace",
                &ns,
                "--identity",
                name,
                "--lease-duration",
                "3s",
                "--lease-renew-deadline",
                "2s",
                "--lease-retry-period",
                "500ms",
            ],
        )
    };
    let mut replicas = [replica("replica-a"), replica("replica-b")];

    let leases: Api<Lease> = Api::namespaced(cluster.client(), &ns);
    let holder = || lease_holder(&leases);
    let leader = eventually(WAIT, "a leader", holder).await;

    for i in 0..60 {
        service(&cluster, &format!("before-{i}"), json!({}), json!({})).await;
    }
    let killed = Instant::now();
    let index = if leader == "replica-a" { 0 } else { 1 };
    replicas[index].kill();
    for i in 0..60 {
        service(&cluster, &format!("after-{i}"), json!({}), json!({})).await;
    }
    let api = services(&cluster);
    let all = eventually(
        Duration::from_secs(60),
        "all 120 Services allocated",
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let allocated: Vec<_> = list
                .items
                .into_iter()
                .filter(|s| !ingress(s).is_empty())
                .collect();
            (allocated.len() == 120).then_some(allocated)
        },
    )
    .await;
    eprintln!(
        "all allocated {:?} after the leader was killed",
        killed.elapsed()
    );
    let distinct: BTreeSet<_> = all.iter().flat_map(ingress).collect();
    assert_eq!(distinct.len(), 120, "an address was handed out twice");
    let new_leader = eventually(WAIT, "a new leader", holder).await;
    assert_ne!(new_leader, leader);

    // A leader that sees the lease taken stops writing: it exits, and says why.
    let survivor = &mut replicas[1 - index];
    let stolen = json!({"spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 3600,
        "renewTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.000000Z").to_string()}});
    leases
        .patch(
            "herald-controller",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&stolen),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while survivor.running() {
        assert!(Instant::now() < deadline, "the deposed leader still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        survivor.log_tail(200).contains("lost the leader lease"),
        "{}",
        survivor.log_tail(30)
    );
}

/// Who holds the controllers' leader Lease, if anyone.
async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get("herald-controller")
        .await
        .ok()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Every address each Service showed, in order, as a watcher over all of them saw it, and
/// every moment one address showed on two Services.
#[derive(Default)]
struct History {
    current: BTreeMap<String, Vec<IpAddr>>,
    changes: Vec<(Instant, String, Vec<IpAddr>)>,
    duplicates: Vec<String>,
}

impl History {
    fn record(&mut self, name: String, ips: Vec<IpAddr>) {
        if self.current.get(&name) == Some(&ips) {
            return;
        }
        self.changes
            .push((Instant::now(), name.clone(), ips.clone()));
        self.current.insert(name, ips);
        let mut holders: BTreeMap<IpAddr, Vec<&String>> = BTreeMap::new();
        for (service, ips) in &self.current {
            for ip in ips {
                holders.entry(*ip).or_default().push(service);
            }
        }
        for (ip, services) in holders.into_iter().filter(|(_, s)| s.len() > 1) {
            self.duplicates.push(format!("{ip} on {services:?}"));
        }
    }
}

/// Watches every Service of the namespace into a [`History`] until dropped.
fn watch_services(cluster: &herald_tests::TestCluster) -> (Arc<Mutex<History>>, AbortOnDrop) {
    let history = Arc::new(Mutex::new(History::default()));
    let sink = history.clone();
    let api = services(cluster);
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        while let Some(event) = events.next().await {
            let (service, ips) = match event {
                Ok(Event::Apply(s) | Event::InitApply(s)) => {
                    let ips = ingress(&s);
                    (s, ips)
                }
                Ok(Event::Delete(s)) => (s, Vec::new()),
                _ => continue,
            };
            let name = service.metadata.name.clone().unwrap_or_default();
            sink.lock().unwrap().record(name, ips);
        }
    });
    (history, AbortOnDrop(task))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cuts `host` off from the API server's host, or restores it, with nftables in its namespace.
fn cut(host: &Host, api: &Host, cut: bool) {
    if cut {
        let rules = format!(
            "table inet herald-cut {{ chain out {{ type filter hook output priority 0; ip daddr {a} drop; }}; \
             chain in {{ type filter hook input priority 0; ip saddr {a} drop; }}; }}",
            a = api.ipv4
        );
        host.run("nft", &[&rules]);
    } else {
        host.run("nft", &["delete", "table", "inet", "herald-cut"]);
    }
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_can_be_taken() {
    let cluster = test_cluster("ha-cut").await;
    let mut lan = Lan::new("ha-cut");
    let api_host = lan.add_host("api", 2);
    let hosts = [lan.add_host("ctl-a", 11), lan.add_host("ctl-b", 12)];
    let bridge = ApiBridge::new(cluster.server(), &api_host);
    let ns = cluster.namespace().to_owned();
    let logs = cluster.server().data_dir().to_owned();
    // A class of its own, so that the other test's controllers (in this process too) never
    // write these Services, nor these controllers theirs.
    let class = "herald.dev/ha-cut";
    let started = std::sync::atomic::AtomicU32::new(0);
    let replica = |i: usize| {
        let identity = ["replica-a", "replica-b"][i];
        let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut command = hosts[i].command(binary().to_str().unwrap());
        command.arg("--kubeconfig").arg(bridge.kubeconfig()).args([
            "--metrics-bind-address=127.0.0.1:9401",
            "--health-bind-address=127.0.0.1:9402",
            "--pool-status-interval=200ms",
            &format!("--lease-namespace={ns}"),
            &format!("--identity={identity}"),
            "--lease-duration=4s",
            "--lease-renew-deadline=3s",
            "--lease-retry-period=500ms",
            &format!("--load-balancer-class={class}"),
        ]);
        Process::spawn(
            identity,
            command,
            logs.join(format!("{ns}-{identity}-{n}.log")),
        )
    };
    pool(&cluster, "lan", json!({"addresses": ["198.51.100.0/26"]})).await;
    let classed = json!({ "loadBalancerClass": class });
    let mut leader = replica(0);
    let leases: Api<Lease> = Api::namespaced(cluster.client(), &ns);
    let holder = || lease_holder(&leases);
    eventually(WAIT, "replica-a to lead", || async {
        (holder().await? == "replica-a").then_some(())
    })
    .await;
    let _follower = replica(1);
    let (history, _watch) = watch_services(&cluster);
    for i in 0..20 {
        let name = format!("before-{i}");
        service(&cluster, &name, json!({}), classed.clone()).await;
    }
    for i in 0..20 {
        addresses(&cluster, &format!("before-{i}")).await;
    }

    // Cut the leader off. Meanwhile free some addresses and ask for more: the new leader
    // hands the freed ones out again, which the old one still believes are held.
    let cut_at = Instant::now();
    cut(&hosts[0], &api_host, true);
    for i in 0..5 {
        services(&cluster)
            .delete(&format!("before-{i}"), &Default::default())
            .await
            .unwrap();
    }
    for i in 0..10 {
        let name = format!("during-{i}");
        service(&cluster, &name, json!({}), classed.clone()).await;
    }
    // The old leader must have stopped before the other took the lease.
    let (mut stopped, mut taken) = (None, None);
    let deadline = Instant::now() + WAIT;
    while stopped.is_none() || taken.is_none() {
        assert!(
            Instant::now() < deadline,
            "after {:?}: replica-a stopped {stopped:?}, replica-b took over {taken:?}",
            cut_at.elapsed()
        );
        if stopped.is_none() && !leader.running() {
            stopped = Some(cut_at.elapsed());
        }
        if taken.is_none() && holder().await.as_deref() == Some("replica-b") {
            taken = Some(cut_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (stopped, taken) = (stopped.unwrap(), taken.unwrap());
    let log = leader.log_tail(usize::MAX);
    let why = log
        .lines()
        .find(|l| l.starts_with("Error: lost the leader lease"))
        .unwrap_or_else(|| {
            panic!(
                "replica-a ({:?}) did not say why it stopped; its log ({}) holds:\n{log}",
                leader.exit_status(),
                leader.log_path().display()
            )
        })
        .to_owned();
    assert!(why.contains("no renewal succeeded"), "{why}");
    eprintln!("after the cut: replica-a stopped at {stopped:?}, replica-b took over at {taken:?}");
    assert!(
        stopped < taken,
        "replica-a stopped {stopped:?} after the cut, after replica-b took the lease ({taken:?})"
    );
    // The new leader serves the Services created during the cut (on a loaded machine its
    // first writes can take a while).
    let api = services(&cluster);
    eventually(
        Duration::from_secs(60),
        "addresses for the Services created during the cut",
        || async {
            let list = api.list(&ListParams::default()).await.ok()?;
            let served = list
                .items
                .iter()
                .filter(|s| {
                    s.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("during-"))
                })
                .filter(|s| !ingress(s).is_empty())
                .count();
            (served == 10).then_some(())
        },
    )
    .await;

    // The link heals, and the old leader comes back as its Deployment would restart it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cut(&hosts[0], &api_host, false);
    let _restarted = replica(0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = history.lock().unwrap().changes.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = history.lock().unwrap();
    assert!(
        history.duplicates.is_empty(),
        "one address on two Services: {:?}",
        history.duplicates
    );
    assert_eq!(
        history.changes.len(),
        settled,
        "addresses changed after convergence: {:?}",
        &history.changes[settled..]
    );
    let held: Vec<_> = history
        .current
        .values()
        .filter(|ips| !ips.is_empty())
        .collect();
    assert_eq!(held.len(), 25, "{:?}", history.current);
}
