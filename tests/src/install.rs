//! Herald as installed from `deploy/`: its RBAC objects applied for real on the test API server,
//! and kubeconfigs that act as its ServiceAccounts, so tests and the lab run the real binaries
//! with exactly the permissions a cluster gives them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::{ApiServer, NAMESPACES, Process, repo_root};

/// The namespace `deploy/` installs into.
pub const NAMESPACE: &str = "herald-system";
/// The controller's ServiceAccount (and its roles' and bindings' names).
pub const CONTROLLER: &str = "herald-controller";
/// The speaker's ServiceAccount (and its roles' and bindings' names).
pub const SPEAKER: &str = "herald-speaker";

const RBAC_KINDS: [&str; 7] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// Every object of `deploy/herald.yaml` (the chart rendered with its default values).
pub fn deploy_objects() -> Vec<Value> {
    let path = repo_root().join("deploy/herald.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    parse_documents(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The first container of the workload `kind` in `deploy/herald.yaml`: its binary and
/// arguments.
pub fn deploy_container(kind: &str) -> (String, Vec<String>) {
    let object = deploy_objects()
        .into_iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/herald.yaml"));
    let container = &object["spec"]["template"]["spec"]["containers"][0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    };
    let command = strings(&container["command"]);
    (command[0].clone(), strings(&container["args"]))
}

/// The objects of a multi-document YAML stream, empty documents left out.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, serde_yaml::Error> {
    let mut objects = Vec::new();
    let mut document = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line == "---" {
            let object: Value = serde_yaml::from_str(&document)?;
            if !object.is_null() {
                objects.push(object);
            }
            document.clear();
        } else {
            document.push_str(line);
            document.push('\n');
        }
    }
    Ok(objects)
}

/// The ServiceAccounts, roles and bindings of `deploy/herald.yaml`, moved to `namespace`.
/// Outside herald-system the cluster-scoped ones are renamed `<name>-<namespace>`, so that
/// installs for several namespaces on one API server keep their own bindings.
pub fn rbac_objects(namespace: &str) -> Vec<Value> {
    let mut objects: Vec<Value> = deploy_objects()
        .into_iter()
        .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
        .collect();
    for object in &mut objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let cluster_scoped = kind.starts_with("Cluster") || kind.starts_with("ValidatingAdmission");
        if cluster_scoped && namespace != NAMESPACE {
            let name = format!(
                "{}-{namespace}",
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            object["metadata"]["name"] = json!(name);
            match kind.as_str() {
                "ClusterRoleBinding" => object["roleRef"]["name"] = json!(name),
                "ValidatingAdmissionPolicyBinding" => object["spec"]["policyName"] = json!(name),
                // Its ServiceAccount is the one of `namespace`.
                "ValidatingAdmissionPolicy" => {
                    let moved = object["spec"].to_string().replace(
                        &format!("system:serviceaccount:{NAMESPACE}:"),
                        &format!("system:serviceaccount:{namespace}:"),
                    );
                    object["spec"] = serde_json::from_str(&moved).expect("still JSON");
                }
                _ => {}
            }
        }
        if !cluster_scoped {
            object["metadata"]["namespace"] = json!(namespace);
        }
        if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
            for subject in subjects {
                subject["namespace"] = json!(namespace);
            }
        }
    }
    objects
}

/// The rules of the role `kind`/`name` among `objects`, to change before applying them.
pub fn rules_mut<'a>(objects: &'a mut [Value], kind: &str, name: &str) -> &'a mut Vec<Value> {
    objects
        .iter_mut()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .and_then(|o| o["rules"].as_array_mut())
        .unwrap_or_else(|| panic!("no {kind} {name} with rules among the objects"))
}

/// Applies `objects` for real (server-side apply with the real kubectl) and returns its output.
pub fn apply(server: &ApiServer, objects: &[Value]) -> String {
    let stream: Vec<String> = objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("JSON values serialise as YAML"))
        .collect();
    kubectl_with_input(
        server,
        &[
            "apply",
            "--server-side",
            "--field-manager=herald-tests",
            "-f",
            "-",
        ],
        &stream.join("---\n"),
    )
}

/// Creates `namespace` if needed and installs Herald's RBAC objects in it (see
/// [`rbac_objects`]).
pub fn install_rbac(server: &ApiServer, namespace: &str) {
    let mut objects = vec![json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": namespace },
    })];
    objects.extend(rbac_objects(namespace));
    apply(server, &objects);
}

/// A kubeconfig that authenticates as ServiceAccount `name` of `namespace`: the user name and
/// groups that the API server gives the account's tokens, which is what RBAC matches.
pub fn service_account_kubeconfig(server: &ApiServer, namespace: &str, name: &str) -> PathBuf {
    server.kubeconfig_for(
        &format!("system:serviceaccount:{namespace}:{name}"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{namespace}"),
        ],
    )
}

/// Starts `binary` with `--kubeconfig kubeconfig`, then `args`: as [`ApiServer::run`], but as
/// whoever the kubeconfig names rather than as the admin.
pub fn run_as(server: &ApiServer, binary: &Path, kubeconfig: &Path, args: &[String]) -> Process {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
    let log = server.data_dir().join(format!("{name}-{n}.log"));
    let mut command = Command::new(binary);
    command.arg("--kubeconfig").arg(kubeconfig).args(args);
    Process::spawn(&name, command, log)
}

/// Runs the real kubectl as the admin with `input` on its stdin; returns its stdout and panics
/// with its stderr if it fails.
pub fn kubectl_with_input(server: &ApiServer, args: &[&str], input: &str) -> String {
    let mut child = server
        .kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running kubectl {args:?}: {e}"));
    child
        .stdin
        .take()
        .expect("a stdin pipe")
        .write_all(input.as_bytes())
        .unwrap_or_else(|e| panic!("writing to kubectl {args:?}: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for kubectl {args:?}: {e}"));
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
