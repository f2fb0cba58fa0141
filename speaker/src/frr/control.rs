//! A running FRR, reached through its configuration folder and its daemons' vty sockets: the
//! configuration is applied with FRR's own `frr-reload.py`, state is read with `vtysh`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use super::reloads::Outcome;
use super::state::{self, BfdPeer, Neighbor, ParseError, Prefix};

/// How long one `vtysh` or `frr-reload.py` run may take: FRR answers in well under a second;
/// a daemon that hangs must not hang the speaker.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The name frr-reload.py and FRR's init scripts give the integrated configuration.
const CONFIG_FILE: &str = "frr.conf";
/// The candidate configuration, checked before it replaces [`CONFIG_FILE`].
const CANDIDATE_FILE: &str = ".frr.conf.herald";

/// Where FRR's pieces are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// FRR's configuration folder: `frr.conf` is written here, `vtysh.conf` read from here.
    pub config_dir: PathBuf,
    /// The folder of the daemons' vty sockets (`zebra.vty`, `bgpd.vty`, `bfdd.vty`).
    pub vty_socket_dir: PathBuf,
    /// The folder holding `vtysh`.
    pub bin_dir: PathBuf,
    pub reload_script: PathBuf,
}

impl Default for Paths {
    /// Debian's `frr` and `frr-pythontools` packages.
    fn default() -> Self {
        Paths {
            config_dir: "/etc/frr".into(),
            vty_socket_dir: "/var/run/frr".into(),
            bin_dir: "/usr/bin".into(),
            reload_script: "/usr/lib/frr/frr-reload.py".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrrError {
    #[error("writing FRR's configuration {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "running {program}: {reason}; FRR's tools come from Debian's frr and frr-pythontools \
         packages"
    )]
    Run { program: String, reason: String },
    #[error(
        "`vtysh -c '{command}'` failed ({status}): {message}; are FRR's daemons running, with \
         their vty sockets in {socket_dir}?"
    )]
    Vtysh {
        command: String,
        status: String,
        socket_dir: String,
        message: String,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// The address families whose advertised routes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    Ipv4,
    Ipv6,
}

impl AddressFamily {
    fn frr_name(self) -> &'static str {
        match self {
            AddressFamily::Ipv4 => "ipv4",
            AddressFamily::Ipv6 => "ipv6",
        }
    }
}

/// A neighbor's session with its BFD session and the prefixes advertised to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub neighbor: Neighbor,
    pub bfd: Option<BfdPeer>,
    pub advertised: Vec<Prefix>,
}

#[derive(Debug, Clone)]
pub struct Frr {
    paths: Paths,
}

impl Frr {
    pub fn new(paths: Paths) -> Self {
        Frr { paths }
    }

    pub fn config_path(&self) -> PathBuf {
        self.paths.config_dir.join(CONFIG_FILE)
    }

    /// Makes FRR run `config`, a complete `frr.conf`: FRR checks it first
    /// (`frr-reload.py --test`, which changes nothing), then it replaces `frr.conf` at once
    /// (what FRR loads when it restarts) and FRR applies the difference to what it runs
    /// (`--reload`), without restarting sessions that the difference does not touch.
    pub async fn apply(&self, config: &str) -> Outcome {
        let candidate = self.paths.config_dir.join(CANDIDATE_FILE);
        if let Err(e) = write_file(&candidate, config) {
            return Outcome::Rejected(e.to_string());
        }
        if let Err(message) = self.reload_script("--test", &candidate).await {
            let _ = std::fs::remove_file(&candidate);
            return Outcome::Rejected(message);
        }
        let target = self.config_path();
        if let Err(source) = std::fs::rename(&candidate, &target) {
            return Outcome::Rejected(
                FrrError::Write {
                    path: target.display().to_string(),
                    source,
                }
                .to_string(),
            );
        }
        // frr-reload.py writes the running configuration over --confdir's frr.conf unless that
        // is the file it applies: it is.
        match self.reload_script("--reload", &target).await {
            Ok(_) => Outcome::Applied,
            // frr-reload.py gives its additions twice, and FRR refuses a few commands the second
            // time although the first took (a peer's graceful-restart mode: "not valid at this
            // moment"): what counts is whether FRR now runs the file.
            Err(message) => match self.pending_changes(&target).await {
                Ok(pending) if pending.is_empty() => Outcome::Applied,
                _ => Outcome::Failed(message),
            },
        }
    }

