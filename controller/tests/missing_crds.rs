//! Without the CRDs the controller says what to install instead of waiting forever. (A test
//! binary of its own: it deletes a CRD from its API server.)

mod support;

use herald_tests::test_cluster;
use support::run_to_exit;

#[tokio::test]
async fn missing_crds_are_explained() {
    let cluster = test_cluster("missing-crds").await;
    cluster.kubectl(&["delete", "crd", "ipaddresspools.herald.dev"]);
    let kubeconfig = cluster.server().kubeconfig_path();
    let (ok, text) = run_to_exit(&[
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--leader-elect=false",
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("the IPAddressPool CRD is not installed"),
        "{text}"
    );
    assert!(text.contains("apply deploy/crds/"), "{text}");
}
