//! Herald's test control plane: a real kube-apiserver (with an embedded etcd, built from the
//! Kubernetes Go modules by `tests/apiserver`) started once per test process, with Herald's
//! CRDs installed, and a client and a namespace of its own for each test.
//!
//! The server's stdin is a pipe held by this process: when the test process exits, however it
//! exits, the server sees EOF and stops, and its data folder is removed, with everything the
//! tests made. Tests name cluster-scoped objects with [`TestCluster::unique_name`] so that
//! they never meet.

pub mod answers;
pub mod bgp_lan;
pub mod bgp_speaker_lan;
pub mod bridge;
pub mod frr;
pub mod gossip_key;
pub mod install;
pub mod lab;
pub mod lan;
pub mod node;
pub mod objects;
pub mod router;
pub mod speaker_lan;
mod tied;

pub use tied::spawn_tied;

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

/// How long a cold API server may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building the test API server with {script}: {reason}")]
    Build { script: String, reason: String },
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error(
        "the test API server did not become ready within {timeout:?}: {reason}\n--- its log ({log}) ---\n{log_tail}"
    )]
    NotReady {
        timeout: Duration,
        reason: String,
        log: String,
        log_tail: String,
    },
    #[error("reading kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("installing CRD {file}: {reason}")]
    Crd { file: String, reason: String },
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// A running test API server, shared by every test of one test process.
pub struct ApiServer {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    /// Where a real cluster's Pods reach the server, if it serves one.
    cluster_endpoint: Option<IpAddr>,
    // Kept so that the stdin pipe stays open for as long as this process lives.
    _process: Mutex<Child>,
}

static SERVER: OnceCell<ApiServer> = OnceCell::const_new();
static NAMESPACES: AtomicU32 = AtomicU32::new(0);

/// The shared API server, started (and given the CRDs) by the first test that asks for it.
pub async fn api_server() -> &'static ApiServer {
    SERVER
        .get_or_try_init(|| ApiServer::start(None))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The shared API server as a real cluster's (kubelets, controller-manager and scheduler run
/// against it), whose Pods reach it at `endpoint` (see the test API server's
/// `serve --cluster-endpoint`); the first call starts it. A test process holds one server:
/// call only this one in a process that runs a real cluster.
pub async fn cluster_api_server(endpoint: IpAddr) -> &'static ApiServer {
    let server = SERVER
        .get_or_try_init(|| ApiServer::start(Some(endpoint)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        server.cluster_endpoint,
        Some(endpoint),
        "this process's API server was started for another kind of cluster"
    );
    server
}

/// A namespace of the test's own on the shared API server, and a client for it.
pub async fn test_cluster(test: &str) -> TestCluster {
    let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
    cluster_in(&format!("{test}-{}-{n}", std::process::id()).replace('_', "-")).await
}

/// The shared API server with a new namespace named `namespace`, and a client for it.
pub async fn cluster_in(namespace: &str) -> TestCluster {
    namespace_on(api_server().await, namespace).await
}

/// A new namespace named `namespace` on `server`, and a client for it.
pub async fn namespace_on(server: &'static ApiServer, namespace: &str) -> TestCluster {
    let client = server.client().await.unwrap_or_else(|e| panic!("{e}"));
    let namespace = namespace.to_string();
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": namespace }
    }))
    .expect("a namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {namespace}: {e}"));
    TestCluster {
        server,
        client,
        namespace,
    }
}