    /// What frr-reload.py would still change to make FRR run `file`, as its `--test` plan
    /// lists it; none when FRR runs `file` already.
    pub async fn pending_changes(&self, file: &Path) -> Result<Vec<String>, String> {
        let stdout = self.reload_script("--test", file).await?;
        Ok(plan_lines(&stdout))
    }

    /// Runs frr-reload.py in `mode` on `file` and returns what it printed; on failure, FRR's
    /// own message.
    async fn reload_script(&self, mode: &str, file: &Path) -> Result<String, String> {
        let p = &self.paths;
        let mut command = Command::new("python3");
        command
            .arg(&p.reload_script)
            .arg(mode)
            // Its log on stdout: without this --reload logs to /var/log/frr.
            .arg("--stdout")
            .arg("--confdir")
            .arg(&p.config_dir)
            .arg("--rundir")
            .arg(&p.config_dir)
            .arg("--bindir")
            .arg(&p.bin_dir)
            .arg("--vty_socket")
            .arg(&p.vty_socket_dir)
            .arg(file);
        let output = run(command, &p.reload_script.display().to_string())
            .await
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let said =
            String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "frr-reload.py {mode} {} exited with {}: {}",
            file.display(),
            output.status,
            reload_message(&said)
        ))
    }

    /// Runs one vtysh command (`show ...`) and returns what it printed.
    pub async fn vtysh(&self, command_line: &str) -> Result<String, FrrError> {
        let vtysh = self.paths.bin_dir.join("vtysh");
        let mut command = Command::new(&vtysh);
        command
            .arg("--vty_socket")
            .arg(&self.paths.vty_socket_dir)
            .arg("--config_dir")
            .arg(&self.paths.config_dir)
            .args(["-c", command_line]);
        let output = run(command, &vtysh.display().to_string()).await?;
        if !output.status.success() {
            let said =
                String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
            return Err(FrrError::Vtysh {
                command: command_line.to_string(),
                status: output.status.to_string(),
                socket_dir: self.paths.vty_socket_dir.display().to_string(),
                message: said.trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Which instance of FRR's daemons runs: the vty sockets they made when they started, by
    /// inode and change time (a new socket may get the inode of the one it replaces). A
    /// restarted FRR (its container restarted) has new ones, and runs only what it loaded at
    /// start. None while a daemon has no socket.
    pub fn instance(&self) -> Option<Vec<(u64, i64, i64)>> {
        use std::os::unix::fs::MetadataExt;
        ["zebra", "bgpd", "bfdd"]
            .iter()
            .map(|daemon| {
                let socket = self.paths.vty_socket_dir.join(format!("{daemon}.vty"));
                let socket = std::fs::metadata(socket).ok()?;
                Some((socket.ino(), socket.ctime(), socket.ctime_nsec()))
            })
            .collect()
    }

    pub async fn neighbors(&self) -> Result<Vec<Neighbor>, FrrError> {
        let json = self.vtysh("show bgp vrf default neighbors json").await?;
        Ok(state::parse_neighbors(&json)?)
    }

    pub async fn bfd_peers(&self) -> Result<Vec<BfdPeer>, FrrError> {
        let json = self.vtysh("show bfd peers json").await?;
        Ok(state::parse_bfd_peers(&json)?)
    }

    /// The prefixes of `family` advertised to `peer`.
    pub async fn advertised(
        &self,
        peer: &str,
        family: AddressFamily,
    ) -> Result<Vec<Prefix>, FrrError> {
        let json = self
            .vtysh(&format!(
                "show bgp {} unicast neighbors {peer} advertised-routes json",
                family.frr_name()
            ))
            .await?;
        Ok(state::parse_advertised(&json)?)
    }

    /// Every neighbor's session, with its BFD session and, when Established, what it is sent.
    pub async fn sessions(&self) -> Result<Vec<Session>, FrrError> {
        let neighbors = self.neighbors().await?;
        let bfd_peers = self.bfd_peers().await?;
        let mut sessions = Vec::with_capacity(neighbors.len());
        for neighbor in neighbors {
            let mut advertised = Vec::new();
            if neighbor.established() {
                for family in [AddressFamily::Ipv4, AddressFamily::Ipv6] {
                    advertised.extend(self.advertised(&neighbor.peer, family).await?);
                }
            }
            let bfd = bfd_peers
                .iter()
                .find(|b| b.peer.to_string() == neighbor.peer)
                .cloned();
            sessions.push(Session {
                neighbor,
                bfd,
                advertised,
            });
        }
        Ok(sessions)
    }
}

/// Writes `text` to `path` so that readers see the old file or the new one, never a part. A
/// few kilobytes to a local folder: not worth a blocking thread.
fn write_file(path: &Path, text: &str) -> Result<(), FrrError> {
    let write_error = |source| FrrError::Write {
        path: path.display().to_string(),
        source,
    };
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).map_err(write_error)?;
    std::fs::rename(&partial, path).map_err(write_error)
}

async fn run(mut command: Command, program: &str) -> Result<Output, FrrError> {
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let run_error = |reason: String| FrrError::Run {
        program: program.to_string(),
        reason,
    };
    tokio::time::timeout(COMMAND_TIMEOUT, command.output())
        .await
        .map_err(|_| run_error(format!("no answer within {COMMAND_TIMEOUT:?}")))?
        .map_err(|e| run_error(e.to_string()))
}

/// FRR's own words in what frr-reload.py printed: its errors and vtysh's, without its
/// informational lines, timestamps, colours, and the frames of a Python traceback (its last
/// line, the exception, stays).
/// The lines of frr-reload.py's `--test` plan: what follows its "Lines To Delete" and "Lines
/// To Add" headings (its log comes before them). Its host name is left out: vtysh shows its
/// own host's (the node's, with host networking), whatever the configuration says.
fn plan_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .skip_while(|line| !line.starts_with("Lines To "))
        .filter(|line| {
            !line.trim().is_empty()
                && !line.starts_with("Lines To ")
                && !line.chars().all(|c| c == '=')
                && !line.starts_with("hostname ")
                && !line.starts_with("no hostname ")
        })
        .map(str::to_owned)
        .collect()
}

fn reload_message(output: &str) -> String {
    let mut lines = Vec::new();
    let mut in_traceback = false;
    for line in output.lines().map(strip_colours) {
        if line.starts_with("Traceback ") {
            in_traceback = true;
            continue;
        }
        // A traceback's frames are indented; the exception that ends it is not.
        if in_traceback && line.starts_with(' ') {
            continue;
        }
        in_traceback = false;
        let line = strip_timestamp(&line).trim();
        if !line.is_empty() && !line.starts_with("INFO:") && !line.starts_with("DEBUG:") {
            lines.push(line.to_string());
        }
    }
    if lines.is_empty() {
        "it printed no error".to_string()
    } else {
        lines.join(" | ")
    }
}

fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An SGR sequence: ESC [ digits m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// "2026-11-28 14:27:19,346   ERROR: ..." → "ERROR: ...".
fn strip_timestamp(line: &str) -> &str {
    let bytes = line.as_bytes();
    let stamped = bytes.len() > 23
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[13] == b':'
        && bytes[19] == b',';
    if stamped {
        line[23..].trim_start()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frr_reload_errors_in_frrs_words() {
        let said = include_str!("fixtures/reload-test-rejected.txt");
        let message = reload_message(said);
        assert!(
            message.contains(
                "ERROR: vtysh failed to process new configuration: vtysh (mark file) exited \
                 with status 2:"
            ),
            "{message}"
        );
        assert!(
            message.contains("line 3: % Unknown command:  neighbor 192.0.2.1 bogus thing"),
            "{message}"
        );
        assert!(
            message.contains("Exiting: failed to connect to any daemons."),
            "{message}"
        );
        assert!(!message.contains("INFO"), "{message}");
        assert!(!message.contains("Traceback"), "{message}");
        assert!(!message.contains("mark_show_run"), "{message}");
        assert!(
            message.ends_with("VtyshException: vtysh (show running-config) exited with status 1:"),
            "{message}"
        );
        assert!(!message.contains('\u{1b}'), "{message}");
    }

    #[test]
    /// Captured from a node of the lab, whose FRR ran a configuration without `neighbor X bfd`.
    fn the_test_plan_is_what_follows_its_headings() {
        assert_eq!(
            plan_lines(include_str!("fixtures/reload-test-plan.txt")),
            ["router bgp 64512", " no neighbor 192.0.2.1 bfd"]
        );
    }
}
