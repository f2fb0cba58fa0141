//! The install manifests (`deploy/`, the Helm chart) against the real API server, and the real
//! controller and speaker running with exactly their ServiceAccounts' permissions.
//!
//! Needs `HERALD_HELM` (the helm binary: `export HERALD_HELM=$(scripts/install-helm)`) and the
//! debug `herald-controller` and `herald-speaker` beside this test's binary, which
//! `cargo test --workspace` builds (alone: `cargo build -p herald-controller -p herald-speaker`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use herald_crds::IPAddressPool;
use herald_tests::install::{self, CONTROLLER, NAMESPACE, SPEAKER};
use herald_tests::{TestCluster, eventually, free_port, gossip_key, test_cluster};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn helm() -> PathBuf {
    let helm = std::env::var_os("HERALD_HELM").unwrap_or_else(|| {
        panic!(
            "HERALD_HELM is not set: these tests render the Helm chart with the real helm; run \
             `export HERALD_HELM=$(scripts/install-helm)` first (scripts/test does)"
        )
    });
    PathBuf::from(helm)
}

/// `helm template` of the chart into herald-system with `extra` arguments.
fn helm_template(extra: &[&str]) -> String {
    let output = Command::new(helm())
        .current_dir(repo_root())
        .args([
            "template",
            "herald",
            "deploy/helm/herald",
            "--namespace",
            NAMESPACE,
        ])
        .args(extra)
        .output()
        .expect("running helm");
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm prints UTF-8")
}

