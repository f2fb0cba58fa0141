//! A real Kubernetes node on a lab host: Debian's containerd (with runc and the CNI plugins),
//! the real kubelet and the real kube-proxy, all in the host's network namespace and in a mount
//! namespace and cgroup of the node's own.
//!
//! What keeps a node from touching the machine it runs on:
//! - the mount namespace (entered with `nsenter`, not `ip netns exec`, which remounts `/sys` and
//!   loses the cgroup mounts) gives the node its own `/run` and `/var/log`, and read-only files
//!   over the `/proc/sys` entries kubelet would otherwise rewrite for the whole machine
//!   (`vm.overcommit_memory`, `kernel.panic`...), holding the values kubelet wants;
//! - every process of the node (containerd, its shims and containers, kubelet, kube-proxy) is in
//!   the cgroup `/<netns>` of every hierarchy (kubelet's `cgroupRoot`), which is how a node is
//!   killed whole, as a machine that loses power, and how [`remove_leftovers`] finds what a
//!   crashed lab left;
//! - its files are under `/var/lib/herald-lab/<netns>` (containerd's overlay snapshots need a
//!   real file system, not a tmpfs).
//!
//! The machine gives cgroup v1, which kubelet 1.35 accepts only with `failCgroupV1: false`; the
//! sandbox lacks CAP_SYS_RESOURCE, so containerd must not raise Pods' `oom_score_adj`
//! (`restrict_oom_score_adj`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::lan::Host;
use crate::{Process, eventually};

/// Where nodes keep their files, one folder per node named after its network namespace.
const STATE_ROOT: &str = "/var/lib/herald-lab";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The Pod sandbox image (tests/images/pause.c, from scripts/build-lab-images).
pub const PAUSE_IMAGE: &str = "lab.herald.dev/pause:1";
/// The host-wide sysctls kubelet sets at start, with the values it sets them to
/// (pkg/kubelet/cm: setupKernelTunables); each node sees these values, read-only.
const KUBELET_SYSCTLS: [(&str, &str); 6] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];
/// Services' ClusterIP ranges, as the test API server has them.
pub const SERVICE_CIDRS: &str = "10.96.0.0/16,fd00:10:96::/112";
/// The resolver Pods are given. Nothing in the lab resolves names and nothing answers there:
/// it is the ClusterIP a cluster's DNS Service usually has, so that Pods get the resolver a
/// real cluster gives them.
const CLUSTER_DNS: &str = "10.96.0.10";
/// Every node's Pod ranges together (node `i` has [`pod_cidrs`]`(i)`).
pub const CLUSTER_CIDRS: &str = "198.51.100.0/24,2001:db8:10::/48";

/// Node `i`'s Pod ranges: `198.51.100.(16·(i+1))/28` and `2001:db8:10:(i+1)::/64`.
pub fn pod_cidrs(i: usize) -> (String, String) {
    (
        format!("198.51.100.{}/28", 16 * (i + 1)),
        format!("2001:db8:10:{}::/64", i + 1),
    )
}

/// The first address of node `i`'s Pod ranges, which its `cni0` bridge holds.
pub fn pod_gateways(i: usize) -> (Ipv4Addr, Ipv6Addr) {
    (
        Ipv4Addr::new(198, 51, 100, 16 * (i as u8 + 1) + 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0x10, i as u16 + 1, 0, 0, 0, 1),
    )
}

/// What a node runs and how it reaches the cluster.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The folder of the test API server's multi-call binary (`kubelet`, `kube-proxy`).
    pub bin_dir: PathBuf,
    /// The cluster CA, which kubelet trusts for its clients.
    pub ca_file: PathBuf,
    /// kubeconfigs that reach the API server from the LAN: the node's own
    /// (`system:node:<name>`), and kube-proxy's.
    pub kubelet_kubeconfig: PathBuf,
    pub kube_proxy_kubeconfig: PathBuf,
    /// OCI image layouts to import into the node's containerd (the pause image among them).
    pub images: Vec<PathBuf>,
    /// The Node object's labels, which kubelet registers it with.
    pub labels: Vec<(String, String)>,
    /// Where the node's processes log.
    pub log_dir: PathBuf,
}

/// A running node; [`KubeNode::kill`] or dropping it kills everything on it.
pub struct KubeNode {
    /// The Node object's name.
    pub name: String,
    pub host: Host,
    index: usize,
    config: NodeConfig,
    state: PathBuf,
    /// Holds the node's mount namespace, which the other processes enter.
    mounts: Option<Process>,
    containerd: Option<Process>,
    kubelet: Option<Process>,
    kube_proxy: Option<Process>,
}