impl ApiServer {
    async fn start(cluster_endpoint: Option<IpAddr>) -> Result<ApiServer, Error> {
        let bin_dir = apiserver_bin_dir()?;
        let data_dir = tempfile::Builder::new()
            .prefix("herald-apiserver-")
            .tempdir()
            .map_err(|source| Error::Spawn {
                binary: "a temporary folder".into(),
                source,
            })?
            .keep();
        let binary = bin_dir.join("herald-test-apiserver");
        let log =
            std::fs::File::create(data_dir.join("serve.log")).map_err(|source| Error::Spawn {
                binary: binary.display().to_string(),
                source,
            })?;
        // The shell removes the data folder once the server has stopped.
        let mut command = Command::new("sh");
        command
            .args([
                "-c",
                r#"dir=$1; shift; "$0" serve --data-dir "$dir" --stop-on-stdin-eof "$@"; status=$?; rm -rf "$dir"; exit $status"#,
            ])
            .arg(&binary)
            .arg(&data_dir);
        if let Some(endpoint) = cluster_endpoint {
            command.arg(format!("--cluster-endpoint={endpoint}"));
        }
        let child = command
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("a log file handle"))
            .stderr(log)
            .spawn()
            .map_err(|source| Error::Spawn {
                binary: binary.display().to_string(),
                source,
            })?;
        let server = ApiServer {
            bin_dir,
            data_dir,
            cluster_endpoint,
            _process: Mutex::new(child),
        };
        server.wait_until_ready().await?;
        server.install_crds().await?;
        Ok(server)
    }

    async fn wait_until_ready(&self) -> Result<(), Error> {
        let started = Instant::now();
        let mut last_error = String::from("no kubeconfig written yet");
        while started.elapsed() < READY_TIMEOUT {
            if let Some(status) = self
                ._process
                .lock()
                .expect("not poisoned")
                .try_wait()
                .ok()
                .flatten()
            {
                return Err(self.not_ready(format!("it exited with {status}")));
            }
            if self.kubeconfig_path().exists() {
                match self.readyz().await {
                    Ok(()) => return Ok(()),
                    Err(e) => last_error = e.to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(self.not_ready(last_error))
    }

    async fn readyz(&self) -> Result<(), Error> {
        let client = self.client().await?;
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("a request");
        client.request_text(request).await?;
        Ok(())
    }

    fn not_ready(&self, reason: String) -> Error {
        let tail = |name: &str, lines: usize| {
            let mut text = String::new();
            let _ = std::fs::File::open(self.data_dir.join(name))
                .and_then(|mut f| f.read_to_string(&mut text));
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        Error::NotReady {
            timeout: READY_TIMEOUT,
            reason,
            log: self.data_dir.display().to_string(),
            log_tail: format!("{}\n{}", tail("serve.log", 10), tail("apiserver.log", 30)),
        }
    }

    /// Applies every manifest in `deploy/crds/` (the committed ones, so they are what is tested)
    /// and waits until the API server serves them.
    async fn install_crds(&self) -> Result<(), Error> {
        self.install_crds_from(&repo_root().join("deploy/crds"))
            .await
    }

    /// Applies every CRD manifest (`*.yaml`) in `dir` and waits until the API server serves
    /// them: Herald's, or another project's for tests that read its objects.
    pub async fn install_crds_from(&self, dir: &Path) -> Result<(), Error> {
        let client = self.client().await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::Crd {
                file: dir.display().to_string(),
                reason: e.to_string(),
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let crd_error = |reason: String| Error::Crd {
                file: file.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(&file).map_err(|e| crd_error(e.to_string()))?;
            let crd: CustomResourceDefinition =
                serde_yaml::from_str(&text).map_err(|e| crd_error(e.to_string()))?;
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(
                &name,
                &PatchParams::apply("herald-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
            .map_err(|e| crd_error(e.to_string()))?;
            wait_until_established(&crds, &name)
                .await
                .map_err(crd_error)?;
        }
        Ok(())
    }

    /// A client with cluster-admin rights.
    pub async fn client(&self) -> Result<Client, Error> {
        let path = self.kubeconfig_path();
        let kubeconfig_error = |reason: String| Error::Kubeconfig {
            path: path.display().to_string(),
            reason,
        };
        let kubeconfig =
            Kubeconfig::read_from(&path).map_err(|e| kubeconfig_error(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| kubeconfig_error(e.to_string()))?;
        Ok(Client::try_from(config)?)
    }

    /// The folder holding the server's binary, and `kubectl` and `kube-proxy` (the same binary
    /// under those names).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's folder: its certificates, kubeconfigs and logs.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The admin kubeconfig (the server writes it before it serves).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// A kubeconfig for another identity, signed by the server's CA, for RBAC tests.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> PathBuf {
        let path = self.data_dir.join(format!("kubeconfig-{user}"));
        let mut command = Command::new(self.bin_dir.join("herald-test-apiserver"));
        command
            .args(["kubeconfig", "--data-dir"])
            .arg(&self.data_dir);
        command.args(["--user", user, "--out"]).arg(&path);
        for group in groups {
            command.args(["--group", group]);
        }
        let output = command
            .output()
            .expect("running herald-test-apiserver kubeconfig");
        assert!(
            output.status.success(),
            "minting a kubeconfig for {user}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        path
    }

    /// The real `kubectl`, built from the same Kubernetes release, pointed at this server.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bin_dir.join("kubectl"));
        command.env("KUBECONFIG", self.kubeconfig_path());
        command
    }
}

async fn wait_until_established(
    crds: &Api<CustomResourceDefinition>,
    name: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(name).await.map_err(|e| e.to_string())?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("not Established after 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where the test API server binary is: `$HERALD_TEST_APISERVER_DIR` when set (the test
/// command builds it first and sets it), else what `tests/apiserver/build.sh` builds (cached
/// outside the clone, so only a cold machine waits).
fn apiserver_bin_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("HERALD_TEST_APISERVER_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join("tests/apiserver/build.sh");
    let build_error = |reason: String| Error::Build {
        script: script.display().to_string(),
        reason,
    };
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| build_error(e.to_string()))?;
    if !output.status.success() {
        return Err(build_error(format!("it exited with {}", output.status)));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim();
    if dir.is_empty() {
        return Err(build_error("it printed no folder".into()));
    }
    Ok(PathBuf::from(dir))
}

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A test's view of the shared API server: an admin client and a namespace of its own.
pub struct TestCluster {
    server: &'static ApiServer,
    client: Client,
    namespace: String,
}

impl TestCluster {
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn server(&self) -> &'static ApiServer {
        self.server
    }

    /// A name for a cluster-scoped object that no other test uses: the namespace's name
    /// with a suffix.
    pub fn unique_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.namespace)
    }

    /// Runs the real kubectl with `args` and returns its stdout; panics with its stderr if it
    /// fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = self
            .server
            .kubectl()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running kubectl {args:?}: {e}"));
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A Herald binary running against the test API server; killed when dropped. Its output goes
/// to a log file whose tail failing tests print.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ApiServer {
    /// Starts `binary` with `--kubeconfig` pointing at this server, then `args`.
    pub fn run(&self, binary: &Path, args: &[String]) -> Process {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let log = self.data_dir.join(format!("{name}-{n}.log"));
        let mut command = Command::new(binary);
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .args(args);
        Process::spawn(&name, command, log)
    }
}

impl Process {
    /// Starts `command` (a program and its arguments) with its output going to `log`; it
    /// ends with this process at the latest (see [`spawn_tied`]).
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        command
            .stdout(file.try_clone().expect("a log file handle"))
            .stderr(file);
        let shown = format!("{command:?}");
        let child =
            spawn_tied(command).unwrap_or_else(|e| panic!("starting {name} ({shown}): {e}"));
        Process {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Stops the process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process with SIGTERM and waits for it, as Kubernetes would.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("waiting for the process")
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How it ended, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(60)
            );
        }
    }
}

/// A free TCP port on loopback (for the binaries' metrics and health servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