/// A workspace binary beside this test's binary (target/debug/deps/..).
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p {name}` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// Server-side applies `manifests` as a dry run and checks that every object was accepted.
fn dry_run_apply(cluster: &TestCluster, manifests: &str) {
    // Dry-run namespaced objects need their namespace to exist for real.
    install::apply(
        cluster.server(),
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})],
    );
    let objects = install::parse_documents(manifests).expect("the manifests parse");
    assert!(
        objects.len() > 10,
        "only {} objects rendered",
        objects.len()
    );
    let output = install::kubectl_with_input(
        cluster.server(),
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=herald-tests",
            "-f",
            "-",
        ],
        manifests,
    );
    let accepted = output
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .count();
    assert_eq!(
        accepted,
        objects.len(),
        "not every object was accepted:\n{output}"
    );
}

#[tokio::test]
async fn the_kustomize_base_is_accepted_by_the_api_server() {
    let cluster = test_cluster("kustomize").await;
    let (manifests, _) = kustomize(&cluster, "deploy");
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "DaemonSet",
        "PodDisruptionBudget",
        "Service",
    ] {
        assert!(
            manifests.contains(&format!("\nkind: {kind}\n")),
            "the base has no {kind}"
        );
    }
    dry_run_apply(&cluster, &manifests);
}

/// `kubectl kustomize` of a folder of `deploy/`, as objects by kind and name.
fn kustomize(cluster: &TestCluster, folder: &str) -> (String, BTreeMap<(String, String), Value>) {
    let manifests = cluster.kubectl(&["kustomize", &repo_root().join(folder).to_string_lossy()]);
    let objects = install::parse_documents(&manifests)
        .expect("kustomize prints YAML")
        .into_iter()
        .map(|o| {
            let key = (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            (key, o)
        })
        .collect();
    (manifests, objects)
}

/// `kubectl apply -k deploy/bgp` installs what `-k deploy` does, but for the speaker
/// DaemonSet, which runs FRR beside the speaker as the chart does with BGP on.
#[tokio::test]
async fn the_kustomize_bgp_overlay_is_the_base_with_frr_and_is_accepted_by_the_api_server() {
    let cluster = test_cluster("kustomize-bgp").await;
    let (_, base) = kustomize(&cluster, "deploy");
    let (manifests, bgp) = kustomize(&cluster, "deploy/bgp");
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        bgp.keys().collect::<Vec<_>>()
    );
    let speaker = ("DaemonSet".to_owned(), "herald-speaker".to_owned());
    for (key, object) in &base {
        if *key != speaker {
            assert_eq!(&bgp[key], object, "{key:?} differs from the base's");
        }
    }
    let pod = &bgp[&speaker]["spec"]["template"]["spec"];
    let containers: Vec<&str> = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(containers, ["speaker", "frr"]);
    assert!(
        pod["containers"][0]["args"]
            .as_array()
            .expect("args")
            .contains(&json!("--bgp")),
        "{}",
        pod["containers"][0]["args"]
    );
    dry_run_apply(&cluster, &manifests);
}

#[tokio::test]
async fn the_chart_is_accepted_by_the_api_server_with_and_without_options() {
    let cluster = test_cluster("chart").await;
    let lint = Command::new(helm())
        .current_dir(repo_root())
        .args(["lint", "--strict", "deploy/helm/herald"])
        .output()
        .expect("running helm lint");
    assert!(
        lint.status.success(),
        "helm lint: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
    dry_run_apply(&cluster, &helm_template(&["--include-crds"]));
    let options = helm_template(&[
        "--set",
        "loadBalancerClass=example.com/herald,logFormat=json,metrics.services=false",
        "--set",
        "controller.podDisruptionBudget.enabled=false,speaker.nodeSelector.lb=yes",
        "--set",
        "speaker.realtimeResponders=false",
    ]);
    assert!(options.contains("add: [NET_RAW]\n"));
    assert!(options.contains("--load-balancer-class=example.com/herald"));
    assert!(!options.contains("kind: PodDisruptionBudget"));
    dry_run_apply(&cluster, &options);
    dry_run_apply(
        &cluster,
        &helm_template(&["--set", "speaker.bgp.enabled=true"]),
    );
}

/// A `name=value` line of scripts/build-frr-image: the chart must agree with the image.
fn frr_image_setting(name: &str) -> String {
    let script = std::fs::read_to_string(repo_root().join("scripts/build-frr-image"))
        .expect("reading scripts/build-frr-image");
    script
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("scripts/build-frr-image sets no {name}"))
        .to_owned()
}

/// The speaker DaemonSet's Pod spec as the chart renders it with `extra` arguments.
fn speaker_pod(extra: &[&str]) -> Value {
    install::parse_documents(&helm_template(extra))
        .expect("the chart renders YAML")
        .into_iter()
        .find(|o| o["kind"] == "DaemonSet")
        .expect("a DaemonSet")["spec"]["template"]["spec"]
        .clone()
}

/// With `speaker.bgp.enabled` the speaker Pod runs FRR beside the speaker, both from the FRR
/// image, sharing FRR's configuration and socket folders; the speaker is in the group that may
/// use FRR's sockets and FRR has the capabilities the image's check starts it with.
#[test]
fn the_chart_adds_the_frr_sidecar_when_bgp_is_enabled() {
    let pod = speaker_pod(&[
        "--set",
        "speaker.bgp.enabled=true,speaker.bgp.image.tag=test",
    ]);
    let containers = pod["containers"].as_array().expect("containers");
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["speaker", "frr"]);
    let (speaker, frr) = (&containers[0], &containers[1]);
    for container in [speaker, frr] {
        assert_eq!(container["image"], "ghcr.io/herald-lb/herald-frr:test");
        let mounts: BTreeMap<&str, &str> = container["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap(),
                    m["mountPath"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(mounts.get("frr-config"), Some(&"/etc/frr"), "{container}");
        assert_eq!(
            mounts.get("frr-sockets"),
            Some(&"/var/run/frr"),
            "{container}"
        );
    }
    let args: Vec<&str> = speaker["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for flag in [
        "--bgp",
        "--frr-config-dir=/etc/frr",
        "--frr-socket-dir=/var/run/frr",
    ] {
        assert!(args.contains(&flag), "the speaker lacks {flag}: {args:?}");
    }
    // The binary takes the chart's arguments as the chart renders them with BGP on.
    let output = Command::new(workspace_binary("herald-speaker"))
        .args(&args)
        .arg("--help")
        .output()
        .expect("herald-speaker runs");
    assert!(
        output.status.success(),
        "herald-speaker refuses the BGP-enabled DaemonSet's arguments {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        frr["command"],
        Value::Null,
        "FRR runs the image's entrypoint"
    );
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    for volume in ["frr-config", "frr-sockets"] {
        assert!(
            volumes[volume]["emptyDir"].is_object(),
            "{volume} is not an emptyDir: {:?}",
            volumes.get(volume)
        );
    }
    assert_eq!(
        pod["securityContext"]["supplementalGroups"],
        json!([frr_image_setting("frrvty_gid").parse::<u32>().unwrap()]),
        "the speaker must be in the image's frrvty group"
    );
    let added: BTreeSet<String> = frr["securityContext"]["capabilities"]["add"]
        .as_array()
        .expect("FRR's capabilities")
        .iter()
        .map(|c| c.as_str().unwrap().to_lowercase())
        .collect();
    let checked: BTreeSet<String> = frr_image_setting("frr_capabilities")
        .trim_matches(['(', ')'])
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        added, checked,
        "the FRR container's capabilities differ from those scripts/build-frr-image --check \
         starts FRR with"
    );
    assert_eq!(
        frr["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );

    let layer2 = speaker_pod(&[]);
    assert_eq!(layer2["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        layer2["containers"][0]["image"],
        "ghcr.io/herald-lb/herald:0.1.0"
    );
    assert_eq!(layer2["securityContext"]["supplementalGroups"], Value::Null);
}

#[test]
fn the_kustomize_base_is_the_chart_with_its_defaults() {
    let committed = std::fs::read_to_string(repo_root().join("deploy/herald.yaml"))
        .expect("reading deploy/herald.yaml");
    let rendered = helm_template(&[]);
    assert!(
        committed.lines().skip(1).eq(rendered.lines()),
        "deploy/herald.yaml is not what the chart renders with its default values: run \
         scripts/render-deploy and commit the result"
    );
    let bgp = std::fs::read_to_string(repo_root().join("deploy/bgp/herald.yaml"))
        .expect("reading deploy/bgp/herald.yaml");
    let namespace = std::fs::read_to_string(repo_root().join("deploy/namespace.yaml"))
        .expect("reading deploy/namespace.yaml");
    let chart = helm_template(&["--include-crds", "--set", "speaker.bgp.enabled=true"]);
    assert!(
        install::parse_documents(&bgp).expect("deploy/bgp/herald.yaml parses")
            == install::parse_documents(&format!("{namespace}---\n{chart}"))
                .expect("the chart renders YAML"),
        "deploy/bgp/herald.yaml is not deploy/namespace.yaml and what the chart renders with its \
         CRDs and speaker.bgp.enabled=true: run scripts/render-deploy and commit the result"
    );
    let files = |dir: &str| -> BTreeMap<String, String> {
        std::fs::read_dir(repo_root().join(dir))
            .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
            .map(|entry| {
                let path = entry.expect("a folder entry").path();
                let name = path
                    .file_name()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned();
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                (name, text)
            })
            .collect()
    };
    for copied in ["crds", "monitoring"] {
        assert!(
            files(&format!("deploy/{copied}")) == files(&format!("deploy/helm/herald/{copied}")),
            "the chart's {copied}/ differ from deploy/{copied}: run scripts/render-deploy and \
             commit the result"
        );
    }
}

/// The `--flag` defaults that `binary --help` shows.
fn defaults(binary: &Path) -> BTreeMap<String, String> {
    let output = Command::new(binary)
        .arg("--help")
        .output()
        .expect("--help runs");
    let help = String::from_utf8_lossy(&output.stdout);
    let mut defaults = BTreeMap::new();
    let mut flag = None;
    for line in help.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("--") {
            flag = rest.split([' ', '=']).next().map(str::to_owned);
        }
        if let (Some(flag), Some((_, value))) = (&flag, line.split_once("[default: ")) {
            defaults.insert(flag.clone(), up_to_closing_bracket(value).to_owned());
        }
    }
    defaults
}

/// `text` up to the `]` that closes the bracket it is in: a default such as `[::]:9403` holds
/// brackets of its own.
fn up_to_closing_bracket(text: &str) -> &str {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return &text[..i],
            ']' => depth -= 1,
            _ => {}
        }
    }
    text
}

/// Every flag the manifests pass is one the binary takes, with a value it accepts, and with
/// the chart's default values each is the binary's own default (so a default changed in the
/// code shows up here).
#[test]
fn the_manifests_pass_the_binaries_flags_with_their_defaults() {
    for kind in ["Deployment", "DaemonSet"] {
        let (command, args) = install::deploy_container(kind);
        let binary = workspace_binary(command.trim_start_matches('/'));
        let output = Command::new(&binary)
            .args(&args)
            .arg("--help")
            .output()
            .expect("the binary runs");
        assert!(
            output.status.success(),
            "{command} refuses the {kind}'s arguments {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let defaults = defaults(&binary);
        for arg in &args {
            let (flag, value) = arg
                .trim_start_matches("--")
                .split_once('=')
                .unwrap_or_else(|| panic!("{kind} argument {arg} is not --flag=value"));
            assert_eq!(
                defaults.get(flag).map(String::as_str),
                Some(value),
                "the {kind} passes {arg}, but {command}'s default differs (defaults: {defaults:?})"
            );
        }
    }
}

/// A pool for the test's namespace only, and a LoadBalancer Service of `class` in it.
fn pool_and_service(cluster: &TestCluster, addresses: &str, class: &str) -> String {
    let pool = cluster.unique_name("pool");
    install::apply(
        cluster.server(),
        &[
            json!({
                "apiVersion": "herald.dev/v1alpha1",
                "kind": "IPAddressPool",
                "metadata": {"name": pool},
                "spec": {
                    "addresses": [addresses],
                    "serviceAllocation": {"namespaces": [cluster.namespace()]},
                },
            }),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": cluster.namespace()},
                "spec": {
                    "type": "LoadBalancer",
                    "loadBalancerClass": class,
                    "ports": [{"port": 80, "protocol": "TCP"}],
                    "selector": {"app": "web"},
                },
            }),
        ],
    );
    pool
}

/// Starts the controller as ServiceAccount herald-controller of `namespace`; returns it and the
/// port of its `/metrics`.
fn start_controller(
    cluster: &TestCluster,
    namespace: &str,
    class: &str,
) -> (herald_tests::Process, u16) {
    let kubeconfig = install::service_account_kubeconfig(cluster.server(), namespace, CONTROLLER);
    let metrics = free_port();
    let args: Vec<String> = [
        "--metrics-bind-address",
        &format!("127.0.0.1:{metrics}"),
        "--health-bind-address",
        &format!("127.0.0.1:{}", free_port()),
        "--lease-namespace",
        namespace,
        "--identity",
        &format!("{namespace}-0"),
        "--load-balancer-class",
        class,
        "--pool-status-interval",
        "200ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let controller = install::run_as(
        cluster.server(),
        &workspace_binary("herald-controller"),
        &kubeconfig,
        &args,
    );
    (controller, metrics)
}

async fn ingress_ip(cluster: &TestCluster) -> Option<String> {
    let service = Api::<Service>::namespaced(cluster.client(), cluster.namespace())
        .get("web")
        .await
        .ok()?;
    service.status?.load_balancer?.ingress?.first()?.ip.clone()
}

#[tokio::test]
async fn controller_and_speaker_work_with_only_their_service_accounts_permissions() {
    let cluster = test_cluster("rbac").await;
    install::install_rbac(cluster.server(), NAMESPACE);
    let class = "herald.dev/rbac";
    let (mut controller, _) = start_controller(&cluster, NAMESPACE, class);
    let pool = pool_and_service(&cluster, "192.0.2.16/28", class);

    let ip = eventually(WAIT, "an address for the Service", || ingress_ip(&cluster)).await;
    assert_eq!(ip, "192.0.2.16");
    // Pool status, Events and the leader Lease: every other rule is used too.
    let pools: Api<IPAddressPool> = Api::all(cluster.client());
    eventually(WAIT, "the pool's status to count it", || async {
        let status = pools.get(&pool).await.ok()?.status?;
        (status.assigned_ipv4 == Some(1)).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(cluster.client(), cluster.namespace());
    eventually(WAIT, "an IPAllocated Event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("IPAllocated"))
            .then_some(())
    })
    .await;
    let lease = Api::<Lease>::namespaced(cluster.client(), NAMESPACE)
        .get(CONTROLLER)
        .await
        .expect("the leader Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("herald-system-0")
    );
    assert!(controller.running(), "{}", controller.log_tail(40));
    assert!(
        !controller.log_tail(200).contains("forbidden"),
        "the controller met a forbidden request:\n{}",
        controller.log_tail(200)
    );

    // The speakers' gossip key: a Secret the controller made, with a random 32-byte key.
    let secret = Api::<Secret>::namespaced(cluster.client(), NAMESPACE)
        .get("herald-gossip-key")
        .await
        .expect("the gossip key Secret the controller creates");
    let keys = secret.data.expect("the Secret's data");
    let primary = keys.get("primary").expect("a primary key");
    assert_eq!(primary.0.len(), 32);

    // The speaker, as its ServiceAccount, with that key. The Service has no endpoint and no
    // L2Advertisement exists, so it opens no raw socket: it says so on the Service, which
    // needs its watches, the status write and its heartbeat Lease.
    let StartedSpeaker {
        process: mut speaker,
        node,
        ..
    } = start_speaker(&cluster, NAMESPACE, &primary.0);
    let services = Api::<Service>::namespaced(cluster.client(), cluster.namespace());
    eventually(WAIT, "the speaker's Announced condition", || async {
        let status = services.get("web").await.ok()?.status?;
        let announced = status
            .conditions?
            .into_iter()
            .find(|c| c.type_ == herald_crds::conditions::ANNOUNCED)?;
        (announced.reason == "NoReadyEndpoint").then_some(())
    })
    .await;
    let leases = Api::<Lease>::namespaced(cluster.client(), NAMESPACE);
    let heartbeat = format!("herald-speaker-{node}");
    eventually(WAIT, "the speaker's heartbeat Lease", || async {
        leases.get_opt(&heartbeat).await.ok()?.map(drop)
    })
    .await;
    assert!(
        !speaker.log_tail(200).contains("forbidden"),
        "the speaker met a forbidden request:\n{}",
        speaker.log_tail(200)
    );
    // RBAC lets the speakers write Leases of any name in the namespace; the admission policy
    // keeps them off the controller's leader Lease (a dry run: it must not really change it).
    let kubeconfig = install::service_account_kubeconfig(cluster.server(), NAMESPACE, SPEAKER);
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let as_speaker: Api<Lease> =
        Api::namespaced(kube::Client::try_from(config).unwrap(), NAMESPACE);
    let take_over = json!({"spec": {"holderIdentity": "a-speaker"}});
    let refusal = eventually(
        WAIT,
        "the policy to keep the speaker off the leader Lease",
        || async {
            let dry_run = PatchParams {
                dry_run: true,
                ..PatchParams::default()
            };
            match as_speaker
                .patch(CONTROLLER, &dry_run, &Patch::Merge(&take_over))
                .await
            {
                Err(kube::Error::Api(status)) => Some(status.message),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        refusal.contains("herald-speaker may only write its heartbeat Leases"),
        "{refusal}"
    );
    // A graceful stop deletes the heartbeat Lease.
    assert!(speaker.terminate().success(), "{}", speaker.log_tail(40));
    assert!(
        leases
            .get_opt(&heartbeat)
            .await
            .expect("reading Leases")
            .is_none(),
        "the stopped speaker left its Lease:\n{}",
        speaker.log_tail(40)
    );
}

/// A speaker a test started: the process, its Node, and where it serves.
struct StartedSpeaker {
    process: herald_tests::Process,
    node: String,
    health: u16,
    metrics: u16,
    gossip: u16,
}

/// The speaker as ServiceAccount `herald-speaker` of `namespace`, on a new Node whose
/// InternalIP is loopback (where it gossips), with `key` as its gossip key.
fn start_speaker(cluster: &TestCluster, namespace: &str, key: &[u8]) -> StartedSpeaker {
    let node = cluster.unique_name("node");
    let key_dir = cluster
        .server()
        .data_dir()
        .join(format!("gossip-key-{node}"));
    gossip_key::project(&key_dir, &[("primary", key)]);
    install::apply(
        cluster.server(),
        &[json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})],
    );
    cluster.kubectl(&[
        "patch",
        "node",
        &node,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}"#,
    ]);
    let kubeconfig = install::service_account_kubeconfig(cluster.server(), namespace, SPEAKER);
    let health = free_port();
    let metrics = free_port();
    let gossip = free_port();
    let args: Vec<String> = [
        "--node-name",
        &node,
        "--namespace",
        namespace,
        "--gossip-bind-address",
        &format!("127.0.0.1:{gossip}"),
        "--metrics-bind-address",
        &format!("127.0.0.1:{metrics}"),
        "--health-bind-address",
        &format!("127.0.0.1:{health}"),
        "--gossip-key-dir",
        &key_dir.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let process = install::run_as(
        cluster.server(),
        &workspace_binary("herald-speaker"),
        &kubeconfig,
        &args,
    );
    StartedSpeaker {
        process,
        node,
        health,
        metrics,
        gossip,
    }
}

/// Roles of their own for a test: `deploy/`'s RBAC objects moved to a new namespace, changed
/// by `edit` (given the objects and the namespace); returns the namespace.
fn own_rbac(cluster: &TestCluster, edit: impl FnOnce(&mut Vec<Value>, &str)) -> String {
    let namespace = cluster.unique_name("herald");
    let mut objects = install::rbac_objects(&namespace);
    edit(&mut objects, &namespace);
    objects.insert(
        0,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
    );
    install::apply(cluster.server(), &objects);
    namespace
}

/// [`own_rbac`] without the rules of role `role` on `resource`.
fn rbac_without(cluster: &TestCluster, role: &str, resource: &str) -> String {
    own_rbac(cluster, |objects, namespace| {
        let rules = install::rules_mut(objects, "ClusterRole", &format!("{role}-{namespace}"));
        let before = rules.len();
        rules.retain(|r| r["resources"] != json!([resource]));
        assert_eq!(rules.len(), before - 1, "no {resource} rule to remove");
    })
}

#[tokio::test]
async fn a_speaker_missing_a_permission_says_which_and_is_not_ready() {
    let cluster = test_cluster("rbac-speaker").await;
    let namespace = rbac_without(&cluster, SPEAKER, "endpointslices");
    let StartedSpeaker {
        process: speaker,
        health,
        ..
    } = start_speaker(&cluster, &namespace, &gossip_key::random_key());
    let wanted = "not allowed to list and watch endpointslices";
    eventually(
        WAIT,
        "the speaker to log the missing permission",
        || async { speaker.log_tail(200).contains(wanted).then_some(()) },
    )
    .await;
    let readyz = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{health}/readyz"))
        .output()
        .expect("running curl");
    assert_eq!(
        String::from_utf8_lossy(&readyz.stdout),
        "503",
        "a speaker that cannot watch endpointslices must not be ready:\n{}",
        speaker.log_tail(40)
    );
}

#[tokio::test]
async fn a_controller_missing_a_permission_says_which() {
    let cluster = test_cluster("rbac-missing").await;
    // Its own namespace (and so its own roles): the other RBAC tests run alongside.
    let namespace = rbac_without(&cluster, CONTROLLER, "services/status");

    let class = "herald.dev/rbac-missing";
    let (controller, _) = start_controller(&cluster, &namespace, class);
    pool_and_service(&cluster, "192.0.2.32/28", class);

    // What is missing, in the API server's words, and what to do about it.
    let wanted = [
        "not allowed to write the status",
        "cannot patch resource \"services/status\"",
        "Grant it to the controller's ServiceAccount",
    ];
    eventually(
        WAIT,
        "the controller to log the missing permission",
        || async {
            let log = controller.log_tail(200);
            wanted.iter().all(|w| log.contains(w)).then_some(())
        },
    )
    .await;
    assert_eq!(ingress_ip(&cluster).await, None);
}

/// The body of `http://127.0.0.1:{port}/metrics` once it holds a sample of each of `families`.
async fn scrape(port: u16, process: &herald_tests::Process, families: &[&str]) -> String {
    let what = format!("/metrics with samples of {families:?}");
    let body = eventually(WAIT, &what, || async {
        let output = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
            .output()
            .ok()?;
        let body = String::from_utf8(output.stdout).expect("/metrics is UTF-8");
        let has = |family: &&str| body.lines().any(|l| l.starts_with(&format!("{family}{{")));
        (output.status.success() && families.iter().all(has)).then_some(body)
    })
    .await;
    assert!(!body.is_empty(), "{}", process.log_tail(40));
    body
}