impl KubeNode {
    /// Starts node `index` (Pod ranges [`pod_cidrs`]`(index)`) on `host`: its mount namespace and
    /// cgroup, containerd with the images imported, kubelet and kube-proxy. Returns once kube-proxy
    /// serves; kubelet registers the Node object `name` on its own.
    pub async fn start(name: &str, host: &Host, index: usize, config: NodeConfig) -> KubeNode {
        let state = Path::new(STATE_ROOT).join(&host.netns);
        let mut node = KubeNode {
            name: name.to_string(),
            host: host.clone(),
            index,
            config,
            state,
            mounts: None,
            containerd: None,
            kubelet: None,
            kube_proxy: None,
        };
        node.boot().await;
        node
    }

    /// Starts the node's processes (again, after [`KubeNode::kill`]), as a machine that boots:
    /// its files are kept, its mounts and processes are new.
    pub async fn boot(&mut self) {
        self.write_files();
        make_cgroup(&self.host.netns);
        self.mounts = Some(self.spawn_mount_namespace());
        self.start_containerd().await;
        self.start_kubelet();
        self.start_kube_proxy().await;
    }

    /// Kills every process of the node at once (containerd, its shims and containers, kubelet,
    /// kube-proxy), as when a machine loses power.
    pub fn kill(&mut self) {
        kill_cgroup(&self.host.netns);
        for process in [
            self.kube_proxy.take(),
            self.kubelet.take(),
            self.containerd.take(),
            self.mounts.take(),
        ]
        .into_iter()
        .flatten()
        {
            drop(process);
        }
    }

