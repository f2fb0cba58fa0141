//! Makes the test API server reachable from the hosts of a [`Lan`](crate::lan::Lan) without
//! giving the root network namespace any interface or address on the LAN: a `socat` in the
//! root namespace serves a Unix socket that forwards to the server's loopback port, and a
//! `socat` in a LAN host's namespace forwards TCP on that host's address to the socket (the
//! file system is shared across namespaces). TLS passes through untouched; the kubeconfig it
//! writes names the server `localhost`, which the server's certificate holds. The LAN side
//! listens on the server's own port, which is the port a real cluster's `kubernetes` Service
//! sends its Pods to.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lan::{Family, Host};
use crate::{ApiServer, spawn_tied};

pub struct ApiBridge {
    /// The server's URL as the LAN's hosts reach it.
    url: String,
    /// The namespace of the host serving it, which names the kubeconfigs written for it.
    netns: String,
    kubeconfig: PathBuf,
    socket: PathBuf,
    children: Vec<Child>,
}

impl ApiBridge {
    /// Serves the API on `host`'s IPv4 address (its IPv6 address on an IPv6-only LAN), on the
    /// server's port.
    pub fn new(server: &ApiServer, host: &Host) -> ApiBridge {
        let admin: serde_yaml::Value = read_kubeconfig(&server.kubeconfig_path());
        let loopback = admin["clusters"][0]["cluster"]["server"]
            .as_str()
            .expect("a server URL");
        let port = loopback.rsplit(':').next().expect("a port").to_owned();
        let dir = server.data_dir().to_owned();
        let socket = dir.join(format!("api-{}.sock", host.netns));
        let _ = std::fs::remove_file(&socket);
        let mut root_side = Command::new("socat");
        root_side
            .arg(format!("UNIX-LISTEN:{},fork", socket.display()))
            .arg(format!("TCP:127.0.0.1:{port}"))
            .stderr(Stdio::null());
        let root_side =
            spawn_tied(root_side).expect("starting socat (scripts/install-deps installs it)");
        let (listen, authority) = match host.family {
            Family::DualStack => (
                format!("TCP4-LISTEN:{port},bind={}", host.ipv4),
                format!("{}:{port}", host.ipv4),
            ),
            Family::Ipv6Only => (
                format!("TCP6-LISTEN:{port},bind=[{}]", host.ipv6),
                format!("[{}]:{port}", host.ipv6),
            ),
        };
        let mut lan_side = host.command("socat");
        lan_side
            .arg(format!("{listen},fork,reuseaddr"))
            .arg(format!("UNIX-CONNECT:{}", socket.display()))
            .stderr(Stdio::null());
        let lan_side = spawn_tied(lan_side).expect("starting socat in the API host");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "socat did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut bridge = ApiBridge {
            url: format!("https://{authority}"),
            netns: host.netns.clone(),
            kubeconfig: PathBuf::new(),
            socket,
            children: vec![root_side, lan_side],
        };
        bridge.kubeconfig = bridge.for_lan(&server.kubeconfig_path());
        bridge
    }

    /// A cluster-admin kubeconfig for processes on the LAN.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A copy of `kubeconfig` (one of the server's, for any identity) that reaches the server
    /// through this bridge: `<kubeconfig>-<serving host's namespace>`, next to it.
    pub fn for_lan(&self, kubeconfig: &Path) -> PathBuf {
        let mut config = read_kubeconfig(kubeconfig);
        let cluster = &mut config["clusters"][0]["cluster"];
        cluster["server"] = self.url.clone().into();
        cluster["tls-server-name"] = "localhost".into();
        let mut path = kubeconfig.as_os_str().to_owned();
        path.push(format!("-{}", self.netns));
        let path = PathBuf::from(path);
        std::fs::write(&path, serde_yaml::to_string(&config).expect("YAML"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }
}

fn read_kubeconfig(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("kubeconfig {} is not YAML: {e}", path.display()))
}

impl Drop for ApiBridge {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