/// The sample names Prometheus stores from an OpenMetrics text: each family of a `# TYPE` line
/// with the suffixes its type gives its samples. A family without samples (a labelled one no
/// label set was created in) has no `# TYPE` line either.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').expect("# TYPE name type");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|suffix| format!("{family}{suffix}")));
    }
    // Every sample printed is one of those names: the derivation above is the encoder's.
    for sample in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = sample.split(['{', ' ']).next().expect("a sample's name");
        assert!(names.contains(name), "sample {name} has no # TYPE family");
    }
    names
}

/// Index just past the `close` that ends the bracket opened before `start`, skipping quoted
/// strings (a label value such as `"$pool"` may hold anything).
fn past_closing(chars: &[char], mut i: usize, close: char) -> usize {
    while i < chars.len() {
        match chars[i] {
            c if c == close => return i + 1,
            quote @ ('"' | '\'' | '`') => i = past_string(chars, i + 1, quote),
            _ => i += 1,
        }
    }
    i
}

fn past_string(chars: &[char], mut i: usize, quote: char) -> usize {
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// The metric names a PromQL expression selects: the identifiers outside strings, label
/// matchers `{..}`, ranges `[..]` and label lists (`by (..)`, `on (..)`, ..) that are neither a
/// function (followed by `(`) nor an operator keyword.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: [&str; 20] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        // Aggregations, which may take `by (..)` before their `(`.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let identifier = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            quote @ ('"' | '\'' | '`') => i = past_string(&chars, i + 1, quote),
            '{' => i = past_closing(&chars, i + 1, '}'),
            '[' => i = past_closing(&chars, i + 1, ']'),
            // Numbers and durations (0.9, 5m, 1e3), and Grafana's $variables.
            c if c.is_ascii_digit() || c == '$' => {
                i += 1;
                while i < chars.len() && (identifier(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if identifier(c) => {
                let start = i;
                while i < chars.len() && identifier(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if LABEL_LISTS.contains(&word.as_str()) {
                    if next == Some(&'(') {
                        let open = i + chars[i..].iter().position(|&c| c == '(').expect("found");
                        i = past_closing(&chars, open + 1, ')');
                    }
                } else if next != Some(&'(') && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn promql_metric_names_finds_the_selected_metrics_only() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{pool=~"$pool", x="}"}[$__rate_interval])))
           / on (pool) group_left () max without (family) (b > 0) or vector(0) and c offset 5m"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_bucket", "b", "c"].map(String::from))
    );
}