    /// Stops kubelet alone (SIGKILL): the node's containers keep running, and the node goes
    /// NotReady once the node controller misses its status updates.
    pub fn kill_kubelet(&mut self) {
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.kill();
        }
    }

    pub fn start_kubelet(&mut self) {
        let config = self.state.join("kubelet.yaml");
        let mut command = self.command(&self.config.bin_dir.join("kubelet"));
        command
            .arg("--config")
            .arg(&config)
            .arg("--kubeconfig")
            .arg(&self.config.kubelet_kubeconfig)
            .arg("--root-dir")
            .arg(self.state.join("kubelet"))
            .arg(format!(
                "--node-labels={}",
                self.config
                    .labels
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ))
            .args([
                "--hostname-override",
                &self.name,
                "--node-ip",
                &format!("{},{}", self.host.ipv4, self.host.ipv6),
            ]);
        self.kubelet = Some(self.spawn("kubelet", command));
    }

    /// Gives an image in the node's containerd a second name, as a registry would serve a new
    /// tag.
    pub fn tag_image(&self, image: &str, new_name: &str) {
        if let Err(e) = ctr(
            &self.containerd_socket(),
            &["images", "tag", "--force", image, new_name],
        ) {
            panic!("tagging {image} as {new_name} on {}: {e}", self.name);
        }
    }

    /// The node's containerd socket, for `ctr` and kubelet.
    fn containerd_socket(&self) -> PathBuf {
        self.state.join("containerd.sock")
    }

    async fn start_containerd(&mut self) {
        let mut command = self.command(Path::new("containerd"));
        command
            .arg("--config")
            .arg(self.state.join("containerd.toml"));
        self.containerd = Some(self.spawn("containerd", command));
        let socket = self.containerd_socket();
        eventually(
            Duration::from_secs(30),
            &format!("containerd of {} to serve", self.name),
            || async { ctr(&socket, &["version"]).ok() },
        )
        .await;
        for image in &self.config.images {
            import_image(&socket, image);
        }
    }

    async fn start_kube_proxy(&mut self) {
        let mut command = self.command(&self.config.bin_dir.join("kube-proxy"));
        command
            .arg("--config")
            .arg(self.state.join("kube-proxy.yaml"));
        self.kube_proxy = Some(self.spawn("kube-proxy", command));
        let host = self.host.clone();
        eventually(
            Duration::from_secs(60),
            &format!("kube-proxy on {} to sync", self.name),
            || {
                let host = host.clone();
                async move {
                    let output = host
                        .command("curl")
                        .args(["-sf", "-m", "1", "http://127.0.0.1:10256/healthz"])
                        .output()
                        .ok()?;
                    output.status.success().then_some(())
                }
            },
        )
        .await;
    }

    /// A mount namespace of the node's own, held by a `sleep` that is the node's first process:
    /// a tmpfs on `/run`, the node's folder on `/var/log`, and kubelet's sysctls shadowed.
    fn spawn_mount_namespace(&self) -> Process {
        let mut setup = String::from("mount -t tmpfs -o mode=755 tmpfs /run && ");
        setup += &format!("mount --bind {}/log /var/log && ", self.state.display());
        for (sysctl, _) in KUBELET_SYSCTLS {
            let shadow = self.state.join("sysctl").join(sysctl.replace('/', "."));
            setup += &format!(
                "mount --bind {shadow} /proc/sys/{sysctl} && mount -o remount,bind,ro /proc/sys/{sysctl} && ",
                shadow = shadow.display()
            );
        }
        setup += "exec sleep infinity";
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.host.netns))
            .arg("--")
            .args(in_cgroup(&self.host.netns))
            .args(["unshare", "--mount", "--propagation", "slave", "--"])
            .args(["sh", "-c", &setup]);
        let process = self.spawn("mounts", command);
        // Each program execs the next, so the holder keeps its PID; it execs `sleep` after its
        // last mount, and exits if one fails.
        let comm = format!("/proc/{}/comm", process.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&comm).map_or(true, |c| c.trim() != "sleep") {
            assert!(
                std::time::Instant::now() < deadline,
                "the mount namespace of {} was not set up: {}",
                self.name,
                process.log_tail(10)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    /// `program` in the node: its network and mount namespaces and its cgroup.
    fn command(&self, program: &Path) -> Command {
        let holder = self
            .mounts
            .as_ref()
            .expect("the node's mount namespace is up")
            .id();
        let mut command = Command::new("nsenter");
        command
            .args(["--target", &holder.to_string(), "--mount", "--net", "--"])
            .args(in_cgroup(&self.host.netns))
            .arg(program);
        command
    }

    fn spawn(&self, what: &str, command: Command) -> Process {
        let name = format!("{what}-{}", self.host.name);
        Process::spawn(
            &name,
            command,
            self.config.log_dir.join(format!("{name}.log")),
        )
    }

    /// The node's folder: configuration files, and the folders its programs keep state in.
    fn write_files(&self) {
        let state = &self.state;
        for dir in [
            "log",
            "sysctl",
            "cni/net.d",
            "cni/ipam",
            "kubelet",
            "pod-logs",
        ] {
            let dir = state.join(dir);
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        for (sysctl, value) in KUBELET_SYSCTLS {
            write(
                &state.join("sysctl").join(sysctl.replace('/', ".")),
                &format!("{value}\n"),
            );
        }
        write(&state.join("containerd.toml"), &self.containerd_config());
        write(&state.join("cni/net.d/10-lab.conflist"), &self.cni_config());
        write(&state.join("kubelet.yaml"), &self.kubelet_config());
        write(&state.join("kube-proxy.yaml"), &self.kube_proxy_config());
        // The node's own resolver, for Pods with `dnsPolicy: Default`.
        write(
            &state.join("resolv.conf"),
            &format!("nameserver {CLUSTER_DNS}\n"),
        );
    }

    fn containerd_config(&self) -> String {
        let state = self.state.display();
        format!(
            r#"version = 2
root = "{state}/containerd/root"
state = "{state}/containerd/state"
[grpc]
  address = "{state}/containerd.sock"
[ttrpc]
  address = "{state}/containerd-ttrpc.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{state}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{state}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{state}/cni/net.d"
"#
        )
    }

    /// The bridge `cni0` holding the Pod ranges' gateways, host-local addresses; Pods' traffic
    /// is not masqueraded (routes on the LAN reach every node's Pods).
    fn cni_config(&self) -> String {
        let (v4, v6) = pod_cidrs(self.index);
        let (gateway_v4, gateway_v6) = pod_gateways(self.index);
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "lab",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local",
                          "dataDir": self.state.join("cni/ipam"),
                          "ranges": [[{"subnet": v4, "gateway": gateway_v4}],
                                     [{"subnet": v6, "gateway": gateway_v6}]],
                          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        })
        .to_string()
    }

    /// kubelet: cgroupfs under the node's cgroup, webhook authentication and authorization,
    /// no disk-pressure eviction (the machine's disk is shared with everything else on it).
    fn kubelet_config(&self) -> String {
        let state = self.state.display();
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{state}/containerd.sock
resolvConf: {state}/resolv.conf
clusterDomain: cluster.local
clusterDNS: [{CLUSTER_DNS}]
podLogsDir: {state}/pod-logs
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
maxPods: 13
",
            address = self.host.ipv4,
            cgroup = self.host.netns,
            ca = self.config.ca_file.display(),
        )
    }

    /// kube-proxy: iptables mode; traffic from the Pod ranges is local. Conntrack sysctls are
    /// left alone: `nf_conntrack_max` belongs to the whole machine, not to the node. Node ports
    /// and health check node ports are served on the node's own addresses, one per family: with
    /// the default (every address), the IPv6 proxier's `[::]` listener also takes IPv4, and the
    /// IPv4 proxier then fails to bind a dual-stack Local Service's health check node port
    /// (kubernetes/kubernetes#114702).
    fn kube_proxy_config(&self) -> String {
        format!(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {name}
mode: iptables
clusterCIDR: {CLUSTER_CIDRS}
detectLocalMode: ClusterCIDR
nodePortAddresses: [primary]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
",
            kubeconfig = self.config.kube_proxy_kubeconfig.display(),
            name = self.name,
        )
    }
}

