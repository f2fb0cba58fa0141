//! Makes the test API server reachable from the hosts of a [`Lan`](crate::lan::Lan) without
//! giving the root network namespace any interface or address on the LAN: a `socat` in the
//! root namespace serves a Unix socket that forwards to the server's loopback port, and a
//! `socat` in a LAN host's namespace forwards TCP on that host's address to the socket (the
//! file system is shared across namespaces). TLS passes through untouched; the kubeconfig it
//! writes names the server `localhost`, which the server's certificate holds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ApiServer;
use crate::lan::Host;

pub const API_PORT: u16 = 6443;

pub struct ApiBridge {
    kubeconfig: PathBuf,
    socket: PathBuf,
    children: Vec<Child>,
}

impl ApiBridge {
    /// Serves the API on `host`'s IPv4 address, port [`API_PORT`].
    pub fn new(server: &ApiServer, host: &Host) -> ApiBridge {
        let admin =
            std::fs::read_to_string(server.kubeconfig_path()).expect("the admin kubeconfig");
        let mut config: serde_yaml::Value = serde_yaml::from_str(&admin).expect("a kubeconfig");
        let cluster = &mut config["clusters"][0]["cluster"];
        let loopback = cluster["server"].as_str().expect("a server URL").to_owned();
        let port = loopback.rsplit(':').next().expect("a port").to_owned();
        cluster["server"] = format!("https://{}:{API_PORT}", host.ipv4).into();
        cluster["tls-server-name"] = "localhost".into();
        let dir = server.data_dir().to_owned();
        let kubeconfig = dir.join(format!("kubeconfig-lan-{}", host.netns));
        std::fs::write(&kubeconfig, serde_yaml::to_string(&config).expect("YAML"))
            .expect("writing the LAN kubeconfig");

        let socket = dir.join(format!("api-{}.sock", host.netns));
        let _ = std::fs::remove_file(&socket);
        let root_side = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", socket.display()))
            .arg(format!("TCP:127.0.0.1:{port}"))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting socat (scripts/install-deps installs it)");
        let lan_side = host
            .command("socat")
            .arg(format!(
                "TCP-LISTEN:{API_PORT},bind={},fork,reuseaddr",
                host.ipv4
            ))
            .arg(format!("UNIX-CONNECT:{}", socket.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting socat in the API host");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "socat did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ApiBridge {
            kubeconfig,
            socket,
            children: vec![root_side, lan_side],
        }
    }

    /// A cluster-admin kubeconfig for processes on the LAN.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
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