/// Every PromQL expression of the dashboard (panel targets and the variables'
/// `label_values(metric, label)`) with where it is, for messages.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn panels(list: &Value, queries: &mut Vec<(String, String)>) {
        for panel in list.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    queries.push((format!("panel {title:?}"), expr.to_owned()));
                }
            }
            panels(&panel["panels"], queries);
        }
    }
    let mut queries = Vec::new();
    panels(&dashboard["panels"], &mut queries);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(query) = variable["query"]["query"].as_str() else {
            continue;
        };
        let metric = query
            .strip_prefix("label_values(")
            .and_then(|args| args.split([',', ')']).next())
            .unwrap_or_else(|| panic!("variable query {query:?} is not label_values(..)"));
        queries.push((format!("variable {}", variable["name"]), metric.to_owned()));
    }
    queries
}

fn rule_queries(rule: &Value) -> Vec<(String, String)> {
    rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .map(|rule| {
            let name = rule["alert"].as_str().or(rule["record"].as_str());
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            (
                format!("rule {}", name.unwrap_or_default()),
                expr.to_owned(),
            )
        })
        .collect()
}

fn monitoring_file(name: &str) -> String {
    let path = repo_root().join("deploy/monitoring").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The dashboard and the alerts query only metrics that the real controller and speaker serve
/// on `/metrics`: a renamed or removed metric fails here, not silently in Grafana.
#[tokio::test]
async fn the_dashboard_and_the_alerts_query_metrics_the_binaries_export() {
    let cluster = test_cluster("monitoring").await;
    let namespace = own_rbac(&cluster, |_, _| {});
    let class = "herald.dev/monitoring";
    let (controller, controller_metrics) = start_controller(&cluster, &namespace, class);
    let speaker = start_speaker(&cluster, &namespace, &gossip_key::random_key());
    // Labelled families export nothing until a label set exists: a pool with one address for
    // two Services gives the pool, allocation and failure families samples, and a datagram
    // that is no gossip the speaker's drop counter.
    pool_and_service(&cluster, "192.0.2.48/32", class);
    install::apply(
        cluster.server(),
        &[json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web-2", "namespace": cluster.namespace()},
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerClass": class,
                "ports": [{"port": 80, "protocol": "TCP"}],
            },
        })],
    );
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.send_to(b"not gossip", ("127.0.0.1", speaker.gossip)))
        .expect("sending to the speaker's gossip port");
    let controller_families = [
        "herald_pool_addresses",
        "herald_pool_addresses_in_use",
        "herald_allocations_total",
        "herald_allocation_failures_total",
        "herald_status_writes_total",
    ];
    let mut exported =
        exported_names(&scrape(controller_metrics, &controller, &controller_families).await);
    exported.extend(exported_names(
        &scrape(
            speaker.metrics,
            &speaker.process,
            &["herald_speaker_gossip_packets_dropped_total"],
        )
        .await,
    ));

    let dashboard: Value =
        serde_json::from_str(&monitoring_file("herald-dashboard.json")).expect("dashboard JSON");
    let rule: Value = serde_yaml::from_str(&monitoring_file("herald-prometheusrule.yaml"))
        .expect("PrometheusRule YAML");
    let queries: Vec<(String, String)> = dashboard_queries(&dashboard)
        .into_iter()
        .chain(rule_queries(&rule))
        .collect();
    assert!(queries.len() > 20, "only {} queries found", queries.len());
    for (place, expr) in &queries {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{place} queries no metric: {expr}");
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{place} queries {unknown:?}, which neither binary exports: {expr}\nexported: {exported:?}"
        );
    }
}

