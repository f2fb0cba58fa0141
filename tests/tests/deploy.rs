//! The install manifests (`deploy/`, the Helm chart) against the real API server, and the real
//! controller and speaker running with exactly their ServiceAccounts' permissions.
//!
//! Needs `HERALD_HELM` (the helm binary: `export HERALD_HELM=$(scripts/install-helm)`) and the
//! debug `herald-controller` and `herald-speaker` beside this test's binary, which
//! `cargo test --workspace` builds (alone: `cargo build -p herald-controller -p herald-speaker`).

use std::collections::BTreeMap;
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
use serde_json::json;

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
    let manifests = cluster.kubectl(&["kustomize", &repo_root().join("deploy").to_string_lossy()]);
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
    let crds = |dir: &str| -> BTreeMap<String, String> {
        std::fs::read_dir(repo_root().join(dir))
            .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
            .map(|entry| {
                let path = entry.expect("a folder entry").path();
                let name = path
                    .file_name()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned();
                (
                    name,
                    std::fs::read_to_string(&path).expect("a readable CRD"),
                )
            })
            .collect()
    };
    assert!(
        crds("deploy/crds") == crds("deploy/helm/herald/crds"),
        "the chart's crds/ differ from deploy/crds: run scripts/render-deploy and commit the result"
    );
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

/// Starts the controller as ServiceAccount herald-controller of `namespace`.
fn start_controller(cluster: &TestCluster, namespace: &str, class: &str) -> herald_tests::Process {
    let kubeconfig = install::service_account_kubeconfig(cluster.server(), namespace, CONTROLLER);
    let args: Vec<String> = [
        "--metrics-bind-address",
        &format!("127.0.0.1:{}", free_port()),
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
    install::run_as(
        cluster.server(),
        &workspace_binary("herald-controller"),
        &kubeconfig,
        &args,
    )
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
    let mut controller = start_controller(&cluster, NAMESPACE, class);
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
    let (mut speaker, node, _) = start_speaker(&cluster, NAMESPACE, &primary.0);
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

/// The speaker as ServiceAccount `herald-speaker` of `namespace`, on a new Node whose
/// InternalIP is loopback (where it gossips), with `key` as its gossip key; returns it, its
/// Node and its health port.
fn start_speaker(
    cluster: &TestCluster,
    namespace: &str,
    key: &[u8],
) -> (herald_tests::Process, String, u16) {
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
    let args: Vec<String> = [
        "--node-name",
        &node,
        "--namespace",
        namespace,
        "--gossip-bind-address",
        &format!("127.0.0.1:{}", free_port()),
        "--metrics-bind-address",
        &format!("127.0.0.1:{}", free_port()),
        "--health-bind-address",
        &format!("127.0.0.1:{health}"),
        "--gossip-key-dir",
        &key_dir.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let speaker = install::run_as(
        cluster.server(),
        &workspace_binary("herald-speaker"),
        &kubeconfig,
        &args,
    );
    (speaker, node, health)
}

/// Roles of their own for a test: `deploy/`'s RBAC objects moved to a new namespace, without
/// the rules of role `role` on `resource`.
fn rbac_without(cluster: &TestCluster, role: &str, resource: &str) -> String {
    let namespace = cluster.unique_name("herald");
    let mut objects = install::rbac_objects(&namespace);
    let rules = install::rules_mut(&mut objects, "ClusterRole", &format!("{role}-{namespace}"));
    let before = rules.len();
    rules.retain(|r| r["resources"] != json!([resource]));
    assert_eq!(rules.len(), before - 1, "no {resource} rule to remove");
    objects.insert(
        0,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
    );
    install::apply(cluster.server(), &objects);
    namespace
}

#[tokio::test]
async fn a_speaker_missing_a_permission_says_which_and_is_not_ready() {
    let cluster = test_cluster("rbac-speaker").await;
    let namespace = rbac_without(&cluster, SPEAKER, "endpointslices");
    let (speaker, _, health) = start_speaker(&cluster, &namespace, &gossip_key::random_key());
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
    let controller = start_controller(&cluster, &namespace, class);
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
