//! Benchmarks the real herald-controller against the real test API server and prints the
//! figures the spec sets bars for. Run it with `scripts/bench-controller`.
//!
//! 1. Create-to-IP latency: with 1,000 Services allocated, 200 more are created one at a time;
//!    the latency of each is the time from the create call to a watch showing its address.
//! 2. Cold start: 10,000 Services are created with no controller running (which also measures
//!    the API server's write rate here), then the controller starts; time until all have an
//!    address.
//! 3. Restart: the controller is killed and started again with the 10,000 in place; time until
//!    a Service created right after the start has an address, and how many addresses changed.
//! 4. The controller's RSS after each phase.
//!
//! Services are single-stack IPv6 so that 10,000 addresses come from a documentation range.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald_tests::{Process, TestCluster, free_port, test_cluster};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

type Seen = Arc<Mutex<HashMap<String, (Instant, String)>>>;

#[tokio::main]
async fn main() {
    let controller = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: bench-controller PATH-TO-herald-controller"),
    );
    let cluster = test_cluster("bench").await;
    apply_pool(&cluster).await;
    let seen = watch_addresses(&cluster);

    // 1. Latency with 1,000 Services present.
    let mut running = start(&cluster, &controller);
    create_many(&cluster, "base", 1000).await;
    wait_for(&seen, "base-", 1000, Duration::from_secs(120)).await;
    let mut latencies = Vec::new();
    for i in 0..200 {
        let name = format!("probe-{i}");
        let started = Instant::now();
        create(&cluster, &name).await;
        let seen_at = wait_one(&seen, &name).await;
        latencies.push(seen_at.duration_since(started));
    }
    latencies.sort();
    let rss_1000 = rss_mib(&running);
    println!(
        "create-to-IP latency with 1,000 Services present (200 creates): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 99 / 100]),
        ms(*latencies.last().unwrap())
    );
    println!("controller RSS with 1,200 Services: {rss_1000:.1} MiB");
    running.kill();
    Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("deleting the Services");
    seen.lock().unwrap().clear();

    // 2. Cold start with 10,000 Services.
    let created = Instant::now();
    create_many(&cluster, "cold", 10_000).await;
    let create_secs = created.elapsed().as_secs_f64();
    println!(
        "API server write rate here: 10,000 Service creates in {create_secs:.1} s ({:.0}/s, 32 in flight)",
        10_000.0 / create_secs
    );
    let started = Instant::now();
    let mut running = start(&cluster, &controller);
    wait_for(&seen, "cold-", 10_000, Duration::from_secs(900)).await;
    let cold_secs = started.elapsed().as_secs_f64();
    println!(
        "cold start: 10,000 Services allocated in {cold_secs:.1} s ({:.0} status writes/s)",
        10_000.0 / cold_secs
    );
    println!(
        "controller RSS with 10,000 Services: {:.1} MiB",
        rss_mib(&running)
    );

    // 3. Restart with 10,000 allocated.
    let before: HashMap<String, String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(k, (_, ip))| (k.clone(), ip.clone()))
        .collect();
    running.kill();
    let started = Instant::now();
    let _running = start(&cluster, &controller);
    create(&cluster, "after-restart").await;
    wait_one(&seen, "after-restart").await;
    println!(
        "restart with 10,000 Services: allocating again after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let list = Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .list(&ListParams::default())
        .await
        .expect("listing the Services");
    let changed = list
        .items
        .iter()
        .filter(|s| {
            let name = s.metadata.name.clone().unwrap_or_default();
            before
                .get(&name)
                .is_some_and(|ip| address(s).as_deref() != Some(ip.as_str()))
        })
        .count();
    println!("restart with 10,000 Services: {changed} addresses changed");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn start(cluster: &TestCluster, controller: &std::path::Path) -> Process {
    let args: Vec<String> = [
        "--leader-elect=false",
        "--metrics-bind-address",
        &format!("127.0.0.1:{}", free_port()),
        "--health-bind-address",
        &format!("127.0.0.1:{}", free_port()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cluster.server().run(controller, &args)
}

fn rss_mib(process: &Process) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", process.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn apply_pool(cluster: &TestCluster) {
    let pool = json!({
        "apiVersion": "herald.dev/v1alpha1", "kind": "IPAddressPool",
        "metadata": {"name": "bench"},
        "spec": {"addresses": ["2001:db8:b::/112"]},
    });
    Api::<herald_crds::IPAddressPool>::all(cluster.client())
        .patch("bench", &PatchParams::apply("bench"), &Patch::Apply(&pool))
        .await
        .expect("applying the pool");
}

async fn create(cluster: &TestCluster, name: &str) {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        // Without node ports: 10,000 Services would need more than the node-port range holds.
        "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"], "ports": [{"port": 80}],
                 "allocateLoadBalancerNodePorts": false},
    }))
    .expect("a Service");
    Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .create(&PostParams::default(), &service)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

async fn create_many(cluster: &TestCluster, prefix: &str, count: usize) {
    futures::stream::iter(0..count)
        .for_each_concurrent(32, |i| async move {
            create(cluster, &format!("{prefix}-{i}")).await
        })
        .await;
}

fn address(service: &Service) -> Option<String> {
    service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .ip
        .clone()
}

/// Records when each Service of the namespace is first seen with an address.
fn watch_addresses(cluster: &TestCluster) -> Seen {
    let seen: Seen = Arc::default();
    let api: Api<Service> = Api::namespaced(cluster.client(), cluster.namespace());
    let record = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(service)) = stream.next().await {
            if let Some(ip) = address(&service) {
                let name = service.metadata.name.clone().unwrap_or_default();
                record
                    .lock()
                    .unwrap()
                    .entry(name)
                    .or_insert((Instant::now(), ip));
            }
        }
    });
    seen
}

async fn wait_one(seen: &Seen, name: &str) -> Instant {
    loop {
        if let Some((at, _)) = seen.lock().unwrap().get(name) {
            return *at;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn wait_for(seen: &Seen, prefix: &str, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let have = seen
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .count();
        if have >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {have} of {count} Services allocated after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