/// The chart's monitoring values render the dashboard ConfigMap the Grafana sidecar loads and
/// the PrometheusRule, with exactly deploy/monitoring's content.
#[test]
fn the_chart_renders_the_dashboard_and_the_alerts_when_enabled() {
    let rendered = helm_template(&[
        "--set",
        "monitoring.dashboard.enabled=true,monitoring.prometheusRule.enabled=true",
        "--set",
        "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
    ]);
    let objects = install::parse_documents(&rendered).expect("the chart renders YAML");
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
    };

    let dashboard = find("ConfigMap", "herald-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json = dashboard["data"]["herald-dashboard.json"]
        .as_str()
        .expect("the dashboard in the ConfigMap");
    let json: Value = serde_json::from_str(json).expect("the ConfigMap holds JSON");
    let committed: Value =
        serde_json::from_str(&monitoring_file("herald-dashboard.json")).expect("dashboard JSON");
    assert_eq!(json, committed);

    let rule = find("PrometheusRule", "herald");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let committed: Value = serde_yaml::from_str(&monitoring_file("herald-prometheusrule.yaml"))
        .expect("PrometheusRule YAML");
    assert_eq!(rule["spec"], committed["spec"]);

    let defaults = helm_template(&[]);
    assert!(
        !defaults.contains("kind: PrometheusRule") && !defaults.contains("herald-dashboard"),
        "monitoring objects render with the default values"
    );
}

