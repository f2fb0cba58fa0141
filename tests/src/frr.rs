//! FRR (`zebra`, `bfdd`, `bgpd` from Debian's `frr`) running in a LAN host's namespace, as the
//! speaker's sidecar runs it: one folder holds the configuration, the daemons' vty sockets,
//! zebra's API socket and the logs, so that instances in several namespaces never meet. The
//! daemons start with an empty configuration (the speaker's driver applies the real one with
//! frr-reload.py), run as the `frr` user as Debian's do, and are killed, with the folder
//! removed, when the instance is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Process;
use crate::lan::Host;

/// FRR's daemons, in the order they start (bgpd and bfdd connect to zebra).
pub const DAEMONS: [&str; 3] = ["zebra", "bfdd", "bgpd"];
const DAEMON_DIR: &str = "/usr/lib/frr";
const STARTUP: Duration = Duration::from_secs(10);

pub struct FrrNode {
    pub host: Host,
    /// Running daemons by name; killed before their folder is removed (fields drop in order).
    daemons: Vec<(&'static str, Process)>,
    dir: tempfile::TempDir,
}

impl FrrNode {
    /// Starts zebra, bfdd and bgpd in `host`'s namespace, each ready for vtysh when this
    /// returns.
    pub fn start(host: &Host) -> FrrNode {
        let dir = tempfile::Builder::new()
            .prefix(&format!("herald-frr-{}-", host.name))
            .tempdir()
            .expect("a temporary folder");
        // The daemons drop to the frr user: the folder must be theirs.
        let (uid, gid) = frr_user();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown frr {}: {e}", dir.path().display()));
        // vtysh and frr-reload.py read vtysh.conf from the configuration folder; the daemons
        // start from an empty configuration.
        for file in ["vtysh.conf", "empty.conf"] {
            std::fs::write(dir.path().join(file), "").expect("writing FRR's empty files");
        }
        let mut node = FrrNode {
            host: host.clone(),
            dir,
            daemons: Vec::new(),
        };
        for daemon in DAEMONS {
            node.start_daemon(daemon);
        }
        node
    }

    /// The folder of `frr.conf`, `vtysh.conf` and the daemons' vty sockets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `daemon` (one of [`DAEMONS`]) with an empty configuration and waits for its vty
    /// socket.
    pub fn start_daemon(&mut self, daemon: &'static str) {
        let dir = self.dir.path();
        let socket = dir.join(format!("{daemon}.vty"));
        let _ = std::fs::remove_file(&socket);
        let mut command = self.host.command(&format!("{DAEMON_DIR}/{daemon}"));
        command
            .arg("--vty_socket")
            .arg(dir)
            .arg("-z")
            .arg(dir.join("zserv.api"))
            .arg("-i")
            .arg(dir.join(format!("{daemon}.pid")))
            .arg("-f")
            .arg(dir.join("empty.conf"))
            // No vty on TCP: several instances share the machine's port numbers otherwise.
            .args(["-P", "0", "--log", "stdout"]);
        if daemon == "bfdd" {
            command.arg("--bfdctl").arg(dir.join("bfdd.sock"));
        }
        let log = dir.join(format!("{daemon}.log"));
        let process = Process::spawn(&format!("{daemon} on {}", self.host.name), command, log);
        self.daemons.push((daemon, process));
        let deadline = Instant::now() + STARTUP;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "{daemon} in {} made no vty socket {} within {STARTUP:?}",
                self.host.netns,
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills `daemon` with SIGKILL, as a crash would.
    pub fn kill_daemon(&mut self, daemon: &str) {
        let i = self
            .daemons
            .iter()
            .position(|(name, _)| *name == daemon)
            .unwrap_or_else(|| panic!("{daemon} does not run on {}", self.host.name));
        let (_, mut process) = self.daemons.remove(i);
        process.kill();
    }

    /// Kills every daemon with SIGKILL, as FRR's container crashing would.
    pub fn crash(&mut self) {
        for daemon in DAEMONS {
            self.kill_daemon(daemon);
        }
    }

    /// Starts every daemon again and loads `frr.conf` into them, as the sidecar's entrypoint
    /// (`scripts/frr-image/herald-frr`) does when its container restarts.
    pub fn restart(&mut self) {
        self.restart_empty();
        self.vtysh_args(&["-b"]);
    }

    /// Starts every daemon again with nothing configured, as FRR comes back when it cannot
    /// load `frr.conf`.
    pub fn restart_empty(&mut self) {
        for daemon in DAEMONS {
            self.start_daemon(daemon);
        }
    }

    /// Loads `frr.conf` into `daemon`, as FRR's init script does when it starts a daemon.
    pub fn boot_config(&self, daemon: &str) {
        self.vtysh_args(&["-b", "-d", daemon]);
    }

    /// Runs one vtysh command and returns what it printed.
    pub fn vtysh(&self, command: &str) -> String {
        self.vtysh_args(&["-c", command])
    }

    fn vtysh_args(&self, args: &[&str]) -> String {
        let output = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(self.dir())
            .arg("--config_dir")
            .arg(self.dir())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running vtysh: {e}"));
        assert!(
            output.status.success(),
            "vtysh {args:?} on {} failed ({}): {}{}",
            self.host.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn log_path(&self, daemon: &str) -> PathBuf {
        self.dir().join(format!("{daemon}.log"))
    }
}

/// The uid and gid of Debian's `frr` user, which its package makes.
fn frr_user() -> (u32, u32) {
    let id = |flag: &str| {
        let output = Command::new("id")
            .args([flag, "frr"])
            .output()
            .expect("running id");
        assert!(
            output.status.success(),
            "no frr user: install Debian's frr package (scripts/install-deps)"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("a number")
    };
    (id("-u"), id("-g"))
}