impl Drop for KubeNode {
    fn drop(&mut self) {
        self.kill();
        remove_cgroup(&self.host.netns);
        let _ = std::fs::remove_dir_all(&self.state);
        // The last node out removes the folder they share.
        let _ = std::fs::remove_dir(STATE_ROOT);
    }
}

/// A command line that moves itself into the cgroup `/<name>` of every hierarchy and then
/// execs the arguments that follow it.
fn in_cgroup(name: &str) -> [String; 4] {
    [
        "sh".into(),
        "-c".into(),
        format!(
            r#"for procs in {CGROUP_ROOT}/*/{name}/cgroup.procs; do echo $$ > "$procs"; done; exec "$@""#
        ),
        "sh".into(), // the script's $0; its arguments follow
    ]
}

/// The cgroup `/<name>` in every hierarchy; cpuset needs its CPUs and memory nodes before it
/// takes a process.
fn make_cgroup(name: &str) {
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(name);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let value = std::fs::read_to_string(hierarchy.join(file)).unwrap_or_default();
                write(&dir.join(file), &value);
            }
        }
    }
}

/// The mounted cgroup hierarchies (v1 controllers, `systemd`, and the v2 `unified` one).
fn hierarchies() -> Vec<PathBuf> {
    std::fs::read_dir(CGROUP_ROOT)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|path| path.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process in the cgroup `/<name>` and below: frozen first, so that nothing forks
/// in between.
fn kill_cgroup(name: &str) {
    let freezer = Path::new(CGROUP_ROOT).join("freezer").join(name);
    let frozen = std::fs::write(freezer.join("freezer.state"), "FROZEN").is_ok();
    for _ in 0..50 {
        let pids = cgroup_pids(&Path::new(CGROUP_ROOT).join("pids").join(name));
        if pids.is_empty() {
            break;
        }
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
        if frozen {
            let _ = std::fs::write(freezer.join("freezer.state"), "THAWED");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every PID in `dir` and the cgroups below it.
fn cgroup_pids(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(cgroup_pids(&entry.path()));
            }
        }
    }
    pids
}

/// Removes the cgroup `/<name>` and the ones kubelet made below it, in every hierarchy.
fn remove_cgroup(name: &str) {
    for hierarchy in hierarchies() {
        remove_cgroup_dir(&hierarchy.join(name));
    }
}

fn remove_cgroup_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_dir(&entry.path());
            }
        }
    }
    // A cgroup is removed with rmdir (its files are not real files).
    let _ = std::fs::remove_dir(dir);
}

/// Kills and removes what nodes of labs whose process is gone left: their cgroups' processes,
/// the cgroups, and their folders. Nodes are named after their network namespaces, which hold
/// the lab's PID (see [`crate::lan`]).
pub fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(STATE_ROOT) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if crate::lan::owner_alive(&name) {
            continue;
        }
        kill_cgroup(&name);
        remove_cgroup(&name);
        let _ = std::fs::remove_dir_all(entry.path());
    }
    let _ = std::fs::remove_dir(STATE_ROOT);
}

/// `ctr` against a node's containerd, in the `k8s.io` namespace kubelet uses.
fn ctr(socket: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io"])
        .args(args)
        .output()
        .map_err(|e| format!("running ctr: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Imports an OCI image layout (a folder) into a node's containerd: `ctr images import` reads
/// it as a tar stream.
fn import_image(socket: &Path, layout: &Path) {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(layout)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running tar on {}: {e}", layout.display()));
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "import", "-"])
        .stdin(tar.stdout.take().expect("a piped stdout"))
        .output()
        .unwrap_or_else(|e| panic!("running ctr images import: {e}"));
    let _ = tar.wait();
    assert!(
        output.status.success(),
        "importing the image {} into {}: {}",
        layout.display(),
        socket.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