/// Herald's Krew manifest: every field Krew requires, one archive per Linux platform named as a
/// release of this version publishes it, and `scripts/krew-archive` packing a build so that the
/// manifest it writes names that archive with its sha256 (what `kubectl krew install
/// --manifest --archive` checks).
#[test]
fn the_krew_manifest_names_each_platforms_release_archive_and_the_local_packing_matches_it() {
    let text = std::fs::read_to_string(repo_root().join("deploy/krew/herald.yaml"))
        .expect("reading deploy/krew/herald.yaml");
    let manifest: Value = serde_yaml::from_str(&text).expect("the Krew manifest is YAML");
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    // Krew installs `kubectl-<name>`: the plugin is `kubectl herald`.
    assert_eq!(manifest["metadata"]["name"], "herald");
    let spec = &manifest["spec"];
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(spec["version"], version.as_str());
    let short = spec["shortDescription"].as_str().unwrap_or_default();
    assert!(!short.is_empty() && short.len() <= 80, "{short:?}");
    assert!(
        spec["description"]
            .as_str()
            .is_some_and(|d| d.contains("why SERVICE"))
    );
    let platforms = spec["platforms"].as_array().expect("spec.platforms");
    let archive = |arch: &str| format!("kubectl-herald-{version}-linux-{arch}.tar.gz");
    let mut arches = Vec::new();
    for platform in platforms {
        let labels = &platform["selector"]["matchLabels"];
        assert_eq!(labels["os"], "linux", "{platform}");
        let arch = labels["arch"].as_str().expect("selector arch").to_owned();
        assert_eq!(
            platform["uri"],
            format!(
                "https://github.com/herald-lb/herald/releases/download/{version}/{}",
                archive(&arch)
            ),
        );
        let sha256 = platform["sha256"].as_str().expect("sha256");
        assert!(
            sha256.len() == 64
                && sha256
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
            "{sha256:?}"
        );
        assert_eq!(platform["bin"], "kubectl-herald");
        assert_eq!(
            platform["files"],
            json!([{"from": "kubectl-herald", "to": "."}])
        );
        arches.push(arch);
    }
    assert_eq!(arches, ["amd64", "arm64"]);

    // Packing a build: any executable stands in for it.
    let out = tempfile::tempdir().expect("a temporary folder");
    let binary = out.path().join("kubectl-herald-build");
    std::fs::write(&binary, "#!/bin/sh\necho herald\n").unwrap();
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let packed = Command::new(repo_root().join("scripts/krew-archive"))
        .arg(&binary)
        .arg(out.path().join("krew"))
        .output()
        .expect("running scripts/krew-archive");
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let stdout = String::from_utf8(packed.stdout).unwrap();
    let [written, archive_path] = stdout.lines().collect::<Vec<_>>()[..] else {
        panic!("two paths expected: {stdout}");
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no Krew platform for {other}"),
    };
    assert!(
        archive_path.ends_with(&format!("/{}", archive(arch))),
        "{archive_path}"
    );
    let listing = Command::new("tar")
        .args(["-tzf", archive_path])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(listing.stdout).unwrap(),
        "kubectl-herald\n"
    );
    let sum = Command::new("sha256sum")
        .arg(archive_path)
        .output()
        .unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    let sum = sum.split_whitespace().next().unwrap();
    let written: Value = serde_yaml::from_str(&std::fs::read_to_string(written).unwrap()).unwrap();
    let mine = written["spec"]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["selector"]["matchLabels"]["arch"] == arch)
        .unwrap();
    assert_eq!(mine["sha256"], sum);
    // Everything else is the committed manifest.
    let mut expected = manifest.clone();
    for platform in expected["spec"]["platforms"].as_array_mut().unwrap() {
        if platform["selector"]["matchLabels"]["arch"] == arch {
            platform["sha256"] = json!(sum);
        }
    }
    assert_eq!(written, expected);
}
