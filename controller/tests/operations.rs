//! Running the controller: health and metrics, logs, clear errors for bad flags and missing
//! permissions, and the load-balancer class.

mod support;

use std::time::Duration;

use herald_tests::{eventually, free_port, test_cluster};
use serde_json::json;
use support::*;

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let output = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    // 000: nothing listens yet.
    let code: u16 = code.parse().ok().filter(|c| *c != 0)?;
    Some((code, body.to_owned()))
}

#[tokio::test]
async fn health_metrics_and_json_logs() {
    let cluster = test_cluster("operations").await;
    let lan = pool(&cluster, "lan", json!({"addresses": ["192.0.2.0/30"]})).await;
    let (metrics, health) = (free_port(), free_port());
    let controller = start_controller_on(
        &cluster,
        metrics,
        health,
        &["--leader-elect=false", "--log-format", "json"],
    );
    assert_eq!(
        eventually(WAIT, "/healthz", || get(health, "/healthz"))
            .await
            .0,
        200
    );
    eventually(WAIT, "/readyz to say ready", || async {
        get(health, "/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    service(&cluster, "web", json!({}), json!({})).await;
    addresses(&cluster, "web").await;
    let text = eventually(WAIT, "pool metrics", || async {
        let (_, body) = get(metrics, "/metrics").await?;
        body.contains(&format!(
            "herald_pool_addresses_in_use{{pool=\"{lan}\",family=\"IPv4\"}} 1"
        ))
        .then_some(body)
    })
    .await;
    for expected in [
        format!("herald_pool_addresses{{pool=\"{lan}\",family=\"IPv4\"}} 4"),
        format!("herald_allocations_total{{pool=\"{lan}\"}} 1"),
        "herald_allocation_decision_seconds_count".to_string(),
        "herald_status_writes_total{outcome=\"ok\"}".to_string(),
        "herald_controller_leader 1".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected} missing from:\n{text}");
    }
    let log = controller.log_tail(5);
    let line = log.lines().last().unwrap();
    serde_json::from_str::<serde_json::Value>(line)
        .unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
}

#[tokio::test]
async fn only_services_of_the_given_class_are_served() {
    let cluster = test_cluster("class").await;
    pool(&cluster, "lan", json!({"addresses": ["192.0.2.8/30"]})).await;
    let _controller = start_controller(
        &cluster,
        &[
            "--leader-elect=false",
            "--load-balancer-class",
            "herald.dev/lb",
        ],
    );
    service(
        &cluster,
        "ours",
        json!({}),
        json!({"loadBalancerClass": "herald.dev/lb"}),
    )
    .await;
    service(&cluster, "plain", json!({}), json!({})).await;
    addresses(&cluster, "ours").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let plain = services(&cluster).get("plain").await.unwrap();
    assert!(ingress(&plain).is_empty() && allocated(&plain).is_none());
}

#[tokio::test]
async fn bad_flags_and_missing_permissions_are_explained() {
    let cluster = test_cluster("errors").await;
    let (ok, text) = run_to_exit(&["--log-format", "yaml"]);
    assert!(
        !ok && text.contains("invalid value 'yaml' for '--log-format"),
        "{text}"
    );
    // Durations: zero, no unit, or timings that cannot work are refused at start, naming the
    // flag, before anything runs (a zero interval used to panic inside a task).
    for (args, expected) in [
        (
            &["--pool-status-interval", "0s"][..],
            "invalid value '0s' for '--pool-status-interval <POOL_STATUS_INTERVAL>': \"0s\" is zero",
        ),
        (
            &["--pool-status-interval", "500"][..],
            "\"500\" is not a duration: write a number with its unit, such as 500ms, 15s or 2m",
        ),
        (
            &["--lease-retry-period", "0ms"][..],
            "invalid value '0ms' for '--lease-retry-period",
        ),
        (
            &["--lease-renew-deadline", "15s"][..],
            "--lease-renew-deadline (15s) must be shorter than --lease-duration (15s)",
        ),
        (
            &["--lease-renew-deadline", "2s", "--lease-retry-period", "2s"][..],
            "--lease-renew-deadline (2s) must be longer than --lease-retry-period (2s)",
        ),
        (
            &["--write-concurrency", "0"][..],
            "invalid value '0' for '--write-concurrency",
        ),
    ] {
        let (ok, text) = run_to_exit(args);
        assert!(!ok && text.contains(expected), "{args:?}: {text}");
        assert!(!text.contains("panicked"), "{args:?}: {text}");
    }
    let (ok, text) = run_to_exit(&["--kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(
        !ok && text.contains("--kubeconfig /nonexistent/kubeconfig"),
        "{text}"
    );

    // A user the RBAC grants nothing.
    let nobody = cluster.server().kubeconfig_for("nobody", &[]);
    let (ok, text) = run_to_exit(&[
        "--kubeconfig",
        nobody.to_str().unwrap(),
        "--leader-elect=false",
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("not allowed to list ipaddresspools"),
        "{text}"
    );
    assert!(
        text.contains("Grant it to the controller's ServiceAccount"),
        "{text}"
    );
}
